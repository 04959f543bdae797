"""The programs in examples/ (libduplex's teaching code), built the way a user
builds them and run end to end over loopback against real peers: Python
sockets, socat and the duplex command.

Build: `make install` into a temporary PREFIX, then examples/Makefile with
PKG_CONFIG_PATH pointing there, i.e. only `pkg-config --cflags --libs duplex`
against the installed shared library (what a user of the library does). A
tree whose Makefile installs no duplex.pc falls back to `make examples`."""

import os
import re
import signal
import socket
import subprocess
import threading
import time

import pytest

from conftest import Backlog, closed_port, free_port, need, recv_all, sha, wait_listening

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
MIB = 1024 * 1024


@pytest.fixture(scope="module")
def ex(tmp_path_factory):
    """Directory holding the built examples."""
    tmp = tmp_path_factory.mktemp("examples")
    out = tmp / "bin"
    with open(os.path.join(REPO, "Makefile")) as f:
        makefile = f.read()
    has_pc = "duplex.pc" in makefile
    if has_pc:
        prefix = tmp / "prefix"
        r = subprocess.run(["make", "-s", "install", f"PREFIX={prefix}"], cwd=REPO,
                           capture_output=True, text=True, timeout=600)
        assert r.returncode == 0, r.stderr
        pcdir = next((d for d in (prefix / "lib" / "pkgconfig", prefix / "share" / "pkgconfig")
                      if (d / "duplex.pc").exists()), None)
        assert pcdir, f"make install put no duplex.pc under {prefix}"
        env = dict(os.environ, PKG_CONFIG_PATH=str(pcdir))
        # the installed shared library, found at run time through an rpath
        # (what LD_LIBRARY_PATH or ldconfig would do for a real PREFIX)
        libdir = subprocess.run(["pkg-config", "--variable=libdir", "duplex"], env=env,
                                capture_output=True, text=True, timeout=30).stdout.strip()
        r = subprocess.run(["make", "-C", os.path.join(REPO, "examples"), f"OUT={out}",
                            f"LDFLAGS=-Wl,-rpath,{libdir}"],
                           env=env, capture_output=True, text=True, timeout=300)
        assert r.returncode == 0, r.stdout + r.stderr
        ldd = subprocess.run(["ldd", str(out / "echo")], capture_output=True, text=True,
                             timeout=30).stdout
        soversion = re.search(r"^SOVERSION = (\d+)", makefile, re.M).group(1)
        assert f"libduplex.so.{soversion} => {libdir}/" in ldd, ldd
    else:
        r = subprocess.run(["make", "-s", "examples", f"EXAMPLES_OUT={out}"], cwd=REPO,
                           capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr
    return out


def start_server(spawn, ex, name, *args):
    port = free_port()
    p = spawn([ex / name, "127.0.0.1", port, *args])
    wait_listening(port, proc=p)
    return p, port


def exchange(port, data, results, key):
    """Connect, send data from a thread, shut down the write side, read to
    EOF; store the bytes received in results[key]."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as c:
        def send():
            c.sendall(data)
            c.shutdown(socket.SHUT_WR)
        t = threading.Thread(target=send, daemon=True)
        t.start()
        results[key] = recv_all(c, timeout=30)
        t.join(30)


def stop_cleanly(p):
    """SIGINT ends an example through its self-pipe: exit status 0."""
    p.popen.send_signal(signal.SIGINT)
    assert p.wait(10) == 0, p.err


# ------------------------------------------------------------------- echo --

def test_echo_returns_1mib_to_several_clients_at_once(spawn, ex):
    p, port = start_server(spawn, ex, "echo")
    blobs = [os.urandom(MIB) for _ in range(4)]
    results = {}
    threads = [threading.Thread(target=exchange, args=(port, b, results, i)) for i, b in
               enumerate(blobs)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    for i, b in enumerate(blobs):
        assert sha(results.get(i, b"")) == sha(b), f"client {i}: {len(results.get(i, b''))} bytes"
    stop_cleanly(p)


def test_echo_half_close_with_socat_and_duplex(spawn, ex, duplex, tmp_path):
    """Peers that shut down their write side at end of input get everything
    back, then end of input: they exit by themselves."""
    need("socat")
    p, port = start_server(spawn, ex, "echo")
    data = os.urandom(300 * 1024)
    s = spawn(["socat", "-t", "30", "-", f"TCP:127.0.0.1:{port}"], stdin=data)
    d = spawn([duplex, "127.0.0.1", port], stdin=data)
    assert s.wait(30) == 0, s.err
    assert d.wait(30) == 0, d.err
    assert sha(s.out) == sha(data)
    assert sha(d.out) == sha(data)
    stop_cleanly(p)


def test_echo_keeps_reading_after_a_partial_answer(ex, spawn):
    """Half-close the other way round: the answer so far arrives while the
    client has not shut down; the server does not close first."""
    p, port = start_server(spawn, ex, "echo")
    with socket.create_connection(("127.0.0.1", port), timeout=10) as c:
        c.sendall(b"ping\n")
        assert c.recv(5) == b"ping\n"
        c.shutdown(socket.SHUT_WR)
        assert recv_all(c) == b""
    stop_cleanly(p)


def server_rx_queue(port):
    """The most bytes waiting to be read on an established TCP socket bound to
    local port `port` (/proc/net/tcp{,6}): what a server has not read yet."""
    most = 0
    for name in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(name) as f:
            next(f)
            for line in f:
                parts = line.split()
                if int(parts[1].rsplit(":", 1)[1], 16) == port and parts[3] == "01":
                    most = max(most, int(parts[4].split(":")[1], 16))
    return most


def test_echo_pauses_a_client_that_does_not_read(spawn, ex):
    """Backpressure: a client that sends 64 MiB before reading anything gets
    stuck (the server stops reading: its receive queue fills) instead of
    being buffered without bound or losing bytes; once it reads, every byte
    comes back."""
    p, port = start_server(spawn, ex, "echo")
    data = os.urandom(64 * MIB)  # far more than the kernel buffers in between
    with socket.socket() as c:
        for opt in (socket.SO_SNDBUF, socket.SO_RCVBUF):
            c.setsockopt(socket.SOL_SOCKET, opt, 64 * 1024)
        c.settimeout(30)
        c.connect(("127.0.0.1", port))
        def send():
            c.sendall(data)
            c.shutdown(socket.SHUT_WR)
        t = threading.Thread(target=send, daemon=True)
        t.start()
        deadline = time.monotonic() + 20
        while t.is_alive() and server_rx_queue(port) < 64 * 1024 and time.monotonic() < deadline:
            time.sleep(0.01)  # polling a condition with a deadline
        assert t.is_alive(), "the whole 64 MiB went in with nothing read back"
        assert server_rx_queue(port) >= 64 * 1024
        assert sha(recv_all(c, timeout=30)) == sha(data)
        t.join(30)
    stop_cleanly(p)


def test_servers_exit_cleanly_on_sigint_with_clients_connected(spawn, ex):
    """SIGINT reaches the loop through a self-pipe: each server closes its
    clients and exits 0 instead of dying in the middle of a callback."""
    for name in ("echo", "chat"):
        p, port = start_server(spawn, ex, name)
        with socket.create_connection(("127.0.0.1", port), timeout=10) as c:
            c.sendall(b"x\n")
            if name == "echo":
                assert c.recv(2) == b"x\n"  # accepted and served
            stop_cleanly(p)
            c.settimeout(10)
            try:
                assert c.recv(10) == b""  # closed by the server on its way out
            except ConnectionResetError:
                pass  # unread "x\n" in the chat server's buffer: a reset is a close too


# ------------------------------------------------------------------- chat --

def read_lines(sock, want, got):
    buf = b""
    sock.settimeout(30)
    while len(got) < want:
        b = sock.recv(65536)
        if not b:
            break
        buf += b
        *lines, buf = buf.split(b"\n")
        got.extend(lines)


def test_chat_delivers_every_line_to_every_other_client(spawn, ex):
    p, port = start_server(spawn, ex, "chat")
    clients = []
    # Join one at a time and wait until the earlier clients hear the new one:
    # then the broker has it in its list (a condition, not a sleep).
    for i in range(3):
        c = socket.create_connection(("127.0.0.1", port), timeout=10)
        clients.append(c)
        if i:
            c.sendall(b"join %d\n" % i)
            for other in clients[:-1]:
                got = []
                read_lines(other, 1, got)
                assert got == [b"join %d" % i]
    n = 500
    lines = {i: [b"client %d line %d %s" % (i, k, os.urandom(8).hex().encode()) for k in range(n)]
             for i in range(3)}
    received = {i: [] for i in range(3)}
    readers = [threading.Thread(target=read_lines, args=(c, 2 * n, received[i]))
               for i, c in enumerate(clients)]
    for t in readers:
        t.start()
    senders = [threading.Thread(target=c.sendall, args=(b"".join(x + b"\n" for x in lines[i]),))
               for i, c in enumerate(clients)]
    for t in senders:
        t.start()
    for t in senders + readers:
        t.join(60)
    for i in range(3):
        # every line of the others, none of its own, each sender's in order
        for j in range(3):
            mine = [x for x in received[i] if x.startswith(b"client %d " % j)]
            assert mine == ([] if i == j else lines[j]), f"client {i} from {j}: {len(mine)} lines"
        assert len(received[i]) == 2 * n
    for c in clients:
        c.close()
    stop_cleanly(p)


# ----------------------------------------------------------------- client --

def test_client_reports_a_refused_port(spawn, ex):
    port = closed_port()
    c = spawn([ex / "client", "127.0.0.1", port])
    assert c.wait(10) != 0
    assert f"connect to 127.0.0.1:{port}: Connection refused" in c.err


def test_client_gives_up_at_its_timeout(spawn, ex):
    b = Backlog()
    try:
        if not b.hung:
            pytest.skip("could not fill a listen backlog on this kernel")
        t0 = time.monotonic()
        c = spawn([ex / "client", "127.0.0.1", b.port, "300"])
        rc = c.wait(10)
        elapsed = time.monotonic() - t0
    finally:
        b.close()
    assert rc != 0
    assert f"connect to 127.0.0.1:{b.port}: Connection timed out (deadline)" in c.err
    assert 0.25 < elapsed < 5, elapsed


def test_client_half_closes_and_prints_the_answer(spawn, ex, server):
    """stdin ends: the client shuts its side down and still prints what the
    server sends afterwards, then exits 0 when the server closes."""
    data = os.urandom(MIB)
    answer = os.urandom(MIB)

    def script(conn, result):
        result["got"] = recv_all(conn)  # ends only once the client shut down
        conn.sendall(answer)
        conn.close()

    s = server(script)
    c = spawn([ex / "client", "127.0.0.1", s.port], stdin=data)
    assert c.wait(30) == 0, c.err
    assert sha(s.join()["got"]) == sha(data)
    assert sha(c.out) == sha(answer)


# ------------------------------------------------------------------ relay --

def test_relay_carries_1mib_both_ways_with_half_close(spawn, ex, server):
    """A request-reply through the relay: the client's shutdown reaches the
    target, whose reply still comes back, then its own shutdown."""
    to_target = os.urandom(MIB)
    to_client = os.urandom(MIB)

    def script(conn, result):
        # answers only after the client's end of input came through the relay
        result["got"] = recv_all(conn, timeout=30)
        conn.sendall(to_client)
        conn.shutdown(socket.SHUT_WR)
        conn.recv(1)  # the relay closes after passing our end on

    target = server(script)
    port = free_port()
    r = spawn([ex / "relay", port, "127.0.0.1", target.port])
    wait_listening(port, proc=r)
    results = {}
    exchange(port, to_target, results, "client")
    assert sha(target.join()["got"]) == sha(to_target)
    assert sha(results["client"]) == sha(to_client)
    stop_cleanly(r)


def test_relay_to_the_duplex_command(spawn, ex, duplex):
    """The target is `duplex listen`: its stdin goes to the relay's client,
    the client's bytes to its stdout, both at once; each side's end passes
    through (duplex exits once both directions have ended)."""
    to_target = os.urandom(MIB)
    to_client = os.urandom(MIB)
    tport = free_port()
    d = spawn([duplex, "-l", "127.0.0.1", tport], stdin=to_client)
    wait_listening(tport, proc=d)
    port = free_port()
    r = spawn([ex / "relay", port, "127.0.0.1", tport])
    wait_listening(port, proc=r)
    results = {}
    exchange(port, to_target, results, "client")
    assert d.wait(30) == 0, d.err
    assert sha(d.out) == sha(to_target)
    assert sha(results["client"]) == sha(to_client)
    stop_cleanly(r)


def test_relay_hangs_up_when_the_target_refuses(spawn, ex):
    port = free_port()
    dead = closed_port()
    r = spawn([ex / "relay", port, "127.0.0.1", dead])
    wait_listening(port, proc=r)
    with socket.create_connection(("127.0.0.1", port), timeout=10) as c:
        assert recv_all(c) == b""
    r.wait_err(r"connect to 127\.0\.0\.1:%d: Connection refused" % dead)
    stop_cleanly(r)


# -------------------------------------------------------------------- tls --

@pytest.fixture(scope="module")
def tls_cert(tmp_path_factory):
    """A self-signed certificate for localhost and 127.0.0.1 (cert, key), and
    one for another name (other, other_key)."""
    need("openssl")
    d = tmp_path_factory.mktemp("tlscert")
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-days", "1"]
    for name, cn, san in (("c", "localhost", "DNS:localhost,IP:127.0.0.1"),
                          ("o", "other.example", "DNS:other.example")):
        subprocess.run(["openssl", "req", "-x509", *ec, "-subj", f"/CN={cn}", "-addext",
                        f"subjectAltName={san}", "-keyout", d / f"{name}.key", "-out",
                        d / f"{name}.pem"], check=True, capture_output=True, timeout=30)
    return {"cert": str(d / "c.pem"), "key": str(d / "c.key"),
            "other": str(d / "o.pem"), "other_key": str(d / "o.key")}


def start_tls_server(spawn, ex, tls_cert, cert="cert", key="key"):
    port = free_port()
    p = spawn([ex / "tls_server", tls_cert[cert], tls_cert[key], "127.0.0.1", port])
    wait_listening(port, proc=p)
    return p, port


def test_tls_client_and_server_echo_with_close_notify(spawn, ex, tls_cert):
    """1 MiB through the TLS echo: the client's end of stdin is its
    close_notify, the server's close_notify after the echo ends the client
    (exit 0, every byte back)."""
    p, port = start_tls_server(spawn, ex, tls_cert)
    data = os.urandom(MIB)
    c = spawn([ex / "tls_client", "localhost", port, tls_cert["cert"]], stdin=data)
    assert c.wait(30) == 0, c.err
    assert sha(c.out) == sha(data)
    stop_cleanly(p)
    assert p.err == "", p.err  # no failure on the server's side (all of it: it has exited)


def test_tls_server_verified_by_openssl_s_client(spawn, ex, tls_cert):
    """openssl s_client checks the example server's certificate and name,
    and gets its line echoed."""
    p, port = start_tls_server(spawn, ex, tls_cert)
    c = spawn(["openssl", "s_client", "-connect", f"127.0.0.1:{port}", "-servername", "localhost",
               "-verify_hostname", "localhost", "-CAfile", tls_cert["cert"],
               "-verify_return_error", "-quiet"], stdin=subprocess.PIPE)
    c.stdin.write(b"hello through TLS\n")
    c.stdin.flush()
    c.wait_out(lambda out: b"hello through TLS\n" in out, timeout=10)
    c.stdin.close()
    stop_cleanly(p)


def test_tls_client_refuses_an_untrusted_server(spawn, ex, tls_cert):
    """No CA file: the system store does not trust a self-signed certificate;
    the client fails closed, says why, and sends nothing."""
    need("openssl")
    port = free_port()
    s = spawn(["openssl", "s_server", "-accept", str(port), "-cert", tls_cert["cert"], "-key",
               tls_cert["key"], "-quiet"], stdin=subprocess.PIPE)
    wait_listening(port, proc=s)
    c = spawn([ex / "tls_client", "localhost", port], stdin=b"secret\n")
    assert c.wait(10) == 1
    assert "tls_client: localhost: certificate verify failed: self-signed certificate" in c.err \
        or "tls_client: localhost: certificate verify failed: self signed certificate" in c.err, c.err
    assert b"secret" not in s.out


def test_tls_client_refuses_a_wrong_host_name(spawn, ex, tls_cert):
    """A trusted certificate for another name: the name check fails closed."""
    p, port = start_tls_server(spawn, ex, tls_cert, "other", "other_key")
    c = spawn([ex / "tls_client", "localhost", port, tls_cert["other"]], stdin=b"secret\n")
    assert c.wait(10) == 1
    assert ("certificate verify failed: hostname mismatch: certificate is for other.example, "
            "not localhost") in c.err, c.err
    assert c.out == b""
    p.wait_err(r"handshake: .*alert")  # the server hears the client's refusal
    stop_cleanly(p)
