"""`wsgi-gateway install-iis`: the files it writes for IIS, read back the way IIS, the ISAPI
loader and the core would read them (XML, TOML, cmd), and its refusals. No IIS here: the
files are written for a Windows machine with --for-windows (the paths they state are that
machine's, whatever runs the tests), and the appcmd script is checked as text (quoting, the
commands and their targets), not run. Golden files hold the whole install for a
Kallithea-like layout; WSGI_GATEWAY_UPDATE_GOLDEN=1 rewrites them (then read the diff)."""

import os
import re
import struct
import subprocess
import tomllib
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from gwprocess import binary, clean_env

MACHINE = {"64": 0x8664, "32": 0x014C}
GOLDEN = Path(__file__).parent / "golden" / "install-iis"
LOADER = "wsgi_gateway_isapi.dll"
WRITTEN = {"web.config", "wsgi-gateway.toml", "install-iis.cmd", "uninstall-iis.cmd", LOADER,
           "wsgi-gateway.log"}

# The configuration keys the ISAPI core accepts (gateway/src/isapi/config.rs); test_isapi.py
# starts the core with python-dll and core set.
LIBRARY_KEYS = {"app", "chdir", "pythonpath", "venv", "paste", "error-log", "log-level",
                "forwarded-allow-ips", "identity-header", "debug", "script-name",
                "header-underscores", "threads", "queue-size", "max-body-size",
                "graceful-timeout", "python-dll", "core"}

# The Kallithea machine: python.org Python 3.11, a venv, the app's directory.
KALLITHEA = [r"--paste", r"C:\srv\kallithea\my.ini", "--site", "Default Web Site",
             "--out", r"C:\srv\kallithea", "--venv", r"C:\srv\venv",
             "--base-python", r"C:\Program Files\Python311", "--python-version", "3.11"]


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
    assert len(lines) == 1 and err == lines[0] + "\n", err
    return lines[0]


@pytest.fixture
def work(tmp_path):
    """A working directory with a loader DLL, and the directory --for-windows writes into."""
    fake_dll(tmp_path / "loader.dll")
    return tmp_path, tmp_path / "for windows"


def for_windows(stage, *args, out=r"C:\srv\kallithea", library="loader.dll"):
    """The options that describe the Windows machine (Python 3.11, the venv) and the files."""
    return ["--for-windows", str(stage), "--out", out, "--base-python",
            r"C:\Program Files\Python311", "--python-version", "3.11", "--venv", r"C:\srv\venv",
            "--library", library, *args]


def parse_xml(path: Path):
    return ET.parse(path, ET.XMLParser(target=ET.TreeBuilder(insert_comments=True)))


def handler(stage: Path):
    tree = parse_xml(stage / "web.config")
    handlers = tree.getroot().find("system.webServer/handlers")
    assert handlers is not None
    return tree, handlers


def comments(element) -> str:
    return "\n".join(c.text for c in element if c.tag is ET.Comment)


# ---- the whole install, exactly ---------------------------------------------------------

def test_kallithea_install_matches_the_golden_files(work):
    cwd, stage = work
    stdout = ok([*KALLITHEA, "--for-windows", str(stage), "--library", "loader.dll"], cwd)
    assert {p.name for p in stage.iterdir()} == WRITTEN
    golden = GOLDEN / "kallithea"
    if os.environ.get("WSGI_GATEWAY_UPDATE_GOLDEN"):
        golden.mkdir(parents=True, exist_ok=True)
        for name in ("web.config", "wsgi-gateway.toml", "install-iis.cmd", "uninstall-iis.cmd"):
            (golden / name).write_bytes((stage / name).read_bytes())
        (golden / "stdout.txt").write_text(stdout.replace(str(stage), "<STAGE>"))
    for name in ("web.config", "wsgi-gateway.toml", "install-iis.cmd", "uninstall-iis.cmd"):
        assert (stage / name).read_bytes() == (golden / name).read_bytes(), name
    assert stdout.replace(str(stage), "<STAGE>") == (golden / "stdout.txt").read_text()
    assert (stage / LOADER).read_bytes() == (cwd / "loader.dll").read_bytes()
    assert (stage / "wsgi-gateway.log").read_bytes() == b""


def test_golden_web_config_is_xml_with_a_reason_for_each_choice():
    tree = parse_xml(GOLDEN / "kallithea" / "web.config")
    root = tree.getroot()
    add = root.find("system.webServer/handlers/add")
    assert add.attrib == {
        "name": "wsgi-gateway", "path": "*", "verb": "*", "modules": "IsapiModule",
        "scriptProcessor": rf"C:\srv\kallithea\{LOADER}", "resourceType": "Unspecified",
        "requireAccess": "Execute", "preCondition": "bitness64",
    }
    errors = root.find("system.webServer/httpErrors")
    assert errors.attrib == {"existingResponse": "PassThrough"}
    filtering = root.find("system.webServer/security/requestFiltering")
    assert filtering.get("allowDoubleEscaping") == "true"
    extensions = filtering.find("fileExtensions")
    assert extensions.get("allowUnlisted") == "true"
    assert [c.tag for c in extensions if c.tag is not ET.Comment] == ["clear"]
    hidden = filtering.find("hiddenSegments")
    assert [c.tag for c in hidden if c.tag is not ET.Comment] == ["clear"], \
        "web.config is not kept hidden: no URL reaches a file here"
    why = comments(root.find("system.webServer")) + comments(filtering) + \
        comments(root.find("system.webServer/security"))
    for reason in ["PassThrough", "404.7", "404.8", "web.config", "404.11"]:
        assert reason in why, (reason, why)


def test_golden_settings_are_toml_the_core_accepts():
    settings = tomllib.loads((GOLDEN / "kallithea" / "wsgi-gateway.toml").read_text())
    assert set(settings) <= LIBRARY_KEYS, set(settings) - LIBRARY_KEYS
    assert settings == {
        "paste": r"C:\srv\kallithea\my.ini",
        "venv": r"C:\srv\venv",
        "python-dll": r"C:\Program Files\Python311\python311.dll",
        "core": r"C:\srv\venv\Lib\site-packages\wsgi_gateway\_core.cp311-win_amd64.pyd",
        "error-log": r"C:\srv\kallithea\wsgi-gateway.log",
        "threads": 32,
    }


def test_golden_script_sets_up_the_pool_for_a_long_lived_python_app():
    script = script_text(GOLDEN / "kallithea" / "install-iis.cmd")
    check_cmd_syntax(script)
    lines = commands(script)
    pool = '"wsgi-gateway Default Web Site"'

    def line_with(*parts):
        found = [ln for ln in lines if all(p in ln for p in parts)]
        assert found, f"no line with {parts} in:\n{script}"
        return found[0]

    line_with("set apppool", pool, "/startMode:AlwaysRunning", "/processModel.idleTimeout:00:00:00")
    line_with('set app "Default Web Site/"', "/preloadEnabled:true")
    restriction = line_with("isapiCgiRestriction", "/+")
    assert rf"[path='C:\srv\kallithea\{LOADER}',allowed='True'" in restriction
    remarks = "\n".join(ln for ln in script.split("\r\n") if ln.startswith("rem "))
    for reason in ["AlwaysRunning", "idleTimeout 0", "Preload", "Rapid-Fail Protection",
                   "5 crashes", "WAS", "/text:state"]:
        assert reason in remarks, reason
    assert "PATH" not in script.replace("physicalPath", "")
    assert not any("%" in ln for ln in script.split("\r\n") if ln.startswith("rem ")), \
        "cmd expands % even in rem lines"
    undo = commands(script_text(GOLDEN / "kallithea" / "uninstall-iis.cmd"))
    assert any("/preloadEnabled:false" in ln for ln in undo)


def test_next_steps_grant_python_and_the_venv_and_never_edit_path(work):
    cwd, stage = work
    stdout = ok(for_windows(stage, "--paste", r"D:\conf\my.ini"), cwd)
    assert "PATH" not in stdout.replace("the system PATH", ""), stdout
    assert "Python need not be on the system PATH" in stdout
    who = "IIS AppPool\\wsgi-gateway Default Web Site:(OI)(CI)RX"
    for readable in [r"C:\Program Files\Python311", r"C:\srv\venv", r"D:\conf"]:
        assert f'icacls "{readable}" /grant "{who}"' in stdout, stdout
    assert rf"Copy these files to C:\srv\kallithea" in stdout


# ---- the files' contents for other layouts ----------------------------------------------

@pytest.mark.parametrize("bits", ["64", "32"])
def test_web_config_maps_every_request_to_the_loader(work, bits):
    cwd, stage = work
    fake_dll(cwd / "loader.dll", bits)
    ok(for_windows(stage, "kallithea.wsgi:application", "--bitness", bits,
                   out=r"\\files\apps\Apps & Co\my app"), cwd)
    tree, handlers = handler(stage)
    children = [c for c in handlers if c.tag is not ET.Comment]
    assert [c.tag for c in children] == ["remove", "add"], "no <clear/>: inherited handlers stay"
    assert children[0].attrib == {"name": "wsgi-gateway"}
    assert children[1].get("scriptProcessor") == rf"\\files\apps\Apps & Co\my app\{LOADER}"
    assert children[1].get("preCondition") == f"bitness{bits}"
    settings = tomllib.loads((stage / "wsgi-gateway.toml").read_text())
    platform = {"64": "win_amd64", "32": "win32"}[bits]
    assert settings["core"].endswith(rf"\wsgi_gateway\_core.cp311-{platform}.pyd")
    assert (stage / LOADER).read_bytes() == (cwd / "loader.dll").read_bytes()


def test_settings_hold_the_given_values_as_windows_paths(work):
    cwd, stage = work
    ok(for_windows(stage, "kallithea.wsgi:application", "--chdir", "C:/srv/kallithea/src/",
                   "--pythonpath", r"D:\lib & more", "--pythonpath", r"D:\a\..\b",
                   "--threads", "8"), cwd, env={"PYTHONHOME": "/nonexistent"})
    settings = tomllib.loads((stage / "wsgi-gateway.toml").read_text())
    assert set(settings) <= LIBRARY_KEYS, set(settings) - LIBRARY_KEYS
    assert settings == {
        "app": "kallithea.wsgi:application",
        "chdir": r"C:\srv\kallithea\src",
        "pythonpath": [r"D:\lib & more", r"D:\b"],
        "venv": r"C:\srv\venv",
        "python-dll": r"C:\Program Files\Python311\python311.dll",
        "core": r"C:\srv\venv\Lib\site-packages\wsgi_gateway\_core.cp311-win_amd64.pyd",
        "error-log": r"C:\srv\kallithea\wsgi-gateway.log",
        "threads": 8,
    }
    assert (stage / "wsgi-gateway.log").is_file(), "the script grants the pool access to it"


def script_text(path: Path) -> str:
    return path.read_bytes().decode()  # as written: read_text() would hide the line ends


def unquoted(line: str) -> str:
    """The parts of a cmd line outside double quotes (where cmd gives & | < > ^ meaning)."""
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
        # Inside quotes cmd still expands %VAR%: only the script's own variables are there.
        inside = "".join(line.split('"')[1::2])
        assert "%" not in re.sub(r"%(APPCMD|SystemDrive|windir)%", "", inside), line


def test_install_script_targets_and_quoting(work):
    cwd, stage = work
    out = r"C:\srv\Apps & Co ^1 (x86)\kallithea"
    ok(for_windows(stage, "app:application", "--site", "Intranet & Co", "--virtualdir",
                   "/scm/kallithea/", "--bitness", "64", "--windows-auth", out=out), cwd)
    script = script_text(stage / "install-iis.cmd")
    check_cmd_syntax(script)
    dll = rf"{out}\{LOADER}"
    pool = '"wsgi-gateway Intranet _ Co-scm-kallithea"'
    lines = commands(script)

    def line_with(*parts):
        found = [ln for ln in lines if all(p in ln for p in parts)]
        assert found, f"no line with {parts} in:\n{script}"
        return found[0]

    line_with("add apppool", f"/name:{pool}")
    line_with("set apppool", pool, '/managedRuntimeVersion:""', "/enable32BitAppOnWin64:false")
    line_with("set apppool", pool, "/startMode:AlwaysRunning")
    line_with("add app", '/site.name:"Intranet & Co"', '/path:"/scm/kallithea"',
              f'/physicalPath:"{out}"')
    line_with('set vdir "Intranet & Co/scm/kallithea/"', f'/physicalPath:"{out}"')
    line_with('set app "Intranet & Co/scm/kallithea"', f"/applicationPool:{pool}")
    line_with('set app "Intranet & Co/scm/kallithea"', "/preloadEnabled:true")
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
    line_with("icacls", rf'"{out}\wsgi-gateway.log"', "/grant")

    undo = script_text(stage / "uninstall-iis.cmd")
    check_cmd_syntax(undo)
    undo_lines = commands(undo)
    assert any('delete app "Intranet & Co/scm/kallithea"' in ln for ln in undo_lines)
    assert any(f"/-\"[path='{dll}']\"" in ln and "isapiCgiRestriction" in ln
               for ln in undo_lines)
    assert any(f"delete apppool {pool}" in ln for ln in undo_lines)
    assert any("windowsAuthentication" in ln and "clear config" in ln for ln in undo_lines)


def test_a_trailing_backslash_cannot_escape_the_closing_quote(work):
    cwd, stage = work
    ok(for_windows(stage, "app", out="D:\\"), cwd)
    lines = commands(script_text(stage / "install-iis.cmd"))
    assert any(ln.startswith('icacls "D:\\\\" /grant') for ln in lines), lines


def test_site_root_and_32_bit_pool(work):
    cwd, stage = work
    fake_dll(cwd / "loader.dll", "32")
    ok(for_windows(stage, "app", "--bitness", "32", "--app-pool", "Kallithea Pool"), cwd)
    script = script_text(stage / "install-iis.cmd")
    check_cmd_syntax(script)
    lines = commands(script)
    out = r"C:\srv\kallithea"
    assert not any("add app " in ln for ln in lines), "the site root is never created"
    assert any(f'set vdir "Default Web Site/" /physicalPath:"{out}"' in ln for ln in lines)
    assert any('set app "Default Web Site/" /applicationPool:"Kallithea Pool"' in ln
               for ln in lines)
    assert any('unlock config "Default Web Site" ' in ln for ln in lines)
    assert any("/enable32BitAppOnWin64:true" in ln for ln in lines)
    assert not any("windowsAuthentication" in ln for ln in lines)
    assert handler(stage)[1].find("add").get("preCondition") == "bitness32"
    undo = commands(script_text(stage / "uninstall-iis.cmd"))
    assert not any("delete app " in ln for ln in undo), "the site root is never deleted"
    assert any('delete apppool "Kallithea Pool"' in ln for ln in undo)


def test_existing_files_are_kept_unless_forced(work):
    cwd, stage = work
    ok(for_windows(stage, "app"), cwd)
    before = {p.name: p.read_bytes() for p in stage.iterdir()}
    msg = refused(for_windows(stage, "app", "--threads", "4"), cwd)
    assert str(stage / "web.config") in msg and "--force" in msg, msg
    assert {p.name: p.read_bytes() for p in stage.iterdir()} == before
    (stage / "wsgi-gateway.log").write_text("kept\n")
    ok(for_windows(stage, "app", "--threads", "4", "--force"), cwd)
    assert tomllib.loads((stage / "wsgi-gateway.toml").read_text())["threads"] == 4
    assert (stage / "wsgi-gateway.log").read_text() == "kept\n", "an existing log is not truncated"


def test_reinstalling_the_dll_in_place_keeps_it(work):
    cwd, stage = work
    ok(for_windows(stage, "app"), cwd)
    image = (stage / LOADER).read_bytes()
    ok(for_windows(stage, "app", "--force", library=str(stage / LOADER)), cwd)
    assert (stage / LOADER).read_bytes() == image


# ---- refusals -----------------------------------------------------------------------------

@pytest.mark.parametrize("args", [
    ["--paste", r"C:\srv\kallithea\my.ini", "--site", "Default Web Site"],
    ["app", "--out", "out", "--library", "loader.dll"],
    ["app", "--venv", "venv"],
])
def test_without_for_windows_this_machine_is_refused_in_one_line(work, args):
    """The binary embeds Python for Linux: it cannot install itself into IIS, and never
    writes a Linux path into a web.config."""
    cwd, _ = work
    msg = refused(args, cwd)
    assert "install-iis writes an IIS install" in msg and "--for-windows DIR" in msg, msg
    assert sorted(p.name for p in cwd.iterdir()) == ["loader.dll"], "nothing is written"


@pytest.mark.parametrize("args,needles", [
    ([], ["no app", "--paste"]),
    (["app", "--paste", r"C:\x.ini"], ["not both"]),
    (["app", "--virtualdir", "kallithea"], ["--virtualdir", "must start with '/'"]),
    (["app", "--virtualdir", "/a/../b"], ["--virtualdir", ".."]),
    (["app", "--library", "missing.dll"], ["--library", "missing.dll", "no such file"]),
    (["app", "--library", "dll32.dll"], ["--library", "32-bit DLL", "--bitness is 64"]),
    (["app", "--library", "prog.exe"], ["--library", "not a DLL"]),
    (["app", "--library", "notes.txt"], ["--library", "not a Windows DLL"]),
    (["app:1x"], ["APP", "module[:callable]"]),
    (["--paste", "my.ini"], ["--paste", "not an absolute Windows path",
                             "absolute path on the Windows machine"]),
    (["--paste", "/srv/kallithea/my.ini"], ["--paste", "not an absolute Windows path"]),
    (["app", "--venv", "venv"], ["--venv", "not an absolute Windows path"]),
    (["app", "--chdir", "C:src"], ["--chdir", "drive-relative"]),
    (["app", "--pythonpath", r"C:\a|b"], ["--pythonpath", "'|' cannot be part"]),
    (["app", "--base-python", "/usr"], ["--base-python", "not an absolute Windows path"]),
    (["app", "--python-version", "2.7"], ["--python-version", "3.10 or later"]),
    (["app", "--out", "out"], ["--out", "not an absolute Windows path"]),
    (["app", "--out", r"C:\100% done"], ["--out", "'%'"]),
    (["app", "--app-pool", "a:b"], ["--app-pool", "':'"]),
    (["app", "--site", "a/b"], ["--site"]),
    (["app", "--bitness", "16"], ["--bitness"]),
])
def test_bad_input_is_refused_naming_the_option(work, args, needles):
    cwd, stage = work
    fake_dll(cwd / "dll32.dll", "32")
    fake_dll(cwd / "prog.exe", dll=False)
    (cwd / "notes.txt").write_text("not a dll\n")
    base = for_windows(stage)
    # An option given in `args` replaces the one for_windows() gives.
    for opt in ("--library", "--venv", "--out", "--base-python", "--python-version"):
        if opt in args:
            i = base.index(opt)
            del base[i:i + 2]
    msg = refused([*base, *args], cwd)
    for needle in needles:
        assert needle in msg, msg
    assert not stage.exists(), "nothing is written on a refusal"


@pytest.mark.parametrize("missing,says", [
    ("--out", "--for-windows needs --out"),
    ("--base-python", "--for-windows needs --base-python"),
    ("--python-version", "--for-windows needs --python-version"),
    ("--library", "--for-windows needs --library PATH"),
])
def test_for_windows_names_what_it_misses(work, missing, says):
    cwd, stage = work
    args = for_windows(stage, "app")
    i = args.index(missing)
    del args[i:i + 2]
    msg = refused(args, cwd)
    assert says in msg, msg
    assert not stage.exists()


def test_target_options_belong_to_for_windows(work):
    cwd, _ = work
    msg = refused(["app", "--base-python", r"C:\Python311"], cwd)
    assert "--base-python describes another machine's Python" in msg, msg
