"""PEP 3333 environ as the app sees it, over real sockets (contract: "environ")."""

import io
import json
import shutil
import subprocess

import pytest

from gwclient import echo, echo_raw, exchange


def req(server, target="/", headers=(), method="GET", version="HTTP/1.1", body=b"", host=True):
    lines = [f"{method} {target} {version}"]
    if host:
        lines.append(f"Host: {server.host_header}")
    lines += [f"{k}: {v}" for k, v in headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def chunked(body: bytes, size=7, ext=b"") -> bytes:
    out = []
    for i in range(0, len(body), size):
        part = body[i:i + size]
        out.append(b"%x%s\r\n%s\r\n" % (len(part), ext, part))
    out.append(b"0\r\n\r\n")
    return b"".join(out)


# ---- targets ---------------------------------------------------------------------------

TARGETS = [
    ("/", "/", ""),
    ("/a/b/c", "/a/b/c", ""),
    ("/a//b///", "/a//b///", ""),
    ("/a%20b", "/a b", ""),
    ("/a%2Fb", "/a/b", ""),
    ("/a%2fb", "/a/b", ""),
    ("/caf%C3%A9", "/caf\xc3\xa9", ""),  # UTF-8 bytes as latin-1 str
    ("/%E2%82%AC/x", "/\xe2\x82\xac/x", ""),
    ("/%7Euser", "/~user", ""),
    ("/%25", "/%", ""),
    ("/a+b", "/a+b", ""),
    ("/semi;p=1", "/semi;p=1", ""),
    ("/p?x=1&y=%20z", "/p", "x=1&y=%20z"),
    ("/p?", "/p", ""),
    ("/p?a=1?b=2", "/p", "a=1?b=2"),
    ("/p?q=%C3%A9&r=%2F", "/p", "q=%C3%A9&r=%2F"),
    ("/p?a+b=c+d", "/p", "a+b=c+d"),
    ("/%2F%2F?%2F", "///", "%2F"),
]


@pytest.mark.parametrize("target,path_info,query", TARGETS, ids=[t[0] for t in TARGETS])
def test_target_mapping(echo_server, target, path_info, query):
    e = echo_raw(echo_server, req(echo_server, target))
    assert e["PATH_INFO"] == path_info
    assert e["QUERY_STRING"] == query
    assert e["SCRIPT_NAME"] == ""
    assert e["REQUEST_URI"] == target
    assert e["RAW_URI"] == target
    assert e["_non_latin1"] == []


def test_query_string_always_present(echo_server):
    e = echo_raw(echo_server, req(echo_server, "/noquery"))
    assert "QUERY_STRING" in e and e["QUERY_STRING"] == ""


@pytest.mark.parametrize("version", ["HTTP/1.0", "HTTP/1.1"])
def test_server_protocol(echo_server, version):
    e = echo_raw(echo_server, req(echo_server, "/", version=version))
    assert e["SERVER_PROTOCOL"] == version


@pytest.mark.parametrize("method", ["GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"])
def test_request_method(echo_server, method):
    e = echo_raw(echo_server, req(echo_server, "/m", method=method,
                                  headers=[("Content-Length", "0")]))
    assert e["REQUEST_METHOD"] == method


def test_extension_method_passed_verbatim(echo_server):
    e = echo_raw(echo_server, req(echo_server, "/m", method="PURGE"))
    assert e["REQUEST_METHOD"] == "PURGE"


def test_core_cgi_and_wsgi_keys(echo_server):
    c = echo_server.conn()
    c.send(req(echo_server, "/core"))
    r = c.read_response()
    assert r.status == 200, r
    e = r.json()
    local_port = c.sock.getsockname()[1]
    c.close()
    assert e["_environ_is_dict"] is True
    assert e["_bad_types"] == []
    assert e["_non_latin1"] == []
    assert e["REQUEST_METHOD"] == "GET"
    assert e["GATEWAY_INTERFACE"] == "CGI/1.1"
    assert e["SERVER_SOFTWARE"].startswith("wsgi-gateway/")
    assert e["SERVER_NAME"] == "127.0.0.1"
    assert e["SERVER_PORT"] == str(echo_server.port)
    assert e["HTTP_HOST"] == echo_server.host_header
    assert e["REMOTE_ADDR"] == "127.0.0.1"
    assert e["REMOTE_PORT"] == str(local_port)
    assert e["wsgi.version"] == [1, 0]
    assert e["wsgi.url_scheme"] == "http"
    assert e["wsgi.multithread"] is True
    assert e["wsgi.multiprocess"] is False
    assert e["wsgi.run_once"] is False
    assert e["wsgi.input_terminated"] is True
    assert e["_has_file_wrapper"] is True
    for absent in ("CONTENT_LENGTH", "CONTENT_TYPE", "REMOTE_USER", "AUTH_TYPE",
                   "HTTP_CONTENT_LENGTH", "HTTP_CONTENT_TYPE"):
        assert absent not in e, absent


# SERVER_PORT is the port the request was received on (RFC 3875 §4.1.15), whatever Host says;
# SERVER_NAME follows Host.
@pytest.mark.parametrize("host,name", [("example.com:1234", "example.com"),
                                       ("example.com:8080", "example.com"),
                                       ("localhost", "localhost"),
                                       ("[::1]:8443", "[::1]")])
def test_server_port_is_the_listening_port_whatever_host_says(echo_server, host, name):
    e = echo_raw(echo_server, f"GET / HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
    assert e["SERVER_NAME"] == name
    assert e["SERVER_PORT"] == str(echo_server.port)
    assert e["HTTP_HOST"] == host


def test_server_port_from_trusted_proxy_forwarded_port(servers):
    s = servers.get("trusted")
    e = echo_raw(s, req(s, headers=[("X-Forwarded-Port", "8443")]))
    assert e["SERVER_PORT"] == "8443"
    # a trusted peer that forwards nothing is an ordinary client: the listening port
    e = echo_raw(s, b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
    assert e["SERVER_PORT"] == str(s.port)


def test_server_port_behind_trusted_proxy_without_forwarded_port(servers):
    """The proxy received the request: its port is what its Host (or X-Forwarded-Host) and
    scheme say, not the port it connected to here."""
    s = servers.get("trusted")
    e = echo_raw(s, b"GET / HTTP/1.1\r\nHost: example.com\r\nX-Forwarded-Proto: https\r\n"
                    b"X-Forwarded-For: 203.0.113.7\r\n\r\n")
    assert (e["SERVER_NAME"], e["SERVER_PORT"], e["wsgi.url_scheme"]) == (
        "example.com", "443", "https")
    e = echo_raw(s, req(s, headers=[("X-Forwarded-Host", "public.example:8443")]))
    assert (e["SERVER_NAME"], e["SERVER_PORT"]) == ("public.example", "8443")


def test_forwarded_port_ignored_from_untrusted_peer(echo_server):
    e = echo_raw(echo_server, b"GET / HTTP/1.1\r\nHost: example.com:1234\r\n"
                              b"X-Forwarded-Port: 8443\r\n\r\n")
    assert e["SERVER_PORT"] == str(echo_server.port)


def test_http10_without_host_uses_listener_address(echo_server):
    e = echo_raw(echo_server, b"GET /nohost HTTP/1.0\r\n\r\n")
    assert "HTTP_HOST" not in e
    assert e["SERVER_NAME"] == "127.0.0.1"
    assert e["SERVER_PORT"] == str(echo_server.port)


def test_absolute_form_overrides_host(echo_server):
    e = echo_raw(echo_server, b"GET http://example.org:8081/abs/p?x=1 HTTP/1.1\r\n"
                              b"Host: other.example\r\n\r\n")
    assert e["PATH_INFO"] == "/abs/p"
    assert e["QUERY_STRING"] == "x=1"
    assert e["SERVER_NAME"] == "example.org"
    assert e["SERVER_PORT"] == str(echo_server.port)


def test_wsgi_errors_reaches_error_log(echo_server):
    mark = echo_server.log_mark()
    echo_raw(echo_server, req(echo_server, "/", headers=[("X-Errors", "errors-marker-7d1f")]))
    echo_server.wait_log("errors-marker-7d1f", since=mark)
    echo_server.wait_log("lines-errors-marker-7d1f", since=mark)
    echo_server.wait_log("print-errors-marker-7d1f", since=mark)


# ---- headers ---------------------------------------------------------------------------

def test_repeated_headers_joined(echo_server):
    e = echo_raw(echo_server, req(echo_server, headers=[("X-Multi", "a"), ("X-Other", "z"),
                                                        ("X-Multi", "b"), ("x-multi", "c")]))
    assert e["HTTP_X_MULTI"] == "a, b, c"
    assert e["HTTP_X_OTHER"] == "z"


def test_repeated_cookie_joined_with_semicolon(echo_server):
    e = echo_raw(echo_server, req(echo_server, headers=[("Cookie", "a=1"), ("Cookie", "b=2")]))
    assert e["HTTP_COOKIE"] == "a=1; b=2"


def test_header_name_case_and_dashes(echo_server):
    e = echo_raw(echo_server, req(echo_server, headers=[("x-lower-case", "v"),
                                                        ("X-MiXeD-CaSe", "w")]))
    assert e["HTTP_X_LOWER_CASE"] == "v"
    assert e["HTTP_X_MIXED_CASE"] == "w"


def test_header_value_ows_trimmed(echo_server):
    e = echo_raw(echo_server, b"GET / HTTP/1.1\r\nHost: h\r\nX-Trim: \t  v  w \t \r\n"
                              b"X-Nospace:x\r\n\r\n")
    assert e["HTTP_X_TRIM"] == "v  w"
    assert e["HTTP_X_NOSPACE"] == "x"


def test_obs_text_value_is_latin1(echo_server):
    e = echo_raw(echo_server, b"GET / HTTP/1.1\r\nHost: h\r\nX-Obs: caf\xe9 \xff\r\n\r\n")
    assert e["HTTP_X_OBS"] == "caf\xe9 \xff"


def test_underscore_headers_dropped(echo_server):
    e = echo_raw(echo_server, req(echo_server, headers=[("X_Under", "1"), ("X-Dash", "2")]))
    assert "HTTP_X_UNDER" not in e
    assert e["HTTP_X_DASH"] == "2"


def test_underscore_header_cannot_shadow_dash_header(echo_server):
    for order in ([("X-Auth", "good"), ("X_Auth", "evil")],
                  [("X_Auth", "evil"), ("X-Auth", "good")]):
        e = echo_raw(echo_server, req(echo_server, headers=order))
        assert e["HTTP_X_AUTH"] == "good"


def test_underscore_headers_refused(servers):
    s = servers.get("refuse")
    (r,), c = exchange(s, req(s, headers=[("X_Under", "1")]))
    assert r.status == 400
    c.assert_closed()
    # without underscores the same server answers normally
    e = echo_raw(s, req(s, headers=[("X-Under", "1")]))
    assert e["HTTP_X_UNDER"] == "1"


def test_content_type_and_length_not_http_keys(echo_server):
    e = echo_raw(echo_server, req(echo_server, "/ct", method="POST",
                                  headers=[("Content-Type", "text/plain; charset=utf-8"),
                                           ("Content-Length", "5")], body=b"hello"))
    assert e["CONTENT_TYPE"] == "text/plain; charset=utf-8"
    assert e["CONTENT_LENGTH"] == "5"
    assert "HTTP_CONTENT_TYPE" not in e and "HTTP_CONTENT_LENGTH" not in e
    assert e["_body"] == "hello"


def test_no_body_no_content_keys(echo_server):
    e = echo_raw(echo_server, req(echo_server, "/nobody"))
    assert "CONTENT_LENGTH" not in e and "CONTENT_TYPE" not in e
    assert e["_body"] == ""


def test_proxy_header_never_http_proxy(echo_server):
    e = echo_raw(echo_server, req(echo_server, headers=[("Proxy", "http://evil.example:8080")]))
    assert "HTTP_PROXY" not in e


UNTRUSTED_REMOVED = [
    ("X-Forwarded-User", "admin", "HTTP_X_FORWARDED_USER"),
    ("X-Remote-User", "admin", "HTTP_X_REMOTE_USER"),
    ("Remote-User", "admin", "HTTP_REMOTE_USER"),
    ("Remote_User", "admin", "HTTP_REMOTE_USER"),
    ("X-Forwarded-For", "203.0.113.9", "HTTP_X_FORWARDED_FOR"),
    ("X-Forwarded-Proto", "https", "HTTP_X_FORWARDED_PROTO"),
    ("X-Forwarded-Host", "evil.example", "HTTP_X_FORWARDED_HOST"),
    ("X-Forwarded-Port", "443", "HTTP_X_FORWARDED_PORT"),
    ("Forwarded", "for=203.0.113.9;proto=https", "HTTP_FORWARDED"),
]


@pytest.mark.parametrize("name,value,key", UNTRUSTED_REMOVED, ids=[u[0] for u in UNTRUSTED_REMOVED])
def test_untrusted_peer_identity_and_forwarding_headers_removed(echo_server, name, value, key):
    e = echo_raw(echo_server, req(echo_server, headers=[(name, value)]))
    assert key not in e
    assert "REMOTE_USER" not in e and "AUTH_TYPE" not in e
    assert e["REMOTE_ADDR"] == "127.0.0.1"
    assert e["wsgi.url_scheme"] == "http"
    assert e["HTTP_HOST"] == echo_server.host_header
    assert e["SERVER_NAME"] == "127.0.0.1"


def test_extra_identity_header_removed(servers):
    s = servers.get("identity")
    e = echo_raw(s, req(s, headers=[("X-Auth-User", "admin"), ("X-Other-User", "kept")]))
    assert "HTTP_X_AUTH_USER" not in e
    assert e["HTTP_X_OTHER_USER"] == "kept"
    assert "REMOTE_USER" not in e


def test_trusted_forwarded_for(servers):
    s = servers.get("trusted")
    e = echo_raw(s, req(s, headers=[("X-Forwarded-For", "203.0.113.7")]))
    assert e["REMOTE_ADDR"] == "203.0.113.7"


def test_trusted_forwarded_for_rightmost_untrusted_hop(servers):
    s = servers.get("trusted")
    e = echo_raw(s, req(s, headers=[("X-Forwarded-For", "198.51.100.1, 203.0.113.7, 127.0.0.1")]))
    assert e["REMOTE_ADDR"] == "203.0.113.7"


def test_trusted_forwarded_proto(servers):
    s = servers.get("trusted")
    e = echo_raw(s, req(s, headers=[("X-Forwarded-Proto", "https")]))
    assert e["wsgi.url_scheme"] == "https"


def test_trusted_forwarded_host(servers):
    s = servers.get("trusted")
    e = echo_raw(s, req(s, headers=[("X-Forwarded-Host", "public.example")]))
    assert e["HTTP_HOST"] == "public.example"
    assert e["SERVER_NAME"] == "public.example"


# A proxy that appends (Apache mod_proxy, chains of proxies) leaves what the client wrote on
# the left of each list: only the entry the last trusted proxy wrote may be believed.
def test_trusted_forwarded_host_rightmost_not_client_written(servers):
    s = servers.get("trusted")
    e = echo_raw(s, req(s, headers=[("X-Forwarded-Host", "evil.example, real.example")]))
    assert e["HTTP_HOST"] == "real.example"
    assert e["SERVER_NAME"] == "real.example"
    assert e["HTTP_X_FORWARDED_HOST"] == "evil.example, real.example"


def test_trusted_forwarded_host_repeated_lines_are_one_list(servers):
    s = servers.get("trusted")
    e = echo_raw(s, req(s, headers=[("X-Forwarded-Host", "evil.example"),
                                    ("X-Forwarded-Host", "real.example")]))
    assert (e["HTTP_HOST"], e["SERVER_NAME"]) == ("real.example", "real.example")


@pytest.mark.parametrize("client,proxy", [("http", "https"), ("https", "http")])
def test_trusted_forwarded_proto_rightmost_not_client_written(servers, client, proxy):
    s = servers.get("trusted")
    e = echo_raw(s, req(s, headers=[("X-Forwarded-Proto", f"{client}, {proxy}")]))
    assert e["wsgi.url_scheme"] == proxy
    assert ("HTTPS" in e) == (proxy == "https")


def test_trusted_forwarded_port_rightmost_not_client_written(servers):
    s = servers.get("trusted")
    e = echo_raw(s, req(s, headers=[("X-Forwarded-Port", "1"), ("X-Forwarded-Port", "8443")]))
    assert e["SERVER_PORT"] == "8443"


def test_trusted_forwarded_header_rightmost_not_client_written(servers):
    s = servers.get("trusted")
    e = echo_raw(s, req(s, headers=[
        ("Forwarded", 'for=198.51.100.66;host=evil.example;proto=https, '
                      'for=203.0.113.7;host="real.example:8080";proto=http')]))
    assert e["REMOTE_ADDR"] == "203.0.113.7"
    assert (e["HTTP_HOST"], e["SERVER_NAME"], e["SERVER_PORT"]) == (
        "real.example:8080", "real.example", "8080")
    assert e["wsgi.url_scheme"] == "http"


def test_trusted_proxy_chain_takes_what_the_outermost_trusted_proxy_wrote(servers):
    """client -> proxy A (127.0.0.1, trusted) -> proxy B -> here. X-Forwarded-For walks left
    past trusted hops to the client; the other lists take the entry at the same position,
    the one proxy A (facing the client) appended."""
    s = servers.get("trusted")
    e = echo_raw(s, req(s, headers=[
        ("X-Forwarded-For", "198.51.100.66, 203.0.113.7, 127.0.0.1"),
        ("X-Forwarded-Host", "evil.example, real.example, inner.internal"),
        ("X-Forwarded-Proto", "http, https, http"),
        ("X-Forwarded-Port", "1, 443, 8000")]))
    assert e["REMOTE_ADDR"] == "203.0.113.7"
    assert (e["HTTP_HOST"], e["SERVER_NAME"]) == ("real.example", "real.example")
    assert e["wsgi.url_scheme"] == "https"
    assert e["SERVER_PORT"] == "443"
    e = echo_raw(s, req(s, headers=[
        ("Forwarded", "for=198.51.100.66;host=evil.example, "
                      "for=203.0.113.7;host=real.example;proto=https, "
                      "for=127.0.0.1;host=inner.internal;proto=http")]))
    assert e["REMOTE_ADDR"] == "203.0.113.7"
    assert (e["HTTP_HOST"], e["wsgi.url_scheme"], e["SERVER_PORT"]) == (
        "real.example", "https", "443")


def test_trusted_proxy_that_replaces_the_header(servers):
    """nginx's `proxy_set_header X-Forwarded-Host $host` leaves one value, whoever appended to
    X-Forwarded-For: that value (set by a trusted proxy) is taken."""
    s = servers.get("trusted")
    e = echo_raw(s, req(s, headers=[("X-Forwarded-For", "203.0.113.7, 127.0.0.1"),
                                    ("X-Forwarded-Host", "real.example")]))
    assert (e["REMOTE_ADDR"], e["HTTP_HOST"]) == ("203.0.113.7", "real.example")


def test_trusted_peer_still_never_sets_remote_user(servers):
    s = servers.get("trusted")
    e = echo_raw(s, req(s, headers=[("X-Forwarded-User", "admin"), ("Remote-User", "admin")]))
    assert "REMOTE_USER" not in e and "AUTH_TYPE" not in e


@pytest.mark.parametrize("allow,honoured", [
    ("10.0.0.0/8,127.0.0.0/8", True),
    ("*", True),
    ("10.0.0.1", False),
    ("::1", False),
])
def test_forwarded_allow_ips_forms(server_factory, allow, honoured):
    s = server_factory("echo_app", args=["--forwarded-allow-ips", allow])
    e = echo_raw(s, req(s, headers=[("X-Forwarded-For", "203.0.113.8"),
                                    ("X-Forwarded-Proto", "https")]))
    if honoured:
        assert e["REMOTE_ADDR"] == "203.0.113.8" and e["wsgi.url_scheme"] == "https"
    else:
        assert e["REMOTE_ADDR"] == "127.0.0.1" and e["wsgi.url_scheme"] == "http"
        assert "HTTP_X_FORWARDED_FOR" not in e


@pytest.fixture
def unix_path():
    import os
    import tempfile
    d = tempfile.mkdtemp(prefix="gw", dir="/tmp")  # short: sun_path holds ~100 bytes
    path = os.path.join(d, "gw.sock")
    yield path
    if os.path.exists(path):
        os.unlink(path)
    os.rmdir(d)


@pytest.mark.parametrize("allow,honoured", [("127.0.0.1", False), ("10.0.0.0/8", False),
                                            ("127.0.0.1,unix", True), ("unix", True),
                                            ("*", True)])
def test_unix_socket_peer_trusted_only_when_listed(server_factory, unix_path, allow, honoured):
    """A Unix-socket peer is trusted only through `unix` (or `*`) in --forwarded-allow-ips, not
    merely because some IP range is listed."""
    s = server_factory("echo_app", bind=f"unix:{unix_path}",
                       args=["--forwarded-allow-ips", allow])
    e = echo_raw(s, b"GET / HTTP/1.1\r\nHost: localhost\r\nX-Forwarded-For: 203.0.113.7\r\n"
                    b"X-Forwarded-Proto: https\r\nX-Forwarded-User: admin\r\n\r\n")
    if honoured:
        assert e["REMOTE_ADDR"] == "203.0.113.7" and e["wsgi.url_scheme"] == "https"
        assert e["HTTP_X_FORWARDED_USER"] == "admin"
    else:
        assert e["REMOTE_ADDR"] == "" and e["wsgi.url_scheme"] == "http"
        for key in ("HTTP_X_FORWARDED_FOR", "HTTP_X_FORWARDED_PROTO", "HTTP_X_FORWARDED_USER"):
            assert key not in e, key


def test_chdir_sets_working_directory(echo_server):
    from gwprocess import APPS_DIR
    e = echo_raw(echo_server, req(echo_server, "/cwd"))
    assert e["_cwd"] == str(APPS_DIR)


def test_process_environment_never_reaches_environ(servers):
    s = servers.get("pollutedenv")
    e = echo_raw(s, req(s, "/env"))
    assert e["HTTP_HOST"] == s.host_header
    assert "REMOTE_USER" not in e
    assert "CONTENT_LENGTH" not in e
    assert e["SERVER_NAME"] == "127.0.0.1"
    assert "GW_TEST_PROCESS_VAR" not in e
    e = echo_raw(s, b"GET /env HTTP/1.0\r\n\r\n")
    assert "HTTP_HOST" not in e


@pytest.mark.parametrize("target,script,path", [
    ("/mnt/x", "/mnt", "/x"),
    ("/mnt/", "/mnt", "/"),
    ("/mnt", "/mnt", ""),
    ("/mnt/a%2Fb?q=1", "/mnt", "/a/b"),
])
def test_script_name_mount(servers, target, script, path):
    s = servers.get("mounted")
    e = echo_raw(s, req(s, target))
    assert e["SCRIPT_NAME"] == script
    assert e["PATH_INFO"] == path


@pytest.mark.parametrize("target", ["/other", "/mntx", "/"])
def test_script_name_outside_mount_is_404(servers, target):
    s = servers.get("mounted")
    (r,), c = exchange(s, req(s, target))
    c.close()
    assert r.status == 404


# ---- bodies ----------------------------------------------------------------------------

SMALL = b"first line\nsecond\n\nlast-no-newline"
LARGE = b"".join(b"line %05d %s\n" % (i, b"=" * (i % 97)) for i in range(4000)) + b"tail"


def expected_linen(body, n):
    f = io.BytesIO(body)
    out = []
    while True:
        c = f.readline(n)
        if not c:
            return out
        out.append(c)


READERS = ["all", "readneg", "n", "line", "linen", "lines", "lineshint", "iter", "readinto"]


def check_pieces(mode, body, size, e):
    got = [p.encode("latin-1") for p in e["_pieces"]]
    assert b"".join(got) == body
    if mode in ("line", "lines"):
        assert got == body.splitlines(keepends=True)
    elif mode == "linen":
        assert got == expected_linen(body, size)
    elif mode == "lineshint":
        assert got == body.splitlines(keepends=True)
    elif mode in ("n", "readinto"):
        assert all(0 < len(p) <= size for p in got)


@pytest.mark.parametrize("mode", READERS)
@pytest.mark.parametrize("framing", ["length", "chunked"])
@pytest.mark.parametrize("which", ["small", "large"])
def test_body_readers(echo_server, mode, framing, which):
    body = SMALL if which == "small" else LARGE
    size = 4 if which == "small" else 1000
    hdrs = [("X-Read", mode), ("X-Read-Size", str(size)), ("Content-Type", "text/plain")]
    if framing == "length":
        hdrs.append(("Content-Length", str(len(body))))
        data = req(echo_server, "/body", method="POST", headers=hdrs, body=body)
    else:
        hdrs.append(("Transfer-Encoding", "chunked"))
        data = req(echo_server, "/body", method="POST", headers=hdrs,
                   body=chunked(body, 7 if which == "small" else 5000))
    e = echo_raw(echo_server, data)
    check_pieces(mode, body, size, e)
    if framing == "length":
        assert e["CONTENT_LENGTH"] == str(len(body))
    else:
        assert "CONTENT_LENGTH" not in e
        assert e["wsgi.input_terminated"] is True
        # The body arrives decoded: an app that saw the header would decode it twice.
        assert "HTTP_TRANSFER_ENCODING" not in e


def test_chunked_body_with_extensions_and_trailers_not_in_environ(echo_server):
    body = b"5;name=value;q=\"quoted ; str\"\r\nhello\r\n6\r\n world\r\n0\r\nX-Trailer: t\r\n\r\n"
    e = echo_raw(echo_server, req(echo_server, "/t", method="POST",
                                  headers=[("Transfer-Encoding", "chunked")], body=body))
    assert e["_body"] == "hello world"
    assert "HTTP_X_TRAILER" not in e


def test_read_after_eof_returns_empty(echo_server):
    for framing in ("length", "chunked"):
        hdrs = [("X-Read", "twice"), ("X-Read-Size", "10")]
        if framing == "length":
            hdrs.append(("Content-Length", str(len(SMALL))))
            body = SMALL
        else:
            hdrs.append(("Transfer-Encoding", "chunked"))
            body = chunked(SMALL)
        e = echo_raw(echo_server, req(echo_server, "/twice", method="POST", headers=hdrs,
                                      body=body))
        assert e["_body"] == SMALL.decode()
        assert e["_extra"] == ["", "", ""]


def test_content_length_zero(echo_server):
    e = echo_raw(echo_server, req(echo_server, "/z", method="POST",
                                  headers=[("Content-Length", "0")]))
    assert e["CONTENT_LENGTH"] == "0"
    assert e["_body"] == ""


def test_get_with_body(echo_server):
    e = echo_raw(echo_server, req(echo_server, "/g", headers=[("Content-Length", "3")],
                                  body=b"abc"))
    assert e["_body"] == "abc"


def test_http10_body(echo_server):
    (r,), c = exchange(echo_server, req(echo_server, "/p10", method="POST", version="HTTP/1.0",
                                        headers=[("Content-Length", "4")], body=b"abcd"))
    assert r.status == 200
    assert r.json()["_body"] == "abcd"
    c.assert_closed()


def test_expect_100_continue(echo_server):
    c = echo_server.conn()
    c.send(req(echo_server, "/expect", method="POST",
               headers=[("Content-Length", "11"), ("Expect", "100-continue")]))
    r = c.read_response(interim=True)
    assert (r.version, r.status) == ("1.1", 100)
    c.send(b"hello there")
    r = c.read_response()
    assert r.status == 200
    assert r.json()["_body"] == "hello there"
    c.close()


def test_expect_100_continue_chunked(echo_server):
    c = echo_server.conn()
    c.send(req(echo_server, "/expect", method="POST",
               headers=[("Transfer-Encoding", "chunked"), ("Expect", "100-continue")]))
    r = c.read_response(interim=True)
    assert r.status == 100
    c.send(chunked(b"chunked after continue"))
    r = c.read_response()
    assert r.status == 200
    assert r.json()["_body"] == "chunked after continue"
    c.close()


def test_expect_on_http10_gets_no_100(echo_server):
    c = echo_server.conn()
    c.send(req(echo_server, "/e10", method="POST", version="HTTP/1.0",
               headers=[("Content-Length", "2"), ("Expect", "100-continue")], body=b"ok"))
    r = c.read_response(interim=True)
    assert r.status == 200, "no 1xx may be sent to an HTTP/1.0 client"
    assert r.json()["_body"] == "ok"
    c.close()


def _pipeline_two(server, first: bytes):
    second = req(server, "/second?after")
    (r1, r2), c = exchange(server, first + second, n=2)
    c.close()
    assert r1.status == 200 and r2.status == 200, (r1, r2)
    e2 = r2.json()
    assert e2["PATH_INFO"] == "/second" and e2["QUERY_STRING"] == "after"
    assert e2["_body"] == ""
    return r1.json(), e2


PIPE_MODES = [("all", 4, "0123456789"), ("partial", 4, "0123"), ("none", 4, ""),
              ("n", 100000, "0123456789"), ("line", 4, "0123456789"),
              ("readinto", 100000, "0123456789")]


@pytest.mark.parametrize("mode,size,want", PIPE_MODES, ids=[f"{m}-{n}" for m, n, _ in PIPE_MODES])
def test_pipelined_after_content_length_body(echo_server, mode, size, want):
    """The body ends at Content-Length: reads never swallow the next pipelined request."""
    e1, _ = _pipeline_two(echo_server, req(echo_server, "/first", method="POST", headers=[
        ("Content-Length", "10"), ("X-Read", mode), ("X-Read-Size", str(size))],
        body=b"0123456789"))
    assert e1["_body"] == want


@pytest.mark.parametrize("mode,size,want", PIPE_MODES, ids=[f"{m}-{n}" for m, n, _ in PIPE_MODES])
def test_pipelined_after_chunked_body(echo_server, mode, size, want):
    e1, _ = _pipeline_two(echo_server, req(echo_server, "/first", method="POST", headers=[
        ("Transfer-Encoding", "chunked"), ("X-Read", mode), ("X-Read-Size", str(size))],
        body=chunked(b"0123456789", 3)))
    assert e1["_body"] == want


def test_body_that_looks_like_a_request_stays_body(echo_server):
    inner = b"GET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n"
    c = echo_server.conn()
    c.send(req(echo_server, "/outer", method="POST", version="HTTP/1.0",
               headers=[("Content-Length", str(len(inner)))], body=inner))
    r = c.read_response()
    assert r.json()["_body"] == inner.decode()
    c.assert_closed()


@pytest.mark.parametrize("framing", ["length", "chunked"])
def test_big_upload_streamed_intact(echo_server, framing):
    import hashlib
    data = bytes(range(256)) * (16 * 4096)  # 16 MiB
    h = echo_server.http(timeout=60)
    hdrs = {"X-Digest": "1", "X-Read": "n", "X-Read-Size": "65536"}
    if framing == "chunked":
        blocks = (data[i:i + 100000] for i in range(0, len(data), 100000))
        h.request("PUT", "/big-up", body=blocks, headers=hdrs, encode_chunked=True)
    else:
        h.request("PUT", "/big-up", body=data, headers=hdrs)
    resp = h.getresponse()
    out = json.loads(resp.read())
    h.close()
    assert out == {"length": len(data), "sha256": hashlib.sha256(data).hexdigest()}


def test_http_client_post(echo_server):
    e = echo(echo_server, "/hc?x=y", method="POST", body=b"x" * 1000,
             headers={"Content-Type": "application/octet-stream"})
    assert e["_body"] == "x" * 1000
    assert e["CONTENT_LENGTH"] == "1000"
    assert e["QUERY_STRING"] == "x=y"


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl not installed")
def test_curl_chunked_upload(echo_server, tmp_path):
    f = tmp_path / "upload.bin"
    data = bytes(range(256)) * 300
    f.write_bytes(data)
    out = subprocess.run(
        ["curl", "-sS", "--max-time", "20", "-H", "Transfer-Encoding: chunked",
         "-H", "Content-Type: application/octet-stream",
         "--data-binary", f"@{f}", f"http://{echo_server.host_header}/curl-up"],
        capture_output=True, timeout=30)
    assert out.returncode == 0, out.stderr
    e = json.loads(out.stdout)
    assert e["_body"].encode("latin-1") == data
    assert "CONTENT_LENGTH" not in e
    assert e["wsgi.input_terminated"] is True
