"""End-to-end tests of --rate-limit BYTES[/s] (connect, listen in its
modes, relay with and without splice): each direction of each connection
paced by a token bucket. The receiver times the bytes from the first to the
last: never faster than the limit + 10% over the whole transfer (the strict
bound: a busy machine can only slow a transfer down), not far slower (a
loose bound), and every byte checked by hash.

Run: DUPLEX=/abs/build/duplex /usr/bin/python3 -m pytest -q tests/e2e/test_rate_limit.py"""

import os
import select
import socket
import subprocess
import threading
import time

import pytest

from conftest import LISTENING_RE, TIMEOUT, need, seeded_bytes, sha
from servers_util import connect

LIMIT = 1024 * 1024  # --rate-limit 1M
SIZE = 2 * 1024 * 1024  # two seconds' worth each way
DEADLINE = 20  # seconds for one paced transfer (it takes about 2)


class Timed:
    """Reads a socket or a pipe to its end (or `size` bytes) on a thread:
    the bytes, and when the first and the last came."""

    def __init__(self, sock=None, fd=None, size=None):
        self.sock, self.fd, self.size = sock, fd, size
        self.data = bytearray()
        self.first = self.last = None
        self.error = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _read(self):
        if self.sock is not None:
            return self.sock.recv(65536)
        r, _, _ = select.select([self.fd], [], [], DEADLINE)
        if not r:
            raise TimeoutError("no data on the pipe")
        return os.read(self.fd, 65536)

    def _run(self):
        try:
            while True:
                chunk = self._read()
                if not chunk:
                    return
                now = time.monotonic()
                if self.first is None:
                    self.first = now
                self.last = now
                self.data += chunk
                if self.size is not None and len(self.data) >= self.size:
                    return
        except Exception as e:  # reported by result()
            self.error = e

    def result(self):
        self.thread.join(DEADLINE)
        assert not self.thread.is_alive(), f"still reading after {DEADLINE}s ({len(self.data)} bytes)"
        assert self.error is None, f"reading failed: {self.error!r}"
        return bytes(self.data)


def check(timed, expected, what, limit=LIMIT):
    """Every byte, in order, at no more than limit + 10% (first to last byte)."""
    got = timed.result()
    assert len(got) == len(expected) and sha(got) == sha(expected), \
        f"{what}: {len(got)} of {len(expected)} bytes, hash differs"
    elapsed = timed.last - timed.first
    rate = len(got) / elapsed if elapsed > 0 else float("inf")
    assert rate <= limit * 1.10, f"{what}: {rate / limit:.3f} x the limit ({elapsed:.3f} s): too fast"
    assert rate >= limit * 0.4, f"{what}: {rate / limit:.3f} x the limit ({elapsed:.3f} s): far too slow"
    return rate


def send_and_shut(sock, data):
    """Send data, then shut the write side down, on a thread."""

    def run():
        try:
            sock.sendall(data)
            sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t


class Peer:
    """A TCP server for one client on a thread: it sends `data` then shuts its
    side, and times what it receives."""

    def __init__(self, data):
        self.lsock = socket.socket()
        self.lsock.bind(("127.0.0.1", 0))
        self.lsock.listen(1)
        self.lsock.settimeout(DEADLINE)
        self.port = self.lsock.getsockname()[1]
        self.data = data
        self.timed = None
        self.ready = threading.Event()
        self.conn = None
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self):
        try:
            conn, _ = self.lsock.accept()
        except OSError:
            self.ready.set()
            return
        conn.settimeout(DEADLINE)
        self.timed = Timed(sock=conn)
        self.conn = conn
        self.ready.set()
        send_and_shut(conn, self.data)

    def received(self):
        assert self.ready.wait(DEADLINE) and self.conn, "nobody connected"
        return self.timed

    def close(self):
        self.lsock.close()
        if self.conn:
            self.conn.close()


@pytest.fixture
def peer():
    made = []

    def _make(data):
        p = Peer(data)
        made.append(p)
        return p

    yield _make
    for p in made:
        p.close()


def stdout_pipe():
    """A pipe for duplex's stdout: (read end for a Timed, write end for spawn)."""
    r, w = os.pipe()
    return r, w


def test_connect_paces_both_directions(start_duplex, peer, tmp_path):
    """connect --rate-limit 1M: stdin (a file: the sendfile path) to the
    server and the server's bytes to stdout, each at 1 MiB/s, together."""
    up, down = seeded_bytes(SIZE, 1), seeded_bytes(SIZE, 2)
    src = tmp_path / "up"
    src.write_bytes(up)
    server = peer(down)
    r, w = stdout_pipe()
    with open(src, "rb") as f:
        p = start_duplex(["connect", "--rate-limit", "1M", "127.0.0.1", server.port],
                         stdin=f, stdout=w)
    os.close(w)
    to_stdout = Timed(fd=r)
    try:
        check(server.received(), up, "connect -> server")
        check(to_stdout, down, "server -> connect stdout")
        assert p.wait(DEADLINE) == 0, p.err
    finally:
        os.close(r)


def test_listen_paces_both_directions(start_duplex):
    """listen --rate-limit 1M/s: the client's bytes to stdout and stdin (a
    pipe: the buffered path) to the client."""
    up, down = seeded_bytes(SIZE, 3), seeded_bytes(SIZE, 4)
    r, w = stdout_pipe()
    p = start_duplex(["listen", "--rate-limit", "1M/s", "127.0.0.1", "0"],
                     stdin=down, stdout=w)
    os.close(w)
    try:
        port = int(p.wait_err(LISTENING_RE).group(2))
        to_stdout = Timed(fd=r)
        with connect(port, timeout=DEADLINE) as s:
            to_client = Timed(sock=s)
            send_and_shut(s, up)
            check(to_stdout, up, "client -> listen stdout")
            check(to_client, down, "listen stdin -> client")
        assert p.wait(DEADLINE) == 0, p.err
    finally:
        os.close(r)


def test_echo_paces_each_client(start_duplex):
    """listen --echo: each client's stream is paced both ways (dx_stream):
    two clients at once, each gets its bytes back at the full limit (per
    connection, not shared)."""
    p = start_duplex(["listen", "-k", "--echo", "--rate-limit", "1024k", "127.0.0.1", "0"])
    port = int(p.wait_err(LISTENING_RE).group(2))
    data = [seeded_bytes(SIZE, 5), seeded_bytes(SIZE, 6)]
    socks = [connect(port, timeout=DEADLINE) for _ in data]
    try:
        timed = [Timed(sock=s) for s in socks]
        for s, d in zip(socks, data):
            send_and_shut(s, d)
        for t, d in zip(timed, data):
            check(t, d, "echo")
    finally:
        for s in socks:
            s.close()


def test_keep_listening_paces_both_ways(start_duplex):
    """listen -k: a client's bytes to stdout (the stream's input bucket) and
    stdin to the client (its output bucket: stdin itself is read at full
    speed, the client's queue fills and pauses it)."""
    up, down = seeded_bytes(SIZE, 7), seeded_bytes(SIZE, 8)
    r, w = stdout_pipe()
    p = start_duplex(["listen", "-k", "-v", "--rate-limit", "1M", "127.0.0.1", "0"],
                     stdin=subprocess.PIPE, stdout=w)
    os.close(w)
    try:
        port = int(p.wait_err(LISTENING_RE).group(2))
        to_stdout = Timed(fd=r, size=len(up))  # a server's stdout stays open
        with connect(port, timeout=DEADLINE) as s:
            p.wait_err(r"connected \(1 now\)")
            to_client = Timed(sock=s)
            send_and_shut(s, up)
            feeder = threading.Thread(target=lambda: (p.stdin.write(down), p.stdin.close()), daemon=True)
            feeder.start()
            check(to_client, down, "listen -k stdin -> client")
            check(to_stdout, up, "client -> listen -k stdout")
            feeder.join(DEADLINE)
    finally:
        os.close(r)


@pytest.mark.parametrize("splice", [True, False], ids=["splice", "buffered"])
def test_relay_paces_both_directions(start_duplex, peer, splice):
    """relay --rate-limit 1M: client -> target and target -> client each at
    the limit, with the splice pumps (the default) and with the buffered
    copy (DUPLEX_NO_SPLICE=1)."""
    up, down = seeded_bytes(SIZE, 8), seeded_bytes(SIZE, 9)
    target = peer(down)
    env = None if splice else {"DUPLEX_NO_SPLICE": "1"}
    p = start_duplex(["relay", "--rate-limit", "1M", "127.0.0.1:0", f"127.0.0.1:{target.port}"],
                     env=env)
    port = int(p.wait_err(LISTENING_RE).group(2))
    with connect(port, timeout=DEADLINE) as s:
        to_client = Timed(sock=s)
        send_and_shut(s, up)
        check(target.received(), up, "client -> relay -> target")
        check(to_client, down, "target -> relay -> client")
    assert p.wait(DEADLINE) == 0, p.err


def test_relay_splices_under_the_limit(spawn, peer, duplex):
    """Under the limit the relay still moves bulk data with splice(2), each
    call at most what the bucket holds (1/20 s worth: 52428 bytes at 1M)."""
    strace = need("strace")
    data = seeded_bytes(SIZE // 2, 10)
    target = peer(b"")
    log = f"/tmp/duplex-strace-{os.getpid()}.log"
    # LeakSanitizer cannot run under ptrace: an ASan build (make check) exits 1 at its end
    asan = ":".join(filter(None, [os.environ.get("ASAN_OPTIONS"), "detect_leaks=0"]))
    p = spawn([strace, "-f", "-qq", "-e", "trace=splice", "-o", log, duplex,
               "relay", "--rate-limit", "1M", "127.0.0.1:0", f"127.0.0.1:{target.port}"],
              env={"ASAN_OPTIONS": asan})
    try:
        port = int(p.wait_err(LISTENING_RE).group(2))
        with connect(port, timeout=DEADLINE) as s:
            send_and_shut(s, data)
            check(target.received(), data, "client -> relay (strace) -> target")
        assert p.wait(DEADLINE) == 0, p.err
        with open(log) as f:
            sizes = [int(line.rsplit("=", 1)[1]) for line in f
                     if "splice(" in line and "=" in line and line.rsplit("=", 1)[1].strip().isdigit()]
    finally:
        if os.path.exists(log):
            os.unlink(log)
    moved = sum(sizes) // 2  # into the pipe, then out of it
    assert moved >= len(data) // 2, f"only {moved} of {len(data)} bytes spliced"
    assert max(sizes) <= LIMIT // 20, f"a splice of {max(sizes)} bytes: more than the bucket holds"


@pytest.mark.parametrize("args, words", [
    (["connect", "--rate-limit", "0", "127.0.0.1", "1"], "invalid --rate-limit value '0'"),
    (["connect", "--rate-limit", "1X", "127.0.0.1", "1"], "invalid --rate-limit value '1X'"),
    (["connect", "--rate-limit", "-5", "127.0.0.1", "1"], "invalid --rate-limit value '-5'"),
    (["listen", "--rate-limit", "1M", "-e", "cat", "0"], "not with --exec"),
    (["connect", "-u", "--rate-limit", "1M", "127.0.0.1", "1"], "not with -u"),
])
def test_rate_limit_refusals(run_duplex, args, words):
    rc, _, err = run_duplex(args)
    assert rc == 2, err
    assert words in err, err
