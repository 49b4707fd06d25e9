"""An app that uses start_response and write() from two threads at once (PEP 3333 does not
allow it; the server must answer with a clean Python exception, never a Rust panic).

A writer thread writes RACE_BYTES through write() to a client that does not read yet, so it
blocks inside write() (the server releases the GIL there). Meanwhile the app's own thread calls
write() and start_response(..., exc_info) until one of them finds the response busy, and logs
`race-outcome: write=<exception> start_response=<exception>` to wsgi.errors. The test reads
the response after that line appears, which lets the writer finish.
"""

import sys
import threading
import time

CHUNK = 1 << 20
RACE_BYTES = 32 * CHUNK


class Marker(Exception):
    """The exc_info given to start_response; re-raised while the response is not busy."""


def application(environ, start_response):
    write = start_response("200 OK", [("Content-Type", "application/octet-stream"),
                                      ("Content-Length", str(RACE_BYTES))])
    errors = environ["wsgi.errors"]
    writer_error = []
    # The head goes out now: start_response(exc_info) may no longer replace the status.
    write(b"x" * CHUNK)

    def writer():
        try:
            for _ in range(RACE_BYTES // CHUNK - 1):
                write(b"x" * CHUNK)
        except BaseException as e:  # noqa: B036 - PanicException is a BaseException
            writer_error.append(type(e).__name__)

    t = threading.Thread(target=writer)
    t.start()
    seen = {"write": None, "start_response": None}
    deadline = time.monotonic() + 20
    while t.is_alive() and time.monotonic() < deadline and None in seen.values():
        if seen["write"] is None:
            try:
                write(b"")  # an empty write sends nothing: harmless when not busy
            except BaseException as e:  # noqa: B036
                seen["write"] = type(e).__name__
        if seen["start_response"] is None:
            try:
                try:
                    raise Marker("marker")
                except Marker:
                    start_response("500 Internal Server Error", [], sys.exc_info())
            except Marker:
                pass  # not busy: PEP 3333 re-raises the app's error once headers are out
            except BaseException as e:  # noqa: B036
                seen["start_response"] = type(e).__name__
    errors.write(f"race-outcome: write={seen['write']} "
                 f"start_response={seen['start_response']}\n")
    errors.flush()
    t.join()
    if writer_error:
        errors.write(f"race-writer-error: {writer_error[0]}\n")
        errors.flush()
    return []
