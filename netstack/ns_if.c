/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * Tunnel interfaces: one per account, between the account's WireGuard device (which hands us
 * decrypted IP packets and takes the ones we send) and lwIP.
 *
 * The lwIP netif is attached lazily (ns_if.h): ns__if_attach() adds it when input arrives or a
 * pcb is about to be bound, a sweep timer removes it once no pcb but TIME_WAIT ones has been
 * bound to it for NS_IF_DETACH_GRACE_MS. Detaching happens only at the top of the loop (the
 * sweep timer, or an attach that needs a slot while ns__input_depth == 0), never inside lwIP.
 * attached[] maps lwIP's netif index back to the interface; the invariant is: no pcb carries a
 * netif index that attached[] does not map to its owner, so a reused index never matches a stale
 * pcb of another account.
 *
 * The netif gets its IPv4 address with a /32 mask, whatever prefix the account uses: lwIP's own
 * route scan (netmask match over all netifs) then never picks an interface for a foreign
 * destination, so every output decision is either the bound netif of a pcb or our routing hook.
 */
#include "netstack/ns_internal.h"

#include "lwip/ip.h"
#include "lwip/ip4_addr.h"
#include "lwip/ip6_addr.h"
#include "lwip/netif.h"
#include "lwip/pbuf.h"
#include "platform/log.h"
#include "platform/loop.h"

#include <arpa/inet.h>
#include <assert.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>

int ns_addr_parse(const char *s, struct ns_addr *out)
{
    char buf[INET6_ADDRSTRLEN + 8];
    size_t n = strlen(s);
    if (n == 0 || n >= sizeof buf)
        return NB_E_PARSE;
    memcpy(buf, s, n + 1);
    memset(out, 0, sizeof *out);
    long prefix = -1;
    char *slash = strchr(buf, '/');
    if (slash) {
        *slash = '\0';
        char *end;
        if (slash[1] == '\0')
            return NB_E_PARSE;
        prefix = strtol(slash + 1, &end, 10);
        if (*end != '\0' || prefix < 0)
            return NB_E_PARSE;
    }
    if (inet_pton(AF_INET, buf, out->ip) == 1) {
        out->family = AF_INET;
        if (prefix > 32)
            return NB_E_PARSE;
        out->prefix_len = (uint8_t)(prefix < 0 ? 32 : prefix);
        return NB_OK;
    }
    if (inet_pton(AF_INET6, buf, out->ip) == 1) {
        out->family = AF_INET6;
        if (prefix > 128)
            return NB_E_PARSE;
        out->prefix_len = (uint8_t)(prefix < 0 ? 128 : prefix);
        return NB_OK;
    }
    return NB_E_PARSE;
}

static bool v4_usable(const uint8_t ip[4])
{
    uint32_t a = (uint32_t)ip[0] << 24 | (uint32_t)ip[1] << 16 | (uint32_t)ip[2] << 8 | ip[3];
    return a != 0 && a != 0xffffffffu && (a >> 28) != 0xe && (a >> 24) != 127;
}

static bool v6_usable(const uint8_t ip[16])
{
    static const uint8_t zero[16];
    if (memcmp(ip, zero, 16) == 0 || ip[0] == 0xff)
        return false; /* unspecified, multicast */
    if (ip[0] == 0xfe && (ip[1] & 0xc0) == 0x80)
        return false; /* link-local: scoped, and lwIP would route it by source scan */
    if (memcmp(ip, zero, 15) == 0 && ip[15] == 1)
        return false; /* loopback */
    return true;
}

size_t ns__n_attached;
uint64_t ns__if_attaches, ns__if_detaches, ns__if_no_slot, ns__tw_purged;

static struct ns_if *attached[256]; /* by lwIP netif index (1..255; 0 = NETIF_NO_INDEX) */
static struct nb_timer sweep_timer;
static uint64_t last_no_slot_log_ms;

/*
 * Output buffer, shared by all interfaces: the loop is single-threaded and the output hook may
 * not re-enter the netstack, so one packet at a time is flattened here.
 */
static uint8_t obuf[NS_IF_HEADROOM + NS_IF_MAX_MTU + NS_IF_TAILROOM];

/* ---- output: lwIP -> flat buffer -> hook ---- */

static err_t if_output(struct netif *netif, struct pbuf *p)
{
    struct ns_if *nif = netif->state;
    if (p->tot_len > nif->mtu) {
        nif->st.out_errors++;
        return ERR_IF;
    }
    uint8_t *pkt = obuf + NS_IF_HEADROOM;
    size_t len = pbuf_copy_partial(p, pkt, p->tot_len, 0);
    if (nif->output(nif->output_ctx, pkt, len) != NB_OK) {
        nif->st.out_errors++;
        return ERR_IF;
    }
    nif->st.out_packets++;
    nif->st.out_bytes += len;
    return ERR_OK;
}

static err_t if_output4(struct netif *netif, struct pbuf *p, const ip4_addr_t *dst)
{
    return if_output(netif, p);
}

static err_t if_output6(struct netif *netif, struct pbuf *p, const ip6_addr_t *dst)
{
    return if_output(netif, p);
}

static err_t if_init(struct netif *netif)
{
    struct ns_if *nif = netif->state;
    netif->name[0] = 'n';
    netif->name[1] = 's';
    netif->mtu = nif->mtu;
    netif->output = if_output4;
    netif->output_ip6 = if_output6;
    netif->flags = 0; /* point to point: no BROADCAST, ETHARP, IGMP, MLD6 */
    return ERR_OK;
}

static int check_config(const struct ns_if_config *cfg)
{
    if (cfg->output == NULL || cfg->addrs == NULL || cfg->n_addrs == 0 ||
        cfg->n_addrs > NS_IF_MAX_ADDRS)
        return NB_E_INVAL;
    if (cfg->mtu != 0 && (cfg->mtu < NS_IF_MIN_MTU || cfg->mtu > NS_IF_MAX_MTU))
        return NB_E_INVAL;
    size_t n4 = 0, n6 = 0;
    for (size_t i = 0; i < cfg->n_addrs; i++) {
        const struct ns_addr *a = &cfg->addrs[i];
        if (a->family == AF_INET) {
            if (++n4 > 1 || !v4_usable(a->ip) || a->prefix_len > 32)
                return NB_E_INVAL;
        } else if (a->family == AF_INET6) {
            if (++n6 > LWIP_IPV6_NUM_ADDRESSES || !v6_usable(a->ip) || a->prefix_len > 128)
                return NB_E_INVAL;
        } else {
            return NB_E_INVAL;
        }
    }
    return NB_OK;
}

int ns_if_new(const struct ns_if_config *cfg, struct ns_if **out)
{
    int rc = check_config(cfg);
    if (rc != NB_OK)
        return rc;
    if (ns__loop == NULL)
        return NB_E_INVAL;
    struct ns_if *nif = calloc(1, sizeof *nif);
    if (nif == NULL)
        return NB_E_NOMEM;
    nif->mtu = cfg->mtu ? cfg->mtu : NS_IF_DEFAULT_MTU;
    if (cfg->tag)
        snprintf(nif->tag, sizeof nif->tag, "%s", cfg->tag);
    memcpy(nif->addrs, cfg->addrs, cfg->n_addrs * sizeof cfg->addrs[0]);
    nif->n_addrs = cfg->n_addrs;
    nif->output = cfg->output;
    nif->output_ctx = cfg->output_ctx;
    nif->max_conns = cfg->max_conns;
    for (size_t i = 0; i < nif->n_addrs; i++) {
        if (nif->addrs[i].family == AF_INET)
            nif->has_v4 = true;
        else
            nif->has_v6 = true;
    }
    ns__n_ifs++;
    *out = nif;
    return NB_OK;
}

/* ---- attach / detach ---- */

static void sweep_arm(void)
{
    if (!nb_timer_armed(&sweep_timer))
        nb_timer_arm(ns__loop, &sweep_timer, NS_IF_SWEEP_MS);
}

/* Adds the lwIP netif with the interface's addresses and brings it up. */
static int netif_attach(struct ns_if *nif)
{
    struct netif *n = calloc(1, sizeof *n);
    if (n == NULL)
        return NB_E_NOMEM;
    ip4_addr_t ip4, mask4;
    ip4_addr_set_any(&ip4);
    ip4_addr_set_any(&mask4);
    for (size_t i = 0; i < nif->n_addrs; i++) {
        if (nif->addrs[i].family == AF_INET) {
            memcpy(&ip4.addr, nif->addrs[i].ip, 4);
            mask4.addr = PP_HTONL(0xffffffffUL);
        }
    }
    if (netif_add(n, &ip4, &mask4, IP4_ADDR_ANY4, nif, if_init, ip_input) == NULL) {
        free(n);
        return NB_E_NOMEM;
    }
    s8_t slot = 0;
    for (size_t i = 0; i < nif->n_addrs; i++) {
        if (nif->addrs[i].family != AF_INET6)
            continue;
        ip6_addr_t ip6;
        memcpy(ip6.addr, nif->addrs[i].ip, 16);
        netif_ip6_addr_set(n, slot, &ip6);
        netif_ip6_addr_set_state(n, slot, IP6_ADDR_PREFERRED);
        slot++;
    }
    netif_set_link_up(n);
    netif_set_up(n);
    u8_t idx = netif_get_index(n);
    assert(attached[idx] == NULL);
    attached[idx] = nif;
    nif->netif = n;
    nif->st.attaches++;
    ns__n_attached++;
    ns__if_attaches++;
    sweep_arm();
    return NB_OK;
}

/*
 * Removes the lwIP netif. Every pcb still bound to its index is aborted first (by the callers'
 * checks only TIME_WAIT ones are left when detaching an idle interface), so the index can be
 * reused safely.
 */
static void netif_detach(struct ns_if *nif)
{
    struct netif *n = nif->netif;
    assert(ns__input_depth == 0 && "netif detach from inside lwIP");
    u8_t idx = netif_get_index(n);
    ns__tw_purged += ns__tcp_purge(idx);
    ns__udp_purge(idx);
    /*
     * Clear the addresses behind lwIP's back: netif_remove() would otherwise report them as
     * "changed", and lwIP then aborts every pcb with that local address, including other
     * accounts' connections on the same tunnel address. Our own pcbs are already gone.
     */
    ip4_addr_set_any(ip_2_ip4(&n->ip_addr));
    for (int i = 0; i < LWIP_IPV6_NUM_ADDRESSES; i++)
        n->ip6_addr_state[i] = IP6_ADDR_INVALID;
    netif_remove(n); /* also clears lwIP's ND6 state that points at n */
    free(n);
    attached[idx] = NULL;
    nif->netif = NULL;
    ns__n_attached--;
    ns__if_detaches++;
    if (ns__n_attached == 0)
        nb_timer_cancel(&sweep_timer);
}

/* Detaches the longest-idle attached interface no pcb (but TIME_WAIT) is bound to. */
static bool evict_one(void)
{
    bool busy[256] = {false};
    ns__tcp_busy(busy);
    ns__udp_busy(busy);
    struct ns_if *victim = NULL;
    for (int i = 1; i < 256; i++) {
        struct ns_if *o = attached[i];
        if (o && !busy[i] && (victim == NULL || o->busy_ms < victim->busy_ms))
            victim = o;
    }
    if (victim == NULL)
        return false;
    netif_detach(victim);
    return true;
}

int ns__if_attach(struct ns_if *nif)
{
    uint64_t now = nb_loop_now_ms(ns__loop);
    if (nif->netif == NULL) {
        if (ns__n_attached >= NS_IF_MAX_ATTACHED && (ns__input_depth > 0 || !evict_one())) {
            ns__if_no_slot++;
            if (now - last_no_slot_log_ms >= 1000 || last_no_slot_log_ms == 0) {
                last_no_slot_log_ms = now;
                nb_warn("netstack",
                        "account %s: no lwIP interface slot free: %u accounts hold TCP state or "
                        "listeners (the limit); its packets and connects are refused",
                        nif->tag[0] ? nif->tag : "?", (unsigned)NS_IF_MAX_ATTACHED);
            }
            return NB_E_NOMEM;
        }
        int rc = netif_attach(nif);
        if (rc != NB_OK)
            return rc;
    }
    nif->busy_ms = now;
    return NB_OK;
}

/* Detaches every attached interface that has not needed its netif for the grace period. */
static void on_sweep(struct nb_timer *t)
{
    uint64_t now = nb_loop_now_ms(ns__loop);
    bool busy[256] = {false};
    ns__tcp_busy(busy);
    ns__udp_busy(busy);
    for (int i = 1; i < 256; i++) {
        struct ns_if *nif = attached[i];
        if (nif == NULL)
            continue;
        if (busy[i])
            nif->busy_ms = now;
        else if (now - nif->busy_ms >= NS_IF_DETACH_GRACE_MS)
            netif_detach(nif);
    }
    if (ns__n_attached > 0)
        nb_timer_arm(ns__loop, &sweep_timer, NS_IF_SWEEP_MS);
}

void ns__if_init(void)
{
    nb_timer_init(&sweep_timer, on_sweep, NULL);
}

void ns__if_deinit(void)
{
    nb_timer_cancel(&sweep_timer);
}

void ns_if_free(struct ns_if *nif)
{
    if (nif == NULL)
        return;
    assert(ns__input_depth == 0 && "ns_if_free from inside the netstack: defer it");
    ns__tcp_if_gone(nif);
    ns__udp_if_gone(nif);
    if (nif->netif)
        netif_detach(nif);
    free(nif);
    ns__n_ifs--;
}

/* ---- input ---- */

static bool dst_is_ours(const struct ns_if *nif, int family, const uint8_t *dst)
{
    size_t n = family == AF_INET ? 4 : 16;
    for (size_t i = 0; i < nif->n_addrs; i++)
        if (nif->addrs[i].family == family && memcmp(nif->addrs[i].ip, dst, n) == 0)
            return true;
    return false;
}

/*
 * Sources no tunnel peer may legitimately use. Beyond hygiene this matters for isolation: lwIP
 * routes replies to scoped IPv6 sources (link-local) by scanning every netif for the reply's
 * source address before the routing hook runs, which would pick another account holding the
 * same address.
 */
static bool src_is_bogus(int family, const uint8_t *src)
{
    if (family == AF_INET)
        return src[0] == 0 || src[0] == 127 || src[0] >= 224; /* this-net, loopback, mc/bcast */
    static const uint8_t zero[16];
    if (memcmp(src, zero, 15) == 0 && (src[15] == 0 || src[15] == 1))
        return true; /* unspecified, loopback */
    if (src[0] == 0xff)
        return true; /* multicast */
    if (src[0] == 0xfe && (src[1] & 0xc0) == 0x80)
        return true; /* link-local fe80::/10 */
    if (memcmp(src, zero, 10) == 0 && src[10] == 0xff && src[11] == 0xff)
        return true; /* v4-mapped */
    return false;
}

int ns_if_input(struct ns_if *nif, const uint8_t *pkt, size_t len)
{
    if (ns__input_depth > 0) {
        nif->st.in_reentrant++;
        return NB_E_AGAIN;
    }
    size_t ip_len;
    if (len >= 20 && (pkt[0] >> 4) == 4) {
        size_t ihl = (size_t)(pkt[0] & 0x0f) * 4;
        ip_len = (size_t)pkt[2] << 8 | pkt[3];
        if (ihl < 20 || ip_len < ihl || ip_len > len) {
            nif->st.in_invalid++;
            return NB_E_DROP;
        }
        if (!dst_is_ours(nif, AF_INET, pkt + 16)) {
            nif->st.in_not_ours++;
            return NB_E_DROP;
        }
        if (src_is_bogus(AF_INET, pkt + 12)) {
            nif->st.in_invalid++;
            return NB_E_DROP;
        }
    } else if (len >= 40 && (pkt[0] >> 4) == 6) {
        ip_len = 40 + ((size_t)pkt[4] << 8 | pkt[5]);
        if (ip_len > len) {
            nif->st.in_invalid++;
            return NB_E_DROP;
        }
        if (!dst_is_ours(nif, AF_INET6, pkt + 24)) {
            nif->st.in_not_ours++;
            return NB_E_DROP;
        }
        if (src_is_bogus(AF_INET6, pkt + 8)) {
            nif->st.in_invalid++;
            return NB_E_DROP;
        }
    } else {
        nif->st.in_invalid++;
        return NB_E_DROP;
    }

    if (ns__if_attach(nif) != NB_OK) {
        nif->st.in_no_slot++;
        return NB_E_NOMEM;
    }
    struct pbuf *p = pbuf_alloc(PBUF_RAW, (u16_t)ip_len, PBUF_POOL);
    if (p == NULL) {
        nif->st.in_nomem++;
        return NB_E_NOMEM;
    }
    pbuf_take(p, pkt, (u16_t)ip_len);
    nif->st.in_packets++;
    nif->st.in_bytes += ip_len;
    ns__input_depth++;
    /* ip_input always consumes p (it frees it on every drop path). */
    nif->netif->input(p, nif->netif);
    ns__input_depth--;
    ns__timers_kick();
    return NB_OK;
}

void ns_if_stats(const struct ns_if *nif, struct ns_if_stats *st)
{
    *st = nif->st;
    st->streams = nif->n_streams;
    st->listeners = nif->n_listeners;
    st->udp_flows = nif->n_udps;
    st->attached = nif->netif != NULL;
}

const char *ns_if_tag(const struct ns_if *nif)
{
    return nif->tag;
}

uint16_t ns_if_mtu(const struct ns_if *nif)
{
    return nif->mtu;
}

bool ns_if_has_addr(const struct ns_if *nif, const struct sockaddr *sa)
{
    if (sa->sa_family == AF_INET)
        return dst_is_ours(nif, AF_INET,
                           (const uint8_t *)&((const struct sockaddr_in *)sa)->sin_addr);
    if (sa->sa_family == AF_INET6)
        return dst_is_ours(nif, AF_INET6,
                           (const uint8_t *)&((const struct sockaddr_in6 *)sa)->sin6_addr);
    return false;
}
