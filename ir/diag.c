#include "diag.h"

#include <stdarg.h>
#include <stdio.h>

void kp_diag_init(KpDiag *d)
{
    d->nerr = 0;
    d->msg[0] = '\0';
}

int kp_error(KpDiag *d, const char *fmt, ...)
{
    if (d && d->nerr++ == 0) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(d->msg, sizeof d->msg, fmt, ap);
        va_end(ap);
    }
    return -1;
}
