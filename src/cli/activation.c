/* activation.c: systemd socket activation for listen and relay: the
 * listening sockets the system opened, handed over as fds 3.. (LISTEN_FDS). */
#define _GNU_SOURCE
#include "cli.h"
#include "os.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#ifndef _WIN32
#include <fcntl.h>
#include <unistd.h>
#endif

#define LISTEN_FDS_START 3 /* SD_LISTEN_FDS_START */

static char fdnames[1024]; /* LISTEN_FDNAMES, ':' between names */

#ifndef _WIN32
/* A decimal number, all of text, in 0..max; else -1. */
static long parse_decimal(const char *text, long max)
{
    char *end;
    errno = 0;
    long v = strtol(text, &end, 10);
    if (!*text || *end || errno || v < 0 || v > max)
        return -1;
    return v;
}
#endif

const char *cli_activation_name(int i)
{
    static char one[256];
    const char *p = fdnames;
    for (; i > 0 && p; i--) {
        p = strchr(p, ':');
        if (p)
            p++;
    }
    if (!p || !*p || *p == ':')
        return NULL;
    size_t n = strcspn(p, ":");
    if (n >= sizeof one)
        n = sizeof one - 1;
    memcpy(one, p, n);
    one[n] = '\0';
    return one;
}

int cli_activation_init(struct options *o)
{
#ifdef _WIN32
    (void)o; /* no socket activation there: LISTEN_FDS is not looked at */
    return 0;
#else
    const char *pid_text = getenv("LISTEN_PID"), *fds_text = getenv("LISTEN_FDS");
    const char *names = getenv("LISTEN_FDNAMES");
    if (!pid_text || !fds_text)
        return 0;
    long pid = parse_decimal(pid_text, 0x7fffffffL);
    long n = parse_decimal(fds_text, 0x7fffffffL);
    if (names)
        snprintf(fdnames, sizeof fdnames, "%s", names);
    /* as sd_listen_fds(1): for us or for no one below us (a child that is
     * also duplex would take our sockets otherwise) */
    unsetenv("LISTEN_PID");
    unsetenv("LISTEN_FDS");
    unsetenv("LISTEN_FDNAMES");
    if (pid != (long)getpid())
        return 0; /* meant for the process that ran us */
    if (n < 0) {
        cli_error("socket activation: LISTEN_FDS='%s' is not a number", fds_text);
        return EXIT_USAGE;
    }
    if (n == 0)
        return 0;
    if (n > MAX_LISTENERS) {
        cli_error("socket activation: %ld sockets (LISTEN_FDS); at most %d are taken", n, MAX_LISTENERS);
        return EXIT_USAGE;
    }
    for (int fd = LISTEN_FDS_START; fd < LISTEN_FDS_START + n; fd++) {
        int flags = fcntl(fd, F_GETFD);
        if (flags < 0 || fcntl(fd, F_SETFD, flags | FD_CLOEXEC) < 0) {
            cli_error("socket activation: descriptor %d (LISTEN_FDS=%ld): %s", fd, n, strerror(errno));
            return EXIT_LISTEN;
        }
    }
    if (o->cmd != CMD_LISTEN && o->cmd != CMD_RELAY)
        return 0; /* connect listens on nothing: the sockets stay unused (and out of children) */
    const char *bad = o->inetd ? "--inetd (the connection is stdin)" : o->udp ? "-u (stream sockets only)"
                      : o->threads > 1 ? "--threads" : NULL;
    if (bad) {
        cli_error("socket activation (LISTEN_FDS): not with %s", bad);
        return EXIT_USAGE;
    }
    o->listen_fds = (int)n;
    cli_info(o, "socket activation: %ld listening socket%s from the system (LISTEN_FDS)%s", n,
             cli_s((unsigned long long)n),
             (o->port && !o->port_defaulted) || o->unix_path ? "; the address arguments are not used" : "");
    return 0;
#endif
}
