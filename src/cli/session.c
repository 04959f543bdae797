/* session.c: one connection wired to stdio: two one-way pumps (stdin ->
 * socket, socket -> stdout) and the half-close state machine that decides
 * when the session is over (-q, --no-shutdown, -N, -d, --send-only, -w).
 * The half-close is symmetric: the end of stdin shuts the socket's write
 * side down, the end of the socket closes stdout (once all is written). */
#define _GNU_SOURCE
#include "cli.h"
#include "os.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#ifndef _WIN32
#include <sys/ioctl.h>
#ifdef __linux__
#include <linux/sockios.h>
#endif
#endif

#define SESSION_BUFSIZE (1u << 20)
/* --send-only where the drain cannot be watched (Windows): how long the
 * close waits for the peer to acknowledge the rest, unless -w says */
#define SEND_ONLY_LINGER_S 60

struct session {
    dx_loop *loop;
    const struct options *o;
    const char *peer;       /* text of the peer address, for messages */
    dx_endpoint in, out, sock;
    dx_tls *tls;            /* --ssl: the socket's TLS (tls.c made it and ran the handshake) */
    dx_pump up;             /* stdin -> socket */
    dx_pump down;           /* socket -> stdout */
    int up_running, down_running;
    int send_error;         /* sending failed: said when the receiving side has drained */
    int stdin_tty;
    int pass_eof;           /* the end of stdin shuts the socket's write side down */
    int tcp;                /* the socket is TCP (not Unix) */
    int linger;             /* --send-only: the close waits for the peer's acknowledgement */
    dx_timer quit_timer;    /* -q after end of input */
    dx_timer drain_timer;   /* --send-only: until the peer has all we sent */
    dx_timer idle_timer;    /* -w without traffic */
    dx_timer progress_timer;/* --progress */
    struct progress progress;
    uint64_t started;
    int exit_code;
    int over;
};

static void end_session(struct session *s, int exit_code)
{
    if (s->over)
        return;
    s->over = 1;
    s->exit_code = exit_code;
    dx_endpoint_watch_pri(s->loop, &s->sock, NULL);
    if (s->up_running)
        dx_pump_stop(&s->up);
    if (s->down_running)
        dx_pump_stop(&s->down);
    s->up_running = s->down_running = 0;
    dx_timer_stop(s->loop, &s->quit_timer);
    dx_timer_stop(s->loop, &s->drain_timer);
    dx_timer_stop(s->loop, &s->idle_timer);
    dx_timer_stop(s->loop, &s->progress_timer);
    dx_loop_stop(s->loop);
}

static int is_disconnect(int error)
{
    return error == -EPIPE || error == -ECONNRESET || error == -ENOTCONN;
}

static void on_progress_timer(dx_loop *loop, dx_timer *t)
{
    struct session *s = t->data;
    progress_show(&s->progress, dx_loop_now(loop), s->up.bytes_out, s->down.bytes_in, 0);
}

/* connect --pty: how long the pty is still read after the peer's end */
#define PTY_LINGER_MS 500

static void on_quit_timer(dx_loop *loop, dx_timer *t)
{
    (void)loop;
    end_session(t->data, EXIT_OK);
}

/* How long the session may go without traffic: --idle-timeout (one-client
 * listen; the server modes have their own sweep), else -w; 0: no limit. */
static uint64_t idle_limit(const struct options *o)
{
    return (uint64_t)(o->idle_timeout_ms > 0 ? o->idle_timeout_ms : o->timeout_ms > 0 ? o->timeout_ms : 0);
}

static void on_idle_timer(dx_loop *loop, dx_timer *t)
{
    struct session *s = t->data;
    uint64_t last = cli_pumps_last_activity(&s->up, &s->down);
    uint64_t now = dx_loop_now(loop), limit = idle_limit(s->o);
    if (now - last >= limit) {
        cli_error("%s: no traffic for %.3g s, closing", s->peer, (double)limit / 1000.0);
        end_session(s, EXIT_TIMEOUT);
        return;
    }
    dx_timer_start(loop, t, last + limit - now, 0);
}

/* Bytes sent on the TCP socket fd that the peer has not acknowledged yet:
 * Linux's SIOCOUTQ. -ENOSYS where the system cannot tell cheaply: Windows'
 * SIO_TCP_INFO exists from Windows 10 1703 only (wine has none), and its TCP
 * table (GetTcpTable) is a walk over every connection of the system (0.2 s
 * under wine with 400 of them); close_lingering() waits there instead. */
static int tcp_unacked(int fd)
{
#ifdef SIOCOUTQ
    int queued = 0;
    if (ioctl(fd, SIOCOUTQ, &queued) < 0)
        queued = 0;
    return queued;
#else
    (void)fd;
    return -ENOSYS;
#endif
}

/* Close fd once the peer has acknowledged all we sent, waiting at most
 * limit_s seconds: a blocking socket with SO_LINGER on waits in the close
 * (Windows: "graceful close"; wine: Linux's close(2) with SO_LINGER), and
 * resets the connection if the time runs out. Returns 0, or DX_ETIMEDOUT
 * when the close took all that time (the close itself does not say). */
static int close_lingering(int fd, int limit_s)
{
    struct linger l;
    memset(&l, 0, sizeof l);
    l.l_onoff = 1;
    l.l_linger = limit_s; /* a u_short on Windows */
    uint64_t start = cli_now_ms();
    if (dx_set_nonblock(fd, 0) < 0 ||
        dx__sock_setsockopt(fd, SOL_SOCKET, SO_LINGER, (const void *)&l, sizeof l) < 0) {
        (void)dx_set_nonblock(fd, 1); /* then a plain close, which still sends what is queued */
        dx__fd_close(fd);
        return 0;
    }
    dx__fd_close(fd);
    return cli_now_ms() - start + 50 >= (uint64_t)limit_s * 1000 ? DX_ETIMEDOUT : 0;
}

/* --send-only, after the end of stdin: nothing is ever read, so quit, once
 * the peer has acknowledged all we sent (TCP: tcp_unacked()): closing with
 * bytes unread sends a reset, which would lose those still on the way.
 * Where that cannot be asked, the session ends now and its close lingers. */
static void on_drain_timer(dx_loop *loop, dx_timer *t)
{
    struct session *s = t->data;
    int queued = s->tcp ? tcp_unacked(s->sock.fd) : 0;
    if (queued == -ENOSYS) {
        s->linger = 1;
        queued = 0;
    }
    if (queued <= 0)
        end_session(s, EXIT_OK);
    else
        dx_timer_start(loop, t, 5, 0);
}

/* The socket refused our bytes while the peer was still sending: say so
 * and end. */
static void end_on_send_error(struct session *s, int error)
{
    if (s->tls) {
        end_session(s, cli_tls_failed(s->o, s->tls, s->peer, error, 0, s->down.bytes_in));
    } else {
        cli_error("send to %s: %s", s->peer, dx_strerror(error));
        end_session(s, EXIT_IO);
    }
}

/* stdin ended (or failed), or the socket refused our bytes. */
static void on_up_done(dx_pump *p, int error, int in_read)
{
    struct session *s = p->data;
    int drain = s->down_running && cli_pump_drain_first(p, error, in_read, &s->down);
    dx_pump_stop(p);
    s->up_running = 0;
    if (error < 0) {
        if (in_read) {
            cli_error("read stdin: %s", dx_strerror(error));
            end_session(s, EXIT_IO);
        } else if (!s->down_running && is_disconnect(error)) {
            end_session(s, EXIT_OK); /* the peer had finished and closed: a normal end */
        } else if (drain) {
            s->send_error = error; /* on_down_done says it, once stdout has what came */
        } else {
            end_on_send_error(s, error);
        }
        return;
    }
    if (s->o->send_only) {
        on_drain_timer(s->loop, &s->drain_timer);
        return;
    }
    if (!s->down_running) {
        end_session(s, EXIT_OK);
        return;
    }
    if (s->o->quit_after_eof_ms == 0)
        end_session(s, EXIT_OK);
    else if (s->o->quit_after_eof_ms > 0)
        dx_timer_start(s->loop, &s->quit_timer, (uint64_t)s->o->quit_after_eof_ms, 0);
}

/* The peer ended its side (or failed), or stdout refused our bytes. */
static void on_down_done(dx_pump *p, int error, int in_read)
{
    struct session *s = p->data;
    dx_pump_stop(p);
    s->down_running = 0;
    if (s->send_error) {
        /* what the peer sent before the failure is out (or stdout failed,
         * or the socket's reset came too): the first failure is the one said */
        if (error < 0 && !in_read)
            cli_error("write stdout: %s", dx_strerror(error));
        end_on_send_error(s, s->send_error);
        return;
    }
    if (error < 0) {
        if (in_read && s->tls) {
            end_session(s, cli_tls_failed(s->o, s->tls, s->peer, error, 1, s->down.bytes_in));
            return;
        }
        if (in_read)
            cli_error("receive from %s: %s", s->peer, dx_strerror(error));
        else
            cli_error("write stdout: %s", dx_strerror(error));
        end_session(s, EXIT_IO);
        return;
    }
    if (s->tls)
        cli_tls_ended(s->o, s->tls, s->peer, 0); /* a close without close_notify: said */
    /* all the peer sent is out: the reader of our stdout sees its end now */
    if (!s->o->send_only)
        cli_stdout_close();
    if (s->o->proxy_host && s->pass_eof && !s->up_running && s->down.bytes_in == 0)
        cli_info(s->o, "%s: the connection ended with nothing received after our end of input "
                 "(-N: a proxy that closes both directions on a half-close loses the reply)",
                 s->peer);
    /* A server that closes at once (its --max-conns or access list refused
     * us) looks like an empty session: say so to whoever is watching. */
    if (s->down.bytes_in == 0 && s->up.bytes_out == 0 && (s->o->verbose || s->stdin_tty))
        cli_error("%s: connection closed by peer before any data", s->peer);
    /* With stdin still open the peer may only have half-closed and still
     * read what we send; keep sending, unless nobody is there to type it
     * (a terminal) or our end is never passed on (--no-shutdown, a proxy).
     * A --pty never ends its input (we hold its slave), but a program on
     * LINK may have written just before the peer's end: what it wrote in
     * the next PTY_LINGER_MS still goes out (socat's -t), then the end. */
    if (s->o->pty_link && s->up_running && s->pass_eof)
        dx_timer_start(s->loop, &s->quit_timer, PTY_LINGER_MS, 0);
    else if (!s->up_running || s->stdin_tty || !s->pass_eof)
        end_session(s, EXIT_OK);
}

/* Urgent data (TCP MSG_OOB) arrived and is not inline: report it, never
 * mix it into stdout. Read with recv(MSG_OOB) rather than by SIGURG. */
static void on_urgent(dx_endpoint *e)
{
    struct session *s = e->data;
    unsigned char c;
    ssize_t n;
    do
        n = dx__sock_recv(e->fd, &c, 1, MSG_OOB);
    while (n < 0 && errno == EINTR);
    if (n == 1) {
        if (c >= 0x20 && c < 0x7f && c != '\\' && c != '\'')
            cli_error("urgent data: '%c'", c);
        else
            cli_error("urgent data: '\\x%02x'", c);
        return;
    }
    /* EINVAL: already read (the pump asks at the mark), or none */
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINVAL))
        return;
    /* end of input, an error: stop asking */
    dx_endpoint_watch_pri(s->loop, e, NULL);
}

/* --send-oob, and the receiving side of urgent data (--oob-inline). Returns
 * 0, or an exit code after printing why. */
static int urgent_setup(struct session *s, int fd)
{
    const struct options *o = s->o;
    int on = 1;
    dx__socklen len = sizeof on;
    if (o->oob_inline && dx__sock_setsockopt(fd, SOL_SOCKET, SO_OOBINLINE, &on, sizeof on) < 0)
        cli_info(o, "--oob-inline: %s", dx_strerror(-errno)); /* e.g. a Unix socket */
    /* inline (--oob-inline or -O oobinline=1): the byte is in the stream */
    if (s->sock.is_socket &&
        (dx__sock_getsockopt(fd, SOL_SOCKET, SO_OOBINLINE, &on, &len) < 0 || !on)) {
        s->sock.data = s;
        dx_endpoint_watch_pri(s->loop, &s->sock, on_urgent);
    }
    if (o->has_send_oob) {
        ssize_t n;
        do
            n = dx__sock_send(fd, &o->send_oob, 1, MSG_OOB | MSG_NOSIGNAL);
        while (n < 0 && errno == EINTR);
        if (n < 0) {
            cli_error("send urgent data to %s: %s", s->peer, dx_strerror(-errno));
            return EXIT_IO;
        }
        cli_info(o, "sent urgent data to %s", s->peer);
    }
    return 0;
}

int cli_session(dx_loop *loop, const struct options *o, int fd, const char *peer_text)
{
    return cli_session_tls(loop, o, fd, peer_text, NULL);
}

int cli_session_tls(dx_loop *loop, const struct options *o, int fd, const char *peer_text,
                    dx_tls *tls)
{
    struct session s;
    memset(&s, 0, sizeof s);
    s.loop = loop;
    s.tls = tls;
    s.o = o;
    s.peer = peer_text;
    s.started = dx_loop_now(loop);
    s.stdin_tty = !o->recv_only && isatty(STDIN_FILENO);
    /* Through a proxy, as OpenBSD nc without -N: proxies (microsocks,
     * tinyproxy, ncat) close both directions when the client half-closes,
     * and the target's reply would be lost. -N passes the end on anyway. */
    s.pass_eof = !o->no_shutdown && (!o->proxy_host || o->eof_shutdown);
    dx_addr me;
    s.tcp = dx_sock_local(fd, &me) == 0 &&
            (me.ss.ss_family == AF_INET || me.ss.ss_family == AF_INET6);
    dx_timer_init(&s.quit_timer, on_quit_timer, &s);
    dx_timer_init(&s.drain_timer, on_drain_timer, &s);
    dx_timer_init(&s.idle_timer, on_idle_timer, &s);
    dx_timer_init(&s.progress_timer, on_progress_timer, &s);
    dx_endpoint_init(&s.sock, fd);
    if (tls) /* the pumps read and write the socket through TLS */
        dx_endpoint_set_tls(&s.sock, tls);
    int in_fd = cli_stdin_fd();
    if (o->delay_ms && !o->recv_only) {
        in_fd = cli_delay_open(loop, o);
        if (in_fd < 0) {
            cli_error("--delay: %s", dx_strerror(in_fd));
            dx__fd_close(fd);
            return EXIT_IO;
        }
    }
    dx_endpoint_init(&s.in, in_fd);
    dx_endpoint_init(&s.out, cli_stdout_fd());

    /* one session: large pipes/buffers mean few system calls per byte */
    size_t bufsize = o->bufsize ? o->bufsize : SESSION_BUFSIZE;
    /* -C and --hex-dump see every byte: no zero-copy then */
    int splice = cli_filters_active(o) ? 0 : DX_PUMP_SPLICE;
    int rc = 0;
    if (!o->recv_only) {
        rc = dx_pump_start(loop, &s.up, &s.in, &s.sock, bufsize,
                           splice | (s.pass_eof ? DX_PUMP_SHUTDOWN : 0), on_up_done, &s);
        s.up_running = rc == 0;
    }
    if (rc == 0) {
        rc = dx_pump_start(loop, &s.down, &s.sock, o->send_only ? NULL : &s.out, bufsize,
                           o->send_only ? DX_PUMP_DISCARD : splice, on_down_done, &s);
        s.down_running = rc == 0;
    }
    if (rc == 0) {
        cli_filters_attach(o, s.up_running ? &s.up : NULL, &s.down);
        dx_pump_set_rate(&s.up, o->rate_limit); /* --rate-limit (0: none) */
        dx_pump_set_rate(&s.down, o->rate_limit);
    }
    int urgent_code = rc < 0 || tls ? 0 : urgent_setup(&s, fd); /* TLS: no urgent data */
    if (rc < 0) {
        cli_error("%s: %s", peer_text, dx_strerror(rc));
        end_session(&s, EXIT_IO);
    } else if (urgent_code) {
        end_session(&s, urgent_code);
    } else {
        if (idle_limit(o) > 0)
            dx_timer_start(loop, &s.idle_timer, idle_limit(o), 0);
        if (progress_enabled(o)) {
            progress_init(&s.progress, dx_loop_now(loop), o->recv_only ? -1 : STDIN_FILENO);
            dx_timer_start(loop, &s.progress_timer, 500, 500);
        }
        rc = dx_loop_run(loop);
        if (rc < 0 && !s.over) {
            cli_error("event loop: %s", dx_strerror(rc));
            end_session(&s, EXIT_IO);
        }
        if (!s.over && cli_stop_signal())
            end_session(&s, EXIT_SIGNAL + cli_stop_signal());
        end_session(&s, s.exit_code);
    }
    cli_delay_close();
    dx_loop_update_time(loop);
    uint64_t ms = dx_loop_now(loop) - s.started;
    if (progress_enabled(o))
        progress_show(&s.progress, dx_loop_now(loop), s.up.bytes_out, s.down.bytes_in, 1);
    cli_info(o, "%s: sent %llu byte%s, received %llu byte%s in %.3f s", peer_text,
             (unsigned long long)s.up.bytes_out, cli_s(s.up.bytes_out),
             (unsigned long long)s.down.bytes_in, cli_s(s.down.bytes_in), (double)ms / 1000.0);
    if (tls)
        cli_tls_goodbye(tls); /* close_notify, if the session's end did not send it */
    if (s.linger && s.exit_code == EXIT_OK) {
        uint64_t limit = idle_limit(o) > 0 ? (idle_limit(o) + 999) / 1000 : SEND_ONLY_LINGER_S;
        if (limit > 65535)
            limit = 65535;
        if (close_lingering(fd, (int)limit) == DX_ETIMEDOUT) {
            /* as the idle timer says it while Linux waits for SIOCOUTQ */
            cli_error("%s: no traffic for %.3g s, closing", peer_text, (double)limit);
            s.exit_code = EXIT_TIMEOUT;
        }
    } else {
        dx__fd_close(fd);
    }
    return s.exit_code;
}
