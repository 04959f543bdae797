/* diag_win32.c: socket listing on Windows. diag.c reads Linux's sock_diag
 * netlink and /proc/net, which Windows has neither of: dx_sock_list() and
 * dx_sock_procs() say -ENOSYS there (the command refuses the feature,
 * naming the platform). dx_sock_state_name() is the same as on Linux. */
#include "os.h"

#include <stdlib.h>

int dx_sock_list(unsigned flags, dx_sockinfo **out, unsigned *source)
{
    (void)flags;
    *out = NULL;
    if (source)
        *source = 0;
    return -ENOSYS;
}

const char *dx_sock_state_name(int state)
{
    static const char *const names[DX_SS_MAX] = {
        [DX_SS_ESTABLISHED] = "ESTAB",     [DX_SS_SYN_SENT] = "SYN-SENT",
        [DX_SS_SYN_RECV] = "SYN-RECV",     [DX_SS_FIN_WAIT1] = "FIN-WAIT-1",
        [DX_SS_FIN_WAIT2] = "FIN-WAIT-2",  [DX_SS_TIME_WAIT] = "TIME-WAIT",
        [DX_SS_CLOSE] = "UNCONN",          [DX_SS_CLOSE_WAIT] = "CLOSE-WAIT",
        [DX_SS_LAST_ACK] = "LAST-ACK",     [DX_SS_LISTEN] = "LISTEN",
        [DX_SS_CLOSING] = "CLOSING",
    };
    if (state > 0 && state < DX_SS_MAX)
        return names[state];
    return "UNKNOWN";
}

int dx_sock_procs(dx_sockproc **out)
{
    *out = NULL;
    return -ENOSYS;
}
