/* test_diag.c: dx_sock_list on Windows (the IP Helper tables): a listener,
 * both ends of a connection and a UDP socket of ours are listed with their
 * states and addresses; dx_sock_procs is -ENOSYS. Runs under wine, whose
 * tables are the host's. */
#include "os.h"
#include "tap.h"

#include <iphlpapi.h>
#include <stdlib.h>
#include <string.h>

/* Ours by the whole local address (127.0.0.1 and the port): the host's
 * table also lists other processes' sockets, which may share a port number
 * on another address (a listener on 0.0.0.0:P while ours is a client's P). */
static const dx_sockinfo *find(const dx_sockinfo *v, int n, int proto, int port, int state)
{
    for (int i = 0; i < n; i++) {
        const struct sockaddr_in *sin = (const struct sockaddr_in *)&v[i].local;
        if (v[i].proto == proto && sin->sin_family == AF_INET && ntohs(sin->sin_port) == port &&
            ntohl(sin->sin_addr.s_addr) == INADDR_LOOPBACK && (state < 0 || v[i].state == state))
            return &v[i];
    }
    return NULL;
}

static void test_sock_list_sees_ours(void)
{
    dx_addr a, ua;
    dx_addr_ip(&a, "127.0.0.1", 0);
    int l = dx_listen(&a, NULL);
    CHECK(l >= 0);
    CHECK_INT(dx_sock_local(l, &a), 0);
    int c = dx_connect_start(&a, NULL);
    CHECK(c >= 0);
    struct pollfd p = {(SOCKET)(intptr_t)c, POLLWRNORM, 0};
    CHECK(dx__os_poll(&p, 1, 5000) == 1);
    dx_addr ca;
    CHECK_INT(dx_sock_local(c, &ca), 0);
    dx_addr_ip(&ua, "127.0.0.1", 0);
    int u = dx_dgram_bind(&ua, NULL);
    CHECK(u >= 0);
    CHECK_INT(dx_sock_local(u, &ua), 0);

    dx_sockinfo *v = NULL;
    unsigned source = 99;
    int n = dx_sock_list(0, &v, &source);
    tap_note("dx_sock_list: %d sockets", n);
    CHECK(n > 0);
    CHECK_INT(source, 0);
    const dx_sockinfo *s = find(v, n, DX_SL_TCP, dx_addr_port(&a), DX_SS_LISTEN);
    CHECK(s != NULL);
    CHECK_STR(dx_sock_state_name(s->state), "LISTEN");
    CHECK_INT(s->uid, -1);
    s = find(v, n, DX_SL_TCP, dx_addr_port(&ca), -1);
    CHECK(s != NULL);
    CHECK_STR(dx_sock_state_name(s->state), "ESTAB");
    CHECK_INT(ntohs(((const struct sockaddr_in *)&s->peer)->sin_port), dx_addr_port(&a));
    s = find(v, n, DX_SL_UDP, dx_addr_port(&ua), -1);
    CHECK(s != NULL);
    CHECK_INT(s->type, SOCK_DGRAM);
    free(v);

    /* filters: UDP only, IPv4 only */
    n = dx_sock_list(DX_SL_UDP | DX_SL_IPV4, &v, NULL);
    CHECK(n > 0);
    for (int i = 0; i < n; i++)
        CHECK(v[i].proto == DX_SL_UDP && v[i].family == AF_INET);
    free(v);
    /* the Linux sources by name: not here */
    CHECK_INT(dx_sock_list(DX_SL_NETLINK, &v, NULL), -ENOSYS);
    CHECK(v == NULL);
    dx_sockproc *pr = NULL;
    CHECK_INT(dx_sock_procs(&pr), -ENOSYS);
    dx_close(u);
    dx_close(c);
    dx_close(l);
}

/* ---- a table that changes while it is read (dx__ip_table_get) ---------- */

/* A fake IP Helper call: `changes` calls answer ERROR_MORE_DATA (wine's "the
 * table grew while I filled it", 5 times in a row inside one call), or
 * ERROR_INSUFFICIENT_BUFFER for a table one row bigger than the last time,
 * before a one-row MIB_TCPTABLE is given. */
static int changes, grow, calls;

static unsigned long fake_table(int tcp, int family, void *buf, unsigned long *size)
{
    (void)tcp, (void)family;
    calls++;
    if (calls <= changes && !grow)
        return ERROR_MORE_DATA;
    unsigned long need = sizeof(MIB_TCPTABLE) + (unsigned long)(grow ? calls : 0) * sizeof(MIB_TCPROW);
    if (calls <= changes || !buf || *size < need) {
        *size = need;
        return ERROR_INSUFFICIENT_BUFFER;
    }
    MIB_TCPTABLE *t = buf;
    t->dwNumEntries = 1;
    memset(&t->table[0], 0, sizeof t->table[0]);
    t->table[0].dwState = MIB_TCP_STATE_LISTEN;
    t->table[0].dwLocalPort = htons(4242);
    return NO_ERROR;
}

static void test_table_that_keeps_changing(void)
{
    void *buf = NULL;
    /* a busy host: the table changed 20 times in a row, then it is read */
    changes = 20, grow = 0, calls = 0;
    CHECK_INT(dx__ip_table_get(fake_table, 1, AF_INET, &buf), 0);
    CHECK(buf != NULL);
    if (buf)
        CHECK_INT(ntohs((u_short)((MIB_TCPTABLE *)buf)->table[0].dwLocalPort), 4242);
    free(buf);
    /* it grew between sizing and filling, 20 times */
    changes = 20, grow = 1, calls = 0;
    CHECK_INT(dx__ip_table_get(fake_table, 1, AF_INET, &buf), 0);
    CHECK(buf != NULL);
    free(buf);
    /* it never stops changing: a bounded number of tries, then -EAGAIN */
    changes = 1 << 30, grow = 0, calls = 0;
    CHECK_INT(dx__ip_table_get(fake_table, 1, AF_INET, &buf), -EAGAIN);
    CHECK(buf == NULL);
    CHECK_INT(calls, DX__IP_TABLE_TRIES);
    changes = 1 << 30, grow = 1, calls = 0;
    CHECK_INT(dx__ip_table_get(fake_table, 1, AF_INET, &buf), -EAGAIN);
    CHECK(buf == NULL);
}

TAP_MAIN(T(test_sock_list_sees_ours), T(test_table_that_keeps_changing))
