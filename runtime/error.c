/*
 * error.c — the error channel of libkarprt: a per-thread last message and
 * the optional karp_error a caller passes in.
 */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "model.h"

static _Thread_local char last_error[1024];

int kp_rt_error(karp_error *err, int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(last_error, sizeof last_error, fmt, ap);
    va_end(ap);
    /* Messages are one line: names from files and dlerror() text could
     * carry control characters. */
    for (char *p = last_error; *p; p++) {
        if ((unsigned char)*p < 0x20 || *p == 0x7f)
            *p = ' ';
    }
    if (err) {
        err->code = code;
        memcpy(err->message, last_error, sizeof err->message);
    }
    return code;
}

void kp_rt_clear_error(void)
{
    last_error[0] = '\0';
}

const char *karp_last_error(void)
{
    return last_error;
}

const char *karp_strerror(int code)
{
    switch (code) {
    case KARP_OK: return "KARP_OK";
    case KARP_EINVAL: return "KARP_EINVAL";
    case KARP_EIO: return "KARP_EIO";
    case KARP_EFORMAT: return "KARP_EFORMAT";
    case KARP_EABI: return "KARP_EABI";
    case KARP_ECPU: return "KARP_ECPU";
    case KARP_ENOMEM: return "KARP_ENOMEM";
    case KARP_EMODEL: return "KARP_EMODEL";
    case KARP_ECOMPILE: return "KARP_ECOMPILE";
    case KARP_EUNSUPPORTED: return "KARP_EUNSUPPORTED";
    case KARP_ENUMERIC: return "KARP_ENUMERIC";
    default: return "KARP_E(unknown)";
    }
}
