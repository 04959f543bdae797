"""End-to-end tests of duplex.exe (the Windows program) under wine, against
real Linux peers (ncat, socat, nc.openbsd, Python sockets, the Linux
build/duplex): wine's sockets are the host's, so both sides meet on
127.0.0.1.

Run with:  make e2e-windows   (or test-windows: the unit tests under wine too)
or:        DUPLEX_EXE=$PWD/build/duplex.exe DUPLEX=$PWD/build/duplex \\
           /usr/bin/python3 -m pytest -q tests/windows/e2e

- DUPLEX_EXE: the program under test (default build/duplex.exe). A PE file
  runs through the wine loader (WINE64, default /usr/lib/wine/wine64); any
  other executable runs as it is: DUPLEX_EXE=$PWD/build/duplex checks the
  tests themselves against the Linux program (the tests of Windows-only
  behaviour are skipped then).
- DUPLEX: the Linux duplex used as a peer (default build/duplex).
- Missing wine, duplex.exe or the Linux duplex fail every test, so CI cannot
  pass without running anything; with DUPLEX_WINDOWS_OPTIONAL=1 they skip.

Wine: one throw-away prefix per session (build/wine-e2e-PID, made fresh,
removed at the end; DUPLEX_KEEP_WINEPREFIX=1 keeps it), WINEDEBUG=-all, and one
persistent wineserver started first and stopped last (`wineserver -k`,
then by PID), so each duplex.exe start costs ~0.1 s instead of seconds.
Every duplex.exe runs in a process group of its own, killed as a group at
teardown: the processes a Windows program creates (--exec children, cmd.exe)
are double-forked by wine away from their parent but keep its group.

The rules of tests/e2e hold: every process killed by PID, every wait
bounded, only 127.0.0.1 and ports found free.
"""

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.normpath(os.path.join(HERE, "..", "..", ".."))
sys.path.insert(0, os.path.join(ROOT, "tests", "pylib"))
from dxtest import release_closed_ports  # noqa: E402
from dxtest import (  # noqa: E402,F401  (re-exported for the test modules)
    LISTENING_RE, Backlog, Proc, Server, Spawner, alive, closed_port, free_port, need, recv_all, sha,
    wait_listening)

# A duplex.exe run is slower to start than a native one (wine's loader):
# deadlines are a little longer than tests/e2e's.
TIMEOUT = 30

WINE64 = os.environ.get("WINE64", "/usr/lib/wine/wine64")
# the server next to the loader (package wine64); /usr/bin/wineserver is an
# alternative of the optional `wine` package
WINESERVER = os.environ.get("WINESERVER", os.path.join(os.path.dirname(WINE64), "wineserver64"))
# one prefix per pytest process: two runs at once (two worktrees, or a
# second run started by hand) never share or remove each other's
PREFIX = os.path.join(ROOT, "build", f"wine-e2e-{os.getpid()}")
# the first start of a fresh prefix takes ~10-30 s
PREFIX_TIMEOUT = 180


def _optional():
    return bool(os.environ.get("DUPLEX_WINDOWS_OPTIONAL"))


def _missing(why):
    """A piece the suite needs is missing: fail, unless the caller made the
    Windows tests optional (DUPLEX_WINDOWS_OPTIONAL), then skip."""
    if _optional():
        pytest.skip(f"{why} (DUPLEX_WINDOWS_OPTIONAL is set: skipped)")
    pytest.fail(f"{why}; install with `make deps`, build with `make windows` "
                f"(set DUPLEX_WINDOWS_OPTIONAL=1 to skip instead)", pytrace=False)


def is_pe(path):
    with open(path, "rb") as f:
        return f.read(2) == b"MZ"


# wine's own processes: the prefix's services, shared by every program run in
# it. A Windows program that finds them gone (re)starts them in its own
# process group; killing that group at a test's end must spare them, or the
# next program restarts them again, racing wineboot (a PATH without
# system32: "Can't recognize 'cmd.exe ...'"; no Nsi device for the socket
# tables).
WINE_SERVICES = {"wineboot.exe", "services.exe", "winedevice.exe", "explorer.exe", "plugplay.exe",
                 "svchost.exe", "rpcss.exe", "rundll32.exe", "wineserver", "wineserver64"}


def wine_name(pid):
    """The program name of process pid, lower case ("services.exe" for
    C:\\windows\\system32\\services.exe), or None if it is gone."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            argv0 = f.read().split(b"\0")[0].decode("utf-8", "replace")
    except OSError:
        return None
    return re.split(r"[\\/]", argv0)[-1].lower()


def wine_service(pid, names=WINE_SERVICES):
    """True if pid is one of names (WINE_SERVICES)."""
    return wine_name(pid) in names


def wine_services():
    """{(pid, name)} of the prefix's live WINE_SERVICES."""
    return {(p, wine_name(p)) for p in prefix_pids(PREFIX) if alive(p) and wine_service(p)}


def prefix_pids(prefix):
    """The PIDs of the processes run with WINEPREFIX=prefix (this session's
    prefix is unique: they are ours)."""
    want = f"WINEPREFIX={prefix}".encode()
    pids = []
    for name in os.listdir("/proc"):
        if not name.isdigit() or int(name) == os.getpid():
            continue
        try:
            with open(f"/proc/{name}/environ", "rb") as f:
                if want in f.read().split(b"\0"):
                    pids.append(int(name))
        except OSError:
            continue
    return pids


class Wine:
    """The session's wine: a fresh prefix and a persistent wineserver;
    env: the environment a Windows program runs with."""

    def __init__(self):
        self.server = None
        self.env = dict(os.environ)
        self.env.update({
            "WINEPREFIX": PREFIX,
            "WINEDEBUG": "-all",
            # no Mono/Gecko installer, no desktop menu entries, no window
            "WINEDLLOVERRIDES": "mscoree=d;mshtml=d;winemenubuilder.exe=d",
            "WINESERVER": WINESERVER,
        })
        self.env.pop("DISPLAY", None)
        self.env.pop("WAYLAND_DISPLAY", None)

    def server_ready(self):
        """The wineserver made its socket: it works in its server directory
        (where that is differs: Debian's wine uses /tmp/wine-XXXXXX/server-DEV-INODE)."""
        try:
            return os.path.exists(f"/proc/{self.server.pid}/cwd/socket")
        except OSError:
            return False

    def start(self):
        # the prefixes of runs that were killed (their pytest is gone)
        base = os.path.dirname(PREFIX)
        for name in os.listdir(base) if os.path.isdir(base) else []:
            pid = name[len("wine-e2e-"):]
            if name.startswith("wine-e2e-") and pid.isdigit() and not os.path.exists(f"/proc/{pid}"):
                shutil.rmtree(os.path.join(base, name), ignore_errors=True)
        shutil.rmtree(PREFIX, ignore_errors=True)
        os.makedirs(PREFIX)
        # -f: stays our child (stopped by PID if -k fails); -p: persistent
        server_log = os.path.join(PREFIX, "wineserver.log")
        with open(server_log, "wb") as log:
            self.server = subprocess.Popen([WINESERVER, "-f", "-p"], env=self.env, stdin=subprocess.DEVNULL,
                                           stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + 30
        while not self.server_ready():
            if self.server.poll() is not None:
                with open(server_log, "rb") as f:
                    err = f.read().decode("utf-8", "replace")
                pytest.fail(f"wineserver exited (rc={self.server.returncode}): {err}", pytrace=False)
            if time.monotonic() > deadline:
                pytest.fail("wineserver made no socket within 30 s", pytrace=False)
            time.sleep(0.05)
        # make the prefix now, with a bounded wait, rather than in the first
        # test. Its output goes to a file, not a pipe: the services it starts
        # (services.exe, winedevice.exe...) inherit it and live on with the
        # persistent server, so a pipe would never reach its end.
        log = os.path.join(PREFIX, "wineboot.log")
        with open(log, "wb") as f:
            boot = subprocess.Popen([WINE64, "wineboot.exe", "--init"], env=self.env,
                                    stdin=subprocess.DEVNULL, stdout=f, stderr=subprocess.STDOUT,
                                    start_new_session=True)
        try:
            rc = boot.wait(timeout=PREFIX_TIMEOUT)
        except subprocess.TimeoutExpired:
            os.killpg(boot.pid, signal.SIGKILL)
            boot.wait(10)
            pytest.fail(f"wineboot --init did not finish within {PREFIX_TIMEOUT} s", pytrace=False)
        if rc != 0:
            with open(log, "rb") as f:
                out = f.read()
            pytest.fail(f"wineboot --init failed (rc={rc}): {out[-2000:]!r}", pytrace=False)
        self.settle(time.monotonic() + PREFIX_TIMEOUT)

    def booting(self):
        """PIDs of the prefix's live wineboot.exe processes."""
        return [p for p in prefix_pids(PREFIX) if alive(p) and wine_service(p, {"wineboot.exe"})]

    def settle(self, deadline):
        """Wait until the prefix is ready for a test: no wineboot.exe runs
        and a program sees system32 on its PATH. wineboot --init can return
        while its services still restart; a program started then races them
        (seen: cmd.exe not found on its PATH)."""
        while True:
            if not self.booting():
                probe = subprocess.run([WINE64, "cmd.exe", "/c", "echo %PATH%"], env=self.env,
                                       stdin=subprocess.DEVNULL, capture_output=True,
                                       timeout=max(1, deadline - time.monotonic()))
                if b"system32" in probe.stdout.lower() and not self.booting():
                    return
            if time.monotonic() > deadline:
                pytest.fail(f"the wine prefix did not settle within {PREFIX_TIMEOUT} s", pytrace=False)
            time.sleep(0.1)

    def stop(self):
        if self.server is None:
            return
        # -k: the server kills every process of the prefix (services.exe,
        # winedevice.exe, what a test may have left) and exits
        try:
            subprocess.run([WINESERVER, "-k"], env=self.env, timeout=30,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        except subprocess.TimeoutExpired:
            pass
        try:
            self.server.wait(15)
        except subprocess.TimeoutExpired:
            pass
        try:
            os.killpg(self.server.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        # what -k missed (a server that died first leaves the prefix's
        # services running: they are sessions of their own, outside any group
        # of ours): every process of this prefix, by PID
        for pid in prefix_pids(PREFIX):
            try:
                os.kill(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        try:
            self.server.wait(10)
        except subprocess.TimeoutExpired:
            pass
        if not os.environ.get("DUPLEX_KEEP_WINEPREFIX"):
            shutil.rmtree(PREFIX, ignore_errors=True)


class Target:
    """How to run the program under test: argv(args) and its environment."""

    def __init__(self, exe, wine):
        self.exe = exe
        self.wine = wine  # None: a native program (the suite checking itself)

    @property
    def windows(self):
        return self.wine is not None

    def argv(self, args):
        args = [str(a) for a in args]
        return [WINE64, self.exe, *args] if self.wine else [self.exe, *args]

    def env(self, extra=None):
        e = dict(self.wine.env) if self.wine else dict(os.environ)
        if extra:
            e.update(extra)
        return e


@pytest.fixture(scope="session")
def target():
    exe = os.path.abspath(os.environ.get("DUPLEX_EXE") or os.path.join(ROOT, "build", "duplex.exe"))
    if not os.path.isfile(exe):
        _missing(f"{exe} does not exist")
    if not is_pe(exe):
        yield Target(exe, None)
        return
    for what in (WINE64, WINESERVER):
        if not os.access(what, os.X_OK):
            _missing(f"{what} is not installed (Debian package wine64)")
    wine = Wine()
    try:
        wine.start()
        t = Target(exe, wine)
        # the program starts at all (a clear failure rather than 80 puzzling ones)
        p = subprocess.run(t.argv(["--version"]), env=t.env(), stdin=subprocess.DEVNULL,
                           capture_output=True, timeout=60, start_new_session=True)
        if p.returncode != 0:
            pytest.fail(f"duplex.exe --version under wine: rc={p.returncode} "
                        f"stdout={p.stdout!r} stderr={p.stderr!r}", pytrace=False)
        yield t
    finally:
        wine.stop()


@pytest.fixture
def windows_only(target):
    """Tests of what only the Windows program does (refusals naming Windows)."""
    if not target.windows:
        pytest.skip("Windows-only behaviour (DUPLEX_EXE is not a Windows program)")


@pytest.fixture(scope="session")
def linux_duplex():
    """The Linux duplex used as a peer."""
    path = os.path.abspath(os.environ.get("DUPLEX") or os.path.join(ROOT, "build", "duplex"))
    if not (os.path.isfile(path) and os.access(path, os.X_OK)):
        _missing(f"the Linux duplex ({path}) is not built (make)")
    return path


# ---------------------------------------------------------------- processes --


@pytest.fixture
def spawn():
    """spawn(args, stdin=DEVNULL, ...) -> Proc (dxtest.Spawner): each process
    in a process group of its own, killed as a group and reaped at teardown;
    its waits default to this suite's TIMEOUT."""
    services = wine_services()
    s = Spawner(group=True, timeout=TIMEOUT, spare=wine_service)
    yield s
    s.cleanup()
    s.report()
    now = wine_services()
    if now != services:  # a program (re)started them: shown if the test failed
        print(f"--- wine services changed during the test: {sorted(services)} -> {sorted(now)}")


@pytest.fixture
def start_exe(target, spawn):
    """start_exe(args, env=None, **spawn_kw) -> Proc running `duplex.exe ARGS`
    under wine."""

    def _start(args, env=None, **kw):
        kw.setdefault("name", "duplex.exe " + " ".join(map(str, args)))
        return spawn(target.argv(args), env=target.env(env), **kw)

    return _start


@pytest.fixture
def run_exe(start_exe):
    """run_exe(args, stdin=DEVNULL, timeout=TIMEOUT) -> (rc, stdout bytes,
    stderr text) of duplex.exe run to completion."""

    def _run(args, stdin=subprocess.DEVNULL, timeout=TIMEOUT, env=None):
        p = start_exe(args, stdin=stdin, env=env)
        rc = p.wait(timeout)
        return rc, p.out, p.err

    return _run


def listening_port(proc, timeout=TIMEOUT):
    """The port of the 'duplex: listening on ADDR:PORT' line (bounded wait)."""
    m = proc.wait_err(LISTENING_RE, timeout)
    port = int(m.group(2))
    assert 0 < port < 65536, m.group(0)
    return port


@pytest.fixture
def exe_listener(start_exe):
    """exe_listener(args=(), addr='127.0.0.1', **spawn_kw) runs
    `duplex.exe listen ARGS ADDR 0` and returns (proc, port)."""

    def _start(args=(), addr="127.0.0.1", timeout=TIMEOUT, cmd="listen", **kw):
        p = start_exe([cmd, *args, addr, "0"], **kw)
        return p, listening_port(p, timeout)

    return _start


@pytest.fixture
def start_linux(linux_duplex, spawn):
    """start_linux(args, **spawn_kw) -> Proc running the Linux `duplex ARGS`."""

    def _start(args, **kw):
        kw.setdefault("name", "duplex(linux) " + " ".join(map(str, args)))
        return spawn([linux_duplex, *map(str, args)], **kw)

    return _start


# ------------------------------------------------------------- data, peers --


def seeded_bytes(size, seed):
    """`size` pseudo-random bytes from `seed` (the same on every run: a
    failure can be replayed)."""
    import random
    return random.Random(seed).randbytes(size)


def connect(port, timeout=TIMEOUT, host="127.0.0.1"):
    """A connected blocking TCP socket to host:port with a timeout; retried
    for a moment while the port is not accepting yet."""
    deadline = time.monotonic() + timeout
    while True:
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.settimeout(timeout)
        try:
            s.connect((host, port))
            return s
        except ConnectionRefusedError:
            s.close()
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def recv_exact(sock, n, timeout=TIMEOUT):
    """Exactly n bytes from sock (fails the test on EOF or deadline)."""
    deadline = time.monotonic() + timeout
    buf = bytearray()
    while len(buf) < n:
        left = deadline - time.monotonic()
        if left <= 0:
            pytest.fail(f"timed out after {len(buf)} of {n} bytes")
        sock.settimeout(left)
        b = sock.recv(n - len(buf))
        if not b:
            pytest.fail(f"EOF after {len(buf)} of {n} bytes")
        buf += b
    return bytes(buf)


def wait_for(cond, timeout, what):
    """Wait until cond() is true (polled), failing with `what` on deadline."""
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.02)


@pytest.fixture
def sockets():
    """sockets(sock) registers a socket to close at teardown; returns it."""
    held = []

    def _hold(s):
        held.append(s)
        return s

    yield _hold
    for s in held:
        try:
            s.close()
        except OSError:
            pass


@pytest.fixture
def server():
    """server(script, **kw) -> dxtest.Server on 127.0.0.1 (closed at teardown)."""
    servers = []

    def _make(script=None, **kw):
        s = Server(script, **kw)
        servers.append(s)
        return s

    yield _make
    for s in servers:
        s.close()


@pytest.fixture(autouse=True)
def _release_closed_ports():
    """Frees the ports closed_port() held for the test that just ended."""
    yield
    release_closed_ports()
