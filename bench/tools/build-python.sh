#!/usr/bin/env bash
# Builds CPython from Debian's source package into a cache directory and prints the
# interpreter's path on stdout (everything else goes to stderr). A fresh CI machine has only
# Python 3.11 and no interpreter download site is reachable, but Debian's source packages are:
# this takes the upstream tarball of Debian 13 ("trixie")'s python3.X source package.
#
#   bench/tools/build-python.sh 3.13         -> ~/.cache/wsgi-gateway/python/3.13.<patch>/bin/python3.13
#
# Steps (each names itself when it fails): a deb-src line for trixie on the mirror already in
# the machine's apt sources (a file under /etc/apt/sources.list.d/, only if missing), the build
# packages (apt, only the missing ones), `apt-get source --download-only`, configure
# (--enable-shared, an rpath to its own lib/), make, make install, an import check of the
# modules venv/pip/ssl/sqlite need. A finished build (its stamp file, written last) is reused
# without touching apt or the network. apt steps need root (as in tests/run.sh).
#
# Env: WSGI_GATEWAY_PYTHON_CACHE (default ~/.cache/wsgi-gateway/python), JOBS (make -j, 2).
set -euo pipefail
shopt -s inherit_errexit

note() { printf 'build-python: %s\n' "$*" >&2; }
die() { printf 'build-python: error: %s\n' "$*" >&2; exit 1; }
LOG=/dev/null # set below: the compiler's output goes there, its tail to stderr on failure
# Run one named step; on failure say which step it was.
step() {
    local name=$1 rc=0
    shift
    note "step: $name"
    "$@" >>"$LOG" 2>&1 || rc=$?
    if [ "$rc" -ne 0 ]; then
        local where=""
        if [ "$LOG" != /dev/null ]; then
            tail -n 40 "$LOG" >&2
            where=", full output in $LOG"
        fi
        die "step '$name' failed (exit $rc$where)"
    fi
}

[ $# -eq 1 ] || die "usage: $0 3.13"
MINOR=$1
[[ "$MINOR" =~ ^3\.[0-9]+$ ]] || die "want a version like 3.13, got '$MINOR'"
CACHE="${WSGI_GATEWAY_PYTHON_CACHE:-$HOME/.cache/wsgi-gateway/python}"
JOBS="${JOBS:-2}"
STAMP=.wsgi-gateway-build-complete

# ---------------------------------------------------------------- a finished build
for stamp in "$CACHE/$MINOR".*/"$STAMP"; do
    [ -f "$stamp" ] || continue
    py="$(dirname "$stamp")/bin/python$MINOR"
    if [ -x "$py" ] && "$py" -c 'import ssl, sqlite3, zlib, ctypes, venv' 2>/dev/null; then
        note "reusing $(dirname "$stamp")"
        printf '%s\n' "$py"
        exit 0
    fi
    note "ignoring the broken build in $(dirname "$stamp")"
done

mkdir -p "$CACHE" || die "step 'cache directory': cannot create $CACHE"
LOG="$CACHE/build-$MINOR.log"
: >"$LOG"
note "build output: $LOG"

# ---------------------------------------------------------------- apt: source line, packages
SUITE=trixie
SRC_LIST=/etc/apt/sources.list.d/wsgi-gateway-$SUITE-src.sources
as_root() {
    [ "$(id -u)" -eq 0 ] || die "step '$1' needs root (apt); run as root or build by hand"
}
# The mirror the machine already uses for its Debian packages (deb822 or one-line format).
mirror() {
    local uri
    uri=$(grep -hs '^URIs:' /etc/apt/sources.list.d/*.sources | awk '{print $2}' \
        | grep -m1 '/debian/\?$' || true)
    [ -n "$uri" ] || uri=$(grep -hs '^deb ' /etc/apt/sources.list /etc/apt/sources.list.d/*.list \
        | awk '{for (i = 2; i <= NF; i++) if ($i !~ /^\[/) {print $i; exit}}' \
        | grep -m1 '/debian/\?$' || true)
    [ -n "$uri" ] || return 1
    printf '%s\n' "$uri"
}
if [ ! -f "$SRC_LIST" ]; then
    as_root "deb-src line"
    uri=$(mirror) || die "step 'deb-src line': no Debian mirror found in /etc/apt/sources.list*"
    note "step: deb-src line ($uri $SUITE) -> $SRC_LIST"
    printf 'Types: deb-src\nURIs: %s\nSuites: %s\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' \
        "$uri" "$SUITE" >"$SRC_LIST" || die "step 'deb-src line': cannot write $SRC_LIST"
fi

# What CPython needs for venv + pip (zlib, ssl), sqlite3, ctypes (ffi), bz2, lzma, and the build.
BUILD_PKGS=(dpkg-dev gcc make pkg-config xz-utils libssl-dev zlib1g-dev libffi-dev
    libsqlite3-dev libbz2-dev liblzma-dev)
missing=()
for pkg in "${BUILD_PKGS[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" \
        || missing+=("$pkg")
done
# A build is rare (once per machine): fresh lists then, so the source index is there.
if [ "$(id -u)" -eq 0 ]; then
    step "apt-get update" env DEBIAN_FRONTEND=noninteractive apt-get update -qq
elif [ ${#missing[@]} -ne 0 ]; then
    as_root "build packages (${missing[*]})"
fi
if [ ${#missing[@]} -ne 0 ]; then
    step "build packages (${missing[*]})" env DEBIAN_FRONTEND=noninteractive \
        apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# ---------------------------------------------------------------- source
SRC_DIR="$CACHE/src-$MINOR"
rm -rf "$SRC_DIR"
mkdir -p "$SRC_DIR"
# apt drops privileges to _apt for downloads; let it write here.
chmod 0777 "$SRC_DIR"
(cd "$SRC_DIR" && step "apt-get source python$MINOR" apt-get source --download-only -qq "python$MINOR")
origs=("$SRC_DIR"/python"$MINOR"_*.orig.tar.xz)
[ -f "${origs[0]}" ] && [ ${#origs[@]} -eq 1 ] \
    || die "step 'apt-get source python$MINOR': not one upstream tarball in $SRC_DIR"
# python3.13_3.13.5.orig.tar.xz -> 3.13.5
VERSION=$(basename "${origs[0]}")
VERSION=${VERSION#python"$MINOR"_}
VERSION=${VERSION%%.orig.tar.*}
[[ "$VERSION" =~ ^$MINOR\.[0-9]+$ ]] || die "step 'apt-get source': unexpected version '$VERSION'"
step "unpack $(basename "${origs[0]}")" tar -xf "${origs[0]}" -C "$SRC_DIR"
TREE=$(find "$SRC_DIR" -mindepth 1 -maxdepth 1 -type d -name 'Python-*' | head -n 1)
[ -n "$TREE" ] && [ -x "$TREE/configure" ] || die "step 'unpack': no Python-*/configure in $SRC_DIR"

# ---------------------------------------------------------------- build
PREFIX="$CACHE/$VERSION"
rm -rf "$PREFIX"
note "building CPython $VERSION into $PREFIX (make -j$JOBS)"
(
    cd "$TREE"
    # --enable-shared: PyO3 embeds libpython; the rpath lets it (and the interpreter) find this
    # libpython without LD_LIBRARY_PATH.
    step configure ./configure -q --prefix="$PREFIX" --enable-shared \
        LDFLAGS="-Wl,-rpath,$PREFIX/lib"
    step make make -s -j"$JOBS"
    step "make install" make -s install
)
PY="$PREFIX/bin/python$MINOR"
step "import check (ssl sqlite3 zlib ctypes bz2 lzma venv)" \
    "$PY" -c 'import ssl, sqlite3, zlib, ctypes, bz2, lzma, venv, ensurepip; print(ssl.OPENSSL_VERSION)'
rm -rf "$SRC_DIR"
# Written last: its presence means a finished, checked build.
date -u +%FT%TZ >"$PREFIX/$STAMP"
note "done: $PY"
printf '%s\n' "$PY"
