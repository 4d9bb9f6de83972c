/* SPDX-License-Identifier: BSD-3-Clause */
#include "core/acme_link.h"

#include "acme/mgr.h"
#include "core/certs.h"
#include "core/config.h"
#include "core/mapping.h"
#include "http/server.h"
#include "platform/addr.h"
#include "platform/err.h"
#include "platform/log.h"
#include "platform/sock.h"
#include "platform/strmap.h"

#include <ctype.h>
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

struct nb_acme_link {
    struct acme_mgr *mgr;      /* NULL for a link made by nb_acme_link_new_ops() */
    struct nb_acme_link_ops o; /* where domains go: the manager, or a test's */
    struct nb_certs *certs;
    struct nb_strmap domains; /* service id -> its registered domain (malloc'd) */
    struct nb_strmap refs;    /* domain -> how many services hold it ((void *)(uintptr_t)n) */
    nb_acme_ready_fn ready;
    void *ready_arg;
    /* --acme-addr (http-01 only) */
    struct http_server *h01_srv;
    struct nb_listener *h01_lst;
    struct http_listener_ctx h01_ctx;
};

/* The certificate store's ACME hook (tls_select_fn): borrowed certificates, as the store's. */
static struct tls_cert *acme_select(void *arg, const struct tls_hello *h)
{
    struct acme_mgr *m = arg;
    if (h->acme_only)
        return acme_challenge_cert(m, h->sni);
    return acme_cert_for(m, h->sni, h->ecdsa_ok);
}

/* The real ops: the manager's host policy and the certificate store's wildcard directory. */
static int mgr_add(void *arg, const char *domain)
{
    struct nb_acme_link *l = arg;
    return acme_mgr_add(l->mgr, domain);
}

static void mgr_remove(void *arg, const char *domain)
{
    struct nb_acme_link *l = arg;
    acme_mgr_remove(l->mgr, domain);
}

static bool certs_covered(void *arg, const char *domain)
{
    struct nb_acme_link *l = arg;
    return nb_certs_check_domain(l->certs, domain);
}

static void on_ready(void *arg, const char *domain, bool issued)
{
    struct nb_acme_link *l = arg;
    nb_info("acme", "%s: certificate %s", domain, issued ? "issued" : "loaded from the cache");
    if (l->ready)
        l->ready(l->ready_arg, domain, issued);
}

/* The ACME domain of a mapping: port stripped, lower-cased; false when it does not fit. */
static bool acme_domain(const char *d, char out[256])
{
    if (d == NULL || d[0] == '\0')
        return false;
    acme_strip_port(d, out, 256);
    if (out[0] == '\0' || strlen(d) > 255)
        return false;
    for (char *p = out; *p; p++)
        *p = (char)tolower((unsigned char)*p);
    return true;
}

/* --acme-addr: every request goes to the http-01 rules of spec §7.2 (acme/http01.h). */
static void h01_request(void *arg, struct http_req *req)
{
    struct nb_acme_link *l = arg;
    char *method = nb_arena_strndup(&req->arena, req->method, req->method_len);
    char *host = nb_arena_strndup(&req->arena, req->host ? req->host : "", req->host_len);
    char *target = nb_arena_strndup(&req->arena, req->target, req->target_len);
    struct acme_http01_reply *r = nb_arena_alloc(&req->arena, sizeof *r);
    if (method == NULL || host == NULL || target == NULL || r == NULL) {
        http_resp_abort(req);
        return;
    }
    acme_mgr_http01(l->mgr, method, host, target, r);
    struct http_hdrs extra;
    http_hdrs_init(&extra, &req->arena);
    if (r->location[0] && http_hdrs_add_copy(&extra, "Location", r->location) != NB_OK) {
        http_resp_abort(req);
        return;
    }
    (void)http_resp_simple(req, r->status, r->content_type, &extra, r->body, r->body_len);
}

static int h01_listen(struct nb_acme_link *l, struct nb_loop *loop, const char *addr)
{
    struct sockaddr_storage ss;
    socklen_t sl;
    if (addr == NULL || nb_addr_parse(addr, &ss, &sl) != NB_OK) {
        nb_error("acme", "--acme-addr \"%s\": not an address (ip:port, [v6]:port or :port)",
                 addr ? addr : "");
        return NB_E_INVAL;
    }
    struct http_handler h = {.on_request = h01_request, .arg = l};
    l->h01_srv = http_server_new(loop, NULL, &h);
    if (l->h01_srv == NULL)
        return NB_E_NOMEM;
    l->h01_ctx = (struct http_listener_ctx){.server = l->h01_srv};
    int rc = nb_tcp_listen(loop, (struct sockaddr *)&ss, 128, http_server_accept_cb, &l->h01_ctx,
                           &l->h01_lst);
    if (rc != NB_OK && ss.ss_family == AF_INET6 && addr[0] == ':') {
        /* ":port" on a host without IPv6: IPv4 any. */
        nb_addr_from_ip("0.0.0.0", nb_addr_port((struct sockaddr *)&ss), &ss, NULL);
        rc = nb_tcp_listen(loop, (struct sockaddr *)&ss, 128, http_server_accept_cb, &l->h01_ctx,
                           &l->h01_lst);
    }
    if (rc != NB_OK) {
        nb_error("acme", "--acme-addr %s: cannot listen: %s", addr, strerror(errno));
        return rc;
    }
    nb_info("acme", "http-01 challenges on %s", addr);
    return NB_OK;
}

int nb_acme_link_new(struct nb_loop *loop, struct nb_dns *dns, const struct nb_config *cfg,
                     struct nb_certs *certs, nb_acme_ready_fn ready, void *ready_arg,
                     struct nb_acme_link **out)
{
    *out = NULL;
    const char *type = cfg->acme_challenge_type ? cfg->acme_challenge_type : "";
    bool http01 = strcmp(type, "http-01") == 0;
    if (!http01 && strcmp(type, "tls-alpn-01") != 0 && type[0] != '\0') {
        nb_error("acme", "--acme-challenge-type \"%s\": must be tls-alpn-01 or http-01", type);
        return NB_E_INVAL;
    }
    const char *lock = cfg->cert_lock_method ? cfg->cert_lock_method : "auto";
    if (strcmp(lock, "k8s-lease") == 0 ||
        (strcmp(lock, "auto") == 0 && getenv("KUBERNETES_SERVICE_HOST") != NULL))
        nb_warn("acme",
                "--cert-lock-method %s: Kubernetes leases are not built; using flock on "
                "<cert-dir>/<domain>.lock (replicas must share the cert dir)",
                lock);
    else if (strcmp(lock, "flock") != 0 && strcmp(lock, "auto") != 0)
        nb_warn("acme", "--cert-lock-method \"%s\": unknown, using flock", lock);
    struct nb_acme_link *l = calloc(1, sizeof *l);
    if (l == NULL)
        return NB_E_NOMEM;
    nb_strmap_init(&l->domains);
    nb_strmap_init(&l->refs);
    l->o = (struct nb_acme_link_ops){mgr_add, mgr_remove, certs_covered, l};
    l->certs = certs;
    l->ready = ready;
    l->ready_arg = ready_arg;
    struct acme_mgr_opts o = {
        .loop = loop,
        .dns = dns,
        .dir_url = cfg->acme_dir,
        .cert_dir = cfg->cert_dir,
        /* Go's crypto/x509 reads its roots from SSL_CERT_FILE when set; so do we. */
        .ca_file = getenv("SSL_CERT_FILE"),
        .eab_kid = cfg->acme_eab_kid,
        .eab_hmac_key = cfg->acme_eab_hmac_key,
        .http01 = http01,
        .on_ready = on_ready,
        .arg = l,
    };
    int rc = acme_mgr_new(&o, &l->mgr);
    if (rc != NB_OK) {
        nb_error("acme", "cannot start the ACME client (--acme-dir %s, --cert-dir %s): %s",
                 cfg->acme_dir ? cfg->acme_dir : "", cfg->cert_dir ? cfg->cert_dir : "",
                 nb_strerror(rc));
        nb_acme_link_free(l);
        return rc;
    }
    nb_certs_set_acme(certs, acme_select, l->mgr);
    if (http01 && (rc = h01_listen(l, loop, cfg->acme_addr)) != NB_OK) {
        nb_acme_link_free(l);
        return rc;
    }
    nb_info("acme", "ACME certificates from %s, cache %s, challenge %s", cfg->acme_dir,
            cfg->cert_dir, http01 ? "tls-alpn-01, then http-01" : "tls-alpn-01");
    *out = l;
    return NB_OK;
}

struct nb_acme_link *nb_acme_link_new_ops(const struct nb_acme_link_ops *ops)
{
    struct nb_acme_link *l = calloc(1, sizeof *l);
    if (l == NULL)
        return NULL;
    nb_strmap_init(&l->domains);
    nb_strmap_init(&l->refs);
    l->o = *ops;
    return l;
}

void nb_acme_link_free(struct nb_acme_link *l)
{
    if (l == NULL)
        return;
    if (l->certs)
        nb_certs_set_acme(l->certs, NULL, NULL);
    if (l->h01_lst)
        nb_listener_close(l->h01_lst);
    http_server_free(l->h01_srv);
    acme_mgr_free(l->mgr);
    struct nb_strmap_iter it = {0};
    void *v;
    while (nb_strmap_next(&l->domains, &it, &v) != NULL)
        free(v);
    nb_strmap_deinit(&l->domains);
    nb_strmap_deinit(&l->refs);
    free(l);
}

/* Sets an existing key's count: replacing a value never allocates, so it cannot fail. */
static void refs_replace(struct nb_acme_link *l, const char *d, uintptr_t n)
{
    if (nb_strmap_put(&l->refs, d, (void *)n, NULL) != NB_OK)
        nb_warn("acme", "%s: lost its reference count", d);
}

/* Two services may name the same domain: ACME forgets it when the last one goes. */
static void drop(struct nb_acme_link *l, const char *service_id)
{
    char *old = nb_strmap_del(&l->domains, service_id);
    if (old == NULL)
        return;
    uintptr_t n = (uintptr_t)nb_strmap_get(&l->refs, old);
    if (n > 1) {
        refs_replace(l, old, n - 1);
    } else {
        nb_strmap_del(&l->refs, old);
        l->o.remove(l->o.arg, old);
    }
    free(old);
}

void nb_acme_link_mapping(struct nb_acme_link *l, const struct nb_mapping *m)
{
    if (l == NULL || m->id == NULL)
        return;
    char d[256];
    if (m->type == NB_UPDATE_REMOVED || nb_mapping_mode(m) != NB_MODE_HTTP ||
        !acme_domain(m->domain, d)) {
        drop(l, m->id);
        return;
    }
    const char *old = nb_strmap_get(&l->domains, m->id);
    if (old && strcmp(old, d) == 0)
        return;
    drop(l, m->id);
    /* A wildcard-directory certificate covers it: no ACME for this name (spec §7.3). */
    if (l->o.covered && l->o.covered(l->o.arg, d))
        return;
    char *copy = strdup(d);
    uintptr_t n = (uintptr_t)nb_strmap_get(&l->refs, d);
    if (copy == NULL || nb_strmap_put(&l->refs, d, (void *)(n + 1), NULL) != NB_OK) {
        free(copy);
        nb_warn("acme", "%s: out of memory registering the domain", d);
        return;
    }
    if (nb_strmap_put(&l->domains, m->id, copy, NULL) != NB_OK) {
        if (n)
            refs_replace(l, d, n);
        else
            nb_strmap_del(&l->refs, d);
        free(copy);
        nb_warn("acme", "%s: out of memory registering the domain", d);
        return;
    }
    if (n > 0)
        return; /* another service registered it already */
    int rc = l->o.add(l->o.arg, d);
    if (rc == NB_E_INVAL)
        nb_warn("acme", "%s: not a name ACME can issue for (no dot, a wildcard or too long)", d);
    else if (rc != NB_OK && rc != NB_E_EXISTS)
        nb_warn("acme", "%s: cannot register: %s", d, nb_strerror(rc));
}

bool nb_acme_link_ready(struct nb_acme_link *l, const char *domain)
{
    char d[256];
    return l && l->mgr && acme_domain(domain, d) && acme_mgr_state(l->mgr, d) == ACME_D_READY;
}

void nb_acme_link_stats(const struct nb_acme_link *l, struct acme_mgr_stats *st)
{
    if (l->mgr == NULL) { /* made by nb_acme_link_new_ops(): no manager, nothing counted */
        memset(st, 0, sizeof *st);
        nb_hist_init(&st->issue_ms, nb_hist_bounds_sync_ms, 11);
        return;
    }
    acme_mgr_stats(l->mgr, st);
}
