/* relay.c: a TCP relay (port forwarder) built on zero-copy pumps.
 *
 *   relay LISTEN_PORT TARGET_HOST TARGET_PORT    (listens on 127.0.0.1)
 *
 * Shows: dx_connect_async() with a timeout for each accepted client, then
 * two dx_pumps per pair of sockets, one each way. A pump does its own
 * backpressure (it reads only while it has room) and, with DX_PUMP_SPLICE,
 * moves bulk data through a kernel pipe with splice(2) instead of copying
 * it through user space. DX_PUMP_SHUTDOWN passes each side's end of input on
 * as a half-close, so "send a request, shut down, read the reply" works
 * through the relay. The pair is freed when both directions have ended. */
#include <duplex.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

typedef struct pair {
    dx_connector conn;     /* first, so a dx_connector * is also a pair * */
    int cfd, tfd;          /* client and target sockets, -1 until known */
    dx_endpoint ce, te;    /* one endpoint per socket, shared by both pumps */
    dx_pump up, down;      /* client -> target, target -> client */
    int connecting;        /* the connector is started and has not ended */
    int started;           /* both pumps started (stop them before freeing) */
    int pumps;             /* pumps still running */
    struct pair *next, **prevp;
} pair;

static pair *pairs;
static dx_addr *target;
static int ntarget, sigfds[2];

static void pair_free(pair *p)
{
    if (p->connecting)
        dx_connect_cancel(&p->conn);
    if (p->started) { /* stopping a pump that has finished is fine too */
        dx_pump_stop(&p->up);
        dx_pump_stop(&p->down);
    }
    if (p->tfd >= 0)  /* pumps stopped: the endpoints watch nothing */
        dx_close(p->tfd);
    dx_close(p->cfd);
    if ((*p->prevp = p->next))
        p->next->prevp = p->prevp;
    free(p);
}

static void on_pump_done(dx_pump *pump, int error, int in_read)
{
    pair *p = pump->data;
    if (error < 0) { /* a reset on either side ends both directions */
        fprintf(stderr, "relay: %s: %s\n", in_read ? "read" : "write", dx_strerror(error));
        pair_free(p);
    } else if (--p->pumps == 0) { /* both directions saw end of input */
        pair_free(p);
    }
}

static void on_connect(dx_connector *c, int result, const dx_addr *addr, int final)
{
    pair *p = (pair *)c;
    char text[DX_ADDR_STRLEN];
    if (final)
        p->connecting = 0; /* the connector is done with: nothing to cancel */
    if (result < 0) {
        fprintf(stderr, "relay: connect to %s: %s\n", dx_addr_format(addr, text, sizeof text),
                dx_strerror(result));
        if (final) /* no target reachable: hang up on the client */
            pair_free(p);
        return;
    }
    p->tfd = result;
    dx_endpoint_init(&p->ce, p->cfd);
    dx_endpoint_init(&p->te, p->tfd);
    int flags = DX_PUMP_SHUTDOWN | DX_PUMP_SPLICE;
    if (dx_pump_start(c->loop, &p->up, &p->ce, &p->te, 0, flags, on_pump_done, p) < 0) {
        fprintf(stderr, "relay: %s\n", dx_strerror(-ENOMEM));
        pair_free(p);
        return;
    }
    if (dx_pump_start(c->loop, &p->down, &p->te, &p->ce, 0, flags, on_pump_done, p) < 0) {
        fprintf(stderr, "relay: %s\n", dx_strerror(-ENOMEM));
        dx_pump_stop(&p->up);
        pair_free(p);
        return;
    }
    p->started = 1;
    p->pumps = 2;
}

static void on_accept(dx_loop *loop, dx_io *io, int events)
{
    (void)events;
    int fd;
    while ((fd = dx_accept(io->fd, NULL)) != -EAGAIN) {
        if (fd < 0) {
            fprintf(stderr, "relay: accept: %s\n", dx_strerror(fd));
            if (!dx_accept_error_is_transient(fd))
                dx_loop_stop(loop);
            return;
        }
        pair *p = calloc(1, sizeof *p);
        if (!p) {
            dx_close(fd);
            continue;
        }
        p->cfd = fd;
        p->tfd = -1;
        if ((p->next = pairs))
            pairs->prevp = &p->next;
        p->prevp = &pairs;
        pairs = p;
        /* Reads from the client wait until the target answers: its bytes
         * stay in the kernel's buffer meanwhile. */
        int rc = dx_connect_async(loop, &p->conn, target, ntarget, NULL, 5000, on_connect, NULL);
        if (rc < 0) {
            fprintf(stderr, "relay: connect: %s\n", dx_strerror(rc));
            pair_free(p);
        } else {
            p->connecting = 1;
        }
    }
}

static void on_signal(int sig) { (void)sig; ssize_t r = write(sigfds[1], "", 1); (void)r; }
static void on_sig_io(dx_loop *loop, dx_io *io, int events) { (void)io; (void)events; dx_loop_stop(loop); }

int main(int argc, char **argv)
{
    if (argc != 4) {
        fprintf(stderr, "usage: relay LISTEN_PORT TARGET_HOST TARGET_PORT\n");
        return 2;
    }
    signal(SIGPIPE, SIG_IGN); /* sockets never raise it; splice pipes might */
    dx_addr *laddr;
    int err, n = dx_resolve("127.0.0.1", argv[1], AF_INET, DX_RESOLVE_NUMERIC, &laddr);
    int lfd = n < 0 ? n : dx_listen(&laddr[0], NULL);
    if (n > 0)
        free(laddr);
    ntarget = dx_resolve(argv[2], argv[3], AF_UNSPEC, 0, &target);
    if (lfd < 0 || ntarget < 0) {
        fprintf(stderr, "relay: %s\n", dx_strerror(lfd < 0 ? lfd : ntarget));
        return 1;
    }
    dx_loop *loop = dx_loop_new(NULL, &err);
    if (!loop || pipe(sigfds) < 0) {
        fprintf(stderr, "relay: %s\n", dx_strerror(loop ? -errno : err));
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
    while (pairs)
        pair_free(pairs);
    dx_io_stop(loop, &lio);
    dx_io_stop(loop, &sio);
    dx_close(lfd);
    dx_loop_free(loop);
    free(target);
    return rc < 0;
}
