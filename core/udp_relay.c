/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * UDP relay (udp_relay.h). Sessions are found by client address in a fixed-size hash table
 * (SipHash-2-4 with a per-relay random key, so clients cannot aim at one bucket) and kept in a
 * list ordered by last activity: a forwarded datagram moves its session to the tail, so the head
 * is always the next to expire and one timer per relay reaps exactly on time.
 *
 * Ownership: the relay owns its sessions; a session owns its flow (nb_dgram) and closes it when
 * it ends. A session may end inside its own flow's on_recv (a failed write to the client): the
 * flow's close is allowed there, and nothing touches the session after session_end().
 */
#include "auth/restrict.h"
#include "core/udp_relay.h"
#include "http/accesslog.h"
#include "platform/addr.h"
#include "platform/err.h"
#include "platform/log.h"
#include "platform/loop.h"
#include "platform/sock.h"

#include <errno.h>
#include <netinet/in.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct session {
    struct session *hnext;         /* hash chain */
    struct session *lprev, *lnext; /* activity order, oldest first */
    struct nb_udp_relay *r;
    struct nb_dgram *backend;
    struct sockaddr_storage client;
    socklen_t client_len;
    uint32_t bucket;
    uint64_t created_ms, last_ms;
    uint64_t bytes_up, bytes_down;
    char ip[NB_ADDRSTRLEN]; /* source_ip for the access log (no port, v4-mapped unmapped) */
};

struct nb_udp_relay {
    struct nb_loop *loop;
    int fd;
    struct nb_io io;
    struct nb_timer reap_timer;
    char *service_id, *account_id, *host;
    struct sockaddr_storage target;
    struct nb_udp_dialer dialer;
    uint32_t idle_ms, max_sessions;
    struct nb_tbucket tb;
    struct session **buckets;
    uint32_t nbuckets; /* power of two */
    struct session *oldest, *newest;
    uint32_t n;
    struct nb_access_log *log;
    struct auth_restrict *restrictions;
    const struct auth_geo_ops *geo;
    struct nb_udp_stats own, *st;
    uint64_t (*now_fn)(void *ctx);
    void *now_ctx;
    uint8_t hkey[crypto_shorthash_KEYBYTES];
};

/* One receive buffer for every relay: the loop is single-threaded. */
static uint8_t rbuf[NB_UDP_MAX_DATAGRAM + 1];

/* ---- token bucket ---- */

void nb_tbucket_init(struct nb_tbucket *tb, uint32_t rate_per_s, uint32_t burst, uint64_t now_ms)
{
    tb->rate = rate_per_s;
    tb->burst = burst;
    tb->milli = (uint64_t)burst * 1000u;
    tb->last_ms = now_ms;
}

bool nb_tbucket_take(struct nb_tbucket *tb, uint64_t now_ms)
{
    if (now_ms > tb->last_ms) {
        /* rate tokens per 1000 ms = rate milli-tokens per ms */
        uint64_t cap = (uint64_t)tb->burst * 1000u;
        uint64_t add = (now_ms - tb->last_ms) * tb->rate;
        tb->milli = add >= cap || tb->milli + add >= cap ? cap : tb->milli + add;
        tb->last_ms = now_ms;
    }
    if (tb->milli < 1000u)
        return false;
    tb->milli -= 1000u;
    return true;
}

/* ---- sessions ---- */

static uint64_t now_ms(const struct nb_udp_relay *r)
{
    return r->now_fn ? r->now_fn(r->now_ctx) : nb_loop_now_ms(r->loop);
}

/* Family, port and address bytes of a client address (the hash and equality key). */
static size_t addr_key(const struct sockaddr *sa, uint8_t out[20])
{
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *s4 = (const struct sockaddr_in *)sa;
        out[0] = 4;
        memcpy(out + 1, &s4->sin_port, 2);
        memcpy(out + 3, &s4->sin_addr, 4);
        return 7;
    }
    const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)sa;
    out[0] = 6;
    memcpy(out + 1, &s6->sin6_port, 2);
    memcpy(out + 3, &s6->sin6_addr, 16);
    return 19;
}

static uint32_t bucket_of(const struct nb_udp_relay *r, const struct sockaddr *sa)
{
    uint8_t k[20], h[crypto_shorthash_BYTES];
    size_t n = addr_key(sa, k);
    crypto_shorthash(h, k, n, r->hkey);
    uint32_t v;
    memcpy(&v, h, sizeof v);
    return v & (r->nbuckets - 1);
}

static bool same_client(const struct sockaddr *a, const struct sockaddr *b)
{
    uint8_t ka[20], kb[20];
    size_t na = addr_key(a, ka), nb = addr_key(b, kb);
    return na == nb && memcmp(ka, kb, na) == 0;
}

static struct session *lookup(const struct nb_udp_relay *r, const struct sockaddr *sa,
                              uint32_t bucket)
{
    for (struct session *s = r->buckets[bucket]; s; s = s->hnext)
        if (same_client((const struct sockaddr *)&s->client, sa))
            return s;
    return NULL;
}

static void lru_unlink(struct nb_udp_relay *r, struct session *s)
{
    if (s->lprev)
        s->lprev->lnext = s->lnext;
    else
        r->oldest = s->lnext;
    if (s->lnext)
        s->lnext->lprev = s->lprev;
    else
        r->newest = s->lprev;
    s->lprev = s->lnext = NULL;
}

static void lru_append(struct nb_udp_relay *r, struct session *s)
{
    s->lprev = r->newest;
    s->lnext = NULL;
    if (r->newest)
        r->newest->lnext = s;
    else
        r->oldest = s;
    r->newest = s;
}

static void arm_reaper(struct nb_udp_relay *r)
{
    if (r->oldest == NULL) {
        nb_timer_cancel(&r->reap_timer);
        return;
    }
    /* The timer runs on the loop clock; convert the session deadline from ours. */
    uint64_t now = now_ms(r), loop_now = nb_loop_now_ms(r->loop);
    uint64_t due = r->oldest->last_ms + r->idle_ms;
    uint64_t in = due > now ? due - now : 0;
    nb_timer_arm_at(r->loop, &r->reap_timer, loop_now + in);
}

static void touch(struct nb_udp_relay *r, struct session *s, uint64_t now)
{
    s->last_ms = now;
    if (r->newest != s) {
        lru_unlink(r, s);
        lru_append(r, s);
    }
}

/* v4-mapped IPv6 (a dual-stack socket's IPv4 clients) is shown as IPv4. */
static void client_ip(const struct sockaddr *sa, char out[NB_ADDRSTRLEN])
{
    const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)sa;
    if (sa->sa_family == AF_INET6 && IN6_IS_ADDR_V4MAPPED(&s6->sin6_addr)) {
        struct sockaddr_storage v4;
        char ip[16];
        snprintf(ip, sizeof ip, "%u.%u.%u.%u", s6->sin6_addr.s6_addr[12], s6->sin6_addr.s6_addr[13],
                 s6->sin6_addr.s6_addr[14], s6->sin6_addr.s6_addr[15]);
        nb_addr_from_ip(ip, 0, &v4, NULL);
        nb_addr_ip_str((struct sockaddr *)&v4, out);
        return;
    }
    nb_addr_ip_str(sa, out);
}

static void session_end(struct session *s, const char *why)
{
    struct nb_udp_relay *r = s->r;
    struct session **pp = &r->buckets[s->bucket];
    while (*pp != s)
        pp = &(*pp)->hnext;
    *pp = s->hnext;
    lru_unlink(r, s);
    r->n--;
    r->st->sessions_active--;
    s->backend->vt->close(s->backend);
    if (r->log) {
        struct nb_access_log_entry e = {
            .account_id = r->account_id,
            .service_id = r->service_id,
            .host = r->host,
            .duration_ms = (int64_t)(s->last_ms - s->created_ms),
            .source_ip = s->ip,
            .bytes_upload = (int64_t)s->bytes_up,
            .bytes_download = (int64_t)s->bytes_down,
            .protocol = "udp",
        };
        nb_access_log_write(r->log, &e);
    }
    nb_debug("udp", "service=%s account=%s client=%s up=%llu down=%llu duration_ms=%llu end=%s",
             r->service_id, r->account_id, s->ip, (unsigned long long)s->bytes_up,
             (unsigned long long)s->bytes_down, (unsigned long long)(s->last_ms - s->created_ms),
             why);
    free(s);
}

static void drop(struct nb_udp_relay *r, size_t len)
{
    r->st->dropped_packets++;
    r->st->dropped_bytes += len;
}

/* Backend -> client, from inside the flow's receive path. */
static void backend_recv(void *arg, const uint8_t *data, size_t len)
{
    struct session *s = arg;
    struct nb_udp_relay *r = s->r;
    ssize_t n = sendto(r->fd, data, len, 0, (struct sockaddr *)&s->client, s->client_len);
    if (n < 0) {
        if (errno == EAGAIN || errno == EWOULDBLOCK || errno == ENOBUFS) {
            drop(r, len); /* the socket buffer is full: UDP drops, the session lives */
            return;
        }
        drop(r, len);
        r->st->ended_error++;
        nb_debug("udp", "service %s: write to %s: %s", r->service_id, s->ip, strerror(errno));
        session_end(s, "client write error"); /* s is gone */
        arm_reaper(r);
        return;
    }
    s->bytes_down += len;
    r->st->packets_down++;
    r->st->bytes_down += len;
    touch(r, s, now_ms(r));
}

/* The access restrictions on a new client; false: denied (the caller drops the datagram). */
static bool client_allowed(struct nb_udp_relay *r, const struct sockaddr *from, uint64_t now)
{
    struct auth_ip ip;
    bool have_ip = auth_ip_from_sockaddr(from, &ip);
    enum auth_verdict v = auth_restrict_check(r->restrictions, have_ip ? &ip : NULL, false, r->geo);
    if (v == AUTH_ALLOW)
        return true;
    r->st->restricted++;
    auth_restrict_count_deny(v, AUTH_PROTO_UDP);
    uint64_t suppressed = 0;
    if (auth_restrict_log_deny(r->restrictions, v, now, &suppressed)) {
        char ipbuf[NB_ADDRSTRLEN];
        client_ip(from, ipbuf);
        nb_info("udp", "service %s: %s denied: %s%s", r->service_id, ipbuf, auth_verdict_name(v),
                suppressed ? " (more denials suppressed in the last 10 s)" : "");
        if (r->log) {
            struct nb_access_log_entry e = {
                .account_id = r->account_id,
                .service_id = r->service_id,
                .host = r->host,
                .source_ip = ipbuf,
                .auth_mechanism = auth_verdict_name(v),
                .protocol = "udp",
            };
            nb_access_log_write(r->log, &e);
        }
    }
    return false;
}

static struct session *session_new(struct nb_udp_relay *r, const struct sockaddr *from,
                                   socklen_t fromlen, uint32_t bucket, uint64_t now, size_t len)
{
    if (r->restrictions && !client_allowed(r, from, now)) {
        drop(r, len);
        return NULL;
    }
    if (r->n >= r->max_sessions) {
        r->st->rejected_limit++;
        drop(r, len);
        return NULL;
    }
    if (!nb_tbucket_take(&r->tb, now)) {
        r->st->rejected_rate++;
        drop(r, len);
        return NULL;
    }
    struct session *s = calloc(1, sizeof *s);
    if (s == NULL) {
        drop(r, len);
        return NULL;
    }
    s->r = r;
    memcpy(&s->client, from, fromlen);
    s->client_len = fromlen;
    s->bucket = bucket;
    s->created_ms = s->last_ms = now;
    client_ip(from, s->ip);
    int rc =
        r->dialer.dial(r->dialer.ctx, (struct sockaddr *)&r->target, backend_recv, s, &s->backend);
    if (rc != NB_OK) {
        r->st->dial_errors++;
        drop(r, len);
        nb_debug("udp", "service %s: dial for %s failed: %s", r->service_id, s->ip,
                 nb_strerror(rc));
        free(s);
        return NULL;
    }
    s->hnext = r->buckets[bucket];
    r->buckets[bucket] = s;
    lru_append(r, s);
    r->n++;
    r->st->sessions_active++;
    r->st->sessions_total++;
    if (!nb_timer_armed(&r->reap_timer))
        arm_reaper(r);
    return s;
}

/* Client -> backend. */
static void client_datagram(struct nb_udp_relay *r, const struct sockaddr *from, socklen_t fromlen,
                            const uint8_t *data, size_t len)
{
    uint64_t now = now_ms(r);
    uint32_t b = bucket_of(r, from);
    struct session *s = lookup(r, from, b);
    if (s == NULL && (s = session_new(r, from, fromlen, b, now, len)) == NULL)
        return;
    int rc = s->backend->vt->send(s->backend, data, len);
    if (rc == NB_E_NOMEM) {
        drop(r, len);
        return;
    }
    if (rc != NB_OK) {
        drop(r, len);
        r->st->ended_error++;
        nb_debug("udp", "service %s: write to the target for %s: %s", r->service_id, s->ip,
                 nb_strerror(rc));
        session_end(s, "backend write error");
        arm_reaper(r);
        return;
    }
    s->bytes_up += len;
    r->st->packets_up++;
    r->st->bytes_up += len;
    touch(r, s, now);
}

static void on_readable(struct nb_io *io, uint32_t events)
{
    struct nb_udp_relay *r = io->arg;
    (void)events;
    for (unsigned i = 0; i < NB_UDP_READ_BATCH; i++) {
        struct sockaddr_storage from;
        socklen_t fl = sizeof from;
        ssize_t n = recvfrom(r->fd, rbuf, sizeof rbuf, MSG_TRUNC, (struct sockaddr *)&from, &fl);
        if (n < 0) {
            if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
                nb_debug("udp", "service %s: recv: %s", r->service_id, strerror(errno));
            return;
        }
        if ((size_t)n > NB_UDP_MAX_DATAGRAM) {
            drop(r, (size_t)n);
            continue;
        }
        if (from.ss_family != AF_INET && from.ss_family != AF_INET6)
            continue;
        client_datagram(r, (struct sockaddr *)&from, fl, rbuf, (size_t)n);
    }
}

void nb_udp_relay_reap(struct nb_udp_relay *r)
{
    uint64_t now = now_ms(r);
    while (r->oldest && now - r->oldest->last_ms >= r->idle_ms) {
        r->st->ended_idle++;
        session_end(r->oldest, "idle");
    }
    arm_reaper(r);
}

static void on_reap(struct nb_timer *t)
{
    nb_udp_relay_reap(t->arg);
}

/* The relay's own memory; the socket, timer and sessions are the caller's to have stopped. */
static void relay_dealloc(struct nb_udp_relay *r)
{
    free(r->buckets);
    free(r->service_id);
    free(r->account_id);
    free(r->host);
    auth_restrict_unref(r->restrictions);
    free(r);
}

int nb_udp_relay_new(struct nb_loop *loop, const struct nb_udp_relay_opts *o,
                     struct nb_udp_relay **out, char *err, size_t errlen)
{
    if (o->listen == NULL || o->target == NULL || o->dialer == NULL || o->dialer->dial == NULL)
        return NB_E_INVAL;
    struct nb_udp_relay *r = calloc(1, sizeof *r);
    if (r == NULL)
        return NB_E_NOMEM;
    r->loop = loop;
    r->fd = -1;
    r->st = o->stats ? o->stats : &r->own;
    r->log = o->access_log;
    r->restrictions = auth_restrict_ref(o->restrictions);
    r->geo = o->geo;
    r->dialer = *o->dialer;
    r->now_fn = o->now_ms;
    r->now_ctx = o->now_ctx;
    r->idle_ms = o->idle_timeout_ms ? o->idle_timeout_ms : NB_UDP_IDLE_MS;
    r->max_sessions = o->max_sessions ? o->max_sessions : NB_UDP_MAX_SESSIONS;
    memcpy(&r->target, o->target, nb_addr_len(o->target));
    nb_timer_init(&r->reap_timer, on_reap, r);
    randombytes_buf(r->hkey, sizeof r->hkey);
    r->nbuckets = 16;
    while (r->nbuckets < 2 * r->max_sessions && r->nbuckets < (1u << 20))
        r->nbuckets <<= 1;
    r->buckets = calloc(r->nbuckets, sizeof *r->buckets);
    r->service_id = strdup(o->service_id ? o->service_id : "");
    r->account_id = strdup(o->account_id ? o->account_id : "");
    r->host = o->host ? strdup(o->host) : NULL;
    int rc = NB_E_NOMEM;
    if (r->buckets == NULL || r->service_id == NULL || r->account_id == NULL ||
        (o->host && r->host == NULL))
        goto fail;
    nb_tbucket_init(&r->tb, o->rate_per_s ? o->rate_per_s : NB_UDP_RATE_PER_S,
                    o->burst ? o->burst : NB_UDP_RATE_BURST, now_ms(r));
    r->fd = nb_udp_bind(o->listen);
    if (r->fd < 0) {
        int e = errno;
        char a[NB_ADDRSTRLEN];
        if (err && errlen)
            snprintf(err, errlen, "listen on udp %s: %s", nb_addr_str(o->listen, a), strerror(e));
        errno = e;
        rc = NB_E_IO;
        goto fail;
    }
    if (nb_io_start(loop, &r->io, r->fd, NB_IO_READ, on_readable, r) != NB_OK)
        goto fail;
    *out = r;
    return NB_OK;
fail:
    if (r->fd >= 0)
        close(r->fd);
    relay_dealloc(r);
    return rc;
}

void nb_udp_relay_close(struct nb_udp_relay *r)
{
    if (r == NULL)
        return;
    nb_io_stop(&r->io);
    close(r->fd);
    nb_timer_cancel(&r->reap_timer);
    while (r->oldest)
        session_end(r->oldest, "service closed");
    relay_dealloc(r);
}

uint32_t nb_udp_relay_sessions(const struct nb_udp_relay *r)
{
    return r->n;
}

int nb_udp_relay_addr(const struct nb_udp_relay *r, struct sockaddr_storage *out)
{
    socklen_t l = sizeof *out;
    return getsockname(r->fd, (struct sockaddr *)out, &l) == 0 ? NB_OK : NB_E_IO;
}
