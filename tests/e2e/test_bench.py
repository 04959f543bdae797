"""duplex bench: the load generator, against `duplex listen -k --echo` and
against Python servers that misbehave. Each run measures 1 s or less."""

import json
import os
import socket
import threading
import time

import pytest

from conftest import free_port

BENCH_TIMEOUT = 30


@pytest.fixture
def echo_server(start_listener):
    """`duplex listen -k --echo --no-stdio 127.0.0.1 0` -> (proc, port)."""
    return start_listener(["-k", "--echo", "--no-stdio"])


def bench_json(run_duplex, *args, env=None):
    rc, out, err = run_duplex(["bench", *map(str, args), "--json"], timeout=BENCH_TIMEOUT, env=env)
    lines = out.decode().strip().splitlines()
    assert len(lines) == 1, (rc, out, err)
    return rc, json.loads(lines[0]), err


def check_percentiles(d):
    assert 0 < d["p50_us"] <= d["p90_us"] <= d["p99_us"] <= d["p999_us"] <= d["max_us"], d


@pytest.mark.parametrize("backend", ["epoll", "poll", "io_uring"])
def test_echo_json(run_duplex, echo_server, backend):
    _, port = echo_server
    args = ["bench", "echo", "127.0.0.1", str(port), "-c", "10", "-d", "1", "-w", "0.2",
            "--backend", backend, "--json"]
    rc, out, err = run_duplex(args, timeout=BENCH_TIMEOUT)
    if rc == 2 and backend == "io_uring" and "backend" in err:
        pytest.skip("io_uring backend not available here")
    d = json.loads(out)
    assert rc == 0, err
    assert d["mode"] == "echo" and d["conns"] == 10 and d["established"] == 10
    assert d["msgs_per_s"] > 0 and d["msgs"] > 0
    assert d["errors"] == 0 and d["verify_errors"] == 0
    check_percentiles(d)


def test_echo_text_report_and_histogram(run_duplex, echo_server):
    _, port = echo_server
    rc, out, err = run_duplex(["bench", "echo", "127.0.0.1", str(port), "-c", "4", "-d", "0.5",
                               "-w", "0", "--size", "200"], timeout=BENCH_TIMEOUT)
    assert rc == 0, err
    text = out.decode()
    assert "4 established" in text and "p99.9" in text and "latency histogram" in text, text
    bars = [ln for ln in text.splitlines() if "|" in ln and " - " in ln]
    assert 1 <= len(bars) <= 12, text
    assert all(len(ln) <= 80 for ln in text.splitlines()), text


def test_echo_procs_merged(run_duplex, echo_server):
    _, port = echo_server
    rc, d, err = bench_json(run_duplex, "echo", "127.0.0.1", port, "-c", 40, "-p", 2, "-d", 1,
                            "-w", 0.2, "-a", 4)
    assert rc == 0, err
    assert d["procs"] == 2 and d["established"] == 40 and d["errors"] == 0
    assert d["msgs_per_s"] > 0
    check_percentiles(d)


def test_connrate(run_duplex, echo_server):
    _, port = echo_server
    rc, d, err = bench_json(run_duplex, "connrate", "127.0.0.1", port, "-c", 8, "-d", 1, "-w", 0.2)
    assert rc == 0, err
    assert d["mode"] == "connrate" and d["msgs_per_s"] > 0 and d["errors"] == 0
    check_percentiles(d)


def count_sockets(pid):
    n = 0
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            if os.readlink(f"/proc/{pid}/fd/{fd}").startswith("socket:"):
                n += 1
        except OSError:
            pass
    return n


def test_idle_holds_connections(start_duplex, echo_server):
    server, port = echo_server
    base = count_sockets(server.pid)
    b = start_duplex(["bench", "idle", "127.0.0.1", port, "-c", 50, "-d", 1, "--json"])
    out = b.wait_out(lambda o: o.endswith(b"\n"), timeout=BENCH_TIMEOUT)
    d = json.loads(out)
    assert d["established"] == 50 and d["errors"] == 0
    # printed once all are open, then held for 1 s: the server sees all of them
    deadline = time.monotonic() + 5
    while count_sockets(server.pid) < base + 50 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert count_sockets(server.pid) >= base + 50
    assert b.wait(BENCH_TIMEOUT) == 0, b.err


@pytest.mark.parametrize("send_only", [False, True])
def test_throughput(run_duplex, echo_server, send_only):
    _, port = echo_server
    extra = ["--send-only"] if send_only else []
    rc, d, err = bench_json(run_duplex, "throughput", "127.0.0.1", port, "-c", 2, "-d", 1, "-w", 0.2,
                            *extra)
    assert rc == 0, err
    assert d["mode"] == "throughput" and d["errors"] == 0
    assert d["mib_per_s"] > 0 and d["sent_mib_per_s"] > 0
    if not send_only:
        assert d["rcvd_mib_per_s"] > 0


class CorruptingEcho:
    """An echo server (a thread per client) that flips one byte: the 100th
    byte of the first connection."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.corrupted = False
        self.conns = []
        self.threads = [threading.Thread(target=self._accept, daemon=True)]
        self.threads[0].start()

    def _accept(self):
        while not self.stop.is_set():
            try:
                c, _ = self.sock.accept()
            except OSError:
                continue
            self.conns.append(c)
            t = threading.Thread(target=self._serve, args=(c,), daemon=True)
            t.start()
            self.threads.append(t)

    def _serve(self, c):
        c.settimeout(0.2)
        seen = 0
        while not self.stop.is_set():
            try:
                b = c.recv(65536)
            except socket.timeout:
                continue
            except OSError:
                return
            if not b:
                return
            with self.lock:
                if not self.corrupted and seen + len(b) >= 100:
                    i = 99 - seen if seen < 100 else 0
                    b = b[:i] + bytes([b[i] ^ 0x5A]) + b[i + 1:]
                    self.corrupted = True
            seen += len(b)
            try:
                c.sendall(b)
            except OSError:
                return

    def close(self):
        self.stop.set()
        for s in [self.sock, *self.conns]:
            try:
                s.close()
            except OSError:
                pass
        for t in self.threads:
            t.join(2)


@pytest.fixture
def corrupting_echo():
    s = CorruptingEcho()
    yield s
    s.close()


def test_corrupted_byte_is_an_error(run_duplex, corrupting_echo):
    rc, d, err = bench_json(run_duplex, "echo", "127.0.0.1", corrupting_echo.port, "-c", 4, "-d", 1,
                            "-w", 0.2)
    assert corrupting_echo.corrupted
    assert rc == 1, err
    assert d["errors"] > 0 and d["verify_errors"] > 0


def test_refused_port_exits_4(run_duplex):
    port = free_port()
    rc, out, err = run_duplex(["bench", "echo", "127.0.0.1", str(port), "-c", "3", "-d", "1"],
                              timeout=BENCH_TIMEOUT)
    assert rc == 4, (out, err)
    assert f"connect 127.0.0.1:{port}" in err and "refused" in err, err
    assert out == b""


@pytest.mark.parametrize("args", [
    ["--bogus"],
    ["-c", "0"],
    ["-c"],
    ["-d", "abc"],
    ["-p", "0"],
    ["--send-only"],                       # echo mode
])
def test_bad_flags_exit_2(run_duplex, args):
    rc, out, err = run_duplex(["bench", "echo", "127.0.0.1", "9", *args])
    assert rc == 2, (out, err)
    assert "duplex: bench:" in err and "duplex bench --help" in err, err


@pytest.mark.parametrize("args", [
    [],
    ["nosuchmode", "127.0.0.1", "9"],
    ["echo", "127.0.0.1"],
    ["echo", "127.0.0.1", "99999"],
    ["echo", "127.0.0.1", "9", "extra"],
])
def test_bad_arguments_exit_2(run_duplex, args):
    rc, out, err = run_duplex(["bench", *args])
    assert rc == 2, (out, err)
    assert "duplex: bench:" in err, err


def test_bench_help(run_duplex):
    rc, out, _ = run_duplex(["bench", "--help"])
    assert rc == 0
    text = out.decode()
    for word in ("echo", "connrate", "idle", "throughput", "--json", "--send-only", "-p"):
        assert word in text
    assert all(len(ln) <= 80 for ln in text.splitlines())
    rc, out, _ = run_duplex(["--help"])
    assert rc == 0 and b"duplex bench" in out


def test_unknown_backend_exit_2(run_duplex):
    rc, _, err = run_duplex(["bench", "echo", "127.0.0.1", "9", "--backend", "nope"])
    assert rc == 2 and "backend" in err
