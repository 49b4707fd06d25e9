"""Worker-process fixture (test_workers.py): tells which process answered.

At import, the importing pid is appended to the file named by $WORKERS_IMPORT_LOG (if set), so
the tests can see which processes ever ran Python, and VERSION is written to the file
$WORKERS_VERSION_DIR/<pid> (if set), so they can see which code each process runs. While the file
named by $WORKERS_IMPORT_HOLD exists, the import waits (a slow import the test ends by removing
the file). If $WORKERS_SPAWN_AT_IMPORT names a file, a long-lived shell is started (inheriting
every inheritable fd) and its pid appended there. If the file named by $WORKERS_FAIL_IF exists at
import (or $WORKERS_FAIL_IF is "always"), the import raises instead. If $WORKERS_SLOW_ONCE names a
file, the one worker that creates it (O_EXCL: exactly one wins) sleeps $WORKERS_SLOW_SECONDS
(default 3) at import; the others import at once (one worker ready seconds after the other).

Routes:
  /pid                      -> {"pid": os.getpid(), "version": VERSION}
  /exit                     -> os._exit(3): the worker dies without answering
  /slow?entered=F&seconds=S -> touches F, sleeps S seconds (default 1), answers "slow done"
  /block?entered=F          -> touches F, then never returns (until the process is killed)
  /spawn?pidfile=F          -> starts a long-lived shell inheriting every inheritable fd,
                               appends its pid to F, answers it; the shell creates F.<its pid>

test_workers.py copies this file with another VERSION line to test reloads.
"""

import json
import os
import subprocess
import time
import urllib.parse

VERSION = "v1"

_log = os.environ.get("WORKERS_IMPORT_LOG")
if _log:
    with open(_log, "a") as f:
        f.write(f"{os.getpid()}\n")

_versions = os.environ.get("WORKERS_VERSION_DIR")
if _versions:
    _mine = os.path.join(_versions, str(os.getpid()))
    with open(_mine + ".tmp", "w") as f:
        f.write(VERSION)
    os.replace(_mine + ".tmp", _mine)  # a reader never sees it half written

_hold = os.environ.get("WORKERS_IMPORT_HOLD")
_hold_deadline = time.monotonic() + 60  # bounds a test that forgot to remove the file
while _hold and os.path.exists(_hold) and time.monotonic() < _hold_deadline:
    time.sleep(0.01)


_slow_once = os.environ.get("WORKERS_SLOW_ONCE")
if _slow_once:
    try:
        os.close(os.open(_slow_once, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
    except FileExistsError:
        pass  # another worker won: this one imports at once
    else:
        time.sleep(float(os.environ.get("WORKERS_SLOW_SECONDS", "3")))


def _spawn(pidfile):
    """A long-lived subprocess that keeps every fd without close-on-exec (close_fds=False): a
    shell that creates <pidfile>.<its pid> once it runs (its loader done), then sleeps. The
    marker is made by `touch`, not a redirection: dash keeps a copy of its stdout (fd 10+)
    while a builtin's redirection is in force, which a test looking then would take for an
    inherited fd."""
    p = subprocess.Popen(["sh", "-c", 'touch "$0.$$"; while sleep 60; do :; done', pidfile],
                         close_fds=False, stdin=subprocess.DEVNULL,
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    with open(pidfile, "a") as f:
        f.write(f"{p.pid}\n")
    return p.pid


if os.environ.get("WORKERS_SPAWN_AT_IMPORT"):
    _spawn(os.environ["WORKERS_SPAWN_AT_IMPORT"])

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
    elif path == "/spawn":
        body = json.dumps({"spawned": _spawn(qs["pidfile"])}).encode()
        ctype = "application/json"
    elif path == "/handed-over":
        # What the process was handed (the supervisor's fds, systemd's sockets) must not reach
        # the app's own child processes, which take os.environ (Python's copy) with them.
        names = sorted(k for k in os.environ if k.startswith(("LISTEN_", "WSGI_GATEWAY_")))
        body = json.dumps({"pid": os.getpid(), "names": names}).encode()
        ctype = "application/json"
    elif path == "/block":
        _touch(qs.get("entered"))
        while True:
            time.sleep(3600)
    else:
        body = json.dumps({"pid": os.getpid(), "version": VERSION}).encode()
        ctype = "application/json"
    start_response("200 OK", [("Content-Type", ctype), ("Content-Length", str(len(body)))])
    return [body]
