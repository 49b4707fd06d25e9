"""Paired runs: wsgi-gateway and one peer under the same load at the same time, both on CPU 0,
their two wrk clients on CPU 1, so whatever the machine does meanwhile hits both alike. Each
server's CPU time (all its threads and child processes, from /proc/<pid>/task/*/schedstat) is
read around the measured seconds, and the figure compared is requests per CPU-second: what a
request costs each server, user and kernel time included. On the shared 2-core bench machine
the rounds of `compare.sh` vary by up to 30 %; a paired round varies by a few per cent (the
self-pair below measures that: wsgi-gateway against itself).

The ratio of the two request rates is reported beside it. It equals the cost ratio only when
the scheduler gives both servers the same CPU share, which it does not always do: a server
with more runnable threads, or one that waits less, gets more.

What it does not measure: how a server behaves with a CPU of its own (latency, the wrk <->
server ping-pong), and servers that use more than one CPU. `compare.sh` measures those.

usage: python3 bench/paired.py [--rounds N] [--seconds S] [--peers fastwsgi,bjoern,granian]
                               [--scenarios hello,echo,big,stream,app] [--out FILE]
                               [--baseline PROGRAM] [--ours PROGRAM]
`--baseline PROGRAM` adds the peer `baseline`: another wsgi-gateway (a release build of an
earlier commit) run exactly as ours, to measure what a change costs. `--ours PROGRAM` replaces
the release binary as `wsgi-gateway`. Either may be a binary (run with `--venv bench/.venv`) or
the console script of a venv the wheel is installed in (run as it is: its venv's Python, which
needs Flask there for `app`), e.g. two builds of the wheel.
Needs the release build (cargo build --release) and the peers' venv that bench/compare.sh
makes (bench/.venv); `--out` defaults to bench/results/<date>-paired.md.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from datetime import date
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent / "tools"))
from benchlib import (BIN, REPO, children, choose, free_port, parse_wrk,  # noqa: E402
                      provenance, report)

APPS = REPO / "bench" / "apps"
VENV = REPO / "bench" / ".venv"
VPY = VENV / "bin" / "python"
SERVER_CPU, CLIENT_CPU = 0, 1

# path, connections, wrk Lua (None: plain GET); the same routes and loads as compare.sh.
SCENARIOS = {
    "hello": ("/hello", 50, None),
    "echo": ("/echo", 50, 'wrk.method = "POST"\nwrk.body = string.rep("a", 4096)\n'
             'wrk.headers["Content-Type"] = "application/octet-stream"\n'),
    "big": ("/big", 10, None),
    "stream": ("/stream", 50, None),
    "app": ("/app", 50, None),
}
PEERS = ("fastwsgi", "bjoern", "granian")


BASELINE: Path | None = None
OURS: Path = BIN


def is_console_script(program: Path) -> bool:
    """pip's wrapper script (`#!…/python`), as opposed to the embedder binary."""
    with open(program, "rb") as f:
        return f.read(2) == b"#!"


def command(server: str, port: int) -> list[str]:
    if server in ("wsgi-gateway", "baseline"):
        program = OURS if server == "wsgi-gateway" else BASELINE
        venv = [] if is_console_script(program) else ["--venv", str(VENV)]
        return [str(program), "serve", "bench_app:application", "--bind", f"127.0.0.1:{port}",
                "--threads", "32", "--chdir", str(APPS), *venv, "--log-level", "warn"]
    if server == "granian":
        # compare.sh's settings for it: one worker, 16 blocking threads.
        return [str(VENV / "bin" / "granian"), "--interface", "wsgi", "--host", "127.0.0.1",
                "--port", str(port), "--workers", "1", "--blocking-threads", "16",
                "--backpressure", "20000", "--log-level", "warning", "--working-dir",
                str(APPS), "bench_app:application"]
    return [str(VPY), str(APPS / "run_server.py"), server, "127.0.0.1", str(port)]


def on_cpu(cpu: int):
    return lambda: os.sched_setaffinity(0, {cpu})


def start(server: str, cpu: int | None = SERVER_CPU) -> tuple[subprocess.Popen, int]:
    """Starts a server (on `cpu`, or wherever the scheduler puts it with None) and waits until
    it answers."""
    port = free_port()
    proc = subprocess.Popen(command(server, port), cwd=APPS, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL,
                            preexec_fn=None if cpu is None else on_cpu(cpu))
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            sys.exit(f"paired.py: {server} exited at start-up (command: {' '.join(command(server, port))})")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/hello", timeout=1):
                return proc, port
        except OSError:
            time.sleep(0.1)
    proc.kill()
    sys.exit(f"paired.py: {server} did not answer on port {port} within 20 s")


def wrk(port: int, scenario: str, seconds: int, lua: str | None) -> subprocess.Popen:
    path, conns, _ = SCENARIOS[scenario]
    args = ["wrk", "-t1", f"-c{conns}", f"-d{seconds}s"]
    if lua:
        args += ["-s", lua]
    return subprocess.Popen(args + [f"http://127.0.0.1:{port}{path}"], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, preexec_fn=on_cpu(CLIENT_CPU))


def rate(out: str) -> float:
    try:
        # A wrk timeout (2 s) is latency, not a wrong answer: a single-threaded server queues
        # 50 Flask requests behind one another. Wrong answers and socket errors stop the run.
        _, per_second, failed = parse_wrk(out, timeouts=False)
    except AttributeError:
        sys.exit(f"paired.py: no figures in wrk's output:\n{out}")
    if failed:
        sys.exit(f"paired.py: wrk saw {failed} failed requests:\n{out}")
    return per_second


def cpu_ns(pid: int) -> int:
    """CPU time used so far by a process's threads and (recursively) its child processes."""
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            total += int((task / "schedstat").read_text().split()[0])
        except (OSError, IndexError, ValueError):
            pass  # a thread that just exited
    return total + sum(cpu_ns(child) for child in children(pid))


def pair(a: str, b: str, scenario: str, seconds: int,
         lua: str | None) -> tuple[tuple[float, float], tuple[float, float]]:
    """One round: both servers loaded at once; their request rates and requests per
    CPU-second."""
    servers = [start(a), start(b)]
    try:
        for warm in [wrk(port, scenario, 1, lua) for _, port in servers]:
            warm.communicate()
        before = [cpu_ns(proc.pid) for proc, _ in servers]
        runs = [wrk(port, scenario, seconds, lua) for _, port in servers]
        outs = [r.communicate()[0] for r in runs]
        used = [(cpu_ns(proc.pid) - b0) / 1e9 for (proc, _), b0 in zip(servers, before)]
        ra, rb = (rate(out) for out in outs)
    finally:
        for proc, _ in servers:
            proc.terminate()
        for proc, _ in servers:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
    # wrk's two runs start and end within milliseconds of each other: requests ≈ rate × seconds.
    return (ra, rb), (ra * seconds / max(used[0], 1e-9), rb * seconds / max(used[1], 1e-9))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seconds", type=int, default=5)
    ap.add_argument("--peers", default=",".join(PEERS))
    ap.add_argument("--scenarios", default=",".join(SCENARIOS))
    ap.add_argument("--out", default=str(REPO / "bench" / "results" / f"{date.today()}-paired.md"))
    ap.add_argument("--baseline", type=Path, help="another wsgi-gateway program, as a peer")
    ap.add_argument("--ours", type=Path, help="the wsgi-gateway program measured (default: "
                    "the release binary)")
    args = ap.parse_args()
    global OURS
    if args.ours:
        OURS = args.ours.absolute()
        if not OURS.is_file():
            sys.exit(f"paired.py: --ours {args.ours}: no such file")
    peers = choose("paired.py", "--peers", args.peers, PEERS, "peer") if args.peers else []
    if args.baseline:
        global BASELINE
        BASELINE = args.baseline.absolute()
        if not BASELINE.is_file():
            sys.exit(f"paired.py: --baseline {args.baseline}: no such file")
        peers.append("baseline")
    scenarios = choose("paired.py", "--scenarios", args.scenarios, SCENARIOS, "scenario")
    if args.rounds < 1 or args.seconds < 1:
        sys.exit("paired.py: --rounds and --seconds must be at least 1")
    if (os.cpu_count() or 1) < 2:
        sys.exit("paired.py: needs two CPUs (servers on CPU 0, clients on CPU 1)")
    if not OURS.exists():
        sys.exit(f"paired.py: {OURS} is missing: run `cargo build --release` first")
    if not VPY.exists():
        sys.exit(f"paired.py: {VENV} is missing: run `bash bench/compare.sh` once, it makes it")

    started = time.monotonic()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for scenario in scenarios:
            lua = None
            if SCENARIOS[scenario][2]:
                lua = os.path.join(tmp, f"{scenario}.lua")
                Path(lua).write_text(SCENARIOS[scenario][2])
            for peer in ["wsgi-gateway"] + peers:
                ratios, rate_ratios, firsts = [], [], None
                for r in range(args.rounds):
                    # Alternate which one starts (and is loaded) first.
                    if r % 2 == 0:
                        rates, per_cpu = pair("wsgi-gateway", peer, scenario, args.seconds, lua)
                    else:
                        rates, per_cpu = pair(peer, "wsgi-gateway", scenario, args.seconds, lua)
                        rates, per_cpu = rates[::-1], per_cpu[::-1]
                    ratios.append(per_cpu[0] / per_cpu[1])
                    rate_ratios.append(rates[0] / rates[1])
                    firsts = firsts or (rates, per_cpu)
                    print(f"  {scenario:7s} vs {peer:13s} round {r + 1}: "
                          f"{per_cpu[0]:9.0f} / {per_cpu[1]:9.0f} req per CPU-s = "
                          f"{ratios[-1]:.3f} (req/s {rates[0]:.0f} / {rates[1]:.0f} = "
                          f"{rate_ratios[-1]:.3f})", flush=True)
                rows.append((scenario, peer, statistics.median(ratios), ratios,
                             statistics.median(rate_ratios), firsts))

    lines = [
        "# Paired runs: wsgi-gateway and a peer at the same time on one CPU",
        "",
        provenance("python3 bench/paired.py", f"{args.rounds} rounds of {args.seconds} s",
                   started),
        "",
        "Both servers on CPU 0, each loaded by its own `wrk -t1` on CPU 1 (the connections of "
        "compare.sh's scenario). Cost ratio = wsgi-gateway's requests per CPU-second ÷ the "
        "peer's, measured in the same seconds (each server's CPU time from schedstat, threads "
        "and child processes included): above 1, a request costs wsgi-gateway less CPU. The "
        "req/s ratio is the same two servers' request rates, which also reflects how the "
        "scheduler shared the CPU. `wsgi-gateway` against itself shows the method's spread.",
        "",
        "| scenario | vs | cost ratio (median) | rounds | req/s ratio (median) | round 1: req per CPU-s, req/s (ours / theirs) |",
        "|---|---|---:|---|---:|---|",
    ]
    for scenario, peer, median, ratios, rate_median, (rates, per_cpu) in rows:
        lines.append(f"| {scenario} | {peer} | **{median:.3f}** | "
                     f"{' '.join(f'{x:.3f}' for x in ratios)} | {rate_median:.3f} | "
                     f"{per_cpu[0]:,.0f} / {per_cpu[1]:,.0f}, "
                     f"{rates[0]:,.0f} / {rates[1]:,.0f} |")
    report(lines, args.out)


if __name__ == "__main__":
    main()
