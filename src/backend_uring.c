/* backend_uring.c: io_uring (Linux >= 5.1, liburing), used as a readiness
 * multiplexer behind the same contract as epoll and poll.
 * Quirks: each watched fd has one one-shot IORING_OP_POLL_ADD in flight; it
 * is re-armed after its completion has been dispatched, which gives the
 * level-triggered meaning the loop expects (multishot polls fire on wake-ups,
 * i.e. edges). A poll holds a reference to the file, so removals are
 * submitted at once: a closed socket must not linger until the next wait.
 * Stale completions (an fd removed and reused) are told apart by a
 * generation number in user_data. io_uring may be missing or forbidden
 * (old kernel, seccomp, io_uring_disabled sysctl): init then declines; the
 * backend is only used when asked for by name, and dx_loop_new() then fails.
 * DX_PRI: an io_uring poll is not completed by the arrival of TCP urgent
 * data (POLLPRI; seen on Linux 6.x, where poll() and epoll do see it), so
 * fds watched for DX_PRI sit in a private epoll set, and the ring polls
 * that epoll fd for POLLIN instead. */
#define _GNU_SOURCE
#include "internal.h"

#ifdef DX_HAVE_URING
#include <errno.h>
#include <liburing.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <unistd.h>

#define RING_ENTRIES 1024
#define REMOVE_TAG UINT64_MAX /* user_data of removal requests */
#define PRI_TAG (UINT64_MAX - 1) /* user_data of the poll on pri_epfd */
#define IO_EVENTS (DX_READ | DX_WRITE)

struct fd_state {
    unsigned char interest; /* DX_READ|DX_WRITE|DX_PRI */
    unsigned char armed;    /* a poll is in flight */
    unsigned char queued;   /* on the re-arm list */
    uint32_t gen;
};

struct uring_state {
    struct io_uring ring;
    struct fd_state *fds;
    int nfds;
    int *rearm; /* fds whose poll completed and may need a new one */
    int nrearm, caprearm;
    int pri_epfd;  /* epoll set of the fds watched for DX_PRI, or -1 */
    int npri;      /* fds in it */
    int pri_armed; /* a poll on pri_epfd is in flight */
};

static int ur_init(dx_loop *loop)
{
    struct uring_state *st = calloc(1, sizeof *st);
    if (!st)
        return -ENOMEM;
    st->pri_epfd = -1;
    /* COOP_TASKRUN (Linux 5.19): completions are posted when the loop next
     * enters the kernel (it always does, to wait) instead of by interrupting
     * it; the interrupts cost a third of the echo rate at 100 busy
     * connections (bench/echo.sh). Older kernels refuse it: then without. */
    struct io_uring_params params;
    memset(&params, 0, sizeof params);
#ifdef IORING_SETUP_COOP_TASKRUN
    params.flags = IORING_SETUP_COOP_TASKRUN;
#endif
    int rc = io_uring_queue_init_params(RING_ENTRIES, &st->ring, &params);
    if (rc == -EINVAL && params.flags)
        rc = io_uring_queue_init(RING_ENTRIES, &st->ring, 0);
    if (rc < 0) {
        free(st);
        return rc;
    }
    loop->backend_data = st;
    return 0;
}

static void ur_fini(dx_loop *loop)
{
    struct uring_state *st = loop->backend_data;
    io_uring_queue_exit(&st->ring);
    if (st->pri_epfd >= 0)
        close(st->pri_epfd);
    free(st->fds);
    free(st->rearm);
    free(st);
}

static struct io_uring_sqe *get_sqe(struct uring_state *st)
{
    struct io_uring_sqe *sqe = io_uring_get_sqe(&st->ring);
    if (!sqe) { /* the submission queue is full: hand it to the kernel */
        io_uring_submit(&st->ring);
        sqe = io_uring_get_sqe(&st->ring);
    }
    return sqe;
}

static uint64_t tag(int fd, uint32_t gen) { return ((uint64_t)gen << 32) | (uint32_t)fd; }

static int arm(struct uring_state *st, int fd)
{
    struct fd_state *f = &st->fds[fd];
    struct io_uring_sqe *sqe = get_sqe(st);
    if (!sqe)
        return -EBUSY;
    /* DX_PRI is watched through pri_epfd */
    unsigned mask = ((f->interest & DX_READ) ? POLLIN : 0) | ((f->interest & DX_WRITE) ? POLLOUT : 0);
    io_uring_prep_poll_add(sqe, fd, mask);
    io_uring_sqe_set_data64(sqe, tag(fd, f->gen));
    f->armed = 1;
    return 0;
}

static int arm_pri(struct uring_state *st)
{
    struct io_uring_sqe *sqe = get_sqe(st);
    if (!sqe)
        return -EBUSY;
    io_uring_prep_poll_add(sqe, st->pri_epfd, POLLIN);
    io_uring_sqe_set_data64(sqe, PRI_TAG);
    st->pri_armed = 1;
    return 0;
}

/* Move fd into or out of the DX_PRI epoll set. */
static int pri_update(struct uring_state *st, int fd, int old_events, int new_events)
{
    if ((old_events & DX_PRI) == (new_events & DX_PRI))
        return 0;
    if (!(new_events & DX_PRI)) {
        epoll_ctl(st->pri_epfd, EPOLL_CTL_DEL, fd, NULL); /* fails only if already gone */
        st->npri--;
        return 0;
    }
    if (st->pri_epfd < 0) {
        st->pri_epfd = epoll_create1(EPOLL_CLOEXEC);
        if (st->pri_epfd < 0)
            return -errno;
    }
    struct epoll_event ev = {.events = EPOLLPRI, .data.fd = fd};
    if (epoll_ctl(st->pri_epfd, EPOLL_CTL_ADD, fd, &ev) < 0)
        return -errno;
    st->npri++;
    return st->pri_armed ? 0 : arm_pri(st);
}

/* The DX_PRI set is ready: report its fds. */
static int pri_collect(dx_loop *loop, struct uring_state *st)
{
    struct epoll_event evs[64];
    int n = epoll_wait(st->pri_epfd, evs, 64, 0);
    for (int i = 0; i < n; i++) {
        uint32_t re = evs[i].events;
        int ev = ((re & EPOLLPRI) ? DX_PRI : 0) | ((re & (EPOLLERR | EPOLLHUP)) ? DX_ERROR : 0);
        if (dx__loop_fired(loop, evs[i].data.fd, ev) < 0)
            return -ENOMEM;
    }
    return 0;
}

static int disarm(struct uring_state *st, int fd)
{
    struct fd_state *f = &st->fds[fd];
    if (!f->armed)
        return 0;
    struct io_uring_sqe *sqe = get_sqe(st);
    if (!sqe)
        return -EBUSY;
    io_uring_prep_poll_remove(sqe, tag(fd, f->gen));
    io_uring_sqe_set_data64(sqe, REMOVE_TAG);
    f->armed = 0;
    f->gen++; /* whatever the old poll still reports is stale */
    return 0;
}

static int ur_mod(dx_loop *loop, int fd, int old_events, int new_events)
{
    struct uring_state *st = loop->backend_data;
    (void)old_events;
    if (fd >= st->nfds) {
        int n = st->nfds ? st->nfds : 64;
        while (n <= fd)
            n *= 2;
        struct fd_state *fds = realloc(st->fds, (size_t)n * sizeof *fds);
        if (!fds)
            return -ENOMEM;
        memset(fds + st->nfds, 0, (size_t)(n - st->nfds) * sizeof *fds);
        st->fds = fds;
        st->nfds = n;
    }
    struct fd_state *f = &st->fds[fd];
    if (f->interest == new_events && (f->armed || f->queued))
        return 0;
    int rc = disarm(st, fd);
    if (rc < 0)
        return rc;
    rc = pri_update(st, fd, f->interest, new_events);
    if (rc < 0)
        return rc;
    f->interest = (unsigned char)new_events;
    if ((new_events & IO_EVENTS) == 0) {
        io_uring_submit(&st->ring); /* release the file now, before close() */
        return 0;
    }
    return arm(st, fd);
}

static int ur_wait(dx_loop *loop, int timeout_ms)
{
    struct uring_state *st = loop->backend_data;
    for (int i = 0; i < st->nrearm; i++) {
        int fd = st->rearm[i];
        struct fd_state *f = &st->fds[fd];
        f->queued = 0;
        if ((f->interest & IO_EVENTS) && !f->armed && arm(st, fd) < 0)
            return -EBUSY;
    }
    st->nrearm = 0;
    if (st->npri > 0 && !st->pri_armed && arm_pri(st) < 0)
        return -EBUSY;

    struct io_uring_cqe *cqe;
    struct __kernel_timespec ts = {.tv_sec = timeout_ms / 1000, .tv_nsec = (timeout_ms % 1000) * 1000000L};
    int rc = io_uring_submit_and_wait_timeout(&st->ring, &cqe, 1, timeout_ms < 0 ? NULL : &ts, NULL);
    if (rc < 0 && rc != -ETIME && rc != -EINTR)
        return rc;

    unsigned head, seen = 0;
    io_uring_for_each_cqe(&st->ring, head, cqe) {
        seen++;
        uint64_t ud = io_uring_cqe_get_data64(cqe);
        if (ud == REMOVE_TAG)
            continue;
        if (ud == PRI_TAG) {
            st->pri_armed = 0; /* re-armed by the next wait */
            if (st->npri > 0 && pri_collect(loop, st) < 0)
                return -ENOMEM;
            continue;
        }
        int fd = (int)(uint32_t)ud;
        uint32_t gen = (uint32_t)(ud >> 32);
        if (fd >= st->nfds || st->fds[fd].gen != gen || !st->fds[fd].armed)
            continue;
        struct fd_state *f = &st->fds[fd];
        f->armed = 0;
        int res = cqe->res;
        int ev = res < 0 ? DX_ERROR
                         : ((res & POLLIN) ? DX_READ : 0) | ((res & POLLOUT) ? DX_WRITE : 0) |
                               ((res & POLLPRI) ? DX_PRI : 0) |
                               ((res & (POLLERR | POLLHUP | POLLNVAL)) ? DX_ERROR : 0);
        if (!f->queued) {
            if (st->nrearm == st->caprearm) {
                int cap = st->caprearm ? st->caprearm * 2 : 64;
                int *r = realloc(st->rearm, (size_t)cap * sizeof *r);
                if (!r)
                    return -ENOMEM;
                st->rearm = r;
                st->caprearm = cap;
            }
            st->rearm[st->nrearm++] = fd;
            f->queued = 1;
        }
        if (dx__loop_fired(loop, fd, ev) < 0)
            return -ENOMEM;
    }
    io_uring_cq_advance(&st->ring, seen);
    return 0;
}

const struct dx__backend dx__backend_uring = {
    .name = "io_uring",
    .init = ur_init,
    .fini = ur_fini,
    .mod = ur_mod,
    .wait = ur_wait,
};
#endif
