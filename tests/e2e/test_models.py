"""The echo conformance suite run against every server model:
`duplex listen -k --echo --model M 127.0.0.1 0` for M in iterative, fork,
thread, epoll, poll, io_uring, and `--threads 2`; plus the model-specific
checks (--max-conns with fork and thread, --broker refused with fork and
thread, no zombies with fork).

Run: DUPLEX=/abs/build/duplex /usr/bin/python3 -m pytest -q tests/e2e/test_models.py"""

import os
import re
import select
import signal
import socket
import time

import pytest

from conftest import LISTENING_RE, TIMEOUT, accept_queue, listeners_on
from servers_util import (assert_half_close_echo, assert_pumped_echo, children, closed_within,
                          connect, echo_roundtrip, exchange, read_to_eof, recv_exact,
                          serves_new_client, sockets, wait_for)

__all__ = ["sockets"]  # fixture re-exported from servers_util

MODELS = {
    "iterative": ["--model", "iterative"],
    "fork": ["--model", "fork"],
    "thread": ["--model", "thread"],
    "epoll": ["--model", "epoll"],
    "poll": ["--model", "poll"],
    "io_uring": ["--model", "io_uring"],
    "threads2": ["--threads", "2"],
}


@pytest.fixture
def start_model(start_duplex):
    """start_model(name, extra=()) runs `duplex listen -k --echo MODEL-ARGS
    EXTRA 127.0.0.1 0`; returns (proc, port). Skips io_uring when the
    backend cannot start here (and says so)."""

    def _start(name, extra=()):
        args = ["listen", "-k", "--echo", *MODELS[name], *map(str, extra), "127.0.0.1", "0"]
        p = start_duplex(args)
        deadline = time.monotonic() + TIMEOUT
        while True:
            m = LISTENING_RE.search(p.err)
            if m:
                return p, int(m.group(2))
            if p.poll() is not None:
                p.wait(5)
                if name == "io_uring" and ("io_uring" in p.err or "backend" in p.err):
                    pytest.skip(f"io_uring backend unavailable: {p.err.strip()}")
                pytest.fail(f"--model {name} exited (rc={p.poll()}) before listening: {p.err!r}")
            if time.monotonic() > deadline:
                pytest.fail(f"--model {name}: no listening line within {TIMEOUT}s: {p.err!r}")
            time.sleep(0.02)

    return _start


@pytest.fixture(params=list(MODELS))
def model(request):
    return request.param


# ------------------------------------------------------- conformance suite --


def test_small_message(model, start_model, sockets):
    proc, port = start_model(model)
    s = sockets(connect(port))
    assert echo_roundtrip(s, b"hello, echo\n") == b"hello, echo\n"
    assert echo_roundtrip(s, b"x") == b"x"
    assert proc.poll() is None


def test_4mib_random_with_checksum(model, start_model):
    _, port = start_model(model)
    assert_pumped_echo(port, [os.urandom(4 << 20)], timeout=30)


def test_half_close_full_echo_then_eof(model, start_model):
    proc, port = start_model(model)
    assert_half_close_echo(port, 150_000)  # and the server goes on
    assert proc.poll() is None


def test_several_concurrent_clients(model, start_model):
    """Six clients at once, each its own data, each half-closing; with
    --model iterative they are served one after the other, but all finish."""
    _, port = start_model(model)
    sizes = [1, 1000, 65536, 100_000, 250_001, 1 << 20]
    assert_pumped_echo(port, [os.urandom(n) for n in sizes], timeout=30)


def test_second_client_while_first_is_open(model, start_model, sockets):
    """Iterative: the second client waits until the first has gone. Every
    other model serves both at once."""
    _, port = start_model(model)
    a = sockets(connect(port))
    assert echo_roundtrip(a, b"first\n") == b"first\n"
    b = sockets(connect(port))
    b.sendall(b"second\n")
    if model == "iterative":
        b.settimeout(0.5)
        with pytest.raises(socket.timeout):
            b.recv(100)
        # the evidence: b still waits in the kernel's accept queue, not taken
        assert accept_queue(port) == 1, "the iterative server took a second client"
        a.shutdown(socket.SHUT_WR)
        assert read_to_eof(a) == (b"", "eof")
        a.close()
        assert recv_exact(b, 7) == b"second\n"
    else:
        assert recv_exact(b, 7, timeout=5) == b"second\n"
        assert echo_roundtrip(a, b"first again\n") == b"first again\n"


def test_fifty_sequential_connections(model, start_model):
    proc, port = start_model(model)
    for i in range(50):
        s = connect(port)
        try:
            msg = b"conn %d\n" % i
            assert echo_roundtrip(s, msg) == msg
            s.shutdown(socket.SHUT_WR)
            assert read_to_eof(s) == (b"", "eof"), f"connection #{i}"
        finally:
            s.close()
    assert proc.poll() is None


def test_connect_and_close_without_sending(model, start_model, sockets):
    proc, port = start_model(model)
    for _ in range(10):
        connect(port).close()
    # one that resets instead of closing cleanly
    r = connect(port)
    r.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    r.close()
    s = sockets(connect(port))
    assert echo_roundtrip(s, b"still serving\n", timeout=10) == b"still serving\n"
    assert proc.poll() is None


# ---------------------------------------------------------- model specifics --


@pytest.mark.parametrize("name", ["fork", "thread"])
def test_max_conns_two(name, start_model, sockets):
    proc, port = start_model(name, ["--max-conns", "2", "-v"])
    a, b = sockets([connect(port), connect(port)])
    assert echo_roundtrip(a, b"a\n") == b"a\n"
    assert echo_roundtrip(b, b"b\n") == b"b\n"
    c = sockets(connect(port))
    assert closed_within(c, 2), f"--model {name}: a third client was not closed at --max-conns 2"
    proc.wait_err(r"refused: --max-conns 2 reached")
    assert echo_roundtrip(a, b"a again\n") == b"a again\n"
    a.shutdown(socket.SHUT_WR)
    assert read_to_eof(a) == (b"", "eof")
    a.close()
    wait_for(lambda: serves_new_client(port), 5, "a slot to be free again after one client left")


@pytest.mark.parametrize("name", ["fork", "thread"])
def test_broker_refused_at_start_up(name, run_duplex):
    rc, out, err = run_duplex(["listen", "-k", "--broker", "--model", name, "127.0.0.1", "0"])
    assert rc == 2, err
    assert f"--model {name}" in err, err
    assert "listening on" not in err


def test_threads_two_runs_two_loops(start_model, sockets):
    proc, port = start_model("threads2")
    wait_for(lambda: listeners_on(port) == 2, 5, "two SO_REUSEPORT listeners")
    assert len(os.listdir(f"/proc/{proc.pid}/task")) >= 2
    socks = sockets([connect(port) for _ in range(16)])
    for i, s in enumerate(socks):
        assert echo_roundtrip(s, b"%d\n" % i) == b"%d\n" % i


@pytest.mark.parametrize("mode", [["--echo"], ["--exec", "cat"]], ids=["echo", "exec"])
def test_threads_two_max_conns_is_a_total(mode, start_listener, sockets):
    """--max-conns N bounds the clients of the whole server, not of each of
    the --threads loops, also when both loops accept at the same moment
    (20 clients connect at once; exactly 2 are served)."""
    proc, port = start_listener(["-k", "-v", *mode, "--threads", "2", "--max-conns", "2"])
    wait_for(lambda: listeners_on(port) == 2, 5, "two SO_REUSEPORT listeners")
    socks = sockets([connect(port, timeout=2) for _ in range(20)])
    # each client is either served (its byte comes back) or refused (closed):
    # wait for one or the other, however long a busy machine takes to fork
    served = refused = 0
    for s in socks:
        s.settimeout(TIMEOUT)
        try:
            s.sendall(b"?")
            got = s.recv(1)
        except (ConnectionResetError, BrokenPipeError):
            got = b""
        served += got == b"?"
        refused += got == b""
    assert served == 2, f"--threads 2 --max-conns 2 {mode[0]} served {served} clients at once"
    assert refused == 18
    wait_for(lambda: proc.err.count("refused: --max-conns 2 reached") == 18, 5, "18 -v refusals")


def test_fork_leaves_no_zombies(start_model):
    proc, port = start_model("fork")
    for i in range(50):
        s = connect(port)
        try:
            assert echo_roundtrip(s, b"z%d\n" % i) == b"z%d\n" % i
            s.shutdown(socket.SHUT_WR)
            assert read_to_eof(s) == (b"", "eof")
        finally:
            s.close()

    def no_zombies():
        return not [pid for pid, state in children(proc.pid) if state == "Z"]

    wait_for(no_zombies, 5, f"zombie children of the fork server: {children(proc.pid)}")
    assert proc.poll() is None
    # and no stray live children either, once every client has gone
    wait_for(lambda: not children(proc.pid), 5, f"children to exit: {children(proc.pid)}")


def test_threads_without_k_is_a_usage_error(run_duplex):
    """Without -k one client is served: --threads cannot apply, and is
    refused at start-up instead of letting each loop take a client of its
    own (the extra ones were cut off at exit, with exit status 0)."""
    for mode in (["--echo"], ["--exec", "cat"]):
        rc, out, err = run_duplex(["listen", *mode, "--threads", "2", "127.0.0.1", "0"])
        assert rc == 2, (mode, rc, err)
        assert "--threads" in err and "-k" in err, err
        assert "listening on" not in err


def flood_until_stuck(sock, limit=64 << 20, timeout=TIMEOUT):
    """Send without ever reading until the server stops taking bytes (it
    is then blocked sending its echo to us, our receive buffer full);
    returns the bytes sent."""
    sock.setblocking(False)
    chunk = b"x" * 65536
    sent = 0
    deadline = time.monotonic() + timeout
    while sent < limit and time.monotonic() < deadline:
        try:
            sent += sock.send(chunk)
        except BlockingIOError:
            _, w, _ = select.select([], [sock], [], 0.5)
            if not w:
                return sent
    pytest.fail(f"the server kept reading ({sent} bytes sent): it did not block on its echo")


@pytest.mark.parametrize("name", ["fork", "thread"])
def test_idle_timeout_closes_clients_that_stop_reading(name, start_model, sockets):
    """Two clients that send but never read fill --max-conns 2; the
    server's echo to them blocks. --idle-timeout must close them (a send
    making no progress for that long), so that a new client is served."""
    proc, port = start_model(name, ["--max-conns", "2", "--idle-timeout", "1", "-v"])
    floods = sockets([connect(port, rcvbuf=4096) for _ in range(2)])
    for s in floods:
        assert flood_until_stuck(s) > 0
    # (no check that a third client is refused meanwhile: the first flood's
    # timeout may already have run out on a busy machine)
    wait_for(lambda: serves_new_client(port), 15,
             f"--model {name}: a client served after --idle-timeout closed the non-reading ones")
    assert proc.poll() is None


def test_fork_children_do_not_hold_the_listening_socket(start_model, start_duplex, sockets):
    """After the fork server is killed (SIGKILL: it cannot clean up), the
    child serving a client goes on, but the port is free: a connect is
    refused and a new server can listen there."""
    proc, port = start_model("fork")
    s = sockets(connect(port))
    assert echo_roundtrip(s, b"alive\n") == b"alive\n"
    kids = [pid for pid, _ in children(proc.pid)]
    assert kids
    try:
        os.kill(proc.pid, signal.SIGKILL)
        proc.popen.wait(10)
        assert echo_roundtrip(s, b"still served\n") == b"still served\n"
        assert listeners_on(port) == 0, "a child of the killed server still listens"
        with pytest.raises(ConnectionRefusedError):
            connect(port, timeout=2).close()
        again = start_duplex(["listen", "-k", "-v", "--echo", "127.0.0.1", str(port)])
        assert int(again.wait_err(LISTENING_RE).group(2)) == port
        t = sockets(connect(port))
        assert echo_roundtrip(t, b"new server\n") == b"new server\n"
    finally:
        for pid in kids:
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass


def test_threads_verbose_totals_count_every_loop(start_listener, sockets):
    """-v totals at exit are the whole server's, not the first loop's:
    exactly the clients served and refused, whichever loop took them."""
    proc, port = start_listener(["-k", "-v", "--echo", "--threads", "2", "--max-conns", "2"])
    wait_for(lambda: listeners_on(port) == 2, 5, "two SO_REUSEPORT listeners")
    held = sockets([connect(port), connect(port)])
    for s in held:
        assert echo_roundtrip(s, b"held\n") == b"held\n"
    refused = 6
    for _ in range(refused):
        c = connect(port)
        try:
            assert closed_within(c, 5), "a client past --max-conns 2 was served"
        finally:
            c.close()
    wait_for(lambda: proc.err.count("refused: --max-conns") == refused, 5, "the refusals")
    for s in held:
        s.shutdown(socket.SHUT_WR)
        assert read_to_eof(s) == (b"", "eof")
    wait_for(lambda: proc.err.count("closed: finished") == 2, 5, "the held clients to be closed")
    more = 22  # over two loops: all on one loop has a chance of 2**-22
    for i in range(more):
        assert exchange(port, b"%d\n" % i) == (b"%d\n" % i, "eof")
        wait_for(lambda: proc.err.count("closed: finished") == 3 + i, 5, f"client {i} closed")
    proc.popen.send_signal(signal.SIGTERM)
    assert proc.wait(10) == 143, proc.err
    assert re.search(rf"served {2 + more} clients?; refused {refused} \(limit\)", proc.err), proc.err
