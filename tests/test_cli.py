"""Command line, configuration precedence, app loading, listeners, signals."""

import http.client
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading

import pytest

from gwclient import RawConn, echo, q
from gwfiles import wait_for_file
from gwprocess import APPS_DIR, Server, binary, clean_env, run_cli


def startup_error(args, env=None):
    rc, err = run_cli(args, env=env)
    assert rc == 2, f"rc={rc} (None: it started serving)\nstderr:\n{err}"
    lines = [line for line in err.splitlines() if line.startswith("wsgi-gateway: error: ")]
    assert lines, f"no 'wsgi-gateway: error: ' line in stderr:\n{err}"
    assert "listening on" not in err
    return "\n".join(lines)


BIND = ["--bind", "127.0.0.1:0"]
CHDIR = ["--chdir", str(APPS_DIR)]


@pytest.mark.parametrize("args,needle", [
    (["serve", "--no-such-option"], "--no-such-option"),
    (["serve", "echo_app", "--threads", "many", *BIND, *CHDIR], "threads"),
    (["serve", "echo_app", "--threads"], "threads"),
    (["serve", "echo_app", "--bind", "not-an-address", *CHDIR], "not-an-address"),
    (["serve", "echo_app", "--header-underscores", "maybe", *BIND, *CHDIR], "header-underscores"),
    (["serve", "echo_app", "--log-level", "chatty", *BIND, *CHDIR], "log-level"),
    (["serve", "echo_app", "--switch-interval", "0", *BIND, *CHDIR], "switch-interval"),
    (["frobnicate"], "frobnicate"),
])
def test_bad_option(args, needle):
    msg = startup_error(args)
    assert needle in msg


def test_missing_module():
    msg = startup_error(["serve", "no_such_module_xyz", *BIND, *CHDIR])
    assert "no_such_module_xyz" in msg


def test_missing_callable():
    msg = startup_error(["serve", "echo_app:no_such_callable", *BIND, *CHDIR])
    assert "no_such_callable" in msg


def test_callable_not_callable():
    msg = startup_error(["serve", "bad_module:not_callable", *BIND, *CHDIR])
    assert "not_callable" in msg


def test_module_import_fails():
    msg = startup_error(["serve", "broken_import", *BIND, *CHDIR])
    assert "broken_import" in msg


def test_bad_config_key(tmp_path):
    cfg = tmp_path / "bad.toml"
    cfg.write_text('app = "echo_app"\nbogus_key = 1\n')
    msg = startup_error(["serve", "--config", str(cfg), *BIND, *CHDIR])
    assert "bogus_key" in msg and str(cfg) in msg


def test_bad_config_value(tmp_path):
    cfg = tmp_path / "badval.toml"
    cfg.write_text('threads = "lots"\n')
    msg = startup_error(["serve", "echo_app", "--config", str(cfg), *BIND, *CHDIR])
    assert "threads" in msg


def test_bad_config_syntax(tmp_path):
    cfg = tmp_path / "syntax.toml"
    cfg.write_text('threads = = 3\n')
    msg = startup_error(["serve", "echo_app", "--config", str(cfg), *BIND, *CHDIR])
    assert str(cfg) in msg


def test_missing_config_file(tmp_path):
    cfg = tmp_path / "absent.toml"
    msg = startup_error(["serve", "echo_app", "--config", str(cfg), *BIND, *CHDIR])
    assert str(cfg) in msg


def test_bad_env_value():
    msg = startup_error(["serve", "echo_app", *BIND, *CHDIR], env={"WSGI_GATEWAY_THREADS": "x"})
    assert "THREADS" in msg.upper()


def test_config_file_with_bind_and_app(tmp_path, server_factory):
    cfg = tmp_path / "gw.toml"
    cfg.write_text(f'app = "echo_app"\nbind = "127.0.0.1:0"\nchdir = "{APPS_DIR}"\n'
                   f'script-name = "/cfg"\n')
    s = server_factory(None, args=["--config", str(cfg)], bind=None, chdir=None)
    e = echo(s, "/cfg/x")
    assert e["SCRIPT_NAME"] == "/cfg" and e["PATH_INFO"] == "/x"


def test_config_bind_list(tmp_path, server_factory):
    cfg = tmp_path / "gw.toml"
    cfg.write_text('bind = ["127.0.0.1:0", "127.0.0.1:0"]\n')
    s = server_factory("echo_app", args=["--config", str(cfg)], bind=None, listeners=2)
    assert len(set(s.urls)) == 2
    for url in s.urls:
        s._parse_address(url)
        assert echo(s, "/two")["PATH_INFO"] == "/two"


def _script_name_precedence(tmp_path, server_factory, cli, env, file):
    cfg = tmp_path / "prec.toml"
    cfg.write_text(f'script_name = "{file}"\n' if file else "")
    args = ["--config", str(cfg)] + (["--script-name", cli] if cli else [])
    s = server_factory("echo_app", args=args,
                       env={"WSGI_GATEWAY_SCRIPT_NAME": env} if env else None)
    return s


@pytest.mark.parametrize("cli,env,file,winner", [
    ("/cli", "/env", "/file", "/cli"),
    (None, "/env", "/file", "/env"),
    (None, None, "/file", "/file"),
])
def test_precedence_cli_env_file_script_name(tmp_path, server_factory, cli, env, file, winner):
    s = _script_name_precedence(tmp_path, server_factory, cli, env, file)
    e = echo(s, f"{winner}/p")
    assert e["SCRIPT_NAME"] == winner


def _concurrency_probe(s, tmp_path, n):
    """True when n gated requests are inside the app at once (so >= n worker threads)."""
    gate = tmp_path / "gate"
    threads = []
    for i in range(n):
        def run(i=i):
            c = s.conn(timeout=60)
            c.send(f"GET /wait?i={i}&gate={q(gate)}&entered={q(tmp_path / f'in{i}')} HTTP/1.1\r\n"
                   f"Host: h\r\n\r\n".encode())
            c.read_response()
            c.close()
        t = threading.Thread(target=run)
        t.start()
        threads.append(t)
    try:
        for i in range(n):
            wait_for_file(tmp_path / f"in{i}", timeout=15)
    finally:
        gate.write_text("open")
        for t in threads:
            t.join(60)


@pytest.mark.parametrize("cli,env,file", [
    ("3", "1", "1"),  # CLI wins over env and file
    (None, "3", "1"),  # env wins over file
])
def test_precedence_threads(tmp_path, server_factory, cli, env, file):
    cfg = tmp_path / "threads.toml"
    cfg.write_text(f"threads = {file}\n")
    args = ["--config", str(cfg)] + (["--threads", cli] if cli else [])
    s = server_factory("framing_app", args=args,
                       env={"WSGI_GATEWAY_THREADS": env} if env else None)
    _concurrency_probe(s, tmp_path, 3)


def test_welcome_app_without_app(server_factory, echo_server):
    pyver = echo(echo_server, "/v")["_python_version"]
    s = server_factory(None, chdir=None)
    h = s.http()
    h.request("GET", "/")
    r = h.getresponse()
    body = r.read().decode("utf-8", "replace")
    h.close()
    assert r.status == 200
    assert r.getheader("content-type", "").startswith("text/html")
    assert "wsgi-gateway" in body
    assert pyver in body


@pytest.mark.parametrize("args,want", [([], 0.001), (["--switch-interval", "0.0025"], 0.0025)])
def test_switch_interval(server_factory, args, want):
    """The worker threads' GIL switch interval is set before the app is imported (Python's own
    default is 0.005)."""
    s = server_factory("runtime_app", args=args)
    c = http.client.HTTPConnection(s.host, s.port, timeout=30)
    c.request("GET", "/")
    got = json.loads(c.getresponse().read())["switch_interval"]
    c.close()
    assert abs(got - want) < 1e-9, got


def test_no_subcommand_means_serve(server_factory):
    s = server_factory("echo_app", subcommand=())
    assert echo(s, "/nosub")["PATH_INFO"] == "/nosub"


def test_pythonpath_option(tmp_path, server_factory):
    d = tmp_path / "extra"
    d.mkdir()
    (d / "extra_app.py").write_text(
        "def application(environ, start_response):\n"
        "    start_response('200 OK', [('Content-Type', 'text/plain')])\n"
        "    return [b'from pythonpath']\n")
    s = server_factory("extra_app", args=["--pythonpath", str(d)])
    h = s.http()
    h.request("GET", "/")
    assert h.getresponse().read() == b"from pythonpath"
    h.close()


def _make_venv(tmp_path):
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True,
                   timeout=120)
    sp = next((venv / "lib").glob("python3*/site-packages"))
    pkg = sp / "pkgapp"
    pkg.mkdir()
    (pkg / "__init__.py").write_text(
        "import importlib.util, sys\n"
        "def application(environ, start_response):\n"
        "    body = ('pkgapp from ' + __file__ + ' prefix=' + sys.prefix\n"
        "            + ' executable=' + sys.executable\n"
        "            + ' base-pip=' + str(importlib.util.find_spec('pip') is not None)).encode()\n"
        "    start_response('200 OK', [('Content-Type', 'text/plain'),\n"
        "                              ('Content-Length', str(len(body)))])\n"
        "    return [body]\n")
    return venv, pkg


def _get_text(s, path="/"):
    h = s.http()
    h.request("GET", path)
    r = h.getresponse()
    body = r.read().decode()
    h.close()
    assert r.status == 200, body
    return body


def test_venv_option(tmp_path, server_factory):
    venv, pkg = _make_venv(tmp_path)
    s = server_factory("pkgapp:application", args=["--venv", str(venv)], chdir=tmp_path)
    text = _get_text(s)
    assert str(pkg) in text
    # The app runs as the venv's own python would: sys.executable (what subprocess and
    # multiprocessing start), sys.prefix, and none of the base interpreter's packages (this
    # venv does not include system site-packages; the base has pip, the venv does not).
    assert f"prefix={venv} " in text
    assert f"executable={venv}/bin/python " in text
    assert text.endswith("base-pip=False")


def test_sys_executable_is_the_python_it_embeds(tmp_path):
    app = tmp_path / "exe_app.py"
    app.write_text("import sys\n"
                   "def application(environ, start_response):\n"
                   "    start_response('200 OK', [('Content-Type', 'text/plain')])\n"
                   "    return [sys.executable.encode()]\n")
    p = subprocess.run([binary(), "cgi", "exe_app", "--chdir", str(tmp_path)],
                       env={"GATEWAY_INTERFACE": "CGI/1.1", "REQUEST_METHOD": "GET"},
                       capture_output=True, timeout=60, stdin=subprocess.DEVNULL)
    body = p.stdout.partition(b"\r\n\r\n")[2].decode()
    base = os.path.realpath(getattr(sys, "_base_executable", sys.executable))
    assert body == base, p.stderr.decode()


def test_virtual_env_variable(tmp_path, server_factory):
    venv, pkg = _make_venv(tmp_path)
    s = server_factory("pkgapp:application", env={"VIRTUAL_ENV": str(venv)}, chdir=tmp_path)
    assert str(pkg) in _get_text(s)


def test_free_threaded_venv_refused_in_one_line(tmp_path):
    # The layout a free-threaded venv of the same version has (lib/python3.Yt); its
    # extension modules could not load into the GIL build the binary runs.
    venv = tmp_path / "ftvenv"
    ver = f"{sys.version_info.major}.{sys.version_info.minor}"
    (venv / "lib" / f"python{ver}t" / "site-packages").mkdir(parents=True)
    (venv / "bin").mkdir()
    (venv / "bin" / "python").symlink_to(sys.executable)
    (venv / "pyvenv.cfg").write_text(f"home = /usr/bin\nversion = {sys.version.split()[0]}\n")
    msg = startup_error(["serve", "echo_app", *BIND, "--venv", str(venv)])
    assert f"made with free-threaded Python {ver}t" in msg, msg
    assert "does not support" in msg, msg


def test_without_venv_package_not_importable(tmp_path):
    _make_venv(tmp_path)
    msg = startup_error(["serve", "pkgapp:application", *BIND, "--chdir", str(tmp_path)])
    assert "pkgapp" in msg


def test_unix_socket(server_factory, tmp_path):
    import tempfile
    d = tempfile.mkdtemp(prefix="gw", dir="/tmp")
    path = os.path.join(d, "gw.sock")
    try:
        s = server_factory("echo_app", bind=f"unix:{path}")
        assert s.urls[0] == f"unix:{path}"
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(15)
        sock.connect(path)
        c = RawConn(sock)
        c.send(b"GET /unix?x=1 HTTP/1.1\r\nHost: localhost\r\n\r\n")
        e = c.read_response().json()
        c.close()
        assert e["PATH_INFO"] == "/unix" and e["QUERY_STRING"] == "x=1"
        assert "REMOTE_PORT" not in e
        assert e["SERVER_NAME"] == "localhost"
        s.stop()
    finally:
        if os.path.exists(path):
            os.unlink(path)
        os.rmdir(d)


def _has_ipv6_loopback():
    if not socket.has_ipv6:
        return False
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as t:
            t.bind(("::1", 0))
        return True
    except OSError:
        return False


@pytest.mark.skipif(not _has_ipv6_loopback(), reason="no IPv6 loopback on this machine")
def test_ipv6_bind(server_factory):
    s = server_factory("echo_app", bind="[::1]:0")
    assert s.urls[0].startswith("http://[::1]:")
    e = echo(s, "/v6")
    assert e["REMOTE_ADDR"] == "::1"
    assert e["PATH_INFO"] == "/v6"


def test_two_binds(server_factory):
    s = server_factory("echo_app", args=["--bind", "127.0.0.1:0"], listeners=2)
    ports = set()
    for url in s.urls:
        s._parse_address(url)
        ports.add(s.port)
        assert echo(s, "/b")["SERVER_PORT"] == str(s.port)
    assert len(ports) == 2


def test_sigterm_finishes_in_flight_request(tmp_path):
    s = Server("framing_app").start()
    try:
        entered = tmp_path / "entered"
        c = s.conn(timeout=30)
        c.send(f"GET /slow?entered={q(entered)} HTTP/1.1\r\nHost: h\r\n\r\n".encode())
        wait_for_file(entered)
        s.proc.send_signal(signal.SIGTERM)
        r = c.read_response()
        assert r.status == 200 and r.body == b"slow done"
        c.close()
        assert s.proc.wait(30) == 0
    finally:
        s.kill()


def test_graceful_timeout_bounds_shutdown(tmp_path):
    """An in-flight request that never finishes does not keep the process alive."""
    s = Server("framing_app", args=["--graceful-timeout", "1"]).start()
    try:
        gate, entered = tmp_path / "never-opened", tmp_path / "entered"
        c = s.conn(timeout=30)
        c.send(f"GET /wait?gate={q(gate)}&entered={q(entered)} HTTP/1.1\r\nHost: h\r\n\r\n"
               .encode())
        wait_for_file(entered)
        s.proc.send_signal(signal.SIGTERM)
        assert s.proc.wait(25) == 0
        c.close()
    finally:
        gate.write_text("open")  # let the app thread finish if the process somehow lives
        s.kill()


def test_max_connections_closes_extra_connections(server_factory):
    s = server_factory("echo_app", args=["--max-connections", "2"])
    held = [s.conn(), s.conn()]  # idle: owned by the server's event loop, counted
    try:
        extra = s.conn()
        try:
            extra.send(b"GET /extra HTTP/1.1\r\nHost: h\r\n\r\n")
        except (BrokenPipeError, ConnectionResetError):
            pass
        extra.assert_closed()
        extra.close()
        held[0].send(b"GET /still HTTP/1.1\r\nHost: h\r\n\r\n")
        assert held[0].read_response().status == 200
    finally:
        for c in held:
            c.close()


def test_sigint_idle_exits_zero():
    s = Server("echo_app").start()
    try:
        s.proc.send_signal(signal.SIGINT)
        assert s.proc.wait(30) == 0
    finally:
        s.kill()


def test_access_log(tmp_path, server_factory):
    log = tmp_path / "access.log"
    s = server_factory("echo_app", args=["--access-log", str(log)])
    echo(s, "/logged?a=1", headers={"User-Agent": "gw-test-agent", "Referer": "http://r.example/"})
    text = wait_for_file(log, predicate=lambda t: "/logged" in t)
    line = next(ln for ln in text.splitlines() if "/logged" in ln)
    assert '"GET /logged?a=1 HTTP/1.1" 200' in line
    assert '"gw-test-agent"' in line and '"http://r.example/"' in line
    assert line.startswith("127.0.0.1 ")
    assert re.search(r" \d+$", line), f"no duration (microseconds) at the end: {line!r}"


def test_access_log_dash(server_factory):
    s = server_factory("echo_app", args=["--access-log", "-"])
    echo(s, "/dash-logged")
    # The drain threads notify the condition for every line on either stream.
    with s._cond:
        found = s._cond.wait_for(lambda: any("/dash-logged" in ln for ln in s.out_lines), timeout=10)
    assert found, f"access line not on stdout: {s.out_lines} {s.log()}"


def test_body_timeout_before_the_app_is_called(server_factory):
    """A client that stalls in a small body: the server waits for it without calling the app
    (no worker held), then answers 408 and closes; the log says so, without a traceback."""
    s = server_factory("echo_app", args=["--body-timeout", "1"])
    mark = s.log_mark()
    c = s.conn(timeout=30)
    c.send(b"POST /slow-upload HTTP/1.1\r\nHost: h\r\nContent-Length: 10\r\n\r\nabc")
    r = c.read_response()
    assert r.status == 408, r
    assert "close" in r.connection_tokens()
    c.assert_closed()
    c.close()
    s.wait_log(r"408 for POST /slow-upload: request body not received within --body-timeout",
               since=mark)
    assert "Traceback" not in s.log(since=mark)


def test_body_timeout_gives_app_oserror_and_client_408(server_factory):
    """A client that stalls after the first 64 KiB of a large body (the app is streaming it
    by then): the app's read raises, the client gets 408 and a closed connection, and the log
    says what happened without an app traceback."""
    s = server_factory("echo_app", args=["--body-timeout", "1"])
    mark = s.log_mark()
    c = s.conn(timeout=30)
    c.send(b"POST /slow-big HTTP/1.1\r\nHost: h\r\nContent-Length: 200000\r\n\r\n"
           + b"x" * 100000)
    r = c.read_response()
    assert r.status == 408, r
    assert "close" in r.connection_tokens()
    c.assert_closed()
    c.close()
    s.wait_log(r"408 for POST /slow-big: request body", since=mark)
    assert "Traceback" not in s.log(since=mark)


def test_write_timeout_aborts_unread_response(server_factory, tmp_path):
    s = server_factory("framing_app", args=["--write-timeout", "1"])
    m = tmp_path / "wt.marker"
    c = s.conn(timeout=30)
    c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    c.send(f"GET /big?size={1 << 30}&marker={q(m)} HTTP/1.1\r\nHost: h\r\n\r\n".encode())
    # never read: the server must give up writing and close the app's iterable
    text = wait_for_file(m, timeout=40, predicate=lambda t: "closed" in t)
    assert f"sent={1 << 30}" not in text
    c.close()


def test_error_log_to_file(tmp_path):
    log = tmp_path / "error.log"
    # the listening line now goes to the file, not stderr: watch the file instead
    cmd = Server("echo_app", args=["--error-log", str(log)]).command()
    p = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL, env=clean_env())
    try:
        text = wait_for_file(log, predicate=lambda t: "listening on" in t)
        assert "listening on http://127.0.0.1:" in text
    finally:
        p.send_signal(signal.SIGTERM)
        assert p.wait(30) == 0


def test_access_log_written_out_before_exit(tmp_path):
    """Lines for the last requests are on disk when the process has exited after SIGTERM."""
    log = tmp_path / "access.log"
    s = Server("echo_app", args=["--access-log", str(log)]).start()
    for i in range(20):
        echo(s, f"/last-{i}")
    assert s.stop() == 0
    lines = log.read_text().splitlines()
    assert sum('"GET /last-' in ln for ln in lines) == 20, lines[-3:]
