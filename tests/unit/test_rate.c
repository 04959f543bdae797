/* test_rate.c: the rate limit's bucket (src/ratelimit.c) in streams and
 * pumps. Its timer is in the loop's heap while the bucket is empty: closing
 * a stream or stopping a pump must take it out, since the program may free
 * the object at once (the stream's stop at close was once lost in a merge).
 * The objects live in guarded memory: a timer left behind crashes the test. */
#define _GNU_SOURCE
#include "helpers.h"

#define T(name) Test(rate, name, .timeout = 20, .init = rate_init)

#define RATE 1000 /* bytes/s: a bucket of 1000 bytes (burst), empty after one read */

static void rate_init(void)
{
    h_alarm(H_ALARM_SECONDS);
    signal(SIGPIPE, SIG_IGN);
}

static int g_reads;

/* The first read empties the bucket (its timer armed); the stream is closed
 * and let go from the callback, as a program may. */
static void close_on_read(dx_stream *s, const char *data, size_t n)
{
    (void)data;
    cr_assert_gt(n, 0);
    cr_assert_leq(n, RATE, "read %zu bytes: more than the bucket holds", n);
    g_reads++;
    dx_stream_close(s);
    h_guarded_free(s, sizeof *s);
}

static void no_event(dx_stream *s, int error)
{
    (void)s;
    cr_assert(0, "the stream's event callback ran (%d) after its close", error);
}

T(stream_close_takes_its_bucket_timer_out)
{
    dx_loop *loop = h_loop();
    int fds[2];
    h_socketpair(fds, 1);
    char data[4 * RATE];
    memset(data, 'r', sizeof data);
    h_write_all(fds[1], data, sizeof data);
    dx_stream *s = h_guarded_new(sizeof *s);
    cr_assert_eq(dx_stream_init(loop, s, fds[0], 65536, close_on_read, no_event, NULL), 0);
    cr_assert_eq(dx_stream_set_rate(s, RATE, RATE), 0);
    cr_assert_eq(dx_stream_read_start(s), 0);
    g_reads = 0;
    /* past the refill the timer would have asked for (a quarter of a second) */
    cr_assert_eq(h_run_for(loop, 600), 1);
    cr_assert_eq(g_reads, 1);
    close(fds[0]);
    close(fds[1]);
    dx_loop_free(loop);
}

struct pump_owner {
    dx_pump *p;
    dx_endpoint *src, *dst;
    dx_timer check;
};

static void pump_unexpected(dx_pump *p, int err, int in_read)
{
    (void)p, (void)in_read;
    cr_assert(0, "the pump's callback ran (%s) after it was stopped", dx_strerror(err));
}

/* Once the first bucketful is through (the bucket empty, its timer armed),
 * stop the pump and let it go. */
static void stop_when_moved(dx_loop *loop, dx_timer *t)
{
    struct pump_owner *o = t->data;
    if (o->p->bytes_out < RATE)
        return;
    cr_assert_eq(o->p->bytes_out, RATE, "more than the bucket holds went through");
    dx_timer_stop(loop, t);
    dx_pump_stop(o->p);
    h_guarded_free(o->p, sizeof *o->p);
    h_guarded_free(o->src, sizeof *o->src);
    h_guarded_free(o->dst, sizeof *o->dst);
    o->p = NULL;
}

T(pump_stop_takes_its_bucket_timer_out)
{
    dx_loop *loop = h_loop();
    int in[2], out[2];
    h_socketpair(in, 1);
    h_socketpair(out, 1);
    char data[4 * RATE];
    memset(data, 'p', sizeof data);
    h_write_all(in[1], data, sizeof data);
    struct pump_owner o = {h_guarded_new(sizeof(dx_pump)), h_guarded_new(sizeof(dx_endpoint)),
                           h_guarded_new(sizeof(dx_endpoint)), {0}};
    dx_endpoint_init(o.src, in[0]);
    dx_endpoint_init(o.dst, out[0]);
    cr_assert_eq(dx_pump_start(loop, o.p, o.src, o.dst, 4096, 0, pump_unexpected, NULL), 0);
    cr_assert_eq(dx_pump_set_rate(o.p, RATE), 0);
    dx_timer_init(&o.check, stop_when_moved, &o);
    cr_assert_eq(dx_timer_start(loop, &o.check, 1, 1), 0);
    cr_assert_eq(h_run_for(loop, 600), 1);
    cr_assert_null(o.p, "the first %d bytes never went through", RATE);
    for (int i = 0; i < 2; i++) {
        close(in[i]);
        close(out[i]);
    }
    dx_loop_free(loop);
}
