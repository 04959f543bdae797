/* cli.h: what the command's files share: options, exit codes, messages.
 * The library never prints; everything the user reads is written here. */
#ifndef DUPLEX_CLI_H
#define DUPLEX_CLI_H

#include "duplex.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <sys/types.h>

/* printf-style checking of the command's message helpers. mingw-w64 checks
 * plain `printf` against msvcrt, which knows no %zu nor %llu; the build uses
 * __USE_MINGW_ANSI_STDIO=1 (C99 formats), so check against that. */
#ifdef _WIN32
#define CLI_PRINTF(fmt, args) __attribute__((format(gnu_printf, fmt, args)))
#else
#define CLI_PRINTF(fmt, args) __attribute__((format(printf, fmt, args)))
#endif

/* Exit codes: documented in --help, README.md and docs/duplex.1. */
enum {
    EXIT_OK = 0,
    EXIT_IO = 1,       /* the connection failed during the exchange (reset, broken pipe) */
    EXIT_USAGE = 2,    /* bad command line: unknown flag, invalid port, conflicting options */
    EXIT_RESOLVE = 3,  /* a name or address could not be resolved */
    EXIT_CONNECT = 4,  /* connect failed (refused, unreachable); -z: no port open */
    EXIT_TIMEOUT = 5,  /* connect timeout (-w) or idle timeout (-w, --idle-timeout) */
    EXIT_LISTEN = 6,   /* cannot listen: address in use, permission denied, bad local address */
    EXIT_SIGNAL = 128, /* + the signal that stopped the command (SIGINT: 130, SIGTERM: 143) */
};

enum cmd { CMD_CONNECT, CMD_LISTEN, CMD_RELAY, CMD_SOCKETS };

/* How a server runs its clients (--model, S1.4). */
enum model {
    MODEL_LOOP,      /* one event loop (epoll, poll or io_uring: --backend) */
    MODEL_ITERATIVE, /* the event loop, one client at a time */
    MODEL_FORK,      /* a process per client (echo) */
    MODEL_THREAD,    /* a thread per client (echo) */
};

/* What a server does with its clients (serve.c, exec.c). */
enum mode {
    MODE_STDIO,  /* one client: stdio session; -k: clients -> stdout, stdin -> all */
    MODE_ECHO,   /* every byte back to its sender */
    MODE_BROKER, /* every byte to every other client (and the server's stdio) */
    MODE_CHAT,   /* broker by lines, with the sender's name and join/leave notices */
    MODE_EXEC,   /* a process per client, the socket as its stdin/stdout */
};

/* End of input on stdin: what happens to the connection's write side. */
struct options {
    enum cmd cmd;
    int family;            /* AF_UNSPEC, AF_INET, AF_INET6 (-4/-6) */
    const char *unix_path; /* -U: the socket path (connect or listen) */
    const char *host;      /* connect: target; listen: local address or NULL */
    const char *port;      /* connect: target port; listen: port */
    const char **port_args;/* connect: every PORT argument (ranges with -z) */
    int nport_args;
    int numeric;           /* -n: no DNS */
    const char *source_addr; /* -s */
    const char *source_port; /* -p with connect */
    int port_flag_given;   /* -p was given (relay refuses it) */
    int port_defaulted;     /* listen with no PORT: ncat's 31337, always announced */
    int keep_listening;    /* -k */
    int verbose;           /* -v (repeatable) */
    int zero_io;           /* -z */
    int no_shutdown;       /* --no-shutdown */
    int eof_shutdown;      /* -N: pass the end of stdin on, even through a proxy (-x) */
    int recv_only;         /* -d / --recv-only: never read stdin */
    int send_only;         /* --send-only: discard what arrives */
    int crlf;              /* -C: send a lone LF from stdin as CRLF */
    int64_t delay_ms;      /* --delay TIME: stdin sent a line at a time, TIME apart */
    int telnet;            /* -t/--telnet: refuse Telnet options, strip commands (telnet.c) */
    const char *hex_dump;  /* --hex-dump FILE ("-": stderr) */
    const char *output;    /* -o / --output FILE: a copy of both directions */
    int append_output;     /* --append-output: -o and --hex-dump append */
    int64_t quit_after_eof_ms; /* -q SECS; -1: wait for the peer (default) */
    int64_t timeout_ms;    /* -w SECS; 0: none (ms values: 64 bits, up to a year) */
    int backlog;           /* --backlog N; 0: the system maximum */
    int reuseport;         /* --reuseport */
    const char *backend;   /* --backend NAME (else DUPLEX_BACKEND, else best) */
    size_t bufsize;        /* --buffer-size */
    enum mode mode;        /* --echo, --broker, --chat, --exec, --sh-exec */
    const char *exec_cmd;  /* --exec / --sh-exec */
    int exec_shell;        /* --sh-exec: run through /bin/sh -c */
    int no_stdio;          /* --no-stdio: the server's stdin/stdout take no part */
    long max_conns;        /* --max-conns; 0: no limit */
    int64_t idle_timeout_ms; /* --idle-timeout; 0: none */
    size_t max_queue;      /* --max-queue: bytes queued for one client before it is dropped */
    dx_acl acl;            /* --allow, --deny, --allowfile, --denyfile */
    enum model model;      /* --model */
    int threads;           /* --threads N: N event loops sharing the port */
    int quiet;             /* internal: do not announce the listening address */
    int shared_listener;   /* internal, --threads on Windows (no SO_REUSEPORT): 1 + a listening
                            * socket to serve (this loop's copy of the first loop's), open none;
                            * 0: none */
    const char *target_host, *target_port, *target_unix; /* relay TARGET (the first one) */
#define MAX_TARGETS 32
    struct relay_target_arg {
        const char *host, *port, *unix_path;
    } targets[MAX_TARGETS]; /* relay TARGET...: every target, in order (the first is target_*) */
    int ntargets;
    int balance;           /* relay --balance: BALANCE_* */
    int64_t down_time_ms;  /* relay --down-time: how long a failed target is skipped */
    int inetd;             /* --inetd: stdin/stdout is the accepted connection (activation.c) */
    int listen_fds;        /* socket activation: the listening sockets are fds 3.. 3+N-1 */
    int stats_json;        /* relay --stats-json */
#define MAX_SOCKOPTS 40
    dx_sockopt sockopts[MAX_SOCKOPTS]; /* -O NAME=VALUE, one per option (the last wins) */
    int nsockopts;
    int show_opts;         /* --show-opts: print what the kernel reports for each socket */
    int udp;               /* -u: UDP datagrams (udp.c) */
    int has_send_oob;      /* --send-oob C given */
    unsigned char send_oob;/* --send-oob: the byte sent as TCP urgent data */
    int oob_inline;        /* --oob-inline: SO_OOBINLINE, urgent data stays in the stream */
    int progress;          /* --progress: PROGRESS_* */
    const char *proxy_host;/* -x/--proxy: connect through this proxy (proxy.c) */
    const char *proxy_port;/* its port (default 1080 SOCKS, 3128 HTTP) */
    int proxy_type;        /* -X/--proxy-type: PROXY_* */
    const char *proxy_auth;/* --proxy-auth USER:PASS (connect -x; listen --proxy-type: required of clients) */
    int proxy_dns;         /* --proxy-dns: PROXY_DNS_* (where the target name is resolved) */
    int proxy_serve;       /* listen --proxy-type: PROXY_SOCKS5 or PROXY_HTTP + 1 (0: not a proxy) */
    int tls;               /* --ssl/--tls: TLS client (connect) or server (listen): tls.c */
    int tls_target;        /* relay --ssl-target: TLS to TARGET (a client of it) */
    int accept_proxy;      /* --accept-proxy: each client starts with a PROXY header */
    int send_proxy;        /* relay --send-proxy: 0, or the header's version (1, 2) */
    int tls_no_verify;     /* --ssl-no-verify: connect without checking the certificate */
    int tls_verify;        /* --ssl-verify: listen: require and verify client certificates */
    const char *tls_cert;  /* --ssl-cert FILE (PEM, the chain may follow) */
    const char *tls_key;   /* --ssl-key FILE (PEM) */
    const char *tls_trustfile;  /* --ssl-trustfile FILE: PEM CAs instead of the system store */
    const char *tls_servername; /* --ssl-servername NAME: SNI and the name checked */
    const char *tls_alpn;  /* --ssl-alpn PROTO[,PROTO] */
    const char *tls_ciphers; /* --ssl-ciphers LIST: OpenSSL's, for TLS 1.2 */
    const char *tls_pin;   /* --ssl-pin PIN[;PIN]: the server's certificate or key (tls.c) */
    uint64_t rate_limit;   /* --rate-limit: bytes/s each way per connection; 0: none */
    const char *pty_link;  /* connect --pty LINK: a pseudo-terminal instead of stdio (tty.c) */
    const char *serial;    /* relay --serial SPEC: TARGET is a character device (tty.c) */
    const char *cluster;   /* listen --broker/--chat --cluster redis://...: cluster.c */
    const char *node_name; /* --node-name (default: the host name), with --cluster */
    char node_name_buf[65];
};

/* proxy.c: connect through a SOCKS4(a), SOCKS5 or HTTP CONNECT proxy */
enum { PROXY_SOCKS5, PROXY_SOCKS4, PROXY_HTTP };
/* --proxy-dns (ncat): remote (default: the name goes to the proxy), local
 * (resolved here, the address sent), both (here, else the name), none
 * (numeric targets only) */
enum { PROXY_DNS_REMOTE, PROXY_DNS_LOCAL, PROXY_DNS_BOTH, PROXY_DNS_NONE };
/* options.c: "3000ms", "3s", "2m", "1h", "5" (seconds) -> ms; 0, -1 not a time, -2 too large */
int cli_parse_duration(const char *text, double max_secs, int64_t *ms);
int cli_parse_rate(const char *text, uint64_t *out); /* --rate-limit: bytes/s; 0, or -1 */
extern int cli_acl_no_dns; /* 1: host names in --allow/--deny fail without DNS (the fuzzer) */
int cli_proxy_type(const char *text);          /* PROXY_*, or -1 */
const char *cli_proxy_type_name(int type);     /* "socks5", "socks4", "http" */
/* Ask the proxy connected on fd (non-blocking) for a connection to
 * o->host:port, bounded by -w (else 10 s). Returns 0, or a negative code
 * (DX_ETIMEDOUT, -EINTR on a stop signal, else -ECONNREFUSED and the like)
 * with why set to "SOCKS5 connect to HOST:PORT: cause". Reads exactly the
 * proxy's reply: what the target sends next stays in the socket. */
int cli_proxy_handshake(const struct options *o, int fd, int port, char *why, size_t whylen);
/* The same, where an HTTP proxy that answers 407 and closes the connection
 * is called again: reconnect(arg) returns a new connected fd (or < 0), the
 * handshake closes the old one and *fd is the one in use at the end (< 0
 * when reconnecting failed). */
int cli_proxy_handshake_ex(const struct options *o, int *fd, int port, int (*reconnect)(void *arg), void *arg,
                           char *why, size_t whylen);

/* proxyserv.c: listen --proxy-type socks5|http (o->proxy_serve - 1): a
 * proxy server for many clients until a stop signal. Returns an exit code. */
int cli_proxy_serve(const struct options *o, dx_loop *loop);

/* httpauth.c: HTTP proxy authentication for the proxy client (proxy.c) and
 * the proxy server: Basic (RFC 7617) and Digest (RFC 7616, MD5 and SHA-256,
 * qop=auth). MD5 and SHA-256 are written there (no libcrypto on Windows). */
void cli_md5(const void *data, size_t n, unsigned char out[16]);
void cli_sha256(const void *data, size_t n, unsigned char out[32]);
int cli_memeq_ct(const void *a, const void *b, size_t n); /* 1 when equal; constant time */
/* 1 when a[0..alen) equals b[0..blen), in a time that shows neither content
 * nor lengths (their SHA-256 digests compared): passwords, user names. */
int cli_streq_ct(const char *a, size_t alen, const char *b, size_t blen);
int cli_random_bytes(void *out, size_t n);                /* 0, or -1: no randomness */
/* base64 (RFC 4648) of n bytes, NUL-terminated: its length, or -1 when out is
 * too small; decoding is strict (padding, no spaces): the byte count, or -1. */
int cli_base64(const void *in, size_t n, char *out, size_t outlen);
/* 1 when the token name[0..n) is in the comma-separated header value
 * v[0..vn) (Connection: close, keep-alive), case-insensitively. */
int cli_http_list_has(const char *v, size_t vn, const char *name, size_t n);
int cli_unbase64(const char *in, size_t n, unsigned char *out, size_t outlen);
/* One challenge or credentials (RFC 7235): "scheme token68" or "scheme
 * name=value, ..." (quoted values unquoted). Strings live in store. */
#define CLI_AUTH_PARAMS 16
struct cli_auth {
    const char *scheme;
    const char *token68; /* NULL unless given */
    int nparams;
    const char *name[CLI_AUTH_PARAMS], *value[CLI_AUTH_PARAMS];
    char store[4096];
};
/* A header value of n bytes (no NUL needed), whose challenges are added to
 * out (at most max): their count, or -1 when malformed (anything: an
 * unclosed quote, a control byte, a repeated name, too long, too many). */
int cli_auth_parse(const char *text, size_t n, struct cli_auth *out, int max);
const char *cli_auth_param(const struct cli_auth *a, const char *name); /* case-insensitive; NULL */
/* The Digest response (RFC 7616 3.4.1, qop=auth) in lower-case hex: 0, or
 * -1 for an algorithm other than MD5, SHA-256 and their -sess (NULL: MD5). */
int cli_http_digest(const char *algorithm, const char *user, const char *realm, const char *pass,
                    const char *method, const char *uri, const char *nonce, const char *nc,
                    const char *cnonce, char out[65]);
/* Client: the Proxy-Authorization value (no header name) answering the
 * strongest of n challenges: Digest SHA-256, Digest MD5 (qop=auth), then
 * Basic; credentials "user:pass" ("user": an empty password); *chosen names
 * the scheme. Its length, 0 when no challenge is usable, -1 on error. */
int cli_http_auth_answer(const struct cli_auth *ch, int n, const char *method, const char *uri,
                         const char *credentials, char *out, size_t outlen, const char **chosen);
/* Server: the Proxy-Authenticate header lines (each ending CRLF): Digest
 * MD5 (ncat's client takes the first Digest and knows no SHA-256), Digest
 * SHA-256, then Basic, with a nonce verified statelessly (its
 * time and a keyed hash; older than 5 minutes: stale). The length, or -1.
 * _ex with stale=1 adds stale=true to the Digest challenges. */
int cli_http_auth_challenge(char *buf, size_t len, const char *realm);
int cli_http_auth_challenge_ex(char *buf, size_t len, const char *realm, int stale);
/* Server: 1 when a Proxy-Authorization value proves credentials ("user:pass"
 * as given to --proxy-auth), else 0 (anything malformed: 0). Digest needs
 * our nonce, realm, qop=auth, nc, cnonce; compared in constant time. _ex
 * also checks uri against request_uri (NULL: any) and sets *stale (may be
 * NULL) when only the nonce was too old: answer with challenge_ex(stale=1). */
int cli_http_auth_verify(const char *proxy_authorization_value, const char *method, const char *credentials,
                         const char *realm);
int cli_http_auth_verify_ex(const char *value, const char *method, const char *request_uri,
                            const char *credentials, const char *realm, int *stale);

/* tls.c: --ssl. cli_tls_open() checks the TLS options and loads the
 * certificates (or makes the ephemeral one) before any socket exists: 0, or
 * an exit code after printing why (EXIT_USAGE when built without TLS).
 * cli_tls_session() runs the handshake on fd (connected or accepted, owned:
 * closed on return), then a stdio session over libduplex's TLS; returns the
 * exit code. cli_tls_close() frees what cli_tls_open() made. */
int cli_tls_open(const struct options *o);
int cli_tls_session(dx_loop *loop, const struct options *o, int fd, const char *peer_text);
void cli_tls_close(void);
/* For session.c over TLS: a read (in_read) or write of the session failed
 * with error: say why (the TLS reason; an alert before any data received
 * is the handshake's failure) and return the exit code. ended(): the
 * peer's end of input came; a close without close_notify is said.
 * goodbye(): close_notify if not sent yet (best effort, non-blocking). */
int cli_tls_failed(const struct options *o, dx_tls *t, const char *peer, int error, int in_read,
                   uint64_t received);
void cli_tls_ended(const struct options *o, dx_tls *t, const char *peer, int one_of_many);
void cli_tls_goodbye(dx_tls *t);
/* The TLS side of a server or relay with many connections, on one loop:
 * each accepted client's handshake runs in the loop, bounded by -w (else
 * 10 s), at most 1024 at once (see cli_tls_server_full); then ready() gets
 * the client's socket and its dx_tls (the owner's now: dx_stream_set_tls()
 * or dx_endpoint_set_tls(), then cli_tls_goodbye() and dx_tls_free() when
 * done, and close the socket). A failed handshake is a -v line; the server
 * goes on. cli_tls_server_live() counts accepted clients in handshake. */
#define CLI_TLS_MAX_HANDSHAKES 1024
struct cli_tls_server;
typedef void (*cli_tls_ready_cb)(void *data, int fd, const dx_addr *peer, const dx_addr *local,
                                 dx_tls *tls);
struct cli_tls_server *cli_tls_server_new(dx_loop *loop, const struct options *o,
                                          cli_tls_ready_cb ready, void *data);
/* local: the address the client reached, for ready() (NULL: the socket's) */
void cli_tls_server_accept(struct cli_tls_server *ts, int fd, const dx_addr *peer,
                           const dx_addr *local, const char *name);
unsigned cli_tls_server_live(const struct cli_tls_server *ts);
/* 1 when CLI_TLS_MAX_HANDSHAKES handshakes are in progress: the owner stops
 * accepting, and room(room_data) is called once one has ended; else 0. */
int cli_tls_server_full(struct cli_tls_server *ts, void (*room)(void *data), void *room_data);
void cli_tls_server_free(struct cli_tls_server *ts);
/* relay --ssl-target: a TLS client handshake on fd (connected to TARGET,
 * owned from here) in the loop, the name checked as connect --ssl checks
 * it; then connected() gets the socket and its dx_tls (as ready() does),
 * or -1 and NULL when the handshake failed (said on stderr). Returns a
 * handle to cancel the handshake with (the owner's connection ended
 * first), or NULL when connected() was already called. */
struct cli_tls_conn;
typedef void (*cli_tls_connected_cb)(void *data, int fd, dx_tls *tls);
struct cli_tls_conn *cli_tls_server_connect(struct cli_tls_server *ts, int fd, const char *name,
                                            cli_tls_connected_cb connected, void *data);
void cli_tls_conn_cancel(struct cli_tls_conn *c);
/* --model thread/fork --ssl: the handshake of the calling thread's own
 * client on fd (blocking, under -w, else 10 s; a failure is a -v line),
 * its dx_tls made for loop: 0 and *out, or -1 (fd stays open). */
int cli_tls_accept_one(dx_loop *loop, const struct options *o, int fd, const char *name, dx_tls **out);
/* duplex bench --ssl: bare non-blocking TLS clients without verification (a
 * load generator measures the server; it checks every byte that comes back
 * instead). init: 0, or an exit code after printing (no TLS in this build).
 * handshake: 0 done, DX_READ/DX_WRITE to wait for, -1 failed. read/write:
 * bytes, 0 at the peer's end (read), -EAGAIN, or -EIO. */
struct cli_tls_sock;
int cli_tls_bench_init(void);
struct cli_tls_sock *cli_tls_bench_new(int fd);
int cli_tls_bench_handshake(struct cli_tls_sock *t);
ssize_t cli_tls_bench_read(struct cli_tls_sock *t, void *buf, size_t n);
ssize_t cli_tls_bench_write(struct cli_tls_sock *t, const void *buf, size_t n);
void cli_tls_bench_free(struct cli_tls_sock *t);

/* progress.c: --progress */
enum { PROGRESS_OFF, PROGRESS_AUTO, PROGRESS_ALWAYS };
struct progress {
    uint64_t start_ms, last_ms, last_bytes;
    uint64_t total;  /* bytes expected from stdin (a regular file), or 0 */
    double rate;     /* bytes/s, smoothed */
    int shown;
    int tty;         /* stderr is a terminal: one line rewritten in place */
    uint64_t line_ms;/* not a terminal: when the last plain line was written */
};
int progress_enabled(const struct options *o);
void progress_init(struct progress *p, uint64_t now_ms, int fd_in);
void progress_show(struct progress *p, uint64_t now_ms, uint64_t sent, uint64_t received, int final);

/* messages.c */
void cli_error(const char *fmt, ...) CLI_PRINTF(1, 2);
void cli_info(const struct options *o, const char *fmt, ...) CLI_PRINTF(2, 3);
int cli_exit_code_for(int code, int during_connect);
const char *cli_s(unsigned long long n); /* plural "s", or "" for 1 */
const char *cli_local_text(const dx_addr *a, char *buf, size_t len); /* "ADDR" or "ADDR:PORT" */
void cli_usage_short(void);

/* options.c: returns 0 and fills o, or prints the problem and returns
 * EXIT_USAGE; returns -1 after printing --help or --version (exit 0). */
int cli_parse(int argc, char **argv, struct options *o);

/* session.c: copy stdin to the socket and the socket to stdout until both
 * directions end. Takes ownership of fd (closes it). Returns an exit code. */
int cli_session(dx_loop *loop, const struct options *o, int fd, const char *peer_text);
/* The same over TLS: tls (its handshake done) reads and writes fd; the
 * caller frees it after (fd is closed here, as by cli_session). */
int cli_session_tls(dx_loop *loop, const struct options *o, int fd, const char *peer_text,
                    dx_tls *tls);

/* listeners.c: the listening sockets of `duplex listen` */
#define MAX_LISTENERS 16
struct listeners {
    const struct options *o;
    dx_loop *loop;
    dx_io io[MAX_LISTENERS];
    int n;
    int watching;          /* accepting now */
    int paused;            /* the owner asked not to accept (e.g. at a limit) */
    dx_timer resume;       /* after descriptor exhaustion */
    unsigned long exhausted; /* times accept() ran out of descriptors */
    int fatal;             /* accept failed for good */
    int unix_bound;        /* we created the Unix socket file: remove it at the end */
    int nodelay;           /* the owner forwards small writes: TCP_NODELAY on clients */
    atomic_ulong denied;   /* clients refused by the access list (read by other loops: --threads totals) */
    int inetd_pending;     /* --inetd: inetd_fd, taken at open, is handed over from the loop */
    int inetd_fd;
    dx_addr inetd_peer;
    dx_addr inetd_local;   /* what its PROXY header says it reached, else AF_UNSPEC */
    /* local: the address the client reached as its PROXY header says
     * (--accept-proxy), else NULL: the socket's own */
    void (*on_client)(struct listeners *l, int fd, const dx_addr *peer, const dx_addr *local);
    void *data;
    struct pp_pending *pending; /* --accept-proxy: clients whose header is being read */
    unsigned long npending;
    atomic_ulong bad_headers;   /* clients refused for their PROXY header (as denied) */
};
/* Open, report ("listening on ..."); returns 0 or an exit code (after
 * printing why). Accepting starts with listeners_watch(l, 1). With socket
 * activation (o->listen_fds) the system's sockets are taken instead of
 * opening any; with --inetd none is: the connection on stdin is taken
 * (listeners_inetd_take) and handed to on_client, from the loop, once
 * watching starts. */
int listeners_open(struct listeners *l, const struct options *o, dx_loop *loop,
                   void (*on_client)(struct listeners *, int, const dx_addr *, const dx_addr *),
                   void *data);
void listeners_watch(struct listeners *l, int on);
/* The access list (--allow/--deny, --allowfile/--denyfile) for a client at
 * peer: 1 to serve it, else 0 (with report: after a -v line naming it and
 * the rule), and the caller drops it. Every accepted connection passes it
 * before the owner's on_client (Unix clients, which have no address, are
 * not asked); listen -u asks it about each datagram's sender. */
int listeners_admit(const struct options *o, const dx_addr *peer, const char *name, int report);
/* Print "listening on ..." (listeners_open does, unless o->quiet). */
void listeners_announce(const struct listeners *l, const struct options *o);
/* --inetd (xinetd, systemd Accept=yes): the connection on stdin/stdout as a
 * client: *fd a descriptor of its own (close-on-exec; stdin and stdout are
 * then /dev/null, so that closing *fd ends the connection), *peer its
 * peer (AF_UNIX for a socketpair: socat EXEC), *local the address its PROXY
 * header says it reached (--accept-proxy; else AF_UNSPEC), name its text;
 * admitted by listeners_admit() as accepted clients are (a peer without an
 * IP address fails an access list). 0, or an exit code after printing why. */
int listeners_inetd_take(const struct options *o, int *fd, dx_addr *peer, dx_addr *local,
                         char *name, size_t len);
/* activation.c: systemd socket activation (sd_listen_fds(3) semantics,
 * without libsystemd). At start-up, before any descriptor is opened or any
 * child started: when LISTEN_PID is this process, o->listen_fds = LISTEN_FDS
 * (the sockets are fds 3..), each made close-on-exec; the variables are
 * removed from the environment (children must not take them). 0, or an exit
 * code after printing. Windows: the variables are ignored. */
int cli_activation_init(struct options *o);
const char *cli_activation_name(int i); /* LISTEN_FDNAMES' i-th name, or NULL */
void listeners_close(struct listeners *l);
/* A client's name in messages: ADDR:PORT, or PATH#N for the Nth client of
 * a Unix socket (which has no address of its own). */
void listeners_client_name(const struct listeners *l, const dx_addr *peer, unsigned long n,
                           char *name, size_t len);
/* --ssl servers (serve.c, relay.c): fd's handshake starts in ts, whose ready
 * callback then admits the client. Without -k the port closes first (one
 * client, like nc -l): returns 1 then, and the owner stops when idle. At
 * the cap of handshakes in progress, accepting waits for one to end. */
struct cli_tls_server;
int listeners_tls_accept(struct listeners *l, struct cli_tls_server *ts, int fd,
                         const dx_addr *peer, const dx_addr *local, const char *name);

/* Open a socket on every local address the options name, for listen (TCP or
 * Unix) and listen -u alike: no host gives one dual-stack IPv6 socket (IPv4
 * alone where the system has no IPv6); a host gives a socket per address it
 * resolves to, the later ones taking the port the first got when the port is
 * 0. open() makes one socket (dx_listen, dx_dgram_bind: a descriptor or
 * -errno), failed() says why one could not be made, keep() takes it (0, or
 * -errno to stop). Returns 0 or the first -errno. */
struct cli_opener {
    int (*open)(const dx_addr *addr, const dx_listen_opts *lo);
    void (*failed)(void *ctx, const dx_addr *addr, const dx_listen_opts *lo, int code);
    int (*keep)(void *ctx, int fd);
    void *ctx;
    int resolve_flags; /* DX_RESOLVE_DGRAM for datagram sockets */
};
int cli_open_every(const struct options *o, dx_listen_opts lo, const struct cli_opener *how);

/* proxyproto.c: the PROXY protocol, v1 and v2 (haproxy's proxy-protocol.txt). */
#define CLI_PP_V1_MAX 107 /* the longest v1 line, CRLF included */
#define CLI_PP_MAX 2048   /* the longest header taken (v2: 16 + its length) */
struct cli_pp {
    int version;          /* 1 or 2 */
    int local;            /* no client address (v1 UNKNOWN; v2 LOCAL, UNSPEC or Unix):
                           * the connection's own addresses stand */
    dx_addr src, dst;     /* else the client and the address it connected to */
};
/* The header at the start of buf (n bytes): its length once complete (*out
 * filled), 0 while more bytes are needed (every byte of buf is header then,
 * so reading them all takes nothing of what follows), or -EPROTO for no
 * valid header (or one longer than the bounds above). */
int cli_pp_parse(const unsigned char *buf, size_t n, struct cli_pp *out);
/* The header for a client at src that connected to dst (IPv4-mapped
 * addresses as IPv4; a Unix client: v1 UNKNOWN, v2 AF_UNSPEC) in buf, of
 * version 1 or 2: its length, or 0 when len is too small (108 and 52
 * always do). */
size_t cli_pp_encode(unsigned char *buf, size_t len, int version, const dx_addr *src,
                     const dx_addr *dst);

/* connect.c, listen.c (one client), serve.c (many clients), exec.c */
int cli_connect(const struct options *o, dx_loop *loop);
int cli_listen_once(const struct options *o, dx_loop *loop);
int cli_serve(const struct options *o, dx_loop *loop);
struct server;
struct server *serve_open(const struct options *o, dx_loop *loop, int *exit_code);
int serve_run(struct server *sv);
/* After the loops have stopped: the -v totals of every loop, then the
 * children stopped (SIGTERM, SIGKILL after a grace period). */
void serve_end(const struct options *o);
void serve_close(struct server *sv);
int serve_listen_fd(const struct server *sv);
void serve_announce(const struct server *sv, const struct options *o);
/* Fork CMD on fd for the client at peer; local is the connection's own
 * address when fd is not the connection itself (TLS), else NULL. */
pid_t exec_client(const struct options *o, int fd, const dx_addr *peer, const dx_addr *local);
/* listen --exec/--sh-exec --ssl: fork CMD on a socketpair and pump between
 * it and the client's socket fd through tls (both owned from here on
 * success; on the server's list): the pid, or -1 after printing (fd and
 * tls stay the caller's). done(data) is called from the loop once the
 * client is over. close_all: the server stops, every one on its list is
 * freed now (done() not called). */
struct exec_tls;
pid_t exec_tls_client(dx_loop *loop, const struct options *o, int fd, dx_tls *tls,
                      const dx_addr *peer, const dx_addr *local, struct exec_tls **list,
                      void (*done)(void *data), void *data);
void exec_tls_close_all(struct exec_tls **list);
/* listen --inetd --exec/--sh-exec: the connection on stdin admitted
 * (listeners_inetd_take), this process becomes CMD on it, with the
 * variables of an --exec child. Returns an exit code only on failure. */
int exec_inetd(const struct options *o);
/* connect --exec/--sh-exec (connect.c): run the program on the connected
 * socket fd (owned: the child's), wait for it; the exit code. */
int cli_exec_connected(dx_loop *loop, const struct options *o, int fd, const char *peer_text);
pid_t exec_fork(void);    /* fork, counted and reaped; child gets default signals */
/* The children's reaper: the first loop to call exec_init() reaps for all
 * (0 or -errno); exec_detach(loop) before that loop is freed. */
int exec_init(dx_loop *loop);
void exec_detach(dx_loop *loop);
void exec_reap(void);     /* reap the children that have ended, now */
int exec_children(void);  /* children still running */
unsigned long exec_failed(void); /* children whose exec failed, so far */
void exec_stop_children(int timeout_ms); /* SIGTERM, wait, then SIGKILL */
void exec_kill_all(void); /* SIGKILL every child's process group: async-signal-safe */
/* --exec/--sh-exec at start-up: the program exists and may be run, found as
 * the children will look for it (PATH): 0, or EXIT_USAGE after printing. */
int exec_check(const struct options *o);
/* In a forked child that runs duplex code: close every descriptor above 2
 * but keep. */
void exec_close_inherited(int keep);
/* --idle-timeout for --exec clients (TCP): the server keeps fd, its copy of
 * the child's socket (1 if kept, 0 if the caller should close it), and
 * exec_close_idle() stops each child whose connection has moved no data for
 * limit_ms, shutting the connection down. */
int exec_watch_idle(pid_t pid, int fd, const dx_addr *peer);

/* exec_env.c: the variables of an --exec child (both ends of the connection
 * and the protocol, duplex's names and ncat's) as "NAME=VALUE\0" entries in
 * out: the bytes used (entries that do not fit are left out).
 * exec_env_names: every name it may set (to drop inherited ones). */
#define EXEC_ENV_NAMES 10
extern const char *const exec_env_names[EXEC_ENV_NAMES];
size_t exec_env_vars(char *out, size_t len, const struct options *o, int fd,
                     const dx_addr *peer, const dx_addr *local);

/* telnet.c: -t/--telnet on what the socket gives: answers each DO/WILL
 * with WONT/DONT (sent on fd; sent(), if set, sees each answer, for
 * --hex-dump and -o) and returns the bytes for stdout, without Telnet
 * commands, in out (room for n). */
struct cli_telnet {
    int state;
    unsigned char verb;
    unsigned char reply[3 * 64];
    size_t nreply;
    void (*sent)(void *data, const char *bytes, size_t n);
    void *sent_data;
};
size_t cli_telnet_filter(struct cli_telnet *t, int fd, const char *in, size_t n, char *out);

/* filters.c: -C and --hex-dump on a session's pumps */
int cli_filters_open(const struct options *o); /* 0, or an exit code (printed) */
int cli_filters_active(const struct options *o);
/* -C: in (n bytes) to out (room for 2n) with each lone LF made CRLF; a CR
 * that ended the previous chunk is *last_was_cr (updated). Returns the
 * length of out. */
size_t cli_crlf(const char *in, size_t n, char *out, int *last_was_cr);
void cli_filters_attach(const struct options *o, dx_pump *up, dx_pump *down);
void exec_close_idle(const struct options *o, uint64_t limit_ms);

/* The loop time a connection's two pumps last moved a byte, either way
 * (--idle-timeout measures from it). */
static inline uint64_t cli_pumps_last_activity(const dx_pump *up, const dx_pump *down)
{
    return up->last_activity > down->last_activity ? up->last_activity : down->last_activity;
}

/* A pump failed writing to a socket whose connection is gone (reset, broken
 * pipe, timed out). The opposite pump reads that same socket, and the kernel
 * still holds what the peer sent before it went: a server that answers and
 * closes with our request unread resets us, and its answer is in there.
 * Returns 1 if the pair must let that pump run to its end (it soon reads
 * the end or the reset) before closing, so that no byte received is lost. */
static inline int cli_pump_drain_first(const dx_pump *failed, int error, int in_read,
                                       const dx_pump *other)
{
    return error < 0 && !in_read && failed->dst && failed->dst->is_socket &&
           other->src == failed->dst && !other->done &&
           (error == -EPIPE || error == -ECONNRESET || error == -ETIMEDOUT || error == -ENOTCONN);
}

/* delay.c: --delay. cli_delay_open() starts pacing stdin and returns the
 * descriptor the session reads instead of stdin (or -errno);
 * cli_delay_close() at the end of the session. */
int cli_delay_open(dx_loop *loop, const struct options *o);
void cli_delay_close(void);

/* udp.c: -u (connect and listen) */
int cli_udp_connect(const struct options *o, dx_loop *loop);
int cli_udp_listen(const struct options *o, dx_loop *loop);
void cli_udp_bind_failed(void *ctx, const dx_addr *a, const dx_listen_opts *lo, int code);
/* A sender's address for messages: an IPv4-mapped one as IPv4 (127.0.0.1:5) */
char *cli_udp_peer_format(const dx_addr *a, char *buf, size_t n);
/* udp_unix.c: -U -u. The datagram socket of connect (bound to -s PATH or
 * an automatic address, connected to o->unix_path; peer_text gets the path)
 * or of listen (bound to o->unix_path): a descriptor, or -errno (said).
 * created gets the path of a socket file made (to remove at the end, and
 * registered with cli_remove_on_exit), else "". */
int cli_unix_dgram_open(const struct options *o, int server, char *created, size_t len,
                        char *peer_text, size_t peer_len);
int cli_unix_dgram_unnamed(const dx_addr *a); /* from a Unix datagram socket: 1 if the sender has no address */
/* udp_probe.c: connect -z -u */
int cli_udp_probe(const struct options *o, dx_loop *loop);

/* sockopts.c: -O and --show-opts. cli_sockopt_error() prints which -O
 * option the kernel refused on `where` (an address) and why.
 * cli_apply_sockopts() sets -O options on fd (an accepted socket): 0, or
 * -errno after printing the error. cli_show_opts() prints, with --show-opts,
 * what the kernel reports for fd, one "duplex: option NAME = VALUE" line
 * each; `what`: "listening", "connected", "accepted". */
void cli_sockopt_error(const struct options *o, int index, const char *where, int code);
int cli_apply_sockopts(const struct options *o, int fd, const char *where);
/* TCP_NODELAY on a TCP socket that forwards what it gets (server modes,
 * relay), unless -O nodelay says otherwise: Nagle would hold each small
 * write until the previous one is acknowledged, and a receiver that sends
 * nothing back delays its ACKs (40 ms a message). */
void cli_default_nodelay(const struct options *o, int fd);
void cli_show_opts(const struct options *o, int fd, const char *what);
int cli_sockopt_add(struct options *o, const char *text); /* -O: 0 or EXIT_USAGE (printed) */

/* cluster_frame.c: --cluster's URL, redis[s]://[[USER]:PASSWORD@]HOST[:PORT]/CHANNEL
 * [?cacert=PATH] (%XX escapes in the credentials, channel and path; rediss:
 * TLS, cacert: its CAs instead of the system store): 0, or -1
 * with why. The frames on the channel: "DX1 T NODEID SEQ\n" + payload,
 * T a CLUSTER_* type; parse: 0, or -1 for anything else. */
struct cluster_url {
    char host[256], port[12], user[128], pass[256], channel[256], cacert[1024];
    int has_pass;
    int tls;
};
int cli_cluster_url_parse(const char *text, struct cluster_url *u, const char **why);
enum { CLUSTER_MSG = 'M', CLUSTER_BEAT = 'H' };
#define CLUSTER_ID_LEN 16
struct cluster_frame {
    int type;
    char node[CLUSTER_ID_LEN + 1]; /* the origin's id, hex */
    uint64_t seq;
    const char *payload;           /* points into the frame */
    size_t n;
};
int cli_cluster_frame_parse(const char *buf, size_t n, struct cluster_frame *f);
size_t cli_cluster_frame_head(char *out, size_t len, int type, const char *node, uint64_t seq);
/* cluster.c (not on Windows: cluster_win32.c refuses): the node's side of
 * a Redis channel. deliver() gets each message another node published;
 * drained() says the publisher is no longer full (cluster_full: senders
 * pause meanwhile). NULL after printing why, with *exit_code. */
struct cluster;
struct cluster *cluster_open(const struct options *o, dx_loop *loop,
                             void (*deliver)(void *data, const char *msg, size_t n),
                             void (*drained)(void *data), void *data, int *exit_code);
void cluster_publish(struct cluster *cl, const char *data, size_t n); /* cl may be NULL */
int cluster_full(const struct cluster *cl);
void cluster_close(struct cluster *cl);

/* tty.c: connect --pty: make the pseudo-terminal, link it at o->pty_link
 * and make its master stdin and stdout (0, or an exit code after saying
 * why); cli_pty_close() removes the link at the end. */
int cli_pty_open(const struct options *o);
void cli_pty_close(void);
void cli_pty_drain(void); /* after the session: until LINK's reader has what arrived */
/* relay --serial: SPEC well formed (0) or not (-1); open the device with
 * termios from o->serial (the fd, or minus an exit code after saying why);
 * cli_serial_close() restores the termios found and closes it. */
int cli_serial_check(const char *spec);
int cli_serial_open(const struct options *o, const char *path);
int cli_serial_dup(void); /* a descriptor of the device for one client, or -errno */
void cli_serial_close(void);

/* relay.c */
int cli_relay(const struct options *o, dx_loop *loop);
/* s as a JSON string, quoted and escaped (--stats-json) */
void cli_json_string(FILE *f, const char *s);
/* relay_udp.c: relay -u, a session (a socket connected to TARGET) per client address */
int cli_relay_udp(const struct options *o, dx_loop *loop);

/* relay_targets.c: relay's TARGETs, which one each client tries first
 * (--balance) and which ones are down (a failed connect: skipped for
 * --down-time, then tried again). */
enum { BALANCE_FIRST, BALANCE_ROUNDROBIN, BALANCE_LEASTCONN };
#define DOWN_TIME_DEFAULT_MS 10000
int cli_balance_parse(const char *text); /* BALANCE_*, or -1 */
struct relay_target {
    dx_addr *addrs;        /* resolved once at start-up */
    int naddrs;
    char name[DX_ADDR_STRLEN];
    unsigned long active;  /* connections connecting to it or relayed to it now */
    int down;              /* its last connect failed */
    uint64_t down_until;   /* loop time when it is tried again */
};
struct relay_targets {
    const struct options *o;
    struct relay_target t[MAX_TARGETS];
    int n;
    int next;              /* roundrobin, leastconn ties: where the next choice starts */
};
/* Resolve every target: 0, or an exit code after printing why. */
int relay_targets_open(struct relay_targets *ts, const struct options *o);
void relay_targets_close(struct relay_targets *ts);
/* The targets a new client tries, in order, into order[] (room for
 * MAX_TARGETS): the --balance choice first, then the other targets that
 * are up, then those marked down (tried all the same: a client is never
 * turned away on a mark alone). Returns how many (ts->n). */
int relay_targets_order(struct relay_targets *ts, uint64_t now, unsigned char *order);
/* A connect to target i failed (code): marked down until now + --down-time
 * (said with -v); or it took a client (failed_over: not the first it
 * tried): marked up again (said). */
void relay_target_failed(struct relay_targets *ts, int i, uint64_t now, int code);
void relay_target_ok(struct relay_targets *ts, int i, int failed_over);

/* sockets.c: `duplex sockets` (argv[0] is "sockets"); its own flags, no event
 * loop. Returns the exit status (0, 1: the kernel refused to list, 2: usage). */
int cli_sockets_main(int argc, char **argv);

/* bench.c: `duplex bench` (argv[0] is "bench"); its own flags and loops.
 * Returns the exit status (0, 1: a byte came back wrong, 2: usage, 4: no
 * connection could be made). */
int cli_bench_main(int argc, char **argv);

/* models.c */
int model_spawn(const struct options *o, int fd, const char *name); /* fork/thread: takes fd */
int model_clients(const struct options *o);        /* fork/thread clients running */
int cli_serve_threads(const struct options *o, dx_loop *loop);

/* stdio.c: fds 0-2 always open; stdin/stdout non-blocking, restored at exit and on
 * SIGINT/SIGTERM/SIGHUP; SIGPIPE ignored; a Unix socket path to unlink if a
 * signal ends the process (NULL: none). */
void cli_stdio_nonblock(void);
/* The descriptors the loop reads stdin from and writes stdout to: 0 and 1
 * on POSIX; on Windows the loop's ends of the console bridge (sockets that
 * threads copy to and from the console or pipes; see stdio_win32.c). */
int cli_stdin_fd(void);
/* Before cli_stdin_fd(): this command never reads stdin (-d): on Windows no
 * thread is started to read it (its bytes stay for whoever reads next). */
void cli_stdin_never_read(void);
int cli_stdout_fd(void);
void cli_stdout_close(void);
void cli_process_init(void);
void cli_remove_on_exit(const char *path);
/* SIGINT/SIGTERM/SIGHUP stop this loop; cli_stop_signal() then says which
 * signal (0: none) and the command exits with 128 + its number. */
void cli_signals_watch(dx_loop *loop);
void cli_signals_unwatch(dx_loop *loop);
int cli_stop_signal(void);
/* Before the loop runs (proxy and TLS handshakes): wait until fd has
 * events or deadline_ms (cli_now_ms() clock) passes. 0 when it has them,
 * DX_ETIMEDOUT, -EINTR after a stop signal, or -errno. */
uint64_t cli_now_ms(void);
int cli_wait_fd(int fd, short events, uint64_t deadline_ms);

#endif
