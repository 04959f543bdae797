"""Flags that shape one stdio session are refused with a server, and -w with a
server is each client's idle timeout."""
import select
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
    """The idle client is closed after -w; the busy one, talking every
    0.1 s, is kept, past the moment the idle one went. (-w 2 against a
    0.1 s pace: only a stall of nearly 2 s could starve the busy client;
    with -w 1 and a ping every 0.2 s, 0.8 s did.)"""
    lst, port = start_listener(["-k", "--echo", "-w", "2", "-v"])
    idle = socket.create_connection(("127.0.0.1", int(port)), timeout=5)
    busy = socket.create_connection(("127.0.0.1", int(port)), timeout=5)
    t0 = time.monotonic()
    closed_at = None

    def ping():
        busy.sendall(b"ping")
        assert busy.recv(16) == b"ping"

    # the busy client keeps talking, the idle one says nothing: until the
    # idle one has been closed, and a second more
    while closed_at is None or time.monotonic() < closed_at + 1.0:
        assert time.monotonic() - t0 < 15, "the idle client should have been closed"
        ping()
        if closed_at is None and select.select([idle], [], [], 0.1)[0]:
            closed_at = time.monotonic()
            assert idle.recv(16) == b"", "the idle client got data"
        elif closed_at is not None:
            time.sleep(0.1)  # the busy client's pace
    assert closed_at - t0 >= 1.9, f"the idle client was closed after {closed_at - t0:.2f}s"
    busy.sendall(b"still")
    assert busy.recv(16) == b"still"
    lst.wait_err(r"idle for 2 s")
    idle.close()
    busy.close()
