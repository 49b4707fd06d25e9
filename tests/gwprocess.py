"""Process control for the server binary: where it is, the environment it gets, running it
to its exit (`run_cli`) or as a `Server` whose stderr (the error log) is drained on a thread
and waited on line by line.

Waiting is always on an event (a log line, the process's exit) with a generous deadline that
only bounds a failure; nothing sleeps to order events.
"""

from __future__ import annotations

import http.client
import os
import re
import signal
import socket
import subprocess
import threading
import urllib.parse
from pathlib import Path

from gwclient import IO_TIMEOUT, RawConn, UnixHTTPConnection

TESTS_DIR = Path(__file__).resolve().parent
REPO = TESTS_DIR.parent
APPS_DIR = TESTS_DIR / "apps"

LISTEN_RE = re.compile(r"listening on (http://\S+|unix:\S+)")
START_TIMEOUT = 20.0


def binary() -> str:
    return os.environ.get("WSGI_GATEWAY_BIN") or str(REPO / "target" / "debug" / "wsgi-gateway")


def program_is_script() -> bool:
    """True when binary() is a `#!` script: the Python package's console script (pip's
    wrapper running the venv's python), not the ELF binary that embeds Python."""
    try:
        with open(binary(), "rb") as f:
            return f.read(2) == b"#!"
    except OSError:
        return False


def clean_env(extra: dict | None = None) -> dict:
    """The test runner's environment without anything that configures the server."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("WSGI_GATEWAY_") and k not in ("VIRTUAL_ENV", "PYTHONHOME")
    }
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    if extra:
        env.update(extra)
    return env


def run_cli(args, env=None, timeout=20.0, cwd=None):
    """Run the binary expecting it to exit (start-up errors).

    Returns (returncode, stderr text). If it starts listening instead, it is killed at once
    and the return code is None, so a wrongly accepted option fails fast.
    """
    p = subprocess.Popen([binary(), *args], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                         stderr=subprocess.PIPE, env=clean_env(env), cwd=cwd or REPO)
    lines = []
    listening = threading.Event()

    def drain():
        for raw in iter(p.stderr.readline, b""):
            line = raw.decode("utf-8", "replace").rstrip("\r\n")
            lines.append(line)
            if LISTEN_RE.search(line):
                listening.set()
        listening.set()  # EOF

    t = threading.Thread(target=drain, daemon=True)
    t.start()
    listening.wait(timeout)
    try:
        rc = p.wait(5)
    except subprocess.TimeoutExpired:
        p.kill()
        p.wait(10)
        rc = None
    t.join(5)
    return rc, "\n".join(lines)


class Server:
    """One server process. Its stderr is drained on a thread into `lines`."""

    def __init__(self, app=None, args=(), env=None, bind="127.0.0.1:0", chdir=APPS_DIR,
                 cwd=None, listeners=1, subcommand=("serve",), popen_kw=None):
        self.app = app
        self.args = [str(a) for a in args]
        self.env = env or {}
        self.bind = bind
        self.chdir = chdir
        self.cwd = cwd or REPO
        self.listeners = listeners
        self.subcommand = list(subcommand)
        self.popen_kw = dict(popen_kw or {})  # extra subprocess.Popen arguments (pass_fds)
        self.proc = None
        self.lines: list[str] = []
        self.out_lines: list[str] = []
        self.urls: list[str] = []
        self._cond = threading.Condition()
        self._eof = False

    # ---- process -------------------------------------------------------------------
    def command(self):
        cmd = [binary(), *self.subcommand]
        if self.app:
            cmd.append(self.app)
        if self.bind:
            cmd += ["--bind", self.bind]
        if self.chdir:
            cmd += ["--chdir", str(self.chdir)]
        return cmd + self.args

    def start(self):
        b = binary()
        if not os.path.exists(b):
            raise RuntimeError(f"server binary not found: {b} (build it or set WSGI_GATEWAY_BIN)")
        cmd = self.command()
        self.proc = subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=clean_env(self.env),
            cwd=self.cwd,
            **self.popen_kw,
        )
        threading.Thread(target=self._drain, args=(self.proc.stderr, self.lines, True),
                         daemon=True).start()
        threading.Thread(target=self._drain, args=(self.proc.stdout, self.out_lines, False),
                         daemon=True).start()
        with self._cond:
            ok = self._cond.wait_for(
                lambda: len(self.urls) >= self.listeners or self._eof, timeout=START_TIMEOUT)
        if len(self.urls) < self.listeners:
            self.kill()
            raise RuntimeError(
                f"server did not report 'listening on' (ok={ok}, rc={self.proc.returncode})\n"
                f"cmd: {cmd}\nstderr:\n{self.log()}")
        self._parse_address(self.urls[0])
        return self

    def _drain(self, stream, sink, is_err):
        for raw in iter(stream.readline, b""):
            line = raw.decode("utf-8", "replace").rstrip("\r\n")
            with self._cond:
                sink.append(line)
                if is_err:
                    m = LISTEN_RE.search(line)
                    if m:
                        self.urls.append(m.group(1))
                self._cond.notify_all()
        if is_err:
            with self._cond:
                self._eof = True
                self._cond.notify_all()

    def _parse_address(self, url):
        if url.startswith("unix:"):
            self.family = socket.AF_UNIX
            self.address = url[len("unix:"):]
            self.host, self.port = "localhost", None
        else:
            u = urllib.parse.urlsplit(url)
            self.host, self.port = u.hostname, u.port
            self.family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
            self.address = (self.host, self.port)

    @property
    def host_header(self):
        if self.port is None:
            return "localhost"
        h = f"[{self.host}]" if ":" in self.host else self.host
        return f"{h}:{self.port}"

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout=30.0):
        """SIGTERM and wait; returns the exit status."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
        with self._cond:
            self._cond.wait_for(lambda: self._eof, timeout=5)
        return self.proc.returncode

    def kill(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    # ---- error log -----------------------------------------------------------------
    def log(self, since=0) -> str:
        with self._cond:
            return "\n".join(self.lines[since:])

    def log_mark(self) -> int:
        with self._cond:
            return len(self.lines)

    def wait_log(self, pattern, since=0, timeout=10.0):
        """Wait until a stderr line at index >= since matches `pattern`; return the match."""
        rx = re.compile(pattern)
        found = []

        def check():
            for line in self.lines[since:]:
                m = rx.search(line)
                if m:
                    found.append(m)
                    return True
            return self._eof

        with self._cond:
            self._cond.wait_for(check, timeout=timeout)
        if not found:
            raise AssertionError(
                f"no error-log line matching {pattern!r}; log since mark:\n{self.log(since)}")
        return found[0]

    # ---- clients -------------------------------------------------------------------
    def socket(self, timeout=IO_TIMEOUT):
        s = socket.socket(self.family, socket.SOCK_STREAM)
        s.settimeout(timeout)
        s.connect(self.address)
        return s

    def conn(self, timeout=IO_TIMEOUT) -> "RawConn":
        return RawConn(self.socket(timeout))

    def http(self, timeout=IO_TIMEOUT) -> http.client.HTTPConnection:
        if self.family == socket.AF_UNIX:
            return UnixHTTPConnection(self.address, timeout=timeout)
        return http.client.HTTPConnection(self.host, self.port, timeout=timeout)
