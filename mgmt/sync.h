/* SPDX-License-Identifier: BSD-3-Clause */
#ifndef NB_MGMT_SYNC_H
#define NB_MGMT_SYNC_H

/*
 * The management connection's lifecycle (spec/proxy.md §2, §3): connect, open the mapping
 * stream (SyncMappings with an ack after every batch, or GetMappingUpdate when management
 * answers Unimplemented), apply every mapping through the hooks (the same nb_proxy_apply the
 * standalone file uses), reconcile after the snapshot, report SendStatusUpdate, register one
 * proxy peer per account with CreateProxyPeer, send access-log records, and reconnect with
 * backoff whenever the stream ends. Health follows the connection through the hooks.
 *
 * Batches are applied strictly in order, one mapping after another, and the next message is not
 * read until the batch is done (the reference's "stall" property): while a CreateProxyPeer is
 * outstanding, nothing else of the stream is consumed. A batch watchdog tears the stream down
 * when a batch takes longer than NB_PROXY_MAPPING_BATCH_WATCHDOG (default 2 minutes).
 */

#include "platform/metrics.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct nb_loop;
struct nb_dns;
struct nb_mapping;
struct nb_access_log_entry;
struct mgmt;

/* How the worker changes the appliance (core implements it). */
struct mgmt_hooks {
    void *arg;
    /* Applies one mapping; same contract as nb_proxy_apply (NB_OK with a non-empty err means
     * "applied, part of it skipped": reported as ERROR). */
    int (*apply)(void *arg, const struct nb_mapping *m, char *err, size_t errlen);
    /* The mapping stream is open (true) or gone (false): readiness. */
    void (*connected)(void *arg, bool up);
    /* The initial snapshot was applied (once per process). */
    void (*initial_sync)(void *arg);
    /* Optional: a certificate for domain is served now (a static or wildcard file covers it,
     * or ACME has one), asked after an HTTP service is applied: ACTIVE then carries
     * certificate_issued (spec §3.6). */
    bool (*cert_ready)(void *arg, const char *domain);
};

struct mgmt_opts {
    const char *url;   /* --mgmt */
    const char *token; /* NB_PROXY_TOKEN: copied into the channel only, wiped there */
    bool allow_insecure;
    const char *proxy_id;    /* "netbird-proxy-<uuid>" */
    const char *version;     /* build version */
    uint64_t started_at_sec; /* process start (Unix seconds) */
    const char *address;     /* --domain: the proxy's cluster address */
    bool supports_custom_ports;
    bool require_subdomain;
    bool supports_crowdsec;
    bool private_mode;
    uint64_t batch_watchdog_ms; /* 0 = 2 minutes */
    struct nb_dns *dns;         /* resolves the management host name; must outlive the worker */
    /* https:// management: the trust anchors (a PEM bundle); NULL = the system roots
     * (TLS_SYSTEM_CA_FILE). main passes SSL_CERT_FILE, which Go's crypto/x509 honours too. */
    const char *ca_file;
    /* Backoff (spec §2.3): initial 800 ms, x1.7, +-100 % jitter, at most 10 s. 0 = those. */
    uint32_t backoff_initial_ms;
    uint32_t backoff_max_ms;
    /* In-flight caps of the fire-and-forget RPCs; beyond them records are dropped, counted. */
    uint32_t max_access_logs_inflight; /* 0 = 4096 (reference) */
    uint32_t max_status_inflight;      /* 0 = 1024 */
};

/* Starts connecting at once. NB_OK, NB_E_INVAL (bad URL: the reason is in err), NB_E_NOMEM. */
int mgmt_new(struct nb_loop *loop, const struct mgmt_opts *opts, const struct mgmt_hooks *hooks,
             struct mgmt **out, char *err, size_t errlen);
/* Cancels everything and frees; wipes the keys of the registered peers. */
void mgmt_free(struct mgmt *m);

/* A certificate for domain became ready later (ACME issued or loaded it): every HTTP service of
 * that domain is reported ACTIVE with certificate_issued (spec §3.6). */
void mgmt_certificate_ready(struct mgmt *m, const char *domain);

/* An nb_access_log sink (arg = the struct mgmt): one SendAccessLog per record (spec §8.1). */
void mgmt_access_log_sink(void *arg, const struct nb_access_log_entry *e);

struct mgmt_stats {
    uint64_t connects;       /* streams opened */
    uint64_t disconnects;    /* streams that ended */
    uint64_t batches;        /* mapping messages applied */
    uint64_t mappings;       /* mappings applied (any type) */
    uint64_t mapping_errors; /* mappings that got an ERROR status */
    uint64_t reconciled;     /* services removed by snapshot reconciliation */
    uint64_t watchdog_fired; /* batches that took too long */
    uint64_t status_sent;    /* SendStatusUpdate calls made */
    uint64_t status_dropped; /* status updates dropped (in-flight cap) */
    uint64_t logs_sent;      /* SendAccessLog calls made */
    uint64_t logs_failed;    /* SendAccessLog calls that failed */
    uint64_t logs_dropped;   /* records dropped (not connected, or in-flight cap) */
    uint64_t peers_created;  /* CreateProxyPeer successes */
    uint64_t peer_errors;    /* CreateProxyPeer failures */
    bool connected;
    bool sync_unsupported; /* fell back to GetMappingUpdate */
    bool initial_sync_done;
    uint32_t services;    /* mappings stored */
    uint32_t accounts;    /* accounts with a registered peer */
    uint64_t snapshot_ms; /* connect -> initial_sync_complete of the last snapshot */
    /* spec/proxy.md §9.2 sync instruments */
    struct nb_histogram snapshot_hist; /* stream opened -> snapshot applied, ms */
    struct nb_histogram batch_hist;    /* each snapshot batch, ms */
    struct nb_histogram peer_ok_hist;  /* CreateProxyPeer that succeeded, ms */
    struct nb_histogram peer_err_hist; /* CreateProxyPeer that failed, ms */
};
void mgmt_stats(const struct mgmt *m, struct mgmt_stats *st);

/* "netbird-proxy-" + a random UUID v4, as the reference's proxy id. out: at least 51 bytes. */
void mgmt_proxy_id(char out[64]);

/* The --domain check of spec/proxy.md §1.5 (ASCII names; no IDNA). */
bool mgmt_domain_valid(const char *domain);

#endif
