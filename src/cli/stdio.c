/* stdio.c: the process around the commands: stdin and stdout switched to
 * non-blocking for the loop and put back as they were on every way out (the
 * flags belong to a file description the shell shares with us); SIGINT,
 * SIGTERM and SIGHUP stop the loop through a self-pipe, so that commands end
 * cleanly (listeners closed, children reaped, -v statistics printed); a
 * second signal ends the process at once. */
#define _GNU_SOURCE
#include "cli.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static int saved_flags[2] = {-1, -1};
static const char *volatile unix_path_to_remove;
static volatile sig_atomic_t stop_signal;
static int wake_pipe[2] = {-1, -1};
static dx_io wake_io;

static void restore_stdio(void)
{
    for (int fd = 0; fd < 2; fd++)
        if (saved_flags[fd] >= 0)
            fcntl(fd, F_SETFL, saved_flags[fd]);
}

static void on_fatal_signal(int sig)
{
    exec_kill_all(); /* --exec children ignoring SIGTERM must not outlive us */
    restore_stdio();
    if (unix_path_to_remove)
        unlink(unix_path_to_remove);
    _exit(EXIT_SIGNAL + sig); /* the documented status, as after the first signal */
}

static void on_stop_signal(int sig)
{
    if (stop_signal || wake_pipe[1] < 0) {
        on_fatal_signal(sig); /* the second one, or no loop to stop */
        return;
    }
    stop_signal = sig;
    int saved = errno;
    (void)!write(wake_pipe[1], "", 1);
    errno = saved;
}

static void on_wake(dx_loop *loop, dx_io *io, int events)
{
    (void)events;
    char buf[16];
    while (read(io->fd, buf, sizeof buf) > 0)
        ;
    dx_loop_stop(loop);
}

void cli_signals_watch(dx_loop *loop)
{
    if (wake_pipe[0] < 0 && pipe2(wake_pipe, O_NONBLOCK | O_CLOEXEC) < 0)
        return; /* signals then simply end the process, as before */
    dx_io_init(&wake_io, wake_pipe[0], on_wake, NULL);
    dx_io_set(loop, &wake_io, DX_READ);
}

void cli_signals_unwatch(dx_loop *loop) { dx_io_stop(loop, &wake_io); }

int cli_stop_signal(void) { return stop_signal; }

int cli_stdin_fd(void) { return STDIN_FILENO; }
int cli_stdout_fd(void) { return STDOUT_FILENO; }
void cli_stdin_never_read(void) {}

void cli_stdio_nonblock(void)
{
    static int done;
    if (done)
        return;
    done = 1;
    for (int fd = 0; fd < 2; fd++) {
#ifdef F_SETPIPE_SZ
        /* a larger stdio pipe: fewer wake-ups between us and the other end
         * of a pipeline (best effort: pipe-max-size may refuse) */
        struct stat st;
        if (fstat(fd, &st) == 0 && S_ISFIFO(st.st_mode) && fcntl(fd, F_GETPIPE_SZ) < (1 << 20))
            (void)fcntl(fd, F_SETPIPE_SZ, 1 << 20);
#endif
        int fl = fcntl(fd, F_GETFL);
        if (fl < 0 || (fl & O_NONBLOCK))
            continue;
        if (fcntl(fd, F_SETFL, fl | O_NONBLOCK) == 0)
            saved_flags[fd] = fl;
    }
    atexit(restore_stdio);
}

/* The peer ended its side: end stdout too, so that the consumer of a pipe
 * (`duplex listen 9000 | tar x`) sees its end of input now, not when duplex
 * exits. fd 1 becomes /dev/null (never a free slot a socket could take),
 * its flags put back first. Nothing to gain, and stdin's flags to keep, when
 * stdout is a terminal or the very file stdin is (a socket from inetd). */
void cli_stdout_close(void)
{
    struct stat in, out;
    if (fstat(STDOUT_FILENO, &out) < 0 || isatty(STDOUT_FILENO))
        return;
    if (fstat(STDIN_FILENO, &in) == 0 && in.st_dev == out.st_dev && in.st_ino == out.st_ino)
        return;
    int nfd = open("/dev/null", O_WRONLY | O_CLOEXEC);
    if (nfd < 0)
        return;
    if (saved_flags[1] >= 0)
        fcntl(STDOUT_FILENO, F_SETFL, saved_flags[1]);
    saved_flags[1] = -1;
    dup2(nfd, STDOUT_FILENO);
    close(nfd);
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
    sa.sa_handler = on_stop_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGHUP, &sa, NULL);
}

void cli_remove_on_exit(const char *path) { unix_path_to_remove = path; }

uint64_t cli_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

int cli_wait_fd(int fd, short events, uint64_t deadline_ms)
{
    for (;;) {
        uint64_t now = cli_now_ms();
        if (now >= deadline_ms)
            return DX_ETIMEDOUT;
        struct pollfd p = {.fd = fd, .events = events};
        /* poll takes an int: a -w of more than 24.8 days waits in steps */
        uint64_t left = deadline_ms - now;
        int rc = poll(&p, 1, left > INT_MAX ? INT_MAX : (int)left);
        if (rc > 0)
            return 0; /* errors and hang-ups show in the I/O that follows */
        if (rc < 0 && errno != EINTR)
            return -errno;
        if (rc < 0 && cli_stop_signal())
            return -EINTR;
    }
}
