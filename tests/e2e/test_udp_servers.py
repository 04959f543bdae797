"""UDP servers as ncat runs them: `listen -u -k` (every peer to stdout, stdin
to every peer) and `listen -u --exec/--sh-exec` (a program per peer), with
--max-conns, --idle-timeout and --allow/--deny; the same command lines run
against ncat 7.93 where it takes them. Each datagram is checked as a unit
(random payloads, hashes). Loopback only; every process is killed by PID
(spawn fixture); the programs are counted from /proc."""

import os
import re
import signal
import socket
import subprocess

import pytest

from conftest import TIMEOUT, have_ipv6_loopback, need, sha
from servers_util import children, wait_for

UDP_LISTENING_RE = re.compile(r"duplex: listening on (\S+):(\d+) \(udp\)\s*$", re.M)
ENV_CMD = ('echo "proto=$NCAT_PROTO dproto=$DUPLEX_PROTO remote=$NCAT_REMOTE_ADDR:$NCAT_REMOTE_PORT '
           'local=$NCAT_LOCAL_ADDR:$NCAT_LOCAL_PORT peer=$DUPLEX_PEER_ADDR:$DUPLEX_PEER_PORT"; exec cat')


def udp_socket(host="127.0.0.1"):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(TIMEOUT)
    s.bind((host, 0))
    return s


def start(start_duplex, args, **kw):
    p = start_duplex(["listen", "-u", *args, "127.0.0.1", "0"], **kw)
    return p, int(p.wait_err(UDP_LISTENING_RE).group(2))


def start_ncat(spawn, args):
    """ncat -u -l ARGS 127.0.0.1 PORT on a free UDP port (retried: the port
    was free a moment ago)."""
    need("ncat")
    for _ in range(5):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        p = spawn(["ncat", "-v", "-u", "-l", *args, "127.0.0.1", str(port)], name="ncat")
        m = p.wait_err(r"Ncat: Listening on|QUITTING|bind", timeout=TIMEOUT)
        if "Listening" in m.group(0):
            return p, port
        p.kill()
    pytest.fail("ncat could not bind a UDP port")


def programs(pid):
    """The programs a server runs (its live children), zombies left out."""
    return [c for c, state in children(pid) if state != "Z"]


def env_line(sock, port):
    """The ENV_CMD program's first line, parsed, and what came after it in the
    same datagram (ncat's pipe may merge cat's first echo into it)."""
    data, src = sock.recvfrom(65536)
    assert src == ("127.0.0.1", port)
    line, _, rest = data.partition(b"\n")
    return dict(kv.split("=", 1) for kv in line.decode().split()), rest


# ---------------------------------------------------- --exec: one per peer --


@pytest.mark.parametrize("tool", ["ncat", "duplex"])
def test_exec_a_program_per_peer_as_ncat(tool, spawn, start_duplex):
    """`-u -l -k --sh-exec CMD`, the same line for ncat and duplex: each peer
    gets its own program, with NCAT_PROTO=UDP and both addresses; what one
    peer sends comes back to it only."""
    args = ["-k", "--sh-exec", ENV_CMD]
    if tool == "ncat":
        srv, port = start_ncat(spawn, args)
    else:
        srv, port = start(start_duplex, ["-v", *args])
    with udp_socket() as a, udp_socket() as b:
        for name, s in (("a", a), ("b", b)):
            s.sendto(f"hello from {name}\n".encode(), ("127.0.0.1", port))
            env, rest = env_line(s, port)
            me = s.getsockname()
            assert env["proto"] == "UDP"
            assert env["remote"] == f"{me[0]}:{me[1]}"
            assert env["local"] == f"127.0.0.1:{port}"
            if tool == "duplex":
                assert env["dproto"] == "UDP"
                assert env["peer"] == env["remote"]
            if tool == "duplex":  # a datagram a write(): never merged
                assert rest == b""
            assert (rest or s.recvfrom(65536)[0]) == f"hello from {name}\n".encode()
        a.sendto(b"again a\n", ("127.0.0.1", port))
        assert a.recvfrom(65536)[0] == b"again a\n"
        # nothing of a's reaches b: b's own echo, a round trip after a's came
        # back, is the next datagram b gets (datagrams keep their order on
        # loopback, so anything of a's would be queued before it)
        b.sendto(b"again b\n", ("127.0.0.1", port))
        assert b.recvfrom(65536)[0] == b"again b\n"
    if tool == "duplex":
        # one program per peer, each its own process under duplex
        assert len(programs(srv.pid)) == 2
        srv.wait_err(r"127\.0\.0\.1:\d+: new peer \(process \d+\)")


@pytest.mark.parametrize("tool", ["ncat", "duplex"])
def test_exec_wildcard_listener_addresses(tool, spawn, start_duplex):
    """No listen address (every address, both families): NCAT_LOCAL_ADDR is
    the address the peer sent to, not the wildcard, for an IPv4 and an IPv6
    peer alike (ncat and duplex); NCAT_REMOTE_ADDR an IPv4 peer's IPv4."""
    if not have_ipv6_loopback():
        pytest.skip("no IPv6 loopback")
    if tool == "ncat":
        need("ncat")
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as t:
            t.bind(("::", 0))
            port = t.getsockname()[1]
        srv = spawn(["ncat", "-v", "-u", "-l", "-k", str(port), "--sh-exec", ENV_CMD], name="ncat")
        srv.wait_err(r"Ncat: Listening on :::")
        srv.wait_err(r"Ncat: Listening on 0\.0\.0\.0:")
    else:
        srv = start_duplex(["listen", "-u", "-k", "0", "--sh-exec", ENV_CMD])
        port = int(srv.wait_err(UDP_LISTENING_RE).group(2))
    for family, host in ((socket.AF_INET, "127.0.0.1"), (socket.AF_INET6, "::1")):
        with socket.socket(family, socket.SOCK_DGRAM) as c:
            c.settimeout(TIMEOUT)
            c.bind((host, 0))
            c.sendto(b"x\n", (host, port))
            data = c.recvfrom(65536)[0]
            # the first line: ncat's pipe may merge cat's echo of "x" into it
            env = dict(kv.split("=", 1) for kv in data.decode().splitlines()[0].split())
            assert env["proto"] == "UDP"
            assert env["local"] == f"{host}:{port}", env
            assert env["remote"] == f"{host}:{c.getsockname()[1]}", env


def test_exec_each_datagram_a_unit(start_duplex):
    """Random datagrams up to the loopback's largest (65507 bytes) through
    /bin/cat: each comes back whole and alone (ncat's pipe merges two sent
    back to back: see README), also two sent before the first is read."""
    srv, port = start(start_duplex, ["-k", "--exec", "/bin/cat"])
    sizes = [1, 2, 100, 1472, 1473, 9000, 32768, 65507]
    with udp_socket() as a:
        a.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        for n in sizes:
            data = os.urandom(n)
            a.sendto(data, ("127.0.0.1", port))
            back = a.recvfrom(65536)[0]
            assert (len(back), sha(back)) == (n, sha(data))
        pair = [os.urandom(700), os.urandom(300)]
        for d in pair:
            a.sendto(d, ("127.0.0.1", port))
        got = [a.recvfrom(65536)[0] for _ in pair]
        assert [sha(g) for g in got] == [sha(d) for d in pair]
    assert srv.poll() is None


def test_exec_idle_timeout_ends_the_program(start_duplex):
    """--idle-timeout: a quiet peer's program is stopped (said with -v); its
    next datagram starts a new one."""
    srv, port = start(start_duplex, ["-v", "-k", "-i", "400ms", "--exec", "/bin/cat"])
    with udp_socket() as a:
        a.sendto(b"one\n", ("127.0.0.1", port))
        assert a.recvfrom(100)[0] == b"one\n"
        first = programs(srv.pid)
        assert len(first) == 1
        srv.wait_err(r"127\.0\.0\.1:\d+: closed: idle for 0\.4 s \(process \d+\)")
        wait_for(lambda: not programs(srv.pid), TIMEOUT, "the idle program to end")
        a.sendto(b"two\n", ("127.0.0.1", port))
        assert a.recvfrom(100)[0] == b"two\n"
        second = programs(srv.pid)
        assert len(second) == 1 and second != first


def test_exec_max_conns_bounds_the_programs(start_duplex):
    srv, port = start(start_duplex, ["-v", "-k", "--max-conns", "1", "--exec", "/bin/cat"])
    with udp_socket() as a, udp_socket() as b:
        a.sendto(b"a\n", ("127.0.0.1", port))
        assert a.recvfrom(100)[0] == b"a\n"
        b.sendto(b"b\n", ("127.0.0.1", port))
        srv.wait_err(rf"datagram from 127\.0\.0\.1:{b.getsockname()[1]}: refused: --max-conns 1 "
                     r"reached")
        b.settimeout(0.3)
        with pytest.raises(socket.timeout):
            b.recvfrom(100)
        assert len(programs(srv.pid)) == 1
        a.sendto(b"a2\n", ("127.0.0.1", port))  # the admitted peer is still served
        assert a.recvfrom(100)[0] == b"a2\n"


def test_exec_denied_peer_gets_no_program(start_duplex):
    """--deny: the sender is refused before any process exists (a -v line
    names the rule); an allowed sender on another address is served."""
    srv, port = start(start_duplex, ["-v", "-k", "--deny", "127.0.0.1", "--exec", "/bin/cat"])
    with udp_socket("127.0.0.1") as denied, udp_socket("127.0.0.2") as allowed:
        denied.sendto(b"let me in\n", ("127.0.0.1", port))
        srv.wait_err(rf"datagram from 127\.0\.0\.1:{denied.getsockname()[1]}: refused: not allowed "
                     r"by --allow/--deny \(matches deny rule 127\.0\.0\.1/32\)")
        assert programs(srv.pid) == []
        allowed.sendto(b"hi\n", ("127.0.0.1", port))
        assert allowed.recvfrom(100)[0] == b"hi\n"
        denied.settimeout(0.3)
        with pytest.raises(socket.timeout):
            denied.recvfrom(100)
        assert len(programs(srv.pid)) == 1
        # the allowed peer's line: stderr read up to it, the denied one's lines before
        srv.wait_err(rf"127\.0\.0\.2:{allowed.getsockname()[1]}: new peer")
    assert "new peer" not in srv.err.split("127.0.0.2")[0]


@pytest.mark.parametrize("tool", ["ncat", "duplex"])
def test_exec_without_k_serves_one_peer_then_exits(tool, spawn, start_duplex):
    """Without -k (ncat's behaviour): the first peer's program; once it has
    ended the server exits 0."""
    args = ["--exec", "/usr/bin/head -c 5"]
    if tool == "ncat":
        srv, port = start_ncat(spawn, args)
    else:
        srv, port = start(start_duplex, args)
    with udp_socket() as a:
        a.sendto(b"hello world", ("127.0.0.1", port))
        assert a.recvfrom(100)[0] == b"hello"
    assert srv.wait() == 0


def test_exec_without_k_ignores_other_peers(start_duplex):
    srv, port = start(start_duplex, ["-v", "--exec", "/bin/cat"])
    with udp_socket() as a, udp_socket() as b:
        a.sendto(b"first\n", ("127.0.0.1", port))
        assert a.recvfrom(100)[0] == b"first\n"
        b.sendto(b"second\n", ("127.0.0.1", port))
        srv.wait_err(r"datagram from 127\.0\.0\.1:\d+: ignored: --exec without -k serves its "
                     r"first peer only")
        assert len(programs(srv.pid)) == 1


def test_exec_programs_stopped_at_exit(start_duplex):
    """SIGTERM to the server: every program is stopped, none left behind."""
    srv, port = start(start_duplex, ["-k", "--exec", "/bin/cat"])
    socks = [udp_socket() for _ in range(3)]
    try:
        for s in socks:
            s.sendto(b"x", ("127.0.0.1", port))
            assert s.recvfrom(10)[0] == b"x"
        kids = programs(srv.pid)
        assert len(kids) == 3
        os.kill(srv.pid, signal.SIGTERM)
        assert srv.wait() == 128 + signal.SIGTERM
        for k in kids:
            wait_for(lambda k=k: not os.path.exists(f"/proc/{k}") or
                     open(f"/proc/{k}/stat").read().split(") ")[1][0] == "Z",
                     TIMEOUT, f"program {k} to end")
    finally:
        for s in socks:
            s.close()


# ------------------------------------------------------------ -k: stdio --


def test_k_refused_by_ncat_served_by_duplex(spawn, start_duplex):
    """ncat refuses -u -l -k without --exec (exit 2); duplex takes it: every
    peer's datagrams to stdout, each line of stdin to every peer."""
    need("ncat")
    nc = spawn(["ncat", "-u", "-l", "-k", "127.0.0.1", "0"], name="ncat")
    assert nc.wait() == 2
    assert "does not support the -k" in nc.err
    srv, port = start(start_duplex, ["-v", "-k"], stdin=subprocess.PIPE)
    with udp_socket() as a, udp_socket() as b:
        a.sendto(b"from a\n", ("127.0.0.1", port))
        srv.wait_out(lambda out: out == b"from a\n")
        b.sendto(b"from b\n", ("127.0.0.1", port))
        srv.wait_out(lambda out: out == b"from a\nfrom b\n")
        srv.stdin.write(b"to all\n")
        srv.stdin.flush()
        assert a.recvfrom(100)[0] == b"to all\n"
        assert b.recvfrom(100)[0] == b"to all\n"
    srv.wait_err(r"127\.0\.0\.1:\d+: new peer$")


def test_k_forgets_quiet_peers(start_duplex):
    srv, port = start(start_duplex, ["-v", "-k", "-i", "300ms"], stdin=subprocess.PIPE)
    with udp_socket() as a, udp_socket() as b:
        a.sendto(b"a\n", ("127.0.0.1", port))
        srv.wait_out(lambda out: out == b"a\n")
        srv.wait_err(rf"127\.0\.0\.1:{a.getsockname()[1]}: closed: idle for 0\.3 s")
        b.sendto(b"b\n", ("127.0.0.1", port))
        srv.wait_out(lambda out: out == b"a\nb\n")
        srv.stdin.write(b"only b\n")
        srv.stdin.flush()
        assert b.recvfrom(100)[0] == b"only b\n"
        # a was forgotten: once it is back, the next line to all is the first
        # datagram it gets ("only b", had it gone to a, would be queued before)
        a.sendto(b"a again\n", ("127.0.0.1", port))
        srv.wait_out(lambda out: out == b"a\nb\na again\n")
        srv.stdin.write(b"to both\n")
        srv.stdin.flush()
        assert b.recvfrom(100)[0] == b"to both\n"
        assert a.recvfrom(100)[0] == b"to both\n", "the forgotten peer still got stdin"


def test_peer_limits_need_k_or_exec(run_duplex):
    rc, _, err = run_duplex(["listen", "-u", "--max-conns", "3", "127.0.0.1", "0"])
    assert rc == 2 and "-k" in err


@pytest.mark.parametrize("tool", ["ncat", "duplex"])
def test_connect_u_exec_datagrams_through_the_program(spawn, duplex, tool):
    """`TOOL -u HOST PORT --sh-exec 'echo UDP-hello; exec cat'` (ncat's connect
    -u --exec): the program's first line reaches the peer, which then sends
    three random datagrams; cat sends each back. duplex gives the program
    the connected socket, so each datagram comes back whole and alone, up to
    60000 bytes; ncat pipes the program through itself (datagrams may merge:
    only the bytes are compared) and reads 8 KiB of a datagram (measured: 8192
    of 30000 came back), so it gets datagrams up to 8000 bytes."""
    binary = need("ncat") if tool == "ncat" else duplex
    with udp_socket() as peer:
        port = peer.getsockname()[1]
        c = spawn([binary, "-u", "127.0.0.1", str(port), "--sh-exec",
                   'echo "$NCAT_PROTO-hello"; exec cat'], name=tool)
        peer.settimeout(TIMEOUT)
        hello, client = peer.recvfrom(65536)
        assert hello == b"UDP-hello\n"
        sent = [os.urandom(n) for n in (1, 1000, 8000 if tool == "ncat" else 60000)]
        for d in sent:
            peer.sendto(d, client)
        got = []
        while sum(map(len, got)) < sum(map(len, sent)):
            got.append(peer.recvfrom(65536)[0])
        if tool == "duplex":
            assert [sha(g) for g in got] == [sha(d) for d in sent]
        else:
            assert sha(b"".join(got)) == sha(b"".join(sent))
        c.kill()
