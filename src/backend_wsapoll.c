/* backend_wsapoll.c: the Windows multiplexer, WSAPoll over a dense pollfd
 * array (the shape of backend_poll.c: removal swaps the last slot into the
 * hole, an fd -> slot map finds an fd's slot).
 *
 * WSAPoll's quirks, and what is done about them:
 * - Any `events` bit but POLLRDNORM, POLLRDBAND and POLLWRNORM fails the
 *   whole call with WSAEINVAL on Microsoft's provider: POLLPRI, and also
 *   POLLERR/POLLHUP, which poll(2) ignores there (wine accepts both, so
 *   the unit tests cannot show it). Only those three are asked for: DX_PRI
 *   is POLLRDBAND (urgent data, which POLLIN also contains), and the two
 *   are reported apart (DX_PRI for POLLRDBAND, DX_READ for POLLRDNORM).
 * - No sockets at all: WSAPoll fails (WSAEINVAL) instead of sleeping;
 *   dx__os_poll() sleeps instead.
 * - A failed non-blocking connect is reported as POLLERR|POLLHUP (Windows
 *   10 2004 and later, and wine); older Windows reported nothing, so a
 *   connect attempt there ends only at its deadline (dx_connect_async's
 *   timeout). POLLHUP|POLLERR become DX_ERROR, which wakes the watcher's
 *   DX_WRITE and the connector reads SO_ERROR.
 * - A socket closed while watched gives POLLNVAL: reported as DX_ERROR.
 * - Only sockets can be watched: on Windows every descriptor the library
 *   handles is one (the command bridges consoles and pipes to sockets).
 *
 * The loop indexes watchers by fd (loop->ios[fd], here slot[fd]): SOCKET
 * values are handles, multiples of 4 that Windows (and wine) hands out from
 * the process's handle table, lowest free first; so they stay small (a few
 * hundred to a few thousand for a few hundred sockets, measured in
 * tests/windows/unit/test_loop.c) and the arrays grow with the number of
 * handles the process holds, as on POSIX with fds: a map is not needed.
 */
#include "internal.h"
#include "os.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

struct wsapoll_state {
    struct pollfd *pfds;
    int npfds, cap;
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
    free(st->slot);
    free(st);
}

static short to_poll(int events)
{
    return (short)(((events & DX_READ) ? POLLRDNORM : 0) | ((events & DX_WRITE) ? POLLWRNORM : 0) |
                   ((events & DX_PRI) ? POLLRDBAND : 0));
}

static int wp_mod(dx_loop *loop, int fd, int old_events, int new_events)
{
    struct wsapoll_state *st = loop->backend_data;
    (void)old_events;
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
        st->pfds[i] = st->pfds[--st->npfds];
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
            st->cap = cap;
        }
        i = st->npfds++;
        st->pfds[i].fd = (SOCKET)(intptr_t)fd;
        st->slot[fd] = i;
    }
    st->pfds[i].events = to_poll(new_events);
    st->pfds[i].revents = 0;
    return 0;
}

static int wp_wait(dx_loop *loop, int timeout_ms)
{
    struct wsapoll_state *st = loop->backend_data;
    int n = dx__os_poll(st->pfds, (unsigned long)st->npfds, timeout_ms);
    if (n < 0)
        return -errno;
    for (int i = 0; i < st->npfds && n > 0; i++) {
        short re = st->pfds[i].revents;
        if (!re)
            continue;
        n--;
        int ev = ((re & POLLRDNORM) ? DX_READ : 0) | ((re & POLLWRNORM) ? DX_WRITE : 0) |
                 ((re & (POLLRDBAND | POLLPRI)) ? DX_PRI : 0) |
                 ((re & (POLLERR | POLLHUP | POLLNVAL)) ? DX_ERROR : 0);
        int rc = dx__loop_fired(loop, (int)st->pfds[i].fd, ev);
        if (rc < 0)
            return rc;
    }
    return 0;
}

const struct dx__backend dx__backend_wsapoll = {
    .name = "wsapoll",
    .init = wp_init,
    .fini = wp_fini,
    .mod = wp_mod,
    .wait = wp_wait,
};
