/* SPDX-License-Identifier: BSD-3-Clause */
#ifndef NB_CORE_ACME_LINK_H
#define NB_CORE_ACME_LINK_H

/*
 * ACME mode (--acme-certs, spec/proxy.md §7.2) wired into the appliance: the acme/ manager
 * behind the certificate store's ACME hook (tls-alpn-01 handshakes and served certificates),
 * the host policy fed by HTTP mappings as they are applied (standalone file and management
 * stream alike), the --acme-addr listener for http-01, and the "certificate issued" report.
 *
 * Domains: an HTTP mapping's domain, port stripped and lower-cased, is registered when the
 * mapping is created or modified (a modified domain replaces the old one) and dropped when it
 * is removed. Domains a wildcard-directory certificate covers skip ACME (§7.3).
 */

#include <stdbool.h>

struct nb_loop;
struct nb_dns;
struct nb_config;
struct nb_certs;
struct nb_mapping;
struct nb_acme_link;
struct acme_mgr_stats;

/* Called when a certificate for domain is served (loaded from the cache or issued). */
typedef void (*nb_acme_ready_fn)(void *arg, const char *domain, bool issued);

/*
 * Starts the manager (cert dir = --cert-dir, directory = --acme-dir, EAB, challenge type) and
 * plugs it into certs; with --acme-challenge-type http-01 also listens on --acme-addr.
 * The ACME server's TLS is verified against the system roots, or SSL_CERT_FILE when set (as
 * Go does). NB_OK, or an nb_err after logging why.
 */
int nb_acme_link_new(struct nb_loop *loop, struct nb_dns *dns, const struct nb_config *cfg,
                     struct nb_certs *certs, nb_acme_ready_fn ready, void *ready_arg,
                     struct nb_acme_link **out);
/* Unplugs from the certificate store, stops the listener and the manager. NULL is fine. */
void nb_acme_link_free(struct nb_acme_link *l);

/* A mapping was applied successfully: registers / replaces / drops its domain. */
void nb_acme_link_mapping(struct nb_acme_link *l, const struct nb_mapping *m);

/* ACME serves a certificate for domain (a port is ignored) now. */
bool nb_acme_link_ready(struct nb_acme_link *l, const char *domain);

/* The manager's counters and the issuance histogram (proxy_certificate_issue_duration_ms). */
void nb_acme_link_stats(const struct nb_acme_link *l, struct acme_mgr_stats *st);

/*
 * The seam nb_acme_link_mapping() drives: a domain gained its first service (add: the manager's
 * acme_mgr_add, NB_OK / NB_E_EXISTS / NB_E_INVAL / NB_E_NOMEM), lost its last one (remove), or
 * is covered by a wildcard-directory certificate and skips ACME (covered, may be NULL).
 */
struct nb_acme_link_ops {
    int (*add)(void *arg, const char *domain);
    void (*remove)(void *arg, const char *domain);
    bool (*covered)(void *arg, const char *domain);
    void *arg;
};
/* A link without a manager, certificate store or listener whose domains go to ops (unit tests
 * of the per-domain reference count). Free with nb_acme_link_free(). NULL: no memory. */
struct nb_acme_link *nb_acme_link_new_ops(const struct nb_acme_link_ops *ops);

#endif
