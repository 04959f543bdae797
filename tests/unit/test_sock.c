/* test_sock.c: listen, accept, connect, Unix socket files, error tables. */
#define _GNU_SOURCE
#include "helpers.h"

#include <sys/resource.h>

#define T(name) Test(sock, name, .timeout = 20, .init = sock_init)

static void sock_init(void) { h_alarm(H_ALARM_SECONDS); }

T(listen_ephemeral_port)
{
    dx_addr a = h_addr4(0);
    int fd = dx_listen(&a, NULL);
    cr_assert_geq(fd, 0, "%s", dx_strerror(fd));
    dx_addr local;
    cr_assert_eq(dx_sock_local(fd, &local), 0);
    cr_assert_eq(((struct sockaddr *)&local.ss)->sa_family, AF_INET);
    cr_assert_gt(dx_addr_port(&local), 0);
    char buf[DX_ADDR_STRLEN];
    dx_addr_format(&local, buf, sizeof buf);
    cr_assert_eq(strncmp(buf, "127.0.0.1:", 10), 0, "%s", buf);
    cr_assert(h_is_nonblock(fd));
    cr_assert(h_is_cloexec(fd));
    int type = 0, acc = 0;
    socklen_t len = sizeof type;
    cr_assert_eq(getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len), 0);
    cr_assert_eq(type, SOCK_STREAM);
    len = sizeof acc;
    cr_assert_eq(getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &acc, &len), 0);
    cr_assert_eq(acc, 1, "listening");
    close(fd);
}

T(listen_reuseaddr)
{
    dx_addr a = h_addr4(0);
    int fd = dx_listen(&a, NULL);
    cr_assert_geq(fd, 0);
    int v = 0;
    socklen_t len = sizeof v;
    cr_assert_eq(getsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &v, &len), 0);
    cr_assert_neq(v, 0, "SO_REUSEADDR is set by default");
#ifdef SO_REUSEPORT
    len = sizeof v;
    cr_assert_eq(getsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &v, &len), 0);
    cr_assert_eq(v, 0, "SO_REUSEPORT is never set by default");
#endif
    close(fd);

    dx_listen_opts o = {0};
    o.no_reuseaddr = 1;
    fd = dx_listen(&a, &o);
    cr_assert_geq(fd, 0);
    len = sizeof v;
    cr_assert_eq(getsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &v, &len), 0);
    cr_assert_eq(v, 0, "no_reuseaddr");
    close(fd);

#ifdef SO_REUSEPORT
    o = (dx_listen_opts){0};
    o.reuseport = 1;
    fd = dx_listen(&a, &o);
    cr_assert_geq(fd, 0);
    len = sizeof v;
    cr_assert_eq(getsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &v, &len), 0);
    cr_assert_neq(v, 0);
    /* a second reuseport listener shares the port */
    dx_addr local;
    cr_assert_eq(dx_sock_local(fd, &local), 0);
    int fd2 = dx_listen(&local, &o);
    cr_assert_geq(fd2, 0, "%s", dx_strerror(fd2));
    close(fd2);
    close(fd);
#endif
}

T(listen_port_in_use)
{
    int port;
    int fd = h_listen4(0, &port);
    dx_addr a = h_addr4(port);
    cr_assert_eq(dx_listen(&a, NULL), -EADDRINUSE);
    close(fd);
    /* once closed the port is free again (SO_REUSEADDR) */
    int fd2 = dx_listen(&a, NULL);
    cr_assert_geq(fd2, 0, "%s", dx_strerror(fd2));
    close(fd2);
}

T(listen_backlog_and_somaxconn)
{
    int m = dx_somaxconn();
    cr_assert_gt(m, 0);
    FILE *f = fopen("/proc/sys/net/core/somaxconn", "r");
    if (f) {
        int v = 0;
        if (fscanf(f, "%d", &v) == 1)
            cr_assert_eq(m, v);
        fclose(f);
    } else {
        cr_assert_eq(m, SOMAXCONN);
    }
}

T(dual_stack_accepts_ipv4)
{
    if (!h_have_ipv6())
        cr_skip_test("IPv6 is not available");
    dx_addr any;
    cr_assert_eq(dx_addr_ip(&any, "::", 0), 0);
    dx_listen_opts o = {0};
    o.v6only = 0;
    int lfd = dx_listen(&any, &o);
    if (lfd == -EAFNOSUPPORT || lfd == -EADDRNOTAVAIL)
        cr_skip_test("cannot bind ::");
    cr_assert_geq(lfd, 0, "%s", dx_strerror(lfd));
    int v = 1;
    socklen_t len = sizeof v;
    cr_assert_eq(getsockopt(lfd, IPPROTO_IPV6, IPV6_V6ONLY, &v, &len), 0);
    if (v)
        cr_skip_test("the system forces IPV6_V6ONLY");
    dx_addr local;
    cr_assert_eq(dx_sock_local(lfd, &local), 0);
    int port = dx_addr_port(&local);

    int c = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    dx_addr a4 = h_addr4(port);
    cr_assert_eq(connect(c, (struct sockaddr *)&a4.ss, a4.len), 0, "%s", strerror(errno));
    cr_assert(h_wait_fd(lfd, POLLIN, 5000) & POLLIN);
    dx_addr peer;
    int s = dx_accept(lfd, &peer);
    cr_assert_geq(s, 0, "%s", dx_strerror(s));
    cr_assert_eq(((struct sockaddr *)&peer.ss)->sa_family, AF_INET6);
    char buf[DX_ADDR_STRLEN];
    dx_addr_format(&peer, buf, sizeof buf);
    cr_assert_eq(strncmp(buf, "127.0.0.1:", 10), 0, "v4-mapped peer shown as IPv4: %s", buf);
    /* bytes flow */
    cr_assert_eq(write(c, "hi", 2), 2);
    char got[2];
    h_set_nonblock(s, 0);
    h_read_all(s, got, 2);
    cr_assert_eq(memcmp(got, "hi", 2), 0);
    close(s);
    close(c);
    close(lfd);

    /* v6only=1 refuses IPv4 */
    o.v6only = 1;
    lfd = dx_listen(&any, &o);
    cr_assert_geq(lfd, 0, "%s", dx_strerror(lfd));
    len = sizeof v;
    cr_assert_eq(getsockopt(lfd, IPPROTO_IPV6, IPV6_V6ONLY, &v, &len), 0);
    cr_assert_eq(v, 1);
    cr_assert_eq(dx_sock_local(lfd, &local), 0);
    a4 = h_addr4(dx_addr_port(&local));
    c = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    cr_assert_eq(connect(c, (struct sockaddr *)&a4.ss, a4.len), -1);
    cr_assert_eq(errno, ECONNREFUSED);
    close(c);
    close(lfd);
}

T(accept_empty_queue)
{
    int lfd = h_listen4(0, NULL);
    dx_addr peer;
    cr_assert_eq(dx_accept(lfd, &peer), -EAGAIN);
    cr_assert_eq(dx_accept(lfd, NULL), -EAGAIN);
    cr_assert(dx_accept_error_is_transient(-EAGAIN));
    close(lfd);
    cr_assert_eq(dx_accept(lfd, NULL), -EBADF);
}

T(accept_flags_and_peer)
{
    int port;
    int lfd = h_listen4(0, &port);
    int c = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    dx_addr a = h_addr4(port);
    cr_assert_eq(connect(c, (struct sockaddr *)&a.ss, a.len), 0);
    cr_assert(h_wait_fd(lfd, POLLIN, 5000) & POLLIN);
    dx_addr peer;
    memset(&peer, 0xab, sizeof peer);
    int s = dx_accept(lfd, &peer);
    cr_assert_geq(s, 0, "%s", dx_strerror(s));
    cr_assert(h_is_nonblock(s), "accepted fd is non-blocking");
    cr_assert(h_is_cloexec(s), "accepted fd is close-on-exec");
    dx_addr cl;
    cr_assert_eq(dx_sock_local(c, &cl), 0);
    cr_assert_eq(peer.len, cl.len);
    cr_assert_eq(memcmp(&peer.ss, &cl.ss, cl.len), 0, "peer address is the client's");
    dx_addr sp;
    cr_assert_eq(dx_sock_peer(s, &sp), 0);
    cr_assert_eq(dx_addr_port(&sp), dx_addr_port(&cl));
    cr_assert_eq(dx_accept(lfd, NULL), -EAGAIN);
    close(s);
    close(c);
    close(lfd);
}

T(connect_start_and_result)
{
    int port;
    int lfd = h_listen4(0, &port);
    dx_addr a = h_addr4(port);
    int fd = dx_connect_start(&a, NULL);
    cr_assert_geq(fd, 0, "%s", dx_strerror(fd));
    cr_assert(h_is_nonblock(fd));
    cr_assert(h_is_cloexec(fd));
    cr_assert(h_wait_fd(fd, POLLOUT, 5000) & POLLOUT);
    cr_assert_eq(dx_connect_result(fd), 0);
    dx_addr peer;
    cr_assert_eq(dx_sock_peer(fd, &peer), 0);
    cr_assert_eq(dx_addr_port(&peer), port);
    cr_assert(h_wait_fd(lfd, POLLIN, 5000) & POLLIN);
    int s = dx_accept(lfd, NULL);
    cr_assert_geq(s, 0);
    cr_assert_eq(write(fd, "abc", 3), 3);
    char got[3];
    h_set_nonblock(s, 0);
    h_read_all(s, got, 3);
    cr_assert_eq(memcmp(got, "abc", 3), 0);
    close(s);
    close(fd);
    close(lfd);
}

T(connect_refused)
{
    dx_addr a = h_addr4(h_closed_port());
    int fd = dx_connect_start(&a, NULL);
    int rc;
    if (fd >= 0) {
        int re = h_wait_fd(fd, POLLOUT, 5000);
        cr_assert(re & (POLLOUT | POLLERR | POLLHUP), "revents %d", re);
        rc = dx_connect_result(fd);
        close(fd);
    } else {
        rc = fd; /* loopback may refuse at once */
    }
    cr_assert_eq(rc, -ECONNREFUSED, "%d (%s)", rc, dx_strerror(rc));
}

T(connect_result_not_connected)
{
    /* an unconnected socket has no error but no peer either */
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    cr_assert_eq(dx_connect_result(fd), -ENOTCONN);
    close(fd);
    cr_assert_eq(dx_connect_result(fd), -EBADF);
}

T(connect_source_bind)
{
    int port;
    int lfd = h_listen4(0, &port);
    dx_addr a = h_addr4(port);

    /* address only */
    dx_addr src = h_addr4(0);
    int fd = dx_connect_start(&a, &src);
    cr_assert_geq(fd, 0, "%s", dx_strerror(fd));
    cr_assert(h_wait_fd(fd, POLLOUT, 5000) & POLLOUT);
    cr_assert_eq(dx_connect_result(fd), 0);
    dx_addr local;
    cr_assert_eq(dx_sock_local(fd, &local), 0);
    char buf[DX_ADDR_STRLEN];
    dx_addr_format(&local, buf, sizeof buf);
    cr_assert_eq(strncmp(buf, "127.0.0.1:", 10), 0, "%s", buf);
    close(fd);

    /* a specific source port */
    int sport = h_free_port();
    src = h_addr4(sport);
    fd = dx_connect_start(&a, &src);
    cr_assert_geq(fd, 0, "%s", dx_strerror(fd));
    cr_assert(h_wait_fd(fd, POLLOUT, 5000) & POLLOUT);
    cr_assert_eq(dx_connect_result(fd), 0);
    cr_assert_eq(dx_sock_local(fd, &local), 0);
    cr_assert_eq(dx_addr_port(&local), sport);
    int v = 0;
    socklen_t len = sizeof v;
    cr_assert_eq(getsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &v, &len), 0);
    cr_assert_neq(v, 0, "SO_REUSEADDR set when a source port is given");
    /* the server sees that port */
    cr_assert(h_wait_fd(lfd, POLLIN, 5000) & POLLIN);
    int s1 = dx_accept(lfd, NULL);
    cr_assert_geq(s1, 0);
    int s2 = dx_accept(lfd, NULL);
    cr_assert_geq(s2, 0);
    dx_addr p2;
    cr_assert_eq(dx_sock_peer(s2, &p2), 0);
    cr_assert_eq(dx_addr_port(&p2), sport);
    close(s1);
    close(s2);
    close(fd);

    /* a source port a listener holds: -EADDRINUSE */
    src = h_addr4(port);
    fd = dx_connect_start(&a, &src);
    cr_assert_eq(fd, -EADDRINUSE, "%d (%s)", fd, dx_strerror(fd));

    /* a source address not on this host */
    cr_assert_eq(dx_addr_ip(&src, "192.0.2.1", 0), 0);
    fd = dx_connect_start(&a, &src);
    cr_assert_eq(fd, -EADDRNOTAVAIL, "%d (%s)", fd, dx_strerror(fd));
    close(lfd);
}

T(unix_listen_connect)
{
    char dir[64], path[128];
    h_tmpdir(dir, sizeof dir);
    snprintf(path, sizeof path, "%s/s", dir);
    dx_addr a;
    cr_assert_eq(dx_addr_unix(&a, path), 0);
    /* nothing there yet: immediate failure */
    cr_assert_eq(dx_connect_start(&a, NULL), -ENOENT);
    int lfd = dx_listen(&a, NULL);
    cr_assert_geq(lfd, 0, "%s", dx_strerror(lfd));
    cr_assert(h_is_nonblock(lfd));
    int fd = dx_connect_start(&a, NULL);
    cr_assert_geq(fd, 0, "%s", dx_strerror(fd));
    cr_assert(h_wait_fd(fd, POLLOUT, 5000) & POLLOUT);
    cr_assert_eq(dx_connect_result(fd), 0);
    int s = dx_accept(lfd, NULL);
    cr_assert_geq(s, 0);
    dx_addr local;
    cr_assert_eq(dx_sock_local(lfd, &local), 0);
    char buf[DX_ADDR_STRLEN];
    cr_assert_str_eq(dx_addr_format(&local, buf, sizeof buf), path);
    /* a second listener on the same path */
    cr_assert_eq(dx_listen(&a, NULL), -EADDRINUSE);
    close(s);
    close(fd);
    close(lfd);
    /* the file stays: connecting to it is refused at once */
    cr_assert_eq(dx_connect_start(&a, NULL), -ECONNREFUSED);
    cr_assert_eq(unlink(path), 0);
    cr_assert_eq(rmdir(dir), 0);
}

T(unix_abstract_listen)
{
    char name[64];
    snprintf(name, sizeof name, "@dxtest-%d-%llu", (int)getpid(), (unsigned long long)h_now_ms());
    dx_addr a;
    cr_assert_eq(dx_addr_unix(&a, name), 0);
    int lfd = dx_listen(&a, NULL);
    cr_assert_geq(lfd, 0, "%s", dx_strerror(lfd));
    dx_addr local;
    cr_assert_eq(dx_sock_local(lfd, &local), 0);
    char buf[DX_ADDR_STRLEN];
    cr_assert_str_eq(dx_addr_format(&local, buf, sizeof buf), name);
    int fd = dx_connect_start(&a, NULL);
    cr_assert_geq(fd, 0, "%s", dx_strerror(fd));
    cr_assert(h_wait_fd(fd, POLLOUT, 5000) & POLLOUT);
    cr_assert_eq(dx_connect_result(fd), 0);
    /* nothing to unlink for an abstract name */
    cr_assert_eq(dx_unix_unlink_stale(name), 0);
    close(fd);
    close(lfd);
}

T(unix_unlink_stale)
{
    char dir[64], path[128], file[128], none[128];
    h_tmpdir(dir, sizeof dir);
    snprintf(path, sizeof path, "%s/sock", dir);
    snprintf(file, sizeof file, "%s/file", dir);
    snprintf(none, sizeof none, "%s/none", dir);
    dx_addr a;
    cr_assert_eq(dx_addr_unix(&a, path), 0);

    /* a live server: left alone */
    int lfd = dx_listen(&a, NULL);
    cr_assert_geq(lfd, 0);
    cr_assert_eq(dx_unix_unlink_stale(path), -EADDRINUSE);
    struct stat st;
    cr_assert_eq(stat(path, &st), 0, "a live socket must not be removed");
    close(lfd);

    /* the dead server's file: removed, and the path can be reused */
    cr_assert_eq(stat(path, &st), 0);
    cr_assert_eq(dx_listen(&a, NULL), -EADDRINUSE);
    cr_assert_eq(dx_unix_unlink_stale(path), 1);
    cr_assert_eq(stat(path, &st), -1);
    cr_assert_eq(errno, ENOENT);
    lfd = dx_listen(&a, NULL);
    cr_assert_geq(lfd, 0, "%s", dx_strerror(lfd));
    close(lfd);
    cr_assert_eq(unlink(path), 0);

    /* nothing there */
    cr_assert_eq(dx_unix_unlink_stale(none), 0);

    /* a regular file is not touched */
    FILE *f = fopen(file, "w");
    cr_assert_not_null(f);
    fclose(f);
    cr_assert_eq(dx_unix_unlink_stale(file), -ENOTSOCK);
    cr_assert_eq(stat(file, &st), 0);
    cr_assert_eq(unlink(file), 0);

    /* nor a directory */
    cr_assert_eq(dx_unix_unlink_stale(dir), -ENOTSOCK);
    cr_assert_eq(rmdir(dir), 0);
}

/* Asking whether a server is alive must not hand it a bogus client. */
T(unix_unlink_stale_no_bogus_client)
{
    char dir[64], path[128];
    h_tmpdir(dir, sizeof dir);
    snprintf(path, sizeof path, "%s/sock", dir);
    dx_addr a;
    cr_assert_eq(dx_addr_unix(&a, path), 0);
    int lfd = dx_listen(&a, NULL);
    cr_assert_geq(lfd, 0);
    cr_assert_eq(dx_unix_unlink_stale(path), -EADDRINUSE);
    int s = dx_accept(lfd, NULL);
    if (s >= 0)
        close(s);
    close(lfd);
    unlink(path);
    rmdir(dir);
    cr_assert_eq(s, -EAGAIN, "dx_unix_unlink_stale() left a connection in the server's queue");
}

/* A live server whose accept queue is full: the answer comes at once
 * (a blocking connect() to it would wait until the server accepts). */
static void on_alarm_exit(int sig)
{
    (void)sig;
    static const char msg[] = "dx_unix_unlink_stale() blocked on a busy server\n";
    ssize_t k = write(2, msg, sizeof msg - 1);
    (void)k;
    _exit(3);
}

T(unix_unlink_stale_busy_server)
{
    char dir[64], path[128];
    h_tmpdir(dir, sizeof dir);
    snprintf(path, sizeof path, "%s/sock", dir);
    dx_addr a;
    cr_assert_eq(dx_addr_unix(&a, path), 0);
    dx_listen_opts o = {0};
    o.backlog = 1;
    int lfd = dx_listen(&a, &o);
    cr_assert_geq(lfd, 0);
    int held[16], nheld = 0, full = 0;
    while (nheld < 16) {
        int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        cr_assert_geq(fd, 0);
        if (connect(fd, (struct sockaddr *)&a.ss, a.len) < 0) {
            cr_assert_eq(errno, EAGAIN, "%s", strerror(errno));
            close(fd);
            full = 1;
            break;
        }
        held[nheld++] = fd;
    }
    cr_assert(full, "the accept queue did not fill");
    signal(SIGALRM, on_alarm_exit);
    alarm(3);
    int rc = dx_unix_unlink_stale(path);
    alarm(0);
    h_alarm(H_ALARM_SECONDS);
    cr_assert_eq(rc, -EADDRINUSE);
    struct stat st;
    cr_assert_eq(stat(path, &st), 0);
    for (int i = 0; i < nheld; i++)
        close(held[i]);
    close(lfd);
    unlink(path);
    rmdir(dir);
}

T(accept_error_tables)
{
    static const int transient[] = {ECONNABORTED, EPROTO, EINTR, EAGAIN, ENETDOWN,
                                    EHOSTUNREACH, ENETUNREACH, EMFILE, ENFILE, ENOBUFS, ENOMEM};
    static const int fatal[] = {EBADF, EINVAL, ENOTSOCK, EFAULT, 0, ECONNREFUSED};
    static const int exhaustion[] = {EMFILE, ENFILE, ENOBUFS, ENOMEM};
    static const int not_exhaustion[] = {ECONNABORTED, EPROTO, EAGAIN, EBADF, EINVAL, 0};
    for (size_t i = 0; i < sizeof transient / sizeof transient[0]; i++)
        cr_expect(dx_accept_error_is_transient(-transient[i]), "%s", strerror(transient[i]));
    for (size_t i = 0; i < sizeof fatal / sizeof fatal[0]; i++)
        cr_expect_not(dx_accept_error_is_transient(-fatal[i]), "%s", strerror(fatal[i]));
    for (size_t i = 0; i < sizeof exhaustion / sizeof exhaustion[0]; i++)
        cr_expect(dx_accept_error_is_exhaustion(-exhaustion[i]), "%s", strerror(exhaustion[i]));
    for (size_t i = 0; i < sizeof not_exhaustion / sizeof not_exhaustion[0]; i++)
        cr_expect_not(dx_accept_error_is_exhaustion(-not_exhaustion[i]), "%s",
                      strerror(not_exhaustion[i]));
    /* library codes are never accept errors */
    cr_expect_not(dx_accept_error_is_transient(DX_ETIMEDOUT));
    cr_expect_not(dx_accept_error_is_exhaustion(DX_ENOADDR));
}

T(accept_emfile_is_exhaustion)
{
    /* make accept fail for real with EMFILE */
    int port;
    int lfd = h_listen4(0, &port);
    int c = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    dx_addr a = h_addr4(port);
    cr_assert_eq(connect(c, (struct sockaddr *)&a.ss, a.len), 0);
    cr_assert(h_wait_fd(lfd, POLLIN, 5000) & POLLIN);
    /* lower the fd limit to just above the highest fd in use */
    int maxfd = c > lfd ? c : lfd;
    int spare[8], ns = 0;
    for (; ns < 8; ns++) {
        spare[ns] = open("/dev/null", O_RDONLY | O_CLOEXEC);
        if (spare[ns] < 0)
            break;
        if (spare[ns] > maxfd)
            maxfd = spare[ns];
    }
    struct rlimit old, lim;
    cr_assert_eq(getrlimit(RLIMIT_NOFILE, &old), 0);
    lim = old;
    lim.rlim_cur = (rlim_t)maxfd + 1;
    cr_assert_eq(setrlimit(RLIMIT_NOFILE, &lim), 0);
    /* fill every free slot below the limit */
    int filler[64], nf = 0;
    while (nf < 64) {
        int d = open("/dev/null", O_RDONLY | O_CLOEXEC);
        if (d < 0)
            break;
        filler[nf++] = d;
    }
    int rc = dx_accept(lfd, NULL);
    int rc_errno = rc;
    for (int i = 0; i < nf; i++)
        close(filler[i]);
    cr_assert_eq(setrlimit(RLIMIT_NOFILE, &old), 0);
    cr_assert_eq(rc_errno, -EMFILE, "%d (%s)", rc, dx_strerror(rc));
    cr_assert(dx_accept_error_is_exhaustion(rc));
    cr_assert(dx_accept_error_is_transient(rc));
    /* the connection is still queued */
    int s = dx_accept(lfd, NULL);
    cr_assert_geq(s, 0);
    close(s);
    for (int i = 0; i < ns; i++)
        close(spare[i]);
    close(c);
    close(lfd);
}

T(set_nonblock_returns_previous_flags)
{
    int p[2];
    h_pipe(p, 0);
    int prev = dx_set_nonblock(p[0], 1);
    cr_assert_geq(prev, 0);
    cr_assert_eq(prev & O_NONBLOCK, 0);
    cr_assert(h_is_nonblock(p[0]));
    prev = dx_set_nonblock(p[0], 1);
    cr_assert_neq(prev & O_NONBLOCK, 0);
    prev = dx_set_nonblock(p[0], 0);
    cr_assert_neq(prev & O_NONBLOCK, 0);
    cr_assert_not(h_is_nonblock(p[0]));
    close(p[0]);
    close(p[1]);
    cr_assert_eq(dx_set_nonblock(p[0], 1), -EBADF);
}

T(sock_local_peer_errors)
{
    dx_addr a;
    cr_assert_eq(dx_sock_local(-1, &a), -EBADF);
    int p[2];
    h_pipe(p, 0);
    cr_assert_eq(dx_sock_peer(p[0], &a), -ENOTSOCK);
    close(p[0]);
    close(p[1]);
    int lfd = h_listen4(0, NULL);
    cr_assert_eq(dx_sock_peer(lfd, &a), -ENOTCONN);
    close(lfd);
}
