/* SPDX-License-Identifier: BSD-3-Clause */
/* Copyright (c) nbproxy authors */

/*
 * The access log. The engine (and the L4 relays) call nb_access_log_write() once per finished
 * request or session; this file applies the §8 record rules, formats one JSON line into a bounded
 * buffer and hands the entry to the sinks (the management sender). The buffer is drained by a
 * short timer, by size, or by writability on the loop, so a slow or stuck log reader costs at
 * most NB_ACCESS_LOG_BUF_CAP bytes and dropped entries, never a blocked loop.
 *
 * Lines are formatted in two passes over the same code (count, then write in place), so the
 * buffer check happens before any byte is copied and no per-entry allocation is made.
 */
#include "http/accesslog.h"

#include "platform/err.h"
#include "platform/utf8.h"
#include "platform/log.h"
#include "platform/loop.h"
#include "platform/xid.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define MOD "accesslog"

struct sink {
    nb_access_log_sink_fn fn;
    void *arg;
};

struct nb_access_log {
    struct nb_loop *loop;
    char *path;     /* file output: reopened by nb_access_log_reopen() */
    int fd;         /* -1: no local output */
    bool nonblock;  /* pipe / tty / socket: never wait for it */
    bool is_socket; /* write with send(MSG_DONTWAIT) */
    bool blocked;   /* the last write hit EAGAIN: wait for the io watcher */
    struct nb_io io;
    struct nb_timer flush_timer;
    char *buf;
    size_t off, len, cap; /* pending bytes are buf[off, len) */
    struct sink sinks[NB_ACCESS_LOG_MAX_SINKS];
    unsigned n_sinks;
    uint64_t logged, suppressed, written, dropped;
    uint64_t unreported; /* drops not yet mentioned in a warning */
    uint64_t last_warn_ms;
    bool warned;
};

/* ---- the record rules (§8.1, §8.2, §8.3) ---- */

static const char netbird_prefix[] = "/__netbird__/";

/* The usage-only variant keeps these metadata keys and nothing else (§8.2). */
static const char *const usage_keys[] = {
    "llm.provider",
    "llm.model",
    "llm.resolved_provider_id",
    "llm.input_tokens",
    "llm.output_tokens",
    "llm.total_tokens",
    "llm.cached_input_tokens",
    "llm.cache_creation_tokens",
    "cost.usd_input",
    "cost.usd_cached_input",
    "cost.usd_cache_creation",
    "cost.usd_output",
    "cost.usd_total",
    "cost.usd_cache",
    "llm.authorising_groups",
};
#define N_USAGE_KEYS (sizeof usage_keys / sizeof usage_keys[0])

static const char *str(const char *s)
{
    return s ? s : "";
}

static bool is_l4(const char *proto)
{
    return strcmp(proto, "tcp") == 0 || strcmp(proto, "tls") == 0 || strcmp(proto, "udp") == 0;
}

/*
 * in -> out with every rule applied; usage[] is storage for the reduced metadata. Returns false
 * when the entry must not be logged at all. Strings in out are never NULL.
 */
static bool apply_rules(const struct nb_access_log_entry *in, struct nb_access_log_entry *out,
                        struct nb_access_log_kv usage[N_USAGE_KEYS])
{
    if (in->path && strncmp(in->path, netbird_prefix, sizeof netbird_prefix - 1) == 0)
        return false;
    if (in->disable_access_log && !in->agent_network)
        return false;

    *out = *in;
    out->log_id = str(in->log_id);
    out->account_id = str(in->account_id);
    out->service_id = str(in->service_id);
    out->host = str(in->host);
    out->path = str(in->path);
    out->method = str(in->method);
    out->source_ip = str(in->source_ip);
    out->auth_mechanism = str(in->auth_mechanism);
    out->user_id = str(in->user_id);
    out->protocol = str(in->protocol);
    out->disable_access_log = false;
    if (in->metadata == NULL)
        out->n_metadata = 0;

    /* Decided on the real protocol and status, before the usage variant clears them. */
    if (strcmp(out->protocol, "http") == 0)
        out->auth_success = in->response_code != 401 && in->response_code != 403;
    else if (is_l4(out->protocol))
        out->auth_success = false;

    /* Only OIDC sessions carry a meaningful user identity. */
    if (strcmp(out->auth_mechanism, "oidc") != 0)
        out->user_id = "";

    if (in->disable_access_log) {
        /* Agent-network target with logging off: keep only what usage accounting needs. */
        out->host = out->path = out->source_ip = out->method = out->protocol = "";
        out->response_code = 0;
        out->duration_ms = 0;
        out->bytes_upload = out->bytes_download = 0;
        uint32_t n = 0;
        for (size_t k = 0; k < N_USAGE_KEYS; k++) {
            const char *v = NULL;
            for (uint32_t i = 0; i < out->n_metadata; i++) /* last one wins */
                if (in->metadata[i].key && strcmp(in->metadata[i].key, usage_keys[k]) == 0)
                    v = str(in->metadata[i].value);
            if (v)
                usage[n++] = (struct nb_access_log_kv){usage_keys[k], v};
        }
        out->metadata = usage;
        out->n_metadata = n;
    }
    return true;
}

/* ---- JSON line ---- */

/* Appends to p (NULL: only counts). */
struct jw {
    char *p;
    size_t n;
};

static void jw_raw(struct jw *w, const char *s, size_t len)
{
    if (w->p)
        memcpy(w->p + w->n, s, len);
    w->n += len;
}

static void jw_lit(struct jw *w, const char *s)
{
    jw_raw(w, s, strlen(s));
}

static void jw_str(struct jw *w, const char *s)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t n = strlen(s);
    jw_raw(w, "\"", 1);
    for (size_t i = 0; i < n;) {
        unsigned char c = p[i];
        size_t k = nb_utf8_seq(p + i, n - i);
        char esc[8];
        if (k == 0) {
            jw_raw(w, "\\ufffd", 6); /* paths are decoded bytes: keep every line valid JSON */
            i++;
            continue;
        }
        if (c == '"' || c == '\\') {
            esc[0] = '\\';
            esc[1] = (char)c;
            jw_raw(w, esc, 2);
        } else if (c == '\n') {
            jw_raw(w, "\\n", 2);
        } else if (c == '\r') {
            jw_raw(w, "\\r", 2);
        } else if (c == '\t') {
            jw_raw(w, "\\t", 2);
        } else if (c < 0x20) {
            snprintf(esc, sizeof esc, "\\u%04x", c);
            jw_raw(w, esc, 6);
        } else {
            jw_raw(w, s + i, k);
        }
        i += k;
    }
    jw_raw(w, "\"", 1);
}

static void jw_key(struct jw *w, const char *key, bool first)
{
    if (!first)
        jw_raw(w, ",", 1);
    jw_str(w, key);
    jw_raw(w, ":", 1);
}

static void jw_i64(struct jw *w, int64_t v)
{
    char num[24];
    int n = snprintf(num, sizeof num, "%" PRId64, v);
    jw_raw(w, num, (size_t)n);
}

/* RFC 3339 UTC with milliseconds (24 bytes for years 0-9999; room for any int year). */
static void format_time(int64_t ms, char out[64])
{
    int64_t sec = ms / 1000, frac = ms % 1000;
    if (frac < 0) {
        frac += 1000;
        sec--;
    }
    time_t t = (time_t)sec;
    struct tm tm;
    if (gmtime_r(&t, &tm) == NULL)
        memset(&tm, 0, sizeof tm);
    snprintf(out, 64, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900, tm.tm_mon + 1,
             tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, (int)frac);
}

static void format_line(struct jw *w, const struct nb_access_log_entry *e, const char *ts)
{
    jw_raw(w, "{", 1);
    jw_key(w, "timestamp", true);
    jw_str(w, ts);
    jw_key(w, "logId", false);
    jw_str(w, e->log_id);
    jw_key(w, "accountId", false);
    jw_str(w, e->account_id);
    jw_key(w, "serviceId", false);
    jw_str(w, e->service_id);
    jw_key(w, "host", false);
    jw_str(w, e->host);
    jw_key(w, "path", false);
    jw_str(w, e->path);
    jw_key(w, "durationMs", false);
    jw_i64(w, e->duration_ms);
    jw_key(w, "method", false);
    jw_str(w, e->method);
    jw_key(w, "responseCode", false);
    jw_i64(w, e->response_code);
    jw_key(w, "sourceIp", false);
    jw_str(w, e->source_ip);
    jw_key(w, "authMechanism", false);
    jw_str(w, e->auth_mechanism);
    jw_key(w, "userId", false);
    jw_str(w, e->user_id);
    jw_key(w, "authSuccess", false);
    jw_lit(w, e->auth_success ? "true" : "false");
    jw_key(w, "bytesUpload", false);
    jw_i64(w, e->bytes_upload);
    jw_key(w, "bytesDownload", false);
    jw_i64(w, e->bytes_download);
    jw_key(w, "protocol", false);
    jw_str(w, e->protocol);
    jw_key(w, "metadata", false);
    jw_raw(w, "{", 1);
    bool first = true;
    for (uint32_t i = 0; i < e->n_metadata; i++) {
        const char *k = e->metadata[i].key;
        if (k == NULL)
            continue;
        /* A map on the wire: a key given twice keeps its last value. */
        bool later = false;
        for (uint32_t j = i + 1; j < e->n_metadata && !later; j++)
            later = e->metadata[j].key && strcmp(e->metadata[j].key, k) == 0;
        if (later)
            continue;
        jw_key(w, k, first);
        jw_str(w, str(e->metadata[i].value));
        first = false;
    }
    jw_raw(w, "}", 1);
    jw_key(w, "agentNetwork", false);
    jw_lit(w, e->agent_network ? "true" : "false");
    jw_raw(w, "}", 1);
}

/* ---- output ---- */

static uint64_t now_ms(const struct nb_access_log *log)
{
    return log->loop ? nb_loop_now_ms(log->loop) : nb_now_ms();
}

static uint64_t count_lines(const char *p, size_t n)
{
    uint64_t c = 0;
    for (const char *e = p + n; (p = memchr(p, '\n', (size_t)(e - p))) != NULL; p++)
        c++;
    return c;
}

static void note_drops(struct nb_access_log *log, uint64_t n, const char *why)
{
    log->dropped += n;
    log->unreported += n;
    uint64_t now = now_ms(log);
    if (log->warned && now - log->last_warn_ms < NB_ACCESS_LOG_WARN_MS)
        return;
    nb_warn(MOD, "dropped %" PRIu64 " access-log entries (%s); %" PRIu64 " in total",
            log->unreported, why, log->dropped);
    log->unreported = 0;
    log->last_warn_ms = now;
    log->warned = true;
}

static void on_writable(struct nb_io *io, uint32_t events);

static void wait_writable(struct nb_access_log *log)
{
    int ret;
    log->blocked = true;
    if (log->io.loop == NULL)
        ret = nb_io_start(log->loop, &log->io, log->fd, NB_IO_WRITE, on_writable, log);
    else
        ret = nb_io_set(&log->io, NB_IO_WRITE);
    if (ret != NB_OK) {
        /* Cannot watch the fd: fall back to the timer, which retries the write. */
        log->blocked = false;
        nb_timer_arm(log->loop, &log->flush_timer, NB_ACCESS_LOG_FLUSH_MS);
    }
}

/* Writes pending bytes until done, EAGAIN or an error. */
static void flush_some(struct nb_access_log *log)
{
    while (log->fd >= 0 && log->off < log->len) {
        size_t want = log->len - log->off;
        ssize_t n = log->is_socket
                        ? send(log->fd, log->buf + log->off, want, MSG_DONTWAIT | MSG_NOSIGNAL)
                        : write(log->fd, log->buf + log->off, want);
        if (n > 0) {
            log->written += count_lines(log->buf + log->off, (size_t)n);
            log->off += (size_t)n;
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            wait_writable(log);
            return;
        }
        /* EPIPE, ENOSPC, EIO...: what is buffered cannot be written; do not keep it around. */
        uint64_t lost = count_lines(log->buf + log->off, want);
        log->off = log->len;
        note_drops(log, lost, n < 0 ? strerror(errno) : "write returned 0");
    }
    log->off = log->len = 0;
    log->blocked = false;
    if (log->io.loop)
        nb_io_set(&log->io, 0);
    if (log->loop)
        nb_timer_cancel(&log->flush_timer);
}

static void on_writable(struct nb_io *io, uint32_t events)
{
    struct nb_access_log *log = io->arg;
    log->blocked = false;
    flush_some(log);
}

static void on_flush_timer(struct nb_timer *t)
{
    struct nb_access_log *log = t->arg;
    if (!log->blocked)
        flush_some(log);
}

void nb_access_log_flush(struct nb_access_log *log)
{
    if (log && !log->blocked)
        flush_some(log);
}

/* Room for n more bytes at buf + len, within the cap. */
static bool reserve(struct nb_access_log *log, size_t n)
{
    if (log->len - log->off + n > NB_ACCESS_LOG_BUF_CAP)
        return false;
    if (log->off > 0 && log->len + n > log->cap) {
        memmove(log->buf, log->buf + log->off, log->len - log->off);
        log->len -= log->off;
        log->off = 0;
    }
    if (log->len + n <= log->cap)
        return true;
    size_t cap = log->cap ? log->cap : 16384;
    while (cap < log->len + n)
        cap *= 2;
    if (cap > NB_ACCESS_LOG_BUF_CAP)
        cap = NB_ACCESS_LOG_BUF_CAP;
    char *p = realloc(log->buf, cap);
    if (p == NULL)
        return false;
    log->buf = p;
    log->cap = cap;
    return true;
}

static void append_line(struct nb_access_log *log, const struct nb_access_log_entry *e)
{
    char ts[64];
    format_time(e->timestamp_ms, ts);
    struct jw count = {NULL, 0};
    format_line(&count, e, ts);
    size_t need = count.n + 1;
    if (!reserve(log, need)) {
        note_drops(log, 1, "buffer full");
        return;
    }
    struct jw w = {log->buf + log->len, 0};
    format_line(&w, e, ts);
    w.p[w.n++] = '\n';
    log->len += w.n;

    if (log->blocked)
        return; /* the io watcher flushes */
    if (log->len - log->off >= NB_ACCESS_LOG_FLUSH_BYTES)
        flush_some(log);
    else if (!nb_timer_armed(&log->flush_timer))
        nb_timer_arm(log->loop, &log->flush_timer, NB_ACCESS_LOG_FLUSH_MS);
}

void nb_access_log_write(struct nb_access_log *log, const struct nb_access_log_entry *in)
{
    struct nb_access_log_kv usage[N_USAGE_KEYS];
    struct nb_access_log_entry e;
    char id[NB_XID_STR_LEN + 1];
    if (log == NULL)
        return;
    if (!apply_rules(in, &e, usage)) {
        log->suppressed++;
        return;
    }
    if (e.timestamp_ms == 0) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        e.timestamp_ms = (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
    }
    if (e.log_id[0] == '\0') {
        nb_xid_make((uint32_t)(e.timestamp_ms / 1000), id);
        e.log_id = id;
    }
    log->logged++;
    if (log->fd >= 0)
        append_line(log, &e);
    for (unsigned i = 0; i < log->n_sinks; i++)
        log->sinks[i].fn(log->sinks[i].arg, &e);
}

/* ---- opening ---- */

/*
 * A writable fd for out_fd's file with its own open file description where that matters: for a
 * pipe or tty we reopen it through /proc so O_NONBLOCK does not leak into the shared stdout (the
 * shell that started us, other writers). Sockets are dup'ed and written with MSG_DONTWAIT.
 */
static int open_stdout(struct nb_access_log *log)
{
    struct stat st;
    if (fstat(STDOUT_FILENO, &st) < 0)
        return NB_E_INVAL;
    int fd = -1;
    if (S_ISFIFO(st.st_mode) || S_ISCHR(st.st_mode)) {
        fd = open("/proc/self/fd/1", O_WRONLY | O_NONBLOCK | O_CLOEXEC);
        if (fd < 0) {
            /* No /proc: share the description after all; blocking the loop would be worse. */
            fd = fcntl(STDOUT_FILENO, F_DUPFD_CLOEXEC, 3);
            if (fd >= 0)
                fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
        }
        log->nonblock = true;
    } else {
        fd = fcntl(STDOUT_FILENO, F_DUPFD_CLOEXEC, 3);
        log->is_socket = log->nonblock = S_ISSOCK(st.st_mode);
    }
    if (fd < 0)
        return NB_E_IO;
    log->fd = fd;
    return NB_OK;
}

/* Opens log->path; on success *fd_out and the mode flags are set. */
static int open_path(struct nb_access_log *log, int *fd_out, bool *nonblock, bool *is_socket)
{
    int fd = open(log->path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NONBLOCK, 0640);
    if (fd < 0)
        return NB_E_IO;
    struct stat st;
    if (fstat(fd, &st) < 0) {
        int e = errno;
        close(fd);
        errno = e;
        return NB_E_IO;
    }
    *nonblock = !S_ISREG(st.st_mode);
    *is_socket = S_ISSOCK(st.st_mode);
    *fd_out = fd;
    return NB_OK;
}

int nb_access_log_new(struct nb_loop *loop, const char *dest, struct nb_access_log **out)
{
    int ret = NB_E_NOMEM;
    struct nb_access_log *log = calloc(1, sizeof *log);
    if (log == NULL)
        goto out;
    log->fd = -1;
    log->loop = loop;
    nb_timer_init(&log->flush_timer, on_flush_timer, log);
    if (dest == NULL || dest[0] == '\0') {
        ret = NB_OK;
        goto out;
    }
    ret = NB_E_INVAL;
    if (loop == NULL)
        goto out;
    if (strcmp(dest, "-") == 0) {
        ret = open_stdout(log);
        goto out;
    }
    ret = NB_E_NOMEM;
    log->path = strdup(dest);
    if (log->path == NULL)
        goto out;
    ret = open_path(log, &log->fd, &log->nonblock, &log->is_socket);
out:
    if (ret != NB_OK && log) {
        int e = errno;
        free(log->path);
        free(log);
        log = NULL;
        errno = e;
    }
    *out = log;
    return ret;
}

int nb_access_log_reopen(struct nb_access_log *log)
{
    if (log == NULL || log->path == NULL)
        return NB_OK;
    nb_access_log_flush(log);
    int fd;
    bool nonblock, is_socket;
    int ret = open_path(log, &fd, &nonblock, &is_socket);
    if (ret != NB_OK) {
        nb_warn(MOD, "reopening the access log failed: %s", strerror(errno));
        return ret;
    }
    /* Whatever the old file would not take (a blocked pipe) continues in the new one. */
    nb_io_stop(&log->io);
    close(log->fd);
    log->fd = fd;
    log->nonblock = nonblock;
    log->is_socket = is_socket;
    log->blocked = false;
    if (log->off < log->len)
        flush_some(log);
    return NB_OK;
}

/* Last flush: a pipe gets about a second to take the rest, then the rest is counted as lost. */
static void final_flush(struct nb_access_log *log)
{
    uint64_t deadline = nb_now_ms() + 1000;
    for (;;) {
        log->blocked = false;
        flush_some(log);
        if (log->off >= log->len || log->fd < 0)
            return;
        uint64_t now = nb_now_ms();
        if (now >= deadline)
            break;
        struct pollfd p = {.fd = log->fd, .events = POLLOUT};
        if (poll(&p, 1, (int)(deadline - now)) <= 0)
            break;
    }
    note_drops(log, count_lines(log->buf + log->off, log->len - log->off), "closing");
    log->off = log->len = 0;
}

void nb_access_log_free(struct nb_access_log *log)
{
    if (log == NULL)
        return;
    if (log->fd >= 0) {
        final_flush(log);
        nb_io_stop(&log->io);
        close(log->fd);
    }
    if (log->loop)
        nb_timer_cancel(&log->flush_timer);
    free(log->buf);
    free(log->path);
    free(log);
}

/* ---- sinks and stats ---- */

int nb_access_log_add_sink(struct nb_access_log *log, nb_access_log_sink_fn fn, void *arg)
{
    if (log->n_sinks == NB_ACCESS_LOG_MAX_SINKS)
        return NB_E_TOO_BIG;
    log->sinks[log->n_sinks++] = (struct sink){fn, arg};
    return NB_OK;
}

int nb_access_log_remove_sink(struct nb_access_log *log, nb_access_log_sink_fn fn, void *arg)
{
    for (unsigned i = 0; i < log->n_sinks; i++) {
        if (log->sinks[i].fn == fn && log->sinks[i].arg == arg) {
            memmove(&log->sinks[i], &log->sinks[i + 1],
                    (log->n_sinks - i - 1) * sizeof log->sinks[0]);
            log->n_sinks--;
            return NB_OK;
        }
    }
    return NB_E_NOTFOUND;
}

void nb_access_log_stats(const struct nb_access_log *log, struct nb_access_log_stats *st)
{
    st->logged = log->logged;
    st->suppressed = log->suppressed;
    st->written = log->written;
    st->dropped = log->dropped;
    st->buffered = log->len - log->off;
}

/* ---- deny-entry rate limiter (§8.3) ---- */

struct nb_access_log_deny_key {
    struct nb_access_log_deny_key *next;
    uint64_t last_ms;    /* when a deny of this key was last logged */
    uint64_t suppressed; /* denies held back since then */
    uint32_t hash;
    size_t len; /* of key: service_id NUL reason */
    char key[];
};

void nb_access_log_deny_init(struct nb_access_log_deny *d)
{
    memset(d, 0, sizeof *d);
}

void nb_access_log_deny_deinit(struct nb_access_log_deny *d)
{
    if (d->_buckets) {
        for (uint32_t b = 0; b < NB_ACCESS_LOG_DENY_BUCKETS; b++) {
            struct nb_access_log_deny_key *k = d->_buckets[b];
            while (k) {
                struct nb_access_log_deny_key *next = k->next;
                free(k);
                k = next;
            }
        }
        free(d->_buckets);
    }
    memset(d, 0, sizeof *d);
}

static uint32_t fnv1a(uint32_t h, const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        h ^= (uint8_t)s[i];
        h *= 16777619u;
    }
    return h;
}

uint32_t nb_access_log_deny_sweep(struct nb_access_log_deny *d, uint64_t now_ms)
{
    uint32_t removed = 0;
    d->_last_sweep_ms = now_ms;
    d->_swept_once = true;
    if (d->_buckets == NULL)
        return 0;
    for (uint32_t b = 0; b < NB_ACCESS_LOG_DENY_BUCKETS; b++) {
        struct nb_access_log_deny_key **pp = &d->_buckets[b];
        while (*pp) {
            struct nb_access_log_deny_key *k = *pp;
            if (now_ms > k->last_ms && now_ms - k->last_ms > NB_ACCESS_LOG_DENY_IDLE_MS) {
                *pp = k->next;
                free(k);
                d->_count--;
                removed++;
            } else {
                pp = &k->next;
            }
        }
    }
    return removed;
}

bool nb_access_log_deny_allow(struct nb_access_log_deny *d, const char *service_id,
                              const char *reason, uint64_t now_ms, uint64_t *suppressed)
{
    if (suppressed)
        *suppressed = 0;
    if (!d->_swept_once) {
        d->_last_sweep_ms = now_ms;
        d->_swept_once = true;
    } else if (now_ms > d->_last_sweep_ms &&
               now_ms - d->_last_sweep_ms >= NB_ACCESS_LOG_DENY_SWEEP_MS) {
        nb_access_log_deny_sweep(d, now_ms);
    }
    if (d->_buckets == NULL) {
        d->_buckets = calloc(NB_ACCESS_LOG_DENY_BUCKETS, sizeof d->_buckets[0]);
        if (d->_buckets == NULL)
            return false;
    }

    const char *svc = str(service_id), *why = str(reason);
    size_t ls = strlen(svc), lr = strlen(why);
    /* The NUL between the parts keeps ("ab","c") and ("a","bc") apart. */
    uint32_t h = fnv1a(fnv1a(2166136261u, svc, ls + 1), why, lr);
    struct nb_access_log_deny_key *k = d->_buckets[h % NB_ACCESS_LOG_DENY_BUCKETS];
    for (; k; k = k->next) {
        if (k->hash == h && k->len == ls + 1 + lr && memcmp(k->key, svc, ls + 1) == 0 &&
            memcmp(k->key + ls + 1, why, lr) == 0)
            break;
    }
    if (k) {
        if (now_ms >= k->last_ms && now_ms - k->last_ms >= NB_ACCESS_LOG_DENY_COOLDOWN_MS) {
            if (suppressed)
                *suppressed = k->suppressed;
            k->last_ms = now_ms;
            k->suppressed = 0;
            return true;
        }
        k->suppressed++;
        return false;
    }
    /* Bounded under a flood of distinct keys: once full, new keys are simply not logged. */
    if (d->_count >= NB_ACCESS_LOG_DENY_MAX_KEYS)
        return false;
    k = malloc(sizeof *k + ls + 1 + lr);
    if (k == NULL)
        return false;
    k->last_ms = now_ms;
    k->suppressed = 0;
    k->hash = h;
    k->len = ls + 1 + lr;
    memcpy(k->key, svc, ls + 1);
    memcpy(k->key + ls + 1, why, lr);
    k->next = d->_buckets[h % NB_ACCESS_LOG_DENY_BUCKETS];
    d->_buckets[h % NB_ACCESS_LOG_DENY_BUCKETS] = k;
    d->_count++;
    return true;
}
