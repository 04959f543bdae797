"""`duplex relay -u LISTEN TARGET`: a UDP forwarder with a session (a socket
connected to TARGET) per client address. A DNS-like target in the test
process answers each query with f(query), so every answer is checked to come
back to the client that asked, whole; dig through the relay to a tiny DNS
responder gets the answer it gets directly and through socat
`UDP4-LISTEN:...,fork UDP4:...`. Idle timeout, --max-conns, --deny, a
65507-byte datagram, a target that is down (ICMP port unreachable) and then
back. Sessions are counted from /proc/net/udp (sockets connected to the
target's port). Loopback only; every process is started through the spawn
fixture and killed by PID."""

import contextlib
import json
import os
import re
import select
import signal
import socket
import struct
import threading
import time

import pytest

from conftest import TIMEOUT, free_port, have_ipv6_loopback, need, proc_net_sockets, stat_fields, wait_listening

UDP_LISTENING_RE = re.compile(r"duplex: listening on (\S+):(\d+) \(udp\)\s*$", re.M)


def answer(query):
    """The target's answer: the query reversed, behind a tag (one byte more)."""
    return b"A" + query[::-1]


class UdpTarget:
    """A UDP server on a thread: each datagram answered with reply(datagram)
    (None: no answer), every sender address recorded."""

    def __init__(self, host="127.0.0.1", port=0, reply=answer):
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.sock = socket.socket(family, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        self.sock.bind((host, port))
        self.port = self.sock.getsockname()[1]
        self.reply = reply
        self.sources = set()
        self.received = 0
        self.lock = threading.Lock()
        self.stopping = False
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        while not self.stopping:
            r, _, _ = select.select([self.sock], [], [], 0.1)
            if not r:
                continue
            try:
                data, src = self.sock.recvfrom(65536)
            except OSError:
                continue
            with self.lock:
                self.sources.add(src[:2])
                self.received += 1
            out = self.reply(data)
            if out is not None:
                self.sock.sendto(out, src)

    def close(self):
        self.stopping = True
        self.thread.join(5)
        self.sock.close()


@pytest.fixture
def udp_target():
    made = []

    def _make(**kw):
        t = UdpTarget(**kw)
        made.append(t)
        return t

    yield _make
    for t in made:
        t.close()


def client(host="127.0.0.1", source=None):
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    s = socket.socket(family, socket.SOCK_DGRAM)
    s.settimeout(TIMEOUT)
    s.bind((source or host, 0))
    return s


def start_relay(start_duplex, target, args=(), listen="127.0.0.1:0"):
    p = start_duplex(["relay", "-u", "-k", *args, listen, target])
    return p, int(p.wait_err(UDP_LISTENING_RE).group(2))


def upstream_sockets(target_port):
    """The relay's sessions: UDP sockets connected to the target's port."""
    return proc_net_sockets(target_port, "udp", remote=True)


def wait_for(cond, what, timeout=TIMEOUT):
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.01)


@contextlib.contextmanager
def stopped(proc):
    """The process stopped (SIGSTOP, seen in /proc) for the block: what is
    sent to it meanwhile waits in its sockets, and it reads it all in one go
    when it goes on, before a timer of its can run out in between."""
    os.kill(proc.pid, signal.SIGSTOP)
    try:
        wait_for(lambda: stat_fields(proc.pid)[0] == "T", "the process to stop")
        yield
    finally:
        os.kill(proc.pid, signal.SIGCONT)


def nth(pattern, n):
    """A regex for stderr up to pattern's n-th match (pattern: one line)."""
    return r"(?s)(?:%s.*?){%d}%s" % (pattern, n - 1, pattern)


def json_lines(text):
    return [json.loads(line) for line in text.decode().splitlines() if line.startswith("{")]


# ------------------------------------------------------------ many clients --


def test_sixty_clients_each_gets_its_own_answers(start_duplex, udp_target):
    """60 clients at once, 20 numbered datagrams each (random sizes and
    bytes): every answer is f(this client's own query), in order; the target
    sees one source address per client (a socket each), and SIGTERM reports
    every session as a JSON line with its datagram and byte counts."""
    t = udp_target()
    relay, port = start_relay(start_duplex, f"127.0.0.1:{t.port}", ["--stats-json"])
    clients = [client() for _ in range(60)]
    sent = {c.getsockname()[1]: [] for c in clients}
    try:
        for seq in range(20):
            want = {}
            for i, c in enumerate(clients):
                q = b"%03d:%03d:" % (i, seq) + os.urandom(1 + (i * 37 + seq * 11) % 400)
                c.sendto(q, ("127.0.0.1", port))
                want[c] = answer(q)
                sent[c.getsockname()[1]].append(q)
            deadline = time.monotonic() + TIMEOUT
            while want:
                left = deadline - time.monotonic()
                assert left > 0, f"round {seq}: {len(want)} clients got no answer"
                ready, _, _ = select.select(list(want), [], [], left)
                for c in ready:
                    data, src = c.recvfrom(65536)
                    assert src == ("127.0.0.1", port)
                    assert data == want.pop(c), f"round {seq}: a wrong answer reached a client"
        assert len(t.sources) == 60
        assert upstream_sockets(t.port) == 60
        relay.popen.send_signal(signal.SIGTERM)
        assert relay.wait() == 128 + signal.SIGTERM
        stats = json_lines(relay.out)
        assert len(stats) == 60
        for s in stats:
            qs = sent[int(s["client"].rsplit(":", 1)[1])]
            assert s["target"] == f"127.0.0.1:{t.port}"
            assert s["datagrams_up"] == s["datagrams_down"] == 20
            assert s["bytes_up"] == sum(map(len, qs))
            assert s["bytes_down"] == s["bytes_up"] + 20
            assert s["error"] is None and s["duration_ms"] >= 0
    finally:
        for c in clients:
            c.close()


def test_datagram_boundaries_and_largest_datagram(start_duplex, udp_target):
    """A burst of datagrams of every kind of size, 0 to 65507 bytes (the
    largest over IPv4), sent before reading: each comes back as one answer
    of its own, never merged or split."""
    t = udp_target(reply=lambda q: q[::-1])
    relay, port = start_relay(start_duplex, f"127.0.0.1:{t.port}", ["-O", "rcvbuf=1048576"])
    sizes = [65507, 0, 1, 1472, 1473, 9000, 65507, 2, 32768]
    with client() as c:
        c.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        queries = [os.urandom(n) for n in sizes]
        for q in queries:
            c.sendto(q, ("127.0.0.1", port))
        for q in queries:
            data = c.recv(65536)
            assert len(data) == len(q) and data == q[::-1]


def test_dig_through_relay_and_socat(start_duplex, spawn, udp_target):
    """dig @relay -p PORT: the answer of a tiny DNS responder, the same
    directly, through duplex relay -u and through socat
    UDP4-LISTEN:PORT,fork UDP4:TARGET doing the same job."""
    dig = need("dig")
    need("socat")

    def dns(q):
        qid, = struct.unpack("!H", q[:2])
        end = q.index(b"\0", 12) + 5  # the question: the name, type, class
        name = q[12:end - 4]
        rr = struct.pack("!HHHIH4B", 0xC00C, 1, 1, 60, 4, 192, 0, 2, len(name) % 250)
        return struct.pack("!HHHHHH", qid, 0x8180, 1, 1, 0, 0) + q[12:end] + rr

    t = udp_target(reply=dns)
    relay, port = start_relay(start_duplex, f"127.0.0.1:{t.port}", ["-v"])
    for _ in range(5):  # the port was free a moment ago
        sport = free_port(kind=socket.SOCK_DGRAM)
        socat = spawn(["socat", f"UDP4-LISTEN:{sport},bind=127.0.0.1,fork,reuseaddr",
                       f"UDP4:127.0.0.1:{t.port}"], name="socat")
        try:
            wait_listening(sport, timeout=5, proc=socat, udp=True)
            break
        except pytest.fail.Exception:
            socat.kill()
    names = ["a.example", "bb.example", "duplex.test"]
    results = {}
    for how, p in (("direct", t.port), ("duplex", port), ("socat", sport)):
        out = spawn([dig, "@127.0.0.1", "-p", str(p), "+tries=1", "+time=5", "+short", *names],
                    name=f"dig {how}")
        assert out.wait() == 0, out.err
        results[how] = out.out.decode().split()
    assert results["direct"] == [f"192.0.2.{len(n) + 2}" for n in names]
    assert results["duplex"] == results["direct"] == results["socat"]
    relay.wait_err(r"127\.0\.0\.1:\d+: new session, to 127\.0\.0\.1:%d" % t.port)


# --------------------------------------------------------- session limits --


def test_idle_timeout_frees_session(start_duplex, udp_target):
    """--idle-timeout: a quiet session's socket is closed (gone from
    /proc/net/udp, a -v line); the client's next datagram opens a new one
    and is answered."""
    t = udp_target()
    relay, port = start_relay(start_duplex, f"127.0.0.1:{t.port}", ["-v", "--idle-timeout", "0.3"])
    # Each session is proved by its -v lines and the target, not by a look
    # at /proc/net/udp right after its answer: 0.3 s later (sooner than a
    # busy machine runs the test's next line) the socket may be gone.
    with client() as c:
        me = c.getsockname()[1]
        opened = (r"127\.0\.0\.1:%d: new session, to 127\.0\.0\.1:%d from 127\.0\.0\.1:(\d+) "
                  r"\(1 session\)" % (me, t.port))
        closed = (r"127\.0\.0\.1:%d -> 127\.0\.0\.1:%d: sent 1 datagram \(3 bytes\), received 1 "
                  r"datagram \(4 bytes\) in [\d.]+ s, closed: idle for 0\.3 s" % (me, t.port))
        for n, query in enumerate((b"one", b"two"), 1):
            c.sendto(query, ("127.0.0.1", port))
            assert c.recv(100) == answer(query)
            # the n-th session's socket: the one the target heard from;
            # "(1 session)": the one before it was gone from the relay
            upto = relay.wait_err(nth(opened, n)).group(0)
            assert ("127.0.0.1", int(re.findall(opened, upto)[-1])) in t.sources
            relay.wait_err(nth(closed, n))
            wait_for(lambda: upstream_sockets(t.port) == 0, f"session {n}'s socket to close")


def test_max_conns_drops_new_clients_until_a_session_ends(start_duplex, udp_target):
    """--max-conns 2: a third client's datagrams are dropped, never reach
    the target (said once with -v while it keeps sending); once a session
    has ended (idle), the third client is served."""
    t = udp_target()
    relay, port = start_relay(start_duplex, f"127.0.0.1:{t.port}",
                              ["-v", "--max-conns", "2", "--idle-timeout", "0.5"])
    with client() as a, client() as b, client() as c:
        # all four read in one go: no session can idle out (0.5 s: a busy
        # machine's pause between two of the test's lines) before c's two
        with stopped(relay):
            for s, query in ((a, b"hi"), (b, b"hi"), (c, b"first"), (c, b"second")):
                s.sendto(query, ("127.0.0.1", port))
        for s in (a, b):
            assert s.recv(100) == answer(b"hi")
        relay.wait_err(r"127\.0\.0\.1:%d: datagram dropped: --max-conns reached \(2 sessions"
                       % c.getsockname()[1])
        a.sendto(b"still", ("127.0.0.1", port))  # a round trip after c's two: both handled
        assert a.recv(100) == answer(b"still")
        assert t.received == 3
        c.setblocking(False)
        with pytest.raises(BlockingIOError):
            c.recv(100)
        c.setblocking(True)
        relay.wait_err(r"closed: idle")
        # written after c's two were handled: stderr has caught up with them
        assert relay.err.count("--max-conns reached") == 1
        c.sendto(b"third", ("127.0.0.1", port))
        assert c.recv(100) == answer(b"third")


def test_deny_drops_client_allowed_one_served(start_duplex, udp_target):
    """--deny 127.0.0.2: that client's datagrams are dropped through the
    shared access list (its -v line names the rule), no session or socket
    is made for it; 127.0.0.1 is served; the totals count the drops."""
    t = udp_target()
    relay, port = start_relay(start_duplex, f"127.0.0.1:{t.port}", ["-v", "--deny", "127.0.0.2"])
    with client(source="127.0.0.2") as bad, client() as good:
        for i in range(3):
            bad.sendto(b"let me in %d" % i, ("127.0.0.1", port))
        relay.wait_err(r"127\.0\.0\.2:\d+: refused: not allowed by --allow/--deny \(matches deny "
                       r"rule 127\.0\.0\.2/32\)")
        good.sendto(b"ok", ("127.0.0.1", port))
        assert good.recv(100) == answer(b"ok")
        assert t.received == 1 and len(t.sources) == 1  # good's session only
        assert upstream_sockets(t.port) == 1
        # good's -v line comes after bad's three: stderr has caught up with them
        relay.wait_err(r"127\.0\.0\.1:%d: new session" % good.getsockname()[1])
        assert relay.err.count("refused: not allowed") == 1  # said once while it keeps sending
    relay.popen.send_signal(signal.SIGTERM)
    relay.wait()
    assert "relayed 1 session; 0 failed; dropped 0 datagrams (limit), 3 (access list)" in relay.err


def test_access_list_on_dual_stack_socket(start_duplex, udp_target):
    """A bare port (one IPv6 socket for both families): an IPv4 client
    arrives as ::ffff:127.0.0.1 and is still matched as 127.0.0.1, by
    --deny 127.0.0.0/8 (dropped) and by --allow 127.0.0.1 (served)."""
    if not have_ipv6_loopback():
        pytest.skip("no IPv6 loopback")
    t = udp_target()
    for rule, served in (("--deny", False), ("--allow", True)):
        port = free_port(kind=socket.SOCK_DGRAM)
        value = "127.0.0.0/8" if rule == "--deny" else "127.0.0.1"
        relay = start_duplex(["relay", "-u", "-k", "-v", rule, value, str(port), f"127.0.0.1:{t.port}"])
        relay.wait_err(r"listening on \[::\]:%d \(udp\)" % port)
        with client() as c:
            c.sendto(b"v4 via v6", ("127.0.0.1", port))
            if served:
                assert c.recv(100) == answer(b"v4 via v6")
            else:
                relay.wait_err(r"127\.0\.0\.1:%d: refused: not allowed" % c.getsockname()[1])
        relay.kill()
    assert t.received == 1


def test_target_down_then_back(start_duplex):
    """A target that is down answers with ICMP port unreachable: that
    session ends with 'Connection refused' (a JSON line), the relay goes on;
    once the target is up, the client's next datagram is answered."""
    tport = free_port(kind=socket.SOCK_DGRAM)
    relay, port = start_relay(start_duplex, f"127.0.0.1:{tport}", ["--stats-json"])
    with client() as c:
        c.sendto(b"anyone?", ("127.0.0.1", port))
        line = json.loads(relay.wait_out(lambda o: b"\n" in o).split(b"\n")[0])
        assert line["error"] == "Connection refused" and line["datagrams_up"] == 1
        relay.wait_err(r"127\.0\.0\.1:\d+ -> 127\.0\.0\.1:%d: Connection refused" % tport)
        assert relay.poll() is None
        t = UdpTarget(port=tport)
        try:
            c.sendto(b"now?", ("127.0.0.1", port))
            assert c.recv(100) == answer(b"now?")
        finally:
            t.close()


# ------------------------------------------------------------------- IPv6 --


def test_ipv6_and_dual_stack(start_duplex, udp_target):
    """[::1] on both sides; and a relay on every address (bare port) to an
    IPv6 target, an IPv4 client named as IPv4 in -v."""
    if not have_ipv6_loopback():
        pytest.skip("no IPv6 loopback")
    t = udp_target(host="::1")
    relay, port = start_relay(start_duplex, f"[::1]:{t.port}", ["-v"], listen="[::1]:0")
    with client("::1") as c:
        c.sendto(b"six", ("::1", port))
        assert c.recv(100) == answer(b"six")
    relay.wait_err(r"\[::1\]:\d+: new session, to \[::1\]:%d" % t.port)
    port2 = free_port(kind=socket.SOCK_DGRAM)
    both = start_duplex(["relay", "-u", "-k", "-v", str(port2), f"[::1]:{t.port}"])
    both.wait_err(r"listening on \[::\]:%d \(udp\)" % port2)
    with client() as c:
        c.sendto(b"four", ("127.0.0.1", port2))
        assert c.recv(100) == answer(b"four")
        both.wait_err(r"127\.0\.0\.1:%d: new session" % c.getsockname()[1])


# ------------------------------------------------------------------ usage --


def test_without_k_one_client_then_exit(start_duplex, udp_target):
    """Without -k: the first client only (another's datagrams dropped, -v),
    and the relay exits 0 when its session ends."""
    t = udp_target()
    relay = start_duplex(["relay", "-u", "-v", "--idle-timeout", "0.3", "127.0.0.1:0",
                          f"127.0.0.1:{t.port}"])
    port = int(relay.wait_err(UDP_LISTENING_RE).group(2))
    with client() as a, client() as b:
        # both read in one go: a's session cannot idle out (and the relay
        # exit) before b's datagram is there to be dropped
        with stopped(relay):
            a.sendto(b"me", ("127.0.0.1", port))
            b.sendto(b"me too", ("127.0.0.1", port))
        assert a.recv(100) == answer(b"me")
        relay.wait_err(r"datagram dropped: one client only without -k")
        assert relay.wait() == 0


@pytest.mark.parametrize("args, why", [
    (["-w", "2", "0", "127.0.0.1:53"], r"-w bounds a TCP connect"),
    (["0", "unix:/tmp/x.sock"], r"not Unix sockets"),
    (["--ssl", "0", "127.0.0.1:53"], r"not with -u"),
])
def test_usage_errors(run_duplex, args, why):
    rc, _, err = run_duplex(["relay", "-u", *args])
    assert rc == 2
    assert re.search(why, err), err
