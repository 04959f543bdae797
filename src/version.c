/* version.c: the library's version at run time (a program linked against the
 * shared library may run with a newer one than its DX_VERSION). */
#include "duplex.h"

const char *dx_version(void) { return DX_VERSION; }

int dx_version_number(void) { return DX_VERSION_NUMBER; }
