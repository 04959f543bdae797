/* anchor_epoll: a hand-written echo server, one thread, level-triggered epoll.
 *   anchor_epoll PORT     (0: pick a free port; prints "listening on 127.0.0.1:PORT")
 * Reads into one shared buffer and writes straight back; what the socket does not
 * take is kept per connection, and reading from that connection stops until it
 * is flushed. */
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

struct conn {
    char *pending; /* bytes the socket did not take yet */
    size_t len, off;
};

static struct conn *conns; /* indexed by descriptor */
static size_t nconns;
static int ep;

static void ctl(int op, int fd, unsigned events)
{
    struct epoll_event ev = { .events = events, .data.fd = fd };
    if (epoll_ctl(ep, op, fd, &ev) < 0 && op != EPOLL_CTL_DEL) {
        perror("epoll_ctl");
        exit(1);
    }
}

static void close_conn(int fd)
{
    free(conns[fd].pending);
    memset(&conns[fd], 0, sizeof conns[fd]);
    close(fd);
}

/* Write fd's pending bytes. 1: all written, 0: some left, -1: error. */
static int flush(int fd)
{
    struct conn *c = &conns[fd];
    while (c->off < c->len) {
        ssize_t w = send(fd, c->pending + c->off, c->len - c->off, MSG_NOSIGNAL);
        if (w < 0)
            return errno == EAGAIN || errno == EWOULDBLOCK ? 0 : errno == EINTR ? flush(fd) : -1;
        c->off += (size_t)w;
    }
    free(c->pending);
    c->pending = NULL;
    c->len = c->off = 0;
    return 1;
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: anchor_epoll PORT\n");
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    nconns = rl.rlim_cur;
    conns = calloc(nconns, sizeof *conns);

    int lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int one = 1;
    setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons((uint16_t)atoi(argv[1])) };
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t sl = sizeof sa;
    if (bind(lfd, (struct sockaddr *)&sa, sizeof sa) < 0 || listen(lfd, SOMAXCONN) < 0 ||
        getsockname(lfd, (struct sockaddr *)&sa, &sl) < 0) {
        perror("listen");
        return 1;
    }
    fprintf(stderr, "listening on 127.0.0.1:%u\n", ntohs(sa.sin_port));

    ep = epoll_create1(EPOLL_CLOEXEC);
    ctl(EPOLL_CTL_ADD, lfd, EPOLLIN);
    static char buf[65536];
    struct epoll_event evs[1024];
    for (;;) {
        int n = epoll_wait(ep, evs, 1024, -1);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            perror("epoll_wait");
            return 1;
        }
        for (int i = 0; i < n; i++) {
            int fd = evs[i].data.fd;
            if (fd == lfd) {
                for (;;) {
                    int c = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
                    if (c < 0)
                        break; /* EAGAIN, or EMFILE: try again on the next wakeup */
                    if ((size_t)c >= nconns) {
                        close(c);
                        continue;
                    }
                    setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
                    ctl(EPOLL_CTL_ADD, c, EPOLLIN);
                }
                continue;
            }
            struct conn *c = &conns[fd];
            if (c->pending) { /* EPOLLOUT: finish the old write, then read again */
                int r = flush(fd);
                if (r < 0)
                    close_conn(fd);
                else if (r > 0)
                    ctl(EPOLL_CTL_MOD, fd, EPOLLIN);
                continue;
            }
            ssize_t r = recv(fd, buf, sizeof buf, 0);
            if (r <= 0) {
                if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
                    continue;
                close_conn(fd);
                continue;
            }
            ssize_t w = send(fd, buf, (size_t)r, MSG_NOSIGNAL);
            if (w < 0 && errno != EAGAIN && errno != EWOULDBLOCK) {
                close_conn(fd);
                continue;
            }
            if (w < 0)
                w = 0;
            if (w < r) {
                c->len = (size_t)(r - w);
                c->off = 0;
                c->pending = malloc(c->len);
                memcpy(c->pending, buf + w, c->len);
                ctl(EPOLL_CTL_MOD, fd, EPOLLOUT);
            }
        }
    }
}
