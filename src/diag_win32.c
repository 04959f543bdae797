/* diag_win32.c: socket listing on Windows. diag.c reads Linux's sock_diag
 * netlink and /proc/net; Windows has neither, and its own tables come from
 * the IP Helper API: GetTcpTable/GetTcp6Table/GetUdpTable/GetUdp6Table.
 * Not the GetExtended*Table OWNER_PID classes: nothing here uses the PID,
 * and wine finds each socket's owner by walking /proc (30 s for 8,000
 * sockets on the host; CI's test_diag timed out at 60 s). What the tables
 * lack: queue sizes (0 here), owners (uid -1), inodes (0), Unix sockets
 * (none: the library refuses AF_UNIX on Windows). dx_sock_procs()
 * (descriptors of processes, by inode) is -ENOSYS: Windows sockets have no
 * inode to match. *source is 0: neither of the Linux sources. Under wine
 * the tables are the host's (wine reads /proc/net). */
#include "os.h"

#include <iphlpapi.h>

#include <stdlib.h>
#include <string.h>

struct list {
    dx_sockinfo *v;
    size_t n, cap;
};

static dx_sockinfo *list_add(struct list *l)
{
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 64;
        dx_sockinfo *v = realloc(l->v, cap * sizeof *v);
        if (!v)
            return NULL;
        l->v = v;
        l->cap = cap;
    }
    dx_sockinfo *s = &l->v[l->n++];
    memset(s, 0, sizeof *s);
    s->uid = -1;
    return s;
}

/* MIB_TCP_STATE_* (1 CLOSED .. 12 DELETE_TCB) as DX_SS_* */
static int tcp_state(DWORD st)
{
    static const int map[] = {
        0, DX_SS_CLOSE, DX_SS_LISTEN, DX_SS_SYN_SENT, DX_SS_SYN_RECV, DX_SS_ESTABLISHED,
        DX_SS_FIN_WAIT1, DX_SS_FIN_WAIT2, DX_SS_CLOSE_WAIT, DX_SS_CLOSING, DX_SS_LAST_ACK,
        DX_SS_TIME_WAIT, DX_SS_CLOSE,
    };
    return st < sizeof map / sizeof map[0] && map[st] ? map[st] : DX_SS_CLOSE;
}

static void set4(struct sockaddr_storage *ss, DWORD addr, DWORD port)
{
    struct sockaddr_in *in = (struct sockaddr_in *)ss;
    memset(ss, 0, sizeof *ss);
    in->sin_family = AF_INET;
    in->sin_addr.s_addr = addr;       /* network order already */
    in->sin_port = (u_short)port;     /* the low 16 bits, network order */
}

static void set6(struct sockaddr_storage *ss, const UCHAR addr[16], DWORD scope, DWORD port)
{
    struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)ss;
    memset(ss, 0, sizeof *ss);
    in6->sin6_family = AF_INET6;
    memcpy(&in6->sin6_addr, addr, 16);
    in6->sin6_scope_id = scope;
    in6->sin6_port = (u_short)port;
}

/* A failed table call as -errno. ERROR_MORE_DATA is wine's "the table kept
 * growing while I filled it" (its NsiAllocateAndGetTable gives up after 5
 * tries, on a host whose sockets come and go faster than it reads them):
 * dx__ip_table_get() tries again before it says -EAGAIN. */
static int table_errno(DWORD r)
{
    switch (r) {
    case ERROR_NOT_SUPPORTED:
        return -EAFNOSUPPORT;
    case ERROR_MORE_DATA:
    case ERROR_INSUFFICIENT_BUFFER:
        return -EAGAIN;
    case ERROR_NOT_ENOUGH_MEMORY:
    case ERROR_OUTOFMEMORY:
        return -ENOMEM;
    case ERROR_ACCESS_DENIED:
        return -EACCES;
    case ERROR_FILE_NOT_FOUND: /* wine: no \\.\Nsi device (nsiproxy not running) */
    case ERROR_PATH_NOT_FOUND:
        return -ENODEV;
    default:
        return -EIO;
    }
}

/* The IP Helper call for one table (dx__ip_table_fn). */
static DWORD ip_helper_table(int tcp, int family, void *buf, ULONG *size)
{
    if (tcp)
        return family == AF_INET ? GetTcpTable(buf, size, FALSE) : GetTcp6Table(buf, size, FALSE);
    return family == AF_INET ? GetUdpTable(buf, size, FALSE) : GetUdp6Table(buf, size, FALSE);
}

/* One table into a malloc'd buffer: 0 or -errno. The table changes between
 * the call that sizes it and the call that fills it, and on a busy host
 * many times in a row: every "it changed" is tried again, up to
 * DX__IP_TABLE_TRIES times, each with room for more rows than last seen. */
int dx__ip_table_get(dx__ip_table_fn get, int tcp, int family, void **out)
{
    ULONG size = 0;
    void *buf = NULL;
    DWORD r = NO_ERROR;
    *out = NULL;
    for (int tries = 0; tries < DX__IP_TABLE_TRIES; tries++) {
        r = get(tcp, family, buf, &size);
        if (r == NO_ERROR && buf) {
            *out = buf;
            return 0;
        }
        if (r != NO_ERROR && r != ERROR_INSUFFICIENT_BUFFER && r != ERROR_MORE_DATA)
            break;
        free(buf);
        buf = NULL;
        if (r == ERROR_MORE_DATA)
            continue; /* no size was given: ask for it again */
        size += size / 8 + 4096; /* rows added before the next call */
        buf = malloc(size);
        if (!buf)
            return -ENOMEM;
    }
    free(buf);
    return table_errno(r);
}

static int get_table(int tcp, int family, void **out)
{
    return dx__ip_table_get(ip_helper_table, tcp, family, out);
}

static int add_tcp(struct list *l, int family)
{
    void *buf;
    int rc = get_table(1, family, &buf);
    if (rc < 0)
        return rc;
    if (family == AF_INET) {
        MIB_TCPTABLE *t = buf;
        for (DWORD i = 0; i < t->dwNumEntries; i++) {
            dx_sockinfo *s = list_add(l);
            if (!s) {
                free(buf);
                return -ENOMEM;
            }
            s->proto = DX_SL_TCP;
            s->family = AF_INET;
            s->type = SOCK_STREAM;
            s->state = tcp_state(t->table[i].dwState);
            set4(&s->local, t->table[i].dwLocalAddr, t->table[i].dwLocalPort);
            if (s->state != DX_SS_LISTEN)
                set4(&s->peer, t->table[i].dwRemoteAddr, t->table[i].dwRemotePort);
        }
    } else {
        MIB_TCP6TABLE *t = buf;
        for (DWORD i = 0; i < t->dwNumEntries; i++) {
            dx_sockinfo *s = list_add(l);
            if (!s) {
                free(buf);
                return -ENOMEM;
            }
            s->proto = DX_SL_TCP;
            s->family = AF_INET6;
            s->type = SOCK_STREAM;
            s->state = tcp_state(t->table[i].State);
            set6(&s->local, t->table[i].LocalAddr.s6_addr, t->table[i].dwLocalScopeId,
                 t->table[i].dwLocalPort);
            if (s->state != DX_SS_LISTEN)
                set6(&s->peer, t->table[i].RemoteAddr.s6_addr, t->table[i].dwRemoteScopeId,
                     t->table[i].dwRemotePort);
        }
    }
    free(buf);
    return 0;
}

static int add_udp(struct list *l, int family)
{
    void *buf;
    int rc = get_table(0, family, &buf);
    if (rc < 0)
        return rc;
    if (family == AF_INET) {
        MIB_UDPTABLE *t = buf;
        for (DWORD i = 0; i < t->dwNumEntries; i++) {
            dx_sockinfo *s = list_add(l);
            if (!s) {
                free(buf);
                return -ENOMEM;
            }
            s->proto = DX_SL_UDP;
            s->family = AF_INET;
            s->type = SOCK_DGRAM;
            s->state = DX_SS_CLOSE; /* ss's UNCONN: the table has no peers */
            set4(&s->local, t->table[i].dwLocalAddr, t->table[i].dwLocalPort);
        }
    } else {
        MIB_UDP6TABLE *t = buf;
        for (DWORD i = 0; i < t->dwNumEntries; i++) {
            dx_sockinfo *s = list_add(l);
            if (!s) {
                free(buf);
                return -ENOMEM;
            }
            s->proto = DX_SL_UDP;
            s->family = AF_INET6;
            s->type = SOCK_DGRAM;
            s->state = DX_SS_CLOSE;
            set6(&s->local, t->table[i].dwLocalAddr.s6_addr, t->table[i].dwLocalScopeId,
                 t->table[i].dwLocalPort);
        }
    }
    free(buf);
    return 0;
}

int dx_sock_list(unsigned flags, dx_sockinfo **out, unsigned *source)
{
    *out = NULL;
    if (source)
        *source = 0;
    if (flags & (DX_SL_NETLINK | DX_SL_PROC))
        return -ENOSYS; /* Linux's sources, asked for by name */
    unsigned protos = flags & (DX_SL_TCP | DX_SL_UDP | DX_SL_UNIX);
    if (!protos)
        protos = DX_SL_TCP | DX_SL_UDP | DX_SL_UNIX;
    unsigned fams = flags & (DX_SL_IPV4 | DX_SL_IPV6);
    if (!fams)
        fams = DX_SL_IPV4 | DX_SL_IPV6;
    struct list l = {0};
    int rc = 0, ok = 0;
    for (int f = 0; f < 2; f++) {
        int family = f ? AF_INET6 : AF_INET;
        if (!(fams & (f ? DX_SL_IPV6 : DX_SL_IPV4)))
            continue;
        for (int p = 0; p < 2; p++) {
            if (!(protos & (p ? DX_SL_UDP : DX_SL_TCP)))
                continue;
            int r = p ? add_udp(&l, family) : add_tcp(&l, family);
            if (r == -ENOMEM) {
                free(l.v);
                return r;
            }
            if (r < 0)
                rc = r; /* e.g. no IPv6 stack: the other tables still count */
            else
                ok = 1;
        }
    }
    if (!ok && rc < 0 && (protos & (DX_SL_TCP | DX_SL_UDP))) {
        free(l.v);
        return rc;
    }
    /* No dx__sock_dedupe() here, though wine fills its tables from /proc/net
     * read in chunks, as diag.c does: without inodes, a socket listed twice
     * and two sockets bound alike with SO_REUSEADDR (mDNS's 0.0.0.0:5353)
     * are the same record, and hiding a socket is worse than a repeat. */
    if (l.n == 0) {
        free(l.v);
        l.v = NULL;
    }
    *out = l.v;
    return (int)l.n;
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
