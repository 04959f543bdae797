/* fuzz_cli.c: the command line. The input is split on NUL bytes into
 * argv[1..] (argv[0] is "duplex") and handed to cli_parse() from
 * src/cli/options.c. What it accepts must hold together (a connect has a
 * host and a valid port, a listen a valid port, ...).
 * Kept away from anything but parsing: argv[1] "sockets" and "bench" (which
 * list sockets or connect) are skipped, and so is any argument with a '/'
 * (--allowfile/--denyfile would read any file, /dev/stdin or a FIFO
 * included); an argument "acl" is replaced by the path of a rule file made
 * once per process in a temp directory, so --allowfile acl is reachable. stdout and stderr are
 * silenced unless DUPLEX_FUZZ_VERBOSE is set (libFuzzer and the sanitizers
 * report on their own descriptor). */
#define _GNU_SOURCE
#include "cli.h"

#include <getopt.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define CHECK(cond) do { if (!(cond)) abort(); } while (0)
#define MAX_ARGS 64

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static char dir[64], aclpath[96];

static void cleanup(void)
{
    unlink(aclpath);
    rmdir(dir);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    snprintf(dir, sizeof dir, "/tmp/duplex-fuzz-cli-XXXXXX");
    if (!mkdtemp(dir))
        abort();
    snprintf(aclpath, sizeof aclpath, "%s/acl", dir);
    FILE *f = fopen(aclpath, "w");
    if (!f)
        abort();
    fputs("# rules\n10.0.0.0/8\n::1\n\n192.168.1.7 # one host\n", f);
    fclose(f);
    atexit(cleanup);
    cli_acl_no_dns = 1; /* --allow NAME: no DNS query from the fuzzer */
    if (!getenv("DUPLEX_FUZZ_VERBOSE")) {
        FILE *null = fopen("/dev/null", "w");
        if (null) {
            stdout = null;
            stderr = null;
        }
    }
    return 0;
}

static int valid_port(const char *p) { return p && dx_parse_port(p) >= 0; }

static void check_options(const struct options *o)
{
    CHECK(o->cmd == CMD_CONNECT || o->cmd == CMD_LISTEN || o->cmd == CMD_RELAY);
    CHECK(o->family == AF_UNSPEC || o->family == AF_INET || o->family == AF_INET6);
    CHECK(!(o->recv_only && o->send_only));
    CHECK(o->nsockopts >= 0 && o->nsockopts <= MAX_SOCKOPTS);
    for (int i = 0; i < o->nsockopts; i++) {
        CHECK(dx_sockopt_describe(o->sockopts[i].id) != NULL);
        for (int j = 0; j < i; j++)
            CHECK(o->sockopts[i].id != o->sockopts[j].id); /* the last one wins */
    }
    CHECK(o->timeout_ms >= 0 && o->idle_timeout_ms >= 0 && o->quit_after_eof_ms >= -1);
    CHECK(o->max_conns >= 0 && o->threads >= 0 && o->threads <= 256 && o->backlog >= 0);
    CHECK(o->bufsize == 0 || (o->bufsize >= 1024 && o->bufsize <= (64u << 20)));
    CHECK(o->max_queue >= 65536 && o->max_queue <= (1u << 30));
    if (o->unix_path && o->cmd != CMD_RELAY) /* relay takes no -U; its unix:PATH ignores -s */
        CHECK(o->family == AF_UNSPEC && (!o->source_addr || (o->udp && o->cmd == CMD_CONNECT)));
    if (o->udp) {
        /* listen -u -k and --exec, relay -u: a table of peers, always bounded and aged */
        CHECK(!o->has_send_oob && !o->oob_inline && !o->hex_dump && !o->output);
        CHECK(!o->unix_path || !o->zero_io);
        CHECK(!o->zero_io || o->cmd == CMD_CONNECT);
        CHECK(!o->crlf || (o->mode == MODE_STDIO && !o->zero_io));
        CHECK(o->mode == MODE_STDIO || o->mode == MODE_EXEC); /* connect -u --exec: the program has the socket */
        if (o->cmd == CMD_RELAY || (o->cmd == CMD_LISTEN && (o->keep_listening || o->mode == MODE_EXEC)))
            CHECK(o->max_conns > 0 && o->idle_timeout_ms > 0);
        else
            CHECK(!o->max_conns && !o->idle_timeout_ms && !o->keep_listening);
    }
    if (o->mode == MODE_EXEC)
        CHECK(o->exec_cmd && *o->exec_cmd);
    CHECK(o->proxy_dns >= PROXY_DNS_REMOTE && o->proxy_dns <= PROXY_DNS_NONE);
    if (o->proxy_dns != PROXY_DNS_REMOTE) /* --proxy-dns needs -x */
        CHECK(o->proxy_host && o->cmd == CMD_CONNECT);
    if (o->telnet) /* -t: one stream connection's received side */
        CHECK(!o->udp && !o->zero_io && o->cmd != CMD_RELAY && o->mode == MODE_STDIO &&
              !o->keep_listening);
    /* --delay paces stdin on one stream connection */
    if (o->delay_ms)
        CHECK(o->delay_ms > 0 && !o->recv_only && !o->udp && !o->zero_io &&
              o->cmd != CMD_RELAY && o->mode == MODE_STDIO && !o->keep_listening);
    switch (o->cmd) {
    case CMD_CONNECT:
        /* connect --exec/--sh-exec (ncat): the program is the session's only end */
        CHECK(!o->keep_listening && (o->mode == MODE_STDIO || o->mode == MODE_EXEC) &&
              !o->max_conns && o->acl.nallow == 0 && o->acl.ndeny == 0 && o->model == MODEL_LOOP);
        if (o->mode == MODE_EXEC)
            CHECK(!o->crlf && !o->hex_dump && !o->zero_io && !o->tls && !o->recv_only &&
                  !o->send_only && o->quit_after_eof_ms == -1);
        if (o->source_port)
            CHECK(valid_port(o->source_port));
        if (o->unix_path)
            break;
        CHECK(o->host && o->port && o->nport_args >= 1 && o->port_args);
        CHECK(o->nport_args == 1 || o->zero_io);
        for (int i = 0; i < o->nport_args; i++) {
            int a, b;
            CHECK(o->zero_io ? dx_parse_port_range(o->port_args[i], &a, &b) == 0
                             : valid_port(o->port_args[i]));
        }
        break;
    case CMD_LISTEN:
        CHECK(!o->zero_io);
        if (!o->unix_path && !o->inetd)
            CHECK(valid_port(o->port));
        break;
    case CMD_RELAY:
        CHECK(!o->zero_io && o->mode == MODE_STDIO);
        /* relay -u: IP addresses and one target; --inetd: stream sockets only */
        CHECK(!o->udp || (!o->unix_path && !o->target_unix && o->ntargets == 1 && !o->inetd));
        /* a bare listen PORT > 65535 was once taken: tests/fuzz/regressions/fuzz_cli/;
         * relay --inetd has no LISTEN (the client is stdin) */
        CHECK(o->inetd ? !o->port && !o->unix_path : o->unix_path || valid_port(o->port));
        CHECK(o->target_unix || (o->target_host && valid_port(o->target_port)));
        break;
    default:
        break;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > 4096)
        return 0;
    char *copy = malloc(size + 1);
    if (!copy)
        return 0;
    memcpy(copy, data, size);
    copy[size] = '\0';
    char *argv[MAX_ARGS + 2];
    int argc = 0;
    argv[argc++] = "duplex";
    for (size_t i = 0; i < size && argc < MAX_ARGS + 1;) {
        argv[argc++] = copy + i;
        i += strlen(copy + i) + 1;
    }
    argv[argc] = NULL;
    int skip = argc > 1 && (strcmp(argv[1], "sockets") == 0 || strcmp(argv[1], "bench") == 0);
    for (int i = 1; i < argc && !skip; i++)
        skip = strchr(argv[i], '/') != NULL;
    for (int i = 1; i < argc; i++)
        if (strcmp(argv[i], "acl") == 0)
            argv[i] = aclpath;
    if (skip) {
        free(copy);
        return 0;
    }
    /* getopt's state as a fresh process has it: optind = 0 makes glibc
     * forget a half-scanned "-abc" of the previous run (whose text is freed) */
    static char *none[] = {"duplex", NULL};
    optind = 0;
    opterr = 0;
    (void)getopt(1, none, "");
    optind = 1;
    optopt = 0;
    struct options o;
    int rc = cli_parse(argc, argv, &o);
    CHECK(rc == 0 || rc == -1 || rc == EXIT_USAGE || rc == EXIT_RESOLVE); /* 3: an ACL host name */
    if (rc == 0)
        check_options(&o);
    dx_acl_free(&o.acl);
    free(copy);
    return 0;
}
