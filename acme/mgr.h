/* SPDX-License-Identifier: BSD-3-Clause */
#ifndef NB_ACME_MGR_H
#define NB_ACME_MGR_H

/*
 * The ACME manager (spec/proxy.md §7.2): the shell around acme/flow.c on the one loop. It keeps
 * the domains registered by mappings (the host policy), their certificates (loaded from the
 * --cert-dir cache or obtained by an order), renews them, and answers the two lookups a TLS
 * certificate selector needs plus the http-01 handler.
 *
 * Talking to the CA: http/client.h over a tls_dialer over host TCP (wolfSSL, all on the loop),
 * the directory host resolved with platform/dns.h. Trust: `ca_file` (tests: pebble's minica
 * root) or the system roots.
 *
 * Per domain: prefetch after 0-199 ms, with an overall deadline of 5 min per attempt: a valid
 * cached certificate (covering the domain, not yet at its renewal time) is used without an
 * order; otherwise the flock lock <cert-dir>/<domain>.lock is taken (non-blocking tries every
 * 100 ms on a timer, never blocking the loop; a lock that cannot be opened means proceed
 * unlocked), the cache is checked again (another replica may have finished), and an order runs.
 * Success: cache written, certificate swapped in, on_ready(domain, true). Failure: state failed,
 * retried after retry_ms (1 min). Renewal at acme_renew_at() while the old certificate keeps
 * serving.
 *
 * Ownership: the manager copies every option string. Certificates returned by the lookups are
 * borrowed (tls_select_fn semantics: the manager holds the reference, the TLS stream takes its
 * own); they stay valid until control returns to the loop. Callbacks run from the loop, never
 * from inside a call into the manager.
 */

#include "acme/http01.h"
#include "platform/metrics.h"
#include "tls/cert.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct nb_loop;
struct nb_dns;
struct acme_mgr;

enum acme_dstate {
    ACME_D_PENDING = 0, /* registered, nothing yet */
    ACME_D_IN_PROGRESS, /* lock wait or order running, no certificate yet */
    ACME_D_READY,       /* a certificate is served (renewal may be running) */
    ACME_D_FAILED,      /* the last attempt failed; retried after retry_ms */
};

struct acme_mgr_opts {
    struct nb_loop *loop;
    struct nb_dns *dns;       /* resolver for the CA host; NULL = the manager makes one */
    const char *dir_url;      /* --acme-dir */
    const char *cert_dir;     /* --cert-dir (the cache) */
    const char *ca_file;      /* trust for the CA's HTTPS; NULL = system roots */
    const char *eab_kid;      /* --acme-eab-kid, NULL/"" = none */
    const char *eab_hmac_key; /* --acme-eab-hmac-key, base64url without padding */
    bool http01;              /* --acme-challenge-type http-01: second choice after tls-alpn-01 */
    /* A certificate became ready for domain: issued = obtained by an order now (vs. loaded from
     * the cache). For SendStatusUpdate(certificate_issued) and the issuance metric. */
    void (*on_ready)(void *arg, const char *domain, bool issued);
    void *arg;                   /* on_ready may call acme_mgr_add/_remove, not acme_mgr_free */
    uint32_t retry_ms;           /* after a failure; 0 = 60 000 */
    uint32_t deadline_ms;        /* per attempt; 0 = 300 000 */
    uint32_t prefetch_jitter_ms; /* 0 = 200 (random 0..199 ms) */
};

/* NB_OK, NB_E_INVAL (missing loop/dir_url/cert_dir, bad URL), NB_E_IO (cert dir or account key
 * unusable, CA file unreadable), NB_E_NOMEM. */
int acme_mgr_new(const struct acme_mgr_opts *o, struct acme_mgr **out)
    __attribute__((warn_unused_result));
/* Cancels everything (no callbacks), releases locks, removes transient challenge files. */
void acme_mgr_free(struct acme_mgr *m);

/* A mapping registered a domain (port stripped by the caller, exact string, lower-case
 * expected): host policy + prefetch. NB_OK, NB_E_EXISTS (already there), NB_E_INVAL (empty, no
 * dot, over 253 bytes, a wildcard), NB_E_NOMEM. */
int acme_mgr_add(struct acme_mgr *m, const char *domain);
/* The domain is no longer served: its order is cancelled, the certificate dropped from memory
 * (the cache file stays). */
void acme_mgr_remove(struct acme_mgr *m, const char *domain);

/* For a certificate selector: the certificate for sni (borrowed) or NULL
 * (unknown host, empty SNI, no dot, not ready). ecdsa_ok is accepted for the RSA fallback that
 * is not built: the ECDSA certificate is returned either way. */
struct tls_cert *acme_cert_for(struct acme_mgr *m, const char *sni, bool ecdsa_ok);
/* For a selector when hello->acme_only: the tls-alpn-01 certificate for sni (borrowed), or
 * NULL. */
struct tls_cert *acme_challenge_cert(struct acme_mgr *m, const char *sni);

/* The --acme-addr handler (acme/http01.h rules) over this manager's domains and tokens. The
 * reply's body may point into the manager: use it before the next call into the manager. */
void acme_mgr_http01(struct acme_mgr *m, const char *method, const char *host, const char *target,
                     struct acme_http01_reply *r);

enum acme_dstate acme_mgr_state(struct acme_mgr *m, const char *domain);
const char *acme_dstate_name(enum acme_dstate s);

struct acme_mgr_stats {
    uint64_t orders;     /* newOrder requests sent */
    uint64_t requests;   /* ACME responses received */
    uint64_t issued;     /* certificates obtained by an order */
    uint64_t from_cache; /* certificates loaded from the cache */
    uint64_t failures;   /* attempts that failed */
    uint64_t renewals;   /* orders started for a domain that had a certificate */
    /* Order started -> first certificate for a domain served, ms (issued by an order only, not
     * loaded from the cache, not renewals); nb_hist_bounds_sync_ms buckets (100 ms .. 300 s). */
    struct nb_histogram issue_ms;
};
void acme_mgr_stats(const struct acme_mgr *m, struct acme_mgr_stats *st);

#endif
