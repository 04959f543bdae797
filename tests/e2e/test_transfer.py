"""Bulk transfers between `duplex listen` and `duplex connect`, both ways at
once, under each event loop backend."""

import os

from conftest import sha256_file

BIG = 64 << 20
TRANSFER_TIMEOUT = 90


def test_both_ways_at_once_files(backend_env, start_listener, start_duplex, random_files, tmp_path):
    """64 MiB each way at once; stdin of both sides is a regular file
    (which epoll refuses: duplex must treat it as always ready)."""
    a, b = random_files(BIG)
    out_l = tmp_path / "listener.out"
    out_c = tmp_path / "client.out"
    with a.open() as in_l, b.open() as in_c, open(out_l, "wb") as fl, open(out_c, "wb") as fc:
        lst, port = start_listener(stdin=in_l, stdout=fl, env=backend_env)
        cli = start_duplex(["connect", "127.0.0.1", port], stdin=in_c, stdout=fc, env=backend_env)
        rc_c = cli.wait(TRANSFER_TIMEOUT)
        rc_l = lst.wait(TRANSFER_TIMEOUT)
    assert (rc_c, rc_l) == (0, 0), f"client: {cli.err!r} listener: {lst.err!r}"
    assert out_c.stat().st_size == BIG, "client received a different number of bytes"
    assert out_l.stat().st_size == BIG, "listener received a different number of bytes"
    assert sha256_file(out_l) == b.sha256, "client -> listener bytes differ"
    assert sha256_file(out_c) == a.sha256, "listener -> client bytes differ"


def test_both_ways_stdin_and_stdout_pipes(backend_env, spawn, start_listener, start_duplex,
                                          random_files, tmp_path):
    """The client's stdin is a pipe (cat FILE | duplex connect) and the
    listener's stdout is a pipe into sha256sum: non-blocking pipes with
    back-pressure, 64 MiB each way at once."""
    a, b = random_files(BIG)
    out_c = tmp_path / "client.out"
    pipe_out_r, pipe_out_w = os.pipe()   # listener stdout -> sha256sum
    pipe_in_r, pipe_in_w = os.pipe()     # cat -> client stdin
    try:
        with a.open() as in_l, open(out_c, "wb") as fc:
            lst, port = start_listener(stdin=in_l, stdout=pipe_out_w, env=backend_env)
            summer = spawn(["sha256sum", "-b"], stdin=pipe_out_r, name="sha256sum")
            cat = spawn(["cat", b.path], stdout=pipe_in_w, name="cat")
            cli = start_duplex(["connect", "127.0.0.1", port], stdin=pipe_in_r, stdout=fc,
                               env=backend_env)
    finally:
        for fd in (pipe_out_r, pipe_out_w, pipe_in_r, pipe_in_w):
            os.close(fd)
    rc_c = cli.wait(TRANSFER_TIMEOUT)
    rc_l = lst.wait(TRANSFER_TIMEOUT)
    assert summer.wait(TRANSFER_TIMEOUT) == 0
    assert cat.wait(TRANSFER_TIMEOUT) == 0
    assert (rc_c, rc_l) == (0, 0), f"client: {cli.err!r} listener: {lst.err!r}"
    assert summer.out.split()[0].decode() == b.sha256, "client -> listener bytes differ (pipe in)"
    assert out_c.stat().st_size == BIG
    assert sha256_file(out_c) == a.sha256, "listener -> client bytes differ"
