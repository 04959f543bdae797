/* fuzz_proxyserv.c: the proxy server's parsers (src/cli/proxyserv_socks5.c,
 * proxyserv_http.c) on what a client may send. The first byte picks the
 * protocol: SOCKS5 (the greeting, credentials and request parsed in turn
 * from the rest, as the server takes them) or an HTTP request head. They
 * must never read past the bytes given nor claim more than there is; a
 * SOCKS5 target is a terminated host and a 16-bit port; an HTTP head that
 * parses is rewritten for the origin in the room the server gives, in
 * origin-form, with exactly one Host line and no Proxy-Authorization,
 * Proxy-Connection or Connection line other than "Connection: close". The
 * constant-time compare must agree with memcmp. */
#define _GNU_SOURCE
#include "cli.h"
#include "proxyserv.h"

#include <sys/socket.h>

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
