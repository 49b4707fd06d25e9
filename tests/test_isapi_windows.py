"""The ISAPI library as IIS gets it: cross-built for Windows (64- and 32-bit) with the
mingw-w64 toolchain, then its PE export table read with objdump. IIS finds the entry points
with GetProcAddress by their plain names, so the DLL must export exactly the three ISAPI
functions, undecorated (no `_GetExtensionVersion@4` from stdcall on 32-bit).

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

from gwhelpers import REPO

TARGETS = {
    "x86_64-pc-windows-gnu": ("x86_64-w64-mingw32-objdump", "pei-x86-64"),
    "i686-pc-windows-gnu": ("i686-w64-mingw32-objdump", "pei-i386"),
}
EXPORTS = ["GetExtensionVersion", "HttpExtensionProc", "TerminateExtension"]


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


def _exports(objdump_text: str) -> list[str]:
    """Names from objdump's `[Ordinal/Name Pointer] Table` section."""
    m = re.search(r"\[Ordinal/Name Pointer\] Table\n((?:\s+\[\s*\d+\] \S+\n)+)", objdump_text)
    assert m, objdump_text[:2000]
    return re.findall(r"\] (\S+)", m.group(1))


@pytest.mark.timeout(1200)
@pytest.mark.parametrize("target", sorted(TARGETS))
def test_windows_dll_exports_the_isapi_entry_points(target):
    objdump, pe_format = TARGETS[target]
    _need(target in _installed_targets(), f"Rust target {target} is not installed")
    _need(shutil.which(objdump) is not None, f"{objdump} not found (Debian: mingw-w64)")
    env = dict(os.environ)
    env["PYO3_CROSS_PYTHON_VERSION"] = f"{sys.version_info.major}.{sys.version_info.minor}"
    build = subprocess.run(
        ["cargo", "build", "--lib", "-p", "wsgi-gateway", "--target", target],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=1100)
    assert build.returncode == 0, build.stderr[-6000:]
    dll = REPO / "target" / target / "debug" / "wsgi_gateway.dll"
    assert dll.is_file(), f"{dll} was not built"

    dump = subprocess.run([objdump, "-p", str(dll)], capture_output=True, text=True, timeout=120)
    assert dump.returncode == 0, dump.stderr
    assert f"file format {pe_format}" in dump.stdout
    assert _exports(dump.stdout) == EXPORTS
    # The Python it will need at run time in w3wp.exe: the same minor version as the build.
    python_dll = f"python{sys.version_info.major}{sys.version_info.minor}.dll"
    imported = re.findall(r"DLL Name: (\S+)", dump.stdout)
    assert python_dll in imported, imported
