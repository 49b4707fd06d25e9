"""start_response and write() over the HTTP listener: which statuses an app may give as its
final response, and write() used from two app threads at once."""

import pytest

from gwclient import RawConn, exchange


def get(target, connection=None):
    extra = f"Connection: {connection}\r\n" if connection else ""
    return f"GET {target} HTTP/1.1\r\nHost: t\r\n{extra}\r\n".encode()


# ---- a final status must be 200-599 --------------------------------------------------------

@pytest.mark.parametrize("code,line", [("100", "100 Continue"), ("199", "199 X"),
                                       ("600", "600 X"), ("099", "099 X")])
def test_final_status_outside_200_599_is_500_and_keep_alive_survives(servers, code, line):
    """A 1xx given as the final response would be sent with no final one after it: a proxy in
    front would wait for the real response and pair the next one with the wrong request."""
    s = servers.get("conformance")
    mark = s.log_mark()
    with s.conn() as c:
        c.send(get(f"/app/_/final-status/{code}"))
        r = c.read_response(interim=True)
        assert r.status == 500, r
        assert b"final status body" not in r.body
        assert "close" not in r.connection_tokens()
        # the same connection carries the next request
        c.send(get("/app/_/fixed", connection="close"))
        r2 = c.read_response()
        assert (r2.status, r2.body) == (200, b"fixed body\n"), r2
        assert c.read_to_eof() == b""
    s.wait_log(line, since=mark)


def test_final_status_200_and_599_accepted(servers):
    s = servers.get("conformance")
    for code in (200, 599):
        (r,), c = exchange(s, get(f"/app/_/status/{code}", connection="close"))
        c.close()
        assert r.status == code


# ---- write() and start_response() from another thread -------------------------------------

def test_write_from_two_threads_is_a_clean_error_not_a_panic(server_factory):
    """tests/apps/write_race_app.py: one app thread is blocked inside write() (the client does
    not read yet, --write-buffer 0); the other calls write() and start_response(exc_info).
    Both must get a Python exception the app can catch, not a Rust panic (PanicException)."""
    s = server_factory("write_race_app", args=["--write-buffer", "0", "--threads", "2"])
    c = s.conn(timeout=30)
    mark = s.log_mark()
    c.send(get("/race", connection="close"))
    m = s.wait_log(r"race-outcome: write=(\w+) start_response=(\w+)", since=mark, timeout=30)
    r = c.read_head()
    assert r.status == 200 and r.header("content-length") == str(32 << 20), r
    got = len(c.buf)  # counted, not kept: 32 MiB
    while chunk := c.sock.recv(1 << 20):
        got += len(chunk)
    c.close()
    assert got == 32 << 20
    assert m.group(1) == "RuntimeError" and m.group(2) == "RuntimeError", m.group(0)
    log = s.log(mark)
    assert "panicked" not in log and "PanicException" not in log, log[-3000:]
    assert "race-writer-error" not in log, log[-3000:]
    # the server keeps serving
    assert echo_ok(s)


def echo_ok(s):
    c = RawConn(s.socket())
    c.send(get("/", connection="close"))
    r = c.read_response()
    c.close()
    return r.status == 200

