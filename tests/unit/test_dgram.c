/* test_dgram.c: UDP sockets (dx_dgram_*), DX_RESOLVE_DGRAM, the DX_PRI
 * event bit on every backend, and pumps stepping over the TCP urgent mark. */
#define _GNU_SOURCE
#include "helpers.h"

#define T(name) Test(dgram, name, .timeout = 20, .init = dgram_init)

static void dgram_init(void) { h_alarm(H_ALARM_SECONDS); }

static int sock_type(int fd)
{
    int type = 0;
    socklen_t len = sizeof type;
    cr_assert_eq(getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len), 0);
    return type;
}

T(bind_ephemeral_nonblocking_no_reuseaddr)
{
    dx_addr a = h_addr4(0);
    int fd = dx_dgram_bind(&a, NULL);
    cr_assert_geq(fd, 0, "%s", dx_strerror(fd));
    cr_assert_eq(sock_type(fd), SOCK_DGRAM);
    cr_assert(h_is_nonblock(fd));
    cr_assert(h_is_cloexec(fd));
    int v = 1;
    socklen_t len = sizeof v;
    cr_assert_eq(getsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &v, &len), 0);
    cr_assert_eq(v, 0, "SO_REUSEADDR would let another program share the port");
    dx_addr local;
    cr_assert_eq(dx_sock_local(fd, &local), 0);
    cr_assert_gt(dx_addr_port(&local), 0);
    /* the port is ours: a second bind fails */
    int fd2 = dx_dgram_bind(&local, NULL);
    cr_assert_eq(fd2, -EADDRINUSE, "%s", dx_strerror(fd2));
    close(fd);
}

T(bind_rejects_unix)
{
    dx_addr a;
    cr_assert_eq(dx_addr_unix(&a, "/tmp/x"), 0);
    cr_assert_eq(dx_dgram_bind(&a, NULL), -EAFNOSUPPORT);
    cr_assert_eq(dx_dgram_connect(&a, NULL), -EAFNOSUPPORT);
}

T(send_recv_from_many_peers)
{
    dx_addr a = h_addr4(0), local;
    int srv = dx_dgram_bind(&a, NULL);
    cr_assert_geq(srv, 0);
    cr_assert_eq(dx_sock_local(srv, &local), 0);
    int c1 = dx_dgram_connect(&local, NULL), c2 = dx_dgram_connect(&local, NULL);
    cr_assert_geq(c1, 0, "%s", dx_strerror(c1));
    cr_assert_geq(c2, 0);
    cr_assert_eq(dx_dgram_send(c1, "one", 3, NULL), 3);
    cr_assert_eq(dx_dgram_send(c2, "", 0, NULL), 0); /* empty datagrams exist */
    char buf[64];
    dx_addr from1, from2, me1;
    int trunc = -1;
    cr_assert(h_wait_fd(srv, POLLIN, 5000) & POLLIN);
    cr_assert_eq(dx_dgram_recv(srv, buf, sizeof buf, &from1, &trunc), 3);
    cr_assert_eq(memcmp(buf, "one", 3), 0);
    cr_assert_eq(trunc, 0);
    cr_assert(h_wait_fd(srv, POLLIN, 5000) & POLLIN);
    cr_assert_eq(dx_dgram_recv(srv, buf, sizeof buf, &from2, NULL), 0);
    cr_assert_eq(dx_dgram_recv(srv, buf, sizeof buf, NULL, NULL), -EAGAIN);
    cr_assert_eq(dx_sock_local(c1, &me1), 0);
    cr_assert_eq(dx_addr_port(&from1), dx_addr_port(&me1));
    cr_assert_neq(dx_addr_port(&from1), dx_addr_port(&from2));
    /* reply to each sender through the unconnected socket */
    cr_assert_eq(dx_dgram_send(srv, "to2", 3, &from2), 3);
    cr_assert(h_wait_fd(c2, POLLIN, 5000) & POLLIN);
    cr_assert_eq(dx_dgram_recv(c2, buf, sizeof buf, NULL, NULL), 3);
    cr_assert_eq(memcmp(buf, "to2", 3), 0);
    close(c1);
    close(c2);
    close(srv);
}

T(recv_reports_truncation)
{
    dx_addr a = h_addr4(0), local;
    int srv = dx_dgram_bind(&a, NULL);
    cr_assert_eq(dx_sock_local(srv, &local), 0);
    int c = dx_dgram_connect(&local, NULL);
    cr_assert_eq(dx_dgram_send(c, "0123456789", 10, NULL), 10);
    cr_assert(h_wait_fd(srv, POLLIN, 5000) & POLLIN);
    char buf[4];
    int trunc = 0;
    cr_assert_eq(dx_dgram_recv(srv, buf, sizeof buf, NULL, &trunc), 4);
    cr_assert_eq(trunc, 1);
    close(c);
    close(srv);
}

T(connected_socket_sees_port_unreachable)
{
    dx_addr a = h_addr4(0), local;
    int gone = dx_dgram_bind(&a, NULL);
    cr_assert_eq(dx_sock_local(gone, &local), 0);
    close(gone); /* nothing listens there any more */
    int c = dx_dgram_connect(&local, NULL);
    cr_assert_geq(c, 0);
    cr_assert_eq(dx_dgram_send(c, "x", 1, NULL), 1);
    cr_assert(h_wait_fd(c, POLLIN, 5000) & (POLLERR | POLLIN));
    char buf[8];
    ssize_t r = dx_dgram_recv(c, buf, sizeof buf, NULL, NULL);
    cr_assert_eq(r, -ECONNREFUSED, "%s", dx_strerror((int)r));
    close(c);
}

T(connect_binds_source)
{
    dx_addr a = h_addr4(0), local, src = h_addr4(0), me;
    int srv = dx_dgram_bind(&a, NULL);
    cr_assert_eq(dx_sock_local(srv, &local), 0);
    int c = dx_dgram_connect(&local, &src);
    cr_assert_geq(c, 0);
    cr_assert_eq(dx_sock_local(c, &me), 0);
    char text[DX_ADDR_STRLEN];
    cr_assert_eq(strncmp(dx_addr_format(&me, text, sizeof text), "127.0.0.1:", 10), 0, "%s", text);
    dx_addr v6;
    cr_assert_eq(dx_addr_ip(&v6, "::1", 0), 0);
    cr_assert_eq(dx_dgram_connect(&local, &v6), -EAFNOSUPPORT);
    close(c);
    close(srv);
}

T(ipv6_dual_stack_and_v6only)
{
    if (!h_have_ipv6())
        cr_skip_test("no IPv6 loopback");
    dx_addr any, local, v4;
    cr_assert_eq(dx_addr_ip(&any, "::", 0), 0);
    dx_listen_opts lo = {.v6only = 0};
    int srv = dx_dgram_bind(&any, &lo);
    cr_assert_geq(srv, 0, "%s", dx_strerror(srv));
    cr_assert_eq(dx_sock_local(srv, &local), 0);
    /* an IPv4 peer reaches the dual-stack socket */
    cr_assert_eq(dx_addr_ip(&v4, "127.0.0.1", dx_addr_port(&local)), 0);
    int c = dx_dgram_connect(&v4, NULL);
    cr_assert_eq(dx_dgram_send(c, "4", 1, NULL), 1);
    cr_assert(h_wait_fd(srv, POLLIN, 5000) & POLLIN);
    char buf[4];
    dx_addr from;
    cr_assert_eq(dx_dgram_recv(srv, buf, sizeof buf, &from, NULL), 1);
    cr_assert_eq(from.ss.ss_family, AF_INET6); /* v4-mapped */
    close(c);
    close(srv);
    lo.v6only = 1;
    srv = dx_dgram_bind(&any, &lo);
    int v = 0;
    socklen_t len = sizeof v;
    cr_assert_eq(getsockopt(srv, IPPROTO_IPV6, IPV6_V6ONLY, &v, &len), 0);
    cr_assert_eq(v, 1);
    close(srv);
}

T(resolve_dgram_hints)
{
    dx_addr *out;
    int n = dx_resolve("127.0.0.1", "53", AF_INET, DX_RESOLVE_DGRAM | DX_RESOLVE_NUMERIC, &out);
    cr_assert_eq(n, 1, "%s", dx_strerror(n));
    cr_assert_eq(dx_addr_port(&out[0]), 53);
    free(out);
    /* a service name known for UDP */
    n = dx_resolve("127.0.0.1", "domain", AF_INET, DX_RESOLVE_DGRAM | DX_RESOLVE_NUMERIC, &out);
    if (n > 0) {
        cr_assert_eq(dx_addr_port(&out[0]), 53);
        free(out);
    }
    n = dx_resolve(NULL, "0", AF_INET, DX_RESOLVE_DGRAM | DX_RESOLVE_PASSIVE, &out);
    cr_assert_eq(n, 1);
    char text[DX_ADDR_STRLEN];
    cr_assert_str_eq(dx_addr_format(&out[0], text, sizeof text), "0.0.0.0:0");
    free(out);
}

/* ---- DX_PRI: urgent data on the loop ---- */

struct pri_state {
    int events;
    int calls;
    char oob;
};

static void pri_cb(dx_loop *loop, dx_io *io, int events)
{
    struct pri_state *st = io->data;
    st->events |= events;
    st->calls++;
    if (events & DX_PRI) {
        char c;
        if (recv(io->fd, &c, 1, MSG_OOB) == 1)
            st->oob = c;
    }
    dx_loop_stop(loop);
}

T(pri_event_for_urgent_data)
{
    int fds[2];
    h_tcp_pair(fds, 1);
    dx_loop *loop = h_loop();
    struct pri_state st = {0};
    dx_io io;
    dx_io_init(&io, fds[1], pri_cb, &st);
    cr_assert_eq(dx_io_set(loop, &io, DX_PRI), 0);
    cr_assert_eq(io.events, DX_PRI);
    /* plain data does not wake a DX_PRI-only watcher */
    h_write_all(fds[0], "abc", 3);
    cr_assert_eq(h_run_for(loop, 150), 1, "woken without urgent data (%s)", dx_loop_backend(loop));
    cr_assert_eq(st.calls, 0);
    cr_assert_eq(send(fds[0], "!", 1, MSG_OOB), 1);
    cr_assert_eq(h_run_for(loop, 5000), 0, "no DX_PRI (%s)", dx_loop_backend(loop));
    cr_assert(st.events & DX_PRI);
    cr_assert_eq(st.oob, '!');
    /* read: the event is gone */
    st.calls = 0;
    cr_assert_eq(h_run_for(loop, 150), 1);
    cr_assert_eq(st.calls, 0);
    dx_io_stop(loop, &io);
    dx_loop_free(loop);
    close(fds[0]);
    close(fds[1]);
}

/* ---- pumps and the urgent mark ---- */

struct mark_state {
    dx_endpoint *sock;
    int done, error;
    char oob;
    int oob_calls;
};

static void on_pump_done(dx_pump *p, int error, int in_read)
{
    (void)in_read;
    struct mark_state *st = p->data;
    st->done = 1;
    st->error = error;
    dx_pump_stop(p);
    dx_loop_stop(p->src->loop);
}

static void on_oob(dx_endpoint *e)
{
    struct mark_state *st = e->data;
    char c;
    if (recv(e->fd, &c, 1, MSG_OOB) == 1) {
        st->oob = c;
        st->oob_calls++;
    }
}

/* before + urgent '!' + after, all sent at once then FIN: the pump (splice
 * or buffered) must deliver before+after whole (or with the byte inline)
 * and the callback must see the urgent byte. */
static void check_mark(int flags, int inline_oob, size_t size)
{
    int fds[2], pipefd[2];
    h_tcp_pair(fds, 1);
    h_pipe(pipefd, 1);
    if (inline_oob) {
        int on = 1;
        cr_assert_eq(setsockopt(fds[1], SOL_SOCKET, SO_OOBINLINE, &on, sizeof on), 0);
    }
    char *before = malloc(size), *after = malloc(size), *got = malloc(2 * size + 1);
    for (size_t i = 0; i < size; i++) {
        before[i] = (char)('a' + i % 26);
        after[i] = (char)('A' + i % 26);
    }
    h_set_nonblock(fds[0], 0);
    h_write_all(fds[0], before, size);
    cr_assert_eq(send(fds[0], "!", 1, MSG_OOB), 1);
    h_write_all(fds[0], after, size);
    shutdown(fds[0], SHUT_WR);

    dx_loop *loop = h_loop();
    dx_endpoint src, dst;
    dx_pump p;
    struct mark_state st = {0};
    dx_endpoint_init(&src, fds[1]);
    dx_endpoint_init(&dst, pipefd[1]);
    src.data = &st;
    cr_assert_eq(dx_pump_start(loop, &p, &src, &dst, 1 << 16, flags, on_pump_done, &st), 0);
    if (!inline_oob)
        cr_assert_eq(dx_endpoint_watch_pri(loop, &src, on_oob), 0);
    size_t total = 0, want = 2 * size + (inline_oob ? 1 : 0);
    uint64_t deadline = h_now_ms() + 10000;
    while (!st.done && h_now_ms() < deadline) {
        h_run_for(loop, 20);
        for (;;) {
            ssize_t n = read(pipefd[0], got + total, 2 * size + 1 - total);
            if (n <= 0)
                break;
            total += (size_t)n;
        }
    }
    for (;;) {
        ssize_t n = read(pipefd[0], got + total, 2 * size + 1 - total);
        if (n <= 0)
            break;
        total += (size_t)n;
    }
    cr_assert(st.done, "pump did not finish");
    cr_assert_eq(st.error, 0, "%s", dx_strerror(st.error));
    cr_assert_eq(total, want, "got %zu bytes, want %zu", total, want);
    cr_assert_eq(memcmp(got, before, size), 0);
    if (inline_oob) {
        cr_assert_eq(got[size], '!');
        cr_assert_eq(memcmp(got + size + 1, after, size), 0);
    } else {
        cr_assert_eq(memcmp(got + size, after, size), 0);
        cr_assert_eq(st.oob, '!', "urgent byte not seen");
    }
    dx_endpoint_watch_pri(loop, &src, NULL);
    dx_loop_free(loop);
    free(before);
    free(after);
    free(got);
    close(fds[0]);
    close(fds[1]);
    close(pipefd[0]);
    close(pipefd[1]);
}

T(pump_splice_steps_over_urgent_mark) { check_mark(DX_PUMP_SPLICE, 0, 3); }
T(pump_splice_steps_over_urgent_mark_large) { check_mark(DX_PUMP_SPLICE, 0, 200000); }
T(pump_buffered_reports_urgent_byte) { check_mark(0, 0, 200000); }
T(pump_splice_inline_urgent_byte) { check_mark(DX_PUMP_SPLICE, 1, 3); }
T(pump_buffered_inline_urgent_byte) { check_mark(0, 1, 200000); }
