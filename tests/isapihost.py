"""The ISAPI test host: tests/isapi/host.c ("IIS in a test tube") driving an extension.

    harness = build_harness(tmp_dir)                     # gcc, once per session
    host = IsapiHost(harness, workdir, config={"app": "conformance_app"}, args=["--vdir", "/app"])
    host.start()                   # waits for `listening on 127.0.0.1:PORT` (bounded)
    ... requests to host.host:host.port ...
    host.error_log()               # the library's error log (the file named in its config)
    host.failures()                # `HARNESS FAILURE: ...` lines (contract breaches)
    host.command("terminate")      # TerminateExtension with requests in flight -> its line
    host.command("terminate-racing 16", "terminated ")  # ... while 16 HttpExtensionProc
                                   # calls run on with it (see host.c)
    rc = host.stop()               # EOF on stdin: terminate, exit 0 (clean) or 3 (failures)

The extension is the library built next to the server binary (target/debug/
libwsgi_gateway.so; WSGI_GATEWAY_BIN may point elsewhere) unless `lib=` names another .so
(the small C extensions in tests/isapi/). The library reads the TOML written here through
WSGI_GATEWAY_CONFIG. Waiting is always on a real event (a line, a port, a log entry) with
a deadline that only bounds a failure.
"""

from __future__ import annotations

import json
import re
import subprocess
import threading
import time
from pathlib import Path

from gwfiles import ErrorLogFile
from gwprocess import APPS_DIR, REPO, TESTS_DIR, binary, clean_env

SOURCE_DIR = TESTS_DIR / "isapi"
START_TIMEOUT = 60.0   # GetExtensionVersion starts Python and imports the app
STOP_TIMEOUT = 90.0    # EOF -> TerminateExtension (bounded by graceful-timeout) -> exit
LISTEN_RE = re.compile(r"^listening on 127\.0\.0\.1:(\d+)$")
FAILURE = "HARNESS FAILURE:"


def _gcc(args: list[str]) -> None:
    p = subprocess.run(["gcc", *args], capture_output=True, text=True, timeout=120)
    if p.returncode != 0:
        raise RuntimeError(f"gcc {' '.join(args)} failed:\n{p.stdout}{p.stderr}")


def build_harness(outdir: Path) -> Path:
    """Compiles host.c (with -Wall -Wextra -Werror: the harness must stay clean)."""
    out = Path(outdir) / "isapi-host"
    _gcc(["-O1", "-g", "-pthread", "-Wall", "-Wextra", "-Werror", "-o", str(out),
          str(SOURCE_DIR / "host.c"), "-ldl"])
    return out


def build_extension(name: str, outdir: Path) -> Path:
    """Compiles tests/isapi/<name>.c into a shared object (a test extension)."""
    out = Path(outdir) / f"{name}.so"
    _gcc(["-shared", "-fPIC", "-pthread", "-Wall", "-Wextra", "-o", str(out),
          str(SOURCE_DIR / f"{name}.c")])
    return out


def library_path() -> Path:
    """libwsgi_gateway.so beside the binary the other tests run."""
    b = Path(binary())
    if not b.is_absolute():
        b = REPO / b
    return b.parent / "libwsgi_gateway.so"


def library_problem() -> str | None:
    """Why the library cannot be used as an ISAPI extension, or None."""
    lib = library_path()
    if not lib.exists():
        return f"{lib} does not exist (cargo build makes it)"
    p = subprocess.run(["nm", "-D", "--defined-only", str(lib)], capture_output=True,
                       text=True, timeout=60)
    names = set(re.findall(r"\b(GetExtensionVersion|HttpExtensionProc|TerminateExtension)\b",
                           p.stdout))
    missing = {"GetExtensionVersion", "HttpExtensionProc", "TerminateExtension"} - names
    if missing:
        return f"{lib} does not export {sorted(missing)}"
    return None


def toml_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(toml_value(x) for x in v) + "]"
    return json.dumps(str(v))  # a TOML basic string: JSON's escapes are valid TOML ones


def toml(config: dict) -> str:
    return "".join(f"{k} = {toml_value(v)}\n" for k, v in config.items())


class IsapiHost(ErrorLogFile):
    log_label = "ISAPI error log"

    host = "127.0.0.1"

    def __init__(self, harness: Path, workdir: Path, config: dict | None = None,
                 args=(), env: dict | None = None, lib: Path | None = None,
                 config_text: str | None = None, rtld_global: bool = True):
        """`config` becomes the library's TOML (defaults: app conformance_app, pythonpath
        tests/apps, error-log <workdir>/error.log); `config_text` replaces it verbatim.
        `env` is added to the harness process's environment.

        `rtld_global`: the harness dlopens the extension RTLD_GLOBAL. On Windows every .pyd
        imports python3X.dll by name; on Linux Python's C extension modules need libpython's
        symbols in the global scope, which a RTLD_LOCAL load does not give unless the library
        promotes libpython itself. One test (test_isapi.py) checks the library under a local
        load; everything else loads globally so that one missing promotion is one failure."""
        self.harness = Path(harness)
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.lib = Path(lib) if lib else library_path()
        self.log_path = self.workdir / "error.log"
        self.config_path = self.workdir / "wsgi-gateway.toml"
        base = {"app": "conformance_app", "pythonpath": [str(APPS_DIR)],
                "error-log": str(self.log_path)}
        self.config = {**base, **(config or {})}
        self.config_text = config_text
        self.args = [str(a) for a in args] + (["--rtld-global"] if rtld_global else [])
        self.env = env or {}
        self.proc: subprocess.Popen | None = None
        self.port: int | None = None
        self.out_lines: list[str] = []
        self.err_lines: list[str] = []
        self._cond = threading.Condition()
        self._eof = 0  # streams at EOF (2 = both)

    # ---- process ---------------------------------------------------------------------
    def write_config(self) -> None:
        self.config_path.write_text(self.config_text if self.config_text is not None
                                    else toml(self.config))

    def command_line(self) -> list[str]:
        return [str(self.harness), "--lib", str(self.lib), *self.args]

    def launch(self) -> "IsapiHost":
        """Starts the process without waiting for it to listen."""
        self.write_config()
        env = clean_env({"WSGI_GATEWAY_CONFIG": str(self.config_path), **self.env})
        self.proc = subprocess.Popen(self.command_line(), stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     env=env, cwd=self.workdir)
        for stream, lines in ((self.proc.stdout, self.out_lines),
                              (self.proc.stderr, self.err_lines)):
            threading.Thread(target=self._drain, args=(stream, lines), daemon=True).start()
        return self

    def start(self) -> "IsapiHost":
        self.launch()
        with self._cond:
            self._cond.wait_for(lambda: self.port is not None or self._eof == 2,
                                timeout=START_TIMEOUT)
        if self.port is None:
            self.kill()
            raise RuntimeError(f"ISAPI harness did not listen within {START_TIMEOUT}s "
                               f"(exit {self.proc.returncode})\n{self.diagnostics()}")
        return self

    def _drain(self, stream, lines):
        for raw in iter(stream.readline, b""):
            line = raw.decode("utf-8", "replace").rstrip("\r\n")
            with self._cond:
                lines.append(line)
                m = LISTEN_RE.match(line)
                if m and lines is self.out_lines:
                    self.port = int(m.group(1))
                self._cond.notify_all()
        with self._cond:
            self._eof += 1
            self._cond.notify_all()

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def wait_exit(self, timeout: float = STOP_TIMEOUT) -> int | None:
        """Waits for the process (started with launch()) to exit by itself."""
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return None
        with self._cond:
            self._cond.wait_for(lambda: self._eof == 2, timeout=10)
        return self.proc.returncode

    def stop(self, timeout: float = STOP_TIMEOUT) -> int | None:
        """EOF on stdin (terminate + exit); returns the exit status (3 = harness failures)."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            try:
                self.proc.stdin.close()
            except OSError:
                pass
            if self.wait_exit(timeout) is None:
                self.kill()
                raise AssertionError(f"ISAPI harness did not exit within {timeout}s after "
                                     f"EOF on stdin\n{self.diagnostics()}")
        return self.wait_exit(10)

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    # ---- stdin commands and output -----------------------------------------------------
    def out_mark(self) -> int:
        with self._cond:
            return len(self.out_lines)

    def wait_out(self, prefix: str, since: int = 0, timeout: float = 60.0) -> str:
        """The first stdout line from index `since` on that starts with `prefix`."""
        return self._wait_line(lambda line: line.startswith(prefix), since, timeout,
                               f"harness output line starting with {prefix!r}")

    def wait_pending(self, target: str, timeout: float = 60.0) -> str:
        """Waits until HttpExtensionProc returned PENDING for a request for `target`."""
        return self._wait_line(
            lambda line: line.startswith("pending #") and line.endswith(" " + target), 0,
            timeout, f"PENDING for {target!r}")

    def _wait_line(self, matches, since: int, timeout: float, what: str) -> str:
        """The first stdout line from index `since` on that `matches`; fails after `timeout`
        or once the harness has exited without one."""
        found: list[str] = []

        def check():
            found[:] = [line for line in self.out_lines[since:] if matches(line)][:1]
            return bool(found) or self._eof == 2

        with self._cond:
            self._cond.wait_for(check, timeout=timeout)
        if not found:
            raise AssertionError(f"no {what} within {timeout}s\n{self.diagnostics()}")
        return found[0]

    def send(self, cmd: str) -> int:
        """Writes a stdin command without waiting; returns the stdout mark from before it."""
        mark = self.out_mark()
        self.proc.stdin.write(cmd.encode() + b"\n")
        self.proc.stdin.flush()
        return mark

    def command(self, cmd: str, answer: str, timeout: float = 60.0) -> str:
        """Sends a stdin command; returns the harness's answer line (starts with `answer`)."""
        return self.wait_out(answer, self.send(cmd), timeout)

    def terminate(self, timeout: float = 60.0) -> dict:
        """TerminateExtension now; returns the fields of the `terminated` line."""
        line = self.command("terminate", "terminated ", timeout)
        return fields(line)

    def failures(self) -> list[str]:
        with self._cond:
            return [line for line in self.err_lines if line.startswith(FAILURE)]

    def access(self) -> list[dict]:
        """One dict per `access` line (request id, method, target, status, ret, done, ...)."""
        with self._cond:
            lines = [line for line in self.out_lines if line.startswith("access #")]
        return [access_fields(line) for line in lines]

    def wait_access(self, target: str, timeout: float = 30.0) -> dict:
        """The access record of the first request for `target` (waits for it)."""
        deadline = time.monotonic() + timeout
        while True:
            for a in self.access():
                if a["target"] == target:
                    return a
            with self._cond:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or self._eof == 2:
                    break
                self._cond.wait(min(remaining, 1.0))
        raise AssertionError(f"no access line for {target!r}\n{self.diagnostics()}")

    # ---- the library's error log: ErrorLogFile ------------------------------------------
    def log_context(self) -> str:
        return "\n" + self.diagnostics()

    # ---- access -----------------------------------------------------------------------
    @property
    def host_header(self) -> str:
        return f"{self.host}:{self.port}"

    def url(self, path: str) -> str:
        return f"http://{self.host}:{self.port}{path}"

    def address(self) -> tuple[str, int]:
        return (self.host, self.port)

    def diagnostics(self) -> str:
        with self._cond:
            out, err = self.out_lines[-30:], self.err_lines[-60:]
        return ("---- harness stdout (tail) ----\n" + "\n".join(out) +
                "\n---- harness stderr (tail) ----\n" + "\n".join(err) +
                "\n---- error log (tail) ----\n" + self.error_log()[-3000:])


def fields(line: str) -> dict:
    """`key=value` words of a harness line (values as str)."""
    return dict(w.split("=", 1) for w in line.split() if "=" in w)


ACCESS_RE = re.compile(r'^access #(\d+) (\S+) (\S+) (.*?) log="(.*)"$')


def access_fields(line: str) -> dict:
    m = ACCESS_RE.match(line)
    if not m:
        raise AssertionError(f"bad access line {line!r}")
    d = fields(m.group(4))
    d.update(id=int(m.group(1)), method=m.group(2), target=m.group(3), log=m.group(5))
    return d


class ServerView:
    """An IsapiHost seen through gwprocess.Server's client interface (conn, http, host_header,
    log_mark / wait_log with regular expressions over the error log), so tests written for the
    HTTP listener can run against the harness unchanged."""

    def __init__(self, host: IsapiHost):
        self.isapi = host
        self.host, self.port = host.host, host.port

    @property
    def host_header(self) -> str:
        return self.isapi.host_header

    def conn(self, timeout: float = 15.0):
        from gwclient import RawConn
        return RawConn(self.socket(timeout))

    def socket(self, timeout: float = 15.0):
        import socket
        return socket.create_connection(self.isapi.address(), timeout=timeout)

    def http(self, timeout: float = 15.0):
        import http.client
        return http.client.HTTPConnection(self.host, self.port, timeout=timeout)

    def log(self, since: int = 0) -> str:
        return self.isapi.error_log_since(since)

    def log_mark(self) -> int:
        return self.isapi.log_mark()

    def wait_log(self, pattern: str, since: int = 0, timeout: float = 10.0):
        rx = re.compile(pattern)
        deadline = time.monotonic() + timeout
        while True:
            m = rx.search(self.isapi.error_log_since(since))
            if m:
                return m
            if time.monotonic() > deadline:
                raise AssertionError(f"no error-log text matching {pattern!r}\n"
                                     f"{self.isapi.diagnostics()}")
            time.sleep(0.02)  # bounded poll of the log file

    def alive(self) -> bool:
        return self.isapi.alive()
