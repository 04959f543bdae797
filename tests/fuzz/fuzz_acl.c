/* fuzz_acl.c: dx_acl_add_file on the input written to a file (one temp file
 * per process, rewritten each run), as an allow list and as a deny list,
 * checked against a reference reader of the same grammar: lines of any
 * length, '#' to the end of the line a comment, rules separated by
 * whitespace, each parsed here on its own (inet_pton, a 1-3 digit prefix
 * no longer than the address, ::ffff:a.b.c.d/96+N as a.b.c.d/N, host bits
 * cleared); the first bad word (or a NUL byte) fails the file at its line and
 * adds nothing. Then dx_acl_allows is checked against a bit-by-bit match of
 * the reference's rules, an IPv4-mapped IPv6 peer matched as IPv4 like acl.c
 * does, and no rule left in the mapped form (those are stored as IPv4).
 * Last, the input's first half (to a line end) as an allow file and the rest
 * as a deny file in one list: a peer any deny rule matches is refused even
 * when an allow rule matches too (deny wins). */
#define _GNU_SOURCE
#include "duplex.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/un.h>
#include <unistd.h>

#define CHECK(cond) do { if (!(cond)) abort(); } while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* every rule of a 64 KiB file fits ("::" and a separator: 3 bytes) */
#define MAX_RULES (64 * 1024 / 3 + 1)

static char paths[2][64];
static const unsigned char v4mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};

static void cleanup(void)
{
    for (int i = 0; i < 2; i++)
        if (paths[i][0])
            unlink(paths[i]);
}

static int write_file(int which, const uint8_t *data, size_t size)
{
    char *path = paths[which];
    if (!path[0]) {
        snprintf(path, sizeof paths[0], "/tmp/duplex-fuzz-acl-XXXXXX");
        int fd = mkstemp(path);
        if (fd < 0)
            abort();
        close(fd);
        if (which == 0)
            atexit(cleanup);
    }
    FILE *f = fopen(path, "w");
    if (!f)
        abort();
    if (size && fwrite(data, 1, size, f) != size)
        abort();
    fclose(f);
    return 0;
}

/* One rule, parsed without acl.c: 0 with *c set, or -1. */
static int ref_cidr(dx_cidr *c, const char *word)
{
    char a[64];
    const char *slash = strchr(word, '/');
    size_t alen = slash ? (size_t)(slash - word) : strlen(word);
    if (alen >= sizeof a)
        return -1;
    memcpy(a, word, alen);
    a[alen] = '\0';
    memset(c, 0, sizeof *c);
    int bits;
    if (inet_pton(AF_INET, a, c->addr) == 1)
        c->family = AF_INET, bits = 32;
    else if (inet_pton(AF_INET6, a, c->addr) == 1)
        c->family = AF_INET6, bits = 128;
    else
        return -1;
    int prefix = bits;
    if (slash) {
        const char *p = slash + 1;
        size_t l = strlen(p);
        if (l < 1 || l > 3 || strspn(p, "0123456789") != l || atoi(p) > bits)
            return -1;
        prefix = atoi(p);
    }
    if (c->family == AF_INET6 && memcmp(c->addr, v4mapped, 12) == 0) {
        if (prefix < 96)
            return -1; /* it would cover non-IPv4 addresses too */
        memmove(c->addr, c->addr + 12, 4);
        memset(c->addr + 4, 0, 12);
        c->family = AF_INET;
        prefix -= 96;
    }
    c->prefix = prefix;
    for (int i = prefix; i < 128; i++)
        c->addr[i / 8] &= (unsigned char)~(0x80 >> (i % 8));
    return 0;
}

/* The reference reader: the rules of data[0..size) into out (at most max;
 * the count is returned even past max), or -line of the first bad one. */
static long ref_read(const uint8_t *data, size_t size, dx_cidr *out, size_t max)
{
    long count = 0, line = 1;
    size_t i = 0;
    while (i < size) {
        size_t end = i;
        while (end < size && data[end] != '\n')
            end++;
        int comment = 0;
        for (size_t j = i; j < end;) {
            if (data[j] == '\0')
                return -line;
            if (comment || isspace(data[j])) {
                j++;
                continue;
            }
            if (data[j] == '#') {
                comment = 1;
                continue;
            }
            size_t w = j;
            while (w < end && data[w] != '#' && data[w] != '\0' && !isspace(data[w]))
                w++;
            char word[128];
            dx_cidr c;
            if (w - j >= sizeof word)
                return -line; /* longer than any rule */
            memcpy(word, data + j, w - j);
            word[w - j] = '\0';
            if (ref_cidr(&c, word) != 0)
                return -line;
            if ((size_t)count < max)
                out[count] = c;
            count++;
            j = w;
        }
        i = end + 1;
        line++;
    }
    return count;
}

static int ref_match(const dx_cidr *net, int family, const unsigned char *bytes)
{
    if (family != net->family)
        return 0;
    for (int i = 0; i < net->prefix; i++) {
        int bit = 0x80 >> (i % 8);
        if ((bytes[i / 8] & bit) != (net->addr[i / 8] & bit))
            return 0;
    }
    return 1;
}

static void make_addr(dx_addr *a, int family, const unsigned char *bytes)
{
    memset(a, 0, sizeof *a);
    if (family == AF_INET) {
        struct sockaddr_in *in4 = (struct sockaddr_in *)&a->ss;
        in4->sin_family = AF_INET;
        memcpy(&in4->sin_addr, bytes, 4);
        a->len = sizeof *in4;
    } else {
        struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&a->ss;
        in6->sin6_family = AF_INET6;
        memcpy(&in6->sin6_addr, bytes, 16);
        a->len = sizeof *in6;
    }
}

/* The reference decision for a peer (family, bytes: IPv4-mapped already
 * unwrapped): deny rules first, then the allow list (empty: all allowed). */
static int ref_allows(const dx_cidr *allow, long nallow, const dx_cidr *deny, long ndeny, int family,
                      const unsigned char *bytes)
{
    for (long i = 0; i < ndeny; i++)
        if (ref_match(&deny[i], family, bytes))
            return 0;
    if (nallow <= 0)
        return 1;
    for (long i = 0; i < nallow; i++)
        if (ref_match(&allow[i], family, bytes))
            return 1;
    return 0;
}

/* dx_acl_allows on family/bytes (and, for IPv4, the same address seen as
 * IPv4-mapped on a dual-stack socket) against the reference. */
static void check_peer(const dx_acl *acl, const dx_cidr *allow, long nallow, const dx_cidr *deny, long ndeny,
                       int family, const unsigned char *bytes)
{
    dx_addr a;
    make_addr(&a, family, bytes);
    int mapped = family == AF_INET6 && memcmp(bytes, v4mapped, 12) == 0;
    int expect = ref_allows(allow, nallow, deny, ndeny, mapped ? AF_INET : family, mapped ? bytes + 12 : bytes);
    CHECK(dx_acl_allows(acl, &a) == expect);
    if (family == AF_INET) {
        unsigned char m[16];
        memcpy(m, v4mapped, 12);
        memcpy(m + 12, bytes, 4);
        make_addr(&a, AF_INET6, m);
        CHECK(dx_acl_allows(acl, &a) == expect);
    }
}

/* The input split: its first half, to the end of that line, allows; the
 * rest denies; both in one list. */
static void check_mixed(const uint8_t *data, size_t size)
{
    static dx_cidr allow[MAX_RULES], deny[MAX_RULES];
    size_t split = size / 2;
    while (split < size && data[split] != '\n')
        split++;
    write_file(0, data, split);
    write_file(1, data + split, size - split);
    long na = ref_read(data, split, allow, MAX_RULES);
    long nd = ref_read(data + split, size - split, deny, MAX_RULES);
    dx_acl acl = {0};
    int bad;
    int ra = dx_acl_add_file(&acl, paths[0], 1, &bad);
    int rd = dx_acl_add_file(&acl, paths[1], 0, &bad);
    CHECK(ra == (na < 0 ? DX_EBADADDR : na) && rd == (nd < 0 ? DX_EBADADDR : nd));
    na = na < 0 ? 0 : na; /* a bad file adds nothing */
    nd = nd < 0 ? 0 : nd;
    CHECK(acl.nallow == (size_t)na && acl.ndeny == (size_t)nd);
    /* probes: rules of both lists (where they overlap, deny must win), and
     * addresses from the input's bytes */
    for (long i = 0; i < na && i < 8; i++)
        check_peer(&acl, allow, na, deny, nd, allow[i].family, allow[i].addr);
    for (long i = 0; i < nd && i < 8; i++) {
        check_peer(&acl, allow, na, deny, nd, deny[i].family, deny[i].addr);
        dx_addr a;
        make_addr(&a, deny[i].family, deny[i].addr);
        CHECK(dx_acl_allows(&acl, &a) == 0); /* its own network is denied */
    }
    unsigned char probe[16] = {0};
    for (size_t off = 0; off < size && off < 64; off += 16) {
        memcpy(probe, data + off, size - off < 16 ? size - off : 16);
        check_peer(&acl, allow, na, deny, nd, AF_INET, probe);
        check_peer(&acl, allow, na, deny, nd, AF_INET6, probe);
    }
    dx_acl_free(&acl);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > 64 * 1024)
        return 0;
    write_file(0, data, size);

    static dx_cidr want[MAX_RULES];
    long expect_rc = ref_read(data, size, want, MAX_RULES);
    for (int allow = 0; allow <= 1; allow++) {
        dx_acl acl = {0};
        int bad = -5;
        int rc = dx_acl_add_file(&acl, paths[0], allow, &bad);
        CHECK(rc >= 0 || rc == DX_EBADADDR);
        if (rc >= 0) {
            CHECK(rc == expect_rc);
            CHECK(bad == -5); /* only set for a bad rule */
            CHECK((size_t)rc == (allow ? acl.nallow : acl.ndeny));
            CHECK((allow ? acl.ndeny : acl.nallow) == 0);
        } else {
            CHECK(expect_rc < 0 && bad == -expect_rc);
            CHECK(bad >= 1 && (size_t)bad <= size + 1);
            CHECK(acl.nallow == 0 && acl.ndeny == 0); /* nothing of a bad file */
        }
        size_t n = allow ? acl.nallow : acl.ndeny;
        const dx_cidr *rules = allow ? acl.allow : acl.deny;
        for (size_t i = 0; i < n; i++) {
            CHECK(rules[i].family == AF_INET || rules[i].family == AF_INET6);
            CHECK(rules[i].prefix >= 0 && rules[i].prefix <= (rules[i].family == AF_INET ? 32 : 128));
            /* mapped rules are stored as the IPv4 ones they name */
            CHECK(rules[i].family == AF_INET || memcmp(rules[i].addr, v4mapped, 12) != 0);
            CHECK(memcmp(&rules[i], &want[i], sizeof want[i]) == 0);
        }
        /* probes: each rule's own network address, and a few input bytes */
        unsigned char probe[16] = {0};
        memcpy(probe, data, size < 16 ? size : 16);
        size_t nprobes = n < 8 ? n : 8;
        for (size_t k = 0; k < nprobes + 2; k++) {
            int family = k < nprobes ? rules[k].family : (k == nprobes ? AF_INET : AF_INET6);
            const unsigned char *bytes = k < nprobes ? rules[k].addr : probe;
            dx_addr a;
            make_addr(&a, family, bytes);
            /* an IPv4-mapped IPv6 peer (a dual-stack socket's IPv4 client)
             * is matched as the IPv4 address it carries (acl.c) */
            int mapped = family == AF_INET6 && memcmp(bytes, v4mapped, 12) == 0;
            int ref_family = mapped ? AF_INET : family;
            const unsigned char *ref_bytes = mapped ? bytes + 12 : bytes;
            int hit = 0;
            for (size_t i = 0; i < n && !hit; i++)
                hit = ref_match(&want[i], ref_family, ref_bytes);
            int expect = allow ? (n == 0 || hit) : !hit;
            CHECK(dx_acl_allows(&acl, &a) == expect);
            if (k < nprobes && !mapped)
                CHECK(hit);
            if (k < nprobes && family == AF_INET) {
                /* the same IPv4 address seen on a dual-stack socket */
                unsigned char m[16];
                memcpy(m, v4mapped, 12);
                memcpy(m + 12, bytes, 4);
                make_addr(&a, AF_INET6, m);
                CHECK(dx_acl_allows(&acl, &a) == expect);
            }
        }
        dx_addr u;
        dx_addr_unix(&u, "@fuzz");
        CHECK(dx_acl_allows(&acl, &u) == 1); /* Unix peers are always allowed */
        dx_acl_free(&acl);
        CHECK(acl.allow == NULL && acl.deny == NULL && acl.nallow == 0);
    }
    check_mixed(data, size);
    return 0;
}
