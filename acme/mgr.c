/* SPDX-License-Identifier: BSD-3-Clause */
#include "acme/mgr.h"

#include "acme/cache.h"
#include "acme/certgen.h"
#include "acme/flow.h"
#include "acme/jws.h"
#include "acme/msg.h"
#include "http/client.h"
#include "http/hdrs.h"
#include "platform/arena.h"
#include "platform/dns.h"
#include "platform/err.h"
#include "platform/log.h"
#include "platform/loop.h"
#include "platform/sock.h"
#include "tls/tls.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define MOD           "acme"
#define MAX_HOSTS     4 /* distinct CA hosts (directory, and any other the CA points to) */
#define LOCK_RETRY_MS 100
#define DISK_POLL_MS  5000

struct ca_host {
    char host[256];
    uint16_t port;
    bool init;
    struct tls_dialer td;
};

struct token {
    struct token *next;
    char token[ACME_TOKEN_MAX];
    char key_auth[ACME_TOKEN_MAX + 48];
};

struct dom {
    struct dom *next;
    struct acme_mgr *m;
    char name[254];
    enum acme_dstate state;
    struct tls_cert *cert;
    struct tls_cert *chall;
    struct acme_flow *flow;
    bool running;             /* an attempt (lock wait or flow) is on */
    uint64_t first_order_ms;  /* nb_now_ms() when the order for a first certificate began */
    struct nb_timer t;        /* prefetch / lock retry / flow wait / renewal / retry */
    struct nb_timer deadline; /* per attempt */
    struct nb_timer poll;     /* disk poll while an attempt runs without a certificate */
    int lock_fd;
    enum { T_NONE, T_START, T_LOCK, T_FLOW } tkind;
    /* the HTTP request in flight */
    struct http_exchange *x;
    struct nb_dns_query *q;
    struct acme_act act;
    int status;
    char location[ACME_URL_MAX];
    size_t location_len;
    char nonce[256];
    size_t nonce_len;
    char retry_after[64];
    size_t retry_after_len;
    uint8_t *body;
    size_t body_len;
    bool too_big;
};

struct acme_mgr {
    struct nb_loop *loop;
    struct nb_dns *dns;
    bool own_dns;
    struct http_client *http;
    struct tls_ctx *tls;
    struct nb_dialer tcp;
    struct ca_host hosts[MAX_HOSTS];
    char *cert_dir;
    bool http01;
    struct acme_key key;
    struct acme_account acct;
    char *eab_kid;
    uint8_t eab_mac[128];
    size_t eab_mac_len;
    void (*on_ready)(void *arg, const char *domain, bool issued);
    void *arg;
    uint32_t retry_ms, deadline_ms, jitter_ms;
    struct dom *doms;
    struct token *tokens;
    struct acme_mgr_stats st;
};

static const char *const dstate_names[] = {"pending", "in progress", "ready", "failed"};

const char *acme_dstate_name(enum acme_dstate s)
{
    return (unsigned)s < 4 ? dstate_names[s] : "?";
}

static int tcp_dial(void *ctx, const struct sockaddr *dst, const struct nb_stream_cbs *cbs,
                    void *arg, struct nb_stream **out)
{
    struct acme_mgr *m = ctx;
    return nb_tcp_connect(m->loop, dst, 0, cbs, arg, out);
}

static struct dom *find(struct acme_mgr *m, const char *name)
{
    for (struct dom *d = m->doms; d; d = d->next)
        if (strcmp(d->name, name) == 0)
            return d;
    return NULL;
}

/* ---- account key ---- */

static int load_account_key(struct acme_mgr *m)
{
    static const char *const names[] = {"acme_account+key", "acme_account.key"};
    for (size_t i = 0; i < 2; i++) {
        char *pem = NULL;
        size_t len = 0;
        int rc = acme_cache_get(m->cert_dir, names[i], &pem, &len);
        if (rc == NB_E_NOTFOUND)
            continue;
        if (rc != NB_OK)
            return NB_E_IO;
        rc = acme_key_from_pem(&m->key, pem, len);
        acme_pem_free(pem, len);
        if (rc != NB_OK) {
            nb_error(MOD, "account key %s/%s is not an ECDSA P-256 key", m->cert_dir, names[i]);
            return NB_E_IO;
        }
        return NB_OK;
    }
    if (acme_key_generate(&m->key) != NB_OK)
        return NB_E_IO;
    char *pem;
    size_t len;
    if (acme_key_to_pem(&m->key, &pem, &len) != NB_OK)
        return NB_E_IO;
    int rc = acme_cache_put(m->cert_dir, "acme_account+key", pem, len);
    acme_pem_free(pem, len);
    if (rc != NB_OK) {
        nb_error(MOD, "cannot write the account key to %s", m->cert_dir);
        return NB_E_IO;
    }
    nb_info(MOD, "new ACME account key in %s/acme_account+key", m->cert_dir);
    return NB_OK;
}

/* ---- the cache entry of a domain ---- */

/* Loads <domain> if it holds a certificate for the domain that is valid now and not due for
 * renewal. Returns the certificate (one reference) or NULL. */
static struct tls_cert *load_cached(struct acme_mgr *m, const char *name, bool *due)
{
    char *pem = NULL;
    size_t len = 0;
    *due = false;
    if (acme_cache_get(m->cert_dir, name, &pem, &len) != NB_OK)
        return NULL;
    const char *k, *c;
    size_t kl, cl;
    struct tls_cert *cert = NULL;
    if (acme_cache_split(pem, len, &k, &kl, &c, &cl) == NB_OK &&
        tls_cert_from_pem(c, cl, k, kl, &cert) == NB_OK) {
        int64_t now = (int64_t)time(NULL);
        if (!tls_cert_covers(cert, name) || tls_cert_not_before(cert) > now ||
            tls_cert_not_after(cert) <= now) {
            tls_cert_unref(cert);
            cert = NULL;
        } else if (acme_renew_at(tls_cert_not_before(cert), tls_cert_not_after(cert)) <= now) {
            *due = true;
        }
    }
    acme_pem_free(pem, len);
    return cert;
}

static void schedule_renewal(struct dom *d)
{
    int64_t now = (int64_t)time(NULL);
    int64_t at = acme_renew_at(tls_cert_not_before(d->cert), tls_cert_not_after(d->cert));
    uint64_t ms = at > now ? (uint64_t)(at - now) * 1000u : 0;
    d->tkind = T_START;
    nb_timer_arm(d->m->loop, &d->t, ms);
    nb_debug(MOD, "%s: renewal in %llu s", d->name, (unsigned long long)(ms / 1000));
}

static void set_cert(struct dom *d, struct tls_cert *c, bool issued)
{
    tls_cert_unref(d->cert);
    d->cert = c;
    d->state = ACME_D_READY;
    if (issued)
        d->m->st.issued++;
    else
        d->m->st.from_cache++;
    nb_info(MOD, "certificate %s for %s (valid until %lld)",
            issued ? "issued" : "loaded from cache", d->name, (long long)tls_cert_not_after(c));
    schedule_renewal(d);
    if (d->m->on_ready)
        d->m->on_ready(d->m->arg, d->name, issued);
}

/* ---- attempt lifecycle ---- */

static void unlock(struct dom *d)
{
    if (d->lock_fd >= 0) {
        flock(d->lock_fd, LOCK_UN);
        close(d->lock_fd);
        d->lock_fd = -1;
    }
}

static void stop_request(struct dom *d)
{
    if (d->x) {
        http_exchange_cancel(d->x);
        d->x = NULL;
    }
    if (d->q) {
        nb_dns_cancel(d->q);
        d->q = NULL;
    }
    free(d->body);
    d->body = NULL;
    d->body_len = 0;
}

static void end_attempt(struct dom *d)
{
    stop_request(d);
    acme_flow_free(d->flow);
    d->flow = NULL;
    unlock(d);
    nb_timer_cancel(&d->deadline);
    nb_timer_cancel(&d->poll);
    nb_timer_cancel(&d->t);
    d->tkind = T_NONE;
    d->running = false;
}

static void attempt_failed(struct dom *d, const char *why)
{
    struct acme_mgr *m = d->m;
    nb_warn(MOD, "%s: certificate attempt failed: %s", d->name, why);
    end_attempt(d);
    m->st.failures++;
    if (d->state != ACME_D_READY)
        d->state = ACME_D_FAILED;
    d->tkind = T_START;
    nb_timer_arm(m->loop, &d->t, m->retry_ms);
}

static void perform(struct dom *d);
static int ops_set(void *arg, const char *domain, enum acme_chall_type type, const char *token,
                   const char *key_auth);
static void ops_clear(void *arg, const char *domain, enum acme_chall_type type, const char *token);
static int64_t ops_now(void *arg);

static void start_flow(struct dom *d)
{
    struct acme_mgr *m = d->m;
    enum acme_chall_type types[2] = {ACME_CH_TLS_ALPN01, ACME_CH_HTTP01};
    struct acme_flow_ops ops = {ops_set, ops_clear, ops_now, d};
    d->flow = acme_flow_new(&m->acct, d->name, types, m->http01 ? 2 : 1, &ops);
    if (!d->flow) {
        attempt_failed(d, "out of memory");
        return;
    }
    if (d->cert)
        m->st.renewals++;
    else
        d->first_order_ms = nb_now_ms();
    acme_flow_start(d->flow, &d->act);
    perform(d);
}

/* Lock held (or unlockable): check the cache again, else order. */
static void locked(struct dom *d)
{
    bool due;
    struct tls_cert *c = load_cached(d->m, d->name, &due);
    if (c && !due) {
        end_attempt(d);
        set_cert(d, c, false);
        return;
    }
    tls_cert_unref(c);
    start_flow(d);
}

static void try_lock(struct dom *d)
{
    char p[4096];
    if (d->lock_fd < 0) {
        snprintf(p, sizeof p, "%s/%s.lock", d->m->cert_dir, d->name);
        d->lock_fd = open(p, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
        if (d->lock_fd < 0) {
            nb_warn(MOD, "%s: lock file %s: %s; proceeding unlocked", d->name, p, strerror(errno));
            locked(d);
            return;
        }
    }
    if (flock(d->lock_fd, LOCK_EX | LOCK_NB) == 0) {
        locked(d);
        return;
    }
    if (errno != EWOULDBLOCK && errno != EINTR) {
        nb_warn(MOD, "%s: flock: %s; proceeding unlocked", d->name, strerror(errno));
        close(d->lock_fd);
        d->lock_fd = -1;
        locked(d);
        return;
    }
    d->tkind = T_LOCK;
    nb_timer_arm(d->m->loop, &d->t, LOCK_RETRY_MS);
}

static void on_deadline(struct nb_timer *t)
{
    struct dom *d = t->arg;
    attempt_failed(d, "timed out");
}

/* Another replica may finish first (spec/proxy.md §7.2: the disk is polled every 5 s). */
static void on_poll(struct nb_timer *t)
{
    struct dom *d = t->arg;
    bool due;
    struct tls_cert *c = d->running && !d->cert ? load_cached(d->m, d->name, &due) : NULL;
    if (c && !due) {
        nb_info(MOD, "%s: certificate appeared in the cache during the attempt", d->name);
        end_attempt(d);
        set_cert(d, c, false);
        return;
    }
    tls_cert_unref(c);
    if (d->running)
        nb_timer_arm(d->m->loop, &d->poll, DISK_POLL_MS);
}

static void start_attempt(struct dom *d)
{
    if (d->running)
        return;
    struct acme_mgr *m = d->m;
    bool due = false, notify = false;
    if (!d->cert) {
        struct tls_cert *c = load_cached(m, d->name, &due);
        if (c && !due) {
            set_cert(d, c, false);
            return;
        }
        if (c) { /* valid but due for renewal: serve it while renewing */
            d->cert = c;
            d->state = ACME_D_READY;
            m->st.from_cache++;
            notify = true;
        }
    }
    d->running = true;
    if (d->state != ACME_D_READY)
        d->state = ACME_D_IN_PROGRESS;
    nb_timer_arm(m->loop, &d->deadline, m->deadline_ms);
    if (!d->cert)
        nb_timer_arm(m->loop, &d->poll, DISK_POLL_MS);
    char name[sizeof d->name];
    memcpy(name, d->name, sizeof name);
    try_lock(d); /* may end the attempt and report; d is not touched after this */
    if (notify && m->on_ready)
        m->on_ready(m->arg, name, false);
}

static void on_timer(struct nb_timer *t)
{
    struct dom *d = t->arg;
    int k = d->tkind;
    d->tkind = T_NONE;
    switch (k) {
    case T_START:
        start_attempt(d);
        break;
    case T_LOCK:
        try_lock(d);
        break;
    case T_FLOW:
        acme_flow_resume(d->flow, &d->act);
        perform(d);
        break;
    default:
        break;
    }
}

/* ---- challenge provisioning (flow ops) ---- */

static int ops_set(void *arg, const char *domain, enum acme_chall_type type, const char *token,
                   const char *key_auth)
{
    struct dom *d = arg;
    struct acme_mgr *m = d->m;
    char name[ACME_TOKEN_MAX + 300];
    if (type == ACME_CH_TLS_ALPN01) {
        char *cp = NULL, *kp = NULL;
        size_t cl = 0, kl = 0;
        int rc = acme_alpn_cert_pem(domain, key_auth, (int64_t)time(NULL), &cp, &cl, &kp, &kl);
        if (rc != NB_OK)
            return rc;
        struct tls_cert *c = NULL;
        rc = tls_cert_challenge_from_pem(cp, cl, kp, kl, &c);
        if (rc == NB_OK) {
            /* autocert keeps the challenge certificate in the cache as <domain>+token too */
            size_t all = kl + cl;
            char *buf = malloc(all);
            if (buf) {
                memcpy(buf, kp, kl);
                memcpy(buf + kl, cp, cl);
                snprintf(name, sizeof name, "%s+token", domain);
                if (acme_cache_put(m->cert_dir, name, buf, all) != NB_OK)
                    nb_warn(MOD, "%s: cannot write %s", domain, name);
                acme_pem_free(buf, all);
            }
            tls_cert_unref(d->chall);
            d->chall = c;
        }
        acme_pem_free(kp, kl);
        free(cp);
        return rc;
    }
    if (type == ACME_CH_HTTP01) {
        struct token *t = calloc(1, sizeof *t);
        if (!t)
            return NB_E_NOMEM;
        snprintf(t->token, sizeof t->token, "%s", token);
        snprintf(t->key_auth, sizeof t->key_auth, "%s", key_auth);
        t->next = m->tokens;
        m->tokens = t;
        snprintf(name, sizeof name, "%s+http-01", token);
        if (acme_cache_put(m->cert_dir, name, key_auth, strlen(key_auth)) != NB_OK)
            nb_warn(MOD, "%s: cannot write %s", domain, name);
        return NB_OK;
    }
    return NB_E_INVAL;
}

static void ops_clear(void *arg, const char *domain, enum acme_chall_type type, const char *token)
{
    struct dom *d = arg;
    struct acme_mgr *m = d->m;
    char name[ACME_TOKEN_MAX + 300];
    if (type == ACME_CH_TLS_ALPN01) {
        tls_cert_unref(d->chall);
        d->chall = NULL;
        snprintf(name, sizeof name, "%s+token", domain);
        acme_cache_del(m->cert_dir, name);
    } else if (type == ACME_CH_HTTP01) {
        for (struct token **pp = &m->tokens; *pp; pp = &(*pp)->next) {
            if (strcmp((*pp)->token, token) == 0) {
                struct token *t = *pp;
                *pp = t->next;
                sodium_memzero(t, sizeof *t);
                free(t);
                break;
            }
        }
        snprintf(name, sizeof name, "%s+http-01", token);
        acme_cache_del(m->cert_dir, name);
    }
}

static int64_t ops_now(void *arg)
{
    return (int64_t)time(NULL);
}

/* ---- HTTP to the CA ---- */

static void x_response(void *arg, struct http_exchange *x, const struct http_resp_info *ri)
{
    struct dom *d = arg;
    d->status = ri->status;
    const struct http_field *f;
    d->location_len = d->nonce_len = d->retry_after_len = 0;
    if ((f = http_hdrs_get(ri->hdrs, "Location")) && f->value_len < sizeof d->location) {
        memcpy(d->location, f->value, f->value_len);
        d->location_len = f->value_len;
    }
    if ((f = http_hdrs_get(ri->hdrs, "Replay-Nonce")) && f->value_len < sizeof d->nonce) {
        memcpy(d->nonce, f->value, f->value_len);
        d->nonce_len = f->value_len;
    }
    if ((f = http_hdrs_get(ri->hdrs, "Retry-After")) && f->value_len < sizeof d->retry_after) {
        memcpy(d->retry_after, f->value, f->value_len);
        d->retry_after_len = f->value_len;
    }
}

static void x_body(void *arg, struct http_exchange *x, const uint8_t *data, size_t len)
{
    struct dom *d = arg;
    if (d->too_big)
        return;
    if (d->body_len + len > ACME_BODY_MAX) {
        d->too_big = true;
        return;
    }
    uint8_t *nb = realloc(d->body, d->body_len + len);
    if (!nb) {
        d->too_big = true;
        return;
    }
    d->body = nb;
    memcpy(d->body + d->body_len, data, len);
    d->body_len += len;
}

static void x_end(void *arg, struct http_exchange *x, const struct http_hdrs *tr)
{
    struct dom *d = arg;
    d->x = NULL;
    if (d->too_big) {
        free(d->body);
        d->body = NULL;
        d->body_len = 0;
        d->too_big = false;
        acme_flow_on_error(d->flow, "response too big", &d->act);
        perform(d);
        return;
    }
    struct acme_resp r = {
        .status = d->status,
        .location = d->location,
        .location_len = d->location_len,
        .nonce = d->nonce,
        .nonce_len = d->nonce_len,
        .retry_after = d->retry_after,
        .retry_after_len = d->retry_after_len,
        .body = d->body,
        .body_len = d->body_len,
    };
    nb_debug(MOD, "%s: %s %s -> %d", d->name, d->act.method, d->act.url, d->status);
    acme_flow_on_resp(d->flow, &r, &d->act);
    free(d->body);
    d->body = NULL;
    d->body_len = 0;
    perform(d);
}

static void x_error(void *arg, struct http_exchange *x, enum http_xerr kind, const char *reason,
                    bool got)
{
    struct dom *d = arg;
    d->x = NULL;
    free(d->body);
    d->body = NULL;
    d->body_len = 0;
    d->too_big = false;
    acme_flow_on_error(d->flow, reason ? reason : "connection failed", &d->act);
    perform(d);
}

static void x_ready(void *arg, struct http_exchange *x)
{
    struct dom *d = arg;
    if (d->act.body_len) {
        if (http_exchange_write(x, d->act.body, d->act.body_len) != NB_OK ||
            http_exchange_write_end(x, NULL) != NB_OK) {
            /* the exchange reports the failure through on_error */
        }
    }
}

static const struct http_exchange_cbs xcbs = {
    .on_ready = x_ready,
    .on_response = x_response,
    .on_body = x_body,
    .on_end = x_end,
    .on_error = x_error,
};

static struct ca_host *ca_host(struct acme_mgr *m, const char *host, uint16_t port)
{
    for (size_t i = 0; i < MAX_HOSTS; i++)
        if (m->hosts[i].init && m->hosts[i].port == port && strcmp(m->hosts[i].host, host) == 0)
            return &m->hosts[i];
    for (size_t i = 0; i < MAX_HOSTS; i++) {
        struct ca_host *h = &m->hosts[i];
        if (h->init)
            continue;
        struct tls_connect_opts o = {
            .server_name = host, .alpn = "http/1.1", .handshake_timeout_ms = 30000};
        if (tls_dialer_init(&h->td, m->tls, &m->tcp, &o) != NB_OK)
            return NULL;
        snprintf(h->host, sizeof h->host, "%s", host);
        h->port = port;
        h->init = true;
        return h;
    }
    return NULL;
}

static void send_resolved(struct dom *d, const struct sockaddr_storage *addr)
{
    struct acme_mgr *m = d->m;
    char host[256];
    uint16_t port;
    const char *target;
    if (acme_url_split(d->act.url, host, sizeof host, &port, &target) != NB_OK) {
        acme_flow_on_error(d->flow, "bad URL", &d->act);
        perform(d);
        return;
    }
    struct ca_host *h = ca_host(m, host, port);
    if (!h) {
        acme_flow_on_error(d->flow, "too many CA hosts", &d->act);
        perform(d);
        return;
    }
    struct http_upstream up;
    memset(&up, 0, sizeof up);
    up.dialer = &h->td.base;
    up.net = h;
    up.addr = *addr;
    up.dial_timeout_ms = 30000;
    struct nb_arena a;
    nb_arena_init(&a);
    struct http_hdrs hd;
    http_hdrs_init(&hd, &a);
    char hostport[300];
    bool v6 = strchr(host, ':') != NULL;
    if (port == 443)
        snprintf(hostport, sizeof hostport, v6 ? "[%s]" : "%s", host);
    else
        snprintf(hostport, sizeof hostport, v6 ? "[%s]:%u" : "%s:%u", host, port);
    int rc = http_hdrs_add_copy(&hd, "Host", hostport);
    if (rc == NB_OK)
        rc = http_hdrs_add_copy(&hd, "User-Agent", "nbproxy-acme/0.1");
    if (rc == NB_OK && d->act.body)
        rc = http_hdrs_add_copy(&hd, "Content-Type", "application/jose+json");
    struct http_out_req rq = {d->act.method, strlen(d->act.method),   target, strlen(target),
                              &hd,           (int64_t)d->act.body_len};
    if (rc == NB_OK)
        rc = http_exchange_start(m->http, &up, &rq, &xcbs, d, &d->x);
    nb_arena_deinit(&a);
    if (rc != NB_OK) {
        d->x = NULL;
        acme_flow_on_error(d->flow, nb_strerror(rc), &d->act);
        perform(d);
    }
}

static void on_resolved(void *arg, int err, const char *reason,
                        const struct sockaddr_storage *addrs, size_t n)
{
    struct dom *d = arg;
    d->q = NULL;
    if (err != NB_OK || n == 0) {
        acme_flow_on_error(d->flow, reason ? reason : "DNS failed", &d->act);
        perform(d);
        return;
    }
    send_resolved(d, &addrs[0]);
}

/* Carries out d->act. Runs from timers, DNS and exchange callbacks (never from an API call). */
static void perform(struct dom *d)
{
    struct acme_mgr *m = d->m;
    switch (d->act.kind) {
    case ACME_DO_HTTP: {
        char host[256];
        uint16_t port;
        const char *target;
        if (acme_url_split(d->act.url, host, sizeof host, &port, &target) != NB_OK) {
            attempt_failed(d, "the CA gave a URL that is not https");
            return;
        }
        int rc = nb_dns_resolve(m->dns, host, port, AF_UNSPEC, on_resolved, d, &d->q);
        if (rc != NB_OK) {
            d->q = NULL;
            attempt_failed(d, "cannot resolve the CA host");
        }
        return;
    }
    case ACME_DO_WAIT:
        d->tkind = T_FLOW;
        nb_timer_arm(m->loop, &d->t, d->act.wait_ms);
        return;
    case ACME_DO_DONE: {
        const char *k, *c;
        size_t kl, cl;
        acme_flow_result(d->flow, &k, &kl, &c, &cl);
        struct tls_cert *cert = NULL;
        if (tls_cert_from_pem(c, cl, k, kl, &cert) != NB_OK) {
            attempt_failed(d, "the issued certificate does not load");
            return;
        }
        size_t all = kl + cl;
        char *buf = malloc(all);
        if (!buf || (memcpy(buf, k, kl), memcpy(buf + kl, c, cl),
                     acme_cache_put(m->cert_dir, d->name, buf, all)) != NB_OK)
            nb_warn(MOD, "%s: cannot write the certificate to %s", d->name, m->cert_dir);
        acme_pem_free(buf, all);
        m->st.orders = m->acct.orders;
        end_attempt(d);
        /* spec §7.2: the issuance metric, for a domain's first certificate (the reference's
         * prefetch path; renewals are counted in renewals). */
        if (d->cert == NULL && d->first_order_ms)
            nb_hist_observe(&m->st.issue_ms, (double)(nb_now_ms() - d->first_order_ms));
        d->first_order_ms = 0;
        set_cert(d, cert, true);
        return;
    }
    case ACME_DO_FAIL:
    default: {
        char why[400];
        snprintf(why, sizeof why, "%s", acme_flow_error(d->flow));
        attempt_failed(d, why);
        return;
    }
    }
}

/* ---- API ---- */

int acme_mgr_new(const struct acme_mgr_opts *o, struct acme_mgr **out)
{
    if (!o || !o->loop || !o->dir_url || !o->cert_dir || !*o->cert_dir)
        return NB_E_INVAL;
    char host[256];
    uint16_t port;
    const char *target;
    if (strlen(o->dir_url) >= ACME_URL_MAX ||
        acme_url_split(o->dir_url, host, sizeof host, &port, &target) != NB_OK)
        return NB_E_INVAL;
    struct acme_mgr *m = calloc(1, sizeof *m);
    if (!m)
        return NB_E_NOMEM;
    m->loop = o->loop;
    nb_hist_init(&m->st.issue_ms, nb_hist_bounds_sync_ms, 11);
    m->tcp = (struct nb_dialer){tcp_dial, m};
    m->http01 = o->http01;
    m->on_ready = o->on_ready;
    m->arg = o->arg;
    m->retry_ms = o->retry_ms ? o->retry_ms : 60000;
    m->deadline_ms = o->deadline_ms ? o->deadline_ms : 300000;
    m->jitter_ms = o->prefetch_jitter_ms ? o->prefetch_jitter_ms : 200;
    m->cert_dir = strdup(o->cert_dir);
    int rc = NB_E_NOMEM;
    if (!m->cert_dir)
        goto fail;
    if (mkdir(m->cert_dir, 0700) != 0 && errno != EEXIST) {
        nb_error(MOD, "cannot create %s: %s", m->cert_dir, strerror(errno));
        rc = NB_E_IO;
        goto fail;
    }
    rc = load_account_key(m);
    if (rc != NB_OK)
        goto fail;
    struct tls_client_opts co = {.ca_file = o->ca_file, .alpn = "http/1.1"};
    rc = tls_ctx_new_client(&co, &m->tls);
    if (rc != NB_OK)
        goto fail;
    if (o->dns) {
        m->dns = o->dns;
    } else {
        rc = nb_dns_new(m->loop, NULL, &m->dns);
        if (rc != NB_OK)
            goto fail;
        m->own_dns = true;
    }
    m->http = http_client_new(m->loop, NULL);
    rc = NB_E_NOMEM;
    if (!m->http)
        goto fail;
    snprintf(m->acct.dir_url, sizeof m->acct.dir_url, "%s", o->dir_url);
    m->acct.key = &m->key;
    if (o->eab_kid && *o->eab_kid) {
        long n = o->eab_hmac_key
                     ? acme_b64url_decode(m->eab_mac, sizeof m->eab_mac, o->eab_hmac_key)
                     : -1;
        if (n <= 0) {
            nb_error(MOD, "--acme-eab-hmac-key is not base64url (no padding): EAB disabled");
        } else {
            m->eab_kid = strdup(o->eab_kid);
            if (!m->eab_kid)
                goto fail;
            m->eab_mac_len = (size_t)n;
            m->acct.eab_kid = m->eab_kid;
            m->acct.eab_mac = m->eab_mac;
            m->acct.eab_mac_len = m->eab_mac_len;
        }
    }
    *out = m;
    return NB_OK;
fail:
    acme_mgr_free(m);
    return rc;
}

static void dom_free(struct dom *d)
{
    end_attempt(d);
    tls_cert_unref(d->cert);
    tls_cert_unref(d->chall);
    free(d);
}

void acme_mgr_free(struct acme_mgr *m)
{
    if (!m)
        return;
    while (m->doms) {
        struct dom *d = m->doms;
        m->doms = d->next;
        dom_free(d);
    }
    while (m->tokens) {
        struct token *t = m->tokens;
        m->tokens = t->next;
        sodium_memzero(t, sizeof *t);
        free(t);
    }
    if (m->http)
        http_client_free(m->http);
    for (size_t i = 0; i < MAX_HOSTS; i++)
        if (m->hosts[i].init)
            tls_dialer_deinit(&m->hosts[i].td);
    if (m->own_dns)
        nb_dns_free(m->dns);
    tls_ctx_unref(m->tls);
    acme_key_free(&m->key);
    sodium_memzero(m->eab_mac, sizeof m->eab_mac);
    free(m->eab_kid);
    free(m->cert_dir);
    free(m);
}

static bool name_ok(const char *s)
{
    size_t l = s ? strlen(s) : 0;
    if (l == 0 || l > 253 || !strchr(s, '.') || s[0] == '.' || strchr(s, '*') || strchr(s, '/') ||
        strchr(s, ':'))
        return false;
    for (const char *p = s; *p; p++)
        if (!isalnum((unsigned char)*p) && *p != '-' && *p != '.' && *p != '_')
            return false;
    return true;
}

int acme_mgr_add(struct acme_mgr *m, const char *domain)
{
    if (!name_ok(domain))
        return NB_E_INVAL;
    if (find(m, domain))
        return NB_E_EXISTS;
    struct dom *d = calloc(1, sizeof *d);
    if (!d)
        return NB_E_NOMEM;
    d->m = m;
    strcpy(d->name, domain);
    d->lock_fd = -1;
    nb_timer_init(&d->t, on_timer, d);
    nb_timer_init(&d->deadline, on_deadline, d);
    nb_timer_init(&d->poll, on_poll, d);
    d->next = m->doms;
    m->doms = d;
    d->tkind = T_START;
    nb_timer_arm(m->loop, &d->t, randombytes_uniform(m->jitter_ms));
    return NB_OK;
}

void acme_mgr_remove(struct acme_mgr *m, const char *domain)
{
    for (struct dom **pp = &m->doms; *pp; pp = &(*pp)->next) {
        if (strcmp((*pp)->name, domain) == 0) {
            struct dom *d = *pp;
            *pp = d->next;
            dom_free(d);
            return;
        }
    }
}

struct tls_cert *acme_cert_for(struct acme_mgr *m, const char *sni, bool ecdsa_ok)
{
    if (!sni || !*sni || !strchr(sni, '.'))
        return NULL;
    struct dom *d = find(m, sni);
    if (!d || !d->cert)
        return NULL;
    return d->cert;
}

struct tls_cert *acme_challenge_cert(struct acme_mgr *m, const char *sni)
{
    struct dom *d = sni ? find(m, sni) : NULL;
    return d ? d->chall : NULL;
}

static bool host_ok(void *arg, const char *host)
{
    return find(arg, host) != NULL;
}

static const char *token_lookup(void *arg, const char *token)
{
    struct acme_mgr *m = arg;
    for (struct token *t = m->tokens; t; t = t->next)
        if (strcmp(t->token, token) == 0)
            return t->key_auth;
    return NULL;
}

void acme_mgr_http01(struct acme_mgr *m, const char *method, const char *host, const char *target,
                     struct acme_http01_reply *r)
{
    acme_http01_handle(method, host, target, host_ok, token_lookup, m, r);
}

enum acme_dstate acme_mgr_state(struct acme_mgr *m, const char *domain)
{
    struct dom *d = find(m, domain);
    return d ? d->state : ACME_D_PENDING;
}

void acme_mgr_stats(const struct acme_mgr *m, struct acme_mgr_stats *st)
{
    *st = m->st;
    st->orders = m->acct.orders;
    st->requests = m->acct.requests;
}
