"""End-to-end tests of duplex's multi-client server modes: -k (stdio fan-out),
--echo, --broker, --chat, --exec/--sh-exec, and one-client servers without -k.
Run: DUPLEX=/abs/build/duplex /usr/bin/python3 -m pytest -q tests/e2e"""

import fcntl
import os
import random
import re
import select
import socket
import struct
import subprocess
import termios
import threading
import time

import pytest

from conftest import (TIMEOUT, free_port, have_ipv6_loopback, need, recv_all, sha, wait_listening,
                      wait_unix_listening)
from servers_util import (Pump, assert_half_close_echo, assert_pumped_echo, children, connect,
                          echo_roundtrip, exchange, name_of, open_many, read_to_eof, recv_exact,
                          recv_line, recv_until, rss_kib, said_connected, sockets, wait_for)

__all__ = ["sockets"]  # fixture re-exported from servers_util


# ----------------------------------------------------------------- --echo --


def test_echo_several_clients_at_once_random_data(start_listener, backend_env):
    proc, port = start_listener(["--echo", "-k"], env=backend_env)
    rng = random.Random(1234)
    sizes = [1 << 20, rng.randint(1, 1 << 20), rng.randint(1, 1 << 20), 1, 65536, 300001]
    assert_pumped_echo(port, [os.urandom(n) for n in sizes], timeout=30)  # each half-closes
    assert proc.poll() is None, "the echo server exited"


def test_echo_client_that_sends_before_reading_is_paused_not_dropped(start_listener):
    """A client that writes far more than every buffer and the server's queue
    (--max-queue 64 KiB) before it reads anything: the server stops reading
    it until the echo drains (never "not reading" and dropped), and every
    byte comes back in order."""
    proc, port = start_listener(["--echo", "-k", "-v", "--max-queue", "65536"])
    data = random.Random(16).randbytes(8 << 20)
    s = connect(port)
    sent = [0]

    def sender():
        try:
            for i in range(0, len(data), 65536):
                s.sendall(data[i:i + 65536])
                sent[0] = i + 65536
            s.shutdown(socket.SHUT_WR)
        except OSError:
            pass  # dropped: the read below tells

    t = threading.Thread(target=sender, daemon=True)
    t.start()
    # read nothing until the sender is stuck (the server paused it) or done
    deadline, last, since = time.monotonic() + TIMEOUT, -1, time.monotonic()
    while time.monotonic() < deadline and t.is_alive():
        if sent[0] != last:
            last, since = sent[0], time.monotonic()
        elif time.monotonic() - since > 0.5:
            break
        time.sleep(0.02)
    got, _ = read_to_eof(s, timeout=30, allow_reset=True)
    t.join(TIMEOUT)
    assert len(got) == len(data) and sha(got) == sha(data), \
        f"{len(got)} of {len(data)} bytes echoed; server said {proc.err[-300:]!r}"
    # its close line comes after a drop's would: stderr read up to it
    proc.wait_err(re.escape(name_of(s)) + r": closed")
    assert "not reading" not in proc.err, proc.err


def test_echo_half_close_gets_full_echo_then_eof(start_listener):
    proc, port = start_listener(["--echo", "-k"])
    assert_half_close_echo(port, 200_000)  # and the server still serves others


def test_echo_interleaved_clients_stay_separate(start_listener, sockets):
    _, port = start_listener(["--echo", "-k"])
    a, b = sockets([connect(port), connect(port)])
    for i in range(20):
        assert echo_roundtrip(a, b"A%d\n" % i) == b"A%d\n" % i
        assert echo_roundtrip(b, b"B%d\n" % i) == b"B%d\n" % i


def test_echo_without_k_serves_one_client_then_exits(start_listener):
    proc, port = start_listener(["--echo"])
    s = connect(port)
    try:
        assert echo_roundtrip(s, b"only one\n") == b"only one\n"
        s.shutdown(socket.SHUT_WR)
        assert read_to_eof(s) == (b"", "eof")
    finally:
        s.close()
    assert proc.wait(TIMEOUT) == 0, proc.err


# --------------------------------------------------------------- --broker --


def test_broker_1000_clients_every_tag_exactly_once(start_listener, backend_env):
    n = 1000
    proc, port = start_listener(["--broker", "--no-stdio", "-k", "-v"], env=backend_env)
    socks = open_many(port, n)
    pump = Pump(socks)
    try:
        # every client must be accepted before anyone sends
        proc.wait_err(r"connected \(%d now\)" % n, timeout=30)
        tags = [b"tag-%04d-%s\n" % (i, os.urandom(4).hex().encode()) for i in range(n)]
        for i in range(n):
            pump.send(i, tags[i])
        expect_len = sum(len(t) for t in tags)

        def done(i, data):
            return len(data) >= expect_len - len(tags[i]) or pump.eof[i] is not None

        got = pump.run(done=done, timeout=20)  # a stall of 20 s; slow is not wrong
        all_tags = set(tags)
        for i in range(n):
            assert pump.eof[i] is None, f"client #{i} was closed ({pump.eof[i]})"
            lines = bytes(got[i]).splitlines(keepends=True)
            assert len(lines) == n - 1, f"client #{i}: {len(lines)} lines, expected {n - 1}"
            assert len(set(lines)) == n - 1, f"client #{i}: duplicated lines"
            assert set(lines) == all_tags - {tags[i]}, f"client #{i}: wrong set of tags"
        assert proc.poll() is None
        # one client more: stderr read up to its line, and "(n + 1 now)": nobody left
        late = connect(port)
        try:
            said_connected(proc, late, now=n + 1)
        finally:
            late.close()
        assert "not reading" not in proc.err
    finally:
        pump.close()


def test_broker_stdio_both_ways(start_listener, sockets):
    proc, port = start_listener(["--broker", "-k", "-v"], stdin=subprocess.PIPE)
    a, b = sockets([connect(port), connect(port)])
    proc.wait_err(r"connected \(2 now\)")
    a.sendall(b"from a\n")
    assert recv_exact(b, 7) == b"from a\n"
    proc.wait_out(lambda o: b"from a\n" in o)
    proc.stdin.write(b"from stdin\n")
    proc.stdin.flush()
    assert recv_exact(a, 11) == b"from stdin\n"
    assert recv_exact(b, 11) == b"from stdin\n"
    # a never receives its own bytes
    a.settimeout(0.3)
    with pytest.raises(socket.timeout):
        a.recv(100)


# ----------------------------------------------------------------- --chat --


def test_chat_prefixes_notices_and_server_lines(start_listener, sockets, backend_env):
    proc, port = start_listener(["--chat", "-k"], stdin=subprocess.PIPE, env=backend_env)
    a = sockets(connect(port))
    an = name_of(a)
    proc.wait_out(lambda o: f"* {an} joined (1 connected)\n".encode() in o)
    b = sockets(connect(port))
    bn = name_of(b)
    assert recv_line(a) == f"* {bn} joined (2 connected)\n".encode()

    a.sendall(b"hello everyone\n")
    assert recv_line(b) == f"[{an}] hello everyone\n".encode()
    proc.wait_out(lambda o: f"[{an}] hello everyone\n".encode() in o)

    # a line in pieces is passed on whole, once complete
    b.sendall(b"two ")
    time.sleep(0.1)
    b.sendall(b"parts\nand another\n")
    want = f"[{bn}] two parts\n[{bn}] and another\n".encode()
    assert recv_exact(a, len(want)) == want

    proc.stdin.write(b"from the server\n")
    proc.stdin.flush()
    for s in (a, b):
        assert recv_line(s) == b"[server] from the server\n"

    # b's last line has no newline: passed on at its end, then the notice
    b.sendall(b"bye")
    b.shutdown(socket.SHUT_WR)
    rest, how = read_to_eof(b)
    assert how == "eof" and rest == b""
    want = f"[{bn}] bye\n* {bn} left (1 connected)\n".encode()
    assert recv_exact(a, len(want)) == want

    out = proc.wait_out(lambda o: f"* {bn} left (1 connected)\n".encode() in o)
    assert out == (f"* {an} joined (1 connected)\n* {bn} joined (2 connected)\n"
                   f"[{an}] hello everyone\n[{bn}] two parts\n[{bn}] and another\n"
                   f"[{bn}] bye\n* {bn} left (1 connected)\n").encode()
    # a sees nothing of its own
    a.settimeout(0.3)
    with pytest.raises(socket.timeout):
        a.recv(100)


@pytest.mark.skipif(not have_ipv6_loopback(), reason="no IPv6 loopback")
def test_chat_ipv6_names(start_listener, sockets):
    proc, port = start_listener(["--chat", "-k", "-v", "--no-stdio"], addr="::1")
    a = sockets(connect(port, host="::1"))
    proc.wait_err(r"connected \(1 now\)")  # a has joined before b comes
    b = sockets(connect(port, host="::1"))
    bn = name_of(b)
    assert bn.startswith("[::1]:")
    assert recv_line(a) == f"* {bn} joined (2 connected)\n".encode()
    b.sendall(b"hi\n")
    assert recv_line(a) == f"[{bn}] hi\n".encode()


def test_chat_stdin_lines_follow_the_client_rules(start_listener, sockets):
    """The server's own lines (stdin) are assembled and cut as a client's
    are: a line that arrives in two reads is one line, one over 4096 bytes
    goes in pieces of 4096 (nothing cut off), and the last one, without a
    newline, at the end of stdin."""
    proc, port = start_listener(["--chat", "-k"], stdin=subprocess.PIPE)
    a = sockets(connect(port))
    proc.wait_out(lambda o: f"* {name_of(a)} joined (1 connected)\n".encode() in o)
    proc.stdin.write(b"one ")
    proc.stdin.flush()
    time.sleep(0.2)  # the rest in a second read (passes either way: it must not split)
    proc.stdin.write(b"line\n")
    proc.stdin.flush()
    assert recv_line(a) == b"[server] one line\n"
    long = bytes(random.choice(b"abcdefghij") for _ in range(10000))
    proc.stdin.write(long + b"\n")
    proc.stdin.flush()
    want = b"".join(b"[server] " + long[i:i + 4096] + b"\n" for i in range(0, len(long), 4096))
    assert recv_exact(a, len(want)) == want
    proc.stdin.write(b"tail")
    proc.close_stdin()
    assert recv_line(a) == b"[server] tail\n"
    assert proc.poll() is None


# ------------------------------------------------------------ default -k --


def test_k_clients_in_turn_go_to_stdout_in_order(start_listener, sockets):
    proc, port = start_listener(["-k", "-v"], stdin=subprocess.PIPE)
    expect = b""
    for i in range(3):
        s = connect(port)
        data = b"client %d: " % i + os.urandom(50_000).hex().encode() + b"\n"
        s.sendall(data)
        s.close()
        expect += data
        proc.wait_out(lambda o, e=expect: len(o) >= len(e))
    assert proc.out == expect
    assert proc.poll() is None, "the -k server exited"

    # two clients at once both get the server's stdin, then EOF at its end
    c, d = sockets([connect(port), connect(port)])
    for s in (c, d):
        proc.wait_err(re.escape(name_of(s)) + r": connected")
    proc.stdin.write(b"to everyone\n")
    proc.stdin.flush()
    for s in (c, d):
        assert recv_exact(s, 12) == b"to everyone\n"
    proc.close_stdin()
    for s in (c, d):
        assert read_to_eof(s) == (b"", "eof")
    # the clients can still talk after stdin ended
    c.sendall(b"late\n")
    proc.wait_out(lambda o: o.endswith(b"late\n"))
    # and the server keeps listening: a new client gets EOF at once
    e = sockets(connect(port))
    assert read_to_eof(e, timeout=5) == (b"", "eof")
    assert proc.poll() is None


@pytest.mark.parametrize("mode", [[], ["--broker"], ["--chat"]], ids=["stdio", "broker", "chat"])
def test_k_stdin_waits_for_a_client(start_listener, sockets, mode):
    """What stdin gives while nobody is connected is not read (and lost): the
    next client to arrive gets it."""
    proc, port = start_listener(["-k", "-v", *mode], stdin=subprocess.PIPE)
    proc.stdin.write(b"early line\n")
    proc.stdin.flush()
    time.sleep(0.3)  # time enough for a server that reads stdin to have lost it
    a = sockets(connect(port))
    recv_until(a, lambda got: b"early line\n" in got)
    name = name_of(a)
    a.close()
    proc.wait_err(re.escape(name) + r": closed")
    # nobody connected again: the next line waits for the next client
    proc.stdin.write(b"between clients\n")
    proc.stdin.flush()
    time.sleep(0.3)
    b = sockets(connect(port))
    recv_until(b, lambda got: b"between clients\n" in got)
    assert proc.poll() is None


def assert_no_eof_yet(sock):
    """What the socket holds has arrived, and no end-of-input with it."""
    sock.setblocking(False)
    try:
        while True:
            assert sock.recv(65536) != b"", "the server shut this client down"
    except BlockingIOError:
        pass
    finally:
        sock.setblocking(True)


@pytest.mark.parametrize("flag", ["-d", "--no-stdio"])
@pytest.mark.parametrize("mode", [[], ["--broker"], ["--chat"]], ids=["stdio", "broker", "chat"])
def test_k_stdin_not_read_does_not_end_clients(start_listener, sockets, mode, flag):
    """-d means stdin is not read (and --no-stdio leaves it out): it never
    ends, so no client gets end-of-input from it; they talk both ways."""
    proc, port = start_listener(["-k", "-v", flag, *mode])  # stdin /dev/null: would end at once
    a = sockets(connect(port))
    proc.wait_err(re.escape(name_of(a)) + r": connected")
    b = sockets(connect(port))
    proc.wait_err(re.escape(name_of(b)) + r": connected")
    # b was admitted after a: a shutdown of a's side would have reached it
    assert_no_eof_yet(a)
    a.sendall(b"from a\n")
    if mode:
        recv_until(b, lambda got: b"from a\n" in got)
    elif flag == "-d":
        proc.wait_out(lambda o: o == b"from a\n")
    for s in (a, b):
        assert_no_eof_yet(s)
    # one client more: stderr read up to its line, and "(3 now)": a and b are still there
    said_connected(proc, sockets(connect(port)), now=3)
    assert re.search(r": closed", proc.err) is None, proc.err
    assert proc.poll() is None


def test_k_two_clients_send_at_once_nothing_lost(start_listener, sockets):
    proc, port = start_listener(["-k", "--recv-only"])
    a, b = sockets([connect(port), connect(port)])
    # -k writes each client's chunks as they come: a chunk may end mid-line,
    # so each client writes its own alphabet and is picked out byte by byte
    to_a = bytes.maketrans(b"0123456789", b"abcdefghij")
    to_b = bytes.maketrans(b"0123456789\n", b"klmnopqrst\r")
    da = b"".join(b"A%06d\n" % i for i in range(20000)).translate(to_a)
    db = b"".join(b"B%06d\n" % i for i in range(20000)).translate(to_b)
    pump = Pump([a, b])
    pump.send(0, da, shut=True)
    pump.send(1, db, shut=True)
    pump.run(done=lambda i, _d: not len(pump.out[i]) and not pump.shut_after[i])
    out = proc.wait_out(lambda o: len(o) >= len(da) + len(db))
    alpha_a = set(da)
    assert bytes(c for c in out if c in alpha_a) == da
    assert bytes(c for c in out if c not in alpha_a) == db


def test_k_slow_stdout_pauses_clients_loses_nothing(start_listener):
    """The server's stdout is never dropped: while it is blocked, reading
    from the clients pauses (backpressure), and every byte arrives later."""
    r, w = os.pipe()
    try:
        proc, port = start_listener(["-k", "--recv-only", "-v"], stdout=w)
    finally:
        os.close(w)
    rfile = os.fdopen(r, "rb", buffering=0)
    try:
        n = 2
        # each client's bytes in its own half of the byte range, so that the
        # two streams can be told apart however their chunks interleave
        low = bytes.maketrans(bytes(range(256)), bytes(i & 0x7F for i in range(256)))
        high = bytes.maketrans(bytes(range(256)), bytes(i | 0x80 for i in range(256)))
        data = [os.urandom(8 << 20).translate(low), os.urandom(8 << 20).translate(high)]
        total = sum(len(d) for d in data)
        got = bytearray()
        rss = []

        def drain():
            # stdout blocked meanwhile: its pipe full, but for the last pages
            # (the clients push 16 MiB)
            size = fcntl.fcntl(r, 1032)  # F_GETPIPE_SZ
            wait_for(lambda: struct.unpack("i", fcntl.ioctl(r, termios.FIONREAD, b"\0" * 4))[0] >= size - (64 << 10),
                     TIMEOUT, "the server's stdout pipe to fill")
            deadline = time.monotonic() + 60
            while len(got) < total and time.monotonic() < deadline:
                rss.append(rss_kib(proc.pid))
                if "lost" in proc.err:
                    return  # said so: the assertions below report it
                # bounded: with bytes lost, stdout stays open and never ends
                if not select.select([rfile], [], [], 1.0)[0]:
                    continue
                b = rfile.read(1 << 20)
                if not b:
                    return
                got.extend(b)

        t = threading.Thread(target=drain, daemon=True)
        t.start()
        socks = [connect(port) for _ in range(n)]
        pump = Pump(socks)
        try:
            for i in range(n):
                pump.send(i, data[i], shut=True)
            pump.run(done=lambda i, _d: not len(pump.out[i]) and not pump.shut_after[i], timeout=60)
        finally:
            pump.close()
        t.join(60)
        assert len(got) == total, f"stdout got {len(got)} of {total} bytes; stderr={proc.err[-400:]!r}"
        got = bytes(got)
        assert got.translate(None, bytes(range(0x80, 0x100))) == data[0], "client 0: bytes lost or reordered"
        assert got.translate(None, bytes(range(0x80))) == data[1], "client 1: bytes lost or reordered"
        late = connect(port)  # one client more: stderr read up to its line
        try:
            said_connected(proc, late)
        finally:
            late.close()
        assert "not reading" not in proc.err and "lost" not in proc.err, proc.err
        assert max(rss) < 64 * 1024, f"server RSS {max(rss)} KiB"
    finally:
        rfile.close()


# --------------------------------------------------------- --exec/--sh-exec --


def test_exec_cat_half_close(start_listener, backend_env):
    proc, port = start_listener(["-k", "--exec", "cat"], env=backend_env)
    assert_pumped_echo(port, [os.urandom(1 << 20), os.urandom(12345), b""], timeout=30)


def test_sh_exec_wc_counts_after_half_close(start_listener, sockets):
    proc, port = start_listener(["-k", "--sh-exec", "wc -c"])
    for n in (0, 1, 100_000, 3_000_000):
        s = sockets(connect(port))
        pump = Pump([s])
        pump.send(0, b"x" * n, shut=True)
        got = pump.run(timeout=20)
        assert int(bytes(got[0]).strip()) == n


def test_exec_without_k_serves_one_client_then_exits(start_listener):
    proc, port = start_listener(["--exec", "cat"])
    assert exchange(port, b"once\n") == (b"once\n", "eof")
    assert proc.wait(TIMEOUT) == 0, proc.err


def test_exec_200_connections_leave_no_zombie(start_listener):
    proc, port = start_listener(["-k", "--sh-exec", "cat"])
    total, batch = 200, 50
    for start in range(0, total, batch):
        socks = open_many(port, batch)
        pump = Pump(socks)
        try:
            for i in range(batch):
                pump.send(i, b"conn %d\n" % (start + i), shut=True)
            got = pump.run(timeout=30)
            for i in range(batch):
                assert bytes(got[i]) == b"conn %d\n" % (start + i)
        finally:
            pump.close()
    # every child ends and is reaped: none left, none a zombie
    wait_for(lambda: not children(proc.pid), 10,
             f"the children of the server to be reaped (left: {children(proc.pid)})")
    time.sleep(0.3)
    assert children(proc.pid) == []
    assert proc.poll() is None
    # and the server still runs children
    assert exchange(port, b"after\n") == (b"after\n", "eof")


def test_exec_children_count_while_connected(start_listener, sockets):
    proc, port = start_listener(["-k", "--exec", "cat"])
    socks = sockets([connect(port) for _ in range(5)])
    for s in socks:
        assert echo_roundtrip(s, b"hi\n") == b"hi\n"
    kids = children(proc.pid)
    assert len(kids) == 5 and all(st != "Z" for _, st in kids), kids
    for s in socks:
        s.close()
    wait_for(lambda: not children(proc.pid), 10, "children to end")


ENV_CMD = 'echo "$DUPLEX_PEER_ADDR|$DUPLEX_PEER_PORT|$NCAT_REMOTE_ADDR|$NCAT_REMOTE_PORT"'


@pytest.mark.parametrize("host", ["127.0.0.1", "::1"])
def test_exec_env_has_peer_address(host, start_listener, sockets):
    if host == "::1" and not have_ipv6_loopback():
        pytest.skip("no IPv6 loopback")
    proc, port = start_listener(["-k", "--sh-exec", ENV_CMD], addr=host)
    s = sockets(connect(port, host=host))
    me_host, me_port = s.getsockname()[:2]
    out, how = read_to_eof(s)
    assert out == f"{me_host}|{me_port}|{me_host}|{me_port}\n".encode()


def test_exec_env_from_second_source_address(start_listener, sockets):
    proc, port = start_listener(["-k", "--sh-exec", ENV_CMD])
    s = sockets(connect(port, source="127.0.0.2"))
    out, _ = read_to_eof(s)
    assert out == f"127.0.0.2|{s.getsockname()[1]}|127.0.0.2|{s.getsockname()[1]}\n".encode()


NCAT_ENV_CMD = ('echo "$NCAT_PROTO|$NCAT_REMOTE_ADDR|$NCAT_REMOTE_PORT|$NCAT_LOCAL_ADDR|'
                '$NCAT_LOCAL_PORT|$DUPLEX_PROTO"')


def _listen_exec_env(spawn, binary, args, connect_to, env=None):
    """`BINARY -l ARGS --sh-exec NCAT_ENV_CMD` and one client: the child's
    line and the client's own address."""
    p = spawn([binary, "-l", *args, "--sh-exec", NCAT_ENV_CMD], stdin=subprocess.DEVNULL,
              env=env, name=os.path.basename(binary))
    s = connect_to(p)
    try:
        out, _ = read_to_eof(s)
        mine = s.getsockname()
    finally:
        s.close()
    assert p.wait(TIMEOUT) == 0, p.err
    return out.decode(), mine


@pytest.mark.parametrize("host", ["127.0.0.1", "::1"])
def test_exec_env_ncat_proto_as_ncat_sets_it(spawn, duplex, host):
    """The same line against ncat 7.93 and duplex: NCAT_PROTO=TCP and ncat's
    four address variables alike; DUPLEX_PROTO=TCP (ncat sets none). An
    inherited NCAT_PROTO is replaced."""
    if host == "::1" and not have_ipv6_loopback():
        pytest.skip("no IPv6 loopback")
    expect = {"ncat": "inherited", "duplex": "TCP"}  # ncat leaves DUPLEX_PROTO alone
    for name, binary in (("ncat", need("ncat")), ("duplex", duplex)):
        port = free_port(host, socket.AF_INET6 if ":" in host else socket.AF_INET)

        def connect_to(p):
            wait_listening(port, proc=p)
            return connect(port, host=host)

        env = dict(os.environ, NCAT_PROTO="inherited", DUPLEX_PROTO="inherited")
        line, mine = _listen_exec_env(spawn, binary, [host, str(port)], connect_to, env)
        assert line == f"TCP|{host}|{mine[1]}|{host}|{port}|{expect[name]}\n", name


def test_exec_env_ncat_proto_on_a_unix_socket(spawn, duplex, tmp_path):
    """ncat -l -U says NCAT_PROTO=TCP for a Unix stream socket too (and
    'localhost' with empty ports for the addresses): duplex keeps NCAT_PROTO
    as ncat sets it, leaves the NCAT_ addresses unset, and DUPLEX_PROTO says
    UNIX."""
    got = {}
    for name, binary in (("ncat", need("ncat")), ("duplex", duplex)):
        path = str(tmp_path / f"{name}.sock")

        def connect_to(p):
            wait_unix_listening(path, TIMEOUT, p)  # the file exists before listen()
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.settimeout(TIMEOUT)
            s.connect(path)
            return s

        got[name], _ = _listen_exec_env(spawn, binary, ["-U", path], connect_to)
    assert got["ncat"] == "TCP|localhost||localhost||\n"
    assert got["duplex"] == "TCP|||||UNIX\n"


# ------------------------------------------------------- connect --exec --


def _ncat_listener(spawn, stdin):
    """`ncat -l 127.0.0.1 PORT` fed `stdin` (bytes), its port."""
    port = free_port()
    p = spawn([need("ncat"), "-l", "127.0.0.1", str(port)], stdin=stdin, name="ncat -l")
    wait_listening(port, proc=p)
    return p, port


def _exec_cat_listener(server, data, half_close_early):
    """A listener that writes `data` and reads the echo at once (a thread
    each; `ncat -l` writes its stdin with blocking sends and reads nothing
    meanwhile, so with 1 MiB echoed back it can deadlock on a busy machine).
    It half-closes right after writing (half_close_early) or once the whole
    echo is back; result["echo"] is everything read up to the end."""

    def script(conn, result):
        def feed():
            conn.sendall(data)
            if half_close_early:
                conn.shutdown(socket.SHUT_WR)

        t = threading.Thread(target=feed, daemon=True)
        t.start()
        got = bytearray()
        conn.settimeout(30)
        while len(got) < len(data) or half_close_early:
            b = conn.recv(65536)
            if not b:
                break
            got += b
            if len(got) >= len(data) and not half_close_early:
                conn.shutdown(socket.SHUT_WR)  # cat sees its end and exits
                got += recv_all(conn, 30)
                break
        t.join(30)
        result["echo"] = bytes(got)

    return server(script)


@pytest.mark.parametrize("half_close_early", [False, True])
def test_connect_exec_cat_through_listener(server, spawn, duplex, half_close_early):
    """`duplex 127.0.0.1 PORT --exec /bin/cat` (ncat's connect --exec): 1 MiB
    from a listener goes through the program and back, compared; the
    listener's end then reaches cat, and the client exits 0. The listener may
    half-close as soon as it has written: what cat still writes back arrives
    whole. ncat 7.93 runs the same line (test_connect_sh_exec_env_and_exit_status)
    but fails this one: it loses the tail after an early half-close (~5% of
    1 MiB), and with two CPU hogs it hung in 7 of 15 runs (duplex: 0 of 15)."""
    data = os.urandom(1 << 20)
    srv = _exec_cat_listener(server, data, half_close_early)
    c = spawn([duplex, "127.0.0.1", str(srv.port), "--exec", need("cat")], stdin=subprocess.DEVNULL,
              name="duplex")
    assert c.wait(30) == 0, c.err
    echo = srv.join(30)["echo"]
    assert c.out == b""  # the program has the connection, not duplex's stdout
    assert len(echo) == len(data) and sha(echo) == sha(data)


@pytest.mark.parametrize("tool", ["ncat", "duplex"])
def test_connect_sh_exec_env_and_exit_status(spawn, duplex, tool):
    """The child reads a line from the listener and answers with ncat's
    variables; its exit status 3 is not duplex's (ncat 7.93 exits 0 too)."""
    srv, port = _ncat_listener(spawn, subprocess.PIPE)
    binary = need("ncat") if tool == "ncat" else duplex
    cmd = 'read l; echo "$l|$NCAT_PROTO|$NCAT_REMOTE_ADDR|$NCAT_REMOTE_PORT|$NCAT_LOCAL_ADDR"; exit 3'
    c = spawn([binary, "127.0.0.1", str(port), "--sh-exec", cmd], stdin=subprocess.DEVNULL,
              name=tool)
    srv.popen.stdin.write(b"hello\n")  # a pipe's buffer holds it: never blocks
    srv.popen.stdin.flush()
    srv.wait_out(lambda b: b.endswith(b"\n"))
    assert srv.out == f"hello|TCP|127.0.0.1|{port}|127.0.0.1\n".encode()
    assert c.wait(TIMEOUT) == 0, c.err
    srv.close_stdin()
    srv.wait(TIMEOUT)


def test_connect_exec_refusals(run_duplex):
    """A program that cannot be run fails before connecting (exit 2); the
    stdio flags do not apply to a connection the program has."""
    rc, _, err = run_duplex(["127.0.0.1", str(free_port()), "--exec", "/no/such/program"])
    assert rc == 2 and "--exec /no/such/program: No such file or directory" in err, err
    rc, _, err = run_duplex(["-C", "127.0.0.1", "9", "--sh-exec", "cat"])
    assert rc == 2 and "gives the connection to the program" in err, err


def test_exec_passes_100_arguments(start_listener):
    """--exec CMD has no fixed limit on its words (62 were kept, silently)."""
    words = [f"a{i}" for i in range(1, 101)]
    proc, port = start_listener(["--exec", " ".join(["echo", *words])])
    out, how = exchange(port, b"")
    assert how == "eof"
    assert out.split() == [w.encode() for w in words]
    assert proc.wait(TIMEOUT) == 0, proc.err


def test_exec_threads_500_short_lived_children_each_end_promptly(start_listener):
    """--threads 2 --exec with --idle-timeout (the server keeps a copy of
    each socket to watch it): 500 children that print a line and exit. Each
    client gets its line and then EOF at once, never after the idle
    timeout: a child reaped by the other loop before it was recorded kept
    its slot, and the client's socket, open."""
    proc, port = start_listener(["-k", "--exec", "echo hi", "--threads", "2",
                                 "--idle-timeout", "60"])
    total, batch = 500, 50
    for start in range(0, total, batch):
        socks = open_many(port, batch)
        pump = Pump(socks)
        try:
            got = pump.run(timeout=20)
            for i in range(batch):
                assert pump.eof[i] == "eof" and bytes(got[i]) == b"hi\n", (start + i, got[i])
        finally:
            pump.close()
    assert proc.poll() is None
    wait_for(lambda: not children(proc.pid), 10, f"children to be reaped: {children(proc.pid)}")


@pytest.mark.parametrize("flag", ["--exec", "-e"])
@pytest.mark.parametrize("prog,cause", [
    ("/no/such/prog", "No such file or directory"),
    ("no-such-program-duplex", "No such file or directory"),
    ("NOTEXEC", "Permission denied"),
    ("DIR", "Permission denied"),
])
def test_exec_program_checked_at_start_up(flag, prog, cause, run_duplex, tmp_path):
    """A program that cannot be run is a usage error at start-up, not a
    failure (and exit 0) when a client comes."""
    if prog == "NOTEXEC":
        prog = str(tmp_path / "script")
        with open(prog, "w") as f:
            f.write("#!/bin/sh\necho hi\n")
        os.chmod(prog, 0o644)
    elif prog == "DIR":
        prog = str(tmp_path)
    rc, out, err = run_duplex(["listen", "-k", flag, f"{prog} arg", "127.0.0.1", "0"])
    assert rc == 2, (rc, err)
    assert f"duplex: --exec {prog}: {cause}" in err, err
    assert "listening on" not in err


def test_exec_failure_when_a_client_comes_is_reported(start_listener, tmp_path):
    """The program was there at start-up and is gone when the client comes:
    the failure is printed and the one-client server exits non-zero."""
    prog = tmp_path / "gone.sh"
    prog.write_text("#!/bin/sh\necho hi\n")
    prog.chmod(0o755)
    proc, port = start_listener(["--exec", str(prog)])
    prog.unlink()
    out, how = exchange(port, b"")
    assert (out, how) == (b"", "eof")
    assert proc.wait(TIMEOUT) == 1, proc.err
    assert f"duplex: exec {prog}: No such file or directory" in proc.err, proc.err
