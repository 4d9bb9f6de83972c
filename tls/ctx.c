/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * TLS contexts: what the streams of one listener or one upstream family share. The policy
 * (versions, suites, groups) is applied here to every wolfSSL context we make, server ones for
 * certificates (tls/cert.c) and client ones here. Session tickets are sealed and opened here
 * with the context's rotating keys: wolfSSL calls ticket_cb for every ticket it issues or is
 * shown, and the stream behind the wolfSSL object tells which context and which SNI.
 */
#include "tls/tls_internal.h"
#include "platform/err.h"
#include "platform/loop.h"

#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>

/* TLS 1.3: all three suites Go and OpenSSL enable by default; TLS 1.2: ECDHE with an AEAD. */
static const char cipher_list[] =
    "TLS13-AES128-GCM-SHA256:TLS13-AES256-GCM-SHA384:TLS13-CHACHA20-POLY1305-SHA256:"
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"
    "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"
    "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305";

static unsigned lib_refs;
size_t tls__ctx_live;

int tls__lib_ref(void)
{
    if (lib_refs == 0 && wolfSSL_Init() != WOLFSSL_SUCCESS)
        return NB_E_NOMEM;
    lib_refs++;
    return NB_OK;
}

void tls__lib_unref(void)
{
    if (--lib_refs == 0)
        wolfSSL_Cleanup();
}

static int ticket_cb(WOLFSSL *ssl, unsigned char key_name[WOLFSSL_TICKET_NAME_SZ],
                     unsigned char iv[WOLFSSL_TICKET_IV_SZ],
                     unsigned char mac[WOLFSSL_TICKET_MAC_SZ], int enc, unsigned char *ticket,
                     int in_len, int *out_len, void *unused);

static int set_policy(WOLFSSL_CTX *wctx)
{
    static int groups[] = {WOLFSSL_ECC_X25519, WOLFSSL_ECC_SECP256R1, WOLFSSL_ECC_SECP384R1};
    if (wolfSSL_CTX_SetMinVersion(wctx, WOLFSSL_TLSV1_2) != WOLFSSL_SUCCESS ||
        wolfSSL_CTX_set_cipher_list(wctx, cipher_list) != WOLFSSL_SUCCESS ||
        /* TLS 1.2's ECDHE curve: without this wolfSSL takes any curve it knows that the client
         * offers (secp256k1, brainpool, P-521...; seen with testssl); it marks the others
         * disabled. set_groups after it fixes the TLS 1.3 key-share order. */
        wolfSSL_CTX_set1_curves_list(wctx, "X25519:P-256:P-384") != WOLFSSL_SUCCESS ||
        wolfSSL_CTX_set_groups(wctx, groups, (int)(sizeof groups / sizeof groups[0])) !=
            WOLFSSL_SUCCESS)
        return NB_E_NOMEM;
    return NB_OK;
}

int tls__server_policy(WOLFSSL_CTX *wctx)
{
    if (set_policy(wctx) != NB_OK)
        return NB_E_NOMEM;
    /* Stateless tickets only: no session cache to fill or lock, nothing kept per session. */
    wolfSSL_CTX_set_session_cache_mode(wctx, WOLFSSL_SESS_CACHE_OFF);
    if (wolfSSL_CTX_set_TicketEncCb(wctx, ticket_cb) != WOLFSSL_SUCCESS ||
        wolfSSL_CTX_set_TicketHint(wctx, (int)TLS_TICKET_LIFETIME_S) != WOLFSSL_SUCCESS)
        return NB_E_NOMEM;
    /* Session lifetime (checked on TLS 1.2 tickets); returns the old value, not a status. */
    (void)wolfSSL_CTX_set_timeout(wctx, TLS_TICKET_LIFETIME_S);
    return NB_OK;
}

/* Splits "a,b,c" into ctx->alpn[]. NB_E_INVAL on an empty name, a name over 255 bytes or more
 * than TLS__MAX_ALPN names. */
static int parse_alpn(struct tls_ctx *c, const char *csv)
{
    if (csv == NULL || csv[0] == '\0')
        return NB_OK;
    c->alpn_csv = strdup(csv);
    c->alpn_store = strdup(csv);
    if (c->alpn_csv == NULL || c->alpn_store == NULL)
        return NB_E_NOMEM;
    char *p = c->alpn_store;
    for (;;) {
        char *comma = strchr(p, ',');
        if (comma)
            *comma = '\0';
        size_t l = strlen(p);
        if (l == 0 || l > 255 || c->alpn_n == TLS__MAX_ALPN)
            return NB_E_INVAL;
        c->alpn[c->alpn_n++] = p;
        if (comma == NULL)
            break;
        p = comma + 1;
    }
    return NB_OK;
}

static void ctx_free(struct tls_ctx *c)
{
    if (c->wctx)
        wolfSSL_CTX_free(c->wctx);
    free(c->alpn_csv);
    free(c->alpn_store);
    explicit_bzero(c->keys, sizeof c->keys);
    free(c);
    tls__ctx_live--;
    tls__lib_unref();
}

static struct tls_ctx *ctx_alloc(bool server)
{
    if (tls__lib_ref() != NB_OK)
        return NULL;
    struct tls_ctx *c = calloc(1, sizeof *c);
    if (c == NULL) {
        tls__lib_unref();
        return NULL;
    }
    c->refs = 1;
    c->server = server;
    tls__ctx_live++;
    return c;
}

int tls_ctx_new_server(const struct tls_server_opts *o, struct tls_ctx **out)
{
    if (o == NULL || o->select == NULL)
        return NB_E_INVAL;
    struct tls_ctx *c = ctx_alloc(true);
    if (c == NULL)
        return NB_E_NOMEM;
    c->select = o->select;
    c->select_arg = o->select_arg;
    c->answer_plain_http = o->answer_plain_http;
    c->no_tickets = o->no_tickets;
    int rc = parse_alpn(c, o->alpn);
    if (rc != NB_OK) {
        ctx_free(c);
        return rc;
    }
    *out = c;
    return NB_OK;
}

int tls_ctx_new_client(const struct tls_client_opts *o, struct tls_ctx **out)
{
    static const struct tls_client_opts none;
    int rc = NB_E_NOMEM;
    if (o == NULL)
        o = &none;
    struct tls_ctx *c = ctx_alloc(false);
    if (c == NULL)
        return NB_E_NOMEM;
    rc = parse_alpn(c, o->alpn);
    if (rc != NB_OK)
        goto out;
    rc = NB_E_NOMEM;
    c->wctx = wolfSSL_CTX_new(wolfSSLv23_client_method());
    if (c->wctx == NULL || set_policy(c->wctx) != NB_OK)
        goto out;
    /* No client session cache: upstream connections do full handshakes. */
    wolfSSL_CTX_set_session_cache_mode(c->wctx, WOLFSSL_SESS_CACHE_OFF);
    if (o->ca_pem) {
        rc = wolfSSL_CTX_load_verify_buffer(c->wctx, o->ca_pem, (long)o->ca_pem_len,
                                            WOLFSSL_FILETYPE_PEM) == WOLFSSL_SUCCESS
                 ? NB_OK
                 : NB_E_PARSE;
    } else {
        const char *f = o->ca_file ? o->ca_file : TLS_SYSTEM_CA_FILE;
        if (access(f, R_OK) != 0)
            rc = NB_E_IO;
        else
            rc = wolfSSL_CTX_load_verify_locations(c->wctx, f, NULL) == WOLFSSL_SUCCESS
                     ? NB_OK
                     : NB_E_PARSE;
    }
    if (rc != NB_OK)
        goto out;
    /* No verify callback: in wolfSSL 5.5.4 a callback's verdict is taken before the IP address
     * check and would override an IPADDR_MISMATCH. */
    wolfSSL_CTX_set_verify(c->wctx, WOLFSSL_VERIFY_PEER, NULL);
out:
    if (rc != NB_OK) {
        ctx_free(c);
        return rc;
    }
    *out = c;
    return NB_OK;
}

struct tls_ctx *tls_ctx_ref(struct tls_ctx *c)
{
    c->refs++;
    return c;
}

void tls_ctx_unref(struct tls_ctx *c)
{
    if (c == NULL || --c->refs > 0)
        return;
    ctx_free(c);
}

/* ---- session tickets ---- */

static int new_ticket_key(struct ticket_key *k)
{
    if (getrandom(k->name, sizeof k->name, 0) != (ssize_t)sizeof k->name ||
        getrandom(k->key, sizeof k->key, 0) != (ssize_t)sizeof k->key)
        return NB_E_IO;
    k->born_ms = nb_now_ms();
    k->set = true;
    return NB_OK;
}

/* Key [0] seals for one period and opens for two; [1] is the one before it. */
static int rotate_keys(struct tls_ctx *c)
{
    uint64_t now = nb_now_ms(), period = (uint64_t)TLS_TICKET_LIFETIME_S * 1000;
    if (c->keys[0].set && now - c->keys[0].born_ms < period)
        return NB_OK;
    if (c->keys[0].set && now - c->keys[0].born_ms < 2 * period)
        c->keys[1] = c->keys[0];
    else
        explicit_bzero(&c->keys[1], sizeof c->keys[1]);
    return new_ticket_key(&c->keys[0]);
}

/* AAD: key name, IV, length, and the SNI, so a ticket only resumes for the name it was issued
 * for (RFC 8446 §4.6.1: the server must not resume for another SNI). */
static size_t ticket_aad(uint8_t *aad, const uint8_t *name, const uint8_t *iv, int len,
                         const char *sni)
{
    size_t sl = sni ? strlen(sni) : 0, p = 0;
    memcpy(aad, name, WOLFSSL_TICKET_NAME_SZ);
    p += WOLFSSL_TICKET_NAME_SZ;
    memcpy(aad + p, iv, WOLFSSL_TICKET_IV_SZ);
    p += WOLFSSL_TICKET_IV_SZ;
    aad[p++] = (uint8_t)(len >> 8);
    aad[p++] = (uint8_t)len;
    aad[p++] = (uint8_t)sl;
    memcpy(aad + p, sni, sl);
    return p + sl;
}

static int ticket_cb(WOLFSSL *ssl, unsigned char key_name[WOLFSSL_TICKET_NAME_SZ],
                     unsigned char iv[WOLFSSL_TICKET_IV_SZ],
                     unsigned char mac[WOLFSSL_TICKET_MAC_SZ], int enc, unsigned char *ticket,
                     int in_len, int *out_len, void *unused)
{
    const char *sni = NULL;
    struct tls_ctx *c = tls__ssl_ctx(ssl, &sni);
    uint8_t aad[WOLFSSL_TICKET_NAME_SZ + WOLFSSL_TICKET_IV_SZ + 3 + TLS_HELLO_MAX_SNI];
    (void)unused;
    if (c == NULL || c->no_tickets || in_len < 0 || rotate_keys(c) != NB_OK)
        return WOLFSSL_TICKET_RET_REJECT;
    if (enc) {
        const struct ticket_key *k = &c->keys[0];
        if (getrandom(iv, WOLFSSL_TICKET_IV_SZ, 0) != WOLFSSL_TICKET_IV_SZ)
            return WOLFSSL_TICKET_RET_REJECT;
        memcpy(key_name, k->name, WOLFSSL_TICKET_NAME_SZ);
        size_t al = ticket_aad(aad, key_name, iv, in_len, sni);
        memset(mac, 0, WOLFSSL_TICKET_MAC_SZ);
        if (wc_ChaCha20Poly1305_Encrypt(k->key, iv, aad, (word32)al, ticket, (word32)in_len, ticket,
                                        mac) != 0)
            return WOLFSSL_TICKET_RET_REJECT;
        *out_len = in_len;
        return WOLFSSL_TICKET_RET_OK;
    }
    for (int i = 0; i < 2; i++) {
        const struct ticket_key *k = &c->keys[i];
        if (!k->set || memcmp(k->name, key_name, WOLFSSL_TICKET_NAME_SZ) != 0)
            continue;
        size_t al = ticket_aad(aad, key_name, iv, in_len, sni);
        if (wc_ChaCha20Poly1305_Decrypt(k->key, iv, aad, (word32)al, ticket, (word32)in_len, mac,
                                        ticket) != 0)
            return WOLFSSL_TICKET_RET_REJECT;
        *out_len = in_len;
        /* A ticket under the previous key still resumes; TLS 1.2 then gets a fresh one. */
        return i == 0 ? WOLFSSL_TICKET_RET_OK : WOLFSSL_TICKET_RET_CREATE;
    }
    return WOLFSSL_TICKET_RET_REJECT;
}
