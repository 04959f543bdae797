"""duplex.exe moving bytes with Linux peers: checksummed transfers both ways
at once (duplex.exe as client and as server; ncat, socat, nc.openbsd, Python
and the Linux duplex on the other side), and half-close: the end of
duplex.exe's stdin reaches the peer as end-of-file while the other direction
goes on, and the peer's end closes duplex.exe's stdout."""

import hashlib
import os
import re
import socket
import subprocess
import time

import pytest

from conftest import (TIMEOUT, connect, free_port, listening_port, need, recv_all, seeded_bytes, sha,
                      wait_listening)

SIZE = 3 << 20  # each way

# The Linux peers: how each listens on PORT, and connects to it, with its
# stdin sent and what arrives written to stdout; each half-closes at the end
# of its stdin and exits once both directions have ended.
PEERS = {
    "ncat": (["ncat", "-l", "127.0.0.1", "{port}"], ["ncat", "127.0.0.1", "{port}"]),
    "socat": (["socat", "-t", "30", "TCP-LISTEN:{port},bind=127.0.0.1,reuseaddr", "STDIO"],
              ["socat", "-t", "30", "STDIO", "TCP:127.0.0.1:{port}"]),
    "nc.openbsd": (["nc.openbsd", "-N", "-l", "127.0.0.1", "{port}"],
                   ["nc.openbsd", "-N", "127.0.0.1", "{port}"]),
    "duplex": (["{duplex}", "listen", "127.0.0.1", "{port}"],
               ["{duplex}", "connect", "127.0.0.1", "{port}"]),
}


def peer_argv(name, role, port, linux_duplex):
    argv = PEERS[name][0 if role == "server" else 1]
    if argv[0] != "{duplex}":
        need(argv[0])
    return [a.format(port=port, duplex=linux_duplex) for a in argv]


@pytest.fixture
def files(tmp_path):
    """Two seeded random files (what duplex.exe sends, what the peer sends)
    and two output paths."""
    a = seeded_bytes(SIZE, 1)
    b = seeded_bytes(SIZE, 2)
    paths = {k: tmp_path / k for k in ("a", "b", "exe.out", "peer.out")}
    paths["a"].write_bytes(a)
    paths["b"].write_bytes(b)
    return paths, sha(a), sha(b)


def run_pair(spawn, start_exe, exe_args, peer_args, files, exe_first):
    """Run duplex.exe and the peer, each sending its file, until both exit
    0; compare both received streams with the files sent."""
    paths, sha_a, sha_b = files
    with open(paths["a"], "rb") as a, open(paths["b"], "rb") as b, \
            open(paths["exe.out"], "wb") as exe_out, open(paths["peer.out"], "wb") as peer_out:
        if exe_first:
            exe = start_exe(exe_args(None), stdin=a, stdout=exe_out)
            port = listening_port(exe)
            peer = spawn(peer_args(port), stdin=b, stdout=peer_out)
        else:
            port = free_port()
            peer = spawn(peer_args(port), stdin=b, stdout=peer_out)
            wait_listening(port, proc=peer)
            exe = start_exe(exe_args(port), stdin=a, stdout=exe_out)
        assert exe.wait(60) == 0, exe.err
        assert peer.wait(60) == 0, peer.err
    got_exe = paths["exe.out"].read_bytes()
    got_peer = paths["peer.out"].read_bytes()
    assert (len(got_peer), sha(got_peer)) == (SIZE, sha_a), "duplex.exe -> peer"
    assert (len(got_exe), sha(got_exe)) == (SIZE, sha_b), "peer -> duplex.exe"


@pytest.mark.parametrize("peer", sorted(PEERS))
def test_exe_client_both_ways_at_once(peer, spawn, start_exe, linux_duplex, files):
    run_pair(spawn, start_exe, lambda port: ["connect", "127.0.0.1", port],
             lambda port: peer_argv(peer, "server", port, linux_duplex), files, exe_first=False)


@pytest.mark.parametrize("peer", sorted(PEERS))
def test_exe_server_both_ways_at_once(peer, spawn, start_exe, linux_duplex, files):
    run_pair(spawn, start_exe, lambda port: ["listen", "127.0.0.1", "0"],
             lambda port: peer_argv(peer, "client", port, linux_duplex), files, exe_first=True)


# -------------------------------------------------------------- half-close --


def test_end_of_stdin_reaches_peer_while_other_way_goes_on(server, start_exe):
    """duplex.exe's stdin ends: the peer reads end-of-file, then sends 1 MiB
    and closes; duplex.exe writes it all and exits 0."""
    reply = seeded_bytes(1 << 20, 3)

    def script(conn, result):
        result["got"] = recv_all(conn)  # until duplex.exe's FIN
        conn.sendall(reply)
        conn.shutdown(socket.SHUT_WR)

    srv = server(script)
    p = start_exe(["connect", "127.0.0.1", srv.port], stdin=subprocess.PIPE)
    p.stdin.write(b"request\n")
    p.stdin.flush()
    p.close_stdin()
    assert srv.join()["got"] == b"request\n"
    assert p.wait() == 0, p.err
    assert sha(p.out) == sha(reply) and len(p.out) == len(reply)


def peer_ends_first(server, start_exe, first):
    """A peer that sends `first`, ends its side, then reads to its end;
    duplex.exe connected to it, stdin a pipe kept open. Returns (srv, proc)."""

    def script(conn, result):
        conn.sendall(first)
        conn.shutdown(socket.SHUT_WR)
        result["got"] = recv_all(conn)

    srv = server(script)
    return srv, start_exe(["connect", "127.0.0.1", srv.port], stdin=subprocess.PIPE)


def test_peer_end_then_stdin_still_flows(server, start_exe):
    """The peer ends first: duplex.exe writes all it sent, keeps sending
    its stdin until that ends, then exits 0."""
    first = seeded_bytes(256 << 10, 4)
    later = b"written after the peer's end\n"
    srv, p = peer_ends_first(server, start_exe, first)
    p.wait_out(lambda out: len(out) >= len(first))
    assert p.poll() is None, p.err  # still running: its stdin is open
    p.stdin.write(later)
    p.stdin.flush()
    p.close_stdin()
    assert srv.join()["got"] == later
    assert p.wait() == 0, p.err
    assert p.out == first


def test_peer_end_closes_stdout_at_once(target, server, start_exe):
    """The peer ends first: duplex.exe closes its stdout at once (all the
    peer sent written), while its stdin is still open, so that the reader
    of a pipe (`duplex listen 9000 | tar x`) sees its end of input."""
    if target.windows:
        # duplex.exe closes its stdout handle (stdio_win32.c), but wine keeps
        # the Unix process's own fd 1 open beside it until exit, so a Linux
        # reader cannot see that end; closing wine's fd behind its back from
        # the program would be a trick we will not ship.
        pytest.skip("under wine a Linux pipe reader sees stdout's end only at exit")
    first = seeded_bytes(256 << 10, 6)
    srv, p = peer_ends_first(server, start_exe, first)
    assert p.wait_out_eof() == first
    assert p.poll() is None, p.err
    p.close_stdin()
    assert p.wait() == 0, p.err


@pytest.mark.parametrize("flag", ["-d", "--no-shutdown"])
def test_peer_end_ends_session(flag, server, start_exe):
    """-d (stdin not read) and --no-shutdown: the session ends when the peer
    ends its side, stdin still open; exit 0 after writing everything."""
    data = seeded_bytes(512 << 10, 5)

    def script(conn, result):
        conn.sendall(data)
        conn.shutdown(socket.SHUT_WR)
        result["got"] = recv_all(conn)

    srv = server(script)
    p = start_exe(["connect", flag, "127.0.0.1", srv.port], stdin=subprocess.PIPE)
    assert p.wait(TIMEOUT) == 0, p.err
    assert p.out == data
    srv.join()


def test_listen_stdin_end_reaches_client(exe_listener, sockets):
    """duplex.exe as a one-client server: the end of its stdin is the
    client's end-of-file; the client's data and end still come through."""
    p, port = exe_listener(stdin=b"hello from the server\n")
    c = sockets(connect(port))
    assert recv_all(c) == b"hello from the server\n"  # then EOF: the server's stdin ended
    c.sendall(b"still flowing\n")
    c.shutdown(socket.SHUT_WR)
    assert p.wait() == 0, p.err
    assert p.out == b"still flowing\n"


def test_verbose_statistics(server, start_exe):
    """-v: the connected line and the statistics line with the byte counts."""
    reply = b"0123456789" * 100

    def script(conn, result):
        result["got"] = recv_all(conn)
        conn.sendall(reply)
        conn.shutdown(socket.SHUT_WR)

    srv = server(script)
    p = start_exe(["connect", "-v", "127.0.0.1", srv.port], stdin=b"x" * 12345)
    assert p.wait() == 0, p.err
    srv.join()
    assert p.out == reply
    assert re.search(rf"^duplex: connected to 127\.0\.0\.1:{srv.port} from 127\.0\.0\.1:\d+$", p.err, re.M), p.err
    assert re.search(rf"^duplex: 127\.0\.0\.1:{srv.port}: sent 12345 bytes, received 1000 bytes in "
                     r"\d+\.\d+ s$", p.err, re.M), p.err


def test_backpressure_slow_stdout_reader(server, start_exe):
    """Nobody reads duplex.exe's stdout for a while: the sender stalls (the
    console bridge and the loop stop reading when their buffers are full:
    nothing grows), then everything arrives intact once stdout is read.
    What may be taken before the stall is what the kernel buffers: the
    connection and, on Windows, the bridge's loopback pair, each up to the
    largest receive plus send buffer (tcp_rmem, tcp_wmem: autotuned)."""
    total = 128 << 20
    kernel = sum(int(open(f"/proc/sys/net/ipv4/{k}").read().split()[2]) for k in ("tcp_rmem", "tcp_wmem"))
    allowance = 2 * kernel + (8 << 20)
    chunk = seeded_bytes(1 << 20, 7)
    sent = [0]

    def script(conn, result):
        conn.settimeout(120)
        for _ in range(total // len(chunk)):
            conn.sendall(chunk)
            sent[0] += len(chunk)
        conn.shutdown(socket.SHUT_WR)
        result["got"] = recv_all(conn)

    srv = server(script)
    r, w = os.pipe()
    try:
        p = start_exe(["connect", "127.0.0.1", srv.port], stdin=subprocess.PIPE, stdout=w)
        os.close(w)
        w = -1
        # the sender stalls: no progress for 1 s (bounded wait)
        deadline = time.monotonic() + 60
        last, since = -1, time.monotonic()
        while time.monotonic() - since < 1.0:
            assert time.monotonic() < deadline, f"the sender never stalled: {sent[0]} bytes sent"
            if sent[0] != last:
                last, since = sent[0], time.monotonic()
            time.sleep(0.05)
        stalled_at = sent[0]
        assert stalled_at < min(total, allowance), \
            f"{stalled_at} bytes taken while stdout was not read (kernel buffers: {kernel})"
        # now read: every byte, in order
        h = hashlib.sha256()
        n = 0
        while True:
            b = os.read(r, 1 << 20)
            if not b:
                break
            h.update(b)
            n += len(b)
            if n == total:
                break
        assert n == total and h.hexdigest() == sha(chunk * (total // len(chunk)))
        p.close_stdin()
        assert p.wait() == 0, p.err
        srv.join()
    finally:
        os.close(r)
        if w >= 0:
            os.close(w)
