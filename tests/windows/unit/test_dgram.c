/* test_dgram.c: UDP sockets on Windows: datagrams both ways between two
 * bound sockets, truncation, and ICMP port unreachable (SIO_UDP_CONNRESET
 * is off: an unconnected socket goes on receiving). Also probes WSAPoll's
 * POLLPRI quirk. Runs under wine. */
#include "os.h"
#include "tap.h"

static short wait_for(int fd, short events, int ms)
{
    struct pollfd p = {(SOCKET)(intptr_t)fd, events, 0};
    int n = dx__os_poll(&p, 1, ms);
    return n > 0 ? p.revents : 0;
}

static int bound_udp(dx_addr *where)
{
    dx_addr a;
    dx_addr_ip(&a, "127.0.0.1", 0);
    int fd = dx_dgram_bind(&a, NULL);
    if (fd >= 0)
        dx_sock_local(fd, where);
    return fd;
}

static int closed_udp_port(void)
{
    dx_addr a;
    int fd = bound_udp(&a);
    if (fd < 0)
        return -1;
    dx_close(fd);
    return dx_addr_port(&a);
}

static void test_udp_both_ways(void)
{
    dx_addr aa, ba;
    int a = bound_udp(&aa), b = bound_udp(&ba);
    CHECK(a >= 0 && b >= 0);
    CHECK_INT(dx_dgram_send(a, "ping", 4, &ba), 4);
    CHECK(wait_for(b, POLLRDNORM, 5000) & POLLRDNORM);
    char buf[64];
    dx_addr from;
    int trunc = -1;
    CHECK_INT(dx_dgram_recv(b, buf, sizeof buf, &from, &trunc), 4);
    CHECK(memcmp(buf, "ping", 4) == 0);
    CHECK_INT(trunc, 0);
    CHECK_INT(dx_addr_port(&from), dx_addr_port(&aa));
    /* reply to the sender's address */
    CHECK_INT(dx_dgram_send(b, "pong", 4, &from), 4);
    CHECK(wait_for(a, POLLRDNORM, 5000) & POLLRDNORM);
    CHECK_INT(dx_dgram_recv(a, buf, sizeof buf, NULL, NULL), 4);
    CHECK(memcmp(buf, "pong", 4) == 0);
    /* nothing more: would block */
    CHECK_INT(dx_dgram_recv(a, buf, sizeof buf, NULL, NULL), -EAGAIN);
    /* an empty datagram is a datagram */
    CHECK_INT(dx_dgram_send(a, "", 0, &ba), 0);
    CHECK(wait_for(b, POLLRDNORM, 5000) & POLLRDNORM);
    CHECK_INT(dx_dgram_recv(b, buf, sizeof buf, NULL, NULL), 0);
    dx_close(a);
    dx_close(b);
}

static void test_udp_connected_pair(void)
{
    dx_addr ba;
    int b = bound_udp(&ba);
    CHECK(b >= 0);
    int c = dx_dgram_connect(&ba, NULL);
    CHECK(c >= 0);
    CHECK_INT(dx_dgram_send(c, "hello", 5, NULL), 5);
    CHECK(wait_for(b, POLLRDNORM, 5000) & POLLRDNORM);
    char buf[16];
    dx_addr from;
    CHECK_INT(dx_dgram_recv(b, buf, sizeof buf, &from, NULL), 5);
    CHECK_INT(dx_dgram_send(b, "back", 4, &from), 4);
    CHECK(wait_for(c, POLLRDNORM, 5000) & POLLRDNORM);
    CHECK_INT(dx_dgram_recv(c, buf, sizeof buf, NULL, NULL), 4);
    dx_close(b);
    dx_close(c);
}

static void test_udp_truncated(void)
{
    dx_addr aa, ba;
    int a = bound_udp(&aa), b = bound_udp(&ba);
    CHECK(a >= 0 && b >= 0);
    char big[100];
    memset(big, 'x', sizeof big);
    CHECK_INT(dx_dgram_send(a, big, sizeof big, &ba), 100);
    CHECK(wait_for(b, POLLRDNORM, 5000) & POLLRDNORM);
    char small[10];
    int trunc = 0;
    dx_addr from;
    CHECK_INT(dx_dgram_recv(b, small, sizeof small, &from, &trunc), 10);
    CHECK_INT(trunc, 1);
    CHECK_INT(dx_addr_port(&from), dx_addr_port(&aa));
    /* the rest of it is gone */
    CHECK_INT(dx_dgram_recv(b, small, sizeof small, NULL, NULL), -EAGAIN);
    dx_close(a);
    dx_close(b);
}

static void test_udp_port_unreachable_does_not_break_unconnected(void)
{
    int port = closed_udp_port();
    CHECK(port > 0);
    dx_addr aa, ba, dead;
    int a = bound_udp(&aa), b = bound_udp(&ba);
    CHECK(a >= 0 && b >= 0);
    dx_addr_ip(&dead, "127.0.0.1", port);
    /* to nobody: an ICMP port unreachable comes back to a */
    CHECK_INT(dx_dgram_send(a, "void", 4, &dead), 4);
    wait_for(a, POLLRDNORM, 200); /* give the ICMP time to arrive */
    CHECK_INT(dx_dgram_send(b, "real", 4, &aa), 4);
    CHECK(wait_for(a, POLLRDNORM, 5000) & POLLRDNORM);
    char buf[16];
    ssize_t n = dx_dgram_recv(a, buf, sizeof buf, NULL, NULL);
    if (n < 0) /* the error the SIO_UDP_CONNRESET setting is there to prevent */
        tap_note("recv after port unreachable: %s", dx_strerror((int)n));
    CHECK_INT(n, 4);
    CHECK(memcmp(buf, "real", 4) == 0);
    /* and sending again works */
    CHECK_INT(dx_dgram_send(a, "void", 4, &dead), 4);
    dx_close(a);
    dx_close(b);
}

static void test_udp_connected_port_unreachable(void)
{
    int port = closed_udp_port();
    CHECK(port > 0);
    dx_addr dead;
    dx_addr_ip(&dead, "127.0.0.1", port);
    int c = dx_dgram_connect(&dead, NULL);
    CHECK(c >= 0);
    CHECK_INT(dx_dgram_send(c, "void", 4, NULL), 4);
    short re = wait_for(c, POLLRDNORM, 500);
    char buf[16];
    ssize_t n = dx_dgram_recv(c, buf, sizeof buf, NULL, NULL);
    ssize_t n2 = dx_dgram_send(c, "void", 4, NULL);
    tap_note("connected UDP to a closed port: revents 0x%x, recv %s, send %s", (unsigned)re,
             n < 0 ? dx_strerror((int)n) : "data", n2 < 0 ? dx_strerror((int)n2) : "sent");
    /* never data; never a crash: -ECONNREFUSED as on Linux, or -EAGAIN
     * where the provider drops the ICMP report */
    CHECK(n == -ECONNREFUSED || n == -EAGAIN);
    dx_close(c);
}

static void test_wsapoll_pollpri_quirk(void)
{
    int fds[2];
    CHECK_INT(dx__socketpair(fds), 0);
    WSAPOLLFD p = {(SOCKET)(intptr_t)fds[0], POLLPRI | POLLRDNORM, 0};
    int r = WSAPoll(&p, 1, 0);
    int e = r < 0 ? WSAGetLastError() : 0;
    tap_note("raw WSAPoll with POLLPRI: %d (WSA error %d)", r, e);
    p.events = POLLRDNORM | POLLHUP;
    r = WSAPoll(&p, 1, 0);
    e = r < 0 ? WSAGetLastError() : 0;
    tap_note("raw WSAPoll with POLLHUP in events: %d (WSA error %d)", r, e);
    /* dx__os_poll asks for POLLRDBAND instead: never WSAEINVAL */
    struct pollfd q = {(SOCKET)(intptr_t)fds[0], POLLPRI | POLLRDNORM, 0};
    CHECK(dx__os_poll(&q, 1, 0) >= 0);
    CHECK_INT(q.events, POLLPRI | POLLRDNORM); /* the caller's events are restored */
    /* return-only bits in events (poll(2) ignores them; WSAPoll refuses) */
    struct pollfd h = {(SOCKET)(intptr_t)fds[0], POLLIN | POLLHUP | POLLERR, 0};
    CHECK(dx__os_poll(&h, 1, 0) >= 0);
    CHECK_INT(h.events, POLLIN | POLLHUP | POLLERR);
    /* no sockets: sleeps instead of failing */
    uint64_t t0 = dx__os_now_ms();
    CHECK_INT(dx__os_poll(NULL, 0, 30), 0);
    CHECK(dx__os_now_ms() - t0 >= 25);
    dx_close(fds[0]);
    dx_close(fds[1]);
}

TAP_MAIN(T(test_udp_both_ways), T(test_udp_connected_pair), T(test_udp_truncated),
         T(test_udp_port_unreachable_does_not_break_unconnected),
         T(test_udp_connected_port_unreachable), T(test_wsapoll_pollpri_quirk))
