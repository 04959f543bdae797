/* client.c: a line client: stdin to a TCP server, the server to stdout.
 *
 *   client HOST PORT [TIMEOUT_MS]     (default timeout: 5000 ms)
 *
 * Shows: name resolution, dx_connect_async() trying each address with a
 * deadline, then two dx_streams tied together with backpressure in both
 * directions, and half-close: end of stdin shuts down our sending side while
 * the server's reply keeps coming, until the server closes too. */
#include <duplex.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>

#define QUEUE (128 * 1024)

static dx_stream in, out, sock; /* stdin, stdout, the connection */
static int status = 1;          /* exit status: 0 only after a clean end */
static int up;                  /* the three streams are initialised */
static int in_eof, sock_eof;    /* end of input seen: never re-arm those reads */

/* Closing the streams leaves the loop with nothing to wait for, so
 * dx_loop_run() returns in main(). */
static void finish(int code)
{
    status = code;
    if (!up)
        return;
    up = 0;
    dx_stream_close(&in);
    dx_stream_close(&sock);
    dx_stream_close(&out);
}

/* Copy what one stream reads into another; pause the reader while the
 * writer's queue is more than half full (its drain event resumes it). */
static void forward(dx_stream *from, dx_stream *to, const char *data, size_t n)
{
    if (dx_stream_write(to, data, n) < 0) /* cannot be -ENOBUFS: see pause below */
        return;                           /* failed: its event callback reports it */
    if (dx_stream_room(to) < QUEUE / 2)
        dx_stream_read_stop(from);
}

static void on_stdin(dx_stream *s, const char *data, size_t n)
{
    if (n == 0) {                  /* end of stdin: send FIN once the queue is out, */
        in_eof = 1;                /* but keep reading the server's answer */
        dx_stream_shutdown(&sock);
    } else
        forward(s, &sock, data, n);
}

static void on_sock(dx_stream *s, const char *data, size_t n)
{
    if (n == 0) { /* the server is done: flush stdout, then quit */
        sock_eof = in_eof = 1;
        dx_stream_read_stop(&in);
        dx_stream_shutdown(&out);
        if (out.shut_done)
            finish(0);
    } else {
        forward(s, &out, data, n);
    }
}

static void on_event(dx_stream *s, int error)
{
    if (error < 0) {
        fprintf(stderr, "client: %s: %s\n", s == &sock ? "connection" : "stdio",
                dx_strerror(error));
        finish(1);
    } else if (s == &out && out.shut_done) {
        finish(0);                     /* everything the server sent is written */
    } else if (s == &sock && !in_eof) {
        dx_stream_read_start(&in);     /* the connection drained: read stdin again */
    } else if (s == &out && !sock_eof) {
        dx_stream_read_start(&sock);   /* stdout drained: read the server again */
    }
}

static void on_connect(dx_connector *c, int result, const dx_addr *addr, int final)
{
    char text[DX_ADDR_STRLEN];
    if (result < 0) { /* one line per address that failed, so the user sees why */
        /* DX_ETIMEDOUT is our own deadline; -ETIMEDOUT would be the kernel's */
        fprintf(stderr, "client: connect to %s: %s%s\n", dx_addr_format(addr, text, sizeof text),
                dx_strerror(result), result == DX_ETIMEDOUT ? " (deadline)" : "");
        return; /* the connector goes on with the next address, if any */
    }
    if (!final)
        return;
    dx_loop *loop = c->data;
    int fd = result; /* connected: the fd is ours now */
    /* stdin/stdout may be a terminal or a pipe shared with other programs:
     * non-blocking mode is needed for the loop (a careful program would
     * restore the old flags, which dx_set_nonblock() returns, at exit). */
    dx_set_nonblock(0, 1);
    dx_set_nonblock(1, 1);
    /* dx_stream_init() only fails for lack of memory, and allocates nothing
     * until bytes are queued: no undo needed for a program this small. */
    if (dx_stream_init(loop, &sock, fd, QUEUE, on_sock, on_event, NULL) < 0 ||
        dx_stream_init(loop, &in, 0, QUEUE, on_stdin, on_event, NULL) < 0 ||
        dx_stream_init(loop, &out, 1, QUEUE, NULL, on_event, NULL) < 0) {
        fprintf(stderr, "client: %s\n", dx_strerror(-ENOMEM));
        exit(1);
    }
    up = 1;
    dx_stream_read_start(&sock);
    dx_stream_read_start(&in);
}

int main(int argc, char **argv)
{
    if (argc < 3 || argc > 4) {
        fprintf(stderr, "usage: client HOST PORT [TIMEOUT_MS]\n");
        return 2;
    }
    uint64_t timeout = argc == 4 ? strtoull(argv[3], NULL, 10) : 5000;
    signal(SIGPIPE, SIG_IGN); /* stdout may be a pipe: get EPIPE, not a signal */
    dx_addr *addrs;
    int err, n = dx_resolve(argv[1], argv[2], AF_UNSPEC, 0, &addrs);
    if (n < 0) {
        fprintf(stderr, "client: %s port %s: %s\n", argv[1], argv[2], dx_strerror(n));
        return 1;
    }
    dx_loop *loop = dx_loop_new(NULL, &err);
    if (!loop) {
        fprintf(stderr, "client: %s\n", dx_strerror(err));
        return 1;
    }
    dx_connector conn;
    int rc = dx_connect_async(loop, &conn, addrs, n, NULL, timeout, on_connect, loop);
    if (rc < 0)
        fprintf(stderr, "client: connect: %s\n", dx_strerror(rc));
    else
        dx_loop_run(loop); /* returns when nothing is left: every stream closed */
    free(addrs);       /* borrowed by the connector until its final callback */
    dx_loop_free(loop);
    return status;
}
