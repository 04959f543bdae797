/* anchor_tls: a hand-written TLS echo server, one thread, level-triggered
 * epoll, OpenSSL on each socket directly (no bridge): the floor a TLS echo
 * server can reach here, to compare `duplex listen -k --echo --ssl` with.
 *   anchor_tls CERT KEY PORT   (0: pick a free port; prints "listening on 127.0.0.1:PORT")
 * Each wake-up reads what OpenSSL has for the connection and writes it back
 * with SSL_write; what the socket does not take is kept per connection and
 * reading stops until it is flushed. WANT_READ/WANT_WRITE pick the event
 * watched next. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

struct conn {
    SSL *ssl;
    int handshaken;
    char *pending; /* plaintext SSL_write has not taken yet */
    size_t len;
};

static struct conn *conns; /* indexed by descriptor */
static size_t nconns;
static int ep;
static SSL_CTX *ctx;

static void watch(int fd, int op, unsigned events)
{
    struct epoll_event ev = { .events = events, .data.fd = fd };
    if (epoll_ctl(ep, op, fd, &ev) < 0 && op != EPOLL_CTL_DEL) {
        perror("epoll_ctl");
        exit(1);
    }
}

static void close_conn(int fd)
{
    SSL_free(conns[fd].ssl);
    free(conns[fd].pending);
    memset(&conns[fd], 0, sizeof conns[fd]);
    close(fd);
}

/* The event an SSL call that returned r waits for, or 0 on a real error. */
static unsigned wants(struct conn *c, int r)
{
    int e = SSL_get_error(c->ssl, r);
    return e == SSL_ERROR_WANT_READ ? EPOLLIN : e == SSL_ERROR_WANT_WRITE ? EPOLLOUT : 0;
}

/* Write the pending plaintext. 1: all taken, 0: wait for `*ev`, -1: error. */
static int flush(struct conn *c, unsigned *ev)
{
    while (c->len) {
        int w = SSL_write(c->ssl, c->pending, (int)c->len);
        if (w <= 0) {
            *ev = wants(c, w);
            return *ev ? 0 : -1;
        }
        memmove(c->pending, c->pending + w, c->len - (size_t)w);
        c->len -= (size_t)w;
    }
    return 1;
}

static void serve(int fd)
{
    struct conn *c = &conns[fd];
    static char buf[65536];
    unsigned ev = EPOLLIN;
    if (!c->handshaken) {
        int r = SSL_accept(c->ssl);
        if (r != 1) {
            if (!(ev = wants(c, r)))
                close_conn(fd);
            else
                watch(fd, EPOLL_CTL_MOD, ev);
            return;
        }
        c->handshaken = 1;
    }
    if (c->len) {
        int f = flush(c, &ev);
        if (f < 0) {
            close_conn(fd);
            return;
        }
        if (f == 0) {
            watch(fd, EPOLL_CTL_MOD, ev);
            return;
        }
    }
    for (;;) {
        int n = SSL_read(c->ssl, buf, sizeof buf);
        if (n <= 0) {
            ev = wants(c, n);
            if (!ev) {
                close_conn(fd); /* close_notify, EOF or error */
                return;
            }
            break;
        }
        int w = SSL_write(c->ssl, buf, n);
        if (w == n)
            continue;
        if (w <= 0 && !wants(c, w)) {
            close_conn(fd);
            return;
        }
        /* keep what was not taken; read no more until it is */
        size_t done = w > 0 ? (size_t)w : 0, left = (size_t)n - done;
        c->pending = malloc(left);
        if (!c->pending) {
            close_conn(fd);
            return;
        }
        memcpy(c->pending, buf + done, left);
        c->len = left;
        ev = EPOLLOUT;
        break;
    }
    watch(fd, EPOLL_CTL_MOD, ev);
}

int main(int argc, char **argv)
{
    if (argc != 4) {
        fprintf(stderr, "usage: anchor_tls CERT KEY PORT\n");
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    ctx = SSL_CTX_new(TLS_server_method());
    if (!ctx || SSL_CTX_use_certificate_chain_file(ctx, argv[1]) != 1 ||
        SSL_CTX_use_PrivateKey_file(ctx, argv[2], SSL_FILETYPE_PEM) != 1) {
        ERR_print_errors_fp(stderr);
        return 1;
    }
    SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    nconns = rl.rlim_cur == RLIM_INFINITY ? 1u << 20 : (size_t)rl.rlim_cur;
    conns = calloc(nconns, sizeof *conns);
    int ls = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    int one = 1;
    setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((uint16_t)atoi(argv[3])) };
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t alen = sizeof a;
    if (!conns || bind(ls, (struct sockaddr *)&a, sizeof a) < 0 || listen(ls, 4096) < 0 ||
        getsockname(ls, (struct sockaddr *)&a, &alen) < 0) {
        perror("anchor_tls");
        return 1;
    }
    fprintf(stderr, "listening on 127.0.0.1:%d\n", ntohs(a.sin_port));
    ep = epoll_create1(0);
    watch(ls, EPOLL_CTL_ADD, EPOLLIN);
    struct epoll_event evs[256];
    for (;;) {
        int n = epoll_wait(ep, evs, 256, -1);
        for (int i = 0; i < n; i++) {
            int fd = evs[i].data.fd;
            if (fd != ls) {
                serve(fd);
                continue;
            }
            for (;;) {
                int c = accept4(ls, NULL, NULL, SOCK_NONBLOCK);
                if (c < 0)
                    break;
                if ((size_t)c >= nconns || !(conns[c].ssl = SSL_new(ctx))) {
                    close(c);
                    continue;
                }
                setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
                SSL_set_fd(conns[c].ssl, c);
                watch(c, EPOLL_CTL_ADD, EPOLLIN);
            }
        }
    }
}
