/* connector.c: asynchronous connect that tries every resolved address in
 * turn, each attempt bounded by a timer (S2.1, S2.3). */
#define _POSIX_C_SOURCE 200809L
#include "internal.h"

#include <errno.h>
#include <string.h>
#include <unistd.h>

static void try_next(dx_connector *c, int last_error);
static void on_deferred_fail(dx_loop *loop, dx_timer *t);

static void defer_failure(dx_connector *c, int error)
{
    c->fd = error;
    dx_timer_init(&c->timer, on_deferred_fail, c);
    dx_timer_start(c->loop, &c->timer, 0, 0);
}

static void finish_attempt(dx_connector *c)
{
    dx_io_stop(c->loop, &c->io);
    dx_timer_stop(c->loop, &c->timer);
}

/* Report one failed address, then move on to the next or give up. */
static void report_failure(dx_connector *c, int error)
{
    const dx_addr *a = &c->addrs[c->next - 1];
    c->fd = -1;
    if (c->next < c->naddrs) {
        c->cb(c, error, a, 0);
        if (!c->cancelled) /* the callback may have given up */
            try_next(c, error);
    } else {
        c->cb(c, error, a, 1);
    }
}

static void fail_attempt(dx_connector *c, int error)
{
    finish_attempt(c);
    close(c->fd);
    report_failure(c, error);
}

static void on_writable(dx_loop *loop, dx_io *io, int events)
{
    (void)loop;
    (void)events;
    dx_connector *c = io->data;
    int rc = dx_connect_result(c->fd);
    if (rc < 0) {
        fail_attempt(c, rc);
        return;
    }
    finish_attempt(c);
    int fd = c->fd;
    c->fd = -1;
    c->cb(c, fd, &c->addrs[c->next - 1], 1);
}

static void on_timeout(dx_loop *loop, dx_timer *t)
{
    (void)loop;
    fail_attempt(t->data, DX_ETIMEDOUT);
}

/* Immediate failures are reported from a zero timer so that the callback
 * never runs inside dx_connect_async() itself. */
static void on_deferred_fail(dx_loop *loop, dx_timer *t)
{
    (void)loop;
    dx_connector *c = t->data;
    report_failure(c, c->fd); /* the error code was parked in fd */
}

static void try_next(dx_connector *c, int last_error)
{
    (void)last_error;
    const dx_addr *a = &c->addrs[c->next++];
    int fd = dx_connect_start_opts(a, c->has_source ? &c->source : NULL, c->sockopts,
                                   c->nsockopts, &c->sockopt_failed);
    /* the stage that failed: an option (its index), the source bind, or neither */
    c->bind_failed = c->sockopt_failed == DX_FAILED_BIND;
    if (c->bind_failed)
        c->sockopt_failed = -1;
    if (fd < 0) {
        defer_failure(c, fd);
        return;
    }
    c->fd = fd;
    dx_io_init(&c->io, fd, on_writable, c);
    int rc = dx_io_set(c->loop, &c->io, DX_WRITE);
    if (rc < 0) {
        close(fd);
        defer_failure(c, rc);
        return;
    }
    dx_timer_init(&c->timer, on_timeout, c);
    if (c->timeout_ms)
        dx_timer_start(c->loop, &c->timer, c->timeout_ms, 0);
}

int dx_connect_async(dx_loop *loop, dx_connector *c, const dx_addr *addrs, int naddrs,
                     const dx_addr *source, uint64_t timeout_ms, dx_connect_cb cb, void *data)
{
    return dx_connect_async_opts(loop, c, addrs, naddrs, source, timeout_ms, NULL, 0, cb, data);
}

int dx_connect_async_opts(dx_loop *loop, dx_connector *c, const dx_addr *addrs, int naddrs,
                          const dx_addr *source, uint64_t timeout_ms, const dx_sockopt *opts,
                          int nopts, dx_connect_cb cb, void *data)
{
    if (naddrs <= 0)
        return DX_ENOADDR;
    memset(c, 0, sizeof *c);
    c->loop = loop;
    c->addrs = addrs;
    c->naddrs = naddrs;
    c->timeout_ms = timeout_ms;
    c->cb = cb;
    c->data = data;
    c->fd = -1;
    c->sockopts = opts;
    c->nsockopts = nopts > 0 ? nopts : 0;
    c->sockopt_failed = -1;
    dx_timer_init(&c->timer, on_timeout, c);
    dx_io_init(&c->io, -1, on_writable, c);
    if (source) {
        c->source = *source;
        c->has_source = 1;
    }
    try_next(c, 0);
    return 0;
}

void dx_connect_cancel(dx_connector *c)
{
    c->cancelled = 1;
    dx_timer_stop(c->loop, &c->timer);
    if (c->fd >= 0) {
        dx_io_stop(c->loop, &c->io);
        close(c->fd);
    }
    c->fd = -1;
}
