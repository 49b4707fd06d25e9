#!/usr/bin/env bash
# Builds the Python distributions of wsgi-gateway into target/wheels/ and lists them:
#
#   linux    manylinux_2_28 x86_64 wheel, one per interpreter (maturin --zig; passes maturin's
#            own manylinux audit: no libpython, no glibc symbol newer than 2.28)
#   sdist    the source distribution (`pip install` builds it where Rust is installed)
#   windows  the Windows wheels, by gateway/build-windows-wheel.sh when it is present
#
#   gateway/build-wheels.sh                   all three
#   gateway/build-wheels.sh --no-windows      Linux wheel + sdist (what tests/run.sh builds)
#   gateway/build-wheels.sh --linux-only | --sdist-only | --windows-only | --only linux,sdist
#
# Options:
#   -i, --interpreter PY   build the Linux wheel for PY (repeatable; default: $PYTHON)
#   --find-interpreter     build the Linux wheel for every CPython maturin finds on PATH
#   --windows-python VER   a Windows wheel for VER (repeatable; default: 3.10 3.11 3.12 3.13)
#   --profile NAME         cargo profile of the Linux wheel (default: release)
#   -o, --out DIR          output directory (default: <repo>/target/wheels)
#
# Tools: maturin and ziglang are taken from $PYTHON's environment (default: python3 on PATH)
# when both are installed there at any version; otherwise a venv with the pinned versions below
# is made in target/wheel-tools (once). Free-threaded interpreters (3.14t) are refused by
# gateway/build.rs. There is no abi3 wheel: the embedder start-up (PyConfig, PyPreConfig)
# is not in the limited API, and the Windows .pyd is that embedder too (IIS).
set -euo pipefail
shopt -s inherit_errexit  # a failure inside $(…) stops the script too

MATURIN_PIN=maturin==1.16.0
ZIGLANG_PIN=ziglang==0.17.1
COMPAT=manylinux_2_28

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/.." && pwd)"
OUT="$REPO/target/wheels"
PROFILE=release
INTERPRETERS=()
FIND_INTERPRETER=0
WINDOWS_VERSIONS=()
PARTS="linux,sdist,windows"
EXPLICIT_PARTS=0

note() { printf 'build-wheels: %s\n' "$*" >&2; }
die() { printf 'build-wheels: error: %s\n' "$*" >&2; exit 2; }
usage() { sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'; }

while [ $# -gt 0 ]; do
    case $1 in
        --linux-only) PARTS=linux; EXPLICIT_PARTS=1 ;;
        --sdist-only) PARTS=sdist; EXPLICIT_PARTS=1 ;;
        --windows-only) PARTS=windows; EXPLICIT_PARTS=1 ;;
        --no-windows) PARTS=linux,sdist; EXPLICIT_PARTS=1 ;;
        --only) [ $# -ge 2 ] || die "--only needs a list"; PARTS=$2; EXPLICIT_PARTS=1; shift ;;
        -i|--interpreter) [ $# -ge 2 ] || die "$1 needs a path"; INTERPRETERS+=("$2"); shift ;;
        --find-interpreter) FIND_INTERPRETER=1 ;;
        --windows-python)
            [ $# -ge 2 ] || die "$1 needs a version"; WINDOWS_VERSIONS+=("$2"); shift ;;
        --profile) [ $# -ge 2 ] || die "--profile needs a name"; PROFILE=$2; shift ;;
        -o|--out) [ $# -ge 2 ] || die "$1 needs a directory"; OUT=$2; shift ;;
        -h|--help) usage; exit 0 ;;
        *) die "unknown argument '$1' (see --help)" ;;
    esac
    shift
done
for part in ${PARTS//,/ }; do
    case $part in
        linux|sdist|windows) ;;
        *) die "unknown part '$part' (linux, sdist, windows)" ;;
    esac
done
want() { case ",$PARTS," in *",$1,"*) return 0 ;; *) return 1 ;; esac; }
mkdir -p "$OUT"
OUT="$(cd "$OUT" && pwd)"

# ---------------------------------------------------------------- tools
has_tools() {
    [ -x "$1" ] && "$1" -c 'import importlib.util as u, sys
sys.exit(not (u.find_spec("maturin") and u.find_spec("ziglang")))' 2>/dev/null
}
tools_python() {
    local py=${PYTHON:-}
    if [ -z "$py" ]; then
        py=$(command -v python3) || die "python3 not found; set PYTHON"
    fi
    # A pyenv shim or a symlink: the interpreter it runs, so PATH games cannot change it.
    py=$("$py" -c 'import sys; print(sys.executable)') || die "cannot run $py"
    if has_tools "$py"; then
        printf '%s\n' "$py"
        return
    fi
    local venv="$REPO/target/wheel-tools"
    if ! has_tools "$venv/bin/python"; then
        note "no maturin/ziglang beside $py: making $venv ($MATURIN_PIN $ZIGLANG_PIN)"
        rm -rf "$venv"
        "$py" -m venv "$venv" >&2
        "$venv/bin/python" -m pip install -q --disable-pip-version-check \
            "$MATURIN_PIN" "$ZIGLANG_PIN" >&2
    fi
    printf '%s\n' "$venv/bin/python"
}

TOOLS_PY=$(tools_python)
MATURIN=("$TOOLS_PY" -m maturin)
note "maturin $("${MATURIN[@]}" --version | awk '{print $2}') from $TOOLS_PY"
# maturin --zig runs `python3 -m ziglang` unless told which python has it.
export CARGO_ZIGBUILD_PYTHON_PATH="$TOOLS_PY"

BUILT=()
# Removes what an earlier run left for this part, so the listing is only this run's.
clear_old() {
    local f
    for f in "$OUT"/$1 ${2:+"$2"/$1}; do [ -e "$f" ] && rm -f "$f"; done
    return 0
}

# ---------------------------------------------------------------- Linux wheel(s)
if want linux; then
    iargs=()
    if [ "$FIND_INTERPRETER" = 1 ]; then
        iargs=(--find-interpreter)
    elif [ ${#INTERPRETERS[@]} -gt 0 ]; then
        iargs=(-i "${INTERPRETERS[@]}")
    else
        default_py=${PYTHON:-$(command -v python3)}
        iargs=(-i "$("$default_py" -c 'import sys; print(sys.executable)')")
    fi
    clear_old "wsgi_gateway-*-linux_*.whl"
    clear_old "wsgi_gateway-*-manylinux*.whl"
    note "Linux wheel: $COMPAT, profile $PROFILE, ${iargs[*]}"
    start=$SECONDS
    (cd "$HERE" && "${MATURIN[@]}" build --profile "$PROFILE" --zig --compatibility "$COMPAT" \
        "${iargs[@]}" --out "$OUT")
    note "Linux wheel built in $((SECONDS - start)) s"
    for f in "$OUT"/wsgi_gateway-*-manylinux*.whl; do [ -e "$f" ] && BUILT+=("$f"); done
fi

# ---------------------------------------------------------------- sdist
if want sdist; then
    clear_old "wsgi_gateway-*.tar.gz"
    (cd "$HERE" && "${MATURIN[@]}" sdist --out "$OUT")
    for f in "$OUT"/wsgi_gateway-*.tar.gz; do [ -e "$f" ] && BUILT+=("$f"); done
fi

# ---------------------------------------------------------------- Windows wheel(s)
if want windows; then
    if [ -x "$HERE/build-windows-wheel.sh" ] || [ -f "$HERE/build-windows-wheel.sh" ]; then
        # build-windows-wheel.sh writes into target/wheels/, copied to $OUT below
        clear_old "wsgi_gateway-*-win*.whl" "$REPO/target/wheels"
        [ ${#WINDOWS_VERSIONS[@]} -gt 0 ] || WINDOWS_VERSIONS=(3.10 3.11 3.12 3.13)
        note "Windows wheels: gateway/build-windows-wheel.sh ${WINDOWS_VERSIONS[*]}"
        # the same maturin (it takes $MATURIN first, then maturin on PATH, then $PYTHON's)
        if [ -x "$(dirname "$TOOLS_PY")/maturin" ]; then
            export MATURIN="$(dirname "$TOOLS_PY")/maturin"
        fi
        PYTHON="$TOOLS_PY" bash "$HERE/build-windows-wheel.sh" "${WINDOWS_VERSIONS[@]}"
        for f in "$REPO"/target/wheels/wsgi_gateway-*-win*.whl; do
            [ -e "$f" ] || continue
            [ "$(dirname "$f")" = "$OUT" ] || cp -f "$f" "$OUT/"
            BUILT+=("$OUT/$(basename "$f")")
        done
    elif [ "$EXPLICIT_PARTS" = 1 ]; then
        die "gateway/build-windows-wheel.sh is not here: no Windows wheels"
    else
        note "Windows wheels skipped: gateway/build-windows-wheel.sh is not here"
    fi
fi

[ ${#BUILT[@]} -gt 0 ] || die "nothing was built"
note "built into $OUT:"
for f in "${BUILT[@]}"; do
    printf '%s\t%s bytes (%s)\n' "$f" "$(stat -c %s "$f")" "$(du -h "$f" | cut -f1)"
done
