/* error.c - the livemig_error object: first failure wins. */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "livemig/livemig.h"

static void verror(livemig_error *err, const char *cls, const char *fmt,
                   va_list ap)
{
    if (!err || livemig_error_is_set(err))
        return;
    err->cls = cls;
    vsnprintf(err->desc, sizeof(err->desc), fmt, ap);
    if (!err->desc[0])
        snprintf(err->desc, sizeof(err->desc), "unknown error");
}

void livemig_error_set(livemig_error *err, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    verror(err, "GenericError", fmt, ap);
    va_end(ap);
}

void livemig_error_set_class(livemig_error *err, const char *cls,
                             const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    verror(err, cls, fmt, ap);
    va_end(ap);
}

void livemig_error_clear(livemig_error *err)
{
    if (err) {
        err->cls = NULL;
        err->desc[0] = '\0';
    }
}

bool livemig_error_is_set(const livemig_error *err)
{
    return err && err->cls != NULL;
}
