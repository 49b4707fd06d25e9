"""Latency at the same offered load: each server in turn (unpinned, as in compare.sh), its
`wrk -t1 -c50` pacing every connection (1 ms between an answer and the next request on that
connection, wrk's Lua `delay`), so that no server is run to saturation and neither is wrk.

Why: compare.sh's p99 is taken at saturation, where the single wrk thread is itself nearly
saturated on the 2-core bench machine, and the faster the server, the busier wrk (figures:
results/2026-12-06-readme-history.md): its own queueing then widens the
tail it measures. Paced, every server gets about the same load and wrk has CPU to spare, so
the percentiles are the servers'.

Scenarios: paired.py's, and `idle` (compare.sh's: `hello` while 10,000 idle keep-alive
connections are held open).

With `--saturated` nothing is paced: compare.sh's load, but with as many rounds as asked for,
and for every peer the number of rounds in which wsgi-gateway's p99 was the lower of the
two (each round runs the servers back to back), so that a tail difference can be told from
the round-to-round spread.

usage: python3 bench/latency.py [--rounds N] [--seconds S] [--scenarios hello,echo,idle]
                                [--servers wsgi-gateway,fastwsgi,bjoern,granian] [--saturated]
                                [--out FILE]
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
done = function(summary, latency, requests)
  io.write(string.format("PCT %d %d %d %d\\n", latency:percentile(50),
    latency:percentile(90), latency:percentile(99), latency:percentile(99.9)))
end
"""
PACE = "function delay() return %d end\n" % PACE_MS
SERVERS = ("wsgi-gateway",) + paired.PEERS


# compare.sh's `idle`: `hello` while this many idle keep-alive connections are held open.
IDLE_CONNS = 10000
SCENARIOS = dict(paired.SCENARIOS, idle=paired.SCENARIOS["hello"])


def hold_idle(port: int) -> subprocess.Popen:
    """Opens IDLE_CONNS keep-alive connections (one request each, then silent) and returns
    once they are open; they stay open until the returned process is stopped."""
    holder = subprocess.Popen([sys.executable, str(REPO / "bench" / "tools" / "idle_conns.py"),
                               "127.0.0.1", str(port), str(IDLE_CONNS)],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    line = holder.stdout.readline() if holder.stdout else ""
    if not line.startswith("OPENED") or f"held={IDLE_CONNS} " not in line:
        stop(holder)
        sys.exit(f"latency.py: idle_conns.py did not hold {IDLE_CONNS} connections: {line}")
    return holder


def stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()


def measure(server: str, scenario: str, seconds: int, lua: str) -> tuple[float, list[int]]:
    """One run: the request rate and the percentiles (µs) wrk saw."""
    proc, port = paired.start(server, cpu=None)
    holder = None
    try:
        if scenario == "idle":
            holder = hold_idle(port)
        path, conns, _ = SCENARIOS[scenario]
        url = f"http://127.0.0.1:{port}{path}"
        base = ["wrk", "-t1", f"-c{conns}", "-s", lua]
        subprocess.run(base + ["-d1s", url], capture_output=True, check=True)
        out = subprocess.run(base + [f"-d{seconds}s", url], capture_output=True, text=True,
                             check=True).stdout
    finally:
        if holder is not None:
            stop(holder)
        stop(proc)
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
    ap.add_argument("--saturated", action="store_true",
                    help="no pacing: every server as fast as it goes, as in compare.sh")
    ap.add_argument("--out", help="default: bench/results/<date>-latency.md "
                    "(-latency-saturated.md with --saturated)")
    args = ap.parse_args()
    scenarios = choose("latency.py", "--scenarios", args.scenarios, SCENARIOS, "scenario")
    servers = choose("latency.py", "--servers", args.servers, SERVERS, "server")
    if args.rounds < 1 or args.seconds < 1:
        sys.exit("latency.py: --rounds and --seconds must be at least 1")
    if not BIN.exists():
        sys.exit(f"latency.py: {BIN} is missing: run `cargo build --release` first")
    if not paired.VPY.exists():
        sys.exit(f"latency.py: {paired.VENV} is missing: run `bash bench/compare.sh` once, "
                 "it makes it")

    if args.out is None:
        kind = "latency-saturated" if args.saturated else "latency"
        args.out = str(REPO / "bench" / "results" / f"{date.today()}-{kind}.md")
    pace = "" if args.saturated else PACE

    started = time.monotonic()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for scenario in scenarios:
            lua = os.path.join(tmp, f"{scenario}.lua")
            Path(lua).write_text((SCENARIOS[scenario][2] or "") + pace + DONE)
            runs: dict[str, list[tuple[float, list[int]]]] = {s: [] for s in servers}
            for r in range(args.rounds):
                for server in servers:  # interleaved: A B C…, A B C…
                    rate, pct = measure(server, scenario, args.seconds, lua)
                    runs[server].append((rate, pct))
                    print(f"  {scenario:6s} round {r + 1}  {server:13s} {rate:9.0f} req/s  "
                          + "  ".join(f"p{p:g} {v} us" for p, v in zip(PERCENTILES, pct)),
                          flush=True)
            ours = [p[2] for _, p in runs[servers[0]]]
            for server in servers:
                rate = statistics.median(r for r, _ in runs[server])
                med = [statistics.median(p[i] for _, p in runs[server])
                       for i in range(len(PERCENTILES))]
                p99s = " ".join(f"{p[2] / 1000:.2f}" for _, p in runs[server])
                # Round by round: in how many was our p99 the lower one (ties count half)?
                lower = sum(1.0 if o < p[2] else 0.5 if o == p[2] else 0.0
                            for o, (_, p) in zip(ours, runs[server]))
                rows.append((scenario, server, rate, med, p99s, med[2] / statistics.median(ours),
                             f"{lower:g} of {args.rounds}"))

    if args.saturated:
        title = "Latency at saturation"
        load = ("each connection sending its next request as soon as it has an answer, as in "
                "compare.sh: every server as fast as it goes.")
    else:
        title = "Latency at the same offered load"
        load = (f"each connection waiting {PACE_MS} ms between an answer and its next request: "
                "about the same load for every server, none saturated.")
    lines = [
        f"# {title}",
        "",
        provenance(" ".join(["python3 bench/latency.py", *sys.argv[1:]]),
                   f"{args.rounds} interleaved round(s) of {args.seconds} s", started),
        "",
        f"One server at a time, unpinned, `wrk -t1` with compare.sh's connections, {load} "
        f"Medians over rounds. `p99 ÷ {servers[0]}'s`: above 1, {servers[0]}'s tail is "
        f"shorter. `{servers[0]} lower`: the rounds in which {servers[0]}'s p99 was below this "
        "server's, the two measured back to back.",
        "",
        "| scenario | server | req/s | p50 | p90 | p99 | p99.9 | p99 per round (ms) | "
        f"p99 ÷ {servers[0]}'s | {servers[0]} lower |",
        "|---|---|---:|---:|---:|---:|---:|---|---:|---:|",
    ]
    for scenario, server, rate, med, p99s, ratio, lower in rows:
        ms = [f"{v / 1000:.2f} ms" for v in med]
        lines.append(f"| {scenario} | {server} | {rate:,.0f} | {' | '.join(ms)} | {p99s} | "
                     f"{ratio:.2f} | {'' if server == servers[0] else lower} |")
    report(lines, args.out)


if __name__ == "__main__":
    main()
