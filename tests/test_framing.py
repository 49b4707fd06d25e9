"""Response framing, app errors and the iterable lifecycle (contract: "Responses")."""

import email.utils
import shutil
import subprocess
import uuid

import pytest

from gwclient import q
from gwfiles import wait_for_file
from gwprocess import APPS_DIR
from gwresponse import ConnClosed

FRAMING_SRC = (APPS_DIR / "framing_app.py").read_bytes()


def g(server, path, method="GET", version="HTTP/1.1", extra=b"", body=b""):
    host = b"Host: " + server.host_header.encode() + b"\r\n" if version == "HTTP/1.1" else b""
    return (f"{method} {path} {version}\r\n".encode() + host + extra + b"\r\n" + body)


def one(server, path, method="GET", version="HTTP/1.1", extra=b""):
    c = server.conn()
    c.send(g(server, path, method, version, extra))
    return c.read_response(method=method), c


def token():
    return uuid.uuid4().hex[:12]


def assert_reusable(server, c):
    """The connection is still open and answers another request."""
    c.assert_open()
    c.send(g(server, "/hello?i=again"))
    try:
        r = c.read_response()
    except ConnClosed:
        raise AssertionError("server closed a connection that should have stayed open")
    assert r.status == 200 and r.body == b"hello again", r


# ---- Content-Length from the app --------------------------------------------------------

@pytest.mark.parametrize("mode", ["list", "gen", "write"])
def test_app_content_length_honoured(framing_server, mode):
    r, c = one(framing_server, f"/v/cl?declared=10&actual=10&mode={mode}")
    assert r.status == 200
    assert r.header("content-length") == "10"
    assert not r.has("transfer-encoding")
    assert r.body == b"0123456789"
    assert_reusable(framing_server, c)
    c.close()


@pytest.mark.parametrize("mode", ["list", "gen", "write"])
def test_app_content_length_short_closes(framing_server, mode):
    r, c = one(framing_server, f"/v/cl?declared=20&actual=10&mode={mode}")
    assert r.header("content-length") == "20"
    assert r.body == b"0123456789"
    assert not r.complete
    c.assert_closed()
    c.close()


@pytest.mark.parametrize("mode", ["list", "gen", "write"])
def test_app_content_length_long_truncated(framing_server, mode):
    mark = framing_server.log_mark()
    r, c = one(framing_server, f"/v/cl?declared=5&actual=12&mode={mode}")
    assert r.header("content-length") == "5"
    assert r.body == b"01234"
    c.assert_closed()
    c.close()
    framing_server.wait_log(r".", since=mark)  # the dropped bytes are logged


# ---- no Content-Length --------------------------------------------------------------------

def test_single_element_list_gets_content_length(framing_server):
    r, c = one(framing_server, "/list?parts=1")
    assert r.header("content-length") == str(len(b"item-0;"))
    assert not r.has("transfer-encoding")
    assert r.body == b"item-0;"
    assert_reusable(framing_server, c)
    c.close()


def test_multi_element_list_chunked_on_11(framing_server):
    r, c = one(framing_server, "/list?parts=3")
    assert r.chunked and r.complete
    assert not r.has("content-length")
    assert r.body == b"item-0;item-1;item-2;"
    assert_reusable(framing_server, c)
    c.close()


def test_empty_list(framing_server):
    r, c = one(framing_server, "/list?parts=0")
    assert r.status == 200 and r.body == b"" and r.complete
    assert r.chunked or r.header("content-length") == "0"
    assert_reusable(framing_server, c)
    c.close()


@pytest.mark.parametrize("path", ["/v/gen?parts=4", "/list?parts=4"])
def test_close_delimited_on_http10(framing_server, path):
    r, c = one(framing_server, path, version="HTTP/1.0")
    assert r.status == 200
    assert r.version in ("1.0", "1.1")
    assert not r.has("transfer-encoding")
    assert not r.has("content-length")
    assert r.body.count(b"-") == 4
    assert c.eof  # body delimited by close
    c.close()


def test_http10_keepalive_not_self_delimited_closes(framing_server):
    r, c = one(framing_server, "/v/gen?parts=2", version="HTTP/1.0",
               extra=b"Connection: keep-alive\r\n")
    assert not r.has("transfer-encoding")
    assert r.body == b"part-0\npart-1\n"
    assert c.eof
    c.close()


def test_http10_keepalive_with_length_stays_open(framing_server):
    c = framing_server.conn()
    for i in range(3):
        c.send(g(framing_server, f"/v/hello?i={i}", version="HTTP/1.0",
                 extra=b"Connection: keep-alive\r\n"))
        r = c.read_response()
        assert r.body == b"hello %d" % i
        assert "close" not in r.connection_tokens()
        assert "keep-alive" in r.connection_tokens(), "1.0 persistence must be announced"
    c.assert_open()
    c.close()


def test_http10_without_keepalive_closes(framing_server):
    r, c = one(framing_server, "/v/hello?i=1", version="HTTP/1.0")
    assert r.body == b"hello 1"
    c.assert_closed()
    c.close()


def test_generator_streams_chunked(framing_server):
    r, c = one(framing_server, "/v/gen?parts=5")
    assert r.chunked and r.complete
    assert r.body == b"".join(b"part-%d\n" % i for i in range(5))
    assert_reusable(framing_server, c)
    c.close()


@pytest.mark.parametrize("tail", ["0", "1"])
def test_write_callable(framing_server, tail):
    r, c = one(framing_server, f"/v/write?parts=3&tail={tail}")
    want = b"w-0\nw-1\nw-2\n" + (b"tail\n" if tail == "1" else b"")
    assert r.body == want and r.complete
    assert_reusable(framing_server, c)
    c.close()


def test_write_callable_with_content_length(framing_server):
    r, c = one(framing_server, "/v/write?parts=2&cl=8")
    assert r.header("content-length") == "8"
    assert r.body == b"w-0\nw-1\n"
    assert_reusable(framing_server, c)
    c.close()


# ---- HEAD, 204, 304 ---------------------------------------------------------------------

@pytest.mark.parametrize("path", ["/list?parts=1", "/v/hello?i=h"])
def test_head_has_length_but_no_body(framing_server, path):
    rg, c = one(framing_server, path)
    c.close()
    rh, c = one(framing_server, path, method="HEAD")
    assert rh.status == 200
    assert rh.header("content-length") == rg.header("content-length")
    assert rh.body == b""
    assert_reusable(framing_server, c)
    c.close()


def test_head_drains_and_closes_iterable(framing_server, tmp_path):
    m = tmp_path / "head.marker"
    r, c = one(framing_server, f"/v/closing?parts=5&marker={q(m)}", method="HEAD")
    assert r.status == 200 and r.body == b""
    assert_reusable(framing_server, c)
    c.close()
    assert "closed yielded=5" in wait_for_file(m, predicate=lambda t: "closed" in t)


def test_status_reason_goes_out_as_latin1(framing_server):
    # PEP 3333: the status is a latin-1 str, so a reason beyond ASCII is sent as latin-1
    # bytes (the helper decodes the status line as latin-1; UTF-8 would read "TrÃ¨s").
    r, c = one(framing_server, f"/status?code=200&parts=1&reason={q('Très bien')}")
    assert (r.status, r.reason) == (200, "Très bien")
    assert_reusable(framing_server, c)
    c.close()


@pytest.mark.parametrize("code", ["204", "304"])
def test_no_body_statuses(framing_server, tmp_path, code):
    m = tmp_path / f"{code}.marker"
    r, c = one(framing_server, f"/v/status?code={code}&parts=2&marker={q(m)}")
    assert r.status == int(code)
    assert not r.has("transfer-encoding")
    if code == "204":
        assert not r.has("content-length")
    assert_reusable(framing_server, c)  # would fail if body bytes had been sent
    c.close()
    assert "closed yielded=2" in wait_for_file(m, predicate=lambda t: "closed" in t)


def test_keep_alive_after_mixed_responses(framing_server):
    c = framing_server.conn()
    seq = [("GET", "/v/hello?i=1"), ("HEAD", "/v/gen?parts=2"), ("GET", "/v/status?code=204"),
           ("GET", "/v/status?code=304"), ("GET", "/v/gen?parts=2"), ("GET", "/list?parts=1")]
    for method, path in seq:
        c.send(g(framing_server, path, method=method))
        r = c.read_response(method=method)
        assert r.status in (200, 204, 304) and r.complete, (path, r)
    assert_reusable(framing_server, c)
    c.close()


# ---- connection management ---------------------------------------------------------------

def test_client_connection_close(framing_server):
    r, c = one(framing_server, "/v/hello?i=c", extra=b"Connection: close\r\n")
    assert r.body == b"hello c"
    assert "close" in r.connection_tokens()
    c.assert_closed()
    c.close()


def test_app_connection_close_honoured(framing_server):
    r, c = one(framing_server, "/v/app_conn_close")
    assert r.status == 200 and r.body == b"bye!\n"
    c.assert_closed()
    c.close()


def test_pipelined_requests_answered_in_order(framing_server):
    c = framing_server.conn()
    c.send(g(framing_server, "/v/hello?i=1") + g(framing_server, "/v/hello?i=2", method="HEAD")
           + g(framing_server, "/v/gen?parts=2")
           + g(framing_server, "/v/hello?i=4", method="POST", extra=b"Content-Length: 3\r\n",
               body=b"abc")
           + g(framing_server, "/list?parts=2") + g(framing_server, "/v/hello?i=6"))
    bodies = [c.read_response(method=m).body for m in ("GET", "HEAD", "GET", "POST", "GET", "GET")]
    assert bodies == [b"hello 1", b"", b"part-0\npart-1\n", b"hello 4", b"item-0;item-1;",
                      b"hello 6"]
    c.close()


def test_date_and_server_headers(framing_server):
    r, c = one(framing_server, "/v/hello?i=d")
    c.close()
    assert (r.header("server") or "").startswith("wsgi-gateway")
    assert email.utils.parsedate_to_datetime(r.header("date")) is not None
    assert len(r.header_all("date")) == 1 and len(r.header_all("server")) == 1


def test_app_server_and_date_kept(framing_server):
    r, c = one(framing_server, "/v/server_header")
    c.close()
    assert r.header_all("server") == ["custom-server/1"]
    assert r.header_all("date") == ["Mon, 01 Jan 2001 00:00:00 GMT"]


def test_repeated_response_headers_kept(framing_server):
    r, c = one(framing_server, "/v/multi_header")
    c.close()
    assert r.header_all("set-cookie") == ["a=1", "b=2"]


def test_error_statuses_from_app_pass_through(framing_server):
    r, c = one(framing_server, "/v/status?code=404&parts=1")
    assert r.status == 404
    assert_reusable(framing_server, c)
    c.close()


def test_unknown_route_404(framing_server):
    r, c = one(framing_server, "/nope")
    c.close()
    assert r.status == 404 and r.body == b"not found"


# ---- app exceptions -----------------------------------------------------------------------

@pytest.mark.parametrize("route", ["exc_before", "exc_after_start", "exc_first_iter"])
def test_exception_before_headers_is_500_with_traceback_logged(framing_server, route):
    t = token()
    mark = framing_server.log_mark()
    r, c = one(framing_server, f"/v/{route}?token={t}")
    c.close()
    assert r.status == 500
    assert (r.header("content-type") or "").startswith("text/plain")
    assert t.encode() not in r.body, "traceback leaked without --debug"
    framing_server.wait_log(r"Traceback", since=mark)
    framing_server.wait_log(t, since=mark)


def test_connection_state_after_app_500_is_consistent(framing_server):
    """A 500 without Connection: close must leave the connection usable."""
    r, c = one(framing_server, f"/v/exc_before?token={token()}")
    assert r.status == 500
    if "close" in r.connection_tokens():
        c.assert_closed()
    else:
        assert_reusable(framing_server, c)
    c.close()


def test_head_on_streamed_response_sends_no_body(framing_server):
    r, c = one(framing_server, "/v/gen?parts=3", method="HEAD")
    assert r.status == 200 and r.body == b""
    assert not r.has("content-length") or r.header("content-length") == "21"
    assert_reusable(framing_server, c)
    c.close()


def test_empty_chunk_does_not_send_headers(framing_server):
    """Headers go out with the first non-empty chunk: an error after b'' is still a 500."""
    r, c = one(framing_server, f"/v/exc_after_empty?token={token()}")
    assert r.status == 500
    c.close()


@pytest.mark.parametrize("burst", [0, 30])
@pytest.mark.parametrize("mode", ["gen", "write"])
def test_blocks_are_streamed_without_waiting_for_the_app(framing_server, tmp_path, mode, burst):
    """Every block written so far reaches the client while the app waits. With `burst`, the
    blocks after the first are small and back to back: the kernel may merge them (Nagle, see
    --stream-nodelay), but must still send them without the app's next block."""
    _stream_gate(framing_server, tmp_path, mode, burst)


def test_stream_nodelay_streams_every_block(server_factory, tmp_path):
    _stream_gate(server_factory("framing_app", args=["--stream-nodelay"]), tmp_path, "gen", 30)


def _stream_gate(framing_server, tmp_path, mode, burst):
    gate = tmp_path / "gate"
    c = framing_server.conn(timeout=30)
    last = f"burst {burst - 1};".encode() if burst else b"first block;"
    try:
        c.send(g(framing_server, f"/v/stream_gate?mode={mode}&gate={q(gate)}&burst={burst}"))
        r = c.read_head()
        assert r.status == 200 and r.header("transfer-encoding") == "chunked"
        # the blocks must arrive while the app is still blocked on the gate
        while last not in c.buf:
            assert c._fill(), "connection closed before the blocks written so far"
        assert b"second block;" not in c.buf
        gate.write_text("open")
        c.buf = b""
        while not c.buf.endswith(b"0\r\n\r\n"):
            assert c._fill(), "connection closed before the end"
        assert b"second block;" in c.buf
    finally:
        gate.write_text("open")
        c.close()


def test_custom_reason_and_latin1_header_value(framing_server):
    r, c = one(framing_server, "/v/latin1_header")
    c.close()
    assert r.status == 299 and r.reason == "Custom Reason"
    assert r.header("x-latin1") == "caf\xe9"
    assert b"X-Latin1: caf\xe9\r\n" in r.head_bytes


def test_exc_info_replaces_status_before_headers_sent(framing_server):
    r, c = one(framing_server, f"/v/exc_info_replace?token={token()}")
    assert r.status == 503
    assert r.body == b"replacement body"
    c.close()


def test_exception_after_headers_aborts_chunked(framing_server):
    t = token()
    mark = framing_server.log_mark()
    r, c = one(framing_server, f"/v/exc_iter?token={t}")
    assert r.status == 200
    assert r.chunked
    assert not r.complete, "a failed response must not end with the terminating 0-chunk"
    assert r.body == b"first-chunk"
    c.assert_closed()
    c.close()
    framing_server.wait_log(t, since=mark)


def test_exception_after_headers_with_content_length_closes(framing_server):
    r, c = one(framing_server, f"/v/exc_iter?cl=100&token={token()}")
    assert r.header("content-length") == "100"
    assert r.body == b"first-chunk" and not r.complete
    c.assert_closed()
    c.close()


def test_exc_info_after_headers_sent_aborts(framing_server):
    r, c = one(framing_server, f"/v/exc_info_after?token={token()}")
    assert r.status == 200
    assert not r.complete
    assert b"must-not-appear" not in r.body
    c.assert_closed()
    c.close()


def test_debug_puts_traceback_in_500_body(server_factory):
    s = server_factory("framing_app", args=["--debug"])
    t = token()
    r, c = one(s, f"/exc_before?token={t}")
    c.close()
    assert r.status == 500
    assert b"Traceback" in r.body and t.encode() in r.body


BAD = [
    ("status", "abc", r"(?i)status|abc"),
    ("status", "empty", r"(?i)status"),
    ("status", "short", r"(?i)status|20 OK"),
    ("status", "long", r"(?i)status|2000"),
    ("status", "crlf", r"(?i)status|injected"),
    ("status", "nonstr", r"(?i)status|str|int"),
    ("header", "crlf", r"(?i)header|x-bad"),
    ("header", "lf", r"(?i)header|x-bad"),
    ("header", "cr", r"(?i)header|x-bad"),
    ("header", "nul", r"(?i)header|x-bad"),
    ("header", "name_space", r"(?i)header|bad name"),
    ("header", "name_colon", r"(?i)header|x:y"),
    ("header", "name_empty", r"(?i)header"),
    ("header", "value_int", r"(?i)header|x-int|str|int"),
    ("header", "non_latin1", r"(?i)header|x-u|latin"),
    ("header", "not_tuple", r"(?i)header|tuple"),
    ("headers_tuple_items", "", r"(?i)header|tuple"),
    ("hop", "transfer-encoding", r"(?i)transfer-encoding|hop"),
    ("hop", "upgrade", r"(?i)upgrade|hop"),
    ("hop", "te", r"(?i)\bte\b|hop"),
    ("hop", "trailer", r"(?i)trailer|hop"),
    ("hop", "proxy-authenticate", r"(?i)proxy-authenticate|hop"),
    ("hop", "proxy-authorization", r"(?i)proxy-authorization|hop"),
    ("str_chunk", "", r"(?i)bytes|str"),
    ("noniterable", "", r"(?i)iter|int"),
    ("none", "", r"(?i)iter|none"),
    ("no_start_response", "", r"(?i)start_response"),
    ("double_start", "", r"(?i)start_response|already|twice"),
    ("write_str", "", r"(?i)bytes|str"),
]


@pytest.mark.parametrize("kind,what,log_rx", BAD, ids=[f"{k}-{w}" if w else k for k, w, _ in BAD])
def test_invalid_app_response_is_500_and_logged(framing_server, kind, what, log_rx):
    mark = framing_server.log_mark()
    r, c = one(framing_server, f"/bad?kind={kind}&what={q(what)}")
    c.close()
    assert r.status == 500, r
    assert b"evil" not in r.head_bytes and b"Injected" not in r.head_bytes
    assert not r.has("x-bad") and not r.has("upgrade") and not r.has("trailer")
    framing_server.wait_log(log_rx, since=mark)


def test_str_chunk_after_headers_aborts(framing_server):
    mark = framing_server.log_mark()
    r, c = one(framing_server, "/bad?kind=str_chunk_after")
    assert r.status == 200
    assert r.body == b"bytes first" and not r.complete
    c.assert_closed()
    c.close()
    framing_server.wait_log(r"(?i)bytes|str", since=mark)


# ---- close() ------------------------------------------------------------------------------

def test_close_called_on_normal_end(framing_server, tmp_path):
    m = tmp_path / "normal.marker"
    r, c = one(framing_server, f"/v/closing?parts=3&marker={q(m)}")
    assert r.complete and len(r.body) == 48
    c.close()
    assert "closed yielded=3" in wait_for_file(m, predicate=lambda t: "closed" in t)


def test_close_called_on_error_during_iteration(framing_server, tmp_path):
    m = tmp_path / "err.marker"
    r, c = one(framing_server, f"/v/closing?parts=5&fail_at=2&marker={q(m)}")
    assert r.status == 200 and not r.complete
    c.close()
    assert "closed yielded=2" in wait_for_file(m, predicate=lambda t: "closed" in t)


def test_close_called_on_error_before_first_chunk(framing_server, tmp_path):
    m = tmp_path / "err0.marker"
    r, c = one(framing_server, f"/v/closing?parts=5&fail_at=0&marker={q(m)}")
    assert r.status == 500
    c.close()
    assert "closed yielded=0" in wait_for_file(m, predicate=lambda t: "closed" in t)


def test_close_called_on_client_disconnect(framing_server, tmp_path):
    m = tmp_path / "disc.marker"
    c = framing_server.conn()
    c.send(g(framing_server, f"/big?size={1 << 30}&marker={q(m)}"))
    r = c.read_head()
    assert r.status == 200
    c.read_exact(100000)
    c.close()
    text = wait_for_file(m, timeout=30, predicate=lambda t: "closed" in t)
    assert f"sent={1 << 30}" not in text


# ---- big bodies and file_wrapper -----------------------------------------------------------

@pytest.mark.parametrize("cl", ["0", "1"])
def test_big_response(framing_server, cl):
    size = 8 * 1024 * 1024
    h = framing_server.http(timeout=60)
    h.request("GET", f"/big?cl={cl}")
    resp = h.getresponse()
    data = resp.read()
    h.close()
    assert resp.status == 200
    assert len(data) == size
    block = bytes(range(256)) * 256
    assert data == block * (size // len(block))
    if cl == "1":
        assert resp.getheader("content-length") == str(size)
    else:
        assert resp.getheader("transfer-encoding") == "chunked"


@pytest.mark.parametrize("kind", ["file", "bytesio"])
@pytest.mark.parametrize("blk", ["8192", "7"])
def test_file_wrapper(framing_server, kind, blk):
    r, c = one(framing_server, f"/v/file?kind={kind}&blk={blk}")
    assert r.status == 200 and r.complete
    assert r.body == FRAMING_SRC
    assert_reusable(framing_server, c)
    c.close()


@pytest.mark.parametrize("kind", ["file", "bytesio"])
def test_file_wrapper_stops_at_content_length(framing_server, kind):
    r, c = one(framing_server, f"/v/file?kind={kind}&cl=100")
    assert r.header("content-length") == "100"
    assert r.body == FRAMING_SRC[:100]
    assert c.buf == b""
    c.close()


def test_file_wrapper_exact_content_length(framing_server):
    n = len(FRAMING_SRC)
    r, c = one(framing_server, f"/v/file?cl={n}")
    assert r.body == FRAMING_SRC
    assert_reusable(framing_server, c)
    c.close()


# ---- curl ---------------------------------------------------------------------------------

need_curl = pytest.mark.skipif(shutil.which("curl") is None, reason="curl not installed")


@need_curl
def test_curl_get(framing_server):
    out = subprocess.run(["curl", "-sS", "--max-time", "20", "-o", "-", "-w", "%{http_code}",
                          f"http://{framing_server.host_header}/v/gen?parts=3"],
                         capture_output=True, timeout=30)
    assert out.returncode == 0, out.stderr
    assert out.stdout == b"part-0\npart-1\npart-2\n200"


@need_curl
def test_curl_head(framing_server):
    out = subprocess.run(["curl", "-sS", "--max-time", "20", "-I",
                          f"http://{framing_server.host_header}/list?parts=1"],
                         capture_output=True, timeout=30)
    assert out.returncode == 0, out.stderr
    text = out.stdout.decode("latin-1").lower()
    assert text.startswith("http/1.1 200")
    assert "content-length: 7" in text
