/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * The process-wide lwIP instance: initialisation, lwIP's timers on the loop, statistics.
 *
 * lwIP keeps its timeouts in one sorted list; sys_timeouts_sleeptime() says when the first is
 * due. We mirror that into a single nb_timer, re-armed ("kicked") after every entry point that
 * may have added a timeout (input, connect, listen, writes) and after each expiry.
 */
#include "netstack/ns_internal.h"

#include "lwip/init.h"
#include "lwip/memp.h"
#include "lwip/priv/tcp_priv.h"
#include "lwip/stats.h"
#include "lwip/tcp.h"
#include "lwip/timeouts.h"
#include "platform/log.h"
#include "platform/loop.h"

#include <assert.h>
#include <sodium.h>
#include <stdio.h>
#include <string.h>

int ns__input_depth;
size_t ns__n_streams;
size_t ns__n_listeners;
size_t ns__n_ifs;

static bool lwip_ready; /* lwip_init() ran (it cannot run twice: timers would be re-added) */
static struct nb_timer lwip_timer;

static void on_lwip_timer(struct nb_timer *t)
{
    ns__input_depth++;
    sys_check_timeouts();
    ns__input_depth--;
    ns__timers_kick();
}

void ns__timers_kick(void)
{
    if (ns__loop == NULL)
        return;
    u32_t sleep = sys_timeouts_sleeptime();
    if (sleep == SYS_TIMEOUTS_SLEEPTIME_INFINITE)
        return;
    uint64_t due = nb_loop_now_ms(ns__loop) + sleep;
    if (nb_timer_armed(&lwip_timer) && lwip_timer.due_ms <= due)
        return;
    nb_timer_arm_at(ns__loop, &lwip_timer, due);
}

int ns_init(struct nb_loop *loop)
{
    if (ns__loop != NULL)
        return NB_E_EXISTS;
    if (sodium_init() < 0)
        return NB_E_NOMEM;
    ns__loop = loop;
    if (!lwip_ready) {
        lwip_init();
        lwip_ready = true;
    }
    int rc = ns__blackhole_add();
    if (rc != NB_OK) {
        ns__loop = NULL;
        return rc;
    }
    nb_timer_init(&lwip_timer, on_lwip_timer, NULL);
    ns__if_init();
    ns__timers_kick();
    return NB_OK;
}

void ns_deinit(void)
{
    if (ns__loop == NULL)
        return;
    assert(ns__n_ifs == 0 && "ns_deinit: free every ns_if first");
    nb_timer_cancel(&lwip_timer);
    ns__if_deinit();
    ns__blackhole_remove();
    ns__loop = NULL;
}

static const char *const pool_names[] = {
#define LWIP_MEMPOOL(name, num, size, desc) desc,
#include "lwip/priv/memp_std.h"
};

static size_t pool_used(memp_t t)
{
    return lwip_stats.memp[t] ? lwip_stats.memp[t]->used : 0;
}

static size_t pool_avail(memp_t t)
{
    return lwip_stats.memp[t] ? lwip_stats.memp[t]->avail : 0;
}

void ns_stats(struct ns_stats *st)
{
    memset(st, 0, sizeof *st);
    st->tcp_pcbs = pool_used(MEMP_TCP_PCB);
    st->tcp_pcbs_max = pool_avail(MEMP_TCP_PCB);
    st->tcp_listen = pool_used(MEMP_TCP_PCB_LISTEN);
    st->tcp_listen_max = pool_avail(MEMP_TCP_PCB_LISTEN);
    st->tcp_segs = pool_used(MEMP_TCP_SEG);
    st->tcp_segs_max = pool_avail(MEMP_TCP_SEG);
    st->pbuf_pool = pool_used(MEMP_PBUF_POOL);
    st->pbuf_pool_max = pool_avail(MEMP_PBUF_POOL);
    st->pbuf_ref = pool_used(MEMP_PBUF);
    st->frag = pool_used(MEMP_FRAG_PBUF);
    st->heap_bytes = lwip_stats.mem.used;
    st->heap_peak = lwip_stats.mem.max;
    st->heap_max = MEM_SIZE;
    st->pool_errs = lwip_stats.mem.err;
    for (int i = 0; i < MEMP_MAX; i++)
        if (lwip_stats.memp[i])
            st->pool_errs += lwip_stats.memp[i]->err;
    for (struct tcp_pcb *p = tcp_tw_pcbs; p != NULL; p = p->next)
        st->time_wait++;
    st->streams = ns__n_streams;
    st->listeners = ns__n_listeners;
    st->udp_flows = ns__n_udp;
    st->udp_pcbs = pool_used(MEMP_UDP_PCB);
    st->udp_pcbs_max = pool_avail(MEMP_UDP_PCB);
    st->ifs = ns__n_ifs;
    st->ifs_attached = ns__n_attached;
    st->ifs_attached_max = NS_IF_MAX_ATTACHED;
    st->if_attaches = ns__if_attaches;
    st->if_detaches = ns__if_detaches;
    st->if_no_slot = ns__if_no_slot;
    st->time_wait_purged = ns__tw_purged;
    st->blackholed = ns__blackhole_drops;
}

bool ns_pools_idle(char *why, size_t why_len)
{
    char dummy[1];
    if (why == NULL) {
        why = dummy;
        why_len = sizeof dummy;
    }
    if (why_len > 0)
        why[0] = '\0';
    for (int i = 0; i < MEMP_MAX; i++) {
        if (i == MEMP_SYS_TIMEOUT || lwip_stats.memp[i] == NULL)
            continue;
        if (lwip_stats.memp[i]->used != 0) {
            snprintf(why, why_len, "lwIP pool %s: %u in use", pool_names[i],
                     (unsigned)lwip_stats.memp[i]->used);
            return false;
        }
    }
    if (lwip_stats.mem.used != 0) {
        snprintf(why, why_len, "lwIP heap: %zu bytes in use", (size_t)lwip_stats.mem.used);
        return false;
    }
    if (ns__n_streams != 0) {
        snprintf(why, why_len, "%zu ns_tcp streams live", ns__n_streams);
        return false;
    }
    if (ns__n_udp != 0) {
        snprintf(why, why_len, "%zu ns_udp flows live", ns__n_udp);
        return false;
    }
    if (ns__n_listeners != 0) {
        snprintf(why, why_len, "%zu ns_tcp listeners live", ns__n_listeners);
        return false;
    }
    return true;
}
