/* listen.c: `duplex listen`: bind every requested address (dual-stack by
 * default), accept one client at a time and run a stdio session with it;
 * with -k, serve the next client when one ends. */
#define _GNU_SOURCE
#include "cli.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MAX_LISTENERS 16
/* How long to stop accepting when descriptors run out: long enough not to
 * spin, short enough to pick up again soon after one is freed. */
#define EXHAUSTED_PAUSE_MS 100

struct server {
    const struct options *o;
    dx_loop *loop;
    dx_io io[MAX_LISTENERS];
    int nlisteners;
    dx_timer resume;
    int client_fd;
    dx_addr client;
    int fatal;
};

static void watch_listeners(struct server *sv, int on)
{
    for (int i = 0; i < sv->nlisteners; i++)
        dx_io_set(sv->loop, &sv->io[i], on ? DX_READ : 0);
}

static void on_resume(dx_loop *loop, dx_timer *t)
{
    (void)loop;
    watch_listeners(t->data, 1);
}

static void on_acceptable(dx_loop *loop, dx_io *io, int events)
{
    (void)events;
    struct server *sv = io->data;
    int fd = dx_accept(io->fd, &sv->client);
    if (fd >= 0) {
        sv->client_fd = fd;
        watch_listeners(sv, 0);
        dx_loop_stop(loop);
        return;
    }
    if (fd == -EAGAIN)
        return;
    if (dx_accept_error_is_exhaustion(fd)) {
        /* the queue stays readable: wait instead of spinning on accept() */
        cli_info(sv->o, "accept: %s; pausing %d ms", dx_strerror(fd), EXHAUSTED_PAUSE_MS);
        watch_listeners(sv, 0);
        dx_timer_start(loop, &sv->resume, EXHAUSTED_PAUSE_MS, 0);
        return;
    }
    if (!dx_accept_error_is_transient(fd)) {
        cli_error("accept: %s", dx_strerror(fd));
        sv->fatal = 1;
        dx_loop_stop(loop);
    }
}

static int add_listener(struct server *sv, const dx_addr *addr, const dx_listen_opts *lo)
{
    char text[DX_ADDR_STRLEN];
    int fd = dx_listen(addr, lo);
    if (fd < 0) {
        cli_error("listen %s: %s", dx_addr_format(addr, text, sizeof text), dx_strerror(fd));
        return fd;
    }
    if (sv->nlisteners == MAX_LISTENERS) {
        close(fd);
        return 0;
    }
    dx_io_init(&sv->io[sv->nlisteners++], fd, on_acceptable, sv);
    return 0;
}

static int open_listeners(struct server *sv)
{
    const struct options *o = sv->o;
    dx_listen_opts lo = {.backlog = o->backlog, .reuseport = o->reuseport};
    dx_addr a;
    if (o->unix_path) {
        int rc = dx_addr_unix(&a, o->unix_path);
        if (rc == 0)
            rc = dx_unix_unlink_stale(o->unix_path);
        if (rc < 0) {
            cli_error("listen %s: %s", o->unix_path,
                      rc == -ENOTSOCK ? "exists and is not a socket" : dx_strerror(rc));
            return rc;
        }
        rc = add_listener(sv, &a, &lo);
        if (rc == 0)
            cli_remove_on_exit(o->unix_path);
        return rc;
    }
    if (!o->host) {
        /* every address: one dual-stack IPv6 socket where the system has IPv6 */
        const char *wild = o->family == AF_INET ? "0.0.0.0" : "::";
        dx_addr_ip(&a, wild, dx_parse_port(o->port));
        lo.v6only = o->family == AF_INET6;
        int fd = dx_listen(&a, &lo);
        if (fd < 0 && o->family == AF_UNSPEC && (fd == -EAFNOSUPPORT || fd == -EADDRNOTAVAIL)) {
            dx_addr_ip(&a, "0.0.0.0", dx_parse_port(o->port));
            fd = dx_listen(&a, &lo);
        }
        if (fd < 0) {
            char text[DX_ADDR_STRLEN];
            cli_error("listen %s: %s", dx_addr_format(&a, text, sizeof text), dx_strerror(fd));
            return fd;
        }
        dx_io_init(&sv->io[sv->nlisteners++], fd, on_acceptable, sv);
        return 0;
    }
    dx_addr *addrs;
    int flags = DX_RESOLVE_PASSIVE | (o->numeric ? DX_RESOLVE_NUMERIC : 0);
    int n = dx_resolve(o->host, o->port, o->family, flags, &addrs);
    if (n < 0) {
        cli_error("resolve %s: %s", o->host, dx_strerror(n));
        return n;
    }
    int rc = 0;
    for (int i = 0; i < n && rc == 0; i++) {
        lo.v6only = 1; /* an explicit IPv6 address means IPv6 only */
        rc = add_listener(sv, &addrs[i], &lo);
        /* a port 0 request: the other addresses take the port the first got */
        if (rc == 0 && i == 0 && dx_parse_port(o->port) == 0) {
            dx_addr got;
            if (dx_sock_local(sv->io[0].fd, &got) == 0)
                for (int j = 1; j < n; j++)
                    dx_addr_set_port(&addrs[j], dx_addr_port(&got));
        }
    }
    free(addrs);
    return rc;
}

static void close_listeners(struct server *sv)
{
    for (int i = 0; i < sv->nlisteners; i++) {
        dx_io_stop(sv->loop, &sv->io[i]);
        close(sv->io[i].fd);
    }
    sv->nlisteners = 0;
    if (sv->o->unix_path) {
        unlink(sv->o->unix_path);
        cli_remove_on_exit(NULL);
    }
}

int cli_listen(const struct options *o)
{
    int err;
    struct server sv;
    memset(&sv, 0, sizeof sv);
    sv.o = o;
    sv.loop = dx_loop_new(o->backend, &err);
    if (!sv.loop) {
        cli_error("event loop backend '%s': %s", o->backend ? o->backend : getenv("DUPLEX_BACKEND"),
                  err == -ENOENT ? "unknown or unavailable (try epoll or poll)" : dx_strerror(err));
        return EXIT_USAGE;
    }
    dx_timer_init(&sv.resume, on_resume, &sv);
    int rc = open_listeners(&sv);
    if (rc < 0) {
        close_listeners(&sv);
        dx_loop_free(sv.loop);
        return cli_exit_code_for(rc, 0) == EXIT_RESOLVE ? EXIT_RESOLVE : EXIT_LISTEN;
    }
    int always = o->verbose || (!o->unix_path && dx_parse_port(o->port) == 0);
    for (int i = 0; i < sv.nlisteners; i++) {
        dx_addr me;
        char text[DX_ADDR_STRLEN];
        if (always && dx_sock_local(sv.io[i].fd, &me) == 0)
            cli_error("listening on %s", dx_addr_format(&me, text, sizeof text));
    }
    if (o->verbose && !o->unix_path)
        cli_info(o, "backlog %d (the kernel caps it at somaxconn = %d)",
                 o->backlog ? o->backlog : dx_somaxconn(), dx_somaxconn());
    fflush(stderr);
    cli_stdio_nonblock();

    int code = EXIT_OK;
    for (;;) {
        sv.client_fd = -1;
        watch_listeners(&sv, 1);
        rc = dx_loop_run(sv.loop);
        if (rc < 0 || sv.fatal || sv.client_fd < 0) {
            if (rc < 0)
                cli_error("event loop: %s", dx_strerror(rc));
            code = EXIT_IO;
            break;
        }
        char peer[DX_ADDR_STRLEN], local[DX_ADDR_STRLEN];
        dx_addr me;
        dx_addr_format(&sv.client, peer, sizeof peer);
        if (sv.client.ss.ss_family == AF_UNIX)
            snprintf(peer, sizeof peer, "%s", o->unix_path);
        if (dx_sock_local(sv.client_fd, &me) == 0)
            cli_info(o, "accepted %s on %s", sv.client.ss.ss_family == AF_UNIX ? "a client" : peer,
                     dx_addr_format(&me, local, sizeof local));
        if (!o->keep_listening)
            close_listeners(&sv); /* like nc: one client, then the port is free again */
        code = cli_session(sv.loop, o, sv.client_fd, peer);
        if (!o->keep_listening)
            break;
        fflush(stdout);
    }
    close_listeners(&sv);
    dx_loop_free(sv.loop);
    return code;
}
