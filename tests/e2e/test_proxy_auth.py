"""HTTP proxy authentication of `duplex connect -x ... -X connect --proxy-auth`.

As ncat 7.93's client does (measured: it sends `CONNECT host:port HTTP/1.0`
with no credentials, then on a 407 retries once, on a new connection even
when the 407 keeps it, with Digest MD5 or Basic),
duplex sends the CONNECT without credentials first, then answers the 407's
strongest challenge: Digest SHA-256, then Digest MD5 (qop=auth), then
Basic. ncat's client cannot answer a Digest SHA-256 challenge ("Error
building Proxy-Authorization header."), even when MD5 is offered next to it, and it sends a Digest opaque value
back without escaping its quotes.

A scripted Python proxy (AuthProxy) offers the schemes a test asks for,
records every request head, checks the answer with hashlib and, once
satisfied, relays to the target; ncat's own `-l --proxy-type http
--proxy-auth` (Basic and Digest MD5 offers, HTTP/1.0, closes after its 407)
is the real proxy. Data through the tunnel is compared by hash.
"""

import base64
import hashlib
import os
import re
import socket
import subprocess
import threading

import pytest

from conftest import TIMEOUT, free_port, need, recv_all, wait_listening
from test_proxy import recv_until, run_exchange

KiB = 1 << 10

PARAM_RE = re.compile(r'\s*([A-Za-z0-9_-]+)=("(?:[^"\\]|\\.)*"|[^,\s]*)\s*,?')


def parse_params(text):
    out = {}
    for m in PARAM_RE.finditer(text):
        v = m.group(2)
        if v.startswith('"'):
            v = re.sub(r"\\(.)", r"\1", v[1:-1])
        out[m.group(1).lower()] = v
    return out


def q(text):
    """A quoted-string's inside."""
    return text.replace("\\", "\\\\").replace('"', '\\"')


def relay(a, b):
    """Copy both ways between two sockets, passing half-closes on."""

    def pump(src, dst):
        try:
            while True:
                d = src.recv(65536)
                if not d:
                    break
                dst.sendall(d)
            dst.shutdown(socket.SHUT_WR)
        except OSError:
            pass

    t = [threading.Thread(target=pump, args=(a, b), daemon=True),
         threading.Thread(target=pump, args=(b, a), daemon=True)]
    for x in t:
        x.start()
    for x in t:
        x.join(TIMEOUT)


class AuthProxy:
    """An HTTP CONNECT proxy that wants `creds` ("user:pass"). offers: the
    challenges of its 407, among "sha256", "md5", "basic" (in that order in
    its reply). close: it closes the connection after each 407 (else the 407
    has a body with a Content-Length, and the connection stays). stale: its
    first Digest answer is refused once with stale=true. heads: the request
    heads it got, with the connection number."""

    def __init__(self, creds, offers, close=False, stale=False, after_ok=b"", opaque="opaque-1"):
        self.creds, self.offers, self.close, self.stale = creds, offers, close, stale
        self.opaque = opaque
        self.after_ok = after_ok
        self.heads = []
        self.answers = []  # (scheme, algorithm) of each Proxy-Authorization
        self.nonce = os.urandom(12).hex()
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(4)
        self.sock.settimeout(TIMEOUT)
        self.port = self.sock.getsockname()[1]
        self.error = None
        self.conns = 0
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def challenge(self):
        lines = []
        for o in self.offers:
            if o == "basic":
                lines.append('Proxy-Authenticate: Basic realm="test"')
            else:
                alg = "SHA-256" if o == "sha256" else "MD5"
                lines.append(f'Proxy-Authenticate: Digest realm="test", qop="auth", algorithm={alg}, '
                             f'nonce="{self.nonce}", opaque="{q(self.opaque)}"')
        return "".join(line + "\r\n" for line in lines).encode()

    def check(self, value, method, uri):
        """True when value proves self.creds; also records what was used."""
        scheme, _, rest = value.partition(" ")
        user, _, pw = self.creds.partition(":")
        if scheme.lower() == "basic":
            self.answers.append(("Basic", None))
            return "basic" in self.offers and base64.b64decode(rest.strip()) == self.creds.encode()
        if scheme.lower() != "digest":
            return False
        p = parse_params(rest)
        alg = p.get("algorithm", "MD5")
        self.answers.append(("Digest", alg))
        h = {"MD5": hashlib.md5, "SHA-256": hashlib.sha256}.get(alg)
        if h is None or p.get("qop") != "auth" or p.get("nonce") != self.nonce or p.get("uri") != uri:
            return False
        if p.get("opaque") != self.opaque or p.get("realm") != "test" or p.get("username") != user:
            return False

        def H(s):
            return h(s.encode()).hexdigest()

        want = H(":".join([H(f"{user}:test:{pw}"), self.nonce, p["nc"], p["cnonce"], "auth",
                           H(f"{method}:{uri}")]))
        return p.get("response") == want

    def _run(self):
        try:
            while True:
                conn, _ = self.sock.accept()
                self.conns += 1
                conn.settimeout(TIMEOUT)
                if self._serve(conn, self.conns):
                    return
        except socket.timeout:
            pass
        except Exception as e:  # reported by join()
            self.error = e

    def _serve(self, conn, n):
        """One connection: True when the tunnel ran (the proxy is done)."""
        while True:
            try:
                head = recv_until(conn, b"\r\n\r\n").decode("latin-1")
            except AssertionError:
                conn.close()
                return False
            self.heads.append((n, head))
            method, target = head.split(" ")[:2]
            auth = re.search(r"^Proxy-Authorization: (.*)\r$", head, re.M | re.I)
            if auth and self.check(auth.group(1), method, target):
                if self.stale and self.answers[-1][0] == "Digest":
                    self.stale = False
                    self.nonce = os.urandom(12).hex()
                    conn.sendall(b"HTTP/1.1 407 Proxy Authentication Required\r\n" +
                                 self.challenge().replace(b"Digest ", b"Digest stale=true, ") +
                                 b"Content-Length: 0\r\n\r\n")
                    continue
                host, _, port = target.rpartition(":")
                up = socket.create_connection((host, int(port)), timeout=TIMEOUT)
                conn.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n" + self.after_ok)
                relay(conn, up)
                conn.close()
                up.close()
                return True
            body = b"<html>auth needed</html>\n"
            if self.close:
                conn.sendall(b"HTTP/1.1 407 Proxy Authentication Required\r\n" + self.challenge() +
                             b"Connection: close\r\n\r\n" + body)
                conn.close()
                return False
            conn.sendall(b"HTTP/1.1 407 Proxy Authentication Required\r\n" + self.challenge() +
                         b"Content-Length: %d\r\n\r\n" % len(body) + body)

    def join(self):
        self.thread.join(TIMEOUT)
        if self.error:
            raise self.error

    def stop(self):
        self.sock.close()


@pytest.fixture
def auth_proxy():
    made = []

    def _make(*a, **kw):
        p = AuthProxy(*a, **kw)
        made.append(p)
        return p

    yield _make
    for p in made:
        p.stop()


def ncat_proxy(spawn, creds):
    need("ncat")
    port = free_port()
    np = spawn(["ncat", "-l", "-k", "127.0.0.1", port, "--proxy-type", "http", "--proxy-auth", creds],
               stdout=subprocess.DEVNULL)
    wait_listening(port, proc=np)
    return port


# -------------------------------------------------------- schemes chosen --


@pytest.mark.parametrize("offers,chosen", [
    (["basic"], ("Basic", None)),
    (["md5"], ("Digest", "MD5")),
    (["sha256"], ("Digest", "SHA-256")),
    (["sha256", "md5", "basic"], ("Digest", "SHA-256")),
    (["basic", "md5"], ("Digest", "MD5")),
    (["basic", "md5", "sha256"], ("Digest", "SHA-256")),
])
def test_scheme_chosen_and_tunnel(start_duplex, server, auth_proxy, offers, chosen):
    """No credentials on the first request; the strongest offer answered
    (checked with hashlib); 256 KiB each way through the tunnel."""
    px = auth_proxy("user:pa ss", offers, opaque='op"a\\que')
    p, res = run_exchange(start_duplex, server, ["connect", "-v", "-X", "connect", "-x", f"127.0.0.1:{px.port}",
                                                 "--proxy-auth", "user:pa ss"], size=256 * KiB)
    px.join()
    assert len(px.heads) == 2, px.heads
    assert "Proxy-Authorization" not in px.heads[0][1]
    assert px.heads[0][0] == px.heads[1][0] == 1  # the connection was kept (Content-Length)
    assert px.answers == [chosen]
    name = " ".join(x for x in chosen if x)
    assert f": the proxy took the credentials of user 'user' ({name})\n" in p.err  # -v
    assert "pa ss" not in p.err


@pytest.mark.parametrize("offers", [["basic"], ["md5"], ["sha256"]])
def test_connection_close_after_407(start_duplex, server, auth_proxy, offers):
    """The proxy closes after its 407 (its body runs to the close): duplex
    sends the credentials on a new connection."""
    px = auth_proxy("user:secret", offers, close=True)
    run_exchange(start_duplex, server, ["connect", "-X", "connect", "-x", f"127.0.0.1:{px.port}",
                                        "--proxy-auth", "user:secret"], size=64 * KiB)
    px.join()
    assert [n for n, _ in px.heads] == [1, 2]


@pytest.mark.parametrize("offers", [["basic"], ["md5"], ["sha256"]])
def test_empty_password(start_duplex, server, auth_proxy, offers):
    """--proxy-auth USER (no colon): an empty password, as ncat."""
    px = auth_proxy("user:", offers)
    run_exchange(start_duplex, server, ["connect", "-X", "connect", "-x", f"127.0.0.1:{px.port}",
                                        "--proxy-auth", "user"], size=16 * KiB)
    px.join()


@pytest.mark.parametrize("offers,scheme", [(["basic"], "Basic"), (["md5"], "Digest MD5"),
                                           (["sha256", "basic"], "Digest SHA-256")])
def test_wrong_password(run_duplex, auth_proxy, offers, scheme):
    px = auth_proxy("user:right", offers)
    rc, out, err = run_duplex(["connect", "-X", "connect", "-x", f"127.0.0.1:{px.port}",
                               "--proxy-auth", "user:wrong", "127.0.0.1", "9"])
    assert rc == 4, err
    assert (f"duplex: proxy 127.0.0.1:{px.port}: HTTP CONNECT 127.0.0.1:9: credentials refused for user "
            f"'user' ({scheme}; 407 Proxy Authentication Required)") in err
    assert "wrong" not in err and "right" not in err
    assert len(px.heads) == 2  # one retry, no more


def test_no_credentials_given(run_duplex, auth_proxy):
    px = auth_proxy("user:pw", ["basic"])
    rc, out, err = run_duplex(["connect", "-X", "connect", "-x", f"127.0.0.1:{px.port}", "127.0.0.1", "9"])
    assert rc == 4, err
    assert "407 Proxy Authentication Required: the proxy wants credentials: give --proxy-auth USER:PASS" in err


def test_stale_nonce_retried_once(start_duplex, server, auth_proxy):
    """A Digest answer refused with stale=true (a new nonce) is made again."""
    px = auth_proxy("user:pw", ["sha256", "md5"], stale=True)
    run_exchange(start_duplex, server, ["connect", "-X", "connect", "-x", f"127.0.0.1:{px.port}",
                                        "--proxy-auth", "user:pw"], size=16 * KiB)
    px.join()
    assert len(px.heads) == 3 and px.answers == [("Digest", "SHA-256")] * 2


def test_unknown_scheme_only(run_duplex, server):
    def script(conn, result):
        recv_until(conn, b"\r\n\r\n")
        conn.sendall(b"HTTP/1.1 407 Proxy Authentication Required\r\nProxy-Authenticate: NTLM\r\n"
                     b"Proxy-Authenticate: Negotiate\r\nContent-Length: 0\r\n\r\n")
        recv_all(conn)

    srv = server(script)
    rc, out, err = run_duplex(["connect", "-X", "http", "-x", f"127.0.0.1:{srv.port}",
                               "--proxy-auth", "u:topsecret", "127.0.0.1", "9"])
    assert rc == 4, err
    assert "the proxy offers no scheme duplex can answer" in err and "offered: NTLM, Negotiate" in err
    assert "topsecret" not in err


def test_target_bytes_after_the_200_stay(run_duplex, server, auth_proxy):
    """The target's first bytes, in the same segment as the 200 that follows
    the credentials, reach stdout: the reply is read exactly."""
    def target(conn, result):
        result["rest"] = recv_all(conn)
        conn.close()

    srv = server(target)
    px = auth_proxy("user:pw", ["md5"], after_ok=b"HELLO-FIRST")
    rc, out, err = run_duplex(["connect", "-N", "-X", "connect", "-x", f"127.0.0.1:{px.port}",
                               "--proxy-auth", "user:pw", "127.0.0.1", srv.port], stdin=b"ping")
    assert rc == 0, err
    assert out == b"HELLO-FIRST"
    assert srv.join()["rest"] == b"ping"


# ------------------------------------------------------ against ncat's --


def test_ncat_proxy_server_with_auth(start_duplex, run_duplex, server, spawn):
    """ncat -l --proxy-type http --proxy-auth: Basic and Digest (MD5) offers,
    HTTP/1.0, it closes after the 407; duplex answers Digest on a second
    connection. 48 KiB each way (ncat is no bulk peer)."""
    pport = ncat_proxy(spawn, "user:s3cret")
    p, res = run_exchange(start_duplex, server, ["connect", "-v", "-X", "connect", "-x", f"127.0.0.1:{pport}",
                                                 "--proxy-auth", "user:s3cret"], size=48 * KiB)
    assert f"through proxy 127.0.0.1:{pport} (http)" in p.err
    rc, out, err = run_duplex(["connect", "-X", "connect", "-x", f"127.0.0.1:{pport}",
                               "--proxy-auth", "user:nope", "127.0.0.1", "9"])
    assert rc == 4 and "credentials refused for user 'user' (Digest MD5;" in err, err


class RecordingRelay:
    """In front of a proxy: every connection relayed to it, the first
    request head of each recorded (the 407 ends ncat's connection)."""

    def __init__(self, port):
        self.port_to = port
        self.heads = []
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(4)
        self.sock.settimeout(TIMEOUT)
        self.port = self.sock.getsockname()[1]
        self.threads = []
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self):
        try:
            for _ in range(4):
                conn, _ = self.sock.accept()
                conn.settimeout(TIMEOUT)
                up = socket.create_connection(("127.0.0.1", self.port_to), timeout=TIMEOUT)
                head = recv_until(conn, b"\r\n\r\n")
                self.heads.append(head.decode("latin-1"))
                up.sendall(head)
                t = threading.Thread(target=relay, args=(conn, up), daemon=True)
                t.start()
                self.threads.append(t)
        except (OSError, AssertionError):
            pass


def test_ncat_proxy_server_sees_digest(start_duplex, server, spawn):
    """What duplex sends to ncat's proxy (Basic and Digest MD5 offered):
    nothing first, then Digest MD5, on a second connection."""
    pport = ncat_proxy(spawn, "user:s3cret")
    rec = RecordingRelay(pport)
    p, res = run_exchange(start_duplex, server, ["connect", "-X", "connect", "-x", f"127.0.0.1:{rec.port}",
                                                 "--proxy-auth", "user:s3cret"], size=16 * KiB)
    assert len(rec.heads) == 2, rec.heads
    assert "Proxy-Authorization" not in rec.heads[0]
    auth = re.search(r"^Proxy-Authorization: Digest (.*)\r$", rec.heads[1], re.M)
    assert auth, rec.heads[1]
    params = parse_params(auth.group(1))
    assert params["algorithm"] == "MD5" and params["qop"] == "auth" and params["username"] == "user"
    assert params["realm"] == "Ncat"


@pytest.mark.parametrize("offers,ncat_ok", [
    (["basic"], True), (["md5"], True), (["sha256"], False), (["sha256", "md5", "basic"], False),
])
def test_same_line_as_ncat(run_duplex, spawn, server, auth_proxy, offers, ncat_ok):
    """`--proxy HOST:PORT --proxy-type http --proxy-auth user:pw HOST PORT`
    with ncat and duplex against the same offers: duplex gets through every
    time; ncat 7.93 only where no SHA-256 challenge is offered."""
    need("ncat")
    results = {}
    for tool in ("ncat", "duplex"):
        data = os.urandom(32 * KiB)

        def target(conn, result, n=len(data)):
            conn.sendall(hashlib.sha256(recv_exact_all(conn, n)).digest())
            conn.close()

        srv = server(target)
        px = auth_proxy("user:pw", offers)
        args = ["--proxy", f"127.0.0.1:{px.port}", "--proxy-type", "http", "--proxy-auth", "user:pw",
                "127.0.0.1", str(srv.port)]
        if tool == "ncat":
            p = spawn(["ncat", *args], stdin=data)
            rc = p.wait()
            out = p.out
        else:
            rc, out, _ = run_duplex(["connect", *args], stdin=data)
        results[tool] = (rc, out == hashlib.sha256(data).digest())
        if tool == "ncat" and not ncat_ok:
            assert rc != 0 and "Error building Proxy-Authorization header" in p.err, p.err
            assert all("Proxy-Authorization" not in h for _, h in px.heads)
    assert results["duplex"] == (0, True)
    if ncat_ok:
        assert results["ncat"] == (0, True)


def recv_exact_all(conn, n):
    buf = b""
    while len(buf) < n:
        d = conn.recv(n - len(buf))
        if not d:
            break
        buf += d
    return buf


def test_socks5_user_without_password(run_duplex, spawn, server):
    """SOCKS5 --proxy-auth USER: RFC 1929 with an empty password (PLEN 0).
    ncat 7.93 refuses the same line ("invalid username:password combo")."""

    def script(conn, result):
        result["greeting"] = conn.recv(3 + 1)
        conn.sendall(b"\x05\x02")
        result["auth"] = recv_exact_all(conn, 1 + 1 + 4 + 1)
        conn.sendall(b"\x01\x00")
        result["req"] = recv_exact_all(conn, 10)
        conn.sendall(b"\x05\x00\x00\x01\x7f\x00\x00\x01\x00\x09HI")
        result["rest"] = recv_all(conn)
        conn.close()

    srv = server(script)
    rc, out, err = run_duplex(["connect", "-N", "-x", f"127.0.0.1:{srv.port}", "--proxy-auth", "user",
                               "127.0.0.1", "9"], stdin=b"ping")
    res = srv.join()
    assert rc == 0, err
    assert res["greeting"] == b"\x05\x02\x00\x02"
    assert res["auth"] == b"\x01\x04user\x00"
    assert out == b"HI" and res["rest"] == b"ping"
    need("ncat")

    def offers_auth(conn, result):
        conn.recv(4)
        conn.sendall(b"\x05\x02")
        result["auth"] = recv_all(conn)
        conn.close()

    srv2 = server(offers_auth)
    p = spawn(["ncat", "--proxy", f"127.0.0.1:{srv2.port}", "--proxy-type", "socks5", "--proxy-auth", "user",
               "127.0.0.1", "9"])
    assert p.wait() != 0 and "invalid username:password combo" in p.err
    assert srv2.join()["auth"] == b""


def test_http_basic_user_without_password(run_duplex, server, auth_proxy):
    """HTTP Basic with --proxy-auth USER sends "USER:" (RFC 7617's
    user-pass has the colon; ncat 7.93 sends base64("USER") without it)."""
    px = auth_proxy("user:", ["basic"])
    srv = server(lambda conn, result: conn.close())
    rc, out, err = run_duplex(["connect", "-X", "connect", "-x", f"127.0.0.1:{px.port}", "--proxy-auth", "user",
                               "127.0.0.1", srv.port])
    assert rc == 0, err
    auth = [h for _, h in px.heads if "Proxy-Authorization" in h]
    assert auth and "Proxy-Authorization: Basic dXNlcjo=\r\n" in auth[0], px.heads


# ------------------------------------------- connect --exec through -x --


def run_exec_through(run_duplex, server, tmp_path, proxy, size):
    """`duplex --proxy ... 127.0.0.1 PORT --sh-exec CMD` (proxy(target_port)
    gives the proxy arguments): the target sends `size` random bytes and reads
    to EOF; CMD hashes what it gets, then sends a file of `size` random
    bytes. Compared by hash."""
    down = os.urandom(size)
    up_file = tmp_path / "up"
    up_file.write_bytes(os.urandom(size))

    want = hashlib.sha256(down).hexdigest().encode() + b"\n" + up_file.read_bytes()

    def target(conn, result):
        conn.sendall(down)
        result["back"] = recv_exact_all(conn, len(want))
        result["rest"] = recv_all(conn)  # duplex closes once CMD has exited
        conn.close()

    srv = server(target)
    cmd = f"head -c {size} | sha256sum | cut -c1-64; cat {up_file}"
    args = [*proxy(srv.port), "127.0.0.1", str(srv.port), "--sh-exec", cmd]
    rc, _, err = run_duplex(["connect", *args])
    res = srv.join()
    back = res["back"] + res["rest"]
    assert rc == 0, err
    assert hashlib.sha256(back).hexdigest() == hashlib.sha256(want).hexdigest(), (len(back), len(want))


@pytest.fixture
def any_proxy(spawn, tmp_path):
    """any_proxy(kind) -> proxy(target_port): starts (once) microsocks
    (socks5), a tinyproxy allowing CONNECT to that port (http), or ncat's
    proxy with --proxy-auth u:pw (http-auth: a 407, then Digest MD5 on a new
    connection), and returns the --proxy/--proxy-type/--proxy-auth arguments."""

    def _make(kind):
        started = {}

        def proxy(target_port):
            if "args" in started:
                return started["args"]
            port = free_port()
            if kind == "socks5":
                need("microsocks")
                p = spawn(["microsocks", "-i", "127.0.0.1", "-p", port], stdout=subprocess.DEVNULL)
                args = ["--proxy", f"127.0.0.1:{port}", "--proxy-type", "socks5"]
            elif kind == "http":
                need("tinyproxy")
                conf = tmp_path / f"tinyproxy-{port}.conf"
                conf.write_text("\n".join([f"Port {port}", "Listen 127.0.0.1", "Timeout 30", "Allow 127.0.0.1",
                                           "MaxClients 10", f"ConnectPort {target_port}"]) + "\n")
                p = spawn(["tinyproxy", "-d", "-c", conf], stdout=subprocess.DEVNULL)
                args = ["--proxy", f"127.0.0.1:{port}", "--proxy-type", "http"]
            else:
                need("ncat")
                p = spawn(["ncat", "-l", "-k", "127.0.0.1", port, "--proxy-type", "http", "--proxy-auth", "u:pw"],
                          stdout=subprocess.DEVNULL)
                args = ["--proxy", f"127.0.0.1:{port}", "--proxy-type", "http", "--proxy-auth", "u:pw"]
            wait_listening(port, proc=p)
            started["args"] = args
            return args

        return proxy

    return _make


@pytest.mark.parametrize("kind", ["socks5", "http", "http-auth"])
def test_connect_exec_through_proxy(run_duplex, spawn, server, tmp_path, any_proxy, kind):
    """connect --sh-exec through -x (ncat's --proxy ... --sh-exec): the
    program gets the tunnel, the target's first bytes included; 256 KiB each
    way (48 KiB through ncat's proxy: no bulk peer).

    The same line with ncat 7.93's client is not compared here: measured
    with this harness (2 KiB each way, ncat's stdin a kept-open pipe), its
    program's bytes did not all reach the target within 15 s in about one run
    of three through microsocks, tinyproxy and ncat's own proxy alike, and
    after a 407 with stdin at its end (/dev/null) the target's bytes went to
    ncat's stdout instead of the program; duplex passed 10 runs of 10."""
    size = 48 * KiB if kind == "http-auth" else 256 * KiB
    run_exec_through(run_duplex, server, tmp_path, any_proxy(kind), size)


def test_connect_exec_through_proxy_credentials_refused(run_duplex, auth_proxy):
    """A refused proxy handshake runs no program (exit 4)."""
    px = auth_proxy("u:right", ["md5"])
    rc, out, err = run_duplex(["connect", "-X", "connect", "-x", f"127.0.0.1:{px.port}", "--proxy-auth", "u:wrong",
                               "127.0.0.1", "9", "--sh-exec", "echo ran >&2"])
    assert rc == 4, err
    assert "credentials refused" in err and "ran" not in err
