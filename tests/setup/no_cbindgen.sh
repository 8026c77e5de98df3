#!/bin/sh
# `make test-no-cbindgen`: the header check needs no cbindgen binary (issue 13,
# item 19: `make test` on a fresh machine has none). Runs `make test-header` with a
# PATH from which every directory holding a `cbindgen` is removed; cargo and rustc
# stay reachable through links in a temporary directory.
set -eu
fail() { echo "test-no-cbindgen: $*" >&2; exit 1; }
bin=$(mktemp -d)
trap 'rm -rf "$bin"' EXIT
for t in cargo rustc; do
    p=$(command -v "$t") || fail "no $t on PATH"
    ln -s "$p" "$bin/$t"
done
path=$bin$(printf '%s\n' "$PATH" | tr ':' '\n' | while read -r d; do
    [ -n "$d" ] && [ ! -e "$d/cbindgen" ] && printf ':%s' "$d"; done)
if PATH=$path command -v cbindgen >/dev/null; then fail "cbindgen still on PATH"; fi
PATH=$path ${MAKE:-make} --no-print-directory test-header
echo "test-no-cbindgen: the header check passed with no cbindgen on PATH"
