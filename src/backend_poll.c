/* backend_poll.c: the portable multiplexer, poll(2) over a dense pollfd array.
 * Quirks: removal swaps the last slot into the hole, so an fd -> slot map is
 * kept; POLLNVAL (fd closed while watched) is reported as an error. */
#define _POSIX_C_SOURCE 200809L
#include "internal.h"

#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>

struct poll_state {
    struct pollfd *pfds;
    int npfds, cap;
    int *slot;  /* fd -> index in pfds, or -1 */
    int nslot;
};

static int poll_init(dx_loop *loop)
{
    struct poll_state *st = calloc(1, sizeof *st);
    if (!st)
        return -ENOMEM;
    loop->backend_data = st;
    return 0;
}

static void poll_fini(dx_loop *loop)
{
    struct poll_state *st = loop->backend_data;
    free(st->pfds);
    free(st->slot);
    free(st);
}

static short to_poll(int events)
{
    return (short)(((events & DX_READ) ? POLLIN : 0) | ((events & DX_WRITE) ? POLLOUT : 0) |
                   ((events & DX_PRI) ? POLLPRI : 0));
}

static int poll_mod(dx_loop *loop, int fd, int old_events, int new_events)
{
    struct poll_state *st = loop->backend_data;
    if (fd >= st->nslot) {
        int n = st->nslot ? st->nslot : 64;
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
            st->slot[st->pfds[i].fd] = i;
        st->slot[fd] = -1;
        return 0;
    }
    (void)old_events;
    if (i < 0) {
        if (st->npfds == st->cap) {
            int cap = st->cap ? st->cap * 2 : 64;
            struct pollfd *p = realloc(st->pfds, (size_t)cap * sizeof *p);
            if (!p)
                return -ENOMEM;
            st->pfds = p;
            st->cap = cap;
        }
        i = st->npfds++;
        st->pfds[i].fd = fd;
        st->slot[fd] = i;
    }
    st->pfds[i].events = to_poll(new_events);
    st->pfds[i].revents = 0;
    return 0;
}

static int poll_wait(dx_loop *loop, int timeout_ms)
{
    struct poll_state *st = loop->backend_data;
    int n = poll(st->pfds, (nfds_t)st->npfds, timeout_ms);
    if (n < 0)
        return -errno;
    for (int i = 0; i < st->npfds && n > 0; i++) {
        short re = st->pfds[i].revents;
        if (!re)
            continue;
        n--;
        int ev = ((re & POLLIN) ? DX_READ : 0) | ((re & POLLOUT) ? DX_WRITE : 0) |
                 ((re & POLLPRI) ? DX_PRI : 0) | ((re & (POLLERR | POLLHUP | POLLNVAL)) ? DX_ERROR : 0);
        int rc = dx__loop_fired(loop, st->pfds[i].fd, ev);
        if (rc < 0)
            return rc;
    }
    return 0;
}

const struct dx__backend dx__backend_poll = {
    .name = "poll",
    .init = poll_init,
    .fini = poll_fini,
    .mod = poll_mod,
    .wait = poll_wait,
};
