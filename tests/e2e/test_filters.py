"""-C (--crlf) and --hex-dump: what they send, what they log, what they
refuse."""
import os
import re
import subprocess
import time

from conftest import recv_all
from servers_util import connect, recv_exact

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


def test_crlf_across_reads_does_not_double_the_cr(spawn, duplex, server):
    """A CR at the end of one read and its LF at the start of the next are
    one CRLF already."""
    srv = server(read_then_close)
    p = spawn([duplex, "connect", "--crlf", "127.0.0.1", srv.port], stdin=subprocess.PIPE)
    p.popen.stdin.write(b"one\r")
    p.popen.stdin.flush()
    time.sleep(0.3)  # the CR is read and sent alone
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
        (["listen", "-k", "-C", "127.0.0.1", "0"], "-C and --hex-dump shape one connection"),
        (["listen", "--echo", "--hex-dump", "-", "127.0.0.1", "0"], "shape one connection"),
        (["connect", "-u", "-C", "127.0.0.1", "9"], "not with -u, -z or relay"),
        (["connect", "-z", "--hex-dump", "-", "127.0.0.1", "9"], "not with -u, -z or relay"),
        (["relay", "-C", "127.0.0.1:0", "127.0.0.1:9"], "not with -u, -z or relay"),
    ]
    for args, msg in cases:
        rc, _, err = run_duplex(args)
        assert rc == 2, (args, err)
        assert msg in err, (args, err)
    bad = tmp_path / "no" / "such" / "dir" / "dump.txt"
    rc, _, err = run_duplex(["connect", "--hex-dump", bad, "127.0.0.1", "9"])
    assert rc == 2
    assert f"duplex: --hex-dump {bad}: No such file or directory" in err
