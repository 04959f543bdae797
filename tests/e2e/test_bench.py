"""duplex bench: the load generator, against `duplex listen -k --echo` and
against Python servers that misbehave. Each run measures 1 s or less."""

import json
import os
import shutil
import socket
import threading
import time

import pytest

from conftest import closed_port, free_port, wait_listening

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
    port = closed_port()
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
    for word in ("echo", "connrate", "idle", "throughput", "broker", "--json", "--send-only", "-p"):
        assert word in text
    assert all(len(ln) <= 80 for ln in text.splitlines())
    rc, out, _ = run_duplex(["--help"])
    assert rc == 0 and b"bench MODE HOST PORT" in out


def test_unknown_backend_exit_2(run_duplex):
    rc, _, err = run_duplex(["bench", "echo", "127.0.0.1", "9", "--backend", "nope"])
    assert rc == 2 and "backend" in err


# ---- broker mode: fan-out servers ------------------------------------------------


@pytest.fixture
def broker_server(start_listener):
    """`duplex listen -k --broker --no-stdio 127.0.0.1 0` -> (proc, port)."""
    return start_listener(["-k", "--broker", "--no-stdio"])


def test_broker_json(run_duplex, broker_server):
    _, port = broker_server
    rc, d, err = bench_json(run_duplex, "broker", "127.0.0.1", port, "-c", 5, "-d", 1, "-w", 0)
    assert rc == 0, err
    assert d["mode"] == "broker" and d["conns"] == 5 and d["established"] == 5
    assert d["rounds"] > 0 and d["msgs"] == d["rounds"] * 4, d
    assert d["msgs_per_s"] == pytest.approx(d["rounds_per_s"] * 4, rel=0.01, abs=4), d
    assert d["errors"] == 0 and d["verify_errors"] == 0 and d["stalled"] == 0, d
    check_percentiles(d)


def test_broker_text_report(run_duplex, broker_server):
    _, port = broker_server
    rc, out, err = run_duplex(["bench", "broker", "127.0.0.1", str(port), "-c", "3", "-d", "0.5",
                               "-w", "0.1", "-s", "70000"], timeout=BENCH_TIMEOUT)
    assert rc == 0, err
    text = out.decode()
    assert "3 established" in text and "rounds" in text and "deliveries" in text, text
    assert "to the 2 others" in text and "latency histogram" in text, text
    assert all(len(ln) <= 80 for ln in text.splitlines()), text


class PyBroker:
    """A one-thread fan-out server: what a client sends goes to the other
    clients (broadcast), back to the sender (echo), or both. close_after:
    the second client accepted is closed once that many bytes went to it."""

    def __init__(self, broadcast=True, echo=False, close_after=None):
        self.broadcast, self.echo, self.close_after = broadcast, echo, close_after
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(128)
        self.port = self.sock.getsockname()[1]
        self.stop = threading.Event()
        self.closed_one = False
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        import selectors
        sel = selectors.DefaultSelector()
        sel.register(self.sock, selectors.EVENT_READ)
        clients = {}  # socket -> bytes sent to it
        order = []
        while not self.stop.is_set():
            for key, _ in sel.select(0.1):
                s = key.fileobj
                if s is self.sock:
                    c, _ = self.sock.accept()
                    c.setblocking(True)
                    clients[c] = 0
                    order.append(c)
                    sel.register(c, selectors.EVENT_READ)
                    continue
                try:
                    b = s.recv(65536)
                except OSError:
                    b = b""
                if not b:
                    sel.unregister(s)
                    clients.pop(s, None)
                    s.close()
                    continue
                for c in list(clients):
                    if (c is s and self.echo) or (c is not s and self.broadcast):
                        try:
                            c.sendall(b)
                        except OSError:
                            continue
                        clients[c] += len(b)
                        if (self.close_after is not None and not self.closed_one
                                and len(order) > 1 and c is order[1]
                                and clients[c] >= self.close_after):
                            self.closed_one = True
                            sel.unregister(c)
                            del clients[c]
                            c.close()
        for c in clients:
            c.close()

    def close(self):
        self.stop.set()
        self.thread.join(5)
        self.sock.close()


@pytest.fixture
def py_broker():
    servers = []

    def _make(**kw):
        s = PyBroker(**kw)
        servers.append(s)
        return s

    yield _make
    for s in servers:
        s.close()


@pytest.mark.parametrize("broadcast", [True, False], ids=["echo+broadcast", "echo-only"])
def test_broker_bytes_back_at_sender_are_errors(run_duplex, py_broker, broadcast):
    srv = py_broker(broadcast=broadcast, echo=True)
    rc, d, err = bench_json(run_duplex, "broker", "127.0.0.1", srv.port, "-c", 3, "-d", 1, "-w", 0)
    assert rc == 1, (d, err)
    assert d["verify_errors"] > 0 and d["errors"] >= d["verify_errors"], d


def test_broker_server_closing_a_client_is_an_error(run_duplex, py_broker):
    srv = py_broker(close_after=20000)
    t0 = time.monotonic()
    rc, d, err = bench_json(run_duplex, "broker", "127.0.0.1", srv.port, "-c", 4, "-d", 1, "-w", 0)
    assert time.monotonic() - t0 < 10
    assert srv.closed_one
    assert rc == 0, (d, err)
    assert d["errors"] >= 1 and d["verify_errors"] == 0, d
    assert d["rounds"] > 0 and d["established"] == 4, d


@pytest.mark.parametrize("args", [["-c", "1"], ["-c", "3", "-p", "2"]])
def test_broker_usage_errors(run_duplex, args):
    rc, out, err = run_duplex(["bench", "broker", "127.0.0.1", "9", *args])
    assert rc == 2, (out, err)
    assert "duplex: bench:" in err and "broker" in err and "duplex bench --help" in err, err
    assert out == b""


def test_broker_refused_port_exits_4(run_duplex):
    port = closed_port()
    rc, out, err = run_duplex(["bench", "broker", "127.0.0.1", str(port), "-c", "3", "-d", "1"],
                              timeout=BENCH_TIMEOUT)
    assert rc == 4, (out, err)
    assert f"connect 127.0.0.1:{port}" in err and "refused" in err, err


def test_broker_against_ncat(run_duplex, spawn):
    ncat = shutil.which("ncat")
    if ncat is None:
        pytest.skip("ncat is not installed")
    port = free_port()
    spawn([ncat, "-lk", "--broker", "127.0.0.1", port], name="ncat --broker")
    wait_listening(port)
    rc, d, err = bench_json(run_duplex, "broker", "127.0.0.1", port, "-c", 10, "-d", 1, "-w", 0.2)
    assert rc == 0, err
    assert d["established"] == 10 and d["rounds"] > 0, d
    assert d["errors"] == 0 and d["verify_errors"] == 0, d
    assert d["msgs"] == d["rounds"] * 9, d


def test_echo_and_connrate_over_tls(run_duplex, start_listener):
    """bench --ssl against duplex listen -k --echo --ssl: every connection
    is a TLS client, every echoed byte checked; connrate counts full TLS
    connects."""
    _, port = start_listener(["-k", "--echo", "--no-stdio", "--ssl"])
    rc, d, err = bench_json(run_duplex, "echo", "--ssl", "127.0.0.1", port, "-c", 20, "-d", 1,
                            "-w", 0.2)
    assert rc == 0, err
    assert d["tls"] is True and d["established"] == 20
    assert d["msgs"] > 0 and d["errors"] == 0 and d["verify_errors"] == 0
    check_percentiles(d)
    rc, d, err = bench_json(run_duplex, "connrate", "--ssl", "127.0.0.1", port, "-c", 4, "-d", 1,
                            "-w", 0.2)
    assert rc == 0, err
    assert d["msgs"] > 0 and d["errors"] == 0


def test_tls_against_a_plain_server_exits_4(run_duplex, echo_server):
    _, port = echo_server
    rc, out, err = run_duplex(["bench", "echo", "--ssl", "127.0.0.1", str(port), "-c", "3",
                               "-d", "1"], timeout=BENCH_TIMEOUT)
    assert rc == 4, (out, err)
    assert "TLS handshake failed (does the server speak TLS?)" in err, err


def test_tls_broker_is_a_usage_error(run_duplex):
    rc, out, err = run_duplex(["bench", "broker", "--ssl", "127.0.0.1", "9"])
    assert rc == 2, err
    assert "--ssl: echo, connrate, idle and throughput only" in err, err


# ------------------------------------------------ a run that measured nothing --


@pytest.fixture
def sink_server(start_listener):
    """`duplex listen -k --no-stdio`: reads every client, answers nothing."""
    return start_listener(["-k", "--no-stdio"])


@pytest.mark.parametrize("mode", ["echo", "connrate", "throughput", "broker"])
@pytest.mark.parametrize("json_out", [True, False], ids=["json", "text"])
def test_nothing_measured_is_a_failure(run_duplex, sink_server, mode, json_out):
    """Against a server that never answers, every mode used to report 0
    messages, 0 errors and exit 0."""
    _, port = sink_server
    args = ["bench", mode, "127.0.0.1", str(port), "-c", "2", "-d", "0.5", "-w", "0.1"]
    rc, out, err = run_duplex(args + (["--json"] if json_out else []), timeout=BENCH_TIMEOUT)
    assert rc == 1, (rc, out, err)
    assert "duplex: bench: measured nothing: " in err, err
    if json_out:
        d = json.loads(out.decode())
        assert d["msgs"] == 0 and d["errors"] == 0 or mode == "broker", d
    else:
        assert b"duplex bench " + mode.encode() in out


def test_send_only_against_a_sink_measured_something(run_duplex, sink_server):
    _, port = sink_server
    rc, d, err = bench_json(run_duplex, "throughput", "127.0.0.1", port, "-d", 0.5, "-w", 0.1,
                            "--send-only")
    assert rc == 0, err
    assert d["sent_mib_per_s"] > 0 and "measured nothing" not in err
