/* backend_epoll.c: Linux epoll(7), level-triggered.
 * Quirks: epoll_ctl(ADD) on a regular file or /dev/null fails with EPERM
 * (the loop then treats the fd as always ready); a closed fd leaves the set
 * by itself, so DEL may fail with EBADF/ENOENT and that is not an error. */
#define _GNU_SOURCE
#include "internal.h"

#ifdef DX_HAVE_EPOLL
#include <errno.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <unistd.h>

#define MAX_EVENTS 1024 /* as libuv: fewer epoll_wait calls with many busy fds */

struct epoll_state {
    int epfd;
    struct epoll_event events[MAX_EVENTS];
};

static int ep_init(dx_loop *loop)
{
    struct epoll_state *st = malloc(sizeof *st);
    if (!st)
        return -ENOMEM;
    st->epfd = epoll_create1(EPOLL_CLOEXEC);
    if (st->epfd < 0) {
        int e = errno;
        free(st);
        return -e;
    }
    loop->backend_data = st;
    return 0;
}

static void ep_fini(dx_loop *loop)
{
    struct epoll_state *st = loop->backend_data;
    close(st->epfd);
    free(st);
}

static int ep_mod(dx_loop *loop, int fd, int old_events, int new_events)
{
    struct epoll_state *st = loop->backend_data;
    struct epoll_event ev = {0};
    ev.data.fd = fd;
    ev.events = ((new_events & DX_READ) ? EPOLLIN : 0) | ((new_events & DX_WRITE) ? EPOLLOUT : 0) |
                ((new_events & DX_PRI) ? EPOLLPRI : 0);
    int op = new_events == 0 ? EPOLL_CTL_DEL : old_events == 0 ? EPOLL_CTL_ADD : EPOLL_CTL_MOD;
    if (epoll_ctl(st->epfd, op, fd, &ev) == 0)
        return 0;
    if (op == EPOLL_CTL_DEL && (errno == EBADF || errno == ENOENT))
        return 0;
    return -errno;
}

static int ep_wait(dx_loop *loop, int timeout_ms)
{
    struct epoll_state *st = loop->backend_data;
    int n = epoll_wait(st->epfd, st->events, MAX_EVENTS, timeout_ms);
    if (n < 0)
        return -errno;
    for (int i = 0; i < n; i++) {
        uint32_t re = st->events[i].events;
        int ev = ((re & EPOLLIN) ? DX_READ : 0) | ((re & EPOLLOUT) ? DX_WRITE : 0) |
                 ((re & EPOLLPRI) ? DX_PRI : 0) | ((re & (EPOLLERR | EPOLLHUP)) ? DX_ERROR : 0);
        int rc = dx__loop_fired(loop, st->events[i].data.fd, ev);
        if (rc < 0)
            return rc;
    }
    return 0;
}

const struct dx__backend dx__backend_epoll = {
    .name = "epoll",
    .init = ep_init,
    .fini = ep_fini,
    .mod = ep_mod,
    .wait = ep_wait,
};
#endif
