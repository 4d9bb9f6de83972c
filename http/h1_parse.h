/* SPDX-License-Identifier: BSD-3-Clause */
/* Copyright (c) nbproxy authors */
#ifndef NB_HTTP_H1_PARSE_H
#define NB_HTTP_H1_PARSE_H

/*
 * Strict, allocation-free, incremental HTTP/1.1 message-head parser and chunked decoder
 * (RFC 9112), in the picohttpparser style (house style §8.16). Input is bytes; output is pointers
 * into the caller's buffer plus lengths. Nothing is copied, nothing is allocated, no statics.
 *
 * Return values of the head parsers:
 *   > 0            bytes consumed: the head (request/status line, fields, empty line) is complete;
 *                  the body (if any, see .body) starts at buf + ret;
 *   NB_E_AGAIN     incomplete: call again with the same buffer start, more bytes appended, and the
 *                  same struct (every proper prefix of a valid head returns this);
 *   NB_E_PARSE     malformed or ambiguous (request smuggling vectors): answer 400 and close;
 *   NB_E_TOO_BIG   head longer than max_head, or more fields than max_headers: answer 431 and
 *                  close.
 *
 * The parser is strict on purpose (it sits in front of arbitrary backends): obs-fold, whitespace
 * before the colon, non-token names or methods, CTLs (other than HT) in values, bare CR or bare LF,
 * Content-Length with Transfer-Encoding, any second Content-Length or Transfer-Encoding field,
 * Content-Length lists, and any Transfer-Encoding other than exactly "chunked" are all rejected.
 * Like Go net/http, only "chunked" is supported as a transfer coding.
 */

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

enum {
    H1_MAX_HEAD = 1 << 20,     /* default head limit (bytes, incl. final CRLF), as Go's server */
    H1_MAX_TARGET = 65536,     /* longer request-targets are NB_E_PARSE */
    H1_MAX_TRAILER = 65536,    /* chunked trailer section limit: NB_E_TOO_BIG beyond */
    H1_MAX_CHUNK_EXT = 4096,   /* chunk-extension bytes per chunk line: NB_E_PARSE beyond */
    H1_MAX_CHUNK_DIGITS = 16,  /* chunk-size hex digits, leading zeros included */
    H1_MAX_TRAILER_FIELDS = 64 /* more trailer fields: NB_E_TOO_BIG */
};

/* One field line. Name and value point into the caller's buffer; the value has OWS trimmed. */
struct h1_header {
    const char *name;
    size_t name_len;
    const char *value;
    size_t value_len;
};

/* Message body framing (RFC 9112 §6). */
enum h1_body {
    H1_BODY_NONE = 0, /* no body */
    H1_BODY_LENGTH,   /* exactly content_length bytes (may be 0) */
    H1_BODY_CHUNKED,  /* chunked: feed it to h1_chunked_decode */
    H1_BODY_CLOSE,    /* response only: read until the server closes */
    H1_BODY_TUNNEL,   /* response to CONNECT with 2xx: the connection becomes a tunnel */
};

enum h1_target_form {
    H1_TARGET_ORIGIN = 0, /* "/path?query" */
    H1_TARGET_ABSOLUTE,   /* "http://host/path" or "https://..." (scheme case-insensitive) */
    H1_TARGET_AUTHORITY,  /* "host:port", CONNECT only (and CONNECT only accepts this form) */
    H1_TARGET_ASTERISK,   /* "*", OPTIONS only */
};

/*
 * Request head. The caller sets headers / max_headers (and optionally max_head; 0 means
 * H1_MAX_HEAD) and zeroes the rest before the first call for each message; the parser fills the
 * outputs only when it returns > 0.
 */
struct h1_request {
    /* in */
    struct h1_header *headers;
    size_t max_headers;
    size_t max_head;
    /* out */
    const char *method;
    size_t method_len;
    const char *target;
    size_t target_len;
    enum h1_target_form target_form;
    int minor_version; /* 0 or 1 */
    const char *host;  /* Host field value, or NULL when absent (only allowed in HTTP/1.0) */
    size_t host_len;
    size_t num_headers;
    enum h1_body body; /* NONE, LENGTH or CHUNKED */
    uint64_t content_length;
    /* private: bytes already scanned without finding the end of the head */
    size_t _scanned;
};

/* Response head; same conventions as struct h1_request. */
struct h1_response {
    /* in */
    struct h1_header *headers;
    size_t max_headers;
    size_t max_head;
    /* out */
    int minor_version;
    int status; /* 100..999 */
    const char *reason;
    size_t reason_len; /* may be 0 */
    size_t num_headers;
    enum h1_body body;
    uint64_t content_length;
    /* private */
    size_t _scanned;
};

/*
 * Parses a request head from buf[0..len). Leading empty lines (CRLF) are skipped (RFC 9112 §2.2).
 * HTTP/1.1 requests must carry exactly one Host field, HTTP/1.0 at most one; a HTTP/1.0 request
 * with Transfer-Encoding is rejected (RFC 9112 §6.1). Returns as described at the top.
 */
int h1_parse_request(const char *buf, size_t len, struct h1_request *req);

/*
 * Parses a response head. req_method / req_method_len name the method of the request it answers
 * (decides framing per RFC 9112 §6.3: HEAD, 1xx, 204 and 304 have no body; 2xx to CONNECT is a
 * tunnel; chunked; Content-Length; otherwise read until close). A 1xx is an interim response:
 * the caller parses the next head after it (101 means the protocol switched).
 */
int h1_parse_response(const char *buf, size_t len, const char *req_method, size_t req_method_len,
                      struct h1_response *res);

/* Chunked decoder state: caller-owned, zero-initialised for each message body. */
struct h1_chunked {
    /*
     * Optional (NULL = trailers are validated and dropped): receives the trailer section's
     * field lines as they are decoded, "Name: value\r\n" each, validated, possibly split over
     * several calls (never the final CRLF). At most H1_MAX_TRAILER bytes in all. `data` is
     * valid during the call only.
     */
    void (*on_trailer)(void *arg, const char *data, size_t len);
    void *trailer_arg;
    uint64_t _left;      /* data bytes still to come in the current chunk */
    size_t _trailer_len; /* trailer section bytes so far */
    unsigned _count;     /* hex digits, extension bytes, or trailer fields (per state) */
    unsigned _fields;    /* trailer fields so far */
    unsigned char _state;
};

/*
 * Decodes chunked data in place (like phr_decode_chunked). On entry *len is the number of bytes in
 * buf; on return the decoded body bytes are at buf[0..*len). Returns
 *   NB_E_AGAIN     all input consumed, more is needed (the *len data bytes are still delivered);
 *   >= 0           the message body is complete (last chunk and trailers consumed); the value is
 *                  the number of bytes that followed it, moved to buf[*len .. *len + ret);
 *   NB_E_PARSE     malformed (bad hex, size >= 2^63, missing CRLF, bad extension or trailer);
 *   NB_E_TOO_BIG   trailer section larger than H1_MAX_TRAILER or H1_MAX_TRAILER_FIELDS fields;
 *   NB_E_INVAL     called again after the body was complete.
 * Trailer fields are validated with the head rules and handed to st->on_trailer if set (else
 * discarded). Chunk extensions are skipped.
 */
ssize_t h1_chunked_decode(struct h1_chunked *st, char *buf, size_t *len);

#endif
