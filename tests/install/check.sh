#!/bin/sh
# `make test-install`: checks what `make install PREFIX=$1` put there, as a user of
# the installed files would: the shared library's SONAME and links, no debug
# sections in the shipped .so and .a, then a C and a C++ program built with
# pkg-config against the shared library (they record NEEDED libqueue.so.0), and a C
# program linked statically (`pkg-config --static`, -l:libqueue.a) that runs with
# no libqueue.so anywhere on the loader's path.
set -eu
prefix=$1
version=$2
major=${version%%.*}
lib=$prefix/lib
out=$prefix/test
mkdir -p "$out"
fail() { echo "test-install: $*" >&2; exit 1; }

# The files and links.
[ -f "$lib/libqueue.so.$version" ] && [ ! -L "$lib/libqueue.so.$version" ] || fail "no $lib/libqueue.so.$version"
[ "$(readlink "$lib/libqueue.so.$major")" = "libqueue.so.$version" ] || fail "libqueue.so.$major is not a link to libqueue.so.$version"
[ "$(readlink "$lib/libqueue.so")" = "libqueue.so.$version" ] || fail "libqueue.so is not a link to libqueue.so.$version"
[ -f "$lib/libqueue.a" ] || fail "no $lib/libqueue.a"
soname=$(readelf -d "$lib/libqueue.so.$version" | sed -n 's/.*(SONAME).*\[\(.*\)\]/\1/p')
[ "$soname" = "libqueue.so.$major" ] || fail "SONAME is '$soname', not libqueue.so.$major"

# Shipped stripped: no .debug_* section in the shared library nor in any member of
# the archive.
for f in "$lib/libqueue.so.$version" "$lib/libqueue.a"; do
    if readelf -S --wide "$f" | grep -q ' \.z\{0,1\}debug_'; then
        fail "$f carries debug sections: $(readelf -S --wide "$f" | grep -o '\.z\{0,1\}debug_[a-z_]*' | sort -u | tr '\n' ' ')"
    fi
done
echo "test-install: libqueue.so.$version (SONAME libqueue.so.$major, $(wc -c < "$lib/libqueue.so.$version") bytes), libqueue.a ($(wc -c < "$lib/libqueue.a") bytes), no debug sections"

export PKG_CONFIG_PATH="$lib/pkgconfig"
needed() { readelf -d "$1" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p'; }

# Shared: C and C++ through pkg-config; the programs ask the loader for libqueue.so.0.
cc -std=c99 -Wall -Werror tests/c/version.c -DEXPECTED_VERSION="\"$version\"" -o "$out/app" $(pkg-config --cflags --libs libqueue)
needed "$out/app" | grep -qx "libqueue.so.$major" || fail "app's NEEDED is $(needed "$out/app" | tr '\n' ' '), not libqueue.so.$major"
needed "$out/app" | grep -qx "libqueue.so" && fail "app records NEEDED libqueue.so (the development link)"
LD_LIBRARY_PATH=$lib "$out/app"
c++ -std=c++17 -Wall -Werror tests/cpp/tu_a.cpp tests/cpp/tu_b.cpp -o "$out/app_cpp" $(pkg-config --cflags --libs libqueue)
LD_LIBRARY_PATH=$lib "$out/app_cpp"

# Static, as docs/c-api.md shows it: --static adds Libs.private, -l:libqueue.a
# names the archive in place of -lqueue (which would pick the shared library).
cc -std=c99 -Wall -Werror tests/c/version.c -DEXPECTED_VERSION="\"$version\"" -o "$out/app_static" \
    $(pkg-config --static --cflags --libs libqueue | sed 's/-lqueue\b/-l:libqueue.a/')
if needed "$out/app_static" | grep -q libqueue; then fail "app_static needs $(needed "$out/app_static" | grep libqueue)"; fi
env -u LD_LIBRARY_PATH "$out/app_static"
# and the C API's tests, linked the same way: the whole ABI from the archive.
cc -std=c99 -Wall -Werror tests/c/test_api.c -o "$out/test_api_static" \
    $(pkg-config --static --cflags --libs libqueue | sed 's/-lqueue\b/-l:libqueue.a/')
env -u LD_LIBRARY_PATH "$out/test_api_static" > "$out/test_api_static.log" || { tail -20 "$out/test_api_static.log"; fail "test_api linked statically failed"; }
echo "test-install: shared (NEEDED libqueue.so.$major), C++ and static (version, test_api) programs built with pkg-config and run"
