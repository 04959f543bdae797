"""duplex.exe sessions: Ctrl-C in a session (SIGINT to the wine process
arrives as CTRL_C_EVENT: the clean stop and exit 130 of Linux; servers:
test_process.py), the session flags (-C, --hex-dump, -q, --send-only,
--progress), proxies (-x: SOCKS5 through microsocks, HTTP CONNECT through
tinyproxy) and IPv6 on ::1."""

import re
import signal
import socket
import subprocess
import threading

import pytest

from conftest import TIMEOUT, free_port, need, recv_all, recv_exact, seeded_bytes, sha, wait_listening

# ----------------------------------------------------------------- Ctrl-C --


def test_ctrl_c_stops_a_session_exit_130(server, start_exe):
    """Ctrl-C during a session (once it is moving bytes: a SIGINT before
    wine has set its handlers up kills the loader by the signal instead)."""
    first = threading.Event()

    def script(conn, res):
        res["first"] = recv_exact(conn, 14)
        first.set()
        res["rest"] = recv_all(conn)

    srv = server(script)
    p = start_exe(["connect", "127.0.0.1", srv.port], stdin=subprocess.PIPE)
    p.stdin.write(b"before ctrl-c\n")
    p.stdin.flush()
    assert first.wait(TIMEOUT), p.err
    p.popen.send_signal(signal.SIGINT)
    assert p.wait() == 130, p.err
    res = srv.join()
    assert (res["first"], res["rest"]) == (b"before ctrl-c\n", b"")


# ---------------------------------------------------------- session flags --


def test_crlf(server, start_exe):
    """-C: LF sent as CRLF."""
    srv = server(lambda conn, res: res.update(got=recv_all(conn)))
    p = start_exe(["connect", "-C", "-q", "0", "127.0.0.1", srv.port], stdin=b"HELO x\nQUIT\n")
    assert p.wait() == 0, p.err
    assert srv.join()["got"] == b"HELO x\r\nQUIT\r\n"


def test_hex_dump(server, start_exe):
    def script(conn, res):
        res["got"] = recv_all(conn)
        conn.sendall(b"OK\n")
        conn.shutdown(socket.SHUT_WR)

    srv = server(script)
    p = start_exe(["connect", "--hex-dump", "-", "127.0.0.1", srv.port], stdin=b"ab\n")
    assert p.wait() == 0, p.err
    assert p.out == b"OK\n"
    assert re.search(r"^> 00000000  61 62 0a +\|ab\.\|$", p.err, re.M), p.err
    assert re.search(r"^< 00000000  4f 4b 0a +\|OK\.\|$", p.err, re.M), p.err


def test_output_file_is_binary_exact(server, start_exe, target, tmp_path):
    """-o FILE: both directions, in order, byte for byte: the C runtime's
    text mode would have turned each LF into CRLF (and stopped at ^Z)."""
    up = bytes(range(256)) * 64 + b"a\nb\r\nc\x1a"
    down = seeded_bytes(100000, 12) + b"\n\n"

    def script(conn, res):
        res["got"] = recv_all(conn)
        conn.sendall(down)
        conn.shutdown(socket.SHUT_WR)

    srv = server(script)
    f = tmp_path / "session.out"
    f.write_bytes(b"old\n")
    name = "Z:" + str(f).replace("/", "\\") if target.windows else str(f)
    p = start_exe(["connect", "-o", name, "--append-output", "127.0.0.1", srv.port], stdin=up)
    assert p.wait() == 0, p.err
    assert sha(srv.join()["got"]) == sha(up)
    assert sha(p.out) == sha(down)
    assert sha(f.read_bytes()) == sha(b"old\n" + up + down)


def test_q_0_exits_at_end_of_stdin(server, start_exe):
    """-q 0: exit 0 once stdin has ended and is sent, the peer still open."""
    srv = server(lambda conn, res: res.update(got=recv_all(conn)))
    p = start_exe(["connect", "-q", "0", "127.0.0.1", srv.port], stdin=b"bye\n")
    assert p.wait() == 0, p.err
    assert srv.join()["got"] == b"bye\n"


def test_send_only_quits_when_sent(server, start_exe):
    """--send-only: 2 MiB sent, exit 0 at the end of stdin once the peer
    has it all, while the peer keeps its side open. Stdin is a pipe that
    ends early (written and closed while duplex.exe starts)."""
    data = seeded_bytes(2 << 20, 21)
    srv = server(lambda conn, res: res.update(got=recv_all(conn)))
    p = start_exe(["connect", "--send-only", "127.0.0.1", srv.port], stdin=data)
    assert p.wait(10) == 0, p.err  # at once on Linux; 10 s leaves room for a loaded machine
    got = srv.join()["got"]
    assert len(got) == len(data) and sha(got) == sha(data)


# ------------------------------------------------------------------ proxy --


def test_socks5_proxy_microsocks(server, spawn, start_exe):
    need("microsocks")
    pport = free_port()
    proxy = spawn(["microsocks", "-i", "127.0.0.1", "-p", pport], stdout=subprocess.DEVNULL)
    wait_listening(pport, proc=proxy)

    # without -N the end of stdin is not passed through the proxy (microsocks
    # would close both ways): the target answers the line, then closes
    def script(conn, res):
        res["got"] = recv_exact(conn, 9)
        conn.sendall(b"answer through the proxy\n")
        conn.shutdown(socket.SHUT_WR)

    srv = server(script)
    p = start_exe(["connect", "-x", f"127.0.0.1:{pport}", "127.0.0.1", srv.port],
                  stdin=b"question\n")
    assert p.wait() == 0, p.err
    assert srv.join()["got"] == b"question\n"
    assert p.out == b"answer through the proxy\n"


def test_http_connect_proxy_tinyproxy(server, spawn, start_exe, tmp_path):
    need("tinyproxy")

    def script(conn, res):
        res["got"] = recv_exact(conn, 9)
        conn.sendall(b"answer through http\n")
        conn.shutdown(socket.SHUT_WR)

    srv = server(script)
    pport = free_port()
    conf = tmp_path / "tinyproxy.conf"
    conf.write_text("\n".join([f"Port {pport}", "Listen 127.0.0.1", "Timeout 30", "Allow 127.0.0.1",
                               "LogLevel Info", "MaxClients 10", f"ConnectPort {srv.port}"]) + "\n")
    proxy = spawn(["tinyproxy", "-d", "-c", conf], stdout=subprocess.DEVNULL)
    wait_listening(pport, proc=proxy)
    p = start_exe(["connect", "-X", "connect", "-x", f"127.0.0.1:{pport}", "127.0.0.1", srv.port],
                  stdin=b"question\n")
    assert p.wait() == 0, p.err
    assert srv.join()["got"] == b"question\n"
    assert p.out == b"answer through http\n"


# ------------------------------------------------------------- --progress --


def progress_run(server, start_exe, tmp_path):
    data = seeded_bytes(1 << 20, 22)
    f = tmp_path / "in.bin"
    f.write_bytes(data)
    srv = server(lambda conn, res: res.update(got=recv_all(conn)))
    with open(f, "rb") as stdin:
        p = start_exe(["connect", "--progress=always", "-q", "0", "127.0.0.1", srv.port], stdin=stdin)
        assert p.wait() == 0, p.err
    assert sha(srv.join()["got"]) == sha(data)
    return p.err


def test_progress_always(server, start_exe, tmp_path):
    """--progress=always: the status line on stderr ends with the totals;
    the bytes are not disturbed."""
    err = progress_run(server, start_exe, tmp_path)
    assert re.search(r"^duplex: sent 1\.0 MiB, received 0 B, ", err, re.M), err


def test_progress_percentage_of_a_file(server, start_exe, tmp_path):
    """stdin a regular file: the status line has the percentage (its size
    known)."""
    err = progress_run(server, start_exe, tmp_path)
    assert re.search(r"^duplex: sent 1\.0 MiB, .* 100%$", err, re.M), err


# ------------------------------------------------------------------- IPv6 --


def have_ipv6():
    try:
        with socket.socket(socket.AF_INET6) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


@pytest.mark.skipif(not have_ipv6(), reason="no IPv6 loopback here")
def test_ipv6_both_ways(start_exe, start_linux):
    """duplex.exe listens on [::1], the Linux duplex connects: bytes both ways."""
    a, b = seeded_bytes(256 << 10, 23), seeded_bytes(256 << 10, 24)
    srv = start_exe(["listen", "-v", "::1", "0"], stdin=a)
    m = srv.wait_err(r"listening on \[::1\]:(\d+)")
    cli = start_linux(["connect", "-v", f"[::1]:{m.group(1)}"], stdin=b)
    assert cli.wait() == 0, cli.err
    assert srv.wait() == 0, srv.err
    assert sha(cli.out) == sha(a) and sha(srv.out) == sha(b)
    assert re.search(r"accepted \[::1\]:\d+ on \[::1\]:" + m.group(1), srv.err), srv.err
