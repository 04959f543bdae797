/* stdio.c: stdin and stdout switched to non-blocking for the loop, and put
 * back as they were on every way out (exit, SIGINT, SIGTERM, SIGHUP): the
 * flags belong to a file description the shell shares with us. */
#define _GNU_SOURCE
#include "cli.h"

#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int saved_flags[2] = {-1, -1};
static const char *volatile unix_path_to_remove;

static void restore_stdio(void)
{
    for (int fd = 0; fd < 2; fd++)
        if (saved_flags[fd] >= 0)
            fcntl(fd, F_SETFL, saved_flags[fd]);
}

static void on_fatal_signal(int sig)
{
    restore_stdio();
    if (unix_path_to_remove)
        unlink(unix_path_to_remove);
    signal(sig, SIG_DFL);
    raise(sig);
}

void cli_stdio_nonblock(void)
{
    static int done;
    if (done)
        return;
    done = 1;
    for (int fd = 0; fd < 2; fd++) {
        int fl = fcntl(fd, F_GETFL);
        if (fl < 0 || (fl & O_NONBLOCK))
            continue;
        if (fcntl(fd, F_SETFL, fl | O_NONBLOCK) == 0)
            saved_flags[fd] = fl;
    }
    atexit(restore_stdio);
}

void cli_process_init(void)
{
    /* With fd 0, 1 or 2 closed, the first socket would take its place and
     * stdin/stdout traffic would go to the network: fill them with /dev/null. */
    for (int fd = 0; fd < 3; fd++) {
        if (fcntl(fd, F_GETFD) < 0) {
            int nfd = open("/dev/null", fd == 0 ? O_RDONLY : O_WRONLY);
            if (nfd >= 0 && nfd != fd) {
                dup2(nfd, fd);
                close(nfd);
            }
        }
    }
    /* a closed peer must give EPIPE, never kill the process */
    signal(SIGPIPE, SIG_IGN);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_fatal_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGHUP, &sa, NULL);
}

void cli_remove_on_exit(const char *path) { unix_path_to_remove = path; }
