/* messages.c: every line the user reads on stderr goes through here, in the
 * fixed formats scripts and tests parse ("duplex: <what> <address>: <cause>"). */
#define _GNU_SOURCE
#include "cli.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

void cli_error(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("duplex: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

void cli_info(const struct options *o, const char *fmt, ...)
{
    if (!o->verbose)
        return;
    va_list ap;
    va_start(ap, fmt);
    fputs("duplex: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

/* "s" or "": "%llu byte%s", n, cli_s(n) (1 byte, 2 bytes, 0 bytes) */
const char *cli_s(unsigned long long n)
{
    return n == 1 ? "" : "s";
}

int cli_exit_code_for(int code, int during_connect)
{
    if (code == DX_ETOOLONG)
        return EXIT_USAGE;
    if (dx_is_resolver_error(code) || code == DX_EBADADDR || code == DX_ENOADDR)
        return EXIT_RESOLVE;
    if (code == DX_ETIMEDOUT || code == -ETIMEDOUT)
        return EXIT_TIMEOUT;
    return during_connect ? EXIT_CONNECT : EXIT_IO;
}

/* A local address to bind as the user gave it: 10.0.0.1, or 10.0.0.1:5000 /
 * [::1]:5000 when a port was asked for (-p). */
const char *cli_local_text(const dx_addr *a, char *buf, size_t len)
{
    dx_addr_format(a, buf, len);
    size_t n = strlen(buf);
    if (dx_addr_port(a) == 0 && n > 2 && strcmp(buf + n - 2, ":0") == 0) {
        buf[n - 2] = '\0';
        if (buf[0] == '[' && buf[n - 3] == ']') {
            memmove(buf, buf + 1, n - 4);
            buf[n - 4] = '\0';
        }
    }
    return buf;
}
