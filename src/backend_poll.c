/* backend_poll.c: the portable multiplexer, poll(2) over a dense pollfd array
 * (pollset.c). Quirk: POLLNVAL (fd closed while watched) is reported as an
 * error. */
#define _POSIX_C_SOURCE 200809L
#include "internal.h"

#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>

static int poll_init(dx_loop *loop)
{
    struct dx__pollset *st = calloc(1, sizeof *st);
    if (!st)
        return -ENOMEM;
    loop->backend_data = st;
    return 0;
}

static void poll_fini(dx_loop *loop)
{
    struct dx__pollset *st = loop->backend_data;
    dx__pollset_free(st);
    free(st);
}

static short to_poll(int events)
{
    return (short)(((events & DX_READ) ? POLLIN : 0) | ((events & DX_WRITE) ? POLLOUT : 0) |
                   ((events & DX_PRI) ? POLLPRI : 0));
}

static int poll_mod(dx_loop *loop, int fd, int old_events, int new_events)
{
    struct dx__pollset *st = loop->backend_data;
    int i = dx__pollset_find(st, fd);
    if (new_events == 0) {
        if (i >= 0)
            dx__pollset_remove(st, i);
        return 0;
    }
    (void)old_events;
    if (i < 0 && (i = dx__pollset_add(st, fd)) < 0)
        return i;
    st->pfds[i].events = to_poll(new_events);
    st->pfds[i].revents = 0;
    return 0;
}

static int poll_wait(dx_loop *loop, int timeout_ms)
{
    struct dx__pollset *st = loop->backend_data;
    int n = poll(st->pfds, (nfds_t)st->n, timeout_ms);
    if (n < 0)
        return -errno;
    for (int i = 0; i < st->n && n > 0; i++) {
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
