/* cluster.c: listen --broker/--chat --cluster redis://HOST:PORT/CHANNEL.
 * What this node's clients send is published once to CHANNEL; what the other
 * nodes publish there is handed to serve.c (deliver) for this node's clients.
 *
 * Two hiredis async connections (redisAsyncContext) run in the duplex loop
 * through hiredis's adapter hooks (addRead/delRead/addWrite/delWrite/cleanup,
 * as hiredis/adapters/libev.h does): one dx_io per connection, no thread, no
 * blocking call (the host is resolved once at start; hiredis then gets the
 * numeric address and connects without blocking). One connection SUBSCRIBEs,
 * the other PUBLISHes (a subscribed connection may not publish).
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
 * Backpressure: PUBLISH commands wait in hiredis's output buffer; above
 * PUB_QUEUE / 2 bytes the connection counts as a full recipient (serve.c
 * pauses its senders, as for a slow client) until it drains. Frames from
 * the channel are always read and delivered at once (serve.c drops a frame
 * for a client that has no room for it): the subscriber never holds more
 * than one read. Callbacks that must free a connection (AUTH refused)
 * defer it to a timer, never free from inside hiredis. */
#define _GNU_SOURCE
#include "cli.h"

#include <hiredis/async.h>
#include <hiredis/hiredis.h>

#include <errno.h>
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
/* the other nodes whose sequence numbers are followed */
#define MAX_ORIGINS 256

enum { DETACHED, CONNECTING, ATTACHED };

struct conn {
    struct cluster *cl;
    redisAsyncContext *ac; /* NULL once hiredis has freed it (cleanup hook) */
    dx_io io;
    int reading, writing;
    int ready;             /* pub: connected (AUTH answered); sub: SUBSCRIBE confirmed */
    const char *name;      /* "publisher", "subscriber" */
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
    char where[300];       /* "redis://HOST:PORT/CHANNEL" for messages (no password) */
    char ip[DX_ADDR_STRLEN];
    int port;
    char id[CLUSTER_ID_LEN + 1];
    uint64_t seq;          /* messages published (handed to the publisher) */
    struct conn pub, sub;
    int state;
    int ever_attached;
    int closing;
    dx_timer retry, beat, lost;
    char lost_why[160];
    uint64_t backoff_ms;
    uint64_t attempt_ms, detached_ms, own_beat_ms;
    unsigned long attempts;   /* failed attempts in this gap */
    int full;                 /* publisher above PUB_QUEUE / 2 */
    /* counts: total, and for the gap being reported */
    unsigned long long published, unpublished, unconfirmed, failed, received, missed;
    unsigned long long gap_unpublished, gap_unconfirmed;
    unsigned long long pending;  /* PUBLISH replies awaited */
    char *frame;
    size_t frame_cap;
    struct origin origins[MAX_ORIGINS];
    int norigins;
    void (*deliver)(void *data, const char *msg, size_t n);
    void (*drained)(void *data);
    void *data;
};

static void connect_now(dx_loop *loop, dx_timer *t);

/* ---- the adapter: hiredis asks, one dx_io per connection watches ---- */

static void conn_watch(struct conn *c)
{
    if (!c->ac)
        return;
    int ev = (c->reading ? DX_READ : 0) | (c->writing ? DX_WRITE : 0);
    if (dx_io_set(c->cl->loop, &c->io, ev) < 0)
        cli_error("redis %s: cannot watch its socket", c->name);
}

static void ad_add_read(void *p) { struct conn *c = p; c->reading = 1; conn_watch(c); }
static void ad_del_read(void *p) { struct conn *c = p; c->reading = 0; conn_watch(c); }
static void ad_add_write(void *p) { struct conn *c = p; c->writing = 1; conn_watch(c); }
static void ad_del_write(void *p) { struct conn *c = p; c->writing = 0; conn_watch(c); }

/* Hiredis frees the context (a failure, a close, redisAsyncFree): the
 * watcher stops; the rest of the detach runs from the loop (lost timer). */
static void ad_cleanup(void *p)
{
    struct conn *c = p;
    dx_io_stop(c->cl->loop, &c->io);
    c->ac = NULL;
    c->reading = c->writing = 0;
    c->ready = 0;
    struct cluster *cl = c->cl;
    if (!cl->closing && cl->state != DETACHED && !dx_timer_active(&cl->lost)) {
        snprintf(cl->lost_why, sizeof cl->lost_why, "%s connection lost", c->name);
        dx_timer_start(cl->loop, &cl->lost, 0, 0);
    }
}

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
    return cl->pub.ac && cl->pub.ac->c.obuf ? sdslen(cl->pub.ac->c.obuf) : 0;
}

static void conn_on_io(dx_loop *loop, dx_io *io, int events)
{
    (void)loop;
    struct conn *c = io->data;
    if (c->ac && c->reading && (events & (DX_READ | DX_ERROR)))
        redisAsyncHandleRead(c->ac);
    if (c->ac && c->writing && (events & (DX_WRITE | DX_ERROR)))
        redisAsyncHandleWrite(c->ac);
    if (c == &c->cl->pub && c->cl->full && pub_queued(c->cl) <= PUB_QUEUE / 2)
        set_full(c->cl, 0);
}

static int conn_attach(struct conn *c, redisAsyncContext *ac)
{
    c->ac = ac;
    c->reading = c->writing = c->ready = 0;
    dx_io_init(&c->io, ac->c.fd, conn_on_io, c);
    ac->ev.data = c;
    ac->ev.addRead = ad_add_read;
    ac->ev.delRead = ad_del_read;
    ac->ev.addWrite = ad_add_write;
    ac->ev.delWrite = ad_del_write;
    ac->ev.cleanup = ad_cleanup;
    ad_add_write(c); /* the connect completes on writability */
    return 0;
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
    cl->own_beat_ms = dx_loop_now(cl->loop);
    say_attached(cl);
}

static void conn_free(struct conn *c)
{
    if (c->ac)
        redisAsyncFree(c->ac); /* runs the pending callbacks (NULL), then ad_cleanup */
    c->ac = NULL;
    c->ready = 0;
}

/* Drop both connections and try again after the backoff. From the loop
 * only (a timer), never from inside hiredis. */
static void detach(struct cluster *cl, const char *why)
{
    int was = cl->state;
    cl->state = DETACHED;
    conn_free(&cl->pub);
    conn_free(&cl->sub);
    cl->pending = 0;
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
        if (!cl->ever_attached && cl->attempts == 1)
            cli_error("cluster: cannot reach %s: %s; local clients are served, retrying", cl->where,
                      why);
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

/* From inside a hiredis callback: detach from the loop. */
static void fail_later(struct cluster *cl, const char *why)
{
    if (cl->state == DETACHED || dx_timer_active(&cl->lost))
        return;
    snprintf(cl->lost_why, sizeof cl->lost_why, "%s", why);
    dx_timer_start(cl->loop, &cl->lost, 0, 0);
}

/* ---- replies ---- */

static void on_connect(const redisAsyncContext *ac, int status)
{
    struct conn *c = ac->ev.data;
    if (status != REDIS_OK) {
        char why[160];
        snprintf(why, sizeof why, "%s: %s", c->name, ac->errstr[0] ? ac->errstr : "connect failed");
        fail_later(c->cl, why);
    }
}

static void on_auth(redisAsyncContext *ac, void *r, void *priv)
{
    (void)ac;
    struct conn *c = priv;
    redisReply *reply = r;
    if (reply && reply->type == REDIS_REPLY_ERROR) {
        char why[200];
        snprintf(why, sizeof why, "AUTH refused: %.150s", reply->str);
        fail_later(c->cl, why);
    }
}

static void on_pub_ready(redisAsyncContext *ac, void *r, void *priv)
{
    (void)ac;
    struct conn *c = priv;
    redisReply *reply = r;
    if (!reply)
        return;
    if (reply->type == REDIS_REPLY_ERROR) {
        char why[200];
        snprintf(why, sizeof why, "publisher: %.150s", reply->str);
        fail_later(c->cl, why);
        return;
    }
    c->ready = 1;
    check_attached(c->cl);
}

static void on_published(redisAsyncContext *ac, void *r, void *priv)
{
    (void)ac;
    struct cluster *cl = priv;
    redisReply *reply = r;
    if (cl->pending)
        cl->pending--;
    if (!reply) { /* the connection went first: Redis may or may not have it */
        cl->unconfirmed++;
        cl->gap_unconfirmed++;
    } else if (reply->type == REDIS_REPLY_ERROR) {
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

static void on_sub(redisAsyncContext *ac, void *r, void *priv)
{
    (void)ac;
    struct conn *c = priv;
    struct cluster *cl = c->cl;
    redisReply *reply = r;
    if (!reply)
        return;
    if (reply->type == REDIS_REPLY_ERROR) {
        char why[200];
        snprintf(why, sizeof why, "SUBSCRIBE refused: %.150s", reply->str);
        fail_later(cl, why);
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

/* ---- connecting ---- */

static int conn_open(struct cluster *cl, struct conn *c, char *why, size_t whylen)
{
    redisAsyncContext *ac = redisAsyncConnect(cl->ip, cl->port);
    if (!ac) {
        snprintf(why, whylen, "%s: out of memory", c->name);
        return -1;
    }
    if (ac->err) {
        snprintf(why, whylen, "%s: %s", c->name, ac->errstr);
        redisAsyncFree(ac);
        return -1;
    }
    conn_attach(c, ac);
    redisAsyncSetConnectCallback(ac, on_connect);
    const struct cluster_url *u = &cl->url;
    if (u->has_pass && u->user[0])
        redisAsyncCommand(ac, on_auth, c, "AUTH %s %s", u->user, u->pass);
    else if (u->has_pass)
        redisAsyncCommand(ac, on_auth, c, "AUTH %s", u->pass);
    return 0;
}

static void connect_now(dx_loop *loop, dx_timer *t)
{
    (void)loop;
    struct cluster *cl = t->data;
    char why[200];
    cl->state = CONNECTING;
    cl->attempt_ms = dx_loop_now(cl->loop);
    if (conn_open(cl, &cl->pub, why, sizeof why) < 0 || conn_open(cl, &cl->sub, why, sizeof why) < 0) {
        detach(cl, why);
        return;
    }
    redisAsyncCommand(cl->pub.ac, on_pub_ready, &cl->pub, "PING");
    redisAsyncCommand(cl->sub.ac, on_sub, &cl->sub, "SUBSCRIBE %b", cl->url.channel,
                      strlen(cl->url.channel));
    dx_timer_start(cl->loop, &cl->beat, HEARTBEAT_MS, HEARTBEAT_MS);
}

static int publish_frame(struct cluster *cl, int type, const char *data, size_t n)
{
    /* hiredis may have freed the connection already (ad_cleanup), the
     * detach still to come from the loop (the lost timer) */
    if (!cl->pub.ac)
        return -EPIPE;
    char head[64];
    size_t hn = cli_cluster_frame_head(head, sizeof head, type, cl->id,
                                       type == CLUSTER_MSG ? cl->seq + 1 : cl->seq);
    if (cl->frame_cap < hn + n) {
        char *f = realloc(cl->frame, hn + n);
        if (!f)
            return -ENOMEM;
        cl->frame = f;
        cl->frame_cap = hn + n;
    }
    memcpy(cl->frame, head, hn);
    if (n)
        memcpy(cl->frame + hn, data, n);
    if (redisAsyncCommand(cl->pub.ac, on_published, cl, "PUBLISH %b %b", cl->url.channel,
                          strlen(cl->url.channel), cl->frame, hn + n) != REDIS_OK)
        return -EIO;
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
    if (cl->state != ATTACHED)
        return;
    if (now - cl->own_beat_ms >= HEARTBEAT_DEAD_MS) {
        detach(cl, "its own heartbeats have not come back for 3.5 s");
        return;
    }
    if (publish_frame(cl, CLUSTER_BEAT, NULL, 0) < 0)
        detach(cl, cl->pub.ac ? "cannot queue a heartbeat" : "publisher connection lost");
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
    /* resolved once, here: hiredis would resolve (blocking) on each connect */
    dx_addr *addrs = NULL;
    int rc = dx_resolve(cl->url.host, cl->url.port, o->family, o->numeric ? DX_RESOLVE_NUMERIC : 0,
                        &addrs);
    if (rc < 0) {
        cli_error("--cluster: cannot resolve %s: %s", cl->url.host, dx_strerror(rc));
        free(cl);
        *exit_code = EXIT_RESOLVE;
        return NULL;
    }
    char text[DX_ADDR_STRLEN];
    dx_addr_format(&addrs[0], text, sizeof text);
    cl->port = dx_addr_port(&addrs[0]);
    /* the address alone: "[::1]:6379" -> "::1" */
    char *colon = strrchr(text, ':');
    if (colon)
        *colon = '\0';
    const char *ip = text;
    if (ip[0] == '[') {
        ip++;
        text[strlen(text) - 1] = '\0';
    }
    snprintf(cl->ip, sizeof cl->ip, "%s", ip);
    free(addrs);
    snprintf(cl->where, sizeof cl->where, "redis://%s:%s/%s", cl->url.host, cl->url.port,
             cl->url.channel);
    unsigned char rnd[CLUSTER_ID_LEN / 2];
    if (cli_random_bytes(rnd, sizeof rnd) < 0) {
        cli_error("--cluster: no randomness for the node id");
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
    free(cl->frame);
    free(cl);
}
