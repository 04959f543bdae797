/* sockets.c: `duplex sockets`, an ss-like lister of TCP, UDP and Unix
 * sockets. The library (dx_sock_list, dx_sock_procs in src/diag.c) asks the
 * kernel; this file parses its own flags, filters and formats (text columns
 * like ss, or --json). */
#define _GNU_SOURCE
#include "cli.h"
#include "os.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#ifndef _WIN32 /* Windows: no user names (no uid), no /etc/services cursor */
#include <pwd.h>
#endif

static const char sockets_usage[] =
"usage: duplex sockets [-altuxpenrH46] [--sport PORT] [--dport PORT] [--state STATE] [--json]\n"
"\n"
"List TCP, UDP and Unix sockets (like ss), from the kernel's sock_diag netlink\n"
"interface, else from /proc/net (DUPLEX_SOCKETS_PROC=1 forces /proc/net).\n"
"Columns: Netid State Recv-Q Send-Q Local Address:Port Peer Address:Port Process.\n"
"Recv-Q/Send-Q of a listening TCP socket: connections waiting to be accepted and\n"
"the backlog. Unix sockets show 'PATH INODE' and '* PEER-INODE'.\n"
"\n"
"  -a, --all                every state\n"
"  -l, --listening          listening (and unconnected datagram) sockets only;\n"
"                           default: connected sockets (not LISTEN, UNCONN,\n"
"                           TIME-WAIT, SYN-RECV)\n"
"  -t, --tcp                TCP sockets    (no -t/-u/-x: all three)\n"
"  -u, --udp                UDP sockets\n"
"  -x, --unix               Unix sockets\n"
"  -4, --ipv4               IPv4 only (and no Unix sockets unless -x)\n"
"  -6, --ipv6               IPv6 only (and no Unix sockets unless -x)\n"
"  -p, --processes          owning processes: users:((\"NAME\",pid=PID,fd=FD))\n"
"  -e, --extended           owner and inode: uid:UID(USER) ino:INODE\n"
"  -n, --numeric            numeric ports (default: service names from\n"
"                           /etc/services; host names never, unless -r)\n"
"  -r, --resolve            host names (reverse DNS)\n"
"  -H, --no-header          no header line\n"
"      --sport PORT         local port PORT (number, N-M range or service name)\n"
"      --dport PORT         peer port PORT\n"
"      --state STATE        only this state (repeatable): established, syn-sent,\n"
"                           syn-recv, fin-wait-1, fin-wait-2, time-wait, closed\n"
"                           (unconn), close-wait, last-ack, listening, closing,\n"
"                           connected, synchronized, all; overrides -a and -l\n"
"      --json               one JSON array, one object per socket, fields:\n"
"                           netid (tcp udp u_str u_dgr u_seq), family (inet\n"
"                           inet6 unix), state (as the State column), recv_q,\n"
"                           send_q, local_addr, local_port, peer_addr,\n"
"                           peer_port (TCP/UDP, numeric; null for Unix), path,\n"
"                           peer_inode (Unix; null for TCP/UDP), inode, uid,\n"
"                           user (null if unknown), processes (with -p: a list\n"
"                           of {pid, fd, name}; else null)\n"
"  -h, --help               this help\n"
"\n"
"Exit status: 0 listed (possibly nothing), 1 the kernel refused both netlink and\n"
"/proc/net, 2 usage error.\n";

enum { OPT_SPORT = 256, OPT_DPORT, OPT_STATE, OPT_JSON };

static const struct option sockets_opts[] = {
    {"all", no_argument, NULL, 'a'},
    {"listening", no_argument, NULL, 'l'},
    {"tcp", no_argument, NULL, 't'},
    {"udp", no_argument, NULL, 'u'},
    {"unix", no_argument, NULL, 'x'},
    {"ipv4", no_argument, NULL, '4'},
    {"ipv6", no_argument, NULL, '6'},
    {"processes", no_argument, NULL, 'p'},
    {"extended", no_argument, NULL, 'e'},
    {"numeric", no_argument, NULL, 'n'},
    {"resolve", no_argument, NULL, 'r'},
    {"no-header", no_argument, NULL, 'H'},
    {"sport", required_argument, NULL, OPT_SPORT},
    {"dport", required_argument, NULL, OPT_DPORT},
    {"state", required_argument, NULL, OPT_STATE},
    {"json", no_argument, NULL, OPT_JSON},
    {"help", no_argument, NULL, 'h'},
    {NULL, 0, NULL, 0},
};

#define ST(x) (1u << (x))
#define ST_ALL (((1u << DX_SS_MAX) - 1) & ~1u)
#define ST_CONNECTED_SET (ST_ALL & ~(ST(DX_SS_LISTEN) | ST(DX_SS_CLOSE)))

struct sopts {
    unsigned protos;       /* DX_SL_TCP|UDP|UNIX */
    unsigned families;     /* DX_SL_IPV4|IPV6, 0: both */
    unsigned states;       /* ST() bits */
    int processes, extended, numeric, resolve, header, json;
    int sport_lo, sport_hi, dport_lo, dport_hi; /* -1: no filter */
};

static const struct {
    const char *name;
    unsigned mask;
} state_names[] = {
    {"established", ST(DX_SS_ESTABLISHED)}, {"estab", ST(DX_SS_ESTABLISHED)},
    {"syn-sent", ST(DX_SS_SYN_SENT)},       {"syn-recv", ST(DX_SS_SYN_RECV)},
    {"fin-wait-1", ST(DX_SS_FIN_WAIT1)},    {"fin-wait-2", ST(DX_SS_FIN_WAIT2)},
    {"time-wait", ST(DX_SS_TIME_WAIT)},     {"closed", ST(DX_SS_CLOSE)},
    {"unconn", ST(DX_SS_CLOSE)},            {"close-wait", ST(DX_SS_CLOSE_WAIT)},
    {"last-ack", ST(DX_SS_LAST_ACK)},       {"listening", ST(DX_SS_LISTEN)},
    {"listen", ST(DX_SS_LISTEN)},           {"closing", ST(DX_SS_CLOSING)},
    {"all", ST_ALL},                        {"connected", ST_CONNECTED_SET},
    {"synchronized", ST_CONNECTED_SET & ~ST(DX_SS_SYN_SENT)},
    {"bucket", ST(DX_SS_SYN_RECV) | ST(DX_SS_TIME_WAIT)},
    {"big", ST_ALL & ~(ST(DX_SS_SYN_RECV) | ST(DX_SS_TIME_WAIT))},
};

static int usage_error(const char *fmt, const char *arg)
{
    fputs("duplex: sockets: ", stderr);
    fprintf(stderr, fmt, arg);
    fputs("\nTry 'duplex sockets --help' for more information.\n", stderr);
    return EXIT_USAGE;
}

static int parse_ports(const char *flag, const char *text, int *lo, int *hi)
{
    if (dx_parse_port_range(text, lo, hi) == 0)
        return 0;
    int p = dx_parse_port(text);
    if (p < 0) {
        fprintf(stderr, "duplex: sockets: %s: invalid port '%s': expected 0-65535, N-M or a service name\n",
                flag, text);
        return -1;
    }
    *lo = *hi = p;
    return 0;
}

static int parse_sockets(int argc, char **argv, struct sopts *o)
{
    memset(o, 0, sizeof *o);
    o->header = 1;
    o->sport_lo = o->dport_lo = -1;
    int all = 0, listening = 0;
    unsigned states = 0;
    optind = 1;
    opterr = 0;
    int c;
    while ((c = getopt_long(argc, argv, ":altux46penrHh", sockets_opts, NULL)) != -1) {
        switch (c) {
        case 'a': all = 1; break;
        case 'l': listening = 1; break;
        case 't': o->protos |= DX_SL_TCP; break;
        case 'u': o->protos |= DX_SL_UDP; break;
        case 'x': o->protos |= DX_SL_UNIX; break;
        case '4': o->families |= DX_SL_IPV4; break;
        case '6': o->families |= DX_SL_IPV6; break;
        case 'p': o->processes = 1; break;
        case 'e': o->extended = 1; break;
        case 'n': o->numeric = 1; break;
        case 'r': o->resolve = 1; break;
        case 'H': o->header = 0; break;
        case OPT_JSON: o->json = 1; break;
        case OPT_SPORT:
            if (parse_ports("--sport", optarg, &o->sport_lo, &o->sport_hi) < 0)
                return EXIT_USAGE;
            break;
        case OPT_DPORT:
            if (parse_ports("--dport", optarg, &o->dport_lo, &o->dport_hi) < 0)
                return EXIT_USAGE;
            break;
        case OPT_STATE: {
            size_t i;
            for (i = 0; i < sizeof state_names / sizeof state_names[0]; i++)
                if (strcasecmp(optarg, state_names[i].name) == 0)
                    break;
            if (i == sizeof state_names / sizeof state_names[0])
                return usage_error("unknown state '%s' (try established, listening, time-wait, "
                                   "close-wait, syn-sent, all)", optarg);
            states |= state_names[i].mask;
            break;
        }
        case 'h':
            fputs(sockets_usage, stdout);
            return -1;
        case ':':
            return usage_error("option '%s' needs an argument", argv[optind - 1]);
        default:
            if (optopt) {
                char flag[3] = {'-', (char)optopt, '\0'};
                return usage_error("unknown option '%s'", flag);
            }
            return usage_error("unknown option '%s'", argv[optind - 1]);
        }
    }
    if (optind < argc)
        return usage_error("unexpected argument '%s' (sockets takes only options)", argv[optind]);
    if (!o->protos)
        o->protos = o->families ? DX_SL_TCP | DX_SL_UDP : DX_SL_TCP | DX_SL_UDP | DX_SL_UNIX;
    if (o->families == (DX_SL_IPV4 | DX_SL_IPV6))
        o->families = 0;
    if (states)
        o->states = states;
    else if (all)
        o->states = ST_ALL;
    else if (listening)
        o->states = ST(DX_SS_LISTEN) | ST(DX_SS_CLOSE);
    else
        o->states = ST_ALL & ~(ST(DX_SS_LISTEN) | ST(DX_SS_CLOSE) | ST(DX_SS_TIME_WAIT) | ST(DX_SS_SYN_RECV));
    return 0;
}

/* ---- one socket ------------------------------------------------------------ */

static int sa_port(const struct sockaddr_storage *ss)
{
    if (ss->ss_family == AF_INET)
        return ntohs(((const struct sockaddr_in *)ss)->sin_port);
    if (ss->ss_family == AF_INET6)
        return ntohs(((const struct sockaddr_in6 *)ss)->sin6_port);
    return 0;
}

static int sa_is_any(const struct sockaddr_storage *ss)
{
    if (ss->ss_family == AF_INET)
        return ((const struct sockaddr_in *)ss)->sin_addr.s_addr == 0;
    if (ss->ss_family == AF_INET6)
        return IN6_IS_ADDR_UNSPECIFIED(&((const struct sockaddr_in6 *)ss)->sin6_addr);
    return 1;
}

static void sa_numeric(const struct sockaddr_storage *ss, char *buf, size_t len)
{
    const void *a = ss->ss_family == AF_INET ? (const void *)&((const struct sockaddr_in *)ss)->sin_addr
                                             : (const void *)&((const struct sockaddr_in6 *)ss)->sin6_addr;
    if (!inet_ntop(ss->ss_family, a, buf, (socklen_t)len))
        snprintf(buf, len, "?");
}

static int want(const struct sopts *o, const dx_sockinfo *s)
{
    if (!(o->states & ST(s->state < DX_SS_MAX && s->state > 0 ? s->state : 0)))
        return 0;
    if (o->sport_lo >= 0 || o->dport_lo >= 0) {
        if (s->family == AF_UNIX)
            return 0;
        int sp = sa_port(&s->local), dp = sa_port(&s->peer);
        if (o->sport_lo >= 0 && (sp < o->sport_lo || sp > o->sport_hi))
            return 0;
        if (o->dport_lo >= 0 && (dp < o->dport_lo || dp > o->dport_hi))
            return 0;
    }
    return 1;
}

static const char *netid(const dx_sockinfo *s)
{
    if (s->proto == DX_SL_TCP)
        return "tcp";
    if (s->proto == DX_SL_UDP)
        return "udp";
    if (s->type == SOCK_DGRAM)
        return "u_dgr";
    if (s->type == SOCK_SEQPACKET)
        return "u_seq";
    return "u_str";
}

static const char *user_name(int64_t uid)
{
    static int64_t last = -2;
    static char name[64];
    if (uid < 0)
        return NULL;
    if (uid != last) {
#ifdef _WIN32
        name[0] = '\0';
#else
        struct passwd *pw = getpwuid((uid_t)uid);
        if (pw)
            snprintf(name, sizeof name, "%s", pw->pw_name);
        else
            name[0] = '\0';
#endif
        last = uid;
    }
    return name[0] ? name : NULL;
}

/* "ADDR:PORT" as ss prints it: [v6], port 0 as '*', names per -n/-r. */
static void fmt_inet(const struct sopts *o, const dx_sockinfo *s, const struct sockaddr_storage *ss,
                     char *buf, size_t len)
{
    char host[NI_MAXHOST], port[32];
    int p = sa_port(ss);
    int named = 0;
    if (o->resolve && !sa_is_any(ss)) {
        socklen_t sl = ss->ss_family == AF_INET ? sizeof(struct sockaddr_in) : sizeof(struct sockaddr_in6);
        named = getnameinfo((const struct sockaddr *)ss, sl, host, sizeof host, NULL, 0, NI_NAMEREQD) == 0;
    }
    if (!named)
        sa_numeric(ss, host, sizeof host);
    const struct servent *se = NULL;
    if (p == 0)
        snprintf(port, sizeof port, "*");
    else if (!o->numeric && (se = getservbyport(htons((uint16_t)p), s->proto == DX_SL_TCP ? "tcp" : "udp")))
        snprintf(port, sizeof port, "%s", se->s_name);
    else
        snprintf(port, sizeof port, "%d", p);
    if (ss->ss_family == AF_INET6 && !named)
        snprintf(buf, len, "[%s]:%s", host, port);
    else
        snprintf(buf, len, "%s:%s", host, port);
}

/* ---- output ------------------------------------------------------------------ */

struct procs {
    dx_sockproc *v;
    int n;
};

/* The first record for inode (the array is sorted), or -1. */
static int procs_find(const struct procs *p, uint64_t inode)
{
    int lo = 0, hi = p->n;
    while (lo < hi) {
        int mid = lo + (hi - lo) / 2;
        if (p->v[mid].inode < inode)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < p->n && p->v[lo].inode == inode ? lo : -1;
}

static void json_str(FILE *f, const char *s)
{
    if (!s) {
        fputs("null", f);
        return;
    }
    fputc('"', f);
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\')
            fprintf(f, "\\%c", c);
        else if (c < 0x20 || c == 0x7f)
            fprintf(f, "\\u%04x", c);
        else
            fputc(c, f);
    }
    fputc('"', f);
}

static void print_json(const struct sopts *o, const dx_sockinfo *s, const struct procs *pr, int first)
{
    FILE *f = stdout;
    fputs(first ? "\n{" : ",\n{", f);
    fprintf(f, "\"netid\":\"%s\",\"family\":\"%s\",\"state\":\"%s\",\"recv_q\":%u,\"send_q\":%u,", netid(s),
            s->family == AF_INET ? "inet" : s->family == AF_INET6 ? "inet6" : "unix",
            dx_sock_state_name(s->state), s->rqueue, s->wqueue);
    if (s->family == AF_UNIX) {
        fputs("\"local_addr\":null,\"local_port\":null,\"peer_addr\":null,\"peer_port\":null,\"path\":", f);
        json_str(f, s->path[0] ? s->path : NULL);
        fprintf(f, ",\"peer_inode\":%llu,", (unsigned long long)s->peer_inode);
    } else {
        char a[INET6_ADDRSTRLEN], b[INET6_ADDRSTRLEN];
        sa_numeric(&s->local, a, sizeof a);
        sa_numeric(&s->peer, b, sizeof b);
        fprintf(f, "\"local_addr\":\"%s\",\"local_port\":%d,\"peer_addr\":\"%s\",\"peer_port\":%d,"
                   "\"path\":null,\"peer_inode\":null,",
                a, sa_port(&s->local), b, sa_port(&s->peer));
    }
    fprintf(f, "\"inode\":%llu,\"uid\":", (unsigned long long)s->inode);
    if (s->uid >= 0)
        fprintf(f, "%lld", (long long)s->uid);
    else
        fputs("null", f);
    fputs(",\"user\":", f);
    json_str(f, user_name(s->uid));
    fputs(",\"processes\":", f);
    if (!o->processes) {
        fputs("null}", f);
        return;
    }
    fputc('[', f);
    int i = s->inode ? procs_find(pr, s->inode) : -1;
    for (int k = i; k >= 0 && k < pr->n && pr->v[k].inode == s->inode; k++) {
        fprintf(f, "%s{\"pid\":%d,\"fd\":%d,\"name\":", k > i ? "," : "", pr->v[k].pid, pr->v[k].fd);
        json_str(f, pr->v[k].name);
        fputc('}', f);
    }
    fputs("]}", f);
}

enum { COL_NETID, COL_STATE, COL_RQ, COL_SQ, COL_LOCAL, COL_PEER, COL_REST, NCOLS };

struct row {
    char *col[NCOLS];
};

static char *xstrdup(const char *s)
{
    char *d = strdup(s);
    if (!d) {
        cli_error("sockets: out of memory");
        exit(EXIT_IO);
    }
    return d;
}

static void text_row(const struct sopts *o, const dx_sockinfo *s, const struct procs *pr, struct row *r)
{
    char buf[NI_MAXHOST + 64];
    r->col[COL_NETID] = xstrdup(netid(s));
    r->col[COL_STATE] = xstrdup(dx_sock_state_name(s->state));
    snprintf(buf, sizeof buf, "%u", s->rqueue);
    r->col[COL_RQ] = xstrdup(buf);
    snprintf(buf, sizeof buf, "%u", s->wqueue);
    r->col[COL_SQ] = xstrdup(buf);
    if (s->family == AF_UNIX) {
        snprintf(buf, sizeof buf, "%s %llu", s->path[0] ? s->path : "*", (unsigned long long)s->inode);
        r->col[COL_LOCAL] = xstrdup(buf);
        snprintf(buf, sizeof buf, "* %llu", (unsigned long long)s->peer_inode);
        r->col[COL_PEER] = xstrdup(buf);
    } else {
        fmt_inet(o, s, &s->local, buf, sizeof buf);
        r->col[COL_LOCAL] = xstrdup(buf);
        fmt_inet(o, s, &s->peer, buf, sizeof buf);
        r->col[COL_PEER] = xstrdup(buf);
    }
    /* Process column, then -e fields */
    size_t cap = 256, len = 0;
    char *rest = malloc(cap);
    if (!rest) {
        cli_error("sockets: out of memory");
        exit(EXIT_IO);
    }
    rest[0] = '\0';
#define APPEND(...)                                                                  \
    do {                                                                             \
        int need_ = snprintf(NULL, 0, __VA_ARGS__);                                  \
        while (len + (size_t)need_ + 1 > cap) {                                      \
            char *n_ = realloc(rest, cap * 2);                                       \
            if (!n_) {                                                               \
                cli_error("sockets: out of memory");                                 \
                exit(EXIT_IO);                                                       \
            }                                                                        \
            rest = n_;                                                               \
            cap *= 2;                                                                \
        }                                                                            \
        len += (size_t)snprintf(rest + len, cap - len, __VA_ARGS__);                 \
    } while (0)
    int i = o->processes && s->inode ? procs_find(pr, s->inode) : -1;
    if (i >= 0) {
        APPEND("users:(");
        for (int k = i; k < pr->n && pr->v[k].inode == s->inode; k++)
            APPEND("%s(\"%s\",pid=%d,fd=%d)", k > i ? "," : "", pr->v[k].name, pr->v[k].pid, pr->v[k].fd);
        APPEND(")");
    }
    if (o->extended) {
        if (s->uid >= 0) {
            const char *u = user_name(s->uid);
            if (u)
                APPEND("%suid:%lld(%s)", len ? " " : "", (long long)s->uid, u);
            else
                APPEND("%suid:%lld", len ? " " : "", (long long)s->uid);
        }
        APPEND("%sino:%llu", len ? " " : "", (unsigned long long)s->inode);
    }
#undef APPEND
    r->col[COL_REST] = rest;
}

static void print_text(const struct sopts *o, struct row *rows, size_t n)
{
    static const char *const head[NCOLS] = {"Netid", "State", "Recv-Q", "Send-Q", "Local Address:Port",
                                            "Peer Address:Port", "Process"};
    size_t w[NCOLS];
    for (int c = 0; c < NCOLS; c++) {
        w[c] = o->header ? strlen(head[c]) : 0;
        for (size_t i = 0; i < n; i++) {
            size_t l = strlen(rows[i].col[c]);
            if (l > w[c])
                w[c] = l;
        }
    }
    if (o->header) {
        for (int c = 0; c < NCOLS; c++) {
            if (c == NCOLS - 1)
                printf("%s\n", head[c]);
            else
                printf(c == COL_RQ || c == COL_SQ ? "%*s " : "%-*s ", (int)w[c], head[c]);
        }
    }
    for (size_t i = 0; i < n; i++) {
        const struct row *r = &rows[i];
        int last = r->col[COL_REST][0] ? COL_REST : COL_PEER; /* no trailing blanks */
        for (int c = 0; c < last; c++) {
            int right = c == COL_RQ || c == COL_SQ;
            printf(right ? "%*s " : "%-*s ", (int)w[c], r->col[c]);
        }
        printf("%s\n", r->col[last]);
    }
}

int cli_sockets_main(int argc, char **argv)
{
    struct sopts o;
    int rc = parse_sockets(argc, argv, &o);
    if (rc != 0)
        return rc < 0 ? EXIT_OK : rc;

    if (DX_OS_WINDOWS && o.processes) {
        cli_error("sockets -p: the owning processes are not available on %s", DX_OS_NAME);
        return EXIT_USAGE;
    }
    unsigned flags = o.protos | o.families;
    const char *force = getenv("DUPLEX_SOCKETS_PROC");
    if (force && *force && strcmp(force, "0") != 0)
        flags |= DX_SL_PROC;
    dx_sockinfo *v;
    unsigned source = 0;
    int n = dx_sock_list(flags, &v, &source);
    if (n < 0) {
        const char *why = !DX_OS_WINDOWS ? "sock_diag netlink and /proc/net both refused"
                          : n == -EAGAIN   ? "the IP Helper tables changed at every read"
                                           : "the IP Helper tables refused";
        cli_error("sockets: cannot list sockets (%s): %s", why, dx_strerror(n));
        return EXIT_IO;
    }
    /* no peer (Windows' tables give none for listeners and unconnected
     * UDP): the any address of the local family, as Linux reports it */
    for (int i = 0; i < n; i++)
        if (v[i].proto != DX_SL_UNIX && v[i].peer.ss_family == AF_UNSPEC)
            v[i].peer.ss_family = v[i].local.ss_family;
    struct procs pr = {NULL, 0};
    if (o.processes) {
        pr.n = dx_sock_procs(&pr.v);
        if (pr.n < 0) {
            cli_error("sockets: cannot read processes from /proc: %s", dx_strerror(pr.n));
            pr.n = 0;
        }
    }
#ifndef _WIN32
    if (!o.numeric)
        setservent(1);
#endif

    if (o.json) {
        int first = 1;
        fputc('[', stdout);
        for (int i = 0; i < n; i++) {
            if (!want(&o, &v[i]))
                continue;
            print_json(&o, &v[i], &pr, first);
            first = 0;
        }
        fputs(first ? "]\n" : "\n]\n", stdout);
    } else {
        struct row *rows = calloc(n > 0 ? (size_t)n : 1, sizeof *rows);
        if (!rows) {
            cli_error("sockets: out of memory");
            free(v);
            free(pr.v);
            return EXIT_IO;
        }
        size_t nr = 0;
        for (int i = 0; i < n; i++)
            if (want(&o, &v[i]))
                text_row(&o, &v[i], &pr, &rows[nr++]);
        print_text(&o, rows, nr);
        for (size_t i = 0; i < nr; i++)
            for (int c = 0; c < NCOLS; c++)
                free(rows[i].col[c]);
        free(rows);
    }
#ifndef _WIN32
    if (!o.numeric)
        endservent();
#endif
    free(v);
    free(pr.v);
    if (fflush(stdout) != 0 || ferror(stdout)) {
        cli_error("sockets: write error on standard output");
        return EXIT_IO;
    }
    return EXIT_OK;
}
