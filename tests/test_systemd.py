"""systemd's readiness protocol (`Type=notify`): a Unix datagram socket bound here stands in
for systemd's NOTIFY_SOCKET, with one process and under `--workers`.

The app holds its import until the test lets it go (a file per process), so "READY=1 comes
only once the app is imported and every worker is ready" is checked as an order of events,
not a timing: while an import is held, no READY=1 may have arrived. Waiting is on events (a
datagram, a file, a log line) with deadlines that only bound a failure.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import threading
import time
import uuid
from pathlib import Path

import pytest

from gwprocess import Server

pytestmark = pytest.mark.timeout(90)

DEADLINE = 30.0

APP = '''
import json, os, pathlib, time

here = pathlib.Path(__file__).resolve().parent
me = os.getpid()
(here / f"importing-{me}").write_text("")
# Held until the test says go (for this process, or for all): then the import finishes.
deadline = time.monotonic() + 60
while not ((here / f"go-{me}").exists() or (here / "go-all").exists()):
    if time.monotonic() > deadline:
        raise SystemExit("the test never let the import finish")
    time.sleep(0.005)
if (here / "fail").exists():
    raise RuntimeError("this import fails on purpose")


def application(environ, start_response):
    body = json.dumps({"pid": me, "notify": os.environ.get("NOTIFY_SOCKET")}).encode()
    start_response("200 OK", [("Content-Type", "application/json"),
                              ("Content-Length", str(len(body)))])
    return [body]
'''


class FakeSystemd:
    """A datagram socket in systemd's place: `NOTIFY_SOCKET` names it (a path, or `@name`
    for an abstract one)."""

    def __init__(self, directory: Path, abstract: bool):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        if abstract:
            name = f"wsgi-gateway-test-{uuid.uuid4().hex}"
            self.sock.bind("\0" + name)
            self.env_value = "@" + name
        else:
            path = directory / "notify"
            self.sock.bind(str(path))
            self.env_value = str(path)
        self.messages: list[dict] = []

    def close(self):
        self.sock.close()

    @staticmethod
    def parse(data: bytes) -> dict:
        fields = {}
        for line in data.decode().split("\n"):
            key, _, value = line.partition("=")
            fields[key] = value
        return fields

    def pending(self) -> list[dict]:
        """Whatever has arrived, without waiting."""
        got = []
        self.sock.setblocking(False)
        try:
            while True:
                try:
                    got.append(self.parse(self.sock.recv(4096)))
                except BlockingIOError:
                    break
        finally:
            self.sock.setblocking(True)
        self.messages += got
        return got

    def wait_for(self, key: str) -> dict:
        """The next message carrying `key` (messages before it are kept in `messages`)."""
        end = time.monotonic() + DEADLINE
        while True:
            left = end - time.monotonic()
            if left <= 0:
                raise AssertionError(f"no {key} from the server; got {self.messages}")
            self.sock.settimeout(left)
            try:
                msg = self.parse(self.sock.recv(4096))
            except socket.timeout:
                continue
            self.messages.append(msg)
            if key in msg:
                return msg


def wait_until(condition, what):
    end = time.monotonic() + DEADLINE
    while not condition():
        if time.monotonic() > end:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.01)


def importing(directory: Path) -> set[int]:
    return {int(p.name.split("-", 1)[1]) for p in directory.glob("importing-*")}



def release(directory: Path, pid: int):
    (directory / f"go-{pid}").write_text("")


def start_held(server: Server):
    """Starts `server` on a thread (its start waits for `listening on`, which the held import
    delays); returns the thread and a list that gets the exception, if any."""
    errors: list[BaseException] = []

    def run():
        try:
            server.start()
        except BaseException as e:  # noqa: BLE001 - handed to the test
            errors.append(e)

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t, errors


@pytest.fixture
def app_dir(tmp_path):
    (tmp_path / "notify_app.py").write_text(APP)
    return tmp_path


def answer(server: Server) -> dict:
    """GET / through http.client (a new connection: a reload's new workers answer it)."""
    h = server.http()
    try:
        h.request("GET", "/", headers={"Connection": "close"})
        r = h.getresponse()
        body = r.read()
    finally:
        h.close()
    assert r.status == 200, body
    return json.loads(body)


@pytest.mark.parametrize("abstract", [False, True], ids=["path", "abstract"])
def test_one_process_ready_after_import_and_stopping(app_dir, abstract):
    systemd = FakeSystemd(app_dir, abstract)
    server = Server("notify_app", chdir=app_dir, env={"NOTIFY_SOCKET": systemd.env_value})
    try:
        thread, errors = start_held(server)
        wait_until(lambda: importing(app_dir), "the app's import to begin")
        assert not [m for m in systemd.pending() if "READY" in m], (
            f"READY=1 before the app was imported: {systemd.messages}")
        (app_dir / "go-all").write_text("")
        ready = systemd.wait_for("READY")
        assert ready["READY"] == "1"
        # Ready means serving: the app answers at once.
        thread.join(DEADLINE)
        assert not errors, errors
        assert re.fullmatch(r"serving on http://127\.0\.0\.1:\d+ \(\d+ threads\)",
                            ready.get("STATUS", "")), ready
        assert str(server.port) in ready["STATUS"]
        seen = answer(server)
        # The app (and anything it starts) does not see systemd's socket.
        assert seen["notify"] is None, seen
        assert server.stop() == 0
        stopping = systemd.wait_for("STOPPING")
        assert stopping["STOPPING"] == "1"
    finally:
        server.kill()
        systemd.close()


def test_supervised_ready_reloading_stopping(app_dir):
    systemd = FakeSystemd(app_dir, abstract=False)
    server = Server("notify_app", chdir=app_dir, args=["--workers", "2"],
                    env={"NOTIFY_SOCKET": systemd.env_value})
    try:
        thread, errors = start_held(server)
        wait_until(lambda: len(importing(app_dir)) == 2, "both workers to import")
        first, second = sorted(importing(app_dir))
        release(app_dir, first)
        server.wait_log(rf"worker pid {first} ready", timeout=DEADLINE)
        # One worker serving is not the service being up: the other still imports.
        assert not [m for m in systemd.pending() if "READY" in m], systemd.messages
        release(app_dir, second)
        ready = systemd.wait_for("READY")
        assert ready["READY"] == "1"
        assert re.fullmatch(r"serving on http://127\.0\.0\.1:\d+ \(2 workers\)",
                            ready.get("STATUS", "")), ready
        thread.join(DEADLINE)
        assert not errors, errors
        seen = answer(server)
        assert seen["pid"] in (first, second)
        assert seen["notify"] is None, seen

        # SIGHUP: RELOADING=1 (with the monotonic time) at once, READY=1 when the new
        # generation has taken over.
        old = {first, second}
        server.proc.send_signal(signal.SIGHUP)
        reloading = systemd.wait_for("RELOADING")
        assert reloading["RELOADING"] == "1"
        usec = int(reloading["MONOTONIC_USEC"])
        assert 0 < usec <= time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        wait_until(lambda: len(importing(app_dir) - old) == 2, "the new workers to import")
        new = importing(app_dir) - old
        assert not [m for m in systemd.pending() if "READY" in m], (
            f"READY=1 before the new workers were ready: {systemd.messages}")
        for pid in new:
            release(app_dir, pid)
        ready = systemd.wait_for("READY")
        assert "reloaded" in ready.get("STATUS", ""), ready
        # The old workers were told to stop as READY=1 went out; one may still take a
        # connection queued before it saw the signal, so look until a new one answers.
        wait_until(lambda: answer(server)["pid"] in new, "a new worker to answer")

        # A reload whose new code fails to import ends with READY=1 too: the running
        # generation serves on, and systemd must not wait for it forever.
        (app_dir / "fail").write_text("")
        current = importing(app_dir)
        server.proc.send_signal(signal.SIGHUP)
        systemd.wait_for("RELOADING")
        wait_until(lambda: importing(app_dir) - current, "a failing worker to import")
        for pid in importing(app_dir) - current:
            release(app_dir, pid)
        ready = systemd.wait_for("READY")
        assert "reload failed" in ready.get("STATUS", ""), ready
        assert answer(server)["pid"] in new

        assert server.stop() == 0
        assert systemd.wait_for("STOPPING")["STOPPING"] == "1"
    finally:
        server.kill()
        systemd.close()


def test_workers_never_get_notify_socket(app_dir):
    """Only the supervisor talks to systemd: the variable is gone from every worker's
    environment (read from /proc, not only from the app's os.environ)."""
    systemd = FakeSystemd(app_dir, abstract=False)
    (app_dir / "go-all").write_text("")
    server = Server("notify_app", chdir=app_dir, args=["--workers", "2"],
                    env={"NOTIFY_SOCKET": systemd.env_value})
    try:
        server.start()
        systemd.wait_for("READY")
        pids = importing(app_dir)
        assert len(pids) == 2
        for pid in pids:
            with open(f"/proc/{pid}/environ", "rb") as f:
                env = f.read().split(b"\0")
            assert not [v for v in env if v.startswith(b"NOTIFY_SOCKET=")], pid
        senders = {m.get("STATUS", "") for m in systemd.messages}
        assert all("2 workers" in s for s in senders), systemd.messages
    finally:
        server.stop()
        server.kill()
        systemd.close()
