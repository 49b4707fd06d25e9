"""Conformance cases: data only. Every case runs against every front end (adapters.py).

A case is a dict:
    id        test id suffix (unique)
    method    request method                          (default "GET")
    target    request target AFTER the front end's script prefix: the adapter sends
              prefix + target when target starts with "/" or is "" (so "" = no PATH_INFO)
    version   "HTTP/1.1" (default) or "HTTP/1.0"
    headers   [(name, value), ...] sent in order, repeats allowed (str, latin-1 on the wire;
              bytes allowed for raw values). The adapter adds `Host: <front end>` unless
              host=False or a Host header is given, and `Connection: close` unless the case
              has a Connection header.
    body      bytes
    framing   "length": adapter adds Content-Length | "chunked": adapter adds
              Transfer-Encoding: chunked and chunks the body (chunk=N bytes, default 4096) |
              "none": nothing added (the case's own headers frame the body, if any)
    auth      True: send `Authorization: Basic` with the test credentials; front ends that
              can authenticate (CGI: lighttpd mod_auth) use their protected script.
    expect    {
      "status": int,
      "reason": str  (the reason phrase the client sees)
      "environ": {KEY: value | ABSENT | PRESENT | Match(regex) | T(template)},
      "read":    {"data": str | "len": int | "sha256": hex | "pieces": int}  (what the app read)
      "body":    {"exact": bytes | "empty": True | "contains": [bytes] |
                  "not_contains": [bytes] | "startswith": bytes | "len": int | "sha256": hex}
      "headers": {lower-case name: value | ABSENT | PRESENT | Match(regex)}
      "header_all": {lower-case name: [values in order]}
      "complete": bool   (the body's framing ended properly)
      "log":     [str]  text that must appear in the front end's error log (app tracebacks)
    }
    overrides {front_end: {same keys as expect; "environ"/"headers"/"read"/"body" dicts are
               merged key by key into expect, others replace}}  -- with a "why" string
    skip      {front_end: reason}   only where the case cannot be expressed at all

Templates (T) are formatted with the adapter's context: {script} (SCRIPT_NAME of the app on
that front end, "" for the HTTP listener), {port} (the port the client connected to).

Every case whose response is the app's JSON also gets COMMON_ENVIRON and the front end's
FRONT_END_ENVIRON.
"""

import hashlib


class _Sentinel:
    def __init__(self, name):
        self.name = name

    def __repr__(self):
        return self.name


ABSENT = _Sentinel("ABSENT")
PRESENT = _Sentinel("PRESENT")


class Match(str):
    """Expected value given as a regular expression (re.fullmatch)."""


class T(str):
    """Expected value (or target) formatted with the adapter's context."""


def sha(b: bytes) -> str:
    return hashlib.sha256(b).hexdigest()


# ---- expectations shared by all cases ---------------------------------------------------

COMMON_ENVIRON = {
    "GATEWAY_INTERFACE": "CGI/1.1",
    "wsgi.version": [1, 0],
    "wsgi.url_scheme": "http",
    "wsgi.input_terminated": True,
    "wsgi.input": PRESENT,
    "wsgi.errors": PRESENT,
    "SCRIPT_NAME": T("{script}"),
    "QUERY_STRING": PRESENT,
    "REQUEST_METHOD": PRESENT,
    "SERVER_NAME": PRESENT,
    "SERVER_PORT": Match(r"[0-9]+"),
    "SERVER_PROTOCOL": Match(r"HTTP/1\.[01]"),
    "REMOTE_ADDR": "127.0.0.1",
    "REMOTE_PORT": Match(r"[0-9]+"),
    "HTTP_CONTENT_LENGTH": ABSENT,
    "HTTP_CONTENT_TYPE": ABSENT,
    "HTTP_PROXY": ABSENT,
    "_bad_types": [],
    "_non_latin1": [],
    "_environ_is_dict": True,
}

FRONT_END_ENVIRON = {
    "http": {"wsgi.run_once": False, "wsgi.multithread": True, "wsgi.multiprocess": False},
    # one process per request
    "cgi": {"wsgi.run_once": True, "wsgi.multithread": False, "wsgi.multiprocess": True},
    # a pool of threads in w3wp; IIS may run several w3wp for one app (web gardens, overlapped
    # recycling)
    "isapi": {"wsgi.run_once": False, "wsgi.multithread": True, "wsgi.multiprocess": True},
}

# lighttpd sets CONTENT_LENGTH on every CGI request, "0" without a body (contract: passed on
# when non-empty)
CGI_CL0 = {"cgi": {"environ": {"CONTENT_LENGTH": "0"},
                   "why": "lighttpd always sets CONTENT_LENGTH"}}

CASES = []


def case(id, target="/", method="GET", headers=(), body=b"", framing=None, version="HTTP/1.1",
         expect=None, overrides=None, skip=None, **kw):
    if framing is None:
        framing = "length" if body else "none"
    c = {"id": id, "method": method, "target": target, "headers": list(headers), "body": body,
         "framing": framing, "version": version, "expect": expect or {},
         "overrides": overrides or {}, "skip": skip or {}}
    c.update(kw)
    c["expect"].setdefault("status", 200)
    CASES.append(c)
    return c


def env_case(id, target, env, **kw):
    """A GET whose JSON environ must contain `env` (target also checked via REQUEST_URI)."""
    kw.setdefault("overrides", {})
    expect = kw.pop("expect", {})
    expect.setdefault("environ", {}).update(env)
    return case(id, target, expect=expect, **kw)


def uri(target):
    """REQUEST_URI / RAW_URI: the target as sent, with the front end's script prefix."""
    return {"REQUEST_URI": T("{script}" + target), "RAW_URI": T("{script}" + target)}


def merge(*dicts):
    out = {}
    for d in dicts:
        for fe, o in d.items():
            cur = out.setdefault(fe, {})
            for k, v in o.items():
                if isinstance(v, dict) and isinstance(cur.get(k), dict):
                    cur[k] = {**cur[k], **v}
                elif k == "why" and "why" in cur:
                    cur[k] = cur[k] + "; " + v
                else:
                    cur[k] = v
    return out


# ---- paths and encodings --------------------------------------------------------------------

PATHS = [
    # id, target, PATH_INFO
    ("path-root", "/", "/"),
    ("path-simple", "/a/b/c", "/a/b/c"),
    ("path-trailing-slash", "/a/b/", "/a/b/"),
    ("path-utf8", "/caf%C3%A9", "/caf\xc3\xa9"),
    ("path-utf8-euro", "/%E2%82%AC/x", "/\xe2\x82\xac/x"),
    ("path-latin1-encoded", "/%E9t%E9", "/\xe9t\xe9"),
    ("path-space-encoded", "/a%20b", "/a b"),
    ("path-plus", "/a+b", "/a+b"),
    ("path-2f", "/a%2Fb", "/a/b"),
    ("path-2f-lower", "/a%2fb/c", "/a/b/c"),
    ("path-percent-25", "/%25", "/%"),
    ("path-percent-25-2f", "/x%252Fy", "/x%2Fy"),
    ("path-tilde", "/%7Euser", "/~user"),
    ("path-unreserved-encoded", "/%41%42%43", "/ABC"),
    ("path-semicolon", "/semi;p=1", "/semi;p=1"),
    ("path-colon-at", "/a:b@c", "/a:b@c"),
    ("path-encoded-question", "/a%3Fb", "/a?b"),
    ("path-encoded-hash", "/a%23b", "/a#b"),
    ("path-sub-delims", "/!$&'()*,=", "/!$&'()*,="),
    ("path-long", "/" + "seg/" * 200 + "end", "/" + "seg/" * 200 + "end"),
]
for _id, _t, _p in PATHS:
    env_case(_id, _t, {"PATH_INFO": _p, "QUERY_STRING": "", **uri(_t)})

env_case("path-empty-info", "", {"PATH_INFO": "", **uri("")})

env_case("path-double-slash", "/a//b///", {"PATH_INFO": "/a//b///", **uri("/a//b///")},
         overrides={"cgi": {"environ": {"PATH_INFO": "/a/b/"},
                            "why": "lighttpd collapses repeated slashes before mapping the path"}})

env_case("path-dot-segments", "/a/./b/../c", {"PATH_INFO": "/a/./b/../c",
                                              **uri("/a/./b/../c")},
         overrides={"cgi": {"environ": {"PATH_INFO": "/a/c"},
                            "why": "lighttpd removes dot segments before mapping the path"}})

env_case("path-encoded-dot-segments", "/a/%2E%2E/b", {"PATH_INFO": "/a/../b",
                                                       **uri("/a/%2E%2E/b")},
         overrides={"cgi": {"environ": {"PATH_INFO": "/b"},
                            "why": "lighttpd decodes unreserved %2E then removes dot segments"}})

# raw bytes >= 0x80 in the request line are not a valid request-target (RFC 9112): 400.
# lighttpd accepts them; the gateway then gets them decoded in PATH_INFO and raw in REQUEST_URI
_RAW_OK = "lighttpd accepts raw bytes >= 0x80 in the request target"
# http.sys accepts them too (FavorUtf8 / EnableNonUtf8 defaults) and IIS hands them over raw
# in UNENCODED_URL; the harness does the same
_RAW_IIS = "http.sys accepts raw bytes >= 0x80 in the URL; UNENCODED_URL carries them as sent"
case("path-raw-utf8", "/caf\xc3\xa9", expect={"status": 400},
     overrides={fe: {"status": 200, "environ": {"PATH_INFO": "/caf\xc3\xa9",
                                                **uri("/caf\xc3\xa9")}, "why": why}
                for fe, why in (("cgi", _RAW_OK), ("isapi", _RAW_IIS))})
case("path-raw-latin1", "/\xe9t\xe9", expect={"status": 400},
     overrides={fe: {"status": 200, "environ": {"PATH_INFO": "/\xe9t\xe9",
                                                **uri("/\xe9t\xe9")}, "why": why}
                for fe, why in (("cgi", _RAW_OK), ("isapi", _RAW_IIS))})

# ---- query strings ----------------------------------------------------------------------------

QUERIES = [
    ("query-none", "/q", ""),
    ("query-empty", "/q?", ""),
    ("query-simple", "/q?a=1&b=2", "a=1&b=2"),
    ("query-encoded", "/q?x=%20%2F%26%3D", "x=%20%2F%26%3D"),
    ("query-plus", "/q?a+b=c+d", "a+b=c+d"),
    ("query-repeated-keys", "/q?k=1&k=2&k=3", "k=1&k=2&k=3"),
    ("query-utf8-encoded", "/q?q=%C3%A9", "q=%C3%A9"),
    ("query-second-question", "/q?a=1?b=2", "a=1?b=2"),
    ("query-slashes", "/q?path=/a/b/../c", "path=/a/b/../c"),
    ("query-flag", "/q?flag", "flag"),
    # an "indexed" query: CGI hosts put the words in argv; they must not reach the gateway's
    # option parser (contract: the wrapper never forwards "$@")
    ("query-indexed-words", "/q?word1+word2", "word1+word2"),
    ("query-looks-like-option", "/q?--help", "--help"),
    ("query-looks-like-app", "/q?--version+-x", "--version+-x"),
    ("query-empty-values", "/q?a=&b=&=c", "a=&b=&=c"),
    ("query-semicolons", "/q?a=1;b=2", "a=1;b=2"),
    ("query-long", "/q?" + "&".join(f"k{i}=v{i}" for i in range(300)),
     "&".join(f"k{i}=v{i}" for i in range(300))),
    ("query-path-utf8-both", "/caf%C3%A9?q=caf%C3%A9", "q=caf%C3%A9"),
]
for _id, _t, _q in QUERIES:
    env_case(_id, _t, {"QUERY_STRING": _q, **uri(_t)})

case("query-raw-utf8", "/q?q=caf\xc3\xa9", expect={"status": 400},
     overrides={"cgi": {"status": 200, "environ": {"QUERY_STRING": "q=caf%C3%A9",
                                                   **uri("/q?q=caf\xc3\xa9")},
                        "why": _RAW_OK + " (and percent-encodes them in QUERY_STRING)"},
                "isapi": {"status": 200, "environ": {"QUERY_STRING": "q=caf\xc3\xa9",
                                                     **uri("/q?q=caf\xc3\xa9")},
                          "why": _RAW_IIS}})
env_case("query-encoded-path-separator", "/p%3Fx?y", {"PATH_INFO": "/p?x", "QUERY_STRING": "y"})

# ---- request headers → environ ------------------------------------------------------------

env_case("hdr-repeated-joined", "/h",
         {"HTTP_X_MULTI": "a, b, c", "HTTP_X_OTHER": "z"},
         headers=[("X-Multi", "a"), ("X-Other", "z"), ("X-Multi", "b"), ("x-multi", "c")])
env_case("hdr-cookie-joined-semicolon", "/h", {"HTTP_COOKIE": "a=1; b=2; c=3"},
         headers=[("Cookie", "a=1"), ("Cookie", "b=2; c=3")])
env_case("hdr-name-case", "/h", {"HTTP_X_LOWER_CASE": "v", "HTTP_X_MIXED_CASE": "w",
                                 "HTTP_USER_AGENT": "conformance/1"},
         headers=[("x-lower-case", "v"), ("X-MiXeD-CaSe", "w"), ("USER-AGENT", "conformance/1")])
env_case("hdr-ows-trimmed", "/h", {"HTTP_X_TRIM": "v  w", "HTTP_X_NOSPACE": "x"},
         headers=[("X-Trim", "\t  v  w \t "), ("X-Nospace", "x")])
env_case("hdr-obs-text-latin1", "/h", {"HTTP_X_OBS": "caf\xe9 \xff"},
         headers=[("X-Obs", "caf\xe9 \xff")])
env_case("hdr-utf8-value", "/h", {"HTTP_X_UTF8": "caf\xc3\xa9"},
         headers=[("X-Utf8", "caf\xc3\xa9")])
env_case("hdr-empty-value", "/h", {"HTTP_X_EMPTY": ""}, headers=[("X-Empty", "")],
         overrides={"cgi": {"environ": {"HTTP_X_EMPTY": ABSENT},
                            "why": "lighttpd drops request headers with an empty value"}})
env_case("hdr-long-value", "/h", {"HTTP_X_LONG": "v" * 6000}, headers=[("X-Long", "v" * 6000)])
env_case("hdr-many", "/h", {f"HTTP_X_H{i}": str(i) for i in range(60)},
         headers=[(f"X-H{i}", str(i)) for i in range(60)])
env_case("hdr-digits-and-dashes", "/h", {"HTTP_X_1_2_3": "d"}, headers=[("X-1-2-3", "d")])

env_case("hdr-underscore-dropped", "/h", {"HTTP_X_UNDER": ABSENT, "HTTP_X_DASH": "2"},
         headers=[("X_Under", "1"), ("X-Dash", "2")],
         overrides={"cgi": {"environ": {"HTTP_X_UNDER": "1"},
                            "why": "lighttpd maps '_' and '-' both to '_': the CGI program "
                                   "cannot tell X_Under from X-Under"}})
env_case("hdr-underscore-shadow", "/h", {"HTTP_X_AUTH": "good"},
         headers=[("X-Auth", "good"), ("X_Auth", "evil")],
         overrides={"cgi": {"environ": {"HTTP_X_AUTH": "evil"},
                            "why": "lighttpd maps X_Auth to the same meta-variable, last one "
                                   "wins: a CGI program cannot undo that"}})

env_case("hdr-proxy-header-dropped", "/h", {"HTTP_PROXY": ABSENT},
         headers=[("Proxy", "http://evil.example:8080")])
env_case("hdr-proxy-lowercase", "/h", {"HTTP_PROXY": ABSENT},
         headers=[("proxy", "http://evil.example:8080")])

case("hdr-content-type-length", "/ct", method="POST", body=b"hello",
     headers=[("Content-Type", "text/plain; charset=utf-8")],
     expect={"environ": {"CONTENT_TYPE": "text/plain; charset=utf-8", "CONTENT_LENGTH": "5",
                         "HTTP_CONTENT_TYPE": ABSENT, "HTTP_CONTENT_LENGTH": ABSENT},
             "read": {"data": "hello"}})
case("hdr-content-type-without-body", "/ct", method="GET",
     headers=[("Content-Type", "application/json")],
     expect={"environ": {"CONTENT_TYPE": "application/json", "CONTENT_LENGTH": ABSENT,
                         "HTTP_CONTENT_TYPE": ABSENT}, "read": {"len": 0}},
     overrides=CGI_CL0)
case("hdr-no-body-no-content-keys", "/nobody",
     expect={"environ": {"CONTENT_TYPE": ABSENT, "CONTENT_LENGTH": ABSENT},
             "read": {"len": 0}},
     overrides=CGI_CL0)

# SERVER_NAME follows Host; SERVER_PORT is the port the request was received on
# (RFC 3875 §4.1.15): the listener's, the CGI host's, IIS's, whatever Host says.
env_case("hdr-host-with-port", "/h", {"SERVER_NAME": "example.com", "SERVER_PORT": T("{port}"),
                                      "HTTP_HOST": "example.com:8080"},
         headers=[("Host", "example.com:8080")])
env_case("hdr-host-without-port", "/h", {"SERVER_NAME": "example.com",
                                         "HTTP_HOST": "example.com",
                                         "SERVER_PORT": T("{port}")},
         headers=[("Host", "example.com")])
env_case("hdr-host-ipv6", "/h", {"SERVER_NAME": "[::1]", "SERVER_PORT": T("{port}"),
                                 "HTTP_HOST": "[::1]:8443"},
         headers=[("Host", "[::1]:8443")])
env_case("hdr-host-port-other-than-listener", "/h", {"SERVER_PORT": T("{port}")},
         headers=[("Host", "localhost:1234")])
env_case("hdr-host-uppercase", "/h", {"SERVER_NAME": Match("(?i)example\\.com"),
                                      "HTTP_HOST": Match("(?i)example\\.com")},
         headers=[("Host", "EXAMPLE.COM")])
env_case("hdr-http10-without-host", "/h", {"HTTP_HOST": ABSENT, "SERVER_NAME": "127.0.0.1",
                                           "SERVER_PORT": T("{port}"),
                                           "SERVER_PROTOCOL": "HTTP/1.0"},
         version="HTTP/1.0", host=False,
         overrides={"cgi": {"environ": {"SERVER_NAME": Match(r"(127\.0\.0\.1)?")},
                            "why": "lighttpd without server.name sends SERVER_NAME='' when the "
                                   "request has no Host: the contract says the host's value is "
                                   "used; SERVER_ADDR (as the HTTP listener does) also accepted"}})
env_case("hdr-authorization-passed", "/h", {"HTTP_AUTHORIZATION": "Bearer abc.def",
                                            "REMOTE_USER": ABSENT, "AUTH_TYPE": ABSENT},
         headers=[("Authorization", "Bearer abc.def")])
env_case("hdr-https-request-header-not-scheme", "/h", {"wsgi.url_scheme": "http",
                                                       "HTTPS": ABSENT, "HTTP_HTTPS": "on"},
         headers=[("HTTPS", "on")])

UNTRUSTED = [
    ("hdr-untrusted-x-forwarded-for", "X-Forwarded-For", "203.0.113.9", "HTTP_X_FORWARDED_FOR",
     {"REMOTE_ADDR": "127.0.0.1"}),
    ("hdr-untrusted-x-forwarded-proto", "X-Forwarded-Proto", "https", "HTTP_X_FORWARDED_PROTO",
     {"wsgi.url_scheme": "http"}),
    ("hdr-untrusted-x-forwarded-host", "X-Forwarded-Host", "evil.example",
     "HTTP_X_FORWARDED_HOST", {"SERVER_NAME": "127.0.0.1"}),
    ("hdr-untrusted-forwarded", "Forwarded", "for=203.0.113.9;proto=https", "HTTP_FORWARDED",
     {"REMOTE_ADDR": "127.0.0.1", "wsgi.url_scheme": "http"}),
]
for _id, _name, _value, _key, _more in UNTRUSTED:
    env_case(_id, "/h", {_key: ABSENT, **_more}, headers=[(_name, _value)])

# ---- identity: REMOTE_USER only from an authenticating front end ------------------------

IDENTITY_KEYS_ABSENT = {"HTTP_REMOTE_USER": ABSENT, "HTTP_X_REMOTE_USER": ABSENT,
                        "HTTP_X_FORWARDED_USER": ABSENT}
IDENTITY = [
    ("id-remote-user-header", [("Remote-User", "admin")]),
    ("id-remote-user-underscore", [("Remote_User", "admin")]),
    ("id-x-remote-user", [("X-Remote-User", "admin")]),
    ("id-x-forwarded-user", [("X-Forwarded-User", "admin")]),
    ("id-x-forwarded-user-underscore", [("X_Forwarded_User", "admin")]),
    ("id-all-identity-headers", [("Remote-User", "a"), ("Remote_User", "b"),
                                 ("X-Remote-User", "c"), ("X-Forwarded-User", "d"),
                                 ("X_Forwarded_User", "e")]),
]
for _id, _h in IDENTITY:
    env_case(_id, "/who", {"REMOTE_USER": ABSENT, "AUTH_TYPE": ABSENT, **IDENTITY_KEYS_ABSENT},
             headers=_h)

_AUTHED = {"cgi": {"environ": {"REMOTE_USER": "alice", "AUTH_TYPE": "Basic"},
                   "why": "lighttpd authenticated the request (mod_auth basic)"},
           "isapi": {"environ": {"REMOTE_USER": "alice", "AUTH_TYPE": "Basic"},
                     "why": "IIS Basic auth (the harness's --basic-user) authenticated the "
                            "request"}}
env_case("id-authenticated-by-front-end", "/who",
         {"REMOTE_USER": ABSENT, "AUTH_TYPE": ABSENT, "HTTP_AUTHORIZATION": Match("Basic .+")},
         auth=True, overrides=_AUTHED)
env_case("id-authenticated-spoof-headers", "/who",
         {"REMOTE_USER": ABSENT, "AUTH_TYPE": ABSENT, **IDENTITY_KEYS_ABSENT},
         auth=True, headers=[("Remote-User", "mallory"), ("X-Forwarded-User", "mallory"),
                             ("Remote_User", "mallory"), ("X-Remote-User", "mallory")],
         overrides=_AUTHED)

# ---- request bodies -----------------------------------------------------------------------

BINARY = bytes(range(256)) * 4
LINES = b"first line\r\nsecond\n\nthird\r\nlast-no-newline"
MIB = bytes((i * 7 + (i >> 8)) & 0xFF for i in range(1 << 20))
FORM = b"name=J%C3%BCrgen&x=1+2&empty="
MULTIPART = (b"--XyZ\r\nContent-Disposition: form-data; name=\"f\"; filename=\"a.bin\"\r\n"
             b"Content-Type: application/octet-stream\r\n\r\n" + BINARY[:100] +
             b"\r\n--XyZ--\r\n")


def body_case(id, body, framing="length", method="POST", read_mode=None, headers=(),
              environ=None, overrides=None, chunk=4096, **kw):
    h = list(headers)
    if read_mode:
        h.append(("X-Read", read_mode))
    read = {"len": len(body), "sha256": sha(body)}
    if len(body) <= 65536:
        read["data"] = body.decode("latin-1")
    env = {"REQUEST_METHOD": method}
    if framing == "length":
        env["CONTENT_LENGTH"] = str(len(body))
    elif framing == "chunked":
        env["CONTENT_LENGTH"] = ABSENT
        overrides = merge(overrides or {}, {"cgi": {
            "environ": {"CONTENT_LENGTH": str(len(body))},
            "why": "lighttpd buffers a chunked request body and sets CONTENT_LENGTH"}})
    env.update(environ or {})
    return case(id, "/body", method=method, headers=h, body=body, framing=framing, chunk=chunk,
                expect={"environ": env, "read": read}, overrides=overrides, **kw)


case("body-none-get", "/body", expect={"environ": {"CONTENT_LENGTH": ABSENT},
                                       "read": {"len": 0, "data": ""}},
     overrides=CGI_CL0)
case("body-post-cl0", "/body", method="POST", framing="length",
     expect={"environ": {"CONTENT_LENGTH": "0"}, "read": {"len": 0, "data": ""}})
body_case("body-small", b"hello")
body_case("body-binary", BINARY, headers=[("Content-Type", "application/octet-stream")],
          environ={"CONTENT_TYPE": "application/octet-stream"})
body_case("body-crlf-lines", LINES)
body_case("body-1mib-digest", MIB, read_mode="n")
body_case("body-form-urlencoded", FORM,
          headers=[("Content-Type", "application/x-www-form-urlencoded")],
          environ={"CONTENT_TYPE": "application/x-www-form-urlencoded"})
body_case("body-multipart", MULTIPART,
          headers=[("Content-Type", "multipart/form-data; boundary=XyZ")],
          environ={"CONTENT_TYPE": "multipart/form-data; boundary=XyZ"})
body_case("body-put", b"put body", method="PUT")
body_case("body-patch", b'{"op":"replace"}', method="PATCH",
          headers=[("Content-Type", "application/json")])
body_case("body-delete-with-body", b"delete-me", method="DELETE")
body_case("body-get-with-body", b"abc", method="GET",
          overrides={"cgi": {"status": 400, "environ": None,
                             "why": "lighttpd answers 400 to a GET with a body"}})
body_case("body-http10", b"abcd", version="HTTP/1.0")
body_case("body-read-n", LINES, read_mode="n", headers=[("X-Read-Size", "3")])
body_case("body-read-line", LINES, read_mode="line")
body_case("body-read-lines", LINES, read_mode="lines")
body_case("body-read-iter", LINES, read_mode="iter")
body_case("body-chunked-small", b"hello chunked world", framing="chunked", chunk=5)
body_case("body-chunked-binary", BINARY, framing="chunked", chunk=100)
body_case("body-chunked-1mib-digest", MIB, framing="chunked", chunk=65536, read_mode="n")
body_case("body-chunked-read-line", LINES, framing="chunked", chunk=7, read_mode="line")
body_case("body-chunked-read-iter", LINES, framing="chunked", chunk=7, read_mode="iter")
case("body-not-read-by-app", "/body", method="POST", body=b"x" * 5000,
     headers=[("X-Read", "none")],
     expect={"environ": {"CONTENT_LENGTH": "5000"}, "read": None})
case("body-expect-100-continue", "/body", method="POST", body=b"after continue",
     headers=[("Expect", "100-continue")],
     expect={"environ": {"CONTENT_LENGTH": "14"}, "read": {"data": "after continue"}})

# ---- HEAD ----------------------------------------------------------------------------------

case("get-fixed", "/_/fixed",
     expect={"body": {"exact": b"fixed body\n"},
             "headers": {"content-type": "text/plain", "content-length": "11",
                         "x-method": "GET"}})
case("head-fixed", "/_/fixed", method="HEAD",
     expect={"body": {"empty": True},
             "headers": {"content-type": "text/plain", "content-length": "11",
                         "x-method": "HEAD"}})
case("head-echo", "/", method="HEAD",
     expect={"body": {"empty": True}, "headers": {"content-type": "application/json"}})
case("head-stream", "/_/stream/3", method="HEAD",
     expect={"body": {"empty": True}, "headers": {"content-type": "text/plain"}})
case("head-write", "/_/write/3", method="HEAD", expect={"body": {"empty": True}})
case("head-404", "/_/status/404", method="HEAD",
     expect={"status": 404, "body": {"empty": True}})
case("head-raise", "/_/raise", method="HEAD",
     expect={"status": 500, "body": {"empty": True}})

# ---- streaming responses -----------------------------------------------------------------

for _n in (0, 1, 3, 40):
    _b = b"".join(b"chunk-%d\n" % i for i in range(_n))
    case(f"stream-gen-{_n}", f"/_/stream/{_n}", expect={"body": {"exact": _b},
                                                         "headers": {"content-type": "text/plain"}})
for _n in (0, 3):
    _b = b"".join(b"write-%d\n" % i for i in range(_n))
    case(f"stream-write-{_n}", f"/_/write/{_n}", expect={"body": {"exact": _b}})
case("stream-gen-http10", "/_/stream/3", version="HTTP/1.0",
     expect={"body": {"exact": b"chunk-0\nchunk-1\nchunk-2\n"}})

# ---- app errors ----------------------------------------------------------------------------

_SECRET = {"not_contains": [b"conformance-secret", b"Traceback"]}
case("err-raise-before-start", "/_/raise",
     expect={"status": 500, "body": {"contains": [b"Internal Server Error"], **_SECRET},
             "headers": {"content-type": Match("text/plain.*")},
             "log": ["Traceback", "conformance-secret-before"]})
case("err-raise-after-headers", "/_/raise-after",
     expect={"status": 200, "body": {"startswith": b"first-chunk", **_SECRET},
             "complete": False, "log": ["conformance-secret-after"]},
     overrides={"cgi": {"complete": None,
                        "why": "the CGI program can only stop writing; lighttpd ends the "
                               "response normally when it exits"}})
case("err-raise-after-headers-with-length", "/_/raise-after-cl",
     expect={"status": 200, "body": {"startswith": b"first-chunk", **_SECRET},
             "headers": {"content-length": "100"}, "complete": False,
             "log": ["conformance-secret-after-cl"]})
case("err-bad-status", "/_/bad-status",
     expect={"status": 500, "body": {"not_contains": [b"bad status body"]}, "log": ["abc"]})
# A final status must be 200-599: a 1xx sent as the final response would leave a proxy in
# front waiting for another one (the connection desyncs). The app's start_response raises.
for _code in ("100", "199", "600", "099"):
    case(f"err-final-status-{_code}", f"/_/final-status/{_code}",
         expect={"status": 500, "body": {"not_contains": [b"final status body"]},
                 "log": [f"{_code} {'Continue' if _code == '100' else 'X'}"]})
for _hop in ("upgrade", "transfer-encoding", "te"):
    case(f"err-hop-by-hop-{_hop}", f"/_/hop/{_hop}",
         expect={"status": 500, "body": {"not_contains": [b"hop body"]},
                 "headers": {"upgrade": ABSENT, "te": ABSENT}})
case("err-bad-header-value", "/_/bad-header",
     expect={"status": 500, "headers": {"x-bad": ABSENT, "set-cookie": ABSENT},
             "body": {"not_contains": [b"bad header body"]}})
case("err-route-404", "/_/nope",
     expect={"status": 404, "body": {"exact": b"no such route\n"}})

# ---- methods -------------------------------------------------------------------------------

for _m in ("GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"):
    case(f"method-{_m.lower()}", "/m", method=_m,
         framing="length" if _m in ("POST", "PUT", "PATCH") else "none",
         expect={"environ": {"REQUEST_METHOD": _m}})
case("method-extension-propfind", "/m", method="PROPFIND",
     expect={"environ": {"REQUEST_METHOD": "PROPFIND"}})
case("method-extension-custom", "/m", method="FROBNICATE",
     expect={"environ": {"REQUEST_METHOD": "FROBNICATE"}},
     overrides={"cgi": {"status": 501, "environ": None,
                        "why": "lighttpd answers 501 to methods it does not know"}})

# ---- status codes ---------------------------------------------------------------------------

for _code in (201, 202, 404, 410, 418, 503):
    case(f"status-{_code}", f"/_/status/{_code}",
         expect={"status": _code, "body": {"exact": f"status {_code}\n".encode()}})
for _code in (204, 304):
    case(f"status-{_code}-no-body", f"/_/status/{_code}",
         expect={"status": _code, "body": {"empty": True},
                 "headers": {"x-status": str(_code), "transfer-encoding": ABSENT}})
case("status-302-location", "/_/status/302",
     expect={"status": 302, "headers": {"location": "http://example.com/moved?x=1"},
             "body": {"exact": b"status 302\n"}})
# A bare code from the app ("201") goes out with its standard reason phrase on every front end;
# an unregistered one with an empty phrase.
for _code, _reason in ((200, "OK"), (201, "Created"), (404, "Not Found"), (299, "")):
    case(f"status-bare-{_code}", f"/_/bare-status/{_code}",
         expect={"status": _code, "reason": _reason,
                 "body": {"exact": f"bare {_code}\n".encode()}})
case("status-301-location", "/_/status/301",
     expect={"status": 301, "headers": {"location": "http://example.com/moved?x=1"}})

# ---- response headers --------------------------------------------------------------------

case("resp-headers-passed-through", "/_/headers",
     expect={"body": {"exact": b"headers\n"},
             "headers": {"content-type": "text/plain; charset=utf-8",
                         "x-custom": "value with  spaces", "cache-control": "no-store",
                         "content-length": "8"},
             "header_all": {"set-cookie": ["a=1; Path=/", "b=2; HttpOnly"]}})

# ---- environ keys --------------------------------------------------------------------------

env_case("env-wsgi-keys", "/env", {"wsgi.version": [1, 0], "wsgi.url_scheme": "http",
                                   "wsgi.input_terminated": True,
                                   "wsgi.input": PRESENT, "wsgi.errors": PRESENT})
env_case("env-gateway-interface", "/env", {"GATEWAY_INTERFACE": "CGI/1.1"})
env_case("env-server-protocol-11", "/env", {"SERVER_PROTOCOL": "HTTP/1.1"})
env_case("env-server-protocol-10", "/env", {"SERVER_PROTOCOL": "HTTP/1.0"},
         version="HTTP/1.0")
env_case("env-remote-addr-port", "/env", {"REMOTE_ADDR": "127.0.0.1",
                                          "REMOTE_PORT": Match(r"[1-9][0-9]*")})
env_case("env-server-software", "/env", {"SERVER_SOFTWARE": Match(r"wsgi-gateway/.+")},
         overrides={"cgi": {"environ": {"SERVER_SOFTWARE": Match(r"lighttpd/.+")},
                            "why": "SERVER_SOFTWARE is the CGI host's"},
                    "isapi": {"environ": {"SERVER_SOFTWARE": Match(r"harness-iis/.+")},
                              "why": "SERVER_SOFTWARE is IIS's (the harness's)"}})
env_case("env-no-process-environment", "/env",
         {"PATH": ABSENT, "HOME": ABSENT, "PWD": ABSENT, "PYTHONDONTWRITEBYTECODE": ABSENT,
          "WSGI_GATEWAY_APP": ABSENT, "REDIRECT_STATUS": PRESENT},
         overrides={fe: {"environ": {"REDIRECT_STATUS": ABSENT}, "why": "no CGI host"}
                    for fe in ("http", "isapi")})
env_case("env-host-extras", "/env",
         {"DOCUMENT_ROOT": ABSENT, "SCRIPT_FILENAME": ABSENT, "SERVER_ADDR": ABSENT,
          "REQUEST_SCHEME": ABSENT},
         overrides={"cgi": {"environ": {"DOCUMENT_ROOT": Match("/.+/docroot"),
                                        "SCRIPT_FILENAME": Match("/.+/cgi-bin/conformance"),
                                        "SERVER_ADDR": "127.0.0.1", "REQUEST_SCHEME": "http"},
                            "why": "host extras passed through as given"},
                    "isapi": {"environ": {"SERVER_ADDR": "127.0.0.1"},
                              "why": "IIS's LOCAL_ADDR, passed on as SERVER_ADDR"}})
env_case("env-query-string-always-present", "/env", {"QUERY_STRING": ""})
