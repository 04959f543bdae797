"""duplex connect through a proxy: -x/--proxy, -X/--proxy-type, --proxy-auth.

Real proxies from Debian (microsocks: SOCKS5, tinyproxy and `ncat -l
--proxy-type http`: HTTP CONNECT; each test skips when its binary is
missing) and scripted Python proxies where the exact bytes on the wire are
the point (SOCKS4/4a requests, SOCKS5 address types, a reply followed by
target bytes in the same segment, a proxy that never answers).

None of these proxies passes a half-close on: when the client ends its side
they close both. So through a proxy duplex does not pass the end of stdin
on unless -N asks for it (as OpenBSD nc): the exchanges below give -N, let
the reply arrive before stdin ends, then check that the target sees the end
of input; test_reply_after_stdin_ends checks the default.
"""

import os
import socket
import struct
import subprocess
import threading
import time

import pytest

from conftest import TIMEOUT, closed_port, free_port, listeners_on, need, recv_all, wait_listening

MiB = 1 << 20


# ------------------------------------------------------------------ helpers --


def recv_exact(conn, n):
    buf = b""
    while len(buf) < n:
        b = conn.recv(n - len(buf))
        if not b:
            raise AssertionError(f"EOF after {len(buf)} of {n} bytes: {buf!r}")
        buf += b
    return buf


def recv_until(conn, end, limit=65536):
    buf = b""
    while not buf.endswith(end):
        b = conn.recv(1)
        if not b:
            raise AssertionError(f"EOF before {end!r}: {buf!r}")
        buf += b
        assert len(buf) < limit
    return buf


def exchange_target(server, up_size, down):
    """A target that reads up_size bytes, answers `down`, then reads to EOF
    (result: up bytes, eof, the peer address it saw)."""

    def script(conn, result):
        result["peer"] = conn.getpeername()
        result["up"] = recv_exact(conn, up_size)
        conn.sendall(down)
        result["rest"] = recv_all(conn)
        conn.close()
        result["eof"] = True

    return server(script)


def run_exchange(start_duplex, server, args, size=MiB, target_host="127.0.0.1"):
    """duplex -N ARGS TARGET PORT through a proxy: `size` random bytes up,
    `size` others down, then stdin ends; returns (proc, target result)."""
    up, down = os.urandom(size), os.urandom(size)
    srv = exchange_target(server, len(up), down)
    p = start_duplex([*args, "-N", target_host, srv.port], stdin=subprocess.PIPE)

    def feed():
        try:
            p.stdin.write(up)
            p.stdin.flush()
        except (BrokenPipeError, OSError, ValueError):
            pass

    t = threading.Thread(target=feed, daemon=True)
    t.start()
    out = p.wait_out(lambda b: len(b) >= len(down))
    t.join(TIMEOUT)
    p.close_stdin()  # end of input: the target must see EOF
    res = srv.join()
    assert res["up"] == up
    assert res["rest"] == b"" and res["eof"]
    rc = p.wait()
    assert out == down and p.out == down
    assert rc == 0, p.err
    return p, res


@pytest.fixture
def microsocks(spawn):
    """microsocks(*extra) -> port of a microsocks on 127.0.0.1."""
    need("microsocks")

    def _start(*extra):
        port = free_port()
        p = spawn(["microsocks", "-i", "127.0.0.1", "-p", port, *extra], stdout=subprocess.DEVNULL)
        wait_listening(port, proc=p)
        return port

    return _start


# ------------------------------------------------------------ SOCKS5, real --


def test_socks5_microsocks_bytes_both_ways(start_duplex, server, microsocks):
    pport = microsocks()
    p, res = run_exchange(start_duplex, server, ["connect", "-v", "-x", f"127.0.0.1:{pport}"])
    assert res["peer"][0] == "127.0.0.1"
    assert "connected to 127.0.0.1:" in p.err
    assert f"through proxy 127.0.0.1:{pport} (socks5)" in p.err


def test_socks5_target_by_name_resolved_by_proxy(start_duplex, server, microsocks):
    """`localhost` goes to the proxy as a name (ATYP 3); the target listens on
    127.0.0.1 only, and the proxy's connection reaches it."""
    pport = microsocks()
    p, res = run_exchange(start_duplex, server, ["connect", "-v", "-X", "5", "-x", f"127.0.0.1:{pport}"],
                          size=64 * 1024, target_host="localhost")
    assert "connected to localhost:" in p.err


def test_socks5_auth(start_duplex, server, microsocks, run_duplex):
    pport = microsocks("-u", "bob", "-P", "s3cret")
    run_exchange(start_duplex, server, ["connect", "--proxy", f"127.0.0.1:{pport}",
                                        "--proxy-auth", "bob:s3cret"], size=64 * 1024)
    closed = closed_port()
    rc, out, err = run_duplex(["connect", "-x", f"127.0.0.1:{pport}", "--proxy-auth", "bob:wrongpw",
                               "127.0.0.1", closed])
    assert rc == 4, err
    assert f"proxy 127.0.0.1:{pport}: SOCKS5 connect to 127.0.0.1:{closed}: authentication failed" in err
    assert "wrongpw" not in err and "s3cret" not in err
    # no credentials at all
    rc, out, err = run_duplex(["connect", "-x", f"127.0.0.1:{pport}", "127.0.0.1", closed])
    assert rc == 4, err
    assert "requires authentication" in err


def test_socks5_target_refused(run_duplex, microsocks):
    pport = microsocks()
    closed = closed_port()
    rc, out, err = run_duplex(["connect", "-x", f"127.0.0.1:{pport}", "127.0.0.1", closed])
    assert rc == 4, err
    assert f"duplex: proxy 127.0.0.1:{pport}: SOCKS5 connect to 127.0.0.1:{closed}: " in err
    assert "refused" in err.lower() and "(reply 5)" in err


def test_proxy_unreachable(run_duplex):
    pport = free_port()
    rc, out, err = run_duplex(["connect", "-x", f"127.0.0.1:{pport}", "127.0.0.1", "80"])
    assert rc == 4, err
    assert f"connect to proxy 127.0.0.1:{pport}: Connection refused" in err


@pytest.mark.parametrize("ptype,port", [("5", 1080), ("connect", 3128)])
def test_proxy_default_port(run_duplex, ptype, port):
    if listeners_on(port):
        pytest.skip(f"something listens on port {port}")
    rc, out, err = run_duplex(["connect", "-X", ptype, "-x", "127.0.0.1", "127.0.0.1", "80"])
    assert rc == 4, err
    assert f"connect to proxy 127.0.0.1:{port}:" in err


def test_zero_io_through_proxy(run_duplex, server, microsocks):
    pport = microsocks()
    srv = server(lambda conn, result: recv_all(conn))
    closed = closed_port()
    rc, out, err = run_duplex(["connect", "-z", "-v", "-x", f"127.0.0.1:{pport}", "127.0.0.1",
                               closed, srv.port])
    assert rc == 0, err
    assert f"127.0.0.1:{srv.port} open (through proxy 127.0.0.1:{pport})" in err
    assert f"127.0.0.1:{closed} closed (through proxy 127.0.0.1:{pport})" in err
    rc, out, err = run_duplex(["connect", "-z", "-x", f"127.0.0.1:{pport}", "127.0.0.1", closed])
    assert rc == 4, err


# --------------------------------------------------------------- HTTP, real --


def _tinyproxy_exchange(start_duplex, server, tinyproxy, size=MiB):
    up, down = os.urandom(size), os.urandom(size)
    srv = exchange_target(server, len(up), down)
    pport = tinyproxy([srv.port])
    p = start_duplex(["connect", "-v", "-N", "-X", "connect", "-x", f"127.0.0.1:{pport}",
                      "127.0.0.1", srv.port], stdin=subprocess.PIPE)
    t = threading.Thread(target=lambda: (p.stdin.write(up), p.stdin.flush()), daemon=True)
    t.start()
    out = p.wait_out(lambda b: len(b) >= len(down))
    t.join(TIMEOUT)
    p.close_stdin()
    res = srv.join()
    assert res["up"] == up and res["eof"]
    p.wait()
    assert out == down and p.out == down
    assert f"through proxy 127.0.0.1:{pport} (http)" in p.err
    return pport


def test_http_tinyproxy(start_duplex, server, tinyproxy):
    _tinyproxy_exchange(start_duplex, server, tinyproxy)


def test_http_tinyproxy_refused_port(run_duplex, tinyproxy):
    allowed, other = free_port(), free_port()
    pport = tinyproxy([allowed])
    rc, out, err = run_duplex(["connect", "--proxy-type", "http", "-x", f"127.0.0.1:{pport}",
                               "127.0.0.1", other])
    assert rc == 4, err
    assert f"duplex: proxy 127.0.0.1:{pport}: HTTP CONNECT 127.0.0.1:{other}: 403" in err


def test_http_ncat_proxy(start_duplex, server, spawn):
    need("ncat")
    pport = free_port()
    np = spawn(["ncat", "-l", "127.0.0.1", pport, "--proxy-type", "http"], stdout=subprocess.DEVNULL)
    wait_listening(pport, proc=np)
    p, res = run_exchange(start_duplex, server, ["connect", "-v", "--proxy-type", "http", "--proxy",
                                                 f"127.0.0.1:{pport}"])
    assert f"through proxy 127.0.0.1:{pport} (http)" in p.err


def http_target(server, reply=b"HTTP/1.0 200 OK\r\n\r\nthe page\n"):
    """A target that reads a request up to its empty line, answers, closes."""

    def script(conn, result):
        result["req"] = recv_until(conn, b"\r\n\r\n")
        conn.sendall(reply)
        conn.close()

    return server(script)


@pytest.mark.parametrize("kind", ["socks5", "http"])
def test_reply_after_stdin_ends(run_duplex, server, microsocks, tinyproxy, kind):
    """`printf 'GET / ...' | duplex connect -x PROXY host port`: stdin ends
    before the target answers. microsocks and tinyproxy close both
    directions when the client half-closes, so duplex does not pass the end
    of stdin on through a proxy (OpenBSD nc does the same without -N): the
    page arrives, exit 0. It used to print nothing and exit 0."""
    srv = http_target(server)
    pport = microsocks() if kind == "socks5" else tinyproxy([srv.port])
    rc, out, err = run_duplex(["connect", "-X", kind, "-x", f"127.0.0.1:{pport}", "127.0.0.1",
                               srv.port], stdin=b"GET / HTTP/1.0\r\n\r\n")
    res = srv.join()
    assert res["req"] == b"GET / HTTP/1.0\r\n\r\n"
    assert rc == 0, err
    assert out == b"HTTP/1.0 200 OK\r\n\r\nthe page\n"


def test_minus_n_through_proxy_passes_the_end_on(run_duplex, server, microsocks):
    """-N through a proxy: the end of stdin is passed on (the target sees
    EOF); -v says so when nothing came back, since the proxy may have
    dropped the reply on the half-close."""

    def script(conn, result):
        result["data"] = recv_all(conn)
        conn.close()

    srv = server(script)
    pport = microsocks()
    rc, out, err = run_duplex(["connect", "-v", "-N", "-x", f"127.0.0.1:{pport}", "127.0.0.1",
                               srv.port], stdin=b"some data\n")
    res = srv.join()
    assert res["data"] == b"some data\n"
    assert rc == 0, err
    assert out == b""
    assert "nothing received after our end of input" in err, err


def test_minus_n_and_no_shutdown_exclude_each_other(run_duplex):
    rc, _, err = run_duplex(["connect", "-N", "--no-shutdown", "127.0.0.1", "1"])
    assert rc == 2, err
    assert "-N and --no-shutdown exclude each other" in err


# ----------------------------------------------------- scripted proxies --


def test_http_reply_and_target_bytes_in_one_segment(run_duplex, server):
    """The proxy's reply and the target's first bytes arrive together: the
    handshake must not swallow them."""

    def script(conn, result):
        result["req"] = recv_until(conn, b"\r\n\r\n")
        conn.sendall(b"HTTP/1.1 200 Connection established\r\nX-A: b\r\n\r\nHELLO")
        result["rest"] = recv_all(conn)
        conn.close()

    srv = server(script)
    rc, out, err = run_duplex(["connect", "-N", "-X", "connect", "-x", f"127.0.0.1:{srv.port}",
                               "--proxy-auth", "user:pa:ss", "example.org", "8443"])
    res = srv.join()
    assert rc == 0, err
    assert out == b"HELLO"
    req = res["req"].decode()
    assert req.startswith("CONNECT example.org:8443 HTTP/1.1\r\n"), req
    assert "Host: example.org:8443\r\n" in req
    # as ncat: credentials only once the proxy asks for them (a 407)
    assert "Proxy-Authorization" not in req
    assert "pa:ss" not in err


def test_http_proxy_407(run_duplex, server):
    def script(conn, result):
        recv_until(conn, b"\r\n\r\n")
        conn.sendall(b"HTTP/1.1 407 Proxy Authentication Required\r\nContent-Length: 0\r\n\r\n")
        recv_all(conn)
        conn.close()

    srv = server(script)
    rc, out, err = run_duplex(["connect", "-X", "http", "-x", f"127.0.0.1:{srv.port}",
                               "--proxy-auth", "u:topsecret", "[::1]", "80"])
    srv.join()
    assert rc == 4, err
    assert (f"proxy 127.0.0.1:{srv.port}: HTTP CONNECT [::1]:80: 407 Proxy Authentication Required: the "
            "proxy offers no scheme duplex can answer") in err
    assert "topsecret" not in err


@pytest.mark.parametrize("reply,words", [
    (b"HTTP/1.1 2000 OK\r\n\r\n", "not an HTTP reply: 'HTTP/1.1 2000 OK'"),
    (b"HTTP/1.1 200OK\r\n\r\n", "not an HTTP reply"),
    (b"HTTP/1.1  200 OK\r\n\r\n", "not an HTTP reply"),
    (b"HTTP/1.1 +20 OK\r\n\r\n", "not an HTTP reply"),
    (b"HTTP/1.x 200 OK\r\n\r\n", "not an HTTP reply"),
    (b"HTTP/1.1 200 OK\0junk\r\n\r\n", "not an HTTP reply: 'HTTP/1.1 200 OK\\x00junk'"),
    (b"HTTP/1.1 200 OK\r\nno colon here\r\n\r\n", "bad header line in the HTTP reply: 'no colon here'"),
    (b"HTTP/1.1 403 \x1b[2J\x1b]0;owned\x07\r\n\r\n", "'HTTP/1.1 403 \\x1b[2J\\x1b]0;owned\\x07'"),
    (b"HTTP/1.1 403 Forbidden \x9b31m\r\n\r\n", "403 Forbidden \\x9b31m"),
])
def test_http_reply_parsed_strictly(run_duplex, server, reply, words):
    """The status line is `HTTP/1.D SP DDD SP reason` and headers are
    `name: value`: anything else is refused (exit 4, nothing printed, the
    target's bytes never reach stdout) and shown escaped, so that a proxy
    cannot write control sequences to the user's terminal."""

    def script(conn, result):
        recv_until(conn, b"\r\n\r\n")
        conn.sendall(reply + b"HELLO")
        try:
            recv_all(conn)
        except ConnectionResetError:
            pass  # duplex closes with HELLO unread: a reset
        conn.close()

    srv = server(script)
    rc, out, err = run_duplex(["connect", "-X", "http", "-x", f"127.0.0.1:{srv.port}",
                               "example.org", "443"])
    srv.join()
    assert rc == 4, err
    assert out == b""
    assert words in err, err
    assert "\x1b" not in err and "\x9b" not in err and "\x07" not in err


def test_socks5_auth_reply_version_checked(run_duplex, server):
    """RFC 1929: the username/password reply starts with version 1; a proxy
    answering 05 00 there is not speaking the protocol: refused."""

    def script(conn, result):
        recv_exact(conn, 4)
        conn.sendall(b"\x05\x02")
        recv_exact(conn, 2 + 1 + 1 + 6)  # 01 01 u 06 secret
        conn.sendall(b"\x05\x00" + b"\x05\x00\x00\x01" + bytes(6))
        try:
            recv_all(conn)
        except ConnectionResetError:
            pass
        conn.close()

    srv = server(script)
    rc, out, err = run_duplex(["connect", "-x", f"127.0.0.1:{srv.port}", "--proxy-auth", "u:secret",
                               "127.0.0.1", "80"])
    srv.join()
    assert rc == 4, err
    assert "not a username/password reply (it starts with 0x05)" in err


def test_http_reply_without_reason(run_duplex, server):
    """`HTTP/1.1 200` with no reason phrase (some proxies): accepted."""

    def script(conn, result):
        recv_until(conn, b"\r\n\r\n")
        conn.sendall(b"HTTP/1.1 200\r\nVia: x\r\n\r\nHELLO")
        conn.close()

    srv = server(script)
    rc, out, err = run_duplex(["connect", "-X", "http", "-x", f"127.0.0.1:{srv.port}",
                               "example.org", "443"])
    srv.join()
    assert rc == 0, err
    assert out == b"HELLO"


@pytest.mark.parametrize("host,args,atyp,addr", [
    ("localhost", [], 3, b"\x09localhost"),
    ("127.0.0.1", [], 1, socket.inet_aton("127.0.0.1")),
    ("::1", [], 4, socket.inet_pton(socket.AF_INET6, "::1")),
    ("127.0.0.1", ["-n"], 1, socket.inet_aton("127.0.0.1")),
])
def test_socks5_request_bytes(run_duplex, server, host, args, atyp, addr):
    """The exact CONNECT request, a reply with a domain BND.ADDR, and target
    bytes in the same segment as the reply."""

    def script(conn, result):
        result["hello"] = recv_exact(conn, 3)
        conn.sendall(b"\x05\x00")
        head = recv_exact(conn, 4)
        if head[3] == 3:
            n = recv_exact(conn, 1)
            body = n + recv_exact(conn, n[0])
        else:
            body = recv_exact(conn, 4 if head[3] == 1 else 16)
        result["req"] = head + body + recv_exact(conn, 2)
        conn.sendall(b"\x05\x00\x00\x03\x0bproxy.local\x1f\x90" + b"HELLO")
        result["rest"] = recv_all(conn)
        conn.close()

    srv = server(script)
    rc, out, err = run_duplex(["connect", "-N", *args, "-x", f"127.0.0.1:{srv.port}", host, "4242"])
    res = srv.join()
    assert rc == 0, err
    assert res["hello"] == b"\x05\x01\x00"
    assert res["req"] == b"\x05\x01\x00" + bytes([atyp]) + addr + struct.pack(">H", 4242)
    assert out == b"HELLO"


def test_numeric_flag_with_a_name(run_duplex, server):
    srv = server(lambda conn, result: recv_all(conn))
    rc, out, err = run_duplex(["connect", "-n", "-x", f"127.0.0.1:{srv.port}", "localhost", "80"])
    assert rc == 3, err
    assert "not a numeric address" in err


# The scripted proxies below read to EOF, as a proxy that passes a half-close
# on: the sessions give -N.


def socks4_script(reply_code, payload=b""):
    def script(conn, result):
        head = recv_exact(conn, 8)
        user = recv_until(conn, b"\0")
        name = recv_until(conn, b"\0") if head[4:7] == b"\0\0\0" and head[7] else None
        result.update(head=head, user=user, name=name)
        conn.sendall(bytes([0, reply_code]) + b"\0\0\0\0\0\0" + payload)
        result["rest"] = recv_all(conn)
        conn.close()

    return script


def test_socks4_ipv4_request_with_userid(run_duplex, server):
    srv = server(socks4_script(0x5A, b"hi from target"))
    rc, out, err = run_duplex(["connect", "-N", "-X", "4", "-x", f"127.0.0.1:{srv.port}",
                               "--proxy-auth", "alice", "10.1.2.3", "8080"], stdin=b"ping")
    res = srv.join()
    assert rc == 0, err
    assert res["head"] == b"\x04\x01" + struct.pack(">H", 8080) + socket.inet_aton("10.1.2.3")
    assert res["user"] == b"alice\0"
    assert res["name"] is None
    assert res["rest"] == b"ping"
    assert out == b"hi from target"


def test_socks4a_name(run_duplex, server):
    srv = server(socks4_script(0x5A))
    rc, out, err = run_duplex(["connect", "-v", "-N", "--proxy-type", "socks4", "-x",
                               f"127.0.0.1:{srv.port}", "localhost", "443"])
    res = srv.join()
    assert rc == 0, err
    head = res["head"]
    assert head[:4] == b"\x04\x01" + struct.pack(">H", 443)
    assert head[4:7] == b"\0\0\0" and head[7] != 0
    assert res["user"] == b"\0"
    assert res["name"] == b"localhost\0"
    assert f"connected to localhost:443 through proxy 127.0.0.1:{srv.port} (socks4)" in err


def test_socks4_rejected(run_duplex, server):
    srv = server(socks4_script(0x5B))
    rc, out, err = run_duplex(["connect", "-X", "4", "-x", f"127.0.0.1:{srv.port}", "127.0.0.1", "25"])
    srv.join()
    assert rc == 4, err
    assert f"proxy 127.0.0.1:{srv.port}: SOCKS4 connect to 127.0.0.1:25: request rejected" in err
    assert "0x5b" in err


@pytest.mark.parametrize("ptype", ["5", "4", "connect"])
def test_silent_proxy_times_out(run_duplex, server, ptype):
    srv = server(lambda conn, result: recv_all(conn))
    t0 = time.monotonic()
    rc, out, err = run_duplex(["connect", "-w", "1", "-X", ptype, "-x", f"127.0.0.1:{srv.port}",
                               "127.0.0.1", "80"], timeout=10)
    elapsed = time.monotonic() - t0
    srv.join()
    assert rc == 5, err
    assert f"proxy 127.0.0.1:{srv.port}: " in err and "timed out" in err
    assert elapsed < 5


def test_proxy_not_socks(run_duplex, server):
    def script(conn, result):
        recv_exact(conn, 3)
        conn.sendall(b"HTTP/1.0 400 Bad Request\r\n\r\n")
        try:
            recv_all(conn)
        except ConnectionResetError:
            pass  # duplex closes with our reply unread: a reset
        conn.close()

    srv = server(script)
    rc, out, err = run_duplex(["connect", "-x", f"127.0.0.1:{srv.port}", "127.0.0.1", "80"])
    srv.join()
    assert rc == 4, err
    assert "not a SOCKS5 proxy" in err


# ------------------------------------------------------------ usage errors --


@pytest.mark.parametrize("args,words", [
    (["listen", "-x", "127.0.0.1:1080", "127.0.0.1", "0"], "listen"),
    (["-l", "-x", "127.0.0.1:1080", "0"], "listen"),
    (["relay", "-x", "127.0.0.1:1080", "0", "127.0.0.1:80"], "relay"),
    (["connect", "-u", "-x", "127.0.0.1:1080", "127.0.0.1", "53"], "-u"),
    (["connect", "-x", "127.0.0.1:1080", "-U", "/tmp/duplex-proxy-none.sock"], "-U"),
    (["connect", "-X", "bogus", "-x", "127.0.0.1:1080", "example.org", "80"], "bogus"),
    (["connect", "-X", "4", "-x", "127.0.0.1:1080", "::1", "80"], "IPv6"),
    (["connect", "-X", "socks4", "-x", "127.0.0.1:1080", "[::1]:80"], "IPv6"),
    (["connect", "--proxy-auth", "a:b", "127.0.0.1", "80"], "need -x"),
    (["connect", "-X", "5", "127.0.0.1", "80"], "need -x"),
    (["connect", "-X", "http", "-x", "127.0.0.1:1080", "--proxy-auth", "u:p\r\nX: y", "127.0.0.1", "80"],
     "control characters"),
    (["connect", "-x", "127.0.0.1:1080", "--proxy-auth", ":pw", "127.0.0.1", "80"], "USER and PASS"),
    (["connect", "-x", "127.0.0.1:", "127.0.0.1", "80"], "--proxy"),
    (["connect", "-x", "127.0.0.1:99999", "127.0.0.1", "80"], "invalid port"),
])
def test_usage_errors(run_duplex, args, words):
    rc, out, err = run_duplex(args)
    assert rc == 2, err
    assert words in err
