/* test_tls.c: the library's TLS transport (dx_tls_*) over loopback: a
 * library client and server on one loop (echo with close_notify both ways,
 * a pump echoing through TLS), refusals that fail closed with their reason
 * (an untrusted certificate, a wrong host name or IP, a missing client
 * certificate), a bare close (DX_ETLSTRUNC, or the end with
 * allow_truncation), the handshake deadline and the callback rule; and
 * interop with `openssl s_server` / `openssl s_client`. Certificates are
 * made with the openssl command for each test. */
#define _GNU_SOURCE
#include "helpers.h"

#include <sys/wait.h>

#define T(name) Test(tls, name, .timeout = 30, .init = tls_init, .fini = tls_fini)

static char dir[64], cert[128], key[128], ccert[128], ckey[128];

static void sh(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void sh(const char *fmt, ...)
{
    char cmd[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof cmd, fmt, ap);
    va_end(ap);
    cr_assert_eq(system(cmd), 0, "%s", cmd);
}

static void tls_init(void)
{
    h_alarm(25);
    signal(SIGPIPE, SIG_IGN);
    cr_assert(dx_tls_available(), "built without TLS");
    h_tmpdir(dir, sizeof dir);
    snprintf(cert, sizeof cert, "%s/c.pem", dir);
    snprintf(key, sizeof key, "%s/k.pem", dir);
    snprintf(ccert, sizeof ccert, "%s/cc.pem", dir);
    snprintf(ckey, sizeof ckey, "%s/ck.pem", dir);
    /* the server's: localhost and 127.0.0.1; a client's: CN=client */
    sh("openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 "
       "-subj /CN=localhost -addext subjectAltName=DNS:localhost,IP:127.0.0.1 "
       "-keyout %s -out %s 2>/dev/null", key, cert);
    sh("openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 "
       "-subj /CN=client -keyout %s -out %s 2>/dev/null", ckey, ccert);
}

static void tls_fini(void) { sh("rm -rf %s", dir); }

static dx_tls_ctx *ctx_or_die(const dx_tls_opts *o)
{
    int err = 0;
    char why[256] = "";
    dx_tls_ctx *c = dx_tls_ctx_new(o, &err, why, sizeof why);
    cr_assert_not_null(c, "dx_tls_ctx_new: %s (%s)", dx_strerror(err), why);
    return c;
}

static dx_tls_ctx *server_ctx(void)
{
    dx_tls_opts o = {0};
    o.server = 1;
    o.cert_file = cert;
    o.key_file = key;
    return ctx_or_die(&o);
}

static dx_tls_ctx *client_ctx(const char *ca)
{
    dx_tls_opts o = {0};
    o.ca_file = ca;
    return ctx_or_die(&o);
}

/* ---- one side of a connection: handshake, then a stream ---- */

struct side {
    dx_loop *loop;
    dx_tls *tls;
    dx_stream st;
    int fd;
    int hs_calls, hs_err;
    char reason[512];
    int up, closed;
    int echo;                 /* the server: send back what arrives */
    int eof, err;             /* clean end of input; a failure */
    const char *send;         /* the client: what to send, then close_notify */
    size_t send_len, sent;
    uint64_t hash;
    size_t got;
    struct side *peer;
};

static void side_close(struct side *s)
{
    if (s->closed)
        return;
    s->closed = 1;
    if (s->up)
        dx_stream_close(&s->st);
    dx_tls_free(s->tls); /* from inside the stream's own callback: allowed */
    s->tls = NULL;
}

static void pump_out(struct side *s)
{
    while (s->send && s->sent < s->send_len) {
        size_t n = s->send_len - s->sent;
        if (n > 16384)
            n = 16384;
        if (dx_stream_room(&s->st) < n)
            return; /* the drain event resumes */
        cr_assert_eq(dx_stream_write(&s->st, s->send + s->sent, n), 0);
        s->sent += n;
    }
    if (s->send && s->sent == s->send_len && !s->st.shut_pending)
        dx_stream_shutdown(&s->st); /* close_notify once the queue is out */
}

static void on_read(dx_stream *st, const char *data, size_t n)
{
    struct side *s = st->data;
    if (n == 0) {
        s->eof = 1;
        dx_stream_shutdown(st); /* the server's close_notify; the client's is out already */
        if (st->shut_done)
            side_close(s);
        return;
    }
    s->hash = h_fnv(s->hash, data, n);
    s->got += n;
    if (s->echo) {
        cr_assert_eq(dx_stream_write(st, data, n), 0, "the echo fits: reading pauses above half");
        if (dx_stream_room(st) < st->queue_cap / 2)
            dx_stream_read_stop(st);
    }
}

static void on_event(dx_stream *st, int error)
{
    struct side *s = st->data;
    if (error < 0) {
        s->err = error;
        snprintf(s->reason, sizeof s->reason, "%s", dx_tls_reason(s->tls));
        side_close(s);
        return;
    }
    if (st->shut_done && s->eof) {
        side_close(s);
        return;
    }
    if (s->echo && !s->eof)
        dx_stream_read_start(st);
    pump_out(s);
}

static void on_handshake(dx_tls *t, int error, void *data)
{
    struct side *s = data;
    cr_assert_eq(t, s->tls);
    s->hs_calls++;
    s->hs_err = error;
    snprintf(s->reason, sizeof s->reason, "%s", dx_tls_reason(t));
    if (error < 0) {
        side_close(s); /* frees the dx_tls inside its own callback */
        return;
    }
    cr_assert_eq(dx_stream_init(s->loop, &s->st, s->fd, 128 * 1024, on_read, on_event, s), 0);
    dx_stream_set_tls(&s->st, t);
    s->up = 1;
    cr_assert_eq(dx_stream_read_start(&s->st), 0);
    pump_out(s);
}

static void side_start(struct side *s, dx_loop *loop, dx_tls_ctx *ctx, int fd, const char *name)
{
    int err = 0;
    s->loop = loop;
    s->fd = fd;
    s->hash = 1469598103934665603ULL;
    s->tls = dx_tls_new(loop, ctx, fd, name, &err);
    cr_assert_not_null(s->tls, "dx_tls_new: %s", dx_strerror(err));
    cr_assert_eq(dx_tls_handshake(s->tls, 5000, on_handshake, s), 0);
    cr_assert_eq(s->hs_calls, 0, "the handshake callback ran inside dx_tls_handshake()");
}

/* Run the loop in slices until *a and *b (if not NULL) are set, at most ms. */
static void run_until(dx_loop *loop, const int *a, const int *b, uint64_t ms, const char *what)
{
    uint64_t end = h_now_ms() + ms;
    while (!(*a && (!b || *b)) && h_now_ms() < end)
        h_run_for(loop, 10);
    cr_assert(*a && (!b || *b), "%s", what);
}

/* A client (name) and a server over a loopback TCP pair, run to the end. */
static void run_pair(struct side *c, struct side *sv, dx_tls_ctx *cctx, dx_tls_ctx *sctx,
                     const char *name)
{
    int fds[2];
    h_tcp_pair(fds, 1);
    dx_loop *loop = h_loop();
    sv->echo = 1;
    side_start(sv, loop, sctx, fds[1], NULL);
    side_start(c, loop, cctx, fds[0], name);
    run_until(loop, &c->closed, &sv->closed, 10000, "the connection did not end");
    side_close(c);
    side_close(sv);
    dx_loop_free(loop);
    close(fds[0]);
    close(fds[1]);
}

static char *random_bytes(size_t n, uint64_t seed)
{
    char *p = malloc(n);
    cr_assert_not_null(p);
    for (size_t i = 0; i < n; i++)
        p[i] = (char)h_rand(&seed);
    return p;
}

T(echo_with_close_notify_both_ways)
{
    size_t n = 3 * 1024 * 1024 + 17;
    char *data = random_bytes(n, 7);
    dx_tls_ctx *sctx = server_ctx(), *cctx = client_ctx(cert);
    struct side c = {0}, sv = {0};
    c.send = data;
    c.send_len = n;
    run_pair(&c, &sv, cctx, sctx, "localhost");
    cr_assert_eq(c.hs_err, 0, "client handshake: %s", c.reason);
    cr_assert_eq(sv.hs_err, 0, "server handshake: %s", sv.reason);
    cr_assert_eq(sv.err, 0, "server: %s (%s)", dx_strerror(sv.err), sv.reason);
    cr_assert_eq(c.err, 0, "client: %s (%s)", dx_strerror(c.err), c.reason);
    /* the client's close_notify was the server's end of input, and the
     * server's close_notify (after the whole echo) the client's */
    cr_assert(sv.eof && c.eof);
    cr_assert_eq(sv.got, n);
    cr_assert_eq(c.got, n);
    uint64_t want = h_fnv(1469598103934665603ULL, data, n);
    cr_assert_eq(c.hash, want, "the echo differs");
    cr_assert_eq(sv.hash, want);
    dx_tls_ctx_free(sctx);
    dx_tls_ctx_free(cctx);
    free(data);
}

T(ip_address_name_checked_against_ip_entries)
{
    dx_tls_ctx *sctx = server_ctx(), *cctx = client_ctx(cert);
    struct side c = {0}, sv = {0};
    c.send = "x";
    c.send_len = 1;
    run_pair(&c, &sv, cctx, sctx, "127.0.0.1");
    cr_assert_eq(c.hs_err, 0, "127.0.0.1 is in the certificate: %s", c.reason);
    cr_assert(c.eof && c.got == 1);

    struct side c2 = {0}, sv2 = {0};
    run_pair(&c2, &sv2, cctx, sctx, "127.0.0.2");
    cr_assert_eq(c2.hs_err, DX_ETLSVERIFY, "got %s", dx_strerror(c2.hs_err));
    cr_assert(strstr(c2.reason, "IP address mismatch") && strstr(c2.reason, "127.0.0.2"), "%s",
              c2.reason);
    dx_tls_ctx_free(sctx);
    dx_tls_ctx_free(cctx);
}

T(untrusted_certificate_fails_closed_with_reason)
{
    /* the system store does not hold a self-signed test certificate */
    dx_tls_ctx *sctx = server_ctx(), *cctx = client_ctx(NULL);
    struct side c = {0}, sv = {0};
    c.send = "secret";
    c.send_len = 6;
    run_pair(&c, &sv, cctx, sctx, "localhost");
    cr_assert_eq(c.hs_calls, 1);
    cr_assert_eq(c.hs_err, DX_ETLSVERIFY, "got %d %s", c.hs_err, dx_strerror(c.hs_err));
    cr_assert(strstr(c.reason, "certificate verify failed: ") && strstr(c.reason, "self"), "%s",
              c.reason);
    cr_assert_lt(sv.hs_err, 0, "the server saw the client's refusal");
    cr_assert(strstr(sv.reason, "handshake failed: "), "%s", sv.reason);
    cr_assert_eq(sv.got, 0, "nothing reached the server");
    dx_tls_ctx_free(sctx);
    dx_tls_ctx_free(cctx);
}

T(wrong_host_name_fails_closed_with_reason)
{
    dx_tls_ctx *sctx = server_ctx(), *cctx = client_ctx(cert);
    struct side c = {0}, sv = {0};
    c.send = "secret";
    c.send_len = 6;
    run_pair(&c, &sv, cctx, sctx, "wrong.example");
    cr_assert_eq(c.hs_err, DX_ETLSVERIFY, "got %s", dx_strerror(c.hs_err));
    cr_assert(strstr(c.reason, "hostname mismatch: certificate is for localhost, 127.0.0.1, "
                               "not wrong.example"), "%s", c.reason);
    cr_assert_eq(sv.got, 0);
    dx_tls_ctx_free(sctx);
    dx_tls_ctx_free(cctx);
}

T(a_verifying_client_needs_a_name)
{
    dx_tls_ctx *cctx = client_ctx(cert);
    int fds[2], err = 0;
    h_tcp_pair(fds, 1);
    dx_loop *loop = h_loop();
    cr_assert_null(dx_tls_new(loop, cctx, fds[0], NULL, &err));
    cr_assert_eq(err, -EINVAL);
    dx_tls_opts o = {0};
    o.server = 1; /* no certificate */
    cr_assert_null(dx_tls_ctx_new(&o, &err, NULL, 0));
    cr_assert_eq(err, -EINVAL);
    char why[256];
    o.cert_file = "/nonexistent.pem";
    cr_assert_null(dx_tls_ctx_new(&o, &err, why, sizeof why));
    cr_assert_eq(err, DX_ETLS);
    cr_assert(strstr(why, "/nonexistent.pem"), "%s", why);
    dx_tls_ctx_free(cctx);
    dx_loop_free(loop);
    close(fds[0]);
    close(fds[1]);
}

T(client_certificate_required)
{
    dx_tls_opts so = {0};
    so.server = 1;
    so.cert_file = cert;
    so.key_file = key;
    so.ca_file = ccert;
    so.verify_client = 1;
    dx_tls_ctx *sctx = ctx_or_die(&so);
    dx_tls_ctx *bare = client_ctx(cert);
    struct side c = {0}, sv = {0};
    c.send = "hi";
    c.send_len = 2;
    run_pair(&c, &sv, bare, sctx, "localhost");
    cr_assert_eq(sv.hs_err, DX_ETLSVERIFY, "got %s", dx_strerror(sv.hs_err));
    cr_assert(strstr(sv.reason, "no certificate"), "%s", sv.reason);
    cr_assert_eq(sv.got, 0);

    dx_tls_opts co = {0};
    co.ca_file = cert;
    co.cert_file = ccert;
    co.key_file = ckey;
    dx_tls_ctx *with = ctx_or_die(&co);
    struct side c2 = {0}, sv2 = {0};
    c2.send = "hi";
    c2.send_len = 2;
    run_pair(&c2, &sv2, with, sctx, "localhost");
    cr_assert_eq(sv2.hs_err, 0, "%s", sv2.reason);
    cr_assert(sv2.got == 2 && c2.got == 2 && c2.eof);
    dx_tls_ctx_free(sctx);
    dx_tls_ctx_free(bare);
    dx_tls_ctx_free(with);
}

/* ---- the peer closes without close_notify ---- */

static void close_after_handshake(dx_tls *t, int error, void *data)
{
    struct side *s = data;
    cr_assert_eq(error, 0, "%s", dx_tls_reason(t));
    s->hs_calls++;
    dx_tls_free(t);
    s->tls = NULL;
    s->closed = 1;
    close(s->fd); /* no close_notify: a cut */
}

static void truncation(int allow)
{
    dx_tls_ctx *sctx;
    dx_tls_opts o = {0};
    o.server = 1;
    o.cert_file = cert;
    o.key_file = key;
    o.allow_truncation = allow;
    sctx = ctx_or_die(&o);
    dx_tls_ctx *cctx = client_ctx(cert);
    int fds[2], err = 0;
    h_tcp_pair(fds, 1);
    dx_loop *loop = h_loop();
    struct side sv = {0}, c = {0};
    sv.echo = 1;
    side_start(&sv, loop, sctx, fds[1], NULL);
    c.fd = fds[0];
    c.tls = dx_tls_new(loop, cctx, fds[0], "localhost", &err);
    cr_assert_not_null(c.tls);
    cr_assert_eq(dx_tls_handshake(c.tls, 5000, close_after_handshake, &c), 0);
    run_until(loop, &sv.closed, NULL, 10000, "the server did not see the end");
    cr_assert_eq(c.hs_calls, 1);
    if (allow) {
        cr_assert_eq(sv.err, 0, "%s", dx_strerror(sv.err));
        cr_assert(sv.eof, "a cut is the end of input with allow_truncation");
    } else {
        cr_assert_eq(sv.err, DX_ETLSTRUNC, "got %s", dx_strerror(sv.err));
        cr_assert(strstr(sv.reason, "without close_notify"), "%s", sv.reason);
        cr_assert(!sv.eof);
    }
    side_close(&sv);
    dx_loop_free(loop);
    close(fds[1]);
    dx_tls_ctx_free(sctx);
    dx_tls_ctx_free(cctx);
}

T(bare_close_is_an_error) { truncation(0); }
T(bare_close_is_the_end_with_allow_truncation) { truncation(1); }

T(handshake_deadline)
{
    dx_tls_ctx *sctx = server_ctx();
    int fds[2];
    h_tcp_pair(fds, 1);
    dx_loop *loop = h_loop();
    struct side sv = {0};
    int err = 0;
    sv.loop = loop;
    sv.fd = fds[1];
    sv.tls = dx_tls_new(loop, sctx, fds[1], NULL, &err);
    cr_assert_eq(dx_tls_handshake(sv.tls, 200, on_handshake, &sv), 0);
    uint64_t t0 = h_now_ms();
    run_until(loop, &sv.hs_calls, NULL, 8000, "no deadline"); /* the silent client never says hello */
    cr_assert_eq(sv.hs_calls, 1);
    cr_assert_eq(sv.hs_err, DX_ETIMEDOUT);
    cr_assert(strstr(sv.reason, "handshake timed out after 0.2 s"), "%s", sv.reason);
    cr_assert_geq(h_now_ms() - t0, 190);
    dx_loop_free(loop);
    close(fds[0]);
    close(fds[1]);
    dx_tls_ctx_free(sctx);
}

/* ---- a pump reading and writing the same TLS endpoint: an echo ---- */

struct pecho {
    dx_endpoint e;
    dx_pump p;
    dx_tls *tls;
    int done, error;
};

static void pecho_done(dx_pump *p, int error, int in_read)
{
    (void)in_read;
    struct pecho *pe = p->data;
    pe->done = 1;
    pe->error = error;
    dx_pump_stop(p);
}

static void pecho_handshake(dx_tls *t, int error, void *data)
{
    struct pecho *pe = data;
    cr_assert_eq(error, 0, "%s", dx_tls_reason(t));
    dx_endpoint_set_tls(&pe->e, t);
    cr_assert_eq(dx_pump_start(pe->e.loop, &pe->p, &pe->e, &pe->e, 64 * 1024,
                               DX_PUMP_SHUTDOWN | DX_PUMP_SPLICE, pecho_done, pe), 0);
}

T(pump_echoes_through_tls)
{
    size_t n = 2 * 1024 * 1024 + 5;
    char *data = random_bytes(n, 11);
    dx_tls_ctx *sctx = server_ctx(), *cctx = client_ctx(cert);
    int fds[2], err = 0;
    h_tcp_pair(fds, 1);
    dx_loop *loop = h_loop();
    struct pecho pe = {0};
    dx_endpoint_init(&pe.e, fds[1]);
    pe.e.loop = loop;
    pe.tls = dx_tls_new(loop, sctx, fds[1], NULL, &err);
    cr_assert_not_null(pe.tls);
    cr_assert_eq(dx_tls_handshake(pe.tls, 5000, pecho_handshake, &pe), 0);
    struct side c = {0};
    c.send = data;
    c.send_len = n;
    side_start(&c, loop, cctx, fds[0], "localhost");
    run_until(loop, &pe.done, &c.closed, 15000, "the echo did not end");
    cr_assert(pe.done);
    cr_assert_eq(pe.error, 0, "%s (%s)", dx_strerror(pe.error), dx_tls_reason(pe.tls));
    cr_assert_eq(c.err, 0, "%s (%s)", dx_strerror(c.err), c.reason);
    cr_assert(c.eof, "the pump's close_notify ended the client's input");
    cr_assert_eq(c.got, n);
    cr_assert_eq(c.hash, h_fnv(1469598103934665603ULL, data, n));
    cr_assert_eq(pe.p.bytes_out, n);
    side_close(&c);
    dx_tls_free(pe.tls);
    dx_loop_free(loop);
    close(fds[0]);
    close(fds[1]);
    dx_tls_ctx_free(sctx);
    dx_tls_ctx_free(cctx);
    free(data);
}

/* ---- interop with the openssl command ---- */

/* Start argv with stdin from a pipe (returned in *in, or /dev/null when in
 * is NULL) and stdout+stderr to file out. */
static pid_t spawn(char *const argv[], int *in, const char *out)
{
    int p[2];
    cr_assert_eq(pipe(p), 0);
    pid_t pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0) {
        int o = open(out, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        dup2(in ? p[0] : open("/dev/null", O_RDONLY), 0);
        dup2(o, 1);
        dup2(o, 2);
        close(p[1]);
        execvp(argv[0], argv);
        _exit(127);
    }
    close(p[0]);
    if (in)
        *in = p[1];
    else
        close(p[1]);
    return pid;
}

static int file_has(const char *path, const char *text)
{
    char buf[16384] = "";
    FILE *f = fopen(path, "r");
    if (!f)
        return 0;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    buf[n] = '\0';
    fclose(f);
    return strstr(buf, text) != NULL;
}

static void wait_for_text(const char *path, const char *text)
{
    for (int i = 0; i < 1000 && !file_has(path, text); i++)
        h_sleep_ms(10);
    cr_assert(file_has(path, text), "%s never said %s", path, text);
}

T(server_against_openssl_s_client_alpn_and_close_notify)
{
    dx_tls_opts o = {0};
    o.server = 1;
    o.cert_file = cert;
    o.key_file = key;
    o.alpn = "h2,http/1.1";
    dx_tls_ctx *sctx = ctx_or_die(&o);
    int port, lfd = h_listen4(4, &port);
    char addr[64], out[128];
    snprintf(addr, sizeof addr, "127.0.0.1:%d", port);
    snprintf(out, sizeof out, "%s/s_client.out", dir);
    char *argv[] = {"openssl", "s_client", "-connect", addr, "-alpn", "http/1.1,spdy",
                    "-CAfile", cert, "-verify_return_error", "-no_ign_eof", NULL};
    int in;
    pid_t pid = spawn(argv, &in, out);
    cr_assert(h_wait_fd(lfd, POLLIN, 10000) & POLLIN);
    int fd = dx_accept(lfd, NULL);
    cr_assert_geq(fd, 0);
    close(lfd);
    dx_loop *loop = h_loop();
    struct side sv = {0};
    side_start(&sv, loop, sctx, fd, NULL);
    h_write_all(in, "hello over tls\n", 15);
    close(in); /* s_client: close_notify at the end of its input */
    run_until(loop, &sv.closed, NULL, 10000, "the server did not see the end");
    int status;
    waitpid(pid, &status, 0);
    cr_assert_eq(sv.hs_err, 0, "%s", sv.reason);
    cr_assert_eq(sv.err, 0, "%s (%s)", dx_strerror(sv.err), sv.reason);
    cr_assert(sv.eof, "s_client's close_notify is the end of input");
    cr_assert_eq(sv.got, 15);
    cr_assert(file_has(out, "ALPN protocol: http/1.1"), "no ALPN agreed");
    cr_assert(file_has(out, "Verify return code: 0 (ok)"));
    side_close(&sv);
    dx_loop_free(loop);
    close(fd);
    dx_tls_ctx_free(sctx);
}

static void alpn_then_send(dx_tls *t, int error, void *data)
{
    struct side *s = data;
    char alpn[32];
    if (error == 0)
        cr_assert_str_eq(dx_tls_alpn(t, alpn, sizeof alpn), "http/1.1");
    on_handshake(t, error, data);
    (void)s;
}

T(client_against_openssl_s_server)
{
    int port = h_free_port();
    char portstr[16], out[128];
    snprintf(portstr, sizeof portstr, "%d", port);
    snprintf(out, sizeof out, "%s/s_server.out", dir);
    char *argv[] = {"openssl", "s_server", "-accept", portstr, "-cert", cert, "-key", key,
                    "-alpn", "http/1.1", "-naccept", "1", NULL};
    int in; /* held open: s_server ends the connection at the end of its stdin */
    pid_t pid = spawn(argv, &in, out);
    wait_for_text(out, "ACCEPT");
    dx_tls_opts o = {0};
    o.ca_file = cert;
    o.alpn = "http/1.1";
    o.allow_truncation = 1; /* s_server may close without answering close_notify */
    dx_tls_ctx *cctx = ctx_or_die(&o);
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    dx_addr a = h_addr4(port);
    cr_assert_eq(connect(fd, (struct sockaddr *)&a.ss, a.len), 0);
    h_set_nonblock(fd, 1);
    dx_loop *loop = h_loop();
    struct side c = {0};
    c.send = "ping from libduplex\n";
    c.send_len = strlen(c.send);
    int err = 0;
    c.loop = loop;
    c.fd = fd;
    c.tls = dx_tls_new(loop, cctx, fd, "localhost", &err);
    cr_assert_eq(dx_tls_handshake(c.tls, 5000, alpn_then_send, &c), 0);
    run_until(loop, &c.closed, NULL, 10000, "the client did not end");
    cr_assert_eq(c.hs_err, 0, "%s", c.reason);
    /* s_server ends with a bare close (the end, allowed) or a reset */
    cr_assert(c.err == 0 || c.err == -ECONNRESET, "%s (%s)", dx_strerror(c.err), c.reason);
    wait_for_text(out, "ping from libduplex");
    close(in);
    kill(pid, SIGTERM);
    waitpid(pid, NULL, 0);
    side_close(&c);
    dx_loop_free(loop);
    close(fd);
    dx_tls_ctx_free(cctx);
}
