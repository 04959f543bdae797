/* loadgen: a closed-loop TCP load generator for echo servers.
 *
 *   loadgen [options] [MODE] HOST PORT
 *
 * Modes (-m MODE or the first argument):
 *   echo      every connection sends SIZE bytes, waits for the whole echo, checks
 *             every byte, and sends again; latency of each message goes into a
 *             log-linear histogram (default)
 *   connrate  connect, send 1 byte, read it back, close, repeat; msgs_per_s is
 *             connections completed per second, latency is the whole cycle
 *   idle      open CONNS connections, print the JSON line, hold them until SIGTERM
 *
 * One process runs an epoll loop over its connections; -p PROCS forks that many
 * workers that share the connections (to pass the per-process descriptor limit
 * and to use several cores). The parent merges the workers' histograms and
 * prints one JSON line on stdout.
 *
 * Connections are spread over source addresses 127.0.0.1 .. 127.0.0.N (-a N;
 * bound with IP_BIND_ADDRESS_NO_PORT before connect) so that many connections,
 * or many connect/close cycles, do not run out of ephemeral ports.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#ifndef IP_BIND_ADDRESS_NO_PORT
#define IP_BIND_ADDRESS_NO_PORT 24
#endif

/* ---------- log-linear histogram of nanoseconds ---------- */
/* 32 linear sub-buckets per power of two: < 3.2 % relative error. */
#define SUB_BITS 5
#define SUB_N (1u << SUB_BITS)
#define HIST_N (64u * SUB_N)

static unsigned hist_index(uint64_t v)
{
    if (v < SUB_N)
        return (unsigned)v;
    unsigned msb = 63u - (unsigned)__builtin_clzll(v);
    unsigned shift = msb - SUB_BITS;
    return ((shift + 1u) << SUB_BITS) | (unsigned)((v >> shift) & (SUB_N - 1u));
}

/* The middle of bucket i, in nanoseconds. */
static double hist_value(unsigned i)
{
    if (i < SUB_N)
        return i;
    unsigned shift = (i >> SUB_BITS) - 1u;
    uint64_t sub = i & (SUB_N - 1u);
    uint64_t lo = (SUB_N + sub) << shift;
    return (double)lo + (double)(1ull << shift) / 2.0;
}

/* What a worker reports to the parent through a pipe. */
struct report {
    uint64_t msgs;        /* messages (or connect cycles) completed in the window */
    uint64_t errors;      /* connect failures, resets, early EOF, wrong bytes */
    uint64_t established; /* connections open at the end of the connect phase */
    double window_s;      /* length of the measured window */
    uint64_t hist[HIST_N];
};

enum mode { M_ECHO, M_CONNRATE, M_IDLE };

static struct {
    enum mode mode;
    const char *host, *port;
    long conns, procs, naddrs, size;
    double secs, warmup;
    int idle_echo; /* idle: one echo exchange on each connection before holding */
} opt = { M_ECHO, NULL, NULL, 1, 1, 0, 64, 5.0, 1.0, 0 };

static struct sockaddr_in dst;

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void die(const char *what)
{
    perror(what);
    exit(2);
}

/* ---------- one worker ---------- */
enum cstate { C_FREE, C_BACKOFF, C_CONNECTING, C_SEND, C_WAIT, C_IDLE };

struct conn {
    int fd;
    enum cstate st;
    uint32_t id;      /* connection slot number (global) */
    uint32_t seq;     /* message number on this slot */
    size_t sent, rcvd;
    uint64_t t0;      /* start of the message (echo) or of the connect (connrate) */
    uint64_t retry_at;
    unsigned addr;    /* source address index */
    int want_out;     /* EPOLLOUT registered */
};

static struct report *rep;
static int ep;
static unsigned char *scratch;
static size_t scratch_len;
static long inflight, inflight_max = 256, next_addr;

/* Slots waiting for a (re)connect, oldest first. */
static struct conn **pend;
static long pend_cap, pend_head, pend_len;

static void pend_push(struct conn *c)
{
    pend[(pend_head + pend_len++) % pend_cap] = c;
}

static inline unsigned char pattern(const struct conn *c, size_t off)
{
    return (unsigned char)(c->id * 31u + c->seq * 7u + (uint32_t)off);
}

static void set_events(struct conn *c, int out)
{
    struct epoll_event ev = { .events = EPOLLIN | (out ? EPOLLOUT : 0), .data.ptr = c };
    if (epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev) < 0)
        die("epoll_ctl MOD");
    c->want_out = out;
}

/* Start a non-blocking connect on slot c. Returns 0, or -1 (slot goes to backoff). */
static int start_connect(struct conn *c, uint64_t now)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        goto fail;
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (opt.naddrs > 1) {
        struct sockaddr_in src = { .sin_family = AF_INET };
        c->addr = (unsigned)(next_addr++ % opt.naddrs);
        src.sin_addr.s_addr = htonl(0x7f000001u + c->addr);
        setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof one);
        if (bind(fd, (struct sockaddr *)&src, sizeof src) < 0)
            goto fail;
    }
    if (connect(fd, (struct sockaddr *)&dst, sizeof dst) < 0 && errno != EINPROGRESS)
        goto fail;
    c->fd = fd;
    c->st = C_CONNECTING;
    c->t0 = now;
    c->sent = c->rcvd = 0;
    struct epoll_event ev = { .events = EPOLLOUT, .data.ptr = c };
    if (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) < 0)
        die("epoll_ctl ADD");
    c->want_out = 1;
    inflight++;
    return 0;
fail:
    rep->errors++;
    if (fd >= 0)
        close(fd);
    c->fd = -1;
    c->st = C_BACKOFF;
    c->retry_at = now + 10000000ull; /* 10 ms */
    pend_push(c);
    return -1;
}

static long nconnected; /* slots with an established connection */

static void drop(struct conn *c, int error, uint64_t now)
{
    if (c->st == C_CONNECTING)
        inflight--;
    else if (c->st != C_BACKOFF && c->st != C_FREE)
        nconnected--;
    if (error)
        rep->errors++;
    if (c->fd >= 0)
        close(c->fd); /* also removes it from the epoll set */
    c->fd = -1;
    c->st = C_BACKOFF;
    c->retry_at = now + (error ? 10000000ull : 0);
    pend_push(c);
}

/* Send what is left of the current message. 0 ok, -1 error. */
static int do_send(struct conn *c)
{
    size_t total = opt.mode == M_CONNRATE ? 1 : (size_t)opt.size;
    while (c->sent < total) {
        size_t n = total - c->sent;
        if (n > scratch_len)
            n = scratch_len;
        for (size_t i = 0; i < n; i++)
            scratch[i] = pattern(c, c->sent + i);
        ssize_t w = send(c->fd, scratch, n, MSG_NOSIGNAL);
        if (w < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                break;
            if (errno == EINTR)
                continue;
            return -1;
        }
        c->sent += (size_t)w;
    }
    int out = c->sent < total;
    if (out != c->want_out)
        set_events(c, out);
    return 0;
}

static void begin_message(struct conn *c, uint64_t now)
{
    c->seq++;
    c->sent = c->rcvd = 0;
    c->t0 = now;
    c->st = C_WAIT;
}

static int measuring;       /* inside the measured window */
static uint64_t window_start;

/* The connection's socket is connected. */
static void on_connected(struct conn *c, uint64_t now)
{
    inflight--;
    nconnected++;
    if (opt.mode == M_IDLE && !opt.idle_echo) {
        c->st = C_IDLE;
        set_events(c, 0);
        return;
    }
    if (opt.mode == M_CONNRATE)
        c->st = C_WAIT, c->sent = c->rcvd = 0; /* t0 stays the connect start */
    else
        begin_message(c, now);
    if (do_send(c) < 0)
        drop(c, 1, now);
}

static void on_readable(struct conn *c, uint64_t now)
{
    size_t total = opt.mode == M_CONNRATE ? 1 : (size_t)opt.size;
    for (;;) {
        ssize_t r = recv(c->fd, scratch, scratch_len, 0);
        if (r < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                return;
            if (errno == EINTR)
                continue;
            drop(c, 1, now);
            return;
        }
        if (r == 0 || c->st != C_WAIT || c->rcvd + (size_t)r > total) {
            /* EOF, unexpected bytes, or more than was sent */
            drop(c, 1, now);
            return;
        }
        for (ssize_t i = 0; i < r; i++) {
            if (scratch[i] != pattern(c, c->rcvd + (size_t)i)) {
                drop(c, 1, now);
                return;
            }
        }
        c->rcvd += (size_t)r;
        if (c->rcvd < total)
            continue;
        /* a whole message came back */
        if (measuring && c->t0 >= window_start) {
            rep->msgs++;
            rep->hist[hist_index(now - c->t0)]++;
        }
        if (opt.mode == M_CONNRATE) {
            close(c->fd);
            c->fd = -1;
            nconnected--;
            start_connect(c, now);
            return;
        }
        if (opt.mode == M_IDLE) {
            c->st = C_IDLE;
            return;
        }
        begin_message(c, now);
        if (do_send(c) < 0) {
            drop(c, 1, now);
            return;
        }
        return; /* the echo cannot be there yet */
    }
}

static void handle(struct conn *c, uint32_t events, uint64_t now)
{
    if (c->fd < 0)
        return;
    if (c->st == C_CONNECTING) {
        int err = 0;
        socklen_t len = sizeof err;
        if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0 || err) {
            drop(c, 1, now);
            return;
        }
        if (!(events & (EPOLLOUT | EPOLLERR | EPOLLHUP)))
            return;
        on_connected(c, now);
        return;
    }
    if (events & EPOLLOUT) {
        if (do_send(c) < 0) {
            drop(c, 1, now);
            return;
        }
    }
    if (events & (EPOLLIN | EPOLLERR | EPOLLHUP)) {
        if (c->st == C_IDLE) {
            /* the server closed (or sent to) an idle connection */
            char b[256];
            ssize_t r = recv(c->fd, b, sizeof b, 0);
            if (r <= 0 && !(r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)))
                drop(c, 1, now);
            return;
        }
        on_readable(c, now);
    }
}

static volatile sig_atomic_t got_term;
static void on_term(int sig)
{
    (void)sig;
    got_term = 1;
}

static void write_all(int fd, const void *p, size_t n)
{
    const char *s = p;
    while (n) {
        ssize_t w = write(fd, s, n);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            die("write report");
        }
        s += w;
        n -= (size_t)w;
    }
}

static int worker(long first, long count, int out_fd)
{
    rep = calloc(1, sizeof *rep);
    scratch_len = 65536;
    scratch = malloc(scratch_len);
    struct conn *cs = calloc((size_t)count > 0 ? (size_t)count : 1, sizeof *cs);
    if (!rep || !scratch || !cs)
        die("malloc");
    ep = epoll_create1(EPOLL_CLOEXEC);
    if (ep < 0)
        die("epoll_create1");
    next_addr = first;
    pend_cap = count > 0 ? count : 1;
    pend = calloc((size_t)pend_cap, sizeof *pend);
    if (!pend)
        die("malloc");
    for (long i = 0; i < count; i++) {
        cs[i].fd = -1;
        cs[i].id = (uint32_t)(first + i);
        cs[i].st = C_BACKOFF; /* retry_at 0: connect at once */
        pend_push(&cs[i]);
    }

    enum { NEV = 1024 };
    struct epoll_event evs[NEV];
    uint64_t start = now_ns();
    uint64_t connect_deadline = start + 60ull * 1000000000ull;
    uint64_t measure_at = 0, end_at = 0;
    int connecting = 1;

    for (;;) {
        uint64_t now = now_ns();
        /* (re)connect slots in backoff, at most inflight_max connects at once */
        while (pend_len && inflight < inflight_max && pend[pend_head]->retry_at <= now) {
            struct conn *c = pend[pend_head];
            pend_head = (pend_head + 1) % pend_cap;
            pend_len--;
            start_connect(c, now);
        }
        if (connecting) {
            int done = nconnected >= count;
            if (opt.mode == M_IDLE && opt.idle_echo) {
                done = 1;
                for (long i = 0; i < count && done; i++)
                    done = cs[i].st == C_IDLE;
            }
            if (opt.mode == M_CONNRATE)
                done = 1; /* connections are the load: no setup phase */
            if (done || now >= connect_deadline) {
                connecting = 0;
                rep->established = (uint64_t)nconnected;
                if (opt.mode == M_IDLE)
                    break;
                measure_at = now + (uint64_t)(opt.warmup * 1e9);
                end_at = measure_at + (uint64_t)(opt.secs * 1e9);
            }
        }
        if (!connecting && !measuring && now >= measure_at) {
            measuring = 1;
            window_start = now;
            rep->msgs = 0;
            memset(rep->hist, 0, sizeof rep->hist);
        }
        if (measuring && now >= end_at) {
            rep->window_s = (double)(now - window_start) / 1e9;
            break;
        }
        int timeout = 10;
        int n = epoll_wait(ep, evs, NEV, timeout);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            die("epoll_wait");
        }
        now = now_ns();
        for (int i = 0; i < n; i++)
            handle(evs[i].data.ptr, evs[i].events, now);
    }

    if (opt.mode == M_IDLE) {
        write_all(out_fd, rep, sizeof *rep);
        close(out_fd);
        /* hold the connections until told to stop */
        while (!got_term)
            pause();
        return 0;
    }
    write_all(out_fd, rep, sizeof *rep);
    close(out_fd);
    return 0;
}

/* ---------- parent ---------- */
static double pct(const uint64_t *h, uint64_t total, double p)
{
    if (!total)
        return 0;
    uint64_t want = (uint64_t)(p * (double)total);
    if (want >= total)
        want = total - 1;
    uint64_t acc = 0;
    for (unsigned i = 0; i < HIST_N; i++) {
        acc += h[i];
        if (acc > want)
            return hist_value(i) / 1000.0;
    }
    return 0;
}

static void usage(void)
{
    fprintf(stderr,
            "usage: loadgen [options] [echo|connrate|idle] HOST PORT\n"
            "  -m MODE   echo (default), connrate, idle\n"
            "  -c CONNS  connections (default 1)\n"
            "  -d SECS   measured seconds (default 5)\n"
            "  -w SECS   warm-up seconds before measuring (default 1)\n"
            "  -s SIZE   message bytes in echo mode (default 64)\n"
            "  -p PROCS  worker processes sharing the connections (default 1)\n"
            "  -a N      spread connections over source addresses 127.0.0.1..127.0.0.N\n"
            "            (default: 1 per 8000 connections; 64 in connrate mode)\n"
            "  -e        idle mode: one SIZE-byte echo on each connection before holding\n"
            "Prints one JSON line: mode, conns, msgs_per_s, p50_us, p99_us, errors, ...\n");
    exit(2);
}

static int parse_mode(const char *s, enum mode *m)
{
    if (!strcmp(s, "echo"))
        *m = M_ECHO;
    else if (!strcmp(s, "connrate"))
        *m = M_CONNRATE;
    else if (!strcmp(s, "idle"))
        *m = M_IDLE;
    else
        return -1;
    return 0;
}

static long num(const char *s, long lo, long hi)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || *end || v < lo || v > hi) {
        fprintf(stderr, "loadgen: bad number '%s'\n", s);
        exit(2);
    }
    return v;
}

static double fnum(const char *s)
{
    char *end;
    double v = strtod(s, &end);
    if (*end || v < 0) {
        fprintf(stderr, "loadgen: bad number '%s'\n", s);
        exit(2);
    }
    return v;
}

int main(int argc, char **argv)
{
    int ch;
    while ((ch = getopt(argc, argv, "m:c:d:w:s:p:a:eh")) != -1) {
        switch (ch) {
        case 'm':
            if (parse_mode(optarg, &opt.mode) < 0)
                usage();
            break;
        case 'c': opt.conns = num(optarg, 1, 10000000); break;
        case 'd': opt.secs = fnum(optarg); break;
        case 'w': opt.warmup = fnum(optarg); break;
        case 's': opt.size = num(optarg, 1, 1L << 30); break;
        case 'p': opt.procs = num(optarg, 1, 256); break;
        case 'a': opt.naddrs = num(optarg, 1, 65534); break;
        case 'e': opt.idle_echo = 1; break;
        default: usage();
        }
    }
    if (argc - optind == 3) {
        if (parse_mode(argv[optind], &opt.mode) < 0)
            usage();
        optind++;
    }
    if (argc - optind != 2)
        usage();
    opt.host = argv[optind];
    opt.port = argv[optind + 1];
    if (opt.procs > opt.conns)
        opt.procs = opt.conns;
    if (!opt.naddrs)
        opt.naddrs = opt.mode == M_CONNRATE ? 64 : 1 + (opt.conns - 1) / 8000;

    struct addrinfo hints = { .ai_family = AF_INET, .ai_socktype = SOCK_STREAM }, *ai;
    int gai = getaddrinfo(opt.host, opt.port, &hints, &ai);
    if (gai) {
        fprintf(stderr, "loadgen: %s:%s: %s\n", opt.host, opt.port, gai_strerror(gai));
        return 2;
    }
    memcpy(&dst, ai->ai_addr, sizeof dst);
    freeaddrinfo(ai);
    if ((ntohl(dst.sin_addr.s_addr) >> 24) != 127)
        opt.naddrs = 1; /* other source addresses exist only on loopback */

    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    long per_proc = (opt.conns + opt.procs - 1) / opt.procs;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && (rlim_t)per_proc + 16 > rl.rlim_cur) {
        fprintf(stderr, "loadgen: %ld connections per process exceed the descriptor limit %lu; use -p\n",
                per_proc, (unsigned long)rl.rlim_cur);
        return 2;
    }

    struct sigaction sa = { .sa_handler = on_term };
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);

    pid_t *pids = calloc((size_t)opt.procs, sizeof *pids);
    int *fds = calloc((size_t)opt.procs, sizeof *fds);
    long first = 0;
    for (long p = 0; p < opt.procs; p++) {
        long n = opt.conns / opt.procs + (p < opt.conns % opt.procs);
        int pfd[2];
        if (pipe2(pfd, O_CLOEXEC) < 0)
            die("pipe");
        pid_t pid = fork();
        if (pid < 0)
            die("fork");
        if (pid == 0) {
            close(pfd[0]);
            for (long q = 0; q < p; q++)
                close(fds[q]);
            _exit(worker(first, n, pfd[1]));
        }
        close(pfd[1]);
        pids[p] = pid;
        fds[p] = pfd[0];
        first += n;
    }

    struct report *tot = calloc(1, sizeof *tot), *one = malloc(sizeof *one);
    double rate = 0;
    int lost = 0;
    for (long p = 0; p < opt.procs; p++) {
        size_t got = 0;
        while (got < sizeof *one) {
            ssize_t r = read(fds[p], (char *)one + got, sizeof *one - got);
            if (r < 0 && errno == EINTR) {
                if (got_term)
                    break;
                continue;
            }
            if (r <= 0)
                break;
            got += (size_t)r;
        }
        close(fds[p]);
        if (got < sizeof *one) {
            lost++;
            continue;
        }
        tot->msgs += one->msgs;
        tot->errors += one->errors;
        tot->established += one->established;
        if (one->window_s > 0)
            rate += (double)one->msgs / one->window_s;
        for (unsigned i = 0; i < HIST_N; i++)
            tot->hist[i] += one->hist[i];
    }
    uint64_t hn = 0;
    for (unsigned i = 0; i < HIST_N; i++)
        hn += tot->hist[i];
    double maxv = 0;
    for (unsigned i = HIST_N; i-- > 0;)
        if (tot->hist[i]) {
            maxv = hist_value(i) / 1000.0;
            break;
        }
    const char *mname = opt.mode == M_ECHO ? "echo" : opt.mode == M_CONNRATE ? "connrate" : "idle";
    printf("{\"mode\":\"%s\",\"conns\":%ld,\"procs\":%ld,\"size\":%ld,\"secs\":%.1f,"
           "\"msgs_per_s\":%.0f,\"p50_us\":%.1f,\"p99_us\":%.1f,\"p999_us\":%.1f,\"max_us\":%.1f,"
           "\"msgs\":%llu,\"established\":%llu,\"errors\":%llu%s}\n",
           mname, opt.conns, opt.procs, opt.mode == M_CONNRATE ? 1L : opt.size, opt.secs, rate,
           pct(tot->hist, hn, 0.50), pct(tot->hist, hn, 0.99), pct(tot->hist, hn, 0.999), maxv,
           (unsigned long long)tot->msgs, (unsigned long long)tot->established,
           (unsigned long long)(tot->errors + (uint64_t)lost), lost ? ",\"lost_workers\":true" : "");
    fflush(stdout);

    if (opt.mode == M_IDLE) {
        while (!got_term)
            pause();
        for (long p = 0; p < opt.procs; p++)
            kill(pids[p], SIGTERM);
    }
    int bad = 0;
    for (long p = 0; p < opt.procs; p++) {
        int st;
        if (waitpid(pids[p], &st, 0) < 0 || !WIFEXITED(st) || WEXITSTATUS(st))
            bad = 1;
    }
    return bad || lost ? 1 : 0;
}
