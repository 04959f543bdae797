/* hello.c: the smallest program built against an installed libduplex with
 * nothing but `pkg-config --cflags --libs duplex` (tests/pkg/install.sh).
 * It runs a loop with one timer and checks the library's version. */
#include <duplex.h>

#include <stdio.h>
#include <string.h>

static void on_timer(dx_loop *loop, dx_timer *t)
{
    int *fired = t->data;
    *fired = 1;
    dx_loop_stop(loop);
}

int main(void)
{
    int err = 0, fired = 0;
    dx_loop *loop = dx_loop_new(NULL, &err);
    if (!loop) {
        fprintf(stderr, "dx_loop_new: %s\n", dx_strerror(err));
        return 1;
    }
    dx_timer t;
    dx_timer_init(&t, on_timer, &fired);
    dx_timer_start(loop, &t, 1, 0);
    int rc = dx_loop_run(loop);
    printf("libduplex %s (%d) backend %s timer %d\n", dx_version(), dx_version_number(),
           dx_loop_backend(loop), fired);
    dx_loop_free(loop);
    return rc < 0 || !fired || strcmp(dx_version(), DX_VERSION) != 0;
}
