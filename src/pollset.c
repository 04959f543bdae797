/* pollset.c: the dense pollfd array that the poll(2) backend and the
 * WSAPoll backend (Windows) hand to the system: an fd -> slot map finds an
 * fd's entry, and removal moves the last entry into the hole. Each entry
 * has a byte beside it for the backend (WSAPoll: "connecting"), moved along
 * with it. */
#define _POSIX_C_SOURCE 200809L
#include "internal.h"
#include "os.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#ifndef _WIN32
#include <poll.h>
#endif

int dx__pollset_find(const struct dx__pollset *ps, int fd)
{
    return fd < ps->nslot ? ps->slot[fd] : -1;
}

int dx__pollset_add(struct dx__pollset *ps, int fd)
{
    if (fd >= ps->nslot) {
        int n = ps->nslot ? ps->nslot : 64;
        while (n <= fd)
            n *= 2;
        int *slot = realloc(ps->slot, (size_t)n * sizeof *slot);
        if (!slot)
            return -ENOMEM;
        for (int i = ps->nslot; i < n; i++)
            slot[i] = -1;
        ps->slot = slot;
        ps->nslot = n;
    }
    if (ps->n == ps->cap) {
        int cap = ps->cap ? ps->cap * 2 : 64;
        struct pollfd *p = realloc(ps->pfds, (size_t)cap * sizeof *p);
        if (!p)
            return -ENOMEM;
        ps->pfds = p;
        unsigned char *t = realloc(ps->tag, (size_t)cap);
        if (!t)
            return -ENOMEM; /* pfds grew: cap is raised once both have */
        ps->tag = t;
        ps->cap = cap;
    }
    int i = ps->n++;
#ifdef _WIN32
    ps->pfds[i].fd = (SOCKET)(intptr_t)fd;
#else
    ps->pfds[i].fd = fd;
#endif
    ps->pfds[i].events = 0;
    ps->pfds[i].revents = 0;
    ps->tag[i] = 0;
    ps->slot[fd] = i;
    return i;
}

void dx__pollset_remove(struct dx__pollset *ps, int i)
{
    int fd = (int)ps->pfds[i].fd;
    ps->n--;
    ps->pfds[i] = ps->pfds[ps->n];
    ps->tag[i] = ps->tag[ps->n];
    if (i < ps->n)
        ps->slot[(int)ps->pfds[i].fd] = i;
    ps->slot[fd] = -1;
}

void dx__pollset_free(struct dx__pollset *ps)
{
    free(ps->pfds);
    free(ps->tag);
    free(ps->slot);
    memset(ps, 0, sizeof *ps);
}
