"""End-to-end tests of duplex's server limits: --max-conns, --allow/--deny
(and their files), --idle-timeout, --max-queue (slow readers) and running out
of file descriptors (EMFILE) without spinning.
Run: DUPLEX=/abs/build/duplex /usr/bin/python3 -m pytest -q tests/e2e"""

import re
import socket
import threading
import time

import pytest

from conftest import LISTENING_RE, TIMEOUT, accept_queue, have_ipv6_loopback, seeded_bytes, sha
from servers_util import (Pump, children, closed_within, connect, cpu_seconds, echo_roundtrip,
                          name_of, open_fds, read_to_eof, recv_exact, rss_kib, said_connected, sockets,
                          spawn_rlimit, wait_for)

__all__ = ["sockets", "spawn_rlimit"]  # fixtures re-exported from servers_util


def assert_refused(sock, timeout=3):
    """The server closed this client at once: EOF or reset, no data."""
    t0 = time.monotonic()
    assert closed_within(sock, timeout), "the server did not close the refused client"
    assert time.monotonic() - t0 < timeout


def assert_served(sock, payload=b"ping\n"):
    assert echo_roundtrip(sock, payload) == payload


# ---------------------------------------------------------- --max-conns --


def test_max_conns_refuses_the_extra_client(start_listener, sockets, backend_env):
    proc, port = start_listener(["--echo", "-k", "-v", "--max-conns", "2"], env=backend_env)
    a, b = sockets([connect(port), connect(port)])
    proc.wait_err(r"connected \(2 now\)")
    c = sockets(connect(port))
    assert_refused(c)
    proc.wait_err(r"refused: --max-conns 2 reached")
    assert_served(a, b"a still here\n")
    assert_served(b, b"b still here\n")
    # a slot frees when a client leaves
    a.shutdown(socket.SHUT_WR)
    assert read_to_eof(a) == (b"", "eof")
    proc.wait_err(re.escape(name_of(a)) + r": closed: finished")
    d = sockets(connect(port))
    assert_served(d, b"d took the slot\n")
    assert_served(b)
    e = sockets(connect(port))
    assert_refused(e)


def test_max_conns_counts_exec_children(start_listener, sockets):
    proc, port = start_listener(["-k", "-v", "--exec", "cat", "-m", "1"])
    a = sockets(connect(port))
    assert_served(a)
    b = sockets(connect(port))
    assert_refused(b)
    proc.wait_err(r"refused: --max-conns 1 reached")
    a.close()
    # once the child has ended, a new client runs
    def served():
        s = sockets(connect(port))
        try:
            s.sendall(b"x\n")
            s.shutdown(socket.SHUT_WR)
            out, _ = read_to_eof(s, timeout=3, allow_reset=True)
            return out == b"x\n"
        except OSError:
            return False
    wait_for(served, 10, "a new client to be served once the first child ended", interval=0.1)


def test_max_conns_bad_values(run_duplex):
    for bad in ("0", "-1", "x", ""):
        rc, out, err = run_duplex(["listen", "-k", "--max-conns", bad, "127.0.0.1", "0"])
        assert rc == 2, (bad, err)
        assert "--max-conns" in err


# ------------------------------------------------------------ --allow/--deny --


def test_allow_only_listed_source(start_listener, sockets):
    proc, port = start_listener(["--echo", "-k", "-v", "--allow", "127.0.0.2/32"])
    a = sockets(connect(port, source="127.0.0.1"))
    assert_refused(a)
    proc.wait_err(r"127\.0\.0\.1:\d+: refused: not allowed by --allow/--deny")
    b = sockets(connect(port, source="127.0.0.2"))
    assert_served(b)


def test_deny_range_refuses(start_listener, sockets):
    proc, port = start_listener(["--echo", "-k", "-v", "--deny", "127.0.0.0/8"])
    for src in ("127.0.0.1", "127.0.0.2"):
        s = sockets(connect(port, source=src))
        assert_refused(s)
    wait_for(lambda: proc.err.count("refused: not allowed") == 2, 5, "two 'refused' lines")
    assert proc.poll() is None


def test_deny_wins_over_allow(start_listener, sockets):
    proc, port = start_listener(["--echo", "-k", "--allow", "127.0.0.0/8", "--deny", "127.0.0.2",
                                 "--allow", "127.0.0.2"])
    assert_refused(sockets(connect(port, source="127.0.0.2")))
    assert_served(sockets(connect(port, source="127.0.0.1")))
    assert_served(sockets(connect(port, source="127.0.0.3")))


def test_allow_host_bits_and_several_rules(start_listener, sockets):
    # 127.0.0.9/31 means 127.0.0.8/31: .8 and .9
    proc, port = start_listener(["--echo", "-k", "--allow", "127.0.0.9/31", "--allow", "127.0.0.1"])
    for src, ok in (("127.0.0.8", True), ("127.0.0.9", True), ("127.0.0.10", False),
                    ("127.0.0.1", True), ("127.0.0.7", False)):
        s = sockets(connect(port, source=src))
        if ok:
            assert_served(s)
        else:
            assert_refused(s)


ipv6 = pytest.mark.skipif(not have_ipv6_loopback(), reason="no IPv6 loopback")


@ipv6
def test_ipv6_deny(start_listener, sockets):
    proc, port = start_listener(["--echo", "-k", "-v", "--deny", "::1/128"], addr="::1")
    assert_refused(sockets(connect(port, host="::1")))
    proc.wait_err(r"\[::1\]:\d+: refused: not allowed")


@ipv6
def test_ipv6_allow(start_listener, sockets):
    proc, port = start_listener(["--echo", "-k", "--allow", "::1"], addr="::1")
    assert_served(sockets(connect(port, host="::1")))


@ipv6
def test_ipv4_rule_does_not_admit_ipv6(start_listener, sockets):
    proc, port = start_listener(["--echo", "-k", "--allow", "127.0.0.1", "--allow", "::2"],
                                addr="::1")
    assert_refused(sockets(connect(port, host="::1")))


@ipv6
def test_dual_stack_v4_client_matches_v4_rule(start_duplex, sockets):
    """Listening on every address (one dual-stack socket): an IPv4 client
    arrives as ::ffff:127.0.0.2 and must match IPv4 rules."""
    proc = start_duplex(["listen", "--echo", "-k", "--deny", "127.0.0.2", "0"])
    port = int(proc.wait_err(LISTENING_RE).group(2))
    assert_refused(sockets(connect(port, source="127.0.0.2")))
    assert_served(sockets(connect(port, source="127.0.0.1")))
    assert_served(sockets(connect(port, host="::1")))


def test_allowfile_with_comments(start_listener, sockets, tmp_path):
    f = tmp_path / "allow.txt"
    f.write_text("# clients we serve\n\n   127.0.0.2   # the second one\n\t# indented comment\n"
                 "10.0.0.0/8\n::1/128\n")
    proc, port = start_listener(["--echo", "-k", "--allowfile", str(f)])
    assert_refused(sockets(connect(port, source="127.0.0.1")))
    assert_served(sockets(connect(port, source="127.0.0.2")))


def test_denyfile(start_listener, sockets, tmp_path):
    f = tmp_path / "deny.txt"
    f.write_text("127.0.0.3 # no\n127.0.0.4/32\n")
    proc, port = start_listener(["--echo", "-k", "--denyfile", str(f)])
    assert_refused(sockets(connect(port, source="127.0.0.3")))
    assert_refused(sockets(connect(port, source="127.0.0.4")))
    assert_served(sockets(connect(port, source="127.0.0.1")))


@pytest.mark.parametrize("args", [
    ["--allow", "300.1.1.1"],
    ["--allow", "10.0.0.0/33"],
    ["--allow", "::1/129"],
    ["--deny", "non sense"],  # a host name would be resolved (exit 3 if not)
    ["--deny", "10.0.0.0/"],
    ["--deny", "10.0.0.0/8x"],
    ["--allow", ""],
    ["--allow", "local_host"],  # not a host name either (host names: test_ncat_options.py)
])
def test_bad_rule_exits_2(args, run_duplex):
    rc, out, err = run_duplex(["listen", "-k", "--echo", *args, "127.0.0.1", "0"])
    assert rc == 2, err
    assert "invalid " + args[0] + " rule" in err
    assert "listening" not in err


def test_bad_rule_file_line_and_missing_file(run_duplex, tmp_path):
    f = tmp_path / "bad.txt"
    f.write_text("# ok\n127.0.0.1\nnot_an_address\n")
    rc, _, err = run_duplex(["listen", "-k", "--allowfile", str(f), "127.0.0.1", "0"])
    assert rc == 2, err
    assert f"{f}:3: not an address or CIDR range" in err
    rc, _, err = run_duplex(["listen", "-k", "--denyfile", str(tmp_path / "missing"), "127.0.0.1", "0"])
    assert rc == 2, err
    assert "--denyfile" in err


# ---------------------------------------------------------- --idle-timeout --


def closed_while_other_talks(idle, active, t0, watch=TIMEOUT):
    """Keep `active` busy (an echo every 0.1 s) while watching `idle`, until
    `idle` has been closed and a second more (or `watch` s have passed);
    returns when `idle` was closed, in seconds after t0. The talk lasts as
    long as the wait does, not a fixed time that a busy machine could
    outrun; use an --idle-timeout of 2 s: 20 times the pace, so that only a
    stall of the test of nearly 2 s could leave `active` idle that long."""
    closed_at = [None]

    def watch_idle():
        if closed_within(idle, watch):
            closed_at[0] = time.monotonic() - t0

    t = threading.Thread(target=watch_idle, daemon=True)
    t.start()
    n = 0
    while t.is_alive() or (closed_at[0] is not None and time.monotonic() < t0 + closed_at[0] + 1.0):
        assert_served(active, b"tick %d\n" % n)
        n += 1
        time.sleep(0.1)
    assert closed_at[0] is not None, "the idle client was not closed"
    return closed_at[0]


def test_idle_timeout_closes_idle_keeps_active(start_listener, sockets, backend_env):
    proc, port = start_listener(["--echo", "-k", "-v", "--idle-timeout", "2"], env=backend_env)
    t0 = time.monotonic()
    idle = sockets(connect(port))
    active = sockets(connect(port))
    closed_at = closed_while_other_talks(idle, active, t0)
    # not before the timeout; that it was closed at all (within the watch) is the upper bound
    assert closed_at >= 1.9, f"idle client closed after {closed_at:.2f}s"
    proc.wait_err(re.escape(name_of(idle)) + r": closed: idle")
    assert_served(active, b"still alive\n")
    # and now the active one goes idle too
    assert closed_within(active, TIMEOUT)
    proc.wait_err(re.escape(name_of(active)) + r": closed: idle")
    # read up to that line: the active one was closed once, only now
    assert proc.err.count(name_of(active) + ": closed") == 1, proc.err


def test_idle_timeout_closes_idle_exec_client_keeps_active(start_listener, sockets):
    """--exec clients: the child owns the socket, the server watches the
    connection (TCP_INFO) and stops the idle child."""
    proc, port = start_listener(["--exec", "cat", "-k", "-v", "--idle-timeout", "2"])
    t0 = time.monotonic()
    idle = sockets(connect(port))
    active = sockets(connect(port))
    assert echo_roundtrip(idle, b"once\n") == b"once\n"
    wait_for(lambda: len(children(proc.pid)) == 2, 5, "two cat processes")
    closed_at = closed_while_other_talks(idle, active, t0)
    # not before the timeout; that it was closed at all (within the watch) is the upper bound
    assert closed_at >= 1.9, f"idle client closed after {closed_at:.2f}s"
    proc.wait_err(re.escape(name_of(idle)) + r": closed: idle for 2 s \(process \d+ stopped\)")
    # the idle client's cat is gone (reaped, no zombie); the active one's runs
    wait_for(lambda: len(children(proc.pid)) == 1, 5, "one cat process left")
    assert_served(active, b"still alive\n")
    # one client more: stderr read up to its line
    proc.wait_err(re.escape(name_of(sockets(connect(port)))) + r": connected, running process")
    assert name_of(active) + ": closed" not in proc.err


def test_idle_timeout_stops_exec_child_that_never_talks(start_listener, sockets):
    proc, port = start_listener(["--sh-exec", "sleep 60", "-k", "-v", "--idle-timeout", "0.5"])
    c = sockets(connect(port))
    wait_for(lambda: children(proc.pid), 5, "the child process")
    assert closed_within(c, 4), "the idle client was not closed"
    # sh and the sleep it started (same process group) are stopped and reaped
    wait_for(lambda: not children(proc.pid), 5, "no child left")
    proc.wait_err(r"closed: idle for 0\.5 s \(process \d+ stopped\)")
    assert proc.poll() is None


# ------------------------------------------------------------ --max-queue --


def test_slow_reader_is_dropped_memory_stays_bounded(start_listener, sockets):
    proc, port = start_listener(["--broker", "--no-stdio", "-k", "-v", "--max-queue", "65536"])
    # the lazy client never reads; a small receive buffer makes it fill fast
    lazy = sockets(connect(port, rcvbuf=4096))
    sender = sockets(connect(port))
    receiver = sockets(connect(port))
    proc.wait_err(r"connected \(3 now\)")
    total = 10 << 20
    # The sender stays at most WINDOW bytes ahead of the receiver: the
    # receiver keeps up, so it must never be dropped (an unpaced sender can get a
    # reading client dropped too, as its queue exceeds --max-queue).
    window = 256 << 10
    data = seeded_bytes(total, 16)  # the receiver must get these very bytes
    step = 1 << 14
    rss_max = rss_kib(proc.pid)
    pump = Pump([sender, receiver])
    sent = 0
    deadline = time.monotonic() + 60
    while len(pump.received[1]) < total:
        if time.monotonic() > deadline:
            pytest.fail(f"receiver got {len(pump.received[1])} of {total} bytes in 60 s; stderr={proc.err[-500:]!r}")
        while sent < total and sent - len(pump.received[1]) < window:
            pump.send(0, data[sent:sent + step])
            sent += step
        target = total if sent >= total else sent - window // 2
        pump.run(done=lambda i, d: i == 0 or len(d) >= target or pump.eof[i] is not None,
                 timeout=20)
        assert pump.eof[1] is None, f"receiver closed ({pump.eof[1]}) after {len(pump.received[1])} bytes: {proc.err[-500:]!r}"
        rss_max = max(rss_max, rss_kib(proc.pid))
    assert len(pump.received[1]) == total
    assert sha(bytes(pump.received[1])) == sha(data), "the receiver got other bytes than were sent"
    assert pump.received[0] == b"", "the sender got its own bytes back"
    assert rss_max < 64 * 1024, f"server RSS reached {rss_max} KiB"
    # the lazy client was dropped: after what the kernel holds, EOF (or reset)
    _, how = read_to_eof(lazy, timeout=10, allow_reset=True)
    assert how in ("eof", "reset")
    proc.wait_err(re.escape(name_of(lazy)) + r": closed: not reading")
    # one client more: stderr read up to its line, and "(3 now)": the
    # sender and the receiver are still there
    said_connected(proc, sockets(connect(port)), now=3)
    assert name_of(receiver) + ": closed" not in proc.err
    assert name_of(sender) + ": closed" not in proc.err
    assert proc.poll() is None


def test_max_queue_bad_values(run_duplex):
    for bad in ("1000", "x", "-5"):
        rc, _, err = run_duplex(["listen", "-k", "--broker", "--max-queue", bad, "127.0.0.1", "0"])
        assert rc == 2, (bad, err)


# ------------------------------------------------------------------ EMFILE --


def test_emfile_pauses_without_spinning_and_recovers(spawn_rlimit, sockets, backend):
    proc, port = spawn_rlimit(["--echo", "-k", "-v", "--backend", backend], nofile=64)
    clients = sockets([connect(port) for _ in range(100)])
    # the server takes what its descriptors allow, then waits
    wait_for(lambda: "accept: Too many open files" in proc.err, 5, "the EMFILE message")
    n_accepted = len(re.findall(r": connected \(", proc.err))
    assert 40 <= n_accepted <= 62, n_accepted
    assert proc.poll() is None

    cpu0, t0 = cpu_seconds(proc.pid), time.monotonic()
    time.sleep(2)
    cpu1, t1 = cpu_seconds(proc.pid), time.monotonic()
    assert cpu1 - cpu0 < 0.5, f"server used {cpu1 - cpu0:.2f}s CPU in {t1 - t0:.2f}s: spinning"

    # the clients it holds are served
    for s in clients[:n_accepted]:
        assert_served(s, b"held\n")
    # the others wait in the accept queue; their bytes wait too
    for s in clients[n_accepted:]:
        s.sendall(b"queued\n")
    clients[-1].settimeout(0.5)
    with pytest.raises(socket.timeout):
        clients[-1].recv(100)
    # the evidence: they are still in the kernel's accept queue, not taken and dropped
    assert accept_queue(port) >= 1, "the queued clients were taken off the accept queue"
    assert len(re.findall(r": connected \(", proc.err)) == n_accepted

    # freeing descriptors lets the queue move again
    for s in clients[:50]:
        s.close()
    for s in clients[n_accepted:]:
        assert recv_exact(s, 7, timeout=10) == b"queued\n"
    fresh = sockets([connect(port) for _ in range(5)])
    for s in fresh:
        assert_served(s, b"fresh\n")
    for s in clients[50:n_accepted]:
        assert_served(s, b"old\n")
    assert proc.poll() is None
    assert open_fds(proc.pid) <= 64
