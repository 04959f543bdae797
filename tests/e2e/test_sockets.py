"""duplex sockets: the ss-like socket lister, compared with ss(8) on the
same machine. The test opens its own sockets on loopback (a TCP listener
with a known backlog, an established TCP pair, UDP sockets, a Unix listener
in a temporary directory) and compares only what concerns them."""

import json
import os
import pwd
import re
import shutil
import socket
import subprocess

import pytest

from conftest import TIMEOUT, have_ipv6_loopback

BACKLOG = 7
PROC_ENV = {"DUPLEX_SOCKETS_PROC": "1"}


def run_ss(args):
    ss = shutil.which("ss")
    if not ss:
        pytest.skip("ss (iproute2) is not installed")
    r = subprocess.run([ss, *args], capture_output=True, text=True, timeout=TIMEOUT)
    assert r.returncode == 0, r.stderr
    return r.stdout


def split_hostport(text):
    host, _, port = text.rpartition(":")
    return host.strip("[]"), port


class Sockets:
    """The test's own sockets."""

    def __init__(self, tmp_path):
        self.all = []
        self.listener = self._sock(socket.AF_INET, socket.SOCK_STREAM)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(BACKLOG)
        self.lport = self.listener.getsockname()[1]
        self.client = self._sock(socket.AF_INET, socket.SOCK_STREAM)
        self.client.connect(("127.0.0.1", self.lport))
        self.server, _ = self.listener.accept()
        self.all.append(self.server)
        self.cport = self.client.getsockname()[1]
        # one more client, left in the accept queue: Recv-Q 1 on the listener
        self.queued = self._sock(socket.AF_INET, socket.SOCK_STREAM)
        self.queued.connect(("127.0.0.1", self.lport))
        self.qport = self.queued.getsockname()[1]
        self.udp = self._sock(socket.AF_INET, socket.SOCK_DGRAM)
        self.udp.bind(("127.0.0.1", 0))
        self.uport = self.udp.getsockname()[1]
        self.udpc = self._sock(socket.AF_INET, socket.SOCK_DGRAM)
        self.udpc.connect(("127.0.0.1", self.uport))
        self.ucport = self.udpc.getsockname()[1]
        self.path = str(tmp_path / "sockets-test.sock")
        self.unix = self._sock(socket.AF_UNIX, socket.SOCK_STREAM)
        self.unix.bind(self.path)
        self.unix.listen(BACKLOG)
        self.ports = {self.lport, self.cport, self.qport, self.uport, self.ucport}

    def _sock(self, fam, typ):
        s = socket.socket(fam, typ)
        self.all.append(s)
        return s

    def close(self):
        for s in self.all:
            s.close()


@pytest.fixture
def socks(tmp_path):
    s = Sockets(tmp_path)
    yield s
    s.close()


def mine(lport, pport, ports):
    """A socket of this test: its local port is ours, its peer port is ours
    or none (other connections may share a local port with another peer)."""
    return lport in ports and (pport == 0 or pport in ports)


def ss_inet(args, ports):
    """{(state, local, peer)} from ss for rows touching our ports, plus a dict
    local -> (recv_q, send_q) for listeners."""
    rows = set()
    queues = {}
    for line in run_ss(args).splitlines():
        f = line.split()
        if len(f) < 5:
            continue
        state, rq, sq, local, peer = f[:5]
        lh, lp = split_hostport(local)
        ph, pp = split_hostport(peer)
        if not mine(int(lp), 0 if pp == "*" else int(pp), ports):
            continue
        rows.add((state, lh, int(lp), ph, 0 if pp == "*" else int(pp)))
        queues[(state, lh, int(lp), ph, 0 if pp == "*" else int(pp))] = (int(rq), int(sq))
    return rows, queues


def dx_json(run_duplex, args, env=None):
    rc, out, err = run_duplex(["sockets", "--json", *args], env=env)
    assert rc == 0, err
    return json.loads(out)


def dx_inet(records, ports, proto="tcp"):
    rows, queues = set(), {}
    for r in records:
        if r["netid"] != proto or not mine(r["local_port"], r["peer_port"], ports):
            continue
        key = (r["state"], r["local_addr"], r["local_port"], r["peer_addr"], r["peer_port"])
        rows.add(key)
        queues[key] = (r["recv_q"], r["send_q"])
    return rows, queues


def test_tcp_matches_ss(run_duplex, socks):
    want, want_q = ss_inet(["-tanH"], socks.ports)
    got, got_q = dx_inet(dx_json(run_duplex, ["-tan"]), socks.ports)
    assert got == want
    listen = ("LISTEN", "127.0.0.1", socks.lport, "0.0.0.0", 0)
    assert listen in got
    assert ("ESTAB", "127.0.0.1", socks.cport, "127.0.0.1", socks.lport) in got
    assert ("ESTAB", "127.0.0.1", socks.lport, "127.0.0.1", socks.cport) in got
    # listening: Recv-Q = connections waiting to be accepted, Send-Q = backlog
    assert got_q[listen] == want_q[listen] == (1, BACKLOG)


def test_text_output_matches_ss(run_duplex, socks):
    rc, out, err = run_duplex(["sockets", "-tanH"])
    assert rc == 0, err
    lines = out.decode().splitlines()
    assert not any(l.startswith("Netid") for l in lines)
    got = set()
    for line in lines:
        f = line.split()
        netid, state, rq, sq, local, peer = f[:6]
        assert netid == "tcp"
        lh, lp = split_hostport(local)
        ph, pp = split_hostport(peer)
        if mine(int(lp), 0 if pp == "*" else int(pp), socks.ports):
            got.add((state, lh, int(lp), ph, 0 if pp == "*" else int(pp)))
    want, _ = ss_inet(["-tanH"], socks.ports)
    assert got == want
    # the header
    rc, out, err = run_duplex(["sockets", "-tln"])
    assert rc == 0, err
    head = out.decode().splitlines()[0].split()
    assert head[:4] == ["Netid", "State", "Recv-Q", "Send-Q"] and head[-1] == "Process"


def test_default_is_connected_and_l_is_listening(run_duplex, socks):
    conn, _ = dx_inet(dx_json(run_duplex, ["-tn"]), socks.ports)
    assert conn and all(r[0] == "ESTAB" for r in conn)
    lis, _ = dx_inet(dx_json(run_duplex, ["-tln"]), socks.ports)
    assert lis == {("LISTEN", "127.0.0.1", socks.lport, "0.0.0.0", 0)}
    want, _ = ss_inet(["-tlnH"], socks.ports)
    assert lis == want


def test_udp_matches_ss(run_duplex, socks):
    want, _ = ss_inet(["-uanH"], socks.ports)
    got, _ = dx_inet(dx_json(run_duplex, ["-uan"]), socks.ports, "udp")
    assert got == want
    assert ("UNCONN", "127.0.0.1", socks.uport, "0.0.0.0", 0) in got
    assert ("ESTAB", "127.0.0.1", socks.ucport, "127.0.0.1", socks.uport) in got


def test_unix_listener_matches_ss(run_duplex, socks):
    want = set()
    for line in run_ss(["-xlnH"]).splitlines():
        f = line.split()
        if len(f) >= 6 and f[4] == socks.path:
            want.add((f[0], f[1], f[4], int(f[5]), int(f[2]), int(f[3])))
    got = {(r["netid"], r["state"], r["path"], r["inode"], r["recv_q"], r["send_q"])
           for r in dx_json(run_duplex, ["-xl"]) if r["path"] == socks.path}
    assert got == want
    assert got == {("u_str", "LISTEN", socks.path, os.fstat(socks.unix.fileno()).st_ino, 0, BACKLOG)}
    # text: 'PATH INODE' like ss
    rc, out, err = run_duplex(["sockets", "-xlH"])
    assert rc == 0, err
    assert re.search(r"^u_str\s+LISTEN\s+0\s+%d\s+%s %d\s+\* 0$" % (
        BACKLOG, re.escape(socks.path), os.fstat(socks.unix.fileno()).st_ino), out.decode(), re.M)


def test_processes(run_duplex, socks):
    me = os.getpid()
    recs = dx_json(run_duplex, ["-tlnp"])
    rec = [r for r in recs if r["local_port"] == socks.lport]
    assert len(rec) == 1
    procs = {(p["pid"], p["fd"]) for p in rec[0]["processes"]}
    assert (me, socks.listener.fileno()) in procs
    assert all(p["name"] for p in rec[0]["processes"])
    # without -p: null
    assert all(r["processes"] is None for r in dx_json(run_duplex, ["-tln"]))
    # text, against ss -tanpH
    rc, out, err = run_duplex(["sockets", "-tlnpH", "--sport", str(socks.lport)])
    assert rc == 0, err
    assert "pid=%d,fd=%d)" % (me, socks.listener.fileno()) in out.decode()
    line = [l for l in run_ss(["-tanpH"]).splitlines() if ":%d " % socks.lport in l and "LISTEN" in l]
    assert len(line) == 1 and "pid=%d,fd=%d)" % (me, socks.listener.fileno()) in line[0]
    # Unix sockets too
    recs = dx_json(run_duplex, ["-xlp"])
    rec = [r for r in recs if r["path"] == socks.path]
    assert (me, socks.unix.fileno()) in {(p["pid"], p["fd"]) for p in rec[0]["processes"]}


def test_extended_uid_and_inode(run_duplex, socks):
    uid = os.getuid()
    for sock, port in ((socks.listener, socks.lport), (socks.client, socks.cport), (socks.udp, socks.uport)):
        ino = os.fstat(sock.fileno()).st_ino
        recs = [r for r in dx_json(run_duplex, ["-an", "-tu"]) if r["local_port"] == port
                and r["inode"] == ino]
        assert len(recs) == 1, (port, ino)
        assert recs[0]["uid"] == uid
        assert recs[0]["user"] == pwd.getpwuid(uid).pw_name
    rc, out, err = run_duplex(["sockets", "-tlneH", "--sport", str(socks.lport)])
    assert rc == 0, err
    ino = os.fstat(socks.listener.fileno()).st_ino
    assert re.search(r"uid:%d\(%s\) ino:%d$" % (uid, re.escape(pwd.getpwuid(uid).pw_name), ino),
                     out.decode(), re.M), out


def test_sport_dport_filters(run_duplex, socks):
    recs = dx_json(run_duplex, ["-tan", "--sport", str(socks.lport)])
    assert recs and all(r["local_port"] == socks.lport for r in recs)
    assert {r["state"] for r in recs} == {"LISTEN", "ESTAB"}
    recs = dx_json(run_duplex, ["-tan", "--dport", str(socks.lport)])
    assert {r["local_port"] for r in recs if r["local_addr"] == "127.0.0.1"} >= {socks.cport, socks.qport}
    assert all(r["peer_port"] == socks.lport for r in recs)
    # Unix sockets have no ports: a port filter leaves them out
    assert not [r for r in dx_json(run_duplex, ["-a", "--sport", str(socks.lport)]) if r["family"] == "unix"]


def test_state_filter(run_duplex, socks):
    recs = dx_json(run_duplex, ["-tn", "--state", "listening", "--sport", str(socks.lport)])
    assert [r["state"] for r in recs] == ["LISTEN"]
    recs = dx_json(run_duplex, ["-tn", "--state", "established", "--sport", str(socks.lport)])
    # the accepted connection and the one still in the accept queue
    assert sorted((r["state"], r["peer_port"]) for r in recs) == \
        sorted([("ESTAB", socks.cport), ("ESTAB", socks.qport)])
    recs = dx_json(run_duplex, ["-tn", "--state", "time-wait", "--sport", str(socks.lport)])
    assert recs == []
    # repeatable
    recs = dx_json(run_duplex, ["-tn", "--state", "listen", "--state", "estab", "--sport", str(socks.lport)])
    assert {r["state"] for r in recs} == {"LISTEN", "ESTAB"}


def test_time_wait_state(run_duplex):
    with socket.socket() as lis:
        lis.bind(("127.0.0.1", 0))
        lis.listen(1)
        port = lis.getsockname()[1]
        c = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
        s, _ = lis.accept()
        c.close()  # active close: the client's side goes to TIME-WAIT after the server closes
        s.close()
        recs = dx_json(run_duplex, ["-tn", "--state", "time-wait", "--dport", str(port)])
        assert [r["state"] for r in recs] == ["TIME-WAIT"]
        cport = recs[0]["local_port"]
        assert recs[0]["inode"] == 0
        want, _ = ss_inet(["-tanH"], {cport, port})
        want = {w for w in want if w[2] == cport}
        assert want == {("TIME-WAIT", "127.0.0.1", cport, "127.0.0.1", port)}


def test_json_matches_text(run_duplex, socks):
    recs = dx_json(run_duplex, ["-an"])
    assert isinstance(recs, list)
    keys = {"netid", "family", "state", "recv_q", "send_q", "local_addr", "local_port", "peer_addr",
            "peer_port", "path", "peer_inode", "inode", "uid", "user", "processes"}
    assert all(set(r) == keys for r in recs)
    # the same records as the text (our own ports: the machine's other sockets come and go)
    mine = dx_json(run_duplex, ["-an", "--sport", str(socks.lport)])
    rc, out, err = run_duplex(["sockets", "-anH", "--sport", str(socks.lport)])
    assert rc == 0, err
    text = {tuple(l.split()[:6]) for l in out.decode().splitlines()}
    assert text == {(r["netid"], r["state"], str(r["recv_q"]), str(r["send_q"]),
                     "%s:%d" % (r["local_addr"], r["local_port"]),
                     "%s:%s" % (r["peer_addr"], r["peer_port"] or "*")) for r in mine}
    assert len(text) == len(mine) == 3  # the listener, the accepted and the queued connection
    # an empty answer is still an array
    assert dx_json(run_duplex, ["-t", "--state", "closing", "--sport", "1"]) == []


def test_ipv6(run_duplex):
    if not have_ipv6_loopback():
        pytest.skip("no ::1")
    with socket.socket(socket.AF_INET6) as lis:
        lis.bind(("::1", 0))
        lis.listen(3)
        port = lis.getsockname()[1]
        recs = dx_json(run_duplex, ["-6tln"])
        assert [(r["family"], r["local_addr"], r["send_q"]) for r in recs if r["local_port"] == port] == \
            [("inet6", "::1", 3)]
        assert not [r for r in dx_json(run_duplex, ["-4tln"]) if r["local_port"] == port]
        assert all(r["family"] == "inet6" for r in recs)
        rc, out, err = run_duplex(["sockets", "-6tlnH"])
        assert "[::1]:%d " % port in out.decode()
        want, _ = ss_inet(["-6tlnH"], {port})
        got, _ = dx_inet(recs, {port})
        assert got == want


def test_proc_fallback_same_sets(run_duplex, socks):
    nl = dx_json(run_duplex, ["-an"])
    pr = dx_json(run_duplex, ["-an"], env=PROC_ENV)
    for proto in ("tcp", "udp"):
        a, _ = dx_inet(nl, socks.ports, proto)
        b, _ = dx_inet(pr, socks.ports, proto)
        assert a == b and a
    # inodes and uids agree for TCP/UDP
    key = lambda r: (r["netid"], r["local_port"], r["peer_port"])
    nl_ino = {key(r): (r["inode"], r["uid"]) for r in nl if r["local_port"] in socks.ports}
    pr_ino = {key(r): (r["inode"], r["uid"]) for r in pr if r["local_port"] in socks.ports}
    assert nl_ino == pr_ino
    # Unix: path, state and inode
    ux = lambda recs: {(r["netid"], r["state"], r["path"], r["inode"]) for r in recs if r["path"] == socks.path}
    assert ux(nl) == ux(pr) == {("u_str", "LISTEN", socks.path, os.fstat(socks.unix.fileno()).st_ino)}
    # -p works from /proc too
    recs = dx_json(run_duplex, ["-tlnp", "--sport", str(socks.lport)], env=PROC_ENV)
    assert (os.getpid(), socks.listener.fileno()) in {(p["pid"], p["fd"]) for p in recs[0]["processes"]}
    # the accept queue length comes through /proc as well
    assert recs[0]["recv_q"] == 1


def test_service_names(run_duplex):
    # port 0 never; a wildcard peer shows '*'; with -n ports stay numbers
    rc, out, err = run_duplex(["sockets", "-tlH"])
    assert rc == 0, err
    for line in out.decode().splitlines():
        assert line.split()[5].endswith(":*")


def test_usage_errors(run_duplex):
    for args in (["-z"], ["--bogus"], ["--sport"], ["--sport", "70000"], ["--state", "sleepy"], ["extra"]):
        rc, out, err = run_duplex(["sockets", *args])
        assert rc == 2, (args, err)
        assert err.startswith("duplex: sockets: "), err
        assert out == b""
    rc, out, err = run_duplex(["sockets", "--help"])
    assert rc == 0 and b"--json" in out and b"--state" in out


def test_main_help_mentions_sockets(run_duplex):
    rc, out, err = run_duplex(["--help"])
    assert rc == 0
    assert b"sockets" in out and b"duplex COMMAND --help" in out
