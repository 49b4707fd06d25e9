"""`--user`, `--group`, `--umask`, `--socket-mode`, and the warning when the app runs as root.

Run as root (as CI does); skipped otherwise. A system user made for the test
(`useradd --system`, removed afterwards), with a supplementary group, is what the server
switches to; the app reports `os.getuid()`, `os.getgid()`, `os.getgroups()` and the umask.

The switched server must be able to read Python. When the interpreter lives under a directory
only root may enter (pyenv in `/root`, as on this project's machines), the server runs in a
private mount namespace (`unshare -m`) where that directory is a world-enterable tmpfs with
just the interpreter's tree bind-mounted back: the server's code is unchanged, only what the
test user may traverse differs. Without `unshare`, those tests skip and say why.
"""

from __future__ import annotations

import grp
import http.client
import json
import os
import pwd
import re
import shlex
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from gwfiles import wait_for_file
from gwprocess import Server, binary, clean_env, run_cli

pytestmark = [
    pytest.mark.timeout(90),
    pytest.mark.skipif(os.geteuid() != 0, reason="switching users needs root (CI runs as root)"),
]

USER = "wsgigw-test"
EXTRA_GROUP = "wsgigw-extra"
DEADLINE = 30.0
ROOT_WARNING = "running the app as root"

APP = '''
import json, os


def application(environ, start_response):
    mask = os.umask(0)
    os.umask(mask)
    body = json.dumps({
        "pid": os.getpid(), "uid": os.getuid(), "euid": os.geteuid(), "gid": os.getgid(),
        "egid": os.getegid(), "groups": sorted(os.getgroups()), "umask": mask,
    }).encode()
    start_response("200 OK", [("Content-Type", "application/json"),
                              ("Content-Length", str(len(body)))])
    return [body]
'''


def _run(*cmd):
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


@pytest.fixture(scope="module")
def account():
    """The test user (its own group, plus EXTRA_GROUP as a supplementary one): (pwd, extra gid).
    Made here if missing, and removed again if made here."""
    if not (shutil.which("useradd") and shutil.which("groupadd")):
        pytest.skip("useradd/groupadd (Debian's passwd package) are not installed")
    made_group = made_user = False
    try:
        grp.getgrnam(EXTRA_GROUP)
    except KeyError:
        _run("groupadd", "--system", EXTRA_GROUP)
        made_group = True
    try:
        pwd.getpwnam(USER)
    except KeyError:
        _run("useradd", "--system", "--user-group", "--no-create-home",
             "--shell", "/usr/sbin/nologin", "--groups", EXTRA_GROUP, USER)
        made_user = True
    try:
        yield pwd.getpwnam(USER), grp.getgrnam(EXTRA_GROUP).gr_gid
    finally:
        if made_user:
            subprocess.run(["userdel", USER], stderr=subprocess.DEVNULL)
        if made_group:
            subprocess.run(["groupdel", EXTRA_GROUP], stderr=subprocess.DEVNULL)


@pytest.fixture
def app_dir():
    """A directory every user may read (pytest's own tmp_path is root's alone)."""
    d = Path(tempfile.mkdtemp(prefix="wsgigw-priv-", dir="/tmp"))
    d.chmod(0o755)
    (d / "who_app.py").write_text(APP)
    (d / "who_app.py").chmod(0o644)
    yield d
    shutil.rmtree(d, ignore_errors=True)


def private_ancestor(path: str):
    """The first directory above `path` that other users may not enter, or None."""
    p = Path(path).resolve()
    for parent in reversed(p.parents):
        if parent != Path("/") and not os.stat(parent).st_mode & stat.S_IXOTH:
            return parent
    return None


def python_base() -> str:
    """Where the interpreter the server runs lives (the venv's base Python)."""
    return sys.base_prefix


@pytest.fixture(scope="module")
def wrapper():
    """The command prefix that lets the switched server read Python (see the module doc):
    [] when it already can."""
    hidden = private_ancestor(python_base())
    if hidden is None:
        return []
    if not shutil.which("unshare"):
        pytest.skip(f"Python lives under {hidden}, which other users cannot enter, and "
                    "unshare (util-linux) is missing to expose it to the test user")
    child = Path(python_base()).resolve().relative_to(hidden).parts[0]
    keep = tempfile.mkdtemp(prefix="wsgigw-keep-", dir="/tmp")
    script = (
        f"mount --bind {shlex.quote(str(hidden / child))} {shlex.quote(keep)} && "
        f"mount -t tmpfs -o mode=0755 tmpfs {shlex.quote(str(hidden))} && "
        f"mkdir {shlex.quote(str(hidden / child))} && "
        f"mount --bind {shlex.quote(keep)} {shlex.quote(str(hidden / child))} && "
        'exec "$@"'
    )
    prefix = ["unshare", "--mount", "--propagation", "private", "--", "sh", "-c", script, "sh"]
    probe = subprocess.run([*prefix, "true"], capture_output=True)
    if probe.returncode != 0:
        pytest.skip(f"Python lives under {hidden}, which other users cannot enter, and a "
                    f"private mount namespace is not allowed here: {probe.stderr!r}")
    yield prefix
    os.rmdir(keep)


class WrappedServer(Server):
    """A Server whose command runs behind `prefix` (the process is still the server:
    the wrapper execs it)."""

    def __init__(self, prefix, *a, **kw):
        super().__init__(*a, **kw)
        self.prefix = prefix

    def command(self):
        return [*self.prefix, *super().command()]


def who(server: Server) -> dict:
    h = server.http()
    try:
        h.request("GET", "/", headers={"Connection": "close"})
        r = h.getresponse()
        body = r.read()
    finally:
        h.close()
    assert r.status == 200, body
    return json.loads(body)


def proc_ids(pid: int) -> tuple[int, int]:
    """The real uid and gid of a process, from /proc."""
    ids = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in ("Uid", "Gid"):
                ids[key] = int(value.split()[0])
    return ids["Uid"], ids["Gid"]


def test_one_process_runs_the_app_as_the_user(account, app_dir, wrapper):
    user, extra_gid = account
    sock = app_dir / "app.sock"
    server = WrappedServer(wrapper, "who_app", chdir=app_dir, bind=f"unix:{sock}",
                           args=["--user", USER, "--umask", "027", "--socket-mode", "660"])
    try:
        server.start()
        seen = who(server)
        assert (seen["uid"], seen["euid"]) == (user.pw_uid, user.pw_uid), seen
        assert (seen["gid"], seen["egid"]) == (user.pw_gid, user.pw_gid), seen
        # initgroups: the user's supplementary groups, and none of root's.
        assert extra_gid in seen["groups"] and 0 not in seen["groups"], seen
        assert seen["umask"] == 0o027, seen
        st = os.stat(sock)
        assert stat.S_ISSOCK(st.st_mode)
        assert stat.S_IMODE(st.st_mode) == 0o660, oct(st.st_mode)
        assert (st.st_uid, st.st_gid) == (user.pw_uid, user.pw_gid)
        assert proc_ids(server.proc.pid) == (user.pw_uid, user.pw_gid)
        server.wait_log(rf"running as user {USER} \({user.pw_uid}\), group {USER} ")
        assert ROOT_WARNING not in server.log()
        assert server.stop() == 0
    finally:
        server.kill()


def test_supervisor_switches_before_its_workers_start(account, app_dir, wrapper):
    """Under --workers the supervisor switches once the sockets are bound: it and every worker
    (the first generation and a reload's) run as the user, with the --group given."""
    user, extra_gid = account
    group = grp.getgrnam("nogroup" if _has_group("nogroup") else "nobody")
    pid_file = app_dir / "server.pid"
    server = WrappedServer(wrapper, "who_app", chdir=app_dir,
                           args=["--workers", "2", "--user", str(user.pw_uid),
                                 "--group", group.gr_name, "--pid", pid_file])
    try:
        server.start()
        seen = who(server)
        assert (seen["uid"], seen["gid"]) == (user.pw_uid, group.gr_gid), seen
        # initgroups(user, --group): the user's supplementary groups and the one given.
        assert seen["groups"] == sorted({extra_gid, group.gr_gid}), seen
        assert proc_ids(server.proc.pid) == (user.pw_uid, group.gr_gid)
        # The pid file was written while still root.
        assert int(pid_file.read_text()) == server.proc.pid
        # The switched supervisor still starts, signals and reaps its workers.
        mark = server.log_mark()
        server.proc.send_signal(signal.SIGHUP)
        server.wait_log(r"reload: done", since=mark, timeout=DEADLINE)
        end = time.monotonic() + DEADLINE
        while (seen2 := who(server))["pid"] == seen["pid"] and time.monotonic() < end:
            pass
        assert (seen2["uid"], seen2["gid"]) == (user.pw_uid, group.gr_gid), seen2
        assert ROOT_WARNING not in server.log()
        assert server.stop() == 0
    finally:
        server.kill()


def _has_group(name: str) -> bool:
    try:
        grp.getgrnam(name)
        return True
    except KeyError:
        return False


@pytest.mark.parametrize("workers", [None, "1"], ids=["one-process", "workers"])
def test_root_without_user_is_warned_not_refused(app_dir, workers):
    sock = app_dir / "root.sock"
    args = ["--socket-mode", "0600", "--umask", "077"]
    if workers:
        args += ["--workers", workers]
    server = Server("who_app", chdir=app_dir, bind=f"unix:{sock}", args=args)
    try:
        server.start()
        seen = who(server)
        assert seen["uid"] == 0 and seen["umask"] == 0o077, seen
        assert stat.S_IMODE(os.stat(sock).st_mode) == 0o600
        warnings = [line for line in server.log().splitlines() if ROOT_WARNING in line]
        # Once: by the process that decides (the supervisor), not again by each worker.
        assert len(warnings) == 1, server.log()
        assert "--user" in warnings[0]
        assert server.stop() == 0
    finally:
        server.kill()


@pytest.mark.parametrize("option,value,message", [
    ("--user", "no-such-user-wsgigw", "--user no-such-user-wsgigw: no such user"),
    ("--group", "no-such-group-wsgigw", "--group no-such-group-wsgigw: no such group"),
    ("--user", "4000000000", "--user 4000000000: no such user in the password database"),
])
def test_unknown_users_and_groups_are_refused_at_start(app_dir, option, value, message):
    sock = app_dir / "never.sock"
    rc, err = run_cli(["serve", "who_app", "--chdir", str(app_dir), "--bind", f"unix:{sock}",
                       option, value])
    assert rc == 2, err
    assert f"wsgi-gateway: error: {message}" in err, err
    # Refused before anything was bound.
    assert not sock.exists()


@pytest.mark.parametrize("option", ["--umask", "--socket-mode"])
def test_modes_must_be_octal(option):
    rc, err = run_cli(["serve", option, "0x1f"])
    assert rc == 2 and option in err, err
    assert re.search(r"expected an octal mode", err), err


def test_log_files_opened_as_root_are_handed_to_the_user(account, app_dir, wrapper):
    """The error log is opened (created) by the supervisor while still root; its workers, which
    run as the user, open it again, as does any process after a rotation: the file is given
    to the user at the switch (as gunicorn does), or no worker could start. So is an existing
    access log."""
    user, _ = account
    log = app_dir / "error.log"
    # An access log root made beforehand (the directory is root's: the user could not).
    (app_dir / "access.log").write_text("")
    cmd = [*wrapper, binary(), "serve", "who_app", "--chdir", str(app_dir),
           "--bind", "127.0.0.1:0", "--workers", "1", "--user", USER,
           "--error-log", str(log), "--access-log", str(app_dir / "access.log")]
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, env=clean_env())
    try:
        # Until it serves, or has exited (what stopped it is on its stderr).
        text = wait_for_file(log, timeout=DEADLINE,
                             predicate=lambda t: "listening on" in t or proc.poll() is not None)
        if "listening on" not in text:
            proc.wait(DEADLINE)
            raise AssertionError(f"{text}\nstderr: {proc.stderr.read().decode()}")
        assert (log.stat().st_uid, log.stat().st_gid) == (user.pw_uid, user.pw_gid)
        port = int(re.search(r"listening on http://127\.0\.0\.1:(\d+)", text).group(1))
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        conn.request("GET", "/")
        assert json.loads(conn.getresponse().read())["uid"] == user.pw_uid
        conn.close()
        access = app_dir / "access.log"
        wait_for_file(access, timeout=DEADLINE, predicate=lambda t: "GET / " in t)
        assert access.stat().st_uid == user.pw_uid
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(DEADLINE)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def test_group_alone_changes_only_the_group(account, app_dir):
    """--group without --user: the group (and no supplementary group of root's), the user
    stays root, so the warning is given."""
    _, extra_gid = account
    server = Server("who_app", chdir=app_dir, args=["--group", EXTRA_GROUP])
    try:
        server.start()
        seen = who(server)
        assert (seen["uid"], seen["gid"], seen["groups"]) == (0, extra_gid, [extra_gid]), seen
        server.wait_log(ROOT_WARNING)
        assert server.stop() == 0
    finally:
        server.kill()


def test_a_switch_that_fails_stops_the_start(account, app_dir, wrapper):
    """Started as the (unprivileged) test user, --user root cannot be honoured: the start
    stops with the reason, before the app is imported."""
    user, _ = account
    if not shutil.which("setpriv"):
        pytest.skip("setpriv (util-linux) is not installed")
    as_user = ["setpriv", f"--reuid={user.pw_uid}", f"--regid={user.pw_gid}", "--init-groups"]
    cmd = [*wrapper, *as_user, binary(), "serve", "who_app", "--chdir", str(app_dir),
           "--bind", "127.0.0.1:0", "--user", "root"]
    p = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, env=clean_env(),
                       timeout=DEADLINE)
    err = p.stderr.decode(errors="replace")
    assert p.returncode == 2, err
    assert re.search(r"wsgi-gateway: error: cannot switch to user root \(0\), group root \(0\): "
                     rf"only root can \(this process is uid {user.pw_uid}\)", err), err
    assert "listening on" not in err


def test_switched_supervisor_reopens_logs_on_sigusr1(account, app_dir, wrapper):
    """After the switch the supervisor still passes SIGUSR1 on and every process reopens the
    error log as the user: a rotation as logrotate's `create` does it (the old file renamed,
    a new one made for the user) loses nothing and needs no root."""
    user, _ = account
    log = app_dir / "error.log"
    cmd = [*wrapper, binary(), "serve", "who_app", "--chdir", str(app_dir),
           "--bind", "127.0.0.1:0", "--workers", "2", "--user", USER, "--error-log", str(log)]
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, env=clean_env())
    try:
        text = wait_for_file(log, timeout=DEADLINE,
                             predicate=lambda t: "listening on" in t or proc.poll() is not None)
        if "listening on" not in text:
            proc.wait(DEADLINE)
            raise AssertionError(f"{text}\nstderr: {proc.stderr.read().decode()}")
        workers = set(re.findall(r"worker pid (\d+) ready", text))
        assert len(workers) == 2, text
        log.rename(app_dir / "error.log.1")
        log.write_text("")
        os.chown(log, user.pw_uid, user.pw_gid)
        proc.send_signal(signal.SIGUSR1)
        # Three processes reopened: the supervisor and both workers, each into the new file.
        new = wait_for_file(log, timeout=DEADLINE,
                            predicate=lambda t: t.count("log files reopened") >= 3)
        assert "passing it on to the workers" in new, new
        assert "Permission denied" not in new
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(DEADLINE)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
