"""Start a server that has no CLI of its own on bench_app (used by bench/compare.sh).

usage: python run_server.py fastwsgi|bjoern HOST PORT
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from bench_app import application  # noqa: E402


def main():
    if len(sys.argv) != 4:
        sys.exit("usage: run_server.py fastwsgi|bjoern HOST PORT")
    name, host, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
    if name == "fastwsgi":
        import fastwsgi

        fastwsgi.run(wsgi_app=application, host=host, port=port)
    elif name == "bjoern":
        import bjoern

        bjoern.run(application, host, port)
    else:
        sys.exit("unknown server: " + name)


if __name__ == "__main__":
    main()
