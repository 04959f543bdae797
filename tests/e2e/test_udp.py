"""UDP mode (-u): datagrams message by message, both roles, several peers at
once on one listener, ICMP port unreachable, IPv6, and interop with OpenBSD nc
and socat. Loopback only; every socket has a timeout, every process is
reaped by PID (spawn fixture)."""

import re
import socket
import subprocess
import time

import pytest

from conftest import TIMEOUT, free_port, have_ipv6_loopback, need, wait_listening

UDP_LISTENING_RE = re.compile(r"duplex: listening on (\S+):(\d+) \(udp\)\s*$", re.M)


def udp_socket(host="127.0.0.1", family=socket.AF_INET):
    s = socket.socket(family, socket.SOCK_DGRAM)
    s.settimeout(TIMEOUT)
    s.bind((host, 0))
    return s


def start_udp_listener(start_duplex, args=(), addr="127.0.0.1", **kw):
    p = start_duplex(["listen", "-u", *args, addr, "0"], **kw)
    m = p.wait_err(UDP_LISTENING_RE)
    return p, int(m.group(2))


def feed(proc, data):
    proc.stdin.write(data)
    proc.stdin.flush()


# --------------------------------------------------------------- listen -u --


def test_listen_udp_receives_and_replies_to_last_peer(start_duplex, backend_env):
    dx, port = start_udp_listener(start_duplex, ["-v"], stdin=subprocess.PIPE, env=backend_env)
    with udp_socket() as a:
        a.sendto(b"hello\n", ("127.0.0.1", port))
        dx.wait_out(lambda b: b == b"hello\n")
        dx.wait_err(rf"duplex: datagram from 127\.0\.0\.1:{a.getsockname()[1]}$")
        feed(dx, b"reply\n")
        data, src = a.recvfrom(65536)
    assert data == b"reply\n"
    assert src[1] == port
    assert dx.poll() is None  # a listener outlives its peers


def test_listen_udp_many_peers(start_duplex, backend_env):
    """The socket is never connected: every peer is heard (ncat fails here)."""
    dx, port = start_udp_listener(start_duplex, ["-v"], stdin=subprocess.PIPE, env=backend_env)
    with udp_socket() as a, udp_socket() as b, udp_socket() as c:
        a.sendto(b"from a\n", ("127.0.0.1", port))
        dx.wait_out(lambda out: b"from a\n" in out)
        b.sendto(b"from b\n", ("127.0.0.1", port))
        dx.wait_out(lambda out: b"from b\n" in out)
        feed(dx, b"to b\n")  # b spoke last
        assert b.recvfrom(100)[0] == b"to b\n"
        c.sendto(b"from c\n", ("127.0.0.1", port))
        a.sendto(b"a again\n", ("127.0.0.1", port))
        dx.wait_out(lambda out: out.endswith(b"a again\n"))
        feed(dx, b"to a\n")
        assert a.recvfrom(100)[0] == b"to a\n"
        ports = [s.getsockname()[1] for s in (a, b, c)]
    assert dx.out == b"from a\nfrom b\nfrom c\na again\n"
    for port_s in ports:
        dx.wait_err(rf"datagram from 127\.0\.0\.1:{port_s}$")


def test_listen_udp_wildcard_dual_stack(start_duplex):
    dx = start_duplex(["listen", "-u", "-v", "0"], stdin=subprocess.DEVNULL)
    m = dx.wait_err(UDP_LISTENING_RE)
    port = int(m.group(2))
    with udp_socket() as a:
        a.sendto(b"v4\n", ("127.0.0.1", port))
        dx.wait_out(lambda out: out == b"v4\n")
        # an IPv4 peer of the dual-stack socket is shown as IPv4
        dx.wait_err(rf"datagram from 127\.0\.0\.1:{a.getsockname()[1]}$")


def test_listen_udp_idle_timeout(run_duplex):
    t0 = time.monotonic()
    rc, out, err = run_duplex(["listen", "-u", "-w", "0.5", "127.0.0.1", "0"])
    assert rc == 5, err
    assert "no traffic" in err
    assert time.monotonic() - t0 < 5


def test_listen_udp_quit_after_eof(start_duplex):
    """stdin is read once a peer is heard; -q 0 then ends at its end."""
    dx, port = start_udp_listener(start_duplex, ["-q", "0"], stdin=b"bye\n")
    with udp_socket() as a:
        a.sendto(b"hi\n", ("127.0.0.1", port))
        assert a.recvfrom(100)[0] == b"bye\n"
    assert dx.wait() == 0, dx.err
    assert dx.out == b"hi\n"


# -------------------------------------------------------------- connect -u --


def test_connect_udp_roundtrip(start_duplex, backend_env):
    with udp_socket() as srv:
        port = srv.getsockname()[1]
        dx = start_duplex(["connect", "-u", "-q", "0.3", "127.0.0.1", port], stdin=subprocess.PIPE,
                          env=backend_env)
        feed(dx, b"one\n")
        data, peer = srv.recvfrom(65536)
        assert data == b"one\n"
        feed(dx, b"two\n")
        assert srv.recvfrom(65536)[0] == b"two\n"
        srv.sendto(b"pong\n", peer)
        srv.sendto(b"", peer)  # an empty datagram writes nothing
        srv.sendto(b"pong2\n", peer)
        dx.wait_out(lambda b: b == b"pong\npong2\n")
        dx.close_stdin()
        assert dx.wait() == 0, dx.err  # -q 0.3 after end of stdin


def test_connect_udp_each_read_is_one_datagram(start_duplex, tmp_path):
    """From a file, each read is at most 65507 bytes (the UDP maximum)."""
    data = bytes(range(256)) * 400  # 102400 bytes
    path = tmp_path / "in.bin"
    path.write_bytes(data)
    with udp_socket() as srv:
        srv.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        port = srv.getsockname()[1]
        with open(path, "rb") as f:
            dx = start_duplex(["connect", "-u", "127.0.0.1", port], stdin=f)
            got = [srv.recvfrom(65536)[0], srv.recvfrom(65536)[0]]
        assert dx.wait() == 0, dx.err
    assert [len(g) for g in got] == [65507, len(data) - 65507]
    assert b"".join(got) == data


def test_connect_udp_exits_at_eof(run_duplex):
    with udp_socket() as srv:
        port = srv.getsockname()[1]
        t0 = time.monotonic()
        rc, out, err = run_duplex(["connect", "-u", "127.0.0.1", port], stdin=b"x\n")
        assert rc == 0, err
        assert time.monotonic() - t0 < 5
        assert srv.recvfrom(100)[0] == b"x\n"


def test_connect_udp_refused(run_duplex, backend_env):
    port = free_port(kind=socket.SOCK_DGRAM)
    rc, out, err = run_duplex(["connect", "-u", "-q", "3", "127.0.0.1", port], stdin=b"anyone?\n",
                              env=backend_env)
    assert rc == 4, err
    assert f"duplex: send 127.0.0.1:{port}: Connection refused" in err


def test_connect_udp_idle_timeout(run_duplex):
    with udp_socket() as srv:
        rc, out, err = run_duplex(["connect", "-u", "-d", "-w", "0.4", "127.0.0.1", srv.getsockname()[1]])
    assert rc == 5, err


@pytest.mark.skipif(not have_ipv6_loopback(), reason="no IPv6 loopback")
def test_udp_ipv6_duplex_to_duplex(start_duplex):
    lst, port = start_udp_listener(start_duplex, ["-v"], addr="::1", stdin=subprocess.PIPE)
    cl = start_duplex(["connect", "-u", "-q", "0.3", "::1", port], stdin=subprocess.PIPE)
    feed(cl, b"six\n")
    lst.wait_out(lambda b: b == b"six\n")
    lst.wait_err(r"datagram from \[::1\]:\d+$")
    feed(lst, b"back\n")
    cl.wait_out(lambda b: b == b"back\n")
    cl.close_stdin()
    assert cl.wait() == 0, cl.err


def test_udp_duplex_to_duplex_ipv4(start_duplex, backend_env):
    lst, port = start_udp_listener(start_duplex, stdin=subprocess.PIPE, env=backend_env)
    cl = start_duplex(["connect", "-u", "-q", "0.3", "127.0.0.1", port], stdin=subprocess.PIPE,
                      env=backend_env)
    for i in range(5):
        feed(cl, b"line %d\n" % i)
        lst.wait_out(lambda b, i=i: b.endswith(b"line %d\n" % i))
        feed(lst, b"ack %d\n" % i)
        cl.wait_out(lambda b, i=i: b.endswith(b"ack %d\n" % i))
    cl.close_stdin()
    assert cl.wait() == 0, cl.err


@pytest.mark.parametrize("args", [
    ["connect", "-u", "--hex-dump", "-", "127.0.0.1", "9"],  # -u -z: test_udp_flags.py
    ["listen", "-u", "-U", "/tmp/x.sock", "-s", "/tmp/y.sock"],  # -U -u: test_unix_dgram.py
    ["connect", "-u", "--send-oob", "!", "127.0.0.1", "9"],
    ["listen", "-u", "--echo", "0"],
])
def test_udp_usage_errors(run_duplex, args):
    rc, out, err = run_duplex(args)
    assert rc == 2, err


def test_udp_in_help(run_duplex):
    rc, out, err = run_duplex(["connect", "--help"])
    assert rc == 0
    assert b"-u, --udp" in out


# ------------------------------------------------------------------ interop --


def _udp_listen_cmd(peer, port):
    if peer == "nc.openbsd":
        return [need("nc.openbsd"), "-u", "-l", "127.0.0.1", port]
    if peer == "socat":
        return [need("socat"), "-T", "20", f"UDP-LISTEN:{port},bind=127.0.0.1", "STDIO"]
    raise AssertionError(peer)


@pytest.mark.parametrize("peer, hello", [("nc.openbsd", b"hi nc\n"), ("socat", b"hi socat\n")])
def test_duplex_connect_to_udp_peer(peer, hello, spawn, start_duplex):
    port = free_port(kind=socket.SOCK_DGRAM)
    peer_proc = spawn(_udp_listen_cmd(peer, port), stdin=subprocess.PIPE, name=peer)
    wait_listening(port, proc=peer_proc, udp=True)
    dx = start_duplex(["connect", "-u", "-q", "0.3", "127.0.0.1", port], stdin=subprocess.PIPE)
    feed(dx, hello)
    peer_proc.wait_out(lambda b: b == hello)
    feed(peer_proc, b"hi duplex\n")
    dx.wait_out(lambda b: b == b"hi duplex\n")
    dx.close_stdin()
    assert dx.wait() == 0, dx.err


def test_nc_openbsd_and_socat_to_duplex_listener(spawn, start_duplex):
    """Two different clients on one listener; replies go to the last one."""
    nc = need("nc.openbsd")
    socat = need("socat")
    dx, port = start_udp_listener(start_duplex, ["-v"], stdin=subprocess.PIPE)
    p1 = spawn([nc, "-u", "127.0.0.1", port], stdin=subprocess.PIPE, name="nc.openbsd")
    feed(p1, b"from nc\n")
    dx.wait_out(lambda b: b"from nc\n" in b)
    feed(dx, b"to nc\n")
    p1.wait_out(lambda b: b == b"to nc\n")
    p2 = spawn([socat, "-T", "20", "STDIO", f"UDP:127.0.0.1:{port}"], stdin=subprocess.PIPE, name="socat")
    feed(p2, b"from socat\n")
    dx.wait_out(lambda b: b.endswith(b"from socat\n"))
    feed(dx, b"to socat\n")
    p2.wait_out(lambda b: b == b"to socat\n")
    feed(p1, b"nc again\n")
    dx.wait_out(lambda b: b.endswith(b"nc again\n"))
    assert dx.out == b"from nc\nfrom socat\nnc again\n"
    dx.wait_err(r"(datagram from 127\.0\.0\.1:\d+\n(.|\n)*){3}")
    assert p1.out == b"to nc\n"
