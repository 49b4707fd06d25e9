"""Fixtures: server processes started from the built binary.

Session-scoped servers are shared per configuration for speed; every test opens its own
connections, so tests stay independent. `server_factory` starts throw-away servers for
tests that need their own process (signals, CLI, env).
"""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from gwhelpers import APPS_DIR, Server  # noqa: E402

# name -> (app, extra args, extra env)
SESSION_CONFIGS = {
    "echo": ("echo_app", [], {}),
    "framing": ("framing_app", [], {}),
    # small limits for 413/414/431 cases
    "limits": ("echo_app", ["--limit-request-line", "256", "--limit-request-fields", "10",
                            "--limit-request-field-size", "128", "--limit-request-head", "1024",
                            "--max-body-size", "100"], {}),
    "refuse": ("echo_app", ["--header-underscores", "refuse"], {}),
    "trusted": ("echo_app", ["--forwarded-allow-ips", "127.0.0.1"], {}),
    "identity": ("echo_app", ["--identity-header", "X-Auth-User"], {}),
    "mounted": ("echo_app", ["--script-name", "/mnt"], {}),
    # the process environment must never reach environ
    "pollutedenv": ("echo_app", [], {"HTTP_HOST": "evil", "REMOTE_USER": "mallory",
                                     "CONTENT_LENGTH": "999", "SERVER_NAME": "evil.example",
                                     "GW_TEST_PROCESS_VAR": "leak"}),
}

# validated apps: wsgiref.validate prints this if the server never called close()
UNCLOSED = "garbage collected without being closed"


class _Pool:
    def __init__(self):
        self.servers = {}

    def get(self, name):
        s = self.servers.get(name)
        if s is None:
            app, args, env = SESSION_CONFIGS[name]
            s = Server(app, args=args, env=env).start()
            self.servers[name] = s
        assert s.alive(), f"session server {name!r} died; log:\n{s.log()[-4000:]}"
        return s

    def stop_all(self):
        problems = []
        for name, s in self.servers.items():
            rc = s.stop()
            if rc != 0:
                problems.append(f"server {name!r} exited with {rc} on SIGTERM")
            if UNCLOSED in s.log():
                problems.append(f"server {name!r}: a response iterable was never closed")
        return problems


@pytest.fixture(scope="session")
def servers():
    pool = _Pool()
    yield pool
    problems = pool.stop_all()
    assert not problems, "\n".join(problems)


@pytest.fixture(scope="session")
def echo_server(servers):
    return servers.get("echo")


@pytest.fixture(scope="session")
def framing_server(servers):
    return servers.get("framing")


@pytest.fixture
def server_factory():
    started = []

    def make(app=None, args=(), env=None, **kw):
        s = Server(app, args=args, env=env, **kw)
        started.append(s)
        return s.start()

    yield make
    for s in started:
        s.stop()


@pytest.fixture
def apps_dir():
    return APPS_DIR
