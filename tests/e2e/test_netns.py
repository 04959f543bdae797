"""duplex over a lossy, rate-limited link: two network namespaces joined by a
veth pair; the sender's namespace drops 1% of its packets at random
(iptables statistic match) and caps its rate (tc tbf 200 Mbit/s). A 64 MiB
transfer must arrive checksum-exact without -w 30 ever firing, directly
(listen <- connect) and through `duplex relay` in the receiver's namespace.

Needs root (or CAP_NET_ADMIN), iproute2 (ip, tc) and iptables; skipped
cleanly otherwise. Namespaces get names unique to this run and are deleted
in a finalizer (which also removes the veth pair and the iptables rules).
Run: DUPLEX=/abs/build/duplex /usr/bin/python3 -m pytest -q tests/e2e/test_netns.py"""

import os
import shutil
import subprocess
import time
import uuid

import pytest

from conftest import LISTENING_RE, sha256_file

SIZE = 64 << 20
RATE = "200mbit"


def sh(*args, check=True, timeout=20):
    r = subprocess.run([str(a) for a in args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       text=True, timeout=timeout)
    if check and r.returncode != 0:
        raise RuntimeError(f"{' '.join(map(str, args))}: exit {r.returncode}: {r.stderr.strip()}")
    return r


class Link:
    """ns_tx (10.X.Y.1, sender: loss + rate cap) <-veth-> ns_rx (10.X.Y.2)."""

    def __init__(self):
        tag = uuid.uuid4().hex[:8]
        self.tx, self.rx = f"dxtx-{tag}", f"dxrx-{tag}"
        self.vtx, self.vrx = f"dxt{tag}", f"dxr{tag}"  # interface names: at most 15 chars
        n = int(tag[:4], 16)
        net = f"10.{200 + n % 50}.{(n >> 6) % 256}"
        self.tx_ip, self.rx_ip = f"{net}.1", f"{net}.2"
        self.made = []

    def setup(self):
        for ns in (self.tx, self.rx):
            sh("ip", "netns", "add", ns)
            self.made.append(ns)
            sh("ip", "-n", ns, "link", "set", "lo", "up")
        sh("ip", "link", "add", self.vtx, "netns", self.tx, "type", "veth", "peer", "name", self.vrx,
           "netns", self.rx)
        for ns, dev, ip in ((self.tx, self.vtx, self.tx_ip), (self.rx, self.vrx, self.rx_ip)):
            sh("ip", "-n", ns, "addr", "add", f"{ip}/24", "dev", dev)
            sh("ip", "-n", ns, "link", "set", dev, "up")
        sh("ip", "netns", "exec", self.tx, "iptables", "-A", "OUTPUT", "-m", "statistic",
           "--mode", "random", "--probability", "0.01", "-j", "DROP")
        sh("ip", "netns", "exec", self.tx, "tc", "qdisc", "add", "dev", self.vtx, "root", "tbf",
           "rate", RATE, "burst", "64kb", "latency", "50ms")

    def drops(self):
        """Packets the sender's iptables rule dropped so far."""
        r = sh("ip", "netns", "exec", self.tx, "iptables", "-L", "OUTPUT", "-v", "-n", "-x", check=False)
        for line in r.stdout.splitlines():
            if "DROP" in line and "statistic" in line:
                return int(line.split()[0])
        return -1

    def teardown(self):
        for ns in reversed(self.made):
            sh("ip", "netns", "del", ns, check=False)


@pytest.fixture
def link():
    if os.geteuid() != 0:
        pytest.skip("network namespaces need root")
    for tool in ("ip", "tc", "iptables"):
        if not shutil.which(tool):
            pytest.skip(f"{tool} is not installed (iproute2/iptables)")
    lk = Link()
    try:
        lk.setup()
    except (RuntimeError, subprocess.TimeoutExpired, OSError) as e:
        lk.teardown()
        pytest.skip(f"cannot set up network namespaces here: {e}")
    yield lk
    lk.teardown()


@pytest.fixture
def big(random_files):
    return random_files(SIZE, 1)[0]


def in_ns(ns, duplex, *args):
    # `ip netns exec` execs the command: the pid we get is duplex's own
    return ["ip", "netns", "exec", ns, duplex, *args]


def check_transfer(receiver, sender, out_path, big, link, budget):
    t0 = time.monotonic()
    rc_tx = sender.wait(budget)
    rc_rx = receiver.wait(max(5, budget - (time.monotonic() - t0)))
    assert rc_tx == 0, (rc_tx, sender.err)
    assert rc_rx == 0, (rc_rx, receiver.err)
    for p in (sender, receiver):
        assert "timed out" not in p.err.lower(), p.err
    assert os.path.getsize(out_path) == SIZE, f"received {os.path.getsize(out_path)} of {SIZE} bytes"
    assert sha256_file(out_path) == big.sha256
    assert link.drops() > 0, "the loss rule dropped nothing: the link was not lossy"


def test_64mib_over_lossy_link(link, big, duplex, spawn, tmp_path):
    out_path = tmp_path / "out.bin"
    with open(out_path, "wb") as out:
        receiver = spawn(in_ns(link.rx, duplex, "listen", "-w", "30", link.rx_ip, "0"),
                         stdout=out, name="listen(rx)")
    port = int(receiver.wait_err(LISTENING_RE).group(2))
    with big.open() as f:
        sender = spawn(in_ns(link.tx, duplex, "connect", "-w", "30", link.rx_ip, port),
                       stdin=f, name="connect(tx)")
    check_transfer(receiver, sender, out_path, big, link, budget=45)


def test_64mib_over_lossy_link_through_relay(link, big, duplex, spawn, tmp_path):
    out_path = tmp_path / "out.bin"
    with open(out_path, "wb") as out:
        receiver = spawn(in_ns(link.rx, duplex, "listen", "-w", "30", "127.0.0.1", "0"),
                         stdout=out, name="listen(rx)")
    lport = int(receiver.wait_err(LISTENING_RE).group(2))
    relay = spawn(in_ns(link.rx, duplex, "relay", "-w", "30", f"{link.rx_ip}:0", f"127.0.0.1:{lport}"),
                  name="relay(rx)")
    rport = int(relay.wait_err(LISTENING_RE).group(2))
    with big.open() as f:
        sender = spawn(in_ns(link.tx, duplex, "connect", "-w", "30", link.rx_ip, rport),
                       stdin=f, name="connect(tx)")
    check_transfer(receiver, sender, out_path, big, link, budget=45)
    rc = relay.wait(10)
    assert rc == 0, (rc, relay.err)
