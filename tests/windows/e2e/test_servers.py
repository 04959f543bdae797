"""duplex.exe as a server for many Linux clients at once: -k --echo,
--broker, --chat, plain -k to stdout (each checked per client), --max-conns,
--allow/--deny (refusals proven by the -v line), --exec/--sh-exec (a child
process per client, through CreateProcess and cmd.exe /c on Windows)."""

import re
import socket
import subprocess
import threading

import pytest

from conftest import TIMEOUT, connect, recv_all, recv_exact, seeded_bytes, sha, wait_for

# ------------------------------------------------------------------ helpers --


def run_threads(fns, timeout=TIMEOUT * 2):
    """Run each fn in a thread at once; re-raise the first exception."""
    errors = []

    def wrap(fn):
        try:
            fn()
        except BaseException as e:  # noqa: B902 (reported below)
            errors.append(e)

    threads = [threading.Thread(target=wrap, args=(fn,), daemon=True) for fn in fns]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout)
        if t.is_alive():
            pytest.fail(f"a client thread did not finish within {timeout}s")
    if errors:
        raise errors[0]


def exchange(sock, data, timeout=TIMEOUT):
    """Send data (then end the write side) while reading to EOF; returns
    what was read."""
    sender_error = []

    def send():
        try:
            sock.sendall(data)
            sock.shutdown(socket.SHUT_WR)
        except OSError as e:
            sender_error.append(e)

    t = threading.Thread(target=send, daemon=True)
    t.start()
    got = recv_all(sock, timeout)
    t.join(timeout)
    if sender_error:
        raise sender_error[0]
    return got


def recv_line(sock, timeout=TIMEOUT):
    buf = bytearray()
    while not buf.endswith(b"\n"):
        buf += recv_exact(sock, 1, timeout)
    return bytes(buf)


def name_of(sock):
    host, port = sock.getsockname()[:2]
    return f"{host}:{port}"


def closed_within(sock, timeout=5):
    """The server closed this client: EOF or reset within timeout, no data."""
    sock.settimeout(timeout)
    try:
        return sock.recv(1) == b""
    except (ConnectionResetError, ConnectionAbortedError):
        return True
    except socket.timeout:
        return False


def wait_clients(proc, n):
    """-v: the server has counted n connected clients."""
    proc.wait_err(rf"connected \({n} now\)")


# ------------------------------------------------------------------- echo --


def test_echo_many_clients_at_once(exe_listener, sockets):
    """-k --echo: 8 clients each send 256 KiB of their own data at once; each
    gets exactly its own bytes back."""
    proc, port = exe_listener(["-k", "--echo"])
    n, size = 8, 256 << 10
    clients = [sockets(connect(port)) for _ in range(n)]
    datas = [seeded_bytes(size, 100 + i) for i in range(n)]
    got = [None] * n

    def client(i):
        got[i] = exchange(clients[i], datas[i])

    run_threads([lambda i=i: client(i) for i in range(n)])
    for i in range(n):
        assert (len(got[i]), sha(got[i])) == (size, sha(datas[i])), f"client {i}"
    assert proc.poll() is None, proc.err


def test_echo_half_close_then_eof(exe_listener, sockets):
    """A client's end of input: the whole echo, then the server's end."""
    proc, port = exe_listener(["-k", "--echo"])
    c = sockets(connect(port))
    assert exchange(c, b"one line\n") == b"one line\n"


# ----------------------------------------------------------------- broker --


def test_broker_every_byte_to_every_other_client(exe_listener, sockets):
    proc, port = exe_listener(["-k", "--broker", "-v"], stdin=subprocess.PIPE)
    n = 4
    clients = [sockets(connect(port)) for _ in range(n)]
    wait_clients(proc, n)
    for i, c in enumerate(clients):
        c.sendall(f"from {i}\n".encode())
    for i, c in enumerate(clients):
        want = {f"from {j}\n".encode() for j in range(n) if j != i}
        got = {recv_line(c) for _ in range(n - 1)}
        assert got == want, f"client {i}"
    out = proc.wait_out(lambda o: o.count(b"\n") >= n)
    assert sorted(out.splitlines(keepends=True)) == sorted(f"from {j}\n".encode() for j in range(n))
    # the server's stdin goes to every client
    proc.stdin.write(b"from the server\n")
    proc.stdin.flush()
    for c in clients:
        assert recv_line(c) == b"from the server\n"


# ------------------------------------------------------------------- chat --


def test_chat_lines_and_notices(exe_listener, sockets):
    proc, port = exe_listener(["-k", "--chat"], stdin=subprocess.PIPE)
    a = sockets(connect(port))
    an = name_of(a)
    proc.wait_out(lambda o: f"* {an} joined (1 connected)\n".encode() in o)
    b = sockets(connect(port))
    bn = name_of(b)
    assert recv_line(a) == f"* {bn} joined (2 connected)\n".encode()
    b.sendall(b"hi from b\n")
    assert recv_line(a) == f"[{bn}] hi from b\n".encode()
    proc.stdin.write(b"hello all\n")
    proc.stdin.flush()
    assert recv_line(a) == b"[server] hello all\n"
    assert recv_line(b) == b"[server] hello all\n"
    b.close()
    assert recv_line(a) == f"* {bn} left (1 connected)\n".encode()
    out = proc.wait_out(lambda o: f"* {bn} left (1 connected)\n".encode() in o)
    assert out == (f"* {an} joined (1 connected)\n* {bn} joined (2 connected)\n"
                   f"[{bn}] hi from b\n* {bn} left (1 connected)\n").encode()


# --------------------------------------------------------- -k to stdout --


def test_k_clients_to_stdout_stdin_to_all(exe_listener, sockets):
    """Plain -k: every client's bytes reach stdout (picked out per client:
    each sends its own letter), stdin reaches every client."""
    proc, port = exe_listener(["-k", "-v"], stdin=subprocess.PIPE)
    n, size = 4, 64 << 10
    clients = [sockets(connect(port)) for _ in range(n)]
    wait_clients(proc, n)
    proc.stdin.write(b"to every client\n")
    proc.stdin.flush()
    for c in clients:
        assert recv_line(c) == b"to every client\n"
    letters = [bytes([ord("a") + i]) for i in range(n)]

    def client(i):
        clients[i].sendall(letters[i] * size)
        clients[i].shutdown(socket.SHUT_WR)

    run_threads([lambda i=i: client(i) for i in range(n)])
    out = proc.wait_out(lambda o: len(o) >= n * size)
    assert len(out) == n * size
    for i in range(n):
        assert out.count(letters[i]) == size, f"client {i}"


# -------------------------------------------------------------- admission --


def test_max_conns_refuses_the_extra_client(exe_listener, sockets):
    proc, port = exe_listener(["-k", "--echo", "-v", "--max-conns", "2"])
    a, b = sockets(connect(port)), sockets(connect(port))
    wait_clients(proc, 2)
    c = sockets(connect(port))
    proc.wait_err(rf"{re.escape(name_of(c))}: refused: --max-conns 2 reached")
    assert closed_within(c), "the refused client was not closed"
    for s, msg in ((a, b"a still here\n"), (b, b"b still here\n")):
        s.sendall(msg)
        assert recv_exact(s, len(msg)) == msg
    # a slot frees when a client leaves
    assert exchange(a, b"bye\n") == b"bye\n"
    proc.wait_err(re.escape(name_of(a)) + r": closed")
    d = sockets(connect(port))
    d.sendall(b"d is in\n")
    assert recv_exact(d, 8) == b"d is in\n"


def connect_from(port, source):
    s = socket.socket()
    s.settimeout(TIMEOUT)
    s.bind((source, 0))
    s.connect(("127.0.0.1", port))
    return s


@pytest.mark.parametrize("rule, why", [
    (["--deny", "127.0.0.2"], r"matches deny rule 127\.0\.0\.2/32"),
    (["--allow", "127.0.0.1"], r"matches no allow rule"),
])
def test_access_list_refuses_a_client(exe_listener, sockets, rule, why):
    """A client from 127.0.0.2 is refused (the -v line says by which rule);
    one from 127.0.0.1 is served."""
    proc, port = exe_listener(["-k", "--echo", "-v", *rule])
    bad = sockets(connect_from(port, "127.0.0.2"))
    proc.wait_err(rf"{re.escape(name_of(bad))}: refused: not allowed by --allow/--deny \({why}\)")
    assert closed_within(bad), "the refused client was not closed"
    good = sockets(connect_from(port, "127.0.0.1"))
    good.sendall(b"let in\n")
    assert recv_exact(good, 7) == b"let in\n"
    # good's -v line: stderr read up to it (a refusal of good would come before)
    proc.wait_err(rf"{re.escape(name_of(good))}: connected")
    assert "127.0.0.1:" not in "".join(l for l in proc.err.splitlines() if "refused" in l)


# ------------------------------------------------------------------- exec --


def cmds(target):
    """The children each platform has: (a line filter for --exec, an
    interactive line reader for --sh-exec). More --exec tests (environment,
    binary data, failures): test_process.py."""
    if target.windows:
        return "find.exe ap", 'cmd.exe /v:on /c "set /p L=&echo got !L!"'
    return "grep ap", 'read L; echo "got $L"'


def lines(b):
    return [l.rstrip(b"\r") for l in b.split(b"\n") if l.rstrip(b"\r")]


def test_exec_child_per_client(target, exe_listener, sockets):
    """--exec: each of 3 clients at once gets its own child, which reads the
    client's bytes to their end and answers."""
    filt, _ = cmds(target)
    proc, port = exe_listener(["-k", "--exec", filt])
    n = 3
    clients = [sockets(connect(port)) for _ in range(n)]
    got = [None] * n

    def client(i):
        got[i] = exchange(clients[i], f"apple {i}\nbanana {i}\napricot {i}\n".encode())

    run_threads([lambda i=i: client(i) for i in range(n)])
    for i in range(n):
        assert lines(got[i]) == [f"apple {i}".encode(), f"apricot {i}".encode()], got[i]


def test_sh_exec_answers_before_the_end(target, exe_listener, sockets):
    """--sh-exec: a child reads a line and answers while the client's side
    is still open (a conversation, not a batch)."""
    _, reader = cmds(target)
    proc, port = exe_listener(["-k", "--sh-exec", reader])
    c = sockets(connect(port))
    c.sendall(b"hello\n")
    assert recv_line(c).rstrip(b"\r\n") == b"got hello"
    c.shutdown(socket.SHUT_WR)
    assert recv_all(c).strip() == b""


def test_verbose_client_lines(exe_listener, sockets):
    """-v on a server: the accepted and closed lines per client."""
    proc, port = exe_listener(["-k", "--echo", "-v"])
    c = sockets(connect(port))
    cn = name_of(c)
    assert exchange(c, b"x" * 1000) == b"x" * 1000
    proc.wait_err(re.escape(cn) + r": closed")
    wait_for(lambda: re.search(re.escape(cn) + r".*1000", proc.err), 10,
             f"a statistics line for {cn} with its 1000 bytes; stderr={proc.err!r}")

