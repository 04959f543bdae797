/* bench.c: duplex bench, a closed-loop load generator for stream servers.
 *
 *   duplex bench echo|connrate|idle|throughput|broker HOST PORT [-c CONNS] ...
 *
 * Each worker process drives its share of the connections with one libduplex
 * loop (a dx_io watcher per connection, a 10 ms dx_timer for the phases:
 * connect, warm-up, measure), so it runs on every backend. -p PROCS forks
 * workers (past the per-process descriptor limit, onto several cores); each
 * sends its report through a pipe and the parent merges them.
 *
 * Payloads come from a random 64 KiB block (doubled, so that any window of up
 * to 64 KiB is contiguous): connection c sends, for message s, the bytes at
 * offset (off_c + s * STRIDE + i) mod 64 KiB, off_c random. Every byte that
 * comes back is compared (memcmp against the block), so a wrong byte is
 * always seen; the connection is then counted as a verification error, closed
 * and reopened.
 *
 * broker (one process) measures fan-out servers: one message in flight in the
 * whole run, round r sent by connection r % N and checked at each of the N-1
 * others. A broker only forwards to the clients it has accepted, so rounds
 * start once a join phase has seen every connection receive a token byte.
 * Connections that fail are not reopened (they would miss messages).
 * --nodes spreads the connections round-robin over several servers of one
 * cluster (listen --broker --cluster): connection i goes to target i % N,
 * and every round is still checked at every other connection, whichever
 * node it is on.
 */
#define _GNU_SOURCE
#include "cli.h"
#include "os.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#ifndef _WIN32 /* Windows: no fork (one worker process), no rlimit, no getrandom */
#include <sys/random.h>
#include <sys/resource.h>
#include <sys/wait.h>
#endif

#ifndef IP_BIND_ADDRESS_NO_PORT
#define IP_BIND_ADDRESS_NO_PORT 24
#endif

/* ---- log-linear histogram of nanoseconds ---------------------------------- */
/* 32 linear sub-buckets per power of two: within about 3 %. */
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

static uint64_t hist_lower(unsigned i)
{
    if (i < SUB_N)
        return i;
    unsigned shift = (i >> SUB_BITS) - 1u;
    return ((uint64_t)SUB_N + (i & (SUB_N - 1u))) << shift;
}

static uint64_t hist_width(unsigned i)
{
    return i < SUB_N ? 1 : 1ull << ((i >> SUB_BITS) - 1u);
}

/* The middle of bucket i, in nanoseconds. */
static double hist_mid(unsigned i)
{
    return i < SUB_N ? (double)i : (double)hist_lower(i) + (double)hist_width(i) / 2.0;
}

/* ---- options ---------------------------------------------------------------- */

enum bmode { B_ECHO, B_CONNRATE, B_IDLE, B_THROUGHPUT, B_BROKER, B_NMODES };
static const char *const mode_names[] = { "echo", "connrate", "idle", "throughput", "broker" };

static struct {
    enum bmode mode;
    const char *host, *port;
    long conns, procs, naddrs, size;
    double secs, warmup;
    int json, send_only, echo_once, procs_given, size_given;
    int tls;                /* --ssl: each connection is a TLS client (tls.c) */
    const char *backend;
    const char *nodes;      /* broker --nodes: more targets, round-robin */
} bo;
#define MAX_NODES 64

#define BLOCK 65536u
#define MASK (BLOCK - 1u)
#define STRIDE 7919u
#define MAX_INFLIGHT 256 /* connects at once per worker */
#define CONNECT_DEADLINE_NS (60ull * 1000000000ull)
#define JOIN_WINDOW 8 /* broker: connects not yet seen by the server (ncat's backlog is 10) */
#define JOIN_STALL_NS (10ull * 1000000000ull) /* broker: no connect or join for this long */
#define STALL_NS 1000000000ull /* broker: a round older than this at the end is stuck */

/* What a worker reports (through a pipe when forked). */
struct report {
    uint64_t msgs;           /* messages (connrate: cycles, broker: rounds) in the window */
    uint64_t deliveries;     /* broker: messages received whole, in the window */
    uint64_t stalled;        /* broker: receivers still waiting for a stuck round at the end */
    uint64_t bytes_sent;     /* in the window */
    uint64_t bytes_rcvd;     /* in the window */
    uint64_t errors;         /* failed connects, resets, early EOF, wrong bytes */
    uint64_t verify_errors;  /* wrong or unexpected bytes */
    uint64_t connect_errors; /* failed connects */
    uint64_t established;    /* connections open when the connect phase ended */
    uint64_t ever_connected; /* connects that succeeded (0: the target never answered) */
    int last_connect_error;  /* -errno of the last failed connect */
    int gave_up;             /* nothing could connect */
    double window_s;         /* length of the measured window */
    uint64_t hist[HIST_N];
};

/* ---- one worker ------------------------------------------------------------- */

enum cstate { C_BACKOFF, C_CONNECTING, C_HANDSHAKE, C_WAIT, C_STREAM, C_IDLE, C_JOIN, C_MEMBER,
              C_DEAD };
enum phase { PH_CONNECT, PH_WARMUP, PH_MEASURE, PH_HOLD, PH_DONE };

struct conn {
    dx_io io;
    int fd;
    struct cli_tls_sock *tls; /* --ssl */
    enum cstate st;
    uint32_t id;      /* slot number (over all workers) */
    uint32_t seq;     /* message number on this slot (broker join: last token) */
    uint32_t off;     /* random start in the pattern block */
    int want_out;
    uint64_t sent, rcvd;
    uint64_t t0;      /* start of the message (echo) or of the connect (connrate) */
    uint64_t retry_at;
};

static struct worker {
    dx_loop *loop;
    dx_timer tick;
    dx_addr dst;
    dx_addr dsts[MAX_NODES]; /* broker --nodes: dst, then each node's address */
    int ndsts;
    int src_ok;             /* IPv4 loopback target: spread over source addresses */
    struct conn *cs;
    long count, first;
    struct conn **pend;     /* slots waiting for a (re)connect, oldest first */
    long pend_cap, pend_head, pend_len;
    long inflight, nconnected, next_addr;
    enum phase ph;
    uint64_t start, measure_at, end_at, hold_end;
    struct report *rep;
    unsigned char *block;   /* 2 * BLOCK bytes: random, second half = first half */
    unsigned char *scratch;
    int out_fd;             /* report pipe, -1 in-process */
    void (*ready)(void);    /* idle, in-process: the connect phase is over */
} W;

/* broker: the join phase (connects paced, tokens), then the one round in flight */
static struct {
    int joining;
    uint64_t progress_at;   /* last connect or join */
    struct conn *js;        /* sends the join tokens */
    uint32_t token;         /* last token sent (0: none yet) */
    long unjoined;          /* open, no token seen yet */
    long behind;            /* joined, short of the last token */
    long members;           /* open connections that take part in rounds (js included) */
    uint64_t round;
    int inflight, starting;
    struct conn *sender;    /* NULL once it is gone */
    long waiting;           /* receivers of this round still short of SIZE bytes */
    long got;               /* receivers that have it whole */
    uint64_t t0;
} BK;

static char backend_name[32];
static volatile sig_atomic_t got_term;
static void on_term(int sig)
{
    (void)sig;
    got_term = 1;
}

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void pend_push(struct conn *c)
{
    W.pend[(W.pend_head + W.pend_len++) % W.pend_cap] = c;
}

/* Bytes expected at stream offset `pos` of connection c's current message,
 * contiguous for up to BLOCK bytes. */
static const unsigned char *pattern(const struct conn *c, uint64_t pos)
{
    uint32_t base = bo.mode == B_THROUGHPUT ? c->off
                  : bo.mode == B_BROKER ? (uint32_t)BK.round * STRIDE : c->off + c->seq * STRIDE;
    return W.block + ((base + pos) & MASK);
}

static size_t msg_size(void)
{
    return bo.mode == B_CONNRATE ? 1 : (size_t)bo.size;
}

static void on_io(dx_loop *loop, dx_io *io, int events);

static void set_out(struct conn *c, int out)
{
    if (out != c->want_out) {
        dx_io_set(W.loop, &c->io, DX_READ | (out ? DX_WRITE : 0));
        c->want_out = out;
    }
}

static void close_conn(struct conn *c)
{
    cli_tls_bench_free(c->tls);
    c->tls = NULL;
    if (c->fd >= 0) {
        dx_io_stop(W.loop, &c->io);
        dx__sock_close(c->fd);
        c->fd = -1;
    }
}

static void backoff(struct conn *c, uint64_t delay)
{
    c->st = C_BACKOFF;
    c->retry_at = now_ns() + delay;
    pend_push(c);
}

static void connect_failed(struct conn *c, int code)
{
    W.rep->errors++;
    W.rep->connect_errors++;
    W.rep->last_connect_error = code;
    close_conn(c);
    backoff(c, 10000000ull); /* 10 ms */
}

/* Start a non-blocking connect on slot c. */
static void start_connect(struct conn *c)
{
    const dx_addr *dst = W.ndsts > 1 ? &W.dsts[c->id % (uint32_t)W.ndsts] : &W.dst;
    const struct sockaddr *sa = (const struct sockaddr *)&dst->ss;
#ifdef _WIN32
    int fd = dx__sock_socket(sa->sa_family, SOCK_STREAM, 0);
    if (fd >= 0 && dx__sock_nonblock(fd, 1) < 0) {
        int e = errno;
        dx__sock_close(fd);
        fd = -1;
        errno = e;
    }
#else
    int fd = socket(sa->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
#endif
    if (fd < 0) {
        connect_failed(c, -errno);
        return;
    }
    c->fd = fd;
    int one = 1;
    dx__sock_setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (W.src_ok && bo.naddrs > 1) {
        struct sockaddr_in src = { .sin_family = AF_INET };
        src.sin_addr.s_addr = htonl(0x7f000001u + (uint32_t)(W.next_addr++ % bo.naddrs));
#ifdef __linux__
        setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof one);
#endif
        if (dx__sock_bind(fd, (struct sockaddr *)&src, sizeof src) < 0) {
            connect_failed(c, -errno);
            return;
        }
    }
    /* Winsock says EWOULDBLOCK where POSIX says EINPROGRESS */
    if (dx__sock_connect(fd, sa, dst->len) < 0 && errno != EINPROGRESS && errno != EAGAIN &&
        errno != EWOULDBLOCK) {
        connect_failed(c, -errno);
        return;
    }
    c->st = C_CONNECTING;
    c->t0 = now_ns();
    c->sent = c->rcvd = 0;
    c->want_out = 1;
    dx_io_init(&c->io, fd, on_io, c);
    int rc = dx_io_set(W.loop, &c->io, DX_WRITE);
    if (rc < 0) {
        connect_failed(c, rc);
        return;
    }
    W.inflight++;
}

/* Start connects for slots whose back-off is over, MAX_INFLIGHT at once. */
static void pump_pending(void)
{
    uint64_t now = 0;
    /* broker: a few connects at a time, each seen by the server before the
     * next (a small listen backlog would drop the ACK of a burst) */
    while (W.pend_len && W.inflight < MAX_INFLIGHT &&
           (bo.mode != B_BROKER || W.inflight + BK.unjoined < JOIN_WINDOW)) {
        struct conn *c = W.pend[W.pend_head];
        if (c->retry_at) {
            if (!now)
                now = now_ns();
            if (c->retry_at > now)
                break;
        }
        W.pend_head = (W.pend_head + 1) % W.pend_cap;
        W.pend_len--;
        start_connect(c);
    }
}

static void broker_lost(struct conn *c, enum cstate was);

/* Close an established connection; with error, count it and back off. */
static void drop(struct conn *c, int error, int verify)
{
    enum cstate was = c->st;
    if (c->st == C_CONNECTING || c->st == C_HANDSHAKE)
        W.inflight--;
    else
        W.nconnected--;
    if (error)
        W.rep->errors++;
    if (verify)
        W.rep->verify_errors++;
    close_conn(c);
    if (bo.mode == B_BROKER) { /* not reopened: it would have missed messages */
        c->st = C_DEAD;
        broker_lost(c, was);
        return;
    }
    c->st = C_BACKOFF;
    c->retry_at = error ? now_ns() + 10000000ull : 0;
    pend_push(c);
}

static int measuring_since(uint64_t t0)
{
    return W.ph == PH_MEASURE && t0 >= W.measure_at;
}

/* send() or SSL_write(): bytes, or -errno (-EAGAIN: later). */
static ssize_t conn_send(struct conn *c, const void *p, size_t n)
{
    if (c->tls)
        return cli_tls_bench_write(c->tls, p, n);
    ssize_t w = dx__sock_send(c->fd, p, n, MSG_NOSIGNAL);
    return w >= 0 ? w : errno == EWOULDBLOCK ? -EAGAIN : -errno;
}

/* Send what is left of the current message (throughput: as much as the
 * socket takes, up to 1 MiB per call). 0 ok, -1 error. */
static int do_send(struct conn *c)
{
    int stream = bo.mode == B_THROUGHPUT;
    uint64_t total = stream ? c->sent + (1u << 20) : msg_size();
    while (c->sent < total) {
        uint64_t n = total - c->sent;
        size_t lim = stream ? (size_t)bo.size : BLOCK;
        if (n > lim)
            n = lim;
        ssize_t w = conn_send(c, pattern(c, c->sent), (size_t)n);
        if (w == -EAGAIN)
            break;
        if (w == -EINTR)
            continue;
        if (w < 0)
            return -1;
        c->sent += (uint64_t)w;
        if (stream && W.ph == PH_MEASURE)
            W.rep->bytes_sent += (uint64_t)w;
    }
    set_out(c, stream || c->sent < total);
    return 0;
}

static void begin_message(struct conn *c, uint64_t now)
{
    c->seq++;
    c->sent = c->rcvd = 0;
    c->t0 = now;
    c->st = C_WAIT;
}

static void on_connected(struct conn *c)
{
    W.inflight--;
    W.nconnected++;
    W.rep->ever_connected++;
    c->want_out = -1; /* watched for DX_WRITE only so far: set_out() must set DX_READ */
    uint64_t now = now_ns();
    if (bo.mode == B_IDLE && !bo.echo_once) {
        c->st = C_IDLE;
        set_out(c, 0);
    } else if (bo.mode == B_THROUGHPUT) {
        c->st = C_STREAM;
        c->sent = c->rcvd = 0;
    } else if (bo.mode == B_CONNRATE) {
        c->st = C_WAIT; /* t0 stays the connect start */
        c->sent = c->rcvd = 0;
    } else if (bo.mode == B_BROKER) {
        c->seq = 0;
        set_out(c, 0);
        BK.progress_at = now;
        if (!BK.js) { /* the first one sends the join tokens */
            BK.js = c;
            c->st = C_MEMBER;
            BK.members++;
        } else {
            c->st = C_JOIN; /* silent until it has seen a token */
            BK.unjoined++;
        }
    } else {
        begin_message(c, now);
    }
    if (c->st != C_IDLE && bo.mode != B_BROKER && do_send(c) < 0)
        drop(c, 1, 0);
    pump_pending();
}

/* A whole message came back. */
static void on_message(struct conn *c, uint64_t now)
{
    if (measuring_since(c->t0)) {
        W.rep->msgs++;
        W.rep->bytes_sent += c->sent;
        W.rep->bytes_rcvd += c->rcvd;
        W.rep->hist[hist_index(now - c->t0)]++;
    }
    if (bo.mode == B_CONNRATE) {
        close_conn(c);
        W.nconnected--;
        start_connect(c);
        return;
    }
    if (bo.mode == B_IDLE) {
        c->st = C_IDLE;
        return;
    }
    begin_message(c, now);
    if (do_send(c) < 0)
        drop(c, 1, 0);
}

/* One recv() into W.scratch: the byte count, or 0 when there is nothing
 * more for now, or -1 once the connection is dropped (an error, or the
 * server closed it). */
static ssize_t recv_chunk(struct conn *c)
{
    if (c->tls) {
        ssize_t r = cli_tls_bench_read(c->tls, W.scratch, BLOCK);
        if (r > 0)
            return r;
        if (r == -EAGAIN)
            return 0;
        drop(c, 1, 0);
        return -1;
    }
    for (;;) {
        ssize_t r = dx__sock_recv(c->fd, W.scratch, BLOCK, 0);
        if (r > 0)
            return r;
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return 0;
        drop(c, 1, 0);
        return -1;
    }
}

static void on_readable(struct conn *c)
{
    for (;;) {
        ssize_t r = recv_chunk(c);
        if (r <= 0)
            return;
        if (c->st == C_IDLE || (c->st == C_STREAM && bo.send_only))
            continue; /* idle, --send-only: whatever comes is discarded */
        /* more than was sent: unexpected bytes */
        if (c->rcvd + (uint64_t)r > (c->st == C_STREAM ? c->sent : msg_size())) {
            drop(c, 1, 1);
            return;
        }
        if (memcmp(W.scratch, pattern(c, c->rcvd), (size_t)r) != 0) {
            drop(c, 1, 1);
            return;
        }
        c->rcvd += (uint64_t)r;
        if (c->st == C_STREAM) {
            if (W.ph == PH_MEASURE)
                W.rep->bytes_rcvd += (uint64_t)r;
            continue;
        }
        if (c->rcvd < msg_size())
            continue;
        on_message(c, now_ns());
        return; /* the next echo cannot be there yet */
    }
}

/* ---- broker: join tokens, then rounds ------------------------------------------ */

static void broker_next(uint64_t now);

/* Join token t on the wire: 1..255, so a late joiner's first byte names it. */
static unsigned char token_byte(uint32_t t)
{
    return (unsigned char)(1u + (t - 1u) % 255u);
}

/* The round in flight is over: every receiver still open has it whole. */
static void round_done(uint64_t now)
{
    BK.inflight = 0;
    if (measuring_since(BK.t0) && BK.got) {
        W.rep->msgs++;
        W.rep->deliveries += (uint64_t)BK.got;
        W.rep->bytes_sent += msg_size();
        W.rep->bytes_rcvd += msg_size() * (uint64_t)BK.got;
        W.rep->hist[hist_index(now - BK.t0)]++;
    }
    BK.round++;
    broker_next(now);
}

/* Start round BK.round unless one is in flight: the sender is slot
 * round % N, or the next one still open. */
static void broker_next(uint64_t now)
{
    if (BK.starting || BK.joining || (W.ph != PH_WARMUP && W.ph != PH_MEASURE))
        return;
    BK.starting = 1; /* a sender that fails is dropped, and the loop picks another */
    while (!BK.inflight && BK.members >= 2) {
        struct conn *s = NULL;
        for (long i = 0; i < W.count && !s; i++) {
            struct conn *c = &W.cs[(long)((BK.round + (uint64_t)i) % (uint64_t)W.count)];
            if (c->st == C_MEMBER)
                s = c;
        }
        for (long i = 0; i < W.count; i++)
            W.cs[i].rcvd = 0;
        BK.sender = s;
        BK.waiting = BK.members - 1;
        BK.got = 0;
        BK.t0 = now;
        BK.inflight = 1;
        s->sent = 0;
        if (do_send(s) < 0)
            drop(s, 1, 0);
    }
    BK.starting = 0;
}

/* Connection c (in state `was`) is closed for good. */
static void broker_lost(struct conn *c, enum cstate was)
{
    if (was == C_MEMBER)
        BK.members--;
    if (was == C_JOIN)
        BK.unjoined--;
    if (BK.joining && was == C_MEMBER && c != BK.js && c->seq < BK.token)
        BK.behind--;
    if (c == BK.js)
        BK.js = NULL;
    if (!BK.inflight)
        return;
    if (c == BK.sender) {
        BK.sender = NULL;
        if (c->sent == 0) { /* nothing went out: no round */
            BK.inflight = 0;
            broker_next(now_ns());
        }
        return; /* what it sent may still arrive */
    }
    if (was == C_MEMBER && c->rcvd < msg_size() && --BK.waiting == 0)
        round_done(now_ns());
}

/* Join tokens arrived at c: the first one names the token it joined at (the
 * server forwarded nothing to it before), the next ones must follow in order. */
static int join_bytes(struct conn *c, size_t n)
{
    if (!BK.joining || c == BK.js)
        return -1;
    for (size_t i = 0; i < n; i++) {
        unsigned char b = W.scratch[i];
        if (c->st == C_JOIN) {
            uint32_t back = (uint32_t)(token_byte(BK.token) - b + 255) % 255u;
            if (!b || !BK.token || back >= BK.token)
                return -1;
            c->seq = BK.token - back;
            c->st = C_MEMBER;
            BK.members++;
            BK.unjoined--;
            BK.behind += c->seq < BK.token;
            BK.progress_at = now_ns();
        } else if (c->seq >= BK.token || b != token_byte(c->seq + 1)) {
            return -1;
        } else if (++c->seq == BK.token) {
            BK.behind--;
        }
    }
    return 0;
}

/* Every tick of the connect phase: one more token once every connection that
 * joined has the last one; the end once every slot is in (or nothing moved
 * for JOIN_STALL_NS, or the connect deadline passed). */
static void join_tick(uint64_t now)
{
    if (!BK.js) { /* it failed: a member takes over, else a newcomer */
        for (long i = 0; i < W.count && !BK.js; i++)
            if (W.cs[i].st == C_MEMBER)
                BK.js = &W.cs[i];
        for (long i = 0; i < W.count && !BK.js; i++)
            if (W.cs[i].st == C_JOIN) {
                BK.js = &W.cs[i];
                BK.js->st = C_MEMBER;
                BK.unjoined--;
                BK.members++;
            }
    }
    long left = 0; /* not open yet */
    for (long i = 0; i < W.count; i++)
        left += W.cs[i].st == C_BACKOFF || W.cs[i].st == C_CONNECTING;
    int in = !left && !BK.unjoined && !BK.behind;
    if (!in && now - W.start < CONNECT_DEADLINE_NS && now - BK.progress_at < JOIN_STALL_NS) {
        if (BK.js && BK.unjoined && !BK.behind) {
            unsigned char b = token_byte(BK.token + 1);
            ssize_t w = dx__sock_send(BK.js->fd, &b, 1, MSG_NOSIGNAL);
            if (w == 1) {
                BK.token++;
                BK.behind = BK.members - 1;
            } else if (w < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
                drop(BK.js, 1, 0);
            }
        }
        return;
    }
    if (!W.rep->ever_connected) {
        W.rep->gave_up = 1;
        if (!W.rep->last_connect_error)
            W.rep->last_connect_error = DX_ETIMEDOUT;
        W.ph = PH_DONE;
        dx_loop_stop(W.loop);
        return;
    }
    /* given up: slots never open, and those the server never reached */
    for (long i = 0; i < W.count; i++) {
        struct conn *c = &W.cs[i];
        if (c->st == C_CONNECTING) {
            W.inflight--;
            close_conn(c);
        }
        if (c->st == C_CONNECTING || c->st == C_BACKOFF) {
            c->st = C_DEAD;
            W.rep->errors++;
        } else if (c != BK.js && (c->st == C_JOIN || (c->st == C_MEMBER && c->seq != BK.token))) {
            drop(c, 1, 0);
        }
    }
    W.pend_len = 0;
    BK.joining = 0;
    W.rep->established = (uint64_t)BK.members;
    W.ph = PH_WARMUP;
    W.measure_at = now + (uint64_t)(bo.warmup * 1e9);
    W.end_at = W.measure_at + (uint64_t)(bo.secs * 1e9);
    broker_next(now);
}

static void broker_readable(struct conn *c)
{
    for (;;) {
        ssize_t r = recv_chunk(c);
        if (r <= 0)
            return;
        /* ACK at once: a delayed ACK would meet a server's Nagle delay and
         * make most rounds 40 ms (receivers send nothing to carry the ACK) */
#ifdef TCP_QUICKACK
        int one = 1;
        setsockopt(c->fd, IPPROTO_TCP, TCP_QUICKACK, &one, sizeof one);
#endif
        if (c->st == C_JOIN || BK.joining) {
            if (join_bytes(c, (size_t)r) < 0) {
                drop(c, 1, 1);
                return;
            }
            pump_pending(); /* room for the next connects at once */
            continue;
        }
        /* its own bytes back, more than a message, or wrong bytes */
        if (!BK.inflight || c == BK.sender || c->st != C_MEMBER ||
            c->rcvd + (uint64_t)r > msg_size() ||
            memcmp(W.scratch, pattern(c, c->rcvd), (size_t)r) != 0) {
            drop(c, 1, 1);
            return;
        }
        c->rcvd += (uint64_t)r;
        if (c->rcvd == msg_size()) {
            BK.got++;
            if (--BK.waiting == 0) {
                round_done(now_ns());
                if (c->fd < 0)
                    return; /* it was the next sender and failed */
            }
        }
    }
}

static void on_io(dx_loop *loop, dx_io *io, int events)
{
    (void)loop;
    struct conn *c = io->data;
    if (c->fd < 0)
        return;
    if (c->st == C_CONNECTING) {
        int rc = dx_connect_result(c->fd);
        if (rc < 0) {
            W.inflight--;
            connect_failed(c, rc);
            return;
        }
        if (!(events & (DX_WRITE | DX_ERROR)))
            return;
        if (!bo.tls) {
            on_connected(c);
            return;
        }
        c->tls = cli_tls_bench_new(c->fd);
        if (!c->tls) {
            W.inflight--;
            connect_failed(c, -ENOMEM);
            return;
        }
        c->st = C_HANDSHAKE;
    }
    if (c->st == C_HANDSHAKE) { /* --ssl: counted as part of the connect */
        int rc = cli_tls_bench_handshake(c->tls);
        if (rc == 0) {
            on_connected(c);
        } else if (rc < 0 || dx_io_set(W.loop, &c->io, rc) < 0) {
            W.inflight--;
            connect_failed(c, -EPROTO);
        }
        return;
    }
    if (events & DX_WRITE) {
        if (bo.mode == B_BROKER && c != BK.sender)
            set_out(c, 0);
        else if (do_send(c) < 0) {
            drop(c, 1, 0);
            return;
        }
        if (c->fd < 0)
            return;
    }
    if (events & (DX_READ | DX_ERROR)) {
        if (bo.mode == B_BROKER)
            broker_readable(c);
        else
            on_readable(c);
    }
}

static void write_all(int fd, const void *p, size_t n)
{
    const char *s = p;
    while (n) {
        ssize_t w = write(fd, s, n);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return; /* the parent is gone */
        }
        s += w;
        n -= (size_t)w;
    }
}

static void send_report(void)
{
    if (W.out_fd >= 0) {
        write_all(W.out_fd, W.rep, sizeof *W.rep);
        close(W.out_fd);
        W.out_fd = -1;
    } else if (W.ready) {
        void (*ready)(void) = W.ready;
        W.ready = NULL;
        ready();
    }
}

/* Every 10 ms: reconnects, phase changes, the end. */
static void on_tick(dx_loop *loop, dx_timer *t)
{
    (void)t;
    uint64_t now = now_ns();
    if (got_term) {
        if (W.ph == PH_MEASURE)
            W.rep->window_s = (double)(now - W.measure_at) / 1e9;
        W.ph = PH_DONE;
        dx_loop_stop(loop);
        return;
    }
    pump_pending();
    if (W.ph == PH_CONNECT || (bo.mode == B_CONNRATE && W.ph != PH_HOLD)) {
        if (!W.rep->ever_connected && W.rep->connect_errors >= (uint64_t)W.count) {
            W.rep->gave_up = 1; /* every slot failed, none ever connected */
            W.ph = PH_DONE;
            dx_loop_stop(loop);
            return;
        }
    }
    if (BK.joining) {
        join_tick(now);
        return;
    }
    if (W.ph == PH_CONNECT) {
        int done = W.nconnected >= W.count || bo.mode == B_CONNRATE;
        if (bo.mode == B_IDLE && bo.echo_once) {
            done = 1;
            for (long i = 0; i < W.count && done; i++)
                done = W.cs[i].st == C_IDLE;
        }
        if (!done && now - W.start >= CONNECT_DEADLINE_NS) {
            done = 1;
            if (!W.nconnected) {
                W.rep->gave_up = 1;
                if (!W.rep->last_connect_error)
                    W.rep->last_connect_error = DX_ETIMEDOUT;
                W.ph = PH_DONE;
                dx_loop_stop(loop);
                return;
            }
        }
        if (done) {
            W.rep->established = (uint64_t)W.nconnected;
            if (bo.mode == B_IDLE) {
                W.ph = PH_HOLD;
                W.hold_end = bo.secs > 0 ? now + (uint64_t)(bo.secs * 1e9) : 0;
                send_report();
                return;
            }
            W.ph = PH_WARMUP;
            W.measure_at = now + (uint64_t)(bo.warmup * 1e9);
            W.end_at = W.measure_at + (uint64_t)(bo.secs * 1e9);
        }
    }
    if (W.ph == PH_WARMUP && now >= W.measure_at) {
        W.ph = PH_MEASURE;
        W.measure_at = now;
        W.end_at = now + (uint64_t)(bo.secs * 1e9);
    }
    if (W.ph == PH_MEASURE && now >= W.end_at) {
        W.rep->window_s = (double)(now - W.measure_at) / 1e9;
        if (bo.mode == B_BROKER && BK.inflight && now - BK.t0 >= STALL_NS) {
            W.rep->stalled = (uint64_t)BK.waiting; /* the server stopped delivering */
            W.rep->errors += (uint64_t)BK.waiting;
        }
        W.ph = PH_DONE;
        dx_loop_stop(loop);
    }
    if (W.ph == PH_HOLD && W.hold_end && now >= W.hold_end) {
        W.ph = PH_DONE;
        dx_loop_stop(loop);
    }
}

static unsigned char *make_block(void)
{
    unsigned char *b = malloc(2 * BLOCK);
    if (!b)
        return NULL;
    size_t got = 0;
    while (got < BLOCK) {
#ifdef _WIN32
        ssize_t r = -1; /* the fallback below */
        errno = ENOSYS;
#else
        ssize_t r = getrandom(b + got, BLOCK - got, 0);
#endif
        if (r < 0) {
            if (errno == EINTR)
                continue;
            /* no getrandom: any varied bytes will do for checking echoes */
            uint64_t x = now_ns() | 1;
            for (size_t i = got; i < BLOCK; i++) {
                x ^= x << 13, x ^= x >> 7, x ^= x << 17;
                b[i] = (unsigned char)x;
            }
            break;
        }
        got += (size_t)r;
    }
    memcpy(b + BLOCK, b, BLOCK);
    return b;
}

/* Run `count` connections (slots first..first+count-1). Fills rep. With
 * out_fd >= 0, writes the report there. Returns 0, or an exit code. */
static int run_worker(const dx_addr *dst, int src_ok, long first, long count, int out_fd,
                      struct report *rep, unsigned char *block, void (*ready)(void))
{
    int ndsts = W.ndsts;
    dx_addr dsts[MAX_NODES];
    memcpy(dsts, W.dsts, sizeof dsts);
    memset(&W, 0, sizeof W);
    memset(&BK, 0, sizeof BK);
    BK.joining = bo.mode == B_BROKER; /* the connect phase */
    W.dst = *dst;
    W.ndsts = ndsts;
    memcpy(W.dsts, dsts, sizeof dsts);
    W.src_ok = src_ok;
    W.first = first;
    W.count = count;
    W.rep = rep;
    W.block = block;
    W.out_fd = out_fd;
    W.ready = ready;
    W.next_addr = first;
    W.pend_cap = count;
    int err = 0;
    W.loop = dx_loop_new(bo.backend, &err);
    W.scratch = malloc(BLOCK);
    W.cs = calloc((size_t)count, sizeof *W.cs);
    W.pend = calloc((size_t)count, sizeof *W.pend);
    if (!W.loop || !W.scratch || !W.cs || !W.pend) {
        if (!W.loop)
            cli_error("bench: event loop backend '%s': %s", bo.backend ? bo.backend : "(default)",
                      err == -ENOENT ? "unknown or unavailable" : dx_strerror(err));
        else
            cli_error("bench: %s", dx_strerror(-ENOMEM));
        if (W.loop)
            dx_loop_free(W.loop);
        free(W.scratch);
        free(W.cs);
        free(W.pend);
        return W.loop ? EXIT_IO : EXIT_USAGE;
    }
    uint64_t x = now_ns() ^ ((uint64_t)getpid() << 32) ^ (uint64_t)first;
    for (long i = 0; i < count; i++) {
        struct conn *c = &W.cs[i];
        c->fd = -1;
        c->id = (uint32_t)(first + i);
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        c->off = (uint32_t)(x >> 11);
        c->st = C_BACKOFF; /* retry_at 0: connect at once */
        pend_push(c);
    }
    W.start = now_ns();
    BK.progress_at = W.start;
    W.ph = PH_CONNECT;
    dx_timer_init(&W.tick, on_tick, NULL);
    dx_timer_start(W.loop, &W.tick, 0, 10);
    pump_pending();
    int rc = dx_loop_run(W.loop);
    if (rc < 0)
        cli_error("bench: event loop: %s", dx_strerror(rc));
    if (W.rep->established == 0 && !W.rep->gave_up)
        W.rep->established = (uint64_t)W.nconnected;
    dx_timer_stop(W.loop, &W.tick);
    for (long i = 0; i < count; i++)
        close_conn(&W.cs[i]);
    send_report(); /* not sent yet unless idle */
    dx_loop_free(W.loop);
    free(W.scratch);
    free(W.cs);
    free(W.pend);
    return rc < 0 ? EXIT_IO : 0;
}

/* ---- the report --------------------------------------------------------------- */

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
            return hist_mid(i) / 1000.0;
    }
    return 0;
}

struct totals {
    struct report r;
    double rate, drate, mib_sent, mib_rcvd, window; /* drate: broker deliveries/s */
    uint64_t hn;
    int lost;
};

static void fmt_us(char *buf, size_t n, double us)
{
    if (us < 10)
        snprintf(buf, n, "%.2f", us);
    else if (us < 100)
        snprintf(buf, n, "%.1f", us);
    else
        snprintf(buf, n, "%.0f", us);
}

/* A few rows of bars, at most 80 columns: the buckets between the lowest and
 * the highest non-empty one, grouped evenly in log-linear index space (that is,
 * about evenly on a log scale). */
static void print_histogram(const uint64_t *h, uint64_t total)
{
    unsigned lo = HIST_N, hi = 0;
    for (unsigned i = 0; i < HIST_N; i++)
        if (h[i]) {
            if (lo == HIST_N)
                lo = i;
            hi = i;
        }
    if (lo == HIST_N)
        return;
    enum { ROWS = 12, BAR = 40 };
    unsigned span = hi - lo + 1, rows = span < ROWS ? span : ROWS;
    uint64_t cnt[ROWS] = { 0 };
    unsigned from[ROWS], to[ROWS];
    for (unsigned r = 0; r < rows; r++) {
        from[r] = lo + (unsigned)((uint64_t)span * r / rows);
        to[r] = lo + (unsigned)((uint64_t)span * (r + 1) / rows) - 1;
        for (unsigned i = from[r]; i <= to[r]; i++)
            cnt[r] += h[i];
    }
    uint64_t max = 1;
    for (unsigned r = 0; r < rows; r++)
        if (cnt[r] > max)
            max = cnt[r];
    printf("\nlatency histogram (µs)\n");
    for (unsigned r = 0; r < rows; r++) {
        char a[32], b[32], bar[BAR + 1];
        fmt_us(a, sizeof a, (double)hist_lower(from[r]) / 1000.0);
        fmt_us(b, sizeof b, (double)(hist_lower(to[r]) + hist_width(to[r])) / 1000.0);
        unsigned len = (unsigned)((cnt[r] * BAR + max - 1) / max);
        memset(bar, '#', len);
        bar[len] = 0;
        printf("  %9s - %-9s |%-*s| %5.1f%%\n", a, b, BAR, bar,
               100.0 * (double)cnt[r] / (double)total);
    }
}

static void print_json(const struct totals *t)
{
    const struct report *r = &t->r;
    /* broker: msgs are deliveries (what echo scripts read), rounds besides */
    int broker = bo.mode == B_BROKER;
    char rounds[96] = "", stalled[48] = "";
    if (broker) {
        snprintf(rounds, sizeof rounds, "\"rounds\":%llu,\"rounds_per_s\":%.0f,",
                 (unsigned long long)r->msgs, t->rate);
        snprintf(stalled, sizeof stalled, ",\"stalled\":%llu", (unsigned long long)r->stalled);
    }
    printf("{\"mode\":\"%s\",\"tls\":%s,\"host\":\"%s\",\"port\":\"%s\",\"conns\":%ld,\"procs\":%ld,"
           "\"size\":%ld,\"secs\":%.1f,\"warmup\":%.1f,\"window_s\":%.3f,"
           "\"msgs\":%llu,\"msgs_per_s\":%.0f,%s\"mib_per_s\":%.2f,\"sent_mib_per_s\":%.2f,"
           "\"rcvd_mib_per_s\":%.2f,\"p50_us\":%.1f,\"p90_us\":%.1f,\"p99_us\":%.1f,"
           "\"p999_us\":%.1f,\"max_us\":%.1f,\"established\":%llu,\"errors\":%llu,"
           "\"verify_errors\":%llu,\"connect_errors\":%llu%s%s}\n",
           mode_names[bo.mode], bo.tls ? "true" : "false", bo.host, bo.port, bo.conns, bo.procs,
           bo.mode == B_CONNRATE ? 1L : bo.size, bo.secs, bo.warmup, t->window,
           (unsigned long long)(broker ? r->deliveries : r->msgs), broker ? t->drate : t->rate,
           rounds, bo.send_only ? t->mib_sent : t->mib_rcvd, t->mib_sent, t->mib_rcvd,
           pct(r->hist, t->hn, 0.50), pct(r->hist, t->hn, 0.90), pct(r->hist, t->hn, 0.99),
           pct(r->hist, t->hn, 0.999), pct(r->hist, t->hn, 1.0),
           (unsigned long long)r->established, (unsigned long long)(r->errors + (uint64_t)t->lost),
           (unsigned long long)r->verify_errors, (unsigned long long)r->connect_errors,
           t->lost ? ",\"lost_workers\":true" : "", stalled);
}

static void print_text(const struct totals *t)
{
    const struct report *r = &t->r;
    printf("duplex bench %s %s %s: %ld %sconnection%s, %ld process%s, %s backend\n",
           mode_names[bo.mode], bo.host, bo.port, bo.conns, bo.tls ? "TLS " : "",
           bo.conns == 1 ? "" : "s", bo.procs, bo.procs == 1 ? "" : "es", backend_name);
    printf("  connections   %llu established\n", (unsigned long long)r->established);
    if (bo.mode == B_IDLE) {
        if (bo.secs > 0)
            printf("  holding them  for %.1f s\n", bo.secs);
        else
            printf("  holding them  until interrupted\n");
    } else {
        printf("  measured      %.2f s after %.1f s of warm-up\n", t->window, bo.warmup);
        if (bo.mode == B_THROUGHPUT) {
            printf("  sent          %.2f MiB/s\n", t->mib_sent);
            if (!bo.send_only)
                printf("  echoed        %.2f MiB/s (every byte checked)\n", t->mib_rcvd);
            else
                printf("  (--send-only: the server's answers are discarded)\n");
        } else if (bo.mode == B_BROKER) {
            printf("  rounds        %llu (%.0f/s), %ld byte%s from one client to the %ld "
                   "others\n", (unsigned long long)r->msgs, t->rate, bo.size,
                   bo.size == 1 ? "" : "s", bo.conns - 1);
            printf("  deliveries    %llu (%.0f/s, every byte checked)\n",
                   (unsigned long long)r->deliveries, t->drate);
        } else {
            printf("  %-13s %llu (%.0f/s), %s%ld byte%s each\n",
                   bo.mode == B_CONNRATE ? "connections" : "messages",
                   (unsigned long long)r->msgs, t->rate,
                   bo.mode == B_CONNRATE ? "connect + echo + close, " : "",
                   bo.mode == B_CONNRATE ? 1L : bo.size,
                   (bo.mode == B_CONNRATE ? 1L : bo.size) == 1 ? "" : "s");
        }
    }
    if (t->hn) {
        char v[5][32];
        fmt_us(v[0], 32, pct(r->hist, t->hn, 0.50));
        fmt_us(v[1], 32, pct(r->hist, t->hn, 0.90));
        fmt_us(v[2], 32, pct(r->hist, t->hn, 0.99));
        fmt_us(v[3], 32, pct(r->hist, t->hn, 0.999));
        fmt_us(v[4], 32, pct(r->hist, t->hn, 1.0));
        printf("  latency µs    p50 %s  p90 %s  p99 %s  p99.9 %s  max %s\n",
               v[0], v[1], v[2], v[3], v[4]);
    }
    printf("  errors        %llu (%llu wrong or unexpected byte%s, %llu failed connect%s)%s\n",
           (unsigned long long)(r->errors + (uint64_t)t->lost),
           (unsigned long long)r->verify_errors, cli_s(r->verify_errors),
           (unsigned long long)r->connect_errors, cli_s(r->connect_errors),
           t->lost ? ", workers lost" : "");
    if (r->stalled)
        printf("  stalled       %llu receiver%s still waiting for the last round at the end\n",
               (unsigned long long)r->stalled, r->stalled == 1 ? "" : "s");
    if (t->hn && bo.mode != B_IDLE)
        print_histogram(r->hist, t->hn);
}

static void add_report(struct totals *t, const struct report *one)
{
    struct report *r = &t->r;
    r->msgs += one->msgs;
    r->deliveries += one->deliveries;
    r->stalled += one->stalled;
    r->bytes_sent += one->bytes_sent;
    r->bytes_rcvd += one->bytes_rcvd;
    r->errors += one->errors;
    r->verify_errors += one->verify_errors;
    r->connect_errors += one->connect_errors;
    r->established += one->established;
    r->ever_connected += one->ever_connected;
    if (one->last_connect_error)
        r->last_connect_error = one->last_connect_error;
    r->gave_up += one->gave_up;
    if (one->window_s > 0) {
        t->rate += (double)one->msgs / one->window_s;
        t->drate += (double)one->deliveries / one->window_s;
        t->mib_sent += (double)one->bytes_sent / one->window_s / 1048576.0;
        t->mib_rcvd += (double)one->bytes_rcvd / one->window_s / 1048576.0;
        if (one->window_s > t->window)
            t->window = one->window_s;
    }
    for (unsigned i = 0; i < HIST_N; i++)
        r->hist[i] += one->hist[i];
}

static struct totals *T;
static int report_rc;

/* A run that measured nothing is a failure, whatever the error count says
 * (a server that reads and never answers gives 0 messages and 0 errors):
 * why, or NULL when something was measured. */
static const char *nothing_measured(const struct report *r)
{
    switch (bo.mode) {
    case B_ECHO:
        return r->msgs ? NULL : "no message came back whole (does the server echo?)";
    case B_CONNRATE:
        return r->msgs ? NULL : "no connect-echo-close cycle completed (does the server echo?)";
    case B_THROUGHPUT:
        if (bo.send_only)
            return r->bytes_sent ? NULL : "no byte could be sent";
        return r->bytes_rcvd ? NULL : "no byte came back (does the server echo? --send-only "
                                      "measures sending alone)";
    case B_BROKER:
        return r->msgs ? NULL : "no round completed (does the server send each client's bytes "
                                "to the other clients?)";
    case B_IDLE:
        return r->established ? NULL : "no connection stayed open";
    case B_NMODES:
        break;
    }
    return NULL;
}

/* Print the merged report; returns the exit code it implies. */
static int finish(void)
{
    char where[DX_ADDR_STRLEN];
    T->hn = 0;
    for (unsigned i = 0; i < HIST_N; i++)
        T->hn += T->r.hist[i];
    if (!T->r.ever_connected && T->r.gave_up) {
        dx_addr_format(&W.dst, where, sizeof where);
        int code = T->r.last_connect_error ? T->r.last_connect_error : -ECONNREFUSED;
        if (bo.tls && code == -EPROTO)
            cli_error("bench: connect %s: TLS handshake failed (does the server speak TLS?); "
                      "no connection could be made", where);
        else
            cli_error("bench: connect %s: %s (no connection could be made)", where,
                      dx_strerror(code));
        return EXIT_CONNECT;
    }
    if (bo.json)
        print_json(T);
    else
        print_text(T);
    fflush(stdout);
    if (T->r.verify_errors)
        return EXIT_IO;
    if (T->lost)
        return EXIT_IO;
    const char *why = nothing_measured(&T->r);
    if (why && !got_term) {
        cli_error("bench: measured nothing: %s", why);
        return EXIT_IO;
    }
    return EXIT_OK;
}

static void ready_inprocess(void)
{
    add_report(T, W.rep);
    report_rc = finish();
}

/* ---- command line --------------------------------------------------------------- */

static const char bench_usage[] =
"usage: duplex bench echo|connrate|idle|throughput|broker HOST PORT [options]\n"
"\n"
"A closed-loop load generator for stream servers (an echo server for echo,\n"
"connrate and throughput; a fan-out server for broker; any server for idle).\n"
"  echo        each connection sends SIZE random bytes, waits for all of them to\n"
"              come back, checks every byte, and sends again (one message in\n"
"              flight per connection); reports messages/s and latency\n"
"  connrate    each of CONNS slots loops: connect, send 1 byte, read it back,\n"
"              close; reports connections/s and the latency of the whole cycle\n"
"  throughput  each connection sends continuously; what the server sends back\n"
"              is read, checked and counted (MiB/s echoed). --send-only: only\n"
"              sending counts (MiB/s sent), the answers are discarded\n"
"  idle        open CONNS connections, print the report as soon as they are\n"
"              open, then hold them for SECS seconds (0: until interrupted)\n"
"  broker      for servers that send each client's bytes to every other client\n"
"              (duplex listen -k --broker, ncat --broker): CONNS >= 2, one\n"
"              process, one message in flight in the whole run. In round r,\n"
"              connection r % CONNS sends SIZE bytes; when each of the others\n"
"              has all of them (every byte checked; bytes back at the sender\n"
"              are wrong) the next round starts. Reports rounds/s, deliveries/s\n"
"              (msgs_per_s in JSON) and the latency of a round. A connection\n"
"              that fails is not reopened; a round still unfinished 1 s after\n"
"              it started when the run ends counts its missing receivers as\n"
"              errors\n"
"\n"
"Options:\n"
"  -c, --conns N        connections (default 1; broker: 2)\n"
"  -d, --duration SECS  measured seconds (default 5; idle: how long to hold)\n"
"  -w, --warmup SECS    warm-up before measuring (default 1)\n"
"  -s, --size N         echo, broker: message bytes (default 64); throughput:\n"
"                       bytes per send (default and most 65536)\n"
"  -p, --procs N        worker processes sharing the connections (default: 1, or\n"
"                       as many as the per-process descriptor limit requires)\n"
"  -a, --addrs N        bind to source addresses 127.0.0.1..127.0.0.N in turn\n"
"                       (IP_BIND_ADDRESS_NO_PORT; IPv4 loopback targets only).\n"
"                       Default: 64 for connrate, else 1 per half of the\n"
"                       ephemeral port range once CONNS exceeds that half\n"
"  -e, --echo-once      idle: echo one SIZE-byte message on each connection\n"
"                       before holding it\n"
"      --send-only      throughput: only send\n"
"      --json           print one JSON line instead of the report\n"
"      --backend NAME   event loop backend: epoll, poll, io_uring (or\n"
"                       DUPLEX_BACKEND)\n"
"      --ssl, --tls     every connection is a TLS client (the handshake counts\n"
"                       as part of the connect; the server's certificate is not\n"
"                       checked); not with broker\n"
"      --nodes LIST     broker: spread the connections round-robin over HOST PORT\n"
"                       and each PORT or HOST:PORT of LIST (comma-separated), the\n"
"                       nodes of one cluster (listen --broker --cluster): every\n"
"                       round must reach every other connection, whichever node\n"
"                       it is on\n"
"  -h, --help           this help\n"
"\n"
"Latency (p50, p90, p99, p99.9, max) is measured from the first byte sent to the\n"
"last byte of the echo (connrate: from connect() to the echoed byte; broker:\n"
"from the send to the last byte at the last receiver), in a\n"
"log-linear histogram (within about 3 %). Errors count failed connects, resets,\n"
"early end of input and wrong bytes; a failed connection is reopened.\n"
"\n"
"Exit status: 0 ok, 1 a byte came back wrong, a worker died, or the run\n"
"measured nothing (no message, cycle, byte or round came back; idle: no\n"
"connection stayed open), 2 usage error, 3 unknown host, 4 no connection could\n"
"be made at all.\n";

static int usage_error(const char *fmt, const char *arg)
{
    fputs("duplex: bench: ", stderr);
    fprintf(stderr, fmt, arg);
    fputs("\nTry 'duplex bench --help' for more information.\n", stderr);
    return EXIT_USAGE;
}

static int parse_long(const char *s, long lo, long hi, long *out)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < lo || v > hi)
        return -1;
    *out = v;
    return 0;
}

static int parse_secs(const char *s, double *out)
{
    int64_t ms;
    if (cli_parse_duration(s, 1e6, &ms) < 0) /* 3000ms, 3s, 2m, 1h or seconds */
        return -1;
    *out = (double)ms / 1000.0;
    return 0;
}

enum { OPT_JSON = 300, OPT_SEND_ONLY, OPT_BACKEND, OPT_SSL, OPT_NODES };
static const struct option bench_opts[] = {
    {"conns", required_argument, NULL, 'c'},
    {"duration", required_argument, NULL, 'd'},
    {"warmup", required_argument, NULL, 'w'},
    {"size", required_argument, NULL, 's'},
    {"procs", required_argument, NULL, 'p'},
    {"addrs", required_argument, NULL, 'a'},
    {"echo-once", no_argument, NULL, 'e'},
    {"send-only", no_argument, NULL, OPT_SEND_ONLY},
    {"json", no_argument, NULL, OPT_JSON},
    {"backend", required_argument, NULL, OPT_BACKEND},
    {"ssl", no_argument, NULL, OPT_SSL},
    {"nodes", required_argument, NULL, OPT_NODES},
    {"tls", no_argument, NULL, OPT_SSL},
    {"help", no_argument, NULL, 'h'},
    {NULL, 0, NULL, 0},
};

static int parse_args(int argc, char **argv)
{
    memset(&bo, 0, sizeof bo);
    bo.conns = 1;
    bo.procs = 1;
    bo.secs = 5;
    bo.warmup = 1;
    bo.size = 64;
    optind = 1;
    opterr = 0;
    int ch, conns_given = 0;
    while ((ch = getopt_long(argc, argv, ":c:d:w:s:p:a:eh", bench_opts, NULL)) != -1) {
        switch (ch) {
        case 'c':
            if (parse_long(optarg, 1, 10000000, &bo.conns) < 0)
                return usage_error("invalid connection count '%s': expected 1-10000000", optarg);
            conns_given = 1;
            break;
        case 'd':
            if (parse_secs(optarg, &bo.secs) < 0)
                return usage_error("invalid duration '%s': expected 0-1000000 seconds (3000ms, 3s, 2m, 1h)", optarg);
            break;
        case 'w':
            if (parse_secs(optarg, &bo.warmup) < 0)
                return usage_error("invalid warm-up '%s': expected 0-1000000 seconds (3000ms, 3s, 2m, 1h)", optarg);
            break;
        case 's':
            if (parse_long(optarg, 1, 1L << 24, &bo.size) < 0)
                return usage_error("invalid size '%s': expected 1-16777216 bytes", optarg);
            bo.size_given = 1;
            break;
        case 'p':
            if (parse_long(optarg, 1, 256, &bo.procs) < 0)
                return usage_error("invalid process count '%s': expected 1-256", optarg);
            bo.procs_given = 1;
            break;
        case 'a':
            if (parse_long(optarg, 1, 65534, &bo.naddrs) < 0)
                return usage_error("invalid address count '%s': expected 1-65534", optarg);
            break;
        case 'e': bo.echo_once = 1; break;
        case OPT_SEND_ONLY: bo.send_only = 1; break;
        case OPT_JSON: bo.json = 1; break;
        case OPT_BACKEND: bo.backend = optarg; break;
        case OPT_SSL: bo.tls = 1; break;
        case OPT_NODES: bo.nodes = optarg; break;
        case 'h':
            fputs(bench_usage, stdout);
            return -1;
        case ':':
            return usage_error("option '%s' needs an argument", argv[optind - 1]);
        default:
            return usage_error("unknown option '%s'", argv[optind - 1]);
        }
    }
    int npos = argc - optind;
    if (npos < 1)
        return usage_error("%s", "missing mode: echo, connrate, idle, throughput or broker");
    const char *m = argv[optind];
    int found = 0;
    for (int i = 0; i < B_NMODES; i++)
        if (strcmp(m, mode_names[i]) == 0)
            bo.mode = (enum bmode)i, found = 1;
    if (!found)
        return usage_error("unknown mode '%s': expected echo, connrate, idle, throughput or "
                           "broker", m);
    if (npos != 3)
        return usage_error("%s", npos < 3 ? "HOST and PORT are needed" : "too many arguments");
    bo.host = argv[optind + 1];
    bo.port = argv[optind + 2];
    if (!*bo.host)
        return usage_error("%s", "the HOST is empty: give a name or an address (127.0.0.1 or ::1 "
                           "for this machine)");
    if (dx_parse_port(bo.port) <= 0)
        return usage_error("invalid port '%s': expected 1-65535 or a service name", bo.port);
    if (bo.mode != B_IDLE && bo.secs <= 0)
        return usage_error("%s", "the duration (-d) must be more than 0 seconds");
    if (bo.send_only && bo.mode != B_THROUGHPUT)
        return usage_error("%s", "--send-only applies to throughput only");
    if (bo.echo_once && bo.mode != B_IDLE)
        return usage_error("%s", "--echo-once applies to idle only");
    if (bo.tls && bo.mode == B_BROKER)
        return usage_error("%s", "--ssl: echo, connrate, idle and throughput only (broker "
                           "rounds count raw bytes)");
    if (bo.mode == B_BROKER) {
        if (!conns_given)
            bo.conns = 2;
        if (bo.conns < 2)
            return usage_error("%s", "broker needs at least 2 connections (-c)");
        if (bo.procs > 1)
            return usage_error("%s", "broker runs in one process (-p 1): one message is in flight "
                               "in the whole run");
    }
    if (bo.nodes && bo.mode != B_BROKER)
        return usage_error("%s", "--nodes spreads a broker's clients over the nodes of a cluster: "
                           "broker only");
    if (bo.mode == B_THROUGHPUT) {
        if (!bo.size_given)
            bo.size = BLOCK;
        if (bo.size > (long)BLOCK)
            return usage_error("%s", "throughput sends at most 65536 bytes at a time (-s)");
    }
    return 0;
}

/* --nodes PORT|HOST:PORT[,...]: W.dsts gets HOST PORT's address, then each
 * node's (a bare PORT on HOST). 0, or an exit code after saying why. */
static int resolve_nodes(const dx_addr *first)
{
    W.dsts[0] = *first;
    W.ndsts = 1;
    char list[1024];
    if (strlen(bo.nodes) >= sizeof list) {
        cli_error("bench: --nodes: the list is too long");
        return EXIT_USAGE;
    }
    strcpy(list, bo.nodes);
    for (char *save = NULL, *item = strtok_r(list, ",", &save); item; item = strtok_r(NULL, ",", &save)) {
        if (W.ndsts == MAX_NODES) {
            cli_error("bench: --nodes: at most %d targets", MAX_NODES);
            return EXIT_USAGE;
        }
        char buf[1024];
        const char *host = bo.host, *port = item;
        if (dx_parse_port(item) <= 0 && dx_split_hostport(item, buf, sizeof buf, &host, &port) < 0) {
            cli_error("bench: --nodes: '%s' is neither PORT nor HOST:PORT", item);
            return EXIT_USAGE;
        }
        if (dx_parse_port(port) <= 0) {
            cli_error("bench: --nodes: invalid port '%s'", port);
            return EXIT_USAGE;
        }
        dx_addr *addrs = NULL;
        int n = dx_resolve(host, port, AF_UNSPEC, 0, &addrs);
        if (n < 0) {
            cli_error("bench: --nodes: %s: %s", host, dx_strerror(n));
            return cli_exit_code_for(n, 1);
        }
        W.dsts[W.ndsts++] = addrs[0];
        free(addrs);
    }
    return 0;
}

static long ephemeral_range(void)
{
    long lo = 32768, hi = 60999;
    FILE *f = fopen("/proc/sys/net/ipv4/ip_local_port_range", "r");
    if (f) {
        if (fscanf(f, "%ld %ld", &lo, &hi) != 2)
            lo = 32768, hi = 60999;
        fclose(f);
    }
    return hi >= lo ? hi - lo + 1 : 28232;
}

#ifndef _WIN32
/* -p PROCS > 1: forked workers, each with its share of the connections,
 * send their reports through pipes; merged and printed here. */
static int run_processes(const dx_addr *dst, int src_ok, unsigned char *block)
{
    int rc;
    pid_t *pids = calloc((size_t)bo.procs, sizeof *pids);
    int *fds = calloc((size_t)bo.procs, sizeof *fds);
    struct report *one = malloc(sizeof *one);
    if (!pids || !fds || !one) {
        cli_error("bench: %s", dx_strerror(-ENOMEM));
        return EXIT_IO;
    }
    long first = 0, started = 0;
    for (long p = 0; p < bo.procs; p++) {
        long cnt = bo.conns / bo.procs + (p < bo.conns % bo.procs);
        int pfd[2];
        if (pipe2(pfd, O_CLOEXEC) < 0) {
            cli_error("bench: pipe: %s", dx_strerror(-errno));
            break;
        }
        fflush(stdout);
        pid_t pid = fork();
        if (pid < 0) {
            cli_error("bench: fork: %s", dx_strerror(-errno));
            close(pfd[0]);
            close(pfd[1]);
            break;
        }
        if (pid == 0) {
            close(pfd[0]);
            for (long q = 0; q < p; q++)
                close(fds[q]);
            struct report *rep = calloc(1, sizeof *rep);
            int wrc = rep ? run_worker(dst, src_ok, first, cnt, pfd[1], rep, block, NULL) : EXIT_IO;
            _exit(wrc);
        }
        close(pfd[1]);
        pids[p] = pid;
        fds[p] = pfd[0];
        first += cnt;
        started++;
    }
    for (long p = 0; p < started; p++) {
        size_t got = 0;
        while (got < sizeof *one) {
            ssize_t r = read(fds[p], (char *)one + got, sizeof *one - got);
            if (r < 0 && errno == EINTR) {
                if (got_term)
                    for (long q = 0; q < started; q++)
                        kill(pids[q], SIGTERM);
                continue;
            }
            if (r <= 0)
                break;
            got += (size_t)r;
        }
        close(fds[p]);
        if (got < sizeof *one)
            T->lost++;
        else
            add_report(T, one);
    }
    T->lost += (int)(bo.procs - started);
    rc = finish();
    int bad = 0;
    for (long p = 0; p < started; p++) {
        int st;
        pid_t w;
        while ((w = waitpid(pids[p], &st, 0)) < 0 && errno == EINTR)
            if (got_term)
                for (long q = 0; q < started; q++)
                    kill(pids[q], SIGTERM);
        if (w < 0 || !WIFEXITED(st) || (WEXITSTATUS(st) && !got_term))
            bad = 1;
    }
    if (bad && rc == EXIT_OK)
        rc = EXIT_IO;
    free(pids);
    free(fds);
    free(one);
    free(block);
    free(T);
    return rc;
}
#else
/* No fork on Windows: -p above 1 is refused at start-up. */
static int run_processes(const dx_addr *dst, int src_ok, unsigned char *block)
{
    (void)dst, (void)src_ok;
    free(block);
    free(T);
    return EXIT_USAGE;
}
#endif

int cli_bench_main(int argc, char **argv)
{
    int rc = parse_args(argc, argv);
    if (rc != 0)
        return rc < 0 ? EXIT_OK : rc;

    /* the backend must exist before anything is started */
    int err = 0;
    dx_loop *probe = dx_loop_new(bo.backend, &err);
    if (!probe) {
        const char *name = bo.backend ? bo.backend : getenv("DUPLEX_BACKEND");
        cli_error("event loop backend '%s': %s", name ? name : "(default)",
                  err == -ENOENT ? "unknown or unavailable (try epoll or poll)" : dx_strerror(err));
        return EXIT_USAGE;
    }
    snprintf(backend_name, sizeof backend_name, "%s", dx_loop_backend(probe));
    dx_loop_free(probe);

    dx_addr *addrs = NULL;
    int n = dx_resolve(bo.host, bo.port, AF_UNSPEC, 0, &addrs);
    if (n < 0) {
        cli_error("bench: %s: %s", bo.host, dx_strerror(n));
        return cli_exit_code_for(n, 1);
    }
    dx_addr dst = addrs[0];
    free(addrs);
    if (bo.nodes && (rc = resolve_nodes(&dst)) != 0)
        return rc;
    const struct sockaddr_in *sin = (const struct sockaddr_in *)&dst.ss;
    int src_ok = sin->sin_family == AF_INET && (ntohl(sin->sin_addr.s_addr) >> 24) == 127;
    if (!bo.naddrs) {
        long half = ephemeral_range() / 2;
        bo.naddrs = bo.mode == B_CONNRATE ? 64 : bo.conns <= half ? 1 : (bo.conns + half - 1) / half;
    }

    /* descriptors: raise the soft limit, then split over processes */
#ifdef _WIN32
    long fdmax = 1L << 20; /* sockets are handles: no descriptor limit to raise */
    if (bo.procs > 1) {
        cli_error("bench -p: worker processes are not available on %s (no fork); one process "
                  "drives every connection (-p 1)", DX_OS_NAME);
        return EXIT_USAGE;
    }
#else
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    long fdmax = getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY
                 ? (long)rl.rlim_cur : 1L << 20;
#endif
    long per_proc_max = fdmax - 32;
    if (per_proc_max < 1)
        per_proc_max = 1;
    if (!bo.procs_given)
        bo.procs = (bo.conns + per_proc_max - 1) / per_proc_max;
    if (bo.procs > bo.conns)
        bo.procs = bo.conns;
    if (bo.mode == B_BROKER && bo.procs > 1) {
        fprintf(stderr, "duplex: bench: broker runs in one process: %ld connections exceed "
                "the descriptor limit %ld\n", bo.conns, fdmax);
        return EXIT_USAGE;
    }
    if ((bo.conns + bo.procs - 1) / bo.procs > per_proc_max) {
        fprintf(stderr, "duplex: bench: %ld connections per process exceed the descriptor limit "
                "%ld; use -p %ld or more\n", (bo.conns + bo.procs - 1) / bo.procs, fdmax,
                (bo.conns + per_proc_max - 1) / per_proc_max);
        return EXIT_USAGE;
    }

    if (bo.tls && (rc = cli_tls_bench_init()) != 0)
        return rc;
#ifdef _WIN32
    signal(SIGINT, on_term); /* Ctrl-C: the C runtime's console handler */
    signal(SIGTERM, on_term);
#else
    signal(SIGPIPE, SIG_IGN);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_term;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
#endif

    unsigned char *block = make_block();
    T = calloc(1, sizeof *T);
    if (!block || !T) {
        cli_error("bench: %s", dx_strerror(-ENOMEM));
        free(block);
        free(T);
        return EXIT_IO;
    }
    W.dst = dst;

    if (bo.procs == 1) {
        struct report *rep = calloc(1, sizeof *rep);
        if (!rep) {
            cli_error("bench: %s", dx_strerror(-ENOMEM));
            free(block);
            free(T);
            return EXIT_IO;
        }
        /* the report is printed by ready_inprocess(), when the run ends or
         * (idle) when the connect phase does */
        rc = run_worker(&dst, src_ok, 0, bo.conns, -1, rep, block, ready_inprocess);
        if (!rc)
            rc = report_rc;
        free(rep);
        free(block);
        free(T);
        return rc;
    }

    return run_processes(&dst, src_ok, block);
}
