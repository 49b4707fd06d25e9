"""Metrics fixture (test_metrics.py): answers with the serving pid, so a test can tell which
worker counted a request.

Routes (any method; HEAD gets the GET answer without its body, from the server):
  POST anything              -> reads the body, 404 {"pid": ...}
  /exit                      -> os._exit(3): the worker dies without answering
  /hold?entered=F&release=G  -> touches F, waits until G exists (at most 60 s), 200
  /big?n=N                   -> N bytes of "x" (200)
  anything else              -> 200 {"pid": ...}
"""

import json
import os
import time
import urllib.parse


def application(environ, start_response):
    method = environ["REQUEST_METHOD"]
    path = environ.get("PATH_INFO", "")
    query = dict(urllib.parse.parse_qsl(environ.get("QUERY_STRING", "")))
    if path == "/exit":
        os._exit(3)
    if path == "/hold":
        with open(query["entered"], "w"):
            pass
        deadline = time.monotonic() + 60  # bounds a test that never releases it
        while not os.path.exists(query["release"]) and time.monotonic() < deadline:
            time.sleep(0.01)
    if path == "/big":
        n = int(query["n"])
        start_response("200 OK", [("Content-Type", "application/octet-stream"),
                                  ("Content-Length", str(n))])
        return [b"x" * n]
    status = "200 OK"
    if method == "POST":
        environ["wsgi.input"].read()
        status = "404 Not Found"
    body = json.dumps({"pid": os.getpid()}).encode()
    start_response(status, [("Content-Type", "application/json"),
                            ("Content-Length", str(len(body)))])
    return [body]
