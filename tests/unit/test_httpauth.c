/* test_httpauth.c: src/cli/httpauth.c: MD5 against RFC 1321's test suite,
 * SHA-256 against the FIPS 180-4 examples (NIST), base64 against RFC 4648,
 * Digest against RFC 7616's example, the auth-param parser, and the proxy
 * server's challenges verified with the client's answers. */
#define _GNU_SOURCE
#include "helpers.h"
#include "cli/cli.h"

#define T(name) Test(httpauth, name, .timeout = 20, .init = ha_init)

static void ha_init(void) { h_alarm(H_ALARM_SECONDS); }

static void hexof(const unsigned char *d, size_t n, char *out)
{
    for (size_t i = 0; i < n; i++)
        sprintf(out + 2 * i, "%02x", d[i]);
}

static const char *md5hex(const void *data, size_t n)
{
    static char out[33];
    unsigned char d[16];
    cli_md5(data, n, d);
    hexof(d, 16, out);
    return out;
}

static const char *sha256hex(const void *data, size_t n)
{
    static char out[65];
    unsigned char d[32];
    cli_sha256(data, n, d);
    hexof(d, 32, out);
    return out;
}

T(md5_rfc1321)
{
    static const char *const v[][2] = {
        {"", "d41d8cd98f00b204e9800998ecf8427e"},
        {"a", "0cc175b9c0f1b6a831c399e269772661"},
        {"abc", "900150983cd24fb0d6963f7d28e17f72"},
        {"message digest", "f96b697d7cb7938d525a2f31aaf161d0"},
        {"abcdefghijklmnopqrstuvwxyz", "c3fcd3d76192e4007dfb496cca67e13b"},
        {"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789",
         "d174ab98d277d9f5a5611c2c9f419d9f"},
        {"12345678901234567890123456789012345678901234567890123456789012345678901234567890",
         "57edf4a22be3c955ac49da2e2107b67a"},
    };
    for (size_t i = 0; i < sizeof v / sizeof v[0]; i++)
        cr_assert_str_eq(md5hex(v[i][0], strlen(v[i][0])), v[i][1], "MD5(\"%s\")", v[i][0]);
}

T(sha256_fips180)
{
    static const char *const v[][2] = {
        {"", "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"},
        {"abc", "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"},
        {"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq",
         "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"},
        {"abcdefghbcdefghicdefghijdefghijkefghijklfghijklmghijklmnhijklmnoijklmnopjklmnopqklmnopqrlmnopqrsmnopqrstnopqrstu",
         "cf5b16a778af8380036ce59e7b0492370b249b11e8f07a51afac45037afee9d1"},
    };
    for (size_t i = 0; i < sizeof v / sizeof v[0]; i++)
        cr_assert_str_eq(sha256hex(v[i][0], strlen(v[i][0])), v[i][1], "SHA-256(\"%s\")", v[i][0]);
}

T(sha256_million_a)
{
    char *a = malloc(1000000);
    cr_assert_not_null(a);
    memset(a, 'a', 1000000);
    cr_assert_str_eq(sha256hex(a, 1000000), "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
    free(a);
}

/* the lengths around the padding boundary (55, 56 and 64 bytes) */
T(padding_boundaries)
{
    char buf[130];
    memset(buf, 'x', sizeof buf);
    /* from Python: hashlib.md5(b"x" * n), hashlib.sha256(b"x" * n) */
    cr_assert_str_eq(md5hex(buf, 55), "04364420e25c512fd958a70738aa8f72");
    cr_assert_str_eq(md5hex(buf, 56), "668a72d5ba17f08e62dabcafad6db14b");
    cr_assert_str_eq(md5hex(buf, 64), "c1bb4f81d892b2d57947682aeb252456");
    cr_assert_str_eq(sha256hex(buf, 55), "d5e285683cd4efc02d021a5c62014694958901005d6f71e89e0989fac77e4072");
    cr_assert_str_eq(sha256hex(buf, 56), "04c26261370ee7541549d16dee320c723e3fd14671e66a099afe0a377c16888e");
    cr_assert_str_eq(sha256hex(buf, 64), "7ce100971f64e7001e8fe5a51973ecdfe1ced42befe7ee8d5fd6219506b5393c");
}

T(base64_rfc4648)
{
    static const char *const v[][2] = {{"", ""},         {"f", "Zg=="},         {"fo", "Zm8="},
                                       {"foo", "Zm9v"}, {"foob", "Zm9vYg=="}, {"fooba", "Zm9vYmE="},
                                       {"foobar", "Zm9vYmFy"}};
    for (size_t i = 0; i < sizeof v / sizeof v[0]; i++) {
        char out[16];
        unsigned char back[16];
        size_t n = strlen(v[i][0]);
        cr_assert_eq(cli_base64(v[i][0], n, out, sizeof out), (int)strlen(v[i][1]));
        cr_assert_str_eq(out, v[i][1]);
        cr_assert_eq(cli_unbase64(out, strlen(out), back, sizeof back), (int)n);
        cr_assert(memcmp(back, v[i][0], n) == 0);
    }
    char small[4];
    cr_assert_eq(cli_base64("foo", 3, small, sizeof small), -1); /* no room for the NUL */
    unsigned char b[16];
    cr_assert_eq(cli_unbase64("Zm9", 3, b, sizeof b), -1);
    cr_assert_eq(cli_unbase64("Zm=v", 4, b, sizeof b), -1);
    cr_assert_eq(cli_unbase64("Zg==Zg==", 8, b, sizeof b), -1);
    cr_assert_eq(cli_unbase64("Z g=", 4, b, sizeof b), -1);
}

/* RFC 7616 section 3.9.1 */
T(digest_rfc7616_example)
{
    char out[65];
    const char *nonce = "7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v";
    const char *cnonce = "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ";
    cr_assert_eq(cli_http_digest("MD5", "Mufasa", "http-auth@example.org", "Circle of Life", "GET",
                                 "/dir/index.html", nonce, "00000001", cnonce, out), 0);
    cr_assert_str_eq(out, "8ca523f5e9506fed4657c9700eebdbec");
    cr_assert_eq(cli_http_digest("SHA-256", "Mufasa", "http-auth@example.org", "Circle of Life", "GET",
                                 "/dir/index.html", nonce, "00000001", cnonce, out), 0);
    cr_assert_str_eq(out, "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1");
    cr_assert_eq(cli_http_digest("SHA-512-256", "u", "r", "p", "GET", "/", "n", "00000001", "c", out), -1);
}

T(parse_challenges)
{
    static struct cli_auth a[4];
    const char *h = "Digest realm=\"a \\\"q\\\" b\", qop=\"auth,auth-int\", nonce=abc, , Basic realm=x";
    cr_assert_eq(cli_auth_parse(h, strlen(h), a, 4), 2);
    cr_assert_str_eq(a[0].scheme, "Digest");
    cr_assert_str_eq(cli_auth_param(&a[0], "REALM"), "a \"q\" b");
    cr_assert_str_eq(cli_auth_param(&a[0], "qop"), "auth,auth-int");
    cr_assert_str_eq(cli_auth_param(&a[0], "nonce"), "abc");
    cr_assert_str_eq(a[1].scheme, "Basic");
    cr_assert_str_eq(cli_auth_param(&a[1], "realm"), "x");
    const char *t = "Basic dXNlcjpwYQ==";
    cr_assert_eq(cli_auth_parse(t, strlen(t), a, 4), 1);
    cr_assert_str_eq(a[0].token68, "dXNlcjpwYQ==");
    cr_assert_eq(a[0].nparams, 0);
    /* the length given is the end: nothing after it is read */
    cr_assert_eq(cli_auth_parse("Basic realm=\"xy\"", 14, a, 4), -1);
    static const char *const bad[] = {
        "Digest realm=\"open",     "Digest realm=a realm=b", "Digest realm=a, realm=b",
        "Digest realm=\"a\x01\"", "=x",                    "Digest realm=, nonce=x",
        "Digest realm=\"a\"x",     "Basic a b",            "Digest realm=\"\\",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        cr_assert_eq(cli_auth_parse(bad[i], strlen(bad[i]), a, 4), -1, "accepted '%s'", bad[i]);
    cr_assert_eq(cli_auth_parse("A, B, C, D, E", 13, a, 4), -1); /* more than max */
}

/* The server's challenge, answered by the client's code, verifies: each scheme. */
static void roundtrip(const char *keep, const char *creds, const char *given, int expect)
{
    char ch[2048], value[4096];
    static struct cli_auth a[8];
    int n = cli_http_auth_challenge(ch, sizeof ch, "duplex \"proxy\"");
    cr_assert_gt(n, 0);
    cr_assert_eq((size_t)n, strlen(ch));
    /* one header line per challenge: parse each value */
    int count = 0;
    for (char *line = ch; *line;) {
        char *end = strstr(line, "\r\n");
        cr_assert_not_null(end);
        cr_assert(strncmp(line, "Proxy-Authenticate: ", 20) == 0);
        const char *v = line + 20;
        if (strncmp(v, keep, strlen(keep)) == 0) {
            int k = cli_auth_parse(v, (size_t)(end - v), a + count, 8 - count);
            cr_assert_eq(k, 1, "%.*s", (int)(end - v), v);
            count += k;
        }
        line = end + 2;
    }
    cr_assert_eq(count, 1);
    const char *chosen = NULL;
    int m = cli_http_auth_answer(a, count, "CONNECT", "example.org:443", given, value, sizeof value, &chosen);
    cr_assert_gt(m, 0);
    cr_assert_eq(cli_http_auth_verify(value, "CONNECT", creds, "duplex \"proxy\""), expect, "%s", value);
    int stale = -1;
    cr_assert_eq(cli_http_auth_verify_ex(value, "CONNECT", "example.org:443", creds, "duplex \"proxy\"", &stale),
                 expect);
    cr_assert_eq(stale, 0);
    /* another request target, method or realm: refused */
    if (strcmp(keep, "Basic") != 0) {
        cr_assert_eq(cli_http_auth_verify_ex(value, "CONNECT", "example.org:80", creds, "duplex \"proxy\"", NULL), 0);
        cr_assert_eq(cli_http_auth_verify(value, "GET", creds, "duplex \"proxy\""), 0);
    }
    cr_assert_eq(cli_http_auth_verify(value, "CONNECT", creds, "other"), strcmp(keep, "Basic") == 0 && expect);
}

T(roundtrip_each_scheme)
{
    static const char *const keep[] = {"Digest realm=\"duplex \\\"proxy\\\"\", qop=\"auth\", algorithm=SHA-256",
                                       "Digest realm=\"duplex \\\"proxy\\\"\", qop=\"auth\", algorithm=MD5",
                                       "Basic"};
    for (int i = 0; i < 3; i++) {
        roundtrip(keep[i], "us\"er:pa:ss", "us\"er:pa:ss", 1);
        roundtrip(keep[i], "us\"er:pa:ss", "us\"er:pa:sS", 0);
        roundtrip(keep[i], "user:", "user", 1); /* no colon: an empty password */
        roundtrip(keep[i], "user", "user:", 1);
        roundtrip(keep[i], "user:x", "user", 0);
        roundtrip(keep[i], "user:pass", "usex:pass", 0);
    }
}

T(answer_prefers_sha256)
{
    static struct cli_auth a[4];
    const char *h = "Basic realm=r, Digest realm=r, qop=auth, nonce=n, algorithm=MD5, "
                    "Digest realm=r, qop=auth, nonce=n, algorithm=SHA-256";
    cr_assert_eq(cli_auth_parse(h, strlen(h), a, 4), 3);
    char out[1024];
    const char *chosen = NULL;
    cr_assert_gt(cli_http_auth_answer(a, 3, "CONNECT", "h:1", "u:p", out, sizeof out, &chosen), 0);
    cr_assert_str_eq(chosen, "Digest SHA-256");
    cr_assert_gt(cli_http_auth_answer(a, 2, "CONNECT", "h:1", "u:p", out, sizeof out, &chosen), 0);
    cr_assert_str_eq(chosen, "Digest MD5");
    cr_assert_gt(cli_http_auth_answer(a, 1, "CONNECT", "h:1", "u:p", out, sizeof out, &chosen), 0);
    cr_assert_str_eq(chosen, "Basic");
    cr_assert_str_eq(out, "Basic dTpw");
    /* Digest without qop=auth (RFC 2069) or with an unknown algorithm: not used */
    const char *o = "Digest realm=r, nonce=n, Digest realm=r, qop=auth, nonce=n, algorithm=SHA-512";
    cr_assert_eq(cli_auth_parse(o, strlen(o), a, 4), 2);
    cr_assert_eq(cli_http_auth_answer(a, 2, "CONNECT", "h:1", "u:p", out, sizeof out, &chosen), 0);
}

T(verify_fails_closed)
{
    char ch[2048];
    cr_assert_gt(cli_http_auth_challenge(ch, sizeof ch, "r"), 0);
    const char *nonce = strstr(ch, "nonce=\"") + 7;
    char n[64];
    snprintf(n, sizeof n, "%.48s", nonce);
    char resp[65], value[1024];
    cli_http_digest("MD5", "u", "r", "p", "CONNECT", "h:1", n, "00000001", "c", resp);
    snprintf(value, sizeof value, "Digest username=\"u\", realm=\"r\", nonce=\"%s\", uri=\"h:1\", "
             "response=\"%s\", qop=auth, nc=00000001, cnonce=\"c\"", n, resp);
    cr_assert_eq(cli_http_auth_verify(value, "CONNECT", "u:p", "r"), 1);
    /* the same without qop, nc or cnonce, with another qop, a forged nonce: 0 */
    char v2[1024];
    snprintf(v2, sizeof v2, "Digest username=\"u\", realm=\"r\", nonce=\"%s\", uri=\"h:1\", response=\"%s\"", n, resp);
    cr_assert_eq(cli_http_auth_verify(v2, "CONNECT", "u:p", "r"), 0);
    snprintf(v2, sizeof v2, "Digest username=\"u\", realm=\"r\", nonce=\"%s\", uri=\"h:1\", "
             "response=\"%s\", qop=auth-int, nc=00000001, cnonce=\"c\"", n, resp);
    cr_assert_eq(cli_http_auth_verify(v2, "CONNECT", "u:p", "r"), 0);
    char forged[64];
    snprintf(forged, sizeof forged, "%s", n);
    forged[47] = forged[47] == '0' ? '1' : '0';
    cli_http_digest("MD5", "u", "r", "p", "CONNECT", "h:1", forged, "00000001", "c", resp);
    snprintf(v2, sizeof v2, "Digest username=\"u\", realm=\"r\", nonce=\"%s\", uri=\"h:1\", "
             "response=\"%s\", qop=auth, nc=00000001, cnonce=\"c\"", forged, resp);
    cr_assert_eq(cli_http_auth_verify(v2, "CONNECT", "u:p", "r"), 0);
    static const char *const junk[] = {"", "Basic", "Basic !!!!", "Basic dTpw extra", "Bearer x",
                                       "Digest", "Basic dTpw, Basic dTpw"};
    for (size_t i = 0; i < sizeof junk / sizeof junk[0]; i++)
        cr_assert_eq(cli_http_auth_verify(junk[i], "CONNECT", "u:p", "r"), 0, "'%s'", junk[i]);
    cr_assert_eq(cli_http_auth_verify("Basic dTpw", "CONNECT", "u:p", "r"), 1);
    cr_assert_eq(cli_http_auth_verify("basic   dTpw  ", "CONNECT", "u:p", "r"), 1);
}

/* ncat 7.93's client answers the first Digest challenge and knows no
 * SHA-256: MD5 comes first, then SHA-256, then Basic. */
T(challenge_order)
{
    char ch[2048];
    cr_assert_gt(cli_http_auth_challenge(ch, sizeof ch, "r"), 0);
    const char *md5 = strstr(ch, "algorithm=MD5"), *sha = strstr(ch, "algorithm=SHA-256");
    const char *basic = strstr(ch, "Proxy-Authenticate: Basic");
    cr_assert(md5 && sha && basic && md5 < sha && sha < basic, "%s", ch);
    cr_assert_gt(cli_http_auth_challenge_ex(ch, sizeof ch, "r", 1), 0);
    cr_assert_not_null(strstr(ch, "algorithm=MD5, nonce=\""));
    cr_assert_not_null(strstr(ch, ", stale=true\r\nProxy-Authenticate: Digest"));
}

/* The server's clock, moved by the test: httpauth.c's nonces carry the time
 * they were made (this definition takes the place of libc's time()). */
static time_t clock_offset;

time_t time(time_t *t)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    time_t now = ts.tv_sec + clock_offset;
    if (t)
        *t = now;
    return now;
}

/* A nonce expires after 5 minutes: the right answer to an older one is
 * refused with stale set (the client retries with a fresh nonce), so a
 * captured answer cannot be replayed for ever. */
T(nonce_expires)
{
    char ch[2048], value[4096];
    static struct cli_auth a[8];
    const char *keep = "Digest realm=\"r\", qop=\"auth\", algorithm=SHA-256";
    clock_offset = 0;
    cr_assert_gt(cli_http_auth_challenge(ch, sizeof ch, "r"), 0);
    const char *v = NULL;
    for (char *line = ch; *line;) {
        char *end = strstr(line, "\r\n");
        cr_assert_not_null(end);
        *end = '\0';
        if (strncmp(line + 20, keep, strlen(keep)) == 0)
            v = line + 20;
        line = end + 2;
    }
    cr_assert_not_null(v, "no SHA-256 challenge");
    cr_assert_eq(cli_auth_parse(v, strlen(v), a, 8), 1);
    const char *chosen = NULL;
    cr_assert_gt(cli_http_auth_answer(a, 1, "CONNECT", "h:1", "u:p", value, sizeof value, &chosen), 0);
    int stale = -1;
    clock_offset = 290; /* still fresh */
    cr_assert_eq(cli_http_auth_verify_ex(value, "CONNECT", "h:1", "u:p", "r", &stale), 1, "%s", value);
    cr_assert_eq(stale, 0);
    clock_offset = 310; /* too old */
    cr_assert_eq(cli_http_auth_verify_ex(value, "CONNECT", "h:1", "u:p", "r", &stale), 0);
    cr_assert_eq(stale, 1);
    cr_assert_eq(cli_http_auth_verify_ex(value, "CONNECT", "h:1", "u:wrong", "r", &stale), 0);
    cr_assert_eq(stale, 0, "stale only for the right password");
    clock_offset = -120; /* made "in the future": never ours */
    cr_assert_eq(cli_http_auth_verify_ex(value, "CONNECT", "h:1", "u:p", "r", &stale), 0);
    clock_offset = 0;
}
