/* SPDX-License-Identifier: BSD-3-Clause */
/* Copyright (c) nbproxy authors */
#ifndef NB_HTTP_ACCESSLOG_H
#define NB_HTTP_ACCESSLOG_H

/*
 * The access log (spec §8): one record per HTTP request and per L4 session, shaped like the
 * management AccessLog message, written as JSON lines to a local file / stdout and handed to
 * subscribed sinks (the management sender).
 *
 * nb_access_log_write() applies every record rule in one place, before anything is written or
 * any sink sees the entry:
 *   - paths under "/__netbird__/" are never logged (the proxy's own assets);
 *   - disable_access_log: nothing is logged, except for agent-network targets, which log a
 *     usage-only entry: host, path, source_ip, method and protocol cleared, response_code,
 *     duration_ms, bytes_upload and bytes_download zeroed, metadata reduced to the LLM usage and
 *     cost keys (llm.provider, llm.model, llm.resolved_provider_id, llm.*_tokens,
 *     cost.usd_*, llm.authorising_groups);
 *   - user_id is cleared unless auth_mechanism is exactly "oidc";
 *   - auth_success: protocol "http" -> response_code is neither 401 nor 403; "tcp", "tls",
 *     "udp" -> always false (netbird-proxy quirk); any other protocol keeps the given value;
 *   - timestamp_ms 0 -> now (wall clock); log_id NULL or "" -> a fresh xid;
 *   - NULL strings become "" (sinks never see NULL).
 * A metadata key repeated in the input keeps its last value in the JSON line; sinks get the
 * array as given (a protobuf map also keeps the last entry of a key).
 * No field of the record carries a header or cookie value, by design: keep it that way.
 *
 * Local output (one JSON object per line, protobuf JSON field names, every field always present,
 * RFC 3339 UTC timestamp with milliseconds, int64 fields as JSON numbers):
 *   {"timestamp":"2026-01-02T03:04:05.678Z","logId":"…","accountId":"…","serviceId":"…",
 *    "host":"…","path":"…","durationMs":12,"method":"GET","responseCode":200,"sourceIp":"…",
 *    "authMechanism":"…","userId":"…","authSuccess":true,"bytesUpload":0,"bytesDownload":512,
 *    "protocol":"http","metadata":{"k":"v"},"agentNetwork":false}
 * Invalid UTF-8 in any string is written as U+FFFD, so every line is valid JSON.
 *
 * The writer never blocks the loop for long and never grows without bound: lines are appended to
 * a buffer that is flushed on a short timer (NB_ACCESS_LOG_FLUSH_MS) or as soon as it holds
 * NB_ACCESS_LOG_FLUSH_BYTES. Pipes and ttys are written through their own non-blocking open file
 * description (reopened via /proc/self/fd, so the stdout we share with others keeps its flags),
 * sockets with MSG_DONTWAIT; both wait for writability on the loop. Regular files are written
 * directly. When the buffer would pass
 * NB_ACCESS_LOG_BUF_CAP, entries are dropped and counted, with a warning at most every
 * NB_ACCESS_LOG_WARN_MS. Sinks are called synchronously and see every entry that passed the
 * rules, whether or not the local file had room.
 *
 * Single-threaded: everything runs on the loop's thread. SIGPIPE must be ignored (as
 * nb_loop_watch_signals() does) when the output is a pipe whose reader may go away.
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct nb_loop;

#define NB_ACCESS_LOG_BUF_CAP     (1u << 20)  /* buffered bytes before entries are dropped */
#define NB_ACCESS_LOG_FLUSH_BYTES (64u << 10) /* flush at once past this many buffered bytes */
#define NB_ACCESS_LOG_FLUSH_MS    200u        /* otherwise flush this long after the first line */
#define NB_ACCESS_LOG_WARN_MS     10000u      /* at most one "dropped" warning per 10 s */
#define NB_ACCESS_LOG_MAX_SINKS   4

/* One metadata map entry. */
struct nb_access_log_kv {
    const char *key;
    const char *value;
};

/*
 * The AccessLog message (Appendix A, field numbers in comments), plus the one rule input that is
 * not part of it. Every pointer is borrowed for the duration of nb_access_log_write(); NULL
 * strings are "".
 */
struct nb_access_log_entry {
    int64_t timestamp_ms;       /* 1: Unix ms; 0 = now */
    const char *log_id;         /* 2: the request's xid (HTTP), NULL = fresh one (L4) */
    const char *account_id;     /* 3 */
    const char *service_id;     /* 4 */
    const char *host;           /* 5: Host without port (HTTP), mapping domain (L4) */
    const char *path;           /* 6: decoded URL path, no query */
    int64_t duration_ms;        /* 7 */
    const char *method;         /* 8 */
    int32_t response_code;      /* 9: 0 for L4 */
    const char *source_ip;      /* 10: §4.5 client IP, "" if invalid */
    const char *auth_mechanism; /* 11: "", password, pin, oidc, header, or a deny verdict */
    const char *user_id;        /* 12: kept only for oidc */
    bool auth_success;          /* 13: derived, see above */
    int64_t bytes_upload;       /* 14: request body / client->backend bytes */
    int64_t bytes_download;     /* 15: response body / backend->client bytes */
    const char *protocol;       /* 16: "http", "tcp", "tls", "udp" */
    const struct nb_access_log_kv *metadata; /* 17 */
    uint32_t n_metadata;
    bool agent_network; /* 18 */
    /* Rule input, never written: the matched target has disable_access_log set. Sinks always
     * see false. */
    bool disable_access_log;
};

/*
 * A subscriber. Called synchronously from nb_access_log_write() with the entry after the rules
 * (timestamp and log_id filled in). The entry and everything it points to are valid only during
 * the call: copy what you keep. Must not call back into this logger.
 */
typedef void (*nb_access_log_sink_fn)(void *arg, const struct nb_access_log_entry *e);

struct nb_access_log;

/*
 * Creates a logger. dest: NULL or "" = no local output (sinks only), "-" = stdout, anything else
 * a file path opened O_WRONLY|O_APPEND|O_CREAT with mode 0640. loop is needed for local output
 * (flush timer, writability) and may be NULL otherwise.
 * NB_OK, NB_E_INVAL (local output without a loop, or stdout is not open), NB_E_IO (the path
 * cannot be opened; errno is kept, and a FIFO must already have a reader), NB_E_NOMEM.
 */
int nb_access_log_new(struct nb_loop *loop, const char *dest, struct nb_access_log **out)
    __attribute__((warn_unused_result));
/* Flushes (waiting at most about a second for a pipe to drain), closes and frees. NULL is ok. */
void nb_access_log_free(struct nb_access_log *log);

/* Applies the rules, then writes the line and calls the sinks. Never fails: an entry that does
 * not fit the buffer is counted in `dropped`. log NULL is a no-op. */
void nb_access_log_write(struct nb_access_log *log, const struct nb_access_log_entry *e);

/*
 * Log rotation (call on SIGHUP, after the file was moved away): writes what it can to the old
 * file without blocking, then opens the path again; lines still buffered go to the new file.
 * A no-op for stdout and for no output. NB_OK or NB_E_IO (the old file stays in use).
 */
int nb_access_log_reopen(struct nb_access_log *log) __attribute__((warn_unused_result));

/* Writes out buffered lines now, as far as possible without blocking. */
void nb_access_log_flush(struct nb_access_log *log);

/* Subscribes fn(arg, entry) to every entry. NB_OK, or NB_E_TOO_BIG past NB_ACCESS_LOG_MAX_SINKS. */
int nb_access_log_add_sink(struct nb_access_log *log, nb_access_log_sink_fn fn, void *arg)
    __attribute__((warn_unused_result));
/* Unsubscribes the (fn, arg) pair; NB_E_NOTFOUND if it was not subscribed. */
int nb_access_log_remove_sink(struct nb_access_log *log, nb_access_log_sink_fn fn, void *arg);

struct nb_access_log_stats {
    uint64_t logged;     /* entries that passed the rules (sinks saw them) */
    uint64_t suppressed; /* entries the rules removed (/__netbird__/, disable_access_log) */
    uint64_t written;    /* lines fully handed to the local output */
    uint64_t dropped;    /* lines lost: buffer full, or a write error discarded them */
    size_t buffered;     /* bytes waiting in the buffer */
};
void nb_access_log_stats(const struct nb_access_log *log, struct nb_access_log_stats *st);

/*
 * The deny-entry rate limiter of §8.3, a pure structure with the clock passed in (monotonic
 * milliseconds, e.g. nb_loop_now_ms()). Per (service_id, reason): the first deny is always
 * logged, then at most one per NB_ACCESS_LOG_DENY_COOLDOWN_MS. At most NB_ACCESS_LOG_DENY_MAX_KEYS
 * keys are tracked: a new key beyond that is not logged. Keys whose last logged deny is more than
 * NB_ACCESS_LOG_DENY_IDLE_MS old are purged by a sweep that runs at most once per
 * NB_ACCESS_LOG_DENY_SWEEP_MS from inside nb_access_log_deny_allow() (or on demand).
 * Used by the L4 relays and by HTTP denials alike. Caller-owned; zero-initialised is valid.
 */
#define NB_ACCESS_LOG_DENY_COOLDOWN_MS 10000u
#define NB_ACCESS_LOG_DENY_MAX_KEYS    10000u
#define NB_ACCESS_LOG_DENY_IDLE_MS     (24u * 3600u * 1000u)
#define NB_ACCESS_LOG_DENY_SWEEP_MS    (3600u * 1000u)
#define NB_ACCESS_LOG_DENY_BUCKETS     4096u

struct nb_access_log_deny_key;

struct nb_access_log_deny {
    struct nb_access_log_deny_key *
        *_buckets; /* NB_ACCESS_LOG_DENY_BUCKETS heads, allocated on use */
    uint32_t _count;
    uint64_t _last_sweep_ms;
    bool _swept_once;
};

void nb_access_log_deny_init(struct nb_access_log_deny *d);
void nb_access_log_deny_deinit(struct nb_access_log_deny *d);
/*
 * Whether a deny entry for (service_id, reason) should be logged at now_ms. *suppressed (may be
 * NULL) gets how many denies of this key were held back since the last logged one, so the caller
 * can mention them. Out of memory counts as "not logged".
 */
bool nb_access_log_deny_allow(struct nb_access_log_deny *d, const char *service_id,
                              const char *reason, uint64_t now_ms, uint64_t *suppressed);
/* Purges idle keys now; returns how many were removed. */
uint32_t nb_access_log_deny_sweep(struct nb_access_log_deny *d, uint64_t now_ms);
/* Keys currently tracked. */
static inline uint32_t nb_access_log_deny_count(const struct nb_access_log_deny *d)
{
    return d->_count;
}

#endif
