"""Helpers shared by duplex's two end-to-end suites: tests/e2e (the Linux
program) and tests/windows/e2e (duplex.exe under wine). Processes with
drained output pipes and deadlines (Proc, Spawner), free ports, waits on
listening sockets, checksums, random files and a scripted TCP peer.

Standard library and pytest only. Every wait has a deadline; every process
a Spawner starts is killed by PID (with group=True: its whole process group)
and reaped by Spawner.cleanup().
"""

import errno
import hashlib
import os
import random
import re
import select
import shutil
import signal
import socket
import subprocess
import threading
import time

import pytest

# Default deadline for one duplex run in a small test.
TIMEOUT = 15

LISTENING_RE = re.compile(r"duplex: listening on (\S+):(\d+)\s*$", re.M)


# ---------------------------------------------------------------- processes --


class Proc:
    """A started process: a Popen plus threads that drain its stdout/stderr
    pipes (when they are pipes) so that waiting for a line never blocks on a
    full pipe and never waits without a deadline."""

    def __init__(self, args, name, group=False, timeout=TIMEOUT, spare=None, **kw):
        self.args = args
        self.name = name
        self.timeout = timeout  # the default deadline of every wait below
        # group: the process leads a session of its own (start_new_session),
        # and kill() ends its whole process group: what it started, even
        # when that was re-parented away from it (wine double-forks the
        # processes a Windows program creates; they keep the group)
        self.group = group
        # spare(pid) -> True: a process kill() leaves alone although it is
        # in the group or below us (wine's own services, which a Windows
        # program may start and which the whole prefix shares)
        self.spare = spare
        if group:
            kw["start_new_session"] = True
        self.popen = subprocess.Popen(args, **kw)
        self.pid = self.popen.pid
        self._cond = threading.Condition()
        self._out = bytearray()
        self._err = bytearray()
        self._eof = {"out": self.popen.stdout is None, "err": self.popen.stderr is None}
        self._threads = []
        for key, f in (("out", self.popen.stdout), ("err", self.popen.stderr)):
            if f is not None:
                t = threading.Thread(target=self._drain, args=(key, f), daemon=True)
                t.start()
                self._threads.append(t)

    def _drain(self, key, f):
        fd = f.fileno()
        buf = self._out if key == "out" else self._err
        while True:
            try:
                chunk = os.read(fd, 65536)
            except OSError:
                chunk = b""
            with self._cond:
                if not chunk:
                    self._eof[key] = True
                    self._cond.notify_all()
                    return
                buf += chunk
                self._cond.notify_all()

    # -- output -------------------------------------------------------------

    @property
    def stdin(self):
        return self.popen.stdin

    @property
    def out(self):
        with self._cond:
            return bytes(self._out)

    @property
    def err(self):
        with self._cond:
            return self._err.decode("utf-8", "replace")

    def wait_err(self, pattern, timeout=None):
        """Wait until stderr matches the regex; return the match. Fails the
        test (showing stderr) on deadline or when stderr ends first."""
        timeout = self.timeout if timeout is None else timeout
        rx = re.compile(pattern, re.M) if isinstance(pattern, str) else pattern
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                m = rx.search(self._err.decode("utf-8", "replace"))
                if m:
                    return m
                left = deadline - time.monotonic()
                if self._eof["err"] or left <= 0:
                    why = "stderr ended" if self._eof["err"] else "timed out"
                    pytest.fail(
                        f"{self.name}: {why} waiting for /{rx.pattern}/ on stderr; "
                        f"rc={self.popen.poll()} stderr={self._err.decode('utf-8', 'replace')!r}"
                    )
                self._cond.wait(min(left, 0.2))

    def wait_out(self, predicate, timeout=None):
        """Wait until predicate(stdout bytes so far) is true."""
        timeout = self.timeout if timeout is None else timeout
        deadline = time.monotonic() + timeout
        with self._cond:
            while not predicate(bytes(self._out)):
                left = deadline - time.monotonic()
                if self._eof["out"] or left <= 0:
                    pytest.fail(
                        f"{self.name}: stdout condition not met "
                        f"({'stdout ended' if self._eof['out'] else 'timed out'}); "
                        f"stdout={bytes(self._out)[:300]!r} stderr={self._err.decode('utf-8', 'replace')!r}"
                    )
                self._cond.wait(min(left, 0.2))
            return bytes(self._out)

    def wait_out_eof(self, timeout=None):
        """Wait until stdout ends (the program closed it, or exited);
        returns everything it wrote."""
        timeout = self.timeout if timeout is None else timeout
        deadline = time.monotonic() + timeout
        with self._cond:
            while not self._eof["out"]:
                left = deadline - time.monotonic()
                if left <= 0:
                    pytest.fail(f"{self.name}: stdout still open after {timeout}s; "
                                f"stdout={bytes(self._out)[-300:]!r} stderr={self._err.decode('utf-8', 'replace')!r}")
                self._cond.wait(min(left, 0.2))
            return bytes(self._out)

    # -- life ---------------------------------------------------------------

    def poll(self):
        return self.popen.poll()

    def wait(self, timeout=None):
        """Wait for exit; fail the test (with stderr) if it takes too long.
        Returns the exit code, after the output pipes have been drained."""
        timeout = self.timeout if timeout is None else timeout
        try:
            rc = self.popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            pytest.fail(f"{self.name} did not exit within {timeout}s; stderr={self.err!r}")
        self._join()
        return rc

    def _join(self, timeout=5):
        for t in self._threads:
            t.join(timeout)

    def close_stdin(self):
        if self.popen.stdin and not self.popen.stdin.closed:
            try:
                self.popen.stdin.close()
            except OSError:
                pass

    def kill(self):
        """Kill by PID (SIGKILL), with every process it started (an --exec
        child would otherwise outlive it), and reap."""
        kids = descendants(self.pid) if self.popen.poll() is None else []
        if self.group and self.spare:
            kids += [p for p in group_members(self.pid) if p not in kids]
        for pid in [self.pid, *kids]:
            if pid != self.pid and self.spare and self.spare(pid):
                continue
            try:
                os.kill(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        if self.group and not self.spare:
            try:
                os.killpg(self.pid, signal.SIGKILL)  # the group is named by our child's PID
            except (ProcessLookupError, PermissionError):
                pass
        try:
            self.popen.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass
        self.close_stdin()
        self._join(2)
        for f, t in zip((self.popen.stdout, self.popen.stderr), self._threads_by_pipe()):
            # a drain thread still reading (a grandchild kept the pipe open)
            # keeps its pipe: closing it would free the fd number for the
            # next test's pipe, which that thread would then read from
            if f is not None and not (t and t.is_alive()):
                try:
                    f.close()
                except OSError:
                    pass

    def _threads_by_pipe(self):
        it = iter(self._threads)
        return [next(it) if f is not None else None
                for f in (self.popen.stdout, self.popen.stderr)]

    def __repr__(self):
        return f"<Proc {self.name} pid={self.pid}>"


def stat_fields(pid):
    """Fields of /proc/PID/stat after the command name: [state, ppid, pgrp,
    ...]. OSError if the process is gone."""
    with open(f"/proc/{pid}/stat") as f:
        text = f.read()
    return text[text.rindex(")") + 2:].split()


def alive(pid):
    """True if pid exists and is not a zombie."""
    try:
        return stat_fields(pid)[0] != "Z"
    except (OSError, IndexError):
        return False


def group_members(pgid):
    """Every live process of process group pgid."""
    out = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            fields = stat_fields(name)
        except OSError:
            continue
        if len(fields) > 2 and fields[0] != "Z" and int(fields[2]) == pgid:
            out.append(int(name))
    return out


def descendants(pid):
    """Every live process below pid (from /proc/PID/task/TID/children)."""
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        try:
            tids = os.listdir(f"/proc/{p}/task")
        except OSError:
            continue
        for tid in tids:
            try:
                with open(f"/proc/{p}/task/{tid}/children") as f:
                    kids = [int(k) for k in f.read().split()]
            except OSError:
                continue
            out += kids
            todo += kids
    return out




class Spawner:
    """spawner(args, stdin=DEVNULL, stdout=PIPE, stderr=PIPE, env=None,
    name=None) starts a process and registers it for cleanup() (killed by
    PID and reaped). stdin may be bytes (fed through a pipe by a thread,
    which then closes it), a file object or fd, subprocess.PIPE or DEVNULL.
    Returns a Proc. group=True: each process in a process group of its own,
    killed as a group (see Proc); timeout: the Procs' default deadline;
    spare: see Proc."""

    def __init__(self, group=False, timeout=TIMEOUT, spare=None):
        self.group = group
        self.spare = spare
        self.timeout = timeout
        self.procs = []
        self.feeders = []

    def __call__(self, args, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                 stderr=subprocess.PIPE, env=None, name=None):
        args = [str(a) for a in args]
        full_env = dict(os.environ)
        if env:
            full_env.update(env)
        data = None
        if isinstance(stdin, (bytes, bytearray)):
            data = bytes(stdin)
            stdin = subprocess.PIPE
        p = Proc(args, name or os.path.basename(args[0]), group=self.group, timeout=self.timeout,
                 spare=self.spare, stdin=stdin,
                 stdout=stdout, stderr=stderr, env=full_env, close_fds=True)
        self.procs.append(p)
        if data is not None:
            def feed(f=p.popen.stdin):
                try:
                    f.write(data)
                except (BrokenPipeError, OSError, ValueError):
                    pass
                finally:
                    try:
                        f.close()
                    except OSError:
                        pass
            t = threading.Thread(target=feed, daemon=True)
            t.start()
            self.feeders.append(t)
        return p

    def cleanup(self):
        for p in reversed(self.procs):
            p.kill()
        for t in self.feeders:
            t.join(2)

    def report(self, limit=3000):
        """Print each process's exit status and stderr's end (pytest shows
        a fixture's teardown output for a failed test only)."""
        for p in self.procs:
            err = p.err
            print(f"--- {p.name}: pid {p.pid}, exit {p.popen.returncode}, stderr "
                  f"({len(err)} chars){' ending' if len(err) > limit else ''}:\n{err[-limit:]}")


# ---------------------------------------------------------- ports, peers --


def free_port(host="127.0.0.1", family=socket.AF_INET, kind=socket.SOCK_STREAM):
    """A port that was free a moment ago (bound to port 0, then closed): TCP,
    or UDP with kind=socket.SOCK_DGRAM."""
    with socket.socket(family, kind) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


_held_ports = []


def closed_port(count=1, host="127.0.0.1"):
    """A TCP port that refuses connections until the test ends; with count > 1,
    the first of `count` adjacent such ports. Each port is
    held by a socket bound to it without listen(): the kernel answers a SYN
    with RST, and no other test running alongside can listen there (a port
    merely found free could be taken between the check and the connect).
    release_closed_ports() (called by conftest after each test) frees them."""
    for _ in range(50):
        held = []
        try:
            for i in range(count):
                s = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
                held.append(s)
                s.bind((host, held[0].getsockname()[1] + i if i else 0))
        except (OSError, OverflowError):  # taken, or past 65535
            for s in held:
                s.close()
            continue
        _held_ports.extend(held)
        return held[0].getsockname()[1]
    raise RuntimeError(f"no {count} adjacent free TCP ports on {host}")


def release_closed_ports():
    while _held_ports:
        _held_ports.pop().close()


def _proc_net_rows(port, proto="tcp", state=None, remote=False):
    """The (tx_queue, rx_queue) of each socket of `proto` ('tcp' or 'udp')
    bound to local port `port` (with remote=True: connected to remote port
    `port`), per /proc/net/PROTO{,6}; with `state` (hex: '01' ESTABLISHED,
    '0A' LISTEN, '02' SYN-SENT...) only those in that state."""
    rows = []
    for name in (f"/proc/net/{proto}", f"/proc/net/{proto}6"):
        try:
            with open(name) as f:
                next(f)
                for line in f:
                    parts = line.split()
                    local, st = parts[2 if remote else 1], parts[3]
                    if int(local.rsplit(":", 1)[1], 16) == port and state in (None, st):
                        tx, rx = parts[4].split(":")
                        rows.append((int(tx, 16), int(rx, 16)))
        except OSError:
            continue
    return rows


def tcp_queues(port, remote=False, state=None):
    """[(tx_queue, rx_queue)] of the TCP sockets on `port` (as
    _proc_net_rows). tx_queue is what a socket has sent but not had
    acknowledged (or not sent yet), rx_queue what arrived and the program
    has not read."""
    return _proc_net_rows(port, "tcp", state, remote)


def proc_net_sockets(port, proto="tcp", state=None, remote=False):
    """How many sockets of `proto` are on `port` (as _proc_net_rows)."""
    return len(_proc_net_rows(port, proto, state, remote))


def accept_queue(port):
    """How many connections wait, established but not yet accepted, in the
    queue of the TCP listener on `port` (a LISTEN socket's rx_queue in
    /proc/net/tcp{,6}); None if nothing listens there. Evidence that a
    server has not taken a client, where a recv() timeout only says it did
    not answer in time."""
    rows = _proc_net_rows(port, "tcp", "0A")
    return sum(rx for _, rx in rows) if rows else None


def listeners_on(port):
    """How many TCP sockets listen on `port` (/proc/net/tcp{,6})."""
    return proc_net_sockets(port, "tcp", "0A")


def wait_listening(port, timeout=10, proc=None, udp=False):
    """Wait until something listens on TCP `port` (with udp=True: until
    something is bound to UDP `port`) without connecting to it (a probe
    connection would use up a one-shot peer's only accept)."""
    deadline = time.monotonic() + timeout
    what = "bound to UDP port" if udp else "listening on port"
    while time.monotonic() < deadline:
        if (proc_net_sockets(port, "udp") if udp else listeners_on(port)):
            return
        if proc is not None and proc.poll() is not None:
            pytest.fail(f"{proc.name} exited (rc={proc.poll()}) before "
                        f"{'binding' if udp else 'listening'}; stderr={proc.err!r}")
        time.sleep(0.02)
    pytest.fail(f"nothing {what} {port} after {timeout}s")


def unix_listening(path):
    """True if a Unix stream socket listens at path (/proc/net/unix: the
    __SO_ACCEPTCON flag). The file appears at bind(), before listen(): a
    connect between the two is refused."""
    try:
        with open("/proc/net/unix") as f:
            next(f)
            for line in f:
                cols = line.split(None, 7)
                if len(cols) == 8 and cols[7].rstrip("\n") == path and int(cols[3], 16) & 0x10000:
                    return True
    except OSError:
        pass
    return False


def wait_unix_listening(path, timeout=10, proc=None):
    """Wait until a Unix stream socket listens at path (not just exists)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if unix_listening(str(path)):
            return
        if proc is not None and proc.poll() is not None:
            pytest.fail(f"{proc.name} exited (rc={proc.poll()}) before listening on {path}; "
                        f"stderr={proc.err!r}")
        time.sleep(0.02)
    pytest.fail(f"nothing listening on {path} after {timeout}s")


class Backlog:
    """A listener on 127.0.0.1 that does not accept, its queue filled, so that
    further SYNs are dropped and a connect hangs (`hung` False if the queue
    could not be filled on this kernel; the last filler is then the one whose
    SYN hangs). release() accepts the fillers, so that the next
    (retransmitted) SYN is answered; accept_other() then takes the first
    connection that is not a filler's."""

    def __init__(self):
        self.lsock = socket.socket()
        self.lsock.bind(("127.0.0.1", 0))
        self.lsock.listen(0)
        self.port = self.lsock.getsockname()[1]
        self.fillers = []
        self.accepted = []
        self.hung = False
        for _ in range(16):
            c = socket.socket()
            c.setblocking(False)
            e = c.connect_ex(("127.0.0.1", self.port))
            if e not in (0, errno.EINPROGRESS):
                c.close()
                continue
            self.fillers.append(c)
            _, w, _ = select.select([], [c], [], 0.3)
            if not w:
                self.hung = True  # this SYN was dropped: the queue is full
                break

    def release(self):
        ports = {c.getsockname()[1] for c in self.fillers}
        self.lsock.setblocking(False)
        while ports:
            try:
                conn, peer = self.lsock.accept()
            except BlockingIOError:
                break
            self.accepted.append(conn)
            ports.discard(peer[1])

    def accept_other(self, timeout=TIMEOUT):
        ports = {c.getsockname()[1] for c in self.fillers}
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            r, _, _ = select.select([self.lsock], [], [], max(0.0, deadline - time.monotonic()))
            if not r:
                break
            try:
                conn, peer = self.lsock.accept()
            except BlockingIOError:
                continue
            if peer[1] not in ports:
                return conn
            self.accepted.append(conn)
        pytest.fail(f"no connection to the released backlog on port {self.port} after {timeout}s")

    def close(self):
        for c in self.fillers + self.accepted:
            c.close()
        self.lsock.close()


def need(binary):
    """Return the path of peer `binary`. Missing, it fails the test when
    DUPLEX_PEERS_REQUIRED=1 (make e2e sets it: a peer test skipped on a CI
    machine that lacks the package is a test that cannot fail), else skips."""
    path = shutil.which(binary)
    if not path:
        why = f"{binary} is not installed (scripts/install-deps installs every peer)"
        if os.environ.get("DUPLEX_PEERS_REQUIRED") == "1":
            pytest.fail(why)
        pytest.skip(why)
    return path


def have_ipv6_loopback():
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


def sha(b):
    """sha256 hex digest of bytes."""
    return hashlib.sha256(b).hexdigest()


def seeded_bytes(n, seed):
    """n pseudo-random bytes, the same for the same seed: data whose loss,
    duplication or reordering a hash comparison shows, reproducible when a
    test fails."""
    return random.Random(seed).randbytes(n)


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while True:
            chunk = f.read(1 << 20)
            if not chunk:
                break
            h.update(chunk)
    return h.hexdigest()


def write_random(path, size):
    """Write `size` random bytes to path; return their sha256."""
    h = hashlib.sha256()
    with open(path, "wb") as f:
        left = size
        while left:
            chunk = os.urandom(min(left, 1 << 20))
            h.update(chunk)
            f.write(chunk)
            left -= len(chunk)
    return h.hexdigest()


class RandomFile:
    def __init__(self, path, size):
        self.path = str(path)
        self.size = size
        self.sha256 = write_random(self.path, size)

    def open(self):
        return open(self.path, "rb")


# ---------------------------------------------------- scripted TCP peers --


class Server:
    """A Python TCP server on a fresh port (or, with `path`, a Unix-socket
    server on that path), run by a thread with a `script(conn, result)`
    function after accepting one connection. Closed (and the thread joined)
    by the `server` fixture's finalizer."""

    def __init__(self, script, host="127.0.0.1", family=socket.AF_INET, backlog=1, accept=True,
                 path=None):
        if path is not None:
            self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self.sock.bind(str(path))
            self.port = None
        else:
            self.sock = socket.socket(family, socket.SOCK_STREAM)
            self.sock.bind((host, 0))
            self.port = self.sock.getsockname()[1]
        self.sock.listen(backlog)
        self.path = path
        self.conn = None
        self.error = None
        self.result = {}
        self.done = threading.Event()
        self.thread = None
        if accept:
            self.thread = threading.Thread(target=self._run, args=(script,), daemon=True)
            self.thread.start()

    def _run(self, script):
        try:
            self.sock.settimeout(TIMEOUT)
            conn, _ = self.sock.accept()
            self.conn = conn
            conn.settimeout(TIMEOUT)
            if script:
                script(conn, self.result)
        except Exception as e:  # reported by join()
            self.error = e
        finally:
            self.done.set()

    def join(self, timeout=TIMEOUT):
        """Wait for the script to finish; re-raise its exception."""
        if self.thread is None:
            return self.result
        if not self.done.wait(timeout):
            pytest.fail(f"server script did not finish within {timeout}s")
        if self.error:
            raise self.error
        return self.result

    def close(self):
        for s in (self.conn, self.sock):
            if s is not None:
                try:
                    s.close()
                except OSError:
                    pass
        if self.thread is not None:
            self.thread.join(2)


def recv_all(conn, timeout=TIMEOUT):
    """Read until EOF; returns the bytes (fails the test on deadline)."""
    conn.settimeout(timeout)
    chunks = []
    while True:
        b = conn.recv(65536)
        if not b:
            return b"".join(chunks)
        chunks.append(b)
