/* fuzz_proxy.c: what a proxy answers. The first input byte picks the
 * protocol (SOCKS5, SOCKS4, HTTP CONNECT), whether credentials are given
 * and whether the target is a name, an IPv4 or an IPv6 address; the rest is
 * the proxy's side of the conversation, waiting in a socketpair (then end of
 * input) when cli_proxy_handshake() from src/cli/proxy.c runs. It must
 * return 0 or a negative code with a reason, never read past the reply, and
 * never hang (the bytes end, then EOF). An HTTP CONNECT it accepts has a
 * 2xx status line by the grammar (`HTTP/1.1 2000` is no 200), and the bytes
 * after the reply's empty line are left in the socket, all of them. A 407
 * with credentials given is answered (Basic or Digest) on the same socket
 * when the reply's body has a Content-Length, and fails otherwise (no
 * second connection here). */
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

/* Checked here independently of proxy.c: the reply starts with a status
 * line `HTTP/1.D 2DD` then a space or the line end. Returns where the head
 * ends (after the empty line), or 0 when the reply is not an accepted one. */
static size_t http_ok_head(const uint8_t *p, size_t n)
{
    const uint8_t *nl = memchr(p, '\n', n);
    if (!nl)
        return 0;
    size_t line = (size_t)(nl - p);
    if (line > 0 && p[line - 1] == '\r')
        line--;
    if (line < 12 || memcmp(p, "HTTP/1.", 7) != 0 || p[7] < '0' || p[7] > '9' || p[8] != ' ' ||
        p[9] != '2' || p[10] < '0' || p[10] > '9' || p[11] < '0' || p[11] > '9' ||
        (line > 12 && p[12] != ' '))
        return 0;
    for (size_t i = (size_t)(nl - p) + 1; i < n; i++) {
        if (p[i] == '\n' && (p[i - 1] == '\n' || (p[i - 1] == '\r' && p[i - 2] == '\n')))
            return i + 1;
    }
    return 0;
}

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
    /* after a 407 (with credentials) the reply that counts is a later one */
    int first_407 = n >= 12 && memcmp(data + 1 + 9, "407", 3) == 0;
    if (rc == 0 && o.proxy_type == PROXY_HTTP && !first_407) {
        size_t head = http_ok_head(data + 1, n);
        CHECK(head > 0);
        static char rest[MAX_REPLY];
        size_t got = 0;
        ssize_t k;
        while ((k = read(sv[1], rest + got, sizeof rest - got)) > 0)
            got += (size_t)k;
        CHECK(got == n - head && memcmp(rest, data + 1 + head, got) == 0);
    }
    close(sv[0]);
    close(sv[1]);
    return 0;
}
