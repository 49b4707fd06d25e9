"""Strict parsing of HTTP/1.1 responses from the server under test: status line, header
lines (CRLF only, no obs-fold, no space before the colon), body by exact framing
(Content-Length, chunked with trailers, or to EOF); `Response` holds the result.

The reader passed in (a `gwclient.RawConn`) supplies `read_line()` (one CRLF-terminated line,
`ConnClosed` at EOF), `read_exact(n)` (bytes, whether all came) and `read_to_eof()`.
"""

from __future__ import annotations

import json
import re


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


def read_head(reader) -> Response:
    r = Response()
    line = reader.read_line()
    m = STATUS_RE.match(line)
    if not m:
        raise AssertionError(f"bad status line {line!r}")
    r.version = m.group(1).decode()
    r.status = int(m.group(2))
    r.reason = (m.group(3) or b"").decode("latin-1")
    raw = [line]
    while True:
        h = reader.read_line()
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

def read_response(reader, method="GET", interim=False) -> Response:
    """Read one response. 1xx responses are skipped unless `interim`.

    A body cut short by EOF gives complete=False instead of raising.
    """
    while True:
        r = reader.read_head()
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
        _read_chunked(reader, r)
    elif cl is not None:
        if not cl.isdigit():
            raise AssertionError(f"bad response Content-Length {cl!r}")
        r.body, r.complete = reader.read_exact(int(cl))
    else:
        r.body = reader.read_to_eof()
    return r

def _read_chunked(reader, r):
    body = []
    try:
        while True:
            line = reader.read_line()
            size_txt = line.split(b";", 1)[0]
            if not re.fullmatch(rb"[0-9A-Fa-f]+", size_txt):
                raise AssertionError(f"bad chunk-size line from server {line!r}")
            size = int(size_txt, 16)
            if size == 0:
                while True:
                    t = reader.read_line()
                    if t == b"":
                        break
                    k, _, v = t.partition(b":")
                    r.trailers.append((k.decode("latin-1"), v.strip().decode("latin-1")))
                break
            data, ok = reader.read_exact(size)
            body.append(data)
            if not ok:
                raise ConnClosed("EOF inside chunk data")
            crlf, ok = reader.read_exact(2)
            if not ok:
                raise ConnClosed("EOF after chunk data")
            if crlf != b"\r\n":
                raise AssertionError(f"chunk data not followed by CRLF: {crlf!r}")
    except ConnClosed:
        r.complete = False
    r.body = b"".join(body)
