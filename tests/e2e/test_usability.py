"""What a newcomer trips on (issue 10, items 24, 25, 27, 30, 31): mistyped
commands, addresses that need a hint, errors that name the right step, a
bench that measured nothing, help that fits a screen, plural forms,
--version's features, --progress into a file, --show-opts notes."""

import os
import re
import socket
import subprocess

import pytest

from conftest import LISTENING_RE, closed_port, free_port
from servers_util import connect, recv_exact, wait_for

# ------------------------------------------- item 24: commands and hints --


@pytest.mark.parametrize("word, meant", [
    ("conect", "connect"), ("connnect", "connect"), ("lisen", "listen"), ("lsiten", "listen"),
    ("rely", "relay"), ("socket", "sockets"), ("bnech", "bench"), ("hlep", "help"),
])
def test_near_miss_command_is_unknown(word, meant, run_duplex):
    rc, out, err = run_duplex([word, "127.0.0.1", "80"])
    assert rc == 2, err
    assert f"duplex: unknown command '{word}' (did you mean {meant}?)" in err, err
    assert out == b""


def test_near_miss_after_flags(run_duplex):
    rc, _, err = run_duplex(["-v", "conect", "127.0.0.1", "80"])
    assert rc == 2, err
    assert "unknown command 'conect' (did you mean connect?)" in err, err


def test_relay_after_flags_is_the_relay_command(start_duplex):
    """`duplex -v relay LISTEN TARGET`, as `duplex -v connect ...` works: not
    a connect to a host named 'relay'."""
    p = start_duplex(["-v", "relay", "127.0.0.1:0", f"127.0.0.1:{free_port()}"])
    p.wait_err(LISTENING_RE)


@pytest.mark.parametrize("word", ["help", "sockets", "bench"])
def test_own_flag_commands_after_flags(word, run_duplex):
    rc, out, err = run_duplex(["-v", word])
    assert rc == 2 and out == b"", err
    assert f"duplex: '{word}' must be the first word" in err, err


def test_unknown_word_with_arguments_that_are_not_a_port(run_duplex):
    rc, _, err = run_duplex(["frobnicate", "a", "b"])
    assert rc == 2, err
    assert "duplex: unknown command 'frobnicate'" in err, err


@pytest.mark.parametrize("host", ["localhost", "127.0.0.1", "[::1]"])
def test_netcat_spelling_still_connects(host, run_duplex):
    """`duplex HOST PORT`: a first word far from every command name, followed
    by a port, is a host (here: a closed port, so the connect is refused)."""
    if host == "[::1]" and not socket.has_ipv6:
        pytest.skip("no IPv6")
    port = closed_port(host="::1" if host == "[::1]" else "127.0.0.1")
    rc, _, err = run_duplex([host, port])
    assert rc == 4, err
    assert "Connection refused" in err and "unknown command" not in err, err


def test_netcat_spelling_host_port_as_one(run_duplex):
    port = closed_port()
    rc, _, err = run_duplex([f"localhost:{port}"])
    assert rc == 4, err
    assert "Connection refused" in err, err


@pytest.mark.parametrize("args", [["help"], ["help", "help"]])
def test_help_command_is_the_summary(args, run_duplex):
    rc, out, err = run_duplex(args)
    assert rc == 0, err
    _, summary, _ = run_duplex(["--help"])
    assert out == summary and out.startswith(b"usage: duplex")


@pytest.mark.parametrize("cmd", ["connect", "listen", "relay", "sockets", "bench"])
def test_help_command_names_a_command(cmd, run_duplex):
    rc, out, err = run_duplex(["help", cmd])
    assert rc == 0, err
    _, direct, _ = run_duplex([cmd, "--help"])
    assert out == direct and f"duplex {cmd}".encode() in out


def test_help_unknown_command(run_duplex):
    rc, out, err = run_duplex(["help", "lisen"])
    assert rc == 2 and out == b""
    assert "unknown command 'lisen' (did you mean listen?)" in err, err


@pytest.mark.parametrize("args, shown", [
    (["-l", "24700", "24701"], "0.0.96.124"),
    (["listen", "24700", "24701"], "0.0.96.124"),
    (["listen", "127.1", "0"], "127.0.0.1"),
    (["listen", "-s", "0x7f000001", "0"], "127.0.0.1"),
    (["listen", "-u", "24700", "0"], "0.0.96.124"),
    (["relay", "24700:0", "127.0.0.1:9"], "0.0.96.124"),
    (["connect", "-s", "24700", "127.0.0.1", "9"], "0.0.96.124"),
])
def test_old_inet_aton_forms_refused_as_local_address(args, shown, run_duplex):
    """inet_aton reads '24700' as 0.0.96.124: `duplex -l 24700 24701` (two
    ports meant) used to bind that. A local address must be written in full."""
    rc, out, err = run_duplex(args)
    assert rc == 2, err
    assert "listening on" not in err and out == b""
    assert re.search(r"^duplex: .*'(24700|127\.1|0x7f000001)' is .*not a", err, re.M), err
    assert shown in err, err


@pytest.mark.parametrize("args", [["::1:8080"], ["connect", "::1:8080"]])
def test_bare_ipv6_with_port_gets_the_bracket_hint(args, run_duplex):
    rc, _, err = run_duplex(args)
    assert rc == 2, err
    assert "did you mean [::1]:8080?" in err, err


def test_listen_bare_ipv6_with_port_gets_the_bracket_hint(run_duplex):
    rc, _, err = run_duplex(["listen", "::1:8080"])
    assert rc == 2, err
    assert "did you mean [::1]:8080?" in err, err


def test_relay_bare_ipv6_target_gets_the_bracket_hint(run_duplex):
    rc, _, err = run_duplex(["relay", "0", "::1:8080"])
    assert rc == 2, err
    assert "did you mean [::1]:8080?" in err, err


@pytest.mark.parametrize("cmd", ["connect", "listen"])
def test_path_gets_the_unix_hint(cmd, run_duplex, tmp_path):
    path = str(tmp_path / "x.sock")
    rc, _, err = run_duplex([cmd, path])
    assert rc == 2, err
    assert f"duplex {cmd} -U {path}" in err, err


# ------------------------------------------- item 25: the bind is named --


@pytest.mark.parametrize("udp", [False, True])
def test_source_address_not_local_names_the_bind(udp, run_duplex):
    """-s with an address that is not ours (TEST-NET-1, nothing is sent):
    the bind failed, not the connect to the target."""
    port = free_port()
    rc, _, err = run_duplex(["connect", *(["-u"] if udp else []), "-s", "192.0.2.1", "127.0.0.1", port])
    assert rc == 4, err
    assert "duplex: bind 192.0.2.1: Cannot assign requested address" in err, err
    assert f"connect 127.0.0.1:{port}" not in err, err


def test_source_port_in_use_names_the_bind(run_duplex):
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen(1)
        sport = held.getsockname()[1]
        target = free_port()
        rc, _, err = run_duplex(["connect", "-p", sport, "127.0.0.1", target])
    assert rc == 4, err
    assert re.search(rf"^duplex: bind (0\.0\.0\.0|127\.0\.0\.1):{sport}: Address already in use$", err, re.M), err


def test_source_bind_through_a_proxy_names_the_bind(run_duplex):
    port = free_port()
    rc, _, err = run_duplex(["connect", "-x", f"127.0.0.1:{port}", "-s", "192.0.2.1", "example.com", "80"])
    assert rc == 4, err
    assert "duplex: bind 192.0.2.1: Cannot assign requested address" in err, err


# ---------------------------------------------- item 31: counts, plurals --


def test_session_counts_singular(start_listener, run_duplex):
    """connect -v to an echo server, one byte each way: '1 byte', not '1 bytes'."""
    _, port = start_listener(["-k", "--echo", "--no-stdio"])
    rc, out, err = run_duplex(["connect", "-v", "127.0.0.1", port], stdin=b"x")
    assert rc == 0, err
    assert out == b"x"
    assert re.search(r"sent 1 byte, received 1 byte in ", err), err


def test_server_counts_singular(start_listener):
    """listen -k -v: a client of one byte closes with '(sent 0 bytes,
    received 1 byte)' and the summary says 'served 1 client;'."""
    proc, port = start_listener(["-k", "-v", "--no-stdio"])
    c = connect(port)
    c.sendall(b"x")
    c.close()
    proc.wait_err(r"\(sent 0 bytes, received 1 byte\)")
    proc.popen.terminate()
    assert proc.wait() == 143, proc.err
    assert re.search(r"^duplex: served 1 client; refused 0 \(limit\)", proc.err, re.M), proc.err


def test_relay_counts_singular(start_duplex, start_listener):
    _, target = start_listener(["-k", "--echo", "--no-stdio"])
    relay = start_duplex(["relay", "-v", "127.0.0.1:0", f"127.0.0.1:{target}"])
    port = int(relay.wait_err(LISTENING_RE).group(2))
    c = connect(port)
    c.sendall(b"x")
    assert recv_exact(c, 1, 5) == b"x"
    c.close()
    relay.wait_err(r"sent 1 byte, received 1 byte in ")
    # without -k the relay serves one client and ends when it is done
    assert relay.wait() == 0, relay.err
    assert re.search(r"^duplex: relayed 1 connection; 0 failed", relay.err, re.M), relay.err


def test_udp_counts_singular(run_duplex):
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        rc, _, err = run_duplex(["connect", "-u", "-v", "127.0.0.1", port], stdin=b"x")
        assert s.recv(10) == b"x"
    assert rc == 0, err
    assert re.search(r"sent 1 datagram \(1 byte\), received 0 datagrams \(0 bytes\)", err), err


# ----------------------------------- item 31: --show-opts says what is so --


def test_show_opts_says_doubled_only_for_values_set(run_duplex):
    """Without -O rcvbuf/sndbuf the buffers are the kernel's defaults:
    nothing was 'requested', so nothing was doubled."""
    with socket.socket() as lsock:
        lsock.bind(("127.0.0.1", 0))
        lsock.listen(4)
        port = lsock.getsockname()[1]
        rc, _, err = run_duplex(["connect", "-q", "0", "--show-opts", "127.0.0.1", port], stdin=b"")
        assert rc == 0, err
        bufs = [ln for ln in err.splitlines() if re.match(r"duplex: option SO_(RCV|SND)BUF = \d+", ln)]
        assert len(bufs) == 2, err
        assert not any("doubl" in ln for ln in bufs), bufs
        rc, _, err = run_duplex(["connect", "-q", "0", "--show-opts", "-O", "rcvbuf=65536",
                                 "127.0.0.1", port], stdin=b"")
        assert rc == 0, err
        assert re.search(r"^duplex: option SO_RCVBUF = \d+ \(kernel doubles", err, re.M), err
        assert not re.search(r"^duplex: option SO_SNDBUF = .*doubl", err, re.M), err


# ------------------------------- item 31: --progress into a file or pipe --


def test_progress_always_not_a_terminal_writes_plain_lines(start_listener, run_duplex, tmp_path):
    """--progress=always with stderr into a pipe: no '\\r' or escape
    sequence; the final status is a line of its own."""
    _, port = start_listener(["-k", "--no-stdio"])
    data = tmp_path / "data"
    data.write_bytes(b"z" * 200000)
    with open(data, "rb") as f:
        rc, _, err = run_duplex(["connect", "-q", "0", "--progress=always", "127.0.0.1", port], stdin=f)
    assert rc == 0, err
    assert "\r" not in err and "\x1b" not in err, repr(err)
    assert re.search(r"^duplex: sent 195\.3 KiB, received 0 B, .*/s, \d\d:\d\d 100%$", err, re.M), repr(err)


def test_progress_on_a_terminal_rewrites_one_line(start_listener, spawn, duplex, tmp_path):
    import pty
    _, port = start_listener(["-k", "--no-stdio"])
    data = tmp_path / "data"
    data.write_bytes(b"z" * 1000)
    master, slave = pty.openpty()
    try:
        with open(data, "rb") as f:
            p = spawn([duplex, "connect", "-q", "0", "--progress", "127.0.0.1", port], stdin=f,
                      stderr=slave)
            os.close(slave)
            slave = -1
            assert p.wait() == 0
        got = b""
        while True:
            try:
                chunk = os.read(master, 4096)
            except OSError:
                break
            if not chunk:
                break
            got += chunk
    finally:
        if slave >= 0:
            os.close(slave)
        os.close(master)
    assert b"\r\x1b[Kduplex: sent 1000 B" in got, got


@pytest.mark.parametrize("args", [["-u", "127.0.0.1", "9"], ["-z", "127.0.0.1", "9"],
                                  ["listen", "-u", "127.0.0.1", "0"]])
def test_progress_where_it_cannot_apply_is_a_usage_error(args, run_duplex):
    rc, _, err = run_duplex(["--progress=always", *args])
    assert rc == 2, err
    assert "duplex: --progress" in err, err


# ------------------------- item 31: a client the server refuses is told --


@pytest.mark.parametrize("limit", [["--deny", "127.0.0.1"], ["-m", "1"]], ids=["deny", "max-conns"])
def test_refused_client_told_with_v(limit, start_listener, start_duplex, run_duplex):
    """The server closes a refused client at once (and says so with -v);
    `duplex connect -v` says the peer closed before any data."""
    srv, port = start_listener(["-k", "-v", "--no-stdio", *limit])
    if "-m" in limit:
        holder = start_duplex(["connect", "127.0.0.1", port], stdin=subprocess.PIPE)
        srv.wait_err(r"127\.0\.0\.1:\d+: connected \(1 now\)")
    rc, out, err = run_duplex(["connect", "-v", "127.0.0.1", port])
    assert rc == 0, err
    assert out == b""
    assert re.search(rf"^duplex: 127\.0\.0\.1:{port}: connection closed by peer before any data$",
                     err, re.M), err
    srv.wait_err(r"refused")


def test_refused_client_told_on_a_terminal(start_listener, spawn, duplex):
    """Without -v, on a terminal (nobody would otherwise notice the empty
    session), the same line."""
    import pty
    _, port = start_listener(["-k", "--no-stdio", "--deny", "127.0.0.1"])
    master, slave = pty.openpty()
    try:
        p = spawn([duplex, "connect", "127.0.0.1", port], stdin=slave)
        assert p.wait() == 0, p.err
    finally:
        os.close(slave)
        os.close(master)
    assert f"duplex: 127.0.0.1:{port}: connection closed by peer before any data" in p.err, p.err


def test_empty_reply_not_reported_when_data_was_sent(start_listener, run_duplex):
    """A client that sent something is not 'closed before any data' (a sink
    closing after reading is a normal end)."""
    _, port = start_listener(["-k", "--no-stdio"])
    rc, _, err = run_duplex(["connect", "-v", "-q", "0", "127.0.0.1", port], stdin=b"x")
    assert rc == 0, err
    assert "before any data" not in err, err


# --------------------------- item 30: help in layers, completion, install --

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def help_text(run_duplex, *args):
    rc, out, err = run_duplex([*args, "--help"])
    assert rc == 0, err
    return out.decode()


def listed(text, flag):
    """flag is described in text (as an option entry or named in one)."""
    return re.search(rf"(^|[\s,\[(/]){re.escape(flag)}($|[\s,=\[\]):/])", text, re.M) is not None


def described(text, flag):
    """flag has an entry of its own (an option line starting with it)."""
    return re.search(rf"^\s{{2,}}(-\w, )?{re.escape(flag)}([\s,=\[]|$)", text, re.M) is not None


def test_summary_fits_one_screen(run_duplex):
    text = help_text(run_duplex)
    lines = text.splitlines()
    assert len(lines) <= 24, f"duplex --help is {len(lines)} lines"
    assert all(len(ln) <= 80 for ln in lines), [ln for ln in lines if len(ln) > 80]
    for cmd in ("connect", "listen", "relay", "sockets", "bench", "help"):
        assert re.search(rf"^\s+{cmd}\b", text, re.M), f"the summary does not list {cmd}"
    for code in range(7):
        assert re.search(rf"\b{code} [a-z]", text), f"exit code {code} not in the summary"
    assert "duplex COMMAND --help" in text


CONNECT_FLAGS = ["-4", "-6", "-U", "-u", "-p", "-s", "-n", "-w", "-q", "-z", "-v", "-C",
                 "--hex-dump", "--send-oob", "--progress", "-x", "--proxy", "-X", "--proxy-auth",
                 "--ssl", "--ssl-servername", "--ssl-no-verify", "--ssl-trustfile", "--ssl-alpn",
                 "-O", "--show-opts", "--buffer-size", "--backend", "--send-only", "--recv-only"]
LISTEN_FLAGS = ["-k", "--echo", "--broker", "--chat", "-e", "--exec", "-c", "--sh-exec",
                "--no-stdio", "-m", "--max-conns", "--allow", "--deny", "--allowfile",
                "--denyfile", "--idle-timeout", "--max-queue", "--model", "--threads", "--ssl",
                "--ssl-cert", "--ssl-key", "--ssl-verify", "--backlog", "--reuseport", "-O",
                "-U", "-u", "-w", "-v", "--proxy-type", "--proxy-auth"]
SERVER_ONLY = ["--echo", "--broker", "--chat", "--max-conns", "--model", "--threads"]
RELAY_FLAGS = ["-k", "-w", "-v", "--json", "--stats-json", "-m", "--allow", "--deny",
               "--idle-timeout", "--ssl", "--ssl-target", "-O", "--show-opts", "--backend"]


def test_connect_help_lists_connect_flags(run_duplex):
    text = help_text(run_duplex, "connect")
    missing = [f for f in CONNECT_FLAGS if not listed(text, f)]
    assert not missing, f"connect --help does not list {missing}"
    wrong = [f for f in SERVER_ONLY if described(text, f)]
    assert not wrong, f"connect --help lists server flags {wrong}"


def test_listen_help_lists_listen_flags(run_duplex):
    text = help_text(run_duplex, "listen")
    missing = [f for f in LISTEN_FLAGS if not listed(text, f)]
    assert not missing, f"listen --help does not list {missing}"
    # the proxy server's flags, not the client's -x (connect only)
    assert not described(text, "--proxy"), "listen --help describes the proxy client's -x"
    assert help_text(run_duplex, "-l") == text


def test_relay_help_lists_relay_flags(run_duplex):
    text = help_text(run_duplex, "relay")
    missing = [f for f in RELAY_FLAGS if not listed(text, f)]
    assert not missing, f"relay --help does not list {missing}"
    wrong = [f for f in ("--echo", "--chat", "--proxy", "--send-oob") if described(text, f)]
    assert not wrong, f"relay --help lists flags relay refuses: {wrong}"


def test_json_is_an_alias_for_relay_and_refused_elsewhere(start_duplex, start_listener, run_duplex):
    _, target = start_listener(["-k", "--echo", "--no-stdio"])
    relay = start_duplex(["relay", "--json", "127.0.0.1:0", f"127.0.0.1:{target}"])
    port = int(relay.wait_err(LISTENING_RE).group(2))
    c = connect(port)
    c.sendall(b"ab")
    assert recv_exact(c, 2, 5) == b"ab"
    c.close()
    line = relay.wait_out(lambda o: o.endswith(b"\n")).decode()
    import json
    d = json.loads(line.splitlines()[0])
    assert d["client"] and d["target"], d
    for cmd in (["connect", "127.0.0.1", "9"], ["listen", "0"]):
        for flag in ("--json", "--stats-json"):
            rc, _, err = run_duplex([cmd[0], flag, *cmd[1:]])
            assert rc == 2 and "--json" in err, (cmd, flag, err)


def test_version_lists_features(run_duplex):
    rc, out, err = run_duplex(["--version"])
    assert rc == 0, err
    text = out.decode()
    assert re.match(r"duplex \d+\.\d+\.\d+\S*\n", text), text
    m = re.search(r"^backends: (.+)$", text, re.M)
    assert m and "epoll" in m.group(1).split() and "poll" in m.group(1).split(), text
    assert re.search(r"^io_uring: (yes|no|built in, unavailable)", text, re.M), text
    tls = re.search(r"^tls: (yes \(OpenSSL [^)]+\)|no)", text, re.M)
    assert tls, text
    # what --version says is what the build does
    probe = ["connect", "--ssl", "--ssl-no-verify", "-w", "1", "127.0.0.1", closed_port()]
    rc, _, err = run_duplex(probe)
    if tls.group(1) == "no":
        assert rc == 2 and "TLS" in err, err
    else:
        assert rc == 4, err
    uring = re.search(r"^io_uring: (\S+)", text, re.M).group(1)
    rc, _, err = run_duplex(["connect", "--backend", "io_uring", "127.0.0.1", closed_port()])
    assert (rc == 4) == (uring == "yes"), (uring, rc, err)


def _bash_complete(duplex, words):
    script = (f'source {REPO}/completions/duplex.bash\n'
              f'COMP_WORDS=({" ".join(words)}); COMP_CWORD=$(( ${{#COMP_WORDS[@]}} - 1 ))\n'
              '_duplex; printf "%s\\n" "${COMPREPLY[@]}"\n')
    env = dict(os.environ, PATH=os.path.dirname(duplex) + ":" + os.environ["PATH"])
    r = subprocess.run(["bash", "--norc", "-c", script], capture_output=True, timeout=15, env=env)
    assert r.returncode == 0, r.stderr
    return set(r.stdout.decode().split())


@pytest.mark.parametrize("words, want, unwanted", [
    (["duplex", "con"], {"connect"}, set()),
    (["duplex", "connect", "--pro"], {"--proxy", "--proxy-type", "--proxy-auth", "--progress"}, set()),
    (["duplex", "listen", "--ch"], {"--chat"}, set()),
    (["duplex", "-l", "--ec"], {"--echo"}, set()),
    (["duplex", "connect", "--ec"], set(), {"--echo"}),
    (["duplex", "relay", "--js"], {"--json"}, set()),
    (["duplex", "help", "l"], {"listen"}, set()),
    (["duplex", "bench", "t"], {"throughput"}, set()),
    (["duplex", "bench", "echo", "--wa"], {"--warmup"}, set()),
    (["duplex", "listen", "--model", "i"], {"iterative", "io_uring"}, set()),
    (["duplex", "-l", "-U", "-"], {"-u", "--udp"}, set()),  # ncat's -l -U -u PATH
])
def test_bash_completion(duplex, words, want, unwanted):
    got = _bash_complete(duplex, words)
    assert want <= got, got
    assert not (unwanted & got), got


@pytest.mark.skipif(not __import__("shutil").which("zsh"), reason="zsh not installed")
def test_zsh_completion(duplex):
    """An interactive zsh on a pty with completions/ in fpath: TAB after
    `duplex listen --ch` completes --chat (read until it shows, bounded)."""
    import pty
    import select
    import time
    pid, fd = pty.fork()
    if pid == 0:
        os.execvpe("zsh", ["zsh", "-f", "-i"],
                   {"PATH": os.path.dirname(duplex) + ":/usr/bin:/bin", "TERM": "dumb", "HOME": "/tmp"})
    try:
        def read_until(pat, timeout=10):
            buf, deadline = b"", time.monotonic() + timeout
            while pat not in buf and time.monotonic() < deadline:
                r, _, _ = select.select([fd], [], [], 0.2)
                if r:
                    try:
                        buf += os.read(fd, 4096)
                    except OSError:
                        break
            return buf
        os.write(fd, f"PS1='READY> '; fpath=({REPO}/completions $fpath); "
                     "autoload -Uz compinit; compinit -u -D; echo set""up-done\n".encode())
        assert b"setup-done" in read_until(b"setup-done\r\n"), "zsh did not start"
        os.write(fd, b"duplex listen --ch\t")
        got = read_until(b"--chat")
        assert b"--chat" in got, got[-300:]
    finally:
        os.kill(pid, 9)
        os.waitpid(pid, 0)
        os.close(fd)


def test_make_install_then_uninstall(duplex, tmp_path):
    """make install puts the binary, the static and shared library (with its
    soname and dev symlinks), the header, duplex.pc, the man page and both
    completion files; make uninstall removes exactly those, nothing else."""
    build = os.path.dirname(duplex)
    if not os.path.isfile(os.path.join(build, "libduplex.a")) or \
            os.path.commonpath([build, REPO]) != REPO:
        pytest.skip("DUPLEX is not a build of this tree")
    dest = tmp_path / "dest"
    keep = dest / "usr" / "bin" / "someone-else"
    keep.parent.mkdir(parents=True)
    keep.write_text("not ours\n")
    common = ["make", "-s", "-C", REPO, f"BUILD={os.path.relpath(build, REPO)}",
              f"DESTDIR={dest}", "PREFIX=/usr"]
    r = subprocess.run(common + ["install"], capture_output=True, timeout=600)
    assert r.returncode == 0, r.stderr
    files = sorted(str(p.relative_to(dest)) for p in dest.rglob("*") if p.is_file())
    version = re.search(r'#define DX_VERSION "([^"]+)"',
                        open(os.path.join(REPO, "include", "duplex.h")).read()).group(1)
    soversion = re.search(r"^SOVERSION = (\d+)", open(os.path.join(REPO, "Makefile")).read(),
                          re.M).group(1)
    assert files == sorted([
        "usr/bin/duplex", "usr/bin/someone-else", "usr/include/duplex.h", "usr/lib/libduplex.a",
        f"usr/lib/libduplex.so.{version}", f"usr/lib/libduplex.so.{soversion}", "usr/lib/libduplex.so",
        "usr/lib/pkgconfig/duplex.pc",
        "usr/share/man/man1/duplex.1", "usr/share/man/man3/libduplex.3",
        "usr/share/bash-completion/completions/duplex",
        "usr/share/zsh/site-functions/_duplex"]), files
    r = subprocess.run(common + ["uninstall"], capture_output=True, timeout=60)
    assert r.returncode == 0, r.stderr
    files = sorted(str(p.relative_to(dest)) for p in dest.rglob("*") if p.is_file())
    assert files == ["usr/bin/someone-else"], files
