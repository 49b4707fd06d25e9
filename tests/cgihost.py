"""A real CGI host for the `wsgi-gateway cgi` front end: lighttpd (mod_cgi) on loopback.

    host = CgiHost(tmp_path)
    path = host.add_script("echo", "echo_app", ["--chdir", str(APPS_DIR)])
    host.add_script("private", "echo_app", [...], auth_user=("alice", "s3cret"))
    host.start()
    ... requests to host.host:host.port, e.g. host.url(path + "/x?y=1") ...
    host.error_log()   # lighttpd's error log; the CGI programs' stderr lands there too
    host.stop()

Each script is a wrapper `#!/bin/sh` + `exec <binary> cgi <app> <args...>` in
<workdir>/docroot/cgi-bin/, executed directly (`cgi.assign = ("" => "")`). lighttpd gives the
program a minimal environment (no PATH): everything else it needs is in the script.

start() waits for the port to accept connections (poll-connect bounded by a deadline); no
fixed sleeps anywhere.
"""

from __future__ import annotations

import base64
import os
import re
import shlex
import shutil
import socket
import subprocess
import time
from pathlib import Path

from gwhelpers import REPO, ErrorLogFile, binary

LIGHTTPD = os.environ.get("LIGHTTPD") or shutil.which("lighttpd") or "/usr/sbin/lighttpd"
START_TIMEOUT = 20.0
# the user lighttpd accepts for scripts added with auth_user=DEFAULT_USER
DEFAULT_USER = ("alice", "wonderland")


def lighttpd_available() -> bool:
    return os.path.exists(LIGHTTPD) and os.access(LIGHTTPD, os.X_OK)


def _abs_binary() -> str:
    """The binary as an absolute path (the wrapper runs in cgi-bin/, not in the repo)."""
    b = Path(binary())
    if b.is_absolute():
        return str(b)
    here = Path.cwd() / b
    return str(here if here.exists() else REPO / b)


def _free_port(host: str) -> int:
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        s.bind((host, 0))
        return s.getsockname()[1]
    finally:
        s.close()


def _lq(s: str) -> str:
    """A lighttpd config string literal."""
    return '"' + str(s).replace("\\", "\\\\").replace('"', '\\"') + '"'


class CgiHost(ErrorLogFile):
    log_label = "lighttpd error log"

    host = "127.0.0.1"

    def __init__(self, workdir: Path, extra_conf: str = ""):
        self.workdir = Path(workdir)
        self.docroot = self.workdir / "docroot"
        self.cgi_dir = self.docroot / "cgi-bin"
        self.cgi_dir.mkdir(parents=True, exist_ok=True)
        self.conf_path = self.workdir / "lighttpd.conf"
        self.log_path = self.workdir / "error.log"
        self.users_path = self.workdir / "htpasswd.plain"
        self.extra_conf = extra_conf
        self.scripts: dict[str, str] = {}
        self.users: dict[str, str] = {}
        self.protected: list[str] = []
        self.credentials: dict[str, tuple[str, str]] = {}  # script name -> (user, password)
        self.proc: subprocess.Popen | None = None
        self.port: int | None = None

    # ---- setup -----------------------------------------------------------------------
    def add_script(self, name: str, app: str | None, args=(), env: dict | None = None,
                   auth_user: tuple[str, str] | None = None) -> str:
        """Write cgi-bin/<name>, a wrapper running `<binary> cgi <app> <args...>`.

        `env` entries are exported by the script. With auth_user=(user, password) lighttpd
        requires HTTP Basic auth for the script (and then sets REMOTE_USER / AUTH_TYPE).
        `app=None` leaves the app out of argv (app from env/config). Returns the URL path.
        """
        if self.proc is not None:
            raise RuntimeError("add_script() must be called before start()")
        if not re.fullmatch(r"[A-Za-z0-9_.-]+", name) or name.startswith("."):
            raise ValueError(f"bad script name {name!r}")
        lines = ["#!/bin/sh"]
        for k, v in (env or {}).items():
            lines.append(f"{k}={shlex.quote(str(v))}")
            lines.append(f"export {k}")
        argv = [_abs_binary(), "cgi"] + ([app] if app else []) + [str(a) for a in args]
        lines.append("exec " + " ".join(shlex.quote(a) for a in argv))
        path = self.cgi_dir / name
        path.write_text("\n".join(lines) + "\n")
        path.chmod(0o755)
        url_path = f"/cgi-bin/{name}"
        self.scripts[name] = url_path
        if auth_user is not None:
            user, password = auth_user
            if ":" in user or "\n" in user + password:
                raise ValueError("user/password unusable in a plain userfile")
            self.users[user] = password
            self.protected.append(url_path)
            self.credentials[name] = (user, password)
        return url_path

    def _config(self) -> str:
        modules = ['"mod_cgi"']
        if self.protected:
            modules = ['"mod_auth"', '"mod_authn_file"'] + modules
        c = [
            f"server.document-root = {_lq(self.docroot)}",
            f"server.bind = {_lq(self.host)}",
            f"server.port = {self.port}",
            f"server.errorlog = {_lq(self.log_path)}",
            # the CGI programs' stderr goes to the same file
            f"server.breakagelog = {_lq(self.log_path)}",
            f"server.pid-file = {_lq(self.workdir / 'lighttpd.pid')}",
            f"server.upload-dirs = ( {_lq(self.workdir)} )",
            f"server.modules = ( {', '.join(modules)} )",
            "server.stream-request-body = 0",
            "server.stream-response-body = 1",
            "server.max-keep-alive-requests = 100",
            'mimetype.assign = ( "" => "application/octet-stream" )',
            '$HTTP["url"] =~ "^/cgi-bin/" {',
            '  cgi.assign = ( "" => "" )',
            '}',
        ]
        if self.protected:
            self.users_path.write_text("".join(f"{u}:{p}\n" for u, p in self.users.items()))
            c += ['auth.backend = "plain"',
                  f"auth.backend.plain.userfile = {_lq(self.users_path)}"]
            for p in self.protected:
                # exactly this script (+ path info), not every URL it is a prefix of
                c += [f'$HTTP["url"] =~ {_lq("^" + p.replace(".", "[.]") + "(/|$)")} {{',
                      '  auth.require = ( "" => ( "method" => "basic", '
                      '"realm" => "wsgi-gateway-tests", "require" => "valid-user" ) )',
                      "}"]
        if self.extra_conf:
            c.append(self.extra_conf)
        return "\n".join(c) + "\n"

    # ---- process ---------------------------------------------------------------------
    def start(self) -> "CgiHost":
        if not lighttpd_available():
            raise RuntimeError(f"lighttpd not found at {LIGHTTPD}")
        self.port = _free_port(self.host)
        self.conf_path.write_text(self._config())
        self.log_path.write_text("")
        check = subprocess.run([LIGHTTPD, "-tt", "-f", str(self.conf_path)],
                               capture_output=True, text=True, timeout=30)
        if check.returncode != 0:
            raise RuntimeError(f"lighttpd rejected its config:\n{check.stdout}{check.stderr}\n"
                               f"{self.conf_path.read_text()}")
        # lighttpd's own stdout/stderr (start-up failures) append to the error log as well
        self._stdout = open(self.log_path, "ab")
        self.proc = subprocess.Popen([LIGHTTPD, "-D", "-f", str(self.conf_path)],
                                     stdin=subprocess.DEVNULL, stdout=self._stdout,
                                     stderr=subprocess.STDOUT, cwd=self.workdir,
                                     env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin"})
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"lighttpd exited with {self.proc.returncode}:\n"
                                   f"{self.error_log()}")
            try:
                socket.create_connection((self.host, self.port), timeout=1.0).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(f"lighttpd not accepting on {self.port} within "
                                       f"{START_TIMEOUT}s\n{self.error_log()}")
                time.sleep(0.02)  # poll interval of the bounded connect loop, not a sync sleep
        return self

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self._stdout.close()

    # ---- access ----------------------------------------------------------------------
    @property
    def host_header(self) -> str:
        return f"{self.host}:{self.port}"

    def url(self, path: str) -> str:
        return f"http://{self.host}:{self.port}{path}"

    def socket(self, timeout: float = 15.0) -> socket.socket:
        return socket.create_connection((self.host, self.port), timeout=timeout)

    def auth_header(self, name: str) -> str:
        """`Authorization` value with the valid credentials of script `name`."""
        return self.basic_auth(*self.credentials[name])

    @staticmethod
    def basic_auth(user: str, password: str) -> str:
        return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
