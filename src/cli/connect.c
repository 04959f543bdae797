/* connect.c: `duplex connect`: resolve, try every address in turn with the
 * -w timeout, then run a stdio session; and -z, which only probes ports.
 * With -x the connection goes to the proxy, and proxy.c asks it for the
 * target before the session (or the probe's verdict). With --ssl, tls.c runs
 * the handshake and the session reads and writes through its TLS. */
#define _GNU_SOURCE
#include "cli.h"
#include "os.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct attempt {
    const struct options *o;
    int quiet;        /* -z: failures are results, not errors */
    const char *label;/* "connect", or "connect to proxy" */
    int fd;           /* connected fd, or the last error */
    dx_addr addr;     /* the address that answered (or failed last) */
    int established;  /* it took the connection (then reset it, if fd < 0) */
    const dx_addr *source; /* -s/-p: the address bound first, or NULL */
};

static void on_connect(dx_connector *c, int result, const dx_addr *addr, int final)
{
    struct attempt *a = c->data;
    char text[DX_ADDR_STRLEN];
    if (result < 0 && c->bind_failed && a->source) {
        /* the source address (-s/-p) is at fault, not the target: say so, even with -z */
        if (final || !a->quiet)
            cli_error("bind %s: %s", cli_local_text(a->source, text, sizeof text),
                      dx_strerror(result));
    } else if (result < 0 && c->sockopt_failed >= 0) {
        /* a refused -O option is a configuration error, even with -z */
        char where[DX_ADDR_STRLEN + 16];
        snprintf(where, sizeof where, "connect %s", dx_addr_format(addr, text, sizeof text));
        cli_sockopt_error(a->o, c->sockopt_failed, where, result);
    } else if (result < 0 && c->established && !a->quiet) {
        /* connected, then reset at once: the exchange failed (exit 1) */
        cli_error("receive from %s: %s", dx_addr_format(addr, text, sizeof text), dx_strerror(result));
    } else if (result < 0 && !a->quiet)
        cli_error("%s %s: %s", a->label ? a->label : "connect", dx_addr_format(addr, text, sizeof text),
                  dx_strerror(result));
    if (final) {
        a->fd = result;
        a->addr = *addr;
        a->established = c->established;
        dx_loop_stop(c->loop); /* other watchers (the signal pipe) stay */
    }
}

/* Connect to one of addrs; returns the fd or a negative code (reported). */
static int connect_any(dx_loop *loop, struct attempt *a, const dx_addr *addrs, int n,
                       const dx_addr *source)
{
    dx_connector c;
    a->fd = DX_ENOADDR;
    a->established = 0;
    a->source = source;
    int rc = dx_connect_async_opts(loop, &c, addrs, n, source, (uint64_t)a->o->timeout_ms,
                                   a->o->sockopts, a->o->nsockopts, on_connect, a);
    if (rc < 0)
        return rc;
    rc = dx_loop_run(loop);
    if (rc < 0 || cli_stop_signal()) {
        dx_connect_cancel(&c);
        return rc < 0 ? rc : -EINTR;
    }
    return a->fd;
}

static int resolve_or_report(const struct options *o, const char *host, const char *port,
                             int passive, dx_addr **out)
{
    int flags = (o->numeric ? DX_RESOLVE_NUMERIC : 0) | (passive ? DX_RESOLVE_PASSIVE : 0);
    int n = dx_resolve(host, port, o->family, flags, out);
    if (n < 0)
        cli_error("resolve %s: %s", host ? host : "(any)", dx_strerror(n));
    return n;
}

/* The source address for -s/-p, of the same family as the target. */
static int pick_source(const struct options *o, int family, dx_addr *source)
{
    dx_addr *list;
    const char *host = o->source_addr;
    if (!host)
        host = family == AF_INET6 ? "::" : "0.0.0.0";
    int n = resolve_or_report(o, host, o->source_port ? o->source_port : "0", 1, &list);
    if (n < 0)
        return n;
    for (int i = 0; i < n; i++) {
        if (list[i].ss.ss_family == family) {
            *source = list[i];
            free(list);
            return 0;
        }
    }
    free(list);
    return DX_ENOADDR;
}

/* Where to connect for one port: the addresses to try (malloc'd) and the
 * source to bind (-s/-p), keeping only targets of the source's family.
 * Returns the number of addresses, or an exit code negated (reported). */
static int targets(const struct options *o, const char *host, const char *port, dx_addr **out,
                   dx_addr *source, int *has_source)
{
    dx_addr *addrs = NULL;
    int n;
    *has_source = 0;
    if (o->unix_path) {
        addrs = calloc(1, sizeof *addrs);
        n = addrs ? dx_addr_unix(addrs, o->unix_path) : -ENOMEM;
        if (n < 0) {
            cli_error("connect %s: %s", o->unix_path, dx_strerror(n));
            free(addrs);
            return -EXIT_USAGE;
        }
        *out = addrs;
        return 1;
    }
    n = resolve_or_report(o, host, port, 0, &addrs);
    if (n < 0)
        return -cli_exit_code_for(n, 1);
    if (o->source_addr || o->source_port) {
        int family = addrs[0].ss.ss_family;
        if (o->source_addr) {
            dx_addr *s;
            int k = resolve_or_report(o, o->source_addr, "0", 1, &s);
            if (k < 0) {
                free(addrs);
                return -cli_exit_code_for(k, 1);
            }
            family = s[0].ss.ss_family;
            free(s);
        }
        int m = 0;
        for (int i = 0; i < n; i++)
            if (addrs[i].ss.ss_family == family)
                addrs[m++] = addrs[i];
        if (m == 0 || pick_source(o, family, source) < 0) {
            cli_error("connect %s: no %s address to match the source address%s%s", host,
                      family == AF_INET6 ? "IPv6" : "IPv4", o->source_addr ? " " : "",
                      o->source_addr ? o->source_addr : "");
            free(addrs);
            return -EXIT_RESOLVE;
        }
        n = m;
        *has_source = 1;
    }
    *out = addrs;
    return n;
}

/* The exit code for a failed proxy handshake (documented in duplex.1):
 * our deadline 5, -n with a name 3, anything the proxy says or does 4. */
static int proxy_exit_code(int code)
{
    if (code == DX_ETIMEDOUT)
        return EXIT_TIMEOUT;
    if (code == DX_EBADADDR || code == DX_ENOADDR || dx_is_resolver_error(code))
        return EXIT_RESOLVE; /* also --proxy-dns local: the target name */
    return EXIT_CONNECT;
}

/* HOST:PORT as the proxy is asked for it ([V6]:PORT). */
static void target_text(const struct options *o, int port, char *buf, size_t len)
{
    if (strchr(o->host, ':') && o->host[0] != '[')
        snprintf(buf, len, "[%s]:%d", o->host, port);
    else
        snprintf(buf, len, "%s:%d", o->host, port);
}

/* The proxy's addresses, kept for a second connection (an HTTP proxy that
 * closes the first after its 407). */
struct proxy_conn {
    dx_loop *loop;
    struct attempt a;
    dx_addr *addrs, source;
    int n, has_source;
};

static int proxy_reconnect(void *arg)
{
    struct proxy_conn *pc = arg;
    return connect_any(pc->loop, &pc->a, pc->addrs, pc->n, pc->has_source ? &pc->source : NULL);
}

/* -x: connect to the proxy, then ask it for the target's port. Returns the
 * fd, or an exit code negated (reported, except for failures about the
 * target itself when quiet: they go to why for -z). */
static int via_proxy(dx_loop *loop, const struct options *o, int port, int quiet, char *proxy_text,
                     char *why, size_t whylen)
{
    struct proxy_conn pc = {.loop = loop, .a = {.o = o, .label = "connect to proxy"}};
    why[0] = '\0';
    pc.n = targets(o, o->proxy_host, o->proxy_port, &pc.addrs, &pc.source, &pc.has_source);
    if (pc.n < 0)
        return pc.n;
    int fd = proxy_reconnect(&pc);
    dx_addr_format(&pc.a.addr, proxy_text, DX_ADDR_STRLEN);
    if (fd < 0) {
        free(pc.addrs);
        return pc.a.established ? -EXIT_IO : -cli_exit_code_for(fd, 1);
    }
    int rc = cli_proxy_handshake_ex(o, &fd, port, proxy_reconnect, &pc, why, whylen);
    free(pc.addrs);
    if (rc == 0)
        return fd;
    if (fd >= 0)
        dx__fd_close(fd);
    int about_target = rc == DX_ETIMEDOUT || rc == -ECONNREFUSED || rc == -ENETUNREACH ||
                       rc == -EHOSTUNREACH || rc == -ECONNABORTED || rc == -ETIMEDOUT;
    if (!quiet || !about_target) {
        cli_error("proxy %s: %s", proxy_text, why);
        why[0] = '\0';
    }
    return -proxy_exit_code(rc);
}

static int probe_proxy(dx_loop *loop, const struct options *o)
{
    int any_open = 0;
    for (int i = 0; i < o->nport_args; i++) {
        int first = 0, last = 0;
        dx_parse_port_range(o->port_args[i], &first, &last);
        for (int port = first; port <= last; port++) {
            char proxy[DX_ADDR_STRLEN], why[512], target[300];
            target_text(o, port, target, sizeof target);
            int fd = via_proxy(loop, o, port, 1, proxy, why, sizeof why);
            if (fd < 0 && !why[0])
                return -fd; /* the proxy itself failed: no verdict on any port */
            if (fd >= 0) {
                any_open = 1;
                cli_info(o, "%s open (through proxy %s)", target, proxy);
                dx__fd_close(fd);
            } else {
                cli_info(o, "%s closed (through proxy %s): %s", target, proxy, why);
            }
        }
    }
    return any_open ? EXIT_OK : EXIT_CONNECT;
}

static int probe_ports(dx_loop *loop, const struct options *o)
{
    if (o->proxy_host)
        return probe_proxy(loop, o);
    int any_open = 0, failed = 0;
    struct attempt a = {.o = o, .quiet = 1};
    int nargs = o->unix_path ? 1 : o->nport_args;
    for (int i = 0; i < nargs && !failed; i++) {
        int first = 0, last = 0;
        if (!o->unix_path)
            dx_parse_port_range(o->port_args[i], &first, &last);
        for (int port = first; port <= last; port++) {
            dx_addr *addrs, source;
            int has_source;
            char ptext[16], text[DX_ADDR_STRLEN];
            snprintf(ptext, sizeof ptext, "%d", port);
            int n = targets(o, o->host, ptext, &addrs, &source, &has_source);
            if (n < 0) {
                failed = -n;
                break;
            }
            int fd = connect_any(loop, &a, addrs, n, has_source ? &source : NULL);
            dx_addr_format(&a.addr, text, sizeof text);
            if (fd >= 0 || a.established) { /* a reset after the handshake: open too */
                any_open = 1;
                cli_info(o, "%s open", text);
                if (fd >= 0)
                    dx__fd_close(fd);
            } else {
                cli_info(o, "%s closed: %s", text, dx_strerror(fd));
            }
            free(addrs);
        }
    }
    if (any_open)
        return EXIT_OK;
    return failed ? failed : EXIT_CONNECT;
}

/* --exec/--sh-exec in connect mode (as ncat): the program runs with the
 * connection as its stdin and stdout (TCP, or a connected datagram socket
 * with -u: each write() one datagram), and duplex waits for it. Exit 0 when
 * it ran (ncat 7.93 exits 0 even when it could not run it), 1 when it could
 * not be run; a stop signal ends it and gives 128+N (main). */
static void on_exec_check(dx_loop *loop, dx_timer *t)
{
    (void)t;
    if (exec_children() == 0)
        dx_loop_stop(loop);
}

int cli_exec_connected(dx_loop *loop, const struct options *o, int fd, const char *peer_text)
{
    dx_addr peer;
    int code = exec_init(loop);
    if (code < 0) {
        cli_error("child reaper: %s", dx_strerror(code));
        dx__fd_close(fd);
        return EXIT_IO;
    }
    if (dx_sock_peer(fd, &peer) < 0)
        memset(&peer, 0, sizeof peer);
    pid_t pid = exec_client(o, fd, &peer, NULL);
    dx__fd_close(fd); /* the child's now: its end is the connection's end */
    if (pid <= 0) {
        exec_detach(loop);
        return EXIT_IO;
    }
    cli_info(o, "%s: running process %ld", peer_text, (long)pid);
    dx_timer timer;
    dx_timer_init(&timer, on_exec_check, NULL);
    dx_timer_start(loop, &timer, 20, 20);
    int rc = dx_loop_run(loop);
    dx_timer_stop(loop, &timer);
    if (rc < 0)
        cli_error("event loop: %s", dx_strerror(rc));
    exec_reap();
    code = exec_failed() ? EXIT_IO : rc < 0 ? EXIT_IO : EXIT_OK;
    exec_stop_children(2000); /* a stop signal: no orphan left behind */
    exec_detach(loop);
    return code;
}

/* The connected socket's session: stdio, TLS, or a program (--exec). */
static int connected(dx_loop *loop, const struct options *o, int fd, const char *peer_text)
{
    if (o->mode == MODE_EXEC)
        return cli_exec_connected(loop, o, fd, peer_text);
    cli_stdio_nonblock();
    return o->tls ? cli_tls_session(loop, o, fd, peer_text) : cli_session(loop, o, fd, peer_text);
}

int cli_connect(const struct options *o, dx_loop *loop)
{
    if (o->zero_io)
        return probe_ports(loop, o);
    if (o->proxy_host) {
        char proxy[DX_ADDR_STRLEN], why[512], target[300];
        int port = dx_parse_port(o->port);
        target_text(o, port, target, sizeof target);
        int fd = via_proxy(loop, o, port, 0, proxy, why, sizeof why);
        if (fd < 0)
            return -fd;
        cli_info(o, "connected to %s through proxy %s (%s)", target, proxy,
                 cli_proxy_type_name(o->proxy_type));
        cli_show_opts(o, fd, "connected");
        return connected(loop, o, fd, target);
    }
    dx_addr *addrs, source;
    int has_source;
    int n = targets(o, o->host, o->port, &addrs, &source, &has_source);
    if (n < 0)
        return -n;

    struct attempt a = {.o = o};
    int fd = connect_any(loop, &a, addrs, n, has_source ? &source : NULL);
    free(addrs);
    if (fd < 0)
        return a.established ? EXIT_IO : cli_exit_code_for(fd, 1);
    char peer[DX_ADDR_STRLEN], local[DX_ADDR_STRLEN];
    dx_addr me;
    dx_addr_format(&a.addr, peer, sizeof peer);
    if (dx_sock_local(fd, &me) == 0)
        cli_info(o, "connected to %s from %s", peer, dx_addr_format(&me, local, sizeof local));
    cli_show_opts(o, fd, "connected");
    return connected(loop, o, fd, peer);
}
