"""End-to-end tests of terminals as endpoints: connect --pty LINK (a
pseudo-terminal linked at LINK, socat's PTY,link=LINK,raw).

Run: DUPLEX=/abs/build/duplex /usr/bin/python3 -m pytest -q tests/e2e/test_tty.py"""

import os
import termios

import pytest

from conftest import LISTENING_RE, TIMEOUT, seeded_bytes, sha
from servers_util import connect, read_to_eof, recv_exact, wait_for


def read_exact(fd, n, timeout=TIMEOUT):
    """n bytes from a terminal fd (blocking reads, each bounded by select)."""
    import select
    got = bytearray()
    while len(got) < n:
        r, _, _ = select.select([fd], [], [], timeout)
        assert r, f"no data on the pty after {len(got)} of {n} bytes"
        got += os.read(fd, n - len(got))
    return bytes(got)


def test_pty_copies_both_ways_and_outlives_its_reader(start_duplex, tmp_path):
    """A program on LINK gets what the peer sends and its bytes reach the
    peer, every byte checked; the terminal is raw; closing LINK and opening
    it again does not end the session; at the end LINK is removed."""
    link = tmp_path / "ttyV0"
    down, up = seeded_bytes(200_000, 21), seeded_bytes(120_000, 22)
    server = start_duplex(["listen", "127.0.0.1", "0"], stdin=down)
    port = int(server.wait_err(LISTENING_RE).group(2))
    client = start_duplex(["connect", "-v", "--pty", link, "127.0.0.1", port])
    client.wait_err(r"linked at ")
    assert os.path.islink(link) and os.readlink(link).startswith("/dev/pts/")

    fd = os.open(link, os.O_RDWR | os.O_NOCTTY)
    try:
        iflag, oflag, _, lflag, _, _, _ = termios.tcgetattr(fd)
        assert not lflag & (termios.ICANON | termios.ECHO | termios.ISIG), "not raw: line discipline on"
        assert not oflag & termios.OPOST and not iflag & (termios.ICRNL | termios.IXON), "not raw"
        os.write(fd, up[:60_000])
    finally:
        os.close(fd)  # as with socat (which holds the slave too), the session goes on
    # LINK stays closed while its bytes cross
    server.wait_out(lambda out: len(out) >= 60_000)
    fd = os.open(link, os.O_RDWR | os.O_NOCTTY)
    try:
        os.write(fd, up[60_000:])
        got = read_exact(fd, len(down))
        assert sha(got) == sha(down), "bytes from the peer differ"
    finally:
        os.close(fd)
    assert client.wait(TIMEOUT) == 0, client.err
    assert server.wait(TIMEOUT) == 0, server.err
    assert sha(server.out) == sha(up), f"{len(server.out)} of {len(up)} bytes reached the peer"
    assert not os.path.lexists(link), "LINK left behind"


@pytest.mark.parametrize("kind", ["file", "other-link", "live-pty"])
def test_pty_keeps_an_existing_link(run_duplex, start_duplex, tmp_path, kind):
    """LINK is replaced only when it is a link to a pseudo-terminal that no
    longer exists; a file, a link elsewhere, a live pty's link: exit 2,
    left as it was."""
    link = tmp_path / "ttyV0"
    if kind == "file":
        link.write_bytes(b"keep me")
    elif kind == "other-link":
        os.symlink("/etc/hostname", link)
    else:
        master, slave = os.openpty()
        os.symlink(os.ttyname(slave), link)
    try:
        before = os.readlink(link) if os.path.islink(link) else link.read_bytes()
        rc, _, err = run_duplex(["connect", "--pty", link, "127.0.0.1", "1"])
        assert rc == 2, err
        assert "not replaced" in err, err
        after = os.readlink(link) if os.path.islink(link) else link.read_bytes()
        assert after == before
    finally:
        if kind == "live-pty":
            os.close(master)
            os.close(slave)


def test_pty_replaces_a_stale_link(start_duplex, tmp_path):
    """A link to a pseudo-terminal gone (a killed duplex's) is replaced."""
    link = tmp_path / "ttyV0"
    os.symlink("/dev/pts/999999", link)
    server = start_duplex(["listen", "127.0.0.1", "0"], stdin=b"")
    port = int(server.wait_err(LISTENING_RE).group(2))
    client = start_duplex(["connect", "-v", "--pty", link, "127.0.0.1", port])
    client.wait_err(r"linked at ")
    assert os.readlink(link) != "/dev/pts/999999"
    client.wait(TIMEOUT)
    wait_for(lambda: not os.path.lexists(link), TIMEOUT, "LINK removed")


@pytest.mark.parametrize("args, words", [
    (["listen", "--pty", "/tmp/x", "0"], "not with listen"),
    (["connect", "-u", "--pty", "/tmp/x", "127.0.0.1", "1"], "not with -u"),
    (["connect", "--pty", "", "127.0.0.1", "1"], "needs a path"),
])
def test_pty_refusals(run_duplex, args, words):
    rc, _, err = run_duplex(args)
    assert rc == 2, err
    assert words in err, err


# ------------------------------------------------------- relay --serial --


@pytest.fixture
def pty_pair():
    """A pseudo-terminal pair made by the test: (master fd, slave path); the
    relay opens the slave as its device, the test plays the serial line."""
    master, slave = os.openpty()
    path = os.ttyname(slave)
    yield master, slave, path
    os.close(master)
    os.close(slave)


def test_serial_relay_sets_termios_and_copies_both_ways(start_duplex, pty_pair):
    """relay PORT DEVICE --serial 9600,8N2: the device's termios (speed, stop
    bits, raw) set at start and restored at exit; the client's bytes reach
    the line and the line's bytes reach the client, checked by hash; a
    second client is refused with a message while the first is on."""
    master, slave, path = pty_pair
    before = termios.tcgetattr(slave)
    p = start_duplex(["relay", "-k", "-v", "--serial", "9600,8N2", "127.0.0.1:0", path])
    port = int(p.wait_err(LISTENING_RE).group(2))
    iflag, oflag, cflag, lflag, ispeed, ospeed, _ = termios.tcgetattr(slave)
    assert ispeed == termios.B9600 and ospeed == termios.B9600
    assert cflag & termios.CSTOPB and cflag & termios.CLOCAL and cflag & termios.CREAD
    # Linux ptys keep CS8 and no parity whatever is asked: real lines take 5-8, N/E/O
    assert cflag & termios.CSIZE == termios.CS8 and not cflag & termios.PARENB
    assert not lflag & (termios.ICANON | termios.ECHO | termios.ISIG) and not oflag & termios.OPOST
    up, down = seeded_bytes(100_000, 31), seeded_bytes(80_000, 32)
    with connect(port) as c:
        p.wait_err(r"connected to ")
        with connect(port) as second:
            assert b"in use" in read_to_eof(second)[0], "the second client was not told"
        p.wait_err(r"refused: .* is in use by ")
        c.sendall(up)
        got = read_exact(master, len(up))
        assert sha(got) == sha(up), "client -> line differs"
        os.write(master, down)
        got = recv_exact(c, len(down))
        assert sha(got) == sha(down), "line -> client differs"
    p.wait_err(r"sent 100000 bytes, received 80000 bytes")
    p.kill()
    # SIGKILL leaves no chance to restore: a clean stop (SIGTERM) does
    p2 = start_duplex(["relay", "--serial", "115200", "127.0.0.1:0", path])
    p2.wait_err(LISTENING_RE)
    assert termios.tcgetattr(slave)[4] == termios.B115200
    p2.popen.terminate()
    p2.wait(TIMEOUT)
    assert termios.tcgetattr(slave)[4:6] == [termios.B9600, termios.B9600], "not restored"
    termios.tcsetattr(slave, termios.TCSANOW, before)


@pytest.mark.parametrize("args, words", [
    (["relay", "--serial", "115201", "4000", "/dev/null"], "invalid --serial value"),
    (["relay", "--serial", "9600,9N1", "4000", "/dev/null"], "invalid --serial value"),
    (["relay", "--serial", "9600,8X1", "4000", "/dev/null"], "invalid --serial value"),
    (["relay", "--serial", "9600", "4000", "127.0.0.1:80"], "must be one device path"),
    (["connect", "--serial", "9600", "127.0.0.1", "1"], "--serial SPEC is for relay"),
])
def test_serial_refusals(run_duplex, args, words):
    rc, _, err = run_duplex(args)
    assert rc == 2, err
    assert words in err, err


def test_serial_not_a_device(run_duplex, tmp_path):
    f = tmp_path / "plain"
    f.write_bytes(b"")
    rc, _, err = run_duplex(["relay", "--serial", "9600", "127.0.0.1:0", str(f)])
    assert rc != 0 and "not a character device" in err, err
