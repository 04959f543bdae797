/* proxyserv_socks5.c: the SOCKS5 server's messages (RFC 1928, RFC 1929
 * username/password) as pure functions over the bytes received so far:
 * no I/O here, so tests/fuzz/fuzz_proxyserv.c can drive them alone. */
#define _GNU_SOURCE
#include "cli.h"
#include "proxyserv.h"
#include "os.h"

#include <string.h>

int pxs_s5_greeting(const unsigned char *b, size_t n, int *methods)
{
    *methods = 0;
    if (n < 1)
        return 0;
    if (b[0] != 5)
        return PXS_S5_BAD;
    if (n < 2)
        return 0;
    size_t nm = b[1];
    if (nm == 0)
        return PXS_S5_BAD; /* RFC 1928: 1 to 255 methods */
    if (n < 2 + nm)
        return 0;
    for (size_t i = 0; i < nm; i++) {
        if (b[2 + i] == 0x00)
            *methods |= PXS_M_NONE;
        else if (b[2 + i] == 0x02)
            *methods |= PXS_M_USERPASS;
    }
    return (int)(2 + nm);
}

int pxs_s5_userpass(const unsigned char *b, size_t n, char user[256], size_t *ulen,
                    char pass[256], size_t *plen)
{
    if (n < 1)
        return 0;
    if (b[0] != 1) /* the subnegotiation's own version */
        return PXS_S5_BAD;
    if (n < 2)
        return 0;
    size_t ul = b[1];
    if (n < 2 + ul + 1)
        return 0;
    size_t pl = b[2 + ul];
    if (n < 3 + ul + pl)
        return 0;
    memcpy(user, b + 2, ul);
    user[ul] = '\0';
    memcpy(pass, b + 3 + ul, pl);
    pass[pl] = '\0';
    *ulen = ul;
    *plen = pl;
    return (int)(3 + ul + pl);
}

int pxs_s5_request(const unsigned char *b, size_t n, int *cmd, struct pxs_target *t)
{
    memset(t, 0, sizeof *t);
    *cmd = 0;
    if (n < 1)
        return 0;
    if (b[0] != 5)
        return PXS_S5_BAD;
    if (n < 4)
        return 0;
    *cmd = b[1];
    size_t alen, off = 4;
    switch (b[3]) {
    case 1: alen = 4; break;
    case 4: alen = 16; break;
    case 3:
        if (n < 5)
            return 0;
        alen = b[4];
        off = 5;
        if (alen == 0)
            return PXS_S5_BAD;
        break;
    default: return PXS_S5_BAD_ATYP;
    }
    if (n < off + alen + 2)
        return 0;
    const unsigned char *a = b + off;
    if (b[3] == 3) {
        if (memchr(a, '\0', alen))
            return PXS_S5_BAD;
        memcpy(t->host, a, alen);
        t->host[alen] = '\0';
        unsigned char bin[16];
        /* a name that is an address literal is taken as that address */
        t->is_name = inet_pton(AF_INET, t->host, bin) != 1 && inet_pton(AF_INET6, t->host, bin) != 1;
    } else if (!inet_ntop(b[3] == 1 ? AF_INET : AF_INET6, a, t->host, sizeof t->host)) {
        return PXS_S5_BAD;
    }
    t->port = a[alen] << 8 | a[alen + 1];
    return (int)(off + alen + 2);
}

size_t pxs_s5_reply(unsigned char *out, int rep, int family, const unsigned char *addr, int port)
{
    size_t alen = family == AF_INET6 ? 16 : 4;
    out[0] = 5;
    out[1] = (unsigned char)rep;
    out[2] = 0;
    out[3] = family == AF_INET6 ? 4 : 1;
    if (family == AF_INET || family == AF_INET6)
        memcpy(out + 4, addr, alen);
    else
        memset(out + 4, 0, alen);
    out[4 + alen] = (unsigned char)(port >> 8);
    out[5 + alen] = (unsigned char)port;
    return 6 + alen;
}
