/* SPDX-License-Identifier: BSD-3-Clause */
/* Copyright (c) nbproxy authors */

/*
 * libFuzzer target: arbitrary first bytes of a connection into l4_sni_peek, in one call and as a
 * growing buffer (the router's incremental path), and into l4_sni_peek_finish. Asserts: only
 * NB_OK / NB_E_AGAIN (finish: NB_OK / NB_E_CLOSED); NB_E_AGAIN exactly when the record header or
 * the announced record is incomplete; peeked is 5 or 5 + record length and <= len; the SNI lies
 * inside the peeked record, is 1..253 bytes without NUL; not-TLS iff byte 0 != 22; the first
 * decision on a prefix is the one-shot decision; finish agrees with the peek.
 */

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "l4/sni_peek.h"
#include "platform/err.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static size_t record_need(const uint8_t *buf, size_t len)
{
    size_t rec;

    if (len < 5)
        return 5;
    if (buf[0] != 22)
        return 5;
    rec = (size_t)buf[3] << 8 | buf[4];
    return rec == 0 || rec > L4_TLS_MAX_RECORD ? 5 : 5 + rec;
}

static void check(const uint8_t *buf, size_t len, const struct l4_sni_result *r, int rc)
{
    size_t need = record_need(buf, len);

    if (rc == NB_E_AGAIN) {
        if (len >= need)
            abort();
        return;
    }
    if (rc != NB_OK || len < need || r->peeked != need)
        abort();
    if ((r->kind == L4_NOT_TLS) != (buf[0] != L4_TLS_CONTENT_HANDSHAKE))
        abort();
    if (r->kind == L4_TLS_SNI) {
        if (!r->sni || r->sni_len == 0 || r->sni_len > L4_SNI_MAX)
            abort();
        if (r->sni < buf + 5 + 4 || r->sni + r->sni_len > buf + r->peeked)
            abort();
        if (memchr(r->sni, 0, r->sni_len))
            abort();
    } else if (r->kind == L4_TLS_NO_SNI || r->kind == L4_NOT_TLS) {
        if (r->sni || r->sni_len)
            abort();
    } else {
        abort();
    }
    if (need == 5 && r->alpn_acme_only)
        abort();
}

static int same(const struct l4_sni_result *a, const struct l4_sni_result *b)
{
    return a->kind == b->kind && a->sni == b->sni && a->sni_len == b->sni_len &&
           a->alpn_acme_only == b->alpn_acme_only && a->peeked == b->peeked;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct l4_sni_result r, inc, fin;
    uint8_t *buf = malloc(size ? size : 1); /* exact size so ASan catches over-reads */
    size_t k, step = size ? (size_t)data[size - 1] % 13 + 1 : 1;
    int rc, irc = NB_E_AGAIN, frc;

    if (!buf)
        return 0;
    memcpy(buf, data, size);
    rc = l4_sni_peek(buf, size, &r);
    check(buf, size, &r, rc);
    /* incremental: the first decision is final and equals the one-shot one */
    for (k = 0; k <= size && irc == NB_E_AGAIN; k += step) {
        irc = l4_sni_peek(buf, k, &inc);
        check(buf, k, &inc, irc);
    }
    if (irc == NB_E_AGAIN)
        irc = l4_sni_peek(buf, size, &inc);
    if (irc != rc || (rc == NB_OK && !same(&r, &inc)))
        abort();
    /* a read that ends here */
    frc = l4_sni_peek_finish(buf, size, &fin);
    if (size < 5) {
        if (frc != NB_E_CLOSED)
            abort();
    } else if (frc != NB_OK) {
        abort();
    } else if (rc == NB_OK) {
        if (!same(&r, &fin))
            abort();
    } else if (fin.kind != L4_TLS_NO_SNI || fin.peeked != size || fin.sni || fin.alpn_acme_only) {
        abort();
    }
    free(buf);
    return 0;
}
