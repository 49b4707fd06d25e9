"""What the bench scripts share: the release binary, a free loopback port, wrk's figures, a
process's memory and children, starting the gateway on the bench app, waiting for a log line,
and printing the result table."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent.parent
BIN = REPO / "target" / "release" / "wsgi-gateway"


def free_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def wrk(url: str, seconds: int) -> tuple[int, float, int]:
    """Runs `wrk -t1 -c50` for `seconds`: (requests, requests/s, failed requests), where
    failed counts non-2xx/3xx answers and socket errors of every kind."""
    out = subprocess.run(["wrk", "-t1", "-c50", f"-d{seconds}s", url], capture_output=True,
                         text=True, check=True).stdout
    return parse_wrk(out)


def parse_wrk(out: str, timeouts: bool = True) -> tuple[int, float, int]:
    """wrk's printed figures: (requests, requests/s, failed requests). `timeouts=False` leaves
    wrk's request timeouts out of the failures (latency, not a wrong answer)."""
    done = int(re.search(r"(\d+) requests in", out).group(1))
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    bad = 0
    m = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if m:
        bad += int(m.group(1))
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    if m:
        bad += sum(int(x) for x in m.groups()[:4 if timeouts else 3])
    return done, rate, bad


def status_kib(pid: int, field: str = "VmRSS") -> int:
    """A memory figure of /proc/PID/status in KiB: VmRSS (now) or VmHWM (the peak so far)."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"no {field} for {pid}")


def report(lines: list[str], out: str | None) -> None:
    """Prints the markdown result and, with --out, writes it there too."""
    text = "\n".join(lines) + "\n"
    print(text)
    if out:
        Path(out).write_text(text)


def children(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(p) for p in path.read_text().split()] if path.exists() else []


def wait_line(proc, pattern: str, deadline: float) -> str:
    while time.monotonic() < deadline:
        line = proc.stderr.readline()
        if not line:
            raise RuntimeError("the server exited before it was ready")
        if re.search(pattern, line):
            return line
    raise RuntimeError(f"no line matching {pattern!r} in time")


def start_gateway(port: int, *args: str) -> subprocess.Popen:
    """The release build serving bench/apps/bench_app.py on 127.0.0.1:PORT with `args`, once it
    says it is listening. Its stderr is a pipe the caller keeps reading (`wait_line`, or a
    thread), so the server never blocks on a full one. Exits with a message when the binary
    is missing."""
    if not BIN.exists():
        raise SystemExit(f"{BIN} missing: run `cargo build --release` first")
    proc = subprocess.Popen(
        [str(BIN), "serve", "bench_app:application", "--chdir", str(REPO / "bench" / "apps"),
         "--bind", f"127.0.0.1:{port}", *args],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        wait_line(proc, r"listening on", time.monotonic() + 60)
    except BaseException:
        proc.kill()
        proc.wait(30)
        raise
    return proc


def provenance(command: str, what: str, started: float) -> str:
    """The line a bench script's result starts with: when, the command and what it ran, the
    commit, the machine, and how long it took (`started`: time.monotonic() at its start)."""
    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo")
                if line.startswith("model name")), "?")
    rev = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"],
                         capture_output=True, text=True).stdout.strip() or "?"
    return (f"{datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC, `{command}`, {what}, git {rev}; "
            f"{os.cpu_count()} × {cpu}, kernel {os.uname().release}; "
            f"{round(time.monotonic() - started)} s in all.")


def choose(script: str, option: str, value: str, known, kind: str) -> list[str]:
    """The comma-separated names given to `option`, each checked against `known`; an unknown
    one ends the script with a message naming it and the known ones."""
    names = [n for n in value.split(",") if n]
    for n in names:
        if n not in known:
            sys.exit(f"{script}: {option}: unknown {kind} {n!r} (known: {', '.join(known)})")
    return names
