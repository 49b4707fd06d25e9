#!/usr/bin/env bash
# The project's test command (README: `bash tests/run.sh`; CI runs it through .ci/run).
# Works on a fresh machine and is safe to re-run: every install step first checks
# whether its work is already done.
#
# Stages: system packages, Python venv, cargo build, cargo test, cargo fmt --check,
# cargo clippy -D warnings, a short fuzz run, pytest against the debug binary; then the
# Python package: the Linux wheel and the sdist built once (gateway/build-wheels.sh), the
# wheel pip-installed into a fresh venv (target/wheel-venv, no Rust involved), and pytest
# again against that venv's console script (conformance HTTP+CGI, workers, CGI, and
# tests/test_wheel.py, which also pip-installs the sdist). Then Python 3.13 beside it: CPython
# 3.13 built from Debian's source package (bench/tools/build-python.sh, cached), the binary and
# the ISAPI library built against it in target/py313, conformance + workers against that binary,
# the cp313 wheel in a fresh 3.13 venv and conformance + workers + test_wheel.py against its
# console script. All stages run even if an earlier
# one fails (so one run shows every problem); the exit status is non-zero if any failed. The
# output ends with both pytest summary lines.
#
# Env knobs: PYO3_PYTHON (interpreter to build against; default: python3 on PATH),
# PYTEST_ARGS (extra pytest arguments, both pytest stages), SUITE_TIMEOUT (seconds, cap per
# test stage), FUZZ_SECONDS (seconds per fuzz target, default 45; 0 skips the fuzz stage),
# WHEEL_TESTS (0 skips the wheel stages), PY313_TESTS (0 skips the Python 3.13 stages).
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"

# Pinned test tools; bump deliberately.
PY_PINS=(pytest==9.2.0 pytest-timeout==2.4.0 mercurial==7.2.4 dulwich==1.2.21
         maturin==1.16.0 ziglang==0.17.1 prometheus_client==0.26.0)
# Debian packages the suite needs, as "command:package". apache2-bin is httpd and its modules
# alone: no site config, no service started on port 80 (the `apache2` package would).
APT_NEEDS=(curl:curl timeout:coreutils lighttpd:lighttpd apache2:apache2-bin git:git
           gcc:gcc nm:binutils logrotate:logrotate useradd:passwd unshare:util-linux
           haproxy:haproxy openssl:openssl prometheus:prometheus
           x86_64-w64-mingw32-gcc:gcc-mingw-w64-x86-64-win32
           i686-w64-mingw32-gcc:gcc-mingw-w64-i686-win32)
# Windows targets for the ISAPI DLL's cross-build check (tests/test_isapi_windows.py).
WINDOWS_TARGETS=(x86_64-pc-windows-gnu i686-pc-windows-gnu)
SUITE_TIMEOUT="${SUITE_TIMEOUT:-900}"

section() { printf '\n========== %s ==========\n' "$*"; }
note() { printf 'tests/run.sh: %s\n' "$*"; }
die() { printf 'tests/run.sh: error: %s\n' "$*" >&2; exit 1; }

FAILED=()
# Run one stage; record its failure instead of aborting so later stages still report.
stage() {
    local name=$1
    shift
    section "$name"
    local rc=0 start=$SECONDS
    "$@" || rc=$?
    if [ "$rc" -ne 0 ]; then
        note "stage '$name' FAILED (exit $rc) after $((SECONDS - start)) s"
        FAILED+=("$name")
    else
        note "stage '$name' took $((SECONDS - start)) s"
    fi
    return 0
}

# ---------------------------------------------------------------- system packages
section "system packages"
missing_pkgs=()
for need in "${APT_NEEDS[@]}"; do
    tool=${need%%:*}
    pkg=${need#*:}
    if ! command -v "$tool" >/dev/null 2>&1; then
        missing_pkgs+=("$pkg")
    fi
done
if [ ${#missing_pkgs[@]} -eq 0 ]; then
    note "all present: ${APT_NEEDS[*]%%:*}"
elif [ "$(id -u)" -ne 0 ]; then
    # A developer without root installs these by hand; tests needing them will fail loudly.
    note "WARNING: not root, skipping apt; please install: ${missing_pkgs[*]}"
else
    note "installing: ${missing_pkgs[*]}"
    # The package lists on a fresh machine may be stale or empty: update once, only now.
    DEBIAN_FRONTEND=noninteractive apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        "${missing_pkgs[@]}"
fi

# ------------------------------------------------------ Windows targets + mingw headers
section "windows cross-build targets"
# The mingw compilers check the ISAPI struct layouts against the real httpext.h (a Rust unit
# test); the Rust targets let the DLL be cross-built. Once both are here, a test that needs
# them fails rather than skips.
if command -v x86_64-w64-mingw32-gcc >/dev/null 2>&1 && command -v i686-w64-mingw32-gcc >/dev/null 2>&1; then
    export WSGI_GATEWAY_REQUIRE_MINGW=1
fi
if command -v rustup >/dev/null 2>&1 && rustup target add "${WINDOWS_TARGETS[@]}" >/dev/null 2>&1; then
    note "rust targets present: ${WINDOWS_TARGETS[*]}"
    [ -n "${WSGI_GATEWAY_REQUIRE_MINGW:-}" ] && export WSGI_GATEWAY_REQUIRE_WINDOWS_TARGETS=1
else
    note "WARNING: cannot add the rust targets ${WINDOWS_TARGETS[*]}; the DLL cross-build test will skip"
fi

# ---------------------------------------------------------------- python + venv
section "python venv"
if [ -z "${PYO3_PYTHON:-}" ]; then
    py_on_path=$(command -v python3) || die "python3 not found on PATH"
    # Resolve a pyenv shim to the real interpreter so the build and the venv cannot
    # drift apart if the shim's choice changes later.
    PYO3_PYTHON=$("$py_on_path" -c 'import sys; print(sys.executable)')
fi
export PYO3_PYTHON
note "PYO3_PYTHON=$PYO3_PYTHON ($("$PYO3_PYTHON" --version 2>&1))"

VENV="$REPO/.venv"
# The venv must sit on the interpreter the binary embeds; otherwise rebuild it.
py_ident='import sys; print(sys.base_prefix, sys.version_info[:3])'
want_ident=$("$PYO3_PYTHON" -c "$py_ident")
if [ -x "$VENV/bin/python" ] && [ "$("$VENV/bin/python" -c "$py_ident" 2>/dev/null || true)" = "$want_ident" ]; then
    note "reusing $VENV"
else
    note "creating $VENV"
    rm -rf "$VENV"
    "$PYO3_PYTHON" -m venv "$VENV"
fi
VPY="$VENV/bin/python"

need_pins=()
for spec in "${PY_PINS[@]}"; do
    have=$("$VPY" - "${spec%%==*}" <<'EOF'
import sys
from importlib import metadata
try:
    print(metadata.version(sys.argv[1]))
except metadata.PackageNotFoundError:
    print("")
EOF
)
    [ "$have" = "${spec##*==}" ] || need_pins+=("$spec")
done
if [ ${#need_pins[@]} -eq 0 ]; then
    note "already installed: ${PY_PINS[*]}"
else
    note "pip install ${need_pins[*]}"
    "$VPY" -m pip install -q --disable-pip-version-check "${need_pins[@]}"
fi

# ---------------------------------------------------------------- rust
stage "cargo build (debug, all targets)" cargo build --workspace --all-targets
build_failed=0
[ ${#FAILED[@]} -eq 0 ] || build_failed=1

stage "cargo test" timeout -k 30 "$SUITE_TIMEOUT" cargo test --workspace
stage "cargo fmt --check" cargo fmt --all -- --check
stage "cargo clippy -D warnings" cargo clippy --workspace --all-targets -- -D warnings

# Every cargo-fuzz target from its seeds for a short while (fuzz/run-short.sh: six targets,
# about 5 minutes at the default); the long runs stay a manual job (fuzz/README.md).
if [ "${FUZZ_SECONDS:-45}" = 0 ]; then
    note "FUZZ_SECONDS=0: fuzz stage skipped"
else
    stage "fuzz (short)" timeout -k 30 1800 bash fuzz/run-short.sh "${FUZZ_SECONDS:-45}"
fi

# ---------------------------------------------------------------- pytest
PYTEST_LOGS=()
# pytest with its output also kept in target/<log>, whose last line the run ends with.
pytest_logged() {
    local log=$1
    shift
    mkdir -p "$REPO/target"
    PYTEST_LOGS+=("$log")
    local rc=0
    # shellcheck disable=SC2086  # PYTEST_ARGS is meant to be word-split
    timeout -k 30 "$SUITE_TIMEOUT" "$VPY" -m pytest "$@" -q -p no:cacheprovider ${PYTEST_ARGS:-} \
        | tee "$REPO/target/$log" || rc=$?
    if [ "$rc" -eq 124 ]; then
        note "pytest exceeded SUITE_TIMEOUT=${SUITE_TIMEOUT}s"
    fi
    return "$rc"
}

run_pytest() {
    local bin="$REPO/target/debug/wsgi-gateway"
    if [ "$build_failed" -ne 0 ] || [ ! -x "$bin" ]; then
        note "no usable $bin (build failed), not running pytest"
        return 1
    fi
    local rc=0
    # test_wheel.py runs in the console-script stage below.
    WSGI_GATEWAY_BIN="$bin" pytest_logged pytest-binary.log tests --ignore=tests/test_wheel.py \
        || rc=$?
    if [ "$rc" -eq 5 ]; then
        note "pytest collected no tests: that is a failure here"
    fi
    return "$rc"
}

if [ ${#FAILED[@]} -ne 0 ]; then
    # Failing run: list what failed before pytest's output scrolls it away.
    note "failed so far: ${FAILED[*]}"
fi
stage "pytest (binary)" run_pytest

# ---------------------------------------------------------------- the Python package
# Built once, with the release profile (what ships); the venv is made afresh every run from
# $PYO3_PYTHON and gets the wheel from the local file only (no index, binary only: pip
# cannot fall back to building anything).
WHEEL_DIR="$REPO/target/wheels"
WHEEL_VENV="$REPO/target/wheel-venv"
WHEEL=""
SDIST=""
build_wheels() {
    PYTHON="$VPY" timeout -k 30 1800 bash gateway/build-wheels.sh --no-windows -o "$WHEEL_DIR" \
        || return
    local tag
    tag=$("$PYO3_PYTHON" -c 'import sys; print("cp%d%d" % sys.version_info[:2])')
    local wheels=("$WHEEL_DIR"/wsgi_gateway-*-"$tag"-"$tag"-manylinux*_x86_64.whl)
    local sdists=("$WHEEL_DIR"/wsgi_gateway-*.tar.gz)
    if [ ! -f "${wheels[0]}" ] || [ ${#wheels[@]} -ne 1 ]; then
        note "not one $tag wheel in $WHEEL_DIR: ${wheels[*]}"
        return 1
    fi
    if [ ! -f "${sdists[0]}" ] || [ ${#sdists[@]} -ne 1 ]; then
        note "not one sdist in $WHEEL_DIR: ${sdists[*]}"
        return 1
    fi
    WHEEL=${wheels[0]}
    SDIST=${sdists[0]}
}

# fresh_venv_with_wheel PYTHON VENV WHEEL: a new venv of PYTHON with only the wheel in it.
fresh_venv_with_wheel() {
    local python=$1 venv=$2 wheel=$3
    # (stage() runs this in an `||` list, where set -e does not apply: hence the &&s)
    rm -rf "$venv" &&
        "$python" -m venv "$venv" &&
        "$venv/bin/python" -m pip install -q --disable-pip-version-check --no-index \
            --only-binary=:all: --no-deps "$wheel" &&
        note "installed $(basename "$wheel") into $venv" &&
        "$venv/bin/wsgi-gateway" --version
}

install_wheel() {
    [ -n "$WHEEL" ] || { note "no wheel was built"; return 1; }
    fresh_venv_with_wheel "$PYO3_PYTHON" "$WHEEL_VENV" "$WHEEL"
}

run_pytest_console_script() {
    local script="$WHEEL_VENV/bin/wsgi-gateway"
    if [ -z "$WHEEL" ] || [ ! -x "$script" ]; then
        note "no $script (the wheel stages failed), not running pytest"
        return 1
    fi
    local rc=0
    WSGI_GATEWAY_BIN="$script" WSGI_GATEWAY_WHEEL_VENV="$WHEEL_VENV" WSGI_GATEWAY_WHEEL="$WHEEL" \
        WSGI_GATEWAY_SDIST="$SDIST" pytest_logged pytest-console-script.log \
        tests/test_conformance.py tests/test_workers.py tests/test_cgi.py tests/test_wheel.py \
        tests/test_watchdog.py tests/test_reload.py tests/test_systemd.py tests/test_privileges.py \
        tests/test_metrics.py tests/test_logrotate.py \
        || rc=$?
    if [ "$rc" -eq 5 ] && [ -n "${PYTEST_ARGS:-}" ]; then
        note "PYTEST_ARGS selected none of the console-script tests"
        return 0
    elif [ "$rc" -eq 5 ]; then
        note "pytest collected no tests: that is a failure here"
    fi
    return "$rc"
}

if [ "${WHEEL_TESTS:-1}" = 0 ]; then
    note "WHEEL_TESTS=0: wheel stages skipped"
else
    stage "wheel + sdist (gateway/build-wheels.sh)" build_wheels
    stage "wheel into a fresh venv (pip)" install_wheel
    stage "pytest (console script of the wheel)" run_pytest_console_script
fi

# ---------------------------------------------------------------- Python 3.13
# The same binary, ISAPI library and wheel built against CPython 3.13 (built here from Debian's
# source package by bench/tools/build-python.sh, cached in ~/.cache/wsgi-gateway/python), in
# their own target dir so the 3.11 builds above stay valid. pytest itself still runs from the
# 3.11 venv: the server under test embeds 3.13 and the apps it loads are stdlib-only.
PY313=""
PY313_TARGET="$REPO/target/py313"
PY313_WHEEL=""
PY313_VENV="$PY313_TARGET/wheel-venv"
build_python313() {
    local py
    py=$(bash bench/tools/build-python.sh 3.13) || return
    PY313=$py
    note "3.13 interpreter: $PY313 ($("$PY313" --version 2>&1))"
}

build_binary313() {
    [ -n "$PY313" ] || { note "no 3.13 interpreter was built"; return 1; }
    PYO3_PYTHON="$PY313" CARGO_TARGET_DIR="$PY313_TARGET" cargo build -p wsgi-gateway
}

run_pytest313_binary() {
    local bin="$PY313_TARGET/debug/wsgi-gateway"
    [ -x "$bin" ] || { note "no $bin (the 3.13 build failed), not running pytest"; return 1; }
    # Built against 3.13 for real (not a stale 3.11 build): it links that libpython. The
    # headers are read whole first: `objdump | grep -q` under pipefail fails at random when
    # grep exits at its match and objdump's next write gets SIGPIPE.
    local headers
    headers=$(objdump -p "$bin") || { note "objdump -p $bin failed"; return 1; }
    if ! grep -q 'NEEDED *libpython3\.13\.so' <<<"$headers"; then
        note "$bin does not link libpython3.13"
        return 1
    fi
    # The ISAPI cases load the library beside WSGI_GATEWAY_BIN: the 3.13 one. (test_runtime.py
    # compares the served Python with pytest's own 3.11: not for this stage.)
    WSGI_GATEWAY_BIN="$bin" pytest_logged pytest-py313-binary.log \
        tests/test_conformance.py tests/test_workers.py
}

build_wheel313() {
    [ -n "$PY313" ] || { note "no 3.13 interpreter was built"; return 1; }
    local out="$PY313_TARGET/wheels"
    PYTHON="$VPY" CARGO_TARGET_DIR="$PY313_TARGET" timeout -k 30 1800 \
        bash gateway/build-wheels.sh --linux-only -i "$PY313" -o "$out" || return
    local wheels=("$out"/wsgi_gateway-*-cp313-cp313-manylinux*_x86_64.whl)
    if [ ! -f "${wheels[0]}" ] || [ ${#wheels[@]} -ne 1 ]; then
        note "not one cp313 wheel in $out: ${wheels[*]}"
        return 1
    fi
    PY313_WHEEL=${wheels[0]}
    fresh_venv_with_wheel "$PY313" "$PY313_VENV" "$PY313_WHEEL"
}

run_pytest313_console_script() {
    local script="$PY313_VENV/bin/wsgi-gateway"
    if [ -z "$PY313_WHEEL" ] || [ ! -x "$script" ]; then
        note "no $script (the 3.13 wheel stage failed), not running pytest"
        return 1
    fi
    # The sdist is the same file for every Python and the 3.11 stage builds and installs it;
    # building it again here would rebuild pyo3 in the shared target/sdist-build twice a run.
    WSGI_GATEWAY_BIN="$script" WSGI_GATEWAY_WHEEL_VENV="$PY313_VENV" \
        WSGI_GATEWAY_WHEEL="$PY313_WHEEL" WSGI_GATEWAY_SDIST="${SDIST:-}" \
        pytest_logged pytest-py313-console-script.log \
        tests/test_conformance.py tests/test_workers.py tests/test_wheel.py \
        --deselect tests/test_wheel.py::test_sdist_builds_installs_and_serves
}

if [ "${PY313_TESTS:-1}" = 0 ]; then
    note "PY313_TESTS=0: Python 3.13 stages skipped"
else
    stage "python 3.13 (bench/tools/build-python.sh)" build_python313
    stage "cargo build (3.13, target/py313)" build_binary313
    stage "pytest (binary, 3.13)" run_pytest313_binary
    if [ "${WHEEL_TESTS:-1}" != 0 ]; then
        stage "wheel 3.13 + fresh venv" build_wheel313
        stage "pytest (console script of the wheel, 3.13)" run_pytest313_console_script
    fi
fi

section "pytest summaries"
for log in "${PYTEST_LOGS[@]}"; do
    printf '%-36s %s\n' "$log:" "$(tail -n 1 "$REPO/target/$log" 2>/dev/null)"
done

if [ ${#FAILED[@]} -ne 0 ]; then
    section "FAILED"
    printf '  - %s\n' "${FAILED[@]}"
    exit 1
fi
