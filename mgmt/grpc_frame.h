/* SPDX-License-Identifier: BSD-3-Clause */
#ifndef NB_MGMT_GRPC_FRAME_H
#define NB_MGMT_GRPC_FRAME_H

/*
 * The pure parts of gRPC over HTTP/2 (grpc/doc/PROTOCOL-HTTP2.md): the 5-byte message prefix
 * (an incremental, allocation-free decoder and the encoder), grpc-status / grpc-message
 * parsing, grpc-timeout encoding, and the mappings of HTTP statuses and HTTP/2 error codes to
 * gRPC codes. No I/O, no clock: mgmt/grpc.c is the shell that uses them, and fuzz/grpc_frame.c
 * feeds them arbitrary bytes.
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* gRPC status codes (grpc/doc/statuscodes.md). */
enum mgmt_grpc_code {
    MGMT_GRPC_OK = 0,
    MGMT_GRPC_CANCELLED = 1,
    MGMT_GRPC_UNKNOWN = 2,
    MGMT_GRPC_INVALID_ARGUMENT = 3,
    MGMT_GRPC_DEADLINE_EXCEEDED = 4,
    MGMT_GRPC_NOT_FOUND = 5,
    MGMT_GRPC_ALREADY_EXISTS = 6,
    MGMT_GRPC_PERMISSION_DENIED = 7,
    MGMT_GRPC_RESOURCE_EXHAUSTED = 8,
    MGMT_GRPC_FAILED_PRECONDITION = 9,
    MGMT_GRPC_ABORTED = 10,
    MGMT_GRPC_OUT_OF_RANGE = 11,
    MGMT_GRPC_UNIMPLEMENTED = 12,
    MGMT_GRPC_INTERNAL = 13,
    MGMT_GRPC_UNAVAILABLE = 14,
    MGMT_GRPC_DATA_LOSS = 15,
    MGMT_GRPC_UNAUTHENTICATED = 16,
};

/* The canonical upper-case name ("OK", "CANCELLED", ...); anything outside 0..16 is "UNKNOWN". */
const char *mgmt_grpc_code_name(int code);

/* ---- message prefix: compressed-flag byte, then the length as a big-endian uint32 ---- */

#define MGMT_GRPC_PREFIX_LEN 5
/* The receive cap netbird-proxy's client uses (grpc.MaxCallRecvMsgSize): 16 MiB. */
#define MGMT_GRPC_MAX_MESSAGE (16u * 1024u * 1024u)

/* Writes the prefix of an uncompressed message of `len` bytes. */
void mgmt_grpc_prefix_encode(uint8_t out[MGMT_GRPC_PREFIX_LEN], uint32_t len);

/*
 * Incremental decoder of a stream of length-prefixed messages. Caller-owned, zero-initialised
 * (set max_len, or leave 0 for MGMT_GRPC_MAX_MESSAGE); it never allocates and never copies: a
 * message arrives as BEGIN (its length, so the caller can size a buffer), DATA pieces pointing
 * into the input, then END.
 */
struct mgmt_grpc_dec {
    uint32_t max_len; /* largest accepted message; 0 = MGMT_GRPC_MAX_MESSAGE */
    uint8_t _hdr[MGMT_GRPC_PREFIX_LEN];
    uint8_t _hdr_have; /* prefix bytes collected */
    bool _in_body;     /* BEGIN reported, END not yet */
    uint32_t _left;    /* body bytes still to come */
};

enum mgmt_grpc_dec_kind {
    MGMT_GRPC_DEC_NONE = 0, /* every input byte consumed, nothing to report */
    MGMT_GRPC_DEC_BEGIN,    /* a message of `msg_len` bytes starts */
    MGMT_GRPC_DEC_DATA,     /* data[0, len) is the next piece of its body */
    MGMT_GRPC_DEC_END,      /* the message is complete */
};

struct mgmt_grpc_dec_ev {
    enum mgmt_grpc_dec_kind kind;
    uint32_t msg_len;    /* BEGIN */
    const uint8_t *data; /* DATA: points into the input given to this call */
    size_t len;          /* DATA */
};

/*
 * Consumes input and reports at most one event. Returns the bytes consumed (>= 0; END and a
 * zero-length message's BEGIN consume none), so call it in a loop until it reports NONE:
 *
 *     while ((n = mgmt_grpc_dec_feed(&d, p, len, &ev)) >= 0 && ev.kind != MGMT_GRPC_DEC_NONE)
 *         { p += n; len -= n; ...handle ev... }
 *
 * Errors (the decoder is then stuck; the stream must be failed):
 *   NB_E_UNSUPPORTED  compressed flag 1: we send no grpc-encoding, so the peer may not compress
 *                     (gRPC INTERNAL);
 *   NB_E_PARSE        a flag byte other than 0 or 1 (INTERNAL);
 *   NB_E_TOO_BIG      a length over max_len (RESOURCE_EXHAUSTED).
 */
ssize_t mgmt_grpc_dec_feed(struct mgmt_grpc_dec *d, const uint8_t *in, size_t len,
                           struct mgmt_grpc_dec_ev *ev);

/* True between messages (no prefix byte or body byte pending): where a stream may end. */
bool mgmt_grpc_dec_at_boundary(const struct mgmt_grpc_dec *d);

/* ---- trailers and headers ---- */

/*
 * Parses a grpc-status value (1*DIGIT). NB_OK with *code set (numbers above 16 become
 * MGMT_GRPC_UNKNOWN, as the spec asks for unknown codes), or NB_E_PARSE for anything else
 * (empty, sign, spaces, non-digits, overflow): the caller reports INTERNAL.
 */
int mgmt_grpc_status_parse(const char *v, size_t n, int *code);

/*
 * Percent-decodes a grpc-message value into out (cap >= 1), NUL-terminated and truncated to
 * cap - 1 bytes; returns the length written. A '%' not followed by two hex digits is kept as is
 * (the spec forbids failing on bad encodings). Decoded control bytes (< 0x20, 0x7f) become '?'
 * so a server's text can be logged safely.
 */
size_t mgmt_grpc_message_decode(const char *in, size_t n, char *out, size_t cap);

/* Longest grpc-timeout value plus its NUL: 8 digits, one unit letter. */
#define MGMT_GRPC_TIMEOUT_MAX 10

/*
 * Encodes a timeout of `ms` milliseconds as a grpc-timeout value: whole seconds as "20S",
 * otherwise milliseconds as "100m"; values that do not fit 8 digits are rounded up to seconds,
 * minutes or hours ("99999999H" at most). out has MGMT_GRPC_TIMEOUT_MAX bytes. Returns the
 * length. 0 ms encodes as "0m" (already expired; the caller normally fails the call locally).
 */
size_t mgmt_grpc_timeout_encode(uint64_t ms, char out[MGMT_GRPC_TIMEOUT_MAX]);

/* Parses a grpc-timeout value (1-8 digits and H/M/S/m/u/n) into milliseconds, rounding up.
 * NB_OK or NB_E_PARSE. Used by tests and the fuzzer to check the encoder. */
int mgmt_grpc_timeout_parse(const char *v, size_t n, uint64_t *ms);

/* True for "application/grpc", optionally followed by "+<subtype>" or ";<params>"
 * (case-insensitive). A response without it is not a gRPC response. */
bool mgmt_grpc_content_type_ok(const char *v, size_t n);

/*
 * The gRPC code for a response that carries no grpc-status because it is not a gRPC response
 * (grpc/doc/http-grpc-status-mapping.md): 400 INTERNAL, 401 UNAUTHENTICATED, 403
 * PERMISSION_DENIED, 404 UNIMPLEMENTED, 429/502/503/504 UNAVAILABLE, anything else UNKNOWN.
 */
int mgmt_grpc_code_from_http(int status);

/* The gRPC code for a stream reset with HTTP/2 error code `h2` (RFC 9113 §7; gRPC's table):
 * REFUSED_STREAM UNAVAILABLE, CANCEL CANCELLED, ENHANCE_YOUR_CALM RESOURCE_EXHAUSTED,
 * INADEQUATE_SECURITY PERMISSION_DENIED, everything else INTERNAL. */
int mgmt_grpc_code_from_h2(uint32_t h2);

#endif
