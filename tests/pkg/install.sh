#!/bin/sh
# install.sh MAKE BUILD: `make install` into a temporary PREFIX, then a program
# built with nothing but pkg-config's flags, once against the shared library
# (run through LD_LIBRARY_PATH) and once --static; then `make uninstall` must
# leave no file behind. The same again with DESTDIR (a staged install).
set -eu
MAKE=${1:-make}
BUILD=${2:-build}
CC=${CC:-cc}
here=$(cd "$(dirname "$0")" && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail() { echo "install.sh: FAIL: $*" >&2; exit 1; }
files() { (cd "$1" && find . ! -type d | sort); }
# the soname, as the Makefile sets it
so=libduplex.so.$(sed -n 's/^SOVERSION = //p' "$here/../../Makefile")

prefix=$tmp/prefix
$MAKE -s install BUILD="$BUILD" PREFIX="$prefix" >/dev/null
echo "installed:"; files "$prefix" | sed 's/^/  /'
for f in bin/duplex lib/libduplex.a include/duplex.h lib/pkgconfig/duplex.pc share/man/man1/duplex.1 \
         lib/libduplex.so lib/$so; do
    [ -e "$prefix/$f" ] || fail "$f not installed"
done
[ "$(readlink "$prefix/lib/$so")" = "$(readlink "$prefix/lib/libduplex.so")" ] ||
    fail "libduplex.so and $so name different files"

export PKG_CONFIG_PATH="$prefix/lib/pkgconfig"
pkg-config --exists duplex || fail "pkg-config does not find duplex"
echo "pkg-config --cflags --libs: $(pkg-config --cflags --libs duplex)"
echo "pkg-config --static --libs: $(pkg-config --static --libs duplex)"

# shared: the program needs the soname and finds it in PREFIX
$CC -o "$tmp/hello_shared" "$here/hello.c" $(pkg-config --cflags --libs duplex)
readelf -d "$tmp/hello_shared" | grep -q "NEEDED.*\\[$so\\]" || fail "shared: no NEEDED $so"
LD_LIBRARY_PATH="$prefix/lib" ldd "$tmp/hello_shared" | grep -qF "$so => $prefix/lib/" ||
    fail "shared: $so not resolved from PREFIX"
out=$(LD_LIBRARY_PATH="$prefix/lib" "$tmp/hello_shared") || fail "shared program failed: $out"
echo "shared: $out"

# static: every private library the archive needs comes from duplex.pc
$CC -static -o "$tmp/hello_static" "$here/hello.c" $(pkg-config --cflags --libs --static duplex) 2>"$tmp/ld.err" ||
    { cat "$tmp/ld.err" >&2; fail "static link failed"; }
readelf -d "$tmp/hello_static" 2>/dev/null | grep -q NEEDED && fail "static program needs shared libraries"
out=$(env -u LD_LIBRARY_PATH "$tmp/hello_static") || fail "static program failed: $out"
echo "static: $out"

$MAKE -s uninstall BUILD="$BUILD" PREFIX="$prefix" >/dev/null
left=$(files "$prefix")
[ -z "$left" ] || fail "uninstall left: $left"
echo "uninstall: no file left under PREFIX"

# staged: DESTDIR holds the tree, duplex.pc names the final PREFIX
stage=$tmp/stage
$MAKE -s install BUILD="$BUILD" PREFIX=/opt/dx DESTDIR="$stage" >/dev/null
grep -qx 'prefix=/opt/dx' "$stage/opt/dx/lib/pkgconfig/duplex.pc" || fail "DESTDIR: duplex.pc prefix"
[ "$(files "$stage/opt/dx")" = "$(cd "$stage" && find . ! -type d | sed 's|^\./opt/dx|.|' | sort)" ] ||
    fail "DESTDIR: files outside PREFIX"
$MAKE -s uninstall BUILD="$BUILD" PREFIX=/opt/dx DESTDIR="$stage" >/dev/null
left=$(files "$stage")
[ -z "$left" ] || fail "DESTDIR uninstall left: $left"
echo "DESTDIR install/uninstall: ok"
echo "install.sh: ok"
