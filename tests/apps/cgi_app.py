"""App for the CGI-specific tests (test_cgi.py).

  /gate        yields b"first\n", waits until the file named by the X-Gate header exists
               (bounded), then yields b"second\n": proves chunks reach the client as yielded.
  /raise       raises before start_response (500 + traceback on stderr).
  /env         JSON of the environ's str values.
  /read        reads wsgi.input to its end, answers its length and sha256.
"""

import hashlib
import json
import os
import time


def _gate(environ):
    yield b"first\n"
    path = environ.get("HTTP_X_GATE", "")
    deadline = time.monotonic() + 30
    while not os.path.exists(path) and time.monotonic() < deadline:
        time.sleep(0.01)  # waiting for the test's event (a file appearing), bounded
    yield b"second\n" if os.path.exists(path) else b"gate never opened\n"


def application(environ, start_response):
    path = environ.get("PATH_INFO", "")
    if path == "/gate":
        start_response("200 OK", [("Content-Type", "text/plain")])
        return _gate(environ)
    if path == "/raise":
        raise RuntimeError("cgi_app was told to fail")
    if path == "/read":
        data = environ["wsgi.input"].read()
        body = json.dumps({"len": len(data), "sha256": hashlib.sha256(data).hexdigest()})
    else:
        body = json.dumps({k: v for k, v in environ.items() if isinstance(v, str)},
                          sort_keys=True)
    start_response("200 OK", [("Content-Type", "application/json")])
    return [body.encode()]
