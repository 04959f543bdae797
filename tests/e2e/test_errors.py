"""Error messages ('duplex: <op> <address>: <cause>' on stderr) and exit
codes: 1 I/O, 2 usage, 3 resolve, 4 connect, 5 timeout, 6 listen."""

import os
import re
import signal
import socket
import struct
import subprocess
import time

import pytest

from conftest import TIMEOUT, closed_port, free_port, proc_net_sockets, recv_all
from servers_util import wait_for

# ------------------------------------------------------------- connect: 4 --


def test_connection_refused(run_duplex, backend_env):
    port = closed_port()
    rc, out, err = run_duplex(["connect", "127.0.0.1", port], env=backend_env)
    assert rc == 4, err
    assert f"duplex: connect 127.0.0.1:{port}: Connection refused" in err
    assert out == b""


def test_connection_refused_netcat_style(run_duplex):
    port = closed_port()
    rc, _, err = run_duplex([f"127.0.0.1:{port}"])
    assert rc == 4, err
    assert f"duplex: connect 127.0.0.1:{port}: Connection refused" in err


def test_reset_right_after_handshake_is_an_exchange_failure(backlog, start_duplex, backend_env):
    """Issue 10 item 15: the server accepts and resets at once, before duplex
    has looked at its connect (made certain here: duplex is stopped while its
    SYN is answered and the reset arrives). The connection was made, so this
    is a failure of the exchange (exit 1), not a refused connect (exit 4)."""
    port = backlog.port
    cli = start_duplex(["connect", "127.0.0.1", port], stdin=subprocess.PIPE, env=backend_env)
    # the backlog's last filler hangs in SYN-SENT too
    wait_for(lambda: proc_net_sockets(port, state="02", remote=True) >= 2, TIMEOUT, "duplex's SYN")
    os.kill(cli.pid, signal.SIGSTOP)
    try:
        backlog.release()  # duplex's retransmitted SYN is answered by the kernel
        conn = backlog.accept_other()
        theirs = conn.getpeername()[1]
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        conn.close()  # RST: duplex's socket leaves the table once it has it
        # (only ESTABLISHED counts: an older connection between the same
        # ports may linger in TIME-WAIT)
        wait_for(lambda: not proc_net_sockets(theirs, state="01"), TIMEOUT, "the reset to arrive")
    finally:
        os.kill(cli.pid, signal.SIGCONT)
    rc = cli.wait()
    assert rc == 1, (rc, cli.err)
    assert f"duplex: receive from 127.0.0.1:{port}: Connection reset by peer" in cli.err, cli.err
    assert f"duplex: connect 127.0.0.1:{port}" not in cli.err, cli.err


def test_unix_connect_missing_path(run_duplex, tmp_path):
    path = tmp_path / "nobody-here.sock"
    rc, _, err = run_duplex(["connect", "-U", str(path)])
    assert rc == 4, err
    assert f"duplex: connect {path}: No such file or directory" in err


# --------------------------------------------------------------- usage: 2 --


@pytest.mark.parametrize("port", ["70000", "abc", "65536", "99999999999999999999"])
@pytest.mark.parametrize("cmd", ["connect", "listen"])
def test_invalid_port(cmd, port, run_duplex):
    rc, out, err = run_duplex([cmd, "127.0.0.1", port])
    assert rc == 2, err
    assert f"duplex: invalid port '{port}'" in err
    assert out == b""


@pytest.mark.parametrize("args", [
    ["connect", "--", "127.0.0.1", "-1"],
    ["connect", "127.0.0.1:-1"],
    ["listen", "--", "127.0.0.1", "-1"],
])
def test_invalid_port_minus_one(args, run_duplex):
    rc, _, err = run_duplex(args)
    assert rc == 2, err
    assert "duplex: invalid port '-1'" in err


def test_minus_one_as_port_without_double_dash(run_duplex):
    """`duplex connect 127.0.0.1 -1`: getopt takes -1 for a flag; either way
    it is a usage error that names it."""
    rc, _, err = run_duplex(["connect", "127.0.0.1", "-1"])
    assert rc == 2, err
    assert "'-1'" in err, err


@pytest.mark.parametrize("flag", ["--bogus", "-Y"])
def test_unknown_option(flag, run_duplex):
    rc, out, err = run_duplex(["connect", flag, "127.0.0.1", "1"])
    assert rc == 2, err
    assert f"duplex: unknown option '{flag}'" in err
    assert out == b""


def test_unknown_option_alone(run_duplex):
    rc, _, err = run_duplex(["--bogus"])
    assert rc == 2, err
    assert "duplex: unknown option '--bogus'" in err


@pytest.mark.parametrize("args", [
    [],
    ["connect"],
    ["connect", "8080"],     # a PORT without its HOST (a HOST alone: ncat's port 31337)
    ["127.0.0.1:"],
    ["connect", "-w"],
])
def test_missing_arguments(args, run_duplex):
    rc, out, err = run_duplex(args)
    assert rc == 2, err
    assert err.startswith("duplex: ") or err.startswith("usage: "), err
    assert out == b""


@pytest.mark.parametrize("args", [
    ["connect", "-w", "abc", "127.0.0.1", "1"],
    ["connect", "-q", "-5", "127.0.0.1", "1"],
    ["connect", "--buffer-size", "1", "127.0.0.1", "1"],
    ["listen", "--backlog", "0", "127.0.0.1", "0"],
    ["connect", "127.0.0.1", "1", "2"],  # several ports only with -z
    ["connect", "-k", "127.0.0.1", "1"],
    ["listen", "-z", "127.0.0.1", "0"],
])
def test_bad_values_and_combinations(args, run_duplex):
    rc, _, err = run_duplex(args)
    assert rc == 2, err
    assert err.startswith("duplex: "), err


@pytest.mark.parametrize("args,words", [
    (["connect", "-w", "31536001", "127.0.0.1", "1"], "-w too large: 31536001 (at most 31536000 seconds)"),
    (["connect", "-q", "31536000.5", "127.0.0.1", "1"], "-q too large"),
    (["listen", "-k", "--idle-timeout", "1e9", "127.0.0.1", "0"], "--idle-timeout too large"),
    (["connect", "-w", "1e400", "127.0.0.1", "1"], "invalid -w value '1e400'"),
    (["connect", "-w", "inf", "127.0.0.1", "1"], "invalid -w value 'inf'"),
    (["connect", "-w", "nan", "127.0.0.1", "1"], "invalid -w value 'nan'"),
    (["connect", "-w", "0x10", "127.0.0.1", "1"], "invalid -w value '0x10'"),
    (["connect", "-w", " 5", "127.0.0.1", "1"], "invalid -w value ' 5'"),
    (["connect", "-w", "+5", "127.0.0.1", "1"], "invalid -w value '+5'"),
    (["connect", "-q", "-2", "127.0.0.1", "1"], "invalid -q value '-2'"),
    (["connect", "-O", "rcvtimeo=31536001", "127.0.0.1", "1"], "rcvtimeo"),
    (["bench", "echo", "127.0.0.1", "1", "-d", "1e7"], "invalid duration '1e7': expected 0-1000000 seconds"),
    (["bench", "echo", "127.0.0.1", "1", "-w", "1e7"], "invalid warm-up '1e7': expected 0-1000000 seconds"),
])
def test_time_values_range_checked(run_duplex, args, words):
    """Every option that takes a time is checked when it is parsed: a value
    out of range, or not a plain decimal number of seconds, is a usage
    error naming the flag (values in milliseconds never overflow later)."""
    rc, out, err = run_duplex(args)
    assert rc == 2, err
    assert words in err, err
    assert out == b""


# ------------------------------------------------------------- resolve: 3 --


def test_unknown_host(run_duplex):
    rc, out, err = run_duplex(["connect", "no-such-host.invalid", "80"], timeout=30)
    assert rc == 3, err
    assert re.search(r"^duplex: resolve no-such-host\.invalid: \S", err, re.M), err
    assert out == b""


def test_unknown_host_numeric_flag(run_duplex):
    """-n: a name is refused without DNS, still as a resolve failure."""
    rc, _, err = run_duplex(["connect", "-n", "no-such-host.invalid", "80"], timeout=30)
    assert rc == 3, err
    assert "duplex: resolve no-such-host.invalid: " in err


# -------------------------------------------------------------- listen: 6 --


def test_address_in_use_duplex_twice(start_listener, run_duplex, backend_env):
    first, port = start_listener(env=backend_env, stdin=subprocess.PIPE)
    rc, _, err = run_duplex(["listen", "127.0.0.1", port], env=backend_env)
    assert rc == 6, err
    assert f"duplex: listen 127.0.0.1:{port}: Address already in use" in err
    assert first.poll() is None, "the first listener died"


def test_address_in_use_python_listener(run_duplex):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(1)
        port = s.getsockname()[1]
        rc, _, err = run_duplex(["listen", "127.0.0.1", port])
    assert rc == 6, err
    assert f"duplex: listen 127.0.0.1:{port}: Address already in use" in err


def test_listen_on_foreign_address(run_duplex):
    """An address that is not local (TEST-NET-1, never routed): bind fails,
    nothing is sent anywhere."""
    rc, _, err = run_duplex(["listen", "192.0.2.1", "0"])
    assert rc == 6, err
    assert "duplex: listen 192.0.2.1:0: Cannot assign requested address" in err


@pytest.mark.skipif(os.geteuid() == 0, reason="root may bind privileged ports")
def test_privileged_port_not_root(run_duplex):
    rc, _, err = run_duplex(["listen", "127.0.0.1", "80"])
    assert rc == 6, err
    assert "duplex: listen 127.0.0.1:80: Permission denied" in err


# ------------------------------------------------------------- timeout: 5 --


def test_connect_timeout(full_backlog, run_duplex, backend_env):
    port = full_backlog
    t0 = time.monotonic()
    rc, _, err = run_duplex(["connect", "-w", "1", "127.0.0.1", port], timeout=10, env=backend_env)
    elapsed = time.monotonic() - t0
    assert rc == 5, err
    assert elapsed < 8, f"-w 1 connect timeout took {elapsed:.2f}s"  # generous: a busy machine
    assert elapsed >= 0.9, f"-w 1 gave up after {elapsed:.2f}s"
    assert f"127.0.0.1:{port}" in err and "timed out" in err, err
    assert re.search(rf"^duplex: connect 127\.0\.0\.1:{port}: .*timed out", err, re.M | re.I), err


def test_connect_timeout_fractional(full_backlog, run_duplex):
    t0 = time.monotonic()
    rc, _, err = run_duplex(["connect", "-w", "0.3", "127.0.0.1", full_backlog], timeout=10)
    elapsed = time.monotonic() - t0
    assert rc == 5, err
    assert 0.25 <= elapsed < 8, elapsed


def test_timeout_under_a_millisecond_still_limits(full_backlog, run_duplex):
    """-w 0.0001 rounds to 0 ms, which would mean "no limit": it is 1 ms."""
    rc, _, err = run_duplex(["connect", "-w", "0.0001", "127.0.0.1", full_backlog], timeout=10)
    assert rc == 5, err
    assert "timed out" in err


@pytest.mark.parametrize("secs", ["4294968", "31536000"])
def test_huge_timeout_waits(run_duplex, server, secs):
    """-w of more than 24.8 days (2^31 ms) is a long wait: the proxy answers
    after a second and duplex is still waiting, then runs the session. (The
    int cast in cli_wait_fd made poll wait 704 ms, then forever, rather than
    until the deadline: no bounded test tells that from 49 days.)"""

    def script(conn, result):
        buf = b""
        while not buf.endswith(b"\r\n\r\n"):
            b = conn.recv(1)
            assert b, buf
            buf += b
        time.sleep(1.0)  # a slow proxy: longer than poll's first, wrapped, 704 ms
        conn.sendall(b"HTTP/1.1 200 OK\r\n\r\nHELLO")
        conn.close()

    srv = server(script)
    rc, out, err = run_duplex(["connect", "-w", secs, "-X", "http", "-x", f"127.0.0.1:{srv.port}",
                               "127.0.0.1", "80"], timeout=20)
    srv.join()
    assert rc == 0, err
    assert out == b"HELLO"


def test_z_with_timeout_on_hung_port(full_backlog, run_duplex):
    """-z -w 1 on a port whose SYNs are dropped: not open; exit 4 or 5."""
    t0 = time.monotonic()
    rc, _, err = run_duplex(["connect", "-z", "-v", "-w", "1", "127.0.0.1", full_backlog], timeout=10)
    assert rc in (4, 5), err
    assert time.monotonic() - t0 < 8
    assert f"127.0.0.1:{full_backlog}" in err


def test_idle_timeout_silent_server(server, start_duplex, backend_env):
    """-w 1 with no traffic either way (stdin open but silent, the server
    silent): exit 5 after about a second."""
    srv = server(lambda conn, res: conn.recv(1))  # holds the connection, silent
    t0 = time.monotonic()
    cli = start_duplex(["connect", "-w", "1", "127.0.0.1", srv.port], stdin=subprocess.PIPE,
                       env=backend_env)
    rc = cli.wait(10)
    elapsed = time.monotonic() - t0
    assert rc == 5, cli.err
    assert 0.9 <= elapsed < 8, f"idle timeout after {elapsed:.2f}s"


def test_idle_timeout_after_stdin_eof(server, start_duplex):
    """stdin ends at once, the server stays silent and open: still idle, exit 5."""
    def script(conn, res):
        res["data"] = recv_all(conn)
        time.sleep(5)

    srv = server(script)
    t0 = time.monotonic()
    cli = start_duplex(["connect", "-w", "1", "127.0.0.1", srv.port], stdin=b"x")
    assert cli.wait(10) == 5, cli.err
    assert time.monotonic() - t0 < 8


def test_idle_timeout_is_reset_by_traffic(server, start_duplex):
    """Traffic every 0.2 s for 4 s keeps a -w 3 session alive: it is an idle
    timeout, not a total one. The server then closes: exit 0. (-w 3 against
    a 0.2 s pace: only a stall of the test of nearly 3 s could let the idle
    timer fire; with -w 1 and ticks every 0.3 s, 0.7 s did.)"""
    def script(conn, res):
        n, first = 0, time.monotonic()
        while time.monotonic() - first < 4.0:  # longer than -w: a total timeout would cut it
            conn.sendall(b"tick\n")
            n += 1
            time.sleep(0.2)
        res["n"] = n
        conn.shutdown(socket.SHUT_WR)
        res["got"] = recv_all(conn)

    srv = server(script)
    t0 = time.monotonic()
    cli = start_duplex(["connect", "-w", "3", "127.0.0.1", srv.port], stdin=b"")
    rc = cli.wait(15)
    assert rc == 0, f"rc={rc} after {time.monotonic() - t0:.2f}s: {cli.err!r}"
    n = srv.join()["n"]
    assert cli.out == b"tick\n" * n
    assert time.monotonic() - t0 >= 4.0


def test_idle_timeout_listener(start_listener):
    """-w on listen: a client that connects and stays silent is dropped."""
    lst, port = start_listener(["-w", "1"], stdin=subprocess.PIPE)
    c = socket.create_connection(("127.0.0.1", port), timeout=5)
    try:
        t0 = time.monotonic()
        assert lst.wait(10) == 5, lst.err
        assert time.monotonic() - t0 < 8
    finally:
        c.close()


# ------------------------------------------------------ I/O error: exit 1 --


def test_connection_reset_during_exchange(server, start_duplex):
    """The server resets the connection (SO_LINGER 0) while duplex is
    connected: exit 1, and the cause is named."""

    def script(conn, res):
        conn.recv(100)  # wait for the first bytes
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        conn.close()

    srv = server(script)
    cli = start_duplex(["connect", "127.0.0.1", srv.port], stdin=subprocess.PIPE)
    cli.stdin.write(b"hello\n")
    cli.stdin.flush()
    srv.join()
    rc = cli.wait()
    assert rc == 1, cli.err
    assert "Connection reset by peer" in cli.err, cli.err
    assert cli.err.startswith("duplex: "), cli.err


# ----------------------------------------------------- --help, --version --


def test_help(run_duplex):
    """The details are in `duplex connect --help` and `duplex listen --help`
    (`duplex --help` is the summary: test_usability.py)."""
    for cmd in ("connect", "listen"):
        rc, out, err = run_duplex([cmd, "--help"])
        assert rc == 0, err
        text = out.decode()
        assert text.startswith("usage: duplex"), text[:100]
        for code in range(7):
            assert re.search(rf"^\s+{code}\s+\S", text, re.M), f"{cmd} --help does not describe exit code {code}"
        for flag in ["-k" if cmd == "listen" else "-z", "-U", "-w", "-q", "-v", "-d", "-N",
                     "--no-shutdown", "--send-only", "--recv-only", "--backend"]:
            assert flag in text, f"{cmd} --help does not mention {flag}"


def test_help_short(run_duplex):
    rc, out, _ = run_duplex(["-h"])
    assert rc == 0
    assert out.startswith(b"usage: duplex")


def test_version(run_duplex):
    rc, out, err = run_duplex(["--version"])
    assert rc == 0, err
    assert re.match(rb"duplex \d+\.\d+\.\d+\S*\n", out), out


def test_unknown_backend(run_duplex):
    port = free_port()
    rc, _, err = run_duplex(["connect", "--backend", "nosuch", "127.0.0.1", port])
    assert rc == 2, err
    assert "nosuch" in err


def test_unknown_backend_env(run_duplex):
    """DUPLEX_BACKEND is read (so the suite's epoll/poll runs really differ):
    an unknown name is refused like --backend's."""
    port = free_port()
    rc, _, err = run_duplex(["connect", "127.0.0.1", port], env={"DUPLEX_BACKEND": "nosuch"})
    assert rc == 2, err
    assert "nosuch" in err


@pytest.mark.parametrize("cmd", ["connect", "listen", "relay"])
def test_help_describes_each_option_once(cmd, run_duplex):
    """--help is the contract: an option described twice (possibly with two
    meanings) is a documentation bug."""
    rc, out, _ = run_duplex([cmd, "--help"])
    assert rc == 0
    seen = {}
    for line in out.decode().splitlines():
        m = re.match(r"^\s{2,}(?:(-\w),\s+)?(--[\w-]+)", line) or re.match(r"^\s{2,}(-\w)\s{2,}", line)
        if m:
            for name in filter(None, m.groups()):
                seen.setdefault(name, []).append(line.strip())
    dups = {k: v for k, v in seen.items() if len(v) > 1}
    assert not dups, f"options described more than once in {cmd} --help: {dups}"
