/* sockets_win32.c: `duplex sockets` on Windows (sockets.c on Linux reads
 * the kernel's tables through netlink and /proc, which Windows lacks; its
 * own lister, GetExtendedTcpTable, is not written yet): refused, naming the
 * platform. */
#include "cli.h"
#include "os.h"

int cli_sockets_main(int argc, char **argv)
{
    (void)argc, (void)argv;
    cli_error("sockets is not available on %s (it reads Linux's socket tables; "
              "use netstat -ano)", DX_OS_NAME);
    return EXIT_USAGE;
}
