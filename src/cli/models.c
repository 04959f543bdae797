/* models.c: the server strategies besides the event loop (S1.4), for
 * --model fork and --model thread: a process or a thread per client, each
 * running a blocking echo with half-close (the shared-state modes cannot be
 * split across processes; serve.c refuses them at start-up). --threads N runs
 * N event loops on N threads, each with its own SO_REUSEPORT listener. */
#define _GNU_SOURCE
#include "cli.h"
#include "os.h"

#include <errno.h>
#include <pthread.h>
#include <semaphore.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <unistd.h>

static atomic_int live_threads;

/* Echo until end of input, then pass the half-close on. Blocking I/O, an
 * idle timeout through SO_RCVTIMEO and SO_SNDTIMEO: a client that sends
 * nothing, or stops reading what comes back, is closed after it. */
static void echo_blocking(int fd, long idle_timeout_ms)
{
    char buf[64 * 1024];
    dx_set_nonblock(fd, 0);
    if (idle_timeout_ms > 0) {
#ifdef _WIN32
        DWORD tv = (DWORD)idle_timeout_ms; /* Winsock takes milliseconds */
#else
        struct timeval tv = {idle_timeout_ms / 1000, (idle_timeout_ms % 1000) * 1000};
#endif
        dx__sock_setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
        dx__sock_setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    }
    for (;;) {
        ssize_t n = dx__sock_recv(fd, buf, sizeof buf, 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        for (ssize_t off = 0; off < n;) {
            ssize_t w = dx__sock_send(fd, buf + off, (size_t)(n - off), MSG_NOSIGNAL);
            if (w < 0 && errno == EINTR)
                continue;
            if (w < 0)
                goto out;
            off += w;
        }
    }
    dx__sock_shutdown(fd, SHUT_WR);
out:
    dx__sock_close(fd);
}

/* --ssl: the echo through libduplex's TLS, on a loop of this thread's own
 * (poll: one descriptor, nothing more to set up): one pump reads the
 * client and writes back to it, half-close passed on (close_notify); an
 * idle client is closed after --idle-timeout. */
struct echo_tls {
    dx_pump pump;
    dx_timer idle;
    long idle_timeout_ms;
};

static void echo_tls_done(dx_pump *p, int error, int in_read)
{
    (void)error, (void)in_read;
    dx_loop_stop(p->loop);
}

static void echo_tls_idle(dx_loop *loop, dx_timer *t)
{
    struct echo_tls *e = t->data;
    if (dx_loop_now(loop) - e->pump.last_activity >= (uint64_t)e->idle_timeout_ms)
        dx_loop_stop(loop);
}

static void echo_tls(const struct options *o, int fd, const char *name)
{
    int err = 0;
    dx_loop *loop = dx_loop_new("poll", &err);
    dx_tls *t = NULL;
    if (!loop)
        cli_info(o, "%s: event loop: %s, closing", name, dx_strerror(err));
    if (loop && cli_tls_accept_one(loop, o, fd, name, &t) == 0) {
        struct echo_tls e = {.idle_timeout_ms = o->idle_timeout_ms};
        dx_endpoint ep;
        dx_endpoint_init(&ep, fd);
        dx_endpoint_set_tls(&ep, t);
        dx_timer_init(&e.idle, echo_tls_idle, &e);
        int rc = dx_pump_start(loop, &e.pump, &ep, &ep, 64 * 1024, DX_PUMP_SHUTDOWN, echo_tls_done, &e);
        if (rc == 0 && e.idle_timeout_ms > 0) {
            uint64_t period = (uint64_t)e.idle_timeout_ms / 4;
            dx_timer_start(loop, &e.idle, period < 50 ? 50 : period, period < 50 ? 50 : period);
        }
        if (rc == 0)
            dx_loop_run(loop);
        dx_timer_stop(loop, &e.idle);
        dx_pump_stop(&e.pump);
        cli_tls_ended(o, t, name, 1);
        cli_tls_goodbye(t); /* close_notify, unless the half-close sent it */
        dx_tls_free(t);
    }
    if (loop)
        dx_loop_free(loop);
    dx__sock_close(fd);
}

struct thread_client {
    int fd;
    const struct options *o;
    char name[DX_ADDR_STRLEN];
};

static void *thread_main(void *arg)
{
    struct thread_client tc = *(struct thread_client *)arg;
    free(arg);
    if (tc.o->tls)
        echo_tls(tc.o, tc.fd, tc.name);
    else
        echo_blocking(tc.fd, tc.o->idle_timeout_ms);
    atomic_fetch_sub(&live_threads, 1);
    return NULL;
}

int model_clients(const struct options *o)
{
    return o->model == MODEL_THREAD ? atomic_load(&live_threads) : exec_children();
}

int model_spawn(const struct options *o, int fd, const char *name)
{
    if (o->model == MODEL_FORK) {
        pid_t pid = exec_fork();
        if (pid < 0)
            return -errno;
        if (pid == 0) {
            exec_close_inherited(fd); /* the listening sockets above all */
            if (o->tls)
                echo_tls(o, fd, name);
            else
                echo_blocking(fd, o->idle_timeout_ms);
            _exit(0);
        }
        dx__sock_close(fd);
        return 0;
    }
    struct thread_client *tc = malloc(sizeof *tc);
    if (!tc)
        return -ENOMEM;
    tc->fd = fd;
    tc->o = o;
    snprintf(tc->name, sizeof tc->name, "%s", name);
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    pthread_attr_setstacksize(&attr, 256 * 1024); /* echo needs 64 KiB + a little (TLS: OpenSSL's handshake) */
    atomic_fetch_add(&live_threads, 1);
    int rc = pthread_create(&(pthread_t){0}, &attr, thread_main, tc);
    pthread_attr_destroy(&attr);
    if (rc != 0) {
        atomic_fetch_sub(&live_threads, 1);
        free(tc);
        return -rc;
    }
    return 0;
}

/* ---- --threads N: N loops sharing the port ---- */

#ifdef _WIN32
/* Windows has no SO_REUSEPORT: every loop watches a copy of the first
 * loop's listening socket (WSAPoll wakes them all, one accept() wins, the
 * others get EAGAIN and go on). 1 + the copy (non-blocking, not inherited
 * by --exec children), or 0 with errno set. */
static int share_listener(int fd)
{
    WSAPROTOCOL_INFOW info;
    if (WSADuplicateSocketW((SOCKET)fd, GetCurrentProcessId(), &info) != 0) {
        dx__sock_errno();
        return 0;
    }
    SOCKET s = WSASocketW(FROM_PROTOCOL_INFO, FROM_PROTOCOL_INFO, FROM_PROTOCOL_INFO, &info, 0,
                          WSA_FLAG_OVERLAPPED | WSA_FLAG_NO_HANDLE_INHERIT);
    if (s == INVALID_SOCKET) {
        dx__sock_errno();
        return 0;
    }
    if (dx__sock_nonblock((int)s, 1) < 0) {
        int e = errno;
        dx__sock_close((int)s);
        errno = e;
        return 0;
    }
    return (int)s + 1;
}
#endif

struct loop_thread {
    struct options o;
    char port[16];
    pthread_t tid;
    int code;
    sem_t *opened;  /* posted once this loop listens (or failed to) */
};

static void *loop_thread_main(void *arg)
{
    struct loop_thread *t = arg;
    int err;
    dx_loop *loop = dx_loop_new(t->o.backend, &err);
    if (!loop) {
        cli_error("thread event loop: %s", dx_strerror(err));
        t->code = EXIT_IO;
        sem_post(t->opened);
        return NULL;
    }
    struct server *sv = serve_open(&t->o, loop, &t->code);
    sem_post(t->opened);
    if (sv) {
        t->code = serve_run(sv);
        serve_close(sv);
    }
    dx_loop_free(loop);
    return NULL;
}

int cli_serve_threads(const struct options *o, dx_loop *loop)
{
    /* the first loop binds (port 0 resolved here), the others join it */
    struct options first = *o;
    first.reuseport = !DX_OS_WINDOWS; /* Windows: the loops share one socket instead */
    first.threads = 1;
    first.quiet = 1; /* announced once every loop listens: no client lands early on one */
    static sem_t opened;
    sem_init(&opened, 0, 0);
    int code;
    struct server *sv = serve_open(&first, loop, &code);
    if (!sv)
        return code;
    dx_addr bound;
    int port = dx_sock_local(serve_listen_fd(sv), &bound) == 0 ? dx_addr_port(&bound) : -1;
    int n = o->threads - 1;
    /* static: the threads serve until the process ends and are never joined */
    static struct loop_thread *ts;
    ts = calloc((size_t)n, sizeof *ts);
    if (!ts) {
        serve_close(sv);
        return EXIT_IO;
    }
    int started = 0;
    for (int i = 0; i < n; i++) {
        ts[i].o = first;
        ts[i].o.quiet = 1;
        snprintf(ts[i].port, sizeof ts[i].port, "%d", port);
        ts[i].o.port = ts[i].port;
#ifdef _WIN32
        if (!(ts[i].o.shared_listener = share_listener(serve_listen_fd(sv)))) {
            cli_error("--threads: cannot share the listening socket with thread %d: %s", i + 2,
                      strerror(errno));
            break;
        }
#endif
        ts[i].opened = &opened;
        if (pthread_create(&ts[i].tid, NULL, loop_thread_main, &ts[i]) != 0) {
            cli_error("--threads: cannot start thread %d: %s", i + 2, strerror(errno));
            break;
        }
        started++;
    }
    for (int i = 0; i < started; i++)
        sem_wait(&opened);
    serve_announce(sv, o);
    cli_info(o, "serving with %d event loop%s on %d thread%s", started + 1, cli_s((unsigned)started + 1),
             started + 1, cli_s((unsigned)started + 1));
    code = serve_run(sv);
    serve_end(o); /* the totals of every loop; no child left behind */
    serve_close(sv);
    return code; /* the process ends, and the other loops with it */
}
