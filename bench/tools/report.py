#!/usr/bin/env python3
"""Tables for bench/compare.sh: reads the runs it recorded, writes markdown.

usage: report.py RUNS OUTDIR

RUNS   the raw record compare.sh keeps as bench/results/<date>-runs[-2proc].tsv:
       `# key=value` lines (machine, versions, settings, scenario definitions; `# freeze=...`
       lines are the peers venv's `pip freeze`), then one line per run (server x scenario x
       round) of tab-separated key=value fields
Writes OUTDIR/<date>-<scenario><suffix>.md per scenario and OUTDIR/<date>-summary<suffix>.md,
prints the tables on stdout. Re-tabling a committed run: python3 bench/tools/report.py
bench/results/<date>-runs.tsv bench/results
"""

import os
import statistics
import sys

GW = "wsgi-gateway"
ERR_KINDS = ("connect", "read", "write", "timeout", "status")


def parse_kv_line(line):
    out = {}
    for field in line.rstrip("\n").split("\t"):
        if "=" in field:
            k, v = field.split("=", 1)
            out[k] = v
    return out


def load(runs_path):
    runs, meta, freeze = [], {}, []
    with open(runs_path) as f:
        for line in f:
            if line.startswith("# "):
                k, _, v = line[2:].rstrip("\n").partition("=")
                if k == "freeze":
                    freeze.append(v)
                else:
                    meta[k] = v
            elif line.strip():
                runs.append(parse_kv_line(line))
    return runs, meta, "\n".join(freeze)


def idle_growth(cell, meta):
    """RSS growth per held idle connection (KiB), median over rounds; only rounds that held at
    least half of the connections asked for (a few held ones make the quotient noise)."""
    want = float(meta.get("idle_conns") or 0)
    growth = []
    for r in cell.ok:
        h, b, a = num(r, "idle_held"), num(r, "rss_before"), num(r, "rss_after")
        if h and h >= want / 2 and b is not None and a is not None:
            growth.append((a - b) / h)
    g = med(growth)
    return "— (too few held)" if g is None else "%.1f KiB" % g


def num(rec, key):
    v = rec.get(key, "")
    try:
        return float(v)
    except ValueError:
        return None


def med(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def f_rps(v):
    return "" if v is None else "{:,.0f}".format(v)


def f_us(v):
    if v is None:
        return ""
    return "%.2f ms" % (v / 1000) if v >= 1000 else "%d us" % v


def f_mib(kib):
    return "" if kib is None else "%.1f MiB" % (kib / 1024)


def f_ratio(a, b):
    if a is None or b is None or b <= 0:
        return "n/a"
    r = a / b
    return "%.2f" % r if r < 100 else "%.0f" % r


class Cell:
    """All rounds of one server on one scenario."""

    def __init__(self, recs):
        self.recs = recs
        self.ok = [r for r in recs if r.get("status") == "ok"]
        self.failed = [r for r in recs if r.get("status") == "fail"]
        self.na = next((r for r in recs if r.get("status") in ("na", "skip")), None)

    def values(self, key):
        return [num(r, key) for r in self.ok]

    def median(self, key):
        return med(self.values(key))

    def p99(self, key="p99"):
        """Median p99 over the rounds where a request completed (wrk reports 0 otherwise)."""
        count = "requests" if key == "p99" else "slow_requests"
        vals = []
        for r in self.ok:
            n = num(r, count)
            if n if n is not None else num(r, key):
                vals.append(num(r, key))
        return "—" if not vals else f_us(med(vals))

    def per_round(self, key):
        return "/".join(f_rps(v) for v in self.values(key))

    def errors(self):
        totals = {k: sum(int(num(r, "e_" + k) or 0) for r in self.ok) for k in ERR_KINDS}
        total = sum(totals.values())
        if not total:
            return "0"
        parts = ", ".join("%s %d" % (k if k != "status" else "non-2xx", v)
                          for k, v in totals.items() if v)
        return "%d (%s)" % (total, parts)

    def peak_rss(self):
        best = None
        for r in self.ok:
            v = num(r, "rss")
            if v is not None and (best is None or v > num(best, "rss")):
                best = r
        if best is None:
            return ""
        text = "%s (%s proc" % (f_mib(num(best, "rss")), best.get("nproc", "?"))
        largest = max([v for v in self.values("rss_proc") if v] or [0])
        if best.get("nproc") not in (None, "1") and largest:
            # With worker processes the tree's sum hides what one process costs.
            text += ", largest %s" % f_mib(largest)
        return text + ")"


def cells(runs, sc):
    by_server = {}
    for r in runs:
        if r.get("sc") == sc:
            by_server.setdefault(r["server"], []).append(r)
    return {s: Cell(v) for s, v in by_server.items()}


def label(server):
    return "nginx (reference, no Python)" if server == "nginx" else server


def status_row(server, cell, width):
    """The row of a server that has no number: not installed, n/a, failed."""
    if cell.na is not None:
        text = cell.na.get("note", "n/a")
    else:
        text = "FAILED: " + (cell.failed[0].get("note", "") if cell.failed else "no run")
    text = text.replace("|", "/")
    return "| %s | %s |%s" % (label(server), text, " |" * (width - 2))


def table(sc, meta, runs):
    servers = meta["servers"].split()
    cs = cells(runs, sc)
    gw = cs.get(GW)
    lines, notes = [], []
    mbps = sc in ("big", "stream")
    if sc == "mixed":
        head = ["server", "/hello req/s (median)", "/hello req/s per round", "/hello p99",
                "/slow req/s (median; ideal %s)" % meta.get("mixed_slow_ideal", "200"),
                "/slow p99", "errors (both wrk)", "peak RSS", "wsgi-gateway ÷ server (/hello)"]
    elif sc == "idle":
        head = ["server", "idle conns held (of %s)" % meta.get("idle_conns", "?"),
                "RSS growth per idle conn", "RSS before → after opening",
                "/hello req/s while held (median)", "req/s per round", "/hello p99", "errors",
                "still held after /hello", "peak RSS", "wsgi-gateway ÷ server"]
    else:
        head = ["server", "req/s (median)", "req/s per round"]
        if mbps:
            head.append("MB/s of body (median)")
        head += ["p99 (median)", "errors", "peak RSS", "wsgi-gateway ÷ server"]
    lines.append("| " + " | ".join(head) + " |")
    lines.append("|" + "---|" * len(head))
    gw_rps = gw.median("rps") if gw else None
    for server in servers:
        cell = cs.get(server)
        if cell is None:
            continue  # scenario not run for this server (nginx outside hello/close)
        if not cell.ok:
            lines.append(status_row(server, cell, len(head)))
            continue
        rps = cell.median("rps")
        ratio = f_ratio(gw_rps, rps)
        silent = [r.get("round") for r in cell.ok if not num(r, "requests")]
        if silent:
            notes.append("%s: no%s request completed in round %s (wrk counts no error, not even a "
                         "timeout, for a request that never gets an answer; p99 is then shown as —)"
                         % (server, " /hello" if sc in ("mixed", "idle") else "", ", ".join(silent)))
        if sc == "mixed":
            row = [label(server), f_rps(rps), cell.per_round("rps"), cell.p99(),
                   f_rps(cell.median("slow_rps")), cell.p99("slow_p99"),
                   cell.errors(), cell.peak_rss(), ratio]
        elif sc == "idle":
            held = [int(num(r, "idle_held") or 0) for r in cell.ok]
            after = [int(num(r, "idle_held_after") or 0) for r in cell.ok]
            row = [label(server), "/".join(map(str, held)), idle_growth(cell, meta),
                   "%s → %s" % (f_mib(cell.median("rss_before")), f_mib(cell.median("rss_after"))),
                   f_rps(rps), cell.per_round("rps"), cell.p99(), cell.errors(),
                   "/".join(map(str, after)), cell.peak_rss(), ratio]
            for r in cell.ok:
                extra = []
                for k in ("idle_pending", "idle_no_answer", "idle_connect_failed"):
                    if (num(r, k) or 0) > 0:
                        extra.append("%s %d" % (k[5:].replace("_", " "), num(r, k)))
                if extra or r.get("idle_err"):
                    notes.append("%s round %s: opened %s of %s in %s s; %s%s" % (
                        server, r.get("round"), r.get("idle_answered"), meta.get("idle_conns"),
                        r.get("idle_secs"), ", ".join(extra) or "all answered",
                        ("; first error " + r["idle_err"].replace("_", " ")) if r.get("idle_err") else ""))
        else:
            row = [label(server), f_rps(rps), cell.per_round("rps")]
            if mbps:
                m = cell.median("mbps")
                row.append("" if m is None else "%.0f" % m)
            row += [cell.p99(), cell.errors(), cell.peak_rss(), ratio]
        lines.append("| " + " | ".join(row) + " |")
        for r in cell.failed:
            notes.append("%s round %s FAILED: %s" % (server, r.get("round"), r.get("note", "")))
    return lines, notes


def header(meta, title):
    procs = meta.get("procs", "1")
    out = [title, ""]
    out.append("- date: %s; the whole compare.sh run took %s" % (
        meta.get("date_utc", ""), meta.get("wall", "?")))
    out.append("- machine: %s cores, CPU: %s, kernel %s, load average before the runs: %s" % (
        meta.get("nproc"), meta.get("cpu"), meta.get("kernel"), meta.get("load")))
    out.append("- load: `wrk -t1 -cN -d%ss --timeout 5s --latency` after a %ss warm-up, %s "
               "interleaved rounds (A B C…, A B C…), fresh server per run, loopback, CPU pinning: %s"
               % (meta.get("duration"), meta.get("warmup"), meta.get("rounds"), meta.get("pin")))
    out.append("- configuration: %s" % (
        "single process for every server (PROCS=1)" if procs == "1"
        else "%s processes where the server supports it (PROCS=%s)" % (procs, procs)))
    out.append("- server settings:")
    for s in meta["servers"].split():
        if meta.get("settings." + s):
            out.append("  - %s: %s" % (s, meta["settings." + s]))
    out.append("- req/s and p99 are medians over rounds; peak RSS = VmRSS summed over the server's "
               "process tree, sampled every 0.2 s, max over rounds; errors = wrk socket errors "
               "(connect/read/write/timeout) + non-2xx responses, summed over rounds")
    return out


def versions(meta, freeze):
    out = ["## Versions", ""]
    out.append("- wsgi-gateway: %s, commit %s" % (meta.get("gw_version"), meta.get("git_rev")))
    out.append("- %s; wrk: %s; nginx: %s" % (meta.get("python"), meta.get("wrk"), meta.get("nginx")))
    out += ["", "```", freeze.rstrip("\n"), "```"]
    return out


def scenario_title(sc, meta):
    return "# wsgi-gateway vs peers: `%s` (%s)" % (sc, meta.get("desc." + sc, ""))


def summary(meta, runs, scenarios):
    servers = [s for s in meta["servers"].split()]
    out = ["| scenario | " + " | ".join(label(s) if s != "nginx" else "nginx (ref.)" for s in servers) + " |",
           "|---|" + "---|" * len(servers)]
    for sc in scenarios:
        cs = cells(runs, sc)
        gw = cs.get(GW)
        gw_rps = gw.median("rps") if gw else None
        name = {"mixed": "mixed: /hello", "idle": "idle: /hello"}.get(sc, sc)

        def row(title, fn):
            vals = []
            for s in servers:
                c = cs.get(s)
                if c is None:
                    vals.append("")
                elif not c.ok:
                    vals.append("n/a" if c.na is not None else "FAILED")
                else:
                    vals.append(fn(c))
            out.append("| %s | %s |" % (title, " | ".join(vals)))

        row("`%s` req/s" % name, lambda c: f_rps(c.median("rps")))
        row("`%s` wsgi-gateway ÷" % sc, lambda c: f_ratio(gw_rps, c.median("rps")))
        row("`%s` p99" % sc, lambda c: c.p99())
        if sc in ("big", "stream"):
            row("`%s` MB/s" % sc, lambda c: "%.0f" % c.median("mbps"))
        if sc == "mixed":
            row("`mixed` /slow req/s", lambda c: f_rps(c.median("slow_rps")))
        if sc == "idle":
            row("`idle` held", lambda c: "/".join(r.get("idle_held", "") for r in c.ok))
            row("`idle` RSS per idle conn", lambda c: idle_growth(c, meta))
        if any(c.ok and c.errors() != "0" for c in cs.values()):
            row("`%s` errors" % sc, lambda c: c.errors().split(" ")[0])
        row("`%s` peak RSS" % sc, lambda c: f_mib(max(c.values("rss"))))
    return out


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    runs, meta, freeze = load(sys.argv[1])
    outdir = sys.argv[2]
    os.makedirs(outdir, exist_ok=True)
    scenarios = meta["scenarios"].split()
    suffix = meta.get("suffix", "")
    date = meta["today"]
    written = []
    for sc in scenarios:
        lines, notes = table(sc, meta, runs)
        doc = header(meta, scenario_title(sc, meta)) + [""] + lines + [""]
        if notes:
            doc += ["Notes:", ""] + ["- " + n for n in notes] + [""]
        doc += versions(meta, freeze)
        path = os.path.join(outdir, "%s-%s%s.md" % (date, sc, suffix))
        with open(path + ".tmp", "w") as f:
            f.write("\n".join(doc) + "\n")
        os.replace(path + ".tmp", path)
        written.append(path)
        print("\n### %s: %s\n" % (sc, meta.get("desc." + sc, "")))
        print("\n".join(lines))
        if notes:
            print("\n" + "\n".join("- " + n for n in notes))
    summ = summary(meta, runs, scenarios)
    doc = header(meta, "# wsgi-gateway vs peers: summary (%s)" % ", ".join(scenarios)) + [""]
    doc += ["Scenarios:", ""] + ["- `%s`: %s" % (sc, meta.get("desc." + sc, "")) for sc in scenarios]
    doc += ["", "Per-scenario tables (per-round numbers, error kinds, notes): `%s-<scenario>%s.md`."
            % (date, suffix), ""] + summ + [""] + versions(meta, freeze)
    path = os.path.join(outdir, "%s-summary%s.md" % (date, suffix))
    with open(path + ".tmp", "w") as f:
        f.write("\n".join(doc) + "\n")
    os.replace(path + ".tmp", path)
    written.append(path)
    print("\n### summary\n")
    print("\n".join(summ))
    print()
    for p in written:
        print("wrote " + os.path.relpath(p), file=sys.stderr)


if __name__ == "__main__":
    main()
