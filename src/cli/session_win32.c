/* session_win32.c: --send-only's drain on Windows. Linux asks SIOCOUTQ how
 * many sent bytes the peer has not acknowledged; Windows has no such ioctl
 * (SIO_TCP_INFO reports bytes in flight but not those still queued in the
 * stack, and only from Windows 10 1703). What every Windows (and wine) has is
 * the connection's TCP state in the system's TCP table (GetExtendedTcpTable):
 * once our write side is shut down, the FIN follows the last byte, and a
 * FIN the peer has acknowledged means every byte before it was acknowledged
 * too. So: unacked while the state is FIN_WAIT_1, CLOSING or LAST_ACK (FIN
 * sent, not acknowledged) or still ESTABLISHED/CLOSE_WAIT (FIN not sent
 * yet); done at FIN_WAIT_2, TIME_WAIT, CLOSED, or when the connection is no
 * longer in the table (reset, gone). Without a FIN (--no-shutdown) nobody
 * can tell: 0, and closesocket()'s graceful close (SO_DONTLINGER, the
 * default) still sends what is queued. */
#include "cli.h"
#include "os.h"

#include <iphlpapi.h>
#include <stdlib.h>
#include <string.h>

/* The state of the connection local -> remote (IPv4, network order), 0 if
 * it is not in the table. */
static DWORD state4(const struct sockaddr_in *local, const struct sockaddr_in *remote)
{
    DWORD size = 0, state = 0;
    MIB_TCPTABLE_OWNER_PID *t = NULL;
    for (int tries = 0; tries < 4; tries++) {
        DWORD rc = GetExtendedTcpTable(t, &size, FALSE, AF_INET, TCP_TABLE_OWNER_PID_ALL, 0);
        if (rc == NO_ERROR)
            break;
        free(t);
        t = NULL;
        if (rc != ERROR_INSUFFICIENT_BUFFER || !(t = malloc(size + 4096)))
            return 0;
        size += 4096; /* connections may come meanwhile */
    }
    if (!t)
        return 0;
    for (DWORD i = 0; i < t->dwNumEntries; i++) {
        const MIB_TCPROW_OWNER_PID *r = &t->table[i];
        if (r->dwLocalAddr == local->sin_addr.s_addr && (u_short)r->dwLocalPort == local->sin_port &&
            r->dwRemoteAddr == remote->sin_addr.s_addr && (u_short)r->dwRemotePort == remote->sin_port) {
            state = r->dwState;
            break;
        }
    }
    free(t);
    return state;
}

static DWORD state6(const struct sockaddr_in6 *local, const struct sockaddr_in6 *remote)
{
    DWORD size = 0, state = 0;
    MIB_TCP6TABLE_OWNER_PID *t = NULL;
    for (int tries = 0; tries < 4; tries++) {
        DWORD rc = GetExtendedTcpTable(t, &size, FALSE, AF_INET6, TCP_TABLE_OWNER_PID_ALL, 0);
        if (rc == NO_ERROR)
            break;
        free(t);
        t = NULL;
        if (rc != ERROR_INSUFFICIENT_BUFFER || !(t = malloc(size + 4096)))
            return 0;
        size += 4096;
    }
    if (!t)
        return 0;
    for (DWORD i = 0; i < t->dwNumEntries; i++) {
        const MIB_TCP6ROW_OWNER_PID *r = &t->table[i];
        if (memcmp(r->ucLocalAddr, &local->sin6_addr, 16) == 0 &&
            (u_short)r->dwLocalPort == local->sin6_port &&
            memcmp(r->ucRemoteAddr, &remote->sin6_addr, 16) == 0 &&
            (u_short)r->dwRemotePort == remote->sin6_port) {
            state = r->dwState;
            break;
        }
    }
    free(t);
    return state;
}

/* An IPv4-mapped IPv6 address (a dual-stack listener's IPv4 client) as IPv4. */
static int unmap(const struct sockaddr_in6 *a6, struct sockaddr_in *a4)
{
    static const unsigned char prefix[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    if (memcmp(&a6->sin6_addr, prefix, 12) != 0)
        return 0;
    memset(a4, 0, sizeof *a4);
    a4->sin_family = AF_INET;
    a4->sin_port = a6->sin6_port;
    memcpy(&a4->sin_addr, (const unsigned char *)&a6->sin6_addr + 12, 4);
    return 1;
}

int cli_tcp_unacked(int fd, int fin_sent)
{
    if (!fin_sent)
        return 0;
    struct sockaddr_storage me, peer;
    dx__socklen mlen = sizeof me, plen = sizeof peer;
    if (dx__sock_getsockname(fd, (struct sockaddr *)&me, &mlen) < 0 ||
        dx__sock_getpeername(fd, (struct sockaddr *)&peer, &plen) < 0)
        return 0; /* reset or gone: nothing more will be delivered */
    DWORD state = 0;
    if (me.ss_family == AF_INET) {
        state = state4((const struct sockaddr_in *)&me, (const struct sockaddr_in *)&peer);
    } else if (me.ss_family == AF_INET6) {
        struct sockaddr_in m4, p4;
        const struct sockaddr_in6 *m6 = (const struct sockaddr_in6 *)&me;
        const struct sockaddr_in6 *p6 = (const struct sockaddr_in6 *)&peer;
        /* Windows lists a mapped connection in its IPv4 table; wine follows
         * Linux (/proc/net/tcp6): look in both */
        if (unmap(m6, &m4) && unmap(p6, &p4))
            state = state4(&m4, &p4);
        if (!state)
            state = state6(m6, p6);
    }
    switch (state) {
    case MIB_TCP_STATE_ESTAB:
    case MIB_TCP_STATE_CLOSE_WAIT:
    case MIB_TCP_STATE_FIN_WAIT1:
    case MIB_TCP_STATE_CLOSING:
    case MIB_TCP_STATE_LAST_ACK:
        return 1;
    default:
        return 0;
    }
}
