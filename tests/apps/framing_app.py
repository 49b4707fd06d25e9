"""Response-side test app: framing, errors, close() recording, slow and big responses.

Routes are chosen by PATH_INFO, parameters by the query string. Routes under /v/ go
through wsgiref.validate (warnings are errors); the others are raw because they either
break the rules on purpose or need len() of the returned list (the validator's wrapper
hides it).
"""

import io
import os
import sys
import threading
import time
import warnings
import zlib
from urllib.parse import parse_qs
from wsgiref.validate import validator

warnings.simplefilter("error")

DATA_FILE = __file__
BLOCK = bytes(range(256)) * 256  # 64 KiB pattern for big bodies


def _q(environ):
    return {k: v[-1] for k, v in parse_qs(environ.get("QUERY_STRING", ""),
                                          keep_blank_values=True).items()}


def _mark(path, text):
    if path:
        with open(path, "a") as f:
            f.write(text)


class Recording:
    """Iterable that records how far it was consumed and whether close() was called."""

    def __init__(self, marker, parts, size=16, fail_at=None):
        self.marker, self.parts, self.size, self.fail_at = marker, parts, size, fail_at
        self.yielded = 0

    def __iter__(self):
        for i in range(self.parts):
            if self.fail_at is not None and i == self.fail_at:
                raise RuntimeError("recording-iterable-failure")
            self.yielded += 1
            yield (b"%06d" % i + b"x" * self.size)[: self.size]

    def close(self):
        _mark(self.marker, f"closed yielded={self.yielded}\n")


def hello(environ, start_response, p):
    body = b"hello " + p.get("i", "").encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]


def cl(environ, start_response, p):
    declared, actual = int(p["declared"]), int(p["actual"])
    body = (b"0123456789" * (actual // 10 + 1))[:actual]
    write = start_response("200 OK", [("Content-Type", "text/plain"),
                                      ("Content-Length", str(declared))])
    mode = p.get("mode", "list")
    if mode == "write":
        for i in range(0, len(body), 4):
            write(body[i:i + 4])
        return []
    if mode == "gen":
        return (body[i:i + 3] for i in range(0, len(body), 3))
    return [body]


def gen(environ, start_response, p):
    parts = int(p.get("parts", "3"))
    start_response("200 OK", [("Content-Type", "text/plain")])
    for i in range(parts):
        yield b"part-%d\n" % i


def write_route(environ, start_response, p):
    parts = int(p.get("parts", "3"))
    headers = [("Content-Type", "text/plain")]
    if "cl" in p:
        headers.append(("Content-Length", p["cl"]))
    write = start_response("200 OK", headers)
    for i in range(parts):
        write(b"w-%d\n" % i)
    return [b"tail\n"] if p.get("tail") == "1" else []


def status_route(environ, start_response, p):
    code = p.get("code", "200")
    reasons = {"200": "OK", "204": "No Content", "304": "Not Modified", "201": "Created",
               "404": "Not Found"}
    headers = [] if code in ("204", "304") else [("Content-Type", "text/plain")]
    if "cl" in p:
        headers.append(("Content-Length", p["cl"]))
    reason = p.get("reason") or reasons.get(code, "Whatever")
    start_response(f"{code} {reason}", headers)
    return Recording(p.get("marker"), int(p.get("parts", "2")), size=8)


def closing(environ, start_response, p):
    headers = [("Content-Type", "application/octet-stream")]
    if "cl" in p:
        headers.append(("Content-Length", p["cl"]))
    start_response("200 OK", headers)
    fail_at = int(p["fail_at"]) if "fail_at" in p else None
    return Recording(p.get("marker"), int(p.get("parts", "4")), size=int(p.get("size", "16")),
                     fail_at=fail_at)


def exc_before(environ, start_response, p):
    raise RuntimeError("boom-before-" + p.get("token", ""))


def exc_after_start(environ, start_response, p):
    start_response("200 OK", [("Content-Type", "text/plain")])
    raise RuntimeError("boom-after-start-" + p.get("token", ""))


def exc_first_iter(environ, start_response, p):
    start_response("200 OK", [("Content-Type", "text/plain")])
    raise RuntimeError("boom-first-iter-" + p.get("token", ""))
    yield b"never"  # noqa: unreachable; makes this a generator


def exc_iter(environ, start_response, p):
    headers = [("Content-Type", "text/plain")]
    if "cl" in p:
        headers.append(("Content-Length", p["cl"]))
    start_response("200 OK", headers)
    yield b"first-chunk"
    raise RuntimeError("boom-iter-" + p.get("token", ""))


def exc_info_replace(environ, start_response, p):
    start_response("200 OK", [("Content-Type", "text/plain")])
    try:
        raise ValueError("replaced-" + p.get("token", ""))
    except ValueError:
        start_response("503 Service Unavailable", [("Content-Type", "text/plain")],
                       sys.exc_info())
    return [b"replacement body"]


def exc_info_after(environ, start_response, p):
    headers = [("Content-Type", "text/plain")]
    write = start_response("200 OK", headers)
    write(b"already-sent")
    try:
        raise ValueError("late-" + p.get("token", ""))
    except ValueError:
        # must re-raise: headers are out
        start_response("500 Internal Server Error", headers, sys.exc_info())
    return [b"must-not-appear"]


def slow(environ, start_response, p):
    _mark(p.get("entered"), "entered\n")
    time.sleep(1)  # models a slow database call
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "9")])
    return [b"slow done"]


def wait(environ, start_response, p):
    """Blocks inside the app until the test creates the gate file (bounded)."""
    _mark(p.get("entered"), "entered\n")
    deadline = time.monotonic() + 30
    while not os.path.exists(p["gate"]):
        if time.monotonic() > deadline:
            raise RuntimeError("gate never opened")
        time.sleep(0.01)
    body = b"released " + p.get("i", "").encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]


def thread_route(environ, start_response, p):
    """Which worker thread runs this request."""
    body = str(threading.get_ident()).encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]


def _wait_gate(path):
    deadline = time.monotonic() + 30
    while not os.path.exists(path):
        if time.monotonic() > deadline:
            raise RuntimeError("gate never opened")
        time.sleep(0.01)


def stream_gate(environ, start_response, p):
    """Sends a first block, then blocks until the test opens the gate: proves streaming."""
    write = start_response("200 OK", [("Content-Type", "text/plain")])
    burst = [b"burst %d;" % i for i in range(int(p.get("burst", "0")))]
    if p.get("mode") == "write":
        write(b"first block;")
        for block in burst:
            write(block)
        _wait_gate(p["gate"])
        write(b"second block;")
        return []
    return _gated_gen(p["gate"], burst)


def _gated_gen(gate, burst):
    yield b""  # empty chunks must not trigger or delay anything
    yield b"first block;"
    yield from burst
    _wait_gate(gate)
    yield b"second block;"


def exc_after_empty(environ, start_response, p):
    start_response("200 OK", [("Content-Type", "text/plain")])
    yield b""
    raise RuntimeError("boom-after-empty-" + p.get("token", ""))


def latin1_header(environ, start_response, p):
    start_response("299 Custom Reason", [("Content-Type", "text/plain"),
                                         ("X-Latin1", "caf\xe9"), ("Content-Length", "2")])
    return [b"ok"]


def big(environ, start_response, p):
    size = int(p.get("size", str(8 * 1024 * 1024)))
    headers = [("Content-Type", "application/octet-stream")]
    if p.get("cl") == "1":
        headers.append(("Content-Length", str(size)))
    start_response("200 OK", headers)
    return _BigBody(size, p.get("marker"))


class _BigBody:
    def __init__(self, size, marker):
        self.size, self.marker, self.sent = size, marker, 0

    def __iter__(self):
        left = self.size
        while left > 0:
            n = min(left, len(BLOCK))
            left -= n
            self.sent += n
            yield BLOCK[:n]

    def close(self):
        _mark(self.marker, f"closed sent={self.sent}\n")


def file_route(environ, start_response, p):
    headers = [("Content-Type", "application/octet-stream")]
    if "cl" in p:
        headers.append(("Content-Length", p["cl"]))
    start_response("200 OK", headers)
    if p.get("kind") == "bytesio":
        with open(DATA_FILE, "rb") as f:
            flo = io.BytesIO(f.read())
    else:
        flo = open(p.get("path", DATA_FILE), "rb")
    return environ["wsgi.file_wrapper"](flo, int(p.get("blk", "8192")))


def count(environ, start_response, p):
    """Reads the body in 64 KiB blocks to its end; answers its length and CRC-32."""
    inp, n, crc = environ["wsgi.input"], 0, 0
    while True:
        block = inp.read(65536)
        if not block:
            break
        n += len(block)
        crc = zlib.crc32(block, crc)
    body = f"{n} {crc}".encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]


def server_header(environ, start_response, p):
    start_response("200 OK", [("Content-Type", "text/plain"), ("Server", "custom-server/1"),
                              ("Date", "Mon, 01 Jan 2001 00:00:00 GMT"), ("Content-Length", "2")])
    return [b"ok"]


def app_conn_close(environ, start_response, p):
    start_response("200 OK", [("Content-Type", "text/plain"), ("Connection", "close"),
                              ("Content-Length", "5")])
    return [b"bye!\n"]


def list_route(environ, start_response, p):
    parts = int(p.get("parts", "1"))
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"item-%d;" % i for i in range(parts)]


def multi_header(environ, start_response, p):
    start_response("200 OK", [("Content-Type", "text/plain"), ("Set-Cookie", "a=1"),
                              ("Set-Cookie", "b=2"), ("Content-Length", "2")])
    return [b"ok"]


# ---- apps that break the rules on purpose ---------------------------------------------

BAD_STATUS = {
    "abc": "abc",
    "empty": "",
    "short": "20 OK",
    "long": "2000 OK",
    "crlf": "200 OK\r\nX-Injected: 1",
    "nonstr": 200,
}

BAD_HEADERS = {
    "crlf": ("X-Bad", "a\r\nSet-Cookie: evil=1"),
    "lf": ("X-Bad", "a\nb"),
    "cr": ("X-Bad", "a\rb"),
    "nul": ("X-Bad", "a\x00b"),
    "name_space": ("Bad Name", "v"),
    "name_colon": ("X:Y", "v"),
    "name_empty": ("", "v"),
    "value_int": ("X-Int", 5),
    "non_latin1": ("X-U", "\u2603"),
    "not_tuple": "X-Foo: bar",
}

HOP = {
    "transfer-encoding": ("Transfer-Encoding", "chunked"),
    "upgrade": ("Upgrade", "websocket"),
    "te": ("TE", "trailers"),
    "trailer": ("Trailer", "X-Foo"),
    "proxy-authenticate": ("Proxy-Authenticate", "Basic"),
    "proxy-authorization": ("Proxy-Authorization", "Basic Zm9vOmJhcg=="),
}


def bad(environ, start_response, p):
    kind = p.get("kind", "")
    what = p.get("what", "")
    ct = ("Content-Type", "text/plain")
    if kind == "status":
        start_response(BAD_STATUS[what], [ct])
        return [b"body"]
    if kind == "header":
        start_response("200 OK", [ct, BAD_HEADERS[what]])
        return [b"body"]
    if kind == "hop":
        start_response("200 OK", [ct, HOP[what]])
        return [b"body"]
    if kind == "str_chunk":
        start_response("200 OK", [ct])
        return ["text, not bytes"]
    if kind == "str_chunk_after":
        start_response("200 OK", [ct])
        return _str_after()
    if kind == "noniterable":
        start_response("200 OK", [ct])
        return 42
    if kind == "none":
        start_response("200 OK", [ct])
        return None
    if kind == "no_start_response":
        return [b"nobody called start_response"]
    if kind == "double_start":
        start_response("200 OK", [ct])
        start_response("200 OK", [ct])
        return [b"x"]
    if kind == "write_str":
        write = start_response("200 OK", [ct])
        write("text")
        return []
    if kind == "headers_tuple_items":
        start_response("200 OK", [ct, ("X-A", "1", "extra")])
        return [b"x"]
    raise ValueError(f"unknown bad kind {kind!r}")


def _str_after():
    yield b"bytes first"
    yield "then a str"


ROUTES = {
    "/hello": hello,
    "/cl": cl,
    "/gen": gen,
    "/write": write_route,
    "/status": status_route,
    "/closing": closing,
    "/exc_before": exc_before,
    "/exc_after_start": exc_after_start,
    "/exc_first_iter": exc_first_iter,
    "/exc_iter": exc_iter,
    "/exc_info_replace": exc_info_replace,
    "/exc_info_after": exc_info_after,
    "/slow": slow,
    "/wait": wait,
    "/thread": thread_route,
    "/big": big,
    "/stream_gate": stream_gate,
    "/exc_after_empty": exc_after_empty,
    "/latin1_header": latin1_header,
    "/file": file_route,
    "/count": count,
    "/server_header": server_header,
    "/app_conn_close": app_conn_close,
    "/list": list_route,
    "/multi_header": multi_header,
    "/bad": bad,
}


def _raw(environ, start_response):
    path = environ.get("PATH_INFO", "")
    if path.startswith("/v/"):
        path = path[2:]
    route = ROUTES.get(path)
    if route is None:
        start_response("404 Not Found", [("Content-Type", "text/plain"), ("Content-Length", "9")])
        return [b"not found"]
    return route(environ, start_response, _q(environ))


_validated = validator(_raw)


def application(environ, start_response):
    if environ.get("PATH_INFO", "").startswith("/v/"):
        return _validated(environ, start_response)
    return _raw(environ, start_response)
