/* test_loop.c: backend choice, fd watchers, timers, run/stop. */
#define _GNU_SOURCE
#include "helpers.h"

#define T(name) Test(loop, name, .timeout = 20, .init = loop_init)

static void loop_init(void) { h_alarm(H_ALARM_SECONDS); }

/* ---- creation and backends ---- */

T(each_backend)
{
    const char *const *names = dx_backends();
    cr_assert_not_null(names);
    int n = 0, have_poll = 0, have_epoll = 0;
    for (; names[n]; n++) {
        int err = 1;
        dx_loop *loop = dx_loop_new(names[n], &err);
        cr_assert_not_null(loop, "backend %s: %s", names[n], dx_strerror(err));
        cr_assert_str_eq(dx_loop_backend(loop), names[n]);
        /* an empty loop returns at once */
        cr_assert_eq(dx_loop_run(loop), 0);
        dx_loop_free(loop);
        have_poll |= strcmp(names[n], "poll") == 0;
        have_epoll |= strcmp(names[n], "epoll") == 0;
    }
    cr_assert_geq(n, 1);
    cr_assert(have_poll, "poll is always compiled in");
#ifdef __linux__
    cr_assert(have_epoll, "epoll is compiled in on Linux");
#endif
    dx_loop_free(NULL); /* harmless */
}

T(unknown_backend)
{
    int err = 0;
    cr_assert_null(dx_loop_new("no-such-backend", &err));
    cr_assert_eq(err, -ENOENT);
    cr_assert_null(dx_loop_new("EPOLL", NULL)); /* names are exact; NULL err is fine */
}

T(env_backend)
{
    const char *env = getenv("DUPLEX_BACKEND");
    dx_loop *loop = dx_loop_new(NULL, NULL);
    cr_assert_not_null(loop);
    if (env && *env)
        cr_assert_str_eq(dx_loop_backend(loop), env);
    dx_loop_free(loop);

    /* the variable decides a NULL or empty request, not an explicit one */
    const char *const *names = dx_backends();
    for (int i = 0; names[i]; i++) {
        setenv("DUPLEX_BACKEND", names[i], 1);
        loop = dx_loop_new(NULL, NULL);
        cr_assert_not_null(loop);
        cr_assert_str_eq(dx_loop_backend(loop), names[i]);
        dx_loop_free(loop);
        loop = dx_loop_new("", NULL);
        cr_assert_not_null(loop);
        cr_assert_str_eq(dx_loop_backend(loop), names[i]);
        dx_loop_free(loop);
        loop = dx_loop_new("poll", NULL);
        cr_assert_str_eq(dx_loop_backend(loop), "poll");
        dx_loop_free(loop);
    }
    setenv("DUPLEX_BACKEND", "bogus", 1);
    int err = 0;
    cr_assert_null(dx_loop_new(NULL, &err));
    cr_assert_eq(err, -ENOENT);
    unsetenv("DUPLEX_BACKEND");
    loop = dx_loop_new(NULL, NULL);
    cr_assert_not_null(loop);
#ifdef __linux__
    cr_assert_str_eq(dx_loop_backend(loop), "epoll", "the best backend on Linux");
#endif
    dx_loop_free(loop);
    if (env)
        setenv("DUPLEX_BACKEND", env, 1);
}

T(run_empty_returns)
{
    dx_loop *loop = h_loop();
    uint64_t t0 = h_now_ms();
    cr_assert_eq(dx_loop_run(loop), 0);
    cr_assert_lt(h_now_ms() - t0, 1000);
    dx_loop_free(loop);
}

T(now_advances)
{
    dx_loop *loop = h_loop();
    uint64_t a = dx_loop_now(loop);
    h_sleep_ms(30);
    cr_assert_eq(dx_loop_now(loop), a, "cached until updated");
    dx_loop_update_time(loop);
    cr_assert_geq(dx_loop_now(loop) - a, 29);
    dx_loop_free(loop);
}

/* ---- fd watchers ---- */

struct rec {
    int calls;
    int events[64];
    int stop_after;
    char got[64];
    size_t ngot;
};

static void record(struct rec *r, int events)
{
    if (r->calls < 64)
        r->events[r->calls] = events;
    r->calls++;
}

static void read_one_cb(dx_loop *loop, dx_io *io, int events)
{
    struct rec *r = io->data;
    record(r, events);
    char c;
    ssize_t n = read(io->fd, &c, 1);
    if (n == 1 && r->ngot < sizeof r->got)
        r->got[r->ngot++] = c;
    if (n <= 0 || r->calls >= r->stop_after)
        dx_io_stop(loop, io);
}

static void write_byte_cb(dx_loop *loop, dx_timer *t)
{
    (void)loop;
    int fd = *(int *)t->data;
    cr_assert_eq(write(fd, "k", 1), 1);
}

T(io_read_readiness)
{
    dx_loop *loop = h_loop();
    int p[2];
    h_pipe(p, 1);
    struct rec r = {.stop_after = 1};
    dx_io io;
    dx_io_init(&io, p[0], read_one_cb, &r);
    cr_assert_eq(io.fd, p[0]);
    cr_assert_eq(dx_io_set(loop, &io, DX_READ), 0);
    cr_assert_eq(io.events, DX_READ);
    /* nothing to read: after 30 ms the callback has not run */
    cr_assert_eq(h_run_for(loop, 30), 1);
    cr_assert_eq(r.calls, 0);
    /* a byte written later wakes it */
    dx_timer t;
    dx_timer_init(&t, write_byte_cb, &p[1]);
    cr_assert_eq(dx_timer_start(loop, &t, 10, 0), 0);
    h_run(loop); /* ends once the watcher and the timer are done */
    cr_assert_eq(r.calls, 1);
    cr_assert(r.events[0] & DX_READ);
    cr_assert_not(r.events[0] & DX_WRITE);
    cr_assert_eq(r.ngot, 1);
    cr_assert_eq(r.got[0], 'k');
    cr_assert_eq(io.events, 0);
    close(p[0]);
    close(p[1]);
    dx_loop_free(loop);
}

T(io_hangup_reported_with_read)
{
    dx_loop *loop = h_loop();
    int p[2];
    h_pipe(p, 1);
    struct rec r = {.stop_after = 10};
    dx_io io;
    dx_io_init(&io, p[0], read_one_cb, &r);
    cr_assert_eq(dx_io_set(loop, &io, DX_READ), 0);
    close(p[1]);
    h_run(loop);
    cr_assert_eq(r.calls, 1, "read() gives EOF at once, the callback stops the watcher");
    cr_assert(r.events[0] & DX_READ, "a hang-up comes with the requested bits (got %d)",
              r.events[0]);
    close(p[0]);
    dx_loop_free(loop);
}

static void write_cb(dx_loop *loop, dx_io *io, int events)
{
    struct rec *r = io->data;
    record(r, events);
    if (r->calls >= r->stop_after)
        dx_io_stop(loop, io);
}

T(io_write_readiness)
{
    dx_loop *loop = h_loop();
    int sv[2];
    h_socketpair(sv, 1);
    struct rec r = {.stop_after = 3};
    dx_io io;
    dx_io_init(&io, sv[0], write_cb, &r);
    cr_assert_eq(dx_io_set(loop, &io, DX_WRITE), 0);
    h_run(loop);
    cr_assert_eq(r.calls, 3, "level-triggered: writable each iteration");
    for (int i = 0; i < 3; i++)
        cr_assert_eq(r.events[i], DX_WRITE, "call %d events %d", i, r.events[i]);

    /* a full socket is not writable until the peer reads */
    h_fill_fd(sv[0]);
    r = (struct rec){.stop_after = 1};
    cr_assert_eq(dx_io_set(loop, &io, DX_WRITE), 0);
    cr_assert_eq(h_run_for(loop, 50), 1);
    cr_assert_eq(r.calls, 0);
    h_drain_fd(sv[1], NULL);
    h_run(loop);
    cr_assert_eq(r.calls, 1);
    close(sv[0]);
    close(sv[1]);
    dx_loop_free(loop);
}

/* WRITE first, then the callback switches to READ; a byte arrives later. */
static void switch_cb(dx_loop *loop, dx_io *io, int events)
{
    struct rec *r = io->data;
    record(r, events);
    if (events & DX_WRITE) {
        cr_assert_eq(dx_io_set(loop, io, DX_READ), 0);
        cr_assert_eq(io->events, DX_READ);
    }
    if (events & DX_READ) {
        char c;
        cr_assert_eq(read(io->fd, &c, 1), 1);
        dx_io_stop(loop, io);
    }
}

T(io_change_interest_in_callback)
{
    dx_loop *loop = h_loop();
    int sv[2];
    h_socketpair(sv, 1);
    struct rec r = {0};
    dx_io io;
    dx_io_init(&io, sv[0], switch_cb, &r);
    cr_assert_eq(dx_io_set(loop, &io, DX_WRITE), 0);
    dx_timer t;
    dx_timer_init(&t, write_byte_cb, &sv[1]);
    cr_assert_eq(dx_timer_start(loop, &t, 30, 0), 0);
    h_run(loop);
    cr_assert_eq(r.calls, 2, "one WRITE then one READ, no WRITE after the switch (calls=%d)",
                 r.calls);
    cr_assert_eq(r.events[0], DX_WRITE);
    cr_assert_eq(r.events[1], DX_READ);
    close(sv[0]);
    close(sv[1]);
    dx_loop_free(loop);
}

/* Two watchers ready in the same iteration; whichever runs first stops the
 * other, which must then not be called. */
struct pair {
    dx_io a, b;
    int calls_a, calls_b;
};

static void stop_other_cb(dx_loop *loop, dx_io *io, int events)
{
    (void)events;
    struct pair *p = io->data;
    if (io == &p->a) {
        p->calls_a++;
        dx_io_stop(loop, &p->b);
    } else {
        p->calls_b++;
        dx_io_stop(loop, &p->a);
    }
    dx_io_stop(loop, io);
}

T(io_stop_other_in_callback)
{
    for (int round = 0; round < 20; round++) {
        dx_loop *loop = h_loop();
        int p1[2], p2[2];
        h_pipe(p1, 1);
        h_pipe(p2, 1);
        cr_assert_eq(write(p1[1], "x", 1), 1);
        cr_assert_eq(write(p2[1], "y", 1), 1);
        struct pair pr = {0};
        /* alternate the fd order so both dispatch orders are exercised */
        dx_io_init(&pr.a, round % 2 ? p1[0] : p2[0], stop_other_cb, &pr);
        dx_io_init(&pr.b, round % 2 ? p2[0] : p1[0], stop_other_cb, &pr);
        cr_assert_eq(dx_io_set(loop, &pr.a, DX_READ), 0);
        cr_assert_eq(dx_io_set(loop, &pr.b, DX_READ), 0);
        h_run(loop);
        cr_assert_eq(pr.calls_a + pr.calls_b, 1, "round %d: a=%d b=%d", round, pr.calls_a,
                     pr.calls_b);
        close(p1[0]);
        close(p1[1]);
        close(p2[0]);
        close(p2[1]);
        dx_loop_free(loop);
    }
}

/* A callback narrows another ready watcher's interest to WRITE: the READ
 * that was already collected must not be delivered to it. */
struct narrow {
    dx_io a, b;
    int b_read_calls, a_calls;
};

static void narrow_a_cb(dx_loop *loop, dx_io *io, int events)
{
    (void)events;
    struct narrow *n = io->data;
    n->a_calls++;
    if (n->b.events & DX_READ)
        dx_io_set(loop, &n->b, DX_WRITE);
    dx_io_stop(loop, io);
}

static void narrow_b_cb(dx_loop *loop, dx_io *io, int events)
{
    struct narrow *n = io->data;
    if ((events & DX_READ) && n->a_calls)
        n->b_read_calls++;
    if (n->a_calls)
        dx_io_stop(loop, io);
}

T(io_narrow_other_in_callback)
{
    dx_loop *loop = h_loop();
    int s1[2], s2[2];
    h_socketpair(s1, 1);
    h_socketpair(s2, 1);
    cr_assert_eq(write(s1[1], "x", 1), 1);
    cr_assert_eq(write(s2[1], "y", 1), 1);
    struct narrow n = {0};
    /* a has the lower fd, so with both backends it is dispatched first */
    int fa = s1[0] < s2[0] ? s1[0] : s2[0], fb = s1[0] < s2[0] ? s2[0] : s1[0];
    dx_io_init(&n.a, fa, narrow_a_cb, &n);
    dx_io_init(&n.b, fb, narrow_b_cb, &n);
    cr_assert_eq(dx_io_set(loop, &n.a, DX_READ), 0);
    cr_assert_eq(dx_io_set(loop, &n.b, DX_READ), 0);
    h_run(loop);
    cr_assert_eq(n.a_calls, 1);
    if (n.a_calls && n.b_read_calls == 0)
        cr_assert_eq(n.b.events, 0);
    cr_assert_eq(n.b_read_calls, 0, "b was called with DX_READ after it stopped watching reads");
    close(s1[0]);
    close(s1[1]);
    close(s2[0]);
    close(s2[1]);
    dx_loop_free(loop);
}

static void never_cb(dx_loop *loop, dx_io *io, int events)
{
    (void)loop;
    (void)io;
    cr_assert_fail("callback of a watcher that must not run (events %d)", events);
}

T(io_second_watcher_same_fd)
{
    dx_loop *loop = h_loop();
    int p[2];
    h_pipe(p, 1);
    dx_io a, b;
    dx_io_init(&a, p[0], never_cb, NULL);
    dx_io_init(&b, p[0], never_cb, NULL);
    cr_assert_eq(dx_io_set(loop, &a, DX_READ), 0);
    cr_assert_eq(dx_io_set(loop, &b, DX_READ), -EEXIST);
    cr_assert_eq(dx_io_set(loop, &b, DX_WRITE), -EEXIST);
    cr_assert_eq(b.events, 0);
    /* setting the same watcher again is fine */
    cr_assert_eq(dx_io_set(loop, &a, DX_READ), 0);
    /* once a stops, b may take the fd */
    dx_io_stop(loop, &a);
    cr_assert_eq(dx_io_set(loop, &b, DX_READ), 0);
    dx_io_stop(loop, &b);
    dx_io_stop(loop, &b); /* twice is safe */
    cr_assert_eq(dx_io_set(loop, &b, 0), 0, "0 on a stopped watcher is a no-op");
    dx_io bad;
    dx_io_init(&bad, -1, never_cb, NULL);
    cr_assert_eq(dx_io_set(loop, &bad, DX_READ), -EBADF);
    cr_assert_eq(dx_loop_run(loop), 0, "nothing left");
    close(p[0]);
    close(p[1]);
    dx_loop_free(loop);
}

T(io_closed_fd_rejected)
{
    dx_loop *loop = h_loop();
    int p[2];
    h_pipe(p, 1);
    close(p[0]);
    close(p[1]);
    dx_io io;
    dx_io_init(&io, p[0], never_cb, NULL);
    int rc = dx_io_set(loop, &io, DX_READ);
    if (strcmp(dx_loop_backend(loop), "epoll") == 0) {
        cr_assert_eq(rc, -EBADF);
        cr_assert_eq(io.events, 0);
        cr_assert_eq(dx_loop_run(loop), 0, "a refused watcher is not counted");
    } else {
        /* poll accepts any number; the closed fd is reported as an error */
        dx_io_stop(loop, &io);
    }
    dx_loop_free(loop);
}

/* A regular file: the multiplexer may refuse it; it is always ready. */
static void file_cb(dx_loop *loop, dx_io *io, int events)
{
    struct rec *r = io->data;
    record(r, events);
    char buf[4];
    ssize_t n = read(io->fd, buf, sizeof buf);
    if (n > 0 && r->ngot + (size_t)n <= sizeof r->got) {
        memcpy(r->got + r->ngot, buf, (size_t)n);
        r->ngot += (size_t)n;
    }
    if (n == 0 || r->calls >= r->stop_after)
        dx_io_stop(loop, io);
}

T(io_regular_file_always_ready)
{
    dx_loop *loop = h_loop();
    FILE *f = tmpfile();
    cr_assert_not_null(f);
    int fd = fileno(f);
    cr_assert_eq(write(fd, "0123456789", 10), 10);
    cr_assert_eq(lseek(fd, 0, SEEK_SET), 0);
    struct rec r = {.stop_after = 100};
    dx_io io;
    dx_io_init(&io, fd, file_cb, &r);
    cr_assert_eq(dx_io_set(loop, &io, DX_READ), 0);
    cr_assert_eq(io.events, DX_READ);
    h_run(loop);
    /* 3 reads of 4+4+2 bytes, then EOF */
    cr_assert_eq(r.calls, 4, "calls %d", r.calls);
    cr_assert_eq(r.ngot, 10);
    cr_assert_eq(memcmp(r.got, "0123456789", 10), 0);
    for (int i = 0; i < r.calls; i++)
        cr_assert(r.events[i] & DX_READ);

    /* writable too, and other events keep flowing: a timer still fires */
    r = (struct rec){.stop_after = 1000000};
    cr_assert_eq(io.events, 0);
    dx_io_init(&io, fd, write_cb, &r);
    cr_assert_eq(dx_io_set(loop, &io, DX_WRITE), 0);
    dx_timer t;
    dx_timer_init(&t, h_guard_cb, NULL);
    cr_assert_eq(dx_timer_start(loop, &t, 20, 0), 0);
    uint64_t t0 = h_now_ms();
    cr_assert_eq(dx_loop_run(loop), 0);
    cr_assert_geq(h_now_ms() - t0, 15, "the timer, not the file, stopped the loop");
    cr_assert_gt(r.calls, 1);
    cr_assert(r.events[0] & DX_WRITE);
    dx_io_stop(loop, &io);
    cr_assert_eq(dx_loop_run(loop), 0, "nothing left after stopping the file watcher");
    fclose(f);
    dx_loop_free(loop);
}

T(io_dev_null_always_ready)
{
    dx_loop *loop = h_loop();
    int fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    cr_assert_geq(fd, 0);
    struct rec r = {.stop_after = 100};
    dx_io io;
    dx_io_init(&io, fd, file_cb, &r);
    cr_assert_eq(dx_io_set(loop, &io, DX_READ), 0);
    h_run(loop);
    cr_assert_eq(r.calls, 1, "one call reads EOF and stops");
    close(fd);
    dx_loop_free(loop);
}

/* ---- run / stop ---- */

static void stop_after_cb(dx_loop *loop, dx_io *io, int events)
{
    struct rec *r = io->data;
    record(r, events);
    if (r->calls == r->stop_after)
        dx_loop_stop(loop);
}

T(loop_stop)
{
    dx_loop *loop = h_loop();
    int p[2];
    h_pipe(p, 1);
    struct rec r = {.stop_after = 5};
    dx_io io;
    dx_io_init(&io, p[1], stop_after_cb, &r);
    cr_assert_eq(dx_io_set(loop, &io, DX_WRITE), 0);
    cr_assert_eq(dx_loop_run(loop), 0);
    cr_assert_eq(r.calls, 5);
    cr_assert_eq(io.events, DX_WRITE, "stop leaves watchers started");
    /* run again: it continues, stop is not sticky */
    r.stop_after = 8;
    cr_assert_eq(dx_loop_run(loop), 0);
    cr_assert_eq(r.calls, 8);
    dx_io_stop(loop, &io);
    cr_assert_eq(dx_loop_run(loop), 0);
    close(p[0]);
    close(p[1]);
    dx_loop_free(loop);
}

/* Stop from inside a callback: the other ready watcher of the same
 * iteration is not dispatched and no timer runs. */
static void stop_loop_cb(dx_loop *loop, dx_io *io, int events)
{
    (void)events;
    int *calls = io->data;
    (*calls)++;
    dx_loop_stop(loop);
}

static void count_timer_cb(dx_loop *loop, dx_timer *t)
{
    (void)loop;
    (*(int *)t->data)++;
}

T(loop_stop_ends_iteration)
{
    dx_loop *loop = h_loop();
    int p1[2], p2[2];
    h_pipe(p1, 1);
    h_pipe(p2, 1);
    int calls = 0, tcalls = 0;
    dx_io a, b;
    dx_io_init(&a, p1[1], stop_loop_cb, &calls);
    dx_io_init(&b, p2[1], stop_loop_cb, &calls);
    cr_assert_eq(dx_io_set(loop, &a, DX_WRITE), 0);
    cr_assert_eq(dx_io_set(loop, &b, DX_WRITE), 0);
    dx_timer t;
    dx_timer_init(&t, count_timer_cb, &tcalls);
    cr_assert_eq(dx_timer_start(loop, &t, 0, 0), 0);
    cr_assert_eq(dx_loop_run(loop), 0);
    cr_assert_eq(calls, 1);
    cr_assert_eq(tcalls, 0);
    cr_assert(dx_timer_active(&t));
    dx_io_stop(loop, &a);
    dx_io_stop(loop, &b);
    cr_assert_eq(dx_loop_run(loop), 0);
    cr_assert_eq(tcalls, 1);
    close(p1[0]);
    close(p1[1]);
    close(p2[0]);
    close(p2[1]);
    dx_loop_free(loop);
}

T(free_with_started_watchers)
{
    dx_loop *loop = h_loop();
    int p[2];
    h_pipe(p, 1);
    dx_io io;
    dx_io_init(&io, p[1], never_cb, NULL);
    cr_assert_eq(dx_io_set(loop, &io, DX_WRITE), 0);
    dx_timer t;
    dx_timer_init(&t, h_guard_cb, NULL);
    cr_assert_eq(dx_timer_start(loop, &t, 1000, 0), 0);
    dx_loop_free(loop);
    cr_assert_not(dx_timer_active(&t), "freeing the loop forgets its timers");
    /* the fd is still open: the loop does not own it */
    cr_assert_eq(write(p[1], "x", 1), 1);
    close(p[0]);
    close(p[1]);
}

/* ---- timers ---- */

struct tlog {
    dx_loop *loop;
    int order[512];
    uint64_t due[512];
    uint64_t fired_at[512];
    int n;
};

struct ttimer {
    dx_timer t;
    struct tlog *log;
    int id;
    uint64_t due;
    int fires;
    int started; /* model: expected to be active */
};

static void log_cb(dx_loop *loop, dx_timer *t)
{
    struct ttimer *tt = t->data;
    struct tlog *log = tt->log;
    cr_assert_lt(log->n, 512);
    log->order[log->n] = tt->id;
    log->due[log->n] = tt->due;
    log->fired_at[log->n] = dx_loop_now(loop);
    log->n++;
    tt->fires++;
    tt->started = 0;
}

T(timers_fire_in_due_order)
{
    dx_loop *loop = h_loop();
    enum { N = 300 };
    static struct ttimer tt[N];
    static struct tlog log;
    memset(&log, 0, sizeof log);
    uint64_t seed = 12345;
    dx_loop_update_time(loop);
    uint64_t base = dx_loop_now(loop);
    for (int i = 0; i < N; i++) {
        tt[i] = (struct ttimer){.log = &log, .id = i};
        dx_timer_init(&tt[i].t, log_cb, &tt[i]);
        uint64_t d = h_rand(&seed) % 21;
        tt[i].due = base + d;
        cr_assert_eq(dx_timer_start(loop, &tt[i].t, d, 0), 0);
        cr_assert(dx_timer_active(&tt[i].t));
    }
    uint64_t t0 = h_now_ms();
    cr_assert_eq(dx_loop_run(loop), 0);
    cr_assert_lt(h_now_ms() - t0, 2000);
    cr_assert_eq(log.n, N);
    for (int i = 0; i < N; i++) {
        cr_assert_eq(tt[i].fires, 1, "timer %d fired %d times", i, tt[i].fires);
        cr_assert_not(dx_timer_active(&tt[i].t));
    }
    for (int k = 0; k < N; k++) {
        cr_assert_geq(log.fired_at[k], log.due[k], "fired before due");
        if (k > 0)
            cr_assert_geq(log.due[k], log.due[k - 1], "out of order at %d: %llu after %llu", k,
                          (unsigned long long)log.due[k], (unsigned long long)log.due[k - 1]);
    }
    dx_loop_free(loop);
}

T(timer_fires_not_early)
{
    dx_loop *loop = h_loop();
    int calls = 0;
    dx_timer t;
    dx_timer_init(&t, count_timer_cb, &calls);
    cr_assert_not(dx_timer_active(&t));
    dx_loop_update_time(loop);
    uint64_t t0 = h_now_ms();
    cr_assert_eq(dx_timer_start(loop, &t, 50, 0), 0);
    cr_assert_eq(dx_loop_run(loop), 0);
    uint64_t el = h_now_ms() - t0;
    cr_assert_eq(calls, 1);
    cr_assert_geq(el, 49, "fired after %llu ms", (unsigned long long)el);
    cr_assert_lt(el, 1000);
    dx_loop_free(loop);
}

/* A delay near UINT64_MAX ms means "never": now + delay must not wrap
 * round to a time in the past and fire at once. */
static dx_timer *far_timer;

static void stop_far_cb(dx_loop *loop, dx_timer *t)
{
    (*(int *)t->data)++;
    dx_timer_stop(loop, far_timer);
}

T(timer_huge_delay_does_not_wrap)
{
    dx_loop *loop = h_loop();
    int far = 0, near = 0;
    dx_timer tf, tn;
    dx_timer_init(&tf, count_timer_cb, &far);
    dx_timer_init(&tn, stop_far_cb, &near);
    far_timer = &tf;
    dx_loop_update_time(loop);
    cr_assert_eq(dx_timer_start(loop, &tf, UINT64_MAX - 1, 0), 0);
    cr_assert_eq(dx_timer_start(loop, &tn, 20, 0), 0);
    cr_assert_eq(dx_loop_run(loop), 0);
    cr_assert_eq(near, 1);
    cr_assert_eq(far, 0, "a timer due in 584 million years fired");
    dx_loop_free(loop);
}

T(timer_stop_before_firing)
{
    dx_loop *loop = h_loop();
    int a = 0, b = 0;
    dx_timer ta, tb;
    dx_timer_init(&ta, count_timer_cb, &a);
    dx_timer_init(&tb, count_timer_cb, &b);
    cr_assert_eq(dx_timer_start(loop, &ta, 10, 0), 0);
    cr_assert_eq(dx_timer_start(loop, &tb, 5, 0), 0);
    dx_timer_stop(loop, &tb);
    cr_assert_not(dx_timer_active(&tb));
    dx_timer_stop(loop, &tb); /* twice is safe */
    cr_assert_eq(dx_loop_run(loop), 0);
    cr_assert_eq(a, 1);
    cr_assert_eq(b, 0);
    /* stopping the only timer leaves nothing: run returns at once */
    cr_assert_eq(dx_timer_start(loop, &ta, 10000, 0), 0);
    dx_timer_stop(loop, &ta);
    uint64_t t0 = h_now_ms();
    cr_assert_eq(dx_loop_run(loop), 0);
    cr_assert_lt(h_now_ms() - t0, 1000);
    cr_assert_eq(a, 1);
    dx_loop_free(loop);
}

T(timer_restart)
{
    dx_loop *loop = h_loop();
    int calls = 0;
    dx_timer t;
    dx_timer_init(&t, count_timer_cb, &calls);
    dx_loop_update_time(loop);
    /* restart earlier: fires once, at the new time */
    cr_assert_eq(dx_timer_start(loop, &t, 5000, 0), 0);
    cr_assert_eq(dx_timer_start(loop, &t, 10, 0), 0);
    uint64_t t0 = h_now_ms();
    cr_assert_eq(dx_loop_run(loop), 0);
    cr_assert_eq(calls, 1);
    cr_assert_lt(h_now_ms() - t0, 2000);
    /* restart later: fires once, at the new time */
    dx_loop_update_time(loop);
    cr_assert_eq(dx_timer_start(loop, &t, 5, 0), 0);
    cr_assert_eq(dx_timer_start(loop, &t, 60, 0), 0);
    t0 = h_now_ms();
    cr_assert_eq(dx_loop_run(loop), 0);
    cr_assert_eq(calls, 2);
    cr_assert_geq(h_now_ms() - t0, 55);
    dx_loop_free(loop);
}

/* Timer A pushes timer B further away from A's callback. */
struct push {
    dx_timer a, b;
    uint64_t b_fired_at, a_fired_at;
    int b_calls;
};

static void push_a_cb(dx_loop *loop, dx_timer *t)
{
    struct push *p = t->data;
    p->a_fired_at = dx_loop_now(loop);
    cr_assert_eq(dx_timer_start(loop, &p->b, 40, 0), 0);
}

static void push_b_cb(dx_loop *loop, dx_timer *t)
{
    struct push *p = t->data;
    p->b_calls++;
    p->b_fired_at = dx_loop_now(loop);
}

T(timer_restart_from_callback)
{
    dx_loop *loop = h_loop();
    struct push p = {0};
    dx_timer_init(&p.a, push_a_cb, &p);
    dx_timer_init(&p.b, push_b_cb, &p);
    cr_assert_eq(dx_timer_start(loop, &p.a, 10, 0), 0);
    cr_assert_eq(dx_timer_start(loop, &p.b, 20, 0), 0);
    cr_assert_eq(dx_loop_run(loop), 0);
    cr_assert_eq(p.b_calls, 1);
    cr_assert_geq(p.b_fired_at, p.a_fired_at + 40);
    dx_loop_free(loop);
}

struct rep {
    dx_timer t;
    int calls, limit;
    uint64_t at[16];
};

static void rep_cb(dx_loop *loop, dx_timer *t)
{
    struct rep *r = t->data;
    cr_assert(dx_timer_active(t), "a repeating timer is active in its callback");
    r->at[r->calls < 16 ? r->calls : 15] = dx_loop_now(loop);
    if (++r->calls == r->limit)
        dx_timer_stop(loop, t);
}

T(timer_repeat)
{
    dx_loop *loop = h_loop();
    struct rep r = {.limit = 5};
    dx_timer_init(&r.t, rep_cb, &r);
    dx_loop_update_time(loop);
    uint64_t base = dx_loop_now(loop);
    cr_assert_eq(dx_timer_start(loop, &r.t, 10, 5), 0);
    cr_assert_eq(dx_loop_run(loop), 0);
    cr_assert_eq(r.calls, 5);
    cr_assert_not(dx_timer_active(&r.t));
    cr_assert_geq(r.at[0], base + 10);
    for (int i = 1; i < 5; i++)
        cr_assert_geq(r.at[i], r.at[i - 1] + 5, "period at %d", i);
    dx_loop_free(loop);
}

T(timer_repeat_with_loop_stop)
{
    dx_loop *loop = h_loop();
    struct rep r = {.limit = 1000};
    dx_timer_init(&r.t, rep_cb, &r);
    dx_timer guard;
    dx_timer_init(&guard, h_guard_cb, NULL);
    cr_assert_eq(dx_timer_start(loop, &r.t, 1, 1), 0);
    cr_assert_eq(dx_timer_start(loop, &guard, 50, 0), 0);
    cr_assert_eq(dx_loop_run(loop), 0);
    cr_assert_gt(r.calls, 3);
    cr_assert_lt(r.calls, 60);
    cr_assert(dx_timer_active(&r.t), "still repeating");
    dx_timer_stop(loop, &r.t);
    dx_loop_free(loop);
}

struct chain {
    dx_timer a, b;
    int seq[4], n;
};

static void chain_b_cb(dx_loop *loop, dx_timer *t)
{
    (void)loop;
    struct chain *c = t->data;
    c->seq[c->n++] = 2;
}

static void chain_a_cb(dx_loop *loop, dx_timer *t)
{
    struct chain *c = t->data;
    c->seq[c->n++] = 1;
    dx_timer_init(&c->b, chain_b_cb, c);
    cr_assert_eq(dx_timer_start(loop, &c->b, 5, 0), 0);
    /* a one-shot timer is inactive in its own callback and can restart */
    cr_assert_not(dx_timer_active(t));
}

T(timer_started_from_timer)
{
    dx_loop *loop = h_loop();
    struct chain c = {0};
    dx_timer_init(&c.a, chain_a_cb, &c);
    cr_assert_eq(dx_timer_start(loop, &c.a, 5, 0), 0);
    cr_assert_eq(dx_loop_run(loop), 0);
    cr_assert_eq(c.n, 2);
    cr_assert_eq(c.seq[0], 1);
    cr_assert_eq(c.seq[1], 2);
    dx_loop_free(loop);
}

/* Random start/stop/restart of a few hundred timers, before and during the
 * run, against a model: exactly the started ones fire, once per start, in
 * due order, never early; stopped ones never fire. */
struct rnd {
    dx_loop *loop;
    struct ttimer *tt;
    int n;
    uint64_t seed;
    struct tlog *log;
    int budget; /* random operations left to do from callbacks */
};

static struct rnd *g_rnd;

static void rnd_op(struct rnd *r)
{
    int i = (int)(h_rand(&r->seed) % (uint64_t)r->n);
    struct ttimer *t = &r->tt[i];
    switch (h_rand(&r->seed) % 3) {
    case 0:
    case 1: {
        uint64_t d = h_rand(&r->seed) % 21;
        cr_assert_eq(dx_timer_start(r->loop, &t->t, d, 0), 0);
        t->due = dx_loop_now(r->loop) + d;
        t->started = 1;
        break;
    }
    case 2:
        dx_timer_stop(r->loop, &t->t);
        t->started = 0;
        break;
    }
}

static void rnd_check_active(struct rnd *r)
{
    for (int i = 0; i < r->n; i++)
        cr_assert_eq(dx_timer_active(&r->tt[i].t), r->tt[i].started, "timer %d", i);
}

static void rnd_cb(dx_loop *loop, dx_timer *t)
{
    struct rnd *r = g_rnd;
    struct ttimer *tt = t->data;
    cr_assert(tt->started, "timer %d fired but the model says stopped", tt->id);
    cr_assert_geq(dx_loop_now(loop), tt->due, "timer %d early", tt->id);
    log_cb(loop, t);
    for (int k = 0; k < 3 && r->budget > 0; k++, r->budget--)
        rnd_op(r);
}

T(timers_random_start_stop)
{
    enum { N = 300 };
    static struct ttimer tt[N];
    static struct tlog log;
    for (int round = 0; round < 4; round++) {
        memset(&log, 0, sizeof log);
        dx_loop *loop = h_loop();
        struct rnd r = {.loop = loop, .tt = tt, .n = N, .seed = 777u + (uint64_t)round,
                        .log = &log, .budget = 150};
        g_rnd = &r;
        for (int i = 0; i < N; i++) {
            tt[i] = (struct ttimer){.log = &log, .id = i};
            dx_timer_init(&tt[i].t, rnd_cb, &tt[i]);
        }
        dx_loop_update_time(loop);
        for (int k = 0; k < 1500; k++) {
            rnd_op(&r);
            if (k % 100 == 0)
                rnd_check_active(&r);
        }
        rnd_check_active(&r);
        int expected = 0;
        for (int i = 0; i < N; i++)
            expected += tt[i].started;
        cr_assert_gt(expected, 0);
        cr_assert_eq(dx_loop_run(loop), 0);
        rnd_check_active(&r);
        for (int i = 0; i < N; i++)
            cr_assert_not(tt[i].started, "timer %d never fired", i);
        cr_assert_gt(log.n, 0);
        for (int k = 1; k < log.n; k++)
            cr_assert_geq(log.due[k], log.due[k - 1], "round %d: out of order at %d", round, k);
        dx_loop_free(loop);
    }
}
