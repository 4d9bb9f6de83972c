/* SPDX-License-Identifier: BSD-3-Clause */
/* Copyright (c) nbproxy authors */

/*
 * libFuzzer target: arbitrary first bytes of a connection into tls_hello_parse, in one call and
 * as a growing buffer (the TLS stream's incremental path), plus tls_hello_alpn_select and
 * tls_hello_looks_like_http on the result. Asserts: only NB_OK / NB_E_AGAIN / NB_E_PARSE /
 * NB_E_TOO_BIG; on NB_OK the hello took 5 < len <= size bytes, the SNI is NUL-terminated,
 * lower-case printable ASCII of at most TLS_HELLO_MAX_SNI bytes, the ALPN list is well formed
 * (non-empty names that exactly fill alpn_len); a decision other than NB_E_AGAIN on a prefix is
 * the decision on the whole input; the selected ALPN name is one the client offered.
 */

#include <stdlib.h>
#include <string.h>

#include "platform/err.h"
#include "tls/hello.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check(int rc, const struct tls_hello *h, size_t len)
{
    size_t i, n;

    if (rc == NB_E_AGAIN || rc == NB_E_PARSE || rc == NB_E_TOO_BIG)
        return;
    if (rc != NB_OK || h->len <= 5 || h->len > len || h->len > TLS_HELLO_MAX)
        abort();
    n = strnlen(h->sni, sizeof h->sni);
    if (n > TLS_HELLO_MAX_SNI)
        abort();
    for (i = 0; i < n; i++)
        if (h->sni[i] <= ' ' || h->sni[i] > '~' || (h->sni[i] >= 'A' && h->sni[i] <= 'Z'))
            abort();
    if (h->alpn_len > TLS_HELLO_MAX_ALPN || (!h->has_alpn && h->alpn_len))
        abort();
    for (i = 0; i < h->alpn_len; i += 1 + (size_t)h->alpn[i])
        if (h->alpn[i] == 0)
            abort();
    if (i != h->alpn_len)
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const char *const server[] = {"h2", "http/1.1", "acme-tls/1"};
    struct tls_hello h, inc;
    uint8_t *buf = malloc(size ? size : 1); /* exact size so ASan catches over-reads */
    size_t k, step = size ? (size_t)data[size - 1] % 29 + 1 : 1;
    const char *sel;
    bool refuse;
    int rc, irc = NB_E_AGAIN;

    if (!buf)
        return 0;
    memcpy(buf, data, size);
    if (step < size / 64) /* bounded work per input: at most ~64 prefixes */
        step = size / 64;
    rc = tls_hello_parse(buf, size, &h);
    check(rc, &h, size);
    for (k = 0; k < size && irc == NB_E_AGAIN; k += step) {
        irc = tls_hello_parse(buf, k, &inc);
        check(irc, &inc, k);
    }
    /* a prefix only decides what the whole input decides */
    if (irc != NB_E_AGAIN && (irc != rc || (rc == NB_OK && inc.len != h.len)))
        abort();
    if (size >= 5)
        (void)tls_hello_looks_like_http(buf, size);
    if (rc == NB_OK) {
        sel = tls_hello_alpn_select(&h, server, 3, &refuse);
        if (sel) {
            size_t sl = strlen(sel), i;
            int found = 0;

            if (refuse)
                abort();
            for (i = 0; i < h.alpn_len; i += 1 + (size_t)h.alpn[i])
                if (h.alpn[i] == sl && memcmp(h.alpn + i + 1, sel, sl) == 0)
                    found = 1;
            if (!found)
                abort();
        }
    }
    free(buf);
    return 0;
}
