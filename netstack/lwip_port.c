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

void ns__blackhole_remove(void)
{
    netif_remove(&ns__blackhole);
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
    return ERR_OK;
}
