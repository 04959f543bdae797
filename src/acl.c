/* acl.c: allow/deny lists of IPv4/IPv6 networks (CIDR), for servers that
 * refuse clients by address. IPv4-mapped IPv6 peers (dual-stack sockets)
 * are matched as the IPv4 addresses they are, and rules written as mapped
 * addresses (::ffff:10.0.0.0/104) are stored as the IPv4 ones (10.0.0.0/8),
 * so that both sides are compared in the same form. */
#define _GNU_SOURCE
#include "os.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The first 12 bytes of an IPv4-mapped IPv6 address (::ffff:a.b.c.d). */
static const unsigned char v4mapped_prefix[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};

int dx_cidr_parse(dx_cidr *out, const char *text)
{
    char buf[INET6_ADDRSTRLEN + 8];
    memset(out, 0, sizeof *out);
    if (!text || strlen(text) >= sizeof buf)
        return DX_EBADADDR;
    strcpy(buf, text);
    char *slash = strchr(buf, '/');
    if (slash)
        *slash = '\0';
    int bits;
    if (inet_pton(AF_INET, buf, out->addr) == 1) {
        out->family = AF_INET;
        bits = 32;
    } else if (inet_pton(AF_INET6, buf, out->addr) == 1) {
        out->family = AF_INET6;
        bits = 128;
    } else {
        return DX_EBADADDR;
    }
    out->prefix = bits;
    if (slash) {
        const char *p = slash + 1;
        if (!*p || strlen(p) > 3)
            return DX_EBADADDR;
        int v = 0;
        for (; *p; p++) {
            if (!isdigit((unsigned char)*p))
                return DX_EBADADDR;
            v = v * 10 + (*p - '0');
        }
        if (v > bits)
            return DX_EBADADDR;
        out->prefix = v;
    }
    /* ::ffff:a.b.c.d/96+N is a.b.c.d/N. Shorter than /96 it would also
     * cover IPv6 addresses that are not IPv4 ones: refused as ambiguous
     * rather than guessed at (checked before the host bits are cleared,
     * which would make it a plain IPv6 rule). */
    if (out->family == AF_INET6 && memcmp(out->addr, v4mapped_prefix, sizeof v4mapped_prefix) == 0) {
        if (out->prefix < 96)
            return DX_EBADADDR;
        memmove(out->addr, out->addr + 12, 4);
        memset(out->addr + 4, 0, 12);
        out->family = AF_INET;
        out->prefix -= 96;
        bits = 32;
    }
    /* clear host bits so that 10.1.2.3/8 means 10.0.0.0/8 */
    for (int i = 0; i < bits / 8; i++) {
        int keep = out->prefix - i * 8;
        if (keep >= 8)
            continue;
        out->addr[i] &= keep <= 0 ? 0 : (unsigned char)(0xff << (8 - keep));
    }
    return 0;
}

/* The address bytes of a, with IPv4-mapped IPv6 unwrapped to IPv4. */
static int addr_bytes(const dx_addr *a, const unsigned char **bytes)
{
    const struct sockaddr *sa = (const struct sockaddr *)&a->ss;
    if (sa->sa_family == AF_INET) {
        *bytes = (const unsigned char *)&((const struct sockaddr_in *)sa)->sin_addr;
        return AF_INET;
    }
    if (sa->sa_family == AF_INET6) {
        const struct in6_addr *in6 = &((const struct sockaddr_in6 *)sa)->sin6_addr;
        if (IN6_IS_ADDR_V4MAPPED(in6)) {
            *bytes = in6->s6_addr + 12;
            return AF_INET;
        }
        *bytes = in6->s6_addr;
        return AF_INET6;
    }
    return -1;
}

int dx_cidr_match(const dx_cidr *net, const dx_addr *a)
{
    const unsigned char *b = NULL;
    if (addr_bytes(a, &b) != net->family)
        return 0;
    int full = net->prefix / 8, rest = net->prefix % 8;
    if (memcmp(b, net->addr, (size_t)full) != 0)
        return 0;
    if (rest == 0)
        return 1;
    unsigned char mask = (unsigned char)(0xff << (8 - rest));
    return (b[full] & mask) == net->addr[full];
}

int dx_acl_add(dx_acl *acl, const char *rule, int allow)
{
    dx_cidr c;
    int rc = dx_cidr_parse(&c, rule);
    if (rc < 0)
        return rc;
    dx_cidr **list = allow ? &acl->allow : &acl->deny;
    size_t *n = allow ? &acl->nallow : &acl->ndeny;
    size_t *cap = allow ? &acl->capallow : &acl->capdeny;
    if (*n == *cap) {
        size_t ncap = *cap ? *cap * 2 : 8;
        dx_cidr *l = realloc(*list, ncap * sizeof *l);
        if (!l)
            return -ENOMEM;
        *list = l;
        *cap = ncap;
    }
    (*list)[(*n)++] = c;
    return 0;
}

/* Whitespace between rules, as isspace() in the C locale. */
#define RULE_SEPARATORS " \t\n\v\f\r"

/* A rule file read word by word: one line at a time (however long: a
 * fixed buffer would cut a long comment and read its tail as a rule), cut
 * into words in place. */
struct dx_acl_file {
    FILE *f;
    char *line;       /* the current line, comment cut off */
    size_t cap;
    char *save;       /* strtok_r's place in line */
    int in_line;      /* words of line remain to be looked at */
    int lineno;       /* 1-based number of line */
    int error;        /* once set, every later call returns it */
};

dx_acl_file *dx_acl_file_open(const char *path, int *err)
{
    dx_acl_file *r = calloc(1, sizeof *r);
    int e = -ENOMEM;
    if (r && (r->f = fopen(path, DX_FOPEN_READ)) != NULL)
        return r;
    if (r)
        e = -errno;
    free(r);
    if (err)
        *err = e;
    return NULL;
}

int dx_acl_file_next(dx_acl_file *r, const char **word, int *line)
{
    while (!r->error) {
        char *w = r->in_line ? strtok_r(NULL, RULE_SEPARATORS, &r->save) : NULL;
        if (w) {
            *word = w;
            if (line)
                *line = r->lineno;
            return 1;
        }
        r->in_line = 0;
        errno = 0;
        ssize_t len = dx__getline(&r->line, &r->cap, r->f);
        if (len < 0) {
            if (feof(r->f))
                return 0;
            r->error = errno ? -errno : -EIO; /* a read error, or no memory for the line */
            break;
        }
        r->lineno++;
        if (memchr(r->line, '\0', (size_t)len)) {
            r->error = DX_EBADADDR; /* what follows a NUL would be lost unseen */
            break;
        }
        char *hash = strchr(r->line, '#');
        if (hash)
            *hash = '\0';
        w = strtok_r(r->line, RULE_SEPARATORS, &r->save);
        if (w) {
            r->in_line = 1;
            *word = w;
            if (line)
                *line = r->lineno;
            return 1;
        }
    }
    if (line)
        *line = r->lineno;
    return r->error;
}

void dx_acl_file_close(dx_acl_file *r)
{
    if (!r)
        return;
    free(r->line);
    fclose(r->f);
    free(r);
}

int dx_acl_add_file(dx_acl *acl, const char *path, int allow, int *bad_line)
{
    int rc = 0;
    dx_acl_file *r = dx_acl_file_open(path, &rc);
    if (!r)
        return rc;
    /* all of the file or none of it: a bad line undoes the rules before it */
    size_t nallow = acl->nallow, ndeny = acl->ndeny;
    const char *word;
    int line = 0, count = 0;
    while ((rc = dx_acl_file_next(r, &word, &line)) > 0 &&
           (rc = dx_acl_add(acl, word, allow)) == 0)
        count++;
    dx_acl_file_close(r);
    if (rc == DX_EBADADDR && bad_line)
        *bad_line = line;
    if (rc < 0) {
        acl->nallow = nallow;
        acl->ndeny = ndeny;
        return rc;
    }
    return count;
}

int dx_acl_allows(const dx_acl *acl, const dx_addr *a)
{
    if (((const struct sockaddr *)&a->ss)->sa_family == AF_UNIX)
        return 1;
    for (size_t i = 0; i < acl->ndeny; i++)
        if (dx_cidr_match(&acl->deny[i], a))
            return 0;
    if (acl->nallow == 0)
        return 1;
    for (size_t i = 0; i < acl->nallow; i++)
        if (dx_cidr_match(&acl->allow[i], a))
            return 1;
    return 0;
}

void dx_acl_free(dx_acl *acl)
{
    free(acl->allow);
    free(acl->deny);
    memset(acl, 0, sizeof *acl);
}
