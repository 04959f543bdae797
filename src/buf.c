/* buf.c: a fixed-capacity ring buffer and the EINTR-safe read/write helpers
 * every copy goes through. Scatter/gather I/O fills or drains both segments
 * of the ring in one system call. */
#define _GNU_SOURCE
#include "internal.h"
#include "os.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

int dx_buf_init(dx_buf *b, size_t cap)
{
    memset(b, 0, sizeof *b);
    b->data = malloc(cap ? cap : 1);
    if (!b->data)
        return -ENOMEM;
    b->cap = cap;
    return 0;
}

void dx_buf_free(dx_buf *b)
{
    free(b->data);
    memset(b, 0, sizeof *b);
}

/* The used bytes as at most two segments. */
static int used_segments(const dx_buf *b, struct iovec iov[2])
{
    if (b->len == 0)
        return 0;
    size_t first = b->cap - b->head;
    if (first >= b->len) {
        iov[0] = (struct iovec){b->data + b->head, b->len};
        return 1;
    }
    iov[0] = (struct iovec){b->data + b->head, first};
    iov[1] = (struct iovec){b->data, b->len - first};
    return 2;
}

/* The free space as at most two segments. */
static int free_segments(const dx_buf *b, struct iovec iov[2])
{
    size_t room = b->cap - b->len;
    if (room == 0)
        return 0;
    size_t tail = (b->head + b->len) % b->cap;
    size_t first = b->cap - tail;
    if (first >= room) {
        iov[0] = (struct iovec){b->data + tail, room};
        return 1;
    }
    iov[0] = (struct iovec){b->data + tail, first};
    iov[1] = (struct iovec){b->data, room - first};
    return 2;
}

static void consume(dx_buf *b, size_t n)
{
    b->len -= n;
    b->head = b->len ? (b->head + n) % b->cap : 0; /* empty: rewind for long reads */
}

size_t dx_buf_put(dx_buf *b, const void *src, size_t n)
{
    struct iovec iov[2];
    int k = free_segments(b, iov);
    size_t done = 0;
    for (int i = 0; i < k && done < n; i++) {
        size_t m = iov[i].iov_len < n - done ? iov[i].iov_len : n - done;
        memcpy(iov[i].iov_base, (const char *)src + done, m);
        done += m;
    }
    b->len += done;
    return done;
}

size_t dx_buf_get(dx_buf *b, void *dst, size_t n)
{
    struct iovec iov[2];
    int k = used_segments(b, iov);
    size_t done = 0;
    for (int i = 0; i < k && done < n; i++) {
        size_t m = iov[i].iov_len < n - done ? iov[i].iov_len : n - done;
        memcpy((char *)dst + done, iov[i].iov_base, m);
        done += m;
    }
    consume(b, done);
    return done;
}

/* Keep the first max bytes of the segments. */
static int clip(struct iovec iov[2], int k, size_t max)
{
    if (iov[0].iov_len >= max) {
        iov[0].iov_len = max;
        return 1;
    }
    if (k == 2 && iov[0].iov_len + iov[1].iov_len > max)
        iov[1].iov_len = max - iov[0].iov_len;
    return k;
}

ssize_t dx_buf_read_fd(dx_buf *b, int fd) { return dx__buf_read_fd_max(b, fd, SIZE_MAX); }

ssize_t dx__buf_read_fd_max(dx_buf *b, int fd, size_t max)
{
    struct iovec iov[2];
    int k = free_segments(b, iov);
    if (k == 0)
        return -ENOBUFS;
    k = clip(iov, k, max);
    ssize_t n;
    do
        n = dx__fd_readv(fd, iov, k);
    while (n < 0 && errno == EINTR);
    if (n < 0)
        return errno == EWOULDBLOCK ? -EAGAIN : -errno;
    b->len += (size_t)n;
    return n;
}

ssize_t dx_buf_write_fd(dx_buf *b, int fd, int is_socket)
{
    return dx__buf_write_fd_max(b, fd, is_socket, SIZE_MAX);
}

ssize_t dx__buf_write_fd_max(dx_buf *b, int fd, int is_socket, size_t max)
{
    struct iovec iov[2];
    int k = used_segments(b, iov);
    if (k == 0 || max == 0)
        return 0;
    k = clip(iov, k, max);
    ssize_t n;
    do
        n = dx__fd_writev(fd, iov, k, is_socket); /* sockets: no SIGPIPE */
    while (n < 0 && errno == EINTR);
    if (n < 0)
        return errno == EWOULDBLOCK ? -EAGAIN : -errno;
    consume(b, (size_t)n);
    return n;
}

/* Over TLS: SSL_read/SSL_write take one segment at a time. A write that
 * must be retried (WANT_WRITE) is retried from the same first byte with at
 * least as many bytes: the first segment only grows until bytes leave. */
ssize_t dx__buf_read_tls(dx_buf *b, dx_tls *t, size_t max)
{
    struct iovec iov[2];
    int k = free_segments(b, iov);
    if (k == 0)
        return -ENOBUFS;
    k = clip(iov, k, max);
    ssize_t total = 0;
    for (int i = 0; i < k; i++) {
        ssize_t n = dx__tls_read(t, iov[i].iov_base, iov[i].iov_len);
        if (n <= 0) {
            if (total > 0)
                break; /* the end or the failure comes back with the next read */
            return n;
        }
        b->len += (size_t)n;
        total += n;
        if ((size_t)n < iov[i].iov_len)
            break;
    }
    return total;
}

ssize_t dx__buf_write_tls(dx_buf *b, dx_tls *t, size_t max)
{
    struct iovec iov[2];
    if (used_segments(b, iov) == 0 || max == 0)
        return 0;
    clip(iov, 1, max);
    ssize_t n = dx__tls_write(t, iov[0].iov_base, iov[0].iov_len);
    if (n > 0)
        consume(b, (size_t)n);
    return n;
}
