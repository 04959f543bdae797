/* proxy.c: `duplex connect -x`: once the TCP connection to the proxy is up,
 * ask it for the target (SOCKS5 RFC 1928 + RFC 1929 auth, SOCKS4/4a, HTTP
 * CONNECT) on the non-blocking socket with poll(2) and one deadline. The
 * proxy's reply is read exactly (HTTP: byte by byte up to the blank line), so
 * the first bytes the target sends stay in the socket for the session. */
#define _GNU_SOURCE
#include "cli.h"
#include "os.h"

#include <errno.h>
#include <stdarg.h>
#include <strings.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define HANDSHAKE_DEFAULT_MS 10000
#define HTTP_REPLY_MAX 16384

static const struct {
    const char *name;
    int type;
} type_names[] = {
    {"socks5", PROXY_SOCKS5}, {"5", PROXY_SOCKS5}, {"socks4", PROXY_SOCKS4},
    {"4", PROXY_SOCKS4},      {"http", PROXY_HTTP}, {"connect", PROXY_HTTP},
};

int cli_proxy_type(const char *text)
{
    for (size_t i = 0; i < sizeof type_names / sizeof type_names[0]; i++)
        if (strcasecmp(text, type_names[i].name) == 0)
            return type_names[i].type;
    return -1;
}

const char *cli_proxy_type_name(int type)
{
    return type == PROXY_SOCKS4 ? "socks4" : type == PROXY_HTTP ? "http" : "socks5";
}

/* One handshake: the socket, its deadline, and where the cause goes. */
struct hs {
    int fd;
    uint64_t deadline_ms;
    char *why;
    size_t whylen;
    const char *what;  /* "SOCKS5 connect to example.org:80" */
    int (*reconnect)(void *arg); /* a new connection to the proxy: fd, or < 0 (NULL: none) */
    void *reconnect_arg;
};

/* Sets the cause ("WHAT: text") and returns code. */
static int fail(struct hs *h, int code, const char *fmt, ...) CLI_PRINTF(3, 4);
static int fail(struct hs *h, int code, const char *fmt, ...)
{
    char cause[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cause, sizeof cause, fmt, ap);
    va_end(ap);
    snprintf(h->why, h->whylen, "%s: %s", h->what, cause);
    return code;
}

/* Wait for events on the socket until the deadline: 0, or a code (set). */
static int wait_for(struct hs *h, short events)
{
    int rc = cli_wait_fd(h->fd, events, h->deadline_ms);
    if (rc == DX_ETIMEDOUT)
        return fail(h, rc, "timed out");
    if (rc == -EINTR)
        return fail(h, rc, "interrupted");
    if (rc < 0)
        return fail(h, rc, "%s", dx_strerror(rc));
    return 0;
}

static int send_all(struct hs *h, const void *data, size_t len)
{
    const unsigned char *p = data;
    while (len > 0) {
        ssize_t n = dx__sock_send(h->fd, p, len, MSG_NOSIGNAL);
        if (n > 0) {
            p += n;
            len -= (size_t)n;
        } else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) {
            int rc = wait_for(h, POLLOUT);
            if (rc < 0)
                return rc;
        } else {
            int e = n < 0 ? errno : EPIPE;
            return fail(h, -e, "sending to the proxy: %s", dx_strerror(-e));
        }
    }
    return 0;
}

/* Read exactly len bytes (never more). */
static int recv_exact(struct hs *h, void *data, size_t len)
{
    unsigned char *p = data;
    while (len > 0) {
        ssize_t n = dx__sock_recv(h->fd, p, len, 0);
        if (n > 0) {
            p += n;
            len -= (size_t)n;
        } else if (n == 0) {
            return fail(h, -ECONNRESET, "the proxy closed the connection before its reply "
                        "was complete (a protocol error, or not a %s proxy)",
                        strncmp(h->what, "HTTP", 4) == 0 ? "HTTP" : strncmp(h->what, "SOCKS4", 6) == 0
                        ? "SOCKS4" : "SOCKS5");
        } else if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) {
            int rc = wait_for(h, POLLIN);
            if (rc < 0)
                return rc;
        } else {
            int e = errno;
            return fail(h, -e, "reading the proxy's reply: %s", dx_strerror(-e));
        }
    }
    return 0;
}

/* --proxy-dns local/both: the target name resolved here, as ncat does it:
 * IPv4 only for SOCKS4, else as -4/-6 say; the first address. 0 with the
 * address in addr and *family set, or the resolver's code. */
static int resolve_target(const struct options *o, const char *name, unsigned char addr[16],
                          int *family)
{
    dx_addr *addrs = NULL;
    int n = dx_resolve(name, "0", o->proxy_type == PROXY_SOCKS4 ? AF_INET : o->family, 0, &addrs);
    if (n <= 0) {
        free(addrs);
        return n < 0 ? n : DX_ENOADDR;
    }
    const struct sockaddr *sa = (const struct sockaddr *)&addrs[0].ss;
    *family = sa->sa_family;
    if (*family == AF_INET)
        memcpy(addr, &((const struct sockaddr_in *)sa)->sin_addr, 4);
    else
        memcpy(addr, &((const struct sockaddr_in6 *)sa)->sin6_addr, 16);
    free(addrs);
    return 0;
}

/* The target as an address when it is numeric (or -n), else 0 (a name).
 * Returns AF_INET / AF_INET6 with the bytes in addr, 0 for a name. */
static int target_address(const char *host, unsigned char addr[16], char *bare, size_t barelen)
{
    size_t n = strlen(host);
    if (host[0] == '[' && n >= 2 && n - 2 < barelen) {
        memcpy(bare, host + 1, n - 2);
        bare[n - 2] = '\0';
    } else {
        snprintf(bare, barelen, "%s", host);
    }
    if (inet_pton(AF_INET, bare, addr) == 1)
        return AF_INET;
    if (inet_pton(AF_INET6, bare, addr) == 1)
        return AF_INET6;
    return 0;
}

static const char *socks5_reply_text(int rep)
{
    static const char *const text[] = {
        "succeeded",
        "general SOCKS server failure",
        "connection not allowed by ruleset",
        "Network unreachable",
        "Host unreachable",
        "Connection refused",
        "TTL expired",
        "Command not supported",
        "Address type not supported",
    };
    return rep >= 0 && rep < (int)(sizeof text / sizeof text[0]) ? text[rep] : "unknown error";
}

static int socks5_reply_code(int rep)
{
    switch (rep) {
    case 3: return -ENETUNREACH;
    case 4: return -EHOSTUNREACH;
    case 5: return -ECONNREFUSED;
    default: return -ECONNABORTED;
    }
}

static int socks5(struct hs *h, const struct options *o, int family, const unsigned char *addr,
                  const char *host, int port)
{
    unsigned char buf[600];
    const char *user = NULL, *pass = NULL;
    size_t ulen = 0, plen = 0;
    if (o->proxy_auth) {
        const char *colon = strchr(o->proxy_auth, ':'); /* none: an empty password */
        user = o->proxy_auth;
        ulen = colon ? (size_t)(colon - user) : strlen(user);
        pass = colon ? colon + 1 : "";
        plen = strlen(pass);
    }
    /* greeting: no authentication, and username/password when we have them */
    unsigned char hello[4] = {5, 1, 0, 2};
    if (user)
        hello[1] = 2;
    int rc = send_all(h, hello, user ? 4 : 3);
    if (rc == 0)
        rc = recv_exact(h, buf, 2);
    if (rc < 0)
        return rc;
    if (buf[0] != 5)
        return fail(h, -EPROTO, "not a SOCKS5 proxy (its reply starts with 0x%02x)%s", buf[0],
                    /* "HTTP/1.x 400": ncat's --proxy defaults to HTTP */
                    buf[0] == 'H' ? ": an HTTP proxy? add -X http (duplex's default type is "
                    "socks5, ncat's is http)" : "");
    if (buf[1] == 0xff || (buf[1] == 2 && !user) || (buf[1] != 0 && buf[1] != 2))
        return fail(h, -EACCES, "%s", user ? "the proxy accepts none of our authentication "
                    "methods (none, username/password)" : "the proxy requires authentication "
                    "(--proxy-auth USER:PASS)");
    if (buf[1] == 2) { /* RFC 1929 */
        size_t k = 0;
        buf[k++] = 1;
        buf[k++] = (unsigned char)ulen;
        memcpy(buf + k, user, ulen);
        k += ulen;
        buf[k++] = (unsigned char)plen;
        memcpy(buf + k, pass, plen);
        k += plen;
        rc = send_all(h, buf, k);
        memset(buf, 0, k);
        if (rc == 0)
            rc = recv_exact(h, buf, 2);
        if (rc < 0)
            return rc;
        if (buf[0] != 1) /* RFC 1929: the sub-negotiation's version */
            return fail(h, -EPROTO, "not a username/password reply (it starts with 0x%02x)", buf[0]);
        if (buf[1] != 0)
            return fail(h, -EACCES, "authentication failed (user '%.*s')", (int)ulen, user);
    }
    /* CONNECT */
    size_t k = 0;
    buf[k++] = 5;
    buf[k++] = 1;
    buf[k++] = 0;
    if (family == AF_INET) {
        buf[k++] = 1;
        memcpy(buf + k, addr, 4);
        k += 4;
    } else if (family == AF_INET6) {
        buf[k++] = 4;
        memcpy(buf + k, addr, 16);
        k += 16;
    } else {
        size_t n = strlen(host);
        buf[k++] = 3;
        buf[k++] = (unsigned char)n;
        memcpy(buf + k, host, n);
        k += n;
    }
    buf[k++] = (unsigned char)(port >> 8);
    buf[k++] = (unsigned char)port;
    rc = send_all(h, buf, k);
    if (rc == 0)
        rc = recv_exact(h, buf, 4);
    if (rc < 0)
        return rc;
    if (buf[0] != 5)
        return fail(h, -EPROTO, "not a SOCKS5 reply (it starts with 0x%02x)", buf[0]);
    if (buf[1] != 0)
        return fail(h, socks5_reply_code(buf[1]), "%s (reply %d)", socks5_reply_text(buf[1]), buf[1]);
    /* BND.ADDR and BND.PORT: read them all, nothing more */
    size_t rest;
    if (buf[3] == 1)
        rest = 4 + 2;
    else if (buf[3] == 4)
        rest = 16 + 2;
    else if (buf[3] == 3) {
        rc = recv_exact(h, buf, 1);
        if (rc < 0)
            return rc;
        rest = (size_t)buf[0] + 2;
    } else
        return fail(h, -EPROTO, "bad address type %d in the proxy's reply", buf[3]);
    return recv_exact(h, buf, rest);
}

static int socks4(struct hs *h, const struct options *o, int family, const unsigned char *addr,
                  const char *host, int port)
{
    unsigned char buf[600];
    size_t k = 0;
    size_t ulen = 0;
    if (o->proxy_auth) {
        const char *colon = strchr(o->proxy_auth, ':');
        ulen = colon ? (size_t)(colon - o->proxy_auth) : strlen(o->proxy_auth);
    }
    buf[k++] = 4;
    buf[k++] = 1;
    buf[k++] = (unsigned char)(port >> 8);
    buf[k++] = (unsigned char)port;
    if (family == AF_INET) {
        memcpy(buf + k, addr, 4);
    } else { /* SOCKS4a: 0.0.0.1 and the name after the user id */
        memcpy(buf + k, "\0\0\0\1", 4);
    }
    k += 4;
    memcpy(buf + k, o->proxy_auth ? o->proxy_auth : "", ulen);
    k += ulen;
    buf[k++] = 0;
    if (family != AF_INET) {
        size_t n = strlen(host);
        memcpy(buf + k, host, n);
        k += n;
        buf[k++] = 0;
    }
    int rc = send_all(h, buf, k);
    if (rc == 0)
        rc = recv_exact(h, buf, 8);
    if (rc < 0)
        return rc;
    if (buf[0] != 0 && buf[0] != 4)
        return fail(h, -EPROTO, "not a SOCKS4 reply (it starts with 0x%02x)", buf[0]);
    switch (buf[1]) {
    case 0x5a:
        return 0;
    case 0x5b:
        return fail(h, -ECONNREFUSED, "request rejected or failed (reply 0x5b)");
    case 0x5c:
        return fail(h, -EACCES, "request rejected: the proxy cannot reach identd on this host "
                    "(reply 0x5c)");
    case 0x5d:
        return fail(h, -EACCES, "request rejected: identd reports another user id (reply 0x5d)");
    default:
        return fail(h, -EPROTO, "unknown SOCKS4 reply 0x%02x", buf[1]);
    }
}

/* At most the first n bytes of in, for a message: bytes other than
 * printable ASCII as \xNN (a proxy's reply must not drive the terminal). */
static void escaped(const char *in, size_t n, char *out, size_t outlen)
{
    size_t k = 0;
    for (size_t i = 0; i < n && k + 5 <= outlen; i++) {
        unsigned char c = (unsigned char)in[i];
        if (c >= 0x20 && c < 0x7f && c != '\\')
            out[k++] = (char)c;
        else
            k += (size_t)snprintf(out + k, outlen - k, "\\x%02x", c);
    }
    out[k] = '\0';
}

static int is_digit(char c) { return c >= '0' && c <= '9'; }

/* A field value or reason phrase: visible bytes, spaces and tabs only. */
static int is_text(const char *p, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)p[i];
        if ((c < 0x20 && c != '\t') || c == 0x7f)
            return 0;
    }
    return 1;
}

/* The reply head (len bytes up to the blank line), strictly: the status
 * line `HTTP/1.D SP DDD [SP reason]` (the reason may be missing, as some
 * proxies send it), then `name: value` lines; each line ends with CRLF (or a
 * bare LF). Returns the status code with the reason phrase (reason, its
 * length rlen), or -1 with the faulty line (bad, its length blen). */
static int http_reply_check(const char *reply, size_t len, const char **reason, size_t *rlen,
                            const char **bad, size_t *blen)
{
    const char *end = memchr(reply, '\n', len);
    size_t n = end ? (size_t)(end - reply) : len;
    if (n > 0 && reply[n - 1] == '\r')
        n--;
    *bad = reply;
    *blen = n;
    const char *c = reply + 9;
    if (n < 12 || memcmp(reply, "HTTP/1.", 7) != 0 || !is_digit(reply[7]) || reply[8] != ' ' ||
        !is_digit(c[0]) || c[0] == '0' || !is_digit(c[1]) || !is_digit(c[2]) ||
        (n > 12 && c[3] != ' ') || !is_text(reply, n) || !end)
        return -1;
    /* the header lines, up to the empty one */
    for (const char *p = end + 1; p < reply + len;) {
        const char *e = memchr(p, '\n', (size_t)(reply + len - p));
        if (!e)
            break; /* not reached: the head ends with a line end */
        size_t m = (size_t)(e - p);
        if (m > 0 && p[m - 1] == '\r')
            m--;
        if (m == 0)
            break;
        const char *colon = memchr(p, ':', m);
        int folded = p[0] == ' ' || p[0] == '\t'; /* obsolete line folding */
        if (!is_text(p, m) || (!folded && (!colon || colon == p || memchr(p, ' ', (size_t)(colon - p)) ||
                                           memchr(p, '\t', (size_t)(colon - p))))) {
            *bad = p;
            *blen = m;
            return -1;
        }
        p = e + 1;
    }
    *reason = c + 4;
    *rlen = n > 12 ? n - 13 : 0;
    return (c[0] - '0') * 100 + (c[1] - '0') * 10 + (c[2] - '0');
}

/* The value of the next header line named name after *from (the status
 * line at first: *from = NULL), in the checked head: its start (length in
 * *vlen, spaces trimmed), or NULL when there is none. */
static const char *header_next(const char *reply, size_t len, const char *name, const char **from,
                               size_t *vlen)
{
    const char *p = *from ? *from : reply;
    size_t nlen = strlen(name);
    for (;;) {
        const char *e = memchr(p, '\n', (size_t)(reply + len - p));
        if (!e)
            return NULL;
        p = e + 1;
        e = memchr(p, '\n', (size_t)(reply + len - p));
        if (!e)
            return NULL;
        size_t m = (size_t)(e - p);
        if (m > 0 && p[m - 1] == '\r')
            m--;
        if (m > nlen && p[nlen] == ':' && strncasecmp(p, name, nlen) == 0) {
            const char *v = p + nlen + 1, *end = p + m;
            while (v < end && (*v == ' ' || *v == '\t'))
                v++;
            while (end > v && (end[-1] == ' ' || end[-1] == '\t'))
                end--;
            *from = p;
            *vlen = (size_t)(end - v);
            return v;
        }
    }
}

/* The reply head, byte by byte up to its empty line (nothing more is read):
 * its length, or a code (set). */
static int http_read_head(struct hs *h, char *reply, size_t *len)
{
    *len = 0;
    for (;;) {
        if (*len == HTTP_REPLY_MAX)
            return fail(h, -EPROTO, "the proxy's reply headers exceed %d bytes", HTTP_REPLY_MAX);
        int rc = recv_exact(h, reply + *len, 1);
        if (rc < 0)
            return rc;
        (*len)++;
        size_t n = *len;
        /* the empty line: CRLF, or a bare LF, after the last line's end */
        if (reply[n - 1] == '\n' && n >= 2 &&
            (reply[n - 2] == '\n' || (n >= 3 && reply[n - 2] == '\r' && reply[n - 3] == '\n')))
            return 0;
    }
}

#define HTTP_BODY_SKIP_MAX 65536 /* a longer 407 body: reconnect rather than read it */
#define HTTP_CHALLENGES 8

/* After a 407: can the next request go on this connection? Only when the
 * reply says how long its body is (Content-Length, read here and dropped)
 * and that the connection stays (HTTP/1.1 without Connection: close, or
 * HTTP/1.0 with keep-alive). 1 yes, 0 reconnect, or a code (set). */
static int http_skip_body(struct hs *h, const char *reply, size_t len)
{
    const char *from = NULL, *v;
    size_t vlen;
    int keep = reply[7] == '1'; /* HTTP/1.1 */
    while ((v = header_next(reply, len, "Connection", &from, &vlen)) != NULL) {
        if (cli_http_list_has(v, vlen, "close", 5))
            keep = 0;
        else if (cli_http_list_has(v, vlen, "keep-alive", 10))
            keep = 1;
    }
    from = NULL;
    if (header_next(reply, len, "Transfer-Encoding", &from, &vlen))
        return 0; /* chunked: not worth parsing for an error page */
    from = NULL;
    v = header_next(reply, len, "Content-Length", &from, &vlen);
    if (!keep || !v || vlen == 0 || vlen > 9 || header_next(reply, len, "Content-Length", &from, &vlen))
        return 0; /* the body runs to the close, or its length is odd: a new connection */
    size_t body = 0;
    for (size_t i = 0; i < vlen; i++) {
        if (!is_digit(v[i]))
            return 0;
        body = body * 10 + (size_t)(v[i] - '0');
    }
    if (body > HTTP_BODY_SKIP_MAX)
        return 0;
    char sink[4096];
    while (body > 0) {
        size_t k = body < sizeof sink ? body : sizeof sink;
        int rc = recv_exact(h, sink, k);
        if (rc < 0)
            return rc;
        body -= k;
    }
    return 1;
}

/* The challenges of every Proxy-Authenticate line (a malformed line is
 * skipped: its schemes are not offered), and their scheme names for
 * messages. Returns the count. */
static int http_challenges(const char *reply, size_t len, struct cli_auth *ch, char *names, size_t nlen)
{
    const char *from = NULL, *v;
    size_t vlen;
    int n = 0;
    names[0] = '\0';
    while ((v = header_next(reply, len, "Proxy-Authenticate", &from, &vlen)) != NULL) {
        int k = cli_auth_parse(v, vlen, ch + n, HTTP_CHALLENGES - n);
        for (int i = 0; i < k; i++) {
            const char *alg = cli_auth_param(&ch[n + i], "algorithm");
            size_t used = strlen(names);
            char sch[64], al[84];
            size_t sl = strlen(ch[n + i].scheme), al_n = alg ? strlen(alg) : 0;
            escaped(ch[n + i].scheme, sl < 15 ? sl : 15, sch, sizeof sch);
            escaped(alg ? alg : "", al_n < 20 ? al_n : 20, al, sizeof al);
            snprintf(names + used, nlen - used, "%s%s%s%s", used ? ", " : "", sch, alg ? " " : "", al);
        }
        if (k > 0)
            n += k;
    }
    return n;
}

static int http_connect(struct hs *h, const struct options *o, const char *authority)
{
    char req[8192], shown[4 * 100 + 1], names[256] = "";
    const char *scheme = NULL;
    int sent_auth = 0, rc;
    struct cli_auth *ch = malloc(HTTP_CHALLENGES * sizeof *ch);
    char *reply = malloc(HTTP_REPLY_MAX + 1);
    char *auth = malloc(4096);
    if (!ch || !reply || !auth) {
        rc = fail(h, -ENOMEM, "%s", dx_strerror(-ENOMEM));
        goto out;
    }
    /* as ncat: the request without credentials first; on a 407 once more
     * with the answer to the strongest challenge (again after stale=true) */
    for (int round = 0;; round++) {
        int n = snprintf(req, sizeof req, "CONNECT %s HTTP/1.1\r\nHost: %s\r\n%s%s%s\r\n", authority, authority,
                         sent_auth ? "Proxy-Authorization: " : "", sent_auth ? auth : "", sent_auth ? "\r\n" : "");
        rc = n > 0 && (size_t)n < sizeof req ? send_all(h, req, (size_t)n)
                                             : fail(h, -EOVERFLOW, "the request is too long");
        memset(req, 0, sizeof req);
        size_t len = 0;
        if (rc == 0)
            rc = http_read_head(h, reply, &len);
        if (rc < 0)
            goto out;
        const char *reason, *bad;
        size_t rlen = 0, blen;
        int code = http_reply_check(reply, len, &reason, &rlen, &bad, &blen);
        if (code < 0) {
            escaped(bad, blen < 60 ? blen : 60, shown, sizeof shown);
            rc = fail(h, -EPROTO, "%s: '%s'", bad == reply ? "not an HTTP reply"
                      : "bad header line in the HTTP reply", shown);
            goto out;
        }
        escaped(reason, rlen < 100 ? rlen : 100, shown, sizeof shown);
        if (code / 100 == 2) {
            if (sent_auth) {
                const char *colon = strchr(o->proxy_auth, ':');
                int ulen = colon ? (int)(colon - o->proxy_auth) : (int)strlen(o->proxy_auth);
                cli_info(o, "%s: the proxy took the credentials of user '%.*s' (%s)", h->what, ulen,
                         o->proxy_auth, scheme);
            }
            rc = 0;
            goto out;
        }
        if (code != 407) {
            rc = fail(h, -ECONNREFUSED, "%d %s", code, shown);
            goto out;
        }
        if (!*shown)
            snprintf(shown, sizeof shown, "Proxy Authentication Required");
        if (!o->proxy_auth) {
            rc = fail(h, -EACCES, "407 %s: the proxy wants credentials: give --proxy-auth USER:PASS", shown);
            goto out;
        }
        int nch = http_challenges(reply, len, ch, names, sizeof names);
        int stale = 0;
        for (int i = 0; i < nch; i++) {
            const char *st = cli_auth_param(&ch[i], "stale");
            if (strcasecmp(ch[i].scheme, "Digest") == 0 && st && strcasecmp(st, "true") == 0)
                stale = 1;
        }
        const char *colon = strchr(o->proxy_auth, ':');
        int ulen = colon ? (int)(colon - o->proxy_auth) : (int)strlen(o->proxy_auth);
        if (sent_auth && !(stale && round == 1 && strncmp(scheme, "Digest", 6) == 0)) {
            rc = fail(h, -EACCES, "credentials refused for user '%.*s' (%s; 407 %s)", ulen, o->proxy_auth,
                      scheme, shown);
            goto out;
        }
        int m = cli_http_auth_answer(ch, nch, "CONNECT", authority, o->proxy_auth, auth, 4096, &scheme);
        if (m <= 0) {
            rc = m == 0 ? fail(h, -EACCES, "407 %s: the proxy offers no scheme duplex can answer "
                               "(duplex: Basic, Digest MD5 or SHA-256 with qop=auth; offered: %s)",
                               shown, *names ? names : "none")
                        : fail(h, -EACCES, "407 %s: the credentials do not fit in a request", shown);
            goto out;
        }
        sent_auth = 1;
        rc = http_skip_body(h, reply, len);
        if (rc < 0)
            goto out;
        if (rc == 0) { /* the proxy closes this connection: another one */
            if (!h->reconnect) {
                rc = fail(h, -ECONNRESET, "407 %s, and the proxy closes the connection", shown);
                goto out;
            }
            dx__fd_close(h->fd);
            h->fd = h->reconnect(h->reconnect_arg);
            if (h->fd < 0) {
                rc = fail(h, h->fd, "reconnecting to send the credentials: %s", dx_strerror(h->fd));
                goto out;
            }
            (void)dx_set_nonblock(h->fd, 1);
        }
    }
out:
    if (auth)
        memset(auth, 0, 4096);
    free(auth);
    free(reply);
    free(ch);
    return rc;
}

int cli_proxy_handshake(const struct options *o, int fd, int port, char *why, size_t whylen)
{
    return cli_proxy_handshake_ex(o, &fd, port, NULL, NULL, why, whylen);
}

int cli_proxy_handshake_ex(const struct options *o, int *fd, int port, int (*reconnect)(void *arg), void *arg,
                           char *why, size_t whylen)
{
    char bare[300], authority[320], what[400];
    unsigned char addr[16];
    int family = target_address(o->host, addr, bare, sizeof bare);
    if (family == AF_INET6)
        snprintf(authority, sizeof authority, "[%s]:%d", bare, port);
    else
        snprintf(authority, sizeof authority, "%s:%d", bare, port);
    snprintf(what, sizeof what, "%s %s", o->proxy_type == PROXY_SOCKS4 ? "SOCKS4 connect to"
             : o->proxy_type == PROXY_HTTP ? "HTTP CONNECT" : "SOCKS5 connect to", authority);
    int resolved = family == 0 && !o->numeric &&
                   (o->proxy_dns == PROXY_DNS_LOCAL || o->proxy_dns == PROXY_DNS_BOTH)
                       ? resolve_target(o, bare, addr, &family) : 0;
    if (family && resolved == 0) {
        /* --proxy-dns local/both: the proxy gets the address (as ncat) */
        char text[INET6_ADDRSTRLEN] = "";
        inet_ntop(family, addr, text, sizeof text);
        snprintf(authority, sizeof authority, family == AF_INET6 ? "[%s]:%d" : "%s:%d", text,
                 port);
    }
    struct hs h = {
        .fd = *fd,
        .reconnect = reconnect,
        .reconnect_arg = arg,
        .deadline_ms = cli_now_ms() + (uint64_t)(o->timeout_ms > 0 ? o->timeout_ms : HANDSHAKE_DEFAULT_MS),
        .why = why,
        .whylen = whylen,
        .what = what,
    };
    why[0] = '\0';
    if (resolved < 0 && o->proxy_dns == PROXY_DNS_LOCAL)
        return fail(&h, resolved, "--proxy-dns local: resolve %s: %s", bare, dx_strerror(resolved));
    if (family == 0 && o->numeric)
        return fail(&h, DX_EBADADDR, "-n: '%s' is not a numeric address", bare);
    (void)dx_set_nonblock(*fd, 1);
    int rc;
    switch (o->proxy_type) {
    case PROXY_SOCKS4:
        if (family == AF_INET6)
            return fail(&h, DX_EBADADDR, "SOCKS4 has no IPv6 addresses");
        return socks4(&h, o, family, addr, bare, port);
    case PROXY_HTTP:
        rc = http_connect(&h, o, authority);
        *fd = h.fd; /* another connection after a 407 that closed the first */
        return rc;
    default:
        return socks5(&h, o, family, addr, bare, port);
    }
}
