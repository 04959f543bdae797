/* dgram.c: datagram (UDP) sockets: bound for any peer, or connected to one,
 * and EINTR-safe send/receive of whole datagrams with -errno results.
 * Quirk: a connected UDP socket learns of an ICMP port unreachable
 * asynchronously; the error is reported (once) by the next send or receive
 * as ECONNREFUSED. */
#define _GNU_SOURCE
#include "internal.h"
#include "os.h"

#include <errno.h>
#include <string.h>

/* Windows: SIO_UDP_CONNRESET is turned off there (see os.h) */
static int dgram_socket(int family) { return dx__sock_open(family, SOCK_DGRAM); }

static int fail(int fd)
{
    int e = errno;
    dx__sock_close(fd);
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
        if (dx__sock_setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, (const void *)&v6only, sizeof v6only) < 0)
            return fail(fd);
    }
#ifdef SO_REUSEPORT
    if (opts && opts->reuseport && setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &on, sizeof on) < 0)
        return fail(fd);
#else
    if (opts && opts->reuseport) {
        dx__sock_close(fd);
        return -ENOPROTOOPT;
    }
#endif
    (void)on;
    if (dx__sock_bind(fd, (const struct sockaddr *)&addr->ss, addr->len) < 0)
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
    if (source && dx__sock_bind(fd, (const struct sockaddr *)&source->ss, source->len) < 0)
        return fail(fd);
    /* Windows: the refusal is reported on a connected socket, as on Linux */
    if (dx__sock_udp_icmp_errors(fd, 1) < 0)
        return fail(fd);
    int rc;
    do
        rc = dx__sock_connect(fd, (const struct sockaddr *)&peer->ss, peer->len);
    while (rc < 0 && errno == EINTR);
    if (rc < 0)
        return fail(fd);
    return fd;
}

ssize_t dx_dgram_send(int fd, const void *data, size_t n, const dx_addr *to)
{
    ssize_t r;
    do
        r = dx__sock_sendto(fd, data, n, MSG_NOSIGNAL, to ? (const struct sockaddr *)&to->ss : NULL,
                   to ? to->len : 0);
    while (r < 0 && errno == EINTR);
    if (r < 0 && DX_OS_WINDOWS && errno == ECONNRESET)
        return -ECONNREFUSED; /* Winsock's word for an ICMP port unreachable */
    if (r < 0)
        return errno == EWOULDBLOCK ? -EAGAIN : -errno;
    return r;
}

ssize_t dx_dgram_recv(int fd, void *buf, size_t cap, dx_addr *from, int *truncated)
{
    struct sockaddr_storage ss;
    dx__socklen sslen;
    int trunc = 0;
    ssize_t r;
    do {
        sslen = sizeof ss;
        r = dx__sock_recvfrom_trunc(fd, buf, cap, (struct sockaddr *)&ss, &sslen, &trunc);
    } while (r < 0 && errno == EINTR);
    if (r < 0)
        return errno == EWOULDBLOCK ? -EAGAIN : -errno;
    if (truncated)
        *truncated = trunc;
    if (from) {
        memset(from, 0, sizeof *from);
        if (sslen > 0 && (size_t)sslen <= sizeof ss) {
            memcpy(&from->ss, &ss, (size_t)sslen);
            from->len = (socklen_t)sslen;
        }
    }
    return r;
}
