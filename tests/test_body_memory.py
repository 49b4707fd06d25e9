"""Memory follows the body bytes received, never the length a request declares (issue 16,
item 2). Requests declare a 400 MB body and send at most 70 kB of it; the app
(apps/body_memory_app.py) asks for all of it in one call: `read()`, `read(CONTENT_LENGTH)`,
`read(10**9)`, or `readline()` of a body without a newline. Once every app thread is blocked
waiting for the client, the process's resident memory (VmRSS) may have grown by far less than
one declared body. Then the clients go away and the front end still serves. Run on each front
end: HTTP, CGI, ISAPI.

"Blocked waiting for the client" is read from /proc: the thread the app named in its log
line sleeps in a system call that is not a futex (a socket or pipe read, a poll), i.e. it is
inside the body read, past anything that read allocated up front.
"""

from __future__ import annotations

import hashlib
import platform
import re
import subprocess
import threading
import time
from pathlib import Path

import pytest

from cgihost import BASE_META
from gwprocess import APPS_DIR, binary
from isapihost import ServerView

DECLARED = 400_000_000
# RSS growth allowed while the declared bodies are held: a quarter of one declared body.
GROWTH_LIMIT = 100 * 2**20
WAIT = 30.0
LOG_RX = re.compile(r"body-memory: thread (\d+) reads \(\w+\) (\S+)")
# futex(2) by machine; elsewhere the kernel's wait channel names the lock instead
FUTEX = {"x86_64": 202, "aarch64": 98, "riscv64": 98, "i686": 240, "armv7l": 240}


def _proc_usable() -> bool:
    try:
        return Path("/proc/self/syscall").read_text() != ""
    except OSError:
        return False


pytestmark = pytest.mark.skipif(not _proc_usable(), reason="needs /proc/<pid>/syscall")


def rss(pid: int) -> int:
    """Resident memory of a process, in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmRSS for process {pid}")


def blocked_on_io(pid: int, tid: int) -> bool:
    """The thread sleeps in a system call other than futex: waiting for bytes, not a lock."""
    task = Path(f"/proc/{pid}/task/{tid}")
    try:
        state = (task / "stat").read_text().rsplit(")", 1)[1].split()[0]
        call = (task / "syscall").read_text().split()
        wchan = (task / "wchan").read_text().strip()
    except (OSError, IndexError):
        return False
    # "running", or "-1 ..." (asleep outside a system call): not waiting in a read
    if state != "S" or not call or not call[0].isdigit():
        return False
    futex = FUTEX.get(platform.machine())
    if futex is not None:
        return int(call[0]) != futex
    return wchan not in ("", "0") and "futex" not in wchan


def wait_readers(pid: int, log, tags) -> list[int]:
    """Waits until the app said it reads the requests tagged `tags` and each of those threads
    is blocked waiting for the client; returns their thread ids."""
    deadline = time.monotonic() + WAIT
    while True:
        found = {m.group(2): int(m.group(1)) for m in LOG_RX.finditer(log())}
        tids = [found[t] for t in tags if t in found]
        if len(tids) == len(tags) and all(blocked_on_io(pid, t) for t in tids):
            return tids
        if time.monotonic() > deadline:
            states = {t: (found.get(t), found.get(t) and blocked_on_io(pid, found[t]))
                      for t in tags}
            raise AssertionError(f"readers not all blocked within {WAIT}s: {states}\n"
                                 f"{log()[-3000:]}")
        time.sleep(0.01)  # poll interval of a bounded wait, not a synchronisation sleep


def digest_line(body: bytes) -> bytes:
    return f"{len(body)} {hashlib.sha256(body).hexdigest()}\n".encode()


def post(view, path: str, mode: str, body: bytes):
    c = view.http(timeout=WAIT)
    try:
        c.request("POST", path, body=body, headers={"X-Read": mode})
        r = c.getresponse()
        return r.status, r.read()
    finally:
        c.close()


# One connection per way of asking for the whole body: Expect: 100-continue and nothing sent
# (the client waits for the interim response), or the first AHEAD bytes and then silence
# (without Expect the HTTP server waits for 64 KiB of body, or all of it, before calling the
# app: a few bytes alone never reach it).
AHEAD = 70_000
HELD = [
    ("all", "expect"),
    ("length", "expect"),
    ("huge", "ahead"),
    ("all", "ahead"),
    ("huge", "chunked"),
    ("line", "ahead"),
]


def open_held(view, path: str):
    conns = []
    piece = b"x" * AHEAD
    for i, (mode, how) in enumerate(HELD):
        c = view.conn(timeout=WAIT)
        framing = ("Transfer-Encoding: chunked" if how == "chunked"
                   else f"Content-Length: {DECLARED}")
        head = (f"POST {path} HTTP/1.1\r\nHost: {view.host_header}\r\n{framing}\r\n"
                f"X-Read: {mode}\r\nX-Tag: held-{i}\r\n")
        if how == "expect":
            c.send((head + "Expect: 100-continue\r\n\r\n").encode())
        elif how == "ahead":
            c.send((head + "\r\n").encode() + piece)
        else:
            c.send((head + "\r\n").encode() + b"%x\r\n" % AHEAD + piece + b"\r\n")
        conns.append(c)
    return conns


def check_held_bodies(view, pid: int, path: str) -> tuple[int, int]:
    """Holds the HELD requests open, measures, lets them go; returns (baseline, held) RSS."""
    # Warm up every mode once, so first-use allocations are in the baseline.
    for mode in {m for m, _ in HELD}:
        assert post(view, path, mode, b"warm-up") == (200, digest_line(b"warm-up"))
    baseline = rss(pid)
    conns = open_held(view, path)
    try:
        wait_readers(pid, view.log, [f"held-{i}" for i in range(len(HELD))])
        held = rss(pid)
    finally:
        for c in conns:
            c.close()
    print(f"RSS baseline {baseline / 2**20:.1f} MiB, with {len(HELD)} bodies of "
          f"{DECLARED} bytes declared {held / 2**20:.1f} MiB")
    assert held - baseline < GROWTH_LIMIT, (
        f"RSS grew from {baseline / 2**20:.1f} MiB to {held / 2**20:.1f} MiB while "
        f"{len(HELD)} requests declared {DECLARED} bytes and sent at most {AHEAD}")
    # The front end still serves; an odd-sized body of 3 MiB takes the growing path's every
    # step (read-ahead, doublings, the switch to the final `bytes` at half).
    body = bytes(range(256)) * (3 * 4096) + b"!"
    for mode in ("all", "length", "huge"):
        assert post(view, path, mode, body) == (200, digest_line(body)), mode
    return baseline, held


def test_http_memory_follows_the_body_received(server_factory):
    s = server_factory("body_memory_app")
    check_held_bodies(s, s.proc.pid, "/hold")
    assert s.alive()


def test_isapi_memory_follows_the_body_received(isapi_factory):
    h = isapi_factory({"app": "body_memory_app"}, ["--vdir", "/app", "--preload", "0"])
    check_held_bodies(ServerView(h), h.proc.pid, "/app/hold")
    assert h.stop() == 0 and h.failures() == [], h.diagnostics()


# ---- CGI: the program itself, started as a host starts it, its stdin held open ----------

CGI_META = {**BASE_META, "REQUEST_METHOD": "POST", "PATH_INFO": "/hold",
            "PYTHONDONTWRITEBYTECODE": "1"}


class CgiRun:
    """One `wsgi-gateway cgi body_memory_app` with CONTENT_LENGTH `length`, `first` bytes
    written to its stdin, which stays open."""

    def __init__(self, mode: str, length: int, first: bytes):
        env = {**CGI_META, "CONTENT_LENGTH": str(length), "HTTP_X_READ": mode, "HTTP_X_TAG": "held"}
        self.proc = subprocess.Popen(
            [binary(), "cgi", "body_memory_app", "--chdir", str(APPS_DIR)], env=env, cwd="/",
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.err: list[str] = []
        self._lock = threading.Lock()
        threading.Thread(target=self._drain, daemon=True).start()
        self.proc.stdin.write(first)
        self.proc.stdin.flush()

    def _drain(self):
        for raw in iter(self.proc.stderr.readline, b""):
            with self._lock:
                self.err.append(raw.decode("utf-8", "replace"))

    def log(self) -> str:
        with self._lock:
            return "".join(self.err)

    def finish(self, rest: bytes = b"") -> bytes:
        """Sends `rest`, closes stdin; returns the CGI response."""
        out, _ = self.proc.communicate(rest, timeout=WAIT)
        return out

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


CGI_MODES = ("all", "length", "huge", "line")


def test_cgi_memory_follows_the_body_received():
    # A process expecting 20 bytes and holding 10 of them is the baseline.
    runs = {"small": CgiRun("all", 20, b"0123456789")}
    try:
        for mode in CGI_MODES:
            runs[mode] = CgiRun(mode, DECLARED, b"0123456789")
        for r in runs.values():
            wait_readers(r.proc.pid, r.log, ["held"])
        sizes = {name: rss(r.proc.pid) for name, r in runs.items()}
        print("CGI RSS: " + ", ".join(f"{k} {v / 2**20:.1f} MiB" for k, v in sizes.items()))
        for mode in CGI_MODES:
            assert sizes[mode] - sizes["small"] < GROWTH_LIMIT, (
                f"CGI read ({mode}) with CONTENT_LENGTH={DECLARED} and 10 bytes on stdin: "
                f"RSS {sizes[mode] / 2**20:.1f} MiB against {sizes['small'] / 2**20:.1f} MiB")
        # stdin ends 399999990 bytes early: the host is answered 400
        for mode in CGI_MODES:
            out = runs[mode].finish()
            assert out.startswith(b"Status: 400"), (mode, out[:200], runs[mode].log())
        out = runs["small"].finish(b"abcdefghij")
        assert out.endswith(b"\r\n\r\n" + digest_line(b"0123456789abcdefghij")), out
    finally:
        for r in runs.values():
            r.kill()
