/* test_proxyproto.c: src/cli/proxyproto.c: PROXY protocol v1 and v2 headers
 * as haproxy's proxy-protocol.txt writes them (its examples byte for byte),
 * parsed whole and a byte at a time (an incomplete header is always "more
 * please", never a byte of what follows), the bounds (107 bytes for v1,
 * CLI_PP_MAX for v2), malformed ones refused, LOCAL/UNKNOWN/UNSPEC keeping
 * the socket's address, and encode -> parse round trips. */
#define _GNU_SOURCE
#include "helpers.h"
#include "cli/cli.h"

#define T(name) Test(proxyproto, name, .timeout = 20, .init = pp_init)

static void pp_init(void) { h_alarm(H_ALARM_SECONDS); }

static const unsigned char sig[12] = {0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D,
                                      0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A};

static const char *fmt(const dx_addr *a)
{
    static char buf[4][DX_ADDR_STRLEN];
    static int i;
    i = (i + 1) % 4;
    return dx_addr_format(a, buf[i], sizeof buf[i]);
}

/* Parse text (n bytes) whole, then every proper prefix: 0 each time. */
static int parse_all(const void *text, size_t n, struct cli_pp *out)
{
    int len = cli_pp_parse(text, n, out);
    if (len > 0)
        for (size_t k = 0; k < (size_t)len; k++) {
            struct cli_pp tmp;
            cr_assert_eq(cli_pp_parse(text, k, &tmp), 0, "prefix of %zu bytes", k);
        }
    return len;
}

T(v1_tcp4)
{
    const char *h = "PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\nGET / HTTP/1.1\r\n";
    struct cli_pp pp;
    int len = parse_all(h, strlen(h), &pp);
    cr_assert_eq(len, (int)strlen("PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\n"));
    cr_assert_eq(pp.version, 1);
    cr_assert_eq(pp.local, 0);
    cr_assert_str_eq(fmt(&pp.src), "192.168.0.1:56324");
    cr_assert_str_eq(fmt(&pp.dst), "192.168.0.11:443");
}

T(v1_tcp6_and_unknown)
{
    const char *h = "PROXY TCP6 2001:db8::1 ::1 65535 0\r\n";
    struct cli_pp pp;
    cr_assert_eq(parse_all(h, strlen(h), &pp), (int)strlen(h));
    cr_assert_str_eq(fmt(&pp.src), "[2001:db8::1]:65535");
    cr_assert_str_eq(fmt(&pp.dst), "[::1]:0");
    h = "PROXY UNKNOWN\r\n";
    cr_assert_eq(parse_all(h, strlen(h), &pp), 15);
    cr_assert_eq(pp.local, 1);
    h = "PROXY UNKNOWN ffff:f...f:ffff ffff:f...f:ffff 65535 65535\r\n"; /* the rest is ignored */
    cr_assert_eq(parse_all(h, strlen(h), &pp), (int)strlen(h));
    cr_assert_eq(pp.local, 1);
}

T(v1_longest_and_too_long)
{
    /* the spec's worst case: 107 bytes with CRLF */
    const char *h = "PROXY UNKNOWN ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff "
                    "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n";
    cr_assert_eq(strlen(h), 107);
    struct cli_pp pp;
    cr_assert_eq(parse_all(h, 107, &pp), 107);
    char longer[200];
    snprintf(longer, sizeof longer, "PROXY UNKNOWN %0100d\r\n", 0);
    cr_assert_eq(cli_pp_parse((unsigned char *)longer, strlen(longer), &pp), -EPROTO);
    /* no CRLF within 107 bytes: refused without waiting for more */
    memset(longer, 'a', sizeof longer);
    memcpy(longer, "PROXY ", 6);
    cr_assert_eq(cli_pp_parse((unsigned char *)longer, 106, &pp), 0);
    cr_assert_eq(cli_pp_parse((unsigned char *)longer, 107, &pp), -EPROTO);
}

T(v1_malformed)
{
    static const char *const bad[] = {
        "GET / HTTP/1.1\r\n",                          /* no header at all */
        "PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n",            /* LF alone */
        "PROXY TCP4 1.2.3.4 5.6.7.8 1 2\rX",           /* CR without LF */
        "PROXY TCP5 1.2.3.4 5.6.7.8 1 2\r\n",
        "PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n",            /* a field missing */
        "PROXY TCP4 1.2.3.4 5.6.7.8 1 2 3\r\n",        /* one too many */
        "PROXY TCP4 1.2.3.4  5.6.7.8 1 2\r\n",         /* two spaces */
        "PROXY TCP4 ::1 ::1 1 2\r\n",                  /* v6 in TCP4 */
        "PROXY TCP6 1.2.3.4 5.6.7.8 1 2\r\n",          /* v4 in TCP6 */
        "PROXY TCP4 1.2.3.4 5.6.7.8 65536 2\r\n",
        "PROXY TCP4 1.2.3.4 5.6.7.8 01 2\r\n",         /* leading zero */
        "PROXY TCP4 1.2.3.4 5.6.7.8 -1 2\r\n",
        "PROXY TCP4 1.2.3.256 5.6.7.8 1 2\r\n",
        "PROXY TCP4 1.2.3.4 5.6.7.8 1 2 \r\n",
        "PROXY UNKNOWNX\r\n",
        "PROXY \r\n",
        "proxy TCP4 1.2.3.4 5.6.7.8 1 2\r\n",
        "PROXY TCP4 1.2.3.4 5.6.7.8 1 \t2\r\n",
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        struct cli_pp pp;
        cr_assert_eq(cli_pp_parse((const unsigned char *)bad[i], strlen(bad[i]), &pp), -EPROTO,
                     "accepted: %s", bad[i]);
    }
}

static size_t v2(unsigned char *buf, int ver_cmd, int fam, const void *addr, size_t alen,
                 size_t extra)
{
    memcpy(buf, sig, 12);
    buf[12] = (unsigned char)ver_cmd;
    buf[13] = (unsigned char)fam;
    buf[14] = (unsigned char)((alen + extra) >> 8);
    buf[15] = (unsigned char)(alen + extra);
    memcpy(buf + 16, addr, alen);
    memset(buf + 16 + alen, 0xEE, extra); /* TLVs: skipped */
    return 16 + alen + extra;
}

T(v2_inet_with_tlvs)
{
    unsigned char buf[CLI_PP_MAX + 64];
    const unsigned char a4[12] = {10, 1, 2, 3, 10, 0, 0, 1, 0x15, 0xb3, 0x00, 0x50};
    size_t n = v2(buf, 0x21, 0x11, a4, sizeof a4, 20);
    memcpy(buf + n, "payload", 7);
    struct cli_pp pp;
    cr_assert_eq(parse_all(buf, n + 7, &pp), (int)n);
    cr_assert_eq(pp.version, 2);
    cr_assert_eq(pp.local, 0);
    cr_assert_str_eq(fmt(&pp.src), "10.1.2.3:5555");
    cr_assert_str_eq(fmt(&pp.dst), "10.0.0.1:80");
}

T(v2_inet6)
{
    unsigned char buf[128], a6[36] = {0};
    a6[0] = 0x20, a6[1] = 0x01, a6[2] = 0x0d, a6[3] = 0xb8, a6[15] = 7; /* 2001:db8::7 */
    a6[31] = 1;                                                     /* ::1 */
    a6[32] = 0x04, a6[33] = 0xd2, a6[34] = 0x01, a6[35] = 0xbb;     /* 1234, 443 */
    size_t n = v2(buf, 0x21, 0x21, a6, sizeof a6, 0);
    struct cli_pp pp;
    cr_assert_eq(parse_all(buf, n, &pp), (int)n);
    cr_assert_str_eq(fmt(&pp.src), "[2001:db8::7]:1234");
    cr_assert_str_eq(fmt(&pp.dst), "[::1]:443");
}

T(v2_local_unspec_unix_keep_the_socket_address)
{
    unsigned char buf[400], addr[216] = {0};
    struct cli_pp pp;
    size_t n = v2(buf, 0x20, 0x11, addr, 12, 0); /* LOCAL (a health check) */
    cr_assert_eq(parse_all(buf, n, &pp), (int)n);
    cr_assert_eq(pp.local, 1);
    n = v2(buf, 0x21, 0x00, addr, 0, 0); /* PROXY, UNSPEC */
    cr_assert_eq(parse_all(buf, n, &pp), 16);
    cr_assert_eq(pp.local, 1);
    n = v2(buf, 0x21, 0x31, addr, 216, 0); /* Unix addresses */
    cr_assert_eq(parse_all(buf, n, &pp), (int)n);
    cr_assert_eq(pp.local, 1);
}

T(v2_malformed_and_bounds)
{
    unsigned char buf[CLI_PP_MAX + 64], addr[36] = {0};
    struct cli_pp pp;
    cr_assert_eq(cli_pp_parse(buf, v2(buf, 0x11, 0x11, addr, 12, 0), &pp), -EPROTO); /* version 1 */
    cr_assert_eq(cli_pp_parse(buf, v2(buf, 0x22, 0x11, addr, 12, 0), &pp), -EPROTO); /* command 2 */
    cr_assert_eq(cli_pp_parse(buf, v2(buf, 0x21, 0x41, addr, 12, 0), &pp), -EPROTO); /* family 4 */
    cr_assert_eq(cli_pp_parse(buf, v2(buf, 0x21, 0x13, addr, 12, 0), &pp), -EPROTO); /* transport 3 */
    cr_assert_eq(cli_pp_parse(buf, v2(buf, 0x21, 0x11, addr, 11, 0), &pp), -EPROTO); /* short IPv4 */
    cr_assert_eq(cli_pp_parse(buf, v2(buf, 0x21, 0x21, addr, 12, 0), &pp), -EPROTO); /* short IPv6 */
    /* the largest accepted, and one byte more: refused from its first 16 bytes */
    size_t n = v2(buf, 0x21, 0x11, addr, 12, CLI_PP_MAX - 16 - 12);
    cr_assert_eq(n, CLI_PP_MAX);
    cr_assert_eq(cli_pp_parse(buf, n, &pp), CLI_PP_MAX);
    v2(buf, 0x21, 0x11, addr, 12, CLI_PP_MAX - 16 - 12 + 1);
    cr_assert_eq(cli_pp_parse(buf, 16, &pp), -EPROTO);
    /* a broken signature fails at its first wrong byte */
    memcpy(buf, sig, 12);
    buf[5] = 'X';
    cr_assert_eq(cli_pp_parse(buf, 6, &pp), -EPROTO);
    cr_assert_eq(cli_pp_parse(buf, 5, &pp), 0);
}

static void roundtrip(int version, const char *src, int sport, const char *dst, int dport,
                      const char *want_src, const char *want_dst)
{
    dx_addr s, d;
    cr_assert_eq(dx_addr_ip(&s, src, sport), 0);
    cr_assert_eq(dx_addr_ip(&d, dst, dport), 0);
    unsigned char buf[CLI_PP_V1_MAX + 1];
    size_t n = cli_pp_encode(buf, sizeof buf, version, &s, &d);
    cr_assert_gt(n, 0);
    struct cli_pp pp;
    cr_assert_eq(parse_all(buf, n, &pp), (int)n);
    cr_assert_eq(pp.version, version);
    cr_assert_str_eq(fmt(&pp.src), want_src);
    cr_assert_str_eq(fmt(&pp.dst), want_dst);
}

T(encode_roundtrips)
{
    for (int v = 1; v <= 2; v++) {
        roundtrip(v, "192.0.2.1", 40000, "127.0.0.1", 8080, "192.0.2.1:40000", "127.0.0.1:8080");
        roundtrip(v, "2001:db8::1", 1, "::1", 65535, "[2001:db8::1]:1", "[::1]:65535");
        /* dual-stack sockets: IPv4-mapped addresses go out as IPv4 */
        roundtrip(v, "::ffff:10.0.0.9", 5, "::ffff:127.0.0.1", 6, "10.0.0.9:5", "127.0.0.1:6");
        /* one mapped, one real IPv6: both IPv6 */
        roundtrip(v, "::ffff:10.0.0.9", 5, "::1", 6, "10.0.0.9:5", "[::1]:6");
    }
    dx_addr s, d;
    dx_addr_ip(&s, "192.0.2.1", 40000);
    dx_addr_ip(&d, "127.0.0.1", 8080);
    unsigned char buf[CLI_PP_V1_MAX + 1];
    size_t n = cli_pp_encode(buf, sizeof buf, 1, &s, &d);
    buf[n] = 0;
    cr_assert_str_eq((char *)buf, "PROXY TCP4 192.0.2.1 127.0.0.1 40000 8080\r\n");
    n = cli_pp_encode(buf, sizeof buf, 2, &s, &d);
    cr_assert_eq(n, 28);
    cr_assert_eq(memcmp(buf, sig, 12), 0);
    cr_assert_eq(buf[12], 0x21);
    cr_assert_eq(buf[13], 0x11);
    cr_assert_eq(buf[15], 12);
    cr_assert_eq(cli_pp_encode(buf, 20, 2, &s, &d), 0); /* no room: nothing */
    cr_assert_eq(cli_pp_encode(buf, 10, 1, &s, &d), 0);
}

T(encode_unix_client)
{
    dx_addr u, d;
    cr_assert_eq(dx_addr_unix(&u, "/tmp/x.sock"), 0);
    dx_addr_ip(&d, "127.0.0.1", 80);
    unsigned char buf[CLI_PP_V1_MAX + 1];
    struct cli_pp pp;
    size_t n = cli_pp_encode(buf, sizeof buf, 1, &u, &d);
    cr_assert_eq(n, 15);
    cr_assert_eq(memcmp(buf, "PROXY UNKNOWN\r\n", 15), 0);
    cr_assert_eq(cli_pp_parse(buf, n, &pp), 15);
    cr_assert_eq(pp.local, 1);
    n = cli_pp_encode(buf, sizeof buf, 2, &u, &d);
    cr_assert_eq(n, 16);
    cr_assert_eq(buf[13], 0x00);
    cr_assert_eq(cli_pp_parse(buf, n, &pp), 16);
    cr_assert_eq(pp.local, 1);
}
