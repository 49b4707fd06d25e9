#!/usr/bin/env python3
"""One worker through a million requests (or more): is its memory flat after warm-up?

usage: python3 bench/soak.py [--requests 1000000] [--segment 5] [--route /echo] [--out FILE]

Starts the release build (`cargo build --release` first) as `serve --workers 1`, so the
requests go through a supervised worker as in production, on bench/apps/bench_app.py. Drives
it with wrk (keep-alive, 50 connections) in segments of SEGMENT seconds until REQUESTS requests
have been answered, and after each segment reads the worker's VmRSS from /proc. Prints (and
with --out writes) the curve: requests so far, RSS in KiB, and the change since the first
segment (warm-up). wrk reports non-2xx answers and socket errors; any makes the run fail.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent / "tools"))
from benchlib import children, free_port, report, start_gateway, status_kib, wrk  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--requests", type=int, default=1_000_000)
    ap.add_argument("--segment", type=int, default=5, help="seconds per wrk run")
    ap.add_argument("--route", default="/hello")
    ap.add_argument("--out")
    a = ap.parse_args()
    port = free_port()
    proc = start_gateway(port, "--workers", "1")
    rows = []
    try:
        worker = children(proc.pid)
        if len(worker) != 1:
            raise RuntimeError(f"expected one worker under pid {proc.pid}, found {worker}")
        worker = worker[0]
        url = f"http://127.0.0.1:{port}{a.route}"
        total = 0
        rows.append((0, status_kib(worker)))
        while total < a.requests:
            done, _, bad = wrk(url, a.segment)
            if bad:
                raise RuntimeError(f"wrk saw {bad} failed requests")
            total += done
            rows.append((total, status_kib(worker)))
            if children(proc.pid) != [worker]:
                raise RuntimeError("the worker was replaced during the soak")
    finally:
        proc.terminate()
        proc.wait(30)
    warm = rows[1][1]
    lines = [f"# soak: {a.route} through one worker (`serve --workers 1`), "
             f"{time.strftime('%Y-%m-%d %H:%M')}, {os.cpu_count()} cores",
             "", "| requests | worker RSS (KiB) | since first segment |", "|---:|---:|---:|"]
    for n, kib in rows:
        lines.append(f"| {n:,} | {kib:,} | {kib - warm:+,} |")
    report(lines, a.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
