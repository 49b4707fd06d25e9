#!/usr/bin/env bash
# Compare wsgi-gateway with other Python WSGI servers on the same app (bench/apps/bench_app.py),
# on loopback, with wrk; nginx (`return 200`, no Python) is the reference for hello and close.
# Rounds are interleaved (A B C, A B C, ...) so a slow drift of the machine hits every server
# alike; each run gets a fresh server.
#
# Usage: bash bench/compare.sh
# Env:   ROUNDS (3), DURATION (seconds per run, 5), WARMUP (seconds, 1),
#        SERVERS ("wsgi-gateway granian gunicorn waitress fastwsgi bjoern nginx"; also
#                 wsgi-gateway-wheel: the release wheel pip-installed into the peers' venv and
#                 run by its console script, the extension-module shape beside the binary;
#                 wsgi-gateway-baseline: the binary GW_BASELINE_BIN names, e.g. an earlier
#                 commit's release build, run like wsgi-gateway: a before/after in one run),
#        SCENARIOS ("hello echo big stream mixed close app idle"; also: slow),
#        PROCS (1 = one process each, the default; 2 = two worker processes where the server
#               supports it: wsgi-gateway (--workers), granian, gunicorn, fastwsgi, bjoern, nginx),
#        GW_THREADS (32, its default), GW_ARGS (extra wsgi-gateway serve arguments, ""),
#        GRANIAN_THREADS (--blocking-threads, 16), GUNICORN_THREADS
#        (1 = sync worker, N > 1 = gthread with N threads; 16), WAITRESS_THREADS (16): every
#        peer's pool gets 16 threads, its best in bench/results/2026-11-28-threads.md (mixed
#        needs more threads than its 10 sleeping calls),
#        GRANIAN_ARGS ("--backpressure 20000"), GUNICORN_ARGS (""), WAITRESS_ARGS ("") (extra arguments),
#        IDLE_CONNS (10000), IDLE_OPEN_TIMEOUT (seconds, 10), CONNECTIONS (override per-scenario),
#        RESULTS_DIR (bench/results), BASE_PORT (18400), PIN (1 = server on CPU 0, wrk on CPU 1), KEEP_LOGS (1 = keep raw logs),
#        PYTHON (the interpreter the binary is built against and the peers' venv is made from,
#                e.g. PYTHON=$(bench/tools/build-python.sh 3.13); given, the venv is
#                bench/.venv-<X.Y>, the release build target/py<XY>/release and the result
#                names end in -py<X.Y>, so each Python keeps its own; not given: PYO3_PYTHON,
#                else python3 on PATH, with bench/.venv and target/release)
# Output: tables on stdout; bench/results/<date>-<scenario>.md per scenario,
#         <date>-summary.md (all scenarios, one table) and <date>-runs.tsv (the raw record:
#         machine, versions, settings and every run; bench/tools/report.py re-tables it);
#         with PROCS=2 the names end in -2proc (then -py<X.Y> when PYTHON is given).
# Exit:   0 when every run gave a number, 1 when some failed (they are in the tables).
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"
T_START=$(date +%s)

ROUNDS="${ROUNDS:-3}"
DURATION="${DURATION:-5}"
WARMUP="${WARMUP:-1}"
SERVERS="${SERVERS:-wsgi-gateway granian gunicorn waitress fastwsgi bjoern nginx}"
ALL_SCENARIOS="hello echo big stream mixed close app idle"
SCENARIOS="${SCENARIOS:-$ALL_SCENARIOS}"
PROCS="${PROCS:-1}"
GW_THREADS="${GW_THREADS:-32}"
# A cap above IDLE_CONNS + the load's connections: at the default (10000) wsgi-gateway refuses
# the hello connections of the idle scenario; granian's default backpressure (1024) holds
# 1024 connections and no more. Neither cap is reached by the other scenarios.
GW_ARGS="${GW_ARGS-}"
GRANIAN_THREADS="${GRANIAN_THREADS:-16}"
GUNICORN_THREADS="${GUNICORN_THREADS:-16}"
WAITRESS_THREADS="${WAITRESS_THREADS:-16}"
GRANIAN_ARGS="${GRANIAN_ARGS---backpressure 20000}"
GUNICORN_ARGS="${GUNICORN_ARGS:-}"
WAITRESS_ARGS="${WAITRESS_ARGS:-}"
IDLE_CONNS="${IDLE_CONNS:-10000}"
IDLE_OPEN_TIMEOUT="${IDLE_OPEN_TIMEOUT:-10}"
BASE_PORT="${BASE_PORT:-18400}"
PIN="${PIN:-0}"
KEEP_LOGS="${KEEP_LOGS:-0}"
HOST=127.0.0.1 # loopback only, by design

# Pinned peers; bump deliberately.
declare -A PEER_PIN=(
    [granian]=granian==2.8.9
    [gunicorn]=gunicorn==27.0.1
    [waitress]=waitress==3.0.2
    [fastwsgi]=fastwsgi==0.0.9
    [bjoern]=bjoern==3.2.2
)
# Peers whose build may fail here (C extensions from sdist): skipped with a note.
OPTIONAL_PEERS=" fastwsgi bjoern "
# The `app` scenario's framework, with the versions of its dependencies, in the same venv.
APP_PINS=(flask==3.1.3 Werkzeug==3.1.9 Jinja2==3.1.6 MarkupSafe==3.0.4 itsdangerous==2.2.0
    blinker==1.9.0 click==8.5.1)

APPS="$REPO/bench/apps"
TOOLS="$REPO/bench/tools"
VENV="$REPO/bench/.venv"
GW_TARGET="$REPO/target" # CARGO_TARGET_DIR of the release build
RESULTS="${RESULTS_DIR:-$REPO/bench/results}"
WORK="$(mktemp -d "${TMPDIR:-/tmp}/wsgi-bench.XXXXXX")"
RUNS="$WORK/runs.tsv"
: >"$RUNS"

note() { printf 'compare.sh: %s\n' "$*" >&2; }
die() { printf 'compare.sh: error: %s\n' "$*" >&2; exit 2; }
section() { printf '\n==== %s ====\n' "$*" >&2; }

for v in ROUNDS DURATION WARMUP BASE_PORT PROCS GW_THREADS GRANIAN_THREADS GUNICORN_THREADS \
    WAITRESS_THREADS IDLE_CONNS IDLE_OPEN_TIMEOUT; do
    [[ "${!v}" =~ ^[0-9]+$ ]] || die "$v must be a whole number, got '${!v}'"
done
if [ "$ROUNDS" -lt 1 ] || [ "$DURATION" -lt 1 ]; then die "ROUNDS and DURATION must be >= 1"; fi
case "$PROCS" in 1 | 2) ;; *) die "PROCS must be 1 or 2, got '$PROCS'" ;; esac
SUFFIX=""
[ "$PROCS" = 1 ] || SUFFIX="-${PROCS}proc"

# ------------------------------------------------------------------ cleanup
STARTED=() # pids (= process groups, via setsid) of servers this script started
HELPERS=() # pids of helper processes (idle clients, RSS samplers, wrk) still to be reaped
forget() { # array-name pid: drop a reaped pid, so cleanup never signals a reused one
    local -n list=$1
    local keep=() p
    for p in "${list[@]}"; do [ "$p" = "$2" ] || keep+=("$p"); done
    list=("${keep[@]}")
}
stop_server() {
    local pid=$1 i
    forget STARTED "$pid"
    kill -0 "$pid" 2>/dev/null || { wait "$pid" 2>/dev/null || true; return 0; }
    kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < 50; i++)); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    # Still there after 5 s: no graceful-shutdown numbers are measured here, so force it.
    kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    # Workers that left the group (none known) or outlived their leader: the group again.
    kill -KILL -- "-$pid" 2>/dev/null || true
}
stop_helper() {
    kill -TERM "$1" 2>/dev/null || true
    wait "$1" 2>/dev/null || true
    forget HELPERS "$1"
}
cleanup() {
    local pid
    for pid in "${HELPERS[@]}"; do kill -KILL "$pid" 2>/dev/null || true; done
    for pid in "${STARTED[@]}"; do stop_server "$pid"; done
    if [ "$KEEP_LOGS" = 1 ]; then note "raw logs kept in $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

has_word() { [[ " $1 " == *" $2 "* ]]; }

# ------------------------------------------------------------------ system packages
section "system packages"
deb_installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"; }
want_bjoern=0
has_word "$SERVERS" bjoern && want_bjoern=1
apt_missing=()
command -v wrk >/dev/null 2>&1 || apt_missing+=(wrk)
command -v curl >/dev/null 2>&1 || apt_missing+=(curl)
[ "$want_bjoern" = 1 ] && ! deb_installed libev-dev && apt_missing+=(libev-dev)
has_word "$SERVERS" nginx && ! PATH="$PATH:/usr/sbin" command -v nginx >/dev/null 2>&1 && apt_missing+=(nginx)
if [ ${#apt_missing[@]} -eq 0 ]; then
    note "all present (wrk, curl$([ "$want_bjoern" = 1 ] && echo ', libev-dev')$(has_word "$SERVERS" nginx && echo ', nginx'))"
elif [ "$(id -u)" -ne 0 ]; then
    note "not root, skipping apt; missing: ${apt_missing[*]}"
else
    note "apt-get install ${apt_missing[*]}"
    DEBIAN_FRONTEND=noninteractive apt-get update -qq
    # policy-rc.d 101: the package must not start a system nginx on port 80 behind our back.
    printf '#!/bin/sh\nexit 101\n' >"$WORK/policy-rc.d"
    chmod +x "$WORK/policy-rc.d"
    had_policy=0
    [ -e /usr/sbin/policy-rc.d ] && had_policy=1
    [ "$had_policy" = 1 ] || cp "$WORK/policy-rc.d" /usr/sbin/policy-rc.d
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        "${apt_missing[@]}" >/dev/null || note "apt-get install failed"
    [ "$had_policy" = 1 ] || rm -f /usr/sbin/policy-rc.d
fi
command -v wrk >/dev/null 2>&1 || die "wrk is not installed (Debian package 'wrk')"
command -v curl >/dev/null 2>&1 || die "curl is not installed (Debian package 'curl')"
NGINX_BIN=$(PATH="$PATH:/usr/sbin" command -v nginx 2>/dev/null || true)

# Open files: every idle connection is a descriptor in the server (and one in the client).
need_fds=$((IDLE_CONNS + 2000))
if [ "$(ulimit -Hn)" != unlimited ] && [ "$(ulimit -Hn)" -lt "$need_fds" ]; then
    ulimit -Hn "$need_fds" 2>/dev/null || true
fi
ulimit -Sn "$(ulimit -Hn)" 2>/dev/null || true
if has_word "$SCENARIOS" idle && [ "$(ulimit -n)" != unlimited ] && [ "$(ulimit -n)" -lt "$need_fds" ]; then
    note "WARNING: RLIMIT_NOFILE is $(ulimit -n), below the $need_fds that idle needs (IDLE_CONNS=$IDLE_CONNS)"
fi

# ------------------------------------------------------------------ python: same as the build
if [ -n "${PYTHON:-}" ]; then
    # Resolved (a pyenv shim, a symlink) so the build and the venv cannot drift apart.
    PYO3_PYTHON=$("$PYTHON" -c 'import sys; print(sys.executable)') ||
        die "PYTHON=$PYTHON does not run"
    py_xy=$("$PYO3_PYTHON" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
    # Per version: a 3.13 run neither rebuilds the 3.11 release binary nor replaces its venv.
    VENV="$REPO/bench/.venv-$py_xy"
    GW_TARGET="$REPO/target/py${py_xy//./}"
    SUFFIX="$SUFFIX-py$py_xy"
elif [ -z "${PYO3_PYTHON:-}" ]; then
    py_on_path=$(command -v python3) || die "python3 not found on PATH"
    PYO3_PYTHON=$("$py_on_path" -c 'import sys; print(sys.executable)')
fi
export PYO3_PYTHON
VPY="$VENV/bin/python"
VENV_REL=${VENV#"$REPO"/}
GW_BIN="$GW_TARGET/release/wsgi-gateway"
PY="$PYO3_PYTHON" # runs the harness's own helpers (bench/tools)

# ------------------------------------------------------------------ wsgi-gateway release build
if has_word "$SERVERS" wsgi-gateway; then
    section "cargo build --release -p wsgi-gateway"
    CARGO_TARGET_DIR="$GW_TARGET" cargo build --release -p wsgi-gateway || die "release build failed"
    [ -x "$GW_BIN" ] || die "no $GW_BIN after the build"
fi

# ------------------------------------------------------------------ peers venv
section "peers venv ($VENV)"
py_ident='import sys; print(sys.base_prefix, sys.version_info[:3])'
want_ident=$("$PYO3_PYTHON" -c "$py_ident")
if [ -x "$VPY" ] && [ "$("$VPY" -c "$py_ident" 2>/dev/null || true)" = "$want_ident" ]; then
    note "reusing $VENV"
else
    note "creating $VENV with $PYO3_PYTHON"
    rm -rf "$VENV"
    "$PYO3_PYTHON" -m venv "$VENV"
fi

pkg_version() {
    "$VPY" - "$1" <<'EOF'
import sys
from importlib import metadata
try:
    print(metadata.version(sys.argv[1]))
except metadata.PackageNotFoundError:
    print("")
EOF
}

declare -A SKIP_REASON=()
for server in $SERVERS; do
    case "$server" in
        wsgi-gateway) continue ;;
        wsgi-gateway-baseline)
            [ -x "${GW_BASELINE_BIN:-}" ] ||
                SKIP_REASON[wsgi-gateway-baseline]="GW_BASELINE_BIN names no executable"
            continue ;;
        wsgi-gateway-wheel)
            # The Linux wheel of this tree as it ships (gateway/build-wheels.sh: manylinux_2_28,
            # zig-linked), built now and installed over whatever an earlier run left: the
            # console script serves from that venv.
            note "gateway/build-wheels.sh --linux-only (the wsgi-gateway wheel)"
            rm -rf "$WORK/wheel"
            CARGO_TARGET_DIR="$GW_TARGET" bash "$REPO/gateway/build-wheels.sh" --linux-only -i "$VPY" \
                -o "$WORK/wheel" >&2 ||
                die "building the wheel failed"
            "$VPY" -m pip install -q --disable-pip-version-check --force-reinstall --no-deps \
                "$WORK"/wheel/*.whl || die "installing the wheel failed"
            continue ;;
        nginx)
            [ -n "$NGINX_BIN" ] || SKIP_REASON[nginx]="nginx is not installed (Debian package 'nginx')"
            continue ;;
    esac
    spec=${PEER_PIN[$server]:-}
    [ -n "$spec" ] || die "unknown server '$server' (known: wsgi-gateway nginx ${!PEER_PIN[*]})"
    name=${spec%%==*}
    ver=${spec##*==}
    [ "$(pkg_version "$name")" = "$ver" ] && continue
    # A failed optional build is remembered so every run doesn't pay for it again.
    marker="$VENV/.failed-$spec"
    if [ -f "$marker" ]; then
        SKIP_REASON[$server]="$(cat "$marker") (cached; rm '$marker' to retry)"
        continue
    fi
    if [ "$server" = bjoern ] && ! deb_installed libev-dev; then
        SKIP_REASON[$server]="libev-dev is not installed"
        continue
    fi
    note "pip install $spec"
    if ! "$VPY" -m pip install -q --disable-pip-version-check "$spec" >"$WORK/pip-$name.log" 2>&1; then
        reason="pip install $spec failed: $(grep -iE 'error' "$WORK/pip-$name.log" | head -1 | cut -c1-160)"
        if [[ "$OPTIONAL_PEERS" == *" $server "* ]]; then
            printf '%s\n' "$reason" >"$marker"
            SKIP_REASON[$server]="$reason"
        else
            tail -20 "$WORK/pip-$name.log" >&2
            die "$reason"
        fi
    fi
done

APP_ERR=""
if has_word "$SCENARIOS" app; then
    app_missing=()
    for spec in "${APP_PINS[@]}"; do
        [ "$(pkg_version "${spec%%==*}")" = "${spec##*==}" ] || app_missing+=("$spec")
    done
    if [ ${#app_missing[@]} -gt 0 ]; then
        note "pip install ${app_missing[*]}"
        "$VPY" -m pip install -q --disable-pip-version-check "${APP_PINS[@]}" >"$WORK/pip-app.log" 2>&1 ||
            APP_ERR="pip install ${APP_PINS[*]} failed: $(grep -iE 'error' "$WORK/pip-app.log" | head -1 | cut -c1-160)"
    fi
fi

RUN_SERVERS=()
for server in $SERVERS; do
    if [ -n "${SKIP_REASON[$server]:-}" ]; then
        note "SKIPPING $server: ${SKIP_REASON[$server]}"
    else
        RUN_SERVERS+=("$server")
    fi
done
[ ${#RUN_SERVERS[@]} -gt 0 ] || die "no server left to run"

# ------------------------------------------------------------------ scenarios
# Sets SC_KIND (plain | mixed | idle), SC_PATH, SC_CONNS, SC_LUA (wrk request setup, Lua),
# SC_WRK (extra wrk arguments), SC_CURL (curl args for the correctness check), SC_BODY (expected
# body, or empty), SC_SIZE (expected body size), SC_MBPS (1: report body MB/s), SC_DESC.
APP_SIZE=""
scenario_def() {
    SC_KIND=plain
    SC_LUA=""
    SC_WRK=()
    SC_CURL=()
    SC_BODY=""
    SC_MBPS=0
    case "$1" in
        hello)
            SC_PATH=/hello; SC_CONNS=50; SC_BODY="Hello, World!"; SC_SIZE=13
            SC_DESC="GET /hello, 13-byte text/plain with Content-Length, keep-alive" ;;
        echo)
            head -c 4096 /dev/zero | tr '\0' 'a' >"$WORK/echo-body"
            SC_PATH=/echo; SC_CONNS=50; SC_BODY=4096; SC_SIZE=4
            SC_CURL=(--data-binary "@$WORK/echo-body" -H "Content-Type: application/octet-stream")
            SC_LUA='wrk.method = "POST"
wrk.body = string.rep("a", 4096)
wrk.headers["Content-Type"] = "application/octet-stream"'
            SC_DESC="POST /echo with a 4 KiB body, read fully, its length answered" ;;
        big)
            SC_PATH=/big; SC_CONNS=10; SC_SIZE=1048576; SC_MBPS=1
            SC_DESC="GET /big, 1 MiB as 16 x 64 KiB chunks with Content-Length" ;;
        stream)
            SC_PATH=/stream; SC_CONNS=50; SC_SIZE=3000; SC_MBPS=1
            SC_DESC="GET /stream, a generator of 100 x 30-byte chunks, no Content-Length (chunked)" ;;
        mixed)
            SC_KIND=mixed; SC_PATH=/hello; SC_CONNS=40; SC_BODY="Hello, World!"; SC_SIZE=13
            SC_DESC="GET /hello on 40 connections while 10 more connections call /slow (time.sleep(0.05) in Python), two wrk at once" ;;
        close)
            SC_PATH=/hello; SC_CONNS=50; SC_BODY="Hello, World!"; SC_SIZE=13
            SC_WRK=(-H "Connection: close")
            SC_DESC="GET /hello with \`wrk -H 'Connection: close'\`: a new TCP connection per request" ;;
        app)
            SC_PATH=/app; SC_CONNS=50; SC_SIZE=$APP_SIZE
            SC_DESC="GET /app, a Flask view rendering a Jinja template (bench/apps/flask_app.py, ${APP_SIZE:-?} bytes)" ;;
        idle)
            SC_KIND=idle; SC_PATH=/hello; SC_CONNS=50; SC_BODY="Hello, World!"; SC_SIZE=13
            SC_DESC="$IDLE_CONNS idle keep-alive connections (one GET each, then silent) held open by bench/tools/idle_conns.py, then GET /hello on 50 more" ;;
        slow)
            SC_PATH=/slow; SC_CONNS=50; SC_BODY="Hello, World!"; SC_SIZE=13
            SC_DESC="GET /slow, time.sleep(0.05) then hello" ;;
        *) die "unknown scenario '$1' (known: $ALL_SCENARIOS slow)" ;;
    esac
    if [ -n "${CONNECTIONS:-}" ]; then SC_CONNS=$CONNECTIONS; fi
}
for sc in $SCENARIOS; do scenario_def "$sc"; done
MIXED_SLOW_CONNS=10

if has_word "$SCENARIOS" app && [ -z "$APP_ERR" ]; then
    # The expected body size, from Flask itself (no server involved).
    APP_SIZE=$(cd "$APPS" && "$VPY" -c 'from flask_app import app; print(len(app.test_client().get("/app").data))' 2>"$WORK/app-size.log") ||
        APP_ERR="flask_app does not load: $(tail -1 "$WORK/app-size.log")"
fi

# Which servers run which scenario, and why not. Sets NA_REASON (empty: runs it).
server_na() {
    local server=$1 sc=$2
    NA_REASON=""
    if [ "$server" = nginx ]; then
        case "$sc" in hello | close) ;; *) NA_REASON="-"; return ;; esac # no Python: not in that table
    fi
    if [ "$PROCS" != 1 ]; then
        case "$server" in
            waitress) NA_REASON="n/a: waitress is single-process by design" ;;
        esac
    fi
    if [ "$sc" = app ] && [ -n "$APP_ERR" ] && [ "$server" != nginx ]; then NA_REASON="FAILED: $APP_ERR"; fi
    return 0
}

# wrk reports through this hook: one machine-readable line instead of parsing its text.
REPORT_LUA='
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "BENCH_RESULT requests=%d duration_us=%d bytes=%d p50_us=%d p99_us=%d connect=%d read=%d write=%d status=%d timeout=%d\n",
    summary.requests, summary.duration, summary.bytes, latency:percentile(50), latency:percentile(99),
    e.connect, e.read, e.write, e.status, e.timeout))
end'

# ------------------------------------------------------------------ servers
server_port() {
    local i=0 s
    for s in "${RUN_SERVERS[@]}"; do
        [ "$s" = "$1" ] && { echo $((BASE_PORT + i)); return; }
        i=$((i + 1))
    done
}

# wsgi-gateway's worker processes at PROCS > 1 (its supervisor is one more, idle process).
GW_PROCS_ARGS=()
GW_PROCS_ARGS_TEXT=""
GW_PROCS_TEXT=" (one process)"
if [ "$PROCS" != 1 ]; then
    GW_PROCS_ARGS=(--workers "$PROCS")
    GW_PROCS_ARGS_TEXT=" --workers $PROCS"
    GW_PROCS_TEXT=" ($PROCS worker processes and their supervisor)"
fi

# How each server is run, for the report.
declare -A SETTINGS=(
    [wsgi-gateway]="\`wsgi-gateway serve bench_app:application --threads $GW_THREADS --venv $VENV_REL${GW_ARGS:+ $GW_ARGS}$GW_PROCS_ARGS_TEXT\`$GW_PROCS_TEXT"
    [wsgi-gateway-baseline]="\`${GW_BASELINE_BIN:-} serve bench_app:application --threads $GW_THREADS --venv $VENV_REL${GW_ARGS:+ $GW_ARGS}$GW_PROCS_ARGS_TEXT\`$GW_PROCS_TEXT"
    [wsgi-gateway-wheel]="\`$VENV_REL/bin/wsgi-gateway serve bench_app:application --threads $GW_THREADS${GW_ARGS:+ $GW_ARGS}$GW_PROCS_ARGS_TEXT\`: the release wheel's console script, in its venv$GW_PROCS_TEXT"
    [granian]="\`granian --interface wsgi --workers $PROCS --blocking-threads $GRANIAN_THREADS${GRANIAN_ARGS:+ $GRANIAN_ARGS}\`"
    [gunicorn]="\`gunicorn -w $PROCS$([ "$GUNICORN_THREADS" -gt 1 ] && echo " -k gthread --threads $GUNICORN_THREADS" || echo ' (sync worker)')${GUNICORN_ARGS:+ $GUNICORN_ARGS}\`"
    [waitress]="\`waitress-serve --threads=$WAITRESS_THREADS${WAITRESS_ARGS:+ $WAITRESS_ARGS}\` (one process)"
    [fastwsgi]="\`fastwsgi.run(...$([ "$PROCS" -gt 1 ] && echo ", workers=$PROCS"))\` via bench/apps/run_server.py"
    [bjoern]="\`bjoern.run()\` via bench/apps/run_server.py$([ "$PROCS" -gt 1 ] && echo ", pre-forked $PROCS children after bjoern.listen")"
    [nginx]="nginx $("${NGINX_BIN:-false}" -v 2>&1 | sed 's|.*/||') \`worker_processes $PROCS\`, \`location = /hello { default_type text/plain; return 200 \"Hello, World!\"; }\`, access_log off, keepalive_requests 1000000"
)

nginx_conf() { # port -> path of a config for that port
    local port=$1 conf="$WORK/nginx-$1.conf"
    mkdir -p "$WORK/nginx-$port"
    cat >"$conf" <<EOF
worker_processes $PROCS;
pid $WORK/nginx-$port/nginx.pid;
events { worker_connections 16384; }
http {
    access_log off;
    keepalive_requests 1000000;
    client_body_temp_path $WORK/nginx-$port/body;
    proxy_temp_path $WORK/nginx-$port/proxy;
    fastcgi_temp_path $WORK/nginx-$port/fastcgi;
    uwsgi_temp_path $WORK/nginx-$port/uwsgi;
    scgi_temp_path $WORK/nginx-$port/scgi;
    server {
        listen $HOST:$port;
        location = /hello { default_type text/plain; return 200 "Hello, World!"; }
        location / { return 404; }
    }
}
EOF
    echo "$conf"
}

# Sets CMD to the command line for one server on PORT (run with cwd = bench/apps).
# shellcheck disable=SC2206 # the *_ARGS variables are lists of words by design
server_cmd() {
    local port=$2
    case "$1" in
        wsgi-gateway)
            CMD=("$GW_BIN" serve bench_app:application --bind "$HOST:$port" --threads "$GW_THREADS"
                --chdir "$APPS" --venv "$VENV" "${GW_PROCS_ARGS[@]}" $GW_ARGS) ;;
        wsgi-gateway-baseline)
            CMD=("$GW_BASELINE_BIN" serve bench_app:application --bind "$HOST:$port" --threads "$GW_THREADS"
                --chdir "$APPS" --venv "$VENV" "${GW_PROCS_ARGS[@]}" $GW_ARGS) ;;
        wsgi-gateway-wheel)
            CMD=("$VENV/bin/wsgi-gateway" serve bench_app:application --bind "$HOST:$port"
                --threads "$GW_THREADS" --chdir "$APPS" "${GW_PROCS_ARGS[@]}" $GW_ARGS) ;;
        granian)
            CMD=("$VENV/bin/granian" --interface wsgi --host "$HOST" --port "$port" --workers "$PROCS"
                --blocking-threads "$GRANIAN_THREADS" --log-level warning --working-dir "$APPS"
                $GRANIAN_ARGS bench_app:application) ;;
        gunicorn)
            CMD=("$VENV/bin/gunicorn" -w "$PROCS" -b "$HOST:$port" --log-level warning --chdir "$APPS")
            [ "$GUNICORN_THREADS" -gt 1 ] && CMD+=(-k gthread --threads "$GUNICORN_THREADS")
            CMD+=($GUNICORN_ARGS bench_app:application) ;;
        waitress)
            CMD=("$VENV/bin/waitress-serve" --host="$HOST" --port="$port" --threads="$WAITRESS_THREADS"
                $WAITRESS_ARGS bench_app:application) ;;
        fastwsgi | bjoern)
            CMD=("$VPY" "$APPS/run_server.py" "$1" "$HOST" "$port" "$PROCS") ;;
        nginx)
            CMD=("$NGINX_BIN" -e stderr -p "$WORK/nginx-$port" -c "$(nginx_conf "$port")" -g 'daemon off;') ;;
    esac
}

rss_now() { "$PY" "$TOOLS/rss.py" now "$1"; } # -> "KIB NPROCS"

log_tail() { # file -> its last lines on one line
    [ -f "$1" ] || return 0
    tail -n "${2:-4}" "$1" | tr '\n\t' '  ' | sed 's/  */ /g' | cut -c1-300
}

SERVER_PID=""
# Starts SERVER for one run; returns non-zero with a reason in START_ERR if it never answers.
start_server() {
    local server=$1 port=$2 log=$3 i
    START_ERR=""
    if curl -s -o /dev/null --max-time 1 "http://$HOST:$port/" 2>/dev/null; then
        START_ERR="port $port already in use (BASE_PORT=$BASE_PORT; another run?)"
        return 1
    fi
    server_cmd "$server" "$port"
    local -a pin=()
    [ "$PIN" = 1 ] && pin=(taskset -c 0)
    # setsid: the server leads its own process group, so its workers are stopped with it.
    (cd "$APPS" && exec setsid "${pin[@]}" "${CMD[@]}") >"$log" 2>&1 </dev/null &
    SERVER_PID=$!
    STARTED+=("$SERVER_PID")
    # Bounded readiness poll: up to ~20 s of connection attempts.
    for ((i = 0; i < 200; i++)); do
        if ! kill -0 "$SERVER_PID" 2>/dev/null; then
            START_ERR="exited during start-up; log: $(log_tail "$log" 6)"
            return 1
        fi
        if curl -s -o /dev/null --max-time 1 "http://$HOST:$port/hello" 2>/dev/null; then
            return 0
        fi
        sleep 0.1
    done
    START_ERR="not answering on $HOST:$port after 20 s; log: $(log_tail "$log" 6)"
    return 1
}

# The server must answer the scenario correctly before it gets a number.
check_answer() { # url [expected-size expected-body curl-args...]
    local url=$1 want_size=${2:-$SC_SIZE} want_body=${3-$SC_BODY} out="$WORK/answer" size code
    shift 3 2>/dev/null || shift $#
    local -a args=("$@")
    [ $# -gt 0 ] || args=("${SC_CURL[@]}")
    read -r code size < <(curl -s --max-time 10 -o "$out" -w '%{http_code} %{size_download}\n' \
        "${args[@]}" "$url" || echo "000 0")
    if [ "$code" != 200 ]; then
        CHECK_ERR="$url: HTTP status $code"
        return 1
    fi
    if [ -n "$want_size" ] && [ "$size" != "$want_size" ]; then
        CHECK_ERR="$url: body size $size, expected $want_size"
        return 1
    fi
    if [ -n "$want_body" ] && [ "$(cat "$out")" != "$want_body" ]; then
        CHECK_ERR="$url: unexpected body: $(head -c 60 "$out")"
        return 1
    fi
}

WRK_PID=""
start_wrk() { # url seconds connections script outfile [extra wrk args...] -> WRK_PID
    local url=$1 secs=$2 conns=$3 script=$4 out=$5
    shift 5
    local -a pin=()
    [ "$PIN" = 1 ] && pin=(taskset -c 1)
    timeout -k 5 $((secs + 30)) "${pin[@]}" wrk -t1 -c"$conns" -d"$secs"s --timeout 5s --latency \
        -s "$script" "$@" "$url" >"$out" 2>&1 &
    WRK_PID=$!
}

declare -A W=()
parse_wrk() { # outfile -> W[...]; non-zero without a result line
    local line kv
    W=()
    line=$(grep '^BENCH_RESULT' "$1" 2>/dev/null) || return 1
    for kv in ${line#BENCH_RESULT }; do W[${kv%%=*}]=${kv#*=}; done
}
per_sec() { awk -v n="$1" -v d="$2" 'BEGIN { printf "%.1f", n / (d / 1e6) }'; }

RSS_PID=""
start_rss() { # server-pid outfile
    rm -f "$2"
    "$PY" "$TOOLS/rss.py" watch "$1" "$2" 0.2 &
    RSS_PID=$!
    HELPERS+=("$RSS_PID")
}
read_rss() { # outfile -> "KIB NPROCS LARGEST_KIB" (0 0 0 when nothing was sampled)
    stop_helper "$RSS_PID"
    cat "$1" 2>/dev/null || echo "0 0 0"
}

record() { # key=value ... -> one tab-separated line of RUNS
    local IFS=$'\t' line
    line="$*"
    printf '%s\n' "${line//$'\n'/ }" >>"$RUNS"
}

# ------------------------------------------------------------------ one run
# Runs SERVER on scenario SC (already defined with scenario_def) for round ROUND: starts it,
# checks its answer, loads it, records a line. Sets RUN_FATAL=1 when later rounds are pointless.
run_one() {
    local server=$1 sc=$2 round=$3 port url tag log rss nproc rss_proc e
    port=$(server_port "$server")
    url="http://$HOST:$port$SC_PATH"
    tag="$sc-$server-r$round"
    log="$WORK/$tag.server.log"
    RUN_FATAL=0
    local -a rec=("server=$server" "sc=$sc" "round=$round")
    if ! start_server "$server" "$port" "$log"; then
        record "${rec[@]}" status=fail "note=did not start: $START_ERR"
        RUN_FATAL=1
        return 1
    fi
    if ! check_answer "$url" || { [ "$sc" = mixed ] &&
        ! check_answer "http://$HOST:$port/slow" 13 "Hello, World!"; }; then
        record "${rec[@]}" status=fail "note=wrong answer: $CHECK_ERR"
        RUN_FATAL=1
        return 1
    fi

    local -a idle=()
    local idle_pid="" rss_before="" rss_after=""
    if [ "$SC_KIND" = idle ]; then
        sleep 0.5
        read -r rss_before _ <<<"$(rss_now "$SERVER_PID")"
        : >"$WORK/$tag.idle"
        "$PY" "$TOOLS/idle_conns.py" "$HOST" "$port" "$IDLE_CONNS" --open-timeout "$IDLE_OPEN_TIMEOUT" \
            --max-secs $((IDLE_OPEN_TIMEOUT + WARMUP + DURATION + 120)) >"$WORK/$tag.idle" 2>&1 &
        idle_pid=$!
        HELPERS+=("$idle_pid")
        local i
        for ((i = 0; i < (IDLE_OPEN_TIMEOUT + 20) * 10; i++)); do
            grep -q '^OPENED' "$WORK/$tag.idle" && break
            kill -0 "$idle_pid" 2>/dev/null || break
            sleep 0.1
        done
        if ! grep -q '^OPENED' "$WORK/$tag.idle"; then
            stop_helper "$idle_pid"
            record "${rec[@]}" status=fail "note=idle client failed: $(log_tail "$WORK/$tag.idle")"
            return 1
        fi
        read -r rss_after _ <<<"$(rss_now "$SERVER_PID")"
        local kv
        for kv in $(grep '^OPENED' "$WORK/$tag.idle" | sed 's/^OPENED //'); do
            case "${kv%%=*}" in
                first_error) idle+=("idle_err=${kv#*=}") ;;
                *) idle+=("idle_${kv%%=*}=${kv#*=}") ;;
            esac
        done
        idle+=("rss_before=$rss_before" "rss_after=$rss_after")
        if ! kill -0 "$SERVER_PID" 2>/dev/null; then
            stop_helper "$idle_pid"
            record "${rec[@]}" status=fail "${idle[@]}" \
                "note=server exited while the idle connections were opened; log: $(log_tail "$log")"
            return 1
        fi
    fi

    local script="$WORK/$sc.lua" slow_script="$WORK/slow.lua"
    local wrk_out="$WORK/$tag.wrk" slow_out="$WORK/$tag.slow.wrk" hello_pid slow_pid=""
    local phase secs
    for phase in warmup measure; do
        secs=$DURATION
        if [ "$phase" = warmup ]; then
            [ "$WARMUP" -gt 0 ] || continue
            secs=$WARMUP
        else
            start_rss "$SERVER_PID" "$WORK/$tag.rss"
        fi
        start_wrk "$url" "$secs" "$SC_CONNS" "$script" "$wrk_out.$phase" "${SC_WRK[@]}"
        hello_pid=$WRK_PID
        if [ "$SC_KIND" = mixed ]; then
            start_wrk "http://$HOST:$port/slow" "$secs" "$MIXED_SLOW_CONNS" "$slow_script" "$slow_out.$phase"
            slow_pid=$WRK_PID
        fi
        wait "$hello_pid" || true
        [ -z "$slow_pid" ] || wait "$slow_pid" || true
    done
    read -r rss nproc rss_proc <<<"$(read_rss "$WORK/$tag.rss")"

    if [ -n "$idle_pid" ]; then
        stop_helper "$idle_pid"
        local held_after
        held_after=$(sed -n 's/^HELD held=\([0-9]*\).*/\1/p' "$WORK/$tag.idle")
        idle+=("idle_held_after=${held_after:-?}")
    fi

    if ! parse_wrk "$wrk_out.measure"; then
        record "${rec[@]}" status=fail "${idle[@]}" "note=wrk failed: $(log_tail "$wrk_out.measure" 3)"
        return 1
    fi
    local -a res=("rps=$(per_sec "${W[requests]}" "${W[duration_us]}")" "p50=${W[p50_us]}"
        "p99=${W[p99_us]}" "requests=${W[requests]}")
    local -A errs=([connect]=${W[connect]} [read]=${W[read]} [write]=${W[write]}
        [status]=${W[status]} [timeout]=${W[timeout]})
    [ "$SC_MBPS" = 1 ] && res+=("mbps=$(awk -v n="${W[requests]}" -v s="$SC_SIZE" -v d="${W[duration_us]}" \
        'BEGIN { printf "%.1f", n * s / d }')")
    if [ "$SC_KIND" = mixed ]; then
        if ! parse_wrk "$slow_out.measure"; then
            record "${rec[@]}" status=fail "note=wrk on /slow failed: $(log_tail "$slow_out.measure" 3)"
            return 1
        fi
        res+=("slow_rps=$(per_sec "${W[requests]}" "${W[duration_us]}")" "slow_p99=${W[p99_us]}"
            "slow_requests=${W[requests]}")
        for e in connect read write status timeout; do errs[$e]=$((errs[$e] + W[$e])); done
    fi
    for e in connect read write status timeout; do res+=("e_$e=${errs[$e]}"); done
    if ! kill -0 "$SERVER_PID" 2>/dev/null; then
        record "${rec[@]}" status=fail "${res[@]}" "${idle[@]}" \
            "note=server exited during the run; log: $(log_tail "$log")"
        return 1
    fi
    record "${rec[@]}" status=ok "${res[@]}" "rss=$rss" "nproc=$nproc" "rss_proc=${rss_proc:-0}" "${idle[@]}"
    RUN_SUMMARY="$(printf '%9s req/s  p99 %6s us  errors %s  rss %s KiB' "${res[0]#rps=}" "${res[2]#p99=}" \
        "$((errs[connect] + errs[read] + errs[write] + errs[status] + errs[timeout]))" "$rss")"
    [ "$SC_MBPS" = 1 ] && RUN_SUMMARY+="  ${res[4]#mbps=} MB/s"
    [ "$SC_KIND" = mixed ] && RUN_SUMMARY+="  /slow ${res[4]#slow_rps=} req/s"
    if [ "$SC_KIND" = idle ]; then
        RUN_SUMMARY+="  idle: $(grep '^OPENED' "$WORK/$tag.idle" | cut -d' ' -f2-4), held after ${held_after:-?}, rss $rss_before -> $rss_after KiB"
    fi
    return 0
}

# ------------------------------------------------------------------ measure
printf '%s\n%s\n' "" "$REPORT_LUA" >"$WORK/slow.lua"
per_run=$((DURATION + WARMUP + 3))
est=0
for sc in $SCENARIOS; do
    for server in "${RUN_SERVERS[@]}"; do
        server_na "$server" "$sc"
        [ -z "$NA_REASON" ] || continue
        est=$((est + ROUNDS * per_run))
        [ "$sc" = idle ] && est=$((est + ROUNDS * 4))
    done
done
load_at_start=$(cut -d' ' -f1-3 /proc/loadavg)
section "measuring: servers=(${RUN_SERVERS[*]}) scenarios=($SCENARIOS) procs=$PROCS rounds=$ROUNDS duration=${DURATION}s (~$((est / 60)) min)"

declare -A FATAL=()
any_failed=0
for sc in $SCENARIOS; do
    scenario_def "$sc"
    printf '%s\n%s\n' "$SC_LUA" "$REPORT_LUA" >"$WORK/$sc.lua"
    # Rows that have no run: not installed, not applicable.
    for server in $SERVERS; do
        if [ -n "${SKIP_REASON[$server]:-}" ]; then
            server_na "$server" "$sc"
            [ "$NA_REASON" = "-" ] || record "server=$server" "sc=$sc" status=skip "note=not installed: ${SKIP_REASON[$server]}"
            continue
        fi
        server_na "$server" "$sc"
        case "$NA_REASON" in
            "" | "-") ;;
            FAILED:*) record "server=$server" "sc=$sc" status=fail "note=${NA_REASON#FAILED: }"; any_failed=1 ;;
            *) record "server=$server" "sc=$sc" status=na "note=$NA_REASON" ;;
        esac
    done
    for ((round = 1; round <= ROUNDS; round++)); do
        for server in "${RUN_SERVERS[@]}"; do
            server_na "$server" "$sc"
            [ -z "$NA_REASON" ] || continue
            [ -z "${FATAL[$server|$sc]:-}" ] || continue
            printf '  %-7s round %d/%d  %-13s ' "$sc" "$round" "$ROUNDS" "$server" >&2
            RUN_SUMMARY=""
            if run_one "$server" "$sc" "$round"; then
                printf '%s\n' "$RUN_SUMMARY" >&2
            else
                any_failed=1
                printf 'FAILED: %s\n' "$(tail -1 "$RUNS" | tr '\t' '\n' | sed -n 's/^note=//p')" >&2
                [ "$RUN_FATAL" = 1 ] && FATAL[$server|$sc]=1
            fi
            stop_server "$SERVER_PID"
        done
    done
done

# ------------------------------------------------------------------ report
section "results"
T_END=$(date +%s)
cpu_model=$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)
gw_version="(not run)"
if [ -x "$GW_BIN" ]; then
    gw_version=$("$GW_BIN" --version 2>/dev/null | head -1 || true)
    [ -n "$gw_version" ] || gw_version="(--version not supported)"
fi
git_rev=$(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo unknown)
[ -z "$(git -C "$REPO" status --porcelain -- . ':!bench/results' 2>/dev/null)" ] || git_rev="$git_rev (dirty tree)"
today=$(date +%F)
wall=$((T_END - T_START))
if [ "$SCENARIOS" != "$ALL_SCENARIOS" ]; then wall_note=", scenarios: $SCENARIOS"; else wall_note=""; fi
{
    echo "today=$today"
    echo "suffix=$SUFFIX"
    echo "date_utc=$(date -u '+%Y-%m-%d %H:%M:%S UTC')"
    echo "wall=$((wall / 60)) min $((wall % 60)) s (build check, venv check, $ROUNDS rounds$wall_note)"
    echo "nproc=$(nproc)"
    echo "cpu=$cpu_model"
    echo "kernel=$(uname -r)"
    echo "load=$load_at_start"
    echo "procs=$PROCS"
    echo "rounds=$ROUNDS"
    echo "duration=$DURATION"
    echo "warmup=$WARMUP"
    echo "pin=$([ "$PIN" = 1 ] && echo 'server cpu0, wrk cpu1' || echo none)"
    echo "idle_conns=$IDLE_CONNS"
    echo "mixed_slow_ideal=$((MIXED_SLOW_CONNS * 20))"
    echo "gw_version=$gw_version"
    echo "git_rev=$git_rev"
    echo "python=$("$VPY" --version 2>&1)"
    echo "wrk=$(wrk -v 2>&1 | head -1 | sed 's/ Copyright.*//')"
    echo "nginx=$([ -n "$NGINX_BIN" ] && "$NGINX_BIN" -v 2>&1 | sed 's|.*: ||' || echo 'not installed')"
    echo "servers=$SERVERS"
    echo "scenarios=$SCENARIOS"
    for server in $SERVERS; do echo "settings.$server=${SETTINGS[$server]:-}"; done
    for sc in $SCENARIOS; do
        scenario_def "$sc"
        echo "desc.$sc=$SC_DESC; $SC_CONNS connections"
    done
    "$VPY" -m pip freeze --disable-pip-version-check 2>/dev/null | sed 's/^/freeze=/'
} | sed 's/^/# /' >"$WORK/raw.tsv"
cat "$RUNS" >>"$WORK/raw.tsv"
mkdir -p "$RESULTS"
raw="$RESULTS/$today-runs$SUFFIX.tsv"
cp "$WORK/raw.tsv" "$raw"
"$PY" "$TOOLS/report.py" "$raw" "$RESULTS" || die "report failed (raw record: $raw)"
note "wrote ${raw#"$REPO"/} (the raw record: 'python3 bench/tools/report.py FILE DIR' tables it again)"
note "whole run took $((wall / 60)) min $((wall % 60)) s"

if [ "$any_failed" -ne 0 ]; then
    note "some runs FAILED (see the tables)"
    exit 1
fi
