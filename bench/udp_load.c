/* udp_load.c: the two ends of bench/relay_udp.sh, in C so that neither is
 * the bottleneck of what it measures (a relay's datagrams/s).
 *   udp_load echo PORT         answer each datagram on 127.0.0.1:PORT with itself
 *   udp_load load PORT CLIENTS WINDOW SECS SIZE
 *                              CLIENTS sockets, each keeping WINDOW datagrams of
 *                              SIZE bytes in flight to 127.0.0.1:PORT; prints
 *                              "answered/s lost" (a client that hears nothing
 *                              for 200 ms counts its window lost and sends anew).
 *                              Each answer is checked: it must carry the
 *                              client's own number. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static struct sockaddr_in loopback(int port)
{
    struct sockaddr_in a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_port = htons((uint16_t)port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    return a;
}

static int echo(int port)
{
    int fd = socket(AF_INET, SOCK_DGRAM, 0);
    int big = 4 << 20;
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &big, sizeof big);
    struct sockaddr_in a = loopback(port);
    if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof a) < 0) {
        perror("echo: bind");
        return 1;
    }
    static char buf[65536];
    for (;;) {
        struct sockaddr_in from;
        socklen_t len = sizeof from;
        ssize_t n = recvfrom(fd, buf, sizeof buf, 0, (struct sockaddr *)&from, &len);
        if (n >= 0)
            sendto(fd, buf, (size_t)n, 0, (struct sockaddr *)&from, len);
    }
}

struct client {
    int fd, inflight;
    uint32_t id;
    double last;
};

static int load(int port, int nclients, int window, double secs, size_t size)
{
    if (size < 4)
        size = 4;
    struct client *c = calloc((size_t)nclients, sizeof *c);
    char *buf = malloc(65536), *out = malloc(size);
    int ep = epoll_create1(0);
    struct sockaddr_in to = loopback(port);
    memset(out, 'x', size);
    for (int i = 0; i < nclients; i++) {
        c[i].fd = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK, 0);
        c[i].id = (uint32_t)i;
        if (c[i].fd < 0 || connect(c[i].fd, (struct sockaddr *)&to, sizeof to) < 0) {
            perror("load: socket");
            return 1;
        }
        struct epoll_event ev = {.events = EPOLLIN, .data.u32 = (uint32_t)i};
        epoll_ctl(ep, EPOLL_CTL_ADD, c[i].fd, &ev);
    }
    unsigned long long answered = 0, lost = 0, wrong = 0;
    double start = now(), end = start + secs;
    for (int i = 0; i < nclients; i++) {
        memcpy(out, &c[i].id, 4);
        for (; c[i].inflight < window; c[i].inflight++)
            send(c[i].fd, out, size, 0);
        c[i].last = start;
    }
    struct epoll_event evs[256];
    double t;
    while ((t = now()) < end) {
        int n = epoll_wait(ep, evs, 256, 50);
        for (int k = 0; k < n; k++) {
            struct client *cl = &c[evs[k].data.u32];
            ssize_t r;
            while ((r = recv(cl->fd, buf, 65536, 0)) >= 0) {
                uint32_t id;
                memcpy(&id, buf, 4);
                if (r != (ssize_t)size || id != cl->id)
                    wrong++;
                answered++;
                cl->inflight--;
            }
            memcpy(out, &cl->id, 4);
            for (; cl->inflight < window; cl->inflight++)
                send(cl->fd, out, size, 0);
            cl->last = t;
        }
        for (int i = 0; i < nclients; i++) {
            if (t - c[i].last > 0.2) { /* lost: start the window again */
                lost += (unsigned long long)c[i].inflight;
                memcpy(out, &c[i].id, 4);
                for (c[i].inflight = 0; c[i].inflight < window; c[i].inflight++)
                    send(c[i].fd, out, size, 0);
                c[i].last = t;
            }
        }
    }
    printf("%.0f %llu %llu\n", (double)answered / (now() - start), lost, wrong);
    return wrong ? 1 : 0;
}

int main(int argc, char **argv)
{
    if (argc == 3 && strcmp(argv[1], "echo") == 0)
        return echo(atoi(argv[2]));
    if (argc == 7 && strcmp(argv[1], "load") == 0)
        return load(atoi(argv[2]), atoi(argv[3]), atoi(argv[4]), atof(argv[5]),
                    (size_t)atol(argv[6]));
    fprintf(stderr, "usage: udp_load echo PORT | load PORT CLIENTS WINDOW SECS SIZE\n");
    return 2;
}
