/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * libFuzzer target: raw IP packets into a tunnel interface that has a TCP listener (echo) on
 * port 80, IPv4 and IPv6. Input = a sequence of packets, each prefixed by a 2-byte big-endian
 * length, so the fuzzer can build handshakes, data, fragments. After each input everything is
 * torn down, lwIP's TCP timers are swept, and every pool must be back to zero
 * (a leak aborts). Checksum checks are off in fuzz builds (NB_FUZZING, see lwipopts.h) so inputs
 * get past the header checks.
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
#include "platform/err.h"
#include "platform/loop.h"

#include "lwip/ip4_frag.h"
#include "lwip/ip6_frag.h"
#include "lwip/priv/tcp_priv.h"

#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_STREAMS 16

static struct nb_loop *loop;
static struct nb_stream *streams[MAX_STREAMS];

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

    while (size >= 2) {
        size_t n = (size_t)data[0] << 8 | data[1];
        data += 2;
        size -= 2;
        if (n > size)
            n = size;
        ns_if_input(nif, data, n);
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
