/* tls.c: TLS (OpenSSL) for streams and pumps: contexts made from options,
 * one dx_tls per connection with its handshake run in the loop, and the
 * read/write/shutdown calls stream.c and pump.c make instead of the
 * socket's when a dx_tls is attached (see duplex.h).
 *
 * Non-blocking OpenSSL: SSL_read may need the socket writable and SSL_write
 * readable (WANT_WRITE/WANT_READ); each direction remembers the event it
 * waits for (rd_ev, wr_ev), and the owner watches that instead of
 * DX_READ/DX_WRITE. OpenSSL also keeps bytes the poll cannot see (read
 * ahead, the rest of a record): when the owner wants to read and OpenSSL
 * holds some, a deferred call (kick) runs the owner's callback from the
 * loop. A write that must be retried is retried with the same bytes: the
 * owners' buffers only grow behind the unwritten ones, and the modes below
 * let the retry be longer and from a moved buffer. */
#define _GNU_SOURCE
#include "internal.h"
#include "os.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifndef DX_HAVE_TLS

int dx_tls_available(void) { return 0; }

static void *no_tls(int *err)
{
    if (err)
        *err = -ENOSYS;
    return NULL;
}

dx_tls_ctx *dx_tls_ctx_new(const dx_tls_opts *opts, int *err, char *why, size_t whylen)
{
    (void)opts;
    if (why && whylen)
        snprintf(why, whylen, "this libduplex was built without TLS");
    return no_tls(err);
}

dx_tls_ctx *dx_tls_ctx_wrap(void *ssl_ctx, int server, int allow_truncation, int *err)
{
    (void)ssl_ctx, (void)server, (void)allow_truncation;
    return no_tls(err);
}

void *dx_tls_ctx_native(dx_tls_ctx *c) { (void)c; return NULL; }
void dx_tls_ctx_free(dx_tls_ctx *c) { (void)c; }

dx_tls *dx_tls_new(dx_loop *loop, dx_tls_ctx *ctx, int fd, const char *peer_name, int *err)
{
    (void)loop, (void)ctx, (void)fd, (void)peer_name;
    return no_tls(err);
}

void dx_tls_free(dx_tls *t) { (void)t; }

int dx_tls_handshake(dx_tls *t, uint64_t timeout_ms, dx_tls_cb cb, void *data)
{
    (void)t, (void)timeout_ms, (void)cb, (void)data;
    return -ENOSYS;
}

void dx_tls_handshake_cancel(dx_tls *t) { (void)t; }
const char *dx_tls_reason(const dx_tls *t) { (void)t; return ""; }
const char *dx_tls_version(const dx_tls *t) { (void)t; return ""; }
const char *dx_tls_cipher(const dx_tls *t) { (void)t; return ""; }

char *dx_tls_alpn(const dx_tls *t, char *buf, size_t buflen)
{
    (void)t;
    if (buflen)
        buf[0] = '\0';
    return buf;
}

int dx_tls_truncated(const dx_tls *t) { (void)t; return 0; }
void *dx_tls_native(dx_tls *t) { (void)t; return NULL; }

ssize_t dx__tls_read(dx_tls *t, void *buf, size_t n) { (void)t, (void)buf, (void)n; return -ENOSYS; }
ssize_t dx__tls_write(dx_tls *t, const void *buf, size_t n) { (void)t, (void)buf, (void)n; return -ENOSYS; }
int dx__tls_shutdown(dx_tls *t) { (void)t; return -ENOSYS; }
int dx__tls_event(const dx_tls *t, int dir) { (void)t; return dir; }
void dx__tls_attach(dx_tls *t, dx_io *owner) { (void)t, (void)owner; }
void dx__tls_kick(dx_tls *t, int want_read) { (void)t, (void)want_read; }

#else

#include <arpa/inet.h>
#include <limits.h>
#include <sys/socket.h>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

struct dx_tls_ctx {
    SSL_CTX *ctx;
    int refs;                   /* the program's, and one per dx_tls */
    int server;
    int allow_truncation;
    int wrapped;                /* the program's SSL_CTX: its policy rules */
    unsigned char alpn[256];    /* a server's choices, wire format */
    unsigned alpn_len;
};

struct dx_tls {
    dx_tls_ctx *ctx;
    SSL *ssl;
    dx_loop *loop;
    int fd;
    int verifies;               /* a client that checks the server's certificate */
    char name[256];             /* the name the server's certificate must carry */
    /* handshake */
    dx_io hio;
    dx_timer htimer;
    dx__later hlater;
    dx_tls_cb hcb;
    void *hdata;
    uint64_t htimeout;
    int hresult;                /* found inside dx_tls_handshake(), reported from the loop */
    int handshaking;
    /* reading and writing for an owner (a stream or an endpoint) */
    dx_io *owner;
    dx__later kick;
    int rd_ev, wr_ev;           /* the event SSL_read / SSL_write waits for */
    int rd_blocked;             /* the last SSL_read wanted the socket */
    int rd_end;                 /* sticky end of reading: 1 close_notify, < 0 an error */
    int truncated;
    int sent_close;
    /* the first certificate refused, for the reason */
    int vfail;
    X509 *vcert;
    char reason[512];
};

static int tls_index = -1; /* SSL ex_data: its dx_tls */

int dx_tls_available(void) { return 1; }

static void set_reason(dx_tls *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void set_reason(dx_tls *t, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(t->reason, sizeof t->reason, fmt, ap);
    va_end(ap);
}

/* OpenSSL's text for the last error of this thread, or fallback. */
static const char *ssl_text(const char *fallback)
{
    unsigned long e = ERR_peek_last_error();
    const char *r = e ? ERR_reason_error_string(e) : NULL;
    return r ? r : fallback;
}

static void why_text(char *why, size_t whylen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void why_text(char *why, size_t whylen, const char *fmt, ...)
{
    if (!why || !whylen)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, whylen, fmt, ap);
    va_end(ap);
}

/* ---- contexts ------------------------------------------------------------ */

static int alpn_select(SSL *ssl, const unsigned char **out, unsigned char *outlen,
                       const unsigned char *in, unsigned int inlen, void *arg)
{
    (void)ssl;
    dx_tls_ctx *c = arg;
    unsigned char *chosen;
    if (SSL_select_next_proto(&chosen, outlen, c->alpn, c->alpn_len, in, inlen) ==
        OPENSSL_NPN_NEGOTIATED) {
        *out = chosen;
        return SSL_TLSEXT_ERR_OK;
    }
    return SSL_TLSEXT_ERR_NOACK; /* nothing in common: go on without ALPN */
}

/* "h2,http/1.1" -> length-prefixed wire format. Returns its length or -1. */
static int alpn_wire(const char *text, unsigned char *out, size_t cap)
{
    size_t len = 0;
    for (const char *p = text;;) {
        size_t n = strcspn(p, ",");
        if (n == 0 || n > 255 || len + 1 + n > cap)
            return -1;
        out[len++] = (unsigned char)n;
        memcpy(out + len, p, n);
        len += n;
        if (!p[n])
            return (int)len;
        p += n + 1;
    }
}

static dx_tls_ctx *ctx_alloc(SSL_CTX *ssl_ctx, int server, int allow_truncation)
{
    dx_tls_ctx *c = calloc(1, sizeof *c);
    if (!c)
        return NULL;
    if (tls_index < 0)
        tls_index = SSL_get_ex_new_index(0, NULL, NULL, NULL, NULL);
    c->ctx = ssl_ctx;
    c->refs = 1;
    c->server = server;
    c->allow_truncation = allow_truncation;
    return c;
}

dx_tls_ctx *dx_tls_ctx_new(const dx_tls_opts *o, int *err, char *why, size_t whylen)
{
    int code = -EINVAL;
    dx_tls_ctx *c = NULL;
    SSL_CTX *sc = NULL;
    if (o->server && !o->cert_file) {
        why_text(why, whylen, "a TLS server needs a certificate (cert_file)");
        goto fail;
    }
    if (o->verify_client && !o->ca_file) {
        why_text(why, whylen, "verify_client needs the CAs to trust (ca_file)");
        goto fail;
    }
    ERR_clear_error();
    code = DX_ETLS;
    sc = SSL_CTX_new(o->server ? TLS_server_method() : TLS_client_method());
    if (!sc || SSL_CTX_set_min_proto_version(sc, TLS1_2_VERSION) != 1) {
        why_text(why, whylen, "cannot set up OpenSSL: %s", ssl_text("unknown error"));
        goto fail;
    }
    SSL_CTX_set_mode(sc, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    SSL_CTX_set_read_ahead(sc, 1); /* fewer reads: many records a system call */
    if (o->ciphers && SSL_CTX_set_cipher_list(sc, o->ciphers) != 1) {
        why_text(why, whylen, "ciphers '%s': %s", o->ciphers, ssl_text("no cipher match"));
        goto fail;
    }
    if (o->cert_file) {
        const char *key = o->key_file ? o->key_file : o->cert_file;
        if (SSL_CTX_use_certificate_chain_file(sc, o->cert_file) != 1) {
            why_text(why, whylen, "%s: not a PEM certificate: %s", o->cert_file,
                     ssl_text("unreadable"));
            goto fail;
        }
        if (SSL_CTX_use_PrivateKey_file(sc, key, SSL_FILETYPE_PEM) != 1 ||
            SSL_CTX_check_private_key(sc) != 1) {
            why_text(why, whylen, "%s: no private key for the certificate of %s: %s", key,
                     o->cert_file, ssl_text("unreadable"));
            goto fail;
        }
    }
    if (o->ca_file && SSL_CTX_load_verify_locations(sc, o->ca_file, NULL) != 1) {
        why_text(why, whylen, "%s: no PEM certificate in it: %s", o->ca_file, ssl_text("unreadable"));
        goto fail;
    }
    if (o->server) {
        /* resumption needs an id context once client certificates are verified */
        static const unsigned char sid[] = "libduplex";
        SSL_CTX_set_session_id_context(sc, sid, sizeof sid - 1);
        if (o->verify_client) {
            STACK_OF(X509_NAME) *names = SSL_load_client_CA_file(o->ca_file);
            if (names)
                SSL_CTX_set_client_CA_list(sc, names);
            SSL_CTX_set_verify(sc, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, NULL);
        }
    } else if (!o->no_verify) {
        if (!o->ca_file && SSL_CTX_set_default_verify_paths(sc) != 1) {
            why_text(why, whylen, "cannot load the system CA store: %s", ssl_text("unknown error"));
            goto fail;
        }
        SSL_CTX_set_verify(sc, SSL_VERIFY_PEER, NULL);
    }
    c = ctx_alloc(sc, o->server, o->allow_truncation);
    if (!c) {
        code = -ENOMEM;
        why_text(why, whylen, "%s", strerror(ENOMEM));
        goto fail;
    }
    if (o->alpn) {
        int n = alpn_wire(o->alpn, c->alpn, sizeof c->alpn);
        if (n < 0) {
            code = -EINVAL;
            why_text(why, whylen, "alpn '%s': expected PROTO[,PROTO], each 1-255 bytes", o->alpn);
            goto fail;
        }
        c->alpn_len = (unsigned)n;
        if (o->server)
            SSL_CTX_set_alpn_select_cb(sc, alpn_select, c);
        else if (SSL_CTX_set_alpn_protos(sc, c->alpn, c->alpn_len) != 0) {
            code = -ENOMEM;
            goto fail;
        }
    }
    return c;
fail:
    free(c);
    SSL_CTX_free(sc);
    if (err)
        *err = code;
    return NULL;
}

dx_tls_ctx *dx_tls_ctx_wrap(void *ssl_ctx, int server, int allow_truncation, int *err)
{
    dx_tls_ctx *c = ctx_alloc(ssl_ctx, server, allow_truncation);
    if (!c || !SSL_CTX_up_ref(ssl_ctx)) {
        free(c);
        if (err)
            *err = -ENOMEM;
        return NULL;
    }
    c->wrapped = 1;
    return c;
}

void *dx_tls_ctx_native(dx_tls_ctx *c) { return c ? c->ctx : NULL; }

void dx_tls_ctx_free(dx_tls_ctx *c)
{
    if (!c || --c->refs > 0)
        return;
    SSL_CTX_free(c->ctx);
    free(c);
}

/* ---- connections ----------------------------------------------------------- */

/* Keeps the first certificate refused (for the names in the reason); the
 * verdict stays OpenSSL's. */
static int verify_cb(int ok, X509_STORE_CTX *sc)
{
    SSL *ssl = X509_STORE_CTX_get_ex_data(sc, SSL_get_ex_data_X509_STORE_CTX_idx());
    dx_tls *t = ssl ? SSL_get_ex_data(ssl, tls_index) : NULL;
    if (!ok && t && !t->vfail) {
        t->vfail = X509_STORE_CTX_get_error(sc);
        X509 *leaf = X509_STORE_CTX_get0_cert(sc);
        if (leaf && X509_up_ref(leaf))
            t->vcert = leaf;
    }
    return ok;
}

static void kick_cb(dx_loop *loop, dx__later *l);
static void hs_io(dx_loop *loop, dx_io *io, int events);
static void hs_timeout(dx_loop *loop, dx_timer *tm);
static void hs_later(dx_loop *loop, dx__later *l);

dx_tls *dx_tls_new(dx_loop *loop, dx_tls_ctx *ctx, int fd, const char *peer_name, int *err)
{
    int code = -ENOMEM;
    dx_tls *t = calloc(1, sizeof *t);
    if (!t)
        goto fail;
    t->loop = loop;
    t->fd = fd;
    t->rd_ev = DX_READ;
    t->wr_ev = DX_WRITE;
    ERR_clear_error();
    t->ssl = SSL_new(ctx->ctx);
    if (!t->ssl || SSL_set_fd(t->ssl, fd) != 1 || !SSL_set_ex_data(t->ssl, tls_index, t))
        goto fail;
    SSL_set_mode(t->ssl, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    if (!SSL_CTX_get_verify_callback(ctx->ctx))
        SSL_set_verify(t->ssl, SSL_get_verify_mode(t->ssl), verify_cb);
    if (ctx->server) {
        SSL_set_accept_state(t->ssl);
    } else {
        SSL_set_connect_state(t->ssl);
        t->verifies = (SSL_get_verify_mode(t->ssl) & SSL_VERIFY_PEER) != 0;
        code = -EINVAL;
        if (!peer_name && t->verifies && !ctx->wrapped)
            goto fail; /* fail closed: no name, any trusted certificate would do */
        if (peer_name) {
            size_t n = strlen(peer_name);
            if (peer_name[0] == '[' && n >= 2 && peer_name[n - 1] == ']')
                peer_name++, n -= 2;
            if (n == 0 || n >= sizeof t->name)
                goto fail;
            memcpy(t->name, peer_name, n);
            unsigned char bin[16];
            int is_ip = inet_pton(AF_INET, t->name, bin) == 1 || inet_pton(AF_INET6, t->name, bin) == 1;
            if (!is_ip && SSL_set_tlsext_host_name(t->ssl, t->name) != 1)
                goto fail;
            if (t->verifies) {
                SSL_set_hostflags(t->ssl, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
                if (is_ip ? X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(t->ssl), t->name) != 1
                          : SSL_set1_host(t->ssl, t->name) != 1)
                    goto fail;
            }
        }
    }
    t->ctx = ctx;
    ctx->refs++;
    dx_io_init(&t->hio, fd, hs_io, t);
    dx_timer_init(&t->htimer, hs_timeout, t);
    dx__later_init(&t->hlater, hs_later, t);
    dx__later_init(&t->kick, kick_cb, t);
    return t;
fail:
    if (t) {
        SSL_free(t->ssl);
        free(t);
    }
    if (err)
        *err = code;
    return NULL;
}

void dx_tls_free(dx_tls *t)
{
    if (!t)
        return;
    dx_tls_handshake_cancel(t);
    dx__later_cancel(t->loop, &t->kick);
    X509_free(t->vcert);
    SSL_free(t->ssl);
    dx_tls_ctx_free(t->ctx);
    free(t);
}

/* The names a certificate is for: DNS and IP subjectAltNames, else its CN. */
static void cert_names(X509 *x, char *buf, size_t len)
{
    size_t at = 0;
    buf[0] = '\0';
    GENERAL_NAMES *gens = X509_get_ext_d2i(x, NID_subject_alt_name, NULL, NULL);
    for (int i = 0; gens && i < sk_GENERAL_NAME_num(gens) && at < len; i++) {
        const GENERAL_NAME *g = sk_GENERAL_NAME_value(gens, i);
        char one[300] = "";
        if (g->type == GEN_DNS) {
            int n = ASN1_STRING_length(g->d.dNSName);
            snprintf(one, sizeof one, "%.*s", n > 255 ? 255 : n,
                     (const char *)ASN1_STRING_get0_data(g->d.dNSName));
        } else if (g->type == GEN_IPADD) {
            int n = ASN1_STRING_length(g->d.iPAddress);
            if (n == 4 || n == 16)
                inet_ntop(n == 4 ? AF_INET : AF_INET6, ASN1_STRING_get0_data(g->d.iPAddress), one,
                          sizeof one);
        }
        if (one[0])
            at += (size_t)snprintf(buf + at, len - at, "%s%s", at ? ", " : "", one);
    }
    GENERAL_NAMES_free(gens);
    if (!buf[0] && X509_NAME_get_text_by_NID(X509_get_subject_name(x), NID_commonName, buf,
                                             (int)len) < 0)
        snprintf(buf, len, "no name");
}

/* The reason of a refused certificate (ours, or the peer's alert). */
static int verify_failed(dx_tls *t, int reason)
{
    int v = t->vfail ? t->vfail : (int)SSL_get_verify_result(t->ssl);
    char names[300] = "";
    if (t->vcert)
        cert_names(t->vcert, names, sizeof names);
    if (reason == SSL_R_PEER_DID_NOT_RETURN_A_CERTIFICATE)
        set_reason(t, "certificate verify failed: the client gave no certificate");
    else if (v == X509_V_ERR_HOSTNAME_MISMATCH)
        set_reason(t, "certificate verify failed: hostname mismatch: certificate is for %s, not %s",
                   names, t->name);
    else if (v == X509_V_ERR_IP_ADDRESS_MISMATCH)
        set_reason(t, "certificate verify failed: IP address mismatch: certificate is for %s, not %s",
                   names, t->name);
    else
        set_reason(t, "certificate verify failed: %s", X509_verify_cert_error_string(v));
    return DX_ETLSVERIFY;
}

/* After an SSL call returned ret <= 0 (errno was saved): -EAGAIN with *want
 * the event it waits for, 0 for the peer's close_notify, DX_ETLSTRUNC for a
 * bare close, or the failure, its reason kept. */
static int classify(dx_tls *t, int ret, int saved, int *want)
{
    int e = SSL_get_error(t->ssl, ret);
    if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
        *want = e == SSL_ERROR_WANT_READ ? DX_READ : DX_WRITE;
        return -EAGAIN;
    }
    if (e == SSL_ERROR_ZERO_RETURN)
        return 0;
    unsigned long err = ERR_peek_last_error();
    int reason = ERR_GET_REASON(err);
    if (e == SSL_ERROR_SYSCALL && !err && saved) {
        set_reason(t, "%s", strerror(saved));
        return -saved;
    }
    if ((e == SSL_ERROR_SYSCALL && !err) || reason == SSL_R_UNEXPECTED_EOF_WHILE_READING) {
        set_reason(t, "the peer closed the connection without close_notify");
        return DX_ETLSTRUNC;
    }
    if (reason == SSL_R_CERTIFICATE_VERIFY_FAILED || reason == SSL_R_PEER_DID_NOT_RETURN_A_CERTIFICATE)
        return verify_failed(t, reason);
    set_reason(t, "%s", ssl_text("protocol error"));
    return DX_ETLS;
}

/* ---- the handshake, in the loop --------------------------------------------- */

static void hs_stop(dx_tls *t)
{
    dx_io_stop(t->loop, &t->hio);
    dx_timer_stop(t->loop, &t->htimer);
    dx__later_cancel(t->loop, &t->hlater);
    t->handshaking = 0;
}

/* One step: 1 done, 0 waiting (watched), or a failure. */
static int hs_step(dx_tls *t)
{
    ERR_clear_error();
    errno = 0;
    int r = SSL_do_handshake(t->ssl);
    if (r == 1)
        return 1;
    int saved = errno, want = 0;
    int rc = classify(t, r, saved, &want);
    if (rc == -EAGAIN) {
        rc = dx_io_set(t->loop, &t->hio, want);
        if (rc == 0)
            return 0;
        set_reason(t, "event loop: %s", dx_strerror(rc));
    } else if (rc == 0 || rc == DX_ETLSTRUNC) {
        set_reason(t, "handshake failed: the peer closed the connection");
        rc = DX_ETLS;
    } else if (rc == DX_ETLS) {
        char text[sizeof t->reason];
        snprintf(text, sizeof text, "%s", t->reason);
        set_reason(t, "handshake failed: %s", text);
    }
    return rc;
}

static void hs_finish(dx_tls *t, int result)
{
    dx_tls_cb cb = t->hcb;
    hs_stop(t);
    cb(t, result, t->hdata); /* may free t */
}

static void hs_run(dx_tls *t)
{
    int rc = hs_step(t);
    if (rc != 0)
        hs_finish(t, rc > 0 ? 0 : rc);
}

static void hs_io(dx_loop *loop, dx_io *io, int events)
{
    (void)loop, (void)events;
    hs_run(io->data);
}

static void hs_later(dx_loop *loop, dx__later *l)
{
    (void)loop;
    hs_run(l->data);
}

static void hs_timeout(dx_loop *loop, dx_timer *tm)
{
    (void)loop;
    dx_tls *t = tm->data;
    set_reason(t, "handshake timed out after %.3g s", (double)t->htimeout / 1000.0);
    hs_finish(t, DX_ETIMEDOUT);
}

int dx_tls_handshake(dx_tls *t, uint64_t timeout_ms, dx_tls_cb cb, void *data)
{
    if (t->handshaking)
        return -EBUSY;
    t->hcb = cb;
    t->hdata = data;
    t->htimeout = timeout_ms;
    t->reason[0] = '\0';
    if (timeout_ms > 0) {
        int rc = dx_timer_start(t->loop, &t->htimer, timeout_ms, 0);
        if (rc < 0)
            return rc;
    }
    t->handshaking = 1;
    dx__later_queue(t->loop, &t->hlater); /* the first step runs from the loop */
    return 0;
}

void dx_tls_handshake_cancel(dx_tls *t)
{
    if (t && t->handshaking)
        hs_stop(t);
}

const char *dx_tls_reason(const dx_tls *t) { return t->reason; }
const char *dx_tls_version(const dx_tls *t) { return SSL_get_version(t->ssl); }

const char *dx_tls_cipher(const dx_tls *t)
{
    const char *c = SSL_get_cipher_name(t->ssl);
    return c ? c : "";
}

char *dx_tls_alpn(const dx_tls *t, char *buf, size_t buflen)
{
    const unsigned char *p = NULL;
    unsigned n = 0;
    SSL_get0_alpn_selected(t->ssl, &p, &n);
    if (buflen)
        snprintf(buf, buflen, "%.*s", (int)n, p ? (const char *)p : "");
    return buf;
}

int dx_tls_truncated(const dx_tls *t) { return t->truncated; }
void *dx_tls_native(dx_tls *t) { return t->ssl; }

/* ---- what streams and pumps call ------------------------------------------ */

static int clamp(size_t n) { return n > INT_MAX ? INT_MAX : (int)n; }

ssize_t dx__tls_read(dx_tls *t, void *buf, size_t n)
{
    size_t got = 0;
    while (got < n && !t->rd_end) {
        ERR_clear_error();
        errno = 0;
        int r = SSL_read(t->ssl, (char *)buf + got, clamp(n - got));
        if (r > 0) {
            got += (size_t)r;
            t->rd_ev = DX_READ;
            t->rd_blocked = 0;
            if (!SSL_pending(t->ssl) && !SSL_has_pending(t->ssl))
                break; /* OpenSSL holds nothing more: the poll says when */
            continue;
        }
        int saved = errno, want = DX_READ;
        int rc = classify(t, r, saved, &want);
        if (rc == -EAGAIN) {
            t->rd_ev = want;
            t->rd_blocked = 1;
            break;
        }
        if (rc == DX_ETLSTRUNC && t->ctx->allow_truncation) {
            t->truncated = 1;
            rc = 0;
        }
        t->rd_end = rc == 0 ? 1 : rc; /* kept: after the bytes read before it */
    }
    if (got > 0)
        return (ssize_t)got;
    if (t->rd_end)
        return t->rd_end > 0 ? 0 : t->rd_end;
    return -EAGAIN;
}

ssize_t dx__tls_write(dx_tls *t, const void *buf, size_t n)
{
    size_t done = 0;
    while (done < n) {
        ERR_clear_error();
        errno = 0;
        int r = SSL_write(t->ssl, (const char *)buf + done, clamp(n - done));
        if (r > 0) {
            done += (size_t)r;
            t->wr_ev = DX_WRITE;
            continue;
        }
        int saved = errno, want = DX_WRITE;
        int rc = classify(t, r, saved, &want);
        if (rc == -EAGAIN) {
            t->wr_ev = want;
            break;
        }
        if (done > 0)
            break; /* the failure comes back with the next write */
        /* the peer has gone (OpenSSL says "closed" after its close_notify) */
        return rc == 0 || rc == DX_ETLSTRUNC ? -EPIPE : rc;
    }
    return done > 0 ? (ssize_t)done : -EAGAIN;
}

int dx__tls_shutdown(dx_tls *t)
{
    /* after a bare close or a failure there is no record left to send */
    if (!t->sent_close && (t->truncated || t->rd_end < 0)) {
        t->sent_close = 1;
    } else if (!t->sent_close) {
        ERR_clear_error();
        errno = 0;
        int r = SSL_shutdown(t->ssl);
        if (r < 0) {
            int saved = errno, want = DX_WRITE;
            int rc = classify(t, r, saved, &want);
            if (rc == -EAGAIN) {
                t->wr_ev = want;
                return -EAGAIN;
            }
            /* the peer ended and went: nothing left to tell it */
            if (rc != 0 && rc != DX_ETLSTRUNC && rc != -EPIPE && rc != -ECONNRESET)
                return rc;
        }
        t->sent_close = 1;
        t->wr_ev = DX_WRITE;
    }
    if (dx__sock_shutdown(t->fd, SHUT_WR) < 0 && errno != ENOTCONN)
        return -errno;
    return 0;
}

int dx__tls_event(const dx_tls *t, int dir) { return dir == DX_READ ? t->rd_ev : t->wr_ev; }

void dx__tls_attach(dx_tls *t, dx_io *owner)
{
    if (t->owner && t->owner != owner)
        dx__later_cancel(t->loop, &t->kick);
    t->owner = owner;
}

/* OpenSSL holds bytes (or the end) that the socket's poll will not show. */
static int holds_input(const dx_tls *t)
{
    return t->rd_end || (!t->rd_blocked && (SSL_pending(t->ssl) > 0 || SSL_has_pending(t->ssl)));
}

void dx__tls_kick(dx_tls *t, int want_read)
{
    if (want_read && t->owner && holds_input(t))
        dx__later_queue(t->loop, &t->kick);
    else
        dx__later_cancel(t->loop, &t->kick);
}

static void kick_cb(dx_loop *loop, dx__later *l)
{
    dx_tls *t = l->data;
    if (t->owner)
        t->owner->cb(loop, t->owner, t->rd_ev);
}

#endif /* DX_HAVE_TLS */
