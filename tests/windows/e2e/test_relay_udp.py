"""duplex.exe as a relay between Linux peers (checksummed both ways,
half-close passed on, many clients at once, a refused target), and UDP both
ways (datagrams checked, ICMP port unreachable)."""

import re
import socket
import subprocess
import threading

import pytest

from conftest import (TIMEOUT, closed_port, connect, free_port, listening_port, need, recv_all, seeded_bytes, sha,
                      wait_listening)

SIZE = 3 << 20

# ----------------------------------------------------------------- relay --


@pytest.fixture
def relay(start_exe):
    """relay(target_port, args=()) runs `duplex.exe relay -k ARGS
    127.0.0.1:0 127.0.0.1:TARGET` and returns (proc, port)."""

    def _start(target_port, args=(), **kw):
        p = start_exe(["relay", "-k", *args, "127.0.0.1:0", f"127.0.0.1:{target_port}"], **kw)
        return p, listening_port(p)

    return _start


def exchange(sock, data, timeout=TIMEOUT):
    """Send data then end the write side, while reading to EOF."""
    err = []

    def send():
        try:
            sock.sendall(data)
            sock.shutdown(socket.SHUT_WR)
        except OSError as e:
            err.append(e)

    t = threading.Thread(target=send, daemon=True)
    t.start()
    got = recv_all(sock, timeout)
    t.join(timeout)
    if err:
        raise err[0]
    return got


def test_relay_both_ways_at_once_checksummed(server, relay, sockets):
    a, b = seeded_bytes(SIZE, 11), seeded_bytes(SIZE, 12)
    target = server(lambda conn, res: res.update(got=exchange(conn, b, 60)))
    proc, port = relay(target.port)
    c = sockets(connect(port))
    got = exchange(c, a, 60)
    res = target.join(60)
    assert (len(res["got"]), sha(res["got"])) == (SIZE, sha(a)), "client -> relay -> target"
    assert (len(got), sha(got)) == (SIZE, sha(b)), "target -> relay -> client"
    assert proc.poll() is None, proc.err


def test_relay_passes_half_close_on(server, relay, sockets):
    """The client's end reaches the target as end-of-file; only then does
    the target answer (the other direction goes on), then it ends too."""
    answer = seeded_bytes(1 << 20, 13)

    def script(conn, res):
        res["got"] = recv_all(conn)  # returns at the client's FIN, passed on
        conn.sendall(answer)
        conn.shutdown(socket.SHUT_WR)

    target = server(script)
    proc, port = relay(target.port)
    c = sockets(connect(port))
    c.sendall(b"the question\n")
    c.shutdown(socket.SHUT_WR)
    got = recv_all(c)
    assert target.join()["got"] == b"the question\n"
    assert sha(got) == sha(answer) and len(got) == len(answer)


def test_relay_many_clients_to_linux_echo(relay, start_linux, sockets):
    """-k: 6 clients at once through duplex.exe to a Linux duplex --echo."""
    echo = start_linux(["listen", "-k", "--echo", "127.0.0.1", "0"])
    eport = listening_port(echo)
    proc, port = relay(eport, ["-v"])
    n, size = 6, 256 << 10
    clients = [sockets(connect(port)) for _ in range(n)]
    datas = [seeded_bytes(size, 200 + i) for i in range(n)]
    got = [None] * n
    errs = []

    def client(i):
        try:
            got[i] = exchange(clients[i], datas[i])
        except BaseException as e:  # noqa: B902
            errs.append(e)

    ts = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(n)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(TIMEOUT * 2)
    if errs:
        raise errs[0]
    for i in range(n):
        assert got[i] is not None and sha(got[i]) == sha(datas[i]), f"client {i}"


def test_relay_refused_target(relay, sockets):
    """The target refuses: the client is closed, -v says why, the relay
    goes on."""
    dead = closed_port()
    proc, port = relay(dead, ["-v"])
    c = sockets(connect(port))
    c.settimeout(TIMEOUT)
    try:
        assert c.recv(1) == b""
    except ConnectionResetError:
        pass
    proc.wait_err(rf"-> 127\.0\.0\.1:{dead}: connect: Connection refused$")
    assert proc.poll() is None, proc.err


def test_relay_linux_ncat_client_to_linux_ncat_server(relay, spawn, tmp_path):
    """Real tools on both sides: ncat -> duplex.exe relay -> ncat -l."""
    need("ncat")
    a, b = seeded_bytes(1 << 20, 14), seeded_bytes(1 << 20, 15)
    (tmp_path / "a").write_bytes(a)
    (tmp_path / "b").write_bytes(b)
    tport = free_port()
    with open(tmp_path / "b", "rb") as bi, open(tmp_path / "server.out", "wb") as so:
        srv = spawn(["ncat", "-l", "127.0.0.1", tport], stdin=bi, stdout=so)
    wait_listening(tport, proc=srv)
    proc, port = relay(tport)
    with open(tmp_path / "a", "rb") as ai, open(tmp_path / "client.out", "wb") as co:
        cli = spawn(["ncat", "127.0.0.1", port], stdin=ai, stdout=co)
    assert cli.wait(60) == 0, cli.err
    assert srv.wait(60) == 0, srv.err
    assert sha((tmp_path / "server.out").read_bytes()) == sha(a)
    assert sha((tmp_path / "client.out").read_bytes()) == sha(b)


# ------------------------------------------------------------------- UDP --

UDP_LISTENING_RE = r"duplex: listening on 127\.0\.0\.1:(\d+) \(udp\)"


def udp_socket():
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    s.settimeout(TIMEOUT)
    return s


def test_udp_listen_both_ways(start_exe, sockets):
    """listen -u: datagrams to stdout; stdin to the last peer heard, one
    datagram per line written."""
    p = start_exe(["listen", "-u", "127.0.0.1", "0"], stdin=subprocess.PIPE)
    port = int(p.wait_err(UDP_LISTENING_RE).group(1))
    s = sockets(udp_socket())
    for d in (b"one\n", b"two\n", b"three\n"):
        s.sendto(d, ("127.0.0.1", port))
    p.wait_out(lambda o: o == b"one\ntwo\nthree\n")
    for d in (b"reply 1\n", b"reply 2\n"):
        p.stdin.write(d)
        p.stdin.flush()
        data, addr = s.recvfrom(65536)
        assert (data, addr) == (d, ("127.0.0.1", port))


def test_udp_connect_both_ways(start_exe, sockets):
    """connect -u: each stdin line a datagram to the peer; the peer's
    datagrams to stdout; -q 1 ends it after stdin's end, exit 0."""
    s = sockets(udp_socket())
    port = s.getsockname()[1]
    p = start_exe(["connect", "-u", "-q", "1", "127.0.0.1", port], stdin=subprocess.PIPE)
    p.stdin.write(b"hello\n")
    p.stdin.flush()
    data, addr = s.recvfrom(65536)
    assert data == b"hello\n"
    big = seeded_bytes(8000, 16)
    s.sendto(b"back\n", addr)
    s.sendto(big, addr)
    p.wait_out(lambda o: o == b"back\n" + big)
    p.close_stdin()
    assert p.wait() == 0, p.err


def test_udp_port_unreachable_exit_4(run_exe):
    """The peer's ICMP port unreachable: exit 4, the message of Linux."""
    port = free_port(kind=socket.SOCK_DGRAM)
    rc, out, err = run_exe(["connect", "-u", "127.0.0.1", port], stdin=b"x\n")
    assert rc == 4, err
    assert f"duplex: send 127.0.0.1:{port}: Connection refused\n" in err or \
        re.search(rf"127\.0\.0\.1:{port}: Connection refused", err), err


def test_udp_listen_k_every_peer(start_exe, sockets):
    """listen -u -k (ncat refuses it without --exec): every peer's datagrams
    to stdout, each datagram of stdin (-C: CRLF) to every peer."""
    p = start_exe(["listen", "-u", "-k", "-C", "127.0.0.1", "0"], stdin=subprocess.PIPE)
    port = int(p.wait_err(UDP_LISTENING_RE).group(1))
    a, b = sockets(udp_socket()), sockets(udp_socket())
    a.sendto(b"from a\n", ("127.0.0.1", port))
    p.wait_out(lambda o: o == b"from a\n")
    b.sendto(b"from b\n", ("127.0.0.1", port))
    p.wait_out(lambda o: o == b"from a\nfrom b\n")
    p.stdin.write(b"to all\n")
    p.stdin.flush()
    assert a.recvfrom(100)[0] == b"to all\r\n"
    assert b.recvfrom(100)[0] == b"to all\r\n"


def test_udp_probe(run_exe, sockets):
    """-z -u: a bound port is open|filtered (exit 0), a closed one refuses
    (exit 4), as on Linux."""
    s = sockets(udp_socket())
    rc, _, err = run_exe(["-z", "-u", "-v", "127.0.0.1", s.getsockname()[1]])
    assert rc == 0, err
    assert s.recvfrom(10)[0] == b"\0"
    port = free_port(kind=socket.SOCK_DGRAM)
    rc, _, err = run_exe(["-z", "-u", "-v", "127.0.0.1", port])
    assert rc == 4, err
    assert "Connection refused" in err


def test_udp_exec_refused_naming_windows(run_exe, windows_only):
    rc, _, err = run_exe(["listen", "-u", "-k", "--exec", "cmd.exe", "127.0.0.1", "0"])
    assert rc == 2
    assert "not available on Windows" in err, err


def test_udp_relay_sessions_per_client(start_exe, sockets):
    """relay -u -k on the WSAPoll backend: three clients through it to a UDP
    target in the test, each answered with its own datagrams (the target
    sees a socket of the relay's per client), a 65000-byte datagram whole."""
    target = sockets(udp_socket())
    p = start_exe(["relay", "-u", "-k", "-v", "127.0.0.1:0", f"127.0.0.1:{target.getsockname()[1]}"])
    port = int(p.wait_err(UDP_LISTENING_RE).group(1))
    clients = [sockets(udp_socket()) for _ in range(3)]
    seen = set()
    for i, c in enumerate(clients):
        c.sendto(b"query %d" % i, ("127.0.0.1", port))
        data, src = target.recvfrom(65536)
        assert data == b"query %d" % i
        seen.add(src)
        target.sendto(b"answer %d" % i, src)
        assert c.recvfrom(100) == (b"answer %d" % i, ("127.0.0.1", port))
    assert len(seen) == 3
    big = seeded_bytes(65000, 7)
    clients[0].sendto(big, ("127.0.0.1", port))
    data, src = target.recvfrom(65536)
    assert data == big
    target.sendto(big[::-1], src)
    assert clients[0].recvfrom(65536)[0] == big[::-1]
    p.wait_err(r"new session, to 127\.0\.0\.1:\d+ from 127\.0\.0\.1:\d+ \(3 sessions\)")
