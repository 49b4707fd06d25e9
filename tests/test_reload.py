"""`--reload` (development): editing a source file the app imported, or a
`--reload-extra-file`, restarts the workers through the supervisor's reload (new workers
first); a file that no longer imports keeps the old code serving and logs its traceback.

The app files live in tmp_path and are edited the way an editor saves them (written in place,
or a new file renamed over the old one). Waiting is on a condition (a response body, a log
line) with a deadline that only bounds a failure.
"""

from __future__ import annotations

import os
import re
import threading
import time

import pytest

from gwprocess import Server, run_cli

pytestmark = pytest.mark.timeout(120)

DEADLINE = 30.0


def app_source(version: str, extra: str = "EXTRA = ''") -> str:
    """An app answering `version`, plus what `helper.py` says and what `extra` computes."""
    return f"""
import os
import helper
{extra}
VERSION = {version!r}

def application(environ, start_response):
    if environ["PATH_INFO"] == "/late":
        import late
        body = late.WORD
    elif environ["PATH_INFO"] == "/pid":
        body = str(os.getpid())
    else:
        body = VERSION + " " + helper.WORD + " " + EXTRA
    data = body.encode()
    start_response("200 OK", [("Content-Type", "text/plain"),
                              ("Content-Length", str(len(data)))])
    return [data]
"""


def write_app(path, version, extra="EXTRA = ''"):
    path.write_text(app_source(version, extra))


def save_by_rename(path, text):
    """How vim (backupcopy=no) and many tools save: a new file renamed over the old one."""
    tmp = path.with_name(path.name + ".new~")
    tmp.write_text(text)
    os.replace(tmp, path)


def body(s, path="/"):
    c = s.http(timeout=10)
    try:
        c.request("GET", path, headers={"Connection": "close"})
        r = c.getresponse()
        return r.status, r.read().decode()
    finally:
        c.close()


def wait_body(s, expected, path="/", timeout=DEADLINE):
    """Requests until one answers `expected` (each must be a 200: no request fails)."""
    deadline = time.monotonic() + timeout
    seen = []
    while True:
        status, text = body(s, path)
        assert status == 200, (status, text, s.log())
        if text == expected:
            return
        seen.append(text)
        if time.monotonic() > deadline:
            raise AssertionError(
                f"not {expected!r} within {timeout}s (last {seen[-3:]})\nlog:\n{s.log()}")
        time.sleep(0.05)


def wait_exits(s, since, n):
    """Until `n` workers exited since the log mark `since` (the old generation is gone once
    it finished what it was serving)."""
    deadline = time.monotonic() + DEADLINE
    while len(re.findall(r"worker pid \d+ exited", s.log(since))) < n:
        assert time.monotonic() < deadline, s.log()
        time.sleep(0.05)


@pytest.fixture
def app_dir(tmp_path):
    d = tmp_path / "app"
    d.mkdir()
    (d / "helper.py").write_text("WORD = 'h1'\n")
    (d / "late.py").write_text("WORD = 'late1'\n")
    write_app(d / "reload_app.py", "v1")
    return d


def reload_env(tmp_path):
    """The server's TMPDIR, to see its report directory come and go."""
    tmpdir = tmp_path / "tmpdir"
    tmpdir.mkdir()
    return tmpdir, {"TMPDIR": str(tmpdir)}


def test_edit_reloads_and_a_syntax_error_keeps_the_old_code(server_factory, app_dir, tmp_path):
    tmpdir, env = reload_env(tmp_path)
    s = server_factory("reload_app", args=["--reload"], chdir=app_dir, env=env)
    assert "development only" in s.log(), s.log()
    assert "one worker process under a supervisor" in s.log(), s.log()
    assert body(s) == (200, "v1 h1 "), s.log()
    reports = list(tmpdir.iterdir())
    assert len(reports) == 1 and reports[0].name.startswith("wsgi-gateway-reload-"), reports

    # The app's own file, written in place.
    mark = s.log_mark()
    write_app(app_dir / "reload_app.py", "v2")
    wait_body(s, "v2 h1 ")
    wait_exits(s, mark, 1)

    # A syntax error: the new worker cannot import it, the old one keeps serving.
    mark = s.log_mark()
    broken = app_source("v3") + "\ndef broken(:\n"
    line = broken.splitlines().index("def broken(:") + 1
    (app_dir / "reload_app.py").write_text(broken)
    s.wait_log(r"reload failed: .*keeping the running workers", since=mark, timeout=DEADLINE)
    log = s.log(mark)
    # Python's report of it: the file, the line, the code, the error.
    assert f'reload_app.py", line {line}' in log and "def broken(:" in log, log
    assert "SyntaxError: " in log, log
    for _ in range(5):
        assert body(s) == (200, "v2 h1 "), s.log()

    # Fixed (saved by renaming a new file over it): the next reload succeeds.
    save_by_rename(app_dir / "reload_app.py", app_source("v4"))
    wait_body(s, "v4 h1 ")

    # Another module the app imported.
    save_by_rename(app_dir / "helper.py", "WORD = 'h2'\n")
    wait_body(s, "v4 h2 ")

    # A module first imported during a request, beside the app's modules.
    assert body(s, "/late") == (200, "late1"), s.log()
    (app_dir / "late.py").write_text("WORD = 'late2'\n")
    wait_body(s, "late2", path="/late")

    assert s.stop() == 0, s.log()
    assert list(tmpdir.iterdir()) == [], "the report directory is removed at exit"


def test_extra_file_change_reloads_every_worker(server_factory, app_dir, tmp_path):
    _, env = reload_env(tmp_path)
    settings = tmp_path / "conf" / "settings.txt"
    settings.parent.mkdir()
    settings.write_text("s1")
    extra = f"EXTRA = open({str(settings)!r}).read()"
    write_app(app_dir / "reload_app.py", "v1", extra)
    s = server_factory("reload_app", chdir=app_dir, env=env,
                       args=["--reload", "--workers", "2", "--reload-extra-file", settings])
    assert "one worker process under a supervisor" not in s.log(), s.log()
    assert body(s) == (200, "v1 h1 s1"), s.log()
    mark = s.log_mark()
    settings.write_text("s2")
    s.wait_log(r"--reload: .*settings\.txt changed: reloading", since=mark, timeout=DEADLINE)
    s.wait_log(r"reload: starting 2 new worker\(s\)", since=mark, timeout=DEADLINE)
    s.wait_log(r"reload: done", since=mark, timeout=DEADLINE)
    # Once the old workers are gone (told to stop when the reload is done), every worker
    # serving has the new settings.
    wait_exits(s, mark, 2)
    for _ in range(10):
        assert body(s) == (200, "v1 h1 s2"), s.log()
    assert s.stop() == 0, s.log()


def test_a_relative_extra_file_is_in_chdir(server_factory, app_dir, tmp_path):
    _, env = reload_env(tmp_path)
    (app_dir / "settings.txt").write_text("s1")
    write_app(app_dir / "reload_app.py", "v1", "EXTRA = open('settings.txt').read()")
    s = server_factory("reload_app", chdir=app_dir, env=env,
                       args=["--reload", "--reload-extra-file", "settings.txt"])
    assert body(s) == (200, "v1 h1 s1"), s.log()
    (app_dir / "settings.txt").write_text("s2")
    wait_body(s, "v1 h1 s2")
    assert s.stop() == 0, s.log()


def test_options_from_the_environment_and_toml(server_factory, app_dir, tmp_path):
    _, env = reload_env(tmp_path)
    conf = tmp_path / "gw.toml"
    conf.write_text('reload-extra-file = ["settings.txt"]\n')
    (app_dir / "settings.txt").write_text("s1")
    write_app(app_dir / "reload_app.py", "v1", "EXTRA = open('settings.txt').read()")
    s = server_factory("reload_app", chdir=app_dir, args=["--config", conf],
                       env={**env, "WSGI_GATEWAY_RELOAD": "true"})
    assert "development only" in s.log(), s.log()
    assert body(s) == (200, "v1 h1 s1"), s.log()
    (app_dir / "settings.txt").write_text("s2")
    wait_body(s, "v1 h1 s2")
    assert s.stop() == 0, s.log()


def test_extra_file_needs_reload(tmp_path):
    rc, err = run_cli(["serve", "--reload-extra-file", str(tmp_path / "x")])
    assert rc == 2, (rc, err)
    assert "--reload-extra-file needs --reload" in err, err


def test_without_reload_no_report_directory(server_factory, app_dir, tmp_path):
    tmpdir, env = reload_env(tmp_path)
    s = server_factory("reload_app", chdir=app_dir, env=env, args=["--workers", "1"])
    assert body(s) == (200, "v1 h1 "), s.log()
    assert list(tmpdir.iterdir()) == []
    assert "--reload" not in s.log(), s.log()
    assert s.stop() == 0, s.log()


@pytest.mark.parametrize("workers", [[], ["--workers", "2"]], ids=["one", "two"])
def test_an_app_that_does_not_import_at_start_waits_for_the_fix(app_dir, tmp_path, workers):
    """No old code to keep serving: the supervisor keeps the socket and waits for a change
    (the file that failed is not in `sys.modules`: its directory, `--chdir`, is watched)."""
    _, env = reload_env(tmp_path)
    (app_dir / "reload_app.py").write_text(app_source("v1") + "\ndef broken(:\n")
    s = Server("reload_app", args=["--reload", *workers], chdir=app_dir, env=env)
    started = []
    t = threading.Thread(target=lambda: started.append(s.start()), daemon=True)
    t.start()
    try:
        s.wait_log(r"--reload: waiting for a change to start again", timeout=DEADLINE)
        assert "SyntaxError: " in s.log(), s.log()
        assert s.alive(), s.log()
        save_by_rename(app_dir / "reload_app.py", app_source("v2"))
        t.join(DEADLINE)
        assert started, s.log()
        assert body(s) == (200, "v2 h1 "), s.log()
        # And from then on as usual.
        write_app(app_dir / "reload_app.py", "v3")
        wait_body(s, "v3 h1 ")
        assert s.stop() == 0, s.log()
    finally:
        s.kill()


def test_a_file_saved_twice_in_a_second_is_not_served_from_a_stale_pyc(server_factory, app_dir,
                                                                        tmp_path):
    """Python trusts a `.pyc` whose source has the size and modification second it recorded:
    an edit that keeps both (v1 → v2, saved within the second the last reload imported v1)
    would bring the old code back. Pinned here with one fixed mtime for every version."""
    _, env = reload_env(tmp_path)
    env["PYTHONDONTWRITEBYTECODE"] = ""  # Python's default: bytecode written

    def save(version):
        tmp = app_dir / "reload_app.py.new~"
        tmp.write_text(app_source(version))
        os.utime(tmp, (1_700_000_000, 1_700_000_000))
        os.replace(tmp, app_dir / "reload_app.py")

    save("v1")
    s = server_factory("reload_app", args=["--reload"], chdir=app_dir, env=env)
    assert body(s) == (200, "v1 h1 "), s.log()
    # A change the watch has not seen counts if it is newer than the import: not this one's
    # pinned mtime, so it is made once the file is watched.
    s.wait_log(r"--reload: watching \d+ more source file", timeout=DEADLINE)
    save("v2")
    wait_body(s, "v2 h1 ")
    assert not (app_dir / "__pycache__").exists()
    assert s.stop() == 0, s.log()
