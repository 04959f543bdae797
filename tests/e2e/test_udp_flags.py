"""-C (CRLF) and -z (probe) with UDP, the same command lines run with ncat
7.93 and OpenBSD nc where they take them. Loopback only; every process is
killed by PID (spawn fixture)."""

import re
import socket
import subprocess

import pytest

from conftest import TIMEOUT, need, wait_listening

UDP_LISTENING_RE = re.compile(r"duplex: listening on (\S+):(\d+) \(udp\)\s*$", re.M)


def bound_udp():
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(TIMEOUT)
    s.bind(("127.0.0.1", 0))
    return s


def closed_udp_port():
    """A UDP port nothing is bound to (bound a moment ago, then closed)."""
    with bound_udp() as s:
        return s.getsockname()[1]


def tool_cmd(tool, duplex):
    if tool != "duplex":
        need(tool)
    return [duplex] if tool == "duplex" else [tool]


# ------------------------------------------------------------------- -C --


@pytest.mark.parametrize("tool", ["ncat", "duplex"])
def test_crlf_connect_udp(tool, duplex, spawn):
    """`-u -C HOST PORT`: each lone LF of the datagram sent becomes CRLF, an
    existing CRLF stays (ncat and duplex alike; nc -C sends each line's CRLF
    as a datagram of its own)."""
    with bound_udp() as srv:
        port = srv.getsockname()[1]
        p = spawn([*tool_cmd(tool, duplex), "-u", "-C", "127.0.0.1", str(port)],
                  stdin=b"a\nb\r\nc\n", name=tool)
        assert srv.recvfrom(100)[0] == b"a\r\nb\r\nc\r\n"
        assert p.wait() == 0


@pytest.mark.parametrize("tool", ["ncat", "duplex"])
def test_crlf_listen_udp(tool, duplex, spawn):
    """`-u -l -C`: stdin's datagram to the peer gets CRLF too; what the peer
    sends arrives unchanged."""
    port = closed_udp_port()
    if tool == "duplex":
        p = spawn([duplex, "listen", "-u", "-C", "127.0.0.1", str(port)], stdin=subprocess.PIPE,
                  name=tool)
    else:
        need("ncat")
        p = spawn(["ncat", "-v", "-u", "-l", "-C", "127.0.0.1", str(port)], stdin=subprocess.PIPE,
                  name=tool)
    wait_listening(port, proc=p, udp=True)
    with bound_udp() as c:
        c.sendto(b"hi\n", ("127.0.0.1", port))
        p.wait_out(lambda out: out == b"hi\n")
        p.stdin.write(b"r1\n")
        p.stdin.flush()
        assert c.recvfrom(100)[0] == b"r1\r\n"


def test_crlf_big_datagram_fits(duplex, spawn):
    """-C reads at most half a datagram from stdin, so 32753 LFs still fit
    one datagram once doubled (65506 bytes)."""
    with bound_udp() as srv:
        srv.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        port = srv.getsockname()[1]
        p = spawn([duplex, "-u", "-C", "127.0.0.1", str(port)], stdin=b"\n" * 32753)
        got = srv.recvfrom(65536)[0]
        assert got == b"\r\n" * 32753
        assert p.wait() == 0


# ------------------------------------------------------------------- -z --


@pytest.mark.parametrize("tool", ["nc", "ncat", "duplex"])
def test_probe_open_udp_port(tool, duplex, spawn):
    """-z -u on a port something is bound to (and which does not answer):
    exit 0 for all three; the probe datagram reaches it (nc sends 'X'
    datagrams, ncat and duplex one NUL byte)."""
    with bound_udp() as srv:
        port = srv.getsockname()[1]
        p = spawn([*tool_cmd(tool, duplex), "-z", "-u", "-v", "127.0.0.1", str(port)], name=tool)
        data = srv.recvfrom(100)[0]
        assert data == (b"X" if tool == "nc" else b"\0")
        assert p.wait() == 0
    if tool == "duplex":
        assert re.search(rf"127\.0\.0\.1:{port} open\|filtered \(udp: no reply", p.err), p.err


@pytest.mark.parametrize("tool", ["nc", "ncat", "duplex"])
def test_probe_closed_udp_port(tool, duplex, spawn):
    """A port nothing is bound to answers with ICMP port unreachable: nc and
    ncat exit 1, duplex 4 (its -z status: no port open)."""
    port = closed_udp_port()
    p = spawn([*tool_cmd(tool, duplex), "-z", "-u", "-v", "127.0.0.1", str(port)], name=tool)
    rc = p.wait()
    assert rc == (4 if tool == "duplex" else 1)
    if tool == "duplex":
        assert f"127.0.0.1:{port} closed: Connection refused (udp: ICMP port unreachable)" in p.err


def test_probe_udp_answering_port_and_range(duplex, spawn):
    """A port that answers is open; a range mixes open and closed ports:
    exit 0 as one is open; -v tells each apart."""
    srv = spawn([duplex, "listen", "-u", "-k", "--exec", "/bin/cat", "127.0.0.1", "0"])
    port = int(srv.wait_err(UDP_LISTENING_RE).group(2))
    closed = [closed_udp_port() for _ in range(2)]
    p = spawn([duplex, "-z", "-u", "-v", "-w", "3", "127.0.0.1", str(port), *map(str, closed)])
    assert p.wait() == 0
    assert f"127.0.0.1:{port} open (udp: a datagram came back)" in p.err
    for c in closed:
        assert f"127.0.0.1:{c} closed: Connection refused" in p.err
    p = spawn([duplex, "-z", "-u", "127.0.0.1", *map(str, closed)])
    assert p.wait() == 4
    assert p.err == ""  # -v says each port; without it, only the status


@pytest.mark.parametrize("args", [["-z", "-C"], ["listen", "-z"]])
def test_probe_udp_exclusions(args, run_duplex):
    rc, _, err = run_duplex([*args, "-u", "127.0.0.1", "9"])
    assert rc == 2, err
