/* fuzz-common.c - shared by every harness. */
#include <stdio.h>
#include <stdlib.h>

#include "fuzz.h"

void fz_fail(const char *what, const char *file, int line)
{
    fprintf(stderr, "%s:%d: invariant broken: %s\n", file, line, what);
    abort();
}
