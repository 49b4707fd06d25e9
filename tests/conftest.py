"""Fixtures: server processes started from the built binary.

Session-scoped servers are shared per configuration for speed; every test opens its own
connections, so tests stay independent. `server_factory` starts throw-away servers for
tests that need their own process (signals, CLI, env).
"""

import pytest

# tests/ is on sys.path through pytest.ini's `pythonpath`
from cgihost import DEFAULT_USER, CgiHost
from gwprocess import APPS_DIR, Server
from isapihost import IsapiHost, build_harness, library_problem

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
    # the conformance suite's HTTP front end (tests/conformance/adapters.py)
    "conformance": ("conformance_app", ["--script-name", "/app"], {}),
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


# ---- CGI front end: one lighttpd for the session, in front of `wsgi-gateway cgi` scripts ----

# user/password lighttpd requires (HTTP Basic) for the scripts marked auth=True
CGI_AUTH_USER = DEFAULT_USER

# script name -> (app, extra args, exported env, auth). Every script gets --chdir tests/apps.
# URL path: /cgi-bin/<name>. Names may not be prefixes of each other's paths in a way that
# matters: auth is per exact script (+ path info).
CGI_SCRIPTS = {
    "echo": ("echo_app", [], {}, False),
    "echo-auth": ("echo_app", [], {}, True),
    "echo-trusted": ("echo_app", ["--forwarded-allow-ips", "127.0.0.1"], {}, False),
    "framing": ("framing_app", [], {}, False),
    "conformance": ("conformance_app", [], {}, False),
    "conformance-auth": ("conformance_app", [], {}, True),
}


@pytest.fixture(scope="session")
def cgi_host(tmp_path_factory):
    """lighttpd (mod_cgi) on a free loopback port with the CGI_SCRIPTS wrappers.

    `cgi_host.scripts[name]` is the URL path of a script; `cgi_host.error_log()` holds
    lighttpd's log and the scripts' stderr.
    """
    host = CgiHost(tmp_path_factory.mktemp("cgihost"))
    for name, (app, args, env, auth) in CGI_SCRIPTS.items():
        host.add_script(name, app, ["--chdir", str(APPS_DIR), *args],
                        env={"PYTHONDONTWRITEBYTECODE": "1", **env},
                        auth_user=CGI_AUTH_USER if auth else None)
    host.start()
    yield host
    host.stop()
    assert UNCLOSED not in host.error_log(), "a CGI response iterable was never closed"


# ---- ISAPI front end: tests/isapi/host.c driving target/debug/libwsgi_gateway.so ------------

# name -> (library config, harness arguments). Every host gets the conformance/echo apps on
# its pythonpath and its own error log; see tests/isapihost.py.
ISAPI_CONFIGS = {
    # the conformance suite (tests/conformance/adapters.py): mounted at /app, Basic auth
    # accepted for the cases with auth=True (anonymous otherwise, as IIS with both enabled)
    "conformance": ({"app": "conformance_app"},
                    ["--vdir", "/app", "--basic-user", ":".join(CGI_AUTH_USER)]),
}


@pytest.fixture(scope="session")
def isapi_harness_binary(tmp_path_factory):
    """The harness, compiled once per session (needs only gcc: its self-tests use it)."""
    return build_harness(tmp_path_factory.mktemp("isapi-build"))


@pytest.fixture(scope="session")
def isapi_harness(isapi_harness_binary):
    """The harness for the library's tests: fails at once if the library is unusable."""
    problem = library_problem()
    if problem:
        pytest.fail(f"the ISAPI library is not usable: {problem}")
    return isapi_harness_binary


class _IsapiPool:
    def __init__(self, harness, tmp_path_factory):
        self.harness = harness
        self.tmp = tmp_path_factory
        self.hosts = {}

    def get(self, name):
        h = self.hosts.get(name)
        if h is None:
            config, args = ISAPI_CONFIGS[name]
            h = IsapiHost(self.harness, self.tmp.mktemp(f"isapi-{name}"), config, args)
            self.hosts[name] = h
            h.start()
        assert h.alive(), f"ISAPI host {name!r} died\n{h.diagnostics()}"
        return h

    def stop_all(self):
        problems = []
        for name, h in self.hosts.items():
            rc = h.stop()
            if rc != 0 or h.failures():
                problems.append(f"ISAPI host {name!r} exited with {rc}:\n"
                                + "\n".join(h.failures()[:20]))
            if UNCLOSED in h.error_log():
                problems.append(f"ISAPI host {name!r}: a response iterable was never closed")
        return problems


@pytest.fixture(scope="session")
def isapi_hosts(isapi_harness, tmp_path_factory):
    """Shared harness processes per ISAPI_CONFIGS entry; at the end of the session each must
    exit cleanly (EOF -> TerminateExtension) with no HARNESS FAILURE."""
    pool = _IsapiPool(isapi_harness, tmp_path_factory)
    yield pool
    problems = pool.stop_all()
    assert not problems, "\n".join(problems)


@pytest.fixture
def isapi_factory(isapi_harness, tmp_path):
    """Throw-away harness processes: make(config, args, start=True, **kw) -> IsapiHost.
    At teardown each one that listened must exit 0 on EOF (no HARNESS FAILURE) and leave no
    response iterable unclosed."""
    made = []

    def make(config=None, args=(), start=True, **kw):
        h = IsapiHost(kw.pop("harness", isapi_harness), tmp_path / f"isapi{len(made)}",
                      config, args, **kw)
        made.append(h)
        return h.start() if start else h

    yield make
    problems = []
    for h in made:
        try:
            rc = h.stop(timeout=60)
        except AssertionError as e:
            h.kill()
            problems.append(str(e))
            continue
        if h.port is not None and (rc != 0 or h.failures()):
            problems.append(f"ISAPI harness exited with {rc}:\n" + "\n".join(h.failures()[:20]))
        if UNCLOSED in h.error_log():
            problems.append("a response iterable was never closed")
    assert not problems, "\n".join(problems)


def pytest_terminal_summary(terminalreporter):
    """One line per front end for the conformance suite: cases passed/failed/skipped."""
    counts = {}
    for outcome in ("passed", "failed", "skipped", "error"):
        for rep in terminalreporter.stats.get(outcome, ()):
            nodeid = getattr(rep, "nodeid", "")
            if "test_conformance.py::test_case[" not in nodeid:
                continue
            fe = nodeid.split("[", 1)[1].split("-", 1)[0]
            if outcome == "passed" and getattr(rep, "when", "call") != "call":
                continue
            counts.setdefault(fe, {}).setdefault(outcome, 0)
            counts[fe][outcome] += 1
    if counts:
        terminalreporter.section("conformance per front end")
        for fe, c in sorted(counts.items()):
            terminalreporter.line(f"{fe}: " + ", ".join(f"{n} {o}" for o, n in sorted(c.items())))
