"""The page wsgi-gateway serves when no application is named: proof that it runs, and how."""

import html
import sys

SERVER = "wsgi-gateway"


def application(environ, start_response):
    rows = "\n".join(
        "<tr><th>{}</th><td>{}</td></tr>".format(html.escape(k), html.escape(repr(environ[k])))
        for k in sorted(environ)
    )
    body = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{server} is running</title>
<style>body{{font-family:system-ui,sans-serif;max-width:60em;margin:2em auto;padding:0 1em}}
th{{text-align:left;padding-right:1em;vertical-align:top}}td{{font-family:monospace;word-break:break-all}}
code{{background:#eee;padding:0 .2em}}</style></head>
<body><h1>{software} is running</h1>
<p>No application was named, so this built-in page answers. Serve yours with
<code>wsgi-gateway serve mymodule:application</code> (see <code>wsgi-gateway serve --help</code>).</p>
<p>Python {pyver}<br>Executable prefix: <code>{prefix}</code></p>
<h2>This request's environ</h2>
<table>{rows}</table>
</body></html>
""".format(
        server=SERVER,
        software=html.escape(environ.get("SERVER_SOFTWARE", SERVER)),
        pyver=html.escape(sys.version),
        prefix=html.escape(sys.prefix),
        rows=rows,
    ).encode("utf-8")
    if environ.get("REQUEST_METHOD") == "HEAD":
        payload = []
    else:
        payload = [body]
    start_response(
        "200 OK",
        [("Content-Type", "text/html; charset=utf-8"), ("Content-Length", str(len(body)))],
    )
    return payload
