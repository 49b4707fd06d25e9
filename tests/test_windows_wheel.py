"""The Windows wheel (gateway/build-windows-wheel.sh): cross-built once per session for
CPython 3.11 x86_64, or the file named by WSGI_GATEWAY_WINDOWS_WHEEL. pip installs it on the IIS
machine; `wsgi-gateway install-iis` then takes the core and the ISAPI loader from it. Checked
here: its file list and console script, the core's PE exports (ISAPI + PyInit__core + the
loader's WsgiGatewayIsapiConfigure) and its python311.dll import, and that the loader exports
exactly the ISAPI entry points and imports no Python DLL.

Needs what test_isapi_windows.py needs, plus maturin (tests/run.sh pins it in the test venv).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from gwprocess import REPO
from test_isapi_windows import ISAPI, CORE_EXPORTS, _need, exports, imports, need_target, \
    objdump_p, python_imports

TARGET = "x86_64-pc-windows-gnu"
VERSION = "3.11"
TAG = "cp311"
CORE = f"wsgi_gateway/_core.{TAG}-win_amd64.pyd"
LOADER = "wsgi_gateway/isapi/wsgi_gateway_isapi.dll"


def _maturin() -> str | None:
    beside = Path(sys.executable).parent / "maturin"
    return str(beside) if beside.is_file() else shutil.which("maturin")


@pytest.fixture(scope="session")
def windows_wheel() -> Path:
    given = os.environ.get("WSGI_GATEWAY_WINDOWS_WHEEL")
    if given:
        return Path(given)
    need_target(TARGET)
    maturin = _maturin()
    _need(maturin is not None, "maturin not found (pip install maturin==1.16.0)")
    # cargo rebuilds only what changed, so a wheel left in target/wheels is never stale.
    build = subprocess.run([str(REPO / "gateway" / "build-windows-wheel.sh"), VERSION],
                           env={**os.environ, "MATURIN": maturin}, capture_output=True,
                           text=True, timeout=1700)
    assert build.returncode == 0, (build.stdout[-3000:], build.stderr[-6000:])
    wheels = sorted((REPO / "target" / "wheels").glob(f"wsgi_gateway-*-{TAG}-{TAG}-win_amd64.whl"))
    assert len(wheels) == 1, wheels
    assert not (REPO / "gateway" / "python" / "wsgi_gateway" / "isapi").exists(), \
        "the staged loader is removed, so no other wheel takes it"
    return wheels[0]


@pytest.fixture(scope="session")
def unpacked(windows_wheel, tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("windows-wheel")
    with zipfile.ZipFile(windows_wheel) as z:
        z.extractall(d)
    return d


@pytest.mark.timeout(1800)
def test_windows_wheel_holds_the_core_the_loader_and_the_package(windows_wheel):
    with zipfile.ZipFile(windows_wheel) as z:
        names = set(z.namelist())
        dist_info = {n.split("/")[0] for n in names if ".dist-info/" in n}
        assert len(dist_info) == 1, dist_info
        entry_points = z.read(f"{dist_info.pop()}/entry_points.txt").decode()
    assert {CORE, LOADER, "wsgi_gateway/__init__.py", "wsgi_gateway/__main__.py"} <= names, \
        sorted(names)
    assert not [n for n in names if n.endswith((".so", ".exe"))], sorted(names)
    lines = [ln.replace(" ", "") for ln in entry_points.splitlines()]
    assert "[console_scripts]" in lines and "wsgi-gateway=wsgi_gateway:main" in lines, \
        entry_points


@pytest.mark.timeout(1800)
def test_windows_wheel_core_is_the_isapi_core_for_python311(unpacked):
    dump = objdump_p(need_target(TARGET), unpacked / CORE)
    assert "file format pei-x86-64" in dump
    assert exports(dump) == CORE_EXPORTS
    assert python_imports(dump) == ["python311.dll"], imports(dump)


@pytest.mark.timeout(1800)
def test_windows_wheel_loader_imports_no_python(unpacked):
    dump = objdump_p(need_target(TARGET), unpacked / LOADER)
    assert "file format pei-x86-64" in dump
    assert exports(dump) == ISAPI
    assert python_imports(dump) == [], imports(dump)
