"""Worker-process fixture (test_workers.py): tells which process answered.

At import, the importing pid is appended to the file named by $WORKERS_IMPORT_LOG (if set), so
the tests can see which processes ever ran Python. If the file named by $WORKERS_FAIL_IF
exists at import (or $WORKERS_FAIL_IF is "always"), the import raises instead.

Routes:
  /pid                      -> {"pid": os.getpid(), "version": VERSION}
  /exit                     -> os._exit(3): the worker dies without answering
  /slow?entered=F&seconds=S -> touches F, sleeps S seconds (default 1), answers "slow done"
  /block?entered=F          -> touches F, then never returns (until the process is killed)

test_workers.py copies this file with another VERSION line to test reloads.
"""

import json
import os
import time
import urllib.parse

VERSION = "v1"

_log = os.environ.get("WORKERS_IMPORT_LOG")
if _log:
    with open(_log, "a") as f:
        f.write(f"{os.getpid()}\n")

_fail = os.environ.get("WORKERS_FAIL_IF")
if _fail and (_fail == "always" or os.path.exists(_fail)):
    raise ImportError(f"workers_app refuses to load (pid {os.getpid()})")


def _touch(path):
    if path:
        with open(path, "a") as f:
            f.write(f"{os.getpid()}\n")


def application(environ, start_response):
    path = environ.get("PATH_INFO", "")
    qs = dict(urllib.parse.parse_qsl(environ.get("QUERY_STRING", "")))
    if path == "/exit":
        os._exit(3)
    if path == "/slow":
        _touch(qs.get("entered"))
        time.sleep(float(qs.get("seconds", "1")))
        body = b"slow done"
        ctype = "text/plain"
    elif path == "/block":
        _touch(qs.get("entered"))
        while True:
            time.sleep(3600)
    else:
        body = json.dumps({"pid": os.getpid(), "version": VERSION}).encode()
        ctype = "application/json"
    start_response("200 OK", [("Content-Type", ctype), ("Content-Length", str(len(body)))])
    return [body]
