"""`--proxy-protocol`: every connection starts with a PROXY protocol header (v1 text, v2
binary), accepted only from `--forwarded-allow-ips` peers.

Raw sockets send hand-made headers (v1 TCP4/TCP6/UNKNOWN, v2 IPv4/IPv6/LOCAL/TLVs/SSL, split
in pieces, malformed, missing, incomplete until `--header-timeout`, from an untrusted peer), one
process and under `--workers`. Then a real HAProxy (Debian's `haproxy`) in front, with
`server … send-proxy`, `send-proxy-v2` (to TCP and to a Unix-socket bind, with and without
`proxy-v2-options crc32c`) and `send-proxy-v2-ssl` behind a TLS frontend, in a generated config
on free ports: curl and http.client requests through it, from a source address of their own
(127.0.0.2) to a frontend address of its own (127.0.0.3), and HAProxy's own health checks (v2
sends LOCAL; HAProxy 2.6's v1 names its own connection, TCP4 127.0.0.1).
"""

from __future__ import annotations

import http.client
import ipaddress
import json
import shutil
import socket
import struct
import subprocess
import time

import pytest

from gwclient import RawConn
from gwprocess import run_cli, Server

V2_SIG = b"\r\n\r\n\x00\r\nQUIT\n"
REQUEST = b"GET /pp HTTP/1.1\r\nHost: app.example\r\n\r\n"
KEYS = ("REMOTE_ADDR", "REMOTE_PORT", "SERVER_ADDR", "SERVER_PORT")


def v2(command: int, family: int, body: bytes) -> bytes:
    return V2_SIG + bytes([0x20 | command, family]) + struct.pack("!H", len(body)) + body


def v2_inet(src, dst, sport, dport, tlvs=b"", command=1) -> bytes:
    body = (ipaddress.ip_address(src).packed + ipaddress.ip_address(dst).packed
            + struct.pack("!HH", sport, dport) + tlvs)
    family = 0x11 if ":" not in src else 0x21
    return v2(command, family, body)


def environ_of(conn: RawConn) -> dict:
    r = conn.read_response()
    assert r.status == 200, r
    return json.loads(r.body)


def seen(env: dict) -> dict:
    return {k: env.get(k) for k in KEYS}


def ask(server, header: bytes, request=REQUEST, pieces=None) -> dict:
    """Sends the header then a request on a new connection (in `pieces` if given, one send
    each); returns what the app saw."""
    with server.conn() as c:
        data = header + request
        if pieces:
            c.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            at = 0
            while at < len(data):
                c.send(data[at:at + pieces])
                at += pieces
        else:
            c.send(data)
        return environ_of(c)


def refused(server, data: bytes, log_pattern: str, shutdown=False):
    """The connection is closed unanswered and the error log says why."""
    mark = server.log_mark()
    with server.conn() as c:
        c.send(data)
        if shutdown:
            c.shutdown_write()
        c.assert_closed()
    server.wait_log(log_pattern, since=mark)


@pytest.fixture(scope="module")
def pp_server(tmp_path_factory):
    log = tmp_path_factory.mktemp("pp") / "access.log"
    s = Server("echo_app", args=["--proxy-protocol", "--forwarded-allow-ips", "127.0.0.1,10.0.0.0/8",
                                 "--access-log", str(log), "--header-timeout", "2"]).start()
    s.access_log = log
    yield s
    assert s.stop() == 0


def wait_access(log, needle, timeout=15.0) -> str:
    """The access log's line holding `needle` (the log is written behind the response)."""
    deadline = time.monotonic() + timeout
    while True:
        text = log.read_text() if log.exists() else ""
        for line in text.splitlines():
            if needle in line:
                return line
        if time.monotonic() > deadline:
            raise AssertionError(f"{needle!r} not in the access log within {timeout}s:\n{text}")
        time.sleep(0.02)  # poll interval of a bounded wait on the file


# ---- hand-made headers --------------------------------------------------------------------


def test_v1_tcp4_gives_client_and_destination(pp_server):
    env = ask(pp_server, b"PROXY TCP4 192.0.2.10 198.51.100.1 56324 443\r\n",
              request=b"GET /v1-tcp4 HTTP/1.1\r\nHost: app.example\r\n\r\n")
    assert seen(env) == {"REMOTE_ADDR": "192.0.2.10", "REMOTE_PORT": "56324",
                         "SERVER_ADDR": "198.51.100.1", "SERVER_PORT": "443"}
    # SERVER_NAME still follows Host.
    assert env["SERVER_NAME"] == "app.example"
    # The access log's %h is the client the proxy named.
    line = wait_access(pp_server.access_log, "/v1-tcp4")
    assert line.startswith("192.0.2.10 "), line


def test_v1_tcp6(pp_server):
    env = ask(pp_server, b"PROXY TCP6 2001:db8::1 2001:db8::2 40000 8443\r\n")
    assert seen(env) == {"REMOTE_ADDR": "2001:db8::1", "REMOTE_PORT": "40000",
                         "SERVER_ADDR": "2001:db8::2", "SERVER_PORT": "8443"}


def test_v4_mapped_ipv6_is_shown_as_ipv4(pp_server):
    env = ask(pp_server, b"PROXY TCP6 ::ffff:192.0.2.60 ::ffff:198.51.100.6 6000 80\r\n")
    assert seen(env) == {"REMOTE_ADDR": "192.0.2.60", "REMOTE_PORT": "6000",
                         "SERVER_ADDR": "198.51.100.6", "SERVER_PORT": "80"}


def test_v1_unknown_keeps_the_real_peer(pp_server):
    with pp_server.conn() as c:
        c.send(b"PROXY UNKNOWN\r\n" + REQUEST)
        env = environ_of(c)
        port = str(c.sock.getsockname()[1])
    assert seen(env) == {"REMOTE_ADDR": "127.0.0.1", "REMOTE_PORT": port, "SERVER_ADDR": None,
                         "SERVER_PORT": str(pp_server.port)}


def test_v2_ipv4_and_ipv6_with_tlvs(pp_server):
    env = ask(pp_server, v2_inet("192.0.2.20", "198.51.100.2", 1025, 80))
    assert seen(env) == {"REMOTE_ADDR": "192.0.2.20", "REMOTE_PORT": "1025",
                         "SERVER_ADDR": "198.51.100.2", "SERVER_PORT": "80"}
    # ALPN "h2", a NOOP, an authority: skipped.
    tlvs = b"\x01\x00\x02h2" + b"\x04\x00\x00" + b"\x02\x00\x0bexample.com"
    env = ask(pp_server, v2_inet("2001:db8::7", "2001:db8::8", 65535, 8080, tlvs))
    assert seen(env) == {"REMOTE_ADDR": "2001:db8::7", "REMOTE_PORT": "65535",
                         "SERVER_ADDR": "2001:db8::8", "SERVER_PORT": "8080"}


def test_v2_local_keeps_the_real_peer(pp_server):
    with pp_server.conn() as c:
        c.send(v2(0, 0x00, b"") + REQUEST)
        env = environ_of(c)
        port = str(c.sock.getsockname()[1])
    assert seen(env) == {"REMOTE_ADDR": "127.0.0.1", "REMOTE_PORT": port, "SERVER_ADDR": None,
                         "SERVER_PORT": str(pp_server.port)}
    # LOCAL ignores the addresses even when a sender includes them.
    with pp_server.conn() as c:
        c.send(v2_inet("192.0.2.1", "192.0.2.2", 1, 2, command=0) + REQUEST)
        assert environ_of(c)["REMOTE_ADDR"] == "127.0.0.1"


def test_header_in_pieces_and_keep_alive(pp_server):
    """A header split across reads is put together; later requests on the connection keep
    the client the header named."""
    for header in (b"PROXY TCP4 192.0.2.30 198.51.100.3 5000 443\r\n",
                   v2_inet("192.0.2.30", "198.51.100.3", 5000, 443)):
        for pieces in (1, 3, 7):
            assert ask(pp_server, header, pieces=pieces)["REMOTE_ADDR"] == "192.0.2.30"
        with pp_server.conn() as c:
            c.send(header)
            for _ in range(3):
                c.send(REQUEST)
                assert seen(environ_of(c))["REMOTE_PORT"] == "5000"
        # Pipelined behind the header, in one send.
        with pp_server.conn() as c:
            c.send(header + REQUEST + REQUEST)
            assert environ_of(c)["REMOTE_ADDR"] == environ_of(c)["REMOTE_ADDR"] == "192.0.2.30"


MALFORMED = [
    (REQUEST, "no PROXY header"),
    (b"PROXY TCP4 192.0.2.1 192.0.2.2 1 2\n" + REQUEST, "CRLF"),
    (b"PROXY TCP4 192.0.2.1 192.0.2.2 1 65536\r\n" + REQUEST, "port"),
    (b"PROXY TCP4 192.0.2.1 192.0.2.2 01 2\r\n" + REQUEST, "port"),
    (b"PROXY TCP4 ::1 ::1 1 2\r\n" + REQUEST, "not IPv4"),
    (b"PROXY TCP6 192.0.2.1 ::1 1 2\r\n" + REQUEST, "not IPv6"),
    (b"PROXY TCP4 192.0.2.1 192.0.2.2 1 2 3\r\n" + REQUEST, "two ports"),
    (b"PROXY TCP5 192.0.2.1 192.0.2.2 1 2\r\n" + REQUEST, "protocol"),
    (b"PROXY TCP4 " + b"1" * 120 + b"\r\n", "107"),
    (V2_SIG + b"\x11\x11\x00\x0c" + bytes(12) + REQUEST, "version"),
    (V2_SIG + b"\x23\x11\x00\x0c" + bytes(12) + REQUEST, "command"),
    (V2_SIG + b"\x21\x12\x00\x0c" + bytes(12) + REQUEST, "datagram"),
    (V2_SIG + b"\x21\x41\x00\x0c" + bytes(12) + REQUEST, "unknown address family"),
    (V2_SIG + b"\x21\x21\x00\x0c" + bytes(12) + REQUEST, "shorter"),
    (v2(1, 0x11, bytes(12) + b"\x01\x00\x09ab") + REQUEST, "TLV"),
    (v2(1, 0x11, bytes(12) + b"\x03\x00\x04\x00\x00\x00\x00") + REQUEST, "CRC32C"),
    (b"\r\n\r\n\x00\r\nQUIX\n" + REQUEST, "no PROXY header"),
]


@pytest.mark.parametrize("data,why", MALFORMED, ids=[w for _, w in MALFORMED])
def test_malformed_header_is_closed_and_logged(pp_server, data, why):
    refused(pp_server, data, rf"127\.0\.0\.1:\d+: connection refused: .*{why}.*--proxy-protocol")
    # The server goes on serving others.
    assert ask(pp_server, b"PROXY TCP4 192.0.2.9 192.0.2.8 9 8\r\n")["REMOTE_ADDR"] == "192.0.2.9"


def test_incomplete_header_times_out(pp_server):
    """A header that stops half-way is closed after --header-timeout (2 s here), logged."""
    refused(pp_server, b"PROXY TCP4 192.0.2.1 19",
            r"127\.0\.0\.1:\d+: sent an incomplete PROXY header within --header-timeout")
    refused(pp_server, V2_SIG + b"\x21\x11\x00\x0c\x01",
            r"127\.0\.0\.1:\d+: sent an incomplete PROXY header within --header-timeout")
    refused(pp_server, b"", r"127\.0\.0\.1:\d+: sent no PROXY header within --header-timeout")
    # One the client gives up on is logged at once.
    refused(pp_server, b"PROXY TCP4 192.0", "closed the connection inside its PROXY header",
            shutdown=True)


def test_stop_closes_a_silent_connection_quietly(server_factory):
    """A connection that has sent nothing yet when the server stops is closed like any silent
    one (after the stop's grace), not logged as a proxy that failed to send its header."""
    s = server_factory("echo_app", args=["--proxy-protocol", "--forwarded-allow-ips", "127.0.0.1"])
    silent = s.conn()
    # Accepted: the accept queue is served in order, so once a later connection is answered
    # the silent one has been taken.
    assert ask(s, b"PROXY UNKNOWN\r\n")["REMOTE_ADDR"] == "127.0.0.1"
    assert s.stop() == 0
    silent.assert_closed()
    silent.close()
    assert "PROXY header" not in s.log(), s.log()


def test_proxy_headers_are_judged_as_the_named_clients(pp_server):
    """The client the PROXY header names is the peer the header trust rules judge: its own
    X-Forwarded-For is not believed (a TCP proxy passes the client's bytes as they are)…"""
    forged = b"GET / HTTP/1.1\r\nHost: a\r\nX-Forwarded-For: 6.6.6.6\r\nX-Forwarded-User: root\r\n\r\n"
    env = ask(pp_server, b"PROXY TCP4 192.0.2.40 192.0.2.1 4000 80\r\n", request=forged)
    assert env["REMOTE_ADDR"] == "192.0.2.40"
    assert "HTTP_X_FORWARDED_FOR" not in env and "HTTP_X_FORWARDED_USER" not in env
    # … while a trusted proxy further out (10.0.0.0/8 here) is believed, as without PROXY.
    env = ask(pp_server, b"PROXY TCP4 10.1.2.3 192.0.2.1 4000 80\r\n", request=forged)
    assert env["REMOTE_ADDR"] == "6.6.6.6"
    assert env["HTTP_X_FORWARDED_USER"] == "root"


def test_untrusted_peer_is_refused(server_factory):
    s = server_factory("echo_app", args=["--proxy-protocol", "--forwarded-allow-ips", "10.0.0.0/8"])
    for data in (b"PROXY TCP4 192.0.2.1 192.0.2.2 1 2\r\n" + REQUEST, b""):
        refused(s, data, r"WARN .*127\.0\.0\.1:\d+: connection refused: --proxy-protocol is on "
                         r"and the peer is not in --forwarded-allow-ips")
    assert "GET" not in "\n".join(s.out_lines)


def test_needs_forwarded_allow_ips():
    for extra in ([], ["--workers", "2"]):
        rc, err = run_cli(["serve", "echo_app", "--bind", "127.0.0.1:0", "--proxy-protocol", *extra])
        assert rc == 2, err
        assert "--proxy-protocol needs --forwarded-allow-ips" in err
        # Before a socket is bound.
        assert "listening" not in err


@pytest.mark.parametrize("how", ["toml", "env"])
def test_set_from_config_file_or_environment(server_factory, tmp_path, how):
    if how == "toml":
        cfg = tmp_path / "gw.toml"
        cfg.write_text('proxy-protocol = true\nforwarded-allow-ips = "127.0.0.1"\n')
        s = server_factory("echo_app", args=["--config", str(cfg)])
    else:
        s = server_factory("echo_app", env={"WSGI_GATEWAY_PROXY_PROTOCOL": "true",
                                            "WSGI_GATEWAY_FORWARDED_ALLOW_IPS": "127.0.0.1"})
    assert ask(s, b"PROXY TCP4 192.0.2.70 192.0.2.1 7000 80\r\n")["REMOTE_ADDR"] == "192.0.2.70"


def test_off_by_default_headers_are_requests(echo_server):
    """Without the option a PROXY line is an HTTP request line like any other: a 400."""
    with echo_server.conn() as c:
        c.send(b"PROXY TCP4 192.0.2.1 192.0.2.2 1 2\r\n" + REQUEST)
        assert c.read_response().status == 400


def test_under_workers(server_factory):
    s = server_factory("echo_app",
                       args=["--workers", "2", "--proxy-protocol", "--forwarded-allow-ips", "127.0.0.1"])
    for i in range(6):
        env = ask(s, b"PROXY TCP4 192.0.2.%d 198.51.100.1 %d 443\r\n" % (i, 1000 + i))
        assert seen(env) == {"REMOTE_ADDR": f"192.0.2.{i}", "REMOTE_PORT": str(1000 + i),
                             "SERVER_ADDR": "198.51.100.1", "SERVER_PORT": "443"}
        env = ask(s, v2_inet("2001:db8::5", "2001:db8::6", 7, 8))
        assert env["REMOTE_ADDR"] == "2001:db8::5"
    refused(s, REQUEST, r"connection refused: no PROXY header")
    assert ask(s, b"PROXY UNKNOWN\r\n")["REMOTE_ADDR"] == "127.0.0.1"


# ---- behind a real HAProxy ----------------------------------------------------------------

HAPROXY = shutil.which("haproxy")
needs_haproxy = pytest.mark.skipif(HAPROXY is None, reason="haproxy not installed (apt-get install haproxy)")


def free_port(host="127.0.0.1", family=socket.AF_INET) -> int:
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


OPENSSL = shutil.which("openssl")


def _has_ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as t:
            t.bind(("::1", 0))
        return True
    except OSError:
        return False


HAS_IPV6 = socket.has_ipv6 and _has_ipv6_loopback()


class HAProxy:
    """haproxy -db with a generated config; `ports[name]` are its frontends' ports (`tls`
    only with openssl, which makes its certificate)."""

    def __init__(self, tmp_path, gw_port, gw_unix):
        self.ports = {"v1": free_port("127.0.0.3"), "v2": free_port("127.0.0.3"),
                      "unix": free_port("127.0.0.3")}
        p = self.ports
        v6 = ""
        if HAS_IPV6:
            p["v2_6"] = free_port("::1", socket.AF_INET6)
            v6 = f"""
frontend v2_6
    bind [::1]:{p['v2_6']}
    default_backend gw_v2_crc
"""
        tls = ""
        if OPENSSL:
            key, crt, pem = tmp_path / "key.pem", tmp_path / "crt.pem", tmp_path / "haproxy.pem"
            subprocess.run([OPENSSL, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                            "-subj", "/CN=127.0.0.3", "-keyout", str(key), "-out", str(crt)],
                           check=True, capture_output=True)
            pem.write_bytes(crt.read_bytes() + key.read_bytes())
            p["tls"] = free_port("127.0.0.3")
            tls = f"""
frontend tls
    bind 127.0.0.3:{p['tls']} ssl crt {pem}
    default_backend gw_v2_ssl
backend gw_v2_ssl
    server gw 127.0.0.1:{gw_port} send-proxy-v2-ssl proxy-v2-options crc32c
"""
        self.cfg = tmp_path / "haproxy.cfg"
        self.cfg.write_text(f"""
global
    maxconn 100
defaults
    mode http
    timeout connect 5s
    timeout client 30s
    timeout server 30s
frontend v1
    bind 127.0.0.3:{p['v1']}
    option forwardfor
    default_backend gw_v1
frontend v2
    bind 127.0.0.3:{p['v2']}
    default_backend gw_v2
frontend unix
    bind 127.0.0.3:{p['unix']}
    default_backend gw_unix
backend gw_v1
    server gw 127.0.0.1:{gw_port} send-proxy
backend gw_v2
    server gw 127.0.0.1:{gw_port} send-proxy-v2
backend gw_v2_crc
    server gw 127.0.0.1:{gw_port} send-proxy-v2 proxy-v2-options crc32c
backend gw_unix
    server gw {gw_unix} send-proxy-v2
backend check_v1
    option httpchk GET /health-v1
    server gw 127.0.0.1:{gw_port} send-proxy check check-send-proxy inter 200ms
backend check_v2
    option httpchk GET /health-v2
    server gw 127.0.0.1:{gw_port} send-proxy-v2 check check-send-proxy inter 200ms
# The README's snippet: checks send PROXY too without check-send-proxy.
backend check_readme
    option httpchk GET /health-readme
    server gw 127.0.0.1:{gw_port} send-proxy-v2-ssl check inter 200ms
{v6}{tls}""")
        self.out = tmp_path / "haproxy.log"
        check = subprocess.run([HAPROXY, "-c", "-f", str(self.cfg)], capture_output=True, text=True)
        assert check.returncode == 0, check.stdout + check.stderr
        self.proc = subprocess.Popen([HAPROXY, "-db", "-f", str(self.cfg)],
                                     stdout=open(self.out, "wb"), stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 20
        for name, port in p.items():
            host = "::1" if name == "v2_6" else "127.0.0.3"
            while True:
                assert self.proc.poll() is None, self.out.read_text()
                try:
                    socket.create_connection((host, port), timeout=5).close()
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        raise AssertionError(f"haproxy not listening on {port}: {self.out.read_text()}")
                    time.sleep(0.05)  # poll interval of a bounded wait for the listener

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)


@pytest.fixture(scope="module")
def behind_haproxy(tmp_path_factory):
    if HAPROXY is None:
        pytest.skip("haproxy not installed")
    tmp = tmp_path_factory.mktemp("haproxy")
    sock = tmp / "gw.sock"
    log = tmp / "access.log"
    gw = Server("echo_app", listeners=2,
                args=["--bind", f"unix:{sock}", "--proxy-protocol",
                      "--forwarded-allow-ips", "127.0.0.1,unix", "--access-log", str(log)]).start()
    gw.access_log = log
    proxy = HAProxy(tmp, gw.port, sock)
    yield gw, proxy
    proxy.stop()
    assert gw.stop() == 0


def through(proxy_host, port, path="/", source="127.0.0.2"):
    """http.client through HAProxy from `source`; returns (environ, our address)."""
    h = http.client.HTTPConnection(proxy_host, port, timeout=20,
                                   source_address=(source, 0))
    try:
        h.connect()
        ours = h.sock.getsockname()
        h.request("GET", path, headers={"X-Forwarded-For": "6.6.6.6"})
        r = h.getresponse()
        body = r.read()
        assert r.status == 200, body
        return json.loads(body), ours
    finally:
        h.close()


@needs_haproxy
@pytest.mark.parametrize("frontend", ["v1", "v2", "unix"])
def test_haproxy_send_proxy(behind_haproxy, frontend):
    """The app sees the client's address and port, and the frontend's, as HAProxy saw them;
    XFF (HAProxy's `option forwardfor` appends, the client forged one) comes from a peer that
    is not a trusted proxy (the client), so it is dropped."""
    gw, proxy = behind_haproxy
    port = proxy.ports[frontend]
    env, (addr, cport) = through("127.0.0.3", port, f"/through-{frontend}")
    assert seen(env) == {"REMOTE_ADDR": "127.0.0.2", "REMOTE_PORT": str(cport),
                         "SERVER_ADDR": "127.0.0.3", "SERVER_PORT": str(port)}
    assert "HTTP_X_FORWARDED_FOR" not in env
    line = wait_access(gw.access_log, f"/through-{frontend}")
    assert line.startswith("127.0.0.2 "), line


@needs_haproxy
@pytest.mark.skipif(not HAS_IPV6, reason="no IPv6 loopback on this machine")
def test_haproxy_send_proxy_v2_ipv6(behind_haproxy):
    """Over IPv6, through a backend that adds a CRC32C checksum (verified)."""
    gw, proxy = behind_haproxy
    port = proxy.ports["v2_6"]
    env, (addr, cport, *_) = through("::1", port, source="::1")
    assert seen(env) == {"REMOTE_ADDR": "::1", "REMOTE_PORT": str(cport),
                         "SERVER_ADDR": "::1", "SERVER_PORT": str(port)}


@needs_haproxy
@pytest.mark.skipif(shutil.which("curl") is None, reason="curl not installed")
def test_curl_through_haproxy(behind_haproxy):
    gw, proxy = behind_haproxy
    for frontend in ("v1", "v2"):
        port = proxy.ports[frontend]
        out = subprocess.run(["curl", "-sS", "--interface", "127.0.0.2", "-w", "\n%{local_port}",
                              f"http://127.0.0.3:{port}/curl"],
                             capture_output=True, text=True, timeout=30)
        assert out.returncode == 0, out.stderr
        body, local_port = out.stdout.rsplit("\n", 1)
        env = json.loads(body)
        assert seen(env) == {"REMOTE_ADDR": "127.0.0.2", "REMOTE_PORT": local_port,
                             "SERVER_ADDR": "127.0.0.3", "SERVER_PORT": str(port)}


@needs_haproxy
def test_haproxy_health_checks(behind_haproxy):
    """HAProxy's own checks (`check-send-proxy`): v2 sends LOCAL, served as the real peer
    (127.0.0.1, HAProxy itself); v1 (HAProxy 2.6) names its own connection, 127.0.0.1 too."""
    gw, _ = behind_haproxy
    for path in ("/health-v1", "/health-v2", "/health-readme"):
        line = wait_access(gw.access_log, path)
        assert line.startswith("127.0.0.1 ") and '" 200 ' in line, line


@needs_haproxy
@pytest.mark.skipif(OPENSSL is None or shutil.which("curl") is None, reason="needs openssl and curl")
def test_haproxy_tls_send_proxy_v2_ssl(behind_haproxy):
    """HAProxy terminates TLS and says so in the PROXY v2 header (`send-proxy-v2-ssl`, with a
    CRC32C checksum): the app sees https."""
    gw, proxy = behind_haproxy
    port = proxy.ports["tls"]
    out = subprocess.run(["curl", "-sS", "-k", "--interface", "127.0.0.2", "-w", "\n%{local_port}",
                          f"https://127.0.0.3:{port}/tls"], capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    body, local_port = out.stdout.rsplit("\n", 1)
    env = json.loads(body)
    assert seen(env) == {"REMOTE_ADDR": "127.0.0.2", "REMOTE_PORT": local_port,
                         "SERVER_ADDR": "127.0.0.3", "SERVER_PORT": str(port)}
    assert (env["wsgi.url_scheme"], env.get("HTTPS")) == ("https", "on")
    # Plain HTTP through the same HAProxy stays http.
    env, _ = through("127.0.0.3", proxy.ports["v2"])
    assert env["wsgi.url_scheme"] == "http" and "HTTPS" not in env


def test_v2_ssl_tlv_gives_https(pp_server):
    ssl = b"\x20\x00\x0f\x01\x00\x00\x00\x00" + b"\x21\x00\x07TLSv1.3"
    env = ask(pp_server, v2_inet("192.0.2.50", "198.51.100.5", 5555, 443, ssl))
    assert (env["wsgi.url_scheme"], env.get("HTTPS")) == ("https", "on")
    assert seen(env)["SERVER_PORT"] == "443"
    # The next connection without it is http again.
    env = ask(pp_server, v2_inet("192.0.2.50", "198.51.100.5", 5555, 443))
    assert env["wsgi.url_scheme"] == "http"
