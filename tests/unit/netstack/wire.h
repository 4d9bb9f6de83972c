/* SPDX-License-Identifier: BSD-3-Clause */
#ifndef NB_TESTS_NETSTACK_WIRE_H
#define NB_TESTS_NETSTACK_WIRE_H

/*
 * Test helper: an in-process "wire" between ns_ifs, no WireGuard. Each port's output hook
 * records the packet and, if the port is linked, queues a copy for the other side. Queued
 * packets are delivered from an eventfd watcher on the loop, i.e. from the top of the loop like
 * real UDP input (lwIP must not be re-entered from an output hook).
 */

#include "netstack/ns.h"
#include "netstack/ns_if.h"
#include "netstack/ns_tcp.h"
#include "platform/err.h"
#include "platform/loop.h"

#include <arpa/inet.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

struct wire_pkt {
    struct wire_pkt *next;
    struct ns_if *to;
    size_t len;
    uint8_t data[];
};

struct wire_port {
    struct ns_if *nif;
    struct wire_port *peer; /* where output goes; NULL = recorded only */
    uint64_t out_count;
    uint8_t last[2048];
    size_t last_len;
    bool check_headroom;
};

struct wire {
    struct nb_loop *loop;
    int efd;
    struct nb_io io;
    struct wire_pkt *head, *tail;
    uint64_t delivered;
};

static struct wire g_wire;

static inline void wire_on_io(struct nb_io *io, uint32_t ev)
{
    uint64_t v;
    (void)ev;
    if (read(g_wire.efd, &v, sizeof v) < 0) {
        /* nothing */
    }
    struct wire_pkt *p = g_wire.head;
    g_wire.head = g_wire.tail = NULL;
    while (p) {
        struct wire_pkt *next = p->next;
        ns_if_input(p->to, p->data, p->len);
        g_wire.delivered++;
        free(p);
        p = next;
    }
}

static inline int wire_output(void *ctx, uint8_t *pkt, size_t len)
{
    struct wire_port *port = ctx;
    port->out_count++;
    port->last_len = len < sizeof port->last ? len : sizeof port->last;
    memcpy(port->last, pkt, port->last_len);
    /* headroom and tailroom are writable (ASan catches it if not) */
    pkt[-1] = pkt[-NS_IF_HEADROOM];
    pkt[len + NS_IF_TAILROOM - 1] = 0;
    if (port->peer == NULL || port->peer->nif == NULL)
        return NB_OK;
    struct wire_pkt *p = malloc(sizeof *p + len);
    if (p == NULL)
        return NB_E_NOMEM;
    p->next = NULL;
    p->to = port->peer->nif;
    p->len = len;
    memcpy(p->data, pkt, len);
    if (g_wire.tail)
        g_wire.tail->next = p;
    else
        g_wire.head = p;
    g_wire.tail = p;
    uint64_t one = 1;
    if (write(g_wire.efd, &one, sizeof one) < 0)
        return NB_E_IO;
    return NB_OK;
}

static inline void wire_init(struct nb_loop *loop)
{
    memset(&g_wire, 0, sizeof g_wire);
    g_wire.loop = loop;
    g_wire.efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    nb_io_start(loop, &g_wire.io, g_wire.efd, NB_IO_READ, wire_on_io, NULL);
}

static inline void wire_deinit(void)
{
    nb_io_stop(&g_wire.io);
    close(g_wire.efd);
    while (g_wire.head) {
        struct wire_pkt *n = g_wire.head->next;
        free(g_wire.head);
        g_wire.head = n;
    }
    g_wire.tail = NULL;
}

/* Creates an interface with up to two addresses ("10.0.0.1/24", "fd00::1/64" or NULL). */
static struct ns_if *wire_if(struct wire_port *port, const char *tag, const char *a1,
                             const char *a2)
{
    struct ns_addr addrs[2];
    size_t n = 0;
    if (a1 && ns_addr_parse(a1, &addrs[n]) == NB_OK)
        n++;
    if (a2 && ns_addr_parse(a2, &addrs[n]) == NB_OK)
        n++;
    memset(port, 0, sizeof *port);
    struct ns_if_config cfg = {
        .tag = tag,
        .mtu = 1280,
        .addrs = addrs,
        .n_addrs = n,
        .output = wire_output,
        .output_ctx = port,
    };
    if (ns_if_new(&cfg, &port->nif) != NB_OK)
        return NULL;
    return port->nif;
}

static inline void wire_link(struct wire_port *a, struct wire_port *b)
{
    a->peer = b;
    b->peer = a;
}

/* Runs the loop until cond(arg) or max_ms of wall time passed. Returns cond's last value. */
static inline bool run_until(bool (*cond)(void *), void *arg, int max_ms)
{
    uint64_t end = nb_now_ms() + (uint64_t)max_ms;
    while (!cond(arg)) {
        if (nb_now_ms() >= end)
            return false;
        nb_loop_run_once(g_wire.loop, 5);
    }
    return true;
}

static inline bool never(void *arg)
{
    (void)arg;
    return false;
}

/* Runs the loop for ms milliseconds. */
static inline void run_for(int ms)
{
    run_until(never, NULL, ms);
}

static inline struct sockaddr_storage sa_of(const char *ip, uint16_t port)
{
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof ss);
    if (strchr(ip, ':')) {
        struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;
        s6->sin6_family = AF_INET6;
        s6->sin6_port = htons(port);
        inet_pton(AF_INET6, ip, &s6->sin6_addr);
    } else {
        struct sockaddr_in *s4 = (struct sockaddr_in *)&ss;
        s4->sin_family = AF_INET;
        s4->sin_port = htons(port);
        inet_pton(AF_INET, ip, &s4->sin_addr);
    }
    return ss;
}

/* Internet checksum over buf, continuing from a partial sum. */
static inline uint32_t csum_add(uint32_t sum, const uint8_t *buf, size_t len)
{
    for (size_t i = 0; i + 1 < len; i += 2)
        sum += (uint32_t)buf[i] << 8 | buf[i + 1];
    if (len & 1)
        sum += (uint32_t)buf[len - 1] << 8;
    return sum;
}

static inline uint16_t csum_fold(uint32_t sum)
{
    while (sum >> 16)
        sum = (sum & 0xffff) + (sum >> 16);
    return (uint16_t)~sum;
}

/* Builds an IPv4 header (20 bytes) in pkt for a payload of plen bytes. */
static inline void ip4_hdr(uint8_t *pkt, uint8_t proto, const char *src, const char *dst,
                           size_t plen)
{
    memset(pkt, 0, 20);
    pkt[0] = 0x45;
    pkt[2] = (uint8_t)((20 + plen) >> 8);
    pkt[3] = (uint8_t)(20 + plen);
    pkt[4] = 0x12;
    pkt[5] = 0x34;
    pkt[8] = 64;
    pkt[9] = proto;
    inet_pton(AF_INET, src, pkt + 12);
    inet_pton(AF_INET, dst, pkt + 16);
    uint16_t c = csum_fold(csum_add(0, pkt, 20));
    pkt[10] = (uint8_t)(c >> 8);
    pkt[11] = (uint8_t)c;
}

/* Builds an IPv4 TCP segment with `flags` (no payload); returns its length. */
static inline size_t tcp4_seg(uint8_t *pkt, const char *src, uint16_t sport, const char *dst,
                              uint16_t dport, uint8_t flags, uint32_t seq)
{
    ip4_hdr(pkt, 6, src, dst, 20);
    uint8_t *t = pkt + 20;
    memset(t, 0, 20);
    t[0] = (uint8_t)(sport >> 8);
    t[1] = (uint8_t)sport;
    t[2] = (uint8_t)(dport >> 8);
    t[3] = (uint8_t)dport;
    t[4] = (uint8_t)(seq >> 24);
    t[5] = (uint8_t)(seq >> 16);
    t[6] = (uint8_t)(seq >> 8);
    t[7] = (uint8_t)seq;
    t[12] = 5 << 4;
    t[13] = flags;
    t[14] = 0xff;
    t[15] = 0xff;
    uint8_t ph[12];
    memcpy(ph, pkt + 12, 8);
    ph[8] = 0;
    ph[9] = 6;
    ph[10] = 0;
    ph[11] = 20;
    uint16_t c = csum_fold(csum_add(csum_add(0, ph, 12), t, 20));
    t[16] = (uint8_t)(c >> 8);
    t[17] = (uint8_t)c;
    return 40;
}

/* A client stream that collects what it reads (up to 64 bytes), the EOF and any error. */
struct reader {
    struct nb_stream *s;
    char buf[64];
    size_t len;
    bool eof;
    const char *err;
};

static inline void rd_data(void *arg, struct nb_stream *s, const uint8_t *d, size_t n)
{
    struct reader *r = arg;
    if (r->len + n <= sizeof r->buf) {
        memcpy(r->buf + r->len, d, n);
        r->len += n;
    }
}

static inline void rd_eof(void *arg, struct nb_stream *s)
{
    ((struct reader *)arg)->eof = true;
}

static inline void rd_err(void *arg, struct nb_stream *s, const char *err)
{
    ((struct reader *)arg)->err = err;
}

static inline void rd_connect(void *arg, struct nb_stream *s, const char *err)
{
    if (err)
        ((struct reader *)arg)->err = err;
}

static const struct nb_stream_cbs rd_cbs = {
    .on_data = rd_data, .on_eof = rd_eof, .on_error = rd_err, .on_connect = rd_connect};

static inline bool rd_done(void *arg)
{
    struct reader *r = arg;
    return r->eof || r->err;
}

#endif
