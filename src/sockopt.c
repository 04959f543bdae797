/* sockopt.c: socket options by name ("rcvbuf=65536", "SO_KEEPALIVE=1",
 * "tcp_nodelay=on"), from one table: parsing and range checks, setting,
 * reading back, formatting. */
#define _GNU_SOURCE
#include "os.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
/* Options a platform lacks keep their place in the table (ids are the same
 * on every platform) with DX_NO_OPT: setting or reading one is -ENOPROTOOPT. */
#define DX_NO_OPT (-1)
#ifdef _WIN32
/* Windows 10 1709+ values (the SDK's ws2ipdef.h; mingw-w64 lacks them);
 * older systems refuse them with WSAENOPROTOOPT, i.e. -ENOPROTOOPT */
#ifndef TCP_KEEPIDLE
#define TCP_KEEPIDLE 3
#endif
#ifndef TCP_KEEPCNT
#define TCP_KEEPCNT 16
#endif
#ifndef TCP_KEEPINTVL
#define TCP_KEEPINTVL 17
#endif
#ifndef TCP_MAXSEG
#define TCP_MAXSEG 4
#endif
#define SO_BINDTODEVICE DX_NO_OPT
#define SO_PRIORITY DX_NO_OPT
#define SO_MARK DX_NO_OPT
#define SO_TIMESTAMP DX_NO_OPT
#define SO_BUSY_POLL DX_NO_OPT
#define SO_REUSEPORT DX_NO_OPT
#define TCP_USER_TIMEOUT DX_NO_OPT
#define TCP_QUICKACK DX_NO_OPT
#define TCP_CONGESTION DX_NO_OPT
#define IFNAMSIZ 16
#else
#include <net/if.h>
#include <netinet/ip.h>
#include <sys/time.h>
#endif

/* Older headers may lack some names; the values are Linux's. */
#ifndef SO_BUSY_POLL
#define SO_BUSY_POLL 46
#endif
#ifndef TCP_USER_TIMEOUT
#define TCP_USER_TIMEOUT 18
#endif
#ifndef SO_REUSEPORT
#define SO_REUSEPORT 15
#endif

#define MAX_SECONDS 31536000LL /* one year */

static const dx_sockopt_desc table[] = {
    {"SO_KEEPALIVE", "keepalive", "0 or 1 (on/off)", SOL_SOCKET, SO_KEEPALIVE, DX_SOCKOPT_BOOL, 0, 1},
    {"TCP_KEEPIDLE", "keepidle", "seconds from 1 to 32767 (idle time before the first probe)",
     IPPROTO_TCP, TCP_KEEPIDLE, DX_SOCKOPT_INT, 1, 32767},
    {"TCP_KEEPINTVL", "keepintvl", "seconds from 1 to 32767 (time between probes)", IPPROTO_TCP,
     TCP_KEEPINTVL, DX_SOCKOPT_INT, 1, 32767},
    {"TCP_KEEPCNT", "keepcnt", "a number of probes from 1 to 127", IPPROTO_TCP, TCP_KEEPCNT,
     DX_SOCKOPT_INT, 1, 127},
    {"SO_LINGER", "linger", "whole seconds from 0 to 65535 (0: abortive close with a reset), or off",
     SOL_SOCKET, SO_LINGER, DX_SOCKOPT_LINGER, 0, 65535},
    {"SO_RCVBUF", "rcvbuf", "bytes from 0 to 2147483647 (the kernel doubles it, capped by rmem_max)",
     SOL_SOCKET, SO_RCVBUF, DX_SOCKOPT_INT, 0, INT_MAX},
    {"SO_SNDBUF", "sndbuf", "bytes from 0 to 2147483647 (the kernel doubles it, capped by wmem_max)",
     SOL_SOCKET, SO_SNDBUF, DX_SOCKOPT_INT, 0, INT_MAX},
    {"SO_RCVLOWAT", "rcvlowat", "bytes from 0 to 2147483647", SOL_SOCKET, SO_RCVLOWAT,
     DX_SOCKOPT_INT, 0, INT_MAX},
    {"SO_RCVTIMEO", "rcvtimeo", "seconds from 0 to 31536000, fractions allowed (e.g. 2.5)",
     SOL_SOCKET, SO_RCVTIMEO, DX_SOCKOPT_SECONDS, 0, MAX_SECONDS * 1000000},
    {"SO_SNDTIMEO", "sndtimeo", "seconds from 0 to 31536000, fractions allowed (e.g. 2.5)",
     SOL_SOCKET, SO_SNDTIMEO, DX_SOCKOPT_SECONDS, 0, MAX_SECONDS * 1000000},
    {"SO_REUSEADDR", "reuseaddr", "0 or 1 (on/off)", SOL_SOCKET, SO_REUSEADDR, DX_SOCKOPT_BOOL, 0, 1},
    {"SO_REUSEPORT", "reuseport", "0 or 1 (on/off)", SOL_SOCKET, SO_REUSEPORT, DX_SOCKOPT_BOOL, 0, 1},
    {"SO_BINDTODEVICE", "bindtodevice", "a network interface name (at most 15 characters)",
     SOL_SOCKET, SO_BINDTODEVICE, DX_SOCKOPT_STRING, 1, IFNAMSIZ - 1},
    {"SO_PRIORITY", "priority", "a number from 0 to 2147483647 (above 6 needs CAP_NET_ADMIN)",
     SOL_SOCKET, SO_PRIORITY, DX_SOCKOPT_INT, 0, INT_MAX},
    {"SO_MARK", "mark", "a number from 0 to 4294967295, decimal or 0x hex (needs CAP_NET_ADMIN)",
     SOL_SOCKET, SO_MARK, DX_SOCKOPT_INT, 0, 4294967295LL},
    {"SO_DONTROUTE", "dontroute", "0 or 1 (on/off)", SOL_SOCKET, SO_DONTROUTE, DX_SOCKOPT_BOOL, 0, 1},
    {"SO_BROADCAST", "broadcast", "0 or 1 (on/off)", SOL_SOCKET, SO_BROADCAST, DX_SOCKOPT_BOOL, 0, 1},
    {"SO_OOBINLINE", "oobinline", "0 or 1 (on/off)", SOL_SOCKET, SO_OOBINLINE, DX_SOCKOPT_BOOL, 0, 1},
    {"SO_TIMESTAMP", "timestamp", "0 or 1 (on/off)", SOL_SOCKET, SO_TIMESTAMP, DX_SOCKOPT_BOOL, 0, 1},
    {"SO_BUSY_POLL", "busy_poll", "microseconds from 0 to 2147483647", SOL_SOCKET, SO_BUSY_POLL,
     DX_SOCKOPT_INT, 0, INT_MAX},
    {"TCP_NODELAY", "nodelay", "0 or 1 (on/off)", IPPROTO_TCP, TCP_NODELAY, DX_SOCKOPT_BOOL, 0, 1},
    {"TCP_USER_TIMEOUT", "user_timeout", "milliseconds from 0 to 2147483647 (0: the system default)",
     IPPROTO_TCP, TCP_USER_TIMEOUT, DX_SOCKOPT_INT, 0, INT_MAX},
    {"IP_TOS", "tos", "a number from 0 to 255, decimal or 0x hex (IPV6_TCLASS on IPv6)", IPPROTO_IP,
     IP_TOS, DX_SOCKOPT_INT, 0, 255},
    {"TCP_MAXSEG", "maxseg", "bytes from 88 to 32767", IPPROTO_TCP, TCP_MAXSEG, DX_SOCKOPT_INT, 88,
     32767},
    {"TCP_QUICKACK", "quickack", "0 or 1 (on/off)", IPPROTO_TCP, TCP_QUICKACK, DX_SOCKOPT_BOOL, 0, 1},
    {"TCP_CONGESTION", "congestion", "a congestion control algorithm name (cubic, reno, ...)",
     IPPROTO_TCP, TCP_CONGESTION, DX_SOCKOPT_STRING, 1, 15},
};

#define NOPTS ((int)(sizeof table / sizeof table[0]))

const dx_sockopt_desc *dx_sockopt_describe(int id)
{
    return id >= 0 && id < NOPTS ? &table[id] : NULL;
}

const char *dx_sockopt_name(int id)
{
    return id >= 0 && id < NOPTS ? table[id].name : NULL;
}

static int name_eq(const char *a, size_t alen, const char *b)
{
    return strlen(b) == alen && strncasecmp(a, b, alen) == 0;
}

int dx_sockopt_lookup(const char *name, size_t len)
{
    for (int i = 0; i < NOPTS; i++) {
        if (name_eq(name, len, table[i].name) || name_eq(name, len, table[i].key))
            return i;
    }
    /* only the option's own prefix: "so_maxseg" is not a name */
    return -ENOENT;
}

/* A number: decimal, or hexadecimal with 0x; optional leading '-'. */
static int parse_int(const char *s, long long *out)
{
    if (!*s || isspace((unsigned char)*s))
        return -EINVAL;
    const char *p = s;
    int neg = 0;
    if (*p == '-' || *p == '+')
        neg = *p++ == '-';
    int base = 10;
    if (p[0] == '0' && (p[1] == 'x' || p[1] == 'X')) {
        base = 16;
        p += 2;
    }
    if (!isxdigit((unsigned char)*p))
        return -EINVAL;
    char *end;
    errno = 0;
    unsigned long long v = strtoull(p, &end, base);
    if (*end)
        return -EINVAL;
    if (errno == ERANGE || v > (unsigned long long)LLONG_MAX)
        return -ERANGE;
    *out = neg ? -(long long)v : (long long)v;
    return 0;
}

static int parse_bool(const char *s, long long *out)
{
    static const char *const on[] = {"1", "on", "yes", "true"};
    static const char *const off[] = {"0", "off", "no", "false"};
    for (size_t i = 0; i < 4; i++) {
        if (strcasecmp(s, on[i]) == 0) {
            *out = 1;
            return 0;
        }
        if (strcasecmp(s, off[i]) == 0) {
            *out = 0;
            return 0;
        }
    }
    long long v;
    int rc = parse_int(s, &v);
    if (rc == 0 && v != 0 && v != 1)
        return -ERANGE;
    if (rc == 0)
        *out = v;
    return rc;
}

/* Seconds "N" or "N.NNNNNN" into microseconds (no exponent, no sign). */
static int parse_seconds(const char *s, long long max_us, long long *out)
{
    if (*s == '-')
        return isdigit((unsigned char)s[1]) ? -ERANGE : -EINVAL;
    long long whole = 0, frac = 0;
    int ndig = 0, nfrac = 0;
    const char *p = s;
    for (; isdigit((unsigned char)*p); p++, ndig++) {
        if (whole > MAX_SECONDS)
            return -ERANGE;
        whole = whole * 10 + (*p - '0');
    }
    if (*p == '.') {
        for (p++; isdigit((unsigned char)*p); p++, nfrac++)
            if (nfrac < 6)
                frac = frac * 10 + (*p - '0');
    }
    if (*p || (ndig == 0 && nfrac == 0))
        return -EINVAL;
    for (int i = nfrac; i < 6; i++)
        frac *= 10;
    if (whole > MAX_SECONDS)
        return -ERANGE;
    long long us = whole * 1000000 + frac;
    if (us > max_us)
        return -ERANGE;
    *out = us;
    return 0;
}

int dx_sockopt_parse(const char *text, dx_sockopt *out)
{
    memset(out, 0, sizeof *out);
    out->id = -1;
    const char *eq = strchr(text, '=');
    size_t nlen = eq ? (size_t)(eq - text) : strlen(text);
    int id = dx_sockopt_lookup(text, nlen);
    if (id < 0)
        return id;
    out->id = id;
    const dx_sockopt_desc *d = &table[id];
    if (!eq) /* a bare switch name turns it on: "-O nodelay" */
        return d->type == DX_SOCKOPT_BOOL ? (out->value.num = 1, 0) : -EINVAL;
    const char *v = eq + 1;
    long long n = 0;
    int rc;
    switch (d->type) {
    case DX_SOCKOPT_BOOL:
        rc = parse_bool(v, &n);
        break;
    case DX_SOCKOPT_SECONDS:
        rc = parse_seconds(v, d->max, &n);
        break;
    case DX_SOCKOPT_LINGER:
        if (strcasecmp(v, "off") == 0) {
            out->value.num = -1;
            return 0;
        }
        rc = parse_int(v, &n);
        break;
    case DX_SOCKOPT_STRING: {
        size_t len = strlen(v);
        if (len < (size_t)d->min)
            return -EINVAL;
        if (len > (size_t)d->max || len >= sizeof out->value.str)
            return -ERANGE;
        for (const char *p = v; *p; p++)
            if (!isgraph((unsigned char)*p) || *p == '/')
                return -EINVAL;
        memcpy(out->value.str, v, len + 1);
        return 0;
    }
    default:
        rc = parse_int(v, &n);
        break;
    }
    if (rc < 0)
        return rc;
    if (n < d->min || n > d->max)
        return -ERANGE;
    out->value.num = n;
    return 0;
}

static int family_of(int fd)
{
    struct sockaddr_storage ss;
    dx__socklen len = sizeof ss;
    ss.ss_family = AF_UNSPEC;
    if (dx__sock_getsockname(fd, (struct sockaddr *)&ss, &len) < 0)
        return AF_UNSPEC;
    return ss.ss_family;
}

/* SO_RCVTIMEO/SO_SNDTIMEO: a struct timeval on POSIX, a DWORD of
 * milliseconds on Windows. */
#ifdef _WIN32
static int set_timeo(int fd, int level, int name, long long us)
{
    DWORD ms = (DWORD)((us + 999) / 1000);
    return dx__sock_setsockopt(fd, level, name, (const void *)&ms, sizeof ms);
}

static int get_timeo(int fd, int level, int name, long long *us)
{
    DWORD ms = 0;
    dx__socklen len = sizeof ms;
    int rc = dx__sock_getsockopt(fd, level, name, (void *)&ms, &len);
    *us = (long long)ms * 1000;
    return rc;
}
#else
static int set_timeo(int fd, int level, int name, long long us)
{
    struct timeval tv = {(time_t)(us / 1000000), (suseconds_t)(us % 1000000)};
    return setsockopt(fd, level, name, &tv, sizeof tv);
}

static int get_timeo(int fd, int level, int name, long long *us)
{
    struct timeval tv = {0, 0};
    socklen_t len = sizeof tv;
    int rc = getsockopt(fd, level, name, &tv, &len);
    *us = (long long)tv.tv_sec * 1000000 + tv.tv_usec;
    return rc;
}
#endif

int dx_sockopt_apply(int fd, const dx_sockopt *opt)
{
    const dx_sockopt_desc *d = dx_sockopt_describe(opt->id);
    if (!d)
        return -EINVAL;
    int level = d->level, name = d->optname, rc;
    if (name == DX_NO_OPT)
        return -ENOPROTOOPT; /* not on this platform */
    switch (d->type) {
    case DX_SOCKOPT_SECONDS:
        rc = set_timeo(fd, level, name, opt->value.num);
        break;
    case DX_SOCKOPT_LINGER: {
        struct linger l;
        memset(&l, 0, sizeof l);
        l.l_onoff = opt->value.num >= 0;
        l.l_linger = opt->value.num >= 0 ? (int)opt->value.num : 0; /* u_short on Windows: <= 65535 */
        rc = dx__sock_setsockopt(fd, level, name, (const void *)&l, sizeof l);
        break;
    }
    case DX_SOCKOPT_STRING:
        rc = dx__sock_setsockopt(fd, level, name, opt->value.str,
                                 (dx__socklen)strlen(opt->value.str) + (name == SO_BINDTODEVICE));
        break;
    default: {
        /* SO_MARK is a u32: values above INT_MAX pass as the same bits */
        int v = (int)(unsigned)opt->value.num;
        if (level == IPPROTO_IP && name == IP_TOS && family_of(fd) == AF_INET6) {
            /* IPv6 traffic class; the IPv4 TOS too, for IPv4-mapped peers */
            rc = dx__sock_setsockopt(fd, IPPROTO_IPV6, IPV6_TCLASS, (const void *)&v, sizeof v);
            if (rc == 0)
                (void)dx__sock_setsockopt(fd, IPPROTO_IP, IP_TOS, (const void *)&v, sizeof v);
            break;
        }
        rc = dx__sock_setsockopt(fd, level, name, (const void *)&v, sizeof v);
        break;
    }
    }
    return rc < 0 ? -errno : 0;
}

int dx_sockopt_apply_all(int fd, const dx_sockopt *opts, int nopts, int *failed)
{
    if (failed)
        *failed = -1;
    for (int i = 0; i < nopts; i++) {
        int rc = dx_sockopt_apply(fd, &opts[i]);
        if (rc < 0) {
            if (failed)
                *failed = i;
            return rc;
        }
    }
    return 0;
}

int dx_sockopt_get(int fd, int id, dx_sockopt *out)
{
    const dx_sockopt_desc *d = dx_sockopt_describe(id);
    memset(out, 0, sizeof *out);
    out->id = id;
    if (!d)
        return -EINVAL;
    int level = d->level, name = d->optname;
    if (name == DX_NO_OPT)
        return -ENOPROTOOPT; /* not on this platform */
    switch (d->type) {
    case DX_SOCKOPT_SECONDS:
        if (get_timeo(fd, level, name, &out->value.num) < 0)
            return -errno;
        return 0;
    case DX_SOCKOPT_LINGER: {
        struct linger l;
        memset(&l, 0, sizeof l);
        dx__socklen len = sizeof l;
        if (dx__sock_getsockopt(fd, level, name, (void *)&l, &len) < 0)
            return -errno;
        out->value.num = l.l_onoff ? l.l_linger : -1;
        return 0;
    }
    case DX_SOCKOPT_STRING: {
        char buf[64] = ""; /* SO_BINDTODEVICE wants at least IFNAMSIZ bytes */
        dx__socklen len = sizeof buf - 1;
        if (dx__sock_getsockopt(fd, level, name, buf, &len) < 0)
            return -errno;
        buf[(size_t)len < sizeof buf ? (size_t)len : sizeof buf - 1] = '\0';
        size_t n = strnlen(buf, sizeof out->value.str - 1);
        memcpy(out->value.str, buf, n);
        out->value.str[n] = '\0';
        return 0;
    }
    default: {
        int v = 0;
        dx__socklen len = sizeof v;
        if (level == IPPROTO_IP && name == IP_TOS && family_of(fd) == AF_INET6) {
            level = IPPROTO_IPV6;
            name = IPV6_TCLASS;
        }
        if (dx__sock_getsockopt(fd, level, name, (void *)&v, &len) < 0)
            return -errno;
        out->value.num = d->optname == SO_MARK && d->level == SOL_SOCKET ? (long long)(unsigned)v : v;
        return 0;
    }
    }
}

char *dx_sockopt_format(const dx_sockopt *opt, char *buf, size_t buflen)
{
    const dx_sockopt_desc *d = dx_sockopt_describe(opt->id);
    if (!buflen)
        return buf;
    if (!d) {
        snprintf(buf, buflen, "?");
        return buf;
    }
    switch (d->type) {
    case DX_SOCKOPT_SECONDS:
        if (opt->value.num % 1000000)
            snprintf(buf, buflen, "%lld.%06lld", opt->value.num / 1000000, opt->value.num % 1000000);
        else
            snprintf(buf, buflen, "%lld", opt->value.num / 1000000);
        break;
    case DX_SOCKOPT_LINGER:
        if (opt->value.num < 0)
            snprintf(buf, buflen, "off");
        else
            snprintf(buf, buflen, "%lld", opt->value.num);
        break;
    case DX_SOCKOPT_STRING:
        snprintf(buf, buflen, "%s", opt->value.str);
        break;
    default:
        snprintf(buf, buflen, "%lld", opt->value.num);
        break;
    }
    return buf;
}
