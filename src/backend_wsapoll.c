/* backend_wsapoll.c: the Windows multiplexer, WSAPoll over a dense pollfd
 * array (the shape of backend_poll.c: removal swaps the last slot into the
 * hole, an fd -> slot map finds an fd's slot).
 *
 * WSAPoll's quirks, and what is done about them:
 * - Any `events` bit but POLLRDNORM, POLLRDBAND and POLLWRNORM fails the
 *   whole call with WSAEINVAL on Microsoft's provider: POLLPRI, and also
 *   POLLERR/POLLHUP, which poll(2) ignores in `events` (wine accepts both, so
 *   the unit tests cannot show it). Only those three are asked for: DX_PRI
 *   is POLLRDBAND (urgent data, which POLLIN also contains), and the two
 *   are reported apart (DX_PRI for POLLRDBAND, DX_READ for POLLRDNORM).
 * - No sockets at all: WSAPoll fails (WSAEINVAL) instead of sleeping;
 *   dx__os_poll() sleeps instead.
 * - A failed non-blocking connect is reported as POLLERR|POLLHUP (Windows
 *   10 2004 and later; wine: POLLERR). Older Windows (10 1809 LTSC, Server
 *   2019, 8.1) report nothing at all: such a connect would wait forever.
 *   So a stream socket armed for DX_WRITE while not yet connected is marked
 *   "connecting"; while one is, WSAPoll waits at most CONNECT_CHECK_MS, and
 *   the connecting sockets it reported nothing for are asked with select()'s
 *   exceptfds, which has reported failed connects on every version. A
 *   failure found either way is DX_ERROR, which wakes the watcher's
 *   DX_WRITE, and the connector reads SO_ERROR (select leaves it in place).
 * - A socket closed while watched gives POLLNVAL: reported as DX_ERROR
 *   (wine leaves such entries out of WSAPoll's count: every entry is read;
 *   and when no entry is a socket any more, wine fails the call with
 *   WSAENOTSOCK: the closed ones are then found and said POLLNVAL).
 * - Only sockets can be watched: on Windows every descriptor the library
 *   handles is one (the command bridges consoles and pipes to sockets).
 *
 * The loop indexes watchers by fd (loop->ios[fd], here slot[fd]): SOCKET
 * values are handles, multiples of 4 that Windows (and wine) hands out from
 * the process's handle table, lowest free first, a closed value reused at
 * once; so they stay small (wine: 500 sockets were 52..2052, measured by
 * tests/windows/unit/test_loop.c) and the arrays grow with the number of
 * handles the process holds, 4 slots per handle, as on POSIX with fds: an
 * array of a few KiB per thousand handles, no map needed.
 */
#include "internal.h"
#include "os.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

/* How often connecting sockets are asked with select() (see above). */
#define CONNECT_CHECK_MS 100

/* Tests only: drop what WSAPoll says about connecting sockets, as Windows
 * before 10 2004 does, so that the select() fallback is what finds a failed
 * connect (tests/windows/unit/test_loop.c). */
int dx__wsapoll_old_windows;

struct wsapoll_state {
    struct pollfd *pfds;
    unsigned char *connecting; /* per slot, beside pfds: see above */
    int npfds, cap;
    int nconnecting;
    int *slot; /* fd -> index in pfds, or -1 */
    int nslot;
};

static int wp_init(dx_loop *loop)
{
    int rc = dx__os_init();
    if (rc < 0)
        return rc;
    struct wsapoll_state *st = calloc(1, sizeof *st);
    if (!st)
        return -ENOMEM;
    loop->backend_data = st;
    return 0;
}

static void wp_fini(dx_loop *loop)
{
    struct wsapoll_state *st = loop->backend_data;
    free(st->pfds);
    free(st->connecting);
    free(st->slot);
    free(st);
}

static short to_poll(int events)
{
    return (short)(((events & DX_READ) ? POLLRDNORM : 0) | ((events & DX_WRITE) ? POLLWRNORM : 0) |
                   ((events & DX_PRI) ? POLLRDBAND : 0));
}

/* A stream socket not (yet) connected: getpeername says WSAENOTCONN. */
static int not_connected(int fd)
{
    struct sockaddr_storage ss;
    int len = sizeof ss, type = 0, tlen = sizeof type;
    if (getpeername((SOCKET)(intptr_t)fd, (struct sockaddr *)&ss, &len) == 0 ||
        WSAGetLastError() != WSAENOTCONN)
        return 0;
    return getsockopt((SOCKET)(intptr_t)fd, SOL_SOCKET, SO_TYPE, (char *)&type, &tlen) == 0 &&
           type == SOCK_STREAM;
}

static void set_connecting(struct wsapoll_state *st, int i, int on)
{
    if (st->connecting[i] == on)
        return;
    st->connecting[i] = (unsigned char)on;
    st->nconnecting += on ? 1 : -1;
}

static int wp_mod(dx_loop *loop, int fd, int old_events, int new_events)
{
    struct wsapoll_state *st = loop->backend_data;
    if (fd >= st->nslot) {
        int n = st->nslot ? st->nslot : 256;
        while (n <= fd)
            n *= 2;
        int *slot = realloc(st->slot, (size_t)n * sizeof *slot);
        if (!slot)
            return -ENOMEM;
        for (int i = st->nslot; i < n; i++)
            slot[i] = -1;
        st->slot = slot;
        st->nslot = n;
    }
    int i = st->slot[fd];
    if (new_events == 0) {
        if (i < 0)
            return 0;
        set_connecting(st, i, 0);
        st->npfds--;
        st->pfds[i] = st->pfds[st->npfds];
        st->connecting[i] = st->connecting[st->npfds];
        st->connecting[st->npfds] = 0;
        if (i < st->npfds)
            st->slot[(int)st->pfds[i].fd] = i;
        st->slot[fd] = -1;
        return 0;
    }
    if (i < 0) {
        if (!dx__os_is_socket(fd))
            return -ENOTSOCK; /* WSAPoll would fail the whole set for it */
        if (st->npfds == st->cap) {
            int cap = st->cap ? st->cap * 2 : 64;
            struct pollfd *p = realloc(st->pfds, (size_t)cap * sizeof *p);
            if (!p)
                return -ENOMEM;
            st->pfds = p;
            unsigned char *c = realloc(st->connecting, (size_t)cap);
            if (!c)
                return -ENOMEM;
            memset(c + st->cap, 0, (size_t)(cap - st->cap));
            st->connecting = c;
            st->cap = cap;
        }
        i = st->npfds++;
        st->pfds[i].fd = (SOCKET)(intptr_t)fd;
        st->connecting[i] = 0;
        st->slot[fd] = i;
    }
    /* armed for writing now: a connect in progress? (one getpeername) */
    if ((new_events & DX_WRITE) && !(old_events & DX_WRITE))
        set_connecting(st, i, not_connected(fd));
    else if (!(new_events & DX_WRITE))
        set_connecting(st, i, 0);
    st->pfds[i].events = to_poll(new_events);
    st->pfds[i].revents = 0;
    return 0;
}

/* The connecting sockets WSAPoll said nothing about: select()'s exceptfds
 * names those whose connect failed. Returns 0 or a negative code. */
static int check_connects(dx_loop *loop, struct wsapoll_state *st)
{
    fd_set ex;
    int idx[FD_SETSIZE];
    int i = 0;
    while (i < st->npfds) {
        FD_ZERO(&ex);
        int k = 0;
        for (; i < st->npfds && k < FD_SETSIZE; i++) {
            if (st->connecting[i] && !st->pfds[i].revents) {
                FD_SET(st->pfds[i].fd, &ex);
                idx[k++] = i;
            }
        }
        if (k == 0)
            break;
        struct timeval zero = {0, 0};
        if (select(0, NULL, NULL, &ex, &zero) <= 0)
            continue;
        for (int j = 0; j < k; j++) {
            int s = idx[j];
            if (!FD_ISSET(st->pfds[s].fd, &ex))
                continue;
            set_connecting(st, s, 0);
            int rc = dx__loop_fired(loop, (int)st->pfds[s].fd, DX_ERROR);
            if (rc < 0)
                return rc;
        }
    }
    return 0;
}

static int wp_wait(dx_loop *loop, int timeout_ms)
{
    struct wsapoll_state *st = loop->backend_data;
    if (st->nconnecting > 0 && (timeout_ms < 0 || timeout_ms > CONNECT_CHECK_MS))
        timeout_ms = CONNECT_CHECK_MS;
    int n = dx__os_poll(st->pfds, (unsigned long)st->npfds, timeout_ms);
    if (n < 0 && errno == ENOTSOCK) {
        /* wine fails the whole call when no entry is a socket any more
         * (closed while watched): POLLNVAL for those, as poll(2) says */
        for (int i = 0; i < st->npfds; i++)
            st->pfds[i].revents = dx__os_is_socket((int)st->pfds[i].fd) ? 0 : POLLNVAL;
        n = 0;
    }
    if (n < 0)
        return -errno;
    /* every entry is looked at: wine's count leaves POLLNVAL entries out */
    for (int i = 0; i < st->npfds; i++) {
        short re = st->pfds[i].revents;
        if (!re)
            continue;
        if (st->connecting[i]) {
            if (dx__wsapoll_old_windows && !(re & POLLWRNORM)) {
                st->pfds[i].revents = 0; /* tests: as old Windows, say nothing */
                continue;
            }
            set_connecting(st, i, 0); /* connected, or its failure is told now */
        }
        int ev = ((re & POLLRDNORM) ? DX_READ : 0) | ((re & POLLWRNORM) ? DX_WRITE : 0) |
                 ((re & (POLLRDBAND | POLLPRI)) ? DX_PRI : 0) |
                 ((re & (POLLERR | POLLHUP | POLLNVAL)) ? DX_ERROR : 0);
        int rc = dx__loop_fired(loop, (int)st->pfds[i].fd, ev);
        if (rc < 0)
            return rc;
    }
    return st->nconnecting > 0 ? check_connects(loop, st) : 0;
}

const struct dx__backend dx__backend_wsapoll = {
    .name = "wsapoll",
    .init = wp_init,
    .fini = wp_fini,
    .mod = wp_mod,
    .wait = wp_wait,
};
