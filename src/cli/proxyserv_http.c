/* proxyserv_http.c: the HTTP proxy server's request head (RFC 9110, 9112)
 * as pure functions over the bytes received: where it ends, what it asks
 * for (CONNECT host:port, or a plain request with an absolute http:// URI),
 * the head forwarded to the origin, and where the body that follows ends
 * (Content-Length or chunked: nothing after it is the origin's). No I/O
 * here (fuzz_proxyserv.c). */
#define _GNU_SOURCE
#include "cli.h"
#include "proxyserv.h"
#include "os.h"

#include <ctype.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

size_t pxs_http_head_len(const char *b, size_t n)
{
    size_t line = 0;  /* where the current line starts */
    int seen = 0;     /* a non-empty line came (leading empty lines are skipped) */
    for (size_t i = 0; i < n; i++) {
        if (b[i] != '\n')
            continue;
        size_t len = i - line;
        if (len > 0 && b[i - 1] == '\r')
            len--;
        if (len == 0 && seen)
            return i + 1;
        if (len > 0)
            seen = 1;
        line = i + 1;
    }
    return 0;
}

static int is_tchar(unsigned char c)
{
    return isalnum(c) || (c && strchr("!#$%&'*+-.^_`|~", c));
}

/* One line of b[*pos..end): its start and length without CR LF; *pos moves
 * past it. */
static const char *next_line(const char *b, size_t end, size_t *pos, size_t *len)
{
    const char *s = b + *pos;
    const char *nl = memchr(s, '\n', end - *pos);
    size_t l = nl ? (size_t)(nl - s) : end - *pos;
    *pos += l + (nl != NULL);
    if (l > 0 && s[l - 1] == '\r')
        l--;
    *len = l;
    return s;
}

/* host[:port] or [v6][:port] into t; default_port when none is given
 * (-1: a port is required). 0 or -1. */
static int parse_authority(const char *a, size_t n, int default_port, struct pxs_target *t)
{
    const char *host = a, *colon = NULL;
    size_t hlen;
    if (n > 0 && a[0] == '[') {
        const char *close = memchr(a, ']', n);
        if (!close)
            return -1;
        host = a + 1;
        hlen = (size_t)(close - host);
        if ((size_t)(close + 1 - a) < n) {
            if (close[1] != ':')
                return -1;
            colon = close + 1;
        }
    } else {
        colon = memchr(a, ':', n);
        hlen = colon ? (size_t)(colon - a) : n;
    }
    if (hlen == 0 || hlen >= sizeof t->host)
        return -1;
    for (size_t i = 0; i < hlen; i++) {
        unsigned char c = (unsigned char)host[i];
        if (c <= ' ' || c >= 0x7f || strchr("@/?#[]\\\"<>{}|^`", c))
            if (!(host != a && (c == ':' || c == '%' || c == '.'))) /* v6 in brackets */
                return -1;
    }
    memcpy(t->host, host, hlen);
    t->host[hlen] = '\0';
    unsigned char bin[16];
    if (host != a) {
        if (inet_pton(AF_INET6, t->host, bin) != 1)
            return -1;
        t->is_name = 0;
    } else {
        t->is_name = inet_pton(AF_INET, t->host, bin) != 1;
    }
    if (!colon) {
        if (default_port < 0)
            return -1;
        t->port = default_port;
        return 0;
    }
    size_t plen = n - (size_t)(colon + 1 - a);
    if (plen == 0 || plen > 5)
        return -1;
    int port = 0;
    for (size_t i = 0; i < plen; i++) {
        if (!isdigit((unsigned char)colon[1 + i]))
            return -1;
        port = port * 10 + (colon[1 + i] - '0');
    }
    if (port < 1 || port > 65535)
        return -1;
    t->port = port;
    return 0;
}

/* A method this proxy forwards with an absolute URI (others: 405). */
static int known_method(const char *m)
{
    static const char *const ok[] = {"GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "PATCH"};
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++)
        if (strcmp(m, ok[i]) == 0)
            return 1;
    return 0;
}

/* Content-Length: 1*DIGIT (a list, even "5, 5", is refused rather than
 * guessed at), below 10^18. 0 or -1. */
static int parse_length(const char *v, size_t n, uint64_t *out)
{
    if (n == 0 || n > 18)
        return -1;
    uint64_t x = 0;
    for (size_t i = 0; i < n; i++) {
        if (!isdigit((unsigned char)v[i]))
            return -1;
        x = x * 10 + (uint64_t)(v[i] - '0');
    }
    *out = x;
    return 0;
}

/* What Transfer-Encoding lines say, all of them one list in order. */
struct codings {
    int seen;          /* a Transfer-Encoding line came */
    int chunked;       /* times chunked was listed */
    int last_chunked;  /* the last coding so far is chunked */
    int other;         /* another coding came before it */
};

static void add_codings(struct codings *te, const char *v, size_t n)
{
    te->seen = 1;
    for (size_t i = 0; i < n;) {
        while (i < n && (v[i] == ' ' || v[i] == '\t' || v[i] == ','))
            i++;
        size_t s = i;
        while (i < n && v[i] != ',')
            i++;
        size_t e = i;
        while (e > s && (v[e - 1] == ' ' || v[e - 1] == '\t'))
            e--;
        if (e == s)
            continue; /* an empty list element */
        int is_chunked = e - s == 7 && strncasecmp(v + s, "chunked", 7) == 0;
        te->chunked += is_chunked;
        te->other |= !is_chunked;
        te->last_chunked = is_chunked;
    }
}

/* RFC 9112 6.1 and 6.3: a request body the proxy and the origin would both
 * frame the same way, or the status that refuses it. */
static int body_framing(const struct codings *te, int lengths, struct pxs_http_req *r)
{
    if (!te->seen)
        return lengths < 0 ? 400 : 0;
    if (lengths != 0 || r->minor == 0)
        return 400; /* both (a smuggling classic), or chunked in HTTP/1.0 */
    if (!te->last_chunked || te->chunked != 1)
        return 400; /* the length cannot be known */
    if (te->other)
        return 501; /* a coding this proxy does not know */
    r->chunked = 1;
    return 0;
}

int pxs_http_parse(const char *b, size_t len, struct pxs_http_req *r)
{
    memset(r, 0, sizeof *r);
    if (memchr(b, '\0', len))
        return 400;
    size_t pos = 0, l;
    const char *line;
    do {
        if (pos >= len)
            return 400;
        line = next_line(b, len, &pos, &l);
    } while (l == 0);
    /* METHOD SP TARGET SP HTTP/1.D */
    const char *sp1 = memchr(line, ' ', l);
    if (!sp1 || sp1 == line || (size_t)(sp1 - line) >= sizeof r->method)
        return 400;
    for (const char *p = line; p < sp1; p++)
        if (!is_tchar((unsigned char)*p))
            return 400;
    memcpy(r->method, line, (size_t)(sp1 - line));
    const char *target = sp1 + 1, *end = line + l;
    const char *sp2 = memchr(target, ' ', (size_t)(end - target));
    if (!sp2 || sp2 == target)
        return 400;
    size_t tlen = (size_t)(sp2 - target);
    for (size_t i = 0; i < tlen; i++)
        if ((unsigned char)target[i] <= ' ' || target[i] == 0x7f)
            return 400;
    const char *ver = sp2 + 1;
    size_t vlen = (size_t)(end - ver);
    if (vlen != 8 || memcmp(ver, "HTTP/", 5) != 0 || !isdigit((unsigned char)ver[5]) ||
        ver[6] != '.' || !isdigit((unsigned char)ver[7]))
        return 400;
    if (ver[5] != '1')
        return 505;
    r->minor = ver[7] - '0';
    r->target = target;
    r->target_len = tlen;

    if (strcmp(r->method, "CONNECT") == 0) {
        r->is_connect = 1;
        if (parse_authority(target, tlen, -1, &r->t) < 0)
            return 400;
    } else {
        if (tlen < 7 || strncasecmp(target, "http://", 7) != 0)
            /* origin-form: a request for us, not through us; other schemes: not served */
            return target[0] == '/' || target[0] == '*' ? 400 : 501;
        if (!known_method(r->method))
            return 405; /* as ncat (with an Allow header: proxyserv.c) */
        const char *auth = target + 7, *tend = target + tlen;
        const char *p = auth;
        while (p < tend && *p != '/' && *p != '?' && *p != '#')
            p++;
        if (memchr(auth, '@', (size_t)(p - auth)))
            return 400; /* user:pass@ in a URI: refused (RFC 9110 4.2.4) */
        if (parse_authority(auth, (size_t)(p - auth), 80, &r->t) < 0)
            return 400;
        r->authority = auth;
        r->authority_len = (size_t)(p - auth);
        const char *hash = memchr(p, '#', (size_t)(tend - p));
        r->path = p;
        r->path_len = (size_t)((hash ? hash : tend) - p);
    }
    /* headers: NAME ":" OWS VALUE OWS */
    struct codings te = {0};
    int lengths = 0; /* Content-Length lines; -1: unreadable or two that differ */
    while (pos < len) {
        line = next_line(b, len, &pos, &l);
        if (l == 0)
            break;
        if (line[0] == ' ' || line[0] == '\t')
            return 400; /* obsolete line folding */
        const char *colon = memchr(line, ':', l);
        if (!colon || colon == line)
            return 400;
        for (const char *p = line; p < colon; p++)
            if (!is_tchar((unsigned char)*p))
                return 400;
        size_t nlen = (size_t)(colon - line);
        for (const char *p = line; p < line + l; p++)
            if (*p == '\r')
                return 400; /* a bare CR inside a line */
        const char *v = colon + 1, *ve = line + l;
        while (v < ve && (*v == ' ' || *v == '\t'))
            v++;
        while (ve > v && (ve[-1] == ' ' || ve[-1] == '\t'))
            ve--;
        if (nlen == 19 && strncasecmp(line, "Proxy-Authorization", 19) == 0) {
            if (r->proxy_auth)
                return 400; /* two sets of credentials */
            r->proxy_auth = v;
            r->proxy_auth_len = (size_t)(ve - v);
        } else if (nlen == 4 && strncasecmp(line, "Host", 4) == 0) {
            r->has_host = 1;
        } else if (nlen == 14 && strncasecmp(line, "Content-Length", 14) == 0) {
            uint64_t n;
            if (lengths >= 0 && (parse_length(v, (size_t)(ve - v), &n) < 0 ||
                                 (lengths > 0 && n != r->content_length)))
                lengths = -1;
            else if (lengths >= 0)
                lengths++, r->content_length = n, r->has_length = 1;
        } else if (nlen == 17 && strncasecmp(line, "Transfer-Encoding", 17) == 0) {
            add_codings(&te, v, (size_t)(ve - v));
        }
    }
    if (r->is_connect) {
        r->content_length = 0; /* a tunnel: the bytes that follow are the client's */
        r->has_length = 0;
        return 0;
    }
    return body_framing(&te, lengths, r);
}

static int hop_by_hop(const char *b, size_t len, const char *name, size_t n)
{
    /* the body's framing goes with the body, whatever Connection lists: the
     * origin would read the body as the next request */
    if ((n == 14 && strncasecmp(name, "Content-Length", 14) == 0) ||
        (n == 17 && strncasecmp(name, "Transfer-Encoding", 17) == 0))
        return 0;
    static const char *const hop[] = {"Connection", "Proxy-Connection", "Proxy-Authorization",
                                      "Keep-Alive", "TE", "Trailer", "Upgrade", "Host"};
    for (size_t i = 0; i < sizeof hop / sizeof hop[0]; i++)
        if (strlen(hop[i]) == n && strncasecmp(name, hop[i], n) == 0)
            return 1; /* Host: replaced by the URI's authority (RFC 9112 3.2.2) */
    /* the names every Connection header lists */
    size_t pos = 0, l;
    while (pos < len) {
        const char *line = next_line(b, len, &pos, &l);
        const char *colon = memchr(line, ':', l);
        if (colon && colon - line == 10 && strncasecmp(line, "Connection", 10) == 0 &&
            cli_http_list_has(colon + 1, (size_t)(line + l - colon - 1), name, n))
            return 1;
    }
    return 0;
}

struct out {
    char *p;
    size_t len, cap;
    int full;
};

static void put(struct out *o, const char *s, size_t n)
{
    if (o->full || o->cap - o->len < n) {
        o->full = 1;
        return;
    }
    memcpy(o->p + o->len, s, n);
    o->len += n;
}

size_t pxs_http_rewrite(const char *b, size_t len, const struct pxs_http_req *r, char *out,
                        size_t cap)
{
    struct out o = {out, 0, cap, 0};
    put(&o, r->method, strlen(r->method));
    put(&o, " ", 1);
    if (r->path_len == 0 || r->path[0] != '/')
        put(&o, "/", 1);
    put(&o, r->path, r->path_len);
    put(&o, r->minor == 0 ? " HTTP/1.0\r\n" : " HTTP/1.1\r\n", 11);
    put(&o, "Host: ", 6);
    put(&o, r->authority, r->authority_len);
    put(&o, "\r\n", 2);
    size_t pos = 0, l;
    int first = 1;
    while (pos < len) {
        const char *line = next_line(b, len, &pos, &l);
        if (l == 0) {
            if (first)
                continue; /* leading empty lines */
            break;
        }
        if (first) {
            first = 0; /* the request line, written above */
            continue;
        }
        const char *colon = memchr(line, ':', l);
        if (!colon || hop_by_hop(b, len, line, (size_t)(colon - line)))
            continue;
        put(&o, line, l);
        put(&o, "\r\n", 2);
    }
    put(&o, "Connection: close\r\n\r\n", 21);
    return o.full ? 0 : o.len;
}

/* ---- the request body ---- */

enum {
    CK_SIZE,      /* chunk-size: hex digits */
    CK_EXT,       /* after the size: BWS ; chunk-ext (skipped) up to CR */
    CK_SIZE_LF,   /* the LF after the size line's CR */
    CK_DATA,      /* `left` bytes of chunk data */
    CK_DATA_CR,   /* the CR LF after them */
    CK_DATA_LF,
    CK_TRAILER,   /* the start of a trailer line, or the final CR */
    CK_FIELD,     /* inside a trailer line, up to CR */
    CK_FIELD_LF,
    CK_END_LF,    /* the final LF */
    CK_BAD,
};

/* Lines (chunk size and extensions, one trailer field) longer than this
 * are refused: a proxy reads them byte by byte. */
#define CK_LINE_MAX 4096

void pxs_body_init(struct pxs_body *bd, const struct pxs_http_req *r)
{
    memset(bd, 0, sizeof *bd);
    bd->chunked = r->chunked;
    bd->left = r->chunked ? 0 : r->content_length;
    bd->state = CK_SIZE;
    bd->done = !r->chunked && bd->left == 0;
}

static int hex_value(unsigned char c)
{
    return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10
           : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
}

/* One byte of a chunked body outside chunk data: the next state. */
static int chunked_step(struct pxs_body *bd, unsigned char c)
{
    if ((bd->state == CK_SIZE || bd->state == CK_EXT || bd->state == CK_FIELD) &&
        ++bd->line > CK_LINE_MAX)
        return CK_BAD;
    switch (bd->state) {
    case CK_SIZE: {
        int h = hex_value(c);
        if (h >= 0) {
            if (++bd->digits > 15)
                return CK_BAD; /* (no one sends 2^60 bytes; an overflow could be read short) */
            bd->left = bd->left * 16 + (uint64_t)h;
            return CK_SIZE;
        }
        if (bd->digits == 0)
            return CK_BAD;
        return c == '\r' ? CK_SIZE_LF : c == ';' || c == ' ' || c == '\t' ? CK_EXT : CK_BAD;
    }
    case CK_EXT:
        /* chunk-ext has no CR or LF of its own (not even quoted) */
        return c == '\r' ? CK_SIZE_LF : c == '\n' || c == 0 ? CK_BAD : CK_EXT;
    case CK_SIZE_LF:
        if (c != '\n')
            return CK_BAD;
        bd->line = 0;
        bd->digits = 0;
        return bd->left ? CK_DATA : CK_TRAILER; /* size 0: the last chunk */
    case CK_DATA_CR:
        return c == '\r' ? CK_DATA_LF : CK_BAD;
    case CK_DATA_LF:
        return c == '\n' ? CK_SIZE : CK_BAD;
    case CK_TRAILER:
        bd->line = 0;
        return c == '\r' ? CK_END_LF
               : c == '\n' || c == 0 || c == ' ' || c == '\t' ? CK_BAD : CK_FIELD;
    case CK_FIELD:
        return c == '\r' ? CK_FIELD_LF : c == '\n' || c == 0 ? CK_BAD : CK_FIELD;
    case CK_FIELD_LF:
        return c == '\n' ? CK_TRAILER : CK_BAD;
    case CK_END_LF:
        if (c != '\n')
            return CK_BAD;
        bd->done = 1;
        return CK_END_LF;
    default:
        return CK_BAD;
    }
}

ssize_t pxs_body_take(struct pxs_body *bd, const char *b, size_t n)
{
    if (bd->state == CK_BAD)
        return -1;
    if (bd->done)
        return 0;
    if (!bd->chunked) {
        size_t k = bd->left < n ? (size_t)bd->left : n;
        bd->left -= k;
        bd->done = bd->left == 0;
        return (ssize_t)k;
    }
    size_t i = 0;
    while (i < n && !bd->done) {
        if (bd->state == CK_DATA) {
            size_t k = bd->left < n - i ? (size_t)bd->left : n - i;
            bd->left -= k;
            i += k;
            if (bd->left == 0)
                bd->state = CK_DATA_CR;
            continue;
        }
        bd->state = chunked_step(bd, (unsigned char)b[i++]);
        if (bd->state == CK_BAD)
            return -1;
    }
    return (ssize_t)i;
}
