"""duplex.exe listen --proxy-type socks5|http under wine: the Linux duplex
client (-x, -X 5 / -X connect, --proxy-auth) through it to a Linux duplex
--echo, 1 MiB checksummed with the half-close passed on, the name looked up
on the proxy's resolver thread (localhost), wrong credentials refused and
never connected, a refused target answered (SOCKS5 05, HTTP 502)."""

import socket

import pytest

from conftest import TIMEOUT, closed_port, free_port, listening_port, seeded_bytes, sha


@pytest.mark.parametrize("kind,flag", [("socks5", "5"), ("http", "connect")])
def test_proxy_server_tunnels(exe_listener, start_linux, spawn, linux_duplex, kind, flag):
    echo = start_linux(["listen", "-k", "--echo", "-v", "127.0.0.1", "0"])
    eport = listening_port(echo)
    proxy, port = exe_listener(["-v", "--proxy-type", kind, "--proxy-auth", "u:p"])
    data = seeded_bytes(1 << 20, 7)

    def client(cred, host, tport, stdin):
        p = spawn([linux_duplex, "-x", f"127.0.0.1:{port}", "-X", flag, "--proxy-auth", cred,
                   "-N", host, str(tport)], stdin=stdin)
        rc = p.wait(TIMEOUT)
        return rc, p.out, p.err

    rc, out, err = client("u:p", "localhost", eport, data)
    assert rc == 0, err
    assert sha(out) == sha(data)
    proxy.wait_err(rf"-> localhost:{eport} \({kind}\): sent 1048576 bytes, received 1048576 "
                   r"bytes in [\d.]+ s: closed by both sides")
    rc, out, err = client("u:wrong", "127.0.0.1", eport, b"x")
    assert rc == 4, err
    closed = closed_port()
    rc, out, err = client("u:p", "127.0.0.1", closed, b"x")
    assert rc == 4 and ("reply 5" in err or "502" in err), err
    # the echo server saw the one good client only: a client of the test's
    # own comes after the others, and once its line is read, it is the second
    with socket.create_connection(("127.0.0.1", eport), timeout=TIMEOUT) as last:
        echo.wait_err(rf"127\.0\.0\.1:{last.getsockname()[1]}: connected \(")
    assert echo.err.count(": connected (") == 2, echo.err
    proxy.wait_err(r"authentication failed")
