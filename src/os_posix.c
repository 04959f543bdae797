/* os_posix.c: the platform layer on POSIX systems (see os.h): mostly the
 * system calls themselves, so this file is short. */
#define _GNU_SOURCE
#include "os.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

int dx__os_init(void) { return 0; }

uint64_t dx__os_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

int dx__os_is_socket(int fd)
{
    struct stat st;
    return fstat(fd, &st) == 0 && S_ISSOCK(st.st_mode);
}

const char *dx__os_strerror(int errnum) { return strerror(errnum); }

int dx__socketpair(int fds[2])
{
    if (socketpair(AF_UNIX, SOCK_STREAM, 0, fds) < 0)
        return -errno;
    for (int i = 0; i < 2; i++) {
        if (fcntl(fds[i], F_SETFD, FD_CLOEXEC) < 0 || dx_set_nonblock(fds[i], 1) < 0) {
            int e = errno;
            close(fds[0]);
            close(fds[1]);
            return -e;
        }
    }
    return 0;
}

int dx_set_nonblock(int fd, int on)
{
    int fl = fcntl(fd, F_GETFL);
    if (fl < 0)
        return -errno;
    int nfl = on ? (fl | O_NONBLOCK) : (fl & ~O_NONBLOCK);
    if (nfl != fl && fcntl(fd, F_SETFL, nfl) < 0)
        return -errno;
    return fl;
}

int dx__sock_open(int family, int type)
{
#if defined(SOCK_NONBLOCK) && defined(SOCK_CLOEXEC)
    int fd = socket(family, type | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    return fd < 0 ? -errno : fd;
#else
    int fd = socket(family, type, 0);
    if (fd < 0)
        return -errno;
    if (fcntl(fd, F_SETFD, FD_CLOEXEC) < 0 || dx_set_nonblock(fd, 1) < 0) {
        int e = errno;
        close(fd);
        return -e;
    }
    return fd;
#endif
}

int dx__sock_accept_nb(int lfd, struct sockaddr *sa, dx__socklen *len)
{
    dx__socklen cap = *len;
    for (;;) {
        *len = cap;
#ifdef __linux__
        int fd = accept4(lfd, sa, len, SOCK_NONBLOCK | SOCK_CLOEXEC);
#else
        int fd = accept(lfd, sa, len);
        if (fd >= 0 && (fcntl(fd, F_SETFD, FD_CLOEXEC) < 0 || dx_set_nonblock(fd, 1) < 0)) {
            int e = errno;
            close(fd);
            return -e;
        }
#endif
        if (fd >= 0)
            return fd;
        if (errno == EINTR)
            continue;
        return errno == EWOULDBLOCK ? -EAGAIN : -errno;
    }
}

ssize_t dx__fd_readv(int fd, const struct iovec *iov, int n) { return readv(fd, iov, n); }

ssize_t dx__fd_writev(int fd, const struct iovec *iov, int n, int is_socket)
{
    if (!is_socket)
        return writev(fd, iov, n);
    struct msghdr msg;
    memset(&msg, 0, sizeof msg);
    msg.msg_iov = (struct iovec *)iov;
    msg.msg_iovlen = (size_t)n;
#ifdef MSG_NOSIGNAL
    return sendmsg(fd, &msg, MSG_NOSIGNAL);
#else
    return sendmsg(fd, &msg, 0); /* BSD: SO_NOSIGPIPE or SIGPIPE ignored */
#endif
}

ssize_t dx__sock_recvfrom_trunc(int fd, void *buf, size_t cap, struct sockaddr *sa,
                                dx__socklen *len, int *truncated)
{
    struct iovec iov = {.iov_base = buf, .iov_len = cap};
    struct msghdr mh;
    memset(&mh, 0, sizeof mh);
    mh.msg_name = sa;
    mh.msg_namelen = sa ? *len : 0;
    mh.msg_iov = &iov;
    mh.msg_iovlen = 1;
    ssize_t r = recvmsg(fd, &mh, 0);
    if (r >= 0) {
        if (sa)
            *len = mh.msg_namelen;
        *truncated = (mh.msg_flags & MSG_TRUNC) != 0;
    }
    return r;
}

int dx__sock_atmark(int fd) { return sockatmark(fd); }

int dx_close(int fd) { return close(fd) == 0 ? 0 : -errno; }
