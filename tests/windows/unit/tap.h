/* tap.h: a minimal TAP (Test Anything Protocol) harness for the Windows unit
 * tests, which are mingw-w64 programs run under wine (make unit-windows).
 *
 * Why not Criterion, as tests/unit/ uses: Debian packages Criterion and
 * cmocka for Linux only, not built for mingw-w64, and nothing may be
 * downloaded here; a harness of a hundred lines does what these tests need.
 *
 * Usage:
 *     static void test_something(void) { CHECK(x == 1); CHECK_INT(f(), -ECONNREFUSED); }
 *     TAP_MAIN(T(test_something), T(test_other))
 * A CHECK that fails prints a diagnostic ("# file:line: ...") and ends that
 * test (return); the test is reported "not ok" and the others still run.
 * Output: "1..N", one "ok K - name" / "not ok K - name" per test, then
 * "# N passed, N failed". The exit status is 1 if any test failed. A
 * watchdog ends the whole program (exit 3) if it runs past TAP_TIMEOUT_S
 * seconds: a hanging test fails the run instead of stopping it.
 */
#ifndef DX_TAP_H
#define DX_TAP_H

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <windows.h>

#ifndef TAP_TIMEOUT_S
#define TAP_TIMEOUT_S 60
#endif

static int tap_test_failed;

static void tap_diag(const char *file, int line, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    printf("# %s:%d: ", file, line);
    vprintf(fmt, ap);
    printf("\n");
    fflush(stdout);
    va_end(ap);
    tap_test_failed = 1;
}

/* A note for the log that does not fail the test. */
__attribute__((unused)) static void tap_note(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    printf("# ");
    vprintf(fmt, ap);
    printf("\n");
    fflush(stdout);
    va_end(ap);
}

#define CHECK(cond)                                                                       \
    do {                                                                                  \
        if (!(cond)) {                                                                    \
            tap_diag(__FILE__, __LINE__, "failed: %s", #cond);                            \
            return;                                                                       \
        }                                                                                 \
    } while (0)

#define CHECK_INT(expr, want)                                                             \
    do {                                                                                  \
        long long tap_got_ = (long long)(expr), tap_want_ = (long long)(want);            \
        if (tap_got_ != tap_want_) {                                                      \
            tap_diag(__FILE__, __LINE__, "%s is %lld, expected %s (%lld)", #expr, tap_got_, \
                     #want, tap_want_);                                                   \
            return;                                                                       \
        }                                                                                 \
    } while (0)

#define CHECK_STR(expr, want)                                                             \
    do {                                                                                  \
        const char *tap_got_ = (expr), *tap_want_ = (want);                               \
        if (!tap_got_ || strcmp(tap_got_, tap_want_) != 0) {                              \
            tap_diag(__FILE__, __LINE__, "%s is \"%s\", expected \"%s\"", #expr,          \
                     tap_got_ ? tap_got_ : "(null)", tap_want_);                          \
            return;                                                                       \
        }                                                                                 \
    } while (0)

struct tap_case {
    const char *name;
    void (*fn)(void);
};

#define T(fn) {#fn, fn}

static DWORD WINAPI tap_watchdog(LPVOID arg)
{
    (void)arg;
    Sleep(TAP_TIMEOUT_S * 1000);
    printf("# timeout: still running after %d s\nBail out! timeout\n", TAP_TIMEOUT_S);
    fflush(stdout);
    ExitProcess(3);
    return 0;
}

static int tap_run(const struct tap_case *cases, int n)
{
    int failed = 0;
    setvbuf(stdout, NULL, _IONBF, 0);
    CreateThread(NULL, 0, tap_watchdog, NULL, 0, NULL);
    printf("1..%d\n", n);
    for (int i = 0; i < n; i++) {
        tap_test_failed = 0;
        cases[i].fn();
        printf("%s %d - %s\n", tap_test_failed ? "not ok" : "ok", i + 1, cases[i].name);
        failed += tap_test_failed;
    }
    printf("# %d passed, %d failed\n", n - failed, failed);
    return failed ? 1 : 0;
}

#define TAP_MAIN(...)                                                                     \
    int main(void)                                                                        \
    {                                                                                     \
        static const struct tap_case cases[] = {__VA_ARGS__};                            \
        return tap_run(cases, (int)(sizeof cases / sizeof cases[0]));                     \
    }

#endif
