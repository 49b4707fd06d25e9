"""`wsgi-gateway install-iis`: the files it writes for IIS, read back the way IIS and the
ISAPI library would read them (XML, TOML, cmd), and its refusals. No IIS here: the appcmd
script is checked as text (quoting, the commands and their targets), not run."""

import re
import struct
import subprocess
import tomllib
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from gwhelpers import binary, clean_env

MACHINE = {"64": 0x8664, "32": 0x014C}

# The configuration keys the ISAPI library reads (contract-isapi.md, "Configuration").
LIBRARY_KEYS = {"app", "chdir", "pythonpath", "venv", "paste", "error-log", "log-level",
                "forwarded-allow-ips", "identity-header", "debug", "script-name",
                "header-underscores", "threads", "queue-size", "max-body-size",
                "graceful-timeout"}


def fake_dll(path: Path, bits="64", dll=True) -> Path:
    """A minimal PE image: MZ header, PE signature, COFF machine and characteristics."""
    image = bytearray(0x200)
    image[:2] = b"MZ"
    image[0x3C:0x40] = struct.pack("<I", 0x80)
    image[0x80:0x84] = b"PE\0\0"
    image[0x84:0x86] = struct.pack("<H", MACHINE[bits])
    image[0x96:0x98] = struct.pack("<H", 0x2022 if dll else 0x0022)
    image[0x100:0x110] = b"wsgi-gateway-dll"
    path.write_bytes(bytes(image))
    return path


def install(args, cwd, env=None):
    p = subprocess.run([binary(), "install-iis", *args], cwd=cwd, env=clean_env(env),
                       stdin=subprocess.DEVNULL, capture_output=True, timeout=30)
    return p.returncode, p.stdout.decode(), p.stderr.decode()


def ok(args, cwd, env=None):
    rc, out, err = install(args, cwd, env)
    assert rc == 0, f"rc={rc}\nstdout:\n{out}\nstderr:\n{err}"
    return out


def refused(args, cwd):
    rc, out, err = install(args, cwd)
    assert rc == 2, f"rc={rc}\nstdout:\n{out}\nstderr:\n{err}"
    lines = [ln for ln in err.splitlines() if ln.startswith("wsgi-gateway: error: ")]
    assert len(lines) == 1, err
    return lines[0]


@pytest.fixture
def work(tmp_path):
    """A working directory with a DLL, and an output directory whose name needs quoting."""
    fake_dll(tmp_path / "build.dll")
    return tmp_path, tmp_path / "Apps & Co" / "my app"


def handler(out: Path):
    tree = ET.parse(out / "web.config", ET.XMLParser(target=ET.TreeBuilder(insert_comments=True)))
    handlers = tree.getroot().find("system.webServer/handlers")
    assert handlers is not None
    return tree, handlers


@pytest.mark.parametrize("bits", ["64", "32"])
def test_web_config_maps_every_request_to_the_dll(work, bits):
    cwd, out = work
    fake_dll(cwd / "build.dll", bits)
    ok(["kallithea.wsgi:application", "--library", "build.dll", "--out", str(out),
        "--bitness", bits], cwd)
    tree, handlers = handler(out)
    children = [c for c in handlers if c.tag is not ET.Comment]
    assert [c.tag for c in children] == ["remove", "add"], "no <clear/>: inherited handlers stay"
    assert children[0].attrib == {"name": "wsgi-gateway"}
    assert children[1].attrib == {
        "name": "wsgi-gateway", "path": "*", "verb": "*", "modules": "IsapiModule",
        "scriptProcessor": str(out / "wsgi_gateway.dll"), "resourceType": "Unspecified",
        "requireAccess": "Execute", "preCondition": f"bitness{bits}",
    }
    filtering = tree.getroot().find("system.webServer/security/requestFiltering")
    assert filtering is not None and filtering.get("allowDoubleEscaping") == "true"
    security = tree.getroot().find("system.webServer/security")
    why = [c.text for c in security if c.tag is ET.Comment]
    assert any("allowDoubleEscaping" in t and "404.11" in t for t in why), why
    # The library reads the TOML beside itself: the DLL is installed next to it, unchanged.
    assert (out / "wsgi_gateway.dll").read_bytes() == (cwd / "build.dll").read_bytes()
    assert (out / "wsgi-gateway.toml").is_file()


def test_settings_hold_the_given_values_and_only_library_keys(work):
    cwd, out = work
    (cwd / "src").mkdir()
    venv = cwd / "venv"
    venv.mkdir()
    (venv / "pyvenv.cfg").write_text("home = /usr/bin\n")
    ok(["kallithea.wsgi:application", "--library", "build.dll", "--out", str(out),
        "--chdir", str(cwd / "src"), "--pythonpath", "/opt/lib & more",
        "--pythonpath", "rel/lib", "--venv", "venv", "--threads", "8"], cwd,
       env={"PYTHONHOME": "/nonexistent"})  # the interpreter never starts
    settings = tomllib.loads((out / "wsgi-gateway.toml").read_text())
    assert set(settings) <= LIBRARY_KEYS, set(settings) - LIBRARY_KEYS
    assert settings == {
        "app": "kallithea.wsgi:application",
        "chdir": str(cwd / "src"),
        "pythonpath": ["/opt/lib & more", str(cwd / "rel" / "lib")],
        "venv": str(venv),
        "error-log": str(out / "wsgi-gateway.log"),
        "threads": 8,
    }
    assert (out / "wsgi-gateway.log").is_file(), "the script grants the pool access to it"


def test_paste_ini_with_a_name(work):
    cwd, out = work
    (cwd / "my.ini").write_text("[app:main]\n")
    stdout = ok(["--paste", "my.ini#main", "--library", "build.dll", "--out", str(out)], cwd)
    settings = tomllib.loads((out / "wsgi-gateway.toml").read_text())
    assert settings["paste"] == f"{cwd / 'my.ini'}#main"
    assert "app" not in settings
    assert "install-iis.cmd" in stdout and "--windows-auth" in stdout


def script_text(path: Path) -> str:
    return path.read_bytes().decode()  # as written: read_text() would hide the line ends


def unquoted(line: str) -> str:
    """The parts of a cmd line outside double quotes (where cmd gives & | < > meaning)."""
    assert line.count('"') % 2 == 0, f"unbalanced quotes: {line}"
    return "".join(line.split('"')[0::2])


def commands(script: str):
    return [ln for ln in script.split("\r\n") if ln and not ln.startswith(("rem ", "echo "))]


def check_cmd_syntax(script: str):
    assert "\n" not in script.replace("\r\n", ""), "cmd needs CRLF line ends"
    for line in commands(script):
        outside = unquoted(line)
        # Outside quotes only the script's own operators may appear.
        stripped = re.sub(r"&&|\|\||>nul|2>&1|1>&2", "", outside)
        assert not re.search(r"[&|<>^%]", stripped.replace("%APPCMD%", "")), line


def test_install_script_targets_and_quoting(work):
    cwd, out = work
    ok(["app:application", "--library", "build.dll", "--out", str(out), "--site",
        "Intranet & Co", "--virtualdir", "/scm/kallithea/", "--bitness", "64",
        "--windows-auth"], cwd)
    script = script_text(out / "install-iis.cmd")
    check_cmd_syntax(script)
    dll = out / "wsgi_gateway.dll"
    pool = '"wsgi-gateway Intranet _ Co-scm-kallithea"'
    lines = commands(script)

    def line_with(*parts):
        found = [ln for ln in lines if all(p in ln for p in parts)]
        assert found, f"no line with {parts} in:\n{script}"
        return found[0]

    line_with("add apppool", f"/name:{pool}")
    line_with("set apppool", pool, '/managedRuntimeVersion:""', "/enable32BitAppOnWin64:false")
    line_with("add app", '/site.name:"Intranet & Co"', '/path:"/scm/kallithea"',
              f'/physicalPath:"{out}"')
    line_with('set vdir "Intranet & Co/scm/kallithea/"', f'/physicalPath:"{out}"')
    line_with('set app "Intranet & Co/scm/kallithea"', f"/applicationPool:{pool}")
    restriction = line_with("isapiCgiRestriction", "/+")
    assert f"/+\"[path='{dll}',allowed='True',description='wsgi-gateway']\"" in restriction
    assert "/commit:apphost" in restriction
    line_with('unlock config "Intranet & Co/scm/kallithea"', "/section:system.webServer/handlers")
    line_with('"Intranet & Co/scm/kallithea"', '/accessPolicy:"Read, Script, Execute"')
    line_with('"Intranet & Co/scm/kallithea"', "windowsAuthentication", "/enabled:true",
              "/commit:apphost")
    line_with('"Intranet & Co/scm/kallithea"', "anonymousAuthentication", "/enabled:false",
              "/commit:apphost")
    line_with("icacls", f'"{out}"', "/grant",
              '"IIS AppPool\\wsgi-gateway Intranet _ Co-scm-kallithea:(OI)(CI)RX"')

    undo = script_text(out / "uninstall-iis.cmd")
    check_cmd_syntax(undo)
    undo_lines = commands(undo)
    assert any('delete app "Intranet & Co/scm/kallithea"' in ln for ln in undo_lines)
    assert any(f"/-\"[path='{dll}']\"" in ln and "isapiCgiRestriction" in ln
               for ln in undo_lines)
    assert any(f"delete apppool {pool}" in ln for ln in undo_lines)
    assert any("windowsAuthentication" in ln and "clear config" in ln for ln in undo_lines)


def test_site_root_and_32_bit_pool(work):
    cwd, out = work
    fake_dll(cwd / "build.dll", "32")
    ok(["app", "--library", "build.dll", "--out", str(out), "--bitness", "32",
        "--app-pool", "Kallithea Pool"], cwd)
    script = script_text(out / "install-iis.cmd")
    check_cmd_syntax(script)
    lines = commands(script)
    assert not any("add app " in ln for ln in lines), "the site root is never created"
    assert any(f'set vdir "Default Web Site/" /physicalPath:"{out}"' in ln for ln in lines)
    assert any('set app "Default Web Site/" /applicationPool:"Kallithea Pool"' in ln
               for ln in lines)
    assert any('unlock config "Default Web Site" ' in ln for ln in lines)
    assert any("/enable32BitAppOnWin64:true" in ln for ln in lines)
    assert not any("windowsAuthentication" in ln for ln in lines)
    assert handler(out)[1].find("add").get("preCondition") == "bitness32"
    undo = commands(script_text(out / "uninstall-iis.cmd"))
    assert not any("delete app " in ln for ln in undo), "the site root is never deleted"
    assert any('delete apppool "Kallithea Pool"' in ln for ln in undo)


def test_existing_files_are_kept_unless_forced(work):
    cwd, out = work
    ok(["app", "--library", "build.dll", "--out", str(out)], cwd)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    msg = refused(["app", "--library", "build.dll", "--out", str(out), "--threads", "4"], cwd)
    assert str(out / "web.config") in msg and "--force" in msg, msg
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    (out / "wsgi-gateway.log").write_text("kept\n")
    ok(["app", "--library", "build.dll", "--out", str(out), "--threads", "4", "--force"], cwd)
    assert tomllib.loads((out / "wsgi-gateway.toml").read_text())["threads"] == 4
    assert (out / "wsgi-gateway.log").read_text() == "kept\n", "an existing log is not truncated"


def test_reinstalling_the_dll_in_place_keeps_it(work):
    cwd, out = work
    ok(["app", "--library", "build.dll", "--out", str(out)], cwd)
    image = (out / "wsgi_gateway.dll").read_bytes()
    ok(["app", "--library", str(out / "wsgi_gateway.dll"), "--out", str(out), "--force"], cwd)
    assert (out / "wsgi_gateway.dll").read_bytes() == image


@pytest.mark.parametrize("args,needles", [
    ([], ["no app", "--paste"]),
    (["app", "--paste", "x.ini"], ["not both"]),
    (["app", "--virtualdir", "kallithea"], ["--virtualdir", "must start with '/'"]),
    (["app", "--virtualdir", "/a/../b"], ["--virtualdir", ".."]),
    (["app", "--library", "missing.dll"], ["--library", "missing.dll", "no such file"]),
    (["app", "--library", "dll32.dll"], ["--library", "32-bit DLL", "--bitness is 64"]),
    (["app", "--library", "prog.exe"], ["--library", "not a DLL"]),
    (["app", "--library", "notes.txt"], ["--library", "not a Windows DLL"]),
    (["app:1x"], ["APP", "module[:callable]"]),
    (["--paste", "nowhere.ini"], ["--paste", "no such file"]),
    (["app", "--venv", "plain"], ["--venv", "pyvenv.cfg"]),
    (["app", "--chdir", "nowhere"], ["--chdir", "not a directory"]),
    (["app", "--app-pool", "a:b"], ["--app-pool", "':'"]),
    (["app", "--site", "a/b"], ["--site"]),
    (["app", "--out", "100% done"], ["--out", "'%'"]),
    (["app", "--bitness", "16"], ["--bitness"]),
])
def test_bad_input_is_refused_naming_the_option(work, args, needles):
    cwd, _ = work
    fake_dll(cwd / "dll32.dll", "32")
    fake_dll(cwd / "prog.exe", dll=False)
    (cwd / "notes.txt").write_text("not a dll\n")
    (cwd / "plain").mkdir()
    if "--library" not in args:
        args = [*args, "--library", "build.dll"]
    msg = refused([*args, "--out", str(cwd / "out")] if "--out" not in args else args, cwd)
    for needle in needles:
        assert needle in msg, msg
    assert not (cwd / "out" / "web.config").exists(), "nothing is written on a refusal"
