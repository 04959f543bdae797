"""duplex.exe's network side under wine, beyond what the other files cover:
refusals of what Windows lacks (--backend, -O, --reuseport, unix:PATH),
--send-only's drain (a lingering close on Windows, bounded by -w), -s/-p,
a dual-stack listener, -q SECS, SOCKS4, server --idle-timeout and --allow,
relay's statistics and --max-conns, listen -u's -w, --show-opts, and the
Linux duplex and OpenBSD nc as peers."""

import re
import socket
import subprocess
import threading
import time

import pytest

from conftest import (TIMEOUT, connect, free_port, need, recv_all, recv_exact, seeded_bytes, sha,
                      wait_listening)

# ---------------------------------------------------------------- refusals --


@pytest.mark.parametrize("args, text", [
    (["--backend", "epoll", "connect", "127.0.0.1", "9"],
     "--backend epoll is not available on Windows (this build has: wsapoll)"),
    (["--backend", "io_uring", "listen", "127.0.0.1", "0"],
     "--backend io_uring is not available on Windows (this build has: wsapoll)"),
    (["--backend", "nope", "connect", "127.0.0.1", "9"], "unknown --backend 'nope': expected wsapoll"),
    (["-O", "mark=1", "connect", "127.0.0.1", "9"],
     "-O mark: socket option SO_MARK is not available on Windows"),
    (["-O", "congestion=cubic", "listen", "127.0.0.1", "0"],
     "-O congestion: socket option TCP_CONGESTION is not available on Windows"),
    (["--reuseport", "listen", "127.0.0.1", "0"], "--reuseport: SO_REUSEPORT is not available on Windows"),
    (["relay", "127.0.0.1:0", "unix:/tmp/dx-e2e.sock"], "Unix sockets (unix:PATH) are not available"),
    (["--ssl", "relay", "127.0.0.1:0", "127.0.0.1:9"], "the Windows build has no TLS"),
])
def test_refused_naming_windows(windows_only, run_exe, args, text):
    rc, _, err = run_exe(args)
    assert rc == 2 and text in err, err
    assert "listening on" not in err


def test_unknown_option_name_lists_only_this_platforms(windows_only, run_exe):
    rc, _, err = run_exe(["-O", "cork", "connect", "127.0.0.1", "9"])
    assert rc == 2 and "valid names: keepalive" in err, err
    assert "mark" not in err and "reuseport" not in err, err


def test_backend_from_environment_checked(windows_only, run_exe):
    rc, _, err = run_exe(["connect", "127.0.0.1", "9"], env={"DUPLEX_BACKEND": "epoll"})
    assert rc == 2 and "DUPLEX_BACKEND epoll is not available on Windows" in err, err


# -------------------------------------------------------------- send-only --


def test_send_only_waits_for_a_slow_reader(server, start_exe):
    """The peer reads nothing for 1.5 s: duplex.exe has sent all, its stdin
    has ended, and it must not close (and reset) before the peer has it all."""
    data = seeded_bytes(3 << 20, 31)

    def script(conn, res):
        time.sleep(1.5)
        res["got"] = recv_all(conn)
    srv = server(script)
    p = start_exe(["connect", "--send-only", "-v", "127.0.0.1", srv.port], stdin=data)
    assert p.wait() == 0, p.err
    got = srv.join()["got"]
    assert len(got) == len(data) and sha(got) == sha(data)


def test_send_only_drain_bounded_by_w(server, start_exe):
    """A peer that never reads: -w 2 ends it with exit 5, whether the bytes
    were still being sent (the idle timer) or waited for in the close."""
    srv = server(lambda conn, res: time.sleep(8))
    t = time.monotonic()
    p = start_exe(["connect", "--send-only", "-w", "2", "127.0.0.1", srv.port],
                  stdin=seeded_bytes(1 << 20, 32))
    assert p.wait(15) == 5, p.err
    assert "no traffic for 2 s" in p.err, p.err
    assert time.monotonic() - t < 12


# ---------------------------------------------------------- connect, listen --


def test_source_address_and_port(server, start_exe):
    sport = free_port()
    def script(conn, res):
        res.update(peer=conn.getpeername(), got=recv_all(conn))
        conn.close()  # our end: the session is over
    srv = server(script)
    p = start_exe(["connect", "-s", "127.0.0.1", "-p", sport, "127.0.0.1", srv.port], stdin=b"hi\n")
    assert p.wait() == 0, p.err
    res = srv.join()
    assert res["peer"] == ("127.0.0.1", sport) and res["got"] == b"hi\n"


def test_dual_stack_listener_takes_an_ipv4_client(start_exe):
    """No address: one IPv6 socket that takes IPv4 clients too (IPV6_V6ONLY
    off), as on Linux."""
    p = start_exe(["listen", "-v", "0"], stdin=b"from the server\n")
    m = p.wait_err(r"listening on (\[::\]|0\.0\.0\.0):(\d+)")
    s = connect(int(m.group(2)))
    s.sendall(b"from a v4 client\n")
    s.shutdown(socket.SHUT_WR)
    assert recv_all(s) == b"from the server\n"
    assert p.wait() == 0, p.err
    assert p.out == b"from a v4 client\n"


def test_q_secs_after_end_of_stdin(server, start_exe):
    """-q 1: the peer stays open and silent; exit 0 about 1 s after stdin ended."""
    srv = server(lambda conn, res: res.update(got=recv_all(conn)))
    t = time.monotonic()
    p = start_exe(["connect", "-q", "1", "--no-shutdown", "127.0.0.1", srv.port], stdin=b"abc")
    assert p.wait() == 0, p.err
    assert 0.9 < time.monotonic() - t < TIMEOUT
    assert srv.join()["got"] == b"abc"


def test_linux_duplex_listener_both_ways(start_linux, start_exe):
    up, down = seeded_bytes(1 << 20, 33), seeded_bytes(700_000, 34)
    port = free_port()
    lin = start_linux(["listen", "127.0.0.1", port], stdin=down)
    wait_listening(port, proc=lin)
    p = start_exe(["connect", "127.0.0.1", port], stdin=up)
    assert p.wait() == 0, p.err
    assert lin.wait() == 0, lin.err
    assert sha(p.out) == sha(down) and sha(lin.out) == sha(up)


def test_openbsd_nc_client_both_ways(exe_listener, spawn):
    need("nc.openbsd")
    up, down = seeded_bytes(1 << 20, 35), seeded_bytes(600_000, 36)
    p, port = exe_listener(stdin=down)
    nc = spawn(["nc.openbsd", "-N", "127.0.0.1", port], stdin=up)
    assert nc.wait() == 0, nc.err
    assert p.wait() == 0, p.err
    assert sha(nc.out) == sha(down) and sha(p.out) == sha(up)


def test_show_opts(target, server, start_exe):
    """--show-opts on Windows: the options Windows has (no SO_DOMAIN or
    SO_PROTOCOL lines, no Linux sysctls)."""
    def script(conn, res):
        res.update(got=recv_all(conn))
        conn.close()
    srv = server(script)
    p = start_exe(["connect", "--show-opts", "-O", "rcvbuf=65536", "127.0.0.1", srv.port], stdin=b"")
    assert p.wait() == 0, p.err
    assert re.search(r"^duplex: socket options \(connected 127\.0\.0\.1:\d+, peer 127\.0\.0\.1:\d+\):$",
                     p.err, re.M), p.err
    for line in ("duplex: option SO_TYPE = 1 (SOCK_STREAM)", "duplex: option SO_RCVBUF = ",
                 "duplex: option TCP_NODELAY = 0"):
        assert line in p.err, p.err
    if target.windows:
        assert "SO_REUSEPORT" not in p.err and "sysctl" not in p.err, p.err


# ------------------------------------------------------------------ proxy --


def test_socks4_proxy(server, start_exe):
    """A SOCKS4 proxy (this script) that answers for the target itself: the
    request carries the target's port and address, then the bytes flow."""
    def script(conn, res):
        head = recv_exact(conn, 8)
        user = b""
        while not user.endswith(b"\0"):
            user += recv_exact(conn, 1)
        res["head"] = head
        conn.sendall(b"\0\x5a" + head[2:8])
        res["got"] = recv_all(conn)
        conn.sendall(b"reply via socks4\n")
        conn.close()
    srv = server(script)
    p = start_exe(["connect", "-N", "-X", "4", "-x", f"127.0.0.1:{srv.port}", "10.1.2.3", "4567"],
                  stdin=b"through socks4\n")
    assert p.wait() == 0, p.err
    res = srv.join()
    assert res["head"] == b"\x04\x01" + (4567).to_bytes(2, "big") + bytes([10, 1, 2, 3])
    assert res["got"] == b"through socks4\n"
    assert p.out == b"reply via socks4\n"


# ---------------------------------------------------------------- servers --


def test_server_idle_timeout_closes_a_silent_client(exe_listener):
    p, port = exe_listener(["-k", "--echo", "--idle-timeout", "1", "-v"])
    s = connect(port)
    t = time.monotonic()
    assert recv_all(s) == b""
    assert 0.8 < time.monotonic() - t < 10
    p.wait_err(r"closed: idle for 1 s")


def test_allow_rule_admits_and_deny_rule_refuses(exe_listener):
    p, port = exe_listener(["-k", "--echo", "-v", "--allow", "127.0.0.0/8", "--deny", "127.0.0.2"])
    s = connect(port)
    s.sendall(b"allowed\n")
    assert recv_exact(s, 8) == b"allowed\n"
    r = socket.socket()
    r.settimeout(TIMEOUT)
    r.bind(("127.0.0.2", 0))
    r.connect(("127.0.0.1", port))
    try:
        assert r.recv(10) == b""
    except ConnectionResetError:
        pass
    p.wait_err(r"127\.0\.0\.2:\d+: refused: not allowed by --allow/--deny \(matches deny rule 127\.0\.0\.2/32\)")


# ------------------------------------------------------------------ relay --


def echo_server():
    """A Linux echo server (a thread per client, half-close passed back);
    returns (socket, port)."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(16)

    def one(c):
        with c:
            while True:
                d = c.recv(65536)
                if not d:
                    c.shutdown(socket.SHUT_WR)
                    return
                c.sendall(d)

    def loop():
        while True:
            try:
                c, _ = srv.accept()
            except OSError:
                return
            threading.Thread(target=one, args=(c,), daemon=True).start()
    threading.Thread(target=loop, daemon=True).start()
    return srv, srv.getsockname()[1]


def test_relay_stats_json_and_totals(start_exe, sockets):
    srv, tport = echo_server()
    sockets(srv)
    p = start_exe(["relay", "-v", "--stats-json", "127.0.0.1:0", f"127.0.0.1:{tport}"])
    port = int(p.wait_err(r"listening on 127\.0\.0\.1:(\d+)").group(1))
    s = connect(port)
    s.sendall(b"x" * 1000)
    s.shutdown(socket.SHUT_WR)
    assert recv_all(s) == b"x" * 1000
    assert p.wait() == 0, p.err
    assert re.search(rb'"bytes_up":1000,"bytes_down":1000,"duration_ms":\d+,"error":null}', p.out), p.out
    assert "duplex: relayed 1 connection; 0 failed; refused 0 (limit), 0 (access list)" in p.err, p.err


def test_relay_max_conns(start_exe, sockets):
    srv, tport = echo_server()
    sockets(srv)
    p = start_exe(["relay", "-k", "-v", "--max-conns", "1", "127.0.0.1:0", f"127.0.0.1:{tport}"])
    port = int(p.wait_err(r"listening on 127\.0\.0\.1:(\d+)").group(1))
    a = connect(port)
    a.sendall(b"one\n")
    assert recv_exact(a, 4) == b"one\n"
    b = connect(port)
    p.wait_err(r"refused: --max-conns 1 reached")
    try:
        assert recv_all(b) == b""
    except ConnectionResetError:
        pass
    a.sendall(b"still\n")
    assert recv_exact(a, 6) == b"still\n"


# -------------------------------------------------------------------- udp --


def test_udp_listen_w_without_traffic_exit_5(start_exe):
    p = start_exe(["listen", "-u", "-w", "1", "127.0.0.1", free_port(kind=socket.SOCK_DGRAM)])
    assert p.wait() == 5, p.err
    assert "udp: no traffic for 1 s, closing" in p.err, p.err
