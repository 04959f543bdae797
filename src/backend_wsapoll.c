/* backend_wsapoll.c: the Windows multiplexer, WSAPoll over a dense pollfd
 * array (pollset.c, as backend_poll.c: removal swaps the last slot into the
 * hole, an fd -> slot map finds an fd's slot; each slot's tag byte says
 * "connecting").
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
    struct dx__pollset ps; /* its tag: connecting (see above) */
    int nconnecting;
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
    dx__pollset_free(&st->ps);
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
    if (st->ps.tag[i] == on)
        return;
    st->ps.tag[i] = (unsigned char)on;
    st->nconnecting += on ? 1 : -1;
}

static int wp_mod(dx_loop *loop, int fd, int old_events, int new_events)
{
    struct wsapoll_state *st = loop->backend_data;
    int i = dx__pollset_find(&st->ps, fd);
    if (new_events == 0) {
        if (i >= 0) {
            set_connecting(st, i, 0);
            dx__pollset_remove(&st->ps, i);
        }
        return 0;
    }
    if (i < 0) {
        if (!dx__os_is_socket(fd))
            return -ENOTSOCK; /* WSAPoll would fail the whole set for it */
        if ((i = dx__pollset_add(&st->ps, fd)) < 0)
            return i;
    }
    /* armed for writing now: a connect in progress? (one getpeername) */
    if ((new_events & DX_WRITE) && !(old_events & DX_WRITE))
        set_connecting(st, i, not_connected(fd));
    else if (!(new_events & DX_WRITE))
        set_connecting(st, i, 0);
    st->ps.pfds[i].events = to_poll(new_events);
    st->ps.pfds[i].revents = 0;
    return 0;
}

/* The connecting sockets WSAPoll said nothing about: select()'s exceptfds
 * names those whose connect failed. Returns 0 or a negative code. */
static int check_connects(dx_loop *loop, struct wsapoll_state *st)
{
    struct dx__pollset *ps = &st->ps;
    fd_set ex;
    int idx[FD_SETSIZE];
    int i = 0;
    while (i < ps->n) {
        FD_ZERO(&ex);
        int k = 0;
        for (; i < ps->n && k < FD_SETSIZE; i++) {
            if (ps->tag[i] && !ps->pfds[i].revents) {
                FD_SET(ps->pfds[i].fd, &ex);
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
            if (!FD_ISSET(ps->pfds[s].fd, &ex))
                continue;
            set_connecting(st, s, 0);
            int rc = dx__loop_fired(loop, (int)ps->pfds[s].fd, DX_ERROR);
            if (rc < 0)
                return rc;
        }
    }
    return 0;
}

static int wp_wait(dx_loop *loop, int timeout_ms)
{
    struct wsapoll_state *st = loop->backend_data;
    struct dx__pollset *ps = &st->ps;
    if (st->nconnecting > 0 && (timeout_ms < 0 || timeout_ms > CONNECT_CHECK_MS))
        timeout_ms = CONNECT_CHECK_MS;
    int n = dx__os_poll(ps->pfds, (unsigned long)ps->n, timeout_ms);
    if (n < 0 && errno == ENOTSOCK) {
        /* wine fails the whole call when no entry is a socket any more
         * (closed while watched): POLLNVAL for those, as poll(2) says */
        for (int i = 0; i < ps->n; i++)
            ps->pfds[i].revents = dx__os_is_socket((int)ps->pfds[i].fd) ? 0 : POLLNVAL;
        n = 0;
    }
    if (n < 0)
        return -errno;
    /* every entry is looked at: wine's count leaves POLLNVAL entries out */
    for (int i = 0; i < ps->n; i++) {
        short re = ps->pfds[i].revents;
        if (!re)
            continue;
        if (ps->tag[i]) {
            if (dx__wsapoll_old_windows && !(re & POLLWRNORM)) {
                ps->pfds[i].revents = 0; /* tests: as old Windows, say nothing */
                continue;
            }
            set_connecting(st, i, 0); /* connected, or its failure is told now */
        }
        int ev = ((re & POLLRDNORM) ? DX_READ : 0) | ((re & POLLWRNORM) ? DX_WRITE : 0) |
                 ((re & (POLLRDBAND | POLLPRI)) ? DX_PRI : 0) |
                 ((re & (POLLERR | POLLHUP | POLLNVAL)) ? DX_ERROR : 0);
        int rc = dx__loop_fired(loop, (int)ps->pfds[i].fd, ev);
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
