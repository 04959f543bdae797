/* tls.c: --ssl/--tls for `duplex connect`, `duplex listen` and relay
 * (OpenSSL): certificates and the verification policy (pins, ephemeral
 * certificate, names, messages) and the handshakes; the bytes then go
 * through libduplex's TLS (dx_stream_set_tls(), dx_endpoint_set_tls()) over
 * our SSL_CTX, wrapped with dx_tls_ctx_wrap(), so the policy stays here.
 *
 * One session (connect, one-client listen) and a --model thread/fork
 * client: the handshake runs here on the non-blocking socket with poll(2)
 * and the -w deadline (else 10 s). Servers with many clients and relay's
 * sides (cli_tls_server_*): each handshake runs in the loop, then the owner
 * gets the socket and its dx_tls. Half-close is close_notify (the pump's
 * DX_PUMP_SHUTDOWN, dx_stream_shutdown()), the peer's close_notify is the
 * end of input; a peer that closes without close_notify ends the input
 * too, with a warning ("the data may be truncated"; ncat ends so), since
 * an attacker on the path can cut a TLS stream that way. */
#define _GNU_SOURCE
#include "cli.h"

#include <errno.h>
#include <unistd.h>

#ifndef DX_HAVE_TLS
#include "os.h"

/* Why there is no TLS, for the message. */
#ifdef _WIN32
#define NO_TLS_WHY "the Windows build has no TLS: OpenSSL for mingw-w64 is not packaged"
#else
#define NO_TLS_WHY "install libssl-dev, then rebuild"
#endif

int cli_tls_open(const struct options *o)
{
    if (!o->tls && !o->tls_target)
        return 0;
    cli_error("--ssl: this duplex was built without TLS (" NO_TLS_WHY ")");
    return EXIT_USAGE;
}

int cli_tls_session(dx_loop *loop, const struct options *o, int fd, const char *peer_text)
{
    (void)loop, (void)o, (void)peer_text;
    dx__fd_close(fd);
    return EXIT_USAGE;
}

void cli_tls_close(void) {}

int cli_tls_failed(const struct options *o, dx_tls *t, const char *peer, int error, int in_read,
                   uint64_t received)
{
    (void)o, (void)t, (void)peer, (void)error, (void)in_read, (void)received;
    return EXIT_IO;
}

void cli_tls_ended(const struct options *o, dx_tls *t, const char *peer, int one_of_many)
{
    (void)o, (void)t, (void)peer, (void)one_of_many;
}
void cli_tls_goodbye(dx_tls *t) { (void)t; }

struct cli_tls_server *cli_tls_server_new(dx_loop *loop, const struct options *o,
                                          cli_tls_ready_cb ready, void *data)
{
    (void)loop, (void)o, (void)ready, (void)data;
    return NULL;
}

void cli_tls_server_accept(struct cli_tls_server *ts, int fd, const dx_addr *peer,
                           const dx_addr *local, const char *name)
{
    (void)ts, (void)peer, (void)local, (void)name;
    dx__fd_close(fd);
}

unsigned cli_tls_server_live(const struct cli_tls_server *ts)
{
    (void)ts;
    return 0;
}

int cli_tls_server_full(struct cli_tls_server *ts, void (*room)(void *data), void *room_data)
{
    (void)ts, (void)room, (void)room_data;
    return 0;
}

void cli_tls_server_free(struct cli_tls_server *ts) { (void)ts; }

struct cli_tls_conn *cli_tls_server_connect(struct cli_tls_server *ts, int fd, const char *name,
                                            cli_tls_connected_cb connected, void *data)
{
    (void)ts, (void)name;
    dx__fd_close(fd);
    connected(data, -1, NULL);
    return NULL;
}

int cli_tls_accept_one(dx_loop *loop, const struct options *o, int fd, const char *name, dx_tls **out)
{
    (void)loop, (void)o, (void)fd, (void)name;
    *out = NULL;
    return -1;
}

void cli_tls_conn_cancel(struct cli_tls_conn *c) { (void)c; }

int cli_tls_bench_init(void)
{
    cli_error("bench --ssl: this duplex was built without TLS (" NO_TLS_WHY ")");
    return EXIT_USAGE;
}

struct cli_tls_sock *cli_tls_bench_new(int fd)
{
    (void)fd;
    return NULL;
}

int cli_tls_bench_handshake(struct cli_tls_sock *t)
{
    (void)t;
    return -1;
}

ssize_t cli_tls_bench_read(struct cli_tls_sock *t, void *buf, size_t n)
{
    (void)t, (void)buf, (void)n;
    return -EIO;
}

ssize_t cli_tls_bench_write(struct cli_tls_sock *t, const void *buf, size_t n)
{
    (void)t, (void)buf, (void)n;
    return -EIO;
}

void cli_tls_bench_free(struct cli_tls_sock *t) { (void)t; }

#else

#include <arpa/inet.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#define HANDSHAKE_DEFAULT_MS 10000

static SSL_CTX *ctx;          /* --ssl: this side's */
static dx_tls_ctx *lib_ctx;   /* the same for the library's TLS (a close without
                               * close_notify is the end: cli_tls_ended() warns) */
static SSL_CTX *target_ctx;   /* relay --ssl-target: the client side towards TARGET */
static dx_tls_ctx *lib_target_ctx; /* the same for the library's TLS */
static unsigned char alpn_wire[512];
static unsigned alpn_len;

/* The first verification failure of a handshake, kept per connection (a
 * server verifies many at once): the SSL's ex_data at vfail_index. */
struct vfail {
    int err;
    int depth;
    X509 *cert; /* the certificate at depth 0 (for the names it carries) */
};
static int vfail_index = -1;

/* Print why a connection failed: an error for a one-session command, a -v
 * line for one client of a server that goes on serving the others. */
static void say(const struct options *o, int one_of_many, const char *fmt, ...)
    CLI_PRINTF(3, 4);
static void say(const struct options *o, int one_of_many, const char *fmt, ...)
{
    char text[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text, sizeof text, fmt, ap);
    va_end(ap);
    if (one_of_many)
        cli_info(o, "%s", text);
    else
        cli_error("%s", text);
}

/* OpenSSL's reason for the last error on this thread, or fallback. */
static const char *ssl_reason(const char *fallback)
{
    unsigned long e = ERR_peek_last_error();
    const char *r = e ? ERR_reason_error_string(e) : NULL;
    return r ? r : fallback;
}

static int verify_cb(int ok, X509_STORE_CTX *sc)
{
    SSL *ssl = X509_STORE_CTX_get_ex_data(sc, SSL_get_ex_data_X509_STORE_CTX_idx());
    struct vfail *vf = ssl ? SSL_get_ex_data(ssl, vfail_index) : NULL;
    if (!ok && vf && !vf->err) {
        vf->err = X509_STORE_CTX_get_error(sc);
        vf->depth = X509_STORE_CTX_get_error_depth(sc);
        X509 *leaf = X509_STORE_CTX_get0_cert(sc);
        if (leaf && X509_up_ref(leaf))
            vf->cert = leaf;
    }
    return ok;
}

static int alpn_select(SSL *ssl, const unsigned char **out, unsigned char *outlen,
                       const unsigned char *in, unsigned int inlen, void *arg)
{
    (void)ssl, (void)arg;
    unsigned char *chosen;
    if (SSL_select_next_proto(&chosen, outlen, alpn_wire, alpn_len, in, inlen) ==
        OPENSSL_NPN_NEGOTIATED) {
        *out = chosen;
        return SSL_TLSEXT_ERR_OK;
    }
    return SSL_TLSEXT_ERR_NOACK; /* no protocol in common: go on without ALPN */
}

/* "h2,http/1.1" -> the wire format (length-prefixed). */
static int parse_alpn(const char *text)
{
    alpn_len = 0;
    const char *p = text;
    for (;;) {
        size_t n = strcspn(p, ",");
        if (n == 0 || n > 255 || alpn_len + 1 + n > sizeof alpn_wire) {
            cli_error("invalid --ssl-alpn '%s': expected PROTO[,PROTO], each 1-255 bytes", text);
            return -1;
        }
        alpn_wire[alpn_len++] = (unsigned char)n;
        memcpy(alpn_wire + alpn_len, p, n);
        alpn_len += (unsigned)n;
        if (!p[n])
            return 0;
        p += n + 1;
    }
}

/* A file an option names must be readable: say which and why not. */
static int readable(const char *flag, const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f) {
        cli_error("%s %s: %s", flag, path, strerror(errno));
        return -1;
    }
    fclose(f);
    return 0;
}

static void fingerprint(X509 *x, char *out, size_t len)
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned n = 0;
    out[0] = '\0';
    if (!X509_digest(x, EVP_sha256(), md, &n))
        return;
    size_t at = 0;
    for (unsigned i = 0; i < n && at + 4 <= len; i++)
        at += (size_t)snprintf(out + at, len - at, i ? ":%02X" : "%02X", md[i]);
}

/* The SHA-256 of the certificate's DER SubjectPublicKeyInfo (what curl's
 * --pinnedpubkey sha256// pins: it survives a renewal with the same key). */
static int spki_sha256(X509 *x, unsigned char md[32])
{
    unsigned char *der = NULL;
    unsigned n = 0;
    int len = i2d_X509_PUBKEY(X509_get_X509_PUBKEY(x), &der);
    int ok = len > 0 && EVP_Digest(der, (size_t)len, md, &n, EVP_sha256(), NULL) && n == 32;
    OPENSSL_free(der);
    return ok ? 0 : -1;
}

/* "sha256//BASE64" of the certificate's public key, as --ssl-pin takes it. */
static void spki_text(X509 *x, char *out, size_t len)
{
    unsigned char md[32], b64[48];
    out[0] = '\0';
    if (spki_sha256(x, md) == 0 && EVP_EncodeBlock(b64, md, 32) == 44)
        snprintf(out, len, "sha256//%s", (const char *)b64);
}

/* --ssl-pin: the certificates a client trusts, instead of CAs and names:
 * a public key (sha256//BASE64) or a certificate (its SHA-256 fingerprint,
 * hex, colons allowed), several separated by ';'. */
#define MAX_PINS 16
static struct pin {
    int spki;                /* 1: of the public key, 0: of the certificate */
    unsigned char md[32];
} pins[MAX_PINS];
static int npins;

static int hexval(int ch)
{
    return ch >= '0' && ch <= '9' ? ch - '0' : ch >= 'a' && ch <= 'f' ? ch - 'a' + 10
           : ch >= 'A' && ch <= 'F' ? ch - 'A' + 10 : -1;
}

static int parse_one_pin(const char *p, size_t n, struct pin *pin)
{
    if (n > 8 && strncmp(p, "sha256//", 8) == 0) {
        unsigned char in[45], out[48], again[48];
        if (n - 8 != 44 || p[n - 1] != '=' || p[n - 2] == '=')
            return -1;
        memcpy(in, p + 8, 44);
        in[44] = '\0';
        /* decodes 33 bytes (the padding counts); canonical if it encodes back */
        if (EVP_DecodeBlock(out, in, 44) != 33 || EVP_EncodeBlock(again, out, 32) != 44 ||
            memcmp(again, in, 44) != 0)
            return -1;
        memcpy(pin->md, out, 32);
        pin->spki = 1;
        return 0;
    }
    size_t digits = 0;
    for (size_t i = 0; i < n; i++) {
        if (p[i] == ':' && digits % 2 == 0 && digits > 0 && i + 1 < n && p[i + 1] != ':')
            continue; /* between two bytes */
        int v = hexval((unsigned char)p[i]);
        if (v < 0 || digits >= 64)
            return -1;
        if (digits % 2 == 0)
            pin->md[digits / 2] = (unsigned char)(v << 4);
        else
            pin->md[digits / 2] |= (unsigned char)v;
        digits++;
    }
    pin->spki = 0;
    return digits == 64 ? 0 : -1;
}

static int parse_pins(const char *text)
{
    npins = 0;
    for (const char *p = text;;) {
        size_t n = strcspn(p, ";");
        if (npins == MAX_PINS || parse_one_pin(p, n, &pins[npins]) < 0) {
            cli_error("invalid --ssl-pin '%s': expected sha256//BASE64 (the SHA-256 of the "
                      "server's public key, as curl's --pinnedpubkey) or the SHA-256 fingerprint "
                      "of its certificate (64 hex digits, colons allowed); at most %d, "
                      "separated by ';'", text, MAX_PINS);
            return -1;
        }
        npins++;
        if (!p[n])
            return 0;
        p += n + 1;
    }
}

static int pin_matches(X509 *x)
{
    unsigned char cert_md[EVP_MAX_MD_SIZE], key_md[32];
    unsigned n = 0;
    int have_cert = X509_digest(x, EVP_sha256(), cert_md, &n) && n == 32;
    int have_key = spki_sha256(x, key_md) == 0;
    for (int i = 0; i < npins; i++) {
        if (pins[i].spki ? have_key && memcmp(pins[i].md, key_md, 32) == 0
                         : have_cert && memcmp(pins[i].md, cert_md, 32) == 0)
            return 1;
    }
    return 0;
}

/* With --ssl-pin, the whole check of the server's certificate (instead of
 * X509_verify_cert: no CA, no name): its leaf must be one pinned. */
static int pin_verify(X509_STORE_CTX *sc, void *arg)
{
    (void)arg;
    X509 *leaf = X509_STORE_CTX_get0_cert(sc);
    if (leaf && pin_matches(leaf))
        return 1;
    SSL *ssl = X509_STORE_CTX_get_ex_data(sc, SSL_get_ex_data_X509_STORE_CTX_idx());
    struct vfail *vf = ssl ? SSL_get_ex_data(ssl, vfail_index) : NULL;
    X509_STORE_CTX_set_error(sc, X509_V_ERR_APPLICATION_VERIFICATION);
    if (vf && !vf->err) {
        vf->err = X509_V_ERR_APPLICATION_VERIFICATION;
        vf->depth = 0;
        if (leaf && X509_up_ref(leaf))
            vf->cert = leaf;
    }
    return 0;
}

/* listen --ssl without --ssl-cert: an EC P-256 key and a self-signed
 * certificate for CN=duplex, valid one day, in memory (like ncat). */
static int ephemeral_cert(const struct options *o, SSL_CTX *c)
{
    EVP_PKEY *key = EVP_EC_gen("P-256");
    X509 *x = X509_new();
    BIGNUM *bn = BN_new();
    int ok = key && x && bn && X509_set_version(x, 2) && BN_rand(bn, 64, BN_RAND_TOP_ANY, BN_RAND_BOTTOM_ANY) &&
             BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(x)) &&
             X509_gmtime_adj(X509_getm_notBefore(x), -60) &&
             X509_gmtime_adj(X509_getm_notAfter(x), 86400) && X509_set_pubkey(x, key) &&
             X509_NAME_add_entry_by_txt(X509_get_subject_name(x), "CN", MBSTRING_ASC,
                                        (const unsigned char *)"duplex", -1, -1, 0) &&
             X509_set_issuer_name(x, X509_get_subject_name(x)) && X509_sign(x, key, EVP_sha256()) &&
             SSL_CTX_use_certificate(c, x) == 1 && SSL_CTX_use_PrivateKey(c, key) == 1;
    if (ok) {
        char fp[200];
        fingerprint(x, fp, sizeof fp);
        cli_info(o, "tls: ephemeral self-signed certificate (CN=duplex, EC P-256, valid 1 day), "
                 "SHA-256 fingerprint %s", fp);
    } else {
        cli_error("tls: cannot make an ephemeral certificate: %s", ssl_reason("unknown error"));
    }
    BN_free(bn);
    X509_free(x);
    EVP_PKEY_free(key);
    return ok ? 0 : -1;
}

/* A context for one side: the server's (certificate or ephemeral one,
 * client certificates with --ssl-verify, ALPN selection) or a client's
 * (verification against the system store or --ssl-trustfile, a client
 * certificate when with_cert, ALPN offer). NULL and *code after printing. */
static SSL_CTX *new_ctx(const struct options *o, int server, int with_cert, int *code)
{
    SSL_CTX *c = SSL_CTX_new(server ? TLS_server_method() : TLS_client_method());
    *code = EXIT_USAGE;
    if (!c) {
        cli_error("tls: %s", ssl_reason("cannot set up OpenSSL"));
        *code = EXIT_IO;
        return NULL;
    }
    if (SSL_CTX_set_min_proto_version(c, TLS1_2_VERSION) != 1) {
        cli_error("tls: cannot require TLS 1.2 or later: %s", ssl_reason("unknown error"));
        *code = EXIT_IO;
        goto fail;
    }
    SSL_CTX_set_mode(c, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    SSL_CTX_set_read_ahead(c, 1);
    /* --ssl-ciphers (as ncat): OpenSSL's cipher list, which rules TLS 1.2;
     * TLS 1.3's suites are a list of their own in OpenSSL, left at its
     * defaults (all AEAD), as ncat leaves them */
    if (o->tls_ciphers && SSL_CTX_set_cipher_list(c, o->tls_ciphers) != 1) {
        cli_error("--ssl-ciphers '%s': %s (OpenSSL's syntax: see openssl ciphers -v '%s')",
                  o->tls_ciphers, ssl_reason("no cipher match"), o->tls_ciphers);
        goto fail;
    }
    if (with_cert && o->tls_cert) {
        if (SSL_CTX_use_certificate_chain_file(c, o->tls_cert) != 1) {
            cli_error("--ssl-cert %s: not a PEM certificate: %s", o->tls_cert,
                      ssl_reason("unreadable"));
            goto fail;
        }
        if (SSL_CTX_use_PrivateKey_file(c, o->tls_key, SSL_FILETYPE_PEM) != 1) {
            if (ERR_GET_REASON(ERR_peek_last_error()) == X509_R_KEY_VALUES_MISMATCH)
                cli_error("--ssl-key %s: does not match the certificate in %s", o->tls_key,
                          o->tls_cert);
            else
                cli_error("--ssl-key %s: not a PEM private key: %s", o->tls_key,
                          ssl_reason("unreadable"));
            goto fail;
        }
        if (SSL_CTX_check_private_key(c) != 1) {
            cli_error("--ssl-key %s: does not match the certificate in %s", o->tls_key,
                      o->tls_cert);
            goto fail;
        }
    } else if (server) {
        if (ephemeral_cert(o, c) < 0) {
            *code = EXIT_IO;
            goto fail;
        }
    }
    if (o->tls_trustfile && SSL_CTX_load_verify_locations(c, o->tls_trustfile, NULL) != 1) {
        cli_error("--ssl-trustfile %s: no PEM certificate in it: %s", o->tls_trustfile,
                  ssl_reason("unreadable"));
        goto fail;
    }
    if (server) {
        /* resumed sessions must come from this server's context: without an
         * id context OpenSSL refuses every resumption once client
         * certificates are verified ("session id context uninitialized") */
        static const unsigned char sid_ctx[] = "duplex";
        if (SSL_CTX_set_session_id_context(c, sid_ctx, sizeof sid_ctx - 1) != 1) {
            cli_error("tls: %s", ssl_reason("cannot set the session id context"));
            *code = EXIT_IO;
            goto fail;
        }
        if (o->tls_verify) {
            STACK_OF(X509_NAME) *names = SSL_load_client_CA_file(o->tls_trustfile);
            if (names)
                SSL_CTX_set_client_CA_list(c, names);
            SSL_CTX_set_verify(c, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, verify_cb);
        }
        if (o->tls_alpn)
            SSL_CTX_set_alpn_select_cb(c, alpn_select, NULL);
    } else {
        if (o->tls_pin) {
            SSL_CTX_set_verify(c, SSL_VERIFY_PEER, NULL);
            SSL_CTX_set_cert_verify_callback(c, pin_verify, NULL);
        } else if (!o->tls_no_verify) {
            if (!o->tls_trustfile && SSL_CTX_set_default_verify_paths(c) != 1) {
                cli_error("tls: cannot load the system CA store: %s", ssl_reason("unknown error"));
                *code = EXIT_IO;
                goto fail;
            }
            SSL_CTX_set_verify(c, SSL_VERIFY_PEER, verify_cb);
        } else {
            SSL_CTX_set_verify(c, SSL_VERIFY_NONE, NULL);
        }
        if (o->tls_alpn && SSL_CTX_set_alpn_protos(c, alpn_wire, alpn_len) != 0) {
            cli_error("--ssl-alpn %s: %s", o->tls_alpn, ssl_reason("refused"));
            goto fail;
        }
    }
    return c;
fail:
    SSL_CTX_free(c);
    return NULL;
}

int cli_tls_open(const struct options *o)
{
    if (!o->tls && !o->tls_target)
        return 0;
    if ((o->tls_alpn && parse_alpn(o->tls_alpn) < 0) || (o->tls_pin && parse_pins(o->tls_pin) < 0))
        return EXIT_USAGE;
    if ((o->tls_cert && readable("--ssl-cert", o->tls_cert) < 0) ||
        (o->tls_key && readable("--ssl-key", o->tls_key) < 0) ||
        (o->tls_trustfile && readable("--ssl-trustfile", o->tls_trustfile) < 0))
        return EXIT_USAGE;
    if (vfail_index < 0)
        vfail_index = SSL_get_ex_new_index(0, NULL, NULL, NULL, NULL);
    if (vfail_index < 0) {
        cli_error("tls: %s", ssl_reason("cannot set up OpenSSL"));
        return EXIT_IO;
    }
    int code = 0;
    if (o->tls && !(ctx = new_ctx(o, o->cmd != CMD_CONNECT, 1, &code)))
        return code;
    int err = 0;
    if (o->tls && !(lib_ctx = dx_tls_ctx_wrap(ctx, o->cmd != CMD_CONNECT, 1, &err))) {
        cli_error("tls: %s", dx_strerror(err));
        SSL_CTX_free(ctx);
        ctx = NULL;
        return EXIT_IO;
    }
    /* relay --ssl-target: a client of TARGET; its certificate, if any, is
     * --ssl-cert's when the relay's own side is not TLS */
    if (o->tls_target && !(target_ctx = new_ctx(o, 0, !o->tls, &code))) {
        cli_tls_close();
        return code;
    }
    /* SNI and the name to check are set per connection (expect_name) */
    if (o->tls_target && !(lib_target_ctx = dx_tls_ctx_wrap(target_ctx, 0, 1, &err))) {
        cli_error("tls: %s", dx_strerror(err));
        cli_tls_close();
        return EXIT_IO;
    }
    return 0;
}

void cli_tls_close(void)
{
    dx_tls_ctx_free(lib_ctx);
    lib_ctx = NULL;
    dx_tls_ctx_free(lib_target_ctx);
    lib_target_ctx = NULL;
    SSL_CTX_free(ctx);
    ctx = NULL;
    SSL_CTX_free(target_ctx);
    target_ctx = NULL;
}

/* ---- names ------------------------------------------------------------ */

/* The names a certificate is for: its DNS and IP subjectAltNames, else its
 * CN ("duplex", "localhost, 127.0.0.1"). */
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
            const unsigned char *ip = ASN1_STRING_get0_data(g->d.iPAddress);
            if (n == 4 || n == 16)
                inet_ntop(n == 4 ? AF_INET : AF_INET6, ip, one, sizeof one);
        }
        if (one[0])
            at += (size_t)snprintf(buf + at, len - at, "%s%s", at ? ", " : "", one);
    }
    GENERAL_NAMES_free(gens);
    if (!buf[0] && X509_NAME_get_text_by_NID(X509_get_subject_name(x), NID_commonName, buf,
                                             (int)len) < 0)
        snprintf(buf, len, "no name");
}

static void name_text(const X509_NAME *n, char *buf, size_t len)
{
    BIO *b = BIO_new(BIO_s_mem());
    buf[0] = '\0';
    if (!b)
        return;
    X509_NAME_print_ex(b, n, 0, XN_FLAG_RFC2253 & ~ASN1_STRFLGS_ESC_MSB);
    int k = BIO_read(b, buf, (int)len - 1);
    buf[k > 0 ? k : 0] = '\0';
    BIO_free(b);
}

/* HOST without [brackets]; 1 if it is an IP address. */
static int strip_host(const char *host, char *buf, size_t len)
{
    size_t n = strlen(host);
    if (host[0] == '[' && n >= 2 && host[n - 1] == ']')
        snprintf(buf, len, "%.*s", (int)(n - 2), host + 1);
    else
        snprintf(buf, len, "%s", host);
    unsigned char bin[16];
    return inet_pton(AF_INET, buf, bin) == 1 || inet_pton(AF_INET6, buf, bin) == 1;
}

/* ---- handshake -------------------------------------------------------- */

/* Why the handshake failed, printed; returns the exit code. */
static int handshake_failed(const struct options *o, int server, int many, const char *peer,
                            SSL *ssl, int ret, const char *expected)
{
    int e = SSL_get_error(ssl, ret);
    int saved = errno;
    int fail_code = server ? EXIT_IO : EXIT_CONNECT;
    const struct vfail *vf = SSL_get_ex_data(ssl, vfail_index);
    if (vf && vf->err) {
        char names[512] = "";
        if (vf->cert)
            cert_names(vf->cert, names, sizeof names);
        if (vf->err == X509_V_ERR_APPLICATION_VERIFICATION && o->tls_pin && !server) {
            char fp[200] = "", key[64] = "";
            if (vf->cert) {
                fingerprint(vf->cert, fp, sizeof fp);
                spki_text(vf->cert, key, sizeof key);
            }
            say(o, many, "tls %s: certificate pin mismatch: expected %s, got public key %s, "
                "certificate SHA-256 fingerprint %s", peer, o->tls_pin, key[0] ? key : "none",
                fp[0] ? fp : "none");
        } else if (vf->err == X509_V_ERR_HOSTNAME_MISMATCH)
            say(o, many, "tls %s: hostname mismatch: certificate is for %s, not %s "
                "(--ssl-servername NAME to check another name)", peer, names, expected);
        else if (vf->err == X509_V_ERR_IP_ADDRESS_MISMATCH)
            say(o, many, "tls %s: IP address mismatch: certificate is for %s, not %s "
                "(--ssl-servername NAME to check a name instead)", peer, names, expected);
        else if (server)
            say(o, many, "tls %s: client certificate verify failed: %s (it must be signed by a CA "
                "of --ssl-trustfile)", peer, X509_verify_cert_error_string(vf->err));
        else
            say(o, many, "tls %s: certificate verify failed: %s (--ssl-trustfile FILE to trust it, "
                "--ssl-no-verify to skip the check)", peer, X509_verify_cert_error_string(vf->err));
        return fail_code;
    }
    if (e == SSL_ERROR_SYSCALL) {
        if (saved)
            say(o, many, "tls %s: handshake failed: %s", peer, strerror(saved));
        else
            say(o, many, "tls %s: handshake failed: the peer closed the connection", peer);
        return fail_code;
    }
    unsigned long err = ERR_peek_last_error();
    int reason = ERR_GET_REASON(err);
    const char *hint = "";
    if (reason == SSL_R_WRONG_VERSION_NUMBER || reason == SSL_R_HTTP_REQUEST ||
        reason == SSL_R_PACKET_LENGTH_TOO_LONG || reason == SSL_R_RECORD_LENGTH_MISMATCH)
        hint = " (does the peer speak TLS?)";
    else if (reason == SSL_R_PEER_DID_NOT_RETURN_A_CERTIFICATE)
        hint = " (--ssl-verify: the client must give --ssl-cert FILE --ssl-key FILE)";
    else if (reason == SSL_R_TLSV13_ALERT_CERTIFICATE_REQUIRED)
        hint = " (the server wants a client certificate: --ssl-cert FILE --ssl-key FILE)";
    else if (server && reason >= SSL_AD_REASON_OFFSET)
        hint = " (the client refused the handshake: is our certificate one it trusts?)";
    say(o, many, "tls %s: handshake failed: %s%s", peer, ssl_reason("unknown error"), hint);
    return fail_code;
}

/* Run the handshake on fd until done or the deadline. 0, or an exit code
 * (printed, except for a stop signal; a -v line for one of many). */
static int handshake(const struct options *o, int many, const char *peer, SSL *ssl, int fd,
                     const char *expected)
{
    int server = o->cmd != CMD_CONNECT;
    uint64_t limit = o->timeout_ms > 0 ? (uint64_t)o->timeout_ms : HANDSHAKE_DEFAULT_MS;
    uint64_t deadline = cli_now_ms() + limit;
    for (;;) {
        ERR_clear_error();
        errno = 0;
        int r = server ? SSL_accept(ssl) : SSL_connect(ssl);
        if (r == 1)
            return 0;
        int e = SSL_get_error(ssl, r);
        if (e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE)
            return handshake_failed(o, server, many, peer, ssl, r, expected);
        int rc = cli_wait_fd(fd, e == SSL_ERROR_WANT_READ ? POLLIN : POLLOUT, deadline);
        if (rc == DX_ETIMEDOUT) {
            say(o, many, "tls %s: handshake timed out after %.3g s", peer, (double)limit / 1000.0);
            return EXIT_TIMEOUT;
        }
        if (rc == -EINTR)
            return EXIT_IO; /* main.c turns it into 128 + the signal */
        if (rc < 0) {
            say(o, many, "tls %s: poll: %s", peer, dx_strerror(rc));
            return EXIT_IO;
        }
    }
}

/* -v: what was negotiated and who the peer is. */
static void report(const struct options *o, int server, const char *peer, SSL *ssl,
                   const char *expected)
{
    if (!o->verbose)
        return;
    const unsigned char *alpn = NULL;
    unsigned alen = 0;
    SSL_get0_alpn_selected(ssl, &alpn, &alen);
    cli_info(o, "tls %s: %s, cipher %s, ALPN %.*s", peer, SSL_get_version(ssl),
             SSL_get_cipher_name(ssl), alen ? (int)alen : 4, alen ? (const char *)alpn : "none");
    X509 *x = SSL_get1_peer_certificate(ssl);
    if (x) {
        char subject[512], issuer[512];
        name_text(X509_get_subject_name(x), subject, sizeof subject);
        name_text(X509_get_issuer_name(x), issuer, sizeof issuer);
        const char *how = server ? (o->tls_verify ? "verified" : "not verified")
                          : o->tls_no_verify   ? "not verified (--ssl-no-verify)"
                          : o->tls_pin         ? "pinned (--ssl-pin)"
                                               : "verified";
        int named = expected && !server && !o->tls_no_verify && !o->tls_pin;
        cli_info(o, "tls %s: peer certificate: subject %s, issuer %s, %s%s%s", peer, subject,
                 issuer, how, named ? " for " : "", named ? expected : "");
        /* the same fingerprint the ephemeral server prints, and the key's
         * hash: either is an --ssl-pin */
        char fp[200], key[64];
        fingerprint(x, fp, sizeof fp);
        spki_text(x, key, sizeof key);
        cli_info(o, "tls %s: peer certificate SHA-256 fingerprint %s, public key %s", peer, fp,
                 key);
        X509_free(x);
    } else {
        cli_info(o, "tls %s: peer certificate: none", peer);
    }
    if (!server && o->tls_no_verify)
        cli_info(o, "tls %s: warning: --ssl-no-verify: the server's certificate is not checked; "
                 "anyone on the path can read and change the data", peer);
}

/* A client's SNI and the name its server's certificate must carry:
 * --ssl-servername, else the host connected to (relay: TARGET's), none for
 * a Unix socket; written to expected. 0, or -1 after printing. */
static int expect_name(const struct options *o, SSL *ssl, const char *peer, char *expected,
                       size_t len)
{
    const char *name = o->tls_servername;
    if (!name)
        name = o->cmd == CMD_RELAY ? (o->target_unix ? NULL : o->target_host)
                                   : (o->unix_path ? NULL : o->host);
    expected[0] = '\0';
    if (!name)
        return 0;
    int is_ip = strip_host(name, expected, len);
    /* "" would clear the name to check (any certificate of a trusted CA
     * would do): options.c refuses it; fail closed all the same */
    if (!expected[0] || strlen(name) >= len) {
        cli_error("tls %s: no name to check the certificate against", peer);
        return -1;
    }
    ERR_clear_error();
    if (!is_ip && SSL_set_tlsext_host_name(ssl, expected) != 1) {
        cli_error("tls %s: cannot send the name %s (SNI): %s", peer, expected, ssl_reason("invalid"));
        return -1;
    }
    if (o->tls_no_verify || o->tls_pin)
        return 0; /* nothing to check, or the pin is the whole check */
    SSL_set_hostflags(ssl, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
    if (is_ip ? X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), expected) != 1
              : SSL_set1_host(ssl, expected) != 1) {
        cli_error("tls %s: cannot check the name %s: %s", peer, expected, ssl_reason("invalid"));
        return -1;
    }
    return 0;
}


/* One session (connect, one-client listen): the handshake here, under the
 * -w deadline, then the session's pumps read and write the socket through
 * the library's TLS (session.c attaches t to its endpoint). */
int cli_tls_session(dx_loop *loop, const struct options *o, int fd, const char *peer_text)
{
    int server = o->cmd != CMD_CONNECT;
    char expected[300] = "";
    int err = 0, code;
    dx_tls *t = dx_tls_new(loop, lib_ctx, fd, NULL, &err); /* names: expect_name() */
    SSL *ssl = t ? dx_tls_native(t) : NULL;
    if (!ssl) {
        cli_error("tls %s: %s", peer_text, dx_strerror(err));
        close(fd);
        return EXIT_IO;
    }
    struct vfail vf = {0};
    SSL_set_ex_data(ssl, vfail_index, &vf);
    int fl = fcntl(fd, F_GETFL);
    if (fl >= 0 && !(fl & O_NONBLOCK))
        fcntl(fd, F_SETFL, fl | O_NONBLOCK);
    if (!server && expect_name(o, ssl, peer_text, expected, sizeof expected) < 0)
        code = EXIT_USAGE;
    else
        code = handshake(o, 0, peer_text, ssl, fd, expected);
    if (code == 0) {
        report(o, server, peer_text, ssl, expected[0] ? expected : NULL);
        code = cli_session_tls(loop, o, fd, peer_text, t); /* closes fd */
    } else {
        close(fd);
    }
    X509_free(vf.cert);
    SSL_set_ex_data(ssl, vfail_index, NULL);
    dx_tls_free(t);
    return code;
}

int cli_tls_failed(const struct options *o, dx_tls *t, const char *peer, int error, int in_read,
                   uint64_t received)
{
    /* the library's reason for its own codes; the system's words for -errno */
    int tls_code = error == DX_ETLS || error == DX_ETLSVERIFY || error == DX_ETLSTRUNC;
    const char *why = tls_code && dx_tls_reason(t)[0] ? dx_tls_reason(t) : dx_strerror(error);
    if (in_read && error == DX_ETLS && received == 0 && o->cmd == CMD_CONNECT &&
        strstr(why, " alert ")) {
        /* an alert before any data: the server refused the handshake after
         * the client's side of it was done (TLS 1.3: a client certificate) */
        cli_error("tls %s: handshake failed: %s%s", peer, why,
                  strstr(why, "certificate required")
                      ? " (the server wants a client certificate: --ssl-cert FILE --ssl-key FILE)"
                      : "");
        return EXIT_CONNECT;
    }
    cli_error("tls %s: %s: %s", peer, in_read ? "receive" : "send", why);
    return EXIT_IO;
}

void cli_tls_ended(const struct options *o, dx_tls *t, const char *peer, int one_of_many)
{
    /* most clients end so after a complete transfer (ncat, many HTTP
     * clients): a warning, not a failure; only the protocol can tell a cut
     * (a length, a checksum), which is why it is always said */
    if (dx_tls_truncated(t))
        say(o, one_of_many, "tls %s: warning: TLS connection ended without close_notify: the data may be "
            "truncated", peer);
}

void cli_tls_goodbye(dx_tls *t)
{
    SSL *ssl = dx_tls_native(t);
    if (!ssl || dx_tls_truncated(t) || !SSL_is_init_finished(ssl) ||
        (SSL_get_shutdown(ssl) & SSL_SENT_SHUTDOWN))
        return;
    ERR_clear_error();
    (void)SSL_shutdown(ssl); /* one try: the socket is about to close */
    ERR_clear_error();
}



/* ---- servers and relay: many TLS connections on one loop ---------------- */

/* Handshakes in progress at once on one loop: the owner stops accepting
 * there (cli_tls_server_full) until one ends (its room callback). */
#define MAX_HANDSHAKES CLI_TLS_MAX_HANDSHAKES

struct cli_tls_server {
    dx_loop *loop;
    const struct options *o;
    cli_tls_ready_cb ready;
    void *data;
    struct hs *live;           /* handshaking */
    struct hs *graveyard;      /* released, freed outside callbacks */
    dx_timer reaper;
    unsigned handshaking;      /* accepted clients among live */
    void (*room)(void *data);  /* the owner waits for a handshake to end */
    void *room_data;
};

/* One handshake in the loop: an accepted client's, or relay's towards a
 * TLS target (client); then the owner gets the socket and its dx_tls. */
struct hs {
    struct cli_tls_server *ts;
    struct hs *prev, *next;
    dx_tls *dt;                /* owns ssl */
    SSL *ssl;
    int fd;
    dx_io io;
    dx_timer deadline;
    struct vfail vf;
    int client, released;
    dx_addr peer_addr;
    dx_addr local_addr;        /* given at accept (a PROXY header's), else AF_UNSPEC: the socket's */
    char name[DX_ADDR_STRLEN];
    char expected[300];        /* client: the name the certificate must carry */
    cli_tls_connected_cb connected;
    void *connected_data;
};

static void free_hs(struct hs *h)
{
    if (h->dt) {
        X509_free(h->vf.cert);
        SSL_set_ex_data(h->ssl, vfail_index, NULL);
        dx_tls_free(h->dt); /* its SSL */
    }
    if (h->fd >= 0)
        close(h->fd);
    free(h);
}

static void reap_hs(dx_loop *loop, dx_timer *t)
{
    (void)loop;
    struct cli_tls_server *ts = t->data;
    while (ts->graveyard) {
        struct hs *h = ts->graveyard;
        ts->graveyard = h->next;
        free_hs(h);
    }
}

/* Take a handshake off the server's list; freed at the next safe point
 * (this may run inside one of its own callbacks). An owner that stopped
 * accepting at the cap may go on. */
static void hs_release(struct hs *h)
{
    struct cli_tls_server *ts = h->ts;
    if (h->released)
        return;
    h->released = 1;
    dx_io_stop(ts->loop, &h->io);
    dx_timer_stop(ts->loop, &h->deadline);
    if (h->prev)
        h->prev->next = h->next;
    else
        ts->live = h->next;
    if (h->next)
        h->next->prev = h->prev;
    h->prev = NULL;
    h->next = ts->graveyard;
    ts->graveyard = h;
    dx_timer_start(ts->loop, &ts->reaper, 0, 0);
    if (!h->client && --ts->handshaking < MAX_HANDSHAKES && ts->room) {
        void (*room)(void *) = ts->room;
        ts->room = NULL;
        room(ts->room_data);
    }
}

/* A handshake failed (said already): a target's owner learns it (fd -1),
 * then the connection goes. */
static void hs_failed(struct hs *h)
{
    if (h->released)
        return;
    if (h->client)
        h->connected(h->connected_data, -1, NULL);
    hs_release(h);
}

/* The handshake is done: the owner gets the socket and its dx_tls, and
 * reads and writes it through the library's TLS from now on. */
static void hand_over(struct hs *h)
{
    struct cli_tls_server *ts = h->ts;
    report(ts->o, !h->client, h->name, h->ssl, h->expected[0] ? h->expected : NULL);
    dx_tls *t = h->dt;
    int fd = h->fd;
    SSL_set_ex_data(h->ssl, vfail_index, NULL);
    X509_free(h->vf.cert);
    h->vf.cert = NULL;
    h->dt = NULL;
    h->ssl = NULL;
    h->fd = -1;
    int client = h->client;
    cli_tls_connected_cb connected = h->connected;
    void *connected_data = h->connected_data;
    dx_addr peer = h->peer_addr, local = h->local_addr;
    int has_local = local.ss.ss_family || dx_sock_local(fd, &local) == 0;
    hs_release(h); /* freed later */
    if (client)
        connected(connected_data, fd, t);
    else
        ts->ready(ts->data, fd, &peer, has_local ? &local : NULL, t);
}

/* One step of a handshake, in the loop. */
static void hs_step(struct hs *h)
{
    ERR_clear_error();
    errno = 0;
    int r = h->client ? SSL_connect(h->ssl) : SSL_accept(h->ssl);
    if (r == 1) {
        hand_over(h);
        return;
    }
    int e = SSL_get_error(h->ssl, r);
    if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
        int rc = dx_io_set(h->ts->loop, &h->io, e == SSL_ERROR_WANT_READ ? DX_READ : DX_WRITE);
        if (rc < 0) {
            say(h->ts->o, 0, "tls %s: event loop: %s", h->name, dx_strerror(rc));
            hs_failed(h);
        }
        return;
    }
    /* a server's client is one of many (-v); a target's failure is the
     * relay's misconfiguration or the target's: always said */
    handshake_failed(h->ts->o, !h->client, !h->client, h->name, h->ssl, r, h->expected);
    hs_failed(h);
}

static void on_hs_io(dx_loop *loop, dx_io *io, int events)
{
    (void)loop, (void)events;
    hs_step(io->data);
}

static void on_hs_deadline(dx_loop *loop, dx_timer *t)
{
    (void)loop;
    struct hs *h = t->data;
    const struct options *o = h->ts->o;
    say(o, !h->client, "tls %s: handshake timed out after %.3g s", h->name,
        (double)(o->timeout_ms > 0 ? o->timeout_ms : HANDSHAKE_DEFAULT_MS) / 1000.0);
    hs_failed(h);
}

struct cli_tls_server *cli_tls_server_new(dx_loop *loop, const struct options *o,
                                          cli_tls_ready_cb ready, void *data)
{
    struct cli_tls_server *ts = calloc(1, sizeof *ts);
    if (!ts)
        return NULL;
    ts->loop = loop;
    ts->o = o;
    ts->ready = ready;
    ts->data = data;
    dx_timer_init(&ts->reaper, reap_hs, ts);
    return ts;
}

/* A connection of the server's in handshake: from accept (client 0) or
 * towards a target (client 1). NULL after printing, fd closed. */
static struct hs *new_hs(struct cli_tls_server *ts, int fd, const char *name, int client)
{
    const struct options *o = ts->o;
    struct hs *h = calloc(1, sizeof *h);
    int err = 0;
    dx_tls *dt = h ? dx_tls_new(ts->loop, client ? lib_target_ctx : lib_ctx, fd, NULL, &err) : NULL;
    if (!dt) {
        say(o, 0, "tls %s: %s, closing", name, dx_strerror(h ? err : -ENOMEM));
        free(h);
        close(fd);
        return NULL;
    }
    h->ts = ts;
    h->dt = dt;
    h->ssl = dx_tls_native(dt);
    h->fd = fd;
    h->client = client;
    snprintf(h->name, sizeof h->name, "%s", name);
    SSL_set_ex_data(h->ssl, vfail_index, &h->vf);
    if (client && expect_name(o, h->ssl, name, h->expected, sizeof h->expected) < 0) {
        free_hs(h);
        return NULL;
    }
    dx_set_nonblock(fd, 1);
    dx_io_init(&h->io, fd, on_hs_io, h);
    dx_timer_init(&h->deadline, on_hs_deadline, h);
    h->next = ts->live;
    if (h->next)
        h->next->prev = h;
    ts->live = h;
    if (!client)
        ts->handshaking++;
    dx_timer_start(ts->loop, &h->deadline,
                   (uint64_t)(o->timeout_ms > 0 ? o->timeout_ms : HANDSHAKE_DEFAULT_MS), 0);
    return h;
}

void cli_tls_server_accept(struct cli_tls_server *ts, int fd, const dx_addr *peer,
                           const dx_addr *local, const char *name)
{
    if (ts->handshaking >= MAX_HANDSHAKES) {
        cli_info(ts->o, "%s: refused: %d TLS handshakes in progress", name, MAX_HANDSHAKES);
        close(fd);
        return;
    }
    struct hs *h = new_hs(ts, fd, name, 0);
    if (!h)
        return;
    h->peer_addr = *peer;
    if (local)
        h->local_addr = *local;
    hs_step(h);
}

struct cli_tls_conn *cli_tls_server_connect(struct cli_tls_server *ts, int fd, const char *name,
                                            cli_tls_connected_cb connected, void *data)
{
    struct hs *h = new_hs(ts, fd, name, 1);
    if (!h) {
        connected(data, -1, NULL);
        return NULL;
    }
    h->connected = connected;
    h->connected_data = data;
    hs_step(h); /* may call connected() already: the caller is ready for it */
    return h->released ? NULL : (struct cli_tls_conn *)h;
}

void cli_tls_conn_cancel(struct cli_tls_conn *c)
{
    struct hs *h = (struct hs *)c;
    if (h && !h->released)
        hs_release(h);
}

unsigned cli_tls_server_live(const struct cli_tls_server *ts)
{
    return ts ? ts->handshaking : 0;
}

int cli_tls_server_full(struct cli_tls_server *ts, void (*room)(void *data), void *room_data)
{
    if (ts->handshaking < MAX_HANDSHAKES)
        return 0;
    ts->room = room;
    ts->room_data = room_data;
    return 1;
}

void cli_tls_server_free(struct cli_tls_server *ts)
{
    if (!ts)
        return;
    while (ts->live)
        hs_release(ts->live);
    reap_hs(ts->loop, &ts->reaper);
    dx_timer_stop(ts->loop, &ts->reaper);
    free(ts);
}

/* A thread's or a forked child's own client (--model thread/fork): the
 * handshake here, blocking under the -w deadline (else 10 s), then t is
 * the caller's, on its own loop. */
int cli_tls_accept_one(dx_loop *loop, const struct options *o, int fd, const char *name, dx_tls **out)
{
    int err = 0;
    dx_tls *t = dx_tls_new(loop, lib_ctx, fd, NULL, &err);
    SSL *ssl = t ? dx_tls_native(t) : NULL;
    *out = NULL;
    if (!ssl) {
        say(o, 1, "tls %s: %s, closing", name, dx_strerror(err));
        return -1;
    }
    struct vfail vf = {0};
    SSL_set_ex_data(ssl, vfail_index, &vf);
    dx_set_nonblock(fd, 1);
    int code = handshake(o, 1, name, ssl, fd, NULL);
    X509_free(vf.cert);
    SSL_set_ex_data(ssl, vfail_index, NULL);
    if (code != 0) {
        dx_tls_free(t);
        return -1;
    }
    report(o, 1, name, ssl, NULL);
    *out = t;
    return 0;
}

/* ---- duplex bench --ssl ------------------------------------------------- */

static SSL_CTX *bench_ctx;

int cli_tls_bench_init(void)
{
    /* no read-ahead: the bench reads until EAGAIN only while it expects
     * bytes, so nothing may wait inside OpenSSL unseen by poll */
    bench_ctx = SSL_CTX_new(TLS_client_method());
    if (!bench_ctx) {
        cli_error("bench --ssl: %s", ssl_reason("cannot set up OpenSSL"));
        return EXIT_IO;
    }
    SSL_CTX_set_min_proto_version(bench_ctx, TLS1_2_VERSION);
    SSL_CTX_set_mode(bench_ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    SSL_CTX_set_verify(bench_ctx, SSL_VERIFY_NONE, NULL);
    return 0;
}

struct cli_tls_sock *cli_tls_bench_new(int fd)
{
    SSL *ssl = SSL_new(bench_ctx);
    if (ssl && SSL_set_fd(ssl, fd) == 1)
        return (struct cli_tls_sock *)ssl;
    SSL_free(ssl);
    return NULL;
}

int cli_tls_bench_handshake(struct cli_tls_sock *t)
{
    SSL *ssl = (SSL *)t;
    ERR_clear_error();
    int r = SSL_connect(ssl);
    if (r == 1)
        return 0;
    int e = SSL_get_error(ssl, r);
    return e == SSL_ERROR_WANT_READ ? DX_READ : e == SSL_ERROR_WANT_WRITE ? DX_WRITE : -1;
}

ssize_t cli_tls_bench_read(struct cli_tls_sock *t, void *buf, size_t n)
{
    SSL *ssl = (SSL *)t;
    ERR_clear_error();
    int r = SSL_read(ssl, buf, n > INT_MAX ? INT_MAX : (int)n);
    if (r > 0)
        return r;
    int e = SSL_get_error(ssl, r);
    if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE)
        return -EAGAIN;
    return e == SSL_ERROR_ZERO_RETURN ? 0 : -EIO;
}

ssize_t cli_tls_bench_write(struct cli_tls_sock *t, const void *buf, size_t n)
{
    SSL *ssl = (SSL *)t;
    ERR_clear_error();
    int r = SSL_write(ssl, buf, n > INT_MAX ? INT_MAX : (int)n);
    if (r > 0)
        return r;
    int e = SSL_get_error(ssl, r);
    return e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE ? -EAGAIN : -EIO;
}

void cli_tls_bench_free(struct cli_tls_sock *t) { SSL_free((SSL *)t); }

#endif /* DX_HAVE_TLS */
