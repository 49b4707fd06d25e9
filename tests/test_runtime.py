"""Which Python runs: the CPython the binary was built against, found without any help from
the environment, with the packages installed into that Python importable."""

import http.client
import json
import os
import re
import shutil
import subprocess
import sys
import threading

import pytest

from gwprocess import APPS_DIR, binary

LISTENING = re.compile(rb"listening on http://([^\s:]+):(\d+)")


def _serve_once(env):
    """Starts the binary with exactly `env`, fetches / from runtime_app, stops it."""
    p = subprocess.Popen(
        [binary(), "serve", "runtime_app:application", "--bind", "127.0.0.1:0",
         "--chdir", str(APPS_DIR)],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    found = threading.Event()
    addr = {}
    log = []

    def drain():
        for line in iter(p.stderr.readline, b""):
            log.append(line)
            m = LISTENING.search(line)
            if m and not found.is_set():
                addr["host"], addr["port"] = m.group(1).decode(), int(m.group(2))
                found.set()
        found.set()

    threading.Thread(target=drain, daemon=True).start()
    try:
        assert found.wait(20) and addr, b"".join(log).decode(errors="replace")
        c = http.client.HTTPConnection(addr["host"], addr["port"], timeout=15)
        c.request("GET", "/")
        r = c.getresponse()
        assert r.status == 200
        data = json.loads(r.read())
        c.close()
        return data
    finally:
        p.terminate()
        assert p.wait(20) == 0


def test_runs_the_python_it_was_built_against():
    seen = _serve_once({k: v for k, v in os.environ.items() if not k.startswith("WSGI_GATEWAY_")})
    assert seen["base_prefix"] == sys.base_prefix
    assert seen["version"] == list(sys.version_info[:3])


def test_finds_python_and_its_packages_with_an_empty_environment():
    """CGI hosts (lighttpd) start programs with no PATH and no PYTHONHOME."""
    seen = _serve_once({})
    assert seen["process_env_keys"] == []
    assert seen["base_prefix"] == sys.base_prefix
    # pip was installed with the build interpreter's own pip: it must import from there.
    assert seen["pip_origin"] is not None
    assert seen["pip_origin"].startswith(sys.base_prefix)


@pytest.mark.skipif(shutil.which("readelf") is None, reason="readelf (binutils) not installed")
def test_libpython_linked_by_absolute_path():
    """The loader must not pick up whichever libpython comes first on the system."""
    out = subprocess.run(["readelf", "-d", binary()], capture_output=True, text=True,
                         check=True).stdout
    runpath = re.search(r"\((?:RUNPATH|RPATH)\)\s+Library (?:runpath|rpath): \[([^\]]*)\]", out)
    assert runpath, out
    libdir = os.path.join(sys.base_prefix, "lib")
    assert libdir in runpath.group(1).split(":")


def test_out_of_file_descriptors_neither_spins_nor_stops_serving():
    """With the fd limit reached, accept fails (EMFILE): the listener rests instead of spinning
    on the backlog, and once clients go away the server serves again."""
    import resource
    import socket

    def low_limit():
        resource.setrlimit(resource.RLIMIT_NOFILE, (40, 40))

    p = subprocess.Popen(
        [binary(), "serve", "runtime_app:application", "--bind", "127.0.0.1:0",
         "--chdir", str(APPS_DIR)],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        preexec_fn=low_limit)
    log = []
    addr = {}
    listening = threading.Event()
    failed = threading.Event()

    def drain():
        for line in iter(p.stderr.readline, b""):
            log.append(line)
            m = LISTENING.search(line)
            if m:
                addr["host"], addr["port"] = m.group(1).decode(), int(m.group(2))
                listening.set()
            if b"accept failed" in line:
                failed.set()
        listening.set()
        failed.set()

    threading.Thread(target=drain, daemon=True).start()
    held = []
    try:
        assert listening.wait(20) and addr, b"".join(log).decode(errors="replace")
        for _ in range(60):
            held.append(socket.create_connection((addr["host"], addr["port"]), timeout=10))
        assert failed.wait(20), "the fd limit was never reached"
        for s in held:
            s.close()
        held.clear()
        c = http.client.HTTPConnection(addr["host"], addr["port"], timeout=15)
        c.request("GET", "/")
        assert c.getresponse().status == 200
        c.close()
        failures = sum(b"accept failed" in line for line in log)
        assert failures < 50, f"{failures} accept failures logged: the listener spun"
    finally:
        for s in held:
            s.close()
        p.terminate()
        assert p.wait(20) == 0
