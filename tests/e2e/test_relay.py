"""End-to-end tests of `duplex relay [-k] [options] LISTEN TARGET` (port
forwarding): bulk data both ways, half-close passed on in each direction,
Unix <-> TCP, refused and unanswering targets, many concurrent relayed
connections, --max-conns, --idle-timeout, -v and --stats-json, curl interop.

Run: DUPLEX=/abs/build/duplex /usr/bin/python3 -m pytest -q tests/e2e/test_relay.py"""

import hashlib
import http.server
import json
import os
import random
import re
import select
import signal
import socket
import stat
import threading
import time

import pytest

from conftest import LISTENING_RE, TIMEOUT, closed_port, free_port, have_ipv6_loopback, need, seeded_bytes, sha
from servers_util import (Pump, closed_within, connect, echo_roundtrip, name_of, open_many,
                          read_to_eof, recv_exact, send_then_read_to_eof, serves_new_client,
                          sockets, wait_for)

__all__ = ["sockets"]  # fixture re-exported from servers_util


# ------------------------------------------------------------------ helpers --


@pytest.fixture
def relay(start_duplex):
    """relay(listen, target, args=(), k=True, **spawn_kw) runs
    `duplex relay [-k] ARGS LISTEN TARGET` and returns (proc, port): the port
    from its 'listening on' line, or None for a unix: listen side (then -v is
    added and the call returns once the relay has printed that it listens)."""

    def _start(listen, target, args=(), k=True, **kw):
        args = list(map(str, args))
        unix = listen.startswith("unix:") or listen.startswith("/")
        if unix and "-v" not in args:
            args.append("-v")
        argv = ["relay", *(["-k"] if k else []), *args, listen, target]
        p = start_duplex(argv, **kw)
        if unix:
            p.wait_err(r"listening on ")
            path = listen[5:] if listen.startswith("unix:") else listen
            assert stat.S_ISSOCK(os.stat(path).st_mode), f"{path} is not a socket"
            return p, None
        m = p.wait_err(LISTENING_RE)
        return p, int(m.group(2))

    return _start


@pytest.fixture
def echo_target(start_listener):
    """A `duplex listen -k --echo 127.0.0.1 0` target; returns its port."""

    def _start(addr="127.0.0.1"):
        _, port = start_listener(["-k", "--echo"], addr=addr)
        return port

    return _start


def json_lines(proc, n, timeout=TIMEOUT):
    """The first n JSON lines the relay prints on stdout (waits for them)."""
    out = proc.wait_out(lambda b: b.count(b"\n") >= n, timeout)
    lines = out.decode().splitlines()[:n]
    return [json.loads(line) for line in lines]


def unix_connect(path, timeout=TIMEOUT):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(timeout)
    try:
        s.connect(path)
    except BaseException:
        s.close()
        raise
    return s


# ------------------------------------------------------ bulk data: 1 GiB --

GIB = 1 << 30
BLOCK = 4 << 20


def send_stream(sock, seed, total, result, key):
    """Send `total` pseudo-random bytes (a 4 MiB random block, each copy
    stamped with its index so that no two blocks are equal), hashing them
    as they go; then shut the write side. result[key] = sha256 hex."""
    block = bytearray(random.Random(seed).randbytes(BLOCK))
    h = hashlib.sha256()
    sent = 0
    i = 0
    try:
        while sent < total:
            n = min(BLOCK, total - sent)
            block[0:8] = i.to_bytes(8, "little")
            view = memoryview(block)[:n]
            sock.sendall(view)
            h.update(view)
            sent += n
            i += 1
        sock.shutdown(socket.SHUT_WR)
        result[key] = h.hexdigest()
    except Exception as e:  # reported by the test
        result[key + "_error"] = f"after {sent} bytes: {e!r}"


def recv_stream(sock, result, key):
    """Read to EOF, hashing; result[key] = (byte count, sha256 hex)."""
    h = hashlib.sha256()
    buf = bytearray(1 << 20)
    view = memoryview(buf)
    n = 0
    try:
        while True:
            k = sock.recv_into(buf)
            if not k:
                break
            h.update(view[:k])
            n += k
        result[key] = (n, h.hexdigest())
    except Exception as e:
        result[key + "_error"] = f"after {n} bytes: {e!r}"


def test_one_gib_each_way_through_relay(relay, server, sockets):
    """1 GiB client -> target and, at the same time, 1 GiB target -> client
    through the relay; sha256 checked at the receiving end of each way."""

    def target_script(conn, result):
        conn.settimeout(60)
        t = threading.Thread(target=send_stream, args=(conn, 2, GIB, result, "down_sent"), daemon=True)
        t.start()
        recv_stream(conn, result, "up_got")
        t.join(90)

    srv = server(target_script)
    proc, port = relay("127.0.0.1:0", f"127.0.0.1:{srv.port}", ["--stats-json"], k=False)
    c = sockets(connect(port, timeout=60))
    res = {}
    t = threading.Thread(target=send_stream, args=(c, 1, GIB, res, "up_sent"), daemon=True)
    t.start()
    recv_stream(c, res, "down_got")
    t.join(90)
    assert not t.is_alive(), "client sender did not finish"
    got = srv.join(90)
    assert "up_sent_error" not in res and "down_got_error" not in res, res
    assert "down_sent_error" not in got and "up_got_error" not in got, got
    assert got["up_got"] == (GIB, res["up_sent"]), "client -> target data differs"
    assert res["down_got"] == (GIB, got["down_sent"]), "target -> client data differs"
    stats = json_lines(proc, 1)[0]
    assert stats["bytes_up"] == GIB and stats["bytes_down"] == GIB, stats
    assert stats["error"] is None, stats
    assert stats["client"] == name_of(c) and stats["target"] == f"127.0.0.1:{srv.port}", stats
    assert proc.wait(TIMEOUT) == 0, proc.err


def test_one_gib_through_relay_to_echo_target(relay, echo_target, sockets):
    """The client's stream goes out through the relay to `duplex listen
    --echo` and comes back through it again: byte count and sha256 equal."""
    size = GIB
    eport = echo_target()
    proc, port = relay("127.0.0.1:0", f"127.0.0.1:{eport}", ["--stats-json"])
    c = sockets(connect(port, timeout=60))
    res = {}
    t = threading.Thread(target=send_stream, args=(c, 3, size, res, "sent"), daemon=True)
    t.start()
    recv_stream(c, res, "back")
    t.join(90)
    assert "sent_error" not in res and "back_error" not in res, res
    assert res["back"] == (size, res["sent"])
    stats = json_lines(proc, 1)[0]
    assert (stats["bytes_up"], stats["bytes_down"], stats["error"]) == (size, size, None), stats


# -------------------------------------------------------------- half-close --


@pytest.mark.parametrize("target, size", [("tcp", 100_000), ("unix", 123_457)])
def test_client_half_close_reaches_target_which_still_replies(target, size, relay, server, tmp_path,
                                                              sockets):
    """A TCP client's half-close is passed on to the target (a TCP one, or a
    Unix-socket one), which still replies after it."""

    def script(conn, result):
        data = read_to_eof(conn)[0]  # EOF: the client's shutdown was passed on
        result["got"] = data
        conn.sendall(b"reply after your EOF: " + sha(data).encode() + b"\n")
        conn.shutdown(socket.SHUT_WR)
        result["after"] = conn.recv(10)  # the client has nothing more: EOF

    if target == "unix":
        srv = server(script, path=tmp_path / "target.sock", backlog=4)
        to, shown = f"unix:{srv.path}", str(srv.path)
    else:
        srv = server(script)
        to = shown = f"127.0.0.1:{srv.port}"
    proc, port = relay("127.0.0.1:0", to, ["--stats-json"])
    c = sockets(connect(port))
    data = os.urandom(size)
    back, how = send_then_read_to_eof(c, data)
    assert how == "eof"
    assert back == b"reply after your EOF: " + sha(data).encode() + b"\n"
    got = srv.join()
    assert got["got"] == data and got["after"] == b""
    stats = json_lines(proc, 1)[0]
    assert stats["target"] == shown and stats["client"] == name_of(c), stats
    assert stats["bytes_up"] == len(data) and stats["bytes_down"] == len(back), stats
    assert stats["error"] is None, stats


def test_progress_totals_each_direction(relay, start_listener):
    """relay --progress: the final line counts what went to the target as
    sent and what came back as received (1000 and 100 bytes: a swap shows)."""
    up = os.urandom(1000)
    target, tport = start_listener([], stdin=b"d" * 100)  # sends 100 bytes, keeps what it gets
    proc, port = relay("127.0.0.1:0", f"127.0.0.1:{tport}", args=["--progress=always"], k=False)
    s = connect(port)
    s.sendall(up)
    s.shutdown(socket.SHUT_WR)
    got, _ = read_to_eof(s)
    s.close()
    assert got == b"d" * 100
    assert proc.wait(TIMEOUT) == 0, proc.err
    assert re.search(r"^duplex: sent 1000 B, received 100 B, ", proc.err, re.M), proc.err
    target.wait(TIMEOUT)
    assert sha(target.out) == sha(up)


def test_target_half_close_reaches_client_which_still_sends(relay, server, sockets):
    def script(conn, result):
        conn.sendall(b"greeting, then EOF from me\n")
        conn.shutdown(socket.SHUT_WR)
        result["got"], result["how"] = read_to_eof(conn)

    srv = server(script)
    proc, port = relay("127.0.0.1:0", f"127.0.0.1:{srv.port}", ["--stats-json"])
    c = sockets(connect(port))
    back, how = read_to_eof(c)
    assert (back, how) == (b"greeting, then EOF from me\n", "eof")
    # the target's EOF must not end the other direction
    data = os.urandom(300_000)
    c.sendall(data)
    c.shutdown(socket.SHUT_WR)
    got = srv.join()
    assert got["how"] == "eof" and len(got["got"]) == len(data) and got["got"] == data
    # both directions over: the relay closes the client
    assert c.recv(10) == b""
    stats = json_lines(proc, 1)[0]
    assert (stats["bytes_up"], stats["bytes_down"]) == (len(data), len(back)), stats


# -------------------------------------------------------------- Unix <-> TCP --


def test_unix_client_side_to_tcp_target(relay, echo_target, tmp_path, sockets):
    eport = echo_target()
    path = str(tmp_path / "relay.sock")
    proc, _ = relay(f"unix:{path}", f"127.0.0.1:{eport}", ["--stats-json"])
    for i in range(3):
        c = sockets(unix_connect(path))
        data = os.urandom(200_000 + i)
        pump = Pump([c])
        pump.send(0, data, shut=True)
        got = pump.run(timeout=TIMEOUT)
        assert pump.eof[0] == "eof" and bytes(got[0]) == data
    stats = json_lines(proc, 3)
    for i, s in enumerate(stats):
        assert s["target"] == f"127.0.0.1:{eport}", s
        assert path in s["client"], s
        assert s["bytes_up"] == s["bytes_down"] == 200_000 + i and s["error"] is None, s


def test_unix_listen_side_removed_on_exit_without_k(relay, echo_target, tmp_path, sockets):
    eport = echo_target()
    path = str(tmp_path / "once.sock")
    proc, _ = relay(path, f"127.0.0.1:{eport}", k=False)  # a path starting with /
    c = sockets(unix_connect(path))
    assert echo_roundtrip(c, b"via unix\n") == b"via unix\n"
    c.shutdown(socket.SHUT_WR)
    assert read_to_eof(c) == (b"", "eof")
    assert proc.wait(TIMEOUT) == 0, proc.err
    assert not os.path.exists(path), "the relay left its Unix socket behind"


def test_unix_to_unix(relay, server, tmp_path, sockets):
    tpath = tmp_path / "t.sock"
    lpath = str(tmp_path / "l.sock")

    def script(conn, result):
        result["got"] = read_to_eof(conn)[0]
        conn.sendall(result["got"][::-1])
        conn.shutdown(socket.SHUT_WR)

    srv = server(script, path=tpath, backlog=4)
    relay(f"unix:{lpath}", f"unix:{tpath}")
    c = sockets(unix_connect(lpath))
    c.sendall(b"abcdef")
    c.shutdown(socket.SHUT_WR)
    assert read_to_eof(c) == (b"fedcba", "eof")
    srv.join()


# ------------------------------------------------------ addresses, output --


def test_bare_port_listens_on_every_address(relay, echo_target, sockets):
    eport = echo_target()
    proc, port = relay("0", f"127.0.0.1:{eport}")
    c = sockets(connect(port))
    assert echo_roundtrip(c, b"bare port\n") == b"bare port\n"
    if have_ipv6_loopback() and "[::]" in proc.err:
        c6 = sockets(connect(port, host="::1"))
        assert echo_roundtrip(c6, b"v6 too\n") == b"v6 too\n"


def test_ipv6_both_sides(relay, echo_target, sockets):
    if not have_ipv6_loopback():
        pytest.skip("no IPv6 loopback")
    eport = echo_target(addr="::1")
    proc, port = relay("[::1]:0", f"[::1]:{eport}", ["--stats-json"])
    assert re.search(r"listening on \[::1\]:\d+", proc.err), proc.err
    c = sockets(connect(port, host="::1"))
    assert echo_roundtrip(c, b"six\n") == b"six\n"
    c.shutdown(socket.SHUT_WR)
    assert read_to_eof(c) == (b"", "eof")
    s = json_lines(proc, 1)[0]
    assert s["client"] == name_of(c) and s["target"] == f"[::1]:{eport}", s


def test_verbose_line_per_connection(relay, echo_target, sockets):
    eport = echo_target()
    proc, port = relay("127.0.0.1:0", f"127.0.0.1:{eport}", ["-v"])
    c = sockets(connect(port))
    c.sendall(b"x" * 1000)
    c.shutdown(socket.SHUT_WR)
    assert read_to_eof(c) == (b"x" * 1000, "eof")
    client = re.escape(name_of(c))
    proc.wait_err(rf"^duplex: {client} -> 127\.0\.0\.1:{eport}: sent 1000 bytes, "
                  rf"received 1000 bytes in \d+\.\d+ s$")


def test_without_k_relay_exits_after_one_connection(relay, echo_target, sockets):
    eport = echo_target()
    proc, port = relay("127.0.0.1:0", f"127.0.0.1:{eport}", k=False)
    c = sockets(connect(port))
    assert echo_roundtrip(c, b"one\n") == b"one\n"
    # while the first is relayed, the listener is already closed
    with pytest.raises(OSError):
        sockets(connect(port, timeout=2))
    c.shutdown(socket.SHUT_WR)
    assert read_to_eof(c) == (b"", "eof")
    assert proc.wait(TIMEOUT) == 0, proc.err


# ---------------------------------------------------------- failing targets --


def test_target_refused_client_closed_relay_goes_on(relay, sockets):
    tport = closed_port()
    proc, port = relay("127.0.0.1:0", f"127.0.0.1:{tport}", ["--stats-json"])
    for i in range(2):
        c = sockets(connect(port))
        # a relay that kept the client would hold it open: no time bound needed
        assert closed_within(c, TIMEOUT), f"client #{i} not closed after the target refused"
    err = proc.wait_err(rf"127\.0\.0\.1:{tport}.*Connection refused")
    assert "Connection refused" in err.group(0)
    stats = json_lines(proc, 2)
    for s in stats:
        assert s["target"] == f"127.0.0.1:{tport}", s
        assert s["error"] and "refused" in s["error"].lower(), s
        assert s["bytes_up"] == 0 and s["bytes_down"] == 0, s
    assert proc.poll() is None, "the relay exited after a refused target"
    # the target comes up: the same relay now serves
    lsock = socket.socket()
    try:
        lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            lsock.bind(("127.0.0.1", tport))
        except OSError:
            pytest.skip("the target port was taken meanwhile")
        lsock.listen(4)
        c = sockets(connect(port))
        lsock.settimeout(TIMEOUT)
        conn, _ = lsock.accept()
        sockets(conn)
        c.sendall(b"now it works\n")
        assert recv_exact(conn, 13) == b"now it works\n"
        conn.sendall(b"yes\n")
        assert recv_exact(c, 4) == b"yes\n"
    finally:
        lsock.close()


def test_target_refused_without_k_exits_nonzero(relay, sockets):
    tport = closed_port()
    proc, port = relay("127.0.0.1:0", f"127.0.0.1:{tport}", k=False)
    c = sockets(connect(port))
    assert closed_within(c, 3)
    rc = proc.wait(TIMEOUT)
    assert rc != 0, proc.err
    assert f"127.0.0.1:{tport}" in proc.err and "Connection refused" in proc.err, proc.err


def test_connect_timeout_closes_that_client_relay_goes_on(relay, full_backlog, echo_target, sockets):
    proc, port = relay("127.0.0.1:0", f"127.0.0.1:{full_backlog}", ["-w", "1", "--stats-json"])
    a = sockets(connect(port))
    t0 = time.monotonic()
    b = sockets(connect(port))  # a second one while the first waits
    assert closed_within(a, TIMEOUT), "client not closed after the -w 1 connect timeout"
    elapsed = time.monotonic() - t0
    assert 0.8 <= elapsed < 8, f"-w 1 closed the client after {elapsed:.2f}s"
    assert closed_within(b, 3)
    proc.wait_err(rf"127\.0\.0\.1:{full_backlog}.*timed out")
    stats = json_lines(proc, 2)
    for s in stats:
        assert s["error"] and "timed out" in s["error"].lower(), s
    assert proc.poll() is None, "the relay exited after a connect timeout"
    c = sockets(connect(port))  # still accepting
    assert closed_within(c, 4)
    assert proc.poll() is None


# ------------------------------------------------------------------- limits --


def test_max_conns(relay, echo_target, sockets):
    eport = echo_target()
    proc, port = relay("127.0.0.1:0", f"127.0.0.1:{eport}", ["-v", "--max-conns", "2"])
    a, b = sockets([connect(port), connect(port)])
    assert echo_roundtrip(a, b"a\n") == b"a\n"
    assert echo_roundtrip(b, b"b\n") == b"b\n"
    c = sockets(connect(port))
    assert closed_within(c, 2), "a third client was not closed at --max-conns 2"
    proc.wait_err(r"refused: --max-conns 2 reached")
    assert echo_roundtrip(a, b"a again\n") == b"a again\n"  # the others go on
    a.shutdown(socket.SHUT_WR)
    assert read_to_eof(a) == (b"", "eof")
    proc.wait_err(rf"{re.escape(name_of(a))} -> .*sent")
    wait_for(lambda: serves_new_client(port), 5, "a slot to be free again after one client left")


def test_idle_timeout(relay, echo_target, sockets):
    eport = echo_target()
    proc, port = relay("127.0.0.1:0", f"127.0.0.1:{eport}", ["-v", "--idle-timeout", "1"])
    idle = sockets(connect(port))
    busy = sockets(connect(port))
    assert echo_roundtrip(idle, b"then silence\n") == b"then silence\n"
    t0 = time.monotonic()
    # the busy one talks every 0.3 s for 2 s: never idle for 1 s
    closed_at = None
    while time.monotonic() - t0 < 2.0:
        assert echo_roundtrip(busy, b"tick\n") == b"tick\n"
        if closed_at is None and closed_within(idle, 0.3):
            closed_at = time.monotonic() - t0
    if closed_at is None:
        assert closed_within(idle, 2), "idle relayed connection not closed"
        closed_at = time.monotonic() - t0
    assert 0.8 <= closed_at < 2.6, f"--idle-timeout 1 closed after {closed_at:.2f}s"
    proc.wait_err(r"idle for 1 s, closing")
    assert echo_roundtrip(busy, b"still here\n") == b"still here\n"


# -------------------------------------------------------------- concurrency --


def test_thousand_concurrent_relayed_connections(relay, echo_target, sockets):
    n = 1000
    eport = echo_target()
    proc, port = relay("127.0.0.1:0", f"127.0.0.1:{eport}", ["--stats-json"])
    payloads = [os.urandom(64 << 10) for _ in range(n)]
    socks = sockets(open_many(port, n, timeout=30))
    pump = Pump(socks)
    for i, data in enumerate(payloads):
        pump.send(i, data, shut=True)
    got = pump.run(timeout=30)  # a stall of 30 s (Pump.run): slow is not wrong
    bad = [i for i in range(n) if pump.eof[i] != "eof" or sha(bytes(got[i])) != sha(payloads[i])]
    assert not bad, (f"{len(bad)} of {n} connections wrong, e.g. #{bad[0]}: "
                     f"{len(got[bad[0]])} bytes back, end={pump.eof[bad[0]]}")
    stats = json_lines(proc, n, timeout=20)
    assert all(s["bytes_up"] == s["bytes_down"] == 64 << 10 and s["error"] is None for s in stats), \
        [s for s in stats if s["error"] is not None or s["bytes_up"] != 64 << 10][:3]
    assert len({s["client"] for s in stats}) == n
    assert proc.poll() is None


# ------------------------------------------------------------------ interop --


def test_curl_through_relay_to_http_server(relay, spawn, tmp_path):
    curl = need("curl")
    root = tmp_path / "www"
    root.mkdir()
    body = os.urandom(3 << 20)
    (root / "blob.bin").write_bytes(body)

    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *a, **kw):
            super().__init__(*a, directory=str(root), **kw)

        def log_message(self, *a):
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    th = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
    th.start()
    try:
        hport = httpd.server_address[1]
        proc, port = relay("127.0.0.1:0", f"127.0.0.1:{hport}", ["--stats-json"])
        for i in range(2):
            out = tmp_path / f"got{i}.bin"
            p = spawn([curl, "-sS", "--fail", "--max-time", "10", "--noproxy", "*", "-o", str(out),
                       f"http://127.0.0.1:{port}/blob.bin"], name="curl")
            rc = p.wait(20)
            assert rc == 0, p.err
            assert sha(out.read_bytes()) == sha(body)
        stats = json_lines(proc, 2)
        for s in stats:
            assert s["bytes_down"] > len(body) and s["bytes_up"] > 0 and s["error"] is None, s
    finally:
        httpd.shutdown()
        httpd.server_close()
        th.join(5)


# ------------------------------------------------- resets and backpressure --


def test_target_reset_resets_or_closes_client(relay, server, sockets):
    def script(conn, result):
        result["got"] = recv_exact(conn, 5)
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        conn.close()  # RST

    srv = server(script)
    proc, port = relay("127.0.0.1:0", f"127.0.0.1:{srv.port}", ["--stats-json"])
    c = sockets(connect(port))
    c.sendall(b"hello")
    srv.join()
    assert closed_within(c, 3), "client not closed after the target reset"
    s = json_lines(proc, 1)[0]
    assert s["error"] and "reset" in s["error"].lower() and s["bytes_up"] == 5, s
    proc.wait_err(rf"{re.escape(name_of(c))} -> 127\.0\.0\.1:{srv.port}: target: .*reset")
    assert proc.poll() is None


def test_client_reset_closes_target(relay, server, sockets):
    def script(conn, result):
        result["got"] = recv_exact(conn, 3)
        result["end"] = read_to_eof(conn, allow_reset=True)

    srv = server(script)
    proc, port = relay("127.0.0.1:0", f"127.0.0.1:{srv.port}", ["--stats-json"])
    c = connect(port)
    c.sendall(b"abc")
    # the relay has passed the bytes on (the target read them): the reset
    # comes after them, as the assertions below expect
    wait_for(lambda: "got" in srv.result, TIMEOUT, "the target to read the client's bytes")
    c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    c.close()
    got = srv.join()
    assert got["got"] == b"abc" and got["end"][0] == b""
    s = json_lines(proc, 1)[0]
    assert s["error"] and "reset" in s["error"].lower(), s
    assert proc.poll() is None


def test_backpressure_target_not_reading(relay, server, sockets):
    """A target that does not read: the client's sends stall after some
    socket buffers; the relay does not buffer without bound."""
    release = threading.Event()

    def script(conn, result):
        release.wait(TIMEOUT)
        got = read_to_eof(conn, timeout=30)[0]
        result["n"], result["sha"] = len(got), sha(got)
        conn.shutdown(socket.SHUT_WR)

    srv = server(script)
    proc, port = relay("127.0.0.1:0", f"127.0.0.1:{srv.port}", ["--stats-json"])
    c = sockets(connect(port))
    c.setblocking(False)
    data = seeded_bytes(64 << 20, 598)  # the target must get the very bytes sent
    sent = 0
    last_progress = time.monotonic()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and time.monotonic() - last_progress < 1.0:
        try:
            sent += c.send(data[sent:sent + 65536])
            last_progress = time.monotonic()
        except BlockingIOError:
            time.sleep(0.01)
    assert time.monotonic() < deadline, f"the client could send {sent} bytes without stalling"
    assert sent < 64 << 20, sent
    with open(f"/proc/{proc.pid}/status") as f:
        rss = int(next(line for line in f if line.startswith("VmRSS:")).split()[1])
    assert rss < 64 * 1024, f"relay RSS {rss} KiB while the target does not read"
    release.set()
    c.setblocking(True)
    c.shutdown(socket.SHUT_WR)
    res = srv.join(35)
    assert res["n"] == sent and res["sha"] == sha(data[:sent]), f"target got {res['n']} of {sent} bytes, or others"
    s = json_lines(proc, 1, timeout=20)[0]
    assert s["bytes_up"] == sent and s["error"] is None, s


def test_deny_closes_client_without_connecting(relay, sockets):
    target = sockets(socket.socket())
    target.bind(("127.0.0.1", 0))
    target.listen(4)
    tport = target.getsockname()[1]
    proc, port = relay("127.0.0.1:0", f"127.0.0.1:{tport}", ["-v", "--deny", "127.0.0.1"])
    c = sockets(connect(port))
    assert closed_within(c, 2)
    proc.wait_err(r"refused: not allowed by --allow/--deny")
    r, _, _ = select.select([target], [], [], 0.3)
    assert not r, "a denied client was relayed to the target"


def test_sigterm_removes_unix_listen_path(relay, echo_target, tmp_path):
    eport = echo_target()
    path = str(tmp_path / "term.sock")
    proc, _ = relay(f"unix:{path}", f"127.0.0.1:{eport}")
    assert os.path.exists(path)
    os.kill(proc.pid, signal.SIGTERM)
    proc.wait(TIMEOUT)
    assert not os.path.exists(path), "SIGTERM left the relay's Unix socket behind"
