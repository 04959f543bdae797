/* udp_probe.c: `duplex connect -z -u HOST PORT[-PORT]...`: UDP has no
 * handshake, so each port gets one probe datagram (a NUL byte, as ncat
 * sends) from a socket connected to it, and the answer decides:
 * - a datagram back: open;
 * - an ICMP port unreachable (ECONNREFUSED on the connected socket): closed;
 * - nothing within the wait (-w, else 1 s): open|filtered. Nothing proves
 *   such a port closed, and nc and ncat count it open (exit 0), so does
 *   duplex; -v tells the three apart.
 * Ports are probed PROBE_BATCH at a time on the event loop, each batch ending
 * as soon as every port in it has answered. */
#define _GNU_SOURCE
#include "cli.h"
#include "os.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PROBE_BATCH 64
#define PROBE_WAIT_MS 1000
#define IS_REFUSED(err) ((err) == -ECONNREFUSED || (DX_OS_WINDOWS && (err) == -ECONNRESET))

struct probe {
    dx_io io;
    int port, done;
    struct batch *b;
};

struct batch {
    dx_loop *loop;
    const struct options *o;
    struct probe p[PROBE_BATCH];
    int n, left;
    int any_open;
    dx_timer deadline;
};

static void probe_text(const struct batch *b, const struct probe *p, char *buf, size_t len)
{
    dx_addr a;
    if (dx_sock_peer(p->io.fd, &a) == 0)
        dx_addr_format(&a, buf, len);
    else
        snprintf(buf, len, "%s:%d", b->o->host, p->port);
}

static void finish(struct batch *b, struct probe *p, const char *what)
{
    if (p->done)
        return;
    p->done = 1;
    b->left--;
    char text[DX_ADDR_STRLEN];
    probe_text(b, p, text, sizeof text);
    cli_info(b->o, "%s %s", text, what);
    dx_io_stop(b->loop, &p->io);
    if (b->left == 0)
        dx_loop_stop(b->loop);
}

static void on_answer(dx_loop *loop, dx_io *io, int events)
{
    (void)loop;
    (void)events;
    struct probe *p = io->data;
    struct batch *b = p->b;
    char buf[64];
    dx_addr from;
    ssize_t n = dx_dgram_recv(io->fd, buf, sizeof buf, &from, NULL);
    if (n == -EAGAIN)
        return;
    if (n >= 0) {
        b->any_open = 1;
        finish(b, p, "open (udp: a datagram came back)");
    } else if (IS_REFUSED((int)n)) {
        finish(b, p, "closed: Connection refused (udp: ICMP port unreachable)");
    } else {
        char why[128];
        snprintf(why, sizeof why, "closed: %s", dx_strerror((int)n));
        finish(b, p, why);
    }
}

static void on_deadline(dx_loop *loop, dx_timer *t)
{
    (void)t;
    dx_loop_stop(loop);
}

/* The first address of host (port 0), and the -s/-p source of its family. */
static int probe_target(const struct options *o, dx_addr *target, dx_addr *source, int *has_source)
{
    dx_addr *list;
    int flags = DX_RESOLVE_DGRAM | (o->numeric ? DX_RESOLVE_NUMERIC : 0);
    int n = dx_resolve(o->host, "0", o->family, flags, &list);
    if (n < 0) {
        cli_error("resolve %s: %s", o->host, dx_strerror(n));
        return cli_exit_code_for(n, 1);
    }
    *target = list[0];
    free(list);
    *has_source = 0;
    if (o->source_addr || o->source_port) {
        const char *host = o->source_addr ? o->source_addr
                                          : target->ss.ss_family == AF_INET6 ? "::" : "0.0.0.0";
        n = dx_resolve(host, o->source_port ? o->source_port : "0", target->ss.ss_family,
                       DX_RESOLVE_PASSIVE | flags, &list);
        if (n < 0) {
            cli_error("-s %s: %s", host, dx_strerror(n));
            return cli_exit_code_for(n, 1);
        }
        *source = list[0];
        free(list);
        *has_source = 1;
    }
    return 0;
}

/* Probe ports [first..last] of the list, at most `batch` at once. */
static int run_batch(struct batch *b, const dx_addr *target, const dx_addr *source, int *ports,
                     int count)
{
    b->n = b->left = 0;
    for (int i = 0; i < count; i++) {
        dx_addr a = *target;
        dx_addr_set_port(&a, ports[i]);
        int fd = dx_dgram_connect(&a, source);
        char text[DX_ADDR_STRLEN];
        dx_addr_format(&a, text, sizeof text);
        if (fd < 0) {
            cli_info(b->o, "%s closed: %s", text, dx_strerror(fd));
            if (fd == -EADDRINUSE || fd == -EADDRNOTAVAIL || fd == -EMFILE || fd == -ENFILE) {
                cli_error("udp probe from the source address: %s", dx_strerror(fd));
                return EXIT_CONNECT;
            }
            continue;
        }
        struct probe *p = &b->p[b->n++];
        memset(p, 0, sizeof *p);
        p->port = ports[i];
        p->b = b;
        dx_io_init(&p->io, fd, on_answer, p);
        b->left++;
        ssize_t s = dx_dgram_send(fd, "", 1, NULL); /* ncat's probe: one NUL byte */
        if (s < 0 && s != -EAGAIN) {
            if (IS_REFUSED((int)s)) {
                finish(b, p, "closed: Connection refused (udp: ICMP port unreachable)");
            } else {
                char why[128];
                snprintf(why, sizeof why, "closed: %s", dx_strerror((int)s));
                finish(b, p, why);
            }
            continue;
        }
        dx_io_set(b->loop, &p->io, DX_READ);
    }
    if (b->left > 0) {
        uint64_t wait = b->o->timeout_ms > 0 ? (uint64_t)b->o->timeout_ms : PROBE_WAIT_MS;
        dx_timer_start(b->loop, &b->deadline, wait, 0);
        int rc = dx_loop_run(b->loop);
        dx_timer_stop(b->loop, &b->deadline);
        if (rc < 0)
            cli_error("event loop: %s", dx_strerror(rc));
    }
    char what[96];
    snprintf(what, sizeof what, "open|filtered (udp: no reply and no ICMP port unreachable "
             "within %.3g s)", (double)(b->o->timeout_ms > 0 ? b->o->timeout_ms : PROBE_WAIT_MS) / 1000.0);
    for (int i = 0; i < b->n; i++) {
        struct probe *p = &b->p[i];
        if (!p->done && !cli_stop_signal()) {
            /* an ICMP error not reported as an event (wine's WSAPoll): the
             * socket's pending error; SO_ERROR holds the system's code */
            int err = 0;
            dx__socklen len = sizeof err;
            if (dx__sock_getsockopt(p->io.fd, SOL_SOCKET, SO_ERROR, &err, &len) == 0 && err &&
                IS_REFUSED(-dx__os_errno(err))) {
                finish(b, p, "closed: Connection refused (udp: ICMP port unreachable)");
            } else {
                b->any_open = 1; /* as nc and ncat: no refusal counts as open */
                finish(b, p, what);
            }
        }
        dx_io_stop(b->loop, &p->io);
        dx__fd_close(p->io.fd);
    }
    return 0;
}

int cli_udp_probe(const struct options *o, dx_loop *loop)
{
    dx_addr target, source;
    int has_source;
    int code = probe_target(o, &target, &source, &has_source);
    if (code)
        return code;
    struct batch *b = calloc(1, sizeof *b);
    if (!b) {
        cli_error("out of memory");
        return EXIT_IO;
    }
    b->loop = loop;
    b->o = o;
    dx_timer_init(&b->deadline, on_deadline, b);
    /* -p: one source port, so one socket at a time */
    int batch = has_source && o->source_port && dx_parse_port(o->source_port) != 0 ? 1 : PROBE_BATCH;
    int ports[PROBE_BATCH], nports = 0;
    for (int i = 0; i < o->nport_args && !code && !cli_stop_signal(); i++) {
        int first, last;
        dx_parse_port_range(o->port_args[i], &first, &last);
        for (int port = first; port <= last && !code && !cli_stop_signal(); port++) {
            ports[nports++] = port;
            if (nports == batch) {
                code = run_batch(b, &target, has_source ? &source : NULL, ports, nports);
                nports = 0;
            }
        }
    }
    if (nports && !code && !cli_stop_signal())
        code = run_batch(b, &target, has_source ? &source : NULL, ports, nports);
    int any = b->any_open;
    free(b);
    if (code)
        return code;
    return any ? EXIT_OK : EXIT_CONNECT;
}
