#!/usr/bin/env python3
"""Graceful reloads under load: does any request fail while the workers are replaced?

usage: python3 bench/reload.py [--workers 2] [--reloads 5] [--interval 2] [--out FILE]

Starts the release build (`cargo build --release` first) as `serve --workers N` on
bench/apps/bench_app.py and drives `/hello` with wrk (keep-alive, 50 connections) while the
supervisor gets SIGHUP every INTERVAL seconds, RELOADS times; each reload is awaited in the
log ("reload: done") before the next. Reports the requests served, wrk's failed requests
(non-2xx answers and socket errors of every kind) and the worker pids before and after.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent / "tools"))
from benchlib import children, free_port, report, start_gateway, wait_line, wrk  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--reloads", type=int, default=5)
    ap.add_argument("--interval", type=float, default=2.0)
    ap.add_argument("--out")
    a = ap.parse_args()
    port = free_port()
    proc = start_gateway(port, "--workers", str(a.workers))
    try:
        before = sorted(children(proc.pid))
        seconds = int(a.interval * (a.reloads + 1)) + 2
        result = {}
        load = threading.Thread(
            target=lambda: result.update(r=wrk(f"http://127.0.0.1:{port}/hello", seconds)))
        load.start()
        done_reloads = 0
        for _ in range(a.reloads):
            time.sleep(a.interval)  # the spacing of the reloads, not synchronisation
            os.kill(proc.pid, signal.SIGHUP)
            wait_line(proc, r"reload: done", time.monotonic() + 30)
            done_reloads += 1
        load.join()
        after = sorted(children(proc.pid))
    finally:
        proc.terminate()
        proc.wait(30)
    served, rate, failed = result["r"]
    lines = [
        f"# reload: {a.reloads} SIGHUP reloads of `serve --workers {a.workers}` under wrk -c50 "
        f"/hello, {time.strftime('%Y-%m-%d %H:%M')}, {os.cpu_count()} cores",
        "",
        f"- reloads completed: {done_reloads} of {a.reloads} (one every {a.interval:g} s)",
        f"- requests served: {served:,} in {seconds} s ({rate:,.0f}/s)",
        f"- failed requests (non-2xx, socket errors): {failed}",
        f"- worker pids before {before}, after {after} (all replaced: "
        f"{'yes' if not set(before) & set(after) else 'no'})",
    ]
    report(lines, a.out)
    return 0 if failed == 0 and done_reloads == a.reloads else 1


if __name__ == "__main__":
    sys.exit(main())
