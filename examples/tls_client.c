/* tls_client.c: a line client over TLS: stdin to a TLS server, the server to
 * stdout (the TLS twin of client.c).
 *
 *   tls_client HOST PORT [CAFILE]     (default: the system's trusted CAs)
 *
 * Shows: a client dx_tls_ctx (verification is on by default: the server's
 * certificate must come from a trusted CA and carry HOST, which is also sent
 * as SNI), the handshake in the loop with a deadline, and on failure the
 * reason ("certificate verify failed: hostname mismatch: ..."), exit 1.
 * Then the streams of client.c, the connection's reading and writing through
 * TLS; end of stdin sends close_notify, and the server's close_notify ends
 * its output. A server that closes without close_notify is an error
 * (DX_ETLSTRUNC): the data may have been cut. */
#include <duplex.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>

#define QUEUE (128 * 1024)

static dx_stream in, out, sock; /* stdin, stdout, the connection */
static dx_tls_ctx *ctx;
static dx_tls *tls;             /* the connection's TLS state */
static const char *host;        /* the name the certificate must carry */
static int sock_fd = -1;
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
    if (n == 0) {                  /* end of stdin: close_notify once the queue is out, */
        in_eof = 1;                /* but keep reading the server's answer */
        dx_stream_shutdown(&sock);
    } else
        forward(s, &sock, data, n);
}

static void on_sock(dx_stream *s, const char *data, size_t n)
{
    if (n == 0) { /* the server's close_notify: flush stdout, then quit */
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
        if (s == &sock) /* a TLS failure has its reason */
            fprintf(stderr, "tls_client: connection: %s: %s\n", dx_strerror(error),
                    dx_tls_reason(tls));
        else
            fprintf(stderr, "tls_client: stdio: %s\n", dx_strerror(error));
        finish(1);
    } else if (s == &out && out.shut_done) {
        finish(0);                     /* everything the server sent is written */
    } else if (s == &sock && !in_eof) {
        dx_stream_read_start(&in);     /* the connection drained: read stdin again */
    } else if (s == &out && !sock_eof) {
        dx_stream_read_start(&sock);   /* stdout drained: read the server again */
    }
}

/* The handshake is over: on success the streams of client.c, the
 * connection's going through TLS. */
static void on_handshake(dx_tls *t, int error, void *data)
{
    dx_loop *loop = data;
    if (error < 0) { /* fails closed: not a byte of stdin went out */
        fprintf(stderr, "tls_client: %s: %s\n", host, dx_tls_reason(t));
        return; /* nothing is left in the loop: dx_loop_run() returns, status 1 */
    }
    dx_set_nonblock(0, 1);
    dx_set_nonblock(1, 1);
    if (dx_stream_init(loop, &sock, sock_fd, QUEUE, on_sock, on_event, NULL) < 0 ||
        dx_stream_init(loop, &in, 0, QUEUE, on_stdin, on_event, NULL) < 0 ||
        dx_stream_init(loop, &out, 1, QUEUE, NULL, on_event, NULL) < 0) {
        fprintf(stderr, "tls_client: %s\n", dx_strerror(-ENOMEM));
        exit(1);
    }
    dx_stream_set_tls(&sock, t); /* the connection reads and writes through TLS */
    up = 1;
    dx_stream_read_start(&sock);
    dx_stream_read_start(&in);
}

static void on_connect(dx_connector *c, int result, const dx_addr *addr, int final)
{
    char text[DX_ADDR_STRLEN];
    if (result < 0) {
        fprintf(stderr, "tls_client: connect to %s: %s\n", dx_addr_format(addr, text, sizeof text),
                dx_strerror(result));
        return; /* the connector goes on with the next address, if any */
    }
    if (!final)
        return;
    dx_loop *loop = c->data;
    sock_fd = result; /* connected: now the TLS handshake, in the loop, with a deadline */
    int err;
    tls = dx_tls_new(loop, ctx, sock_fd, host, &err); /* HOST: SNI and the name checked */
    if (!tls || dx_tls_handshake(tls, 5000, on_handshake, loop) < 0) {
        fprintf(stderr, "tls_client: %s\n", dx_strerror(tls ? -ENOMEM : err));
        exit(1);
    }
}

int main(int argc, char **argv)
{
    if (argc < 3 || argc > 4) {
        fprintf(stderr, "usage: tls_client HOST PORT [CAFILE]\n");
        return 2;
    }
    signal(SIGPIPE, SIG_IGN); /* stdout may be a pipe: get EPIPE, not a signal */
    host = argv[1];
    dx_tls_opts opts = {0};  /* zero: verify against the system store */
    opts.ca_file = argc == 4 ? argv[3] : NULL;
    int err;
    char why[512];
    ctx = dx_tls_ctx_new(&opts, &err, why, sizeof why);
    if (!ctx) {
        fprintf(stderr, "tls_client: %s\n", why);
        return 1;
    }
    dx_addr *addrs;
    int n = dx_resolve(argv[1], argv[2], AF_UNSPEC, 0, &addrs);
    if (n < 0) {
        fprintf(stderr, "tls_client: %s port %s: %s\n", argv[1], argv[2], dx_strerror(n));
        return 1;
    }
    dx_loop *loop = dx_loop_new(NULL, &err);
    if (!loop) {
        fprintf(stderr, "tls_client: %s\n", dx_strerror(err));
        return 1;
    }
    dx_connector conn;
    int rc = dx_connect_async(loop, &conn, addrs, n, NULL, 5000, on_connect, loop);
    if (rc < 0)
        fprintf(stderr, "tls_client: connect: %s\n", dx_strerror(rc));
    else
        dx_loop_run(loop); /* returns when nothing is left: every stream closed */
    dx_tls_free(tls);  /* after the stream that used it */
    if (sock_fd >= 0)
        dx_close(sock_fd);
    free(addrs);
    dx_loop_free(loop);
    dx_tls_ctx_free(ctx);
    return status;
}
