/* SPDX-License-Identifier: BSD-3-Clause */
/* Copyright (c) nbproxy authors */

/*
 * libFuzzer target: arbitrary bytes into h1_parse_request, both in one call and fed as a growing
 * buffer through one struct (the incremental path). Asserts: the result is a known code, the
 * consumed length is <= len, every output pointer lies inside the input, both paths agree, and a
 * successful parse has consistent framing.
 */

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "http/h1_parse.h"
#include "platform/err.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void inside(const char *buf, size_t len, const char *p, size_t n)
{
    if (n == 0)
        return;
    if (!p || p < buf || p + n > buf + len)
        abort();
}

static void check(const char *buf, size_t len, const struct h1_request *r, int rc)
{
    size_t i;

    if (rc == NB_E_AGAIN || rc == NB_E_PARSE || rc == NB_E_TOO_BIG)
        return;
    if (rc <= 0 || (size_t)rc > len)
        abort();
    len = (size_t)rc;
    inside(buf, len, r->method, r->method_len);
    inside(buf, len, r->target, r->target_len);
    if (r->method_len == 0 || r->target_len == 0 || r->num_headers > r->max_headers)
        abort();
    if (r->host)
        inside(buf, len, r->host, r->host_len);
    else if (r->minor_version != 0)
        abort();
    for (i = 0; i < r->num_headers; i++) {
        inside(buf, len, r->headers[i].name, r->headers[i].name_len);
        inside(buf, len, r->headers[i].value, r->headers[i].value_len);
        if (r->headers[i].name_len == 0)
            abort();
    }
    if (r->body != H1_BODY_NONE && r->body != H1_BODY_LENGTH && r->body != H1_BODY_CHUNKED)
        abort();
    if (r->body != H1_BODY_LENGTH && r->content_length != 0)
        abort();
    if (memcmp(buf + rc - 4, "\r\n\r\n", 4) != 0)
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct h1_header h[8], h2[8];
    struct h1_request r = {.headers = h, .max_headers = 8, .max_head = 4096};
    struct h1_request inc = {.headers = h2, .max_headers = 8, .max_head = 4096};
    char *buf = malloc(size ? size : 1); /* exact size so ASan catches over-reads */
    size_t k, step = size ? (size_t)data[0] % 7 + 1 : 1;
    int rc, irc = NB_E_AGAIN;

    if (!buf)
        return 0;
    memcpy(buf, data, size);
    rc = h1_parse_request(buf, size, &r);
    check(buf, size, &r, rc);
    /* incremental: stop at the first non-AGAIN result */
    for (k = 0; k <= size && irc == NB_E_AGAIN; k += step) {
        irc = h1_parse_request(buf, k, &inc);
        check(buf, k, &inc, irc);
    }
    if (irc == NB_E_AGAIN)
        irc = h1_parse_request(buf, size, &inc);
    /* the one-shot and incremental parses agree on complete heads */
    if (irc > 0 && rc != irc)
        abort();
    if (rc > 0 && irc != rc)
        abort();
    free(buf);
    return 0;
}
