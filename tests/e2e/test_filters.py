"""-C (--crlf), --hex-dump and -o (--output): what they send, what they log,
what they refuse. -o runs the same command lines against ncat to compare
the files byte for byte."""
import fcntl
import os
import re
import socket
import struct
import subprocess
import termios

import pytest

from conftest import TIMEOUT, free_port, need, recv_all, sha, wait_listening
from servers_util import connect, recv_exact, wait_for

def read_then_close(conn, result):
    result["data"] = recv_all(conn)
    conn.close()


DUMP_RE = re.compile(r"^([<>]) ([0-9a-f]{8})  ((?:[0-9a-f]{2} ?|   ){8}) ((?:[0-9a-f]{2} ?|   ){8}) \|(.*)\|$")


def parse_dump(text):
    """{'>': bytes, '<': bytes} rebuilt from a hex dump; checks that each
    direction's offsets run on without a gap and that the text column
    matches the bytes."""
    got = {">": bytearray(), "<": bytearray()}
    for line in text.splitlines():
        m = DUMP_RE.match(line)
        assert m, f"not a dump line: {line!r}"
        mark, offset, left, right, shown = m.groups()
        data = bytes.fromhex((left + right).replace(" ", ""))
        assert int(offset, 16) == len(got[mark]), f"offset gap at {line!r}"
        assert shown == "".join(chr(b) if 0x20 <= b < 0x7F else "." for b in data)
        got[mark] += data
    return {k: bytes(v) for k, v in got.items()}


def test_crlf_turns_lone_lf_into_crlf_keeps_crlf(run_duplex, server):
    srv = server(read_then_close)
    rc, _, err = run_duplex(["connect", "-C", "127.0.0.1", srv.port],
                            stdin=b"HELO x\nMAIL FROM:<a>\r\n\n\r\r\nend")
    assert rc == 0, err
    assert srv.join()["data"] == b"HELO x\r\nMAIL FROM:<a>\r\n\r\n\r\r\nend"


def pipe_unread(f):
    """Bytes written to the pipe `f` (either end) and not read yet."""
    return struct.unpack("i", fcntl.ioctl(f.fileno(), termios.FIONREAD, b"\0" * 4))[0]


def test_crlf_across_reads_does_not_double_the_cr(spawn, duplex, server):
    """A CR at the end of one read and its LF at the start of the next are
    one CRLF already."""
    srv = server(read_then_close)
    p = spawn([duplex, "connect", "--crlf", "127.0.0.1", srv.port], stdin=subprocess.PIPE)
    p.popen.stdin.write(b"one\r")
    p.popen.stdin.flush()
    # the CR is read alone: duplex has emptied the pipe before the LF goes in
    # (a sleep let a busy duplex read both at once, and the test then passed
    # without a CR at the end of a read)
    wait_for(lambda: pipe_unread(p.popen.stdin) == 0, TIMEOUT, "duplex to read 'one\\r' from its stdin")
    p.popen.stdin.write(b"\ntwo\n")
    p.popen.stdin.close()
    assert p.wait(10) == 0, p.err
    assert srv.join()["data"] == b"one\r\ntwo\r\n"


def test_hex_dump_marks_both_directions(run_duplex, server, tmp_path):
    def script(conn, r):
        r["data"] = conn.recv(100)
        conn.sendall(b"+OK pong\r\n")
        conn.close()

    srv = server(script)
    dump = tmp_path / "dump.txt"
    rc, out, err = run_duplex(["connect", "-q", "2", "--hex-dump", dump, "127.0.0.1", srv.port],
                              stdin=b"PING\n")
    assert rc == 0, err
    assert out == b"+OK pong\r\n"
    assert srv.join()["data"] == b"PING\n"
    text = dump.read_text()
    assert "> 00000000  50 49 4e 47 0a " in text
    assert "< 00000000  2b 4f 4b 20 70 6f 6e 67  0d 0a " in text
    assert parse_dump(text) == {">": b"PING\n", "<": b"+OK pong\r\n"}


def test_hex_dump_of_a_megabyte_each_way_is_exact(run_duplex, server, tmp_path, random_files):
    """1 MiB up and 1 MiB down through the user-space path: nothing lost in
    either the transfer or the dump."""
    f = random_files(1 << 20, n=1)[0]
    down = os.urandom(1 << 20)

    def script(conn, r):
        conn.sendall(down)
        conn.shutdown(1)
        r["data"] = recv_all(conn, timeout=30)

    srv = server(script)
    dump = tmp_path / "dump.txt"
    with f.open() as stdin:
        rc, out, err = run_duplex(["connect", "--hex-dump", dump, "127.0.0.1", srv.port],
                                  stdin=stdin, timeout=60)
    assert rc == 0, err
    assert out == down
    with f.open() as fh:
        up = fh.read()
    assert srv.join(30)["data"] == up
    assert parse_dump(dump.read_text()) == {">": up, "<": down}


def test_crlf_and_hex_dump_to_stderr_on_listen(start_listener):
    proc, port = start_listener(["-C", "--hex-dump", "-"], stdin=b"hi\n")
    s = connect(port)
    try:
        assert recv_exact(s, 4) == b"hi\r\n"
        s.sendall(b"yo")
        s.shutdown(1)
        assert proc.wait(10) == 0
        lines = [line for line in proc.err.splitlines() if DUMP_RE.match(line)]
        assert parse_dump("\n".join(lines)) == {">": b"hi\r\n", "<": b"yo"}
    finally:
        s.close()


def test_refused_where_they_do_not_apply(run_duplex, tmp_path):
    cases = [
        # -k -C (stdin to the clients with CRLF) works: test_ncat_options.py
        (["listen", "--echo", "-C", "127.0.0.1", "0"], "-C converts the LF line ends"),
        (["listen", "-k", "--hex-dump", "-", "127.0.0.1", "0"], "--hex-dump, -o, --delay and -t shape one connection"),
        (["listen", "-k", "-o", tmp_path / "k", "127.0.0.1", "0"], "do not apply with -k"),
        (["listen", "--broker", "--output", tmp_path / "b", "127.0.0.1", "0"], "shape one"),
        (["connect", "-u", "-o", tmp_path / "u", "127.0.0.1", "9"], "not with -u"),
        (["listen", "--echo", "--hex-dump", "-", "127.0.0.1", "0"], "shape one connection"),
        (["listen", "-u", "-k", "-C", "--exec", "/bin/cat", "127.0.0.1", "0"],
         "with -u --exec the programs have the datagrams"),  # -u -C: test_udp_flags.py
        (["connect", "-z", "--hex-dump", "-", "127.0.0.1", "9"], "not with -z or relay"),
        (["relay", "-C", "127.0.0.1:0", "127.0.0.1:9"], "not with -z or relay"),
    ]
    for args, msg in cases:
        rc, _, err = run_duplex(args)
        assert rc == 2, (args, err)
        assert msg in err, (args, err)
    bad = tmp_path / "no" / "such" / "dir" / "dump.txt"
    rc, _, err = run_duplex(["connect", "--hex-dump", bad, "127.0.0.1", "9"])
    assert rc == 2
    assert f"duplex: --hex-dump {bad}: No such file or directory" in err


# ------------------------------------------------------------- -o / --output --
# ncat 7.93 measured: -o FILE gets the raw bytes of both directions, in the
# order they pass, no marks; created or truncated, appended with
# --append-output; a path that cannot be opened ends it at once with exit 2.
# The steps below are in lockstep (each waits for the previous bytes to
# arrive), so the order in the file is fixed and both tools must write the
# same file.

TOOLS = ["ncat", "duplex"]


def _tool(name, duplex):
    return need("ncat") if name == "ncat" else duplex


def _connect_session(spawn, binary, out_file, extra, g, u, d):
    """A client session: the server greets (g), the client sends its stdin
    (u) and ends it, the server answers (d) and closes."""
    with socket.create_server(("127.0.0.1", 0)) as ls:
        port = ls.getsockname()[1]
        p = spawn([binary, "127.0.0.1", str(port), *extra, "-o", str(out_file)],
                  stdin=subprocess.PIPE, name=os.path.basename(binary))
        ls.settimeout(10)
        conn, _ = ls.accept()
    with conn:
        conn.sendall(g)
        p.wait_out(lambda b: len(b) >= len(g))
        p.popen.stdin.write(u)
        p.popen.stdin.close()
        assert sha(recv_all(conn)) == sha(u)  # until the client's end of stdin
        conn.sendall(d)
    assert p.wait(15) == 0, p.err
    assert sha(p.out) == sha(g + d)


@pytest.mark.parametrize("append", [False, True], ids=["truncate", "append-output"])
def test_output_connect_same_file_as_ncat(spawn, duplex, tmp_path, append):
    files = {}
    g, u, d = os.urandom(70000), os.urandom(90000), os.urandom(50000)
    for name in TOOLS:
        f = tmp_path / f"{name}.out"
        f.write_bytes(b"old contents\n")
        extra = ["--append-output"] if append else []
        _connect_session(spawn, _tool(name, duplex), f, extra, g, u, d)
        files[name] = f.read_bytes()
        assert sha(files[name]) == sha((b"old contents\n" if append else b"") + g + u + d), name
    assert files["ncat"] == files["duplex"]


def test_output_listen_same_file_as_ncat(spawn, duplex, tmp_path):
    """`-l ADDR PORT -o FILE`, one client: the client's bytes, then the
    listener's stdin, in the file in that order."""
    files = {}
    u, d = os.urandom(80000), os.urandom(60000)
    for name in TOOLS:
        f = tmp_path / f"{name}.out"
        port = free_port()
        p = spawn([_tool(name, duplex), "-l", "127.0.0.1", str(port), "--output", str(f)],
                  stdin=subprocess.PIPE, name=name)
        wait_listening(port, proc=p)
        with socket.create_connection(("127.0.0.1", port), timeout=10) as c:
            c.sendall(u)
            p.wait_out(lambda b: len(b) >= len(u))
            p.popen.stdin.write(d)
            p.popen.stdin.close()
            assert sha(recv_exact(c, len(d))) == sha(d)
            c.shutdown(socket.SHUT_WR)
            assert p.wait(15) == 0, p.err
        assert sha(p.out) == sha(u)
        files[name] = f.read_bytes()
        assert sha(files[name]) == sha(u + d), name
    assert files["ncat"] == files["duplex"]


def test_output_with_hex_dump_and_crlf(run_duplex, server, tmp_path):
    """-o takes the bytes as sent (after -C), next to --hex-dump, both
    appended to with --append-output."""
    def script(conn, r):
        r["data"] = recv_all(conn)
        conn.sendall(b"250 ok\r\n")
        conn.close()

    out, dump = tmp_path / "o", tmp_path / "x"
    out.write_bytes(b"A")
    dump.write_text("")
    srv = server(script)
    rc, got, err = run_duplex(["connect", "-C", "-o", out, "--hex-dump", dump, "--append-output",
                               "127.0.0.1", srv.port], stdin=b"HELO x\n")
    assert rc == 0, err
    assert got == b"250 ok\r\n"
    assert srv.join()["data"] == b"HELO x\r\n"
    assert out.read_bytes() == b"AHELO x\r\n250 ok\r\n"
    assert parse_dump(dump.read_text()) == {">": b"HELO x\r\n", "<": b"250 ok\r\n"}


@pytest.mark.parametrize("name", TOOLS)
def test_output_bad_path_exits_2_before_connecting(spawn, duplex, tmp_path, name):
    """The file is opened first: a path that cannot be opened is exit 2 even
    though nothing listens on the port (which would be exit 1)."""
    bad = tmp_path / "no" / "such" / "dir" / "out"
    port = free_port()
    p = spawn([_tool(name, duplex), "-o", str(bad), "127.0.0.1", str(port)],
              stdin=subprocess.DEVNULL, name=name)
    assert p.wait(10) == 2, p.err
    assert not bad.exists()
    if name == "duplex":
        assert f"duplex: -o {bad}: No such file or directory" in p.err
