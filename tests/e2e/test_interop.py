"""duplex against other netcats: ncat, socat and OpenBSD nc, in both roles.

Peers that must listen on a fixed port get one from free_port(); we wait for
them to listen by reading /proc/net/tcp (a probe connection would use up
their only accept)."""

import os
import shutil
import subprocess
import threading
import time

import pytest

from conftest import TIMEOUT, free_port, need, sha256_file, wait_listening

SIZE = 4 << 20
PEER_TIMEOUT = 30


def _peer_listen_cmd(peer, port):
    if peer == "ncat":
        return [need("ncat"), "-l", "127.0.0.1", str(port)]
    if peer == "socat":
        # -t: after one side's EOF, wait this long for the other (default 0.5 s)
        return [need("socat"), "-t", "30", f"TCP-LISTEN:{port},bind=127.0.0.1,reuseaddr", "STDIO"]
    if peer == "nc.openbsd":
        # -N: shut the socket's write side down at end of stdin
        return [need("nc.openbsd"), "-N", "-l", "127.0.0.1", str(port)]
    raise AssertionError(peer)


def _peer_connect_cmd(peer, port):
    if peer == "ncat":
        return [need("ncat"), "127.0.0.1", str(port)]
    if peer == "socat":
        return [need("socat"), "-t", "30", "STDIO", f"TCP:127.0.0.1:{port}"]
    if peer == "nc.openbsd":
        return [need("nc.openbsd"), "-N", "127.0.0.1", str(port)]
    raise AssertionError(peer)


PEERS = ["ncat", "socat", "nc.openbsd"]


def _feed_until_received(proc, src, received, size):
    """Copy the file src to proc's stdin, but close that stdin only once the
    file `received` holds `size` bytes (or proc ended, or PEER_TIMEOUT)."""

    def feed():
        with open(src, "rb") as f:
            try:
                shutil.copyfileobj(f, proc.stdin)
                proc.stdin.flush()
            except (BrokenPipeError, OSError, ValueError):
                pass

    t = threading.Thread(target=feed, daemon=True)
    t.start()
    deadline = time.monotonic() + PEER_TIMEOUT
    while os.path.getsize(received) < size and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    t.join(PEER_TIMEOUT)
    proc.close_stdin()


@pytest.mark.parametrize("peer", PEERS)
def test_duplex_connect_to_peer_listener(peer, backend_env, spawn, start_duplex, random_files, tmp_path):
    """4 MiB each way at once, both compared whole.

    OpenBSD nc in listen mode (1.219, Debian 12) drops the rest of its stdin
    once its peer's stream has ended: readwrite() returns ("listen and net in
    gone, queues empty, done") when the socket reached EOF and its 16 KiB
    stdin buffer is empty for a moment, without waiting for stdin's EOF, and
    exits 0. When duplex's upload ended first, nc had sent only a prefix
    (3162112..3391488 of 4194304 bytes, whole 16 KiB buffers: 6 runs of 60
    with epoll and 1 of 60 with io_uring under two CPU hogs; 0 of 100 with a
    Python peer in nc's place). Without duplex: nc.openbsd -N -l with stdin
    a pipe, a client that sends 5 bytes and half-closes, then the second
    part written to the pipe never arrives. So against nc.openbsd duplex's
    stdin stays open until nc's whole 4 MiB has arrived: both directions
    still flow at once, and a byte duplex loses still fails the hashes."""
    a, b = random_files(SIZE)
    port = free_port()
    out_peer = tmp_path / "peer.out"
    out_dx = tmp_path / "duplex.out"
    hold_stdin = peer == "nc.openbsd"
    with a.open() as in_peer, b.open() as in_dx, open(out_peer, "wb") as fp, open(out_dx, "wb") as fd:
        srv = spawn(_peer_listen_cmd(peer, port), stdin=in_peer, stdout=fp, name=peer)
        wait_listening(port, proc=srv)
        dx = start_duplex(["connect", "127.0.0.1", port], stdin=subprocess.PIPE if hold_stdin else in_dx,
                          stdout=fd, env=backend_env)
        if hold_stdin:
            _feed_until_received(dx, b.path, out_dx, SIZE)
        rc = dx.wait(PEER_TIMEOUT)
        rc_peer = srv.wait(PEER_TIMEOUT)
    assert rc == 0, dx.err
    assert rc_peer == 0, srv.err
    assert sha256_file(out_peer) == b.sha256, f"duplex -> {peer}: bytes differ"
    assert sha256_file(out_dx) == a.sha256, f"{peer} -> duplex: bytes differ"


@pytest.mark.parametrize("peer", PEERS)
def test_peer_client_of_duplex_listen(peer, backend_env, spawn, start_listener, random_files, tmp_path):
    a, b = random_files(SIZE)
    out_peer = tmp_path / "peer.out"
    out_dx = tmp_path / "duplex.out"
    with a.open() as in_dx, b.open() as in_peer, open(out_peer, "wb") as fp, open(out_dx, "wb") as fd:
        lst, port = start_listener(stdin=in_dx, stdout=fd, env=backend_env)
        cli = spawn(_peer_connect_cmd(peer, port), stdin=in_peer, stdout=fp, name=peer)
        rc_peer = cli.wait(PEER_TIMEOUT)
        rc = lst.wait(PEER_TIMEOUT)
    assert rc == 0, lst.err
    assert rc_peer == 0, cli.err
    assert sha256_file(out_dx) == b.sha256, f"{peer} -> duplex: bytes differ"
    assert sha256_file(out_peer) == a.sha256, f"duplex -> {peer}: bytes differ"


def test_half_close_wc_via_socat(backend_env, spawn, run_duplex):
    """printf hello | duplex connect ... against socat EXEC:'wc -c' prints 5:
    duplex must shut down its write side at end of stdin (or wc never ends)
    and then keep reading until socat closes."""
    socat = need("socat")
    port = free_port()
    srv = spawn([socat, f"TCP-LISTEN:{port},bind=127.0.0.1,reuseaddr", "EXEC:wc -c"], name="socat")
    wait_listening(port, proc=srv)
    rc, out, err = run_duplex(["connect", "127.0.0.1", port], stdin=b"hello", env=backend_env)
    assert rc == 0, err
    assert out.strip() == b"5"
    assert srv.wait(TIMEOUT) == 0


def test_half_close_large_wc_via_socat(spawn, run_duplex, random_files):
    """Same with 4 MiB: the count arrives after the whole upload."""
    socat = need("socat")
    (a,) = random_files(SIZE, n=1)
    port = free_port()
    srv = spawn([socat, f"TCP-LISTEN:{port},bind=127.0.0.1,reuseaddr", "EXEC:wc -c"], name="socat")
    wait_listening(port, proc=srv)
    with a.open() as f:
        rc, out, err = run_duplex(["connect", "127.0.0.1", port], stdin=f, timeout=PEER_TIMEOUT)
    assert rc == 0, err
    assert out.strip() == str(SIZE).encode()


def test_socat_client_against_listen_with_reply(backend_env, spawn, start_listener):
    """socat sends a request and half-closes; duplex listen (stdin: 'reply')
    prints the request and socat prints the reply."""
    socat = need("socat")
    lst, port = start_listener(stdin=b"reply", env=backend_env)
    cli = spawn([socat, "-t", "5", "-", f"TCP:127.0.0.1:{port}"], stdin=b"request from socat\n",
                name="socat")
    assert cli.wait(TIMEOUT) == 0, cli.err
    assert lst.wait(TIMEOUT) == 0, lst.err
    assert lst.out == b"request from socat\n"
    assert cli.out == b"reply"


def test_socat_client_waits_for_late_reply(spawn, start_listener):
    """socat half-closes first; duplex listen's stdin stays open a while and
    its reply comes later: the reply must still reach socat, i.e. duplex did
    not end the session when the client's side ended."""
    socat = need("socat")
    lst, port = start_listener(stdin=subprocess.PIPE)
    cli = spawn([socat, "-t", "10", "-", f"TCP:127.0.0.1:{port}"], stdin=b"early\n", name="socat")
    lst.wait_out(lambda o: o == b"early\n")
    lst.stdin.write(b"late reply\n")
    lst.stdin.flush()
    lst.close_stdin()
    assert cli.wait(TIMEOUT) == 0, cli.err
    assert lst.wait(TIMEOUT) == 0, lst.err
    assert cli.out == b"late reply\n"


def test_nc_openbsd_N_client_against_listen(spawn, start_listener):
    nc = need("nc.openbsd")
    lst, port = start_listener(stdin=b"from duplex\n")
    cli = spawn([nc, "-N", "127.0.0.1", str(port)], stdin=b"from nc\n", name="nc.openbsd")
    assert cli.wait(TIMEOUT) == 0, cli.err
    assert lst.wait(TIMEOUT) == 0, lst.err
    assert lst.out == b"from nc\n"
    assert cli.out == b"from duplex\n"


def test_ncat_listener_sees_eof_from_duplex(spawn, run_duplex, tmp_path):
    """ncat -l --recv-only exits only when it reads EOF: duplex must send it."""
    ncat = need("ncat")
    port = free_port()
    srv = spawn([ncat, "-l", "--recv-only", "127.0.0.1", str(port)], name="ncat")
    wait_listening(port, proc=srv)
    rc, out, err = run_duplex(["connect", "127.0.0.1", port], stdin=b"one line\n")
    assert rc == 0, err
    assert srv.wait(TIMEOUT) == 0, srv.err
    assert srv.out == b"one line\n"
