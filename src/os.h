/* os.h: the platform layer. Every difference between POSIX sockets and
 * Win32 sockets (Winsock 2) lives behind these names, so the rest of
 * libduplex and the command read like plain POSIX code:
 *
 * - A socket is an `int` everywhere. On Windows it holds a SOCKET handle
 *   (handles are 32-bit significant on 64-bit Windows, the rule OpenSSL's
 *   SSL_set_fd(int) relies on too); INVALID_SOCKET becomes -1.
 * - A failed socket call leaves a POSIX errno value in errno on both
 *   platforms: on Windows the dx__sock_* wrappers below translate
 *   WSAGetLastError() (WSAECONNREFUSED -> ECONNREFUSED, WSAEWOULDBLOCK ->
 *   EAGAIN...), so `return -errno;` and dx_strerror() mean the same.
 * - Nothing raises SIGPIPE: POSIX sends with MSG_NOSIGNAL; Windows has no
 *   SIGPIPE at all.
 *
 * On POSIX the wrappers are the system calls themselves (macros, no cost).
 * On Windows they are functions in os_win32.c. POSIX-only code (splice,
 * fork, /proc) stays in POSIX files; a feature Windows lacks is refused
 * where it is asked for, naming the platform (DX_OS_NAME).
 */
#ifndef DUPLEX_OS_H
#define DUPLEX_OS_H

#include "duplex.h"

#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#ifdef _WIN32
#include <winsock2.h>
#include <ws2tcpip.h>
#include <sys/types.h>
#include <io.h>
#define DX_OS_NAME "Windows"
#define DX_OS_WINDOWS 1
#ifndef SHUT_RD
#define SHUT_RD SD_RECEIVE
#define SHUT_WR SD_SEND
#define SHUT_RDWR SD_BOTH
#endif
#ifndef MSG_NOSIGNAL
#define MSG_NOSIGNAL 0
#endif
#ifndef MSG_DONTWAIT
#define MSG_DONTWAIT 0 /* every library socket is non-blocking already */
#endif
#ifndef EHOSTDOWN
#define EHOSTDOWN 160 /* not in mingw's errno.h: WSAEHOSTDOWN maps to it */
#endif
#ifndef ESHUTDOWN
#define ESHUTDOWN 161
#endif
#ifndef ESOCKTNOSUPPORT
#define ESOCKTNOSUPPORT 162
#endif
#ifndef ENONET
#define ENONET 163
#endif
typedef int dx__socklen; /* Winsock's socklen_t is int */
/* fopen() mode for reading a file, close-on-exec where the C runtime can */
#define DX_FOPEN_READ "r"
/* scatter/gather segments, as POSIX's (WSABUF differs: dx__fd_readv converts) */
struct iovec {
    void *iov_base;
    size_t iov_len;
};
/* Listening sockets: exclusive use of the address. On Windows SO_REUSEADDR
 * would let another process bind the same port and steal connections;
 * SO_EXCLUSIVEADDRUSE forbids that. A restarted server still rebinds its
 * port while old connections sit in TIME_WAIT (tests/windows/unit). */
#define DX_SO_LISTEN_ADDR SO_EXCLUSIVEADDRUSE
#else
#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/un.h>
#include <unistd.h>
#define DX_OS_NAME "POSIX"
#define DX_OS_WINDOWS 0
#include <sys/uio.h>
typedef socklen_t dx__socklen;
/* fopen() mode for reading a file, close-on-exec where the C runtime can */
#define DX_FOPEN_READ "re"
/* Listening sockets: SO_REUSEADDR, so a restarted server rebinds at once
 * while old connections sit in TIME_WAIT (another process still cannot
 * bind the port while the listener lives). */
#define DX_SO_LISTEN_ADDR SO_REUSEADDR
#endif

/* Once per process, before the first socket (WSAStartup on Windows; the
 * loop calls it from dx_loop_new(), the command from main()). 0 or -errno.
 * Safe to call again, from any thread. No WSACleanup at exit, on purpose:
 * it would reset the connections still open (see os_win32.c). */
int dx__os_init(void);

/* Monotonic clock in milliseconds. */
uint64_t dx__os_now_ms(void);

/* 1 if fd is a socket (the library then uses send/recv on it). */
int dx__os_is_socket(int fd);

/* Text for a positive errno value, including the socket errno values that
 * a C runtime may not know (msvcrt's strerror() stops at 42). */
const char *dx__os_strerror(int errnum);

/* A connected pair of stream sockets, non-blocking and close-on-exec (POSIX:
 * socketpair(AF_UNIX); Windows: a loopback TCP pair made through a listener
 * on 127.0.0.1 port 0, accepted peer checked against the connecting one).
 * 0 or -errno. Used for wake-ups and for bridging a console to the loop. */
int dx__socketpair(int fds[2]);

/* Descriptors in general. On Windows every descriptor the library and the
 * command handle is a socket (the console, pipes and child processes are
 * bridged to loopback sockets by the command), so these are the socket
 * calls there; on POSIX they are read/write/close, for any kind of fd.
 * A read returns 0 only for an orderly end: a reset is -1 with ECONNRESET
 * on both (wine's recv() says 0 for it; os_win32.c tells the two apart). */
ssize_t dx__fd_read(int fd, void *buf, size_t n);
ssize_t dx__fd_write(int fd, const void *buf, size_t n);
int dx__fd_close(int fd);

/* poll(2) on POSIX, WSAPoll on Windows (sockets only); struct pollfd and
 * POLLIN/POLLOUT/POLLPRI/POLLERR/POLLHUP/POLLNVAL exist on both. -1 with
 * errno set on failure. */
int dx__os_poll(struct pollfd *fds, unsigned long n, int timeout_ms);

/* getline(3) (msvcrt has none): a whole line of any length into *line. */
#ifdef _WIN32
ssize_t dx__getline(char **line, size_t *cap, FILE *f);
#else
#define dx__getline getline
#endif

/* A new socket of family and type (SOCK_STREAM, SOCK_DGRAM), non-blocking
 * and close-on-exec (Windows: not inheritable; UDP sockets get
 * SIO_UDP_CONNRESET off so an ICMP port unreachable does not fail the
 * next recvfrom() of an unconnected socket). The fd or -errno. */
int dx__sock_open(int family, int type);

/* Whether an ICMP port unreachable is reported on this UDP socket (as
 * -ECONNREFUSED by the next send or receive). Windows: SIO_UDP_CONNRESET,
 * which dx__sock_open() turns off (an unconnected socket would otherwise
 * fail its next recvfrom() with WSAECONNRESET) and dx_dgram_connect() turns
 * back on (a connected socket reports the refusal, as on Linux). POSIX: the
 * kernel reports it on connected sockets only; nothing to set. 0 or -errno. */
int dx__sock_udp_icmp_errors(int fd, int on);

/* accept() giving a non-blocking, close-on-exec fd, or -errno (-EAGAIN when
 * the queue is empty; EINTR is retried). */
int dx__sock_accept_nb(int fd, struct sockaddr *sa, dx__socklen *len);

/* readv(2) on any fd, and writev(2) (sendmsg with MSG_NOSIGNAL when
 * is_socket) over n segments. -1 with errno set on failure. */
ssize_t dx__fd_readv(int fd, const struct iovec *iov, int n);
ssize_t dx__fd_writev(int fd, const struct iovec *iov, int n, int is_socket);

/* recvfrom() of one datagram that also says (*truncated = 1) whether it was
 * longer than cap; the first cap bytes are returned either way. -1 with
 * errno set on failure. */
ssize_t dx__sock_recvfrom_trunc(int fd, void *buf, size_t cap, struct sockaddr *sa,
                                dx__socklen *len, int *truncated);

/* sockatmark(): 1 if the next byte to read is the urgent mark, 0 if not,
 * -1 with errno set on failure. */
int dx__sock_atmark(int fd);

#ifdef _WIN32
/* Winsock wrappers: same arguments and results as the POSIX calls, errno
 * set from WSAGetLastError() on failure. */
int dx__sock_socket(int family, int type, int protocol);
int dx__sock_close(int fd);
int dx__sock_bind(int fd, const struct sockaddr *sa, dx__socklen len);
int dx__sock_listen(int fd, int backlog);
int dx__sock_accept(int fd, struct sockaddr *sa, dx__socklen *len);
int dx__sock_connect(int fd, const struct sockaddr *sa, dx__socklen len);
int dx__sock_shutdown(int fd, int how);
ssize_t dx__sock_send(int fd, const void *buf, size_t n, int flags);
ssize_t dx__sock_recv(int fd, void *buf, size_t n, int flags);
ssize_t dx__sock_sendto(int fd, const void *buf, size_t n, int flags, const struct sockaddr *sa,
                        dx__socklen len);
ssize_t dx__sock_recvfrom(int fd, void *buf, size_t n, int flags, struct sockaddr *sa,
                          dx__socklen *len);
int dx__sock_setsockopt(int fd, int level, int name, const void *val, dx__socklen len);
int dx__sock_getsockopt(int fd, int level, int name, void *val, dx__socklen *len);
int dx__sock_getsockname(int fd, struct sockaddr *sa, dx__socklen *len);
int dx__sock_getpeername(int fd, struct sockaddr *sa, dx__socklen *len);
/* ioctlsocket(FIONBIO); returns the old state (0/1) or -errno, as dx_set_nonblock. */
int dx__sock_nonblock(int fd, int on);
/* A getaddrinfo() error (a WSA number on Windows) as the magnitude of
 * glibc's EAI_* code (EAI_NONAME 11001 -> 2), and glibc's text for one. */
int dx__os_eai_mag(int e);
const char *dx__os_gai_strerror(int mag);
/* Set errno from WSAGetLastError() (for a Winsock call made directly) and return it. */
int dx__sock_errno(void);
/* A native socket error code (what getsockopt(SO_ERROR) stores, a WSAE*
 * value) as a POSIX errno value: WSAECONNREFUSED -> ECONNREFUSED. The
 * identity on POSIX. */
int dx__os_errno(int native);
/* One IP Helper table (diag_win32.c): get(tcp, family, buf, &size) is the
 * GetTcpTable/GetUdp6Table... call (a parameter: tests give a table that
 * keeps changing). *out is malloc'ed; 0 or -errno (-EAGAIN: it changed
 * DX__IP_TABLE_TRIES times in a row). */
/* ReadFile on a handle (a pipe, a file, a console): the bytes read (> 0),
 * 0 at the end of input, -1 on failure (GetLastError() says which; a
 * console's Ctrl-C is 0 with ERROR_OPERATION_ABORTED, kept). A pipe's
 * successful read of 0 bytes from a pipe that is still open (PeekNamedPipe
 * says so) is the writer's WriteFile of 0 bytes, not the end: it reads
 * again. */
long dx__os_read_handle(void *handle, void *buf, unsigned long n);
#define DX__IP_TABLE_TRIES 32
typedef unsigned long (*dx__ip_table_fn)(int tcp, int family, void *buf, unsigned long *size);
int dx__ip_table_get(dx__ip_table_fn get, int tcp, int family, void **out);
#else
#define dx__sock_socket socket
#define dx__sock_close close
#define dx__sock_bind bind
#define dx__sock_listen listen
#define dx__sock_accept accept
#define dx__sock_connect connect
#define dx__sock_shutdown shutdown
#define dx__sock_send send
#define dx__sock_recv recv
#define dx__sock_sendto sendto
#define dx__sock_recvfrom recvfrom
#define dx__sock_setsockopt setsockopt
#define dx__sock_getsockopt getsockopt
#define dx__sock_getsockname getsockname
#define dx__sock_getpeername getpeername
#define dx__sock_errno() (errno)
#define dx__os_errno(e) (e)
#define dx__sock_udp_icmp_errors(fd, on) ((void)(fd), (void)(on), 0)
#define dx__fd_read read
#define dx__fd_write write
#define dx__fd_close close
#define dx__os_poll(fds, n, t) poll((fds), (nfds_t)(n), (t))
#endif

#endif
