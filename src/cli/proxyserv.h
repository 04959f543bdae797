/* proxyserv.h: `duplex listen --proxy-type socks5|http`, the proxy server.
 * The parsers are pure functions over the bytes a client sent so far
 * (proxyserv_socks5.c, proxyserv_http.c; fuzzed by tests/fuzz/fuzz_proxyserv.c);
 * the connections, lookups and tunnels are proxyserv.c's. */
#ifndef DUPLEX_PROXYSERV_H
#define DUPLEX_PROXYSERV_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* Longest request head a client may send (HTTP) and what a SOCKS5
 * exchange can take (a greeting, credentials or a request is < 520 bytes). */
#define PXS_HEAD_MAX 16384

/* 1 when a and b hold the same bytes. The time taken depends on the
 * lengths only, never on where the first difference is (credentials). */

/* Where a client asks to go: a name (resolved by the server) or an address
 * as text ("192.0.2.1", "::1"), and a port. */
struct pxs_target {
    char host[256];
    int is_name; /* 1: host is a DNS name; 0: an IPv4 or IPv6 literal */
    int port;
};

/* ---- SOCKS5 (RFC 1928, RFC 1929) ----
 * Each parser returns the bytes it took (> 0), 0 while more are needed, or
 * a negative PXS_S5_* when the bytes cannot be a valid message. */
enum {
    PXS_S5_BAD = -1,       /* not SOCKS5 (or a malformed message): close */
    PXS_S5_BAD_ATYP = -2,  /* request: unknown address type: reply 08, close */
};
/* Method bits of a greeting */
enum { PXS_M_NONE = 1, PXS_M_USERPASS = 2 };
int pxs_s5_greeting(const unsigned char *b, size_t n, int *methods);
/* RFC 1929: user and pass NUL-terminated (at most 255 bytes each);
 * *ulen and *plen their lengths (a NUL inside is kept, and compared). */
int pxs_s5_userpass(const unsigned char *b, size_t n, char user[256], size_t *ulen,
                    char pass[256], size_t *plen);
/* cmd: 1 CONNECT, 2 BIND, 3 UDP ASSOCIATE, other values as sent */
int pxs_s5_request(const unsigned char *b, size_t n, int *cmd, struct pxs_target *t);
/* A reply (rep: 0 success, 1-8 failures) with the bound address family,
 * bytes (4 or 16, network order) and port; family 0: 0.0.0.0:0. Writes at
 * most 22 bytes; returns how many. */
size_t pxs_s5_reply(unsigned char *out, int rep, int family, const unsigned char *addr, int port);

/* ---- HTTP (RFC 9110, 9112) ---- */
struct pxs_http_req {
    char method[24];
    int is_connect;        /* CONNECT host:port */
    struct pxs_target t;
    const char *authority; /* plain requests: the URI's host[:port], for Host */
    size_t authority_len;
    const char *path;      /* origin-form: path and query ("/" when the URI had none) */
    size_t path_len;
    const char *target;    /* the request-target as sent (what a Digest uri= repeats) */
    size_t target_len;
    int minor;             /* HTTP/1.minor */
    const char *proxy_auth;/* the Proxy-Authorization value (not terminated), or NULL */
    size_t proxy_auth_len;
    int has_host;          /* a Host header came */
    /* the body of a plain request (RFC 9112 6.3; CONNECT has none) */
    int chunked;           /* Transfer-Encoding: chunked */
    int has_length;        /* a Content-Length came: content_length bytes */
    uint64_t content_length;
};
/* Length of the request head (request line, headers and the empty line),
 * 0 when it has not ended within n bytes. Leading empty lines count in. */
size_t pxs_http_head_len(const char *b, size_t n);
/* Parse a complete head of len bytes: 0, or the HTTP status to answer
 * (400 malformed or origin-form "GET / HTTP/1.1", 405 a method not
 * forwarded (PXS_HTTP_ALLOW are), 501 a scheme other than http://, 505 not
 * HTTP/1.x). A plain request's body must be framed beyond doubt, since the
 * origin reads the same bytes (RFC 9112 6.3): 400 for Content-Length and
 * Transfer-Encoding both, a Content-Length not a number (or two that differ),
 * a Transfer-Encoding whose last coding is not chunked (once) or in an
 * HTTP/1.0 request; 501 for a coding before chunked (not understood). */
#define PXS_HTTP_ALLOW "CONNECT, GET, HEAD, POST, PUT, DELETE, OPTIONS, PATCH"
int pxs_http_parse(const char *b, size_t len, struct pxs_http_req *r);
/* The head to send to the origin for a plain request: the request line in
 * origin-form, the client's headers without the hop-by-hop ones (Connection
 * and those it lists, Proxy-Connection, Proxy-Authorization, Keep-Alive, TE,
 * Trailer, Upgrade), Host added if it was missing, and `Connection: close`
 * (one request per connection). Returns the length written into out (cap
 * bytes), or 0 when it does not fit. */
/* Room enough for the rewrite of a head of len bytes (a line that ended in a
 * bare LF gets CR LF). */
#define PXS_REWRITE_CAP(len, authority_len) (2 * (len) + (authority_len) + 64)
size_t pxs_http_rewrite(const char *b, size_t len, const struct pxs_http_req *r, char *out,
                        size_t cap);

/* Where a plain request's body ends, fed the bytes after the head in
 * pieces as they come: Content-Length bytes, a chunked body (RFC 9112 7.1:
 * chunks, the last chunk, trailers, the empty line; every line ended by CR
 * LF), or nothing. What follows the body (a pipelined request) is not the
 * origin's: one request a connection. */
struct pxs_body {
    int chunked;
    int done;              /* the body has ended */
    uint64_t left;         /* bytes still to come (Content-Length, or of the chunk) */
    int state;             /* private: where in the chunked grammar */
    size_t line;           /* private: bytes of the current chunk-size or trailer line */
    int digits;            /* private: hex digits of the chunk size */
};
void pxs_body_init(struct pxs_body *bd, const struct pxs_http_req *r);
/* How many of b[0..n) belong to the body (n until it ends, fewer when it
 * ends inside them, 0 once it has ended), or -1 when they cannot be a
 * chunked body (then every later call says -1 too). */
ssize_t pxs_body_take(struct pxs_body *bd, const char *b, size_t n);

#endif
