"""Real version-control clients against real WSGI applications, through both front ends.

Mercurial's hgweb (apps/hgweb_app.py) and dulwich's smart-HTTP git server (apps/git_app.py)
are served by `wsgi-gateway serve` (the HTTP listener) and by `wsgi-gateway cgi` under
lighttpd (mod_cgi, tests/cgihost.py). The stock `hg` and `git` command-line clients clone
a repository with a few MB of history (binary files of random bytes) and push new commits
with large binary files; the results are checked byte for byte against the repositories on
disk. A git push above http.postBuffer (1 MiB) is sent with a chunked request body.

The source repositories are built once per module in a temporary directory; every front end
serves its own copy. Clients run with a private HOME, an empty HGRCPATH, no system git
config and no proxy settings, each call bounded by a timeout.
"""

from __future__ import annotations

import io
import os
import random
import shutil
import stat
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from gwprocess import APPS_DIR, Server, binary

VENV = Path(sys.prefix)  # tests/run.sh runs pytest from the venv holding mercurial + dulwich
HG = str(VENV / "bin" / "hg") if (VENV / "bin" / "hg").exists() else (shutil.which("hg") or "hg")
GIT = shutil.which("git") or "git"
CMD_TIMEOUT = 90.0  # bounds a hung client only

SEED = 3875
N_COMMITS = 20
AUTHOR = ("Gateway Tester", "tester@example.invalid")
BASE_DATE = 1_700_000_000


# ---- clients ------------------------------------------------------------------------------

class CmdFailed(AssertionError):
    pass


def client_env(home: Path) -> dict:
    """A minimal, fully controlled environment for hg and git (no proxies, no user config)."""
    hgrc = home / "empty.hgrc"
    if not hgrc.exists():
        hgrc.write_text("")
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(home),
        "LANG": "C",
        "LC_ALL": "C",
        "HGRCPATH": str(hgrc),
        "HGPLAIN": "1",
        "HGENCODING": "utf-8",
        "HGUSER": f"{AUTHOR[0]} <{AUTHOR[1]}>",
        "GIT_TERMINAL_PROMPT": "0",
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_CONFIG_GLOBAL": os.devnull,
        "GIT_AUTHOR_NAME": AUTHOR[0],
        "GIT_AUTHOR_EMAIL": AUTHOR[1],
        "GIT_COMMITTER_NAME": AUTHOR[0],
        "GIT_COMMITTER_EMAIL": AUTHOR[1],
        "no_proxy": "*",
        "NO_PROXY": "*",
    }


def run(cmd, env, cwd=None, log=None, extra_env=None, check=True) -> subprocess.CompletedProcess:
    """Run a client command; on failure raise with its output and the server-side log."""
    e = dict(env)
    if extra_env:
        e.update(extra_env)
    try:
        p = subprocess.run([str(c) for c in cmd], cwd=cwd, env=e, capture_output=True,
                           timeout=CMD_TIMEOUT, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired as ex:
        raise CmdFailed(f"timed out after {CMD_TIMEOUT}s: {cmd}\nstdout:\n{_tail(ex.stdout)}\n"
                        f"stderr:\n{_tail(ex.stderr)}\n{_server_log(log)}") from None
    if check and p.returncode != 0:
        raise CmdFailed(f"exit {p.returncode}: {cmd}\nstdout:\n{_tail(p.stdout)}\n"
                        f"stderr:\n{_tail(p.stderr)}\n{_server_log(log)}")
    return p


def _tail(data, n=6000) -> str:
    if data is None:
        return ""
    if isinstance(data, bytes):
        data = data.decode("utf-8", "replace")
    return data[-n:]


def _server_log(log) -> str:
    if log is None:
        return ""
    return "---- server-side log ----\n" + _tail(log(), 8000)


def out(cmd, env, **kw) -> str:
    return run(cmd, env, **kw).stdout.decode("utf-8", "replace")


# ---- the source history --------------------------------------------------------------------

def history():
    """N_COMMITS deterministic commits: (message, {path: (bytes, executable)}, [deleted])."""
    rnd = random.Random(SEED)
    tree: dict[str, tuple[bytes, bool]] = {}
    commits = []
    for i in range(N_COMMITS):
        changes: dict[str, tuple[bytes, bool]] = {}
        deleted: list[str] = []
        # a new binary file of random bytes every commit (~170 kB each, > 3 MB in all)
        changes[f"data/blob{i:02d}.bin"] = (rnd.randbytes(rnd.randint(150_000, 190_000)), False)
        readme = tree.get("README.txt", (b"", False))[0] + f"line {i}: {rnd.random()}\n".encode()
        changes["README.txt"] = (readme, False)
        if i % 4 == 3:  # rewrite a slice of an older binary (delta-compressed history)
            path = f"data/blob{i - 2:02d}.bin"
            old = bytearray(tree[path][0])
            at = rnd.randrange(0, len(old) - 4096)
            old[at:at + 4096] = rnd.randbytes(4096)
            changes[path] = (bytes(old), False)
        if i == 2:
            changes["tools/run.sh"] = (b"#!/bin/sh\necho hello\n", True)
        if i == 5:
            changes["empty"] = (b"", False)
            changes["docs/notes with spaces.txt"] = ("caf\u00e9 \u2603\n".encode(), False)
        if i == 9:
            changes["tools/run.sh"] = (b"#!/bin/sh\necho hello again\n", True)
            deleted.append("data/blob04.bin")
        if i == 13:
            changes["data/all-bytes.bin"] = (bytes(range(256)) * 64, False)
        for p in deleted:
            tree.pop(p)
        tree.update(changes)
        commits.append((f"commit {i}: {len(changes)} changed, {len(deleted)} deleted",
                        changes, deleted))
    return commits, tree


def write_changes(root: Path, changes, deleted):
    for p in deleted:
        (root / p).unlink()
    for p, (data, exe) in changes.items():
        f = root / p
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_bytes(data)
        f.chmod(0o755 if exe else 0o644)


def tree_of_dir(root: Path, skip=(".hg", ".git")) -> dict[str, tuple[bytes, bool]]:
    """{relative path: (bytes, executable)} for every file under root."""
    res = {}
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if d not in skip]
        for name in filenames:
            f = Path(dirpath) / name
            rel = f.relative_to(root).as_posix()
            res[rel] = (f.read_bytes(), bool(f.stat().st_mode & stat.S_IXUSR))
    return res


def tree_of_tar(data: bytes) -> dict[str, tuple[bytes, bool]]:
    res = {}
    with tarfile.open(fileobj=io.BytesIO(data)) as t:
        for m in t.getmembers():
            if m.isfile():
                res[m.name] = (t.extractfile(m).read(), bool(m.mode & stat.S_IXUSR))
    return res


def diff_trees(got, want) -> str:
    """'' when equal, else a short description of the differences."""
    problems = []
    for p in sorted(set(got) | set(want)):
        if p not in got:
            problems.append(f"missing {p}")
        elif p not in want:
            problems.append(f"unexpected {p}")
        elif got[p][0] != want[p][0]:
            problems.append(f"content differs: {p} ({len(got[p][0])} vs {len(want[p][0])} bytes)")
        elif got[p][1] != want[p][1]:
            problems.append(f"exec bit differs: {p}")
    return "\n".join(problems[:30])


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    return tmp_path_factory.mktemp("real-clients")


@pytest.fixture(scope="module")
def cenv(work):
    home = work / "home"
    home.mkdir()
    return client_env(home)


@pytest.fixture(scope="module")
def source(work, cenv):
    """The source repositories, built once: {'hg': path, 'git': path, 'tree': final files}."""
    commits, final = history()
    total_random = sum(len(d) for _, ch, _ in commits for p, (d, _) in ch.items()
                       if p.startswith("data/blob"))
    assert total_random >= 3_000_000, total_random
    hg_src, git_src = work / "src-hg", work / "src-git"
    run([HG, "init", hg_src], cenv)
    run([GIT, "init", "-q", "-b", "main", git_src], cenv)
    for i, (msg, changes, deleted) in enumerate(commits):
        date = BASE_DATE + 3600 * i
        for root in (hg_src, git_src):
            write_changes(root, changes, deleted)
        run([HG, "-R", hg_src, "commit", "-q", "-A", "-m", msg, "-d", f"{date} 0"], cenv)
        gdate = {"GIT_AUTHOR_DATE": f"@{date} +0000", "GIT_COMMITTER_DATE": f"@{date} +0000"}
        run([GIT, "-C", git_src, "add", "-A"], cenv)
        run([GIT, "-C", git_src, "commit", "-q", "-m", msg], cenv, extra_env=gdate)
    assert diff_trees(tree_of_dir(hg_src), final) == ""
    assert diff_trees(tree_of_dir(git_src), final) == ""
    hg_nodes = out([HG, "-R", hg_src, "log", "-T", "{node}\n"], cenv).split()
    git_commits = out([GIT, "-C", git_src, "rev-list", "HEAD"], cenv).split()
    assert len(hg_nodes) == len(git_commits) == N_COMMITS
    return {"hg": hg_src, "git": git_src, "tree": final, "hg_nodes": hg_nodes,
            "git_commits": git_commits}


# ---- front ends ----------------------------------------------------------------------------

class Front:
    """One front end serving its own copies of the repositories."""

    def __init__(self, name, hg_repo, git_root):
        self.name = name
        self.hg_repo = hg_repo          # the served hg repository (local path)
        self.git_root = git_root        # GIT_ROOT; the served git repository is repo.git
        self.git_repo = git_root / "repo.git"
        self.hg_url = self.git_url = None
        self._log = lambda: ""
        self._alive = lambda: True

    def log(self) -> str:
        return self._log()

    def assert_alive(self):
        assert self._alive(), f"{self.name} front end died\n{_server_log(self.log)}"


def cgi_available() -> tuple[bool, str]:
    try:
        p = subprocess.run([binary(), "cgi", "--help"], capture_output=True, text=True,
                           timeout=20, stdin=subprocess.DEVNULL)
    except OSError as e:
        return False, str(e)
    text = p.stdout + p.stderr
    return (p.returncode == 0 and "wsgi-gateway cgi" in text), text[:400]


def served_copies(base, source, cenv):
    """Copies of the source repositories to serve from `base`: (hg repo, git root with
    repo.git). Real copies (no hardlinks into the source): the pushes must not touch it."""
    base.mkdir()
    hg_repo, git_root = base / "served-hg", base / "git-root"
    git_root.mkdir()
    run([HG, "clone", "-q", "-U", "--pull", source["hg"], hg_repo], cenv)
    run([GIT, "clone", "-q", "--bare", "--no-local", source["git"], git_root / "repo.git"],
        cenv)
    return hg_repo, git_root


@pytest.fixture(scope="module", params=["http", "cgi"])
def front(request, work, source, cenv):
    name = request.param
    base = work / name
    hg_repo, git_root = served_copies(base, source, cenv)
    fe = Front(name, hg_repo, git_root)
    app_args = ["--venv", str(VENV)]
    if name == "http":
        hg = Server("hgweb_app", args=app_args, env={"HG_REPO": str(hg_repo)}).start()
        git = Server("git_app", args=app_args, env={"GIT_ROOT": str(git_root)}).start()
        fe.hg_url = f"http://{hg.host_header}/"
        fe.git_url = f"http://{git.host_header}/repo.git"
        fe._log = lambda: f"[hgweb server]\n{hg.log()}\n[git server]\n{git.log()}"
        fe._alive = lambda: hg.alive() and git.alive()
        yield fe
        problems = []
        for label, s in (("hgweb", hg), ("git", git)):
            rc = s.stop()
            if rc != 0:
                problems.append(f"{label} server exited with {rc} on SIGTERM:\n{s.log()[-3000:]}")
        assert not problems, "\n".join(problems)
    else:
        from cgihost import CgiHost, lighttpd_available
        if not lighttpd_available():
            pytest.skip("lighttpd is not installed (tests/run.sh installs it)")
        ok, text = cgi_available()
        assert ok, f"`{binary()} cgi --help` does not describe the cgi command:\n{text}"
        host = CgiHost(base / "lighttpd")
        app_args = ["--chdir", str(APPS_DIR), *app_args]
        hg_path = host.add_script("hg", "hgweb_app", app_args, env={"HG_REPO": str(hg_repo)})
        git_path = host.add_script("git", "git_app", app_args, env={"GIT_ROOT": str(git_root)})
        host.start()
        fe.hg_url = host.url(hg_path)
        fe.git_url = host.url(git_path + "/repo.git")
        fe._log = lambda: f"[lighttpd error log]\n{host.error_log()}"
        fe._alive = host.alive
        yield fe
        host.stop()


def assert_clean_log(fe: Front, before: str):
    """No Python traceback or gateway error appeared in the server-side log."""
    new = fe.log()[len(before):] if fe.log().startswith(before) else fe.log()
    bad = [line for line in new.splitlines()
           if "Traceback" in line or "wsgi-gateway: error" in line or "[ERROR]" in line]
    assert not bad, f"errors in the {fe.name} server-side log:\n{_tail(new, 8000)}"


# ---- hg ------------------------------------------------------------------------------------

def hg_served_tree(fe: Front, cenv, dest: Path) -> dict:
    """The served repository's files at tip, read from disk (not through the server)."""
    run([HG, "-R", fe.hg_repo, "archive", "-q", "--config", "ui.archivemeta=false",
         "-r", "tip", dest], cenv)
    return tree_of_dir(dest)


def hg_log(repo, cenv):
    return out([HG, "-R", repo, "log", "-T", "{node}\n"], cenv).split()


def test_hg_clone(front, source, cenv, tmp_path):
    before = front.log()
    clone = tmp_path / "clone"
    run([HG, "clone", "-q", front.hg_url, clone], cenv, log=front.log)
    got = hg_log(clone, cenv)
    served = hg_log(front.hg_repo, cenv)
    assert got == served, f"clone history differs from the served repository\n{front.log()}"
    # the served repository is a copy of the source (plus whatever the push tests added)
    assert got[-N_COMMITS:] == source["hg_nodes"]
    want = hg_served_tree(front, cenv, tmp_path / "served-tip")
    assert diff_trees(tree_of_dir(clone), want) == ""
    if len(got) == N_COMMITS:
        assert diff_trees(tree_of_dir(clone), source["tree"]) == ""
    assert out([HG, "-R", clone, "manifest", "--debug", "-r", "tip"], cenv) == \
        out([HG, "-R", front.hg_repo, "manifest", "--debug", "-r", "tip"], cenv)
    run([HG, "-R", clone, "verify", "-q"], cenv)
    front.assert_alive()
    assert_clean_log(front, before)


def test_hg_push(front, cenv, tmp_path):
    before = front.log()
    clone = tmp_path / "clone"
    run([HG, "clone", "-q", front.hg_url, clone], cenv, log=front.log)
    payload = random.Random(SEED + 1).randbytes(1_000_000)
    rel = f"pushed/{front.name}-hg.bin"
    write_changes(clone, {rel: (payload, False),
                          "README.txt": ((clone / "README.txt").read_bytes() + b"pushed\n",
                                         False)}, [])
    run([HG, "-R", clone, "commit", "-q", "-A", "-m", "pushed over " + front.name,
         "-d", f"{BASE_DATE + 10 ** 6} 0"], cenv)
    node = out([HG, "-R", clone, "log", "-r", "tip", "-T", "{node}"], cenv)
    run([HG, "-R", clone, "push", front.hg_url], cenv, log=front.log)
    served_tip = out([HG, "-R", front.hg_repo, "log", "-r", "tip", "-T", "{node}"], cenv)
    assert served_tip == node, f"served tip {served_tip} != pushed {node}\n{front.log()}"
    got = run([HG, "-R", front.hg_repo, "cat", "-r", "tip", front.hg_repo / rel], cenv).stdout
    assert got == payload, f"pushed file differs: {len(got)} bytes vs {len(payload)}"
    assert hg_log(front.hg_repo, cenv) == hg_log(clone, cenv)
    run([HG, "-R", front.hg_repo, "verify", "-q"], cenv)
    # and a fresh clone through the server sees the push
    again = tmp_path / "again"
    run([HG, "clone", "-q", front.hg_url, again], cenv, log=front.log)
    assert (again / rel).read_bytes() == payload
    front.assert_alive()
    assert_clean_log(front, before)


# ---- git -----------------------------------------------------------------------------------

def git_served_tree(fe: Front, cenv, rev="HEAD") -> dict:
    data = run([GIT, "--git-dir", fe.git_repo, "archive", "--format=tar", rev], cenv).stdout
    return tree_of_tar(data)


def test_git_clone(front, source, cenv, tmp_path):
    before = front.log()
    clone = tmp_path / "clone"
    run([GIT, "clone", "-q", front.git_url, clone], cenv, log=front.log)
    head = out([GIT, "-C", clone, "rev-parse", "HEAD"], cenv).strip()
    served_head = out([GIT, "--git-dir", front.git_repo, "rev-parse", "HEAD"], cenv).strip()
    assert head == served_head
    assert out([GIT, "-C", clone, "rev-list", "HEAD"], cenv).split()[-N_COMMITS:] == \
        source["git_commits"]
    assert out([GIT, "-C", clone, "ls-tree", "-r", "HEAD"], cenv) == \
        out([GIT, "--git-dir", front.git_repo, "ls-tree", "-r", "HEAD"], cenv)
    assert diff_trees(tree_of_dir(clone), git_served_tree(front, cenv)) == ""
    if head == source["git_commits"][0]:
        assert diff_trees(tree_of_dir(clone), source["tree"]) == ""
    run([GIT, "-C", clone, "fsck", "--no-progress", "--strict"], cenv)
    front.assert_alive()
    assert_clean_log(front, before)


def git_commit_push(fe: Front, cenv, clone: Path, rel: str, payload: bytes, trace: Path):
    write_changes(clone, {rel: (payload, False)}, [])
    run([GIT, "-C", clone, "add", rel], cenv)
    run([GIT, "-C", clone, "commit", "-q", "-m", f"add {rel}"], cenv)
    commit = out([GIT, "-C", clone, "rev-parse", "HEAD"], cenv).strip()
    run([GIT, "-C", clone, "push", "-q", "origin", "HEAD:main"], cenv, log=fe.log,
        extra_env={"GIT_TRACE_CURL": str(trace), "GIT_TRACE_CURL_NO_DATA": "1"})
    served = out([GIT, "--git-dir", fe.git_repo, "rev-parse", "refs/heads/main"], cenv).strip()
    assert served == commit, f"served main {served} != pushed {commit}\n{fe.log()}"
    got = run([GIT, "--git-dir", fe.git_repo, "cat-file", "-p", f"{commit}:{rel}"], cenv).stdout
    assert got == payload, f"pushed blob differs: {len(got)} bytes vs {len(payload)}"
    return commit


def receive_pack_posts(trace: Path) -> list[str]:
    """The request heads git sent for git-receive-pack POSTs, from GIT_TRACE_CURL."""
    heads, cur = [], None
    for line in trace.read_text(errors="replace").splitlines():
        if "=> Send header: POST " in line:
            cur = [line]
            heads.append(cur)
        elif cur is not None and "=> Send header: " in line:
            cur.append(line)
        else:
            cur = None
    return ["\n".join(h) for h in heads if "git-receive-pack" in h[0]]


def test_git_push(front, cenv, tmp_path):
    before = front.log()
    clone = tmp_path / "clone"
    run([GIT, "clone", "-q", front.git_url, clone], cenv, log=front.log)
    rnd = random.Random(SEED + 2)

    # below http.postBuffer (1 MiB): one POST with a Content-Length
    small = rnd.randbytes(900_000)
    trace = tmp_path / "trace-small"
    git_commit_push(front, cenv, clone, f"pushed/{front.name}-small.bin", small, trace)
    posts = receive_pack_posts(trace)
    assert posts and all("Content-Length:" in h for h in posts), "\n\n".join(posts)

    # above http.postBuffer: git streams the pack with Transfer-Encoding: chunked
    big = rnd.randbytes(2_500_000)
    trace = tmp_path / "trace-big"
    commit = git_commit_push(front, cenv, clone, f"pushed/{front.name}-big.bin", big, trace)
    posts = receive_pack_posts(trace)
    assert any("Transfer-Encoding: chunked" in h for h in posts), "\n\n".join(posts)

    run([GIT, "--git-dir", front.git_repo, "fsck", "--no-progress", "--strict"], cenv)
    # a fresh clone through the server has both pushes
    again = tmp_path / "again"
    run([GIT, "clone", "-q", front.git_url, again], cenv, log=front.log)
    assert out([GIT, "-C", again, "rev-parse", "HEAD"], cenv).strip() == commit
    assert (again / f"pushed/{front.name}-big.bin").read_bytes() == big
    assert (again / f"pushed/{front.name}-small.bin").read_bytes() == small
    front.assert_alive()
    assert_clean_log(front, before)
