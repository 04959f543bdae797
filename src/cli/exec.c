/* exec.c: --exec / --sh-exec: a process per client with the socket as its
 * stdin and stdout (inetd style). The child writes straight to the socket,
 * so nothing it prints after the client's half-close can be lost (ncat's
 * exec mode lost such output through its relay). Children are reaped from
 * SIGCHLD: never zombies. */
#define _GNU_SOURCE
#include "cli.h"

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

/* Children still running: to stop them when the server stops, and to watch
 * their connections for --idle-timeout. A fixed table (reserved address
 * space: untouched slots cost no memory) because the SIGCHLD handler clears
 * slots at any moment and must never meet one being moved by realloc; the
 * loops of --threads claim slots under a lock. */
#define MAX_CHILDREN 65536
static atomic_int live_children;
static volatile pid_t child_pid[MAX_CHILDREN]; /* 0: free; cleared by the handler */
static int child_sock[MAX_CHILDREN];           /* the server's copy of its socket + 1; 0: none */
static atomic_size_t child_used;               /* slots ever used: scans stop there */
static pthread_mutex_t child_lock = PTHREAD_MUTEX_INITIALIZER;

static void forget_child(pid_t pid)
{
    size_t used = atomic_load(&child_used);
    for (size_t i = 0; i < used; i++)
        if (child_pid[i] == pid)
            child_pid[i] = 0;
}

static void on_sigchld(int sig)
{
    (void)sig;
    int saved = errno;
    pid_t pid;
    while ((pid = waitpid(-1, NULL, WNOHANG)) > 0) {
        atomic_fetch_sub(&live_children, 1);
        forget_child(pid);
    }
    errno = saved;
}

/* The server's copy of the socket of a child that has ended. Lock held. */
static void drop_sock(size_t i)
{
    if (child_sock[i]) {
        close(child_sock[i] - 1);
        child_sock[i] = 0;
    }
}

/* Called with SIGCHLD blocked, so the child cannot be reaped before it is
 * in the table. */
static void remember_child(pid_t pid)
{
    pthread_mutex_lock(&child_lock);
    size_t used = atomic_load(&child_used), i;
    for (i = 0; i < used && child_pid[i] != 0; i++)
        ;
    if (i == used && used < MAX_CHILDREN)
        atomic_store(&child_used, ++used);
    if (i < used) {
        drop_sock(i);
        child_pid[i] = pid;
    }
    pthread_mutex_unlock(&child_lock);
}

void exec_stop_children(int timeout_ms)
{
    if (atomic_load(&live_children) <= 0)
        return;
    size_t used = atomic_load(&child_used);
    for (size_t i = 0; i < used; i++)
        if (child_pid[i] > 0)
            kill(-child_pid[i], SIGTERM);
    /* wait for them (the SIGCHLD handler reaps), then insist */
    for (int waited = 0; atomic_load(&live_children) > 0 && waited < timeout_ms; waited += 10)
        usleep(10000);
    for (size_t i = 0; i < used; i++)
        if (child_pid[i] > 0)
            kill(-child_pid[i], SIGKILL);
    for (int waited = 0; atomic_load(&live_children) > 0 && waited < 1000; waited += 10)
        usleep(10000);
}

int exec_watch_idle(pid_t pid, int fd, const dx_addr *peer)
{
#ifdef __linux__
    int family = peer->ss.ss_family;
    if (family != AF_INET && family != AF_INET6)
        return 0; /* TCP_INFO is what tells idleness */
    int kept = 0;
    pthread_mutex_lock(&child_lock);
    size_t used = atomic_load(&child_used);
    for (size_t i = 0; i < used && !kept; i++) {
        if (child_pid[i] == pid) { /* not reaped yet: still ours to watch */
            drop_sock(i);
            child_sock[i] = fd + 1;
            kept = 1;
        }
    }
    pthread_mutex_unlock(&child_lock);
    return kept;
#else
    (void)pid, (void)fd, (void)peer;
    return 0;
#endif
}

void exec_close_idle(const struct options *o, uint64_t limit_ms)
{
#ifdef __linux__
    pthread_mutex_lock(&child_lock);
    size_t used = atomic_load(&child_used);
    for (size_t i = 0; i < used; i++) {
        if (!child_sock[i])
            continue;
        pid_t pid = child_pid[i];
        if (pid == 0) { /* the child has ended */
            drop_sock(i);
            continue;
        }
        int fd = child_sock[i] - 1;
        struct tcp_info ti;
        socklen_t len = sizeof ti;
        if (getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &len) < 0)
            continue;
        /* the kernel's clock of the connection: milliseconds since data last
         * came in and went out, whoever moved it (the child, not us) */
        uint32_t idle = ti.tcpi_last_data_recv < ti.tcpi_last_data_sent ? ti.tcpi_last_data_recv
                                                                       : ti.tcpi_last_data_sent;
        if (idle < limit_ms)
            continue;
        dx_addr peer;
        char name[DX_ADDR_STRLEN] = "a client";
        if (dx_sock_peer(fd, &peer) == 0)
            dx_addr_format(&peer, name, sizeof name);
        cli_info(o, "%s: closed: idle for %.3g s (process %ld stopped)", name,
                 (double)limit_ms / 1000.0, (long)pid);
        shutdown(fd, SHUT_RDWR); /* the client sees the end at once */
        kill(-pid, SIGTERM);
        drop_sock(i);
    }
    pthread_mutex_unlock(&child_lock);
#else
    (void)o, (void)limit_ms;
#endif
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

int exec_children(void) { return atomic_load(&live_children); }

static void set_env(const char *name, const char *value) { setenv(name, value, 1); }

/* DUPLEX_<WHO>_ADDR/_PORT and NCAT_<NCAT_WHO>_ADDR/_PORT for an IP address
 * (the host without [brackets]); a Unix peer gives DUPLEX_<WHO>_ADDR only. */
static void export_endpoint(const char *who, const char *ncat_who, const dx_addr *a)
{
    char text[DX_ADDR_STRLEN], name[32], port[16];
    dx_addr_format(a, text, sizeof text);
    int p = dx_addr_port(a);
    char *host = text;
    if (p >= 0) {
        char *colon = strrchr(text, ':');
        if (colon)
            *colon = '\0';
        if (host[0] == '[') { /* [v6] -> v6 */
            host++;
            host[strlen(host) - 1] = '\0';
        }
    }
    snprintf(name, sizeof name, "DUPLEX_%s_ADDR", who);
    set_env(name, host);
    if (p < 0)
        return;
    snprintf(port, sizeof port, "%d", p);
    snprintf(name, sizeof name, "DUPLEX_%s_PORT", who);
    set_env(name, port);
    snprintf(name, sizeof name, "NCAT_%s_ADDR", ncat_who);
    set_env(name, host);
    snprintf(name, sizeof name, "NCAT_%s_PORT", ncat_who);
    set_env(name, port);
}

/* In the child: environment with both ends of the connection (ncat's names
 * too, so scripts written for ncat -e keep working). local: the connection's
 * own address when fd is not the connection (a TLS bridge), else NULL. */
static void export_addresses(int fd, const dx_addr *peer, const dx_addr *local)
{
    dx_addr mine;
    export_endpoint("PEER", "REMOTE", peer);
    if (!local && dx_sock_local(fd, &mine) == 0)
        local = &mine;
    if (local && dx_addr_port(local) >= 0)
        export_endpoint("LOCAL", "LOCAL", local);
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
    atomic_fetch_add(&live_children, 1);
    sigset_t chld, old;
    sigemptyset(&chld);
    sigaddset(&chld, SIGCHLD);
    sigprocmask(SIG_BLOCK, &chld, &old); /* remembered before it can be reaped */
    pid_t pid = fork();
    if (pid < 0) {
        atomic_fetch_sub(&live_children, 1);
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

pid_t exec_client(const struct options *o, int fd, const dx_addr *peer, const dx_addr *local)
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
    export_addresses(STDIN_FILENO, peer, local);
    if (o->exec_shell)
        execl("/bin/sh", "sh", "-c", o->exec_cmd, (char *)NULL);
    else
        run_plain(o->exec_cmd);
    fprintf(stderr, "duplex: exec %s: %s\n", o->exec_cmd, strerror(errno));
    _exit(127);
}
