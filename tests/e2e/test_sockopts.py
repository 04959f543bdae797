"""Socket options: -O NAME=VALUE on connect, listen and relay, --show-opts
(what the kernel reports, one 'duplex: option NAME = VALUE' line each), and
the errors for bad names, bad values and options the kernel refuses."""

import os
import re
import socket
import subprocess
import threading

import pytest

from conftest import TIMEOUT, free_port, recv_all
from servers_util import wait_for

ALL_NAMES = [
    "keepalive", "keepidle", "keepintvl", "keepcnt", "linger", "rcvbuf", "sndbuf", "rcvlowat",
    "rcvtimeo", "sndtimeo", "reuseaddr", "reuseport", "bindtodevice", "priority", "mark",
    "dontroute", "broadcast", "oobinline", "timestamp", "busy_poll", "nodelay", "user_timeout",
    "tos", "maxseg", "quickack", "congestion",
]


def opt_values(err, name):
    """Every value printed for option NAME, in order."""
    return re.findall(rf"^duplex: option {name} = (.*?)(?: \(.*\))?$", err, re.M)


def drain_server(conn, result):
    """Read to end of input, then end our side too (duplex then exits)."""
    result["data"] = recv_all(conn)
    conn.shutdown(socket.SHUT_WR)


def connect_args(port, *opts):
    return ["connect", *opts, "127.0.0.1", port]


# ------------------------------------------------------------ --show-opts --


def test_rcvbuf_doubled_on_connect(run_duplex, server):
    srv = server(drain_server)
    rc, _, err = run_duplex(connect_args(srv.port, "-O", "rcvbuf=65536", "--show-opts"), stdin=b"hi")
    assert rc == 0, err
    assert "duplex: option SO_RCVBUF = 131072 (kernel doubles the requested value)" in err
    assert opt_values(err, "SO_ACCEPTCONN") == ["0"]
    assert opt_values(err, "SO_DOMAIN") == ["2"]
    assert opt_values(err, "SO_PROTOCOL") == ["6"]
    assert opt_values(err, "SO_TYPE") == ["1"]
    assert opt_values(err, "SO_ERROR") == ["0"]
    for sysctl in ("rmem_default", "rmem_max", "wmem_default", "wmem_max", "somaxconn"):
        with open(f"/proc/sys/net/core/{sysctl}") as f:
            want = f.read().strip()
        assert f"duplex: sysctl net.core.{sysctl} = {want}\n" in err, err
    assert srv.join()["data"] == b"hi"


def test_rcvbuf_doubled_on_listen(start_listener):
    p, port = start_listener(["-O", "rcvbuf=65536", "--show-opts"])
    p.wait_err(r"SO_RCVBUF = 131072")
    assert re.search(r"socket options \(listening 127\.0\.0\.1:\d+\)", p.err), p.err
    with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as c:
        p.wait_err(r"socket options \(accepted 127\.0\.0\.1:\d+, peer 127\.0\.0\.1:\d+\):")
        c.shutdown(socket.SHUT_WR)
        assert p.wait() == 0, p.err
    assert opt_values(p.err, "SO_ACCEPTCONN") == ["1", "0"]
    # the listener and the accepted socket both report the doubled size
    assert opt_values(p.err, "SO_RCVBUF") == ["131072", "131072"]


def test_show_opts_without_options(run_duplex, server):
    srv = server(drain_server)
    rc, _, err = run_duplex(connect_args(srv.port, "--show-opts"), stdin=b"")
    assert rc == 0, err
    assert opt_values(err, "TCP_NODELAY") == ["0"]
    assert opt_values(err, "SO_KEEPALIVE") == ["0"]
    assert opt_values(err, "SO_LINGER") == ["off"]
    assert len(opt_values(err, "SO_SNDBUF")) == 1
    assert "SO_PEERCRED" not in err  # TCP: no peer credentials


def test_no_show_opts_prints_nothing(run_duplex, server):
    srv = server(drain_server)
    rc, _, err = run_duplex(connect_args(srv.port, "-O", "nodelay=1"), stdin=b"")
    assert rc == 0, err
    assert "option" not in err, err


@pytest.mark.parametrize("spelling", ["nodelay=1", "TCP_NODELAY=on", "tcp_nodelay", "NoDelay=yes"])
def test_nodelay_visible(spelling, run_duplex, server, backend_env):
    srv = server(drain_server)
    rc, _, err = run_duplex(connect_args(srv.port, "-O", spelling, "--show-opts"), stdin=b"x",
                            env=backend_env)
    assert rc == 0, err
    assert opt_values(err, "TCP_NODELAY") == ["1"], err


def test_keepalive_shown(run_duplex, server):
    srv = server(drain_server)
    rc, _, err = run_duplex(connect_args(srv.port, "-O", "keepalive=1", "-O", "keepidle=30",
                                         "-O", "SO_KEEPALIVE=1", "-O", "tcp_keepintvl=7",
                                         "-O", "keepcnt=4", "--show-opts"), stdin=b"")
    assert rc == 0, err
    assert opt_values(err, "SO_KEEPALIVE") == ["1"]
    assert opt_values(err, "TCP_KEEPIDLE") == ["30"]
    assert opt_values(err, "TCP_KEEPINTVL") == ["7"]
    assert opt_values(err, "TCP_KEEPCNT") == ["4"]


def test_last_value_wins_and_extra_options_shown(run_duplex, server):
    srv = server(drain_server)
    rc, _, err = run_duplex(connect_args(srv.port, "-O", "user_timeout=1000", "-O", "tos=0x10",
                                         "-O", "user_timeout=2500", "-O", "rcvtimeo=1.5",
                                         "--show-opts"), stdin=b"")
    assert rc == 0, err
    assert opt_values(err, "TCP_USER_TIMEOUT") == ["2500"]
    assert opt_values(err, "IP_TOS") == ["16"]
    assert opt_values(err, "SO_RCVTIMEO") == ["1.500000"]


def test_listener_options_reach_accepted_socket(start_listener):
    p, port = start_listener(["-O", "nodelay=1", "-O", "linger=3", "-O", "reuseaddr=0",
                              "--show-opts"])
    with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as c:
        p.wait_err(r"socket options \(accepted")
        c.shutdown(socket.SHUT_WR)
        assert p.wait() == 0, p.err
    assert opt_values(p.err, "TCP_NODELAY") == ["1", "1"]
    assert opt_values(p.err, "SO_LINGER") == ["3", "3"]
    assert opt_values(p.err, "SO_REUSEADDR")[0] == "0"  # -O overrides the default


@pytest.mark.parametrize("opts, expect", [(["-O", "nodelay=1"], ["1", "1", "1"]),
                                          # by default on both sides, the listener untouched
                                          ([], ["0", "1", "1"])],
                         ids=["nodelay=1", "default"])
def test_relay_options_both_sides(opts, expect, start_duplex, server):
    srv = server(drain_server)
    p = start_duplex(["relay", *opts, "--show-opts", "127.0.0.1:0", f"127.0.0.1:{srv.port}"])
    m = p.wait_err(r"duplex: listening on 127\.0\.0\.1:(\d+)")
    with socket.create_connection(("127.0.0.1", int(m.group(1))), timeout=TIMEOUT) as c:
        c.sendall(b"relayed")
        p.wait_err(r"socket options \(connected .*, peer 127\.0\.0\.1:%d\)" % srv.port)
        c.shutdown(socket.SHUT_WR)
        assert recv_all(c) == b""
    assert p.wait() == 0, p.err
    assert srv.join()["data"] == b"relayed"
    # listener, accepted client, connection to the target
    assert opt_values(p.err, "TCP_NODELAY") == expect, p.err


@pytest.mark.parametrize("mode", ["-k", "--echo", "--broker", "--chat"])
@pytest.mark.parametrize("extra, want", [([], "1"), (["-O", "nodelay=0"], "0")],
                         ids=["default", "nodelay=0"])
def test_server_modes_set_nodelay_on_clients_unless_told(mode, extra, want, start_listener):
    """Forwarding servers turn Nagle off on each client (a receiver that
    never sends delays its ACKs, and Nagle would then hold every small
    message for them); -O nodelay=0 keeps it on."""
    flags = ["-k"] if mode == "-k" else ["-k", mode]
    p, port = start_listener([*flags, "--show-opts", *extra])
    with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT):
        wait_for(lambda: len(opt_values(p.err, "TCP_NODELAY")) >= 2, TIMEOUT,
                 "the accepted client's options")
    listener, client = opt_values(p.err, "TCP_NODELAY")[:2]
    assert client == want, p.err
    assert listener == "0", p.err  # the listening socket itself is left alone


def test_one_session_listen_keeps_nagle(start_listener):
    p, port = start_listener(["--show-opts"])
    with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as c:
        p.wait_err(r"socket options \(accepted")
        c.shutdown(socket.SHUT_WR)
        assert p.wait() == 0, p.err
    assert opt_values(p.err, "TCP_NODELAY") == ["0", "0"], p.err


# --------------------------------------------------------------- linger=0 --


def _close_outcome(run_duplex, server, opts):
    """Run connect with stdin 'hello', quitting at once at end of input
    without a shutdown; return what the peer saw: 'eof' or 'reset'."""
    def script(conn, result):
        data = b""
        try:
            while True:
                b = conn.recv(65536)
                if not b:
                    result["end"] = "eof"
                    break
                data += b
        except ConnectionResetError:
            result["end"] = "reset"
        result["data"] = data

    srv = server(script)
    rc, _, err = run_duplex(connect_args(srv.port, *opts, "--no-shutdown", "-q", "0"),
                            stdin=b"hello")
    assert rc == 0, err
    return srv.join()["end"]


def test_linger_zero_resets_peer(run_duplex, server):
    assert _close_outcome(run_duplex, server, ["-O", "linger=0"]) == "reset"


def test_without_linger_clean_eof(run_duplex, server):
    assert _close_outcome(run_duplex, server, []) == "eof"
    assert _close_outcome(run_duplex, server, ["-O", "linger=off"]) == "eof"


# ------------------------------------------------------------ usage errors --


@pytest.mark.parametrize("cmd", [["connect", "127.0.0.1", "9"], ["listen", "127.0.0.1", "0"],
                                 ["relay", "127.0.0.1:0", "127.0.0.1:9"]])
def test_bad_name_lists_valid_names(cmd, run_duplex):
    rc, out, err = run_duplex([cmd[0], "-O", "bogus=1", *cmd[1:]])
    assert rc == 2, err
    assert "unknown socket option 'bogus'" in err
    for name in ALL_NAMES:
        assert re.search(rf"\b{name}\b", err), (name, err)
    assert out == b""


@pytest.mark.parametrize("arg,expect", [
    ("rcvbuf=abc", "expected bytes"),
    ("rcvbuf=-5", "out of range"),
    ("keepcnt=1000", "from 1 to 127"),
    ("nodelay=maybe", "0 or 1"),
    ("rcvtimeo=soon", "seconds"),
    ("linger=1.5", "seconds"),
    ("tos=300", "0 to 255"),
    ("bindtodevice=", "interface name"),
    ("rcvbuf", "needs a value"),
    ("so_nodelay=1", "unknown socket option"),
])
def test_bad_value_says_expected(arg, expect, run_duplex):
    rc, _, err = run_duplex(["connect", "-O", arg, "127.0.0.1", "9"])
    assert rc == 2, err
    assert expect in err, err


def test_missing_argument(run_duplex):
    rc, _, err = run_duplex(["connect", "127.0.0.1", "9", "-O"])
    assert rc == 2, err


# ------------------------------------------- privileged and refused options --


@pytest.mark.skipif(os.geteuid() != 0, reason="SO_MARK needs CAP_NET_ADMIN (root)")
def test_mark_as_root(run_duplex, server, start_listener):
    srv = server(drain_server)
    rc, _, err = run_duplex(connect_args(srv.port, "-O", "mark=1", "--show-opts"), stdin=b"m")
    assert rc == 0, err
    assert opt_values(err, "SO_MARK") == ["1"]
    assert srv.join()["data"] == b"m"
    p, port = start_listener(["-O", "mark=0x2a", "--show-opts"])
    p.wait_err(r"SO_MARK = 42")


@pytest.mark.skipif(os.geteuid() == 0, reason="root may set SO_MARK")
def test_mark_unprivileged_refused(run_duplex, server):
    srv = server(None, accept=False)
    rc, _, err = run_duplex(connect_args(srv.port, "-O", "mark=1"))
    assert rc == 4, err
    assert "SO_MARK" in err and "Operation not permitted" in err


def test_bindtodevice_refused_on_connect(run_duplex, server):
    srv = server(None, accept=False)
    rc, out, err = run_duplex(connect_args(srv.port, "-O", "bindtodevice=nonexistent0"))
    assert rc == 4, err  # the connect exit code, not a crash (negative rc)
    assert re.search(r"duplex: option SO_BINDTODEVICE \(-O bindtodevice=nonexistent0\) refused "
                     r"on connect 127\.0\.0\.1:\d+: (No such device|Operation not permitted)", err), err
    assert out == b""


def test_bindtodevice_refused_on_listen(run_duplex):
    rc, _, err = run_duplex(["listen", "-O", "bindtodevice=nonexistent0", "127.0.0.1", "0"])
    assert rc == 6, err
    assert "SO_BINDTODEVICE" in err and "refused on listen 127.0.0.1:0" in err, err
    assert "listening on" not in err


def test_bindtodevice_refused_on_relay_target(start_duplex, server):
    srv = server(None, accept=False)
    p = start_duplex(["relay", "-O", "congestion=nosuchalgo0", "127.0.0.1:0",
                      f"127.0.0.1:{srv.port}"])
    p.wait_err(r"duplex: option TCP_CONGESTION .* refused on listen")
    assert p.wait() == 6, p.err


def test_tcp_option_on_unix_socket_refused(run_duplex, tmp_path):
    path = tmp_path / "s.sock"
    rc, _, err = run_duplex(["listen", "-U", str(path), "-O", "nodelay=1"])
    assert rc == 6, err
    assert "TCP_NODELAY" in err and "not supported" in err, err
    assert not path.exists()


def test_bindtodevice_lo_as_root(run_duplex, server):
    if os.geteuid() != 0:
        pytest.skip("SO_BINDTODEVICE needs CAP_NET_RAW/CAP_NET_ADMIN")
    srv = server(drain_server)
    rc, _, err = run_duplex(connect_args(srv.port, "-O", "bindtodevice=lo", "--show-opts"),
                            stdin=b"dev")
    assert rc == 0, err
    assert opt_values(err, "SO_BINDTODEVICE") == ["lo"]
    assert srv.join()["data"] == b"dev"


# --------------------------------------------------------------- Unix peers --


def test_peercred_on_unix_connect(run_duplex, tmp_path):
    path = str(tmp_path / "cred.sock")
    lsock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    lsock.bind(path)
    lsock.listen(1)
    lsock.settimeout(TIMEOUT)
    got = {}

    def serve():
        try:
            conn, _ = lsock.accept()
            with conn:
                got["data"] = recv_all(conn)
        except OSError as e:
            got["error"] = e

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    try:
        rc, _, err = run_duplex(["connect", "-U", path, "--show-opts"], stdin=b"u")
    finally:
        t.join(TIMEOUT)
        lsock.close()
    assert rc == 0, err
    # the listening socket was created by this Python process
    assert f"duplex: option SO_PEERCRED = pid {os.getpid()} uid {os.getuid()} gid {os.getgid()}" in err, err
    assert opt_values(err, "SO_DOMAIN") == ["1"]
    assert got.get("data") == b"u"


def test_peercred_on_unix_accept(start_duplex, tmp_path):
    path = str(tmp_path / "acc.sock")
    p = start_duplex(["listen", "-v", "-U", path, "--show-opts", "-O", "sndbuf=65536"])
    p.wait_err(r"socket options \(listening")
    c = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        c.settimeout(TIMEOUT)
        c.connect(path)
        p.wait_err(r"SO_PEERCRED = pid \d+")
        c.shutdown(socket.SHUT_WR)
        assert p.wait() == 0, p.err
    finally:
        c.close()
    assert f"SO_PEERCRED = pid {os.getpid()} " in p.err, p.err
    assert opt_values(p.err, "SO_SNDBUF") == ["131072", "131072"]


# --------------------------------------------------------------------- help --


def test_help_lists_every_name(run_duplex):
    rc, out, _ = run_duplex(["connect", "--help"])
    assert rc == 0
    text = out.decode()
    assert "Options for sockets" in text
    assert "-O, --sockopt NAME=VALUE" in text and "--show-opts" in text
    for name in ALL_NAMES:
        assert re.search(rf"\b{name}\b", text), name


def test_long_option_spelling(run_duplex, server):
    srv = server(drain_server)
    rc, _, err = run_duplex(connect_args(srv.port, "--sockopt", "sndbuf=65536", "--show-opts"),
                            stdin=b"")
    assert rc == 0, err
    assert opt_values(err, "SO_SNDBUF") == ["131072"]
