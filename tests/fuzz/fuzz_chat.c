/* fuzz_chat.c: the --chat line splitter (chat_input, static in
 * src/cli/serve.c), reached by including serve.c itself, so nothing is
 * extracted or changed. A server struct with two clients is set up by hand:
 * A (the sender, whose bytes are the input) and B (a recipient, a real
 * dx_stream on a socketpair whose other end the harness reads). The input
 * is fed to chat_input in chunks (sizes from the first byte), then A's
 * unfinished line is flushed as client_close would. B must receive exactly
 * what a byte-by-byte reference gives: each line (cut at '\n' or after
 * CHAT_LINE_MAX bytes) as "[A] line", with a '\n' added where missing, the
 * same whatever the chunking. */
#include "../../src/cli/serve.c"

#include <stdint.h>
#include <sys/socket.h>

#define CHECK(cond) do { if (!(cond)) abort(); } while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static dx_loop *loop;
static dx_timer tick;
static struct options opts;

static void on_tick(dx_loop *l, dx_timer *t)
{
    (void)t;
    dx_loop_stop(l);
}

struct bytes {
    char *p;
    size_t n, cap;
};

static void bytes_add(struct bytes *b, const char *p, size_t n)
{
    if (b->n + n > b->cap) {
        b->cap = (b->n + n) * 2 + 256;
        b->p = realloc(b->p, b->cap);
        if (!b->p)
            abort();
    }
    memcpy(b->p + b->n, p, n);
    b->n += n;
}

/* Read what B's peer end holds, running the loop until B's queue is empty. */
static void drain(struct client *b, int fd, struct bytes *got)
{
    char buf[65536];
    for (int rounds = 0;; rounds++) {
        CHECK(rounds < 10000);
        ssize_t n;
        while ((n = recv(fd, buf, sizeof buf, MSG_DONTWAIT)) > 0)
            bytes_add(got, buf, (size_t)n);
        CHECK(n < 0 && errno == EAGAIN);
        if (dx_stream_queued(&b->st) == 0)
            return;
        dx_timer_start(loop, &tick, 0, 0);
        CHECK(dx_loop_run(loop) == 0);
    }
}

static void expect_line(struct bytes *want, const char *line, size_t n)
{
    bytes_add(want, "[A] ", 4);
    bytes_add(want, line, n);
    if (line[n - 1] != '\n')
        bytes_add(want, "\n", 1);
}

static struct client *client_new(struct server *sv, int fd, const char *name)
{
    struct client *c = calloc(1, sizeof *c);
    CHECK(c);
    c->sv = sv;
    c->fd = fd;
    snprintf(c->name, sizeof c->name, "%s", name);
    CHECK(dx_stream_init(sv->loop, &c->st, fd, opts.max_queue, client_on_read, client_on_event, c) == 0);
    c->next = sv->clients;
    if (c->next)
        c->next->prev = c;
    sv->clients = c;
    sv->nclients++;
    return c;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1 || size > 3 * CHAT_LINE_MAX + 100)
        return 0;
    if (!loop) {
        loop = dx_loop_new("poll", NULL);
        CHECK(loop);
        dx_timer_init(&tick, on_tick, NULL);
        opts.mode = MODE_CHAT;
        opts.max_queue = 1u << 20;
        opts.family = AF_UNSPEC;
    }
    struct server sv;
    memset(&sv, 0, sizeof sv);
    sv.o = &opts;
    sv.loop = loop;
    dx_timer_init(&sv.reaper, reap, &sv);
    int a[2], b[2];
    CHECK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, a) == 0);
    CHECK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, b) == 0);
    struct client *ca = client_new(&sv, a[0], "A");
    struct client *cb = client_new(&sv, b[0], "B");

    /* feed the input in chunks */
    unsigned chunk_seed = data[0];
    const char *p = (const char *)data + 1;
    size_t left = size - 1;
    struct bytes got = {0}, want = {0};
    for (unsigned i = 0; left > 0; i++) {
        size_t k = 1 + (chunk_seed * 37 + i * 101) % (chunk_seed + 1);
        if (chunk_seed >= 0xf0)
            k = left; /* sometimes everything at once */
        if (k > left)
            k = left;
        chat_input(ca, p, k);
        p += k;
        left -= k;
        CHECK(!ca->dead && !cb->dead);
        CHECK(ca->linelen < CHAT_LINE_MAX && (ca->linelen == 0) == (ca->line == NULL));
        drain(cb, b[1], &got);
    }
    /* the sender leaves: its unfinished line is passed on (as client_close does) */
    if (ca->linelen > 0)
        chat_say(&sv, ca, ca->line, ca->linelen);
    drain(cb, b[1], &got);

    /* the reference, one byte at a time */
    char line[CHAT_LINE_MAX];
    size_t len = 0;
    for (size_t i = 1; i < size; i++) {
        line[len++] = (char)data[i];
        if (data[i] == '\n' || len == CHAT_LINE_MAX) {
            expect_line(&want, line, len);
            len = 0;
        }
    }
    CHECK(len == ca->linelen && (len == 0 || memcmp(line, ca->line, len) == 0));
    if (len)
        expect_line(&want, line, len);
    CHECK(got.n == want.n && (got.n == 0 || memcmp(got.p, want.p, got.n) == 0));
    CHECK(cb->st.bytes_out == got.n && !cb->congested && sv.ncongested == 0);

    /* nothing ever goes back to the sender */
    char c;
    CHECK(recv(a[1], &c, 1, MSG_DONTWAIT) < 0 && errno == EAGAIN);

    for (struct client *c2 = sv.clients, *next; c2; c2 = next) {
        next = c2->next;
        dx_stream_close(&c2->st);
        close(c2->fd);
        free(c2->line);
        free(c2);
    }
    dx_timer_stop(loop, &sv.reaper);
    close(a[1]);
    close(b[1]);
    free(got.p);
    free(want.p);
    return 0;
}
