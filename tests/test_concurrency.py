"""Many clients, slow apps, disconnecting clients, idle connections.

Ordering is established with gates (files the app waits for) and events, never with
sleeps; timeouts only bound a failure.
"""

import socket
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import pytest

from gwclient import q
from gwfiles import wait_for_file


def g(server, path, extra=b"", method="GET", body=b""):
    return (f"{method} {path} HTTP/1.1\r\nHost: {server.host_header}\r\n".encode() + extra
            + b"\r\n" + body)


def test_200_concurrent_keepalive_clients(echo_server):
    n_clients, n_requests = 200, 3
    start = threading.Barrier(n_clients, timeout=60)

    def client(i):
        c = echo_server.conn(timeout=60)
        try:
            start.wait()
            for j in range(n_requests):
                body = f"client {i} request {j} ".encode() * (1 + (i + j) % 5)
                c.send(g(echo_server, f"/c/{i}?j={j}", method="POST",
                         extra=b"Content-Length: %d\r\n" % len(body), body=body))
                r = c.read_response()
                assert r.status == 200, r
                e = r.json()
                assert e["PATH_INFO"] == f"/c/{i}" and e["QUERY_STRING"] == f"j={j}"
                assert e["_body"] == body.decode()
            c.assert_open()
        finally:
            c.close()
        return i

    with ThreadPoolExecutor(max_workers=n_clients) as ex:
        results = list(ex.map(client, range(n_clients)))
    assert results == list(range(n_clients))


def gated_calls(s, tmp_path, gate, n):
    """Starts `n` requests that wait inside the app until `gate` exists, and returns once all
    are in the app: their threads, and their responses by number as they come."""
    results = {}

    def slow(i):
        c = s.conn(timeout=60)
        try:
            c.send(g(s, f"/wait?i={i}&gate={q(gate)}&entered={q(tmp_path / f'entered{i}')}"))
            results[i] = c.read_response()
        finally:
            c.close()

    threads = [threading.Thread(target=slow, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for i in range(n):
        wait_for_file(tmp_path / f"entered{i}")
    return threads, results


def test_quick_requests_answered_while_slow_ones_in_flight(server_factory, tmp_path):
    s = server_factory("framing_app", args=["--threads", "4"])
    gate = tmp_path / "gate"
    threads, slow_results = gated_calls(s, tmp_path, gate, 2)
    # both slow requests are now inside the app and cannot finish until the gate opens
    for k in range(20):
        c = s.conn()
        c.send(g(s, f"/hello?i={k}"))
        r = c.read_response()
        assert r.body == b"hello %d" % k
        c.close()
    assert slow_results == {}, "slow requests finished before their gate opened"
    gate.write_text("open")
    for t in threads:
        t.join(60)
    assert sorted(slow_results) == [0, 1]
    assert all(r.body == b"released %d" % i for i, r in slow_results.items())


def test_one_worker_polls_again_after_slow_calls_were_handed_off(server_factory, tmp_path):
    """Slow calls each hand the poller role on to a standby worker. Once they are over, one
    worker polls again: fast requests one after another all run on the same thread, with no
    GIL shared between pollers. (A worker whose role had been handed on once took it back
    when the worker after it lost it too, so every slow call left one more poller behind.)"""
    s = server_factory("framing_app", args=["--threads", "8"])
    gate = tmp_path / "gate"
    # All four in the app at once: the role was handed on after each.
    threads, done = gated_calls(s, tmp_path, gate, 4)
    gate.write_text("open")
    for t in threads:
        t.join(60)
    assert {i: r.body for i, r in done.items()} == {i: b"released %d" % i for i in range(4)}

    def fast(_):
        c = s.conn()
        try:
            bodies = []
            for _ in range(50):
                c.send(g(s, "/thread"))
                r = c.read_response()
                assert r.status == 200
                bodies.append(r.body)
            return bodies
        finally:
            c.close()

    # Clients at once, so that a second poller, if there were one, would find work ready.
    with ThreadPoolExecutor(max_workers=8) as ex:
        seen = Counter(b for bodies in ex.map(fast, range(8)) for b in bodies)
    # The monitor may still hand a request on if the machine stalls its thread for 20 ms.
    assert max(seen.values()) >= 360, f"requests per worker thread: {sorted(seen.values())}"


def test_slow_route_does_not_block_others(framing_server, tmp_path):
    """The 1 s /slow route (a slow DB call) runs while other clients are served."""
    entered = tmp_path / "entered"
    done = threading.Event()
    result = {}

    def slow():
        c = framing_server.conn(timeout=30)
        c.send(g(framing_server, f"/slow?entered={q(entered)}"))
        result["r"] = c.read_response()
        c.close()
        done.set()

    t = threading.Thread(target=slow)
    t.start()
    wait_for_file(entered)
    c = framing_server.conn()
    c.send(g(framing_server, "/hello?i=fast"))
    assert c.read_response().body == b"hello fast"
    c.close()
    t.join(30)
    assert done.is_set() and result["r"].body == b"slow done"


def test_client_disconnect_mid_upload(echo_server):
    mark = echo_server.log_mark()
    c = echo_server.conn()
    c.send(g(echo_server, "/upload", method="POST", extra=b"Content-Length: 10000000\r\n",
             body=b"x" * 50000))
    c.close()
    c = echo_server.conn()
    c.send(g(echo_server, "/upload2", method="POST",
             extra=b"Transfer-Encoding: chunked\r\n", body=b"1000\r\n" + b"y" * 2000))
    c.close()
    for i in range(5):
        c = echo_server.conn()
        c.send(g(echo_server, f"/after-upload-{i}", method="POST",
                 extra=b"Content-Length: 5\r\n", body=b"hello"))
        e = c.read_response().json()
        assert e["_body"] == "hello" and e["PATH_INFO"] == f"/after-upload-{i}"
        c.close()
    # A client going away is logged as such, not as an app failure with a traceback.
    echo_server.wait_log(r"POST /upload: request body: .*connection closed", since=mark)
    echo_server.wait_log(r"POST /upload2: request body: .*connection closed", since=mark)
    assert "Traceback" not in echo_server.log(since=mark)


def test_slow_bodies_hold_no_worker(server_factory):
    """Clients trickling their bodies wait in the server, not in worker threads: with two
    threads and twenty stalled uploads (Content-Length and chunked, and one pipelined behind a
    complete request), other clients are served, and each upload is answered correctly once
    its body completes."""
    s = server_factory("echo_app", args=["--threads", "2"])
    slow = []
    for i in range(10):
        c = s.conn(timeout=30)
        c.send(g(s, f"/len/{i}", method="POST", extra=b"Content-Length: 1000\r\n",
                 body=b"a" * 10))
        slow.append(c)
    for i in range(10):
        c = s.conn(timeout=30)
        c.send(g(s, f"/chunked/{i}", method="POST", extra=b"Transfer-Encoding: chunked\r\n",
                 body=b"5\r\nabcde\r\n"))
        slow.append(c)
    # complete requests with slow ones pipelined behind them: those wait parked too
    pipes = []
    for _ in range(3):
        piped = s.conn(timeout=30)
        piped.send(g(s, "/first", method="POST", extra=b"Content-Length: 2\r\n", body=b"ok")
                   + g(s, "/second", method="POST", extra=b"Content-Length: 100\r\n",
                       body=b"c" * 10))
        assert piped.read_response().json()["_body"] == "ok"
        pipes.append(piped)
    for i in range(5):
        c = s.conn()
        c.send(g(s, f"/normal/{i}", method="POST", extra=b"Content-Length: 5\r\n",
                 body=b"hello"))
        e = c.read_response().json()
        assert e["_body"] == "hello" and e["PATH_INFO"] == f"/normal/{i}"
        c.close()
    for piped in pipes:
        piped.send(b"d" * 90)
        e = piped.read_response().json()
        assert e["PATH_INFO"] == "/second" and e["_body"] == "c" * 10 + "d" * 90
        piped.close()
    for c in slow[:10]:
        c.send(b"b" * 990)
    for c in slow[10:]:
        c.send(b"3\r\nxyz\r\n0\r\n\r\n")
    for i, c in enumerate(slow):
        e = c.read_response().json()
        assert e["_body"] == ("a" * 10 + "b" * 990 if i < 10 else "abcdexyz"), e["PATH_INFO"]
        c.close()


def test_client_disconnect_mid_download_while_others_served(framing_server, tmp_path):
    markers = [tmp_path / f"dl{i}" for i in range(4)]
    conns = []
    for m in markers:
        c = framing_server.conn()
        c.send(g(framing_server, f"/big?size={1 << 30}&marker={q(m)}"))
        assert c.read_head().status == 200
        c.read_exact(65536)
        conns.append(c)
    c = framing_server.conn()
    c.send(g(framing_server, "/big?size=1000000"))
    r = c.read_response()
    assert len(r.body) == 1000000 and r.complete
    c.close()
    for c in conns:
        c.close()
    for m in markers:
        wait_for_file(m, timeout=30, predicate=lambda t: "closed" in t)
    c = framing_server.conn()
    c.send(g(framing_server, "/hello?i=after"))
    assert c.read_response().body == b"hello after"
    c.close()


def test_idle_keepalive_connections_do_not_block_others(server_factory):
    s = server_factory("echo_app", args=["--threads", "2"])
    idle = []
    try:
        for i in range(50):  # connected, never sent anything
            idle.append(s.conn(timeout=30))
        for i in range(50):  # one request answered, then idle in keep-alive
            c = s.conn(timeout=30)
            c.send(g(s, f"/idle/{i}"))
            assert c.read_response().status == 200
            idle.append(c)
        for k in range(10):
            c = s.conn(timeout=30)
            c.send(g(s, f"/active/{k}"))
            assert c.read_response().json()["PATH_INFO"] == f"/active/{k}"
            c.close()
        # the idle keep-alive ones still work too
        for c in idle[50:55]:
            c.send(g(s, "/again"))
            assert c.read_response().status == 200
    finally:
        for c in idle:
            c.close()


def test_keepalive_timeout_closes_idle_connection_silently(server_factory):
    s = server_factory("echo_app", args=["--keepalive-timeout", "1"])
    c = s.conn(timeout=30)
    c.send(g(s, "/ka"))
    assert c.read_response().status == 200
    c.assert_closed(timeout=20)  # no bytes (no 408) on an idle keep-alive close
    c.close()


def test_keepalive_timeout_restarts_with_every_request(server_factory):
    """Each request restarts the idle timeout: a client that pauses 0.6 s between requests
    (longer in total than the 1 s timeout, never that long at once) is served every time, and
    the connection still closes once it really is idle."""
    s = server_factory("echo_app", args=["--keepalive-timeout", "1"])
    c = s.conn(timeout=30)
    for i in range(4):
        c.send(g(s, f"/ka/{i}"))
        assert c.read_response().json()["PATH_INFO"] == f"/ka/{i}"
        time.sleep(0.6)  # the client's think time, not synchronisation
    c.assert_closed(timeout=20)
    c.close()


def test_many_pipelined_requests_on_one_connection(echo_server):
    c = echo_server.conn(timeout=30)
    c.send(b"".join(g(echo_server, f"/pipe/{i}") for i in range(100)))
    for i in range(100):
        assert c.read_response().json()["PATH_INFO"] == f"/pipe/{i}"
    c.close()


@pytest.mark.parametrize("procs", [[], ["--workers", "1"]], ids=["single", "supervised"])
def test_app_leaking_threads_keeps_serving_and_still_stops(server_factory, procs):
    """Each request leaves a non-daemon thread blocked forever: requests keep being served,
    and SIGTERM still ends the server promptly with status 0 (Python's interpreter is not
    finalised, so it does not wait for the leaked threads)."""
    s = server_factory("leaky_app", args=["--graceful-timeout", "2", *procs])
    counts = []
    for i in range(30):
        c = s.conn()
        c.send(g(s, f"/leak/{i}"))
        r = c.read_response()
        assert r.status == 200, r
        counts.append(int(r.body))
        c.close()
    assert counts[-1] >= counts[0] + 29  # the threads really are still there
    assert s.stop(timeout=15) == 0


def test_slow_clients_hold_no_worker(server_factory):
    """Two worker threads, and 300 slow clients held open: 200 half-sent heads, 50 half-sent
    bodies, 50 clients that never read a 1 MiB response. Normal clients are still served
    (each slow one would otherwise hold one of the two workers), and every slow client is
    still waiting (nothing was refused or closed)."""
    s = server_factory("framing_app", args=["--threads", "2"])
    held = []
    try:
        for i in range(200):
            c = s.socket()
            c.sendall(f"GET /loris/{i} HTTP/1.1\r\nHost: h\r\nX-Slow: ".encode())
            held.append(c)
        for i in range(50):
            c = s.socket()
            c.sendall(b"POST /body HTTP/1.1\r\nHost: h\r\nContent-Length: 1000\r\n\r\nab")
            held.append(c)
        for i in range(50):
            c = s.socket()
            c.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            c.sendall(f"GET /big?size={1 << 20} HTTP/1.1\r\nHost: h\r\n\r\n".encode())
            held.append(c)
        for i in range(10):
            c = s.conn()
            c.send(g(s, "/list?parts=3"))
            r = c.read_response()
            assert r.status == 200, r
            c.close()
        for i, c in enumerate(held[:250]):
            c.setblocking(False)
            try:
                got = c.recv(1)
            except BlockingIOError:
                continue  # still waiting, as it should be
            pytest.fail(f"slow client {i} was {'answered' if got else 'closed'}")
    finally:
        for c in held:
            c.close()



def _peak_rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    raise AssertionError("no VmHWM")


def test_concurrent_large_uploads_stream_in_bounded_memory(server_factory):
    """40 clients upload 16 MiB each at once (half Content-Length, half chunked) to an app
    reading 64 KiB blocks, through 4 worker threads: every body arrives whole (length and
    CRC-32), and the server's peak RSS grows by far less than the 640 MiB sent: nothing
    buffers a whole body. (bench/uploads.py runs 1000 × 100 MB.)"""
    import zlib
    s = server_factory("framing_app", args=["--threads", "4"])
    block = bytes(range(256)) * 4096  # 1 MiB
    blocks = 16
    crc = 0
    for _ in range(blocks):
        crc = zlib.crc32(block, crc)
    want = f"{blocks * len(block)} {crc}".encode()

    def upload(i):
        with s.conn(timeout=120) as c:
            if i % 2:
                c.send(g(s, f"/count?i={i}", method="POST",
                         extra=f"Content-Length: {blocks * len(block)}\r\n".encode()))
                for _ in range(blocks):
                    c.send(block)
            else:
                c.send(g(s, f"/count?i={i}", method="POST",
                         extra=b"Transfer-Encoding: chunked\r\n"))
                for _ in range(blocks):
                    c.send(b"%x\r\n" % len(block) + block + b"\r\n")
                c.send(b"0\r\n\r\n")
            return c.read_response().body

    with s.conn() as c:  # warm-up: the app and the server's buffers exist before the baseline
        c.send(g(s, "/count", method="POST", extra=b"Content-Length: 5\r\n", body=b"hello"))
        assert c.read_response().body == f"5 {zlib.crc32(b'hello')}".encode()
    base = _peak_rss_kib(s.proc.pid)
    with ThreadPoolExecutor(40) as pool:
        bodies = list(pool.map(upload, range(40)))
    assert all(b == want for b in bodies), [b for b in bodies if b != want][:3]
    grown_mib = (_peak_rss_kib(s.proc.pid) - base) / 1024
    assert grown_mib < 64, f"peak RSS grew by {grown_mib:.0f} MiB during 640 MiB of uploads"


def test_request_waiting_for_a_busy_worker_outlives_header_timeout(server_factory, tmp_path):
    """A connection accepted while the one worker thread was free, whose request arrives once
    that worker is held by a gated request: it waits unread past --header-timeout (the wait is
    the server's, not the client's: its bytes are in the socket) and is answered once the
    worker is free, not dropped."""
    s = server_factory("framing_app", args=["--threads", "1", "--header-timeout", "1",
                                            "--log-level", "debug"])
    gate, entered = tmp_path / "gate", tmp_path / "entered"
    waiting = s.conn(timeout=30)  # accepted no later than `busy`, before the worker is held
    busy = s.conn(timeout=30)
    busy.send(g(s, f"/wait?gate={q(gate)}&entered={q(entered)}&i=busy"))
    wait_for_file(entered)
    mark = s.log_mark()
    waiting.send(g(s, "/hello?i=waiting"))
    s.wait_log(r"request bytes unread past the deadline \(every worker busy\); kept", since=mark,
               timeout=30)
    gate.write_text("open")
    assert busy.read_response().body == b"released busy"
    assert waiting.read_response().body == b"hello waiting"
    busy.close()
    waiting.close()
