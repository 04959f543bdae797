/* sockopts.c: -O NAME=VALUE (socket options from libduplex's table) and
 * --show-opts (what the kernel reports for a socket once it is set up). */
#define _GNU_SOURCE
#include "cli.h"
#include "os.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

/* "keepalive, keepidle, ..." */
static void key_list(char *buf, size_t len)
{
    buf[0] = '\0';
    for (int id = 0; dx_sockopt_describe(id); id++) {
        if (dx_sockopt_describe(id)->optname < 0)
            continue; /* not on this platform */
        size_t used = strlen(buf);
        snprintf(buf + used, len - used, "%s%s", used ? ", " : "", dx_sockopt_describe(id)->key);
    }
}

int cli_sockopt_add(struct options *o, const char *text)
{
    dx_sockopt opt;
    int rc = dx_sockopt_parse(text, &opt);
    if (rc == -ENOENT) {
        char names[1024];
        key_list(names, sizeof names);
        size_t nlen = strcspn(text, "=");
        cli_error("unknown socket option '%.*s' for -O; valid names: %s (any case, with or "
                  "without their SO_/TCP_/IP_ prefix)", (int)nlen, text, names);
        return EXIT_USAGE;
    }
    if (rc < 0) {
        const dx_sockopt_desc *d = dx_sockopt_describe(opt.id);
        const char *eq = strchr(text, '=');
        if (!eq)
            cli_error("-O %s needs a value: -O %s=VALUE, VALUE %s", text, d->key, d->expects);
        else
            cli_error("invalid -O %s value '%s'%s: expected %s", d->key, eq + 1,
                      rc == -ERANGE ? " (out of range)" : "", d->expects);
        return EXIT_USAGE;
    }
    const dx_sockopt_desc *d = dx_sockopt_describe(opt.id);
    if (d && d->optname < 0) {
        /* in the table on every platform (same ids), but not in this one's kernel */
        cli_error("-O %s: socket option %s is not available on %s", d->key, d->name, DX_OS_NAME);
        return EXIT_USAGE;
    }
    for (int i = 0; i < o->nsockopts; i++) {
        if (o->sockopts[i].id == opt.id) { /* given again: the last one wins */
            o->sockopts[i] = opt;
            return 0;
        }
    }
    if (o->nsockopts == MAX_SOCKOPTS) {
        cli_error("too many -O options (at most %d)", MAX_SOCKOPTS);
        return EXIT_USAGE;
    }
    o->sockopts[o->nsockopts++] = opt;
    return 0;
}

void cli_sockopt_error(const struct options *o, int index, const char *where, int code)
{
    if (index < 0 || index >= o->nsockopts) {
        cli_error("%s: %s", where, dx_strerror(code));
        return;
    }
    const dx_sockopt *opt = &o->sockopts[index];
    const dx_sockopt_desc *d = dx_sockopt_describe(opt->id);
    char value[64];
    dx_sockopt_format(opt, value, sizeof value);
    const char *hint = "";
    if (code == -EPERM || code == -EACCES)
        hint = " (needs privileges: CAP_NET_ADMIN)";
    else if (code == -ENOPROTOOPT || code == -EOPNOTSUPP)
        hint = DX_OS_WINDOWS ? " (not supported by this version of Windows, or on this kind of socket)"
                             : " (not supported on this kind of socket)";
    cli_error("option %s (-O %s=%s) refused on %s: %s%s", d->name, d->key, value, where,
              dx_strerror(code), hint);
}

int cli_apply_sockopts(const struct options *o, int fd, const char *where)
{
    int failed = -1;
    int rc = dx_sockopt_apply_all(fd, o->sockopts, o->nsockopts, &failed);
    if (rc < 0)
        cli_sockopt_error(o, failed, where, rc);
    return rc;
}

void cli_default_nodelay(const struct options *o, int fd)
{
    for (int i = 0; i < o->nsockopts; i++) {
        const dx_sockopt_desc *d = dx_sockopt_describe(o->sockopts[i].id);
        if (d && d->level == IPPROTO_TCP && d->optname == TCP_NODELAY)
            return; /* the user's choice, applied with the other -O */
    }
    int one = 1;
    (void)dx__sock_setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one); /* ENOTSUP/EOPNOTSUPP: Unix */
}

/* ---- --show-opts ---- */

static void show_int(int fd, int level, int name, const char *text, const char *note)
{
    int v = 0;
    dx__socklen len = sizeof v;
    if (dx__sock_getsockopt(fd, level, name, &v, &len) < 0)
        fprintf(stderr, "duplex: option %s = ? (%s)\n", text, dx_strerror(-errno));
    else
        fprintf(stderr, "duplex: option %s = %d%s\n", text, v, note ? note : "");
}

/* The value -O gave for id (the last one wins), or NULL. */
static const dx_sockopt *given(const struct options *o, int id)
{
    for (int i = o->nsockopts - 1; i >= 0; i--)
        if (o->sockopts[i].id == id)
            return &o->sockopts[i];
    return NULL;
}

static void show_table(const struct options *o, int fd, int id)
{
    dx_sockopt v;
    const char *name = dx_sockopt_name(id);
    if (dx_sockopt_describe(id)->optname < 0)
        return; /* not on this platform (SO_REUSEPORT on Windows) */
    int rc = dx_sockopt_get(fd, id, &v);
    char text[64];
    if (rc < 0) {
        fprintf(stderr, "duplex: option %s = ? (%s)\n", name, dx_strerror(rc));
        return;
    }
    const char *note = "";
    char buf_note[96];
    const dx_sockopt_desc *d = dx_sockopt_describe(id);
    const dx_sockopt *set = given(o, id);
    if (!DX_OS_WINDOWS && d->level == SOL_SOCKET && (d->optname == SO_RCVBUF || d->optname == SO_SNDBUF) &&
        set) {
        /* only about a value the user asked for: the default is the kernel's own */
        if (v.value.num == 2 * set->value.num)
            note = " (kernel doubles the requested value)";
        else {
            snprintf(buf_note, sizeof buf_note, " (asked for %lld: the kernel doubles it, within "
                     "net.core.%s)", set->value.num, d->optname == SO_RCVBUF ? "rmem_max"
                     : "wmem_max");
            note = buf_note;
        }
    }
    else if (d->type == DX_SOCKOPT_LINGER && v.value.num == 0)
        note = " (close sends a reset)";
    fprintf(stderr, "duplex: option %s = %s%s\n", name, dx_sockopt_format(&v, text, sizeof text), note);
}

static int find_id(const char *name)
{
    return dx_sockopt_lookup(name, strlen(name));
}

static void show_sysctls(void)
{
    static const char *const names[] = {"rmem_default", "rmem_max", "wmem_default", "wmem_max",
                                        "somaxconn"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        char path[64], value[64] = "?";
        snprintf(path, sizeof path, "/proc/sys/net/core/%s", names[i]);
        FILE *f = fopen(path, DX_FOPEN_READ);
        if (f) {
            if (!fgets(value, sizeof value, f))
                snprintf(value, sizeof value, "?");
            fclose(f);
            value[strcspn(value, "\n")] = '\0';
        }
        fprintf(stderr, "duplex: sysctl net.core.%s = %s\n", names[i], value);
    }
}

void cli_show_opts(const struct options *o, int fd, const char *what)
{
    static int sysctls_shown;
    if (!o->show_opts)
        return;
    dx_addr me, peer;
    char local[DX_ADDR_STRLEN] = "?", remote[DX_ADDR_STRLEN] = "";
    me.ss.ss_family = AF_UNSPEC;
    if (dx_sock_local(fd, &me) == 0)
        dx_addr_format(&me, local, sizeof local);
    if (dx_sock_peer(fd, &peer) == 0)
        dx_addr_format(&peer, remote, sizeof remote);
    if (remote[0] && strcmp(remote, "@") != 0)
        fprintf(stderr, "duplex: socket options (%s %s, peer %s):\n", what, local, remote);
    else
        fprintf(stderr, "duplex: socket options (%s %s):\n", what, local);

    int domain = 0, proto = 0;
    dx__socklen len = sizeof domain;
#ifdef SO_DOMAIN
    (void)dx__sock_getsockopt(fd, SOL_SOCKET, SO_DOMAIN, &domain, &len);
    len = sizeof proto;
    (void)dx__sock_getsockopt(fd, SOL_SOCKET, SO_PROTOCOL, &proto, &len);
#else
    /* Windows has neither SO_DOMAIN nor SO_PROTOCOL: the address tells the
     * family; a stream socket of an IP family is TCP */
    int type = 0;
    domain = me.ss.ss_family;
    (void)dx__sock_getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len);
    if ((domain == AF_INET || domain == AF_INET6) && type == SOCK_STREAM)
        proto = IPPROTO_TCP;
#endif
    int tcp = proto == IPPROTO_TCP && domain != AF_UNIX;

    show_int(fd, SOL_SOCKET, SO_ACCEPTCONN, "SO_ACCEPTCONN", NULL);
#ifdef SO_DOMAIN
    show_int(fd, SOL_SOCKET, SO_DOMAIN, "SO_DOMAIN",
             domain == AF_INET ? " (AF_INET)" : domain == AF_INET6 ? " (AF_INET6)"
             : domain == AF_UNIX ? " (AF_UNIX)" : NULL);
    show_int(fd, SOL_SOCKET, SO_PROTOCOL, "SO_PROTOCOL", tcp ? " (IPPROTO_TCP)" : NULL);
#endif
    show_int(fd, SOL_SOCKET, SO_TYPE, "SO_TYPE", " (SOCK_STREAM)");
    show_int(fd, SOL_SOCKET, SO_ERROR, "SO_ERROR", NULL);

    /* the fixed list, then any other option given with -O */
    static const char *const fixed_all[] = {"SO_RCVBUF", "SO_SNDBUF", "SO_KEEPALIVE", "SO_LINGER",
                                            "SO_REUSEADDR", "SO_REUSEPORT"};
    static const char *const fixed_tcp[] = {"TCP_NODELAY", "TCP_KEEPIDLE", "TCP_KEEPINTVL",
                                            "TCP_KEEPCNT"};
    int shown[64] = {0};
    for (size_t i = 0; i < sizeof fixed_all / sizeof fixed_all[0]; i++) {
        int id = find_id(fixed_all[i]);
        show_table(o, fd, id);
        shown[id] = 1;
        if (i == 2 && tcp) /* keepalive timings next to SO_KEEPALIVE, then TCP_NODELAY */
            for (size_t j = 0; j < sizeof fixed_tcp / sizeof fixed_tcp[0]; j++) {
                int tid = find_id(fixed_tcp[j]);
                show_table(o, fd, tid);
                shown[tid] = 1;
            }
    }
    for (int i = 0; i < o->nsockopts; i++) {
        int id = o->sockopts[i].id;
        if (id >= 0 && id < 64 && !shown[id]) {
            show_table(o, fd, id);
            shown[id] = 1;
        }
    }
#ifdef SO_PEERCRED
    if (domain == AF_UNIX && !(what && strcmp(what, "listening") == 0)) {
        struct ucred cred;
        len = sizeof cred;
        if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) == 0)
            fprintf(stderr, "duplex: option SO_PEERCRED = pid %ld uid %ld gid %ld\n",
                    (long)cred.pid, (long)cred.uid, (long)cred.gid);
        else
            fprintf(stderr, "duplex: option SO_PEERCRED = ? (%s)\n", dx_strerror(-errno));
    }
#endif
    if (!sysctls_shown && !DX_OS_WINDOWS) { /* Linux's /proc/sys/net/core */
        sysctls_shown = 1;
        show_sysctls();
    }
    fflush(stderr);
}
