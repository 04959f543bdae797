/* progress.c: --progress: one status line on stderr, rewritten in place
 * (bytes each way, rate, elapsed, and percentage/ETA when the input size is
 * known, e.g. stdin redirected from a file). When stderr is not a terminal
 * (--progress=always into a log), plain lines instead: no carriage return or
 * escape sequence, one every PLAIN_EVERY_MS at most, and the final one. */
#define _GNU_SOURCE
#include "cli.h"

#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

#define PLAIN_EVERY_MS 5000

static void human(char *buf, size_t len, double v)
{
    static const char *const units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    int u = 0;
    while (v >= 1024.0 && u < 4) {
        v /= 1024.0;
        u++;
    }
    snprintf(buf, len, u ? "%.1f %s" : "%.0f %s", v, units[u]);
}

static void clock_text(char *buf, size_t len, uint64_t secs)
{
    if (secs >= 3600)
        snprintf(buf, len, "%llu:%02llu:%02llu", (unsigned long long)(secs / 3600),
                 (unsigned long long)(secs / 60 % 60), (unsigned long long)(secs % 60));
    else
        snprintf(buf, len, "%02llu:%02llu", (unsigned long long)(secs / 60), (unsigned long long)(secs % 60));
}

int progress_enabled(const struct options *o)
{
    return o->progress == PROGRESS_ALWAYS || (o->progress == PROGRESS_AUTO && isatty(STDERR_FILENO));
}

void progress_init(struct progress *p, uint64_t now_ms, int fd_in)
{
    struct stat st;
    p->start_ms = p->last_ms = now_ms;
    p->last_bytes = 0;
    p->rate = 0;
    p->total = 0;
    p->shown = 0;
    p->tty = isatty(STDERR_FILENO);
    p->line_ms = now_ms;
    if (fd_in >= 0 && fstat(fd_in, &st) == 0 && S_ISREG(st.st_mode)) {
#ifdef _WIN32
        /* the console bridge's thread has been reading the file ahead of
         * the loop since start-up: its offset says nothing; the whole file
         * it is (duplex < FILE) */
        off_t at = 0;
#else
        off_t at = lseek(fd_in, 0, SEEK_CUR);
#endif
        if (at >= 0 && st.st_size > at)
            p->total = (uint64_t)(st.st_size - at);
    }
}

void progress_show(struct progress *p, uint64_t now_ms, uint64_t sent, uint64_t received, int final)
{
    char s[32], r[32], rate[32], el[48], eta[48], pct[80] = "";
    uint64_t moved = sent + received;
    uint64_t dt = now_ms - p->last_ms;
    if (dt >= 250 || final) {
        /* a smoothed rate, so the line does not jump at every tick */
        double inst = dt ? (double)(moved - p->last_bytes) * 1000.0 / (double)dt : 0.0;
        p->rate = p->shown ? 0.7 * p->rate + 0.3 * inst : inst;
        p->last_ms = now_ms;
        p->last_bytes = moved;
    }
    uint64_t elapsed = now_ms - p->start_ms;
    if (final && elapsed)
        p->rate = (double)moved * 1000.0 / (double)elapsed;
    human(s, sizeof s, (double)sent);
    human(r, sizeof r, (double)received);
    human(rate, sizeof rate, p->rate);
    clock_text(el, sizeof el, elapsed / 1000);
    if (p->total) {
        double frac = (double)sent / (double)p->total;
        if (frac > 1.0)
            frac = 1.0;
        if (p->rate > 0 && sent < p->total) {
            clock_text(eta, sizeof eta, (uint64_t)((double)(p->total - sent) / p->rate));
            snprintf(pct, sizeof pct, " %3.0f%% ETA %s", frac * 100.0, eta);
        } else {
            snprintf(pct, sizeof pct, " %3.0f%%", frac * 100.0);
        }
    }
    if (!p->tty) {
        if (!final && now_ms - p->line_ms < PLAIN_EVERY_MS)
            return;
        p->line_ms = now_ms;
        fprintf(stderr, "duplex: sent %s, received %s, %s/s, %s%s\n", s, r, rate, el, pct);
        fflush(stderr);
        p->shown = 1;
        return;
    }
    fprintf(stderr, "\r\033[Kduplex: sent %s, received %s, %s/s, %s%s%s", s, r, rate, el, pct,
            final ? "\n" : "");
    fflush(stderr);
    p->shown = 1;
}
