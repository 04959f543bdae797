/* listeners.c: the listening sockets of `duplex listen`: bind every requested
 * address (dual-stack by default), report them, accept without ever letting a
 * transient error or descriptor exhaustion stop or spin the server, and admit
 * only the clients the access list allows: every path that takes clients
 * (one-client listen, -k and every server mode, --model, --threads, relay,
 * TLS or not) accepts here, so none can skip it; listen -u asks the same
 * listeners_admit() about each datagram's sender. With --accept-proxy each
 * client's PROXY header is read here first (bounded in time and size, not
 * a byte past it), and the client it names is the one admitted. */
#define _GNU_SOURCE
#include "cli.h"
#include "os.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#ifndef _WIN32
#include <fcntl.h>
#include <poll.h>
#endif

/* How long to stop accepting when descriptors run out: long enough not to
 * spin, short enough to pick up again soon after one is freed. */
#define EXHAUSTED_PAUSE_MS 100
/* Accepts per wake-up: a burst of connections is taken in one go, without
 * starving the clients already being served. */
#define ACCEPTS_PER_WAKEUP 64

static int take(struct listeners *l, int fd, const dx_addr *peer, const dx_addr *local);

static void on_resume(dx_loop *loop, dx_timer *t)
{
    (void)loop;
    struct listeners *l = t->data;
    if (l->inetd_pending) { /* --inetd: the one client, handed over from the loop */
        l->inetd_pending = 0;
        const dx_addr *local = l->inetd_local.ss.ss_family ? &l->inetd_local : NULL;
        if (!take(l, l->inetd_fd, &l->inetd_peer, local)) {
            l->fatal = 1; /* no other client will come */
            dx_loop_stop(loop);
        }
        return;
    }
    if (!l->paused)
        listeners_watch(l, 1);
}

/* "127.0.0.0/8" */
static const char *cidr_format(const dx_cidr *c, char *buf, size_t len)
{
    char host[INET6_ADDRSTRLEN];
    if (!inet_ntop(c->family, c->addr, host, sizeof host))
        snprintf(host, sizeof host, "?");
    snprintf(buf, len, "%s/%d", host, c->prefix);
    return buf;
}

int listeners_admit(const struct options *o, const dx_addr *peer, const char *name, int report)
{
    const dx_acl *acl = &o->acl;
    if (dx_acl_allows(acl, peer))
        return 1;
    if (report) {
        /* which rule: the first deny rule it matches, else no allow rule */
        char why[DX_ADDR_STRLEN + 32] = "matches no allow rule";
        for (size_t i = 0; i < acl->ndeny; i++) {
            if (dx_cidr_match(&acl->deny[i], peer)) {
                char rule[DX_ADDR_STRLEN];
                snprintf(why, sizeof why, "matches deny rule %s",
                         cidr_format(&acl->deny[i], rule, sizeof rule));
                break;
            }
        }
        cli_info(o, "%s: refused: not allowed by --allow/--deny (%s)", name, why);
    }
    return 0;
}

/* An access list matches IP addresses: a client without one (a Unix
 * socket the system handed over, an inetd socketpair) fails it, closed. */
static int admit_any(const struct options *o, const dx_addr *peer, const char *name)
{
    int family = peer->ss.ss_family;
    if (family == AF_INET || family == AF_INET6)
        return listeners_admit(o, peer, name, 1);
    if (o->acl.nallow || o->acl.ndeny) {
        cli_info(o, "%s: refused: --allow/--deny match IP addresses and this client has none", name);
        return 0;
    }
    return 1;
}

/* Every client, accepted or handed over (--inetd): the access list, then
 * the socket's options, then the owner. local: the address its PROXY header
 * says it reached, or NULL. 1 if handed to the owner, 0 if closed. */
static int take(struct listeners *l, int fd, const dx_addr *peer, const dx_addr *local)
{
    char text[DX_ADDR_STRLEN];
    if (peer->ss.ss_family == AF_UNIX)
        snprintf(text, sizeof text, "a client of %s", l->o->unix_path ? l->o->unix_path : "unix");
    else
        dx_addr_format(peer, text, sizeof text);
    if (!admit_any(l->o, peer, text)) {
        l->denied++;
        dx__fd_close(fd); /* like ncat: closed at once, nothing sent */
        return 0;
    }
    if (l->nodelay && peer->ss.ss_family != AF_UNIX)
        cli_default_nodelay(l->o, fd);
    if (l->o->nsockopts > 0 || l->o->show_opts) {
        /* mostly inherited from the listener; set again so that all hold */
        if (l->o->nsockopts > 0 && cli_apply_sockopts(l->o, fd, text) < 0) {
            dx__fd_close(fd);
            return 0;
        }
        cli_show_opts(l->o, fd, "accepted");
    }
    l->on_client(l, fd, peer, local);
    return 1;
}

/* ---- --accept-proxy: the header before the client ---- */

/* Headers being read at once; more clients are closed meanwhile. */
#define PP_MAX_PENDING 1024
/* How long a header may take without -w. */
#define PP_DEFAULT_TIMEOUT_MS 5000

struct pp_pending {
    struct listeners *l;
    struct pp_pending *prev, *next;
    int fd;
    dx_addr peer;         /* the socket's: the load balancer */
    dx_io io;
    dx_timer timer;
    size_t have;          /* header bytes taken from the socket */
    unsigned char buf[CLI_PP_MAX];
};

static const char *pp_name(const struct pp_pending *p, char *buf, size_t len)
{
    if (p->peer.ss.ss_family == AF_UNIX)
        snprintf(buf, len, "a client of %s", p->l->o->unix_path ? p->l->o->unix_path : "unix");
    else
        dx_addr_format(&p->peer, buf, len);
    return buf;
}

/* Forget p; its socket is closed unless keep_fd. */
static void pp_free(struct pp_pending *p, int keep_fd)
{
    struct listeners *l = p->l;
    dx_io_stop(l->loop, &p->io);
    dx_timer_stop(l->loop, &p->timer);
    if (p->prev)
        p->prev->next = p->next;
    else
        l->pending = p->next;
    if (p->next)
        p->next->prev = p->prev;
    l->npending--;
    if (!keep_fd)
        dx__fd_close(p->fd);
    free(p);
}

static void pp_refuse(struct pp_pending *p, const char *why)
{
    struct listeners *l = p->l;
    char name[DX_ADDR_STRLEN];
    cli_info(l->o, "%s: refused: %s", pp_name(p, name, sizeof name), why);
    l->bad_headers++;
    pp_free(p, 0);
}

static void pp_timeout(dx_loop *loop, dx_timer *t)
{
    (void)loop;
    pp_refuse(t->data, "no complete PROXY header in time");
}

/* One step of reading a PROXY header from fd: peek at what has come, parse
 * it after the *have bytes taken before (in buf, CLI_PP_MAX bytes), and take
 * from the socket only header bytes: the payload behind stays unread. 1 when
 * complete (*pp filled), 0 while more is to come, -1 to refuse (why said). */
static int pp_step(int fd, unsigned char *buf, size_t *have, struct cli_pp *pp, char *why,
                   size_t whylen)
{
    ssize_t n = dx__sock_recv(fd, buf + *have, CLI_PP_MAX - *have, MSG_PEEK);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
        return 0;
    if (n <= 0) {
        snprintf(why, whylen, "%s before a complete PROXY header",
                 n == 0 ? "closed" : dx_strerror(-errno));
        return -1;
    }
    int len = cli_pp_parse(buf, *have + (size_t)n, pp);
    if (len < 0) {
        snprintf(why, whylen, "%s", *have + (size_t)n >= CLI_PP_MAX ? "PROXY header too long"
                                                                    : "no valid PROXY header");
        return -1;
    }
    size_t take_n = len > 0 ? (size_t)len - *have : (size_t)n;
    if (dx__sock_recv(fd, buf + *have, take_n, 0) != (ssize_t)take_n) {
        snprintf(why, whylen, "the PROXY header could not be read again");
        return -1;
    }
    *have += take_n;
    return len > 0;
}

/* The client a complete header names (LOCAL, UNKNOWN: the socket's own
 * peer, sock_peer), said with -v; name: the connection's (the balancer).
 * *dst: the address the client reached as the header says (relay
 * --send-proxy passes it on, as haproxy does), else AF_UNSPEC. */
static dx_addr pp_client(const struct options *o, const struct cli_pp *pp, const dx_addr *sock_peer,
                         const char *name, dx_addr *dst)
{
    char client[DX_ADDR_STRLEN];
    memset(dst, 0, sizeof *dst);
    if (pp->local) {
        cli_info(o, "%s: PROXY v%d header without a client address: the connection's own "
                 "stands", name, pp->version);
        return *sock_peer;
    }
    cli_info(o, "%s: PROXY v%d header: client %s", name, pp->version,
             dx_addr_format(&pp->src, client, sizeof client));
    *dst = pp->dst;
    return pp->src;
}

static void pp_readable(dx_loop *loop, dx_io *io, int events)
{
    (void)loop, (void)events;
    struct pp_pending *p = io->data;
    struct cli_pp pp;
    char why[96];
    int rc = pp_step(p->fd, p->buf, &p->have, &pp, why, sizeof why);
    if (rc < 0)
        pp_refuse(p, why);
    if (rc <= 0)
        return;
    struct listeners *l = p->l;
    char lb[DX_ADDR_STRLEN];
    dx_addr dst, peer = pp_client(l->o, &pp, &p->peer, pp_name(p, lb, sizeof lb), &dst);
    int fd = p->fd;
    pp_free(p, 1);
    take(l, fd, &peer, dst.ss.ss_family ? &dst : NULL);
}

static void pp_start(struct listeners *l, int fd, const dx_addr *peer)
{
    struct pp_pending *p = l->npending < PP_MAX_PENDING ? malloc(sizeof *p) : NULL;
    if (!p) {
        char name[DX_ADDR_STRLEN];
        cli_info(l->o, "%s: refused: %s", dx_addr_format(peer, name, sizeof name),
                 l->npending < PP_MAX_PENDING ? "out of memory"
                                              : "too many PROXY headers being read");
        l->bad_headers++;
        dx__fd_close(fd);
        return;
    }
    p->l = l;
    p->fd = fd;
    p->peer = *peer;
    p->have = 0;
    p->prev = NULL;
    p->next = l->pending;
    if (p->next)
        p->next->prev = p;
    l->pending = p;
    l->npending++;
    dx_io_init(&p->io, fd, pp_readable, p);
    dx_timer_init(&p->timer, pp_timeout, p);
    int64_t ms = l->o->timeout_ms ? l->o->timeout_ms : PP_DEFAULT_TIMEOUT_MS;
    if (dx_io_set(l->loop, &p->io, DX_READ) < 0 || dx_timer_start(l->loop, &p->timer, (uint64_t)ms, 0) < 0)
        pp_refuse(p, "cannot wait for its PROXY header");
}

static void on_acceptable(dx_loop *loop, dx_io *io, int events)
{
    (void)events;
    struct listeners *l = io->data;
    for (int i = 0; i < ACCEPTS_PER_WAKEUP && !l->paused && l->watching; i++) {
        dx_addr peer;
        int fd = dx_accept(io->fd, &peer);
        if (fd >= 0) {
            if (l->o->accept_proxy)
                pp_start(l, fd, &peer); /* admitted once its header names the client */
            else
                take(l, fd, &peer, NULL);
            continue;
        }
        if (fd == -EAGAIN)
            return;
        if (dx_accept_error_is_exhaustion(fd)) {
            /* the queue stays readable: wait instead of spinning on accept() */
            l->exhausted++;
            cli_info(l->o, "accept: %s; pausing %d ms", dx_strerror(fd), EXHAUSTED_PAUSE_MS);
            listeners_watch(l, 0);
            dx_timer_start(loop, &l->resume, EXHAUSTED_PAUSE_MS, 0);
            return;
        }
        if (!dx_accept_error_is_transient(fd)) {
            cli_error("accept: %s", dx_strerror(fd));
            l->fatal = 1;
            dx_loop_stop(loop);
            return;
        }
    }
}

/* Why dx_listen() failed: a refused -O option, or the listen itself. */
static void listen_error(struct listeners *l, const dx_addr *addr, const dx_listen_opts *lo, int code)
{
    char text[DX_ADDR_STRLEN];
    if (l->o->unix_path)
        snprintf(text, sizeof text, "%s", l->o->unix_path);
    else
        dx_addr_format(addr, text, sizeof text);
    if (lo->sockopt_failed && *lo->sockopt_failed >= 0) {
        char where[DX_ADDR_STRLEN + 16];
        snprintf(where, sizeof where, "listen %s", text);
        cli_sockopt_error(l->o, *lo->sockopt_failed, where, code);
    } else {
        cli_error("listen %s: %s", text, dx_strerror(code));
    }
}

static void report_failed(void *ctx, const dx_addr *addr, const dx_listen_opts *lo, int code)
{
    listen_error(ctx, addr, lo, code);
}

static int keep(void *ctx, int fd)
{
    struct listeners *l = ctx;
    if (l->n == MAX_LISTENERS) {
        dx__fd_close(fd);
        return 0;
    }
    dx_io_init(&l->io[l->n++], fd, on_acceptable, l);
    return 0;
}

int cli_open_every(const struct options *o, dx_listen_opts lo, const struct cli_opener *how)
{
    int port = dx_parse_port(o->port);
    dx_addr a;
    if (!o->host) {
        dx_addr_ip(&a, o->family == AF_INET ? "0.0.0.0" : "::", port);
        lo.v6only = o->family == AF_INET6;
        int fd = how->open(&a, &lo);
        int option_refused = lo.sockopt_failed && *lo.sockopt_failed >= 0;
        if (fd < 0 && !option_refused && o->family == AF_UNSPEC &&
            (fd == -EAFNOSUPPORT || fd == -EADDRNOTAVAIL)) {
            dx_addr_ip(&a, "0.0.0.0", port);
            fd = how->open(&a, &lo);
        }
        if (fd < 0) {
            how->failed(how->ctx, &a, &lo, fd);
            return fd;
        }
        return how->keep(how->ctx, fd);
    }
    dx_addr *addrs;
    int flags = DX_RESOLVE_PASSIVE | how->resolve_flags | (o->numeric ? DX_RESOLVE_NUMERIC : 0);
    int n = dx_resolve(o->host, o->port, o->family, flags, &addrs);
    if (n < 0) {
        cli_error("resolve %s: %s", o->host, dx_strerror(n));
        return n;
    }
    int rc = 0;
    lo.v6only = 1; /* an explicit IPv6 address means IPv6 only */
    for (int i = 0; i < n && rc == 0; i++) {
        int fd = how->open(&addrs[i], &lo);
        if (fd < 0) {
            how->failed(how->ctx, &addrs[i], &lo, fd);
            rc = fd;
            break;
        }
        /* port 0: the other addresses take the port the first one got */
        dx_addr got;
        if (i == 0 && port == 0 && dx_sock_local(fd, &got) == 0)
            for (int j = 1; j < n; j++)
                dx_addr_set_port(&addrs[j], dx_addr_port(&got));
        rc = how->keep(how->ctx, fd);
    }
    free(addrs);
    return rc;
}

/* Socket activation: the system's listening sockets, fds 3.. */
static int keep_activated(struct listeners *l)
{
#ifdef _WIN32
    (void)l;
    return -ENOTSUP; /* cli_activation_init() never sets listen_fds there */
#else
    for (int i = 0; i < l->o->listen_fds; i++) {
        int fd = 3 + i, listening = 0, type = 0;
        socklen_t len = sizeof listening, tlen = sizeof type;
        if (getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, (void *)&listening, &len) < 0 ||
            getsockopt(fd, SOL_SOCKET, SO_TYPE, (void *)&type, &tlen) < 0 || !listening ||
            type != SOCK_STREAM) {
            cli_error("socket activation: descriptor %d is not a listening stream socket "
                      "(LISTEN_FDS; datagram sockets are not taken)", fd);
            return -EINVAL;
        }
        int rc = dx_set_nonblock(fd, 1);
        if (rc < 0) {
            cli_error("socket activation: descriptor %d: %s", fd, dx_strerror(rc));
            return rc;
        }
        keep(l, fd);
    }
    return 0;
#endif
}

#ifndef _WIN32
/* --inetd --accept-proxy: the header on stdin (the connection), read before
 * anything else runs, within -w (else PP_DEFAULT_TIMEOUT_MS); peer and name
 * become the client's. 0, or -1 after a -v line saying why it is refused. */
static int inetd_header(const struct options *o, dx_addr *peer, dx_addr *local, char *name,
                        size_t len)
{
    unsigned char buf[CLI_PP_MAX];
    size_t have = 0;
    struct cli_pp pp;
    char why[96];
    uint64_t deadline = cli_now_ms() + (uint64_t)(o->timeout_ms ? o->timeout_ms : PP_DEFAULT_TIMEOUT_MS);
    int rc = 0;
    while (rc == 0) {
        int w = cli_wait_fd(0, POLLIN, deadline);
        if (w < 0) {
            snprintf(why, sizeof why, "%s", w == DX_ETIMEDOUT ? "no complete PROXY header in time"
                                                             : dx_strerror(w));
            rc = -1;
            break;
        }
        rc = pp_step(0, buf, &have, &pp, why, sizeof why);
    }
    if (rc < 0) {
        cli_info(o, "%s: refused: %s", name, why);
        return -1;
    }
    *peer = pp_client(o, &pp, peer, name, local);
    dx_addr_format(peer, name, len);
    return 0;
}
#endif

int listeners_inetd_take(const struct options *o, int *fd, dx_addr *peer, dx_addr *local,
                         char *name, size_t len)
{
#ifdef _WIN32
    (void)o, (void)fd, (void)peer, (void)local, (void)name, (void)len;
    cli_error("--inetd is not available on %s", DX_OS_NAME); /* options.c refuses it first */
    return EXIT_USAGE;
#else
    memset(peer, 0, sizeof *peer);
    peer->len = sizeof peer->ss;
    if (getpeername(0, (struct sockaddr *)&peer->ss, &peer->len) < 0) {
        cli_error("--inetd: stdin is not a connected socket (%s): inetd, systemd Accept=yes or "
                  "socat EXEC: hand the connection over as stdin and stdout", strerror(errno));
        return EXIT_USAGE;
    }
    if (peer->ss.ss_family == AF_UNIX)
        snprintf(name, len, "stdin");
    else
        dx_addr_format(peer, name, len);
    memset(local, 0, sizeof *local); /* AF_UNSPEC: the socket's own */
    if (o->accept_proxy && inetd_header(o, peer, local, name, len) < 0)
        return EXIT_IO;
    if (!admit_any(o, peer, name))
        return EXIT_IO;
    /* a descriptor of our own; stdin and stdout must not keep the
     * connection open after we close it */
    int own = fcntl(0, F_DUPFD_CLOEXEC, 3);
    int null = own < 0 ? -1 : open("/dev/null", O_RDWR | O_CLOEXEC);
    if (own < 0 || null < 0 || dup2(null, 0) < 0 || dup2(null, 1) < 0) {
        cli_error("--inetd: %s", strerror(errno));
        return EXIT_IO;
    }
    close(null);
    int rc = dx_set_nonblock(own, 1);
    if (rc < 0) {
        cli_error("--inetd: %s", dx_strerror(rc));
        close(own);
        return EXIT_IO;
    }
    *fd = own;
    return 0;
#endif
}

static int open_all(struct listeners *l)
{
    const struct options *o = l->o;
    if (o->listen_fds)
        return keep_activated(l);
    int failed = -1;
    dx_listen_opts lo = {.backlog = o->backlog, .reuseport = o->reuseport,
                         .sockopts = o->sockopts, .nsockopts = o->nsockopts,
                         .sockopt_failed = &failed};
    struct cli_opener how = {.open = dx_listen, .failed = report_failed, .keep = keep, .ctx = l};
    if (o->unix_path) {
        dx_addr a;
        int rc = dx_addr_unix(&a, o->unix_path);
        if (rc == 0)
            rc = dx_unix_unlink_stale(o->unix_path);
        if (rc < 0) {
            cli_error("listen %s: %s", o->unix_path,
                      rc == -ENOTSOCK ? "exists and is not a socket" : dx_strerror(rc));
            return rc;
        }
        int fd = dx_listen(&a, &lo);
        if (fd < 0) {
            listen_error(l, &a, &lo, fd);
            return fd;
        }
        rc = keep(l, fd);
        if (o->unix_path[0] != '@') {
            l->unix_bound = 1; /* ours to remove, and only then */
            cli_remove_on_exit(o->unix_path);
        }
        return rc;
    }
    if (o->shared_listener) /* --threads on Windows: a copy of the first loop's socket */
        return keep(l, o->shared_listener - 1);
    return cli_open_every(o, lo, &how);
}

int listeners_open(struct listeners *l, const struct options *o, dx_loop *loop,
                   void (*on_client)(struct listeners *, int, const dx_addr *, const dx_addr *),
                   void *data)
{
    memset(l, 0, sizeof *l);
    l->o = o;
    l->loop = loop;
    l->on_client = on_client;
    l->data = data;
    dx_timer_init(&l->resume, on_resume, l);
    if (o->inetd) {
        char name[DX_ADDR_STRLEN];
        int code = listeners_inetd_take(o, &l->inetd_fd, &l->inetd_peer, &l->inetd_local, name,
                                        sizeof name);
        l->inetd_pending = code == 0;
        return code;
    }
    int rc = open_all(l);
    if (rc < 0) {
        listeners_close(l);
        if (rc == DX_ETOOLONG)
            return EXIT_USAGE;
        return cli_exit_code_for(rc, 0) == EXIT_RESOLVE ? EXIT_RESOLVE : EXIT_LISTEN;
    }
    if (!o->quiet)
        listeners_announce(l, o);
    return 0;
}

void listeners_announce(const struct listeners *l, const struct options *o)
{
    /* the system's sockets (activation): their addresses are the system's
     * to know; ADDR and PORT given here are not used */
    int always = o->verbose || (!o->listen_fds && (o->port_defaulted ||
                                                   (!o->unix_path && dx_parse_port(o->port) == 0)));
    for (int i = 0; i < l->n; i++) {
        dx_addr me;
        char text[DX_ADDR_STRLEN];
        const char *sd = o->listen_fds ? cli_activation_name(i) : NULL;
        if (always && o->listen_fds && dx_sock_local(l->io[i].fd, &me) == 0)
            cli_error("listening on %s (socket activation: descriptor %d%s%s)",
                      dx_addr_format(&me, text, sizeof text), l->io[i].fd, sd ? ", name " : "",
                      sd ? sd : "");
        else if (always && dx_sock_local(l->io[i].fd, &me) == 0)
            cli_error("listening on %s", dx_addr_format(&me, text, sizeof text));
        cli_show_opts(o, l->io[i].fd, "listening");
    }
    if (o->listen_fds)
        ; /* the system chose the backlog */
    else if (!o->unix_path && DX_OS_WINDOWS && !o->backlog)
        cli_info(o, "backlog SOMAXCONN (the system's maximum)"); /* Windows picks it, unsaid */
    else if (!o->unix_path && DX_OS_WINDOWS)
        cli_info(o, "backlog %d", o->backlog);
    else if (!o->unix_path)
        cli_info(o, "backlog %d (the kernel caps it at somaxconn = %d)",
                 o->backlog ? o->backlog : dx_somaxconn(), dx_somaxconn());
    fflush(stderr);
}

void listeners_watch(struct listeners *l, int on)
{
    l->watching = on;
    if (on && l->inetd_pending)
        dx_timer_start(l->loop, &l->resume, 0, 0);
    for (int i = 0; i < l->n; i++)
        dx_io_set(l->loop, &l->io[i], on ? DX_READ : 0);
}

void listeners_close(struct listeners *l)
{
    while (l->pending)
        pp_free(l->pending, 0);
    if (l->inetd_pending) {
        l->inetd_pending = 0;
        dx__fd_close(l->inetd_fd);
    }
    for (int i = 0; i < l->n; i++) {
        dx_io_stop(l->loop, &l->io[i]);
        dx__fd_close(l->io[i].fd);
    }
    l->n = 0;
    l->watching = 0;
    if (l->loop)
        dx_timer_stop(l->loop, &l->resume);
    if (l->unix_bound) {
        unlink(l->o->unix_path);
        cli_remove_on_exit(NULL);
        l->unix_bound = 0;
    }
}

/* A handshake ended after accepting stopped at the cap. */
static void resume_after_tls(void *data)
{
    struct listeners *l = data;
    l->paused = 0;
    if (l->n)
        listeners_watch(l, 1);
}

int listeners_tls_accept(struct listeners *l, struct cli_tls_server *ts, int fd,
                         const dx_addr *peer, const dx_addr *local, const char *name)
{
    int one_client = !l->o->keep_listening;
    if (one_client)
        listeners_close(l);
    cli_tls_server_accept(ts, fd, peer, local, name);
    if (l->n && cli_tls_server_full(ts, resume_after_tls, l)) {
        /* the next clients wait in the backlog until a handshake ends */
        cli_info(l->o, "%d TLS handshakes in progress: not accepting until one ends",
                 CLI_TLS_MAX_HANDSHAKES);
        l->paused = 1;
        listeners_watch(l, 0);
    }
    return one_client;
}

void listeners_client_name(const struct listeners *l, const dx_addr *peer, unsigned long n,
                           char *name, size_t len)
{
    if (peer->ss.ss_family == AF_UNIX && l->o->inetd)
        snprintf(name, len, "stdin");
    else if (peer->ss.ss_family == AF_UNIX) /* a socket the system passed has no -U PATH */
        snprintf(name, len, "%s#%lu", l->o->unix_path ? l->o->unix_path : "unix", n);
    else
        dx_addr_format(peer, name, len);
}
