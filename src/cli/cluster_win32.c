/* cluster_win32.c: --cluster on Windows: options.c refuses it (the Redis
 * client, libhiredis, is not in the Windows build); these keep serve.c's
 * calls linking. */
#include "cli.h"

struct cluster *cluster_open(const struct options *o, dx_loop *loop,
                             void (*deliver)(void *data, const char *msg, size_t n),
                             void (*drained)(void *data), void *data, int *exit_code)
{
    (void)o, (void)loop, (void)deliver, (void)drained, (void)data;
    cli_error("--cluster is not available on Windows (no Redis client in this build)");
    *exit_code = EXIT_USAGE;
    return NULL;
}

void cluster_publish(struct cluster *cl, const char *data, size_t n) { (void)cl, (void)data, (void)n; }
int cluster_full(const struct cluster *cl) { (void)cl; return 0; }
void cluster_close(struct cluster *cl) { (void)cl; }
