/* exec.c: --exec / --sh-exec: a process per client with the socket as its
 * stdin and stdout (inetd style). The child writes straight to the socket,
 * so nothing it prints after the client's half-close can be lost (ncat's
 * exec mode lost such output through its relay). Children are reaped from
 * SIGCHLD: never zombies. */
#define _GNU_SOURCE
#include "cli.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static volatile sig_atomic_t live_children;
/* Children still running, to stop them when the server stops. Slots are
 * filled by the main thread and cleared (set to 0) by the SIGCHLD handler. */
static volatile pid_t *child_pids;
static size_t child_slots;

static void forget_child(pid_t pid)
{
    for (size_t i = 0; i < child_slots; i++)
        if (child_pids[i] == pid)
            child_pids[i] = 0;
}

static void on_sigchld(int sig)
{
    (void)sig;
    int saved = errno;
    pid_t pid;
    while ((pid = waitpid(-1, NULL, WNOHANG)) > 0) {
        live_children--;
        forget_child(pid);
    }
    errno = saved;
}

static void remember_child(pid_t pid)
{
    for (size_t i = 0; i < child_slots; i++) {
        if (child_pids[i] == 0) {
            child_pids[i] = pid;
            return;
        }
    }
    /* grow with SIGCHLD blocked: the handler must not see a half-made array */
    sigset_t chld, old;
    sigemptyset(&chld);
    sigaddset(&chld, SIGCHLD);
    sigprocmask(SIG_BLOCK, &chld, &old);
    size_t n = child_slots ? child_slots * 2 : 64;
    pid_t *p = realloc((void *)child_pids, n * sizeof *p);
    if (p) {
        memset(p + child_slots, 0, (n - child_slots) * sizeof *p);
        p[child_slots] = pid;
        child_pids = p;
        child_slots = n;
    }
    sigprocmask(SIG_SETMASK, &old, NULL);
}

void exec_stop_children(int timeout_ms)
{
    if (live_children <= 0)
        return;
    for (size_t i = 0; i < child_slots; i++)
        if (child_pids[i] > 0)
            kill(-child_pids[i], SIGTERM);
    /* wait for them (the SIGCHLD handler reaps), then insist */
    for (int waited = 0; live_children > 0 && waited < timeout_ms; waited += 10)
        usleep(10000);
    for (size_t i = 0; i < child_slots; i++)
        if (child_pids[i] > 0)
            kill(-child_pids[i], SIGKILL);
    for (int waited = 0; live_children > 0 && waited < 1000; waited += 10)
        usleep(10000);
}

void exec_init(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_sigchld;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_RESTART | SA_NOCLDSTOP;
    sigaction(SIGCHLD, &sa, NULL);
}

int exec_children(void) { return (int)live_children; }

static void set_env(const char *name, const char *value) { setenv(name, value, 1); }

/* In the child: environment with both ends of the connection (ncat's names
 * too, so scripts written for ncat -e keep working). */
static void export_addresses(int fd, const dx_addr *peer)
{
    char text[DX_ADDR_STRLEN], port[16];
    dx_addr local;
    dx_addr_format(peer, text, sizeof text);
    int pport = dx_addr_port(peer);
    if (pport >= 0) {
        char *colon = strrchr(text, ':');
        if (colon)
            *colon = '\0';
        char *host = text;
        if (host[0] == '[') { /* [v6] -> v6 */
            host++;
            host[strlen(host) - 1] = '\0';
        }
        snprintf(port, sizeof port, "%d", pport);
        set_env("DUPLEX_PEER_ADDR", host);
        set_env("DUPLEX_PEER_PORT", port);
        set_env("NCAT_REMOTE_ADDR", host);
        set_env("NCAT_REMOTE_PORT", port);
    } else {
        set_env("DUPLEX_PEER_ADDR", text);
    }
    if (dx_sock_local(fd, &local) == 0 && dx_addr_port(&local) >= 0) {
        dx_addr_format(&local, text, sizeof text);
        char *colon = strrchr(text, ':');
        if (colon) {
            snprintf(port, sizeof port, "%s", colon + 1);
            *colon = '\0';
        }
        char *host = text;
        if (host[0] == '[') {
            host++;
            host[strlen(host) - 1] = '\0';
        }
        set_env("DUPLEX_LOCAL_ADDR", host);
        set_env("DUPLEX_LOCAL_PORT", port);
        set_env("NCAT_LOCAL_ADDR", host);
        set_env("NCAT_LOCAL_PORT", port);
    }
}

/* --exec CMD: split on blanks, no shell (quote-free, like ncat -e). */
static void run_plain(const char *cmd)
{
    char *copy = strdup(cmd);
    char *argv[64];
    int argc = 0;
    for (char *tok = strtok(copy, " \t"); tok && argc < 63; tok = strtok(NULL, " \t"))
        argv[argc++] = tok;
    argv[argc] = NULL;
    if (argc == 0)
        _exit(127);
    execvp(argv[0], argv);
}

pid_t exec_fork(void)
{
    /* count before fork so the SIGCHLD of a quick child cannot come first */
    live_children++;
    sigset_t chld, old;
    sigemptyset(&chld);
    sigaddset(&chld, SIGCHLD);
    sigprocmask(SIG_BLOCK, &chld, &old); /* remembered before it can be reaped */
    pid_t pid = fork();
    if (pid < 0) {
        live_children--;
        sigprocmask(SIG_SETMASK, &old, NULL);
        return -1;
    }
    /* each child leads its own process group, so that stopping it stops
     * what it started too (sh -c forks its commands) */
    if (pid == 0)
        setpgid(0, 0);
    if (pid > 0) {
        setpgid(pid, pid); /* both sides: whichever runs first */
        remember_child(pid);
    }
    sigprocmask(SIG_SETMASK, &old, NULL);
    if (pid == 0) {
        signal(SIGPIPE, SIG_DFL);
        signal(SIGCHLD, SIG_DFL);
        signal(SIGINT, SIG_DFL);
        signal(SIGTERM, SIG_DFL);
        signal(SIGHUP, SIG_DFL);
    }
    return pid;
}

pid_t exec_client(const struct options *o, int fd, const dx_addr *peer)
{
    char name[DX_ADDR_STRLEN];
    dx_addr_format(peer, name, sizeof name);
    pid_t pid = exec_fork();
    if (pid < 0) {
        cli_error("%s: fork: %s", name, strerror(errno));
        return -1;
    }
    if (pid > 0)
        return pid;

    /* child: the socket becomes stdin and stdout, blocking as programs expect */
    dx_set_nonblock(fd, 0);
    if (dup2(fd, STDIN_FILENO) < 0 || dup2(fd, STDOUT_FILENO) < 0)
        _exit(126);
    if (fd > STDERR_FILENO)
        close(fd);
    export_addresses(STDIN_FILENO, peer);
    if (o->exec_shell)
        execl("/bin/sh", "sh", "-c", o->exec_cmd, (char *)NULL);
    else
        run_plain(o->exec_cmd);
    fprintf(stderr, "duplex: exec %s: %s\n", o->exec_cmd, strerror(errno));
    _exit(127);
}
