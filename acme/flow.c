/* SPDX-License-Identifier: BSD-3-Clause */
#include "acme/flow.h"

#include "acme/certgen.h"
#include "platform/err.h"

#include <cjson/cJSON.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_POLLS         300 /* per authorization / order; the shell's deadline comes first */
#define POLL_DEFAULT_MS   1000
#define BAD_NONCE_RETRIES 3

enum st {
    S_IDLE = 0,
    S_DIR,
    S_NONCE,
    S_ACCOUNT,
    S_ORDER,
    S_AUTHZ,
    S_CHALL,
    S_AUTHZ_POLL,
    S_FINALIZE,
    S_ORDER_POLL,
    S_CERT,
    S_DONE,
    S_FAIL,
};

enum wait_next {
    W_NONE = 0,
    W_POLL_AUTHZ,
    W_POLL_ORDER,
};

struct acme_flow {
    struct acme_account *acct;
    char domain[256];
    enum acme_chall_type types[2];
    size_t n_types, type_idx;
    struct acme_flow_ops ops;
    enum st st;
    enum wait_next wnext;
    char order_url[ACME_URL_MAX];
    struct acme_order order;
    size_t authz_i;
    unsigned polls;
    /* the provisioned challenge */
    bool prov;
    enum acme_chall_type prov_type;
    char prov_token[ACME_TOKEN_MAX];
    /* the POST being sent (kept for newNonce first and badNonce retries) */
    enum st post_st;
    char post_url[ACME_URL_MAX];
    char *post_payload; /* NULL = POST-as-GET */
    int bad_nonce;
    char *body; /* the JWS in flight */
    char req_url[ACME_URL_MAX];
    /* the certificate */
    struct acme_key cert_key;
    char *key_pem;
    size_t key_len;
    char *chain;
    size_t chain_len;
    char err[480];
};

static void fail(struct acme_flow *f, struct acme_act *a, const char *fmt, const char *x)
{
    snprintf(f->err, sizeof f->err, fmt, x ? x : "");
    f->st = S_FAIL;
    memset(a, 0, sizeof *a);
    a->kind = ACME_DO_FAIL;
}

static void http(struct acme_flow *f, struct acme_act *a, enum st st, const char *method,
                 const char *url)
{
    f->st = st;
    snprintf(f->req_url, sizeof f->req_url, "%s", url);
    memset(a, 0, sizeof *a);
    a->kind = ACME_DO_HTTP;
    a->method = method;
    a->url = f->req_url;
    if (strcmp(method, "POST") == 0) {
        a->body = f->body;
        a->body_len = strlen(f->body);
    }
}

static void wait_for(struct acme_flow *f, struct acme_act *a, enum wait_next w, long retry_s)
{
    f->wnext = w;
    memset(a, 0, sizeof *a);
    a->kind = ACME_DO_WAIT;
    a->wait_ms = retry_s >= 0 ? (uint32_t)(retry_s * 1000) : POLL_DEFAULT_MS;
    if (a->wait_ms == 0)
        a->wait_ms = 100;
}

/* Signs and sends the pending POST, or fetches a nonce first. */
static void send_post(struct acme_flow *f, struct acme_act *a)
{
    struct acme_account *ac = f->acct;
    if (!ac->nonce[0]) {
        http(f, a, S_NONCE, "HEAD", ac->dir.new_nonce);
        return;
    }
    free(f->body);
    const char *kid = f->post_st == S_ACCOUNT ? NULL : ac->kid;
    f->body = acme_jws(ac->key, kid, ac->nonce, f->post_url, f->post_payload);
    ac->nonce[0] = '\0'; /* used */
    if (!f->body) {
        fail(f, a, "acme: signing the request failed%s", NULL);
        return;
    }
    http(f, a, f->post_st, "POST", f->post_url);
}

static void post(struct acme_flow *f, struct acme_act *a, enum st st, const char *url,
                 char *payload /* taken */)
{
    f->post_st = st;
    snprintf(f->post_url, sizeof f->post_url, "%s", url);
    free(f->post_payload);
    f->post_payload = payload;
    f->bad_nonce = 0;
    send_post(f, a);
}

static char *dupstr(const char *s)
{
    return s ? strdup(s) : NULL;
}

static void do_account(struct acme_flow *f, struct acme_act *a)
{
    struct acme_account *ac = f->acct;
    if (ac->dir.eab_required && !ac->eab_kid) {
        fail(f, a, "acme: the CA requires external account binding (--acme-eab-kid)%s", NULL);
        return;
    }
    cJSON *o = cJSON_CreateObject();
    char *payload = NULL;
    if (o && cJSON_AddTrueToObject(o, "termsOfServiceAgreed")) {
        bool ok = true;
        if (ac->eab_kid) {
            char *eab =
                acme_eab(ac->key, ac->eab_kid, ac->eab_mac, ac->eab_mac_len, ac->dir.new_account);
            cJSON *e = eab ? cJSON_Parse(eab) : NULL;
            free(eab);
            ok = e != NULL;
            if (e)
                cJSON_AddItemToObject(o, "externalAccountBinding", e);
        }
        if (ok)
            payload = cJSON_PrintUnformatted(o);
    }
    cJSON_Delete(o);
    if (!payload) {
        fail(f, a, "acme: building newAccount failed%s", NULL);
        return;
    }
    post(f, a, S_ACCOUNT, ac->dir.new_account, payload);
}

static void do_order(struct acme_flow *f, struct acme_act *a)
{
    cJSON *o = cJSON_CreateObject();
    cJSON *ids = cJSON_AddArrayToObject(o, "identifiers");
    cJSON *id = cJSON_CreateObject();
    char *payload = NULL;
    if (ids && id && cJSON_AddStringToObject(id, "type", "dns") &&
        cJSON_AddStringToObject(id, "value", f->domain)) {
        cJSON_AddItemToArray(ids, id);
        id = NULL;
        payload = cJSON_PrintUnformatted(o);
    }
    cJSON_Delete(id);
    cJSON_Delete(o);
    if (!payload) {
        fail(f, a, "acme: building newOrder failed%s", NULL);
        return;
    }
    f->acct->orders++;
    f->polls = 0;
    post(f, a, S_ORDER, f->acct->dir.new_order, payload);
}

static void after_dir(struct acme_flow *f, struct acme_act *a)
{
    if (!f->acct->kid[0])
        do_account(f, a);
    else
        do_order(f, a);
}

static void clear_chall(struct acme_flow *f)
{
    if (f->prov && f->ops.chall_clear)
        f->ops.chall_clear(f->ops.arg, f->domain, f->prov_type, f->prov_token);
    f->prov = false;
}

static void do_finalize(struct acme_flow *f, struct acme_act *a)
{
    acme_key_free(&f->cert_key);
    if (acme_key_generate(&f->cert_key) != NB_OK) {
        fail(f, a, "acme: key generation failed%s", NULL);
        return;
    }
    uint8_t der[2048];
    size_t dl = acme_csr_der(&f->cert_key, f->domain, der, sizeof der);
    char b64[2800];
    if (!dl || !acme_b64url(b64, sizeof b64, der, dl)) {
        fail(f, a, "acme: building the CSR failed%s", NULL);
        return;
    }
    char *payload = malloc(strlen(b64) + 16);
    if (!payload) {
        fail(f, a, "acme: out of memory%s", NULL);
        return;
    }
    sprintf(payload, "{\"csr\":\"%s\"}", b64);
    post(f, a, S_FINALIZE, f->order.finalize, payload);
}

/* Next authorization, or finalize when all are done. */
static void next_authz(struct acme_flow *f, struct acme_act *a)
{
    if (f->authz_i >= f->order.n_authz) {
        do_finalize(f, a);
        return;
    }
    f->polls = 0;
    post(f, a, S_AUTHZ, f->order.authz[f->authz_i], NULL);
}

/* The current challenge type failed: a new order with the next type, or fail. */
static void next_type(struct acme_flow *f, struct acme_act *a, const char *why)
{
    clear_chall(f);
    if (f->type_idx + 1 < f->n_types) {
        f->type_idx++;
        do_order(f, a);
        return;
    }
    fail(f, a, "acme: authorization failed: %s", why);
}

static void handle_order(struct acme_flow *f, struct acme_act *a, long retry)
{
    switch (f->order.status) {
    case ACME_ST_PENDING:
        f->authz_i = 0;
        next_authz(f, a);
        return;
    case ACME_ST_READY:
        do_finalize(f, a);
        return;
    case ACME_ST_PROCESSING:
        if (++f->polls > MAX_POLLS) {
            fail(f, a, "acme: order stays processing%s", NULL);
            return;
        }
        wait_for(f, a, W_POLL_ORDER, retry);
        return;
    case ACME_ST_VALID:
        if (!f->order.certificate[0]) {
            fail(f, a, "acme: valid order without certificate URL%s", NULL);
            return;
        }
        post(f, a, S_CERT, f->order.certificate, NULL);
        return;
    default:
        fail(f, a, "acme: order is %s", acme_status_name(f->order.status));
    }
}

static void handle_authz(struct acme_flow *f, struct acme_act *a, const struct acme_resp *r,
                         long retry)
{
    struct acme_authz az;
    if (acme_parse_authz(r->body, r->body_len, &az) != NB_OK) {
        fail(f, a, "acme: bad authorization from the server%s", NULL);
        return;
    }
    if (az.status == ACME_ST_VALID) {
        clear_chall(f);
        f->authz_i++;
        next_authz(f, a);
        return;
    }
    if (az.status != ACME_ST_PENDING) {
        next_type(f, a, acme_status_name(az.status));
        return;
    }
    if (f->st == S_AUTHZ_POLL) {
        if (++f->polls > MAX_POLLS) {
            fail(f, a, "acme: authorization stays pending%s", NULL);
            return;
        }
        wait_for(f, a, W_POLL_AUTHZ, retry);
        return;
    }
    /* S_AUTHZ: pick the challenge of the current type. */
    const struct acme_chall *ch = NULL;
    for (size_t i = 0; i < az.n_chall; i++)
        if (az.chall[i].type == f->types[f->type_idx])
            ch = &az.chall[i];
    if (!ch) {
        next_type(f, a, "no supported challenge offered");
        return;
    }
    char ka[ACME_TOKEN_MAX + 48];
    if (!acme_key_authorization(f->acct->key, ch->token, ka, sizeof ka)) {
        fail(f, a, "acme: key authorization failed%s", NULL);
        return;
    }
    clear_chall(f);
    if (f->ops.chall_set &&
        f->ops.chall_set(f->ops.arg, f->domain, ch->type, ch->token, ka) != NB_OK) {
        fail(f, a, "acme: cannot provision the challenge%s", NULL);
        return;
    }
    f->prov = true;
    f->prov_type = ch->type;
    snprintf(f->prov_token, sizeof f->prov_token, "%s", ch->token);
    if (ch->status == ACME_ST_PENDING) {
        post(f, a, S_CHALL, ch->url, dupstr("{}"));
    } else {
        f->st = S_AUTHZ_POLL;
        wait_for(f, a, W_POLL_AUTHZ, 0);
    }
}

static bool is_bad_nonce(const struct acme_resp *r)
{
    struct acme_problem p;
    return acme_parse_problem(r->body, r->body_len, &p) == NB_OK &&
           strcmp(p.type, "urn:ietf:params:acme:error:badNonce") == 0;
}

static void problem_fail(struct acme_flow *f, struct acme_act *a, const struct acme_resp *r)
{
    struct acme_problem p;
    char msg[420];
    if (acme_parse_problem(r->body, r->body_len, &p) == NB_OK && (p.type[0] || p.detail[0]))
        snprintf(msg, sizeof msg, "HTTP %d %s: %s", r->status, p.type, p.detail);
    else
        snprintf(msg, sizeof msg, "HTTP %d", r->status);
    fail(f, a, "acme: %s", msg);
}

struct acme_flow *acme_flow_new(struct acme_account *acct, const char *domain,
                                const enum acme_chall_type *types, size_t n_types,
                                const struct acme_flow_ops *ops)
{
    if (!acct || !acct->key || !domain || strlen(domain) >= 254 || !*domain || n_types == 0 ||
        n_types > 2)
        return NULL;
    struct acme_flow *f = calloc(1, sizeof *f);
    if (!f)
        return NULL;
    f->acct = acct;
    strcpy(f->domain, domain);
    memcpy(f->types, types, n_types * sizeof *types);
    f->n_types = n_types;
    if (ops)
        f->ops = *ops;
    return f;
}

void acme_flow_free(struct acme_flow *f)
{
    if (!f)
        return;
    clear_chall(f);
    free(f->post_payload);
    free(f->body);
    acme_key_free(&f->cert_key);
    acme_pem_free(f->key_pem, f->key_len);
    free(f->chain);
    free(f);
}

void acme_flow_start(struct acme_flow *f, struct acme_act *a)
{
    f->type_idx = 0;
    if (!f->acct->have_dir)
        http(f, a, S_DIR, "GET", f->acct->dir_url);
    else
        after_dir(f, a);
}

void acme_flow_resume(struct acme_flow *f, struct acme_act *a)
{
    enum wait_next w = f->wnext;
    f->wnext = W_NONE;
    if (w == W_POLL_AUTHZ)
        post(f, a, S_AUTHZ_POLL, f->order.authz[f->authz_i], NULL);
    else if (w == W_POLL_ORDER)
        post(f, a, S_ORDER_POLL, f->order_url, NULL);
    else
        fail(f, a, "acme: internal: resume without wait%s", NULL);
}

void acme_flow_on_error(struct acme_flow *f, const char *reason, struct acme_act *a)
{
    fail(f, a, "acme: request failed: %s", reason);
}

void acme_flow_on_resp(struct acme_flow *f, const struct acme_resp *r, struct acme_act *a)
{
    struct acme_account *ac = f->acct;
    ac->requests++;
    if (r->nonce && r->nonce_len > 0 && r->nonce_len < sizeof ac->nonce) {
        memcpy(ac->nonce, r->nonce, r->nonce_len);
        ac->nonce[r->nonce_len] = '\0';
    }
    long retry = acme_retry_after(r->retry_after, r->retry_after_len,
                                  f->ops.now ? f->ops.now(f->ops.arg) : 0);
    enum st st = f->st;
    if (st == S_NONCE) {
        if (r->status >= 300 || !ac->nonce[0]) {
            problem_fail(f, a, r);
            return;
        }
        send_post(f, a);
        return;
    }
    if (r->status >= 300) {
        if (st != S_DIR && is_bad_nonce(r) && f->bad_nonce++ < BAD_NONCE_RETRIES) {
            send_post(f, a);
            return;
        }
        problem_fail(f, a, r);
        return;
    }
    switch (st) {
    case S_DIR:
        if (acme_parse_directory(r->body, r->body_len, &ac->dir) != NB_OK) {
            fail(f, a, "acme: bad directory from the server%s", NULL);
            return;
        }
        ac->have_dir = true;
        after_dir(f, a);
        return;
    case S_ACCOUNT:
        if (!r->location || r->location_len == 0 || r->location_len >= sizeof ac->kid) {
            fail(f, a, "acme: newAccount without Location%s", NULL);
            return;
        }
        memcpy(ac->kid, r->location, r->location_len);
        ac->kid[r->location_len] = '\0';
        do_order(f, a);
        return;
    case S_ORDER:
        if (!r->location || r->location_len == 0 || r->location_len >= sizeof f->order_url) {
            fail(f, a, "acme: newOrder without Location%s", NULL);
            return;
        }
        memcpy(f->order_url, r->location, r->location_len);
        f->order_url[r->location_len] = '\0';
        /* fall through */
    case S_FINALIZE:
    case S_ORDER_POLL:
        if (acme_parse_order(r->body, r->body_len, &f->order) != NB_OK) {
            fail(f, a, "acme: bad order from the server%s", NULL);
            return;
        }
        if (st == S_FINALIZE && f->order.status == ACME_ST_READY)
            f->order.status = ACME_ST_PROCESSING; /* finalize accepted, not yet processing */
        handle_order(f, a, retry);
        return;
    case S_AUTHZ:
    case S_AUTHZ_POLL:
        handle_authz(f, a, r, retry);
        return;
    case S_CHALL: {
        struct acme_chall c;
        if (acme_parse_chall(r->body, r->body_len, &c) == NB_OK && c.status == ACME_ST_INVALID) {
            next_type(f, a, "challenge invalid");
            return;
        }
        f->st = S_AUTHZ_POLL;
        f->polls = 0;
        wait_for(f, a, W_POLL_AUTHZ, retry >= 0 ? retry : 0);
        return;
    }
    case S_CERT: {
        if (!r->body || r->body_len == 0 || r->body_len > ACME_BODY_MAX ||
            !memmem(r->body, r->body_len, "-----BEGIN CERTIFICATE-----", 27)) {
            fail(f, a, "acme: the certificate download is not a PEM chain%s", NULL);
            return;
        }
        f->chain = malloc(r->body_len + 1);
        if (!f->chain || acme_key_to_pem(&f->cert_key, &f->key_pem, &f->key_len) != NB_OK) {
            fail(f, a, "acme: out of memory%s", NULL);
            return;
        }
        memcpy(f->chain, r->body, r->body_len);
        f->chain[r->body_len] = '\0';
        f->chain_len = r->body_len;
        acme_key_free(&f->cert_key);
        f->st = S_DONE;
        memset(a, 0, sizeof *a);
        a->kind = ACME_DO_DONE;
        return;
    }
    default:
        fail(f, a, "acme: internal: unexpected response%s", NULL);
    }
}

void acme_flow_result(const struct acme_flow *f, const char **key_pem, size_t *key_len,
                      const char **chain_pem, size_t *chain_len)
{
    *key_pem = f->key_pem;
    *key_len = f->key_len;
    *chain_pem = f->chain;
    *chain_len = f->chain_len;
}

const char *acme_flow_error(const struct acme_flow *f)
{
    return f->err;
}
