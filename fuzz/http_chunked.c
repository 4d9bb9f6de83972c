/* SPDX-License-Identifier: BSD-3-Clause */
/* Copyright (c) nbproxy authors */

/*
 * libFuzzer target: arbitrary bytes into h1_chunked_decode, once whole and once split into pieces
 * whose sizes come from the first input byte. Asserts: the decoded length never exceeds the input,
 * leftover bytes are the input's tail, and both feeds decode the same data with the same verdict.
 */

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "http/h1_parse.h"
#include "platform/err.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct h1_chunked a = {0}, b = {0};
    char *buf, *out;
    size_t len, step, pos, olen = 0;
    ssize_t rc, rc2 = NB_E_AGAIN;

    if (size < 1)
        return 0;
    step = (size_t)data[0] % 13 + 1;
    data++;
    size--;
    buf = malloc(size ? size : 1);
    out = malloc(size ? size : 1);
    if (!buf || !out)
        abort();
    memcpy(buf, data, size);
    len = size;
    rc = h1_chunked_decode(&a, buf, &len);
    if (len > size)
        abort();
    if (rc >= 0 &&
        (len + (size_t)rc > size || memcmp(buf + len, data + size - (size_t)rc, (size_t)rc) != 0))
        abort();
    if (rc != NB_E_AGAIN && rc != NB_E_PARSE && rc != NB_E_TOO_BIG && rc < 0)
        abort();

    /* the same input in pieces */
    for (pos = 0; pos < size && rc2 == NB_E_AGAIN; pos += step) {
        size_t n = size - pos < step ? size - pos : step;
        char *piece = malloc(n);

        if (!piece)
            abort();
        memcpy(piece, data + pos, n);
        rc2 = h1_chunked_decode(&b, piece, &n);
        memcpy(out + olen, piece, n);
        olen += n;
        free(piece);
    }
    if (rc == NB_E_AGAIN || rc == NB_E_PARSE || rc == NB_E_TOO_BIG) {
        if (rc2 != rc)
            abort();
    } else if (rc2 < 0) {
        abort();
    }
    if (rc != NB_E_PARSE && rc != NB_E_TOO_BIG && (olen != len || memcmp(out, buf, len) != 0))
        abort();
    free(buf);
    free(out);
    return 0;
}
