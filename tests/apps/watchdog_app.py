"""The watchdog's fixture (test_watchdog.py): a request that never comes back, and one that
leaks memory on purpose.

Routes:
  /pid        -> {"pid": os.getpid()}
  /hang       -> stuck_in_sleep(): time.sleep(3600), the hung request a stack must show
  /leak?mib=N -> keeps N more MiB (written, so resident) for the life of the process, up to
                 $WATCHDOG_LEAK_CAP_MIB in all (default 512), and answers the pid and the total
"""

import json
import os
import time
import urllib.parse

_kept = []
_CAP = int(os.environ.get("WATCHDOG_LEAK_CAP_MIB", "512"))


def stuck_in_sleep():
    time.sleep(3600)


def _answer(start_response, data):
    body = json.dumps(data).encode()
    start_response("200 OK", [("Content-Type", "application/json"),
                              ("Content-Length", str(len(body)))])
    return [body]


def application(environ, start_response):
    path = environ.get("PATH_INFO", "")
    qs = dict(urllib.parse.parse_qsl(environ.get("QUERY_STRING", "")))
    if path == "/hang":
        stuck_in_sleep()
    if path == "/leak":
        mib = int(qs.get("mib", "8"))
        if len(_kept) + mib <= _CAP:
            # b"\xab" * n writes every byte: the pages are resident, not just reserved.
            _kept.extend(b"\xab" * (1 << 20) for _ in range(mib))
        return _answer(start_response, {"pid": os.getpid(), "leaked_mib": len(_kept)})
    return _answer(start_response, {"pid": os.getpid()})
