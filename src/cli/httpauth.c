/* httpauth.c: HTTP proxy authentication, shared by the proxy client
 * (proxy.c) and the proxy server: the auth-param lists of RFC 7235 parsed
 * once here (bounded, never past the end), Basic (RFC 7617) and Digest
 * (RFC 7616: MD5 and SHA-256, qop=auth). MD5 (RFC 1321) and SHA-256
 * (FIPS 180-4) are written here: the Windows build has no OpenSSL.
 * The server's nonces are stateless: the time they were made and a keyed
 * hash (HMAC-SHA-256, a per-process random key) of that time and the realm. */
#define _GNU_SOURCE
#define _CRT_RAND_S /* mingw: rand_s() */
#include "cli.h"

#include <pthread.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#ifndef _WIN32
#include <fcntl.h>
#include <sys/random.h>
#include <unistd.h>
#endif

#define NONCE_LIFETIME_S 300 /* older nonces are stale: the client retries with a new one */
#define NONCE_FUTURE_S 60    /* clock slack for a nonce "from the future" (never ours) */

/* ---- MD5 (RFC 1321) and SHA-256 (FIPS 180-4): 64-byte blocks of 32-bit
 * words, MD5's little-endian, SHA-256's big-endian ---- */

struct hash {
    uint32_t s[8];
    uint64_t n;            /* bytes hashed */
    unsigned char b[64];   /* the block being filled */
    void (*block)(uint32_t *s, const unsigned char *p);
    int words;             /* 4 (MD5) or 8 (SHA-256) */
    int be;                /* big-endian (SHA-256) */
};

enum { ALG_MD5, ALG_SHA256 };

static uint32_t rol(uint32_t x, int c) { return (x << c) | (x >> (32 - c)); }

static void md5_block(uint32_t *s, const unsigned char *p)
{
    static const uint32_t k[64] = {
        0xd76aa478, 0xe8c7b756, 0x242070db, 0xc1bdceee, 0xf57c0faf, 0x4787c62a, 0xa8304613, 0xfd469501,
        0x698098d8, 0x8b44f7af, 0xffff5bb1, 0x895cd7be, 0x6b901122, 0xfd987193, 0xa679438e, 0x49b40821,
        0xf61e2562, 0xc040b340, 0x265e5a51, 0xe9b6c7aa, 0xd62f105d, 0x02441453, 0xd8a1e681, 0xe7d3fbc8,
        0x21e1cde6, 0xc33707d6, 0xf4d50d87, 0x455a14ed, 0xa9e3e905, 0xfcefa3f8, 0x676f02d9, 0x8d2a4c8a,
        0xfffa3942, 0x8771f681, 0x6d9d6122, 0xfde5380c, 0xa4beea44, 0x4bdecfa9, 0xf6bb4b60, 0xbebfbc70,
        0x289b7ec6, 0xeaa127fa, 0xd4ef3085, 0x04881d05, 0xd9d4d039, 0xe6db99e5, 0x1fa27cf8, 0xc4ac5665,
        0xf4292244, 0x432aff97, 0xab9423a7, 0xfc93a039, 0x655b59c3, 0x8f0ccc92, 0xffeff47d, 0x85845dd1,
        0x6fa87e4f, 0xfe2ce6e0, 0xa3014314, 0x4e0811a1, 0xf7537e82, 0xbd3af235, 0x2ad7d2bb, 0xeb86d391,
    };
    static const int r[4][4] = {{7, 12, 17, 22}, {5, 9, 14, 20}, {4, 11, 16, 23}, {6, 10, 15, 21}};
    uint32_t x[16];
    for (int i = 0; i < 16; i++)
        x[i] = (uint32_t)p[4 * i] | (uint32_t)p[4 * i + 1] << 8 | (uint32_t)p[4 * i + 2] << 16 |
               (uint32_t)p[4 * i + 3] << 24;
    uint32_t a = s[0], b = s[1], c = s[2], d = s[3];
    for (int i = 0; i < 64; i++) {
        uint32_t f;
        int g;
        switch (i / 16) {
        case 0: f = (b & c) | (~b & d); g = i; break;
        case 1: f = (d & b) | (~d & c); g = (5 * i + 1) % 16; break;
        case 2: f = b ^ c ^ d; g = (3 * i + 5) % 16; break;
        default: f = c ^ (b | ~d); g = (7 * i) % 16; break;
        }
        uint32_t t = d;
        d = c;
        c = b;
        b = b + rol(a + f + k[i] + x[g], r[i / 16][i % 4]);
        a = t;
    }
    s[0] += a;
    s[1] += b;
    s[2] += c;
    s[3] += d;
}

static uint32_t ror(uint32_t x, int c) { return (x >> c) | (x << (32 - c)); }

static void sha256_block(uint32_t *s, const unsigned char *p)
{
    static const uint32_t k[64] = {
        0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
        0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
        0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
        0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
        0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
        0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
        0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
        0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
    };
    uint32_t w[64];
    for (int i = 0; i < 16; i++)
        w[i] = (uint32_t)p[4 * i] << 24 | (uint32_t)p[4 * i + 1] << 16 | (uint32_t)p[4 * i + 2] << 8 |
               (uint32_t)p[4 * i + 3];
    for (int i = 16; i < 64; i++) {
        uint32_t s0 = ror(w[i - 15], 7) ^ ror(w[i - 15], 18) ^ (w[i - 15] >> 3);
        uint32_t s1 = ror(w[i - 2], 17) ^ ror(w[i - 2], 19) ^ (w[i - 2] >> 10);
        w[i] = w[i - 16] + s0 + w[i - 7] + s1;
    }
    uint32_t a = s[0], b = s[1], c = s[2], d = s[3], e = s[4], f = s[5], g = s[6], h = s[7];
    for (int i = 0; i < 64; i++) {
        uint32_t t1 = h + (ror(e, 6) ^ ror(e, 11) ^ ror(e, 25)) + ((e & f) ^ (~e & g)) + k[i] + w[i];
        uint32_t t2 = (ror(a, 2) ^ ror(a, 13) ^ ror(a, 22)) + ((a & b) ^ (a & c) ^ (b & c));
        h = g;
        g = f;
        f = e;
        e = d + t1;
        d = c;
        c = b;
        b = a;
        a = t1 + t2;
    }
    s[0] += a;
    s[1] += b;
    s[2] += c;
    s[3] += d;
    s[4] += e;
    s[5] += f;
    s[6] += g;
    s[7] += h;
}

static void hash_init(struct hash *h, int alg)
{
    static const uint32_t md5_iv[4] = {0x67452301, 0xefcdab89, 0x98badcfe, 0x10325476};
    static const uint32_t sha256_iv[8] = {0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
                                          0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19};
    memset(h, 0, sizeof *h);
    h->block = alg == ALG_MD5 ? md5_block : sha256_block;
    h->words = alg == ALG_MD5 ? 4 : 8;
    h->be = alg != ALG_MD5;
    memcpy(h->s, alg == ALG_MD5 ? md5_iv : sha256_iv, (size_t)h->words * 4);
}

static void hash_update(struct hash *h, const void *data, size_t n)
{
    const unsigned char *p = data;
    while (n > 0) {
        size_t used = (size_t)(h->n % 64), take = 64 - used < n ? 64 - used : n;
        memcpy(h->b + used, p, take);
        h->n += take;
        p += take;
        n -= take;
        if (h->n % 64 == 0)
            h->block(h->s, h->b);
    }
}

/* The padding (0x80, zeros, the bit count), then the digest: its length. */
static size_t hash_final(struct hash *h, unsigned char *out)
{
    uint64_t bits = h->n * 8;
    unsigned char pad[72] = {0x80};
    size_t used = (size_t)(h->n % 64);
    size_t padlen = (used < 56 ? 56 : 120) - used;
    for (int i = 0; i < 8; i++)
        pad[padlen + (size_t)i] = (unsigned char)(bits >> (8 * (h->be ? 7 - i : i)));
    hash_update(h, pad, padlen + 8);
    for (int i = 0; i < h->words * 4; i++)
        out[i] = (unsigned char)(h->s[i / 4] >> (8 * (h->be ? 3 - i % 4 : i % 4)));
    return (size_t)h->words * 4;
}

static void hash_once(int alg, const void *data, size_t n, unsigned char *out)
{
    struct hash h;
    hash_init(&h, alg);
    hash_update(&h, data, n);
    hash_final(&h, out);
}

void cli_md5(const void *data, size_t n, unsigned char out[16])
{
    hash_once(ALG_MD5, data, n, out);
}

void cli_sha256(const void *data, size_t n, unsigned char out[32])
{
    hash_once(ALG_SHA256, data, n, out);
}

/* HMAC-SHA-256 (RFC 2104) with a 32-byte key. */
static void hmac_sha256(const unsigned char key[32], const void *data, size_t n, unsigned char out[32])
{
    unsigned char pad[64], inner[32];
    struct hash m;
    memset(pad, 0x36, sizeof pad);
    for (int i = 0; i < 32; i++)
        pad[i] ^= key[i];
    hash_init(&m, ALG_SHA256);
    hash_update(&m, pad, sizeof pad);
    hash_update(&m, data, n);
    hash_final(&m, inner);
    memset(pad, 0x5c, sizeof pad);
    for (int i = 0; i < 32; i++)
        pad[i] ^= key[i];
    hash_init(&m, ALG_SHA256);
    hash_update(&m, pad, sizeof pad);
    hash_update(&m, inner, sizeof inner);
    hash_final(&m, out);
}

/* ---- helpers ---- */

int cli_memeq_ct(const void *a, const void *b, size_t n)
{
    const volatile unsigned char *x = a, *y = b;
    unsigned char d = 0;
    for (size_t i = 0; i < n; i++)
        d |= (unsigned char)(x[i] ^ y[i]);
    return d == 0;
}

/* Equal strings of any lengths, in a time that depends on neither
 * content: their SHA-256 digests compared in constant time. */
int cli_streq_ct(const char *a, size_t alen, const char *b, size_t blen)
{
    unsigned char da[32], db[32];
    cli_sha256(a, alen, da);
    cli_sha256(b, blen, db);
    return cli_memeq_ct(da, db, sizeof da);
}

int cli_random_bytes(void *out, size_t n)
{
    unsigned char *p = out;
#ifdef _WIN32
    while (n > 0) {
        unsigned int v;
        if (rand_s(&v) != 0)
            return -1;
        size_t k = n < sizeof v ? n : sizeof v;
        memcpy(p, &v, k);
        p += k;
        n -= k;
    }
    return 0;
#else
    while (n > 0) {
        ssize_t k = getrandom(p, n, 0);
        if (k <= 0)
            break;
        p += k;
        n -= (size_t)k;
    }
    if (n == 0)
        return 0;
    int fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    while (n > 0) {
        ssize_t k = read(fd, p, n);
        if (k <= 0) {
            close(fd);
            return -1;
        }
        p += k;
        n -= (size_t)k;
    }
    close(fd);
    return 0;
#endif
}

int cli_base64(const void *in, size_t n, char *out, size_t outlen)
{
    static const char tab[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    const unsigned char *p = in;
    if (n > (size_t)INT32_MAX / 2 || outlen < (n + 2) / 3 * 4 + 1)
        return -1;
    size_t i = 0, k = 0;
    for (; i + 2 < n; i += 3) {
        out[k++] = tab[p[i] >> 2];
        out[k++] = tab[((p[i] & 3) << 4) | (p[i + 1] >> 4)];
        out[k++] = tab[((p[i + 1] & 15) << 2) | (p[i + 2] >> 6)];
        out[k++] = tab[p[i + 2] & 63];
    }
    if (i < n) {
        out[k++] = tab[p[i] >> 2];
        if (i + 1 < n) {
            out[k++] = tab[((p[i] & 3) << 4) | (p[i + 1] >> 4)];
            out[k++] = tab[(p[i + 1] & 15) << 2];
        } else {
            out[k++] = tab[(p[i] & 3) << 4];
            out[k++] = '=';
        }
        out[k++] = '=';
    }
    out[k] = '\0';
    return (int)k;
}

static int b64_value(unsigned char c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    return c == '+' ? 62 : c == '/' ? 63 : -1;
}

int cli_unbase64(const char *in, size_t n, unsigned char *out, size_t outlen)
{
    if (n % 4 != 0 || n / 4 * 3 > outlen + 2 || n > (size_t)INT32_MAX)
        return -1;
    size_t k = 0;
    for (size_t i = 0; i < n; i += 4) {
        int v[4], pads = 0;
        for (int j = 0; j < 4; j++) {
            unsigned char c = (unsigned char)in[i + (size_t)j];
            if (c == '=' && i + 4 == n && j >= 2) {
                v[j] = 0;
                pads++;
            } else if (pads || (v[j] = b64_value(c)) < 0) {
                return -1; /* a bad byte, or data after the padding */
            }
        }
        uint32_t w = (uint32_t)v[0] << 18 | (uint32_t)v[1] << 12 | (uint32_t)v[2] << 6 | (uint32_t)v[3];
        unsigned char b[3] = {(unsigned char)(w >> 16), (unsigned char)(w >> 8), (unsigned char)w};
        if (k + (size_t)(3 - pads) > outlen)
            return -1;
        memcpy(out + k, b, (size_t)(3 - pads));
        k += (size_t)(3 - pads);
    }
    return (int)k;
}

static void hex(const unsigned char *in, size_t n, char *out)
{
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = digits[in[i] >> 4];
        out[2 * i + 1] = digits[in[i] & 15];
    }
    out[2 * n] = '\0';
}

/* ---- auth-param lists (RFC 7235 section 2.1) ---- */

int cli_http_list_has(const char *v, size_t vn, const char *name, size_t n)
{
    size_t i = 0;
    while (i < vn) {
        while (i < vn && (v[i] == ' ' || v[i] == '\t' || v[i] == ','))
            i++;
        size_t s = i;
        while (i < vn && v[i] != ',' && v[i] != ' ' && v[i] != '\t')
            i++;
        if (i - s == n && strncasecmp(v + s, name, n) == 0)
            return 1;
    }
    return 0;
}

static int is_tchar(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           (c && strchr("!#$%&'*+-.^_`|~", c));
}

static int is_t68char(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           (c && strchr("-._~+/", c));
}

struct scan {
    const char *p, *end;
};

static void skip_ows(struct scan *s)
{
    while (s->p < s->end && (*s->p == ' ' || *s->p == '\t'))
        s->p++;
}

static size_t token_len(const struct scan *s)
{
    size_t n = 0;
    while (s->p + n < s->end && is_tchar((unsigned char)s->p[n]))
        n++;
    return n;
}

/* Copies n bytes to the challenge's store, NUL-terminated: where, or NULL. */
static char *store(struct cli_auth *a, size_t *used, const char *src, size_t n)
{
    if (n >= sizeof a->store - *used)
        return NULL;
    char *dst = a->store + *used;
    memcpy(dst, src, n);
    dst[n] = '\0';
    *used += n + 1;
    return dst;
}

/* A quoted-string at s->p (the opening quote), unquoted into the store. */
static char *quoted(struct scan *s, struct cli_auth *a, size_t *used)
{
    char *dst = a->store + *used;
    size_t room = sizeof a->store - *used, k = 0;
    s->p++;
    while (s->p < s->end) {
        unsigned char c = (unsigned char)*s->p++;
        if (c == '"') {
            if (k >= room)
                return NULL;
            dst[k] = '\0';
            *used += k + 1;
            return dst;
        }
        if (c == '\\') {
            if (s->p >= s->end)
                return NULL;
            c = (unsigned char)*s->p++;
        }
        if ((c < 0x20 && c != '\t') || c == 0x7f || k + 1 >= room)
            return NULL; /* controls are not text: fail closed */
        dst[k++] = (char)c;
    }
    return NULL; /* no closing quote */
}

/* A token68 (then only OWS before the end or a comma) at s->p: its length, or 0. */
static size_t token68_len(const struct scan *s)
{
    size_t n = 0;
    while (s->p + n < s->end && is_t68char((unsigned char)s->p[n]))
        n++;
    if (n == 0)
        return 0;
    while (s->p + n < s->end && s->p[n] == '=')
        n++;
    size_t m = n;
    while (s->p + m < s->end && (s->p[m] == ' ' || s->p[m] == '\t'))
        m++;
    return s->p + m == s->end || s->p[m] == ',' ? n : 0;
}

int cli_auth_parse(const char *text, size_t n, struct cli_auth *out, int max)
{
    struct scan s = {text, text + n};
    int count = 0;
    struct cli_auth *a = NULL;
    size_t used = 0;
    int param_next = 0; /* after "scheme SP": a parameter, not a list separator */
    for (;;) {
        /* list separators: OWS and empty elements */
        while (!param_next && s.p < s.end && (*s.p == ' ' || *s.p == '\t' || *s.p == ','))
            s.p++;
        if (s.p == s.end)
            break;
        size_t t = token_len(&s);
        if (t == 0)
            return -1;
        /* a token then "=": a parameter of the current challenge; else a new scheme */
        struct scan after = {s.p + t, s.end};
        skip_ows(&after);
        int is_param = a && after.p < after.end && *after.p == '=';
        if (param_next && !is_param)
            return -1;
        param_next = 0;
        if (is_param) {
            if (a->token68 || a->nparams == CLI_AUTH_PARAMS)
                return -1;
            const char *name = store(a, &used, s.p, t);
            if (!name)
                return -1;
            for (int i = 0; i < a->nparams; i++)
                if (strcasecmp(a->name[i], name) == 0)
                    return -1; /* each name once (RFC 7235) */
            s.p = after.p + 1;
            skip_ows(&s);
            const char *value;
            if (s.p < s.end && *s.p == '"') {
                value = quoted(&s, a, &used);
            } else {
                size_t v = token_len(&s);
                value = v ? store(a, &used, s.p, v) : NULL;
                s.p += v;
            }
            if (!value)
                return -1;
            a->name[a->nparams] = name;
            a->value[a->nparams++] = value;
        } else {
            if (count == max)
                return -1;
            a = &out[count++];
            memset(a, 0, offsetof(struct cli_auth, store));
            used = 0;
            a->scheme = store(a, &used, s.p, t);
            if (!a->scheme)
                return -1;
            s.p += t;
            if (s.p < s.end && *s.p != ' ' && *s.p != '\t' && *s.p != ',')
                return -1;
            skip_ows(&s);
            size_t k = token68_len(&s);
            if (k) {
                a->token68 = store(a, &used, s.p, k);
                if (!a->token68)
                    return -1;
                s.p += k;
            } else if (s.p < s.end && *s.p != ',') {
                param_next = 1; /* "scheme name=value" */
                continue;
            }
        }
        skip_ows(&s);
        if (s.p < s.end && *s.p != ',')
            return -1; /* elements are separated by commas */
    }
    return count;
}

const char *cli_auth_param(const struct cli_auth *a, const char *name)
{
    for (int i = 0; i < a->nparams; i++)
        if (strcasecmp(a->name[i], name) == 0)
            return a->value[i];
    return NULL;
}

/* ---- Digest (RFC 7616) ---- */

static int digest_alg(const char *name, int *alg, int *sess)
{
    static const struct {
        const char *name;
        int alg, sess;
    } algs[] = {{"MD5", ALG_MD5, 0}, {"MD5-sess", ALG_MD5, 1}, {"SHA-256", ALG_SHA256, 0},
                {"SHA-256-sess", ALG_SHA256, 1}};
    if (!name) /* absent: MD5 */
        name = "MD5";
    for (size_t i = 0; i < sizeof algs / sizeof algs[0]; i++)
        if (strcasecmp(name, algs[i].name) == 0) {
            *alg = algs[i].alg;
            *sess = algs[i].sess;
            return 0;
        }
    return -1;
}

/* H(a:b:c...) in lower-case hex: the parts joined with ':' (NULL ends them). */
static void digest_h(int alg, char out[65], ...)
{
    struct hash h;
    unsigned char d[32];
    va_list ap;
    hash_init(&h, alg);
    va_start(ap, out);
    int first = 1;
    for (const char *part; (part = va_arg(ap, const char *)) != NULL; first = 0) {
        if (!first)
            hash_update(&h, ":", 1);
        hash_update(&h, part, strlen(part));
    }
    va_end(ap);
    hex(d, hash_final(&h, d), out);
}

/* The response of RFC 7616 section 3.4.1 (qop=auth). */
static void digest_response(int alg, int sess, const char *user, const char *realm, const char *pass,
                            const char *method, const char *uri, const char *nonce, const char *nc,
                            const char *cnonce, char out[65])
{
    char ha1[65], ha2[65];
    digest_h(alg, ha1, user, realm, pass, (const char *)NULL);
    if (sess)
        digest_h(alg, ha1, ha1, nonce, cnonce, (const char *)NULL);
    digest_h(alg, ha2, method, uri, (const char *)NULL);
    digest_h(alg, out, ha1, nonce, nc, cnonce, "auth", ha2, (const char *)NULL);
}

int cli_http_digest(const char *algorithm, const char *user, const char *realm, const char *pass,
                    const char *method, const char *uri, const char *nonce, const char *nc,
                    const char *cnonce, char out[65])
{
    int alg, sess;
    if (digest_alg(algorithm, &alg, &sess) < 0)
        return -1;
    digest_response(alg, sess, user, realm, pass, method, uri, nonce, nc, cnonce, out);
    return 0;
}

/* Does a qop list ("auth,auth-int") name "auth"? */
static int qop_has_auth(const char *list)
{
    for (const char *p = list; p && *p;) {
        while (*p == ' ' || *p == '\t' || *p == ',')
            p++;
        size_t n = strcspn(p, " \t,");
        if (n == 4 && strncasecmp(p, "auth", 4) == 0)
            return 1;
        p += n;
    }
    return 0;
}

/* "user:pass" split into user (NUL-terminated copy) and the password; no
 * colon: an empty password. 0, or -1 when too long. */
static int split_credentials(const char *credentials, char *user, size_t ulen, const char **pass)
{
    const char *colon = strchr(credentials, ':');
    size_t n = colon ? (size_t)(colon - credentials) : strlen(credentials);
    if (n >= ulen)
        return -1;
    memcpy(user, credentials, n);
    user[n] = '\0';
    *pass = colon ? colon + 1 : "";
    return 0;
}

/* Appends a quoted-string ("\" before '"' and '\'): 0, or -1 when out is full. */
static int put_quoted(char *out, size_t outlen, size_t *k, const char *s)
{
    if (*k + 1 >= outlen)
        return -1;
    out[(*k)++] = '"';
    for (; *s; s++) {
        if (*k + 3 >= outlen)
            return -1;
        if (*s == '"' || *s == '\\')
            out[(*k)++] = '\\';
        out[(*k)++] = *s;
    }
    out[(*k)++] = '"';
    out[*k] = '\0';
    return 0;
}

static int put(char *out, size_t outlen, size_t *k, const char *fmt, ...) CLI_PRINTF(4, 5);
static int put(char *out, size_t outlen, size_t *k, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(out + *k, outlen - *k, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= outlen - *k)
        return -1;
    *k += (size_t)n;
    return 0;
}

static int has_ctl(const char *s)
{
    for (; *s; s++)
        if ((unsigned char)*s < 0x20 || *s == 0x7f)
            return 1;
    return 0;
}

/* ---- the client's answer ---- */

int cli_http_auth_answer(const struct cli_auth *ch, int n, const char *method, const char *uri,
                         const char *credentials, char *out, size_t outlen, const char **chosen)
{
    /* the strongest usable challenge: Digest SHA-256, Digest MD5, then Basic */
    int best = -1, best_rank = 0, alg = 0, sess = 0;
    for (int i = 0; i < n; i++) {
        int rank = 0, a = 0, s = 0;
        if (strcasecmp(ch[i].scheme, "Basic") == 0) {
            rank = 1;
        } else if (strcasecmp(ch[i].scheme, "Digest") == 0 && cli_auth_param(&ch[i], "nonce") &&
                   cli_auth_param(&ch[i], "realm") && qop_has_auth(cli_auth_param(&ch[i], "qop")) &&
                   digest_alg(cli_auth_param(&ch[i], "algorithm"), &a, &s) == 0) {
            const char *uh = cli_auth_param(&ch[i], "userhash");
            if (!uh || strcasecmp(uh, "true") != 0) /* hashed user names: not supported */
                rank = a == ALG_SHA256 ? 3 : 2;
        }
        if (rank > best_rank) {
            best = i;
            best_rank = rank;
            alg = a;
            sess = s;
        }
    }
    if (best < 0)
        return 0;
    char user[1100];
    const char *pass;
    if (split_credentials(credentials, user, sizeof user, &pass) < 0 || has_ctl(credentials))
        return -1;
    size_t k = 0;
    out[0] = '\0';
    if (best_rank == 1) {
        *chosen = "Basic";
        if (put(out, outlen, &k, "Basic ") < 0)
            return -1;
        char both[2200];
        int m = snprintf(both, sizeof both, "%s:%s", user, pass);
        int b = m > 0 && (size_t)m < sizeof both ? cli_base64(both, (size_t)m, out + k, outlen - k) : -1;
        memset(both, 0, sizeof both);
        return b < 0 ? -1 : (int)k + b;
    }
    const struct cli_auth *c = &ch[best];
    const char *realm = cli_auth_param(c, "realm"), *nonce = cli_auth_param(c, "nonce");
    const char *opaque = cli_auth_param(c, "opaque");
    *chosen = alg == ALG_SHA256 ? "Digest SHA-256" : "Digest MD5";
    unsigned char rnd[16];
    char cnonce[33], response[65];
    if (cli_random_bytes(rnd, sizeof rnd) < 0)
        return -1;
    hex(rnd, sizeof rnd, cnonce);
    digest_response(alg, sess, user, realm, pass, method, uri, nonce, "00000001", cnonce, response);
    if (put(out, outlen, &k, "Digest username=") < 0 || put_quoted(out, outlen, &k, user) < 0 ||
        put(out, outlen, &k, ", realm=") < 0 || put_quoted(out, outlen, &k, realm) < 0 ||
        put(out, outlen, &k, ", nonce=") < 0 || put_quoted(out, outlen, &k, nonce) < 0 ||
        put(out, outlen, &k, ", uri=") < 0 || put_quoted(out, outlen, &k, uri) < 0 ||
        put(out, outlen, &k, ", algorithm=%s, response=\"%s\", qop=auth, nc=00000001, cnonce=\"%s\"",
            cli_auth_param(c, "algorithm") ? cli_auth_param(c, "algorithm") : "MD5", response, cnonce) < 0 ||
        (opaque && (put(out, outlen, &k, ", opaque=") < 0 || put_quoted(out, outlen, &k, opaque) < 0)))
        return -1;
    return (int)k;
}

/* ---- the server's side: challenges and verification ---- */

static unsigned char nonce_key[32];
static pthread_once_t nonce_once = PTHREAD_ONCE_INIT;

static void nonce_key_init(void)
{
    if (cli_random_bytes(nonce_key, sizeof nonce_key) < 0) {
        /* no randomness: a key nobody can guess is still needed; time and
         * address bits are poor, so no nonce will ever verify (fail closed) */
        memset(nonce_key, 0, sizeof nonce_key);
        nonce_key[0] = 1;
    }
}

static int nonce_key_ok(void)
{
    pthread_once(&nonce_once, nonce_key_init);
    unsigned char bad[32] = {1};
    return !cli_memeq_ct(nonce_key, bad, sizeof bad);
}

/* nonce = 16 hex digits of the time it was made, then 32 hex digits of
 * HMAC-SHA-256(key, "TIME:REALM") cut to 16 bytes. */
#define NONCE_LEN 48

static void nonce_make(uint64_t when, const char *realm, char out[NONCE_LEN + 1])
{
    char msg[600];
    unsigned char mac[32];
    int m = snprintf(msg, sizeof msg, "%016llx:%s", (unsigned long long)when, realm);
    hmac_sha256(nonce_key, msg, m > 0 && (size_t)m < sizeof msg ? (size_t)m : sizeof msg - 1, mac);
    snprintf(out, NONCE_LEN + 1, "%016llx", (unsigned long long)when);
    hex(mac, 16, out + 16);
}

/* 1 valid and fresh, 0 invalid, 2 valid but stale. */
static int nonce_check(const char *nonce, const char *realm)
{
    if (strlen(nonce) != NONCE_LEN || !nonce_key_ok())
        return 0;
    uint64_t when = 0;
    for (int i = 0; i < 16; i++) {
        char c = nonce[i];
        int v = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
        if (v < 0)
            return 0;
        when = when << 4 | (uint64_t)v;
    }
    char expect[NONCE_LEN + 1];
    nonce_make(when, realm, expect);
    if (!cli_memeq_ct(expect, nonce, NONCE_LEN))
        return 0;
    uint64_t now = (uint64_t)time(NULL);
    if (when > now + NONCE_FUTURE_S)
        return 0;
    return now > when && now - when > NONCE_LIFETIME_S ? 2 : 1;
}

int cli_http_auth_challenge_ex(char *buf, size_t len, const char *realm, int stale)
{
    if (!nonce_key_ok() || strlen(realm) > 256 || has_ctl(realm))
        return -1;
    char nonce[NONCE_LEN + 1];
    nonce_make((uint64_t)time(NULL), realm, nonce);
    /* MD5 first: ncat 7.93's client answers the first Digest challenge and
     * gives up on SHA-256; clients that know both (duplex) take SHA-256 */
    static const char *const algs[] = {"MD5", "SHA-256"};
    size_t k = 0;
    buf[0] = '\0';
    for (int i = 0; i < 2; i++)
        if (put(buf, len, &k, "Proxy-Authenticate: Digest realm=") < 0 || put_quoted(buf, len, &k, realm) < 0 ||
            put(buf, len, &k, ", qop=\"auth\", algorithm=%s, nonce=\"%s\"%s\r\n", algs[i], nonce,
                stale ? ", stale=true" : "") < 0)
            return -1;
    if (put(buf, len, &k, "Proxy-Authenticate: Basic realm=") < 0 || put_quoted(buf, len, &k, realm) < 0 ||
        put(buf, len, &k, ", charset=\"UTF-8\"\r\n") < 0)
        return -1;
    return (int)k;
}

int cli_http_auth_challenge(char *buf, size_t len, const char *realm)
{
    return cli_http_auth_challenge_ex(buf, len, realm, 0);
}

int cli_http_auth_verify_ex(const char *value, const char *method, const char *request_uri,
                            const char *credentials, const char *realm, int *stale)
{
    struct cli_auth *a = malloc(sizeof *a);
    char user[1100];
    const char *pass;
    int ok = 0;
    if (stale)
        *stale = 0;
    if (!a || !value || !method || !credentials || !realm ||
        split_credentials(credentials, user, sizeof user, &pass) < 0 ||
        cli_auth_parse(value, strlen(value), a, 1) != 1)
        goto out;
    if (strcasecmp(a->scheme, "Basic") == 0) {
        unsigned char got[1200];
        int n = a->token68 ? cli_unbase64(a->token68, strlen(a->token68), got, sizeof got - 1) : -1;
        if (n >= 0) {
            char want[2200];
            int m = snprintf(want, sizeof want, "%s:%s", user, pass);
            ok = m > 0 && (size_t)m < sizeof want && cli_streq_ct((const char *)got, (size_t)n, want, (size_t)m);
            memset(want, 0, sizeof want);
        }
        memset(got, 0, sizeof got);
        goto out;
    }
    if (strcasecmp(a->scheme, "Digest") != 0 || a->token68)
        goto out;
    const char *username = cli_auth_param(a, "username"), *r = cli_auth_param(a, "realm");
    const char *nonce = cli_auth_param(a, "nonce"), *uri = cli_auth_param(a, "uri");
    const char *response = cli_auth_param(a, "response"), *qop = cli_auth_param(a, "qop");
    const char *nc = cli_auth_param(a, "nc"), *cnonce = cli_auth_param(a, "cnonce");
    const char *uh = cli_auth_param(a, "userhash");
    int alg, sess;
    if (!username || !r || !nonce || !uri || !response || !qop || !nc || !cnonce || !*cnonce ||
        strcasecmp(qop, "auth") != 0 || strlen(nc) != 8 || strspn(nc, "0123456789abcdefABCDEF") != 8 ||
        (uh && strcasecmp(uh, "false") != 0) || digest_alg(cli_auth_param(a, "algorithm"), &alg, &sess) < 0 ||
        strcmp(r, realm) != 0 || (request_uri && strcmp(uri, request_uri) != 0))
        goto out;
    int fresh = nonce_check(nonce, realm);
    if (fresh == 0)
        goto out;
    char want[65], got[65];
    size_t hlen = alg == ALG_SHA256 ? 64 : 32;
    if (strlen(response) != hlen)
        goto out;
    for (size_t i = 0; i <= hlen; i++)
        got[i] = (char)(response[i] >= 'A' && response[i] <= 'F' ? response[i] - 'A' + 'a' : response[i]);
    digest_response(alg, sess, user, realm, pass, method, uri, nonce, nc, cnonce, want);
    int match = cli_streq_ct(username, strlen(username), user, strlen(user)) & cli_memeq_ct(want, got, hlen);
    if (match && fresh == 2) {
        if (stale) /* the right password with an old nonce: challenge again, stale=true */
            *stale = 1;
    } else {
        ok = match;
    }
out:
    memset(user, 0, sizeof user);
    free(a);
    return ok;
}

int cli_http_auth_verify(const char *proxy_authorization_value, const char *method, const char *credentials,
                         const char *realm)
{
    return cli_http_auth_verify_ex(proxy_authorization_value, method, NULL, credentials, realm, NULL);
}
