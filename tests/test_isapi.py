"""The ISAPI front end (libwsgi_gateway.so) driven by tests/isapi/host.c, "IIS in a test tube".

Part 1 proves the harness itself: a small correct C extension (isapi/ext_echo.c) passes every
check, and a broken one (isapi/ext_broken.c) is caught for each breach (HARNESS FAILURE, exit
status 3). Part 2 drives the library: what only ISAPI has (short reads, big server variables,
APPL_MD_PATH spellings, identity from IIS, disconnects, TerminateExtension, the queue,
configuration errors), the conformance body cases again with 1..7-byte reads, and the tests of
test_real_clients.py (hg, git) and test_framing.py run once more through the harness.
The request/environ cases shared with the other front ends run in test_conformance.py
(`-k isapi`). Every harness must end with exit status 0: no contract breach seen.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import http.client
import inspect
import json
import os
import socket
import threading
import time
import tomllib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from conformance.adapters import IsapiAdapter
from conformance.cases import CASES
import test_environ
import test_framing
from gwclient import RawConn
from gwprocess import APPS_DIR
from gwresponse import ConnClosed
from isapihost import IsapiHost, ServerView, build_extension, toml

# Real clients: the hg/git tests of test_real_clients.py run here once more, against the
# `front` fixture below (ISAPI). Importing them (and the fixtures they use) re-runs the same
# test bodies in this module; nothing is copied.
from test_real_clients import (VENV, Front, cenv, served_copies, source,  # noqa: F401
                               test_git_clone, test_git_push, test_hg_clone, test_hg_push,
                               work)

# ================================================================ part 1: the harness itself


@pytest.fixture(scope="module")
def test_extensions(tmp_path_factory):
    d = tmp_path_factory.mktemp("isapi-ext")
    return {name: build_extension(name, d) for name in ("ext_echo", "ext_broken")}


@pytest.fixture
def c_host(isapi_harness_binary, test_extensions, tmp_path):
    """make(ext_name, *args) -> a started harness around one of the C test extensions."""
    made = []

    def make(ext, *args):
        h = IsapiHost(isapi_harness_binary, tmp_path / f"h{len(made)}", args=args,
                      lib=test_extensions[ext])
        made.append(h)
        return h.start()

    yield make
    for h in made:
        h.kill()


def raw_request(host, data: bytes, method="GET", timeout=60.0):
    """Sends one request on a new connection; returns the Response (reads to EOF after)."""
    with RawConn(socket.create_connection(host.address(), timeout=timeout)) as c:
        c.send(data)
        r = c.read_response(method=method)
        r.trailing = c.read_to_eof()
    return r


def req(path, method="GET", headers=(), body=b"", host="t", close=True) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", f"Host: {host}"]
    lines += [f"{k}: {v}" for k, v in headers]
    if body:
        lines.append(f"Content-Length: {len(body)}")
    if close:
        lines.append("Connection: close")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def basic(user, password):
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def test_harness_serves_a_correct_extension_without_complaint(c_host):
    h = c_host("ext_echo", "--vdir", "/app")
    body = bytes(range(256)) * 400  # 100 KiB: more than the 48 KiB preload
    with RawConn(socket.create_connection(h.address(), timeout=30)) as c:
        # three requests on one keep-alive connection: PENDING, synchronous, chunked upload
        c.send(req("/app/x?q=1", "POST", body=body, close=False))
        r1 = c.read_response()
        c.send(req("/sync/a%C3%A9", close=False))
        r2 = c.read_response()
        chunked = b"".join(b"%x\r\n%s\r\n" % (len(body[i:i + 999]), body[i:i + 999])
                           for i in range(0, len(body), 999)) + b"0\r\n\r\n"
        c.send(b"POST /chunked HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
               + chunked)
        r3 = c.read_response()
        c.assert_open()
    assert (r1.status, r1.body) == (200, body)
    assert r1.header("x-available") == "49152" and r1.header("x-total") == str(len(body))
    assert r1.header("x-url") == "/app/x?q=1" and r1.header("x-query") == "q=1"
    assert r1.header("x-appl-md-path") == "/LM/W3SVC/1/ROOT/app"
    # size protocol: a 4-byte first buffer, then exactly the size the harness asked for
    assert r1.header("x-raw-tries") == "2" and int(r1.header("x-raw-len")) > 20
    assert r1.header("x-unknown-var") == "absent"
    assert r1.header("x-remote-user") == ""
    # IIS's narrow PATH_INFO is decoded and code-page-lossy: what the library must not use
    assert r2.header("x-path-info") == "/sync/a??"
    assert (r3.status, r3.chunked, r3.body) == (200, True, body)
    assert r3.header("x-total") == "4294967295"
    # The harness logs a PENDING request once DONE_WITH_SESSION has come, which may be just
    # after the client has the whole response: wait for that line before stopping.
    h.wait_access("/chunked")
    assert h.command("stats", "stats ").endswith("live=0 failures=0")
    assert h.stop() == 0, h.diagnostics()
    assert h.failures() == []
    ret = [(a["target"], a["ret"], a["done"]) for a in h.access()]
    assert ret == [("/app/x?q=1", "3", "2"), ("/sync/a%C3%A9", "2", "-0"), ("/chunked", "3", "2")]


@pytest.mark.parametrize("args, path, headers, expect", [
    (["--short-reads"], "/r", [], {"x-reads": lambda v: int(v) > 1000}),
    (["--preload", "0"], "/r", [], {"x-available": "0"}),
    (["--pad-var", "70000"], "/r", [], {"x-raw-len": lambda v: int(v) > 70000}),
    (["--root-spelling", "Root", "--vdir", "/App"], "/r", [],
     {"x-appl-md-path": "/LM/W3SVC/1/Root/App"}),
    (["--windows-user", "CORP\\alice"], "/r", [], {"x-remote-user": "CORP\\alice"}),
    (["--basic-user", "alice:pw"], "/r", [("Authorization", basic("alice", "pw"))],
     {"x-remote-user": "alice"}),
], ids=["short-reads", "no-preload", "pad-var", "root-spelling", "windows-user", "basic-user"])
def test_harness_options(c_host, args, path, headers, expect):
    h = c_host("ext_echo", *args)
    body = b"z" * 60000
    r = raw_request(h, req(path, "POST", headers, body))
    assert (r.status, r.body) == (200, body)
    for k, want in expect.items():
        assert (want(r.header(k)) if callable(want) else r.header(k) == want), (k, r.header(k))
    assert h.stop() == 0 and h.failures() == [], h.diagnostics()


def test_harness_refuses_wrong_basic_credentials_like_iis(c_host):
    h = c_host("ext_echo", "--basic-user", "alice:pw")
    wrong = [("Authorization", basic("alice", "no"))]
    assert raw_request(h, req("/r", headers=wrong)).status == 401
    # another scheme is not IIS Basic auth's business: anonymous
    r = raw_request(h, req("/r", headers=[("Authorization", "Bearer x")]))
    assert (r.status, r.header("x-remote-user")) == (200, "")
    assert h.stop() == 0


def test_harness_cuts_the_client_after_fail_write_after(c_host):
    h = c_host("ext_echo", "--fail-write-after", "1000")
    r = raw_request(h, req("/r", "POST", body=b"q" * 5000))
    assert r.status == 200 and r.body == b"q" * 1000 and not r.complete
    assert h.stop() == 0


BREACHES = [
    ("/done-twice", [], "DONE_WITH_SESSION called again (through the dead ECB) for request #1"),
    ("/done-on-sync", [], "DONE_WITH_SESSION called, but HttpExtensionProc returned 1"),
    ("/write-ecb-after-done", [], "its ECB was written after DONE_WITH_SESSION"),
    ("/call-after-done", [], "WriteClient called through the dead ECB of request #1"),
    ("/cached-call-after-done", [], "WriteClient for request #1 (GET /cached-call-after-done) "
                                    "after its DONE_WITH_SESSION"),
    ("/write-before-header", [], "WriteClient before SEND_RESPONSE_HEADER_EX"),
    ("/header-twice", [], "SEND_RESPONSE_HEADER_EX called twice"),
    ("/header-no-blank-line", [], "pszHeader does not end with \\r\\n\\r\\n"),
    ("/status-with-version", [], "is not \"NNN Reason\" (no HTTP version)"),
    ("/wrong-status-code", [], "dwHttpStatusCode 200 at DONE_WITH_SESSION, but the response "
                               "status is 404"),
    ("/never-done", ["--done-timeout", "1"], "no DONE_WITH_SESSION within 1s"),
    ("/never-done", [], "still pending when TerminateExtension returned"),
]


@pytest.mark.parametrize("path, args, says", BREACHES,
                         ids=[b[0][1:] + ("-timeout" if b[1] else "") for b in BREACHES])
def test_harness_catches_a_broken_extension(c_host, path, args, says):
    h = c_host("ext_broken", *args)
    if path == "/never-done" and not args:
        # the request stays pending; EOF on stdin terminates with it in flight
        s = socket.create_connection(h.address(), timeout=30)
        s.sendall(req(path))
        h.wait_out("pending #1 ")
        rc = h.stop()
        s.close()
    else:
        with socket.create_connection(h.address(), timeout=30) as s:
            s.sendall(req(path))
            while s.recv(65536):  # whatever comes (it may be malformed), up to EOF
                pass
        rc = h.stop()
    assert rc == 3, h.diagnostics()
    assert any(says in f for f in h.failures()), h.diagnostics()


def test_harness_keeps_alive_only_a_delimited_response(c_host):
    h = c_host("ext_broken")
    s = socket.create_connection(h.address(), timeout=30)
    s.sendall(req("/keep-undelimited", close=False))
    data = b""
    while chunk := s.recv(65536):  # the harness refuses to keep it: EOF ends the body
        data += chunk
    s.close()
    assert data.endswith(b"no length\n")
    assert h.stop() == 3
    assert any("not self-delimited" in f for f in h.failures()), h.diagnostics()


def test_harness_answers_unknown_server_support_codes_with_false(c_host):
    h = c_host("ext_broken")
    r = raw_request(h, req("/unknown-code"))
    assert r.body == b"FALSE\n"
    assert h.stop() == 0 and h.failures() == [], h.diagnostics()


def test_harness_catches_terminate_returning_under_a_blocked_callback(c_host):
    # ext_broken's TerminateExtension returns at once, while its thread is still inside a
    # ReadClient the harness stalls (no CLOSE_CONNECTION ever comes)
    h = c_host("ext_broken")
    s = socket.create_connection(h.address(), timeout=30)
    s.sendall(req("/read-in-thread", headers=[("X-Harness-Stall", "read")]))
    h.wait_out("stalled #1 ReadClient")
    done = fields_of(h.command("terminate", "terminated "))
    assert done["inside"] == "1", done
    assert h.stop() == 3
    s.close()
    assert any("TerminateExtension returned while 1 worker thread(s) were inside IIS "
               "callbacks" in f for f in h.failures()), h.diagnostics()


# ================================================================ part 2: the library

# An app written into each test's directory: requests that wait for the test's event.
GATE_APP = '''
import os, time

DIR = {dir!r}


def _wait(name):
    deadline = time.monotonic() + 120
    while not os.path.exists(os.path.join(DIR, name)) and time.monotonic() < deadline:
        time.sleep(0.01)  # waiting for the test's event (a file appearing), bounded
    return os.path.exists(os.path.join(DIR, name))


class Body:
    """A response iterable whose close() leaves a marker file <name>.closed."""

    def __init__(self, name, pieces):
        self.name, self.pieces = name, pieces

    def __iter__(self):
        return iter(self.pieces)

    def close(self):
        open(os.path.join(DIR, self.name + ".closed"), "w").close()


def application(environ, start_response):
    kind, _, name = environ["PATH_INFO"].strip("/").partition("/")
    if kind == "gate":   # /gate/<name>: <name>.started, then wait for the file "open"
        open(os.path.join(DIR, name + ".started"), "w").close()
        body = b"gate passed\\n" if _wait("open") else b"gate closed\\n"
        start_response("200 OK", [("Content-Type", "text/plain"),
                                  ("Content-Length", str(len(body)))])
        return Body(name, [body])
    if kind == "big":    # /big/<name>: 1 MiB in 64 KiB pieces, with Content-Length
        start_response("200 OK", [("Content-Type", "application/octet-stream"),
                                  ("Content-Length", str(1 << 20))])
        return Body(name, [b"b" * 65536] * 16)
    start_response("404 Not Found", [("Content-Length", "0")])
    return []
'''


@pytest.fixture
def gate(tmp_path):
    """A directory with the gate app; returns (config, dir)."""
    d = tmp_path / "gate"
    d.mkdir()
    (d / "isapi_gate_app.py").write_text(GATE_APP.format(dir=str(d)))
    return {"app": "isapi_gate_app", "pythonpath": [str(APPS_DIR), str(d)]}, d


def wait_file(path, timeout=60.0):
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.01)  # bounded poll for the app's marker file


def get_json(host, path, headers=(), body=b"", method="GET"):
    r = raw_request(host, req(path, method, headers, body), method)
    assert r.status == 200, (r, host.diagnostics())
    return json.loads(r.body)


def echo_host(isapi_factory, *args, config=None, **kw):
    return isapi_factory({"app": "echo_app", **(config or {})}, ["--vdir", "/app", *args], **kw)


def test_get_extension_version_describes_the_gateway(isapi_factory):
    h = isapi_factory()
    line = h.wait_out("extension: ")
    assert line.startswith("extension: wsgi-gateway") and "(version 0x00060000)" in line
    assert "ISAPI extension ready" in h.error_log()


def test_python_c_extension_modules_load_when_the_host_dlopens_locally(isapi_factory):
    """A host dlopens an extension RTLD_LOCAL; Python's C modules (_hashlib, _json, ...)
    still need libpython's symbols, which on Windows come from python3X.dll by name."""
    h = isapi_factory({"app": "conformance_app"}, ["--vdir", "/app"], rtld_global=False)
    r = raw_request(h, req("/app/x", "POST", body=b"abc"))
    assert r.status == 200, (r.body[:300], h.error_log()[-3000:])
    assert json.loads(r.body)["read"]["sha256"] == hashlib.sha256(b"abc").hexdigest()


@pytest.mark.parametrize("chunked", [False, True], ids=["length", "chunked"])
def test_short_reads_still_deliver_the_whole_body(isapi_factory, chunked):
    h = echo_host(isapi_factory, "--short-reads", "--preload", "1000")
    body = bytes((i * 31) & 0xFF for i in range(200_000))
    if chunked:
        data = (b"POST /app/d HTTP/1.1\r\nHost: t\r\nX-Digest: 1\r\nConnection: close\r\n"
                b"Transfer-Encoding: chunked\r\n\r\n%x\r\n%s\r\n0\r\n\r\n" % (len(body), body))
    else:
        data = req("/app/d", "POST", [("X-Digest", "1")], body)
    r = raw_request(h, data, "POST", timeout=180)  # ~30000 ReadClient calls: slow on a busy box
    assert r.status == 200, h.diagnostics()
    assert json.loads(r.body) == {"length": len(body),
                                  "sha256": hashlib.sha256(body).hexdigest()}
    assert int(h.wait_access("/app/d")["reads"]) > 200_000 // 7  # really read in slivers
    assert h.stop() == 0 and h.failures() == [], h.diagnostics()


def test_server_variables_bigger_than_any_first_buffer(isapi_factory):
    h = echo_host(isapi_factory, "--pad-var", "100000")
    env = get_json(h, "/app/x", [("X-Small", "s")])
    assert env["HTTP_X_HARNESS_PAD"] == "p" * 100000
    assert env["HTTP_X_SMALL"] == "s"
    assert h.stop() == 0 and h.failures() == []


def test_path_info_comes_from_unencoded_url_never_the_narrow_path(isapi_factory):
    # the harness's PATH_INFO / URL / lpszPathInfo carry '?' for bytes >= 0x80, like IIS's
    # ANSI-code-page forms; %2F is decoded there too
    h = echo_host(isapi_factory)
    env = get_json(h, "/app/caf%C3%A9/a%2Fb%3F?x=%2F")
    assert env["PATH_INFO"] == "/caf\xc3\xa9/a/b?"
    assert env["REQUEST_URI"] == "/app/caf%C3%A9/a%2Fb%3F?x=%2F"
    assert env["QUERY_STRING"] == "x=%2F"
    assert h.stop() == 0


@pytest.mark.parametrize("root", ["ROOT", "Root"])
def test_mount_point_from_appl_md_path_in_either_spelling(isapi_factory, root):
    h = isapi_factory({"app": "echo_app"}, ["--vdir", "/App", "--root-spelling", root])
    for prefix in ("/App", "/app", "/APP"):
        env = get_json(h, prefix + "/x/y")
        # the request's own spelling of the mount (IIS matches it case-insensitively)
        assert (env["SCRIPT_NAME"], env["PATH_INFO"]) == (prefix, "/x/y")
    assert get_json(h, "/app")["PATH_INFO"] == ""
    for outside in ("/application/x", "/other", "/"):
        assert raw_request(h, req(outside)).status == 404
        a = h.wait_access(outside)
        assert (a["ret"], a["done"]) in (("1", "-0"), ("2", "-0")), a  # answered at once
    assert h.stop() == 0 and h.failures() == [], h.diagnostics()


def test_http_url_is_the_fallback_for_unencoded_url(isapi_factory):
    h = echo_host(isapi_factory, "--hide-var", "UNENCODED_URL")
    env = get_json(h, "/app/caf%C3%A9/a%2Fb?x=1")
    assert (env["PATH_INFO"], env["QUERY_STRING"]) == ("/caf\xc3\xa9/a/b", "x=1")
    assert env["REQUEST_URI"] == "/app/caf%C3%A9/a%2Fb?x=1"


def test_without_appl_md_path_the_app_is_at_the_root(isapi_factory):
    h = isapi_factory({"app": "echo_app"}, ["--hide-var", "APPL_MD_PATH"])
    env = get_json(h, "/app/x")
    assert (env["SCRIPT_NAME"], env["PATH_INFO"]) == ("", "/app/x")


@pytest.mark.parametrize("args", [["--https"], ["--https", "--hide-var", "HTTPS"]],
                         ids=["https-on", "server-port-secure"])
def test_https_from_the_server_variables(isapi_factory, args):
    h = echo_host(isapi_factory, *args)
    env = get_json(h, "/app/x", [("X-Forwarded-Proto", "http")])
    assert env["wsgi.url_scheme"] == "https"


def test_all_raw_with_bare_newlines(isapi_factory):
    h = echo_host(isapi_factory, "--all-raw-lf")
    env = get_json(h, "/app/x", [("X-One", "1"), ("Cookie", "a=1"), ("Cookie", "b=2")])
    assert (env["HTTP_X_ONE"], env["HTTP_COOKIE"], env["HTTP_HOST"]) == ("1", "a=1; b=2", "t")
    assert not [k for k, v in env.items() if isinstance(v, str) and "\r" in v]


def test_script_name_from_the_configuration_wins_over_appl_md_path(isapi_factory):
    h = echo_host(isapi_factory, config={"script-name": "/mnt"})
    env = get_json(h, "/mnt/x")
    assert (env["SCRIPT_NAME"], env["PATH_INFO"]) == ("/mnt", "/x")
    assert raw_request(h, req("/app/x")).status == 404


def test_client_disconnect_during_write_client_is_not_an_app_error(isapi_factory, gate):
    config, d = gate
    h = isapi_factory(config, ["--fail-write-after", "100000"])
    mark = h.log_mark()
    r = raw_request(h, req("/big/one"))
    assert r.status == 200 and not r.complete and len(r.body) == 100000
    wait_file(d / "one.closed")  # the app's iterable was closed all the same
    a = h.wait_access("/big/one")
    assert a["log"] == "client disconnected" and a["keep"] == "0", a
    log = h.error_log_since(mark)
    assert "Traceback" not in log and "error in WSGI app" not in log, log
    assert h.stop() == 0 and h.failures() == [], h.diagnostics()


def test_client_gone_while_the_app_reads_the_body(isapi_factory):
    h = echo_host(isapi_factory, "--preload", "0")
    mark = h.log_mark()
    s = socket.create_connection(h.address(), timeout=30)
    s.sendall(b"POST /app/r HTTP/1.1\r\nHost: t\r\nContent-Length: 100000\r\n\r\n" + b"x" * 10)
    h.wait_pending("/app/r")
    s.close()  # 99990 bytes short
    a = h.wait_access("/app/r")
    assert a["status"] != "500", a  # nobody is sent a 500 for the client's own departure
    log = h.wait_log("client went away", since=mark)
    assert "Traceback" not in log, log
    assert h.stop() == 0 and h.failures() == [], h.diagnostics()


def test_many_concurrent_clients_on_keep_alive_connections(isapi_factory):
    h = echo_host(isapi_factory, config={"threads": 8})
    errors = []

    def client(n):
        c = http.client.HTTPConnection(h.host, h.port, timeout=120)
        try:
            for i in range(5):
                body = f"client {n} request {i} ".encode() * (n + 1)
                c.request("POST", f"/app/c{n}/{i}", body=body, headers={"X-Read": "n"})
                resp = c.getresponse()
                env = json.loads(resp.read())
                if resp.status != 200 or env["_body"] != body.decode() \
                        or env["PATH_INFO"] != f"/c{n}/{i}":
                    errors.append((n, i, resp.status))
        finally:
            c.close()

    with ThreadPoolExecutor(40) as pool:
        list(pool.map(client, range(40)))
    assert errors == []
    # the harness logs a request after its response went out: wait for each line
    for n in range(40):
        for i in range(5):
            assert h.wait_access(f"/app/c{n}/{i}")["status"] == "200"
    assert len(h.access()) == 200
    assert h.stop() == 0 and h.failures() == [], h.diagnostics()


def open_gate_requests(h, names):
    """One connection per name, each sending GET /gate/<name>; returns the sockets."""
    socks = []
    for n in names:
        s = socket.create_connection(h.address(), timeout=60)
        s.sendall(req(f"/gate/{n}"))
        socks.append(s)
    return socks


def read_all(s):
    c = RawConn(s)
    try:
        r = c.read_response()
    except (AssertionError, ConnClosed, OSError) as e:  # closed without a (whole) response
        return None, str(e)
    finally:
        c.close()
    return r, ""


def test_terminate_drains_requests_in_flight_and_a_reload_works(isapi_factory, gate):
    config, d = gate
    h = isapi_factory({**config, "graceful-timeout": 60})
    socks = open_gate_requests(h, ["a", "b", "c"])
    for n in "abc":
        wait_file(d / f"{n}.started")
    mark = h.send("terminate")
    assert h.wait_out("terminating", mark) == "terminating in_flight=3"
    (d / "open").touch()
    done = fields_of(h.wait_out("terminated ", mark))
    assert done["left_pending"] == "0" and done["ok"] == "1"
    for s in socks:
        r, err = read_all(s)
        assert r is not None and (r.status, r.body, r.complete) == (200, b"gate passed\n", True)
    assert h.command("reload", "reload") == "reloaded"
    assert raw_request(h, req("/gate/d")).body == b"gate passed\n"
    assert h.stop() == 0 and h.failures() == [], h.diagnostics()


def fields_of(line):
    return dict(w.split("=", 1) for w in line.split() if "=" in w)


def test_terminate_with_a_stuck_app_returns_within_graceful_timeout(isapi_factory, gate):
    config, d = gate
    h = isapi_factory({**config, "graceful-timeout": 2})
    (s,) = open_gate_requests(h, ["stuck"])
    wait_file(d / "stuck.started")
    done = fields_of(h.command("terminate", "terminated "))
    assert float(done["seconds"]) < 2 + 5, done
    assert (done["in_flight"], done["left_pending"]) == ("1", "0")
    # Nothing had gone out: the terminating thread answers 503 itself, then
    # DONE_WITH_SESSION(HSE_STATUS_SUCCESS)
    a = h.wait_access("/gate/stuck")
    assert (a["done"], a["keep"], a["log"]) == ("1", "0", "shutting down"), a
    r, _ = read_all(s)
    assert r is not None and r.status == 503 and r.complete, r
    # the app finishes later: the library must not touch that ECB any more
    (d / "open").touch()
    wait_file(d / "stuck.closed")
    assert h.command("stats", "stats ").endswith("failures=0"), h.diagnostics()
    assert h.stop() == 0 and h.failures() == [], h.diagnostics()


def test_queue_full_is_503_at_once(isapi_factory, gate):
    config, d = gate
    h = isapi_factory({**config, "threads": 1, "queue-size": 1})
    socks = open_gate_requests(h, ["a"])
    wait_file(d / "a.started")  # the only worker is busy
    socks += open_gate_requests(h, ["b"])
    h.wait_pending("/gate/b")  # the queue's only place is taken
    r = raw_request(h, req("/gate/c"))
    assert r.status == 503
    a = h.wait_access("/gate/c")
    assert a["ret"] in ("1", "2") and a["done"] == "-0" and a["log"] == "queue full", a
    assert not (d / "c.started").exists()
    (d / "open").touch()
    for s in socks:
        r, err = read_all(s)
        assert r is not None and r.body == b"gate passed\n", err
    assert h.stop() == 0 and h.failures() == [], h.diagnostics()


def test_terminate_completes_queued_requests_without_running_them(isapi_factory, gate):
    config, d = gate
    h = isapi_factory({**config, "threads": 1, "queue-size": 4, "graceful-timeout": 2})
    (a,) = open_gate_requests(h, ["a"])
    wait_file(d / "a.started")  # the only worker is stuck in the app
    (b,) = open_gate_requests(h, ["b"])
    h.wait_pending("/gate/b")  # queued behind it
    done = fields_of(h.command("terminate", "terminated "))
    assert (done["in_flight"], done["left_pending"]) == ("2", "0"), done
    r, err = read_all(b)
    assert r is not None and r.status == 503, (r, err)
    # neither response had started: each gets a 503 from the terminating thread, then
    # DONE_WITH_SESSION(HSE_STATUS_SUCCESS)
    for name in ("a", "b"):
        acc = h.wait_access(f"/gate/{name}")
        assert (acc["done"], acc["keep"], acc["log"]) == ("1", "0", "shutting down"), acc
    assert not (d / "b.started").exists()
    (d / "open").touch()
    wait_file(d / "a.closed")
    a.close()
    assert h.stop() == 0 and h.failures() == [], h.diagnostics()


@pytest.mark.parametrize("stall", ["read", "write"])
def test_terminate_closes_a_transfer_blocked_in_iis_and_waits_for_it(isapi_factory, stall):
    # A client that neither sends nor reads: the worker is inside a synchronous ReadClient
    # (WriteClient) that returns only once the connection is closed. TerminateExtension
    # must close it (HSE_REQ_CLOSE_CONNECTION), wait for the worker to leave IIS's call, end
    # the request with one DONE_WITH_SESSION, and only then return: IIS frees the ECB and
    # unloads the DLL after that.
    h = echo_host(isapi_factory, "--preload", "0", config={"graceful-timeout": 1})
    body = b"x" * 100
    s = socket.create_connection(h.address(), timeout=60)
    s.sendall(req("/app/stalled", "POST", [("X-Harness-Stall", stall), ("X-Read", "all")],
                  body))
    call = "ReadClient" if stall == "read" else "WriteClient"
    line = h.wait_out("stalled #")
    n = line.split()[1]
    assert line == f"stalled {n} {call}"
    done = fields_of(h.command("terminate", "terminated ", timeout=90))
    assert (done["inside"], done["left_pending"], done["ok"]) == ("0", "0", "1"), done
    assert h.wait_out(f"unstalled {n} ") == f"unstalled {n} {call} by close"
    a = h.wait_access("/app/stalled")
    assert (a["ret"], a["dones"], a["keep"]) == ("3", "1", "0"), a
    assert a["done"] == "4", a  # the response was cut off: HSE_STATUS_ERROR
    s.close()
    assert h.command("stats", "stats ").endswith("failures=0"), h.diagnostics()
    assert h.stop() == 0 and h.failures() == [], h.diagnostics()


def flood(h, stop, counts, path):
    """Sends requests on new connections until `stop` is set; counts statuses."""
    while not stop.is_set():
        try:
            with socket.create_connection(h.address(), timeout=60) as s:
                s.sendall(req(path))
                data = b""
                while chunk := s.recv(65536):
                    data += chunk
        except OSError:
            counts["error"] = counts.get("error", 0) + 1
            continue
        status = data[9:12].decode("latin-1", "replace")
        counts[status] = counts.get(status, 0) + 1


def one_completion_each(h):
    """Every request finished exactly once: a final status returned by HttpExtensionProc
    and no DONE_WITH_SESSION, or PENDING and exactly one DONE_WITH_SESSION."""
    bad = [a for a in h.access()
           if (a["ret"], a["dones"]) != ("3", "1") and not (a["ret"] != "3" and a["dones"] == "0")]
    return bad


@pytest.mark.parametrize("graceful", ["0.001", "20"], ids=["cancel-at-once", "drain"])
def test_queue_refusals_racing_terminate_complete_each_request_once(isapi_factory, graceful):
    # Many concurrent sessions against a one-place queue (most are refused with 503), and
    # TerminateExtension called while 16 HttpExtensionProc calls are let go with it
    # (`terminate-racing 16`), over several rounds (reload in between). A session refused
    # (queue full, or closed by TerminateExtension) must never also be ended by
    # TerminateExtension: exactly one completion each. And a refusal must wake a
    # TerminateExtension that waits for requests in flight: the echo app is quick, so with
    # nothing slow in flight it must never sit out its graceful timeout.
    h = echo_host(isapi_factory, config={"threads": 1, "queue-size": 1,
                                         "graceful-timeout": graceful})
    stop = threading.Event()
    counts: dict = {}
    clients = [threading.Thread(target=flood, args=(h, stop, counts, "/app/f"), daemon=True)
               for _ in range(24)]
    for t in clients:
        t.start()
    rounds = []
    try:
        for _ in range(60):
            done = fields_of(h.command("terminate-racing 16", "terminated ", timeout=90))
            rounds.append(done)
            assert h.command("reload", "reload") == "reloaded"
            if h.failures() or float(done["seconds"]) > 10:
                break
    finally:
        stop.set()
        for t in clients:
            t.join(90)
    assert h.stop() == 0 and h.failures() == [], (rounds, h.diagnostics())
    assert one_completion_each(h) == [], one_completion_each(h)[:5]
    assert counts.get("503", 0) > 0 and counts.get("200", 0) > 0, counts
    assert all(int(r["racing"]) > 0 for r in rounds), rounds
    slow = [r for r in rounds if float(r["seconds"]) > 10]
    assert slow == [], rounds


def test_app_errors_are_logged_and_marked_in_the_iis_log(isapi_factory):
    h = isapi_factory({"app": "conformance_app"}, ["--vdir", "/app"])
    mark = h.log_mark()
    r = raw_request(h, req("/app/_/raise"))
    assert r.status == 500 and b"conformance-secret" not in r.body
    a = h.wait_access("/app/_/raise")
    assert (a["ecb_status"], a["log"]) == ("500", "app error"), a
    r = raw_request(h, req("/app/_/raise-after-cl"))
    assert r.status == 200 and not r.complete
    a = h.wait_access("/app/_/raise-after-cl")
    # aborted: CLOSE_CONNECTION, then DONE_WITH_SESSION(HSE_STATUS_ERROR)
    assert (a["done"], a["keep"], a["log"]) == ("4", "0", "app error"), a
    log = h.wait_log("conformance-secret-after-cl", since=mark)
    assert log.count("Traceback") == 2 and "error in WSGI app" in log
    assert h.stop() == 0 and h.failures() == [], h.diagnostics()


def test_environment_overrides_and_relative_paths_in_the_configuration(isapi_factory):
    # relative paths are relative to the configuration file's directory
    h = isapi_factory(start=False, env={"WSGI_GATEWAY_SCRIPT_NAME": "/env"})
    rel = os.path.relpath(APPS_DIR, h.workdir)
    h.config_text = (f'app = "echo_app"\npythonpath = {json.dumps(rel)}\n'
                     'error-log = "relative.log"\n')
    h.start()
    env = get_json(h, "/env/x")
    assert (env["SCRIPT_NAME"], env["PATH_INFO"]) == ("/env", "/x")
    assert "ISAPI extension ready" in (h.workdir / "relative.log").read_text()
    assert h.stop() == 0


BODY_CASES = [c for c in CASES if c["id"].startswith("body-")]


@pytest.fixture(scope="module")
def sliver_reads(request, isapi_harness, tmp_path_factory):
    """The conformance app behind a harness whose ReadClient returns 1..7 bytes a call and
    whose preload (lpbData) holds 7 bytes at most."""
    h = IsapiHost(isapi_harness, tmp_path_factory.mktemp("isapi-slivers"),
                  {"app": "conformance_app"},
                  ["--vdir", "/app", "--short-reads", "--preload", "7"]).start()
    ad = IsapiAdapter(request, host=h)
    ad.io_timeout = 180.0  # 1 MiB in 1..7-byte reads takes a while on a busy machine
    yield ad
    assert h.stop() == 0 and h.failures() == [], h.diagnostics()


@pytest.mark.parametrize("case", BODY_CASES, ids=[c["id"] for c in BODY_CASES])
def test_body_cases_with_sliver_reads(sliver_reads, case):
    res = sliver_reads.run(case)
    want = {**case["expect"], **case["overrides"].get("isapi", {})}
    assert res.status == want["status"], sliver_reads.diagnostics()
    if want["status"] == 200 and want.get("read"):
        for key in ("len", "sha256", "data"):
            if key in want["read"]:
                assert res.read[key] == want["read"][key], key


SPOOF = [("Remote-User", "mallory"), ("Remote_User", "mallory"), ("X-Forwarded-User", "mallory"),
         ("X_Forwarded_User", "mallory"), ("X-Remote-User", "mallory")]


def test_remote_user_comes_from_iis_only(isapi_factory):
    h = echo_host(isapi_factory, "--windows-user", "CORP\\alice")
    env = get_json(h, "/app/who", SPOOF)
    assert (env["REMOTE_USER"], env["AUTH_TYPE"]) == ("CORP\\alice", "Negotiate")
    leaked = {k: v for k, v in env.items() if isinstance(v, str) and "mallory" in v}
    assert leaked == {}


def test_anonymous_iis_request_with_identity_headers_has_no_user(isapi_factory):
    h = echo_host(isapi_factory, "--basic-user", "alice:s3cret")
    env = get_json(h, "/app/who", SPOOF)
    assert "REMOTE_USER" not in env and "AUTH_TYPE" not in env
    assert not [k for k, v in env.items() if isinstance(v, str) and "mallory" in v]
    # an IIS Basic login: the user, never the password (IIS has it in AUTH_PASSWORD)
    env = get_json(h, "/app/who", [("Authorization", basic("alice", "s3cret"))])
    assert (env["REMOTE_USER"], env["AUTH_TYPE"]) == ("alice", "Basic")
    assert not [k for k, v in env.items() if isinstance(v, str) and "s3cret" in v]
    assert "AUTH_PASSWORD" not in env


@pytest.mark.parametrize("trusted", [False, True], ids=["untrusted", "trusted-proxy"])
def test_the_shared_trust_options_apply_to_isapi(isapi_factory, trusted):
    config = {"identity-header": ["X-Auth-User"]}
    if trusted:
        config["forwarded-allow-ips"] = "127.0.0.1"
    h = echo_host(isapi_factory, config=config)
    env = get_json(h, "/app/x", [("X-Forwarded-For", "198.51.100.1, 203.0.113.7"),
                                 ("X-Forwarded-Proto", "https"), ("X-Auth-User", "admin"),
                                 ("X-Other-User", "kept")])
    if trusted:  # the proxy in front of IIS is believed
        assert (env["REMOTE_ADDR"], env["wsgi.url_scheme"]) == ("203.0.113.7", "https")
        assert env["HTTP_X_AUTH_USER"] == "admin"
    else:
        assert (env["REMOTE_ADDR"], env["wsgi.url_scheme"]) == ("127.0.0.1", "http")
        assert "HTTP_X_AUTH_USER" not in env and "HTTP_X_FORWARDED_FOR" not in env
    assert env["HTTP_X_OTHER_USER"] == "kept"
    assert "REMOTE_USER" not in env  # never from a header, trusted or not


def test_the_process_environment_never_reaches_environ(isapi_factory):
    polluted = {"HTTP_HOST": "evil", "REMOTE_USER": "mallory", "CONTENT_LENGTH": "999",
                "SERVER_NAME": "evil.example", "GW_TEST_PROCESS_VAR": "leak"}
    h = echo_host(isapi_factory, env=polluted)
    env = get_json(h, "/app/x")
    assert env["HTTP_HOST"] == "t" and env["SERVER_NAME"] == "t"
    for k in ("REMOTE_USER", "CONTENT_LENGTH", "GW_TEST_PROCESS_VAR", "PATH", "HOME"):
        assert k not in env, k


def test_limits_answered_at_once(isapi_factory):
    h = echo_host(isapi_factory, config={"max-body-size": 100, "header-underscores": "refuse"})
    assert raw_request(h, req("/app/big", "POST", body=b"x" * 101)).status == 413
    assert raw_request(h, req("/app/u", headers=[("X_Under", "1")])).status == 400
    for target in ("/app/big", "/app/u"):
        a = h.wait_access(target)
        assert a["done"] == "-0" and a["ret"] in ("1", "2"), a
    # a chunked body over the limit is found out while reading
    data = (b"POST /app/c HTTP/1.1\r\nHost: t\r\nConnection: close\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n%x\r\n%s\r\n0\r\n\r\n" % (200, b"y" * 200))
    assert raw_request(h, data, "POST").status == 413
    assert h.stop() == 0 and h.failures() == [], h.diagnostics()


def test_requests_share_one_keep_alive_connection(isapi_factory):
    h = isapi_factory({"app": "conformance_app"}, ["--vdir", "/app"])
    with RawConn(socket.create_connection(h.address(), timeout=30)) as c:
        for target, method, body in [("/app/_/fixed", "GET", b""), ("/app/_/stream/3", "GET", b""),
                                     ("/app/x", "POST", b"abc"), ("/app/_/fixed", "HEAD", b""),
                                     ("/app/_/status/204", "GET", b"")]:
            c.send(req(target, method, body=body, close=False))
            r = c.read_response(method=method)
            assert r.status in (200, 204) and r.complete, r
        c.assert_open()
    assert h.stop() == 0 and h.failures() == [], h.diagnostics()
    # after the harness exited, every access line has been read
    acc = h.access()
    assert len(acc) == 5 and all(a["keep"] == "1" for a in acc), acc


CONFIG_ERRORS = [
    ("missing-file", None, None, {"WSGI_GATEWAY_CONFIG": "/nonexistent/gw.toml"},
     "/nonexistent/gw.toml"),
    ("bad-toml", None, 'app = "echo_app"\nthis is not toml\n', {}, "wsgi-gateway.toml"),
    ("unknown-key", {"frobnicate": 1}, None, {}, "frobnicate"),
    ("listener-key", {"bind": "0.0.0.0:80"}, None, {}, "bind"),
    ("import-error", {"app": "broken_import"}, None, {}, "broken_import"),
    ("not-callable", {"app": "bad_module:not_callable"}, None, {}, "not callable"),
]


@pytest.mark.parametrize("config, text, env, says", [c[1:] for c in CONFIG_ERRORS],
                         ids=[c[0] for c in CONFIG_ERRORS])
def test_configuration_errors_make_get_extension_version_fail(isapi_factory, config, text,
                                                              env, says):
    h = isapi_factory(config, start=False, env=env, config_text=text)
    h.launch()
    assert h.wait_exit() == 2, h.diagnostics()
    errors = [line for line in h.err_lines if line.startswith("wsgi-gateway: error:")]
    assert len(errors) == 1 and says in errors[0], h.diagnostics()
    assert "harness: GetExtensionVersion returned FALSE" in h.err_lines
    if config and "app" in config:  # the configuration was read: its error log has it too
        message = errors[0][len("wsgi-gateway: error: "):]
        assert h.error_log().count(message) == 1, h.error_log()
    if says == "wsgi-gateway.toml" or config and "app" not in config:
        assert str(h.config_path) in errors[0]


# The wsgi-gateway.toml install-iis writes for a Kallithea machine (test_install_iis.py).
GOLDEN_SETTINGS = Path(__file__).parent / "golden" / "install-iis" / "kallithea" / "wsgi-gateway.toml"


def golden_settings(**local) -> dict:
    """Every key of that file, with the values that name files of the Windows machine (the
    ini, the venv, the log) replaced by local ones: python-dll and core stay as written."""
    settings = tomllib.loads(GOLDEN_SETTINGS.read_text())
    del settings["paste"]
    assert {"python-dll", "core", "venv", "error-log"} <= set(settings)
    return {**settings, **local}


def loader_config(tmp_path, config: dict) -> Path:
    """A wsgi-gateway.toml in an application directory of its own, as the loader finds it."""
    app_dir = tmp_path / "app dir"
    app_dir.mkdir()
    conf = app_dir / "wsgi-gateway.toml"
    conf.write_text(toml(config))
    return conf


def test_the_file_the_loader_names_is_the_configuration(isapi_factory, tmp_path):
    """The loader passes the wsgi-gateway.toml it read to WsgiGatewayIsapiConfigure (the
    harness's --configure does the same): the core reads that file, not the one
    WSGI_GATEWAY_CONFIG names (here a broken app) nor one beside itself, resolves its
    relative paths against that file's folder, and accepts every key install-iis writes
    (python-dll and core are the loader's)."""
    conf = loader_config(tmp_path, golden_settings(app="echo_app", pythonpath=[str(APPS_DIR)],
                                                   venv=str(VENV), **{"error-log": "served.log"}))
    h = isapi_factory({"app": "broken_import"}, ["--vdir", "/app", "--configure", str(conf)])
    assert get_json(h, "/app/x")["SCRIPT_NAME"] == "/app"
    served = (conf.parent / "served.log").read_text()
    assert "ISAPI extension ready" in served and str(conf) in served, served


def test_a_start_failure_is_logged_beside_the_loaders_configuration(isapi_factory, tmp_path):
    conf = loader_config(tmp_path, golden_settings(app="echo_app", frobnicate=1))
    h = isapi_factory(None, ["--configure", str(conf)], start=False)
    h.launch()
    assert h.wait_exit() == 2, h.diagnostics()
    errors = [line for line in h.err_lines if line.startswith("wsgi-gateway: error:")]
    assert len(errors) == 1 and "frobnicate" in errors[0], h.diagnostics()
    log = (conf.parent / "wsgi-gateway.log").read_text()
    assert log.count(errors[0]) == 1, log


class IsapiFront(Front):
    """hgweb and dulwich's git server, each in its own harness, started on first use (so a
    host that cannot start fails only the tests that use it)."""

    def __init__(self, base, harness, hg_repo, git_root):
        self.hosts = {}
        super().__init__("isapi", hg_repo, git_root)
        common = {"pythonpath": [str(APPS_DIR)], "venv": str(VENV)}
        # the apps read HG_REPO / GIT_ROOT from os.environ: the harness process's environment
        self.specs = {
            "hg": (base / "hg-host", {**common, "app": "hgweb_app"}, [],
                   {"HG_REPO": str(hg_repo)}, "/"),
            "git": (base / "git-host", {**common, "app": "git_app"}, ["--vdir", "/git"],
                    {"GIT_ROOT": str(git_root)}, "/git/repo.git"),
        }
        self.harness = harness
        self._log = lambda: "\n".join(f"[{k}]\n{h.diagnostics()}" for k, h in self.hosts.items())
        self._alive = lambda: all(h.alive() for h in self.hosts.values())

    def _url(self, kind):
        if kind not in self.hosts:
            workdir, config, args, env, path = self.specs[kind]
            host = IsapiHost(self.harness, workdir / f"try{len(self.hosts)}", config, args,
                             env=env)
            host.start()  # raises (with the library's log) when GetExtensionVersion fails
            self.hosts[kind] = host
        return self.hosts[kind].url(self.specs[kind][4])

    hg_url = property(lambda self: self._url("hg"), lambda self, v: None)
    git_url = property(lambda self: self._url("git"), lambda self, v: None)


@pytest.fixture(scope="module", params=["isapi"])
def front(request, work, source, cenv, isapi_harness):  # noqa: F811 (test_real_clients)
    base = work / "isapi"
    hg_repo, git_root = served_copies(base, source, cenv)
    fe = IsapiFront(base, isapi_harness, hg_repo, git_root)
    yield fe
    problems = []
    for name, h in fe.hosts.items():
        rc = h.stop()
        if rc != 0 or h.failures():
            problems.append(f"{name} harness exited with {rc}: {h.failures()[:10]}")
    assert not problems, "\n".join(problems)


# ---- test_framing.py and test_environ.py once more, through ISAPI ---------------------------

# tests that check what IIS (here: the harness) decides, not the library
HOST_DECIDES = {
    "test_date_and_server_headers": "IIS writes the Date and Server headers (the harness: "
                                    "Server: harness)",
    "test_app_server_and_date_kept": "IIS writes its own Server header beside the app's",
    "test_core_cgi_and_wsgi_keys": "SERVER_SOFTWARE is IIS's (test_conformance checks the "
                                   "rest of these keys through ISAPI)",
}


@pytest.fixture(scope="module")
def framing_server(isapi_harness, tmp_path_factory):
    """framing_app behind the harness, with gwprocess.Server's interface."""
    h = IsapiHost(isapi_harness, tmp_path_factory.mktemp("isapi-framing"),
                  {"app": "framing_app"}).start()
    yield ServerView(h)
    assert h.stop() == 0 and h.failures() == [], h.diagnostics()


@pytest.fixture(scope="module")
def echo_server(isapi_harness, tmp_path_factory):
    """echo_app behind the harness (at the root, chdir tests/apps like the HTTP listener's)."""
    h = IsapiHost(isapi_harness, tmp_path_factory.mktemp("isapi-echo"),
                  {"app": "echo_app", "chdir": str(APPS_DIR)}).start()
    yield ServerView(h)
    assert h.stop() == 0 and h.failures() == [], h.diagnostics()


def _again(fn, why):
    @functools.wraps(fn)  # keeps the signature: pytest still sees the fixtures it needs
    def test(*args, **kwargs):
        if why:
            pytest.skip(why)
        return fn(*args, **kwargs)
    return test


def _only_needs(fn, fixture):
    """The test uses `fixture` and no other server fixture (its other arguments are
    parameters or tmp_path)."""
    params = set(inspect.signature(fn).parameters) - {"tmp_path"}
    marks = getattr(fn, "pytestmark", [])
    given = {n.strip() for m in marks if m.name == "parametrize"
             for n in (m.args[0].split(",") if isinstance(m.args[0], str) else m.args[0])}
    return fixture in params and params - given - {fixture} == set()


# collected here as test_framing__<name> / test_environ__<name>, using this module's fixtures
for _module, _fixture in ((test_framing, "framing_server"), (test_environ, "echo_server")):
    _prefix = _module.__name__.split("_", 1)[1]
    for _name, _fn in vars(_module).items():
        if _name.startswith("test_") and callable(_fn) and _only_needs(_fn, _fixture):
            globals()[f"test_{_prefix}__{_name[5:]}"] = _again(_fn, HOST_DECIDES.get(_name))
