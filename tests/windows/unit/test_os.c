/* test_os.c: the Windows platform layer (os_win32.c) and the socket calls
 * built on it: errno mapping and texts, would-block, the loopback socket
 * pair, exclusive listening addresses, non-inheritable handles, options
 * Windows lacks. Runs under wine (make unit-windows). */
#include "os.h"
#include "tap.h"

/* Wait up to ms for events on one socket; returns revents (0 on timeout). */
static short wait_for(int fd, short events, int ms)
{
    struct pollfd p = {(SOCKET)(intptr_t)fd, events, 0};
    int n = dx__os_poll(&p, 1, ms);
    return n > 0 ? p.revents : 0;
}

/* A 127.0.0.1 port nothing listens on: bound by a listener, then closed. */
static int closed_port(void)
{
    dx_addr a;
    dx_addr_ip(&a, "127.0.0.1", 0);
    int l = dx_listen(&a, NULL);
    if (l < 0)
        return -1;
    dx_addr got;
    dx_sock_local(l, &got);
    dx_close(l);
    return dx_addr_port(&got);
}

static void test_connect_refused(void)
{
    int port = closed_port();
    CHECK(port > 0);
    dx_addr a;
    CHECK_INT(dx_addr_ip(&a, "127.0.0.1", port), 0);
    int fd = dx_connect_start(&a, NULL);
    if (fd == -ECONNREFUSED) { /* refused at once: also right */
        CHECK_STR(dx_strerror(fd), "Connection refused");
        return;
    }
    CHECK(fd >= 0);
    short re = wait_for(fd, POLLWRNORM, 5000);
    CHECK(re != 0); /* WSAPoll reports the failed connect (POLLERR|POLLHUP) */
    tap_note("failed connect: revents 0x%x", (unsigned)re);
    int rc = dx_connect_result(fd);
    CHECK_INT(rc, -ECONNREFUSED);
    CHECK_STR(dx_strerror(rc), "Connection refused");
    CHECK_INT(dx_close(fd), 0);
}

static void test_strerror_glibc_texts(void)
{
    CHECK_STR(dx_strerror(-ECONNREFUSED), "Connection refused");
    CHECK_STR(dx_strerror(-ECONNRESET), "Connection reset by peer");
    CHECK_STR(dx_strerror(-ETIMEDOUT), "Connection timed out");
    CHECK_STR(dx_strerror(-EADDRINUSE), "Address already in use");
    CHECK_STR(dx_strerror(-EADDRNOTAVAIL), "Cannot assign requested address");
    CHECK_STR(dx_strerror(-EHOSTUNREACH), "No route to host");
    CHECK_STR(dx_strerror(-ENETUNREACH), "Network is unreachable");
    CHECK_STR(dx_strerror(-EAGAIN), "Resource temporarily unavailable");
    CHECK_STR(dx_strerror(-EPIPE), "Broken pipe");
    CHECK_STR(dx_strerror(-ENOMEM), "Cannot allocate memory");
    CHECK_STR(dx_strerror(-EAFNOSUPPORT), "Address family not supported by protocol");
    CHECK_STR(dx_strerror(-ENOPROTOOPT), "Protocol not available");
    CHECK_STR(dx_strerror(DX_ETIMEDOUT), "Connection timed out");
}

static void test_errno_mapping(void)
{
    CHECK_INT(dx__os_errno(WSAEWOULDBLOCK), EAGAIN);
    CHECK_INT(dx__os_errno(WSAECONNREFUSED), ECONNREFUSED);
    CHECK_INT(dx__os_errno(WSAECONNRESET), ECONNRESET);
    CHECK_INT(dx__os_errno(WSAECONNABORTED), ECONNABORTED);
    CHECK_INT(dx__os_errno(WSAETIMEDOUT), ETIMEDOUT);
    CHECK_INT(dx__os_errno(WSAEADDRINUSE), EADDRINUSE);
    CHECK_INT(dx__os_errno(WSAESHUTDOWN), EPIPE);
    CHECK_INT(dx__os_errno(WSAENOTSOCK), ENOTSOCK);
    CHECK_INT(dx__os_errno(WSAEMSGSIZE), EMSGSIZE);
}

static void test_resolver_error_text(void)
{
    dx_addr *out = NULL;
    int rc = dx_resolve("not-a-number", "80", AF_UNSPEC, DX_RESOLVE_NUMERIC, &out);
    CHECK(rc < 0);
    CHECK(dx_is_resolver_error(rc));
    CHECK_STR(dx_strerror(rc), "Name or service not known");
    rc = dx_resolve("127.0.0.1", "8080", AF_UNSPEC, DX_RESOLVE_NUMERIC, &out);
    CHECK_INT(rc, 1);
    char buf[DX_ADDR_STRLEN];
    CHECK_STR(dx_addr_format(&out[0], buf, sizeof buf), "127.0.0.1:8080");
    free(out);
}

static void test_resolve_names_and_services(void)
{
    dx_addr *out = NULL;
    int n = dx_resolve("localhost", "80", AF_INET, 0, &out);
    CHECK(n >= 1);
    char buf[DX_ADDR_STRLEN];
    CHECK_STR(dx_addr_format(&out[0], buf, sizeof buf), "127.0.0.1:80");
    free(out);
    int http = dx_parse_port("http");
    tap_note("service \"http\": %d", http);
    CHECK_INT(http, 80);
    CHECK_INT(dx_parse_port("no-such-service-here"), DX_EBADPORT);
}

/* dx_acl_add_file: fopen and the getline stand-in (msvcrt has none) */
static void test_acl_file(void)
{
    const char *path = "duplex-unit-acl.txt";
    FILE *f = fopen(path, "w");
    CHECK(f != NULL);
    fputs("# rules\n10.0.0.0/8 192.168.1.7\n", f);
    for (int i = 0; i < 300; i++) /* a line longer than any first guess */
        fputs("   ", f);
    fputs("::1\n\n127.0.0.0/8", f); /* no newline at the end */
    fclose(f);
    dx_acl acl = {0};
    int bad = 0;
    CHECK_INT(dx_acl_add_file(&acl, path, 1, &bad), 4);
    dx_addr a;
    dx_addr_ip(&a, "10.1.2.3", 1);
    CHECK_INT(dx_acl_allows(&acl, &a), 1);
    dx_addr_ip(&a, "127.0.0.1", 1);
    CHECK_INT(dx_acl_allows(&acl, &a), 1);
    dx_addr_ip(&a, "8.8.8.8", 1);
    CHECK_INT(dx_acl_allows(&acl, &a), 0);
    dx_acl_free(&acl);
    f = fopen(path, "w");
    CHECK(f != NULL);
    fputs("10.0.0.0/8\nnot-a-rule\n", f);
    fclose(f);
    CHECK_INT(dx_acl_add_file(&acl, path, 0, &bad), DX_EBADADDR);
    CHECK_INT(bad, 2);
    dx_acl_free(&acl);
    remove(path);
    CHECK_INT(dx_acl_add_file(&acl, "no-such-file.txt", 1, &bad), -ENOENT);
}

static void test_socketpair_both_ways_and_half_close(void)
{
    int fds[2];
    CHECK_INT(dx__socketpair(fds), 0);
    char buf[16];
    /* nothing there yet: would block */
    CHECK_INT(dx__fd_read(fds[1], buf, sizeof buf), -1);
    CHECK_INT(errno, EAGAIN);
    CHECK_INT(dx__fd_write(fds[0], "ping", 4), 4);
    CHECK(wait_for(fds[1], POLLRDNORM, 5000) & POLLRDNORM);
    CHECK_INT(dx__fd_read(fds[1], buf, sizeof buf), 4);
    CHECK(memcmp(buf, "ping", 4) == 0);
    CHECK_INT(dx__fd_write(fds[1], "pong", 4), 4);
    CHECK(wait_for(fds[0], POLLRDNORM, 5000) & POLLRDNORM);
    CHECK_INT(dx__fd_read(fds[0], buf, sizeof buf), 4);
    CHECK(memcmp(buf, "pong", 4) == 0);
    /* half-close: fds[1] reads the end, and can still write back */
    CHECK_INT(dx__sock_shutdown(fds[0], SHUT_WR), 0);
    CHECK(wait_for(fds[1], POLLRDNORM, 5000) != 0);
    CHECK_INT(dx__fd_read(fds[1], buf, sizeof buf), 0);
    CHECK_INT(dx__fd_write(fds[1], "late", 4), 4);
    CHECK(wait_for(fds[0], POLLRDNORM, 5000) & POLLRDNORM);
    CHECK_INT(dx__fd_read(fds[0], buf, sizeof buf), 4);
    /* writing after our own shutdown: EPIPE, as on POSIX */
    CHECK_INT(dx__fd_write(fds[0], "x", 1), -1);
    CHECK_INT(errno, EPIPE);
    CHECK_INT(dx_close(fds[0]), 0);
    CHECK_INT(dx_close(fds[1]), 0);
}

static void test_buf_read_would_block(void)
{
    int fds[2];
    CHECK_INT(dx__socketpair(fds), 0);
    dx_buf b;
    CHECK_INT(dx_buf_init(&b, 64), 0);
    CHECK_INT(dx_buf_read_fd(&b, fds[0]), -EAGAIN);
    dx_buf_put(&b, "abcdef", 6);
    CHECK_INT(dx_buf_write_fd(&b, fds[1], 1), 6);
    CHECK(wait_for(fds[0], POLLRDNORM, 5000) & POLLRDNORM);
    CHECK_INT(dx_buf_read_fd(&b, fds[0]), 6);
    dx_buf_free(&b);
    dx_close(fds[0]);
    dx_close(fds[1]);
}

static void test_handles_not_inheritable(void)
{
    int fds[2];
    CHECK_INT(dx__socketpair(fds), 0);
    dx_addr a;
    dx_addr_ip(&a, "127.0.0.1", 0);
    int l = dx_listen(&a, NULL);
    CHECK(l >= 0);
    int all[3] = {fds[0], fds[1], l};
    for (int i = 0; i < 3; i++) {
        DWORD flags = 0xff;
        CHECK(GetHandleInformation((HANDLE)(intptr_t)all[i], &flags));
        CHECK_INT(flags & HANDLE_FLAG_INHERIT, 0);
    }
    dx_close(l);
    dx_close(fds[0]);
    dx_close(fds[1]);
}

static void test_second_listener_same_port_refused(void)
{
    dx_addr a;
    dx_addr_ip(&a, "127.0.0.1", 0);
    int l = dx_listen(&a, NULL);
    CHECK(l >= 0);
    dx_addr got;
    CHECK_INT(dx_sock_local(l, &got), 0);
    int port = dx_addr_port(&got);
    dx_addr_ip(&a, "127.0.0.1", port);
    int l2 = dx_listen(&a, NULL);
    CHECK_INT(l2, -EADDRINUSE);
    CHECK_STR(dx_strerror(l2), "Address already in use");
    /* a program asking for SO_REUSEADDR cannot take the port either */
    int s = dx__sock_open(AF_INET, SOCK_STREAM);
    CHECK(s >= 0);
    int one = 1;
    dx__sock_setsockopt(s, SOL_SOCKET, SO_REUSEADDR, (const void *)&one, sizeof one);
    int rc = dx__sock_bind(s, (const struct sockaddr *)&a.ss, a.len);
    int e = errno;
    tap_note("bind with SO_REUSEADDR over an exclusive listener: %d (%s)", rc,
             rc < 0 ? dx_strerror(-e) : "bound");
    CHECK_INT(rc, -1);
    CHECK(e == EADDRINUSE || e == EACCES);
    dx_close(s);
    dx_close(l);
    /* once the listener is closed, the port is free again at once */
    l2 = dx_listen(&a, NULL);
    CHECK(l2 >= 0);
    dx_close(l2);
}

static void test_relisten_with_time_wait(void)
{
    dx_addr a;
    dx_addr_ip(&a, "127.0.0.1", 0);
    int l = dx_listen(&a, NULL);
    CHECK(l >= 0);
    CHECK_INT(dx_sock_local(l, &a), 0);
    int c = dx_connect_start(&a, NULL);
    CHECK(c >= 0);
    CHECK(wait_for(c, POLLWRNORM, 5000) & POLLWRNORM);
    CHECK(wait_for(l, POLLRDNORM, 5000) & POLLRDNORM);
    int s = dx_accept(l, NULL);
    CHECK(s >= 0);
    CHECK_INT(dx_close(s), 0); /* the server closes first: TIME_WAIT on its side */
    CHECK(wait_for(c, POLLRDNORM, 5000) != 0);
    char b[4];
    CHECK_INT(dx__fd_read(c, b, sizeof b), 0);
    CHECK_INT(dx_close(c), 0);
    CHECK_INT(dx_close(l), 0);
    /* a restarted server gets its port back at once */
    l = dx_listen(&a, NULL);
    CHECK(l >= 0);
    dx_close(l);
}

static void test_accept_would_block(void)
{
    dx_addr a;
    dx_addr_ip(&a, "127.0.0.1", 0);
    int l = dx_listen(&a, NULL);
    CHECK(l >= 0);
    CHECK_INT(dx_accept(l, NULL), -EAGAIN);
    dx_close(l);
}

static void test_sockopts_windows_lacks(void)
{
    int s = dx__sock_open(AF_INET, SOCK_STREAM);
    CHECK(s >= 0);
    dx_sockopt o;
    CHECK_INT(dx_sockopt_parse("mark=1", &o), 0);
    CHECK_INT(dx_sockopt_apply(s, &o), -ENOPROTOOPT);
    CHECK_INT(dx_sockopt_parse("congestion=cubic", &o), 0);
    CHECK_INT(dx_sockopt_apply(s, &o), -ENOPROTOOPT);
    CHECK_INT(dx_sockopt_parse("nodelay", &o), 0);
    CHECK_INT(dx_sockopt_apply(s, &o), 0);
    dx_sockopt got;
    CHECK_INT(dx_sockopt_get(s, o.id, &got), 0);
    CHECK(got.value.num != 0);
    CHECK_INT(dx_sockopt_parse("rcvtimeo=2.5", &o), 0);
    CHECK_INT(dx_sockopt_apply(s, &o), 0);
    CHECK_INT(dx_sockopt_get(s, o.id, &got), 0);
    CHECK_INT(got.value.num, 2500000);
    CHECK_INT(dx_sockopt_parse("linger=3", &o), 0);
    CHECK_INT(dx_sockopt_apply(s, &o), 0);
    CHECK_INT(dx_sockopt_get(s, o.id, &got), 0);
    CHECK_INT(got.value.num, 3);
    dx_close(s);
}

static void test_ipv6_loopback(void)
{
    dx_addr a;
    CHECK_INT(dx_addr_ip(&a, "::1", 0), 0);
    int l = dx_listen(&a, NULL);
    if (l == -EADDRNOTAVAIL || l == -EAFNOSUPPORT) {
        tap_note("no IPv6 loopback here: %s", dx_strerror(l));
        return;
    }
    CHECK(l >= 0);
    CHECK_INT(dx_sock_local(l, &a), 0);
    char buf[DX_ADDR_STRLEN];
    CHECK(strncmp(dx_addr_format(&a, buf, sizeof buf), "[::1]:", 6) == 0);
    int c = dx_connect_start(&a, NULL);
    CHECK(c >= 0);
    CHECK(wait_for(c, POLLWRNORM, 5000) & POLLWRNORM);
    CHECK_INT(dx_connect_result(c), 0);
    CHECK(wait_for(l, POLLRDNORM, 5000) & POLLRDNORM);
    dx_addr peer;
    int s = dx_accept(l, &peer);
    CHECK(s >= 0);
    CHECK_INT(peer.ss.ss_family, AF_INET6);
    dx_close(s);
    dx_close(c);
    dx_close(l);
}

static void test_somaxconn(void)
{
    CHECK_INT(dx_somaxconn(), SOMAXCONN); /* Windows: the provider's maximum */
}

static void test_unix_sockets(void)
{
    dx_addr a;
    CHECK_INT(dx_addr_unix(&a, "duplex-unit.sock"), 0);
    int l = dx_listen(&a, NULL);
    tap_note("AF_UNIX listen: %s", l >= 0 ? "works" : dx_strerror(l));
    if (l >= 0) {
        dx_close(l);
        remove("duplex-unit.sock");
    } else {
        CHECK_INT(l, -EAFNOSUPPORT);
    }
    CHECK_INT(dx_unix_unlink_stale("duplex-unit.sock"), -EAFNOSUPPORT);
}

/* A pipe's 0-byte read is the writer's 0-byte write, not its end: a
 * message-mode named pipe delivers one (wine's anonymous pipes are Unix
 * pipes, which drop it; Windows' deliver it too). The bytes after it are
 * read, then the end, once the writer has closed. A file's 0 is its end. */
static void test_read_handle_zero_byte_write_is_not_the_end(void)
{
    char name[64];
    snprintf(name, sizeof name, "\\\\.\\pipe\\duplex-unit-%lu", GetCurrentProcessId());
    HANDLE r = CreateNamedPipeA(name, PIPE_ACCESS_INBOUND, PIPE_TYPE_MESSAGE | PIPE_READMODE_MESSAGE | PIPE_WAIT,
                                1, 4096, 4096, 0, NULL);
    CHECK(r != INVALID_HANDLE_VALUE);
    HANDLE w = CreateFileA(name, GENERIC_WRITE, 0, NULL, OPEN_EXISTING, 0, NULL);
    CHECK(w != INVALID_HANDLE_VALUE);
    DWORD put = 0;
    CHECK(WriteFile(w, "", 0, &put, NULL));
    CHECK(WriteFile(w, "abc", 3, &put, NULL));
    CloseHandle(w);
    char buf[16];
    CHECK_INT(dx__os_read_handle(r, buf, sizeof buf), 3);
    CHECK(memcmp(buf, "abc", 3) == 0);
    CHECK_INT(dx__os_read_handle(r, buf, sizeof buf), -1);
    CHECK_INT(GetLastError(), ERROR_BROKEN_PIPE);
    CloseHandle(r);

    /* a file: its bytes, then 0 */
    char path[MAX_PATH], dir[MAX_PATH];
    CHECK(GetTempPathA(sizeof dir, dir) > 0);
    CHECK(GetTempFileNameA(dir, "dxu", 0, path) != 0);
    HANDLE f = CreateFileA(path, GENERIC_READ | GENERIC_WRITE, 0, NULL, CREATE_ALWAYS,
                           FILE_FLAG_DELETE_ON_CLOSE, NULL);
    CHECK(f != INVALID_HANDLE_VALUE);
    CHECK(WriteFile(f, "xy", 2, &put, NULL));
    SetFilePointer(f, 0, NULL, FILE_BEGIN);
    CHECK_INT(dx__os_read_handle(f, buf, sizeof buf), 2);
    CHECK_INT(dx__os_read_handle(f, buf, sizeof buf), 0);
    CloseHandle(f);
}

TAP_MAIN(T(test_connect_refused), T(test_strerror_glibc_texts), T(test_errno_mapping),
         T(test_resolver_error_text), T(test_resolve_names_and_services), T(test_acl_file),
         T(test_socketpair_both_ways_and_half_close),
         T(test_buf_read_would_block), T(test_handles_not_inheritable),
         T(test_second_listener_same_port_refused), T(test_relisten_with_time_wait),
         T(test_accept_would_block),
         T(test_sockopts_windows_lacks), T(test_ipv6_loopback), T(test_somaxconn),
         T(test_unix_sockets), T(test_read_handle_zero_byte_write_is_not_the_end))
