/* SPDX-License-Identifier: BSD-3-Clause */
#ifndef NB_CORE_CERTS_H
#define NB_CORE_CERTS_H

/*
 * The certificate store behind every TLS listener (spec/proxy.md §7): nb_certs_select() is the
 * tls_select_fn of the server contexts. Sources, in the order a handshake asks them:
 *   1. a tls-alpn-01 handshake (ALPN exactly "acme-tls/1") goes to the ACME hook only (no hook:
 *      no certificate, the handshake fails);
 *   2. the wildcard directory (--wildcard-cert-dir, §7.3): every NAME.crt with a sibling NAME.key;
 *      "*.example.com" serves exactly one label below example.com (not the apex, not two labels);
 *   3. the static pair (--cert-dir/--cert-file, --cert-key-file, §7.1), for every other name;
 *   4. the ACME hook (nb_certs_set_acme; the ACME client plugs in here);
 *   5. a self-signed certificate made at start-up for the configured domains (standalone mode
 *      with nothing configured and ACME off).
 *
 * Hot reload (§7.1): inotify on the parent directories of the static files and on the wildcard
 * directory (create, close-after-write, move-in, delete of the cert/key basenames, `..data` for
 * Kubernetes' atomic symlink swap, any .crt or .key file in the wildcard directory), 500 ms
 * debounce, plus a poll every 30 s (poll only when inotify is unavailable). A reload that fails
 * keeps the old certificate; an unchanged leaf (tls_cert_same_leaf: serial and issuer CN) is not
 * swapped. Handshakes in flight keep the certificate they started with (refcounts).
 */

#include "tls/tls.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct nb_loop;
struct nb_certs;

struct nb_certs_opts {
    const char *cert_path;    /* static chain PEM; NULL = no static certificate */
    const char *key_path;     /* its key PEM */
    const char *wildcard_dir; /* NULL or "" = none */
    /* Names for a self-signed certificate, made only when there is no static certificate. */
    const char *const *selfsigned_names;
    size_t n_selfsigned;
    uint32_t debounce_ms; /* 0 = 500 */
    uint32_t poll_ms;     /* 0 = 30 000 */
};

/* Loads everything; a static pair or wildcard directory that does not load is an error
 * (NB_E_IO / NB_E_PARSE / NB_E_INVAL with a reason in err). */
int nb_certs_new(struct nb_loop *loop, const struct nb_certs_opts *o, struct nb_certs **out,
                 char *err, size_t errlen) __attribute__((warn_unused_result));
void nb_certs_free(struct nb_certs *c);

/* The tls_select_fn (arg = the store). Returns a borrowed certificate or NULL. */
struct tls_cert *nb_certs_select(void *arg, const struct tls_hello *h);

/* The ACME client's selector (spec §7.2), asked after the files. NULL fn removes it. */
void nb_certs_set_acme(struct nb_certs *c, tls_select_fn fn, void *arg);

/* True when a file certificate (wildcard or static) covers the domain: the "certificate
 * issued" status of §3.6. Logs a warning when a static certificate does not (§7.1). */
bool nb_certs_check_domain(struct nb_certs *c, const char *domain);

/* Re-reads the files now (what the watcher and the poll do). */
void nb_certs_reload(struct nb_certs *c);

struct nb_certs_stats {
    uint64_t reloads;         /* certificates swapped */
    uint64_t reload_skipped;  /* same leaf: kept */
    uint64_t reload_failures; /* unreadable or invalid: old kept */
    uint32_t wildcard_certs;
    bool has_static;
    bool selfsigned;
};
void nb_certs_stats(const struct nb_certs *c, struct nb_certs_stats *st);

/* Single-label wildcard match of §7.3 (pure): host ends with "." + suffix and what precedes
 * it is one non-empty label. Case-insensitive. */
bool nb_wildcard_match(const char *suffix, const char *host);

#endif
