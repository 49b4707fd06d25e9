"""App for the access-log tests (test_access_log.py, test_logrotate.py).

`/empty` answers 204-like 200 with no body (for `%b` "-" against `%B` 0); `/status/N`
answers status N; anything else answers `ok` with an `X-Resp: from-app` header and, when
the request has `X-Want-Bytes: N`, N bytes.
"""


def app(environ, start_response):
    path = environ.get("PATH_INFO", "")
    headers = [("Content-Type", "text/plain"), ("X-Resp", "from-app")]
    if path == "/empty":
        start_response("200 OK", headers + [("Content-Length", "0")])
        return [b""]
    if path.startswith("/status/"):
        code = int(path.rsplit("/", 1)[1])
        start_response(f"{code} Status", headers)
        return [b"status"]
    n = int(environ.get("HTTP_X_WANT_BYTES", "2"))
    body = b"ok" if n == 2 else b"x" * n
    start_response("200 OK", headers + [("Content-Length", str(len(body)))])
    return [body]
