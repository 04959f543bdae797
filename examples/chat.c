/* chat.c: a line broker: every line a client sends goes to every other client.
 *
 *   chat [HOST] PORT
 *
 * Shows: framing a byte stream into lines, fanning one input out to many
 * dx_streams, and what to do with a consumer that cannot keep up. A broker
 * cannot pause one sender for the sake of one slow reader without stalling
 * everyone, so a reader whose queue is full is dropped (dx_stream_write()
 * says -ENOBUFS and queues nothing, so no partial line is ever sent). */
#include <duplex.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define QUEUE (1024 * 1024) /* how far a reader may fall behind before it is dropped */
#define LINE_MAX_ 4096      /* longer lines are passed on in pieces of this size */

typedef struct client {
    dx_stream s; /* first, so a dx_stream * is also a client * */
    int fd;
    int dead;    /* dropped while the list was being walked: freed afterwards */
    size_t len;  /* bytes of an unfinished line in line[] */
    char line[LINE_MAX_];
    struct client *next;
} client;

static client *clients;
static int sigfds[2];

/* Remove dead clients. Deferring the free keeps broadcast() simple: it may
 * drop a reader while walking the very list that holds it. */
static void reap(void)
{
    for (client **p = &clients; *p;) {
        client *c = *p;
        if (!c->dead) {
            p = &c->next;
            continue;
        }
        *p = c->next;
        dx_stream_close(&c->s);
        dx_close(c->fd);
        free(c);
    }
}

static void broadcast(client *from, const char *line, size_t n)
{
    for (client *c = clients; c; c = c->next) {
        if (c == from || c->dead)
            continue;
        int rc = dx_stream_write(&c->s, line, n);
        if (rc < 0) { /* -ENOBUFS: too slow; -EPIPE: already failed */
            fprintf(stderr, "chat: dropping a reader: %s\n", dx_strerror(rc));
            c->dead = 1;
        }
    }
}

static void on_read(dx_stream *s, const char *data, size_t n)
{
    client *c = (client *)s;
    if (n == 0) /* the client left (a partial last line is dropped) */
        c->dead = 1;
    for (size_t i = 0; i < n; i++) {
        c->line[c->len++] = data[i];
        if (data[i] == '\n' || c->len == sizeof c->line) {
            broadcast(c, c->line, c->len);
            c->len = 0;
        }
    }
    reap();
}

static void on_event(dx_stream *s, int error)
{
    if (error < 0) { /* drain events (error 0) need nothing: we never pause */
        fprintf(stderr, "chat: client: %s\n", dx_strerror(error));
        ((client *)s)->dead = 1;
        reap();
    }
}

static void on_accept(dx_loop *loop, dx_io *io, int events)
{
    (void)events;
    int fd;
    while ((fd = dx_accept(io->fd, NULL)) != -EAGAIN) {
        if (fd < 0) {
            fprintf(stderr, "chat: accept: %s\n", dx_strerror(fd));
            if (!dx_accept_error_is_transient(fd))
                dx_loop_stop(loop);
            return;
        }
        client *c = calloc(1, sizeof *c);
        if (!c || dx_stream_init(loop, &c->s, fd, QUEUE, on_read, on_event, c) < 0) {
            free(c);
            dx_close(fd);
            continue;
        }
        c->fd = fd;
        c->next = clients;
        clients = c;
        dx_stream_read_start(&c->s);
    }
}

static void on_signal(int sig) { (void)sig; ssize_t r = write(sigfds[1], "", 1); (void)r; }
static void on_sig_io(dx_loop *loop, dx_io *io, int events) { (void)io; (void)events; dx_loop_stop(loop); }

int main(int argc, char **argv)
{
    if (argc < 2 || argc > 3) {
        fprintf(stderr, "usage: chat [HOST] PORT\n");
        return 2;
    }
    const char *host = argc == 3 ? argv[1] : NULL;
    dx_addr *addrs;
    int err, n = dx_resolve(host, argv[argc - 1], AF_UNSPEC, DX_RESOLVE_PASSIVE, &addrs);
    int lfd = n < 0 ? n : dx_listen(&addrs[0], NULL);
    if (n > 0)
        free(addrs);
    dx_loop *loop = dx_loop_new(NULL, &err);
    if (lfd < 0 || !loop || pipe(sigfds) < 0) {
        fprintf(stderr, "chat: %s\n", dx_strerror(lfd < 0 ? lfd : loop ? -errno : err));
        return 1;
    }
    signal(SIGINT, on_signal); /* the handler only wakes the loop (self-pipe) */
    signal(SIGTERM, on_signal);
    dx_io lio, sio;
    dx_io_init(&lio, lfd, on_accept, NULL);
    dx_io_init(&sio, sigfds[0], on_sig_io, NULL);
    dx_io_set(loop, &lio, DX_READ);
    dx_io_set(loop, &sio, DX_READ);

    int rc = dx_loop_run(loop);
    for (client *c = clients; c; c = c->next)
        c->dead = 1;
    reap();
    dx_io_stop(loop, &lio);
    dx_io_stop(loop, &sio);
    dx_close(lfd);
    dx_loop_free(loop);
    return rc < 0;
}
