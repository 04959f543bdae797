"""Shared fixtures and helpers for duplex's end-to-end tests.

Run with:  DUPLEX=/abs/path/build/duplex /usr/bin/python3 -m pytest -q tests/e2e

The helpers that are not fixtures (Proc, free_port, sha, Server...) live in
tests/pylib/dxtest.py, shared with the Windows suite (tests/windows/e2e);
they are imported here, so `from conftest import X` keeps working.

Rules every test follows:
- every process is started through the `spawn` fixture (or a helper built on
  it, or `spawn_limited`) and is killed and reaped by PID in the fixture's
  finalizer;
- every wait has a deadline (no unbounded wait(), read() or communicate());
- only 127.0.0.1, ::1 and Unix paths in a temporary directory, and only ports
  picked by the kernel (port 0) or found free by binding port 0.
"""

import os
import resource
import subprocess
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "pylib"))
from dxtest import release_closed_ports  # noqa: E402
from dxtest import (  # noqa: E402,F401  (re-exported for the test modules)
    LISTENING_RE, TIMEOUT, Backlog, Proc, RandomFile, Server, Spawner, accept_queue, alive, descendants,
    closed_port, free_port, have_ipv6_loopback, listeners_on, need, proc_net_sockets, recv_all, seeded_bytes, sha, tcp_queues,
    sha256_file, stat_fields, wait_listening, wait_unix_listening, write_random)

# ---------------------------------------------------------------- processes --


@pytest.fixture
def spawn():
    """spawn(args, stdin=None, stdout=PIPE, stderr=PIPE, env=None, name=None)
    starts a process and registers it for cleanup (killed by PID and reaped
    at teardown). stdin may be bytes (fed through a pipe by a thread, which
    then closes it), a file object or fd, subprocess.PIPE or DEVNULL.
    Returns a Proc (see dxtest.Spawner)."""
    s = Spawner()
    yield s
    s.cleanup()


# ------------------------------------------------------------------ duplex --


@pytest.fixture(scope="session")
def duplex_path():
    path = os.environ.get("DUPLEX")
    if not path:
        pytest.skip("DUPLEX is not set (DUPLEX=/abs/path/build/duplex)")
    if not (os.path.isfile(path) and os.access(path, os.X_OK)):
        pytest.skip(f"DUPLEX={path} is not an executable file")
    return os.path.abspath(path)


@pytest.fixture
def duplex(duplex_path):
    """The absolute path of the duplex binary under test."""
    return duplex_path


def _built_backends(path):
    """The backends `duplex --version` lists ("backends: epoll poll io_uring")
    plus whether io_uring works on this kernel ("io_uring: yes")."""
    out = subprocess.run([path, "--version"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                         timeout=TIMEOUT).stdout.decode(errors="replace")
    listed = []
    for line in out.splitlines():
        if line.startswith("backends:"):
            listed = line.split(":", 1)[1].split()
    if "io_uring" in listed and "io_uring: yes" not in out:
        listed.remove("io_uring")
    return listed


@pytest.fixture(scope="session")
def available_backends(duplex_path):
    return _built_backends(duplex_path)


@pytest.fixture(params=["epoll", "poll", "io_uring"])
def backend(request, available_backends):
    """Runs a test once per event loop backend; returns the name. Use
    backend_env (or env={'DUPLEX_BACKEND': backend}) when starting duplex.
    io_uring is skipped where the build or the kernel lacks it."""
    if request.param not in available_backends:
        pytest.skip(f"backend {request.param} not in `duplex --version` (build or kernel lacks it)")
    return request.param


@pytest.fixture
def backend_env(backend):
    return {"DUPLEX_BACKEND": backend}


@pytest.fixture
def run_duplex(duplex, spawn):
    """run_duplex(args, stdin=b'' | file | DEVNULL, timeout=TIMEOUT, env=None)
    runs duplex to completion and returns (rc, stdout bytes, stderr text)."""

    def _run(args, stdin=subprocess.DEVNULL, timeout=TIMEOUT, env=None):
        p = spawn([duplex, *args], stdin=stdin, env=env, name="duplex " + " ".join(map(str, args)))
        rc = p.wait(timeout)
        return rc, p.out, p.err

    return _run


@pytest.fixture
def start_duplex(duplex, spawn):
    """start_duplex(args, **spawn_kw) -> Proc running `duplex ARGS`."""

    def _start(args, **kw):
        kw.setdefault("name", "duplex " + " ".join(map(str, args)))
        return spawn([duplex, *args], **kw)

    return _start


@pytest.fixture
def start_listener(start_duplex):
    """start_listener(args=(), addr='127.0.0.1', **spawn_kw) runs
    `duplex listen ARGS ADDR 0` and returns (proc, port), the port read from
    the 'duplex: listening on ADDR:PORT' line (with a deadline)."""

    def _start(args=(), addr="127.0.0.1", timeout=TIMEOUT, **kw):
        p = start_duplex(["listen", *args, addr, "0"], **kw)
        m = p.wait_err(LISTENING_RE, timeout)
        port = int(m.group(2))
        assert 0 < port < 65536, m.group(0)
        return p, port

    return _start


@pytest.fixture
def spawn_limited(duplex):
    """spawn_limited(args, nofile=64, **popen_kw) -> Proc running `duplex
    ARGS` (any subcommand) with RLIMIT_NOFILE lowered in the child. Killed
    and reaped by PID at teardown."""
    procs = []

    def _start(args, nofile=64, **kw):
        argv = [duplex, *map(str, args)]

        def lower():
            resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, nofile))

        p = Proc(argv, "duplex " + " ".join(map(str, args)), stdin=kw.pop("stdin", subprocess.DEVNULL),
                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, preexec_fn=lower, close_fds=True, **kw)
        procs.append(p)
        return p

    yield _start
    for p in reversed(procs):
        p.kill()


# ---------------------------------------------------------- ports, peers --

@pytest.fixture
def backlog():
    """A Backlog (see there); skips if the queue cannot be filled here."""
    b = Backlog()
    try:
        if not b.hung:
            pytest.skip("could not fill the listen queue on this kernel (connects never hang)")
        yield b
    finally:
        b.close()


@pytest.fixture
def full_backlog(backlog):
    """The port of a Backlog: a listener whose SYNs are dropped (a connect
    to it hangs)."""
    return backlog.port


@pytest.fixture(scope="session")
def random_files(tmp_path_factory):
    """random_files(size, n=2) -> n RandomFile of `size` bytes, made once
    per session for each size."""
    cache = {}
    base = tmp_path_factory.mktemp("random")

    def _get(size, n=2):
        key = (size, n)
        if key not in cache:
            cache[key] = [RandomFile(base / f"r{size}-{n}-{i}.bin", size) for i in range(n)]
        return cache[key]

    return _get


# ---------------------------------------------------- scripted TCP peers --

@pytest.fixture
def server():
    """server(script, **kw) -> Server listening on 127.0.0.1:server.port
    (server(script, path=P): on the Unix socket P)."""
    servers = []

    def _make(script=None, **kw):
        s = Server(script, **kw)
        servers.append(s)
        return s

    yield _make
    for s in servers:
        s.close()



@pytest.fixture(autouse=True)
def _release_closed_ports():
    """Frees the ports closed_port() held for the test that just ended."""
    yield
    release_closed_ports()


@pytest.fixture
def tinyproxy(spawn, tmp_path):
    """tinyproxy(connect_ports=()) -> port of a tinyproxy on 127.0.0.1 (the
    HTTP proxy Debian has) that allows CONNECT to those ports only."""
    need("tinyproxy")

    def _start(connect_ports=()):
        port = free_port()
        conf = tmp_path / f"tinyproxy-{port}.conf"
        lines = [f"Port {port}", "Listen 127.0.0.1", "Timeout 30", "Allow 127.0.0.1",
                 "LogLevel Info", "MaxClients 10"]
        lines += [f"ConnectPort {cp}" for cp in connect_ports]
        conf.write_text("\n".join(lines) + "\n")
        p = spawn(["tinyproxy", "-d", "-c", conf], stdout=subprocess.DEVNULL)
        wait_listening(port, proc=p)
        return port

    return _start
