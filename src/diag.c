/* diag.c: listing sockets (dx_sock_list) through the kernel's
 * NETLINK_SOCK_DIAG interface, with /proc/net/{tcp,tcp6,udp,udp6,unix} as
 * the fallback when a netlink query is refused, and finding the processes
 * that hold them (dx_sock_procs) by scanning /proc/PID/fd. */
#define _GNU_SOURCE
#include "duplex.h"
#include "internal.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <linux/inet_diag.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <linux/sock_diag.h>
#include <linux/unix_diag.h>

#ifndef UDIAG_SHOW_UID
#define UDIAG_SHOW_UID 0x00000040
#define UNIX_DIAG_UID 7
#endif

#define NEW_SYN_RECV 12 /* TCP_NEW_SYN_RECV: a request socket, shown as SYN-RECV */

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

static void set_inet(struct sockaddr_storage *ss, int family, const void *addr, uint16_t port_be)
{
    memset(ss, 0, sizeof *ss);
    if (family == AF_INET) {
        struct sockaddr_in *sin = (struct sockaddr_in *)ss;
        sin->sin_family = AF_INET;
        sin->sin_port = port_be;
        memcpy(&sin->sin_addr, addr, 4);
    } else {
        struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)ss;
        sin6->sin6_family = AF_INET6;
        sin6->sin6_port = port_be;
        memcpy(&sin6->sin6_addr, addr, 16);
    }
}

static int norm_state(int st)
{
    if (st == NEW_SYN_RECV)
        return DX_SS_SYN_RECV;
    return st;
}

/* "@name" for an abstract address (NULs shown as '@', like the kernel's
 * /proc/net/unix), else the path. */
static void set_path(dx_sockinfo *s, const char *p, size_t len)
{
    size_t max = sizeof s->path - 1, o = 0;
    if (len > 0 && p[0] == '\0') {
        for (size_t i = 0; i < len && o < max; i++)
            s->path[o++] = p[i] ? p[i] : '@';
    } else {
        for (size_t i = 0; i < len && o < max && p[i]; i++)
            s->path[o++] = p[i];
    }
    s->path[o] = '\0';
}

/* ---- netlink ----------------------------------------------------------- */

typedef int (*nl_cb)(struct list *l, const struct nlmsghdr *h, int proto);

/* Send one dump request; feed every answer to cb. 0 or -errno. */
static int nl_dump(int fd, void *req, size_t reqlen, uint32_t seq, nl_cb cb, struct list *l, int proto)
{
    struct sockaddr_nl sa = {.nl_family = AF_NETLINK};
    struct nlmsghdr *h = req;
    h->nlmsg_len = (uint32_t)reqlen;
    h->nlmsg_type = SOCK_DIAG_BY_FAMILY;
    h->nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP;
    h->nlmsg_seq = seq;
    ssize_t n;
    do
        n = sendto(fd, req, reqlen, 0, (struct sockaddr *)&sa, sizeof sa);
    while (n < 0 && errno == EINTR);
    if (n < 0)
        return -errno;

    static long buf[8192]; /* 64 KiB, aligned for nlmsghdr */
    for (;;) {
        do
            n = recv(fd, buf, sizeof buf, 0);
        while (n < 0 && errno == EINTR);
        if (n < 0)
            return -errno;
        if (n == 0)
            return -ECONNRESET;
        long len = (long)n; /* long: NLMSG_OK compares it with a __u32 and with an int */
        for (struct nlmsghdr *m = (struct nlmsghdr *)buf; NLMSG_OK(m, len); m = NLMSG_NEXT(m, len)) {
            if (m->nlmsg_seq != seq)
                continue;
            if (m->nlmsg_type == NLMSG_DONE)
                return 0;
            if (m->nlmsg_type == NLMSG_ERROR) {
                const struct nlmsgerr *e = NLMSG_DATA(m);
                if (m->nlmsg_len < NLMSG_LENGTH(sizeof *e))
                    return -EPROTO;
                return e->error < 0 ? e->error : -EPROTO;
            }
            if (m->nlmsg_type != SOCK_DIAG_BY_FAMILY)
                continue;
            int rc = cb(l, m, proto);
            if (rc < 0)
                return rc;
        }
    }
}

static int on_inet(struct list *l, const struct nlmsghdr *h, int proto)
{
    const struct inet_diag_msg *m = NLMSG_DATA(h);
    if (h->nlmsg_len < NLMSG_LENGTH(sizeof *m))
        return 0;
    if (m->idiag_family != AF_INET && m->idiag_family != AF_INET6)
        return 0;
    dx_sockinfo *s = list_add(l);
    if (!s)
        return -ENOMEM;
    s->proto = proto;
    s->family = m->idiag_family;
    s->type = proto == DX_SL_TCP ? SOCK_STREAM : SOCK_DGRAM;
    s->state = norm_state(m->idiag_state);
    s->rqueue = m->idiag_rqueue;
    s->wqueue = m->idiag_wqueue;
    set_inet(&s->local, s->family, m->id.idiag_src, m->id.idiag_sport);
    set_inet(&s->peer, s->family, m->id.idiag_dst, m->id.idiag_dport);
    s->inode = m->idiag_inode;
    s->uid = m->idiag_uid;
    if (s->state == DX_SS_TIME_WAIT || s->state == DX_SS_SYN_RECV) {
        s->uid = -1; /* no owner for time-wait and request sockets */
        s->inode = 0;
    }
    return 0;
}

static int on_unix(struct list *l, const struct nlmsghdr *h, int proto)
{
    const struct unix_diag_msg *m = NLMSG_DATA(h);
    if (h->nlmsg_len < NLMSG_LENGTH(sizeof *m))
        return 0;
    dx_sockinfo *s = list_add(l);
    if (!s)
        return -ENOMEM;
    s->proto = proto;
    s->family = AF_UNIX;
    s->type = m->udiag_type;
    s->state = m->udiag_state;
    s->inode = m->udiag_ino;
    int alen = (int)(h->nlmsg_len - NLMSG_LENGTH(sizeof *m));
    for (const struct rtattr *a = (const struct rtattr *)(m + 1); RTA_OK(a, alen); a = RTA_NEXT(a, alen)) {
        size_t plen = RTA_PAYLOAD(a);
        const void *p = RTA_DATA(a);
        switch (a->rta_type) {
        case UNIX_DIAG_NAME:
            set_path(s, p, plen);
            break;
        case UNIX_DIAG_PEER:
            if (plen >= 4)
                s->peer_inode = *(const uint32_t *)p;
            break;
        case UNIX_DIAG_RQLEN:
            if (plen >= sizeof(struct unix_diag_rqlen)) {
                const struct unix_diag_rqlen *q = p;
                s->rqueue = q->udiag_rqueue;
                s->wqueue = q->udiag_wqueue;
            }
            break;
        case UNIX_DIAG_UID:
            if (plen >= 4)
                s->uid = *(const uint32_t *)p;
            break;
        default:
            break;
        }
    }
    return 0;
}

static int nl_inet(int fd, uint32_t seq, int family, int proto, struct list *l)
{
    struct {
        struct nlmsghdr h;
        struct inet_diag_req_v2 r;
    } req;
    memset(&req, 0, sizeof req);
    req.r.sdiag_family = (uint8_t)family;
    req.r.sdiag_protocol = proto == DX_SL_TCP ? IPPROTO_TCP : IPPROTO_UDP;
    req.r.idiag_states = ~0u;
    req.r.id.idiag_cookie[0] = INET_DIAG_NOCOOKIE;
    req.r.id.idiag_cookie[1] = INET_DIAG_NOCOOKIE;
    return nl_dump(fd, &req, sizeof req, seq, on_inet, l, proto);
}

static int nl_unix(int fd, uint32_t seq, struct list *l)
{
    struct {
        struct nlmsghdr h;
        struct unix_diag_req r;
    } req;
    memset(&req, 0, sizeof req);
    req.r.sdiag_family = AF_UNIX;
    req.r.udiag_states = ~0u;
    req.r.udiag_show = UDIAG_SHOW_NAME | UDIAG_SHOW_PEER | UDIAG_SHOW_RQLEN | UDIAG_SHOW_UID;
    req.r.udiag_cookie[0] = INET_DIAG_NOCOOKIE;
    req.r.udiag_cookie[1] = INET_DIAG_NOCOOKIE;
    return nl_dump(fd, &req, sizeof req, seq, on_unix, l, DX_SL_UNIX);
}

/* ---- /proc/net ----------------------------------------------------------- */

static int hexval(int c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    c = tolower(c);
    return c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

/* "0100007F:1F90" (each 32-bit word in host order) -> address and port. */
static int parse_hexaddr(const char *t, int family, struct sockaddr_storage *ss)
{
    size_t words = family == AF_INET ? 1 : 4;
    uint32_t a[4] = {0};
    for (size_t w = 0; w < words; w++) {
        uint32_t v = 0;
        for (int i = 0; i < 8; i++) {
            int d = hexval((unsigned char)*t++);
            if (d < 0)
                return -1;
            v = v << 4 | (uint32_t)d;
        }
        a[w] = v;
    }
    if (*t++ != ':')
        return -1;
    char *end;
    unsigned long port = strtoul(t, &end, 16);
    if (end == t || port > 65535)
        return -1;
    set_inet(ss, family, a, htons((uint16_t)port));
    return 0;
}

/* 0, or -errno if the file cannot be opened (ENOENT: counted as empty). */
static int proc_inet(const char *file, int family, int proto, struct list *l)
{
    FILE *f = fopen(file, "re");
    if (!f)
        return errno == ENOENT ? 0 : -errno;
    char line[512];
    int rc = 0;
    if (!fgets(line, sizeof line, f)) { /* header */
        fclose(f);
        return 0;
    }
    while (fgets(line, sizeof line, f)) {
        char local[64], rem[64];
        unsigned st, uid;
        unsigned long tx, rx, inode;
        if (sscanf(line, " %*d: %63s %63s %x %lx:%lx %*x:%*x %*x %u %*d %lu", local, rem, &st, &tx, &rx,
                   &uid, &inode) != 7)
            continue;
        dx_sockinfo *s = list_add(l);
        if (!s) {
            rc = -ENOMEM;
            break;
        }
        s->proto = proto;
        s->family = family;
        s->type = proto == DX_SL_TCP ? SOCK_STREAM : SOCK_DGRAM;
        s->state = norm_state((int)st);
        s->rqueue = (uint32_t)rx;
        s->wqueue = (uint32_t)tx;
        s->inode = inode;
        s->uid = uid;
        if (s->state == DX_SS_TIME_WAIT || s->state == DX_SS_SYN_RECV)
            s->uid = -1;
        if (parse_hexaddr(local, family, &s->local) < 0 || parse_hexaddr(rem, family, &s->peer) < 0)
            l->n--;
    }
    fclose(f);
    return rc;
}

static int proc_unix(struct list *l)
{
    FILE *f = fopen("/proc/net/unix", "re");
    if (!f)
        return errno == ENOENT ? 0 : -errno;
    char line[512];
    int rc = 0;
    if (!fgets(line, sizeof line, f)) {
        fclose(f);
        return 0;
    }
    while (fgets(line, sizeof line, f)) {
        unsigned flags, type, st;
        unsigned long inode;
        int pos = 0;
        if (sscanf(line, "%*s %*x %*x %x %x %x %lu%n", &flags, &type, &st, &inode, &pos) != 4)
            continue;
        dx_sockinfo *s = list_add(l);
        if (!s) {
            rc = -ENOMEM;
            break;
        }
        s->proto = DX_SL_UNIX;
        s->family = AF_UNIX;
        s->type = (int)type;
        s->inode = inode;
        if (flags & (1u << 16)) /* __SO_ACCEPTCON */
            s->state = DX_SS_LISTEN;
        else if (st == 3 || st == 4) /* SS_CONNECTED, SS_DISCONNECTING */
            s->state = DX_SS_ESTABLISHED;
        else if (st == 2) /* SS_CONNECTING */
            s->state = DX_SS_SYN_SENT;
        else
            s->state = DX_SS_CLOSE;
        const char *p = line + pos;
        while (*p == ' ')
            p++;
        size_t len = strcspn(p, "\n");
        if (len >= sizeof s->path)
            len = sizeof s->path - 1;
        memcpy(s->path, p, len);
        s->path[len] = '\0';
    }
    fclose(f);
    return rc;
}

/* ---- dx_sock_list --------------------------------------------------------- */

struct query {
    int proto, family;
    const char *file;
};

static const struct query queries[] = {
    {DX_SL_TCP, AF_INET, "/proc/net/tcp"},
    {DX_SL_TCP, AF_INET6, "/proc/net/tcp6"},
    {DX_SL_UDP, AF_INET, "/proc/net/udp"},
    {DX_SL_UDP, AF_INET6, "/proc/net/udp6"},
    {DX_SL_UNIX, AF_UNIX, "/proc/net/unix"},
};

/* One record and where it was (qsort() sorts these, then order restores it). */
struct rec_ref {
    const dx_sockinfo *s;
    size_t at;
};

static int cmp_sock(const dx_sockinfo *a, const dx_sockinfo *b)
{
    if (a->proto != b->proto)
        return a->proto < b->proto ? -1 : 1;
    if (a->family != b->family)
        return a->family < b->family ? -1 : 1;
    if (a->inode != b->inode)
        return a->inode < b->inode ? -1 : 1;
    if (a->state != b->state)
        return a->state < b->state ? -1 : 1;
    int c = memcmp(&a->local, &b->local, sizeof a->local);
    if (!c)
        c = memcmp(&a->peer, &b->peer, sizeof a->peer);
    if (!c)
        c = strncmp(a->path, b->path, sizeof a->path);
    return c;
}

static int cmp_ref(const void *x, const void *y)
{
    const struct rec_ref *a = x, *b = y;
    int c = cmp_sock(a->s, b->s);
    return c ? c : (a->at < b->at ? -1 : a->at > b->at);
}

size_t dx__sock_dedupe(dx_sockinfo *v, size_t n)
{
    if (n < 2)
        return n;
    struct rec_ref *r = malloc(n * sizeof *r);
    unsigned char *dup = calloc(n, 1);
    if (!r || !dup) { /* keep them all: a repeat beats a failure */
        free(r);
        free(dup);
        return n;
    }
    for (size_t i = 0; i < n; i++)
        r[i] = (struct rec_ref){&v[i], i};
    qsort(r, n, sizeof *r, cmp_ref);
    for (size_t i = 1; i < n; i++)
        if (cmp_sock(r[i - 1].s, r[i].s) == 0)
            dup[r[i].at] = 1; /* sorted by position too: the first stays */
    free(r);
    size_t kept = 0;
    for (size_t i = 0; i < n; i++)
        if (!dup[i])
            v[kept++] = v[i];
    free(dup);
    return kept;
}

int dx_sock_list(unsigned flags, dx_sockinfo **out, unsigned *source)
{
    struct list l = {0};
    unsigned used = 0;
    unsigned protos = flags & (DX_SL_TCP | DX_SL_UDP | DX_SL_UNIX);
    if (!protos)
        protos = DX_SL_TCP | DX_SL_UDP | DX_SL_UNIX;
    unsigned fams = flags & (DX_SL_IPV4 | DX_SL_IPV6);
    if (!fams)
        fams = DX_SL_IPV4 | DX_SL_IPV6;
    int rc = 0;
    int fd = -1, nl_err = 0;
    if (!(flags & DX_SL_PROC)) {
        fd = socket(AF_NETLINK, SOCK_DGRAM | SOCK_CLOEXEC, NETLINK_SOCK_DIAG);
        if (fd < 0)
            nl_err = -errno;
    }
    *out = NULL;
    uint32_t seq = 1;
    for (size_t i = 0; i < sizeof queries / sizeof queries[0]; i++) {
        const struct query *q = &queries[i];
        if (!(protos & (unsigned)q->proto))
            continue;
        if (q->family == AF_INET && !(fams & DX_SL_IPV4))
            continue;
        if (q->family == AF_INET6 && !(fams & DX_SL_IPV6))
            continue;
        size_t mark = l.n;
        if (fd >= 0) {
            rc = q->proto == DX_SL_UNIX ? nl_unix(fd, seq++, &l) : nl_inet(fd, seq++, q->family, q->proto, &l);
            if (rc == 0) {
                used |= DX_SL_NETLINK;
                continue;
            }
            if (rc == -ENOMEM)
                goto fail;
            nl_err = rc;
            l.n = mark; /* drop a partial answer */
            /* the socket may hold the rest of a refused dump: start afresh */
            close(fd);
            fd = socket(AF_NETLINK, SOCK_DGRAM | SOCK_CLOEXEC, NETLINK_SOCK_DIAG);
        }
        if (flags & DX_SL_NETLINK) {
            rc = nl_err ? nl_err : -EPROTONOSUPPORT;
            goto fail;
        }
        rc = q->proto == DX_SL_UNIX ? proc_unix(&l) : proc_inet(q->file, q->family, q->proto, &l);
        if (rc < 0)
            goto fail;
        used |= DX_SL_PROC;
    }
    if (fd >= 0)
        close(fd);
    if (source)
        *source = used;
    l.n = dx__sock_dedupe(l.v, l.n);
    if (l.n == 0) {
        free(l.v);
        return 0;
    }
    *out = l.v;
    return (int)l.n;
fail:
    if (fd >= 0)
        close(fd);
    free(l.v);
    return rc;
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

/* ---- dx_sock_procs -------------------------------------------------------- */

static int cmp_proc(const void *a, const void *b)
{
    const dx_sockproc *x = a, *y = b;
    if (x->inode != y->inode)
        return x->inode < y->inode ? -1 : 1;
    if (x->pid != y->pid)
        return x->pid < y->pid ? -1 : 1;
    return (x->fd > y->fd) - (x->fd < y->fd);
}

static void read_comm(int pid, char *name, size_t len)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/comm", pid);
    name[0] = '\0';
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return;
    ssize_t n = read(fd, name, len - 1);
    close(fd);
    if (n < 0)
        n = 0;
    name[n] = '\0';
    name[strcspn(name, "\n")] = '\0';
}

int dx_sock_procs(dx_sockproc **out)
{
    *out = NULL;
    DIR *proc = opendir("/proc");
    if (!proc)
        return -errno;
    dx_sockproc *v = NULL;
    size_t n = 0, cap = 0;
    struct dirent *de;
    while ((de = readdir(proc))) {
        char *end;
        long pid = strtol(de->d_name, &end, 10);
        if (*end || pid <= 0)
            continue;
        char path[64];
        snprintf(path, sizeof path, "/proc/%ld/fd", pid);
        DIR *fds = opendir(path);
        if (!fds)
            continue; /* gone, or not ours to read */
        char name[sizeof v->name];
        int have_name = 0;
        struct dirent *fe;
        while ((fe = readdir(fds))) {
            char *fend;
            long fdno = strtol(fe->d_name, &fend, 10);
            if (*fend || fdno < 0)
                continue;
            char link[64];
            ssize_t ln = readlinkat(dirfd(fds), fe->d_name, link, sizeof link - 1);
            if (ln <= 0)
                continue;
            link[ln] = '\0';
            unsigned long long ino;
            if (sscanf(link, "socket:[%llu]", &ino) != 1)
                continue;
            if (n == cap) {
                size_t ncap = cap ? cap * 2 : 64;
                dx_sockproc *nv = realloc(v, ncap * sizeof *nv);
                if (!nv) {
                    closedir(fds);
                    closedir(proc);
                    free(v);
                    return -ENOMEM;
                }
                v = nv;
                cap = ncap;
            }
            if (!have_name) {
                read_comm((int)pid, name, sizeof name);
                have_name = 1;
            }
            dx_sockproc *r = &v[n++];
            r->inode = ino;
            r->pid = (int)pid;
            r->fd = (int)fdno;
            memcpy(r->name, name, sizeof r->name);
        }
        closedir(fds);
    }
    closedir(proc);
    if (n > 1)
        qsort(v, n, sizeof *v, cmp_proc);
    *out = v;
    return (int)n;
}
