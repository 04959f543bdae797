/* delay.c: --delay TIME (ncat's -d TIME): what stdin gives goes to the
 * connection one line at a time, at least TIME apart (the first at once),
 * for servers that drop fast input (iptables --limit, slow line parsers).
 * A pacer reads stdin and writes each line in its turn into a socketpair
 * whose other end the session's pump reads as if it were stdin: -C, -o,
 * --hex-dump, half-close and backpressure stay the pump's. ncat 7.93 waits
 * TIME before sending each read of stdin instead (from a pipe, many lines
 * at once; from a terminal a read is a line, the same as here). */
#define _GNU_SOURCE
#include "cli.h"
#include "os.h"

#include <stdlib.h>
#include <string.h>

/* what may wait unsent; a line longer than this goes in pieces */
#define PACE_CAP (64 * 1024)

static struct pacer {
    dx_loop *loop;
    int pair[2];            /* [0]: the pacer writes; [1]: the session's pump reads */
    dx_stream in, out;
    dx_timer timer;
    char buf[PACE_CAP];
    size_t len;
    int in_ended, sent_any, open;
    uint64_t last_ms, delay_ms;
} pc;

/* The bytes of the next line to send (its LF included), or 0 while the
 * line is still coming. */
static size_t next_line(void)
{
    const char *nl = memchr(pc.buf, '\n', pc.len);
    if (nl)
        return (size_t)(nl - pc.buf) + 1;
    return pc.in_ended || pc.len == PACE_CAP ? pc.len : 0;
}

static void pace(void)
{
    size_t n;
    while ((n = next_line()) > 0) {
        uint64_t now = dx_loop_now(pc.loop);
        if (pc.sent_any && now < pc.last_ms + pc.delay_ms) {
            if (!dx_timer_active(&pc.timer))
                dx_timer_start(pc.loop, &pc.timer, pc.last_ms + pc.delay_ms - now, 0);
            return;
        }
        if (dx_stream_room(&pc.out) < n)
            return; /* the drain event comes back here */
        if (dx_stream_write(&pc.out, pc.buf, n) < 0)
            return; /* the session is ending: the out event says why */
        memmove(pc.buf, pc.buf + n, pc.len - n);
        pc.len -= n;
        pc.sent_any = 1;
        pc.last_ms = now;
    }
    if (pc.in_ended && pc.len == 0 && !pc.out.shut_done && !pc.out.shut_pending)
        dx_stream_shutdown(&pc.out); /* the pump reads the end of input */
    else if (!pc.in_ended && pc.len <= PACE_CAP / 2 && !pc.in.reading)
        dx_stream_read_start(&pc.in);
}

static void on_timer(dx_loop *loop, dx_timer *t)
{
    (void)loop;
    (void)t;
    pace();
}

static void on_in_read(dx_stream *s, const char *data, size_t n)
{
    if (n == 0) {
        pc.in_ended = 1;
        dx_stream_read_stop(s);
    } else {
        /* each read is at most half of the queue cap (PACE_CAP), and reading
         * stops above half full: it fits */
        memcpy(pc.buf + pc.len, data, n);
        pc.len += n;
        if (pc.len > PACE_CAP / 2)
            dx_stream_read_stop(s);
    }
    pace();
}

static void on_in_event(dx_stream *s, int error)
{
    if (error < 0) {
        cli_error("read stdin: %s", dx_strerror(error));
        pc.in_ended = 1;
        dx_stream_read_stop(s);
    }
    pace();
}

static void on_out_event(dx_stream *s, int error)
{
    if (error < 0) {
        /* the session stopped reading the pair: nothing more to pace */
        dx_stream_close(s);
        dx_stream_close(&pc.in);
        dx_timer_stop(pc.loop, &pc.timer);
        return;
    }
    pace();
}

int cli_delay_open(dx_loop *loop, const struct options *o)
{
    memset(&pc, 0, sizeof pc);
    pc.loop = loop;
    pc.delay_ms = (uint64_t)o->delay_ms;
    int rc = dx__socketpair(pc.pair);
    if (rc < 0)
        return rc;
    rc = dx_set_nonblock(pc.pair[0], 1);
    if (rc >= 0)
        rc = dx_set_nonblock(pc.pair[1], 1);
    if (rc >= 0)
        rc = dx_stream_init(loop, &pc.in, cli_stdin_fd(), PACE_CAP, on_in_read, on_in_event, NULL);
    if (rc == 0) {
        rc = dx_stream_init(loop, &pc.out, pc.pair[0], PACE_CAP, NULL, on_out_event, NULL);
        if (rc < 0)
            dx_stream_close(&pc.in);
    }
    if (rc == 0)
        rc = dx_stream_read_start(&pc.in);
    if (rc < 0) {
        dx__sock_close(pc.pair[0]);
        dx__sock_close(pc.pair[1]);
        return rc;
    }
    dx_timer_init(&pc.timer, on_timer, NULL);
    pc.open = 1;
    return pc.pair[1];
}

void cli_delay_close(void)
{
    if (!pc.open)
        return;
    pc.open = 0;
    dx_timer_stop(pc.loop, &pc.timer);
    dx_stream_close(&pc.in);
    dx_stream_close(&pc.out);
    dx__sock_close(pc.pair[0]);
    dx__sock_close(pc.pair[1]);
}
