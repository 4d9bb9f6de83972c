/* SPDX-License-Identifier: BSD-3-Clause */
/* Copyright (c) nbproxy authors */

/*
 * libFuzzer target: the gRPC wire helpers of mgmt/grpc_frame.h.
 *   - The message-prefix decoder over the input (after a 2-byte header choosing the size cap and
 *     a piece size), once whole and once in pieces. Asserts: consumed <= given, DATA points into
 *     the input, each message gets exactly its announced length, END only at a full message,
 *     the cap is honoured, and both feeds yield the same messages and the same verdict.
 *   - grpc-status, grpc-message, grpc-timeout and content-type parsers over the same bytes.
 *     Asserts: codes stay in 0..16, decoded messages are NUL-terminated, within the buffer and
 *     free of control bytes, and a parsed timeout re-encodes to a value that parses back to at
 *     least the same number of milliseconds.
 */

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "mgmt/grpc_frame.h"
#include "platform/err.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

struct digest {
    size_t nmsg;
    uint64_t hash; /* FNV-1a over every message's length and bytes */
    int rc;
};

static void run(const uint8_t *in, size_t len, uint32_t max, size_t step, struct digest *out)
{
    struct mgmt_grpc_dec d = {.max_len = max};
    uint32_t want = 0, have = 0;
    bool in_msg = false;
    uint64_t h = 1469598103934665603ull;
    size_t off = 0;

    memset(out, 0, sizeof *out);
    while (off < len) {
        size_t piece = len - off < step ? len - off : step;
        const uint8_t *p = in + off;
        size_t left = piece;
        for (;;) {
            struct mgmt_grpc_dec_ev ev;
            ssize_t r = mgmt_grpc_dec_feed(&d, p, left, &ev);
            if (r < 0) {
                if (r != NB_E_UNSUPPORTED && r != NB_E_PARSE && r != NB_E_TOO_BIG)
                    abort();
                out->rc = (int)r;
                out->hash = h;
                return;
            }
            if ((size_t)r > left)
                abort();
            p += r;
            left -= (size_t)r;
            if (ev.kind == MGMT_GRPC_DEC_NONE) {
                if (left != 0)
                    abort();
                break;
            }
            switch (ev.kind) {
            case MGMT_GRPC_DEC_BEGIN:
                if (in_msg || ev.msg_len > (max ? max : MGMT_GRPC_MAX_MESSAGE))
                    abort();
                in_msg = true;
                want = ev.msg_len;
                have = 0;
                for (int i = 0; i < 4; i++)
                    h = (h ^ (uint8_t)(want >> (8 * i))) * 1099511628211ull;
                break;
            case MGMT_GRPC_DEC_DATA:
                if (!in_msg || ev.len == 0 || ev.data < in || ev.data + ev.len > in + len ||
                    have + ev.len > want)
                    abort();
                have += (uint32_t)ev.len;
                for (size_t i = 0; i < ev.len; i++)
                    h = (h ^ ev.data[i]) * 1099511628211ull;
                break;
            case MGMT_GRPC_DEC_END:
                if (!in_msg || have != want || r != 0)
                    abort();
                in_msg = false;
                out->nmsg++;
                break;
            default:
                abort();
            }
        }
        off += piece;
    }
    if (mgmt_grpc_dec_at_boundary(&d) && in_msg)
        abort();
    out->hash = h;
    out->rc = NB_OK;
}

static void strings(const uint8_t *data, size_t size)
{
    const char *s = (const char *)data;
    int code = -1;
    char buf[64];
    uint64_t ms;

    if (mgmt_grpc_status_parse(s, size, &code) == NB_OK && (code < 0 || code > 16))
        abort();
    size_t cap = size % sizeof buf + 1;
    memset(buf, 'Z', sizeof buf);
    size_t n = mgmt_grpc_message_decode(s, size, buf, cap);
    if (n >= cap || buf[n] != '\0' || strlen(buf) != n)
        abort();
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)buf[i] < 0x20 || buf[i] == 0x7f)
            abort();
    for (size_t i = cap; i < sizeof buf; i++)
        if (buf[i] != 'Z')
            abort();
    if (mgmt_grpc_timeout_parse(s, size, &ms) == NB_OK) {
        char t[MGMT_GRPC_TIMEOUT_MAX];
        uint64_t back;
        size_t tl = mgmt_grpc_timeout_encode(ms, t);
        if (tl < 2 || tl > 9 || strlen(t) != tl || mgmt_grpc_timeout_parse(t, tl, &back) != NB_OK)
            abort();
        if (back < ms && strcmp(t, "99999999H") != 0)
            abort();
    }
    (void)mgmt_grpc_content_type_ok(s, size);
    (void)mgmt_grpc_code_name(code);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const uint32_t caps[] = {0, 1, 16, 300, 65536};
    struct digest whole, pieces;

    strings(data, size);
    if (size < 2)
        return 0;
    uint32_t max = caps[data[0] % 5];
    size_t step = (size_t)data[1] % 17 + 1;
    data += 2;
    size -= 2;
    run(data, size, max, size ? size : 1, &whole);
    run(data, size, max, step, &pieces);
    if (whole.rc != pieces.rc || whole.nmsg != pieces.nmsg || whole.hash != pieces.hash)
        abort();
    return 0;
}
