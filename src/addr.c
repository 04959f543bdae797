/* addr.c: parse, resolve and format socket addresses (IPv4, IPv6, Unix),
 * always through sockaddr_storage so callers never care about the family. */
#define _GNU_SOURCE
#include "os.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#ifdef _WIN32
#include <afunix.h> /* struct sockaddr_un (Windows 10 1803+) */
#endif

/* A decimal number in [0, max]; no sign, no spaces, no trailing junk. */
static int parse_uint(const char *s, long max)
{
    if (!s || !*s || strlen(s) > 10)
        return -1;
    long v = 0;
    for (const char *p = s; *p; p++) {
        if (!isdigit((unsigned char)*p))
            return -1;
        v = v * 10 + (*p - '0');
    }
    return v <= max ? (int)v : -1;
}

int dx_parse_port(const char *text)
{
    if (!text || !*text)
        return DX_EBADPORT;
    if (isdigit((unsigned char)text[0])) {
        int v = parse_uint(text, 65535);
        return v < 0 ? DX_EBADPORT : v;
    }
    /* a service name: letters, digits, '-', '_' (getservbyname is not
     * thread-safe, but the library only reads the port out of it at once) */
    for (const char *p = text; *p; p++)
        if (!isalnum((unsigned char)*p) && *p != '-' && *p != '_')
            return DX_EBADPORT;
    dx__os_init(); /* Windows: the resolver needs WSAStartup */
    struct servent *se = getservbyname(text, "tcp");
    return se ? ntohs((uint16_t)se->s_port) : DX_EBADPORT;
}

int dx_parse_port_range(const char *text, int *first, int *last)
{
    char buf[64];
    if (!text || strlen(text) >= sizeof buf)
        return DX_EBADPORT;
    strcpy(buf, text);
    char *dash = strchr(buf, '-');
    int a, b;
    if (dash && isdigit((unsigned char)buf[0])) {
        *dash = '\0';
        a = parse_uint(buf, 65535);
        b = parse_uint(dash + 1, 65535);
    } else {
        a = b = dx_parse_port(buf);
    }
    if (a < 0 || b < 0 || a > b)
        return DX_EBADPORT;
    *first = a;
    *last = b;
    return 0;
}

int dx_split_hostport(const char *text, char *buf, size_t buflen, const char **host,
                      const char **port)
{
    size_t n = strlen(text);
    if (n + 1 > buflen)
        return DX_EBADADDR;
    memcpy(buf, text, n + 1);
    if (buf[0] == '[') {
        char *close = strchr(buf, ']');
        if (!close || close[1] != ':' || close[2] == '\0')
            return DX_EBADADDR;
        *close = '\0';
        *host = buf + 1;
        *port = close + 2;
        return 0;
    }
    char *colon = strrchr(buf, ':');
    /* a second colon means a bare IPv6 address: ambiguous, refuse */
    if (!colon || colon == buf || colon[1] == '\0' || memchr(buf, ':', (size_t)(colon - buf)))
        return DX_EBADADDR;
    *colon = '\0';
    *host = buf;
    *port = colon + 1;
    return 0;
}

static int eai_code(int e)
{
#ifdef _WIN32
    /* Winsock's EAI_* are WSA error numbers (EAI_NONAME is 11001): store
     * glibc's magnitudes instead, so codes and texts match Linux */
    return DX_EAI_BASE - dx__os_eai_mag(e);
#else
    if (e == EAI_SYSTEM)
        return errno ? -errno : DX_ENOADDR;
    return DX_EAI_BASE - (e < 0 ? -e : e);
#endif
}

int dx_resolve(const char *host, const char *port, int family, int flags, dx_addr **out)
{
    char hostbuf[256];
    *out = NULL;
    int p = dx_parse_port(port);
    if (p < 0)
        return p;
    if (host && host[0] == '[') {
        size_t n = strlen(host);
        if (n < 3 || host[n - 1] != ']' || n - 2 >= sizeof hostbuf)
            return DX_EBADADDR;
        memcpy(hostbuf, host + 1, n - 2);
        hostbuf[n - 2] = '\0';
        host = hostbuf;
    }
    if (host && !*host) {
        /* "" for a bind is every address; for a peer it is a missing name,
         * not the loopback getaddrinfo would make of it (NULL asks for that) */
        if (!(flags & DX_RESOLVE_PASSIVE))
            return DX_EBADADDR;
        host = NULL;
    }

    char portbuf[16];
    snprintf(portbuf, sizeof portbuf, "%d", p);
    struct addrinfo hints = {0}, *res = NULL;
    hints.ai_family = family;
    hints.ai_socktype = (flags & DX_RESOLVE_DGRAM) ? SOCK_DGRAM : SOCK_STREAM;
    hints.ai_protocol = (flags & DX_RESOLVE_DGRAM) ? IPPROTO_UDP : IPPROTO_TCP;
    /* No AI_ADDRCONFIG: it hides ::1 on hosts with only loopback IPv6. */
    hints.ai_flags = AI_NUMERICSERV | ((flags & DX_RESOLVE_PASSIVE) ? AI_PASSIVE : 0) |
                     ((flags & DX_RESOLVE_NUMERIC) ? AI_NUMERICHOST : 0);
    errno = 0;
    dx__os_init(); /* Windows: the resolver needs WSAStartup */
    int e = getaddrinfo(host, portbuf, &hints, &res);
    if (e != 0)
        return eai_code(e);

    int n = 0;
    for (struct addrinfo *ai = res; ai; ai = ai->ai_next)
        n++;
    dx_addr *list = calloc((size_t)(n ? n : 1), sizeof *list);
    if (!list) {
        freeaddrinfo(res);
        return -ENOMEM;
    }
    int count = 0;
    for (struct addrinfo *ai = res; ai; ai = ai->ai_next) {
        if (ai->ai_addrlen > sizeof(struct sockaddr_storage))
            continue;
        if (ai->ai_family != AF_INET && ai->ai_family != AF_INET6)
            continue;
        int dup = 0;
        for (int i = 0; i < count && !dup; i++)
            dup = (size_t)list[i].len == (size_t)ai->ai_addrlen && memcmp(&list[i].ss, ai->ai_addr, ai->ai_addrlen) == 0;
        if (dup)
            continue;
        memcpy(&list[count].ss, ai->ai_addr, ai->ai_addrlen);
        list[count].len = (socklen_t)ai->ai_addrlen;
        count++;
    }
    freeaddrinfo(res);
    if (count == 0) {
        free(list);
        return DX_ENOADDR;
    }
    *out = list;
    return count;
}

int dx_addr_unix(dx_addr *a, const char *path)
{
    struct sockaddr_un *sun = (struct sockaddr_un *)&a->ss;
    size_t n = strlen(path);
    memset(a, 0, sizeof *a);
    if (n == 0)
        return DX_EBADADDR;
    /* a path needs its terminator; an abstract name ('@' stands for the
     * leading NUL) has none and may fill sun_path exactly */
    if (n > sizeof sun->sun_path || (n == sizeof sun->sun_path && path[0] != '@'))
        return DX_ETOOLONG;
    sun->sun_family = AF_UNIX;
    memcpy(sun->sun_path, path, n);
    a->len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n + (n < sizeof sun->sun_path));
#ifdef __linux__
    if (path[0] == '@') {
        sun->sun_path[0] = '\0'; /* abstract: the name is exactly n bytes */
        a->len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n);
    }
#endif
    return 0;
}

int dx_addr_ip(dx_addr *a, const char *numeric_host, int port)
{
    memset(a, 0, sizeof *a);
    if (port < 0 || port > 65535)
        return DX_EBADPORT;
    struct sockaddr_in *in4 = (struct sockaddr_in *)&a->ss;
    struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&a->ss;
    if (inet_pton(AF_INET, numeric_host, &in4->sin_addr) == 1) {
        in4->sin_family = AF_INET;
        in4->sin_port = htons((uint16_t)port);
        a->len = sizeof *in4;
        return 0;
    }
    if (inet_pton(AF_INET6, numeric_host, &in6->sin6_addr) == 1) {
        in6->sin6_family = AF_INET6;
        in6->sin6_port = htons((uint16_t)port);
        a->len = sizeof *in6;
        return 0;
    }
    return DX_EBADADDR;
}

char *dx_addr_format(const dx_addr *a, char *buf, size_t buflen)
{
    char host[INET6_ADDRSTRLEN];
    const struct sockaddr *sa = (const struct sockaddr *)&a->ss;
    if (buflen == 0)
        return buf;
    switch (sa->sa_family) {
    case AF_INET: {
        const struct sockaddr_in *in4 = (const struct sockaddr_in *)sa;
        inet_ntop(AF_INET, &in4->sin_addr, host, sizeof host);
        snprintf(buf, buflen, "%s:%u", host, ntohs(in4->sin_port));
        break;
    }
    case AF_INET6: {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;
        if (IN6_IS_ADDR_V4MAPPED(&in6->sin6_addr)) {
            /* an IPv4 client of a dual-stack socket: show it as IPv4 */
            inet_ntop(AF_INET, &in6->sin6_addr.s6_addr[12], host, sizeof host);
            snprintf(buf, buflen, "%s:%u", host, ntohs(in6->sin6_port));
            break;
        }
        inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof host);
        snprintf(buf, buflen, "[%s]:%u", host, ntohs(in6->sin6_port));
        break;
    }
    case AF_UNIX: {
        const struct sockaddr_un *sun = (const struct sockaddr_un *)sa;
        size_t off = offsetof(struct sockaddr_un, sun_path);
        size_t n = (size_t)a->len > off ? (size_t)a->len - off : 0;
        if (n == 0) {
            snprintf(buf, buflen, "(unnamed)");
        } else if (sun->sun_path[0] == '\0') {
            snprintf(buf, buflen, "@%.*s", (int)(n - 1), sun->sun_path + 1);
        } else {
            snprintf(buf, buflen, "%.*s", (int)strnlen(sun->sun_path, n), sun->sun_path);
        }
        break;
    }
    default:
        snprintf(buf, buflen, "(family %d)", sa->sa_family);
    }
    return buf;
}

int dx_addr_port(const dx_addr *a)
{
    const struct sockaddr *sa = (const struct sockaddr *)&a->ss;
    if (sa->sa_family == AF_INET)
        return ntohs(((const struct sockaddr_in *)sa)->sin_port);
    if (sa->sa_family == AF_INET6)
        return ntohs(((const struct sockaddr_in6 *)sa)->sin6_port);
    return -1;
}

int dx_addr_set_port(dx_addr *a, int port)
{
    struct sockaddr *sa = (struct sockaddr *)&a->ss;
    if (port < 0 || port > 65535)
        return DX_EBADPORT;
    if (sa->sa_family == AF_INET)
        ((struct sockaddr_in *)sa)->sin_port = htons((uint16_t)port);
    else if (sa->sa_family == AF_INET6)
        ((struct sockaddr_in6 *)sa)->sin6_port = htons((uint16_t)port);
    else
        return DX_EBADADDR;
    return 0;
}
