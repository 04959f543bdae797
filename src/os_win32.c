/* os_win32.c: the platform layer on Windows (Winsock 2), see os.h.
 *
 * - A socket is an int holding the SOCKET handle (handles are 32-bit
 *   significant on 64-bit Windows); a handle above INT_MAX is refused.
 * - Every failed Winsock call leaves a POSIX errno in errno: dx__os_errno()
 *   maps WSAGetLastError(). connect()'s WSAEWOULDBLOCK means "in progress"
 *   and becomes EINPROGRESS there only.
 * - Texts: msvcrt's strerror() knows nothing past 42 (and words some of
 *   those differently), so dx__os_strerror() carries glibc's texts.
 * - WSAStartup once (InitOnceExecuteOnce). No WSACleanup at exit, on
 *   purpose: WSACleanup resets the sockets still open ("reset and
 *   deallocated as if closesocket was called") and may drop data a closed
 *   socket still had to send, where the process's own exit closes them
 *   gracefully (a FIN after the pending bytes, as on POSIX). A netcat ends
 *   with connections open: the peer must see the end of the data, not a
 *   reset.
 * - Sockets are created non-inheritable (WSA_FLAG_NO_HANDLE_INHERIT, and
 *   SetHandleInformation for accepted ones and as a fallback): Windows'
 *   close-on-exec.
 */
#include "os.h"

#include <windows.h>
#include <mswsock.h>

#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

/* ---- start-up ---- */

static INIT_ONCE init_once = INIT_ONCE_STATIC_INIT;
static int init_rc;

static BOOL CALLBACK do_init(PINIT_ONCE once, PVOID param, PVOID *ctx)
{
    (void)once;
    (void)param;
    (void)ctx;
    WSADATA wd;
    int e = WSAStartup(MAKEWORD(2, 2), &wd);
    if (e != 0)
        init_rc = -dx__os_errno(e);
    return TRUE; /* no WSACleanup at exit: see the top of the file */
}

int dx__os_init(void)
{
    InitOnceExecuteOnce(&init_once, do_init, NULL, NULL);
    return init_rc;
}

uint64_t dx__os_now_ms(void)
{
    /* QueryPerformanceCounter: monotonic and fine-grained, where
     * GetTickCount64 moves in 15.6 ms steps (timers would be measured as
     * late or early by that much) */
    static LARGE_INTEGER freq;
    LARGE_INTEGER c;
    if (freq.QuadPart == 0)
        QueryPerformanceFrequency(&freq);
    if (freq.QuadPart <= 0 || !QueryPerformanceCounter(&c))
        return GetTickCount64();
    uint64_t n = (uint64_t)c.QuadPart, f = (uint64_t)freq.QuadPart;
    return n / f * 1000u + n % f * 1000u / f;
}

/* ---- errors ---- */

int dx__os_errno(int native)
{
    switch (native) {
    case 0: return 0;
    case WSAEWOULDBLOCK: return EAGAIN;
    case WSAEINPROGRESS: return EINPROGRESS;
    case WSAEALREADY: return EALREADY;
    case WSAENOTSOCK: return ENOTSOCK;
    case WSAEDESTADDRREQ: return EDESTADDRREQ;
    case WSAEMSGSIZE: return EMSGSIZE;
    case WSAEPROTOTYPE: return EPROTOTYPE;
    case WSAENOPROTOOPT: return ENOPROTOOPT;
    case WSAEPROTONOSUPPORT: return EPROTONOSUPPORT;
    case WSAESOCKTNOSUPPORT: return ESOCKTNOSUPPORT;
    case WSAEOPNOTSUPP: return EOPNOTSUPP;
    case WSAEPFNOSUPPORT: return EAFNOSUPPORT;
    case WSAEAFNOSUPPORT: return EAFNOSUPPORT;
    case WSAEADDRINUSE: return EADDRINUSE;
    case WSAEADDRNOTAVAIL: return EADDRNOTAVAIL;
    case WSAENETDOWN: return ENETDOWN;
    case WSAENETUNREACH: return ENETUNREACH;
    case WSAENETRESET: return ENETRESET;
    case WSAECONNABORTED: return ECONNABORTED;
    case WSAECONNRESET: return ECONNRESET;
    case ERROR_NETNAME_DELETED: return ECONNRESET;
    case WSAENOBUFS: return ENOBUFS;
    case WSAEISCONN: return EISCONN;
    case WSAENOTCONN: return ENOTCONN;
    case WSAESHUTDOWN: return EPIPE; /* send after shutdown(SD_SEND): POSIX says EPIPE */
    case WSAEDISCON: return EPIPE;
    case WSAETIMEDOUT: return ETIMEDOUT;
    case WSAECONNREFUSED: return ECONNREFUSED;
    case WSAELOOP: return ELOOP;
    case WSAENAMETOOLONG: return ENAMETOOLONG;
    case WSAEHOSTDOWN: return EHOSTDOWN;
    case WSAEHOSTUNREACH: return EHOSTUNREACH;
    case WSAENOTEMPTY: return ENOTEMPTY;
    case WSAEINTR: return EINTR;
    case WSAEBADF: return EBADF;
    case WSAEACCES: return EACCES;
    case WSAEFAULT: return EFAULT;
    case WSAEINVAL: return EINVAL;
    case WSAEMFILE: return EMFILE;
    case WSAECANCELLED: return ECANCELED;
    case WSA_OPERATION_ABORTED: return ECANCELED;
    case WSA_NOT_ENOUGH_MEMORY: return ENOMEM;
    case WSA_INVALID_HANDLE: return EBADF;
    case WSA_INVALID_PARAMETER: return EINVAL;
    case WSASYSNOTREADY: return ENETDOWN;
    case WSAVERNOTSUPPORTED: return ENOSYS;
    case WSANOTINITIALISED: return ENOSYS;
    case WSAHOST_NOT_FOUND: return EHOSTUNREACH;
    default: return EIO;
    }
}

int dx__sock_errno(void)
{
    errno = dx__os_errno(WSAGetLastError());
    return errno;
}

/* glibc's texts, so a message reads the same on both platforms. */
const char *dx__os_strerror(int errnum)
{
    switch (errnum) {
    case EPERM: return "Operation not permitted";
    case ENOENT: return "No such file or directory";
    case ESRCH: return "No such process";
    case EINTR: return "Interrupted system call";
    case EIO: return "Input/output error";
    case ENXIO: return "No such device or address";
    case E2BIG: return "Argument list too long";
    case ENOEXEC: return "Exec format error";
    case EBADF: return "Bad file descriptor";
    case ECHILD: return "No child processes";
    case EAGAIN: return "Resource temporarily unavailable";
    case EWOULDBLOCK: return "Resource temporarily unavailable";
    case ENOMEM: return "Cannot allocate memory";
    case EACCES: return "Permission denied";
    case EFAULT: return "Bad address";
    case EBUSY: return "Device or resource busy";
    case EEXIST: return "File exists";
    case EXDEV: return "Invalid cross-device link";
    case ENODEV: return "No such device";
    case ENOTDIR: return "Not a directory";
    case EISDIR: return "Is a directory";
    case EINVAL: return "Invalid argument";
    case ENFILE: return "Too many open files in system";
    case EMFILE: return "Too many open files";
    case ENOTTY: return "Inappropriate ioctl for device";
    case EFBIG: return "File too large";
    case ENOSPC: return "No space left on device";
    case ESPIPE: return "Illegal seek";
    case EROFS: return "Read-only file system";
    case EMLINK: return "Too many links";
    case EPIPE: return "Broken pipe";
    case EDOM: return "Numerical argument out of domain";
    case ERANGE: return "Numerical result out of range";
    case EDEADLK: return "Resource deadlock avoided";
    case ENAMETOOLONG: return "File name too long";
    case ENOLCK: return "No locks available";
    case ENOSYS: return "Function not implemented";
    case ENOTEMPTY: return "Directory not empty";
    case EILSEQ: return "Invalid or incomplete multibyte or wide character";
    case EADDRINUSE: return "Address already in use";
    case EADDRNOTAVAIL: return "Cannot assign requested address";
    case EAFNOSUPPORT: return "Address family not supported by protocol";
    case EALREADY: return "Operation already in progress";
    case EBADMSG: return "Bad message";
    case ECANCELED: return "Operation canceled";
    case ECONNABORTED: return "Software caused connection abort";
    case ECONNREFUSED: return "Connection refused";
    case ECONNRESET: return "Connection reset by peer";
    case EDESTADDRREQ: return "Destination address required";
    case EHOSTUNREACH: return "No route to host";
    case EIDRM: return "Identifier removed";
    case EINPROGRESS: return "Operation now in progress";
    case EISCONN: return "Transport endpoint is already connected";
    case ELOOP: return "Too many levels of symbolic links";
    case EMSGSIZE: return "Message too long";
    case ENETDOWN: return "Network is down";
    case ENETRESET: return "Network dropped connection on reset";
    case ENETUNREACH: return "Network is unreachable";
    case ENOBUFS: return "No buffer space available";
    case ENODATA: return "No data available";
    case ENOLINK: return "Link has been severed";
    case ENOMSG: return "No message of desired type";
    case ENOPROTOOPT: return "Protocol not available";
    case ENOSR: return "Out of streams resources";
    case ENOSTR: return "Device not a stream";
    case ENOTCONN: return "Transport endpoint is not connected";
    case ENOTRECOVERABLE: return "State not recoverable";
    case ENOTSOCK: return "Socket operation on non-socket";
    case ENOTSUP: return "Operation not supported";
    case EOPNOTSUPP: return "Operation not supported";
    case EOVERFLOW: return "Value too large for defined data type";
    case EOWNERDEAD: return "Owner died";
    case EPROTO: return "Protocol error";
    case EPROTONOSUPPORT: return "Protocol not supported";
    case EPROTOTYPE: return "Protocol wrong type for socket";
    case ETIME: return "Timer expired";
    case ETIMEDOUT: return "Connection timed out";
    case ETXTBSY: return "Text file busy";
    case EHOSTDOWN: return "Host is down";
    case ESHUTDOWN: return "Cannot send after transport endpoint shutdown";
    case ESOCKTNOSUPPORT: return "Socket type not supported";
    case ENONET: return "Machine is not on the network";
    default: return "Unknown error";
    }
}

int dx__os_eai_mag(int e)
{
    switch (e) {
    case EAI_BADFLAGS: return 1;
    case EAI_NONAME: return 2;
    case EAI_AGAIN: return 3;
    case EAI_FAIL: return 4;
    case WSANO_DATA: return 5; /* glibc's EAI_NODATA */
    case EAI_FAMILY: return 6;
    case EAI_SOCKTYPE: return 7;
    case EAI_SERVICE: return 8;
    case EAI_MEMORY: return 10;
    default: return 11; /* EAI_SYSTEM */
    }
}

const char *dx__os_gai_strerror(int mag)
{
    static const char *const texts[] = {
        "Unknown error",
        "Bad value for ai_flags",
        "Name or service not known",
        "Temporary failure in name resolution",
        "Non-recoverable failure in name resolution",
        "No address associated with hostname",
        "ai_family not supported",
        "ai_socktype not supported",
        "Servname not supported for ai_socktype",
        "Address family for hostname not supported",
        "Memory allocation failure",
        "System error",
        "Argument buffer overflow",
    };
    return mag > 0 && mag < (int)(sizeof texts / sizeof texts[0]) ? texts[mag] : texts[0];
}

/* ---- sockets ---- */

static SOCKET S(int fd) { return (SOCKET)(intptr_t)fd; } /* -1 -> INVALID_SOCKET */

static int sock_fail(void)
{
    dx__sock_errno();
    return -1;
}

/* A new SOCKET as an int, or -errno. */
static int as_fd(SOCKET s)
{
    if (s == INVALID_SOCKET)
        return -dx__sock_errno();
    if (s > (SOCKET)INT_MAX) { /* never seen: handles are small */
        closesocket(s);
        return -EMFILE;
    }
    SetHandleInformation((HANDLE)s, HANDLE_FLAG_INHERIT, 0);
    return (int)s;
}

int dx__sock_nonblock(int fd, int on)
{
    u_long v = on ? 1 : 0;
    if (ioctlsocket(S(fd), FIONBIO, &v) != 0)
        return -dx__sock_errno();
    return 0; /* Winsock cannot tell the previous mode */
}

int dx_set_nonblock(int fd, int on) { return dx__sock_nonblock(fd, on); }

int dx_close(int fd)
{
    if (fd < 0)
        return -EBADF;
    return closesocket(S(fd)) == 0 ? 0 : -dx__sock_errno();
}

int dx__sock_socket(int family, int type, int protocol)
{
    dx__os_init();
    SOCKET s = WSASocketW(family, type, protocol, NULL, 0,
                          WSA_FLAG_OVERLAPPED | WSA_FLAG_NO_HANDLE_INHERIT);
    if (s == INVALID_SOCKET && WSAGetLastError() == WSAEINVAL) /* before 7 SP1 */
        s = WSASocketW(family, type, protocol, NULL, 0, WSA_FLAG_OVERLAPPED);
    int fd = as_fd(s);
    return fd < 0 ? -1 : fd; /* errno is set */
}

int dx__sock_open(int family, int type)
{
    /* Unix sockets: Windows 10 1803+ has AF_UNIX stream sockets, wine 8
     * has none (WSAEAFNOSUPPORT): refused the same way everywhere, so what
     * runs is what the tests ran */
    if (family == AF_UNIX)
        return -EAFNOSUPPORT;
    int fd = dx__sock_socket(family, type, 0);
    if (fd < 0)
        return -errno;
    int rc = dx__sock_nonblock(fd, 1);
    /* an ICMP port unreachable would make the next recvfrom() of this
     * socket fail with WSAECONNRESET, even unconnected: turn that off */
    if (rc == 0 && type == SOCK_DGRAM)
        (void)dx__sock_udp_icmp_errors(fd, 0);
    if (rc < 0) {
        closesocket(S(fd));
        return rc;
    }
    return fd;
}

int dx__sock_udp_icmp_errors(int fd, int on)
{
    BOOL v = on ? TRUE : FALSE;
    DWORD got = 0;
    if (WSAIoctl(S(fd), SIO_UDP_CONNRESET, &v, sizeof v, NULL, 0, &got, NULL, NULL) != 0)
        return -dx__sock_errno();
    return 0;
}

int dx__sock_accept_nb(int lfd, struct sockaddr *sa, dx__socklen *len)
{
    for (;;) {
        SOCKET s = accept(S(lfd), sa, len);
        if (s == INVALID_SOCKET) {
            int e = dx__sock_errno();
            if (e == EINTR)
                continue;
            /* a connection reset while queued: the same as ECONNABORTED */
            return e == ECONNRESET ? -ECONNABORTED : -e;
        }
        int fd = as_fd(s);
        if (fd < 0)
            return fd;
        int rc = dx__sock_nonblock(fd, 1);
        if (rc < 0) {
            closesocket(s);
            return rc;
        }
        return fd;
    }
}

int dx__sock_close(int fd) { return closesocket(S(fd)) == 0 ? 0 : sock_fail(); }

int dx__sock_bind(int fd, const struct sockaddr *sa, dx__socklen len)
{
    return bind(S(fd), sa, len) == 0 ? 0 : sock_fail();
}

int dx__sock_listen(int fd, int backlog) { return listen(S(fd), backlog) == 0 ? 0 : sock_fail(); }

int dx__sock_accept(int fd, struct sockaddr *sa, dx__socklen *len)
{
    SOCKET s = accept(S(fd), sa, len);
    int r = as_fd(s);
    return r < 0 ? -1 : r;
}

int dx__sock_connect(int fd, const struct sockaddr *sa, dx__socklen len)
{
    if (connect(S(fd), sa, len) == 0)
        return 0;
    int w = WSAGetLastError();
    /* non-blocking connect: "would block" means "in progress" */
    errno = (w == WSAEWOULDBLOCK || w == WSAEINPROGRESS) ? EINPROGRESS : dx__os_errno(w);
    return -1;
}

int dx__sock_shutdown(int fd, int how) { return shutdown(S(fd), how) == 0 ? 0 : sock_fail(); }

static int clamp(size_t n) { return n > INT_MAX ? INT_MAX : (int)n; }

ssize_t dx__sock_send(int fd, const void *buf, size_t n, int flags)
{
    int r = send(S(fd), buf, clamp(n), flags);
    return r == SOCKET_ERROR ? sock_fail() : r;
}

ssize_t dx__sock_recv(int fd, void *buf, size_t n, int flags)
{
    int r = recv(S(fd), buf, clamp(n), flags);
    return r == SOCKET_ERROR ? sock_fail() : r;
}

ssize_t dx__sock_sendto(int fd, const void *buf, size_t n, int flags, const struct sockaddr *sa,
                        dx__socklen len)
{
    int r = sa ? sendto(S(fd), buf, clamp(n), flags, sa, len) : send(S(fd), buf, clamp(n), flags);
    return r == SOCKET_ERROR ? sock_fail() : r;
}

ssize_t dx__sock_recvfrom(int fd, void *buf, size_t n, int flags, struct sockaddr *sa,
                          dx__socklen *len)
{
    int r = recvfrom(S(fd), buf, clamp(n), flags, sa, len);
    return r == SOCKET_ERROR ? sock_fail() : r;
}

ssize_t dx__sock_recvfrom_trunc(int fd, void *buf, size_t cap, struct sockaddr *sa,
                                dx__socklen *len, int *truncated)
{
    *truncated = 0;
    int r = recvfrom(S(fd), buf, clamp(cap), 0, sa, len);
    if (r != SOCKET_ERROR)
        return r;
    int w = WSAGetLastError();
    if (w == WSAEMSGSIZE) {
        /* Winsock fills the buffer, drops the rest and says WSAEMSGSIZE */
        *truncated = 1;
        return clamp(cap);
    }
    /* a datagram socket: WSAECONNRESET is an ICMP port unreachable,
     * which POSIX calls ECONNREFUSED */
    errno = w == WSAECONNRESET ? ECONNREFUSED : dx__os_errno(w);
    return -1;
}

int dx__sock_setsockopt(int fd, int level, int name, const void *val, dx__socklen len)
{
    return setsockopt(S(fd), level, name, val, len) == 0 ? 0 : sock_fail();
}

int dx__sock_getsockopt(int fd, int level, int name, void *val, dx__socklen *len)
{
    return getsockopt(S(fd), level, name, val, len) == 0 ? 0 : sock_fail();
}

int dx__sock_getsockname(int fd, struct sockaddr *sa, dx__socklen *len)
{
    return getsockname(S(fd), sa, len) == 0 ? 0 : sock_fail();
}

int dx__sock_getpeername(int fd, struct sockaddr *sa, dx__socklen *len)
{
    return getpeername(S(fd), sa, len) == 0 ? 0 : sock_fail();
}

int dx__sock_atmark(int fd)
{
    /* SIOCATMARK says TRUE when no urgent data waits; it cannot tell where
     * the mark is. Urgent data waiting counts as "at the mark", so a
     * DX_PRI handler gets to read it before the normal data goes on. */
    u_long none = 1;
    if (ioctlsocket(S(fd), SIOCATMARK, &none) != 0)
        return sock_fail();
    return none ? 0 : 1;
}

long dx__os_read_handle(void *handle, void *buf, unsigned long n)
{
    for (;;) {
        DWORD got = 0;
        if (!ReadFile(handle, buf, n, &got, NULL))
            return -1;
        if (got > 0 || n == 0)
            return (long)got;
        DWORD why = GetLastError(); /* the calls below may change it */
        /* a pipe whose writer is still there: it wrote 0 bytes. Wine's
         * Unix pipes (a program's stdin) say 0 at their end and cannot be
         * peeked: that is the end, as a file's, and a console's Ctrl-Z */
        int open_pipe = GetFileType(handle) == FILE_TYPE_PIPE &&
                        PeekNamedPipe(handle, NULL, 0, NULL, NULL, NULL);
        SetLastError(why);
        if (!open_pipe)
            return 0;
    }
}

int dx__os_is_socket(int fd)
{
    int type = 0;
    int len = sizeof type;
    return fd >= 0 && getsockopt(S(fd), SOL_SOCKET, SO_TYPE, (char *)&type, &len) == 0;
}

/* ---- descriptors: every one is a socket on Windows ---- */

/* recv() said 0 on a socket. Wine reports a connection the peer reset as an
 * end of stream (recv 0, SO_ERROR 0) where Windows and POSIX say
 * ECONNRESET; only send() tells (WSAECONNRESET). A zero-byte send sends
 * nothing on a stream socket and tells the two apart: 0 for a real end
 * (the peer's FIN: the send succeeds; our own shutdown: WSAESHUTDOWN), -1
 * with errno ECONNRESET for a reset. On Windows recv() reports the reset
 * itself, so this never finds one there. Datagram sockets are left alone
 * (0 is an empty datagram; a zero-byte send would send one). */
static ssize_t end_or_reset(int fd)
{
    int type = 0, len = sizeof type;
    if (getsockopt(S(fd), SOL_SOCKET, SO_TYPE, (char *)&type, &len) != 0 || type != SOCK_STREAM)
        return 0;
    if (send(S(fd), "", 0, 0) == SOCKET_ERROR && WSAGetLastError() == WSAECONNRESET) {
        errno = ECONNRESET;
        return -1;
    }
    return 0;
}

ssize_t dx__fd_read(int fd, void *buf, size_t n)
{
    ssize_t r = dx__sock_recv(fd, buf, n, 0);
    return r == 0 && n > 0 ? end_or_reset(fd) : r;
}
ssize_t dx__fd_write(int fd, const void *buf, size_t n) { return dx__sock_send(fd, buf, n, 0); }
int dx__fd_close(int fd) { return dx__sock_close(fd); }

#define MAX_SEGS 16

ssize_t dx__fd_readv(int fd, const struct iovec *iov, int n)
{
    WSABUF b[MAX_SEGS];
    if (n > MAX_SEGS)
        n = MAX_SEGS;
    for (int i = 0; i < n; i++) {
        b[i].buf = iov[i].iov_base;
        b[i].len = (ULONG)clamp(iov[i].iov_len);
    }
    DWORD got = 0, flags = 0;
    if (WSARecv(S(fd), b, (DWORD)n, &got, &flags, NULL, NULL) != 0)
        return sock_fail();
    return got == 0 && n > 0 ? end_or_reset(fd) : (ssize_t)got;
}

ssize_t dx__fd_writev(int fd, const struct iovec *iov, int n, int is_socket)
{
    (void)is_socket;
    WSABUF b[MAX_SEGS];
    if (n > MAX_SEGS)
        n = MAX_SEGS;
    for (int i = 0; i < n; i++) {
        b[i].buf = iov[i].iov_base;
        b[i].len = (ULONG)clamp(iov[i].iov_len);
    }
    DWORD sent = 0;
    if (WSASend(S(fd), b, (DWORD)n, &sent, 0, NULL, NULL) != 0)
        return sock_fail();
    return (ssize_t)sent;
}

/* ---- poll ---- */

int dx__os_poll(struct pollfd *fds, unsigned long n, int timeout_ms)
{
    if (n == 0) {
        /* WSAPoll with no sockets fails (WSAEINVAL) instead of sleeping */
        Sleep(timeout_ms < 0 ? INFINITE : (DWORD)timeout_ms);
        return 0;
    }
    /* The Microsoft provider fails the whole call (WSAEINVAL) for any
     * events bit but POLLRDNORM, POLLRDBAND and POLLWRNORM: POLLPRI (wine
     * accepts it), and POLLERR/POLLHUP/POLLNVAL, which poll(2) ignores in
     * `events`. Ask for POLLRDBAND (urgent data) in POLLPRI's place, drop
     * the others, then give the caller its own events back. */
    const short ok = POLLRDNORM | POLLRDBAND | POLLWRNORM;
    unsigned long nbad = 0;
    for (unsigned long i = 0; i < n; i++)
        nbad += (fds[i].events & ~ok) != 0;
    if (nbad == 0) {
        int r = WSAPoll(fds, n, timeout_ms);
        if (r < 0)
            dx__sock_errno();
        return r;
    }
    short small[64], *saved = n <= 64 ? small : malloc(n * sizeof *saved);
    if (!saved) {
        errno = ENOMEM;
        return -1;
    }
    for (unsigned long i = 0; i < n; i++) {
        saved[i] = fds[i].events;
        short ev = (short)(fds[i].events & ok);
        if (fds[i].events & POLLPRI)
            ev |= POLLRDBAND;
        fds[i].events = ev;
    }
    int r = WSAPoll(fds, n, timeout_ms);
    int e = r < 0 ? dx__sock_errno() : 0;
    for (unsigned long i = 0; i < n; i++) {
        if ((saved[i] & POLLPRI) && (fds[i].revents & POLLRDBAND))
            fds[i].revents |= POLLPRI;
        if (!(saved[i] & POLLRDBAND)) /* POLLIN contains it */
            fds[i].revents &= ~POLLRDBAND; /* asked for on the caller's behalf */
        fds[i].events = saved[i];
    }
    if (saved != small)
        free(saved);
    if (r < 0)
        errno = e;
    return r;
}

/* ---- a connected pair of sockets ---- */

int dx__socketpair(int fds[2])
{
    int rc = dx__os_init();
    if (rc < 0)
        return rc;
    int l = -1, c = -1, a = -1;
    struct sockaddr_in addr, mine, peer;
    dx__socklen len;
    memset(&addr, 0, sizeof addr);
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    addr.sin_port = 0;
    int one = 1;
    l = dx__sock_socket(AF_INET, SOCK_STREAM, 0);
    if (l < 0)
        goto fail;
    /* nobody else may bind the listener's port while it lives */
    (void)setsockopt(S(l), SOL_SOCKET, SO_EXCLUSIVEADDRUSE, (const char *)&one, sizeof one);
    len = sizeof addr;
    if (dx__sock_bind(l, (struct sockaddr *)&addr, sizeof addr) < 0 || dx__sock_listen(l, 1) < 0 ||
        dx__sock_getsockname(l, (struct sockaddr *)&addr, &len) < 0)
        goto fail;
    c = dx__sock_socket(AF_INET, SOCK_STREAM, 0);
    if (c < 0 || dx__sock_connect(c, (struct sockaddr *)&addr, sizeof addr) < 0)
        goto fail;
    len = sizeof mine;
    if (dx__sock_getsockname(c, (struct sockaddr *)&mine, &len) < 0)
        goto fail;
    /* the accepted peer must be our own connecting socket: another local
     * program could connect to the listener first */
    for (int tries = 0; tries < 16; tries++) {
        len = sizeof peer;
        a = dx__sock_accept(l, (struct sockaddr *)&peer, &len);
        if (a < 0)
            goto fail;
        if (len >= (dx__socklen)sizeof peer && peer.sin_port == mine.sin_port &&
            peer.sin_addr.s_addr == mine.sin_addr.s_addr)
            break;
        closesocket(S(a));
        a = -1;
    }
    if (a < 0) {
        errno = ECONNABORTED;
        goto fail;
    }
    closesocket(S(l));
    l = -1;
    if (dx__sock_nonblock(a, 1) < 0 || dx__sock_nonblock(c, 1) < 0)
        goto fail;
    /* small writes (a console line) go out at once */
    (void)setsockopt(S(a), IPPROTO_TCP, TCP_NODELAY, (const char *)&one, sizeof one);
    (void)setsockopt(S(c), IPPROTO_TCP, TCP_NODELAY, (const char *)&one, sizeof one);
    fds[0] = a;
    fds[1] = c;
    return 0;
fail:
    rc = errno ? -errno : -EIO;
    if (l >= 0)
        closesocket(S(l));
    if (c >= 0)
        closesocket(S(c));
    if (a >= 0)
        closesocket(S(a));
    return rc;
}

/* ---- C runtime gaps ---- */

ssize_t dx__getline(char **line, size_t *cap, FILE *f)
{
    size_t n = 0;
    int ch;
    if (!*line || *cap == 0) {
        size_t c = 128;
        char *p = realloc(*line, c);
        if (!p) {
            errno = ENOMEM;
            return -1;
        }
        *line = p;
        *cap = c;
    }
    while ((ch = fgetc(f)) != EOF) {
        if (n + 2 > *cap) {
            size_t c = *cap * 2;
            char *p = realloc(*line, c);
            if (!p) {
                errno = ENOMEM;
                return -1;
            }
            *line = p;
            *cap = c;
        }
        (*line)[n++] = (char)ch;
        if (ch == '\n')
            break;
    }
    if (n == 0)
        return -1;
    (*line)[n] = '\0';
    return (ssize_t)n;
}
