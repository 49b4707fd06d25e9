#!/usr/bin/env python3
"""Many large uploads at once: does the server's memory stay bounded while bodies stream?

usage: python3 bench/uploads.py [--clients 1000] [--mb 100] [--threads 32] [--out FILE]

Starts the release build (`cargo build --release` first) on bench/apps/bench_app.py and
opens CLIENTS connections at once, each POSTing MB megabytes (10^6 bytes) to `/echo`, which
reads the body in 64 KiB blocks and answers its length. Half the uploads carry a
Content-Length, half are chunked. Every answer must be 200 with the exact length. The
server's RSS is sampled as the bytes flow; the run prints (and with --out writes) the curve,
the peak (VmHWM) and the throughput. Nothing buffering a whole body means a peak far below
CLIENTS × MB.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import socket
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent / "tools"))
from benchlib import free_port, report, start_gateway, status_kib  # noqa: E402

BLOCK = memoryview(bytes(range(256)) * 4096)  # 1 MiB


async def upload(port: int, i: int, size: int, sent: list[int]) -> bool:
    loop = asyncio.get_running_loop()
    sock = socket.socket()
    sock.setblocking(False)
    await loop.sock_connect(sock, ("127.0.0.1", port))
    chunked = i % 2 == 0
    framing = "Transfer-Encoding: chunked" if chunked else f"Content-Length: {size}"
    await loop.sock_sendall(sock, f"POST /echo HTTP/1.1\r\nHost: x\r\n{framing}\r\n\r\n".encode())
    left = size
    while left > 0:
        piece = BLOCK[:min(left, len(BLOCK))]
        if chunked:
            await loop.sock_sendall(sock, b"%x\r\n" % len(piece))
        await loop.sock_sendall(sock, piece)
        if chunked:
            await loop.sock_sendall(sock, b"\r\n")
        left -= len(piece)
        sent[0] += len(piece)
    if chunked:
        await loop.sock_sendall(sock, b"0\r\n\r\n")
    answer = b""
    while b"\r\n\r\n" not in answer or not answer.endswith(str(size).encode()):
        data = await loop.sock_recv(sock, 4096)
        if not data:
            break
        answer += data
    sock.close()
    return answer.startswith(b"HTTP/1.1 200 ") and answer.endswith(b"\r\n\r\n" + str(size).encode())


async def run_all(port: int, clients: int, size: int, sent: list[int]) -> list[bool]:
    return await asyncio.gather(*(upload(port, i, size, sent) for i in range(clients)),
                                return_exceptions=True)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--clients", type=int, default=1000)
    ap.add_argument("--mb", type=int, default=100)
    ap.add_argument("--threads", type=int, default=32)
    ap.add_argument("--out")
    a = ap.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    size = a.mb * 1_000_000
    total = size * a.clients
    port = free_port()
    server = start_gateway(port, "--threads", str(a.threads))
    try:
        threading.Thread(target=server.stderr.read, daemon=True).start()
        start_rss = status_kib(server.pid)
        sent = [0]
        curve = []
        done = threading.Event()

        def sample():
            step = total // 10
            next_mark = step
            while not done.is_set():
                if sent[0] >= next_mark:
                    curve.append((sent[0], status_kib(server.pid)))
                    next_mark += step
                done.wait(0.05)  # a sampling period, not synchronisation

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        t0 = time.monotonic()
        results = asyncio.run(run_all(port, a.clients, size, sent))
        elapsed = time.monotonic() - t0
        done.set()
        sampler.join()
        peak = status_kib(server.pid, "VmHWM")
        ok = sum(1 for r in results if r is True)
    finally:
        server.terminate()
        server.wait(60)
    lines = [
        f"# uploads: {a.clients} concurrent × {a.mb} MB to /echo (half chunked), "
        f"{time.strftime('%Y-%m-%d %H:%M')}, {os.cpu_count()} cores, --threads {a.threads}",
        "",
        f"- answered correctly: {ok} of {a.clients}",
        f"- sent: {total / 1e9:.1f} GB in {elapsed:.0f} s ({total / elapsed / 1e9:.2f} GB/s)",
        f"- server RSS at start {start_rss / 1024:.1f} MiB, peak (VmHWM) {peak / 1024:.1f} MiB, "
        f"against {total / 2**20:,.0f} MiB uploaded",
        "",
        "| uploaded so far | server RSS |",
        "|---:|---:|",
    ]
    lines += [f"| {n / 1e9:.1f} GB | {rss / 1024:.1f} MiB |" for n, rss in curve]
    report(lines, a.out)
    return 0 if ok == a.clients else 1


if __name__ == "__main__":
    sys.exit(main())
