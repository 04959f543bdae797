/* test_buf.c: the ring buffer and its fd helpers. */
#define _GNU_SOURCE
#include "helpers.h"

#define T(name) Test(buf, name, .timeout = 20, .init = buf_init)

static void buf_init(void) { h_alarm(H_ALARM_SECONDS); }

T(init_empty)
{
    dx_buf b;
    cr_assert_eq(dx_buf_init(&b, 16), 0);
    cr_assert_eq(dx_buf_len(&b), 0);
    cr_assert_eq(dx_buf_room(&b), 16);
    char out[4];
    cr_assert_eq(dx_buf_get(&b, out, sizeof out), 0);
    dx_buf_free(&b);
    dx_buf_free(&b); /* freed state is harmless to free again */
}

T(zero_capacity)
{
    dx_buf b;
    cr_assert_eq(dx_buf_init(&b, 0), 0);
    cr_assert_eq(dx_buf_room(&b), 0);
    cr_assert_eq(dx_buf_put(&b, "x", 1), 0);
    int p[2];
    h_pipe(p, 1);
    cr_assert_eq(write(p[1], "x", 1), 1);
    cr_assert_eq(dx_buf_read_fd(&b, p[0]), -ENOBUFS);
    cr_assert_eq(dx_buf_write_fd(&b, p[1], 0), 0);
    close(p[0]);
    close(p[1]);
    dx_buf_free(&b);
}

T(put_get_wraparound)
{
    dx_buf b;
    cr_assert_eq(dx_buf_init(&b, 8), 0);
    char out[16];
    cr_assert_eq(dx_buf_put(&b, "abcdef", 6), 6);
    cr_assert_eq(dx_buf_len(&b), 6);
    cr_assert_eq(dx_buf_room(&b), 2);
    cr_assert_eq(dx_buf_get(&b, out, 4), 4);
    cr_assert_eq(memcmp(out, "abcd", 4), 0);
    cr_assert_eq(dx_buf_len(&b), 2);
    /* head is at 4: this put wraps past the end */
    cr_assert_eq(dx_buf_put(&b, "ghijkl", 6), 6);
    cr_assert_eq(dx_buf_len(&b), 8);
    cr_assert_eq(dx_buf_room(&b), 0);
    /* get across the wrap */
    cr_assert_eq(dx_buf_get(&b, out, sizeof out), 8);
    cr_assert_eq(memcmp(out, "efghijkl", 8), 0);
    cr_assert_eq(dx_buf_len(&b), 0);
    cr_assert_eq(dx_buf_room(&b), 8);
    dx_buf_free(&b);
}

T(full_put_returns_fewer)
{
    dx_buf b;
    cr_assert_eq(dx_buf_init(&b, 5), 0);
    cr_assert_eq(dx_buf_put(&b, "0123456789", 10), 5);
    cr_assert_eq(dx_buf_room(&b), 0);
    cr_assert_eq(dx_buf_put(&b, "x", 1), 0);
    char out[8] = {0};
    cr_assert_eq(dx_buf_get(&b, out, 2), 2);
    cr_assert_eq(memcmp(out, "01", 2), 0);
    cr_assert_eq(dx_buf_put(&b, "abc", 3), 2);
    cr_assert_eq(dx_buf_get(&b, out, 8), 5);
    cr_assert_eq(memcmp(out, "234ab", 5), 0);
    dx_buf_free(&b);
}

T(get_partial)
{
    dx_buf b;
    cr_assert_eq(dx_buf_init(&b, 4), 0);
    cr_assert_eq(dx_buf_put(&b, "wxyz", 4), 4);
    char c;
    const char *want = "wxyz";
    for (int i = 0; i < 4; i++) {
        cr_assert_eq(dx_buf_get(&b, &c, 1), 1);
        cr_assert_eq(c, want[i]);
        cr_assert_eq(dx_buf_len(&b), (size_t)(3 - i));
    }
    cr_assert_eq(dx_buf_get(&b, &c, 1), 0);
    dx_buf_free(&b);
}

/* read_fd/write_fd through a pipe, with the free space and the data split
 * in two segments by the wrap. */
T(fd_wraparound_segments)
{
    int p[2];
    h_pipe(p, 1);
    dx_buf b;
    cr_assert_eq(dx_buf_init(&b, 10), 0);
    char out[32];

    /* move head to 6 */
    cr_assert_eq(dx_buf_put(&b, "______", 6), 6);
    cr_assert_eq(dx_buf_get(&b, out, 6), 6);
    cr_assert_eq(dx_buf_put(&b, "AB", 2), 2); /* data at 6..7 (or 0..1 if rewound) */

    /* read 8 bytes from the pipe: the free space is split (4 at the end, 4
     * at the start) or contiguous; either way all 8 must land in order */
    cr_assert_eq(write(p[1], "cdefghij", 8), 8);
    cr_assert_eq(dx_buf_read_fd(&b, p[0]), 8);
    cr_assert_eq(dx_buf_len(&b), 10);
    cr_assert_eq(dx_buf_room(&b), 0);
    cr_assert_eq(dx_buf_read_fd(&b, p[0]), -ENOBUFS);

    /* a full buffer leaves the pipe untouched */
    cr_assert_eq(write(p[1], "Z", 1), 1);
    cr_assert_eq(dx_buf_read_fd(&b, p[0]), -ENOBUFS);

    /* write everything out: the data is split in two segments */
    cr_assert_eq(dx_buf_write_fd(&b, p[1], 0), 10);
    cr_assert_eq(dx_buf_len(&b), 0);
    ssize_t n = read(p[0], out, sizeof out);
    cr_assert_eq(n, 11);
    cr_assert_eq(memcmp(out, "ZABcdefghij", 11), 0);

    /* nothing buffered: write_fd writes nothing */
    cr_assert_eq(dx_buf_write_fd(&b, p[1], 0), 0);
    cr_assert_eq(read(p[0], out, sizeof out), -1);
    cr_assert_eq(errno, EAGAIN);
    close(p[0]);
    close(p[1]);
    dx_buf_free(&b);
}

T(read_fd_partial_fill_and_eof)
{
    int p[2];
    h_pipe(p, 1);
    dx_buf b;
    cr_assert_eq(dx_buf_init(&b, 4), 0);
    cr_assert_eq(write(p[1], "123456", 6), 6);
    cr_assert_eq(dx_buf_read_fd(&b, p[0]), 4);
    char out[8];
    cr_assert_eq(dx_buf_get(&b, out, 3), 3);
    cr_assert_eq(memcmp(out, "123", 3), 0);
    cr_assert_eq(dx_buf_read_fd(&b, p[0]), 2);
    cr_assert_eq(dx_buf_get(&b, out, 8), 3);
    cr_assert_eq(memcmp(out, "456", 3), 0);
    close(p[1]);
    cr_assert_eq(dx_buf_read_fd(&b, p[0]), 0, "EOF");
    cr_assert_eq(dx_buf_len(&b), 0);
    close(p[0]);
    dx_buf_free(&b);
}

T(read_fd_eagain_on_empty_pipe)
{
    int p[2];
    h_pipe(p, 1);
    dx_buf b;
    cr_assert_eq(dx_buf_init(&b, 64), 0);
    cr_assert_eq(dx_buf_read_fd(&b, p[0]), -EAGAIN);
    cr_assert_eq(dx_buf_len(&b), 0);
    close(p[0]);
    close(p[1]);
    dx_buf_free(&b);
}

T(read_fd_bad_fd)
{
    dx_buf b;
    cr_assert_eq(dx_buf_init(&b, 8), 0);
    cr_assert_eq(dx_buf_read_fd(&b, -1), -EBADF);
    cr_assert_eq(dx_buf_put(&b, "x", 1), 1);
    cr_assert_eq(dx_buf_write_fd(&b, -1, 0), -EBADF);
    cr_assert_eq(dx_buf_write_fd(&b, -1, 1), -EBADF);
    cr_assert_eq(dx_buf_len(&b), 1, "a failed write keeps the data");
    dx_buf_free(&b);
}

T(write_fd_eagain_on_full_pipe)
{
    int p[2];
    h_pipe(p, 1);
    h_fill_fd(p[1]);
    dx_buf b;
    cr_assert_eq(dx_buf_init(&b, 8), 0);
    cr_assert_eq(dx_buf_put(&b, "data", 4), 4);
    cr_assert_eq(dx_buf_write_fd(&b, p[1], 0), -EAGAIN);
    cr_assert_eq(dx_buf_len(&b), 4);
    close(p[0]);
    close(p[1]);
    dx_buf_free(&b);
}

/* A socket whose peer has closed: EPIPE (or ECONNRESET), and no SIGPIPE.
 * SIGPIPE is observed with a counting handler, not ignored. */
static void check_write_to_dead_peer(int fds[2])
{
    h_count_sigpipe();
    close(fds[1]);
    dx_buf b;
    cr_assert_eq(dx_buf_init(&b, 4096), 0);
    ssize_t rc = 0;
    /* the first send to a dead TCP peer may still succeed (it provokes the
     * RST); keep going until an error appears */
    for (int i = 0; i < 50 && rc >= 0; i++) {
        dx_buf_put(&b, "0123456789abcdef", 16);
        rc = dx_buf_write_fd(&b, fds[0], 1);
        if (rc >= 0)
            h_sleep_ms(5);
    }
    cr_assert(rc == -EPIPE || rc == -ECONNRESET, "write_fd gave %zd (%s)", rc,
              dx_strerror((int)rc));
    cr_assert_eq(h_sigpipe_count, 0, "SIGPIPE was raised %d time(s)", (int)h_sigpipe_count);
    close(fds[0]);
    dx_buf_free(&b);
}

T(write_fd_dead_unix_peer_no_sigpipe)
{
    int sv[2];
    h_socketpair(sv, 1);
    check_write_to_dead_peer(sv);
}

T(write_fd_dead_tcp_peer_no_sigpipe)
{
    int sv[2];
    h_tcp_pair(sv, 1);
    check_write_to_dead_peer(sv);
}

/* Without the handler, SIGPIPE's default action would kill the test: this
 * test keeps the default disposition and must survive. */
T(write_fd_dead_peer_default_sigpipe_survives)
{
    signal(SIGPIPE, SIG_DFL);
    int sv[2];
    h_socketpair(sv, 1);
    close(sv[1]);
    dx_buf b;
    cr_assert_eq(dx_buf_init(&b, 16), 0);
    dx_buf_put(&b, "hello", 5);
    cr_assert_eq(dx_buf_write_fd(&b, sv[0], 1), -EPIPE);
    close(sv[0]);
    dx_buf_free(&b);
}

T(write_fd_socket_partial)
{
    int sv[2];
    h_socketpair(sv, 1);
    int small = 4096;
    setsockopt(sv[0], SOL_SOCKET, SO_SNDBUF, &small, sizeof small);
    dx_buf b;
    size_t cap = 1 << 20;
    cr_assert_eq(dx_buf_init(&b, cap), 0);
    char *data = malloc(cap);
    for (size_t i = 0; i < cap; i++)
        data[i] = (char)(i * 7 + 3);
    cr_assert_eq(dx_buf_put(&b, data, cap), cap);
    ssize_t n = dx_buf_write_fd(&b, sv[0], 1);
    cr_assert_gt(n, 0);
    cr_assert_lt((size_t)n, cap, "a 1 MiB write to a small socket buffer must be partial");
    cr_assert_eq(dx_buf_len(&b), cap - (size_t)n);
    cr_assert_eq(dx_buf_write_fd(&b, sv[0], 1), -EAGAIN);
    /* the bytes arrive in order */
    char *got = malloc((size_t)n);
    h_set_nonblock(sv[1], 0);
    h_read_all(sv[1], got, (size_t)n);
    cr_assert_eq(memcmp(got, data, (size_t)n), 0);
    free(got);
    free(data);
    close(sv[0]);
    close(sv[1]);
    dx_buf_free(&b);
}

/* ---- randomized comparison against a reference FIFO ---- */

struct model {
    unsigned char *q;
    size_t head, len, cap; /* a plain array window, never wraps */
};

static void model_push(struct model *m, const unsigned char *p, size_t n)
{
    if (m->head + m->len + n > m->cap) {
        memmove(m->q, m->q + m->head, m->len);
        m->head = 0;
    }
    cr_assert_leq(m->head + m->len + n, m->cap);
    memcpy(m->q + m->head + m->len, p, n);
    m->len += n;
}

static void model_pop(struct model *m, unsigned char *p, size_t n)
{
    cr_assert_leq(n, m->len);
    memcpy(p, m->q + m->head, n);
    m->head += n;
    m->len -= n;
}

T(randomized_against_model)
{
    uint64_t seed = 0x9e3779b97f4a7c15ULL;
    const char *env = getenv("DX_TEST_SEED");
    if (env)
        seed = strtoull(env, NULL, 0);
    static const size_t caps[] = {1, 2, 3, 7, 16, 100, 4096};
    int p[2];
    h_pipe(p, 1);
    unsigned char src[9000], got[9000], want[9000];

    for (size_t ci = 0; ci < sizeof caps / sizeof caps[0]; ci++) {
        size_t cap = caps[ci];
        dx_buf b;
        cr_assert_eq(dx_buf_init(&b, cap), 0);
        struct model m = {malloc(cap * 4 + 16), 0, 0, cap * 4 + 16};
        for (int op = 0; op < 3000; op++) {
            uint64_t r = h_rand(&seed);
            size_t n = (size_t)(h_rand(&seed) % (cap + cap / 2 + 2));
            for (size_t i = 0; i < n; i++)
                src[i] = (unsigned char)h_rand(&seed);
            size_t room = cap - m.len;
            switch (r % 4) {
            case 0: { /* put */
                size_t k = dx_buf_put(&b, src, n);
                cr_assert_eq(k, n < room ? n : room, "seed %llu cap %zu op %d: put %zu -> %zu",
                             (unsigned long long)seed, cap, op, n, k);
                model_push(&m, src, k);
                break;
            }
            case 1: { /* get */
                size_t k = dx_buf_get(&b, got, n);
                size_t expect = n < m.len ? n : m.len;
                cr_assert_eq(k, expect, "cap %zu op %d: get %zu -> %zu", cap, op, n, k);
                model_pop(&m, want, k);
                cr_assert_eq(memcmp(got, want, k), 0, "cap %zu op %d: get bytes differ", cap, op);
                break;
            }
            case 2: { /* read_fd of n bytes waiting in the pipe */
                if (n > 0)
                    cr_assert_eq(write(p[1], src, n), (ssize_t)n);
                ssize_t k = dx_buf_read_fd(&b, p[0]);
                if (room == 0) {
                    cr_assert_eq(k, -ENOBUFS, "cap %zu op %d", cap, op);
                } else if (n == 0) {
                    cr_assert_eq(k, -EAGAIN, "cap %zu op %d", cap, op);
                } else {
                    cr_assert_eq(k, (ssize_t)(n < room ? n : room), "cap %zu op %d: read_fd %zd",
                                 cap, op, k);
                    model_push(&m, src, (size_t)k);
                }
                /* drop what the buffer did not take */
                while (read(p[0], got, sizeof got) > 0)
                    ;
                break;
            }
            case 3: { /* write_fd of everything buffered */
                ssize_t k = dx_buf_write_fd(&b, p[1], 0);
                cr_assert_eq(k, (ssize_t)m.len, "cap %zu op %d: write_fd %zd of %zu", cap, op, k,
                             m.len);
                if (k > 0) {
                    model_pop(&m, want, (size_t)k);
                    h_set_nonblock(p[0], 0);
                    h_read_all(p[0], got, (size_t)k);
                    h_set_nonblock(p[0], 1);
                    cr_assert_eq(memcmp(got, want, (size_t)k), 0, "cap %zu op %d: fd bytes differ",
                                 cap, op);
                }
                break;
            }
            }
            cr_assert_eq(dx_buf_len(&b), m.len, "cap %zu op %d: len", cap, op);
            cr_assert_eq(dx_buf_room(&b), cap - m.len, "cap %zu op %d: room", cap, op);
        }
        free(m.q);
        dx_buf_free(&b);
    }
    close(p[0]);
    close(p[1]);
}
