"""Echo app: answers with JSON describing the environ it got and the body it read.

How the body is read is chosen by the request header `X-Read` (so paths and query strings
stay free for environ tests):
  all        wsgi.input.read()            (no argument; bypasses the validator, which
                                           insists on exactly one argument)
  readneg    read(-1)
  n          read(size) until b''          size from X-Read-Size (default 3)
  line       readline() until b''
  linen      readline(size) until b''
  lines      readlines()
  lineshint  readlines(size) until []
  iter       for chunk in wsgi.input
  readinto   readinto(bytearray(size)) until 0
  partial    one read(size), rest left unread
  twice      read everything, then read(size), read(), readline() must all be b''
  none       body never touched
Requests with a standard method and a normal path go through wsgiref.validate, with warnings
turned into errors, so any PEP 3333 violation the validator sees becomes a 500.
`X-Errors: text` writes text to wsgi.errors (the server's error log).
`X-Digest: 1` answers only the body's length and sha256 (for big uploads).
"""

import hashlib
import json
import os
import platform
import sys
import warnings
from wsgiref.validate import InputWrapper, validator

warnings.simplefilter("error")

STANDARD_METHODS = {"GET", "HEAD", "POST", "OPTIONS", "PATCH", "PUT", "DELETE", "TRACE"}
WSGI_KEYS = ("wsgi.url_scheme", "wsgi.input_terminated", "wsgi.multithread",
             "wsgi.multiprocess", "wsgi.run_once")


def read_body(environ):
    inp = environ["wsgi.input"]
    raw = inp.input if isinstance(inp, InputWrapper) else inp
    mode = environ.get("HTTP_X_READ", "all")
    size = int(environ.get("HTTP_X_READ_SIZE", "3"))
    pieces, extra = [], []
    if mode == "none":
        pass
    elif mode == "all":
        data = raw.read()
        pieces = [data] if data else []
    elif mode == "readneg":
        data = inp.read(-1)
        pieces = [data] if data else []
    elif mode == "n":
        while True:
            c = inp.read(size)
            if not c:
                break
            pieces.append(c)
    elif mode == "line":
        while True:
            c = inp.readline()
            if not c:
                break
            pieces.append(c)
    elif mode == "linen":
        while True:
            c = inp.readline(size)
            if not c:
                break
            pieces.append(c)
    elif mode == "lines":
        pieces = inp.readlines()
    elif mode == "lineshint":
        while True:
            batch = inp.readlines(size)
            if not batch:
                break
            pieces.extend(batch)
    elif mode == "iter":
        pieces = [c for c in raw]
    elif mode == "readinto":
        buf = bytearray(size)
        while True:
            k = raw.readinto(buf)
            if not k:
                break
            pieces.append(bytes(buf[:k]))
    elif mode == "partial":
        c = inp.read(size)
        pieces = [c] if c else []
    elif mode == "twice":
        data = raw.read()
        pieces = [data] if data else []
        extra = [inp.read(size), raw.read(), inp.readline()]
    else:
        raise ValueError(f"unknown X-Read mode {mode!r}")
    if mode != "none" and inp.read(0) != b"":
        raise AssertionError("read(0) must return b''")
    for p in pieces + extra:
        if type(p) is not bytes:
            raise TypeError(f"wsgi.input returned {type(p)!r}")
    return pieces, extra


def type_checks(environ):
    """PEP 3333 type facts about an environ, for the tests to assert on."""
    return {
        "_bad_types": sorted(k for k, v in environ.items()
                             if "." not in k and type(v) is not str),
        "_non_latin1": sorted(k for k, v in environ.items()
                              if isinstance(v, str) and any(ord(ch) > 255 for ch in v)),
        "_environ_is_dict": type(environ) is dict,
    }


def echo(environ, start_response):
    pieces, extra = read_body(environ)
    if "HTTP_X_ERRORS" in environ:
        errors = environ["wsgi.errors"]
        errors.write(environ["HTTP_X_ERRORS"] + "\n")
        errors.writelines(["lines-" + environ["HTTP_X_ERRORS"] + "\n"])
        print("print-" + environ["HTTP_X_ERRORS"], file=errors)
        errors.flush()
    if "HTTP_X_DIGEST" in environ:
        data = b"".join(pieces)
        body = json.dumps({"length": len(data), "sha256": hashlib.sha256(data).hexdigest()})
        body = body.encode()
        start_response("200 OK", [("Content-Type", "application/json"),
                                  ("Content-Length", str(len(body)))])
        return [body]
    out = {k: v for k, v in environ.items() if isinstance(v, str)}
    for k in WSGI_KEYS:
        if k in environ:
            out[k] = environ[k]
    out["wsgi.version"] = list(environ.get("wsgi.version", ()))
    out.update(type_checks(environ))
    out["_has_file_wrapper"] = "wsgi.file_wrapper" in environ
    out["_body"] = b"".join(pieces).decode("latin-1")
    out["_pieces"] = [p.decode("latin-1") for p in pieces]
    out["_extra"] = [p.decode("latin-1") for p in extra]
    out["_python_version"] = platform.python_version()
    out["_executable_prefix"] = sys.prefix
    out["_cwd"] = os.getcwd()
    body = json.dumps(out, sort_keys=True).encode("utf-8")
    start_response("200 OK", [("Content-Type", "application/json"),
                              ("Content-Length", str(len(body)))])
    return [body]


_validated = validator(echo)


def application(environ, start_response):
    path = environ.get("PATH_INFO", "")
    normal = (environ.get("REQUEST_METHOD") in STANDARD_METHODS
              and (path == "" or path.startswith("/"))
              and "HTTP_X_NO_VALIDATE" not in environ)
    if normal:
        return _validated(environ, start_response)
    return echo(environ, start_response)
