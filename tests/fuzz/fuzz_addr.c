/* fuzz_addr.c: ports, port ranges, HOST:PORT splitting, numeric addresses
 * (parse -> format -> parse round trip), CIDR parsing and matching, Unix
 * addresses. No DNS: dx_resolve is never called. The input is taken as one
 * string (up to the first NUL, at most 300 bytes); its last bytes also give
 * a port and an address to match against the parsed CIDR. */
#define _GNU_SOURCE
#include "duplex.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/un.h>

#define CHECK(cond) do { if (!(cond)) abort(); } while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void fuzz_ports(const char *s)
{
    int p = dx_parse_port(s);
    CHECK(p == DX_EBADPORT || (p >= 0 && p <= 65535));
    size_t n = strlen(s);
    if (n > 0 && n <= 5 && strspn(s, "0123456789") == n) {
        long v = strtol(s, NULL, 10);
        CHECK(v <= 65535 ? p == v : p == DX_EBADPORT);
    }
    int first = -7, last = -7;
    int rc = dx_parse_port_range(s, &first, &last);
    CHECK(rc == 0 || rc == DX_EBADPORT);
    if (rc == 0)
        CHECK(0 <= first && first <= last && last <= 65535);
    else
        CHECK(first == -7 && last == -7); /* untouched on failure */
    if (p >= 0 && rc == 0 && !strchr(s, '-'))
        CHECK(first == p && last == p);
}

static void fuzz_split(const char *s)
{
    size_t n = strlen(s);
    char buf[512];
    const char *host = NULL, *port = NULL;
    int rc = dx_split_hostport(s, buf, sizeof buf, &host, &port);
    CHECK(rc == 0 || rc == DX_EBADADDR);
    if (rc != 0)
        return;
    CHECK(host >= buf && host < buf + n + 1 && port >= buf && port < buf + n + 1);
    CHECK(*port != '\0');
    /* joining the parts again gives the input back */
    char again[600];
    if (s[0] == '[')
        snprintf(again, sizeof again, "[%s]:%s", host, port);
    else
        snprintf(again, sizeof again, "%s:%s", host, port);
    CHECK(strcmp(again, s) == 0);
    /* a buffer one byte too small is refused, never overrun */
    char *tight = malloc(n);
    if (tight) {
        CHECK(dx_split_hostport(s, tight, n, &host, &port) == DX_EBADADDR);
        free(tight);
    }
}

/* format(a) parsed again gives a back (v4-mapped IPv6 is shown as IPv4). */
static void roundtrip_ip(const dx_addr *a)
{
    char text[DX_ADDR_STRLEN], buf[DX_ADDR_STRLEN];
    dx_addr_format(a, text, sizeof text);
    const char *host, *port;
    CHECK(dx_split_hostport(text, buf, sizeof buf, &host, &port) == 0);
    int p = dx_parse_port(port);
    CHECK(p == dx_addr_port(a));
    dx_addr b;
    CHECK(dx_addr_ip(&b, host, p) == 0);
    const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)&a->ss;
    if (a->ss.ss_family == AF_INET6 && IN6_IS_ADDR_V4MAPPED(&in6->sin6_addr)) {
        const struct sockaddr_in *b4 = (const struct sockaddr_in *)&b.ss;
        CHECK(b.ss.ss_family == AF_INET);
        CHECK(memcmp(&b4->sin_addr, in6->sin6_addr.s6_addr + 12, 4) == 0);
        CHECK(b4->sin_port == in6->sin6_port);
    } else {
        CHECK(b.len == a->len && memcmp(&b.ss, &a->ss, a->len) == 0);
    }
    /* formatting into any smaller buffer stays inside it and terminates */
    for (size_t len = 0; len < 12; len++) {
        char small[12];
        memset(small, 'x', sizeof small);
        dx_addr_format(a, small, len);
        if (len) {
            CHECK(memchr(small, '\0', len) != NULL);
            CHECK(strncmp(small, text, len - 1) == 0);
        }
        for (size_t i = len; i < sizeof small; i++)
            CHECK(small[i] == 'x');
    }
}

static void fuzz_ip(const char *s, int port)
{
    dx_addr a;
    int rc = dx_addr_ip(&a, s, port);
    CHECK(rc == 0 || rc == DX_EBADADDR);
    if (rc == 0) {
        CHECK(a.ss.ss_family == AF_INET || a.ss.ss_family == AF_INET6);
        CHECK(dx_addr_port(&a) == port);
        roundtrip_ip(&a);
        CHECK(dx_addr_set_port(&a, 65535 - port) == 0 && dx_addr_port(&a) == 65535 - port);
        CHECK(dx_addr_set_port(&a, 65536) == DX_EBADPORT && dx_addr_set_port(&a, -1) == DX_EBADPORT);
    }
    CHECK(dx_addr_ip(&a, s, -1) == DX_EBADPORT && dx_addr_ip(&a, s, 65536) == DX_EBADPORT);
}

/* The reference: the first prefix bits of the address equal the network's. */
static int ref_match(const dx_cidr *net, int family, const unsigned char *bytes)
{
    if (family != net->family)
        return 0;
    for (int i = 0; i < net->prefix; i++) {
        int bit = 0x80 >> (i % 8);
        if ((bytes[i / 8] & bit) != (net->addr[i / 8] & bit))
            return 0;
    }
    return 1;
}

static void make_addr(dx_addr *a, int family, const unsigned char *bytes)
{
    memset(a, 0, sizeof *a);
    if (family == AF_INET) {
        struct sockaddr_in *in4 = (struct sockaddr_in *)&a->ss;
        in4->sin_family = AF_INET;
        memcpy(&in4->sin_addr, bytes, 4);
        a->len = sizeof *in4;
    } else {
        struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&a->ss;
        in6->sin6_family = AF_INET6;
        memcpy(&in6->sin6_addr, bytes, 16);
        a->len = sizeof *in6;
    }
}

/* The documented rule: an IPv4-mapped IPv6 address is matched as IPv4 (so
 * a rule written as ::ffff:a.b.c.d, an IPv6 network, never matches it). */
static int ref_match_addr(const dx_cidr *net, const dx_addr *a)
{
    if (a->ss.ss_family == AF_INET)
        return ref_match(net, AF_INET, (const unsigned char *)&((const struct sockaddr_in *)&a->ss)->sin_addr);
    if (a->ss.ss_family != AF_INET6)
        return 0;
    const struct in6_addr *in6 = &((const struct sockaddr_in6 *)&a->ss)->sin6_addr;
    if (IN6_IS_ADDR_V4MAPPED(in6))
        return ref_match(net, AF_INET, in6->s6_addr + 12);
    return ref_match(net, AF_INET6, in6->s6_addr);
}

static int is_v4mapped(const unsigned char *b)
{
    static const unsigned char prefix[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    return memcmp(b, prefix, 12) == 0;
}

static void fuzz_cidr(const char *s, const unsigned char *probe, int port)
{
    dx_cidr net;
    int rc = dx_cidr_parse(&net, s);
    CHECK(rc == 0 || rc == DX_EBADADDR);
    if (rc != 0)
        return;
    int bits = net.family == AF_INET ? 32 : 128;
    CHECK(net.family == AF_INET || net.family == AF_INET6);
    CHECK(net.prefix >= 0 && net.prefix <= bits);
    for (int i = net.prefix; i < bits; i++) /* host bits are cleared */
        CHECK(!(net.addr[i / 8] & (0x80 >> (i % 8))));
    for (int i = bits / 8; i < 16; i++)
        CHECK(net.addr[i] == 0);

    dx_addr a;
    make_addr(&a, net.family, net.addr); /* the network address is inside */
    CHECK(dx_cidr_match(&net, &a) == ref_match_addr(&net, &a));
    if (net.family == AF_INET || !is_v4mapped(net.addr))
        CHECK(dx_cidr_match(&net, &a) == 1);
    make_addr(&a, net.family, probe);
    CHECK(dx_cidr_match(&net, &a) == ref_match_addr(&net, &a));
    make_addr(&a, net.family == AF_INET ? AF_INET6 : AF_INET, probe);
    CHECK(dx_cidr_match(&net, &a) == ref_match_addr(&net, &a));
    unsigned char mapped[16] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    memcpy(mapped + 12, probe, 4); /* v4-mapped IPv6 matches as IPv4 */
    make_addr(&a, AF_INET6, mapped);
    CHECK(dx_cidr_match(&net, &a) == ref_match(&net, AF_INET, probe));
    dx_addr_unix(&a, "/x"); /* other families never match */
    CHECK(dx_cidr_match(&net, &a) == 0);

    /* the address text before '/' (if any) is inside its own network */
    char host[128];
    size_t hl = strcspn(s, "/");
    if (hl < sizeof host) {
        memcpy(host, s, hl);
        host[hl] = '\0';
        if (dx_addr_ip(&a, host, port) == 0) {
            CHECK(dx_cidr_match(&net, &a) == ref_match_addr(&net, &a));
            const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)&a.ss;
            if (a.ss.ss_family == AF_INET || !IN6_IS_ADDR_V4MAPPED(&in6->sin6_addr))
                CHECK(dx_cidr_match(&net, &a) == 1);
        }
    }
}

static void fuzz_unix(const char *s)
{
    dx_addr a;
    size_t n = strlen(s);
    int rc = dx_addr_unix(&a, s);
    const size_t cap = sizeof ((struct sockaddr_un *)0)->sun_path;
    if (n == 0) {
        CHECK(rc == DX_EBADADDR);
        return;
    }
    if (n > cap || (n == cap && s[0] != '@')) {
        CHECK(rc == DX_ETOOLONG);
        return;
    }
    CHECK(rc == 0);
    CHECK(a.ss.ss_family == AF_UNIX && a.len <= sizeof(struct sockaddr_un));
    CHECK(dx_addr_port(&a) == -1 && dx_addr_set_port(&a, 1) == DX_EBADADDR);
    char text[DX_ADDR_STRLEN];
    dx_addr_format(&a, text, sizeof text);
    CHECK(strcmp(text, s) == 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char s[301];
    size_t n = strnlen((const char *)data, size < 300 ? size : 300);
    memcpy(s, data, n);
    s[n] = '\0';
    /* the last bytes: a port and an address to probe CIDRs with */
    unsigned char tail[18] = {0};
    size_t t = size < sizeof tail ? size : sizeof tail;
    memcpy(tail + sizeof tail - t, data + size - t, t);
    int port = (tail[0] << 8) | tail[1];

    fuzz_ports(s);
    fuzz_split(s);
    fuzz_ip(s, port);
    fuzz_cidr(s, tail + 2, port);
    fuzz_unix(s);
    return 0;
}
