/* SPDX-License-Identifier: BSD-3-Clause */
#ifndef NB_TLS_TLS_INTERNAL_H
#define NB_TLS_TLS_INTERNAL_H

/* Shared by tls/tls.c, tls/ctx.c and tls/cert.c only; no other folder includes this. */

#include "tls/tls.h"

#include <wolfssl/options.h>
#include <wolfssl/ssl.h>
#include <wolfssl/wolfcrypt/chacha20_poly1305.h>

#include <stdbool.h>
#include <stdint.h>

#define TLS__MAX_ALPN 8

struct ticket_key {
    uint8_t name[WOLFSSL_TICKET_NAME_SZ];
    uint8_t key[CHACHA20_POLY1305_AEAD_KEYSIZE];
    uint64_t born_ms;
    bool set;
};

struct tls_ctx {
    unsigned refs;
    bool server;
    WOLFSSL_CTX *wctx; /* client: verification, ALPN offer; server: unused (certs hold theirs) */
    tls_select_fn select;
    void *select_arg;
    bool answer_plain_http;
    bool no_tickets;
    char *alpn_csv;   /* as wolfSSL_UseALPN wants it */
    char *alpn_store; /* the same, NUL-separated; alpn[] points into it */
    const char *alpn[TLS__MAX_ALPN];
    size_t alpn_n;
    struct ticket_key keys[2]; /* [0] seals and opens, [1] (the previous one) only opens */
};

struct tls_cert {
    WOLFSSL_CTX *_wctx; /* server context: chain, key, policy, ticket callback */
    unsigned _refs;
    enum tls_key_type _key_type;
    uint8_t _serial[32];
    size_t _serial_len;
    char *_issuer_cn;
    int64_t _not_before;
    int64_t _not_after;
    char **_sans; /* DNS SANs, one allocation each */
    size_t _san_count;
};

/* wolfSSL_Init on the first reference, wolfSSL_Cleanup after the last (contexts and certs each
 * hold one). NB_OK or NB_E_NOMEM. */
int tls__lib_ref(void);
void tls__lib_unref(void);

/* Applies the server policy (versions, suites, groups, tickets, no session cache) to a fresh
 * server context. NB_OK or NB_E_NOMEM. */
int tls__server_policy(WOLFSSL_CTX *wctx);

/* The ticket callback (ctx.c) asks the stream (tls.c) behind a wolfSSL object for its context
 * and the SNI the ticket is bound to. NULL when the object is not one of our streams. */
struct tls_ctx *tls__ssl_ctx(WOLFSSL *ssl, const char **sni);

/* Live-object counters kept by cert.c and ctx.c, read by tls_stats(). */
extern size_t tls__certs_live;
extern size_t tls__ctx_live;

#endif
