"""Flags that shape one stdio session are refused with a server, and -w with a
server is each client's idle timeout."""
import socket
import time

import pytest


@pytest.mark.parametrize("flag", [["-q", "1"], ["--no-shutdown"], ["--send-only"],
                                  ["--send-oob", "x"], ["--progress"]])
@pytest.mark.parametrize("mode", [["-k"], ["--echo"], ["-k", "--broker"]])
def test_one_session_flags_refused_with_a_server(run_duplex, flag, mode):
    rc, _out, err = run_duplex(["listen", *mode, *flag, "127.0.0.1", "0"])
    assert rc == 2, err
    assert "do not apply with -k or a server mode" in err


def test_w_is_the_idle_timeout_of_each_client(start_listener):
    lst, port = start_listener(["-k", "--echo", "-w", "1", "-v"])
    idle = socket.create_connection(("127.0.0.1", int(port)), timeout=5)
    busy = socket.create_connection(("127.0.0.1", int(port)), timeout=5)
    t0 = time.monotonic()
    idle.settimeout(5)
    # the busy client keeps talking, the idle one says nothing
    while time.monotonic() - t0 < 2.5:
        busy.sendall(b"ping")
        assert busy.recv(16) == b"ping"
        time.sleep(0.2)
    assert idle.recv(16) == b"", "the idle client should have been closed"
    busy.sendall(b"still")
    assert busy.recv(16) == b"still"
    lst.wait_err(r"idle for 1 s")
    idle.close()
    busy.close()
