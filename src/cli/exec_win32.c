/* exec_win32.c: --exec / --sh-exec on Windows (exec.c on POSIX). A process
 * per client, made by CreateProcess, with anonymous pipes as its stdin and
 * stdout, bridged to the client's socket by two threads (a socket as a
 * standard handle only works for non-overlapped sockets; pipes work with
 * every program):
 *
 *   client socket --recv--> [input thread]  --WriteFile--> child's stdin pipe
 *   child's stdout pipe --ReadFile--> [output thread] --send--> client socket
 *
 * The client's half-close closes the child's stdin (its end of input); the
 * child's end of output (it exited) shuts the socket's write side once every
 * byte it wrote is sent, then the connection is closed. --sh-exec runs
 * `cmd.exe /c CMD`; --exec splits CMD on blanks as on POSIX and quotes each
 * argument by the MSVCRT rules, so the child's argv is what was given.
 *
 * Every child is in one job object that kills them all when it is closed
 * (duplex.exe ending in any way: no orphans), and in a process group of its
 * own (a Ctrl-C in the console is the server's to handle, not the
 * children's). Stopping a child is TerminateProcess: Windows has no SIGTERM
 * for console programs that do not share our console. */
#include "cli.h"
#include "os.h"

#include <windows.h>

#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_CHILDREN 4096     /* two threads each: well below Windows' limits */
#define BRIDGE_BUF (64 * 1024)
#define THREAD_STACK (128 * 1024)

struct child {
    HANDLE proc;              /* NULL: a free slot */
    DWORD pid;
    int sock;                 /* our own descriptor of the client's socket */
    HANDLE in_w, out_r;       /* our ends of the child's stdin and stdout */
    HANDLE in_thread;
    atomic_ullong last_ms;    /* data last moved, either way (--idle-timeout) */
    atomic_int ended;         /* the child has exited: the input thread stops */
    int idle_closed;
    char name[DX_ADDR_STRLEN];
};

static struct child children[MAX_CHILDREN];
static atomic_int live_children;
static atomic_ulong exec_failures;
static HANDLE job;            /* every child; killed when closed (our exit) */
static SRWLOCK child_lock = SRWLOCK_INIT;
static SRWLOCK spawn_lock = SRWLOCK_INIT; /* one CreateProcess at a time: inheritance */

/* ---- the command line -------------------------------------------------- */

/* --exec CMD split on blanks, no shell (quote-free, like ncat -e and exec.c):
 * a NULL-ended argv in one allocation (free() it), or NULL. */
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
    char *copy = (char *)(argv + n + 1);
    memcpy(copy, cmd, len + 1);
    size_t argc = 0;
    for (char *p = copy; *p;) {
        p += strspn(p, " \t");
        if (!*p)
            break;
        argv[argc++] = p;
        p += strcspn(p, " \t");
        if (*p)
            *p++ = '\0';
    }
    argv[argc] = NULL;
    return argv;
}

/* Append arg to out, quoted so that the MSVCRT (CommandLineToArgvW) gives
 * it back as it is. out has room for 2 * strlen(arg) + 3. */
static char *quote_arg(char *out, const char *arg)
{
    if (*arg && !strpbrk(arg, " \t\n\v\"")) {
        strcpy(out, arg);
        return out + strlen(arg);
    }
    *out++ = '"';
    for (const char *p = arg;; p++) {
        size_t slashes = 0;
        while (*p == '\\') {
            p++;
            slashes++;
        }
        if (!*p) { /* before the closing quote: every backslash doubled */
            for (size_t i = 0; i < 2 * slashes; i++)
                *out++ = '\\';
            break;
        }
        if (*p == '"') { /* doubled, and one more for the quote itself */
            for (size_t i = 0; i < 2 * slashes + 1; i++)
                *out++ = '\\';
        } else {
            for (size_t i = 0; i < slashes; i++)
                *out++ = '\\';
        }
        *out++ = *p;
    }
    *out++ = '"';
    *out = '\0';
    return out;
}

/* cmd.exe: %ComSpec% when it names a file, else found as a program. */
static int find_shell(char *path, size_t len)
{
    const char *spec = getenv("ComSpec");
    if (spec && strlen(spec) < len) {
        DWORD attr = GetFileAttributesA(spec);
        if (attr != INVALID_FILE_ATTRIBUTES && !(attr & FILE_ATTRIBUTE_DIRECTORY)) {
            strcpy(path, spec);
            return 0;
        }
    }
    DWORD n = SearchPathA(NULL, "cmd.exe", NULL, (DWORD)len, path, NULL);
    return n > 0 && n < len ? 0 : ENOENT;
}

/* The program found as CreateProcess looks for it (the program's own
 * directory, the current one, the system directories, PATH; ".exe" added
 * when the name has no extension): 0 with its path, or an errno. */
static int find_program(const char *name, char *path, size_t len)
{
    DWORD n = SearchPathA(NULL, name, ".exe", (DWORD)len, path, NULL);
    if (n == 0 || n >= len)
        return ENOENT;
    DWORD attr = GetFileAttributesA(path);
    if (attr == INVALID_FILE_ATTRIBUTES)
        return ENOENT;
    if (attr & FILE_ATTRIBUTE_DIRECTORY)
        return EACCES;
    return 0;
}

int exec_check(const struct options *o)
{
    if (o->mode != MODE_EXEC)
        return 0;
    const char *flag = o->exec_shell ? "--sh-exec" : "--exec";
    char path[MAX_PATH];
    if (o->exec_shell) {
        int e = find_shell(path, sizeof path);
        if (e)
            cli_error("%s: cmd.exe: %s", flag, strerror(e));
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
        int e = find_program(argv[0], path, sizeof path);
        if (e) {
            cli_error("%s %s: %s", flag, argv[0], strerror(e));
            code = EXIT_USAGE;
        }
    }
    free(argv);
    return code;
}

/* The program to run and its command line (malloc'ed): 0, or an errno. */
static int command_line(const struct options *o, char *app, size_t applen, char **line)
{
    *line = NULL;
    if (o->exec_shell) {
        int e = find_shell(app, applen);
        if (e)
            return e;
        size_t n = strlen(o->exec_cmd) + 16;
        if (!(*line = malloc(n)))
            return ENOMEM;
        snprintf(*line, n, "cmd.exe /c %s", o->exec_cmd);
        return 0;
    }
    char **argv = split_command(o->exec_cmd);
    if (!argv)
        return ENOMEM;
    int e = argv[0] ? find_program(argv[0], app, applen) : ENOENT;
    size_t n = 1;
    for (char **a = argv; *a; a++)
        n += 2 * strlen(*a) + 3;
    if (!e && !(*line = malloc(n)))
        e = ENOMEM;
    if (!e) {
        char *p = *line;
        *p = '\0';
        for (char **a = argv; *a; a++) {
            if (a != argv)
                *p++ = ' ';
            p = quote_arg(p, *a);
        }
    }
    free(argv);
    return e;
}

/* ---- the environment ---------------------------------------------------- */

static int is_ours(const char *entry)
{
    for (size_t i = 0; i < EXEC_ENV_NAMES; i++) {
        size_t n = strlen(exec_env_names[i]);
        if (_strnicmp(entry, exec_env_names[i], n) == 0 && entry[n] == '=')
            return 1;
    }
    return 0;
}

/* Our environment without our names, then the connection's two ends: an
 * ANSI environment block (malloc'ed), or NULL. */
static char *child_environment(const struct options *o, int fd, const dx_addr *peer,
                               const dx_addr *local)
{
    char vars[EXEC_ENV_NAMES * (DX_ADDR_STRLEN + 32)];
    size_t nvars = exec_env_vars(vars, sizeof vars, o, fd, peer, local);
    char *cur = GetEnvironmentStringsA();
    size_t curlen = 0;
    if (cur)
        while (cur[curlen] || cur[curlen + 1])
            curlen++;
    char *block = malloc(curlen + 2 + nvars + 2);
    if (!block) {
        if (cur)
            FreeEnvironmentStringsA(cur);
        return NULL;
    }
    size_t used = 0;
    for (const char *e = cur; e && *e; e += strlen(e) + 1) {
        if (is_ours(e))
            continue;
        size_t n = strlen(e) + 1;
        memcpy(block + used, e, n);
        used += n;
    }
    if (cur)
        FreeEnvironmentStringsA(cur);
    memcpy(block + used, vars, nvars);
    used += nvars;
    block[used] = '\0';
    if (used == 0)
        block[++used] = '\0'; /* an empty block is two NULs */
    return block;
}

/* ---- the children's table ----------------------------------------------- */

static void job_init(void)
{
    static INIT_ONCE once = INIT_ONCE_STATIC_INIT;
    BOOL pending;
    if (!InitOnceBeginInitialize(&once, 0, &pending, NULL) || !pending)
        return;
    HANDLE j = CreateJobObjectA(NULL, NULL);
    if (j) {
        JOBOBJECT_EXTENDED_LIMIT_INFORMATION li;
        memset(&li, 0, sizeof li);
        li.BasicLimitInformation.LimitFlags = JOB_OBJECT_LIMIT_KILL_ON_JOB_CLOSE;
        SetInformationJobObject(j, JobObjectExtendedLimitInformation, &li, sizeof li);
        job = j;
    }
    InitOnceComplete(&once, 0, NULL);
}

static struct child *take_slot(void)
{
    struct child *c = NULL;
    AcquireSRWLockExclusive(&child_lock);
    for (size_t i = 0; i < MAX_CHILDREN && !c; i++)
        if (!children[i].proc)
            c = &children[i];
    if (c)
        c->proc = INVALID_HANDLE_VALUE; /* taken */
    ReleaseSRWLockExclusive(&child_lock);
    return c;
}

static void free_slot(struct child *c)
{
    AcquireSRWLockExclusive(&child_lock);
    c->proc = NULL;
    ReleaseSRWLockExclusive(&child_lock);
}

static int write_all(HANDLE h, const char *buf, size_t n)
{
    while (n > 0) {
        DWORD put = 0;
        if (!WriteFile(h, buf, (DWORD)n, &put, NULL))
            return -1;
        buf += put;
        n -= put;
    }
    return 0;
}

/* The client -> the child's stdin, until the client's end of input (then the
 * child's), a failure, or the child's exit. Polls with a timeout to notice
 * the exit: the output thread owns the socket and closes it after us. */
static DWORD WINAPI input_main(LPVOID arg)
{
    struct child *c = arg;
    char *buf = malloc(BRIDGE_BUF);
    while (buf && !atomic_load(&c->ended)) {
        struct pollfd p = {.fd = (SOCKET)c->sock, .events = POLLIN};
        int rc = dx__os_poll(&p, 1, 200);
        if (rc == 0 || (rc < 0 && errno == EINTR))
            continue;
        if (rc < 0)
            break;
        ssize_t n = dx__sock_recv(c->sock, buf, BRIDGE_BUF, 0);
        if (n < 0 && (errno == EINTR || errno == EAGAIN))
            continue;
        if (n <= 0)
            break; /* the client's end of input (or a reset) */
        atomic_store(&c->last_ms, dx__os_now_ms());
        if (write_all(c->in_w, buf, (size_t)n) < 0)
            break; /* the child reads no more */
    }
    free(buf);
    CloseHandle(c->in_w); /* the child's end of input */
    c->in_w = NULL;
    return 0;
}

/* The child's stdout -> the client, then (the child gone) the end of the
 * connection: every byte sent, the write side shut, the socket closed. */
static DWORD WINAPI output_main(LPVOID arg)
{
    struct child *c = arg;
    char *buf = malloc(BRIDGE_BUF);
    while (buf) {
        long got = dx__os_read_handle(c->out_r, buf, BRIDGE_BUF);
        if (got <= 0)
            break; /* ERROR_BROKEN_PIPE: the child (and its children) closed it */
        atomic_store(&c->last_ms, dx__os_now_ms());
        const char *p = buf;
        size_t left = (size_t)got;
        int failed = 0;
        while (left > 0) {
            ssize_t w = dx__sock_send(c->sock, p, left, 0);
            if (w < 0 && errno == EINTR)
                continue;
            if (w < 0) {
                failed = 1;
                break;
            }
            p += w;
            left -= (size_t)w;
        }
        if (failed)
            break; /* the client has gone: the child's next write fails */
    }
    free(buf);
    CloseHandle(c->out_r);
    WaitForSingleObject(c->proc, INFINITE);
    dx__sock_shutdown(c->sock, SHUT_WR); /* after its last byte */
    atomic_store(&c->ended, 1);
    if (WaitForSingleObject(c->in_thread, 1000) == WAIT_TIMEOUT) {
        CancelSynchronousIo(c->in_thread); /* a grandchild holds the stdin pipe, full */
        WaitForSingleObject(c->in_thread, INFINITE);
    }
    CloseHandle(c->in_thread);
    /* out of the table first: exec_close_idle() uses both under the lock */
    AcquireSRWLockExclusive(&child_lock);
    HANDLE proc = c->proc;
    int sock = c->sock;
    c->sock = -1;
    c->proc = NULL;
    ReleaseSRWLockExclusive(&child_lock);
    dx__sock_close(sock);
    CloseHandle(proc);
    atomic_fetch_sub(&live_children, 1);
    return 0;
}

/* Our own descriptor of the client's socket (the server closes its own),
 * blocking for the threads. -1 with errno. */
static int dup_socket(int fd)
{
    WSAPROTOCOL_INFOW info;
    SOCKET s = INVALID_SOCKET;
    if (WSADuplicateSocketW((SOCKET)fd, GetCurrentProcessId(), &info) == 0)
        s = WSASocketW(FROM_PROTOCOL_INFO, FROM_PROTOCOL_INFO, FROM_PROTOCOL_INFO, &info, 0,
                       WSA_FLAG_OVERLAPPED | WSA_FLAG_NO_HANDLE_INHERIT);
    if (s == INVALID_SOCKET) {
        HANDLE h;
        if (!DuplicateHandle(GetCurrentProcess(), (HANDLE)(uintptr_t)fd, GetCurrentProcess(), &h, 0,
                             FALSE, DUPLICATE_SAME_ACCESS)) {
            errno = EMFILE;
            return -1;
        }
        s = (SOCKET)(uintptr_t)h;
    }
    int d = (int)s;
    if (dx__sock_nonblock(d, 0) < 0) {
        int e = errno;
        dx__sock_close(d);
        errno = e;
        return -1;
    }
    return d;
}

static int win_errno(DWORD err)
{
    switch (err) {
    case ERROR_FILE_NOT_FOUND:
    case ERROR_PATH_NOT_FOUND:
        return ENOENT;
    case ERROR_ACCESS_DENIED:
        return EACCES;
    case ERROR_BAD_EXE_FORMAT:
        return ENOEXEC;
    case ERROR_NOT_ENOUGH_MEMORY:
    case ERROR_OUTOFMEMORY:
        return ENOMEM;
    default:
        return EINVAL;
    }
}

/* CreateProcess with these three handles as the child's, and no other
 * handle of ours inherited (a socket of another client kept open by a child
 * would keep that connection from ever closing). 0 or an errno. */
static int spawn(const char *app, char *line, char *env, HANDLE in, HANDLE out, HANDLE err,
                 PROCESS_INFORMATION *pi)
{
    HANDLE list[3] = {in, out, err};
    DWORD nlist = err ? 3 : 2;
    STARTUPINFOEXA si;
    memset(&si, 0, sizeof si);
    si.StartupInfo.cb = sizeof si;
    si.StartupInfo.dwFlags = STARTF_USESTDHANDLES;
    si.StartupInfo.hStdInput = in;
    si.StartupInfo.hStdOutput = out;
    si.StartupInfo.hStdError = err;
    SIZE_T size = 0;
    InitializeProcThreadAttributeList(NULL, 1, 0, &size);
    void *attrs = size ? malloc(size) : NULL;
    DWORD flags = CREATE_SUSPENDED | CREATE_NEW_PROCESS_GROUP;
    if (attrs && InitializeProcThreadAttributeList(attrs, 1, 0, &size)) {
        si.lpAttributeList = attrs;
        if (UpdateProcThreadAttribute(attrs, 0, PROC_THREAD_ATTRIBUTE_HANDLE_LIST, list,
                                      nlist * sizeof *list, NULL, NULL)) {
            si.StartupInfo.cb = sizeof si;
            flags |= EXTENDED_STARTUPINFO_PRESENT;
        } else {
            DeleteProcThreadAttributeList(attrs);
            si.lpAttributeList = NULL;
        }
    }
    if (!(flags & EXTENDED_STARTUPINFO_PRESENT))
        si.StartupInfo.cb = sizeof si.StartupInfo;
    /* the child's ends inheritable only while it is made, one at a time */
    AcquireSRWLockExclusive(&spawn_lock);
    for (DWORD i = 0; i < nlist; i++)
        SetHandleInformation(list[i], HANDLE_FLAG_INHERIT, HANDLE_FLAG_INHERIT);
    BOOL ok = CreateProcessA(app, line, NULL, NULL, TRUE, flags, env, NULL, &si.StartupInfo, pi);
    DWORD why = GetLastError();
    for (DWORD i = 0; i < nlist; i++)
        SetHandleInformation(list[i], HANDLE_FLAG_INHERIT, 0);
    ReleaseSRWLockExclusive(&spawn_lock);
    if (si.lpAttributeList)
        DeleteProcThreadAttributeList(si.lpAttributeList);
    free(attrs);
    return ok ? 0 : win_errno(why);
}

pid_t exec_client(const struct options *o, int fd, const dx_addr *peer, const dx_addr *local)
{
    char name[DX_ADDR_STRLEN];
    dx_addr_format(peer, name, sizeof name);
    job_init();
    struct child *c = take_slot();
    if (!c) {
        cli_error("%s: CreateProcess: %s", name, strerror(EAGAIN));
        return -1;
    }
    char app[MAX_PATH], *line = NULL, *env = NULL;
    HANDLE in_r = NULL, in_w = NULL, out_r = NULL, out_w = NULL, err = NULL;
    PROCESS_INFORMATION pi = {0};
    int sock = -1, e = command_line(o, app, sizeof app, &line);
    const char *what = "CreateProcess";
    if (!e && !(env = child_environment(o, fd, peer, local)))
        e = ENOMEM;
    if (!e && (sock = dup_socket(fd)) < 0) {
        e = errno;
        what = "socket";
    }
    if (!e && (!CreatePipe(&in_r, &in_w, NULL, 0) || !CreatePipe(&out_r, &out_w, NULL, 0))) {
        e = EMFILE;
        what = "pipe";
    }
    HANDLE my_err = GetStdHandle(STD_ERROR_HANDLE);
    if (!e && my_err && my_err != INVALID_HANDLE_VALUE)
        DuplicateHandle(GetCurrentProcess(), my_err, GetCurrentProcess(), &err, 0, FALSE,
                        DUPLICATE_SAME_ACCESS);
    if (!e)
        e = spawn(app, line, env, in_r, out_w, err, &pi);
    free(line);
    free(env);
    if (in_r)
        CloseHandle(in_r);
    if (out_w)
        CloseHandle(out_w);
    if (err)
        CloseHandle(err);
    if (e) {
        if (!strcmp(what, "CreateProcess")) {
            cli_error("exec %s: %s", o->exec_cmd, strerror(e));
            atomic_fetch_add(&exec_failures, 1);
        } else {
            cli_error("%s: %s: %s", name, what, strerror(e));
        }
        if (in_w)
            CloseHandle(in_w);
        if (out_r)
            CloseHandle(out_r);
        if (sock >= 0)
            dx__sock_close(sock);
        free_slot(c);
        return -1;
    }
    if (job)
        AssignProcessToJobObject(job, pi.hProcess); /* before it can start anything */
    c->pid = pi.dwProcessId;
    c->sock = sock;
    c->in_w = in_w;
    c->out_r = out_r;
    atomic_store(&c->last_ms, dx__os_now_ms());
    atomic_store(&c->ended, 0);
    c->idle_closed = 0;
    snprintf(c->name, sizeof c->name, "%s", name);
    atomic_fetch_add(&live_children, 1);
    c->in_thread = CreateThread(NULL, THREAD_STACK, input_main, c, STACK_SIZE_PARAM_IS_A_RESERVATION, NULL);
    HANDLE out_thread = NULL;
    if (c->in_thread) {
        AcquireSRWLockExclusive(&child_lock);
        c->proc = pi.hProcess; /* from here on the output thread's to free */
        ReleaseSRWLockExclusive(&child_lock);
        out_thread =
            CreateThread(NULL, THREAD_STACK, output_main, c, STACK_SIZE_PARAM_IS_A_RESERVATION, NULL);
    }
    if (!out_thread) {
        /* no thread, no child: nobody could serve it */
        cli_error("%s: thread: %s", name, strerror(EAGAIN));
        TerminateProcess(pi.hProcess, 1);
        ResumeThread(pi.hThread);
        CloseHandle(pi.hThread);
        if (c->in_thread) {
            atomic_store(&c->ended, 1);
            WaitForSingleObject(c->in_thread, INFINITE);
            CloseHandle(c->in_thread);
        } else {
            CloseHandle(in_w);
        }
        CloseHandle(out_r);
        free_slot(c);
        CloseHandle(pi.hProcess);
        dx__sock_close(sock);
        atomic_fetch_sub(&live_children, 1);
        return -1;
    }
    CloseHandle(out_thread);
    ResumeThread(pi.hThread);
    CloseHandle(pi.hThread);
    return (pid_t)pi.dwProcessId;
}

pid_t exec_fork(void)
{
    errno = ENOSYS; /* no fork on Windows: --model fork is refused at start-up */
    return -1;
}

void exec_close_inherited(int keep) { (void)keep; }

int exec_inetd(const struct options *o)
{
    (void)o; /* options.c refuses --inetd on Windows */
    return EXIT_USAGE;
}

int exec_init(dx_loop *loop)
{
    (void)loop; /* the output threads account for their children */
    job_init();
    return 0;
}

void exec_detach(dx_loop *loop) { (void)loop; }

void exec_reap(void) {}

int exec_children(void) { return atomic_load(&live_children); }

unsigned long exec_failed(void) { return atomic_load(&exec_failures); }

static void terminate_all(void)
{
    for (size_t i = 0; i < MAX_CHILDREN; i++) {
        HANDLE h = children[i].proc;
        if (h && h != INVALID_HANDLE_VALUE)
            TerminateProcess(h, 1);
    }
}

void exec_kill_all(void)
{
    if (atomic_load(&live_children) <= 0)
        return;
    if (job)
        TerminateJobObject(job, 1); /* their children too */
    else
        terminate_all();
}

void exec_stop_children(int timeout_ms)
{
    if (atomic_load(&live_children) <= 0)
        return;
    AcquireSRWLockShared(&child_lock);
    terminate_all();
    ReleaseSRWLockShared(&child_lock);
    /* the output threads send what the children wrote, then close */
    for (int waited = 0; atomic_load(&live_children) > 0 && waited < timeout_ms; waited += 10)
        Sleep(10);
    if (atomic_load(&live_children) > 0 && job)
        TerminateJobObject(job, 1); /* grandchildren holding a pipe */
}

/* The bridge threads see every byte, so the server keeps no copy of the
 * socket to watch: exec_close_idle() reads their clock. */
int exec_watch_idle(pid_t pid, int fd, const dx_addr *peer)
{
    (void)pid, (void)fd, (void)peer;
    return 0;
}

void exec_close_idle(const struct options *o, uint64_t limit_ms)
{
    uint64_t now = dx__os_now_ms();
    AcquireSRWLockExclusive(&child_lock);
    for (size_t i = 0; i < MAX_CHILDREN; i++) {
        struct child *c = &children[i];
        if (!c->proc || c->proc == INVALID_HANDLE_VALUE || c->idle_closed || atomic_load(&c->ended))
            continue;
        uint64_t last = atomic_load(&c->last_ms);
        if (now < last || now - last < limit_ms)
            continue;
        c->idle_closed = 1;
        cli_info(o, "%s: closed: idle for %.3g s (process %ld stopped)", c->name,
                 (double)limit_ms / 1000.0, (long)c->pid);
        dx__sock_shutdown(c->sock, SHUT_RDWR); /* the client sees the end at once */
        TerminateProcess(c->proc, 1);
    }
    ReleaseSRWLockExclusive(&child_lock);
}

pid_t exec_tls_client(dx_loop *loop, const struct options *o, int fd, dx_tls *tls,
                      const dx_addr *peer, const dx_addr *local, struct exec_tls **list,
                      void (*done)(void *data), void *data)
{
    /* the Windows build has no TLS: --ssl is refused before any client */
    (void)loop, (void)o, (void)fd, (void)tls, (void)peer, (void)local, (void)list, (void)done,
        (void)data;
    return -1;
}

void exec_tls_close_all(struct exec_tls **list) { (void)list; }
