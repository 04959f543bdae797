"""Addressing modes (IPv6, Unix sockets, netcat style), port 0 reporting,
-k, -q, --no-shutdown, -d, --send-only, -z and -v."""

import os
import re
import socket
import stat
import subprocess
import threading
import time

import pytest

from conftest import TIMEOUT, LISTENING_RE, closed_port, free_port, have_ipv6_loopback, recv_all
from servers_util import read_pipe_to_eof, wait_for

needs_ipv6 = pytest.mark.skipif(not have_ipv6_loopback(), reason="no IPv6 loopback (::1)")


def _exchange(start_duplex, lst, connect_args, env=None):
    """Run `duplex connect ARGS` with a request, against a listener whose
    stdin holds b'answer\\n'; check both directions."""
    cli = start_duplex(["connect", *connect_args], stdin=b"request\n", env=env)
    assert cli.wait() == 0, cli.err
    assert lst.wait() == 0, lst.err
    assert cli.out == b"answer\n"
    assert lst.out == b"request\n"
    return cli


# ---------------------------------------------------------------- port 0 --


def test_port_zero_reports_the_real_port(start_listener, start_duplex, backend_env):
    lst, port = start_listener(stdin=b"answer\n", env=backend_env)
    assert re.search(rf"^duplex: listening on 127\.0\.0\.1:{port}$", lst.err, re.M), lst.err
    # the reported port is the one actually listening: connect to it
    _exchange(start_duplex, lst, ["127.0.0.1", port], env=backend_env)


def test_explicit_free_port_and_verbose_listening_line(start_duplex):
    port = free_port()
    lst = start_duplex(["listen", "-v", "127.0.0.1", port], stdin=b"answer\n")
    lst.wait_err(rf"^duplex: listening on 127\.0\.0\.1:{port}$")
    _exchange(start_duplex, lst, [f"127.0.0.1:{port}"])


# ------------------------------------------------------------------ IPv6 --


@needs_ipv6
@pytest.mark.parametrize("form", ["two-args", "bracketed"])
def test_ipv6_loopback(form, start_listener, start_duplex):
    lst, port = start_listener(stdin=b"answer\n", addr="::1")
    assert re.search(rf"^duplex: listening on \[::1\]:{port}$", lst.err, re.M), lst.err
    args = ["::1", port] if form == "two-args" else [f"[::1]:{port}"]
    _exchange(start_duplex, lst, args)


@needs_ipv6
def test_ipv6_verbose_addresses(start_listener, start_duplex):
    lst, port = start_listener(["-v"], stdin=b"answer\n", addr="::1")
    cli = _exchange(start_duplex, lst, ["-v", "::1", port])
    assert re.search(rf"duplex: connected to \[::1\]:{port} from \[::1\]:\d+", cli.err), cli.err
    assert re.search(rf"duplex: accepted \[::1\]:\d+ on \[::1\]:{port}", lst.err), lst.err


# ----------------------------------------------------------- Unix sockets --


def _unix_listener(start_duplex, path, extra=(), **kw):
    lst = start_duplex(["listen", "-v", *extra, "-U", path], **kw)
    lst.wait_err(r"^duplex: listening on ")
    st = os.stat(path)
    assert stat.S_ISSOCK(st.st_mode), "listen -U did not create a socket file"
    return lst


def test_unix_socket_both_roles(start_duplex, tmp_path, backend_env):
    path = str(tmp_path / "dx.sock")
    lst = _unix_listener(start_duplex, path, stdin=b"answer\n", env=backend_env)
    lst.wait_err(re.escape(path))
    _exchange(start_duplex, lst, ["-U", path], env=backend_env)
    assert not os.path.exists(path), "the listener left its socket file behind"


def test_unix_socket_large_both_ways(start_duplex, tmp_path, random_files):
    a, b = random_files(4 << 20)
    path = str(tmp_path / "big.sock")
    out_l, out_c = tmp_path / "l.out", tmp_path / "c.out"
    with a.open() as in_l, b.open() as in_c, open(out_l, "wb") as fl, open(out_c, "wb") as fc:
        lst = _unix_listener(start_duplex, path, stdin=in_l, stdout=fl)
        cli = start_duplex(["connect", "-U", path], stdin=in_c, stdout=fc)
        assert cli.wait(30) == 0, cli.err
        assert lst.wait(30) == 0, lst.err
    from conftest import sha256_file
    assert sha256_file(out_l) == b.sha256
    assert sha256_file(out_c) == a.sha256


def test_unix_stale_socket_file_is_replaced(start_duplex, tmp_path):
    """A socket file left by a dead server does not stop a new listener."""
    path = str(tmp_path / "stale.sock")
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(path)
    s.listen(1)
    s.close()  # the file stays, nobody listens on it
    assert os.path.exists(path)
    lst = _unix_listener(start_duplex, path, stdin=b"answer\n")
    _exchange(start_duplex, lst, ["-U", path])


def test_unix_live_socket_is_not_stolen(start_duplex, run_duplex, tmp_path):
    """Listening on a path where a server is alive fails (exit 6, 'Address
    already in use') and leaves that server's socket file in place and
    working. (The first listener uses -k -d: the liveness probe of the second
    one may be accepted as an empty client.)"""
    path = str(tmp_path / "live.sock")
    out = tmp_path / "first.out"
    with open(out, "wb") as f:
        first = _unix_listener(start_duplex, path, extra=["-k", "-d"], stdout=f)
    rc, _, err = run_duplex(["listen", "-U", path])
    assert rc == 6, err
    assert f"duplex: listen {path}: Address already in use" in err
    assert os.path.exists(path), "the failed listener removed the live server's socket file"
    cli = start_duplex(["connect", "-U", path], stdin=b"still served\n")
    assert cli.wait() == 0, cli.err
    deadline = time.monotonic() + TIMEOUT
    while out.read_bytes() != b"still served\n" and time.monotonic() < deadline:
        time.sleep(0.02)
    assert out.read_bytes() == b"still served\n", first.err


def test_unix_regular_file_is_not_removed(run_duplex, tmp_path):
    path = tmp_path / "not-a-socket"
    path.write_bytes(b"precious")
    rc, _, err = run_duplex(["listen", "-U", str(path)])
    assert rc == 6, err
    assert f"duplex: listen {path}: " in err
    assert path.exists(), "a failed `listen -U PATH` deleted the regular file at PATH"
    assert path.read_bytes() == b"precious"


# ---------------------------------------------------------- netcat style --


def test_netcat_style_listen_p_and_host_port(start_duplex):
    """`duplex -l -p 0` (every address, dual-stack) and `duplex HOST PORT`."""
    lst = start_duplex(["-l", "-p", "0"], stdin=b"answer\n")
    m = lst.wait_err(LISTENING_RE)
    if have_ipv6_loopback():
        assert m.group(1) == "[::]", m.group(0)
    port = int(m.group(2))
    cli = start_duplex(["127.0.0.1", port], stdin=b"request\n")
    assert cli.wait() == 0, cli.err
    assert lst.wait() == 0, lst.err
    assert (cli.out, lst.out) == (b"answer\n", b"request\n")


def test_netcat_style_l_with_addr_and_host_colon_port(start_duplex):
    lst = start_duplex(["-l", "127.0.0.1", "0"], stdin=b"answer\n")
    port = int(lst.wait_err(LISTENING_RE).group(2))
    cli = start_duplex([f"127.0.0.1:{port}"], stdin=b"request\n")
    assert cli.wait() == 0, cli.err
    assert lst.wait() == 0, lst.err
    assert (cli.out, lst.out) == (b"answer\n", b"request\n")


# --------------------------------------------------------------- verbose --


def test_verbose_lines_and_byte_counts(start_listener, start_duplex):
    lst, port = start_listener(["-v"], stdin=b"0123456789")  # 10 bytes
    cli = start_duplex(["connect", "-v", "127.0.0.1", port], stdin=b"abc")  # 3 bytes
    assert cli.wait() == 0, cli.err
    assert lst.wait() == 0, lst.err
    m = re.search(rf"duplex: connected to 127\.0\.0\.1:{port} from 127\.0\.0\.1:(\d+)", cli.err)
    assert m, cli.err
    cport = m.group(1)
    assert re.search(rf"duplex: accepted 127\.0\.0\.1:{cport} on 127\.0\.0\.1:{port}", lst.err), lst.err
    assert "sent 3 bytes, received 10 bytes" in cli.err
    assert "sent 10 bytes, received 3 bytes" in lst.err


def test_quiet_without_verbose(start_duplex):
    """Without -v and with a fixed port, a clean session prints nothing."""
    port = free_port()
    lst = start_duplex(["listen", "127.0.0.1", port], stdin=b"x")
    from conftest import wait_listening
    wait_listening(port, proc=lst)
    cli = start_duplex(["connect", "127.0.0.1", port], stdin=b"y")
    assert cli.wait() == 0 and lst.wait() == 0
    assert cli.err == "" and lst.err == "", (cli.err, lst.err)


# -------------------------------------------------------------------- -k --


def _wait_file(path, expected, proc, timeout=TIMEOUT):
    deadline = time.monotonic() + timeout
    while path.read_bytes() != expected:
        if time.monotonic() > deadline:
            pytest.fail(f"{path.name}: {path.read_bytes()!r}, expected {expected!r}; stderr={proc.err!r}")
        if proc.poll() is not None:
            pytest.fail(f"{proc.name} exited rc={proc.poll()}: {proc.err!r}")
        time.sleep(0.02)


def test_keep_listening_serves_three_clients_one_after_another(start_listener, start_duplex,
                                                               tmp_path, backend_env):
    """-k: three clients, each after the previous one ended; every client's
    bytes appear on the listener's stdout, in order, and the listener stays."""
    out = tmp_path / "k.out"
    with open(out, "wb") as f:
        lst, port = start_listener(["-k"], stdin=subprocess.DEVNULL, stdout=f, env=backend_env)
    expected = b""
    for i in (1, 2, 3):
        c = start_duplex(["connect", "127.0.0.1", port], stdin=b"client-%d\n" % i, env=backend_env)
        assert c.wait() == 0, c.err
        expected += b"client-%d\n" % i
        _wait_file(out, expected, lst)
    time.sleep(0.2)
    assert lst.poll() is None, f"-k listener exited after its clients: rc={lst.poll()} {lst.err!r}"


def _wait_connections(port, n, timeout=TIMEOUT):
    """Until n client connections to 127.0.0.1:port exist (any state but
    listening: client 1 is already half-closed by then)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        out = subprocess.run(["ss", "-Htn", f"dport = :{port}"],
                             capture_output=True, text=True).stdout
        if len(out.splitlines()) >= n:
            return
        time.sleep(0.02)
    pytest.fail(f"{n} connections to port {port} not established within {timeout} s")


def test_iterative_model_serves_queued_clients_in_turn(start_listener, start_duplex, tmp_path,
                                                        backend_env):
    """`-k --model iterative`: after a client ends, serve the next one.
    Clients 2 and 3 connect while client 1 is still active: they are served
    only after client 1 ends, so the listener's stdout holds client 1's bytes
    (sent before and after 2 and 3 connected) first."""
    out = tmp_path / "k.out"
    with open(out, "wb") as f:
        lst, port = start_listener(["-k", "--model", "iterative"], stdin=subprocess.DEVNULL, stdout=f,
                                   env=backend_env)
    c1 = start_duplex(["connect", "127.0.0.1", port], stdin=subprocess.PIPE, env=backend_env)
    c1.stdin.write(b"client-1 part 1\n")
    c1.stdin.flush()
    _wait_file(out, b"client-1 part 1\n", lst)
    # queued behind client 1
    c2 = start_duplex(["connect", "127.0.0.1", port], stdin=b"client-2\n", env=backend_env)
    # client 3 connects only once client 2 is in the backlog: their order is then known
    _wait_connections(port, 2)
    c3 = start_duplex(["connect", "127.0.0.1", port], stdin=b"client-3\n", env=backend_env)
    time.sleep(0.3)  # time enough for 2 and 3 to (wrongly) be served before 1 ends
    assert out.read_bytes() == b"client-1 part 1\n", "a queued client was served while client 1 was active"
    c1.stdin.write(b"client-1 part 2\n")
    c1.close_stdin()
    assert c1.wait() == 0, c1.err
    assert c2.wait() == 0, c2.err
    assert c3.wait() == 0, c3.err
    _wait_file(out, b"client-1 part 1\nclient-1 part 2\nclient-2\nclient-3\n", lst)
    assert lst.poll() is None, f"-k listener exited after its clients: rc={lst.poll()} {lst.err!r}"


def test_keep_listening_serves_clients_at_once(start_listener, start_duplex, tmp_path, backend_env):
    """Plain -k serves every client at once: client 2 is served while client 1
    is still connected, and both end cleanly."""
    out = tmp_path / "k.out"
    with open(out, "wb") as f:
        lst, port = start_listener(["-k", "-d"], stdout=f, env=backend_env)
    c1 = start_duplex(["connect", "127.0.0.1", port], stdin=subprocess.PIPE, env=backend_env)
    c1.stdin.write(b"client-1 part 1\n")
    c1.stdin.flush()
    _wait_file(out, b"client-1 part 1\n", lst)
    c2 = start_duplex(["connect", "127.0.0.1", port], stdin=b"client-2\n", env=backend_env)
    _wait_file(out, b"client-1 part 1\nclient-2\n", lst)
    c1.stdin.write(b"client-1 part 2\n")
    c1.close_stdin()
    assert c1.wait() == 0, c1.err
    assert c2.wait() == 0, c2.err
    _wait_file(out, b"client-1 part 1\nclient-2\nclient-1 part 2\n", lst)
    assert lst.poll() is None, f"-k listener exited after its clients: rc={lst.poll()} {lst.err!r}"


def test_without_k_listener_serves_one_client(start_listener, start_duplex):
    lst, port = start_listener(stdin=subprocess.DEVNULL)
    cli = start_duplex(["connect", "127.0.0.1", port], stdin=b"only\n")
    assert cli.wait() == 0
    assert lst.wait() == 0, lst.err
    assert lst.out == b"only\n"


# -------------------------------------------------------------------- -q --


def _silent_server(server, hold=8.0, send_after_eof=None):
    """A server that reads until EOF (recording the data), maybe sends
    something at once, then keeps the connection open `hold` seconds or
    until srv.release is set, and closes it."""
    release = threading.Event()

    def script(conn, res):
        res["data"] = recv_all(conn)
        if send_after_eof is not None:
            conn.sendall(send_after_eof)
        release.wait(hold)
        conn.close()

    srv = server(script)
    srv.release = release
    return srv


def test_default_waits_for_peer_after_eof(server, start_duplex):
    """Control for -q: without it, duplex keeps the session open after stdin
    ends until the peer closes. (The server holds the connection until
    released, not for a second that a busy machine could use up before the
    check.)"""
    srv = _silent_server(server)
    cli = start_duplex(["connect", "127.0.0.1", srv.port], stdin=b"hi")
    # duplex has reached the end of its input: the server read its EOF
    wait_for(lambda: "data" in srv.result, TIMEOUT, "the server to read duplex's EOF")
    time.sleep(0.3)  # window: a duplex that quit at the end of input would have by now
    assert cli.poll() is None, f"duplex exited before the peer closed: {cli.err!r}"
    srv.release.set()
    assert cli.wait() == 0, cli.err  # the server closes once released
    assert srv.join()["data"] == b"hi"


def test_q0_quits_at_end_of_input(server, start_duplex):
    # the server holds the connection far longer than the wait: duplex ending
    # first is the evidence that -q 0 quit at the end of input (no clock)
    srv = _silent_server(server, hold=120)
    cli = start_duplex(["connect", "-q", "0", "127.0.0.1", srv.port], stdin=b"hi")
    assert cli.wait(TIMEOUT) == 0, cli.err
    assert not srv.release.is_set()
    srv.release.set()
    assert srv.join()["data"] == b"hi"


def test_q3_quits_three_seconds_after_eof_and_prints_late_data(server, start_duplex):
    """The server answers as soon as it reads duplex's EOF: the answer has
    the whole -q 3 to arrive (it had 0.7 s, sent 0.3 s after EOF under -q 1,
    which a busy machine could use up); the server holds the connection
    open after: duplex quitting is -q's doing."""
    srv = _silent_server(server, send_after_eof=b"late\n")
    t0 = time.monotonic()
    cli = start_duplex(["connect", "-q", "3", "127.0.0.1", srv.port], stdin=b"hi")
    rc = cli.wait(15)
    elapsed = time.monotonic() - t0
    assert rc == 0, cli.err
    assert 2.9 <= elapsed < 12, f"-q 3 quit after {elapsed:.2f}s"
    assert cli.out == b"late\n"
    srv.release.set()
    assert srv.join()["data"] == b"hi"


def test_q1_ends_early_when_peer_closes(start_listener, start_duplex):
    lst, port = start_listener(stdin=b"bye")
    cli = start_duplex(["connect", "-q", "60", "127.0.0.1", port], stdin=b"hi")
    assert cli.wait(TIMEOUT) == 0, cli.err  # long before -q 60 would end it
    assert cli.out == b"bye"
    assert lst.wait() == 0


# --------------------------------------------------------- --no-shutdown --


def test_no_shutdown_peer_sees_no_eof_until_close(server, start_duplex, backend_env):
    """With --no-shutdown, the server must not read EOF after stdin ends; the
    session ends when the server closes, and its last words are printed."""

    def script(conn, res):
        data = b""
        conn.settimeout(TIMEOUT)
        while len(data) < 4:
            b = conn.recv(100)
            if not b:
                res["early_eof"] = True
                return
            data += b
        res["data"] = data
        conn.settimeout(1.0)
        try:
            b = conn.recv(100)
            res["early_eof"] = b == b""
            res["extra"] = b
        except socket.timeout:
            res["early_eof"] = False
        conn.sendall(b"bye\n")
        conn.shutdown(socket.SHUT_WR)
        conn.settimeout(TIMEOUT)
        res["final"] = recv_all(conn)  # duplex closes after reading our EOF

    srv = server(script)
    cli = start_duplex(["connect", "--no-shutdown", "127.0.0.1", srv.port], stdin=b"data", env=backend_env)
    res = srv.join()
    assert res.get("data") == b"data"
    assert res["early_eof"] is False, "--no-shutdown: the peer read EOF when stdin ended"
    assert cli.wait() == 0, cli.err
    assert cli.out == b"bye\n"
    assert res["final"] == b""


def test_default_shutdown_peer_sees_eof(server, start_duplex):
    """Control for --no-shutdown: by default the peer reads EOF right away."""

    def script(conn, res):
        res["data"] = recv_all(conn, timeout=3)
        conn.sendall(b"bye\n")

    srv = server(script)
    cli = start_duplex(["connect", "127.0.0.1", srv.port], stdin=b"data")
    assert srv.join()["data"] == b"data"
    srv.conn.close()
    assert cli.wait() == 0, cli.err
    assert cli.out == b"bye\n"


def test_N_is_accepted(start_listener, start_duplex):
    lst, port = start_listener(stdin=b"answer\n")
    _exchange(start_duplex, lst, ["-N", "127.0.0.1", port])


# ---------------------------------------- the peer's end closes stdout --


@pytest.mark.parametrize("side", ["listen", "connect"])
def test_peer_end_closes_stdout(side, server, start_listener, start_duplex):
    """`duplex listen 9000 | tar x`: when the peer ends its side, duplex
    closes its stdout at once, so the consumer sees its end of input though
    duplex's stdin is still open (it used to wait for duplex to exit); duplex
    still sends what stdin brings, and exits when that ends too."""
    r, w = os.pipe()
    try:
        if side == "listen":
            dp, port = start_listener(stdin=subprocess.PIPE, stdout=w)
            peer = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
        else:
            srv = server(accept=False)
            dp = start_duplex(["connect", "127.0.0.1", srv.port],
                              stdin=subprocess.PIPE, stdout=w)
            srv.sock.settimeout(TIMEOUT)
            peer, _ = srv.sock.accept()
        os.close(w)
        w = None
        with peer:
            peer.sendall(b"the archive\n")
            peer.shutdown(socket.SHUT_WR)
            assert read_pipe_to_eof(r) == b"the archive\n"
            assert dp.poll() is None, dp.err  # stdin is open: still running
            dp.stdin.write(b"still sending\n")
            dp.stdin.flush()
            dp.close_stdin()
            assert recv_all(peer) == b"still sending\n"
        assert dp.wait() == 0, dp.err
    finally:
        os.close(r)
        if w is not None:
            os.close(w)


# ------------------------------------------------------ -d / --send-only --


@pytest.mark.parametrize("flag", ["-d", "--recv-only"])
def test_recv_only_never_reads_stdin(flag, server, start_duplex, tmp_path):
    """-d: stdin (a regular file) is never read (its offset stays 0), nothing
    is sent, and what the server sends is printed."""
    src = tmp_path / "stdin.txt"
    src.write_bytes(b"MUST NOT BE SENT\n")

    def script(conn, res):
        conn.sendall(b"payload\n")
        conn.shutdown(socket.SHUT_WR)
        res["got"] = recv_all(conn, timeout=5)

    srv = server(script)
    with open(src, "rb") as f:
        cli = start_duplex(["connect", flag, "127.0.0.1", srv.port], stdin=f)
        rc = cli.wait()
        offset = os.lseek(f.fileno(), 0, os.SEEK_CUR)
    assert rc == 0, cli.err
    assert cli.out == b"payload\n"
    assert srv.join()["got"] == b""
    assert offset == 0, f"{flag}: duplex read {offset} bytes of stdin"


def test_recv_only_listener(start_listener, start_duplex):
    lst, port = start_listener(["-d"], stdin=b"MUST NOT BE SENT\n")
    cli = start_duplex(["connect", "127.0.0.1", port], stdin=b"to listener\n")
    assert cli.wait() == 0, cli.err
    assert lst.wait() == 0, lst.err
    assert lst.out == b"to listener\n"
    assert cli.out == b""


def test_send_only_discards_what_arrives(server, start_duplex):
    def script(conn, res):
        conn.sendall(b"discard me\n" * 1000)
        res["got"] = recv_all(conn)
        conn.sendall(b"and me\n")

    srv = server(script)
    cli = start_duplex(["connect", "--send-only", "127.0.0.1", srv.port], stdin=b"upload\n")
    assert srv.join()["got"] == b"upload\n"
    srv.conn.close()
    assert cli.wait() == 0, cli.err
    assert cli.out == b""


@pytest.mark.parametrize("size", [4, 8 << 20])
def test_send_only_quits_at_end_of_stdin(server, start_duplex, size):
    """--send-only reads nothing, so it quits once stdin has ended and the
    peer has every byte, though the peer keeps its side open (it used to
    wait for the peer). The peer also sends all along: closing with its
    bytes unread resets the connection, which must not cost ours."""
    data = os.urandom(size)
    done = threading.Event()

    def script(conn, res):
        def chatter():
            try:
                while not done.is_set():
                    conn.sendall(b"noise\n" * 100)
            except OSError:
                pass

        t = threading.Thread(target=chatter, daemon=True)
        t.start()
        got = bytearray()
        try:
            while len(got) < size:
                b = conn.recv(1 << 20)
                if not b:
                    break
                got += b
            res["eof"] = conn.recv(1) == b""
        except ConnectionResetError:
            res["eof"] = "reset"
        res["got"] = bytes(got)
        done.wait(TIMEOUT)  # our side stays open until duplex has exited

    srv = server(script)
    cli = start_duplex(["connect", "--send-only", "127.0.0.1", srv.port], stdin=data)
    rc = cli.wait()
    done.set()
    res = srv.join()
    assert rc == 0, cli.err
    assert res["got"] == data
    assert cli.out == b""


def test_send_only_listener_quits_at_end_of_stdin(start_listener):
    lst, port = start_listener(["--send-only"], stdin=b"abc\n")
    with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as c:
        assert recv_all(c) == b"abc\n"  # our side stays open
        assert lst.wait() == 0, lst.err


def test_d_and_send_only_exclude_each_other(run_duplex):
    rc, _, err = run_duplex(["connect", "-d", "--send-only", "127.0.0.1", "1"])
    assert rc == 2, err


# -------------------------------------------------------------------- -z --


@pytest.fixture
def open_port():
    """A port that accepts connections (kernel queue) but is never served."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(16)
    yield s.getsockname()[1]
    s.close()


def test_z_open_port(open_port, run_duplex):
    rc, out, err = run_duplex(["connect", "-z", "-v", "127.0.0.1", open_port])
    assert rc == 0, err
    assert f"duplex: 127.0.0.1:{open_port} open" in err
    assert out == b""


def test_z_closed_port(run_duplex):
    port = closed_port()
    rc, out, err = run_duplex(["connect", "-z", "-v", "127.0.0.1", port])
    assert rc == 4, err
    assert f"duplex: 127.0.0.1:{port} closed: Connection refused" in err


def test_z_mixed_ports_and_range(open_port, run_duplex):
    closed = closed_port()
    rc, _, err = run_duplex(["-z", "-v", "127.0.0.1", f"{closed}-{closed}", open_port])
    assert rc == 0, err
    assert f"duplex: 127.0.0.1:{closed} closed: Connection refused" in err
    assert f"duplex: 127.0.0.1:{open_port} open" in err


def test_z_without_v_only_exit_code(open_port, run_duplex):
    rc, out, _ = run_duplex(["-z", "127.0.0.1", open_port])
    assert rc == 0
    assert out == b""


def test_z_range_all_closed(run_duplex):
    p = closed_port(2)
    rc, _, err = run_duplex(["connect", "-z", "-v", "127.0.0.1", f"{p}-{p + 1}"])
    assert rc == 4, err
    assert f"127.0.0.1:{p} closed" in err and f"127.0.0.1:{p + 1} closed" in err


# -------------------------------------------------------------- backends --


@pytest.mark.parametrize("name", ["poll", "epoll"])
def test_backend_flag(name, start_listener, start_duplex):
    lst, port = start_listener(["--backend", name], stdin=b"answer\n")
    _exchange(start_duplex, lst, ["--backend", name, "127.0.0.1", port])
