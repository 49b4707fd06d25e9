"""Start a server that has no CLI of its own on bench_app (used by bench/compare.sh).

usage: python run_server.py fastwsgi|bjoern HOST PORT [PROCS]

PROCS > 1 (default 1): fastwsgi's own `workers` (each worker forks and binds the port itself);
bjoern's documented pre-fork pattern (bjoern.listen once, fork, bjoern.run in each child).
"""

import os
import signal
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from bench_app import application  # noqa: E402


def _bjoern(host, port, procs):
    import bjoern

    bjoern.listen(application, host, port)
    if procs <= 1:
        bjoern.run()
        return
    children = []
    for _ in range(procs):
        pid = os.fork()
        if pid == 0:
            try:
                bjoern.run()
            finally:
                os._exit(0)
        children.append(pid)

    def stop(signum, frame):
        for pid in children:
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    for _ in children:
        try:
            os.wait()
        except ChildProcessError:
            break


def main():
    if len(sys.argv) not in (4, 5):
        sys.exit("usage: run_server.py fastwsgi|bjoern HOST PORT [PROCS]")
    name, host, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
    procs = int(sys.argv[4]) if len(sys.argv) == 5 else 1
    if name == "fastwsgi":
        import fastwsgi

        if procs > 1:
            fastwsgi.run(wsgi_app=application, host=host, port=port, workers=procs)
        else:
            fastwsgi.run(wsgi_app=application, host=host, port=port)
    elif name == "bjoern":
        _bjoern(host, port, procs)
    else:
        sys.exit("unknown server: " + name)


if __name__ == "__main__":
    main()
