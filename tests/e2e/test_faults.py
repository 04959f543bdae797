"""Fault injection, end to end: peers that reset, die (SIGKILL) or half-close
early in the middle of a transfer; servers that must keep serving the others
when one client resets; slowloris; readers that never read (bounded server
memory); descriptor exhaustion for relay -k; writing to a closed peer without
dying of SIGPIPE; SIGINT/SIGTERM on servers (exit 128+signal, listener
closed, children stopped, Unix path removed) and a second signal that ends
the process at once.

Loopback and Unix paths only; every process is started through `spawn` (or a
`spawn_limited`, which lowers an rlimit) and killed and reaped by PID at
teardown.
Run: DUPLEX=/abs/build/duplex /usr/bin/python3 -m pytest -q tests/e2e/test_faults.py"""

import fcntl
import os
import re
import select
import selectors
import signal
import socket
import struct
import subprocess
import sys
import termios
import threading
import time

import pytest

from conftest import (LISTENING_RE, TIMEOUT, accept_queue, alive, descendants, seeded_bytes, sha, tcp_queues,
                      wait_unix_listening)
from servers_util import (closed_within, connect, cpu_seconds, echo_roundtrip, name_of, open_fds,
                          open_many, raise_nofile, read_to_eof, recv_exact, rss_kib, sockets,
                          wait_for)

__all__ = ["sockets"]  # fixture re-exported from servers_util

RESET_RE = r"duplex: .*(Connection reset by peer|Broken pipe)"
RSS_LIMIT_KIB = 64 * 1024


def rst_close(sock):
    """Close with SO_LINGER {1, 0}: the kernel sends a reset."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


def kill_pids(pids):
    for p in pids:
        try:
            os.kill(p, signal.SIGKILL)
        except OSError:
            pass


@pytest.fixture
def reaped_pids():
    """Pids of grandchildren we may have to clean up (killed by PID)."""
    pids = []
    yield pids
    kill_pids(pids)


def listening_port(proc):
    return int(proc.wait_err(LISTENING_RE).group(2))


# ------------------------------------------------ peer resets mid-transfer --


@pytest.mark.parametrize("sending", [False, True], ids=["receiving", "sending-and-receiving"])
def test_peer_reset_mid_transfer_reported_nothing_lost(server, start_duplex, backend_env, sending):
    """The peer sends 1 MiB, then resets. duplex (receiving, and also
    sending 64 MiB of stdin at the same time) reports the reset, exits 1, and
    its stdout holds every byte that had arrived before the reset."""
    data = os.urandom(1 << 20)
    ready = threading.Event()

    def script(conn, res):
        conn.sendall(data)
        if not sending:
            ready.wait(TIMEOUT)
        else:
            # read some of duplex's stream so that it is sending mid-transfer
            got = 0
            while got < (1 << 20):
                b = conn.recv(65536)
                if not b:
                    break
                got += len(b)
            res["got"] = got
        # the 1 MiB has reached duplex's side (all acknowledged) before the reset
        wait_for(lambda: unsent_bytes(conn) == 0, TIMEOUT, "the peer's data acknowledged")
        rst_close(conn)

    srv = server(script)
    stdin = os.urandom(1 << 16) * 1024 if sending else subprocess.PIPE
    cli = start_duplex(["connect", "127.0.0.1", srv.port], stdin=stdin, env=backend_env)
    cli.wait_out(lambda b: len(b) >= len(data) or b != data[:len(b)], timeout=TIMEOUT)
    ready.set()
    srv.join()
    rc = cli.wait()
    assert rc == 1, (rc, cli.err)
    assert re.search(RESET_RE, cli.err), cli.err
    assert cli.out == data, f"stdout has {len(cli.out)} bytes, sha ok={cli.out == data[:len(cli.out)]}"


def answer_then_reset(reply, acked):
    """A peer's script: read 256 KiB of what it is sent (the other side is
    sending mid-transfer), send `reply`, wait until it is all acknowledged
    (it has reached the other side's socket), set `acked`, then reset with
    the rest of the other side's bytes unread."""

    def script(conn, res):
        got = 0
        while got < (256 << 10):
            b = conn.recv(65536)
            if not b:
                break
            got += len(b)
        conn.sendall(reply)
        wait_for(lambda: unsent_bytes(conn) == 0, TIMEOUT, "the answer acknowledged")
        acked.set()
        rst_close(conn)

    return script


def test_answer_before_reset_reaches_stdout_when_the_send_fails(server, start_duplex, backend_env):
    """The peer answers 48 KiB and resets while duplex is still sending
    (a server that replies and closes with our request unread). duplex's
    stdout is a socket that holds 8 KiB and nobody reads yet, and its buffer
    is 16 KiB: most of the answer still waits in duplex's socket when its
    send fails. It must all come out before duplex reports the failure
    (exit 1); closing at the send error lost it."""
    reply = seeded_bytes(48 << 10, 7)
    acked = threading.Event()
    srv = server(answer_then_reset(reply, acked))
    ours, theirs = socket.socketpair()
    with ours:
        with theirs:
            theirs.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
            cli = start_duplex(["connect", "--buffer-size", "16384", "127.0.0.1", srv.port],
                               stdin=seeded_bytes(1 << 16, 1) * 1024, stdout=theirs.fileno(), env=backend_env)
        assert acked.wait(TIMEOUT), "the peer's answer was not acknowledged"
        srv.join()
        out, _ = read_to_eof(ours, TIMEOUT)
    rc = cli.wait()
    assert out == reply, f"stdout has {len(out)} of {len(reply)} bytes, prefix ok={out == reply[:len(out)]}"
    assert rc == 1, (rc, cli.err)
    assert re.search(RESET_RE, cli.err), cli.err


def test_relay_passes_the_answer_before_the_target_reset(server, start_duplex, tmp_path, backend_env):
    """relay: the target answers 384 KiB and resets while the client is
    still sending to it. The client (on a Unix socket, whose buffers do not
    grow) reads nothing until then, and the relay's buffer is 16 KiB, so
    most of the answer waits in the relay's socket to the target when its
    send there fails. The client must still get all of it, then its end;
    closing the pair at the send error lost it."""
    reply = seeded_bytes(384 << 10, 11)
    acked = threading.Event()
    srv = server(answer_then_reset(reply, acked))
    path = str(tmp_path / "relay.sock")
    relay = start_duplex(["relay", "-v", "--buffer-size", "16384", "-O", "rcvbuf=262144", f"unix:{path}",
                          f"127.0.0.1:{srv.port}"], env=backend_env)
    wait_unix_listening(path, proc=relay)
    with socket.socket(socket.AF_UNIX) as cl:
        cl.connect(path)

        def feed():
            try:
                cl.sendall(seeded_bytes(1 << 16, 1) * 1024)
            except OSError:
                pass  # the relay closes us once the target has gone

        sender = threading.Thread(target=feed, daemon=True)
        sender.start()
        assert acked.wait(TIMEOUT), "the target's answer was not acknowledged"
        srv.join()
        out, _ = read_to_eof(cl, TIMEOUT, allow_reset=True)
    sender.join(TIMEOUT)
    assert out == reply, f"the client got {len(out)} of {len(reply)} bytes, prefix ok={out == reply[:len(out)]}"
    relay.wait_err(r"-> 127\.0\.0\.1:%d: target: (Connection reset by peer|Broken pipe)" % srv.port)


def unsent_bytes(sock):
    """Bytes in the socket's send queue not yet acknowledged by the peer."""
    return struct.unpack("i", fcntl.ioctl(sock.fileno(), termios.TIOCOUTQ, b"\0" * 4))[0]


def test_peer_reset_right_after_data_arrived_nothing_lost(server, start_duplex, backend_env):
    """The reset follows the data at once: the peer resets as soon as its
    kernel has every byte acknowledged (they are in duplex's receive queue,
    maybe not read yet). Linux keeps them readable after the reset arrives;
    duplex must not drop them."""
    data = os.urandom(256 << 10)

    def script(conn, res):
        assert recv_exact(conn, 3) == b"hi\n"  # duplex's session is running
        conn.sendall(data)
        deadline = time.monotonic() + TIMEOUT
        while unsent_bytes(conn) and time.monotonic() < deadline:
            time.sleep(0.0005)
        rst_close(conn)

    srv = server(script)
    cli = start_duplex(["connect", "127.0.0.1", srv.port], stdin=subprocess.PIPE, env=backend_env)
    cli.stdin.write(b"hi\n")
    cli.stdin.flush()
    srv.join()
    rc = cli.wait()
    assert rc == 1, (rc, cli.err)
    assert re.search(RESET_RE, cli.err), cli.err
    assert cli.out == data[:len(cli.out)], "stdout is not a prefix of what was sent"
    assert len(cli.out) == len(data), f"stdout has {len(cli.out)} of {len(data)} bytes; stderr={cli.err!r}"


PEER = r"""
import os, socket, sys, time
s = socket.socket()
s.bind(("127.0.0.1", 0))
s.listen(1)
print(s.getsockname()[1], flush=True)
c, _ = s.accept()
c.sendall(open(sys.argv[1], "rb").read())
print("sent", flush=True)
time.sleep(60)  # never reads: duplex's stream piles up in our receive buffer
"""


def test_peer_killed_mid_transfer(spawn, start_duplex, tmp_path, backend_env):
    """The peer process is killed (SIGKILL) while duplex sends to it and after
    it sent 128 KiB: the kernel resets the connection (unread data); duplex
    reports it, exits 1, and kept the 128 KiB."""
    data = os.urandom(128 << 10)
    f = tmp_path / "peer.bin"
    f.write_bytes(data)
    peer = spawn([sys.executable, "-c", PEER, str(f)], name="peer")
    port = int(peer.wait_out(lambda b: b.endswith(b"\n")).split()[0])
    cli = start_duplex(["connect", "127.0.0.1", port], stdin=os.urandom(1 << 16) * 1024, env=backend_env)
    peer.wait_out(lambda b: b"sent" in b)
    cli.wait_out(lambda b: len(b) >= len(data))
    # duplex has sent bytes the peer never reads: killing it resets the connection
    wait_for(lambda: any(rx for _, rx in tcp_queues(port, state="01")), TIMEOUT,
             "unread bytes in the peer's receive queue")
    assert cli.poll() is None, cli.err
    peer.kill()
    rc = cli.wait()
    assert rc == 1, (rc, cli.err)
    assert re.search(RESET_RE, cli.err), cli.err
    assert cli.out == data


def test_peer_killed_while_sending_to_duplex(spawn, start_duplex, tmp_path):
    """A peer killed after it sent everything and read everything ends with a
    FIN: duplex keeps the bytes and ends (0, or 1 with a message), no hang."""
    data = os.urandom(128 << 10)
    f = tmp_path / "peer.bin"
    f.write_bytes(data)
    peer = spawn([sys.executable, "-c", PEER, str(f)], name="peer")
    port = int(peer.wait_out(lambda b: b.endswith(b"\n")).split()[0])
    cli = start_duplex(["connect", "127.0.0.1", port], stdin=subprocess.PIPE)
    cli.wait_out(lambda b: len(b) >= len(data))
    peer.kill()
    # duplex has the peer's FIN (its socket left ESTABLISHED) before its stdin ends
    wait_for(lambda: not tcp_queues(port, remote=True, state="01"), TIMEOUT, "the peer's FIN")
    cli.close_stdin()
    rc = cli.wait()
    assert rc in (0, 1), (rc, cli.err)
    if rc == 1:
        assert cli.err.startswith("duplex: "), cli.err
    assert cli.out == data


# ------------------------------------------------------- early half-close --


@pytest.mark.parametrize("side", ["connect", "listen"])
def test_peer_half_closes_at_once_still_receives_everything(server, start_duplex, start_listener,
                                                            backend_env, side):
    """The peer shuts its write side down right after connecting: duplex
    reads EOF at once but keeps sending stdin (8 MiB) until the end; the peer
    receives all of it."""
    data = os.urandom(1 << 20) * 8
    if side == "connect":
        def script(conn, res):
            conn.shutdown(socket.SHUT_WR)
            res["got"] = read_to_eof(conn, timeout=30)[0]

        srv = server(script)
        cli = start_duplex(["connect", "127.0.0.1", srv.port], stdin=data, env=backend_env)
        got = srv.join(35)["got"]
    else:
        cli, port = start_listener([], stdin=data, env=backend_env)
        c = connect(port)
        try:
            c.shutdown(socket.SHUT_WR)
            got = read_to_eof(c, timeout=30)[0]
        finally:
            c.close()
    assert len(got) == len(data) and sha(got) == sha(data), f"peer got {len(got)} of {len(data)}"
    assert cli.wait() == 0, cli.err
    assert cli.out == b""


# ------------------------------------- one client resets, others are served --


def push_then_reset(port, nbytes=4 << 20):
    """A client that sends without reading, then resets; returns its name."""
    s = connect(port)
    name = name_of(s)
    s.setblocking(False)
    chunk = b"r" * 65536
    sent, t0 = 0, time.monotonic()
    while sent < nbytes and time.monotonic() - t0 < 2:
        try:
            sent += s.send(chunk)
        except BlockingIOError:
            time.sleep(0.005)
    rst_close(s)
    return name


def assert_still_echoes(proc, port, a, sockets, msg):
    """After another client's reset: the echoing server (or relay) on port
    still runs, the client `a` it already had still gets `msg` echoed, and a
    new client gets 256 KiB echoed."""
    assert proc.poll() is None, proc.err
    assert echo_roundtrip(a, msg) == msg
    b = sockets(connect(port))
    payload = os.urandom(256 << 10)
    assert echo_roundtrip(b, payload) == payload
    assert proc.poll() is None


def test_echo_server_survives_a_reset_client(start_listener, sockets, backend_env):
    proc, port = start_listener(["-k", "--echo", "-v"], env=backend_env)
    a = sockets(connect(port))
    assert echo_roundtrip(a, b"before\n") == b"before\n"
    name = push_then_reset(port)
    proc.wait_err(re.escape(name) + r": closed")
    assert_still_echoes(proc, port, a, sockets, b"after\n")


def test_broker_survives_a_reset_client(start_listener, sockets, backend_env):
    proc, port = start_listener(["-k", "--broker", "--no-stdio", "-v"], env=backend_env)
    b, c = sockets([connect(port), connect(port)])
    proc.wait_err(r"connected \(2 now\)")
    # the resetting client floods the others, then resets
    bad = connect(port)
    proc.wait_err(r"connected \(3 now\)")
    name = name_of(bad)
    bad.sendall(b"x" * 65536)
    for s in (b, c):
        recv_exact(s, 65536)
    rst_close(bad)
    proc.wait_err(re.escape(name) + r": closed")
    assert proc.poll() is None, proc.err
    b.sendall(b"from b\n")
    assert recv_exact(c, 7) == b"from b\n"
    d = sockets(connect(port))
    wait_for(lambda: proc.err.count("connected (3 now)") == 2, 5, "the new client")
    c.sendall(b"from c\n")
    assert recv_exact(b, 7) == b"from c\n"
    assert recv_exact(d, 7) == b"from c\n"


def test_relay_survives_a_reset_client(start_listener, start_duplex, sockets, backend_env):
    _, eport = start_listener(["-k", "--echo"])
    proc = start_duplex(["relay", "-k", "-v", "127.0.0.1:0", f"127.0.0.1:{eport}"], env=backend_env)
    port = listening_port(proc)
    a = sockets(connect(port))
    assert echo_roundtrip(a) == b"ping\n"
    name = push_then_reset(port)
    proc.wait_err(re.escape(name) + r" -> .*: sent \d+ bytes?, received")  # the relay has seen it end
    assert_still_echoes(proc, port, a, sockets, b"still\n")


# ------------------------------------------------------------- slowloris --


def test_slowloris(start_listener, sockets):
    """2000 idle connections and 20 byte-a-second senders: 50 normal clients
    still get their 1 KiB echoed promptly; the idle ones are closed after
    --idle-timeout, the slow senders (never idle for 2 s) are not."""
    raise_nofile(4096)
    proc, port = start_listener(["-k", "--echo", "--idle-timeout", "2", "--max-conns", "2500"])
    t_idle = time.monotonic()
    idle = sockets(open_many(port, 2000, timeout=30))
    opened = time.monotonic() - t_idle
    slow = sockets([connect(port) for _ in range(20)])
    stop = threading.Event()
    slow_err = []
    slow_echoed = [0] * len(slow)

    def dribble():
        try:
            while not stop.is_set():
                for i, s in enumerate(slow):
                    if stop.is_set():  # the test is over: the server may be going away
                        return
                    s.sendall(b"s")
                    if recv_exact(s, 1, timeout=3) != b"s":
                        slow_err.append(f"slow #{i}: wrong echo")
                        return
                    slow_echoed[i] += 1
                stop.wait(1.0)
        except BaseException as e:  # pytest.fail() too: reported below, not lost in the thread
            if not stop.is_set():
                slow_err.append(f"slow sender: {e!r}")

    t = threading.Thread(target=dribble, daemon=True)
    t.start()
    try:
        slowest = 0.0
        for i in range(50):
            payload = os.urandom(1024)
            t0 = time.monotonic()
            s = connect(port, timeout=5)
            try:
                s.sendall(payload)
                assert recv_exact(s, 1024, timeout=5) == payload
            finally:
                s.close()
            slowest = max(slowest, time.monotonic() - t0)
            # promptly (generous for a busy machine; the recv above gives up at 5 s)
            assert slowest < 4.5, f"normal client #{i} took {slowest:.2f}s"
        # the idle ones: closed after 2 s idle (sweep every 0.5 s); allow slack for 2000
        sel = selectors.DefaultSelector()
        for s in idle:
            s.setblocking(False)
            sel.register(s, selectors.EVENT_READ)
        left = len(idle)
        deadline = t_idle + opened + 2 + 8
        while left and time.monotonic() < deadline:
            for key, _ in sel.select(0.2):
                try:
                    b = key.fileobj.recv(16)
                except (ConnectionResetError, BlockingIOError):
                    b = b""
                assert not b, "an idle client received data"
                sel.unregister(key.fileobj)
                left -= 1
        sel.close()
        elapsed = time.monotonic() - t_idle
        assert left == 0, f"{left} idle connections still open after {elapsed:.1f}s"
        assert elapsed >= 1.9, f"idle connections closed after {elapsed:.1f}s, before the timeout"
        # the slow senders outlive the idle limit: each has been echoed 3 times
        # (a byte a second: over 2 s), however long the sweep above took
        wait_for(lambda: slow_err or min(slow_echoed) >= 3, 20,
                 f"every slow sender echoed 3 times: {slow_echoed}")
        assert not slow_err, slow_err
        assert all(not closed_within(s, 0.05) for s in slow), "a slow sender was closed"
        assert proc.poll() is None, proc.err
    finally:
        stop.set()
        t.join(10)


# ---------------------------------------------- a reader that never reads --


def push_nonreading(sock, total, proc, stall=1.5, limit=30, data=None):
    """Push up to `total` bytes (of `data` if given) without reading; stop when
    the server stops taking them for `stall` seconds or closes. Returns (sent,
    max RSS KiB)."""
    sock.setblocking(False)
    chunk = os.urandom(1 << 16)
    sent, rss_max = 0, rss_kib(proc.pid)
    last = t0 = time.monotonic()
    while sent < total:
        now = time.monotonic()
        if now - last > stall or now - t0 > limit:
            break
        try:
            sent += sock.send(chunk[:min(len(chunk), total - sent)] if data is None else data[sent:sent + (1 << 16)])
            last = now
        except BlockingIOError:
            time.sleep(0.005)
        except (BrokenPipeError, ConnectionResetError):
            break
        if sent % (1 << 20) < (1 << 16):
            rss_max = max(rss_max, rss_kib(proc.pid))
    rss_max = max(rss_max, rss_kib(proc.pid))
    return sent, rss_max


@pytest.mark.parametrize("mode", ["echo", "broker", "relay", "plain-k"])
def test_never_reading_peer_memory_bounded(mode, start_listener, start_duplex, server, sockets):
    total = 50 << 20
    release = threading.Event()
    rpipe = None
    if mode == "echo":
        proc, port = start_listener(["-k", "--echo"])
        pusher = sockets(connect(port, rcvbuf=4096))
    elif mode == "broker":
        proc, port = start_listener(["-k", "--broker", "--no-stdio", "-v"])
        lazy = sockets(connect(port, rcvbuf=4096))
        pusher = sockets(connect(port))
        reader = sockets(connect(port))
        proc.wait_err(r"connected \(3 now\)")
        # a client that keeps reading gets every byte, whatever the lazy one does
        data = seeded_bytes(total, 447)
        got = bytearray()

        def drain():
            reader.settimeout(60)
            try:
                while len(got) < total:
                    b = reader.recv(1 << 20)
                    if not b:
                        return
                    got.extend(b)
            except OSError:
                pass

        drainer = threading.Thread(target=drain, daemon=True)
        drainer.start()
    elif mode == "relay":
        def script(conn, res):
            release.wait(60)

        srv = server(script)
        proc = start_duplex(["relay", "-k", "127.0.0.1:0", f"127.0.0.1:{srv.port}"])
        port = listening_port(proc)
        pusher = sockets(connect(port))
    else:
        rpipe, wpipe = os.pipe()
        try:
            proc, port = start_listener(["-k"], stdout=wpipe, stdin=subprocess.PIPE)
        finally:
            os.close(wpipe)
        pusher = sockets(connect(port))
    try:
        # broker: the sender is held back until the lazy one is dropped (2 s)
        sent, rss_max = push_nonreading(pusher, total, proc, stall=4 if mode == "broker" else 1.5,
                                        data=data if mode == "broker" else None)
        time.sleep(0.5)
        rss_max = max(rss_max, rss_kib(proc.pid))
        assert proc.poll() is None, proc.err
        assert rss_max < RSS_LIMIT_KIB, f"{mode}: server RSS reached {rss_max} KiB after {sent} bytes"
        if mode == "broker":
            # every byte was either delivered or the lazy client was dropped
            assert sent == total, f"broker stalled the sender at {sent} bytes"
            drainer.join(60)
            assert len(got) == total and sha(bytes(got)) == sha(data), \
                f"the reading client got {len(got)} of {total} bytes, or others"
            _, how = read_to_eof(lazy, timeout=10, allow_reset=True)
            proc.wait_err(r"closed: not reading")
        # the server still serves someone else
        if mode in ("echo", "broker"):
            o = sockets(connect(port))
            if mode == "echo":
                assert echo_roundtrip(o) == b"ping\n"
            else:
                o2 = sockets(connect(port))
                # both are the broker's clients once it has accepted them
                wait_for(lambda: accept_queue(port) == 0, TIMEOUT, "the broker to accept both")
                o.sendall(b"hello\n")
                assert recv_exact(o2, 6) == b"hello\n"
    finally:
        release.set()
        if rpipe is not None:
            os.close(rpipe)


# ------------------------------------------------ descriptors: relay -k --


def test_relay_descriptor_exhaustion(spawn_limited, start_listener, sockets):
    """relay -k under `ulimit -n 64` with 40 clients: it takes what its
    descriptors allow, does not spin or die, serves the clients it holds,
    and serves the others once descriptors are free again."""
    _, eport = start_listener(["-k", "--echo"])
    proc = spawn_limited(["relay", "-k", "-v", "127.0.0.1:0", f"127.0.0.1:{eport}"], nofile=64)
    port = listening_port(proc)
    base = open_fds(proc.pid)
    clients = sockets([connect(port) for _ in range(40)])
    wait_for(lambda: "Too many open files" in proc.err, 5, "an EMFILE message")
    time.sleep(0.5)
    assert proc.poll() is None, proc.err
    cpu0 = cpu_seconds(proc.pid)
    time.sleep(2)
    cpu = cpu_seconds(proc.pid) - cpu0
    assert cpu < 0.5, f"relay used {cpu:.2f}s CPU in 2 s: spinning"
    assert open_fds(proc.pid) <= 64
    # who is served now: every client either echoes or has been closed; none hangs forever
    served = []
    waiting = []
    for s in clients:
        s.sendall(b"x\n")
    # wait on the first answer (or close) rather than giving each client 0.5 s
    # to answer: on a busy machine none might make it
    assert select.select(clients, [], [], TIMEOUT)[0], f"no client answered; stderr={proc.err[-600:]!r}"
    for s in clients:
        s.settimeout(0.5)
        try:
            b = s.recv(16)
        except socket.timeout:
            waiting.append(s)
            continue
        except ConnectionResetError:
            continue
        if b:
            served.append(s)
    assert served, f"no client served; stderr={proc.err[-600:]!r}"
    # free descriptors: the waiting clients move on (served or closed, never stuck)
    for s in served:
        s.close()
    for s in waiting:
        s.settimeout(10)
        try:
            b = s.recv(16)
        except ConnectionResetError:
            b = b""
        except socket.timeout:
            pytest.fail(f"a queued client was neither served nor closed; stderr={proc.err[-600:]!r}")
        assert b in (b"", b"x\n"), b
    for s in waiting:
        s.close()
    # every client's descriptors (and its target's) are released: a fresh
    # client accepted before that would meet EMFILE again and be closed
    wait_for(lambda: open_fds(proc.pid) <= base, TIMEOUT,
             f"the relay to be back to its {base} descriptors")
    fresh = sockets([connect(port) for _ in range(3)])
    for s in fresh:
        assert echo_roundtrip(s, b"fresh\n") == b"fresh\n", proc.err[-600:]
    assert proc.poll() is None


# --------------------------------------------- writing to a closed peer --


def test_yes_into_peer_that_closes_after_one_byte(server, spawn, duplex, backend_env):
    """`yes | duplex connect` against a server that reads one byte and
    closes: duplex exits 1 with a message, never dies of SIGPIPE."""

    def script(conn, res):
        conn.recv(1)
        # more is unread by now: the close sends a reset
        wait_for(lambda: fcntl.ioctl(conn.fileno(), termios.FIONREAD, b"\0" * 4) != b"\0" * 4,
                 TIMEOUT, "more bytes from yes")
        conn.close()

    srv = server(script)
    r, w = os.pipe()
    try:
        spawn(["yes"], stdout=w, stderr=subprocess.DEVNULL, name="yes")
        cli = spawn([duplex, "connect", "127.0.0.1", srv.port], stdin=r, env=backend_env, name="duplex")
    finally:
        os.close(r)
        os.close(w)
    srv.join()
    rc = cli.wait()
    assert rc != -signal.SIGPIPE, "duplex died of SIGPIPE"
    assert rc == 1, (rc, cli.err)
    assert re.search(RESET_RE, cli.err), cli.err


# ---------------------------------------------------------------- signals --


SIGS = [(signal.SIGINT, 130), (signal.SIGTERM, 143)]
SIG_IDS = ["SIGINT", "SIGTERM"]


def assert_signal_ends(proc, sig, code, port, summary):
    """`sig` ends the server (no children) with exit code `code`, its
    statistics line (regex `summary`) printed and its listener on port
    closed."""
    proc.popen.send_signal(sig)
    rc = proc.wait(10)
    assert rc == code, (rc, proc.err)
    assert re.search(summary, proc.err), proc.err
    with pytest.raises(ConnectionRefusedError):
        connect(port, timeout=2).close()


@pytest.mark.parametrize("sig,code", SIGS, ids=SIG_IDS)
def test_signal_listen_k_verbose(sig, code, start_listener, sockets, backend_env):
    proc, port = start_listener(["-k", "-v"], stdin=subprocess.PIPE, env=backend_env)
    a = connect(port)
    a.sendall(b"one\n")
    a.close()
    b = sockets(connect(port))
    b.sendall(b"two\n")
    proc.wait_out(lambda o: b"two\n" in o)
    assert_signal_ends(proc, sig, code, port, r"served 2 clients")
    assert closed_within(b, 2)


def start_sleepers(start_listener, sockets, n=3):
    proc, port = start_listener(["-k", "-v", "--sh-exec", "sleep 30"])
    cs = sockets([connect(port) for _ in range(n)])
    # sh may run sleep in a child of its own (dash does): wait for the sleeps
    wait_for(lambda: len([p for p in descendants(proc.pid) if _comm(p) == "sleep"]) >= n, 5,
             f"{n} `sleep 30` processes")
    return proc, cs


def stop_server(proc, sig, code):
    proc.popen.send_signal(sig)
    try:
        # (not proc.wait: orphaned grandchildren may hold its stderr pipe open)
        rc = proc.popen.wait(10)
    except subprocess.TimeoutExpired:
        pytest.fail(f"server did not exit within 10 s of {sig!r}; stderr={proc.err!r}")
    assert rc == code, (rc, proc.err)


@pytest.mark.parametrize("sig,code", SIGS, ids=SIG_IDS)
def test_signal_sh_exec_children_gone(sig, code, start_listener, sockets, reaped_pids):
    """The server's own children (seen in /proc/PID/task/*/children before
    the signal) are stopped and reaped."""
    proc, _ = start_sleepers(start_listener, sockets)
    kids = [int(x) for t in os.listdir(f"/proc/{proc.pid}/task")
            for x in open(f"/proc/{proc.pid}/task/{t}/children").read().split()]
    reaped_pids.extend(descendants(proc.pid))
    assert len(kids) == 3, kids
    stop_server(proc, sig, code)
    wait_for(lambda: re.search(r"served 3 clients", proc.err), 2, "the statistics line")
    wait_for(lambda: not any(alive(p) for p in kids), 3,
             f"children {kids} to be gone ({[(p, _comm(p)) for p in kids if alive(p)]} left)")


@pytest.mark.parametrize("sig,code", SIGS, ids=SIG_IDS)
def test_signal_sh_exec_no_orphan_sleep(sig, code, start_listener, sockets, reaped_pids):
    """No `sleep 30` of the server (child or grandchild) outlives it, and
    so the clients see their end."""
    proc, cs = start_sleepers(start_listener, sockets)
    pids = descendants(proc.pid)
    reaped_pids.extend(pids)
    stop_server(proc, sig, code)
    wait_for(lambda: not any(alive(p) for p in pids), 4,
             f"{pids} to be gone ({[(p, _comm(p)) for p in pids if alive(p)]} left)")
    for s in cs:
        assert closed_within(s, 2)


def _comm(pid):
    try:
        with open(f"/proc/{pid}/comm") as f:
            return f.read().strip()
    except OSError:
        return None


@pytest.mark.parametrize("sig,code", SIGS, ids=SIG_IDS)
def test_signal_relay_k(sig, code, start_listener, start_duplex, sockets):
    _, eport = start_listener(["-k", "--echo"])
    proc = start_duplex(["relay", "-k", "-v", "127.0.0.1:0", f"127.0.0.1:{eport}"])
    port = listening_port(proc)
    a = connect(port)
    assert echo_roundtrip(a) == b"ping\n"
    a.close()
    b = sockets(connect(port))
    assert echo_roundtrip(b) == b"ping\n"
    assert_signal_ends(proc, sig, code, port, r"relayed 2 connections")


@pytest.mark.parametrize("sig,code", SIGS, ids=SIG_IDS)
@pytest.mark.parametrize("client", [False, True], ids=["waiting", "connected"])
def test_signal_listen_unix_removes_path(sig, code, client, start_duplex, tmp_path):
    path = str(tmp_path / "s.sock")
    proc = start_duplex(["listen", "-v", "-U", path], stdin=subprocess.PIPE)
    wait_unix_listening(path, 5, proc)  # the file exists before listen()
    c = None
    try:
        if client:
            c = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            c.settimeout(5)
            c.connect(path)
            c.sendall(b"hi\n")
            proc.wait_out(lambda o: o == b"hi\n")
        proc.popen.send_signal(sig)
        rc = proc.wait(10)
        assert rc == code, (rc, proc.err)
        assert not os.path.exists(path), "the socket file is left behind"
    finally:
        if c is not None:
            c.close()


def test_second_sigint_ends_at_once(start_listener, sockets, reaped_pids):
    """The first SIGINT starts a clean stop that waits up to 2 s for exec
    children (these ignore SIGTERM); a second SIGINT meanwhile ends the
    process at once."""
    proc, port = start_listener(["-k", "-v", "--sh-exec", "trap '' TERM; sleep 30; :"])
    sockets([connect(port) for _ in range(2)])
    wait_for(lambda: len([p for p in descendants(proc.pid) if _comm(p) == "sleep"]) >= 2, 5,
             "two `sleep 30` processes")
    reaped_pids.extend(descendants(proc.pid))
    proc.popen.send_signal(signal.SIGINT)
    # the first stop is under way (totals printed, then the children are sent
    # SIGTERM and given 2 s): checked at once, not after a sleep that a busy
    # machine could stretch past those 2 s; and the second SIGINT cannot
    # merge with a first one still pending
    wait_for(lambda: re.search(r"served 2 clients", proc.err), 5, "the statistics line")
    assert proc.poll() is None, "the first SIGINT did not wait for the children"
    t0 = time.monotonic()
    proc.popen.send_signal(signal.SIGINT)
    try:
        # (not proc.wait: orphaned children may hold its stderr pipe open)
        rc = proc.popen.wait(5)
    except subprocess.TimeoutExpired:
        rc = None
    took = time.monotonic() - t0
    assert took < 1.0, f"the second SIGINT took {took:.2f}s"
    assert rc in (-signal.SIGINT, 130), rc


def test_second_sigint_kills_children_that_ignore_sigterm(start_listener, sockets, reaped_pids):
    """The second SIGINT ends duplex at once (exit 130) and takes the --exec
    children and what they started with it (SIGKILL to their process
    groups): none is left orphaned."""
    proc, port = start_listener(["-k", "-v", "--sh-exec", "trap '' TERM; sleep 100; :"])
    sockets([connect(port) for _ in range(2)])
    wait_for(lambda: len([p for p in descendants(proc.pid) if _comm(p) == "sleep"]) >= 2, 5,
             "two `sleep 100` processes")
    pids = descendants(proc.pid)
    reaped_pids.extend(pids)
    proc.popen.send_signal(signal.SIGINT)
    # the first stop is under way (totals printed, then children sent SIGTERM
    # and given 2 s): the second SIGINT comes during that grace period
    wait_for(lambda: re.search(r"served 2 clients", proc.err), 5, "the statistics line")
    proc.popen.send_signal(signal.SIGINT)
    try:
        rc = proc.popen.wait(5)
    except subprocess.TimeoutExpired:
        pytest.fail(f"the second SIGINT did not end duplex; stderr={proc.err!r}")
    assert rc == 130, (rc, proc.err)
    wait_for(lambda: not any(alive(p) for p in pids), 3,
             f"{pids} to be gone ({[(p, _comm(p)) for p in pids if alive(p)]} left)")
