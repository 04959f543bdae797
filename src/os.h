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
typedef int dx__socklen; /* Winsock's socklen_t is int */
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
typedef socklen_t dx__socklen;
#endif

/* Once per process, before the first socket (WSAStartup on Windows; the
 * loop calls it from dx_loop_new(), the command from main()). 0 or -errno.
 * Safe to call again; the matching cleanup runs at exit. */
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
 * calls there; on POSIX they are read/write/close, for any kind of fd. */
ssize_t dx__fd_read(int fd, void *buf, size_t n);
ssize_t dx__fd_write(int fd, const void *buf, size_t n);
int dx__fd_close(int fd);

/* poll(2) on POSIX, WSAPoll on Windows (sockets only); struct pollfd and
 * POLLIN/POLLOUT/POLLPRI/POLLERR/POLLHUP/POLLNVAL exist on both. -1 with
 * errno set on failure. */
int dx__os_poll(struct pollfd *fds, unsigned long n, int timeout_ms);

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
/* Set errno from WSAGetLastError() (for a Winsock call made directly) and return it. */
int dx__sock_errno(void);
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
#define dx__fd_read read
#define dx__fd_write write
#define dx__fd_close close
#define dx__os_poll(fds, n, t) poll((fds), (nfds_t)(n), (t))
#endif

#endif
