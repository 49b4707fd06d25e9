"""WSGI app used by bench/compare.sh: the same routes for every server compared.

/hello   13-byte text/plain with Content-Length
/echo    reads the request body fully, answers its length as text
/big     1 MiB as 16 chunks of 64 KiB, with Content-Length (`?mib=N`: N MiB, for slow readers)
/stream  generator of 100 small chunks, no Content-Length (chunked on HTTP/1.1)
/slow    sleeps 50 ms (a blocking call such as a DB query), then /hello
/app     a Flask view rendering a Jinja template (flask_app.py; Flask imported on first use,
         so the other routes' memory and start-up don't include it)
"""

import os
import sys
import time

_HERE = os.path.dirname(os.path.abspath(__file__))
if _HERE not in sys.path:
    sys.path.insert(0, _HERE)  # flask_app sits beside this file, whatever the server's cwd

HELLO = b"Hello, World!"
CHUNK = b"x" * (64 * 1024)
BIG_CHUNKS = 16
STREAM_PIECE = b"stream-chunk-0123456789abcdef\n"
STREAM_COUNT = 100
READ_BLOCK = 64 * 1024


def _text(start_response, body, status="200 OK"):
    start_response(
        status,
        [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))],
    )
    return [body]


def _hello(environ, start_response):
    return _text(start_response, HELLO)


def _echo(environ, start_response):
    stream = environ["wsgi.input"]
    try:
        remaining = int(environ.get("CONTENT_LENGTH") or 0)
    except ValueError:
        remaining = 0
    total = 0
    if remaining > 0:
        # Known length: read exactly that much (PEP 3333 apps must not read past it).
        while remaining > 0:
            data = stream.read(min(READ_BLOCK, remaining))
            if not data:
                break
            total += len(data)
            remaining -= len(data)
    elif environ.get("wsgi.input_terminated"):
        # Chunked upload on a server that signals end of input: read to EOF.
        while True:
            data = stream.read(READ_BLOCK)
            if not data:
                break
            total += len(data)
    return _text(start_response, str(total).encode("ascii"))


def _big(environ, start_response):
    query = environ.get("QUERY_STRING", "")
    chunks = BIG_CHUNKS * int(query[4:]) if query.startswith("mib=") else BIG_CHUNKS
    start_response(
        "200 OK",
        [
            ("Content-Type", "application/octet-stream"),
            ("Content-Length", str(len(CHUNK) * chunks)),
        ],
    )
    return [CHUNK] * chunks


def _stream_body():
    for _ in range(STREAM_COUNT):
        yield STREAM_PIECE


def _stream(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return _stream_body()


def _slow(environ, start_response):
    time.sleep(0.05)
    return _text(start_response, HELLO)


_flask = []


def _app(environ, start_response):
    if not _flask:
        from flask_app import app as flask_app  # the import lock makes a racing first call safe

        _flask.append(flask_app)
    return _flask[0](environ, start_response)


ROUTES = {
    "/hello": _hello,
    "/echo": _echo,
    "/big": _big,
    "/stream": _stream,
    "/slow": _slow,
    "/app": _app,
}


def application(environ, start_response):
    handler = ROUTES.get(environ.get("PATH_INFO", ""))
    if handler is None:
        return _text(start_response, b"not found", "404 Not Found")
    return handler(environ, start_response)


app = application
