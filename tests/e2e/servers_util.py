"""Helpers for the server-mode tests (test_server_modes.py,
test_server_limits.py): client sockets with deadlines, a single-threaded
selectors pump for many clients at once, and /proc readers for the server's
CPU time, memory and children.

Standard library only. Every wait has a deadline; every process is started
through the conftest `spawn` or `spawn_limited` fixture (or `spawn_rlimit`
below, built on the latter) and is killed and reaped by PID at teardown."""

import errno
import os
import re
import resource
import select
import selectors
import socket
import time

import pytest

from conftest import LISTENING_RE, TIMEOUT, sha, stat_fields

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


def said_connected(proc, sock, now=None):
    """Wait for a stream server's -v line for sock ('NAME: connected', with
    `now`: 'NAME: connected (NOW now)'). The server wrote it after every line
    before it: once it is read, proc.err holds those too, and a check that a
    line is absent means something. A client connected for this only is a
    way to make sure a live server's stderr has been read up to now."""
    more = r" \(%d now\)" % now if now is not None else ""
    return proc.wait_err(re.escape(name_of(sock)) + r": connected" + more)


def _recv_while(sock, more, bufsize, timeout, what):
    """recv() into a buffer while more(bytes so far) is true, each recv()
    asking for at most bufsize(bytes so far); returns the bytes. Fails the
    test on EOF or deadline, describing the wait by what(bytes so far)."""
    deadline = time.monotonic() + timeout
    buf = bytearray()
    while more(bytes(buf)):
        left = deadline - time.monotonic()
        if left <= 0:
            pytest.fail(f"timed out: {what(bytes(buf))}")
        sock.settimeout(left)
        try:
            b = sock.recv(bufsize(buf))
        except socket.timeout:
            continue
        if not b:
            pytest.fail(f"EOF: {what(bytes(buf))}")
        buf += b
    return bytes(buf)


def recv_exact(sock, n, timeout=TIMEOUT):
    """Exactly n bytes (fails the test on EOF or deadline)."""
    return _recv_while(sock, lambda b: len(b) < n, lambda b: n - len(b), timeout,
                       lambda b: f"got {len(b)} of {n} bytes: {b[:200]!r}")


def recv_until(sock, predicate, timeout=TIMEOUT):
    """Read until predicate(bytes so far) is true; returns the bytes."""
    return _recv_while(sock, lambda b: not predicate(b), lambda b: 65536, timeout,
                       lambda b: f"waiting for data; got {b[:300]!r}")


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


def send_then_read_to_eof(sock, data, timeout=TIMEOUT):
    """Send all of `data`, shut the write side, read to EOF: returns
    (bytes, 'eof'). `data` must fit the socket buffers when the peer echoes
    (it is all sent before anything is read)."""
    sock.sendall(data)
    sock.shutdown(socket.SHUT_WR)
    return read_to_eof(sock, timeout)


def exchange(port, data, host="127.0.0.1", timeout=TIMEOUT):
    """A fresh client of host:port sends `data`, half-closes and reads to
    EOF; returns (bytes, 'eof'). The socket is closed after."""
    s = connect(port, host=host, timeout=timeout)
    try:
        return send_then_read_to_eof(s, data, timeout)
    finally:
        s.close()


def assert_half_close_echo(port, nbytes):
    """Against an echo server on port: a client's `nbytes` random bytes
    (few enough to fit the socket buffers), then its half-close, come back
    whole and then EOF; and the server goes on to serve the next client."""
    data = os.urandom(nbytes)
    back, how = exchange(port, data)
    assert how == "eof"
    assert back == data
    t = connect(port)
    try:
        assert echo_roundtrip(t, b"next\n") == b"next\n"
    finally:
        t.close()


def serves_new_client(port, payload=b"d\n", timeout=1):
    """True if a fresh client of the echo service on port gets `payload`
    echoed within `timeout` s (False on a socket error or timeout); the
    client is closed after. For wait_for(): has a slot been freed?"""
    d = connect(port)
    try:
        d.settimeout(timeout)
        d.sendall(payload)
        return d.recv(len(payload) + 8) == payload
    except OSError:
        return False
    finally:
        d.close()


# ------------------------------------------------- many clients, one thread --


class Pump:
    """Drive many non-blocking sockets from one thread with selectors:
    each socket has bytes to send (then optionally shut its write side),
    and collects what it receives until EOF, a reset, or `done(i, data)`."""

    def __init__(self, socks):
        self.socks = list(socks)
        self.moved = time.monotonic()  # the last byte sent or received
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
        between rounds (sampling). Fails the test once nothing has moved
        for `timeout` s (a stall), or after 10 x timeout in all: the deadline
        is on progress, so a busy machine makes a run slower, never failed
        (a bound on the whole run failed 1000 broker clients under load)."""
        if done is None:
            def done(i, _data):
                return self.eof[i] is not None and not len(self.out[i]) and not self.shut_after[i]
        pending = {i for i in range(len(self.socks)) if not done(i, self.received[i])}
        start = self.moved = time.monotonic()
        while pending:
            now = time.monotonic()
            left = min(self.moved + timeout, start + 10 * timeout) - now
            if left <= 0:
                sample = sorted(pending)[:5]
                pytest.fail(
                    f"{len(pending)} of {len(self.socks)} clients unfinished after {now - start:.1f}s "
                    f"(nothing moved for {now - self.moved:.1f}s); e.g. "
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
            self.moved = time.monotonic()
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
            self.moved = time.monotonic()
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


def assert_pumped_echo(port, payloads, timeout=30):
    """len(payloads) clients of the echoing service on port at once, each
    sending its payload and then half-closing (sent and read at the same
    time, so no echo can deadlock): each gets back exactly its payload, then
    EOF. The sockets are closed after."""
    socks = []
    try:
        for _ in payloads:
            socks.append(connect(port))
    except BaseException:
        for s in socks:
            s.close()
        raise
    pump = Pump(socks)
    try:
        for i, data in enumerate(payloads):
            pump.send(i, data, shut=True)
        got = pump.run(timeout=timeout)
        for i, data in enumerate(payloads):
            assert pump.eof[i] == "eof", f"client #{i} ({len(data)} bytes): ended by {pump.eof[i]}"
            assert len(got[i]) == len(data), f"client #{i}: {len(got[i])} of {len(data)} bytes back"
            assert sha(bytes(got[i])) == sha(data), f"client #{i}: echo differs"
    finally:
        pump.close()


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


def cpu_seconds(pid):
    """utime + stime of a process, in seconds."""
    fields = stat_fields(pid)
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
            fields = stat_fields(name)
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
def spawn_rlimit(spawn_limited):
    """spawn_rlimit(args, nofile=64, **popen_kw) -> (Proc, port): runs
    `duplex listen ARGS 127.0.0.1 0` with RLIMIT_NOFILE lowered in the child,
    waits for its listening line. Killed and reaped by PID at teardown."""

    def _start(args, nofile=64, addr="127.0.0.1", **kw):
        p = spawn_limited(["listen", *args, addr, "0"], nofile=nofile, **kw)
        m = p.wait_err(LISTENING_RE)
        return p, int(m.group(2))

    return _start


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


def read_pipe_to_eof(fd, timeout=TIMEOUT):
    """Read a pipe (an fd) until every writer has closed it; returns the
    bytes, fails on deadline (a process's stdout as a consumer sees it)."""
    deadline = time.monotonic() + timeout
    data = b""
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            pytest.fail(f"the pipe did not end within {timeout}s; read {data[:200]!r}")
        r, _, _ = select.select([fd], [], [], left)
        if r:
            b = os.read(fd, 65536)
            if not b:
                return data
            data += b


def raise_nofile(n):
    """Raise this process's (the test's) descriptor limit to n, or skip."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < n:
        if hard != resource.RLIM_INFINITY and hard < n:
            pytest.skip(f"RLIMIT_NOFILE hard limit {hard} < {n}")
        resource.setrlimit(resource.RLIMIT_NOFILE, (n, hard))
