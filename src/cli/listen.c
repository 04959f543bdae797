/* listen.c: `duplex listen` without a server mode: accept one client and run
 * a stdio session with it, like nc -l. Modes with many clients at once
 * (-k, --echo, --broker, --chat, --exec) live in serve.c and exec.c. With
 * --ssl the client's handshake is tls.c's, the session reads through its TLS. */
#define _GNU_SOURCE
#include "cli.h"
#include "os.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct first_client {
    int fd;
    dx_addr peer;
};

static void on_client(struct listeners *l, int fd, const dx_addr *peer, const dx_addr *local)
{
    (void)local;
    struct first_client *fc = l->data;
    fc->fd = fd;
    fc->peer = *peer;
    listeners_watch(l, 0);
    dx_loop_stop(l->loop);
}

int cli_listen_once(const struct options *o, dx_loop *loop)
{
    struct listeners l;
    struct first_client fc = {.fd = -1};
    int code = listeners_open(&l, o, loop, on_client, &fc);
    if (code != 0)
        return code;
    cli_stdio_nonblock();
    listeners_watch(&l, 1);
    int rc = dx_loop_run(loop);
    /* like nc: one client, then the port is free again */
    listeners_close(&l);
    if (rc < 0 || fc.fd < 0) {
        if (rc < 0)
            cli_error("event loop: %s", dx_strerror(rc));
        return EXIT_IO;
    }
    char peer[DX_ADDR_STRLEN], local[DX_ADDR_STRLEN];
    dx_addr me;
    if (fc.peer.ss.ss_family == AF_UNIX)
        snprintf(peer, sizeof peer, "%s", o->unix_path);
    else
        dx_addr_format(&fc.peer, peer, sizeof peer);
    if (dx_sock_local(fc.fd, &me) == 0)
        cli_info(o, "accepted %s on %s", fc.peer.ss.ss_family == AF_UNIX ? "a client" : peer,
                 dx_addr_format(&me, local, sizeof local));
    return o->tls ? cli_tls_session(loop, o, fc.fd, peer) : cli_session(loop, o, fc.fd, peer);
}
