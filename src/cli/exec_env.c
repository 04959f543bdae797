/* exec_env.c: the environment an --exec/--sh-exec child gets, the same on
 * POSIX (exec.c: setenv in the child) and Windows (exec_win32.c: the
 * environment block of CreateProcess). */
#include "cli.h"

#include <stdio.h>
#include <string.h>

const char *const exec_env_names[EXEC_ENV_NAMES] = {
    "DUPLEX_PEER_ADDR", "DUPLEX_PEER_PORT", "NCAT_REMOTE_ADDR", "NCAT_REMOTE_PORT",
    "DUPLEX_LOCAL_ADDR", "DUPLEX_LOCAL_PORT", "NCAT_LOCAL_ADDR", "NCAT_LOCAL_PORT",
    "DUPLEX_PROTO", "NCAT_PROTO",
};

/* Appends "NAME=VALUE\0" to out (len bytes, *used so far) if it fits. */
static void add(char *out, size_t len, size_t *used, const char *name, const char *value)
{
    int n = snprintf(out + *used, len - *used, "%s=%s", name, value);
    if (n >= 0 && (size_t)n < len - *used)
        *used += (size_t)n + 1;
}

/* DUPLEX_<WHO>_ADDR/_PORT and NCAT_<NCAT_WHO>_ADDR/_PORT for an IP address
 * (the host without [brackets]); a Unix peer gives DUPLEX_<WHO>_ADDR only. */
static void add_endpoint(char *out, size_t len, size_t *used, const char *who,
                         const char *ncat_who, const dx_addr *a)
{
    char text[DX_ADDR_STRLEN], name[32], port[16];
    dx_addr_format(a, text, sizeof text);
    int p = dx_addr_port(a);
    char *host = text;
    if (p >= 0) {
        char *colon = strrchr(text, ':');
        if (colon)
            *colon = '\0';
        if (host[0] == '[') { /* [v6] -> v6 */
            host++;
            host[strlen(host) - 1] = '\0';
        }
    }
    snprintf(name, sizeof name, "DUPLEX_%s_ADDR", who);
    add(out, len, used, name, host);
    if (p < 0)
        return;
    snprintf(port, sizeof port, "%d", p);
    snprintf(name, sizeof name, "DUPLEX_%s_PORT", who);
    add(out, len, used, name, port);
    snprintf(name, sizeof name, "NCAT_%s_ADDR", ncat_who);
    add(out, len, used, name, host);
    snprintf(name, sizeof name, "NCAT_%s_PORT", ncat_who);
    add(out, len, used, name, port);
}

size_t exec_env_vars(char *out, size_t len, const struct options *o, int fd,
                     const dx_addr *peer, const dx_addr *local)
{
    size_t used = 0;
    add_endpoint(out, len, &used, "PEER", "REMOTE", peer);
    dx_addr mine;
    if (!local && dx_sock_local(fd, &mine) == 0)
        local = &mine;
    if (local && dx_addr_port(local) >= 0)
        add_endpoint(out, len, &used, "LOCAL", "LOCAL", local);
    /* ncat 7.93 says TCP for every stream (its -U included) and UDP for
     * datagrams; DUPLEX_PROTO tells a Unix socket apart */
    int unix_peer = dx_addr_port(peer) < 0;
    add(out, len, &used, "DUPLEX_PROTO", o->udp ? (unix_peer ? "UNIX-DGRAM" : "UDP")
                                                 : (unix_peer ? "UNIX" : "TCP"));
    add(out, len, &used, "NCAT_PROTO", o->udp ? "UDP" : "TCP");
    return used;
}
