/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * The few things lwIP needs from its host (compiled into nb_lwip, with our warnings): the clock
 * (sys_now from the loop), a capped allocator behind MEM_LIBC_MALLOC, RFC 6528 initial sequence
 * numbers, and the routing hook that keeps replies on the account they belong to.
 */
#include "netstack/ns_internal.h"

#include "lwip/ip.h"
#include "lwip/priv/tcp_priv.h"
#include "lwip/stats.h"
#include "lwip/tcp.h"
#include "lwip_hooks.h"
#include "platform/loop.h"

#include <sodium.h>
#include <string.h>

struct nb_loop *ns__loop;
struct netif ns__blackhole;
uint64_t ns__blackhole_drops;

static uint8_t isn_key[crypto_shorthash_KEYBYTES];
static bool isn_key_set;

u32_t sys_now(void)
{
    return (u32_t)(ns__loop ? nb_loop_now_ms(ns__loop) : nb_now_ms());
}

/*
 * MEM_LIBC_MALLOC with a ceiling: lwIP keeps the byte count in lwip_stats.mem.used (MEM_STATS),
 * so refusing past MEM_SIZE bounds the heap; lwIP then reports ERR_MEM and callers back off.
 */
void *ns__mem_malloc(size_t size)
{
    if ((size_t)lwip_stats.mem.used + size > (size_t)MEM_SIZE)
        return NULL;
    return malloc(size);
}

void *ns__mem_calloc(size_t n, size_t size)
{
    if (size != 0 && n > SIZE_MAX / size)
        return NULL;
    if ((size_t)lwip_stats.mem.used + n * size > (size_t)MEM_SIZE)
        return NULL;
    return calloc(n, size);
}

void ns__mem_free(void *p)
{
    free(p);
}

/*
 * RFC 6528: ISN = M + F(4-tuple, secret), M a 4 us clock, F SipHash-2-4 keyed once per process.
 * lwIP's default ISN is a counter, guessable by anyone who saw one connection.
 */
u32_t ns__tcp_isn(const ip_addr_t *local_ip, u16_t local_port, const ip_addr_t *remote_ip,
                  u16_t remote_port)
{
#ifdef NB_FUZZING
    (void)local_ip, (void)local_port, (void)remote_ip, (void)remote_port;
    return 0x10000000u; /* deterministic, so fuzz inputs can complete handshakes */
#endif
    uint8_t in[2 * 16 + 2 * 2];
    uint8_t out[crypto_shorthash_BYTES];

    if (!isn_key_set) {
        randombytes_buf(isn_key, sizeof isn_key);
        isn_key_set = true;
    }
    memset(in, 0, sizeof in);
    if (IP_IS_V6(local_ip)) {
        memcpy(in, ip_2_ip6(local_ip)->addr, 16);
        memcpy(in + 16, ip_2_ip6(remote_ip)->addr, 16);
    } else {
        memcpy(in, &ip_2_ip4(local_ip)->addr, 4);
        memcpy(in + 16, &ip_2_ip4(remote_ip)->addr, 4);
    }
    memcpy(in + 32, &local_port, 2);
    memcpy(in + 34, &remote_port, 2);
    crypto_shorthash(out, in, sizeof in, isn_key);
    uint32_t f;
    memcpy(&f, out, sizeof f);
    return (u32_t)(f + (uint32_t)(nb_now_ns() / 4000u));
}

struct netif *ns__route_hook(void)
{
    struct netif *in = ip_current_input_netif();
    if (in != NULL && in != &ns__blackhole)
        return in;
    return &ns__blackhole;
}

static err_t blackhole_out4(struct netif *netif, struct pbuf *p, const ip4_addr_t *dst)
{
    ns__blackhole_drops++;
    return ERR_RTE;
}

static err_t blackhole_out6(struct netif *netif, struct pbuf *p, const ip6_addr_t *dst)
{
    ns__blackhole_drops++;
    return ERR_RTE;
}

static err_t blackhole_init(struct netif *netif)
{
    netif->name[0] = 'b';
    netif->name[1] = 'h';
    netif->mtu = 1280;
    netif->output = blackhole_out4;
    netif->output_ip6 = blackhole_out6;
    netif->flags = 0; /* never up: lwIP's own scans skip it */
    return ERR_OK;
}

int ns__blackhole_add(void)
{
    if (netif_add(&ns__blackhole, IP4_ADDR_ANY4, IP4_ADDR_ANY4, IP4_ADDR_ANY4, NULL, blackhole_init,
                  ip_input) == NULL)
        return NB_E_NOMEM;
    return NB_OK;
}

static void nr_reset(void);

void ns__blackhole_remove(void)
{
    netif_remove(&ns__blackhole);
    nr_reset(); /* ns_deinit: the NewReno state goes with the loop its call is deferred on */
}

/*
 * NewReno (RFC 6582) on top of lwIP 2.1.3's Reno. lwIP ends fast recovery on the first ACK of
 * new data. When one window lost several segments (a peer's socket buffer overflowing drops a
 * run of datagrams), that first ACK is partial: it stops at the next hole, cwnd is back to
 * ssthresh, the segments beyond the holes keep the flight above cwnd, nothing more is sent, no
 * duplicate ACK comes, and only the retransmission timeout resends the next hole.
 *
 * So: when lwIP fast-retransmits (seen in the output hook), the pcb is remembered with its
 * recovery point (snd_nxt then). An ACK that advances but stays below it (seen in the input
 * hook) marks the pcb. Once lwIP has processed that ACK (at the input hook of the connection's
 * next segment, or from a deferred call if none comes in the same batch) the segment at the new
 * left edge is requeued as lwIP's own fast retransmit does, and the pcb is put back in fast
 * recovery (TF_INFR: no second halving; duplicate ACKs inflate the window as lwIP already
 * does). Doing it before the next segment matters: the duplicate ACKs right behind a partial
 * ACK would otherwise start a new fast retransmit of the same hole and halve ssthresh again.
 * An ACK at or past the recovery point, or a timeout, ends it. At most NR_MAX connections are
 * tracked (the oldest entry is replaced); entries are matched by pcb pointer and ports, checked
 * against lwIP's active list when used from the deferred call, and swept once a second while
 * any exist (a connection that died in recovery). Nothing is allocated; with no connection in
 * recovery the input hook costs one test.
 */
#define NR_MAX 64

struct nr_entry {
    struct tcp_pcb *pcb; /* NULL: free */
    u16_t lport, rport;  /* with the pointer: a pcb reused for another connection is not it */
    u32_t recover;       /* snd_nxt when recovery began */
    u32_t ack;           /* the latest partial ACK */
    bool partial;        /* a partial ACK arrived: resend the next hole once lwIP is done */
};

static struct nr_entry nr_tab[NR_MAX];
static unsigned nr_used; /* entries in use: 0 (the rule) costs every input segment one test */
static unsigned nr_next; /* replacement cursor */
static struct nb_defer nr_defer;
static struct nb_timer nr_sweep; /* drops entries of pcbs that died in recovery */
static bool nr_sweep_ready;      /* nr_sweep initialised */
uint64_t ns__tcp_nr_rexmits;

#define NR_SWEEP_MS 1000

static struct nr_entry *nr_find(const struct tcp_pcb *pcb)
{
    for (unsigned i = 0; i < NR_MAX; i++)
        if (nr_tab[i].pcb == pcb && nr_tab[i].lport == pcb->local_port &&
            nr_tab[i].rport == pcb->remote_port)
            return &nr_tab[i];
    return NULL;
}

static void nr_end(struct nr_entry *e)
{
    e->pcb = NULL;
    nr_used--;
}

static struct nr_entry *nr_free_entry(void)
{
    for (unsigned i = 0; i < NR_MAX; i++)
        if (nr_tab[i].pcb == NULL) {
            nr_used++;
            return &nr_tab[i];
        }
    struct nr_entry *e = &nr_tab[nr_next]; /* all in use: replace the oldest-placed */
    nr_next = (nr_next + 1) % NR_MAX;
    return e;
}

static bool pcb_is_active(const struct tcp_pcb *pcb);

static void on_nr_sweep(struct nb_timer *t)
{
    for (unsigned i = 0; i < NR_MAX; i++)
        if (nr_tab[i].pcb != NULL && !nr_tab[i].partial && !pcb_is_active(nr_tab[i].pcb))
            nr_end(&nr_tab[i]);
    if (nr_used > 0)
        nb_timer_arm(ns__loop, &nr_sweep, NR_SWEEP_MS);
}

static void nr_begin(const struct tcp_pcb *pcb)
{
    if (!nr_sweep_ready) {
        nb_timer_init(&nr_sweep, on_nr_sweep, NULL);
        nr_sweep_ready = true;
    }
    if (ns__loop && !nb_timer_armed(&nr_sweep))
        nb_timer_arm(ns__loop, &nr_sweep, NR_SWEEP_MS);
    struct nr_entry *e = nr_free_entry();
    e->pcb = (struct tcp_pcb *)pcb; /* the output hook's pcb is const; lwIP's own is not */
    e->lport = pcb->local_port;
    e->rport = pcb->remote_port;
    e->recover = pcb->snd_nxt;
    e->partial = false;
}

static void nr_reset(void)
{
    if (ns__loop)
        nb_defer_cancel(ns__loop, &nr_defer);
    if (nr_sweep_ready)
        nb_timer_cancel(&nr_sweep);
    memset(nr_tab, 0, sizeof nr_tab);
    nr_used = 0;
}

static bool pcb_is_active(const struct tcp_pcb *pcb)
{
    for (struct tcp_pcb *p = tcp_active_pcbs; p != NULL; p = p->next)
        if (p == pcb)
            return true;
    return false;
}

/*
 * Requeues the hole at the left edge after a partial ACK (e->partial) and puts the pcb back in
 * fast recovery. `live`: called from the input hook with lwIP's own pcb (lwIP sends the segment
 * at the end of that input); otherwise from the deferred call, which checks the pcb still
 * exists and sends it (`output`).
 */
static void nr_rexmit(struct nr_entry *e, bool live, bool output)
{
    struct tcp_pcb *pcb = e->pcb;
    e->partial = false;
    if ((!live &&
         (!pcb_is_active(pcb) || pcb->local_port != e->lport || pcb->remote_port != e->rport)) ||
        pcb->lastack != e->ack || pcb->unacked == NULL ||
        lwip_ntohl(pcb->unacked->tcphdr->seqno) != pcb->lastack) {
        nr_end(e); /* gone, moved on, or nothing outstanding at the left edge */
        return;
    }
    if (pcb->flags & TF_INFR)
        return; /* lwIP fast-retransmitted this hole itself meanwhile */
    if (tcp_rexmit(pcb) != ERR_OK)
        return;
    tcp_set_flags(pcb, TF_INFR);
    pcb->rtime = 0;
    ns__tcp_nr_rexmits++;
    if (output)
        tcp_output(pcb);
}

static void nr_run(struct nb_defer *d)
{
    for (unsigned i = 0; i < NR_MAX; i++)
        if (nr_tab[i].pcb != NULL && nr_tab[i].partial)
            nr_rexmit(&nr_tab[i], false, true);
}

/* The input half of NewReno: a segment of a pcb in recovery, before lwIP processes it. */
static void nr_input(struct tcp_pcb *pcb, const struct tcp_hdr *hdr)
{
    if (nr_used == 0)
        return;
    struct nr_entry *e = nr_find(pcb);
    if (e == NULL)
        return;
    if (e->partial)
        nr_rexmit(e, true, false); /* lwIP's tcp_output after this input sends it */
    if (e->pcb == NULL || !(TCPH_FLAGS(hdr) & TCP_ACK))
        return;
    u32_t ackno = hdr->ackno; /* host order, like seqno */
    if (!TCP_SEQ_LT(ackno, e->recover)) {
        nr_end(e); /* everything sent before the loss is acked: recovered */
    } else if ((pcb->flags & TF_INFR) && TCP_SEQ_GT(ackno, pcb->lastack) &&
               TCP_SEQ_LEQ(ackno, pcb->snd_nxt)) {
        e->partial = true; /* lwIP will leave recovery on it: resend the next hole after */
        e->ack = ackno;
        if (ns__loop)
            nb_defer(ns__loop, &nr_defer, nr_run, NULL);
    }
}

err_t ns__tcp_inpacket(struct tcp_pcb *pcb, struct tcp_hdr *hdr, struct pbuf *p)
{
    /* Listen pcbs are a shorter struct without rcv_nxt: state is the common prefix. */
    if (pcb->state == LISTEN || pcb->state == CLOSED || pcb->state == SYN_SENT)
        return ERR_OK;
    u32_t seqno = hdr->seqno; /* tcp_input has converted the header to host order */
    u32_t tcplen = p->tot_len + ((TCPH_FLAGS(hdr) & (TCP_FIN | TCP_SYN)) ? 1u : 0u);
    if (tcplen > 0 && TCP_SEQ_BETWEEN(pcb->rcv_nxt, seqno + 1, seqno + tcplen - 1) &&
        pcb->rcv_nxt - seqno >= 0xffffu)
        return ERR_VAL; /* no real segment is 2^31 away: drop it, as the window check would */
    nr_input(pcb, hdr);
    return ERR_OK;
}

u32_t *ns__tcp_out_opts(struct pbuf *p, struct tcp_hdr *hdr, const struct tcp_pcb *pcb, u32_t *opts)
{
    if (pcb == NULL || pcb->state == LISTEN || p->tot_len <= TCPH_HDRLEN_BYTES(hdr))
        return opts; /* no data: a control segment, a listener's reply, a keepalive */
    u32_t seq = lwip_ntohl(hdr->seqno);
    if (pcb->flags & TF_RTO) {
        /* A timeout: lwIP rewound snd_nxt and resends everything up to rto_end itself. */
        struct nr_entry *e = TCP_SEQ_LT(seq, pcb->rto_end) ? nr_find(pcb) : NULL;
        if (e != NULL)
            nr_end(e);
    } else if ((pcb->flags & TF_INFR) && seq == pcb->lastack && TCP_SEQ_LT(seq, pcb->snd_nxt) &&
               pcb->snd_wnd != 0 && nr_find(pcb) == NULL) {
        nr_begin(pcb); /* lwIP's fast retransmit: in recovery until snd_nxt is acked */
    }
    return opts;
}
