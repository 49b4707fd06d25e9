"""The ISAPI DLLs as IIS gets them: cross-built for Windows (64- and 32-bit) with the
mingw-w64 toolchain, then their PE export and import tables read with objdump. IIS finds the
entry points with GetProcAddress by their plain names, so they must be undecorated (no
`_GetExtensionVersion@4` from stdcall on 32-bit). The loader (wsgi_gateway_isapi.dll, IIS's
scriptProcessor) exports exactly the three ISAPI functions and imports no Python; the core
(wsgi_gateway.dll, the same library as the wheel's _core .pyd) exports them too, beside
PyInit__core and WsgiGatewayIsapiConfigure, and imports the python3X.dll it was built for.

Needs the Rust targets (rustup) and the mingw-w64 binutils; tests/run.sh installs both and sets
WSGI_GATEWAY_REQUIRE_WINDOWS_TARGETS, so in the test command a missing piece fails instead of
skipping.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys

import pytest

from gwprocess import REPO

TARGETS = {
    "x86_64-pc-windows-gnu": ("x86_64-w64-mingw32-objdump", "pei-x86-64"),
    "i686-pc-windows-gnu": ("i686-w64-mingw32-objdump", "pei-i386"),
}
ISAPI = ["GetExtensionVersion", "HttpExtensionProc", "TerminateExtension"]
# objdump lists export names sorted.
CORE_EXPORTS = sorted([*ISAPI, "PyInit__core", "WsgiGatewayIsapiConfigure"])


def _installed_targets() -> set[str]:
    try:
        out = subprocess.run(["rustup", "target", "list", "--installed"], capture_output=True,
                             text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return set()
    return set(out.stdout.split())


def _need(ok: bool, what: str) -> None:
    if ok:
        return
    if os.environ.get("WSGI_GATEWAY_REQUIRE_WINDOWS_TARGETS"):
        pytest.fail(f"{what} (WSGI_GATEWAY_REQUIRE_WINDOWS_TARGETS is set)")
    pytest.skip(what)


def exports(objdump_text: str) -> list[str]:
    """Names from objdump's `[Ordinal/Name Pointer] Table` section."""
    m = re.search(r"\[Ordinal/Name Pointer\] Table\n((?:\s+\[\s*\d+\] \S+\n)+)", objdump_text)
    assert m, objdump_text[:2000]
    return re.findall(r"\] (\S+)", m.group(1))


def imports(objdump_text: str) -> list[str]:
    return re.findall(r"DLL Name: (\S+)", objdump_text)


def python_imports(objdump_text: str) -> list[str]:
    return [d for d in imports(objdump_text) if re.fullmatch(r"(?i)python3\d*\.dll", d)]


def need_target(target: str) -> str:
    """The target's objdump, once the target and the mingw-w64 binutils are known present."""
    objdump = TARGETS[target][0]
    _need(target in _installed_targets(), f"Rust target {target} is not installed")
    _need(shutil.which(objdump) is not None, f"{objdump} not found (Debian: mingw-w64)")
    return objdump


def objdump_p(objdump: str, dll) -> str:
    dump = subprocess.run([objdump, "-p", str(dll)], capture_output=True, text=True, timeout=120)
    assert dump.returncode == 0, dump.stderr
    return dump.stdout


@pytest.mark.timeout(1200)
@pytest.mark.parametrize("target", sorted(TARGETS))
def test_windows_dll_exports_the_isapi_entry_points(target):
    objdump = need_target(target)
    env = dict(os.environ)
    env["PYO3_CROSS_PYTHON_VERSION"] = f"{sys.version_info.major}.{sys.version_info.minor}"
    build = subprocess.run(
        ["cargo", "build", "--lib", "-p", "wsgi-gateway", "--target", target],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=1100)
    assert build.returncode == 0, build.stderr[-6000:]
    dll = REPO / "target" / target / "debug" / "wsgi_gateway.dll"
    assert dll.is_file(), f"{dll} was not built"

    dump = objdump_p(objdump, dll)
    assert f"file format {TARGETS[target][1]}" in dump
    assert exports(dump) == CORE_EXPORTS
    # The Python it will need at run time in w3wp.exe: the same minor version as the build.
    python_dll = f"python{sys.version_info.major}{sys.version_info.minor}.dll"
    assert python_imports(dump) == [python_dll], imports(dump)


@pytest.mark.timeout(600)
@pytest.mark.parametrize("target", sorted(TARGETS))
def test_loader_exports_the_isapi_entry_points_and_imports_no_python(target):
    objdump = need_target(target)
    build = subprocess.run(
        ["cargo", "build", "-p", "wsgi-gateway-isapi-loader", "--target", target],
        cwd=REPO, capture_output=True, text=True, timeout=500)
    assert build.returncode == 0, build.stderr[-6000:]
    dll = REPO / "target" / target / "debug" / "wsgi_gateway_isapi.dll"
    dump = objdump_p(objdump, dll)
    assert f"file format {TARGETS[target][1]}" in dump
    assert exports(dump) == ISAPI
    assert python_imports(dump) == [], imports(dump)
    assert "KERNEL32.dll" in imports(dump)
