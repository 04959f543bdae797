/* relay_targets.c: `duplex relay LISTEN TARGET1 TARGET2...`: which target a
 * client tries first (--balance), the failover order after it, down marks. */
#define _GNU_SOURCE
#include "cli.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int cli_balance_parse(const char *text)
{
    static const char *const names[] = {"first", "roundrobin", "leastconn"};
    for (int i = 0; i < 3; i++)
        if (strcmp(text, names[i]) == 0)
            return i;
    return -1;
}

static int resolve_one(struct relay_target *t, const struct options *o, const struct relay_target_arg *a)
{
    if (a->unix_path) {
        t->addrs = calloc(1, sizeof *t->addrs);
        int rc = t->addrs ? dx_addr_unix(t->addrs, a->unix_path) : -ENOMEM;
        if (rc < 0) {
            cli_error("relay target %s: %s", a->unix_path, dx_strerror(rc));
            return rc == DX_ETOOLONG ? EXIT_USAGE : EXIT_IO;
        }
        t->naddrs = 1;
        snprintf(t->name, sizeof t->name, "%s", a->unix_path);
        return 0;
    }
    int flags = o->numeric ? DX_RESOLVE_NUMERIC : 0;
    t->naddrs = dx_resolve(a->host, a->port, o->family, flags, &t->addrs);
    if (t->naddrs < 0) {
        cli_error("resolve %s: %s", a->host, dx_strerror(t->naddrs));
        return cli_exit_code_for(t->naddrs, 1);
    }
    dx_addr_format(&t->addrs[0], t->name, sizeof t->name);
    return 0;
}

int relay_targets_open(struct relay_targets *ts, const struct options *o)
{
    memset(ts, 0, sizeof *ts);
    ts->o = o;
    for (int i = 0; i < o->ntargets; i++) {
        int code = resolve_one(&ts->t[i], o, &o->targets[i]);
        if (code) {
            relay_targets_close(ts);
            return code;
        }
        ts->n = i + 1;
    }
    return 0;
}

void relay_targets_close(struct relay_targets *ts)
{
    for (int i = 0; i < MAX_TARGETS; i++) {
        free(ts->t[i].addrs);
        ts->t[i].addrs = NULL;
    }
    ts->n = 0;
}

/* Up: never failed, or its --down-time is over (then it is tried again). */
static int is_up(const struct relay_target *t, uint64_t now)
{
    return !t->down || now >= t->down_until;
}

int relay_targets_order(struct relay_targets *ts, uint64_t now, unsigned char *order)
{
    int n = ts->n, first = -1;
    int balance = ts->o->balance;
    /* the choice: the first target up (first), the first up at or after
     * the turn (roundrobin), the fewest connections, ties taken in turn
     * (leastconn, as haproxy) */
    int start = balance == BALANCE_FIRST ? 0 : ts->next % n;
    for (int k = 0; k < n; k++) {
        int i = (start + k) % n;
        if (!is_up(&ts->t[i], now))
            continue;
        if (first < 0 || (balance == BALANCE_LEASTCONN && ts->t[i].active < ts->t[first].active))
            first = i;
        if (balance != BALANCE_LEASTCONN)
            break;
    }
    int m = 0;
    if (first >= 0) {
        ts->next = (first + 1) % n;
        /* failover: the other targets up, in order after the choice */
        for (int k = 0; k < n; k++) {
            int i = (first + k) % n;
            if (is_up(&ts->t[i], now))
                order[m++] = (unsigned char)i;
        }
    }
    /* last, those marked down, in the order given: a mark is a guess, and a
     * target back early then takes the client (nginx does the same when
     * every server is marked failed) */
    for (int i = 0; i < n; i++)
        if (!is_up(&ts->t[i], now))
            order[m++] = (unsigned char)i;
    return m;
}

void relay_target_failed(struct relay_targets *ts, int i, uint64_t now, int code)
{
    struct relay_target *t = &ts->t[i];
    int64_t ms = ts->o->down_time_ms;
    if (ts->n == 1)
        return; /* nothing to skip to: every client tries it */
    t->down_until = now + (uint64_t)ms;
    if (!t->down)
        cli_info(ts->o, "target %s down (%s): skipped for %g s", t->name, dx_strerror(code),
                 (double)ms / 1000.0);
    t->down = 1;
}

void relay_target_ok(struct relay_targets *ts, int i, int failed_over)
{
    struct relay_target *t = &ts->t[i];
    /* the turn goes on after the target that took the client, not after
     * the one chosen first that failed (which would take two turns) */
    if (failed_over)
        ts->next = (i + 1) % ts->n;
    if (t->down)
        cli_info(ts->o, "target %s up", t->name);
    t->down = 0;
}
