/* SPDX-License-Identifier: BSD-3-Clause */
#ifndef NB_ACME_MSG_H
#define NB_ACME_MSG_H

/*
 * Parsers of ACME server responses (RFC 8555 §7.1): directory, order, authorization (with its
 * challenges), problem document. Pure functions of (bytes, length) into fixed-size structs:
 * bounded memory whatever the server sends, strings truncated never, refused instead (a URL
 * longer than ACME_URL_MAX is a parse error). Fuzzed by fuzz/acme_msg.c.
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define ACME_URL_MAX   512
#define ACME_TOKEN_MAX 128
#define ACME_MAX_AUTHZ 8
#define ACME_MAX_CHALL 8
#define ACME_BODY_MAX  (256 * 1024) /* biggest response body accepted (a chain) */

enum acme_status {
    ACME_ST_UNKNOWN = 0,
    ACME_ST_PENDING,
    ACME_ST_READY,
    ACME_ST_PROCESSING,
    ACME_ST_VALID,
    ACME_ST_INVALID,
    ACME_ST_EXPIRED,
    ACME_ST_DEACTIVATED,
    ACME_ST_REVOKED,
};

enum acme_chall_type {
    ACME_CH_OTHER = 0,
    ACME_CH_TLS_ALPN01 = 1,
    ACME_CH_HTTP01 = 2,
};

struct acme_directory {
    char new_nonce[ACME_URL_MAX];
    char new_account[ACME_URL_MAX];
    char new_order[ACME_URL_MAX];
    bool eab_required; /* meta.externalAccountRequired */
};

struct acme_order {
    enum acme_status status;
    char finalize[ACME_URL_MAX];
    char certificate[ACME_URL_MAX]; /* "" until valid */
    size_t n_authz;
    char authz[ACME_MAX_AUTHZ][ACME_URL_MAX];
};

struct acme_chall {
    enum acme_chall_type type;
    enum acme_status status;
    char url[ACME_URL_MAX];
    char token[ACME_TOKEN_MAX]; /* base64url characters only (checked) */
};

struct acme_authz {
    enum acme_status status;
    char identifier[256]; /* identifier.value (dns) */
    bool wildcard;
    size_t n_chall;
    struct acme_chall chall[ACME_MAX_CHALL];
};

struct acme_problem {
    char type[128];   /* "urn:ietf:params:acme:error:badNonce"..., "" when absent */
    char detail[256]; /* truncated, printable ASCII only (for logs) */
};

/* Each returns NB_OK or NB_E_PARSE (not JSON, a required member missing or mistyped, a string
 * over its limit, too many entries). */
int acme_parse_directory(const uint8_t *b, size_t n, struct acme_directory *d)
    __attribute__((warn_unused_result));
int acme_parse_order(const uint8_t *b, size_t n, struct acme_order *o)
    __attribute__((warn_unused_result));
int acme_parse_authz(const uint8_t *b, size_t n, struct acme_authz *a)
    __attribute__((warn_unused_result));
/* A challenge object (the response to the challenge POST). */
int acme_parse_chall(const uint8_t *b, size_t n, struct acme_chall *c)
    __attribute__((warn_unused_result));
/* Best effort: fields left "" when absent. NB_E_PARSE when not a JSON object. */
int acme_parse_problem(const uint8_t *b, size_t n, struct acme_problem *p);

enum acme_status acme_status_from(const char *s);
const char *acme_status_name(enum acme_status st);

/* Retry-After (RFC 9110 §10.2.3): delay-seconds or an IMF-fixdate, relative to now (Unix s).
 * Returns seconds clamped to [0, 3600], or -1 when absent/unparseable. */
long acme_retry_after(const char *v, size_t len, int64_t now);

/* Splits "https://host[:port]/path" into host (no brackets), port (443 default) and the
 * origin-form target. NB_OK or NB_E_PARSE (not https, empty host, userinfo, too long). */
int acme_url_split(const char *url, char *host, size_t host_cap, uint16_t *port,
                   const char **target) __attribute__((warn_unused_result));

#endif
