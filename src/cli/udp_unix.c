/* udp_unix.c: the sockets of `duplex -U -u PATH` (Unix datagrams; udp.c
 * runs them as it runs UDP). A datagram's reply goes to its sender's own
 * address, so a client binds one: -s PATH, else an autobound abstract name
 * on Linux (nothing to remove; elsewhere a temporary path, removed at exit),
 * as ncat binds /tmp/ncat.XXXXXX. Paths created here are removed at exit,
 * also after SIGINT/SIGTERM (cli_remove_on_exit). Not on Windows (-U is
 * refused there). */
#define _GNU_SOURCE
#include "cli.h"
#include "os.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#ifndef _WIN32
#include <stddef.h>
#include <sys/socket.h>
#include <sys/un.h>
#endif

#ifdef _WIN32
int cli_unix_dgram_open(const struct options *o, int server, char *created, size_t len,
                        char *peer_text, size_t peer_len)
{
    (void)o, (void)server, (void)created, (void)len, (void)peer_text, (void)peer_len;
    cli_error("-U: Unix sockets are not available on %s", DX_OS_NAME);
    return -EAFNOSUPPORT;
}
#else
/* A datagram socket bound to path (a stale socket file replaced). */
static int bind_path(const char *path, int *made)
{
    dx_addr a;
    int rc = dx_addr_unix(&a, path);
    if (rc == 0)
        rc = dx_unix_unlink_stale(path);
    if (rc < 0)
        return rc;
    int fd = dx__sock_open(AF_UNIX, SOCK_DGRAM);
    if (fd < 0)
        return fd;
    if (bind(fd, (const struct sockaddr *)&a.ss, a.len) < 0) {
        int e = -errno;
        close(fd);
        return e;
    }
    *made = path[0] != '@';
    return fd;
}

static void bind_error(const char *what, const char *path, int code)
{
    cli_error("%s %s: %s", what, path,
              code == -ENOTSOCK ? "exists and is not a socket"
              : code == -EADDRINUSE ? "in use by another socket" : dx_strerror(code));
}

/* The client's own address when -s gives none. */
static int bind_any(char *created, size_t len)
{
    int fd = dx__sock_open(AF_UNIX, SOCK_DGRAM);
    if (fd < 0)
        return fd;
#ifdef __linux__
    (void)created, (void)len;
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    /* only the family: the kernel picks an unused abstract name */
    if (bind(fd, (const struct sockaddr *)&sa, sizeof(sa_family_t)) == 0)
        return fd;
#else
    const char *dir = getenv("TMPDIR");
    snprintf(created, len, "%s/duplex.XXXXXX", dir && *dir ? dir : "/tmp");
    int tmp = mkstemp(created);
    if (tmp >= 0) {
        close(tmp);
        unlink(created); /* the name, now unique, becomes the socket */
        dx_addr a;
        if (dx_addr_unix(&a, created) == 0 &&
            bind(fd, (const struct sockaddr *)&a.ss, a.len) == 0) {
            cli_remove_on_exit(created);
            return fd;
        }
    }
    created[0] = '\0';
#endif
    int e = -errno;
    close(fd);
    return e;
}

int cli_unix_dgram_open(const struct options *o, int server, char *created, size_t len,
                        char *peer_text, size_t peer_len)
{
    int made = 0, fd;
    created[0] = '\0';
    if (server) {
        fd = bind_path(o->unix_path, &made);
        if (fd < 0) {
            bind_error("listen", o->unix_path, fd);
            return fd;
        }
        if (made) {
            snprintf(created, len, "%s", o->unix_path);
            cli_remove_on_exit(o->unix_path);
        }
        return fd;
    }
    if (o->source_addr) {
        fd = bind_path(o->source_addr, &made);
        if (fd < 0) {
            bind_error("-s", o->source_addr, fd);
            return fd;
        }
        if (made) {
            snprintf(created, len, "%s", o->source_addr);
            cli_remove_on_exit(o->source_addr);
        }
    } else {
        fd = bind_any(created, len);
        if (fd < 0) {
            cli_error("bind a source address: %s", dx_strerror(fd));
            return fd;
        }
    }
    dx_addr to;
    int rc = dx_addr_unix(&to, o->unix_path);
    if (rc == 0 && connect(fd, (const struct sockaddr *)&to.ss, to.len) < 0)
        rc = -errno;
    if (rc < 0) {
        cli_error("connect %s: %s", o->unix_path, dx_strerror(rc));
        close(fd);
        if (created[0]) {
            unlink(created);
            cli_remove_on_exit(NULL);
            created[0] = '\0';
        }
        return rc;
    }
    snprintf(peer_text, peer_len, "%s", o->unix_path);
    return fd;
}
#endif

int cli_unix_dgram_unnamed(const dx_addr *a)
{
#ifdef _WIN32
    (void)a;
    return 0;
#else
    /* Linux gives such a sender no address at all (length 0) */
    return (size_t)a->len <= offsetof(struct sockaddr_un, sun_path);
#endif
}
