/* SPDX-License-Identifier: BSD-3-Clause */
#ifndef NB_PLATFORM_ERR_H
#define NB_PLATFORM_ERR_H

#include <stddef.h>

/*
 * One status type for the whole tree (house style §8.14-16). NB_OK is zero; every failure is a
 * distinct negative value that tells the caller what to do.
 */
enum nb_err {
    NB_OK = 0,
    NB_E_NOMEM = -1,    /* allocation or pool exhausted: shed load */
    NB_E_INVAL = -2,    /* bad argument or configuration */
    NB_E_PARSE = -3,    /* malformed input: drop / reject */
    NB_E_AGAIN = -4,    /* incomplete input or would block: try again later */
    NB_E_IO = -5,       /* system call failed (errno is kept by the caller) */
    NB_E_CLOSED = -6,   /* the stream or object is closed */
    NB_E_NOTFOUND = -7, /* lookup missed */
    NB_E_EXISTS = -8,   /* already present */
    NB_E_TIMEOUT = -9,  /* deadline passed */
    NB_E_DROP = -10,    /* packet rejected (auth, replay, state): drop silently, count */
    NB_E_REPLAY = -11,  /* replayed counter or timestamp */
    NB_E_STALE = -12,   /* keys need renewing (rekey) */
    NB_E_EXPIRED = -13, /* keys too old to use */
    NB_E_COOKIE = -14,  /* under load: answer with a cookie reply instead */
    NB_E_RANGE = -15,   /* value out of range */
    NB_E_ABORTED = -16, /* the callee tore itself down; do not touch the object */
    NB_E_UNSUPPORTED = -17,
    NB_E_TOO_BIG = -18, /* input over a size or count limit (HTTP 431): reject, close */
};

/* Short human-readable name for an nb_err value ("ok", "no memory", ...). */
const char *nb_strerror(int err);

/*
 * Writes a formatted reason into err (NUL-terminated, truncated to len; nothing when err is NULL
 * or len is 0) and returns rc: `return nb_errf(err, errlen, NB_E_INVAL, "bad port %d", p);`.
 */
int nb_errf(char *err, size_t len, int rc, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

#endif
