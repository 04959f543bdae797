"""The Windows program is one file to copy: a PE32+ console program that
imports only DLLs every Windows has (no libwinpthread, libgcc or OpenSSL
DLL to ship beside it)."""
import re
import shutil
import subprocess

import pytest

# what Windows itself provides (compared case-insensitively)
SYSTEM_DLLS = {"kernel32.dll", "ws2_32.dll", "msvcrt.dll", "iphlpapi.dll", "advapi32.dll",
               "user32.dll", "ntdll.dll"}
OBJDUMP = "x86_64-w64-mingw32-objdump"


def test_exe_imports_only_system_dlls(windows_only, target):
    if not shutil.which(OBJDUMP):
        pytest.fail(f"{OBJDUMP} is missing (Debian package binutils-mingw-w64-x86-64)")
    out = subprocess.run([OBJDUMP, "-p", target.exe], capture_output=True, text=True,
                         timeout=60, check=True).stdout
    assert "pei-x86-64" in out, out[:400]
    assert re.search(r"^Subsystem\s+00000003", out, re.M), "not a console program"
    dlls = {m.lower() for m in re.findall(r"DLL Name: (\S+)", out)}
    assert dlls, "no imports found: objdump's output changed?"
    assert dlls <= SYSTEM_DLLS, f"DLLs to ship beside duplex.exe: {sorted(dlls - SYSTEM_DLLS)}"
