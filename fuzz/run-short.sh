#!/usr/bin/env bash
# A short run of every fuzz target: each for SECONDS (default 45) from its seeds, into a
# throw-away corpus (fuzz/corpus/ is left alone). Prints libFuzzer's final stats per target
# and exits non-zero if any target crashed, leaked, timed out or did not build; the crash
# input's path is in the output ("Test unit written to ...").
#
# Needs rustup. Installs, when missing and saying so: the nightly toolchain (minimal
# profile; cargo-fuzz's sanitizer flags need it) and cargo-fuzz. When they cannot be had,
# the run is skipped with a warning (FUZZ_REQUIRED=1: an error instead).
#
# Usage: fuzz/run-short.sh [SECONDS]   (or FUZZ_SECONDS=... in the environment; bash owns the
# name SECONDS itself)
set -euo pipefail

SECONDS_EACH="${1:-${FUZZ_SECONDS:-45}}"
TARGETS=(head chunked cgi_meta isapi_ecb head_differential connection head_incremental proxy_protocol)
FUZZ_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$FUZZ_DIR"

say() { printf 'fuzz/run-short.sh: %s\n' "$*"; }

# Without the tools (a machine that cannot fetch them) the run is skipped with a warning,
# unless FUZZ_REQUIRED=1 makes that an error; a crash is always an error.
unavailable() {
    if [ "${FUZZ_REQUIRED:-0}" = 1 ]; then
        say "error: $*"
        exit 2
    fi
    say "WARNING: $*; fuzz run skipped"
    exit 0
}
command -v rustup >/dev/null 2>&1 || unavailable "rustup not found"
if ! rustup run nightly rustc --version >/dev/null 2>&1; then
    say "installing the nightly toolchain (rustup toolchain install nightly --profile minimal)"
    rustup toolchain install nightly --profile minimal || unavailable "cannot install nightly"
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
    say "installing cargo-fuzz (cargo install cargo-fuzz --locked)"
    cargo install cargo-fuzz --locked || unavailable "cannot install cargo-fuzz"
fi

WORK="$(mktemp -d "${TMPDIR:-/tmp}/wsgi-gateway-fuzz.XXXXXX")"
say "corpora and crash artifacts under $WORK"

# Build all first: a build error is reported as such, not as a crash of the first target.
for t in "${TARGETS[@]}"; do
    if ! cargo +nightly fuzz build "$t"; then
        say "FAILED: target $t does not build"
        exit 1
    fi
done

failed=()
for t in "${TARGETS[@]}"; do
    mkdir -p "$WORK/corpus/$t" "$WORK/artifacts/$t"
    log="$WORK/$t.log"
    say "$t: ${SECONDS_EACH}s"
    rc=0
    # -timeout: one input running 20 s is a hang; -max_len: the seeds' size, not larger, so
    # executions stay fast.
    cargo +nightly fuzz run "$t" "$WORK/corpus/$t" "seeds/$t" -- \
        -max_total_time="$SECONDS_EACH" -print_final_stats=1 -timeout=20 -max_len=4096 \
        -artifact_prefix="$WORK/artifacts/$t/" >"$log" 2>&1 || rc=$?
    grep -E '^(Done [0-9]+ runs|stat::number_of_executed_units|stat::average_exec_per_sec|stat::new_units_added|stat::peak_rss_mb)' "$log" || true
    if [ "$rc" -ne 0 ]; then
        say "FAILED: $t (exit $rc); its log: $log"
        # The panic message and the artifact path, which is what one needs to reproduce.
        grep -E 'panicked at|ERROR: |SUMMARY: |Test unit written to|^Base64: ' "$log" | head -20 || true
        failed+=("$t")
    fi
done

if [ ${#failed[@]} -ne 0 ]; then
    say "crashed: ${failed[*]} (artifacts in $WORK/artifacts/; reproduce with"
    say "  cargo +nightly fuzz run TARGET ARTIFACT)"
    exit 1
fi
say "all ${#TARGETS[@]} targets ran ${SECONDS_EACH}s each without a crash"
rm -rf "$WORK"
