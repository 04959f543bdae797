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

/* relay --serial SPEC: a character device as the relay's target (ser2net's
 * job): opened O_NOCTTY|O_NONBLOCK at start, termios set from SPEC (speed,
 * data bits, parity, stop bits, raw), restored at exit. */
#ifndef _WIN32
static const struct { unsigned long bps; speed_t code; } speeds[] = {
    {50, B50}, {75, B75}, {110, B110}, {134, B134}, {150, B150}, {200, B200}, {300, B300},
    {600, B600}, {1200, B1200}, {1800, B1800}, {2400, B2400}, {4800, B4800}, {9600, B9600},
    {19200, B19200}, {38400, B38400}, {57600, B57600}, {115200, B115200}, {230400, B230400},
#ifdef B460800
    {460800, B460800}, {500000, B500000}, {576000, B576000}, {921600, B921600},
    {1000000, B1000000}, {1152000, B1152000}, {1500000, B1500000}, {2000000, B2000000},
    {2500000, B2500000}, {3000000, B3000000}, {3500000, B3500000}, {4000000, B4000000},
#endif
};

/* "115200,8N1" (",8N1" may be left out: 8N1): 0, or -1 when malformed. */
static int serial_parse(const char *spec, speed_t *speed, tcflag_t *size, int *parity, int *stop2)
{
    char *end;
    unsigned long bps = strtoul(spec, &end, 10);
    size_t i = 0;
    while (i < sizeof speeds / sizeof speeds[0] && speeds[i].bps != bps)
        i++;
    if (end == spec || i == sizeof speeds / sizeof speeds[0])
        return -1;
    *speed = speeds[i].code;
    const char *f = *end == ',' ? end + 1 : *end ? NULL : "8N1";
    if (!f || strlen(f) != 3 || f[0] < '5' || f[0] > '8' || !strchr("NEOneo", f[1]) || !f[1] ||
        (f[2] != '1' && f[2] != '2'))
        return -1;
    static const tcflag_t sizes[] = {CS5, CS6, CS7, CS8};
    *size = sizes[f[0] - '5'];
    *parity = f[1] == 'N' || f[1] == 'n' ? 0 : f[1] == 'E' || f[1] == 'e' ? 'E' : 'O';
    *stop2 = f[2] == '2';
    return 0;
}

int cli_serial_check(const char *spec)
{
    speed_t sp;
    tcflag_t sz;
    int par, st;
    return serial_parse(spec, &sp, &sz, &par, &st);
}

static struct termios serial_saved;
static int serial_fd = -1;

int cli_serial_open(const struct options *o, const char *path)
{
    speed_t speed;
    tcflag_t size;
    int parity, stop2;
    if (serial_parse(o->serial, &speed, &size, &parity, &stop2) < 0)
        return -EXIT_USAGE; /* options.c checked it */
    int fd = open(path, O_RDWR | O_NOCTTY | O_NONBLOCK | O_CLOEXEC);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) < 0 || !S_ISCHR(st.st_mode) || tcgetattr(fd, &serial_saved) < 0) {
        cli_error("--serial %s: %s", path,
                  fd >= 0 && !S_ISCHR(st.st_mode) ? "not a character device" : strerror(errno));
        if (fd >= 0)
            close(fd);
        return -EXIT_CONNECT;
    }
    struct termios t = serial_saved;
    cfmakeraw(&t);
    t.c_cflag &= ~(tcflag_t)(CSIZE | PARENB | PARODD | CSTOPB | CRTSCTS);
    t.c_cflag |= size | CLOCAL | CREAD | (parity ? PARENB : 0) | (parity == 'O' ? PARODD : 0) |
                 (stop2 ? CSTOPB : 0);
    t.c_cc[VMIN] = 1;
    t.c_cc[VTIME] = 0;
    if (cfsetispeed(&t, speed) < 0 || cfsetospeed(&t, speed) < 0 || tcsetattr(fd, TCSANOW, &t) < 0) {
        cli_error("--serial %s %s: %s", path, o->serial, strerror(errno));
        close(fd);
        return -EXIT_CONNECT;
    }
    cli_info(o, "%s: %s, raw", path, o->serial);
    serial_fd = fd;
    return fd;
}

int cli_serial_dup(void)
{
    int fd = fcntl(serial_fd, F_DUPFD_CLOEXEC, 0);
    return fd < 0 ? -errno : fd;
}

void cli_serial_close(void)
{
    if (serial_fd < 0)
        return;
    tcsetattr(serial_fd, TCSANOW, &serial_saved); /* as we found it */
    close(serial_fd);
    serial_fd = -1;
}
#else
int cli_serial_check(const char *spec)
{
    (void)spec;
    return -1;
}

int cli_serial_open(const struct options *o, const char *path)
{
    (void)o;
    (void)path;
    return -EXIT_USAGE;
}

int cli_serial_dup(void) { return -ENOSYS; }

void cli_serial_close(void) {}
#endif
