/* filters.c: what -C (--crlf), --hex-dump and -o (--output) do to the bytes
 * of a session, as dx_pump filters: the pumps then copy through user space
 * instead of splicing. */
#define _GNU_SOURCE
#include "cli.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

struct dump_dir {
    FILE *file;
    char mark;          /* '>' sent, '<' received */
    unsigned long long offset;
    int last_was_cr;    /* -C: a CR ended the previous chunk */
    int crlf;
    int telnet;         /* -t: the received side goes through telnet.c */
};

static struct dump_dir up_dir = {.mark = '>'}, down_dir = {.mark = '<'};
/* -o: both directions as they pass, one file (as ncat -o); the session
 * runs on one event loop, so the chunks keep the order they moved in */
static FILE *output_file;

/* One hexdump -C style line per 16 bytes, the direction first: a chunk
 * starts a new line, so the lines also show how the bytes arrived. */
static void dump(struct dump_dir *d, const char *data, size_t n)
{
    const unsigned char *p = (const unsigned char *)data;
    for (size_t at = 0; at < n; at += 16) {
        size_t k = n - at < 16 ? n - at : 16;
        char line[100];
        int len = snprintf(line, sizeof line, "%c %08llx ", d->mark, d->offset + at);
        for (size_t i = 0; i < 16; i++) {
            if (i == 8)
                line[len++] = ' ';
            if (i < k)
                len += snprintf(line + len, sizeof line - (size_t)len, " %02x", p[at + i]);
            else
                len += snprintf(line + len, sizeof line - (size_t)len, "   ");
        }
        len += snprintf(line + len, sizeof line - (size_t)len, "  |");
        for (size_t i = 0; i < k; i++)
            line[len++] = p[at + i] >= 0x20 && p[at + i] < 0x7f ? (char)p[at + i] : '.';
        line[len++] = '|';
        line[len++] = '\n';
        fwrite(line, 1, (size_t)len, d->file);
    }
    d->offset += n;
    fflush(d->file); /* readable while the session runs (tail -f) */
}

size_t cli_crlf(const char *in, size_t n, char *out, int *last_was_cr)
{
    size_t m = 0;
    if (n == 0)
        return 0;
    /* a lone LF becomes CRLF; an existing CRLF stays as it is */
    for (size_t i = 0; i < n; i++) {
        int prev_cr = i ? in[i - 1] == '\r' : *last_was_cr;
        if (in[i] == '\n' && !prev_cr)
            out[m++] = '\r';
        out[m++] = in[i];
    }
    *last_was_cr = in[n - 1] == '\r';
    return m;
}

/* -t: the Telnet answers go out beside the up pump: logged as sent */
static struct cli_telnet telnet;

static void log_out(struct dump_dir *d, const char *bytes, size_t n)
{
    if (d->file)
        dump(d, bytes, n);
    if (output_file && n) {
        fwrite(bytes, 1, n, output_file);
        fflush(output_file);
    }
}

static void telnet_sent(void *data, const char *bytes, size_t n) { log_out(data, bytes, n); }

static size_t filter(dx_pump *p, const char *in, size_t n, char *out)
{
    struct dump_dir *d = p->filter_data;
    size_t m = 0;
    if (d == &down_dir && d->telnet) {
        log_out(d, in, n); /* what arrived, commands included */
        return cli_telnet_filter(&telnet, p->src->fd, in, n, out);
    }
    if (d->crlf) {
        m = cli_crlf(in, n, out, &d->last_was_cr);
    } else {
        memcpy(out, in, n);
        m = n;
    }
    log_out(d, out, m);
    return m;
}

/* --append-output: add to the files instead of truncating them (ncat) */
int cli_filters_open(const struct options *o)
{
    if (o->output) {
        /* binary: the C runtime on Windows would turn LF into CRLF */
        output_file = fopen(o->output, o->append_output ? "ab" : "wb");
        if (!output_file) {
            cli_error("-o %s: %s", o->output, strerror(errno));
            return EXIT_USAGE;
        }
    }
    if (!o->hex_dump)
        return 0;
    FILE *f = strcmp(o->hex_dump, "-") == 0 ? stderr
                                            : fopen(o->hex_dump, o->append_output ? "a" : "w");
    if (!f) {
        cli_error("--hex-dump %s: %s", o->hex_dump, strerror(errno));
        return EXIT_USAGE;
    }
    up_dir.file = down_dir.file = f;
    return 0;
}

void cli_filters_attach(const struct options *o, dx_pump *up, dx_pump *down)
{
    up_dir.crlf = o->crlf;
    down_dir.telnet = o->telnet;
    memset(&telnet, 0, sizeof telnet);
    telnet.sent = telnet_sent;
    telnet.sent_data = &up_dir;
    if (up && cli_filters_active(o)) {
        up->filter = filter;
        up->filter_data = &up_dir;
    }
    if (down && (o->hex_dump || o->output || o->telnet)) {
        down->filter = filter;
        down->filter_data = &down_dir;
    }
}

int cli_filters_active(const struct options *o)
{
    return o->crlf || o->hex_dump || o->output || o->telnet;
}
