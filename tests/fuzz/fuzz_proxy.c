/* fuzz_proxy.c: what a proxy answers. The first input byte picks the
 * protocol (SOCKS5, SOCKS4, HTTP CONNECT), whether credentials are given
 * and whether the target is a name, an IPv4 or an IPv6 address; the rest is
 * the proxy's side of the conversation, waiting in a socketpair (then end of
 * input) when cli_proxy_handshake() from src/cli/proxy.c runs. It must
 * return 0 or a negative code with a reason, never read past the reply, and
 * never hang (the bytes end, then EOF). */
#define _GNU_SOURCE
#include "cli.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define CHECK(cond) do { if (!(cond)) abort(); } while (0)
#define MAX_REPLY 65536

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1 || size > MAX_REPLY + 1)
        return 0;
    static const int types[] = {PROXY_SOCKS5, PROXY_SOCKS4, PROXY_HTTP};
    static const char *const hosts[] = {"example.org", "192.0.2.7", "2001:db8::7",
                                        "a-long-name.example.org"};
    struct options o;
    memset(&o, 0, sizeof o);
    o.proxy_type = types[(data[0] & 3) % 3];
    o.proxy_auth = data[0] & 4 ? "user:secret" : NULL;
    o.host = hosts[(data[0] >> 3) & 3];
    o.timeout_ms = 2000; /* never reached: the reply ends in EOF */
    int sv[2];
    CHECK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == 0);
    int big = MAX_REPLY * 4;
    setsockopt(sv[0], SOL_SOCKET, SO_SNDBUF, &big, sizeof big);
    setsockopt(sv[1], SOL_SOCKET, SO_RCVBUF, &big, sizeof big);
    size_t n = size - 1;
    CHECK(write(sv[0], data + 1, n) == (ssize_t)n);
    CHECK(shutdown(sv[0], SHUT_WR) == 0);
    char why[512];
    int rc = cli_proxy_handshake(&o, sv[1], 80, why, sizeof why);
    CHECK(rc <= 0);
    CHECK(memchr(why, '\0', sizeof why) != NULL);
    if (rc < 0)
        CHECK(why[0] != '\0'); /* a failure always says why */
    close(sv[0]);
    close(sv[1]);
    return 0;
}
