/* fuzz_proxyserv.c: the proxy server's parsers (src/cli/proxyserv_socks5.c,
 * proxyserv_http.c) on what a client may send. The first byte picks the
 * protocol: SOCKS5 (the greeting, credentials and request parsed in turn
 * from the rest, as the server takes them) or an HTTP request head. They
 * must never read past the bytes given nor claim more than there is; a
 * SOCKS5 target is a terminated host and a 16-bit port; an HTTP head that
 * parses is rewritten for the origin in the room the server gives, in
 * origin-form, with exactly one Host line and no Proxy-Authorization,
 * Proxy-Connection or Connection line other than "Connection: close", and
 * every Content-Length and Transfer-Encoding line kept (the body goes on
 * framed by them). The bytes after the head are fed to the body framer
 * whole and in pieces split where the input says: the same bytes are
 * taken either way, never more than given nor past a Content-Length, none
 * once the body has ended; a chunked body the framer says has ended is a
 * complete one by an independent decoder (and one it is still reading is a
 * valid beginning). The constant-time compare must agree with memcmp. */
#define _GNU_SOURCE
#include "cli.h"
#include "proxyserv.h"

#include <sys/socket.h>

#include <ctype.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define CHECK(cond) do { if (!(cond)) abort(); } while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void socks(const unsigned char *b, size_t n)
{
    int methods, cmd;
    int r = pxs_s5_greeting(b, n, &methods);
    CHECK(r <= (int)n && r >= PXS_S5_BAD);
    if (r <= 0)
        return;
    b += r, n -= (size_t)r;
    char user[256], pass[256];
    size_t ul, pl;
    if (methods & PXS_M_USERPASS) {
        r = pxs_s5_userpass(b, n, user, &ul, pass, &pl);
        CHECK(r <= (int)n && r >= PXS_S5_BAD);
        if (r <= 0)
            return;
        CHECK(ul < 256 && pl < 256 && (size_t)r == 3 + ul + pl);
        CHECK(cli_streq_ct(user, ul, pass, pl) == (ul == pl && memcmp(user, pass, ul) == 0));
        b += r, n -= (size_t)r;
    }
    struct pxs_target t;
    r = pxs_s5_request(b, n, &cmd, &t);
    CHECK(r <= (int)n && r >= PXS_S5_BAD_ATYP);
    if (r <= 0)
        return;
    CHECK(memchr(t.host, '\0', sizeof t.host) && t.host[0] && t.port >= 0 && t.port <= 65535);
    unsigned char reply[22];
    CHECK(pxs_s5_reply(reply, 0, AF_INET6, (const unsigned char *)t.host, t.port) == 22);
    CHECK(pxs_s5_reply(reply, 5, 0, NULL, 0) == 10);
}

/* lines of out that start with name: (case-insensitive) */
static int count_header(const char *out, size_t n, const char *name)
{
    int count = 0;
    size_t nl = strlen(name);
    for (size_t i = 0; i < n;) {
        const char *e = memchr(out + i, '\n', n - i);
        size_t len = e ? (size_t)(e - (out + i)) : n - i;
        if (len > nl && strncasecmp(out + i, name, nl) == 0 && out[i + nl] == ':')
            count++;
        i += len + 1;
    }
    return count;
}

/* An independent reading of RFC 9112 7.1 (as strict as the framer: CR LF
 * ends every line, an extension or trailer holds no LF or NUL, a trailer
 * does not start with a blank): the length of the complete chunked message
 * at the start of b, -1 if it is not one, -2 if it is a valid beginning. */
static long ref_chunked(const unsigned char *b, size_t n)
{
    size_t i = 0;
    for (;;) {
        uint64_t size = 0;
        size_t d = 0;
        for (; i < n && isxdigit(b[i]); i++, d++) {
            if (d >= 15)
                return -1;
            size = size * 16 + (uint64_t)(isdigit(b[i]) ? b[i] - '0' : (b[i] | 0x20) - 'a' + 10);
        }
        if (i == n)
            return -2;
        if (d == 0 || (b[i] != '\r' && b[i] != ';' && b[i] != ' ' && b[i] != '\t'))
            return -1;
        for (; i < n && b[i] != '\r'; i++) /* the extensions */
            if (b[i] == '\n' || b[i] == 0)
                return -1;
        if (i + 1 >= n)
            return -2;
        if (b[i + 1] != '\n')
            return -1;
        i += 2;
        if (size == 0)
            break;
        if (n - i < size + 2)
            return n - i <= size || b[n - 1] == '\r' ? -2 : -1;
        i += size;
        if (b[i] != '\r' || b[i + 1] != '\n')
            return -1;
        i += 2;
    }
    for (;;) { /* trailer lines, then the empty one */
        if (i == n)
            return -2;
        if (b[i] == '\r') {
            if (i + 1 == n)
                return -2;
            return b[i + 1] == '\n' ? (long)(i + 2) : -1;
        }
        if (b[i] == '\n' || b[i] == ' ' || b[i] == '\t')
            return -1;
        for (; i < n && b[i] != '\r'; i++)
            if (b[i] == '\n' || b[i] == 0)
                return -1;
        if (i + 1 >= n)
            return -2;
        if (b[i + 1] != '\n')
            return -1;
        i += 2;
    }
}

/* The body after the head: once whole, once in pieces. */
static void body(const struct pxs_http_req *r, const char *b, size_t n)
{
    struct pxs_body whole, parts;
    pxs_body_init(&whole, r);
    pxs_body_init(&parts, r);
    ssize_t k = pxs_body_take(&whole, b, n);
    CHECK(k >= -1 && k <= (ssize_t)n);
    size_t taken = 0;
    int bad = 0;
    for (size_t i = 0; i < n && !bad;) {
        size_t piece = 1 + (unsigned char)b[i] % 7; /* split where the bytes say */
        if (piece > n - i)
            piece = n - i;
        ssize_t t = pxs_body_take(&parts, b + i, piece);
        CHECK(t >= -1 && t <= (ssize_t)piece);
        if (t < 0)
            bad = 1;
        else if (t < (ssize_t)piece)
            CHECK(parts.done); /* only the end of the body stops it */
        if (t > 0)
            taken += (size_t)t;
        i += piece;
    }
    CHECK(bad == (k < 0));
    if (k < 0) {
        CHECK(pxs_body_take(&whole, "0\r\n\r\n", 5) == -1); /* for good */
        return;
    }
    CHECK(taken == (size_t)k && parts.done == whole.done);
    if (whole.done)
        CHECK(pxs_body_take(&whole, b, n) == 0);
    if (!r->chunked) {
        uint64_t want = r->content_length < n ? r->content_length : n;
        CHECK((uint64_t)k == want && whole.done == (r->content_length <= n));
        return;
    }
    long ref = ref_chunked((const unsigned char *)b, (size_t)k);
    CHECK(whole.done ? ref == k : ref == -2);
}

static void http(const char *b, size_t n)
{
    size_t hl = pxs_http_head_len(b, n);
    CHECK(hl <= n);
    if (hl == 0)
        return;
    CHECK(b[hl - 1] == '\n');
    struct pxs_http_req r;
    int status = pxs_http_parse(b, hl, &r);
    CHECK(status == 0 || (status >= 400 && status <= 505));
    if (status)
        return;
    CHECK(memchr(r.t.host, '\0', sizeof r.t.host) && r.t.host[0] && r.t.port > 0 &&
          r.t.port <= 65535);
    if (r.proxy_auth)
        CHECK(r.proxy_auth >= b && r.proxy_auth + r.proxy_auth_len <= b + hl);
    if (r.is_connect)
        return;
    CHECK(!(r.chunked && r.has_length));
    body(&r, b + hl, n - hl);
    CHECK(r.path >= b && r.path + r.path_len <= b + hl);
    CHECK(r.authority >= b && r.authority + r.authority_len <= b + hl);
    size_t cap = PXS_REWRITE_CAP(hl, r.authority_len); /* what proxyserv.c gives */
    char *out = malloc(cap);
    CHECK(out);
    size_t len = pxs_http_rewrite(b, hl, &r, out, cap);
    CHECK(len > 0 && len <= cap);
    CHECK(len >= 4 && memcmp(out + len - 4, "\r\n\r\n", 4) == 0);
    size_t ml = strlen(r.method);
    CHECK(memcmp(out, r.method, ml) == 0 && out[ml] == ' ' && out[ml + 1] == '/');
    CHECK(count_header(out, len, "Host") == 1);
    CHECK(count_header(out, len, "Proxy-Authorization") == 0);
    CHECK(count_header(out, len, "Proxy-Connection") == 0);
    CHECK(count_header(out, len, "Connection") == 1);
    CHECK(count_header(out, len, "Content-Length") == count_header(b, hl, "Content-Length"));
    CHECK(count_header(out, len, "Transfer-Encoding") == count_header(b, hl, "Transfer-Encoding"));
    CHECK(!r.chunked || count_header(out, len, "Transfer-Encoding") > 0);
    CHECK(!r.has_length || count_header(out, len, "Content-Length") > 0);
    free(out);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1 || size > PXS_HEAD_MAX + 1)
        return 0;
    /* a copy of exactly the input's size: ASan sees any read past it */
    unsigned char *b = malloc(size - 1 ? size - 1 : 1);
    CHECK(b);
    memcpy(b, data + 1, size - 1);
    if (data[0] & 1)
        http((const char *)b, size - 1);
    else
        socks(b, size - 1);
    free(b);
    return 0;
}
