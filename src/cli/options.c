/* options.c: the command line: subcommands, netcat-compatible flags, range
 * checks, and the --help text (kept in step with docs/duplex.1). */
#define _GNU_SOURCE
#include "cli.h"
#include "os.h"

#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#ifndef _WIN32
#include <unistd.h> /* gethostname (Windows: winsock2.h) */
#endif
#ifdef DX_HAVE_TLS
#include <openssl/crypto.h>
#endif

/* --help: `duplex --help` is a one-screen summary; `duplex COMMAND --help`
 * (or `duplex help COMMAND`) the details, put together from the sections
 * below in cli_help(). Kept in step with docs/duplex.1. */
static const char help_summary[] =
"usage: duplex COMMAND [options] ARGS\n"
"Commands:\n"
"  connect HOST PORT      connect, then copy stdin <-> socket; -U PATH a Unix\n"
"                         socket, -u UDP, -z probe ports, -x proxy, --ssl TLS\n"
"  listen [ADDR] PORT     accept one client, then copy stdin <-> socket; serve\n"
"                         many with -k, --echo, --broker, --chat, -e CMD\n"
"  relay LISTEN TARGET    accept on LISTEN, connect each client to TARGET\n"
"  sockets                list TCP, UDP and Unix sockets (like ss)\n"
"  bench MODE HOST PORT   load-test a server (echo, connrate, throughput, ...)\n"
"  help [COMMAND]         this summary, or a command's options\n"
"Netcat style: 'duplex HOST PORT' connects, 'duplex -l [ADDR] PORT' listens;\n"
"without PORT both take ncat's 31337.\n"
"\n"
"Most used options (connect and listen):\n"
"  -v            print addresses, then bytes each way and duration\n"
"  -4, -6        IPv4 or IPv6 only;  -n  numeric addresses, no DNS\n"
"  -w SECS       connect timeout and idle timeout\n"
"  -k            listen: keep listening, serve many clients\n"
"  -p PORT, -s ADDR  connect: source port and address; listen: port, address\n"
"  --ssl         TLS;  -O NAME=VALUE  a socket option;  --show-opts  print them\n"
"  --version     version and built-in features (backends, TLS)\n"
"Exit status: 0 ok, 1 failed during the exchange, 2 usage error, 3 name not\n"
"resolved, 4 connect failed, 5 timed out, 6 cannot listen, 128+N signal N.\n"
"Details: duplex COMMAND --help, and man duplex.\n";

static const char help_connect_usage[] =
"usage: duplex connect [options] HOST [PORT]    connect, then copy stdin <-> socket\n"
"       duplex connect [options] -U PATH        a Unix socket (@NAME: abstract)\n"
"       duplex connect -z [options] HOST PORT[-PORT]...  probe ports, exchange nothing\n"
"       duplex [options] HOST [PORT]            netcat style: same as connect\n"
"No PORT: ncat's 31337 (HOST alone: a name or an address; a number alone is a\n"
"PORT without its HOST, refused as ncat does).\n"
"Without a command word, a first word one or two letters from a command name\n"
"(conect, lisen) is an unknown command, not a host: write 'duplex connect HOST\n"
"PORT' for such a host.\n";

static const char help_listen_usage[] =
"usage: duplex listen [options] [ADDR] [PORT]   accept a client, then copy stdin <-> socket\n"
"       duplex listen [options] -U PATH         a Unix socket (@NAME: abstract)\n"
"       duplex listen -k|--echo|--broker|--chat|-e CMD [options] [ADDR] PORT\n"
"                                               serve many clients (Server modes)\n"
"       duplex listen --inetd -e|-c CMD [options]   CMD on the connection that is stdin\n"
"       duplex listen --proxy-type socks5|http [--proxy-auth USER:PASS] [ADDR] [PORT]\n"
"                                               a proxy server (Proxy server)\n"
"       duplex -l [options] [ADDR] [PORT]       netcat style: same as listen (or -p PORT)\n"
"ADDR is a local address (a bare number such as 24700 is refused: one PORT only).\n"
"No PORT: ncat's 31337. One word alone is the PORT when it is a number or a\n"
"service name (http), else the ADDR (an address or a host name: localhost).\n";

static const char help_relay_usage[] =
"usage: duplex relay [-k] [options] LISTEN TARGET  accept on LISTEN, connect each client\n"
"                                               to TARGET, copy both ways\n"
"       duplex relay --inetd [options] TARGET      the client is stdin/stdout\n"
"       duplex relay [-k] [--balance MODE] [options] LISTEN TARGET TARGET...\n"
"                                               several targets (or TARGET,TARGET):\n"
"                                               a target that fails is skipped\n"
"       duplex relay -u [-k] [options] LISTEN TARGET  forward UDP datagrams (-u below)\n"
"\n"
"Relay addresses: PORT or ADDR:PORT to listen on, HOST:PORT to connect to, [V6]:PORT,\n"
"unix:PATH (or a path starting with / or .) for Unix sockets. -w bounds each connect;\n"
"-v prints each connection's bytes and duration; --stats-json prints them as JSON\n"
"lines on stdout. --max-conns, --allow/--deny, --idle-timeout apply.\n"
"\n"
"Options:\n"
"  -4, -6, -n, -v, -k       as for connect and listen (see duplex listen --help)\n"
"  -w, --timeout SECS       bound each connect to TARGET (and TLS handshakes)\n"
"      --json, --stats-json each connection's bytes and duration as one JSON line\n"
"                           on stdout\n"
"  -m, --max-conns N        at most N clients at once; more are closed at once\n"
"      --allow RULE, --deny RULE, --allowfile FILE, --denyfile FILE\n"
"                           accept only, or refuse, these clients (as listen)\n"
"  -i, --idle-timeout SECS  close a connection after SECS without traffic\n"
"      --balance MODE       with several targets, which one a client tries\n"
"                           first: first (the default: in the order given,\n"
"                           failover), roundrobin (in turn) or leastconn (the\n"
"                           fewest connections now, ties in turn); a target\n"
"                           that refuses or times out (-w) is skipped for that\n"
"                           client (the next one is tried) and marked down\n"
"      --serial SPEED[,DPS] TARGET is a serial device (e.g. 115200,8N1 with\n"
"                           TARGET /dev/ttyUSB0): opened at start, termios set\n"
"                           (data bits 5-8, parity N/E/O, stop bits 1/2, raw),\n"
"                           restored at exit; one client at a time (another is\n"
"                           told and closed); its end ends the connection\n"
"      --down-time SECS     how long a target marked down is skipped before it\n"
"                           is tried again (default 10; when every target is\n"
"                           down, they are all tried)\n"
"  -u, --udp                forward UDP datagrams: a session (a socket connected\n"
"                           to TARGET) per client address, ended after the idle\n"
"                           timeout (default 60 s); at most --max-conns sessions\n"
"                           (default 1000; a new client beyond it: its datagrams\n"
"                           dropped, -v says so); the JSON lines count datagrams\n"
"      --accept-proxy       each client starts with a PROXY protocol header (v1\n"
"                           or v2, from haproxy, nginx, a cloud load balancer):\n"
"                           the client it names is the one --allow/--deny, -v\n"
"                           and --send-proxy see; no valid header within -w\n"
"                           (else 5 s): the client is refused (a -v line)\n"
"      --send-proxy[=V]     start each connection to TARGET with a PROXY header\n"
"                           naming the client and the address it reached (both\n"
"                           as its own header names them with --accept-proxy):\n"
"                           V v1 (text, the default) or v2 (binary); a Unix\n"
"                           client is UNKNOWN (v2: UNSPEC)\n";

static const char help_host[] =
"HOST may be a name, an IPv4 address or an IPv6 address ([::1] or ::1); HOST:PORT and\n"
"[V6]:PORT are accepted as one argument. PORT is 0-65535 or a service name (http).\n"
"Listening with no ADDR takes every IPv4 and IPv6 address; port 0 picks a free port\n"
"and prints it ('duplex: listening on ADDR:PORT').\n";

static const char help_options[] =
"Options:\n"
"  -4, --ipv4               IPv4 only\n"
"  -6, --ipv6               IPv6 only\n"
"  -U, --unix PATH          Unix stream socket at PATH instead of TCP (-u: Unix\n"
"                           datagrams; -U -u PATH, as ncat, works too)\n"
"  -u, --udp                UDP instead of TCP: see UDP below\n"
"      --pty LINK           connect: copy a new pseudo-terminal (raw mode) instead\n"
"                           of stdin/stdout, its slave linked at LINK (removed at\n"
"                           exit; an existing LINK is kept, an error); a program\n"
"                           closing LINK does not end the session: reopen it\n"
"  -l, --listen             listen (netcat style); -k: see Server modes\n"

"  -p, --port PORT          connect: local source port; listen: the port\n"
"  -s, --source ADDR        connect: local source address; listen: the address\n"
"                           (connect -U -u: the client's own socket PATH)\n"
"  -n, --numeric            numeric addresses only, no DNS\n"
"  -w, --timeout SECS       bound the connect (and a proxy or TLS handshake);\n"
"                           quit after SECS without traffic (listen -k, server\n"
"                           modes: close a client idle for SECS, unless an\n"
"                           idle timeout is given)\n"
"  -q, --quit-after SECS    quit SECS after end of input (0: at once); default:\n"
"                           wait until the peer ends its side too\n"
"  -i, --idle-timeout SECS  quit after SECS without traffic (as -w, without\n"
"                           bounding the connect); listen -k and the server\n"
"                           modes: close a client idle for SECS (-u -k, -u -e:\n"
"                           forget a peer quiet for SECS)\n"
"  SECS: seconds (5, 0.5) or with ncat's units: 3000ms, 3s, 2m, 1h\n"
"  -N                       shut the write side down at end of input (the default,\n"
"                           except through a proxy -x, as OpenBSD nc)\n"
"      --no-shutdown        never shut the write side down; quit when the peer ends\n"
"  -d, --recv-only          do not read stdin (and do not shut down the write side)\n"
"      --send-only          send stdin, discard what arrives; quit at end of input\n"
"  -t, --telnet             answer Telnet negotiation (refuse every option) and\n"
"                           keep Telnet commands out of stdout (as ncat -t)\n"
"      --delay TIME         send stdin a line at a time, TIME apart (the first at\n"
"                           once; ncat's -d TIME: -d takes no value here)\n"
"  -C, --crlf               send a lone LF from stdin as CRLF (for line protocols:\n"
"                           SMTP, HTTP, IRC typed by hand; -u: in each datagram;\n"
"                           listen -k, --broker, --chat: stdin to the clients)\n"
"      --hex-dump FILE      log every byte sent ('>') and received ('<') to FILE\n"
"                           as hex and text, 16 bytes a line ('-': stderr)\n"
"  -o, --output FILE        copy every byte sent and received to FILE, in the\n"
"                           order they pass (as ncat -o)\n"
"      --append-output      append to the -o and --hex-dump files (else truncated)\n"
"  ncat's spellings: --unixsock (-U), --nodns (-n), --source-port (-p), --wait (-w),\n"
"  --keep-open (-k); ncat's -x FILE is --hex-dump FILE; --sctp, --vsock, -g, -G\n"
"  and --lua-exec are refused with the reason and what to use instead\n"
"  -z, --zero-io            probe ports: the exit status says whether any accepts\n"
"                           connections; -v prints each port open or closed\n"
"                           (-u: a probe datagram, see UDP)\n"
"  -v, --verbose            print addresses, then bytes each way and duration\n"
"      --send-oob C         send the byte C as TCP urgent data (MSG_OOB) once the\n"
"                           connection is set up, before stdin (C: a character,\n"
"                           or \\xHH, \\n, \\t, \\\\)\n"
"      --oob-inline         receive urgent data in the stream at its place\n"
"                           (SO_OOBINLINE, like -O oobinline=1); otherwise it is\n"
"                           left out of stdout and reported on stderr as\n"
"                           duplex: urgent data: 'C'\n"
"      --progress[=WHEN]    a status line on stderr: bytes each way, rate, elapsed,\n"
"                           percentage and ETA when stdin is a file; WHEN: auto\n"
"                           (default: only if stderr is a terminal), always,\n"
"                           never; not a terminal: a plain line every 5 s and\n"
"                           at the end\n";

static const char help_proxy[] =
"Proxies (connect over TCP; not with listen, relay, -u or -U):\n"
"  -x, --proxy ADDR[:PORT]  connect through this proxy ([V6]:PORT for IPv6; default\n"
"                           port 1080 for SOCKS, 3128 for HTTP); -s/-p/-4/-6/-w and\n"
"                           -O apply to the connection to the proxy. HOST is sent\n"
"                           to the proxy by name (resolved there) unless it is a\n"
"                           numeric address or -n is given; -z: a port is open when\n"
"                           the proxy's handshake succeeds\n"
"      --proxy-dns WHERE    where HOST is resolved (as ncat): remote (default: the\n"
"                           proxy), local (here; the proxy gets the address),\n"
"                           both (here, else by the proxy), none (HOST must be an\n"
"                           address)\n"
"  -X, --proxy-type TYPE    socks5 or 5 (default), socks4 or 4 (SOCKS4a for names;\n"
"                           IPv4 targets only), http or connect (HTTP CONNECT)\n"
"      --proxy-auth USER[:PASS]  SOCKS5 username/password; HTTP: sent once the\n"
"                           proxy answers 407, as Digest SHA-256, Digest MD5 or\n"
"                           Basic (the strongest it offers); no :PASS: an empty\n"
"                           password; SOCKS4: USER is the user id\n"
"  The handshake is bounded by -w (else 10 s); a failure names the proxy, the\n"
"  target and the cause (exit 4; 5 when it timed out)\n";

static const char help_tls[] =
"TLS (connect; listen in every mode, not with --model iterative; relay;\n"
"TCP or -U; not with -u or -z):\n"
"      --ssl, --tls         connect: TLS client; listen: TLS server; relay: TLS\n"
"                           from its clients, plain bytes to TARGET\n"
"      --ssl-target         relay: TLS to TARGET, checked as connect --ssl checks\n"
"                           its server (name: TARGET's host or --ssl-servername);\n"
"                           with --ssl too, TLS on both sides\n"
"      --ssl-cert FILE      the certificate (PEM; its chain may follow): the\n"
"                           server's, or the client's for --ssl-verify servers\n"
"      --ssl-key FILE       the private key of --ssl-cert (both or neither)\n"
"      --ssl-trustfile FILE PEM CA certificates: connect (relay --ssl-target):\n"
"                           trust these instead of the system store; listen\n"
"                           (relay --ssl): the CAs of client certificates\n"
"      --ssl-servername NAME  connect (relay --ssl-target): SNI and the name the\n"
"                           certificate must carry (default: HOST when it is a\n"
"                           name; for an IP address the address is checked and\n"
"                           no SNI is sent)\n"
"      --ssl-no-verify      connect (relay --ssl-target): do not check the\n"
"                           server's certificate\n"
"      --ssl-pin PIN[;PIN]  connect (relay --ssl-target): trust exactly that\n"
"                           certificate instead of CAs and names: sha256//BASE64\n"
"                           (its public key, as curl's --pinnedpubkey) or its\n"
"                           SHA-256 fingerprint (hex, colons optional); -v\n"
"                           prints both for the server's certificate\n"
"      --ssl-verify         listen: require a client certificate signed by a CA\n"
"                           of --ssl-trustfile (connect: the default already);\n"
"                           it and --ssl-trustfile imply --ssl (not for relay)\n"
"      --ssl-alpn P[,P]     ALPN protocols to offer (connect) or accept (listen)\n"
"      --ssl-ciphers LIST   OpenSSL cipher list for TLS 1.2 (as ncat; TLS 1.3\n"
"                           suites stay OpenSSL's defaults, all AEAD)\n"
"  connect verifies the server's certificate against the system CA store by\n"
"  default. listen without --ssl-cert makes an ephemeral self-signed certificate\n"
"  (EC P-256, CN=duplex, 1 day; -v prints its SHA-256 fingerprint: a pin for\n"
"  clients). An empty HOST is an error, never the loopback. The\n"
"  handshake is bounded by -w (else 10 s); a failed handshake or verification\n"
"  exits 4 (connect) or 1 (listen), 5 on timeout. End of input sends close_notify\n"
"  and shuts the TCP write side down; the peer's close_notify is end of input.\n"
"  A peer that closes without close_notify (ncat, many clients, after a\n"
"  complete transfer) is end of input with a warning, exit status unchanged:\n"
"  only the protocol can tell a cut\n"
"  listen -k/--echo/--broker/--chat/--exec --ssl: each client's handshake runs in\n"
"  the event loop (each bounded by -w, else 10 s; at 1024 at once, accepting\n"
"  waits for one to end); a failed one is a -v line and the server goes on;\n"
"  with the thread and fork models each thread or child runs its client's\n"
"  handshake\n"
"  --tls-cert, --tls-key, ... are aliases of the --ssl-* options\n";

static const char help_server[] =
"Server modes (listen):\n"
"  -k, --keep-listening     serve many clients at once: what each client sends\n"
"                           goes to stdout, what stdin gives goes to every client;\n"
"                           at end of stdin, clients get end-of-input\n"
"      --echo               send every byte back to its sender\n"
"      --broker             every byte a client sends goes to every other client\n"
"                           (and to stdout; stdin goes to every client); -k too\n"
"      --chat               broker by lines: '[ADDR:PORT] line' ('[server] line'\n"
"                           for stdin), with join/leave notices; -k too\n"
"  -e, --exec CMD           run CMD per client, socket as its stdin/stdout; the\n"
"                           peer is in $DUPLEX_PEER_ADDR and $DUPLEX_PEER_PORT\n"
"  -c, --sh-exec CMD        the same through /bin/sh -c CMD\n"
"                           (connect -e/-c: CMD gets the connection, as ncat)\n"
"      --no-stdio           in broker/chat/-k modes, leave stdin/stdout out\n"
"      --cluster URL        --broker/--chat as one node of many, through a Redis\n"
"                           channel: redis://[[USER]:PASSWORD@]HOST[:PORT]/CHANNEL;\n"
"                           rediss://...[?cacert=PATH]: TLS, Redis's certificate\n"
"                           checked (system CAs, or PATH's) with HOST as its name;\n"
"                           what this node's clients send is published once,\n"
"                           what other nodes publish goes to this node's clients\n"
"                           ('* N connected' counts this node's clients only);\n"
"                           Redis down or cut: local clients are still served, the\n"
"                           node reconnects (100 ms doubling to 5 s) and says what\n"
"                           was not published or missed meanwhile (not on Windows)\n"
"      --node-name NAME     this node's name in chat names and notices\n"
"                           ('[NAME ADDR:PORT] line'; default: the host name)\n"
"  -m, --max-conns N        at most N clients at once (N >= 1); more are closed\n"
"                           at once\n"
"      --allow RULE         accept only these clients (address or CIDR range,\n"
"                           IPv4 or IPv6, or a host name: each of its addresses,\n"
"                           resolved at start; repeatable); every listen, relay\n"
"                           and listen -u (datagram senders)\n"
"      --deny RULE          refuse these clients (repeatable; wins over --allow)\n"
"      --allowfile FILE     --allow for each rule of FILE (several a line,\n"
"                           '#' comments)\n"
"      --denyfile FILE      --deny for each rule of FILE\n"
"      --accept-proxy       each client starts with a PROXY protocol header (v1\n"
"                           or v2, from haproxy, nginx, a load balancer): the\n"
"                           client it names is the one --allow/--deny, -v, -e's\n"
"                           $DUPLEX_PEER_* and --chat names see (every mode);\n"
"                           no valid header within -w (else 5 s): refused\n"
"      --max-queue BYTES    bytes that may wait for one client (default 1048576);\n"
"                           above half, senders pause; a client held above half\n"
"                           for 2 s is dropped as not reading\n"
"      --model NAME         how clients are run: epoll (default on Linux), poll,\n"
"                           io_uring (one event loop), iterative (one client at\n"
"                           a time), fork (a process per client), thread (a\n"
"                           thread per client); fork and thread serve --echo\n"
"                           and --exec only\n"
"      --threads N          N event loops on N threads sharing the port\n"
"                           (SO_REUSEPORT), for -k --echo and -k --exec\n";

static const char help_system[] =
"Started by the system (listen, relay; not on Windows):\n"
"  systemd socket activation: when LISTEN_FDS and LISTEN_PID (this process) are\n"
"  set, the listening sockets are the ones passed (fds 3..., LISTEN_FDNAMES for\n"
"  -v), and ADDR/PORT (relay: LISTEN) are not used; stream sockets only\n"
"      --inetd              the connection is stdin/stdout (inetd, xinetd,\n"
"                           systemd Accept=yes with StandardInput=socket, socat\n"
"                           EXEC): relay --inetd TARGET..., or listen --inetd\n"
"                           -e/-c CMD (CMD runs on it, as an --exec child);\n"
"                           the access list applies to its peer\n";

static const char help_proxy_server[] =
"Proxy server (listen; serves clients until stopped, as -k):\n"
"      --proxy-type TYPE    socks5: a SOCKS5 server (RFC 1928): CONNECT to IPv4,\n"
"                           IPv6 and names (looked up on a thread, -n: names\n"
"                           refused); BIND and UDP ASSOCIATE answered 07\n"
"                           http: an HTTP proxy (as ncat -l --proxy-type http):\n"
"                           CONNECT HOST:PORT, and requests with an absolute\n"
"                           http:// URI, one a connection (Connection: close)\n"
"      --proxy-auth USER:PASS  clients must give these (SOCKS5: username/password\n"
"                           only; HTTP: Basic or Digest MD5/SHA-256, else 407)\n"
"  The request must come within -w (else 10 s); the lookup and the connect are\n"
"  bounded by the same; -w, -i close idle tunnels; --allow/--deny, --max-conns\n"
"  apply; -v: a line per client (target, bytes each way, why it ended).\n"
"  Targets are not restricted: without ADDR (every address, as listen) or on an\n"
"  address others reach, it is an open proxy (a warning says so): give ADDR\n"
"  127.0.0.1, --allow rules or --proxy-auth.\n";

static const char help_sockopts[] =
"Options for sockets (connect, listen, relay):\n"
"  -O, --sockopt NAME=VALUE set a socket option (repeatable; the last of a NAME\n"
"                           wins): on a listener before bind() and again on each\n"
"                           accepted socket, on a client socket before connect();\n"
"                           relay: on both sides. A refused option is an error\n"
"                           (exit 4 for connect, 6 for listen)\n"
"      --show-opts          print what the kernel reports for each socket once it\n"
"                           is set up ('duplex: option SO_RCVBUF = 131072'), and\n"
"                           the net.core sysctls (rmem_max, somaxconn, ...)\n"
"  NAME is any of these, in any case, with or without its SO_/TCP_/IP_ prefix:\n"
"    keepalive reuseaddr reuseport dontroute broadcast oobinline timestamp\n"
"    nodelay quickack          0 or 1 (on/off); a bare NAME means 1\n"
"    keepidle keepintvl        seconds, 1-32767 (TCP keepalive timings)\n"
"    keepcnt                   keepalive probes, 1-127\n"
"    linger                    seconds or off; linger=0: close sends a reset\n"
"    rcvbuf sndbuf             bytes (the kernel doubles them, up to rmem_max/\n"
"                              wmem_max)\n"
"    rcvlowat                  bytes\n"
"    rcvtimeo sndtimeo         seconds, fractions allowed (e.g. 2.5)\n"
"    bindtodevice              an interface name (needs CAP_NET_ADMIN)\n"
"    priority                  0-6 (more with CAP_NET_ADMIN)\n"
"    mark                      0-4294967295, or 0x hex (needs CAP_NET_ADMIN)\n"
"    busy_poll                 microseconds\n"
"    user_timeout              milliseconds (TCP_USER_TIMEOUT)\n"
"    tos                       0-255 (IP_TOS; IPV6_TCLASS on IPv6)\n"
"    maxseg                    bytes, 88-32767 (TCP_MAXSEG)\n"
"    congestion                an algorithm name (TCP_CONGESTION: cubic, reno)\n";

static const char help_tuning[] =
"Tuning:\n"
"      --backlog N          listen queue length (default: the kernel maximum,\n"
"                           /proc/sys/net/core/somaxconn)\n"
"      --reuseport          set SO_REUSEPORT on the listener (off by default)\n"
"      --buffer-size BYTES  per-direction buffer or splice pipe (default: 1 MiB\n"
"                           for connect/listen, 256 KiB per relayed connection)\n"
"      --rate-limit BYTES[/s]  at most BYTES a second each way, per connection\n"
"                           (k, M, G: times 1024, 1024^2, 1024^3; 1.5M allowed;\n"
"                           bursts of 1/20 s worth); connect, listen, relay\n"
"      --backend NAME       event loop backend: epoll, poll, io_uring (or\n"
"                           DUPLEX_BACKEND)\n"
"  -h, --help               this help\n"
"      --version            print the version\n";

static const char help_eof[] =
"End of input: when stdin ends, duplex shuts down the write side of the socket\n"
"(the peer reads EOF) and keeps printing what the peer sends until it closes its\n"
"side; it exits when both directions have ended. When stdin is a terminal, the\n"
"end of the peer's side also ends the session.\n";

static const char help_udp[] =
"UDP (-u): connect sends each read from stdin as one datagram (a line from a\n"
"terminal; from a pipe or file, whatever one read returns, at most 65507 bytes)\n"
"and writes each datagram received to stdout; it exits at end of stdin (-q SECS:\n"
"after waiting SECS for replies). An ICMP port unreachable ends it with\n"
"'send ADDR: Connection refused' (exit 4). listen -u receives from any number\n"
"of peers and sends stdin to the last peer heard (stdin is read only once one\n"
"has been heard); -v prints a peer when it differs from the previous one; it\n"
"runs on after end of stdin (-q SECS: quit SECS later). -w: quit after SECS\n"
"without a datagram either way. -C: each lone LF of a datagram from stdin\n"
"becomes CRLF (at most 32753 bytes read for one, so it still fits).\n"
"connect -z -u sends each port a probe datagram (a NUL byte, as ncat) and waits\n"
"-w SECS (default 1 s): a datagram back is open, an ICMP port unreachable\n"
"closed, no answer open|filtered, counted open as nc and ncat do (exit 0).\n"
"listen -u -k keeps a table of peers: every peer's datagrams go to stdout, each\n"
"datagram of stdin to every peer (ncat refuses -u -k without --exec).\n"
"listen -u --exec/--sh-exec CMD runs CMD per peer (as ncat; without -k for the\n"
"first peer only, then exits when CMD ends): its stdin/stdout is a socketpair\n"
"(SOCK_SEQPACKET) on which each datagram from the peer is one read() and each\n"
"write() one datagram back (a program reading byte by byte, like sh's read,\n"
"gets the first byte of each datagram only); NCAT_PROTO=UDP, DUPLEX_PROTO=UDP.\n"
"Peers (-k, --exec): at most --max-conns (default 100, as ncat), each forgotten\n"
"(its CMD sent SIGTERM) after --idle-timeout without a datagram (default 60 s;\n"
"--exec: either way); --allow/--deny check every datagram; a refused sender gets\n"
"no CMD (a -v line). connect -u --exec/--sh-exec CMD: CMD gets the connected\n"
"datagram socket (a datagram a write()). --exec with -u: not on Windows.\n"
"-U PATH -u: Unix datagrams. The client binds its own address for replies (-s\n"
"PATH, else an automatic abstract name); the server replies to the sender's\n"
"address (a sender with none cannot be answered: -v says so); socket files made\n"
"are removed at exit, also on SIGINT/SIGTERM.\n";

static const char help_exit[] =
"Exit status:\n"
"  0  success (with -z: at least one port open)\n"
"  1  the connection failed during the exchange (reset, broken pipe)\n"
"  2  usage error (unknown flag, invalid port or number)\n"
"  3  name resolution failed (unknown host)\n"
"  4  connect failed (refused, unreachable; also through a proxy, -x; the TLS\n"
"     handshake or certificate check, --ssl); with -z: no port open\n"
"  5  timed out (connect timeout, idle timeout, proxy or TLS handshake)\n"
"  6  cannot listen (address in use, permission denied)\n"
"  128+N  stopped by signal N (130: SIGINT, 143: SIGTERM), after a clean stop\n";

static const char *near_command(const char *word);

/* --version: the version, then what this build can do (scripts and bug
 * reports: which backends, whether --ssl works, with which OpenSSL). */
static void print_version(void)
{
    int uring = 0;
    printf("duplex %s\n", DX_VERSION);
    printf("backends:");
    for (const char *const *b = dx_backends(); *b; b++) {
        printf(" %s", *b);
        uring |= strcmp(*b, "io_uring") == 0;
    }
    printf("\n");
    if (uring) {
        /* compiled in; the kernel (or a seccomp policy) may still refuse it */
        int err = 0;
        dx_loop *loop = dx_loop_new("io_uring", &err);
        printf("io_uring: %s\n", loop ? "yes" : "built in, unavailable on this system");
        if (loop)
            dx_loop_free(loop);
    } else {
        printf("io_uring: no (%s)\n", DX_OS_WINDOWS ? "Linux only" : "built without liburing");
    }
#ifdef DX_HAVE_TLS
    printf("tls: yes (%s)\n", OpenSSL_version(OPENSSL_VERSION));
#else
    printf("tls: no (%s)\n", DX_OS_WINDOWS ? "the Windows build has no TLS yet" : "built without OpenSSL");
#endif
}

/* Print the help of cmd ("connect", "listen", "relay"; NULL: the summary)
 * on stdout. Returns -1 (exit 0), or EXIT_USAGE for an unknown command. */
static int cli_help(const char *cmd)
{
    const char *const *parts;
    static const char *const connect_parts[] = {help_connect_usage, help_host, help_options,
                                                help_proxy, help_tls, help_sockopts, help_tuning,
                                                help_eof, help_udp, help_exit, NULL};
    static const char *const listen_parts[] = {help_listen_usage, help_host, help_options,
                                               help_server, help_system, help_proxy_server, help_tls,
                                               help_sockopts, help_tuning,
                                               help_eof, help_udp, help_exit, NULL};
    static const char *const relay_parts[] = {help_relay_usage, help_system, help_tls, help_sockopts,
                                              help_tuning, help_exit, NULL};
    static const char *const summary_parts[] = {help_summary, NULL};
    if (!cmd)
        parts = summary_parts;
    else if (strcmp(cmd, "connect") == 0)
        parts = connect_parts;
    else if (strcmp(cmd, "listen") == 0)
        parts = listen_parts;
    else if (strcmp(cmd, "relay") == 0)
        parts = relay_parts;
    else if (strcmp(cmd, "sockets") == 0 || strcmp(cmd, "bench") == 0) {
        char *argv[] = {(char *)cmd, (char *)"--help", NULL};
        int rc = cmd[0] == 's' ? cli_sockets_main(2, argv) : cli_bench_main(2, argv);
        return rc == EXIT_OK ? -1 : rc;
    } else if (strcmp(cmd, "help") == 0) {
        parts = summary_parts;
    } else {
        const char *guess = near_command(cmd);
        if (guess)
            cli_error("help: unknown command '%s' (did you mean %s?)", cmd, guess);
        else
            cli_error("help: unknown command '%s': expected connect, listen, relay, sockets or "
                      "bench", cmd);
        return EXIT_USAGE;
    }
    for (int i = 0; parts[i]; i++) {
        if (i > 0)
            fputc('\n', stdout);
        fputs(parts[i], stdout);
    }
    return -1;
}

void cli_usage_short(void)
{
    fputs("usage: duplex connect [options] HOST [PORT] | duplex listen [options] [ADDR] [PORT]\n"
          "Try 'duplex --help' for more information.\n", stderr);
}

enum {
    OPT_NO_SHUTDOWN = 256, OPT_SEND_ONLY, OPT_BACKLOG, OPT_REUSEPORT, OPT_BACKEND,
    OPT_BUFSIZE, OPT_VERSION, OPT_ECHO, OPT_BROKER, OPT_CHAT, OPT_NO_STDIO, OPT_ALLOW,
    OPT_DENY, OPT_ALLOWFILE, OPT_DENYFILE, OPT_MAXQUEUE, OPT_MODEL, OPT_THREADS,
    OPT_STATS_JSON, OPT_PROGRESS, OPT_SEND_OOB, OPT_OOB_INLINE, OPT_HEX_DUMP, OPT_APPEND_OUTPUT, OPT_PROXY_AUTH,
    OPT_SSL, OPT_SSL_CERT, OPT_SSL_KEY, OPT_SSL_TRUSTFILE, OPT_SSL_SERVERNAME, OPT_SSL_NO_VERIFY,
    OPT_SSL_VERIFY, OPT_SSL_ALPN, OPT_SSL_TARGET, OPT_SSL_PIN, OPT_SSL_CIPHERS,
    OPT_ACCEPT_PROXY, OPT_SEND_PROXY,
    OPT_RATE_LIMIT, OPT_PTY, OPT_SERIAL,
    OPT_BALANCE, OPT_DOWN_TIME, OPT_INETD,
    OPT_CLUSTER, OPT_NODE_NAME,
    /* ncat options duplex refuses, each with the reason and what to use */
    OPT_SCTP, OPT_VSOCK, OPT_LUA_EXEC, OPT_DELAY, OPT_PROXY_DNS,
};

enum { OPT_SHOW_OPTS = 0x400 }; /* -O and --show-opts (sockopts.c) */

static const struct option long_opts[] = {
    {"sockopt", required_argument, NULL, 'O'},
    {"crlf", no_argument, NULL, 'C'},
    {"hex-dump", required_argument, NULL, OPT_HEX_DUMP},
    {"output", required_argument, NULL, 'o'},
    {"append-output", no_argument, NULL, OPT_APPEND_OUTPUT},
    {"show-opts", no_argument, NULL, OPT_SHOW_OPTS},
    {"ipv4", no_argument, NULL, '4'},
    {"ipv6", no_argument, NULL, '6'},
    {"unix", required_argument, NULL, 'U'},
    {"unixsock", required_argument, NULL, 'U'}, /* ncat's spellings: the same options */
    {"nodns", no_argument, NULL, 'n'},
    {"telnet", no_argument, NULL, 't'},
    {"source-port", required_argument, NULL, 'p'},
    {"wait", required_argument, NULL, 'w'},
    {"delay", required_argument, NULL, OPT_DELAY},
    {"sctp", no_argument, NULL, OPT_SCTP},
    {"vsock", no_argument, NULL, OPT_VSOCK},
    {"lua-exec", required_argument, NULL, OPT_LUA_EXEC},
    {"listen", no_argument, NULL, 'l'},
    {"keep-listening", no_argument, NULL, 'k'},
    {"keep-open", no_argument, NULL, 'k'},
    {"port", required_argument, NULL, 'p'},
    {"source", required_argument, NULL, 's'},
    {"numeric", no_argument, NULL, 'n'},
    {"timeout", required_argument, NULL, 'w'},
    {"quit-after", required_argument, NULL, 'q'},
    {"no-shutdown", no_argument, NULL, OPT_NO_SHUTDOWN},
    {"recv-only", no_argument, NULL, 'd'},
    {"send-only", no_argument, NULL, OPT_SEND_ONLY},
    {"zero-io", no_argument, NULL, 'z'},
    {"verbose", no_argument, NULL, 'v'},
    {"backlog", required_argument, NULL, OPT_BACKLOG},
    {"reuseport", no_argument, NULL, OPT_REUSEPORT},
    {"buffer-size", required_argument, NULL, OPT_BUFSIZE},
    {"backend", required_argument, NULL, OPT_BACKEND},
    {"echo", no_argument, NULL, OPT_ECHO},
    {"broker", no_argument, NULL, OPT_BROKER},
    {"chat", no_argument, NULL, OPT_CHAT},
    {"exec", required_argument, NULL, 'e'},
    {"sh-exec", required_argument, NULL, 'c'},
    {"no-stdio", no_argument, NULL, OPT_NO_STDIO},
    {"max-conns", required_argument, NULL, 'm'},
    {"allow", required_argument, NULL, OPT_ALLOW},
    {"deny", required_argument, NULL, OPT_DENY},
    {"allowfile", required_argument, NULL, OPT_ALLOWFILE},
    {"denyfile", required_argument, NULL, OPT_DENYFILE},
    {"idle-timeout", required_argument, NULL, 'i'},
    {"max-queue", required_argument, NULL, OPT_MAXQUEUE},
    {"rate-limit", required_argument, NULL, OPT_RATE_LIMIT},
    {"pty", required_argument, NULL, OPT_PTY},
    {"serial", required_argument, NULL, OPT_SERIAL},
    {"cluster", required_argument, NULL, OPT_CLUSTER},
    {"node-name", required_argument, NULL, OPT_NODE_NAME},
    {"model", required_argument, NULL, OPT_MODEL},
    {"stats-json", no_argument, NULL, OPT_STATS_JSON},
    {"json", no_argument, NULL, OPT_STATS_JSON}, /* the spelling bench and sockets use */
    {"balance", required_argument, NULL, OPT_BALANCE},
    {"down-time", required_argument, NULL, OPT_DOWN_TIME},
    {"inetd", no_argument, NULL, OPT_INETD},
    {"udp", no_argument, NULL, 'u'},
    {"send-oob", required_argument, NULL, OPT_SEND_OOB},
    {"oob-inline", no_argument, NULL, OPT_OOB_INLINE},
    {"progress", optional_argument, NULL, OPT_PROGRESS},
    {"threads", required_argument, NULL, OPT_THREADS},
    {"proxy", required_argument, NULL, 'x'},
    {"proxy-type", required_argument, NULL, 'X'},
    {"proxy-auth", required_argument, NULL, OPT_PROXY_AUTH},
    {"proxy-dns", required_argument, NULL, OPT_PROXY_DNS},
    {"ssl", no_argument, NULL, OPT_SSL},
    {"tls", no_argument, NULL, OPT_SSL},
    {"ssl-cert", required_argument, NULL, OPT_SSL_CERT},
    {"tls-cert", required_argument, NULL, OPT_SSL_CERT},
    {"ssl-key", required_argument, NULL, OPT_SSL_KEY},
    {"tls-key", required_argument, NULL, OPT_SSL_KEY},
    {"ssl-trustfile", required_argument, NULL, OPT_SSL_TRUSTFILE},
    {"tls-trustfile", required_argument, NULL, OPT_SSL_TRUSTFILE},
    {"ssl-servername", required_argument, NULL, OPT_SSL_SERVERNAME},
    {"tls-servername", required_argument, NULL, OPT_SSL_SERVERNAME},
    {"ssl-no-verify", no_argument, NULL, OPT_SSL_NO_VERIFY},
    {"tls-no-verify", no_argument, NULL, OPT_SSL_NO_VERIFY},
    {"ssl-verify", no_argument, NULL, OPT_SSL_VERIFY},
    {"tls-verify", no_argument, NULL, OPT_SSL_VERIFY},
    {"ssl-alpn", required_argument, NULL, OPT_SSL_ALPN},
    {"tls-alpn", required_argument, NULL, OPT_SSL_ALPN},
    {"ssl-target", no_argument, NULL, OPT_SSL_TARGET},
    {"tls-target", no_argument, NULL, OPT_SSL_TARGET},
    {"ssl-ciphers", required_argument, NULL, OPT_SSL_CIPHERS},
    {"tls-ciphers", required_argument, NULL, OPT_SSL_CIPHERS},
    {"ssl-pin", required_argument, NULL, OPT_SSL_PIN},
    {"tls-pin", required_argument, NULL, OPT_SSL_PIN},
    {"accept-proxy", no_argument, NULL, OPT_ACCEPT_PROXY},
    {"send-proxy", optional_argument, NULL, OPT_SEND_PROXY},
    {"help", no_argument, NULL, 'h'},
    {"version", no_argument, NULL, OPT_VERSION},
    {NULL, 0, NULL, 0},
};

/* A time as ncat writes it: a decimal number of seconds, or with a unit
 * (ms, s, m, h; any case): "3000ms", "3s", "2m", "1h", "0.5". No sign,
 * space, hex, "inf" or "nan". In milliseconds in *ms (above 0: at least 1
 * ms, 0 meaning "no limit" to the callers). Returns 0, -1 when it is not a
 * time, -2 when above max_secs. */
int cli_parse_duration(const char *text, double max_secs, int64_t *ms)
{
    static const struct { const char *unit; double secs; } units[] = {
        {"", 1}, {"ms", 0.001}, {"s", 1}, {"m", 60}, {"h", 3600},
    };
    char *end;
    if (!((*text >= '0' && *text <= '9') || *text == '.') || strpbrk(text, "xX"))
        return -1;
    errno = 0;
    double v = strtod(text, &end);
    if (errno || end == text || v != v || v < 0)
        return -1;
    size_t i = 0;
    while (i < sizeof units / sizeof units[0] && strcasecmp(end, units[i].unit) != 0)
        i++;
    if (i == sizeof units / sizeof units[0])
        return -1;
    v *= units[i].secs;
    if (v > max_secs)
        return -2;
    *ms = (int64_t)(v * 1000.0 + 0.5);
    if (*ms == 0 && v > 0)
        *ms = 1;
    return 0;
}

/* A time option: 0 .. one year (as cli_parse_duration). */
static int parse_seconds(const char *flag, const char *text, int64_t *ms)
{
    int rc = cli_parse_duration(text, 31536000.0, ms);
    if (rc == -1)
        cli_error("invalid %s value '%s': expected seconds (5, 0.5) or a time with a unit: "
                  "3000ms, 3s, 2m, 1h", flag, text);
    else if (rc == -2)
        cli_error("%s too large: %s (at most 31536000 seconds)", flag, text);
    return rc < 0 ? -1 : 0;
}

static int parse_count(const char *flag, const char *text, long min, long max, long *out)
{
    char *end;
    errno = 0;
    long v = strtol(text, &end, 10);
    if (!*text || *end || errno || v < min || v > max) {
        cli_error("invalid %s value '%s': expected a number from %ld to %ld", flag, text, min, max);
        return -1;
    }
    *out = v;
    return 0;
}

/* --rate-limit: "1048576", "512k", "1.5M/s", "1G": bytes per second, the
 * suffixes binary (k = 1024, as curl's --limit-rate and pv -L). 0, or -1
 * when malformed or out of 1 .. 1T. */
int cli_parse_rate(const char *text, uint64_t *out)
{
    char *end;
    if (!*text || *text == '-' || *text == '+')
        return -1;
    errno = 0;
    double v = strtod(text, &end);
    if (errno || end == text || v != v)
        return -1;
    double mult = 1;
    switch (*end) {
    case 'k': case 'K': mult = 1024.0; end++; break;
    case 'm': case 'M': mult = 1024.0 * 1024; end++; break;
    case 'g': case 'G': mult = 1024.0 * 1024 * 1024; end++; break;
    }
    if (strcmp(end, "/s") != 0 && *end)
        return -1;
    v *= mult;
    if (!(v >= 1) || v > 1024.0 * 1024 * 1024 * 1024)
        return -1;
    *out = (uint64_t)v;
    return 0;
}

/* --rate-limit paces the bytes duplex copies itself: a program given the
 * socket (--exec, the fork and thread models) writes it directly. */
static int check_rate_limit(const struct options *o)
{
    if (!o->rate_limit)
        return 0;
    const char *bad = o->udp ? "-u (datagrams are not a stream)"
                      : o->zero_io ? "-z (no data moves)"
                      : o->mode == MODE_EXEC ? "--exec/--sh-exec (the program reads and writes "
                                               "the socket itself)"
                      : o->model == MODEL_FORK || o->model == MODEL_THREAD
                          ? "--model fork/thread (their clients are served by blocking copies)"
                          : NULL;
    if (bad) {
        cli_error("--rate-limit paces the bytes duplex copies: not with %s", bad);
        return -1;
    }
    return 0;
}

/* connect --pty LINK: the pseudo-terminal takes stdin's and stdout's place
 * in a stream session. */
static int check_pty(const struct options *o)
{
    if (o->serial && o->cmd != CMD_RELAY) {
        cli_error("--serial SPEC is for relay: relay LISTEN DEVICE --serial 115200,8N1");
        return -1;
    }
    if (!o->pty_link)
        return 0;
    if (DX_OS_WINDOWS) {
        cli_error("--pty: pseudo-terminals are not available on Windows");
        return -1;
    }
    const char *bad = o->cmd != CMD_CONNECT ? (o->cmd == CMD_RELAY ? "relay" : "listen")
                      : o->udp ? "-u" : o->zero_io ? "-z"
                      : o->mode == MODE_EXEC ? "--exec/--sh-exec"
                      : o->recv_only ? "-d" : o->send_only ? "--send-only"
                      : o->delay_ms ? "--delay" : NULL;
    if (bad) {
        cli_error("--pty LINK is for connect (a pseudo-terminal instead of stdin and stdout): "
                  "not with %s", bad);
        return -1;
    }
    if (!*o->pty_link) {
        cli_error("--pty needs a path for the link");
        return -1;
    }
    return 0;
}

/* relay --serial SPEC: TARGET is a character device (a path). */
static int check_serial(const struct options *o)
{
    if (!o->serial)
        return 0;
    if (DX_OS_WINDOWS) {
        cli_error("--serial: serial devices are not available on Windows");
        return -1;
    }
    if (!o->target_unix || o->ntargets > 1 || o->udp || o->tls_target) {
        cli_error("--serial SPEC: TARGET must be one device path (relay 4000 /dev/ttyUSB0 "
                  "--serial 115200,8N1)%s", o->udp ? ", not with -u" : o->tls_target ? ", not with --ssl-target" : "");
        return -1;
    }
    if (cli_serial_check(o->serial) < 0) {
        cli_error("invalid --serial value '%s': expected SPEED[,DPS]: a speed from 50 to 4000000 "
                  "(115200), data bits 5-8, parity N, E or O, stop bits 1 or 2 (8N1, the default)",
                  o->serial);
        return -1;
    }
    return 0;
}

static int set_mode(struct options *o, enum mode m, const char *flag)
{
    static const char *given;
    if (o->mode != MODE_STDIO && o->mode != m) {
        cli_error("%s and %s exclude each other: choose one server mode", given, flag);
        return -1;
    }
    o->mode = m;
    given = flag;
    return 0;
}

/* Host names in access rules (as ncat takes them): queued while the
 * command line is read, resolved once it is known (-n forbids DNS), every
 * address a rule of its own. The library's rule grammar stays addresses
 * and CIDR ranges only. */
struct acl_name {
    char *name;
    int allow;
    const char *flag, *file;
    int line;
};
static struct acl_name *acl_names;
static size_t nacl_names;
int cli_acl_no_dns; /* set by tests/fuzz/fuzz_cli.c: names fail as with -n */

static void forget_acl_names(void)
{
    for (size_t i = 0; i < nacl_names; i++)
        free(acl_names[i].name);
    free(acl_names);
    acl_names = NULL;
    nacl_names = 0;
}

/* A word that can only be meant as a host name: letters, digits, '-' and
 * '.', at least one letter (not a malformed address such as 10.0.0.0/33). */
static int looks_like_host_name(const char *w)
{
    int letter = 0;
    if (!*w || strlen(w) > 253 || *w == '-' || *w == '.')
        return 0;
    for (const char *p = w; *p; p++) {
        unsigned char ch = (unsigned char)*p;
        if ((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z'))
            letter = 1;
        else if (!(ch >= '0' && ch <= '9') && ch != '-' && ch != '.')
            return 0;
    }
    return letter;
}

static int queue_acl_name(const char *name, int allow, const char *flag, const char *file,
                          int line)
{
    struct acl_name *l = realloc(acl_names, (nacl_names + 1) * sizeof *l);
    if (!l)
        return -ENOMEM;
    acl_names = l;
    l[nacl_names].name = strdup(name);
    if (!l[nacl_names].name)
        return -ENOMEM;
    l[nacl_names].allow = allow;
    l[nacl_names].flag = flag;
    l[nacl_names].file = file;
    l[nacl_names].line = line;
    nacl_names++;
    return 0;
}

/* Resolve the queued names into the access list: EXIT_RESOLVE names the one
 * that failed. Returns 0 or an exit status. */
static int resolve_acl_names(struct options *o)
{
    int code = 0;
    for (size_t i = 0; i < nacl_names; i++) {
        struct acl_name *a = &acl_names[i];
        dx_addr *addrs = NULL;
        int n = code ? 0 : dx_resolve(a->name, "0", AF_UNSPEC,
                                      o->numeric || cli_acl_no_dns ? DX_RESOLVE_NUMERIC : 0,
                                      &addrs);
        if (!code && n < 0) {
            char where[64] = "";
            if (a->file)
                snprintf(where, sizeof where, ":%d", a->line);
            cli_error("%s%s%s%s: resolve %s: %s%s", a->flag, a->file ? " " : "",
                      a->file ? a->file : "", where, a->name, dx_strerror(n),
                      o->numeric ? " (-n: no DNS, give addresses)" : "");
            code = EXIT_RESOLVE;
        }
        for (int k = 0; k < n && !code; k++) {
            const struct sockaddr *sa = (const struct sockaddr *)&addrs[k].ss;
            char text[INET6_ADDRSTRLEN];
            const void *bytes = sa->sa_family == AF_INET
                                    ? (const void *)&((const struct sockaddr_in *)sa)->sin_addr
                                    : (const void *)&((const struct sockaddr_in6 *)sa)->sin6_addr;
            if (!inet_ntop(sa->sa_family, bytes, text, sizeof text) ||
                dx_acl_add(&o->acl, text, a->allow) < 0) {
                cli_error("%s %s: out of memory", a->flag, a->name);
                code = EXIT_USAGE;
            }
        }
        free(addrs);
    }
    forget_acl_names();
    return code;
}

static int add_rule(struct options *o, const char *rule, int allow)
{
    int rc = dx_acl_add(&o->acl, rule, allow);
    if (rc == DX_EBADADDR && looks_like_host_name(rule))
        rc = queue_acl_name(rule, allow, allow ? "--allow" : "--deny", NULL, 0);
    if (rc < 0 && strncasecmp(rule, "::ffff:", 7) == 0 && strchr(rule, '/'))
        cli_error("invalid %s rule '%s': an IPv4-mapped rule (::ffff:a.b.c.d) takes a prefix "
                  "of /96 to /128 (/104 is a.b.c.d/8); a shorter one would reach beyond IPv4",
                  allow ? "--allow" : "--deny", rule);
    else if (rc < 0)
        cli_error("invalid %s rule '%s': expected an IPv4/IPv6 address or CIDR range "
                  "(10.0.0.0/8, 2001:db8::/32), or a host name", allow ? "--allow" : "--deny", rule);
    return rc;
}

/* A rule file: each word a rule, or a host name queued as for --allow
 * (resolve_acl_names() names its FILE:LINE if it does not resolve). */
static int add_rule_file(struct options *o, const char *path, int allow)
{
    const char *flag = allow ? "--allowfile" : "--denyfile";
    int rc = 0, line = 0;
    dx_acl_file *f = dx_acl_file_open(path, &rc);
    const char *word;
    while (f && (rc = dx_acl_file_next(f, &word, &line)) > 0) {
        rc = dx_acl_add(&o->acl, word, allow);
        if (rc == DX_EBADADDR && looks_like_host_name(word))
            rc = queue_acl_name(word, allow, flag, path, line);
        if (rc < 0)
            break;
    }
    dx_acl_file_close(f);
    if (rc == DX_EBADADDR)
        cli_error("%s %s:%d: not an address or CIDR range, nor a host name (10.0.0.0/8, "
                  "2001:db8::/32, localhost; several a line, '#' starts a comment)",
                  flag, path, line);
    else if (rc < 0)
        cli_error("%s %s: %s", flag, path, dx_strerror(rc));
    return rc;
}

/* The access list matches IP addresses: on a Unix socket, whose clients
 * have none, it would let every client in. */
static int check_acl_applies(const struct options *o)
{
    if (o->unix_path && (o->acl.nallow || o->acl.ndeny)) {
        cli_error("--allow/--deny (and their files) match IP addresses: clients of the Unix "
                  "socket %s have none (use the socket file's permissions)", o->unix_path);
        return -1;
    }
    return 0;
}

static int set_model(struct options *o, const char *name)
{
    static const struct { const char *name; enum model model; } models[] = {
        {"iterative", MODEL_ITERATIVE}, {"fork", MODEL_FORK}, {"thread", MODEL_THREAD},
    };
    for (size_t i = 0; i < sizeof models / sizeof models[0]; i++) {
        if (strcmp(name, models[i].name) == 0) {
            o->model = models[i].model;
            return 0;
        }
    }
    /* the event-loop models are the loop's backends */
    for (const char *const *b = dx_backends(); *b; b++) {
        if (strcmp(name, *b) == 0) {
            o->model = MODEL_LOOP;
            o->backend = *b;
            return 0;
        }
    }
    char names[128] = "";
    for (const char *const *b = dx_backends(); *b; b++) {
        strncat(names, *b, sizeof names - strlen(names) - 1);
        strncat(names, ", ", sizeof names - strlen(names) - 1);
    }
    cli_error("unknown --model '%s': expected %siterative, fork or thread", name, names);
    return -1;
}

/* --backend NAME (else DUPLEX_BACKEND) is one this build has: the message
 * lists those, and names the platform for one it cannot have (epoll and
 * io_uring on Windows). A backend built in but unavailable at run time
 * (io_uring under seccomp) is for dx_loop_new() to say. */
static int check_backend(const struct options *o)
{
    const char *name = o->backend, *what = "--backend";
    if (!name || !*name) {
        name = getenv("DUPLEX_BACKEND");
        what = "DUPLEX_BACKEND";
    }
    if (!name || !*name)
        return 0;
    char names[128] = "";
    for (const char *const *b = dx_backends(); *b; b++) {
        if (strcmp(name, *b) == 0)
            return 0;
        strncat(names, names[0] ? ", " : "", sizeof names - strlen(names) - 1);
        strncat(names, *b, sizeof names - strlen(names) - 1);
    }
    static const char *const known[] = {"epoll", "poll", "io_uring", "wsapoll", NULL};
    int is_known = 0;
    for (int i = 0; known[i]; i++)
        is_known |= strcmp(name, known[i]) == 0;
    if (is_known && DX_OS_WINDOWS)
        cli_error("%s %s is not available on %s (this build has: %s)", what, name, DX_OS_NAME, names);
    else if (is_known)
        cli_error("%s %s is not built into this duplex (it has: %s)", what, name, names);
    else
        cli_error("unknown %s '%s': expected %s", what, name, names);
    return -1;
}

/* ---- the command word and what a newcomer mistypes ---- */

static const char *const command_names[] = {"connect", "listen", "relay", "sockets", "bench",
                                            "help", NULL};

/* Optimal string alignment distance (insertions, deletions, substitutions,
 * adjacent transpositions) between two short words; 99 when either is long. */
static int edit_distance(const char *a, const char *b)
{
    enum { MAXW = 32 };
    size_t la = strlen(a), lb = strlen(b);
    if (la >= MAXW || lb >= MAXW)
        return 99;
    int d[MAXW + 1][MAXW + 1];
    for (size_t i = 0; i <= la; i++)
        d[i][0] = (int)i;
    for (size_t j = 0; j <= lb; j++)
        d[0][j] = (int)j;
    for (size_t i = 1; i <= la; i++) {
        for (size_t j = 1; j <= lb; j++) {
            int cost = (a[i - 1] | 0x20) != (b[j - 1] | 0x20);
            int v = d[i - 1][j] + 1;
            if (d[i][j - 1] + 1 < v)
                v = d[i][j - 1] + 1;
            if (d[i - 1][j - 1] + cost < v)
                v = d[i - 1][j - 1] + cost;
            if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] &&
                d[i - 2][j - 2] + 1 < v)
                v = d[i - 2][j - 2] + 1;
            d[i][j] = v;
        }
    }
    return d[la][lb];
}

/* The command a mistyped word is close to: within 2 edits of a name of 6
 * letters or more (connect, listen, sockets), 1 of a shorter one (relay,
 * bench, help). A word with a dot, colon, slash or bracket, or all digits,
 * is an address, never a command. NULL when none is close. */
static const char *near_command(const char *word)
{
    if (!*word || strpbrk(word, ".:/[@") || strspn(word, "0123456789") == strlen(word))
        return NULL;
    for (const char *const *c = command_names; *c; c++) {
        int d = edit_distance(word, *c);
        if (d > 0 && d <= (strlen(*c) >= 6 ? 2 : 1))
            return *c;
    }
    return NULL;
}

/* Netcat spelling (no command word): `duplex HOST PORT`. The first word is
 * a host unless it is close to a command name (`duplex conect host 80`), or
 * it is followed by more than one argument of which the second is not a
 * port (`duplex frobnicate a b`, and no -z). Returns 0, or EXIT_USAGE after
 * printing. Documented in docs/duplex.1 (COMMANDS). */
static int check_command_word(const struct options *o, char **pos, int npos)
{
    const char *guess = near_command(pos[0]);
    int first, last;
    if (guess) {
        cli_error("unknown command '%s' (did you mean %s?)", pos[0], guess);
    } else if (npos > 2 && !strpbrk(pos[0], ".:/[@") &&
               (o->zero_io ? dx_parse_port_range(pos[1], &first, &last) < 0
                           : dx_parse_port(pos[1]) < 0)) {
        cli_error("unknown command '%s': expected connect, listen, relay, sockets, bench or help "
                  "(or netcat style: duplex HOST PORT)", pos[0]);
    } else {
        return 0;
    }
    cli_usage_short();
    return EXIT_USAGE;
}

/* What a HOST-and-PORT argument that did not split probably meant: a bare
 * IPv6 address with a port glued on (::1:8080 -> [::1]:8080), or a Unix
 * socket path (-U PATH). Writes " (did you mean ...?)" or "" into buf. */
static const char *address_hint(const char *arg, const char *cmd, char *buf, size_t len)
{
    unsigned char bin[16];
    char host[128];
    const char *colon = strrchr(arg, ':');
    size_t hlen = colon ? (size_t)(colon - arg) : 0;
    buf[0] = '\0';
    if (arg[0] == '/' || arg[0] == '@' || strncmp(arg, "./", 2) == 0 ||
        strncmp(arg, "../", 3) == 0 ||
        (strlen(arg) > 5 && strcmp(arg + strlen(arg) - 5, ".sock") == 0)) {
        if (strcmp(cmd, "relay") == 0)
            snprintf(buf, len, " (a Unix socket? unix:%s)", arg);
        else
            snprintf(buf, len, " (a Unix socket? duplex %s -U %s)", cmd, arg);
    } else if (arg[0] != '[' && colon && hlen > 0 && hlen < sizeof host &&
               memchr(arg, ':', hlen) && colon[1] && dx_parse_port(colon + 1) >= 0) {
        memcpy(host, arg, hlen);
        host[hlen] = '\0';
        if (inet_pton(AF_INET6, host, bin) == 1)
            snprintf(buf, len, " (did you mean [%s]:%s? an IPv6 address takes brackets before "
                     ":PORT)", host, colon + 1);
    }
    return buf;
}

/* ncat's port when connect or listen is given none */
#define DEFAULT_PORT "31337"
/* listen -u -k/--exec: at most ncat's default --max-conns peers at once (a
 * spoofed sender costs a process), each forgotten after a minute quiet */
#define UDP_DEFAULT_PEERS 100
#define UDP_DEFAULT_PEER_IDLE_MS 60000
/* relay -u: a session is a socket; 1000 of them fit the usual limit of 1024
 * descriptors (ulimit -n) */
#define RELAY_UDP_DEFAULT_SESSIONS 1000

/* An IPv4 (dotted quad) or IPv6 address, brackets allowed; copied into buf
 * without them. */
/* connect HOST with no PORT (ncat's 31337): a host name or an IP address
 * (IPv6 with or without brackets, a %zone allowed), copied into buf without
 * brackets: 1. A number alone (ncat: a PORT without its HOST), "HOST:", a
 * Unix path and what address_hint() explains (::1:80) are not: 0. */
static int host_alone(const char *arg, char *buf, size_t len)
{
    char hint[300], ip[INET6_ADDRSTRLEN];
    unsigned char bin[16];
    size_t n = strlen(arg);
    if (n == 0 || n >= len || strspn(arg, "0123456789") == n ||
        *address_hint(arg, "connect", hint, sizeof hint))
        return 0;
    if (arg[0] == '[') {
        if (n < 3 || arg[n - 1] != ']')
            return 0;
        arg++;
        n -= 2;
    }
    memcpy(buf, arg, n);
    buf[n] = '\0';
    if (strchr(buf, ':')) { /* an IPv6 address, its %zone aside */
        size_t k = strcspn(buf, "%");
        if (k >= sizeof ip)
            return 0;
        memcpy(ip, buf, k);
        ip[k] = '\0';
        return inet_pton(AF_INET6, ip, bin) == 1;
    }
    /* a name (letters, digits, - . _) or an IPv4 address */
    return buf[0] != '-' && buf[0] != '.' &&
           strspn(buf, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._") == n;
}

static int is_ip_literal(const char *text, char *buf, size_t len)
{
    unsigned char bin[16];
    size_t n = strlen(text);
    if (n >= 2 && text[0] == '[' && text[n - 1] == ']') {
        text++;
        n -= 2;
    }
    if (n >= len)
        return 0;
    memcpy(buf, text, n);
    buf[n] = '\0';
    return inet_pton(AF_INET, buf, bin) == 1 || inet_pton(AF_INET6, buf, bin) == 1;
}

/* inet_aton(): Winsock has only inet_addr(), which reads the same old forms
 * (127.1, 0x7f.1, a bare number) but cannot tell 255.255.255.255 from a
 * failure: that one is a full dotted quad, which the caller accepts anyway. */
static int legacy_aton(const char *text, struct in_addr *a)
{
#ifdef _WIN32
    unsigned long v = inet_addr(text);
    if (v == INADDR_NONE)
        return 0;
    a->s_addr = v;
    return 1;
#else
    return inet_aton(text, a);
#endif
}

/* An address to bind to (listen ADDR, -s, relay's LISTEN): refuse what
 * inet_aton() would read in its old forms: a bare number (`duplex -l 24700
 * 24701` would bind 0.0.96.124) and short or hex forms (127.1, 0x7f.1). */
static int check_local_host(const char *what, const char *host)
{
    struct in_addr a;
    unsigned char bin[4];
    if (!host || legacy_aton(host, &a) == 0 || inet_pton(AF_INET, host, bin) == 1)
        return 0;
    char full[INET_ADDRSTRLEN];
    inet_ntop(AF_INET, &a, full, sizeof full);
    if (strspn(host, "0123456789") == strlen(host))
        cli_error("%s '%s' is a bare number, not an address (it would mean %s): %s", what, host,
                  full, strcmp(what, "-s") == 0 ? "a source port is -p PORT"
                  : strncmp(what, "relay", 5) == 0 ? "LISTEN is PORT or ADDR:PORT"
                  : "listen takes one PORT: duplex listen [ADDR] PORT");
    else
        cli_error("%s '%s' is not a dotted-quad IPv4 address: write it in full (%s)", what, host,
                  full);
    return -1;
}

/* A relay endpoint: "unix:PATH", a path ("/", ".", "@"), "HOST:PORT",
 * "[V6]:PORT", or (listen side only) a bare PORT. */
static int parse_endpoint(const char *text, char *buf, size_t buflen, int listen_side,
                          const char **host, const char **port, const char **unix_path)
{
    *host = *port = *unix_path = NULL;
    if (strncmp(text, "unix:", 5) == 0 && text[5]) {
        *unix_path = text + 5;
        return 0;
    }
    if (text[0] == '/' || text[0] == '.' || text[0] == '@') {
        *unix_path = text;
        return 0;
    }
    if (listen_side && strspn(text, "0123456789") == strlen(text) && *text) {
        *port = text;
        if (dx_parse_port(text) < 0) {
            cli_error("invalid port '%s': expected 0-65535 or a service name", text);
            return -1;
        }
        return 0;
    }
    if (dx_split_hostport(text, buf, buflen, host, port) < 0) {
        char hint[300];
        cli_error("invalid relay %s '%s': expected %sHOST:PORT, [V6]:PORT or unix:PATH%s",
                  listen_side ? "listen address" : "target", text, listen_side ? "PORT, " : "",
                  address_hint(text, "relay", hint, sizeof hint));
        return -1;
    }
    if (listen_side && check_local_host("relay listen address", *host) < 0)
        return -1;
    if (dx_parse_port(*port) < 0) {
        cli_error("invalid port '%s' in '%s': expected 0-65535 or a service name", *port, text);
        return -1;
    }
    return 0;
}

/* A host to connect to: never empty ("" would mean loopback to getaddrinfo,
 * and no name at all to the TLS certificate check). */
static int check_target_host(const char *what, const char *host)
{
    if (host && !*host) {
        cli_error("%s: the HOST is empty: give a name or an address (127.0.0.1 or ::1 for "
                  "this machine)", what);
        return -1;
    }
    return 0;
}

/* relay's TARGET words: each a target, or a comma list of them (a Unix
 * path is one target, commas and all). */
static int parse_targets(struct options *o, char **words, int nwords)
{
    static char bufs[MAX_TARGETS][512];
    o->ntargets = 0;
    for (int w = 0; w < nwords; w++) {
        const char *word = words[w];
        int is_path = strncmp(word, "unix:", 5) == 0 || word[0] == '/' || word[0] == '.' ||
                      word[0] == '@';
        do {
            size_t len = is_path ? strlen(word) : strcspn(word, ",");
            if (o->ntargets == MAX_TARGETS) {
                cli_error("relay takes at most %d targets", MAX_TARGETS);
                return -1;
            }
            char *buf = bufs[o->ntargets];
            if (len >= sizeof bufs[0] / 2) {
                cli_error("relay target too long: '%.40s...'", word);
                return -1;
            }
            /* the word's copy in the first half, its split in the second */
            memcpy(buf, word, len);
            buf[len] = '\0';
            struct relay_target_arg *t = &o->targets[o->ntargets];
            if (parse_endpoint(buf, buf + len + 1, sizeof bufs[0] - len - 1, 0, &t->host, &t->port,
                               &t->unix_path) < 0 ||
                check_target_host("relay TARGET", t->host) < 0)
                return -1;
            o->ntargets++;
            word += len;
        } while (*word++ == ',');
    }
    o->target_host = o->targets[0].host;
    o->target_port = o->targets[0].port;
    o->target_unix = o->targets[0].unix_path;
    return 0;
}

/* --inetd (xinetd, systemd Accept=yes): one connection, on stdin/stdout;
 * relay TARGET..., or listen --exec/--sh-exec CMD; nothing that listens. */
static int check_inetd(const struct options *o, int npos)
{
    const char *bad = o->cmd == CMD_CONNECT ? "connect (it is for relay and listen --exec)"
        : o->keep_listening ? "-k (one connection: the one on stdin)"
        : o->udp ? "-u" : o->unix_path ? "-U" : o->stats_json ? "--stats-json (stdout is the connection)"
        : o->model != MODEL_LOOP || o->threads > 1 ? "--model or --threads"
        : o->port_flag_given || o->source_addr ? "-p or -s (nothing to listen on)"
        : o->cmd == CMD_LISTEN && o->mode != MODE_EXEC ? "listen without --exec/--sh-exec CMD"
        : o->cmd == CMD_LISTEN && o->tls ? "listen --ssl" : o->proxy_serve ? "--proxy-type" : NULL;
    if (bad) {
        cli_error("--inetd takes the connection on stdin/stdout: not with %s", bad);
        return -1;
    }
    if (o->cmd == CMD_LISTEN && npos > 0) {
        cli_error("listen --inetd takes no ADDR or PORT: the connection is stdin");
        return -1;
    }
    return 0;
}

static int parse_relay(struct options *o, char **pos, int npos)
{
    static char lbuf[512];
    if (o->inetd && npos < 1) {
        cli_error("relay --inetd needs a TARGET: duplex relay --inetd 127.0.0.1:80");
        return EXIT_USAGE;
    }
    if (!o->inetd && npos < 2) {
        cli_error("relay needs LISTEN and TARGET, e.g. duplex relay 8080 127.0.0.1:80 (or several "
                  "targets: duplex relay 8080 10.0.0.1:80 10.0.0.2:80)");
        cli_usage_short();
        return EXIT_USAGE;
    }
    if (o->zero_io || o->mode != MODE_STDIO || o->model != MODEL_LOOP || o->threads > 1 ||
        o->unix_path || o->source_addr || o->port_flag_given) {
        cli_error("relay takes its addresses as LISTEN TARGET (unix:PATH for Unix sockets); "
                  "-z, -U, -s, -p, server modes and models do not apply");
        return EXIT_USAGE;
    }
    if (o->inetd) /* no LISTEN: the client is on stdin */
        return parse_targets(o, pos, npos) < 0 ? EXIT_USAGE : 0;
    if (parse_endpoint(pos[0], lbuf, sizeof lbuf, 1, &o->host, &o->port, &o->unix_path) < 0 ||
        parse_targets(o, pos + 1, npos - 1) < 0)
        return EXIT_USAGE;
    if (o->udp && (o->unix_path || o->target_unix)) {
        cli_error("relay -u forwards UDP: LISTEN and TARGET are IP addresses, not Unix sockets");
        return EXIT_USAGE;
    }
    if (o->udp && o->ntargets > 1) {
        cli_error("relay -u forwards to one TARGET (several targets, --balance: TCP and Unix "
                  "streams)");
        return EXIT_USAGE;
    }
    return 0;
}

/* --send-oob: one character, or \xHH, \n, \r, \t, \0, \\ */
static int parse_oob_byte(const char *text, unsigned char *out)
{
    static const char esc[] = "n\nr\rt\t0\0\\\\";
    if (text[0] && !text[1]) {
        *out = (unsigned char)text[0];
        return 0;
    }
    if (text[0] == '\\' && text[1] && !text[2]) {
        for (size_t i = 0; i + 1 < sizeof esc; i += 2) {
            if (esc[i] == text[1]) {
                *out = (unsigned char)esc[i + 1];
                return 0;
            }
        }
    }
    if (text[0] == '\\' && text[1] == 'x' && strlen(text) == 4 &&
        strspn(text + 2, "0123456789abcdefABCDEF") == 2) {
        *out = (unsigned char)strtol(text + 2, NULL, 16);
        return 0;
    }
    cli_error("invalid --send-oob value '%s': expected one character or \\xHH", text);
    return -1;
}

static int check_port(const char *text)
{
    if (dx_parse_port(text) < 0) {
        cli_error("invalid port '%s': expected 0-65535 or a service name", text);
        return -1;
    }
    return 0;
}

/* -x ADDR[:PORT]: HOST:PORT, [V6]:PORT, [V6], a bare V6 address or a HOST. */
static int parse_proxy(struct options *o, const char *text)
{
    static char buf[512];
    size_t n = strlen(text);
    o->proxy_host = o->proxy_port = NULL;
    if (n == 0 || n >= sizeof buf)
        goto bad;
    if (strchr(text, '/')) {
        /* no host name or address has one: ncat's -x FILE was meant */
        cli_error("-x/--proxy takes the proxy's ADDR[:PORT] (as OpenBSD nc), not a file: "
                  "ncat's -x FILE (a hex dump) is --hex-dump %s", text);
        return -1;
    }
    if (dx_split_hostport(text, buf, sizeof buf, &o->proxy_host, &o->proxy_port) == 0) {
        if (!*o->proxy_host)
            goto bad;
        return check_port(o->proxy_port);
    }
    memcpy(buf, text, n + 1);
    o->proxy_port = NULL;
    if (buf[0] == '[') {
        if (n < 3 || buf[n - 1] != ']')
            goto bad;
        buf[n - 1] = '\0';
        o->proxy_host = buf + 1;
    } else if (strchr(buf, ':') && strchr(buf, ':') == strrchr(buf, ':')) {
        goto bad; /* "host:" or ":port" */
    } else {
        o->proxy_host = buf; /* a name, IPv4, or a bare IPv6 address */
    }
    return 0;
bad:
    o->proxy_host = NULL;
    cli_error("invalid -x/--proxy '%s': expected ADDR, ADDR:PORT or [V6]:PORT", text);
    return -1;
}

/* The checks -x needs once the rest of the command line is known. */
/* listen --proxy-type: a proxy server (proxyserv.c); what it cannot be combined with. */
static int check_proxy_server(struct options *o)
{
    const char *name = cli_proxy_type_name(o->proxy_type);
    if (o->proxy_type == PROXY_SOCKS4) {
        cli_error("listen --proxy-type socks4: duplex serves socks5 and http (SOCKS5 clients "
                  "resolve names through the proxy too: curl --socks5-hostname)");
        return -1;
    }
    const char *bad = o->udp ? "-u (a proxy takes TCP clients)"
                      : o->unix_path ? "-U (a proxy takes TCP clients)"
                      : o->mode == MODE_ECHO ? "--echo" : o->mode == MODE_BROKER ? "--broker"
                      : o->mode == MODE_CHAT ? "--chat"
                      : o->mode == MODE_EXEC ? (o->exec_shell ? "--sh-exec" : "--exec")
                      : o->tls ? "--ssl (the proxy server speaks plain TCP to its clients)"
                      : o->model != MODEL_LOOP ? "--model (the proxy runs one event loop; name "
                                                 "lookups run on threads of their own)"
                      : o->threads > 1 ? "--threads (the proxy runs one event loop; name lookups "
                                         "run on threads of their own and tunnels are spliced "
                                         "in the kernel)"
                      : NULL;
    if (bad) {
        cli_error("listen --proxy-type %s serves each client as a proxy: not with %s", name, bad);
        return -1;
    }
    if (o->proxy_auth) {
        const char *colon = strchr(o->proxy_auth, ':');
        size_t ulen = colon ? (size_t)(colon - o->proxy_auth) : 0;
        if (!colon || ulen == 0) {
            cli_error("invalid --proxy-auth: expected USER:PASS (what clients must give)");
            return -1;
        }
        if (o->proxy_type == PROXY_SOCKS5 && (ulen > 255 || strlen(colon + 1) > 255)) {
            cli_error("invalid --proxy-auth for SOCKS5: USER and PASS must be 1-255 and "
                      "0-255 bytes");
            return -1;
        }
        if (o->proxy_type == PROXY_HTTP && strlen(o->proxy_auth) > 1024) {
            cli_error("invalid --proxy-auth: USER:PASS is at most 1024 bytes");
            return -1;
        }
    }
    o->proxy_serve = o->proxy_type + 1;
    o->keep_listening = 1; /* a proxy serves client after client */
    return 0;
}

static int check_proxy(struct options *o, int proxy_given, int type_given)
{
    if (!proxy_given && o->cmd == CMD_LISTEN) {
        if (type_given)
            return check_proxy_server(o);
        if (o->proxy_auth) {
            cli_error("listen --proxy-auth is for a proxy server: give --proxy-type socks5 or http");
            return -1;
        }
    }
    if (!proxy_given) {
        if (o->proxy_auth || type_given) {
            cli_error("-X/--proxy-type and --proxy-auth need -x/--proxy ADDR[:PORT]");
            return -1;
        }
        return 0;
    }
    if (o->cmd != CMD_CONNECT || o->udp || o->unix_path) {
        cli_error("-x/--proxy works with connect over TCP only: not with %s",
                  o->cmd == CMD_LISTEN ? "listen (-l)" : o->cmd == CMD_RELAY ? "relay"
                  : o->udp ? "-u (UDP)" : "-U (a Unix socket target)");
        return -1;
    }
    if (!o->proxy_port)
        o->proxy_port = o->proxy_type == PROXY_HTTP ? "3128" : "1080";
    if (o->proxy_auth) {
        const char *colon = strchr(o->proxy_auth, ':');
        size_t ulen = colon ? (size_t)(colon - o->proxy_auth) : strlen(o->proxy_auth);
        size_t plen = colon ? strlen(colon + 1) : 0; /* USER alone: an empty password (as ncat) */
        if (o->proxy_type == PROXY_SOCKS5 && (ulen == 0 || ulen > 255 || plen > 255)) {
            cli_error("invalid --proxy-auth for SOCKS5: USER and PASS must be 1-255 and "
                      "0-255 bytes");
            return -1;
        }
        if (o->proxy_type == PROXY_SOCKS4 && ulen > 255) {
            cli_error("invalid --proxy-auth for SOCKS4: the user id is at most 255 bytes");
            return -1;
        }
        if (o->proxy_type == PROXY_HTTP && ulen + plen > 1024) {
            cli_error("invalid --proxy-auth: USER:PASS is at most 1024 bytes");
            return -1;
        }
        for (const char *c = o->proxy_auth; o->proxy_type == PROXY_HTTP && *c; c++)
            if ((unsigned char)*c < 0x20 || *c == 0x7f) { /* they would end the header line */
                cli_error("invalid --proxy-auth for HTTP: control characters are not allowed");
                return -1;
            }
    }
    return 0;
}

/* After the target is known: SOCKS4 carries an IPv4 address or a name only. */
static int check_proxy_target(const struct options *o)
{
    char v6[64];
    unsigned char bin[16];
    const char *h = o->host;
    size_t n = strlen(h);
    if (h[0] == '[' && n >= 2 && n - 2 < sizeof v6) {
        memcpy(v6, h + 1, n - 2);
        v6[n - 2] = '\0';
        h = v6;
    }
    if (o->proxy_dns == PROXY_DNS_NONE && inet_pton(AF_INET, h, bin) != 1 &&
        inet_pton(AF_INET6, h, bin) != 1) {
        cli_error("--proxy-dns none: the target must be a numeric address, not '%s' (ncat "
                  "refuses it too); --proxy-dns remote (the default) lets the proxy resolve "
                  "it", o->host);
        return -1;
    }
    if (o->proxy_type == PROXY_SOCKS4 && inet_pton(AF_INET6, h, bin) == 1) {
        cli_error("-X 4: SOCKS4 carries IPv4 addresses and names only, not the IPv6 "
                  "address %s (use -X 5 or -X connect)", o->host);
        return -1;
    }
    if (strlen(h) > 255) {
        cli_error("target host name too long for a proxy (at most 255 bytes): %.40s...", h);
        return -1;
    }
    return 0;
}

/* --ssl and its options, once the rest of the command line is known (the
 * files themselves are opened by cli_tls_open(), before any socket). */
/* --cluster redis://...: listen --broker/--chat only (a node among
 * others: cluster.c); the node's name defaults to the host name. */
static int check_cluster(struct options *o)
{
    if (!o->cluster) {
        if (o->node_name) {
            cli_error("--node-name names this node among the --cluster nodes: it needs --cluster");
            return -1;
        }
        return 0;
    }
    if (DX_OS_WINDOWS) {
        cli_error("--cluster is not available on %s (this build has no Redis client): run the "
                  "cluster nodes on Linux", DX_OS_NAME);
        return -1;
    }
    if (o->cmd != CMD_LISTEN || (o->mode != MODE_BROKER && o->mode != MODE_CHAT) || o->udp ||
        o->proxy_serve || o->threads > 1) {
        cli_error("--cluster joins a broker or chat to others through Redis: it needs listen "
                  "--broker or --chat (TCP, one loop: no -u, --threads, --proxy-type)");
        return -1;
    }
    struct cluster_url u;
    const char *why;
    if (cli_cluster_url_parse(o->cluster, &u, &why) < 0) {
        cli_error("--cluster '%s': %s", o->cluster, why);
        return -1;
    }
    FILE *ca = u.cacert[0] ? fopen(u.cacert, "r") : NULL;
    if (u.cacert[0] && !ca) {
        cli_error("--cluster: ?cacert=%s: %s", u.cacert, strerror(errno));
        return -1;
    }
    if (ca)
        fclose(ca);
    if (!o->node_name) {
        if (gethostname(o->node_name_buf, sizeof o->node_name_buf - 1) != 0 || !o->node_name_buf[0])
            strcpy(o->node_name_buf, "node");
        o->node_name_buf[sizeof o->node_name_buf - 1] = '\0';
        o->node_name = o->node_name_buf;
    }
    size_t n = strlen(o->node_name);
    int bad = n == 0 || n > 64;
    for (size_t i = 0; i < n && !bad; i++)
        bad = o->node_name[i] <= ' ' || o->node_name[i] == ']' || o->node_name[i] == 0x7f;
    if (bad) {
        cli_error("--node-name '%s': 1 to 64 printable characters, no space nor ']' (it opens "
                  "each chat name: '[NODE ADDR:PORT] line')", o->node_name);
        return -1;
    }
    return 0;
}

static int check_tls(const struct options *o, int tls_opt_given)
{
    if (o->tls_target && o->cmd != CMD_RELAY) {
        cli_error("--ssl-target is for relay (TLS to its TARGET): connect and listen take --ssl");
        return -1;
    }
    if (!o->tls && !o->tls_target) {
        if (tls_opt_given) {
            cli_error("--ssl-cert, --ssl-key, --ssl-trustfile, --ssl-servername, --ssl-verify, "
                      "--ssl-no-verify, --ssl-pin, --ssl-alpn and --ssl-ciphers need --ssl "
                      "(--tls)%s",
                      o->cmd == CMD_RELAY ? " or --ssl-target" : "");
            return -1;
        }
        return 0;
    }
    /* iterative: handshakes run in the loop, several at once, so "one client
     * at a time" could not hold (fork and thread: each child or thread runs
     * its client's handshake itself) */
    int bad_model = o->model == MODEL_ITERATIVE;
    if (o->udp || o->zero_io || bad_model || o->has_send_oob || o->oob_inline) {
        cli_error("--ssl works with connect, listen (every mode; models epoll, poll, io_uring, "
                  "thread, fork) and relay over TCP or -U: not with %s",
                  o->udp ? "-u (UDP)" : o->zero_io ? "-z"
                  : bad_model ? "--model iterative" : "--send-oob/--oob-inline "
                  "(TLS has no urgent data)");
        return -1;
    }
    if (o->tls_key && !o->tls_cert) {
        cli_error("--ssl-key needs --ssl-cert FILE (the certificate that goes with the key)");
        return -1;
    }
    if (o->tls_cert && !o->tls_key) {
        cli_error("--ssl-cert needs --ssl-key FILE (the certificate's private key)");
        return -1;
    }
    if (o->tls_no_verify && (o->tls_verify || o->tls_trustfile)) {
        cli_error("--ssl-no-verify excludes --ssl-verify and --ssl-trustfile");
        return -1;
    }
    if (o->tls_pin) {
        /* the pin is the whole check of the server's certificate: a CA list
         * for it would be ignored, and --ssl-no-verify contradicts it */
        int server_side = o->cmd == CMD_LISTEN || (o->cmd == CMD_RELAY && !o->tls_target);
        int trust_for_clients = o->cmd == CMD_RELAY && o->tls && o->tls_verify;
        if (server_side) {
            cli_error("--ssl-pin checks the server's certificate: it is for connect --ssl and "
                      "relay --ssl-target");
            return -1;
        }
        if (o->tls_no_verify || (o->tls_trustfile && !trust_for_clients)) {
            cli_error("--ssl-pin replaces the CA and name check: it excludes --ssl-no-verify "
                      "and --ssl-trustfile");
            return -1;
        }
    }
    if (o->tls_target) {
        /* relay: the target is checked like connect checks its server */
        if (o->tls_verify && !o->tls) {
            cli_error("--ssl-verify is for relay --ssl (client certificates); the target's "
                      "certificate is checked by default with --ssl-target");
            return -1;
        }
        if (o->tls_verify && !o->tls_trustfile) {
            cli_error("relay --ssl-verify needs --ssl-trustfile FILE: the CAs that sign client "
                      "certificates (and, with --ssl-target, the target's)");
            return -1;
        }
    } else if (o->cmd != CMD_CONNECT) {
        if (o->tls_servername || o->tls_no_verify) {
            cli_error("--ssl-servername and --ssl-no-verify are for connect: a server checks "
                      "client certificates only with --ssl-verify");
            return -1;
        }
        if (o->tls_verify && !o->tls_trustfile) {
            cli_error("%s --ssl-verify needs --ssl-trustfile FILE: the CAs that sign "
                      "client certificates", o->cmd == CMD_RELAY ? "relay" : "listen");
            return -1;
        }
        if (o->tls_trustfile && !o->tls_verify) {
            cli_error("%s --ssl-trustfile is for client certificates: add --ssl-verify",
                      o->cmd == CMD_RELAY ? "relay" : "listen");
            return -1;
        }
    } else if (o->unix_path && !o->tls_no_verify && !o->tls_servername && !o->tls_pin) {
        cli_error("connect -U --ssl: a Unix socket has no host name to check the certificate "
                  "against: give --ssl-servername NAME (or --ssl-no-verify)");
        return -1;
    }
    return 0;
}

/* Unix sockets (-U PATH, relay's unix:PATH) on Windows: Windows 10 1803
 * and later have AF_UNIX stream sockets, but wine, where this build is
 * tested, has none; the library refuses them on Windows so that what runs
 * is what was tested. Said here, before anything is set up. */
static int check_unix_available(const struct options *o)
{
    if (!DX_OS_WINDOWS || (!o->unix_path && !o->target_unix))
        return 0;
    cli_error("Unix sockets (%s) are not available on %s in this build (untested there: "
              "use TCP on 127.0.0.1)", o->unix_path ? "-U" : "unix:PATH", DX_OS_NAME);
    return -1;
}

/* `-d 500ms HOST PORT` (ncat: a delay between lines) would read the time as
 * the host, since -d takes no value (OpenBSD nc: do not read stdin). A
 * word right after -d that is a time and stands where the host goes is
 * refused, pointing to --delay. */
static int check_d_time(const struct options *o, const char *after_d, char **pos, int npos,
                        int port_flag)
{
    int64_t ms;
    if (!after_d || npos == 0 || pos[0] != after_d || o->unix_path ||
        cli_parse_duration(after_d, 1e12, &ms) != 0)
        return 0;
    if (o->cmd == CMD_LISTEN && npos < 2 && !port_flag)
        return 0; /* `listen -d 8080`: the port */
    cli_error("-d takes no value (as OpenBSD nc: do not read stdin, --recv-only), so '%s' "
              "would be taken as the host: for ncat's -d %s (wait between lines sent) write "
              "--delay %s", after_d, after_d, after_d);
    return -1;
}

/* ncat options duplex does not have: why, and what does the job instead.
 * Prints; returns EXIT_USAGE. */
static int refuse_ncat_option(int c, const char *arg)
{
    switch (c) {
    case OPT_SCTP: {
        const char *why = DX_OS_WINDOWS ? " (Windows has none)" : "";
#ifdef __linux__
        int fd = dx__sock_socket(AF_INET, SOCK_STREAM, 132 /* IPPROTO_SCTP */);
        if (fd >= 0)
            dx__sock_close(fd);
        else
            why = " (this kernel has none either: modprobe sctp first)";
#endif
        cli_error("--sctp: duplex speaks TCP, UDP and Unix sockets, not SCTP: use socat "
                  "(socat - SCTP-CONNECT:HOST:PORT, socat SCTP-LISTEN:PORT -)%s", why);
        break;
    }
    case OPT_VSOCK:
        cli_error("--vsock: AF_VSOCK (virtual machine to host sockets) is not supported: use "
                  "socat (socat - VSOCK-CONNECT:CID:PORT, socat VSOCK-LISTEN:PORT -)");
        break;
    case 'g':
    case 'G':
        cli_error("-%c: IPv4 source routing is not supported: every modern stack and router "
                  "drops source-routed packets (Linux: net.ipv4.conf.*.accept_source_route=0); "
                  "reach the target through a proxy (-x) or a relay instead", c);
        break;
    case OPT_LUA_EXEC:
        cli_error("--lua-exec: duplex has no built-in Lua interpreter: run the script with "
                  "one, --exec \"lua %s\" (the script gets the connection as its stdin and "
                  "stdout, as with ncat)", arg);
        break;
    }
    return EXIT_USAGE;
}

static int parse(int argc, char **argv, struct options *o);

int cli_parse(int argc, char **argv, struct options *o)
{
    int rc = parse(argc, argv, o);
    if (rc == 0 && check_unix_available(o) < 0)
        rc = EXIT_USAGE;
    return rc;
}

static int parse(int argc, char **argv, struct options *o)
{
    forget_acl_names(); /* those of an earlier call that stopped early */
    memset(o, 0, sizeof *o);
    o->family = AF_UNSPEC;
    o->quit_after_eof_ms = -1;
    o->cmd = CMD_CONNECT;
    o->max_queue = 1u << 20;
    o->down_time_ms = DOWN_TIME_DEFAULT_MS;
    int balance_given = 0; /* --balance or --down-time */
    const char *port_flag = NULL;
    int proxy_dns_given = 0;
    int proxy_given = 0, proxy_type_given = 0, tls_opt_given = 0, tls_implied = 0;
    int unix_bare = 0; /* -U followed by a flag: the PATH is an argument (ncat) */
    long n;

    int argi = 1;
    if (argc > 1 && strcmp(argv[1], "connect") == 0) {
        argi = 2;
    } else if (argc > 1 && strcmp(argv[1], "listen") == 0) {
        o->cmd = CMD_LISTEN;
        argi = 2;
    } else if (argc > 1 && strcmp(argv[1], "relay") == 0) {
        o->cmd = CMD_RELAY;
        argi = 2;
    } else if (argc > 1 && strcmp(argv[1], "sockets") == 0) {
        /* main.c hands `sockets` over before cli_parse(); this is for other callers */
        int rc = cli_sockets_main(argc - 1, argv + 1);
        return rc == EXIT_OK ? -1 : rc;
    } else if (argc > 1 && strcmp(argv[1], "help") == 0) {
        if (argc > 3) {
            cli_error("help takes one COMMAND: duplex help [connect|listen|relay|sockets|bench]");
            return EXIT_USAGE;
        }
        return cli_help(argc > 2 ? argv[2] : NULL);
    } else if (argc > 1 && strcmp(argv[1], "bench") == 0) {
        int brc = cli_bench_main(argc - 1, argv + 1); /* main.c dispatches first */
        return brc == EXIT_OK ? -1 : brc;
    }
    /* getopt sees the subcommand as argv[0] */
    argv += argi - 1;
    argc -= argi - 1;
    optind = 1;
    opterr = 0;

    /* ncat's -d TIME is a delay, duplex's -d (OpenBSD nc's) takes no value:
     * remember the word after a -d, to refuse a time there that would
     * otherwise be taken as the host (check_d_time) */
    const char *after_d = NULL;
    for (int i = 1; i + 1 < argc && strcmp(argv[i], "--") != 0; i++) {
        const char *a = argv[i];
        if (a[0] == '-' && a[1] != '-' && a[strlen(a) - 1] == 'd' &&
            strspn(a + 1, "46ulknNvzCd") == strlen(a + 1))
            after_d = argv[i + 1];
    }

    int c, longi;
    while ((longi = -1, c = getopt_long(argc, argv, ":46U:ulkp:s:nw:q:i:Ndzvhe:c:m:O:Co:x:X:g:G:t", long_opts,
                                        &longi)) != -1) {
        switch (c) {
        case '4': o->family = AF_INET; break;
        case '6': o->family = AF_INET6; break;
        case 'U':
            if (optarg[0] == '-' && optarg[1] && optind <= argc && argv[optind - 1] == optarg) {
                /* ncat's -U is a flag and PATH an argument: `-U -u PATH` is
                 * -U, then -u, then PATH (taken below) */
                optind--;
                unix_bare = 1;
                break;
            }
            o->unix_path = optarg;
            break;
        case 'u': o->udp = 1; break;
        case OPT_SEND_OOB:
            if (parse_oob_byte(optarg, &o->send_oob) < 0)
                return EXIT_USAGE;
            o->has_send_oob = 1;
            break;
        case OPT_OOB_INLINE: o->oob_inline = 1; break;
        case 'x':
            if (parse_proxy(o, optarg) < 0)
                return EXIT_USAGE;
            proxy_given = 1;
            break;
        case 'X': {
            int t = cli_proxy_type(optarg);
            if (t < 0) {
                cli_error("invalid -X/--proxy-type '%s': expected socks5 (5), socks4 (4) or "
                          "http (connect)", optarg);
                return EXIT_USAGE;
            }
            o->proxy_type = t;
            proxy_type_given = 1;
            break;
        }
        case OPT_PROXY_AUTH: o->proxy_auth = optarg; break;
        case OPT_PROXY_DNS: {
            static const char *const names[] = {"remote", "local", "both", "none"};
            int k = 0;
            while (k < 4 && strcmp(optarg, names[k]) != 0)
                k++;
            if (k == 4) {
                cli_error("invalid --proxy-dns '%s': expected local, remote, both or none",
                          optarg);
                return EXIT_USAGE;
            }
            o->proxy_dns = k; /* PROXY_DNS_*, in the order of names[] */
            proxy_dns_given = 1;
            break;
        }
        case OPT_SSL: o->tls = 1; break;
        case OPT_SSL_CERT: o->tls_cert = optarg; tls_opt_given = 1; break;
        case OPT_SSL_KEY: o->tls_key = optarg; tls_opt_given = 1; break;
        case OPT_SSL_TRUSTFILE: o->tls_trustfile = optarg; tls_opt_given = tls_implied = 1; break;
        case OPT_SSL_SERVERNAME:
            if (!*optarg) {
                cli_error("--ssl-servername needs a name");
                return EXIT_USAGE;
            }
            o->tls_servername = optarg;
            tls_opt_given = 1;
            break;
        case OPT_SSL_NO_VERIFY: o->tls_no_verify = 1; tls_opt_given = 1; break;
        case OPT_SSL_VERIFY: o->tls_verify = 1; tls_opt_given = tls_implied = 1; break;
        case OPT_SSL_ALPN: o->tls_alpn = optarg; tls_opt_given = 1; break;
        case OPT_SSL_TARGET: o->tls_target = 1; break;
        case OPT_ACCEPT_PROXY: o->accept_proxy = 1; break;
        case OPT_SEND_PROXY:
            if (!optarg || strcmp(optarg, "v1") == 0 || strcmp(optarg, "1") == 0) {
                o->send_proxy = 1;
            } else if (strcmp(optarg, "v2") == 0 || strcmp(optarg, "2") == 0) {
                o->send_proxy = 2;
            } else {
                cli_error("invalid --send-proxy '%s': expected v1 or v2", optarg);
                return EXIT_USAGE;
            }
            break;
        case OPT_SSL_PIN: o->tls_pin = optarg; tls_opt_given = 1; break; /* checked by tls.c */
        case OPT_SSL_CIPHERS: o->tls_ciphers = optarg; tls_opt_given = 1; break; /* tls.c */
        case 'l': o->cmd = CMD_LISTEN; break;
        case 'k': o->keep_listening = 1; break;
        case 'p': port_flag = optarg; o->port_flag_given = 1; break;
        case 's': o->source_addr = optarg; break;
        case 'n': o->numeric = 1; break;
        case 'w':
            if (parse_seconds(longi < 0 ? "-w" : "--timeout", optarg, &o->timeout_ms) < 0)
                return EXIT_USAGE;
            break;
        case 'q': {
            int64_t ms;
            /* nc's -q takes a negative value for "forever" */
            if (strcmp(optarg, "-1") == 0)
                ms = -1;
            else if (parse_seconds(longi < 0 ? "-q" : "--quit-after", optarg, &ms) < 0)
                return EXIT_USAGE;
            o->quit_after_eof_ms = ms;
            break;
        }
        case 'N': o->eof_shutdown = 1; break; /* the default, except through a proxy */
        case OPT_NO_SHUTDOWN: o->no_shutdown = 1; break;
        case 'd': o->recv_only = 1; break;
        case 't': o->telnet = 1; break;
        case OPT_DELAY:
            if (parse_seconds("--delay", optarg, &o->delay_ms) < 0)
                return EXIT_USAGE;
            break;
        case OPT_SCTP:
        case OPT_VSOCK:
        case OPT_LUA_EXEC:
        case 'g':
        case 'G':
            return refuse_ncat_option(c, optarg);
        case OPT_SEND_ONLY: o->send_only = 1; break;
        case 'C': o->crlf = 1; break;
        case OPT_HEX_DUMP: o->hex_dump = optarg; break;
        case 'o': o->output = optarg; break;
        case OPT_APPEND_OUTPUT: o->append_output = 1; break;
        case 'z': o->zero_io = 1; break;
        case 'v': o->verbose++; break;
        case OPT_BACKLOG:
            if (parse_count("--backlog", optarg, 1, 1 << 20, &n) < 0)
                return EXIT_USAGE;
            o->backlog = (int)n;
            break;
        case OPT_REUSEPORT: o->reuseport = 1; break;
        case OPT_BUFSIZE:
            if (parse_count("--buffer-size", optarg, 1024, 64L << 20, &n) < 0)
                return EXIT_USAGE;
            o->bufsize = (size_t)n;
            break;
        case OPT_BACKEND: o->backend = optarg; break;
        case OPT_ECHO: if (set_mode(o, MODE_ECHO, "--echo") < 0) return EXIT_USAGE; break;
        case OPT_BROKER: if (set_mode(o, MODE_BROKER, "--broker") < 0) return EXIT_USAGE; break;
        case OPT_CHAT: if (set_mode(o, MODE_CHAT, "--chat") < 0) return EXIT_USAGE; break;
        case 'e':
        case 'c':
            if (set_mode(o, MODE_EXEC, c == 'e' ? "--exec" : "--sh-exec") < 0)
                return EXIT_USAGE;
            o->exec_cmd = optarg;
            o->exec_shell = c == 'c';
            if (!*optarg) {
                cli_error("%s needs a command", c == 'e' ? "--exec" : "--sh-exec");
                return EXIT_USAGE;
            }
            break;
        case OPT_NO_STDIO: o->no_stdio = 1; break;
        case OPT_CLUSTER: o->cluster = optarg; break;
        case OPT_NODE_NAME: o->node_name = optarg; break;
        case 'm':
            if (strcmp(optarg, "0") == 0) {
                /* ncat 7.93 takes it and then accepts and closes every client */
                cli_error("--max-conns 0 would turn every client away (ncat accepts and closes "
                          "each one): give 1 or more, or leave it out for no limit");
                return EXIT_USAGE;
            }
            if (parse_count("--max-conns", optarg, 1, 10000000, &o->max_conns) < 0)
                return EXIT_USAGE;
            break;
        case OPT_ALLOW: if (add_rule(o, optarg, 1) < 0) return EXIT_USAGE; break;
        case OPT_DENY: if (add_rule(o, optarg, 0) < 0) return EXIT_USAGE; break;
        case OPT_ALLOWFILE: if (add_rule_file(o, optarg, 1) < 0) return EXIT_USAGE; break;
        case OPT_DENYFILE: if (add_rule_file(o, optarg, 0) < 0) return EXIT_USAGE; break;
        case 'i': /* ncat's -i (OpenBSD nc's -i, a delay between lines, is not taken) */
            if (parse_seconds(longi < 0 ? "-i" : "--idle-timeout", optarg, &o->idle_timeout_ms) < 0)
                return EXIT_USAGE;
            break;
        case OPT_STATS_JSON: o->stats_json = 1; break;
        case OPT_BALANCE:
            if ((o->balance = cli_balance_parse(optarg)) < 0) {
                cli_error("invalid --balance '%s': expected first, roundrobin or leastconn", optarg);
                return EXIT_USAGE;
            }
            balance_given = 1;
            break;
        case OPT_INETD:
            if (DX_OS_WINDOWS) {
                cli_error("--inetd is not available on %s (no inetd hands a socket over as stdin "
                          "there)", DX_OS_NAME);
                return EXIT_USAGE;
            }
            o->inetd = 1;
            break;
        case OPT_DOWN_TIME:
            if (parse_seconds("--down-time", optarg, &o->down_time_ms) < 0)
                return EXIT_USAGE;
            balance_given = 1;
            break;
        case 'O':
            if (cli_sockopt_add(o, optarg) != 0)
                return EXIT_USAGE;
            break;
        case OPT_SHOW_OPTS: o->show_opts = 1; break;
        case OPT_PROGRESS:
            if (!optarg || strcmp(optarg, "auto") == 0) {
                o->progress = PROGRESS_AUTO;
            } else if (strcmp(optarg, "always") == 0) {
                o->progress = PROGRESS_ALWAYS;
            } else if (strcmp(optarg, "never") == 0) {
                o->progress = PROGRESS_OFF;
            } else {
                cli_error("invalid --progress value '%s': expected auto, always or never", optarg);
                return EXIT_USAGE;
            }
            break;
        case OPT_MODEL:
            if (set_model(o, optarg) < 0)
                return EXIT_USAGE;
            break;
        case OPT_THREADS:
            if (parse_count("--threads", optarg, 1, 256, &n) < 0)
                return EXIT_USAGE;
            o->threads = (int)n;
            break;
        case OPT_MAXQUEUE:
            if (parse_count("--max-queue", optarg, 65536, 1L << 30, &n) < 0)
                return EXIT_USAGE;
            o->max_queue = (size_t)n;
            break;
        case OPT_PTY: o->pty_link = optarg; break;
        case OPT_SERIAL: o->serial = optarg; break;
        case OPT_RATE_LIMIT:
            if (cli_parse_rate(optarg, &o->rate_limit) < 0) {
                cli_error("invalid --rate-limit value '%s': expected BYTES[/s], a number with "
                          "an optional k, M or G (times 1024, 1024^2, 1024^3), from 1 to 1T",
                          optarg);
                return EXIT_USAGE;
            }
            break;
        case 'h':
            return cli_help(argi == 1 && o->cmd == CMD_CONNECT ? NULL
                            : o->cmd == CMD_CONNECT ? "connect"
                            : o->cmd == CMD_LISTEN ? "listen" : "relay");
        case OPT_VERSION: print_version(); return -1;
        case ':':
            cli_error("option '%s' needs a value", argv[optind - 1]);
            cli_usage_short();
            return EXIT_USAGE;
        default:
            if (optopt)
                cli_error("unknown option '-%c'", optopt);
            else
                cli_error("unknown option '%s'", argv[optind - 1]);
            cli_usage_short();
            return EXIT_USAGE;
        }
    }
    int acl_code = resolve_acl_names(o);
    if (acl_code)
        return acl_code;
    char **pos = argv + optind;
    int npos = argc - optind;
    if (check_d_time(o, after_d, pos, npos, port_flag != NULL) < 0)
        return EXIT_USAGE;
    /* flags before the subcommand: `duplex -v connect HOST PORT` */
    if (argi == 1 && npos > 0 && (strcmp(pos[0], "connect") == 0 || strcmp(pos[0], "listen") == 0 ||
                                  strcmp(pos[0], "relay") == 0)) {
        if (pos[0][0] == 'l')
            o->cmd = CMD_LISTEN;
        else if (pos[0][0] == 'r')
            o->cmd = CMD_RELAY;
        pos++;
        npos--;
    } else if (argi == 1 && npos > 0 && (strcmp(pos[0], "sockets") == 0 ||
                                         strcmp(pos[0], "bench") == 0 ||
                                         strcmp(pos[0], "help") == 0)) {
        /* their flags are their own: `duplex -v bench` would mean -v of connect */
        cli_error("'%s' must be the first word: duplex %s%s", pos[0], pos[0],
                  strcmp(pos[0], "help") == 0 ? " [COMMAND]" : " [its options]");
        return EXIT_USAGE;
    } else if (argi == 1 && npos > 0 && o->cmd == CMD_CONNECT && !o->unix_path && !unix_bare &&
             check_command_word(o, pos, npos) != 0)
        return EXIT_USAGE;
    static char split_buf[512];
    if (unix_bare && !o->unix_path) {
        if (npos == 0) {
            cli_error("-U needs a PATH");
            return EXIT_USAGE;
        }
        o->unix_path = pos[0];
        pos++;
        npos--;
    }

    if (check_backend(o) < 0)
        return EXIT_USAGE;
    if (o->reuseport) {
        /* the same table -O uses: SO_REUSEPORT is not on every platform */
        const dx_sockopt_desc *d = dx_sockopt_describe(dx_sockopt_lookup("reuseport", 9));
        if (d && d->optname < 0) {
            cli_error("--reuseport: %s is not available on %s", d->name, DX_OS_NAME);
            return EXIT_USAGE;
        }
    }
    if (o->eof_shutdown && o->no_shutdown) {
        cli_error("-N and --no-shutdown exclude each other");
        return EXIT_USAGE;
    }
    if (o->recv_only && o->send_only) {
        cli_error("--recv-only and --send-only exclude each other");
        return EXIT_USAGE;
    }
    if (o->telnet && (o->udp || o->zero_io || o->cmd == CMD_RELAY)) {
        cli_error("-t/--telnet answers a Telnet peer on one TCP or Unix stream connection: "
                  "not with %s", o->udp ? "-u" : o->zero_io ? "-z" : "relay");
        return EXIT_USAGE;
    }
    if (o->delay_ms && (o->recv_only || o->udp || o->zero_io || o->cmd == CMD_RELAY)) {
        cli_error("--delay paces the lines stdin sends on one TCP or Unix stream connection: "
                  "not with %s", o->recv_only ? "-d/--recv-only (stdin is not read)"
                  : o->udp ? "-u" : o->zero_io ? "-z" : "relay");
        return EXIT_USAGE;
    }
    /* connect -U -u -s PATH: the client's own path, where replies come */
    int unix_source = o->udp && o->cmd == CMD_CONNECT;
    if (o->unix_path && (o->family != AF_UNSPEC || (o->source_addr && !unix_source) || port_flag)) {
        cli_error("-U takes no -4/-6/-s/-p: a Unix socket has no IP address or port%s",
                  o->source_addr && o->udp ? " (-s PATH: connect -U -u only)" : "");
        return EXIT_USAGE;
    }
    if (o->unix_path && o->udp && o->zero_io) {
        cli_error("-z -U -u: a Unix datagram socket has no port to probe (-z -U probes a stream "
                  "socket)");
        return EXIT_USAGE;
    }

    if (o->udp && o->cmd != CMD_RELAY &&
        ((o->mode != MODE_STDIO && o->mode != MODE_EXEC) || o->model != MODEL_LOOP || o->threads > 1)) {
        cli_error("-u works with connect, listen (IP, or -U: Unix datagrams) and relay: --echo, "
                  "--broker, --chat, --model and --threads do not apply");
        return EXIT_USAGE;
    }
    if (o->udp && o->cmd == CMD_RELAY && o->timeout_ms) {
        cli_error("relay -u: -w bounds a TCP connect, and UDP has none: a session ends after "
                  "--idle-timeout SECS without a datagram");
        return EXIT_USAGE;
    }
    if (o->udp && o->mode == MODE_EXEC && DX_OS_WINDOWS) {
        cli_error("-u --exec/--sh-exec is not available on %s (a program per peer "
                  "needs socketpairs): use TCP", DX_OS_NAME);
        return EXIT_USAGE;
    }
    /* listen -u takes --allow/--deny (each datagram's sender is checked);
     * -k and --exec keep a table of peers, bounded and aged */
    if (o->udp && (o->max_conns || o->idle_timeout_ms) && o->cmd != CMD_RELAY &&
        !(o->cmd == CMD_LISTEN && (o->keep_listening || o->mode == MODE_EXEC))) {
        cli_error("--max-conns and --idle-timeout bound and age listen -u -k's (and --exec's) "
                  "peers: UDP has no connection otherwise (-w SECS ends -u after SECS without "
                  "traffic)");
        return EXIT_USAGE;
    }
    if (o->udp && o->cmd == CMD_LISTEN && (o->keep_listening || o->mode == MODE_EXEC)) {
        if (!o->max_conns)
            o->max_conns = UDP_DEFAULT_PEERS;
        if (!o->idle_timeout_ms)
            o->idle_timeout_ms = UDP_DEFAULT_PEER_IDLE_MS;
    }
    if (o->udp && o->cmd == CMD_RELAY) {
        if (!o->max_conns)
            o->max_conns = RELAY_UDP_DEFAULT_SESSIONS;
        if (!o->idle_timeout_ms)
            o->idle_timeout_ms = UDP_DEFAULT_PEER_IDLE_MS;
    }
    if (o->udp && (o->has_send_oob || o->oob_inline)) {
        cli_error("--send-oob and --oob-inline are for TCP: UDP has no urgent data");
        return EXIT_USAGE;
    }
    if ((o->hex_dump || o->output) && o->udp) {
        cli_error("--hex-dump and -o work on one TCP or Unix stream connection: not with -u");
        return EXIT_USAGE;
    }
    if (o->crlf && o->udp && (o->mode == MODE_EXEC || o->zero_io)) {
        cli_error("-C changes what stdin sends: with -u --exec the programs have the datagrams, "
                  "and -z sends a probe only");
        return EXIT_USAGE;
    }
    if ((o->crlf || o->hex_dump || o->output) && (o->zero_io || o->cmd == CMD_RELAY)) {
        cli_error("-C, --hex-dump and -o work on one TCP or Unix stream connection: not with "
                  "-z or relay");
        return EXIT_USAGE;
    }
    if (o->progress != PROGRESS_OFF && (o->udp || o->zero_io)) {
        cli_error("--progress shows a stream's bytes: not with %s", o->udp ? "-u (UDP)" : "-z");
        return EXIT_USAGE;
    }
    if (balance_given && o->cmd != CMD_RELAY) {
        cli_error("--balance and --down-time choose among relay's TARGETs: for relay only");
        return EXIT_USAGE;
    }
    if (o->stats_json && o->cmd != CMD_RELAY) {
        cli_error("--json (--stats-json) is for relay, bench and sockets: connect and listen "
                  "print their figures with -v");
        return EXIT_USAGE;
    }
    if (check_cluster(o) < 0)
        return EXIT_USAGE;
    if (check_proxy(o, proxy_given, proxy_type_given) < 0)
        return EXIT_USAGE;
    if (o->send_proxy && o->cmd != CMD_RELAY) {
        cli_error("--send-proxy is for relay (a PROXY header to its TARGET)");
        return EXIT_USAGE;
    }
    if (o->send_proxy && o->udp) {
        cli_error("--send-proxy puts a PROXY header before a relayed stream: not with -u");
        return EXIT_USAGE;
    }
    if (o->accept_proxy && (o->cmd == CMD_CONNECT || o->udp)) {
        cli_error("--accept-proxy reads a load balancer's PROXY header from each client of "
                  "listen or relay over TCP or -U: not with %s", o->udp ? "-u" : "connect");
        return EXIT_USAGE;
    }
    if (proxy_dns_given && !proxy_given) {
        cli_error("--proxy-dns says where a proxy's target name is resolved: it needs "
                  "-x/--proxy ADDR[:PORT]");
        return EXIT_USAGE;
    }
    /* as ncat: --ssl-verify and --ssl-trustfile imply --ssl (connect: the
     * server's certificate checked, as by default; listen: client
     * certificates required). relay: they may be for --ssl-target, so one
     * of --ssl/--ssl-target stays needed there. */
    if (tls_implied && o->cmd != CMD_RELAY)
        o->tls = 1;
    if (check_tls(o, tls_opt_given) < 0)
        return EXIT_USAGE;
    if (check_rate_limit(o) < 0 || check_pty(o) < 0)
        return EXIT_USAGE;

    if (o->inetd && check_inetd(o, npos) < 0)
        return EXIT_USAGE;
    if (o->cmd == CMD_RELAY) {
        int code = parse_relay(o, pos, npos);
        if (code == 0 && check_acl_applies(o) < 0)
            code = EXIT_USAGE;
        if (code == 0 && check_serial(o) < 0)
            code = EXIT_USAGE;
        if (code == 0 && o->tls_target && o->target_unix && !o->tls_no_verify &&
            !o->tls_servername && !o->tls_pin) {
            cli_error("relay --ssl-target to a Unix socket: no host name to check the "
                      "certificate against: give --ssl-servername NAME (or --ssl-no-verify)");
            code = EXIT_USAGE;
        }
        if (code == 0 && o->tls_target && o->ntargets > 1 && !o->tls_no_verify &&
            !o->tls_servername && !o->tls_pin) {
            /* one name is checked (tls.c): the first target's would fail the others */
            cli_error("relay --ssl-target with several targets: give the name every target's "
                      "certificate carries with --ssl-servername NAME (or --ssl-pin, "
                      "--ssl-no-verify)");
            code = EXIT_USAGE;
        }
        return code;
    }

    if (o->cmd == CMD_LISTEN) {
        if (o->zero_io) {
            cli_error("-z probes ports as a client; it cannot be used with listen");
            return EXIT_USAGE;
        }
        /* as ncat: --broker and --chat imply -k (a broker of one client
         * would relay to nobody) */
        if (o->mode == MODE_BROKER || o->mode == MODE_CHAT)
            o->keep_listening = 1;
        int many = o->keep_listening || o->mode != MODE_STDIO || o->model != MODEL_LOOP || o->threads > 1;
        if (many && !o->udp) {
            /* these shape one stdio session; a server's clients end on their own */
            if (o->quit_after_eof_ms >= 0 || o->no_shutdown || o->send_only || o->has_send_oob ||
                o->progress != PROGRESS_OFF || o->hex_dump || o->output ||
                o->delay_ms || o->telnet) {
                cli_error("-q, --no-shutdown, --send-only, --send-oob, --progress, "
                          "--hex-dump, -o, --delay and -t shape one connection; they do not "
                          "apply with -k or a server mode");
                return EXIT_USAGE;
            }
            /* -C (as ncat): stdin goes to the clients with CRLF line ends
             * (-k, --broker, --chat); what clients send is relayed as it is */
            const char *no_crlf =
                !o->crlf ? NULL
                : o->mode == MODE_EXEC ? "--exec/--sh-exec: the program writes to its client "
                  "directly (ncat pipes its output through itself); let it write CRLF line "
                  "ends, e.g. --sh-exec 'CMD | sed \"s/$/\\r/\"'"
                : o->mode == MODE_ECHO ? "--echo: each client gets its own bytes back "
                  "unchanged and stdin takes no part"
                : o->proxy_serve ? "a proxy server: it relays its clients' bytes unchanged"
                : o->no_stdio ? "--no-stdio: -C converts what stdin sends, which it leaves out"
                : o->model == MODEL_FORK || o->model == MODEL_THREAD || o->threads > 1
                    ? "--model fork/thread or --threads: they read no stdin" : NULL;
            if (no_crlf) {
                cli_error("-C converts the LF line ends stdin sends to the clients into CRLF: "
                          "not with %s", no_crlf);
                return EXIT_USAGE;
            }
            /* -w with a server: no traffic for SECS closes that client */
            if (o->timeout_ms && !o->idle_timeout_ms)
                o->idle_timeout_ms = o->timeout_ms;
        }
        /* --inetd: what applies to a listen --exec is checked above (the fuzzer
         * found -z taken when this returned first); check_inetd() did the rest */
        if (o->inetd)
            return 0;
        if (o->unix_path) {
            if (npos > 0) {
                cli_error("unexpected argument '%s' after -U PATH", pos[0]);
                return EXIT_USAGE;
            }
            return check_acl_applies(o) < 0 ? EXIT_USAGE : 0;
        }
        o->host = o->source_addr;
        char hint[300];
        if (npos == 1 && !port_flag && strchr(pos[0], ':') && pos[0][0] != ':' &&
            dx_split_hostport(pos[0], split_buf, sizeof split_buf, &o->host, &o->port) == 0) {
            /* ADDR:PORT as one argument */
        } else if (npos == 2) {
            o->host = pos[0];
            o->port = pos[1];
        } else if (npos == 1) {
            if (port_flag) {
                o->host = pos[0];
                o->port = port_flag;
            } else if (dx_parse_port(pos[0]) < 0 &&
                       is_ip_literal(pos[0], split_buf, sizeof split_buf) &&
                       !*address_hint(pos[0], "listen", hint, sizeof hint)) {
                /* (::1:8080 stays an error: [::1]:8080 was likely meant) */
                /* ncat's `-l ADDR`: an address alone takes the default port */
                o->host = split_buf;
                o->port = DEFAULT_PORT;
                o->port_defaulted = 1;
            } else if (dx_parse_port(pos[0]) < 0 && looks_like_host_name(pos[0]) &&
                       !*address_hint(pos[0], "listen", hint, sizeof hint)) {
                /* ncat's `-l localhost`: a word that is neither a number nor
                 * a service name is a host name, with the default port */
                o->host = pos[0];
                o->port = DEFAULT_PORT;
                o->port_defaulted = 1;
            } else {
                o->port = pos[0];
            }
        } else if (npos == 0 && port_flag) {
            o->port = port_flag;
        } else if (npos == 0) {
            o->port = DEFAULT_PORT; /* as ncat -l; "listening on" shows it */
            o->port_defaulted = 1;
        } else {
            cli_error(npos == 0 ? "listen needs a PORT" : "too many arguments for listen");
            cli_usage_short();
            return EXIT_USAGE;
        }
        if (o->host && o->source_addr && o->host != o->source_addr) {
            cli_error("give the local address once: -s ADDR or ADDR PORT");
            return EXIT_USAGE;
        }
        if (dx_parse_port(o->port) < 0) {
            cli_error("invalid port '%s': expected 0-65535 or a service name%s", o->port,
                      address_hint(o->port, "listen", hint, sizeof hint));
            return EXIT_USAGE;
        }
        return check_local_host("listen address", o->host) < 0
                   ? EXIT_USAGE : 0;
    }

    /* connect */
    o->source_port = port_flag;
    if (port_flag && check_port(port_flag) < 0)
        return EXIT_USAGE;
    if (check_local_host("-s", o->source_addr) < 0)
        return EXIT_USAGE;
    if (o->keep_listening || (o->mode != MODE_STDIO && o->mode != MODE_EXEC) || o->max_conns ||
        o->acl.nallow || o->acl.ndeny || o->model != MODEL_LOOP || o->threads > 1) {
        cli_error("-k, server modes and client limits are for listen (or -l)");
        return EXIT_USAGE;
    }
    /* connect --exec: the program has the connection; nothing of stdio's */
    if (o->mode == MODE_EXEC &&
        (o->crlf || o->hex_dump || o->output || o->tls || o->zero_io || o->recv_only ||
         o->send_only || o->quit_after_eof_ms >= 0 || o->progress != PROGRESS_OFF ||
         o->delay_ms || o->telnet)) {
        cli_error("connect --exec/--sh-exec gives the connection to the program: -C, "
                  "--hex-dump, -o, -q, -d, --send-only, --progress, --delay, -t, -z and --ssl "
                  "do not apply");
        return EXIT_USAGE;
    }
    if (o->unix_path) {
        if (npos > 0) {
            cli_error("unexpected argument '%s' after -U PATH", pos[0]);
            return EXIT_USAGE;
        }
        return 0;
    }
    if (npos == 1 && dx_split_hostport(pos[0], split_buf, sizeof split_buf, &o->host, &o->port) == 0) {
        o->port_args = &o->port;
        o->nport_args = 1;
    } else if (npos >= 2) {
        o->host = pos[0];
        o->port = pos[1];
        o->port_args = (const char **)pos + 1;
        o->nport_args = npos - 1;
        if (npos > 2 && !o->zero_io) {
            cli_error("too many arguments: connect takes HOST PORT (several ports only with -z)");
            return EXIT_USAGE;
        }
    } else if (npos == 1 && host_alone(pos[0], split_buf, sizeof split_buf)) {
        o->host = split_buf; /* as ncat HOST: its default port */
        o->port = DEFAULT_PORT;
        o->port_args = &o->port;
        o->nport_args = 1;
    } else if (npos == 0) {
        cli_error("connect needs HOST [PORT]");
        cli_usage_short();
        return EXIT_USAGE;
    } else {
        char hint[300];
        size_t wlen = strlen(pos[0]);
        if (wlen && strspn(pos[0], "0123456789") == wlen)
            cli_error("connect needs a HOST before PORT %s (duplex connect HOST %s)", pos[0], pos[0]);
        else if (wlen && pos[0][wlen - 1] == ':')
            cli_error("connect needs a PORT after '%s' (without the colon: ncat's port 31337)",
                      pos[0]);
        else
            cli_error("connect needs a PORT after HOST%s", address_hint(pos[0], "connect", hint,
                                                                          sizeof hint));
        cli_usage_short();
        return EXIT_USAGE;
    }
    if (check_target_host("connect", o->host) < 0)
        return EXIT_USAGE;
    for (int i = 0; i < o->nport_args; i++) {
        int first, last;
        if (o->zero_io ? dx_parse_port_range(o->port_args[i], &first, &last) < 0
                       : dx_parse_port(o->port_args[i]) < 0) {
            cli_error("invalid port '%s': expected 0-65535%s or a service name", o->port_args[i],
                      o->zero_io ? ", a range N-M" : "");
            return EXIT_USAGE;
        }
    }
    if (proxy_given && check_proxy_target(o) < 0)
        return EXIT_USAGE;
    return 0;
}
