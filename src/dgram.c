/* dgram.c: datagram (UDP) sockets: bound for any peer, or connected to one,
 * and EINTR-safe send/receive of whole datagrams with -errno results.
 * Quirk: a connected UDP socket learns of an ICMP port unreachable
 * asynchronously; the error is reported (once) by the next send or receive
 * as ECONNREFUSED. */
#define _GNU_SOURCE
#include "internal.h"

#include <errno.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static int dgram_socket(int family)
{
    int fd = socket(family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    return fd < 0 ? -errno : fd;
}

static int fail(int fd)
{
    int e = errno;
    close(fd);
    return -e;
}

int dx_dgram_bind(const dx_addr *addr, const dx_listen_opts *opts)
{
    int family = addr->ss.ss_family;
    if (family != AF_INET && family != AF_INET6)
        return -EAFNOSUPPORT;
    int fd = dgram_socket(family);
    if (fd < 0)
        return fd;
    int on = 1;
    if (family == AF_INET6) {
        int v6only = opts ? opts->v6only : 0;
        if (setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &v6only, sizeof v6only) < 0)
            return fail(fd);
    }
#ifdef SO_REUSEPORT
    if (opts && opts->reuseport && setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &on, sizeof on) < 0)
        return fail(fd);
#endif
    (void)on;
    if (bind(fd, (const struct sockaddr *)&addr->ss, addr->len) < 0)
        return fail(fd);
    return fd;
}

int dx_dgram_connect(const dx_addr *peer, const dx_addr *source)
{
    int family = peer->ss.ss_family;
    if (family != AF_INET && family != AF_INET6)
        return -EAFNOSUPPORT;
    if (source && source->ss.ss_family != family)
        return -EAFNOSUPPORT;
    int fd = dgram_socket(family);
    if (fd < 0)
        return fd;
    if (source && bind(fd, (const struct sockaddr *)&source->ss, source->len) < 0)
        return fail(fd);
    int rc;
    do
        rc = connect(fd, (const struct sockaddr *)&peer->ss, peer->len);
    while (rc < 0 && errno == EINTR);
    if (rc < 0)
        return fail(fd);
    return fd;
}

ssize_t dx_dgram_send(int fd, const void *data, size_t n, const dx_addr *to)
{
    ssize_t r;
    do
        r = sendto(fd, data, n, MSG_NOSIGNAL, to ? (const struct sockaddr *)&to->ss : NULL,
                   to ? to->len : 0);
    while (r < 0 && errno == EINTR);
    if (r < 0)
        return errno == EWOULDBLOCK ? -EAGAIN : -errno;
    return r;
}

ssize_t dx_dgram_recv(int fd, void *buf, size_t cap, dx_addr *from, int *truncated)
{
    struct sockaddr_storage ss;
    struct iovec iov = {.iov_base = buf, .iov_len = cap};
    struct msghdr mh;
    memset(&mh, 0, sizeof mh);
    mh.msg_name = &ss;
    mh.msg_namelen = sizeof ss;
    mh.msg_iov = &iov;
    mh.msg_iovlen = 1;
    ssize_t r;
    do
        r = recvmsg(fd, &mh, 0);
    while (r < 0 && errno == EINTR);
    if (r < 0)
        return errno == EWOULDBLOCK ? -EAGAIN : -errno;
    if (truncated)
        *truncated = (mh.msg_flags & MSG_TRUNC) != 0;
    if (from) {
        memset(from, 0, sizeof *from);
        if (mh.msg_namelen > 0 && mh.msg_namelen <= sizeof ss) {
            memcpy(&from->ss, &ss, mh.msg_namelen);
            from->len = mh.msg_namelen;
        }
    }
    return r;
}
