/* fuzz_acl.c: dx_acl_add_file on the input written to a file (one temp file
 * per process, rewritten each run), as an allow list and as a deny list;
 * then dx_acl_allows is checked against a reference built from the same
 * rules (parsed one by one with dx_cidr_parse), which matches IPv4-mapped
 * IPv6 addresses as IPv4 like acl.c does. */
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

    for (int allow = 0; allow <= 1; allow++) {
        dx_acl acl = {0};
        int bad = -5;
        int rc = dx_acl_add_file(&acl, path, allow, &bad);
        CHECK(rc >= 0 || rc == DX_EBADADDR);
        if (rc >= 0) {
            CHECK(bad == -5); /* only set for a bad rule */
            CHECK((size_t)rc == (allow ? acl.nallow : acl.ndeny));
            CHECK((allow ? acl.ndeny : acl.nallow) == 0);
        } else {
            CHECK(bad >= 1 && (size_t)bad <= size + 1);
        }
        size_t n = allow ? acl.nallow : acl.ndeny;
        const dx_cidr *rules = allow ? acl.allow : acl.deny;
        for (size_t i = 0; i < n; i++) {
            CHECK(rules[i].family == AF_INET || rules[i].family == AF_INET6);
            CHECK(rules[i].prefix >= 0 && rules[i].prefix <= (rules[i].family == AF_INET ? 32 : 128));
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
            static const unsigned char v4mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
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
        }
        dx_addr u;
        dx_addr_unix(&u, "@fuzz");
        CHECK(dx_acl_allows(&acl, &u) == 1); /* Unix peers are always allowed */
        dx_acl_free(&acl);
        CHECK(acl.allow == NULL && acl.deny == NULL && acl.nallow == 0);
    }
    return 0;
}
