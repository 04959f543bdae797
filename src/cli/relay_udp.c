/* relay_udp.c: `duplex relay -u LISTEN TARGET`: a UDP forwarder. Each client
 * address gets a session: a socket of its own connected to TARGET, so what
 * the target answers on it goes back to that client alone, sent from the
 * listening socket it came to. Datagrams pass whole, one by one, never
 * merged or split.
 * - A new client address passes listeners_admit() (--allow/--deny) once;
 *   then --max-conns: beyond it the new client's datagrams are dropped (the
 *   sessions that exist go on; -v says so once while it keeps sending).
 * - A session ends after --idle-timeout without a datagram either way, or
 *   when the target refuses (ICMP port unreachable): the client's next
 *   datagram opens a new one. The relay itself never ends for a session's
 *   trouble.
 * - Backpressure: a datagram that finds no room in its socket waits there,
 *   and nothing more is read from the side it came from until it is sent
 *   (the kernel queues, then drops: datagram semantics). */
#define _GNU_SOURCE
#include "cli.h"
#include "os.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define DGRAM_BUF (64 * 1024)    /* holds any UDP datagram (65507 bytes over IPv4) */
#define RECVS_PER_WAKEUP 64      /* fairness between the listeners, the sessions, the timers */
#define MAX_SOCKS MAX_LISTENERS
/* The listening socket's receive buffer: it queues every client's
 * datagrams, where the default (208 KiB, about 300 small datagrams) drops
 * some as soon as 50 clients have 8 each in flight. The kernel caps it at
 * net.core.rmem_max; -O rcvbuf=BYTES chooses another. */
#define LISTEN_RCVBUF (4 << 20)

/* An ICMP port unreachable answering a datagram: Linux says ECONNREFUSED,
 * Windows WSAECONNRESET (UDP has no other reset). */
#define IS_REFUSED(err) ((err) == -ECONNREFUSED || (DX_OS_WINDOWS && (err) == -ECONNRESET))

struct sess {
    struct relay_udp *r;
    struct sess *hnext;         /* hash chain */
    struct sess *newer, *older; /* by last datagram: the sweep starts at the oldest */
    struct sess *next_blocked;  /* waiting for room on its listening socket */
    dx_addr client;             /* as received (IPv4-mapped on a dual-stack socket) */
    int lsock;                  /* the listening socket it came to, and replies leave from */
    dx_io io;                   /* the socket connected to TARGET */
    char name[DX_ADDR_STRLEN];
    uint64_t started, last;
    uint64_t dgrams_up, bytes_up, dgrams_down, bytes_down;
    char *reply;                /* the target's datagram, waiting for room (malloc'd) */
    size_t reply_len;
    int error;                  /* why it ended early, for the report */
};

struct relay_udp {
    const struct options *o;
    dx_loop *loop;
    dx_io sock[MAX_SOCKS];      /* the listening sockets */
    int nsock;
    dx_addr *targets;
    int ntargets;
    char target_name[DX_ADDR_STRLEN];
    struct sess **table;        /* client address -> session */
    size_t nbuckets;            /* a power of two */
    struct sess *newest, *oldest;
    unsigned long nsess;
    struct sess *blocked;       /* sessions with a reply waiting for room */
    struct sess *up_waiting;    /* its socket has no room for the client's datagram in buf_up */
    size_t up_len;
    char *buf, *buf_up;         /* a datagram received; one waiting for the target */
    dx_timer sweep;
    unsigned long sessions, failed;
    uint64_t dropped_limit, dropped_acl;
    dx_addr last_dropped;       /* said once while it keeps sending */
    int one_done;               /* without -k: the one session has come and gone */
    int one_taken;              /* without -k: the one session has come */
    int last_error;             /* without -k: how it ended */
};

static void update(struct relay_udp *r);

/* A session's socket: read unless a reply waits for room on the listening
 * socket; written when the client's datagram waits for room on it. */
static void sess_watch(struct relay_udp *r, struct sess *s)
{
    dx_io_set(r->loop, &s->io, (s->reply ? 0 : DX_READ) | (r->up_waiting == s ? DX_WRITE : 0));
}

static size_t hash_addr(const dx_addr *a)
{
    const unsigned char *p = (const unsigned char *)&a->ss;
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (socklen_t i = 0; i < a->len; i++)
        h = (h ^ p[i]) * 1099511628211ull;
    return (size_t)(h ^ (h >> 29));
}

static int same_addr(const dx_addr *a, const dx_addr *b)
{
    return a->len == b->len && memcmp(&a->ss, &b->ss, a->len) == 0;
}

static struct sess *find(struct relay_udp *r, const dx_addr *a)
{
    for (struct sess *s = r->table[hash_addr(a) & (r->nbuckets - 1)]; s; s = s->hnext)
        if (same_addr(&s->client, a))
            return s;
    return NULL;
}

/* Most recent first: the sweep looks at the oldest end only. */
static void lru_unlink(struct relay_udp *r, struct sess *s)
{
    if (s->newer)
        s->newer->older = s->older;
    else
        r->newest = s->older;
    if (s->older)
        s->older->newer = s->newer;
    else
        r->oldest = s->newer;
    s->newer = s->older = NULL;
}

static void lru_push(struct relay_udp *r, struct sess *s)
{
    s->older = r->newest;
    if (r->newest)
        r->newest->newer = s;
    r->newest = s;
    if (!r->oldest)
        r->oldest = s;
}

static void touch(struct relay_udp *r, struct sess *s)
{
    s->last = dx_loop_now(r->loop);
    if (r->newest != s) {
        lru_unlink(r, s);
        lru_push(r, s);
    }
}

static void report(struct relay_udp *r, struct sess *s, const char *why)
{
    const struct options *o = r->o;
    uint64_t ms = dx_loop_now(r->loop) - s->started;
    const char *err = s->error ? dx_strerror(s->error) : NULL;
    if (s->error)
        cli_error("%s -> %s: %s", s->name, r->target_name, err);
    cli_info(o, "%s -> %s: sent %llu datagram%s (%llu byte%s), received %llu datagram%s "
             "(%llu byte%s) in %.3f s%s%s", s->name, r->target_name,
             (unsigned long long)s->dgrams_up, cli_s(s->dgrams_up),
             (unsigned long long)s->bytes_up, cli_s(s->bytes_up),
             (unsigned long long)s->dgrams_down, cli_s(s->dgrams_down),
             (unsigned long long)s->bytes_down, cli_s(s->bytes_down), (double)ms / 1000.0,
             why ? ", " : "", why ? why : "");
    if (!o->stats_json)
        return;
    printf("{\"client\":");
    cli_json_string(stdout, s->name);
    printf(",\"target\":");
    cli_json_string(stdout, r->target_name);
    printf(",\"bytes_up\":%llu,\"bytes_down\":%llu,\"datagrams_up\":%llu,\"datagrams_down\":%llu,"
           "\"duration_ms\":%llu,\"error\":", (unsigned long long)s->bytes_up,
           (unsigned long long)s->bytes_down, (unsigned long long)s->dgrams_up,
           (unsigned long long)s->dgrams_down, (unsigned long long)ms);
    if (err)
        cli_json_string(stdout, err);
    else
        printf("null");
    printf("}\n");
    fflush(stdout);
}

static void sess_close(struct relay_udp *r, struct sess *s, const char *why)
{
    report(r, s, why);
    if (s->error) {
        r->failed++;
        r->last_error = s->error;
    }
    struct sess **pp = &r->table[hash_addr(&s->client) & (r->nbuckets - 1)];
    while (*pp != s)
        pp = &(*pp)->hnext;
    *pp = s->hnext;
    for (pp = &r->blocked; *pp; pp = &(*pp)->next_blocked) {
        if (*pp == s) {
            *pp = s->next_blocked;
            break;
        }
    }
    if (r->up_waiting == s)
        r->up_waiting = NULL; /* its datagram goes with it */
    lru_unlink(r, s);
    dx_io_stop(r->loop, &s->io);
    dx__fd_close(s->io.fd);
    free(s->reply);
    free(s);
    r->nsess--;
    if (!r->o->keep_listening && r->nsess == 0) {
        r->one_done = 1;
        dx_loop_stop(r->loop);
    }
}

/* A datagram from a client with no session: ask the access list and the
 * limit, then connect a socket to TARGET. NULL: dropped (said once while
 * the same client keeps sending). */
static void on_target(dx_loop *loop, dx_io *io, int events);

static struct sess *sess_open(struct relay_udp *r, int lsock, const dx_addr *from)
{
    const struct options *o = r->o;
    char name[DX_ADDR_STRLEN];
    cli_udp_peer_format(from, name, sizeof name);
    int again = r->last_dropped.len && same_addr(&r->last_dropped, from);
    if (!listeners_admit(o, from, name, !again)) {
        r->dropped_acl++;
        r->last_dropped = *from;
        return NULL;
    }
    const char *full = NULL;
    if (!o->keep_listening && r->one_taken)
        full = "one client only without -k";
    else if (r->nsess >= (unsigned long)o->max_conns)
        full = "--max-conns reached";
    if (full) {
        if (!again)
            cli_info(o, "%s: datagram dropped: %s (%lu session%s; said once while it keeps "
                     "sending)", name, full, r->nsess, cli_s(r->nsess));
        r->dropped_limit++;
        r->last_dropped = *from;
        return NULL;
    }
    int fd = DX_ENOADDR;
    for (int i = 0; i < r->ntargets && fd < 0; i++)
        fd = dx_dgram_connect(&r->targets[i], NULL);
    if (fd >= 0 && o->nsockopts > 0 && cli_apply_sockopts(o, fd, r->target_name) < 0) {
        dx__fd_close(fd);
        fd = -EINVAL;
    }
    struct sess *s = fd >= 0 ? calloc(1, sizeof *s) : NULL;
    if (!s) {
        if (!again)
            cli_error("%s: datagram dropped: socket to %s: %s", name, r->target_name,
                      dx_strerror(fd >= 0 ? -ENOMEM : fd));
        if (fd >= 0)
            dx__fd_close(fd);
        r->dropped_limit++;
        r->last_dropped = *from;
        return NULL;
    }
    r->last_dropped.len = 0;
    s->r = r;
    s->client = *from;
    s->lsock = lsock;
    memcpy(s->name, name, sizeof name);
    s->started = s->last = dx_loop_now(r->loop);
    lru_push(r, s);
    dx_io_init(&s->io, fd, on_target, s);
    sess_watch(r, s);
    size_t b = hash_addr(from) & (r->nbuckets - 1);
    s->hnext = r->table[b];
    r->table[b] = s;
    r->nsess++;
    r->sessions++;
    r->one_taken = 1;
    if (o->verbose) {
        dx_addr me;
        char local[DX_ADDR_STRLEN] = "?";
        if (dx_sock_local(fd, &me) == 0)
            dx_addr_format(&me, local, sizeof local);
        cli_info(o, "%s: new session, to %s from %s (%lu session%s)", name, r->target_name, local,
                 r->nsess, cli_s(r->nsess));
    }
    return s;
}

/* The client's datagram in buf_up to the target: 1 sent, 0 waiting for
 * room (reading the listeners pauses), -1 dropped with its session. */
static int send_up(struct relay_udp *r, struct sess *s, size_t n)
{
    ssize_t w = dx_dgram_send(s->io.fd, r->buf_up, n, NULL);
    int was_waiting = r->up_waiting == s;
    if (w == -EAGAIN) {
        r->up_waiting = s;
        r->up_len = n;
        if (!was_waiting)
            sess_watch(r, s);
        return 0;
    }
    r->up_waiting = NULL;
    if (w < 0) {
        /* an ICMP port unreachable for an earlier one, or the target's
         * address unreachable: the session ends, the relay goes on */
        s->error = IS_REFUSED(w) ? -ECONNREFUSED : (int)w;
        sess_close(r, s, NULL);
        return -1;
    }
    if (was_waiting)
        sess_watch(r, s);
    s->dgrams_up++;
    s->bytes_up += (uint64_t)w;
    touch(r, s);
    return 1;
}

static void on_listener(dx_loop *loop, dx_io *io, int events)
{
    (void)loop;
    struct relay_udp *r = io->data;
    int index = (int)(io - r->sock);
    if (events & (DX_WRITE | DX_ERROR)) {
        /* replies waiting for room on this socket */
        struct sess **pp = &r->blocked;
        while (*pp) {
            struct sess *s = *pp;
            if (s->lsock != index) {
                pp = &s->next_blocked;
                continue;
            }
            ssize_t w = dx_dgram_send(io->fd, s->reply, s->reply_len, &s->client);
            if (w == -EAGAIN)
                break;
            if (w >= 0) {
                s->dgrams_down++;
                s->bytes_down += (uint64_t)w;
            }
            free(s->reply);
            s->reply = NULL;
            *pp = s->next_blocked;
            sess_watch(r, s);
        }
    }
    for (int i = 0; i < RECVS_PER_WAKEUP && !r->up_waiting && (events & (DX_READ | DX_ERROR)); i++) {
        dx_addr from;
        ssize_t n = dx_dgram_recv(io->fd, r->buf_up, DGRAM_BUF, &from, NULL);
        if (n == -EAGAIN)
            break;
        if (n < 0) {
            /* an unconnected socket hears of no peer's trouble on Linux; a
             * transient error (ENOMEM) must not stop the relay */
            cli_info(r->o, "receive: %s", dx_strerror((int)n));
            break;
        }
        struct sess *s = find(r, &from);
        if (!s && !(s = sess_open(r, index, &from)))
            continue;
        send_up(r, s, (size_t)n);
    }
    update(r);
}

/* The target's datagrams on a session's socket, back to its client. */
static void on_target(dx_loop *loop, dx_io *io, int events)
{
    (void)loop;
    struct sess *s = io->data;
    struct relay_udp *r = s->r;
    if ((events & (DX_WRITE | DX_ERROR)) && r->up_waiting == s && send_up(r, s, r->up_len) < 0) {
        update(r); /* the session ended */
        return;
    }
    int fd = r->sock[s->lsock].fd;
    for (int i = 0; i < RECVS_PER_WAKEUP && !s->reply && (events & (DX_READ | DX_ERROR)); i++) {
        ssize_t n = dx_dgram_recv(io->fd, r->buf, DGRAM_BUF, NULL, NULL);
        if (n == -EAGAIN)
            break;
        if (n < 0) {
            s->error = IS_REFUSED(n) ? -ECONNREFUSED : (int)n;
            sess_close(r, s, NULL);
            update(r);
            return;
        }
        touch(r, s);
        ssize_t w = dx_dgram_send(fd, r->buf, (size_t)n, &s->client);
        if (w == -EAGAIN) {
            s->reply = malloc((size_t)n ? (size_t)n : 1);
            if (s->reply) {
                memcpy(s->reply, r->buf, (size_t)n);
                s->reply_len = (size_t)n;
                s->next_blocked = r->blocked;
                r->blocked = s;
                sess_watch(r, s);
            }
            break;
        }
        if (w < 0) {
            cli_info(r->o, "send %s: %s", s->name, dx_strerror((int)w)); /* the client's trouble */
            continue;
        }
        s->dgrams_down++;
        s->bytes_down += (uint64_t)w;
    }
    update(r);
}

/* Watch exactly what can make progress: no reading of a side while a
 * datagram from it waits for room on the other. */
static void update(struct relay_udp *r)
{
    for (int i = 0; i < r->nsock; i++) {
        int write = 0;
        for (struct sess *s = r->blocked; s && !write; s = s->next_blocked)
            write = s->lsock == i;
        dx_io_set(r->loop, &r->sock[i], (r->up_waiting ? 0 : DX_READ) | (write ? DX_WRITE : 0));
    }
}

static void on_sweep(dx_loop *loop, dx_timer *t)
{
    struct relay_udp *r = t->data;
    uint64_t now = dx_loop_now(loop), limit = (uint64_t)r->o->idle_timeout_ms;
    char why[64];
    snprintf(why, sizeof why, "closed: idle for %.3g s", (double)limit / 1000.0);
    while (r->oldest && now - r->oldest->last >= limit)
        sess_close(r, r->oldest, why);
    update(r);
}

static int keep(void *ctx, int fd)
{
    struct relay_udp *r = ctx;
    if (r->nsock == MAX_SOCKS) {
        dx__fd_close(fd);
        return 0;
    }
    char text[DX_ADDR_STRLEN] = "udp";
    dx_addr me;
    if (dx_sock_local(fd, &me) == 0)
        dx_addr_format(&me, text, sizeof text);
    int rcvbuf_given = 0;
    for (int i = 0; i < r->o->nsockopts; i++) {
        const dx_sockopt_desc *d = dx_sockopt_describe(r->o->sockopts[i].id);
        rcvbuf_given |= d && d->level == SOL_SOCKET && d->optname == SO_RCVBUF;
    }
    int big = LISTEN_RCVBUF;
    if (!rcvbuf_given)
        (void)dx__sock_setsockopt(fd, SOL_SOCKET, SO_RCVBUF, (const void *)&big, sizeof big);
    if (r->o->nsockopts > 0 && cli_apply_sockopts(r->o, fd, text) < 0) {
        dx__fd_close(fd);
        return -EINVAL;
    }
    dx_io_init(&r->sock[r->nsock++], fd, on_listener, r);
    return 0;
}

static int open_all(struct relay_udp *r)
{
    const struct options *o = r->o;
    int flags = DX_RESOLVE_DGRAM | (o->numeric ? DX_RESOLVE_NUMERIC : 0);
    r->ntargets = dx_resolve(o->target_host, o->target_port, o->family, flags, &r->targets);
    if (r->ntargets < 0) {
        cli_error("resolve %s: %s", o->target_host, dx_strerror(r->ntargets));
        return cli_exit_code_for(r->ntargets, 1);
    }
    dx_addr_format(&r->targets[0], r->target_name, sizeof r->target_name);
    dx_listen_opts lo = {.reuseport = o->reuseport};
    struct cli_opener how = {.open = dx_dgram_bind, .failed = cli_udp_bind_failed, .keep = keep,
                             .ctx = r, .resolve_flags = DX_RESOLVE_DGRAM};
    int rc = cli_open_every(o, lo, &how);
    if (rc < 0)
        return rc == DX_ETOOLONG ? EXIT_USAGE
               : cli_exit_code_for(rc, 0) == EXIT_RESOLVE ? EXIT_RESOLVE : EXIT_LISTEN;
    int announce = o->verbose || o->port_defaulted || dx_parse_port(o->port) == 0;
    for (int i = 0; i < r->nsock && announce; i++) {
        dx_addr me;
        char text[DX_ADDR_STRLEN];
        if (dx_sock_local(r->sock[i].fd, &me) == 0)
            cli_error("listening on %s (udp)", dx_addr_format(&me, text, sizeof text));
    }
    cli_info(o, "relaying datagrams to %s: sessions end after %.3g s idle, at most %ld at once",
             r->target_name, (double)o->idle_timeout_ms / 1000.0, o->max_conns);
    fflush(stderr);
    return 0;
}

int cli_relay_udp(const struct options *o, dx_loop *loop)
{
    struct relay_udp r;
    memset(&r, 0, sizeof r);
    r.o = o;
    r.loop = loop;
    dx_timer_init(&r.sweep, on_sweep, &r);
    /* about two buckets a session at the limit, within reason */
    r.nbuckets = 64;
    while (r.nbuckets < (size_t)o->max_conns * 2 && r.nbuckets < ((size_t)1 << 20))
        r.nbuckets *= 2;
    r.table = calloc(r.nbuckets, sizeof *r.table);
    r.buf = malloc(DGRAM_BUF);
    r.buf_up = malloc(DGRAM_BUF);
    int code = r.table && r.buf && r.buf_up ? open_all(&r) : (cli_error("out of memory"), EXIT_IO);
    if (code == 0) {
        uint64_t period = (uint64_t)o->idle_timeout_ms / 4;
        period = period < 50 ? 50 : period > 1000 ? 1000 : period;
        dx_timer_start(loop, &r.sweep, period, period);
        update(&r);
        int rc = dx_loop_run(loop);
        if (rc < 0) {
            cli_error("event loop: %s", dx_strerror(rc));
            code = EXIT_IO;
        }
        dx_loop_update_time(loop);
        while (r.newest)
            sess_close(&r, r.newest, NULL);
        cli_info(o, "relayed %lu session%s; %lu failed; dropped %llu datagram%s (limit), %llu "
                 "(access list)", r.sessions, cli_s(r.sessions), r.failed,
                 (unsigned long long)r.dropped_limit, cli_s(r.dropped_limit),
                 (unsigned long long)r.dropped_acl);
        /* one client (no -k): the target's refusal is the exit status */
        if (code == 0 && !o->keep_listening && r.one_done && r.last_error)
            code = cli_exit_code_for(r.last_error, IS_REFUSED(r.last_error));
    }
    dx_timer_stop(loop, &r.sweep);
    for (int i = 0; i < r.nsock; i++) {
        dx_io_stop(loop, &r.sock[i]);
        dx__fd_close(r.sock[i].fd);
    }
    free(r.targets);
    free(r.table);
    free(r.buf);
    free(r.buf_up);
    return code;
}
