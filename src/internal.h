/* internal.h: what the loop and its backends share, and nothing else.
 * The backend contract: a backend is five functions behind struct dx__backend. */
#ifndef DUPLEX_INTERNAL_H
#define DUPLEX_INTERNAL_H

#include "duplex.h"

/* A multiplexer. init() may decline with a negative code (the loop then
 * tries the next one); mod() is told the old and new interest of one fd
 * (0 means not watched); wait() blocks up to timeout_ms (-1: forever) and
 * records each ready fd with dx__loop_fired(); the loop dispatches them once
 * wait() has returned, so callbacks may change any watcher safely. */
struct dx__backend {
    const char *name;
    int (*init)(dx_loop *loop);
    void (*fini)(dx_loop *loop);
    int (*mod)(dx_loop *loop, int fd, int old_events, int new_events);
    int (*wait)(dx_loop *loop, int timeout_ms);
};

#ifdef _WIN32
extern const struct dx__backend dx__backend_wsapoll; /* the only one on Windows */
extern int dx__wsapoll_old_windows; /* tests: see backend_wsapoll.c */
#else
extern const struct dx__backend dx__backend_poll;
#endif
#ifdef __linux__
extern const struct dx__backend dx__backend_epoll;
#define DX_HAVE_EPOLL 1
#endif
#ifdef DX_HAVE_URING /* set by the Makefile when liburing is installed */
extern const struct dx__backend dx__backend_uring;
#endif

/* pollset.c: the dense pollfd array of the poll(2) and WSAPoll backends,
 * with an fd -> slot map (removal moves the last entry into the hole) and a
 * byte per entry for the backend (tag). Zeroed: empty. */
struct pollfd;
struct dx__pollset {
    struct pollfd *pfds;
    unsigned char *tag; /* beside pfds, moved with its entry */
    int n, cap;
    int *slot;          /* fd -> index in pfds, or -1 */
    int nslot;
};
int dx__pollset_find(const struct dx__pollset *ps, int fd); /* fd's index, or -1 */
/* A new entry for fd (not in the set; events, revents and tag 0): its
 * index, or -ENOMEM. */
int dx__pollset_add(struct dx__pollset *ps, int fd);
void dx__pollset_remove(struct dx__pollset *ps, int i);
void dx__pollset_free(struct dx__pollset *ps);

struct dx_loop {
    const struct dx__backend *backend;
    void *backend_data;     /* owned by the backend */
    dx_io **ios;            /* indexed by fd; NULL where nothing is watched */
    int nios;               /* length of ios */
    int nactive;            /* started watchers */
    int nalways;            /* started watchers on always-ready fds */
    dx_timer **heap;        /* min-heap on `when` */
    size_t nheap, capheap;
    struct dx__fired { int fd, events; } *fired; /* filled by wait() */
    int nfired, capfired;
    int firing;             /* index in fired being dispatched, -1 outside dispatch */
    dx__later *later_head, *later_tail; /* deferred callbacks, in queue order */
    uint64_t later_pass;    /* run_later() rounds, see there */
    uint64_t now;
    uint64_t timer_pass;    /* run_timers() rounds, see there */
    int stop;
};

/* Called by a backend's wait() for each ready fd; events are DX_* bits.
 * Returns 0 or -ENOMEM. */
int dx__loop_fired(dx_loop *loop, int fd, int events);

/* Deferred callbacks: what a call finds out (a failed write, an immediate
 * connect failure) is reported from the loop, never from inside the call
 * (see the rule at the top of duplex.h). dx__later_queue() runs l->cb on the
 * loop's next iteration (once, however often it is queued); it allocates
 * nothing, so it cannot fail. dx__later_cancel() forgets it; safe if not
 * queued. Both are safe from any callback. */
void dx__later_init(dx__later *l, void (*cb)(dx_loop *loop, dx__later *l), void *data);
void dx__later_queue(dx_loop *loop, dx__later *l);
void dx__later_cancel(dx_loop *loop, dx__later *l);

/* ratelimit.c: the token bucket of pumps and streams. init: rate 0 is no
 * limit; wake(loop, &r->timer) runs once tokens are back after the bucket
 * ran dry (r->timer.data is data). allow: how many of want bytes may move
 * now (0: blocked, the timer armed); spend: n bytes moved. */
void dx__rate_init(dx_rate *r, uint64_t rate, uint64_t now, dx_timer_cb wake, void *data);
size_t dx__rate_allow(dx_rate *r, dx_loop *loop, size_t want);
void dx__rate_spend(dx_rate *r, dx_loop *loop, size_t n);
int dx__rate_blocked(const dx_rate *r);
void dx__rate_stop(dx_rate *r, dx_loop *loop);
/* buf.c: dx_buf_read_fd() and dx_buf_write_fd() moving at most max bytes */
ssize_t dx__buf_read_fd_max(dx_buf *b, int fd, size_t max);
ssize_t dx__buf_write_fd_max(dx_buf *b, int fd, int is_socket, size_t max);
/* TLS (tls.c), as streams and pumps use it instead of the socket once a
 * dx_tls is attached. read/write: bytes, -EAGAIN, or the failure; read
 * returns 0 at the peer's close_notify. shutdown: close_notify then
 * SHUT_WR; 0, -EAGAIN (call again when the event comes) or the failure.
 * event(t, DX_READ / DX_WRITE): what reading / writing waits for now.
 * attach: owner's callback is the one kick() runs (from the loop, with the
 * read event) while the owner wants to read and OpenSSL holds input the
 * poll cannot show; kick(t, 0) forgets it. */
ssize_t dx__tls_read(dx_tls *t, void *buf, size_t n);
ssize_t dx__tls_write(dx_tls *t, const void *buf, size_t n);
int dx__tls_shutdown(dx_tls *t);
int dx__tls_event(const dx_tls *t, int dir);
void dx__tls_attach(dx_tls *t, dx_io *owner);
void dx__tls_kick(dx_tls *t, int want_read);
/* diag.c: drop the records of v[0..n) that repeat an earlier one (the same
 * socket: protocol, family, inode, state and addresses), keeping the first
 * and the order. A kernel dump read in chunks (sock_diag, /proc/net) can
 * give a socket twice when its hash bucket changes between two chunks.
 * Returns the new count. */
size_t dx__sock_dedupe(dx_sockinfo *v, size_t n);

/* dx_buf_read_fd()/dx_buf_write_fd() over TLS (buf.c). */
ssize_t dx__buf_read_tls(dx_buf *b, dx_tls *t, size_t max); /* at most max bytes */
ssize_t dx__buf_write_tls(dx_buf *b, dx_tls *t, size_t max);

#endif
