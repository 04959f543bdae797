#!/usr/bin/env python3
"""exports.py SHLIB HEADER [ABI [MAN]]: the shared library exports exactly the
functions include/duplex.h declares: every symbol `nm -D --defined-only` lists
starts with dx_ and is declared there (so no dx__* helper of src/os.h leaks),
and every function declared there (static inline ones aside) is exported.
With ABI (tests/pkg/abi.txt: the soname, then every symbol it has promised):
while the soname is the one recorded, no recorded symbol may go (a removal
needs a new soname, README.md "ABI stability") and every new export is
recorded. With MAN (docs/libduplex.3): the manual page names every export."""
import re
import subprocess
import sys


def declared(header):
    text = open(header).read()
    text = re.sub(r"/\*.*?\*/", " ", text, flags=re.S)  # comments name functions too
    text = re.sub(r"//[^\n]*", " ", text)
    text = re.sub(r"^\s*#[^\n]*", " ", text, flags=re.M)  # macros
    inline = set(re.findall(r"static\s+inline\b[^;{]*?\b(dx_\w+)\s*\(", text))
    # a declarator name right before its parameter list: `(*dx_io_cb)(` (a
    # typedef of a function pointer) has ')' between, so it is not one
    names = set(re.findall(r"\b(dx_\w+)\s*\(", text))
    return names - inline


def exported(shlib):
    out = subprocess.run(["nm", "-D", "--defined-only", shlib], check=True,
                         capture_output=True, text=True).stdout
    return {line.split()[-1].split("@")[0] for line in out.splitlines() if line.strip()}


def soname(shlib):
    out = subprocess.run(["readelf", "-d", shlib], check=True, capture_output=True,
                         text=True).stdout
    m = re.search(r"\(SONAME\).*\[([^\]]+)\]", out)
    return m.group(1) if m else None


def check_abi(shlib, exp, abi):
    words = [w for line in open(abi) for w in [line.split("#")[0].strip()] if w]
    recorded, promised = words[0], set(words[1:])
    name, bad = soname(shlib), False
    if name != recorded:
        print(f"exports.py: FAIL: soname {name}, {abi} records {recorded}: a new soname "
              f"starts a new list (its first line, then the symbols exported)")
        return True
    for sym in sorted(promised - exp):
        print(f"exports.py: FAIL: {sym} is in {abi} but no longer exported: removing a "
              f"function changes the soname (Makefile SOVERSION)"); bad = True
    for sym in sorted(exp - promised):
        print(f"exports.py: FAIL: {sym} exported but not recorded in {abi}"); bad = True
    return bad


def main():
    shlib, header = sys.argv[1], sys.argv[2]
    decl, exp = declared(header), exported(shlib)
    bad = len(sys.argv) > 3 and check_abi(shlib, exp, sys.argv[3])
    for name in sorted(exp):
        if not name.startswith("dx_") or name.startswith("dx__"):
            print(f"exports.py: FAIL: {name} exported but not public API"); bad = True
        elif name not in decl:
            print(f"exports.py: FAIL: {name} exported but not declared in {header}"); bad = True
    for name in sorted(decl - exp):
        print(f"exports.py: FAIL: {name} declared in {header} but not exported"); bad = True
    if not decl:
        print(f"exports.py: FAIL: no function found in {header}"); bad = True
    if len(sys.argv) > 4:
        page = open(sys.argv[4]).read()
        for name in sorted(exp):
            if not re.search(r"\b" + re.escape(name) + r"\b", page):
                print(f"exports.py: FAIL: {name} exported but not in {sys.argv[4]}"); bad = True
    if bad:
        return 1
    print(f"exports.py: ok: {len(exp)} symbols exported, all dx_*, = the {len(decl)} functions of {header}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
