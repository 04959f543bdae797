/* test_connector.c: dx_connect_async over address lists, timeouts, cancel. */
#define _GNU_SOURCE
#include "helpers.h"

#define T(name) Test(connector, name, .timeout = 20, .init = conn_init)

static void conn_init(void) { h_alarm(H_ALARM_SECONDS); }

struct call {
    int result, final;
    const dx_addr *addr;
    uint64_t at;
    int bind_failed;  /* c->bind_failed in the callback */
};

struct ctx {
    dx_loop *loop;
    int in_async;     /* set while dx_connect_async() runs */
    struct call calls[8];
    int ncalls;
    int cancel_on_first; /* call dx_connect_cancel from the first callback */
    int watch_fd_ok;     /* a new watcher on the connected fd was accepted */
};

static void conn_cb(dx_connector *c, int result, const dx_addr *addr, int final)
{
    struct ctx *x = c->data;
    cr_assert_not(x->in_async, "callback ran inside dx_connect_async");
    cr_assert_lt(x->ncalls, 8, "too many callbacks");
    x->calls[x->ncalls++] = (struct call){result, final, addr, h_now_ms(), c->bind_failed};
    if (final && result >= 0) {
        /* the connector no longer watches the fd: the owner can */
        dx_io io;
        dx_io_init(&io, result, NULL, NULL);
        x->watch_fd_ok = dx_io_set(x->loop, &io, DX_READ) == 0;
        dx_io_stop(x->loop, &io);
    }
    if (x->cancel_on_first && x->ncalls == 1)
        dx_connect_cancel(c);
}

static int start(struct ctx *x, dx_connector *c, const dx_addr *addrs, int n,
                 const dx_addr *source, uint64_t timeout_ms)
{
    x->in_async = 1;
    int rc = dx_connect_async(x->loop, c, addrs, n, source, timeout_ms, conn_cb, x);
    x->in_async = 0;
    return rc;
}

static void check_connected(int fd, int port)
{
    cr_assert_geq(fd, 0);
    cr_assert(h_is_nonblock(fd));
    cr_assert(h_is_cloexec(fd));
    cr_assert_eq(dx_connect_result(fd), 0);
    dx_addr peer;
    cr_assert_eq(dx_sock_peer(fd, &peer), 0);
    cr_assert_eq(dx_addr_port(&peer), port);
}

T(connect_ok)
{
    int port;
    int lfd = h_listen4(0, &port);
    dx_addr addrs[1] = {h_addr4(port)};
    struct ctx x = {.loop = h_loop()};
    dx_connector c;
    cr_assert_eq(start(&x, &c, addrs, 1, NULL, 5000), 0);
    cr_assert_eq(x.ncalls, 0);
    h_run(x.loop);
    cr_assert_eq(x.ncalls, 1);
    cr_assert_eq(x.calls[0].final, 1);
    cr_assert_eq(x.calls[0].addr, &addrs[0]);
    check_connected(x.calls[0].result, port);
    cr_assert(x.watch_fd_ok, "the fd was still watched by the connector");
    close(x.calls[0].result);
    close(lfd);
    dx_loop_free(x.loop);
}

T(connect_ok_no_timeout)
{
    int port;
    int lfd = h_listen4(0, &port);
    dx_addr addrs[1] = {h_addr4(port)};
    struct ctx x = {.loop = h_loop()};
    dx_connector c;
    cr_assert_eq(start(&x, &c, addrs, 1, NULL, 0), 0);
    h_run(x.loop);
    cr_assert_eq(x.ncalls, 1);
    cr_assert_eq(x.calls[0].final, 1);
    check_connected(x.calls[0].result, port);
    close(x.calls[0].result);
    close(lfd);
    dx_loop_free(x.loop);
}

T(refused_then_ok)
{
    int port;
    int lfd = h_listen4(0, &port);
    dx_addr addrs[2] = {h_addr4(h_closed_port()), h_addr4(port)};
    struct ctx x = {.loop = h_loop()};
    dx_connector c;
    cr_assert_eq(start(&x, &c, addrs, 2, NULL, 5000), 0);
    cr_assert_eq(x.ncalls, 0);
    h_run(x.loop);
    cr_assert_eq(x.ncalls, 2);
    cr_assert_eq(x.calls[0].final, 0);
    cr_assert_eq(x.calls[0].result, -ECONNREFUSED, "%s", dx_strerror(x.calls[0].result));
    cr_assert_eq(x.calls[0].addr, &addrs[0]);
    cr_assert_eq(x.calls[1].final, 1);
    cr_assert_eq(x.calls[1].addr, &addrs[1]);
    check_connected(x.calls[1].result, port);
    close(x.calls[1].result);
    close(lfd);
    dx_loop_free(x.loop);
}

T(all_refused)
{
    dx_addr addrs[3] = {h_addr4(h_closed_port()), h_addr4(h_closed_port()),
                        h_addr4(h_closed_port())};
    struct ctx x = {.loop = h_loop()};
    dx_connector c;
    cr_assert_eq(start(&x, &c, addrs, 3, NULL, 5000), 0);
    h_run(x.loop);
    cr_assert_eq(x.ncalls, 3);
    for (int i = 0; i < 3; i++) {
        cr_assert_eq(x.calls[i].result, -ECONNREFUSED, "call %d: %s", i,
                     dx_strerror(x.calls[i].result));
        cr_assert_eq(x.calls[i].final, i == 2);
        cr_assert_eq(x.calls[i].addr, &addrs[i]);
    }
    dx_loop_free(x.loop);
}

/* A failure at dx_connect_start() itself is still reported from the loop. */
T(immediate_failure_deferred)
{
    char dir[64], path[128];
    h_tmpdir(dir, sizeof dir);
    snprintf(path, sizeof path, "%s/nothing", dir);
    int port;
    int lfd = h_listen4(0, &port);
    dx_addr addrs[2];
    cr_assert_eq(dx_addr_unix(&addrs[0], path), 0);
    addrs[1] = h_addr4(port);

    struct ctx x = {.loop = h_loop()};
    dx_connector c;
    cr_assert_eq(start(&x, &c, addrs, 1, NULL, 1000), 0);
    cr_assert_eq(x.ncalls, 0);
    h_run(x.loop);
    cr_assert_eq(x.ncalls, 1);
    cr_assert_eq(x.calls[0].final, 1);
    cr_assert_eq(x.calls[0].result, -ENOENT, "%s", dx_strerror(x.calls[0].result));

    x.ncalls = 0;
    cr_assert_eq(start(&x, &c, addrs, 2, NULL, 1000), 0);
    cr_assert_eq(x.ncalls, 0);
    h_run(x.loop);
    cr_assert_eq(x.ncalls, 2);
    cr_assert_eq(x.calls[0].final, 0);
    cr_assert_eq(x.calls[0].result, -ENOENT);
    cr_assert_eq(x.calls[1].final, 1);
    check_connected(x.calls[1].result, port);
    close(x.calls[1].result);
    close(lfd);
    rmdir(dir);
    dx_loop_free(x.loop);
}

T(no_addresses)
{
    struct ctx x = {.loop = h_loop()};
    dx_connector c;
    dx_addr a = h_addr4(1);
    cr_assert_lt(start(&x, &c, &a, 0, NULL, 100), 0);
    h_run(x.loop);
    cr_assert_eq(x.ncalls, 0, "a call that fails never calls back");
    dx_loop_free(x.loop);
}

/* A listener whose accept queue is full: further SYNs are dropped, so a
 * connect to it hangs. Returns the listener; the queued client fds go to
 * held[] (*nheld). Skips the test if the queue cannot be filled. */
static int hanging_listener(int *port, int held[], int *nheld, int max)
{
    int lfd = h_listen4(1, port);
    dx_addr a = h_addr4(*port);
    *nheld = 0;
    for (int i = 0; i < max; i++) {
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        cr_assert_geq(fd, 0);
        int rc = connect(fd, (struct sockaddr *)&a.ss, a.len);
        cr_assert(rc == 0 || errno == EINPROGRESS, "connect: %s", strerror(errno));
        held[(*nheld)++] = fd;
        if (rc < 0 && !(h_wait_fd(fd, POLLOUT, 150) & POLLOUT))
            return lfd; /* this one hangs: the queue is full */
    }
    for (int i = 0; i < *nheld; i++)
        close(held[i]);
    close(lfd);
    cr_skip_test("could not fill the accept queue with %d connects", max);
    return -1;
}

T(timeout)
{
    int port, held[32], nheld;
    int lfd = hanging_listener(&port, held, &nheld, 32);
    dx_addr addrs[1] = {h_addr4(port)};
    struct ctx x = {.loop = h_loop()};
    dx_connector c;
    dx_loop_update_time(x.loop);
    uint64_t t0 = h_now_ms();
    cr_assert_eq(start(&x, &c, addrs, 1, NULL, 200), 0);
    h_run(x.loop);
    uint64_t el = h_now_ms() - t0;
    cr_assert_eq(x.ncalls, 1);
    cr_assert_eq(x.calls[0].final, 1);
    cr_assert_eq(x.calls[0].result, DX_ETIMEDOUT, "%d (%s)", x.calls[0].result,
                 dx_strerror(x.calls[0].result));
    cr_assert_geq(el, 190, "timed out after %llu ms", (unsigned long long)el);
    cr_assert_lt(el, 3000, "timed out after %llu ms", (unsigned long long)el);
    for (int i = 0; i < nheld; i++)
        close(held[i]);
    close(lfd);
    dx_loop_free(x.loop);
}

T(timeout_then_next)
{
    int port, held[32], nheld;
    int lfd = hanging_listener(&port, held, &nheld, 32);
    int okport;
    int okfd = h_listen4(0, &okport);
    dx_addr addrs[2] = {h_addr4(port), h_addr4(okport)};
    struct ctx x = {.loop = h_loop()};
    dx_connector c;
    dx_loop_update_time(x.loop);
    uint64_t t0 = h_now_ms();
    cr_assert_eq(start(&x, &c, addrs, 2, NULL, 150), 0);
    h_run(x.loop);
    cr_assert_eq(x.ncalls, 2);
    cr_assert_eq(x.calls[0].final, 0);
    cr_assert_eq(x.calls[0].result, DX_ETIMEDOUT);
    cr_assert_geq(x.calls[0].at - t0, 140);
    cr_assert_eq(x.calls[1].final, 1);
    check_connected(x.calls[1].result, okport);
    close(x.calls[1].result);
    for (int i = 0; i < nheld; i++)
        close(held[i]);
    close(lfd);
    close(okfd);
    dx_loop_free(x.loop);
}

T(cancel_in_progress)
{
    int port, held[32], nheld;
    int lfd = hanging_listener(&port, held, &nheld, 32);
    dx_addr addrs[1] = {h_addr4(port)};
    struct ctx x = {.loop = h_loop()};
    dx_connector c;
    cr_assert_eq(start(&x, &c, addrs, 1, NULL, 100), 0);
    dx_connect_cancel(&c);
    /* nothing left to wait for: the loop returns at once, no callback */
    uint64_t t0 = h_now_ms();
    h_run(x.loop);
    cr_assert_lt(h_now_ms() - t0, 90);
    cr_assert_eq(x.ncalls, 0);
    dx_connect_cancel(&c); /* twice is safe */
    for (int i = 0; i < nheld; i++)
        close(held[i]);
    close(lfd);
    dx_loop_free(x.loop);
}

T(cancel_deferred_failure)
{
    dx_addr addrs[1];
    cr_assert_eq(dx_addr_unix(&addrs[0], "/nonexistent/dir/sock"), 0);
    struct ctx x = {.loop = h_loop()};
    dx_connector c;
    cr_assert_eq(start(&x, &c, addrs, 1, NULL, 100), 0);
    dx_connect_cancel(&c);
    h_run(x.loop);
    cr_assert_eq(x.ncalls, 0);
    dx_loop_free(x.loop);
}

/* dx_connect_cancel() from the callback of a failed (non-final) address:
 * "the callback is not called again", so the next address must not be
 * tried and no connected fd may be delivered. */
T(cancel_from_failure_callback)
{
    int port;
    int lfd = h_listen4(0, &port);
    dx_addr addrs[2] = {h_addr4(h_closed_port()), h_addr4(port)};
    struct ctx x = {.loop = h_loop(), .cancel_on_first = 1};
    dx_connector c;
    cr_assert_eq(start(&x, &c, addrs, 2, NULL, 1000), 0);
    h_run_for(x.loop, 300);
    /* clean up first so a failure does not also report leaks */
    if (x.ncalls > 1 && x.calls[1].result >= 0)
        close(x.calls[1].result);
    close(lfd);
    dx_loop_free(x.loop);
    cr_assert_geq(x.ncalls, 1);
    cr_assert_eq(x.calls[0].final, 0);
    cr_assert_eq(x.calls[0].result, -ECONNREFUSED);
    cr_assert_eq(x.ncalls, 1,
                 "callback called again after dx_connect_cancel (final=%d result=%d)",
                 x.calls[1].final, x.calls[1].result);
}

T(source_address)
{
    int port;
    int lfd = h_listen4(0, &port);
    int sport = h_free_port();
    dx_addr src = h_addr4(sport);
    dx_addr addrs[1] = {h_addr4(port)};
    struct ctx x = {.loop = h_loop()};
    dx_connector c;
    cr_assert_eq(start(&x, &c, addrs, 1, &src, 5000), 0);
    memset(&src, 0, sizeof src); /* the connector keeps its own copy */
    h_run(x.loop);
    cr_assert_eq(x.ncalls, 1);
    cr_assert_eq(x.calls[0].final, 1);
    int fd = x.calls[0].result;
    check_connected(fd, port);
    dx_addr local;
    cr_assert_eq(dx_sock_local(fd, &local), 0);
    cr_assert_eq(dx_addr_port(&local), sport);
    close(fd);
    close(lfd);
    dx_loop_free(x.loop);
}

T(source_in_use_reported)
{
    int port;
    int lfd = h_listen4(0, &port);
    dx_addr src = h_addr4(port); /* the listener holds it */
    dx_addr addrs[1] = {h_addr4(port)};
    struct ctx x = {.loop = h_loop()};
    dx_connector c;
    cr_assert_eq(start(&x, &c, addrs, 1, &src, 5000), 0);
    cr_assert_eq(x.ncalls, 0);
    h_run(x.loop);
    cr_assert_eq(x.ncalls, 1);
    cr_assert_eq(x.calls[0].final, 1);
    cr_assert_eq(x.calls[0].result, -EADDRINUSE, "%s", dx_strerror(x.calls[0].result));
    close(lfd);
    dx_loop_free(x.loop);
}

/* Many connectors on one loop at once. */
T(many_parallel)
{
    enum { N = 40 };
    int port;
    int lfd = h_listen4(0, &port);
    int closed = h_closed_port();
    static dx_addr addrs[N][2];
    static dx_connector cs[N];
    static struct ctx xs[N];
    dx_loop *loop = h_loop();
    for (int i = 0; i < N; i++) {
        addrs[i][0] = h_addr4(i % 2 ? closed : port);
        addrs[i][1] = h_addr4(port);
        xs[i] = (struct ctx){.loop = loop};
        cr_assert_eq(start(&xs[i], &cs[i], addrs[i], 2, NULL, 5000), 0);
    }
    h_run(loop);
    for (int i = 0; i < N; i++) {
        struct ctx *x = &xs[i];
        cr_assert_eq(x->ncalls, i % 2 ? 2 : 1, "connector %d: %d calls", i, x->ncalls);
        struct call *last = &x->calls[x->ncalls - 1];
        cr_assert_eq(last->final, 1);
        check_connected(last->result, port);
        close(last->result);
    }
    close(lfd);
    dx_loop_free(loop);
}

/* The peer accepts, sends, and resets before the loop sees the connect
 * complete: the connect still counts as made and the bytes are not lost. */
T(data_then_reset_before_completion)
{
    int port;
    int lfd = h_listen4(0, &port);
    dx_addr addrs[1] = {h_addr4(port)};
    struct ctx x = {.loop = h_loop()};
    dx_connector c;
    cr_assert_eq(start(&x, &c, addrs, 1, NULL, 5000), 0);
    cr_assert(h_wait_fd(lfd, POLLIN, 5000) & POLLIN, "the handshake did not complete");
    int sfd = accept(lfd, NULL, NULL);
    cr_assert_geq(sfd, 0);
    h_write_all(sfd, "hello", 5);
    struct linger lg = {.l_onoff = 1, .l_linger = 0};
    cr_assert_eq(setsockopt(sfd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg), 0);
    close(sfd); /* sends RST */
    h_sleep_ms(50);
    h_run(x.loop);
    cr_assert_eq(x.ncalls, 1);
    cr_assert_eq(x.calls[0].final, 1);
    int fd = x.calls[0].result;
    cr_assert_geq(fd, 0, "connect reported %s", dx_strerror(fd));
    char buf[16];
    ssize_t n = recv(fd, buf, sizeof buf, 0);
    cr_assert_eq(n, 5);
    cr_assert_arr_eq(buf, "hello", 5);
    n = recv(fd, buf, sizeof buf, 0);
    cr_assert_eq(n, -1);
    cr_assert_eq(errno, ECONNRESET, "%s", strerror(errno));
    close(fd);
    close(lfd);
    dx_loop_free(x.loop);
}

/* Issue 10 item 15: the peer accepts and resets at once, with nothing sent,
 * before the loop sees the connect complete. The first address took the
 * connection: it is the last one tried (a second address would make a
 * second connection), and the final report says the reset came after the
 * connection was made (an exchange failure, not a refused connect). */
T(reset_right_after_handshake_is_not_a_connect_failure)
{
    int port1, port2;
    int lfd1 = h_listen4(4, &port1);
    int lfd2 = h_listen4(4, &port2);
    dx_addr addrs[2] = {h_addr4(port1), h_addr4(port2)};
    struct ctx x = {.loop = h_loop()};
    dx_connector c;
    cr_assert_eq(start(&x, &c, addrs, 2, NULL, 5000), 0);
    cr_assert(h_wait_fd(lfd1, POLLIN, 5000) & POLLIN, "the handshake did not complete");
    int sfd = accept(lfd1, NULL, NULL);
    cr_assert_geq(sfd, 0);
    struct linger lg = {.l_onoff = 1, .l_linger = 0};
    cr_assert_eq(setsockopt(sfd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg), 0);
    close(sfd); /* sends RST */
    /* wait (without the loop) until the reset has reached the connecting
     * socket; c.fd is private, read here only to know when */
    cr_assert(h_wait_fd(c.fd, POLLIN, 5000) & (POLLERR | POLLHUP), "no reset seen");
    h_run(x.loop);
    cr_assert_eq(x.ncalls, 1, "%d callbacks: another address was tried", x.ncalls);
    cr_assert_eq(x.calls[0].final, 1);
    cr_assert_eq(x.calls[0].addr, &addrs[0]);
    cr_assert(x.calls[0].result == -ECONNRESET || x.calls[0].result == -EPIPE, "%s",
              dx_strerror(x.calls[0].result));
    cr_assert_eq(c.established, 1, "the reset was reported as a connect failure");
    cr_assert_eq(h_wait_fd(lfd2, POLLIN, 0), 0, "the second address got a connection");
    close(lfd1);
    close(lfd2);
    dx_loop_free(x.loop);
}

/* established also marks an ordinary success, and stays 0 for refusals. */
T(established_only_when_connected)
{
    int port;
    int lfd = h_listen4(4, &port);
    dx_addr addrs[2] = {h_addr4(h_closed_port()), h_addr4(port)};
    struct ctx x = {.loop = h_loop()};
    dx_connector c;
    cr_assert_eq(start(&x, &c, addrs, 1, NULL, 5000), 0);
    h_run(x.loop);
    cr_assert_eq(x.ncalls, 1);
    cr_assert_eq(x.calls[0].result, -ECONNREFUSED);
    cr_assert_eq(c.established, 0);
    x.ncalls = 0;
    cr_assert_eq(start(&x, &c, addrs, 2, NULL, 5000), 0);
    h_run(x.loop);
    cr_assert_eq(x.ncalls, 2);
    cr_assert_geq(x.calls[1].result, 0);
    cr_assert_eq(c.established, 1);
    close(x.calls[1].result);
    close(lfd);
    dx_loop_free(x.loop);
}

/* The source bind failing is told apart from the connect failing (the
 * command names the bind: "bind 127.0.0.1:PORT: Address already in use"). */
T(bind_failure_is_marked)
{
    int port, held;
    int lfd = h_listen4(0, &port);
    int hfd = h_listen4(0, &held); /* a listener holds this port: binding it fails */
    dx_addr target = h_addr4(port), source = h_addr4(held);
    struct ctx x = {.loop = h_loop()};
    dx_connector c;
    cr_assert_eq(start(&x, &c, &target, 1, &source, 1000), 0);
    h_run(x.loop);
    cr_assert_eq(x.ncalls, 1);
    cr_assert_eq(x.calls[0].result, -EADDRINUSE, "%s", dx_strerror(x.calls[0].result));
    cr_assert_eq(x.calls[0].bind_failed, 1);
    cr_assert_eq(c.sockopt_failed, -1);

    /* a refused connect from a good source: not the bind */
    dx_addr closed = h_addr4(h_closed_port()), any = h_addr4(0);
    x.ncalls = 0;
    cr_assert_eq(start(&x, &c, &closed, 1, &any, 1000), 0);
    h_run(x.loop);
    cr_assert_eq(x.ncalls, 1);
    cr_assert_eq(x.calls[0].result, -ECONNREFUSED, "%s", dx_strerror(x.calls[0].result));
    cr_assert_eq(x.calls[0].bind_failed, 0);
    close(hfd);
    close(lfd);
    dx_loop_free(x.loop);
}
