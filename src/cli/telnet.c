/* telnet.c: -t/--telnet (ncat's): answer a Telnet server's option
 * negotiation by refusing every option (DO x -> WONT x, WILL x -> DONT x)
 * and keep the Telnet commands out of stdout, so that a script can talk to
 * a Telnet service as to a plain line protocol. RFC 854/855: IAC IAC is a
 * data byte 255; IAC SB ... IAC SE, IAC DO/DONT/WILL/WONT x and the
 * two-byte commands (NOP, GA, ...) are removed. DONT and WONT get no answer
 * (RFC 1143: we already refuse everything, so they change nothing). The
 * parser keeps its state across reads: a command cut between two reads is
 * still recognised. What stdin sends is not changed (a byte 255 from stdin
 * is not doubled), as with ncat.
 * ncat 7.93 differs: it answers only at the start of a read (and answers
 * DONT/WONT too), and writes the commands to stdout unchanged. */
#define _GNU_SOURCE
#include "cli.h"
#include "os.h"

#include <errno.h>
#include <string.h>

enum { IAC = 255, DONT = 254, DO = 253, WONT = 252, WILL = 251, SB = 250, SE = 240 };
enum { T_DATA, T_IAC, T_OPTION, T_SB, T_SB_IAC };

/* Send what is queued; what the socket does not take now waits for the
 * next read (answers are a few bytes; a peer that does not read them
 * sends no more negotiation either). */
static void flush_replies(struct cli_telnet *t, int fd)
{
    while (t->nreply > 0) {
        ssize_t k = dx__sock_send(fd, t->reply, t->nreply, 0);
        if (k <= 0)
            return; /* EAGAIN, or the connection's end, which the pumps see */
        memmove(t->reply, t->reply + k, t->nreply - (size_t)k);
        t->nreply -= (size_t)k;
    }
}

static void reply(struct cli_telnet *t, unsigned char verb, unsigned char option)
{
    if (t->nreply + 3 > sizeof t->reply)
        return; /* a flood of negotiation the peer does not read back */
    t->reply[t->nreply++] = IAC;
    t->reply[t->nreply++] = verb;
    t->reply[t->nreply++] = option;
    if (t->sent)
        t->sent(t->sent_data, (const char *)t->reply + t->nreply - 3, 3);
}

size_t cli_telnet_filter(struct cli_telnet *t, int fd, const char *in, size_t n, char *out)
{
    size_t m = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)in[i];
        switch (t->state) {
        case T_DATA:
            if (c == IAC)
                t->state = T_IAC;
            else
                out[m++] = (char)c;
            break;
        case T_IAC:
            if (c == IAC) {
                out[m++] = (char)c; /* an escaped 255 */
                t->state = T_DATA;
            } else if (c >= WILL && c <= DONT) {
                t->verb = c;
                t->state = T_OPTION;
            } else if (c == SB) {
                t->state = T_SB;
            } else {
                t->state = T_DATA; /* NOP, GA, DM, ...: nothing to answer */
            }
            break;
        case T_OPTION:
            if (t->verb == DO)
                reply(t, WONT, c);
            else if (t->verb == WILL)
                reply(t, DONT, c);
            t->state = T_DATA;
            break;
        case T_SB: /* a subnegotiation for an option we refused: skipped */
            if (c == IAC)
                t->state = T_SB_IAC;
            break;
        case T_SB_IAC:
            t->state = c == SE ? T_DATA : T_SB; /* IAC IAC inside: a data byte */
            break;
        }
    }
    flush_replies(t, fd);
    return m;
}
