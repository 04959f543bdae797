/* relay.c: `duplex relay LISTEN TARGET...`: port forwarding. Each accepted
 * client gets its own connection to a TARGET (relay_targets.c picks which;
 * one that refuses or times out is skipped for the next) and two pumps, one
 * per direction; end of input is passed on as a half-close in each
 * direction, and the pair is closed when both directions have ended or one
 * has failed. When no target takes it, that client only is closed: the
 * relay goes on. */
#define _GNU_SOURCE
#include "cli.h"
#include "os.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct relay {
    const struct options *o;
    dx_loop *loop;
    struct listeners l;
    struct relay_targets targets;
    struct conn *conns;     /* live connections */
    struct conn *graveyard; /* finished, freed outside callbacks */
    dx_timer reaper, sweep, progress_timer;
    struct progress progress;
    uint64_t done_up, done_down; /* bytes of finished connections */
    unsigned long nconns, accepted, refused, failed; /* denied: l.denied */
    int last_error;         /* of the last failed connection, for the exit status */
    int stop_when_idle;     /* without -k: after the first connection */
    struct cli_tls_server *tls; /* --ssl: clients speak TLS to us (tls.c) */
    int serial_fd;          /* --serial: the device, else -1 */
    struct conn *serial_user; /* --serial: the one client on it */
};

struct conn {
    struct relay *r;
    struct conn *prev, *next;
    char name[DX_ADDR_STRLEN];
    int client_fd, target_fd;
    int tidx;               /* index in r->targets: the one tried or taken, -1: none yet */
    unsigned char order[MAX_TARGETS]; /* the targets to try, in turn */
    int norder, tried;
    dx_connector connector;
    int connecting;
    dx_timer retry;         /* the next target, tried from the loop */
    struct cli_tls_conn *tls; /* --ssl-target: the handshake with TARGET, while it runs */
    dx_tls *client_tls, *target_tls; /* --ssl, --ssl-target: the pumps read and write through them */
    dx_addr peer, local;    /* the client, and the address it reached (--send-proxy) */
    dx_endpoint client, target;
    dx_pump up, down;       /* client -> target, target -> client */
    int pumps_running;
    uint64_t started;
    int error;              /* first error, for the report */
    const char *error_where;
};

static void conn_list_remove(struct conn *c)
{
    struct relay *r = c->r;
    if (c->prev)
        c->prev->next = c->next;
    else
        r->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
}

static void reap(dx_loop *loop, dx_timer *t)
{
    (void)loop;
    struct relay *r = t->data;
    while (r->graveyard) {
        struct conn *c = r->graveyard;
        r->graveyard = c->next;
        free(c);
    }
    if (r->stop_when_idle && r->nconns == 0 && cli_tls_server_live(r->tls) == 0)
        dx_loop_stop(r->loop);
}

void cli_json_string(FILE *f, const char *s)
{
    fputc('"', f);
    for (; *s; s++) {
        if (*s == '"' || *s == '\\')
            fprintf(f, "\\%c", *s);
        else if ((unsigned char)*s < 0x20)
            fprintf(f, "\\u%04x", *s);
        else
            fputc(*s, f);
    }
    fputc('"', f);
}

static const char *target_name(const struct conn *c)
{
    /* between two targets: the one that failed last */
    return c->r->targets.t[c->tidx >= 0 ? c->tidx : c->order[c->tried > 0 ? c->tried - 1 : 0]].name;
}

static void report(struct conn *c)
{
    struct relay *r = c->r;
    uint64_t ms = dx_loop_now(r->loop) - c->started;
    const char *err = c->error ? dx_strerror(c->error) : NULL;
    /* a TLS failure: the reason of the side that failed */
    dx_tls *side = c->error_where && strcmp(c->error_where, "client") == 0 ? c->client_tls
                   : c->error_where && strcmp(c->error_where, "target") == 0 ? c->target_tls : NULL;
    if (side && (c->error == DX_ETLS || c->error == DX_ETLSVERIFY || c->error == DX_ETLSTRUNC) &&
        dx_tls_reason(side)[0])
        err = dx_tls_reason(side);
    if (c->error)
        cli_error("%s -> %s: %s%s%s", c->name, target_name(c), c->error_where ? c->error_where : "",
                  c->error_where ? ": " : "", err);
    cli_info(r->o, "%s -> %s: sent %llu byte%s, received %llu byte%s in %.3f s", c->name,
             target_name(c), (unsigned long long)c->up.bytes_out, cli_s(c->up.bytes_out),
             (unsigned long long)c->down.bytes_out, cli_s(c->down.bytes_out), (double)ms / 1000.0);
    if (r->o->stats_json) {
        printf("{\"client\":");
        cli_json_string(stdout, c->name);
        printf(",\"target\":");
        cli_json_string(stdout, target_name(c));
        printf(",\"bytes_up\":%llu,\"bytes_down\":%llu,\"duration_ms\":%llu,\"error\":",
               (unsigned long long)c->up.bytes_out, (unsigned long long)c->down.bytes_out,
               (unsigned long long)ms);
        if (err)
            cli_json_string(stdout, err);
        else
            printf("null");
        printf("}\n");
        fflush(stdout);
    }
}

static void conn_close(struct conn *c)
{
    struct relay *r = c->r;
    if (c->connecting)
        dx_connect_cancel(&c->connector);
    dx_timer_stop(r->loop, &c->retry);
    if (c->tls) {
        cli_tls_conn_cancel(c->tls);
        c->tls = NULL;
    }
    if (c->pumps_running) {
        dx_pump_stop(&c->up);
        dx_pump_stop(&c->down);
    }
    report(c);
    if (c->tidx >= 0)
        r->targets.t[c->tidx].active--;
    if (c->error)
        r->last_error = c->error_where && (strcmp(c->error_where, "connect") == 0 ||
                                           strcmp(c->error_where, "tls handshake") == 0)
                            ? c->error : -EIO;
    r->done_up += c->up.bytes_out;
    r->done_down += c->down.bytes_out;
    /* close_notify if the pumps' half-close did not send it (best effort) */
    if (c->target_tls) {
        cli_tls_goodbye(c->target_tls);
        dx_tls_free(c->target_tls);
    }
    if (c->client_tls) {
        cli_tls_goodbye(c->client_tls);
        dx_tls_free(c->client_tls);
    }
    if (c->target_fd >= 0)
        dx__fd_close(c->target_fd);
    dx__fd_close(c->client_fd);
    if (r->serial_user == c)
        r->serial_user = NULL;
    conn_list_remove(c);
    r->nconns--;
    c->next = r->graveyard;
    r->graveyard = c;
    dx_timer_start(r->loop, &r->reaper, 0, 0);
}

static void on_pump_done(dx_pump *p, int error, int in_read)
{
    struct conn *c = p->data;
    dx_tls *from = p == &c->up ? c->client_tls : c->target_tls;
    if (error == 0 && from) /* the source's end: a close without close_notify is said (-v) */
        cli_tls_ended(c->r->o, from, p == &c->up ? c->name : target_name(c), 1);
    if (error < 0 && !c->error) {
        int from_client = (p == &c->up) == !!in_read;
        c->error = error;
        c->error_where = from_client ? "client" : "target";
        c->r->failed++;
    }
    /* a failed direction ends the pair, once what the gone peer sent first
     * is through; otherwise wait for the other one (--serial: a device
     * never ends its input: the client's end ends it) */
    if (cli_pump_drain_first(p, error, in_read, p == &c->up ? &c->down : &c->up))
        return;
    if (error < 0 || (c->up.done && c->down.done) || (c->r->serial_fd >= 0 && p == &c->up))
        conn_close(c);
}

static void start_pumps(struct conn *c);

/* --ssl-target: the handshake with TARGET is over (fd: its socket, tls
 * its TLS; or -1: failed, said already). */
static void on_target_tls(void *data, int fd, dx_tls *tls)
{
    struct conn *c = data;
    c->tls = NULL;
    if (fd < 0) {
        c->error = -EPROTO;
        c->error_where = "tls handshake";
        c->r->failed++;
        conn_close(c);
        return;
    }
    c->target_fd = fd;
    c->target_tls = tls;
    start_pumps(c);
}

/* --send-proxy: the PROXY header goes first on the new connection, before
 * any TLS. Its send buffer is empty, so the few bytes go in one send; a
 * short one fails the connection rather than send a partial header. */
static int send_proxy_header(struct conn *c, int fd)
{
    unsigned char hdr[CLI_PP_V1_MAX + 1];
    size_t n = cli_pp_encode(hdr, sizeof hdr, c->r->o->send_proxy, &c->peer, &c->local);
    ssize_t sent = n ? dx__sock_send(fd, hdr, n, 0) : -1;
    if (sent == (ssize_t)n)
        return 0;
    return sent < 0 && n ? -errno : -EIO;
}

static void on_target(dx_connector *k, int result, const dx_addr *addr, int final)
{
    struct conn *c = k->data;
    struct relay *r = c->r;
    if (!final) {
        char text[DX_ADDR_STRLEN];
        cli_info(r->o, "%s: connect %s: %s", c->name, dx_addr_format(addr, text, sizeof text),
                 dx_strerror(result));
        return;
    }
    c->connecting = 0;
    if (result < 0 && k->sockopt_failed >= 0) {
        char text[DX_ADDR_STRLEN], where[DX_ADDR_STRLEN + 16];
        snprintf(where, sizeof where, "connect %s", dx_addr_format(addr, text, sizeof text));
        cli_sockopt_error(r->o, k->sockopt_failed, where, result);
    }
    if (result < 0 && !k->established) {
        relay_target_failed(&r->targets, c->tidx, dx_loop_now(r->loop), result);
        if (c->tried < c->norder) {
            /* failover: the client waits for the next target; the
             * connector is started again from the loop, not from inside
             * its own callback */
            cli_info(r->o, "%s: %s: %s, trying %s", c->name, target_name(c), dx_strerror(result),
                     r->targets.t[c->order[c->tried]].name);
            r->targets.t[c->tidx].active--;
            c->tidx = -1;
            dx_timer_start(r->loop, &c->retry, 0, 0);
            return;
        }
    }
    if (result < 0) {
        c->error = result;
        c->error_where = k->established ? "target" : "connect"; /* reset once connected: exit 1 */
        r->failed++;
        conn_close(c);
        return;
    }
    relay_target_ok(&r->targets, c->tidx, c->tried > 1);
    cli_info(r->o, "%s: connected to %s", c->name, target_name(c));
    if (addr->ss.ss_family != AF_UNIX)
        cli_default_nodelay(r->o, result);
    cli_show_opts(r->o, result, "connected");
    int rc = r->o->send_proxy ? send_proxy_header(c, result) : 0;
    if (rc < 0) {
        c->target_fd = result;
        c->error = rc;
        c->error_where = "send-proxy";
        r->failed++;
        conn_close(c);
        return;
    }
    if (r->o->tls_target) {
        /* TLS to TARGET first; the pumps then read and write through it */
        c->tls = cli_tls_server_connect(r->tls, result, target_name(c), on_target_tls, c);
        return;
    }
    c->target_fd = result;
    start_pumps(c);
}

/* DUPLEX_NO_SPLICE=1: the buffered copy instead of splice(2), to compare
 * the two (tests, benchmarks). */
static int pump_flags(void)
{
    const char *no = getenv("DUPLEX_NO_SPLICE");
    return DX_PUMP_SHUTDOWN | (no && *no && strcmp(no, "0") != 0 ? 0 : DX_PUMP_SPLICE);
}

static void start_pumps(struct conn *c)
{
    struct relay *r = c->r;
    dx_endpoint_init(&c->client, c->client_fd);
    dx_endpoint_init(&c->target, c->target_fd);
    if (c->client_tls) /* no splice through TLS: the pumps copy through OpenSSL */
        dx_endpoint_set_tls(&c->client, c->client_tls);
    if (c->target_tls)
        dx_endpoint_set_tls(&c->target, c->target_tls);
    size_t bufsize = r->o->bufsize ? r->o->bufsize : 256 * 1024;
    int rc = dx_pump_start(r->loop, &c->up, &c->client, &c->target, bufsize, pump_flags(),
                           on_pump_done, c);
    if (rc == 0) {
        rc = dx_pump_start(r->loop, &c->down, &c->target, &c->client, bufsize, pump_flags(),
                           on_pump_done, c);
        if (rc < 0)
            dx_pump_stop(&c->up);
    }
    if (rc < 0) {
        c->error = rc;
        conn_close(c);
        return;
    }
    dx_pump_set_rate(&c->up, r->o->rate_limit); /* --rate-limit (0: none) */
    dx_pump_set_rate(&c->down, r->o->rate_limit);
    c->pumps_running = 1;
}

/* Connect the client to the next target in its order. */
static void connect_next(struct conn *c)
{
    struct relay *r = c->r;
    const struct options *o = r->o;
    struct relay_target *t = &r->targets.t[c->order[c->tried]];
    c->tidx = c->order[c->tried++];
    t->active++;
    c->connecting = 1;
    int rc = dx_connect_async_opts(r->loop, &c->connector, t->addrs, t->naddrs, NULL,
                                   (uint64_t)o->timeout_ms, o->sockopts, o->nsockopts, on_target, c);
    if (rc < 0) {
        c->connecting = 0;
        c->error = rc;
        c->error_where = "connect";
        conn_close(c);
    }
}

static void on_retry(dx_loop *loop, dx_timer *t)
{
    (void)loop;
    connect_next(t->data);
}

/* --serial: the device takes one client at a time; a second is told so
 * and closed. The conn's target is its own descriptor of the device. */
static void serial_start(struct conn *c)
{
    struct relay *r = c->r;
    c->tidx = 0;
    r->targets.t[0].active++;
    if (r->serial_user) {
        static const char busy[] = "duplex: the serial device is in use by another client\r\n";
        (void)!dx__sock_send(c->client_fd, busy, sizeof busy - 1, MSG_NOSIGNAL);
        cli_error("%s: refused: %s is in use by %s", c->name, r->targets.t[0].name,
                  r->serial_user->name);
        r->refused++;
        conn_close(c);
        return;
    }
    c->target_fd = cli_serial_dup();
    if (c->target_fd < 0) {
        c->error = c->target_fd;
        c->error_where = "target";
        conn_close(c);
        return;
    }
    r->serial_user = c;
    cli_info(r->o, "%s: connected to %s", c->name, r->targets.t[0].name);
    start_pumps(c);
}

/* A client to relay: fd is its socket; with --ssl, tls its TLS (the
 * handshake done). */
static void admit(void *data, int fd, const dx_addr *peer, const dx_addr *local, dx_tls *tls)
{
    struct relay *r = data;
    struct listeners *l = &r->l;
    const struct options *o = r->o;
    char name[DX_ADDR_STRLEN];
    listeners_client_name(&r->l, peer, r->accepted + 1, name, sizeof name);
    if (o->max_conns && r->nconns >= (unsigned long)o->max_conns) {
        r->refused++;
        cli_info(o, "%s: refused: --max-conns %ld reached", name, o->max_conns);
        dx_tls_free(tls);
        dx__fd_close(fd);
        return;
    }
    struct conn *c = calloc(1, sizeof *c);
    if (!c) {
        cli_error("%s: out of memory, closing", name);
        dx_tls_free(tls);
        dx__fd_close(fd);
        return;
    }
    r->accepted++;
    if (!o->keep_listening && !r->stop_when_idle) {
        listeners_close(l);
        r->stop_when_idle = 1;
    }
    c->r = r;
    c->client_fd = fd;
    c->client_tls = tls;
    c->target_fd = -1;
    c->started = dx_loop_now(r->loop);
    c->peer = *peer;
    if (local)
        c->local = *local;
    else if (!r->o->send_proxy || dx_sock_local(fd, &c->local) < 0) /* only the header needs it */
        c->local.ss.ss_family = AF_UNSPEC; /* the header then says UNKNOWN */
    memcpy(c->name, name, sizeof name);
    c->next = r->conns;
    if (c->next)
        c->next->prev = c;
    r->conns = c;
    r->nconns++;
    c->tidx = -1;
    dx_timer_init(&c->retry, on_retry, c);
    if (r->serial_fd >= 0) {
        serial_start(c);
        return;
    }
    c->norder = relay_targets_order(&r->targets, c->started, c->order);
    cli_info(o, "%s: connected, connecting to %s", name, r->targets.t[c->order[0]].name);
    connect_next(c);
}

/* A client the access list allows (listeners.c has asked it); local: the
 * address its PROXY header says it reached, which --send-proxy passes on. */
static void on_client(struct listeners *l, int fd, const dx_addr *peer, const dx_addr *local)
{
    struct relay *r = l->data;
    const struct options *o = r->o;
    char name[DX_ADDR_STRLEN];
    listeners_client_name(&r->l, peer, r->accepted + 1, name, sizeof name);
    if (!o->tls) {
        admit(r, fd, peer, local, NULL);
        return;
    }
    if (listeners_tls_accept(l, r->tls, fd, peer, local, name))
        r->stop_when_idle = 1;
}

static void on_sweep(dx_loop *loop, dx_timer *t)
{
    struct relay *r = t->data;
    uint64_t now = dx_loop_now(loop), limit = (uint64_t)r->o->idle_timeout_ms;
    struct conn *next;
    for (struct conn *c = r->conns; c; c = next) {
        next = c->next;
        if (!c->pumps_running)
            continue;
        uint64_t last = cli_pumps_last_activity(&c->up, &c->down);
        if (now - last >= limit) {
            cli_info(r->o, "%s: idle for %.3g s, closing", c->name, (double)limit / 1000.0);
            conn_close(c);
        }
    }
}

static void relay_totals(struct relay *r, uint64_t *up, uint64_t *down)
{
    *up = r->done_up;
    *down = r->done_down;
    for (struct conn *c = r->conns; c; c = c->next) {
        if (c->pumps_running) {
            *up += c->up.bytes_out;
            *down += c->down.bytes_out;
        }
    }
}

static void on_progress(dx_loop *loop, dx_timer *t)
{
    struct relay *r = t->data;
    uint64_t up, down;
    relay_totals(r, &up, &down);
    progress_show(&r->progress, dx_loop_now(loop), up, down, 0);
}

/* --accept-proxy: ", N (PROXY header)" for the totals line. */
static const char *proxy_refused(const struct relay *r)
{
    static char text[48];
    snprintf(text, sizeof text, ", %lu (PROXY header)", (unsigned long)atomic_load(&r->l.bad_headers));
    return text;
}

int cli_relay(const struct options *o, dx_loop *loop)
{
    struct relay r;
    memset(&r, 0, sizeof r);
    r.o = o;
    r.loop = loop;
    dx_timer_init(&r.reaper, reap, &r);
    dx_timer_init(&r.sweep, on_sweep, &r);
    dx_timer_init(&r.progress_timer, on_progress, &r);
    r.serial_fd = -1;
    int code = relay_targets_open(&r.targets, o);
    if (code == 0 && o->serial && (r.serial_fd = cli_serial_open(o, o->target_unix)) < 0) {
        code = -r.serial_fd;
        r.serial_fd = -1;
    }
    if (code == 0)
        code = listeners_open(&r.l, o, loop, on_client, &r);
    if (code != 0) {
        relay_targets_close(&r.targets);
        cli_serial_close();
        return code;
    }
    r.l.nodelay = 1; /* small writes pass at once, both ways (the target's too) */
    if ((o->tls || o->tls_target) && !(r.tls = cli_tls_server_new(loop, o, admit, &r))) {
        cli_error("out of memory");
        listeners_close(&r.l);
        relay_targets_close(&r.targets);
        return EXIT_IO;
    }
    if (o->idle_timeout_ms) {
        uint64_t period = (uint64_t)o->idle_timeout_ms / 4;
        period = period < 50 ? 50 : period > 1000 ? 1000 : period;
        dx_timer_start(loop, &r.sweep, period, period);
    }
    if (progress_enabled(o)) {
        progress_init(&r.progress, dx_loop_now(loop), -1);
        dx_timer_start(loop, &r.progress_timer, 500, 500);
    }
    listeners_watch(&r.l, 1);
    int rc = dx_loop_run(loop);
    if (rc < 0)
        cli_error("event loop: %s", dx_strerror(rc));
    cli_info(o, "relayed %lu connection%s; %lu failed; refused %lu (limit), %lu (access list)%s",
             r.accepted, cli_s(r.accepted), r.failed, r.refused, (unsigned long)atomic_load(&r.l.denied),
             o->accept_proxy ? proxy_refused(&r) : "");
    while (r.conns)
        conn_close(r.conns);
    cli_tls_server_free(r.tls);
    r.tls = NULL;
    if (progress_enabled(o)) {
        uint64_t up, down;
        relay_totals(&r, &up, &down);
        dx_loop_update_time(loop);
        progress_show(&r.progress, dx_loop_now(loop), up, down, 1);
    }
    dx_timer_stop(loop, &r.progress_timer);
    reap(loop, &r.reaper);
    dx_timer_stop(loop, &r.reaper);
    dx_timer_stop(loop, &r.sweep);
    listeners_close(&r.l);
    relay_targets_close(&r.targets);
    cli_serial_close();
    if (rc < 0 || r.l.fatal)
        return EXIT_IO;
    /* one connection (no -k): its outcome is the exit status (4 refused,
     * 5 timed out, 1 failed during the exchange) */
    if (!o->keep_listening && r.last_error)
        return cli_exit_code_for(r.last_error, r.last_error != -EIO);
    return EXIT_OK;
}
