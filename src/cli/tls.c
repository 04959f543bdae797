/* tls.c: --ssl/--tls for `duplex connect`, `duplex listen` and relay
 * (OpenSSL): certificates and the verification policy (pins, ephemeral
 * certificate, names, messages), the handshake, and the transport.
 *
 * One session (connect, one-client listen): the handshake runs here on the
 * non-blocking socket with poll(2) and the -w deadline (else 10 s), then
 * session.c's pumps read and write the socket through libduplex's TLS
 * (dx_endpoint_set_tls()): our SSL_CTX, wrapped with dx_tls_ctx_wrap(), so
 * the policy stays here. Half-close is close_notify (the pump's
 * DX_PUMP_SHUTDOWN), the peer's close_notify is the end of input; a peer
 * that closes without close_notify ends the input too, with a warning
 * ("the data may be truncated"; ncat ends so), since an attacker on the
 * path can cut a TLS stream that way.
 *
 * Servers with many clients and relay's sides (cli_tls_server_*, at the
 * end) still bridge each client through a socketpair(AF_UNIX) to the code
 * that serves it: the bridge moves bytes between the TCP socket
 * (SSL_read/SSL_write, non-blocking) and one end of the pair, whose other
 * end the server sees as the connection; each direction has one bounded
 * buffer (backpressure both ways). Its half-close: the server's
 * shutdown(SHUT_WR) reaches the bridge as EOF on the pair; once flushed,
 * the bridge sends close_notify and shuts the TCP write side down, and
 * goes on reading; the peer's close_notify becomes shutdown(SHUT_WR) of
 * the pair. SIGPIPE is ignored for the whole process (stdio.c); the
 * bridge's writes to the pair use MSG_NOSIGNAL. */
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
                                          cli_tls_ready_cb ready, void *data, int direct)
{
    (void)loop, (void)o, (void)ready, (void)data, (void)direct;
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
    connected(data, -1);
    return NULL;
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
#define LINGER_DEFAULT_MS 5000     /* flushing after the session ended */
#define TLS_BUFSIZE (256u << 10)   /* per direction */

static SSL_CTX *ctx;          /* --ssl: this side's */
static dx_tls_ctx *lib_ctx;   /* the same for the library's TLS (a close without
                               * close_notify is the end: cli_tls_ended() warns) */
static SSL_CTX *target_ctx;   /* relay --ssl-target: the client side towards TARGET */
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
        SSL_CTX_free(ctx);
        ctx = NULL;
        return code;
    }
    return 0;
}

void cli_tls_close(void)
{
    dx_tls_ctx_free(lib_ctx);
    lib_ctx = NULL;
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
 * (printed, except for a stop signal). */
static int handshake(const struct options *o, const char *peer, SSL *ssl, int fd,
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
            return handshake_failed(o, server, 0, peer, ssl, r, expected);
        int rc = cli_wait_fd(fd, e == SSL_ERROR_WANT_READ ? POLLIN : POLLOUT, deadline);
        if (rc == DX_ETIMEDOUT) {
            cli_error("tls %s: handshake timed out after %.3g s", peer, (double)limit / 1000.0);
            return EXIT_TIMEOUT;
        }
        if (rc == -EINTR)
            return EXIT_IO; /* main.c turns it into 128 + the signal */
        if (rc < 0) {
            cli_error("tls %s: poll: %s", peer, dx_strerror(rc));
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

/* ---- the bridge ------------------------------------------------------- */

struct tbuf {
    unsigned char *data;
    size_t start, end;
};

struct bridge {
    dx_loop *loop;
    const struct options *o;
    const char *peer;
    SSL *ssl;
    int tcp, pair;
    dx_io tcp_io, pair_io;
    dx_timer linger;    /* the handshake's deadline, then the flush's after the session */
    size_t bufsize;     /* of each tbuf */
    struct tbuf up;     /* session -> TLS */
    struct tbuf down;   /* TLS -> session */
    int up_eof;         /* the session ended its side (EOF on the socketpair) */
    int up_dead;        /* the peer takes no more: what the session sends is dropped */
    int close_sent;     /* close_notify sent, TCP write side shut down */
    int down_eof;       /* the peer ended its side (close_notify, or a bare close) */
    int down_shut;      /* the socketpair's write side shut down: the session read EOF */
    int down_dead;      /* the session is gone: what arrives is dropped */
    int truncated;      /* the peer closed without close_notify */
    int rd_block;       /* SSL_read waits for this TCP event (DX_READ/DX_WRITE), or 0 */
    int wr_block;       /* SSL_write/SSL_shutdown waits for this TCP event, or 0 */
    int pr_block, pw_block; /* the socketpair read/write would block */
    int retry_len;      /* an SSL_write to repeat with the same length, or 0 */
    int received_any;
    int session_over;
    int failed, exit_code;
    struct vfail vf;
    /* a client of a server (cli_tls_server): it frees itself when done */
    struct cli_tls_server *ts;
    dx_tls *dt;         /* an accepted client's: owns ssl (handed over with `direct`) */
    struct bridge *prev, *next;
    int handshaking;
    int released;
    dx_addr peer_addr;
    dx_addr local_addr; /* given at accept (a PROXY header's), else AF_UNSPEC: the socket's */
    char name[DX_ADDR_STRLEN];
    /* a client of a server (relay --ssl-target), from cli_tls_server_connect() */
    int client;
    cli_tls_connected_cb connected;
    void *connected_data;
    char expected[300];
};

static void bridge_stop(struct bridge *b)
{
    dx_io_stop(b->loop, &b->tcp_io);
    dx_io_stop(b->loop, &b->pair_io);
    dx_timer_stop(b->loop, &b->linger);
}

static void server_release(struct bridge *b);
static void handshake_over(struct bridge *b);

/* The bridge cannot go on: a one-session command stops its loop with the
 * exit code; a server's client is closed and the server goes on. */
static void bridge_fail(struct bridge *b, int code, const char *fmt, ...)
    CLI_PRINTF(3, 4);
static void bridge_fail(struct bridge *b, int code, const char *fmt, ...)
{
    char cause[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cause, sizeof cause, fmt, ap);
    va_end(ap);
    say(b->o, b->ts != NULL, "tls %s: %s", b->peer, cause);
    b->failed = 1;
    b->exit_code = code;
    bridge_stop(b);
    if (b->ts)
        server_release(b);
    else
        dx_loop_stop(b->loop);
}

/* The cause of a failed SSL_read/SSL_write/SSL_shutdown. */
static const char *io_cause(int e, int saved_errno)
{
    if (e == SSL_ERROR_SYSCALL)
        return saved_errno ? strerror(saved_errno) : "the connection closed";
    return ssl_reason("protocol error");
}

/* A write failed because the peer has gone. After its close_notify OpenSSL
 * reports any failed write as SSL_ERROR_ZERO_RETURN. */
static int is_disconnect(int e, int saved_errno)
{
    return e == SSL_ERROR_ZERO_RETURN ||
           (e == SSL_ERROR_SYSCALL &&
            (saved_errno == EPIPE || saved_errno == ECONNRESET || saved_errno == 0));
}

static int down_read(struct bridge *b)
{
    struct tbuf *d = &b->down;
    if (b->down_eof || b->rd_block || b->failed)
        return 0;
    if (d->end == b->bufsize && d->start > 0) {
        memmove(d->data, d->data + d->start, d->end - d->start);
        d->end -= d->start;
        d->start = 0;
    }
    /* SSL_read gives one record (16 KiB at most) a call: read all that has
     * arrived, up to a full buffer, so that one write to the session
     * carries many records */
    int got = 0, n, saved;
    for (;;) {
        if (d->end == b->bufsize)
            return got; /* full: the session reads first (backpressure) */
        ERR_clear_error();
        errno = 0;
        n = SSL_read(b->ssl, d->data + d->end, (int)(b->bufsize - d->end));
        saved = errno;
        if (n <= 0)
            break;
        d->end += (size_t)n;
        b->received_any = 1;
        got = 1;
        if (!SSL_pending(b->ssl) && !SSL_has_pending(b->ssl)) {
            /* OpenSSL holds nothing more: another SSL_read would only meet
             * an empty socket (EAGAIN); the poll says when more arrives */
            b->rd_block = DX_READ;
            return got;
        }
    }
    int e = SSL_get_error(b->ssl, n);
    if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
        b->rd_block = e == SSL_ERROR_WANT_READ ? DX_READ : DX_WRITE;
        return got;
    }
    if (e == SSL_ERROR_ZERO_RETURN) {
        b->down_eof = 1;
        return 1;
    }
    unsigned long err = ERR_peek_last_error();
    if ((e == SSL_ERROR_SYSCALL && saved == 0) ||
        (e == SSL_ERROR_SSL && ERR_GET_REASON(err) == SSL_R_UNEXPECTED_EOF_WHILE_READING)) {
        /* most clients end so after a complete transfer (ncat, many HTTP
         * clients): a warning, not a failure; only the protocol can tell a
         * cut (a length, a checksum), which is why it is always said */
        say(b->o, b->ts != NULL,
            "tls %s: warning: TLS connection ended without close_notify: the data may be "
            "truncated", b->peer);
        b->truncated = 1;
        b->down_eof = 1;
        return 1;
    }
    if (e == SSL_ERROR_SSL && !b->received_any && b->o->cmd == CMD_CONNECT &&
        ERR_GET_REASON(err) >= SSL_AD_REASON_OFFSET) {
        /* an alert before any data: the server refused the handshake after
         * the client's side of it was done (TLS 1.3: a client certificate) */
        int reason = ERR_GET_REASON(err);
        bridge_fail(b, EXIT_CONNECT, "handshake failed: %s%s", ssl_reason("alert"),
                    reason == SSL_R_TLSV13_ALERT_CERTIFICATE_REQUIRED
                        ? " (the server wants a client certificate: --ssl-cert FILE --ssl-key FILE)"
                        : "");
        return 0;
    }
    bridge_fail(b, EXIT_IO, "receive: %s", io_cause(e, saved));
    return 0;
}

static int down_write(struct bridge *b)
{
    struct tbuf *d = &b->down;
    int moved = 0;
    if (d->end > d->start && b->down_dead) {
        d->start = d->end = 0;
        return 1;
    }
    if (d->end > d->start && !b->pw_block) {
        ssize_t n = send(b->pair, d->data + d->start, d->end - d->start, MSG_NOSIGNAL);
        if (n > 0) {
            d->start += (size_t)n;
            if (d->start == d->end)
                d->start = d->end = 0;
            return 1;
        }
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            b->pw_block = 1;
        else if (n < 0 && errno == EINTR)
            return 1;
        else {
            b->down_dead = 1; /* the session closed its end */
            d->start = d->end = 0;
            if (b->ts)
                b->session_over = 1;
            return 1;
        }
    }
    if (b->down_eof && d->end == d->start && !b->down_shut && !b->down_dead) {
        shutdown(b->pair, SHUT_WR); /* the session reads end of input */
        b->down_shut = 1;
        moved = 1;
    }
    return moved;
}

static int up_read(struct bridge *b)
{
    struct tbuf *u = &b->up;
    if (b->up_eof || b->pr_block)
        return 0;
    if (u->end == b->bufsize && u->start > 0) {
        /* SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER: a retried write may move */
        memmove(u->data, u->data + u->start, u->end - u->start);
        u->end -= u->start;
        u->start = 0;
    }
    if (u->end == b->bufsize)
        return 0;
    size_t room = b->bufsize - u->end;
    ssize_t n = read(b->pair, u->data + u->end, room);
    if (n > 0) {
        u->end += (size_t)n;
        if ((size_t)n < room)
            b->pr_block = 1; /* a short read emptied it: no EAGAIN read, the poll says */
        return 1;
    }
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
        b->pr_block = 1;
        return 0;
    }
    if (n < 0 && errno == EINTR)
        return 1;
    b->up_eof = 1; /* 0: the session shut its side down (or closed) */
    return 1;
}

/* The peer is gone after ending its side: drop what the session sends and
 * make its next write fail (EPIPE), as a plain socket would. */
static void up_give_up(struct bridge *b)
{
    b->up_dead = 1;
    b->up_eof = 1;
    b->up.start = b->up.end = 0;
    shutdown(b->pair, SHUT_RD);
}

/* A write failed: the peer may have said why before it closed (an alert,
 * e.g. a refused client certificate). Reading reports that instead; 1 if
 * it did. */
static int peer_said_why(struct bridge *b)
{
    if (b->down_eof || b->failed)
        return 0;
    b->rd_block = 0;
    down_read(b);
    return b->failed;
}

static int up_write(struct bridge *b)
{
    struct tbuf *u = &b->up;
    if (b->up_dead || b->close_sent || b->wr_block || b->failed)
        return 0;
    if (u->end > u->start) {
        size_t avail = u->end - u->start;
        int len = b->retry_len ? b->retry_len : (int)(avail > (1u << 20) ? (1u << 20) : avail);
        ERR_clear_error();
        errno = 0;
        int n = SSL_write(b->ssl, u->data + u->start, len);
        int saved = errno;
        if (n > 0) {
            u->start += (size_t)n;
            if (u->start == u->end)
                u->start = u->end = 0;
            b->retry_len = 0;
            return 1;
        }
        int e = SSL_get_error(b->ssl, n);
        if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
            b->wr_block = e == SSL_ERROR_WANT_READ ? DX_READ : DX_WRITE;
            b->retry_len = len;
            return 0;
        }
        if (b->down_eof && is_disconnect(e, saved)) {
            up_give_up(b);
            return 1;
        }
        const char *cause = io_cause(e, saved);
        char why[256];
        snprintf(why, sizeof why, "%s", cause);
        if (!peer_said_why(b))
            bridge_fail(b, EXIT_IO, "send: %s", why);
        return 0;
    }
    if (!b->up_eof)
        return 0;
    /* end of the session's input, all of it sent: close_notify, then FIN */
    if (b->truncated) {
        /* the peer's bare close was an error to OpenSSL: no more records */
        shutdown(b->tcp, SHUT_WR);
        b->close_sent = 1;
        return 1;
    }
    ERR_clear_error();
    errno = 0;
    int r = SSL_shutdown(b->ssl);
    int saved = errno;
    if (r >= 0) {
        shutdown(b->tcp, SHUT_WR);
        b->close_sent = 1;
        return 1;
    }
    int e = SSL_get_error(b->ssl, r);
    if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
        b->wr_block = e == SSL_ERROR_WANT_READ ? DX_READ : DX_WRITE;
        return 0;
    }
    if (b->down_eof && is_disconnect(e, saved)) {
        b->close_sent = 1; /* the peer had ended and gone: nothing to tell it */
        return 1;
    }
    char why[256];
    snprintf(why, sizeof why, "%s", io_cause(e, saved));
    if (!peer_said_why(b))
        bridge_fail(b, EXIT_IO, "send close_notify: %s", why);
    return 0;
}

/* Done once our side is closed (or cannot be) and the session has all
 * the peer sent (or is gone). */
static int bridge_done(const struct bridge *b)
{
    return b->failed || ((b->close_sent || b->up_dead) && (b->down_shut || b->down_dead));
}

static void start_linger(struct bridge *b)
{
    if (!dx_timer_active(&b->linger))
        dx_timer_start(b->loop, &b->linger,
                       (uint64_t)(b->o->timeout_ms > 0 ? b->o->timeout_ms : LINGER_DEFAULT_MS), 0);
}

static void bridge_step(struct bridge *b)
{
    int progress;
    do {
        progress = 0;
        progress |= down_read(b);
        if (b->failed)
            return;
        progress |= down_write(b);
        progress |= up_read(b);
        progress |= up_write(b);
        if (b->failed)
            return;
    } while (progress);
    int tcp_ev = b->rd_block | b->wr_block;
    int pair_ev = (b->pr_block ? DX_READ : 0) | (b->pw_block ? DX_WRITE : 0);
    /* A server's session that has ended its side may close its end (the
     * client dropped) or only have half-closed: DX_PRI (never raised on a
     * Unix socket) keeps the fd watched, so that a hang-up arrives as
     * DX_ERROR. Not once both directions are shut here, where a hang-up
     * would be our own and would repeat. */
    if (b->ts && b->up_eof && !b->session_over && !b->down_shut && !b->down_dead)
        pair_ev |= DX_PRI;
    int rc = dx_io_set(b->loop, &b->tcp_io, tcp_ev);
    if (rc == 0)
        rc = dx_io_set(b->loop, &b->pair_io, pair_ev);
    if (rc < 0) {
        bridge_fail(b, EXIT_IO, "event loop: %s", dx_strerror(rc));
        return;
    }
    if (b->session_over && bridge_done(b)) {
        bridge_stop(b);
        if (b->ts)
            server_release(b);
        else
            dx_loop_stop(b->loop);
    } else if (b->ts && bridge_done(b)) {
        bridge_stop(b);
        server_release(b); /* both directions over: the session reads the rest */
    } else if (b->ts && b->session_over) {
        start_linger(b);
    }
}

static void loop_handshake(struct bridge *b);

static void on_tcp(dx_loop *loop, dx_io *io, int events)
{
    (void)loop;
    struct bridge *b = io->data;
    if (b->handshaking) {
        loop_handshake(b);
        return;
    }
    if (events & DX_ERROR)
        b->rd_block = b->wr_block = 0;
    if (b->rd_block & events)
        b->rd_block = 0;
    if (b->wr_block & events)
        b->wr_block = 0;
    bridge_step(b);
}

static void on_pair(dx_loop *loop, dx_io *io, int events)
{
    (void)loop;
    struct bridge *b = io->data;
    if (events & (DX_READ | DX_ERROR))
        b->pr_block = 0;
    if (events & (DX_WRITE | DX_ERROR))
        b->pw_block = 0;
    if (b->ts && (events & DX_ERROR)) {
        struct pollfd p = {.fd = b->pair, .events = 0};
        if (poll(&p, 1, 0) == 1 && (p.revents & POLLHUP)) {
            b->session_over = 1; /* the server closed this client */
            b->down_dead = 1;
        }
    }
    bridge_step(b);
}

static void on_linger(dx_loop *loop, dx_timer *t)
{
    (void)loop;
    struct bridge *b = t->data;
    if (b->handshaking) {
        say(b->o, !b->client, "tls %s: handshake timed out after %.3g s", b->peer,
            (double)(b->o->timeout_ms > 0 ? b->o->timeout_ms : HANDSHAKE_DEFAULT_MS) / 1000.0);
        handshake_over(b);
        return;
    }
    bridge_fail(b, EXIT_IO, "could not send the last bytes and close_notify within %.3g s",
                (double)(b->o->timeout_ms > 0 ? b->o->timeout_ms : LINGER_DEFAULT_MS) / 1000.0);
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

/* SSL_free, and the verification failure its handshake kept. */
static void ssl_free(SSL *ssl)
{
    if (!ssl)
        return;
    struct vfail *vf = SSL_get_ex_data(ssl, vfail_index);
    if (vf) {
        X509_free(vf->cert);
        vf->cert = NULL;
    }
    SSL_free(ssl);
}

/* One session (connect, one-client listen): the handshake here, under the
 * -w deadline, then the session's pumps read and write the socket through
 * the library's TLS (no bridge: session.c attaches t to its endpoint). */
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
        code = handshake(o, peer_text, ssl, fd, expected);
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


/* ---- servers: many TLS clients on one loop ----------------------------- */

/* Handshakes in progress at once on one loop: the owner stops accepting
 * there (cli_tls_server_full) until one ends (its room callback). */
#define MAX_HANDSHAKES CLI_TLS_MAX_HANDSHAKES
/* A server's client buffers less than a one-session bridge: there may be
 * thousands (about 2 * 32 KiB plus OpenSSL's own buffers each). */
#define SERVER_BUFSIZE (32u << 10)

struct cli_tls_server {
    dx_loop *loop;
    const struct options *o;
    cli_tls_ready_cb ready;
    void *data;
    struct bridge *live;       /* handshaking or bridging */
    struct bridge *graveyard;  /* released, freed outside callbacks */
    dx_timer reaper;
    unsigned handshaking, bridging;
    void (*room)(void *data);  /* the owner waits for a handshake to end */
    void *room_data;
    int direct;                /* ready() gets the socket and its dx_tls: no bridge */
};

/* A handshake ended: an owner that stopped accepting at the cap may go on. */
static void handshake_ended(struct cli_tls_server *ts)
{
    ts->handshaking--;
    if (ts->room && ts->handshaking < MAX_HANDSHAKES) {
        void (*room)(void *) = ts->room;
        ts->room = NULL;
        room(ts->room_data);
    }
}

static void free_bridge(struct bridge *b)
{
    if (b->dt) {
        X509_free(b->vf.cert);
        SSL_set_ex_data(b->ssl, vfail_index, NULL);
        dx_tls_free(b->dt); /* its SSL */
    } else {
        ssl_free(b->ssl);
    }
    if (b->tcp >= 0)
        close(b->tcp);
    if (b->pair >= 0)
        close(b->pair);
    free(b->up.data);
    free(b->down.data);
    free(b);
}

static void reap_bridges(dx_loop *loop, dx_timer *t)
{
    (void)loop;
    struct cli_tls_server *ts = t->data;
    while (ts->graveyard) {
        struct bridge *b = ts->graveyard;
        ts->graveyard = b->next;
        free_bridge(b);
    }
}

/* Take a client off the server's list; freed at the next safe point (this
 * may run inside one of its own callbacks). */
static void server_release(struct bridge *b)
{
    struct cli_tls_server *ts = b->ts;
    if (b->released)
        return;
    b->released = 1;
    bridge_stop(b);
    if (b->handshaking)
        handshake_ended(ts);
    else
        ts->bridging--;
    if (b->prev)
        b->prev->next = b->next;
    else
        ts->live = b->next;
    if (b->next)
        b->next->prev = b->prev;
    b->prev = NULL;
    b->next = ts->graveyard;
    ts->graveyard = b;
    dx_timer_start(ts->loop, &ts->reaper, 0, 0);
}

/* A handshake failed (said already): a target's owner learns it (fd -1),
 * then the connection goes. */
static void handshake_over(struct bridge *b)
{
    if (b->released)
        return;
    if (b->client && b->connected)
        b->connected(b->connected_data, -1);
    server_release(b);
}

/* The address an accepted client reached: the one given at accept, else
 * its socket's (fd). 1 if known. */
static int bridge_local(const struct bridge *b, int fd, dx_addr *local)
{
    if (b->local_addr.ss.ss_family) {
        *local = b->local_addr;
        return 1;
    }
    return dx_sock_local(fd, local) == 0;
}

/* The handshake is done: the bridge starts, and the owner gets the other
 * end of the socketpair as if it were the connection (ready() for an
 * accepted client, connected() for a target). */
/* The handshake is done and the owner serves the client on this loop with
 * a stream: it gets the socket and the dx_tls (no bridge); the rest of the
 * bridge goes. */
static void hand_over(struct bridge *b)
{
    struct cli_tls_server *ts = b->ts;
    bridge_stop(b); /* the owner's stream watches the socket from now on */
    report(b->o, 1, b->peer, b->ssl, NULL);
    dx_tls *t = b->dt;
    int fd = b->tcp;
    SSL_set_ex_data(b->ssl, vfail_index, NULL);
    X509_free(b->vf.cert);
    b->vf.cert = NULL;
    b->dt = NULL;
    b->ssl = NULL;
    b->tcp = -1;
    dx_addr peer = b->peer_addr, local;
    int has_local = bridge_local(b, fd, &local);
    server_release(b); /* a handshake less; freed later */
    ts->ready(ts->data, fd, &peer, has_local ? &local : NULL, fd, t);
}

static void start_bridge(struct bridge *b)
{
    struct cli_tls_server *ts = b->ts;
    int sp[2];
    if (ts->direct && !b->client) {
        hand_over(b);
        return;
    }
    dx_timer_stop(b->loop, &b->linger);
    report(b->o, !b->client, b->peer, b->ssl, b->expected[0] ? b->expected : NULL);
    b->up.data = malloc(b->bufsize);
    b->down.data = malloc(b->bufsize);
    if (!b->up.data || !b->down.data ||
        socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sp) < 0) {
        say(b->o, 0, "tls %s: %s, closing", b->peer,
            strerror(b->up.data && b->down.data ? errno : ENOMEM));
        handshake_over(b);
        return;
    }
    b->handshaking = 0;
    ts->bridging++;
    handshake_ended(ts);
    b->pair = sp[1];
    dx_io_init(&b->pair_io, sp[1], on_pair, b);
    if (b->client) {
        b->connected(b->connected_data, sp[0]);
    } else {
        dx_addr local;
        ts->ready(ts->data, sp[0], &b->peer_addr, bridge_local(b, b->tcp, &local) ? &local : NULL,
                  b->tcp, NULL);
    }
    if (!b->released)
        bridge_step(b); /* bytes the handshake already read, the first watchers */
}

/* One step of an accepted client's or a target's handshake, in the loop. */
static void loop_handshake(struct bridge *b)
{
    ERR_clear_error();
    errno = 0;
    int r = b->client ? SSL_connect(b->ssl) : SSL_accept(b->ssl);
    if (r == 1) {
        start_bridge(b);
        return;
    }
    int e = SSL_get_error(b->ssl, r);
    if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
        int rc = dx_io_set(b->loop, &b->tcp_io, e == SSL_ERROR_WANT_READ ? DX_READ : DX_WRITE);
        if (rc < 0) {
            say(b->o, 0, "tls %s: event loop: %s", b->peer, dx_strerror(rc));
            handshake_over(b);
        }
        return;
    }
    /* a server's client is one of many (-v); a target's failure is the
     * relay's misconfiguration or the target's: always said */
    handshake_failed(b->o, !b->client, !b->client, b->peer, b->ssl, r, b->expected);
    handshake_over(b);
}

struct cli_tls_server *cli_tls_server_new(dx_loop *loop, const struct options *o,
                                          cli_tls_ready_cb ready, void *data, int direct)
{
    struct cli_tls_server *ts = calloc(1, sizeof *ts);
    if (!ts)
        return NULL;
    ts->direct = direct;
    ts->loop = loop;
    ts->o = o;
    ts->ready = ready;
    ts->data = data;
    dx_timer_init(&ts->reaper, reap_bridges, ts);
    return ts;
}

/* A connection of the server's in handshake: from accept (client 0) or
 * towards a target (client 1). NULL after printing, fd closed. */
static struct bridge *new_conn(struct cli_tls_server *ts, int fd, const char *name, int client)
{
    const struct options *o = ts->o;
    struct bridge *b = calloc(1, sizeof *b);
    /* an accepted client's SSL is a libduplex connection's, to be handed
     * over (direct); a target's stays the bridge's */
    int err = 0;
    dx_tls *dt = b && !client ? dx_tls_new(ts->loop, lib_ctx, fd, NULL, &err) : NULL;
    SSL *ssl = dt ? dx_tls_native(dt) : b && client ? SSL_new(target_ctx) : NULL;
    if (!ssl || (!dt && SSL_set_fd(ssl, fd) != 1)) {
        say(o, 0, "tls %s: %s, closing", name, !b ? strerror(ENOMEM) : err ? dx_strerror(err)
                                               : ssl_reason("cannot set up the connection"));
        if (dt)
            dx_tls_free(dt);
        else
            SSL_free(ssl);
        free(b);
        close(fd);
        return NULL;
    }
    b->dt = dt;
    b->client = client;
    if (client && expect_name(o, ssl, name, b->expected, sizeof b->expected) < 0) {
        SSL_free(ssl);
        free(b);
        close(fd);
        return NULL;
    }
    b->loop = ts->loop;
    b->o = o;
    b->ts = ts;
    b->ssl = ssl;
    SSL_set_ex_data(ssl, vfail_index, &b->vf);
    b->tcp = fd;
    b->pair = -1;
    b->bufsize = SERVER_BUFSIZE;
    snprintf(b->name, sizeof b->name, "%s", name);
    b->peer = b->name;
    b->handshaking = 1;
    dx_io_init(&b->tcp_io, fd, on_tcp, b);
    dx_timer_init(&b->linger, on_linger, b);
    b->next = ts->live;
    if (b->next)
        b->next->prev = b;
    ts->live = b;
    ts->handshaking++;
    dx_timer_start(ts->loop, &b->linger,
                   (uint64_t)(o->timeout_ms > 0 ? o->timeout_ms : HANDSHAKE_DEFAULT_MS), 0);
    return b;
}

void cli_tls_server_accept(struct cli_tls_server *ts, int fd, const dx_addr *peer,
                           const dx_addr *local, const char *name)
{
    if (ts->handshaking >= MAX_HANDSHAKES) {
        cli_info(ts->o, "%s: refused: %d TLS handshakes in progress", name, MAX_HANDSHAKES);
        close(fd);
        return;
    }
    struct bridge *b = new_conn(ts, fd, name, 0);
    if (!b)
        return;
    b->peer_addr = *peer;
    if (local)
        b->local_addr = *local;
    loop_handshake(b);
}

struct cli_tls_conn *cli_tls_server_connect(struct cli_tls_server *ts, int fd, const char *name,
                                            cli_tls_connected_cb connected, void *data)
{
    struct bridge *b = new_conn(ts, fd, name, 1);
    if (!b)
        return NULL;
    b->connected = connected;
    b->connected_data = data;
    loop_handshake(b); /* may call connected() already: the caller is ready for it */
    return b->released || !b->handshaking ? NULL : (struct cli_tls_conn *)b;
}

void cli_tls_conn_cancel(struct cli_tls_conn *c)
{
    struct bridge *b = (struct bridge *)c;
    if (b && b->handshaking && !b->released)
        server_release(b);
}

unsigned cli_tls_server_live(const struct cli_tls_server *ts)
{
    return ts ? ts->handshaking + ts->bridging : 0;
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
        server_release(ts->live);
    reap_bridges(ts->loop, &ts->reaper);
    dx_timer_stop(ts->loop, &ts->reaper);
    free(ts);
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
