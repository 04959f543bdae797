/* fuzz_cluster.c: the frames a node reads from its Redis channel
 * (cli_cluster_frame_parse, src/cli/cluster_frame.c): anyone who can PUBLISH
 * there writes them. A frame that parses must have a 16-hex-digit node, a
 * payload inside the input that ends it, none for a heartbeat, and a head
 * that cli_cluster_frame_head writes back byte for byte (so nothing but
 * the canonical form is taken). The input as text also goes through the
 * --cluster URL parser, whose fields must be NUL-terminated within bounds,
 * rediss:// set for TLS only and ?cacert= taken only with it. */
#define _GNU_SOURCE
#include "cli.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define CHECK(cond) do { if (!(cond)) abort(); } while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *buf = (const char *)data;
    struct cluster_frame f;
    if (cli_cluster_frame_parse(buf, size, &f) == 0) {
        CHECK(f.type == CLUSTER_MSG || f.type == CLUSTER_BEAT);
        CHECK(strlen(f.node) == CLUSTER_ID_LEN);
        CHECK(f.payload >= buf && f.payload + f.n == buf + size);
        CHECK(f.type == CLUSTER_MSG || f.n == 0);
        char head[64];
        size_t hn = cli_cluster_frame_head(head, sizeof head, f.type, f.node, f.seq);
        CHECK(hn == (size_t)(f.payload - buf) && memcmp(head, buf, hn) == 0);
    }
    char *text = malloc(size + 1);
    if (!text)
        return 0;
    memcpy(text, data, size);
    text[size] = '\0';
    struct cluster_url u;
    const char *why;
    if (cli_cluster_url_parse(text, &u, &why) == 0) {
        CHECK(memchr(u.host, 0, sizeof u.host) && u.host[0]);
        CHECK(memchr(u.channel, 0, sizeof u.channel) && u.channel[0]);
        CHECK(memchr(u.user, 0, sizeof u.user) && memchr(u.pass, 0, sizeof u.pass));
        CHECK(atoi(u.port) >= 1 && atoi(u.port) <= 65535);
        CHECK(memchr(u.cacert, 0, sizeof u.cacert));
        CHECK(u.tls == (strncmp(text, "rediss://", 9) == 0));
        CHECK(u.tls || !u.cacert[0]);
    } else {
        CHECK(why != NULL);
    }
    free(text);
    return 0;
}
