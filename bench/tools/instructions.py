"""Instructions per request, counted by `valgrind --tool=callgrind`: repeatable where the
shared machine's timings are not (the same count twice, whatever else the machine does).

Each program (a wsgi-gateway console script, whose venv has the bench app's packages, or a
binary, run with `--venv bench/.venv`) serves bench/apps/bench_app.py under callgrind twice:
one request, then 1 + N keep-alive requests from one http.client connection; the difference of
the two totals ÷ N is what a request costs, start-up and shutdown cancelled out.
PYTHONHASHSEED is fixed so the two runs do the same start-up work.

usage: python3 bench/tools/instructions.py NAME=PROGRAM [NAME=PROGRAM ...]
                                           [--paths /hello,/echo] [--requests 3000]
The first program is the reference the others are divided by.
"""

from __future__ import annotations

import argparse
import http.client
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchlib import REPO, free_port  # noqa: E402

APPS = REPO / "bench" / "apps"
VENV = REPO / "bench" / ".venv"


def command(program: Path, port: int) -> list[str]:
    head = program.read_bytes()[:2]
    venv = [] if head == b"#!" else ["--venv", str(VENV)]
    return [str(program), "serve", "bench_app:application", "--chdir", str(APPS), "--bind",
            f"127.0.0.1:{port}", "--threads", "2", "--log-level", "warn", *venv]


def count(program: Path, path: str, requests: int, out: Path) -> int:
    port = free_port()
    env = dict(os.environ, PYTHONHASHSEED="0")
    proc = subprocess.Popen(["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}",
                             *command(program, port)], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while True:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
            conn.connect()
            break
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                sys.exit(f"instructions.py: {program} did not start")
            time.sleep(0.2)
    body = b"a" * 4096 if path == "/echo" else None
    for _ in range(requests):
        conn.request("POST" if body else "GET", path, body=body)
        resp = conn.getresponse()
        resp.read()
        if resp.status != 200:
            sys.exit(f"instructions.py: {program} {path}: status {resp.status}")
    conn.close()
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=120)
    found = re.search(r"^(?:summary|totals): (\d+)", out.read_text(), re.M)
    if not found:
        sys.exit(f"instructions.py: no total in {out}")
    return int(found.group(1))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("programs", nargs="+", metavar="NAME=PROGRAM")
    ap.add_argument("--paths", default="/hello,/echo")
    ap.add_argument("--requests", type=int, default=3000)
    args = ap.parse_args()
    programs = []
    for spec in args.programs:
        name, _, program = spec.partition("=")
        if not program or not Path(program).is_file():
            sys.exit(f"instructions.py: {spec!r}: expected NAME=PROGRAM (an existing file)")
        programs.append((name, Path(program).absolute()))
    with tempfile.TemporaryDirectory() as tmp:
        for path in args.paths.split(","):
            per_request = {}
            for name, program in programs:
                one = count(program, path, 1, Path(tmp) / "one.out")
                many = count(program, path, 1 + args.requests, Path(tmp) / "many.out")
                per_request[name] = (many - one) / args.requests
            ref = programs[0][0]
            for name, _ in programs:
                print(f"{path:8s} {name:12s} {per_request[name]:10,.0f} instructions per request"
                      f"  ({per_request[name] / per_request[ref]:.4f} × {ref})", flush=True)


if __name__ == "__main__":
    main()
