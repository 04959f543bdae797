"""duplex.exe connect through a proxy under wine, with --exec: the Linux
duplex's proxy server (`listen --proxy-type http|socks5 --proxy-auth`)
wants credentials; duplex.exe answers (HTTP: the 407's strongest challenge,
Digest SHA-256, computed by httpauth.c's own SHA-256 in the Windows build),
and find.exe, run by duplex.exe with the tunnel as its stdin/stdout, filters
what a Python target sends and sends it back. Wrong credentials run nothing
(exit 4)."""

import socket

import pytest

from conftest import listening_port, recv_all

LINES = b"".join((b"x%05d\n" if i % 3 else b"no%05d\n") % i for i in range(3000))
WANT = b"".join(line + b"\n" for line in LINES.split(b"\n") if line.startswith(b"x"))


def target_script(conn, result):
    conn.sendall(LINES)
    conn.shutdown(socket.SHUT_WR)  # find.exe's end of input, through the proxy
    result["back"] = recv_all(conn)
    conn.close()


@pytest.mark.parametrize("kind,flag", [("http", "connect"), ("socks5", "5")])
def test_connect_exec_through_an_authenticating_proxy(windows_only, start_linux, run_exe, server, kind, flag):
    proxy = start_linux(["listen", "-v", "--proxy-type", kind, "--proxy-auth", "u:p w", "127.0.0.1", "0"])
    pport = listening_port(proxy)
    srv = server(target_script)
    rc, out, err = run_exe(["-x", f"127.0.0.1:{pport}", "-X", flag, "--proxy-auth", "u:p w", "127.0.0.1",
                            str(srv.port), "--exec", "find x"])
    assert rc == 0, err
    assert srv.join()["back"].replace(b"\r\n", b"\n") == WANT
    rc, out, err = run_exe(["-x", f"127.0.0.1:{pport}", "-X", flag, "--proxy-auth", "u:nope", "127.0.0.1",
                            str(srv.port), "--sh-exec", "echo ran"])
    assert rc == 4, err
    assert ("credentials refused for user 'u' (Digest SHA-256;" if kind == "http"
            else "authentication failed (user 'u')") in err
