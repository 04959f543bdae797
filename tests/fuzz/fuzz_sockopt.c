/* fuzz_sockopt.c: -O option values. dx_sockopt_parse on the input (one
 * string, up to the first NUL); for a parsed option, dx_sockopt_format and
 * dx_sockopt_describe/name must work and "KEY=formatted" (and
 * "NAME=formatted") must parse back to the same option and value. No socket
 * is touched. */
#define _GNU_SOURCE
#include "duplex.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define CHECK(cond) do { if (!(cond)) abort(); } while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int nopts(void)
{
    static int n = -1;
    if (n < 0)
        for (n = 0; dx_sockopt_describe(n); n++)
            ;
    return n;
}

static void same_value(const dx_sockopt *a, const dx_sockopt *b)
{
    CHECK(a->id == b->id);
    if (dx_sockopt_describe(a->id)->type == DX_SOCKOPT_STRING)
        CHECK(strcmp(a->value.str, b->value.str) == 0);
    else
        CHECK(a->value.num == b->value.num);
}

static void reparse(const char *name, const dx_sockopt *opt, const char *value)
{
    char text[128];
    snprintf(text, sizeof text, "%s=%s", name, value);
    dx_sockopt again;
    CHECK(dx_sockopt_parse(text, &again) == 0);
    same_value(opt, &again);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char s[257];
    size_t n = strnlen((const char *)data, size < 256 ? size : 256);
    memcpy(s, data, n);
    s[n] = '\0';

    dx_sockopt opt;
    int rc = dx_sockopt_parse(s, &opt);
    CHECK(rc == 0 || rc == -ENOENT || rc == -EINVAL || rc == -ERANGE);
    size_t nlen = strcspn(s, "=");
    int id = dx_sockopt_lookup(s, nlen);
    if (rc == -ENOENT) {
        CHECK(opt.id == -1 && id == -ENOENT);
        return 0;
    }
    CHECK(opt.id >= 0 && opt.id < nopts() && opt.id == id);
    const dx_sockopt_desc *d = dx_sockopt_describe(opt.id);
    CHECK(d && d->name && d->key && d->expects && d->min <= d->max);
    CHECK(dx_sockopt_name(opt.id) == d->name);
    CHECK(strncasecmp(s, d->name, nlen) == 0 || strncasecmp(s, d->key, nlen) == 0);
    CHECK(dx_sockopt_lookup(d->name, strlen(d->name)) == opt.id);
    CHECK(dx_sockopt_lookup(d->key, strlen(d->key)) == opt.id);

    char value[64];
    dx_sockopt_format(&opt, value, sizeof value); /* also after a failed parse */
    CHECK(memchr(value, '\0', sizeof value) != NULL);
    if (rc != 0)
        return 0;

    switch (d->type) {
    case DX_SOCKOPT_BOOL:
        CHECK(opt.value.num == 0 || opt.value.num == 1);
        break;
    case DX_SOCKOPT_LINGER:
        CHECK(opt.value.num == -1 || (opt.value.num >= d->min && opt.value.num <= d->max));
        break;
    case DX_SOCKOPT_STRING: {
        size_t len = strnlen(opt.value.str, sizeof opt.value.str);
        CHECK(len < sizeof opt.value.str);
        CHECK((long long)len >= d->min && (long long)len <= d->max);
        break;
    }
    default:
        CHECK(opt.value.num >= d->min && opt.value.num <= d->max);
    }
    reparse(d->key, &opt, value);
    reparse(d->name, &opt, value);

    /* small buffers: terminated, a prefix of the full text, never overrun */
    for (size_t len = 0; len < 8; len++) {
        char small[8];
        memset(small, 'x', sizeof small);
        dx_sockopt_format(&opt, small, len);
        if (len) {
            CHECK(memchr(small, '\0', len) != NULL);
            CHECK(strncmp(small, value, len - 1) == 0);
        }
        for (size_t i = len; i < sizeof small; i++)
            CHECK(small[i] == 'x');
    }
    /* an id out of range is described as nothing and formatted as "?" */
    dx_sockopt bad = opt;
    bad.id = nopts();
    CHECK(!dx_sockopt_describe(bad.id) && !dx_sockopt_name(bad.id) && !dx_sockopt_describe(-1));
    CHECK(strcmp(dx_sockopt_format(&bad, value, sizeof value), "?") == 0);
    return 0;
}
