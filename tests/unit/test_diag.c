/* test_diag.c: dx_sock_list (netlink and /proc/net), dx_sock_procs,
 * dx_sock_state_name, on the test's own sockets. */
#define _GNU_SOURCE
#include "helpers.h"
#include "internal.h"

#define T(name) Test(diag, name, .timeout = 20, .init = diag_init)

static void diag_init(void) { h_alarm(H_ALARM_SECONDS); }

static uint64_t ino_of(int fd)
{
    struct stat st;
    cr_assert_eq(fstat(fd, &st), 0);
    return (uint64_t)st.st_ino;
}

static int tcp_listener(int backlog, int *port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    cr_assert_geq(fd, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    cr_assert_eq(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
    cr_assert_eq(listen(fd, backlog), 0);
    socklen_t len = sizeof a;
    cr_assert_eq(getsockname(fd, (struct sockaddr *)&a, &len), 0);
    *port = ntohs(a.sin_port);
    return fd;
}

static const dx_sockinfo *find(const dx_sockinfo *v, int n, uint64_t ino)
{
    for (int i = 0; i < n; i++)
        if (v[i].inode == ino)
            return &v[i];
    return NULL;
}

static void check_tcp(unsigned how)
{
    int port;
    int lfd = tcp_listener(5, &port);
    int c = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    cr_assert_eq(connect(c, (struct sockaddr *)&a, sizeof a), 0);

    dx_sockinfo *v;
    unsigned source = 0;
    int n = dx_sock_list(DX_SL_TCP | DX_SL_IPV4 | how, &v, &source);
    cr_assert_gt(n, 0, "%s", dx_strerror(n));
    cr_assert_eq(source, how);
    for (int i = 0; i < n; i++)
        cr_assert(v[i].proto == DX_SL_TCP && v[i].family == AF_INET);
    const dx_sockinfo *l = find(v, n, ino_of(lfd));
    cr_assert_not_null(l);
    cr_assert_eq(l->state, DX_SS_LISTEN);
    cr_assert_eq(l->rqueue, 1); /* the client waits in the accept queue */
    if (how == DX_SL_NETLINK)
        cr_assert_eq(l->wqueue, 5); /* the backlog */
    cr_assert_eq(ntohs(((struct sockaddr_in *)&l->local)->sin_port), port);
    cr_assert_eq(l->uid, (int64_t)getuid());
    const dx_sockinfo *s = find(v, n, ino_of(c));
    cr_assert_not_null(s);
    cr_assert_eq(s->state, DX_SS_ESTABLISHED);
    cr_assert_eq(ntohs(((struct sockaddr_in *)&s->peer)->sin_port), port);
    cr_assert_eq(((struct sockaddr_in *)&s->peer)->sin_addr.s_addr, htonl(INADDR_LOOPBACK));
    free(v);
    close(c);
    close(lfd);
}

T(tcp_netlink) { check_tcp(DX_SL_NETLINK); }
T(tcp_proc) { check_tcp(DX_SL_PROC); }

static void check_unix(unsigned how)
{
    char dir[] = "/tmp/dx-diag-XXXXXX";
    cr_assert_not_null(mkdtemp(dir));
    struct sockaddr_un a = {.sun_family = AF_UNIX};
    snprintf(a.sun_path, sizeof a.sun_path, "%s/s", dir);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    cr_assert_eq(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
    cr_assert_eq(listen(fd, 3), 0);
    int d = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    struct sockaddr_un b = {.sun_family = AF_UNIX};
    memcpy(b.sun_path, "\0dx-diag-test", 13);
    cr_assert_eq(bind(d, (struct sockaddr *)&b, offsetof(struct sockaddr_un, sun_path) + 13), 0);

    dx_sockinfo *v;
    int n = dx_sock_list(DX_SL_UNIX | how, &v, NULL);
    cr_assert_gt(n, 0, "%s", dx_strerror(n));
    const dx_sockinfo *l = find(v, n, ino_of(fd));
    cr_assert_not_null(l);
    cr_assert_eq(l->state, DX_SS_LISTEN);
    cr_assert_eq(l->type, SOCK_STREAM);
    cr_assert_str_eq(l->path, a.sun_path);
    if (how == DX_SL_NETLINK)
        cr_assert_eq(l->wqueue, 3);
    const dx_sockinfo *g = find(v, n, ino_of(d));
    cr_assert_not_null(g);
    cr_assert_eq(g->type, SOCK_DGRAM);
    cr_assert_eq(g->state, DX_SS_CLOSE);
    cr_assert_str_eq(g->path, "@dx-diag-test");
    free(v);
    close(d);
    close(fd);
    unlink(a.sun_path);
    rmdir(dir);
}

T(unix_netlink) { check_unix(DX_SL_NETLINK); }
T(unix_proc) { check_unix(DX_SL_PROC); }

T(procs_finds_own_fd)
{
    int port;
    int fd = tcp_listener(1, &port);
    dx_sockproc *v;
    int n = dx_sock_procs(&v);
    cr_assert_gt(n, 0, "%s", dx_strerror(n));
    int found = 0;
    for (int i = 0; i < n; i++) {
        if (i > 0)
            cr_assert_leq(v[i - 1].inode, v[i].inode); /* sorted */
        if (v[i].inode == ino_of(fd) && v[i].pid == getpid() && v[i].fd == fd)
            found = 1;
    }
    cr_assert(found);
    free(v);
    close(fd);
}

T(state_names)
{
    cr_assert_str_eq(dx_sock_state_name(DX_SS_ESTABLISHED), "ESTAB");
    cr_assert_str_eq(dx_sock_state_name(DX_SS_LISTEN), "LISTEN");
    cr_assert_str_eq(dx_sock_state_name(DX_SS_CLOSE), "UNCONN");
    cr_assert_str_eq(dx_sock_state_name(DX_SS_TIME_WAIT), "TIME-WAIT");
    cr_assert_str_eq(dx_sock_state_name(0), "UNKNOWN");
    cr_assert_str_eq(dx_sock_state_name(99), "UNKNOWN");
}

/* A dump read in chunks can give a socket twice (its hash bucket changed
 * between two chunks: seen on a busy CI machine, a listener's connection
 * listed twice). dx__sock_dedupe() keeps the first of each socket, in
 * order; two listeners sharing an address (SO_REUSEPORT: other inodes) and
 * TIME-WAIT entries of other connections stay. */
static dx_sockinfo rec(int proto, uint64_t ino, int state, int lport, int pport, uint32_t rq)
{
    dx_sockinfo s;
    memset(&s, 0, sizeof s);
    s.proto = proto;
    s.family = AF_INET;
    s.state = state;
    s.inode = ino;
    s.rqueue = rq;
    /* whole structures copied in: stores through a cast sockaddr_in * into
     * a sockaddr_storage may be reordered around the memset at -O2 */
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    a.sin_port = htons((uint16_t)lport);
    memcpy(&s.local, &a, sizeof a);
    a.sin_port = htons((uint16_t)pport);
    memcpy(&s.peer, &a, sizeof a);
    return s;
}

T(dedupe_keeps_the_first_of_each_socket)
{
    dx_sockinfo v[] = {
        rec(DX_SL_TCP, 10, DX_SS_LISTEN, 5000, 0, 0),
        rec(DX_SL_TCP, 11, DX_SS_ESTABLISHED, 5000, 6000, 1),
        rec(DX_SL_TCP, 10, DX_SS_LISTEN, 5000, 0, 0),          /* the listener again */
        rec(DX_SL_TCP, 12, DX_SS_LISTEN, 5000, 0, 0),          /* SO_REUSEPORT twin */
        rec(DX_SL_TCP, 0, DX_SS_TIME_WAIT, 5000, 6001, 0),
        rec(DX_SL_TCP, 11, DX_SS_ESTABLISHED, 5000, 6000, 7), /* again, its queue moved */
        rec(DX_SL_TCP, 0, DX_SS_TIME_WAIT, 5000, 6002, 0),
        rec(DX_SL_UDP, 11, DX_SS_ESTABLISHED, 5000, 6000, 1), /* another protocol */
        rec(DX_SL_TCP, 0, DX_SS_TIME_WAIT, 5000, 6001, 0),    /* the first TIME-WAIT again */
    };
    size_t n = dx__sock_dedupe(v, sizeof v / sizeof v[0]);
    cr_assert_eq(n, 6, "%zu records kept", n);
    uint64_t want_ino[] = {10, 11, 12, 0, 0, 11};
    int want_pport[] = {0, 6000, 0, 6001, 6002, 6000};
    for (size_t i = 0; i < n; i++) {
        cr_assert_eq(v[i].inode, want_ino[i], "record %zu", i);
        cr_assert_eq(ntohs(((struct sockaddr_in *)&v[i].peer)->sin_port), want_pport[i], "record %zu", i);
    }
    cr_assert_eq(v[1].rqueue, 1, "the first copy stays");
    cr_assert_eq(v[5].proto, DX_SL_UDP);
    cr_assert_eq(dx__sock_dedupe(v, 0), 0);
}
