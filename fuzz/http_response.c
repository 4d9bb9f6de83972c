/* SPDX-License-Identifier: BSD-3-Clause */
/* Copyright (c) nbproxy authors */

/*
 * libFuzzer target: arbitrary bytes into h1_parse_response. The first byte picks the request
 * method (GET, HEAD, CONNECT, POST) and is not part of the response. Asserts: consumed <= len,
 * pointers inside the buffer, status in 100..999, framing consistent with RFC 9112 §6.3.
 */

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "http/h1_parse.h"
#include "platform/err.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char *const methods[] = {"GET", "HEAD", "CONNECT", "POST"};

static void inside(const char *buf, size_t len, const char *p, size_t n)
{
    if (n == 0)
        return;
    if (!p || p < buf || p + n > buf + len)
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct h1_header h[8];
    struct h1_response r = {.headers = h, .max_headers = 8, .max_head = 4096};
    const char *m;
    char *buf;
    size_t i;
    int rc;

    if (size < 1)
        return 0;
    m = methods[data[0] & 3];
    data++;
    size--;
    buf = malloc(size ? size : 1);
    if (!buf)
        return 0;
    memcpy(buf, data, size);
    rc = h1_parse_response(buf, size, m, strlen(m), &r);
    if (rc == NB_E_AGAIN || rc == NB_E_PARSE || rc == NB_E_TOO_BIG)
        goto out;
    if (rc <= 0 || (size_t)rc > size)
        abort();
    if (r.status < 100 || r.status > 999 || r.num_headers > 8)
        abort();
    inside(buf, (size_t)rc, r.reason, r.reason_len);
    for (i = 0; i < r.num_headers; i++) {
        inside(buf, (size_t)rc, h[i].name, h[i].name_len);
        inside(buf, (size_t)rc, h[i].value, h[i].value_len);
    }
    if ((strcmp(m, "HEAD") == 0 || r.status < 200 || r.status == 204 || r.status == 304) &&
        r.body != H1_BODY_NONE)
        abort();
    if (r.body == H1_BODY_TUNNEL && (strcmp(m, "CONNECT") != 0 || r.status / 100 != 2))
        abort();
out:
    free(buf);
    return 0;
}
