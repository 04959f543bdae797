/* test_loop.c: the event loop on the wsapoll backend: backend choice,
 * timers, fd watchers, urgent data, streams through dx_listen/dx_accept
 * and a connector, connect failures and deadlines, pumps; and the SOCKET
 * values the loop's fd-indexed arrays see. Runs under wine. */
#include "internal.h"
#include "os.h"
#include "tap.h"

static short wait_for(int fd, short events, int ms)
{
    struct pollfd p = {(SOCKET)(intptr_t)fd, events, 0};
    int n = dx__os_poll(&p, 1, ms);
    return n > 0 ? p.revents : 0;
}

/* A timer that stops a loop that should have finished long before. */
static void on_guard(dx_loop *loop, dx_timer *t)
{
    (void)t;
    dx_loop_stop(loop);
}

/* Run the loop for about 10 ms (or until something stops it). */
static int run_a_bit(dx_loop *loop)
{
    dx_timer t;
    dx_timer_init(&t, on_guard, NULL);
    dx_timer_start(loop, &t, 10, 0);
    int rc = dx_loop_run(loop);
    dx_timer_stop(loop, &t);
    return rc;
}

static void test_backends_list_wsapoll(void)
{
    const char *const *names = dx_backends();
    CHECK(names[0] != NULL);
    CHECK_STR(names[0], "wsapoll");
    CHECK(names[1] == NULL);
    int err = 0;
    dx_loop *loop = dx_loop_new(NULL, &err);
    CHECK(loop != NULL);
    CHECK_STR(dx_loop_backend(loop), "wsapoll");
    dx_loop_free(loop);
    loop = dx_loop_new("wsapoll", &err);
    CHECK(loop != NULL);
    dx_loop_free(loop);
    CHECK(dx_loop_new("epoll", &err) == NULL);
    CHECK_INT(err, -ENOENT);
    CHECK(dx_loop_new("poll", &err) == NULL);
    CHECK_INT(err, -ENOENT);
}

static int order[8], norder;

static void on_timer(dx_loop *loop, dx_timer *t)
{
    (void)loop;
    order[norder++] = (int)(intptr_t)t->data;
}

static void test_timers_fire_in_order(void)
{
    dx_loop *loop = dx_loop_new(NULL, NULL);
    CHECK(loop != NULL);
    dx_timer t[4];
    static const int after[4] = {60, 10, 40, 25};
    norder = 0;
    for (int i = 0; i < 4; i++) {
        dx_timer_init(&t[i], on_timer, (void *)(intptr_t)after[i]);
        CHECK_INT(dx_timer_start(loop, &t[i], (uint64_t)after[i], 0), 0);
    }
    uint64_t start = dx__os_now_ms();
    CHECK_INT(dx_loop_run(loop), 0); /* returns when no timer is left */
    uint64_t took = dx__os_now_ms() - start;
    CHECK_INT(norder, 4);
    CHECK_INT(order[0], 10);
    CHECK_INT(order[1], 25);
    CHECK_INT(order[2], 40);
    CHECK_INT(order[3], 60);
    tap_note("4 timers up to 60 ms took %llu ms", (unsigned long long)took);
    CHECK(took >= 55 && took < 2000);
    dx_loop_free(loop);
}

struct io_seen {
    int events, calls;
    char data[16];
};

static void on_readable(dx_loop *loop, dx_io *io, int events)
{
    struct io_seen *seen = io->data;
    seen->events |= events;
    seen->calls++;
    ssize_t n = dx__fd_read(io->fd, seen->data, sizeof seen->data - 1);
    if (n > 0)
        seen->data[n] = '\0';
    dx_io_stop(loop, io);
}

static int writer_fd;

static void on_write_later(dx_loop *loop, dx_timer *t)
{
    (void)loop;
    (void)t;
    dx__fd_write(writer_fd, "tick", 4);
}

static void test_watcher_sees_readability(void)
{
    dx_loop *loop = dx_loop_new(NULL, NULL);
    CHECK(loop != NULL);
    int fds[2];
    CHECK_INT(dx__socketpair(fds), 0);
    struct io_seen seen = {0};
    dx_io io;
    dx_io_init(&io, fds[1], on_readable, &seen);
    CHECK_INT(dx_io_set(loop, &io, DX_READ), 0);
    writer_fd = fds[0];
    dx_timer t, guard;
    dx_timer_init(&t, on_write_later, NULL);
    dx_timer_start(loop, &t, 20, 0);
    dx_timer_init(&guard, on_guard, NULL);
    dx_timer_start(loop, &guard, 5000, 0);
    /* the guard keeps the loop alive: stop it once the watcher is done */
    while (io.active && dx_timer_active(&guard))
        CHECK_INT(run_a_bit(loop), 0);
    dx_timer_stop(loop, &guard);
    CHECK_INT(seen.calls, 1);
    CHECK(seen.events & DX_READ);
    CHECK_STR(seen.data, "tick");
    dx_loop_free(loop);
    dx_close(fds[0]);
    dx_close(fds[1]);
}

/* ---- urgent data: DX_PRI ---- */

static void on_pri(dx_loop *loop, dx_io *io, int events)
{
    struct io_seen *seen = io->data;
    seen->events |= events;
    seen->calls++;
    if (events & DX_PRI) {
        char c = 0;
        if (dx__sock_recv(io->fd, &c, 1, MSG_OOB) == 1)
            seen->data[0] = c;
        dx_io_stop(loop, io);
    }
}

static void test_pri_sees_urgent_byte(void)
{
    dx_loop *loop = dx_loop_new(NULL, NULL);
    CHECK(loop != NULL);
    int fds[2];
    CHECK_INT(dx__socketpair(fds), 0);
    CHECK_INT(dx__sock_send(fds[0], "!", 1, MSG_OOB), 1);
    struct io_seen seen = {0};
    dx_io io;
    dx_io_init(&io, fds[1], on_pri, &seen);
    CHECK_INT(dx_io_set(loop, &io, DX_PRI), 0);
    dx_timer guard;
    dx_timer_init(&guard, on_guard, NULL);
    dx_timer_start(loop, &guard, 3000, 0);
    while (io.active && dx_timer_active(&guard))
        CHECK_INT(run_a_bit(loop), 0);
    dx_timer_stop(loop, &guard);
    dx_io_stop(loop, &io);
    tap_note("DX_PRI watcher: %d call(s), events 0x%x, byte '%c'", seen.calls, (unsigned)seen.events,
             seen.data[0] ? seen.data[0] : '-');
    CHECK(seen.events & DX_PRI);
    CHECK_INT(seen.data[0], '!');
    dx_loop_free(loop);
    dx_close(fds[0]);
    dx_close(fds[1]);
}

/* ---- a stream echo: dx_listen, dx_accept, dx_connect_async, dx_stream ---- */

struct echo {
    dx_loop *loop;
    int lfd;
    dx_io lio;
    int sfd;
    dx_stream server;
    int server_open;
    dx_connector conn;
    int cfd;
    dx_stream client;
    int client_open;
    char got[256];
    size_t ngot;
    int client_eof;
    int connect_result;
};

static void server_read(dx_stream *s, const char *data, size_t n)
{
    if (n == 0) {
        dx_stream_shutdown(s); /* echo the end too */
        return;
    }
    dx_stream_write(s, data, n);
}

static void server_event(dx_stream *s, int error)
{
    (void)s;
    (void)error;
}

static void on_accept(dx_loop *loop, dx_io *io, int events)
{
    (void)events;
    struct echo *e = io->data;
    int fd = dx_accept(e->lfd, NULL);
    if (fd < 0)
        return;
    e->sfd = fd;
    dx_stream_init(loop, &e->server, fd, 0, server_read, server_event, e);
    dx_stream_read_start(&e->server);
    e->server_open = 1;
    dx_io_stop(loop, io);
}

static void client_read(dx_stream *s, const char *data, size_t n)
{
    struct echo *e = s->data;
    if (n == 0) {
        e->client_eof = 1;
        dx_stream_close(s);
        e->client_open = 0;
        dx_stream_close(&e->server);
        e->server_open = 0;
        return;
    }
    if (e->ngot + n <= sizeof e->got) {
        memcpy(e->got + e->ngot, data, n);
        e->ngot += n;
    }
}

static void client_event(dx_stream *s, int error)
{
    (void)s;
    (void)error;
}

static const char message[] = "hello from wine, through wsapoll";

static void on_connected(dx_connector *c, int result, const dx_addr *addr, int final)
{
    (void)addr;
    struct echo *e = c->data;
    if (!final)
        return;
    e->connect_result = result;
    if (result < 0)
        return;
    e->cfd = result;
    dx_stream_init(e->loop, &e->client, result, 0, client_read, client_event, e);
    dx_stream_read_start(&e->client);
    e->client_open = 1;
    dx_stream_write(&e->client, message, sizeof message - 1);
    dx_stream_shutdown(&e->client);
}

static void test_stream_echo_through_listen_accept_connector(void)
{
    struct echo e;
    memset(&e, 0, sizeof e);
    e.sfd = e.cfd = -1;
    e.connect_result = 1;
    e.loop = dx_loop_new(NULL, NULL);
    CHECK(e.loop != NULL);
    dx_addr a;
    dx_addr_ip(&a, "127.0.0.1", 0);
    e.lfd = dx_listen(&a, NULL);
    CHECK(e.lfd >= 0);
    dx_addr bound;
    CHECK_INT(dx_sock_local(e.lfd, &bound), 0);
    dx_io_init(&e.lio, e.lfd, on_accept, &e);
    CHECK_INT(dx_io_set(e.loop, &e.lio, DX_READ), 0);
    CHECK_INT(dx_connect_async(e.loop, &e.conn, &bound, 1, NULL, 5000, on_connected, &e), 0);
    dx_timer guard;
    dx_timer_init(&guard, on_guard, NULL);
    dx_timer_start(e.loop, &guard, 10000, 0);
    while (!e.client_eof && dx_timer_active(&guard) && e.connect_result > 0)
        CHECK_INT(run_a_bit(e.loop), 0);
    dx_timer_stop(e.loop, &guard);
    CHECK_INT(e.connect_result >= 0, 1);
    CHECK(e.client_eof);
    CHECK_INT(e.ngot, sizeof message - 1);
    CHECK(memcmp(e.got, message, e.ngot) == 0);
    if (e.server_open)
        dx_stream_close(&e.server);
    dx_io_stop(e.loop, &e.lio);
    dx_close(e.lfd);
    if (e.sfd >= 0)
        dx_close(e.sfd);
    if (e.cfd >= 0)
        dx_close(e.cfd);
    dx_loop_free(e.loop);
}

/* ---- connector failures ---- */

struct outcome {
    int done, result, failures;
};

static void on_outcome(dx_connector *c, int result, const dx_addr *addr, int final)
{
    (void)addr;
    struct outcome *o = c->data;
    if (!final) {
        o->failures++;
        return;
    }
    o->done = 1;
    o->result = result;
    if (result >= 0)
        dx_close(result);
}

static void test_connector_refused(void)
{
    dx_loop *loop = dx_loop_new(NULL, NULL);
    CHECK(loop != NULL);
    dx_addr a;
    dx_addr_ip(&a, "127.0.0.1", 0);
    int l = dx_listen(&a, NULL);
    CHECK(l >= 0);
    dx_sock_local(l, &a);
    dx_close(l); /* nothing listens there now */
    struct outcome o = {0};
    dx_connector c;
    CHECK_INT(dx_connect_async(loop, &c, &a, 1, NULL, 5000, on_outcome, &o), 0);
    uint64_t start = dx__os_now_ms();
    CHECK_INT(dx_loop_run(loop), 0);
    uint64_t took = dx__os_now_ms() - start;
    tap_note("refused connect reported after %llu ms", (unsigned long long)took);
    CHECK(o.done);
    CHECK_INT(o.result, -ECONNREFUSED);
    CHECK(took < 4000); /* WSAPoll reported it: the 5 s deadline did not */
    dx_loop_free(loop);
}

/* Windows before 10 2004: WSAPoll says nothing about a failed connect. The
 * backend's select() fallback must find it, well before the deadline; a
 * connect that succeeds is not disturbed. */
static void test_connector_refused_old_windows(void)
{
    dx_loop *loop = dx_loop_new(NULL, NULL);
    CHECK(loop != NULL);
    dx_addr a;
    dx_addr_ip(&a, "127.0.0.1", 0);
    int l = dx_listen(&a, NULL);
    CHECK(l >= 0);
    dx_sock_local(l, &a);
    dx_close(l);
    dx__wsapoll_old_windows = 1;
    struct outcome o = {0};
    dx_connector c;
    int rc = dx_connect_async(loop, &c, &a, 1, NULL, 5000, on_outcome, &o);
    uint64_t start = dx__os_now_ms();
    int run = dx_loop_run(loop);
    uint64_t took = dx__os_now_ms() - start;
    /* and a connect that works, on a listener that is there */
    dx_addr_ip(&a, "127.0.0.1", 0);
    l = dx_listen(&a, NULL);
    dx_sock_local(l, &a);
    struct outcome ok = {0};
    int rc2 = dx_connect_async(loop, &c, &a, 1, NULL, 5000, on_outcome, &ok);
    int run2 = dx_loop_run(loop);
    dx__wsapoll_old_windows = 0;
    dx_close(l);
    dx_loop_free(loop);
    tap_note("old-Windows mode: refused connect reported after %llu ms", (unsigned long long)took);
    CHECK_INT(rc, 0);
    CHECK_INT(run, 0);
    CHECK(o.done);
    CHECK_INT(o.result, -ECONNREFUSED);
    CHECK(took < 2000); /* found by select(), not by the 5 s deadline */
    CHECK_INT(rc2, 0);
    CHECK_INT(run2, 0);
    CHECK(ok.done);
    CHECK(ok.result >= 0); /* on_outcome closed it */
}

static void test_connector_deadline_on_full_backlog(void)
{
    /* A listener that never accepts, its queue filled by connections of
     * ours: the kernel drops further SYNs (Linux, under wine; Windows
     * answers with a reset, i.e. a refusal), so the connector's own
     * deadline ends the attempt. */
    dx_loop *loop = dx_loop_new(NULL, NULL);
    CHECK(loop != NULL);
    dx_addr a;
    dx_addr_ip(&a, "127.0.0.1", 0);
    dx_listen_opts lo = {0};
    lo.backlog = 1;
    int l = dx_listen(&a, &lo);
    CHECK(l >= 0);
    dx_sock_local(l, &a);
    int fill[16], nfill = 0;
    for (int i = 0; i < 16; i++) {
        int fd = dx_connect_start(&a, NULL);
        if (fd < 0)
            break;
        fill[nfill++] = fd;
        /* connected quickly: the queue still had room; else it is full */
        if (!(wait_for(fd, POLLWRNORM, 300) & POLLWRNORM))
            break;
    }
    tap_note("%d connection(s) to fill a backlog of 1", nfill);
    dx_loop_update_time(loop); /* the filling took a while: deadlines count from now */
    struct outcome o = {0};
    dx_connector c;
    CHECK_INT(dx_connect_async(loop, &c, &a, 1, NULL, 300, on_outcome, &o), 0);
    uint64_t start = dx__os_now_ms();
    CHECK_INT(dx_loop_run(loop), 0);
    uint64_t took = dx__os_now_ms() - start;
    tap_note("connector ended after %llu ms: %s", (unsigned long long)took, dx_strerror(o.result));
    CHECK(o.done);
    CHECK(o.result == DX_ETIMEDOUT || o.result == -ECONNREFUSED);
    if (o.result == DX_ETIMEDOUT)
        CHECK(took >= 280 && took < 3000);
    CHECK_STR(dx_strerror(DX_ETIMEDOUT), "Connection timed out");
    for (int i = 0; i < nfill; i++)
        dx_close(fill[i]);
    dx_close(l);
    dx_loop_free(loop);
}

/* ---- a pump from one socket pair to another ---- */

static int pump_done, pump_error;

static void on_pump(dx_pump *p, int error, int in_read)
{
    (void)p;
    (void)in_read;
    pump_done = 1;
    pump_error = error;
}

static void test_pump_copies_and_shuts_down(void)
{
    dx_loop *loop = dx_loop_new(NULL, NULL);
    CHECK(loop != NULL);
    int in[2], out[2];
    CHECK_INT(dx__socketpair(in), 0);
    CHECK_INT(dx__socketpair(out), 0);
    static char big[200000];
    for (size_t i = 0; i < sizeof big; i++)
        big[i] = (char)('a' + i % 26);
    dx_endpoint src, dst;
    dx_endpoint_init(&src, in[1]);
    dx_endpoint_init(&dst, out[0]);
    CHECK(src.is_socket && dst.is_socket);
    dx_pump p;
    pump_done = 0;
    CHECK_INT(dx_pump_start(loop, &p, &src, &dst, 0, DX_PUMP_SHUTDOWN | DX_PUMP_SPLICE, on_pump, NULL), 0);
    /* feed and drain by hand between loop rounds */
    size_t sent = 0, got = 0;
    int eof = 0, bad = 0;
    char buf[65536];
    uint64_t deadline = dx__os_now_ms() + 10000;
    while (!eof && dx__os_now_ms() < deadline) {
        if (sent < sizeof big) {
            ssize_t n = dx__fd_write(in[0], big + sent, sizeof big - sent);
            if (n > 0)
                sent += (size_t)n;
            if (sent == sizeof big)
                dx__sock_shutdown(in[0], SHUT_WR);
        }
        if (!pump_done)
            run_a_bit(loop);
        ssize_t n;
        while ((n = dx__fd_read(out[1], buf, sizeof buf)) > 0) {
            for (ssize_t i = 0; i < n; i++)
                bad += buf[i] != big[got + (size_t)i];
            got += (size_t)n;
        }
        if (n == 0)
            eof = 1;
        else if (pump_done)
            wait_for(out[1], POLLRDNORM, 100);
    }
    CHECK(pump_done);
    CHECK_INT(pump_error, 0);
    CHECK(eof);
    CHECK_INT(got, sizeof big);
    CHECK_INT(bad, 0);
    CHECK_INT(p.bytes_out, sizeof big);
    dx_pump_stop(&p);
    for (int i = 0; i < 2; i++) {
        dx_close(in[i]);
        dx_close(out[i]);
    }
    dx_loop_free(loop);
}

/* ---- a pump with a DX_PRI handler: the urgent byte apart, the rest in order ---- */

static char urgent_got[8];
static int nurgent;

static void on_urgent(dx_endpoint *e)
{
    char c;
    while (dx__sock_recv(e->fd, &c, 1, MSG_OOB) == 1 && nurgent < (int)sizeof urgent_got)
        urgent_got[nurgent++] = c;
}

static void test_pump_with_urgent_data(void)
{
    dx_loop *loop = dx_loop_new(NULL, NULL);
    CHECK(loop != NULL);
    int in[2], out[2];
    CHECK_INT(dx__socketpair(in), 0);
    CHECK_INT(dx__socketpair(out), 0);
    nurgent = 0;
    pump_done = 0;
    CHECK_INT(dx__fd_write(in[0], "abc", 3), 3);
    CHECK_INT(dx__sock_send(in[0], "!", 1, MSG_OOB), 1);
    CHECK_INT(dx__fd_write(in[0], "def", 3), 3);
    CHECK_INT(dx__sock_shutdown(in[0], SHUT_WR), 0);
    dx_endpoint src, dst;
    dx_endpoint_init(&src, in[1]);
    dx_endpoint_init(&dst, out[0]);
    dx_pump p;
    CHECK_INT(dx_pump_start(loop, &p, &src, &dst, 0, DX_PUMP_SHUTDOWN, on_pump, NULL), 0);
    CHECK_INT(dx_endpoint_watch_pri(loop, &src, on_urgent), 0);
    dx_timer guard;
    dx_timer_init(&guard, on_guard, NULL);
    dx_timer_start(loop, &guard, 5000, 0);
    while (!pump_done && dx_timer_active(&guard))
        CHECK_INT(run_a_bit(loop), 0);
    dx_timer_stop(loop, &guard);
    dx_endpoint_watch_pri(loop, &src, NULL);
    char buf[32];
    size_t got = 0;
    ssize_t n;
    while (got < sizeof buf && (n = dx__fd_read(out[1], buf + got, sizeof buf - got)) > 0)
        got += (size_t)n;
    buf[got] = '\0';
    tap_note("pump with urgent data: normal \"%s\", urgent %d byte(s) '%c'", buf, nurgent,
             nurgent ? urgent_got[0] : '-');
    CHECK(pump_done);
    CHECK_INT(pump_error, 0);
    CHECK_STR(buf, "abcdef");
    CHECK_INT(nurgent, 1);
    CHECK_INT(urgent_got[0], '!');
    dx_pump_stop(&p);
    for (int i = 0; i < 2; i++) {
        dx_close(in[i]);
        dx_close(out[i]);
    }
    dx_loop_free(loop);
}

/* ---- a peer's reset reaches a stream as -ECONNRESET ---- */

static int reset_error = 1;
static size_t reset_bytes;

static int reset_eof;

static void reset_read(dx_stream *s, const char *data, size_t n)
{
    (void)s;
    (void)data;
    reset_bytes += n;
    reset_eof |= n == 0;
}

static void reset_event(dx_stream *s, int error)
{
    if (error < 0) {
        reset_error = error;
        dx_stream_close(s);
    }
}

static void test_stream_sees_peer_reset(void)
{
    dx_loop *loop = dx_loop_new(NULL, NULL);
    CHECK(loop != NULL);
    int fds[2];
    CHECK_INT(dx__socketpair(fds), 0);
    dx_stream s;
    CHECK_INT(dx_stream_init(loop, &s, fds[1], 0, reset_read, reset_event, NULL), 0);
    CHECK(s.is_socket);
    CHECK_INT(dx_stream_read_start(&s), 0);
    /* some bytes, then an abortive close (linger 0): a reset */
    CHECK_INT(dx__fd_write(fds[0], "abc", 3), 3);
    dx_sockopt lg;
    CHECK_INT(dx_sockopt_parse("linger=0", &lg), 0);
    CHECK_INT(dx_sockopt_apply(fds[0], &lg), 0);
    wait_for(fds[1], POLLRDNORM, 2000);
    CHECK_INT(dx_close(fds[0]), 0);
    reset_error = 1;
    reset_bytes = 0;
    reset_eof = 0;
    dx_timer guard;
    dx_timer_init(&guard, on_guard, NULL);
    dx_timer_start(loop, &guard, 5000, 0);
    while (reset_error > 0 && !reset_eof && dx_timer_active(&guard))
        CHECK_INT(run_a_bit(loop), 0);
    dx_timer_stop(loop, &guard);
    tap_note("stream after a reset: %zu byte(s), then %s", reset_bytes,
             reset_error < 0 ? dx_strerror(reset_error) : reset_eof ? "end of stream" : "nothing");
    CHECK(!reset_eof); /* wine says 0 for a reset; dx__fd_read finds it (end_or_reset) */
    CHECK_INT(reset_error, -ECONNRESET);
    CHECK_STR(dx_strerror(reset_error), "Connection reset by peer");
    /* writing to the reset socket fails too, never raises anything */
    char b[1];
    CHECK_INT(dx__fd_write(fds[1], "x", 1) < 0 || dx__fd_read(fds[1], b, 1) <= 0, 1);
    dx_close(fds[1]);
    dx_loop_free(loop);
}

/* ---- an orderly end is still an end ---- */

static void test_fin_is_end_not_reset(void)
{
    int fds[2];
    CHECK_INT(dx__socketpair(fds), 0);
    CHECK_INT(dx__fd_write(fds[0], "bye", 3), 3);
    CHECK_INT(dx__sock_shutdown(fds[0], SHUT_WR), 0);
    char b[8];
    CHECK(wait_for(fds[1], POLLRDNORM, 5000) != 0);
    CHECK_INT(dx__fd_read(fds[1], b, sizeof b), 3);
    CHECK(wait_for(fds[1], POLLRDNORM, 5000) != 0);
    CHECK_INT(dx__fd_read(fds[1], b, sizeof b), 0);
    CHECK_INT(dx__fd_read(fds[1], b, sizeof b), 0); /* and stays so */
    /* both sides shut: still an end */
    CHECK_INT(dx__sock_shutdown(fds[1], SHUT_WR), 0);
    CHECK(wait_for(fds[0], POLLRDNORM, 5000) != 0);
    CHECK_INT(dx__fd_read(fds[0], b, sizeof b), 0);
    CHECK_INT(dx__fd_read(fds[1], b, sizeof b), 0);
    /* the peer closed after its FIN: still an end for the reader */
    CHECK_INT(dx_close(fds[0]), 0);
    CHECK_INT(dx__fd_read(fds[1], b, sizeof b), 0);
    dx_close(fds[1]);
}

/* ---- a socket closed while watched (a program's mistake): DX_ERROR, the
 * loop goes on ---- */

static int nval_events;

static void on_nval(dx_loop *loop, dx_io *io, int events)
{
    nval_events |= events;
    dx_io_stop(loop, io);
}

static void test_closed_while_watched(void)
{
    dx_loop *loop = dx_loop_new(NULL, NULL);
    CHECK(loop != NULL);
    int f[2];
    CHECK_INT(dx__socketpair(f), 0);
    dx_io io;
    dx_io_init(&io, f[0], on_nval, NULL);
    CHECK_INT(dx_io_set(loop, &io, DX_READ), 0);
    dx_close(f[0]); /* without dx_io_stop() first */
    nval_events = 0;
    dx_timer guard;
    dx_timer_init(&guard, on_guard, NULL);
    dx_timer_start(loop, &guard, 3000, 0);
    while (io.active && dx_timer_active(&guard))
        CHECK_INT(run_a_bit(loop), 0);
    dx_timer_stop(loop, &guard);
    dx_io_stop(loop, &io);
    tap_note("closed while watched: events 0x%x", (unsigned)nval_events);
    CHECK(nval_events & DX_ERROR);
    dx_close(f[1]);
    dx_loop_free(loop);
}

/* ---- SOCKET values: what the loop's fd-indexed arrays see ---- */

static void test_socket_values_stay_small(void)
{
    enum { N = 500 };
    static int fds[N];
    int n = 0, lo = INT_MAX, hi = 0, not4 = 0;
    for (; n < N; n++) {
        fds[n] = dx__sock_open(AF_INET, n % 2 ? SOCK_STREAM : SOCK_DGRAM);
        if (fds[n] < 0)
            break;
        lo = fds[n] < lo ? fds[n] : lo;
        hi = fds[n] > hi ? fds[n] : hi;
        not4 += fds[n] % 4 != 0;
    }
    tap_note("%d sockets: values %d..%d, %d not a multiple of 4", n, lo, hi, not4);
    CHECK_INT(n, N);
    CHECK_INT(not4, 0);
    /* loop.c sizes ios[] by the largest value: a few KiB per thousand handles */
    CHECK(hi < 64 * N);
    /* a closed value is reused, as POSIX fds are */
    int again = fds[N / 2];
    dx_close(fds[N / 2]);
    fds[N / 2] = dx__sock_open(AF_INET, SOCK_STREAM);
    tap_note("closed %d, next socket %d", again, fds[N / 2]);
    for (int i = 0; i < n; i++)
        dx_close(fds[i]);
}

TAP_MAIN(T(test_backends_list_wsapoll), T(test_timers_fire_in_order),
         T(test_watcher_sees_readability), T(test_pri_sees_urgent_byte),
         T(test_stream_echo_through_listen_accept_connector), T(test_connector_refused), T(test_connector_refused_old_windows),
         T(test_connector_deadline_on_full_backlog), T(test_pump_copies_and_shuts_down), T(test_pump_with_urgent_data), T(test_stream_sees_peer_reset), T(test_fin_is_end_not_reset), T(test_closed_while_watched),
         T(test_socket_values_stay_small))
