/* helpers.h: small shared helpers for the libduplex unit tests.
 * Every helper is static inline so a test file may use any subset of them.
 * Test files define _GNU_SOURCE before including this header. */
#ifndef DUPLEX_TEST_HELPERS_H
#define DUPLEX_TEST_HELPERS_H

#include <criterion/criterion.h>

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "duplex.h"

/* Per-test wall-clock bound: SIGALRM (default action) kills the test
 * process, which criterion reports as a crash. */
#define H_ALARM_SECONDS 15

static inline void h_alarm(unsigned seconds)
{
    signal(SIGALRM, SIG_DFL);
    alarm(seconds);
}

static inline uint64_t h_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static inline void h_sleep_ms(unsigned ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
        ;
}

/* A loop on the backend chosen by DUPLEX_BACKEND (or the default). */
static inline dx_loop *h_loop(void)
{
    int err = 0;
    dx_loop *loop = dx_loop_new(NULL, &err);
    cr_assert_not_null(loop, "dx_loop_new(NULL): %s", dx_strerror(err));
    const char *want = getenv("DUPLEX_BACKEND");
    if (want && *want)
        cr_assert_str_eq(dx_loop_backend(loop), want);
    return loop;
}

static inline void h_set_nonblock(int fd, int on)
{
    int fl = fcntl(fd, F_GETFL);
    cr_assert_geq(fl, 0);
    fl = on ? (fl | O_NONBLOCK) : (fl & ~O_NONBLOCK);
    cr_assert_eq(fcntl(fd, F_SETFL, fl), 0);
}

static inline int h_is_nonblock(int fd)
{
    int fl = fcntl(fd, F_GETFL);
    cr_assert_geq(fl, 0);
    return (fl & O_NONBLOCK) != 0;
}

static inline int h_is_cloexec(int fd)
{
    int fl = fcntl(fd, F_GETFD);
    cr_assert_geq(fl, 0);
    return (fl & FD_CLOEXEC) != 0;
}

/* A pipe; both ends non-blocking if nonblock. */
static inline void h_pipe(int fds[2], int nonblock)
{
    cr_assert_eq(pipe2(fds, O_CLOEXEC | (nonblock ? O_NONBLOCK : 0)), 0, "pipe2: %s",
                 strerror(errno));
}

/* A connected AF_UNIX stream socket pair. */
static inline void h_socketpair(int fds[2], int nonblock)
{
    cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | (nonblock ? SOCK_NONBLOCK : 0), 0,
                            fds),
                 0, "socketpair: %s", strerror(errno));
}

/* 127.0.0.1:port */
static inline dx_addr h_addr4(int port)
{
    dx_addr a;
    cr_assert_eq(dx_addr_ip(&a, "127.0.0.1", port), 0);
    return a;
}

/* A listener on 127.0.0.1 with an ephemeral port; *port receives it. */
static inline int h_listen4(int backlog, int *port)
{
    dx_addr a = h_addr4(0);
    dx_listen_opts o = {0};
    o.backlog = backlog;
    int fd = dx_listen(&a, &o);
    cr_assert_geq(fd, 0, "dx_listen: %s", dx_strerror(fd));
    dx_addr local;
    cr_assert_eq(dx_sock_local(fd, &local), 0);
    if (port)
        *port = dx_addr_port(&local);
    return fd;
}

static inline int h_bound_port(int *fdp)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    cr_assert_geq(fd, 0);
    dx_addr a = h_addr4(0);
    cr_assert_eq(bind(fd, (struct sockaddr *)&a.ss, a.len), 0);
    dx_addr local;
    cr_assert_eq(dx_sock_local(fd, &local), 0);
    *fdp = fd;
    return dx_addr_port(&local);
}

/* A loopback TCP port that refuses connections until the test ends: held by
 * a socket bound to it that never listens (the kernel answers a SYN with
 * RST), so no process running alongside can listen there, as one released
 * a moment ago could be (CI's -z flake, tests/pylib/dxtest.py closed_port()).
 * The descriptor is left open: criterion runs each test in its own process. */
static inline int h_closed_port(void)
{
    int fd;
    return h_bound_port(&fd);
}

/* A loopback TCP port free a moment ago (bound, then released): for a test
 * that binds it itself, never for one that must be refused. */
static inline int h_free_port(void)
{
    int fd, port = h_bound_port(&fd);
    close(fd);
    return port;
}

/* poll() one fd for events (POLLIN/POLLOUT) up to ms; returns revents. */
static inline int h_wait_fd(int fd, short events, int ms)
{
    struct pollfd p = {fd, events, 0};
    int n;
    do
        n = poll(&p, 1, ms);
    while (n < 0 && errno == EINTR);
    cr_assert_geq(n, 0, "poll: %s", strerror(errno));
    return n ? p.revents : 0;
}

/* A connected loopback TCP pair: fds[0] the connecting side, fds[1] the
 * accepted side. Both blocking unless nonblock. */
static inline void h_tcp_pair(int fds[2], int nonblock)
{
    int port;
    int lfd = h_listen4(4, &port);
    int c = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    cr_assert_geq(c, 0);
    dx_addr a = h_addr4(port);
    cr_assert_eq(connect(c, (struct sockaddr *)&a.ss, a.len), 0, "connect: %s", strerror(errno));
    cr_assert(h_wait_fd(lfd, POLLIN, 5000) & POLLIN);
    int s = dx_accept(lfd, NULL);
    cr_assert_geq(s, 0, "dx_accept: %s", dx_strerror(s));
    close(lfd);
    h_set_nonblock(c, nonblock);
    h_set_nonblock(s, nonblock);
    fds[0] = c;
    fds[1] = s;
}

/* Write until the fd would block (fd must be non-blocking); returns bytes. */
static inline size_t h_fill_fd(int fd)
{
    static char junk[65536];
    size_t total = 0;
    for (;;) {
        ssize_t n = send(fd, junk, sizeof junk, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n < 0 && errno == ENOTSOCK)
            n = write(fd, junk, sizeof junk);
        if (n < 0) {
            cr_assert(errno == EAGAIN || errno == EWOULDBLOCK, "fill: %s", strerror(errno));
            return total;
        }
        total += (size_t)n;
    }
}

/* Read and discard everything readable now (non-blocking fd); returns bytes,
 * and sets *eof if end of file was seen. */
static inline size_t h_drain_fd(int fd, int *eof)
{
    static char junk[65536];
    size_t total = 0;
    for (;;) {
        ssize_t n = read(fd, junk, sizeof junk);
        if (n == 0) {
            if (eof)
                *eof = 1;
            return total;
        }
        if (n < 0) {
            cr_assert(errno == EAGAIN || errno == EWOULDBLOCK, "drain: %s", strerror(errno));
            return total;
        }
        total += (size_t)n;
    }
}

/* Write all of buf to a blocking fd. */
static inline void h_write_all(int fd, const void *buf, size_t n)
{
    const char *p = buf;
    while (n > 0) {
        ssize_t k = write(fd, p, n);
        if (k < 0 && errno == EINTR)
            continue;
        cr_assert_gt(k, 0, "write: %s", strerror(errno));
        p += k;
        n -= (size_t)k;
    }
}

/* Read exactly n bytes from a blocking fd (fails at early EOF). */
static inline void h_read_all(int fd, void *buf, size_t n)
{
    char *p = buf;
    while (n > 0) {
        ssize_t k = read(fd, p, n);
        if (k < 0 && errno == EINTR)
            continue;
        cr_assert_gt(k, 0, "read: %s", k == 0 ? "early EOF" : strerror(errno));
        p += k;
        n -= (size_t)k;
    }
}

/* A guard timer that stops the loop after ms: dx_loop_run() then returns
 * even if a test leaves something started. */
static inline void h_guard_cb(dx_loop *loop, dx_timer *t)
{
    int *fired = t->data;
    if (fired)
        *fired = 1;
    dx_loop_stop(loop);
}

/* Run the loop for at most ms (a guard timer stops it). Returns 1 if the
 * guard stopped it, 0 if it ended otherwise (dx_loop_stop() from a callback).
 * While the guard runs the loop never ends by itself for lack of work. */
static inline int h_run_for(dx_loop *loop, uint64_t ms)
{
    int fired = 0;
    dx_timer guard;
    dx_timer_init(&guard, h_guard_cb, &fired);
    dx_loop_update_time(loop);
    cr_assert_eq(dx_timer_start(loop, &guard, ms, 0), 0);
    int rc = dx_loop_run(loop);
    cr_assert_eq(rc, 0, "dx_loop_run: %s", dx_strerror(rc));
    dx_timer_stop(loop, &guard);
    return fired;
}

/* Run the loop until it ends (nothing left, or dx_loop_stop()); the test's
 * alarm bounds it. */
static inline void h_run(dx_loop *loop)
{
    int rc = dx_loop_run(loop);
    cr_assert_eq(rc, 0, "dx_loop_run: %s", dx_strerror(rc));
}

/* Memory for an object the test lets go of while the library may still
 * hold it: h_guarded_free() makes its pages inaccessible for the rest of the
 * test (never reused), so a touch after it crashes the test even without
 * ASan (criterion reports the crash) and `make mutants` can see the bug. */
static inline void *h_guarded_new(size_t n)
{
    void *p = mmap(NULL, n, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    cr_assert_neq(p, MAP_FAILED, "mmap: %s", strerror(errno));
    return p; /* zeroed */
}

static inline void h_guarded_free(void *p, size_t n)
{
    cr_assert_eq(mprotect(p, n, PROT_NONE), 0, "mprotect: %s", strerror(errno));
}

/* 1 if an IPv6 loopback socket can be bound here. */
static inline int h_have_ipv6(void)
{
    int fd = socket(AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return 0;
    struct sockaddr_in6 sa = {0};
    sa.sin6_family = AF_INET6;
    sa.sin6_addr = in6addr_loopback;
    int ok = bind(fd, (struct sockaddr *)&sa, sizeof sa) == 0;
    close(fd);
    return ok;
}

/* Counting SIGPIPE handler: a test installs it to observe (not ignore)
 * SIGPIPE; the count must stay 0 when the library writes to sockets. */
static volatile sig_atomic_t h_sigpipe_count;

static inline void h_sigpipe_handler(int sig)
{
    (void)sig;
    h_sigpipe_count++;
}

static inline void h_count_sigpipe(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = h_sigpipe_handler;
    sigemptyset(&sa.sa_mask);
    cr_assert_eq(sigaction(SIGPIPE, &sa, NULL), 0);
    h_sigpipe_count = 0;
}

/* Number of open descriptors of this process. */
static inline int h_count_fds(void)
{
    int n = 0;
    for (int fd = 0; fd < 4096; fd++)
        if (fcntl(fd, F_GETFD) >= 0)
            n++;
    return n;
}

/* A private temporary directory; path written to buf (>= 64 bytes). */
static inline void h_tmpdir(char *buf, size_t len)
{
    snprintf(buf, len, "/tmp/dxtest.XXXXXX");
    cr_assert_not_null(mkdtemp(buf), "mkdtemp: %s", strerror(errno));
}

/* A simple deterministic PRNG (xorshift64*), independent of libc rand(). */
static inline uint64_t h_rand(uint64_t *state)
{
    uint64_t x = *state;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *state = x;
    return x * 0x2545F4914F6CDD1DULL;
}

/* FNV-1a 64 running hash. */
static inline uint64_t h_fnv(uint64_t h, const void *data, size_t n)
{
    const unsigned char *p = data;
    for (size_t i = 0; i < n; i++) {
        h ^= p[i];
        h *= 0x100000001b3ULL;
    }
    return h;
}
#define H_FNV_INIT 0xcbf29ce484222325ULL

#endif
