"""`--timeout` (hung requests: logged once with their Python stack; under the supervisor the
worker is replaced gracefully) and `--max-rss` (a worker whose memory passes it is replaced
gracefully), against tests/apps/watchdog_app.py.

Waiting is on a condition (a log line, a response, a pid gone) with a deadline that only bounds
a failure. The supervised tests reuse test_workers.py's process helpers: every process a test
starts carries a token, and teardown kills whatever still carries it.
"""

from __future__ import annotations

import os
import re
import signal
import threading
import uuid

import pytest

from gwclient import get
from gwresponse import ConnClosed
from test_workers import Gw, kill_token, pid_alive, wait_until

pytestmark = pytest.mark.timeout(90)

STACK_HEAD = r"hung request: GET /hang HTTP/1.1 has been in the app for (\d+\.\d) s \(--timeout 1 s\)"


@pytest.fixture
def gw():
    made = []

    def make(args=(), env=None):
        s = Gw("watchdog_app", uuid.uuid4().hex, args=args, env=env)
        made.append(s)
        return s.start()

    yield make
    for s in made:
        s.kill()
        left = kill_token(s.token)
        assert not left, f"could not kill processes {left}"


def fetch_json(s, path, timeout=15.0):
    c = s.conn(timeout)
    try:
        c.send(get(s.host_header, path, "Connection: close\r\n"))
        r = c.read_response()
    finally:
        c.close()
    assert r.status == 200 and r.complete, r
    return r.json()


def try_fetch(s, path="/pid", timeout=15.0):
    try:
        return fetch_json(s, path, timeout)
    except (OSError, ConnClosed, AssertionError) as e:
        return {"error": repr(e)}


def send_hang(s):
    """Sends GET /hang on a connection of its own and leaves it waiting; returns the socket."""
    c = s.conn(30)
    c.send(get(s.host_header, "/hang"))
    return c


def assert_stack(s, mark):
    """The hung request's log entry: the request line and age, then its thread's Python
    stack down to the app function and the sleep it is stuck in."""
    head = s.wait_log(STACK_HEAD, since=mark, timeout=20)
    assert float(head.group(1)) >= 1.0, head.group(0)
    s.wait_log(r"time\.sleep\(3600\)", since=mark, timeout=10)
    text = s.log(mark)
    stack = text[text.index(head.group(0)):]
    assert re.search(r'File ".*watchdog_app\.py", line \d+, in stuck_in_sleep', stack), stack
    assert re.search(r'File ".*watchdog_app\.py", line \d+, in application', stack), stack
    return head


def test_hung_request_is_logged_once_with_its_stack_in_one_process(gw):
    # set through the environment (the supervised tests use the flag)
    s = gw(args=["--graceful-timeout", "2"], env={"WSGI_GATEWAY_TIMEOUT": "1"})
    mark = s.log_mark()
    me = fetch_json(s, "/pid")["pid"]
    hung = [send_hang(s)]
    assert_stack(s, mark)
    # the server goes on serving (one process: logging and counting are the action)
    for _ in range(5):
        assert fetch_json(s, "/pid")["pid"] == me
    # a second hung request is reported too; by then the first has been looked at again
    # (every tick), and it was not reported twice
    second = s.log_mark()
    hung.append(send_hang(s))
    assert_stack(s, second)
    assert len(re.findall(STACK_HEAD, s.log(mark))) == 2, s.log(mark)
    assert "retires" not in s.log(mark)
    assert s.alive()
    for c in hung:
        c.close()
    assert s.stop(timeout=20) == 0


def test_hung_request_under_a_supervisor_replaces_the_worker(gw):
    s = gw(args=["--workers", "1", "--timeout", "1", "--graceful-timeout", "3"])
    (old,) = s.ready_pids()
    mark = s.log_mark()
    hung = send_hang(s)
    assert_stack(s, mark)
    assert f"worker pid {old} retires" in s.log(mark)
    # the replacement started on the worker's word, not on its exit
    m = s.wait_log(rf"worker pid {old} retiring \(a request passed --timeout\); started (\d+)",
                   since=mark)
    new = int(m.group(1))
    # the server keeps answering, from the new worker, while the old one still holds the call
    wait_until(lambda: try_fetch(s).get("pid") == new, 20, f"replacement {new} answering")
    # the old one is gone after --graceful-timeout, and its hung connection with it
    wait_until(lambda: not pid_alive(old), 20, f"worker {old} gone after --graceful-timeout")
    exited = s.wait_log(rf"worker pid {old} exited", since=mark)
    log = s.log(mark)
    assert log.index(m.group(0)) < log.index(exited.group(0)), log
    hung.sock.settimeout(10)
    with pytest.raises((ConnClosed, OSError)):
        r = hung.read_response()
        raise AssertionError(f"the hung request was answered: {r}")
    for _ in range(5):
        assert try_fetch(s).get("pid") == new
    assert s.stop(timeout=20) == 0


def test_max_rss_replaces_a_leaking_worker_without_failing_requests(gw, tmp_path):
    # --max-rss alone runs a supervisor with one worker (as --max-requests does); here it is
    # set in the TOML file
    config = tmp_path / "gw.toml"
    config.write_text("max-rss = 150\n")
    s = gw(args=["--config", config], env={"WATCHDOG_LEAK_CAP_MIB": "400"})
    s.wait_log(rf"supervisor pid {s.pid} starting 1 worker\(s\)")
    (first,) = s.ready_pids()
    mark = s.log_mark()
    answers = []

    def leak_until_replaced():
        while not answers or answers[-1].get("pid") == first:
            answers.append(try_fetch(s, "/leak?mib=16"))
            assert "error" not in answers[-1], answers[-1]
        return True

    wait_until(leak_until_replaced, 60, "a worker other than the leaking one answering")
    assert all("error" not in a for a in answers), answers
    m = s.wait_log(rf"resident memory (\d+) MiB is over --max-rss 150 MiB; worker pid {first} "
                   r"retires", since=mark)
    assert int(m.group(1)) > 150
    s.wait_log(rf"worker pid {first} retiring \(its memory passed --max-rss\); started \d+",
               since=mark)
    # the old one has nothing in flight: it exits once it has drained
    wait_until(lambda: not pid_alive(first), 40, f"worker {first} gone")
    assert s.stop(timeout=20) == 0


def test_a_let_go_worker_that_does_not_exit_is_killed_by_the_supervisor(gw):
    """The retiring worker ends itself after --graceful-timeout; should it not (here it is
    stopped with SIGSTOP, as a process wedged beyond its own timers would be), the supervisor
    kills it shortly after that time."""
    s = gw(args=["--workers", "1", "--timeout", "1", "--graceful-timeout", "2"])
    (old,) = s.ready_pids()
    mark = s.log_mark()
    hung = send_hang(s)
    s.wait_log(rf"worker pid {old} retiring \(a request passed --timeout\); started \d+",
               since=mark, timeout=20)
    os.kill(old, signal.SIGSTOP)
    s.wait_log(rf"worker pid {old} still running --graceful-timeout after it was let go; "
               r"killing it", since=mark, timeout=20)
    s.wait_log(rf"worker pid {old} exited \(signal (?:SIG)?KILL\)", since=mark)
    assert not pid_alive(old)
    hung.close()
    assert try_fetch(s).get("pid") not in (None, old)
    assert s.stop(timeout=20) == 0
