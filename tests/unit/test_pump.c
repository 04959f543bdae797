/* test_pump.c: one-way pumps, backpressure, half-close, errors, full duplex. */
#define _GNU_SOURCE
#include "helpers.h"

#include <sys/ioctl.h>
#include <sys/resource.h>

#define T(name) Test(pump, name, .timeout = 30, .init = pump_init)

static void pump_init(void) { h_alarm(25); }

/* Flags added to every pump of the tests defined with TT(): each such test
 * runs once with the buffered copy (suite pump) and once with splice(2)
 * (suite pump_splice). */
static int g_extra;

#define TT(name)                                                                                   \
    static void name##_body(void);                                                                 \
    Test(pump, name, .timeout = 30, .init = pump_init)                                             \
    {                                                                                              \
        g_extra = 0;                                                                               \
        name##_body();                                                                             \
    }                                                                                              \
    Test(pump_splice, name, .timeout = 30, .init = pump_init)                                      \
    {                                                                                              \
        g_extra = DX_PUMP_SPLICE;                                                                  \
        name##_body();                                                                             \
    }                                                                                              \
    static void name##_body(void)

struct done {
    int calls;
    int error, in_read;
    int stop_loop; /* dx_loop_stop() from the callback */
};

static void done_cb(dx_pump *p, int error, int in_read)
{
    struct done *d = p->data;
    cr_assert(p->done, "done is set before the callback");
    d->calls++;
    d->error = error;
    d->in_read = in_read;
    if (d->stop_loop)
        dx_loop_stop(p->loop);
}

static int pending_bytes(int fd)
{
    int n = -1;
    cr_assert_eq(ioctl(fd, FIONREAD, &n), 0);
    return n;
}

/* ---- a test-side feeder and collector driven by the same loop ---- */

struct feeder { /* writes data[0..len) into fd, then closes or shuts it */
    dx_io io;
    const unsigned char *data;
    size_t len, off;
    int close_at_end; /* 1: close(fd), 2: shutdown(fd, SHUT_WR) */
};

static void feeder_cb(dx_loop *loop, dx_io *io, int events)
{
    (void)events;
    struct feeder *f = io->data;
    while (f->off < f->len) {
        size_t n = f->len - f->off;
        if (n > 32768)
            n = 32768;
        ssize_t k = write(io->fd, f->data + f->off, n);
        if (k < 0) {
            cr_assert(errno == EAGAIN, "feeder write: %s", strerror(errno));
            return;
        }
        f->off += (size_t)k;
    }
    dx_io_stop(loop, io);
    if (f->close_at_end == 1)
        close(io->fd);
    else if (f->close_at_end == 2)
        cr_assert_eq(shutdown(io->fd, SHUT_WR), 0);
}

struct collector { /* reads fd until EOF into a hash and a prefix copy */
    dx_io io;
    uint64_t hash;
    size_t got;
    unsigned char *copy;
    size_t copycap;
    size_t expect; /* stop once this many bytes arrived (0: at EOF only) */
    int eof;
    int stop_loop; /* and then stop the loop too */
};

static void collector_cb(dx_loop *loop, dx_io *io, int events)
{
    (void)events;
    struct collector *c = io->data;
    unsigned char buf[65536];
    for (int i = 0; i < 8; i++) {
        ssize_t k = read(io->fd, buf, sizeof buf);
        if (k < 0) {
            cr_assert(errno == EAGAIN, "collector read: %s", strerror(errno));
            return;
        }
        if (k == 0) {
            c->eof = 1;
            dx_io_stop(loop, io);
            return;
        }
        c->hash = h_fnv(c->hash, buf, (size_t)k);
        if (c->copy && c->got < c->copycap) {
            size_t m = c->copycap - c->got < (size_t)k ? c->copycap - c->got : (size_t)k;
            memcpy(c->copy + c->got, buf, m);
        }
        c->got += (size_t)k;
        if (c->expect && c->got >= c->expect) {
            dx_io_stop(loop, io);
            if (c->stop_loop)
                dx_loop_stop(loop);
            return;
        }
    }
}

static unsigned char *random_bytes(size_t n, uint64_t seed)
{
    unsigned char *p = malloc(n);
    cr_assert_not_null(p);
    for (size_t i = 0; i < n; i += 8) {
        uint64_t r = h_rand(&seed);
        memcpy(p + i, &r, n - i < 8 ? n - i : 8);
    }
    return p;
}

/* pipe -> pump -> socketpair -> pump -> pipe */
TT(pipe_socket_pipe)
{
    dx_loop *loop = h_loop();
    int in[2], sv[2], out[2];
    h_pipe(in, 1);
    h_socketpair(sv, 1);
    h_pipe(out, 1);
    size_t len = 1 << 20;
    unsigned char *data = random_bytes(len, 42);

    int nfds = h_count_fds();
    dx_endpoint e_in, e_s0, e_s1, e_out;
    dx_endpoint_init(&e_in, in[0]);
    dx_endpoint_init(&e_s0, sv[0]);
    dx_endpoint_init(&e_s1, sv[1]);
    dx_endpoint_init(&e_out, out[1]);
    cr_assert_eq(e_in.is_socket, 0);
    cr_assert_eq(e_s0.is_socket, 1);
    cr_assert_eq(e_out.is_socket, 0);

    struct done d1 = {0}, d2 = {0};
    dx_pump p1, p2;
    cr_assert_eq(dx_pump_start(loop, &p1, &e_in, &e_s0, 4096, DX_PUMP_SHUTDOWN | g_extra, done_cb, &d1), 0);
    cr_assert_eq(dx_pump_start(loop, &p2, &e_s1, &e_out, 0, DX_PUMP_SHUTDOWN | g_extra, done_cb, &d2), 0);

    struct feeder f = {.data = data, .len = len, .close_at_end = 1};
    dx_io_init(&f.io, in[1], feeder_cb, &f);
    cr_assert_eq(dx_io_set(loop, &f.io, DX_WRITE), 0);
    unsigned char *copy = malloc(len);
    struct collector c = {.hash = H_FNV_INIT, .copy = copy, .copycap = len, .expect = len};
    dx_io_init(&c.io, out[0], collector_cb, &c);
    cr_assert_eq(dx_io_set(loop, &c.io, DX_READ), 0);

    h_run(loop);
    cr_assert_eq(d1.calls, 1);
    cr_assert_eq(d1.error, 0, "%s", dx_strerror(d1.error));
    cr_assert_eq(d2.calls, 1);
    cr_assert_eq(d2.error, 0, "%s", dx_strerror(d2.error));
    cr_assert(p1.eof && p1.done);
    cr_assert_eq(p1.bytes_in, len);
    cr_assert_eq(p1.bytes_out, len);
    cr_assert_eq(p2.bytes_in, len);
    cr_assert_eq(p2.bytes_out, len);
    /* the second pump's dst is a pipe: it stays open, so no EOF yet */
    cr_assert_eq(c.got, len);
    cr_assert_eq(memcmp(copy, data, len), 0);
    cr_assert_not(c.eof);
    cr_assert_eq(read(out[0], copy, 1), -1, "nothing more than was sent");

    dx_pump_stop(&p1);
    dx_pump_stop(&p2);
    dx_pump_stop(&p2); /* twice is safe */
    cr_assert_eq(h_count_fds(), nfds - 1, "the pumps left descriptors open (the feeder closed one)");
    close(in[0]);
    close(sv[0]);
    close(sv[1]);
    close(out[0]);
    close(out[1]);
    free(copy);
    free(data);
    dx_loop_free(loop);
}

T(start_errors)
{
    dx_loop *loop = h_loop();
    int p[2], q[2];
    h_pipe(p, 1);
    h_pipe(q, 1);
    dx_endpoint a, b, c;
    dx_endpoint_init(&a, p[0]);
    dx_endpoint_init(&b, q[1]);
    dx_endpoint_init(&c, p[1]);
    struct done d = {0};
    dx_pump p1, p2;
    cr_assert_eq(dx_pump_start(loop, &p1, &a, NULL, 0, 0, done_cb, &d), -EINVAL);
    dx_pump_stop(&p1); /* safe on a pump that never started */
    cr_assert_eq(dx_pump_start(loop, &p1, &a, &b, 0, 0, done_cb, &d), 0);
    cr_assert_eq(dx_pump_start(loop, &p2, &a, &c, 0, 0, done_cb, &d), -EBUSY, "src has a reader");
    cr_assert_eq(dx_pump_start(loop, &p2, &c, &b, 0, 0, done_cb, &d), -EBUSY, "dst has a writer");
    dx_pump_stop(&p1);
    /* once stopped, the endpoints are free again */
    cr_assert_eq(dx_pump_start(loop, &p2, &a, &b, 0, 0, done_cb, &d), 0);
    dx_pump_stop(&p2);
    cr_assert_eq(dx_loop_run(loop), 0, "stopped pumps leave nothing to wait for");
    cr_assert_eq(d.calls, 0, "stopping does not call back");
    close(p[0]);
    close(p[1]);
    close(q[0]);
    close(q[1]);
    dx_loop_free(loop);
}

/* The destination is never read: once its socket buffers and the pump's
 * buffer are full, the pump stops reading and the source keeps its data. */
TT(backpressure)
{
    dx_loop *loop = h_loop();
    int in[2], sv[2];
    h_pipe(in, 1);
    h_socketpair(sv, 1);
    fcntl(in[1], F_SETPIPE_SZ, 1 << 20);
    int small = 8192;
    setsockopt(sv[0], SOL_SOCKET, SO_SNDBUF, &small, sizeof small);
    setsockopt(sv[1], SOL_SOCKET, SO_RCVBUF, &small, sizeof small);
    size_t fed = h_fill_fd(in[1]);
    cr_assert_gt(fed, 100000, "pipe holds %zu", fed);

    dx_endpoint src, dst;
    dx_endpoint_init(&src, in[0]);
    dx_endpoint_init(&dst, sv[0]);
    struct done d = {0};
    dx_pump p;
    const size_t bufsize = 4096;
    cr_assert_eq(dx_pump_start(loop, &p, &src, &dst, bufsize, g_extra, done_cb, &d), 0);
    cr_assert_eq(h_run_for(loop, 150), 1);
    cr_assert_eq(d.calls, 0);
    cr_assert_gt(p.bytes_in, 0);
    cr_assert_leq(p.bytes_in - p.bytes_out, bufsize, "buffered more than the buffer");
    cr_assert_lt(p.bytes_in, fed, "the pump read everything despite a stuck destination");
    int left = pending_bytes(in[0]);
    cr_assert_eq((uint64_t)left, fed - p.bytes_in, "source keeps the unread bytes");
    cr_assert_gt(left, 0);
    /* not spinning on: nothing more moves while the peer does not read */
    uint64_t before = p.bytes_in;
    struct timespec c0, c1;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &c0);
    cr_assert_eq(h_run_for(loop, 100), 1);
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &c1);
    cr_assert_eq(p.bytes_in, before, "the pump kept reading with a stuck destination");
    double cpu_ms = (double)(c1.tv_sec - c0.tv_sec) * 1e3 + (double)(c1.tv_nsec - c0.tv_nsec) / 1e6;
    cr_assert_lt(cpu_ms, 50.0, "the loop spun (%.1f ms CPU in 100 ms) instead of waiting", cpu_ms);
    /* the bytes written are exactly those waiting at the peer */
    size_t waiting = h_drain_fd(sv[1], NULL);
    cr_assert_eq(waiting, p.bytes_out);
    /* reading the peer lets the pump go on */
    for (int i = 0; i < 20 && p.bytes_in < fed; i++) {
        h_run_for(loop, 10);
        waiting += h_drain_fd(sv[1], NULL);
    }
    cr_assert_gt(p.bytes_in, before, "the pump resumes once the peer reads");
    dx_pump_stop(&p);
    close(in[0]);
    close(in[1]);
    close(sv[0]);
    close(sv[1]);
    dx_loop_free(loop);
}

/* Both pumps of one socket: src EOF with DX_PUMP_SHUTDOWN half-closes the
 * socket; the peer reads EOF and can still send the other way. */
TT(half_close)
{
    dx_loop *loop = h_loop();
    int in[2], out[2], t[2];
    h_pipe(in, 1);
    h_pipe(out, 1);
    h_tcp_pair(t, 1);
    dx_endpoint e_in, e_sock, e_out;
    dx_endpoint_init(&e_in, in[0]);
    dx_endpoint_init(&e_sock, t[0]);
    dx_endpoint_init(&e_out, out[1]);
    struct done d_up = {.stop_loop = 1}, d_down = {0};
    dx_pump up, down;
    cr_assert_eq(dx_pump_start(loop, &up, &e_in, &e_sock, 0, DX_PUMP_SHUTDOWN | g_extra, done_cb, &d_up), 0);
    cr_assert_eq(dx_pump_start(loop, &down, &e_sock, &e_out, 0, DX_PUMP_SHUTDOWN | g_extra, done_cb, &d_down),
                 0);
    cr_assert_eq(write(in[1], "hello", 5), 5);
    close(in[1]);
    h_run(loop); /* until up is done */
    cr_assert_eq(d_up.calls, 1);
    cr_assert_eq(d_up.error, 0, "%s", dx_strerror(d_up.error));
    cr_assert_eq(d_down.calls, 0);

    /* the peer reads the data then EOF */
    h_set_nonblock(t[1], 0);
    char buf[16];
    h_read_all(t[1], buf, 5);
    cr_assert_eq(memcmp(buf, "hello", 5), 0);
    cr_assert_eq(read(t[1], buf, sizeof buf), 0, "EOF after the half-close");

    /* the other direction still works */
    h_write_all(t[1], "world!", 6);
    cr_assert_eq(shutdown(t[1], SHUT_WR), 0);
    d_down.stop_loop = 1;
    h_run(loop);
    cr_assert_eq(d_down.calls, 1);
    cr_assert_eq(d_down.error, 0, "%s", dx_strerror(d_down.error));
    cr_assert_eq(down.bytes_out, 6);
    ssize_t n = read(out[0], buf, sizeof buf);
    cr_assert_eq(n, 6);
    cr_assert_eq(memcmp(buf, "world!", 6), 0);

    dx_pump_stop(&up);
    dx_pump_stop(&down);
    close(in[0]);
    close(out[0]);
    close(out[1]);
    close(t[0]);
    close(t[1]);
    dx_loop_free(loop);
}

/* Without DX_PUMP_SHUTDOWN the destination is left open. */
TT(no_shutdown_leaves_socket_open)
{
    dx_loop *loop = h_loop();
    int in[2], sv[2];
    h_pipe(in, 1);
    h_socketpair(sv, 1);
    dx_endpoint src, dst;
    dx_endpoint_init(&src, in[0]);
    dx_endpoint_init(&dst, sv[0]);
    struct done d = {0};
    dx_pump p;
    cr_assert_eq(dx_pump_start(loop, &p, &src, &dst, 0, g_extra, done_cb, &d), 0);
    cr_assert_eq(write(in[1], "abc", 3), 3);
    close(in[1]);
    h_run(loop);
    cr_assert_eq(d.calls, 1);
    cr_assert_eq(d.error, 0);
    char buf[8];
    cr_assert_eq(read(sv[1], buf, sizeof buf), 3);
    cr_assert_eq(read(sv[1], buf, sizeof buf), -1);
    cr_assert_eq(errno, EAGAIN, "no EOF without DX_PUMP_SHUTDOWN");
    dx_pump_stop(&p);
    close(in[0]);
    close(sv[0]);
    close(sv[1]);
    dx_loop_free(loop);
}

T(discard)
{
    dx_loop *loop = h_loop();
    int in[2];
    h_pipe(in, 1);
    size_t len = 300000;
    unsigned char *data = random_bytes(len, 7);
    dx_endpoint src;
    dx_endpoint_init(&src, in[0]);
    struct done d = {0};
    dx_pump p;
    cr_assert_eq(dx_pump_start(loop, &p, &src, NULL, 1000, DX_PUMP_DISCARD, done_cb, &d), 0);
    struct feeder f = {.data = data, .len = len, .close_at_end = 1};
    dx_io_init(&f.io, in[1], feeder_cb, &f);
    cr_assert_eq(dx_io_set(loop, &f.io, DX_WRITE), 0);
    h_run(loop);
    cr_assert_eq(d.calls, 1);
    cr_assert_eq(d.error, 0);
    cr_assert_eq(p.bytes_in, len);
    cr_assert_eq(p.bytes_out, len);
    dx_pump_stop(&p);
    close(in[0]);

    /* with a destination given, nothing is written to it */
    int sv[2];
    h_socketpair(sv, 1);
    h_pipe(in, 1);
    dx_endpoint dst;
    dx_endpoint_init(&src, in[0]);
    dx_endpoint_init(&dst, sv[0]);
    d = (struct done){0};
    cr_assert_eq(dx_pump_start(loop, &p, &src, &dst, 0, DX_PUMP_DISCARD | DX_PUMP_SHUTDOWN,
                               done_cb, &d),
                 0);
    cr_assert_eq(write(in[1], data, 50000), 50000);
    close(in[1]);
    h_run(loop);
    cr_assert_eq(d.calls, 1);
    cr_assert_eq(p.bytes_in, 50000);
    char buf[16];
    ssize_t n = read(sv[1], buf, sizeof buf);
    cr_assert_leq(n, 0, "discard wrote %zd bytes", n);
    dx_pump_stop(&p);
    close(in[0]);
    close(sv[0]);
    close(sv[1]);
    free(data);
    dx_loop_free(loop);
}

/* Writing to a socket whose peer has gone: error from writing, no SIGPIPE. */
static void write_error_case(int use_tcp)
{
    h_count_sigpipe();
    dx_loop *loop = h_loop();
    int in[2], s[2];
    h_pipe(in, 1);
    if (use_tcp)
        h_tcp_pair(s, 1);
    else
        h_socketpair(s, 1);
    close(s[1]);
    dx_endpoint src, dst;
    dx_endpoint_init(&src, in[0]);
    dx_endpoint_init(&dst, s[0]);
    struct done d = {0};
    dx_pump p;
    cr_assert_eq(dx_pump_start(loop, &p, &src, &dst, 0, DX_PUMP_SHUTDOWN | g_extra, done_cb, &d), 0);
    /* a TCP peer may take one write before answering with a reset */
    static char chunk[4096];
    for (int i = 0; i < 200 && d.calls == 0; i++) {
        ssize_t k = write(in[1], chunk, sizeof chunk);
        (void)k;
        h_run_for(loop, 5);
    }
    cr_assert_eq(d.calls, 1);
    cr_assert_lt(d.error, 0);
    cr_assert(d.error == -EPIPE || d.error == -ECONNRESET, "%d (%s)", d.error,
              dx_strerror(d.error));
    cr_assert_eq(d.in_read, 0, "the error came from writing");
    cr_assert(p.done);
    cr_assert_eq(h_run_for(loop, 20), 1, "a finished pump does not stop the loop");
    dx_pump_stop(&p);
    cr_assert_eq(dx_loop_run(loop), 0, "nothing left after stop");
    close(in[0]);
    close(in[1]);
    close(s[0]);
    dx_loop_free(loop);
    cr_assert_eq(h_sigpipe_count, 0, "SIGPIPE raised %d time(s)", (int)h_sigpipe_count);
}

TT(write_error_unix) { write_error_case(0); }
TT(write_error_tcp) { write_error_case(1); }

/* A reset connection as the source: error from reading. */
TT(read_error)
{
    dx_loop *loop = h_loop();
    int t[2], out[2];
    h_tcp_pair(t, 1);
    h_pipe(out, 1);
    dx_endpoint src, dst;
    dx_endpoint_init(&src, t[0]);
    dx_endpoint_init(&dst, out[1]);
    struct done d = {0};
    dx_pump p;
    cr_assert_eq(dx_pump_start(loop, &p, &src, &dst, 0, g_extra, done_cb, &d), 0);
    struct linger lg = {1, 0};
    cr_assert_eq(setsockopt(t[1], SOL_SOCKET, SO_LINGER, &lg, sizeof lg), 0);
    close(t[1]); /* RST */
    h_run(loop);
    cr_assert_eq(d.calls, 1);
    cr_assert_eq(d.error, -ECONNRESET, "%d (%s)", d.error, dx_strerror(d.error));
    cr_assert_eq(d.in_read, 1);
    dx_pump_stop(&p);
    close(t[0]);
    close(out[0]);
    close(out[1]);
    dx_loop_free(loop);
}

/* 8 MiB of random bytes each way through a two-pump link joining two
 * socketpairs: a0 <-> [a1 == pumps == b0] <-> b1. */
struct end {
    dx_io io;
    const unsigned char *out;
    size_t outlen, outoff;
    int shut;
    uint64_t hash;
    size_t got;
    int eof;
    uint64_t seed;
};

static void end_update(dx_loop *loop, struct end *e)
{
    int ev = (e->eof ? 0 : DX_READ) | (e->shut ? 0 : DX_WRITE);
    cr_assert_eq(dx_io_set(loop, &e->io, ev), 0);
}

static void end_cb(dx_loop *loop, dx_io *io, int events)
{
    struct end *e = io->data;
    if ((events & (DX_WRITE | DX_ERROR)) && !e->shut) {
        size_t n = e->outlen - e->outoff;
        size_t lim = 1 + (size_t)(h_rand(&e->seed) % 100000);
        if (n > lim)
            n = lim;
        ssize_t k = n ? send(io->fd, e->out + e->outoff, n, MSG_NOSIGNAL) : 0;
        if (k < 0)
            cr_assert_eq(errno, EAGAIN, "send: %s", strerror(errno));
        else
            e->outoff += (size_t)k;
        if (e->outoff == e->outlen) {
            cr_assert_eq(shutdown(io->fd, SHUT_WR), 0);
            e->shut = 1;
        }
    }
    if ((events & (DX_READ | DX_ERROR)) && !e->eof) {
        unsigned char buf[65536];
        ssize_t k = read(io->fd, buf, sizeof buf);
        if (k == 0) {
            e->eof = 1;
        } else if (k < 0) {
            cr_assert_eq(errno, EAGAIN, "read: %s", strerror(errno));
        } else {
            e->hash = h_fnv(e->hash, buf, (size_t)k);
            e->got += (size_t)k;
        }
    }
    end_update(loop, e);
}

TT(full_duplex_8mib)
{
    dx_loop *loop = h_loop();
    int a[2], b[2];
    h_socketpair(a, 1);
    h_socketpair(b, 1);
    const size_t len = 8u << 20;
    unsigned char *d1 = random_bytes(len, 1001), *d2 = random_bytes(len, 2002);
    uint64_t h1 = h_fnv(H_FNV_INIT, d1, len), h2 = h_fnv(H_FNV_INIT, d2, len);

    dx_endpoint ea, eb;
    dx_endpoint_init(&ea, a[1]);
    dx_endpoint_init(&eb, b[0]);
    struct done dab = {0}, dba = {0};
    dx_pump ab, ba;
    cr_assert_eq(dx_pump_start(loop, &ab, &ea, &eb, 16384, DX_PUMP_SHUTDOWN | g_extra, done_cb, &dab), 0);
    cr_assert_eq(dx_pump_start(loop, &ba, &eb, &ea, 0, DX_PUMP_SHUTDOWN | g_extra, done_cb, &dba), 0);

    struct end left = {.out = d1, .outlen = len, .hash = H_FNV_INIT, .seed = 5};
    struct end right = {.out = d2, .outlen = len, .hash = H_FNV_INIT, .seed = 6};
    dx_io_init(&left.io, a[0], end_cb, &left);
    dx_io_init(&right.io, b[1], end_cb, &right);
    end_update(loop, &left);
    end_update(loop, &right);
    h_run(loop);

    cr_assert_eq(dab.calls, 1);
    cr_assert_eq(dab.error, 0, "%s", dx_strerror(dab.error));
    cr_assert_eq(dba.calls, 1);
    cr_assert_eq(dba.error, 0, "%s", dx_strerror(dba.error));
    cr_assert_eq(ab.bytes_in, len);
    cr_assert_eq(ab.bytes_out, len);
    cr_assert_eq(ba.bytes_in, len);
    cr_assert_eq(ba.bytes_out, len);
    cr_assert(left.eof && right.eof);
    cr_assert_eq(right.got, len);
    cr_assert_eq(left.got, len);
    cr_assert_eq(right.hash, h1, "a->b bytes differ");
    cr_assert_eq(left.hash, h2, "b->a bytes differ");

    dx_pump_stop(&ab);
    dx_pump_stop(&ba);
    close(a[0]);
    close(a[1]);
    close(b[0]);
    close(b[1]);
    free(d1);
    free(d2);
    dx_loop_free(loop);
}

/* The owner tears a connection down from a pump callback: it stops both
 * pumps, after which nothing of the library refers to the endpoints, and
 * reuses/frees their memory. The library must not touch it afterwards. */
/* through a volatile pointer so the compiler keeps the store before free() */
static void *(*volatile scribble)(void *, int, size_t) = memset;

struct conn {
    dx_endpoint sock, out, in;
    dx_pump up, down;
    int fds[4];
    int *calls;
};

static void teardown_cb(dx_pump *p, int error, int in_read)
{
    (void)error;
    (void)in_read;
    struct conn *c = p->data;
    (*c->calls)++;
    dx_pump_stop(&c->up);
    dx_pump_stop(&c->down);
    for (int i = 0; i < 4; i++)
        close(c->fds[i]);
    /* the memory is the owner's again: scribble on it, then free it */
    scribble(c, 0xA5, sizeof *c);
    free(c);
}

TT(teardown_from_callback)
{
    dx_loop *loop = h_loop();
    int calls = 0;
    struct conn *c = calloc(1, sizeof *c);
    int sv[2], out[2], in[2];
    h_socketpair(sv, 1);
    h_pipe(out, 1);
    h_pipe(in, 1);
    c->fds[0] = sv[0];
    c->fds[1] = out[0];
    c->fds[2] = out[1];
    c->fds[3] = in[0];
    c->calls = &calls;
    dx_endpoint_init(&c->sock, sv[0]);
    dx_endpoint_init(&c->out, out[1]);
    dx_endpoint_init(&c->in, in[0]);
    /* sock is read by `down` and written by `up` */
    cr_assert_eq(dx_pump_start(loop, &c->down, &c->sock, &c->out, 0, g_extra, teardown_cb, c), 0);
    cr_assert_eq(dx_pump_start(loop, &c->up, &c->in, &c->sock, 0, g_extra, teardown_cb, c), 0);
    close(sv[1]); /* the peer goes away: `down` reads EOF */
    h_run(loop);
    cr_assert_eq(calls, 1);
    close(in[1]);
    dx_loop_free(loop);
}

/* A filter that doubles every byte: the most a filter may write. */
static size_t double_filter(dx_pump *p, const char *in, size_t n, char *out)
{
    size_t *calls = p->filter_data;
    ++*calls;
    for (size_t i = 0; i < n; i++)
        out[2 * i] = out[2 * i + 1] = in[i];
    return 2 * n;
}

/* pipe -> filtering pump (small buffer: many rounds of backpressure) -> socket */
T(filter_doubles_every_byte_with_backpressure)
{
    dx_loop *loop = h_loop();
    int in[2], sv[2];
    h_pipe(in, 1);
    h_socketpair(sv, 1);
    size_t len = 300000;
    unsigned char *data = random_bytes(len, 7);
    dx_endpoint e_in, e_s0;
    dx_endpoint_init(&e_in, in[0]);
    dx_endpoint_init(&e_s0, sv[0]);
    struct done d = {0};
    dx_pump p;
    cr_assert_eq(dx_pump_start(loop, &p, &e_in, &e_s0, 5000, DX_PUMP_SHUTDOWN, done_cb, &d), 0);
    size_t calls = 0;
    p.filter = double_filter;
    p.filter_data = &calls;
    struct feeder f = {.data = data, .len = len, .close_at_end = 1};
    dx_io_init(&f.io, in[1], feeder_cb, &f);
    cr_assert_eq(dx_io_set(loop, &f.io, DX_WRITE), 0);
    unsigned char *copy = malloc(2 * len);
    struct collector c = {.hash = H_FNV_INIT, .copy = copy, .copycap = 2 * len};
    dx_io_init(&c.io, sv[1], collector_cb, &c);
    cr_assert_eq(dx_io_set(loop, &c.io, DX_READ), 0);

    h_run(loop);
    cr_assert_eq(d.calls, 1);
    cr_assert_eq(d.error, 0, "%s", dx_strerror(d.error));
    cr_assert(c.eof, "the shutdown at end of input reached the reader");
    cr_assert_eq(p.bytes_in, len);
    cr_assert_eq(p.bytes_out, 2 * len);
    cr_assert_eq(c.got, 2 * len);
    for (size_t i = 0; i < len; i++)
        cr_assert(copy[2 * i] == data[i] && copy[2 * i + 1] == data[i], "byte %zu", i);
    cr_assert_geq(calls, len / 2500, "reads never exceed half the 5000-byte buffer");
    dx_pump_stop(&p);
    close(in[0]);
    close(sv[0]);
    close(sv[1]);
    free(copy);
    free(data);
    dx_loop_free(loop);
}

/* Between two sockets (a relay), DX_PUMP_SPLICE copies small messages (a
 * splice through a pipe costs more than read+write for them) and takes a
 * pipe once a large read shows bulk data: no pipe after 100 small messages,
 * one after a megabyte; the bytes arrive exact either way. (A pipe at
 * either end is spliced directly, without a pipe of the pump's own.) */
T(splice_waits_for_bulk_data)
{
    dx_loop *loop = h_loop();
    int sv[2], out[2];
    h_socketpair(sv, 1);
    h_socketpair(out, 1);
    int nfds = h_count_fds();
    dx_endpoint e_s1, e_out;
    dx_endpoint_init(&e_s1, sv[1]);
    dx_endpoint_init(&e_out, out[1]);
    struct done d = {0};
    dx_pump p;
    cr_assert_eq(dx_pump_start(loop, &p, &e_s1, &e_out, 1 << 20, DX_PUMP_SPLICE, done_cb, &d), 0);
    unsigned char *copy = malloc(2 << 20);
    struct collector c = {.hash = H_FNV_INIT, .copy = copy, .copycap = 2 << 20, .stop_loop = 1};
    dx_io_init(&c.io, out[0], collector_cb, &c);
    unsigned char msg[100];
    for (int i = 0; i < 100; i++) {
        memset(msg, 'a' + i % 26, sizeof msg);
        h_write_all(sv[0], msg, sizeof msg);
        c.expect = (size_t)(i + 1) * sizeof msg;
        cr_assert_eq(dx_io_set(loop, &c.io, DX_READ), 0);
        cr_assert_not(h_run_for(loop, 5000), "message %d did not come through", i);
        cr_assert_eq(copy[i * sizeof msg], 'a' + i % 26);
    }
    cr_assert_eq(h_count_fds(), nfds, "a pipe was opened for small messages");
    size_t len = 1 << 20;
    unsigned char *data = random_bytes(len, 99);
    struct feeder f = {.data = data, .len = len};
    dx_io_init(&f.io, sv[0], feeder_cb, &f);
    cr_assert_eq(dx_io_set(loop, &f.io, DX_WRITE), 0);
    c.expect = 100 * sizeof msg + len;
    cr_assert_eq(dx_io_set(loop, &c.io, DX_READ), 0);
    cr_assert_not(h_run_for(loop, 10000), "the megabyte did not come through");
    cr_assert_eq(memcmp(copy + 100 * sizeof msg, data, len), 0);
    cr_assert_eq(h_count_fds(), nfds + 2, "bulk data did not switch to a splice pipe");
    cr_assert_eq(d.calls, 0);
    dx_pump_stop(&p);
    cr_assert_eq(h_count_fds(), nfds, "the pipe outlived the pump");
    close(sv[0]);
    close(sv[1]);
    close(out[0]);
    close(out[1]);
    free(copy);
    free(data);
    dx_loop_free(loop);
}

static double cpu_seconds(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
           (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

/* Pipe to socket with splice(2) straight between them: while the socket is
 * full and the pipe has bytes, the pump waits (no busy loop) and resumes
 * when the socket drains; every byte arrives, in order, then end of input. */
T(pipe_to_full_socket_waits_then_resumes)
{
    dx_loop *loop = h_loop();
    int in[2], sv[2];
    h_pipe(in, 1);
    h_socketpair(sv, 1);
    size_t len = 8 << 20;
    unsigned char *data = random_bytes(len, 7);
    dx_endpoint src, dst;
    dx_endpoint_init(&src, in[0]);
    dx_endpoint_init(&dst, sv[0]);
    struct done d = {0};
    dx_pump p;
    cr_assert_eq(dx_pump_start(loop, &p, &src, &dst, 0, DX_PUMP_SHUTDOWN | DX_PUMP_SPLICE, done_cb, &d), 0);
    struct feeder f = {.data = data, .len = len, .close_at_end = 1};
    dx_io_init(&f.io, in[1], feeder_cb, &f);
    cr_assert_eq(dx_io_set(loop, &f.io, DX_WRITE), 0);

    /* nobody reads the socket yet: it fills, then the pipe fills */
    double before = cpu_seconds();
    cr_assert_eq(h_run_for(loop, 300), 1);
    double used = cpu_seconds() - before;
    cr_assert_lt(f.off, len, "the socket and the pipe cannot hold 8 MiB");
    cr_assert_gt(pending_bytes(in[0]), 0, "bytes wait in the pipe");
    cr_assert_eq(d.calls, 0);
    cr_assert_lt(used, 0.15, "the pump spun while the socket was full (%.3f s CPU in 0.3 s)", used);

    unsigned char *copy = malloc(len);
    struct collector c = {.hash = H_FNV_INIT, .copy = copy, .copycap = len};
    dx_io_init(&c.io, sv[1], collector_cb, &c);
    cr_assert_eq(dx_io_set(loop, &c.io, DX_READ), 0);
    for (int i = 0; i < 1000 && !c.eof; i++)
        h_run_for(loop, 10);
    cr_assert(c.eof, "end of input passed on as shutdown");
    cr_assert_eq(c.got, len);
    cr_assert_eq(memcmp(copy, data, len), 0);
    cr_assert_eq(d.calls, 1);
    cr_assert_eq(d.error, 0, "%s", dx_strerror(d.error));
    cr_assert_eq(p.bytes_in, len);
    cr_assert_eq(p.bytes_out, len);
    dx_pump_stop(&p);
    close(in[0]);
    close(sv[0]);
    close(sv[1]);
    free(copy);
    free(data);
    dx_loop_free(loop);
}
