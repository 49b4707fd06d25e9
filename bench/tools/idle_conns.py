#!/usr/bin/env python3
"""Hold many idle keep-alive connections to a server (bench/compare.sh, scenario `idle`).

usage: idle_conns.py HOST PORT COUNT [--path /hello] [--open-timeout 10] [--concurrency 200]
                    [--stall-secs 3] [--max-secs 300]

Each connection sends one `GET PATH` (HTTP/1.1, keep-alive), reads the whole answer, then stays
open and silent, as a browser's idle keep-alive connection does. Prints one line when the
opening phase ends (all answered, --open-timeout passed, or nothing new was answered for
--stall-secs), one second later:

  OPENED connected=N answered=N held=N closed_by_server=N connect_failed=N no_answer=N \
         pending=N secs=S [first_error=...]

then, on SIGTERM/SIGINT (or after --max-secs, 300):

  HELD held=N closed_by_server=N

held = answered and still open (the server has not closed it). pending = connected but not
answered when the opening phase ended (e.g. waiting in the server's backlog); they stay open.
Raises its own RLIMIT_NOFILE soft limit to the hard limit.
"""

import argparse
import asyncio
import resource
import signal
import time


class Stats:
    def __init__(self):
        self.connected = 0
        self.answered = 0
        self.closed_by_server = 0
        self.connect_failed = 0
        self.no_answer = 0
        self.first_error = ""

    def error(self, exc):
        if not self.first_error:
            self.first_error = ("%s: %s" % (type(exc).__name__, exc)).replace(" ", "_")[:120]


async def read_answer(reader):
    head = await reader.readuntil(b"\r\n\r\n")
    length = None
    chunked = False
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        if name == b"content-length":
            length = int(value.strip())
        elif name == b"transfer-encoding" and b"chunked" in value.lower():
            chunked = True
    if length is not None:
        await reader.readexactly(length)
    elif chunked:
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
            await reader.readexactly(size + 2)
            if size == 0:
                break
    else:
        raise ConnectionError("answer without length: not a keep-alive connection")


async def one(host, port, request, stats, sem, writers):
    async with sem:
        try:
            reader, writer = await asyncio.open_connection(host, port)
        except OSError as exc:
            stats.connect_failed += 1
            stats.error(exc)
            return
        stats.connected += 1
        writers.append(writer)
        try:
            writer.write(request)
            await read_answer(reader)
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError,
                ConnectionError) as exc:
            stats.no_answer += 1
            stats.error(exc)
            return
        stats.answered += 1
    # Idle from here on: anything read now (normally EOF) means the server gave up on us.
    try:
        await reader.read(1)
    except OSError:
        pass
    stats.closed_by_server += 1


async def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("host")
    ap.add_argument("port", type=int)
    ap.add_argument("count", type=int)
    ap.add_argument("--path", default="/hello")
    ap.add_argument("--open-timeout", type=float, default=10.0)
    ap.add_argument("--concurrency", type=int, default=200)
    ap.add_argument("--stall-secs", type=float, default=3.0)
    ap.add_argument("--max-secs", type=float, default=300.0)
    args = ap.parse_args()

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))

    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    loop.call_later(args.max_secs, stop.set)  # never outlives a harness that went away

    request = ("GET %s HTTP/1.1\r\nHost: %s:%d\r\n\r\n" % (args.path, args.host, args.port)).encode()
    stats = Stats()
    sem = asyncio.Semaphore(args.concurrency)
    writers = []
    started = time.monotonic()
    tasks = [asyncio.create_task(one(args.host, args.port, request, stats, sem, writers))
             for _ in range(args.count)]
    deadline = started + args.open_timeout
    done, last_progress = 0, started
    while time.monotonic() < deadline and not stop.is_set():
        now_done = stats.answered + stats.connect_failed + stats.no_answer
        if now_done >= args.count:
            break
        if now_done != done:
            done, last_progress = now_done, time.monotonic()
        elif time.monotonic() - last_progress > args.stall_secs:
            break  # the server stopped answering new connections: no use waiting for the timeout
        await asyncio.sleep(0.05)
    secs = time.monotonic() - started
    await asyncio.sleep(1.0)  # a server that closes after answering has done so by now
    pending = stats.connected - stats.answered - stats.no_answer
    print("OPENED connected=%d answered=%d held=%d closed_by_server=%d connect_failed=%d "
          "no_answer=%d pending=%d secs=%.2f%s" % (
              stats.connected, stats.answered, stats.answered - stats.closed_by_server,
              stats.closed_by_server, stats.connect_failed, stats.no_answer, pending, secs,
              " first_error=" + stats.first_error if stats.first_error else ""), flush=True)
    await stop.wait()
    print("HELD held=%d closed_by_server=%d" % (
        stats.answered - stats.closed_by_server, stats.closed_by_server), flush=True)
    for t in tasks:
        t.cancel()
    for w in writers:
        w.transport.abort()


if __name__ == "__main__":
    asyncio.run(main())
