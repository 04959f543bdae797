/* echo.c: a TCP echo server on libduplex.
 *
 *   echo [HOST] PORT        e.g. ./echo 127.0.0.1 7000
 *
 * Shows: a listening socket watched with dx_io, one dx_stream per client,
 * backpressure (a client that sends faster than it reads is paused, not
 * buffered without bound), half-close (a client's end of input is echoed as
 * our end of output), and a clean exit on SIGINT through a self-pipe. */
#include <duplex.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#define QUEUE (256 * 1024) /* per-client output queue: the most we hold for a slow reader */

typedef struct client {
    dx_stream s;  /* first, so a dx_stream * is also a client * */
    int fd;
    int eof;      /* the client has shut its side down */
    struct client *next, **prevp; /* list of live clients, for SIGINT */
} client;

static client *clients;
static int sigpipe_fds[2];

static void client_free(client *c)
{
    dx_stream_close(&c->s); /* no callback of this stream runs after this */
    dx_close(c->fd);        /* the stream never closes the fd: it is ours */
    if ((*c->prevp = c->next))
        c->next->prevp = c->prevp;
    free(c);
}

static void on_read(dx_stream *s, const char *data, size_t n)
{
    client *c = (client *)s;
    if (n == 0) {               /* the client shut its side: finish ours once */
        c->eof = 1;
        dx_stream_shutdown(s);  /* everything queued has gone out */
        if (s->shut_done)       /* done at once (queue was empty): no event follows */
            client_free(c);
        return;
    }
    /* Each read passes at most half the queue, and we stop reading below
     * whenever less than half is free, so this write always fits. */
    dx_stream_write(s, data, n);
    if (dx_stream_room(s) < QUEUE / 2)
        dx_stream_read_stop(s); /* backpressure: resumed by the drain event */
}

static void on_event(dx_stream *s, int error)
{
    client *c = (client *)s;
    if (error < 0) {
        fprintf(stderr, "echo: client: %s\n", dx_strerror(error));
        client_free(c);
    } else if (s->shut_done) {  /* our FIN is out after the client's: all done */
        client_free(c);
    } else if (!c->eof) {       /* the queue drained below half: read again */
        dx_stream_read_start(s);
    }
}

static void on_accept(dx_loop *loop, dx_io *io, int events)
{
    (void)events;
    for (;;) { /* take every waiting connection: one wake-up may stand for many */
        int fd = dx_accept(io->fd, NULL);
        if (fd == -EAGAIN)
            return;
        if (fd < 0) { /* a client that died in the queue is no reason to stop */
            fprintf(stderr, "echo: accept: %s\n", dx_strerror(fd));
            if (dx_accept_error_is_transient(fd))
                return;
            dx_loop_stop(loop);
            return;
        }
        client *c = calloc(1, sizeof *c);
        if (!c || dx_stream_init(loop, &c->s, fd, QUEUE, on_read, on_event, c) < 0) {
            free(c); /* out of memory: drop this client, keep serving */
            dx_close(fd);
            continue;
        }
        c->fd = fd;
        if ((c->next = clients))
            clients->prevp = &c->next;
        c->prevp = &clients;
        clients = c;
        dx_stream_read_start(&c->s);
    }
}

/* Signal handlers may not touch the loop: they write a byte that a dx_io
 * watcher picks up, so the shutdown runs as an ordinary callback. */
static void on_signal(int sig) { (void)sig; ssize_t r = write(sigpipe_fds[1], "", 1); (void)r; }
static void on_sigpipe_readable(dx_loop *loop, dx_io *io, int events)
{
    (void)io; (void)events;
    dx_loop_stop(loop);
}

int main(int argc, char **argv)
{
    if (argc < 2 || argc > 3) {
        fprintf(stderr, "usage: echo [HOST] PORT\n");
        return 2;
    }
    const char *host = argc == 3 ? argv[1] : NULL, *port = argv[argc - 1];
    dx_addr *addrs;
    int err, n = dx_resolve(host, port, AF_UNSPEC, DX_RESOLVE_PASSIVE, &addrs);
    if (n < 0) {
        fprintf(stderr, "echo: %s:%s: %s\n", host ? host : "*", port, dx_strerror(n));
        return 1;
    }
    int lfd = dx_listen(&addrs[0], NULL); /* the first address is enough here */
    free(addrs);
    dx_loop *loop = dx_loop_new(NULL, &err);
    if (lfd < 0 || !loop) {
        fprintf(stderr, "echo: %s %s: %s\n", lfd < 0 ? "listen on" : "loop for", port,
                dx_strerror(lfd < 0 ? lfd : err));
        return 1;
    }
    if (pipe(sigpipe_fds) < 0)
        return 1;
    signal(SIGINT, on_signal);
    signal(SIGTERM, on_signal);
    dx_io lio, sio;
    dx_io_init(&lio, lfd, on_accept, NULL);
    dx_io_init(&sio, sigpipe_fds[0], on_sigpipe_readable, NULL);
    dx_io_set(loop, &lio, DX_READ);
    dx_io_set(loop, &sio, DX_READ);
    printf("echo: listening on %s\n", port);
    fflush(stdout);

    int rc = dx_loop_run(loop);
    /* Stopped by a signal (or a fatal error): free what is left. */
    while (clients)
        client_free(clients);
    dx_io_stop(loop, &lio);
    dx_io_stop(loop, &sio);
    dx_close(lfd);
    dx_loop_free(loop);
    if (rc < 0)
        fprintf(stderr, "echo: loop: %s\n", dx_strerror(rc));
    return rc < 0;
}
