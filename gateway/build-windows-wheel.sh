#!/usr/bin/env bash
# Builds the Windows x86_64 wheels into target/wheels/: one per Python minor version given
# (default 3.11), cross-built here with mingw-w64. Each holds the extension module
# (wsgi_gateway/_core.cp3XY-win_amd64.pyd, also the ISAPI core) and the ISAPI loader
# (wsgi_gateway/isapi/wsgi_gateway_isapi.dll, no Python import, the same for every version).
# Per version, not abi3: the core starts Python with PyConfig, which is not in the limited API.
#
#   gateway/build-windows-wheel.sh [3.11 3.12 ...]
#
# Needs: rustup target x86_64-pc-windows-gnu, mingw-w64 (gcc, dlltool), maturin (MATURIN, else
# maturin on PATH, else $PYTHON -m maturin). No Windows Python: maturin uses its bundled
# sysconfig for the target.
set -euo pipefail

GATEWAY="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(dirname "$GATEWAY")"
TARGET=x86_64-pc-windows-gnu
LOADER=wsgi_gateway_isapi.dll
STAGED="$GATEWAY/python/wsgi_gateway/isapi/$LOADER"
OUT="$REPO/target/wheels"

if [ $# -eq 0 ]; then
    set -- 3.11
fi
interpreters=()
for version in "$@"; do
    case "$version" in
        3.1[0-9]) interpreters+=(-i "python$version") ;;
        *) echo "build-windows-wheel.sh: $version: expected a Python version 3.10 or later" >&2; exit 2 ;;
    esac
done

if [ -n "${MATURIN:-}" ]; then
    maturin=("$MATURIN")
elif command -v maturin >/dev/null 2>&1; then
    maturin=(maturin)
else
    maturin=("${PYTHON:-python3}" -m maturin)
fi

# The loader is not Python's: the same build goes into every wheel. Stripped here (maturin
# strips only the extension module); set in the environment, not in Cargo.toml, whose profile
# would name a package the sdist does not carry.
CARGO_PROFILE_RELEASE_STRIP=symbols cargo build --release --locked \
    -p wsgi-gateway-isapi-loader --target "$TARGET" --manifest-path "$REPO/Cargo.toml"
mkdir -p "$(dirname "$STAGED")"
cp "$REPO/target/$TARGET/release/$LOADER" "$STAGED"
# The staged copy exists only while maturin runs, so no other wheel (Linux, sdist) takes it.
trap 'rm -f "$STAGED"; rmdir "$(dirname "$STAGED")" 2>/dev/null || true' EXIT

mkdir -p "$OUT"
cd "$GATEWAY"
"${maturin[@]}" build --release --locked --target "$TARGET" "${interpreters[@]}" -o "$OUT"
for version in "$@"; do
    tag="cp${version/./}"
    ls -l "$OUT"/wsgi_gateway-*-"$tag"-"$tag"-win_amd64.whl
done
