"""End-to-end tests of `duplex relay LISTEN TARGET1 TARGET2...` (several
targets, --balance first|roundrobin|leastconn, --down-time): a target that
refuses or does not answer in -w is skipped for that client (failover) and
marked down; it is tried again after --down-time; roundrobin and leastconn
spread the clients as documented. Every client's data is checked by hash.

Run: DUPLEX=/abs/build/duplex /usr/bin/python3 -m pytest -q tests/e2e/test_relay_targets.py"""

import hashlib
import re
import socket
import threading
import time

import pytest

from conftest import LISTENING_RE, TIMEOUT, Backlog, closed_port, seeded_bytes
from servers_util import connect, recv_until, wait_for


class TagServer:
    """A TCP target on 127.0.0.1 that names itself: to each client it sends
    "TAG\\n" at once, then, when the client ends its side, the SHA-256 of
    every byte it received and closes. `bound_only`: the port is bound but
    not listening (connections refused) until start()."""

    def __init__(self, tag, bound_only=False):
        self.tag = tag
        self.count = 0
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.threads = []
        self.conns = []
        self.lock = threading.Lock()
        if not bound_only:
            self.start()

    def start(self):
        self.sock.listen(64)
        t = threading.Thread(target=self._accept, daemon=True)
        t.start()
        self.threads.append(t)

    def _accept(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with self.lock:
                self.count += 1
                self.conns.append(conn)
            t = threading.Thread(target=self._serve, args=(conn,), daemon=True)
            t.start()
            self.threads.append(t)

    def _serve(self, conn):
        try:
            conn.settimeout(TIMEOUT)
            conn.sendall(self.tag.encode() + b"\n")
            h = hashlib.sha256()
            while True:
                b = conn.recv(65536)
                if not b:
                    break
                h.update(b)
            conn.sendall(h.hexdigest().encode() + b"\n")
        except OSError:
            pass
        finally:
            conn.close()

    @property
    def addr(self):
        return f"127.0.0.1:{self.port}"

    def close(self):
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()
        with self.lock:
            for c in self.conns:
                try:
                    c.close()
                except OSError:
                    pass


@pytest.fixture
def tag_servers():
    made = []

    def _make(*tags, bound_only=False):
        servers = [TagServer(t, bound_only) for t in tags]
        made.extend(servers)
        return servers

    yield _make
    for s in made:
        s.close()


@pytest.fixture
def relay(start_duplex):
    """relay(args) runs `duplex relay -k -v ARGS` (LISTEN is 127.0.0.1:0)
    and returns (proc, port)."""

    def _start(args, k=True):
        p = start_duplex(["relay", *(["-k"] if k else []), "-v", *map(str, args)])
        m = p.wait_err(LISTENING_RE)
        return p, int(m.group(2))

    return _start


def open_client(port):
    """A client of the relay that has been given a target: (socket, tag)."""
    s = connect(port)
    line = recv_until(s, lambda b: b"\n" in b)
    return s, line.split(b"\n", 1)[0].decode()


def finish(s, seed, size=200_000):
    """Send size random bytes, end our side, check the target's hash of them."""
    data = seeded_bytes(size, seed)
    s.sendall(data)
    s.shutdown(socket.SHUT_WR)
    got = recv_until(s, lambda b: b.endswith(b"\n"))
    s.close()
    assert got.decode().strip() == hashlib.sha256(data).hexdigest(), "the data changed on the way"


def one_client(port, seed):
    """A whole exchange through the relay; returns the tag of the target."""
    s, tag = open_client(port)
    finish(s, seed)
    return tag


def err_findall(proc, pattern, n):
    """Wait until stderr has n matches of pattern; return them all."""
    wait_for(lambda: len(re.findall(pattern, proc.err)) >= n, TIMEOUT,
             f"{n} lines matching /{pattern}/ from {proc.name}")
    return re.findall(pattern, proc.err)


def firsts(proc, n):
    """The first choice of each of the first n clients, in order."""
    return err_findall(proc, r": connected, connecting to (\S+)", n)


def closing_lines(proc, n):
    """Wait for n connections' -v summary lines (each written after that
    connection's other lines)."""
    return err_findall(proc, r" -> \S+: sent \d+ bytes?, received", n)


# ------------------------------------------------------------ failover --


def test_first_fails_over_past_a_refusing_target_and_marks_it_down(relay, tag_servers):
    dead = closed_port()
    a, b = tag_servers("A", "B")
    p, port = relay(["--down-time", "1h", "127.0.0.1:0", f"127.0.0.1:{dead},{a.addr}", b.addr])
    assert one_client(port, 1) == "A"
    p.wait_err(rf"target 127\.0\.0\.1:{dead} down \(Connection refused\): skipped for 3600 s")
    p.wait_err(rf"127\.0\.0\.1:{dead}: Connection refused, trying {a.addr}")
    # marked down: the next clients go to A first, without trying the dead one
    for seed in (2, 3):
        assert one_client(port, seed) == "A"
    assert firsts(p, 3) == [f"127.0.0.1:{dead}", a.addr, a.addr], p.err
    closing_lines(p, 3)  # the last client's: stderr has caught up with its tries
    assert p.err.count("trying") == 1, p.err
    assert (a.count, b.count) == (3, 0)


def test_a_target_that_does_not_answer_within_w_is_skipped(relay, tag_servers):
    bl = Backlog()
    try:
        if not bl.hung:
            pytest.skip("could not fill a listen queue on this kernel")
        (a,) = tag_servers("A")
        p, port = relay(["-w", "0.3", "--down-time", "1h", "127.0.0.1:0", f"127.0.0.1:{bl.port}", a.addr])
        t0 = time.monotonic()
        assert one_client(port, 4) == "A"
        assert time.monotonic() - t0 >= 0.3
        p.wait_err(rf"target 127\.0\.0\.1:{bl.port} down \(Connection timed out\)")
        # the next one does not wait for it
        t0 = time.monotonic()
        assert one_client(port, 5) == "A"
        assert firsts(p, 2) == [f"127.0.0.1:{bl.port}", a.addr], p.err
    finally:
        bl.close()


def test_a_target_coming_back_is_tried_after_down_time(relay, tag_servers):
    back, other = tag_servers("BACK", "OTHER", bound_only=True)
    other.start()
    p, port = relay(["--down-time", "0.3", "127.0.0.1:0", back.addr, other.addr])
    before_mark = time.monotonic()
    assert one_client(port, 6) == "OTHER"
    p.wait_err(rf"target {back.addr} down")
    back.start()
    # within the down time clients go to OTHER; then BACK is tried, taken, up
    tags = []
    deadline = time.monotonic() + TIMEOUT
    while not tags or tags[-1] != "BACK":
        assert time.monotonic() < deadline, tags
        tags.append(one_client(port, 7 + len(tags)))
    assert time.monotonic() - before_mark >= 0.3
    p.wait_err(rf"target {back.addr} up")
    assert set(tags[:-1]) <= {"OTHER"}
    assert one_client(port, 50) == "BACK"  # first again: failback


def test_every_target_down_closes_that_client_only(relay, tag_servers, start_duplex):
    d1, d2 = closed_port(), closed_port()
    p, port = relay(["127.0.0.1:0", f"127.0.0.1:{d1}", f"127.0.0.1:{d2}"])
    s = connect(port)
    s.settimeout(TIMEOUT)
    assert s.recv(1) == b""  # closed: no target took it
    s.close()
    p.wait_err(rf"-> 127\.0\.0\.1:{d2}: connect: Connection refused")
    # still serving: both marked down, both tried again for the next client
    s = connect(port)
    s.settimeout(TIMEOUT)
    assert s.recv(1) == b""
    s.close()
    assert len(err_findall(p, r"Connection refused, trying", 2)) == 2, p.err
    # without -k, the one client's outcome is the exit status: 4, refused
    q = start_duplex(["relay", "127.0.0.1:0", f"127.0.0.1:{d1}", f"127.0.0.1:{d2}"])
    m = q.wait_err(LISTENING_RE)
    connect(int(m.group(2))).close()
    assert q.wait() == 4


# ---------------------------------------------------------- balancing --


def test_roundrobin_spreads_clients_exactly_in_turn(relay, tag_servers):
    a, b, c = tag_servers("A", "B", "C")
    p, port = relay(["--balance", "roundrobin", "127.0.0.1:0", f"{a.addr},{b.addr},{c.addr}"])
    tags = [one_client(port, 100 + i) for i in range(9)]
    assert tags == ["A", "B", "C"] * 3
    assert (a.count, b.count, c.count) == (3, 3, 3)
    assert err_findall(p, r": connected to (\S+)", 9) == [a.addr, b.addr, c.addr] * 3


def test_roundrobin_skips_a_down_target(relay, tag_servers):
    a, c = tag_servers("A", "C")
    dead = closed_port()
    p, port = relay(["--balance", "roundrobin", "--down-time", "1h", "127.0.0.1:0", a.addr,
                     f"127.0.0.1:{dead}", c.addr])
    tags = [one_client(port, 200 + i) for i in range(7)]
    # A, then the dead one fails over to C; from then on A and C in turn
    assert tags == ["A", "C", "A", "C", "A", "C", "A"]
    closing_lines(p, 7)  # the last client's: stderr has caught up with its tries
    assert p.err.count("trying") == 1, p.err


def test_leastconn_sends_a_client_to_the_target_with_fewest(relay, tag_servers):
    a, b, c = tag_servers("A", "B", "C")
    p, port = relay(["--balance", "leastconn", "127.0.0.1:0", a.addr, b.addr, c.addr])
    held = {}
    for i in range(3):  # ties: taken in turn
        s, tag = open_client(port)
        held.setdefault(tag, []).append(s)
    assert sorted(held) == ["A", "B", "C"]
    s, tag = open_client(port)  # all equal again: the turn goes on
    held[tag].append(s)
    second = tag
    # two on `second`, one on each other: end the one the turn reaches last
    # (roundrobin would not choose it next); the next client goes to it (0),
    # the one after to a target with 1, never `second` with 2
    emptied = "ABC"["ABC".index(second) - 1]
    finish(held[emptied].pop(), 300)
    p.wait_err(rf"-> 127\.0\.0\.1:{[a, b, c]['ABC'.index(emptied)].port}: sent 200000 bytes")
    s, tag = open_client(port)
    assert tag == emptied
    held[tag].append(s)
    s, tag = open_client(port)
    assert tag != second, "leastconn chose the target with the most connections"
    held[tag].append(s)
    for i, (tag, socks) in enumerate(sorted(held.items())):
        for j, s in enumerate(socks):
            finish(s, 400 + 10 * i + j)


# ------------------------------------------------------------- options --


@pytest.mark.parametrize("args,msg", [
    (["relay", "--balance", "random", "1", "127.0.0.1:2"], "expected first, roundrobin or leastconn"),
    (["listen", "--balance", "first", "1"], "for relay only"),
    (["relay", "--down-time", "x", "1", "127.0.0.1:2"], "invalid --down-time"),
    (["relay", "1", "127.0.0.1:2,"], "invalid relay target ''"),
    (["relay", "1", "127.0.0.1:2", "nope"], "invalid relay target 'nope'"),
    (["relay", "--ssl-target", "1", "a.example:443", "b.example:443"], "--ssl-servername"),
    (["relay", "-u", "1", "127.0.0.1:2", "127.0.0.1:3"], "forwards to one TARGET"),
])
def test_target_option_errors(start_duplex, args, msg):
    p = start_duplex(args)
    assert p.wait() == 2
    assert msg in p.err, p.err
