"""End-to-end tests of the PROXY protocol (haproxy's, v1 and v2):
`listen`/`relay --accept-proxy` behind haproxy (`send-proxy`, `send-proxy-v2`)
and nginx's stream module (`proxy_protocol on`), which must report the
original client and pass the payload intact (compared by hash);
`relay --send-proxy[=v2]` in front of haproxy `bind ... accept-proxy`, whose
`src` must be the relay's client; and, with headers written here, every
listen mode seeing the client the header names (-v, --exec's variables,
--chat names), --allow/--deny applied to it (not to the load balancer), and
missing, malformed, oversized and slow headers refused without stopping the
server, with no byte after a header lost however it is split.

Run: DUPLEX=/abs/build/duplex /usr/bin/python3 -m pytest -q tests/e2e/test_proxy_protocol.py"""

import select
import socket
import struct
import threading
import time

import pytest

from conftest import LISTENING_RE, TIMEOUT, need, seeded_bytes, sha, wait_listening, free_port
from servers_util import closed_within, connect, read_to_eof, recv_exact, recv_until

V2_SIG = b"\r\n\r\n\x00\r\nQUIT\n"


def v2_header(src, sport, dst, dport, tlv=b"", command=0x21):
    """A v2 header for IPv4 addresses (with optional TLV bytes)."""
    body = socket.inet_aton(src) + socket.inet_aton(dst) + struct.pack("!HH", sport, dport) + tlv
    return V2_SIG + bytes([command, 0x11]) + struct.pack("!H", len(body)) + body


def v1_header(src, sport, dst="127.0.0.1", dport=80):
    return f"PROXY TCP4 {src} {dst} {sport} {dport}\r\n".encode()


def start_haproxy(spawn, tmp_path, body, port):
    """haproxy -db with `body` after common defaults; waits until it listens
    on `port`."""
    haproxy = need("haproxy")
    cfg = tmp_path / "haproxy.cfg"
    cfg.write_text("global\n    maxconn 64\n"
                   "defaults\n    timeout connect 5s\n    timeout client 10s\n"
                   "    timeout server 10s\n" + body)
    p = spawn([haproxy, "-f", str(cfg), "-db"], name="haproxy")
    wait_listening(port, proc=p)
    return p


def send_and_collect(port, data):
    """A client sends data and half-closes; returns its own 'ADDR:PORT'."""
    s = connect(port)
    try:
        me = "%s:%d" % s.getsockname()
        s.sendall(data)
        s.shutdown(socket.SHUT_WR)
        read_to_eof(s)
        return me
    finally:
        s.close()


# ------------------------------------------------- behind a load balancer --


@pytest.mark.parametrize("send", ["send-proxy", "send-proxy-v2"])
def test_listen_behind_haproxy_sees_the_client(send, spawn, start_listener, tmp_path):
    """haproxy (mode tcp) adds the header; `listen --accept-proxy -v` names
    the original client (its port, not haproxy's), and 1 MiB arrives intact."""
    dx, dport = start_listener(["--accept-proxy", "-v"])
    hport = free_port()
    start_haproxy(spawn, tmp_path, f"frontend f\n    mode tcp\n    bind 127.0.0.1:{hport}\n"
                  f"    default_backend b\nbackend b\n    mode tcp\n"
                  f"    server s 127.0.0.1:{dport} {send}\n", hport)
    data = seeded_bytes(1 << 20, 14)
    me = send_and_collect(hport, data)
    version = 2 if send.endswith("v2") else 1
    dx.wait_err(rf"PROXY v{version} header: client {me}$")
    dx.wait_err(rf"accepted {me} on ")
    assert dx.wait(TIMEOUT) == 0, dx.err
    assert sha(dx.wait_out_eof()) == sha(data)


def test_echo_behind_nginx_stream(spawn, start_listener, tmp_path):
    """nginx's stream module with `proxy_protocol on` in front of
    `listen -k --echo --accept-proxy`: the client is named, and 1 MiB comes
    back whole (sent and read at once)."""
    nginx = need("nginx")
    module = "/usr/lib/nginx/modules/ngx_stream_module.so"
    dx, dport = start_listener(["-k", "--echo", "--accept-proxy", "-v"])
    nport = free_port()
    conf = tmp_path / "nginx.conf"
    conf.write_text(f"load_module {module};\nworker_processes 1;\n"
                    "events { worker_connections 64; }\n"
                    f"stream {{ server {{ listen 127.0.0.1:{nport}; proxy_pass 127.0.0.1:{dport}; "
                    "proxy_protocol on; } }\n")
    ng = spawn([nginx, "-p", str(tmp_path), "-e", "stderr", "-c", str(conf),
                "-g", f"daemon off; pid {tmp_path}/nginx.pid;"], name="nginx")
    wait_listening(nport, proc=ng)
    data = seeded_bytes(1 << 20, 15)
    s = connect(nport)
    me = "%s:%d" % s.getsockname()
    t = threading.Thread(target=s.sendall, args=(data,), daemon=True)
    t.start()
    back = recv_exact(s, len(data))
    t.join(TIMEOUT)
    s.close()
    assert sha(back) == sha(data)
    dx.wait_err(rf"PROXY v1 header: client {me}$")
    dx.wait_err(rf"{me}: connected")


@pytest.mark.parametrize("version", ["", "=v2"])
def test_relay_send_proxy_to_haproxy(version, spawn, start_duplex, tmp_path):
    """`relay --send-proxy[=v2]` in front of haproxy `bind ... accept-proxy`
    (mode http, answering with %[src]:%[src_port] %[dst]:%[dst_port]):
    haproxy takes the header and sees the relay's client and the relay's
    address it connected to."""
    hport = free_port()
    start_haproxy(spawn, tmp_path, f"frontend f\n    mode http\n"
                  f"    bind 127.0.0.1:{hport} accept-proxy\n"
                  "    http-request return status 200 content-type text/plain "
                  "lf-string \"%[src]:%[src_port] %[dst]:%[dst_port]\\n\"\n", hport)
    r = start_duplex(["relay", "-k", f"--send-proxy{version}", "127.0.0.1:0", f"127.0.0.1:{hport}"])
    rport = int(r.wait_err(LISTENING_RE).group(2))
    s = connect(rport)
    me = "%s:%d" % s.getsockname()
    s.sendall(b"GET / HTTP/1.0\r\nHost: x\r\n\r\n")
    reply, _ = read_to_eof(s)
    s.close()
    assert reply.startswith(b"HTTP/1.0 200") or reply.startswith(b"HTTP/1.1 200"), reply
    assert reply.rstrip().endswith(f"{me} 127.0.0.1:{rport}".encode()), reply


# ------------------------------------------- headers written by the test --


def header_client(port, header, then=b""):
    """A client that sends header + then; returns the socket."""
    s = connect(port)
    s.sendall(header + then)
    return s


@pytest.mark.parametrize("mode", ["once", "k", "echo", "broker", "chat", "exec"])
def test_every_listen_mode_takes_the_header_client(mode, start_listener):
    """Each listen mode names the header's client, 203.0.113.7:4242 (not
    127.0.0.1): -v, --chat's names, --exec's DUPLEX_PEER_*; a client with
    no header before it is refused and the server still takes the next."""
    args = {"once": [], "k": ["-k"], "echo": ["-k", "--echo"], "broker": ["--broker"],
            "chat": ["--chat"],
            "exec": ["-k", "--sh-exec",
                     'echo "$DUPLEX_PEER_ADDR $DUPLEX_PEER_PORT $DUPLEX_LOCAL_ADDR $DUPLEX_LOCAL_PORT"; '
                     'cat']}[mode]
    dx, port = start_listener([*args, "--accept-proxy", "-v"])
    bad = header_client(port, b"hello without a header\n")
    assert closed_within(bad, TIMEOUT)
    bad.close()
    dx.wait_err(r"refused: no valid PROXY header")
    # the header's destination (as haproxy passes it on) is --exec's DUPLEX_LOCAL_*
    s = header_client(port, v2_header("203.0.113.7", 4242, "192.0.2.5", 8443), b"line one\n")
    try:
        dx.wait_err(r"PROXY v2 header: client 203\.0\.113\.7:4242$")
        if mode == "exec":
            assert recv_until(s, lambda b: b"\n" in b).startswith(b"203.0.113.7 4242 192.0.2.5 8443\n")
        elif mode == "echo":
            assert recv_exact(s, 9) == b"line one\n"
        elif mode == "chat":
            dx.wait_out(lambda b: b"[203.0.113.7:4242] line one\n" in b)
        else:
            dx.wait_out(lambda b: b"line one\n" in b)
        if mode == "once":
            dx.wait_err(r"accepted 203\.0\.113\.7:4242 on ")
        elif mode != "exec":
            dx.wait_err(r"203\.0\.113\.7:4242: connected")
        else:
            dx.wait_err(r"203\.0\.113\.7:4242: connected, running process")
    finally:
        s.close()


def test_deny_applies_to_the_real_client(start_listener):
    """--deny names the header's client: refused, with the rule; another
    client through the same load balancer is served. --allow of the
    clients' range admits them though the balancer (127.0.0.1) is outside."""
    dx, port = start_listener(["-k", "--echo", "--accept-proxy", "-v", "--allow", "203.0.113.0/24",
                               "--deny", "203.0.113.7"])
    s = header_client(port, v1_header("203.0.113.7", 1000), b"x")
    assert closed_within(s, TIMEOUT)
    s.close()
    dx.wait_err(r"203\.0\.113\.7:1000: refused: not allowed by --allow/--deny "
                r"\(matches deny rule 203\.0\.113\.7/32\)")
    s = header_client(port, v1_header("203.0.113.8", 1001), b"ping")
    assert recv_exact(s, 4) == b"ping"
    s.close()
    s = header_client(port, v1_header("198.51.100.1", 1002), b"x")
    assert closed_within(s, TIMEOUT)
    s.close()
    dx.wait_err(r"198\.51\.100\.1:1002: refused: not allowed by --allow/--deny "
                r"\(matches no allow rule\)")


@pytest.mark.parametrize("bad,why", [
    (b"GET / HTTP/1.1\r\n\r\n", "no valid PROXY header"),
    (b"PROXY TCP4 1.2.3.4 5.6.7.8 99999 1\r\n", "no valid PROXY header"),
    (b"PROXY TCP4 " + b"1" * 120, "no valid PROXY header"),     # over 107 bytes, no CRLF
    (V2_SIG + b"\x31\x11\x00\x0c" + bytes(12), "no valid PROXY header"),  # version 3
    (V2_SIG + b"\x21\x11\xff\xff", "no valid PROXY header"),      # 16 + 65535: too long
    (b"PROXY TCP4 1.2.3.4", "no complete PROXY header in time"),  # then nothing
])
def test_bad_headers_are_refused(bad, why, start_listener):
    """Missing, malformed, oversized and slow headers: the connection is
    closed (a slow one within -w 1), a -v line says why, and the server
    serves the next client."""
    dx, port = start_listener(["-k", "--echo", "--accept-proxy", "-v", "-w", "1"])
    s = connect(port)
    s.sendall(bad)
    t0 = time.monotonic()
    assert closed_within(s, TIMEOUT)
    took = time.monotonic() - t0
    s.close()
    dx.wait_err(rf"127\.0\.0\.1:\d+: refused: {why}")
    if "in time" in why:
        assert 0.7 < took < 4, took
    good = header_client(port, v1_header("192.0.2.1", 7), b"ok")
    assert recv_exact(good, 2) == b"ok"
    good.close()


def test_closed_before_the_header_is_refused(start_listener):
    dx, port = start_listener(["-k", "--echo", "--accept-proxy", "-v"])
    s = connect(port)
    s.sendall(b"PROXY TCP4 1.2")
    s.shutdown(socket.SHUT_WR)
    assert closed_within(s, TIMEOUT)
    s.close()
    dx.wait_err(r"refused: closed before a complete PROXY header")


@pytest.mark.parametrize("pieces", [
    [v1_header("192.0.2.9", 99) + b"payload in the same segment"],
    [b"PRO", b"XY TCP4 192.0.2.9 ", b"127.0.0.1 99 80\r", b"\npayload after a split header"],
    [v2_header("192.0.2.9", 99, "127.0.0.1", 80, tlv=b"\x04\x00\x03abc") + b"payload after TLVs"],
    [V2_SIG[:7], V2_SIG[7:] + b"\x21\x11\x00", b"\x0c" + v2_header("192.0.2.9", 99, "127.0.0.1", 80)[16:],
     b"payload after v2 in pieces"],
])
def test_no_payload_byte_is_lost(pieces, start_listener):
    """However the header is split over segments, what follows it reaches
    the service whole: nothing swallowed with the header."""
    dx, port = start_listener(["-k", "--echo", "--accept-proxy", "-v"])
    s = connect(port)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    for i, piece in enumerate(pieces):
        s.sendall(piece)
        if i + 1 < len(pieces):
            time.sleep(0.05)  # separate segments (input shaping, not a wait)
    payload = pieces[-1].split(b"payload", 1)[1]
    assert recv_exact(s, len(b"payload") + len(payload)) == b"payload" + payload
    s.close()
    dx.wait_err(r"client 192\.0\.2\.9:99$")


def target_socket():
    """A plain listening socket standing for relay's TARGET: the test reads
    exactly what relay sends it."""
    t = socket.socket()
    t.bind(("127.0.0.1", 0))
    t.listen(8)
    t.settimeout(TIMEOUT)
    return t


def received(target):
    """The next connection's bytes to its end."""
    conn, _ = target.accept()
    try:
        return read_to_eof(conn)[0]
    finally:
        conn.close()


# An incoming header, in each version, and what --send-proxy[=v2] must pass
# on: the header's client AND the address it reached (haproxy's send-proxy
# behind accept-proxy: "the advertised address will be used"), never the
# relay's own address.
IN_HEADER = {1: v1_header("203.0.113.5", 5555, "198.51.100.10", 443),
             2: v2_header("203.0.113.5", 5555, "198.51.100.10", 443)}
PASSED_ON = {1: b"PROXY TCP4 203.0.113.5 198.51.100.10 5555 443\r\n",
             2: V2_SIG + b"\x21\x11\x00\x0c" + socket.inet_aton("203.0.113.5")
             + socket.inet_aton("198.51.100.10") + struct.pack("!HH", 5555, 443)}


@pytest.mark.parametrize("path", ["tcp", "balance", "ssl"])
@pytest.mark.parametrize("out", [1, 2])
def test_relay_passes_both_header_addresses_on(out, path, start_duplex):
    """relay --accept-proxy --send-proxy[=v2]: the header TARGET gets names
    the incoming header's source and destination, addresses and ports, byte
    for byte (the incoming one in the other version); the payload follows
    intact. The same with several targets (--balance roundrobin: each
    target gets its own client's header) and with TLS from the client
    (--ssl: the header before the handshake)."""
    targets = [target_socket() for _ in range(2 if path == "balance" else 1)]
    args = ["relay", "-k", "--accept-proxy", "--send-proxy" + ("=v2" if out == 2 else "")]
    if path == "balance":
        args += ["--balance", "roundrobin"]
    if path == "ssl":
        args += ["--ssl"]
    r = start_duplex([*args, "127.0.0.1:0", *("127.0.0.1:%d" % t.getsockname()[1] for t in targets)])
    rport = int(r.wait_err(LISTENING_RE).group(2))
    incoming = 2 if out == 1 else 1
    clients = [(IN_HEADER[incoming], PASSED_ON[out])]
    if path == "balance":  # a second client, other addresses: no header mixed up
        clients.append((v2_header("192.0.2.77", 7777, "198.51.100.11", 8443),
                        b"PROXY TCP4 192.0.2.77 198.51.100.11 7777 8443\r\n" if out == 1 else
                        V2_SIG + b"\x21\x11\x00\x0c" + socket.inet_aton("192.0.2.77")
                        + socket.inet_aton("198.51.100.11") + struct.pack("!HH", 7777, 8443)))
    data = seeded_bytes(100_000, 16)
    used = set()
    for header, want in clients:
        s = header_client(rport, header)
        if path == "ssl":
            import ssl
            ctx = ssl.create_default_context()
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
            s = ctx.wrap_socket(s)
        s.sendall(data)
        ready, _, _ = select.select(targets, [], [], TIMEOUT)
        assert ready, "no connection reached a target"
        used.add(ready[0])
        conn, _ = ready[0].accept()
        got = recv_exact(conn, len(want) + len(data))
        conn.close()
        s.close()
        assert got[:len(want)] == want, got[:80]
        assert sha(got[len(want):]) == sha(data)
    assert len(used) == len(targets)  # --balance roundrobin: one client each
    for t in targets:
        t.close()


def test_relay_passes_an_ipv6_header_on(start_duplex):
    """An IPv6 header (v1 TCP6) goes on as v2 AF_INET6 with both of its
    addresses and ports."""
    target = target_socket()
    r = start_duplex(["relay", "--accept-proxy", "--send-proxy=v2", "127.0.0.1:0",
                      "127.0.0.1:%d" % target.getsockname()[1]])
    rport = int(r.wait_err(LISTENING_RE).group(2))
    s = header_client(rport, b"PROXY TCP6 2001:db8::1 2001:db8::2 1000 2000\r\n", b"six")
    s.shutdown(socket.SHUT_WR)
    got = received(target)
    s.close()
    target.close()
    want = (V2_SIG + b"\x21\x21\x00\x24" + socket.inet_pton(socket.AF_INET6, "2001:db8::1")
            + socket.inet_pton(socket.AF_INET6, "2001:db8::2") + struct.pack("!HH", 1000, 2000))
    assert got == want + b"six", got


@pytest.mark.parametrize("out", [1, 2])
def test_relay_inetd_passes_both_header_addresses_on(out, spawn, duplex, tmp_path):
    """relay --inetd --accept-proxy --send-proxy (socat hands a socketpair
    over: no address of its own): the header's destination is passed on,
    not UNKNOWN and not the socketpair's."""
    socat = need("socat")
    target = target_socket()
    port = free_port()
    script = tmp_path / "relay.sh"  # (socat's SYSTEM: would split HOST:PORT at its colon)
    script.write_text(f"#!/bin/sh\nexec {duplex} relay --inetd --accept-proxy "
                      f"--send-proxy{'=v2' if out == 2 else ''} 127.0.0.1:{target.getsockname()[1]}\n")
    script.chmod(0o755)
    proc = spawn([socat, f"TCP-LISTEN:{port},bind=127.0.0.1,reuseaddr", f"SYSTEM:{script}"])
    wait_listening(port, proc=proc)
    s = header_client(port, IN_HEADER[2 if out == 1 else 1], b"inetd payload")
    s.shutdown(socket.SHUT_WR)
    got = received(target)
    s.close()
    target.close()
    assert got == PASSED_ON[out] + b"inetd payload", got


@pytest.mark.parametrize("send", ["send-proxy", "send-proxy-v2"])
def test_relay_passes_the_header_on_as_haproxy_does(send, spawn, start_duplex, tmp_path):
    """The same incoming headers (v1 TCP4, v1 TCP6, v2 TCP4) through haproxy
    (`bind ... accept-proxy`, `server ... send-proxy[-v2]`) and through
    relay --accept-proxy --send-proxy[=v2]: each target receives the very
    same bytes (haproxy adds no TLV by default)."""
    hp_target, dx_target = target_socket(), target_socket()
    hport = free_port()
    start_haproxy(spawn, tmp_path, f"frontend f\n    mode tcp\n    bind 127.0.0.1:{hport} accept-proxy\n"
                  f"    default_backend b\nbackend b\n    mode tcp\n"
                  f"    server s 127.0.0.1:{hp_target.getsockname()[1]} {send}\n", hport)
    r = start_duplex(["relay", "-k", "--accept-proxy", "--send-proxy" + ("=v2" if send.endswith("v2") else ""),
                      "127.0.0.1:0", "127.0.0.1:%d" % dx_target.getsockname()[1]])
    rport = int(r.wait_err(LISTENING_RE).group(2))
    for header in (IN_HEADER[1], b"PROXY TCP6 2001:db8::1 2001:db8::2 1000 2000\r\n", IN_HEADER[2]):
        got = []
        for port, target in ((hport, hp_target), (rport, dx_target)):
            s = header_client(port, header, b"payload")
            s.shutdown(socket.SHUT_WR)
            got.append(received(target))
            s.close()
        assert got[1] == got[0], (header, got)
        assert got[1].endswith(b"payload") and len(got[1]) > len(b"payload")
    hp_target.close()
    dx_target.close()


def test_relay_unix_client_is_sent_as_unspec(start_duplex, tmp_path):
    """A Unix client of relay --send-proxy=v2 (no address) is sent as
    AF_UNSPEC: the target's own addresses stand."""
    target = target_socket()
    path = tmp_path / "in.sock"
    r2 = start_duplex(["relay", "-k", "-v", "--send-proxy=v2", f"unix:{path}",
                       "127.0.0.1:%d" % target.getsockname()[1]])
    r2.wait_err(r"listening on ")
    u = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    u.settimeout(TIMEOUT)
    u.connect(str(path))
    u.sendall(b"from unix")
    u.shutdown(socket.SHUT_WR)
    got = received(target)
    u.close()
    target.close()
    assert got == V2_SIG + b"\x21\x00\x00\x00" + b"from unix", got


@pytest.mark.parametrize("args,msg", [
    (["listen", "--send-proxy", "0"], "--send-proxy is for relay"),
    (["relay", "--send-proxy=v3", "0", "127.0.0.1:1"], "expected v1 or v2"),
    (["listen", "-u", "--accept-proxy", "0"], "not with -u"),
    (["connect", "--accept-proxy", "127.0.0.1", "1"], "not with connect"),
    (["relay", "-u", "--send-proxy", "0", "127.0.0.1:1"], "not with -u"),
    (["relay", "-u", "--accept-proxy", "0", "127.0.0.1:1"], "not with -u"),
])
def test_usage_errors(args, msg, run_duplex):
    rc, _, err = run_duplex(args)
    assert rc == 2, err
    assert msg in err, err



def test_header_comes_before_tls(start_listener):
    """listen --ssl --accept-proxy: the header is plain, before the TLS
    handshake (as haproxy sends it to a TLS server); the session is then TLS
    and the client is the header's."""
    import ssl
    dx, port = start_listener(["-k", "--echo", "--ssl", "--accept-proxy", "-v"])
    raw = connect(port)
    raw.sendall(v1_header("198.51.100.4", 4444))
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    s = ctx.wrap_socket(raw)
    s.sendall(b"over tls")
    assert recv_exact(s, 8) == b"over tls"
    s.close()
    dx.wait_err(r"PROXY v1 header: client 198\.51\.100\.4:4444$")


def test_exec_over_tls_sees_both_header_addresses(start_listener):
    """listen --exec --ssl --accept-proxy: the program (behind the server's
    TLS pump) gets the header's client and destination, not the sockets'."""
    import ssl
    dx, port = start_listener(["-k", "--ssl", "--accept-proxy", "-v", "--sh-exec",
                               'echo "$DUPLEX_PEER_ADDR $DUPLEX_PEER_PORT $DUPLEX_LOCAL_ADDR '
                               '$DUPLEX_LOCAL_PORT"'])
    raw = connect(port)
    raw.sendall(v1_header("198.51.100.4", 4444, "192.0.2.7", 993))
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    s = ctx.wrap_socket(raw)
    assert recv_until(s, lambda b: b"\n" in b) == b"198.51.100.4 4444 192.0.2.7 993\n"
    s.close()


def test_inetd_connection_takes_its_header(spawn, duplex, tmp_path):
    """listen --inetd --accept-proxy (socat hands a socketpair over, which has
    no IP address): the header's client passes --allow and is the program's
    $DUPLEX_PEER_*; a connection with no header is refused."""
    socat = need("socat")
    port = free_port()
    script = tmp_path / "who.sh"  # (socat would strip the quotes of an inline command)
    script.write_text('#!/bin/sh\necho "$DUPLEX_PEER_ADDR $DUPLEX_PEER_PORT $DUPLEX_LOCAL_ADDR '
                      '$DUPLEX_LOCAL_PORT"\n')
    script.chmod(0o755)
    cmd = f"{duplex} listen --inetd --accept-proxy -v --allow 203.0.113.0/24 --exec {script}"
    proc = spawn([socat, f"TCP-LISTEN:{port},bind=127.0.0.1,fork,reuseaddr", f"SYSTEM:{cmd}"])
    wait_listening(port, proc=proc)
    s = header_client(port, v1_header("203.0.113.9", 777, "192.0.2.6", 8080))
    assert recv_until(s, lambda b: b"\n" in b) == b"203.0.113.9 777 192.0.2.6 8080\n"
    s.close()
    s = header_client(port, b"no header\r\n")
    assert read_to_eof(s, allow_reset=True)[0] == b""
    s.close()
    proc.wait_err(r"stdin: refused: no valid PROXY header")
