/* stdio_win32.c: the process around the commands on Windows (stdio.c on
 * POSIX). WSAPoll watches sockets only, so the console or the pipes on
 * stdin and stdout are bridged to the loop by threads, as ncat does:
 *
 *   stdin  --ReadFile--> [stdin thread]  --send--> socket pair --> loop (cli_stdin_fd())
 *   loop (cli_stdout_fd()) --> socket pair --recv--> [stdout thread] --WriteFile--> stdout
 *
 * The threads use blocking calls on their ends: a full pipe or a slow
 * console holds the thread, the pair's buffers fill and the loop stops
 * reading (backpressure; nothing grows). End of stdin shuts the stdin
 * pair's write side (the loop sees end of input: half-close is preserved end
 * to end); the loop's end of stdout shut or closed ends the stdout thread
 * once every byte is written, and it then closes stdout so that the consumer
 * of a pipe sees its end of input. At exit the stdout thread is given the
 * time to write what is left (as long as it makes progress).
 *
 * Ctrl-C and Ctrl-Break (SetConsoleCtrlHandler) stop the loop through a
 * socket pair as SIGINT does on POSIX: the clean stop, then status 130; a
 * second one ends the process at once with 130. Closing the console window
 * (or logoff, shutdown) stops it as SIGHUP would (129). */
#include "cli.h"
#include "os.h"

#include <windows.h>

#include <errno.h>
#include <fcntl.h>
#include <io.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define BRIDGE_BUF (64 * 1024)
#define STDOUT_DRAIN_STALL_MS 5000 /* at exit: give up when stdout takes nothing for this long */
#define SIG_HUP 1                  /* Windows has no SIGHUP: its number on POSIX */

static const char *volatile unix_path_to_remove;
static volatile LONG stop_signal;
static int wake_pair[2] = {-1, -1};
static dx_io wake_io;

static CRITICAL_SECTION bridge_lock;
static INIT_ONCE bridge_once = INIT_ONCE_STATIC_INIT;
static int stdin_pair[2] = {-1, -1};  /* [0]: the loop's end, [1]: the thread's */
static int stdout_pair[2] = {-1, -1}; /* [0]: the loop's end, [1]: the thread's */
static int stdin_unread;              /* cli_stdin_never_read(): no thread reads stdin */
static HANDLE stdout_thread;
static atomic_ullong stdout_written;  /* progress of the stdout thread, for the wait at exit */
static atomic_int stdout_shut;        /* the loop's end of stdout is shut: once */

static BOOL CALLBACK init_lock(PINIT_ONCE once, PVOID param, PVOID *ctx)
{
    (void)once, (void)param, (void)ctx;
    InitializeCriticalSection(&bridge_lock);
    return TRUE;
}

static void lock(void)
{
    InitOnceExecuteOnce(&bridge_once, init_lock, NULL, NULL);
    EnterCriticalSection(&bridge_lock);
}

static void unlock(void) { LeaveCriticalSection(&bridge_lock); }

static int std_is_console(HANDLE h)
{
    DWORD mode;
    return h && h != INVALID_HANDLE_VALUE && GetConsoleMode(h, &mode);
}

/* Send all of buf on a blocking socket: 0, or -1 when the loop's end is gone. */
static int send_all(int fd, const char *buf, size_t n)
{
    while (n > 0) {
        ssize_t w = dx__sock_send(fd, buf, n, 0);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        buf += w;
        n -= (size_t)w;
    }
    return 0;
}

/* stdin -> the loop. End of input (0 bytes, a closed pipe, Ctrl-Z on a
 * console) becomes a shutdown of the write side: the loop reads its end. */
static DWORD WINAPI stdin_main(LPVOID arg)
{
    (void)arg;
    int fd = stdin_pair[1];
    HANDLE in = GetStdHandle(STD_INPUT_HANDLE);
    int console = std_is_console(in);
    char *buf = malloc(BRIDGE_BUF);
    if (buf && in && in != INVALID_HANDLE_VALUE) {
        for (;;) {
            SetLastError(0);
            long got = dx__os_read_handle(in, buf, BRIDGE_BUF);
            if (got == 0 && console) {
                /* Ctrl-C during a console read also returns 0 bytes
                 * (ERROR_OPERATION_ABORTED): not the end of input */
                if (GetLastError() == ERROR_OPERATION_ABORTED || stop_signal) {
                    if (stop_signal)
                        break; /* the loop is stopping: leave stdin as it is */
                    Sleep(10);
                    continue;
                }
            }
            if (got <= 0)
                break; /* ERROR_BROKEN_PIPE, end of file, Ctrl-Z */
            if (send_all(fd, buf, (size_t)got) < 0)
                break; /* the loop closed its end: nobody reads stdin any more */
        }
    }
    free(buf);
    dx__sock_shutdown(fd, SHUT_WR); /* the loop sees end of input after every byte */
    return 0;
}

/* The loop -> stdout, until the loop shuts or closes its end. Then stdout
 * is closed, so that the reader of a pipe sees its end (not a console). A
 * stdout that refuses bytes (the reader has gone) closes our end: the loop's
 * next write fails, as write() with EPIPE on POSIX. */
static DWORD WINAPI stdout_main(LPVOID arg)
{
    (void)arg;
    int fd = stdout_pair[1];
    HANDLE out = GetStdHandle(STD_OUTPUT_HANDLE);
    int discard = !out || out == INVALID_HANDLE_VALUE; /* no stdout: as /dev/null */
    char *buf = malloc(BRIDGE_BUF);
    int failed = !buf;
    while (!failed) {
        ssize_t n = dx__sock_recv(fd, buf, BRIDGE_BUF, 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        for (ssize_t off = 0; off < n && !discard;) {
            DWORD put = 0;
            if (!WriteFile(out, buf + off, (DWORD)(n - off), &put, NULL)) {
                failed = 1;
                break;
            }
            off += put;
        }
        atomic_fetch_add(&stdout_written, (unsigned long long)n);
    }
    free(buf);
    if (failed) {
        /* the loop's sends now fail (connection reset): "write stdout: ..." */
        struct linger lg = {1, 0};
        dx__sock_setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
        dx__sock_close(fd);
        stdout_pair[1] = -1;
        return 1;
    }
    if (!discard && !std_is_console(out) && GetFileType(out) == FILE_TYPE_PIPE) {
        /* the reader's end of input; through the C runtime when fd 1 is this
         * handle, so that it forgets it too (and clears the std handle): a
         * printf() must never reach whatever object reuses the number */
        if (_get_osfhandle(1) == (intptr_t)out)
            _close(1);
        else
            CloseHandle(out);
    }
    return 0;
}

/* A pair for one direction: the loop's end non-blocking (as dx__socketpair
 * makes it), the thread's end blocking. 0, or -1 (the loop then gets -1). */
static int make_pair(int pair[2])
{
    if (dx__os_init() < 0 || dx__socketpair(pair) < 0)
        return -1;
    if (dx__sock_nonblock(pair[1], 0) < 0) {
        dx__sock_close(pair[0]);
        dx__sock_close(pair[1]);
        pair[0] = pair[1] = -1;
        return -1;
    }
    return 0;
}

static HANDLE start_thread(LPTHREAD_START_ROUTINE fn)
{
    return CreateThread(NULL, 256 * 1024, fn, NULL, STACK_SIZE_PARAM_IS_A_RESERVATION, NULL);
}

void cli_stdin_never_read(void) { stdin_unread = 1; }

int cli_stdin_fd(void)
{
    lock();
    if (stdin_pair[0] < 0 && make_pair(stdin_pair) == 0 && !stdin_unread) {
        HANDLE t = start_thread(stdin_main);
        if (t)
            CloseHandle(t); /* never waited for: it may sit in ReadFile until exit */
        else
            dx__sock_shutdown(stdin_pair[1], SHUT_WR); /* no thread: end of input at once */
    }
    int fd = stdin_pair[0];
    unlock();
    return fd;
}

int cli_stdout_fd(void)
{
    lock();
    if (stdout_pair[0] < 0 && make_pair(stdout_pair) == 0) {
        stdout_thread = start_thread(stdout_main);
        if (!stdout_thread) {
            dx__sock_close(stdout_pair[1]); /* the loop's writes fail: said as an error */
            stdout_pair[1] = -1;
        }
    }
    int fd = stdout_pair[0];
    unlock();
    return fd;
}

/* The loop's end of stdout: shut for writing, once. The thread writes what
 * is still in the pair, then sees the end. */
static void shut_stdout(void)
{
    if (stdout_pair[0] >= 0 && !atomic_exchange(&stdout_shut, 1))
        dx__sock_shutdown(stdout_pair[0], SHUT_WR);
}

/* The peer ended its side: end stdout too (see stdio.c). Nothing to gain on
 * a console, whose handle stays open as a terminal does on POSIX. */
void cli_stdout_close(void)
{
    if (std_is_console(GetStdHandle(STD_OUTPUT_HANDLE)))
        return;
    shut_stdout();
}

/* At exit: every byte the loop wrote to stdout reaches it, unless stdout
 * stops taking bytes for STDOUT_DRAIN_STALL_MS. */
static void drain_stdout(void)
{
    if (!stdout_thread)
        return;
    shut_stdout();
    unsigned long long last = atomic_load(&stdout_written);
    DWORD stalled = 0;
    while (WaitForSingleObject(stdout_thread, 100) == WAIT_TIMEOUT) {
        unsigned long long now = atomic_load(&stdout_written);
        stalled = now == last ? stalled + 100 : 0;
        last = now;
        if (stalled >= STDOUT_DRAIN_STALL_MS)
            break;
    }
}

void cli_stdio_nonblock(void)
{
    /* nothing to switch: the loop's ends are non-blocking sockets already */
}

static void remove_unix_path(void)
{
    const char *path = unix_path_to_remove;
    if (path)
        DeleteFileA(path);
}

static void fatal_exit(int sig)
{
    exec_kill_all(); /* --exec children must not outlive us */
    remove_unix_path();
    fflush(stderr);
    ExitProcess((UINT)(EXIT_SIGNAL + sig));
}

static BOOL WINAPI on_console_event(DWORD type)
{
    int sig = type == CTRL_C_EVENT || type == CTRL_BREAK_EVENT ? SIGINT : SIG_HUP;
    if (InterlockedCompareExchange(&stop_signal, sig, 0) != 0 || wake_pair[1] < 0)
        fatal_exit(sig); /* the second one, or no loop to stop */
    int saved = errno;
    (void)dx__sock_send(wake_pair[1], "", 1, 0);
    errno = saved;
    if (sig == SIG_HUP) {
        /* the process ends when this returns: give main() time to stop cleanly */
        Sleep(4000);
        fatal_exit(sig);
    }
    return TRUE;
}

static void on_wake(dx_loop *loop, dx_io *io, int events)
{
    (void)events;
    char buf[16];
    while (dx__sock_recv(io->fd, buf, sizeof buf, 0) > 0)
        ;
    dx_loop_stop(loop);
}

void cli_signals_watch(dx_loop *loop)
{
    if (wake_pair[0] < 0 && dx__socketpair(wake_pair) < 0)
        return; /* Ctrl-C then simply ends the process */
    dx_io_init(&wake_io, wake_pair[0], on_wake, NULL);
    dx_io_set(loop, &wake_io, DX_READ);
}

void cli_signals_unwatch(dx_loop *loop) { dx_io_stop(loop, &wake_io); }

int cli_stop_signal(void) { return (int)stop_signal; }

void cli_process_init(void)
{
    /* bytes as they are: no CRLF translation, no Ctrl-Z as end of file */
    for (int fd = 0; fd < 3; fd++)
        _setmode(fd, _O_BINARY);
    SetConsoleCtrlHandler(on_console_event, TRUE);
    atexit(drain_stdout);
}

void cli_remove_on_exit(const char *path) { unix_path_to_remove = path; }

uint64_t cli_now_ms(void) { return dx__os_now_ms(); }

int cli_wait_fd(int fd, short events, uint64_t deadline_ms)
{
    for (;;) {
        if (cli_stop_signal())
            return -EINTR;
        uint64_t now = cli_now_ms();
        if (now >= deadline_ms)
            return DX_ETIMEDOUT;
        /* the wake pair too: Ctrl-C interrupts no system call on Windows */
        struct pollfd p[2] = {{.fd = (SOCKET)fd, .events = events},
                              {.fd = (SOCKET)wake_pair[0], .events = POLLIN}};
        uint64_t left = deadline_ms - now;
        int rc = dx__os_poll(p, wake_pair[0] >= 0 ? 2 : 1, left > 1000 ? 1000 : (int)left);
        if (rc < 0 && errno != EINTR)
            return -errno;
        if (rc > 0 && p[0].revents)
            return 0; /* errors and hang-ups show in the I/O that follows */
    }
}
