"""duplex.exe sessions: Ctrl-C in a session (SIGINT to the wine process
arrives as CTRL_C_EVENT: the clean stop and exit 130 of Linux; servers:
test_process.py), the session flags (-C, --hex-dump, -q, --send-only) and a
SOCKS5 proxy (-x, microsocks)."""

import re
import signal
import socket
import subprocess
import threading

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


def test_q_0_exits_at_end_of_stdin(server, start_exe):
    """-q 0: exit 0 once stdin has ended and is sent, the peer still open."""
    srv = server(lambda conn, res: res.update(got=recv_all(conn)))
    p = start_exe(["connect", "-q", "0", "127.0.0.1", srv.port], stdin=b"bye\n")
    assert p.wait() == 0, p.err
    assert srv.join()["got"] == b"bye\n"


def test_send_only_quits_when_sent(server, start_exe):
    """--send-only: 2 MiB sent, exit 0 at the end of stdin once the peer
    has it all, while the peer keeps its side open."""
    data = seeded_bytes(2 << 20, 21)
    srv = server(lambda conn, res: res.update(got=recv_all(conn)))
    p = start_exe(["connect", "--send-only", "127.0.0.1", srv.port], stdin=data)
    assert p.wait() == 0, p.err
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
