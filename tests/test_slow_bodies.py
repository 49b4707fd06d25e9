"""Slow request bodies and slow response readers hold no worker, and cannot hold a
connection for ever (issue 16, items 3 and 14).

- The unread rest of a body is drained by the reactor after the response, not by a worker.
- With `Expect: 100-continue` a small body is gathered by the server (which sends the
  `100 Continue` itself) before the app is called.
- A body or a response read slower than the minimum data rate (240 bytes/s after a 5 s grace,
  as Kestrel's) is dropped and logged; only waiting on the client counts.
- --write-buffer-total caps the response bytes queued across connections.

The clients trickle on purpose (a client's pace, not synchronisation); everything the tests
wait for is a condition with a bound: a response, a log line, a file.
"""

import os
import socket
import threading
import time

from gwclient import RawConn, q, slow_reader
from gwfiles import wait_for_file


def post_head(server, path, length, extra=b""):
    return (f"POST {path} HTTP/1.1\r\nHost: {server.host_header}\r\n"
            f"Content-Length: {length}\r\n").encode() + extra + b"\r\n"


def get(server, path):
    return f"GET {path} HTTP/1.1\r\nHost: {server.host_header}\r\n\r\n".encode()


def get_hello(server, timeout):
    """A plain request on a new connection: answered only if a worker is free."""
    with server.conn(timeout=timeout) as c:
        c.send(f"GET /free HTTP/1.1\r\nHost: {server.host_header}\r\nX-Read: none\r\n\r\n"
               .encode())
        return c.read_response()


def still_open(c: RawConn):
    """The server has not closed `c` (nothing to read, no EOF, no reset)."""
    c.sock.setblocking(False)
    try:
        data = c.sock.recv(1, socket.MSG_PEEK)
    except BlockingIOError:
        return True
    finally:
        c.sock.setblocking(True)
    return False if data == b"" else True


def test_unread_body_rest_is_drained_without_a_worker(server_factory):
    """Two clients send 64 KiB + 1 byte of a 200 KB body the app never reads, then stop:
    both get their response, and with only two worker threads a third client is still served
    while both connections wait for their rest. One then sends the rest and a second request
    on the same connection: the rest is discarded and the connection serves again."""
    s = server_factory("echo_app", args=["--threads", "2", "--body-timeout", "60",
                                         "--min-request-body-rate", "0"])
    stalled = []
    for i in range(2):
        c = s.conn(timeout=30)
        c.send(post_head(s, f"/unread{i}", 200_000, b"X-Read: none\r\n") + b"x" * (65536 + 1))
        r = c.read_response()
        assert r.status == 200, r
        stalled.append(c)
    r = get_hello(s, timeout=20)
    assert r.status == 200, r
    assert all(still_open(c) for c in stalled), "the stalled clients should still be waited for"
    c = stalled[0]
    c.send(b"x" * (200_000 - 65537)
           + f"GET /again HTTP/1.1\r\nHost: {s.host_header}\r\nX-Read: none\r\n\r\n".encode())
    r = c.read_response()
    assert r.status == 200 and r.json()["PATH_INFO"] == "/again", r
    for c in stalled:
        c.close()


def test_expect_continue_small_body_is_gathered_before_the_app(server_factory):
    """`Expect: 100-continue` with a 10-byte body: the server sends `100 Continue` and waits
    for the body itself. Two clients that then send 1 byte and stop hold neither of the two
    worker threads; when they finish, the app gets the whole body."""
    s = server_factory("echo_app", args=["--threads", "2"])
    stalled = []
    for i in range(2):
        c = s.conn(timeout=30)
        c.send(post_head(s, f"/expect{i}", 10, b"Expect: 100-continue\r\n"))
        interim = c.read_response(interim=True)
        assert interim.status == 100, interim
        c.send(b"a")
        stalled.append(c)
    r = get_hello(s, timeout=20)
    assert r.status == 200, r
    for i, c in enumerate(stalled):
        c.send(b"bcdefghij")
        r = c.read_response()
        assert r.status == 200, r
        assert r.json()["_body"] == "abcdefghij"
        assert r.json()["PATH_INFO"] == f"/expect{i}"
        c.close()


def test_expect_continue_refused_length_gets_no_continue(server_factory):
    """A declared length over --max-body-size is refused with 413 before any 100 Continue."""
    s = server_factory("echo_app", args=["--max-body-size", "5"])
    c = s.conn(timeout=30)
    c.send(post_head(s, "/big", 10, b"Expect: 100-continue\r\n"))
    r = c.read_response(interim=True)
    assert r.status == 413, r
    c.close()


def trickle(c: RawConn, data: bytes, stop: threading.Event, every=1.0):
    """Sends `data` one byte every `every` seconds until done, stopped, or refused."""
    for b in data:
        if stop.wait(every):
            return
        try:
            c.sock.send(bytes([b]))
        except OSError:
            return


def test_trickled_body_is_dropped_with_the_default_rate(server_factory):
    """Defaults: a body trickled at 1 byte/s (each byte well inside --body-timeout) is
    dropped with 408 within 30 s, and the log names the rate."""
    s = server_factory("echo_app")
    mark = s.log_mark()
    c = s.conn(timeout=40)
    c.send(post_head(s, "/trickle", 100))
    stop = threading.Event()
    t = threading.Thread(target=trickle, args=(c, b"y" * 100, stop), daemon=True)
    start = time.monotonic()
    t.start()
    try:
        r = c.read_response()
    finally:
        stop.set()
    elapsed = time.monotonic() - start
    assert r.status == 408, r
    assert elapsed < 30, f"dropped only after {elapsed:.1f}s"
    print(f"trickled body dropped after {elapsed:.1f}s")
    s.wait_log(r"408 for POST /trickle: request body arrived slower than "
               r"--min-request-body-rate", since=mark)
    c.close()


def test_trickled_body_the_app_is_reading_is_dropped(server_factory):
    """A large body (the app streams it) that slows to 1 byte/s after its first 64 KiB, each
    byte well inside --body-timeout: the fast start banks at most --body-timeout of credit, so
    the app's read fails soon after, the client gets 408, and the log says why."""
    s = server_factory("echo_app", args=["--min-rate-grace", "1", "--body-timeout", "3"])
    mark = s.log_mark()
    c = s.conn(timeout=40)
    c.send(post_head(s, "/streamed", 200_000) + b"z" * 70_000)
    stop = threading.Event()
    t = threading.Thread(target=trickle, args=(c, b"z" * 100, stop), daemon=True)
    t.start()
    try:
        r = c.read_response()
    finally:
        stop.set()
    assert r.status == 408, r
    s.wait_log(r"408 for POST /streamed: request body", since=mark)
    assert "slower than --min-request-body-rate" in s.log(since=mark)
    c.close()


def test_response_read_below_the_minimum_rate_is_dropped(server_factory, tmp_path):
    """A client that takes nothing of a large response is dropped once the grace period is
    over, long before --write-timeout, whether the response waits in the queue (reactor) or
    in the app's write (--write-buffer 0)."""
    for extra in ([], ["--write-buffer", "0"]):
        s = server_factory("framing_app", args=["--min-rate-grace", "1", *extra])
        mark = s.log_mark()
        m = tmp_path / f"m{len(extra)}"
        size = 8 << 20
        c = slow_reader(s, get(s, f"/big?size={size}&marker={q(m)}"))
        text = wait_for_file(m, timeout=30, predicate=lambda t: "closed" in t)
        if extra:
            # The app's own write gave up: it never sent the whole body.
            assert f"sent={size}" not in text, text
        else:
            s.wait_log(r"client read its response slower than --min-response-rate; "
                       r"connection closed", since=mark, timeout=30)
        c.close()


def spool_bytes(pid, spool_dir):
    """Bytes in the server's (deleted) temporary files under `spool_dir`."""
    total = 0
    fd_dir = f"/proc/{pid}/fd"
    for fd in os.listdir(fd_dir):
        try:
            target = os.readlink(f"{fd_dir}/{fd}")
            if target.startswith(str(spool_dir)):
                total += os.stat(f"{fd_dir}/{fd}").st_size
        except OSError:
            pass
    return total


def test_write_buffer_total_caps_queued_responses(server_factory, tmp_path):
    """Three clients read nothing of 6 MiB responses; --write-buffer (16 MiB) would queue each
    whole, but --write-buffer-total (1 MiB) caps them together: the server says so, the
    temporary files stay within the cap, and each client then gets its whole body."""
    spool_dir = tmp_path / "spool"
    spool_dir.mkdir()
    cap = 1 << 20
    s = server_factory("framing_app",
                       args=["--threads", "4", "--write-buffer-total", str(cap),
                             "--min-response-rate", "0", "--write-timeout", "120"],
                       env={"TMPDIR": str(spool_dir)})
    mark = s.log_mark()
    size = 6 << 20
    markers = [tmp_path / f"m{i}" for i in range(3)]
    readers = [slow_reader(s, get(s, f"/big?size={size}&marker={q(m)}")) for m in markers]
    s.wait_log(r"queued response bytes reached --write-buffer-total", since=mark, timeout=30)
    queued = spool_bytes(s.proc.pid, spool_dir)
    assert queued <= cap, f"{queued} bytes in temporary files, over the {cap}-byte cap"
    for c in readers:
        r = c.read_response()
        assert r.status == 200 and r.complete and len(r.body) == size, r
        c.close()
    for m in markers:
        wait_for_file(m, timeout=30, predicate=lambda t: f"closed sent={size}" in t)
