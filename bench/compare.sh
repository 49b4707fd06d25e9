#!/usr/bin/env bash
# Compare wsgi-gateway with other Python WSGI servers on the same app (bench/apps/bench_app.py),
# one process each, on loopback, with wrk. Rounds are interleaved (A B C, A B C, ...) so a
# slow drift of the machine hits every server alike; each run gets a fresh server.
#
# Usage: bash bench/compare.sh
# Env:   ROUNDS (3), DURATION (seconds per run, 5), WARMUP (seconds, 1),
#        SERVERS ("wsgi-gateway granian gunicorn waitress fastwsgi bjoern"),
#        SCENARIOS ("hello echo"; also: big stream slow), CONNECTIONS (override per-scenario),
#        BASE_PORT (18400), PIN (1 = server on CPU 0, wrk on CPU 1), KEEP_LOGS (1 = keep raw logs)
# Output: a table on stdout and bench/results/<date>-<scenario>.md per scenario.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"

ROUNDS="${ROUNDS:-3}"
DURATION="${DURATION:-5}"
WARMUP="${WARMUP:-1}"
SERVERS="${SERVERS:-wsgi-gateway granian gunicorn waitress fastwsgi bjoern}"
SCENARIOS="${SCENARIOS:-hello echo}"
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

APPS="$REPO/bench/apps"
VENV="$REPO/bench/.venv"
VPY="$VENV/bin/python"
GW_BIN="$REPO/target/release/wsgi-gateway"
RESULTS="$REPO/bench/results"
WORK="$(mktemp -d "${TMPDIR:-/tmp}/wsgi-bench.XXXXXX")"

note() { printf 'compare.sh: %s\n' "$*" >&2; }
die() { printf 'compare.sh: error: %s\n' "$*" >&2; exit 1; }
section() { printf '\n==== %s ====\n' "$*" >&2; }

for v in ROUNDS DURATION WARMUP BASE_PORT; do
    [[ "${!v}" =~ ^[0-9]+$ ]] || die "$v must be a whole number, got '${!v}'"
done
if [ "$ROUNDS" -lt 1 ] || [ "$DURATION" -lt 1 ]; then die "ROUNDS and DURATION must be >= 1"; fi

# ------------------------------------------------------------------ cleanup
STARTED=() # pids (= process groups, via setsid) of servers this script started
stop_server() {
    local pid=$1 i
    kill -0 "$pid" 2>/dev/null || { wait "$pid" 2>/dev/null || true; return 0; }
    kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < 50; i++)); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    # Still there after 5 s: no graceful-shutdown numbers are measured here, so force it.
    kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
}
cleanup() {
    local pid
    for pid in "${STARTED[@]}"; do stop_server "$pid"; done
    if [ "$KEEP_LOGS" = 1 ]; then note "raw logs kept in $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ------------------------------------------------------------------ system packages
section "system packages"
want_bjoern=0
[[ " $SERVERS " == *" bjoern "* ]] && want_bjoern=1
apt_missing=()
command -v wrk >/dev/null 2>&1 || apt_missing+=(wrk)
command -v curl >/dev/null 2>&1 || apt_missing+=(curl)
if [ "$want_bjoern" = 1 ] &&
    ! dpkg-query -W -f='${Status}' libev-dev 2>/dev/null | grep -q "install ok installed"; then
    apt_missing+=(libev-dev)
fi
if [ ${#apt_missing[@]} -eq 0 ]; then
    note "all present (wrk, curl$([ "$want_bjoern" = 1 ] && echo ', libev-dev'))"
elif [ "$(id -u)" -ne 0 ]; then
    note "not root, skipping apt; missing: ${apt_missing[*]}"
else
    note "apt-get install ${apt_missing[*]}"
    DEBIAN_FRONTEND=noninteractive apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        "${apt_missing[@]}" >/dev/null
fi
command -v wrk >/dev/null 2>&1 || die "wrk is not installed (Debian package 'wrk')"
command -v curl >/dev/null 2>&1 || die "curl is not installed (Debian package 'curl')"

# ------------------------------------------------------------------ python: same as the build
if [ -z "${PYO3_PYTHON:-}" ]; then
    py_on_path=$(command -v python3) || die "python3 not found on PATH"
    PYO3_PYTHON=$("$py_on_path" -c 'import sys; print(sys.executable)')
fi
export PYO3_PYTHON

# ------------------------------------------------------------------ wsgi-gateway release build
if [[ " $SERVERS " == *" wsgi-gateway "* ]]; then
    section "cargo build --release -p wsgi-gateway"
    cargo build --release -p wsgi-gateway || die "release build failed"
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
    [ "$server" = wsgi-gateway ] && continue
    spec=${PEER_PIN[$server]:-}
    [ -n "$spec" ] || die "unknown server '$server' (known: wsgi-gateway ${!PEER_PIN[*]})"
    name=${spec%%==*}
    ver=${spec##*==}
    [ "$(pkg_version "$name")" = "$ver" ] && continue
    # A failed optional build is remembered so every run doesn't pay for it again.
    marker="$VENV/.failed-$spec"
    if [ -f "$marker" ]; then
        SKIP_REASON[$server]="$(cat "$marker") (cached; rm '$marker' to retry)"
        continue
    fi
    if [ "$server" = bjoern ] &&
        ! dpkg-query -W -f='${Status}' libev-dev 2>/dev/null | grep -q "install ok installed"; then
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
# Sets SC_PATH, SC_CONNS, SC_LUA (wrk request setup, Lua), SC_CURL (curl args for the
# correctness check), SC_BODY (expected body, or empty) and SC_SIZE (expected body size).
scenario_def() {
    SC_LUA=""
    SC_CURL=()
    SC_BODY=""
    case "$1" in
        hello)
            SC_PATH=/hello; SC_CONNS=50; SC_BODY="Hello, World!"; SC_SIZE=13 ;;
        echo)
            head -c 4096 /dev/zero | tr '\0' 'a' >"$WORK/echo-body"
            SC_PATH=/echo; SC_CONNS=50; SC_BODY=4096; SC_SIZE=4
            SC_CURL=(--data-binary "@$WORK/echo-body" -H "Content-Type: application/octet-stream")
            SC_LUA='wrk.method = "POST"
wrk.body = string.rep("a", 4096)
wrk.headers["Content-Type"] = "application/octet-stream"' ;;
        big)
            SC_PATH=/big; SC_CONNS=20; SC_SIZE=1048576 ;;
        stream)
            SC_PATH=/stream; SC_CONNS=50; SC_SIZE=3000 ;;
        slow)
            SC_PATH=/slow; SC_CONNS=50; SC_BODY="Hello, World!"; SC_SIZE=13 ;;
        *) die "unknown scenario '$1' (known: hello echo big stream slow)" ;;
    esac
    if [ -n "${CONNECTIONS:-}" ]; then SC_CONNS=$CONNECTIONS; fi
}
for sc in $SCENARIOS; do scenario_def "$sc"; done

# wrk reports through this hook: one machine-readable line instead of parsing its text.
REPORT_LUA='
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "BENCH_RESULT requests=%d duration_us=%d p50_us=%d p99_us=%d connect=%d read=%d write=%d status=%d timeout=%d\n",
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
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

# Sets CMD to the command line for one server on PORT (run with cwd = bench/apps).
server_cmd() {
    local port=$2
    case "$1" in
        wsgi-gateway)
            CMD=("$GW_BIN" serve bench_app:application --bind "$HOST:$port" --threads 2 --chdir "$APPS") ;;
        granian)
            CMD=("$VENV/bin/granian" --interface wsgi --host "$HOST" --port "$port" --workers 1
                --blocking-threads 1 --log-level warning --working-dir "$APPS" bench_app:application) ;;
        gunicorn)
            CMD=("$VENV/bin/gunicorn" -w 1 -b "$HOST:$port" --log-level warning --chdir "$APPS"
                bench_app:application) ;;
        waitress)
            CMD=("$VENV/bin/waitress-serve" --host="$HOST" --port="$port" --threads=4 bench_app:application) ;;
        fastwsgi | bjoern)
            CMD=("$VPY" "$APPS/run_server.py" "$1" "$HOST" "$port") ;;
    esac
}

# Sum of VmHWM (peak RSS, KiB) over the server's process tree: supervisor + workers.
tree_pids() {
    local c
    echo "$1"
    for c in $(ps -o pid= --ppid "$1" 2>/dev/null); do tree_pids "$c"; done
}
peak_rss_kb() {
    local p v sum=0 n=0
    for p in $(tree_pids "$1"); do
        v=$(awk '/^VmHWM:/ {print $2}' "/proc/$p/status" 2>/dev/null || true)
        [ -n "$v" ] || continue
        sum=$((sum + v))
        n=$((n + 1))
    done
    echo "$sum $n"
}

SERVER_PID=""
# Starts SERVER for one run; returns non-zero with a reason in START_ERR if it never answers.
start_server() {
    local server=$1 port=$2 log=$3 i
    START_ERR=""
    if curl -s -o /dev/null --max-time 1 "http://$HOST:$port/" 2>/dev/null; then
        START_ERR="port $port already in use"
        return 1
    fi
    server_cmd "$server" "$port"
    local -a pin=()
    [ "$PIN" = 1 ] && pin=(taskset -c 0)
    # setsid: the server leads its own process group, so its workers are stopped with it.
    (cd "$APPS" && exec setsid "${pin[@]}" "${CMD[@]}") >"$log" 2>&1 </dev/null &
    SERVER_PID=$!
    STARTED+=("$SERVER_PID")
    # Bounded readiness poll: up to ~15 s of connection attempts.
    for ((i = 0; i < 150; i++)); do
        if ! kill -0 "$SERVER_PID" 2>/dev/null; then
            START_ERR="exited during start-up: $(tail -3 "$log" | tr '\n' ' ' | cut -c1-200)"
            return 1
        fi
        if curl -s -o /dev/null --max-time 1 "http://$HOST:$port/hello" 2>/dev/null; then
            return 0
        fi
        sleep 0.1
    done
    START_ERR="not answering after 150 attempts"
    return 1
}

# The server must answer the scenario correctly before it gets a number.
check_answer() {
    local url=$1 out="$WORK/answer" size
    size=$(curl -s --max-time 10 -o "$out" -w '%{size_download}' "${SC_CURL[@]}" "$url") || {
        CHECK_ERR="request failed"
        return 1
    }
    if [ "$size" != "$SC_SIZE" ]; then
        CHECK_ERR="body size $size, expected $SC_SIZE"
        return 1
    fi
    if [ -n "$SC_BODY" ] && [ "$(cat "$out")" != "$SC_BODY" ]; then
        CHECK_ERR="unexpected body: $(head -c 60 "$out")"
        return 1
    fi
}

run_wrk() { # url seconds script outfile
    local -a pin=()
    [ "$PIN" = 1 ] && pin=(taskset -c 1)
    timeout -k 5 $(($2 + 30)) "${pin[@]}" wrk -t1 -c"$SC_CONNS" -d"$2"s --timeout 5s --latency \
        -s "$3" "$1" >"$4" 2>&1
}

# ------------------------------------------------------------------ measure
declare -A RPS=() P99=() ERRS=() RSS=() PROCS=() FAIL=()
any_failed=0
est=0
for sc in $SCENARIOS; do est=$((est + ROUNDS * ${#RUN_SERVERS[@]} * (DURATION + WARMUP + 3))); done
load_at_start=$(cut -d' ' -f1-3 /proc/loadavg)
section "measuring: servers=(${RUN_SERVERS[*]}) scenarios=($SCENARIOS) rounds=$ROUNDS duration=${DURATION}s (~${est}s)"

for sc in $SCENARIOS; do
    scenario_def "$sc"
    script="$WORK/$sc.lua"
    printf '%s\n%s\n' "$SC_LUA" "$REPORT_LUA" >"$script"
    for ((round = 1; round <= ROUNDS; round++)); do
        for server in "${RUN_SERVERS[@]}"; do
            key="$server|$sc"
            [ -n "${FAIL[$key]:-}" ] && continue
            port=$(server_port "$server")
            url="http://$HOST:$port$SC_PATH"
            tag="$sc-$server-r$round"
            printf '  %-8s round %d/%d  %-13s ' "$sc" "$round" "$ROUNDS" "$server" >&2
            if ! start_server "$server" "$port" "$WORK/$tag.server.log"; then
                FAIL[$key]="start: $START_ERR"
            elif ! check_answer "$url"; then
                FAIL[$key]="wrong answer: $CHECK_ERR"
            else
                if [ "$WARMUP" -gt 0 ]; then run_wrk "$url" "$WARMUP" "$script" "$WORK/$tag.warmup" || true; fi
                if ! run_wrk "$url" "$DURATION" "$script" "$WORK/$tag.wrk" ||
                    ! line=$(grep '^BENCH_RESULT' "$WORK/$tag.wrk"); then
                    FAIL[$key]="wrk failed: $(tail -2 "$WORK/$tag.wrk" | tr '\n' ' ' | cut -c1-160)"
                else
                    read -r rss nproc_srv <<<"$(peak_rss_kb "$SERVER_PID")"
                    declare -A f=()
                    for kv in ${line#BENCH_RESULT }; do f[${kv%%=*}]=${kv#*=}; done
                    rps=$(awk -v r="${f[requests]}" -v d="${f[duration_us]}" 'BEGIN { printf "%.1f", r / (d / 1e6) }')
                    errs=$((f[connect] + f[read] + f[write] + f[status] + f[timeout]))
                    RPS[$key]="${RPS[$key]:-} $rps"
                    P99[$key]="${P99[$key]:-} ${f[p99_us]}"
                    ERRS[$key]=$((${ERRS[$key]:-0} + errs))
                    [ "$rss" -gt "${RSS[$key]:-0}" ] && RSS[$key]=$rss && PROCS[$key]=$nproc_srv
                    printf '%10s req/s  p99 %s us  errors %s  rss %s KiB\n' "$rps" "${f[p99_us]}" "$errs" "$rss" >&2
                    unset f
                fi
            fi
            if [ -n "${FAIL[$key]:-}" ]; then
                printf 'FAILED: %s\n' "${FAIL[$key]}" >&2
                any_failed=1
                [ -f "$WORK/$tag.server.log" ] && tail -5 "$WORK/$tag.server.log" | sed 's/^/      | /' >&2
            fi
            stop_server "$SERVER_PID"
        done
    done
done

# ------------------------------------------------------------------ report
# Median of whitespace-separated numbers on stdin; empty output for no numbers.
median() { tr ' ' '\n' | sort -g | awk 'NF { a[++n] = $1 } END {
    if (n == 0) exit
    if (n % 2) print a[(n + 1) / 2]; else printf "%.1f\n", (a[n / 2] + a[n / 2 + 1]) / 2 }'; }
fmt_us() { awk -v u="$1" 'BEGIN { if (u >= 1000) printf "%.2f ms", u / 1000; else printf "%d us", u }'; }
fmt_kb() { awk -v k="$1" 'BEGIN { printf "%.1f MiB", k / 1024 }'; }

scenario_table() {
    local sc=$1 server key med gw_med ratio
    gw_med=$(echo "${RPS[wsgi-gateway|$sc]:-}" | median)
    echo "| server | scenario | conns | req/s (median) | req/s per round | p99 (median) | errors | peak RSS | wsgi-gateway ÷ server |"
    echo "|---|---|---|---|---|---|---|---|---|"
    for server in $SERVERS; do
        key="$server|$sc"
        if [ -n "${SKIP_REASON[$server]:-}" ]; then
            echo "| $server | $sc | | not installed | | | | | |"
            continue
        fi
        if [ -n "${FAIL[$key]:-}" ] && [ -z "${RPS[$key]:-}" ]; then
            echo "| $server | $sc | $SC_CONNS | FAILED: ${FAIL[$key]//|//} | | | | | |"
            continue
        fi
        med=$(echo "${RPS[$key]}" | median)
        if [ -n "$gw_med" ]; then
            ratio=$(awk -v a="$gw_med" -v b="$med" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "n/a" }')
        else
            ratio="n/a"
        fi
        printf '| %s | %s | %s | %s | %s | %s | %s | %s (%s proc) | %s |\n' \
            "$server" "$sc" "$SC_CONNS" "$med" "$(echo "${RPS[$key]}" | xargs | tr ' ' '/')" \
            "$(fmt_us "$(echo "${P99[$key]}" | median)")" "${ERRS[$key]}" \
            "$(fmt_kb "${RSS[$key]}")" "${PROCS[$key]}" "$ratio"
    done
}

cpu_model=$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)
wrk_version=$(wrk -v 2>&1 | head -1 || true)
gw_version="(not run)"
if [ -x "$GW_BIN" ]; then
    gw_version=$("$GW_BIN" --version 2>/dev/null | head -1 || true)
    [ -n "$gw_version" ] || gw_version="(--version not supported)"
fi
git_rev=$(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo unknown)
[ -z "$(git -C "$REPO" status --porcelain 2>/dev/null)" ] || git_rev="$git_rev (dirty tree)"
today=$(date +%F)

mkdir -p "$RESULTS"
section "results"
for sc in $SCENARIOS; do
    scenario_def "$sc"
    out="$RESULTS/$today-$sc.md"
    {
        echo "# wsgi-gateway vs peers: \`$sc\` ($SC_PATH, $SC_CONNS connections)"
        echo
        echo "- date: $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
        echo "- machine: nproc=$(nproc), CPU: $cpu_model, kernel $(uname -r), load average before the runs: $load_at_start"
        echo "- load: \`wrk -t1 -c$SC_CONNS -d${DURATION}s --latency\` after a ${WARMUP}s warm-up, $ROUNDS interleaved rounds, fresh server per run, loopback, CPU pinning: $([ "$PIN" = 1 ] && echo 'server cpu0, wrk cpu1' || echo none)"
        echo "- servers (one process each): wsgi-gateway \`--threads 2\`; granian \`--interface wsgi --workers 1 --blocking-threads 1\`; gunicorn \`-w 1\` (sync); waitress \`--threads 4\`; fastwsgi, bjoern via bench/apps/run_server.py"
        echo "- peak RSS = VmHWM summed over the server's process tree (supervisor + worker where there are two), max over rounds"
        echo "- errors = wrk socket errors + non-2xx/3xx responses, summed over rounds"
        echo
        scenario_table "$sc"
        echo
        for server in $SERVERS; do
            [ -n "${SKIP_REASON[$server]:-}" ] && echo "- $server not installed: ${SKIP_REASON[$server]}"
        done
        echo
        echo "## Versions"
        echo
        echo "- wsgi-gateway: $gw_version, commit $git_rev"
        echo "- $("$VPY" --version 2>&1), wrk: $wrk_version"
        echo
        echo '```'
        "$VPY" -m pip freeze --disable-pip-version-check 2>/dev/null
        echo '```'
    } >"$out.tmp"
    mv "$out.tmp" "$out"
    scenario_table "$sc"
    echo
    note "wrote ${out#"$REPO"/}"
done

if [ "$any_failed" -ne 0 ]; then
    note "some runs FAILED (see the table)"
    exit 1
fi
