/* fuzz_buf.c: the ring buffer (dx_buf) against a reference model. The input
 * is a capacity, then operations: put N bytes, get N bytes, read_fd from a
 * pipe holding K bytes, write_fd to a pipe (read back and compared), and
 * checks of len/room. Every byte that comes out must be the byte the model
 * says, in order. */
#define _GNU_SOURCE
#include "duplex.h"

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define CHECK(cond) do { if (!(cond)) abort(); } while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

struct input {
    const uint8_t *p;
    size_t n;
};

static unsigned take(struct input *in)
{
    if (!in->n)
        return 0;
    in->n--;
    return *in->p++;
}

/* The model: a plain array holding what the buffer should hold. */
static unsigned char model[4096];
static size_t mlen;
static int pipefd[2] = {-1, -1};

static void model_pop(const unsigned char *got, size_t n)
{
    CHECK(n <= mlen);
    CHECK(memcmp(got, model, n) == 0);
    memmove(model, model + n, mlen - n);
    mlen -= n;
}

static void drain_pipe(void)
{
    unsigned char junk[4096];
    while (read(pipefd[0], junk, sizeof junk) > 0)
        ;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (pipefd[0] < 0 && pipe2(pipefd, O_NONBLOCK | O_CLOEXEC) < 0)
        abort();
    struct input in = {data, size};
    size_t cap = (take(&in) << 4 | take(&in) >> 4) % sizeof model; /* 0..4095 */
    dx_buf b;
    CHECK(dx_buf_init(&b, cap) == 0);
    mlen = 0;
    unsigned char tmp[4096], fill[300];
    int ops = 0;
    while (in.n > 0 && ops++ < 2000) {
        unsigned op = take(&in);
        size_t k = (size_t)take(&in) * (op >> 4 & 15) + (op >> 3 & 1); /* 0..3825 */
        if (k > sizeof tmp)
            k = sizeof tmp;
        switch (op & 7) {
        case 0:
        case 1: { /* put k bytes (pattern from the input and a counter) */
            for (size_t i = 0; i < k; i++)
                tmp[i] = (unsigned char)(i < in.n ? in.p[i] : i * 7 + ops);
            size_t want = k < cap - mlen ? k : cap - mlen;
            size_t got = dx_buf_put(&b, tmp, k);
            CHECK(got == want);
            memcpy(model + mlen, tmp, got);
            mlen += got;
            break;
        }
        case 2:
        case 3: { /* get k bytes */
            size_t want = k < mlen ? k : mlen;
            size_t got = dx_buf_get(&b, tmp, k);
            CHECK(got == want);
            model_pop(tmp, got);
            break;
        }
        case 4: { /* read_fd from a pipe holding k bytes */
            size_t kk = k < sizeof fill ? k : sizeof fill;
            for (size_t i = 0; i < kk; i++)
                fill[i] = (unsigned char)(op + i * 13);
            if (kk)
                CHECK(write(pipefd[1], fill, kk) == (ssize_t)kk);
            ssize_t r = dx_buf_read_fd(&b, pipefd[0]);
            if (mlen == cap) {
                CHECK(r == -ENOBUFS);
            } else if (kk == 0) {
                CHECK(r == -EAGAIN);
            } else {
                size_t want = kk < cap - mlen ? kk : cap - mlen;
                CHECK(r == (ssize_t)want);
                memcpy(model + mlen, fill, want);
                mlen += want;
            }
            drain_pipe();
            break;
        }
        case 5: { /* write_fd to a pipe, then read back what it wrote */
            ssize_t w = dx_buf_write_fd(&b, pipefd[1], 0);
            CHECK(w == (ssize_t)mlen); /* at most 4095 bytes: a pipe takes them all */
            ssize_t r = w > 0 ? read(pipefd[0], tmp, sizeof tmp) : 0;
            CHECK(r == w);
            model_pop(tmp, (size_t)r);
            break;
        }
        case 6: { /* get in two steps across the wrap point */
            size_t half = mlen / 2;
            CHECK(dx_buf_get(&b, tmp, half) == half);
            CHECK(dx_buf_get(&b, tmp + half, mlen - half) == mlen - half);
            model_pop(tmp, mlen);
            break;
        }
        default: /* state only */
            break;
        }
        CHECK(dx_buf_len(&b) == mlen && dx_buf_room(&b) == cap - mlen);
        CHECK(b.head < (cap ? cap : 1) && b.len <= cap);
    }
    /* the rest comes out exactly */
    size_t rest = dx_buf_get(&b, tmp, sizeof tmp);
    CHECK(rest == mlen);
    model_pop(tmp, rest);
    CHECK(dx_buf_len(&b) == 0 && dx_buf_write_fd(&b, pipefd[1], 0) == 0);
    dx_buf_free(&b);
    return 0;
}
