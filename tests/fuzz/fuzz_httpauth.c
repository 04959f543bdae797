/* fuzz_httpauth.c: src/cli/httpauth.c on what a peer sends. The first byte
 * picks what the rest is:
 *   0: a Proxy-Authenticate value: parsed (in a buffer of exactly its size,
 *      so a read past the end is caught), then answered as the client does;
 *   1: a Proxy-Authorization value, verified as the server does: it passes
 *      only as Basic with the right credentials (a Digest nonce cannot be
 *      forged);
 *   2: credentials ("user:pass"): the server's challenge, parsed, answered by
 *      the client and verified must pass with them, and fail with others.
 * The parser returns -1 or a count within bounds, with every string inside
 * the challenge's store and NUL-terminated. */
#define _GNU_SOURCE
#include "cli.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define CHECK(cond) do { if (!(cond)) abort(); } while (0)
#define MAX_IN 8192

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_inside(const struct cli_auth *a, const char *s)
{
    if (!s)
        return;
    CHECK(s >= a->store && s < a->store + sizeof a->store);
    CHECK(memchr(s, '\0', (size_t)(a->store + sizeof a->store - s)) != NULL);
}

static int has_ctl(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f)
            return 1;
    return 0;
}

static struct cli_auth ch[8];

static void parse_and_answer(const char *text, size_t n)
{
    int k = cli_auth_parse(text, n, ch, 8);
    CHECK(k >= -1 && k <= 8);
    for (int i = 0; i < k; i++) {
        CHECK(ch[i].nparams >= 0 && ch[i].nparams <= CLI_AUTH_PARAMS);
        check_inside(&ch[i], ch[i].scheme);
        check_inside(&ch[i], ch[i].token68);
        CHECK(ch[i].scheme && *ch[i].scheme);
        for (int j = 0; j < ch[i].nparams; j++) {
            check_inside(&ch[i], ch[i].name[j]);
            check_inside(&ch[i], ch[i].value[j]);
        }
    }
    if (k > 0) {
        char out[2048];
        const char *chosen = NULL;
        int m = cli_http_auth_answer(ch, k, "CONNECT", "example.org:443", "user:secret", out, sizeof out,
                                     &chosen);
        CHECK(m >= -1 && m < (int)sizeof out);
        if (m > 0)
            CHECK(chosen && strlen(out) == (size_t)m);
    }
}

static void roundtrip(const char *creds, size_t n)
{
    char challenge[2048], value[8192];
    if (n > 1000 || has_ctl(creds, n))
        return;
    int len = cli_http_auth_challenge(challenge, sizeof challenge, "fuzz realm");
    CHECK(len > 0);
    for (char *line = challenge; *line;) {
        char *end = strstr(line, "\r\n");
        CHECK(end && strncmp(line, "Proxy-Authenticate: ", 20) == 0);
        const char *v = line + 20;
        CHECK(cli_auth_parse(v, (size_t)(end - v), ch, 1) == 1);
        const char *chosen = NULL;
        int m = cli_http_auth_answer(ch, 1, "CONNECT", "h:1", creds, value, sizeof value, &chosen);
        CHECK(m > 0);
        CHECK(cli_http_auth_verify_ex(value, "CONNECT", "h:1", creds, "fuzz realm", NULL) == 1);
        /* other credentials: a password one byte longer */
        char other[1100];
        snprintf(other, sizeof other, "%s%sx", creds, strchr(creds, ':') ? "" : ":");
        CHECK(cli_http_auth_verify_ex(value, "CONNECT", "h:1", other, "fuzz realm", NULL) == 0);
        line = end + 2;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1 || size > MAX_IN)
        return 0;
    size_t n = size - 1;
    char *text = malloc(n + 1); /* exactly the bytes (+ a NUL for the string uses) */
    CHECK(text != NULL);
    memcpy(text, data + 1, n);
    text[n] = '\0';
    switch (data[0] % 3) {
    case 0: {
        char *exact = malloc(n ? n : 1);
        CHECK(exact != NULL);
        memcpy(exact, data + 1, n);
        parse_and_answer(exact, n);
        free(exact);
        break;
    }
    case 1:
        if (cli_http_auth_verify(text, "CONNECT", "user:secret", "r") == 1) {
            CHECK(cli_auth_parse(text, strlen(text), ch, 1) == 1);
            CHECK(strcasecmp(ch[0].scheme, "Basic") == 0);
        }
        break;
    default:
        if (memchr(text, '\0', n) == NULL)
            roundtrip(text, n);
        break;
    }
    free(text);
    return 0;
}
