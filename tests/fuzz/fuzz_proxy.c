/* fuzz_proxy.c: what a proxy answers. The first input byte picks the
 * protocol (SOCKS5, SOCKS4, HTTP CONNECT), whether credentials are given
 * and whether the target is a name, an IPv4 or an IPv6 address; the rest is
 * the proxy's side of the conversation, waiting in a socketpair (then end of
 * input) when cli_proxy_handshake() from src/cli/proxy.c runs, followed by
 * marker bytes (what the target would send first). It must return 0 or a
 * negative code with a reason, never read past the reply (on success the
 * rest, marker included, is still in the socket: SOCKS replies are measured
 * here by RFC 1928/1929 and SOCKS4's 8 bytes), never hang (the bytes end,
 * then EOF), and what it sent must parse back as the request for the target
 * (a prefix of it on failure). An HTTP CONNECT it accepts has a
 * 2xx status line by the grammar (`HTTP/1.1 2000` is no 200), and the bytes
 * after the reply's empty line are left in the socket, all of them. A 407
 * with credentials given is answered (Basic or Digest) on the same socket
 * when the reply's body has a Content-Length, and fails otherwise (no
 * second connection here); then the 2xx after the 407's body is the reply
 * that counts, and every byte after it is left in the socket too. */
#define _GNU_SOURCE
#include "cli.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#define CHECK(cond) do { if (!(cond)) abort(); } while (0)
#define MAX_REPLY 65536

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Checked here independently of proxy.c: the reply starts with a status
 * line `HTTP/1.D 2DD` then a space or the line end. Returns where the head
 * ends (after the empty line), or 0 when the reply is not an accepted one. */
static size_t http_ok_head(const uint8_t *p, size_t n)
{
    const uint8_t *nl = memchr(p, '\n', n);
    if (!nl)
        return 0;
    size_t line = (size_t)(nl - p);
    if (line > 0 && p[line - 1] == '\r')
        line--;
    if (line < 12 || memcmp(p, "HTTP/1.", 7) != 0 || p[7] < '0' || p[7] > '9' || p[8] != ' ' ||
        p[9] != '2' || p[10] < '0' || p[10] > '9' || p[11] < '0' || p[11] > '9' ||
        (line > 12 && p[12] != ' '))
        return 0;
    for (size_t i = (size_t)(nl - p) + 1; i < n; i++) {
        if (p[i] == '\n' && (p[i - 1] == '\n' || (p[i - 1] == '\r' && p[i - 2] == '\n')))
            return i + 1;
    }
    return 0;
}

/* The length of a 407 answered on the same socket: its head, then the
 * Content-Length bytes of its body (the header found here on its own: the
 * name in any case, the value digits with blanks around). 0 when there is no
 * complete head or no such header. */
static size_t http_407_len(const uint8_t *p, size_t n)
{
    size_t head = 0;
    for (size_t i = 1; i < n && !head; i++)
        if (p[i] == '\n' && (p[i - 1] == '\n' || (i >= 2 && p[i - 1] == '\r' && p[i - 2] == '\n')))
            head = i + 1;
    if (!head)
        return 0;
    for (size_t i = 0; i < head;) {
        const uint8_t *nl = memchr(p + i, '\n', head - i);
        size_t end = (size_t)(nl - p);
        if (end - i > 15 && strncasecmp((const char *)p + i, "content-length:", 15) == 0) {
            size_t j = i + 15, v = 0, digits = 0;
            while (j < end && (p[j] == ' ' || p[j] == '\t'))
                j++;
            while (j < end && p[j] >= '0' && p[j] <= '9' && digits < 12)
                v = v * 10 + (size_t)(p[j++] - '0'), digits++;
            while (j < end && (p[j] == ' ' || p[j] == '\t' || p[j] == '\r'))
                j++;
            return digits && j == end && v <= n - head ? head + v : 0;
        }
        i = end + 1;
    }
    return 0;
}

/* The SOCKS reply's length when the proxy accepted (RFC 1928: method
 * choice, RFC 1929 status when it chose username/password, then VER REP RSV
 * ATYP BND.ADDR BND.PORT; SOCKS4: 8 bytes). */
static size_t socks_reply_len(int type, const uint8_t *p, size_t n)
{
    if (type == PROXY_SOCKS4)
        return 8;
    size_t i = n >= 2 && p[1] == 2 ? 4 : 2;
    CHECK(n >= i + 4);
    size_t atyp = p[i + 3];
    CHECK(atyp == 1 || atyp == 3 || atyp == 4);
    if (atyp == 3)
        CHECK(n >= i + 5);
    return i + 4 + (atyp == 1 ? 4 : atyp == 4 ? 16 : 1 + (size_t)p[i + 4]) + 2;
}

/* What the client must send for the target (port 80), built here from the
 * RFC's layout: *len bytes into out. For SOCKS5 `method` is the proxy's
 * choice (2: the RFC 1929 request follows the greeting). */
static void socks_request(int type, int host, int auth, int method, uint8_t *out, size_t *len)
{
    static const uint8_t ip4[4] = {192, 0, 2, 7};
    static const uint8_t ip6[16] = {0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 7};
    static const char *const names[] = {"example.org", NULL, NULL, "a-long-name.example.org"};
    size_t k = 0;
    if (type == PROXY_SOCKS4) {
        out[k++] = 4, out[k++] = 1, out[k++] = 0, out[k++] = 80;
        if (host == 1)
            memcpy(out + k, ip4, 4);
        else
            memcpy(out + k, "\0\0\0\1", 4); /* SOCKS4a */
        k += 4;
        if (auth)
            memcpy(out + k, "user", 4), k += 4;
        out[k++] = 0;
        if (host != 1) {
            size_t l = strlen(names[host]);
            memcpy(out + k, names[host], l + 1);
            k += l + 1;
        }
        *len = k;
        return;
    }
    out[k++] = 5;
    if (auth)
        out[k++] = 2, out[k++] = 0, out[k++] = 2;
    else
        out[k++] = 1, out[k++] = 0;
    if (method == 2) {
        memcpy(out + k, "\1\4user\6secret", 13);
        k += 13;
    }
    out[k++] = 5, out[k++] = 1, out[k++] = 0;
    if (host == 1) {
        out[k++] = 1;
        memcpy(out + k, ip4, 4), k += 4;
    } else if (host == 2) {
        out[k++] = 4;
        memcpy(out + k, ip6, 16), k += 16;
    } else {
        size_t l = strlen(names[host]);
        out[k++] = 3;
        out[k++] = (uint8_t)l;
        memcpy(out + k, names[host], l), k += l;
    }
    out[k++] = 0, out[k++] = 80;
    *len = k;
}

/* HTTP: each request sent is `CONNECT A HTTP/1.1`, `Host: A`, maybe one
 * Proxy-Authorization (only with credentials), then the empty line, every
 * header line `Name: value` without control bytes (a realm's UTF-8 is
 * echoed as it came). Returns the complete requests
 * (the bytes after them: an incomplete one, only allowed on failure). */
static size_t http_requests(const uint8_t *p, size_t n, const char *authority, int auth, size_t *done)
{
    char first[128], host[128];
    snprintf(first, sizeof first, "CONNECT %s HTTP/1.1\r\n", authority);
    snprintf(host, sizeof host, "Host: %s\r\n", authority);
    size_t i = 0, count = 0;
    *done = 0;
    while (i < n) {
        size_t fl = strlen(first), hl = strlen(host);
        if (n - i < fl + hl + 2)
            break;
        CHECK(memcmp(p + i, first, fl) == 0 && memcmp(p + i + fl, host, hl) == 0);
        size_t j = i + fl + hl;
        int headers = 0;
        while (j + 1 < n && !(p[j] == '\r' && p[j + 1] == '\n')) {
            const uint8_t *eol = memmem(p + j, n - j, "\r\n", 2);
            if (!eol)
                return count;
            size_t l = (size_t)(eol - (p + j));
            CHECK(auth && headers++ == 0 && l > 21 && memcmp(p + j, "Proxy-Authorization: ", 21) == 0);
            for (size_t c = j; c < j + l; c++)
                CHECK(p[c] == '\t' || (p[c] >= 0x20 && p[c] != 0x7f)); /* no CTL: one line */
            j += l + 2;
        }
        if (j + 1 >= n)
            break;
        i = j + 2;
        count++;
        *done = i;
    }
    return count;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1 || size > MAX_REPLY + 1)
        return 0;
    static const int types[] = {PROXY_SOCKS5, PROXY_SOCKS4, PROXY_HTTP};
    static const char *const hosts[] = {"example.org", "192.0.2.7", "2001:db8::7",
                                        "a-long-name.example.org"};
    struct options o;
    memset(&o, 0, sizeof o);
    o.proxy_type = types[(data[0] & 3) % 3];
    o.proxy_auth = data[0] & 4 ? "user:secret" : NULL;
    o.host = hosts[(data[0] >> 3) & 3];
    o.timeout_ms = 2000; /* never reached: the reply ends in EOF */
    int hostk = (data[0] >> 3) & 3;
    int sv[2];
    CHECK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == 0);
    int big = MAX_REPLY * 4;
    setsockopt(sv[0], SOL_SOCKET, SO_SNDBUF, &big, sizeof big);
    setsockopt(sv[1], SOL_SOCKET, SO_RCVBUF, &big, sizeof big);
    setsockopt(sv[1], SOL_SOCKET, SO_SNDBUF, &big, sizeof big);
    setsockopt(sv[0], SOL_SOCKET, SO_RCVBUF, &big, sizeof big);
    /* the proxy's side: the reply, then what the target sends first */
    static const char marker[] = "\xff<first bytes from the target>\n";
    static uint8_t stream[MAX_REPLY + sizeof marker];
    size_t n = size - 1 + sizeof marker - 1;
    memcpy(stream, data + 1, size - 1);
    memcpy(stream + size - 1, marker, sizeof marker - 1);
    CHECK(write(sv[0], stream, n) == (ssize_t)n);
    CHECK(shutdown(sv[0], SHUT_WR) == 0);
    char why[512];
    int rc = cli_proxy_handshake(&o, sv[1], 80, why, sizeof why);
    CHECK(rc <= 0);
    CHECK(memchr(why, '\0', sizeof why) != NULL);
    if (rc < 0)
        CHECK(why[0] != '\0'); /* a failure always says why */
    /* after a 407 (with credentials) the reply that counts is a later one */
    int first_407 = n >= 12 && memcmp(stream + 9, "407", 3) == 0;
    static char rest[MAX_REPLY + sizeof marker];
    size_t got = 0;
    ssize_t k;
    if (rc == 0) {
        size_t head;
        if (o.proxy_type != PROXY_HTTP) {
            head = socks_reply_len(o.proxy_type, stream, n);
        } else if (!first_407) {
            head = http_ok_head(stream, n);
        } else {
            /* 407 then 2xx: the second reply starts right after the first's
             * body, and what follows it is the target's, left unread */
            size_t skip = http_407_len(stream, n);
            CHECK(o.proxy_auth != NULL && skip > 0);
            size_t ok = http_ok_head(stream + skip, n - skip);
            CHECK(ok > 0);
            head = skip + ok;
        }
        CHECK(head > 0 && head <= n);
        while ((k = read(sv[1], rest + got, sizeof rest - got)) > 0)
            got += (size_t)k;
        CHECK(got == n - head && memcmp(rest, stream + head, got) == 0);
    }
    /* what the client sent, read back and parsed */
    CHECK(shutdown(sv[1], SHUT_WR) == 0);
    static uint8_t req[4 * 8192];
    got = 0;
    while ((k = read(sv[0], req + got, sizeof req - got)) > 0)
        got += (size_t)k;
    if (o.proxy_type == PROXY_HTTP) {
        static const char *const authorities[] = {"example.org:80", "192.0.2.7:80", "[2001:db8::7]:80",
                                                  "a-long-name.example.org:80"};
        size_t done;
        size_t count = http_requests(req, got, authorities[hostk], o.proxy_auth != NULL, &done);
        CHECK(count <= 2 && (count == 2 ? o.proxy_auth != NULL : 1));
        if (rc == 0)
            CHECK(count >= 1 && done == got);
    } else if (o.proxy_type == PROXY_SOCKS4 && hostk == 2) {
        CHECK(rc < 0 && got == 0); /* SOCKS4 has no IPv6 */
    } else {
        uint8_t want[600];
        size_t wlen;
        socks_request(o.proxy_type, hostk, o.proxy_auth != NULL, n >= 2 && stream[0] == 5 ? stream[1] : 0,
                      want, &wlen);
        CHECK(got <= wlen && memcmp(req, want, got) == 0);
        if (rc == 0)
            CHECK(got == wlen);
    }
    close(sv[0]);
    close(sv[1]);
    return 0;
}
