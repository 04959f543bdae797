/* test_addr.c: ports, host:port splitting, resolution, formatting, errors. */
#define _GNU_SOURCE
#include "helpers.h"

#include <netdb.h>

#define T(name) Test(addr, name, .timeout = 20, .init = addr_init)

static void addr_init(void) { h_alarm(H_ALARM_SECONDS); }

/* ---- dx_parse_port ---- */

T(parse_port_good)
{
    cr_assert_eq(dx_parse_port("0"), 0);
    cr_assert_eq(dx_parse_port("1"), 1);
    cr_assert_eq(dx_parse_port("80"), 80);
    cr_assert_eq(dx_parse_port("08080"), 8080);
    cr_assert_eq(dx_parse_port("65535"), 65535);
}

T(parse_port_service_name)
{
    struct servent *se = getservbyname("http", "tcp");
    if (!se)
        cr_skip_test("no services database (getservbyname(\"http\") failed)");
    cr_assert_eq(dx_parse_port("http"), 80);
}

T(parse_port_bad)
{
    static const char *const bad[] = {
        "70000", "65536", "-1", "abc", "", "80x", " 80", "80 ", "+80", "99999999999",
        "4294967376" /* 2^32 + 80: must not wrap */, "0x50", "1e3", "no-such-service-xyz",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        cr_expect_eq(dx_parse_port(bad[i]), DX_EBADPORT, "dx_parse_port(\"%s\") = %d", bad[i],
                     dx_parse_port(bad[i]));
    cr_assert_eq(dx_parse_port(NULL), DX_EBADPORT);
}

/* ---- dx_parse_port_range ---- */

T(port_range_good)
{
    int a = -1, b = -1;
    cr_assert_eq(dx_parse_port_range("20-30", &a, &b), 0);
    cr_assert_eq(a, 20);
    cr_assert_eq(b, 30);
    a = b = -1;
    cr_assert_eq(dx_parse_port_range("5", &a, &b), 0);
    cr_assert_eq(a, 5);
    cr_assert_eq(b, 5);
    cr_assert_eq(dx_parse_port_range("7-7", &a, &b), 0);
    cr_assert_eq(a, 7);
    cr_assert_eq(b, 7);
    cr_assert_eq(dx_parse_port_range("0-65535", &a, &b), 0);
    cr_assert_eq(a, 0);
    cr_assert_eq(b, 65535);
}

T(port_range_bad)
{
    static const char *const bad[] = {"30-20", "1-70000", "a-b", "", "-", "5-", "-5",
                                      "1-2-3", "70000", " 1-2", "1 -2"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        int a = 12345, b = 12345;
        cr_expect_eq(dx_parse_port_range(bad[i], &a, &b), DX_EBADPORT, "range \"%s\"", bad[i]);
        cr_expect(a == 12345 && b == 12345, "range \"%s\" wrote outputs on failure", bad[i]);
    }
}

/* ---- dx_split_hostport ---- */

static void split_ok(const char *text, const char *host, const char *port)
{
    char buf[128];
    const char *h = NULL, *p = NULL;
    int rc = dx_split_hostport(text, buf, sizeof buf, &h, &p);
    cr_assert_eq(rc, 0, "split \"%s\": %s", text, dx_strerror(rc));
    cr_assert_str_eq(h, host, "split \"%s\" host", text);
    cr_assert_str_eq(p, port, "split \"%s\" port", text);
    cr_assert(h >= buf && h < buf + sizeof buf, "host must point into buf");
    cr_assert(p >= buf && p < buf + sizeof buf, "port must point into buf");
}

T(split_good)
{
    split_ok("127.0.0.1:80", "127.0.0.1", "80");
    split_ok("[::1]:443", "::1", "443");
    split_ok("localhost:http", "localhost", "http");
    split_ok("[fe80::1%lo]:22", "fe80::1%lo", "22");
}

T(split_bad)
{
    static const char *const bad[] = {"::1:80", "host:", ":80", "[::1]80", "[::1]:", "[::1",
                                      "nocolon", "", "a:b:c"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char buf[128];
        const char *h = NULL, *p = NULL;
        cr_expect_eq(dx_split_hostport(bad[i], buf, sizeof buf, &h, &p), DX_EBADADDR,
                     "split \"%s\"", bad[i]);
    }
}

T(split_buffer_too_small)
{
    char buf[8];
    const char *h, *p;
    /* needs strlen + 1 = 13 bytes */
    cr_assert_eq(dx_split_hostport("127.0.0.1:80", buf, sizeof buf, &h, &p), DX_EBADADDR);
    char exact[13];
    cr_assert_eq(dx_split_hostport("127.0.0.1:80", exact, sizeof exact, &h, &p), 0);
    cr_assert_str_eq(h, "127.0.0.1");
    cr_assert_str_eq(p, "80");
}

/* ---- dx_resolve ---- */

T(resolve_ipv4_numeric)
{
    dx_addr *out = (dx_addr *)1;
    int n = dx_resolve("127.0.0.1", "80", AF_UNSPEC, 0, &out);
    cr_assert_eq(n, 1, "%s", dx_strerror(n));
    cr_assert_not_null(out);
    cr_assert_eq(((struct sockaddr *)&out[0].ss)->sa_family, AF_INET);
    cr_assert_eq(out[0].len, sizeof(struct sockaddr_in));
    cr_assert_eq(dx_addr_port(&out[0]), 80);
    char buf[DX_ADDR_STRLEN];
    cr_assert_str_eq(dx_addr_format(&out[0], buf, sizeof buf), "127.0.0.1:80");
    free(out);
}

T(resolve_ipv6_plain_and_bracketed)
{
    const char *hosts[] = {"::1", "[::1]"};
    for (int i = 0; i < 2; i++) {
        dx_addr *out = NULL;
        int n = dx_resolve(hosts[i], "443", AF_UNSPEC, DX_RESOLVE_NUMERIC, &out);
        cr_assert_eq(n, 1, "%s: %s", hosts[i], dx_strerror(n));
        cr_assert_eq(((struct sockaddr *)&out[0].ss)->sa_family, AF_INET6);
        cr_assert_eq(dx_addr_port(&out[0]), 443);
        char buf[DX_ADDR_STRLEN];
        cr_assert_str_eq(dx_addr_format(&out[0], buf, sizeof buf), "[::1]:443");
        free(out);
    }
}

T(resolve_bad_brackets)
{
    dx_addr *out = (dx_addr *)1;
    cr_assert_eq(dx_resolve("[::1", "80", AF_UNSPEC, 0, &out), DX_EBADADDR);
    cr_assert_null(out);
    cr_assert_eq(dx_resolve("[]", "80", AF_UNSPEC, 0, &out), DX_EBADADDR);
    cr_assert_null(out);
}

T(resolve_localhost_inet)
{
    dx_addr *out = NULL;
    int n = dx_resolve("localhost", "8080", AF_INET, 0, &out);
    cr_assert_geq(n, 1, "%s", dx_strerror(n));
    for (int i = 0; i < n; i++) {
        cr_assert_eq(((struct sockaddr *)&out[i].ss)->sa_family, AF_INET);
        cr_assert_eq(dx_addr_port(&out[i]), 8080);
    }
    char buf[DX_ADDR_STRLEN];
    cr_assert_str_eq(dx_addr_format(&out[0], buf, sizeof buf), "127.0.0.1:8080");
    /* duplicates removed: no two entries are equal */
    for (int i = 0; i < n; i++)
        for (int j = i + 1; j < n; j++)
            cr_assert(out[i].len != out[j].len || memcmp(&out[i].ss, &out[j].ss, out[i].len) != 0);
    free(out);
}

T(resolve_family_filter)
{
    dx_addr *out = (dx_addr *)1;
    /* an IPv4 literal asked for as IPv6 cannot resolve */
    int n = dx_resolve("127.0.0.1", "80", AF_INET6, DX_RESOLVE_NUMERIC, &out);
    cr_assert_lt(n, 0);
    cr_assert(dx_is_resolver_error(n) || n == DX_ENOADDR, "code %d (%s)", n, dx_strerror(n));
    cr_assert_null(out);
}

T(resolve_unknown_host)
{
    dx_addr *out = (dx_addr *)1;
    int n = dx_resolve("no-such-host.invalid", "80", AF_UNSPEC, 0, &out);
    cr_assert_lt(n, 0);
    cr_assert(dx_is_resolver_error(n), "code %d (%s) is not a resolver error", n, dx_strerror(n));
    cr_assert_null(out);
    const char *msg = dx_strerror(n);
    cr_assert_not_null(msg);
    cr_assert_str_neq(msg, "Unknown error");
    cr_assert_str_neq(msg, "");
}

T(resolve_numeric_refuses_names)
{
    dx_addr *out = (dx_addr *)1;
    int n = dx_resolve("localhost", "80", AF_UNSPEC, DX_RESOLVE_NUMERIC, &out);
    cr_assert(dx_is_resolver_error(n), "code %d", n);
    cr_assert_null(out);
}

T(resolve_bad_port)
{
    dx_addr *out = (dx_addr *)1;
    cr_assert_eq(dx_resolve("127.0.0.1", "70000", AF_UNSPEC, 0, &out), DX_EBADPORT);
    cr_assert_null(out);
    cr_assert_eq(dx_resolve("127.0.0.1", "", AF_UNSPEC, 0, &out), DX_EBADPORT);
    cr_assert_eq(dx_resolve("127.0.0.1", "x y", AF_UNSPEC, 0, &out), DX_EBADPORT);
}

T(resolve_service_port)
{
    if (!getservbyname("http", "tcp"))
        cr_skip_test("no services database");
    dx_addr *out = NULL;
    int n = dx_resolve("127.0.0.1", "http", AF_INET, 0, &out);
    cr_assert_eq(n, 1);
    cr_assert_eq(dx_addr_port(&out[0]), 80);
    free(out);
}

T(resolve_passive_wildcard)
{
    dx_addr *out = NULL;
    int n = dx_resolve(NULL, "8080", AF_INET, DX_RESOLVE_PASSIVE, &out);
    cr_assert_eq(n, 1, "%s", dx_strerror(n));
    char buf[DX_ADDR_STRLEN];
    cr_assert_str_eq(dx_addr_format(&out[0], buf, sizeof buf), "0.0.0.0:8080");
    free(out);

    /* "" behaves like NULL */
    n = dx_resolve("", "8080", AF_INET, DX_RESOLVE_PASSIVE, &out);
    cr_assert_eq(n, 1, "%s", dx_strerror(n));
    cr_assert_str_eq(dx_addr_format(&out[0], buf, sizeof buf), "0.0.0.0:8080");
    free(out);

    /* unspecified family: every result is a wildcard */
    n = dx_resolve(NULL, "8080", AF_UNSPEC, DX_RESOLVE_PASSIVE, &out);
    cr_assert_geq(n, 1, "%s", dx_strerror(n));
    for (int i = 0; i < n; i++) {
        dx_addr_format(&out[i], buf, sizeof buf);
        cr_assert(strcmp(buf, "0.0.0.0:8080") == 0 || strcmp(buf, "[::]:8080") == 0, "%s", buf);
    }
    free(out);

    /* not passive: NULL host is the loopback */
    n = dx_resolve(NULL, "8080", AF_INET, 0, &out);
    cr_assert_eq(n, 1, "%s", dx_strerror(n));
    cr_assert_str_eq(dx_addr_format(&out[0], buf, sizeof buf), "127.0.0.1:8080");
    free(out);

    /* not passive: "" is a missing peer name, not the loopback */
    out = NULL;
    cr_assert_eq(dx_resolve("", "8080", AF_INET, 0, &out), DX_EBADADDR);
    cr_assert_eq(dx_resolve("", "8080", AF_UNSPEC, DX_RESOLVE_DGRAM, &out), DX_EBADADDR);
    cr_assert_null(out);
}

/* ---- dx_addr_unix ---- */

T(addr_unix_path)
{
    dx_addr a;
    cr_assert_eq(dx_addr_unix(&a, "/tmp/x.sock"), 0);
    struct sockaddr_un *sun = (struct sockaddr_un *)&a.ss;
    cr_assert_eq(sun->sun_family, AF_UNIX);
    cr_assert_str_eq(sun->sun_path, "/tmp/x.sock");
    cr_assert_eq(a.len, offsetof(struct sockaddr_un, sun_path) + strlen("/tmp/x.sock") + 1);
    char buf[DX_ADDR_STRLEN];
    cr_assert_str_eq(dx_addr_format(&a, buf, sizeof buf), "/tmp/x.sock");
    cr_assert_eq(dx_addr_port(&a), -1);
}

T(addr_unix_abstract)
{
    dx_addr a;
    cr_assert_eq(dx_addr_unix(&a, "@abstract"), 0);
    struct sockaddr_un *sun = (struct sockaddr_un *)&a.ss;
    cr_assert_eq(sun->sun_family, AF_UNIX);
    cr_assert_eq(sun->sun_path[0], '\0');
    cr_assert_eq(memcmp(sun->sun_path + 1, "abstract", 8), 0);
    /* exactly the name, no terminator */
    cr_assert_eq(a.len, offsetof(struct sockaddr_un, sun_path) + 9);
    char buf[DX_ADDR_STRLEN];
    cr_assert_str_eq(dx_addr_format(&a, buf, sizeof buf), "@abstract");
    cr_assert_eq(dx_addr_port(&a), -1);
}

/* An abstract name uses sun_path without a terminator: '@' plus 107 bytes
 * fills the 108 bytes of sun_path exactly, and the kernel accepts it. */
T(addr_unix_abstract_max_length)
{
    struct sockaddr_un sun;
    char name[sizeof sun.sun_path + 2];
    memset(name, 'z', sizeof name);
    name[0] = '@';
    name[sizeof sun.sun_path] = '\0'; /* '@' + 107 bytes */
    dx_addr a;
    int rc = dx_addr_unix(&a, name);
    cr_assert_eq(rc, 0, "a 107-byte abstract name fits sun_path: %s", dx_strerror(rc));
    cr_assert_eq(a.len, sizeof(struct sockaddr_un));
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    cr_assert_eq(bind(fd, (struct sockaddr *)&a.ss, a.len), 0, "%s", strerror(errno));
    close(fd);
    name[sizeof sun.sun_path] = 'z';
    name[sizeof sun.sun_path + 1] = '\0'; /* one more does not fit */
    cr_assert_eq(dx_addr_unix(&a, name), DX_ETOOLONG);
}

T(addr_unix_too_long)
{
    struct sockaddr_un sun;
    char path[sizeof sun.sun_path + 16];
    dx_addr a;
    /* the longest path that fits (with its terminator) */
    memset(path, 'a', sizeof sun.sun_path - 1);
    path[0] = '/';
    path[sizeof sun.sun_path - 1] = '\0';
    cr_assert_eq(dx_addr_unix(&a, path), 0);
    char buf[DX_ADDR_STRLEN * 2];
    cr_assert_str_eq(dx_addr_format(&a, buf, sizeof buf), path);
    /* one more byte does not */
    memset(path, 'a', sizeof sun.sun_path);
    path[0] = '/';
    path[sizeof sun.sun_path] = '\0';
    cr_assert_eq(dx_addr_unix(&a, path), DX_ETOOLONG);
    memset(path, 'b', sizeof path - 1);
    path[sizeof path - 1] = '\0';
    cr_assert_eq(dx_addr_unix(&a, path), DX_ETOOLONG);
}

/* ---- dx_addr_ip / format / port ---- */

T(addr_ip_v4)
{
    dx_addr a;
    cr_assert_eq(dx_addr_ip(&a, "10.1.2.3", 4242), 0);
    cr_assert_eq(a.len, sizeof(struct sockaddr_in));
    struct sockaddr_in *in = (struct sockaddr_in *)&a.ss;
    cr_assert_eq(in->sin_family, AF_INET);
    cr_assert_eq(ntohs(in->sin_port), 4242);
    cr_assert_eq(ntohl(in->sin_addr.s_addr), 0x0a010203u);
    cr_assert_eq(dx_addr_port(&a), 4242);
    char buf[DX_ADDR_STRLEN];
    cr_assert_str_eq(dx_addr_format(&a, buf, sizeof buf), "10.1.2.3:4242");
}

T(addr_ip_v6)
{
    dx_addr a;
    cr_assert_eq(dx_addr_ip(&a, "2001:db8::1", 65535), 0);
    cr_assert_eq(a.len, sizeof(struct sockaddr_in6));
    cr_assert_eq(((struct sockaddr *)&a.ss)->sa_family, AF_INET6);
    cr_assert_eq(dx_addr_port(&a), 65535);
    char buf[DX_ADDR_STRLEN];
    cr_assert_str_eq(dx_addr_format(&a, buf, sizeof buf), "[2001:db8::1]:65535");
    /* a v4-mapped address (an IPv4 client of a dual-stack socket) shows as IPv4 */
    cr_assert_eq(dx_addr_ip(&a, "::ffff:127.0.0.1", 7), 0);
    cr_assert_eq(((struct sockaddr *)&a.ss)->sa_family, AF_INET6);
    cr_assert_str_eq(dx_addr_format(&a, buf, sizeof buf), "127.0.0.1:7");
    /* but not an IPv4-compatible or other low address */
    cr_assert_eq(dx_addr_ip(&a, "::1", 7), 0);
    cr_assert_str_eq(dx_addr_format(&a, buf, sizeof buf), "[::1]:7");
}

T(addr_set_port)
{
    dx_addr a;
    char buf[DX_ADDR_STRLEN];
    cr_assert_eq(dx_addr_ip(&a, "127.0.0.1", 1), 0);
    cr_assert_eq(dx_addr_set_port(&a, 65535), 0);
    cr_assert_eq(dx_addr_port(&a), 65535);
    cr_assert_str_eq(dx_addr_format(&a, buf, sizeof buf), "127.0.0.1:65535");
    cr_assert_eq(dx_addr_ip(&a, "::1", 1), 0);
    cr_assert_eq(dx_addr_set_port(&a, 0), 0);
    cr_assert_eq(dx_addr_port(&a), 0);
    cr_assert_str_eq(dx_addr_format(&a, buf, sizeof buf), "[::1]:0");
    cr_assert_eq(dx_addr_set_port(&a, 65536), DX_EBADPORT);
    cr_assert_eq(dx_addr_set_port(&a, -1), DX_EBADPORT);
    cr_assert_eq(dx_addr_port(&a), 0, "a failed set_port must not change the port");
    cr_assert_eq(dx_addr_unix(&a, "/tmp/s"), 0);
    cr_assert_eq(dx_addr_set_port(&a, 80), DX_EBADADDR);
    cr_assert_str_eq(dx_addr_format(&a, buf, sizeof buf), "/tmp/s");
}

T(addr_ip_bad)
{
    dx_addr a;
    cr_assert_eq(dx_addr_ip(&a, "localhost", 80), DX_EBADADDR);
    cr_assert_eq(dx_addr_ip(&a, "256.0.0.1", 80), DX_EBADADDR);
    cr_assert_eq(dx_addr_ip(&a, "[::1]", 80), DX_EBADADDR);
    cr_assert_eq(dx_addr_ip(&a, "", 80), DX_EBADADDR);
    cr_assert_lt(dx_addr_ip(&a, "127.0.0.1", 65536), 0);
    cr_assert_lt(dx_addr_ip(&a, "127.0.0.1", -1), 0);
}

T(addr_format_truncates_safely)
{
    dx_addr a;
    cr_assert_eq(dx_addr_ip(&a, "127.0.0.1", 80), 0);
    char buf[6];
    memset(buf, 'X', sizeof buf);
    cr_assert_eq(dx_addr_format(&a, buf, sizeof buf), buf);
    cr_assert_eq(buf[5], '\0');
    cr_assert_str_eq(buf, "127.0");
    /* the longest IPv6 text fits DX_ADDR_STRLEN */
    cr_assert_eq(dx_addr_ip(&a, "ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255", 65535), 0);
    char big[DX_ADDR_STRLEN];
    dx_addr_format(&a, big, sizeof big);
    cr_assert_eq(big[0], '[');
    cr_assert(strstr(big, "]:65535") != NULL, "%s", big);
}

T(addr_format_unnamed_unix)
{
    /* getsockname() of an unbound Unix socket has only the family */
    int sv[2];
    h_socketpair(sv, 0);
    dx_addr a;
    cr_assert_eq(dx_sock_local(sv[0], &a), 0);
    char buf[DX_ADDR_STRLEN];
    cr_assert_str_eq(dx_addr_format(&a, buf, sizeof buf), "(unnamed)");
    close(sv[0]);
    close(sv[1]);
}

/* ---- errors ---- */

T(strerror_library_codes)
{
    const int codes[] = {DX_EBADPORT, DX_EBADADDR, DX_ENOADDR, DX_ETOOLONG, DX_ETIMEDOUT};
    for (size_t i = 0; i < sizeof codes / sizeof codes[0]; i++) {
        const char *s = dx_strerror(codes[i]);
        cr_assert_not_null(s);
        cr_assert_str_neq(s, "");
        cr_assert_str_neq(s, "Unknown error", "code %d", codes[i]);
        cr_assert_not(dx_is_resolver_error(codes[i]), "code %d", codes[i]);
        for (size_t j = 0; j < i; j++)
            cr_assert_str_neq(s, dx_strerror(codes[j]), "codes %d and %d share a message",
                              codes[i], codes[j]);
    }
    cr_assert(strstr(dx_strerror(DX_EBADPORT), "port") != NULL);
    cr_assert(strstr(dx_strerror(DX_ETOOLONG), "too long") != NULL);
    cr_assert(strstr(dx_strerror(DX_ETIMEDOUT), "timed out") != NULL);
}

T(strerror_errno_codes)
{
    cr_assert_str_eq(dx_strerror(-ECONNREFUSED), "Connection refused");
    cr_assert_str_eq(dx_strerror(-ENOENT), strerror(ENOENT));
    cr_assert_str_eq(dx_strerror(-EADDRINUSE), strerror(EADDRINUSE));
    cr_assert_not(dx_is_resolver_error(-ECONNREFUSED));
    cr_assert_str_eq(dx_strerror(-5000000), "Unknown error");
    cr_assert_str_eq(dx_strerror(12345), "Unknown error");
}

T(strerror_resolver_codes)
{
    int code = DX_EAI_BASE - (EAI_NONAME < 0 ? -EAI_NONAME : EAI_NONAME);
    cr_assert(dx_is_resolver_error(code));
    cr_assert_str_eq(dx_strerror(code), gai_strerror(EAI_NONAME));
    code = DX_EAI_BASE - (EAI_AGAIN < 0 ? -EAI_AGAIN : EAI_AGAIN);
    cr_assert(dx_is_resolver_error(code));
    cr_assert_str_eq(dx_strerror(code), gai_strerror(EAI_AGAIN));
    cr_assert_not(dx_is_resolver_error(DX_EAI_BASE));
    cr_assert_not(dx_is_resolver_error(0));
    cr_assert_not(dx_is_resolver_error(-1));
}
