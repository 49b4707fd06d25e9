"""start_response over the HTTP listener: which statuses an app may give as its final
response."""

import pytest

from gwhelpers import exchange


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
