"""Raw HTTP/1.1 client for tests: connections that read responses strictly (`RawConn`),
one-shot exchanges, requests built by hand, the echo app's JSON, a slow reader.

Everything uses real sockets; a client takes any object with `conn()`/`http()`/`family`/
`address` (a `gwprocess.Server`, an `IsapiHost` adapter).
"""

from __future__ import annotations

import http.client
import json
import socket
import urllib.parse

import gwresponse
from gwresponse import ConnClosed, Response

IO_TIMEOUT = 15.0


class UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path, timeout=IO_TIMEOUT):
        super().__init__("localhost", timeout=timeout)
        self._path = path

    def connect(self):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(self.timeout)
        s.connect(self._path)
        self.sock = s


class RawConn:
    """A socket with a buffer; its responses are read strictly by gwresponse (CRLF, exact
    framing)."""

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
        return gwresponse.read_head(self)

    def read_response(self, method="GET", interim=False) -> Response:
        """Read one response. 1xx responses are skipped unless `interim`.

        A body cut short by EOF gives complete=False instead of raising.
        """
        return gwresponse.read_response(self, method, interim)

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


def q(s) -> str:
    return urllib.parse.quote(str(s), safe="")
