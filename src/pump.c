/* pump.c: one-way copy from one fd to another through a bounded buffer, or
 * with splice(2) through a pipe so the bytes never reach user space.
 * Backpressure: the source is only read while the buffer has room, so a
 * slow destination stops the reading instead of growing memory. End of
 * input is passed on as shutdown(SHUT_WR) once the buffer has drained.
 * Splice quirk: a pipe's capacity is counted in pages, so a pipe may refuse
 * more bytes (EAGAIN) before `pipecap` bytes are in it; reading then waits
 * for the next write to drain it, instead of spinning on a readable source. */
#define _GNU_SOURCE
#include "internal.h"
#include "os.h"

#include <errno.h>
#include <string.h>
#ifdef __linux__ /* splice(2), sendfile(2), SIGPIPE; Windows: buffered copy, no SIGPIPE */
#include <sys/stat.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/sendfile.h>
#include <time.h>
#endif

/* Reads per wake-up: enough to fill a large buffer, few enough that one busy
 * source cannot starve the other watchers of the loop. */
#define READS_PER_WAKEUP 4

static void endpoint_cb(dx_loop *loop, dx_io *io, int events);

void dx_endpoint_init(dx_endpoint *e, int fd)
{
    memset(e, 0, sizeof *e);
    e->fd = fd;
    e->is_socket = dx__os_is_socket(fd);
    dx_io_init(&e->io, fd, endpoint_cb, e);
}

static int spliced(const dx_pump *p) { return p->pipe_r >= 0; }

/* 1 if the next byte to read from a TCP socket is the urgent mark. */
static int at_urgent_mark(int fd) { return dx__sock_atmark(fd) == 1; }

/* A read at least this large means bulk data: worth splice(2). Below it,
 * read()+write() of a small message is cheaper than two splices through a
 * pipe (redis GETs through relay: +15%). */
#define SPLICE_MIN (16 * 1024)

/* Input a filter may turn into twice as many bytes, read at a time. */
#define FILTER_CHUNK 16384

static size_t room(const dx_pump *p)
{
    if (spliced(p))
        return p->pipe_stalled ? 0 : p->pipecap - p->inpipe;
    if (p->filter) /* what is read may double */
        return dx_buf_room(&p->buf) / 2;
    return dx_buf_room(&p->buf);
}

static size_t pending(const dx_pump *p) { return spliced(p) ? p->inpipe : dx_buf_len(&p->buf); }

/* A sendfile pump has no buffer: it only waits for the socket to take more.
 * A direct pump has none either: it waits for the pipe to have bytes, or,
 * when the socket was full, for the socket to take more. */
static int wants_read(const dx_pump *p)
{
    if (p && dx__rate_blocked(&p->rate))
        return 0; /* --rate-limit: the source waits for the bucket's timer */
    if (p && p->direct)
        return !p->done && !p->eof && !p->dst_full;
    return p && !p->done && !p->eof && !p->sendfile && room(p) > 0;
}

static int wants_write(const dx_pump *p)
{
    if (p && p->closing) /* TLS close_notify waits for the socket */
        return !p->done;
    if (p && p->direct)
        return !p->done && p->dst_full;
    if (p && p->sendfile && dx__rate_blocked(&p->rate))
        return 0; /* sendfile reads as it writes: the limit holds the write */
    return p && !p->done && (p->sendfile || pending(p) > 0);
}

/* At most this many bytes may be read now (the rate limit), 0: none. */
static size_t allowed(dx_pump *p, size_t want) { return dx__rate_allow(&p->rate, p->loop, want); }

static void close_pipe(dx_pump *p)
{
    if (p->pipe_r >= 0) {
        dx__fd_close(p->pipe_r);
        dx__fd_close(p->pipe_w);
    }
    p->pipe_r = p->pipe_w = -1;
}

#ifdef __linux__
static int open_pipe(dx_pump *p)
{
    int fds[2];
    if (pipe2(fds, O_NONBLOCK | O_CLOEXEC) < 0)
        return -errno;
    p->pipe_r = fds[0];
    p->pipe_w = fds[1];
    /* as large as the buffer would have been (pipe-max-size may cap it) */
    (void)fcntl(p->pipe_w, F_SETPIPE_SZ, (int)p->bufsize);
    int sz = fcntl(p->pipe_w, F_GETPIPE_SZ);
    p->pipecap = sz > 0 ? (size_t)sz : 65536;
    return 0;
}

/* A large read: the data is bulk, move it with splice(2) from now on (the
 * buffer is empty). If no pipe can be had, stay with the buffer. */
static void go_splice(dx_pump *p)
{
    p->splice_later = p->splice_soon = 0;
    if (open_pipe(p) == 0)
        dx_buf_free(&p->buf);
}

/* The kernel cannot splice this fd: continue with the buffered copy, taking
 * over what the pipe already holds. Returns 0 or a negative code. */
static int unsplice(dx_pump *p)
{
    size_t cap = p->bufsize > p->inpipe ? p->bufsize : p->inpipe;
    int rc = dx_buf_init(&p->buf, cap);
    if (rc < 0)
        return rc;
    while (p->inpipe > 0) {
        ssize_t n = dx_buf_read_fd(&p->buf, p->pipe_r);
        if (n <= 0)
            break;
        p->inpipe -= (size_t)n;
    }
    close_pipe(p);
    p->inpipe = 0;
    return 0;
}

static ssize_t splice_nb(int in, int out, size_t n)
{
    ssize_t r;
    do
        r = splice(in, NULL, out, NULL, n, SPLICE_F_NONBLOCK | SPLICE_F_MOVE);
    while (r < 0 && errno == EINTR);
    return r < 0 ? (errno == EWOULDBLOCK ? -EAGAIN : -errno) : r;
}

/* splice() into a closed socket raises SIGPIPE (there is no MSG_NOSIGNAL
 * for it): block the signal around the call and swallow the one it raised,
 * so that the library keeps its promise never to raise SIGPIPE. A process
 * that ignores SIGPIPE when the pump first moves bytes to a socket this way
 * (the duplex command does) needs none of that. Looked up then, not at
 * start: a relayed connection of small messages never splices, and a
 * sigaction(2) per pump was a tenth of the system calls of a short one. */
static ssize_t sendfile_nb(int in, int out, size_t n)
{
    ssize_t r;
    do
        r = sendfile(out, in, NULL, n);
    while (r < 0 && errno == EINTR);
    return r < 0 ? (errno == EWOULDBLOCK ? -EAGAIN : -errno) : r;
}

static ssize_t to_socket(dx_pump *p, ssize_t (*move)(int, int, size_t), int in, int out,
                         size_t n)
{
    if (!p->sigpipe_ignored) {
        struct sigaction sa;
        p->sigpipe_ignored = sigaction(SIGPIPE, NULL, &sa) == 0 && sa.sa_handler == SIG_IGN ? 1 : 2;
    }
    if (p->sigpipe_ignored == 1) /* nothing to raise: spare two system calls a move */
        return move(in, out, n);
    sigset_t pipe_set, old;
    sigemptyset(&pipe_set);
    sigaddset(&pipe_set, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &pipe_set, &old);
    ssize_t r = move(in, out, n);
    if (r == -EPIPE && !sigismember(&old, SIGPIPE)) {
        struct timespec zero = {0, 0};
        sigtimedwait(&pipe_set, NULL, &zero);
    }
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    return r;
}

static void finish(dx_pump *p, int error, int in_read);
static void complete(dx_pump *p);

/* This fd cannot be sent or spliced (or no longer): copy through the
 * buffer from now on. Returns 1 if the pump finished (no memory). */
static int fall_back_to_copy(dx_pump *p)
{
    p->sendfile = p->direct = 0;
    int rc = dx_buf_init(&p->buf, p->bufsize);
    if (rc < 0) {
        finish(p, rc, 1);
        return 1;
    }
    return 0;
}

/* After a sendfile or a direct splice that moved n bytes, 0 at the end of
 * the source, or failed with -errno (in_read: an error of the source).
 * Returns 1 if the pump finished. */
static int moved(dx_pump *p, ssize_t n, int in_read)
{
    if (n < 0) {
        finish(p, (int)n, in_read);
        return 1;
    }
    if (n == 0) {
        p->eof = 1;
        complete(p);
        return 1;
    }
    p->bytes_in += (uint64_t)n;
    p->bytes_out += (uint64_t)n;
    p->last_activity = p->loop->now;
    dx__rate_spend(&p->rate, p->loop, (size_t)n);
    return 0;
}

/* File to socket: sendfile(2) moves the page cache straight to the socket,
 * one call, no pipe. Returns 1 if the pump finished, 0 otherwise. */
static int send_file(dx_pump *p)
{
    for (int i = 0; i < 64; i++) {
        size_t max = allowed(p, p->bufsize);
        if (max == 0)
            return 0;
        ssize_t n = to_socket(p, sendfile_nb, p->src->fd, p->dst->fd, max);
        if (n == -EAGAIN)
            return 0;
        if (n == -EINVAL && p->bytes_in == 0) /* this file cannot: copy it */
            return fall_back_to_copy(p);
        if (moved(p, n, 0))
            return 1;
    }
    return 0;
}

/* Pipe to socket or socket to pipe: splice(2) straight between them, one
 * call per chunk and no pipe of our own. EAGAIN does not say which side
 * would block: bytes still waiting in the source mean the destination is
 * full. Returns 1 if the pump finished, 0 otherwise. */
static int splice_direct(dx_pump *p)
{
    p->dst_full = 0;
    for (int i = 0; i < 64; i++) {
        size_t max = allowed(p, p->bufsize);
        if (max == 0)
            return 0;
        ssize_t n = p->dst->is_socket ? to_socket(p, splice_nb, p->src->fd, p->dst->fd, max)
                                      : splice_nb(p->src->fd, p->dst->fd, max);
        if ((n == -EAGAIN || n == 0) && p->src->is_socket && at_urgent_mark(p->src->fd))
            n = -EINVAL; /* TCP splice stops at the urgent mark for good: read() steps over it */
        if (n == -EAGAIN) {
            int avail = 0;
            p->dst_full = ioctl(p->src->fd, FIONREAD, &avail) == 0 && avail > 0;
            return 0;
        }
        if (n == -EINVAL) /* this fd cannot (or no longer) */
            return fall_back_to_copy(p);
        /* one side is a socket: its errors are reading errors when it is the
         * source (a reset), writing errors when it is the destination; EPIPE
         * is always the destination's */
        if (moved(p, n, p->src->is_socket && n != -EPIPE))
            return 1;
    }
    return 0;
}
#endif

/* Move bytes towards dst: returns bytes written, -EAGAIN, or -errno. */
static ssize_t write_some(dx_pump *p)
{
#ifdef __linux__
    if (spliced(p)) {
        ssize_t n = p->dst->is_socket ? to_socket(p, splice_nb, p->pipe_r, p->dst->fd, p->inpipe)
                                      : splice_nb(p->pipe_r, p->dst->fd, p->inpipe);
        if (n == -EINVAL && p->bytes_out == 0) {
            int rc = unsplice(p); /* e.g. a terminal: no splice_write */
            return rc < 0 ? rc : write_some(p);
        }
        if (n > 0) {
            p->inpipe -= (size_t)n;
            p->pipe_stalled = 0;
        }
        return n;
    }
#endif
    if (p->dst->tls)
        return dx__buf_write_tls(&p->buf, p->dst->tls, SIZE_MAX);
    return dx_buf_write_fd(&p->buf, p->dst->fd, p->dst->is_socket);
}

/* Take at most max bytes from src: returns bytes read, 0 at end, -EAGAIN,
 * or -errno. */
static ssize_t read_some(dx_pump *p, size_t max)
{
#ifdef __linux__
    if (spliced(p)) {
        size_t want = p->pipecap - p->inpipe;
        ssize_t n = splice_nb(p->src->fd, p->pipe_w, want < max ? want : max);
        if (n == -EINVAL && p->bytes_in == 0) {
            int rc = unsplice(p); /* e.g. a terminal: no splice_read */
            return rc < 0 ? rc : read_some(p, max);
        }
        if ((n == -EAGAIN || n == 0) && p->src->is_socket && at_urgent_mark(p->src->fd)) {
            /* TCP splice stops at the urgent mark for good (it never
             * steps over the urgent byte, even once it was read with
             * MSG_OOB or with SO_OOBINLINE), with EAGAIN, or 0 once the
             * peer's FIN is in: read() steps over it */
            int rc = unsplice(p);
            return rc < 0 ? rc : read_some(p, max);
        }
        if (n == -EAGAIN && p->inpipe > 0)
            p->pipe_stalled = 1; /* maybe the pipe: wait for a write to drain it */
        if (n > 0)
            p->inpipe += (size_t)n;
        return n;
    }
#endif
    if (p->filter) {
        char in[FILTER_CHUNK], out[2 * FILTER_CHUNK];
        size_t want = room(p) < sizeof in ? room(p) : sizeof in;
        ssize_t n;
        if (want > max)
            want = max;
        if (p->src->tls) {
            n = dx__tls_read(p->src->tls, in, want);
            if (n < 0)
                return n;
        } else {
            do
                n = dx__fd_read(p->src->fd, in, want);
            while (n < 0 && errno == EINTR);
            if (n < 0)
                return errno == EWOULDBLOCK ? -EAGAIN : -errno;
        }
        if (n > 0)
            dx_buf_put(&p->buf, out, p->filter(p, in, (size_t)n, out));
        return n;
    }
    if (p->src->tls)
        return dx__buf_read_tls(&p->buf, p->src->tls, max);
    return dx__buf_read_fd_max(&p->buf, p->src->fd, max);
}

/* The events reading and writing an endpoint wait for: over TLS, either
 * may wait for the other's. */
static int read_ev(const dx_endpoint *e) { return e->tls ? dx__tls_event(e->tls, DX_READ) : DX_READ; }
static int write_ev(const dx_endpoint *e) { return e->tls ? dx__tls_event(e->tls, DX_WRITE) : DX_WRITE; }

/* Watch exactly what the endpoint's pumps can make progress on. */
static int endpoint_update(dx_endpoint *e)
{
    if (!e || !e->loop)
        return 0;
    int r = wants_read(e->reader);
    if (e->tls) /* input OpenSSL holds is read from the loop, not waited for */
        dx__tls_kick(e->tls, r);
    int ev = (r ? read_ev(e) : 0) | (wants_write(e->writer) ? write_ev(e) : 0) |
             (e->pri_cb ? DX_PRI : 0);
    return dx_io_set(e->loop, &e->io, ev);
}

/* The pump is over: stop watching for it, then tell the owner (last, since
 * the owner may stop or reuse the pump from the callback). */
static void finish(dx_pump *p, int error, int in_read)
{
    p->done = 1;
    endpoint_update(p->src);
    endpoint_update(p->dst);
    if (p->cb)
        p->cb(p, error, in_read);
}

/* Called when the input has ended and the buffer is empty. */
static void complete(dx_pump *p)
{
    if ((p->flags & DX_PUMP_SHUTDOWN) && p->dst && p->dst->tls) {
        int rc = dx__tls_shutdown(p->dst->tls); /* close_notify, then FIN */
        if (rc == -EAGAIN) {
            p->closing = 1; /* flush() tries again when the socket says */
            endpoint_update(p->dst);
            return;
        }
        p->closing = 0;
        finish(p, rc < 0 ? rc : 0, 0);
        return;
    }
    if ((p->flags & DX_PUMP_SHUTDOWN) && p->dst && p->dst->is_socket) {
        /* ENOTCONN: the peer is already gone, nothing left to tell it */
        if (dx__sock_shutdown(p->dst->fd, SHUT_WR) < 0 && errno != ENOTCONN) {
            finish(p, -errno, 0);
            return;
        }
    }
    finish(p, 0, 0);
}

/* Write what is buffered. Returns 1 if the pump finished (do not touch it
 * afterwards), 0 otherwise. */
static int flush(dx_pump *p)
{
    if (p->closing) {
        complete(p);
        return 1;
    }
#ifdef __linux__
    if (p->sendfile)
        return send_file(p);
    if (p->direct)
        return splice_direct(p);
#endif
    while (pending(p) > 0) {
        ssize_t n = write_some(p);
        if (n == -EAGAIN)
            break;
        if (n < 0) {
            finish(p, (int)n, 0);
            return 1;
        }
        p->bytes_out += (uint64_t)n;
        p->last_activity = p->loop->now;
    }
    if (p->eof && pending(p) == 0) {
        complete(p);
        return 1;
    }
#ifdef __linux__
    if (p->splice_soon && pending(p) == 0)
        go_splice(p);
#endif
    return 0;
}

/* The endpoint's DX_PRI callback, which may stop the pumps on the endpoint
 * or its watch and free them all. Returns 0 if it let the endpoint go (the
 * caller must then touch neither the endpoint nor its pumps), else 1. */
static int run_pri_cb(dx_endpoint *e)
{
    int running = 1;
    e->pri_running = &running;
    e->pri_cb(e);
    if (!running)
        return 0;
    e->pri_running = NULL;
    return 1;
}

/* A pump on the endpoint or its DX_PRI watch was stopped: if its DX_PRI
 * callback is running, the endpoint may be freed when it returns. */
static void endpoint_let_go(dx_endpoint *e)
{
    if (e && e->pri_running) {
        *e->pri_running = 0;
        e->pri_running = NULL;
    }
}

/* Returns 1 if the pump finished (or was let go from a DX_PRI callback). */
static int fill(dx_pump *p)
{
#ifdef __linux__
    if (p->direct)
        return splice_direct(p);
#endif
    for (int i = 0; i < READS_PER_WAKEUP && room(p) > 0; i++) {
        /* a read that passes the urgent mark discards the urgent byte
         * (Linux): give the endpoint's DX_PRI callback its chance first */
        if (p->src->pri_cb && at_urgent_mark(p->src->fd) && !run_pri_cb(p->src))
            return 1;
        size_t space = room(p), asked = allowed(p, space);
        if (asked == 0)
            return 0; /* the bucket's timer watches the source again */
        ssize_t n = read_some(p, asked);
        if (n == -EAGAIN)
            return 0;
        if (n < 0) {
            finish(p, (int)n, 1);
            return 1;
        }
        if (n == 0) {
            p->eof = 1;
            if (p->flags & DX_PUMP_DISCARD || pending(p) == 0) {
                complete(p);
                return 1;
            }
            return flush(p);
        }
        p->bytes_in += (uint64_t)n;
        p->last_activity = p->loop->now;
        dx__rate_spend(&p->rate, p->loop, (size_t)n);
        /* under a rate limit, a read the bucket cut short is bulk too: slow
         * rates keep their zero-copy path */
        int cut = (size_t)n == asked && asked < space;
        if (p->splice_later && !p->filter && ((size_t)n >= SPLICE_MIN || cut))
            p->splice_soon = 1;
        if (p->flags & DX_PUMP_DISCARD) {
            p->buf.len = 0;
            p->buf.head = 0;
            p->bytes_out += (uint64_t)n;
        } else if (flush(p)) {
            return 1; /* write early: the data is hot and the buffer frees up */
        }
        /* a short read emptied the source for now: the next read would only
         * say EAGAIN (a third system call per small message); the poll,
         * level-triggered, says when there is more */
        if ((size_t)n < asked)
            return 0;
    }
    return 0;
}

/* After a pump has finished, its owner may have stopped both pumps and freed
 * the endpoints from the callback: return without touching them. The other
 * direction's event is seen again on the next round (level-triggered). */
static void endpoint_cb(dx_loop *loop, dx_io *io, int events)
{
    (void)loop;
    dx_endpoint *e = io->data;
    if ((events & DX_PRI) && e->pri_cb && !run_pri_cb(e))
        return;
    int rd = read_ev(e), wr = write_ev(e); /* before a read or write changes them */
    dx_pump *r = e->reader;
    if (r && (events & (rd | DX_ERROR)) && wants_read(r)) {
        dx_endpoint *other = r->dst;
        if (fill(r))
            return;
        endpoint_update(e);
        endpoint_update(other);
    }
    dx_pump *w = e->writer;
    if (w && (events & (wr | DX_ERROR)) && wants_write(w)) {
        dx_endpoint *other = w->src;
        if (flush(w))
            return;
        endpoint_update(e);
        endpoint_update(other);
    }
}

int dx_pump_start(dx_loop *loop, dx_pump *p, dx_endpoint *src, dx_endpoint *dst,
                  size_t bufsize, int flags, dx_pump_cb cb, void *data)
{
    memset(p, 0, sizeof *p);
    p->pipe_r = p->pipe_w = -1;
    dx__rate_init(&p->rate, 0, 0, NULL, NULL); /* no limit; a stoppable timer */
    if (!dst && !(flags & DX_PUMP_DISCARD))
        return -EINVAL;
    if (src->reader || (dst && dst->writer))
        return -EBUSY;
    p->bufsize = bufsize ? bufsize : 64 * 1024;
    int rc = -ENOSYS;
#ifdef __linux__
    struct stat st; /* a socket is neither a file nor a pipe: no fstat(2) for it */
    if (src->tls || (dst && dst->tls))
        flags &= ~DX_PUMP_SPLICE; /* the bytes must pass through OpenSSL */
    if ((flags & DX_PUMP_SPLICE) && dst && dst->is_socket && !src->is_socket &&
        fstat(src->fd, &st) == 0 && S_ISREG(st.st_mode)) {
        p->sendfile = 1; /* a regular file into a socket: no buffer at all */
        rc = 0;
    } else if ((flags & DX_PUMP_SPLICE) && dst && dst->is_socket && !src->is_socket &&
               fstat(src->fd, &st) == 0 && S_ISFIFO(st.st_mode)) {
        p->direct = 1; /* a pipe into a socket: splice between them, no buffer */
        rc = 0;
    } else if ((flags & DX_PUMP_SPLICE) && dst && src->is_socket && !dst->is_socket &&
               fstat(dst->fd, &st) == 0 && S_ISFIFO(st.st_mode)) {
        p->direct = 1; /* a socket into a pipe: the same */
        rc = 0;
    } else if ((flags & DX_PUMP_SPLICE) && !(flags & DX_PUMP_DISCARD)) {
        p->splice_later = 1; /* buffered until the data shows it is bulk */
    }
#endif
    if (rc < 0)
        rc = dx_buf_init(&p->buf, p->bufsize);
    if (rc < 0)
        return rc;
    p->loop = loop;
    p->src = src;
    p->dst = dst;
    p->flags = flags;
    p->cb = cb;
    p->data = data;
    p->last_activity = loop->now;
    src->loop = loop;
    src->reader = p;
    if (dst) {
        dst->loop = loop;
        dst->writer = p;
    }
    rc = endpoint_update(src);
    if (rc == 0 && dst)
        rc = endpoint_update(dst);
    if (rc < 0) {
        dx_pump_stop(p);
        return rc;
    }
    return 0;
}

void dx_endpoint_set_tls(dx_endpoint *e, dx_tls *t)
{
    e->tls = t;
    dx__tls_attach(t, &e->io);
}

int dx_endpoint_watch_pri(dx_loop *loop, dx_endpoint *e, void (*cb)(dx_endpoint *e))
{
    e->loop = loop;
    e->pri_cb = cb;
    if (!cb)
        endpoint_let_go(e);
    return endpoint_update(e);
}

/* The bucket has tokens again: watch the source (or, for sendfile, the
 * socket it writes) again. */
static void rate_wake(dx_loop *loop, dx_timer *t)
{
    (void)loop;
    dx_pump *p = t->data;
    endpoint_update(p->src);
    endpoint_update(p->dst);
}

int dx_pump_set_rate(dx_pump *p, uint64_t bytes_per_sec)
{
    dx__rate_stop(&p->rate, p->loop);
    dx__rate_init(&p->rate, bytes_per_sec, p->loop ? p->loop->now : 0, rate_wake, p);
    return 0;
}

void dx_pump_stop(dx_pump *p)
{
    if (!p->loop)
        return;
    p->done = 1;
    dx__rate_stop(&p->rate, p->loop);
    endpoint_let_go(p->src);
    endpoint_let_go(p->dst);
    if (p->src && p->src->reader == p) {
        p->src->reader = NULL;
        endpoint_update(p->src);
    }
    if (p->dst && p->dst->writer == p) {
        p->dst->writer = NULL;
        endpoint_update(p->dst);
    }
    dx_buf_free(&p->buf);
    close_pipe(p);
    p->loop = NULL;
}
