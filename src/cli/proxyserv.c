/* proxyserv.c: `duplex listen --proxy-type socks5|http`: a SOCKS5 (RFC
 * 1928/1929) or HTTP proxy server on one event loop. Each client passes
 * listeners_admit() (listeners.c), says where it wants to go (the parsers of
 * proxyserv_socks5.c and proxyserv_http.c), the name is looked up on a
 * thread of its own (getaddrinfo blocks; the loop serves the other clients
 * meanwhile), the target is connected with dx_connect_async, and then two
 * dx_pumps carry the bytes (splice on Linux) with half-close, as relay.c
 * does. Every step before the tunnel is bounded in time: reading the
 * request by -w (else 10 s), the lookup and the connect by the same. */
#define _GNU_SOURCE
#include "cli.h"
#include "os.h"
#include "proxyserv.h"

#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define DEFAULT_DEADLINE_MS 10000
#define DRAIN_MS 2000        /* an error said: read what the client still sends, then close */
#define MAX_LOOKUPS 64       /* name lookups running at once (each a thread) */

enum phase {
    PH_GREETING, PH_AUTH, PH_REQUEST, /* SOCKS5 */
    PH_HTTP_HEAD,                     /* HTTP */
    PH_RESOLVE, PH_CONNECT, PH_PREAMBLE, PH_PUMP,
    PH_DRAIN,                         /* an error answered; waiting for the client's end */
};

struct lookup;

struct pconn {
    struct pserver *s;
    struct pconn *prev, *next;
    char name[DX_ADDR_STRLEN];
    char target[300];          /* "host:port" as asked, for messages */
    int client_fd, target_fd;
    enum phase ph;
    int http;
    int http_connect;          /* HTTP CONNECT (a 200 to send), else a plain request */
    dx_io io;                  /* the client while reading its request, the target in PH_PREAMBLE */
    dx_timer deadline;
    unsigned char in[PXS_HEAD_MAX + 1];
    size_t inlen;
    char *pre;                 /* bytes the target gets before the tunnel (the head, early data) */
    size_t prelen, preoff;
    struct pxs_target t;
    struct lookup *lookup;
    dx_addr *addrs;
    int naddrs;
    dx_connector connector;
    int connecting;
    dx_endpoint ce, te;
    dx_pump up, down;          /* client -> target, target -> client */
    int pumps;
    struct pxs_body body;      /* a plain HTTP request: where its body ends */
    int body_bad;              /* a chunked body that is not one: ending */
    uint64_t dropped;          /* client bytes after the body, never forwarded */
    uint64_t started;
    char why[160];             /* how it ended */
    int failed;
};

struct pserver {
    const struct options *o;
    dx_loop *loop;
    struct listeners l;
    int type;                  /* PROXY_SOCKS5 or PROXY_HTTP */
    const char *user, *pass;   /* --proxy-auth, or NULL */
    size_t ulen, plen;
    uint64_t deadline_ms;
    struct pconn *conns, *graveyard;
    unsigned long nconns, tunnels, failed, refused;
    dx_timer reaper, sweep;
    dx_io wake_io;
    int lookups;               /* running, this loop's count */
};

/* ---- name lookups on threads ----
 * A thread runs dx_resolve(), queues its result and wakes the loop through
 * a socket pair; a lookup whose client went away is freed when it comes
 * back. Process-wide (one proxy server a process), never freed. */
struct lookup {
    struct lookup *next;
    struct pconn *c;           /* NULL: cancelled (loop thread only) */
    char host[256], port[8];
    int n;
    dx_addr *addrs;
};
static pthread_mutex_t lookup_lock = PTHREAD_MUTEX_INITIALIZER;
static struct lookup *lookups_done;
static int wake_fds[2] = {-1, -1};

static void *lookup_main(void *arg)
{
    struct lookup *k = arg;
    k->n = dx_resolve(k->host, k->port, AF_UNSPEC, 0, &k->addrs);
    pthread_mutex_lock(&lookup_lock);
    k->next = lookups_done;
    lookups_done = k;
    pthread_mutex_unlock(&lookup_lock);
    char b = 1;
    (void)dx__sock_send(wake_fds[1], &b, 1, MSG_NOSIGNAL); /* full: a wake-up is pending */
    return NULL;
}

static void conn_end(struct pconn *c, int failed, const char *fmt, ...) CLI_PRINTF(3, 4);
static void lookup_done(struct pconn *c, int n, dx_addr *addrs);

static void on_wake(dx_loop *loop, dx_io *io, int events)
{
    (void)loop, (void)events;
    struct pserver *s = io->data;
    char b[64];
    while (dx__sock_recv(wake_fds[0], b, sizeof b, 0) > 0)
        ;
    pthread_mutex_lock(&lookup_lock);
    struct lookup *k = lookups_done;
    lookups_done = NULL;
    pthread_mutex_unlock(&lookup_lock);
    while (k) {
        struct lookup *next = k->next;
        s->lookups--;
        if (k->c) {
            k->c->lookup = NULL;
            lookup_done(k->c, k->n, k->n > 0 ? k->addrs : NULL);
        } else if (k->n > 0) {
            free(k->addrs);
        }
        free(k);
        k = next;
    }
}

static int lookup_start(struct pconn *c)
{
    struct pserver *s = c->s;
    if (s->lookups >= MAX_LOOKUPS)
        return -EAGAIN;
    if (wake_fds[0] < 0) {
        int rc = dx__socketpair(wake_fds);
        if (rc < 0)
            return rc;
        dx_io_init(&s->wake_io, wake_fds[0], on_wake, s);
        dx_io_set(s->loop, &s->wake_io, DX_READ);
    }
    struct lookup *k = calloc(1, sizeof *k);
    if (!k)
        return -ENOMEM;
    k->c = c;
    snprintf(k->host, sizeof k->host, "%s", c->t.host);
    snprintf(k->port, sizeof k->port, "%d", c->t.port);
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    pthread_attr_setstacksize(&attr, 256 * 1024);
    int rc = pthread_create(&(pthread_t){0}, &attr, lookup_main, k);
    pthread_attr_destroy(&attr);
    if (rc != 0) {
        free(k);
        return -rc;
    }
    s->lookups++;
    c->lookup = k;
    return 0;
}

/* ---- connections ---- */

static const char *type_name(const struct pserver *s)
{
    return s->type == PROXY_HTTP ? "http" : "socks5";
}

static void reap(dx_loop *loop, dx_timer *t)
{
    (void)loop;
    struct pserver *s = t->data;
    while (s->graveyard) {
        struct pconn *c = s->graveyard;
        s->graveyard = c->next;
        free(c);
    }
}

static void conn_free(struct pconn *c)
{
    struct pserver *s = c->s;
    dx_io_stop(s->loop, &c->io);
    dx_timer_stop(s->loop, &c->deadline);
    if (c->lookup)
        c->lookup->c = NULL; /* freed when it comes back */
    if (c->connecting)
        dx_connect_cancel(&c->connector);
    if (c->pumps) {
        dx_pump_stop(&c->up);
        dx_pump_stop(&c->down);
    }
    if (c->target_fd >= 0)
        dx__fd_close(c->target_fd);
    dx__fd_close(c->client_fd);
    free(c->addrs);
    free(c->pre);
    if (c->prev)
        c->prev->next = c->next;
    else
        s->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    s->nconns--;
    c->next = s->graveyard;
    s->graveyard = c;
    dx_timer_start(s->loop, &s->reaper, 0, 0);
}

/* The end of a client: one -v line (client -> target, bytes each way, why). */
static void conn_end(struct pconn *c, int failed, const char *fmt, ...)
{
    struct pserver *s = c->s;
    char why[sizeof c->why];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, sizeof why, fmt, ap); /* (c->why may be an argument) */
    va_end(ap);
    memcpy(c->why, why, sizeof why);
    if (failed)
        s->failed++;
    /* sent: what the target got, the forwarded request head included */
    uint64_t up = (c->pumps ? c->up.bytes_out : 0) + c->preoff;
    uint64_t down = c->pumps ? c->down.bytes_out : 0;
    char extra[64] = "";
    if (c->dropped)
        snprintf(extra, sizeof extra, " (%llu byte%s after the request dropped)",
                 (unsigned long long)c->dropped, cli_s(c->dropped));
    cli_info(s->o, "%s -> %s (%s): sent %llu byte%s, received %llu byte%s in %.3f s: %s%s",
             c->name, c->target[0] ? c->target : "?", type_name(s), (unsigned long long)up,
             cli_s(up), (unsigned long long)down, cli_s(down),
             (double)(dx_loop_now(s->loop) - c->started) / 1000.0, c->why, extra);
    conn_free(c);
}

static void on_drain(dx_loop *loop, dx_io *io, int events)
{
    (void)loop, (void)events;
    struct pconn *c = io->data;
    char b[4096];
    ssize_t n = 1;
    for (int i = 0; i < 16 && n > 0; i++) /* a client that keeps sending: the deadline ends it */
        n = dx__fd_read(c->client_fd, b, sizeof b);
    if (n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK))
        conn_end(c, c->failed, "%s", c->why);
}

static void on_deadline(dx_loop *loop, dx_timer *t);

/* Say it to the client (a reply of a few bytes: a fresh socket's buffer
 * takes it whole), 0 or -1. */
static int say(struct pconn *c, const void *b, size_t n)
{
    ssize_t w = dx__sock_send(c->client_fd, b, n, MSG_NOSIGNAL);
    return w == (ssize_t)n ? 0 : -1;
}

/* An error answered (or nothing to answer): stop, half-close, read the rest
 * of what the client sends for a while (closing with unread bytes would
 * reset the connection and could destroy the answer), then end. */
static void fail(struct pconn *c, const void *answer, size_t n, const char *fmt, ...)
    CLI_PRINTF(4, 5);
static void linger(struct pconn *c, const void *answer, size_t n);
static void fail(struct pconn *c, const void *answer, size_t n, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->why, sizeof c->why, fmt, ap);
    va_end(ap);
    c->failed = 1;
    linger(c, answer, n);
}

static void linger(struct pconn *c, const void *answer, size_t n)
{
    struct pserver *s = c->s;
    if (c->pumps) {
        dx_pump_stop(&c->up); /* (their byte counts stay for the report) */
        dx_pump_stop(&c->down);
    }
    if (c->connecting) {
        dx_connect_cancel(&c->connector);
        c->connecting = 0;
    }
    if (c->lookup) {
        c->lookup->c = NULL; /* freed when it comes back */
        c->lookup = NULL;
    }
    if (answer && n)
        (void)say(c, answer, n);
    dx_io_stop(s->loop, &c->io);
    if (c->target_fd >= 0) {
        dx__fd_close(c->target_fd);
        c->target_fd = -1;
    }
    dx__sock_shutdown(c->client_fd, SHUT_WR);
    c->ph = PH_DRAIN;
    dx_io_init(&c->io, c->client_fd, on_drain, c);
    if (dx_io_set(s->loop, &c->io, DX_READ) < 0) {
        conn_end(c, c->failed, "%s", c->why);
        return;
    }
    dx_timer_stop(s->loop, &c->deadline);
    dx_timer_start(s->loop, &c->deadline, DRAIN_MS, 0);
}

static const char *http_reason(int status)
{
    switch (status) {
    case 400: return "Bad Request";
    case 403: return "Forbidden";
    case 405: return "Method Not Allowed";
    case 407: return "Proxy Authentication Required";
    case 408: return "Request Timeout";
    case 431: return "Request Header Fields Too Large";
    case 501: return "Not Implemented";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    case 505: return "HTTP Version Not Supported";
    default: return "Error";
    }
}

/* An HTTP error response (extra: more header lines, CRLF-ended), then fail(). */
static void http_fail(struct pconn *c, int status, const char *extra, const char *why)
{
    char body[600], head[3072];
    int blen = snprintf(body, sizeof body, "%d %s: %s\n", status, http_reason(status), why);
    int n = snprintf(head, sizeof head,
                     "HTTP/1.1 %d %s\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n"
                     "Connection: close\r\n%s\r\n%s",
                     status, http_reason(status), blen, extra ? extra : "", body);
    if (n < 0 || (size_t)n >= sizeof head)
        n = 0;
    fail(c, head, (size_t)n, "%d %s: %s", status, http_reason(status), why);
}

static void socks_fail(struct pconn *c, int rep, const char *why)
{
    unsigned char r[22];
    size_t n = pxs_s5_reply(r, rep, 0, NULL, 0);
    fail(c, r, n, "SOCKS5 reply %02d: %s", rep, why);
}

/* A connect or lookup failure, answered in the client's protocol. */
static void target_fail(struct pconn *c, int code, const char *what)
{
    char why[400];
    snprintf(why, sizeof why, "%s %s: %s", what, c->target, dx_strerror(code));
    int timeout = code == DX_ETIMEDOUT || code == -ETIMEDOUT;
    if (c->http) {
        http_fail(c, timeout ? 504 : 502, NULL, why);
        return;
    }
    int rep = timeout ? 6
              : code == -ECONNREFUSED ? 5
              : code == -ENETUNREACH ? 3
              : code == -EHOSTUNREACH || code == -EHOSTDOWN || dx_is_resolver_error(code) ||
                        code == DX_ENOADDR ? 4
              : 1;
    socks_fail(c, rep, why);
}

static void on_pump_done(dx_pump *p, int error, int in_read)
{
    struct pconn *c = p->data;
    if (error < 0 && !c->failed) {
        int from_client = (p == &c->up) == !!in_read;
        snprintf(c->why, sizeof c->why, "%s: %s", from_client ? "client" : "target", dx_strerror(error));
        c->failed = 1;
        /* what the gone peer sent first still goes through, then the end */
        if (cli_pump_drain_first(p, error, in_read, p == &c->up ? &c->down : &c->up))
            return;
    }
    if (error < 0 || (c->failed && c->up.done && c->down.done)) {
        conn_end(c, 1, "%s", c->why);
        return;
    }
    if (c->up.done && c->down.done) {
        conn_end(c, 0, "closed by both sides");
    } else if (p == &c->down && c->http && !c->http_connect) {
        /* a plain request: the origin has answered and closed (we asked
         * for Connection: close). What the client sends next (a pipelined
         * request, with its Proxy-Authorization) must not reach it: read
         * and drop it until the client ends too. */
        snprintf(c->why, sizeof c->why, "origin closed (one request a connection)");
        c->ph = PH_DRAIN;
        linger(c, NULL, 0);
    }
}

/* A plain request's up pump: the origin gets the body as framed and nothing
 * after it (a pipelined request would reach it otherwise, and answer to
 * no one). It runs inside the pump's read: a body that turns out malformed
 * is ended from the loop (on_deadline). */
static size_t body_only(dx_pump *p, const char *in, size_t n, char *out)
{
    struct pconn *c = p->filter_data;
    ssize_t k = c->body_bad ? 0 : pxs_body_take(&c->body, in, n);
    if (k < 0) {
        c->body_bad = 1;
        k = 0;
        dx_timer_start(c->s->loop, &c->deadline, 0, 0);
    }
    memcpy(out, in, (size_t)k);
    c->dropped += n - (size_t)k;
    return (size_t)k;
}

static void start_pumps(struct pconn *c)
{
    struct pserver *s = c->s;
    int plain = c->http && !c->http_connect;
    dx_io_stop(s->loop, &c->io); /* the endpoints watch the fds from here */
    dx_timer_stop(s->loop, &c->deadline);
    dx_endpoint_init(&c->ce, c->client_fd);
    dx_endpoint_init(&c->te, c->target_fd);
    size_t bufsize = s->o->bufsize ? s->o->bufsize : 256 * 1024;
    int fl = DX_PUMP_SHUTDOWN | DX_PUMP_SPLICE;
    /* a filter sees only what a buffered pump reads: no splice up there */
    int rc = dx_pump_start(s->loop, &c->up, &c->ce, &c->te, bufsize,
                           plain ? DX_PUMP_SHUTDOWN : fl, on_pump_done, c);
    if (rc == 0 && plain) {
        c->up.filter = body_only;
        c->up.filter_data = c;
    }
    if (rc == 0) {
        rc = dx_pump_start(s->loop, &c->down, &c->te, &c->ce, bufsize, fl, on_pump_done, c);
        if (rc < 0)
            dx_pump_stop(&c->up);
    }
    if (rc < 0) {
        conn_end(c, 1, "tunnel: %s", dx_strerror(rc));
        return;
    }
    dx_pump_set_rate(&c->up, s->o->rate_limit); /* --rate-limit (0: none) */
    dx_pump_set_rate(&c->down, s->o->rate_limit);
    c->pumps = 1;
    c->ph = PH_PUMP;
    s->tunnels++;
}

/* PH_PREAMBLE: the request head (HTTP) and what the client sent early go
 * to the target before the pumps take over. */
static void on_target_writable(dx_loop *loop, dx_io *io, int events)
{
    (void)loop, (void)events;
    struct pconn *c = io->data;
    while (c->preoff < c->prelen) {
        ssize_t w = dx__sock_send(c->target_fd, c->pre + c->preoff, c->prelen - c->preoff,
                                  MSG_NOSIGNAL);
        if (w < 0) {
            int e = errno;
            if (e == EAGAIN || e == EWOULDBLOCK)
                return;
            conn_end(c, 1, "target: %s", dx_strerror(-e));
            return;
        }
        c->preoff += (size_t)w;
    }
    start_pumps(c);
}

static void on_target(dx_connector *k, int result, const dx_addr *addr, int final)
{
    struct pconn *c = k->data;
    struct pserver *s = c->s;
    if (!final) {
        char text[DX_ADDR_STRLEN];
        cli_info(s->o, "%s: connect %s: %s", c->name, dx_addr_format(addr, text, sizeof text),
                 dx_strerror(result));
        return;
    }
    c->connecting = 0;
    if (result < 0) {
        target_fail(c, result, "connect");
        return;
    }
    c->target_fd = result;
    cli_default_nodelay(s->o, result);
    dx_addr me;
    memset(&me, 0, sizeof me);
    (void)dx_sock_local(result, &me);
    if (!c->http) {
        unsigned char r[22];
        int fam = me.ss.ss_family;
        const void *a = fam == AF_INET ? (const void *)&((struct sockaddr_in *)&me.ss)->sin_addr
                        : fam == AF_INET6 ? (const void *)&((struct sockaddr_in6 *)&me.ss)->sin6_addr
                        : NULL;
        size_t n = pxs_s5_reply(r, 0, a ? fam : 0, a, a ? dx_addr_port(&me) : 0);
        if (say(c, r, n) < 0) {
            conn_end(c, 1, "client: cannot send the reply");
            return;
        }
    } else if (c->http_connect) {
        static const char ok[] = "HTTP/1.1 200 Connection established\r\n\r\n";
        if (say(c, ok, sizeof ok - 1) < 0) {
            conn_end(c, 1, "client: cannot send the reply");
            return;
        }
    }
    if (c->prelen > c->preoff) {
        c->ph = PH_PREAMBLE; /* bounded: a target that reads nothing cannot hold the client */
        dx_timer_start(s->loop, &c->deadline, s->deadline_ms, 0);
        dx_io_init(&c->io, c->target_fd, on_target_writable, c);
        if (dx_io_set(s->loop, &c->io, DX_WRITE) < 0)
            conn_end(c, 1, "target: cannot watch");
        return;
    }
    start_pumps(c);
}

static void connect_target(struct pconn *c)
{
    struct pserver *s = c->s;
    dx_timer_stop(s->loop, &c->deadline); /* the connector has its own */
    c->ph = PH_CONNECT;
    c->connecting = 1;
    int rc = dx_connect_async_opts(s->loop, &c->connector, c->addrs, c->naddrs, NULL,
                                   s->deadline_ms, s->o->sockopts, s->o->nsockopts, on_target, c);
    if (rc < 0) {
        c->connecting = 0;
        target_fail(c, rc, "connect");
    }
}

static void lookup_done(struct pconn *c, int n, dx_addr *addrs)
{
    if (n < 0) {
        target_fail(c, n, "resolve");
        return;
    }
    c->addrs = addrs;
    c->naddrs = n;
    connect_target(c);
}

/* The request is known (c->t): look the name up, or take the address. */
static void go(struct pconn *c)
{
    struct pserver *s = c->s;
    dx_io_stop(s->loop, &c->io); /* the client waits for the answer now */
    char port[8];
    snprintf(port, sizeof port, "%d", c->t.port);
    if (strchr(c->t.host, ':'))
        snprintf(c->target, sizeof c->target, "[%s]:%d", c->t.host, c->t.port);
    else
        snprintf(c->target, sizeof c->target, "%s:%d", c->t.host, c->t.port);
    if (c->t.port == 0) {
        target_fail(c, -ECONNREFUSED, "connect");
        return;
    }
    if (!c->t.is_name) {
        dx_addr *a;
        int n = dx_resolve(c->t.host, port, AF_UNSPEC, DX_RESOLVE_NUMERIC, &a);
        lookup_done(c, n, n > 0 ? a : NULL);
        return;
    }
    if (s->o->numeric) {
        target_fail(c, DX_ENOADDR, "resolve (-n: no DNS)");
        return;
    }
    c->ph = PH_RESOLVE;
    int rc = lookup_start(c);
    if (rc < 0) {
        char why[300];
        snprintf(why, sizeof why, "cannot look %s up now", c->t.host);
        if (c->http)
            http_fail(c, 503, NULL, why);
        else
            socks_fail(c, 1, why);
        return;
    }
    /* the deadline timer still runs: it bounds the lookup */
}

/* Keep what follows a message for the target (early data): rest bytes
 * after the used ones. */
static int keep_rest(struct pconn *c, size_t used, size_t rest, const char *head, size_t headlen)
{
    c->pre = malloc(headlen + rest + 1);
    if (!c->pre)
        return -1;
    if (headlen)
        memcpy(c->pre, head, headlen);
    memcpy(c->pre + headlen, c->in + used, rest);
    c->prelen = headlen + rest;
    c->preoff = 0;
    if (c->prelen == 0) {
        free(c->pre);
        c->pre = NULL;
    }
    return 0;
}

static void consume(struct pconn *c, size_t n)
{
    memmove(c->in, c->in + n, c->inlen - n);
    c->inlen -= n;
}

/* SOCKS5: take every complete message in the buffer. */
static void socks_step(struct pconn *c)
{
    struct pserver *s = c->s;
    for (;;) {
        int r, methods, cmd;
        if (c->ph == PH_GREETING) {
            r = pxs_s5_greeting(c->in, c->inlen, &methods);
            if (r == 0)
                return;
            if (r < 0) {
                fail(c, NULL, 0, "not a SOCKS5 greeting");
                return;
            }
            consume(c, (size_t)r);
            int want = s->user ? PXS_M_USERPASS : PXS_M_NONE;
            if (!(methods & want)) {
                static const unsigned char none[2] = {5, 0xFF};
                fail(c, none, 2, "no acceptable method (%s)",
                     s->user ? "--proxy-auth: username/password required" : "no authentication offered");
                return;
            }
            unsigned char sel[2] = {5, s->user ? 2 : 0};
            if (say(c, sel, 2) < 0) {
                conn_end(c, 1, "client: cannot send the reply");
                return;
            }
            c->ph = s->user ? PH_AUTH : PH_REQUEST;
        } else if (c->ph == PH_AUTH) {
            char user[256], pass[256];
            size_t ul, pl;
            r = pxs_s5_userpass(c->in, c->inlen, user, &ul, pass, &pl);
            if (r == 0)
                return;
            if (r < 0) {
                fail(c, NULL, 0, "malformed username/password request");
                return;
            }
            consume(c, (size_t)r);
            int ok = cli_streq_ct(user, ul, s->user, s->ulen);
            ok &= cli_streq_ct(pass, pl, s->pass, s->plen);
            if (!ok) {
                static const unsigned char no[2] = {1, 1};
                fail(c, no, 2, "authentication failed (user '%.64s')", user);
                return;
            }
            static const unsigned char yes[2] = {1, 0};
            if (say(c, yes, 2) < 0) {
                conn_end(c, 1, "client: cannot send the reply");
                return;
            }
            c->ph = PH_REQUEST;
        } else {
            r = pxs_s5_request(c->in, c->inlen, &cmd, &c->t);
            if (r == 0)
                return;
            if (r == PXS_S5_BAD_ATYP) {
                socks_fail(c, 8, "address type not supported");
                return;
            }
            if (r < 0) {
                socks_fail(c, 1, "malformed request");
                return;
            }
            if (cmd != 1) {
                char why[64];
                snprintf(why, sizeof why, "command %d not supported (CONNECT only)", cmd);
                socks_fail(c, 7, why);
                return;
            }
            if (keep_rest(c, (size_t)r, c->inlen - (size_t)r, NULL, 0) < 0) {
                socks_fail(c, 1, "out of memory");
                return;
            }
            go(c);
            return;
        }
    }
}

#define REALM "duplex"

/* --proxy-auth: the request's Proxy-Authorization must prove the
 * credentials (Basic, or Digest MD5/SHA-256 answering our nonce: httpauth.c);
 * else 407 with the challenges, and the connection ends (one request a
 * connection: the client asks again on a new one). 1 when authorized. */
static char *copy_text(const char *p, size_t n)
{
    char *s = malloc(n + 1);
    if (s) {
        memcpy(s, p, n);
        s[n] = '\0';
    }
    return s;
}

static int http_authorized(struct pconn *c, const struct pxs_http_req *r)
{
    const struct options *o = c->s->o;
    int stale = 0;
    if (r->proxy_auth) {
        char *value = copy_text(r->proxy_auth, r->proxy_auth_len);
        char *uri = copy_text(r->target, r->target_len);
        int ok = value && uri &&
                 cli_http_auth_verify_ex(value, r->method, uri, o->proxy_auth, REALM, &stale) == 1;
        free(uri);
        /* Digest's uri= of a plain request: curl repeats the origin-form path */
        if (!ok && value && !r->is_connect && (uri = copy_text(r->path, r->path_len))) {
            ok = cli_http_auth_verify_ex(value, r->method, uri, o->proxy_auth, REALM, &stale) == 1;
            free(uri);
        }
        free(value);
        if (ok)
            return 1;
    }
    /* named in the -v line: the target it asked for, never connected */
    if (strchr(r->t.host, ':'))
        snprintf(c->target, sizeof c->target, "[%s]:%d", r->t.host, r->t.port);
    else
        snprintf(c->target, sizeof c->target, "%s:%d", r->t.host, r->t.port);
    char challenge[1024]; /* Digest MD5 first, for ncat's client: see httpauth.c */
    int n = cli_http_auth_challenge_ex(challenge, sizeof challenge, REALM, stale);
    http_fail(c, 407, n > 0 ? challenge : NULL,
              !r->proxy_auth ? "credentials required (--proxy-auth)"
              : stale ? "stale nonce" : "authentication failed");
    return 0;
}

static void http_step(struct pconn *c)
{
    size_t hl = pxs_http_head_len((const char *)c->in, c->inlen);
    if (hl == 0) {
        if (c->inlen >= PXS_HEAD_MAX)
            http_fail(c, 431, NULL, "request head longer than 16 KiB");
        return;
    }
    struct pxs_http_req r;
    int status = pxs_http_parse((const char *)c->in, hl, &r);
    if (status) {
        http_fail(c, status, status == 405 ? "Allow: " PXS_HTTP_ALLOW "\r\n" : NULL,
                  status == 501   ? "only CONNECT and http:// URIs are served"
                  : status == 405 ? "method not served"
                  : status == 505 ? "HTTP/1.x only"
                                  : "malformed request (a proxy takes CONNECT HOST:PORT or an "
                                    "absolute http:// URI)");
        return;
    }
    if (c->s->user && !http_authorized(c, &r))
        return;
    c->t = r.t;
    c->http_connect = r.is_connect;
    if (r.is_connect) {
        if (keep_rest(c, hl, c->inlen - hl, NULL, 0) < 0) {
            http_fail(c, 503, NULL, "out of memory");
            return;
        }
    } else {
        /* the head, then of what came with it only the body's bytes */
        pxs_body_init(&c->body, &r);
        ssize_t body = pxs_body_take(&c->body, (const char *)c->in + hl, c->inlen - hl);
        if (body < 0) {
            http_fail(c, 400, NULL, "malformed chunked body");
            return;
        }
        c->dropped = c->inlen - hl - (size_t)body;
        size_t cap = PXS_REWRITE_CAP(hl, r.authority_len);
        char *head = malloc(cap);
        size_t n = head ? pxs_http_rewrite((const char *)c->in, hl, &r, head, cap) : 0;
        int rc = n ? keep_rest(c, hl, (size_t)body, head, n) : -1;
        free(head);
        if (rc < 0) {
            http_fail(c, 503, NULL, "out of memory");
            return;
        }
    }
    go(c);
}

static void on_client_readable(dx_loop *loop, dx_io *io, int events)
{
    (void)loop, (void)events;
    struct pconn *c = io->data;
    size_t room = PXS_HEAD_MAX - c->inlen;
    ssize_t n = dx__fd_read(c->client_fd, c->in + c->inlen, room);
    if (n < 0) {
        int e = errno;
        if (e == EAGAIN || e == EWOULDBLOCK)
            return;
        conn_end(c, 1, "client: %s before its request was complete", dx_strerror(-e));
        return;
    }
    if (n == 0) {
        conn_end(c, 1, "client closed before its request was complete");
        return;
    }
    c->inlen += (size_t)n;
    if (c->http)
        http_step(c);
    else
        socks_step(c);
}

static void on_deadline(dx_loop *loop, dx_timer *t)
{
    (void)loop;
    struct pconn *c = t->data;
    struct pserver *s = c->s;
    char why[80];
    snprintf(why, sizeof why, "no complete request within %.3g s",
             (double)s->deadline_ms / 1000.0);
    switch (c->ph) {
    case PH_DRAIN:
        conn_end(c, c->failed, "%s", c->why);
        return;
    case PH_RESOLVE:
        target_fail(c, DX_ETIMEDOUT, "resolve");
        return;
    case PH_PREAMBLE:
        conn_end(c, 1, "target: took %zu of the request's %zu bytes in %.3g s", c->preoff,
                 c->prelen, (double)s->deadline_ms / 1000.0);
        return;
    case PH_PUMP: /* (started by body_only: the request was partly forwarded, no answer) */
        conn_end(c, 1, "client: malformed chunked body");
        return;
    default:
        if (c->http)
            http_fail(c, 408, NULL, why);
        else
            fail(c, NULL, 0, "%s", why);
    }
}

static void on_client(struct listeners *l, int fd, const dx_addr *peer, const dx_addr *local)
{
    (void)local;
    struct pserver *s = l->data;
    const struct options *o = s->o;
    char name[DX_ADDR_STRLEN];
    listeners_client_name(l, peer, s->tunnels + s->failed + s->nconns + 1, name, sizeof name);
    if (o->max_conns && s->nconns >= (unsigned long)o->max_conns) {
        s->refused++;
        cli_info(o, "%s: refused: --max-conns %ld reached", name, o->max_conns);
        dx__fd_close(fd);
        return;
    }
    struct pconn *c = calloc(1, sizeof *c);
    if (!c) {
        cli_error("%s: out of memory, closing", name);
        dx__fd_close(fd);
        return;
    }
    c->s = s;
    c->client_fd = fd;
    c->target_fd = -1;
    c->http = s->type == PROXY_HTTP;
    c->ph = c->http ? PH_HTTP_HEAD : PH_GREETING;
    c->started = dx_loop_now(s->loop);
    memcpy(c->name, name, sizeof name);
    c->next = s->conns;
    if (c->next)
        c->next->prev = c;
    s->conns = c;
    s->nconns++;
    dx_timer_init(&c->deadline, on_deadline, c);
    dx_timer_start(s->loop, &c->deadline, s->deadline_ms, 0);
    dx_io_init(&c->io, fd, on_client_readable, c);
    if (dx_io_set(s->loop, &c->io, DX_READ) < 0)
        conn_end(c, 1, "cannot watch the client");
}

static void on_sweep(dx_loop *loop, dx_timer *t)
{
    struct pserver *s = t->data;
    uint64_t now = dx_loop_now(loop), limit = (uint64_t)s->o->idle_timeout_ms;
    struct pconn *next;
    for (struct pconn *c = s->conns; c; c = next) {
        next = c->next;
        if (c->ph != PH_PUMP)
            continue;
        uint64_t last = cli_pumps_last_activity(&c->up, &c->down);
        if (now - last >= limit)
            conn_end(c, 0, "idle for %.3g s", (double)limit / 1000.0);
    }
}

static int is_loopback(const dx_addr *a)
{
    if (a->ss.ss_family == AF_INET)
        return (ntohl(((const struct sockaddr_in *)&a->ss)->sin_addr.s_addr) >> 24) == 127;
    if (a->ss.ss_family == AF_INET6) {
        const unsigned char *b = ((const struct sockaddr_in6 *)&a->ss)->sin6_addr.s6_addr;
        static const unsigned char one[16] = {[15] = 1};
        static const unsigned char v4[12] = {[10] = 0xff, [11] = 0xff};
        return memcmp(b, one, 16) == 0 || (memcmp(b, v4, 12) == 0 && b[12] == 127);
    }
    return 1; /* a Unix socket */
}

int cli_proxy_serve(const struct options *o, dx_loop *loop)
{
    struct pserver s;
    memset(&s, 0, sizeof s);
    s.o = o;
    s.loop = loop;
    s.type = o->proxy_serve - 1;
    s.deadline_ms = o->timeout_ms > 0 ? (uint64_t)o->timeout_ms : DEFAULT_DEADLINE_MS;
    if (o->proxy_auth) {
        const char *colon = strchr(o->proxy_auth, ':');
        s.user = o->proxy_auth;
        s.ulen = (size_t)(colon - o->proxy_auth);
        s.pass = colon + 1;
        s.plen = strlen(s.pass);
    }
    dx_timer_init(&s.reaper, reap, &s);
    dx_timer_init(&s.sweep, on_sweep, &s);
    int code = listeners_open(&s.l, o, loop, on_client, &s);
    if (code != 0)
        return code;
    s.l.nodelay = 1;
    if (!s.user && o->acl.nallow == 0) {
        for (int i = 0; i < s.l.n; i++) {
            dx_addr a;
            char text[DX_ADDR_STRLEN];
            if (dx_sock_local(s.l.io[i].fd, &a) == 0 && !is_loopback(&a))
                cli_error("warning: an open proxy on %s: whoever reaches it may use it (listen on "
                          "127.0.0.1, or give --allow or --proxy-auth)",
                          dx_addr_format(&a, text, sizeof text));
        }
    }
    cli_info(o, "%s proxy server%s; targets are not restricted", type_name(&s),
             s.user ? " (--proxy-auth required)" : "");
    if (o->idle_timeout_ms) {
        uint64_t period = (uint64_t)o->idle_timeout_ms / 4;
        period = period < 50 ? 50 : period > 1000 ? 1000 : period;
        dx_timer_start(loop, &s.sweep, period, period);
    }
    listeners_watch(&s.l, 1);
    int rc = dx_loop_run(loop);
    if (rc < 0)
        cli_error("event loop: %s", dx_strerror(rc));
    cli_info(o, "proxied %lu tunnel%s; %lu failed; refused %lu (limit), %lu (access list)",
             s.tunnels, cli_s(s.tunnels), s.failed, s.refused,
             (unsigned long)atomic_load(&s.l.denied));
    while (s.conns)
        conn_free(s.conns);
    reap(loop, &s.reaper);
    dx_timer_stop(loop, &s.reaper);
    dx_timer_stop(loop, &s.sweep);
    if (wake_fds[0] >= 0)
        dx_io_stop(loop, &s.wake_io);
    listeners_close(&s.l);
    return rc < 0 || s.l.fatal ? EXIT_IO : EXIT_OK;
}
