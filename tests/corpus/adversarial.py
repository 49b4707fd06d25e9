"""Malformed, smuggling and limit requests, with the status the contract requires.

Written from the rules (RFC 9112/9110, the hardened-server list in
shared/reference/http-wsgi-rules.md §5 and §7, the contract's status table), modelled on
the classes of cases in gunicorn's and waitress' corpora and HTTP Garden's findings.

INVALID entries: (id, raw bytes, expected status, server config, pipeline)
  - server config: a name from conftest.SESSION_CONFIGS ("echo" = defaults)
  - pipeline: True appends a valid GET after the bad request; it must never be answered.
  Every invalid request must get exactly one response with the expected status and then a
  closed connection.
VALID entries: (id, raw bytes, expected environ subset, expected body)
"""

H = b"Host: example.com\r\n"
POST = b"POST /t HTTP/1.1\r\n" + H
GET_ = b"GET / HTTP/1.1\r\n" + H

# RFC 9112 §6.3 says 400 when chunked is not the final coding; the contract says 501 for
# anything but exactly "chunked". Either is a rejection; both close the connection.
EITHER = (400, 501)

PIPELINED = b"GET /pipelined-must-not-run HTTP/1.1\r\nHost: example.com\r\n\r\n"


def te(body: bytes) -> bytes:
    return POST + b"Transfer-Encoding: chunked\r\n\r\n" + body


def cl(value: bytes, body=b"hello") -> bytes:
    return POST + b"Content-Length: " + value + b"\r\n\r\n" + body


INVALID = [
    # ---- request line ----------------------------------------------------------------
    ("rl-missing-target", b"GET HTTP/1.1\r\n" + H + b"\r\n", 400),
    ("rl-only-method", b"GET\r\n" + H + b"\r\n", 400),
    ("rl-http09", b"GET /\r\n\r\n", 400),
    ("rl-double-space", b"GET  / HTTP/1.1\r\n" + H + b"\r\n", 400),
    ("rl-space-before-version-x2", b"GET /  HTTP/1.1\r\n" + H + b"\r\n", 400),
    ("rl-trailing-space", b"GET / HTTP/1.1 \r\n" + H + b"\r\n", 400),
    ("rl-tab-separator", b"GET\t/ HTTP/1.1\r\n" + H + b"\r\n", 400),
    ("rl-leading-space", b" GET / HTTP/1.1\r\n" + H + b"\r\n", 400),
    ("rl-bare-lf", b"GET / HTTP/1.1\n" + H + b"\r\n", 400),
    ("rl-bare-cr", b"GET / HTTP/1.1\rHost: example.com\r\n\r\n", 400),
    ("rl-space-in-target", b"GET /a b HTTP/1.1\r\n" + H + b"\r\n", 400),
    ("rl-two-leading-crlf", b"\r\n\r\nGET / HTTP/1.1\r\n" + H + b"\r\n", 400),
    ("rl-garbage", b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n", 400),
    # ---- version ---------------------------------------------------------------------
    ("ver-lowercase", b"GET / http/1.1\r\n" + H + b"\r\n", 400),
    ("ver-ftp", b"GET / FTP/1.1\r\n" + H + b"\r\n", 400),
    ("ver-three-digits", b"GET / HTTP/111\r\n" + H + b"\r\n", 400),
    ("ver-0.99", b"GET / HTTP/0.99\r\n" + H + b"\r\n", 400),
    ("ver-no-minor", b"GET / HTTP/1\r\n" + H + b"\r\n", 400),
    ("ver-1.1.1", b"GET / HTTP/1.1.1\r\n" + H + b"\r\n", 400),
    ("ver-long-digits", b"GET / HTTP/" + b"1" * 90 + b".1\r\n" + H + b"\r\n", 400),
    ("ver-2.0", b"GET / HTTP/2.0\r\n" + H + b"\r\n", 505),
    ("ver-1.2", b"GET / HTTP/1.2\r\n" + H + b"\r\n", 505),
    ("ver-0.9", b"GET / HTTP/0.9\r\n" + H + b"\r\n", 505),
    ("ver-3.0", b"GET / HTTP/3.0\r\n" + H + b"\r\n", 505),
    # ---- method ----------------------------------------------------------------------
    ("method-nul", b"G\x00T / HTTP/1.1\r\n" + H + b"\r\n", 400),
    ("method-colon", b"GET: / HTTP/1.1\r\n" + H + b"\r\n", 400),
    ("method-non-ascii", b"G\xc3\x89T / HTTP/1.1\r\n" + H + b"\r\n", 400),
    ("method-paren", b"GE(T / HTTP/1.1\r\n" + H + b"\r\n", 400),
    ("method-too-long", b"A" * 40 + b" / HTTP/1.1\r\n" + H + b"\r\n", 501),
    # ---- target ----------------------------------------------------------------------
    ("target-asterisk-get", b"GET * HTTP/1.1\r\n" + H + b"\r\n", 400),
    ("target-authority-get", b"GET example.com:443 HTTP/1.1\r\n" + H + b"\r\n", 400),
    ("target-relative", b"GET foo/bar HTTP/1.1\r\n" + H + b"\r\n", 400),
    ("target-raw-utf8", b"GET /caf\xc3\xa9 HTTP/1.1\r\n" + H + b"\r\n", 400),
    ("target-raw-latin1", b"GET /caf\xe9 HTTP/1.1\r\n" + H + b"\r\n", 400),
    ("target-ctl", b"GET /a\x01b HTTP/1.1\r\n" + H + b"\r\n", 400),
    ("target-del", b"GET /a\x7fb HTTP/1.1\r\n" + H + b"\r\n", 400),
    ("target-nul", b"GET /a\x00b HTTP/1.1\r\n" + H + b"\r\n", 400),
    ("target-bad-absolute", b"GET http://[bad/ HTTP/1.1\r\n" + H + b"\r\n", 400),
    # ---- Host ------------------------------------------------------------------------
    ("host-missing-1.1", b"GET / HTTP/1.1\r\nX-A: b\r\n\r\n", 400),
    ("host-duplicate", b"GET / HTTP/1.1\r\n" + H + b"Host: other.com\r\n\r\n", 400),
    ("host-duplicate-same", b"GET / HTTP/1.1\r\n" + H + H + b"\r\n", 400),
    ("host-with-space", b"GET / HTTP/1.1\r\nHost: exa mple.com\r\n\r\n", 400),
    ("host-bad-port", b"GET / HTTP/1.1\r\nHost: example.com:abc\r\n\r\n", 400),
    ("host-userinfo", b"GET / HTTP/1.1\r\nHost: user@example.com\r\n\r\n", 400),
    ("target-absolute-userinfo", b"GET http://user:pw@example.com/x HTTP/1.1\r\n" + H + b"\r\n",
     400),
    # ---- field names -----------------------------------------------------------------
    ("name-space-before-colon", b"GET / HTTP/1.1\r\nHost : example.com\r\n\r\n", 400),
    ("name-space-before-colon-other", GET_ + b"X-Foo : bar\r\n\r\n", 400),
    ("name-tab-before-colon", GET_ + b"X-Foo\t: bar\r\n\r\n", 400),
    ("name-nul", GET_ + b"X-F\x00o: bar\r\n\r\n", 400),
    ("name-non-ascii", GET_ + b"X-\xc3\xa9: bar\r\n\r\n", 400),
    ("name-empty", GET_ + b": bar\r\n\r\n", 400),
    ("name-no-colon", GET_ + b"X-Foo bar\r\n\r\n", 400),
    ("name-separator-char", GET_ + b"X(Foo): bar\r\n\r\n", 400),
    ("name-slash", GET_ + b"X/Foo: bar\r\n\r\n", 400),
    ("name-first-line-leading-tab", b"GET / HTTP/1.1\r\n\tHost: example.com\r\n\r\n", 400),
    ("name-first-line-leading-space", b"GET / HTTP/1.1\r\n Host: example.com\r\n\r\n", 400),
    ("name-x85-suffix", GET_ + b"Content-Length\x85: 5\r\n\r\nhello", 400),
    # ---- field values ----------------------------------------------------------------
    ("value-bare-lf-smuggle", GET_ + b"X-A: a\nContent-Length: 5\r\n\r\nhello", 400),
    ("value-bare-cr", GET_ + b"X-A: a\rb\r\n\r\n", 400),
    ("value-nul", GET_ + b"X-A: a\x00b\r\n\r\n", 400),
    ("value-bel", GET_ + b"X-A: a\x07b\r\n\r\n", 400),
    ("value-del", GET_ + b"X-A: a\x7fb\r\n\r\n", 400),
    ("value-vt", GET_ + b"X-A: a\x0bb\r\n\r\n", 400),
    ("value-esc", GET_ + b"X-A: \x1b[31m\r\n\r\n", 400),
    ("value-obs-fold", GET_ + b"X-A: a\r\n b\r\n\r\n", 400),
    ("value-obs-fold-tab", GET_ + b"X-A: a\r\n\tb\r\n\r\n", 400),
    ("head-ends-bare-lf", b"GET / HTTP/1.1\r\nHost: example.com\n\n", 400),
    ("head-ends-lf-crlf", b"GET / HTTP/1.1\r\nHost: example.com\r\n\n", 400),
    # ---- Content-Length --------------------------------------------------------------
    ("cl-negative", cl(b"-1"), 400),
    ("cl-minus-zero", cl(b"-0"), 400),
    ("cl-plus", cl(b"+5"), 400),
    ("cl-word", cl(b"bla-bla"), 400),
    ("cl-underscore", cl(b"0_5"), 400),
    ("cl-inner-space", cl(b"0 5"), 400),
    ("cl-two-numbers", cl(b"3 1"), 400),
    ("cl-list-same", cl(b"5, 5"), 400),
    ("cl-list-differ", cl(b"5, 6"), 400),
    ("cl-hex", cl(b"0x5"), 400),
    ("cl-empty", cl(b""), 400),
    ("cl-nbsp-suffix", cl(b"5\xa0"), 400),
    ("cl-overflow", cl(b"9" * 30), 400),
    ("cl-u64-overflow", cl(b"18446744073709551616"), 400),
    ("cl-duplicate-differ", POST + b"Content-Length: 5\r\nContent-Length: 6\r\n\r\nhello!", 400),
    ("cl-duplicate-same", POST + b"Content-Length: 5\r\nContent-Length: 5\r\n\r\nhello", 400),
    ("content-type-duplicate", POST + b"Content-Type: a/b\r\nContent-Type: c/d\r\n"
                                      b"Content-Length: 0\r\n\r\n", 400),
    # ---- Transfer-Encoding -----------------------------------------------------------
    ("te-with-cl", POST + b"Content-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n"
                          b"0\r\n\r\n", 400),
    ("cl-with-te", POST + b"Transfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n"
                          b"0\r\n\r\n", 400),
    ("te-tab-with-cl", POST + b"Transfer-Encoding:\tchunked\r\nContent-Length: 4\r\n\r\n"
                              b"0\r\n\r\n", 400),
    ("te-gzip-chunked", POST + b"Transfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n", 501),
    ("te-identity", POST + b"Transfer-Encoding: identity\r\n\r\n", 501),
    ("te-gzip", POST + b"Transfer-Encoding: gzip\r\n\r\n", 501),
    ("te-chunked-gzip", POST + b"Transfer-Encoding: chunked, gzip\r\n\r\n0\r\n\r\n", EITHER),
    ("te-identity-chunked-x2",
     POST + b"Transfer-Encoding: identity, chunked, identity, chunked\r\n\r\n0\r\n\r\n", EITHER),
    ("te-chunked-twice-one-line", POST + b"Transfer-Encoding: chunked, chunked\r\n\r\n"
                                         b"0\r\n\r\n", EITHER),
    ("te-chunked-twice-two-lines", POST + b"Transfer-Encoding: chunked\r\n"
                                          b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n", EITHER),
    ("te-chunked-then-x", POST + b"Transfer-Encoding: chunked\r\nTransfer-Encoding: x\r\n\r\n"
                                 b"0\r\n\r\n", EITHER),
    ("te-xchunked", POST + b"Transfer-Encoding: xchunked\r\n\r\n0\r\n\r\n", 501),
    ("te-comma-chunked", POST + b"Transfer-Encoding: ,chunked\r\n\r\n0\r\n\r\n", EITHER),
    ("te-chunked-x85", POST + b"Transfer-Encoding: chunked\x85\r\n\r\n0\r\n\r\n", EITHER),
    ("te-http10", b"POST /t HTTP/1.0\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n"
                  b"0\r\n\r\n", 400),
    # ---- chunked syntax ------------------------------------------------------------------
    ("chunk-underscore", te(b"6_0\r\n" + b"x" * 96 + b"\r\n0\r\n\r\n"), 400),
    ("chunk-plus", te(b"+5\r\nhello\r\n0\r\n\r\n"), 400),
    ("chunk-minus", te(b"-5\r\nhello\r\n0\r\n\r\n"), 400),
    ("chunk-0x", te(b"0x5\r\nhello\r\n0\r\n\r\n"), 400),
    ("chunk-trailing-space", te(b"5 \r\nhello\r\n0\r\n\r\n"), 400),
    ("chunk-leading-space", te(b" 5\r\nhello\r\n0\r\n\r\n"), 400),
    ("chunk-size-bare-lf", te(b"5\nhello\r\n0\r\n\r\n"), 400),
    ("chunk-ext-without-size", te(b";a=b\r\nhello\r\n0\r\n\r\n"), 400),
    ("chunk-empty-size", te(b"\r\nhello\r\n0\r\n\r\n"), 400),
    ("chunk-ext-bare-cr", te(b"5;a\rb\r\nhello\r\n0\r\n\r\n"), 400),
    ("chunk-ext-bare-lf", te(b"5;a\nb\r\nhello\r\n0\r\n\r\n"), 400),
    ("chunk-ext-empty-value", te(b"5;a=\r\nhello\r\n0\r\n\r\n"), 400),
    ("chunk-ext-ctl", te(b"5;a=\x01\r\nhello\r\n0\r\n\r\n"), 400),
    ("chunk-ext-huge", te(b"5;a=" + b"x" * 70000 + b"\r\nhello\r\n0\r\n\r\n"), 400),
    ("chunk-data-no-crlf", te(b"5\r\nhelloXX0\r\n\r\n"), 400),
    ("chunk-data-bare-lf", te(b"5\r\nhello\n0\r\n\r\n"), 400),
    ("chunk-data-too-long", te(b"3\r\nhello\r\n0\r\n\r\n"), 400),
    ("chunk-non-hex", te(b"g\r\nhello\r\n0\r\n\r\n"), 400),
    ("chunk-size-overflow", te(b"1" + b"0" * 16 + b"\r\nhello\r\n0\r\n\r\n"), 400),
    ("chunk-size-huge-overflow", te(b"F" * 40 + b"\r\nhello\r\n0\r\n\r\n"), 400),
    # issue 16 item 12: leading zeros count against the 4 KiB size-line cap
    ("chunk-size-5000-zeros", te(b"0" * 5000 + b"1\r\nx\r\n0\r\n\r\n"), 400),
    ("chunk-last-size-5000-zeros", te(b"5\r\nhello\r\n" + b"0" * 5000 + b"\r\n\r\n"), 400),
    ("chunk-last-missing-crlf-then-request", te(b"0\r\n" + PIPELINED), 400),
    ("chunk-last-cr-x", te(b"0\r\rX\r\n\r\n"), 400),
    # ---- trailers --------------------------------------------------------------------
    ("trailer-content-length", te(b"5\r\nhello\r\n0\r\nContent-Length: 5\r\n\r\n"), 400),
    ("trailer-transfer-encoding", te(b"5\r\nhello\r\n0\r\nTransfer-Encoding: chunked\r\n\r\n"),
     400),
    ("trailer-host", te(b"5\r\nhello\r\n0\r\nHost: evil.example\r\n\r\n"), 400),
    # issue 16 item 17: what could reframe the connection (or route) if merged is refused
    ("trailer-content-length-after-fine", te(b"5\r\nhello\r\n0\r\nVary: x\r\nContent-Length: 5\r\n\r\n"),
     400),
    ("trailer-connection", te(b"5\r\nhello\r\n0\r\nConnection: close\r\n\r\n"), 400),
    ("trailer-upgrade", te(b"5\r\nhello\r\n0\r\nUpgrade: h2c\r\n\r\n"), 400),
    ("trailer-bare-lf", te(b"5\r\nhello\r\n0\r\nX-T: 1\n\r\n"), 400),
    ("trailer-obs-fold", te(b"5\r\nhello\r\n0\r\nX-T: 1\r\n 2\r\n\r\n"), 400),
    ("trailer-no-colon", te(b"5\r\nhello\r\n0\r\nX-T 1\r\n\r\n"), 400),
    ("trailer-ends-bare-lf", te(b"5\r\nhello\r\n0\r\n\n"), 400),
    # ---- underscores refused on a server configured to refuse them --------------------
    ("underscore-refused", GET_ + b"X_Foo: 1\r\n\r\n", 400, "refuse"),
    ("underscore-te-refused", POST + b"Transfer_Encoding: chunked\r\n\r\n0\r\n\r\n", 400,
     "refuse"),
    # ---- limits (server "limits": line 256, fields 10, field 128, head 1024, body 100) ---
    ("limit-request-line", b"GET /" + b"a" * 300 + b" HTTP/1.1\r\n" + H + b"\r\n", 414, "limits"),
    ("limit-request-line-no-crlf", b"GET /" + b"a" * 400, 414, "limits", False),
    ("limit-fields", GET_ + b"".join(b"X-F%d: v\r\n" % i for i in range(10)) + b"\r\n", 431,
     "limits"),
    ("limit-field-size", GET_ + b"X-Long: " + b"v" * 200 + b"\r\n\r\n", 431, "limits"),
    ("limit-field-size-name", GET_ + b"X-" + b"n" * 200 + b": v\r\n\r\n", 431, "limits"),
    ("limit-head-size", GET_ + b"".join(b"X-H%d: " % i + b"v" * 115 + b"\r\n" for i in range(9))
     + b"\r\n", 431, "limits"),
    ("limit-body-cl", POST + b"Content-Length: 101\r\n\r\n", 413, "limits", False),
    ("limit-body-cl-huge", POST + b"Content-Length: 1000000000000\r\n\r\n", 413, "limits", False),
    ("limit-body-cl-expect", POST + b"Content-Length: 101\r\nExpect: 100-continue\r\n\r\n", 413,
     "limits", False),
    ("limit-body-chunked", te(b"80\r\n" + b"x" * 128 + b"\r\n0\r\n\r\n"), 413, "limits"),
    # ---- default limits (line 16384, 256 fields) -------------------------------------
    ("default-limit-request-line", b"GET /" + b"a" * 17000 + b" HTTP/1.1\r\n" + H + b"\r\n", 414),
    ("default-limit-fields", GET_ + b"".join(b"X-F%d: v\r\n" % i for i in range(260)) + b"\r\n",
     431),
    ("default-limit-field-size", GET_ + b"X-Long: " + b"v" * 33000 + b"\r\n\r\n", 431),
]

# cases that send a valid request first and then an invalid one: (id, raw, statuses)
SEQUENCES = [
    ("good-then-bad-cl", GET_ + b"\r\n" + cl(b"+5") + PIPELINED, [200, 400]),
    ("good-then-bad-version", GET_ + b"\r\n" + b"GET / HTTP/2.0\r\n" + H + b"\r\n" + PIPELINED,
     [200, 505]),
    ("cl-te-smuggle", POST + b"Content-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
                      b"GET /smuggled HTTP/1.1\r\n" + H + b"\r\n", [400]),
    ("te-te-smuggle", POST + b"Transfer-Encoding: chunked\r\nTransfer-Encoding: cow\r\n\r\n"
                      b"5\r\nhello\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\n" + H + b"\r\n", [EITHER]),
    ("client-connection-close", GET_ + b"Connection: close\r\n\r\n" + PIPELINED, [200]),
    ("http10-no-keepalive", b"GET / HTTP/1.0\r\n\r\n" + PIPELINED, [200]),
    ("connection-close-among-tokens", GET_ + b"Connection: keep-alive, close\r\n\r\n" + PIPELINED,
     [200]),
    ("good-then-bad-chunk", te(b"5\r\nhello\r\n0\r\n\r\n") + te(b"zz\r\n") + PIPELINED, [200, 400]),
]

VALID = [
    ("lowercase-names", b"GET /lc HTTP/1.1\r\nhost: h.example\r\nx-foo: bar\r\n\r\n",
     {"HTTP_X_FOO": "bar", "HTTP_HOST": "h.example", "PATH_INFO": "/lc"}, ""),
    ("no-space-after-colon", b"GET / HTTP/1.1\r\nHost:h\r\nX-Foo:bar\r\n\r\n",
     {"HTTP_X_FOO": "bar", "HTTP_HOST": "h"}, ""),
    ("htab-ows", b"GET / HTTP/1.1\r\nHost: h\r\nX-Foo:\tbar\t\r\n\r\n", {"HTTP_X_FOO": "bar"}, ""),
    ("obs-text-value", b"GET / HTTP/1.1\r\nHost: h\r\nX-Foo: \x80caf\xe9\xff\r\n\r\n",
     {"HTTP_X_FOO": "\x80caf\xe9\xff"}, ""),
    ("quoted-value", b"GET / HTTP/1.1\r\nHost: h\r\nX-Q: \"a, b\"\r\n\r\n",
     {"HTTP_X_Q": "\"a, b\""}, ""),
    ("fragment-dropped", b"GET /f?a=b#frag HTTP/1.1\r\nHost: h\r\n\r\n",
     {"PATH_INFO": "/f", "QUERY_STRING": "a=b"}, ""),
    ("leading-crlf", b"\r\nGET /lead HTTP/1.1\r\nHost: h\r\n\r\n", {"PATH_INFO": "/lead"}, ""),
    ("absolute-form", b"GET http://example.org:8080/p/q?x=1 HTTP/1.1\r\nHost: other\r\n\r\n",
     {"PATH_INFO": "/p/q", "QUERY_STRING": "x=1", "SERVER_NAME": "example.org"}, ""),
    ("absolute-form-empty-path", b"GET http://example.org HTTP/1.1\r\nHost: example.org\r\n\r\n",
     {"PATH_INFO": "/", "SERVER_NAME": "example.org"}, ""),
    ("options-asterisk", b"OPTIONS * HTTP/1.1\r\nHost: h\r\n\r\n",
     {"REQUEST_METHOD": "OPTIONS", "REQUEST_URI": "*", "PATH_INFO": ""}, ""),
    ("token-method", b"M-SEARCH /m HTTP/1.1\r\nHost: h\r\n\r\n", {"REQUEST_METHOD": "M-SEARCH"}, ""),
    ("method-32-bytes", b"M" * 32 + b" /m HTTP/1.1\r\nHost: h\r\n\r\n",
     {"REQUEST_METHOD": "M" * 32}, ""),
    ("chunked-ext-trailers", b"POST /c HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
                             b"5;foo=bar;baz\r\nhello\r\n0;last\r\nX-Trailer: yes\r\n\r\n",
     {}, "hello"),
    # issue 16 item 17: ordinary trailer fields are dropped, never refused nor surfaced
    ("trailer-vary", b"POST /c HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
                     b"5\r\nhello\r\n0\r\nVary: x\r\n\r\n", {"HTTP_VARY": None}, "hello"),
    ("trailer-content-type", b"POST /c HTTP/1.1\r\nHost: h\r\nContent-Type: text/plain\r\n"
                             b"Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n"
                             b"Content-Type: application/x-evil\r\nVary: x\r\n\r\n",
     {"CONTENT_TYPE": "text/plain", "HTTP_VARY": None}, "hello"),
    ("trailer-request-modifiers", b"POST /c HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n"
                                  b"\r\n5\r\nhello\r\n0\r\nExpect: 100-continue\r\n"
                                  b"Authorization: Basic eDp5\r\nX-Auth-User: root\r\n"
                                  b"Content-Encoding: gzip\r\nTrailer: Vary\r\n\r\n",
     {"HTTP_AUTHORIZATION": None, "HTTP_EXPECT": None, "HTTP_X_AUTH_USER": None,
      "HTTP_CONTENT_ENCODING": None, "HTTP_TRAILER": None}, "hello"),
    ("chunked-quoted-ext", b"POST /c HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
                           b"5;q=\"a;b=c\\\"d\"\r\nhello\r\n0\r\n\r\n", {}, "hello"),
    ("chunked-leading-zeros", b"POST /c HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
                              b"0005\r\nhello\r\n0000\r\n\r\n", {}, "hello"),
    ("chunked-hex-case", b"POST /c HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
                         b"A\r\n0123456789\r\na\r\nabcdefghij\r\n0\r\n\r\n",
     {}, "0123456789abcdefghij"),
    ("te-ows", b"POST /c HTTP/1.1\r\nHost: h\r\nTransfer-Encoding:  chunked \r\n\r\n"
               b"3\r\nabc\r\n0\r\n\r\n", {}, "abc"),
    ("cl-leading-zeros", b"POST /c HTTP/1.1\r\nHost: h\r\nContent-Length: 005\r\n\r\nhello", {},
     "hello"),
    ("expect-with-body-already-sent", b"POST /x HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n"
                                      b"Expect: 100-continue\r\n\r\nabc", {}, "abc"),
    ("http10-no-host", b"GET /old HTTP/1.0\r\n\r\n", {"SERVER_PROTOCOL": "HTTP/1.0"}, ""),
    ("long-request-line-8k", b"GET /" + b"a" * 8100 + b" HTTP/1.1\r\nHost: h\r\n\r\n",
     {"PATH_INFO": "/" + "a" * 8100}, ""),
    ("long-header-10k", b"GET / HTTP/1.1\r\nHost: h\r\nX-Big: " + b"b" * 10000 + b"\r\n\r\n",
     {"HTTP_X_BIG": "b" * 10000}, ""),
    ("many-headers-200", b"GET / HTTP/1.1\r\nHost: h\r\n"
                         + b"".join(b"X-N%d: %d\r\n" % (i, i) for i in range(200)) + b"\r\n",
     {"HTTP_X_N199": "199"}, ""),
    ("tchar-name", b"GET / HTTP/1.1\r\nHost: h\r\nX-A!#$%&'*+^`|~: v\r\n\r\n", {}, ""),
    ("empty-value", b"GET / HTTP/1.1\r\nHost: h\r\nX-Empty:\r\n\r\n", {"HTTP_X_EMPTY": ""}, ""),
]

# valid at the edge of the small limits ("limits" server)
VALID_AT_LIMITS = [
    ("line-under-limit", b"GET /" + b"a" * 200 + b" HTTP/1.1\r\n" + H + b"\r\n"),
    ("ten-fields", b"GET / HTTP/1.1\r\n" + H + b"".join(b"X-F%d: v\r\n" % i for i in range(9))
     + b"\r\n"),
    ("field-100", GET_ + b"X-Long: " + b"v" * 90 + b"\r\n\r\n"),
    ("body-100", POST + b"Content-Length: 100\r\n\r\n" + b"x" * 100),
    ("chunked-body-100", te(b"64\r\n" + b"x" * 100 + b"\r\n0\r\n\r\n")),
]
