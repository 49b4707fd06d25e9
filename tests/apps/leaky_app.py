"""An app that leaks a non-daemon thread per request (blocked forever), the way a careless
app starts background work; the server must keep serving and still stop (test_concurrency)."""

import threading

_forever = threading.Event()


def application(environ, start_response):
    threading.Thread(target=_forever.wait, name="leaked", daemon=False).start()
    body = str(threading.active_count()).encode()
    start_response("200 OK", [("Content-Type", "text/plain"),
                              ("Content-Length", str(len(body)))])
    return [body]
