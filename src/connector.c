/* connector.c: asynchronous connect that tries every resolved address in
 * turn, each attempt bounded by a timer (S2.1, S2.3).
 * Every callback runs from the loop: an address that fails at once (no
 * socket, a refused option, a Unix path nobody listens on) is reported
 * through the loop's deferred queue, never from inside dx_connect_async().
 * An address that took the connection is the last one tried, even if the
 * peer resets it before the connector has looked (item 15 of issue 10):
 * another address would make a second connection, and the reset belongs to
 * the exchange, not to the connect. */
#define _POSIX_C_SOURCE 200809L
#include "internal.h"
#include "os.h"

#include <errno.h>
#include <string.h>

static void try_next(dx_connector *c);

static void finish_attempt(dx_connector *c)
{
    dx_io_stop(c->loop, &c->io);
    dx_timer_stop(c->loop, &c->timer);
}

/* Report one failed address, then move on to the next or give up. A
 * failure callback that is not the final one may cancel the connector and
 * free it: `alive` tells, without touching the connector. */
static void report_failure(dx_connector *c, int error)
{
    const dx_addr *a = &c->addrs[c->next - 1];
    c->fd = -1;
    if (c->next < c->naddrs) {
        int alive = 1;
        c->alive = &alive;
        c->cb(c, error, a, 0);
        if (!alive)
            return;
        c->alive = NULL;
        try_next(c);
    } else {
        c->cb(c, error, a, 1);
    }
}

static void fail_attempt(dx_connector *c, int error)
{
    finish_attempt(c);
    dx__sock_close(c->fd);
    report_failure(c, error);
}

/* The handshake had completed when the peer reset the connection: a reset
 * in SYN-SENT, i.e. a refused connect, is ECONNREFUSED; ECONNRESET (or
 * EPIPE, after the peer's FIN) comes only from a synchronised state. */
static int reset_after_handshake(int rc) { return rc == -ECONNRESET || rc == -EPIPE; }

static void on_writable(dx_loop *loop, dx_io *io, int events)
{
    (void)loop;
    (void)events;
    dx_connector *c = io->data;
    int rc = dx_connect_result(c->fd);
    if (rc < 0 && reset_after_handshake(rc)) {
        finish_attempt(c);
        dx__sock_close(c->fd);
        c->fd = -1;
        c->established = 1; /* this address answered: no other is tried */
        c->cb(c, rc, &c->addrs[c->next - 1], 1);
        return;
    }
    if (rc < 0) {
        fail_attempt(c, rc);
        return;
    }
    finish_attempt(c);
    int fd = c->fd;
    c->fd = -1;
    c->established = 1;
    c->cb(c, fd, &c->addrs[c->next - 1], 1);
}

static void on_timeout(dx_loop *loop, dx_timer *t)
{
    (void)loop;
    fail_attempt(t->data, DX_ETIMEDOUT);
}

static void on_deferred_fail(dx_loop *loop, dx__later *l)
{
    (void)loop;
    dx_connector *c = l->data;
    report_failure(c, c->later_error);
}

/* An address that fails at once is reported from the loop. */
static void defer_failure(dx_connector *c, int error)
{
    c->later_error = error;
    dx__later_queue(c->loop, &c->later);
}

static void try_next(dx_connector *c)
{
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
        dx__sock_close(fd);
        c->fd = -1;
        defer_failure(c, rc);
        return;
    }
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
    dx__later_init(&c->later, on_deferred_fail, c);
    if (source) {
        c->source = *source;
        c->has_source = 1;
    }
    try_next(c);
    return 0;
}

void dx_connect_cancel(dx_connector *c)
{
    if (!c->loop)
        return;
    c->cancelled = 1;
    if (c->alive) /* from a failure callback: report_failure must not go on */
        *c->alive = 0;
    c->alive = NULL;
    dx_timer_stop(c->loop, &c->timer);
    dx__later_cancel(c->loop, &c->later);
    if (c->fd >= 0) {
        dx_io_stop(c->loop, &c->io);
        dx__sock_close(c->fd);
    }
    c->fd = -1;
}
