/* tls_server.c: an echo server over TLS on libduplex.
 *
 *   tls_server CERT KEY [HOST] PORT     e.g. ./tls_server cert.pem key.pem 127.0.0.1 7443
 *
 * Shows: one dx_tls_ctx made from options for the whole server, a dx_tls
 * per client with its handshake in the loop under a deadline (a client
 * that connects and says nothing is dropped, and a failed handshake says
 * why), then the same dx_stream code as echo.c: the stream reads and
 * writes through TLS once dx_stream_set_tls() has attached it. Half-close:
 * the client's close_notify is our end of input, and dx_stream_shutdown()
 * sends ours once the echo is out. */
#include <duplex.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#define QUEUE (256 * 1024)       /* per-client output queue */
#define HANDSHAKE_MS 10000       /* a client must finish its handshake in time */

typedef struct client {
    dx_stream s;  /* first, so a dx_stream * is also a client * */
    dx_tls *tls;
    int fd;
    int up;       /* the stream is initialised (after the handshake) */
    int eof;
    struct client *next, **prevp;
} client;

static client *clients;
static dx_loop *the_loop;
static dx_tls_ctx *ctx;
static int sig_fds[2];

static void client_free(client *c)
{
    if (c->up)
        dx_stream_close(&c->s); /* first the stream, then the TLS state under it */
    dx_tls_free(c->tls);        /* also stops a handshake in progress */
    dx_close(c->fd);
    if ((*c->prevp = c->next))
        c->next->prevp = c->prevp;
    free(c);
}

static void on_read(dx_stream *s, const char *data, size_t n)
{
    client *c = (client *)s;
    if (n == 0) {               /* close_notify: the client is done sending */
        c->eof = 1;
        dx_stream_shutdown(s);  /* our close_notify once the echo is out */
        if (s->shut_done)
            client_free(c);
        return;
    }
    dx_stream_write(s, data, n); /* fits: reading pauses above half, as in echo.c */
    if (dx_stream_room(s) < QUEUE / 2)
        dx_stream_read_stop(s);
}

static void on_event(dx_stream *s, int error)
{
    client *c = (client *)s;
    if (error < 0) { /* dx_tls_reason() has OpenSSL's words for a TLS failure */
        fprintf(stderr, "tls_server: client: %s: %s\n", dx_strerror(error), dx_tls_reason(c->tls));
        client_free(c);
    } else if (s->shut_done) {
        client_free(c);
    } else if (!c->eof) {
        dx_stream_read_start(s);
    }
}

static void on_handshake(dx_tls *t, int error, void *data)
{
    client *c = data;
    if (error < 0) { /* a client that does not trust us, speaks no TLS, or is silent */
        fprintf(stderr, "tls_server: handshake: %s: %s\n", dx_strerror(error), dx_tls_reason(t));
        client_free(c);
        return;
    }
    if (dx_stream_init(the_loop, &c->s, c->fd, QUEUE, on_read, on_event, c) < 0) {
        client_free(c);
        return;
    }
    c->up = 1;
    dx_stream_set_tls(&c->s, t); /* from now on the stream speaks TLS */
    dx_stream_read_start(&c->s);
}

static void on_accept(dx_loop *loop, dx_io *io, int events)
{
    (void)events;
    for (;;) {
        int fd = dx_accept(io->fd, NULL);
        if (fd == -EAGAIN)
            return;
        if (fd < 0) {
            if (!dx_accept_error_is_transient(fd))
                dx_loop_stop(loop);
            return;
        }
        int err = 0;
        client *c = calloc(1, sizeof *c);
        if (c)
            c->tls = dx_tls_new(loop, ctx, fd, NULL, &err); /* a server checks no name */
        if (!c || !c->tls || dx_tls_handshake(c->tls, HANDSHAKE_MS, on_handshake, c) < 0) {
            if (c)
                dx_tls_free(c->tls);
            free(c);
            dx_close(fd);
            continue;
        }
        c->fd = fd;
        if ((c->next = clients))
            clients->prevp = &c->next;
        c->prevp = &clients;
        clients = c;
    }
}

static void on_signal(int sig) { (void)sig; ssize_t r = write(sig_fds[1], "", 1); (void)r; }
static void on_sig_readable(dx_loop *loop, dx_io *io, int events)
{
    (void)io; (void)events;
    dx_loop_stop(loop);
}

int main(int argc, char **argv)
{
    if (argc < 4 || argc > 5) {
        fprintf(stderr, "usage: tls_server CERT KEY [HOST] PORT\n");
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    /* The context: made once, shared by every client. */
    dx_tls_opts opts = {0};
    opts.server = 1;
    opts.cert_file = argv[1];
    opts.key_file = argv[2];
    int err;
    char why[512];
    ctx = dx_tls_ctx_new(&opts, &err, why, sizeof why);
    if (!ctx) {
        fprintf(stderr, "tls_server: %s\n", why);
        return 1;
    }
    const char *host = argc == 5 ? argv[3] : NULL, *port = argv[argc - 1];
    dx_addr *addrs;
    int n = dx_resolve(host, port, AF_UNSPEC, DX_RESOLVE_PASSIVE, &addrs);
    if (n < 0) {
        fprintf(stderr, "tls_server: %s:%s: %s\n", host ? host : "*", port, dx_strerror(n));
        return 1;
    }
    int lfd = dx_listen(&addrs[0], NULL);
    free(addrs);
    dx_loop *loop = the_loop = dx_loop_new(NULL, &err);
    if (lfd < 0 || !loop || pipe(sig_fds) < 0) {
        fprintf(stderr, "tls_server: %s\n", dx_strerror(lfd < 0 ? lfd : -ENOMEM));
        return 1;
    }
    signal(SIGINT, on_signal);
    signal(SIGTERM, on_signal);
    dx_io lio, sio;
    dx_io_init(&lio, lfd, on_accept, NULL);
    dx_io_init(&sio, sig_fds[0], on_sig_readable, NULL);
    dx_io_set(loop, &lio, DX_READ);
    dx_io_set(loop, &sio, DX_READ);
    printf("tls_server: listening on %s\n", port);
    fflush(stdout);

    int rc = dx_loop_run(loop);
    while (clients)
        client_free(clients);
    dx_io_stop(loop, &lio);
    dx_io_stop(loop, &sio);
    dx_close(lfd);
    dx_loop_free(loop);
    dx_tls_ctx_free(ctx); /* after the last dx_tls made from it */
    return rc < 0;
}
