#!/bin/sh
# `make test-packaging`: the Python package as a user gets it.
#   wheel: the abi3 wheel from `make wheel` installed into a fresh venv whose PATH
#          has no cargo (nothing may compile), then tests/packaging/smoke.py; the
#          bundled library carries no debug sections.
#   sdist: `python -m build --sdist`, the tarball installed into another fresh venv
#          by pip (which unpacks it outside this checkout, so it builds from the
#          tarball alone), then the same smoke test. $SDIST_TARGET is the cargo
#          target dir for that build, kept between runs so only the crate recompiles.
# Usage: check.sh WHEEL_DIR SDIST_DIR SDIST_TARGET
set -eu
wheels=$(cd "$1" && pwd)
dists=$(cd "$2" && pwd)
sdist_target=$3
root=$(pwd)
work=$root/target/packaging
rm -rf "$work" && mkdir -p "$work"
fail() { echo "test-packaging: $*" >&2; exit 1; }

# A PATH with no cargo on it (the directories holding one left out).
nocargo=$(printf '%s\n' "$PATH" | tr ':' '\n' | while read -r d; do
    [ -n "$d" ] && [ ! -x "$d/cargo" ] && printf '%s:' "$d"; done)
nocargo=${nocargo%:}

smoke() {  # VENV: runs the smoke test from outside the checkout, checks the library
    lib=$(cd "$work" && env -u CARGO PATH="$1/bin:$nocargo" "$1/bin/python" "$root/tests/packaging/smoke.py")
    [ -f "$lib" ] || fail "no bundled library at '$lib'"
    if readelf -S --wide "$lib" | grep -q ' \.debug_'; then fail "$lib carries debug sections"; fi
    echo "test-packaging: bundled $(basename "$lib"): $(wc -c < "$lib") bytes, no debug sections"
}

# The wheel, without Rust.
set -- "$wheels"/libqueue-*-cp39-abi3-*.whl
[ $# -eq 1 ] && [ -f "$1" ] || fail "expected one cp39-abi3 wheel in $wheels, found: $*"
wheel=$1
echo "test-packaging: $(basename "$wheel"): $(wc -c < "$wheel") bytes"
python3 -m venv "$work/wheel-venv"
env -u CARGO PATH="$work/wheel-venv/bin:$nocargo" sh -c '
    if command -v cargo >/dev/null; then echo "cargo is still on PATH" >&2; exit 1; fi
    pip install -q "$0"' "$wheel"
smoke "$work/wheel-venv"

# The sdist, from the tarball alone.
set -- "$dists"/libqueue-*.tar.gz
[ $# -eq 1 ] && [ -f "$1" ] || fail "expected one sdist in $dists, found: $*"
sdist=$1
tar tzf "$sdist" | grep -q '^libqueue-[^/]*/_crate/Cargo.toml$' || fail "$sdist carries no _crate/Cargo.toml"
echo "test-packaging: $(basename "$sdist"): $(wc -c < "$sdist") bytes"
python3 -m venv "$work/sdist-venv"
rm -f "$sdist_target"/release/deps/liblibqueue*  # the crate's outputs from an earlier unpacked path
(cd "$work" && CARGO_TARGET_DIR=$sdist_target "$work/sdist-venv/bin/pip" install -q "$sdist")
smoke "$work/sdist-venv"
echo "test-packaging: wheel and sdist install and work"
