/* cluster.c: listen --broker/--chat --cluster redis[s]://HOST:PORT/CHANNEL.
 * What this node's clients send is published once to CHANNEL; what the other
 * nodes publish there is handed to serve.c (deliver) for this node's clients.
 *
 * Two connections to Redis, each a dx_stream on the duplex loop (no thread,
 * no blocking call: the host is resolved once at start, then
 * dx_connect_async), over libduplex's TLS for rediss://. One SUBSCRIBEs,
 * the other PUBLISHes (a subscribed connection may not publish). Of
 * libhiredis only the protocol is used: redisFormatCommand writes the
 * commands, a redisReader fed from the stream parses the replies. Its async
 * context is not, since 0.14 (Debian 12) has no TLS and cannot adopt a
 * socket it did not open itself: TLS would have needed a local relay
 * (a socketpair or a Unix listener) between hiredis and a TLS stream, a
 * second transport for one protocol; this way redis:// and rediss:// are
 * one path, and the publisher's backlog is the stream's bounded queue.
 *
 * TLS: verification on (the system store, or ?cacert=PATH), the name
 * checked against HOST; a refused certificate fails the attempt like a
 * refused connect (said once with the reason, then retried with backoff,
 * local clients served meanwhile): never attached without it.
 *
 * Faults: the node is attached once both are up (AUTH done, SUBSCRIBE
 * confirmed). It publishes a heartbeat every second and must hear its own
 * back within HEARTBEAT_DEAD_MS; a connection that fails, a connect that
 * hangs, or a silent channel (a cut, a stuck Redis) detaches it: both
 * connections are freed, local clients go on being served, what they send
 * meanwhile is counted as not published, and a reconnect is tried after a
 * backoff (100 ms doubling to 5 s; nothing else runs while detached, so the
 * loop sleeps). Back attached, the node says how long the gap was and what
 * was not published; the sequence numbers of the other nodes' frames say
 * how many of theirs were missed (a heartbeat carries the last one).
 *
 * Backpressure: PUBLISH commands wait in the stream's queue (PUB_QUEUE
 * bytes); above half the connection counts as a full recipient (serve.c
 * pauses its senders, as for a slow client) until it drains. Frames from
 * the channel are always read and delivered at once (serve.c drops a frame
 * for a client that has no room for it): the subscriber never holds more
 * than one read. Failures found while replies are handled detach from a
 * timer (fail_later), never from inside the reply loop. */
#define _GNU_SOURCE
#include "cli.h"
#include "os.h"

#include <hiredis/hiredis.h>

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define BACKOFF_FIRST_MS 100
#define BACKOFF_MAX_MS 5000
#define CONNECT_TIMEOUT_MS 3000
#define HEARTBEAT_MS 1000
#define HEARTBEAT_DEAD_MS 3500
/* bytes of PUBLISH commands not yet written; above half, senders pause */
#define PUB_QUEUE (4u << 20)
/* the subscriber writes little; its reads take half of the queue's size */
#define SUB_QUEUE (128u << 10)
/* the other nodes whose sequence numbers are followed */
#define MAX_ORIGINS 256

enum { DETACHED, CONNECTING, ATTACHED };

struct conn {
    struct cluster *cl;
    const char *name;      /* "publisher", "subscriber" */
    dx_connector k;
    int connecting;        /* k in progress */
    int fd;                /* -1: none */
    dx_tls *tls;           /* rediss:// */
    dx_stream s;
    int streaming;         /* s initialised */
    redisReader *rd;
    int auth;              /* AUTH sent, its reply still to come */
    int ready;             /* pub: PING answered; sub: SUBSCRIBE confirmed */
};

struct origin {
    char node[CLUSTER_ID_LEN + 1];
    uint64_t seq;          /* the last sequence number seen */
    uint64_t heard_ms;
};

struct cluster {
    const struct options *o;
    dx_loop *loop;
    struct cluster_url url;
    char where[300];       /* "redis[s]://HOST:PORT/CHANNEL" for messages (no password) */
    dx_addr *addrs;
    int naddrs;
    dx_tls_ctx *tls;       /* rediss:// */
    char id[CLUSTER_ID_LEN + 1];
    uint64_t seq;          /* messages published (handed to the publisher) */
    struct conn pub, sub;
    int state;
    int ever_attached;
    int closing;
    dx_timer retry, beat, lost;
    char lost_why[300];
    uint64_t backoff_ms;
    uint64_t attempt_ms, detached_ms, own_beat_ms;
    unsigned long attempts;   /* failed attempts in this gap */
    int refused_cert;         /* this attempt: a certificate refused */
    int said_refused;         /* ... and said so, in this gap */
    int full;                 /* publisher above PUB_QUEUE / 2 */
    /* counts: total, and for the gap being reported */
    unsigned long long published, unpublished, unconfirmed, failed, received, missed;
    unsigned long long gap_unpublished, gap_unconfirmed;
    unsigned long long pending;  /* PUBLISH replies awaited */
    struct origin origins[MAX_ORIGINS];
    int norigins;
    void (*deliver)(void *data, const char *msg, size_t n);
    void (*drained)(void *data);
    void *data;
};

static void connect_now(dx_loop *loop, dx_timer *t);
static void on_reply(struct conn *c, redisReply *reply);

static void set_full(struct cluster *cl, int full)
{
    if (cl->full == full)
        return;
    cl->full = full;
    if (!full && cl->drained)
        cl->drained(cl->data);
}

static size_t pub_queued(const struct cluster *cl)
{
    return cl->pub.streaming ? dx_stream_queued(&cl->pub.s) : 0;
}

/* From a callback: detach from the loop (a timer), the first reason kept. */
static void fail_later(struct cluster *cl, const char *fmt, ...)
{
    if (cl->closing || cl->state == DETACHED || dx_timer_active(&cl->lost))
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cl->lost_why, sizeof cl->lost_why, fmt, ap);
    va_end(ap);
    dx_timer_start(cl->loop, &cl->lost, 0, 0);
}

/* ---- one connection: connect, TLS, commands, replies ---- */

/* Queue one command (redisFormatCommand's format): 0, or -errno (the
 * queue is full: -ENOBUFS; the stream failed: -EPIPE). */
static int conn_command(struct conn *c, const char *fmt, ...)
{
    if (!c->streaming || c->s.failed)
        return -EPIPE;
    char *cmd;
    va_list ap;
    va_start(ap, fmt);
    int n = redisvFormatCommand(&cmd, fmt, ap);
    va_end(ap);
    if (n < 0)
        return -ENOMEM;
    int rc = dx_stream_write(&c->s, cmd, (size_t)n);
    redisFreeCommand(cmd);
    return rc;
}

static void conn_on_read(dx_stream *s, const char *data, size_t n)
{
    struct conn *c = s->data;
    struct cluster *cl = c->cl;
    if (n == 0) {
        fail_later(cl, "%s: Redis closed the connection", c->name);
        return;
    }
    if (redisReaderFeed(c->rd, data, n) != REDIS_OK) {
        fail_later(cl, "%s: out of memory", c->name);
        return;
    }
    /* a failure found meanwhile (the lost timer) stops the replies */
    while (!dx_timer_active(&cl->lost)) {
        void *reply = NULL;
        if (redisReaderGetReply(c->rd, &reply) != REDIS_OK) {
            fail_later(cl, "%s: not Redis's protocol: %s", c->name, c->rd->errstr);
            return;
        }
        if (!reply)
            return;
        on_reply(c, reply);
        freeReplyObject(reply);
    }
}

static void conn_on_event(dx_stream *s, int error)
{
    struct conn *c = s->data;
    struct cluster *cl = c->cl;
    if (error < 0) {
        const char *why = c->tls ? dx_tls_reason(c->tls) : "";
        fail_later(cl, "%s: %s", c->name, why[0] ? why : dx_strerror(error));
    } else if (c == &cl->pub && cl->full && pub_queued(cl) <= PUB_QUEUE / 2) {
        set_full(cl, 0);
    }
}

/* Connected (and through TLS): AUTH if the URL has a password, then the
 * command that makes the connection ready. */
static void conn_start(struct conn *c)
{
    struct cluster *cl = c->cl;
    size_t cap = c == &cl->pub ? PUB_QUEUE : SUB_QUEUE;
    if (dx_stream_init(cl->loop, &c->s, c->fd, cap, conn_on_read, conn_on_event, c) < 0) {
        fail_later(cl, "%s: out of memory", c->name);
        return;
    }
    c->streaming = 1;
    if (c->tls)
        dx_stream_set_tls(&c->s, c->tls);
    const struct cluster_url *u = &cl->url;
    int rc = 0;
    if (u->has_pass && u->user[0])
        rc = conn_command(c, "AUTH %s %s", u->user, u->pass);
    else if (u->has_pass)
        rc = conn_command(c, "AUTH %s", u->pass);
    c->auth = u->has_pass;
    if (rc == 0 && c == &cl->pub)
        rc = conn_command(c, "PING");
    else if (rc == 0)
        rc = conn_command(c, "SUBSCRIBE %b", u->channel, strlen(u->channel));
    if (rc == 0)
        rc = dx_stream_read_start(&c->s);
    if (rc < 0)
        fail_later(cl, "%s: %s", c->name, dx_strerror(rc));
}

static void conn_on_handshake(dx_tls *t, int error, void *data)
{
    (void)t;
    struct conn *c = data;
    if (error == DX_ETLSVERIFY && c->cl->state == CONNECTING && !dx_timer_active(&c->cl->lost))
        c->cl->refused_cert = 1;
    if (error == DX_ETLSVERIFY)
        fail_later(c->cl, "%s: TLS: Redis's certificate refused: %s", c->name,
                   dx_tls_reason(c->tls));
    else if (error < 0)
        fail_later(c->cl, "%s: TLS handshake failed: %s", c->name,
                   dx_tls_reason(c->tls)[0] ? dx_tls_reason(c->tls) : dx_strerror(error));
    else
        conn_start(c);
}

static void conn_on_connect(dx_connector *k, int result, const dx_addr *addr, int final)
{
    (void)addr;
    struct conn *c = k->data;
    struct cluster *cl = c->cl;
    if (!final)
        return;
    c->connecting = 0;
    if (result < 0) {
        fail_later(cl, "%s: %s", c->name, dx_strerror(result));
        return;
    }
    c->fd = result;
    if (!cl->tls) {
        conn_start(c);
        return;
    }
    int err;
    c->tls = dx_tls_new(cl->loop, cl->tls, c->fd, cl->url.host, &err);
    if (!c->tls || (err = dx_tls_handshake(c->tls, CONNECT_TIMEOUT_MS, conn_on_handshake, c)) < 0)
        fail_later(cl, "%s: TLS: %s", c->name, dx_strerror(err));
}

static int conn_open(struct cluster *cl, struct conn *c)
{
    c->fd = -1;
    c->auth = c->ready = 0;
    c->rd = redisReaderCreate();
    if (!c->rd)
        return -ENOMEM;
    int rc = dx_connect_async(cl->loop, &c->k, cl->addrs, cl->naddrs, NULL, CONNECT_TIMEOUT_MS,
                              conn_on_connect, c);
    if (rc == 0)
        c->connecting = 1;
    return rc;
}

/* Drop the connection; PUBLISH replies still awaited are unconfirmed
 * (Redis may or may not have them). */
static void conn_free(struct conn *c)
{
    struct cluster *cl = c->cl;
    if (c->connecting)
        dx_connect_cancel(&c->k);
    c->connecting = 0;
    if (c->streaming)
        dx_stream_close(&c->s);
    c->streaming = 0;
    if (c->tls) {
        dx_tls_handshake_cancel(c->tls);
        dx_tls_free(c->tls);
        c->tls = NULL;
    }
    if (c->fd >= 0)
        dx__sock_close(c->fd);
    c->fd = -1;
    if (c->rd)
        redisReaderFree(c->rd);
    c->rd = NULL;
    c->ready = c->auth = 0;
    if (c == &cl->pub) {
        cl->unconfirmed += cl->pending;
        cl->gap_unconfirmed += cl->pending;
        cl->pending = 0;
    }
}

/* ---- attach, detach ---- */

static void say_attached(struct cluster *cl)
{
    uint64_t now = dx_loop_now(cl->loop);
    if (!cl->ever_attached) {
        cli_info(cl->o, "cluster: attached to %s as node %s (id %s)", cl->where, cl->o->node_name,
                 cl->id);
    } else {
        cli_error("cluster: reattached to %s after %.1f s detached: %llu message%s not published "
                  "(sent while detached), %llu maybe lost (sent, unconfirmed); messages of other "
                  "nodes missed meanwhile are counted as they show",
                  cl->where, (double)(now - cl->detached_ms) / 1000.0, cl->gap_unpublished,
                  cli_s(cl->gap_unpublished), cl->gap_unconfirmed);
    }
    cl->ever_attached = 1;
    cl->gap_unpublished = cl->gap_unconfirmed = 0;
}

static void check_attached(struct cluster *cl)
{
    if (cl->state != CONNECTING || !cl->pub.ready || !cl->sub.ready)
        return;
    cl->state = ATTACHED;
    cl->backoff_ms = BACKOFF_FIRST_MS;
    cl->attempts = 0;
    cl->said_refused = 0;
    cl->own_beat_ms = dx_loop_now(cl->loop);
    say_attached(cl);
}

/* Drop both connections and try again after the backoff. From the loop
 * only (a timer), never from inside the reply loop. */
static void detach(struct cluster *cl, const char *why)
{
    int was = cl->state;
    cl->state = DETACHED;
    conn_free(&cl->pub);
    conn_free(&cl->sub);
    dx_timer_stop(cl->loop, &cl->beat);
    dx_timer_stop(cl->loop, &cl->lost);
    set_full(cl, 0);
    uint64_t now = dx_loop_now(cl->loop);
    if (was == ATTACHED) {
        cl->detached_ms = now;
        cli_error("cluster: detached from %s: %s; local clients are still served, reconnecting",
                  cl->where, why);
    } else {
        cl->attempts++;
        /* said once a gap: a Redis never reached, or a certificate refused
         * (a Redis that came back with it may be someone else) */
        if (cl->refused_cert ? !cl->said_refused : !cl->ever_attached && cl->attempts == 1)
            cli_error("cluster: cannot reach %s: %s; local clients are served, retrying", cl->where,
                      why);
        cl->said_refused |= cl->refused_cert;
        cl->refused_cert = 0;
        cli_info(cl->o, "cluster: attempt %lu to reach %s failed: %s; next in %llu ms", cl->attempts,
                 cl->where, why, (unsigned long long)cl->backoff_ms);
    }
    dx_timer_start(cl->loop, &cl->retry, cl->backoff_ms, 0);
    cl->backoff_ms = cl->backoff_ms * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : cl->backoff_ms * 2;
}

static void on_lost(dx_loop *loop, dx_timer *t)
{
    (void)loop;
    struct cluster *cl = t->data;
    if (cl->state != DETACHED)
        detach(cl, cl->lost_why);
}

/* ---- replies ---- */

static void on_published(struct cluster *cl, redisReply *reply)
{
    if (cl->pending)
        cl->pending--;
    if (reply->type == REDIS_REPLY_ERROR) {
        cl->failed++;
        cli_info(cl->o, "cluster: PUBLISH refused: %s", reply->str);
    }
}

/* The entry of a node; a new one (or one forgotten: the table keeps the
 * MAX_ORIGINS heard last) is followed from this frame on (*fresh = 1). */
static struct origin *origin_find(struct cluster *cl, const char *node, int *fresh)
{
    int oldest = 0;
    *fresh = 0;
    for (int i = 0; i < cl->norigins; i++) {
        if (memcmp(cl->origins[i].node, node, CLUSTER_ID_LEN) == 0)
            return &cl->origins[i];
        if (cl->origins[i].heard_ms < cl->origins[oldest].heard_ms)
            oldest = i;
    }
    int i = cl->norigins < MAX_ORIGINS ? cl->norigins++ : oldest;
    memcpy(cl->origins[i].node, node, CLUSTER_ID_LEN + 1);
    *fresh = 1;
    return &cl->origins[i];
}

static void on_frame(struct cluster *cl, const char *data, size_t n)
{
    struct cluster_frame f;
    if (cli_cluster_frame_parse(data, n, &f) < 0) {
        cli_info(cl->o, "cluster: a message on the channel that is not duplex's (%zu byte%s): "
                        "ignored", n, cli_s(n));
        return;
    }
    uint64_t now = dx_loop_now(cl->loop);
    if (memcmp(f.node, cl->id, CLUSTER_ID_LEN) == 0) {
        /* our own frame: delivered locally when it was sent */
        if (f.type == CLUSTER_BEAT)
            cl->own_beat_ms = now;
        return;
    }
    int fresh;
    struct origin *org = origin_find(cl, f.node, &fresh);
    /* a message carries the next number; a heartbeat the last one */
    uint64_t expect = f.type == CLUSTER_MSG ? org->seq + 1 : org->seq;
    if (!fresh && f.seq > expect) {
        unsigned long long gap = f.seq - expect;
        cl->missed += gap;
        cli_error("cluster: %llu message%s from node %s missed (published while this node "
                  "could not receive them)", gap, cli_s(gap), f.node);
    }
    org->heard_ms = now;
    if (fresh || f.seq > org->seq)
        org->seq = f.seq;
    if (f.type == CLUSTER_MSG) {
        cl->received++;
        if (f.n > 0)
            cl->deliver(cl->data, f.payload, f.n);
    }
}

static void on_sub(struct conn *c, redisReply *reply)
{
    struct cluster *cl = c->cl;
    if (reply->type == REDIS_REPLY_ERROR) {
        fail_later(cl, "SUBSCRIBE refused: %.150s", reply->str);
        return;
    }
    if (reply->type != REDIS_REPLY_ARRAY || reply->elements < 3 ||
        reply->element[0]->type != REDIS_REPLY_STRING)
        return;
    const char *kind = reply->element[0]->str;
    if (strcasecmp(kind, "subscribe") == 0) {
        c->ready = 1;
        check_attached(cl);
    } else if (strcasecmp(kind, "message") == 0 && reply->element[2]->type == REDIS_REPLY_STRING) {
        on_frame(cl, reply->element[2]->str, reply->element[2]->len);
    }
}

/* Replies come in the order of the commands: AUTH's, then PING's (the
 * publisher) or SUBSCRIBE's and the messages (the subscriber), then
 * PUBLISH's (the publisher). */
static void on_reply(struct conn *c, redisReply *reply)
{
    struct cluster *cl = c->cl;
    if (c->auth) {
        c->auth = 0;
        if (reply->type == REDIS_REPLY_ERROR)
            fail_later(cl, "AUTH refused: %.150s", reply->str);
    } else if (c == &cl->sub) {
        on_sub(c, reply);
    } else if (!c->ready) {
        if (reply->type == REDIS_REPLY_ERROR) {
            fail_later(cl, "publisher: %.150s", reply->str);
        } else {
            c->ready = 1;
            check_attached(cl);
        }
    } else {
        on_published(cl, reply);
    }
}

/* ---- connecting ---- */

static void connect_now(dx_loop *loop, dx_timer *t)
{
    (void)loop;
    struct cluster *cl = t->data;
    cl->state = CONNECTING;
    cl->attempt_ms = dx_loop_now(cl->loop);
    int rc = conn_open(cl, &cl->pub);
    if (rc == 0)
        rc = conn_open(cl, &cl->sub);
    if (rc < 0) {
        char why[160];
        snprintf(why, sizeof why, "cannot connect: %s", dx_strerror(rc));
        detach(cl, why);
        return;
    }
    dx_timer_start(cl->loop, &cl->beat, HEARTBEAT_MS, HEARTBEAT_MS);
}

static int publish_frame(struct cluster *cl, int type, const char *data, size_t n)
{
    char head[64];
    size_t hn = cli_cluster_frame_head(head, sizeof head, type, cl->id,
                                       type == CLUSTER_MSG ? cl->seq + 1 : cl->seq);
    /* "PUBLISH CHANNEL HEAD+DATA": the frame's two parts as one argument */
    int rc = conn_command(&cl->pub, "PUBLISH %b %b%b", cl->url.channel, strlen(cl->url.channel),
                          head, hn, data ? data : "", n);
    if (rc < 0)
        return rc;
    cl->pending++;
    if (type == CLUSTER_MSG)
        cl->seq++;
    return 0;
}

/* Every second: while connecting, the attempt's deadline; attached, a
 * heartbeat, and our own previous ones must have come back. */
static void on_beat(dx_loop *loop, dx_timer *t)
{
    struct cluster *cl = t->data;
    uint64_t now = dx_loop_now(loop);
    if (cl->state == CONNECTING && now - cl->attempt_ms >= CONNECT_TIMEOUT_MS) {
        detach(cl, "no answer within 3 s");
        return;
    }
    if (cl->state != ATTACHED || dx_timer_active(&cl->lost)) /* (that one says why) */
        return;
    if (now - cl->own_beat_ms >= HEARTBEAT_DEAD_MS) {
        detach(cl, "its own heartbeats have not come back for 3.5 s");
        return;
    }
    if (publish_frame(cl, CLUSTER_BEAT, NULL, 0) < 0)
        detach(cl, "cannot queue a heartbeat");
}

/* ---- the API serve.c uses ---- */

struct cluster *cluster_open(const struct options *o, dx_loop *loop,
                             void (*deliver)(void *data, const char *msg, size_t n),
                             void (*drained)(void *data), void *data, int *exit_code)
{
    struct cluster *cl = calloc(1, sizeof *cl);
    if (!cl) {
        cli_error("out of memory");
        *exit_code = EXIT_IO;
        return NULL;
    }
    const char *why;
    if (cli_cluster_url_parse(o->cluster, &cl->url, &why) < 0) { /* checked by options.c */
        cli_error("--cluster %s: %s", o->cluster, why);
        free(cl);
        *exit_code = EXIT_USAGE;
        return NULL;
    }
    /* resolved once, here: getaddrinfo blocks */
    int rc = dx_resolve(cl->url.host, cl->url.port, o->family, o->numeric ? DX_RESOLVE_NUMERIC : 0,
                        &cl->addrs);
    if (rc < 0) {
        cli_error("--cluster: cannot resolve %s: %s", cl->url.host, dx_strerror(rc));
        free(cl);
        *exit_code = EXIT_RESOLVE;
        return NULL;
    }
    cl->naddrs = rc;
    snprintf(cl->where, sizeof cl->where, "%s://%s:%s/%s", cl->url.tls ? "rediss" : "redis",
             cl->url.host, cl->url.port, cl->url.channel);
    if (cl->url.tls) {
        /* a client that verifies: the system store or ?cacert=, the name
         * checked against HOST (dx_tls_new) */
        dx_tls_opts to = {0};
        to.ca_file = cl->url.cacert[0] ? cl->url.cacert : NULL;
        char twhy[300];
        int err;
        cl->tls = dx_tls_ctx_new(&to, &err, twhy, sizeof twhy);
        if (!cl->tls) {
            cli_error("--cluster %s: %s", cl->where,
                      err == -ENOSYS ? "rediss:// needs TLS, and this duplex was built without it"
                                     : twhy);
            free(cl->addrs);
            free(cl);
            *exit_code = EXIT_USAGE;
            return NULL;
        }
    }
    unsigned char rnd[CLUSTER_ID_LEN / 2];
    if (cli_random_bytes(rnd, sizeof rnd) < 0) {
        cli_error("--cluster: no randomness for the node id");
        dx_tls_ctx_free(cl->tls);
        free(cl->addrs);
        free(cl);
        *exit_code = EXIT_IO;
        return NULL;
    }
    for (size_t i = 0; i < sizeof rnd; i++)
        snprintf(cl->id + 2 * i, 3, "%02x", rnd[i]);
    cl->o = o;
    cl->loop = loop;
    cl->deliver = deliver;
    cl->drained = drained;
    cl->data = data;
    cl->pub.cl = cl->sub.cl = cl;
    cl->pub.name = "publisher";
    cl->sub.name = "subscriber";
    cl->pub.fd = cl->sub.fd = -1;
    cl->backoff_ms = BACKOFF_FIRST_MS;
    dx_timer_init(&cl->retry, connect_now, cl);
    dx_timer_init(&cl->beat, on_beat, cl);
    dx_timer_init(&cl->lost, on_lost, cl);
    cl->state = DETACHED;
    dx_timer_start(loop, &cl->retry, 0, 0);
    return cl;
}

void cluster_publish(struct cluster *cl, const char *data, size_t n)
{
    if (!cl)
        return;
    if (cl->state != ATTACHED) {
        cl->unpublished++;
        cl->gap_unpublished++;
        return;
    }
    if (publish_frame(cl, CLUSTER_MSG, data, n) < 0) {
        cl->unpublished++;
        cl->gap_unpublished++;
        return;
    }
    cl->published++;
    if (pub_queued(cl) > PUB_QUEUE / 2)
        set_full(cl, 1);
}

int cluster_full(const struct cluster *cl) { return cl && cl->full; }

void cluster_close(struct cluster *cl)
{
    if (!cl)
        return;
    cl->closing = 1;
    conn_free(&cl->pub);
    conn_free(&cl->sub);
    dx_timer_stop(cl->loop, &cl->retry);
    dx_timer_stop(cl->loop, &cl->beat);
    dx_timer_stop(cl->loop, &cl->lost);
    cli_info(cl->o, "cluster: published %llu message%s, received %llu from other nodes; not "
                    "published (detached) %llu, unconfirmed %llu, refused %llu; missed %llu",
             cl->published, cli_s(cl->published), cl->received, cl->unpublished, cl->unconfirmed,
             cl->failed, cl->missed);
    dx_tls_ctx_free(cl->tls);
    free(cl->addrs);
    free(cl);
}
