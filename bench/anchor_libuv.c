/* anchor_libuv: echo server on libuv.
 *   anchor_libuv PORT     (0: pick a free port; prints "listening on 127.0.0.1:PORT")
 * Reads go into one shared buffer (the read callback runs to completion before the
 * next read); uv_try_write sends them back at once, and only what the socket does
 * not take is copied into a uv_write request, with reading paused until it is done. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <uv.h>

static uv_loop_t *loop;
static char shared[65536];

struct wreq {
    uv_write_t req;
    uv_buf_t buf;
};

static void alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    (void)h;
    (void)suggested;
    *buf = uv_buf_init(shared, sizeof shared);
}

static void close_cb(uv_handle_t *h)
{
    free(h);
}

static void read_cb(uv_stream_t *s, ssize_t n, const uv_buf_t *buf);

static void write_cb(uv_write_t *req, int status)
{
    struct wreq *w = (struct wreq *)req;
    uv_stream_t *s = req->handle;
    free(w->buf.base);
    free(w);
    if (status < 0) {
        if (!uv_is_closing((uv_handle_t *)s))
            uv_close((uv_handle_t *)s, close_cb);
        return;
    }
    uv_read_start(s, alloc_cb, read_cb);
}

static void read_cb(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
    if (n < 0) {
        if (!uv_is_closing((uv_handle_t *)s))
            uv_close((uv_handle_t *)s, close_cb);
        return;
    }
    if (n == 0)
        return;
    uv_buf_t b = uv_buf_init(buf->base, (unsigned)n);
    int w = uv_try_write(s, &b, 1);
    if (w == UV_EAGAIN)
        w = 0;
    if (w < 0) {
        uv_close((uv_handle_t *)s, close_cb);
        return;
    }
    if (w < n) {
        struct wreq *r = malloc(sizeof *r);
        size_t left = (size_t)(n - w);
        r->buf = uv_buf_init(malloc(left), (unsigned)left);
        memcpy(r->buf.base, buf->base + w, left);
        uv_read_stop(s);
        if (uv_write(&r->req, s, &r->buf, 1, write_cb) < 0) {
            free(r->buf.base);
            free(r);
            uv_close((uv_handle_t *)s, close_cb);
        }
    }
}

static void on_conn(uv_stream_t *server, int status)
{
    if (status < 0)
        return;
    uv_tcp_t *c = malloc(sizeof *c);
    uv_tcp_init(loop, c);
    if (uv_accept(server, (uv_stream_t *)c) == 0) {
        uv_tcp_nodelay(c, 1);
        uv_read_start((uv_stream_t *)c, alloc_cb, read_cb);
    } else {
        uv_close((uv_handle_t *)c, close_cb);
    }
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: anchor_libuv PORT\n");
        return 2;
    }
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    loop = uv_default_loop();
    uv_tcp_t server;
    uv_tcp_init(loop, &server);
    struct sockaddr_in sa;
    uv_ip4_addr("127.0.0.1", atoi(argv[1]), &sa);
    int r = uv_tcp_bind(&server, (const struct sockaddr *)&sa, 0);
    if (!r)
        r = uv_listen((uv_stream_t *)&server, SOMAXCONN, on_conn);
    if (r) {
        fprintf(stderr, "anchor_libuv: %s\n", uv_strerror(r));
        return 1;
    }
    int len = sizeof sa;
    uv_tcp_getsockname(&server, (struct sockaddr *)&sa, &len);
    fprintf(stderr, "listening on 127.0.0.1:%u\n", ntohs(sa.sin_port));
    return uv_run(loop, UV_RUN_DEFAULT);
}
