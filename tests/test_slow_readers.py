"""Clients that read their responses slowly hold no worker thread: what the socket does not
take at once is queued (in memory, then in a temporary file; an app's file by descriptor) and
the server sends it as the client reads. --write-buffer bounds the queue, --write-timeout
ends a client that stopped reading. The tests whose clients read nothing until every app call
has ended turn --min-response-rate off: by default a client that takes nothing for 5 s is
dropped, which is what it is for (tested in test_slow_bodies.py).

Ordering is established with markers (files the app writes when its iterable is closed),
never with sleeps; timeouts only bound a failure.
"""

import signal

from gwclient import q, slow_reader
from gwfiles import wait_for_file

# Larger than anything the kernel buffers for one loopback connection here (tcp_wmem's
# maximum is 4 MiB, and the reader's receive buffer is made tiny), below --write-buffer's
# default of 16 MiB.
SIZE = 12 << 20
BLOCK = bytes(range(256)) * 256


def expected(size):
    return (BLOCK * (size // len(BLOCK) + 1))[:size]


def g(server, path, extra=b"", version="HTTP/1.1"):
    return f"GET {path} {version}\r\nHost: {server.host_header}\r\n".encode() + extra + b"\r\n"


def closed_after(marker, size):
    """Waits until the app's iterable was closed having produced `size` bytes."""
    return wait_for_file(marker, timeout=30, predicate=lambda t: f"closed sent={size}" in t)


def test_slow_readers_hold_no_worker(server_factory, tmp_path):
    """One worker thread, six clients reading nothing of 12 MiB responses (Content-Length and
    chunked): each app call runs to its end anyway, other clients are served, and each slow
    client then receives its whole body, byte for byte."""
    s = server_factory("framing_app", args=["--threads", "1", "--write-timeout", "120",
                                             "--min-response-rate", "0"])
    markers = [tmp_path / f"m{i}" for i in range(6)]
    readers = [
        slow_reader(s, g(s, f"/big?size={SIZE}&marker={q(m)}" + ("&cl=1" if i % 2 else "")))
        for i, m in enumerate(markers)
    ]
    for m in markers:
        closed_after(m, SIZE)
    for i in range(5):
        with s.conn(timeout=30) as c:
            c.send(g(s, f"/hello?i={i}"))
            assert c.read_response().body == f"hello {i}".encode()
    for i, c in enumerate(readers):
        r = c.read_response()
        assert r.status == 200 and r.complete
        assert (r.header("Content-Length") is not None) == bool(i % 2)
        assert r.body == expected(SIZE), f"reader {i}: body differs"
        c.close()


def test_pipelined_request_waits_behind_queued_response(server_factory, tmp_path):
    """A request pipelined behind a response still being sent is answered after it, in order,
    and the connection stays usable."""
    s = server_factory("framing_app", args=["--threads", "1"])
    m = tmp_path / "m"
    c = slow_reader(s, g(s, f"/big?size={SIZE}&cl=1&marker={q(m)}") + g(s, "/hello?i=second"))
    closed_after(m, SIZE)
    first = c.read_response()
    assert first.body == expected(SIZE)
    assert c.read_response().body == b"hello second"
    c.send(g(s, "/hello?i=third"))
    assert c.read_response().body == b"hello third"
    c.close()


def test_queued_response_then_close(server_factory, tmp_path):
    """A response that ends its connection (HTTP/1.0 without a length, or `Connection: close`)
    is sent whole before the close."""
    s = server_factory("framing_app")
    for name, version, extra, cl in [("http10", "HTTP/1.0", b"", ""),
                                     ("close", "HTTP/1.1", b"Connection: close\r\n", "&cl=1")]:
        m = tmp_path / name
        c = slow_reader(s, g(s, f"/big?size={SIZE}{cl}&marker={q(m)}", extra, version))
        closed_after(m, SIZE)
        assert c.read_head().status == 200
        assert c.read_to_eof() == expected(SIZE), name
        c.close()


def test_file_response_to_slow_reader(server_factory, tmp_path):
    """wsgi.file_wrapper over a 12 MiB file: queued by descriptor, so the one worker is free
    before the client reads, and the client gets the file's bytes even though the app's file
    object was closed long before."""
    data = expected(SIZE)[::-1]
    f = tmp_path / "big.bin"
    f.write_bytes(data)
    s = server_factory("framing_app", args=["--threads", "1", "--write-timeout", "120",
                                             "--min-response-rate", "0"])
    c = slow_reader(s, g(s, f"/file?path={q(f)}&cl={SIZE}"))
    with s.conn(timeout=30) as other:
        other.send(g(s, "/hello?i=free"))
        assert other.read_response().body == b"hello free"
    r = c.read_response()
    assert r.header("Content-Length") == str(SIZE) and r.body == data
    c.close()


def test_write_timeout_ends_queued_response(server_factory, tmp_path):
    """A client that stops reading a queued response is dropped after --write-timeout: it gets
    what the kernel already held, then the close, never the whole body; it is logged."""
    s = server_factory("framing_app", args=["--write-timeout", "1"])
    m = tmp_path / "m"
    c = slow_reader(s, g(s, f"/big?size={SIZE}&cl=1&marker={q(m)}"))
    closed_after(m, SIZE)
    s.wait_log(r"client stopped reading its response \(--write-timeout\); connection closed",
               timeout=30)
    assert c.read_head().status == 200
    assert len(c.read_to_eof()) < SIZE
    c.close()
    with s.conn() as other:
        other.send(g(s, "/hello?i=after"))
        assert other.read_response().body == b"hello after"


def test_write_buffer_bounds_the_queue(server_factory, tmp_path):
    """With --write-buffer 1 MiB, the app's writes wait once that much is queued: a client that
    never reads ends the app call at --write-timeout, short of the whole body; a client that
    reads gets all of it."""
    s = server_factory("framing_app", args=["--write-buffer", str(1 << 20), "--write-timeout", "1"])
    m = tmp_path / "stuck"
    c = slow_reader(s, g(s, f"/big?size={SIZE}&cl=1&marker={q(m)}"))
    text = wait_for_file(m, timeout=30, predicate=lambda t: "closed" in t)
    sent = int(text.split("sent=")[1].split()[0])
    assert sent < SIZE, text
    c.close()
    m2 = tmp_path / "reads"
    with s.conn(timeout=30) as c:
        c.send(g(s, f"/big?size={SIZE}&marker={q(m2)}"))
        assert c.read_response().body == expected(SIZE)
    closed_after(m2, SIZE)


def test_graceful_stop_finishes_queued_response(server_factory, tmp_path):
    """SIGTERM while a response is still queued: the server keeps sending it, then exits 0."""
    s = server_factory("framing_app", args=["--graceful-timeout", "60"])
    m = tmp_path / "m"
    c = slow_reader(s, g(s, f"/big?size={SIZE}&cl=1&marker={q(m)}"))
    closed_after(m, SIZE)
    s.proc.send_signal(signal.SIGTERM)
    r = c.read_response()
    assert r.body == expected(SIZE)
    c.close()
    assert s.stop() == 0
