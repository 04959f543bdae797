"""duplex.exe: usage errors, connection errors and their exit codes, -z
probes, timeouts, and the features Windows lacks (refused, exit 2, naming
Windows). The messages are those of the Linux program (docs/duplex.1, EXIT
STATUS): the platform layer maps Winsock's errors to the same text."""

import re
import socket
import subprocess

import pytest

from conftest import Backlog, closed_port, free_port, wait_listening

# ------------------------------------------------------------------ usage --


def test_version_and_help(run_exe):
    rc, out, err = run_exe(["--version"])
    assert rc == 0, err
    assert out.startswith(b"duplex "), out
    rc, out, err = run_exe(["--help"])
    assert rc == 0, err
    assert out.startswith(b"usage: duplex") and b"connect HOST PORT" in out, out


@pytest.mark.parametrize("args, text", [
    (["connect", "--bogus", "127.0.0.1", "80"], "unknown option '--bogus'"),
    (["connect", "127.0.0.1", "99999"], "99999"),
    (["connect", "8080"], "usage"),  # a PORT without its HOST (HOST alone: port 31337)
    (["listen", "-k", "--max-conns", "0", "127.0.0.1", "0"], "--max-conns"),
])
def test_bad_usage_exits_2(run_exe, args, text):
    rc, out, err = run_exe(args)
    assert rc == 2, err
    assert text in err, err
    assert out == b""


# ------------------------------------------------------- connection errors --


def test_refused_exit_4_exact_message(run_exe):
    port = closed_port()
    rc, out, err = run_exe(["connect", "127.0.0.1", port])
    assert rc == 4, err
    assert err == f"duplex: connect 127.0.0.1:{port}: Connection refused\n"
    assert out == b""


def test_unknown_host_exit_3(run_exe):
    rc, out, err = run_exe(["connect", "nosuchhost.invalid", "80"])
    assert rc == 3, err
    assert err.startswith("duplex: resolve nosuchhost.invalid: "), err


def test_address_in_use_exit_6(run_exe):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        rc, out, err = run_exe(["listen", "127.0.0.1", port])
    assert rc == 6, err
    assert err == f"duplex: listen 127.0.0.1:{port}: Address already in use\n"


def test_second_listener_cannot_steal_the_port(exe_listener, run_exe):
    """Listeners use SO_EXCLUSIVEADDRUSE on Windows (SO_REUSEADDR there
    would let a second process bind the same port): a second duplex.exe on
    the port of a first one fails, exit 6."""
    first, port = exe_listener(["-k", "--echo"])
    rc, out, err = run_exe(["listen", "-k", "--echo", "127.0.0.1", port])
    assert rc == 6, err
    assert "Address already in use" in err, err
    assert first.poll() is None, first.err


def test_connect_timeout_exit_5(run_exe):
    b = Backlog()
    try:
        if not b.hung:
            pytest.skip("could not fill the listen queue on this kernel (connects never hang)")
        rc, out, err = run_exe(["connect", "-w", "1", "127.0.0.1", b.port], timeout=20)
    finally:
        b.close()
    assert rc == 5, err
    assert f"127.0.0.1:{b.port}" in err and re.search(r"timed out", err, re.I), err


def test_idle_timeout_exit_5(run_exe):
    """-w 1: connected (the kernel's backlog accepts), then no byte moves
    for 1 s either way (stdin kept open): exit 5 with the message."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        rc, out, err = run_exe(["connect", "-w", "1", "127.0.0.1", port], stdin=subprocess.PIPE)
    assert rc == 5, err
    assert err == f"duplex: 127.0.0.1:{port}: no traffic for 1 s, closing\n"


# ----------------------------------------------------------------- probes --


def test_probe_open_port_exit_0(run_exe):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        rc, out, err = run_exe(["connect", "-z", "-v", "127.0.0.1", port])
    assert rc == 0, err
    assert err == f"duplex: 127.0.0.1:{port} open\n"


def test_probe_closed_port_exit_4(run_exe):
    rc, out, err = run_exe(["connect", "-z", "127.0.0.1", closed_port()])
    assert rc == 4, err
    assert out == b""


def test_probe_range_one_open(run_exe):
    """A range of ports: 0 as soon as one is open, each reported with -v."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        lo = port - 1 if port > 1025 else port
        rc, out, err = run_exe(["connect", "-z", "-v", "127.0.0.1", f"{lo}-{port}"])
    assert rc == 0, err
    assert f"duplex: 127.0.0.1:{port} open\n" in err, err


# -------------------------------------------------- refused on Windows --

# Unix sockets: refused on every Windows in this build (wine 8, where it is
# tested, has no AF_UNIX).
# --model fork, sockets -p, bench -p: test_process.py; --backend, -O,
# --reuseport, unix: relay ends: test_network.py.
REFUSALS = {
    "unix-listen": ["listen", "-U", "dx-e2e.sock"],
    "unix-connect": ["connect", "-U", "dx-e2e.sock"],
    "inetd-relay": ["relay", "--inetd", "127.0.0.1:1"],
    "inetd-listen": ["listen", "--inetd", "-e", "cmd"],
    # no Redis client (libhiredis) in the Windows build
    "cluster": ["listen", "--chat", "--cluster", "redis://127.0.0.1:6379/room", "127.0.0.1", "0"],
}


@pytest.mark.parametrize("what", sorted(REFUSALS))
def test_refused_on_windows(windows_only, run_exe, what):
    rc, out, err = run_exe(REFUSALS[what])
    assert rc == 2, err
    assert "Windows" in err, err
    assert err.startswith("duplex: "), err
    assert "listening on" not in err


@pytest.mark.parametrize("args", [
    ["connect", "--ssl", "127.0.0.1", "443"],
    ["listen", "--ssl", "127.0.0.1", "0"],
])
def test_ssl_refused_built_without_tls(windows_only, run_exe, args):
    rc, out, err = run_exe(args)
    assert rc == 2, err
    assert "without TLS" in err, err


def test_version_says_no_tls(windows_only, run_exe):
    rc, out, err = run_exe(["--version"])
    assert rc == 0, err
    assert re.search(rb"^tls: no", out, re.M), out


def test_exe_listens_where_linux_peer_connects(exe_listener, start_linux):
    """The smallest interop: a Linux duplex connects to duplex.exe."""
    proc, port = exe_listener(stdin=b"from windows\n")
    peer = start_linux(["connect", "127.0.0.1", port], stdin=b"from linux\n")
    assert peer.wait() == 0, peer.err
    assert proc.wait() == 0, proc.err
    assert peer.out == b"from windows\n"
    assert proc.out == b"from linux\n"


def test_wait_listening_sees_wine_sockets(exe_listener):
    """wine's sockets are the host's: /proc/net/tcp shows duplex.exe's listener."""
    proc, port = exe_listener(["-k", "--echo"])
    wait_listening(port, timeout=5, proc=proc)
