"""Unix datagram sockets (-U -u PATH), against ncat 7.93 (`ncat -U -u`) and
socat (UNIX-SENDTO, UNIX-RECVFROM, UNIX-RECV) in both directions. A reply
goes to its sender's own address: the client binds one (-s PATH, else an
automatic abstract name); a sender with none cannot be answered (said with
-v). Socket files the command made are removed at exit, also on
SIGINT/SIGTERM. Every process is killed by PID (spawn fixture)."""

import os
import re
import signal
import socket
import stat
import subprocess

import pytest

from conftest import TIMEOUT, need, sha
from servers_util import children, wait_for

LISTENING_RE = r"duplex: listening on (\S+) \(unix datagrams\)"


def is_socket(path):
    try:
        return stat.S_ISSOCK(os.lstat(path).st_mode)
    except FileNotFoundError:
        return False


def wait_socket(path, proc):
    def ready():
        if proc.poll() is not None:
            pytest.fail(f"{proc.name} exited (rc={proc.poll()}): {proc.err!r}")
        return is_socket(path)
    wait_for(ready, TIMEOUT, f"{path} to exist")


def dgram_client(path):
    """A Python Unix datagram socket bound to its own path."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    s.settimeout(TIMEOUT)
    s.bind(path)
    return s


def feed(proc, data):
    proc.stdin.write(data)
    proc.stdin.flush()


# ------------------------------------------------------ ncat, both ways --


def test_duplex_server_ncat_client(duplex, spawn, tmp_path):
    need("ncat")
    path = str(tmp_path / "srv.sock")
    srv = spawn([duplex, "-v", "-l", "-U", "-u", path], stdin=subprocess.PIPE)
    wait_socket(path, srv)
    cl = spawn(["ncat", "-v", "-U", "-u", path], stdin=subprocess.PIPE, name="ncat")
    feed(cl, b"client hello\n")
    srv.wait_out(lambda out: out == b"client hello\n")
    m = srv.wait_err(r"duplex: datagram from (/\S+)$")
    assert "ncat" in m.group(1)  # ncat bound /tmp/ncat.XXXXXX, replies go there
    feed(srv, b"server reply\n")
    cl.wait_out(lambda out: out == b"server reply\n")
    os.kill(srv.pid, signal.SIGTERM)
    assert srv.wait() == 128 + signal.SIGTERM
    assert not os.path.exists(path)


def test_ncat_server_duplex_client(duplex, spawn, tmp_path):
    need("ncat")
    path = str(tmp_path / "srv.sock")
    srv = spawn(["ncat", "-l", "-U", "-u", path], stdin=subprocess.PIPE, name="ncat")
    wait_socket(path, srv)
    cl = spawn([duplex, "-v", "-U", "-u", path], stdin=subprocess.PIPE)
    feed(cl, b"client hello\n")
    srv.wait_out(lambda out: out == b"client hello\n")
    feed(srv, b"server reply\n")
    cl.wait_out(lambda out: out == b"server reply\n")
    # without -s: an automatic abstract address, nothing to remove
    cl.wait_err(rf"duplex: unix datagrams to {re.escape(path)} from @[0-9a-f]+$")


# ----------------------------------------------------- socat, both ways --


def test_socat_recvfrom_server_duplex_client(duplex, spawn, tmp_path):
    """socat UNIX-RECVFROM answers each datagram's sender: the reply reaches
    duplex's automatic address."""
    need("socat")
    path = str(tmp_path / "srv.sock")
    srv = spawn(["socat", f"UNIX-RECVFROM:{path},fork", "SYSTEM:tr a-z A-Z"], name="socat")
    wait_socket(path, srv)
    cl = spawn([duplex, "-U", "-u", "-q", "5", path], stdin=subprocess.PIPE)
    feed(cl, b"hello\n")
    cl.wait_out(lambda out: out == b"HELLO\n")


def test_duplex_client_source_path_to_socat_recv(duplex, spawn, tmp_path):
    """-s PATH binds the client's own path; it exists while duplex runs and
    is removed when it exits."""
    need("socat")
    path, mine = str(tmp_path / "srv.sock"), str(tmp_path / "me.sock")
    srv = spawn(["socat", "-u", f"UNIX-RECV:{path}", "-"], name="socat")
    wait_socket(path, srv)
    cl = spawn([duplex, "-v", "-U", "-u", "-s", mine, path], stdin=subprocess.PIPE)
    feed(cl, b"one way\n")
    srv.wait_out(lambda out: out == b"one way\n")
    cl.wait_err(rf"from {re.escape(mine)}$")
    assert is_socket(mine)
    cl.close_stdin()
    assert cl.wait() == 0
    assert not os.path.exists(mine)


def test_socat_sendto_with_and_without_bind(duplex, spawn, tmp_path):
    """A socat sender that binds a path gets the reply; one that binds none
    cannot: duplex says so with -v (and still prints what it sent)."""
    need("socat")
    path = str(tmp_path / "srv.sock")
    srv = spawn([duplex, "-v", "listen", "-U", "-u", path], stdin=subprocess.PIPE)
    wait_socket(path, srv)
    anon = spawn(["socat", "-", f"UNIX-SENDTO:{path}"], stdin=b"no address\n", name="socat")
    srv.wait_out(lambda out: out == b"no address\n")
    srv.wait_err(r"datagram from an unnamed socket: no reply can reach it")
    anon.wait()
    back = str(tmp_path / "socat.sock")
    named = spawn(["socat", "-t", "5", "-", f"UNIX-SENDTO:{path},bind={back}"],
                  stdin=subprocess.PIPE, name="socat")
    feed(named, b"with address\n")
    srv.wait_out(lambda out: out.endswith(b"with address\n"))
    srv.wait_err(rf"duplex: datagram from {re.escape(back)}$")
    feed(srv, b"reply\n")
    named.wait_out(lambda out: out == b"reply\n")


# -------------------------------------------------- datagrams as units --


def test_each_datagram_a_unit_through_exec(duplex, spawn, tmp_path):
    """listen -U -u -k --exec /bin/cat: random datagrams up to 65507 bytes
    come back whole and alone, to each sender's own path; NCAT_PROTO=UDP,
    DUPLEX_PROTO=UNIX-DGRAM."""
    path = str(tmp_path / "srv.sock")
    srv = spawn([duplex, "-v", "listen", "-k", "-U", "-u", path, "--sh-exec",
                 'echo "$NCAT_PROTO $DUPLEX_PROTO $DUPLEX_PEER_ADDR"; exec cat'])
    wait_socket(path, srv)
    a_path, b_path = str(tmp_path / "a.sock"), str(tmp_path / "b.sock")
    with dgram_client(a_path) as a, dgram_client(b_path) as b:
        for s, p in ((a, a_path), (b, b_path)):
            s.sendto(b"hi", path)
            assert s.recv(100) == f"UDP UNIX-DGRAM {p}\n".encode()
            assert s.recv(100) == b"hi"
        for n in [1, 1000, 9000, 65507]:
            data = os.urandom(n)
            a.sendto(data, path)
            back = a.recv(65536)
            assert (len(back), sha(back)) == (n, sha(data))
        assert len([c for c, st in children(srv.pid) if st != "Z"]) == 2


def test_longer_datagram_said(duplex, spawn, tmp_path):
    """A Unix datagram may exceed 64 KiB: the first 65536 bytes are written
    and the loss is said (once), never silent."""
    path = str(tmp_path / "srv.sock")
    srv = spawn([duplex, "-l", "-U", "-u", path], stdin=subprocess.PIPE)
    wait_socket(path, srv)
    data = os.urandom(100000)
    with dgram_client(str(tmp_path / "c.sock")) as c:
        c.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 20)
        c.sendto(data, path)
        srv.wait_out(lambda out: len(out) == 65536)
        srv.wait_err(rf"duplex: datagram from {re.escape(str(tmp_path / 'c.sock'))}: longer than "
                     r"65536 bytes: the rest is lost \(said once\)")
    assert sha(srv.out) == sha(data[:65536])


# ------------------------------------------------------ files and stops --


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_socket_files_removed_on_signal(sig, duplex, spawn, tmp_path):
    path, mine = str(tmp_path / "srv.sock"), str(tmp_path / "me.sock")
    srv = spawn([duplex, "-v", "-l", "-U", "-u", path], stdin=subprocess.PIPE)
    wait_socket(path, srv)
    cl = spawn([duplex, "-U", "-u", "-s", mine, path], stdin=subprocess.PIPE)
    feed(cl, b"x\n")
    srv.wait_out(lambda out: out == b"x\n")
    assert is_socket(mine)
    for p in (cl, srv):
        os.kill(p.pid, sig)
        assert p.wait() == 128 + sig
    assert not os.path.exists(path) and not os.path.exists(mine)


def test_stale_socket_replaced_and_file_kept(duplex, spawn, run_duplex, tmp_path):
    """A socket file nobody has bound is replaced; a regular file is not
    touched; a live socket is in use."""
    path = str(tmp_path / "srv.sock")
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    stale.bind(path)
    stale.close()
    srv = spawn([duplex, "-l", "-U", "-u", path], stdin=subprocess.PIPE)
    with dgram_client(str(tmp_path / "c.sock")) as c:
        wait_for(lambda: srv.poll() is None and is_socket(path), TIMEOUT, "bound")

        def sent():
            try:
                c.sendto(b"up\n", path)
                return True
            except (ConnectionRefusedError, FileNotFoundError):
                return False
        wait_for(sent, TIMEOUT, "the server to take datagrams")
        srv.wait_out(lambda out: out.startswith(b"up\n"))
    rc, _, err = run_duplex(["-l", "-U", "-u", path])
    assert rc == 6 and "in use" in err
    regular = tmp_path / "file"
    regular.write_text("keep me")
    rc, _, err = run_duplex(["-l", "-U", "-u", str(regular)])
    assert rc == 6 and "exists and is not a socket" in err
    assert regular.read_text() == "keep me"


def test_unix_dgram_usage(run_duplex, tmp_path):
    rc, _, err = run_duplex(["-U", "-u", "-z", str(tmp_path / "s")])
    assert rc == 2
    rc, _, err = run_duplex(["-l", "-U", "-u", "-s", str(tmp_path / "a"), str(tmp_path / "s")])
    assert rc == 2 and "connect -U -u only" in err
    rc, _, err = run_duplex(["-U", "-u", str(tmp_path / "nobody.sock")], stdin=b"x")
    assert rc == 4, err
