"""Conformance: the same cases (conformance/cases.py) against every front end.

Test ids read `test_case[<front end>-<case id>]`; `pytest -q tests/test_conformance.py -k cgi-`
runs one front end. Front ends are the adapters in conformance/adapters.py.
"""

import re

import pytest

from conformance.adapters import ADAPTERS
from conformance.cases import (ABSENT, CASES, COMMON_ENVIRON, FRONT_END_ENVIRON, PRESENT, Match,
                               T)

MERGED_KEYS = ("environ", "headers", "read", "body", "header_all")


def expectations(case, front_end):
    exp = dict(case["expect"])
    ov = case["overrides"].get(front_end, {})
    for k, v in ov.items():
        if k == "why":
            continue
        if k in MERGED_KEYS and isinstance(v, dict) and isinstance(exp.get(k), dict):
            exp[k] = {**exp[k], **v}
        else:
            exp[k] = v
    return exp


def _skip(fe, case):
    reason = ADAPTERS[fe].not_applicable() or case["skip"].get(fe)
    return [pytest.mark.skip(reason=reason)] if reason else []


PARAMS = [pytest.param(fe, c, id=f"{fe}-{c['id']}", marks=_skip(fe, c))
          for fe in ADAPTERS for c in CASES]


@pytest.fixture(scope="session")
def front_ends(request):
    cache = {}

    def get(name):
        if name not in cache:
            cache[name] = ADAPTERS[name](request)
        return cache[name]

    return get


def check_value(where, key, want, got, ctx, problems, present):
    if isinstance(want, T):
        want = want.format(**ctx)
    if want is ABSENT:
        if present:
            problems.append(f"{where}[{key!r}] should be absent, is {got!r}")
        return
    if not present:
        problems.append(f"{where}[{key!r}] missing (want {want!r})")
        return
    if want is PRESENT:
        return
    if isinstance(want, Match):
        if not (isinstance(got, str) and re.fullmatch(want, got)):
            problems.append(f"{where}[{key!r}] = {got!r} does not match /{want}/")
        return
    if got != want:
        problems.append(f"{where}[{key!r}] = {got!r}, want {want!r}")


def check_body(spec, body, problems):
    if "exact" in spec and body != spec["exact"]:
        problems.append(f"body = {body[:300]!r}, want {spec['exact'][:300]!r}")
    if spec.get("empty") and body != b"":
        problems.append(f"body must be empty, got {body[:300]!r}")
    if "startswith" in spec and not body.startswith(spec["startswith"]):
        problems.append(f"body {body[:300]!r} does not start with {spec['startswith']!r}")
    for s in spec.get("contains", ()):
        if s not in body:
            problems.append(f"body lacks {s!r}: {body[:300]!r}")
    for s in spec.get("not_contains", ()):
        if s in body:
            problems.append(f"body must not contain {s!r}: {body[:300]!r}")
    if "len" in spec and len(body) != spec["len"]:
        problems.append(f"body length {len(body)}, want {spec['len']}")
    if "sha256" in spec:
        import hashlib
        if hashlib.sha256(body).hexdigest() != spec["sha256"]:
            problems.append("body sha256 differs")


@pytest.mark.parametrize("front_end,case", PARAMS)
def test_case(front_ends, front_end, case):
    ad = front_ends(front_end)
    exp = expectations(case, front_end)
    ctx = ad.context(case)
    mark = ad.log_mark() if exp.get("log") else None
    res = ad.run(case)
    problems = []

    if res.status != exp["status"]:
        problems.append(f"status {res.status} {res.reason!r}, want {exp['status']}")
    if "reason" in exp and res.reason != exp["reason"]:
        problems.append(f"reason phrase {res.reason!r}, want {exp['reason']!r}")

    # a HEAD response never carries a body, whatever the case expects
    if case["method"] == "HEAD" and (res.body or res.trailing):
        problems.append(f"HEAD response has a body: {(res.body + res.trailing)[:300]!r}")
    if res.trailing:
        problems.append(f"bytes after the framed response: {res.trailing[:300]!r}")

    env_exp = exp.get("environ")
    if env_exp is not None and exp["status"] == 200:
        if res.environ is None:
            problems.append("the app's environ JSON was not in the response")
        else:
            full = {**COMMON_ENVIRON, **FRONT_END_ENVIRON.get(front_end, {}), **env_exp}
            for key, want in full.items():
                check_value("environ", key, want, res.environ.get(key), ctx, problems,
                            key in res.environ)
    if "read" in exp and res.environ is not None:
        want_read = exp["read"]
        if want_read is None:
            if res.read is not None:
                problems.append(f"the app should not have read the body: {res.read!r}")
        elif res.read is None:
            problems.append("the app reported no read")
        else:
            for key, want in want_read.items():
                check_value("read", key, want, res.read.get(key), ctx, problems,
                            key in res.read)

    for name, want in exp.get("headers", {}).items():
        got = res.header(name)
        check_value("headers", name, want, got, ctx, problems, got is not None)
    for name, want in exp.get("header_all", {}).items():
        if res.header_all(name) != want:
            problems.append(f"headers {name!r} = {res.header_all(name)!r}, want {want!r}")
    check_body(exp.get("body", {}), res.body, problems)
    if exp.get("complete") is not None and res.complete != exp["complete"]:
        problems.append(f"response complete={res.complete}, want {exp['complete']}")
    for needle in exp.get("log") or ():
        try:
            ad.wait_log(needle, mark)
        except AssertionError as e:
            problems.append(f"error log: {str(e)[:1500]}")

    if problems:
        why = case["overrides"].get(front_end, {}).get("why")
        pytest.fail(
            f"[{front_end}] case {case['id']}: " + "\n  ".join(problems)
            + (f"\n(override in effect: {why})" if why else "")
            + f"\nrequest: {ad.build(case)[:600]!r}"
            + f"\nresponse head: {res.raw_head[:800]!r}"
            + f"\nbody: {res.body[:600]!r}"
            + f"\nlog tail:\n{ad.diagnostics()[-2500:]}",
            pytrace=False)
