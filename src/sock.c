/* sock.c: socket creation, listen/accept/connect, all non-blocking and
 * close-on-exec from the first system call (no fcntl window before exec). */
#define _GNU_SOURCE
#include "os.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

static int new_socket(int family) { return dx__sock_open(family, SOCK_STREAM); }

static int fail_close(int fd)
{
    int e = errno;
    dx__sock_close(fd);
    return -e;
}

int dx_somaxconn(void)
{
    int v = SOMAXCONN;
    if (DX_OS_WINDOWS) /* SOMAXCONN there means "the provider's maximum" */
        return v;
    FILE *f = fopen("/proc/sys/net/core/somaxconn", DX_FOPEN_READ);
    if (f) {
        if (fscanf(f, "%d", &v) != 1)
            v = SOMAXCONN;
        fclose(f);
    }
    return v;
}

int dx_listen(const dx_addr *addr, const dx_listen_opts *opts)
{
    static const dx_listen_opts defaults;
    if (!opts)
        opts = &defaults;
    int family = ((const struct sockaddr *)&addr->ss)->sa_family;
    int fd = new_socket(family);
    if (fd < 0)
        return fd;
    int one = 1;
    if (family != AF_UNIX) {
        /* SO_REUSEADDR on POSIX, SO_EXCLUSIVEADDRUSE on Windows (os.h) */
        if (!opts->no_reuseaddr &&
            dx__sock_setsockopt(fd, SOL_SOCKET, DX_SO_LISTEN_ADDR, (const void *)&one, sizeof one) < 0)
            return fail_close(fd);
#ifdef SO_REUSEPORT
        if (opts->reuseport && setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) < 0)
            return fail_close(fd);
#else
        if (opts->reuseport) {
            dx__sock_close(fd);
            return -ENOPROTOOPT;
        }
#endif
    }
    if (opts->sockopt_failed)
        *opts->sockopt_failed = -1;
    if (opts->nsockopts > 0) {
        int rc = dx_sockopt_apply_all(fd, opts->sockopts, opts->nsockopts, opts->sockopt_failed);
        if (rc < 0) {
            dx__sock_close(fd);
            return rc;
        }
    }
    if (family == AF_INET6) {
        int v6only = opts->v6only ? 1 : 0;
        /* best effort: some systems force v6only, then -4 binds separately */
        (void)dx__sock_setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, (const void *)&v6only, sizeof v6only);
    }
    if (dx__sock_bind(fd, (const struct sockaddr *)&addr->ss, addr->len) < 0)
        return fail_close(fd);
    /* a backlog above somaxconn is silently capped by the kernel */
    int backlog = opts->backlog > 0 ? opts->backlog : dx_somaxconn();
    if (dx__sock_listen(fd, backlog) < 0)
        return fail_close(fd);
    return fd;
}

#ifdef __linux__
/* Whether a socket listens on path, from /proc/net/unix: 1 yes, 0 not
 * found there. Asking this way does not connect, so a one-shot server on the
 * path is not handed a bogus client. Paths are compared as given to bind(),
 * and also in absolute form for absolute entries. */
static int unix_listening(const char *path)
{
    char abs[4096] = "";
    if (path[0] != '/') {
        char cwd[3800];
        if (getcwd(cwd, sizeof cwd))
            snprintf(abs, sizeof abs, "%s/%s", cwd, path[0] == '.' && path[1] == '/' ? path + 2 : path);
    }
    FILE *f = fopen("/proc/net/unix", "re");
    if (!f)
        return 0;
    char line[4352];
    int found = 0;
    while (!found && fgets(line, sizeof line, f)) {
        unsigned long flags;
        char entry[4096];
        /* Num RefCount Protocol Flags Type St Inode Path */
        if (sscanf(line, "%*s %*x %*x %lx %*x %*x %*u %4095s", &flags, entry) != 2)
            continue;
        if (!(flags & 0x10000)) /* __SO_ACCEPTCON: listening */
            continue;
        found = strcmp(entry, path) == 0 || (abs[0] && strcmp(entry, abs) == 0);
    }
    fclose(f);
    return found;
}
#endif

#ifdef _WIN32
int dx_unix_unlink_stale(const char *path)
{
    (void)path;
    return -EAFNOSUPPORT; /* no Unix sockets in this Windows build */
}
#else
int dx_unix_unlink_stale(const char *path)
{
    struct stat st;
    if (path[0] == '@' || lstat(path, &st) < 0)
        return 0;
    if (!S_ISSOCK(st.st_mode))
        return -ENOTSOCK;
#ifdef __linux__
    if (unix_listening(path))
        return -EADDRINUSE;
#endif
    dx_addr a;
    int rc = dx_addr_unix(&a, path);
    if (rc < 0)
        return rc;
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    rc = connect(fd, (struct sockaddr *)&a.ss, a.len);
    int e = errno;
    close(fd);
    if (rc == 0)
        return -EADDRINUSE;
    if (e != ECONNREFUSED)
        return 0;
    return unlink(path) == 0 ? 1 : -errno;
}
#endif

int dx_accept(int listen_fd, dx_addr *peer)
{
    dx_addr tmp;
    if (!peer)
        peer = &tmp;
    dx__socklen len = sizeof peer->ss;
    int fd = dx__sock_accept_nb(listen_fd, (struct sockaddr *)&peer->ss, &len);
    peer->len = fd >= 0 ? (socklen_t)len : 0;
    return fd;
}

int dx_accept_error_is_exhaustion(int code)
{
    return code == -EMFILE || code == -ENFILE || code == -ENOBUFS || code == -ENOMEM;
}

int dx_accept_error_is_transient(int code)
{
    switch (-code) {
    case EAGAIN: case EINTR: case ECONNABORTED: case EPROTO: case EPERM:
    case ENETDOWN: case ENOPROTOOPT: case EHOSTDOWN: case EHOSTUNREACH:
    case EOPNOTSUPP: case ENETUNREACH: case ETIMEDOUT:
#ifdef ENONET
    case ENONET:
#endif
        return 1;
    default:
        return dx_accept_error_is_exhaustion(code);
    }
}

int dx_connect_start(const dx_addr *addr, const dx_addr *source)
{
    return dx_connect_start_opts(addr, source, NULL, 0, NULL);
}

int dx_connect_start_opts(const dx_addr *addr, const dx_addr *source, const dx_sockopt *opts,
                          int nopts, int *failed)
{
    int family = ((const struct sockaddr *)&addr->ss)->sa_family;
    if (failed)
        *failed = -1;
    int fd = new_socket(family);
    if (fd < 0)
        return fd;
    if (nopts > 0) {
        int rc = dx_sockopt_apply_all(fd, opts, nopts, failed);
        if (rc < 0) {
            dx__sock_close(fd);
            return rc;
        }
    }
    if (source) {
        int one = 1;
        if (dx_addr_port(source) > 0)
            (void)dx__sock_setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, (const void *)&one, sizeof one);
        if (dx__sock_bind(fd, (const struct sockaddr *)&source->ss, source->len) < 0) {
            if (failed)
                *failed = DX_FAILED_BIND;
            return fail_close(fd);
        }
    }
    while (dx__sock_connect(fd, (const struct sockaddr *)&addr->ss, addr->len) < 0) {
        if (errno == EINTR)
            continue;
        if (errno == EINPROGRESS) /* Windows: WSAEWOULDBLOCK, mapped so by dx__sock_connect */
            break;
        return fail_close(fd);
    }
    return fd;
}

int dx_connect_result(int fd)
{
    /* Bytes waiting prove the connection was made, even if the peer has reset
     * it since: SO_ERROR would then return (and clear) ECONNRESET and the
     * bytes would be dropped with the socket. Peek first; the reset is then
     * reported by the read that follows the data. A peek that finds no data
     * but an error has consumed that error: it is the connect's result. */
    char byte;
    ssize_t n = dx__sock_recv(fd, &byte, 1, MSG_PEEK | MSG_DONTWAIT);
    if (n > 0)
        return 0;
    if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR &&
        errno != ENOTCONN && errno != EINVAL && errno != ENOTSOCK)
        return -errno;
    int err = 0;
    dx__socklen len = sizeof err;
    if (dx__sock_getsockopt(fd, SOL_SOCKET, SO_ERROR, (void *)&err, &len) < 0)
        return -errno;
    if (err)
        return -dx__os_errno(err);
    /* writable without error but not connected would be odd; check. A reset
     * that arrives between the two calls leaves its error for a second look
     * (the connection was made: ECONNRESET, not a refusal). */
    dx_addr peer;
    if (dx_sock_peer(fd, &peer) < 0) {
        len = sizeof err;
        if (dx__sock_getsockopt(fd, SOL_SOCKET, SO_ERROR, (void *)&err, &len) == 0 && err)
            return -dx__os_errno(err);
        return -ENOTCONN;
    }
    return 0;
}

int dx_sock_local(int fd, dx_addr *out)
{
    dx__socklen len = sizeof out->ss;
    int rc = dx__sock_getsockname(fd, (struct sockaddr *)&out->ss, &len);
    out->len = rc < 0 ? 0 : (socklen_t)len;
    return rc < 0 ? -errno : 0;
}

int dx_sock_peer(int fd, dx_addr *out)
{
    dx__socklen len = sizeof out->ss;
    int rc = dx__sock_getpeername(fd, (struct sockaddr *)&out->ss, &len);
    out->len = rc < 0 ? 0 : (socklen_t)len;
    return rc < 0 ? -errno : 0;
}
