/* proxyproto.c: the PROXY protocol (haproxy's proxy-protocol.txt, v1 text
 * and v2 binary): a load balancer's header naming the client it relays
 * (listen/relay --accept-proxy) and the header relay --send-proxy puts
 * before each target connection. Pure functions over buffers: the sockets
 * are listeners.c's and relay.c's. */
#define _GNU_SOURCE
#include "cli.h"
#include "os.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

static const unsigned char v2_sig[12] = {0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D,
                                         0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A};
static const char v1_sig[] = "PROXY ";
#define V1_SIG_LEN 6
#define V2_FIXED 16
/* v2 address blocks: IPv4 (4+4+2+2), IPv6 (16+16+2+2), Unix (108+108) */
#define V2_LEN_INET 12
#define V2_LEN_INET6 36
#define V2_LEN_UNIX 216

static void set_ip(dx_addr *a, int family, const unsigned char *bytes, const unsigned char *port)
{
    memset(a, 0, sizeof *a);
    if (family == AF_INET) {
        struct sockaddr_in *in4 = (struct sockaddr_in *)&a->ss;
        in4->sin_family = AF_INET;
        memcpy(&in4->sin_addr, bytes, 4);
        memcpy(&in4->sin_port, port, 2); /* both in network order */
        a->len = sizeof *in4;
    } else {
        struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&a->ss;
        in6->sin6_family = AF_INET6;
        memcpy(&in6->sin6_addr, bytes, 16);
        memcpy(&in6->sin6_port, port, 2);
        a->len = sizeof *in6;
    }
}

/* One v1 field of `family`'s address (no brackets, as inet_pton reads it)
 * or a port (1-5 digits, 0-65535, no leading zero but for "0"). */
static int v1_addr(const char *s, size_t n, int family, unsigned char *out)
{
    char text[INET6_ADDRSTRLEN];
    if (n == 0 || n >= sizeof text)
        return -1;
    memcpy(text, s, n);
    text[n] = '\0';
    return inet_pton(family, text, out) == 1 ? 0 : -1;
}

static int v1_port(const char *s, size_t n, unsigned char *out)
{
    if (n == 0 || n > 5 || (n > 1 && s[0] == '0'))
        return -1;
    unsigned v = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        v = v * 10 + (unsigned)(s[i] - '0');
    }
    if (v > 65535)
        return -1;
    out[0] = (unsigned char)(v >> 8);
    out[1] = (unsigned char)v;
    return 0;
}

/* The line "PROXY ...\r\n" (n bytes, CRLF included). */
static int v1_line(const char *s, size_t n, struct cli_pp *out)
{
    const char *p = s + V1_SIG_LEN, *end = s + n - 2;
    if ((size_t)(end - p) >= 7 && memcmp(p, "UNKNOWN", 7) == 0 && (p + 7 == end || p[7] == ' ')) {
        out->local = 1; /* the rest of the line is to be ignored */
        return 0;
    }
    int family;
    if ((size_t)(end - p) >= 5 && memcmp(p, "TCP4 ", 5) == 0)
        family = AF_INET;
    else if ((size_t)(end - p) >= 5 && memcmp(p, "TCP6 ", 5) == 0)
        family = AF_INET6;
    else
        return -1;
    p += 5;
    /* four fields, one space apart: source, destination, their ports */
    const char *field[4];
    size_t len[4];
    for (int i = 0; i < 4; i++) {
        const char *sp = i < 3 ? memchr(p, ' ', (size_t)(end - p)) : end;
        if (!sp)
            return -1;
        field[i] = p;
        len[i] = (size_t)(sp - p);
        p = sp + 1;
    }
    unsigned char src[16], dst[16], sport[2], dport[2];
    if (v1_addr(field[0], len[0], family, src) < 0 || v1_addr(field[1], len[1], family, dst) < 0 ||
        v1_port(field[2], len[2], sport) < 0 || v1_port(field[3], len[3], dport) < 0)
        return -1;
    set_ip(&out->src, family, src, sport);
    set_ip(&out->dst, family, dst, dport);
    return 0;
}

static int parse_v1(const unsigned char *buf, size_t n, struct cli_pp *out)
{
    /* printable ASCII up to CR LF; a line without one stays header so far */
    for (size_t i = 0; i < n; i++) {
        if (buf[i] == '\r') {
            if (i + 1 == n)
                break; /* the LF may follow */
            if (buf[i + 1] != '\n' || i + 2 > CLI_PP_V1_MAX)
                return -EPROTO;
            out->version = 1;
            return v1_line((const char *)buf, i + 2, out) < 0 ? -EPROTO : (int)(i + 2);
        }
        if (buf[i] < 0x20 || buf[i] > 0x7e)
            return -EPROTO;
    }
    return n >= CLI_PP_V1_MAX ? -EPROTO : 0;
}

static int parse_v2(const unsigned char *buf, size_t n, struct cli_pp *out)
{
    if (n < V2_FIXED)
        return 0;
    int version = buf[12] >> 4, command = buf[12] & 0x0F;
    int family = buf[13] >> 4, transport = buf[13] & 0x0F;
    size_t len = ((size_t)buf[14] << 8) | buf[15];
    if (version != 2 || command > 1 || family > 3 || transport > 2)
        return -EPROTO;
    if (V2_FIXED + len > CLI_PP_MAX)
        return -EPROTO;
    static const size_t need[4] = {0, V2_LEN_INET, V2_LEN_INET6, V2_LEN_UNIX};
    if (len < need[family])
        return -EPROTO;
    if (n < V2_FIXED + len)
        return 0;
    out->version = 2;
    const unsigned char *a = buf + V2_FIXED;
    /* LOCAL: the proxy's own connection (a health check); UNSPEC and Unix
     * addresses: nothing an IP access list can use. The socket's address
     * stands then, as the spec says. TLVs after the addresses are skipped. */
    if (command == 0 || family == 0 || family == 3)
        out->local = 1;
    else if (family == 1) {
        set_ip(&out->src, AF_INET, a, a + 8);
        set_ip(&out->dst, AF_INET, a + 4, a + 10);
    } else {
        set_ip(&out->src, AF_INET6, a, a + 32);
        set_ip(&out->dst, AF_INET6, a + 16, a + 34);
    }
    return (int)(V2_FIXED + len);
}

int cli_pp_parse(const unsigned char *buf, size_t n, struct cli_pp *out)
{
    memset(out, 0, sizeof *out);
    /* each signature's first bytes decide: anything else fails at once */
    size_t k = n < V1_SIG_LEN ? n : V1_SIG_LEN;
    if (memcmp(buf, v1_sig, k) == 0)
        return n < V1_SIG_LEN ? 0 : parse_v1(buf, n, out);
    k = n < sizeof v2_sig ? n : sizeof v2_sig;
    if (memcmp(buf, v2_sig, k) == 0)
        return n < sizeof v2_sig ? 0 : parse_v2(buf, n, out);
    return -EPROTO;
}

/* The IP bytes of a (an IPv4-mapped IPv6 address as IPv4) and its port in
 * network order: the family, or 0 for a Unix socket. */
static int ip_of(const dx_addr *a, unsigned char *bytes, unsigned char *port)
{
    if (a->ss.ss_family == AF_INET) {
        const struct sockaddr_in *in4 = (const struct sockaddr_in *)&a->ss;
        memcpy(bytes, &in4->sin_addr, 4);
        memcpy(port, &in4->sin_port, 2);
        return AF_INET;
    }
    if (a->ss.ss_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)&a->ss;
        memcpy(port, &in6->sin6_port, 2);
        if (IN6_IS_ADDR_V4MAPPED(&in6->sin6_addr)) {
            memcpy(bytes, in6->sin6_addr.s6_addr + 12, 4);
            return AF_INET;
        }
        memcpy(bytes, &in6->sin6_addr, 16);
        return AF_INET6;
    }
    return 0;
}

/* An IPv4 address as IPv4-mapped IPv6 (the other end is IPv6). */
static void to_mapped(unsigned char *bytes)
{
    memmove(bytes + 12, bytes, 4);
    memset(bytes, 0, 10);
    bytes[10] = bytes[11] = 0xff;
}

size_t cli_pp_encode(unsigned char *buf, size_t len, int version, const dx_addr *src,
                     const dx_addr *dst)
{
    unsigned char s[16], d[16], sp[2], dp[2];
    int sf = ip_of(src, s, sp), df = ip_of(dst, d, dp);
    int family = sf && df ? (sf == df ? sf : AF_INET6) : 0; /* 0: no IP addresses (Unix) */
    if (family == AF_INET6 && sf == AF_INET)
        to_mapped(s);
    if (family == AF_INET6 && df == AF_INET)
        to_mapped(d);
    size_t alen = family == AF_INET ? 4 : 16;
    if (version == 1) {
        char st[INET6_ADDRSTRLEN], dt[INET6_ADDRSTRLEN];
        int n;
        if (!family) {
            n = snprintf((char *)buf, len, "PROXY UNKNOWN\r\n");
        } else {
            inet_ntop(family, s, st, sizeof st);
            inet_ntop(family, d, dt, sizeof dt);
            n = snprintf((char *)buf, len, "PROXY %s %s %s %u %u\r\n",
                         family == AF_INET ? "TCP4" : "TCP6", st, dt,
                         (unsigned)(sp[0] << 8 | sp[1]), (unsigned)(dp[0] << 8 | dp[1]));
        }
        return n > 0 && (size_t)n < len ? (size_t)n : 0;
    }
    size_t body = family ? 2 * alen + 4 : 0;
    if (len < V2_FIXED + body)
        return 0;
    memcpy(buf, v2_sig, sizeof v2_sig);
    buf[12] = 0x21; /* version 2, PROXY: relayed for the client below */
    /* a Unix client: AF_UNSPEC, "use the connection's own addresses" */
    buf[13] = family == AF_INET ? 0x11 : family == AF_INET6 ? 0x21 : 0x00;
    buf[14] = 0;
    buf[15] = (unsigned char)body;
    if (family) {
        unsigned char *p = buf + V2_FIXED;
        memcpy(p, s, alen);
        memcpy(p + alen, d, alen);
        memcpy(p + 2 * alen, sp, 2);
        memcpy(p + 2 * alen + 2, dp, 2);
    }
    return V2_FIXED + body;
}
