"""`wsgi-gateway cgi` as a CGI program: started directly the way a host starts it (an empty
environment plus the meta-variables), and under lighttpd for what only a real host shows
(streaming, stderr in the host's log). The request/environ cases common to every front end
are in test_conformance.py.
"""

import hashlib
import json
import os
import socket
import subprocess
import time
import urllib.parse

import pytest

from cgihost import (BASE_META, ApacheHost, CgiHost, apache_available, apache_problem,
                     apache_search_words, lighttpd_available)
from gwprocess import APPS_DIR, binary

META = {**BASE_META, "REQUEST_METHOD": "GET", "PATH_INFO": "/env", "REMOTE_PORT": "40000"}
APP_ARGS = ["cgi_app", "--chdir", str(APPS_DIR)]


def run_cgi(args, meta=None, stdin=b"", extra_env=None, drop=(), program=None, cwd="/"):
    """Runs the binary as a host would: nothing in the environment but what is given here.
    `stdin` is bytes or an open file; `program` is what the host executes (default: the
    binary). Returns (rc, status, headers, body, stderr)."""
    env = {**META, **(meta or {}), **(extra_env or {})}
    for k in drop:
        env.pop(k, None)
    kw = {"input": stdin} if isinstance(stdin, bytes) else {"stdin": stdin}
    p = subprocess.run([program or binary(), *args], env=env, capture_output=True, timeout=60,
                       cwd=cwd, **kw)
    head, sep, body = p.stdout.partition(b"\r\n\r\n")
    assert sep, f"no CGI header block in {p.stdout[:500]!r}; stderr:\n{p.stderr.decode()}"
    lines = head.decode("latin-1").split("\r\n")
    assert lines[0].startswith("Status: "), lines
    headers = [tuple(x.strip() for x in line.split(":", 1)) for line in lines[1:]]
    return p.returncode, lines[0][len("Status: "):], headers, body, p.stderr.decode()


def header(headers, name):
    return [v for n, v in headers if n.lower() == name.lower()]


def test_serves_one_request_from_an_empty_environment():
    rc, status, headers, body, err = run_cgi(["cgi", *APP_ARGS],
                                             meta={"HTTP_X_THING": "yes", "QUERY_STRING": "q=1"})
    assert (rc, status) == (0, "200 OK"), err
    assert header(headers, "Content-Length") == [str(len(body))]
    env = json.loads(body)
    assert env["HTTP_X_THING"] == "yes"
    assert env["QUERY_STRING"] == "q=1"
    assert env["SCRIPT_NAME"] == "/cgi-bin/app"
    assert env["REMOTE_ADDR"] == "192.0.2.7"
    assert env["SERVER_SOFTWARE"] == "test-host/1.0"
    assert env["REQUEST_URI"] == "/cgi-bin/app/env?q=1"


def test_process_environment_never_reaches_environ():
    rc, status, _, body, err = run_cgi(
        ["cgi", *APP_ARGS],
        extra_env={"PATH": "/usr/bin:/bin", "HOME": "/root", "SECRET_TOKEN": "s3cret",
                   "WSGI_GATEWAY_LOG_LEVEL": "info"})
    assert (rc, status) == (0, "200 OK"), err
    env = json.loads(body)
    for leaked in ("PATH", "HOME", "SECRET_TOKEN", "WSGI_GATEWAY_LOG_LEVEL"):
        assert leaked not in env


def test_app_from_the_environment_when_the_host_passes_no_arguments():
    # No `cgi` subcommand either: under a CGI host that is the default.
    rc, status, _, body, err = run_cgi(
        [], extra_env={"WSGI_GATEWAY_APP": "cgi_app", "WSGI_GATEWAY_CHDIR": str(APPS_DIR)})
    assert (rc, status) == (0, "200 OK"), err
    assert json.loads(body)["PATH_INFO"] == "/env"


def test_app_from_the_config_file_named_by_the_environment(tmp_path):
    conf = tmp_path / "gw.toml"
    conf.write_text(f'app = "cgi_app"\nchdir = "{APPS_DIR}"\n')
    rc, status, _, body, err = run_cgi([], extra_env={"WSGI_GATEWAY_CONFIG": str(conf)})
    assert (rc, status) == (0, "200 OK"), err
    assert "WSGI_GATEWAY_CONFIG" not in json.loads(body)


@pytest.mark.parametrize("args, env, says", [
    ([], {}, "no app to run"),
    (["broken_import", "--chdir", str(APPS_DIR)], {}, 'importing module "broken_import"'),
    (["bad_module:not_callable", "--chdir", str(APPS_DIR)], {}, "not callable"),
    (["no_such_module_xyz", "--chdir", str(APPS_DIR)], {}, "no_such_module_xyz"),
    (["cgi_app", "--bogus"], {}, "--bogus"),
    (["cgi_app", "--chdir", "/nonexistent/dir"], {}, "--chdir /nonexistent/dir"),
    (["cgi_app", "--venv", "/nonexistent/venv"], {}, "/nonexistent/venv"),
    ([], {"WSGI_GATEWAY_CONFIG": "/nonexistent/gw.toml"}, "/nonexistent/gw.toml"),
], ids=["no-app", "import-error", "not-callable", "missing-module", "bad-option", "bad-chdir",
        "bad-venv", "missing-config"])
def test_broken_configuration_is_a_500_document_and_one_line(args, env, says):
    rc, status, headers, body, err = run_cgi(["cgi", *args], extra_env=env)
    assert rc == 1
    assert status == "500 Internal Server Error"
    assert header(headers, "Content-Length") == [str(len(body))]
    errors = [line for line in err.splitlines() if line.startswith("wsgi-gateway: error:")]
    assert len(errors) == 1, err
    assert says in errors[0], err


def test_bad_config_key_names_file_and_key(tmp_path):
    conf = tmp_path / "gw.toml"
    conf.write_text('app = "cgi_app"\nbind = "0.0.0.0:80"\n')
    rc, status, _, _, err = run_cgi([], extra_env={"WSGI_GATEWAY_CONFIG": str(conf)})
    assert (rc, status) == (1, "500 Internal Server Error")
    assert f'--config {conf}: unknown key "bind" for `cgi`' in err


def test_query_words_in_argv_never_become_options(tmp_path):
    """RFC 3875 §4.4: for a query without `=` a host may pass its words as arguments."""
    log = tmp_path / "planted.log"
    env = {"WSGI_GATEWAY_APP": "cgi_app", "WSGI_GATEWAY_CHDIR": str(APPS_DIR)}
    for argv in (["--error-log", str(log)], ["cgi", "--error-log", str(log)]):
        query = "+".join(urllib.parse.quote(w, safe="") for w in argv)
        rc, status, _, body, err = run_cgi(argv, meta={"QUERY_STRING": query}, extra_env=env)
        assert (rc, status) == (0, "200 OK"), err
        assert json.loads(body)["QUERY_STRING"] == query
        assert not log.exists(), f"argv {argv} from the query was obeyed"
    # The same arguments from a wrapper script (not the query's words) are obeyed.
    rc, status, _, _, err = run_cgi(["cgi", "--error-log", str(log)], extra_env=env)
    assert (rc, status) == (0, "200 OK"), err
    assert log.exists()


# The exploit: with these as options, X-Forwarded-* from anyone would be believed and
# a file named by the request created. Apache passes them as `--forwarded-allow-ips 0.0.0.0/0
# --error-log x.log\&`.
EXPLOIT_QUERY = "--forwarded-allow-ips+0.0.0.0%2F0+--error-log+x.log%26"
SPOOFED = {"X-Forwarded-User": "mallory", "X-Forwarded-For": "203.0.113.9"}
APP_ENV = {"WSGI_GATEWAY_APP": "cgi_app", "WSGI_GATEWAY_CHDIR": str(APPS_DIR),
           "PYTHONDONTWRITEBYTECODE": "1"}


def _launches(host):
    """The ways a host runs the program, each written to the cgi-bin of `host` (a CgiHost or
    ApacheHost): the binary itself (app from the environment), a TOML file run by its `#!`
    line, and the README's wrapper script. Returns their URL paths by kind."""
    b = binary()
    toml = f"#!{b} --config\napp = \"cgi_app\"\nchdir = \"{APPS_DIR}\"\n"
    wrapper = f"#!/bin/sh\nexec {b} cgi cgi_app --chdir {APPS_DIR}\n"
    return {"itself": host.add_link("gw"),
            "shebang": host.add_file("gw.toml", toml),
            "wrapper": host.add_file("gw.sh", wrapper)}


def _assert_no_option_taken(env, cgi_dir, scripts, remote_addr):
    strays = set(os.listdir(cgi_dir)) - set(scripts)
    for name in strays:  # so the host's next test starts clean
        os.unlink(cgi_dir / name)
    assert not strays, "the request named a file"
    assert env["REMOTE_ADDR"] == remote_addr, "a spoofed X-Forwarded-For was believed"
    assert "HTTP_X_FORWARDED_USER" not in env, "a spoofed X-Forwarded-User was believed"


@pytest.mark.parametrize("launch, script_filename", [
    ("itself", True), ("shebang", True), ("wrapper", True),
    # hosts that set no SCRIPT_FILENAME (thttpd, Python's http.server)
    ("itself", False)])
def test_apache_escaped_search_words_never_become_options(tmp_path, launch, script_filename):
    """Apache's mod_cgi passes a query without `=` as argv, shell-escaped (`x.log&` arrives as
    `x.log\\&`): env, argv and working directory here are exactly what it gives."""
    files = CgiHost(tmp_path)
    scripts = _launches(files)
    script = files.cgi_dir / scripts[launch].rsplit("/", 1)[1]
    meta = {"QUERY_STRING": EXPLOIT_QUERY, "SCRIPT_NAME": scripts[launch],
            **{"HTTP_" + k.upper().replace("-", "_"): v for k, v in SPOOFED.items()}}
    if script_filename:
        meta["SCRIPT_FILENAME"] = str(script)
    words = apache_search_words(EXPLOIT_QUERY)
    assert words[-1] == b"x.log\\&"
    rc, status, _, body, err = run_cgi(words, meta=meta, extra_env=APP_ENV,
                                       program=str(script), cwd=files.cgi_dir)
    assert (rc, status) == (0, "200 OK"), err
    env = json.loads(body)
    assert env["QUERY_STRING"] == EXPLOIT_QUERY
    _assert_no_option_taken(env, files.cgi_dir, files.scripts, "192.0.2.7")


def test_search_words_are_ignored_whatever_they_hold(tmp_path):
    """Under a host that ran the binary itself, no query reaches option parsing: one that
    would be a bad option, a subcommand, only `+`, or percent-encoded option words."""
    files = CgiHost(tmp_path)
    gw = files.cgi_dir / "gw"
    files.add_link("gw")
    for query in ("--bogus", "--bogus+a*b", "serve+--bind+127.0.0.1%3A1", "+", "%2D%2Dbogus",
                  "help", "cgi+--pythonpath+%2Fnonexistent+no_such_module"):
        rc, status, _, body, err = run_cgi(
            apache_search_words(query), meta={"QUERY_STRING": query,
                                              "SCRIPT_FILENAME": str(gw)},
            extra_env=APP_ENV, program=str(gw), cwd=files.cgi_dir)
        assert (rc, status) == (0, "200 OK"), f"{query}: {err}"
        assert json.loads(body)["QUERY_STRING"] == query


def test_a_wrappers_own_arguments_hold_for_a_query_without_equals(tmp_path):
    """The README's wrapper does not forward "$@": its arguments are the operator's even
    when the host gave the wrapper the query's words."""
    files = CgiHost(tmp_path)
    log = tmp_path / "wrapper.log"
    files.add_file("w.sh", f"#!/bin/sh\nexec {binary()} cgi cgi_app --chdir {APPS_DIR} "
                           f"--error-log {log}\n")
    w = files.cgi_dir / "w.sh"
    rc, status, _, _, err = run_cgi(apache_search_words("a+b+c+d"),
                                    meta={"QUERY_STRING": "a+b+c+d", "SCRIPT_FILENAME": str(w)},
                                    program=str(w), cwd=files.cgi_dir)
    assert (rc, status) == (0, "200 OK"), err
    assert log.exists()


@pytest.mark.parametrize("host_header", ["localhost", "cgi.example:9999"])
def test_server_port_is_the_hosts_whatever_the_host_header(host_header):
    """RFC 3875 §4.1.15: SERVER_PORT is the port the request came in on, which the host
    knows; SERVER_NAME may follow Host."""
    rc, status, _, body, err = run_cgi(
        ["cgi", *APP_ARGS], meta={"HTTP_HOST": host_header, "SERVER_NAME": "localhost",
                                  "SERVER_PORT": "8000"})
    assert (rc, status) == (0, "200 OK"), err
    env = json.loads(body)
    assert env["HTTP_HOST"] == host_header
    assert env["SERVER_PORT"] == "8000"


def test_stdin_is_never_read_past_content_length(tmp_path):
    data = tmp_path / "stdin"
    data.write_bytes(b"A" * 40 + b"B" * 60)
    with open(data, "rb") as f:
        rc, status, _, body, err = run_cgi(
            ["cgi", *APP_ARGS], stdin=f,
            meta={"REQUEST_METHOD": "POST", "PATH_INFO": "/read", "CONTENT_LENGTH": "40"})
        # The child shared this open file: its offset shows how far stdin was read.
        offset = os.lseek(f.fileno(), 0, os.SEEK_CUR)
    assert (rc, status) == (0, "200 OK"), err
    assert json.loads(body) == {"len": 40, "sha256": hashlib.sha256(b"A" * 40).hexdigest()}
    assert offset == 40


def test_without_content_length_the_body_is_stdin_to_eof():
    payload = bytes(range(256)) * 300
    rc, status, _, body, err = run_cgi(["cgi", *APP_ARGS], stdin=payload,
                                       meta={"REQUEST_METHOD": "POST", "PATH_INFO": "/read"})
    assert (rc, status) == (0, "200 OK"), err
    assert json.loads(body)["len"] == len(payload)


def test_stdin_shorter_than_content_length_is_a_400_document():
    rc, status, headers, body, err = run_cgi(
        ["cgi", *APP_ARGS], stdin=b"short",
        meta={"REQUEST_METHOD": "POST", "PATH_INFO": "/read", "CONTENT_LENGTH": "100"})
    assert (rc, status) == (0, "400 Bad Request"), err
    assert header(headers, "Content-Length") == [str(len(body))]
    assert "stdin ended 95 bytes before CONTENT_LENGTH" in err


def test_get_without_a_body_does_not_wait_for_stdin():
    # stdin stays open (a pipe nobody writes to): a GET that never reads must not block on it.
    r, w = os.pipe()
    try:
        with os.fdopen(r, "rb") as stdin:
            rc, status, _, _, err = run_cgi(["cgi", *APP_ARGS], stdin=stdin)
    finally:
        os.close(w)
    assert (rc, status) == (0, "200 OK"), err


def test_head_has_headers_and_no_body():
    rc, status, headers, body, err = run_cgi(["cgi", *APP_ARGS], meta={"REQUEST_METHOD": "HEAD"})
    assert (rc, status) == (0, "200 OK"), err
    assert header(headers, "Content-Type") == ["application/json"]
    assert body == b""


def test_iis_path_info_option_strips_the_repeated_script_name():
    meta = {"SCRIPT_NAME": "/app.cgi", "PATH_INFO": "/app.cgi/env"}
    _, status, _, body, err = run_cgi(["cgi", *APP_ARGS], meta=meta)
    assert status == "200 OK", err
    assert json.loads(body)["PATH_INFO"] == "/app.cgi/env"
    _, status, _, body, err = run_cgi(["cgi", *APP_ARGS, "--iis-path-info"], meta=meta)
    assert status == "200 OK", err
    env = json.loads(body)
    assert (env["SCRIPT_NAME"], env["PATH_INFO"]) == ("/app.cgi", "/env")


def test_app_exception_is_a_plain_500_with_the_traceback_on_stderr():
    rc, status, headers, body, err = run_cgi(["cgi", *APP_ARGS], meta={"PATH_INFO": "/raise"})
    assert (rc, status) == (0, "500 Internal Server Error")
    assert b"Traceback" not in body and b"told to fail" not in body
    assert "Traceback (most recent call last)" in err
    assert "RuntimeError: cgi_app was told to fail" in err


def test_not_started_by_a_host_is_refused_clearly():
    p = subprocess.run([binary(), "cgi", *APP_ARGS], env={}, capture_output=True, timeout=60,
                       stdin=subprocess.DEVNULL)
    assert p.returncode == 1
    assert p.stdout.startswith(b"Status: 500 ")
    assert "REQUEST_METHOD is not set" in p.stderr.decode()


# ---- under a real host ----------------------------------------------------------------

@pytest.fixture(scope="module")
def host(tmp_path_factory):
    if not lighttpd_available():
        pytest.fail("lighttpd is required (tests/run.sh installs it)")
    h = CgiHost(tmp_path_factory.mktemp("cgi-own-host"))
    h.add_script("app", "cgi_app", ["--chdir", str(APPS_DIR)])
    h.start()
    yield h
    h.stop()


def _read_until(sock, buf, marker, deadline):
    while marker not in buf:
        assert time.monotonic() < deadline, f"{marker!r} never arrived; got {buf!r}"
        chunk = sock.recv(65536)
        assert chunk, f"connection closed before {marker!r}; got {buf!r}"
        buf += chunk
    return buf


def test_streamed_chunks_reach_the_client_as_the_app_yields_them(host, tmp_path):
    gate = tmp_path / "gate-open"
    with host.socket(timeout=20) as s:
        s.sendall(f"GET /cgi-bin/app/gate HTTP/1.1\r\nHost: {host.host_header}\r\n"
                  f"X-Gate: {gate}\r\nConnection: close\r\n\r\n".encode())
        deadline = time.monotonic() + 20
        # The app is still waiting at the gate: "first" can only be here if it was flushed.
        buf = _read_until(s, b"", b"first\n", deadline)
        assert b"second" not in buf
        gate.touch()
        buf = _read_until(s, buf, b"second\n", deadline)
    assert buf.startswith(b"HTTP/1.1 200 ")


def test_traceback_lands_in_the_hosts_error_log(host):
    with host.socket() as s:
        s.sendall(f"GET /cgi-bin/app/raise HTTP/1.1\r\nHost: {host.host_header}\r\n"
                  "Connection: close\r\n\r\n".encode())
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    assert data.startswith(b"HTTP/1.1 500 ")
    assert b"told to fail" not in data
    log = host.error_log()
    assert "RuntimeError: cgi_app was told to fail" in log, log[-3000:]


def test_client_identity_headers_never_reach_the_app(host):
    with host.socket() as s:
        s.sendall(f"GET /cgi-bin/app/env HTTP/1.1\r\nHost: {host.host_header}\r\n"
                  "Remote-User: mallory\r\nX-Forwarded-User: mallory\r\n"
                  "Proxy: http://evil.example:3128\r\nConnection: close\r\n\r\n".encode())
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 "), data[:500]
    if b"chunked" in head.lower():
        raise AssertionError("expected a Content-Length response for a one-chunk body")
    env = json.loads(body)
    assert "REMOTE_USER" not in env
    assert not [k for k in env if "REMOTE_USER" in k or "FORWARDED_USER" in k], env
    assert "HTTP_PROXY" not in env


def _dechunk(body: bytes) -> bytes:
    out = b""
    while True:
        size, _, rest = body.partition(b"\r\n")
        n = int(size.split(b";")[0], 16)
        if n == 0:
            return out
        out += rest[:n]
        body = rest[n + 2:]


def _get(host, path, headers=None, host_header=None):
    """GET `path` from `host` with `headers`: (status line, body)."""
    with host.socket() as s:
        extra = "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: {host_header or host.host_header}\r\n{extra}"
                  "Connection: close\r\n\r\n".encode())
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    if b"transfer-encoding: chunked" in head.lower():
        body = _dechunk(body)
    return head.split(b"\r\n", 1)[0].decode("latin-1"), body


def _get_env(host, path, headers=None, host_header=None):
    """(status line, the environ the app answered or None)."""
    status, body = _get(host, path, headers, host_header)
    return status, (json.loads(body) if " 200 " in status else None)


@pytest.fixture(scope="module")
def launch_host(tmp_path_factory):
    """lighttpd with the three launches of _launches(); lighttpd passes no search words."""
    if not lighttpd_available():
        pytest.fail("lighttpd is required (tests/run.sh installs it)")
    setenv = ", ".join(f"{json.dumps(k)} => {json.dumps(v)}" for k, v in APP_ENV.items())
    h = CgiHost(tmp_path_factory.mktemp("cgi-launches"),
                extra_conf='server.modules += ( "mod_setenv" )\n'
                           f"setenv.add-environment = ( {setenv} )")
    h.launches = _launches(h)
    h.start()
    yield h
    h.stop()


@pytest.mark.parametrize("launch", ["itself", "shebang", "wrapper"])
def test_lighttpd_search_query_never_becomes_options(launch_host, launch):
    status, env = _get_env(launch_host, f"{launch_host.launches[launch]}/env?{EXPLOIT_QUERY}",
                           SPOOFED)
    assert " 200 " in status, launch_host.error_log()[-3000:]
    assert env["QUERY_STRING"] == EXPLOIT_QUERY
    _assert_no_option_taken(env, launch_host.cgi_dir, launch_host.scripts, "127.0.0.1")


def test_lighttpd_server_port_is_the_port_the_request_came_in_on(launch_host):
    status, env = _get_env(launch_host, f"{launch_host.launches['wrapper']}/env",
                           host_header="localhost")
    assert " 200 " in status, launch_host.error_log()[-3000:]
    assert env["HTTP_HOST"] == "localhost"
    assert env["SERVER_PORT"] == str(launch_host.port)


@pytest.fixture(scope="module")
def apache(tmp_path_factory):
    """Apache httpd's mod_cgi (its own config, loopback port, temp dir) with the launches of
    _launches() and a shell script that answers the arguments it got."""
    if not apache_available():
        pytest.fail("apache2 is required (tests/run.sh installs it)")
    problem = apache_problem()
    if problem:
        pytest.skip(problem)
    h = ApacheHost(tmp_path_factory.mktemp("cgi-apache"), setenv=APP_ENV)
    h.launches = _launches(h)
    h.add_file("argv", "#!/bin/sh\nprintf 'Content-Type: application/octet-stream\\n\\n'\n"
                       "for a in \"$@\"; do printf '%s\\0' \"$a\"; done\n")
    h.start()
    yield h
    h.stop()


def test_apache_search_words_are_as_the_tests_build_them(apache):
    """The emulation the tests above use is what this Apache does."""
    query = EXPLOIT_QUERY + "+a*b;c+%7E++%27q%27+%FF+%zz+"
    status, body = _get(apache, f"/cgi-bin/argv?{query}")
    assert " 200 " in status, apache.error_log()[-3000:]
    got = body.split(b"\0")[:-1]
    assert got == apache_search_words(query)


@pytest.mark.parametrize("launch", ["itself", "shebang", "wrapper"])
def test_apache_search_query_never_becomes_options(apache, launch):
    status, env = _get_env(apache, f"{apache.launches[launch]}/env?{EXPLOIT_QUERY}", SPOOFED)
    assert " 200 " in status, apache.error_log()[-3000:]
    assert env["QUERY_STRING"] == EXPLOIT_QUERY
    _assert_no_option_taken(env, apache.cgi_dir, apache.scripts, "127.0.0.1")
