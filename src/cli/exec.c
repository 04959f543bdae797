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
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

/* Children still running: to stop them when the server stops, and to watch
 * their connections for --idle-timeout. One reaper: the SIGCHLD handler only
 * wakes the first server loop (a byte in chld_pipe), which waits for the
 * children under child_lock; a child is forked and recorded under that lock
 * too, so whichever thread forks it and whichever loop reaps it, it is in the
 * table before it can be reaped (--threads). A fixed table (reserved address
 * space: untouched slots cost no memory) because a second stop signal reads
 * it from a handler (exec_kill_all) and must never meet one being moved by
 * realloc. */
#define MAX_CHILDREN 65536
static atomic_int live_children;
static _Atomic pid_t child_pid[MAX_CHILDREN]; /* 0: free; written under child_lock */
static int child_sock[MAX_CHILDREN];          /* the server's copy of its socket + 1; 0: none */
static atomic_size_t child_used;              /* slots ever used: scans stop there */
static pthread_mutex_t child_lock = PTHREAD_MUTEX_INITIALIZER;
static int chld_pipe[2] = {-1, -1}; /* SIGCHLD -> the reaper's loop */
static int fail_pipe[2] = {-1, -1}; /* a child whose exec failed writes its errno here */
static dx_io reaper_io;
static dx_loop *reaper_loop;
static atomic_ulong exec_failures;

static void on_sigchld(int sig)
{
    (void)sig;
    int saved = errno;
    (void)!write(chld_pipe[1], "", 1); /* full: the reaper is woken already */
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

void exec_reap(void)
{
    pthread_mutex_lock(&child_lock);
    size_t used = atomic_load(&child_used);
    pid_t pid;
    while ((pid = waitpid(-1, NULL, WNOHANG)) > 0) {
        for (size_t i = 0; i < used; i++) {
            if (child_pid[i] == pid) {
                child_pid[i] = 0;
                drop_sock(i); /* its client sees the end now, not at the next sweep */
                atomic_fetch_sub(&live_children, 1);
                break;
            }
        }
    }
    /* written by the children before they exited, so complete by now */
    int err;
    while (read(fail_pipe[0], &err, sizeof err) == (ssize_t)sizeof err)
        atomic_fetch_add(&exec_failures, 1);
    pthread_mutex_unlock(&child_lock);
}

unsigned long exec_failed(void) { return atomic_load(&exec_failures); }

static void on_chld_pipe(dx_loop *loop, dx_io *io, int events)
{
    (void)loop, (void)events;
    char buf[64];
    while (read(io->fd, buf, sizeof buf) > 0)
        ;
    exec_reap();
}

/* A free slot of the table, or -1 when full. Lock held. */
static ssize_t free_slot(void)
{
    size_t used = atomic_load(&child_used), i;
    for (i = 0; i < used && child_pid[i] != 0; i++)
        ;
    if (i == used) {
        if (used == MAX_CHILDREN)
            return -1;
        atomic_store(&child_used, used + 1);
    }
    drop_sock(i);
    return (ssize_t)i;
}

static void kill_children(int sig)
{
    size_t used = atomic_load(&child_used);
    for (size_t i = 0; i < used; i++) {
        pid_t pid = child_pid[i];
        if (pid > 0)
            kill(-pid, sig);
    }
}

void exec_kill_all(void)
{
    if (atomic_load(&live_children) > 0)
        kill_children(SIGKILL); /* async-signal-safe: atomics and kill() only */
}

/* Wait up to timeout_ms for the children to end (reaping them). */
static void wait_children(int timeout_ms)
{
    for (int waited = 0;; waited += 10) {
        exec_reap();
        if (atomic_load(&live_children) <= 0 || waited >= timeout_ms)
            return;
        usleep(10000);
    }
}

void exec_stop_children(int timeout_ms)
{
    exec_reap();
    if (atomic_load(&live_children) <= 0)
        return;
    pthread_mutex_lock(&child_lock);
    kill_children(SIGTERM);
    pthread_mutex_unlock(&child_lock);
    wait_children(timeout_ms);
    if (atomic_load(&live_children) <= 0)
        return;
    pthread_mutex_lock(&child_lock);
    kill_children(SIGKILL); /* they ignored SIGTERM: no orphans left behind */
    pthread_mutex_unlock(&child_lock);
    wait_children(1000);
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

int exec_init(dx_loop *loop)
{
    pthread_mutex_lock(&child_lock);
    int rc = 0;
    if (chld_pipe[0] < 0) {
        if (pipe2(chld_pipe, O_NONBLOCK | O_CLOEXEC) < 0 ||
            pipe2(fail_pipe, O_NONBLOCK | O_CLOEXEC) < 0) {
            rc = -errno;
            goto out;
        }
        struct sigaction sa;
        memset(&sa, 0, sizeof sa);
        sa.sa_handler = on_sigchld;
        sigemptyset(&sa.sa_mask);
        sa.sa_flags = SA_RESTART | SA_NOCLDSTOP;
        sigaction(SIGCHLD, &sa, NULL);
    }
    if (!reaper_loop) { /* the first server's loop reaps for every loop */
        dx_io_init(&reaper_io, chld_pipe[0], on_chld_pipe, NULL);
        if ((rc = dx_io_set(loop, &reaper_io, DX_READ)) == 0)
            reaper_loop = loop;
    }
out:
    pthread_mutex_unlock(&child_lock);
    return rc;
}

void exec_detach(dx_loop *loop)
{
    pthread_mutex_lock(&child_lock);
    if (reaper_loop == loop) {
        dx_io_stop(loop, &reaper_io);
        reaper_loop = NULL;
    }
    pthread_mutex_unlock(&child_lock);
}

int exec_children(void) { return atomic_load(&live_children); }

/* In the child: environment with both ends of the connection and the
 * protocol (ncat's names too, so scripts written for ncat -e keep working);
 * inherited values of those names are dropped first. local: the
 * connection's own address when fd is not the connection (--ssl: a socketpair),
 * else NULL. */
static void export_addresses(const struct options *o, int fd, const dx_addr *peer,
                             const dx_addr *local)
{
    char vars[EXEC_ENV_NAMES * (DX_ADDR_STRLEN + 32)], name[32];
    for (size_t i = 0; i < EXEC_ENV_NAMES; i++)
        unsetenv(exec_env_names[i]);
    size_t n = exec_env_vars(vars, sizeof vars, o, fd, peer, local);
    for (size_t at = 0; at < n; at += strlen(vars + at) + 1) {
        const char *eq = strchr(vars + at, '=');
        size_t k = (size_t)(eq - (vars + at));
        if (k >= sizeof name)
            continue;
        memcpy(name, vars + at, k);
        name[k] = '\0';
        setenv(name, eq + 1, 1);
    }
}

/* --exec CMD split on blanks, no shell (quote-free, like ncat -e): a
 * NULL-ended argv of any length in one allocation (free() it), or NULL. */
static char **split_command(const char *cmd)
{
    size_t n = 0, len = strlen(cmd);
    for (const char *p = cmd; *p;) {
        p += strspn(p, " \t");
        if (*p)
            n++;
        p += strcspn(p, " \t");
    }
    char **argv = malloc((n + 1) * sizeof *argv + len + 1);
    if (!argv)
        return NULL;
    char *copy = (char *)(argv + n + 1), *save = NULL;
    memcpy(copy, cmd, len + 1);
    size_t argc = 0;
    for (char *tok = strtok_r(copy, " \t", &save); tok; tok = strtok_r(NULL, " \t", &save))
        argv[argc++] = tok;
    argv[argc] = NULL;
    return argv;
}

/* 0 if path is a file we may execute, else the errno execve would give. */
static int runnable(const char *path)
{
    struct stat st;
    if (stat(path, &st) < 0)
        return errno;
    if (!S_ISREG(st.st_mode) || access(path, X_OK) < 0)
        return EACCES;
    return 0;
}

/* The command's program found as execvp will look for it: 0 or an errno. */
static int find_program(const char *name)
{
    if (strchr(name, '/'))
        return runnable(name);
    const char *path = getenv("PATH");
    char defpath[256];
    if (!path) {
        size_t n = confstr(_CS_PATH, defpath, sizeof defpath);
        path = n > 0 && n <= sizeof defpath ? defpath : "/bin:/usr/bin";
    }
    int err = ENOENT;
    for (const char *dir = path;; dir++) {
        size_t dlen = strcspn(dir, ":");
        char *full = malloc(dlen + strlen(name) + 2);
        if (!full)
            return ENOMEM;
        /* an empty entry is the current directory, as for execvp */
        sprintf(full, "%.*s%s%s", (int)dlen, dir, dlen ? "/" : "", name);
        int e = runnable(full);
        free(full);
        if (e == 0)
            return 0;
        if (e == EACCES)
            err = EACCES; /* found, but not runnable: execvp says so too */
        dir += dlen;
        if (!*dir)
            return err;
    }
}

int exec_check(const struct options *o)
{
    if (o->mode != MODE_EXEC)
        return 0;
    const char *flag = o->exec_shell ? "--sh-exec" : "--exec";
    if (o->exec_shell) {
        int e = runnable("/bin/sh");
        if (e)
            cli_error("%s: /bin/sh: %s", flag, strerror(e));
        return e ? EXIT_USAGE : 0;
    }
    char **argv = split_command(o->exec_cmd);
    if (!argv) {
        cli_error("out of memory");
        return EXIT_IO;
    }
    int code = 0;
    if (!argv[0]) {
        cli_error("%s needs a command", flag);
        code = EXIT_USAGE;
    } else {
        int e = find_program(argv[0]);
        if (e) {
            cli_error("%s %s: %s", flag, argv[0], strerror(e));
            code = EXIT_USAGE;
        }
    }
    free(argv);
    return code;
}

/* In a child that goes on running duplex code (--model fork): nothing of
 * the server's but fd stays open, above all not its listening sockets (the
 * port must be free once the server is gone). */
void exec_close_inherited(int keep)
{
    int max = (int)sysconf(_SC_OPEN_MAX);
#ifdef SYS_close_range
    if (keep > STDERR_FILENO + 1 && syscall(SYS_close_range, STDERR_FILENO + 1, keep - 1, 0) < 0)
        goto slow;
    if (syscall(SYS_close_range, keep > STDERR_FILENO ? keep + 1 : STDERR_FILENO + 1, ~0U, 0) < 0)
        goto slow;
    return;
slow:
#endif
    for (int fd = STDERR_FILENO + 1; fd < max; fd++)
        if (fd != keep)
            close(fd);
}

pid_t exec_fork(void)
{
    /* forked and recorded in one step under the lock the reaper takes:
     * never reaped before it is in the table */
    pthread_mutex_lock(&child_lock);
    ssize_t slot = free_slot();
    if (slot < 0) {
        pthread_mutex_unlock(&child_lock);
        errno = EAGAIN;
        return -1;
    }
    pid_t pid = fork();
    if (pid == 0) {
        /* the child: its copy of child_lock stays locked, and unused */
        setpgid(0, 0); /* its own process group, so that stopping it stops
                        * what it started too (sh -c forks its commands) */
        signal(SIGPIPE, SIG_DFL);
        signal(SIGCHLD, SIG_DFL);
        signal(SIGINT, SIG_DFL);
        signal(SIGTERM, SIG_DFL);
        signal(SIGHUP, SIG_DFL);
        return 0;
    }
    int saved = errno;
    if (pid > 0) {
        setpgid(pid, pid); /* both sides: whichever runs first */
        child_pid[slot] = pid;
        atomic_fetch_add(&live_children, 1);
    }
    pthread_mutex_unlock(&child_lock);
    errno = saved;
    return pid;
}

/* Run CMD in this process on fd, the socket made stdin and stdout
 * (blocking, as programs expect), with the variables of an --exec child.
 * Returns only on failure: errno of the exec (said), or -1 when fd could not
 * be made stdin/stdout. */
static int become(const struct options *o, int fd, const dx_addr *peer, const dx_addr *local)
{
    dx_set_nonblock(fd, 0);
    if (dup2(fd, STDIN_FILENO) < 0 || dup2(fd, STDOUT_FILENO) < 0)
        return -1;
    if (fd > STDERR_FILENO)
        close(fd);
    export_addresses(o, STDIN_FILENO, peer, local);
    if (o->exec_shell) {
        execl("/bin/sh", "sh", "-c", o->exec_cmd, (char *)NULL);
    } else {
        char **argv = split_command(o->exec_cmd);
        if (argv && argv[0])
            execvp(argv[0], argv);
        else if (!argv)
            errno = ENOMEM;
    }
    int err = errno;
    fprintf(stderr, "duplex: exec %s: %s\n", o->exec_cmd, strerror(err));
    return err;
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

    int err = become(o, fd, peer, local);
    if (err < 0)
        _exit(126);
    (void)!write(fail_pipe[1], &err, sizeof err); /* for the server's exit status */
    _exit(127);
}

int exec_inetd(const struct options *o)
{
    int fd;
    dx_addr peer, header_local; /* AF_UNSPEC unless a PROXY header named it */
    char name[DX_ADDR_STRLEN];
    int code = listeners_inetd_take(o, &fd, &peer, &header_local, name, sizeof name);
    if (code)
        return code;
    cli_info(o, "%s: connected (--inetd), running %s", name, o->exec_cmd);
    become(o, fd, &peer, header_local.ss.ss_family ? &header_local : NULL);
    return EXIT_IO;
}

/* ---- listen --exec --ssl: the program speaks plain bytes ---------------- */

/* The program cannot speak TLS: it gets one end of a socketpair as stdin
 * and stdout, and the server pumps between the other end and the client's
 * TLS connection (libduplex's TLS on the pump's endpoint), half-close
 * passed on each way. Over once both directions have ended, the client's
 * side failed, or the program has gone (its end closed) with all it wrote
 * sent. */
struct exec_tls {
    dx_loop *loop;
    const struct options *o;
    int fd, pair;              /* the client's TCP socket, our end of the pair */
    dx_tls *tls;
    dx_endpoint net, prog;
    dx_pump up, down;          /* client -> program, program -> client */
    dx_timer later;            /* freed from the loop, not inside a pump's callback */
    struct exec_tls **list, *prev, *next; /* the server's, to free at its close */
    void (*done)(void *data);
    void *done_data;
    char name[DX_ADDR_STRLEN];
};

/* Free x now; its done() is the caller's business. */
static void exec_tls_release(struct exec_tls *x)
{
    if (x->prev)
        x->prev->next = x->next;
    else
        *x->list = x->next;
    if (x->next)
        x->next->prev = x->prev;
    dx_timer_stop(x->loop, &x->later);
    dx_pump_stop(&x->up);
    dx_pump_stop(&x->down);
    cli_tls_goodbye(x->tls); /* close_notify, unless the half-close sent it */
    dx_tls_free(x->tls);
    close(x->fd);
    close(x->pair);
    free(x);
}

static void exec_tls_free(dx_loop *loop, dx_timer *t)
{
    (void)loop;
    struct exec_tls *x = t->data;
    void (*done)(void *) = x->done;
    void *data = x->done_data;
    exec_tls_release(x);
    done(data);
}

void exec_tls_close_all(struct exec_tls **list)
{
    while (*list)
        exec_tls_release(*list);
}

static void exec_tls_end(struct exec_tls *x)
{
    dx_pump_stop(&x->up);
    dx_pump_stop(&x->down);
    dx_timer_start(x->loop, &x->later, 0, 0);
}

/* The program has closed its end (not only shut its output down). */
static int program_gone(int pair)
{
    struct pollfd p = {.fd = pair, .events = POLLOUT};
    return poll(&p, 1, 0) == 1 && (p.revents & POLLHUP);
}

static void exec_tls_pumped(dx_pump *p, int error, int in_read)
{
    struct exec_tls *x = p->data;
    int client_side = (p == &x->up) == !!in_read;
    /* the client has gone while the program was answering: what the client
     * sent before still reaches the program, then the end (the program's
     * side, a socket pair too, has its own rule below) */
    if (p == &x->down && cli_pump_drain_first(p, error, in_read, &x->up)) {
        cli_info(x->o, "tls %s: client: %s", x->name, dx_strerror(error));
        return;
    }
    if (error < 0 && !(p == &x->up && !in_read)) {
        const char *why = client_side && (error == DX_ETLS || error == DX_ETLSVERIFY ||
                                          error == DX_ETLSTRUNC) && dx_tls_reason(x->tls)[0]
                              ? dx_tls_reason(x->tls) : dx_strerror(error);
        cli_info(x->o, "tls %s: %s: %s", x->name, client_side ? "client" : "program", why);
        exec_tls_end(x);
        return;
    }
    /* a write to a program that has gone (EPIPE): what it wrote still goes */
    if (p == &x->up && error == 0)
        cli_tls_ended(x->o, x->tls, x->name, 1);
    if (p == &x->down && !x->up.done && program_gone(x->pair))
        dx_pump_stop(&x->up);
    if (x->up.done && x->down.done)
        exec_tls_end(x);
}

pid_t exec_tls_client(dx_loop *loop, const struct options *o, int fd, dx_tls *tls,
                      const dx_addr *peer, const dx_addr *local, struct exec_tls **list,
                      void (*done)(void *data), void *data)
{
    struct exec_tls *x = calloc(1, sizeof *x);
    int sp[2] = {-1, -1};
    if (!x || socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sp) < 0) {
        cli_error("%s: cannot run %s: %s", x ? dx_addr_format(peer, x->name, sizeof x->name) : "a client",
                  o->exec_cmd, strerror(x ? errno : ENOMEM));
        free(x);
        return -1;
    }
    pid_t pid = exec_client(o, sp[0], peer, local); /* the program's end is its own now */
    close(sp[0]);
    if (pid < 0) {
        close(sp[1]);
        free(x);
        return -1;
    }
    x->loop = loop;
    x->o = o;
    x->fd = fd;
    x->pair = sp[1];
    x->tls = tls;
    x->done = done;
    x->done_data = data;
    x->list = list;
    x->next = *list;
    if (x->next)
        x->next->prev = x;
    *list = x;
    dx_addr_format(peer, x->name, sizeof x->name);
    dx_timer_init(&x->later, exec_tls_free, x);
    dx_endpoint_init(&x->net, fd);
    dx_endpoint_init(&x->prog, sp[1]);
    dx_endpoint_set_tls(&x->net, tls);
    size_t bufsize = o->bufsize ? o->bufsize : 64 * 1024;
    int rc = dx_pump_start(loop, &x->up, &x->net, &x->prog, bufsize, DX_PUMP_SHUTDOWN,
                           exec_tls_pumped, x);
    if (rc == 0)
        rc = dx_pump_start(loop, &x->down, &x->prog, &x->net, bufsize, DX_PUMP_SHUTDOWN,
                           exec_tls_pumped, x);
    if (rc < 0) {
        cli_error("tls %s: %s, closing", x->name, dx_strerror(rc));
        exec_tls_end(x); /* the program reads its end of input */
    }
    return pid;
}
