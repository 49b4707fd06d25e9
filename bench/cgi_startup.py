#!/usr/bin/env python3
"""CGI start-up cost: one request's wall time through a real CGI host (lighttpd mod_cgi),
`wsgi-gateway cgi` against Python's own `wsgiref.handlers.CGIHandler`, same app, same host,
same run. Requests alternate between the two so machine noise hits both alike.

    python3 bench/cgi_startup.py [--requests 200] [--path /hello] [--venv DIR] [--out FILE.md]

With --venv both run inside that virtualenv (wsgiref with DIR/bin/python, wsgi-gateway with
`--venv DIR`), as apps are usually deployed.

Needs lighttpd (apt) and a release build (`cargo build --release`); WSGI_GATEWAY_BIN overrides
the binary. Prints medians, p90s and the ratio wsgiref / wsgi-gateway (> 1: we start faster).
"""

from __future__ import annotations

import argparse
import datetime
import http.client
import os
import shlex
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))
os.environ.setdefault("WSGI_GATEWAY_BIN", str(REPO / "target" / "release" / "wsgi-gateway"))

from cgihost import CgiHost  # noqa: E402

APPS = REPO / "bench" / "apps"


def wsgiref_script(python: str) -> str:
    code = ("import sys; sys.path.insert(0, '.'); "
            "from wsgiref.handlers import CGIHandler; "
            "from bench_app import application; CGIHandler().run(application)")
    return (f"#!/bin/sh\ncd {shlex.quote(str(APPS))}\n"
            f"exec {shlex.quote(python)} -c {shlex.quote(code)}\n")


def one(conn: http.client.HTTPConnection, path: str) -> tuple[float, bytes]:
    t0 = time.perf_counter()
    conn.request("GET", path)
    resp = conn.getresponse()
    body = resp.read()
    elapsed = time.perf_counter() - t0
    if resp.status != 200:
        raise SystemExit(f"{path}: HTTP {resp.status}: {body[:300]!r}")
    return elapsed, body


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--requests", type=int, default=200, help="requests per server")
    ap.add_argument("--path", default="/hello", help="app path (bench_app: /hello, /big, ...)")
    ap.add_argument("--venv", help="run both inside this virtualenv")
    ap.add_argument("--out", help="also write a Markdown report here")
    args = ap.parse_args()

    binary = os.environ["WSGI_GATEWAY_BIN"]
    if not os.access(binary, os.X_OK):
        raise SystemExit(f"{binary}: not built (cargo build --release)")
    python = os.path.realpath(sys.executable)
    base_python = os.path.join(sys.base_prefix, "bin", os.path.basename(python))
    if os.access(base_python, os.X_OK):
        python = base_python
    gw_args = ["--chdir", str(APPS)]
    if args.venv:
        python = os.path.join(os.path.abspath(args.venv), "bin", "python")
        gw_args += ["--venv", os.path.abspath(args.venv)]

    with tempfile.TemporaryDirectory(prefix="cgi-startup-") as tmp:
        host = CgiHost(Path(tmp))
        ours = host.add_script("gw", "bench_app:application", gw_args)
        ref = host.cgi_dir / "wsgiref"
        ref.write_text(wsgiref_script(python))
        ref.chmod(0o755)
        host.start()
        try:
            conn = http.client.HTTPConnection(host.host, host.port, timeout=30)
            paths = {"wsgi-gateway cgi": ours + args.path,
                     "wsgiref CGIHandler": "/cgi-bin/wsgiref" + args.path}
            bodies = {name: one(conn, p)[1] for name, p in paths.items()}  # warm the page cache
            if len(set(bodies.values())) != 1:
                raise SystemExit(f"the two servers answered differently: {bodies}")
            times: dict[str, list[float]] = {name: [] for name in paths}
            for _ in range(args.requests):
                for name, p in paths.items():
                    times[name].append(one(conn, p)[0])
            conn.close()
        finally:
            host.stop()

    def ms(x: float) -> str:
        return f"{x * 1000:.1f}"

    rows = []
    for name, t in times.items():
        t.sort()
        rows.append((name, statistics.median(t), t[int(len(t) * 0.9) - 1], t[0]))
    gw, wr = rows[0][1], rows[1][1]
    ratio = wr / gw
    lines = [
        f"CGI start-up, {args.requests} requests each, alternating, GET {args.path} "
        f"through lighttpd mod_cgi ({python}, {' '.join([binary, 'cgi', *gw_args])})",
        "",
        "| server | median ms | p90 ms | min ms |",
        "|---|---|---|---|",
        *[f"| {n} | {ms(m)} | {ms(p)} | {ms(lo)} |" for n, m, p, lo in rows],
        "",
        f"ratio (wsgiref median / wsgi-gateway median): **{ratio:.2f}x**",
    ]
    report = "\n".join(lines)
    print(report)
    if args.out:
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        stamp = datetime.datetime.now().strftime("%Y-%m-%d %H:%M")
        out.write_text(f"# CGI start-up ({stamp})\n\n{report}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
