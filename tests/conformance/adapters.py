"""Front-end adapters for the conformance suite: same case, different front end.

An adapter knows how to reach tests/apps/conformance_app.py through one front end and how
to turn a case (cases.py) into raw request bytes for it. `run(case)` returns a Result,
which unpacks as (status, headers, body, environ_seen_or_None).

Adding a front end = one subclass registered in ADAPTERS (and its name in
cases.FRONT_END_ENVIRON, plus per-case overrides/skips where it legitimately differs).
"""

from __future__ import annotations

import json
import re
import socket
from dataclasses import dataclass, field

from cgihost import DEFAULT_USER, CgiHost
from gwclient import RawConn
from gwprocess import binary, program_is_script
from gwresponse import ConnClosed, Response


@dataclass
class Result:
    status: int
    headers: list[tuple[str, str]]
    body: bytes
    environ: dict | None
    read: dict | None = None          # what the app says it read from wsgi.input
    complete: bool = True             # the response framing ended properly
    trailing: bytes = b""             # bytes after the framed response, before EOF
    reason: str = ""
    raw_head: bytes = b""
    app_json: dict | None = field(default=None, repr=False)

    def __iter__(self):
        return iter((self.status, self.headers, self.body, self.environ))

    def header(self, name):
        return Response.header(self, name)

    def header_all(self, name):
        return Response.header_all(self, name)


def chunk_body(body: bytes, size: int) -> bytes:
    out = []
    for i in range(0, len(body), size):
        part = body[i:i + size]
        out.append(b"%x\r\n%s\r\n" % (len(part), part))
    out.append(b"0\r\n\r\n")
    return b"".join(out)


def _enc(s) -> bytes:
    return s if isinstance(s, bytes) else str(s).encode("latin-1")


class Adapter:
    """Base: raw HTTP/1.1 to some listener in front of the conformance app."""

    name = "?"
    io_timeout = 60.0

    def __init__(self, request):
        self.request = request

    @classmethod
    def not_applicable(cls) -> str | None:
        """Why this front end is not part of the run (its cases are skipped), or None."""
        return None

    # -- to be provided ------------------------------------------------------------------
    def address(self) -> tuple[str, int]:
        raise NotImplementedError

    def script(self, case) -> str:
        """SCRIPT_NAME of the app for this case (the prefix put before case targets)."""
        return ""

    def host_header(self) -> str:
        host, port = self.address()
        return f"{host}:{port}"

    def diagnostics(self) -> str:
        """Log text to show when a case fails."""
        return ""

    def log_mark(self):
        """A position in the front end's error log (see wait_log)."""
        raise NotImplementedError

    def wait_log(self, needle: str, since) -> None:
        """Wait (bounded) until `needle` appears in the error log after `since`; raise
        AssertionError if it does not."""
        raise NotImplementedError

    # -- shared ----------------------------------------------------------------------------
    def context(self, case) -> dict:
        return {"script": self.script(case), "port": str(self.address()[1]),
                "host_header": self.host_header()}

    def credentials(self, case) -> tuple[str, str]:
        """User and password sent for cases with auth=True."""
        return DEFAULT_USER

    def extra_headers(self, case) -> list[tuple[str, str]]:
        if case.get("auth"):
            return [("Authorization", CgiHost.basic_auth(*self.credentials(case)))]
        return []

    def build(self, case) -> bytes:
        target = case["target"]
        if target == "" or target.startswith("/"):
            target = self.script(case) + target
        lines = [_enc(f"{case['method']} ") + _enc(target) + _enc(f" {case['version']}")]
        names = {str(k).lower() for k, _ in case["headers"]}
        if case.get("host", True) and "host" not in names:
            lines.append(_enc(f"Host: {self.host_header()}"))
        for k, v in self.extra_headers(case):
            lines.append(_enc(f"{k}: {v}"))
        for k, v in case["headers"]:
            lines.append(_enc(k) + b": " + _enc(v))
        if "connection" not in names:
            lines.append(b"Connection: close")
        body = case["body"]
        if case["framing"] == "length":
            lines.append(_enc(f"Content-Length: {len(body)}"))
        elif case["framing"] == "chunked":
            lines.append(b"Transfer-Encoding: chunked")
            body = chunk_body(body, case.get("chunk", 4096))
        return b"\r\n".join(lines) + b"\r\n\r\n" + body

    def run(self, case) -> Result:
        data = self.build(case)
        s = socket.create_connection(self.address(), timeout=self.io_timeout)
        c = RawConn(s)
        try:
            c.send(data)
            r = c.read_response(method=case["method"])
            trailing = b""
            try:
                trailing = c.read_to_eof()
            except (ConnClosed, OSError):
                pass
        finally:
            c.close()
        res = Result(status=r.status, headers=r.headers, body=r.body, environ=None,
                     complete=r.complete, trailing=trailing, reason=r.reason,
                     raw_head=r.head_bytes)
        ct = (r.header("content-type") or "").lower()
        if ct.startswith("application/json") and r.body and not case["target"].startswith("/_/"):
            try:
                res.app_json = json.loads(r.body.decode("utf-8"))
            except ValueError:
                res.app_json = None
            if isinstance(res.app_json, dict) and "environ" in res.app_json:
                res.environ = res.app_json["environ"]
                res.read = res.app_json.get("read")
        return res


class HttpAdapter(Adapter):
    """The gateway's own HTTP/1.1 listener (`wsgi-gateway serve conformance_app`)."""

    name = "http"

    def __init__(self, request):
        super().__init__(request)
        self.server = request.getfixturevalue("servers").get("conformance")

    def address(self):
        return (self.server.host, self.server.port)

    def script(self, case):
        # Mounted (--script-name), like the CGI script: an empty PATH_INFO is reachable.
        return "/app"

    def diagnostics(self):
        return self.server.log()[-4000:]

    def log_mark(self):
        return self.server.log_mark()

    def wait_log(self, needle, since):
        self.server.wait_log(re.escape(needle), since=since)


class CgiAdapter(Adapter):
    """lighttpd (mod_cgi) in front of `wsgi-gateway cgi conformance_app` (tests/cgihost.py)."""

    name = "cgi"

    def __init__(self, request):
        super().__init__(request)
        self.host = request.getfixturevalue("cgi_host")

    def address(self):
        return (self.host.host, self.host.port)

    @staticmethod
    def _script_name(case):
        return "conformance-auth" if case.get("auth") else "conformance"

    def script(self, case):
        return self.host.scripts[self._script_name(case)]

    def credentials(self, case):
        return self.host.credentials.get(self._script_name(case), DEFAULT_USER)

    def diagnostics(self):
        return self.host.error_log()[-4000:]

    def log_mark(self):
        return self.host.log_mark()

    def wait_log(self, needle, since):
        self.host.wait_log(needle, since=since)


class IsapiAdapter(Adapter):
    """The ISAPI library under tests/isapi/host.c ("IIS in a test tube", tests/isapihost.py),
    mounted at /app (APPL_MD_PATH /LM/W3SVC/1/ROOT/app), accepting IIS Basic auth for the
    test user (anonymous without an Authorization header)."""

    name = "isapi"

    @classmethod
    def not_applicable(cls):
        # The ISAPI front end is the embedder's library (libwsgi_gateway.so, built by cargo
        # beside the binary). The Linux wheel has no such library: its console script runs the
        # extension module in the user's python. (The Windows wheel carries the ISAPI DLL.)
        if program_is_script():
            return ("ISAPI is the embedder library built beside the binary; "
                    f"{binary()} is the wheel's console script, which has none")
        return None

    def __init__(self, request, host=None):
        """`host`: another IsapiHost to run cases against (default: the shared one)."""
        super().__init__(request)
        self.host = host or request.getfixturevalue("isapi_hosts").get("conformance")

    def address(self):
        return self.host.address()

    def script(self, case):
        return "/app"

    def diagnostics(self):
        return self.host.diagnostics()[-4000:]

    def log_mark(self):
        return self.host.log_mark()

    def wait_log(self, needle, since):
        self.host.wait_log(needle, since=since)


# front-end name -> adapter class; the conformance test runs every case on each
ADAPTERS = {cls.name: cls for cls in (HttpAdapter, CgiAdapter, IsapiAdapter)}
