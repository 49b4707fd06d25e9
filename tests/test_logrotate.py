"""SIGUSR1 reopens the access log and the error log (item 4 of issue 19), driven by Debian's
real `logrotate` (rename + `create`, then `postrotate kill -USR1`; no copytruncate) while a
client keeps requesting: the rotated files and the new one hold every request exactly once,
each line whole, and once every process said it reopened, new lines go to the new file.
One process, and `--workers 2` (the supervisor passes the signal on)."""

from __future__ import annotations

import http.client
import os
import re
import shutil
import signal
import subprocess
import threading
import time

import pytest

from gwprocess import APPS_DIR, LISTEN_RE, START_TIMEOUT, binary, clean_env

LOGROTATE = shutil.which("logrotate") or (
    "/usr/sbin/logrotate" if os.path.exists("/usr/sbin/logrotate") else None)
pytestmark = pytest.mark.skipif(LOGROTATE is None, reason="logrotate not installed (apt: logrotate)")

ACCESS_LINE = re.compile(
    r'^127\.0\.0\.1 - - \[\d\d/\w{3}/\d{4}:\d\d:\d\d:\d\d \+0000\] '
    r'"GET /req/(\d+) HTTP/1\.1" 200 2 "-" "-" \d+$')
ERROR_LINE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d+Z\s+[A-Z]+ ")
REOPENED = "SIGUSR1: log files reopened"


def read_lines(path):
    try:
        with open(path, "rb") as f:
            data = f.read().decode("utf-8", "replace")
    except FileNotFoundError:
        return []
    assert data == "" or data.endswith("\n"), f"{path} ends in a partial line: {data[-200:]!r}"
    return data.splitlines()


def poll(what, check, timeout=20.0):
    deadline = time.monotonic() + timeout
    while True:
        got = check()
        if got:
            return got
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout}s")
        time.sleep(0.02)  # interval of a bounded poll on a file another process writes


class Load:
    """One keep-alive client asking for /req/N, N counting up; `done` holds every N answered
    200, `unsure` those whose exchange broke (they may or may not be logged)."""

    def __init__(self, port):
        self.port = port
        self.next = 0
        self.done: set[int] = set()
        self.unsure: set[int] = set()
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def issued(self):
        with self.lock:
            return self.next

    def run(self):
        conn = None
        while not self.stop.is_set():
            with self.lock:
                n = self.next
                self.next += 1
            try:
                if conn is None:
                    conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
                conn.request("GET", f"/req/{n}")
                r = conn.getresponse()
                r.read()
                (self.done if r.status == 200 else self.unsure).add(n)
            except (OSError, http.client.HTTPException):
                self.unsure.add(n)
                conn = None


@pytest.mark.parametrize("workers", [0, 2], ids=["one-process", "workers-2"])
def test_logrotate_under_load_loses_no_line(tmp_path, workers):
    logs = tmp_path / "logs"
    logs.mkdir(mode=0o755)
    access, error, pid = logs / "access.log", logs / "error.log", tmp_path / "gw.pid"
    conf = tmp_path / "logrotate.conf"
    conf.write_text(
        f"{access} {error} {{\n"
        "    rotate 3\n"
        "    create 0640\n"
        "    missingok\n"
        "    sharedscripts\n"
        "    postrotate\n"
        f"        kill -USR1 $(cat {pid})\n"
        "    endscript\n"
        "}\n")
    conf.chmod(0o644)
    cmd = [binary(), "serve", "logs_app:app", "--bind", "127.0.0.1:0", "--chdir", str(APPS_DIR),
           "--access-log", str(access), "--error-log", str(error), "--pid", str(pid)]
    if workers:
        cmd += ["--workers", str(workers)]
    proc = subprocess.Popen(cmd, env=clean_env(), stdin=subprocess.DEVNULL)
    load = None
    try:
        url = poll("the listening line in the error log",
                   lambda: next((m.group(1) for line in read_lines(error)
                                 if (m := LISTEN_RE.search(line))), None), START_TIMEOUT)
        poll("the pid file", lambda: pid.exists() and pid.read_text().strip())
        port = int(url.rsplit(":", 1)[1])
        load = Load(port)
        load.thread.start()
        marks = []
        processes = 1 + workers
        for _ in range(2):
            start = load.issued()
            poll("requests answered", lambda: len(load.done & set(range(start, start + 50))) == 50)
            subprocess.run([LOGROTATE, "-f", "-s", str(tmp_path / "state"), str(conf)],
                           check=True, timeout=60)
            # Every process has reopened once each said so in the new error log.
            poll("every process's reopen line in the new error log",
                 lambda: sum(REOPENED in line for line in read_lines(error)) >= processes)
            marks.append(load.issued())
        before = load.issued()
        poll("requests after the last rotation", lambda: load.issued() > before + 50)
    finally:
        if load is not None:
            load.stop.set()
            load.thread.join(30)
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
    assert proc.returncode == 0
    assert not load.thread.is_alive()

    # Oldest first: .2 was written before the first rotation, .1 between the two, then the new.
    files = [logs / "access.log.2", logs / "access.log.1", access]
    seen: list[int] = []
    for i, f in enumerate(files):
        lines = read_lines(f)
        assert lines, f"{f} is empty"
        ids = []
        for line in lines:
            m = ACCESS_LINE.match(line)
            assert m, f"{f}: not a whole access-log line: {line!r}"
            ids.append(int(m.group(1)))
        if i < len(marks):
            # Requests made once every process had reopened are in a newer file.
            late = [n for n in ids if n >= marks[i]]
            assert not late, f"{f} got requests made after the reopen: {late[:10]}"
        seen += ids
    assert len(seen) == len(set(seen)), "a request logged twice"
    assert load.done <= set(seen), f"requests missing from the logs: {sorted(load.done - set(seen))[:20]}"
    assert set(seen) <= load.done | load.unsure, "a logged request nobody made"
    assert len(load.done) > 100

    for f in [logs / "error.log.2", logs / "error.log.1", error]:
        lines = read_lines(f)
        assert lines, f"{f} is empty"
        bad = [line for line in lines if not ERROR_LINE.match(line)]
        assert not bad, f"{f}: lines not whole: {bad[:5]}"
    assert sum(REOPENED in line for line in read_lines(error)) == processes
    assert any("stopped" in line for line in read_lines(error))


def test_sigusr1_during_a_reload_reaches_starting_workers_once_ready(tmp_path):
    """A worker still starting has no SIGUSR1 handler yet (the default action kills it): the
    supervisor passes the signal on once it is ready. SIGHUP then SIGUSR1 at once: the old
    workers reopen at once, the new ones once ready, and no worker dies of it."""
    error, access = tmp_path / "error.log", tmp_path / "access.log"
    cmd = [binary(), "serve", "logs_app:app", "--bind", "127.0.0.1:0", "--chdir", str(APPS_DIR),
           "--access-log", str(access), "--error-log", str(error), "--workers", "2"]
    proc = subprocess.Popen(cmd, env=clean_env(), stdin=subprocess.DEVNULL)
    try:
        url = poll("the listening line in the error log",
                   lambda: next((m.group(1) for line in read_lines(error)
                                 if (m := LISTEN_RE.search(line))), None), START_TIMEOUT)
        proc.send_signal(signal.SIGHUP)
        proc.send_signal(signal.SIGUSR1)
        poll("the reload's end", lambda: any("reload: done" in ln for ln in read_lines(error)))
        # The supervisor, the two old workers and the two new ones.
        poll("five reopen lines",
             lambda: sum(REOPENED in ln for ln in read_lines(error)) >= 5)
        conn = http.client.HTTPConnection("127.0.0.1", int(url.rsplit(":", 1)[1]), timeout=10)
        conn.request("GET", "/req/1")
        assert conn.getresponse().status == 200
        conn.close()
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
    log = "\n".join(read_lines(error))
    assert proc.returncode == 0, log
    assert "signal 10" not in log and "SIGUSR1)" not in log, log
    exits = [ln for ln in read_lines(error) if "exited" in ln]
    # The old two retired by the reload, the new two at the stop: all cleanly.
    assert len(exits) == 4 and all("(exit status 0)" in ln for ln in exits), log
