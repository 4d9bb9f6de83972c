/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * libFuzzer target: raw IP packets into a tunnel interface that has a TCP listener (echo) on
 * port 80, IPv4 and IPv6, and two UDP flows (ns_udp, echo; 'Q' closes) to 10.99.100.2:5353 and
 * [fd00::2]:5353. Flows get ephemeral ports, so UDP datagrams addressed to port 5353 are
 * redirected to the flow of their family (checksums are not checked in fuzz builds). Input = a
 * sequence of packets, each prefixed by a 2-byte big-endian length, so the fuzzer can build
 * handshakes, data, fragments. After each input everything is torn down, lwIP's TCP timers are
 * swept, and every pool must be back to zero (a leak aborts). Checksum checks are off in fuzz
 * builds (NB_FUZZING, see lwipopts.h) so inputs get past the header checks.
 *
 * Build (clang; from the repository root):
 *   cmake -S . -B build-fuzz -G Ninja -DNB_FUZZ=ON -DCMAKE_C_COMPILER=clang
 *   cmake --build build-fuzz --target nb_netstack
 *   clang -g -O1 -fsanitize=fuzzer,address,undefined -DNB_FUZZING=1 -D_GNU_SOURCE \
 *     -I. -Inetstack -I.deps/lwip/src/include fuzz/netstack_ip.c \
 *     build-fuzz/netstack/libnb_netstack.a build-fuzz/netstack/libnb_lwip.a \
 *     build-fuzz/platform/libnb_platform.a -lsodium -o build-fuzz/fuzz_netstack_ip
 *   build-fuzz/fuzz_netstack_ip -max_total_time=60 fuzz/corpus/netstack_ip
 */
#include "netstack/ns.h"
#include "netstack/ns_if.h"
#include "netstack/ns_tcp.h"
#include "netstack/ns_udp.h"
#include "platform/err.h"
#include "platform/loop.h"

#include "lwip/ip4_frag.h"
#include "lwip/ip6_frag.h"
#include "lwip/priv/tcp_priv.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_STREAMS 16

static struct nb_loop *loop;
static struct nb_stream *streams[MAX_STREAMS];
static struct ns_udp *flows[2]; /* v4, v6 */
static uint16_t flow_ports[2];
static uint8_t pktbuf[65536];

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int out_hook(void *ctx, uint8_t *pkt, size_t len)
{
    (void)ctx;
    (void)pkt;
    (void)len;
    return NB_OK;
}

static void forget(struct nb_stream *s)
{
    for (int i = 0; i < MAX_STREAMS; i++)
        if (streams[i] == s)
            streams[i] = NULL;
}

static void on_data(void *arg, struct nb_stream *s, const uint8_t *d, size_t n)
{
    nb_stream_write(s, d, n);
    if (n > 0 && d[0] == 'P')
        nb_stream_pause(s, true);
    if (n > 0 && d[0] == 'Q') {
        forget(s);
        nb_stream_close(s, d[n - 1] & 1);
    }
}

static void on_eof(void *arg, struct nb_stream *s)
{
    nb_stream_shutdown(s);
}

static void on_error(void *arg, struct nb_stream *s, const char *err)
{
    forget(s);
    nb_stream_close(s, false);
}

static const struct nb_stream_cbs cbs = {
    .on_data = on_data, .on_eof = on_eof, .on_error = on_error};

static void on_accept(void *arg, struct nb_listener *l, struct nb_stream *s)
{
    for (int i = 0; i < MAX_STREAMS; i++) {
        if (streams[i] == NULL) {
            streams[i] = s;
            nb_stream_set_cbs(s, &cbs, NULL);
            return;
        }
    }
    nb_stream_close(s, true);
}

static void on_dgram(void *arg, struct ns_udp *u, const uint8_t *d, size_t n)
{
    struct ns_udp **slot = arg;
    if (n > 0 && d[0] == 'Q') {
        ns_udp_close(u);
        *slot = NULL;
        return;
    }
    ns_udp_send(u, d, n);
}

static void open_flow(struct ns_if *nif, int i, const char *ip)
{
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof ss);
    if (i == 0) {
        struct sockaddr_in *s4 = (struct sockaddr_in *)&ss;
        s4->sin_family = AF_INET;
        s4->sin_port = htons(5353);
        inet_pton(AF_INET, ip, &s4->sin_addr);
    } else {
        struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;
        s6->sin6_family = AF_INET6;
        s6->sin6_port = htons(5353);
        inet_pton(AF_INET6, ip, &s6->sin6_addr);
    }
    if (ns_udp_open(nif, (struct sockaddr *)&ss, on_dgram, &flows[i], &flows[i]) != NB_OK)
        abort();
    struct sockaddr_storage local;
    ns_udp_addrs(flows[i], &local, NULL);
    flow_ports[i] = i == 0 ? ntohs(((struct sockaddr_in *)&local)->sin_port)
                           : ntohs(((struct sockaddr_in6 *)&local)->sin6_port);
}

/* UDP to port 5353 -> the flow's ephemeral port (IPv4 with any header length; IPv6 with UDP
 * as the first next header). */
static void redirect(uint8_t *p, size_t n)
{
    size_t off = 0;
    int fam = -1;
    if (n >= 20 && (p[0] >> 4) == 4 && p[9] == 17) {
        off = (size_t)(p[0] & 0x0f) * 4;
        fam = 0;
    } else if (n >= 40 && (p[0] >> 4) == 6 && p[6] == 17) {
        off = 40;
        fam = 1;
    }
    if (fam < 0 || off + 4 > n || p[off + 2] != 0x14 || p[off + 3] != 0xe9) /* 5353 */
        return;
    p[off + 2] = (uint8_t)(flow_ports[fam] >> 8);
    p[off + 3] = (uint8_t)flow_ports[fam];
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (loop == NULL) {
        loop = nb_loop_new();
        if (loop == NULL || ns_init(loop) != NB_OK)
            abort();
    }
    struct ns_addr addrs[2];
    ns_addr_parse("10.99.100.1/24", &addrs[0]);
    ns_addr_parse("fd00::1/64", &addrs[1]);
    struct ns_if_config cfg = {.addrs = addrs, .n_addrs = 2, .output = out_hook};
    struct ns_if *nif;
    if (ns_if_new(&cfg, &nif) != NB_OK)
        abort();
    struct sockaddr_in6 la = {.sin6_family = AF_INET6, .sin6_port = htons(80)};
    struct nb_listener *l;
    if (ns_tcp_listen(nif, (struct sockaddr *)&la, on_accept, NULL, &l) != NB_OK)
        abort();
    open_flow(nif, 0, "10.99.100.2");
    open_flow(nif, 1, "fd00::2");

    while (size >= 2) {
        size_t n = (size_t)data[0] << 8 | data[1];
        data += 2;
        size -= 2;
        if (n > size)
            n = size;
        memcpy(pktbuf, data, n);
        redirect(pktbuf, n);
        ns_if_input(nif, pktbuf, n);
        nb_loop_run_once(loop, 0); /* deferred deliveries, closes */
        data += n;
        size -= n;
    }
    /* A few TCP timer rounds while connections still exist (retransmits, persist, close). */
    for (int i = 0; i < 8; i++)
        tcp_tmr();

    for (int i = 0; i < MAX_STREAMS; i++) {
        if (streams[i]) {
            nb_stream_close(streams[i], i & 1);
            streams[i] = NULL;
        }
    }
    for (int i = 0; i < 2; i++)
        if (flows[i]) {
            ns_udp_close(flows[i]);
            flows[i] = NULL;
        }
    nb_listener_close(l);
    nb_loop_run_once(loop, 0);
    ns_if_free(nif);
    nb_loop_run_once(loop, 0);
    char why[128];
    if (!ns_pools_idle(why, sizeof why)) {
        fprintf(stderr, "netstack leak: %s\n", why);
        abort();
    }
    return 0;
}
