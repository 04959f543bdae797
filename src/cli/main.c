/* main.c: the duplex command: parse the command line, make the event loop,
 * dispatch to a subcommand, turn its result into the documented exit status. */
#define _GNU_SOURCE
#include "cli.h"
#include "os.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

int main(int argc, char **argv)
{
    /* before any socket (WSAStartup on Windows) */
    int err = dx__os_init();
    if (err < 0) {
        cli_error("cannot start the network layer: %s", dx_strerror(err));
        return EXIT_IO;
    }
    /* `duplex sockets` has flags of its own (-l, -n, -p, -e mean other things) */
    if (argc > 1 && strcmp(argv[1], "sockets") == 0)
        return cli_sockets_main(argc - 1, argv + 1);
    /* `duplex bench` too (-c, -d, -w, -p, -s mean other things) */
    if (argc > 1 && strcmp(argv[1], "bench") == 0)
        return cli_bench_main(argc - 1, argv + 1);

    struct options o;
    int rc = cli_parse(argc, argv, &o);
    if (rc != 0) {
        dx_acl_free(&o.acl);
        return rc < 0 ? EXIT_OK : rc; /* rc < 0: --help or --version */
    }
    /* first: the system's sockets are fds 3..; nothing opened may take them */
    rc = cli_activation_init(&o);
    if (rc != 0) {
        dx_acl_free(&o.acl);
        return rc;
    }
    if (DX_OS_WINDOWS && o.model == MODEL_FORK) {
        cli_error("--model fork is not available on %s (use --model thread)", DX_OS_NAME);
        dx_acl_free(&o.acl);
        return EXIT_USAGE;
    }
    rc = cli_filters_open(&o); /* before connecting: a bad path fails at once */
    if (rc == 0)
        rc = cli_tls_open(&o); /* the same for certificates and keys */
    if (rc == 0)
        rc = exec_check(&o); /* and for an --exec program that cannot be run */
    if (rc != 0) {
        dx_acl_free(&o.acl);
        return rc;
    }
    if (o.inetd && o.cmd == CMD_LISTEN) {
        rc = exec_inetd(&o); /* returns only when the program could not be run */
        dx_acl_free(&o.acl);
        return rc;
    }
    if (o.pty_link && (rc = cli_pty_open(&o)) != 0) {
        dx_acl_free(&o.acl);
        return rc;
    }
    cli_process_init();
    if (o.recv_only)
        cli_stdin_never_read(); /* -d: not a byte of stdin is taken */

    dx_loop *loop = dx_loop_new(o.backend, &err);
    if (!loop) {
        const char *name = o.backend ? o.backend : getenv("DUPLEX_BACKEND");
        cli_error("event loop backend '%s': %s", name ? name : "(default)",
                  err == -ENOENT ? "unknown or unavailable (try epoll, poll or io_uring)" : dx_strerror(err));
        cli_tls_close();
        cli_pty_close();
        return EXIT_USAGE;
    }
    cli_signals_watch(loop);
    if (o.udp && o.zero_io)
        rc = cli_udp_probe(&o, loop);
    else if (o.udp && o.cmd == CMD_RELAY)
        rc = cli_relay_udp(&o, loop);
    else if (o.udp)
        rc = o.cmd == CMD_CONNECT ? cli_udp_connect(&o, loop) : cli_udp_listen(&o, loop);
    else if (o.cmd == CMD_CONNECT)
        rc = cli_connect(&o, loop);
    else if (o.cmd == CMD_RELAY)
        rc = cli_relay(&o, loop);
    else if (o.proxy_serve)
        rc = cli_proxy_serve(&o, loop);
    else if (o.keep_listening || o.mode != MODE_STDIO || o.model != MODEL_LOOP || o.threads > 1)
        rc = cli_serve(&o, loop);
    else
        rc = cli_listen_once(&o, loop);
    cli_pty_drain();
    if (cli_stop_signal())
        rc = EXIT_SIGNAL + cli_stop_signal();
    cli_signals_unwatch(loop);
    dx_loop_free(loop);
    cli_tls_close();
    cli_pty_close();
    dx_acl_free(&o.acl);
    return rc;
}
