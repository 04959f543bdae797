/* test_callbacks.c: the library's callback rule (duplex.h, top): no
 * callback runs from inside a call the program made; what a call finds out
 * is reported from the loop; a callback may stop and free any object, which
 * then gets no callback. One test per public call that takes or triggers a
 * callback: the callback has not run when the call returns, and it runs
 * later from dx_loop_run(). Only API that predates the rule is used, so the
 * file also builds against the old library (to show the tests fail there). */
#define _GNU_SOURCE
#include "helpers.h"

#include <linux/sockios.h>
#include <sys/ioctl.h>

#define T(name) Test(callbacks, name, .timeout = 20, .init = cb_init)

static void cb_init(void)
{
    h_alarm(H_ALARM_SECONDS);
    signal(SIGPIPE, SIG_IGN);
}

/* Set while the test is inside a library call: a callback seeing it set
 * ran from inside that call. */
static int g_in_call;
static int g_inside; /* callbacks that ran inside a call */
static int g_calls;  /* callbacks that ran at all */

static void seen(void)
{
    g_calls++;
    if (g_in_call)
        g_inside++;
}

#define CALL(expr) (g_in_call = 1, (expr), g_in_call = 0)

/* Close a socket so that the peer gets a reset (RST), not a FIN. */
static void reset_close(int fd)
{
    struct linger lg = {1, 0};
    cr_assert_eq(setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg), 0);
    close(fd);
}

/* Wait until the reset has reached fd (POLLERR/POLLHUP), without the loop. */
static void wait_reset(int fd)
{
    int re = h_wait_fd(fd, POLLIN, 5000);
    cr_assert(re & (POLLERR | POLLHUP), "no reset seen (revents %#x)", re);
}

/* ---- dx_stream ---- */

struct sctx {
    dx_stream st;
    int error;   /* last error given to event_cb */
    int events;  /* event_cb calls */
    int reads;   /* read_cb calls */
    size_t got;
};

static void s_read(dx_stream *s, const char *data, size_t n)
{
    (void)data;
    struct sctx *x = s->data;
    seen();
    x->reads++;
    x->got += n;
}

static void s_event(dx_stream *s, int error)
{
    struct sctx *x = s->data;
    seen();
    x->events++;
    x->error = error;
    if (error < 0) {
        dx_loop_stop(s->loop);
        dx_stream_close(s);
    }
}

/* Writes until the socket is full and the rest waits in the stream's queue
 * (the peer does not read; the loop is not run). Returns what is queued. */
static size_t fill_socket(dx_stream *st)
{
    static char junk[256 * 1024];
    size_t queued = 0;
    for (int i = 0; i < 64 && queued == 0; i++) {
        cr_assert_eq(dx_stream_write(st, junk, sizeof junk), 0);
        queued = dx_stream_queued(st);
    }
    return queued;
}

T(stream_write_failure_reported_from_loop)
{
    dx_loop *loop = h_loop();
    int fds[2];
    h_tcp_pair(fds, 1);
    reset_close(fds[1]);
    wait_reset(fds[0]);
    struct sctx x = {0};
    g_in_call = g_inside = g_calls = 0;
    cr_assert_eq(dx_stream_init(loop, &x.st, fds[0], 0, s_read, s_event, &x), 0);
    int rc = 0;
    CALL(rc = dx_stream_write(&x.st, "hello", 5));
    cr_assert_eq(g_inside, 0, "event_cb ran inside dx_stream_write()");
    cr_assert_eq(x.events, 0);
    cr_assert_eq(rc, 0, "%s", dx_strerror(rc));
    /* the stream knows at once: a second write is refused, still no callback */
    CALL(rc = dx_stream_write(&x.st, "again", 5));
    cr_assert_eq(rc, -EPIPE, "%s", dx_strerror(rc));
    cr_assert_eq(x.events, 0);
    cr_assert_not(h_run_for(loop, 5000), "the failure was never reported");
    cr_assert_eq(x.events, 1);
    cr_assert(x.error == -ECONNRESET || x.error == -EPIPE, "%s", dx_strerror(x.error));
    close(fds[0]);
    dx_loop_free(loop);
}

/* A shutdown whose flush meets the reset. */
T(stream_shutdown_failure_reported_from_loop)
{
    dx_loop *loop = h_loop();
    int fds[2];
    h_tcp_pair(fds, 1);
    struct sctx x = {0};
    g_in_call = g_inside = g_calls = 0;
    cr_assert_eq(dx_stream_init(loop, &x.st, fds[0], 1 << 20, s_read, s_event, &x), 0);
    size_t queued = fill_socket(&x.st);
    cr_assert_gt(queued, 0, "the socket took everything");
    reset_close(fds[1]);
    wait_reset(fds[0]);
    CALL(dx_stream_shutdown(&x.st));
    cr_assert_eq(g_inside, 0, "event_cb ran inside dx_stream_shutdown()");
    cr_assert_eq(x.events, 0);
    cr_assert_not(h_run_for(loop, 5000), "the failure was never reported");
    cr_assert_eq(x.events, 1);
    cr_assert_lt(x.error, 0);
    close(fds[0]);
    dx_loop_free(loop);
}

/* ---- a write failure keeps what the peer sent before it went ---- */

struct dctx {
    struct sctx c;    /* first: s_event() takes the stream's data as one */
    char got[256 * 1024];
    size_t n;
    int eofs;         /* read_cb with n == 0 */
    int stop_reading; /* read_cb stops reading after its first bytes */
};

static void d_read(dx_stream *s, const char *data, size_t n)
{
    struct dctx *x = s->data;
    seen();
    if (n == 0) {
        x->eofs++;
        return;
    }
    cr_assert_leq(x->n + n, sizeof x->got, "more than the peer sent");
    memcpy(x->got + x->n, data, n);
    x->n += n;
    if (x->stop_reading)
        CALL(dx_stream_read_stop(s));
}

/* The stream reads and has a queue to write; the peer answers `answer`
 * bytes, which reach our socket (no longer in the peer's send queue), then
 * resets. Nothing has run the loop yet, so the answer is all in our socket
 * when the loop's first look at it finds the write failing. */
static void answer_then_reset(dx_loop *loop, struct dctx *x, int fds[2], const char *answer, size_t n)
{
    h_tcp_pair(fds, 1);
    int rcvbuf = 512 * 1024; /* room for the answer, unread */
    cr_assert_eq(setsockopt(fds[0], SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf), 0);
    cr_assert_eq(dx_stream_init(loop, &x->c.st, fds[0], 1 << 20, d_read, s_event, x), 0);
    cr_assert_eq(dx_stream_read_start(&x->c.st), 0);
    cr_assert_gt(fill_socket(&x->c.st), 0, "the socket took everything");
    h_write_all(fds[1], answer, n);
    int unsent = 1;
    for (int i = 0; i < 5000 && unsent > 0; i++) {
        cr_assert_eq(ioctl(fds[1], SIOCOUTQ, &unsent), 0);
        if (unsent > 0)
            h_sleep_ms(1);
    }
    cr_assert_eq(unsent, 0, "the answer did not reach our socket");
    reset_close(fds[1]);
    wait_reset(fds[0]);
}

/* A server that answers and resets (our request unread) while we still
 * write: the write fails first, and the answer must still be read. */
T(stream_write_failure_keeps_what_the_peer_sent_first)
{
    dx_loop *loop = h_loop();
    static char answer[160 * 1024];
    for (size_t i = 0; i < sizeof answer; i++)
        answer[i] = (char)(i * 13 + 1);
    struct dctx x;
    memset(&x, 0, sizeof x);
    int fds[2];
    g_in_call = g_inside = g_calls = 0;
    answer_then_reset(loop, &x, fds, answer, sizeof answer);
    cr_assert_not(h_run_for(loop, 5000), "the failure was never reported");
    cr_assert_eq(x.n, sizeof answer, "read %zu of the %zu bytes the peer sent first", x.n, sizeof answer);
    cr_assert_eq(memcmp(x.got, answer, sizeof answer), 0);
    cr_assert_eq(x.c.events, 1);
    cr_assert(x.c.error == -ECONNRESET || x.c.error == -EPIPE, "%s", dx_strerror(x.c.error));
    cr_assert_eq(x.eofs, 0, "the end of input was reported besides the failure");
    cr_assert_eq(g_inside, 0);
    close(fds[0]);
    dx_loop_free(loop);
}

/* The same, but the program stops reading after the first bytes: the
 * failure held for the reads is reported then, from the loop. */
T(stream_held_write_failure_reported_when_reading_stops)
{
    dx_loop *loop = h_loop();
    static char answer[160 * 1024]; /* more than one read (64 KiB) */
    memset(answer, 'a', sizeof answer);
    struct dctx x;
    memset(&x, 0, sizeof x);
    x.stop_reading = 1;
    int fds[2];
    g_in_call = g_inside = g_calls = 0;
    answer_then_reset(loop, &x, fds, answer, sizeof answer);
    cr_assert_not(h_run_for(loop, 5000), "the failure was never reported after dx_stream_read_stop()");
    cr_assert_gt(x.n, 0);
    cr_assert_lt(x.n, sizeof answer, "one read, then reading stopped");
    cr_assert_eq(x.c.events, 1);
    cr_assert(x.c.error == -ECONNRESET || x.c.error == -EPIPE, "%s", dx_strerror(x.c.error));
    cr_assert_eq(g_inside, 0, "event_cb ran inside dx_stream_read_stop()");
    close(fds[0]);
    dx_loop_free(loop);
}

/* A shutdown that has to wait for the queue: its event comes from the loop. */
T(stream_shutdown_done_reported_from_loop)
{
    dx_loop *loop = h_loop();
    int fds[2];
    h_tcp_pair(fds, 1);
    struct sctx x = {0};
    g_in_call = g_inside = g_calls = 0;
    cr_assert_eq(dx_stream_init(loop, &x.st, fds[0], 1 << 20, s_read, s_event, &x), 0);
    size_t queued = fill_socket(&x.st);
    cr_assert_gt(queued, 0);
    CALL(dx_stream_shutdown(&x.st));
    cr_assert_eq(g_calls, 0);
    cr_assert_not(x.st.shut_done);
    /* the peer reads: the queue drains from the loop, then the event */
    for (int i = 0; i < 2000 && !x.st.shut_done; i++) {
        h_drain_fd(fds[1], NULL);
        h_run_for(loop, 5);
    }
    cr_assert(x.st.shut_done);
    cr_assert_geq(x.events, 1);
    cr_assert_eq(g_inside, 0);
    cr_assert_eq(x.error, 0);
    dx_stream_close(&x.st);
    close(fds[0]);
    close(fds[1]);
    dx_loop_free(loop);
}

/* Data already waiting when reading starts is delivered from the loop. */
T(stream_read_start_with_data_waiting)
{
    dx_loop *loop = h_loop();
    int fds[2];
    h_socketpair(fds, 1);
    h_write_all(fds[1], "ready", 5);
    struct sctx x = {0};
    g_in_call = g_inside = g_calls = 0;
    cr_assert_eq(dx_stream_init(loop, &x.st, fds[0], 0, s_read, s_event, &x), 0);
    int rc = 0;
    CALL(rc = dx_stream_read_start(&x.st));
    cr_assert_eq(rc, 0);
    cr_assert_eq(g_calls, 0, "read_cb ran inside dx_stream_read_start()");
    for (int i = 0; i < 100 && x.got < 5; i++)
        h_run_for(loop, 50);
    cr_assert_eq(x.got, 5);
    cr_assert_eq(g_inside, 0);
    dx_stream_close(&x.st);
    close(fds[0]);
    close(fds[1]);
    dx_loop_free(loop);
}

/* A failure found by a call and then closed: nothing is ever reported. */
T(stream_close_forgets_a_failure_found)
{
    dx_loop *loop = h_loop();
    int fds[2];
    h_tcp_pair(fds, 1);
    reset_close(fds[1]);
    wait_reset(fds[0]);
    struct sctx *x = calloc(1, sizeof *x);
    g_in_call = g_inside = g_calls = 0;
    cr_assert_eq(dx_stream_init(loop, &x->st, fds[0], 0, s_read, s_event, x), 0);
    CALL(dx_stream_write(&x->st, "hello", 5));
    cr_assert_eq(g_calls, 0, "event_cb ran inside dx_stream_write()");
    dx_stream_close(&x->st);
    free(x); /* ASan: a later callback would read freed memory */
    h_run_for(loop, 100);
    cr_assert_eq(g_calls, 0);
    close(fds[0]);
    dx_loop_free(loop);
}

/* Two streams readable in the same round: the first callback closes and
 * frees the other one, which then gets no callback. */
struct pair {
    dx_loop *loop;
    struct sctx *s[2];
    int fds[2][2];
    int calls;
};

static struct pair g_pair;

static void p_read(dx_stream *s, const char *data, size_t n)
{
    (void)data;
    (void)n;
    g_pair.calls++;
    int me = g_pair.s[0] && s == &g_pair.s[0]->st ? 0 : 1;
    struct sctx *other = g_pair.s[!me];
    cr_assert_not_null(other, "the freed stream got a callback");
    dx_stream_close(&other->st);
    free(other);
    g_pair.s[!me] = NULL;
}

T(stream_closed_by_another_callback_gets_nothing)
{
    memset(&g_pair, 0, sizeof g_pair);
    g_pair.loop = h_loop();
    for (int i = 0; i < 2; i++) {
        h_socketpair(g_pair.fds[i], 1);
        g_pair.s[i] = calloc(1, sizeof *g_pair.s[i]);
        cr_assert_eq(dx_stream_init(g_pair.loop, &g_pair.s[i]->st, g_pair.fds[i][0], 0, p_read,
                                    s_event, g_pair.s[i]),
                     0);
        cr_assert_eq(dx_stream_read_start(&g_pair.s[i]->st), 0);
    }
    h_write_all(g_pair.fds[0][1], "a", 1);
    h_write_all(g_pair.fds[1][1], "b", 1);
    cr_assert(h_wait_fd(g_pair.fds[0][0], POLLIN, 1000) & POLLIN);
    cr_assert(h_wait_fd(g_pair.fds[1][0], POLLIN, 1000) & POLLIN);
    for (int i = 0; i < 5; i++)
        h_run_for(g_pair.loop, 20);
    cr_assert_eq(g_pair.calls, 1);
    for (int i = 0; i < 2; i++) {
        if (g_pair.s[i]) {
            dx_stream_close(&g_pair.s[i]->st);
            free(g_pair.s[i]);
        }
        close(g_pair.fds[i][0]);
        close(g_pair.fds[i][1]);
    }
    dx_loop_free(g_pair.loop);
}

/* ---- fd watchers ---- */

/* A callback stops another watcher, closes its fd and watches a new fd
 * that got the same number: the new watcher must not get the old one's
 * event of this round (its fd has nothing to read). */
struct reuse {
    dx_io io[2], fresh;
    int fds[2][2];
    int fresh_pipe[2];
    int first, fresh_calls;
};

static void fresh_cb(dx_loop *loop, dx_io *io, int events)
{
    (void)loop;
    (void)events;
    struct reuse *r = io->data;
    char c;
    if (read(io->fd, &c, 1) < 0 && errno == EAGAIN)
        r->fresh_calls++; /* an event for an fd that has nothing */
}

static void reuse_cb(dx_loop *loop, dx_io *io, int events)
{
    (void)events;
    struct reuse *r = io->data;
    if (r->first)
        return;
    r->first = 1;
    int me = io == &r->io[0] ? 0 : 1;
    int other = !me;
    int fd = r->io[other].fd;
    dx_io_stop(loop, &r->io[other]);
    close(fd);
    /* a new, empty pipe end takes the number */
    cr_assert_eq(dup2(r->fresh_pipe[0], fd), fd);
    dx_io_init(&r->fresh, fd, fresh_cb, r);
    cr_assert_eq(dx_io_set(loop, &r->fresh, DX_READ), 0);
    dx_io_stop(loop, &r->io[me]);
}

T(io_event_not_passed_to_a_reused_fd)
{
    dx_loop *loop = h_loop();
    struct reuse r;
    memset(&r, 0, sizeof r);
    h_pipe(r.fresh_pipe, 1);
    for (int i = 0; i < 2; i++) {
        h_pipe(r.fds[i], 1);
        h_write_all(r.fds[i][1], "x", 1);
        dx_io_init(&r.io[i], r.fds[i][0], reuse_cb, &r);
        cr_assert_eq(dx_io_set(loop, &r.io[i], DX_READ), 0);
    }
    for (int i = 0; i < 5; i++)
        h_run_for(loop, 20);
    cr_assert(r.first);
    cr_assert_eq(r.fresh_calls, 0, "the new watcher got the closed fd's event");
    dx_io_stop(loop, &r.fresh);
    for (int i = 0; i < 2; i++) {
        close(r.fds[i][0]);
        close(r.fds[i][1]);
    }
    close(r.fresh_pipe[0]);
    close(r.fresh_pipe[1]);
    dx_loop_free(loop);
}

static void io_seen(dx_loop *loop, dx_io *io, int events)
{
    (void)events;
    seen();
    dx_io_stop(loop, io);
}

T(io_set_on_a_ready_fd)
{
    dx_loop *loop = h_loop();
    int fds[2];
    h_pipe(fds, 1);
    h_write_all(fds[1], "x", 1);
    g_in_call = g_inside = g_calls = 0;
    dx_io io;
    dx_io_init(&io, fds[0], io_seen, NULL);
    int rc = 0;
    CALL(rc = dx_io_set(loop, &io, DX_READ));
    cr_assert_eq(rc, 0);
    cr_assert_eq(g_calls, 0);
    h_run_for(loop, 1000);
    cr_assert_eq(g_calls, 1);
    cr_assert_eq(g_inside, 0);
    close(fds[0]);
    close(fds[1]);
    dx_loop_free(loop);
}

/* A regular file is always ready: still offered from the loop only. */
T(io_set_on_a_regular_file)
{
    dx_loop *loop = h_loop();
    FILE *f = tmpfile();
    cr_assert_not_null(f);
    g_in_call = g_inside = g_calls = 0;
    dx_io io;
    dx_io_init(&io, fileno(f), io_seen, NULL);
    int rc = 0;
    CALL(rc = dx_io_set(loop, &io, DX_READ));
    cr_assert_eq(rc, 0);
    cr_assert_eq(g_calls, 0);
    h_run_for(loop, 1000);
    cr_assert_eq(g_calls, 1);
    cr_assert_eq(g_inside, 0);
    fclose(f);
    dx_loop_free(loop);
}

/* ---- timers ---- */

static void timer_seen(dx_loop *loop, dx_timer *t)
{
    (void)loop;
    (void)t;
    seen();
}

T(timer_start_at_zero)
{
    dx_loop *loop = h_loop();
    g_in_call = g_inside = g_calls = 0;
    dx_timer t;
    dx_timer_init(&t, timer_seen, NULL);
    int rc = 0;
    CALL(rc = dx_timer_start(loop, &t, 0, 0));
    cr_assert_eq(rc, 0);
    cr_assert_eq(g_calls, 0);
    h_run(loop);
    cr_assert_eq(g_calls, 1);
    cr_assert_eq(g_inside, 0);
    dx_loop_free(loop);
}

/* ---- pumps ---- */

static void pump_seen(dx_pump *p, int error, int in_read)
{
    (void)in_read;
    seen();
    *(int *)p->data = error;
    dx_pump_stop(p);
}

/* A source already at its end: the done callback comes from the loop. */
T(pump_start_at_end_of_input)
{
    dx_loop *loop = h_loop();
    int in[2], out[2];
    h_pipe(in, 1);
    h_pipe(out, 1);
    close(in[1]);
    dx_endpoint src, dst;
    dx_endpoint_init(&src, in[0]);
    dx_endpoint_init(&dst, out[1]);
    dx_pump p;
    int error = 1;
    g_in_call = g_inside = g_calls = 0;
    int rc = 0;
    CALL(rc = dx_pump_start(loop, &p, &src, &dst, 0, 0, pump_seen, &error));
    cr_assert_eq(rc, 0);
    cr_assert_eq(g_calls, 0, "done ran inside dx_pump_start()");
    h_run(loop);
    cr_assert_eq(g_calls, 1);
    cr_assert_eq(g_inside, 0);
    cr_assert_eq(error, 0);
    close(in[0]);
    close(out[0]);
    close(out[1]);
    dx_loop_free(loop);
}

/* A destination already reset: the failure comes from the loop. */
T(pump_start_towards_a_reset_peer)
{
    dx_loop *loop = h_loop();
    int in[2], fds[2];
    h_pipe(in, 1);
    h_write_all(in[1], "data", 4);
    h_tcp_pair(fds, 1);
    reset_close(fds[1]);
    wait_reset(fds[0]);
    dx_endpoint src, dst;
    dx_endpoint_init(&src, in[0]);
    dx_endpoint_init(&dst, fds[0]);
    dx_pump p;
    int error = 1;
    g_in_call = g_inside = g_calls = 0;
    int rc = 0;
    CALL(rc = dx_pump_start(loop, &p, &src, &dst, 0, DX_PUMP_SHUTDOWN, pump_seen, &error));
    cr_assert_eq(rc, 0);
    cr_assert_eq(g_calls, 0);
    h_run(loop);
    cr_assert_eq(g_calls, 1);
    cr_assert_eq(g_inside, 0);
    cr_assert_lt(error, 0);
    close(in[0]);
    close(in[1]);
    close(fds[0]);
    dx_loop_free(loop);
}

/* ---- connector ---- */

struct cctx {
    dx_connector *c;
    int calls, final, result;
    int cancel_and_free; /* in the first (non-final) callback */
};

static void c_cb(dx_connector *c, int result, const dx_addr *addr, int final)
{
    (void)addr;
    struct cctx *x = c->data;
    seen();
    x->calls++;
    x->final = final;
    x->result = result;
    if (x->cancel_and_free && !final) {
        dx_connect_cancel(c);
        free(c); /* ASan: the connector must not touch it on return */
        x->c = NULL;
    }
    if (final && result >= 0)
        close(result);
}

/* A Unix socket connects at once: the success still comes from the loop. */
T(connect_immediate_success)
{
    char dir[64], path[128];
    h_tmpdir(dir, sizeof dir);
    snprintf(path, sizeof path, "%s/s", dir);
    dx_addr a;
    cr_assert_eq(dx_addr_unix(&a, path), 0);
    int lfd = dx_listen(&a, NULL);
    cr_assert_geq(lfd, 0, "%s", dx_strerror(lfd));
    dx_loop *loop = h_loop();
    struct cctx x = {0};
    dx_connector c;
    g_in_call = g_inside = g_calls = 0;
    int rc = 0;
    CALL(rc = dx_connect_async(loop, &c, &a, 1, NULL, 1000, c_cb, &x));
    cr_assert_eq(rc, 0);
    cr_assert_eq(g_calls, 0);
    h_run(loop);
    cr_assert_eq(x.calls, 1);
    cr_assert(x.final);
    cr_assert_geq(x.result, 0, "%s", dx_strerror(x.result));
    cr_assert_eq(g_inside, 0);
    close(lfd);
    unlink(path);
    rmdir(dir);
    dx_loop_free(loop);
}

/* A failure callback that cancels and frees the connector. */
T(connect_cancel_and_free_in_failure_callback)
{
    dx_addr addrs[2] = {h_addr4(h_closed_port()), h_addr4(h_closed_port())};
    dx_loop *loop = h_loop();
    struct cctx x = {.cancel_and_free = 1};
    x.c = malloc(sizeof *x.c);
    g_in_call = g_inside = g_calls = 0;
    int rc = 0;
    CALL(rc = dx_connect_async(loop, x.c, addrs, 2, NULL, 1000, c_cb, &x));
    cr_assert_eq(rc, 0);
    cr_assert_eq(g_calls, 0);
    h_run(loop);
    cr_assert_eq(x.calls, 1, "the connector went on after its cancel");
    cr_assert_eq(x.result, -ECONNREFUSED, "%s", dx_strerror(x.result));
    cr_assert_null(x.c);
    dx_loop_free(loop);
}

/* The same with an address that fails at once (a deferred report). */
T(connect_cancel_and_free_in_deferred_failure_callback)
{
    char dir[64], path[128];
    h_tmpdir(dir, sizeof dir);
    snprintf(path, sizeof path, "%s/nothing", dir);
    dx_addr addrs[2];
    cr_assert_eq(dx_addr_unix(&addrs[0], path), 0);
    addrs[1] = h_addr4(h_closed_port());
    dx_loop *loop = h_loop();
    struct cctx x = {.cancel_and_free = 1};
    x.c = malloc(sizeof *x.c);
    g_in_call = g_inside = g_calls = 0;
    int rc = 0;
    CALL(rc = dx_connect_async(loop, x.c, addrs, 2, NULL, 1000, c_cb, &x));
    cr_assert_eq(rc, 0);
    cr_assert_eq(g_calls, 0);
    h_run(loop);
    cr_assert_eq(x.calls, 1);
    cr_assert_eq(x.result, -ENOENT, "%s", dx_strerror(x.result));
    rmdir(dir);
    dx_loop_free(loop);
}

/* ---- freeing an object in its own callback (ASan sees a use after) ---- */

static void s_event_free(dx_stream *s, int error)
{
    struct sctx *x = s->data;
    seen();
    cr_assert_lt(error, 0);
    dx_stream_close(s);
    free(x); /* the library must not touch the stream after this returns */
}

/* A write that meets a reset: the failure comes one loop turn later, and
 * the event callback frees the stream. */
T(stream_freed_in_its_deferred_failure_callback)
{
    dx_loop *loop = h_loop();
    int fds[2];
    h_tcp_pair(fds, 1);
    reset_close(fds[1]);
    wait_reset(fds[0]);
    struct sctx *x = calloc(1, sizeof *x);
    g_in_call = g_inside = g_calls = 0;
    cr_assert_eq(dx_stream_init(loop, &x->st, fds[0], 0, s_read, s_event_free, x), 0);
    cr_assert_eq(dx_stream_read_start(&x->st), 0);
    int rc = 0;
    CALL(rc = dx_stream_write(&x->st, "hello", 5));
    cr_assert_eq(rc, 0);
    cr_assert_eq(g_calls, 0, "event_cb ran inside dx_stream_write()");
    h_run(loop);
    cr_assert_eq(g_calls, 1);
    cr_assert_eq(g_inside, 0);
    close(fds[0]);
    dx_loop_free(loop);
}

/* A pump, its endpoints in the same allocation, freed by its done callback. */
struct pumped {
    dx_pump p;
    dx_endpoint src, dst;
};

static void pump_free(dx_pump *p, int error, int in_read)
{
    (void)error;
    (void)in_read;
    seen();
    dx_pump_stop(p);
    free(p->data);
}

T(pump_freed_in_its_callback)
{
    dx_loop *loop = h_loop();
    int in[2], fds[2];
    h_pipe(in, 1);
    h_write_all(in[1], "data", 4);
    h_tcp_pair(fds, 1);
    reset_close(fds[1]);
    wait_reset(fds[0]);
    struct pumped *pd = calloc(1, sizeof *pd);
    dx_endpoint_init(&pd->src, in[0]);
    dx_endpoint_init(&pd->dst, fds[0]);
    g_in_call = g_inside = g_calls = 0;
    int rc = 0;
    CALL(rc = dx_pump_start(loop, &pd->p, &pd->src, &pd->dst, 0, 0, pump_free, pd));
    cr_assert_eq(rc, 0);
    cr_assert_eq(g_calls, 0);
    h_run(loop);
    cr_assert_eq(g_calls, 1);
    cr_assert_eq(g_inside, 0);
    close(in[0]);
    close(in[1]);
    close(fds[0]);
    dx_loop_free(loop);
}

/* A connector freed by its final callback, the only address failing at
 * once (a Unix path nobody listens on): reported one turn later. */
static void c_free(dx_connector *c, int result, const dx_addr *addr, int final)
{
    (void)addr;
    seen();
    cr_assert(final);
    *(int *)c->data = result;
    free(c);
}

T(connector_freed_in_its_final_callback)
{
    char dir[64], path[128];
    h_tmpdir(dir, sizeof dir);
    snprintf(path, sizeof path, "%s/nothing", dir);
    dx_addr a;
    cr_assert_eq(dx_addr_unix(&a, path), 0);
    dx_loop *loop = h_loop();
    dx_connector *c = malloc(sizeof *c);
    int result = 1;
    g_in_call = g_inside = g_calls = 0;
    int rc = 0;
    CALL(rc = dx_connect_async(loop, c, &a, 1, NULL, 1000, c_free, &result));
    cr_assert_eq(rc, 0);
    cr_assert_eq(g_calls, 0, "the failure was reported inside dx_connect_async()");
    h_run(loop);
    cr_assert_eq(g_calls, 1);
    cr_assert_eq(g_inside, 0);
    cr_assert_eq(result, -ENOENT, "%s", dx_strerror(result));
    rmdir(dir);
    dx_loop_free(loop);
}

/* A timer freed by its own callback. */
static void timer_free(dx_loop *loop, dx_timer *t)
{
    seen();
    dx_timer_stop(loop, t);
    free(t);
}

T(timer_freed_in_its_callback)
{
    dx_loop *loop = h_loop();
    dx_timer *t = malloc(sizeof *t);
    dx_timer_init(t, timer_free, NULL);
    g_in_call = g_inside = g_calls = 0;
    CALL(dx_timer_start(loop, t, 0, 5));
    cr_assert_eq(g_calls, 0);
    /* a repeating timer, restarted before its callback runs: the callback
     * stops it, then frees it */
    h_run_for(loop, 50);
    cr_assert_eq(g_calls, 1);
    cr_assert_eq(g_inside, 0);
    dx_loop_free(loop);
}

/* ---- urgent data: dx_endpoint_watch_pri() ---- */

static void pri_seen(dx_endpoint *e)
{
    char c;
    seen();
    cr_assert_eq(recv(e->fd, &c, 1, MSG_OOB), 1);
    cr_assert_eq(c, '!');
    dx_endpoint_watch_pri(e->loop, e, NULL);
}

/* Urgent data already waiting: the callback comes from the loop. */
T(endpoint_watch_pri_with_urgent_data_waiting)
{
    dx_loop *loop = h_loop();
    int fds[2];
    h_tcp_pair(fds, 1);
    cr_assert_eq(send(fds[1], "!", 1, MSG_OOB), 1);
    cr_assert(h_wait_fd(fds[0], POLLPRI, 5000) & POLLPRI);
    dx_endpoint e;
    dx_endpoint_init(&e, fds[0]);
    g_in_call = g_inside = g_calls = 0;
    int rc = 0;
    CALL(rc = dx_endpoint_watch_pri(loop, &e, pri_seen));
    cr_assert_eq(rc, 0, "%s", dx_strerror(rc));
    cr_assert_eq(g_calls, 0, "the DX_PRI callback ran inside dx_endpoint_watch_pri()");
    h_run(loop);
    cr_assert_eq(g_calls, 1);
    cr_assert_eq(g_inside, 0);
    close(fds[0]);
    close(fds[1]);
    dx_loop_free(loop);
}

/* The DX_PRI callback lets everything go: it stops the pump on its
 * endpoint and its own watch, then frees the pump and both endpoints
 * (guarded memory: a touch afterwards crashes, with or without ASan). */
struct pri_owner {
    dx_endpoint *src, *dst;
    dx_pump *pump;
};

static void pri_frees_all(dx_endpoint *e)
{
    struct pri_owner *o = e->data;
    char c;
    seen();
    cr_assert_eq(recv(e->fd, &c, 1, MSG_OOB), 1);
    dx_pump_stop(o->pump);
    dx_endpoint_watch_pri(e->loop, e, NULL);
    h_guarded_free(o->pump, sizeof *o->pump);
    h_guarded_free(o->src, sizeof *o->src);
    h_guarded_free(o->dst, sizeof *o->dst);
    o->src = o->dst = NULL;
    o->pump = NULL;
}

static void pump_unexpected(dx_pump *p, int err, int in_read)
{
    (void)p, (void)in_read;
    cr_assert(0, "the pump's callback ran (%s) after it was stopped", dx_strerror(err));
}

T(endpoint_pri_callback_may_free_the_endpoint_and_its_pump)
{
    dx_loop *loop = h_loop();
    int fds[2], out[2];
    h_tcp_pair(fds, 1);
    h_socketpair(out, 1);
    struct pri_owner o = {h_guarded_new(sizeof(dx_endpoint)), h_guarded_new(sizeof(dx_endpoint)),
                          h_guarded_new(sizeof(dx_pump))};
    dx_endpoint_init(o.src, fds[0]);
    dx_endpoint_init(o.dst, out[0]);
    o.src->data = &o;
    cr_assert_eq(dx_pump_start(loop, o.pump, o.src, o.dst, 4096, 0, pump_unexpected, NULL), 0);
    cr_assert_eq(dx_endpoint_watch_pri(loop, o.src, pri_frees_all), 0);
    cr_assert_eq(send(fds[1], "data", 4, 0), 4);
    cr_assert_eq(send(fds[1], "!", 1, MSG_OOB), 1);
    cr_assert(h_wait_fd(fds[0], POLLPRI, 5000) & POLLPRI);
    g_in_call = g_inside = g_calls = 0;
    h_run(loop);
    cr_assert_eq(g_calls, 1);
    cr_assert_null(o.src, "the DX_PRI callback did not run to its end");
    close(fds[0]);
    close(fds[1]);
    close(out[0]);
    close(out[1]);
    dx_loop_free(loop);
}
