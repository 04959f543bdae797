/* messages.c: every line the user reads on stderr goes through here, in the
 * fixed formats scripts and tests parse ("duplex: <what> <address>: <cause>"). */
#define _GNU_SOURCE
#include "cli.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>

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
