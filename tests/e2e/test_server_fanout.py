"""End-to-end tests of fan-out under pressure (--chat, --broker): a client
dropped in the middle of a broadcast must not disturb delivery to the others,
and a flood from one sender is paced by its recipients (backpressure) instead
of getting readers dropped or stdout bytes lost.
Run: DUPLEX=/abs/build/duplex /usr/bin/python3 -m pytest -q tests/e2e"""

import os
import re
import socket
import threading
import time

import pytest

from servers_util import Pump, connect, name_of, said_connected, sockets

__all__ = ["sockets"]  # fixture re-exported from servers_util


def join_in_order(proc, port, n, sockets, **kw):
    """n chat clients, each connected once the previous one's join notice is
    on the server's stdout (so who receives which notice is known)."""
    socks = []
    for _ in range(n):
        s = sockets(connect(port, **kw))
        name = name_of(s)
        proc.wait_out(lambda o, nm=name: f"* {nm} joined (".encode() in o)
        socks.append(s)
    return socks


def lines_from(data, name):
    """The lines `name` said, prefix removed, from a chat stream."""
    head = f"[{name}] ".encode()
    return [l[len(head):] for l in bytes(data).split(b"\n") if l.startswith(head)]


def received_tail(needle):
    """Pump done(): a socket whose received bytes end with `needle` (looked
    for in the last bytes only, so each call is cheap)."""
    def done(_i, data):
        return data.find(needle, max(0, len(data) - len(needle) - 4096)) >= 0
    return done


def flood_and_check(proc, readers, sender, name, payload, want, timeout):
    """`sender` sends `payload` unpaced while `readers` read: each must get
    the lines `want` from `name`, in order, without being closed. The
    sockets are left open (who closes a client is checked after)."""
    pump = Pump(readers + [sender])
    k = len(readers)
    try:
        pump.send(k, payload)
        done_reader = received_tail(f"[{name}] ".encode() + want[-1] + b"\n")
        got = pump.run(done=lambda i, d: (not len(pump.out[i])) if i == k else
                       (done_reader(i, d) or pump.eof[i] is not None), timeout=timeout)
        for i in range(k):
            assert pump.eof[i] is None, f"reader #{i} was closed: {proc.err[-600:]!r}"
            said = lines_from(got[i], name)
            assert len(said) == len(want), f"reader #{i}: {len(said)} of {len(want)} lines"
            assert said == want, f"reader #{i}: lines lost or out of order"
    finally:
        pump.sel.close()  # the sockets stay open (the `sockets` fixture closes them)


class PipeOut:
    """A pipe for a server's stdout, read by a thread into .out; with
    blocked=True, not read (the server's writes block once the pipe is
    full) until release(). close() after the server has been killed."""

    def __init__(self, blocked=False):
        self.r, self.w = os.pipe()
        self.out = bytearray()
        self.cond = threading.Condition()
        self.released = threading.Event()
        if not blocked:
            self.released.set()
        self.thread = None

    def start(self):
        os.close(self.w)
        self.rfile = os.fdopen(self.r, "rb", buffering=0)
        self.thread = threading.Thread(target=self._drain, daemon=True)
        self.thread.start()

    def release(self):
        self.released.set()

    def _drain(self):
        self.released.wait(60)
        while True:
            b = self.rfile.read(1 << 20)
            with self.cond:
                if not b:
                    return
                self.out.extend(b)
                self.cond.notify_all()

    def wait(self, pred, what, timeout=60):
        deadline = time.monotonic() + timeout
        with self.cond:
            while not pred(self.out):
                left = deadline - time.monotonic()
                if left <= 0:
                    pytest.fail(f"stdout: timed out waiting for {what}")
                self.cond.wait(min(left, 0.2))
            return bytes(self.out)

    def wait_for(self, needle, timeout=60):
        return self.wait(lambda o: o.find(needle, max(0, len(o) - len(needle) - (1 << 20))) >= 0,
                         repr(needle), timeout)

    def close(self):
        self.release()
        if self.thread:
            self.thread.join(10)
            self.rfile.close()


# --------------------------------------------------- drops during a broadcast --


def test_chat_drops_during_a_broadcast_do_not_disturb_the_others(start_listener, sockets):
    """Several clients that never read (small receive buffers, the smallest
    --max-queue) are dropped while a flood of lines is broadcast, and each
    drop sends a notice to everyone, itself dropping the next slow client:
    the healthy clients, older and so later in the server's list, must still
    get every line, in order, and stay connected."""
    proc, port = start_listener(["--chat", "-k", "-v", "--max-queue", "65536", "-O", "sndbuf=8192"])
    healthy = join_in_order(proc, port, 3, sockets)
    slow = join_in_order(proc, port, 6, sockets, rcvbuf=4096)
    sender = join_in_order(proc, port, 1, sockets)[0]
    sn = name_of(sender)
    n = 50000
    lines = [b"%06d" % i for i in range(n)]
    healthy_names = [name_of(s) for s in healthy + [sender]]
    flood_and_check(proc, healthy, sender, sn, b"".join(l + b"\n" for l in lines), lines, 60)
    for s in slow:
        proc.wait_err(re.escape(name_of(s)) + r": closed: not reading")
    out = proc.wait_out(lambda o: o.find(f"[{sn}] {n - 1:06d}\n".encode()) >= 0)
    assert lines_from(out, sn) == lines, "stdout: lines lost or out of order"
    # one client more: stderr read up to its line, and "(5 now)": the
    # healthy clients and the sender are all still there
    said_connected(proc, sockets(connect(port)), now=len(healthy_names) + 1)
    for name in healthy_names:
        assert name + ": closed" not in proc.err
    assert "lost" not in proc.err, proc.err[-600:]
    assert proc.poll() is None


# ------------------------------------------------------------------- floods --


def unix_client(path):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(15)
    s.connect(path)
    return s


def flood_chat(start_duplex, sockets, listen_args, connect_fn, stdout_delay):
    """One client floods the chat with 64 KiB of bare newlines and then
    numbered lines, unpaced; three clients read, and so does the server's
    stdout (with stdout_delay: blocked from the start until that long after
    the flood has begun). Every reader, and stdout, gets every line in
    order; nobody is dropped; no stdout byte is lost."""
    out = PipeOut(blocked=stdout_delay > 0)
    try:
        proc = start_duplex(["listen", "--chat", "-k", "-v", *listen_args], stdout=out.w)
    finally:
        out.start()
    try:
        m = proc.wait_err(r"listening on (\S+)")
        socks, names = [], []
        for k in range(1, 5):
            socks.append(sockets(connect_fn(m)))
            names.append(proc.wait_err(r"duplex: (\S+): connected \(%d now\)" % k).group(1))
        readers, flooder, fname = socks[:3], socks[3], names[3]
        if stdout_delay:
            # still blocked: the flood starts against a full stdout (a longer
            # block only slows the test)
            unblock = threading.Timer(stdout_delay, out.release)
            unblock.daemon = True
            unblock.start()
        else:
            out.wait_for(f"* {fname} joined (4 connected)\n".encode(), timeout=15)
        n = 40000
        want = [b""] * 65536 + [b"%06d" % i for i in range(n)]
        flood_and_check(proc, readers, flooder, fname,
                        b"\n" * 65536 + b"".join(b"%06d\n" % i for i in range(n)), want, 90)
        text = out.wait_for(f"[{fname}] {n - 1:06d}\n".encode())
        assert lines_from(text, fname) == want, "stdout: lines lost or out of order"
        # one client more: stderr read up to its line, and "(5 now)": nobody left
        socks.append(sockets(connect_fn(m)))
        proc.wait_err(r"duplex: \S+: connected \(5 now\)")
        assert "not reading" not in proc.err and "lost" not in proc.err, proc.err[-600:]
        assert proc.poll() is None
    finally:
        proc.kill()
        out.close()


def test_chat_flood_of_lines_paced_by_readers(start_duplex, sockets):
    """Small socket buffers and the smallest --max-queue: one 32 KiB read of
    newlines would be 19x that queue in prefixed lines."""
    flood_chat(start_duplex, sockets,
               ["--max-queue", "65536", "-O", "sndbuf=8192", "127.0.0.1", "0"],
               lambda m: connect(int(m.group(1).rpartition(":")[2]), rcvbuf=8192), stdout_delay=0)


def test_chat_flood_with_blocked_stdout_loses_nothing(start_duplex, sockets, tmp_path):
    """A Unix socket with a long path (long client names: 64 KiB of newlines
    are 7 MB of prefixed lines, more than stdout's queue), the default
    --max-queue, and the server's stdout blocked until a second into the
    flood: stdout is never dropped, readers not either."""
    base = str(tmp_path) + "/"
    path = base + "c" * (100 - len(base))
    flood_chat(start_duplex, sockets, ["-U", path], lambda m: unix_client(path), stdout_delay=1.0)


def test_broker_unpaced_sender_slow_reader_loses_nothing(start_listener, sockets):
    """--broker, the smallest --max-queue: a sender that does not wait for
    anyone, and a reader slower than it (small receive buffer, small reads,
    paced by the test): the reader's queue passes half, reading from the
    sender pauses until it drains (congestion), and every byte arrives, in
    order, at the reader and at stdout; nobody is dropped."""
    out = PipeOut()
    try:
        proc, port = start_listener(["--broker", "-k", "-v", "--max-queue", "65536"], stdout=out.w)
    finally:
        out.start()
    try:
        reader = sockets(connect(port, rcvbuf=8192))
        proc.wait_err(re.escape(name_of(reader)) + r": connected")
        sender = sockets(connect(port))
        proc.wait_err(re.escape(name_of(sender)) + r": connected")
        total = 6 << 20
        data = os.urandom(total)
        got = bytearray()
        err = []

        def send():
            try:
                sender.sendall(data)  # unpaced: as fast as the server takes it
            except OSError as e:
                err.append(e)

        st = threading.Thread(target=send, daemon=True)
        st.start()
        reader.settimeout(30)
        deadline = time.monotonic() + 90
        while len(got) < total:
            if time.monotonic() > deadline:
                pytest.fail(f"reader got {len(got)} of {total} bytes; stderr={proc.err[-600:]!r}")
            try:
                b = reader.recv(4096)
            except socket.timeout:
                pytest.fail(f"reader: nothing for 30 s after {len(got)} bytes")
            if not b:
                pytest.fail(f"reader: EOF after {len(got)} of {total} bytes; stderr={proc.err[-600:]!r}")
            got += b
            if len(got) % (64 << 10) < 4096:
                time.sleep(0.002)  # the slow reader: at most ~32 MB/s, far below the sender
        st.join(30)
        assert not err, err
        assert bytes(got) == data, "reader: bytes lost or reordered"
        text = out.wait(lambda o: len(o) >= total, f"{total} bytes", 30)
        assert len(text) == total and text == data, f"stdout: {len(text)} of {total} bytes"
        # one client more: stderr read up to its line, and "(3 now)": nobody left
        said_connected(proc, sockets(connect(port)), now=3)
        assert "closed" not in proc.err, proc.err[-600:]
        assert "lost" not in proc.err, proc.err[-600:]
    finally:
        proc.kill()
        out.close()
