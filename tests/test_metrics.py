"""Prometheus metrics (`--metrics-bind`): the page is read with prometheus_client's own parser
(`text_string_to_metric_families`, what a Python exporter's tests use), after a known request
mix, with one process and under `--workers` (the supervisor sums its workers, and a worker
that exits leaves its counts behind).

Every request of a mix goes on its own connection with `Connection: close` and is read to
EOF: the server closes only after it counted the request, so a scrape right after sees it.
Gauges that change after a response (idle connections) are polled for with a deadline.
"""

from __future__ import annotations

import http.client
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import time
import urllib.parse

import pytest
from prometheus_client.parser import text_string_to_metric_families

from gwclient import UnixHTTPConnection, get
from gwprocess import Server, clean_env, run_cli
from test_privileges import account, app_dir, wrapper  # noqa: F401 (fixtures)

pytestmark = pytest.mark.timeout(90)

METRICS_RE = r"metrics on (http://\S+|unix:\S+)/metrics"
P = "wsgi_gateway_"
METHODS = ["GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "PATCH", "other"]
STATUSES = ["1xx", "2xx", "3xx", "4xx", "5xx"]


@pytest.fixture
def servers():
    made = []

    def make(args=(), env=None):
        s = Server("metrics_app", args=args, env=env).start()
        made.append(s)
        return s

    yield make
    for s in made:
        s.kill()


def metrics_conn(s, timeout=15.0):
    url = s.wait_log(METRICS_RE).group(1)
    if url.startswith("unix:"):
        return UnixHTTPConnection(url[len("unix:"):], timeout=timeout)
    host, port = url[len("http://"):].rsplit(":", 1)
    return http.client.HTTPConnection(host, int(port), timeout=timeout)


def fetch_page(s, path="/metrics", method="GET"):
    c = metrics_conn(s)
    try:
        c.request(method, path)
        r = c.getresponse()
        return r, r.read().decode()
    finally:
        c.close()


def scrape(s):
    """{(sample name, ((label, value), ...)): value} and the families, as parsed."""
    r, text = fetch_page(s)
    assert r.status == 200, (r.status, text)
    assert r.getheader("Content-Type") == "text/plain; version=0.0.4; charset=utf-8"
    families = list(text_string_to_metric_families(text))
    samples = {}
    for fam in families:
        for smp in fam.samples:
            samples[(smp.name, tuple(sorted(smp.labels.items())))] = smp.value
    return samples, {f.name: f for f in families}


def requests_total(samples):
    """{(method class, status class): n} for every pair, zeros included."""
    return {
        (m, st): samples[(P + "requests_total", (("method_class", m), ("status_class", st)))]
        for m in METHODS for st in STATUSES
    }


def value(samples, name, **labels):
    return samples[(P + name, tuple(sorted(labels.items())))]


def wait_metric(s, name, want, timeout=10.0, **labels):
    deadline = time.monotonic() + timeout
    while True:
        samples, _ = scrape(s)
        got = value(samples, name, **labels)
        if got == want or time.monotonic() > deadline:
            assert got == want, f"{name}{labels} is {got}, expected {want}"
            return samples
        time.sleep(0.02)


def one(s, method="GET", path="/", body=b""):
    """One request on a fresh connection, read to EOF: (bytes sent, bytes received, pid)."""
    extra = "Connection: close\r\n"
    if method == "POST":
        extra += f"Content-Length: {len(body)}\r\n"
    req = get(s.host_header, path, extra, method=method) + body
    c = s.conn()
    try:
        c.send(req)
        data = c.read_to_eof()
    finally:
        c.close()
    assert data.startswith(b"HTTP/1.1 "), data[:200]
    m = re.search(rb'"pid": (\d+)', data)
    return len(req), len(data), int(m.group(1)) if m else None


def send_mix(s, until_pids=1):
    """7 GET, 3 POST (the app answers 404), 2 HEAD; then more GETs until `until_pids`
    processes answered. Returns (expected requests_total, bytes sent, bytes received, pids)."""
    plan = ["GET"] * 7 + ["POST"] * 3 + ["HEAD"] * 2
    sent = received = 0
    pids = set()
    expected = {(m, st): 0 for m in METHODS for st in STATUSES}

    def go(method):
        nonlocal sent, received
        n_sent, n_received, pid = one(s, method, "/", b"abc" if method == "POST" else b"")
        sent += n_sent
        received += n_received
        if pid is not None:
            pids.add(pid)
        expected[(method, "4xx" if method == "POST" else "2xx")] += 1

    for method in plan:
        go(method)
    deadline = time.monotonic() + 30
    while len(pids) < until_pids:
        assert time.monotonic() < deadline, f"only {pids} answered"
        go("GET")
    return expected, sent, received, pids


def check_mix(samples, expected, sent, received):
    assert requests_total(samples) == expected
    count = sum(expected.values())
    assert value(samples, "request_duration_seconds_count") == count
    assert value(samples, "request_duration_seconds_bucket", le="+Inf") == count
    assert value(samples, "request_duration_seconds_sum") > 0
    buckets = sorted(
        (float(dict(k[1])["le"]), v) for k, v in samples.items()
        if k[0] == P + "request_duration_seconds_bucket")
    assert [v for _, v in buckets] == sorted(v for _, v in buckets), "buckets are cumulative"
    assert value(samples, "bytes_received_total") == sent
    assert value(samples, "bytes_sent_total") == received
    assert value(samples, "requests_in_flight") == 0
    assert value(samples, "hung_requests_total") == 0


def test_one_process_counts_a_known_mix_exactly(servers):
    s = servers(["--metrics-bind", "127.0.0.1:0"])
    samples, families = scrape(s)
    assert families["wsgi_gateway_requests"].type == "counter"
    assert families["wsgi_gateway_request_duration_seconds"].type == "histogram"
    assert families["wsgi_gateway_connections_idle"].type == "gauge"
    assert families["wsgi_gateway_spooled_bytes"].type == "gauge"
    assert all(families[n].documentation for n in families)
    assert not any(n.startswith("wsgi_gateway_worker_") for n in families), "no workers here"
    assert value(samples, "bytes_received_total") == 0

    expected, sent, received, _ = send_mix(s)
    samples, _ = scrape(s)
    check_mix(samples, expected, sent, received)
    # Every connection of the mix closed (the client closed after EOF: the linger ends).
    wait_metric(s, "connections_open", 0)
    assert value(samples, "spooled_bytes") == 0


def test_gauges_follow_idle_and_busy_connections(servers, tmp_path):
    s = servers(["--metrics-bind", f"unix:{tmp_path}/metrics.sock"])
    keep = s.conn()
    keep.send(get(s.host_header, "/"))
    assert keep.read_response().status == 200
    wait_metric(s, "connections_idle", 1)
    samples = wait_metric(s, "connections_open", 1)
    assert value(samples, "requests_in_flight") == 0

    entered, release = tmp_path / "entered", tmp_path / "release"
    busy = s.conn()
    busy.send(get(s.host_header, f"/hold?entered={entered}&release={release}"))
    deadline = time.monotonic() + 15
    while not entered.exists():
        assert time.monotonic() < deadline, "the held request never entered the app"
        time.sleep(0.01)
    samples, _ = scrape(s)
    assert value(samples, "requests_in_flight") == 1
    assert value(samples, "connections_open") == 2
    assert value(samples, "connections_idle") == 1
    release.touch()
    assert busy.read_response().status == 200
    wait_metric(s, "requests_in_flight", 0)
    wait_metric(s, "connections_idle", 2)
    # The idle keep-alive connection served again leaves the idle state while it is served.
    keep.send(get(s.host_header, "/", "Connection: close\r\n"))
    assert keep.read_response().status == 200
    keep.read_to_eof()
    keep.close()
    busy.close()
    wait_metric(s, "connections_open", 0)
    samples = wait_metric(s, "connections_idle", 0)
    assert value(samples, "requests_total", method_class="GET", status_class="2xx") == 3
    assert s.stop() == 0
    assert not (tmp_path / "metrics.sock").exists(), "the metrics socket was left behind"


def test_requests_waiting_counts_connections_no_thread_took(servers, tmp_path):
    # One thread, held inside the app: nothing accepts, new clients wait in the queue.
    s = servers(["--metrics-bind", "127.0.0.1:0", "--threads", "1"])
    samples, _ = scrape(s)
    assert value(samples, "threads") == 1
    entered, release = tmp_path / "entered", tmp_path / "release"
    held = s.conn()
    held.send(get(s.host_header, f"/hold?entered={entered}&release={release}"))
    deadline = time.monotonic() + 15
    while not entered.exists():
        assert time.monotonic() < deadline, "the held request never entered the app"
        time.sleep(0.01)
    waiting = [s.conn() for _ in range(3)]
    for c in waiting:
        c.send(get(s.host_header, "/", "Connection: close\r\n"))
    samples = wait_metric(s, "requests_waiting", 3)
    assert value(samples, "requests_in_flight") == 1
    release.touch()
    assert held.read_response().status == 200
    for c in waiting:
        assert c.read_response().status == 200
        c.close()
    held.close()
    wait_metric(s, "requests_waiting", 0)


def test_spooled_bytes_follow_a_slow_reader(servers):
    s = servers(["--metrics-bind", "127.0.0.1:0"])
    n = 8 << 20
    sock = socket.socket(s.family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # most of it must queue
    sock.settimeout(15)
    sock.connect(s.address)
    sock.sendall(get(s.host_header, f"/big?n={n}", "Connection: close\r\n"))
    # Once the app's call is over, what the client has not taken waits in the queue.
    samples = wait_metric(s, "requests_total", 1, method_class="GET", status_class="2xx")
    assert value(samples, "requests_in_flight") == 0
    queued = value(samples, "spooled_bytes")
    assert 0 < queued <= n, queued
    got = 0
    while chunk := sock.recv(1 << 20):
        got += len(chunk)
    sock.close()
    assert got > n
    samples = wait_metric(s, "spooled_bytes", 0)
    assert value(samples, "bytes_sent_total") == got


def test_the_metrics_listener_answers_only_metrics(servers):
    s = servers(["--metrics-bind", "127.0.0.1:0"])
    r, _ = fetch_page(s, "/")
    assert r.status == 404
    r, _ = fetch_page(s, "/metrics", method="POST")
    assert r.status == 405
    r, text = fetch_page(s, "/metrics", method="HEAD")
    assert r.status == 200 and text == ""
    # None of that reached the app or its counts; the app's port does not serve the page.
    _, _, pid = one(s, "GET", "/metrics")
    assert pid == s.proc.pid
    samples, _ = scrape(s)
    assert sum(requests_total(samples).values()) == 1


def test_workers_are_summed_and_exits_counted_by_reason(servers, tmp_path):
    sock = tmp_path / "metrics.sock"
    s = servers(["--workers", "2", "--threads", "3"],
                env={"WSGI_GATEWAY_METRICS_BIND": f"unix:{sock}"})
    s.wait_log(r"listening on")
    samples, _ = scrape(s)
    assert value(samples, "worker_starts_total") == 2
    assert value(samples, "threads") == 6
    assert all(value(samples, "worker_exits_total", reason=r) == 0
               for r in ["max_requests", "crash", "stopped", "reload", "max_rss", "hung"])

    expected, sent, received, pids = send_mix(s, until_pids=2)
    assert s.proc.pid not in pids
    samples, _ = scrape(s)
    check_mix(samples, expected, sent, received)

    # A worker that crashes: its counts stay in the totals, its exit is counted.
    mark = s.log_mark()
    c = s.conn()
    c.send(get(s.host_header, "/exit", "Connection: close\r\n"))
    c.read_to_eof()
    c.close()
    s.wait_log(r"worker pid \d+ exited \(exit status 3\)", since=mark)
    samples, _ = scrape(s)
    check_mix(samples, expected, sent + len(get(s.host_header, "/exit",
                                                 "Connection: close\r\n")), received)
    assert value(samples, "worker_exits_total", reason="crash") == 1
    # Its replacement may start after a back-off (it died young).
    wait_metric(s, "worker_starts_total", 3, timeout=15)

    # A worker someone else sends SIGTERM to stops gracefully: "stopped", and replaced.
    victim = one(s)[2]
    mark = s.log_mark()
    os.kill(victim, signal.SIGTERM)
    s.wait_log(rf"worker pid {victim} exited \(exit status 0\)", since=mark)
    samples, _ = scrape(s)
    assert value(samples, "worker_exits_total", reason="stopped") == 1
    expected[("GET", "2xx")] += 1
    assert requests_total(samples) == expected
    wait_metric(s, "worker_starts_total", 4, timeout=15)

    # A reload replaces both: two exits for "reload", the totals do not move.
    mark = s.log_mark()
    s.proc.send_signal(signal.SIGHUP)
    s.wait_log(r"reload: done", since=mark, timeout=30)
    # The old workers drain and exit; each is counted when the supervisor reaps it.
    deadline = time.monotonic() + 30
    while True:
        samples, _ = scrape(s)
        if value(samples, "worker_exits_total", reason="reload") == 2:
            break
        assert time.monotonic() < deadline, samples
        time.sleep(0.05)
    assert value(samples, "worker_starts_total") == 6
    assert value(samples, "worker_exits_total", reason="crash") == 1
    assert value(samples, "worker_exits_total", reason="stopped") == 1
    assert requests_total(samples) == expected
    assert s.stop(timeout=30) == 0
    assert not sock.exists(), "the metrics socket was left behind"


def test_counters_never_go_down_when_workers_retire(servers):
    s = servers(["--workers", "1", "--max-requests", "4", "--metrics-bind", "127.0.0.1:0"])
    s.wait_log(r"listening on")
    seen = []
    for i in range(10):
        one(s)
        samples, _ = scrape(s)
        n = value(samples, "requests_total", method_class="GET", status_class="2xx")
        assert n == i + 1, (i, n, s.log()[-2000:])
        seen.append((n, value(samples, "bytes_sent_total"),
                     value(samples, "request_duration_seconds_count")))
    assert seen == sorted(seen), f"a counter went down: {seen}"
    # Two workers retired after 4 requests each; the third serves on.
    deadline = time.monotonic() + 30
    while True:
        samples, _ = scrape(s)
        if value(samples, "worker_exits_total", reason="max_requests") == 2:
            break
        assert time.monotonic() < deadline, s.log()[-3000:]
        time.sleep(0.05)
    assert value(samples, "worker_starts_total") == 3
    assert value(samples, "worker_exits_total", reason="crash") == 0
    assert value(samples, "requests_total", method_class="GET", status_class="2xx") == 10
    assert value(samples, "request_duration_seconds_count") == 10


def test_requests_the_server_refuses_are_counted(servers):
    s = servers(["--metrics-bind", "127.0.0.1:0", "--max-body-size", "10"])
    # A malformed head: 400 before any method is known.
    c = s.conn()
    c.send(b"GET / HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n")
    assert c.read_response().status == 400
    c.read_to_eof()
    c.close()
    # A declared body over --max-body-size: 413 before the app runs.
    c = s.conn()
    c.send(get(s.host_header, "/", "Content-Length: 11\r\n", method="POST") + b"x" * 11)
    assert c.read_response().status == 413
    c.read_to_eof()
    c.close()
    samples, _ = scrape(s)
    counted = {k: v for k, v in requests_total(samples).items() if v}
    assert counted == {("other", "4xx"): 1, ("POST", "4xx"): 1}
    assert value(samples, "request_duration_seconds_count") == 2


def test_metrics_bind_from_the_config_file(servers, tmp_path):
    config = tmp_path / "gw.toml"
    config.write_text(f'metrics-bind = "unix:{tmp_path}/m.sock"\n')
    s = servers(["--config", str(config)])
    assert s.wait_log(METRICS_RE).group(1) == f"unix:{tmp_path}/m.sock"
    one(s)
    samples, _ = scrape(s)
    assert value(samples, "requests_total", method_class="GET", status_class="2xx") == 1


def test_metrics_bind_in_use_is_refused_at_start():
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen(1)
    port = taken.getsockname()[1]
    try:
        rc, err = run_cli(["serve", "metrics_app", "--chdir", "tests/apps", "--bind",
                           "127.0.0.1:0", "--metrics-bind", f"127.0.0.1:{port}"])
    finally:
        taken.close()
    assert rc == 2, err
    assert f"--metrics-bind 127.0.0.1:{port}" in err, err


# The scrape config given for the README, with the test's addresses (and a 1 s interval).
SCRAPE_CONFIG = """\
global:
  scrape_interval: {interval}
scrape_configs:
  - job_name: wsgi-gateway
    static_configs:
      - targets: ["{target}"]
"""


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def prometheus_query(port, query):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        c.request("GET", "/api/v1/query?" + urllib.parse.urlencode({"query": query}))
        r = c.getresponse()
        data = json.loads(r.read())
    finally:
        c.close()
    assert data["status"] == "success", data
    return {tuple(sorted(x["metric"].items())): float(x["value"][1])
            for x in data["data"]["result"]}


def test_prometheus_scrapes_the_workers_totals(servers, tmp_path):
    """Debian's Prometheus scrapes the supervisor with the README's config; its queries see
    the request mix summed over both workers."""
    prom = shutil.which("prometheus")
    if prom is None:
        pytest.skip("prometheus is not installed (tests/run.sh installs it)")
    s = servers(["--workers", "2", "--metrics-bind", "127.0.0.1:0"])
    s.wait_log(r"listening on")
    target = s.wait_log(METRICS_RE).group(1)[len("http://"):]
    expected, _, _, _ = send_mix(s, until_pids=2)

    config = tmp_path / "prometheus.yml"
    config.write_text(SCRAPE_CONFIG.format(interval="1s", target=target))
    port = free_port()
    p = subprocess.Popen(
        [prom, f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'data'}",
         f"--web.listen-address=127.0.0.1:{port}"],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
        stderr=open(tmp_path / "prometheus.log", "wb"), env=clean_env())
    try:
        want = {("GET", "2xx"): expected[("GET", "2xx")], ("POST", "4xx"): 3,
                ("HEAD", "2xx"): 2}
        deadline = time.monotonic() + 60
        while True:
            try:
                up = prometheus_query(port, 'up{job="wsgi-gateway"}')
                got = prometheus_query(port, "wsgi_gateway_requests_total > 0")
            except (OSError, http.client.HTTPException, ValueError):
                up, got = {}, {}  # not listening (or not ready) yet
            seen = {(dict(k)["method_class"], dict(k)["status_class"]): v
                    for k, v in got.items()}
            if list(up.values()) == [1.0] and seen == want:
                break
            assert p.poll() is None, (tmp_path / "prometheus.log").read_text()[-3000:]
            assert time.monotonic() < deadline, (
                up, seen, (tmp_path / "prometheus.log").read_text()[-3000:])
            time.sleep(0.2)
        count = prometheus_query(port, "wsgi_gateway_request_duration_seconds_count")
        assert list(count.values()) == [float(sum(expected.values()))]
        started = prometheus_query(port, "wsgi_gateway_worker_starts_total")
        assert list(started.values()) == [2.0]
    finally:
        p.terminate()
        p.wait(30)


# ---- --user: the listener is bound while root, the page served once switched -------------

def free_low_port():
    """A free port below 1024 (only root may bind it), or None."""
    for port in range(990, 900, -1):
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    return None


def thread_uids(pid):
    """The real uid of every thread of `pid`."""
    uids = set()
    for tid in os.listdir(f"/proc/{pid}/task"):
        with open(f"/proc/{pid}/task/{tid}/status") as f:
            for line in f:
                if line.startswith("Uid:"):
                    uids.add(int(line.split()[1]))
    return uids


@pytest.mark.skipif(os.geteuid() != 0, reason="switching users needs root (CI runs as root)")
@pytest.mark.parametrize("workers", [None, 2])
def test_metrics_under_user_are_bound_as_root_and_served_as_the_user(
        workers, account, app_dir, wrapper):
    from test_privileges import USER, WrappedServer
    user, _ = account
    port = free_low_port()
    assert port is not None, "no free port below 1024"
    sock = app_dir / "metrics.sock"
    extra = ["--workers", str(workers)] if workers else []
    servers = []
    for bind in (f"127.0.0.1:{port}", f"unix:{sock}"):
        s = WrappedServer(wrapper, "who_app", chdir=app_dir,
                          args=["--user", USER, "--metrics-bind", bind, *extra])
        servers.append(s)
        try:
            s.start()
            s.wait_log(r"listening on")
            if bind.startswith("unix:"):
                st = os.stat(sock)
                assert (st.st_uid, st.st_gid) == (user.pw_uid, user.pw_gid)
            c = s.http()
            c.request("GET", "/", headers={"Connection": "close"})
            assert c.getresponse().status == 200
            c.close()
            # Counted once the call returned, which the client may not wait for: polled.
            wait_metric(s, "requests_total", 1, method_class="GET", status_class="2xx")
            # Every thread of the serving process, the metrics one included, is the user's.
            assert thread_uids(s.proc.pid) == {user.pw_uid}
            # (The socket file stays: the user may not remove it from root's directory, as
            # with --bind's; the next start replaces it.)
            assert s.stop() == 0
        finally:
            s.kill()


# ---- --timeout and --max-rss (the watchdog): hung requests and retirements -----------------

def test_a_hung_request_is_counted_and_its_workers_exit_is_hung(servers, tmp_path):
    s = servers(["--workers", "1", "--timeout", "1", "--graceful-timeout", "1",
                 "--metrics-bind", "127.0.0.1:0"])
    s.wait_log(r"listening on")
    entered, release = tmp_path / "entered", tmp_path / "release"  # never released
    stuck = s.conn()
    stuck.send(get(s.host_header, f"/hold?entered={entered}&release={release}"))
    samples = wait_metric(s, "hung_requests_total", 1, timeout=20)
    assert value(samples, "requests_in_flight") == 1
    # The worker retires; once it has exited (killed with its call after --graceful-timeout),
    # its count stays and its exit is a hung one.
    samples = wait_metric(s, "worker_exits_total", 1, timeout=30, reason="hung")
    assert value(samples, "hung_requests_total") == 1
    assert value(samples, "requests_in_flight") == 0
    assert value(samples, "worker_exits_total", reason="crash") == 0
    assert value(samples, "worker_starts_total") == 2
    stuck.close()


def test_one_process_counts_a_hung_request(servers, tmp_path):
    s = servers(["--timeout", "1", "--metrics-bind", "127.0.0.1:0"])
    entered, release = tmp_path / "entered", tmp_path / "release"
    stuck = s.conn()
    stuck.send(get(s.host_header, f"/hold?entered={entered}&release={release}"))
    wait_metric(s, "hung_requests_total", 1, timeout=20)
    release.touch()
    assert stuck.read_response().status == 200
    stuck.close()
    samples = wait_metric(s, "requests_in_flight", 0)
    assert value(samples, "hung_requests_total") == 1


def test_a_worker_past_max_rss_exits_as_max_rss(servers):
    # 1 MiB: any Python process is past it, so the worker retires at its first look.
    s = servers(["--workers", "1", "--max-rss", "1", "--metrics-bind", "127.0.0.1:0"])
    deadline = time.monotonic() + 30
    while True:
        samples, _ = scrape(s)
        if value(samples, "worker_exits_total", reason="max_rss") >= 1:
            break
        assert time.monotonic() < deadline, s.log()[-3000:]
        time.sleep(0.05)
    assert value(samples, "worker_exits_total", reason="crash") == 0
    assert value(samples, "worker_starts_total") >= 2
