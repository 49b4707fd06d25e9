#!/usr/bin/env python3
"""Normal clients' throughput while slow and hostile clients are held open.

usage: python3 bench/slow_clients.py [--slowloris 2000] [--slow-bodies 500]
                                     [--slow-readers 500] [--reader-mib 4]
                                     [--seconds 5] [--threads 32] [--out FILE]

Starts the release build (`cargo build --release` first) on bench/apps/bench_app.py and
measures `/hello` with wrk (keep-alive, 50 connections) three ways, each against the same
server process:
  1. alone (the baseline);
  2. while SLOWLORIS connections dribble a request head one byte per second and SLOW_BODIES
     connections dribble a request body (Content-Length 100000) one byte per second;
  3. as 2, plus SLOW_READERS connections that ask for `/big?mib=READER_MIB` (more than the
     kernel buffers for a client that reads nothing) and never read it.
For each it reports requests/s, the ratio to the baseline, wrk's errors, how many of the
server's threads sat blocked in a socket write at the end (a worker held by a slow reader),
and the server's peak RSS so far.
The slow clients run in a child process (asyncio), so they do not compete with wrk's thread.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent / "tools"))
from benchlib import free_port, report, start_gateway, status_kib, wrk  # noqa: E402


def blocked_in_write(pid: int) -> int:
    """Threads of `pid` sleeping in a socket send (wchan names the kernel function)."""
    n = 0
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            wchan = Path(f"/proc/{pid}/task/{tid}/wchan").read_text()
        except OSError:
            continue
        if "sk_stream_wait_memory" in wchan or "wait_for_unix_gc" in wchan \
                or "sock_alloc_send" in wchan or "unix_stream_sendmsg" in wchan:
            n += 1
    return n


# ---- the slow clients (child process) -----------------------------------------------------

class Ready:
    """Counts slow clients that have connected and sent their start."""

    def __init__(self, total: int):
        self.left, self.all = total, asyncio.Event()
        if total == 0:
            self.all.set()

    def one(self) -> None:
        self.left -= 1
        if self.left == 0:
            self.all.set()


async def dribble(port: int, start: bytes, byte: bytes, stop: asyncio.Event,
                  ready: Ready) -> None:
    """Sends `start`, then `byte` once a second until stopped."""
    r, w = await asyncio.open_connection("127.0.0.1", port)
    w.write(start)
    await w.drain()
    ready.one()
    try:
        while not stop.is_set():
            w.write(byte)
            await w.drain()
            await asyncio.sleep(1)
    finally:
        w.close()


# A slowloris never finishes its head; a slow body never finishes its 100000 bytes.
SLOWLORIS = (b"GET /hello HTTP/1.1\r\nHost: x\r\n", b"X")
SLOW_BODY = (b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n", b"a")


async def slow_reader(port: int, mib: int, stop: asyncio.Event, ready: Ready) -> None:
    r, w = await asyncio.open_connection("127.0.0.1", port, limit=1024)
    sock = w.get_extra_info("socket")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    w.write(f"GET /big?mib={mib} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    await w.drain()
    ready.one()
    await stop.wait()  # never read
    w.close()


async def hold(port: int, loris: int, bodies: int, readers: int, mib: int) -> None:
    stop, ready = asyncio.Event(), Ready(loris + bodies + readers)
    tasks = [asyncio.create_task(dribble(port, *SLOWLORIS, stop, ready)) for _ in range(loris)]
    tasks += [asyncio.create_task(dribble(port, *SLOW_BODY, stop, ready)) for _ in range(bodies)]
    tasks += [asyncio.create_task(slow_reader(port, mib, stop, ready)) for _ in range(readers)]
    await ready.all.wait()  # every slow client connected and started
    print("holding", flush=True)
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(None, sys.stdin.readline)  # until the parent says stop
    stop.set()
    await asyncio.gather(*tasks, return_exceptions=True)


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def wait_quiet(pid: int, timeout: float = 120.0) -> float:
    """Waits until the server uses under a quarter of a core (measured over 0.5 s windows):
    the slow clients' burst of work is over. Returns the seconds it took."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        before = cpu_seconds(pid)
        time.sleep(0.5)  # a measurement window
        if cpu_seconds(pid) - before < 0.125:
            break
    return time.monotonic() - start


def child_main(args) -> int:
    asyncio.run(hold(args.port, args.slowloris, args.slow_bodies, args.slow_readers,
                     args.reader_mib))
    return 0


# ---- the measurement (parent) -------------------------------------------------------------

def with_slow_clients(a, port: int, readers: int):
    p = subprocess.Popen(
        [sys.executable, __file__, "--child", "--port", str(port), "--slowloris",
         str(a.slowloris), "--slow-bodies", str(a.slow_bodies), "--slow-readers", str(readers),
         "--reader-mib", str(a.reader_mib)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    if p.stdout.readline().strip() != "holding":
        raise RuntimeError("the slow clients did not start")
    return p


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--slowloris", type=int, default=2000)
    ap.add_argument("--slow-bodies", type=int, default=500)
    ap.add_argument("--slow-readers", type=int, default=500)
    ap.add_argument("--reader-mib", type=int, default=4)
    ap.add_argument("--seconds", type=int, default=5)
    ap.add_argument("--threads", type=int, default=32)
    ap.add_argument("--out")
    ap.add_argument("--child", action="store_true")
    ap.add_argument("--port", type=int)
    a = ap.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    if a.child:
        return child_main(a)
    port = free_port()
    server = start_gateway(port, "--threads", str(a.threads))
    rows = []
    try:
        # Keep reading its log (408s, departed clients): a full pipe would stall the server.
        threading.Thread(target=server.stderr.read, daemon=True).start()
        url = f"http://127.0.0.1:{port}/hello"
        wrk(url, 1)  # warm-up
        _, base, err = wrk(url, a.seconds)
        rows.append(("alone", base, err, blocked_in_write(server.pid),
                     status_kib(server.pid, "VmHWM")))
        for label, readers in (
                (f"{a.slowloris} slowloris + {a.slow_bodies} slow bodies", 0),
                (f"… + {a.slow_readers} slow readers of {a.reader_mib} MiB", a.slow_readers)):
            slow = with_slow_clients(a, port, readers)
            try:
                # Measure the steady state: the slow readers' responses produced and queued.
                quiet = wait_quiet(server.pid)
                _, rate, err = wrk(url, a.seconds)
                rows.append((f"{label} (quiet after {quiet:.1f} s)", rate, err,
                             blocked_in_write(server.pid), status_kib(server.pid, "VmHWM")))
            finally:
                slow.stdin.write("stop\n")
                slow.stdin.flush()
                slow.wait(60)
    finally:
        server.terminate()
        server.wait(60)
    lines = [f"# slow clients: /hello with wrk -c50 beside held slow connections, "
             f"{time.strftime('%Y-%m-%d %H:%M')}, {os.cpu_count()} cores, --threads {a.threads}",
             "", "| alongside | requests/s | ÷ alone | wrk errors | threads blocked writing "
             "| server peak RSS |", "|---|---:|---:|---:|---:|---:|"]
    for label, rate, err, blocked, rss in rows:
        lines.append(f"| {label} | {rate:,.0f} | {rate / base:.2f} | {err} | {blocked} "
                     f"| {rss / 1024:.0f} MiB |")
    report(lines, a.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
