/* fuzz_proxyproto.c: cli_pp_parse() and cli_pp_encode() (src/cli/proxyproto.c).
 * The parser on the input must return -EPROTO, 0 (more bytes needed) or a
 * header length L <= the input, never read past it; the answers must agree
 * with the way listeners.c reads a header (peek, then take only header
 * bytes): every prefix shorter than L is "more please" (so taking all of an
 * incomplete header never takes payload), every longer one is L again, and
 * a prefix refused stays refused however many bytes follow. A v1 header is
 * at most 107 bytes and ends in CRLF, a v2 one is 16 + its length bytes
 * (<= CLI_PP_MAX) after the 12-byte signature. Addresses it returns are
 * encoded again (v1 and v2) and must parse back to the same addresses. Then
 * the input's first 36 bytes are taken as two addresses and ports, encoded
 * and parsed back. */
#define _GNU_SOURCE
#include "cli.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define CHECK(cond) do { if (!(cond)) abort(); } while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int same_addr(const dx_addr *a, const dx_addr *b)
{
    char x[DX_ADDR_STRLEN], y[DX_ADDR_STRLEN];
    return strcmp(dx_addr_format(a, x, sizeof x), dx_addr_format(b, y, sizeof y)) == 0;
}

static void reencode(const struct cli_pp *pp)
{
    for (int v = 1; v <= 2; v++) {
        unsigned char buf[CLI_PP_V1_MAX + 1];
        size_t n = cli_pp_encode(buf, sizeof buf, v, &pp->src, &pp->dst);
        CHECK(n > 0 && n <= (v == 1 ? CLI_PP_V1_MAX : 52));
        struct cli_pp back;
        CHECK(cli_pp_parse(buf, n, &back) == (int)n);
        CHECK(back.version == v && !back.local);
        CHECK(same_addr(&back.src, &pp->src) && same_addr(&back.dst, &pp->dst));
    }
}

static void addr_from(dx_addr *a, const uint8_t *b, int v6)
{
    memset(a, 0, sizeof *a);
    if (v6) {
        struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&a->ss;
        in6->sin6_family = AF_INET6;
        memcpy(&in6->sin6_addr, b, 16);
        memcpy(&in6->sin6_port, b + 16, 2);
        a->len = sizeof *in6;
    } else {
        struct sockaddr_in *in4 = (struct sockaddr_in *)&a->ss;
        in4->sin_family = AF_INET;
        memcpy(&in4->sin_addr, b, 4);
        memcpy(&in4->sin_port, b + 4, 2);
        a->len = sizeof *in4;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct cli_pp pp, tmp;
    int len = cli_pp_parse(data, size, &pp);
    CHECK(len == -EPROTO || (len >= 0 && (size_t)len <= size));
    if (len == 0)
        CHECK(size < CLI_PP_MAX);
    if (len > 0) {
        CHECK(pp.version == 1 || pp.version == 2);
        if (pp.version == 1)
            CHECK(len <= CLI_PP_V1_MAX && data[len - 2] == '\r' && data[len - 1] == '\n' &&
                  memcmp(data, "PROXY ", 6) == 0);
        else
            CHECK(len >= 16 && len <= CLI_PP_MAX && (size_t)len == 16 + ((size_t)data[14] << 8 | data[15]) &&
                  data[12] >> 4 == 2);
        /* every shorter prefix is incomplete (a sample beyond 256 bytes) */
        for (size_t k = 0; k < (size_t)len; k += k < 256 ? 1 : 61)
            CHECK(cli_pp_parse(data, k, &tmp) == 0);
        CHECK(cli_pp_parse(data, (size_t)len, &tmp) == len);
        if (!pp.local) {
            CHECK(pp.src.ss.ss_family == pp.dst.ss.ss_family);
            CHECK(pp.src.ss.ss_family == AF_INET || pp.src.ss.ss_family == AF_INET6);
            reencode(&pp);
        }
    }
    if (len < 0) {
        /* the shortest refused prefix: everything longer is refused too */
        size_t k = 0;
        while (cli_pp_parse(data, k, &tmp) != -EPROTO)
            k++;
        for (size_t m = k; m <= size; m += 1 + (m - k) / 4)
            CHECK(cli_pp_parse(data, m, &tmp) == -EPROTO);
    }
    if (size >= 37) {
        dx_addr s, d;
        int v6 = data[36] & 1;
        addr_from(&s, data, v6);
        addr_from(&d, data + 18, v6);
        struct cli_pp want = {.src = s, .dst = d};
        /* IPv4-mapped goes out as IPv4: compare with what dx_addr_format shows */
        reencode(&want);
    }
    return 0;
}
