"""`--access-log-format` (item 3 of issue 19): every Apache atom against a real server's log
file, the `json` preset read back with `json.loads`, `common`, escaping of quotes and control
bytes, the default (`combined`) unchanged, `%u` never from a client's header, start-up errors
naming the option and the position, env and TOML spellings, and `--workers 2`."""

from __future__ import annotations

import json
import re
import socket
import time
from datetime import datetime, timezone

import pytest

from gwfiles import wait_for_file
from gwprocess import APPS_DIR, Server, run_cli

CLF_TIME = r"\[\d\d/(Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec)/\d{4}:\d\d:\d\d:\d\d \+0000\]"


def start(tmp_path, fmt=None, extra=(), env=None, name="access.log"):
    log = tmp_path / name
    args = ["--access-log", str(log), *extra]
    if fmt is not None:
        args += ["--access-log-format", fmt]
    return Server("logs_app:app", args=args, env=env).start(), log


def request(s, raw: bytes) -> tuple[bytes, int]:
    """Sends one raw request; returns the response and the client's own port."""
    with socket.create_connection((s.host, s.port), timeout=10) as sock:
        port = sock.getsockname()[1]
        sock.sendall(raw)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    return data, port


def get(path, headers=(), host="example.test:8080"):
    lines = [f"GET {path} HTTP/1.1", f"Host: {host}", *headers, "Connection: close", "", ""]
    return "\r\n".join(lines).encode("latin-1")


def lines_of(log, count):
    text = wait_for_file(log, predicate=lambda t: t.count("\n") >= count)
    return text.splitlines()


EVERY_ATOM = ("%h|%l|%u|%t|%r|%>s|%s|%<s|%b|%B|%{Referer}i|%{User-agent}i|%D|%T|%{ms}T|%{us}T"
              "|%m|%U|%q|%H|%p|%v|%V|%a|%{c}a|%{remote}p|%P|%{SERVER_NAME}e|%{REMOTE_USER}e"
              "|%{HTTP_X_REMOTE_USER}e|%{X-Custom}i|%{x-resp}o|%{X-Missing}o|%{X-Missing}i"
              "|%{NOPE}e|%%|%{sec}t|%{wsgi.url_scheme}e|%{Content-Type}o")


def test_every_atom(tmp_path):
    s, log = start(tmp_path, EVERY_ATOM)
    try:
        before = int(time.time())
        resp, client_port = request(s, get(
            "/a%20b/c?x=1&y=2",
            ["Referer: http://r.example/", "User-Agent: gw-agent/1.0", "X-Custom: custom-value",
             # A client's identity header: never %u, and dropped from the environ (untrusted).
             "X-Remote-User: mallory", "Remote-User: mallory"]))
        after = int(time.time())
        assert resp.startswith(b"HTTP/1.1 200 ")
        [line] = lines_of(log, 1)
    finally:
        assert s.stop() == 0
    f = line.split("|")
    names = [a for a in EVERY_ATOM.split("|")]
    v = dict(zip(names, f[:len(names)]))
    assert len(f) == len(names), line
    assert v["%h"] == "127.0.0.1" and v["%a"] == "127.0.0.1" and v["%{c}a"] == "127.0.0.1"
    assert v["%l"] == "-" and v["%u"] == "-"
    assert re.fullmatch(CLF_TIME, v["%t"]), v["%t"]
    assert v["%r"] == "GET /a%20b/c?x=1&y=2 HTTP/1.1"
    assert v["%>s"] == v["%s"] == v["%<s"] == "200"
    assert v["%b"] == v["%B"] == "2"
    assert v["%{Referer}i"] == "http://r.example/"
    assert v["%{User-agent}i"] == "gw-agent/1.0"
    us = int(v["%D"])
    assert int(v["%{us}T"]) == us and int(v["%{ms}T"]) == us // 1000
    assert int(v["%T"]) == us // 1_000_000
    assert v["%m"] == "GET" and v["%U"] == "/a b/c" and v["%q"] == "?x=1&y=2"
    assert v["%H"] == "HTTP/1.1"
    assert v["%p"] == str(s.port)
    assert v["%v"] == s.host  # the listener's own name
    assert v["%V"] == v["%{SERVER_NAME}e"] == "example.test"  # the name the request gave
    assert v["%{remote}p"] == str(client_port)
    assert v["%P"] == str(s.proc.pid)
    assert v["%{REMOTE_USER}e"] == "-" and v["%{HTTP_X_REMOTE_USER}e"] == "-"
    assert v["%{X-Custom}i"] == "custom-value"
    assert v["%{x-resp}o"] == "from-app" and v["%{Content-Type}o"] == "text/plain"
    assert v["%{X-Missing}o"] == v["%{X-Missing}i"] == v["%{NOPE}e"] == "-"
    assert v["%%"] == "%"
    assert before <= int(v["%{sec}t"]) <= after + 1
    assert v["%{wsgi.url_scheme}e"] == "http"


def test_user_and_client_from_a_trusted_proxy(tmp_path):
    """%u: the user a trusted proxy's identity header names; %a the client it forwarded for;
    %h stays the peer."""
    fmt = "%h %a %u %{HTTP_X_REMOTE_USER}e"
    s, log = start(tmp_path, fmt, extra=["--forwarded-allow-ips", "127.0.0.1"])
    try:
        request(s, get("/", ["X-Forwarded-For: 203.0.113.7", "X-Remote-User: alice"]))
        request(s, get("/"))
        first, second = lines_of(log, 2)
    finally:
        s.stop()
    assert first == "127.0.0.1 203.0.113.7 alice alice"
    assert second == "127.0.0.1 127.0.0.1 - -"


def test_bytes_dash_for_an_empty_body_and_status(tmp_path):
    s, log = start(tmp_path, "%>s %b %B %U")
    try:
        request(s, get("/empty"))
        request(s, get("/status/404"))
        first, second = lines_of(log, 2)
    finally:
        s.stop()
    assert first == "200 - 0 /empty"
    assert second == "404 6 6 /status/404"


def test_quotes_and_control_bytes_escaped(tmp_path):
    s, log = start(tmp_path, '"%{User-agent}i" "%r"', name="text.log")
    s2, jlog = start(tmp_path, "json", name="json.log")
    ua = b'evil" "x\\ \t\xe9'
    raw = (b"GET /q?a=%22 HTTP/1.1\r\nHost: h\r\nUser-Agent: " + ua +
           b"\r\nConnection: close\r\n\r\n")
    try:
        request(s, raw)
        request(s2, raw)
        [line] = lines_of(log, 1)
        [jline] = lines_of(jlog, 1)
    finally:
        s.stop()
        s2.stop()
    assert line == r'"evil\" \"x\\ \x09\xe9" "GET /q?a=%22 HTTP/1.1"'
    assert jline.isascii()
    assert json.loads(jline)["user_agent"] == ua.decode("latin-1")


def test_json_preset(tmp_path):
    s, log = start(tmp_path, "json")
    try:
        request(s, get("/j/k?x=1", ["Referer: http://r/", "User-Agent: ua/2"]))
        request(s, get("/empty"))
        first, second = lines_of(log, 2)
    finally:
        s.stop()
    a, b = json.loads(first), json.loads(second)
    assert list(a) == ["remote_addr", "remote_user", "time", "method", "path", "query",
                       "protocol", "status", "bytes", "referer", "user_agent", "duration_us"]
    assert a["remote_addr"] == "127.0.0.1" and a["remote_user"] is None
    t = datetime.fromisoformat(a["time"].replace("Z", "+00:00"))
    assert t.tzinfo is not None and abs((datetime.now(timezone.utc) - t).total_seconds()) < 120
    assert (a["method"], a["path"], a["query"], a["protocol"]) == ("GET", "/j/k", "x=1", "HTTP/1.1")
    assert (a["status"], a["bytes"]) == (200, 2)
    assert (a["referer"], a["user_agent"]) == ("http://r/", "ua/2")
    assert isinstance(a["duration_us"], int) and a["duration_us"] >= 0
    assert (b["path"], b["query"], b["bytes"], b["referer"], b["user_agent"]) == \
        ("/empty", "", 0, None, None)


COMBINED_RE = (r'127\.0\.0\.1 - - ' + CLF_TIME +
               r' "GET /logged\?a=1 HTTP/1\.1" 200 2 "http://r\.example/" "gw-test-agent" \d+')


@pytest.mark.parametrize("fmt", [None, "combined",
                                 '%h %l %u %t "%r" %>s %b "%{Referer}i" "%{User-agent}i" %D'])
def test_default_is_combined_plus_microseconds(tmp_path, fmt):
    """The default line is the one the server always wrote (test_cli.py's test_access_log
    checks pieces of it): Apache combined, then the duration in µs."""
    s, log = start(tmp_path, fmt)
    try:
        request(s, get("/logged?a=1", ["User-Agent: gw-test-agent", "Referer: http://r.example/"]))
        request(s, get("/empty"))
        first, second = lines_of(log, 2)
    finally:
        s.stop()
    assert re.fullmatch(COMBINED_RE, first), first
    assert re.fullmatch(r'127\.0\.0\.1 - - ' + CLF_TIME + r' "GET /empty HTTP/1\.1" 200 - "-" "-" \d+',
                        second), second


def test_common_preset(tmp_path):
    s, log = start(tmp_path, "common")
    try:
        request(s, get("/c"))
        [line] = lines_of(log, 1)
    finally:
        s.stop()
    assert re.fullmatch(r'127\.0\.0\.1 - - ' + CLF_TIME + r' "GET /c HTTP/1\.1" 200 2', line), line


@pytest.mark.parametrize("fmt,message", [
    ("%h %Z", "--access-log-format: unknown atom %Z at position 4"),
    ('%h "%{Referer', "--access-log-format: unterminated %{ at position 5"),
    ("%h %", "--access-log-format: a lone % at the end"),
    ("%{x}Q", "--access-log-format: unknown atom %{x}Q at position 1"),
])
@pytest.mark.parametrize("workers", [[], ["--workers", "2"]], ids=["one", "workers"])
def test_bad_format_is_a_start_up_error(tmp_path, fmt, message, workers):
    rc, err = run_cli(["serve", "logs_app:app", "--bind", "127.0.0.1:0", "--chdir", str(APPS_DIR),
                       "--access-log", str(tmp_path / "a.log"), "--access-log-format", fmt,
                       *workers])
    assert rc == 2, err
    assert message in err, err
    # Before any worker started.
    assert "worker" not in err, err


def test_env_and_toml(tmp_path):
    s, log = start(tmp_path, None, env={"WSGI_GATEWAY_ACCESS_LOG_FORMAT": "env %m %U"},
                   name="env.log")
    try:
        request(s, get("/e"))
        [line] = lines_of(log, 1)
    finally:
        s.stop()
    assert line == "env GET /e"
    cfg = tmp_path / "gw.toml"
    cfg.write_text('access-log-format = "toml %>s \\"%r\\""\n')
    s, log = start(tmp_path, None, extra=["--config", str(cfg)], name="toml.log")
    try:
        request(s, get("/t"))
        [line] = lines_of(log, 1)
    finally:
        s.stop()
    assert line == 'toml 200 "GET /t HTTP/1.1"'


def test_json_under_workers(tmp_path):
    s, log = start(tmp_path, "%P %{x-resp}o %{SERVER_NAME}e", extra=["--workers", "2"])
    try:
        for i in range(20):
            request(s, get(f"/w/{i}"))
        lines = lines_of(log, 20)
    finally:
        assert s.stop() == 0
    assert len(lines) == 20
    for line in lines:
        pid, resp, name = line.split(" ")
        assert int(pid) != s.proc.pid  # a worker wrote it
        assert (resp, name) == ("from-app", "example.test")
