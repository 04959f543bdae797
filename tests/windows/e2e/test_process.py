"""duplex.exe's process side under wine: --exec / --sh-exec children
(CreateProcess, pipes bridged to the client's socket), Ctrl-C (wine turns a
SIGINT of the wine process into CTRL_C_EVENT: the clean stop and status
130), --model thread and --threads N, `duplex bench`, `duplex sockets`,
-d leaving stdin unread, and the refusals naming Windows (--model fork,
sockets -p, bench -p)."""

import os
import signal
import socket
import subprocess
import threading

import pytest

from conftest import TIMEOUT, connect, listening_port, recv_all, recv_exact, seeded_bytes, sha


def winpath(path):
    """The Windows name of a Linux path under wine (drive Z: is /)."""
    return "Z:" + os.path.abspath(path).replace("/", "\\")


def sigint(proc):
    os.kill(proc.pid, signal.SIGINT)


# ------------------------------------------------------------------ --exec --


def test_exec_child_gets_the_peer_in_its_environment(windows_only, exe_listener):
    """The peer's and our addresses, and the protocol as ncat sets it
    (NCAT_PROTO=TCP, DUPLEX_PROTO=TCP); values of those names that
    duplex.exe inherited are replaced."""
    p, port = exe_listener(["-k", "--sh-exec",
                            "echo %DUPLEX_PEER_ADDR% %DUPLEX_PEER_PORT% %NCAT_REMOTE_ADDR% "
                            "%DUPLEX_LOCAL_PORT% %NCAT_PROTO% %DUPLEX_PROTO%"],
                           env={"NCAT_PROTO": "inherited", "DUPLEX_PROTO": "inherited"})
    with connect(port) as s:
        mine = s.getsockname()
        got = recv_all(s).decode().split()
    assert got == ["127.0.0.1", str(mine[1]), "127.0.0.1", str(port), "TCP", "TCP"]
    p.kill()


def test_exec_binary_both_ways_through_a_child_duplex(target, windows_only, exe_listener,
                                                     start_linux):
    """The child is duplex.exe itself, connected to a Linux echo server: 3 MiB
    goes client -> socket -> child's stdin pipe -> echo -> child's stdout pipe
    -> socket -> client, checksummed; the client's half-close reaches the
    echo server through the child, and its end comes back."""
    echo = start_linux(["listen", "-k", "--echo", "127.0.0.1", "0"])
    echo_port = listening_port(echo)
    p, port = exe_listener(["-k", "--exec", f"{winpath(target.exe)} 127.0.0.1 {echo_port}"])
    data = seeded_bytes(3 << 20, 11)
    with connect(port) as s:
        t = threading.Thread(target=lambda: (s.sendall(data), s.shutdown(socket.SHUT_WR)))
        t.start()
        back = recv_all(s, timeout=60)
        t.join(TIMEOUT)
    assert (len(back), sha(back)) == (len(data), sha(data))
    p.kill()
    echo.kill()


def test_exec_half_close_is_the_childs_end_of_input(windows_only, exe_listener):
    """find.exe filters until its end of input, then exits: the client gets
    what it printed, then the end of the connection."""
    p, port = exe_listener(["-k", "--exec", "find x"])
    with connect(port) as s:
        s.sendall(b"x1\nno\nx2\n")
        s.shutdown(socket.SHUT_WR)
        got = recv_all(s)
    assert got.replace(b"\r\n", b"\n") == b"x1\nx2\n"
    p.kill()


def test_exec_max_conns_and_idle_timeout(windows_only, exe_listener):
    p, port = exe_listener(["-v", "-k", "--exec", "find x", "--max-conns", "1",
                            "--idle-timeout", "1"])
    with connect(port) as a:
        p.wait_err(r"running process \d+")
        with connect(port) as b:
            assert recv_all(b) == b""  # refused: over the limit
        p.wait_err(r"refused: --max-conns 1 reached")
        assert recv_all(a, timeout=10) == b""  # idle: the child stopped, the connection closed
    p.wait_err(r"closed: idle for 1 s \(process \d+ stopped\)")
    p.kill()


def test_exec_program_missing_is_refused_at_start(run_exe):
    rc, _, err = run_exe(["-l", "--exec", "no-such-program-here", "127.0.0.1", "0"])
    assert rc == 2
    assert "--exec no-such-program-here: No such file or directory" in err


def test_exec_that_cannot_run_fails_the_one_client_server(windows_only, exe_listener, tmp_path):
    """Found but not a program: CreateProcess fails, said on stderr, and a
    server without -k exits 1 (as an exec failure does on POSIX)."""
    txt = tmp_path / "notaprogram.txt"
    txt.write_text("text\n")
    p, port = exe_listener(["--exec", winpath(txt)])
    with connect(port) as s:
        try:
            recv_all(s)
        except ConnectionResetError:
            pass
    assert p.wait() == 1
    assert "Exec format error" in p.err


# ------------------------------------------------------------------ Ctrl-C --


def test_ctrl_c_stops_a_server_cleanly_with_130(exe_listener):
    p, port = exe_listener(["-v", "-k", "--echo"])
    with connect(port) as s:
        s.sendall(b"ping\n")
        assert recv_exact(s, 5) == b"ping\n"
        sigint(p)
        assert p.wait() == 130
    assert "served 1 client" in p.err  # the -v totals: the clean way out


def test_ctrl_c_stops_exec_children(windows_only, exe_listener):
    p, port = exe_listener(["-v", "-k", "--exec", "find x"])
    with connect(port) as s:
        p.wait_err(r"running process \d+")
        sigint(p)
        assert p.wait() == 130
        assert recv_all(s) == b""  # the child is gone, and its connection with it


def test_ctrl_c_interrupts_a_proxy_handshake(server, start_exe):
    """Before the loop runs (waiting for a silent proxy's reply), Ctrl-C
    still stops: 130."""
    greeted, release = threading.Event(), threading.Event()

    def silent(conn, result):
        result["greeting"] = conn.recv(64)  # SOCKS5: the methods offered
        greeted.set()
        release.wait(TIMEOUT)

    srv = server(silent)
    p = start_exe(["-x", f"127.0.0.1:{srv.port}", "-w", "30", "example.com", "80"],
                  stdin=subprocess.PIPE)
    assert greeted.wait(TIMEOUT), p.err
    sigint(p)
    assert p.wait() == 130
    assert "interrupted" in p.err
    release.set()


# ------------------------------------------------------- models, threads --


def echo_clients(port, n, size=1 << 20):
    results = [None] * n

    def one(i):
        data = seeded_bytes(size, 100 + i)
        with connect(port) as s:
            t = threading.Thread(target=lambda: (s.sendall(data), s.shutdown(socket.SHUT_WR)))
            t.start()
            back = recv_all(s, timeout=60)
            t.join(TIMEOUT)
        results[i] = sha(back) == sha(data) and len(back) == len(data)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(90)
    return results


def test_model_thread_echo(exe_listener):
    p, port = exe_listener(["-k", "--echo", "--model", "thread"])
    assert echo_clients(port, 4) == [True] * 4
    p.kill()


def test_threads_share_one_port(exe_listener):
    """--threads 3: Windows has no SO_REUSEPORT, the loops share the first
    one's listening socket."""
    p, port = exe_listener(["-v", "-k", "--echo", "--threads", "3"])
    p.wait_err(r"serving with 3 event loops on 3 threads")
    assert echo_clients(port, 6) == [True] * 6
    sigint(p)
    assert p.wait() == 130
    assert "served 6 clients" in p.err


# ------------------------------------------------------------ bench, stdio --


def test_bench_echo_against_a_linux_server(start_linux, run_exe):
    echo = start_linux(["listen", "-k", "--echo", "127.0.0.1", "0"])
    port = listening_port(echo)
    rc, out, err = run_exe(["bench", "echo", "127.0.0.1", port, "-c", "4", "-d", "1", "-w", "0.2"],
                           timeout=60)
    assert rc == 0, err
    assert b"4 established" in out and b"errors        0 " in out, out
    echo.kill()


def test_recv_only_leaves_stdin_unread(server, start_exe, tmp_path):
    """-d: not a byte of stdin is taken (no bridge thread reads it)."""
    f = tmp_path / "stdin"
    f.write_bytes(b"must stay for the next reader\n")
    srv = server(lambda conn, result: (conn.sendall(b"hello\n"), conn.shutdown(socket.SHUT_WR),
                                       result.update(got=recv_all(conn))))
    with open(f, "rb") as stdin:
        p = start_exe(["-d", "127.0.0.1", srv.port], stdin=stdin)
        assert p.wait() == 0, p.err
        assert os.lseek(stdin.fileno(), 0, os.SEEK_CUR) == 0
    assert p.out == b"hello\n"


def test_sockets_lists_our_listener_and_connection(exe_listener, run_exe):
    p, port = exe_listener(["-k", "--echo"])
    with connect(port) as s:
        s.sendall(b"x")
        assert recv_exact(s, 1) == b"x"
        # wine lists TCP slowly (an owner lookup per socket): seconds with
        # a thousand sockets on the host
        rc, out, err = run_exe(["sockets", "-atn", "--sport", port], timeout=120)
        assert rc == 0, err
        lines = out.decode().splitlines()
        assert any(f"LISTEN" in l and f"127.0.0.1:{port} " in l for l in lines), out
        assert any(l.startswith("tcp") and "ESTAB" in l and f"127.0.0.1:{s.getsockname()[1]}" in l
                   for l in lines), out
    p.kill()


# ---------------------------------------------------------------- refusals --


@pytest.mark.parametrize("args, text", [
    (["-l", "-k", "--echo", "--model", "fork", "127.0.0.1", "0"],
     "--model fork is not available on Windows (use --model thread)"),
    (["sockets", "-p"], "sockets -p: the owning processes are not available on Windows"),
    (["bench", "echo", "127.0.0.1", "9", "-p", "2"],
     "bench -p: worker processes are not available on Windows"),
])
def test_refused_naming_windows(windows_only, run_exe, args, text):
    rc, _, err = run_exe(args)
    assert rc == 2 and text in err, err
