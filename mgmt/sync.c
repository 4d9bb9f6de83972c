/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * The management worker (sync.h). Place in the pipeline: above mgmt/grpc (the channel and its
 * calls) and mgmt/mapping_decode (ProxyMapping -> struct nb_mapping), beside core, which it
 * drives through struct mgmt_hooks (apply a mapping, report the connection to health).
 *
 * State, one connection attempt at a time:
 *   ch       the gRPC channel of the current attempt (NULL between attempts)
 *   stream   SyncMappings (or GetMappingUpdate once management said Unimplemented)
 *   batch    the message being applied, mapping by mapping; `step` continues it from the loop
 *            after each asynchronous piece (CreateProxyPeer)
 * Kept across attempts: the services applied (id -> the last mapping, for modify, remove and
 * reconciliation), the accounts' registered peers (account -> key pair and service keys), the
 * "sync unsupported" flag and the backoff.
 *
 * Both mapping streams answer with the same message shape (repeated ProxyMapping = 1, bool
 * initial_sync_complete = 2), so one decoder serves both.
 */
#include "mgmt/sync.h"
#include "core/mapping.h"
#include "http/accesslog.h"
#include "mgmt/grpc.h"
#include "mgmt/mapping_decode.h"
#include "mgmt/proxy_service.pb-c.h"
#include "platform/err.h"
#include "platform/log.h"
#include "platform/loop.h"
#include "platform/strmap.h"
#include "platform/sock.h"
#include "tls/tls.h"

#include <ctype.h>
#include <malloc.h>
#include <regex.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PATH_SYNC        "/management.ProxyService/SyncMappings"
#define PATH_GET         "/management.ProxyService/GetMappingUpdate"
#define PATH_STATUS      "/management.ProxyService/SendStatusUpdate"
#define PATH_LOG         "/management.ProxyService/SendAccessLog"
#define PATH_PEER        "/management.ProxyService/CreateProxyPeer"
#define PEER_RPC_MS      30000u
#define LOG_RPC_MS       10000u
#define STATUS_RPC_MS    10000u
#define WATCHDOG_MS      120000u
#define MAX_QUEUED       64u     /* stream messages held while a batch runs (pausing bounds it) */
#define MAX_STATUS_QUEUE 131072u /* status updates waiting (a snapshot's worth and more) */

/*
 * A service as last applied: only what removal and reconciliation need (the routes themselves
 * live in core). One allocation; the strings follow the struct.
 */
struct svc {
    const char *id;
    const char *account_id;
    const char *domain;
    const char *mode;
    const char *key; /* the peer registry's service key */
};

static struct svc *svc_new(const struct nb_mapping *mp, const char *key)
{
    const char *src[5] = {mp->id, mp->account_id, mp->domain, mp->mode, key};
    size_t len[5], total = sizeof(struct svc);
    for (int i = 0; i < 5; i++) {
        len[i] = src[i] ? strlen(src[i]) + 1 : 0;
        total += len[i];
    }
    struct svc *s = malloc(total);
    if (s == NULL)
        return NULL;
    char *p = (char *)(s + 1);
    const char **dst[5] = {&s->id, &s->account_id, &s->domain, &s->mode, &s->key};
    for (int i = 0; i < 5; i++) {
        if (src[i] == NULL) {
            *dst[i] = NULL;
            continue;
        }
        memcpy(p, src[i], len[i]);
        *dst[i] = p;
        p += len[i];
    }
    return s;
}

/* A status update waiting for an in-flight slot. */
struct pending_status {
    struct pending_status *next;
    Management__ProxyStatus status;
    bool cert_issued;
    char *error; /* NULL for none */
    char *service_id;
    char *account_id;
};

/* An account's registered proxy peer (CreateProxyPeer done). */
struct peer {
    char *account_id;
    uint8_t priv[32]; /* secret: the embedded peer's WireGuard key, wiped on removal */
    uint8_t pub[32];
    struct nb_strmap keys; /* service keys using this account */
};

struct queued {
    uint8_t *data;
    size_t len;
};

struct mgmt {
    struct nb_loop *loop;
    struct mgmt_hooks hooks;
    struct mgmt_opts opts; /* strings below are our copies */
    char *url, *token, *proxy_id, *version, *address;
    struct mgmt_grpc_target target;
    /* https:// management: TLS over host TCP, ALPN h2, verified against ca_file / system roots.
     * Channels dial through &tls.base; both outlive every channel (mgmt_free). */
    struct tls_ctx *tls_ctx;
    struct tls_dialer tls;
    struct nb_dialer tcp;
    struct mgmt_grpc *ch;
    struct mgmt_call *stream;
    bool stream_is_sync;
    bool stream_opened; /* this attempt opened a stream: the backoff restarts */
    bool sync_unsupported;
    bool connected;
    uint32_t backoff_ms;
    uint32_t keepalive_ms; /* doubled after a "too_many_pings" GOAWAY, as grpc-go does */
    struct nb_timer reconnect;
    struct nb_defer free_ch; /* channels are freed from the loop, never inside their callbacks */
    struct mgmt_grpc *dead_ch;
    /* the batch */
    Management__SyncMappingsResponse *batch;
    size_t batch_i;
    struct nb_defer step;
    struct nb_timer watchdog;
    uint64_t batch_start_ms;
    struct mgmt_unary *peer_rpc; /* CreateProxyPeer in flight */
    uint64_t peer_rpc_start_ms;
    struct nb_mapping pending; /* the mapping waiting for it */
    uint8_t pending_priv[32];  /* secret */
    uint8_t pending_pub[32];
    struct queued queue[MAX_QUEUED];
    uint32_t nqueued;
    /* snapshot tracking, per stream */
    bool stream_initial_done;
    struct nb_strmap snapshot_ids; /* values unused (non-NULL marker) */
    uint64_t connect_ms;
    /* kept across streams */
    struct nb_strmap services; /* id -> struct svc */
    struct nb_strmap peers;    /* account id -> struct peer */
    uint32_t status_inflight;
    uint32_t logs_inflight;
    struct pending_status *sq_head; /* status updates beyond the in-flight cap, in order */
    struct pending_status *sq_tail;
    uint32_t sq_len;
    struct mgmt_stats st;
};

static void connect_now(struct mgmt *m);
static void teardown(struct mgmt *m, const char *why);
static void step_cb(struct nb_defer *d);

/* ---- small helpers ---- */

static char *xstrdup(const char *s)
{
    return strdup(s ? s : "");
}

static void mapping_reset(struct nb_mapping *mp)
{
    nb_mapping_free(mp); /* also zeroes it */
}

static const char *service_key(const struct nb_mapping *mp, char *buf, size_t len)
{
    enum nb_mapping_mode mode = nb_mapping_mode(mp);
    if (mode == NB_MODE_TCP || mode == NB_MODE_UDP)
        snprintf(buf, len, "l4:%s", mp->id);
    else
        snprintf(buf, len, "domain:%s", mp->domain ? mp->domain : "");
    return buf;
}

/* ---- fire-and-forget RPCs: status updates and access logs ---- */

static void status_flush(struct mgmt *m);

static void status_done(void *arg, int code, const char *message, ProtobufCMessage *resp)
{
    struct mgmt *m = arg;
    if (m->status_inflight)
        m->status_inflight--;
    /* NotFound for an unknown service is expected after removals (reference ignores it). */
    if (code != MGMT_GRPC_OK && code != MGMT_GRPC_NOT_FOUND)
        nb_warn("mgmt", "SendStatusUpdate: %s: %s", mgmt_grpc_code_name(code), message);
    status_flush(m);
}

static void pending_status_free(struct pending_status *ps)
{
    free(ps->error);
    free(ps->service_id);
    free(ps->account_id);
    free(ps);
}

/* Status updates wait for a slot in order; the queue is dropped when the connection goes (the
 * next stream's snapshot brings every status anew). */
static void status_queue_clear(struct mgmt *m)
{
    while (m->sq_head) {
        struct pending_status *ps = m->sq_head;
        m->sq_head = ps->next;
        pending_status_free(ps);
    }
    m->sq_tail = NULL;
    m->sq_len = 0;
}

static void send_status_now(struct mgmt *m, const char *service_id, const char *account_id,
                            Management__ProxyStatus status, bool cert_issued, const char *error);

static void status_flush(struct mgmt *m)
{
    while (m->sq_head && m->status_inflight < m->opts.max_status_inflight && m->ch &&
           mgmt_grpc_state(m->ch) == MGMT_GRPC_READY) {
        struct pending_status *ps = m->sq_head;
        m->sq_head = ps->next;
        if (m->sq_head == NULL)
            m->sq_tail = NULL;
        m->sq_len--;
        send_status_now(m, ps->service_id, ps->account_id, ps->status, ps->cert_issued, ps->error);
        pending_status_free(ps);
    }
}

static void send_status(struct mgmt *m, const char *service_id, const char *account_id,
                        Management__ProxyStatus status, bool cert_issued, const char *error)
{
    if (m->ch == NULL || mgmt_grpc_state(m->ch) != MGMT_GRPC_READY) {
        m->st.status_dropped++;
        return;
    }
    /* While a batch is applied, and during the whole initial snapshot, statuses wait: the acks
     * and CreateProxyPeer calls go first, so management serves the snapshot instead of
     * recording thousands of statuses in the middle of it. They follow right after. */
    if (m->batch == NULL && m->stream_initial_done &&
        m->status_inflight < m->opts.max_status_inflight && m->sq_head == NULL) {
        send_status_now(m, service_id, account_id, status, cert_issued, error);
        return;
    }
    /* Over the in-flight cap: queue (bounded by the services management sent, and by a hard
     * cap so a stuck management cannot grow it without end). */
    if (m->sq_len >= MAX_STATUS_QUEUE) {
        m->st.status_dropped++;
        return;
    }
    struct pending_status *ps = calloc(1, sizeof *ps);
    if (ps == NULL || (ps->service_id = xstrdup(service_id)) == NULL ||
        (ps->account_id = xstrdup(account_id)) == NULL ||
        (error && (ps->error = strdup(error)) == NULL)) {
        if (ps)
            pending_status_free(ps);
        m->st.status_dropped++;
        return;
    }
    ps->status = status;
    ps->cert_issued = cert_issued;
    if (m->sq_tail)
        m->sq_tail->next = ps;
    else
        m->sq_head = ps;
    m->sq_tail = ps;
    m->sq_len++;
}

static void send_status_now(struct mgmt *m, const char *service_id, const char *account_id,
                            Management__ProxyStatus status, bool cert_issued, const char *error)
{
    Management__SendStatusUpdateRequest req = MANAGEMENT__SEND_STATUS_UPDATE_REQUEST__INIT;
    req.service_id = (char *)(service_id ? service_id : "");
    req.account_id = (char *)(account_id ? account_id : "");
    req.status = status;
    req.certificate_issued = cert_issued;
    if (error) {
        req._error_message_case =
            MANAGEMENT__SEND_STATUS_UPDATE_REQUEST___ERROR_MESSAGE_ERROR_MESSAGE;
        req.error_message = (char *)error;
    }
    if (mgmt_unary_pb(m->ch, PATH_STATUS, STATUS_RPC_MS, &req.base,
                      &management__send_status_update_response__descriptor, status_done, m,
                      NULL) != NB_OK) {
        m->st.status_dropped++;
        return;
    }
    m->status_inflight++;
    m->st.status_sent++;
}

static void log_done(void *arg, int code, const char *message, ProtobufCMessage *resp)
{
    struct mgmt *m = arg;
    if (m->logs_inflight)
        m->logs_inflight--;
    if (code != MGMT_GRPC_OK) {
        m->st.logs_failed++;
        nb_debug("mgmt", "SendAccessLog: %s: %s", mgmt_grpc_code_name(code), message);
    }
}

void mgmt_access_log_sink(void *arg, const struct nb_access_log_entry *e)
{
    struct mgmt *m = arg;
    if (m->ch == NULL || !m->connected || m->logs_inflight >= m->opts.max_access_logs_inflight) {
        m->st.logs_dropped++;
        return;
    }
    Google__Protobuf__Timestamp ts = GOOGLE__PROTOBUF__TIMESTAMP__INIT;
    ts.seconds = e->timestamp_ms / 1000;
    ts.nanos = (int32_t)(e->timestamp_ms % 1000) * 1000000;
    Management__AccessLog lg = MANAGEMENT__ACCESS_LOG__INIT;
    lg.timestamp = &ts;
    lg.log_id = (char *)e->log_id;
    lg.account_id = (char *)e->account_id;
    lg.service_id = (char *)e->service_id;
    lg.host = (char *)e->host;
    lg.path = (char *)e->path;
    lg.duration_ms = e->duration_ms;
    lg.method = (char *)e->method;
    lg.response_code = e->response_code;
    lg.source_ip = (char *)e->source_ip;
    lg.auth_mechanism = (char *)e->auth_mechanism;
    lg.user_id = (char *)e->user_id;
    lg.auth_success = e->auth_success;
    lg.bytes_upload = e->bytes_upload;
    lg.bytes_download = e->bytes_download;
    lg.protocol = (char *)e->protocol;
    lg.agent_network = e->agent_network;
    Management__AccessLog__MetadataEntry md[32], *mdp[32];
    uint32_t nmd = e->n_metadata < 32 ? e->n_metadata : 32;
    for (uint32_t i = 0; i < nmd; i++) {
        management__access_log__metadata_entry__init(&md[i]);
        md[i].key = (char *)e->metadata[i].key;
        md[i].value = (char *)e->metadata[i].value;
        mdp[i] = &md[i];
    }
    lg.n_metadata = nmd;
    lg.metadata = nmd ? mdp : NULL;
    Management__SendAccessLogRequest req = MANAGEMENT__SEND_ACCESS_LOG_REQUEST__INIT;
    req.log = &lg;
    if (mgmt_unary_pb(m->ch, PATH_LOG, LOG_RPC_MS, &req.base,
                      &management__send_access_log_response__descriptor, log_done, m,
                      NULL) != NB_OK) {
        m->st.logs_dropped++;
        return;
    }
    m->logs_inflight++;
    m->st.logs_sent++;
}

/* ---- the peer registry (spec §3.2) ---- */

static void peer_free(struct peer *p)
{
    sodium_memzero(p->priv, sizeof p->priv);
    nb_strmap_deinit(&p->keys);
    free(p->account_id);
    free(p);
}

/* RemovePeer: the service leaves its account; the last one drops the account's peer. */
static void peer_remove(struct mgmt *m, const char *account_id, const char *key,
                        const char *service_id)
{
    struct peer *p = account_id ? nb_strmap_get(&m->peers, account_id) : NULL;
    if (p == NULL || nb_strmap_del(&p->keys, key) == NULL)
        return;
    send_status(m, service_id, account_id,
                MANAGEMENT__PROXY_STATUS__PROXY_STATUS_TUNNEL_NOT_CREATED, false, NULL);
    if (p->keys.count == 0) {
        nb_strmap_del(&m->peers, account_id);
        nb_info("mgmt", "account %s: last service removed, proxy peer released", account_id);
        peer_free(p);
    }
}

/* ---- applying mappings ---- */

static void report_error(struct mgmt *m, const char *service_id, const char *account_id,
                         const char *msg)
{
    m->st.mapping_errors++;
    nb_warn("mgmt", "service %s: %s", service_id && service_id[0] ? service_id : "?", msg);
    send_status(m, service_id, account_id, MANAGEMENT__PROXY_STATUS__PROXY_STATUS_ERROR, false,
                msg);
}

/* Routes the mapping (after the peer exists) and records it; takes ownership of *mp. */
static void setup(struct mgmt *m, struct nb_mapping *mp, const char *key, bool add)
{
    char err[512] = "";
    int rc = m->hooks.apply(m->hooks.arg, mp, err, sizeof err);
    if (rc != NB_OK) {
        /* Clean the routes of this service up, and on an add release its peer slot. */
        struct nb_mapping rm = {.type = NB_UPDATE_REMOVED,
                                .id = mp->id,
                                .account_id = mp->account_id,
                                .domain = mp->domain,
                                .mode = mp->mode};
        char ignore[64];
        (void)m->hooks.apply(m->hooks.arg, &rm, ignore, sizeof ignore);
        if (add)
            peer_remove(m, mp->account_id, key, mp->id);
        free(nb_strmap_del(&m->services, mp->id));
        report_error(m, mp->id, mp->account_id, err[0] ? err : nb_strerror(rc));
        mapping_reset(mp);
        return;
    }
    struct svc *s = svc_new(mp, key);
    void *prev = NULL;
    if (s == NULL || nb_strmap_put(&m->services, mp->id, s, &prev) != NB_OK) {
        free(s);
        report_error(m, mp->id, mp->account_id, "out of memory storing the service");
        mapping_reset(mp);
        return;
    }
    free(prev);
    mapping_reset(mp); /* core and the routes hold what they need */
    if (err[0]) {
        /* Applied, but part of it was skipped (an unparsable target). */
        report_error(m, s->id, s->account_id, err);
        return;
    }
    /*
     * ACTIVE now: the reference sends it for L4 routes at once and for HTTP when the account's
     * embedded client is up or a certificate covers the domain; here the routes are live as
     * soon as they are applied (direct_upstream targets serve at once; tunnel targets answer
     * 502 "Proxy Not Connected" until the embedded peer exists), so ACTIVE says exactly that.
     */
    bool cert = m->hooks.cert_ready &&
                nb_mapping_mode(&(struct nb_mapping){.mode = (char *)s->mode}) == NB_MODE_HTTP &&
                m->hooks.cert_ready(m->hooks.arg, s->domain);
    send_status(m, s->id, s->account_id, MANAGEMENT__PROXY_STATUS__PROXY_STATUS_ACTIVE, cert, NULL);
}

static void remove_service(struct mgmt *m, const char *id, const struct nb_mapping *msg)
{
    struct svc *s = nb_strmap_del(&m->services, id);
    char kb[320];
    const char *key = s ? s->key : service_key(msg, kb, sizeof kb);
    const char *account = s ? s->account_id : msg->account_id;
    peer_remove(m, account, key, id);
    struct nb_mapping rm = {.type = NB_UPDATE_REMOVED,
                            .id = (char *)id,
                            .account_id = (char *)account,
                            .domain = (char *)(s ? s->domain : msg->domain),
                            .mode = (char *)(s ? s->mode : msg->mode)};
    char err[256] = "";
    if (m->hooks.apply(m->hooks.arg, &rm, err, sizeof err) != NB_OK)
        nb_warn("mgmt", "removing service %s: %s", id, err);
    free(s);
}

static void peer_created(void *arg, int code, const char *message, ProtobufCMessage *resp)
{
    struct mgmt *m = arg;
    m->peer_rpc = NULL;
    double took = (double)(nb_now_ms() - m->peer_rpc_start_ms);
    nb_hist_observe(code == MGMT_GRPC_OK && resp &&
                            ((const Management__CreateProxyPeerResponse *)resp)->success
                        ? &m->st.peer_ok_hist
                        : &m->st.peer_err_hist,
                    took);
    struct nb_mapping *mp = &m->pending;
    char key[320];
    service_key(mp, key, sizeof key);
    const Management__CreateProxyPeerResponse *r =
        (const Management__CreateProxyPeerResponse *)resp;
    if (code != MGMT_GRPC_OK || r == NULL || !r->success) {
        char msg[600];
        if (code != MGMT_GRPC_OK)
            snprintf(msg, sizeof msg, "create proxy peer: %s: %s", mgmt_grpc_code_name(code),
                     message);
        else
            snprintf(
                msg, sizeof msg, "create proxy peer: %s",
                r && r->_error_message_case ==
                            MANAGEMENT__CREATE_PROXY_PEER_RESPONSE___ERROR_MESSAGE_ERROR_MESSAGE
                    ? r->error_message
                    : "unknown error");
        m->st.peer_errors++;
        report_error(m, mp->id, mp->account_id, msg);
        mapping_reset(mp);
    } else {
        struct peer *p = calloc(1, sizeof *p);
        if (p == NULL || (p->account_id = strdup(mp->account_id)) == NULL ||
            nb_strmap_put(&p->keys, key, p, NULL) != NB_OK ||
            nb_strmap_put(&m->peers, mp->account_id, p, NULL) != NB_OK) {
            if (p)
                peer_free(p);
            report_error(m, mp->id, mp->account_id, "out of memory registering the peer");
            mapping_reset(mp);
        } else {
            memcpy(p->priv, m->pending_priv, 32);
            memcpy(p->pub, m->pending_pub, 32);
            m->st.peers_created++;
            char b64[64];
            sodium_bin2base64(b64, sizeof b64, p->pub, 32, sodium_base64_VARIANT_ORIGINAL);
            nb_info("mgmt",
                    "account %s: registered as proxy peer %s (the embedded NetBird peer "
                    "is not built yet: tunnel targets answer 502 Proxy Not Connected)",
                    p->account_id, b64);
            setup(m, mp, key, true);
        }
    }
    sodium_memzero(m->pending_priv, sizeof m->pending_priv);
    nb_defer(m->loop, &m->step, step_cb, m);
}

/*
 * AddPeer (spec §3.2): an account already registered just gains the service key; a new one
 * needs CreateProxyPeer first. Returns true when the mapping is waiting for that RPC (it then
 * owns *mp through m->pending).
 */
static bool add_service(struct mgmt *m, struct nb_mapping *mp)
{
    char key[320];
    service_key(mp, key, sizeof key);
    struct peer *p = nb_strmap_get(&m->peers, mp->account_id);
    if (p) {
        if (nb_strmap_put(&p->keys, key, p, NULL) != NB_OK) {
            report_error(m, mp->id, mp->account_id, "out of memory");
            mapping_reset(mp);
            return false;
        }
        setup(m, mp, key, true);
        return false;
    }
    /* A fresh WireGuard key pair for the account's embedded peer. */
    randombytes_buf(m->pending_priv, 32);
    m->pending_priv[0] &= 248;
    m->pending_priv[31] = (uint8_t)((m->pending_priv[31] & 127) | 64);
    crypto_scalarmult_base(m->pending_pub, m->pending_priv);
    char pub64[64];
    sodium_bin2base64(pub64, sizeof pub64, m->pending_pub, 32, sodium_base64_VARIANT_ORIGINAL);
    Management__CreateProxyPeerRequest req = MANAGEMENT__CREATE_PROXY_PEER_REQUEST__INIT;
    req.service_id = mp->id;
    req.account_id = mp->account_id;
    req.token = mp->auth_token ? mp->auth_token : (char *)"";
    req.wireguard_public_key = pub64;
    req.cluster = m->address;
    m->pending = *mp;
    memset(mp, 0, sizeof *mp);
    m->peer_rpc_start_ms = nb_now_ms();
    if (mgmt_unary_pb(m->ch, PATH_PEER, PEER_RPC_MS, &req.base,
                      &management__create_proxy_peer_response__descriptor, peer_created, m,
                      &m->peer_rpc) != NB_OK) {
        m->peer_rpc = NULL;
        sodium_memzero(m->pending_priv, sizeof m->pending_priv);
        report_error(m, m->pending.id, m->pending.account_id, "create proxy peer: out of memory");
        mapping_reset(&m->pending);
        return false;
    }
    return true;
}

/* ---- batches ---- */

static void reconcile(struct mgmt *m)
{
    struct nb_strmap_iter it = {0};
    const char *id;
    char ids[256][128];
    for (;;) {
        /* Collect a slice of stale ids, then remove them (removal changes the map). */
        uint32_t n = 0;
        memset(&it, 0, sizeof it);
        while (n < 256 && (id = nb_strmap_next(&m->services, &it, NULL)) != NULL)
            if (nb_strmap_get(&m->snapshot_ids, id) == NULL)
                snprintf(ids[n++], sizeof ids[0], "%s", id);
        if (n == 0)
            break;
        for (uint32_t i = 0; i < n; i++) {
            nb_info("mgmt", "service %s is not in the new snapshot: removing it", ids[i]);
            remove_service(m, ids[i], NULL);
            m->st.reconciled++;
        }
    }
}

static void send_ack(struct mgmt *m)
{
    Management__SyncMappingsAck ack = MANAGEMENT__SYNC_MAPPINGS_ACK__INIT;
    Management__SyncMappingsRequest req = MANAGEMENT__SYNC_MAPPINGS_REQUEST__INIT;
    req.msg_case = MANAGEMENT__SYNC_MAPPINGS_REQUEST__MSG_ACK;
    req.ack = &ack;
    if (mgmt_call_send_pb(m->stream, &req.base) != NB_OK)
        nb_warn("mgmt", "cannot send the batch ack");
}

static void start_batch(struct mgmt *m, const uint8_t *data, size_t len);

static void batch_done(struct mgmt *m)
{
    Management__SyncMappingsResponse *b = m->batch;
    nb_timer_cancel(&m->watchdog);
    m->st.batches++;
    if (!m->stream_initial_done)
        nb_hist_observe(&m->st.batch_hist, (double)(nb_now_ms() - m->batch_start_ms));
    if (b->initial_sync_complete && !m->stream_initial_done) {
        reconcile(m);
        m->stream_initial_done = true;
        m->st.snapshot_ms = nb_now_ms() - m->connect_ms;
        nb_hist_observe(&m->st.snapshot_hist, (double)m->st.snapshot_ms);
        nb_info("mgmt", "initial sync complete: %u service(s), %llu ms", m->services.count,
                (unsigned long long)m->st.snapshot_ms);
        nb_strmap_deinit(&m->snapshot_ids);
        if (!m->st.initial_sync_done) {
            m->st.initial_sync_done = true;
            if (m->hooks.initial_sync)
                m->hooks.initial_sync(m->hooks.arg);
        }
        /* A large snapshot leaves freed decode buffers behind: give them back to the system. */
        malloc_trim(0);
    } else {
        nb_info("mgmt", "applied %zu mapping(s) in %llu ms", b->n_mapping,
                (unsigned long long)(nb_now_ms() - m->batch_start_ms));
    }
    management__sync_mappings_response__free_unpacked(b, NULL);
    m->batch = NULL;
    if (m->stream_is_sync)
        send_ack(m);
    if (m->stream_initial_done)
        status_flush(m);
    /* Next message: one held back while this batch ran, or resume the stream. */
    if (m->nqueued) {
        struct queued q = m->queue[0];
        memmove(m->queue, m->queue + 1, (m->nqueued - 1) * sizeof m->queue[0]);
        m->nqueued--;
        start_batch(m, q.data, q.len);
        free(q.data);
        return;
    }
    mgmt_call_pause(m->stream, false);
}

/* Applies mappings from batch_i on until the batch ends or one waits for an RPC. */
static void step(struct mgmt *m)
{
    Management__SyncMappingsResponse *b = m->batch;
    while (b && m->peer_rpc == NULL && m->batch_i < b->n_mapping) {
        const Management__ProxyMapping *pm = b->mapping[m->batch_i++];
        m->st.mappings++;
        if (!m->stream_initial_done && pm->id && pm->id[0] &&
            nb_strmap_put(&m->snapshot_ids, pm->id, m, NULL) != NB_OK)
            nb_warn("mgmt", "out of memory tracking the snapshot");
        struct nb_mapping mp;
        char err[512] = "";
        if (mgmt_mapping_decode(pm, &mp, err, sizeof err) != NB_OK) {
            report_error(m, pm->id, pm->account_id, err[0] ? err : "invalid mapping");
            continue;
        }
        switch (mp.type) {
        case NB_UPDATE_REMOVED:
            remove_service(m, mp.id, &mp);
            mapping_reset(&mp);
            break;
        case NB_UPDATE_MODIFIED: {
            /* Modify does not touch the peer (spec §3.3). */
            struct svc *old = nb_strmap_get(&m->services, mp.id);
            char kb[320];
            const char *key = old ? old->key : service_key(&mp, kb, sizeof kb);
            char keycopy[320];
            snprintf(keycopy, sizeof keycopy, "%s", key);
            setup(m, &mp, keycopy, false);
            break;
        }
        case NB_UPDATE_CREATED:
        default:
            if (add_service(m, &mp))
                return; /* continues in peer_created */
            break;
        }
    }
    if (b && m->peer_rpc == NULL && m->batch_i >= b->n_mapping)
        batch_done(m);
}

static void step_cb(struct nb_defer *d)
{
    step(d->arg);
}

static void watchdog_fired(struct nb_timer *t)
{
    struct mgmt *m = t->arg;
    m->st.watchdog_fired++;
    nb_error("mgmt", "mapping batch not applied within %llu ms: reconnecting",
             (unsigned long long)m->opts.batch_watchdog_ms);
    teardown(m, "batch watchdog");
}

static void start_batch(struct mgmt *m, const uint8_t *data, size_t len)
{
    Management__SyncMappingsResponse *b =
        management__sync_mappings_response__unpack(NULL, len, data);
    if (b == NULL) {
        nb_error("mgmt", "malformed mapping message (%zu bytes): reconnecting", len);
        teardown(m, "malformed message");
        return;
    }
    m->batch = b;
    m->batch_i = 0;
    m->batch_start_ms = nb_now_ms();
    nb_timer_arm(m->loop, &m->watchdog, m->opts.batch_watchdog_ms);
    nb_debug("mgmt", "batch: %zu mapping(s)%s", b->n_mapping,
             b->initial_sync_complete ? ", initial sync complete" : "");
    step(m);
}

/* ---- the mapping stream ---- */

static void on_stream_message(void *arg, struct mgmt_call *c, const uint8_t *data, size_t len)
{
    struct mgmt *m = arg;
    /* Hold the stream while this message is applied (the next Recv waits, as in the
     * reference); a message already in flight waits in the small queue. */
    mgmt_call_pause(c, true);
    if (m->batch) {
        if (m->nqueued == MAX_QUEUED) {
            teardown(m, "too many messages while a batch is applied");
            return;
        }
        uint8_t *copy = malloc(len ? len : 1);
        if (copy == NULL) {
            teardown(m, "out of memory");
            return;
        }
        memcpy(copy, data, len);
        m->queue[m->nqueued++] = (struct queued){copy, len};
        return;
    }
    start_batch(m, data, len);
}

static void open_stream(struct mgmt *m);

static void on_stream_close(void *arg, struct mgmt_call *c, int code, const char *message)
{
    struct mgmt *m = arg;
    m->stream = NULL;
    if (code == MGMT_GRPC_UNIMPLEMENTED && m->stream_is_sync && !m->sync_unsupported) {
        nb_info("mgmt", "SyncMappings is not implemented by management: using "
                        "GetMappingUpdate for the rest of this process");
        m->sync_unsupported = true;
        if (m->batch == NULL && m->ch && mgmt_grpc_state(m->ch) == MGMT_GRPC_READY) {
            open_stream(m);
            return;
        }
    }
    nb_warn("mgmt", "mapping stream ended: %s%s%s",
            code == MGMT_GRPC_OK ? "stream closed by server" : mgmt_grpc_code_name(code),
            message && message[0] ? ": " : "", message ? message : "");
    teardown(m, "stream ended");
}

static const struct mgmt_call_cbs stream_cbs = {
    .on_message = on_stream_message,
    .on_close = on_stream_close,
};

static void fill_identity(struct mgmt *m, Management__ProxyCapabilities *caps,
                          Google__Protobuf__Timestamp *ts)
{
    caps->_supports_custom_ports_case =
        MANAGEMENT__PROXY_CAPABILITIES___SUPPORTS_CUSTOM_PORTS_SUPPORTS_CUSTOM_PORTS;
    caps->supports_custom_ports = m->opts.supports_custom_ports;
    caps->_require_subdomain_case =
        MANAGEMENT__PROXY_CAPABILITIES___REQUIRE_SUBDOMAIN_REQUIRE_SUBDOMAIN;
    caps->require_subdomain = m->opts.require_subdomain;
    caps->_supports_crowdsec_case =
        MANAGEMENT__PROXY_CAPABILITIES___SUPPORTS_CROWDSEC_SUPPORTS_CROWDSEC;
    caps->supports_crowdsec = m->opts.supports_crowdsec;
    caps->_private_case = MANAGEMENT__PROXY_CAPABILITIES___PRIVATE_PRIVATE;
    caps->private_ = m->opts.private_mode;
    caps->_supports_private_service_case =
        MANAGEMENT__PROXY_CAPABILITIES___SUPPORTS_PRIVATE_SERVICE_SUPPORTS_PRIVATE_SERVICE;
    caps->supports_private_service = true; /* always, as the reference */
    ts->seconds = (int64_t)m->opts.started_at_sec;
    ts->nanos = 0;
}

static void open_stream(struct mgmt *m)
{
    Management__ProxyCapabilities caps = MANAGEMENT__PROXY_CAPABILITIES__INIT;
    Google__Protobuf__Timestamp ts = GOOGLE__PROTOBUF__TIMESTAMP__INIT;
    fill_identity(m, &caps, &ts);
    m->stream_is_sync = !m->sync_unsupported;
    int rc = mgmt_call_start(m->ch, m->stream_is_sync ? PATH_SYNC : PATH_GET, 0, &stream_cbs, m,
                             &m->stream);
    if (rc != NB_OK) {
        m->stream = NULL;
        teardown(m, "cannot open the mapping stream");
        return;
    }
    if (m->stream_is_sync) {
        Management__SyncMappingsInit init = MANAGEMENT__SYNC_MAPPINGS_INIT__INIT;
        init.proxy_id = m->proxy_id;
        init.version = m->version;
        init.started_at = &ts;
        init.address = m->address;
        init.capabilities = &caps;
        Management__SyncMappingsRequest req = MANAGEMENT__SYNC_MAPPINGS_REQUEST__INIT;
        req.msg_case = MANAGEMENT__SYNC_MAPPINGS_REQUEST__MSG_INIT;
        req.init = &init;
        rc = mgmt_call_send_pb(m->stream, &req.base);
    } else {
        Management__GetMappingUpdateRequest req = MANAGEMENT__GET_MAPPING_UPDATE_REQUEST__INIT;
        req.proxy_id = m->proxy_id;
        req.version = m->version;
        req.started_at = &ts;
        req.address = m->address;
        req.capabilities = &caps;
        rc = mgmt_call_send_pb(m->stream, &req.base);
        if (rc == NB_OK)
            rc = mgmt_call_close_send(m->stream);
    }
    if (rc != NB_OK) {
        teardown(m, "cannot send the stream's first message");
        return;
    }
    /* "Connected" as soon as the first message is sent (reference): readiness follows. */
    m->stream_opened = true;
    m->stream_initial_done = false;
    nb_strmap_deinit(&m->snapshot_ids);
    m->connect_ms = nb_now_ms();
    m->st.connects++;
    if (!m->connected) {
        m->connected = true;
        if (m->hooks.connected)
            m->hooks.connected(m->hooks.arg, true);
    }
    nb_info("mgmt", "mapping stream open (%s)",
            m->stream_is_sync ? "SyncMappings" : "GetMappingUpdate");
}

/* ---- the channel and reconnects ---- */

static void free_dead_channel(struct nb_defer *d)
{
    struct mgmt *m = d->arg;
    mgmt_grpc_free(m->dead_ch);
    m->dead_ch = NULL;
}

/* Ends the current attempt and schedules the next one (spec §2.3 backoff). */
static void teardown(struct mgmt *m, const char *why)
{
    if (m->ch == NULL)
        return;
    nb_timer_cancel(&m->watchdog);
    nb_defer_cancel(m->loop, &m->step);
    if (m->stream) {
        mgmt_call_cancel(m->stream);
        m->stream = NULL;
    }
    if (m->peer_rpc) {
        mgmt_unary_cancel(m->peer_rpc);
        m->peer_rpc = NULL;
        sodium_memzero(m->pending_priv, sizeof m->pending_priv);
        mapping_reset(&m->pending);
    }
    if (m->batch) {
        management__sync_mappings_response__free_unpacked(m->batch, NULL);
        m->batch = NULL;
    }
    for (uint32_t i = 0; i < m->nqueued; i++)
        free(m->queue[i].data);
    m->nqueued = 0;
    nb_strmap_deinit(&m->snapshot_ids);
    struct mgmt_grpc_stats gs;
    mgmt_grpc_stats(m->ch, &gs);
    if (gs.goaway_too_many_pings) {
        m->keepalive_ms = m->keepalive_ms ? m->keepalive_ms * 2 : 40000;
        nb_warn("mgmt", "management finds our pings too frequent: keepalive now %u ms",
                m->keepalive_ms);
    }
    /* The channel may be calling us right now: free it from the loop. Its live calls die with
     * it without callbacks, so the in-flight counters start over. */
    m->dead_ch = m->ch;
    m->ch = NULL;
    nb_defer(m->loop, &m->free_ch, free_dead_channel, m);
    m->status_inflight = m->logs_inflight = 0;
    status_queue_clear(m);
    if (m->connected) {
        m->connected = false;
        m->st.disconnects++;
        if (m->hooks.connected)
            m->hooks.connected(m->hooks.arg, false);
    }
    if (m->stream_opened)
        m->backoff_ms = m->opts.backoff_initial_ms;
    m->stream_opened = false;
    /* Randomisation factor 1.0: anywhere in [0, 2 x interval]. */
    uint32_t wait = (uint32_t)((uint64_t)m->backoff_ms * randombytes_uniform(2001) / 1000);
    uint64_t next = (uint64_t)m->backoff_ms * 17 / 10;
    m->backoff_ms = next > m->opts.backoff_max_ms ? m->opts.backoff_max_ms : (uint32_t)next;
    nb_info("mgmt", "disconnected (%s): reconnecting in %u ms", why, wait);
    nb_timer_arm(m->loop, &m->reconnect, wait);
}

static void on_channel(void *arg, struct mgmt_grpc *ch, enum mgmt_grpc_state state,
                       const char *reason)
{
    struct mgmt *m = arg;
    if (ch != m->ch)
        return;
    switch (state) {
    case MGMT_GRPC_READY:
        open_stream(m);
        return;
    case MGMT_GRPC_GOAWAY:
        /* Management is going away: the open stream may go on until it ends (grpc-go keeps
         * it); with no stream there is nothing to wait for. */
        if (m->stream == NULL)
            teardown(m, reason ? reason : "management sent GOAWAY");
        else
            nb_info("mgmt", "management sent GOAWAY: reconnecting when the stream ends");
        return;
    case MGMT_GRPC_FAILED:
        teardown(m, reason ? reason : "connection failed");
        return;
    case MGMT_GRPC_CONNECTING:
        return;
    }
}

static void reconnect_fired(struct nb_timer *t)
{
    connect_now(t->arg);
}

static void connect_now(struct mgmt *m)
{
    struct mgmt_grpc_opts o = {
        .authority = m->target.authority,
        .host = m->target.host,
        .port = m->target.port,
        .dns = m->opts.dns,
        .tls = m->target.tls,
        .dialer = m->tls_ctx ? &m->tls.base : NULL,
        .token = m->token,
        .allow_insecure = m->opts.allow_insecure,
        .keepalive_ms = m->keepalive_ms,
    };
    int rc = mgmt_grpc_new(m->loop, &o, on_channel, m, &m->ch);
    if (rc != NB_OK) {
        m->ch = NULL;
        nb_warn("mgmt", "cannot create the management channel: %s", nb_strerror(rc));
        nb_timer_arm(m->loop, &m->reconnect, m->opts.backoff_max_ms);
    }
}

/* ---- API ---- */

static int host_dial(void *ctx, const struct sockaddr *dst, const struct nb_stream_cbs *cbs,
                     void *arg, struct nb_stream **out)
{
    /* no timeout of its own: the channel's connect timeout covers dial + TLS + SETTINGS */
    return nb_tcp_connect(ctx, dst, 0, cbs, arg, out);
}

/* The TLS client for an https:// management URL (spec §2.1: system roots, ALPN h2). */
static int tls_setup(struct mgmt *m, char *err, size_t errlen)
{
    const char *ca = m->opts.ca_file && m->opts.ca_file[0] ? m->opts.ca_file : TLS_SYSTEM_CA_FILE;
    struct tls_client_opts co = {.ca_file = ca, .alpn = "h2"};
    int rc = tls_ctx_new_client(&co, &m->tls_ctx);
    if (rc != NB_OK) {
        m->tls_ctx = NULL;
        if (rc == NB_E_NOMEM)
            snprintf(err, errlen, "out of memory");
        else
            snprintf(err, errlen, "%s: cannot load the trust anchors from %s (%s)%s", m->url, ca,
                     nb_strerror(rc),
                     ca == m->opts.ca_file ? " (SSL_CERT_FILE)"
                                           : ": install ca-certificates or set SSL_CERT_FILE");
        return rc;
    }
    m->tcp = (struct nb_dialer){host_dial, m->loop};
    struct tls_connect_opts o = {.server_name = m->target.host, .alpn = "h2"};
    rc = tls_dialer_init(&m->tls, m->tls_ctx, &m->tcp, &o);
    if (rc != NB_OK) {
        tls_ctx_unref(m->tls_ctx);
        m->tls_ctx = NULL;
        snprintf(err, errlen, "%s: cannot set up TLS (%s)", m->url, nb_strerror(rc));
        return rc;
    }
    return NB_OK;
}

int mgmt_new(struct nb_loop *loop, const struct mgmt_opts *opts, const struct mgmt_hooks *hooks,
             struct mgmt **out, char *err, size_t errlen)
{
    struct mgmt *m = calloc(1, sizeof *m);
    if (m == NULL)
        return NB_E_NOMEM;
    m->loop = loop;
    m->hooks = *hooks;
    m->opts = *opts;
    if (m->opts.batch_watchdog_ms == 0)
        m->opts.batch_watchdog_ms = WATCHDOG_MS;
    if (m->opts.backoff_initial_ms == 0)
        m->opts.backoff_initial_ms = 800;
    if (m->opts.backoff_max_ms == 0)
        m->opts.backoff_max_ms = 10000;
    if (m->opts.max_access_logs_inflight == 0)
        m->opts.max_access_logs_inflight = 4096;
    if (m->opts.max_status_inflight == 0)
        m->opts.max_status_inflight = 1024;
    m->backoff_ms = m->opts.backoff_initial_ms;
    nb_hist_init(&m->st.snapshot_hist, nb_hist_bounds_sync_ms, 11);
    nb_hist_init(&m->st.batch_hist, nb_hist_bounds_sync_ms, 11);
    nb_hist_init(&m->st.peer_ok_hist, nb_hist_bounds_peer_ms, 10);
    nb_hist_init(&m->st.peer_err_hist, nb_hist_bounds_peer_ms, 10);
    m->url = xstrdup(opts->url);
    m->token = xstrdup(opts->token);
    m->proxy_id = xstrdup(opts->proxy_id);
    m->version = xstrdup(opts->version);
    m->address = xstrdup(opts->address);
    m->opts.token = NULL; /* only m->token, wiped in mgmt_free */
    nb_timer_init(&m->reconnect, reconnect_fired, m);
    nb_timer_init(&m->watchdog, watchdog_fired, m);
    if (!m->url || !m->token || !m->proxy_id || !m->version || !m->address) {
        mgmt_free(m);
        return NB_E_NOMEM;
    }
    int prc = mgmt_grpc_target_parse(m->url, &m->target);
    if (prc != NB_OK && strstr(m->url, "://") == NULL) {
        /* "host:port" without a scheme (seen in deployments, e.g. "netbird-server:80"): take
         * it as a gRPC target, plaintext h2c, and say so. */
        char with[600];
        snprintf(with, sizeof with, "http://%s", m->url);
        prc = mgmt_grpc_target_parse(with, &m->target);
        if (prc == NB_OK)
            nb_warn("mgmt", "--mgmt \"%s\" has no scheme: using plaintext h2c (%s)", m->url, with);
    }
    if (prc != NB_OK) {
        snprintf(err, errlen, "invalid management URL \"%s\"", m->url);
        mgmt_free(m);
        return NB_E_INVAL;
    }
    if (m->target.tls && tls_setup(m, err, errlen) != NB_OK) {
        mgmt_free(m);
        return NB_E_INVAL;
    }
    struct mgmt_grpc_opts check = {.authority = m->target.authority,
                                   .host = m->target.host,
                                   .port = m->target.port,
                                   .dns = m->opts.dns,
                                   .tls = m->target.tls,
                                   .dialer = m->tls_ctx ? &m->tls.base : NULL,
                                   .token = m->token,
                                   .allow_insecure = m->opts.allow_insecure};
    const char *why = mgmt_grpc_opts_check(&check);
    if (why == mgmt_grpc_err_insecure ||
        (why == NULL && !m->target.tls && m->token[0] && !m->opts.allow_insecure)) {
        /* As the reference: the process runs and every RPC is refused locally. Loudly. */
        nb_error("mgmt",
                 "management at %s is plaintext h2c and NB_PROXY_ALLOW_INSECURE is not "
                 "set: the token will not be sent and every call is refused. Set "
                 "NB_PROXY_ALLOW_INSECURE=true if this hop is trusted, or use https://",
                 m->target.authority);
        why = NULL;
    }
    if (why) {
        /* Fail at start-up with the reason (no authority, a name without a resolver, ...). */
        snprintf(err, errlen, "%s: %s", m->url, why);
        mgmt_free(m);
        return NB_E_UNSUPPORTED;
    }
    connect_now(m);
    *out = m;
    return NB_OK;
}

void mgmt_free(struct mgmt *m)
{
    if (m == NULL)
        return;
    nb_timer_cancel(&m->reconnect);
    nb_timer_cancel(&m->watchdog);
    nb_defer_cancel(m->loop, &m->step);
    nb_defer_cancel(m->loop, &m->free_ch);
    if (m->stream)
        mgmt_call_cancel(m->stream);
    if (m->peer_rpc)
        mgmt_unary_cancel(m->peer_rpc);
    mgmt_grpc_free(m->ch);
    mgmt_grpc_free(m->dead_ch);
    if (m->tls_ctx) { /* after the channels: their streams hold their own ctx reference */
        tls_dialer_deinit(&m->tls);
        tls_ctx_unref(m->tls_ctx);
    }
    if (m->batch)
        management__sync_mappings_response__free_unpacked(m->batch, NULL);
    for (uint32_t i = 0; i < m->nqueued; i++)
        free(m->queue[i].data);
    mapping_reset(&m->pending);
    sodium_memzero(m->pending_priv, sizeof m->pending_priv);
    struct nb_strmap_iter it = {0};
    void *v;
    while (nb_strmap_next(&m->services, &it, &v))
        free(v);
    status_queue_clear(m);
    nb_strmap_deinit(&m->services);
    memset(&it, 0, sizeof it);
    while (nb_strmap_next(&m->peers, &it, &v))
        peer_free(v);
    nb_strmap_deinit(&m->peers);
    nb_strmap_deinit(&m->snapshot_ids);
    if (m->token)
        sodium_memzero(m->token, strlen(m->token));
    free(m->token);
    free(m->url);
    free(m->proxy_id);
    free(m->version);
    free(m->address);
    free(m);
}

void mgmt_certificate_ready(struct mgmt *m, const char *domain)
{
    struct nb_strmap_iter it = {0};
    void *v;
    while (nb_strmap_next(&m->services, &it, &v) != NULL) {
        const struct svc *s = v;
        size_t n = strlen(domain);
        /* the mapping's domain may carry a port (spec §4.3 strips it for matching) */
        if (s->domain && strncmp(s->domain, domain, n) == 0 &&
            (s->domain[n] == '\0' || s->domain[n] == ':') &&
            nb_mapping_mode(&(struct nb_mapping){.mode = (char *)s->mode}) == NB_MODE_HTTP)
            send_status(m, s->id, s->account_id, MANAGEMENT__PROXY_STATUS__PROXY_STATUS_ACTIVE,
                        true, NULL);
    }
}

void mgmt_stats(const struct mgmt *m, struct mgmt_stats *st)
{
    *st = m->st;
    st->connected = m->connected;
    st->sync_unsupported = m->sync_unsupported;
    st->services = m->services.count;
    st->accounts = m->peers.count;
}

void mgmt_proxy_id(char out[64])
{
    uint8_t u[16];
    randombytes_buf(u, sizeof u);
    u[6] = (uint8_t)((u[6] & 0x0f) | 0x40); /* version 4 */
    u[8] = (uint8_t)((u[8] & 0x3f) | 0x80); /* RFC 4122 variant */
    snprintf(out, 64,
             "netbird-proxy-%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x",
             u[0], u[1], u[2], u[3], u[4], u[5], u[6], u[7], u[8], u[9], u[10], u[11], u[12], u[13],
             u[14], u[15]);
}

bool mgmt_domain_valid(const char *domain)
{
    /* spec/proxy.md §1.5, as POSIX ERE (no non-capturing groups: plain groups instead). */
    static const char re[] =
        "^(\\*\\.)?(((xn--)?[a-zA-Z0-9_]([-a-zA-Z0-9_]{0,61}[a-zA-Z0-9])?)\\.)*"
        "(xn--)?[a-zA-Z0-9]([-a-zA-Z0-9_]{0,61}[a-zA-Z0-9])?$";
    if (domain == NULL || domain[0] == '\0')
        return false;
    for (const char *p = domain; *p; p++)
        if ((unsigned char)*p >= 0x80)
            return false; /* IDNA (punycode conversion) is not done: non-ASCII is refused */
    regex_t rx;
    if (regcomp(&rx, re, REG_EXTENDED | REG_NOSUB) != 0)
        return false;
    bool ok = regexec(&rx, domain, 0, NULL, 0) == 0;
    regfree(&rx);
    return ok;
}
