"""End-to-end tests of admission: the access list (--allow/--deny and their
files) applies on every path that takes a client: one-client listen (plain
and --ssl), -k and every server mode, --threads, every --model, relay (plain
and --ssl) and listen -u. A refused client is closed at once and gets
nothing; the next allowed one is served (one-client listen and relay keep
waiting for it). --idle-timeout applies to one-client listen too.
Run: DUPLEX=/abs/build/duplex /usr/bin/python3 -m pytest -q tests/e2e/test_admission.py"""

import re
import socket
import ssl
import subprocess

import pytest

from conftest import LISTENING_RE, have_ipv6_loopback
from servers_util import (connect, echo_roundtrip, name_of, read_to_eof, recv_exact, sockets,
                          wait_for)

__all__ = ["sockets"]  # fixture re-exported from servers_util

ALLOWED, DENIED = "127.0.0.1", "127.0.0.2"

# the same policy written three ways: DENIED is refused, ALLOWED served
RULES = {
    "deny": ["--deny", DENIED],
    "allow": ["--allow", ALLOWED],
    "mapped": ["--deny", "::ffff:" + DENIED],  # an IPv4-mapped rule matches the IPv4 peer
}

# path name -> (duplex arguments, how an allowed client is served, TLS)
PATHS = {
    "listen": (["listen"], "stdio1", False),
    "listen-ssl": (["listen", "--ssl"], "stdio1", True),
    "k-stdio": (["listen", "-k"], "stdio", False),
    "echo": (["listen", "-k", "--echo"], "echo", False),
    "echo-ssl": (["listen", "-k", "--echo", "--ssl"], "echo", True),
    "broker": (["listen", "-k", "--broker"], "stdout", False),
    "chat": (["listen", "-k", "--chat"], "stdout", False),
    "exec": (["listen", "-k", "--exec", "cat"], "echo", False),
    "exec-ssl": (["listen", "-k", "--exec", "cat", "--ssl"], "echo", True),
    "threads": (["listen", "-k", "--echo", "--threads", "2"], "echo", False),
    "model-iterative": (["listen", "-k", "--echo", "--model", "iterative"], "echo", False),
    "model-fork": (["listen", "-k", "--echo", "--model", "fork"], "echo", False),
    "model-thread": (["listen", "-k", "--echo", "--model", "thread"], "echo", False),
    "relay": (["relay"], "relay", False),
    "relay-ssl": (["relay", "--ssl"], "relay", True),
}

# refused clients per test: with --threads 2 they land on both loops
NDENIED = 4


def tls_wrap(sock):
    """A TLS client on sock that accepts duplex's ephemeral certificate."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx.wrap_socket(sock, server_hostname="duplex")


def assert_denied(port, tls):
    """A client from DENIED is closed at once and gets no byte (over TLS:
    the handshake fails, the server closed before it)."""
    s = connect(port, source=DENIED, timeout=10)
    try:
        if tls:
            try:
                s = tls_wrap(s)
            except (ssl.SSLError, OSError):
                return  # closed before (or during) the handshake
        try:
            s.sendall(b"secret\n")
        except OSError:
            return  # already closed
        try:
            got, _ = read_to_eof(s, timeout=5, allow_reset=True)
        except (ssl.SSLError, OSError):
            return
        assert got == b"", f"a refused client got {got!r}"
    finally:
        s.close()


def allowed_client(port, tls):
    s = connect(port, source=ALLOWED)
    return tls_wrap(s) if tls else s


def start(start_duplex, spawn, duplex, path, rule):
    """Start the path's server with the rule; returns (proc, port)."""
    args, kind, _ = PATHS[path]
    extra = []
    if kind == "relay":
        # the relay's target: an echo server that takes everyone
        target = spawn([duplex, "listen", "-k", "--echo", "127.0.0.1", "0"], name="echo target")
        tport = int(target.wait_err(LISTENING_RE).group(2))
        extra = [f"127.0.0.1:{tport}"]
        where = ["127.0.0.1:0"]
    else:
        where = ["127.0.0.1", "0"]
    # one-client listen: what it sends the client; stdio modes: kept open
    stdin = b"hello\n" if kind == "stdio1" else subprocess.PIPE
    proc = start_duplex([*args, "-v", *RULES[rule], *where, *extra], stdin=stdin)
    port = int(proc.wait_err(LISTENING_RE).group(2))
    return proc, port


@pytest.mark.parametrize("rule", sorted(RULES))
@pytest.mark.parametrize("path", list(PATHS))
def test_refused_then_allowed(path, rule, start_duplex, spawn, duplex, sockets):
    proc, port = start(start_duplex, spawn, duplex, path, rule)
    _, kind, tls = PATHS[path]
    for _ in range(NDENIED):
        assert_denied(port, tls)
    wait_for(lambda: proc.err.count("refused: not allowed by --allow/--deny") == NDENIED, 10,
             f"{NDENIED} 'refused' lines; stderr={proc.err!r}")
    assert re.search(re.escape(DENIED) + r":\d+: refused: not allowed by --allow/--deny "
                     r"\((matches deny rule 127\.0\.0\.2/32|matches no allow rule)\)", proc.err)
    assert proc.poll() is None, proc.err

    # the next allowed client is served (a one-client server kept waiting)
    c = sockets(allowed_client(port, tls))
    if kind == "stdio1":
        assert recv_exact(c, 6) == b"hello\n"
        c.sendall(b"ping\n")
        proc.wait_out(lambda out: b"ping\n" in out)
    elif kind == "stdio":
        c.sendall(b"ping\n")
        proc.wait_out(lambda out: b"ping\n" in out)
        proc.stdin.write(b"hello\n")
        proc.stdin.flush()
        assert recv_exact(c, 6) == b"hello\n"
    elif kind == "stdout":
        c.sendall(b"ping\n")
        proc.wait_out(lambda out: b"ping\n" in out)
    else:  # echo, relay
        assert echo_roundtrip(c, b"ping\n") == b"ping\n"
    # nothing of the refused clients got through
    assert b"secret" not in proc.out
    assert DENIED.encode() not in proc.out
    assert not [line for line in proc.err.splitlines()
                if DENIED in line and "refused: not allowed" not in line], proc.err


@pytest.mark.skipif(not have_ipv6_loopback(), reason="no IPv6 loopback")
@pytest.mark.parametrize("rule", [["--deny", "::ffff:127.0.0.2"], ["--deny", "::ffff:127.0.0.0/104"],
                                  ["--allow", "::ffff:127.0.0.1"]])
def test_mapped_rule_on_a_dual_stack_socket(rule, start_duplex, sockets):
    """No address: one dual-stack socket, IPv4 clients seen as
    ::ffff:a.b.c.d. A mapped rule matches them as IPv4 (and a /104 mapped
    prefix is 127.0.0.0/8)."""
    proc = start_duplex(["listen", "--echo", "-k", "-v", *rule, "0"])
    port = int(proc.wait_err(LISTENING_RE).group(2))
    assert_denied(port, False)
    proc.wait_err(r"127\.0\.0\.2:\d+: refused: not allowed")
    if rule[1].endswith("/104"):
        assert_denied(port, False)  # 127.0.0.1 too: all of 127.0.0.0/8
    else:
        assert echo_roundtrip(sockets(connect(port, source=ALLOWED)), b"ok\n") == b"ok\n"


def test_bad_mapped_prefix_is_a_usage_error(run_duplex):
    """::ffff:a.b.c.d/N with N < 96 would reach beyond IPv4: refused."""
    rc, _, err = run_duplex(["listen", "-k", "--echo", "--deny", "::ffff:127.0.0.0/80", "127.0.0.1", "0"])
    assert rc == 2, err
    assert "invalid --deny rule '::ffff:127.0.0.0/80'" in err
    assert "/96" in err
    assert "listening" not in err


# ---------------------------------------------------------------- rule files --


def test_rule_file_long_comment_several_rules_trailing_comments(start_listener, sockets, tmp_path):
    """A comment longer than any buffer stays a comment (its tail, here an
    address, is no rule), several rules share a line, comments follow rules."""
    f = tmp_path / "allow.txt"
    f.write_text("# " + "x" * 600 + " 127.0.0.2\n"
                 "127.0.0.3 127.0.0.1\t127.0.0.9 # three rules # and a comment\n"
                 "127.0.0.4#no space\r\n")
    proc, port = start_listener(["--echo", "-k", "-v", "--allowfile", str(f)])
    assert_denied(port, False)  # 127.0.0.2: only in the comment
    for src in ("127.0.0.1", "127.0.0.3", "127.0.0.4", "127.0.0.9"):
        assert echo_roundtrip(sockets(connect(port, source=src)), b"x\n") == b"x\n", src


@pytest.mark.parametrize("flag", ["--allowfile", "--denyfile"])
def test_rule_file_bad_word_names_file_and_line(flag, run_duplex, tmp_path):
    f = tmp_path / "rules.txt"
    f.write_text("# ok\n127.0.0.1 # " + "y" * 1000 + "\n\n127.0.0.2 bog_us\n")
    rc, _, err = run_duplex(["listen", "-k", "--echo", flag, str(f), "127.0.0.1", "0"])
    assert rc == 2, err
    assert f"duplex: {flag} {f}:4: not an address or CIDR range" in err
    assert "listening" not in err


# ------------------------------------------------------------------- listen -u --


UDP_LISTENING_RE = r"duplex: listening on 127\.0\.0\.1:(\d+) \(udp\)"


@pytest.mark.parametrize("rule", sorted(RULES))
def test_udp_listen_drops_refused_senders(rule, start_duplex, sockets):
    proc = start_duplex(["listen", "-u", "-v", *RULES[rule], "127.0.0.1", "0"], stdin=subprocess.PIPE)
    port = int(proc.wait_err(UDP_LISTENING_RE).group(1))
    bad = sockets(socket.socket(socket.AF_INET, socket.SOCK_DGRAM))
    bad.bind((DENIED, 0))
    good = sockets(socket.socket(socket.AF_INET, socket.SOCK_DGRAM))
    good.bind((ALLOWED, 0))
    for i in range(3):
        bad.sendto(b"secret %d\n" % i, ("127.0.0.1", port))
    proc.wait_err(re.escape(f"datagram from {name_of(bad)}: refused: not allowed by --allow/--deny"))
    good.sendto(b"ping\n", ("127.0.0.1", port))
    proc.wait_out(lambda out: b"ping\n" in out)
    # stdin goes to the last peer heard: the allowed one, never the refused
    proc.stdin.write(b"reply\n")
    proc.stdin.flush()
    good.settimeout(10)
    assert good.recv(100) == b"reply\n"
    assert b"secret" not in proc.out
    # good's -v line comes after bad's three: stderr has caught up with them
    proc.wait_err(re.escape(f"datagram from {name_of(good)}") + "$")
    assert proc.err.count("refused: not allowed") == 1  # said once for a sender that keeps at it
    bad.setblocking(False)
    with pytest.raises(BlockingIOError):
        bad.recv(100)


@pytest.mark.parametrize("flag", [["--max-conns", "3"], ["--idle-timeout", "5"]])
def test_udp_listen_connection_limits_are_usage_errors(flag, run_duplex):
    """They bound and age listen -u -k's and --exec's peers
    (test_udp_servers.py); a plain listen -u has no peers to count."""
    rc, _, err = run_duplex(["listen", "-u", *flag, "127.0.0.1", "0"])
    assert rc == 2, err
    assert "UDP has no connection otherwise" in err


# ------------------------------------------------------- what cannot apply --


@pytest.mark.parametrize("args", [
    ["listen", "-k", "--echo", "--allow", "127.0.0.1", "-U", "{sock}"],
    ["listen", "--deny", "127.0.0.1", "-U", "{sock}"],
    ["relay", "--allow", "127.0.0.1", "unix:{sock}", "127.0.0.1:9"],
])
def test_access_list_on_a_unix_socket_is_a_usage_error(args, run_duplex, tmp_path):
    """A Unix socket's clients have no IP address: a list would let them all in."""
    sock = str(tmp_path / "s")
    rc, _, err = run_duplex([a.replace("{sock}", sock) for a in args])
    assert rc == 2, err
    assert "match IP addresses" in err


# ----------------------------------------------------- one-client idle timeout --


@pytest.mark.parametrize("tls", [False, True], ids=["plain", "ssl"])
def test_listen_idle_timeout_closes_the_one_client(tls, start_listener, sockets):
    args = ["--idle-timeout", "0.5"] + (["--ssl"] if tls else [])
    proc, port = start_listener(args, stdin=subprocess.PIPE)  # stdin open, silent
    c = sockets(allowed_client(port, tls))
    if tls:
        c.sendall(b"x\n")
        proc.wait_out(lambda out: b"x\n" in out)
    try:
        got, _ = read_to_eof(c, timeout=10, allow_reset=True)
    except ssl.SSLError:
        got = b""
    assert got == b""
    assert proc.wait(10) == 5, proc.err
    assert "no traffic for 0.5 s, closing" in proc.err
