/* serve.c: `duplex listen` with many clients at once, on one event loop:
 * -k (clients -> stdout, stdin -> every client), --echo, --broker, --chat;
 * --exec hands each client to a process (exec.c). Limits: --max-conns,
 * --allow/--deny, --idle-timeout, and a bounded queue per client.
 * Fan-out backpressure (broker, chat, stdin to clients): when a recipient's
 * queue is more than half full, reading from every sender pauses until it
 * drains, so a reader slower than the senders loses nothing; a recipient that
 * stays congested for CONGESTED_DROP_MS is dropped as not reading, so one
 * stuck client stalls the others for at most that long and memory stays
 * bounded. The server's own stdout is never dropped: it only pauses reading.
 * A chat read pauses in the middle (one read can be thousands of lines):
 * the rest is kept and passed on first when reading resumes (on_resume).
 * A closed client stays in the list, dead, until reap() runs from the
 * loop, so no loop over the clients is disturbed by a close it causes.
 * --cluster (cluster.c): what the senders give is also published to Redis,
 * and what other nodes publish is delivered here as a local sender's is,
 * except that it cannot be paused: a recipient without room for a message
 * does not get it (counted, said with -v); the publisher, when full,
 * pauses the senders as a slow recipient does. */
#define _GNU_SOURCE
#include "cli.h"
#include "os.h"

#include <errno.h>
#ifndef _WIN32
#include <fcntl.h>
#endif
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Longest chat line; a longer one is passed on in pieces of this size. */
#define CHAT_LINE_MAX 4096
/* Queue of the server's own stdout; above half, clients stop being read. */
#define STDOUT_QUEUE (4u << 20)
/* Echo: a client is not read while its queue has less room than one read. */
#define ECHO_QUEUE (256u << 10)
#define READ_CHUNK (64u << 10)
/* How long a recipient may hold the senders back before it is dropped. */
#define CONGESTED_DROP_MS 2000
/* Sweep period for congestion and idle checks. */
#define SWEEP_MS 250

/* Chat input of one sender (a client or the server's stdin): the line
 * being assembled, and what was read but not yet split because the
 * recipients filled up (the sender is not read until it has been). */
struct chat_in {
    char *line;          /* the partial line received so far */
    size_t linelen;
    char *rest;          /* input not yet split: rest[rest_at..rest_end) */
    size_t rest_at, rest_end;
};

struct client {
    struct server *sv;
    struct client *prev, *next; /* in sv->clients until reaped, dead or not */
    struct client *next_dead;   /* in sv->graveyard once closed */
    int fd;
    dx_stream st;
    dx_tls *tls;         /* --ssl: the stream reads and writes through it */
    char name[DX_ADDR_STRLEN];
    struct chat_in in;   /* chat */
    unsigned long left_count; /* chat: clients still connected when it left */
    int in_eof;          /* the client ended its side */
    int dead;            /* closed; unlinked and freed by reap() */
    int congested;       /* its queue is more than half full */
    uint64_t congested_since;
};

struct server {
    const struct options *o;
    dx_loop *loop;
    struct listeners l;
    struct client *clients;    /* clients, newest first (dead ones until reaped) */
    struct client *graveyard, *grave_last; /* closed clients, oldest first */
    dx_timer reaper;           /* frees the graveyard outside callbacks */
    dx_timer resume;           /* backlog, then reading, once recipients drained */
    dx_timer sweep;            /* --idle-timeout and exec child checks */
    unsigned long nclients;
    /* atomic: the -v totals of --threads sum every loop's (serve_report);
     * clients refused by the access list are counted in l.denied */
    atomic_ulong accepted, refused, dropped;
    struct server *next_server; /* in all_servers */
    int stdio;                 /* the server's stdin/stdout take part */
    struct cli_tls_server *tls; /* --ssl: the handshakes (tls.c); not --model thread/fork */
    unsigned exec_tls;         /* --exec --ssl: clients whose bytes the loop still pumps */
    struct exec_tls *exec_tls_list;
    dx_stream in, out;
    int in_open;               /* stdin is being read */
    int in_ended;              /* stdin was read to its end (not -d, not --no-stdio) */
    struct chat_in stdin_in;   /* chat: the server's own lines */
    char *crlf_buf;            /* -C: stdin converted */
    size_t crlf_cap;
    int stdin_cr;              /* -C: stdin's last byte was a CR */
    int out_full;              /* stdout above half: clients paused */
    unsigned long ncongested;  /* clients whose queue is above half */
    int reading_paused;        /* senders are not read (out_full or ncongested) */
    int stop_when_idle;        /* without -k: stop after the first client */
    struct cluster *cl;        /* --cluster: the Redis channel */
    unsigned long long remote_dropped, remote_dropped_said; /* messages of other nodes not
                                * delivered to a recipient without room */
};

static void client_close(struct client *c, const char *why);

/* Clients of every event loop of the process: --max-conns is a total, also
 * with --threads. */
static atomic_long clients_total;
static pthread_mutex_t admit_lock = PTHREAD_MUTEX_INITIALIZER;
/* Every server of the process (one per --threads loop), for the totals. */
static struct server *all_servers;
static pthread_mutex_t servers_lock = PTHREAD_MUTEX_INITIALIZER;

/* stdin is read only while a client is there to take it: with nobody
 * connected, what it gives waits (in the pipe or terminal) for the first
 * client instead of being read and lost. */
static void update_stdin(struct server *sv)
{
    if (!sv->in_open)
        return;
    if (sv->nclients > 0 && !sv->reading_paused && !sv->stdin_in.rest)
        dx_stream_read_start(&sv->in);
    else
        dx_stream_read_stop(&sv->in);
}

/* A recipient (stdout included) is more than half full: senders wait. */
static int recipients_full(const struct server *sv)
{
    return sv->out_full || sv->ncongested > 0 || cluster_full(sv->cl);
}

/* Senders are read only while every recipient keeps up (stdout included).
 * Pausing is at once; resuming goes through on_resume(), from the loop, as
 * it first passes on the input kept back (chat) and may close clients. */
static void update_reading(struct server *sv)
{
    if (!recipients_full(sv)) {
        if (sv->reading_paused)
            dx_timer_start(sv->loop, &sv->resume, 0, 0);
        return;
    }
    if (sv->reading_paused)
        return;
    sv->reading_paused = 1;
    for (struct client *c = sv->clients; c; c = c->next)
        if (!c->in_eof && !c->dead)
            dx_stream_read_stop(&c->st);
    update_stdin(sv);
}

static void set_congested(struct client *c, int on)
{
    struct server *sv = c->sv;
    if (c->congested == on)
        return;
    c->congested = on;
    if (on) {
        c->congested_since = dx_loop_now(sv->loop);
        sv->ncongested++;
    } else {
        sv->ncongested--;
    }
    update_reading(sv);
}

/* ---- output helpers ---- */

static int out_write(struct server *sv, const void *data, size_t n)
{
    if (!sv->stdio || sv->out.failed)
        return 0;
    int rc = dx_stream_write(&sv->out, data, n);
    if (rc == -ENOBUFS) {
        /* cannot happen while reads pause above half; never drop silently */
        cli_error("stdout: cannot keep up, %zu byte%s lost", n, cli_s(n));
        return rc;
    }
    if (!sv->out_full && dx_stream_queued(&sv->out) > STDOUT_QUEUE / 2) {
        sv->out_full = 1;
        update_reading(sv);
    }
    return 0;
}

/* Queue bytes for a client; a client whose queue is full is dropped. */
static void client_send(struct client *c, const void *data, size_t n)
{
    if (c->dead)
        return;
    int rc = dx_stream_write(&c->st, data, n);
    if (rc == -ENOBUFS) { /* only if a reader outran the pause: never lose silently */
        char why[96];
        snprintf(why, sizeof why, "not reading (%zu byte%s queued)", dx_stream_queued(&c->st),
                 cli_s(dx_stream_queued(&c->st)));
        c->sv->dropped++;
        client_close(c, why);
        return;
    }
    if (!c->dead && c->sv->o->mode != MODE_ECHO && dx_stream_queued(&c->st) > c->st.queue_cap / 2)
        set_congested(c, 1);
}

/* Send to every client except `from` (NULL: everyone). */
static void broadcast(struct server *sv, struct client *from, const void *data, size_t n)
{
    struct client *next;
    for (struct client *c = sv->clients; c; c = next) {
        next = c->next; /* c may be closed by the send */
        if (c != from)
            client_send(c, data, n);
    }
}

/* --cluster: to the other nodes too (a no-op without). */
static void publish(struct server *sv, const void *data, size_t n)
{
    if (!sv->cl)
        return;
    cluster_publish(sv->cl, data, n);
    if (cluster_full(sv->cl))
        update_reading(sv);
}

/* --cluster: a message another node published, for every client here and
 * stdout; one that a recipient has no room for is not queued for it (the
 * sweep drops a recipient that stays full as not reading). */
static void on_remote(void *data, const char *msg, size_t n)
{
    struct server *sv = data;
    struct client *next;
    for (struct client *c = sv->clients; c; c = next) {
        next = c->next;
        if (c->dead)
            continue;
        if (dx_stream_room(&c->st) < n)
            sv->remote_dropped++;
        else
            client_send(c, msg, n);
    }
    if (sv->stdio && !sv->out.failed) {
        if (dx_stream_room(&sv->out) < n)
            sv->remote_dropped++;
        else
            out_write(sv, msg, n);
    }
}

static void on_cluster_drained(void *data) { update_reading(data); }

/* Chat: a line or notice from `from` (NULL: the server) to everyone else;
 * with --cluster, names start with this node's. */
static void chat_say(struct server *sv, struct client *from, const char *text, size_t n)
{
    char msg[CHAT_LINE_MAX + DX_ADDR_STRLEN + 80];
    const char *node = sv->cl ? sv->o->node_name : NULL;
    int head = from ? snprintf(msg, sizeof msg, "[%s%s%s] ", node ? node : "", node ? " " : "", from->name)
                    : snprintf(msg, sizeof msg, "[%s] ", node ? node : "server");
    if (n > CHAT_LINE_MAX)
        n = CHAT_LINE_MAX;
    memcpy(msg + head, text, n);
    size_t len = (size_t)head + n;
    if (len == 0 || msg[len - 1] != '\n')
        msg[len++] = '\n';
    broadcast(sv, from, msg, len);
    if (from)
        out_write(sv, msg, len);
    publish(sv, msg, len);
}

/* With --cluster the count is this node's clients: "(3 connected on node2)". */
static void chat_notice(struct server *sv, struct client *about, const char *what,
                        unsigned long connected)
{
    char msg[DX_ADDR_STRLEN + 200];
    const char *node = sv->cl ? sv->o->node_name : NULL;
    int n = node ? snprintf(msg, sizeof msg, "* %s %s %s (%lu connected on %s)\n", node, about->name,
                            what, connected, node)
                 : snprintf(msg, sizeof msg, "* %s %s (%lu connected)\n", about->name, what, connected);
    broadcast(sv, about, msg, (size_t)n);
    out_write(sv, msg, (size_t)n);
    publish(sv, msg, (size_t)n);
}

/* Split what a sender (`from`, NULL: the server's stdin) gave into lines,
 * cut at '\n' or after CHAT_LINE_MAX bytes, each said once complete; the
 * unfinished one stays in `in`. Stops as soon as a recipient is more than
 * half full, so the work of one read is bounded by the recipients' room,
 * whatever it holds (64 KiB of newlines are 65,536 prefixed lines): returns
 * the bytes taken, fewer than n then. */
static size_t chat_split(struct server *sv, struct client *from, struct chat_in *in, const char *data,
                         size_t n)
{
    size_t done = 0;
    while (done < n && !(from && from->dead) && !recipients_full(sv)) {
        const char *nl = memchr(data + done, '\n', n - done);
        size_t take = nl ? (size_t)(nl - (data + done)) + 1 : n - done;
        if (!in->line && !(in->line = malloc(CHAT_LINE_MAX))) {
            if (from)
                client_close(from, "out of memory");
            else
                cli_error("stdin: out of memory, %zu bytes lost", n - done);
            return n;
        }
        size_t room = CHAT_LINE_MAX - in->linelen;
        if (take > room)
            take = room;
        memcpy(in->line + in->linelen, data + done, take);
        in->linelen += take;
        done += take;
        if (in->line[in->linelen - 1] == '\n' || in->linelen == CHAT_LINE_MAX) {
            chat_say(sv, from, in->line, in->linelen);
            in->linelen = 0;
        }
    }
    if (in->linelen == 0) {
        free(in->line); /* idle senders hold no line buffer */
        in->line = NULL;
    }
    return done;
}

/* A sender's input: what the recipients have no room for yet is kept in
 * in->rest (the caller stops reading the sender; on_resume() goes on).
 * Returns 0, or -ENOMEM. */
static int chat_input(struct server *sv, struct client *from, struct chat_in *in, const char *data,
                      size_t n)
{
    size_t took = chat_split(sv, from, in, data, n);
    if (took == n || (from && from->dead))
        return 0;
    if (!(in->rest = malloc(n - took)))
        return -ENOMEM;
    memcpy(in->rest, data + took, n - took);
    in->rest_at = 0;
    in->rest_end = n - took;
    return 0;
}

/* Pass on the input kept back, as far as the recipients take it: 1 when
 * all of it has gone (or the sender has), else 0. */
static int chat_backlog(struct server *sv, struct client *from, struct chat_in *in)
{
    if (!in->rest)
        return 1;
    in->rest_at += chat_split(sv, from, in, in->rest + in->rest_at, in->rest_end - in->rest_at);
    if (in->rest_at < in->rest_end && !(from && from->dead))
        return 0;
    free(in->rest);
    in->rest = NULL;
    return 1;
}

/* ---- client life ---- */

/* Closed clients leave the list here, from the loop, never inside a loop
 * over the clients: a broadcast or sweep that closes one goes on unharmed. */
static void reap(dx_loop *loop, dx_timer *t)
{
    (void)loop;
    struct server *sv = t->data;
    while (sv->graveyard) {
        struct client *c = sv->graveyard;
        if (!(sv->graveyard = c->next_dead))
            sv->grave_last = NULL;
        if (sv->o->mode == MODE_CHAT) {
            /* said here, not in client_close(), which may run inside a
             * broadcast; these may close more clients (queued behind) */
            if (c->in.linelen > 0)
                chat_say(sv, c, c->in.line, c->in.linelen); /* the last line had no newline */
            chat_notice(sv, c, "left", c->left_count);
        }
        if (c->prev)
            c->prev->next = c->next;
        else
            sv->clients = c->next;
        if (c->next)
            c->next->prev = c->prev;
        free(c->in.line);
        free(c->in.rest);
        free(c);
    }
    if (sv->stop_when_idle && sv->nclients == 0 && exec_children() == 0 && sv->exec_tls == 0 &&
        cli_tls_server_live(sv->tls) == 0)
        dx_loop_stop(sv->loop);
}

static void client_close(struct client *c, const char *why)
{
    struct server *sv = c->sv;
    if (c->dead)
        return;
    c->dead = 1;
    if (why)
        cli_info(sv->o, "%s: closed: %s (sent %llu byte%s, received %llu byte%s)", c->name, why,
                 (unsigned long long)c->st.bytes_out, cli_s(c->st.bytes_out),
                 (unsigned long long)c->st.bytes_in, cli_s(c->st.bytes_in));
    if (c->congested)
        set_congested(c, 0);
    dx_stream_close(&c->st);
    if (c->tls) {
        cli_tls_goodbye(c->tls); /* close_notify, unless the stream's shutdown sent it */
        dx_tls_free(c->tls);
        c->tls = NULL;
    }
    dx__fd_close(c->fd);
    sv->nclients--;
    c->left_count = sv->nclients;
    atomic_fetch_sub(&clients_total, 1);
    update_stdin(sv);
    /* still linked (dead) until reap(): a loop over the clients that got
     * here (broadcast, sweep) keeps valid next pointers and skips it */
    if (sv->grave_last)
        sv->grave_last->next_dead = c;
    else
        sv->graveyard = c;
    sv->grave_last = c;
    dx_timer_start(sv->loop, &sv->reaper, 0, 0);
    if (sv->l.paused && sv->o->model == MODEL_ITERATIVE) { /* this client's turn is over */
        sv->l.paused = 0;
        listeners_watch(&sv->l, 1);
    }
}

/* Both directions are over: the client ended its side and ours is shut. */
static void client_maybe_done(struct client *c)
{
    if (c->in_eof && c->st.shut_done)
        client_close(c, "finished");
}

static void client_on_event(dx_stream *s, int error)
{
    struct client *c = s->data;
    if (error < 0) {
        int tls_code = error == DX_ETLS || error == DX_ETLSVERIFY || error == DX_ETLSTRUNC;
        client_close(c, tls_code && c->tls ? dx_tls_reason(c->tls) : dx_strerror(error));
        return;
    }
    if (c->congested && dx_stream_queued(s) <= s->queue_cap / 2)
        set_congested(c, 0);
    client_maybe_done(c);
    /* echo: the queue has room again for what the client sends */
    if (!c->dead && c->sv->o->mode == MODE_ECHO && !c->in_eof && dx_stream_room(s) >= READ_CHUNK)
        dx_stream_read_start(s);
}

static void client_on_read(dx_stream *s, const char *data, size_t n)
{
    struct client *c = s->data;
    struct server *sv = c->sv;
    if (n == 0) {
        /* the client is done: what is queued for it is still sent, then
         * our side closes too (a client that only half-closed and waits
         * for more stdin is not kept: a closed one would hold its slot) */
        c->in_eof = 1;
        if (c->tls)
            cli_tls_ended(sv->o, c->tls, c->name, 1);
        dx_stream_shutdown(s);
        client_maybe_done(c);
        return;
    }
    switch (sv->o->mode) {
    case MODE_ECHO:
        client_send(c, data, n);
        if (!c->dead && dx_stream_room(s) < READ_CHUNK)
            dx_stream_read_stop(s); /* resumed by the drain event */
        break;
    case MODE_BROKER:
        broadcast(sv, c, data, n);
        out_write(sv, data, n);
        publish(sv, data, n);
        break;
    case MODE_CHAT:
        if (chat_input(sv, c, &c->in, data, n) < 0)
            client_close(c, "out of memory");
        else if (c->in.rest)
            dx_stream_read_stop(s); /* the recipients are full: on_resume() goes on */
        break;
    default:
        out_write(sv, data, n);
        break;
    }
}

/* An --exec --ssl client is over: the server may be done (no -k). */
static void exec_tls_done(void *data)
{
    struct server *sv = data;
    sv->exec_tls--;
    if (sv->stop_when_idle && sv->nclients == 0 && exec_children() == 0 && sv->exec_tls == 0 &&
        cli_tls_server_live(sv->tls) == 0)
        dx_loop_stop(sv->loop);
}

/* A client served by its own process (--exec, --model fork) or thread
 * (--model thread). --exec --ssl: the program gets a socketpair, the loop
 * pumps between it and tls; --model thread/fork --ssl: the thread or
 * child runs the handshake itself. */
static void serve_spawned(struct listeners *l, int fd, const dx_addr *peer, const dx_addr *local,
                          dx_tls *tls, const char *name)
{
    struct server *sv = l->data;
    const struct options *o = sv->o;
    if (o->mode == MODE_EXEC) {
        pid_t pid = tls ? exec_tls_client(sv->loop, o, fd, tls, peer, local, &sv->exec_tls_list,
                                          exec_tls_done, sv)
                        : exec_client(o, fd, peer, local);
        if (pid > 0)
            cli_info(o, "%s: connected, running process %ld", name, (long)pid);
        if (pid > 0 && tls) {
            sv->exec_tls++; /* fd is the pumps' now */
            /* --idle-timeout: the server watches a copy of the socket */
#ifdef _WIN32
            int copy = -1; /* tls is only set with --ssl, which Windows builds lack */
#else
            int copy = o->idle_timeout_ms ? fcntl(fd, F_DUPFD_CLOEXEC, 0) : -1; /* not for the next children */
#endif
            if (copy >= 0 && !exec_watch_idle(pid, copy, peer))
                dx__fd_close(copy);
        } else {
            dx_tls_free(tls);
            /* --idle-timeout: the server keeps its copy of the socket to watch it */
            if (!(pid > 0 && o->idle_timeout_ms && exec_watch_idle(pid, fd, peer)))
                dx__fd_close(fd);
        }
        if (pid > 0 && o->model == MODEL_ITERATIVE) {
            l->paused = 1; /* the next client when this process has ended (on_sweep) */
            listeners_watch(l, 0);
        }
        return;
    }
    int rc = model_spawn(o, fd, name);
    if (rc < 0) {
        cli_error("%s: cannot start a %s: %s", name, o->model == MODEL_FORK ? "process" : "thread",
                  dx_strerror(rc));
        dx__fd_close(fd);
    }
}

/* Close a client not taken: its TLS state too. */
static void drop(int fd, dx_tls *tls)
{
    dx_tls_free(tls);
    dx__fd_close(fd);
}

/* A client to serve: fd is its socket; with --ssl (not --model
 * thread/fork: they run the handshake themselves), tls its TLS connection,
 * the handshake done, and local the socket's address. */
static void admit(struct server *sv, int fd, const dx_addr *peer, const dx_addr *local,
                  dx_tls *tls)
{
    struct listeners *l = &sv->l;
    const struct options *o = sv->o;
    char name[DX_ADDR_STRLEN];
    listeners_client_name(&sv->l, peer, sv->accepted + 1, name, sizeof name);
    int spawned = o->mode == MODE_EXEC || o->model == MODEL_FORK || o->model == MODEL_THREAD;
    /* --threads loops accepting at the same moment must not both take the
     * last free slot: in-loop clients take theirs with one atomic add, and
     * spawned ones count once their process or thread exists, so the check
     * and the spawn are one step under admit_lock. */
    if (spawned)
        pthread_mutex_lock(&admit_lock);
    unsigned long busy = spawned ? (unsigned long)(o->mode == MODE_EXEC ? exec_children() : model_clients(o))
                                 : (unsigned long)atomic_fetch_add(&clients_total, 1);
    if (o->max_conns && busy >= (unsigned long)o->max_conns) {
        if (spawned)
            pthread_mutex_unlock(&admit_lock);
        else
            atomic_fetch_sub(&clients_total, 1);
        sv->refused++;
        cli_info(o, "%s: refused: --max-conns %ld reached", name, o->max_conns);
        drop(fd, tls);
        return;
    }
    sv->accepted++;
    if (!o->keep_listening && !sv->stop_when_idle) {
        /* like nc -l: one client, then the port is free again */
        listeners_close(l);
        sv->stop_when_idle = 1;
    }
    if (spawned) {
        serve_spawned(l, fd, peer, local, tls, name);
        pthread_mutex_unlock(&admit_lock);
        return;
    }
    struct client *c = calloc(1, sizeof *c);
    size_t qcap = o->mode == MODE_ECHO ? ECHO_QUEUE : o->max_queue;
    if (!c || dx_stream_init(sv->loop, &c->st, fd, qcap, client_on_read, client_on_event, c) < 0) {
        cli_error("%s: out of memory, closing", name);
        atomic_fetch_sub(&clients_total, 1);
        free(c);
        drop(fd, tls);
        return;
    }
    if (tls)
        dx_stream_set_tls(&c->st, tls); /* the stream speaks TLS itself */
    c->tls = tls;
    dx_stream_set_rate(&c->st, o->rate_limit, o->rate_limit); /* --rate-limit (0: none) */
    c->sv = sv;
    c->fd = fd;
    memcpy(c->name, name, sizeof name);
    c->next = sv->clients;
    if (c->next)
        c->next->prev = c;
    sv->clients = c;
    sv->nclients++;
    update_stdin(sv);
    cli_info(o, "%s: connected (%lu now)", name, sv->nclients);
    if (o->model == MODEL_ITERATIVE) {
        /* one at a time: the next clients wait in the backlog */
        l->paused = 1;
        listeners_watch(l, 0);
    }
    if (!sv->reading_paused)
        dx_stream_read_start(&c->st);
    /* stdin has already ended: this client gets end-of-input at once (not
     * with -d or --no-stdio: stdin is not read then, it does not end) */
    if (o->mode == MODE_STDIO && sv->in_ended)
        dx_stream_shutdown(&c->st);
    if (o->mode == MODE_CHAT)
        chat_notice(sv, c, "joined", sv->nclients);
}

static void on_tls_client(void *data, int fd, const dx_addr *peer, const dx_addr *local,
                          dx_tls *tls)
{
    admit(data, fd, peer, local, tls);
}

/* A client the access list allows (listeners.c has asked it). */
static void on_client(struct listeners *l, int fd, const dx_addr *peer, const dx_addr *local)
{
    /* local: what the client's PROXY header says it reached (--accept-proxy),
     * --exec's DUPLEX_LOCAL_* as haproxy passes it on; NULL: the socket's */
    struct server *sv = l->data;
    if (!sv->tls) {
        admit(sv, fd, peer, local, NULL);
        return;
    }
    char name[DX_ADDR_STRLEN];
    listeners_client_name(&sv->l, peer, sv->accepted + 1, name, sizeof name);
    if (listeners_tls_accept(l, sv->tls, fd, peer, local, name))
        sv->stop_when_idle = 1;
}

/* ---- the server's own stdin/stdout ---- */

/* No more input on stdin (its end or a read error). */
static void stdin_ended(struct server *sv)
{
    sv->in_open = 0;
    sv->in_ended = 1;
    dx_stream_close(&sv->in);
    /* chat: the last line had no newline */
    struct chat_in *in = &sv->stdin_in;
    if (in->linelen > 0)
        chat_say(sv, NULL, in->line, in->linelen);
    free(in->line);
    in->line = NULL;
    in->linelen = 0;
    /* stdio mode: clients get end-of-input */
    if (sv->o->mode == MODE_STDIO) {
        for (struct client *c = sv->clients; c; c = c->next) {
            if (c->dead)
                continue;
            dx_stream_shutdown(&c->st);
            client_maybe_done(c);
        }
    }
}

static void stdin_on_read(dx_stream *s, const char *data, size_t n)
{
    struct server *sv = s->data;
    if (n == 0) {
        stdin_ended(sv);
        return;
    }
    if (sv->o->crlf) {
        /* -C (as ncat): stdin's lone LFs go out as CRLF, in every mode */
        if (sv->crlf_cap < 2 * n) {
            char *b = realloc(sv->crlf_buf, 2 * n);
            if (!b) {
                cli_error("stdin: out of memory, input lost");
                return;
            }
            sv->crlf_buf = b;
            sv->crlf_cap = 2 * n;
        }
        n = cli_crlf(data, n, sv->crlf_buf, &sv->stdin_cr);
        data = sv->crlf_buf;
    }
    if (sv->o->mode != MODE_CHAT) {
        broadcast(sv, NULL, data, n);
        if (sv->o->mode == MODE_BROKER)
            publish(sv, data, n);
        return;
    }
    /* the same lines as a client's: assembled across reads, cut in pieces */
    if (chat_input(sv, NULL, &sv->stdin_in, data, n) < 0)
        cli_error("stdin: out of memory, input lost");
    else if (sv->stdin_in.rest)
        dx_stream_read_stop(s); /* the recipients are full: on_resume() goes on */
}

static void stdin_on_event(dx_stream *s, int error)
{
    struct server *sv = s->data;
    if (error < 0) {
        cli_error("read stdin: %s", dx_strerror(error));
        stdin_ended(sv);
    }
}

static void stdout_on_event(dx_stream *s, int error)
{
    struct server *sv = s->data;
    if (error < 0) {
        cli_error("write stdout: %s; clients are no longer copied there", dx_strerror(error));
        sv->stdio = 0;
        dx_stream_close(&sv->out);
    }
    if (sv->out_full && (error < 0 || dx_stream_queued(s) <= STDOUT_QUEUE / 2)) {
        sv->out_full = 0;
        update_reading(sv);
    }
}

/* ---- timers ---- */

/* The recipients have drained: pass on the input kept back (chat), then
 * read the senders again; if the recipients fill up first, the next drain
 * comes back here (update_reading). */
static void on_resume(dx_loop *loop, dx_timer *t)
{
    (void)loop;
    struct server *sv = t->data;
    if (!sv->reading_paused || recipients_full(sv))
        return;
    for (struct client *c = sv->clients; c; c = c->next)
        if (!c->dead && !chat_backlog(sv, c, &c->in))
            return;
    if (!chat_backlog(sv, NULL, &sv->stdin_in) || recipients_full(sv))
        return; /* (the backlog's last line may have filled one) */
    sv->reading_paused = 0;
    for (struct client *c = sv->clients; c; c = c->next)
        if (!c->in_eof && !c->dead)
            dx_stream_read_start(&c->st);
    update_stdin(sv);
}

static void on_sweep(dx_loop *loop, dx_timer *t)
{
    struct server *sv = t->data;
    /* exec, fork or thread without -k: done when the one client has gone */
    if (sv->stop_when_idle && sv->nclients == 0 && exec_children() == 0 && sv->exec_tls == 0 &&
        model_clients(sv->o) == 0 && cli_tls_server_live(sv->tls) == 0) {
        dx_loop_stop(loop);
        return;
    }
    if (sv->l.paused && sv->o->model == MODEL_ITERATIVE && sv->o->mode == MODE_EXEC &&
        exec_children() == 0) {
        sv->l.paused = 0;
        listeners_watch(&sv->l, 1);
    }
    if (sv->remote_dropped != sv->remote_dropped_said) {
        unsigned long long n = sv->remote_dropped - sv->remote_dropped_said;
        cli_info(sv->o, "cluster: %llu message%s of other nodes not delivered to recipients "
                 "without room (not reading); %llu in all", n, cli_s(n), sv->remote_dropped);
        sv->remote_dropped_said = sv->remote_dropped;
    }
    uint64_t now = dx_loop_now(loop);
    uint64_t limit = (uint64_t)sv->o->idle_timeout_ms;
    if (limit && sv->o->mode == MODE_EXEC)
        exec_close_idle(sv->o, limit);
    struct client *next;
    for (struct client *c = sv->clients; c; c = next) {
        next = c->next;
        if (c->dead)
            continue;
        if (c->congested && now - c->congested_since >= CONGESTED_DROP_MS) {
            char why[96];
            snprintf(why, sizeof why, "not reading (%zu byte%s queued for %d s)",
                     dx_stream_queued(&c->st), cli_s(dx_stream_queued(&c->st)),
                     CONGESTED_DROP_MS / 1000);
            sv->dropped++;
            client_close(c, why);
            continue;
        }
        if (limit && now - c->st.last_activity >= limit) {
            char why[64];
            snprintf(why, sizeof why, "idle for %.3g s", (double)limit / 1000.0);
            client_close(c, why);
        }
    }
}

/* Refuse, at start-up, what a model or --threads cannot do. */
static int check_model(const struct options *o)
{
    static const char *const model_names[] = {"epoll/poll/io_uring", "iterative", "fork", "thread"};
    int shares_state = o->mode == MODE_STDIO || o->mode == MODE_BROKER || o->mode == MODE_CHAT;
    if ((o->model == MODEL_FORK || o->model == MODEL_THREAD) && o->mode != MODE_ECHO &&
        o->mode != MODE_EXEC) {
        cli_error("--model %s serves --echo or --exec only: %s clients share the server's stdio "
                  "or each other's bytes, which separate %s cannot; use --model epoll",
                  model_names[o->model], shares_state ? "these" : "its",
                  o->model == MODEL_FORK ? "processes" : "threads");
        return EXIT_USAGE;
    }
    if (o->threads > 1 && !o->keep_listening) {
        cli_error("--threads runs event loops for many clients at once: it needs -k (without -k "
                  "one client is served, by one loop)");
        return EXIT_USAGE;
    }
    if (o->threads > 1 && (shares_state || o->model != MODEL_LOOP)) {
        cli_error("--threads runs independent event loops: it serves --echo or --exec with the "
                  "default model only (clients of broker, chat and stdio modes share state)");
        return EXIT_USAGE;
    }
    return 0;
}

struct server *serve_open(const struct options *o, dx_loop *loop, int *exit_code)
{
    struct server *sv = calloc(1, sizeof *sv);
    if (!sv) {
        cli_error("out of memory");
        *exit_code = EXIT_IO;
        return NULL;
    }
    sv->o = o;
    sv->loop = loop;
    dx_timer_init(&sv->reaper, reap, sv);
    dx_timer_init(&sv->resume, on_resume, sv);
    dx_timer_init(&sv->sweep, on_sweep, sv);
    int code = 0;
    if ((o->mode == MODE_EXEC || o->model == MODEL_FORK) && (code = exec_init(loop)) < 0) {
        cli_error("child reaper: %s", dx_strerror(code));
        free(sv);
        *exit_code = EXIT_IO;
        return NULL;
    }
    code = listeners_open(&sv->l, o, loop, on_client, sv);
    if (code != 0) {
        free(sv);
        *exit_code = code;
        return NULL;
    }
    sv->l.nodelay = o->mode != MODE_EXEC; /* an exec child's socket is the child's business */
    int own_handshake = o->mode != MODE_EXEC && (o->model == MODEL_FORK || o->model == MODEL_THREAD);
    if (o->tls && !own_handshake && !(sv->tls = cli_tls_server_new(loop, o, on_tls_client, sv))) {
        cli_error("out of memory");
        listeners_close(&sv->l);
        free(sv);
        *exit_code = EXIT_IO;
        return NULL;
    }
    /* the server's stdio takes part in stdio, broker and chat modes */
    sv->stdio = !o->no_stdio && (o->mode == MODE_STDIO || o->mode == MODE_BROKER || o->mode == MODE_CHAT);
    if (sv->stdio) {
        cli_stdio_nonblock();
        dx_stream_init(loop, &sv->out, cli_stdout_fd(), STDOUT_QUEUE, NULL, stdout_on_event, sv);
        if (!o->recv_only) {
            dx_stream_init(loop, &sv->in, cli_stdin_fd(), 0, stdin_on_read, stdin_on_event, sv);
            sv->in_open = dx_stream_read_start(&sv->in) == 0;
            update_stdin(sv); /* no client yet */
        }
    }
    if (o->cluster && !(sv->cl = cluster_open(o, loop, on_remote, on_cluster_drained, sv, exit_code))) {
        cli_tls_server_free(sv->tls);
        listeners_close(&sv->l);
        free(sv);
        return NULL;
    }
    /* the sweep: idle clients, congested recipients, finished children */
    uint64_t period = o->idle_timeout_ms ? (uint64_t)o->idle_timeout_ms / 4 : SWEEP_MS;
    period = period < 50 ? 50 : period > SWEEP_MS ? SWEEP_MS : period;
    dx_timer_start(loop, &sv->sweep, period, period);
    pthread_mutex_lock(&servers_lock);
    sv->next_server = all_servers;
    all_servers = sv;
    pthread_mutex_unlock(&servers_lock);
    return sv;
}

int serve_listen_fd(const struct server *sv) { return sv->l.n > 0 ? sv->l.io[0].fd : -1; }

void serve_announce(const struct server *sv, const struct options *o) { listeners_announce(&sv->l, o); }

int serve_run(struct server *sv)
{
    listeners_watch(&sv->l, 1);
    int rc = dx_loop_run(sv->loop);
    if (rc < 0)
        cli_error("event loop: %s", dx_strerror(rc));
    /* without -k, the one client's command could not be run: not a success */
    int failed = !sv->o->keep_listening && exec_failed() > 0;
    return rc < 0 || sv->l.fatal || failed ? EXIT_IO : EXIT_OK;
}

static void serve_report(const struct options *o)
{
    unsigned long accepted = 0, refused = 0, denied = 0, dropped = 0, bad = 0;
    pthread_mutex_lock(&servers_lock);
    for (struct server *sv = all_servers; sv; sv = sv->next_server) {
        accepted += sv->accepted;
        refused += sv->refused;
        denied += atomic_load(&sv->l.denied);
        bad += atomic_load(&sv->l.bad_headers);
        dropped += sv->dropped;
    }
    pthread_mutex_unlock(&servers_lock);
    char proxy[48] = "";
    if (o->accept_proxy)
        snprintf(proxy, sizeof proxy, ", %lu (PROXY header)", bad);
    cli_info(o, "served %lu client%s; refused %lu (limit), %lu (access list)%s; dropped %lu slow",
             accepted, cli_s(accepted), refused, denied, proxy, dropped);
}

void serve_end(const struct options *o)
{
    serve_report(o);
    if (o->mode == MODE_EXEC || o->model == MODEL_FORK)
        exec_stop_children(2000); /* every way out: no orphans left behind */
}

void serve_close(struct server *sv)
{
    dx_loop *loop = sv->loop;
    pthread_mutex_lock(&servers_lock);
    for (struct server **p = &all_servers; *p; p = &(*p)->next_server) {
        if (*p == sv) {
            *p = sv->next_server;
            break;
        }
    }
    pthread_mutex_unlock(&servers_lock);
    exec_detach(loop);
    cluster_close(sv->cl);
    sv->cl = NULL;
    for (struct client *c = sv->clients; c; c = c->next)
        client_close(c, NULL);
    cli_tls_server_free(sv->tls);
    sv->tls = NULL;
    exec_tls_close_all(&sv->exec_tls_list);
    reap(loop, &sv->reaper);
    dx_timer_stop(loop, &sv->reaper);
    dx_timer_stop(loop, &sv->resume);
    free(sv->crlf_buf);
    free(sv->stdin_in.line);
    free(sv->stdin_in.rest);
    dx_timer_stop(loop, &sv->sweep);
    if (sv->in_open)
        dx_stream_close(&sv->in);
    if (sv->stdio)
        dx_stream_close(&sv->out);
    listeners_close(&sv->l);
    free(sv);
}

int cli_serve(const struct options *o, dx_loop *loop)
{
    int code = check_model(o);
    if (code != 0)
        return code;
    if (o->threads > 1)
        return cli_serve_threads(o, loop);
    struct server *sv = serve_open(o, loop, &code);
    if (!sv)
        return code;
    code = serve_run(sv);
    serve_end(o);
    serve_close(sv);
    return code;
}
