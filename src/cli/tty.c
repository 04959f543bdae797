/* tty.c: terminals as endpoints. connect --pty LINK: a pseudo-terminal
 * whose slave is linked at LINK, copied to and from the connection (socat's
 * PTY,link=LINK,raw: a virtual serial port over the network). The master
 * becomes the session's stdin and stdout, so session.c copies it as it
 * copies a terminal. duplex keeps a descriptor of the slave open itself, as
 * socat does (1.7.4: checked): a program that closes LINK does not end the
 * session (with no slave open the master would read EIO, an end of input
 * for good); the next program to open LINK
 * gets what arrived meanwhile (the pty holds a few KiB, then the connection
 * is not read: backpressure). */
#define _GNU_SOURCE
#include "cli.h"
#include "os.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifndef _WIN32
#include <fcntl.h>
#include <poll.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <termios.h>
#include <unistd.h>

static char link_path[4096]; /* made by us: removed at exit */
static int slave_fd = -1;

/* LINK may be replaced only when it is a symbolic link to a pseudo-terminal
 * that no longer exists (left by a duplex that was killed). 0, or
 * EXIT_USAGE after saying why. */
static int link_free(const char *path)
{
    struct stat st;
    if (lstat(path, &st) < 0)
        return errno == ENOENT ? 0 : (cli_error("--pty %s: %s", path, strerror(errno)), EXIT_USAGE);
    char target[256];
    ssize_t n = S_ISLNK(st.st_mode) ? readlink(path, target, sizeof target - 1) : -1;
    if (n < 0) {
        cli_error("--pty %s: exists and is not a symbolic link: not replaced", path);
        return EXIT_USAGE;
    }
    target[n] = '\0';
    if (strncmp(target, "/dev/pts/", 9) != 0 || stat(target, &st) == 0) {
        cli_error("--pty %s: exists (a link to %s%s): not replaced", path, target,
                  strncmp(target, "/dev/pts/", 9) == 0 ? ", a pseudo-terminal in use" : "");
        return EXIT_USAGE;
    }
    if (unlink(path) < 0) {
        cli_error("--pty %s: cannot remove the stale link: %s", path, strerror(errno));
        return EXIT_USAGE;
    }
    return 0;
}

int cli_pty_open(const struct options *o)
{
    int rc = link_free(o->pty_link);
    if (rc)
        return rc;
    int m = posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC);
    const char *name = NULL;
    if (m < 0 || grantpt(m) < 0 || unlockpt(m) < 0 || !(name = ptsname(m))) {
        cli_error("--pty: cannot make a pseudo-terminal: %s", strerror(errno));
        if (m >= 0)
            close(m);
        return EXIT_IO;
    }
    slave_fd = open(name, O_RDWR | O_NOCTTY | O_CLOEXEC);
    struct termios t;
    if (slave_fd < 0 || tcgetattr(slave_fd, &t) < 0) {
        cli_error("--pty: %s: %s", name, strerror(errno));
        close(m);
        return EXIT_IO;
    }
    cfmakeraw(&t); /* bytes as they are: no echo, no line editing, no CR/LF mapping */
    if (tcsetattr(slave_fd, TCSANOW, &t) < 0 || symlink(name, o->pty_link) < 0) {
        cli_error("--pty %s -> %s: %s", o->pty_link, name, strerror(errno));
        close(m);
        return EXIT_IO;
    }
    snprintf(link_path, sizeof link_path, "%s", o->pty_link);
    cli_info(o, "pseudo-terminal %s, linked at %s", name, o->pty_link);
    /* the master is the session's stdin and stdout */
    (void)fcntl(m, F_SETFL, fcntl(m, F_GETFL) | O_NONBLOCK);
    if (dup2(m, STDIN_FILENO) < 0 || dup2(m, STDOUT_FILENO) < 0) {
        cli_error("--pty: %s", strerror(errno));
        close(m);
        cli_pty_close();
        return EXIT_IO;
    }
    close(m);
    return 0;
}

/* The connection is over: what it sent may still wait in the pty for the
 * program on LINK (the kernel holds up to 640 KiB). Closing the master would
 * drop it, so wait until the slave's input queue stays empty (read twice,
 * 50 ms apart), at most PTY_DRAIN_MS, or until a stop signal. */
#define PTY_DRAIN_MS 10000

void cli_pty_drain(void)
{
    if (slave_fd < 0)
        return;
    int empty = 0;
    for (uint64_t end = cli_now_ms() + PTY_DRAIN_MS; cli_now_ms() < end && !cli_stop_signal();) {
        int n = 0;
        if (ioctl(slave_fd, FIONREAD, &n) < 0)
            return;
        if (n == 0 && ++empty == 2)
            return;
        if (n > 0)
            empty = 0;
        poll(NULL, 0, 50);
    }
}

void cli_pty_close(void)
{
    if (link_path[0])
        unlink(link_path);
    link_path[0] = '\0';
    if (slave_fd >= 0)
        close(slave_fd);
    slave_fd = -1;
}
#else
void cli_pty_drain(void) {}

int cli_pty_open(const struct options *o)
{
    (void)o;
    return EXIT_USAGE; /* refused by options.c already */
}

void cli_pty_close(void) {}
#endif
