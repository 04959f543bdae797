/* fuzz_pump.c: two dx_pumps copying both ways between two socketpairs
 * through a dx_loop, under a sequence of operations taken from the input:
 * the harness writes into either side, reads from either side, shuts either
 * side's write direction, closes a reader, and runs single loop iterations.
 * Every byte must arrive once, in order; a pump must finish exactly once
 * (error 0 after a clean end of input); nothing may spin forever.
 *
 *   harness x0 <-> x1 [ex] --up-->   [ey] y0 <-> y1 harness
 *                        <--down--
 * One loop iteration = dx_loop_run with a zero-delay timer that stops it,
 * so each step is a non-blocking, deterministic poll of the socketpairs. */
#define _GNU_SOURCE
#include "duplex.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define CHECK(cond) do { if (!(cond)) abort(); } while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static dx_loop *loop;
static dx_timer tick;

static void on_tick(dx_loop *l, dx_timer *t)
{
    (void)t;
    dx_loop_stop(l);
}

static void step(void)
{
    dx_timer_start(loop, &tick, 0, 0);
    CHECK(dx_loop_run(loop) == 0);
}

struct dir {
    dx_pump pump;
    int in_fd, out_fd;       /* the harness writes in_fd, reads out_fd */
    uint64_t sent, recvd;    /* bytes of the stream written and read back */
    unsigned seed;
    uint64_t limit;          /* bytes the harness sends at most */
    int shut, out_closed, out_eof;
    int calls, error;
};

static unsigned char stream_byte(const struct dir *d, uint64_t i)
{
    return (unsigned char)(i * 131 + (i >> 8) + d->seed);
}

static void on_done(dx_pump *p, int error, int in_read)
{
    (void)in_read;
    struct dir *d = p->data;
    d->calls++;
    d->error = error;
}

static void dir_write(struct dir *d, size_t k)
{
    unsigned char buf[8192];
    if (d->shut || k == 0 || d->sent >= d->limit)
        return; /* bounded: small buffers move few bytes per loop iteration */
    if (k > sizeof buf)
        k = sizeof buf;
    for (size_t i = 0; i < k; i++)
        buf[i] = stream_byte(d, d->sent + i);
    ssize_t n = send(d->in_fd, buf, k, MSG_NOSIGNAL | MSG_DONTWAIT);
    CHECK(n > 0 || errno == EAGAIN || errno == EPIPE || errno == ECONNRESET);
    if (n > 0)
        d->sent += (uint64_t)n;
}

static void dir_read(struct dir *d, size_t k)
{
    unsigned char buf[8192];
    if (d->out_closed || d->out_eof)
        return;
    if (k == 0 || k > sizeof buf)
        k = sizeof buf;
    ssize_t n = recv(d->out_fd, buf, k, MSG_DONTWAIT);
    if (n == 0) {
        d->out_eof = 1; /* only after the pump shut its side down */
        CHECK(d->calls == 1 && d->error == 0 && (d->pump.flags & DX_PUMP_SHUTDOWN));
        return;
    }
    if (n < 0) {
        CHECK(errno == EAGAIN || errno == ECONNRESET);
        return;
    }
    for (ssize_t i = 0; i < n; i++)
        CHECK(buf[i] == stream_byte(d, d->recvd + (uint64_t)i));
    d->recvd += (uint64_t)n;
    CHECK(d->recvd <= d->sent);
}

static void dir_check(const struct dir *d, int spliced)
{
    const dx_pump *p = &d->pump;
    CHECK(d->calls <= 1);
    CHECK(p->bytes_out <= p->bytes_in && p->bytes_in <= d->sent);
    CHECK(d->recvd <= p->bytes_out);
    if (!spliced && !p->done)
        CHECK(p->bytes_in - p->bytes_out <= p->bufsize);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2 || size > 4096)
        return 0;
    if (!loop) {
        loop = dx_loop_new("poll", NULL); /* any backend would do; poll is cheap to set up */
        if (!loop)
            abort();
        dx_timer_init(&tick, on_tick, NULL);
    }
    int x[2], y[2];
    CHECK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, x) == 0);
    CHECK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, y) == 0);
    dx_endpoint ex, ey;
    dx_endpoint_init(&ex, x[1]);
    dx_endpoint_init(&ey, y[0]);

    int flags = DX_PUMP_SHUTDOWN * (data[0] & 1) | DX_PUMP_SPLICE * (data[0] >> 1 & 1);
    size_t bufsize = 1 + (size_t)data[1] * ((data[0] >> 2 & 7) + 1) * 4; /* 1..8161 */
    struct dir up = {.in_fd = x[0], .out_fd = y[1], .seed = data[0]};
    struct dir down = {.in_fd = y[1], .out_fd = x[0], .seed = data[1]};
    CHECK(dx_pump_start(loop, &up.pump, &ex, &ey, bufsize, flags, on_done, &up) == 0);
    CHECK(dx_pump_start(loop, &down.pump, &ey, &ex, bufsize, flags, on_done, &down) == 0);
    int spliced = up.pump.pipe_r >= 0;
    up.limit = down.limit = bufsize * 64 < 32768 ? bufsize * 64 : 32768;

    for (size_t i = 2; i + 1 < size; i += 2) {
        unsigned op = data[i], arg = data[i + 1];
        struct dir *d = op & 1 ? &down : &up;
        size_t k = (size_t)arg * ((op >> 4) + 1); /* 0..4080 */
        switch (op >> 1 & 7) {
        case 0: case 1: dir_write(d, k); break;
        case 2: case 3: dir_read(d, k); break;
        case 4: for (unsigned s = 0; s <= (arg & 3); s++) step(); break;
        case 5:
            if (!d->shut) {
                CHECK(shutdown(d->in_fd, SHUT_WR) == 0);
                d->shut = 1;
            }
            break;
        case 6: /* the reader goes away: only its pump's writes may fail */
            if ((arg & 0x1f) == 0 && !d->out_closed && !d->shut) {
                /* x0 and y1 are each one side's reader and the other's writer:
                 * stop writing there too */
                struct dir *other = d == &up ? &down : &up;
                if (!other->shut) {
                    CHECK(shutdown(d->out_fd, SHUT_RD) == 0);
                    d->out_closed = 1;
                }
            }
            break;
        default: step(); break;
        }
        dir_check(&up, spliced);
        dir_check(&down, spliced);
    }

    /* the end: both inputs end, everything sent must come out, both pumps finish */
    for (int i = 0; i < 2; i++) {
        struct dir *d = i ? &down : &up;
        if (!d->shut)
            CHECK(shutdown(d->in_fd, SHUT_WR) == 0);
        d->shut = 1;
    }
    int rounds = 0;
    while (up.calls == 0 || down.calls == 0 || (!up.out_closed && up.recvd < up.sent) ||
           (!down.out_closed && down.recvd < down.sent)) {
        /* a stall: data or an end that never comes (each iteration moves a byte at least) */
        CHECK(++rounds < 1000 + (int)(up.sent + down.sent));
        step();
        dir_read(&up, 0);
        dir_read(&down, 0);
        dir_check(&up, spliced);
        dir_check(&down, spliced);
    }
    for (int i = 0; i < 2; i++) {
        struct dir *d = i ? &down : &up;
        CHECK(d->calls == 1 && d->pump.done);
        if (!d->out_closed) {
            CHECK(d->error == 0 && d->recvd == d->sent);
            CHECK(d->pump.bytes_in == d->sent && d->pump.bytes_out == d->sent);
        } else {
            CHECK(d->error == 0 || d->error == -EPIPE || d->error == -ECONNRESET);
        }
    }
    dx_pump_stop(&up.pump);
    dx_pump_stop(&down.pump);
    dx_pump_stop(&up.pump); /* safe twice */
    close(x[0]);
    close(x[1]);
    close(y[0]);
    close(y[1]);
    return 0;
}
