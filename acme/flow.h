/* SPDX-License-Identifier: BSD-3-Clause */
#ifndef NB_ACME_FLOW_H
#define NB_ACME_FLOW_H

/*
 * One certificate order as a pure state machine (RFC 8555 §7): directory, nonce, account,
 * newOrder, authorizations, challenge, polling, finalize with a CSR, certificate download.
 * It never does I/O: each step returns an action (send this HTTP request / wait this long /
 * done / failed); the shell (acme/mgr.c) performs it and feeds the response back. The
 * challenge answer is provisioned through ops callbacks (set before the challenge POST,
 * cleared when the authorization is settled). Unit-tested in memory with scripted responses.
 *
 * Shared between the flows of one manager (acme_account): the directory, the account URL (kid)
 * and the spare nonce. Each response's Replay-Nonce refills the spare; a POST takes it, or asks
 * newNonce first. badNonce is retried (3 times) with the nonce of the error response.
 *
 * Challenge choice: the types in cfg.types order (tls-alpn-01 first, http-01 second when
 * enabled). When an authorization fails with one type, a fresh order is made with the next
 * (autocert's fallback); when none is left the flow fails.
 */

#include "acme/jws.h"
#include "acme/msg.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct acme_account {
    char dir_url[ACME_URL_MAX];
    struct acme_directory dir;
    bool have_dir;
    char kid[ACME_URL_MAX]; /* "" until newAccount answered */
    char nonce[256];        /* spare Replay-Nonce, "" none */
    struct acme_key *key;   /* the account key (borrowed) */
    const char *eab_kid;    /* NULL = no EAB */
    const uint8_t *eab_mac;
    size_t eab_mac_len;
    uint64_t requests; /* counters for tests and logs */
    uint64_t orders;
};

struct acme_flow_ops {
    /* Provision the answer for a challenge of `type` (token, key authorization). Returns NB_OK
     * or an error (the flow fails). */
    int (*chall_set)(void *arg, const char *domain, enum acme_chall_type type, const char *token,
                     const char *key_auth);
    void (*chall_clear)(void *arg, const char *domain, enum acme_chall_type type,
                        const char *token);
    int64_t (*now)(void *arg); /* Unix seconds (Retry-After dates) */
    void *arg;
};

enum acme_act_kind {
    ACME_DO_HTTP = 1, /* send method url [body] */
    ACME_DO_WAIT,     /* call acme_flow_resume() after wait_ms */
    ACME_DO_DONE,     /* acme_flow_result() has the certificate */
    ACME_DO_FAIL,     /* acme_flow_error() says why */
};

struct acme_act {
    enum acme_act_kind kind;
    const char *method; /* "GET", "HEAD", "POST" */
    const char *url;
    const char *body; /* POST: JWS JSON (Content-Type application/jose+json) */
    size_t body_len;
    uint32_t wait_ms;
};

/* A response given back for an ACME_DO_HTTP action. Strings need not be NUL-terminated. */
struct acme_resp {
    int status;
    const char *location;
    size_t location_len;
    const char *nonce;
    size_t nonce_len;
    const char *retry_after;
    size_t retry_after_len;
    const uint8_t *body;
    size_t body_len;
};

struct acme_flow;

/* types: tls-alpn-01 and/or http-01, in order of preference (n 1..2). */
struct acme_flow *acme_flow_new(struct acme_account *acct, const char *domain,
                                const enum acme_chall_type *types, size_t n_types,
                                const struct acme_flow_ops *ops);
/* Clears a provisioned challenge, wipes keys, frees. NULL is a no-op. */
void acme_flow_free(struct acme_flow *f);

/* The first action. */
void acme_flow_start(struct acme_flow *f, struct acme_act *a);
/* The response to the last ACME_DO_HTTP. */
void acme_flow_on_resp(struct acme_flow *f, const struct acme_resp *r, struct acme_act *a);
/* The last ACME_DO_HTTP could not be done (connect, TLS, reset); reason is logged. */
void acme_flow_on_error(struct acme_flow *f, const char *reason, struct acme_act *a);
/* After an ACME_DO_WAIT. */
void acme_flow_resume(struct acme_flow *f, struct acme_act *a);

/* After ACME_DO_DONE: the certificate key (PEM "EC PRIVATE KEY") and the chain (PEM), owned by
 * the flow (valid until acme_flow_free). */
void acme_flow_result(const struct acme_flow *f, const char **key_pem, size_t *key_len,
                      const char **chain_pem, size_t *chain_len);
/* After ACME_DO_FAIL: a message without secrets. */
const char *acme_flow_error(const struct acme_flow *f);

#endif
