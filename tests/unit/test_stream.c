/* test_stream.c: dx_stream in the program issue 10 (item 23) describes: an
 * echo server written from duplex.h alone, which frees a client in its
 * callbacks, driven by clients that reset (SO_LINGER 0) mid-stream while the
 * server writes to them. Run under ASan (make check): a callback run from
 * inside dx_stream_write()/dx_stream_shutdown() frees the client under the
 * code that called them. Only API that predates the rule is used, so the
 * file also builds against the old library. */
#define _GNU_SOURCE
#include "helpers.h"

#define T(name) Test(stream, name, .timeout = 60, .init = st_init)

static void st_init(void)
{
    h_alarm(50);
    signal(SIGPIPE, SIG_IGN);
}

/* ---- the server, as a program would write it ---- */

struct server {
    dx_loop *loop;
    dx_io lio;
    int lfd;
    int accepted, freed, nclients;
    size_t echoed;
    int write_found_failure; /* writes that returned with the stream failed */
};

struct eclient {
    struct server *sv;
    dx_stream st;
    int fd;
    int eof;
    size_t echoed;
};

static void eclient_free(struct eclient *c)
{
    dx_stream_close(&c->st);
    close(c->fd);
    c->sv->nclients--;
    c->sv->freed++;
    memset(c, 0x5a, sizeof *c); /* a stale use reads garbage even without ASan */
    free(c);
}

static void echo_event(dx_stream *s, int error)
{
    struct eclient *c = s->data;
    if (error < 0 || (c->eof && s->shut_done)) {
        eclient_free(c);
        return;
    }
    if (!c->eof && dx_stream_room(s) >= dx_stream_queued(s))
        dx_stream_read_start(s);
}

static void echo_read(dx_stream *s, const char *data, size_t n)
{
    struct eclient *c = s->data;
    if (n == 0) {
        dx_stream_shutdown(s);
        c->eof = 1;
        if (s->shut_done)
            eclient_free(c);
        return;
    }
    int rc = dx_stream_write(s, data, n);
    if (rc == -ENOBUFS) {
        dx_stream_read_stop(s); /* resumed by the drain event */
        return;
    }
    if (s->failed)
        c->sv->write_found_failure++;
    c->echoed += n;
    c->sv->echoed += n;
    if (dx_stream_room(s) < n)
        dx_stream_read_stop(s);
}

static void on_accept(dx_loop *loop, dx_io *io, int events)
{
    (void)events;
    struct server *sv = io->data;
    for (;;) {
        int fd = dx_accept(sv->lfd, NULL);
        if (fd < 0)
            return;
        struct eclient *c = calloc(1, sizeof *c);
        cr_assert_not_null(c);
        c->sv = sv;
        c->fd = fd;
        cr_assert_eq(dx_stream_init(loop, &c->st, fd, 256 * 1024, echo_read, echo_event, c), 0);
        cr_assert_eq(dx_stream_read_start(&c->st), 0);
        sv->accepted++;
        sv->nclients++;
    }
}

/* ---- the clients ---- */

static int client_connect(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    cr_assert_geq(fd, 0);
    dx_addr a = h_addr4(port);
    cr_assert_eq(connect(fd, (struct sockaddr *)&a.ss, a.len), 0, "connect: %s", strerror(errno));
    h_set_nonblock(fd, 1);
    return fd;
}

static void reset_close(int fd)
{
    struct linger lg = {1, 0};
    cr_assert_eq(setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg), 0);
    close(fd);
}

/* Run the server's loop until cond() holds (bounded). */
static void run_until(struct server *sv, int (*cond)(struct server *), const char *what)
{
    for (int i = 0; i < 2000 && !cond(sv); i++)
        h_run_for(sv->loop, 5);
    cr_assert(cond(sv), "server: %s (accepted %d, freed %d)", what, sv->accepted, sv->freed);
}

static int g_want;
static int all_accepted(struct server *sv) { return sv->accepted >= g_want; }
static int all_freed(struct server *sv) { return sv->freed >= g_want; }

#define ROUNDS 20
#define CLIENTS 16

T(echo_server_frees_clients_that_reset_mid_stream)
{
    struct server sv;
    memset(&sv, 0, sizeof sv);
    sv.loop = h_loop();
    int port;
    sv.lfd = h_listen4(256, &port);
    dx_io_init(&sv.lio, sv.lfd, on_accept, &sv);
    cr_assert_eq(dx_io_set(sv.loop, &sv.lio, DX_READ), 0);

    static char chunk[200 * 1024];
    memset(chunk, 'e', sizeof chunk);
    uint64_t seed = 10;
    g_want = 0;
    for (int round = 0; round < ROUNDS; round++) {
        int fds[CLIENTS];
        for (int i = 0; i < CLIENTS; i++)
            fds[i] = client_connect(port);
        g_want += CLIENTS;
        run_until(&sv, all_accepted, "clients not accepted");
        for (int i = 0; i < CLIENTS; i++) {
            /* some bytes (up to more than the server's queue), maybe the
             * end of input, then a reset: the server is reading, writing
             * the echo, or shutting its side down when it arrives */
            size_t n = 1 + h_rand(&seed) % sizeof chunk;
            ssize_t w = send(fds[i], chunk, n, MSG_NOSIGNAL);
            (void)w;
            if (i % 3 == 1)
                shutdown(fds[i], SHUT_WR);
            if (i % 4 == 2) /* let the server get some way first */
                h_run_for(sv.loop, 1);
            reset_close(fds[i]);
        }
        run_until(&sv, all_freed, "clients not freed");
    }
    cr_assert_eq(sv.nclients, 0);
    cr_assert_gt(sv.echoed, 0);
    cr_log_info("echoed %zu bytes, %d writes found the reset", sv.echoed, sv.write_found_failure);
    cr_assert_gt(sv.write_found_failure, 0, "no write met a reset: the scenario did not happen");
    dx_io_stop(sv.loop, &sv.lio);
    close(sv.lfd);
    dx_loop_free(sv.loop);
}

/* The plain case still works: a client that sends, ends its side and reads
 * everything back gets its bytes, and the server frees it. */
T(echo_server_echoes_and_frees)
{
    struct server sv;
    memset(&sv, 0, sizeof sv);
    sv.loop = h_loop();
    int port;
    sv.lfd = h_listen4(16, &port);
    dx_io_init(&sv.lio, sv.lfd, on_accept, &sv);
    cr_assert_eq(dx_io_set(sv.loop, &sv.lio, DX_READ), 0);
    int fd = client_connect(port);
    g_want = 1;
    static char data[300 * 1024], back[300 * 1024];
    for (size_t i = 0; i < sizeof data; i++)
        data[i] = (char)(i * 7);
    size_t sent = 0, got = 0;
    int eof = 0;
    for (int i = 0; i < 20000 && !eof; i++) {
        if (sent < sizeof data) {
            ssize_t w = send(fd, data + sent, sizeof data - sent, MSG_NOSIGNAL);
            if (w > 0)
                sent += (size_t)w;
            if (sent == sizeof data)
                shutdown(fd, SHUT_WR);
        }
        ssize_t r = read(fd, back + got, sizeof back - got);
        if (r > 0)
            got += (size_t)r;
        else if (r == 0)
            eof = 1;
        h_run_for(sv.loop, 1);
    }
    cr_assert(eof);
    cr_assert_eq(got, sizeof data);
    cr_assert_eq(memcmp(back, data, sizeof data), 0);
    run_until(&sv, all_freed, "client not freed");
    close(fd);
    dx_io_stop(sv.loop, &sv.lio);
    close(sv.lfd);
    dx_loop_free(sv.loop);
}
