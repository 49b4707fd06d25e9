"""The Linux wheel, installed with pip into a fresh venv, and the sdist (issue 17).

Runs only when WSGI_GATEWAY_WHEEL_VENV names that venv (tests/run.sh's console-script stage
makes it from target/wheels/ and gives it, with WSGI_GATEWAY_WHEEL and WSGI_GATEWAY_SDIST, the
files it was installed from). Every server here is the venv's own `wsgi-gateway` (or its
`python -m wsgi_gateway`): the user's python hosts the extension module, no Rust toolchain
and no build-machine path involved.

- the app imports a package installed only in that venv; sys.executable / sys.prefix are the
  venv's; `python -m wsgi_gateway` is the same program as the console script;
- `--workers 2`: the workers are `<venv>/bin/python… [flags] -m wsgi_gateway <same args>`
  (from /proc), SIGHUP reload and SIGTERM stop; SIGINT stops a single process cleanly;
- `--venv` names the running venv or is refused with one line;
- the console script (and `python -m wsgi_gateway cgi`) under a real lighttpd, and as the
  program a host ran with a query's words as arguments (Apache's way);
- the wheel: tag, what the ELF needs (objdump), no baked interpreter path; the sdist: its
  contents, and `pip install <sdist>` builds and serves (cargo, dev profile);
- a free-threaded target is refused at build time with one line (gateway/build.rs).
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tarfile
import time
import uuid
import zipfile
from pathlib import Path

import pytest

from cgihost import CgiHost, apache_search_words, lighttpd_available
from gwclient import echo
from gwprocess import APPS_DIR, REPO, Server, run_cli

VENV_ENV = "WSGI_GATEWAY_WHEEL_VENV"
if not os.environ.get(VENV_ENV):
    pytest.skip(f"{VENV_ENV} not set: the wheel tests run in tests/run.sh's console-script "
                "stage (the wheel installed into a fresh venv)", allow_module_level=True)

from test_workers import Gw, kill_token, pid_alive, wait_until  # noqa: E402

pytestmark = pytest.mark.timeout(120)

VENV = Path(os.environ[VENV_ENV]).absolute()
SCRIPT = VENV / "bin" / "wsgi-gateway"
WHEEL_DIR = REPO / "target" / "wheels"
# The interpreter the console script runs: its `#!` line, as pip wrote it.
SHEBANG_PYTHON = SCRIPT.read_text().splitlines()[0][2:].strip() if SCRIPT.exists() else ""
# manylinux's core libraries (PEP 600 / auditwheel policy) a wheel may need from the system.
SYSTEM_LIBS = {"libc.so.6", "libm.so.6", "libdl.so.2", "librt.so.1", "libpthread.so.0",
               "libgcc_s.so.1", "libutil.so.1", "ld-linux-x86-64.so.2"}
MATURIN_PIN = "maturin==1.16.0"
VENV_APP = '''\
import json, os, sys

import onlyhere

VERSION = "{version}"


def application(environ, start_response):
    body = json.dumps({{"pid": os.getpid(), "version": VERSION, "executable": sys.executable,
                       "prefix": sys.prefix, "argv0": sys.argv[0], "marker": onlyhere.MARKER,
                       "onlyhere": onlyhere.__file__,
                       "query": environ.get("QUERY_STRING"),
                       "remote_addr": environ.get("REMOTE_ADDR"),
                       "forwarded_user": environ.get("HTTP_X_FORWARDED_USER")}}).encode()
    start_response("200 OK", [("Content-Type", "application/json"),
                              ("Content-Length", str(len(body)))])
    return [body]
'''


def venv_python(code: str, *, check=True) -> str:
    p = subprocess.run([str(VENV / "bin" / "python"), "-c", code], capture_output=True,
                       text=True, timeout=60)
    if check:
        assert p.returncode == 0, p.stderr
    return p.stdout.strip()


def base_python() -> str:
    """The interpreter the venv was made from (real path)."""
    return venv_python("import os, sys; print(os.path.realpath(sys._base_executable))")


def cmdline(pid: int) -> list[str]:
    with open(f"/proc/{pid}/cmdline", "rb") as f:
        return [a.decode() for a in f.read().split(b"\0")[:-1]]


@pytest.fixture(scope="module", autouse=True)
def _the_venvs_console_script():
    """Every helper (Server, run_cli, CgiHost) runs the venv's console script, also in the
    module-scoped fixtures (autouse ones come first in their scope)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("WSGI_GATEWAY_BIN", str(SCRIPT))
        yield


# ---- a package only the venv has ----------------------------------------------------------

def _tiny_wheel(dest: Path, marker: str) -> Path:
    """onlyhere-1.0-py3-none-any.whl, written by hand (no build backend, no network)."""
    files = {
        "onlyhere/__init__.py": f'MARKER = "{marker}"\n',
        "onlyhere-1.0.dist-info/METADATA": "Metadata-Version: 2.1\nName: onlyhere\nVersion: 1.0\n",
        "onlyhere-1.0.dist-info/WHEEL": "Wheel-Version: 1.0\nGenerator: test_wheel\n"
                                       "Root-Is-Purelib: true\nTag: py3-none-any\n",
    }
    record = []
    for name, text in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest()).rstrip(b"=")
        record.append(f"{name},sha256={digest.decode()},{len(text.encode())}")
    record.append("onlyhere-1.0.dist-info/RECORD,,")
    path = dest / "onlyhere-1.0-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as z:
        for name, text in files.items():
            z.writestr(name, text)
        z.writestr("onlyhere-1.0.dist-info/RECORD", "\n".join(record) + "\n")
    return path


@pytest.fixture(scope="module")
def onlyhere(tmp_path_factory):
    """`onlyhere` pip-installed into the wheel venv (and removed after): its MARKER."""
    marker = uuid.uuid4().hex
    whl = _tiny_wheel(tmp_path_factory.mktemp("onlyhere"), marker)
    pip = [str(VENV / "bin" / "python"), "-m", "pip", "--disable-pip-version-check"]
    p = subprocess.run([*pip, "install", "-q", "--no-index", "--no-deps", "--force-reinstall",
                        str(whl)], capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stdout + p.stderr
    yield marker
    subprocess.run([*pip, "uninstall", "-q", "-y", "onlyhere"], capture_output=True, timeout=120)


@pytest.fixture
def venv_app(tmp_path, onlyhere):
    """tmp_path/venvapp.py (imports onlyhere); returns (directory, write(version))."""
    def write(version):
        (tmp_path / "venvapp.py").write_text(VENV_APP.format(version=version))
    write("v1")
    return tmp_path, write


def fetch_json(server, path="/"):
    return echo(server, path, headers={"Connection": "close"})


def assert_the_venvs(d, marker):
    assert d["prefix"] == str(VENV)
    assert d["executable"] == SHEBANG_PYTHON, d
    assert Path(d["executable"]).parent == VENV / "bin"
    assert d["marker"] == marker
    assert d["onlyhere"].startswith(str(VENV / "lib") + "/")


class PythonM(Server):
    """The same server started as `<venv>/bin/python -m wsgi_gateway …`."""

    def command(self):
        return [str(VENV / "bin" / "python"), "-m", "wsgi_gateway", *super().command()[1:]]


# ---- the venv hosts the app ---------------------------------------------------------------

def test_the_console_script_is_pips_and_runs_the_venvs_python():
    assert SCRIPT.is_file() and os.access(SCRIPT, os.X_OK)
    assert Path(SHEBANG_PYTHON).parent == VENV / "bin", SHEBANG_PYTHON
    # the package came from the wheel (no Rust in that venv: nothing there could build it)
    installer = venv_python("from importlib import metadata as m; "
                            "d = m.distribution('wsgi-gateway'); "
                            "print(d.read_text('INSTALLER').strip(), d.read_text('WHEEL'))")
    assert installer.startswith("pip "), installer
    assert "Root-Is-Purelib: false" in installer


def test_an_app_importing_a_venv_only_package_is_served(venv_app, onlyhere):
    root, _ = venv_app
    # importable in the venv only: not by the interpreter it was made from, nor by pytest's
    for py in (base_python(), sys.executable):
        p = subprocess.run([py, "-c", "import onlyhere"], capture_output=True, timeout=60,
                           cwd="/")
        assert p.returncode != 0, f"{py} can import onlyhere: the test proves nothing"
    s = Server("venvapp", chdir=root).start()
    try:
        d = fetch_json(s)
        assert_the_venvs(d, onlyhere)
        assert d["argv0"] == str(SCRIPT)
        assert d["pid"] == s.proc.pid  # the console script's own process serves
        assert s.stop() == 0
    finally:
        s.kill()


def test_python_m_is_the_same_program(venv_app, onlyhere):
    version = venv_python("from importlib import metadata; print(metadata.version('wsgi-gateway'))")
    by_script = subprocess.run([str(SCRIPT), "--version"], capture_output=True, text=True,
                               timeout=60)
    by_m = subprocess.run([str(VENV / "bin" / "python"), "-m", "wsgi_gateway", "--version"],
                          capture_output=True, text=True, timeout=60)
    assert by_script.returncode == by_m.returncode == 0, by_script.stderr + by_m.stderr
    assert by_script.stdout == by_m.stdout == f"wsgi-gateway {version}\n"
    root, _ = venv_app
    s = PythonM("venvapp", chdir=root).start()
    try:
        d = fetch_json(s)
        assert d["prefix"] == str(VENV) and d["marker"] == onlyhere
        assert d["executable"] == str(VENV / "bin" / "python")
        assert d["argv0"].endswith("/wsgi_gateway/__main__.py")
        assert d["argv0"].startswith(str(VENV / "lib") + "/")
        assert cmdline(s.proc.pid)[:4] == [str(VENV / "bin" / "python"), "-m", "wsgi_gateway",
                                           "serve"]
        assert s.stop() == 0
    finally:
        s.kill()


# ---- workers, reload, signals --------------------------------------------------------------

def _is_worker_of(worker: list[str], supervisor: list[str]) -> bool:
    """`<python> [interpreter flags] -m wsgi_gateway <the supervisor's own arguments>`."""
    if worker[0] != supervisor[0] or "-m" not in worker:
        return False
    i = worker.index("-m")
    return (all(a.startswith("-") for a in worker[1:i])
            and worker[i:i + 2] == ["-m", "wsgi_gateway"]
            and worker[i + 2:] == supervisor[2:])


@pytest.fixture
def gw():
    made = []

    def make(app, **kw):
        s = Gw(app, uuid.uuid4().hex, **kw)
        made.append(s)
        return s.start()

    yield make
    for s in made:
        s.kill()
        assert not kill_token(s.token)


def test_workers_are_the_venvs_python_m_wsgi_gateway_and_reload_and_stop(gw, venv_app, onlyhere):
    root, write = venv_app
    s = gw("venvapp", args=["--workers", "2"], chdir=root)
    sup = cmdline(s.pid)
    assert sup[:2] == [SHEBANG_PYTHON, str(SCRIPT)], sup
    first = s.ready_pids()
    assert len(first) == 2 and s.children() == set(first), (first, s.children())
    for pid in first:
        assert _is_worker_of(cmdline(pid), sup), (cmdline(pid), sup)
    seen = {}

    def both_answered():
        d = fetch_json(s)
        seen[d["pid"]] = d
        return len(seen) == 2
    wait_until(both_answered, 30, "both workers answering")
    for pid, d in seen.items():
        assert pid in first
        assert_the_venvs(d, onlyhere)
        assert d["version"] == "v1"

    # SIGHUP: new code on disk, a new generation of the same command line
    write("v2")
    mark = s.log_mark()
    os.kill(s.pid, signal.SIGHUP)
    s.wait_log(r"reload: done", since=mark, timeout=30)
    second = s.ready_pids(since=mark)
    assert len(second) == 2 and not set(second) & set(first), (first, second)
    wait_until(lambda: not any(pid_alive(p) for p in first), 30, f"old workers {first} gone")
    for pid in second:
        assert _is_worker_of(cmdline(pid), sup), cmdline(pid)
    d = fetch_json(s)
    assert d["pid"] in second and d["version"] == "v2"
    assert_the_venvs(d, onlyhere)

    # SIGTERM: everything exits, 0
    assert s.stop(timeout=30) == 0
    wait_until(lambda: not any(pid_alive(p) for p in second), 15, "workers gone after SIGTERM")
    assert "Traceback" not in s.log()


def test_sigint_stops_a_single_process_console_script_gracefully():
    s = Server("echo_app").start()
    try:
        assert cmdline(s.proc.pid)[:2] == [SHEBANG_PYTHON, str(SCRIPT)]
        h = s.http()
        h.request("GET", "/before")
        assert h.getresponse().status == 200
        h.close()
        s.proc.send_signal(signal.SIGINT)
        assert s.proc.wait(30) == 0, s.log()
        s.stop()  # drains the log
        assert "KeyboardInterrupt" not in s.log() and "Traceback" not in s.log(), s.log()
        assert "stopped cleanly" in s.log(), s.log()
    finally:
        s.kill()


# ---- --venv ------------------------------------------------------------------------------

def test_another_venv_is_refused_with_one_line(tmp_path):
    other = tmp_path / "other"
    subprocess.run([base_python(), "-m", "venv", "--without-pip", str(other)], check=True,
                   timeout=120)
    rc, err = run_cli(["serve", "echo_app", "--venv", str(other), "--bind", "127.0.0.1:0",
                       "--chdir", str(APPS_DIR)])
    assert rc == 2, err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith(f"wsgi-gateway: error: --venv {other}: "), err
    assert str(VENV) in lines[0], err


def test_the_running_venv_is_accepted(venv_app, onlyhere):
    root, _ = venv_app
    s = Server("venvapp", args=["--venv", f"{VENV}/"], chdir=root).start()
    try:
        assert_the_venvs(fetch_json(s), onlyhere)
        assert s.stop() == 0
    finally:
        s.kill()


# ---- CGI ---------------------------------------------------------------------------------

EXPLOIT_QUERY = "--forwarded-allow-ips+0.0.0.0%2F0+--error-log+x.log%26"


@pytest.fixture(scope="module")
def lighttpd(tmp_path_factory, onlyhere):
    """lighttpd running: the console script via the README's wrapper, the console script
    itself (a link in cgi-bin, app from the environment), and `python -m wsgi_gateway cgi`."""
    if not lighttpd_available():
        pytest.fail("lighttpd is required (tests/run.sh installs it)")
    root = tmp_path_factory.mktemp("cgi-venvapp")
    (root / "venvapp.py").write_text(VENV_APP.format(version="cgi"))
    env = {"WSGI_GATEWAY_APP": "venvapp", "WSGI_GATEWAY_CHDIR": str(root),
           "PYTHONDONTWRITEBYTECODE": "1"}
    setenv = ", ".join(f"{json.dumps(k)} => {json.dumps(v)}" for k, v in env.items())
    h = CgiHost(tmp_path_factory.mktemp("cgi-wheel"),
                extra_conf='server.modules += ( "mod_setenv" )\n'
                           f"setenv.add-environment = ( {setenv} )")
    h.launches = {
        "wrapper": h.add_script("wrapper", "venvapp", ["--chdir", str(root)]),
        "itself": h.add_link("gw"),
        "python-m": h.add_file("pym", f"#!/bin/sh\nexec {VENV}/bin/python -m wsgi_gateway cgi "
                                      f"venvapp --chdir {root}\n"),
    }
    h.start()
    yield h
    h.stop()


def _cgi_get(host, path, headers=None):
    import http.client
    c = http.client.HTTPConnection(host.host, host.port, timeout=30)
    try:
        c.request("GET", path, headers={"Connection": "close", **(headers or {})})
        r = c.getresponse()
        return r.status, r.read()
    finally:
        c.close()


@pytest.mark.parametrize("launch", ["wrapper", "itself", "python-m"])
def test_cgi_under_lighttpd(lighttpd, launch, onlyhere):
    before = set(os.listdir(lighttpd.cgi_dir))
    status, body = _cgi_get(lighttpd, f"{lighttpd.launches[launch]}/x?{EXPLOIT_QUERY}",
                            {"X-Forwarded-User": "mallory", "X-Forwarded-For": "203.0.113.9"})
    assert status == 200, (body[:2000], lighttpd.error_log()[-3000:])
    d = json.loads(body)
    assert d["prefix"] == str(VENV) and d["marker"] == onlyhere
    assert d["query"] == EXPLOIT_QUERY
    # nothing of the query became an option: no --forwarded-allow-ips, no --error-log file
    assert d["remote_addr"] == "127.0.0.1" and d["forwarded_user"] is None, d
    assert set(os.listdir(lighttpd.cgi_dir)) == before


def test_cgi_the_hosts_words_never_become_options(tmp_path, onlyhere):
    """Apache's mod_cgi gives a query without `=` as argv: the console script, run by the host
    as the script itself, takes none of those words as options."""
    root = tmp_path / "app"
    root.mkdir()
    (root / "venvapp.py").write_text(VENV_APP.format(version="cgi"))
    files = CgiHost(tmp_path / "host")
    files.add_link("gw")
    gw = files.cgi_dir / "gw"
    meta = {"GATEWAY_INTERFACE": "CGI/1.1", "REQUEST_METHOD": "GET", "SCRIPT_NAME": "/cgi-bin/gw",
            "SCRIPT_FILENAME": str(gw), "PATH_INFO": "/x", "QUERY_STRING": EXPLOIT_QUERY,
            "SERVER_NAME": "cgi.example", "SERVER_PORT": "8080", "SERVER_PROTOCOL": "HTTP/1.1",
            "REMOTE_ADDR": "192.0.2.7", "HTTP_X_FORWARDED_FOR": "203.0.113.9",
            "HTTP_X_FORWARDED_USER": "mallory", "WSGI_GATEWAY_APP": "venvapp",
            "WSGI_GATEWAY_CHDIR": str(root), "PYTHONDONTWRITEBYTECODE": "1"}
    words = apache_search_words(EXPLOIT_QUERY)
    p = subprocess.run([str(gw), *words], env=meta, capture_output=True, timeout=60,
                       cwd=files.cgi_dir)
    head, _, body = p.stdout.partition(b"\r\n\r\n")
    assert p.returncode == 0 and head.startswith(b"Status: 200 "), p.stderr.decode()
    d = json.loads(body)
    assert d["argv0"] == str(gw)
    assert (d["remote_addr"], d["forwarded_user"]) == ("192.0.2.7", None), d
    assert sorted(os.listdir(files.cgi_dir)) == ["gw"]


# ---- the wheel and the sdist ----------------------------------------------------------------

def _artifact(env: str, pattern: str) -> Path:
    given = os.environ.get(env)
    if given:
        return Path(given)
    found = sorted(WHEEL_DIR.glob(pattern))
    assert len(found) == 1, f"set {env}: {WHEEL_DIR}/{pattern} gives {found}"
    return found[0]


@pytest.fixture(scope="module")
def wheel():
    tag = venv_python("import sys; print(f'cp{sys.version_info[0]}{sys.version_info[1]}')")
    return _artifact("WSGI_GATEWAY_WHEEL", f"wsgi_gateway-*-{tag}-{tag}-manylinux*_x86_64.whl")


@pytest.fixture(scope="module")
def wheel_so(wheel, tmp_path_factory):
    """The extension module from the wheel file, and the one pip installed in the venv."""
    with zipfile.ZipFile(wheel) as z:
        names = [n for n in z.namelist() if re.fullmatch(r"wsgi_gateway/_core\..*\.so", n)]
        assert len(names) == 1, z.namelist()
        out = tmp_path_factory.mktemp("wheel-so") / Path(names[0]).name
        out.write_bytes(z.read(names[0]))
    installed = Path(venv_python("import wsgi_gateway._core as c; print(c.__file__)"))
    return out, installed


def _glibc_floor(tag: str) -> tuple[int, int]:
    m = re.search(r"manylinux_(\d+)_(\d+)_x86_64", tag)
    if m:
        return int(m.group(1)), int(m.group(2))
    legacy = {"manylinux2014_x86_64": (2, 17), "manylinux2010_x86_64": (2, 12),
              "manylinux1_x86_64": (2, 5)}
    assert tag in legacy, tag
    return legacy[tag]


def test_wheel_tag_is_manylinux_2_28_or_older_and_is_what_the_venv_has(wheel, wheel_so):
    py = venv_python("import sys; print(f'cp{sys.version_info[0]}{sys.version_info[1]}')")
    m = re.fullmatch(r"wsgi_gateway-([^-]+)-(cp\d+)-(cp\d+)-(.+)\.whl", wheel.name)
    assert m, wheel.name
    _, interp, abi, platform = m.groups()
    assert (interp, abi) == (py, py), "one wheel per CPython version, no abi3"
    assert _glibc_floor(platform) <= (2, 28), platform
    with zipfile.ZipFile(wheel) as z:
        meta = z.read(next(n for n in z.namelist() if n.endswith(".dist-info/WHEEL"))).decode()
    assert f"Tag: {py}-{py}-{platform}" in meta.splitlines(), meta
    assert "Root-Is-Purelib: false" in meta
    from_wheel, installed = wheel_so
    assert hashlib.sha256(from_wheel.read_bytes()).digest() == \
        hashlib.sha256(installed.read_bytes()).digest(), "the venv holds another build"


def test_wheel_elf_needs_no_libpython_no_rpath_and_no_glibc_after_2_28(wheel, wheel_so):
    so, _ = wheel_so
    dyn = subprocess.run(["objdump", "-p", str(so)], capture_output=True, text=True,
                         timeout=60, check=True).stdout
    needed = set(re.findall(r"^\s*NEEDED\s+(\S+)", dyn, re.M))
    assert needed and "libc.so.6" in needed, dyn
    assert not [n for n in needed if "python" in n], needed
    assert needed <= SYSTEM_LIBS, needed - SYSTEM_LIBS
    assert not re.search(r"^\s*(RPATH|RUNPATH)\s", dyn, re.M), dyn
    syms = subprocess.run(["objdump", "-T", str(so)], capture_output=True, text=True,
                          timeout=60, check=True).stdout
    versions = {tuple(int(x) for x in v.split(".")) for v in re.findall(r"GLIBC_(\d+(?:\.\d+)+)",
                                                                       syms)}
    assert versions, "no versioned glibc symbols found: objdump output not understood"
    floor = min((2, 28), _glibc_floor(re.search(r"-(manylinux[^.]+)\.whl$", wheel.name).group(1)))
    assert max(versions) <= floor, f"newest GLIBC_{max(versions)} > {floor} (tag, or 2.28)"
    # Python's own symbols stay undefined: the process that loads the module has them.
    assert re.search(r"\*UND\*.*\sPyModule_\w+$", syms, re.M), "no undefined Py* symbol"


def _forbidden_paths() -> set[str]:
    """Paths of the build machine no wheel may carry: the interpreters involved (the
    venv's base, pytest's, and their prefixes) and the checkout."""
    paths = {base_python(), os.path.realpath(sys.executable), sys.base_prefix, sys.prefix,
             venv_python("import sys; print(sys.base_prefix)"), str(REPO)}
    return {p for p in paths if p and p != "/"}


def test_wheel_bakes_in_no_build_machine_path(wheel_so):
    so, _ = wheel_so
    text = subprocess.run(["strings", "-n", "6", str(so)], capture_output=True,
                          timeout=60, check=True).stdout
    assert len(text) > 10000
    for path in _forbidden_paths():
        assert path.encode() not in text, f"{path} is inside the wheel's extension module"


@pytest.fixture(scope="module")
def sdist():
    return _artifact("WSGI_GATEWAY_SDIST", "wsgi_gateway-*.tar.gz")


def test_sdist_holds_the_crate_the_lock_file_the_package_and_the_readme(sdist, wheel):
    with tarfile.open(sdist) as t:
        names = {n.split("/", 1)[1] for n in t.getnames() if "/" in n}
        root = t.getnames()[0].split("/", 1)[0]

        def read(name):
            return t.extractfile(f"{root}/{name}").read().decode()
        for need in ("pyproject.toml", "PKG-INFO", "README.md", "Cargo.toml", "Cargo.lock",
                     "gateway/Cargo.toml", "gateway/build.rs", "gateway/src/lib.rs",
                     "gateway/src/python/module.rs", "gateway/python/welcome.py",
                     "python/wsgi_gateway/__init__.py", "python/wsgi_gateway/__main__.py"):
            assert need in names, f"{need} missing from {sdist.name}"
        assert not [n for n in names if n.startswith(("target/", "tests/", "fuzz/", "bench/",
                                                      ".venv/"))], sorted(names)
        assert read("README.md") == (REPO / "README.md").read_text()
        # maturin rewrote `readme = "../README.md"` for the sdist's layout, and the workspace
        # to the one member it carries
        assert re.search(r'^readme = "README.md"$', read("pyproject.toml"), re.M)
        assert re.search(r'^members = \["gateway"\]$', read("Cargo.toml"), re.M)
        assert read("Cargo.lock") == (REPO / "Cargo.lock").read_text()
        pkg_info = read("PKG-INFO")
    first = (REPO / "README.md").read_text().splitlines()[0]
    assert first in pkg_info and "Description-Content-Type: text/markdown" in pkg_info
    # the wheel's metadata has the same long description
    with zipfile.ZipFile(wheel) as z:
        meta = z.read(next(n for n in z.namelist()
                           if n.endswith(".dist-info/METADATA"))).decode()
    assert first in meta and "Description-Content-Type: text/markdown" in meta
    assert "License-Expression: MIT OR Apache-2.0" in meta


@pytest.mark.timeout(900)
def test_sdist_builds_installs_and_serves(sdist, tmp_path):
    """`pip install <sdist>` into a new venv compiles the crate (cargo, the dev profile to
    keep CI short: MATURIN_PEP517_ARGS) and gives a working console script."""
    if not shutil.which("cargo"):
        pytest.fail("cargo is required to build the sdist")
    venv = tmp_path / "sdist-venv"
    subprocess.run([base_python(), "-m", "venv", str(venv)], check=True, timeout=120)
    constraints = tmp_path / "constraints.txt"
    constraints.write_text(MATURIN_PIN + "\n")
    env = {**os.environ, "PIP_CONSTRAINT": str(constraints),
           "MATURIN_PEP517_ARGS": "--profile dev",
           # outside pip's temporary copy, so a re-run compiles only what changed
           "CARGO_TARGET_DIR": str(REPO / "target" / "sdist-build")}
    env.pop("WSGI_GATEWAY_BIN", None)
    t0 = time.monotonic()
    p = subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install",
                        "--disable-pip-version-check", "--no-cache-dir", str(sdist)],
                       capture_output=True, text=True, timeout=840, env=env)
    assert p.returncode == 0, (p.stdout + p.stderr)[-6000:]
    print(f"pip install {sdist.name}: {time.monotonic() - t0:.0f} s")
    built = re.search(r"filename=(wsgi_gateway-\S+\.whl)", p.stdout)
    assert built and "-linux_x86_64.whl" in built.group(1), p.stdout[-3000:]
    script = venv / "bin" / "wsgi-gateway"

    class FromSdist(Server):
        def command(self):
            return [str(script), *super().command()[1:]]

    s = FromSdist("echo_app").start()
    try:
        h = s.http()
        h.request("GET", "/from-sdist?x=1")
        r = h.getresponse()
        env_seen = json.loads(r.read())
        h.close()
        assert r.status == 200
        assert env_seen["PATH_INFO"] == "/from-sdist" and env_seen["QUERY_STRING"] == "x=1"
        assert s.stop() == 0
    finally:
        s.kill()
    so = next((venv / "lib").glob("python3*/site-packages/wsgi_gateway/_core.*.so"))
    dyn = subprocess.run(["objdump", "-p", str(so)], capture_output=True, text=True,
                         timeout=60, check=True).stdout
    assert not [n for n in re.findall(r"NEEDED\s+(\S+)", dyn) if "python" in n], dyn
    assert not re.search(r"^\s*(RPATH|RUNPATH)\s", dyn, re.M), dyn


@pytest.mark.timeout(600)
def test_a_free_threaded_target_is_refused_at_build_time(tmp_path):
    """pyo3 reads the target from PYO3_CONFIG_FILE: a 3.14t one stops the build in
    gateway/build.rs with one line (not a module that turns the GIL back on at import)."""
    if not shutil.which("cargo"):
        pytest.fail("cargo is required")
    cfg = tmp_path / "pyo3-free-threaded.cfg"
    cfg.write_text("implementation=CPython\nversion=3.14\nshared=true\n"
                   "build_flags=Py_GIL_DISABLED\nsuppress_build_script_link_lines=false\n")
    env = {**os.environ, "PYO3_CONFIG_FILE": str(cfg),
           "CARGO_TARGET_DIR": str(REPO / "target" / "free-threaded-check")}
    p = subprocess.run(["cargo", "check", "-p", "wsgi-gateway", "--lib"], cwd=REPO, env=env,
                       capture_output=True, text=True, timeout=560)
    assert p.returncode != 0, p.stderr[-3000:]
    lines = [ln for ln in p.stderr.splitlines() if "free-threaded" in ln]
    assert len(lines) == 1, p.stderr[-3000:]
    assert "wsgi-gateway does not support free-threaded Python (3.14t" in lines[0], lines
