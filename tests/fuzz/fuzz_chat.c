/* fuzz_chat.c: the --chat line splitter (chat_input, static in
 * src/cli/serve.c), reached by including serve.c itself, so nothing is
 * extracted or changed. A server struct with two clients is set up by hand:
 * A (the sender, whose bytes are the input) and B (a recipient, a real
 * dx_stream on a socketpair whose other end the harness reads). The input
 * is fed to chat_input in chunks (sizes from the first byte), then A leaves
 * (client_close, reap: its unfinished line is flushed, then the notice). B
 * must receive exactly what a byte-by-byte reference gives: each line (cut
 * at '\n' or after CHAT_LINE_MAX bytes) as "[A] line", with a '\n' added
 * where missing, the same whatever the chunking.
 * Each input runs twice: the second time with clients that never read
 * (tiny queues, most of them alike, newer than B so before it in the list) between A and B.
 * They fill up, pausing A (its input kept back) and are dropped, as the
 * sweep does, in the middle of broadcasts, each drop a notice to the
 * others: B must still get every line of A, in order. */
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

static struct client *client_new(struct server *sv, int fd, const char *name, size_t qcap)
{
    struct client *c = calloc(1, sizeof *c);
    CHECK(c);
    c->sv = sv;
    c->fd = fd;
    snprintf(c->name, sizeof c->name, "%s", name);
    CHECK(dx_stream_init(sv->loop, &c->st, fd, qcap, client_on_read, client_on_event, c) == 0);
    c->next = sv->clients;
    if (c->next)
        c->next->prev = c;
    sv->clients = c;
    sv->nclients++;
    return c;
}

/* B's messages other than notices ("* NAME left ..."). */
static void without_notices(struct bytes *all, struct bytes *lines)
{
    for (size_t i = 0; i < all->n;) {
        char *nl = memchr(all->p + i, '\n', all->n - i);
        CHECK(nl);
        size_t len = (size_t)(nl - (all->p + i)) + 1;
        if (!(len > 2 && all->p[i] == '*' && all->p[i + 1] == ' '))
            bytes_add(lines, all->p + i, len);
        i += len;
    }
}

#define NSLOW 4

static void run(const uint8_t *data, size_t size, int slow);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1 || size > 3 * CHAT_LINE_MAX + 100)
        return 0;
    run(data, size, 0);
    run(data, size, 1);
    return 0;
}

static void run(const uint8_t *data, size_t size, int slow)
{
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
    dx_timer_init(&sv.resume, on_resume, &sv);
    int a[2], b[2], z[NSLOW][2];
    CHECK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, a) == 0);
    CHECK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, b) == 0);
    struct client *cb = client_new(&sv, b[0], "B", opts.max_queue);
    for (int i = 0; slow && i < NSLOW; i++) {
        CHECK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, z[i]) == 0);
        int one = 1; /* the smallest socket buffer: the queue fills soon */
        CHECK(setsockopt(z[i][0], SOL_SOCKET, SO_SNDBUF, &one, sizeof one) == 0);
        char name[8];
        snprintf(name, sizeof name, "S%d", i);
        client_new(&sv, z[i][0], name, i == 0 ? 512 : 256);
    }
    struct client *ca = client_new(&sv, a[0], "A", opts.max_queue);

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
        CHECK(chat_input(&sv, ca, &ca->in, (const char *)p, k) == 0);
        p += k;
        left -= k;
        CHECK(!ca->dead && !cb->dead);
        CHECK(ca->in.linelen < CHAT_LINE_MAX && (ca->in.linelen == 0) == (ca->in.line == NULL));
        for (int rounds = 0;; rounds++) {
            CHECK(rounds < 10000);
            drain(cb, b[1], &got); /* runs the loop: B drains, on_resume() may go on */
            if (!ca->in.rest)
                break;
            CHECK(slow || sv.reading_paused); /* kept back only for a full recipient */
            /* the sweep drops who stays congested (B never does: drained) */
            for (struct client *c = sv.clients; c; c = c->next)
                if (!c->dead && c->congested && c != cb)
                    client_close(c, "not reading");
            on_resume(loop, &sv.resume);
        }
    }
    /* the slow clients still there go, then the sender: its unfinished
     * line is passed on, then the notice */
    for (struct client *c = sv.clients; c; c = c->next)
        if (c != ca && c != cb)
            client_close(c, "not reading");
    client_close(ca, NULL);
    reap(loop, &sv.reaper);
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
    if (len)
        expect_line(&want, line, len);
    struct bytes said = {0};
    without_notices(&got, &said);
    CHECK(said.n == want.n && (said.n == 0 || memcmp(said.p, want.p, said.n) == 0));
    static const char left_msg[] = "* A left (1 connected)\n";
    size_t nl = sizeof left_msg - 1;
    CHECK(got.n >= nl && memcmp(got.p + got.n - nl, left_msg, nl) == 0); /* A's notice last */
    CHECK(slow || got.n == want.n + nl);
    CHECK(cb->st.bytes_out == got.n && !cb->congested && sv.ncongested == 0);
    CHECK(sv.clients == cb && !cb->next && sv.nclients == 1 && !cb->dead);

    /* nothing of its own ever went back to the sender (closed by now):
     * only the notices of the slow clients' drops */
    char back[4096];
    ssize_t nback = recv(a[1], back, sizeof back, MSG_DONTWAIT);
    CHECK(slow ? nback >= 0 : nback == 0);
    for (ssize_t i = 0; i < nback; i++)
        CHECK(i > 0 && back[i - 1] != '\n' ? 1 : memcmp(back + i, "* S", 3) == 0);

    dx_stream_close(&cb->st);
    close(cb->fd);
    free(cb->in.line);
    free(cb);
    dx_timer_stop(loop, &sv.reaper);
    dx_timer_stop(loop, &sv.resume);
    close(a[1]);
    close(b[1]);
    for (int i = 0; slow && i < NSLOW; i++)
        close(z[i][1]);
    free(got.p);
    free(want.p);
    free(said.p);
}
