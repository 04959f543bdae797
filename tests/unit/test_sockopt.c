/* test_sockopt.c: socket options by name: the table, parsing (names with and
 * without prefix, any case; bad names, bad values, ranges), setting and
 * reading back on real sockets, and the dx_listen/connect hooks. */
#define _GNU_SOURCE
#include "helpers.h"

#include <ctype.h>
#include <limits.h>
#include <netinet/ip.h>

#define T(name) Test(sockopt, name, .timeout = 20, .init = so_init)

static void so_init(void) { h_alarm(H_ALARM_SECONDS); }

static int id_of(const char *name)
{
    int id = dx_sockopt_lookup(name, strlen(name));
    cr_assert_geq(id, 0, "lookup %s", name);
    return id;
}

static dx_sockopt parse_ok(const char *text)
{
    dx_sockopt o;
    int rc = dx_sockopt_parse(text, &o);
    cr_assert_eq(rc, 0, "parse '%s': %s", text, dx_strerror(rc));
    cr_assert_geq(o.id, 0);
    return o;
}

static void parse_fails(const char *text, int want)
{
    dx_sockopt o;
    int rc = dx_sockopt_parse(text, &o);
    cr_assert_eq(rc, want, "parse '%s': got %d (%s), want %d", text, rc, dx_strerror(rc), want);
}

static void apply_ok(int fd, const char *text)
{
    dx_sockopt o = parse_ok(text);
    int rc = dx_sockopt_apply(fd, &o);
    cr_assert_eq(rc, 0, "apply '%s': %s", text, dx_strerror(rc));
}

static long long get_num(int fd, const char *name)
{
    dx_sockopt v;
    int rc = dx_sockopt_get(fd, id_of(name), &v);
    cr_assert_eq(rc, 0, "get %s: %s", name, dx_strerror(rc));
    return v.value.num;
}

static void lower(char *dst, const char *src)
{
    while ((*dst++ = (char)tolower((unsigned char)*src++)))
        ;
}

/* A valid value for each type, for the parse-every-name test. */
static const char *sample_value(const dx_sockopt_desc *d)
{
    switch (d->type) {
    case DX_SOCKOPT_BOOL: return "1";
    case DX_SOCKOPT_SECONDS: return "1.5";
    case DX_SOCKOPT_LINGER: return "0";
    case DX_SOCKOPT_STRING: return "lo";
    default: return d->min == 88 ? "1000" : d->min == 1 ? "1" : "0";
    }
}

/* ---- the table ---- */

T(table_is_complete)
{
    static const char *const want[] = {
        "keepalive", "keepidle", "keepintvl", "keepcnt", "linger", "rcvbuf", "sndbuf",
        "rcvlowat", "rcvtimeo", "sndtimeo", "reuseaddr", "reuseport", "bindtodevice",
        "priority", "mark", "dontroute", "broadcast", "oobinline", "timestamp", "busy_poll",
        "nodelay", "user_timeout", "tos", "maxseg", "quickack", "congestion",
    };
    int n = 0;
    while (dx_sockopt_describe(n))
        n++;
    cr_assert_eq(n, (int)(sizeof want / sizeof want[0]));
    cr_assert_null(dx_sockopt_describe(-1));
    cr_assert_null(dx_sockopt_name(n));
    cr_assert_null(dx_sockopt_name(-1));
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        int id = dx_sockopt_lookup(want[i], strlen(want[i]));
        cr_assert_geq(id, 0, "%s", want[i]);
        const dx_sockopt_desc *d = dx_sockopt_describe(id);
        cr_assert_str_eq(d->key, want[i]);
        cr_assert_str_eq(dx_sockopt_name(id), d->name);
        cr_assert(d->expects && *d->expects);
        cr_assert_leq(d->min, d->max);
        /* the kernel name is PREFIX_ + upper-case key */
        const char *u = strchr(d->name, '_');
        cr_assert_not_null(u);
        cr_assert_eq(strcasecmp(u + 1, d->key), 0, "%s vs %s", d->name, d->key);
    }
}

/* ---- parsing ---- */

T(every_name_any_spelling)
{
    for (int id = 0; dx_sockopt_describe(id); id++) {
        const dx_sockopt_desc *d = dx_sockopt_describe(id);
        char lname[64], mixed[64], text[128];
        lower(lname, d->name);
        snprintf(mixed, sizeof mixed, "%s", d->key);
        mixed[0] = (char)toupper((unsigned char)mixed[0]);
        const char *spellings[] = {d->name, lname, d->key, mixed};
        for (size_t s = 0; s < 4; s++) {
            cr_assert_eq(dx_sockopt_lookup(spellings[s], strlen(spellings[s])), id, "%s",
                         spellings[s]);
            snprintf(text, sizeof text, "%s=%s", spellings[s], sample_value(d));
            dx_sockopt o = parse_ok(text);
            cr_assert_eq(o.id, id, "%s", text);
        }
        /* upper-case short name too: "RCVBUF" */
        char upper[64];
        size_t i = 0;
        for (; d->key[i]; i++)
            upper[i] = (char)toupper((unsigned char)d->key[i]);
        upper[i] = '\0';
        cr_assert_eq(dx_sockopt_lookup(upper, i), id, "%s", upper);
    }
}

T(lookup_uses_length)
{
    cr_assert_eq(dx_sockopt_lookup("rcvbuf=5", 6), id_of("SO_RCVBUF"));
    cr_assert_eq(dx_sockopt_lookup("rcvbuf", 3), -ENOENT);
}

T(bad_names)
{
    parse_fails("bogus=1", -ENOENT);
    parse_fails("=1", -ENOENT);
    parse_fails("", -ENOENT);
    parse_fails("so_nodelay=1", -ENOENT);   /* TCP_NODELAY: not the SO_ prefix */
    parse_fails("tcp_rcvbuf=1", -ENOENT);
    parse_fails("ip_nodelay=1", -ENOENT);
    parse_fails("SO_=1", -ENOENT);
    parse_fails("rcvbuf_=1", -ENOENT);
    parse_fails(" rcvbuf=1", -ENOENT);
    parse_fails("rcv buf=1", -ENOENT);
    dx_sockopt o;
    cr_assert_eq(dx_sockopt_parse("nope=1", &o), -ENOENT);
    cr_assert_eq(o.id, -1);
}

T(bool_values)
{
    const char *on[] = {"nodelay=1", "nodelay=on", "nodelay=ON", "nodelay=yes", "nodelay=true",
                        "nodelay", "TCP_NODELAY"};
    for (size_t i = 0; i < sizeof on / sizeof on[0]; i++)
        cr_assert_eq(parse_ok(on[i]).value.num, 1, "%s", on[i]);
    const char *off[] = {"keepalive=0", "keepalive=off", "keepalive=no", "keepalive=False"};
    for (size_t i = 0; i < sizeof off / sizeof off[0]; i++)
        cr_assert_eq(parse_ok(off[i]).value.num, 0, "%s", off[i]);
    parse_fails("nodelay=2", -ERANGE);
    parse_fails("nodelay=-1", -ERANGE);
    parse_fails("nodelay=maybe", -EINVAL);
    parse_fails("nodelay=", -EINVAL);
    parse_fails("nodelay=1x", -EINVAL);
}

T(int_values_and_ranges)
{
    cr_assert_eq(parse_ok("rcvbuf=65536").value.num, 65536);
    cr_assert_eq(parse_ok("rcvbuf=0").value.num, 0);
    cr_assert_eq(parse_ok("rcvbuf=2147483647").value.num, INT_MAX);
    parse_fails("rcvbuf=2147483648", -ERANGE);
    parse_fails("rcvbuf=-1", -ERANGE);
    parse_fails("rcvbuf=99999999999999999999999", -ERANGE);
    parse_fails("rcvbuf=abc", -EINVAL);
    parse_fails("rcvbuf=", -EINVAL);
    parse_fails("rcvbuf=12k", -EINVAL);
    parse_fails("rcvbuf= 12", -EINVAL);
    parse_fails("rcvbuf", -EINVAL); /* a bare name only for switches */
    cr_assert_eq(parse_ok("keepidle=1").value.num, 1);
    cr_assert_eq(parse_ok("keepidle=32767").value.num, 32767);
    parse_fails("keepidle=0", -ERANGE);
    parse_fails("keepidle=32768", -ERANGE);
    cr_assert_eq(parse_ok("keepcnt=127").value.num, 127);
    parse_fails("keepcnt=0", -ERANGE);
    parse_fails("keepcnt=128", -ERANGE);
    cr_assert_eq(parse_ok("tos=0x10").value.num, 16);
    cr_assert_eq(parse_ok("IP_TOS=255").value.num, 255);
    parse_fails("tos=256", -ERANGE);
    parse_fails("tos=0x", -EINVAL);
    cr_assert_eq(parse_ok("mark=4294967295").value.num, 4294967295LL);
    cr_assert_eq(parse_ok("mark=0xffffffff").value.num, 4294967295LL);
    parse_fails("mark=4294967296", -ERANGE);
    cr_assert_eq(parse_ok("maxseg=88").value.num, 88);
    parse_fails("tcp_maxseg=87", -ERANGE);
    parse_fails("maxseg=32768", -ERANGE);
    cr_assert_eq(parse_ok("user_timeout=30000").value.num, 30000);
    cr_assert_eq(parse_ok("busy_poll=50").value.num, 50);
}

T(bad_value_names_the_option)
{
    dx_sockopt o;
    cr_assert_eq(dx_sockopt_parse("keepcnt=1000", &o), -ERANGE);
    cr_assert_eq(o.id, id_of("keepcnt"));
    cr_assert_eq(dx_sockopt_parse("SO_RCVTIMEO=soon", &o), -EINVAL);
    cr_assert_eq(o.id, id_of("rcvtimeo"));
}

T(seconds_values)
{
    cr_assert_eq(parse_ok("rcvtimeo=2.5").value.num, 2500000);
    cr_assert_eq(parse_ok("rcvtimeo=2").value.num, 2000000);
    cr_assert_eq(parse_ok("sndtimeo=0.000001").value.num, 1);
    cr_assert_eq(parse_ok("sndtimeo=.5").value.num, 500000);
    cr_assert_eq(parse_ok("sndtimeo=3.").value.num, 3000000);
    cr_assert_eq(parse_ok("sndtimeo=0").value.num, 0);
    cr_assert_eq(parse_ok("sndtimeo=1.1234569").value.num, 1123456); /* micro-second precision */
    cr_assert_eq(parse_ok("rcvtimeo=31536000").value.num, 31536000LL * 1000000);
    parse_fails("rcvtimeo=31536000.5", -ERANGE);
    parse_fails("rcvtimeo=99999999999999999999", -ERANGE);
    parse_fails("rcvtimeo=-1", -ERANGE);
    parse_fails("rcvtimeo=1.2.3", -EINVAL);
    parse_fails("rcvtimeo=.", -EINVAL);
    parse_fails("rcvtimeo=1e3", -EINVAL);
    parse_fails("rcvtimeo=abc", -EINVAL);
    parse_fails("rcvtimeo=", -EINVAL);
}

T(linger_values)
{
    cr_assert_eq(parse_ok("linger=0").value.num, 0);
    cr_assert_eq(parse_ok("SO_LINGER=10").value.num, 10);
    cr_assert_eq(parse_ok("linger=off").value.num, -1);
    cr_assert_eq(parse_ok("linger=OFF").value.num, -1);
    parse_fails("linger=-1", -ERANGE);
    parse_fails("linger=65536", -ERANGE);
    parse_fails("linger=on", -EINVAL);
    parse_fails("linger=1.5", -EINVAL);
}

T(string_values)
{
    cr_assert_str_eq(parse_ok("bindtodevice=eth0").value.str, "eth0");
    cr_assert_str_eq(parse_ok("SO_BINDTODEVICE=123456789012345").value.str, "123456789012345");
    parse_fails("bindtodevice=1234567890123456", -ERANGE);
    parse_fails("bindtodevice=", -EINVAL);
    parse_fails("bindtodevice=a b", -EINVAL);
    parse_fails("bindtodevice=a/b", -EINVAL);
    cr_assert_str_eq(parse_ok("congestion=cubic").value.str, "cubic");
}

T(format_round_trips)
{
    const char *texts[] = {"rcvbuf=131072", "nodelay=1", "rcvtimeo=2.500000", "rcvtimeo=3",
                           "linger=off", "linger=0", "bindtodevice=lo", "mark=4294967295"};
    for (size_t i = 0; i < sizeof texts / sizeof texts[0]; i++) {
        dx_sockopt o = parse_ok(texts[i]);
        char buf[64];
        dx_sockopt_format(&o, buf, sizeof buf);
        cr_assert_str_eq(buf, strchr(texts[i], '=') + 1);
    }
}

/* ---- apply and get back on real sockets ---- */

T(apply_get_tcp)
{
    int fds[2];
    h_tcp_pair(fds, 0);
    int fd = fds[0];
    apply_ok(fd, "nodelay=1");
    cr_assert_eq(get_num(fd, "TCP_NODELAY"), 1);
    apply_ok(fd, "nodelay=0");
    cr_assert_eq(get_num(fd, "TCP_NODELAY"), 0);
    apply_ok(fd, "keepalive=1");
    cr_assert_eq(get_num(fd, "SO_KEEPALIVE"), 1);
    apply_ok(fd, "keepidle=30");
    apply_ok(fd, "keepintvl=7");
    apply_ok(fd, "keepcnt=3");
    cr_assert_eq(get_num(fd, "keepidle"), 30);
    cr_assert_eq(get_num(fd, "keepintvl"), 7);
    cr_assert_eq(get_num(fd, "keepcnt"), 3);
    apply_ok(fd, "rcvbuf=65536");
    cr_assert_eq(get_num(fd, "rcvbuf"), 131072, "the kernel doubles it");
    apply_ok(fd, "sndbuf=65536");
    cr_assert_eq(get_num(fd, "sndbuf"), 131072);
    apply_ok(fd, "rcvlowat=10");
    cr_assert_eq(get_num(fd, "rcvlowat"), 10);
    apply_ok(fd, "rcvtimeo=1.5");
    long long us = get_num(fd, "rcvtimeo");
    cr_assert(us >= 1490000 && us <= 1510000, "%lld", us);
    apply_ok(fd, "sndtimeo=2");
    us = get_num(fd, "sndtimeo");
    cr_assert(us >= 1990000 && us <= 2010000, "%lld", us);
    apply_ok(fd, "linger=5");
    cr_assert_eq(get_num(fd, "linger"), 5);
    apply_ok(fd, "linger=off");
    cr_assert_eq(get_num(fd, "linger"), -1);
    apply_ok(fd, "linger=0");
    cr_assert_eq(get_num(fd, "linger"), 0);
    apply_ok(fd, "reuseaddr=1");
    cr_assert_eq(get_num(fd, "reuseaddr"), 1);
    apply_ok(fd, "reuseport=1");
    cr_assert_eq(get_num(fd, "reuseport"), 1);
    apply_ok(fd, "dontroute=1");
    cr_assert_eq(get_num(fd, "dontroute"), 1);
    apply_ok(fd, "broadcast=1");
    cr_assert_eq(get_num(fd, "broadcast"), 1);
    apply_ok(fd, "oobinline=1");
    cr_assert_eq(get_num(fd, "oobinline"), 1);
    apply_ok(fd, "timestamp=1");
    cr_assert_eq(get_num(fd, "timestamp"), 1);
    apply_ok(fd, "priority=3");
    cr_assert_eq(get_num(fd, "priority"), 3);
    apply_ok(fd, "tos=0x10");
    cr_assert_eq(get_num(fd, "tos"), 0x10);
    apply_ok(fd, "user_timeout=5000");
    cr_assert_eq(get_num(fd, "user_timeout"), 5000);
    apply_ok(fd, "quickack=1");
    apply_ok(fd, "busy_poll=0");
    cr_assert_eq(get_num(fd, "busy_poll"), 0);
    apply_ok(fd, "congestion=reno");
    dx_sockopt v;
    cr_assert_eq(dx_sockopt_get(fd, id_of("congestion"), &v), 0);
    cr_assert_str_eq(v.value.str, "reno");
    close(fds[0]);
    close(fds[1]);
}

T(maxseg_before_connect)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    cr_assert_geq(fd, 0);
    apply_ok(fd, "tcp_maxseg=1000");
    cr_assert_eq(get_num(fd, "maxseg"), 1000);
    close(fd);
}

T(tos_on_ipv6_is_traffic_class)
{
    if (!h_have_ipv6())
        cr_skip_test("no IPv6 loopback");
    int fd = socket(AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, 0);
    cr_assert_geq(fd, 0);
    struct sockaddr_in6 sa = {0};
    sa.sin6_family = AF_INET6;
    sa.sin6_addr = in6addr_loopback;
    cr_assert_eq(bind(fd, (struct sockaddr *)&sa, sizeof sa), 0);
    apply_ok(fd, "tos=0x20");
    int tc = 0;
    socklen_t len = sizeof tc;
    cr_assert_eq(getsockopt(fd, IPPROTO_IPV6, IPV6_TCLASS, &tc, &len), 0);
    cr_assert_eq(tc, 0x20);
    cr_assert_eq(get_num(fd, "tos"), 0x20);
    close(fd);
}

T(privileged_options)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    cr_assert_geq(fd, 0);
    dx_sockopt mark = parse_ok("mark=7"), dev = parse_ok("bindtodevice=lo");
    int rc1 = dx_sockopt_apply(fd, &mark), rc2 = dx_sockopt_apply(fd, &dev);
    if (geteuid() == 0) {
        cr_assert_eq(rc1, 0, "%s", dx_strerror(rc1));
        cr_assert_eq(get_num(fd, "mark"), 7);
        cr_assert_eq(rc2, 0, "%s", dx_strerror(rc2));
        dx_sockopt v;
        cr_assert_eq(dx_sockopt_get(fd, id_of("bindtodevice"), &v), 0);
        cr_assert_str_eq(v.value.str, "lo");
    } else {
        cr_assert_eq(rc1, -EPERM, "%s", dx_strerror(rc1));
    }
    close(fd);
}

T(refusals_are_errno)
{
    int sp[2];
    h_socketpair(sp, 0);
    dx_sockopt o = parse_ok("nodelay=1");
    int rc = dx_sockopt_apply(sp[0], &o);
    cr_assert(rc == -EOPNOTSUPP || rc == -ENOPROTOOPT, "TCP option on a Unix socket: %d %s", rc,
              dx_strerror(rc));
    close(sp[0]);
    close(sp[1]);

    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    o = parse_ok("bindtodevice=nonexistent0");
    rc = dx_sockopt_apply(fd, &o);
    cr_assert(rc == -ENODEV || rc == -EPERM, "%s", dx_strerror(rc));
    o = parse_ok("congestion=nosuchalgo");
    cr_assert_lt(dx_sockopt_apply(fd, &o), 0);
    o.id = 999;
    cr_assert_eq(dx_sockopt_apply(fd, &o), -EINVAL);
    cr_assert_eq(dx_sockopt_get(fd, 999, &o), -EINVAL);
    cr_assert_eq(dx_sockopt_get(fd, -1, &o), -EINVAL);
    close(fd);
    o = parse_ok("rcvbuf=1");
    cr_assert_eq(dx_sockopt_apply(-1, &o), -EBADF);
}

T(apply_all_reports_index)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    dx_sockopt opts[3] = {parse_ok("nodelay=1"), parse_ok("bindtodevice=nonexistent0"),
                          parse_ok("keepalive=1")};
    int failed = 42;
    int rc = dx_sockopt_apply_all(fd, opts, 3, &failed);
    cr_assert_lt(rc, 0);
    cr_assert_eq(failed, 1);
    cr_assert_eq(get_num(fd, "nodelay"), 1, "set before the refusal");
    cr_assert_eq(get_num(fd, "keepalive"), 0, "not set after it");
    cr_assert_eq(dx_sockopt_apply_all(fd, opts, 1, &failed), 0);
    cr_assert_eq(failed, -1);
    cr_assert_eq(dx_sockopt_apply_all(fd, NULL, 0, NULL), 0);
    close(fd);
}

/* ---- hooks: dx_listen, dx_connect_start_opts, dx_connect_async_opts ---- */

T(listen_applies_before_bind)
{
    dx_addr a = h_addr4(0);
    dx_sockopt opts[] = {parse_ok("rcvbuf=65536"), parse_ok("nodelay=1"), parse_ok("keepalive=1"),
                         parse_ok("reuseaddr=0")};
    int failed = 42;
    dx_listen_opts lo = {0};
    lo.sockopts = opts;
    lo.nsockopts = 4;
    lo.sockopt_failed = &failed;
    int lfd = dx_listen(&a, &lo);
    cr_assert_geq(lfd, 0, "%s", dx_strerror(lfd));
    cr_assert_eq(failed, -1);
    cr_assert_eq(get_num(lfd, "rcvbuf"), 131072);
    cr_assert_eq(get_num(lfd, "reuseaddr"), 0, "-O overrides the default");
    /* accepted sockets inherit them */
    dx_addr local;
    cr_assert_eq(dx_sock_local(lfd, &local), 0);
    int c = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    cr_assert_eq(connect(c, (struct sockaddr *)&local.ss, local.len), 0);
    cr_assert(h_wait_fd(lfd, POLLIN, 5000) & POLLIN);
    int s = dx_accept(lfd, NULL);
    cr_assert_geq(s, 0);
    cr_assert_eq(get_num(s, "nodelay"), 1);
    cr_assert_eq(get_num(s, "keepalive"), 1);
    cr_assert_eq(dx_sockopt_apply_all(s, opts, 4, NULL), 0, "and take them again");
    close(s);
    close(c);
    close(lfd);
}

T(listen_refused_option)
{
    int before = h_count_fds();
    dx_addr a = h_addr4(0);
    dx_sockopt opts[] = {parse_ok("rcvbuf=65536"), parse_ok("bindtodevice=nonexistent0")};
    int failed = 42;
    dx_listen_opts lo = {0};
    lo.sockopts = opts;
    lo.nsockopts = 2;
    lo.sockopt_failed = &failed;
    int fd = dx_listen(&a, &lo);
    cr_assert(fd == -ENODEV || fd == -EPERM, "%s", dx_strerror(fd));
    cr_assert_eq(failed, 1);
    cr_assert_eq(h_count_fds(), before, "no descriptor leaked");
    /* without the failed pointer too */
    lo.sockopt_failed = NULL;
    cr_assert_lt(dx_listen(&a, &lo), 0);
}

T(connect_start_opts)
{
    int port;
    int lfd = h_listen4(4, &port);
    dx_addr a = h_addr4(port);
    dx_sockopt opts[] = {parse_ok("rcvbuf=65536"), parse_ok("nodelay=1")};
    int failed = 42;
    int fd = dx_connect_start_opts(&a, NULL, opts, 2, &failed);
    cr_assert_geq(fd, 0, "%s", dx_strerror(fd));
    cr_assert_eq(failed, -1);
    cr_assert(h_wait_fd(fd, POLLOUT, 5000) & POLLOUT);
    cr_assert_eq(dx_connect_result(fd), 0);
    cr_assert_eq(get_num(fd, "rcvbuf"), 131072);
    cr_assert_eq(get_num(fd, "nodelay"), 1);
    close(fd);

    int before = h_count_fds();
    dx_sockopt bad[] = {parse_ok("nodelay=1"), parse_ok("bindtodevice=nonexistent0")};
    fd = dx_connect_start_opts(&a, NULL, bad, 2, &failed);
    cr_assert(fd == -ENODEV || fd == -EPERM, "%s", dx_strerror(fd));
    cr_assert_eq(failed, 1);
    cr_assert_eq(h_count_fds(), before);
    /* the old entry point still works */
    fd = dx_connect_start(&a, NULL);
    cr_assert_geq(fd, 0);
    close(fd);
    close(lfd);
}

struct async_result {
    int fd, final, failed_opt, calls;
};

static void on_async(dx_connector *c, int result, const dx_addr *addr, int final)
{
    (void)addr;
    struct async_result *r = c->data;
    r->calls++;
    if (final) {
        r->fd = result;
        r->final = 1;
        r->failed_opt = c->sockopt_failed;
    }
}

T(connect_async_opts)
{
    dx_loop *loop = h_loop();
    int port;
    int lfd = h_listen4(4, &port);
    dx_addr a = h_addr4(port);
    dx_sockopt opts[] = {parse_ok("sndbuf=65536"), parse_ok("keepalive=1")};
    dx_connector c;
    struct async_result r = {-1, 0, 0, 0};
    cr_assert_eq(dx_connect_async_opts(loop, &c, &a, 1, NULL, 5000, opts, 2, on_async, &r), 0);
    h_run(loop);
    cr_assert(r.final);
    cr_assert_geq(r.fd, 0, "%s", dx_strerror(r.fd));
    cr_assert_eq(r.failed_opt, -1);
    cr_assert_eq(get_num(r.fd, "sndbuf"), 131072);
    cr_assert_eq(get_num(r.fd, "keepalive"), 1);
    close(r.fd);

    dx_sockopt bad[] = {parse_ok("bindtodevice=nonexistent0")};
    r = (struct async_result){-1, 0, 0, 0};
    cr_assert_eq(dx_connect_async_opts(loop, &c, &a, 1, NULL, 5000, bad, 1, on_async, &r), 0);
    cr_assert_eq(r.calls, 0, "never called from inside the call");
    h_run(loop);
    cr_assert(r.final);
    cr_assert(r.fd == -ENODEV || r.fd == -EPERM, "%s", dx_strerror(r.fd));
    cr_assert_eq(r.failed_opt, 0);

    /* dx_connect_async: no options, sockopt_failed stays -1 */
    r = (struct async_result){-1, 0, 0, 0};
    cr_assert_eq(dx_connect_async(loop, &c, &a, 1, NULL, 5000, on_async, &r), 0);
    h_run(loop);
    cr_assert_geq(r.fd, 0);
    cr_assert_eq(r.failed_opt, -1);
    close(r.fd);
    close(lfd);
    dx_loop_free(loop);
}

T(linger_zero_resets_the_peer)
{
    int fds[2];
    h_tcp_pair(fds, 0);
    apply_ok(fds[0], "linger=0");
    close(fds[0]);
    char b;
    ssize_t n = read(fds[1], &b, 1);
    cr_assert_eq(n, -1, "a reset, not end-of-file");
    cr_assert_eq(errno, ECONNRESET, "%s", strerror(errno));
    close(fds[1]);
}
