/* internal.h: what the loop and its backends share, and nothing else.
 * The backend contract: a backend is five functions behind struct dx__backend. */
#ifndef DUPLEX_INTERNAL_H
#define DUPLEX_INTERNAL_H

#include "duplex.h"

/* A multiplexer. init() may decline with a negative code (the loop then
 * tries the next one); mod() is told the old and new interest of one fd
 * (0 means not watched); wait() blocks up to timeout_ms (-1: forever) and
 * records each ready fd with dx__loop_fired(); the loop dispatches them once
 * wait() has returned, so callbacks may change any watcher safely. */
struct dx__backend {
    const char *name;
    int (*init)(dx_loop *loop);
    void (*fini)(dx_loop *loop);
    int (*mod)(dx_loop *loop, int fd, int old_events, int new_events);
    int (*wait)(dx_loop *loop, int timeout_ms);
};

extern const struct dx__backend dx__backend_poll;
#ifdef __linux__
extern const struct dx__backend dx__backend_epoll;
#define DX_HAVE_EPOLL 1
#endif
#ifdef DX_HAVE_URING /* set by the Makefile when liburing is installed */
extern const struct dx__backend dx__backend_uring;
#endif

struct dx_loop {
    const struct dx__backend *backend;
    void *backend_data;     /* owned by the backend */
    dx_io **ios;            /* indexed by fd; NULL where nothing is watched */
    int nios;               /* length of ios */
    int nactive;            /* started watchers */
    int nalways;            /* started watchers on always-ready fds */
    dx_timer **heap;        /* min-heap on `when` */
    size_t nheap, capheap;
    struct dx__fired { int fd, events; } *fired; /* filled by wait() */
    int nfired, capfired;
    uint64_t now;
    uint64_t timer_pass;    /* run_timers() rounds, see there */
    int stop;
};

/* Called by a backend's wait() for each ready fd; events are DX_* bits.
 * Returns 0 or -ENOMEM. */
int dx__loop_fired(dx_loop *loop, int fd, int events);

#endif
