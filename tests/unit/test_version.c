/* test_version.c: dx_version() and dx_version_number() agree with the header's
 * DX_VERSION, DX_VERSION_NUMBER and with each other. */
#define _GNU_SOURCE
#include "helpers.h"

Test(version, string_and_number_agree)
{
    cr_assert_str_eq(dx_version(), DX_VERSION);
    cr_assert_eq(dx_version_number(), DX_VERSION_NUMBER);
    int major, minor, patch, end = 0;
    cr_assert_eq(sscanf(dx_version(), "%d.%d.%d%n", &major, &minor, &patch, &end), 3);
    cr_assert_eq((size_t)end, strlen(dx_version()), "no suffix after MAJOR.MINOR.PATCH");
    cr_assert_eq(major, DX_VERSION_MAJOR);
    cr_assert_eq(minor, DX_VERSION_MINOR);
    cr_assert_eq(patch, DX_VERSION_PATCH);
    cr_assert_eq(dx_version_number(), major * 10000 + minor * 100 + patch);
}
