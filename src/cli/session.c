/* session.c: one connection wired to stdio: two one-way pumps (stdin ->
 * socket, socket -> stdout) and the half-close state machine that decides
 * when the session is over (-q, --no-shutdown, -d, --send-only, -w). */
#define _GNU_SOURCE
#include "cli.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

struct session {
    dx_loop *loop;
    const struct options *o;
    const char *peer;       /* text of the peer address, for messages */
    dx_endpoint in, out, sock;
    dx_pump up;             /* stdin -> socket */
    dx_pump down;           /* socket -> stdout */
    int up_running, down_running;
    int stdin_tty;
    dx_timer quit_timer;    /* -q after end of input */
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
    if (s->up_running)
        dx_pump_stop(&s->up);
    if (s->down_running)
        dx_pump_stop(&s->down);
    s->up_running = s->down_running = 0;
    dx_timer_stop(s->loop, &s->quit_timer);
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

static void on_quit_timer(dx_loop *loop, dx_timer *t)
{
    (void)loop;
    end_session(t->data, EXIT_OK);
}

static void on_idle_timer(dx_loop *loop, dx_timer *t)
{
    struct session *s = t->data;
    uint64_t last = s->up.last_activity > s->down.last_activity ? s->up.last_activity
                                                                : s->down.last_activity;
    uint64_t now = dx_loop_now(loop);
    if (now - last >= (uint64_t)s->o->timeout_ms) {
        cli_error("%s: no traffic for %.3g s, closing", s->peer, (double)s->o->timeout_ms / 1000.0);
        end_session(s, EXIT_TIMEOUT);
        return;
    }
    dx_timer_start(loop, t, last + (uint64_t)s->o->timeout_ms - now, 0);
}

/* stdin ended (or failed), or the socket refused our bytes. */
static void on_up_done(dx_pump *p, int error, int in_read)
{
    struct session *s = p->data;
    dx_pump_stop(p);
    s->up_running = 0;
    if (error < 0) {
        if (in_read) {
            cli_error("read stdin: %s", dx_strerror(error));
            end_session(s, EXIT_IO);
        } else if (!s->down_running && is_disconnect(error)) {
            end_session(s, EXIT_OK); /* the peer had finished and closed: a normal end */
        } else {
            cli_error("send to %s: %s", s->peer, dx_strerror(error));
            end_session(s, EXIT_IO);
        }
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
    if (error < 0) {
        if (in_read)
            cli_error("receive from %s: %s", s->peer, dx_strerror(error));
        else
            cli_error("write stdout: %s", dx_strerror(error));
        end_session(s, EXIT_IO);
        return;
    }
    /* With stdin still open the peer may only have half-closed and still
     * read what we send; keep sending, unless nobody is there to type it
     * (a terminal) or the user asked not to wait for our own end. */
    if (!s->up_running || s->stdin_tty || s->o->no_shutdown)
        end_session(s, EXIT_OK);
}

int cli_session(dx_loop *loop, const struct options *o, int fd, const char *peer_text)
{
    struct session s;
    memset(&s, 0, sizeof s);
    s.loop = loop;
    s.o = o;
    s.peer = peer_text;
    s.started = dx_loop_now(loop);
    s.stdin_tty = !o->recv_only && isatty(STDIN_FILENO);
    dx_timer_init(&s.quit_timer, on_quit_timer, &s);
    dx_timer_init(&s.idle_timer, on_idle_timer, &s);
    dx_timer_init(&s.progress_timer, on_progress_timer, &s);
    dx_endpoint_init(&s.sock, fd);
    dx_endpoint_init(&s.in, STDIN_FILENO);
    dx_endpoint_init(&s.out, STDOUT_FILENO);

    int rc = 0;
    if (!o->recv_only) {
        rc = dx_pump_start(loop, &s.up, &s.in, &s.sock, o->bufsize,
                           DX_PUMP_SPLICE | (o->no_shutdown ? 0 : DX_PUMP_SHUTDOWN), on_up_done, &s);
        s.up_running = rc == 0;
    }
    if (rc == 0) {
        rc = dx_pump_start(loop, &s.down, &s.sock, o->send_only ? NULL : &s.out, o->bufsize,
                           o->send_only ? DX_PUMP_DISCARD : DX_PUMP_SPLICE, on_down_done, &s);
        s.down_running = rc == 0;
    }
    if (rc < 0) {
        cli_error("%s: %s", peer_text, dx_strerror(rc));
        end_session(&s, EXIT_IO);
    } else {
        if (o->timeout_ms > 0)
            dx_timer_start(loop, &s.idle_timer, (uint64_t)o->timeout_ms, 0);
        if (progress_enabled(o)) {
            progress_init(&s.progress, dx_loop_now(loop), o->recv_only ? -1 : STDIN_FILENO);
            dx_timer_start(loop, &s.progress_timer, 500, 500);
        }
        rc = dx_loop_run(loop);
        if (rc < 0 && !s.over) {
            cli_error("event loop: %s", dx_strerror(rc));
            end_session(&s, EXIT_IO);
        }
        end_session(&s, s.exit_code);
    }
    dx_loop_update_time(loop);
    uint64_t ms = dx_loop_now(loop) - s.started;
    if (progress_enabled(o))
        progress_show(&s.progress, dx_loop_now(loop), s.up.bytes_out, s.down.bytes_in, 1);
    cli_info(o, "%s: sent %llu bytes, received %llu bytes in %.3f s", peer_text,
             (unsigned long long)s.up.bytes_out, (unsigned long long)s.down.bytes_in,
             (double)ms / 1000.0);
    close(fd);
    return s.exit_code;
}
