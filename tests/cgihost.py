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
add_link() puts the binary itself in cgi-bin (the host runs it with no arguments of the
operator's) and add_file() any other script, e.g. a TOML file with a `#!` line.

ApacheHost is the same for Apache httpd's mod_cgi, which (unlike lighttpd) passes the words of
a query without `=` as arguments, shell-escaped; apache_search_words() builds them as it does.

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

from gwfiles import ErrorLogFile
from gwprocess import REPO, binary

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


# The meta-variables every test host sets for a request (tests add or override their own).
BASE_META = {
    "GATEWAY_INTERFACE": "CGI/1.1",
    "SCRIPT_NAME": "/cgi-bin/app",
    "QUERY_STRING": "",
    "SERVER_NAME": "cgi.example",
    "SERVER_PORT": "8080",
    "SERVER_PROTOCOL": "HTTP/1.1",
    "SERVER_SOFTWARE": "test-host/1.0",
    "REMOTE_ADDR": "192.0.2.7",
}


def wait_accepting(host, name):
    """Waits until the started web server `host` accepts on its port (bounded); stops it and
    raises with its error log if it exits or does not."""
    deadline = time.monotonic() + START_TIMEOUT
    while True:
        if host.proc.poll() is not None:
            raise RuntimeError(f"{name} exited with {host.proc.returncode}:\n{host.error_log()}")
        try:
            socket.create_connection((host.host, host.port), timeout=1.0).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                host.stop()
                raise RuntimeError(f"{name} not accepting on {host.port} within "
                                   f"{START_TIMEOUT}s\n{host.error_log()}")
            time.sleep(0.02)  # poll interval of the bounded connect loop, not a sync sleep


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

    def add_link(self, name: str) -> str:
        """cgi-bin/<name> -> the binary: the host runs it itself. Returns the URL path."""
        return self._add(name, lambda path: path.symlink_to(_abs_binary()))

    def add_file(self, name: str, text: str) -> str:
        """cgi-bin/<name>, executable, holding `text`. Returns the URL path."""
        def write(path: Path) -> None:
            path.write_text(text)
            path.chmod(0o755)
        return self._add(name, write)

    def _add(self, name: str, make) -> str:
        if self.proc is not None:
            raise RuntimeError("scripts must be added before start()")
        if not re.fullmatch(r"[A-Za-z0-9_.-]+", name) or name.startswith("."):
            raise ValueError(f"bad script name {name!r}")
        make(self.cgi_dir / name)
        self.scripts[name] = f"/cgi-bin/{name}"
        return self.scripts[name]

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
        wait_accepting(self, "lighttpd")
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


# ---- Apache httpd (mod_cgi) -------------------------------------------------------------

APACHE = os.environ.get("APACHE") or shutil.which("apache2") or "/usr/sbin/apache2"
APACHE_MODULES = Path(os.environ.get("APACHE_MODULES", "/usr/lib/apache2/modules"))
# httpd.h: APACHE_ARG_MAX is _POSIX_ARG_MAX (4096) on Linux; mod_cgi passes at most
# APACHE_ARG_MAX - 2 words.
APACHE_ARG_MAX = 4096
# util.c ap_escape_shell_cmd (the Unix list of gen_test_char.c): each of these gets a `\\`.
APACHE_SHELL_SPECIALS = b"&;`'\"|*?~<>^()[]{}$\\\n"


def _apache_unescape_url(word: bytes) -> bytes:
    """util.c ap_unescape_url as mod_cgi calls it (result ignored): `%XX` decoded, a bad
    escape kept as `%`, and the C string ends at a decoded NUL."""
    out = bytearray()
    i = 0
    while i < len(word):
        c = word[i]
        hexpair = word[i + 1:i + 3]
        if c == 0x25 and len(hexpair) == 2 and all(chr(h) in "0123456789abcdefABCDEF"
                                                      for h in hexpair):
            out.append(int(hexpair, 16))
            i += 3
        else:
            out.append(c)
            i += 1
    return bytes(out).split(b"\0", 1)[0]


def apache_search_words(query: str) -> list[bytes]:
    """The arguments Apache's mod_cgi (default_build_command) gives a CGI program after the
    script's path: none when the query is empty or holds `=`, else its `+`-separated words
    (empty ones kept), each URL-decoded and then shell-escaped."""
    q = query.encode("latin-1")
    if not q or b"=" in q:
        return []
    words = q.split(b"+")[:APACHE_ARG_MAX - 2]
    escaped = []
    for w in words:
        w = _apache_unescape_url(w)
        escaped.append(b"".join(b"\\" + bytes([c]) if c in APACHE_SHELL_SPECIALS else bytes([c])
                                for c in w))
    return escaped


def apache_available() -> bool:
    return (os.path.exists(APACHE) and os.access(APACHE, os.X_OK)
            and (APACHE_MODULES / "mod_cgi.so").exists())


def apache_problem() -> str | None:
    """Why ApacheHost cannot run here, or None."""
    if not apache_available():
        return f"apache2 with mod_cgi not found ({APACHE}, {APACHE_MODULES})"
    if os.geteuid() == 0 and subprocess.run(_UNSHARE + ["true"], capture_output=True).returncode:
        return "running as root and `unshare --user` is not allowed here"
    return None


# Apache refuses to serve as root and would run CGI programs as another user, who cannot
# read a Python installed under /root: as root it runs in a user namespace where it is an
# ordinary user, and its children keep this user's access to files.
_UNSHARE = ["unshare", "--user", "--map-user=65534", "--map-group=65534"]


class ApacheHost(CgiHost):
    """Apache httpd with mod_cgi (prefork) on loopback: its own config, run in the
    foreground; scripts under /cgi-bin/ via ScriptAlias. `setenv` entries become `SetEnv`."""

    log_label = "Apache error log"

    def __init__(self, workdir: Path, setenv: dict | None = None):
        super().__init__(workdir)
        self.conf_path = self.workdir / "httpd.conf"
        self.setenv = dict(setenv or {})

    def _config(self) -> str:
        def q(s) -> str:
            return '"' + str(s).replace("\\", "\\\\").replace('"', '\\"') + '"'
        modules = ["mpm_prefork", "authz_core", "alias", "cgi", "env"]
        c = [f"ServerRoot {q(self.workdir)}",
             f"DefaultRuntimeDir {q(self.workdir)}",
             f"PidFile {q(self.workdir / 'httpd.pid')}",
             f"Mutex file:{self.workdir} default",
             *(f"LoadModule {m}_module {q(APACHE_MODULES / f'mod_{m}.so')}" for m in modules),
             f"ServerName {self.host}",
             f"Listen {self.host}:{self.port}",
             f"ErrorLog {q(self.log_path)}",
             "LogLevel warn",
             "StartServers 1",
             "MinSpareServers 1",
             "MaxSpareServers 2",
             f"DocumentRoot {q(self.docroot)}",
             f"ScriptAlias /cgi-bin/ {q(str(self.cgi_dir) + '/')}",
             f"<Directory {q(self.cgi_dir)}>",
             "  Require all granted",
             "</Directory>",
             *(f"SetEnv {k} {q(v)}" for k, v in self.setenv.items())]
        return "\n".join(c) + "\n"

    def start(self) -> "ApacheHost":
        problem = apache_problem()
        if problem:
            raise RuntimeError(problem)
        self.port = _free_port(self.host)
        self.conf_path.write_text(self._config())
        self.log_path.write_text("")
        prefix = _UNSHARE if os.geteuid() == 0 else []
        env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C"}
        check = subprocess.run(prefix + [APACHE, "-t", "-f", str(self.conf_path)],
                               capture_output=True, text=True, timeout=30, env=env)
        if check.returncode != 0:
            raise RuntimeError(f"apache2 rejected its config:\n{check.stdout}{check.stderr}\n"
                               f"{self.conf_path.read_text()}")
        self._stdout = open(self.log_path, "ab")
        # Its own session: on stop, httpd signals its whole process group.
        self.proc = subprocess.Popen(prefix + [APACHE, "-DFOREGROUND", "-f", str(self.conf_path)],
                                     stdin=subprocess.DEVNULL, stdout=self._stdout,
                                     stderr=subprocess.STDOUT, cwd=self.workdir, env=env,
                                     start_new_session=True)
        wait_accepting(self, "apache2")
        return self
