/* cluster_frame.c: the text --cluster reads and writes, kept apart from the
 * Redis client (cluster.c) so that it builds everywhere and is fuzzed alone:
 * the redis:// URL of the command line, and the frames on the channel.
 *
 * A frame is "DX1 T NODEID SEQ\n" then the payload: T is M (a message: the
 * payload goes to every client, as the origin node formatted it) or H (a
 * heartbeat: no payload); NODEID, 16 hex digits drawn at start, tells a node
 * its own frames (never delivered twice) and SEQ, the origin's count of
 * messages published (a heartbeat repeats the last), lets a receiver count
 * what it missed while it was detached. */
#define _GNU_SOURCE
#include "cli.h"

#include <stdio.h>
#include <string.h>

static int hexval(int c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* Copy text[0..n) into out (room len), %XX decoded: 0, or -1 when it does
 * not fit or a %XX is malformed. */
static int unescape(const char *text, size_t n, char *out, size_t len)
{
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        int c = (unsigned char)text[i];
        if (c == '%') {
            if (i + 2 >= n)
                return -1;
            int h = hexval(text[i + 1]), l = hexval(text[i + 2]);
            if (h < 0 || l < 0 || h + l == 0)
                return -1; /* malformed, or %00: it would cut the C string short */
            c = h * 16 + l;
            i += 2;
        }
        if (o + 1 >= len)
            return -1;
        out[o++] = (char)c;
    }
    out[o] = '\0';
    return 0;
}

/* "?cacert=PATH" after the channel (rediss:// only): the CAs that sign
 * Redis's certificate, instead of the system store. */
static int parse_query(const char *q, struct cluster_url *u, const char **why)
{
    if (strncmp(q, "cacert=", 7) != 0 || strchr(q, '&')) {
        *why = "the one query known is ?cacert=PATH (rediss:// only)";
        return -1;
    }
    if (!u->tls) {
        *why = "?cacert= is for TLS to Redis: the URL is then rediss://";
        return -1;
    }
    if (!q[7] || unescape(q + 7, strlen(q + 7), u->cacert, sizeof u->cacert) < 0) {
        *why = "?cacert= names no file, or it is too long or has a malformed %XX";
        return -1;
    }
    return 0;
}

int cli_cluster_url_parse(const char *text, struct cluster_url *u, const char **why)
{
    memset(u, 0, sizeof *u);
    *why = NULL;
    const char *p;
    if (strncmp(text, "rediss://", 9) == 0) {
        u->tls = 1;
        p = text + 9;
    } else if (strncmp(text, "redis://", 8) == 0) {
        p = text + 8;
    } else {
        *why = "expected redis:// or rediss://[[USER]:PASSWORD@]HOST[:PORT]/CHANNEL";
        return -1;
    }
    const char *slash = strchr(p, '/');
    if (!slash || !slash[1] || slash[1] == '?') {
        *why = "the URL names no channel: redis://HOST[:PORT]/CHANNEL";
        return -1;
    }
    const char *query = strchr(slash + 1, '?'); /* a '?' of the channel is %3F */
    size_t cl = query ? (size_t)(query - slash - 1) : strlen(slash + 1);
    if (unescape(slash + 1, cl, u->channel, sizeof u->channel) < 0) {
        *why = "the channel is too long or has a malformed %XX";
        return -1;
    }
    if (query && parse_query(query + 1, u, why) < 0)
        return -1;
    const char *at = NULL; /* the last '@' before the path (a password may hold one) */
    for (const char *q = p; q < slash; q++)
        if (*q == '@')
            at = q;
    if (at) {
        const char *colon = memchr(p, ':', (size_t)(at - p));
        if (!colon) {
            *why = "credentials are [USER]:PASSWORD@ (a colon before the password)";
            return -1;
        }
        if (unescape(p, (size_t)(colon - p), u->user, sizeof u->user) < 0 ||
            unescape(colon + 1, (size_t)(at - colon - 1), u->pass, sizeof u->pass) < 0) {
            *why = "the user or password is too long or has a malformed %XX";
            return -1;
        }
        u->has_pass = 1;
        p = at + 1;
    }
    size_t hl = (size_t)(slash - p);
    char hostport[300];
    if (hl == 0 || hl >= sizeof hostport) {
        *why = "the URL names no host";
        return -1;
    }
    memcpy(hostport, p, hl);
    hostport[hl] = '\0';
    const char *host = hostport, *port = "6379";
    if (hostport[0] == '[') {
        char *close = strchr(hostport, ']');
        if (!close || (close[1] && close[1] != ':')) {
            *why = "a bracketed IPv6 host is [ADDR] or [ADDR]:PORT";
            return -1;
        }
        *close = '\0';
        host = hostport + 1;
        if (close[1] == ':')
            port = close + 2;
    } else {
        char *colon = strrchr(hostport, ':');
        if (colon && memchr(hostport, ':', (size_t)(colon - hostport))) {
            *why = "an IPv6 host goes in brackets: redis://[::1]:6379/CHANNEL";
            return -1;
        }
        if (colon) {
            *colon = '\0';
            port = colon + 1;
        }
    }
    if (!*host || strlen(host) >= sizeof u->host) {
        *why = "the URL names no host";
        return -1;
    }
    int pn = dx_parse_port(port);
    if (pn <= 0) {
        *why = "the port is not a number from 1 to 65535";
        return -1;
    }
    strcpy(u->host, host);
    snprintf(u->port, sizeof u->port, "%d", pn);
    return 0;
}

size_t cli_cluster_frame_head(char *out, size_t len, int type, const char *node, uint64_t seq)
{
    int n = snprintf(out, len, "DX1 %c %s %llu\n", type, node, (unsigned long long)seq);
    return n < 0 || (size_t)n >= len ? 0 : (size_t)n;
}

int cli_cluster_frame_parse(const char *buf, size_t n, struct cluster_frame *f)
{
    /* "DX1 T " + 16 hex + " " + 1..20 digits + "\n" */
    if (n < 6 + CLUSTER_ID_LEN + 3 || memcmp(buf, "DX1 ", 4) != 0 || buf[5] != ' ')
        return -1;
    f->type = (unsigned char)buf[4];
    if (f->type != CLUSTER_MSG && f->type != CLUSTER_BEAT)
        return -1;
    /* the canonical form only (what cli_cluster_frame_head writes):
     * lower-case hex, no leading zero */
    for (int i = 0; i < CLUSTER_ID_LEN; i++) {
        char c = buf[6 + i];
        if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f')))
            return -1;
        f->node[i] = buf[6 + i];
    }
    f->node[CLUSTER_ID_LEN] = '\0';
    size_t i = 6 + CLUSTER_ID_LEN;
    if (buf[i++] != ' ')
        return -1;
    uint64_t seq = 0;
    size_t digits = 0;
    for (; i < n && buf[i] >= '0' && buf[i] <= '9'; i++, digits++) {
        if (digits == 19)
            return -1; /* a count far beyond what a node publishes */
        seq = seq * 10 + (uint64_t)(buf[i] - '0');
    }
    if (digits == 0 || i >= n || buf[i] != '\n' || (digits > 1 && buf[i - digits] == '0'))
        return -1;
    f->seq = seq;
    f->payload = buf + i + 1;
    f->n = n - i - 1;
    if (f->type == CLUSTER_BEAT && f->n != 0)
        return -1;
    return 0;
}
