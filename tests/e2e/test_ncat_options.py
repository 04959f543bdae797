"""ncat's command lines on duplex (issue 12): options that imply others,
time units, the default port (31337) of listen and connect, --max-conns 0,
host names in access lists. Where ncat and duplex both take a command line,
the same line runs against both and what they do is compared (ncat 7.93;
tests needing it skip when it is not installed)."""

import re
import socket
import subprocess
import time

import pytest

from conftest import (TIMEOUT, LISTENING_RE, accept_queue, closed_port, free_port, listeners_on, need,
                      wait_listening)
from servers_util import wait_for
from test_tls import certs, server_args  # noqa: F401  (certs: a fixture)


def connect(port, host="127.0.0.1"):
    s = socket.create_connection((host, port), timeout=TIMEOUT)
    s.settimeout(TIMEOUT)
    return s


def recv_until(sock, pred):
    got = b""
    while not pred(got):
        chunk = sock.recv(4096)
        if not chunk:
            break
        got += chunk
    return got


def server_cmd(tool, duplex, *args):
    """The same server line for ncat (-l ...) and duplex (listen ...)."""
    if tool == "ncat":
        return [need("ncat"), "-l", *args]
    return [duplex, "listen", *args]


# ------------------------------------------- --broker/--chat imply -k --


@pytest.mark.parametrize("tool", ["ncat", "duplex"])
@pytest.mark.parametrize("mode", ["--broker", "--chat"])
def test_broker_and_chat_keep_serving_without_k(spawn, duplex, tool, mode):
    """`-l --broker PORT` without -k: the server outlives its first client,
    then relays between the next two (ncat and duplex alike)."""
    port = free_port()
    # ncat says when a client leaves at -vv, duplex at -v
    p = spawn(server_cmd(tool, duplex, "-vv" if tool == "ncat" else "-v", mode, "127.0.0.1",
                         str(port)), stdin=subprocess.PIPE, name=f"{tool} {mode}")
    wait_listening(port, proc=p)

    def arrived(sock):
        name = re.escape(f"127.0.0.1:{sock.getsockname()[1]}")
        p.wait_err(f"Connection from {name}" if tool == "ncat" else f"{name}: connected")

    first = connect(port)
    arrived(first)
    first.close()
    p.wait_err("Closing connection" if tool == "ncat" else r": closed")
    a = connect(port)
    arrived(a)
    b = connect(port)
    arrived(b)
    try:
        a.sendall(b"hello from a\n")
        got = recv_until(b, lambda g: b"hello from a" in g)
        assert b"hello from a" in got, got
        assert p.poll() is None, p.err
    finally:
        a.close()
        b.close()


# ---------------------------------------- --ssl-verify/--ssl-trustfile: --ssl --


@pytest.mark.parametrize("tool", ["ncat", "duplex"])
@pytest.mark.parametrize("flags", [["--ssl-verify"], []], ids=["verify", "trustfile"])
def test_ssl_trustfile_and_verify_imply_ssl_on_connect(spawn, duplex, certs, tool, flags):  # noqa: F811
    """`--ssl-verify --ssl-trustfile CA localhost PORT` (no --ssl): both
    clients speak TLS to a TLS server and check its certificate."""
    port = free_port()
    srv = spawn([duplex, "listen", "--ssl", *server_args(certs), "127.0.0.1", str(port)],
                stdin=subprocess.PIPE, name="duplex listen --ssl")
    wait_listening(port, proc=srv)
    args = [*flags, "--ssl-trustfile", certs["ca.pem"], "localhost", str(port)]
    cmd = [need("ncat"), *args] if tool == "ncat" else [duplex, "connect", *args]
    # stdin stays open: ncat ends a TLS session as soon as its input ends
    c = spawn(cmd, stdin=subprocess.PIPE, name=tool)
    c.stdin.write(b"hi\n")
    c.stdin.flush()
    srv.wait_out(lambda o: o == b"hi\n")
    srv.stdin.write(b"over tls\n")
    srv.stdin.flush()
    c.wait_out(lambda o: o == b"over tls\n")


def test_ssl_verify_implies_ssl_on_listen_and_requires_client_certificates(spawn, duplex,
                                                                          run_duplex, certs):  # noqa: F811
    """listen --ssl-verify (no --ssl) keeps duplex's meaning: TLS, and a
    client certificate signed by a CA of --ssl-trustfile is required."""
    rc, _, err = run_duplex(["listen", "--ssl-verify", *server_args(certs), "127.0.0.1", "0"])
    assert rc == 2 and "listen --ssl-verify needs --ssl-trustfile FILE" in err, err
    verify = ["--ssl-verify", "--ssl-trustfile", certs["ca.pem"], *server_args(certs)]
    srv = spawn([duplex, "listen", "-v", *verify, "127.0.0.1", "0"], stdin=b"welcome")
    port = int(srv.wait_err(LISTENING_RE).group(2))
    rc, out, err = run_duplex(["connect", "--ssl-trustfile", certs["ca.pem"], "localhost",
                               str(port)], stdin=subprocess.PIPE)
    assert rc == 4 and "certificate required" in err, err
    assert srv.wait(TIMEOUT) == 1
    srv = spawn([duplex, "listen", "-v", *verify, "127.0.0.1", "0"], stdin=b"welcome")
    port = int(srv.wait_err(LISTENING_RE).group(2))
    rc, out, err = run_duplex(["connect", "--ssl-trustfile", certs["ca.pem"],
                               *server_args(certs, "client"), "localhost", str(port)],
                              stdin=b"it's me")
    assert rc == 0 and out == b"welcome", err
    assert srv.wait(TIMEOUT) == 0 and srv.out == b"it's me"
    assert "subject CN=duplex test client, issuer CN=duplex test CA, verified" in srv.err


# ------------------------------------------------------ time units (ncat's) --


@pytest.mark.parametrize("flag", ["-w", "-q", "-i", "--idle-timeout", "--timeout"])
@pytest.mark.parametrize("value, ok", [
    # each unit's upper bound, and just above it: the unit's factor is applied
    ("31536000", True), ("31536001", False),
    ("31536000s", True), ("31536001S", False),
    ("31536000000ms", True), ("31536000001ms", False),
    ("525600m", True), ("525601m", False),
    ("8760h", True), ("8761H", False),
    ("0.5ms", True), ("1.5s", True), ("0ms", True),
])
def test_time_units_each_checked_against_the_year(run_duplex, flag, value, ok):
    """Every time option takes ncat's units (ms, s, m, h; a plain number is
    seconds) and stays within a year: 8760h passes, 8761h does not."""
    rc, out, err = run_duplex(["connect", flag, value, "127.0.0.1", str(closed_port())])
    if ok:
        assert rc == 4 and "Connection refused" in err, err  # parsed, then connected
    else:
        assert rc == 2, err
        assert f"duplex: {flag} too large: {value} (at most 31536000 seconds)" in err, err
    assert out == b""


@pytest.mark.parametrize("flag", ["-w", "-q", "-i", "--idle-timeout"])
@pytest.mark.parametrize("value", ["1d", "5x", "3 s", "ms", "2mm", "1.5e", "s3", "-1s", "inf", "5 "])
def test_bad_time_units_refused(run_duplex, flag, value):
    rc, out, err = run_duplex(["connect", flag, value, "127.0.0.1", str(closed_port())])
    assert rc == 2, err
    assert (f"duplex: invalid {flag} value '{value}': expected seconds (5, 0.5) or a time "
            "with a unit: 3000ms, 3s, 2m, 1h") in err, err
    assert out == b""


def test_bad_time_unit_refused_by_ncat_too():
    """ncat refuses the same with its own status 2 (the comparison)."""
    r = subprocess.run([need("ncat"), "-i", "1d", "127.0.0.1", str(closed_port())],
                       stdin=subprocess.DEVNULL, capture_output=True, timeout=TIMEOUT)
    assert r.returncode == 2 and 'Invalid -i timeout "1d"' in r.stderr.decode(), r


@pytest.mark.parametrize("value", ["2000ms", "2s"])
def test_bench_duration_takes_units(run_duplex, value):
    rc, _, err = run_duplex(["bench", "echo", "127.0.0.1", "1", "-d", value, "-w", "1d"])
    assert rc == 2 and "invalid warm-up '1d'" in err, err
    rc, _, err = run_duplex(["bench", "echo", "127.0.0.1", "1", "-d", "1000001s"])
    assert rc == 2 and "invalid duration '1000001s'" in err, err


@pytest.mark.parametrize("tool", ["ncat", "duplex"])
def test_idle_timeout_500ms_ends_a_connect_session(spawn, duplex, tool):
    """`-i 500ms HOST PORT` against a silent server: both end the session
    after half a second (not 500 s); ncat exits 1, duplex 5 (timed out)."""
    with socket.socket() as srv:
        srv.bind(("127.0.0.1", 0))
        srv.listen()
        port = str(srv.getsockname()[1])
        cmd = [need("ncat")] if tool == "ncat" else [duplex, "connect"]
        t0 = time.monotonic()
        p = spawn([*cmd, "-i", "500ms", "127.0.0.1", port], stdin=subprocess.PIPE, name=tool)
        rc = p.wait(TIMEOUT)
        took = time.monotonic() - t0
    assert 0.45 <= took < 5, took
    if tool == "ncat":
        assert rc == 1 and "Idle timeout expired (500 ms)" in p.err, p.err
    else:
        assert rc == 5, p.err
        assert f"duplex: 127.0.0.1:{port}: no traffic for 0.5 s, closing" in p.err, p.err


def test_idle_timeout_short_form_on_listen(spawn, duplex):
    """listen -i 300ms: the one client's session ends idle, exit 5; with -k
    the client is closed and the server goes on."""
    p = spawn([duplex, "listen", "-i", "300ms", "127.0.0.1", "0"], stdin=subprocess.PIPE)
    port = int(p.wait_err(LISTENING_RE).group(2))
    c = connect(port)
    assert p.wait(TIMEOUT) == 5, p.err
    assert "no traffic for 0.3 s, closing" in p.err
    c.close()
    p = spawn([duplex, "listen", "-k", "-v", "-i", "0.3s", "127.0.0.1", "0"], stdin=subprocess.PIPE)
    port = int(p.wait_err(LISTENING_RE).group(2))
    c = connect(port)
    assert c.recv(10) == b""
    p.wait_err(r"closed: idle for 0\.3 s")
    assert p.poll() is None
    c.close()


# ------------------------------------------- listen with no port: 31337 --


def port_31337_free():
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", 31337))
        except OSError:
            return False
    return not listeners_on(31337)


@pytest.mark.parametrize("tool", ["ncat", "duplex"])
@pytest.mark.parametrize("args", [["-l"], ["-l", "127.0.0.1"]], ids=["no-args", "address-only"])
def test_listen_without_port_takes_31337(spawn, duplex, tool, args):
    """The same line, `-l` or `-l 127.0.0.1`, on ncat and duplex: both listen
    on port 31337 and serve a client there; duplex says so on its
    'listening on' line even without -v."""
    if not port_31337_free():
        pytest.skip("port 31337 is in use here")
    cmd = [need("ncat")] if tool == "ncat" else [duplex]
    p = spawn([*cmd, *args], stdin=subprocess.PIPE, name=f"{tool} {' '.join(args)}")
    if tool == "duplex":
        where = "127.0.0.1" if len(args) > 1 else "[::]"
        p.wait_err(f"duplex: listening on {re.escape(where)}:31337$")
    wait_listening(31337, proc=p)
    c = connect(31337)
    c.sendall(b"to the default port\n")
    p.wait_out(lambda o: o == b"to the default port\n")
    c.close()
    p.close_stdin()  # duplex waits for both sides to end
    assert p.wait(TIMEOUT) == 0, p.err


def test_listen_subcommand_without_port_and_other_errors(spawn, duplex, run_duplex):
    if not port_31337_free():
        pytest.skip("port 31337 is in use here")
    p = spawn([duplex, "listen", "-u", "::1"], name="duplex listen -u ::1")
    p.wait_err(r"duplex: listening on \[::1\]:31337 \(udp\)")
    p.kill()
    # what is neither a port nor an address stays a clear error
    for arg in ("70000", "127.1"):
        rc, out, err = run_duplex(["listen", arg])
        assert rc == 2 and f"duplex: invalid port '{arg}'" in err, err
    rc, _, err = run_duplex(["listen", "127.0.0.1", "1", "2"])
    assert rc == 2 and "too many arguments for listen" in err, err


# ------------------------------------------------------- --max-conns 0 --


def test_max_conns_0_refused_where_ncat_turns_every_client_away(spawn, run_duplex):
    """ncat 7.93 `-lk --max-conns 0`: each client is accepted, then closed
    with nothing sent ("connection limit reached (0)"). A server that serves
    nobody is refused by duplex, with the reason and what to use instead."""
    port = free_port()
    n = spawn([need("ncat"), "-lk", "-v", "--max-conns", "0", "127.0.0.1", str(port)],
              stdin=subprocess.PIPE, name="ncat -lk --max-conns 0")
    wait_listening(port, proc=n)
    for _ in range(2):
        c = connect(port)
        try:
            assert c.recv(10) == b""
        except ConnectionResetError:
            pass
        c.close()
    n.wait_err(r"New connection denied: connection limit reached \(0\)")
    assert n.poll() is None
    for flag in ("--max-conns", "-m"):
        rc, out, err = run_duplex(["listen", "-k", flag, "0", "127.0.0.1", "0"])
        assert rc == 2, err
        assert ("duplex: --max-conns 0 would turn every client away (ncat accepts and closes "
                "each one): give 1 or more, or leave it out for no limit") in err, err
        assert "listening" not in err


# ------------------------------------------------- host names in access lists --


def client_from(port, source):
    s = socket.socket()
    s.settimeout(TIMEOUT)
    s.bind((source, 0))
    s.connect(("127.0.0.1", port))
    return s


def localhost_addresses():
    return sorted({ai[4][0] for ai in socket.getaddrinfo("localhost", None, type=socket.SOCK_STREAM)})


def served(p, tool, s, words):
    """s's line reaches the server's stdout (ncat and duplex print it)."""
    s.sendall(words)
    p.wait_out(lambda o: words in o)


def refused(p, s):
    """s is closed at once with nothing served; duplex's -v line says why."""
    name = "%s:%d" % s.getsockname()[:2]
    try:
        s.sendall(b"let me in\n")
        assert s.recv(10) == b""
    except ConnectionResetError:
        pass
    p.wait_err(re.escape(name) + r": refused: not allowed by --allow/--deny")


@pytest.mark.parametrize("tool", ["ncat", "duplex"])
@pytest.mark.parametrize("flag", ["--allow", "--deny"])
def test_acl_host_name_localhost(spawn, duplex, tool, flag):
    """The same line on both: `-l -k -v --allow localhost 127.0.0.1 PORT`
    serves a client from 127.0.0.1 (localhost here) and turns away one from
    127.0.0.2; --deny localhost the other way round."""
    assert "127.0.0.1" in localhost_addresses()
    port = free_port()
    cmd = [need("ncat")] if tool == "ncat" else [duplex]
    p = spawn([*cmd, "-l", "-k", "-v", flag, "localhost", "127.0.0.1", str(port)],
              stdin=subprocess.PIPE, name=f"{tool} {flag} localhost")
    wait_listening(port, proc=p)
    good, bad = ("127.0.0.1", "127.0.0.2") if flag == "--allow" else ("127.0.0.2", "127.0.0.1")
    b = client_from(port, bad)
    if tool == "duplex":
        refused(p, b)
    else:
        try:
            b.sendall(b"let me in\n")
            assert b.recv(10) == b""
        except ConnectionResetError:
            pass
    b.close()
    g = client_from(port, good)
    served(p, tool, g, b"from the right host\n")
    if tool == "duplex":
        p.wait_err(re.escape(f"{good}:{g.getsockname()[1]}: connected"))
    g.close()
    assert b"let me in" not in p.out


def test_acl_file_with_host_names_several_a_line_and_comments(start_listener, tmp_path):
    f = tmp_path / "allow.txt"
    f.write_text("# who may come in\n10.0.0.0/8 localhost\t::2 # and not 127.0.0.2\n\n")
    proc, port = start_listener(["-k", "-v", "--echo", "--allowfile", str(f)])
    g = client_from(port, "127.0.0.1")
    g.sendall(b"echo\n")
    assert recv_until(g, lambda got: got == b"echo\n") == b"echo\n"
    b = client_from(port, "127.0.0.2")
    refused(proc, b)
    proc.wait_err(re.escape(f"127.0.0.1:{g.getsockname()[1]}: connected"))


@pytest.mark.parametrize("args, words", [
    (["--allow", "no-such-host.invalid"], "duplex: --allow: resolve no-such-host.invalid: "),
    (["--deny", "localhost", "-n"], "duplex: --deny: resolve localhost: "),
])
def test_acl_host_name_not_resolved_is_exit_3(run_duplex, args, words):
    """A name that does not resolve (or any name with -n, wherever -n is) is
    a resolve failure: exit 3, the name in the message, nothing listens."""
    rc, out, err = run_duplex(["listen", "-k", *args, "127.0.0.1", "0"], timeout=30)
    assert rc == 3, err
    assert words in err, err
    assert "listening" not in err


def test_acl_file_name_not_resolved_names_file_and_line(run_duplex, tmp_path):
    f = tmp_path / "deny.txt"
    f.write_text("127.0.0.9 # fine\n\n10.1.0.0/16 no-such-host.invalid\n")
    rc, _, err = run_duplex(["listen", "-k", "--denyfile", str(f), "127.0.0.1", "0"], timeout=30)
    assert rc == 3, err
    assert f"duplex: --denyfile {f}:3: resolve no-such-host.invalid: " in err, err


# ------------------------------------- ncat's spellings and its other options --


def run_tool(spawn, tool, duplex, args, stdin=subprocess.DEVNULL):
    """Run `ncat ARGS` or `duplex ARGS` (netcat style, the same words) to its
    end: (exit status, stdout, stderr)."""
    cmd = [need("ncat"), *args] if tool == "ncat" else [duplex, *args]
    p = spawn(cmd, stdin=stdin, name=f"{tool} {' '.join(args)}")
    rc = p.wait(TIMEOUT)
    return rc, p.out, p.err


def receiver(conn, result):
    """A Server script: everything the client sends, with arrival times,
    and the client's address."""
    result["peer"] = conn.getpeername()
    result["chunks"] = []
    while True:
        data = conn.recv(65536)
        if not data:
            break
        result["chunks"].append((time.monotonic(), data))
    result["data"] = b"".join(d for _, d in result["chunks"])
    conn.shutdown(socket.SHUT_WR)  # the client's session ends


@pytest.mark.parametrize("tool", ["ncat", "duplex"])
def test_long_aliases_source_port_wait_nodns(spawn, duplex, server, tool):
    """`--source-port P --wait 2 --nodns 127.0.0.1 PORT`: ncat's long
    spellings of -p, -w and -n; the peer sees source port P and the bytes."""
    srv = server(receiver)
    sport = free_port()
    rc, _, err = run_tool(spawn, tool, duplex, ["--source-port", str(sport), "--wait", "2",
                                                 "--nodns", "127.0.0.1", str(srv.port)],
                          stdin=b"via aliases\n")
    result = srv.join()
    assert rc == 0, err
    assert result["peer"][1] == sport
    assert result["data"] == b"via aliases\n"


@pytest.mark.parametrize("tool", ["ncat", "duplex"])
def test_nodns_refuses_a_name(spawn, duplex, tool):
    """`--nodns localhost PORT`: no lookup, so no connection; ncat exits 2,
    duplex 3 (its status for a name not resolved)."""
    rc, _, err = run_tool(spawn, tool, duplex, ["--nodns", "localhost", str(closed_port())])
    assert rc == (2 if tool == "ncat" else 3), err
    assert "localhost" in err


@pytest.mark.parametrize("tool", ["ncat", "duplex"])
def test_unixsock_alias(spawn, duplex, server, tmp_path, tool):
    """`--unixsock PATH` is -U PATH for both."""
    path = tmp_path / "s.sock"
    srv = server(receiver, path=path)
    rc, _, err = run_tool(spawn, tool, duplex, ["--unixsock", str(path)], stdin=b"unix\n")
    assert rc == 0, err
    assert srv.join()["data"] == b"unix\n"


@pytest.mark.parametrize("args,words", [
    (["--sctp", "127.0.0.1", "9"], ["not SCTP", "socat", "SCTP-CONNECT"]),
    (["--vsock", "2", "1234"], ["AF_VSOCK", "socat", "VSOCK-CONNECT"]),
    (["-g", "10.0.0.1", "127.0.0.1", "9"], ["-g", "source routing", "drops", "-x"]),
    (["-G", "4", "127.0.0.1", "9"], ["-G", "source routing", "drops"]),
    (["--lua-exec", "s.lua", "127.0.0.1", "9"], ["no built-in Lua", '--exec "lua s.lua"']),
    (["-l", "--lua-exec", "s.lua", "0"], ["no built-in Lua", '--exec "lua s.lua"']),
    (["-x", "/tmp/dump.hex", "127.0.0.1", "9"], ["not a file", "--hex-dump /tmp/dump.hex"]),
    (["-x", "out/dump", "127.0.0.1", "9"], ["not a file", "--hex-dump out/dump"]),
    (["-d", "1", "127.0.0.1", "9"], ["-d takes no value", "'1' would be taken as the host",
                                     "--delay 1"]),
    (["-vd", "500ms", "127.0.0.1", "9"], ["'500ms' would be taken as the host",
                                          "--delay 500ms"]),
    (["-l", "-d", "2s", "9"], ["'2s' would be taken as the host", "--delay 2s"]),
    (["--delay", "1", "-d", "127.0.0.1", "9"], ["--delay", "-d/--recv-only"]),
    (["-l", "-k", "--delay", "1", "0"], ["--delay and -t shape one connection"]),
    (["--delay", "fast", "127.0.0.1", "9"], ["invalid --delay value 'fast'"]),
])
def test_ncat_options_refused_with_reason_and_alternative(run_duplex, args, words):
    rc, _, err = run_duplex(args)
    assert rc == 2, err
    for w in words:
        assert w in err, (w, err)


def test_d_without_a_time_is_still_recv_only(run_duplex, server):
    """-d before a host (or a listen port) keeps OpenBSD nc's meaning: stdin
    is not read."""
    def script(conn, result):
        conn.sendall(b"bye\n")
        conn.shutdown(socket.SHUT_WR)  # -d: duplex ends when the peer does
        result["data"] = recv_until(conn, lambda g: False)

    srv = server(script)
    rc, out, err = run_duplex(["-d", "127.0.0.1", str(srv.port)], stdin=b"not read\n")
    assert rc == 0 and out == b"bye\n", err
    assert srv.join()["data"] == b""


@pytest.mark.parametrize("tool", ["ncat", "duplex"])
def test_delay_paces_lines(spawn, duplex, server, tool):
    """`--delay 300ms HOST PORT` with three lines from a pipe: both deliver
    the same bytes. duplex sends a line at a time, the first at once and
    each next one 300 ms later; ncat 7.93 waits 300 ms before sending each
    read of stdin (here one read: the three lines together, 300 ms late)."""
    srv = server(receiver)
    start = time.monotonic()
    rc, _, err = run_tool(spawn, tool, duplex, ["--delay", "300ms", "127.0.0.1", str(srv.port)],
                          stdin=b"one\ntwo\nthree\n")
    result = srv.join()
    assert rc == 0, err
    assert result["data"] == b"one\ntwo\nthree\n"
    chunks = result["chunks"]
    if tool == "ncat":
        assert chunks[0][0] - start >= 0.29
        return
    assert [d for _, d in chunks] == [b"one\n", b"two\n", b"three\n"]
    gaps = [b[0] - a[0] for a, b in zip(chunks, chunks[1:])]
    assert all(g >= 0.29 for g in gaps), gaps


def test_delay_with_crlf_and_a_last_line_without_lf(run_duplex, server):
    """--delay with -C: each line converted; an unterminated last line is
    sent at the end of input."""
    srv = server(receiver)
    rc, _, err = run_duplex(["-C", "--delay", "50ms", "127.0.0.1", str(srv.port)],
                            stdin=b"a\nb\nc")
    assert rc == 0, err
    assert srv.join()["data"] == b"a\r\nb\r\nc"


# --------------------------------------------------------------- --proxy-dns --


def recv_exact(conn, n):
    got = b""
    while len(got) < n:
        chunk = conn.recv(n - len(got))
        assert chunk, f"proxy client closed after {got!r}"
        got += chunk
    return got


def fake_proxy(kind):
    """A Server script: one proxy handshake of `kind`, the request's target
    part kept in result["target"], then success and the connection closed."""

    def script(conn, result):
        if kind == "http":
            head = recv_until(conn, lambda g: b"\r\n\r\n" in g)
            result["target"] = head.split(b"\r\n")[0].rsplit(b" ", 1)[0]  # no HTTP version
            conn.sendall(b"HTTP/1.0 200 OK\r\n\r\n")
        elif kind == "socks5":
            n = recv_exact(conn, 2)[1]
            recv_exact(conn, n)
            conn.sendall(b"\x05\x00")
            head = recv_exact(conn, 4)
            if head[3] == 1:
                addr = recv_exact(conn, 4)
            elif head[3] == 4:
                addr = recv_exact(conn, 16)
            else:
                n = recv_exact(conn, 1)
                addr = n + recv_exact(conn, n[0])
            result["target"] = head + addr + recv_exact(conn, 2)
            conn.sendall(b"\x05\x00\x00\x01\0\0\0\0\0\0")
        else:  # socks4(a): the address, the user id, a name after 0.0.0.x
            req = recv_until(conn, lambda g: len(g) >= 9 and g.count(b"\0", 8) >=
                             (2 if g[4:7] == b"\0\0\0" else 1))
            result["target"] = req
            conn.sendall(b"\x00\x5a" + b"\0" * 6)
        conn.close()

    return script


@pytest.mark.parametrize("kind", ["socks5", "socks4", "http"])
@pytest.mark.parametrize("where", ["local", "remote", "both"])
def test_proxy_dns_sends_what_ncat_sends(spawn, duplex, server, kind, where):
    """`--proxy P --proxy-type KIND --proxy-dns WHERE localhost 80`: the same
    request reaches the proxy from ncat and from duplex: local and both send
    127.0.0.1 (SOCKS4 a plain address, SOCKS5 address type 1, CONNECT
    127.0.0.1:80), remote the name (SOCKS4a, SOCKS5 domain, CONNECT
    localhost:80)."""
    seen = {}
    for tool in ("ncat", "duplex"):
        srv = server(fake_proxy(kind))
        rc, _, err = run_tool(spawn, tool, duplex, ["--proxy", f"127.0.0.1:{srv.port}",
                                                     "--proxy-type", kind, "--proxy-dns", where,
                                                     "localhost", "80"])
        assert rc == 0, (tool, err)
        seen[tool] = srv.join()["target"]
    assert seen["ncat"] == seen["duplex"], seen
    assert (b"localhost" in seen["duplex"]) == (where == "remote"), seen


@pytest.mark.parametrize("tool", ["ncat", "duplex"])
def test_proxy_dns_both_passes_a_name_it_cannot_resolve(spawn, duplex, server, tool):
    """--proxy-dns both: a name not resolved here goes to the proxy (SOCKS5
    domain); --proxy-dns local stops instead (ncat exit 1, duplex 3)."""
    srv = server(fake_proxy("socks5"))
    args = ["--proxy", f"127.0.0.1:{srv.port}", "--proxy-type", "socks5", "--proxy-dns"]
    rc, _, err = run_tool(spawn, tool, duplex, [*args, "both", "nosuch.invalid", "80"])
    assert rc == 0, err
    assert srv.join()["target"] == b"\x05\x01\x00\x03\x0enosuch.invalid\x00\x50"
    srv = server(fake_proxy("socks5"))  # ncat asks it after the greeting
    rc, _, err = run_tool(spawn, tool, duplex, [*args[:1], f"127.0.0.1:{srv.port}", *args[2:],
                                                 "local", "nosuch.invalid", "80"])
    assert rc == (1 if tool == "ncat" else 3), err
    assert "nosuch.invalid" in err


@pytest.mark.parametrize("tool", ["ncat", "duplex"])
def test_proxy_dns_none_refuses_a_name(spawn, duplex, server, tool):
    srv = server(None, accept=False)
    rc, _, err = run_tool(spawn, tool, duplex, ["--proxy", f"127.0.0.1:{srv.port}",
                                                 "--proxy-dns", "none", "localhost", "80"])
    assert rc == (1 if tool == "ncat" else 2), err
    if tool == "duplex":
        assert "--proxy-dns none" in err and "numeric address" in err and "remote" in err


@pytest.mark.parametrize("args,words", [
    (["--proxy-dns", "nowhere", "-x", "127.0.0.1", "h", "80"], ["expected local, remote"]),
    (["--proxy-dns", "local", "127.0.0.1", "80"], ["needs -x/--proxy"]),
    (["--ssl-ciphers", "HIGH", "127.0.0.1", "80"], ["need --ssl"]),
])
def test_proxy_dns_and_ssl_ciphers_usage(run_duplex, args, words):
    rc, _, err = run_duplex(args)
    assert rc == 2, err
    for w in words:
        assert w in err, (w, err)


# ------------------------------------------------------------- --ssl-ciphers --


def tls12_peer(ciphers=None):
    import ssl
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    if ciphers:
        ctx.set_ciphers(ciphers)
    return ctx


@pytest.mark.parametrize("tool", ["ncat", "duplex"])
def test_ssl_ciphers_on_a_server(spawn, duplex, certs, tool):  # noqa: F811
    """`-l --ssl --ssl-cert C --ssl-key K --ssl-ciphers ECDHE-ECDSA-AES128-GCM-SHA256
    PORT`: a TLS 1.2 client offering everything gets that cipher; one that
    offers only AES-256 is refused (ncat and duplex alike)."""
    cipher = "ECDHE-ECDSA-AES128-GCM-SHA256"
    port = free_port()
    args = ["--ssl", *server_args(certs), "--ssl-ciphers", cipher, "-k", "127.0.0.1", str(port)]
    p = spawn(server_cmd(tool, duplex, *args), stdin=subprocess.PIPE, name=f"{tool} -l --ssl")
    wait_listening(port, proc=p)
    with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as raw:
        with tls12_peer().wrap_socket(raw) as t:
            assert t.cipher()[0] == cipher
    import ssl
    with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as raw:
        with pytest.raises((ssl.SSLError, ConnectionError)):
            tls12_peer("ECDHE-ECDSA-AES256-GCM-SHA384").wrap_socket(raw)


@pytest.mark.parametrize("tool", ["ncat", "duplex"])
def test_ssl_ciphers_on_a_client(spawn, duplex, server, certs, tool):  # noqa: F811
    """`--ssl --ssl-ciphers ECDHE-ECDSA-AES256-GCM-SHA384 localhost PORT`
    against a TLS 1.2 server that takes anything: that cipher is used."""
    import ssl
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(certs["server.pem"], certs["server.key"])
    ctx.maximum_version = ssl.TLSVersion.TLSv1_2

    def script(conn, result):
        with ctx.wrap_socket(conn, server_side=True) as t:
            result["cipher"] = t.cipher()[0]
            t.sendall(b"hello\n")

    srv = server(script)
    args = ["--ssl", "--ssl-ciphers", "ECDHE-ECDSA-AES256-GCM-SHA384", "127.0.0.1",
            str(srv.port)]
    args = args[:1] + (["--ssl-no-verify"] if tool == "duplex" else []) + args[1:]
    p = spawn([need("ncat"), *args] if tool == "ncat" else [duplex, *args],
              stdin=subprocess.PIPE, name=tool)
    # ncat 7.93 also prints "setting ciphers: LIST" on stdout
    p.wait_out(lambda o: o.startswith(b"hello\n"))
    assert srv.join()["cipher"] == "ECDHE-ECDSA-AES256-GCM-SHA384"


@pytest.mark.parametrize("tool", ["ncat", "duplex"])
def test_ssl_ciphers_no_match_refused(spawn, duplex, tool):
    rc, _, err = run_tool(spawn, tool, duplex, ["--ssl", "--ssl-ciphers", "NOSUCHCIPHER",
                                                 "127.0.0.1", str(closed_port())])
    assert rc == 2, err
    assert "no cipher match" in err


# -------------------------------------------------------------- -t/--telnet --

IAC, DONT, DO, WONT, WILL, SB, SE = 255, 254, 253, 252, 251, 250, 240
TELNET_FIRST = bytes([IAC, DO, 1, IAC, WILL, 3]) + b"hello\n"
TELNET_REST = [b"mid" + bytes([IAC, DONT, 24]) + b"dle\n",
               bytes([IAC, WONT, 5, IAC, IAC]) + b"x\n",
               bytes([IAC, SB, 24, 1, IAC, IAC, 7, IAC, SE]) + b"sb" + bytes([IAC, 241]) + b"\n"]
TELNET_STRIPPED = b"hello\nmiddle\n\xffx\nsb\n"


def telnet_peer(conn, result):
    """A Telnet server: DO ECHO and WILL SGA first, then (once they are
    answered) a refusal in the middle of a line, an escaped 255, a
    subnegotiation and a NOP; what the client sends back is kept."""
    conn.sendall(TELNET_FIRST)
    result["answers"] = recv_exact(conn, 6)
    for chunk in TELNET_REST:
        conn.sendall(chunk)
    conn.shutdown(socket.SHUT_WR)
    result["rest"] = recv_until(conn, lambda g: False)


@pytest.mark.parametrize("tool", ["ncat", "duplex"])
def test_telnet_refuses_options_like_ncat(spawn, duplex, server, tool):
    """`-t 127.0.0.1 PORT` against a scripted Telnet server: ncat and duplex
    answer DO ECHO with WONT ECHO and WILL SGA with DONT SGA, the same bytes.
    duplex keeps the Telnet commands out of stdout (IAC IAC is a 255) and
    answers nothing else (a DONT or WONT needs no answer when every option
    is off); ncat 7.93 writes the stream to stdout unchanged."""
    srv = server(telnet_peer)
    args = ["-t", "127.0.0.1", str(srv.port)]
    p = spawn([need("ncat"), *args] if tool == "ncat" else [duplex, *args],
              stdin=subprocess.PIPE, name=tool)
    raw = TELNET_FIRST + b"".join(TELNET_REST)
    want = raw if tool == "ncat" else TELNET_STRIPPED
    p.wait_out(lambda o: len(o) >= len(want))
    p.close_stdin()
    assert p.wait(TIMEOUT) == 0, p.err
    result = srv.join()
    assert result["answers"] == bytes([IAC, WONT, 1, IAC, DONT, 3])
    assert p.out == want
    if tool == "duplex":
        assert result["rest"] == b""


def test_telnet_command_split_between_reads(spawn, duplex, server):
    """A command cut between two reads is still recognised (ncat would pass
    the IAC to stdout and answer nothing)."""
    def script(conn, result):
        conn.sendall(b"a" + bytes([IAC]))
        # the client has read the first part when its stdout shows "a"
        result["first_seen"] = first_seen.wait(TIMEOUT)
        conn.sendall(bytes([DO, 31]) + b"b\n")
        result["answers"] = recv_exact(conn, 3)
        conn.shutdown(socket.SHUT_WR)

    import threading
    first_seen = threading.Event()
    srv = server(script)
    p = spawn([duplex, "-t", "127.0.0.1", str(srv.port)], stdin=subprocess.PIPE)
    p.wait_out(lambda o: o == b"a")
    first_seen.set()
    p.wait_out(lambda o: o == b"ab\n")
    p.close_stdin()
    assert p.wait(TIMEOUT) == 0, p.err
    assert srv.join()["answers"] == bytes([IAC, WONT, 31])


# ----------------------------------------- -C in server modes, broker -d --


@pytest.mark.parametrize("tool", ["ncat", "duplex"])
@pytest.mark.parametrize("mode", ["-k", "--broker", "--chat"])
def test_crlf_converts_stdin_to_clients_not_relayed_bytes(spawn, duplex, tool, mode):
    """`-l -C MODE PORT`: what the server's stdin gives reaches a client with
    CRLF line ends; between clients (--broker) bytes stay as sent; the same
    with ncat and duplex."""
    port = free_port()
    p = spawn(server_cmd(tool, duplex, "-C", mode, "127.0.0.1", str(port)), stdin=subprocess.PIPE,
              name=f"{tool} -C {mode}")
    wait_listening(port, proc=p)
    a = connect(port)
    b = connect(port)
    try:
        # both taken off the accept queue (so registered: ncat and duplex add a
        # client in the same step) before input that both must get
        wait_for(lambda: accept_queue(port) == 0, TIMEOUT, f"{tool} to accept both clients")
        p.stdin.write(b"one\ntwo\n")
        p.stdin.flush()
        got = recv_until(b, lambda g: b"two\r\n" in g)
        # chat puts the sender first: ncat "<user0> " once, duplex "[server] " a line
        assert b"one\r\n" in got and b"two\r\n" in got and b"\n\n" not in got, got
        if mode == "--broker":
            a.sendall(b"relayed\n")
            got = recv_until(b, lambda g: b"relayed" in g)
            assert got.endswith(b"relayed\n"), got
    finally:
        a.close()
        b.close()


@pytest.mark.parametrize("args,words", [
    (["-l", "-C", "--exec", "/bin/cat", "0"], ["--exec/--sh-exec", "sed"]),
    (["-l", "-C", "--echo", "0"], ["--echo"]),
    (["-l", "-C", "-k", "--no-stdio", "0"], ["--no-stdio"]),
])
def test_crlf_refused_where_stdin_takes_no_part(run_duplex, args, words):
    rc, _, err = run_duplex(args)
    assert rc == 2, err
    for w in ["-C converts", *words]:
        assert w in err, (w, err)


@pytest.mark.parametrize("tool", ["ncat", "duplex"])
def test_broker_recv_only(spawn, duplex, tool):
    """`-l --broker --recv-only PORT`: ncat 7.93 relays nothing (neither
    stdin nor other clients); duplex does not read stdin and still relays
    between clients (documented)."""
    port = free_port()
    p = spawn(server_cmd(tool, duplex, "--broker", "--recv-only", "127.0.0.1", str(port)),
              stdin=subprocess.PIPE, name=f"{tool} --broker --recv-only")
    wait_listening(port, proc=p)
    a = connect(port)
    b = connect(port)
    try:
        # both accepted, so registered, before a's line (ncat says nothing without -v)
        wait_for(lambda: accept_queue(port) == 0, TIMEOUT, f"{tool} to accept both clients")
        p.stdin.write(b"from stdin\n")
        p.stdin.flush()
        a.sendall(b"from a\n")
        b.settimeout(1.0)
        try:
            got = recv_until(b, lambda g: b"from a\n" in g)
        except socket.timeout:
            got = b""
        assert got == (b"" if tool == "ncat" else b"from a\n"), got
    finally:
        a.close()
        b.close()


# ------------------------------------------ connect with no port: 31337 --


def listener_31337(host):
    """The test's own listener on HOST port 31337, or a skip when taken."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    s = socket.socket(family, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # past the last test's TIME_WAIT
    try:
        s.bind((host, 31337))
    except OSError:
        s.close()
        pytest.skip(f"port 31337 of {host} is in use here")
    s.listen(1)
    s.settimeout(TIMEOUT)
    return s


@pytest.mark.parametrize("tool,args", [
    ("ncat", ["127.0.0.1"]), ("duplex", ["127.0.0.1"]), ("duplex", ["connect", "127.0.0.1"]),
    ("ncat", ["::1"]), ("duplex", ["::1"]), ("duplex", ["connect", "[::1]"]),
    ("ncat", ["-z", "127.0.0.1"]), ("duplex", ["-z", "127.0.0.1"]),
], ids=lambda v: v if isinstance(v, str) else " ".join(v))
def test_connect_without_port_takes_31337(spawn, duplex, tool, args):
    """`HOST` alone (ncat HOST, duplex HOST, duplex connect HOST): both
    connect to port 31337, send stdin there and exit 0; `-z HOST` probes
    31337 and exits 0."""
    host = args[-1].strip("[]")
    srv = listener_31337(host)
    try:
        cmd = [need("ncat")] if tool == "ncat" else [duplex]
        probe = "-z" in args
        p = spawn([*cmd, *args], stdin=subprocess.DEVNULL if probe else b"to 31337\n",
                  name=f"{tool} {' '.join(args)}")
        conn, _ = srv.accept()
        conn.settimeout(TIMEOUT)
        got = b""
        while True:  # to its end: the client closes first (no TIME_WAIT left on 31337)
            chunk = conn.recv(4096)
            if not chunk:
                break
            got += chunk
        conn.close()
        assert p.wait(TIMEOUT) == 0, p.err
        assert got == (b"" if probe else b"to 31337\n")
    finally:
        srv.close()


@pytest.mark.parametrize("tool", ["ncat", "duplex"])
@pytest.mark.parametrize("arg", ["8080", "127.0.0.1:"])
def test_connect_host_missing_or_port_cut_is_refused(spawn, duplex, tool, arg):
    """A number alone is a PORT without its HOST, and `HOST:` has an empty
    port: ncat and duplex both refuse them (exit 2), connecting nowhere;
    duplex says what to write."""
    rc, _, err = run_tool(spawn, tool, duplex, [arg])
    assert rc == 2, err
    if tool == "duplex":
        assert {"8080": "connect needs a HOST before PORT 8080 (duplex connect HOST 8080)",
                "127.0.0.1:": "connect needs a PORT after '127.0.0.1:' (without the colon: "
                              "ncat's port 31337)"}[arg] in err, err


@pytest.mark.parametrize("arg,msg", [
    ("::1:8080", "did you mean [::1]:8080?"),
    ("./x.sock", "a Unix socket? duplex connect -U ./x.sock"),
    ("[::1", "connect needs a PORT after HOST"),
    ("a b", "connect needs a PORT after HOST"),
])
def test_connect_host_alone_that_looks_wrong_stays_an_error(run_duplex, arg, msg):
    """What is no host name or address is not connected to port 31337: the
    old messages, with their hints, exit 2."""
    for args in ([arg], ["connect", arg]):
        rc, _, err = run_duplex(args)
        assert rc == 2 and msg in err, err


@pytest.mark.parametrize("tool", ["ncat", "duplex"])
def test_listen_host_name_alone_takes_31337(spawn, duplex, tool):
    """`-l localhost` (ncat) and `listen localhost`: a host name alone is the
    address, with port 31337."""
    if not port_31337_free():
        pytest.skip("port 31337 is in use here")
    p = spawn(server_cmd(tool, duplex, "-4", "localhost"), stdin=subprocess.PIPE,
              name=f"{tool} -l localhost")
    wait_listening(31337, proc=p)
    s = connect(31337)
    s.sendall(b"hi\n")
    p.wait_out(lambda o: o == b"hi\n")
    s.close()


# ------------------------- the plain options: the same line, the same result --


@pytest.mark.parametrize("tool", ["ncat", "duplex"])
@pytest.mark.parametrize("opts,host,sent,expect", [
    (["-4"], "127.0.0.1", b"v4\n", b"v4\n"),
    (["-6"], "::1", b"v6\n", b"v6\n"),
    (["-s", "127.0.0.1"], "127.0.0.1", b"src\n", b"src\n"),
    (["--source", "127.0.0.1"], "127.0.0.1", b"src\n", b"src\n"),
    (["-n", "-v"], "127.0.0.1", b"verbose\n", b"verbose\n"),
    (["-w", "2"], "127.0.0.1", b"timed\n", b"timed\n"),
    (["-C"], "127.0.0.1", b"a\nb\r\n", b"a\r\nb\r\n"),
    (["--crlf", "--send-only"], "127.0.0.1", b"x\n", b"x\r\n"),
], ids=["-4", "-6", "-s", "--source", "-n -v", "-w", "-C", "--crlf --send-only"])
def test_same_line_same_bytes(spawn, duplex, server, tool, opts, host, sent, expect):
    """`OPTS HOST PORT` with ncat and duplex: the peer gets the same bytes and
    both exit 0."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    srv = server(receiver, host=host, family=family)
    rc, _, err = run_tool(spawn, tool, duplex, [*opts, host, str(srv.port)], stdin=sent)
    assert rc == 0, err
    assert srv.join()["data"] == expect


@pytest.mark.parametrize("tool", ["ncat", "duplex"])
def test_zero_io_same_verdicts(spawn, duplex, server, tool):
    """`-z 127.0.0.1 PORT`: open is 0 for both; closed is 1 for ncat, 4 for
    duplex (its exit status for a connect that failed)."""
    srv = server(None)
    rc, _, err = run_tool(spawn, tool, duplex, ["-z", "127.0.0.1", str(srv.port)])
    assert rc == 0, err
    rc, _, err = run_tool(spawn, tool, duplex, ["-z", "127.0.0.1", str(closed_port())])
    assert rc == (1 if tool == "ncat" else 4), err


@pytest.mark.parametrize("tool", ["ncat", "duplex"])
@pytest.mark.parametrize("flag", ["-h", "--help", "--version"])
def test_help_and_version(spawn, duplex, tool, flag):
    rc, out, err = run_tool(spawn, tool, duplex, [flag])
    assert rc == 0, err
    text = (out + err.encode()).lower()
    if flag == "--version":  # "Ncat: Version 7.93 ...", "duplex 0.1.0"
        assert re.search(rb"(ncat: version|duplex) \d+\.\d+", text), text[:200]
    else:
        assert b"usage" in text, text[:200]
