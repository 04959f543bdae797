/* main.c: the duplex command: parse the command line, dispatch to a
 * subcommand, turn its result into the documented exit status. */
#define _GNU_SOURCE
#include "cli.h"

int main(int argc, char **argv)
{
    struct options o;
    int rc = cli_parse(argc, argv, &o);
    if (rc < 0)
        return EXIT_OK; /* --help or --version */
    if (rc > 0)
        return rc;
    cli_process_init();
    return o.cmd == CMD_LISTEN ? cli_listen(&o) : cli_connect(&o);
}
