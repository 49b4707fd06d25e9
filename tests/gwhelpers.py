"""Helpers shared by the test modules: start the server binary, talk raw HTTP/1.1 to it.

Everything here uses real sockets and real processes. Waiting is always on an event (a log
line, bytes on a socket, a file appearing) with a generous deadline that only bounds a
failure; nothing sleeps to order events.
"""

from __future__ import annotations

import http.client
import json
import os
import re
import signal
import socket
import subprocess
import threading
import time
import urllib.parse
from pathlib import Path

TESTS_DIR = Path(__file__).resolve().parent
REPO = TESTS_DIR.parent
APPS_DIR = TESTS_DIR / "apps"

LISTEN_RE = re.compile(r"listening on (http://\S+|unix:\S+)")
START_TIMEOUT = 20.0
IO_TIMEOUT = 15.0


def binary() -> str:
    return os.environ.get("WSGI_GATEWAY_BIN") or str(REPO / "target" / "debug" / "wsgi-gateway")


def program_is_script() -> bool:
    """True when binary() is a `#!` script: the Python package's console script (pip's
    wrapper running the venv's python), not the ELF binary that embeds Python."""
    try:
        with open(binary(), "rb") as f:
            return f.read(2) == b"#!"
    except OSError:
        return False


def clean_env(extra: dict | None = None) -> dict:
    """The test runner's environment without anything that configures the server."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("WSGI_GATEWAY_") and k not in ("VIRTUAL_ENV", "PYTHONHOME")
    }
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    if extra:
        env.update(extra)
    return env


def run_cli(args, env=None, timeout=20.0, cwd=None):
    """Run the binary expecting it to exit (start-up errors).

    Returns (returncode, stderr text). If it starts listening instead, it is killed at once
    and the return code is None, so a wrongly accepted option fails fast.
    """
    p = subprocess.Popen([binary(), *args], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                         stderr=subprocess.PIPE, env=clean_env(env), cwd=cwd or REPO)
    lines = []
    listening = threading.Event()

    def drain():
        for raw in iter(p.stderr.readline, b""):
            line = raw.decode("utf-8", "replace").rstrip("\r\n")
            lines.append(line)
            if LISTEN_RE.search(line):
                listening.set()
        listening.set()  # EOF

    t = threading.Thread(target=drain, daemon=True)
    t.start()
    listening.wait(timeout)
    try:
        rc = p.wait(5)
    except subprocess.TimeoutExpired:
        p.kill()
        p.wait(10)
        rc = None
    t.join(5)
    return rc, "\n".join(lines)


class Server:
    """One server process. Its stderr is drained on a thread into `lines`."""

    def __init__(self, app=None, args=(), env=None, bind="127.0.0.1:0", chdir=APPS_DIR,
                 cwd=None, listeners=1, subcommand=("serve",), popen_kw=None):
        self.app = app
        self.args = [str(a) for a in args]
        self.env = env or {}
        self.bind = bind
        self.chdir = chdir
        self.cwd = cwd or REPO
        self.listeners = listeners
        self.subcommand = list(subcommand)
        self.popen_kw = dict(popen_kw or {})  # extra subprocess.Popen arguments (pass_fds)
        self.proc = None
        self.lines: list[str] = []
        self.out_lines: list[str] = []
        self.urls: list[str] = []
        self._cond = threading.Condition()
        self._eof = False

    # ---- process -------------------------------------------------------------------
    def command(self):
        cmd = [binary(), *self.subcommand]
        if self.app:
            cmd.append(self.app)
        if self.bind:
            cmd += ["--bind", self.bind]
        if self.chdir:
            cmd += ["--chdir", str(self.chdir)]
        return cmd + self.args

    def start(self):
        b = binary()
        if not os.path.exists(b):
            raise RuntimeError(f"server binary not found: {b} (build it or set WSGI_GATEWAY_BIN)")
        cmd = self.command()
        self.proc = subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=clean_env(self.env),
            cwd=self.cwd,
            **self.popen_kw,
        )
        threading.Thread(target=self._drain, args=(self.proc.stderr, self.lines, True),
                         daemon=True).start()
        threading.Thread(target=self._drain, args=(self.proc.stdout, self.out_lines, False),
                         daemon=True).start()
        with self._cond:
            ok = self._cond.wait_for(
                lambda: len(self.urls) >= self.listeners or self._eof, timeout=START_TIMEOUT)
        if len(self.urls) < self.listeners:
            self.kill()
            raise RuntimeError(
                f"server did not report 'listening on' (ok={ok}, rc={self.proc.returncode})\n"
                f"cmd: {cmd}\nstderr:\n{self.log()}")
        self._parse_address(self.urls[0])
        return self

    def _drain(self, stream, sink, is_err):
        for raw in iter(stream.readline, b""):
            line = raw.decode("utf-8", "replace").rstrip("\r\n")
            with self._cond:
                sink.append(line)
                if is_err:
                    m = LISTEN_RE.search(line)
                    if m:
                        self.urls.append(m.group(1))
                self._cond.notify_all()
        if is_err:
            with self._cond:
                self._eof = True
                self._cond.notify_all()

    def _parse_address(self, url):
        if url.startswith("unix:"):
            self.family = socket.AF_UNIX
            self.address = url[len("unix:"):]
            self.host, self.port = "localhost", None
        else:
            u = urllib.parse.urlsplit(url)
            self.host, self.port = u.hostname, u.port
            self.family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
            self.address = (self.host, self.port)

    @property
    def host_header(self):
        if self.port is None:
            return "localhost"
        h = f"[{self.host}]" if ":" in self.host else self.host
        return f"{h}:{self.port}"

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout=30.0):
        """SIGTERM and wait; returns the exit status."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
        with self._cond:
            self._cond.wait_for(lambda: self._eof, timeout=5)
        return self.proc.returncode

    def kill(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    # ---- error log -----------------------------------------------------------------
    def log(self, since=0) -> str:
        with self._cond:
            return "\n".join(self.lines[since:])

    def log_mark(self) -> int:
        with self._cond:
            return len(self.lines)

    def wait_log(self, pattern, since=0, timeout=10.0):
        """Wait until a stderr line at index >= since matches `pattern`; return the match."""
        rx = re.compile(pattern)
        found = []

        def check():
            for line in self.lines[since:]:
                m = rx.search(line)
                if m:
                    found.append(m)
                    return True
            return self._eof

        with self._cond:
            self._cond.wait_for(check, timeout=timeout)
        if not found:
            raise AssertionError(
                f"no error-log line matching {pattern!r}; log since mark:\n{self.log(since)}")
        return found[0]

    # ---- clients -------------------------------------------------------------------
    def socket(self, timeout=IO_TIMEOUT):
        s = socket.socket(self.family, socket.SOCK_STREAM)
        s.settimeout(timeout)
        s.connect(self.address)
        return s

    def conn(self, timeout=IO_TIMEOUT) -> "RawConn":
        return RawConn(self.socket(timeout))

    def http(self, timeout=IO_TIMEOUT) -> http.client.HTTPConnection:
        if self.family == socket.AF_UNIX:
            return UnixHTTPConnection(self.address, timeout=timeout)
        return http.client.HTTPConnection(self.host, self.port, timeout=timeout)


class UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path, timeout=IO_TIMEOUT):
        super().__init__("localhost", timeout=timeout)
        self._path = path

    def connect(self):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(self.timeout)
        s.connect(self._path)
        self.sock = s


# ---- raw HTTP/1.1 client --------------------------------------------------------------

class ConnClosed(Exception):
    """The peer closed (FIN or RST) while a response was expected."""


class Response:
    def __init__(self):
        self.version = ""
        self.status = 0
        self.reason = ""
        self.headers: list[tuple[str, str]] = []
        self.body = b""
        self.complete = True  # False: EOF before the framing said the body ended
        self.chunked = False
        self.trailers: list[tuple[str, str]] = []
        self.head_bytes = b""

    def header(self, name, default=None):
        name = name.lower()
        for k, v in self.headers:
            if k.lower() == name:
                return v
        return default

    def header_all(self, name):
        name = name.lower()
        return [v for k, v in self.headers if k.lower() == name]

    def has(self, name):
        return self.header(name) is not None

    def json(self):
        return json.loads(self.body.decode("utf-8"))

    def connection_tokens(self):
        return {t.strip().lower() for v in self.header_all("connection") for t in v.split(",")}

    def __repr__(self):
        return (f"<Response {self.version} {self.status} {self.reason!r} headers={self.headers} "
                f"body[{len(self.body)}]={self.body[:200]!r} complete={self.complete}>")


STATUS_RE = re.compile(rb"^HTTP/(\d\.\d) (\d{3})(?: (.*))?$")


class RawConn:
    """A socket with a buffer; reads responses strictly (CRLF, exact framing)."""

    def __init__(self, sock):
        self.sock = sock
        self.buf = b""
        self.eof = False
        self.reset = False

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def send(self, data: bytes):
        self.sock.sendall(data)
        return self

    def shutdown_write(self):
        self.sock.shutdown(socket.SHUT_WR)

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def _fill(self) -> bool:
        if self.eof:
            return False
        try:
            data = self.sock.recv(262144)
        except ConnectionResetError:
            self.eof = self.reset = True
            return False
        if not data:
            self.eof = True
            return False
        self.buf += data
        return True

    def read_line(self) -> bytes:
        while True:
            i = self.buf.find(b"\r\n")
            if i >= 0:
                line, self.buf = self.buf[:i], self.buf[i + 2:]
                return line
            if not self._fill():
                raise ConnClosed(f"connection closed mid-line; buffered {self.buf[:200]!r}")

    def read_exact(self, n) -> tuple[bytes, bool]:
        while len(self.buf) < n:
            if not self._fill():
                data, self.buf = self.buf, b""
                return data, False
        data, self.buf = self.buf[:n], self.buf[n:]
        return data, True

    def read_to_eof(self) -> bytes:
        while self._fill():
            pass
        data, self.buf = self.buf, b""
        return data

    def read_head(self) -> Response:
        r = Response()
        line = self.read_line()
        m = STATUS_RE.match(line)
        if not m:
            raise AssertionError(f"bad status line {line!r}")
        r.version = m.group(1).decode()
        r.status = int(m.group(2))
        r.reason = (m.group(3) or b"").decode("latin-1")
        raw = [line]
        while True:
            h = self.read_line()
            raw.append(h)
            if h == b"":
                break
            if b":" not in h or h[:1] in (b" ", b"\t"):
                raise AssertionError(f"bad response header line {h!r}")
            k, v = h.split(b":", 1)
            if k != k.strip() or not k:
                raise AssertionError(f"bad response header name {h!r}")
            r.headers.append((k.decode("latin-1"), v.strip(b" \t").decode("latin-1")))
        r.head_bytes = b"\r\n".join(raw) + b"\r\n"
        return r

    def read_response(self, method="GET", interim=False) -> Response:
        """Read one response. 1xx responses are skipped unless `interim`.

        A body cut short by EOF gives complete=False instead of raising.
        """
        while True:
            r = self.read_head()
            if 100 <= r.status < 200:
                if interim:
                    return r
                continue
            break
        te = r.header("transfer-encoding")
        cl = r.header("content-length")
        if method == "HEAD" or r.status in (204, 304):
            return r
        if te is not None:
            if te.lower() != "chunked":
                raise AssertionError(f"unexpected response Transfer-Encoding {te!r}")
            if cl is not None:
                raise AssertionError("response has both Content-Length and Transfer-Encoding")
            r.chunked = True
            self._read_chunked(r)
        elif cl is not None:
            if not cl.isdigit():
                raise AssertionError(f"bad response Content-Length {cl!r}")
            r.body, r.complete = self.read_exact(int(cl))
        else:
            r.body = self.read_to_eof()
        return r

    def _read_chunked(self, r):
        body = []
        try:
            while True:
                line = self.read_line()
                size_txt = line.split(b";", 1)[0]
                if not re.fullmatch(rb"[0-9A-Fa-f]+", size_txt):
                    raise AssertionError(f"bad chunk-size line from server {line!r}")
                size = int(size_txt, 16)
                if size == 0:
                    while True:
                        t = self.read_line()
                        if t == b"":
                            break
                        k, _, v = t.partition(b":")
                        r.trailers.append((k.decode("latin-1"), v.strip().decode("latin-1")))
                    break
                data, ok = self.read_exact(size)
                body.append(data)
                if not ok:
                    raise ConnClosed("EOF inside chunk data")
                crlf, ok = self.read_exact(2)
                if not ok:
                    raise ConnClosed("EOF after chunk data")
                if crlf != b"\r\n":
                    raise AssertionError(f"chunk data not followed by CRLF: {crlf!r}")
        except ConnClosed:
            r.complete = False
        r.body = b"".join(body)

    def assert_closed(self, timeout=10.0):
        """The server must have closed: EOF or RST, and no further bytes."""
        assert self.buf == b"", f"unexpected extra bytes from server: {self.buf[:300]!r}"
        if self.eof:
            return
        self.sock.settimeout(timeout)
        try:
            data = self.sock.recv(65536)
        except ConnectionResetError:
            return
        except socket.timeout:
            raise AssertionError(f"connection still open after {timeout}s (expected close)")
        assert data == b"", f"expected connection close, got more bytes: {data[:300]!r}"

    def assert_open(self):
        """Connection is usable: nothing unexpected buffered and no EOF seen yet."""
        assert self.buf == b"", f"unexpected extra bytes from server: {self.buf[:300]!r}"
        assert not self.eof, "server closed a connection that should stay open"


def exchange(server, data: bytes, n=1, method="GET", timeout=IO_TIMEOUT):
    """Send `data` on a new connection, read `n` responses; return (responses, conn)."""
    c = server.conn(timeout)
    c.send(data)
    out = [c.read_response(method=method) for _ in range(n)]
    return out, c


def get(host_header, path="/", extra="", version="HTTP/1.1", method="GET") -> bytes:
    """Build a simple request head."""
    return (f"{method} {path} {version}\r\nHost: {host_header}\r\n{extra}\r\n").encode("latin-1")


def echo_raw(server, data: bytes):
    """Send one raw request to the echo app and return its JSON (asserting 200)."""
    (r,), c = exchange(server, data)
    c.close()
    assert r.status == 200, f"{r!r}\nlog:\n{server.log()[-3000:]}"
    return r.json()


def echo(server, path="/", method="GET", headers=None, body=None):
    """Well-formed request through http.client; returns the echo JSON."""
    h = server.http()
    try:
        h.request(method, path, body=body, headers=headers or {})
        resp = h.getresponse()
        data = resp.read()
    finally:
        h.close()
    assert resp.status == 200, f"{resp.status} {data[:2000]!r}\nlog:\n{server.log()[-3000:]}"
    return json.loads(data)


def slow_reader(server, data):
    """A client with a tiny receive buffer that sends `data` and reads nothing yet."""
    sock = socket.socket(server.family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # before connect: small window
    sock.settimeout(60)
    sock.connect(server.address)
    c = RawConn(sock)
    c.send(data)
    return c


def wait_for_file(path, timeout=20.0, predicate=None):
    """Observe a side effect of the app (a marker file). Polls; bounded by `timeout`."""
    path = Path(path)
    deadline = time.monotonic() + timeout
    content = None
    while time.monotonic() < deadline:
        if path.exists():
            content = path.read_text()
            if predicate is None or predicate(content):
                return content
        time.sleep(0.02)
    raise AssertionError(f"marker {path} not as expected within {timeout}s; content={content!r}")


def q(s) -> str:
    return urllib.parse.quote(str(s), safe="")


class ErrorLogFile:
    """A log file that grows while a test host runs (mixed into CgiHost and IsapiHost): the
    host sets `log_path`; `log_label` names the log in failures, `log_context()` adds what
    else helps to read one."""

    log_label = "error log"
    log_path: Path

    def log_context(self) -> str:
        return ""

    def error_log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def log_mark(self) -> int:
        """Current size of the log; pass to error_log_since()/wait_log()."""
        try:
            return self.log_path.stat().st_size
        except OSError:
            return 0

    def error_log_since(self, mark: int) -> str:
        try:
            with open(self.log_path, "rb") as f:
                f.seek(mark)
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def wait_log(self, needle: str, since: int = 0, timeout: float = 15.0) -> str:
        """Waits until `needle` appears in the log after `since` (hosts write it
        asynchronously to the response); returns that text."""
        deadline = time.monotonic() + timeout
        while True:
            text = self.error_log_since(since)
            if needle in text:
                return text
            if time.monotonic() > deadline:
                raise AssertionError(f"{needle!r} not in the {self.log_label} within {timeout}s;"
                                     f" log since mark:\n{text[-4000:]}{self.log_context()}")
            time.sleep(0.02)  # poll interval of a bounded wait on the file, not a sync sleep

