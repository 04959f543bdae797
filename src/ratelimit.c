/* ratelimit.c: a token bucket on the loop's timers, the one rate limiter of
 * pumps and streams (dx_pump_set_rate(), dx_stream_set_rate()). Tokens are
 * counted in thousandths of a byte, so a refill of `ms` milliseconds at
 * `rate` bytes/s adds exactly ms * rate of them (no rounding drift). The
 * owner reads at most dx__rate_allow() bytes and pays them with
 * dx__rate_spend(); an empty bucket arms the timer, the owner stops watching
 * its source while dx__rate_blocked(), and the timer's callback (the
 * owner's) watches it again: no busy loop, no sleep. */
#include "internal.h"

#include <string.h>

/* Bursts of at most 1/20 s worth (a transfer never runs ahead of the rate
 * by more than that), and never less than 4 KiB or a second's worth,
 * whichever is less, so slow rates still move whole chunks. */
static uint64_t burst_for(uint64_t rate)
{
    uint64_t b = rate / 20, floor = rate < 4096 ? rate : 4096;
    return b > floor ? b : floor;
}

void dx__rate_init(dx_rate *r, uint64_t rate, uint64_t now, dx_timer_cb wake, void *data)
{
    memset(r, 0, sizeof *r);
    dx_timer_init(&r->timer, wake, data);
    r->rate = rate;
    r->burst = rate ? burst_for(rate) : 0;
    r->tokens = r->burst * 1000; /* the first burst at once */
    r->last = now;
}

static void refill(dx_rate *r, uint64_t now)
{
    if (now <= r->last)
        return;
    uint64_t ms = now - r->last > 1000 ? 1000 : now - r->last; /* a second refills any bucket */
    uint64_t cap = r->burst * 1000, add = ms * r->rate;
    r->tokens = add >= cap - r->tokens ? cap : r->tokens + add;
    r->last = now;
}

/* Wake the owner once a quarter of the bucket is back: chunks worth a
 * system call, about 80 wake-ups a second. */
static void arm(dx_rate *r, dx_loop *loop)
{
    uint64_t want = (r->burst / 4 ? r->burst / 4 : 1) * 1000;
    uint64_t missing = want > r->tokens ? want - r->tokens : 0;
    uint64_t ms = (missing + r->rate - 1) / r->rate;
    dx_timer_start(loop, &r->timer, ms ? ms : 1, 0);
}

size_t dx__rate_allow(dx_rate *r, dx_loop *loop, size_t want)
{
    if (!r->rate)
        return want;
    if (dx_timer_active(&r->timer))
        return 0;
    refill(r, loop->now);
    uint64_t have = r->tokens / 1000;
    if (have == 0) {
        arm(r, loop);
        return 0;
    }
    return have < want ? (size_t)have : want;
}

void dx__rate_spend(dx_rate *r, dx_loop *loop, size_t n)
{
    if (!r->rate)
        return;
    uint64_t cost = (uint64_t)n * 1000;
    r->tokens = cost >= r->tokens ? 0 : r->tokens - cost;
    if (r->tokens < 1000 && !dx_timer_active(&r->timer))
        arm(r, loop);
}

int dx__rate_blocked(const dx_rate *r) { return r->rate && dx_timer_active(&r->timer); }

void dx__rate_stop(dx_rate *r, dx_loop *loop)
{
    if (loop)
        dx_timer_stop(loop, &r->timer);
}
