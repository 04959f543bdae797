/* stream.c: one fd with a read callback and a bounded output queue, for
 * servers that fan bytes out to many peers (echo, broker, chat). The queue
 * never grows: a write that does not fit is refused whole, so the caller
 * decides between waiting (pause the producer) and dropping a slow peer.
 * The queue is allocated only while bytes wait in it, so an idle stream
 * costs no buffer memory (servers hold tens of thousands of them). */
#define _GNU_SOURCE
#include "internal.h"
#include "os.h"

#include <errno.h>
#include <string.h>

/* One read per wake-up into a stack buffer: fair to other peers, and the
 * callback sees the bytes without another copy. */
#define READ_CHUNK (64 * 1024)

/* s->failed: 1 once failed (the error reported, or on its way from the
 * loop); DRAINING while a write failure waits for the reads (drain_first). */
#define DRAINING 2

static void stream_cb(dx_loop *loop, dx_io *io, int events);
static void report_later(dx_loop *loop, dx__later *l);

static ssize_t direct_write(dx_stream *s, const char *p, size_t n)
{
    if (s->tls)
        return dx__tls_write(s->tls, p, n);
    ssize_t w;
    do
#ifdef MSG_NOSIGNAL
        w = s->is_socket ? dx__sock_send(s->io.fd, p, n, MSG_NOSIGNAL) : dx__fd_write(s->io.fd, p, n);
#else
        w = dx__fd_write(s->io.fd, p, n);
#endif
    while (w < 0 && errno == EINTR);
    if (w < 0)
        return errno == EWOULDBLOCK ? -EAGAIN : -errno;
    return w;
}

/* Bytes to write, or a TLS close_notify that waits for the socket. */
static int has_output(const dx_stream *s)
{
    return !s->failed && (dx_buf_len(&s->out) > 0 || (s->shut_pending && !s->shut_done));
}

/* The events reading and writing wait for: over TLS, either may wait for
 * the other's (a handshake message, a key update). */
static int read_ev(const dx_stream *s) { return s->tls ? dx__tls_event(s->tls, DX_READ) : DX_READ; }
static int write_ev(const dx_stream *s) { return s->tls ? dx__tls_event(s->tls, DX_WRITE) : DX_WRITE; }

static int update(dx_stream *s)
{
    if (!s->loop || s->failed == 1)
        return 0;
    /* a rate limit's empty bucket: its timer calls update() again */
    int rd = s->reading && !dx__rate_blocked(&s->rate_in);
    int wr = dx_buf_len(&s->out) > 0 ? !dx__rate_blocked(&s->rate_out) : has_output(s);
    if (s->tls) /* input OpenSSL holds is read from the loop, not waited for */
        dx__tls_kick(s->tls, rd);
    int ev = (rd ? read_ev(s) : 0) | (wr ? write_ev(s) : 0);
    return dx_io_set(s->loop, &s->io, ev);
}

int dx_stream_init(dx_loop *loop, dx_stream *s, int fd, size_t queue_cap,
                   dx_stream_read_cb read_cb, dx_stream_event_cb event_cb, void *data)
{
    memset(s, 0, sizeof *s);
    s->queue_cap = queue_cap ? queue_cap : 64 * 1024;
    s->loop = loop;
    s->is_socket = dx__os_is_socket(fd);
    s->read_cb = read_cb;
    s->event_cb = event_cb;
    s->data = data;
    s->last_activity = loop->now;
    dx_io_init(&s->io, fd, stream_cb, s);
    dx__later_init(&s->later, report_later, s);
    dx__rate_init(&s->rate_in, 0, 0, NULL, NULL); /* no limits; stoppable timers */
    dx__rate_init(&s->rate_out, 0, 0, NULL, NULL);
    return 0;
}

/* A write failed because the peer has gone (reset, broken pipe), and the
 * program reads: what the peer sent before is still in the socket, and the
 * program gets it, as if the reads had come first (a server that answers
 * and closes with our request unread resets us; its answer is in there).
 * Writing is over (the queue dropped, writes -EPIPE); reading goes on, and
 * the failure is reported when it ends (the end of input, the reset) or
 * the program stops it. Not over TLS, whose session a failed write ends.
 * Returns 1 if so. */
static int drain_first(dx_stream *s, int error)
{
    if (!s->reading || s->tls || !s->is_socket || s->failed ||
        !(error == -EPIPE || error == -ECONNRESET || error == -ETIMEDOUT || error == -ENOTCONN))
        return 0;
    s->failed = DRAINING;
    s->later_error = error;
    dx_buf_free(&s->out);
    update(s);
    return 1;
}

/* Report a failure once; the owner is expected to close the stream. While
 * DRAINING, the write failure held is the one reported. */
static void fail(dx_stream *s, int error)
{
    if (s->failed == DRAINING)
        error = s->later_error;
    else if (s->failed || drain_first(s, error))
        return;
    dx_io_stop(s->loop, &s->io);
    s->failed = 1;
    s->event_cb(s, error);
}

static void report_later(dx_loop *loop, dx__later *l)
{
    (void)loop;
    dx_stream *s = l->data;
    s->event_cb(s, s->later_error);
}

/* A failure found inside a call the program made (dx_stream_write(),
 * dx_stream_shutdown()): the stream is failed at once (later writes get
 * -EPIPE) but the event callback runs from the loop, since the caller may
 * free the stream in it and then return into code that still uses it. */
static void fail_later(dx_stream *s, int error)
{
    if (s->failed == DRAINING)
        error = s->later_error;
    else if (s->failed || drain_first(s, error))
        return;
    dx_io_stop(s->loop, &s->io);
    s->failed = 1;
    s->later_error = error;
    dx__later_queue(s->loop, &s->later);
}

/* Write what is queued. Returns 0, 1 if a pending shutdown was just done,
 * or -1 if the stream failed (reported at once from the loop's callback,
 * or deferred with `in_call`, inside a call of the program). */
static int flush(dx_stream *s, int in_call)
{
    void (*report)(dx_stream *, int) = in_call ? fail_later : fail;
    while (dx_buf_len(&s->out) > 0) {
        size_t max = dx__rate_allow(&s->rate_out, s->loop, dx_buf_len(&s->out));
        if (max == 0)
            break;
        ssize_t n = s->tls ? dx__buf_write_tls(&s->out, s->tls, max)
                           : dx__buf_write_fd_max(&s->out, s->io.fd, s->is_socket, max);
        if (n == -EAGAIN)
            break;
        if (n < 0) {
            report(s, (int)n);
            return -1;
        }
        s->bytes_out += (uint64_t)n;
        s->last_activity = s->loop->now;
        dx__rate_spend(&s->rate_out, s->loop, (size_t)n);
    }
    if (dx_buf_len(&s->out) == 0 && s->out.data)
        dx_buf_free(&s->out); /* idle streams hold no buffer */
    if (dx_buf_len(&s->out) == 0 && s->shut_pending && !s->shut_done && s->tls) {
        int rc = dx__tls_shutdown(s->tls); /* close_notify, then FIN */
        if (rc == -EAGAIN)
            return 0;
        s->shut_done = 1;
        if (rc < 0) {
            report(s, rc);
            return -1;
        }
        return 1;
    }
    if (dx_buf_len(&s->out) == 0 && s->shut_pending && !s->shut_done) {
        s->shut_done = 1;
        if (s->is_socket && dx__sock_shutdown(s->io.fd, SHUT_WR) < 0 && errno != ENOTCONN) {
            report(s, -errno);
            return -1;
        }
        return 1;
    }
    return 0;
}

static void stream_cb(dx_loop *loop, dx_io *io, int events)
{
    (void)loop;
    dx_stream *s = io->data;
    int rd = read_ev(s); /* before a write changes it */
    if (events & (write_ev(s) | DX_ERROR) && has_output(s)) {
        int rc = flush(s, 0);
        if (rc < 0)
            return;
        if (rc == 1 || (s->above_half && dx_buf_len(&s->out) <= s->queue_cap / 2)) {
            s->above_half = 0;
            update(s);
            s->event_cb(s, 0); /* may close the stream: touch nothing after */
            return;
        }
        update(s);
    }
    if (events & (rd | DX_ERROR) && s->reading && s->failed != 1) {
        char chunk[READ_CHUNK];
        /* at most half the queue: a peer served by the same rules (fan-out
         * pausing above half) always has room for one read */
        size_t want = s->queue_cap / 2 < sizeof chunk ? s->queue_cap / 2 : sizeof chunk;
        want = dx__rate_allow(&s->rate_in, s->loop, want ? want : 1);
        if (want == 0) { /* the bucket is empty: its timer reads again */
            update(s);
            return;
        }
        ssize_t n;
        if (s->tls) {
            n = dx__tls_read(s->tls, chunk, want);
            if (n == -EAGAIN) {
                update(s); /* the event it waits for may have changed */
                return;
            }
            if (n < 0) {
                fail(s, (int)n);
                return;
            }
            dx__tls_kick(s->tls, n > 0); /* more in OpenSSL: read again from the loop */
        } else {
            do
                n = dx__fd_read(io->fd, chunk, want);
            while (n < 0 && errno == EINTR);
            if (n < 0) {
                if (errno != EAGAIN && errno != EWOULDBLOCK)
                    fail(s, -errno);
                return;
            }
        }
        if (n == 0 && s->failed) { /* DRAINING: all in; the write failure ends it */
            fail(s, 0);
            return;
        }
        if (n == 0) {
            s->reading = 0; /* end of input is reported once */
            update(s);
        } else {
            s->bytes_in += (uint64_t)n;
            s->last_activity = s->loop->now;
            dx__rate_spend(&s->rate_in, s->loop, (size_t)n);
            if (dx__rate_blocked(&s->rate_in))
                update(s);
        }
        s->read_cb(s, chunk, (size_t)n);
    }
}

int dx_stream_read_start(dx_stream *s)
{
    s->reading = 1;
    return update(s);
}

int dx_stream_read_stop(dx_stream *s)
{
    s->reading = 0;
    if (s->failed == DRAINING) { /* nobody reads the rest: say the failure now */
        fail_later(s, 0);
        return 0;
    }
    return update(s);
}

int dx_stream_write(dx_stream *s, const void *data, size_t n)
{
    if (s->failed || s->shut_pending)
        return -EPIPE;
    if (n > dx_stream_room(s))
        return -ENOBUFS;
    const char *p = data;
    if (dx_buf_len(&s->out) == 0) {
        /* write through: most writes never touch the queue or the loop */
        size_t max = dx__rate_allow(&s->rate_out, s->loop, n);
        ssize_t w = max ? direct_write(s, p, max) : -EAGAIN;
        if (w < 0 && w != -EAGAIN) {
            fail_later(s, (int)w);
            return 0; /* event_cb gets the failure from the loop */
        }
        if (w > 0) {
            p += w;
            n -= (size_t)w;
            s->bytes_out += (uint64_t)w;
            s->last_activity = s->loop->now;
            dx__rate_spend(&s->rate_out, s->loop, (size_t)w);
        }
        if (n == 0)
            return 0;
        if (!s->out.data && dx_buf_init(&s->out, s->queue_cap) < 0) {
            fail_later(s, -ENOMEM);
            return 0;
        }
    }
    dx_buf_put(&s->out, p, n);
    if (dx_buf_len(&s->out) > s->queue_cap / 2)
        s->above_half = 1;
    return update(s);
}

size_t dx_stream_queued(const dx_stream *s) { return dx_buf_len(&s->out); }
size_t dx_stream_room(const dx_stream *s) { return s->queue_cap - dx_buf_len(&s->out); }

void dx_stream_shutdown(dx_stream *s)
{
    if (s->shut_pending || s->failed)
        return;
    s->shut_pending = 1;
    if (flush(s, 1) >= 0)
        update(s);
}

/* A bucket has tokens again: read or write again. */
static void rate_wake(dx_loop *loop, dx_timer *t)
{
    (void)loop;
    dx_stream *s = t->data;
    update(s);
}

int dx_stream_set_rate(dx_stream *s, uint64_t in, uint64_t out)
{
    dx__rate_stop(&s->rate_in, s->loop);
    dx__rate_stop(&s->rate_out, s->loop);
    uint64_t now = s->loop ? s->loop->now : 0;
    dx__rate_init(&s->rate_in, in, now, rate_wake, s);
    dx__rate_init(&s->rate_out, out, now, rate_wake, s);
    return update(s);
}

void dx_stream_set_tls(dx_stream *s, dx_tls *t)
{
    s->tls = t;
    dx__tls_attach(t, &s->io);
}

void dx_stream_close(dx_stream *s)
{
    if (!s->loop)
        return;
    if (s->tls) {
        dx__tls_kick(s->tls, 0);
        dx__tls_attach(s->tls, NULL);
    }
    dx__rate_stop(&s->rate_in, s->loop);
    dx__rate_stop(&s->rate_out, s->loop);
    dx_io_stop(s->loop, &s->io);
    dx__later_cancel(s->loop, &s->later); /* a closed stream hears nothing more */
    dx_buf_free(&s->out);
    s->loop = NULL;
    s->failed = 1;
}
