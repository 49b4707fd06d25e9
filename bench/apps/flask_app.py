"""Flask view rendering a Jinja template: the `app` scenario of bench/compare.sh.

A real framework's per-request cost (routing, request/response objects, template rendering
with autoescaping), reached through bench_app's /app route so every server loads one module.
"""

from flask import Flask, render_template, request

app = Flask(__name__)

PRODUCTS = [
    {"id": i, "name": "Product <%d> & co" % i, "price": i * 1.25, "in_stock": i % 3 != 0}
    for i in range(1, 21)
]


@app.route("/app")
def catalogue():
    name = request.args.get("name", "World")
    return render_template("page.html", title="Catalogue", name=name, products=PRODUCTS)
