"""Latency at the same offered load: each server in turn (unpinned, as in compare.sh), its
`wrk -t1 -c50` pacing every connection (1 ms between an answer and the next request on that
connection, wrk's Lua `delay`), so that no server is run to saturation and neither is wrk.

Why: compare.sh's p99 is taken at saturation, where the single wrk thread is itself nearly
saturated on the 2-core bench machine, and the faster the server, the busier wrk (97 % of a
CPU on `hello` against wsgi-gateway, 89 % against bjoern): its own queueing then widens the
tail it measures. Paced, every server gets about the same load and wrk has CPU to spare, so
the percentiles are the servers'.

usage: python3 bench/latency.py [--rounds N] [--seconds S] [--scenarios hello,echo]
                                [--servers wsgi-gateway,fastwsgi,bjoern,granian] [--out FILE]
Needs the release build and the peers' venv (bench/compare.sh makes both);
`--out` defaults to bench/results/<date>-latency.md.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent / "tools"))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchlib import BIN, REPO, choose, parse_wrk, provenance, report  # noqa: E402
import paired  # noqa: E402

PACE_MS = 1
PERCENTILES = (50, 90, 99, 99.9)
# wrk prints these from its `done` hook, in microseconds.
DONE = """
function delay() return %d end
done = function(summary, latency, requests)
  io.write(string.format("PCT %%d %%d %%d %%d\\n", latency:percentile(50),
    latency:percentile(90), latency:percentile(99), latency:percentile(99.9)))
end
""" % PACE_MS
SERVERS = ("wsgi-gateway",) + paired.PEERS


def measure(server: str, scenario: str, seconds: int, lua: str) -> tuple[float, list[int]]:
    """One run: the request rate and the percentiles (µs) wrk saw."""
    proc, port = paired.start(server, cpu=None)
    try:
        path, conns, _ = paired.SCENARIOS[scenario]
        url = f"http://127.0.0.1:{port}{path}"
        base = ["wrk", "-t1", f"-c{conns}", "-s", lua]
        subprocess.run(base + ["-d1s", url], capture_output=True, check=True)
        out = subprocess.run(base + [f"-d{seconds}s", url], capture_output=True, text=True,
                             check=True).stdout
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
    _, rate, failed = parse_wrk(out)
    if failed:
        sys.exit(f"latency.py: {server} failed {failed} requests on {scenario}:\n{out}")
    line = next((ln for ln in out.splitlines() if ln.startswith("PCT ")), None)
    if line is None:
        sys.exit(f"latency.py: no percentiles in wrk's output:\n{out}")
    return rate, [int(x) for x in line.split()[1:]]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seconds", type=int, default=5)
    ap.add_argument("--scenarios", default="hello,echo")
    ap.add_argument("--servers", default=",".join(SERVERS))
    ap.add_argument("--out", default=str(REPO / "bench" / "results" / f"{date.today()}-latency.md"))
    args = ap.parse_args()
    scenarios = choose("latency.py", "--scenarios", args.scenarios, paired.SCENARIOS, "scenario")
    servers = choose("latency.py", "--servers", args.servers, SERVERS, "server")
    if args.rounds < 1 or args.seconds < 1:
        sys.exit("latency.py: --rounds and --seconds must be at least 1")
    if not BIN.exists():
        sys.exit(f"latency.py: {BIN} is missing: run `cargo build --release` first")
    if not paired.VPY.exists():
        sys.exit(f"latency.py: {paired.VENV} is missing: run `bash bench/compare.sh` once, "
                 "it makes it")

    started = time.monotonic()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for scenario in scenarios:
            lua = os.path.join(tmp, f"{scenario}.lua")
            Path(lua).write_text((paired.SCENARIOS[scenario][2] or "") + DONE)
            runs: dict[str, list[tuple[float, list[int]]]] = {s: [] for s in servers}
            for r in range(args.rounds):
                for server in servers:  # interleaved: A B C…, A B C…
                    rate, pct = measure(server, scenario, args.seconds, lua)
                    runs[server].append((rate, pct))
                    print(f"  {scenario:6s} round {r + 1}  {server:13s} {rate:9.0f} req/s  "
                          + "  ".join(f"p{p:g} {v} us" for p, v in zip(PERCENTILES, pct)),
                          flush=True)
            ours_p99 = statistics.median(p[2] for _, p in runs[servers[0]])
            for server in servers:
                rate = statistics.median(r for r, _ in runs[server])
                med = [statistics.median(p[i] for _, p in runs[server])
                       for i in range(len(PERCENTILES))]
                p99s = " ".join(f"{p[2] / 1000:.2f}" for _, p in runs[server])
                rows.append((scenario, server, rate, med, p99s, med[2] / ours_p99))

    lines = [
        "# Latency at the same offered load",
        "",
        provenance("python3 bench/latency.py",
                   f"{args.rounds} interleaved round(s) of {args.seconds} s", started),
        "",
        f"One server at a time, unpinned, `wrk -t1` with compare.sh's connections, each "
        f"connection waiting {PACE_MS} ms between an answer and its next request: about the "
        "same load for every server, none saturated. Medians over rounds; the last column is "
        f"the server's p99 ÷ {servers[0]}'s: above 1, {servers[0]}'s tail is shorter.",
        "",
        "| scenario | server | req/s | p50 | p90 | p99 | p99.9 | p99 per round (ms) | "
        f"p99 ÷ {servers[0]}'s |",
        "|---|---|---:|---:|---:|---:|---:|---|---:|",
    ]
    for scenario, server, rate, med, p99s, ratio in rows:
        ms = [f"{v / 1000:.2f} ms" for v in med]
        lines.append(f"| {scenario} | {server} | {rate:,.0f} | {' | '.join(ms)} | {p99s} | "
                     f"{ratio:.2f} |")
    report(lines, args.out)


if __name__ == "__main__":
    main()
