"""Helpers for the server-mode tests (test_server_modes.py,
test_server_limits.py): client sockets with deadlines, a single-threaded
selectors pump for many clients at once, and /proc readers for the server's
CPU time, memory and children.

Standard library only. Every wait has a deadline; every process is started
through the conftest `spawn` fixture or the `spawn_rlimit` fixture below and
is killed and reaped by PID at teardown."""

import errno
import os
import resource
import selectors
import socket
import subprocess
import time

import pytest

from conftest import LISTENING_RE, TIMEOUT, Proc

# ------------------------------------------------------------------ sockets --


def connect(port, host="127.0.0.1", source=None, timeout=TIMEOUT, rcvbuf=None):
    """A connected blocking TCP socket (with `timeout`) to host:port, its
    source address bound to `source` (port 0) when given."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    s = socket.socket(family, socket.SOCK_STREAM)
    try:
        if rcvbuf:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        if source:
            s.bind((source, 0))
        s.settimeout(timeout)
        s.connect((host, port))
    except BaseException:
        s.close()
        raise
    return s


def name_of(sock):
    """The server's name for this client socket: ADDR:PORT or [V6]:PORT."""
    addr = sock.getsockname()
    host, port = addr[0], addr[1]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def recv_exact(sock, n, timeout=TIMEOUT):
    """Exactly n bytes (fails the test on EOF or deadline)."""
    deadline = time.monotonic() + timeout
    buf = bytearray()
    while len(buf) < n:
        left = deadline - time.monotonic()
        if left <= 0:
            pytest.fail(f"timed out: got {len(buf)} of {n} bytes: {bytes(buf[:200])!r}")
        sock.settimeout(left)
        try:
            b = sock.recv(n - len(buf))
        except socket.timeout:
            continue
        if not b:
            pytest.fail(f"EOF after {len(buf)} of {n} bytes: {bytes(buf[:200])!r}")
        buf += b
    return bytes(buf)


def recv_until(sock, predicate, timeout=TIMEOUT):
    """Read until predicate(bytes so far) is true; returns the bytes."""
    deadline = time.monotonic() + timeout
    buf = bytearray()
    while not predicate(bytes(buf)):
        left = deadline - time.monotonic()
        if left <= 0:
            pytest.fail(f"timed out waiting for data; got {bytes(buf[:300])!r}")
        sock.settimeout(left)
        try:
            b = sock.recv(65536)
        except socket.timeout:
            continue
        if not b:
            pytest.fail(f"EOF while waiting for data; got {bytes(buf[:300])!r}")
        buf += b
    return bytes(buf)


def recv_line(sock, timeout=TIMEOUT):
    return recv_until(sock, lambda b: b.endswith(b"\n"), timeout)


def read_to_eof(sock, timeout=TIMEOUT, allow_reset=False):
    """Everything up to EOF (fails on deadline). With allow_reset a reset
    counts as the end too. Returns (bytes, 'eof' | 'reset')."""
    deadline = time.monotonic() + timeout
    buf = bytearray()
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            pytest.fail(f"no EOF within {timeout}s; got {len(buf)} bytes: {bytes(buf[:200])!r}")
        sock.settimeout(left)
        try:
            b = sock.recv(1 << 20)
        except socket.timeout:
            continue
        except ConnectionResetError:
            if allow_reset:
                return bytes(buf), "reset"
            raise
        if not b:
            return bytes(buf), "eof"
        buf += b


def closed_within(sock, timeout):
    """True if the peer closes (EOF or reset) within `timeout` seconds;
    data received meanwhile is discarded."""
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return False
        sock.settimeout(left)
        try:
            if not sock.recv(65536):
                return True
        except socket.timeout:
            return False
        except (ConnectionResetError, ConnectionAbortedError, BrokenPipeError):
            return True


def echo_roundtrip(sock, payload=b"ping\n", timeout=TIMEOUT):
    sock.sendall(payload)
    return recv_exact(sock, len(payload), timeout)


# ------------------------------------------------- many clients, one thread --


class Pump:
    """Drive many non-blocking sockets from one thread with selectors:
    each socket has bytes to send (then optionally shut its write side),
    and collects what it receives until EOF, a reset, or `done(i, data)`."""

    def __init__(self, socks):
        self.socks = list(socks)
        self.sel = selectors.DefaultSelector()
        self.out = [memoryview(b"") for _ in self.socks]
        self.shut_after = [False] * len(self.socks)
        self.received = [bytearray() for _ in self.socks]
        self.eof = [None] * len(self.socks)  # None, 'eof' or 'reset'
        for i, s in enumerate(self.socks):
            s.setblocking(False)
            self.sel.register(s, selectors.EVENT_READ, i)

    def send(self, i, data, shut=False):
        self.out[i] = memoryview(bytes(self.out[i]) + bytes(data))
        self.shut_after[i] = shut
        self._update(i)

    def _update(self, i):
        s = self.socks[i]
        ev = 0
        if self.eof[i] is None:
            ev |= selectors.EVENT_READ
        if len(self.out[i]) or self.shut_after[i]:
            ev |= selectors.EVENT_WRITE
        try:
            key = self.sel.get_key(s)
        except KeyError:
            key = None
        if ev == 0:
            if key is not None:
                self.sel.unregister(s)
        elif key is None:
            self.sel.register(s, ev, i)
        elif key.events != ev:
            self.sel.modify(s, ev, i)

    def run(self, done=None, timeout=TIMEOUT, tick=None):
        """Pump until done(i, received) holds for every socket (default:
        all have nothing left to send and have read EOF). `tick()` is called
        between rounds (sampling); fails the test on deadline."""
        if done is None:
            def done(i, _data):
                return self.eof[i] is not None and not len(self.out[i]) and not self.shut_after[i]
        pending = {i for i in range(len(self.socks)) if not done(i, self.received[i])}
        deadline = time.monotonic() + timeout
        while pending:
            left = deadline - time.monotonic()
            if left <= 0:
                sample = sorted(pending)[:5]
                pytest.fail(
                    f"{len(pending)} of {len(self.socks)} clients unfinished after {timeout}s; e.g. "
                    + "; ".join(f"#{i}: received {len(self.received[i])} bytes, "
                                f"{len(self.out[i])} to send, end={self.eof[i]}" for i in sample))
            for key, ev in self.sel.select(min(left, 0.2)):
                i = key.data
                if ev & selectors.EVENT_WRITE:
                    self._write(i)
                if ev & selectors.EVENT_READ and self.eof[i] is None:
                    self._read(i)
                if i in pending and done(i, self.received[i]):
                    pending.discard(i)
            if tick:
                tick()
            pending = {i for i in pending if not done(i, self.received[i])}
        return self.received

    def _write(self, i):
        s = self.socks[i]
        while len(self.out[i]):
            try:
                n = s.send(self.out[i][:262144])
            except (BlockingIOError, InterruptedError):
                break
            except (BrokenPipeError, ConnectionResetError) as e:
                pytest.fail(f"client #{i}: send failed: {e}")
            self.out[i] = self.out[i][n:]
        if not len(self.out[i]) and self.shut_after[i]:
            s.shutdown(socket.SHUT_WR)
            self.shut_after[i] = False
        self._update(i)

    def _read(self, i):
        s = self.socks[i]
        for _ in range(16):
            try:
                b = s.recv(262144)
            except (BlockingIOError, InterruptedError):
                return
            except ConnectionResetError:
                self.eof[i] = "reset"
                self._update(i)
                return
            if not b:
                self.eof[i] = "eof"
                self._update(i)
                return
            self.received[i] += b

    def close(self):
        try:
            self.sel.close()
        except Exception:
            pass
        for s in self.socks:
            try:
                s.close()
            except OSError:
                pass


def open_many(port, n, host="127.0.0.1", timeout=TIMEOUT):
    """n non-blocking connected sockets (connects started in batches so the
    accept queue never overflows)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    socks = []
    deadline = time.monotonic() + timeout
    try:
        batch = 100
        for start in range(0, n, batch):
            part = []
            for _ in range(min(batch, n - start)):
                s = socket.socket(family, socket.SOCK_STREAM)
                socks.append(s)
                s.setblocking(False)
                rc = s.connect_ex((host, port))
                if rc not in (0, errno.EINPROGRESS, errno.EAGAIN):
                    pytest.fail(f"connect #{len(socks)}: {os.strerror(rc)}")
                part.append(s)
            sel = selectors.DefaultSelector()
            for s in part:
                sel.register(s, selectors.EVENT_WRITE)
            left_socks = set(part)
            while left_socks:
                left = deadline - time.monotonic()
                if left <= 0:
                    pytest.fail(f"{len(left_socks)} connects unfinished")
                for key, _ in sel.select(min(left, 0.5)):
                    s = key.fileobj
                    err = s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                    if err:
                        pytest.fail(f"connect failed: {os.strerror(err)}")
                    sel.unregister(s)
                    left_socks.discard(s)
            sel.close()
    except BaseException:
        for s in socks:
            s.close()
        raise
    return socks


# --------------------------------------------------------------------- /proc --


def _stat_fields(pid):
    """Fields of /proc/PID/stat after the command name: [state, ppid, ...]."""
    with open(f"/proc/{pid}/stat") as f:
        text = f.read()
    return text[text.rindex(")") + 2:].split()


def cpu_seconds(pid):
    """utime + stime of a process, in seconds."""
    fields = _stat_fields(pid)
    # fields[0] is field 3 (state); utime and stime are fields 14 and 15
    ticks = int(fields[11]) + int(fields[12])
    return ticks / os.sysconf("SC_CLK_TCK")


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def children(pid):
    """[(child pid, state letter)] of a process, from /proc/*/stat."""
    out = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            fields = _stat_fields(name)
        except (OSError, ValueError):
            continue
        if int(fields[1]) == pid:
            out.append((int(name), fields[0]))
    return out


def open_fds(pid):
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return -1


# --------------------------------------------------------------- processes --


@pytest.fixture
def spawn_rlimit(duplex):
    """spawn_rlimit(args, nofile=64, **popen_kw) -> (Proc, port): runs
    `duplex listen ARGS 127.0.0.1 0` with RLIMIT_NOFILE lowered in the child,
    waits for its listening line. Killed and reaped by PID at teardown."""
    procs = []

    def _start(args, nofile=64, addr="127.0.0.1", **kw):
        argv = [duplex, "listen", *map(str, args), addr, "0"]

        def lower():
            resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, nofile))

        p = Proc(argv, "duplex " + " ".join(map(str, args)), stdin=kw.pop("stdin", subprocess.DEVNULL),
                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, preexec_fn=lower, close_fds=True, **kw)
        procs.append(p)
        m = p.wait_err(LISTENING_RE)
        return p, int(m.group(2))

    yield _start
    for p in reversed(procs):
        p.kill()


@pytest.fixture
def sockets():
    """sockets(s) registers a socket (or a list) to be closed at teardown;
    returns it."""
    held = []

    def _keep(s):
        if isinstance(s, (list, tuple)):
            held.extend(s)
        else:
            held.append(s)
        return s

    yield _keep
    for s in held:
        try:
            s.close()
        except OSError:
            pass


def wait_for(cond, timeout, what, interval=0.02):
    """Poll cond() until true; fail with `what` on deadline."""
    deadline = time.monotonic() + timeout
    while True:
        v = cond()
        if v:
            return v
        if time.monotonic() >= deadline:
            pytest.fail(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)
