/* SPDX-License-Identifier: BSD-3-Clause */
#ifndef NB_PLATFORM_UTF8_H
#define NB_PLATFORM_UTF8_H

/* UTF-8 validation for the writers that must emit valid text (JSON access log, page data). */

#include <stddef.h>

/*
 * Length of the valid UTF-8 sequence at p (n bytes available), or 0 when the byte at p does not
 * start one: overlong forms, surrogates (U+D800..U+DFFF) and code points above U+10FFFF are
 * invalid (RFC 3629).
 */
static inline size_t nb_utf8_seq(const unsigned char *p, size_t n)
{
    unsigned char c = p[0];
    if (c < 0x80)
        return 1;
    size_t len;
    unsigned char lo = 0x80, hi = 0xbf; /* allowed range of the second byte */
    if (c >= 0xc2 && c <= 0xdf) {
        len = 2;
    } else if (c >= 0xe0 && c <= 0xef) {
        len = 3;
        if (c == 0xe0)
            lo = 0xa0;
        else if (c == 0xed)
            hi = 0x9f;
    } else if (c >= 0xf0 && c <= 0xf4) {
        len = 4;
        if (c == 0xf0)
            lo = 0x90;
        else if (c == 0xf4)
            hi = 0x8f;
    } else {
        return 0;
    }
    if (n < len || p[1] < lo || p[1] > hi)
        return 0;
    for (size_t i = 2; i < len; i++)
        if (p[i] < 0x80 || p[i] > 0xbf)
            return 0;
    return len;
}

#endif
