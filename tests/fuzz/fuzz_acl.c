/* fuzz_acl.c: dx_acl_add_file on the input written to a file (one temp file
 * per process, rewritten each run), as an allow list and as a deny list,
 * checked against a reference reader of the same grammar: lines of any
 * length, '#' to the end of the line a comment, rules separated by
 * whitespace, each parsed by dx_cidr_parse; the first bad word (or a NUL
 * byte) fails the file at its line and adds nothing. Then dx_acl_allows is
 * checked against a bit-by-bit match of the rules, an IPv4-mapped IPv6 peer
 * matched as IPv4 like acl.c does, and no rule left in the mapped form
 * (those are stored as IPv4). */
#define _GNU_SOURCE
#include "duplex.h"

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

static char path[64];

static void cleanup(void)
{
    if (path[0])
        unlink(path);
}

static int write_file(const uint8_t *data, size_t size)
{
    if (!path[0]) {
        snprintf(path, sizeof path, "/tmp/duplex-fuzz-acl-XXXXXX");
        int fd = mkstemp(path);
        if (fd < 0)
            abort();
        close(fd);
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
            if (dx_cidr_parse(&c, word) != 0)
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

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > 64 * 1024)
        return 0;
    write_file(data, size);

    static dx_cidr want[64];
    long expect_rc = ref_read(data, size, want, sizeof want / sizeof want[0]);
    static const unsigned char v4mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    for (int allow = 0; allow <= 1; allow++) {
        dx_acl acl = {0};
        int bad = -5;
        int rc = dx_acl_add_file(&acl, path, allow, &bad);
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
            if (i < sizeof want / sizeof want[0])
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
                hit = ref_match(&rules[i], ref_family, ref_bytes);
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
    return 0;
}
