/* duplex.h: the public API of libduplex, a small non-blocking socket library.
 *
 * Conventions (they hold for every function below):
 * - Names: dx_ for the API, DX_ for constants.
 * - Errors: a function returns >= 0 on success and a negative code on failure:
 *   -errno for system errors, DX_E* (below) for resolver and library errors.
 *   dx_strerror() turns any code into text. The library never prints, exits
 *   or aborts; an allocation failure is -ENOMEM.
 * - Callbacks run from the loop (dx_loop_run()) only, never from inside a
 *   call the program made (the rule libuv and libev users rely on): what a
 *   call finds out (a write that failed because the peer reset, a connect
 *   that failed or succeeded at once) is reported on the loop's next
 *   iteration. So after any dx_* call the caller's objects are as it left
 *   them. Any callback may free its own object (after stopping it: a stream
 *   after dx_stream_close(), a pump after dx_pump_stop(), a connector after
 *   dx_connect_cancel() or its final callback), and may stop and free other
 *   objects too: a stopped object gets no callback afterwards. A call that
 *   takes a callback and fails (returns < 0) never calls it.
 * - Ownership: the caller owns every struct it passes in (watchers, timers,
 *   pumps are embedded in the caller's memory, like libev watchers) and must
 *   keep it alive while it is started. Handles returned by *_new() are freed
 *   by the matching *_free().
 * - Descriptors the library creates are non-blocking and close-on-exec.
 * - Threads: a loop and every object started on it belong to the thread
 *   that runs dx_loop_run(); no call on them is safe from another thread
 *   (to wake a loop from elsewhere, write to a socket pair it watches). Run
 *   one loop per thread; loops share no state. Name lookups (dx_resolve(),
 *   dx_parse_port() with a service name) block and use the C library's
 *   resolver (getservbyname is not thread-safe): resolve before starting
 *   loops, or on a thread of your own.
 * - Nothing here raises SIGPIPE: sockets are written with MSG_NOSIGNAL. Pipes
 *   still raise it, so a program writing to a pipe should ignore SIGPIPE.
 *
 * On Windows (built with mingw-w64, linked with -lws2_32; the same API):
 * - A socket is an int: the SOCKET handle, -1 for none. Close it with
 *   dx_close() (closesocket(); close() on POSIX), so code needs no #ifdef.
 *   Every fd the library takes on Windows must be a socket: consoles, pipes
 *   and files cannot be watched by WSAPoll (bridge them to a socket pair).
 * - WSAStartup() is done by the library, once, in dx_loop_new() and before
 *   its first socket or name resolution. The library never calls
 *   WSACleanup(): it would reset the connections still open at exit.
 * - Errors are the same -errno values and texts as on Linux
 *   (dx_strerror(-ECONNREFUSED) is "Connection refused"): Winsock's
 *   WSAE* codes are translated.
 * - The one backend is "wsapoll" (WSAPoll). Sockets are created
 *   non-inheritable (close-on-exec); listeners use SO_EXCLUSIVEADDRUSE
 *   instead of SO_REUSEADDR. Unix sockets are refused (-EAFNOSUPPORT),
 *   pumps copy through their buffer (no splice), options Windows lacks are
 *   -ENOPROTOOPT, dx_sock_list() reads the IP Helper tables (TCP and UDP;
 *   no queues, owners or inodes) and dx_sock_procs() is -ENOSYS.
 */
#ifndef DUPLEX_H
#define DUPLEX_H

#include <stddef.h>
#include <stdint.h>
#ifdef _WIN32
#include <winsock2.h> /* struct sockaddr, sockaddr_storage; link with -lws2_32 */
#include <ws2tcpip.h>
#include <sys/types.h>
#else
#include <sys/socket.h>
#include <sys/types.h>
#endif

#ifdef __cplusplus
extern "C" {
#endif

/* The shared library is built with -fvisibility=hidden: what is declared in
 * this header, and only that, is exported. */
#if defined(__GNUC__) && !defined(_WIN32)
#pragma GCC visibility push(default)
#endif

/* The version the program was compiled against; dx_version() and
 * dx_version_number() give the library's it runs with (the shared library
 * may be newer). The number is MAJOR * 10000 + MINOR * 100 + PATCH. */
#define DX_VERSION "0.1.0"
#define DX_VERSION_MAJOR 0
#define DX_VERSION_MINOR 1
#define DX_VERSION_PATCH 0
#define DX_VERSION_NUMBER (DX_VERSION_MAJOR * 10000 + DX_VERSION_MINOR * 100 + DX_VERSION_PATCH)
const char *dx_version(void);
int dx_version_number(void);

/* ---- errors ------------------------------------------------------------ */

/* Library error codes, below every errno value. A getaddrinfo() error E is
 * reported as DX_EAI_BASE - |E| (EAI_* codes are negative on glibc and
 * positive on BSD); EAI_SYSTEM becomes -errno. dx_is_resolver_error() tells
 * them apart. */
enum {
    DX_EAI_BASE = -20000,
    DX_EBADPORT = -10001,    /* port not a number in 0..65535 nor a known service */
    DX_EBADADDR = -10002,    /* address text that cannot be parsed */
    DX_ENOADDR = -10003,     /* resolution gave no usable address */
    DX_ETOOLONG = -10004,    /* Unix socket path longer than sun_path */
    DX_ETIMEDOUT = -10005,   /* a deadline set by the caller expired */
    DX_ETLS = -10006,        /* TLS handshake or record failure (dx_tls_reason() says why) */
    DX_ETLSVERIFY = -10007,  /* the peer's certificate was refused (dx_tls_reason() says why) */
    DX_ETLSTRUNC = -10008,   /* the TLS peer closed without close_notify: data may be cut */
};

/* Text for any code returned by this library (static storage, never NULL).
 * The same text on every platform ("Connection refused"). */
const char *dx_strerror(int code);

/* Close a socket (or, on POSIX, any fd): closesocket() on Windows, close()
 * on POSIX, so a program needs no #ifdef. Returns 0 or -errno. */
int dx_close(int fd);

/* 1 if code came from name resolution (getaddrinfo). */
int dx_is_resolver_error(int code);

/* ---- event loop -------------------------------------------------------- */

typedef struct dx_loop dx_loop;
typedef struct dx_io dx_io;
typedef struct dx_timer dx_timer;

/* Event bits for dx_io watchers. DX_READ/DX_WRITE/DX_PRI are requested; a
 * callback may also see DX_ERROR (error or hang-up on the fd). An error or
 * hang-up is always reported together with the requested bits so the handler
 * learns the cause from read()/write(). DX_PRI is priority data (POLLPRI /
 * EPOLLPRI): on a TCP socket, urgent data waiting to be read with
 * recv(MSG_OOB); it stays set until then (with SO_OOBINLINE, until the
 * normal reads pass the urgent mark). */
enum { DX_READ = 1, DX_WRITE = 2, DX_ERROR = 4, DX_PRI = 8 };

typedef void (*dx_io_cb)(dx_loop *loop, dx_io *io, int events);
typedef void (*dx_timer_cb)(dx_loop *loop, dx_timer *timer);

/* Create a loop. backend: "epoll", "poll", "io_uring", "wsapoll" (Windows),
 * or NULL for the best available (epoll on Linux, wsapoll on Windows, poll
 * elsewhere); the environment variable DUPLEX_BACKEND
 * overrides NULL. On failure returns NULL and stores a code in *err (if
 * err is not NULL): -ENOENT for an unknown or unavailable backend. */
dx_loop *dx_loop_new(const char *backend, int *err);

/* Free a loop. Watchers and timers still started are forgotten, not called;
 * their fds are not closed (the caller owns them). */
void dx_loop_free(dx_loop *loop);

/* The name of the backend the loop uses ("epoll", "poll"). */
const char *dx_loop_backend(const dx_loop *loop);

/* Names of every backend compiled in, NULL-terminated. */
const char *const *dx_backends(void);

/* Run until dx_loop_stop() is called or nothing is left to wait for (no
 * started watcher, no started timer, no deferred report). Each iteration:
 * deferred reports (failures found during calls), then the wait, the fd
 * callbacks, the timers. Returns 0, or a negative code if the multiplexer
 * failed. */
int dx_loop_run(dx_loop *loop);

/* Make dx_loop_run() return after the current iteration. Safe in callbacks. */
void dx_loop_stop(dx_loop *loop);

/* The loop's cached monotonic time in milliseconds, updated once per
 * iteration (and by dx_loop_update_time()). */
uint64_t dx_loop_now(const dx_loop *loop);
void dx_loop_update_time(dx_loop *loop);

/* ---- fd watchers ------------------------------------------------------- */

/* A watcher for one fd. Fields are private: use the functions below. At most
 * one started watcher per fd per loop. */
struct dx_io {
    int fd;            /* read-only */
    int events;        /* read-only: DX_READ|DX_WRITE|DX_PRI currently watched */
    dx_io_cb cb;       /* private */
    void *data;        /* public: for the caller */
    int always_ready;  /* private: fd the multiplexer refuses (regular file) */
    int active;        /* private */
};

/* Prepare a watcher (no system call). */
void dx_io_init(dx_io *io, int fd, dx_io_cb cb, void *data);

/* Watch for `events` (DX_READ|DX_WRITE|DX_PRI); 0 stops the watcher.
 * Level-triggered on every backend: the callback runs again on each
 * iteration while the fd stays ready, so it need not drain it. May be called
 * from any callback, for any watcher. The callback runs from the loop, never
 * inside this call, even for an fd that is ready already; a watcher stopped
 * during a round gets none of that round's remaining events. A regular file or other fd that the
 * multiplexer refuses (epoll says EPERM) is treated as always ready, since
 * reads and writes on it never block. Returns 0, -EEXIST if another watcher
 * already watches the fd, or -errno from the backend. */
int dx_io_set(dx_loop *loop, dx_io *io, int events);

/* Stop watching (same as dx_io_set(loop, io, 0)); safe if not started. Call
 * it before closing the fd. */
void dx_io_stop(dx_loop *loop, dx_io *io);

/* ---- timers ------------------------------------------------------------ */

/* A one-shot or repeating timer. Fields are private. */
struct dx_timer {
    uint64_t when;     /* private: due time, loop clock (ms) */
    uint64_t repeat;   /* private: period in ms, 0 for one-shot */
    size_t heap_index; /* private: position in the loop's heap, or SIZE_MAX */
    uint64_t pass;     /* private: the timer pass that started it */
    dx_timer_cb cb;    /* private */
    void *data;        /* public: for the caller */
};

void dx_timer_init(dx_timer *t, dx_timer_cb cb, void *data);

/* Start (or restart) a timer due after_ms from the loop's now, then every
 * repeat_ms if repeat_ms > 0. The callback runs from the loop, never inside
 * this call (also at 0 ms). Returns 0 or -ENOMEM. */
int dx_timer_start(dx_loop *loop, dx_timer *t, uint64_t after_ms, uint64_t repeat_ms);

/* Stop a timer; safe if not started. */
void dx_timer_stop(dx_loop *loop, dx_timer *t);

/* 1 if the timer is started. */
int dx_timer_active(const dx_timer *t);

/* Private: a callback the loop runs on its next iteration. The library
 * embeds one in the objects that report from the loop what a call found
 * out (dx_stream, dx_connector); never touch it. */
typedef struct dx__later {
    struct dx__later *next, *prev; /* private */
    void (*cb)(dx_loop *loop, struct dx__later *l); /* private */
    void *data;                    /* private */
    uint64_t pass;                 /* private */
    int queued;                    /* private */
} dx__later;

/* ---- addresses --------------------------------------------------------- */

/* Any socket address: IPv4, IPv6 or Unix (path or Linux abstract name). */
typedef struct dx_addr {
    struct sockaddr_storage ss;
    socklen_t len;
} dx_addr;

/* Longest text dx_addr_format() writes, terminator included. */
#define DX_ADDR_STRLEN 128

/* Parse a port: a decimal number in 0..65535 or a service name known to
 * getservbyname() ("http"). Returns the port (host byte order) or
 * DX_EBADPORT. */
int dx_parse_port(const char *text);

/* Parse a port range "N" or "N-M" (N <= M). Returns 0 or DX_EBADPORT. */
int dx_parse_port_range(const char *text, int *first, int *last);

/* Split "host:port", "[v6]:port" into host and port text. host and port
 * point into buf (a copy the caller provides, at least strlen(text)+1
 * bytes). A bare v6 address without brackets is not split. Returns 0 or
 * DX_EBADADDR. */
int dx_split_hostport(const char *text, char *buf, size_t buflen, const char **host,
                      const char **port);

/* Resolution hints. */
enum {
    DX_RESOLVE_PASSIVE = 1, /* for bind(): a NULL host means every address */
    DX_RESOLVE_NUMERIC = 2, /* no DNS: host must be a numeric address */
    DX_RESOLVE_DGRAM = 4,   /* for a datagram (UDP) socket instead of a stream */
};

/* Resolve host (NULL for the wildcard with DX_RESOLVE_PASSIVE, else the
 * loopback, per getaddrinfo; "" is the wildcard too, but DX_EBADADDR
 * without DX_RESOLVE_PASSIVE: an empty peer name is a mistake, not a
 * request for the loopback; "[]" is DX_EBADADDR) and
 * port text (number or service name) for a stream socket (a UDP socket with
 * DX_RESOLVE_DGRAM). family: AF_UNSPEC,
 * AF_INET or AF_INET6. On success returns the number of addresses (>= 1) and
 * stores a malloc'd array in *out, which the caller frees with free(); IPv4
 * and IPv6 results keep getaddrinfo's order, duplicates removed. Brackets
 * around a v6 host ("[::1]") are accepted. Errors: DX_EBADPORT,
 * DX_EAI_BASE + EAI_*, DX_ENOADDR, -ENOMEM. */
int dx_resolve(const char *host, const char *port, int family, int flags, dx_addr **out);

/* Fill a Unix socket address. A leading '@' names a Linux abstract socket.
 * Returns 0 or DX_ETOOLONG. */
int dx_addr_unix(dx_addr *a, const char *path);

/* Fill an address from a numeric IPv4/IPv6 address and a port. Returns 0 or
 * DX_EBADADDR. */
int dx_addr_ip(dx_addr *a, const char *numeric_host, int port);

/* Format "127.0.0.1:80", "[::1]:80", "/path" or "@abstract" into buf
 * (DX_ADDR_STRLEN bytes is always enough). Returns buf. */
char *dx_addr_format(const dx_addr *a, char *buf, size_t buflen);

/* The port of an IP address (host byte order), or -1 for other families. */
int dx_addr_port(const dx_addr *a);

/* Set the port of an IP address. Returns 0, or DX_EBADADDR for other
 * families and DX_EBADPORT outside 0..65535. */
int dx_addr_set_port(dx_addr *a, int port);

/* ---- socket options by name ---------------------------------------------- */

/* One table of settable options (SO_RCVBUF, TCP_NODELAY, SO_LINGER, ...);
 * an option is named by its index in it (its id). The table is static:
 * nothing here allocates. */

/* How an option's value is given and stored. */
enum {
    DX_SOCKOPT_BOOL = 1,   /* 0 or 1; also on/off, yes/no, true/false */
    DX_SOCKOPT_INT,        /* an integer in min..max (decimal, or 0x hex) */
    DX_SOCKOPT_SECONDS,    /* seconds with up to 6 decimals; stored in microseconds */
    DX_SOCKOPT_LINGER,     /* whole seconds, or "off" (stored as -1) */
    DX_SOCKOPT_STRING,     /* a name (interface, congestion algorithm) */
};

/* A table entry (static storage, read-only). */
typedef struct dx_sockopt_desc {
    const char *name;      /* the kernel's name: "SO_RCVBUF", "TCP_NODELAY", "IP_TOS" */
    const char *key;       /* the short name: "rcvbuf", "nodelay", "tos" */
    const char *expects;   /* the value it takes, for messages: "bytes from 0 to ..." */
    int level, optname;    /* for setsockopt(); IP_TOS becomes IPV6_TCLASS on IPv6 */
    int type;              /* DX_SOCKOPT_* */
    long long min, max;    /* range of the value (STRING: of its length) */
} dx_sockopt_desc;

/* A value for one option. */
typedef struct dx_sockopt_value {
    long long num;         /* BOOL, INT; SECONDS in microseconds; LINGER (-1: off) */
    char str[16];          /* STRING, NUL-terminated (IFNAMSIZ) */
} dx_sockopt_value;

/* An option with its value: what dx_sockopt_parse() fills and
 * dx_sockopt_apply() sets. Plain data: copy it freely. */
typedef struct dx_sockopt {
    int id;                /* index in the table, -1 for none */
    dx_sockopt_value value;
} dx_sockopt;

/* The entry for id, or NULL when id is out of range; ids run from 0 without
 * gaps, so `for (id = 0; dx_sockopt_describe(id); id++)` lists them all. */
const dx_sockopt_desc *dx_sockopt_describe(int id);

/* The kernel's name of option id ("SO_RCVBUF"), or NULL when out of range. */
const char *dx_sockopt_name(int id);

/* The id of the option called name (its first len bytes): the kernel's
 * name or the short name, in any case ("SO_RCVBUF", "so_rcvbuf", "RcvBuf",
 * "rcvbuf"); a prefix other than the option's own ("so_nodelay") does not
 * match. Returns the id or -ENOENT. */
int dx_sockopt_lookup(const char *name, size_t len);

/* Parse "NAME=VALUE" (NAME as for dx_sockopt_lookup; a BOOL option may be
 * given as a bare NAME, meaning 1) into *out. Returns 0; -ENOENT for an
 * unknown name (out->id is -1); -EINVAL for a value of the wrong form and
 * -ERANGE for one outside the option's range (out->id then names the
 * option, whose `expects` text says what it takes). */
int dx_sockopt_parse(const char *name_eq_value, dx_sockopt *out);

/* Set one option on fd with setsockopt(). Returns 0 or -errno as the kernel
 * says: -EPERM (SO_MARK, SO_BINDTODEVICE, SO_PRIORITY > 6 need
 * CAP_NET_ADMIN), -ENOPROTOOPT/-EOPNOTSUPP (a TCP option on a Unix socket),
 * -EINVAL, -ENODEV (no such interface), -ENOENT (unknown congestion
 * algorithm); -EINVAL for an id out of range. */
int dx_sockopt_apply(int fd, const dx_sockopt *opt);

/* Set opts[0..nopts-1] in order, stopping at the first refusal. Returns 0,
 * or the -errno of the refused option, whose index is stored in *failed (if
 * not NULL; -1 when all were set). */
int dx_sockopt_apply_all(int fd, const dx_sockopt *opts, int nopts, int *failed);

/* Read option id back from fd with getsockopt() into *out (out->id = id).
 * The kernel reports its own view: SO_RCVBUF/SO_SNDBUF are twice the value
 * set. Returns 0 or -errno (-EINVAL for an id out of range). */
int dx_sockopt_get(int fd, int id, dx_sockopt *out);

/* Format opt's value as dx_sockopt_parse() would read it ("131072", "1",
 * "2.500000", "off", "eth0") into buf. Returns buf. */
char *dx_sockopt_format(const dx_sockopt *opt, char *buf, size_t buflen);

/* ---- sockets ----------------------------------------------------------- */

/* Options for dx_listen(). Zero-initialise, then set what you need. */
typedef struct dx_listen_opts {
    int backlog;     /* 0: the system's maximum (SOMAXCONN / somaxconn) */
    int v6only;      /* for an IPv6 wildcard: 1 IPv6 only, 0 dual-stack */
    int reuseport;   /* set SO_REUSEPORT (never set by default) */
    int no_reuseaddr;/* do not set SO_REUSEADDR (set by default on IP sockets) */
    const dx_sockopt *sockopts; /* borrowed, may be NULL: set in order after the */
    int nsockopts;   /* defaults above and before bind() (so they may override them) */
    int *sockopt_failed; /* if not NULL: the index in sockopts the kernel refused, else -1 */
} dx_listen_opts;

/* Create a listening stream socket bound to addr (IP or Unix). opts may be
 * NULL. Returns the fd (non-blocking, close-on-exec) or -errno (EADDRINUSE,
 * EACCES for a privileged port, the -errno of a refused opts->sockopts
 * entry, ...). A Unix path is not unlinked first: see dx_unix_unlink_stale().
 * Accepted sockets inherit most options from the listener on Linux; a
 * server that wants them all applies them again with dx_sockopt_apply_all()
 * after dx_accept(). */
int dx_listen(const dx_addr *addr, const dx_listen_opts *opts);

/* Remove a Unix socket file only if nothing listens on it (a leftover of a
 * dead server). Returns 1 if removed, 0 if nothing to do, or -errno
 * (-EADDRINUSE when a server answers on it, -ENOTSOCK if the path is not a
 * socket). */
int dx_unix_unlink_stale(const char *path);

/* Accept one connection: non-blocking, close-on-exec fd, peer address in
 * *peer if not NULL. Returns the fd, -EAGAIN when the queue is empty, or
 * another -errno. dx_accept_error_is_transient() says whether the server
 * should simply go on. */
int dx_accept(int listen_fd, dx_addr *peer);

/* 1 if an accept() error should not stop a server: the connection died in
 * the queue (ECONNABORTED, EPROTO, network errors of accept(2)) or a resource
 * is short for now (EMFILE, ENFILE, ENOBUFS, ENOMEM). */
int dx_accept_error_is_transient(int code);

/* 1 if code means the process or system ran out of descriptors or memory:
 * the caller should pause accepting rather than retry at once. */
int dx_accept_error_is_exhaustion(int code);

/* Start a non-blocking connect to addr, after binding to source if not NULL
 * (IP address and/or port; SO_REUSEADDR is set when a source port is
 * given). Returns the fd; the connection is complete or in progress: wait
 * for DX_WRITE, then call dx_connect_result(). Returns -errno on immediate
 * failure (e.g. -ECONNREFUSED for a Unix path, -EADDRINUSE for the source). */
int dx_connect_start(const dx_addr *addr, const dx_addr *source);

/* dx_connect_start() that first sets opts[0..nopts-1] (may be NULL) on the
 * new socket, before bind() and connect(), so that SO_RCVBUF, SO_SNDBUF,
 * SO_BINDTODEVICE, SO_MARK, TCP_MAXSEG take effect for the connection. If
 * the kernel refuses one, returns its -errno and stores its index in *failed
 * (if not NULL; -1 otherwise). If binding to source fails, returns its
 * -errno and stores DX_FAILED_BIND in *failed. */
#define DX_FAILED_BIND (-2)
int dx_connect_start_opts(const dx_addr *addr, const dx_addr *source, const dx_sockopt *opts,
                          int nopts, int *failed);

/* The outcome of a connect once the fd is writable: 0 connected, or the
 * -errno from SO_ERROR (-ECONNREFUSED, -ETIMEDOUT, ...). A connection the
 * peer sent data on and then reset counts as made: reads return the data,
 * then -ECONNRESET. */
int dx_connect_result(int fd);

/* Local and peer address of a socket. Return 0 or -errno. */
int dx_sock_local(int fd, dx_addr *out);
int dx_sock_peer(int fd, dx_addr *out);

/* Put an fd in non-blocking mode (on) or back (off). Returns the previous
 * file status flags or -errno, so a caller can restore them with fcntl.
 * Windows: sockets only (ioctlsocket FIONBIO), returns 0 (Winsock cannot
 * tell the previous mode). */
int dx_set_nonblock(int fd, int on);

/* The kernel's cap on listen backlogs (/proc/sys/net/core/somaxconn), or
 * SOMAXCONN if unreadable. */
int dx_somaxconn(void);

/* ---- asynchronous connect with timeout ----------------------------------- */

typedef struct dx_connector dx_connector;

/* Called once per address that fails (fd < 0 in result, addr the address
 * tried), and once at the end: with result >= 0 the connected fd (the callee
 * owns it), or the last error of the last address. `final` tells which.
 * Always called from the loop. An address that accepted the connection is
 * the last one tried: if the peer resets it before the connector sees it
 * complete, the final result is that error (-ECONNRESET) with
 * c->established set: a failure of the exchange, not of the connect. A
 * failure callback that is not final may call dx_connect_cancel() and then
 * free the connector; after the final one the connector may be freed.
 * The last address's failure comes only with the final call (once): with
 * one address there is exactly one call. An attempt that outlives
 * timeout_ms fails with DX_ETIMEDOUT (the kernel's own timeout is
 * -ETIMEDOUT; dx_strerror() gives both as "Connection timed out"). */
typedef void (*dx_connect_cb)(dx_connector *c, int result, const dx_addr *addr, int final);

struct dx_connector {
    dx_loop *loop;        /* private */
    const dx_addr *addrs; /* private: borrowed, must outlive the connect */
    int naddrs, next;     /* private */
    int cancelled;        /* private */
    dx_addr source;       /* private */
    int has_source;       /* private */
    uint64_t timeout_ms;  /* private */
    int fd;               /* private */
    dx_io io;             /* private */
    dx_timer timer;       /* private */
    dx_connect_cb cb;     /* private */
    void *data;           /* public: for the caller */
    const dx_sockopt *sockopts; /* private: borrowed, must outlive the connect */
    int nsockopts;        /* private */
    int sockopt_failed;   /* read-only: in a failure callback, the index in sockopts
                           * the kernel refused (the result is its -errno), else -1 */
    int established;      /* read-only: in the final callback, 1 if addr took the
                           * connection (result is the fd, or the reset that followed) */
    dx__later later;      /* private: reports an address that failed at once */
    int later_error;      /* private */
    int *alive;           /* private: cleared by a cancel during a failure callback */
    int bind_failed;      /* read-only: in a failure callback, 1 when binding to the
                           * source failed (the result is its -errno), else 0 */
};

/* Try each of addrs in turn, each attempt bounded by timeout_ms (0: only
 * the kernel's own timeout). source may be NULL. The callback runs from the
 * loop, never from inside this call. Returns 0 or a negative code. */
int dx_connect_async(dx_loop *loop, dx_connector *c, const dx_addr *addrs, int naddrs,
                     const dx_addr *source, uint64_t timeout_ms, dx_connect_cb cb, void *data);

/* dx_connect_async() that sets opts[0..nopts-1] on each socket before it
 * connects (see dx_connect_start_opts()). opts is borrowed until the final
 * callback. A refused option fails that address like a refused connect;
 * c->sockopt_failed then says which option. */
int dx_connect_async_opts(dx_loop *loop, dx_connector *c, const dx_addr *addrs, int naddrs,
                          const dx_addr *source, uint64_t timeout_ms, const dx_sockopt *opts,
                          int nopts, dx_connect_cb cb, void *data);

/* Abandon a connect in progress (the callback is not called again, even
 * for a failure already found). Safe from any callback, twice, after the
 * final callback, and on a zero-initialised connector; the memory may be
 * freed on return. */
void dx_connect_cancel(dx_connector *c);

/* ---- bounded byte buffer ------------------------------------------------- */

/* A ring buffer of fixed capacity. Fields are private. */
typedef struct dx_buf {
    char *data;
    size_t cap, head, len;
} dx_buf;

/* Allocate cap bytes. Returns 0 or -ENOMEM. */
int dx_buf_init(dx_buf *b, size_t cap);
void dx_buf_free(dx_buf *b);
static inline size_t dx_buf_len(const dx_buf *b) { return b->len; }
static inline size_t dx_buf_room(const dx_buf *b) { return b->cap - b->len; }

/* Copy in at most n bytes; returns how many fit. */
size_t dx_buf_put(dx_buf *b, const void *src, size_t n);
/* Copy out and remove at most n bytes; returns how many. */
size_t dx_buf_get(dx_buf *b, void *dst, size_t n);

/* read() from fd into the free space (one or two segments). Returns bytes
 * read, 0 at end of file, or -errno (-EAGAIN when nothing is there). With a
 * full buffer returns -ENOBUFS without reading. */
ssize_t dx_buf_read_fd(dx_buf *b, int fd);

/* write() buffered bytes to fd (send with MSG_NOSIGNAL on sockets when
 * is_socket). Returns bytes written (possibly fewer than buffered) or -errno
 * (-EAGAIN, -EPIPE, ...). */
ssize_t dx_buf_write_fd(dx_buf *b, int fd, int is_socket);

/* ---- rate limit ------------------------------------------------------------ */

/* A token bucket, embedded in each pump and stream (see dx_pump_set_rate(),
 * dx_stream_set_rate()). Fields are private but for rate and burst. */
typedef struct dx_rate {
    uint64_t rate;            /* read-only: bytes per second; 0: no limit */
    uint64_t burst;           /* read-only: the bucket's size in bytes */
    uint64_t tokens;          /* private: thousandths of a byte */
    uint64_t last;            /* private: loop time of the last refill */
    dx_timer timer;           /* private: wakes the owner once tokens are back */
} dx_rate;

/* ---- one-way pump: copy from one fd to another ---------------------------- */

typedef struct dx_pump dx_pump;

/* How a pump ends. */
enum {
    DX_PUMP_SHUTDOWN = 1, /* at end of input, shutdown(dst, SHUT_WR) if dst is a socket */
    DX_PUMP_DISCARD = 2,  /* read and discard: dst may be NULL */
    DX_PUMP_SPLICE = 4,   /* zero-copy (Linux): sendfile(2) from a regular
                           * file to a socket; otherwise splice(2) through a
                           * pipe once a large read shows bulk data (small
                           * messages are cheaper to copy); falls back to the
                           * buffered copy by itself where the kernel refuses
                           * (a terminal, say) */
};

/* Called once, from the loop (never inside dx_pump_start()), when the pump
 * has finished: its input ended and everything read was written (error 0),
 * or an error stopped it (error < 0, from reading if `in_read`, else from
 * writing). The callback may free the pump's memory after dx_pump_stop(),
 * and stop and free the other pump and the endpoints too. */
typedef void (*dx_pump_cb)(dx_pump *p, int error, int in_read);

/* Optional: sees every chunk a buffered pump reads (one started without
 * DX_PUMP_SPLICE) before dst gets it: puts what dst is to get into out,
 * which has room for 2 * n bytes, and returns how many (e.g. LF -> CRLF, or
 * the same bytes after logging them). It runs in the middle of the pump's
 * work: it must not stop or free the pump or its endpoints. */
typedef size_t (*dx_pump_filter)(dx_pump *p, const char *in, size_t n, char *out);

/* A pump needs a watcher for its src (reads) and one for its dst (writes).
 * One fd can only have one watcher, and a socket usually carries two pumps
 * (one reading it, one writing it), so each fd is wrapped in a dx_endpoint
 * that owns the watcher and dispatches to both pumps. */
typedef struct dx_endpoint {
    int fd;                   /* read-only */
    int is_socket;            /* read-only */
    dx_loop *loop;            /* private */
    dx_io io;                 /* private */
    dx_pump *reader;          /* private: pump that reads this fd */
    dx_pump *writer;          /* private: pump that writes this fd */
    void (*pri_cb)(struct dx_endpoint *e); /* private: see dx_endpoint_watch_pri() */
    void *data;               /* public: for the caller */
    struct dx_tls *tls;       /* read-only: see dx_endpoint_set_tls() */
    int *pri_running;         /* private: set while pri_cb runs (it may let the endpoint go) */
} dx_endpoint;

struct dx_pump {
    dx_loop *loop;            /* private */
    dx_endpoint *src, *dst;   /* read-only */
    int flags;                /* private */
    dx_buf buf;               /* private */
    size_t bufsize;           /* private */
    int pipe_r, pipe_w;       /* private: splice pipe, or -1 */
    size_t inpipe, pipecap;   /* private: bytes in the pipe, its capacity */
    int pipe_stalled;         /* private: pipe full in pages though not in bytes */
    int sendfile;             /* private: regular file to socket with sendfile(2) */
    int direct;               /* private: pipe to socket, one splice(2), no pipe of ours */
    int dst_full;             /* private: direct: the socket takes no more for now */
    int sigpipe_ignored;      /* private: 0 not looked up yet, 1 SIGPIPE ignored, 2 not */
    int splice_later;         /* private: DX_PUMP_SPLICE, still buffered */
    int splice_soon;          /* private: a large read was seen: splice once drained */
    int eof;                  /* read-only: src reached end of input */
    int done;                 /* read-only: finished (callback called) */
    uint64_t bytes_in;        /* read-only: bytes read from src */
    uint64_t bytes_out;       /* read-only: bytes written to dst */
    uint64_t last_activity;   /* read-only: loop time of the last byte moved */
    dx_pump_cb cb;            /* private */
    void *data;               /* public: for the caller */
    dx_pump_filter filter;    /* public: set after dx_pump_start(), or NULL */
    void *filter_data;        /* public: for the filter */
    dx_rate rate;             /* private: dx_pump_set_rate() */
    int closing;              /* private: TLS close_notify waits for the socket */
};

/* Prepare an endpoint for fd (fstat tells whether it is a socket). */
void dx_endpoint_init(dx_endpoint *e, int fd);

/* Start copying from src to dst with a buffer (or splice pipe) of bufsize
 * bytes (0: 64 KiB).
 * Both endpoints must stay alive until the pump is stopped. Returns 0 or
 * -ENOMEM. */
int dx_pump_start(dx_loop *loop, dx_pump *p, dx_endpoint *src, dx_endpoint *dst,
                  size_t bufsize, int flags, dx_pump_cb cb, void *data);

/* Stop a pump and free its buffer (the fds stay open). Safe twice and on a
 * zero-initialised pump. The endpoints are plain memory: once no started
 * pump uses them and their DX_PRI watch is stopped there is nothing to
 * release. */
void dx_pump_stop(dx_pump *p);

/* Also watch the endpoint's fd for DX_PRI (urgent data on a TCP socket) and
 * call cb(e) when it is there; cb should read it with recv(MSG_OOB) (or stop
 * watching), since the event stays set until then. It runs before the
 * pumps' reads and writes of the same wake-up, and also whenever a pump is
 * about to read at the urgent mark (sockatmark(), since on Linux a read past
 * the mark discards the urgent byte). Like any callback it may stop the
 * pumps and this watch (cb NULL) and then free the endpoint and the pumps.
 * Pumps step over the mark even in splice mode (TCP splice stops there). cb
 * NULL stops watching (do so before closing the fd or freeing the
 * endpoint). Returns 0 or -errno from the loop. */
int dx_endpoint_watch_pri(dx_loop *loop, dx_endpoint *e, void (*cb)(dx_endpoint *e));

/* Limit a started pump to bytes_per_sec (0: no limit), a token bucket on
 * the loop's timers holding 1/20 s worth (at least 4 KiB, at most a
 * second's worth): the source is not read while the bucket is empty, and
 * each read, splice(2) or sendfile(2) moves at most what it holds, so the
 * zero-copy paths keep working under the limit. Returns 0. */
int dx_pump_set_rate(dx_pump *p, uint64_t bytes_per_sec);


/* ---- datagram sockets (UDP) ---------------------------------------------- */

/* A UDP socket bound to addr (IPv4 or IPv6; port 0: the system picks one),
 * non-blocking and close-on-exec, for receiving from any peer. From opts
 * (may be NULL) only v6only and reuseport apply: SO_REUSEADDR is never set,
 * since on a datagram socket it would let a second program share the port
 * and take part of its datagrams. Returns the fd or -errno. */
int dx_dgram_bind(const dx_addr *addr, const dx_listen_opts *opts);

/* A UDP socket connected to peer (send() and recv() then go to and come
 * from peer only, and an ICMP port unreachable shows up as -ECONNREFUSED on
 * a later send or receive), after binding to source if not NULL. Returns
 * the fd or -errno. */
int dx_dgram_connect(const dx_addr *peer, const dx_addr *source);

/* Send one datagram of n bytes (to `to`, or to the connected peer if to is
 * NULL). Returns n, or -errno: -EAGAIN when the socket buffer is full,
 * -EMSGSIZE when n is too large, -ECONNREFUSED after an ICMP port
 * unreachable on a connected socket. Never raises SIGPIPE. */
ssize_t dx_dgram_send(int fd, const void *data, size_t n, const dx_addr *to);

/* Receive one datagram into buf (at most cap bytes; the rest of a longer
 * datagram is lost and *truncated is set to 1 if truncated is not NULL),
 * its sender in *from if not NULL. Returns the byte count (0 for an empty
 * datagram), or -errno (-EAGAIN when nothing is waiting). */
ssize_t dx_dgram_recv(int fd, void *buf, size_t cap, dx_addr *from, int *truncated);

/* ---- buffered stream: one fd with a bounded output queue ------------------ */

typedef struct dx_stream dx_stream;

/* Data arrived: n > 0 bytes valid only during the call; n == 0 is the end
 * of input (the peer shut its side down), reported once: reading stops
 * (s->reading is 0); dx_stream_read_start() again would report it again.
 * Called from the loop; it may close and free the stream (and others). */
typedef void (*dx_stream_read_cb)(dx_stream *s, const char *data, size_t n);
/* Something happened (always called from the loop): error < 0 (read or
 * write failed: the stream is unusable, close it; the callback may free it;
 * a socket's write that fails because the peer has gone, while reading is
 * armed, is reported after the read callback has had every byte the peer
 * sent before: see dx_stream_write()),
 * or error == 0 when the output queue has drained
 * below half of its capacity after having been more than half full (time to
 * resume a paused producer), or when a shutdown asked for with
 * dx_stream_shutdown() has been done (shut_done is then 1). */
typedef void (*dx_stream_event_cb)(dx_stream *s, int error);

struct dx_stream {
    dx_loop *loop;            /* private */
    dx_io io;                 /* private */
    dx_buf out;               /* private: queued output, allocated while non-empty */
    size_t queue_cap;         /* read-only: the most bytes ever queued */
    int is_socket;            /* read-only */
    int reading;              /* read-only: read callback armed */
    int shut_pending;         /* private: shutdown(SHUT_WR) once drained */
    int shut_done;            /* read-only */
    int failed;               /* read-only: non-zero once failed (writes refused; the
                                 error reaches event_cb from the loop) */
    int above_half;           /* private: for the drain event */
    uint64_t bytes_in;        /* read-only */
    uint64_t bytes_out;       /* read-only: bytes actually written */
    uint64_t last_activity;   /* read-only: loop time of the last byte moved */
    dx_stream_read_cb read_cb;   /* private */
    dx_stream_event_cb event_cb; /* private */
    void *data;               /* public: for the caller */
    dx__later later;          /* private: reports a failure found during a call */
    int later_error;          /* private */
    dx_rate rate_in, rate_out;/* private: dx_stream_set_rate() */
    struct dx_tls *tls;       /* read-only: see dx_stream_set_tls() */
};

/* Wrap fd (socket, pipe, terminal or file; non-blocking) with an output queue
 * of queue_cap bytes. Reading starts with dx_stream_read_start(). The fd
 * stays the caller's: dx_stream_close() does not close it. Returns 0 or
 * -ENOMEM. */
int dx_stream_init(dx_loop *loop, dx_stream *s, int fd, size_t queue_cap,
                   dx_stream_read_cb read_cb, dx_stream_event_cb event_cb, void *data);

/* Arm or disarm the read callback (backpressure: disarm while the consumer
 * is full). Each read passes at most 64 KiB and at most half of queue_cap.
 * The callback runs from the loop, never inside dx_stream_read_start(), even
 * when data is waiting. Return 0 or -errno from the loop. */
int dx_stream_read_start(dx_stream *s);
int dx_stream_read_stop(dx_stream *s);

/* Queue n bytes for writing, all or nothing: returns 0, or -ENOBUFS when
 * they do not fit (nothing queued: the caller chooses to wait or to drop the
 * peer), -EPIPE after dx_stream_shutdown() or a failure. Bytes are written
 * at once when the queue is empty and the fd takes them. If that write
 * fails (the peer reset), the call still returns 0 and the stream is failed
 * (s->failed, later writes -EPIPE); event_cb gets the error from the loop,
 * never from inside this call, so the caller may go on using the stream
 * until then. A write to a socket that fails because the peer has gone
 * (EPIPE, ECONNRESET, ETIMEDOUT, ENOTCONN; not over TLS) while reading is
 * armed loses nothing the peer sent first: the read callback still gets all
 * of it, then event_cb gets the write's error instead of the end of input
 * (or at once, from the loop, if the program stops reading). */
int dx_stream_write(dx_stream *s, const void *data, size_t n);

/* Limit what the stream reads (in) and writes (out) to so many bytes per
 * second (0: no limit), token buckets as dx_pump_set_rate()'s: reading
 * pauses while `in` is empty; queued bytes wait while `out` is (the queue
 * then fills, and dx_stream_write() says -ENOBUFS as for a slow peer).
 * Returns 0. */
int dx_stream_set_rate(dx_stream *s, uint64_t in, uint64_t out);

/* Bytes queued and free room in the output queue. */
size_t dx_stream_queued(const dx_stream *s);
size_t dx_stream_room(const dx_stream *s);

/* Shut the write side down (SHUT_WR) once the queue has drained. If the
 * queue is empty, or the call drains it, this happens at once (shut_done is
 * 1 on return, no event); otherwise event_cb(0) says so from the loop. A
 * failure found by the call is reported to event_cb from the loop. */
void dx_stream_shutdown(dx_stream *s);

/* Stop all watching and free the queue (queued bytes are dropped); the fd
 * is not closed. No callback of the stream runs afterwards, not even a
 * failure already found and waiting to be reported. Safe from any callback
 * (the stream's own or another object's), twice, and on a zero-initialised
 * stream; the memory may be freed on return. */
void dx_stream_close(dx_stream *s);


/* ---- TLS (OpenSSL): streams and pumps over TLS ---------------------------- */

/* A dx_tls_ctx holds what every connection of one side shares (certificate,
 * trusted CAs, ALPN); make it once from options. A dx_tls is one connection's
 * TLS state over a connected socket: run its handshake in the loop with
 * dx_tls_handshake(), then attach it to a dx_stream (dx_stream_set_tls()) or
 * to the dx_endpoint of a socket that pumps read and write
 * (dx_endpoint_set_tls()): they then read, write and shut down through TLS,
 * with the same callbacks, rules and backpressure as on a plain socket.
 * - Verification is on by default for a client: the server's chain must
 *   lead to a trusted CA (the system store, or ca_file) and its certificate
 *   must carry the name given to dx_tls_new() (a DNS name, or an IP address,
 *   which is then matched against the certificate's IP entries); the name
 *   is also sent as SNI (not an IP address). A failure fails the handshake
 *   with DX_ETLSVERIFY; dx_tls_reason() says why ("certificate verify
 *   failed: self-signed certificate", "hostname mismatch: certificate is
 *   for localhost, not example.com").
 * - Half-close: dx_stream_shutdown() (or a pump's DX_PUMP_SHUTDOWN) sends
 *   close_notify, then shuts the socket's write side down; reading goes on.
 *   The peer's close_notify is the end of input (a read callback with n 0,
 *   a pump's end). A peer that closes the socket without close_notify is
 *   DX_ETLSTRUNC (an attacker on the path can cut a stream so), unless the
 *   context allows truncation: then it is the end of input too, and
 *   dx_tls_truncated() says it happened.
 * - Errors of a connection are its own: a read, write or handshake failure
 *   is DX_ETLS, DX_ETLSVERIFY, DX_ETLSTRUNC or -errno, and dx_tls_reason()
 *   keeps OpenSSL's text for it ("tlsv1 alert unknown ca").
 * - The callback rule holds: no callback from inside a call; a callback may
 *   close and free the stream, stop the pumps, and free the dx_tls.
 * - Built without OpenSSL (the Windows build), dx_tls_ctx_new() fails with
 *   -ENOSYS and dx_tls_available() is 0. */

typedef struct dx_tls_ctx dx_tls_ctx;
typedef struct dx_tls dx_tls;

/* Options for dx_tls_ctx_new(). Zero-initialise, then set what you need.
 * Files are PEM. */
typedef struct dx_tls_opts {
    int server;              /* 1: the accepting side (needs cert_file) */
    const char *cert_file;   /* the certificate chain: a server's, or a client's own */
    const char *key_file;    /* its private key (NULL: in cert_file) */
    const char *ca_file;     /* CAs to trust (NULL: the system store) */
    int no_verify;           /* client: accept any server certificate (insecure) */
    int verify_client;       /* server: require a client certificate from a CA of ca_file */
    const char *alpn;        /* "h2,http/1.1": offered (client), or accepted in this order of
                              * preference (server; no protocol in common: none); NULL: none */
    const char *ciphers;     /* TLS 1.2 cipher list in OpenSSL's syntax; NULL: its default */
    int allow_truncation;    /* a close without close_notify is the end of input */
} dx_tls_opts;

/* 1 if the library was built with TLS. */
int dx_tls_available(void);

/* Make a context (TLS 1.2 or later). On failure returns NULL, stores a code
 * in *err (if not NULL): -EINVAL for options that do not fit together (a
 * server without cert_file, verify_client without ca_file), -ENOSYS
 * without TLS, DX_ETLS for a file OpenSSL refuses; and a sentence in why
 * (if not NULL, whylen bytes) naming the file and the reason. */
dx_tls_ctx *dx_tls_ctx_new(const dx_tls_opts *opts, int *err, char *why, size_t whylen);

/* A context over an SSL_CTX the program set up itself with OpenSSL (its
 * own verification callback, pins, session cache): the library takes a
 * reference (the caller may SSL_CTX_free() its own). server says which
 * side. Names given to dx_tls_new() are sent as SNI and checked as with
 * dx_tls_ctx_new() unless the SSL_CTX does not verify (SSL_VERIFY_NONE);
 * a client without a name is the program's choice here (its own checks).
 * Returns NULL with *err -ENOMEM or -ENOSYS. */
dx_tls_ctx *dx_tls_ctx_wrap(void *ssl_ctx, int server, int allow_truncation, int *err);

/* The context's SSL_CTX (for settings the options lack), NULL without TLS. */
void *dx_tls_ctx_native(dx_tls_ctx *c);

/* Drop the program's reference: the context lives on while connections
 * made from it do. Safe with NULL. */
void dx_tls_ctx_free(dx_tls_ctx *c);

/* TLS state for connected socket fd (non-blocking; it stays the caller's,
 * dx_tls_free() does not close it). peer_name: a client's name of the
 * server (SNI and the name its certificate must carry; "[::1]" brackets
 * are taken off); NULL is refused (-EINVAL) for a client that verifies
 * (with a context of dx_tls_ctx_new()), since any certificate of any
 * trusted CA would then do; ignored by a server. Returns NULL with *err -ENOMEM, -EINVAL or -ENOSYS. */
dx_tls *dx_tls_new(dx_loop *loop, dx_tls_ctx *ctx, int fd, const char *peer_name, int *err);

/* Free the TLS state (nothing is sent: shut down first for a clean end).
 * Close the stream or stop the pumps using it first. Safe with NULL and
 * from any callback. */
void dx_tls_free(dx_tls *t);

/* Called once, from the loop, when the handshake is over: error 0, or
 * DX_ETLSVERIFY, DX_ETLS, DX_ETIMEDOUT (the deadline), -errno. It may free
 * t. */
typedef void (*dx_tls_cb)(dx_tls *t, int error, void *data);

/* Run the handshake in the loop, bounded by timeout_ms (0: none), then
 * call cb. While it runs the socket is watched by t: attach it to a stream
 * or an endpoint only afterwards (a stream given a dx_tls whose handshake
 * was not run does it on its first read or write, without a deadline).
 * Returns 0 or a negative code (cb is then never called). */
int dx_tls_handshake(dx_tls *t, uint64_t timeout_ms, dx_tls_cb cb, void *data);

/* Stop a handshake in progress: cb is not called. Safe if none runs. */
void dx_tls_handshake_cancel(dx_tls *t);

/* Why the last operation failed: "certificate verify failed: ...",
 * "handshake timed out after 2 s", OpenSSL's reason; "" if nothing failed.
 * Valid until t is freed. */
const char *dx_tls_reason(const dx_tls *t);

/* After the handshake: the protocol ("TLSv1.3"), the cipher suite, and the
 * ALPN protocol agreed on (NUL-terminated copy into buf; "" for none). */
const char *dx_tls_version(const dx_tls *t);
const char *dx_tls_cipher(const dx_tls *t);
char *dx_tls_alpn(const dx_tls *t, char *buf, size_t buflen);

/* 1 if the peer closed without close_notify (with allow_truncation). */
int dx_tls_truncated(const dx_tls *t);

/* The connection's SSL (OpenSSL), for what this API does not cover. */
void *dx_tls_native(dx_tls *t);

/* Read, write and shut down s through t (same fd as the stream's) from now
 * on: call it after dx_stream_init(), before reading or writing. */
void dx_stream_set_tls(dx_stream *s, dx_tls *t);

/* The same for a socket's endpoint, before dx_pump_start(): pumps from or
 * to it copy through their buffer (no splice or sendfile through TLS). */
void dx_endpoint_set_tls(dx_endpoint *e, dx_tls *t);


/* ---- access control: allow/deny by address and CIDR range ---------------- */

/* One rule: an IPv4 or IPv6 network. */
typedef struct dx_cidr {
    int family;               /* AF_INET or AF_INET6 */
    unsigned char addr[16];   /* network address (4 or 16 bytes used) */
    int prefix;               /* 0..32 or 0..128 */
} dx_cidr;

/* Parse "10.0.0.0/8", "192.168.1.7", "::1", "2001:db8::/32". Host bits
 * beyond the prefix are cleared. An IPv4-mapped IPv6 rule is stored as the
 * IPv4 one it names (::ffff:10.0.0.0/104 is 10.0.0.0/8, family AF_INET);
 * with a prefix shorter than /96 (which would reach beyond the mapped
 * range) it is refused. Returns 0 or DX_EBADADDR. */
int dx_cidr_parse(dx_cidr *out, const char *text);

/* 1 if the address (IPv4, IPv6, or IPv4-mapped IPv6 matched as IPv4) lies
 * in the network, else 0. */
int dx_cidr_match(const dx_cidr *net, const dx_addr *a);

/* An access list: a client is refused if it matches a deny rule, or if
 * allow rules exist and it matches none. Fields are private. */
typedef struct dx_acl {
    dx_cidr *allow, *deny;
    size_t nallow, ndeny, capallow, capdeny;
} dx_acl;

/* Add one rule (text as for dx_cidr_parse). Returns 0, DX_EBADADDR or
 * -ENOMEM. The dx_acl starts zero-initialised. */
int dx_acl_add(dx_acl *acl, const char *rule, int allow);

/* Add every rule of a file: rules separated by whitespace (one or several
 * a line, lines of any length), '#' starts a comment to the end of the
 * line, blank lines are ignored. Returns the number of rules, -errno if the
 * file cannot be read, or DX_EBADADDR (with *bad_line set to the 1-based
 * line) for a word that is not a rule or a line holding a NUL byte. On an
 * error no rule of the file is added. */
int dx_acl_add_file(dx_acl *acl, const char *path, int allow, int *bad_line);

/* A rule file read word by word, for a program that takes words
 * dx_acl_add() does not (the command resolves host names): the grammar of
 * dx_acl_add_file(), the words handed back one per call, no callback. */
typedef struct dx_acl_file dx_acl_file;

/* Open path for dx_acl_file_next(). Returns the reader, or NULL with a code
 * in *err (if err is not NULL): -errno if the file cannot be opened,
 * -ENOMEM. */
dx_acl_file *dx_acl_file_open(const char *path, int *err);

/* The next word: returns 1 with *word (NUL-terminated, valid until the next
 * call or dx_acl_file_close()) and *line (if line is not NULL; 1-based) set,
 * 0 at the end of the file, or a code with *line set: DX_EBADADDR for a line
 * holding a NUL byte, -errno if the file cannot be read, -ENOMEM. After an
 * error every call returns it again. Whether a word is a rule is the
 * caller's to say (dx_acl_add() on it). */
int dx_acl_file_next(dx_acl_file *f, const char **word, int *line);

/* Close the file and free the reader; safe on NULL. */
void dx_acl_file_close(dx_acl_file *f);

/* 1 if the address may connect. Unix socket peers are always allowed. */
int dx_acl_allows(const dx_acl *acl, const dx_addr *a);

void dx_acl_free(dx_acl *acl);

/* ---- socket listing (sock_diag netlink, /proc/net fallback) ------------- */

/* What dx_sock_list() lists (flags) and where it read it from (*source). */
enum {
    DX_SL_TCP = 1 << 0,      /* TCP sockets */
    DX_SL_UDP = 1 << 1,      /* UDP sockets */
    DX_SL_UNIX = 1 << 2,     /* Unix sockets (stream, datagram, seqpacket) */
    DX_SL_IPV4 = 1 << 3,     /* TCP/UDP over IPv4 (neither IPV4 nor IPV6: both) */
    DX_SL_IPV6 = 1 << 4,     /* TCP/UDP over IPv6 */
    DX_SL_NETLINK = 1 << 8,  /* flags: netlink only, no fallback; *source: netlink used */
    DX_SL_PROC = 1 << 9,     /* flags: /proc/net only; *source: /proc/net used */
};

/* Socket states: the kernel's TCP_* numbers (Unix and UDP sockets use
 * ESTABLISHED, LISTEN and CLOSE, which ss calls UNCONN). */
enum {
    DX_SS_ESTABLISHED = 1, DX_SS_SYN_SENT, DX_SS_SYN_RECV, DX_SS_FIN_WAIT1,
    DX_SS_FIN_WAIT2, DX_SS_TIME_WAIT, DX_SS_CLOSE, DX_SS_CLOSE_WAIT,
    DX_SS_LAST_ACK, DX_SS_LISTEN, DX_SS_CLOSING, DX_SS_MAX
};

/* One socket. TCP/UDP: local and peer hold the address and port (a peer of
 * family AF_UNSPEC or port 0 means none). Unix: path and the inodes. */
typedef struct dx_sockinfo {
    int proto;               /* DX_SL_TCP, DX_SL_UDP or DX_SL_UNIX */
    int family;              /* AF_INET, AF_INET6 or AF_UNIX */
    int type;                /* SOCK_STREAM, SOCK_DGRAM or SOCK_SEQPACKET */
    int state;               /* DX_SS_* */
    uint32_t rqueue;         /* bytes to read; listening: connections waiting in the accept queue */
    uint32_t wqueue;         /* bytes unsent/unacknowledged; listening: the backlog
                                (netlink only; 0 from /proc/net/tcp) */
    struct sockaddr_storage local, peer; /* TCP/UDP */
    char path[112];          /* Unix: bound path, "@name" for abstract, "" unnamed */
    uint64_t inode;          /* 0: none (TIME-WAIT) or unknown */
    uint64_t peer_inode;     /* Unix: the peer's inode; 0: none or unknown (/proc) */
    int64_t uid;             /* owner; -1: unknown (Unix sockets from /proc, old kernels) */
} dx_sockinfo;

/* List sockets: TCP/UDP through NETLINK_SOCK_DIAG (inet_diag_req_v2), Unix
 * through unix_diag_req. A query the kernel refuses is answered from
 * /proc/net/{tcp,tcp6,udp,udp6,unix} instead (without backlogs, Unix peers,
 * Unix queues or Unix uids), unless flags has DX_SL_NETLINK; DX_SL_PROC reads
 * /proc/net only. No DX_SL_TCP/UDP/UNIX bit: all three. On success *out is
 * a malloc'd array (free() it; NULL when empty), *source (if not NULL) says
 * DX_SL_NETLINK and/or DX_SL_PROC, and the count is returned. On failure
 * (-errno: both ways refused), nothing is allocated. Windows: TCP and UDP
 * from the IP Helper tables, *source 0, DX_SL_NETLINK/DX_SL_PROC -ENOSYS. */
int dx_sock_list(unsigned flags, dx_sockinfo **out, unsigned *source);

/* ss's name for a DX_SS_* state ("ESTAB", "LISTEN", "UNCONN", "TIME-WAIT",
 * ...); "UNKNOWN" for others. */
const char *dx_sock_state_name(int state);

/* A process holding a socket: one record per open descriptor. */
typedef struct dx_sockproc {
    uint64_t inode;          /* the socket's inode */
    int pid;
    int fd;
    char name[64];           /* /proc/PID/comm */
} dx_sockproc;

/* Scan /proc/PID/fd/ for "socket:[INODE]" links (processes that cannot be
 * read are skipped). *out: malloc'd array sorted by inode, then pid, then
 * fd; returns the count or -errno (/proc unreadable, -ENOMEM). */
int dx_sock_procs(dx_sockproc **out);

#if defined(__GNUC__) && !defined(_WIN32)
#pragma GCC visibility pop
#endif

#ifdef __cplusplus
}
#endif
#endif
