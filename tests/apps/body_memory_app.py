"""Reads the request body in one call, the way the request header `X-Read` says:
  all      wsgi.input.read()
  length   wsgi.input.read(int(CONTENT_LENGTH))
  huge     wsgi.input.read(10**9)
  line     wsgi.input.readline()
Just before the call it writes `body-memory: thread <native id> reads (<mode>) <X-Tag>` to
wsgi.errors, so a test can watch that thread block inside the read (tests/test_body_memory.py
measures the process's memory meanwhile). Answers the length and sha256 of what it read.
"""

import hashlib
import threading


def application(environ, start_response):
    mode = environ.get("HTTP_X_READ", "all")
    inp = environ["wsgi.input"]
    errors = environ["wsgi.errors"]
    tag = environ.get("HTTP_X_TAG", "-")
    errors.write(f"body-memory: thread {threading.get_native_id()} reads ({mode}) {tag}\n")
    errors.flush()
    if mode == "all":
        data = inp.read()
    elif mode == "length":
        data = inp.read(int(environ.get("CONTENT_LENGTH") or 0))
    elif mode == "huge":
        data = inp.read(10**9)
    elif mode == "line":
        data = inp.readline()
    else:
        raise ValueError(f"unknown X-Read mode {mode!r}")
    body = f"{len(data)} {hashlib.sha256(data).hexdigest()}\n".encode()
    start_response("200 OK", [("Content-Type", "text/plain"),
                              ("Content-Length", str(len(body)))])
    return [body]
