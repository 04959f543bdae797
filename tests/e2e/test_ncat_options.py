"""ncat's command lines on duplex (issue 12): options that imply others,
time units, the default listen port, --max-conns 0, host names in access
lists. Where ncat and duplex both take a command line, the same line runs
against both and what they do is compared (ncat 7.93; tests needing it skip
when it is not installed)."""

import re
import socket
import subprocess

import pytest

from conftest import TIMEOUT, LISTENING_RE, free_port, need, wait_listening
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
