/* error.c: one error convention: >= 0 success, -errno or DX_E* failure.
 * dx_strerror() is the only place that turns a code into text. */
#define _POSIX_C_SOURCE 200809L
#include "os.h"

#include <string.h>

const char *dx_strerror(int code)
{
    switch (code) {
    case DX_EBADPORT: return "invalid port (expected 0-65535 or a service name)";
    case DX_EBADADDR: return "invalid address";
    case DX_ENOADDR: return "no usable address";
    case DX_ETOOLONG: return "Unix socket path too long";
    case DX_ETIMEDOUT: return "Connection timed out";
    case DX_ETLS: return "TLS failure";
    case DX_ETLSVERIFY: return "certificate verification failed";
    case DX_ETLSTRUNC: return "TLS connection ended without close_notify";
    default: break;
    }
    if (dx_is_resolver_error(code)) {
        int mag = DX_EAI_BASE - code;
#ifdef _WIN32
        return dx__os_gai_strerror(mag); /* Winsock's texts differ from glibc's */
#else
        return gai_strerror(EAI_NONAME < 0 ? -mag : mag);
#endif
    }
    if (code < 0 && code > -4096)
        return dx__os_strerror(-code);
    return "Unknown error";
}

int dx_is_resolver_error(int code) { return code < DX_EAI_BASE && code > DX_EAI_BASE - 1000; }
