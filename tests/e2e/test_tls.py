"""TLS: duplex connect --ssl and one-session duplex listen --ssl.

Certificates are made once per session with the openssl CLI in a temporary
directory: a CA, a server certificate for localhost + 127.0.0.1 signed by it,
a self-signed one, a client certificate signed by the CA. Peers: openssl
s_server and s_client, ncat --ssl, curl, and scripted Python servers (the ssl
module) where the exact close_notify behaviour is the point.

ncat --ssl ends its side with a bare TCP FIN (no close_notify) when its stdin
ends, which duplex warns about (possible truncation) and takes as end of input
(exit status unchanged): the exchange tests use --no-shutdown so that ncat
closes with close_notify and keeps reading.
"""

import os
import re
import signal
import socket
import ssl
import struct
import subprocess
import threading
import time

import pytest

from conftest import LISTENING_RE, TIMEOUT, free_port, need, recv_all, seeded_bytes, sha, wait_listening
from servers_util import children, raise_nofile, read_pipe_to_eof, rss_kib, said_connected

MiB = 1 << 20


# ------------------------------------------------------------ certificates --


def openssl(*args, cwd):
    subprocess.run(["openssl", *args], cwd=cwd, check=True, timeout=30,
                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


@pytest.fixture(scope="session")
def certs(tmp_path_factory):
    """Paths (str) of ca.pem, server.pem/.key (CN and SAN localhost, SAN IP
    127.0.0.1, signed by the CA), self.pem/.key (self-signed, same names),
    client.pem/.key (signed by the CA)."""
    need("openssl")
    d = tmp_path_factory.mktemp("certs")
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"]
    openssl("req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.pem", "-days", "2",
            "-subj", "/CN=duplex test CA", "-addext", "basicConstraints=critical,CA:TRUE",
            "-addext", "keyUsage=critical,keyCertSign,cRLSign", cwd=d)
    (d / "server.ext").write_text(
        "subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\n"
        "extendedKeyUsage=serverAuth\n")
    (d / "client.ext").write_text("basicConstraints=CA:FALSE\nextendedKeyUsage=clientAuth\n")
    for name, cn in (("server", "localhost"), ("client", "duplex test client")):
        openssl("req", *ec, "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", f"/CN={cn}",
                cwd=d)
        openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
                "-set_serial", "2" if name == "server" else "3", "-days", "2",
                "-extfile", f"{name}.ext", "-out", f"{name}.pem", cwd=d)
    openssl("req", "-x509", *ec, "-keyout", "self.key", "-out", "self.pem", "-days", "2",
            "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1", cwd=d)
    return {k: str(d / k) for k in ("ca.pem", "server.pem", "server.key", "self.pem", "self.key",
                                    "client.pem", "client.key")} | {"dir": str(d)}


def server_args(certs, name="server"):
    return ["--ssl-cert", certs[f"{name}.pem"], "--ssl-key", certs[f"{name}.key"]]


def tls_listener(start_listener, certs, *extra, name="server", **kw):
    """duplex listen --ssl with a certificate on 127.0.0.1, port 0."""
    return start_listener(["--ssl", *server_args(certs, name), *extra], **kw)


def feed_later(proc, data, after):
    """Write data to proc's stdin (a pipe) once after() returns, then close it."""

    def run():
        after()
        try:
            proc.stdin.write(data)
            proc.stdin.flush()
        except (BrokenPipeError, OSError, ValueError):
            pass
        proc.close_stdin()

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t


# -------------------------------------------------- scripted Python servers --


def py_tls_server(server, certs, script, name="server"):
    """A Python TLS server (one connection) running script(tls_conn, result)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(certs[f"{name}.pem"], certs[f"{name}.key"])

    def run(conn, result):
        tls = ctx.wrap_socket(conn, server_side=True)
        result["tls"] = tls
        script(tls, result)

    return server(run)


# ------------------------------------------------------------ interop tests --


def test_connect_to_openssl_s_server(start_duplex, spawn, certs):
    port = free_port()
    s = spawn(["openssl", "s_server", "-accept", port, "-cert", certs["server.pem"], "-key",
               certs["server.key"], "-naccept", "1", "-quiet"], stdin=subprocess.PIPE,
              name="s_server")
    wait_listening(port, proc=s)
    p = start_duplex(["connect", "-v", "--ssl", "--ssl-trustfile", certs["ca.pem"], "localhost",
                      port], stdin=subprocess.PIPE)
    p.stdin.write(b"hello from duplex\n")
    p.stdin.flush()
    s.wait_out(lambda b: b"hello from duplex\n" in b)
    s.stdin.write(b"hello from s_server\n")
    s.stdin.flush()
    p.wait_out(lambda b: b == b"hello from s_server\n")
    p.close_stdin()  # close_notify: s_server ends the connection (-naccept 1: and exits)
    assert p.wait() == 0, p.err
    assert re.search(r"duplex: tls 127\.0\.0\.1:\d+: TLSv1\.3, cipher TLS_\w+, ALPN none", p.err)
    assert re.search(r"peer certificate: subject CN=localhost, issuer CN=duplex test CA, "
                     r"verified for localhost", p.err), p.err


def test_connect_to_ncat_4mib_each_way_hash(start_duplex, spawn, certs, tmp_path):
    need("ncat")
    up, down = os.urandom(4 * MiB), os.urandom(MiB)
    (tmp_path / "down").write_bytes(down)
    port = free_port()
    with open(tmp_path / "down", "rb") as f, open(tmp_path / "ncat.out", "wb") as out:
        n = spawn(["ncat", "-l", "--ssl", "--no-shutdown", *server_args(certs), "127.0.0.1", port],
                  stdin=f, stdout=out, name="ncat -l --ssl")
    wait_listening(port, proc=n)
    p = start_duplex(["connect", "--ssl", "--ssl-trustfile", certs["ca.pem"], "127.0.0.1", port],
                     stdin=subprocess.PIPE)
    # the reply first (ncat quits when its peer ends), then 4 MiB and end of input
    feed_later(p, up, lambda: p.wait_out(lambda b: len(b) >= len(down)))
    assert p.wait(30) == 0, p.err
    assert sha(p.out) == sha(down)
    assert n.wait(10) == 0, n.err
    assert sha((tmp_path / "ncat.out").read_bytes()) == sha(up)


def test_ncat_client_to_listen_4mib_each_way_hash(start_listener, spawn, certs, tmp_path):
    need("ncat")
    up, down = os.urandom(4 * MiB), os.urandom(MiB)
    (tmp_path / "up").write_bytes(up)
    p, port = tls_listener(start_listener, certs, stdin=subprocess.PIPE)
    with open(tmp_path / "up", "rb") as f, open(tmp_path / "ncat.out", "wb") as out:
        n = spawn(["ncat", "--ssl", "--no-shutdown", "--ssl-verify", "--ssl-trustfile",
                   certs["ca.pem"], "localhost", port], stdin=f, stdout=out, name="ncat --ssl")
    # duplex answers once it has all 4 MiB, then ends its side (close_notify)
    feed_later(p, down, lambda: p.wait_out(lambda b: len(b) >= len(up), timeout=30))
    assert n.wait(30) == 0, n.err
    assert p.wait(10) == 0, p.err
    assert sha(p.out) == sha(up)
    assert sha((tmp_path / "ncat.out").read_bytes()) == sha(down)


def test_curl_gets_the_body(start_listener, spawn, certs):
    need("curl")
    body = b"hello over TLS\n"
    resp = (b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n"
            b"Connection: close\r\n\r\n" % len(body)) + body
    p, port = tls_listener(start_listener, certs, "-v", "--ssl-alpn", "http/1.1", stdin=resp)
    c = spawn(["curl", "-sS", "--max-time", "10", "--cacert", certs["ca.pem"], "--resolve",
               f"localhost:{port}:127.0.0.1", f"https://localhost:{port}/"], name="curl")
    assert c.wait() == 0, c.err
    assert c.out == body
    p.wait()
    assert p.out.startswith(b"GET / HTTP/1.1\r\n"), p.out
    assert "ALPN http/1.1" in p.err


# -------------------------------------------------------------- verifying --


def test_self_signed_refused_by_default(run_duplex, start_listener, certs):
    s, port = tls_listener(start_listener, certs, name="self")
    rc, out, err = run_duplex(["connect", "--ssl", "127.0.0.1", port], stdin=b"secret")
    assert rc == 4, err
    assert (f"duplex: tls 127.0.0.1:{port}: certificate verify failed: self-signed certificate "
            "(--ssl-trustfile FILE to trust it, --ssl-no-verify to skip the check)") in err
    assert out == b""
    assert s.wait() == 1  # the server saw the client's alert: a failed handshake
    assert "handshake failed" in s.err and b"secret" not in s.out


def test_no_verify_works_and_warns(run_duplex, start_listener, certs):
    s, port = tls_listener(start_listener, certs, name="self", stdin=b"down")
    rc, out, err = run_duplex(["connect", "-v", "--ssl", "--ssl-no-verify", "127.0.0.1", port],
                              stdin=b"up")
    assert rc == 0, err
    assert out == b"down"
    assert "warning: --ssl-no-verify" in err
    assert "not verified (--ssl-no-verify)" in err
    assert s.wait() == 0 and s.out == b"up"


def test_wrong_servername_is_a_hostname_mismatch(run_duplex, start_listener, certs):
    s, port = tls_listener(start_listener, certs)
    rc, out, err = run_duplex(["connect", "--ssl", "--ssl-trustfile", certs["ca.pem"],
                               "--ssl-servername", "example.org", "127.0.0.1", port])
    assert rc == 4, err
    assert (f"duplex: tls 127.0.0.1:{port}: hostname mismatch: certificate is for localhost, "
            "127.0.0.1, not example.org") in err


def test_ip_address_checked_without_servername(run_duplex, start_listener, certs):
    # the ephemeral certificate is for CN=duplex only: 127.0.0.1 is not in it
    s, port = start_listener(["--ssl"])
    rc, out, err = run_duplex(["connect", "--ssl", "127.0.0.1", port])
    assert rc == 4
    assert "certificate verify failed: self-signed certificate" in err
    # a CA-signed certificate with IP:127.0.0.1 passes the IP check
    s, port = tls_listener(start_listener, certs, stdin=b"ok")
    rc, out, err = run_duplex(["connect", "-v", "--ssl", "--ssl-trustfile", certs["ca.pem"],
                               "127.0.0.1", port])
    assert rc == 0, err
    assert out == b"ok" and "verified for 127.0.0.1" in err


def test_system_store_is_the_default(run_duplex, start_listener, certs):
    s, port = tls_listener(start_listener, certs)
    rc, out, err = run_duplex(["connect", "--ssl", "localhost", port], stdin=b"")
    assert rc == 4
    assert "certificate verify failed: unable to get local issuer certificate" in err
    # the same client trusts the CA once the default store (SSL_CERT_FILE) has it
    s, port = tls_listener(start_listener, certs, stdin=b"trusted")
    rc, out, err = run_duplex(["connect", "--ssl", "localhost", port],
                              env={"SSL_CERT_FILE": certs["ca.pem"], "SSL_CERT_DIR": "/nonexistent"})
    assert rc == 0, err
    assert out == b"trusted"


def test_handshake_timeout(run_duplex, server):
    srv = server(lambda conn, result: conn.recv(65536) and time.sleep(3))
    t0 = time.monotonic()
    rc, out, err = run_duplex(["connect", "--ssl", "-w", "0.5", "127.0.0.1", srv.port])
    assert rc == 5, err
    assert f"duplex: tls 127.0.0.1:{srv.port}: handshake timed out after 0.5 s" in err
    assert time.monotonic() - t0 < 8  # generous: a busy machine


def test_plain_peer_is_a_handshake_failure(run_duplex, server):
    srv = server(lambda conn, result: conn.sendall(b"HTTP/1.0 400 Bad Request\r\n\r\n" * 4))
    rc, out, err = run_duplex(["connect", "--ssl", "--ssl-no-verify", "127.0.0.1", srv.port])
    assert rc == 4, err
    assert re.search(rf"duplex: tls 127\.0\.0\.1:{srv.port}: handshake failed: .*"
                     r"\(does the peer speak TLS\?\)", err), err


# -------------------------------------------------------------- half-close --


def test_half_close_close_notify_then_reply(start_duplex, server, certs):
    def script(tls, result):
        result["req"] = recv_all(tls)  # ends at duplex's close_notify
        time.sleep(0.2)
        tls.sendall(b"reply after your end\n")
        result["tls"] = tls.unwrap()  # our close_notify
        result["after"] = recv_all(result["tls"])  # duplex shut its TCP write side down

    srv = py_tls_server(server, certs, script)
    p = start_duplex(["connect", "--ssl", "--ssl-trustfile", certs["ca.pem"], "localhost",
                      srv.port], stdin=b"request\n")
    assert p.wait() == 0, p.err
    res = srv.join()
    assert res["req"] == b"request\n"
    assert res["after"] == b""
    assert p.out == b"reply after your end\n"


def test_close_without_close_notify_is_reported(start_duplex, server, certs):
    def script(tls, result):
        tls.sendall(b"partial")
        time.sleep(0.2)
        tls.close()  # a bare TCP close: no close_notify

    srv = py_tls_server(server, certs, script)
    p = start_duplex(["connect", "--ssl", "--ssl-trustfile", certs["ca.pem"], "localhost",
                      srv.port], stdin=subprocess.PIPE)
    p.wait_err("without close_notify")
    p.close_stdin()  # as with a plain half-close, duplex sends until its input ends
    assert p.wait() == 0, p.err  # a warning, not a failure (what most clients do)
    assert p.out == b"partial"
    assert (f"duplex: tls 127.0.0.1:{srv.port}: warning: TLS connection ended without "
            "close_notify: the data may be truncated") in p.err


def test_listen_half_close_both_ways(start_listener, certs):
    """duplex listen sends close_notify at end of its stdin and still reads;
    the client's close_notify then ends the session."""
    p, port = tls_listener(start_listener, certs, stdin=b"from server")
    ctx = ssl.create_default_context(cafile=certs["ca.pem"])
    with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as raw:
        tls = ctx.wrap_socket(raw, server_hostname="localhost")
        assert recv_all(tls) == b"from server"  # the server's close_notify
        tls.sendall(b"from client after the server's end")
        tls.unwrap()
    assert p.wait() == 0, p.err
    assert p.out == b"from client after the server's end"


def test_peer_end_closes_stdout(start_listener, start_duplex, certs):
    """The peer's close_notify closes duplex's stdout at once (a consumer
    sees its end) while duplex's stdin is still open and still sent."""
    lst, port = tls_listener(start_listener, certs, stdin=b"from server\n")
    r, w = os.pipe()
    try:
        p = start_duplex(["connect", "--ssl", "--ssl-trustfile", certs["ca.pem"], "localhost", port],
                         stdin=subprocess.PIPE, stdout=w)
        os.close(w)
        w = None
        assert read_pipe_to_eof(r) == b"from server\n"
        assert p.poll() is None, p.err
        p.stdin.write(b"from client\n")
        p.stdin.flush()
        p.close_stdin()
        assert p.wait() == 0, p.err
        assert lst.wait() == 0, lst.err
        assert lst.out == b"from client\n"
    finally:
        os.close(r)
        if w is not None:
            os.close(w)


def test_send_only_quits_at_end_of_stdin(start_listener, start_duplex, certs):
    """--send-only over TLS: quits once stdin has ended and close_notify is
    out, though the server keeps its side open."""
    lst, port = tls_listener(start_listener, certs, stdin=subprocess.PIPE)
    p = start_duplex(["connect", "--send-only", "--ssl", "--ssl-trustfile", certs["ca.pem"],
                      "localhost", port], stdin=b"upload\n")
    assert p.wait() == 0, p.err
    lst.wait_out(lambda b: b == b"upload\n")
    lst.close_stdin()
    assert lst.wait() == 0, lst.err


def test_reset_while_sending_no_sigpipe(start_duplex, server, certs):
    def script(tls, result):
        tls.recv(1000)
        tls.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        tls.close()  # unread data and linger 0: a reset

    srv = py_tls_server(server, certs, script)
    p = start_duplex(["connect", "--ssl", "--ssl-trustfile", certs["ca.pem"], "localhost",
                      srv.port], stdin=os.urandom(16 * MiB))
    rc = p.wait()
    assert rc == 1, (rc, p.err)  # not killed by SIGPIPE (-13)
    assert re.search(rf"duplex: tls 127\.0\.0\.1:{srv.port}: (send|receive): "
                     r"(Connection reset by peer|Broken pipe)", p.err), p.err


# ------------------------------------------------------------ ephemeral cert --


def test_ephemeral_certificate(run_duplex, start_listener):
    s, port = start_listener(["-v", "--ssl"], stdin=b"down")
    s.wait_err(r"tls: ephemeral self-signed certificate \(CN=duplex, EC P-256, valid 1 day\), "
               r"SHA-256 fingerprint ([0-9A-F]{2}:){31}[0-9A-F]{2}")
    rc, out, err = run_duplex(["connect", "-v", "--ssl", "--ssl-no-verify", "127.0.0.1", port],
                              stdin=b"up")
    assert rc == 0, err
    assert out == b"down"
    assert "peer certificate: subject CN=duplex, issuer CN=duplex" in err
    assert s.wait() == 0 and s.out == b"up"


def test_ephemeral_fingerprint_matches_what_the_client_sees(start_listener, spawn, tmp_path):
    s, port = start_listener(["-v", "--ssl"])
    fp = s.wait_err(r"SHA-256 fingerprint (\S+)").group(1)
    c = spawn(["openssl", "s_client", "-connect", f"127.0.0.1:{port}", "-showcerts"],
              name="s_client")
    c.wait()
    pem = re.search(rb"-----BEGIN CERTIFICATE-----.*?-----END CERTIFICATE-----\n", c.out, re.S)
    assert pem, c.out
    (tmp_path / "seen.pem").write_bytes(pem.group(0))
    x = subprocess.run(["openssl", "x509", "-noout", "-fingerprint", "-sha256", "-subject", "-in",
                        str(tmp_path / "seen.pem")], capture_output=True, timeout=10, check=True)
    assert f"Fingerprint={fp}".encode() in x.stdout, (fp, x.stdout)
    assert b"CN = duplex" in x.stdout


# ------------------------------------------------------- client certificates --


def test_client_certificate_required(run_duplex, start_listener, certs):
    verify = ["--ssl-verify", "--ssl-trustfile", certs["ca.pem"]]
    s, port = tls_listener(start_listener, certs, *verify)
    rc, out, err = run_duplex(["connect", "--ssl", "--ssl-trustfile", certs["ca.pem"], "localhost",
                               port], stdin=subprocess.PIPE)
    assert rc == 4, err
    assert "certificate required" in err and "--ssl-cert FILE --ssl-key FILE" in err
    assert s.wait() == 1
    assert "handshake failed: peer did not return a certificate" in s.err

    s, port = tls_listener(start_listener, certs, "-v", *verify, stdin=b"welcome")
    rc, out, err = run_duplex(["connect", "--ssl", "--ssl-trustfile", certs["ca.pem"],
                               *server_args(certs, "client"), "localhost", port], stdin=b"it's me")
    assert rc == 0, err
    assert out == b"welcome"
    assert s.wait() == 0 and s.out == b"it's me"
    assert "peer certificate: subject CN=duplex test client, issuer CN=duplex test CA, verified" \
        in s.err


def test_client_certificate_from_another_ca_refused(run_duplex, start_listener, certs):
    s, port = tls_listener(start_listener, certs, "--ssl-verify", "--ssl-trustfile",
                           certs["ca.pem"])
    rc, out, err = run_duplex(["connect", "--ssl", "--ssl-trustfile", certs["ca.pem"],
                               *server_args(certs, "self"), "localhost", port],
                              stdin=subprocess.PIPE)
    assert rc == 4, err
    assert s.wait() == 1
    assert "client certificate verify failed" in s.err


# ---------------------------------------------------------------- options --


def test_alpn_and_unix_socket(start_duplex, run_duplex, certs, tmp_path):
    path = str(tmp_path / "tls.sock")
    s = start_duplex(["listen", "-v", "--ssl", *server_args(certs), "--ssl-alpn", "h2,http/1.1",
                      "-U", path], stdin=b"via unix")
    s.wait_err("listening on")
    rc, out, err = run_duplex(["connect", "-v", "--tls", "--tls-trustfile", certs["ca.pem"],
                               "--ssl-servername", "localhost", "--ssl-alpn", "http/1.1,h2",
                               "-U", path], stdin=b"hi")
    assert rc == 0, err
    assert out == b"via unix"
    assert "ALPN h2" in err  # the server's preference
    assert s.wait() == 0 and s.out == b"hi"


def test_through_a_socks5_proxy(start_listener, start_duplex, spawn, certs):
    """-x and --ssl: the TLS handshake runs over the proxied connection and
    checks the target's name (sent to the proxy by name). microsocks closes
    both directions when one side ends, so the side that ends first never
    gets the other's close_notify: it warns of possible truncation; both
    exit 0."""
    need("microsocks")
    pport = free_port()
    m = spawn(["microsocks", "-i", "127.0.0.1", "-p", pport], stdout=subprocess.DEVNULL,
              name="microsocks")
    wait_listening(pport, proc=m)
    s, port = tls_listener(start_listener, certs, stdin=subprocess.PIPE)
    c = start_duplex(["connect", "-v", "--ssl", "--ssl-trustfile", certs["ca.pem"], "-x",
                      f"127.0.0.1:{pport}", "localhost", port], stdin=subprocess.PIPE)
    c.stdin.write(b"hello")
    c.stdin.flush()
    s.wait_out(lambda b: b == b"hello")
    s.stdin.write(b"through the proxy")
    s.close_stdin()  # the server ends first: close_notify, then the proxy closes both ways
    c.wait_out(lambda b: b == b"through the proxy")
    s.wait_err("without close_notify")
    c.close_stdin()
    assert c.wait() == 0, c.err
    assert f"tls localhost:{port}: peer certificate: subject CN=localhost" in c.err
    assert s.wait() == 0, s.err


@pytest.mark.parametrize("args, message", [
    (["listen", "--ssl", "-k", "--model", "iterative", "0"], "not with --model iterative"),
    (["connect", "--ssl", "-u", "127.0.0.1", "9"], "not with -u (UDP)"),
    (["relay", "--ssl", "--ssl-no-verify", "0", "127.0.0.1:9"], "are for connect"),
    (["connect", "--ssl", "-z", "127.0.0.1", "9"], "not with -z"),
    (["connect", "--ssl", "--send-oob", "x", "127.0.0.1", "9"], "TLS has no urgent data"),
    (["listen", "--ssl", "--ssl-key", "k.pem", "0"], "--ssl-key needs --ssl-cert FILE"),
    (["listen", "--ssl", "--ssl-cert", "c.pem", "0"], "--ssl-cert needs --ssl-key FILE"),
    (["connect", "--ssl-no-verify", "127.0.0.1", "9"], "need --ssl (--tls)"),
    (["connect", "--ssl", "--ssl-no-verify", "--ssl-trustfile", "ca.pem", "127.0.0.1", "9"],
     "--ssl-no-verify excludes"),
    (["listen", "--ssl", "--ssl-verify", "0"], "listen --ssl-verify needs --ssl-trustfile"),
    (["connect", "--ssl", "-U", "/tmp/x.sock"], "give --ssl-servername NAME"),
    (["connect", "--ssl", "--ssl-alpn", "a,,b", "127.0.0.1", "9"], "invalid --ssl-alpn"),
])
def test_usage_errors(run_duplex, args, message):
    rc, out, err = run_duplex(args)
    assert rc == 2, err
    assert message in err, err


def test_missing_files_are_named(run_duplex, certs, tmp_path):
    missing = str(tmp_path / "nope.pem")
    for args, flag in ((["listen", "--ssl", "--ssl-cert", missing, "--ssl-key",
                         certs["server.key"], "127.0.0.1", "0"], "--ssl-cert"),
                       (["listen", "--ssl", "--ssl-cert", certs["server.pem"], "--ssl-key",
                         missing, "127.0.0.1", "0"], "--ssl-key"),
                       (["connect", "--ssl", "--ssl-trustfile", missing, "127.0.0.1", "9"],
                        "--ssl-trustfile")):
        rc, out, err = run_duplex(args)
        assert rc == 2, err
        assert f"duplex: {flag} {missing}: No such file or directory" in err
        assert "listening" not in err
    # a key that does not go with the certificate
    rc, out, err = run_duplex(["listen", "--ssl", "--ssl-cert", certs["server.pem"], "--ssl-key",
                               certs["client.key"], "127.0.0.1", "0"])
    assert rc == 2
    assert f"--ssl-key {certs['client.key']}: does not match the certificate" in err


# ------------------------------------------- servers: -k and the server modes --


def tls_client(certs, port, host="localhost", cert=False, ragged_ok=False, timeout=TIMEOUT):
    """A Python TLS client connected to 127.0.0.1:port, verifying the server
    against the test CA. ragged_ok=False: a close without close_notify raises
    (ssl.SSLEOFError) instead of reading as EOF."""
    ctx = ssl.create_default_context(cafile=certs["ca.pem"])
    if cert:
        ctx.load_cert_chain(certs["client.pem"], certs["client.key"])
    raw = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    return ctx.wrap_socket(raw, server_hostname=host, suppress_ragged_eofs=ragged_ok)


def recv_exactly(conn, n, timeout=TIMEOUT):
    conn.settimeout(timeout)
    got = bytearray()
    while len(got) < n:
        b = conn.recv(min(65536, n - len(got)))
        assert b, f"EOF after {len(got)} of {n} bytes"
        got += b
    return bytes(got)


def fds_of(pid):
    return len(os.listdir(f"/proc/{pid}/fd"))


def test_echo_many_tls_clients_at_once(start_listener, certs):
    """-k --echo --ssl: 20 clients at once, 256 KiB each, sent and echoed in
    pieces; every byte comes back in order, each client's end is a clean
    close_notify, and the server holds no descriptor afterwards."""
    p, port = tls_listener(start_listener, certs, "-k", "--echo")
    # a first client, so that what the loop opens once (io_uring's side
    # epoll for hang-ups) is in the baseline
    base = fds_of(p.pid)
    c = tls_client(certs, port)
    c.sendall(b"x")
    assert recv_exactly(c, 1) == b"x"
    c.unwrap()
    c.close()
    wait_for_fds(p.pid, base + 1)
    base = fds_of(p.pid)
    conns = [tls_client(certs, port) for _ in range(20)]
    data = [os.urandom(256 << 10) for _ in conns]
    for k in range(0, 256 << 10, 32 << 10):
        for c, d in zip(conns, data):
            c.sendall(d[k:k + (32 << 10)])
        for c, d in zip(conns, data):
            assert recv_exactly(c, 32 << 10) == d[k:k + (32 << 10)]
    for c in conns:
        c.unwrap()  # close_notify: the server ends its side too (with its own)
        c.close()
    wait_for_fds(p.pid, base)
    assert p.poll() is None


def wait_for_fds(pid, n, timeout=5):
    deadline = time.monotonic() + timeout
    while fds_of(pid) > n:
        assert time.monotonic() < deadline, f"server still holds {fds_of(pid)} fds (was {n})"
        time.sleep(0.05)


def test_half_close_reaches_exec_child_and_reply_follows(start_listener, run_duplex, certs):
    """--exec 'wc -c' --ssl: the client's close_notify is end of input for the
    child; its output comes back after it, then the server's close_notify
    (duplex connect --ssl exits 0 only after a clean close_notify)."""
    p, port = tls_listener(start_listener, certs, "-k", "--exec", "wc -c")
    for size in (0, 1, 3 * MiB):
        rc, out, err = run_duplex(["connect", "--ssl", "--ssl-trustfile", certs["ca.pem"],
                                   "localhost", port], stdin=os.urandom(size))
        assert rc == 0, err
        assert out.strip() == str(size).encode()
    assert p.poll() is None


def test_exec_over_tls_sees_both_tcp_addresses(start_listener, certs):
    """--sh-exec over --ssl: the child's environment names the TCP
    connection's two ends (not its socketpair's), in duplex's and
    ncat's names."""
    p, port = tls_listener(start_listener, certs, "-k", "--sh-exec",
                           'echo "$DUPLEX_PEER_ADDR $DUPLEX_PEER_PORT $DUPLEX_LOCAL_ADDR '
                           '$DUPLEX_LOCAL_PORT $NCAT_LOCAL_PORT $NCAT_REMOTE_PORT"')
    c = tls_client(certs, port)
    line = recv_all(c).decode()
    me = c.getsockname()[1]
    assert line.split() == ["127.0.0.1", str(me), "127.0.0.1", str(port), str(port), str(me)], line


def test_exec_over_tls_idle_client_closed(start_listener, certs):
    """--exec over --ssl with --idle-timeout: the server watches the TLS
    connection's own socket (TCP_INFO on a copy of it), so an idle client is
    closed and its process stopped; an active one is not."""
    # 2 s: 20 times the busy client's pace (0.5 s against 0.1 s lost it to a
    # 0.4 s stall of the test on a busy machine)
    p, port = tls_listener(start_listener, certs, "-v", "-k", "--exec", "cat", "--idle-timeout",
                           "2")
    idle = tls_client(certs, port, ragged_ok=True)
    busy = tls_client(certs, port)
    idle.sendall(b"x")
    assert recv_exactly(idle, 1) == b"x"
    closed = re.compile(r"127\.0\.0\.1:(\d+): closed: idle for 2 s \(process \d+ stopped\)")
    deadline, until = time.monotonic() + TIMEOUT, None
    # busy talks every 0.1 s: until the idle one has been closed, and a second more
    while until is None or time.monotonic() < until:
        assert time.monotonic() < deadline, f"the idle client was not closed: {p.err[-400:]!r}"
        busy.sendall(b"y")
        assert recv_exactly(busy, 1) == b"y"
        if until is None and closed.search(p.err):
            until = time.monotonic() + 1.0
        time.sleep(0.1)
    m = p.wait_err(closed)
    assert int(m.group(1)) == idle.getsockname()[1]
    idle.settimeout(TIMEOUT)
    assert idle.recv(10) == b""
    busy.sendall(b"z")
    assert recv_exactly(busy, 1) == b"z"


def test_broker_over_tls_with_ncat_clients(start_listener, spawn, certs):
    """--broker --ssl: what one client sends reaches the others (a Python
    client and ncat --ssl), not itself."""
    need("ncat")
    p, port = tls_listener(start_listener, certs, "-v", "-k", "--broker", "--no-stdio")
    a = tls_client(certs, port)
    n = spawn(["ncat", "--ssl", "--no-shutdown", "--ssl-verify", "--ssl-trustfile",
               certs["ca.pem"], "localhost", port], stdin=subprocess.PIPE, name="ncat --ssl")
    p.wait_err(r"connected \(2 now\)")
    a.sendall(b"from python\n")
    n.wait_out(lambda b: b"from python\n" in b)
    n.stdin.write(b"from ncat\n")
    n.stdin.flush()
    assert recv_exactly(a, len(b"from ncat\n")) == b"from ncat\n"


def test_chat_over_tls_server_takes_part(start_listener, certs):
    """--chat --ssl: join notices, prefixed lines, and the server's own
    stdin/stdout take part."""
    p, port = tls_listener(start_listener, certs, "-k", "--chat", stdin=subprocess.PIPE)
    a = tls_client(certs, port)
    b = tls_client(certs, port)
    deadline = time.monotonic() + TIMEOUT
    got = b""
    while b"joined" not in got:  # b's join notice: b is in the room
        assert time.monotonic() < deadline, got
        a.settimeout(TIMEOUT)
        got += a.recv(4096)
    a.sendall(b"hello b\n")
    got = b""
    while b"hello b" not in got:
        assert time.monotonic() < deadline, got
        b.settimeout(TIMEOUT)
        got += b.recv(4096)
    assert re.search(rb"\[127\.0\.0\.1:\d+\] hello b\n", got), got
    p.wait_out(lambda o: b"hello b\n" in o)
    p.stdin.write(b"from the server\n")
    p.stdin.flush()
    got = b""
    while b"from the server" not in got:
        assert time.monotonic() < deadline, got
        a.settimeout(TIMEOUT)
        got += a.recv(4096)


def test_stalled_handshake_does_not_hold_up_others(start_listener, certs):
    """A client that connects and says nothing is closed after the handshake
    deadline (-w), while others are served in the meantime; a client that
    does not speak TLS is refused; the server goes on."""
    # --idle-timeout: -w alone would also close the served client after 1 s idle
    p, port = tls_listener(start_listener, certs, "-v", "-k", "--echo", "-w", "1",
                           "--idle-timeout", "30")
    mute = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
    plain = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
    plain.sendall(b"GET / HTTP/1.0\r\n\r\n")
    c = tls_client(certs, port)
    c.sendall(b"ping")
    assert recv_exactly(c, 4) == b"ping"
    last = time.monotonic()
    p.wait_err(r"tls 127\.0\.0\.1:\d+: handshake failed: .*\(does the peer speak TLS\?\)")
    p.wait_err(r"tls 127\.0\.0\.1:\d+: handshake timed out after 1 s")
    mute.settimeout(TIMEOUT)
    assert mute.recv(100) == b""  # closed by the server
    # past -w since c's last byte: still served (-w bounds handshakes only
    # here). Counted from that byte, not from mute's close: c's handshake
    # may have taken most of mute's second on a busy machine
    time.sleep(max(0.0, last + 1.5 - time.monotonic()))
    c.sendall(b"pong")
    assert recv_exactly(c, 4) == b"pong"
    for s in (mute, plain, c):
        s.close()


def test_handshake_cap_pauses_accept_instead_of_refusing(start_listener, certs):
    """1100 connections that never speak TLS fill the 1024 handshake slots:
    the server stops accepting (the rest wait in the backlog) instead of
    refusing; once the mute ones reach the -w deadline, the waiting ones and
    a real TLS client that came last are served."""
    raise_nofile(4096)
    p, port = tls_listener(start_listener, certs, "-v", "-k", "--echo", "-w", "1",
                           "--idle-timeout", "30")
    mute = []
    try:
        for _ in range(1100):
            mute.append(socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT))
        p.wait_err(r"1024 TLS handshakes in progress: not accepting until one ends")
        c = tls_client(certs, port)  # completes once the server accepts it again
        c.sendall(b"late")
        assert recv_exactly(c, 4) == b"late"
        said_connected(p, c)  # a refusal would have been said before: stderr read up to here
        assert "refused" not in p.err, p.err[-500:]
        c.close()
    finally:
        for s in mute:
            s.close()


def test_server_closes_idle_client_with_close_notify(start_listener, certs):
    """--idle-timeout: the server drops an idle TLS client with a proper
    close_notify (no truncation for the client to fear). 1 s: long enough
    for the first echo on a busy machine (0.3 s left little margin)."""
    p, port = tls_listener(start_listener, certs, "-v", "-k", "--echo", "--idle-timeout", "1")
    c = tls_client(certs, port)  # ragged EOF would raise SSLEOFError
    c.sendall(b"x")
    assert recv_exactly(c, 1) == b"x"
    c.settimeout(TIMEOUT)
    assert c.recv(10) == b""
    p.wait_err(r"closed: idle for 1 s")


def test_client_certificate_required_with_k(start_listener, certs):
    """-k --ssl-verify: a client without a certificate is refused (-v says
    why), one with a certificate from the CA is served."""
    p, port = tls_listener(start_listener, certs, "-v", "-k", "--echo", "--ssl-verify",
                           "--ssl-trustfile", certs["ca.pem"])
    with pytest.raises((ssl.SSLError, ConnectionError)):
        c = tls_client(certs, port)
        c.sendall(b"x")
        c.settimeout(TIMEOUT)
        c.recv(1)
    p.wait_err(r"handshake failed")
    c = tls_client(certs, port, cert=True)
    c.sendall(b"ok")
    assert recv_exactly(c, 2) == b"ok"


def test_without_k_one_tls_client_then_exit(start_listener, certs):
    """listen --ssl --echo without -k: one client, then the server exits 0
    once the bridge has sent everything and close_notify."""
    p, port = tls_listener(start_listener, certs, "--echo")
    c = tls_client(certs, port)
    data = os.urandom(2 * MiB)
    c.sendall(data)
    assert recv_exactly(c, len(data)) == data
    c.unwrap().close()
    assert p.wait() == 0, p.err


def test_broker_tls_client_not_reading_is_dropped(start_listener, start_duplex, certs,
                                                  tmp_path):
    """--broker --ssl: a TLS client that never reads is dropped (-v says so)
    while 8 MiB from one TLS client reaches another intact; the server's
    memory stays bounded (the slow-reader policy holds through the bridge)."""
    p, port = tls_listener(start_listener, certs, "-v", "-k", "--broker", "--no-stdio",
                           "--max-queue", "65536")
    raw = socket.socket()
    raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    raw.settimeout(TIMEOUT)
    raw.connect(("127.0.0.1", port))
    ctx = ssl.create_default_context(cafile=certs["ca.pem"])
    lazy = ctx.wrap_socket(raw, server_hostname="localhost")
    lazy_name = "127.0.0.1:%d" % lazy.getsockname()[1]
    data = os.urandom(8 * MiB)
    (tmp_path / "up").write_bytes(data)
    got = tmp_path / "got"
    with open(got, "wb") as out:
        recv = start_duplex(["connect", "--ssl", "--ssl-trustfile", certs["ca.pem"], "--recv-only",
                             "localhost", port], stdout=out)
    p.wait_err(r"connected \(2 now\)")
    with open(tmp_path / "up", "rb") as f:
        send = start_duplex(["connect", "--ssl", "--ssl-trustfile", certs["ca.pem"], "localhost",
                             port], stdin=f)
    deadline = time.monotonic() + 60
    rss_max = 0
    while got.stat().st_size < len(data):
        assert time.monotonic() < deadline, f"receiver got {got.stat().st_size} bytes; {p.err[-400:]}"
        assert recv.poll() is None, recv.err
        rss_max = max(rss_max, rss_kib(p.pid))
        time.sleep(0.05)
    assert sha(got.read_bytes()) == sha(data)
    assert send.wait(30) == 0, send.err
    p.wait_err(re.escape(lazy_name) + r": closed: not reading")
    assert rss_max < 64 * 1024, f"server RSS reached {rss_max} KiB"
    lazy.close()


def test_model_thread_over_tls(start_listener, certs):
    """--model thread --ssl: each client's handshake and echo in its own
    thread (on a loop of its own); 1 MiB each for 4 clients at once."""
    p, port = tls_listener(start_listener, certs, "-k", "--echo", "--model", "thread")
    conns = [tls_client(certs, port) for _ in range(4)]
    data = [os.urandom(MiB) for _ in conns]
    for k in range(0, MiB, 64 << 10):
        for c, d in zip(conns, data):
            c.sendall(d[k:k + (64 << 10)])
        for c, d in zip(conns, data):
            assert recv_exactly(c, 64 << 10) == d[k:k + (64 << 10)]
    for c in conns:
        c.unwrap()
        c.close()


def test_exec_children_do_not_inherit_other_tls_connections(start_listener, certs):
    """--exec over --ssl with --idle-timeout: the server's watch copy of a
    client's TLS socket is close-on-exec, so a later client's process does
    not hold the first client's connection."""
    p, port = tls_listener(start_listener, certs, "-k", "--sh-exec", "cat >/dev/null",
                           "--idle-timeout", "30")
    first = tls_client(certs, port)
    second = tls_client(certs, port)
    # both processes have started their command: a child between fork and
    # exec still holds every descriptor of the server (close-on-exec ones too)
    server_exe = os.readlink(f"/proc/{p.pid}/exe")

    def execd(kid):
        try:
            return os.readlink(f"/proc/{kid}/exe") != server_exe
        except OSError:
            return False

    deadline = time.monotonic() + TIMEOUT
    kids = []
    while len(kids) < 2 or not all(execd(k) for k in kids):
        assert time.monotonic() < deadline, f"the two --exec processes did not start: {kids}"
        time.sleep(0.05)
        kids = [k for k, _ in children(p.pid)]
    mine = {first.getsockname()[1], second.getsockname()[1]}
    for kid in kids:
        ports = set()
        for fd in os.listdir(f"/proc/{kid}/fd"):
            try:
                link = os.readlink(f"/proc/{kid}/fd/{fd}")
            except OSError:
                continue
            if link.startswith("socket:["):
                ports |= socket_ports(link[8:-1]) & mine
        assert not ports, f"process {kid} holds the TLS connection(s) of port(s) {ports}"
    first.close()
    second.close()


def socket_ports(inode):
    """Remote ports of the TCP sockets with this inode (from /proc/net/tcp)."""
    out = set()
    for name in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = open(name).read().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            f = line.split()
            if f[9] == inode:
                out.add(int(f[2].split(":")[1], 16))
    return out


def test_threads_two_over_tls(start_listener, certs):
    p, port = tls_listener(start_listener, certs, "-k", "--echo", "--threads", "2")
    conns = [tls_client(certs, port) for _ in range(8)]
    for i, c in enumerate(conns):
        c.sendall(b"%d" % i)
    for i, c in enumerate(conns):
        assert recv_exactly(c, len(b"%d" % i)) == b"%d" % i


# ------------------------------------------------- relay: TLS from its clients --


def relay_ssl(start_duplex, certs, target, *extra):
    """duplex relay --ssl (the test server certificate) EXTRA 127.0.0.1:0
    TARGET; returns (proc, port)."""
    p = start_duplex(["relay", "--ssl", *server_args(certs), *extra, "127.0.0.1:0", target])
    m = p.wait_err(LISTENING_RE)
    return p, int(m.group(2))


def test_relay_terminates_tls_4mib_each_way(start_listener, start_duplex, run_duplex, certs):
    """relay -k --ssl: clients speak TLS to the relay, the target gets plain
    bytes (here an echo server); 4 MiB round trip intact, then a clean
    close_notify (duplex connect exits 0), twice in a row."""
    e, eport = start_listener(["-k", "--echo"])
    relay, port = relay_ssl(start_duplex, certs, f"127.0.0.1:{eport}", "-k")
    for _ in range(2):
        data = os.urandom(4 * MiB)
        rc, out, err = run_duplex(["connect", "--ssl", "--ssl-trustfile", certs["ca.pem"],
                                   "localhost", port], stdin=data, timeout=30)
        assert rc == 0, err
        assert sha(out) == sha(data)
    assert relay.poll() is None


def test_curl_https_through_relay_to_plain_http(start_listener, start_duplex, spawn, certs):
    """relay --ssl in front of a plain HTTP server (one client, no -k): curl
    gets the body over https, the server saw plain HTTP, the relay exits 0."""
    need("curl")
    body = b"plain behind TLS\n"
    resp = (b"HTTP/1.0 200 OK\r\nContent-Length: %d\r\nConnection: close\r\n\r\n"
            % len(body)) + body
    h, hport = start_listener([], stdin=resp)
    relay, port = relay_ssl(start_duplex, certs, f"127.0.0.1:{hport}")
    c = spawn(["curl", "-sS", "--max-time", "10", "--cacert", certs["ca.pem"], "--resolve",
               f"localhost:{port}:127.0.0.1", f"https://localhost:{port}/"], name="curl")
    assert c.wait() == 0, c.err
    assert c.out == body
    assert h.wait() == 0
    assert h.out.startswith(b"GET / HTTP/1.1\r\n"), h.out
    assert relay.wait() == 0, relay.err


def test_relay_ssl_one_client_ends_when_it_is_served(start_listener, start_duplex, spawn, duplex,
                                                     certs):
    """relay --ssl without -k exits once its one client is done, also when
    the target's bytes are all passed on (the connection over, said with -v)
    before the client has read them. With the socketpair bridge (before
    9ed1dfc) the relay checked for its end only when the plain connection
    closed and ran on forever if the bridge was still flushing
    (test_curl_https_through_relay_to_plain_http hung so under CPU hogs)."""
    data = seeded_bytes(512 << 10, 16)
    h, hport = start_listener([], stdin=data)
    relay = start_duplex(["relay", "-v", "--ssl", *server_args(certs), "127.0.0.1:0",
                          f"127.0.0.1:{hport}"])
    port = int(relay.wait_err(LISTENING_RE).group(2))
    r, w = os.pipe()
    try:
        c = spawn([duplex, "connect", "--ssl", "--ssl-trustfile", certs["ca.pem"], "localhost",
                   str(port)], stdin=subprocess.DEVNULL, stdout=w, name="client")
        os.close(w)
        w = -1
        # the plain side is over; the client's pipe is still full, unread
        relay.wait_err(r"-> 127\.0\.0\.1:%d: sent 0 bytes, received %d bytes" % (hport, len(data)))
        with os.fdopen(r, "rb") as f:
            r = -1
            got = f.read()
    finally:
        for fd in (r, w):
            if fd >= 0:
                os.close(fd)
    assert sha(got) == sha(data)
    assert c.wait() == 0, c.err
    assert relay.wait() == 0, relay.err


# ------------------------------------------------- relay: TLS to its target --


def start_relay(start_duplex, target, *extra):
    """duplex relay EXTRA 127.0.0.1:0 TARGET; returns (proc, port)."""
    p = start_duplex(["relay", *extra, "127.0.0.1:0", target])
    return p, int(p.wait_err(LISTENING_RE).group(2))


def test_relay_ssl_target_plain_clients_4mib(start_listener, start_duplex, run_duplex, certs):
    """relay -k --ssl-target: plain clients, TLS to the target (a TLS echo
    server), whose certificate is checked against --ssl-trustfile for the
    target's host name; 4 MiB each way intact, twice."""
    e, eport = tls_listener(start_listener, certs, "-k", "--echo")
    r, port = start_relay(start_duplex, f"localhost:{eport}", "-v", "-k", "--ssl-target",
                          "--ssl-trustfile", certs["ca.pem"])
    for _ in range(2):
        data = os.urandom(4 * MiB)
        rc, out, err = run_duplex(["connect", "127.0.0.1", port], stdin=data, timeout=30)
        assert rc == 0, err
        assert sha(out) == sha(data)
    r.wait_err(r"tls 127\.0\.0\.1:\d+: peer certificate: subject CN=localhost, .* verified for "
               r"localhost")
    assert r.poll() is None


def test_relay_ssl_target_untrusted_refused(start_listener, start_duplex, run_duplex, certs):
    """Without the target's CA the handshake fails: the relay says why, the
    client gets nothing, the one-shot relay exits 4 (like connect --ssl)."""
    e, eport = tls_listener(start_listener, certs, "-k", "--echo")
    r, port = start_relay(start_duplex, f"localhost:{eport}", "--ssl-target")
    rc, out, err = run_duplex(["connect", "127.0.0.1", port], stdin=b"secret")
    assert out == b""
    assert r.wait() == 4, r.err
    assert re.search(r"tls 127\.0\.0\.1:\d+: certificate verify failed: unable to get local "
                     r"issuer certificate", r.err), r.err
    assert "tls handshake" in r.err


def test_relay_ssl_target_name_mismatch(start_listener, start_duplex, run_duplex, certs):
    e, eport = tls_listener(start_listener, certs, "-k", "--echo")
    r, port = start_relay(start_duplex, f"127.0.0.1:{eport}", "--ssl-target", "--ssl-trustfile",
                          certs["ca.pem"], "--ssl-servername", "example.org")
    rc, out, err = run_duplex(["connect", "127.0.0.1", port], stdin=b"x")
    assert r.wait() == 4, r.err
    assert "hostname mismatch: certificate is for localhost, 127.0.0.1, not example.org" in r.err


def test_relay_tls_both_sides(start_listener, start_duplex, run_duplex, certs):
    """relay -k --ssl --ssl-target: TLS from the client (the relay's own
    certificate) and TLS to the target (checked against the same
    --ssl-trustfile); bytes intact end to end."""
    e, eport = tls_listener(start_listener, certs, "-k", "--echo")
    r, port = start_relay(start_duplex, f"localhost:{eport}", "-k", "--ssl", "--ssl-target",
                          *server_args(certs), "--ssl-trustfile", certs["ca.pem"])
    data = os.urandom(MiB)
    rc, out, err = run_duplex(["connect", "--ssl", "--ssl-trustfile", certs["ca.pem"], "localhost",
                               port], stdin=data, timeout=30)
    assert rc == 0, err
    assert sha(out) == sha(data)


def test_curl_plain_http_through_relay_to_openssl_www(start_duplex, spawn, certs):
    """relay --ssl-target in front of `openssl s_server -www` (an HTTPS-only
    server): plain curl gets its status page."""
    need("curl")
    sport = free_port()
    s = spawn(["openssl", "s_server", "-accept", sport, "-cert", certs["server.pem"], "-key",
               certs["server.key"], "-www", "-quiet"], name="s_server -www")
    wait_listening(sport, proc=s)
    r, port = start_relay(start_duplex, f"localhost:{sport}", "-k", "--ssl-target",
                          "--ssl-trustfile", certs["ca.pem"])
    c = spawn(["curl", "-sS", "--max-time", "10", f"http://127.0.0.1:{port}/"], name="curl")
    assert c.wait() == 0, c.err
    assert b"Ciphers supported in s_server binary" in c.out, c.out[:300]


@pytest.mark.parametrize("args, message", [
    (["connect", "--ssl-target", "127.0.0.1", "9"], "--ssl-target is for relay"),
    (["relay", "--ssl-target", "--ssl-verify", "--ssl-trustfile", "ca.pem", "0", "127.0.0.1:9"],
     "--ssl-verify is for relay --ssl"),
    (["relay", "--ssl-target", "0", "unix:/tmp/x.sock"], "give --ssl-servername NAME"),
    (["relay", "--ssl-alpn", "h2", "0", "127.0.0.1:9"], "need --ssl (--tls) or --ssl-target"),
])
def test_relay_ssl_target_usage_errors(run_duplex, args, message):
    rc, out, err = run_duplex(args)
    assert rc == 2, err
    assert message in err, err


# ------------------------------------- names: empty hosts, addresses not listed --


def leaf_cert(certs, name, san):
    """A server certificate signed by the test CA for exactly san
    ("IP:127.0.0.2", "DNS:localhost"); returns --ssl-cert/--ssl-key args."""
    d = certs["dir"]
    if not os.path.exists(os.path.join(d, f"{name}.pem")):
        (open(os.path.join(d, f"{name}.ext"), "w")).write(
            f"subjectAltName={san}\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n")
        ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"]
        openssl("req", *ec, "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj",
                f"/CN={name}", cwd=d)
        openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
                "-set_serial", str(abs(hash(name)) % 100000 + 10), "-days", "2",
                "-extfile", f"{name}.ext", "-out", f"{name}.pem", cwd=d)
    return ["--ssl-cert", os.path.join(d, f"{name}.pem"), "--ssl-key", os.path.join(d, f"{name}.key")]


def test_empty_host_never_means_loopback(run_duplex, start_listener, certs):
    """An empty HOST used to connect to the loopback and clear the name the
    certificate is checked for (any certificate of a trusted CA passed):
    now a usage error before any connection, with TLS or without."""
    s, port = tls_listener(start_listener, certs, stdin=b"must not be read")
    for host_args in (["", str(port)], [f"[]:{port}"]):
        rc, out, err = run_duplex(["connect", "--ssl", "--ssl-trustfile", certs["ca.pem"],
                                   *host_args], stdin=b"secret")
        assert rc == 2, err
        assert "the HOST is empty" in err, err
        assert out == b""
    assert s.poll() is None  # no client ever came
    rc, out, err = run_duplex(["connect", "127.0.0.1", str(port)], stdin=b"")  # it still listens
    assert s.wait() != 0 and b"secret" not in s.out


@pytest.mark.parametrize("args, message", [
    (["connect", "", "9"], "the HOST is empty"),
    (["connect", "[]:9"], "the HOST is empty"),
    (["connect", "-u", "", "9"], "the HOST is empty"),
    (["connect", "-z", "", "9"], "the HOST is empty"),
    (["connect", "-x", "[]:1080", "127.0.0.1", "9"], "invalid -x/--proxy"),
    (["relay", "--ssl-target", "0", "[]:443"], "relay TARGET: the HOST is empty"),
    (["relay", "0", "[]:443"], "relay TARGET: the HOST is empty"),
    (["connect", "--ssl", "--ssl-servername", "", "127.0.0.1", "9"], "--ssl-servername needs a name"),
    (["relay", "--ssl-target", "--ssl-servername", "", "0", "127.0.0.1:9"],
     "--ssl-servername needs a name"),
    (["bench", "echo", "", "9"], "the HOST is empty"),
])
def test_empty_host_is_a_usage_error(run_duplex, args, message):
    rc, out, err = run_duplex(args)
    assert rc == 2, err
    assert message in err, err


def test_ca_signed_certificate_for_another_ip_refused(run_duplex, start_listener, certs):
    """A certificate of a trusted CA for IP:127.0.0.2 only: accepted at
    127.0.0.2, refused at 127.0.0.3 (the IP check, not the chain)."""
    cert = leaf_cert(certs, "ip2", "IP:127.0.0.2")
    s, port = start_listener(["--ssl", *cert], addr="127.0.0.2", stdin=b"ok")
    rc, out, err = run_duplex(["connect", "-v", "--ssl", "--ssl-trustfile", certs["ca.pem"],
                               "127.0.0.2", str(port)])
    assert rc == 0, err
    assert out == b"ok" and "verified for 127.0.0.2" in err
    s, port = start_listener(["--ssl", *cert], addr="127.0.0.3", stdin=b"secret")
    rc, out, err = run_duplex(["connect", "--ssl", "--ssl-trustfile", certs["ca.pem"],
                               "127.0.0.3", str(port)])
    assert rc == 4, err
    assert out == b""
    assert (f"tls 127.0.0.3:{port}: IP address mismatch: certificate is for 127.0.0.2, not "
            "127.0.0.3") in err


def test_ca_signed_name_certificate_reached_by_ip_refused(run_duplex, start_listener,
                                                          start_duplex, certs):
    """A certificate of a trusted CA for DNS:localhost only: accepted by
    name, refused by IP address (connect and relay --ssl-target alike)."""
    cert = leaf_cert(certs, "nameonly", "DNS:localhost")
    s, port = start_listener(["--ssl", *cert], stdin=b"ok")
    rc, out, err = run_duplex(["connect", "--ssl", "--ssl-trustfile", certs["ca.pem"], "localhost",
                               str(port)])
    assert rc == 0, err
    assert out == b"ok"
    s, port = start_listener(["--ssl", *cert], stdin=b"secret")
    rc, out, err = run_duplex(["connect", "--ssl", "--ssl-trustfile", certs["ca.pem"], "127.0.0.1",
                               str(port)])
    assert rc == 4, err
    assert out == b""
    assert (f"tls 127.0.0.1:{port}: IP address mismatch: certificate is for localhost, not "
            "127.0.0.1") in err
    e, eport = start_listener(["-k", "--echo", "--ssl", *cert])
    r, rport = start_relay(start_duplex, f"127.0.0.1:{eport}", "--ssl-target", "--ssl-trustfile",
                           certs["ca.pem"])
    rc, out, err = run_duplex(["connect", "127.0.0.1", str(rport)], stdin=b"secret")
    assert out == b""
    assert r.wait() == 4, r.err
    assert "IP address mismatch: certificate is for localhost, not 127.0.0.1" in r.err


# ------------------------------------------- session resumption, --ssl-verify --


def s_client(spawn, port, certs, *extra):
    return spawn(["openssl", "s_client", "-connect", f"127.0.0.1:{port}", "-CAfile",
                  certs["ca.pem"], "-cert", certs["client.pem"], "-key", certs["client.key"],
                  *extra], stdin=subprocess.PIPE, name="s_client")


def resumes(spawn, port, certs):
    """TLS 1.2 (s_client -reconnect: session ids) and TLS 1.3 (a Python
    client offers the ticket of its first connection): both resumed. Before
    the session id context, the server refused both (alert 80)."""
    c = s_client(spawn, port, certs, "-tls1_2", "-reconnect")
    c.close_stdin()
    c.wait()
    assert re.search(rb"^Reused, TLSv1\.2", c.out, re.M), c.out[-2000:] + c.err.encode()
    ctx = ssl.create_default_context(cafile=certs["ca.pem"])
    ctx.load_cert_chain(certs["client.pem"], certs["client.key"])
    session = None
    for i in range(2):
        with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as raw:
            tls = ctx.wrap_socket(raw, server_hostname="localhost", session=session)
            tls.sendall(b"ping %d" % i)
            assert recv_exactly(tls, 6) == b"ping %d" % i  # the ticket came before the echo
            assert tls.version() == "TLSv1.3"
            assert tls.session_reused == (i == 1), i
            session = tls.session
            tls.unwrap()


def test_session_resumption_with_client_certificates(start_listener, spawn, certs, tmp_path):
    p, port = tls_listener(start_listener, certs, "-k", "--echo", "--ssl-verify",
                           "--ssl-trustfile", certs["ca.pem"])
    resumes(spawn, port, certs)
    assert p.poll() is None
    p.popen.send_signal(signal.SIGTERM)
    p.wait()  # all of its stderr read: none of the handshakes said this
    assert "session id context uninitialized" not in p.err


def test_session_resumption_relay_ssl_verify(start_listener, start_duplex, spawn, certs,
                                             tmp_path):
    e, eport = start_listener(["-k", "--echo"])
    r, port = relay_ssl(start_duplex, certs, f"127.0.0.1:{eport}", "-k", "--ssl-verify",
                        "--ssl-trustfile", certs["ca.pem"])
    resumes(spawn, port, certs)
    assert r.poll() is None


# ------------------------------------------------ a close without close_notify --


def test_ncat_client_bare_close_after_complete_upload_exits_0(start_listener, spawn, certs,
                                                              tmp_path):
    """ncat --ssl ends with a bare TCP FIN (no close_notify) at the end of its
    input, as most clients do after a complete transfer: duplex listen warns
    (always) and exits 0 with every byte."""
    need("ncat")
    up = os.urandom(4 * MiB)
    (tmp_path / "up").write_bytes(up)
    p, port = tls_listener(start_listener, certs, stdin=subprocess.PIPE)
    with open(tmp_path / "up", "rb") as f:
        n = spawn(["ncat", "--ssl", "--ssl-verify", "--ssl-trustfile", certs["ca.pem"],
                   "localhost", port], stdin=f, name="ncat --ssl")
    p.wait_err("without close_notify", timeout=30)
    assert n.wait(30) == 0, n.err
    p.close_stdin()
    assert p.wait(10) == 0, p.err
    assert sha(p.out) == sha(up)
    assert re.search(r"duplex: tls 127\.0\.0\.1:\d+: warning: TLS connection ended without "
                     r"close_notify: the data may be truncated", p.err), p.err


# -------------------------------------------- fingerprints and --ssl-pin --


def cert_pins(path):
    """(hex fingerprint with colons, sha256//BASE64 of the public key) of a PEM
    certificate, computed by the openssl CLI."""
    fp = subprocess.run(["openssl", "x509", "-noout", "-fingerprint", "-sha256", "-in", path],
                        capture_output=True, text=True, check=True, timeout=10).stdout
    fp = fp.strip().split("=", 1)[1]
    pub = subprocess.run(["openssl", "x509", "-noout", "-pubkey", "-in", path],
                         capture_output=True, check=True, timeout=10).stdout
    der = subprocess.run(["openssl", "pkey", "-pubin", "-outform", "DER"], input=pub,
                         capture_output=True, check=True, timeout=10).stdout
    import base64
    import hashlib
    return fp, "sha256//" + base64.b64encode(hashlib.sha256(der).digest()).decode()


def test_verbose_client_prints_the_server_fingerprint(run_duplex, start_listener, certs):
    fp, key = cert_pins(certs["server.pem"])
    s, port = tls_listener(start_listener, certs, stdin=b"x")
    rc, out, err = run_duplex(["connect", "-v", "--ssl", "--ssl-trustfile", certs["ca.pem"],
                               "localhost", str(port)])
    assert rc == 0, err
    assert (f"tls 127.0.0.1:{port}: peer certificate SHA-256 fingerprint {fp}, public key "
            f"{key}") in err, err


def test_ephemeral_server_fingerprint_is_the_clients_pin(run_duplex, start_listener):
    """What `listen --ssl -v` prints for its ephemeral certificate is what a
    client prints with -v and what --ssl-pin takes."""
    s, port = start_listener(["-v", "--ssl"], stdin=b"pinned")
    fp = s.wait_err(r"SHA-256 fingerprint (\S+)").group(1)
    rc, out, err = run_duplex(["connect", "-v", "--ssl", "--ssl-pin", fp, "127.0.0.1", str(port)],
                              stdin=b"up")
    assert rc == 0, err
    assert out == b"pinned"
    assert f"peer certificate SHA-256 fingerprint {fp}" in err
    assert "pinned (--ssl-pin)" in err
    assert s.wait() == 0 and s.out == b"up"


def test_pin_trusts_a_self_signed_server(run_duplex, start_listener, certs):
    fp, key = cert_pins(certs["self.pem"])
    other_fp, other_key = cert_pins(certs["server.pem"])
    for pin in (fp, fp.replace(":", "").lower(), key, f"{other_key};{key}"):
        s, port = tls_listener(start_listener, certs, name="self", stdin=b"down")
        rc, out, err = run_duplex(["connect", "--ssl", "--ssl-pin", pin, "127.0.0.1", str(port)],
                                  stdin=b"up")
        assert rc == 0, (pin, err)
        assert out == b"down"
        assert s.wait() == 0 and s.out == b"up"


def test_pin_mismatch_fails_closed(run_duplex, start_listener, certs):
    """A pin that is not the server's: exit 4, naming what was expected and
    what came, even for a certificate the system store would trust."""
    fp, key = cert_pins(certs["server.pem"])
    self_fp, self_key = cert_pins(certs["self.pem"])
    for pin in (self_fp, self_key):
        s, port = tls_listener(start_listener, certs, stdin=b"secret")
        rc, out, err = run_duplex(["connect", "--ssl", "--ssl-pin", pin, "localhost", str(port)],
                                  stdin=b"up", env={"SSL_CERT_FILE": certs["ca.pem"]})
        assert rc == 4, err
        assert out == b""
        assert (f"tls 127.0.0.1:{port}: certificate pin mismatch: expected {pin}, got public key "
                f"{key}, certificate SHA-256 fingerprint {fp}") in err, err
        assert b"up" not in s.out


def test_relay_ssl_target_pin(start_listener, start_duplex, run_duplex, certs):
    fp, key = cert_pins(certs["self.pem"])
    e, eport = tls_listener(start_listener, certs, "-k", "--echo", name="self")
    r, port = start_relay(start_duplex, f"127.0.0.1:{eport}", "-k", "--ssl-target", "--ssl-pin",
                          key)
    rc, out, err = run_duplex(["connect", "127.0.0.1", str(port)], stdin=b"via pin")
    assert rc == 0, err
    assert out == b"via pin"
    other_fp, other_key = cert_pins(certs["server.pem"])
    r, port = start_relay(start_duplex, f"127.0.0.1:{eport}", "--ssl-target", "--ssl-pin",
                          other_fp)
    rc, out, err = run_duplex(["connect", "127.0.0.1", str(port)], stdin=b"secret")
    assert out == b""
    assert r.wait() == 4, r.err
    assert f"certificate pin mismatch: expected {other_fp}, got public key {key}" in r.err


@pytest.mark.parametrize("pin", [
    "", "sha256//", "sha256//abc", "sha256//" + "A" * 44, "sha1//" + "A" * 43 + "=",
    "AB" * 31, "AB" * 33, "G" + "A" * 63, "AB:" * 31 + "A", ":" + "AB" * 32, "AB::" + "AB" * 31,
    "AB" * 32 + ";",
])
def test_malformed_pin_is_a_usage_error(run_duplex, pin):
    rc, out, err = run_duplex(["connect", "--ssl", "--ssl-pin", pin, "127.0.0.1", "9"])
    assert rc == 2, err
    assert "invalid --ssl-pin" in err, err


@pytest.mark.parametrize("args, message", [
    (["listen", "--ssl", "--ssl-pin", "AB" * 32, "0"], "--ssl-pin checks the server's"),
    (["relay", "--ssl", "--ssl-pin", "AB" * 32, "0", "127.0.0.1:9"], "--ssl-pin checks the server's"),
    (["connect", "--ssl-pin", "AB" * 32, "127.0.0.1", "9"], "need --ssl (--tls)"),
    (["connect", "--ssl", "--ssl-no-verify", "--ssl-pin", "AB" * 32, "127.0.0.1", "9"],
     "excludes --ssl-no-verify and --ssl-trustfile"),
    (["connect", "--ssl", "--ssl-trustfile", "ca.pem", "--ssl-pin", "AB" * 32, "127.0.0.1", "9"],
     "excludes --ssl-no-verify and --ssl-trustfile"),
])
def test_pin_usage_errors(run_duplex, args, message):
    rc, out, err = run_duplex(args)
    assert rc == 2, err
    assert message in err, err


def test_pin_over_a_unix_socket_needs_no_servername(start_duplex, run_duplex, certs, tmp_path):
    """-U has no host name to check; a pin needs none (it was 'give
    --ssl-servername NAME' before --ssl-pin)."""
    fp, key = cert_pins(certs["self.pem"])
    path = str(tmp_path / "tls.sock")
    s = start_duplex(["listen", "-v", "--ssl", *server_args(certs, "self"), "-U", path],
                     stdin=b"unix")
    s.wait_err("listening on")
    rc, out, err = run_duplex(["connect", "--ssl", "--ssl-pin", key, "-U", path], stdin=b"hi")
    assert rc == 0, err
    assert out == b"unix"
    assert s.wait() == 0 and s.out == b"hi"


# ------------------------- every path on libduplex's TLS: no socketpair bridge --


def unix_sockets(pid):
    """How many of pid's descriptors are Unix sockets (a socketpair bridge
    would add two per TLS connection)."""
    inodes = {line.split()[6] for line in open("/proc/net/unix").read().splitlines()[1:]
              if len(line.split()) >= 7}
    n = 0
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            link = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if link.startswith("socket:[") and link[8:-1] in inodes:
            n += 1
    return n


def echo_through(conn, data, chunk=64 << 10):
    """Send data in chunks to an echo behind conn, reading each back; the
    SHA-256 of what came back."""
    back = bytearray()
    for k in range(0, len(data), chunk):
        conn.sendall(data[k:k + chunk])
        back += recv_exactly(conn, len(data[k:k + chunk]))
    return sha(bytes(back))


def test_relay_tls_both_sides_3mib_no_socketpair(start_listener, start_duplex, certs):
    """relay -k --ssl --ssl-target: 3 MiB of random data to a TLS echo and
    back, intact by hash, and the relay's pumps read and write the two TLS
    sockets themselves: during the transfer it holds no Unix socket more
    than before (the old bridge held two per side), then a clean
    close_notify."""
    e, eport = tls_listener(start_listener, certs, "-k", "--echo")
    r, port = start_relay(start_duplex, f"localhost:{eport}", "-k", "--ssl", "--ssl-target",
                          *server_args(certs), "--ssl-trustfile", certs["ca.pem"])
    base = unix_sockets(r.pid)
    c = tls_client(certs, port)
    data = os.urandom(3 * MiB)
    assert echo_through(c, data[:MiB]) == sha(data[:MiB])
    assert unix_sockets(r.pid) == base, "the relay holds a socketpair for its TLS connection"
    assert echo_through(c, data[MiB:]) == sha(data[MiB:])
    c.unwrap()  # our close_notify; the relay's comes back through both hops
    c.close()
    assert r.poll() is None


def test_relay_tls_both_sides_balanced_over_two_targets(start_listener, start_duplex, certs):
    """relay --balance roundrobin --ssl --ssl-target over two TLS echo
    targets: clients alternate between them, each one's bytes intact."""
    targets = [tls_listener(start_listener, certs, "-v", "-k", "--echo") for _ in range(2)]
    r, port = start_relay(start_duplex, ",".join(f"127.0.0.1:{t[1]}" for t in targets), "-k",
                          "--balance", "roundrobin", "--ssl", "--ssl-target", *server_args(certs),
                          "--ssl-trustfile", certs["ca.pem"], "--ssl-servername", "localhost")
    for i in range(4):
        c = tls_client(certs, port)
        data = os.urandom(256 << 10)
        assert echo_through(c, data) == sha(data)
        c.unwrap()
        c.close()
    for t, _ in targets:
        t.wait_err(r"connected \(1 now\)")


def test_relay_send_proxy_then_tls_to_target(start_listener, start_duplex, certs):
    """relay --send-proxy --ssl --ssl-target: the PROXY header goes plain
    before the target's handshake, the target (listen --ssl --accept-proxy)
    takes it and speaks TLS after it; the client's TLS ends at the relay."""
    e, eport = tls_listener(start_listener, certs, "-v", "-k", "--echo", "--accept-proxy")
    r, port = start_relay(start_duplex, f"localhost:{eport}", "-k", "--send-proxy", "--ssl",
                          "--ssl-target", *server_args(certs), "--ssl-trustfile", certs["ca.pem"])
    c = tls_client(certs, port)
    data = os.urandom(MiB)
    assert echo_through(c, data) == sha(data)
    e.wait_err(r"PROXY v1 header: client 127\.0\.0\.1:%d$" % c.getsockname()[1])
    c.unwrap()
    c.close()


@pytest.mark.parametrize("model", ["thread", "fork"])
def test_model_echo_over_tls_3mib_each(start_listener, certs, model):
    """--model thread/fork --ssl: each thread or child runs its client's
    handshake and a TLS echo on a loop of its own; 3 clients at once, 1 MiB
    each intact, each ended with a clean close_notify."""
    p, port = tls_listener(start_listener, certs, "-k", "--echo", "--model", model)
    conns = [tls_client(certs, port) for _ in range(3)]
    data = [os.urandom(MiB) for _ in conns]
    back = [bytearray() for _ in conns]
    for k in range(0, MiB, 64 << 10):
        for c, d, b in zip(conns, data, back):
            c.sendall(d[k:k + (64 << 10)])
        for c, d, b in zip(conns, data, back):
            b += recv_exactly(c, 64 << 10)
    for c, d, b in zip(conns, data, back):
        assert sha(bytes(b)) == sha(d)
        c.unwrap()  # raises unless the server's close_notify comes back
        c.close()
    assert p.poll() is None


def test_model_fork_tls_without_k_exits_after_its_client(start_listener, run_duplex, certs):
    """listen --ssl --model fork (no -k): one client served by a child, then
    the server exits 0; duplex connect --ssl exits 0 on a clean close_notify."""
    p, port = tls_listener(start_listener, certs, "--echo", "--model", "fork")
    data = os.urandom(MiB)
    rc, out, err = run_duplex(["connect", "--ssl", "--ssl-trustfile", certs["ca.pem"],
                               "localhost", port], stdin=data, timeout=30)
    assert rc == 0, err
    assert sha(out) == sha(data)
    assert p.wait() == 0, p.err


def test_exec_over_tls_3mib_both_ways(start_listener, certs):
    """listen --exec cat --ssl: the program's socketpair and the TLS socket
    pumped both ways by the server; 3 MiB intact, then the client's
    close_notify ends cat and the server's close_notify follows."""
    p, port = tls_listener(start_listener, certs, "-k", "--exec", "cat")
    c = tls_client(certs, port)
    data = os.urandom(3 * MiB)
    assert echo_through(c, data) == sha(data)
    c.unwrap()
    c.close()
    assert p.poll() is None


@pytest.mark.parametrize("path", ["exec", "thread", "fork", "relay"])
def test_client_certificate_check_fails_closed_on_each_path(start_listener, start_duplex,
                                                             run_duplex, certs, path):
    """--ssl-verify on every path that takes TLS clients: a client without a
    certificate is refused with the reason (-v), and nothing is served to it
    (no program run, no echo, no connection to the target); a client with a
    certificate from the CA gets through."""
    verify = ["-v", "--ssl-verify", "--ssl-trustfile", certs["ca.pem"]]
    if path == "relay":
        e, eport = start_listener(["-k", "--echo"])
        p, port = relay_ssl(start_duplex, certs, f"127.0.0.1:{eport}", "-k", *verify)
    else:
        mode = (["--sh-exec", "echo ran; cat"] if path == "exec"
                else ["--echo", "--model", path])
        p, port = tls_listener(start_listener, certs, "-k", *mode, *verify)
    rc, out, err = run_duplex(["connect", "--ssl", "--ssl-trustfile", certs["ca.pem"],
                               "localhost", port], stdin=b"let me in")
    assert rc == 4, err
    assert "the server wants a client certificate" in err, err
    assert out == b""
    p.wait_err(r"handshake failed: peer did not return a certificate")
    refused = p.err
    assert "running process" not in refused and "connecting to" not in refused, refused
    rc, out, err = run_duplex(["connect", "--ssl", "--ssl-trustfile", certs["ca.pem"],
                               *server_args(certs, "client"), "localhost", port], stdin=b"me")
    assert rc == 0, err
    assert out == (b"ran\nme" if path == "exec" else b"me")


def test_exec_over_tls_program_exit_closes_idle_client(start_listener, certs):
    """listen --sh-exec 'echo hi' --ssl: the program writes and exits without
    reading; its client (which sends nothing) gets the line and close_notify, and the server lets
    the connection go (socket and socketpair closed) though the client keeps
    it open and sends nothing, as a plain --exec client's socket closes
    with its program."""
    p, port = tls_listener(start_listener, certs, "-k", "--sh-exec", "echo hi")
    c = tls_client(certs, port)
    assert recv_exactly(c, 3) == b"hi\n"
    c.settimeout(TIMEOUT)
    assert c.recv(10) == b""  # close_notify
    base = fds_of(p.pid)
    c2 = tls_client(certs, port)
    assert recv_all(c2) == b"hi\n"
    wait_for_fds(p.pid, base)  # c and c2 still open on our side
    c.close()
    c2.close()
