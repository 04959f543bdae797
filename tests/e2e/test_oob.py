"""TCP urgent data: --send-oob C sends one byte with MSG_OOB once the
connection is set up; the receiving stdio session reports urgent data on
stderr ("duplex: urgent data: 'C'", read with recv(MSG_OOB) on POLLPRI, no
SIGURG) and keeps it out of stdout, unless --oob-inline (or -O oobinline=1)
leaves it in the stream at its place. Loopback only, bounded waits."""

import os
import select
import socket
import subprocess

import pytest

from conftest import TIMEOUT

BACKENDS = ["epoll", "poll", "io_uring"]


@pytest.fixture(params=BACKENDS)
def any_backend_env(request, run_duplex):
    name = request.param
    if name == "io_uring":
        rc, _, err = run_duplex(["--backend", "io_uring", "connect", "-z", "127.0.0.1", "1"])
        if rc == 2:
            pytest.skip(f"io_uring backend unavailable: {err.strip()}")
    return {"DUPLEX_BACKEND": name}


def _inline_flags(run_duplex):
    flags = [["--oob-inline"]]
    rc, out, _ = run_duplex(["connect", "--help"])
    if b"oobinline" in out:
        flags.append(["-O", "oobinline=1"])
    return flags


# ------------------------------------------------------ duplex -> duplex --


def test_duplex_to_duplex_urgent_reported(start_listener, start_duplex, any_backend_env):
    lst, port = start_listener(env=any_backend_env)
    cl = start_duplex(["connect", "--send-oob", "!", "127.0.0.1", port], stdin=b"hello\n",
                      env=any_backend_env)
    assert cl.wait() == 0, cl.err
    assert lst.wait() == 0, lst.err
    assert "duplex: urgent data: '!'" in lst.err
    assert lst.out == b"hello\n"  # the urgent byte is not in the stream


@pytest.mark.parametrize("variant", [0, 1])
def test_duplex_to_duplex_inline(start_listener, start_duplex, run_duplex, variant):
    flags = _inline_flags(run_duplex)
    if variant >= len(flags):
        pytest.skip("-O oobinline=1 is not available in this build")
    lst, port = start_listener(args=flags[variant])
    cl = start_duplex(["connect", "--send-oob", "!", "127.0.0.1", port], stdin=b"hello\n")
    assert cl.wait() == 0, cl.err
    assert lst.wait() == 0, lst.err
    assert lst.out == b"!hello\n"  # sent first, so first in the stream
    assert "urgent data" not in lst.err


def test_send_oob_escape_reported_as_hex(start_listener, start_duplex):
    lst, port = start_listener()
    cl = start_duplex(["connect", "--send-oob", "\\x01", "127.0.0.1", port], stdin=b"x")
    assert cl.wait() == 0, cl.err
    assert lst.wait() == 0, lst.err
    assert "duplex: urgent data: '\\x01'" in lst.err
    assert lst.out == b"x"


def test_listener_sends_oob_to_client(start_listener, start_duplex):
    lst, port = start_listener(args=["--send-oob", "#"], stdin=b"from server\n")
    cl = start_duplex(["connect", "127.0.0.1", port], stdin=b"")
    assert cl.wait() == 0, cl.err
    assert lst.wait() == 0, lst.err
    assert "duplex: urgent data: '#'" in cl.err
    assert cl.out == b"from server\n"


@pytest.mark.parametrize("value", ["ab", "", "\\x1", "\\q"])
def test_send_oob_usage(run_duplex, value):
    rc, out, err = run_duplex(["connect", "--send-oob", value, "127.0.0.1", "9"])
    assert rc == 2, err
    assert "--send-oob" in err


# ------------------------------------------------- Python -> duplex --


def _python_sender(server, before, after, byte=b"!"):
    def script(conn, result):
        conn.sendall(before)
        conn.send(byte, socket.MSG_OOB)
        conn.sendall(after)
        conn.shutdown(socket.SHUT_WR)
        conn.settimeout(TIMEOUT)
        while conn.recv(65536):
            pass
    return server(script)


@pytest.mark.parametrize("size", [3, 1 << 20])
def test_python_urgent_to_duplex(server, start_duplex, any_backend_env, size):
    """Urgent byte mid-stream: reported, and the bytes around it arrive whole
    (TCP splice stops at the urgent mark: the pump must step over it)."""
    before, after = os.urandom(size), os.urandom(size)
    srv = _python_sender(server, before, after)
    dx = start_duplex(["connect", "127.0.0.1", srv.port], env=any_backend_env)
    assert dx.wait(30) == 0, dx.err
    srv.join()
    assert "duplex: urgent data: '!'" in dx.err
    assert dx.out == before + after


@pytest.mark.parametrize("size", [3, 1 << 20])
def test_python_urgent_to_duplex_inline(server, start_duplex, any_backend_env, size):
    before, after = os.urandom(size), os.urandom(size)
    srv = _python_sender(server, before, after)
    dx = start_duplex(["connect", "--oob-inline", "127.0.0.1", srv.port], env=any_backend_env)
    assert dx.wait(30) == 0, dx.err
    srv.join()
    assert "urgent data" not in dx.err
    assert dx.out == before + b"!" + after


def _python_oob_receiver(server):
    """duplex --send-oob -> a Python receiver reading it with MSG_OOB."""
    def script(conn, result):
        p = select.poll()
        p.register(conn, select.POLLPRI)
        assert p.poll(TIMEOUT * 1000), "no POLLPRI"
        result["oob"] = conn.recv(1, socket.MSG_OOB)
        conn.settimeout(TIMEOUT)
        data = b""
        while True:
            b = conn.recv(65536)
            if not b:
                break
            data += b
        result["data"] = data
        conn.shutdown(socket.SHUT_WR)
    return server(script)


def test_duplex_urgent_to_python(server, run_duplex):
    srv = _python_oob_receiver(server)
    rc, out, err = run_duplex(["connect", "--send-oob", "U", "127.0.0.1", srv.port], stdin=b"payload")
    assert rc == 0, err
    res = srv.join()
    assert res["oob"] == b"U"
    assert res["data"] == b"payload"
