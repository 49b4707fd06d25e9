"""Conformance app: one WSGI app the conformance suite runs behind every front end.

Default (any path not under /_/): answers 200 application/json
    {"environ": {str keys -> str values; wsgi.* as bools / lists / type names},
     "read": {"len": n, "sha256": hex, "data": latin-1 text when n <= 65536, "pieces": k}}
How wsgi.input is read is chosen by the header `X-Read`, with echo_app's readers
(all (default), n with X-Read-Size, line, lines, iter, none, ...).
Behaviour routes, chosen by PATH_INFO:
    /_/fixed            200 text/plain, Content-Length, body "fixed body\n", X-Method header
    /_/status/NNN       that status (204/304: no body, no Content-Type); 302 adds Location
    /_/stream/N         N chunks "chunk-i\n" from a generator, no Content-Length
    /_/write/N          N pieces through the write() callable, then an empty iterable
    /_/headers          repeated Set-Cookie and custom headers
    /_/raise            exception before start_response
    /_/raise-after      exception after the first body chunk was yielded
    /_/raise-after-cl   the same with Content-Length: 100 declared
    /_/bad-status       invalid status line from the app ("abc")
    /_/bare-status/NNN  the status as a bare code ("201", no reason phrase), body "bare NNN\n"
    /_/final-status/NNN a well-formed status outside 200-599 given as the final one
                        ("NNN Continue" for 100, "NNN X" otherwise; NNN as written: "099")
    /_/hop/NAME         hop-by-hop header from the app (upgrade, transfer-encoding, te)
    /_/bad-header       header value with CR LF
Requests with a standard method and a valid path go through wsgiref.validate with warnings
as errors (a PEP 3333 violation by the gateway becomes a 500); the /_/ routes that break the
rules on purpose, and extension methods, bypass it.
"""

import hashlib
import json
import warnings
from wsgiref.validate import validator

from echo_app import read_body, type_checks

warnings.simplefilter("error")

STANDARD_METHODS = {"GET", "HEAD", "POST", "OPTIONS", "PATCH", "PUT", "DELETE", "TRACE"}
UNVALIDATED = ("/_/raise", "/_/bad-status", "/_/bare-status/", "/_/final-status/", "/_/hop/", "/_/bad-header")
REASONS = {200: "OK", 201: "Created", 202: "Accepted", 204: "No Content",
           301: "Moved Permanently", 302: "Found", 304: "Not Modified", 400: "Bad Request",
           404: "Not Found", 410: "Gone", 418: "I'm a teapot", 500: "Internal Server Error",
           503: "Service Unavailable"}
SMALL = 65536


def _read(environ):
    if environ.get("HTTP_X_READ") == "none":
        return None
    pieces, _ = read_body(environ)  # the same readers as echo_app (X-Read modes)
    if environ["wsgi.input"].read(1) != b"":
        raise AssertionError("wsgi.input returned data after EOF")
    data = b"".join(pieces)
    out = {"len": len(data), "sha256": hashlib.sha256(data).hexdigest(), "pieces": len(pieces)}
    if len(data) <= SMALL:
        out["data"] = data.decode("latin-1")
    return out


def _environ(environ):
    out = {}
    for k, v in environ.items():
        if isinstance(v, str):
            out[k] = v
        elif isinstance(v, bool):
            out[k] = v
        elif k == "wsgi.version":
            out[k] = list(v)
        else:
            out[k] = f"<{type(v).__name__}>"
    out.update(type_checks(environ))
    return out


def echo(environ, start_response):
    read = _read(environ)
    body = json.dumps({"environ": _environ(environ), "read": read}, sort_keys=True).encode()
    start_response("200 OK", [("Content-Type", "application/json"),
                              ("Content-Length", str(len(body)))])
    return [body]


def fixed(environ, start_response, arg):
    body = b"fixed body\n"
    start_response("200 OK", [("Content-Type", "text/plain"),
                              ("Content-Length", str(len(body))),
                              ("X-Method", environ["REQUEST_METHOD"])])
    return [body]


def status(environ, start_response, arg):
    code = int(arg)
    line = f"{code} {REASONS.get(code, 'Other')}"
    if code in (204, 304):
        start_response(line, [("X-Status", arg)])
        return []
    body = f"status {code}\n".encode()
    headers = [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))]
    if 300 <= code < 400:
        headers.append(("Location", "http://example.com/moved?x=1"))
    start_response(line, headers)
    return [body]


def stream(environ, start_response, arg):
    start_response("200 OK", [("Content-Type", "text/plain")])
    for i in range(int(arg or 3)):
        yield b"chunk-%d\n" % i


def write_route(environ, start_response, arg):
    write = start_response("200 OK", [("Content-Type", "text/plain")])
    for i in range(int(arg or 3)):
        write(b"write-%d\n" % i)
    return []


def headers(environ, start_response, arg):
    body = b"headers\n"
    start_response("200 OK", [("Content-Type", "text/plain; charset=utf-8"),
                              ("Set-Cookie", "a=1; Path=/"),
                              ("Set-Cookie", "b=2; HttpOnly"),
                              ("X-Custom", "value with  spaces"),
                              ("Cache-Control", "no-store"),
                              ("Content-Length", str(len(body)))])
    return [body]


def raise_before(environ, start_response, arg):
    raise RuntimeError("conformance-secret-before")


def raise_after(environ, start_response, arg):
    start_response("200 OK", [("Content-Type", "text/plain")])
    yield b"first-chunk"
    raise RuntimeError("conformance-secret-after")


def raise_after_cl(environ, start_response, arg):
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "100")])
    yield b"first-chunk"
    raise RuntimeError("conformance-secret-after-cl")


def bad_status(environ, start_response, arg):
    start_response("abc", [("Content-Type", "text/plain")])
    return [b"bad status body"]


def bare_status(environ, start_response, arg):
    body = f"bare {arg}\n".encode()
    start_response(arg, [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]


def final_status(environ, start_response, arg):
    start_response(f"{arg} {'Continue' if arg == '100' else 'X'}",
                   [("Content-Type", "text/plain")])
    return [b"final status body"]


HOP = {"upgrade": ("Upgrade", "websocket"), "transfer-encoding": ("Transfer-Encoding", "chunked"),
       "te": ("TE", "trailers")}


def hop(environ, start_response, arg):
    start_response("200 OK", [("Content-Type", "text/plain"), HOP[arg]])
    return [b"hop body"]


def bad_header(environ, start_response, arg):
    start_response("200 OK", [("Content-Type", "text/plain"),
                              ("X-Bad", "a\r\nSet-Cookie: evil=1")])
    return [b"bad header body"]


ROUTES = {"fixed": fixed, "status": status, "stream": stream, "write": write_route,
          "headers": headers, "raise": raise_before, "raise-after": raise_after,
          "raise-after-cl": raise_after_cl,
          "bad-status": bad_status, "bare-status": bare_status, "final-status": final_status,
          "hop": hop,
          "bad-header": bad_header}


def _dispatch(environ, start_response):
    path = environ.get("PATH_INFO", "")
    if path.startswith("/_/"):
        name, _, arg = path[3:].partition("/")
        route = ROUTES.get(name)
        if route is None:
            body = b"no such route\n"
            start_response("404 Not Found", [("Content-Type", "text/plain"),
                                             ("Content-Length", str(len(body)))])
            return [body]
        return route(environ, start_response, arg)
    return echo(environ, start_response)


_validated = validator(_dispatch)


def application(environ, start_response):
    path = environ.get("PATH_INFO", "")
    normal = (environ.get("REQUEST_METHOD") in STANDARD_METHODS
              and (path == "" or path.startswith("/"))
              and not path.startswith(UNVALIDATED))
    if normal:
        return _validated(environ, start_response)
    return _dispatch(environ, start_response)
