"""What a newcomer trips on (issue 10, items 24, 25, 27, 30, 31): mistyped
commands, addresses that need a hint, errors that name the right step, a
bench that measured nothing, help that fits a screen, plural forms,
--version's features, --progress into a file, --show-opts notes."""

import os
import re
import socket
import subprocess

import pytest

from conftest import LISTENING_RE, free_port
from servers_util import connect, recv_exact, wait_for

# ------------------------------------------- item 24: commands and hints --


@pytest.mark.parametrize("word, meant", [
    ("conect", "connect"), ("connnect", "connect"), ("lisen", "listen"), ("lsiten", "listen"),
    ("rely", "relay"), ("socket", "sockets"), ("bnech", "bench"), ("hlep", "help"),
])
def test_near_miss_command_is_unknown(word, meant, run_duplex):
    rc, out, err = run_duplex([word, "127.0.0.1", "80"])
    assert rc == 2, err
    assert f"duplex: unknown command '{word}' (did you mean {meant}?)" in err, err
    assert out == b""


def test_near_miss_after_flags(run_duplex):
    rc, _, err = run_duplex(["-v", "conect", "127.0.0.1", "80"])
    assert rc == 2, err
    assert "unknown command 'conect' (did you mean connect?)" in err, err


def test_unknown_word_with_arguments_that_are_not_a_port(run_duplex):
    rc, _, err = run_duplex(["frobnicate", "a", "b"])
    assert rc == 2, err
    assert "duplex: unknown command 'frobnicate'" in err, err


@pytest.mark.parametrize("host", ["localhost", "127.0.0.1", "[::1]"])
def test_netcat_spelling_still_connects(host, run_duplex):
    """`duplex HOST PORT`: a first word far from every command name, followed
    by a port, is a host (here: a closed port, so the connect is refused)."""
    port = free_port()
    if host == "[::1]" and not socket.has_ipv6:
        pytest.skip("no IPv6")
    rc, _, err = run_duplex([host, port])
    assert rc == 4, err
    assert "Connection refused" in err and "unknown command" not in err, err


def test_netcat_spelling_host_port_as_one(run_duplex):
    port = free_port()
    rc, _, err = run_duplex([f"localhost:{port}"])
    assert rc == 4, err
    assert "Connection refused" in err, err


@pytest.mark.parametrize("args", [["help"], ["help", "help"]])
def test_help_command_is_the_summary(args, run_duplex):
    rc, out, err = run_duplex(args)
    assert rc == 0, err
    _, summary, _ = run_duplex(["--help"])
    assert out == summary and out.startswith(b"usage: duplex")


@pytest.mark.parametrize("cmd", ["connect", "listen", "relay", "sockets", "bench"])
def test_help_command_names_a_command(cmd, run_duplex):
    rc, out, err = run_duplex(["help", cmd])
    assert rc == 0, err
    _, direct, _ = run_duplex([cmd, "--help"])
    assert out == direct and f"duplex {cmd}".encode() in out


def test_help_unknown_command(run_duplex):
    rc, out, err = run_duplex(["help", "lisen"])
    assert rc == 2 and out == b""
    assert "unknown command 'lisen' (did you mean listen?)" in err, err


@pytest.mark.parametrize("args, shown", [
    (["-l", "24700", "24701"], "0.0.96.124"),
    (["listen", "24700", "24701"], "0.0.96.124"),
    (["listen", "127.1", "0"], "127.0.0.1"),
    (["listen", "-s", "0x7f000001", "0"], "127.0.0.1"),
    (["listen", "-u", "24700", "0"], "0.0.96.124"),
    (["relay", "24700:0", "127.0.0.1:9"], "0.0.96.124"),
    (["connect", "-s", "24700", "127.0.0.1", "9"], "0.0.96.124"),
])
def test_old_inet_aton_forms_refused_as_local_address(args, shown, run_duplex):
    """inet_aton reads '24700' as 0.0.96.124: `duplex -l 24700 24701` (two
    ports meant) used to bind that. A local address must be written in full."""
    rc, out, err = run_duplex(args)
    assert rc == 2, err
    assert "listening on" not in err and out == b""
    assert re.search(r"^duplex: .*'(24700|127\.1|0x7f000001)' is .*not a", err, re.M), err
    assert shown in err, err


@pytest.mark.parametrize("args", [["::1:8080"], ["connect", "::1:8080"]])
def test_bare_ipv6_with_port_gets_the_bracket_hint(args, run_duplex):
    rc, _, err = run_duplex(args)
    assert rc == 2, err
    assert "did you mean [::1]:8080?" in err, err


def test_listen_bare_ipv6_with_port_gets_the_bracket_hint(run_duplex):
    rc, _, err = run_duplex(["listen", "::1:8080"])
    assert rc == 2, err
    assert "did you mean [::1]:8080?" in err, err


def test_relay_bare_ipv6_target_gets_the_bracket_hint(run_duplex):
    rc, _, err = run_duplex(["relay", "0", "::1:8080"])
    assert rc == 2, err
    assert "did you mean [::1]:8080?" in err, err


@pytest.mark.parametrize("cmd", ["connect", "listen"])
def test_path_gets_the_unix_hint(cmd, run_duplex, tmp_path):
    path = str(tmp_path / "x.sock")
    rc, _, err = run_duplex([cmd, path])
    assert rc == 2, err
    assert f"duplex {cmd} -U {path}" in err, err


# ------------------------------------------- item 25: the bind is named --


@pytest.mark.parametrize("udp", [False, True])
def test_source_address_not_local_names_the_bind(udp, run_duplex):
    """-s with an address that is not ours (TEST-NET-1, nothing is sent):
    the bind failed, not the connect to the target."""
    port = free_port()
    rc, _, err = run_duplex(["connect", *(["-u"] if udp else []), "-s", "192.0.2.1", "127.0.0.1", port])
    assert rc == 4, err
    assert "duplex: bind 192.0.2.1: Cannot assign requested address" in err, err
    assert f"connect 127.0.0.1:{port}" not in err, err


def test_source_port_in_use_names_the_bind(run_duplex):
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen(1)
        sport = held.getsockname()[1]
        target = free_port()
        rc, _, err = run_duplex(["connect", "-p", sport, "127.0.0.1", target])
    assert rc == 4, err
    assert re.search(rf"^duplex: bind (0\.0\.0\.0|127\.0\.0\.1):{sport}: Address already in use$", err, re.M), err


def test_source_bind_through_a_proxy_names_the_bind(run_duplex):
    port = free_port()
    rc, _, err = run_duplex(["connect", "-x", f"127.0.0.1:{port}", "-s", "192.0.2.1", "example.com", "80"])
    assert rc == 4, err
    assert "duplex: bind 192.0.2.1: Cannot assign requested address" in err, err


# ---------------------------------------------- item 31: counts, plurals --


def test_session_counts_singular(start_listener, run_duplex):
    """connect -v to an echo server, one byte each way: '1 byte', not '1 bytes'."""
    _, port = start_listener(["-k", "--echo", "--no-stdio"])
    rc, out, err = run_duplex(["connect", "-v", "127.0.0.1", port], stdin=b"x")
    assert rc == 0, err
    assert out == b"x"
    assert re.search(r"sent 1 byte, received 1 byte in ", err), err


def test_server_counts_singular(start_listener):
    """listen -k -v: a client of one byte closes with '(sent 0 bytes,
    received 1 byte)' and the summary says 'served 1 client;'."""
    proc, port = start_listener(["-k", "-v", "--no-stdio"])
    c = connect(port)
    c.sendall(b"x")
    c.close()
    proc.wait_err(r"\(sent 0 bytes, received 1 byte\)")
    proc.popen.terminate()
    assert proc.wait() == 143, proc.err
    assert re.search(r"^duplex: served 1 client; refused 0 \(limit\)", proc.err, re.M), proc.err


def test_relay_counts_singular(start_duplex, start_listener):
    _, target = start_listener(["-k", "--echo", "--no-stdio"])
    relay = start_duplex(["relay", "-v", "127.0.0.1:0", f"127.0.0.1:{target}"])
    port = int(relay.wait_err(LISTENING_RE).group(2))
    c = connect(port)
    c.sendall(b"x")
    assert recv_exact(c, 1, 5) == b"x"
    c.close()
    relay.wait_err(r"sent 1 byte, received 1 byte in ")
    relay.popen.terminate()
    assert relay.wait() == 143, relay.err
    assert re.search(r"^duplex: relayed 1 connection; 0 failed", relay.err, re.M), relay.err


def test_udp_counts_singular(run_duplex):
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        rc, _, err = run_duplex(["connect", "-u", "-v", "127.0.0.1", port], stdin=b"x")
        assert s.recv(10) == b"x"
    assert rc == 0, err
    assert re.search(r"sent 1 datagram \(1 byte\), received 0 datagrams \(0 bytes\)", err), err


# ----------------------------------- item 31: --show-opts says what is so --


def test_show_opts_says_doubled_only_for_values_set(run_duplex):
    """Without -O rcvbuf/sndbuf the buffers are the kernel's defaults:
    nothing was 'requested', so nothing was doubled."""
    with socket.socket() as lsock:
        lsock.bind(("127.0.0.1", 0))
        lsock.listen(4)
        port = lsock.getsockname()[1]
        rc, _, err = run_duplex(["connect", "-q", "0", "--show-opts", "127.0.0.1", port], stdin=b"")
        assert rc == 0, err
        bufs = [ln for ln in err.splitlines() if re.match(r"duplex: option SO_(RCV|SND)BUF = \d+", ln)]
        assert len(bufs) == 2, err
        assert not any("doubl" in ln for ln in bufs), bufs
        rc, _, err = run_duplex(["connect", "-q", "0", "--show-opts", "-O", "rcvbuf=65536",
                                 "127.0.0.1", port], stdin=b"")
        assert rc == 0, err
        assert re.search(r"^duplex: option SO_RCVBUF = \d+ \(kernel doubles", err, re.M), err
        assert not re.search(r"^duplex: option SO_SNDBUF = .*doubl", err, re.M), err


# ------------------------------- item 31: --progress into a file or pipe --


def test_progress_always_not_a_terminal_writes_plain_lines(start_listener, run_duplex, tmp_path):
    """--progress=always with stderr into a pipe: no '\\r' or escape
    sequence; the final status is a line of its own."""
    _, port = start_listener(["-k", "--no-stdio"])
    data = tmp_path / "data"
    data.write_bytes(b"z" * 200000)
    with open(data, "rb") as f:
        rc, _, err = run_duplex(["connect", "-q", "0", "--progress=always", "127.0.0.1", port], stdin=f)
    assert rc == 0, err
    assert "\r" not in err and "\x1b" not in err, repr(err)
    assert re.search(r"^duplex: sent 195\.3 KiB, received 0 B, .*/s, \d\d:\d\d 100%$", err, re.M), repr(err)


def test_progress_on_a_terminal_rewrites_one_line(start_listener, spawn, duplex, tmp_path):
    import pty
    _, port = start_listener(["-k", "--no-stdio"])
    data = tmp_path / "data"
    data.write_bytes(b"z" * 1000)
    master, slave = pty.openpty()
    try:
        with open(data, "rb") as f:
            p = spawn([duplex, "connect", "-q", "0", "--progress", "127.0.0.1", port], stdin=f,
                      stderr=slave)
            os.close(slave)
            slave = -1
            assert p.wait() == 0
        got = b""
        while True:
            try:
                chunk = os.read(master, 4096)
            except OSError:
                break
            if not chunk:
                break
            got += chunk
    finally:
        if slave >= 0:
            os.close(slave)
        os.close(master)
    assert b"\r\x1b[Kduplex: sent 1000 B" in got, got


@pytest.mark.parametrize("args", [["-u", "127.0.0.1", "9"], ["-z", "127.0.0.1", "9"],
                                  ["listen", "-u", "127.0.0.1", "0"]])
def test_progress_where_it_cannot_apply_is_a_usage_error(args, run_duplex):
    rc, _, err = run_duplex(["--progress=always", *args])
    assert rc == 2, err
    assert "duplex: --progress" in err, err


# ------------------------- item 31: a client the server refuses is told --


@pytest.mark.parametrize("limit", [["--deny", "127.0.0.1"], ["-m", "1"]], ids=["deny", "max-conns"])
def test_refused_client_told_with_v(limit, start_listener, start_duplex, run_duplex):
    """The server closes a refused client at once (and says so with -v);
    `duplex connect -v` says the peer closed before any data."""
    srv, port = start_listener(["-k", "-v", "--no-stdio", *limit])
    if "-m" in limit:
        holder = start_duplex(["connect", "127.0.0.1", port], stdin=subprocess.PIPE)
        srv.wait_err(r"127\.0\.0\.1:\d+: connected \(1 now\)")
    rc, out, err = run_duplex(["connect", "-v", "127.0.0.1", port])
    assert rc == 0, err
    assert out == b""
    assert re.search(rf"^duplex: 127\.0\.0\.1:{port}: connection closed by peer before any data$",
                     err, re.M), err
    srv.wait_err(r"refused")


def test_refused_client_told_on_a_terminal(start_listener, spawn, duplex):
    """Without -v, on a terminal (nobody would otherwise notice the empty
    session), the same line."""
    import pty
    _, port = start_listener(["-k", "--no-stdio", "--deny", "127.0.0.1"])
    master, slave = pty.openpty()
    try:
        p = spawn([duplex, "connect", "127.0.0.1", port], stdin=slave)
        assert p.wait() == 0, p.err
    finally:
        os.close(slave)
        os.close(master)
    assert f"duplex: 127.0.0.1:{port}: connection closed by peer before any data" in p.err, p.err


def test_empty_reply_not_reported_when_data_was_sent(start_listener, run_duplex):
    """A client that sent something is not 'closed before any data' (a sink
    closing after reading is a normal end)."""
    _, port = start_listener(["-k", "--no-stdio"])
    rc, _, err = run_duplex(["connect", "-v", "-q", "0", "127.0.0.1", port], stdin=b"x")
    assert rc == 0, err
    assert "before any data" not in err, err
