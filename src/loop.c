/* loop.c: the event loop: fd watchers, a timer heap, backend choice.
 * Ready events are collected by the backend and dispatched here, re-checked
 * against the current watcher of the fd (an earlier callback may have
 * stopped or replaced it). */
#define _POSIX_C_SOURCE 200809L
#include "internal.h"
#include "os.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* Preference order for the default choice. io_uring is compiled in when
 * liburing is present but is not the default: as a readiness multiplexer it
 * costs a submission per event, where epoll costs none (bench/ measures). */
static const struct dx__backend *const backends[] = {
#ifdef DX_HAVE_EPOLL
    &dx__backend_epoll,
#endif
#ifdef _WIN32
    &dx__backend_wsapoll,
#else
    &dx__backend_poll,
#endif
#ifdef DX_HAVE_URING
    &dx__backend_uring,
#endif
    NULL,
};

const char *const *dx_backends(void)
{
    static const char *names[sizeof backends / sizeof backends[0]];
    for (size_t i = 0; backends[i]; i++)
        names[i] = backends[i]->name;
    return names;
}

static uint64_t monotonic_ms(void) { return dx__os_now_ms(); }

dx_loop *dx_loop_new(const char *backend, int *err)
{
    int rc = dx__os_init(); /* Windows: WSAStartup, once per process */
    if (rc < 0) {
        if (err)
            *err = rc;
        return NULL;
    }
    rc = -ENOENT;
    if (!backend || !*backend)
        backend = getenv("DUPLEX_BACKEND");
    if (backend && !*backend)
        backend = NULL;
    dx_loop *loop = calloc(1, sizeof *loop);
    if (!loop) {
        if (err)
            *err = -ENOMEM;
        return NULL;
    }
    loop->now = monotonic_ms();
    loop->firing = -1;
    for (size_t i = 0; backends[i]; i++) {
        if (backend && strcmp(backend, backends[i]->name) != 0)
            continue;
        rc = backends[i]->init(loop);
        if (rc >= 0) {
            loop->backend = backends[i];
            return loop;
        }
        /* a named backend must work; otherwise try the next one */
        if (backend)
            break;
    }
    free(loop);
    if (err)
        *err = rc;
    return NULL;
}

void dx_loop_free(dx_loop *loop)
{
    if (!loop)
        return;
    loop->backend->fini(loop);
    for (size_t i = 0; i < loop->nheap; i++)
        loop->heap[i]->heap_index = SIZE_MAX;
    for (int fd = 0; fd < loop->nios; fd++)
        if (loop->ios[fd])
            loop->ios[fd]->active = 0;
    while (loop->later_head)
        dx__later_cancel(loop, loop->later_head);
    free(loop->ios);
    free(loop->heap);
    free(loop->fired);
    free(loop);
}

const char *dx_loop_backend(const dx_loop *loop) { return loop->backend->name; }
uint64_t dx_loop_now(const dx_loop *loop) { return loop->now; }
void dx_loop_update_time(dx_loop *loop) { loop->now = monotonic_ms(); }
void dx_loop_stop(dx_loop *loop) { loop->stop = 1; }

/* ---- fd watchers ---- */

void dx_io_init(dx_io *io, int fd, dx_io_cb cb, void *data)
{
    memset(io, 0, sizeof *io);
    io->fd = fd;
    io->cb = cb;
    io->data = data;
}

static int grow_ios(dx_loop *loop, int fd)
{
    if (fd < loop->nios)
        return 0;
    int n = loop->nios ? loop->nios : 64;
    while (n <= fd)
        n *= 2;
    dx_io **ios = realloc(loop->ios, (size_t)n * sizeof *ios);
    if (!ios)
        return -ENOMEM;
    memset(ios + loop->nios, 0, (size_t)(n - loop->nios) * sizeof *ios);
    loop->ios = ios;
    loop->nios = n;
    return 0;
}

int dx_io_set(dx_loop *loop, dx_io *io, int events)
{
    int fd = io->fd;
    events &= DX_READ | DX_WRITE | DX_PRI;
    if (fd < 0)
        return -EBADF;
    if (!io->active && events == 0)
        return 0;
    int rc = grow_ios(loop, fd);
    if (rc < 0)
        return rc;
    if (loop->ios[fd] && loop->ios[fd] != io)
        return -EEXIST;
    if (events == io->events && io->active)
        return 0;

    if (!io->always_ready) {
        rc = loop->backend->mod(loop, fd, io->active ? io->events : 0, events);
        /* epoll refuses regular files and some devices (EPERM): reads and
         * writes on them never block, so they are simply always ready. */
        if (rc == -EPERM && !io->active) {
            io->always_ready = 1;
            rc = 0;
        }
        if (rc < 0)
            return rc;
    }
    if (events == 0) {
        /* events of this round not yet dispatched were for this watcher:
         * forget them, or a watcher started on the same fd number later in
         * the round (the fd closed and reused: accept, connect) would get
         * them. A callback may stop another object's watcher. */
        for (int i = loop->firing + 1; loop->firing >= 0 && i < loop->nfired; i++)
            if (loop->fired[i].fd == fd)
                loop->fired[i].fd = -1;
        loop->ios[fd] = NULL;
        loop->nactive--;
        if (io->always_ready) {
            loop->nalways--;
            io->always_ready = 0;
        }
        io->active = 0;
        io->events = 0;
        return 0;
    }
    if (!io->active) {
        loop->ios[fd] = io;
        loop->nactive++;
        if (io->always_ready)
            loop->nalways++;
        io->active = 1;
    }
    io->events = events;
    return 0;
}

void dx_io_stop(dx_loop *loop, dx_io *io)
{
    if (io->active)
        dx_io_set(loop, io, 0);
}

int dx__loop_fired(dx_loop *loop, int fd, int events)
{
    if (loop->nfired == loop->capfired) {
        int cap = loop->capfired ? loop->capfired * 2 : 64;
        struct dx__fired *f = realloc(loop->fired, (size_t)cap * sizeof *f);
        if (!f)
            return -ENOMEM;
        loop->fired = f;
        loop->capfired = cap;
    }
    loop->fired[loop->nfired].fd = fd;
    loop->fired[loop->nfired].events = events;
    loop->nfired++;
    return 0;
}

static void dispatch(dx_loop *loop, int fd, int events)
{
    if (fd < 0 || fd >= loop->nios)
        return;
    dx_io *io = loop->ios[fd];
    if (!io)
        return;
    /* errors and hang-ups wake whatever the watcher waits for, except
     * DX_PRI, which only means priority data */
    if (events & DX_ERROR)
        events |= io->events & (DX_READ | DX_WRITE);
    events &= io->events | DX_ERROR;
    if (events)
        io->cb(loop, io, events);
}

/* ---- timers: a binary min-heap ---- */

void dx_timer_init(dx_timer *t, dx_timer_cb cb, void *data)
{
    memset(t, 0, sizeof *t);
    t->heap_index = SIZE_MAX;
    t->cb = cb;
    t->data = data;
}

int dx_timer_active(const dx_timer *t) { return t->heap_index != SIZE_MAX; }

static void heap_set(dx_loop *loop, size_t i, dx_timer *t)
{
    loop->heap[i] = t;
    t->heap_index = i;
}

static void heap_up(dx_loop *loop, size_t i)
{
    dx_timer *t = loop->heap[i];
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (loop->heap[parent]->when <= t->when)
            break;
        heap_set(loop, i, loop->heap[parent]);
        i = parent;
    }
    heap_set(loop, i, t);
}

static void heap_down(dx_loop *loop, size_t i)
{
    dx_timer *t = loop->heap[i];
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= loop->nheap)
            break;
        if (c + 1 < loop->nheap && loop->heap[c + 1]->when < loop->heap[c]->when)
            c++;
        if (t->when <= loop->heap[c]->when)
            break;
        heap_set(loop, i, loop->heap[c]);
        i = c;
    }
    heap_set(loop, i, t);
}

void dx_timer_stop(dx_loop *loop, dx_timer *t)
{
    size_t i = t->heap_index;
    if (i == SIZE_MAX)
        return;
    t->heap_index = SIZE_MAX;
    dx_timer *last = loop->heap[--loop->nheap];
    if (i == loop->nheap)
        return;
    heap_set(loop, i, last);
    heap_up(loop, i);
    heap_down(loop, last->heap_index);
}

int dx_timer_start(dx_loop *loop, dx_timer *t, uint64_t after_ms, uint64_t repeat_ms)
{
    dx_timer_stop(loop, t);
    if (loop->nheap == loop->capheap) {
        size_t cap = loop->capheap ? loop->capheap * 2 : 16;
        dx_timer **h = realloc(loop->heap, cap * sizeof *h);
        if (!h)
            return -ENOMEM;
        loop->heap = h;
        loop->capheap = cap;
    }
    /* saturate: a huge after_ms means "never", not a wrap to the past */
    t->when = after_ms > UINT64_MAX - loop->now ? UINT64_MAX : loop->now + after_ms;
    t->repeat = repeat_ms;
    t->pass = loop->timer_pass;
    heap_set(loop, loop->nheap++, t);
    heap_up(loop, t->heap_index);
    return 0;
}

/* Timers (re)started during this pass wait for the next one, so that a
 * timer restarting itself at 0 ms cannot starve the fd watchers. */
static void run_timers(dx_loop *loop)
{
    uint64_t pass = ++loop->timer_pass;
    while (loop->nheap > 0 && loop->heap[0]->when <= loop->now && !loop->stop) {
        dx_timer *t = loop->heap[0];
        if (t->pass == pass)
            break;
        dx_timer_stop(loop, t);
        if (t->repeat)
            dx_timer_start(loop, t, t->repeat, t->repeat);
        t->cb(loop, t);
    }
}

/* ---- deferred callbacks: an intrusive queue, nothing allocated ---- */

void dx__later_init(dx__later *l, void (*cb)(dx_loop *loop, dx__later *l), void *data)
{
    memset(l, 0, sizeof *l);
    l->cb = cb;
    l->data = data;
}

void dx__later_queue(dx_loop *loop, dx__later *l)
{
    if (l->queued)
        return;
    l->queued = 1;
    l->pass = loop->later_pass;
    l->next = NULL;
    l->prev = loop->later_tail;
    if (loop->later_tail)
        loop->later_tail->next = l;
    else
        loop->later_head = l;
    loop->later_tail = l;
}

void dx__later_cancel(dx_loop *loop, dx__later *l)
{
    if (!l->queued)
        return;
    if (l->prev)
        l->prev->next = l->next;
    else
        loop->later_head = l->next;
    if (l->next)
        l->next->prev = l->prev;
    else
        loop->later_tail = l->prev;
    l->next = l->prev = NULL;
    l->queued = 0;
}

/* Callbacks queued during this pass wait for the next iteration (as timers
 * do), so a callback that queues another cannot starve the fd watchers. A
 * callback may cancel any other (an object it frees). */
static void run_later(dx_loop *loop)
{
    uint64_t pass = ++loop->later_pass;
    while (loop->later_head && !loop->stop) {
        dx__later *l = loop->later_head;
        if (l->pass == pass)
            break;
        dx__later_cancel(loop, l);
        l->cb(loop, l); /* may free l's owner: touch nothing after */
    }
}

/* ---- running ---- */

static int next_timeout(const dx_loop *loop)
{
    if (loop->nalways > 0 || loop->later_head)
        return 0;
    if (loop->nheap == 0)
        return -1;
    uint64_t when = loop->heap[0]->when;
    if (when <= loop->now)
        return 0;
    uint64_t d = when - loop->now;
    return d > 1000000000u ? 1000000000 : (int)d;
}

/* Fds the multiplexer cannot watch are offered their events each round. */
static void run_always_ready(dx_loop *loop)
{
    for (int fd = 0; fd < loop->nios && loop->nalways > 0 && !loop->stop; fd++) {
        dx_io *io = loop->ios[fd];
        if (io && io->always_ready && (io->events & (DX_READ | DX_WRITE)))
            io->cb(loop, io, io->events & (DX_READ | DX_WRITE)); /* files have no priority data */
    }
}

int dx_loop_run(dx_loop *loop)
{
    loop->stop = 0;
    while (!loop->stop && (loop->nactive > 0 || loop->nheap > 0 || loop->later_head)) {
        run_later(loop);
        if (loop->stop || (loop->nactive == 0 && loop->nheap == 0 && !loop->later_head))
            break; /* the deferred callbacks were the last work */
        loop->nfired = 0;
        int rc = loop->backend->wait(loop, next_timeout(loop));
        if (rc < 0 && rc != -EINTR)
            return rc;
        loop->now = monotonic_ms();
        for (int i = 0; i < loop->nfired && !loop->stop; i++) {
            loop->firing = i;
            dispatch(loop, loop->fired[i].fd, loop->fired[i].events);
        }
        loop->firing = -1;
        if (loop->nalways > 0 && !loop->stop)
            run_always_ready(loop);
        run_timers(loop);
    }
    return 0;
}
