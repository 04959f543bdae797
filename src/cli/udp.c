/* udp.c: `duplex connect -u` and `duplex listen -u`: datagrams, message by
 * message, on the event loop; with -U PATH Unix datagrams the same way (the
 * sockets: udp_unix.c).
 * - stdin -> socket: each read() from stdin (a line from a terminal; from a
 *   pipe or a file whatever one read returns, at most DGRAM_MAX bytes) is
 *   sent as one datagram; while it waits for room in the socket buffer,
 *   stdin is not read (backpressure, nothing dropped on our side).
 * - socket -> stdout: each datagram received is written to stdout whole;
 *   while stdout is full, the socket is not read (the kernel queues, then
 *   drops: datagram semantics).
 * - connect: the socket is connect()ed, so only the peer's datagrams are
 *   read and an ICMP port unreachable arrives as ECONNREFUSED (exit 4).
 *   Ends at end of stdin (-q SECS: SECS later), -w without traffic (5).
 * - listen: the socket is never connected, so any number of peers can send;
 *   stdin goes to the last peer heard (stdin is read only once one has been
 *   heard). End of stdin does not end it (-q SECS does).
 * - listen -k: a table of peers (each admitted sender, until it has sent
 *   nothing for --idle-timeout, at most --max-conns of them): stdin goes to
 *   every one of them.
 * - listen --exec/--sh-exec: a process per peer of the table, its stdin and
 *   stdout one end of a SOCK_SEQPACKET socketpair: each datagram from the
 *   peer is one record the program reads whole with one read(), each write()
 *   of the program one datagram back to the peer, sent from the listening
 *   socket (ncat hands its children a pipe, which merges datagrams). The
 *   server sees every datagram: the access list, the idle timeout and the
 *   first datagram need no second socket per peer. */
#define _GNU_SOURCE
#include "cli.h"
#include "os.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#ifndef _WIN32
#include <signal.h>
#include <sys/socket.h>
#endif

#define DGRAM_MAX 65507          /* the largest UDP payload over IPv4 */
#define RECV_BUF (64 * 1024)     /* holds any datagram */
#define IN_BUF (2 * DGRAM_MAX + 2) /* stdin's datagram, grown by -C; a program's, + 1 to see it too large */
#define RECVS_PER_WAKEUP 16      /* fairness with stdin and the timers */
#define MAX_SOCKS MAX_LISTENERS

/* An ICMP port unreachable answering a datagram: Linux reports it as
 * ECONNREFUSED; Windows as WSAECONNRESET (UDP has no other reset). */
#define IS_REFUSED(err) ((err) == -ECONNREFUSED || (DX_OS_WINDOWS && (err) == -ECONNRESET))

/* listen -k, --exec: one sender of datagrams. */
struct peer {
    dx_addr addr;               /* as received (IPv4-mapped on a dual-stack socket) */
    int sock;                   /* the listening socket it is heard on */
    uint64_t last;              /* ms: last datagram (either way with --exec) */
    char name[DX_ADDR_STRLEN];
    /* --exec */
    pid_t pid;
    dx_io io;                   /* our end of the program's socketpair */
    char *pending;              /* the program's datagram, waiting for room */
    size_t plen;
    uint64_t dropped;           /* datagrams the program did not take in time */
};

struct udp {
    dx_loop *loop;
    const struct options *o;
    int server;                 /* listen -u */
    dx_io sock[MAX_SOCKS];
    int nsock;
    dx_io in, out;              /* stdin, stdout */
    char *inbuf;                /* a datagram read from stdin */
    size_t inlen;
    int in_pending;             /* inbuf waits for room in the socket buffer */
    int last_cr;                /* -C: the previous read from stdin ended with CR */
    int stdin_eof;
    char *outbuf;               /* a datagram received, waiting for stdout */
    size_t outlen, outoff;
    int have_peer;              /* server: a peer has been heard */
    dx_addr peer;               /* server: the last peer heard */
    int peer_sock;              /* server: the socket it was heard on */
    char peer_text[DX_ADDR_STRLEN]; /* connect: target; server: last peer */
    dx_timer quit_timer, idle_timer;
    uint64_t started, last_activity;
    uint64_t dgrams_out, bytes_out, dgrams_in, bytes_in;
    uint64_t dgrams_denied;     /* server: dropped by --allow/--deny */
    dx_addr last_denied;        /* server: said once while it keeps sending */
    /* listen -k and --exec: the peers (udp_peer_* below) */
    int peer_mode;              /* -k or --exec */
    int exec;                   /* --exec/--sh-exec */
    struct peer **peers;
    int npeers, cap_peers;
    int in_next;                /* -k: the next peer to send stdin's datagram to */
    int wait_sock;              /* -k: the socket that had no room for it */
    uint64_t peers_served, peers_refused;
    dx_addr last_refused;       /* said once while it keeps sending */
    int served_one;             /* --exec without -k: the one peer has come */
    dx_timer sweep;             /* idle peers */
    char created[256];          /* -U: the socket file this command made, removed at the end */
    int unnamed_said;           /* -U server: a sender without an address was named once */
    int truncated_said;         /* -U: a datagram longer than RECV_BUF was named once */
    int exit_code, over;
};

/* The IPv4 address of an IPv4-mapped IPv6 peer of a dual-stack socket
 * (127.0.0.1:5 for messages and the --exec variables), else a itself. */
static const dx_addr *unmapped(const dx_addr *a, dx_addr *v4)
{
    /* built in locals and copied: stores through a cast of v4->ss were
     * lost (strict aliasing) once GCC 12 -O2 inlined this differently into
     * local_address(): an IPv4 peer's NCAT_LOCAL_ADDR came out empty */
    struct sockaddr_in6 s6;
    struct sockaddr_in s4;
    if (a->ss.ss_family != AF_INET6 || (size_t)a->len < sizeof s6)
        return a;
    memcpy(&s6, &a->ss, sizeof s6);
    if (!IN6_IS_ADDR_V4MAPPED(&s6.sin6_addr))
        return a;
    memset(&s4, 0, sizeof s4);
    s4.sin_family = AF_INET;
    s4.sin_port = s6.sin6_port;
    memcpy(&s4.sin_addr, &s6.sin6_addr.s6_addr[12], 4);
    memset(v4, 0, sizeof *v4);
    memcpy(&v4->ss, &s4, sizeof s4);
    v4->len = sizeof s4;
    return v4;
}

char *cli_udp_peer_format(const dx_addr *a, char *buf, size_t n)
{
    dx_addr v4;
    return dx_addr_format(unmapped(a, &v4), buf, n);
}

static int same_addr(const dx_addr *a, const dx_addr *b)
{
    return a->len == b->len && memcmp(&a->ss, &b->ss, a->len) == 0;
}

static void end_udp(struct udp *u, int code)
{
    if (u->over)
        return;
    u->over = 1;
    u->exit_code = code;
    dx_io_stop(u->loop, &u->in);
    dx_io_stop(u->loop, &u->out);
    for (int i = 0; i < u->nsock; i++)
        dx_io_stop(u->loop, &u->sock[i]);
    dx_timer_stop(u->loop, &u->quit_timer);
    dx_timer_stop(u->loop, &u->idle_timer);
    dx_timer_stop(u->loop, &u->sweep);
    for (int i = 0; i < u->npeers; i++)
        if (u->peers[i]->pid)
            dx_io_stop(u->loop, &u->peers[i]->io);
    dx_loop_stop(u->loop);
}

static int peers_pending_on(const struct udp *u, int sock)
{
    for (int i = 0; i < u->npeers; i++)
        if (u->peers[i]->pending && u->peers[i]->sock == sock)
            return 1;
    return 0;
}

/* Watch exactly what can make progress now. */
static void update(struct udp *u)
{
    if (u->over)
        return;
    int heard = u->peer_mode ? u->npeers > 0 : u->have_peer;
    int read_stdin = !u->o->recv_only && !u->stdin_eof && !u->in_pending && !u->exec &&
                     (!u->server || heard);
    if (!u->exec) { /* --exec: the programs have the datagrams, stdio takes no part */
        dx_io_set(u->loop, &u->in, read_stdin ? DX_READ : 0);
        dx_io_set(u->loop, &u->out, u->outlen > u->outoff ? DX_WRITE : 0);
    }
    int target = !u->server ? 0 : u->peer_mode ? u->wait_sock : u->peer_sock;
    for (int i = 0; i < u->nsock; i++) {
        int ev = (u->outlen > u->outoff ? 0 : DX_READ) | (u->in_pending && i == target ? DX_WRITE : 0);
        if (u->exec && peers_pending_on(u, i))
            ev |= DX_WRITE;
        dx_io_set(u->loop, &u->sock[i], ev);
    }
}

/* A send or receive error on the connected client socket, or a send error of
 * the server. Returns 1 if the session is over. */
static int socket_error(struct udp *u, int err, int sending)
{
    if (IS_REFUSED(err)) {
        /* an ICMP port unreachable answered one of our datagrams */
        cli_error("send %s: %s", u->peer_text, dx_strerror(-ECONNREFUSED));
        if (!u->server) {
            end_udp(u, EXIT_CONNECT);
            return 1;
        }
        return 0;
    }
    cli_error("%s %s: %s", sending ? "send" : "receive", u->peer_text, dx_strerror(err));
    if (u->server && err != -EINTR && err != -ENOBUFS && err != -ENOMEM)
        return 0; /* one peer's trouble (unreachable, too large) is not the server's end */
    if (u->server)
        return 0;
    end_udp(u, sending ? cli_exit_code_for(err, 1) : EXIT_IO);
    return 1;
}

/* listen -k: stdin's datagram to every peer, from u->in_next on. */
static int send_to_peers(struct udp *u)
{
    for (; u->in_next < u->npeers; u->in_next++) {
        struct peer *p = u->peers[u->in_next];
        ssize_t n = dx_dgram_send(u->sock[p->sock].fd, u->inbuf, u->inlen, &p->addr);
        if (n == -EAGAIN) {
            u->in_pending = 1;
            u->wait_sock = p->sock;
            return 0;
        }
        if (n < 0) {
            cli_error("send %s: %s", p->name, dx_strerror(IS_REFUSED(n) ? -ECONNREFUSED : (int)n));
            continue; /* one peer's trouble is not the others' */
        }
        u->dgrams_out++;
        u->bytes_out += (uint64_t)n;
    }
    u->in_pending = 0;
    u->in_next = 0;
    u->last_activity = dx_loop_now(u->loop);
    return 0;
}

/* Send the datagram read from stdin. Returns 1 if the session is over. */
static int send_pending(struct udp *u)
{
    if (u->server && u->peer_mode)
        return send_to_peers(u);
    const dx_addr *to = u->server ? &u->peer : NULL;
    int fd = u->sock[u->server ? u->peer_sock : 0].fd;
    ssize_t n = dx_dgram_send(fd, u->inbuf, u->inlen, to);
    if (n == -EAGAIN) {
        u->in_pending = 1;
        return 0;
    }
    u->in_pending = 0;
    if (n < 0)
        return socket_error(u, (int)n, 1);
    u->dgrams_out++;
    u->bytes_out += (uint64_t)n;
    u->last_activity = dx_loop_now(u->loop);
    return 0;
}

static void on_stdin_eof(struct udp *u)
{
    u->stdin_eof = 1;
    int64_t q = u->o->quit_after_eof_ms;
    if (q > 0)
        dx_timer_start(u->loop, &u->quit_timer, (uint64_t)q, 0);
    else if (q == 0 || !u->server)
        end_udp(u, EXIT_OK);
}

static void on_stdin(dx_loop *loop, dx_io *io, int events)
{
    (void)loop;
    (void)events;
    struct udp *u = io->data;
    if (u->in_pending || u->stdin_eof)
        return;
    /* -C: a datagram of lone LFs doubles: read half, so it still fits */
    size_t cap = u->o->crlf ? DGRAM_MAX / 2 : DGRAM_MAX;
    char *at = u->o->crlf ? u->inbuf + DGRAM_MAX + 1 : u->inbuf;
    ssize_t n = dx__fd_read(cli_stdin_fd(), at, cap);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
        return;
    if (n < 0) {
        cli_error("read stdin: %s", dx_strerror(-errno));
        end_udp(u, EXIT_IO);
        return;
    }
    if (n == 0) {
        on_stdin_eof(u);
    } else {
        u->inlen = u->o->crlf ? cli_crlf(at, (size_t)n, u->inbuf, &u->last_cr) : (size_t)n;
        if (send_pending(u))
            return;
    }
    update(u);
}

/* Write the received datagram to stdout. Returns 1 if the session is over. */
static int flush_out(struct udp *u)
{
    while (u->outoff < u->outlen) {
        ssize_t n = dx__fd_write(cli_stdout_fd(), u->outbuf + u->outoff, u->outlen - u->outoff);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return 0;
        if (n < 0) {
            cli_error("write stdout: %s", dx_strerror(-errno));
            end_udp(u, EXIT_IO);
            return 1;
        }
        u->outoff += (size_t)n;
    }
    u->outoff = u->outlen = 0;
    return 0;
}

static void on_stdout(dx_loop *loop, dx_io *io, int events)
{
    (void)loop;
    (void)events;
    struct udp *u = io->data;
    if (!flush_out(u))
        update(u);
}

static void heard_from(struct udp *u, int sock_index, const dx_addr *from)
{
    if (u->have_peer && u->peer.len == from->len && memcmp(&u->peer.ss, &from->ss, from->len) == 0)
        return;
    u->have_peer = 1;
    u->peer = *from;
    u->peer_sock = sock_index;
    cli_udp_peer_format(from, u->peer_text, sizeof u->peer_text);
    cli_info(u->o, "datagram from %s", u->peer_text);
}

/* listen -u: the access list for a datagram's sender (listeners.c's own
 * check, as for accepted clients); one -v line while a refused sender
 * keeps sending. 1 if it may be heard. */
static int admit_sender(struct udp *u, const dx_addr *from)
{
    if (!u->o->acl.nallow && !u->o->acl.ndeny)
        return 1;
    int again = u->dgrams_denied && u->last_denied.len == from->len &&
                memcmp(&u->last_denied.ss, &from->ss, from->len) == 0;
    char addr[DX_ADDR_STRLEN], name[DX_ADDR_STRLEN + 16];
    snprintf(name, sizeof name, "datagram from %s", cli_udp_peer_format(from, addr, sizeof addr));
    if (listeners_admit(u->o, from, name, !again)) {
        u->last_denied.len = 0;
        return 1;
    }
    u->dgrams_denied++;
    u->last_denied = *from;
    return 0;
}


/* ---- listen -k and --exec: the peers ---- */

static struct peer *peer_find(struct udp *u, const dx_addr *from)
{
    for (int i = 0; i < u->npeers; i++)
        if (same_addr(&u->peers[i]->addr, from))
            return u->peers[i];
    return NULL;
}

/* Forget peer i (its program, if any, is stopped: SIGTERM to its group). */
static void peer_remove(struct udp *u, int i, const char *why)
{
    struct peer *p = u->peers[i];
    if (p->dropped)
        cli_info(u->o, "%s: dropped %llu datagram%s the program did not read in time", p->name,
                 (unsigned long long)p->dropped, cli_s(p->dropped));
#ifndef _WIN32
    if (p->pid) {
        dx_io_stop(u->loop, &p->io);
        dx__fd_close(p->io.fd);
        if (why)
            kill(-p->pid, SIGTERM);
        cli_info(u->o, "%s: %s (process %ld)", p->name, why ? why : "the program ended",
                 (long)p->pid);
    } else
#endif
    if (why) {
        cli_info(u->o, "%s: %s", p->name, why);
    }
    free(p->pending);
    free(p);
    /* in order: -k's stdin round goes on where it was */
    memmove(u->peers + i, u->peers + i + 1, (size_t)(u->npeers - i - 1) * sizeof *u->peers);
    u->npeers--;
    if (u->in_next > i)
        u->in_next--;
    if (u->exec && !u->o->keep_listening && u->npeers == 0)
        end_udp(u, EXIT_OK); /* --exec without -k: its one peer is done */
}

#ifndef _WIN32
static void on_child(dx_loop *loop, dx_io *io, int events);

/* The address the peer's datagrams came to, for NCAT_LOCAL_ADDR: the
 * listening socket's, or for a wildcard one (:: or 0.0.0.0) the address
 * the system answers the peer from (a socket connected to it tells; ncat's
 * connected socket per peer shows it too), with the listening port. */
static int local_address(struct udp *u, const struct peer *p, dx_addr *local)
{
    if (dx_sock_local(u->sock[p->sock].fd, local) < 0)
        return -1;
    const struct sockaddr_in *s4 = (const struct sockaddr_in *)&local->ss;
    const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)&local->ss;
    int any = (local->ss.ss_family == AF_INET && s4->sin_addr.s_addr == htonl(INADDR_ANY)) ||
              (local->ss.ss_family == AF_INET6 && IN6_IS_ADDR_UNSPECIFIED(&s6->sin6_addr));
    if (!any)
        return 0;
    int fd = dx_dgram_connect(&p->addr, NULL);
    dx_addr mine, v4;
    if (fd >= 0 && dx_sock_local(fd, &mine) == 0) {
        int port = dx_addr_port(local);
        *local = *unmapped(&mine, &v4);
        dx_addr_set_port(local, port);
    }
    if (fd >= 0)
        dx__fd_close(fd);
    return 0;
}

/* --exec: the program for a new peer, on one end of a socketpair. */
static int peer_spawn(struct udp *u, struct peer *p)
{
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0) {
        cli_error("%s: socketpair: %s", p->name, dx_strerror(-errno));
        return -1;
    }
    dx_addr v4, local;
    const dx_addr *who = unmapped(&p->addr, &v4);
    int has_local = local_address(u, p, &local) == 0;
    pid_t pid = exec_client(u->o, sv[1], who, has_local ? &local : NULL);
    close(sv[1]);
    if (pid < 0) {
        close(sv[0]);
        return -1;
    }
    p->pid = pid;
    dx_set_nonblock(sv[0], 1);
    dx_io_init(&p->io, sv[0], on_child, u);
    dx_io_set(u->loop, &p->io, DX_READ);
    return 0;
}

/* A datagram from the peer to its program: one record. A program that does
 * not read loses datagrams (counted), as a full socket buffer would. */
static void to_child(struct peer *p, const void *data, size_t n)
{
    ssize_t r;
    do
        r = send(p->io.fd, data, n, MSG_DONTWAIT | MSG_NOSIGNAL);
    while (r < 0 && errno == EINTR);
    if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == ENOBUFS))
        p->dropped++;
    /* other errors (EPIPE: it closed its end): its end of file follows */
}

/* The program's datagram to its peer. 0 sent (or failed: said), -EAGAIN. */
static int child_send(struct udp *u, struct peer *p, const void *data, size_t n)
{
    ssize_t r = dx_dgram_send(u->sock[p->sock].fd, data, n, &p->addr);
    if (r == -EAGAIN)
        return -EAGAIN;
    if (r < 0) {
        cli_error("send %s: %s", p->name, dx_strerror(IS_REFUSED(r) ? -ECONNREFUSED : (int)r));
        return 0;
    }
    u->dgrams_out++;
    u->bytes_out += (uint64_t)r;
    p->last = u->last_activity = dx_loop_now(u->loop);
    return 0;
}

static void on_child(dx_loop *loop, dx_io *io, int events)
{
    (void)loop;
    (void)events;
    struct udp *u = io->data;
    struct peer *p = NULL;
    int i;
    for (i = 0; i < u->npeers && !p; i++)
        if (u->peers[i]->pid && &u->peers[i]->io == io)
            p = u->peers[i];
    if (!p)
        return;
    i--;
    for (int k = 0; k < RECVS_PER_WAKEUP && !p->pending; k++) {
        ssize_t n = recv(io->fd, u->inbuf, DGRAM_MAX + 1, 0);
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
            break;
        if (n <= 0) { /* the program (and all it started) closed its end */
            peer_remove(u, i, NULL);
            update(u);
            return;
        }
        if (n > DGRAM_MAX) {
            cli_error("%s: the program wrote more than %d bytes at once: not sent (a datagram "
                      "holds at most that)", p->name, DGRAM_MAX);
            continue;
        }
        if (child_send(u, p, u->inbuf, (size_t)n) == -EAGAIN) {
            p->pending = malloc((size_t)n);
            if (!p->pending)
                break; /* dropped */
            memcpy(p->pending, u->inbuf, (size_t)n);
            p->plen = (size_t)n;
            dx_io_set(u->loop, io, 0); /* the program waits: its write blocks */
        }
    }
    update(u);
}

/* The listening socket sock has room: the programs' datagrams waiting. */
static void flush_children(struct udp *u, int sock)
{
    for (int i = 0; i < u->npeers; i++) {
        struct peer *p = u->peers[i];
        if (!p->pending || p->sock != sock)
            continue;
        if (child_send(u, p, p->pending, p->plen) == -EAGAIN)
            return;
        free(p->pending);
        p->pending = NULL;
        dx_io_set(u->loop, &p->io, DX_READ);
    }
}
#endif

/* A new sender: admitted (the access list has passed it) unless the table
 * is full; with --exec its program started. NULL: drop the datagram. */
static struct peer *peer_add(struct udp *u, int sock, const dx_addr *from)
{
    const struct options *o = u->o;
    char name[DX_ADDR_STRLEN];
    cli_udp_peer_format(from, name, sizeof name);
    const char *refusal = NULL;
    char why[64];
    if (u->exec && !o->keep_listening && u->served_one) {
        refusal = "ignored: --exec without -k serves its first peer only";
    } else if (o->max_conns && u->npeers >= o->max_conns) {
        snprintf(why, sizeof why, "refused: --max-conns %ld reached", o->max_conns);
        refusal = why;
    }
    if (refusal) {
        if (!(u->peers_refused && same_addr(&u->last_refused, from)))
            cli_info(o, "datagram from %s: %s", name, refusal);
        u->peers_refused++;
        u->last_refused = *from;
        return NULL;
    }
    if (u->npeers == u->cap_peers) {
        int cap = u->cap_peers ? u->cap_peers * 2 : 16;
        struct peer **t = realloc(u->peers, (size_t)cap * sizeof *t);
        if (!t)
            return NULL;
        u->peers = t;
        u->cap_peers = cap;
    }
    struct peer *p = calloc(1, sizeof *p);
    if (!p)
        return NULL;
    p->addr = *from;
    p->sock = sock;
    memcpy(p->name, name, sizeof name);
#ifndef _WIN32
    if (u->exec && peer_spawn(u, p) < 0) {
        free(p);
        return NULL;
    }
#endif
    u->peers[u->npeers++] = p;
    u->peers_served++;
    u->served_one = 1;
    if (p->pid)
        cli_info(o, "%s: new peer (process %ld)", name, (long)p->pid);
    else
        cli_info(o, "%s: new peer", name);
    return p;
}

/* --idle-timeout: forget the peers (stop the programs) quiet that long. */
static void on_sweep(dx_loop *loop, dx_timer *t)
{
    struct udp *u = t->data;
    uint64_t now = dx_loop_now(loop), limit = (uint64_t)u->o->idle_timeout_ms;
    char why[64];
    snprintf(why, sizeof why, "closed: idle for %.3g s", (double)limit / 1000.0);
    for (int i = u->npeers - 1; i >= 0 && !u->over; i--)
        if (now - u->peers[i]->last >= limit)
            peer_remove(u, i, why);
    update(u);
}

static void on_socket(dx_loop *loop, dx_io *io, int events)
{
    struct udp *u = io->data;
    int index = (int)(io - u->sock);
    int target = !u->server ? 0 : u->peer_mode ? u->wait_sock : u->peer_sock;
    if ((events & (DX_WRITE | DX_ERROR)) && u->in_pending && index == target) {
        if (send_pending(u))
            return;
    }
#ifndef _WIN32
    if ((events & (DX_WRITE | DX_ERROR)) && u->exec)
        flush_children(u, index);
#endif
    for (int i = 0; i < RECVS_PER_WAKEUP && u->outlen == 0 && (events & (DX_READ | DX_ERROR)); i++) {
        dx_addr from;
        int trunc = 0;
        ssize_t n = dx_dgram_recv(io->fd, u->outbuf, RECV_BUF, &from, &trunc);
        if (trunc && !u->truncated_said) { /* a Unix datagram may be longer */
            char who[DX_ADDR_STRLEN];
            u->truncated_said = 1;
            if (!u->server)
                snprintf(who, sizeof who, "%s", u->peer_text);
            else if (u->o->unix_path && cli_unix_dgram_unnamed(&from))
                snprintf(who, sizeof who, "an unnamed socket");
            else
                cli_udp_peer_format(&from, who, sizeof who);
            cli_error("datagram from %s: longer than %d bytes: the rest is lost (said once)", who,
                      RECV_BUF);
        }
        if (n == -EAGAIN)
            break;
        if (n < 0) {
            if (socket_error(u, (int)n, 0))
                return;
            if (u->server)
                continue;
            break;
        }
        if (u->server && !admit_sender(u, &from))
            continue; /* dropped unread: nothing to stdout, no reply to it */
        struct peer *p = NULL;
        int unnamed = u->server && u->o->unix_path && cli_unix_dgram_unnamed(&from);
        if (unnamed && !u->unnamed_said) {
            u->unnamed_said = 1;
            cli_info(u->o, "datagram from an unnamed socket: no reply can reach it (the sender "
                     "bound no path: duplex -s PATH, socat bind=PATH)%s",
                     u->exec ? "; no program for it" : "");
        }
        if (unnamed && u->exec)
            continue;
        if (u->peer_mode && !unnamed && !(p = peer_find(u, &from)) &&
            !(p = peer_add(u, index, &from)))
            continue; /* refused: said once */
        u->dgrams_in++;
        u->bytes_in += (uint64_t)n;
        u->last_activity = dx_loop_now(loop);
        if (p) {
            p->last = u->last_activity;
#ifndef _WIN32
            if (u->exec) {
                if (n > 0) /* an empty record would read as the end of input */
                    to_child(p, u->outbuf, (size_t)n);
                continue;
            }
#endif
        } else if (u->server && !unnamed) {
            heard_from(u, index, &from);
        }
        if (u->o->send_only || n == 0)
            continue;
        u->outlen = (size_t)n;
        u->outoff = 0;
        if (flush_out(u))
            return;
    }
    update(u);
}

static void on_quit_timer(dx_loop *loop, dx_timer *t)
{
    (void)loop;
    end_udp(t->data, EXIT_OK);
}

static void on_idle_timer(dx_loop *loop, dx_timer *t)
{
    struct udp *u = t->data;
    uint64_t now = dx_loop_now(loop), limit = (uint64_t)u->o->timeout_ms;
    if (now - u->last_activity >= limit) {
        cli_error("%s: no traffic for %.3g s, closing", u->server && !u->have_peer ? "udp" : u->peer_text,
                  (double)limit / 1000.0);
        end_udp(u, EXIT_TIMEOUT);
        return;
    }
    dx_timer_start(loop, t, u->last_activity + limit - now, 0);
}

/* Run the exchange on the u->nsock sockets; closes them. */
static int run(struct udp *u)
{
    dx_loop *loop = u->loop;
    u->inbuf = malloc(IN_BUF);
    u->outbuf = malloc(RECV_BUF);
    int rc = 0;
    if (!u->inbuf || !u->outbuf) {
        cli_error("udp: %s", dx_strerror(-ENOMEM));
        u->exit_code = EXIT_IO;
    } else {
        dx_loop_update_time(loop);
        u->started = u->last_activity = dx_loop_now(loop);
        dx_io_init(&u->in, cli_stdin_fd(), on_stdin, u);
        dx_io_init(&u->out, cli_stdout_fd(), on_stdout, u);
        dx_timer_init(&u->quit_timer, on_quit_timer, u);
        dx_timer_init(&u->idle_timer, on_idle_timer, u);
        cli_stdio_nonblock();
        if (u->o->timeout_ms > 0)
            dx_timer_start(loop, &u->idle_timer, (uint64_t)u->o->timeout_ms, 0);
        dx_timer_init(&u->sweep, on_sweep, u);
        if (u->peer_mode && u->o->idle_timeout_ms > 0) {
            uint64_t period = (uint64_t)u->o->idle_timeout_ms / 4;
            period = period < 50 ? 50 : period > 1000 ? 1000 : period;
            dx_timer_start(loop, &u->sweep, period, period);
        }
        update(u);
        rc = dx_loop_run(loop);
        if (rc < 0 && !u->over) {
            cli_error("event loop: %s", dx_strerror(rc));
            end_udp(u, EXIT_IO);
        }
        if (!u->server && u->exit_code == EXIT_OK) {
            /* an ICMP error may have arrived with the last datagrams */
            int err = 0;
            dx__socklen len = sizeof err;
            /* SO_ERROR holds the system's code: a WSAE* value on Windows */
            if (dx__sock_getsockopt(u->sock[0].fd, SOL_SOCKET, SO_ERROR, &err, &len) == 0 && err &&
                IS_REFUSED(-dx__os_errno(err))) {
                cli_error("send %s: %s", u->peer_text, dx_strerror(-ECONNREFUSED));
                u->exit_code = EXIT_CONNECT;
            }
        }
        end_udp(u, u->exit_code);
        dx_loop_update_time(loop);
        cli_info(u->o, "%s: sent %llu datagram%s (%llu byte%s), received %llu datagram%s (%llu byte%s) in %.3f s",
                 u->server && !u->have_peer ? "udp" : u->peer_text, (unsigned long long)u->dgrams_out,
                 cli_s(u->dgrams_out), (unsigned long long)u->bytes_out, cli_s(u->bytes_out),
                 (unsigned long long)u->dgrams_in, cli_s(u->dgrams_in),
                 (unsigned long long)u->bytes_in, cli_s(u->bytes_in),
                 (double)(dx_loop_now(loop) - u->started) / 1000.0);
        if (u->dgrams_denied)
            cli_info(u->o, "udp: dropped %llu datagram%s refused by --allow/--deny",
                     (unsigned long long)u->dgrams_denied, cli_s(u->dgrams_denied));
        if (u->peer_mode)
            cli_info(u->o, "udp: served %llu peer%s; refused %llu datagram%s (limit)",
                     (unsigned long long)u->peers_served, cli_s(u->peers_served),
                     (unsigned long long)u->peers_refused, cli_s(u->peers_refused));
    }
    for (int i = 0; i < u->npeers; i++) {
        struct peer *p = u->peers[i];
        if (p->pid) {
            dx_io_stop(loop, &p->io);
            dx__fd_close(p->io.fd); /* its program reads the end; stopped below */
        }
        free(p->pending);
        free(p);
    }
    free(u->peers);
    if (u->exec) {
        exec_stop_children(2000); /* every way out: no process left behind */
        exec_detach(loop);
        if (u->exit_code == EXIT_OK && !u->o->keep_listening && exec_failed() > 0)
            u->exit_code = EXIT_IO; /* the one peer's program could not be run */
    }
    for (int i = 0; i < u->nsock; i++) {
        dx_io_stop(loop, &u->sock[i]);
        dx__fd_close(u->sock[i].fd);
    }
    if (u->created[0]) { /* -U: the socket file we made */
        unlink(u->created);
        cli_remove_on_exit(NULL);
    }
    free(u->inbuf);
    free(u->outbuf);
    return u->exit_code;
}

/* ---- connect -u ---- */

/* -U -u --exec: the program gets the socket; the file -s made goes at the end. */
static int exec_then_unlink(struct udp *u, int fd)
{
    int code = cli_exec_connected(u->loop, u->o, fd, u->peer_text);
    if (u->created[0]) {
        unlink(u->created);
        cli_remove_on_exit(NULL);
    }
    return code;
}

/* The -s/-p source address for a target of `family`. Returns 0, 1 if none
 * is wanted, or a negative code (reported). */
static int source_for(const struct options *o, int family, dx_addr *source)
{
    if (!o->source_addr && !o->source_port)
        return 1;
    const char *host = o->source_addr ? o->source_addr : family == AF_INET6 ? "::" : "0.0.0.0";
    dx_addr *list;
    int flags = DX_RESOLVE_PASSIVE | DX_RESOLVE_DGRAM | (o->numeric ? DX_RESOLVE_NUMERIC : 0);
    int n = dx_resolve(host, o->source_port ? o->source_port : "0", family, flags, &list);
    if (n < 0)
        return n;
    *source = list[0];
    free(list);
    return 0;
}

int cli_udp_connect(const struct options *o, dx_loop *loop)
{
    struct udp u;
    memset(&u, 0, sizeof u);
    u.loop = loop;
    u.o = o;
    if (o->unix_path) {
        int fd = cli_unix_dgram_open(o, 0, u.created, sizeof u.created, u.peer_text,
                                     sizeof u.peer_text);
        if (fd < 0)
            return fd == -ENOTSOCK || fd == -EADDRINUSE || fd == DX_ETOOLONG ? EXIT_USAGE
                                                                           : cli_exit_code_for(fd, 1);
        dx_addr me;
        char local[DX_ADDR_STRLEN];
        if (dx_sock_local(fd, &me) == 0)
            cli_info(o, "unix datagrams to %s from %s", u.peer_text,
                     dx_addr_format(&me, local, sizeof local));
        if (o->mode == MODE_EXEC)
            return exec_then_unlink(&u, fd);
        dx_io_init(&u.sock[0], fd, on_socket, &u);
        u.nsock = 1;
        return run(&u);
    }
    dx_addr *addrs;
    int flags = DX_RESOLVE_DGRAM | (o->numeric ? DX_RESOLVE_NUMERIC : 0);
    int n = dx_resolve(o->host, o->port, o->family, flags, &addrs);
    if (n < 0) {
        cli_error("resolve %s: %s", o->host, dx_strerror(n));
        return cli_exit_code_for(n, 1);
    }
    int fd = DX_ENOADDR, tried = 0;
    char text[DX_ADDR_STRLEN];
    for (int i = 0; i < n && fd < 0; i++) {
        dx_addr source;
        int has = source_for(o, addrs[i].ss.ss_family, &source);
        if (has < 0)
            continue; /* no source address of this family */
        tried++;
        dx_addr_format(&addrs[i], text, sizeof text);
        if (has == 0) {
            /* bind first on our own, so that a bad -s/-p is named as such */
            fd = dx_dgram_bind(&source, NULL);
            if (fd < 0) {
                char stext[DX_ADDR_STRLEN];
                cli_error("bind %s: %s", cli_local_text(&source, stext, sizeof stext),
                          dx_strerror(fd));
                continue;
            }
            if (dx__sock_connect(fd, (const struct sockaddr *)&addrs[i].ss, addrs[i].len) < 0) {
                int e = -errno;
                dx__fd_close(fd);
                fd = e;
            }
        } else {
            fd = dx_dgram_connect(&addrs[i], NULL);
        }
        if (fd < 0)
            cli_error("connect %s: %s", text, dx_strerror(fd));
        else
            snprintf(u.peer_text, sizeof u.peer_text, "%s", text);
    }
    free(addrs);
    if (fd < 0) {
        if (!tried)
            cli_error("connect %s: no %saddress to match the source address %s", o->host,
                      o->family == AF_INET6 ? "IPv6 " : o->family == AF_INET ? "IPv4 " : "",
                      o->source_addr ? o->source_addr : "");
        return tried ? cli_exit_code_for(fd, 1) : EXIT_RESOLVE;
    }
    dx_addr me;
    char local[DX_ADDR_STRLEN];
    if (dx_sock_local(fd, &me) == 0)
        cli_info(o, "udp to %s from %s", u.peer_text, dx_addr_format(&me, local, sizeof local));
    if (o->mode == MODE_EXEC) /* the program has the connected socket: a datagram a write() */
        return cli_exec_connected(loop, o, fd, u.peer_text);
    dx_io_init(&u.sock[0], fd, on_socket, &u);
    u.nsock = 1;
    return run(&u);
}

/* ---- listen -u ---- */

/* cli_opener.failed for UDP sockets (listen -u, relay -u) */
void cli_udp_bind_failed(void *ctx, const dx_addr *a, const dx_listen_opts *lo, int code)
{
    (void)ctx;
    (void)lo;
    char text[DX_ADDR_STRLEN];
    cli_error("listen %s: %s", dx_addr_format(a, text, sizeof text), dx_strerror(code));
}

static int keep(void *ctx, int fd)
{
    struct udp *u = ctx;
    if (u->nsock == MAX_SOCKS) {
        dx__fd_close(fd);
        return 0;
    }
    dx_io_init(&u->sock[u->nsock++], fd, on_socket, u);
    return 0;
}

static int bind_all(struct udp *u)
{
    dx_listen_opts lo = {.reuseport = u->o->reuseport};
    struct cli_opener how = {.open = dx_dgram_bind, .failed = cli_udp_bind_failed, .keep = keep,
                             .ctx = u, .resolve_flags = DX_RESOLVE_DGRAM};
    return cli_open_every(u->o, lo, &how);
}

int cli_udp_listen(const struct options *o, dx_loop *loop)
{
    struct udp u;
    memset(&u, 0, sizeof u);
    u.loop = loop;
    u.o = o;
    u.server = 1;
    u.exec = o->mode == MODE_EXEC;
    u.peer_mode = u.exec || o->keep_listening;
    if (u.exec) {
        int code = exec_init(loop);
        if (code < 0) {
            cli_error("child reaper: %s", dx_strerror(code));
            return EXIT_IO;
        }
    }
    int rc;
    if (o->unix_path) {
        rc = cli_unix_dgram_open(o, 1, u.created, sizeof u.created, NULL, 0);
        if (rc >= 0)
            rc = keep(&u, rc);
    } else {
        rc = bind_all(&u);
    }
    if (rc < 0) {
        for (int i = 0; i < u.nsock; i++)
            dx__fd_close(u.sock[i].fd);
        if (u.exec)
            exec_detach(loop);
        if (rc == DX_ETOOLONG)
            return EXIT_USAGE;
        return cli_exit_code_for(rc, 0) == EXIT_RESOLVE ? EXIT_RESOLVE : EXIT_LISTEN;
    }
    int announce = o->verbose || (!o->unix_path && (o->port_defaulted || dx_parse_port(o->port) == 0));
    for (int i = 0; i < u.nsock && announce; i++) {
        dx_addr me;
        char text[DX_ADDR_STRLEN];
        if (dx_sock_local(u.sock[i].fd, &me) == 0)
            cli_error("listening on %s (%s)", dx_addr_format(&me, text, sizeof text),
                      o->unix_path ? "unix datagrams" : "udp");
    }
    fflush(stderr);
    return run(&u);
}
