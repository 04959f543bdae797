"""End-to-end tests of duplex started by the system: systemd socket
activation (LISTEN_FDS/LISTEN_PID/LISTEN_FDNAMES, with systemd-socket-activate
from Debian's systemd package) for listen and relay, and --inetd (the
connection on stdin/stdout: systemd-socket-activate --accept --inetd, socat
EXEC) for relay and listen --exec. Data checked by hash; access lists still
apply.

Run: DUPLEX=/abs/build/duplex /usr/bin/python3 -m pytest -q tests/e2e/test_activation.py"""

import hashlib
import socket

import pytest

from conftest import TIMEOUT, closed_port, free_port, need, seeded_bytes, wait_listening
from servers_util import connect, read_to_eof, recv_until

pytestmark = pytest.mark.skipif(not hasattr(socket, "AF_UNIX"), reason="POSIX only")


@pytest.fixture
def activate(spawn):
    """activate(args, accept=False, fdnames=None, ports=1) runs
    `systemd-socket-activate -l 127.0.0.1:PORT... [--accept --inetd] ARGS`
    and returns (proc, [ports]) once it listens."""
    tool = need("systemd-socket-activate")

    def _start(args, accept=False, fdname=None, ports=1):
        chosen = [free_port() for _ in range(ports)]
        argv = [tool]
        for p in chosen:
            argv += ["-l", f"127.0.0.1:{p}"]
        if accept:
            argv += ["--accept", "--inetd"]
        if fdname:
            argv += [f"--fdname={fdname}"]
        proc = spawn([*argv, *map(str, args)], name="systemd-socket-activate " + " ".join(map(str, args)))
        for p in chosen:
            wait_listening(p, proc=proc)
        return proc, chosen

    return _start


@pytest.fixture
def echo_port(start_listener):
    _, port = start_listener(["-k", "--echo"])
    return port


def roundtrip(port, seed, size=300_000):
    """Send random bytes, end our side, read everything back: its hash must
    be the one sent (an echo at the end of the path)."""
    data = seeded_bytes(size, seed)
    s = connect(port)
    s.sendall(data)
    s.shutdown(socket.SHUT_WR)
    got = read_to_eof(s)[0]
    s.close()
    assert hashlib.sha256(got).hexdigest() == hashlib.sha256(data).hexdigest(), \
        f"{len(got)} bytes back of {len(data)}"


# ------------------------------------------------------ socket activation --


def test_listen_takes_the_socket_the_system_opened(activate, duplex):
    proc, (port,) = activate([duplex, "listen", "-v", "-k", "--echo"], fdname="web")
    roundtrip(port, 1)
    roundtrip(port, 2)
    proc.wait_err(r"socket activation: 1 listening socket from the system \(LISTEN_FDS\)")
    proc.wait_err(rf"listening on 127\.0\.0\.1:{port} \(socket activation: descriptor 3, name web\)")
    assert "31337" not in proc.err  # its own default port is not opened


def test_relay_takes_every_socket_and_ignores_its_listen_argument(activate, duplex, echo_port):
    unused = free_port()
    proc, ports = activate([duplex, "relay", "-v", "-k", f"127.0.0.1:{unused}", f"127.0.0.1:{echo_port}"],
                           ports=2)
    for i, port in enumerate(ports):
        roundtrip(port, 10 + i)
    proc.wait_err(r"2 listening sockets from the system \(LISTEN_FDS\); the address arguments are not used")
    with pytest.raises(ConnectionRefusedError):
        connect(unused).close()


def test_the_variables_and_sockets_do_not_reach_children(activate, duplex):
    # LISTEN_* removed from the environment; fd 3 close-on-exec
    script = 'echo "[$LISTEN_FDS][$LISTEN_PID][$LISTEN_FDNAMES]"; test -e /proc/self/fd/3 && echo fd3 open; echo end'
    _, (port,) = activate([duplex, "listen", "-k", "--sh-exec", script], fdname="x")
    s = connect(port)
    s.shutdown(socket.SHUT_WR)
    assert read_to_eof(s)[0] == b"[][][]\nend\n"
    s.close()


def test_a_listen_pid_of_another_process_is_not_ours(start_duplex):
    # LISTEN_FDS meant for some other process: ignored (fd 3 is not touched)
    # and the port asked for is opened as usual
    p = start_duplex(["listen", "-v", "-k", "--echo", "127.0.0.1", "0"],
                     env={"LISTEN_PID": "1", "LISTEN_FDS": "1"})
    m = p.wait_err(r"listening on 127\.0\.0\.1:(\d+)$")
    roundtrip(int(m.group(1)), 20)
    assert "socket activation" not in p.err


def test_access_lists_apply_to_activated_sockets(activate, duplex):
    proc, (port,) = activate([duplex, "listen", "-v", "-k", "--echo", "--deny", "127.0.0.1"])
    s = connect(port)
    s.sendall(b"x")
    assert read_to_eof(s, allow_reset=True)[0] == b""
    s.close()
    proc.wait_err(r"refused: not allowed by --allow/--deny \(matches deny rule 127\.0\.0\.1/32\)")


def test_activation_refuses_what_it_cannot_serve(activate, duplex):
    proc, (port,) = activate([duplex, "listen", "-u"])
    # systemd-socket-activate starts the program at the first connection
    s = socket.socket()
    s.settimeout(TIMEOUT)
    try:
        s.connect(("127.0.0.1", port))
    except ConnectionError:
        pass  # the socket is closed with duplex: reset
    s.close()
    proc.wait_err(r"socket activation \(LISTEN_FDS\): not with -u")
    assert proc.wait() == 2


# ------------------------------------------------------------------ inetd --


def test_relay_inetd_under_systemd_accept(activate, duplex, echo_port):
    dead = closed_port()
    proc, (port,) = activate([duplex, "relay", "-v", "--inetd", f"127.0.0.1:{dead}", f"127.0.0.1:{echo_port}"],
                             accept=True)
    for seed in (30, 31, 32):  # a process per connection
        roundtrip(port, seed)
    proc.wait_err(rf"connected to 127\.0\.0\.1:{echo_port}")


def test_relay_inetd_under_socat_exec(spawn, duplex, echo_port):
    socat = need("socat")
    port = free_port()
    cmd = f"{duplex} relay --inetd 127.0.0.1\\:{echo_port}"
    proc = spawn([socat, f"TCP-LISTEN:{port},bind=127.0.0.1,fork,reuseaddr", f"EXEC:{cmd}"])
    wait_listening(port, proc=proc)
    roundtrip(port, 40)
    roundtrip(port, 41)


def test_listen_inetd_exec_runs_the_program_on_the_connection(activate, duplex):
    proc, (port,) = activate([duplex, "listen", "--inetd", "--sh-exec", 'echo "from $NCAT_REMOTE_ADDR"; exec cat'],
                             accept=True)
    data = seeded_bytes(200_000, 50)
    s = connect(port)
    first = recv_until(s, lambda b: b"\n" in b)
    assert first == b"from 127.0.0.1\n"
    s.sendall(data)
    s.shutdown(socket.SHUT_WR)
    got = read_to_eof(s)[0]
    s.close()
    assert hashlib.sha256(got).hexdigest() == hashlib.sha256(data).hexdigest()


@pytest.mark.parametrize("cmd", ["relay", "listen"])
def test_inetd_clients_pass_the_access_list(activate, duplex, echo_port, cmd):
    what = [f"127.0.0.1:{echo_port}"] if cmd == "relay" else ["--sh-exec", "echo ran"]
    proc, (port,) = activate([duplex, cmd, "-v", "--inetd", "--deny", "127.0.0.0/8", *what], accept=True)
    s = connect(port)
    s.sendall(b"hello")
    assert read_to_eof(s, allow_reset=True)[0] == b""
    s.close()
    proc.wait_err(r"refused: not allowed by --allow/--deny \(matches deny rule 127\.0\.0\.0/8\)")


def test_inetd_client_without_an_ip_address_fails_an_allow_list(spawn, duplex, echo_port):
    # socat EXEC hands over a socketpair: no address to match, refused
    socat = need("socat")
    port = free_port()
    cmd = f"{duplex} relay -v --inetd --allow 127.0.0.1 127.0.0.1\\:{echo_port}"
    proc = spawn([socat, f"TCP-LISTEN:{port},bind=127.0.0.1,fork,reuseaddr", f"EXEC:{cmd}"])
    wait_listening(port, proc=proc)
    s = connect(port)
    s.sendall(b"hello")
    assert read_to_eof(s, allow_reset=True)[0] == b""
    s.close()
    proc.wait_err(r"stdin: refused: --allow/--deny match IP addresses and this client has none")


@pytest.mark.parametrize("args,msg", [
    (["connect", "--inetd", "127.0.0.1", "1"], "not with connect"),
    (["listen", "--inetd", "--echo"], "listen without --exec/--sh-exec CMD"),
    (["listen", "--inetd", "-e", "cat", "8080"], "takes no ADDR or PORT"),
    # listen --inetd passes the checks of any listen --exec (the fuzzer found -z taken)
    (["listen", "--inetd", "-z", "-e", "cat"], "cannot be used with listen"),
    (["listen", "--inetd", "-q", "1", "-e", "cat"], "shape one connection"),
    (["listen", "--inetd", "-C", "-e", "cat"], "the program writes to its client"),
    (["relay", "--inetd", "-k", "127.0.0.1:1"], "not with -k"),
    (["relay", "--inetd", "--stats-json", "127.0.0.1:1"], "stdout is the connection"),
    (["relay", "--inetd"], "needs a TARGET"),
])
def test_inetd_usage_errors(start_duplex, args, msg):
    p = start_duplex(args)
    assert p.wait() == 2
    assert msg in p.err, p.err


def test_inetd_without_a_socket_on_stdin(start_duplex):
    p = start_duplex(["relay", "--inetd", "127.0.0.1:1"])  # stdin: /dev/null
    assert p.wait(TIMEOUT) == 2
    assert "stdin is not a connected socket" in p.err


@pytest.mark.parametrize("allow", [False, True])
def test_an_activated_unix_socket(spawn, duplex, tmp_path, allow):
    # served as a Unix listener of its own; its clients have no IP address,
    # so an access list refuses them (fails closed)
    tool = need("systemd-socket-activate")
    path = str(tmp_path / "s.sock")
    args = [duplex, "listen", "-v", "-k", "--echo", *(["--allow", "127.0.0.1"] if allow else [])]
    proc = spawn([tool, "-l", path, *args])
    proc.wait_err(r"Listening on .*s\.sock")
    s = socket.socket(socket.AF_UNIX)
    s.settimeout(TIMEOUT)
    s.connect(path)
    data = seeded_bytes(100_000, 60)
    if allow:
        proc.wait_err(r"refused: --allow/--deny match IP addresses and this client has none")
        assert read_to_eof(s, allow_reset=True)[0] == b""
    else:
        s.sendall(data)
        s.shutdown(socket.SHUT_WR)
        assert hashlib.sha256(read_to_eof(s)[0]).digest() == hashlib.sha256(data).digest()
        proc.wait_err(r"listening on .*s\.sock \(socket activation: descriptor 3\)")
    s.close()
