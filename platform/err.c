/* SPDX-License-Identifier: BSD-3-Clause */
#include "platform/err.h"

#include <stdarg.h>
#include <stdio.h>

const char *nb_strerror(int err)
{
    switch (err) {
    case NB_OK:
        return "ok";
    case NB_E_NOMEM:
        return "out of memory";
    case NB_E_INVAL:
        return "invalid argument";
    case NB_E_PARSE:
        return "malformed input";
    case NB_E_AGAIN:
        return "try again";
    case NB_E_IO:
        return "I/O error";
    case NB_E_CLOSED:
        return "closed";
    case NB_E_NOTFOUND:
        return "not found";
    case NB_E_EXISTS:
        return "already exists";
    case NB_E_TIMEOUT:
        return "timed out";
    case NB_E_DROP:
        return "dropped";
    case NB_E_REPLAY:
        return "replayed";
    case NB_E_STALE:
        return "stale keys";
    case NB_E_EXPIRED:
        return "expired";
    case NB_E_COOKIE:
        return "under load (cookie)";
    case NB_E_RANGE:
        return "out of range";
    case NB_E_ABORTED:
        return "aborted";
    case NB_E_UNSUPPORTED:
        return "unsupported";
    case NB_E_TOO_BIG:
        return "too big";
    default:
        return "unknown error";
    }
}

int nb_errf(char *err, size_t len, int rc, const char *fmt, ...)
{
    if (err && len) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, len, fmt, ap);
        va_end(ap);
    }
    return rc;
}
