/* SPDX-License-Identifier: BSD-3-Clause */
/* Copyright (c) nbproxy authors */

/*
 * libFuzzer target: arbitrary first bytes of a connection into l4_pp_parse, in one call and as a
 * growing buffer, then through l4_pp_decide under every policy, and every parsed address pair
 * back through l4_pp_v2_encode. Asserts: known result codes only; a header length <= len, <= 107
 * for v1 and 16 + its length field for v2; the TLV area inside the header and ending with it;
 * address families consistent; the first decision on a prefix is never revised and equals the
 * one-shot one; decide's action matches the parse result and the policy; encode -> parse gives
 * the same endpoints back (IPv4-mapped ones as IPv4).
 */

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <netinet/in.h>

#include "l4/proxy_proto.h"
#include "platform/err.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check(const uint8_t *buf, size_t len, const struct l4_pp_header *h, int rc)
{
    if (rc == NB_E_AGAIN || rc == NB_E_NOTFOUND || rc == NB_E_PARSE)
        return;
    if (rc <= 0 || (size_t)rc > len)
        abort();
    if (h->version == 1) {
        if (rc > L4_PP_V1_MAX || buf[0] != 'P' || buf[rc - 2] != '\r' || buf[rc - 1] != '\n')
            abort();
        if (h->local || h->tlv_len || h->socktype != SOCK_STREAM)
            abort();
    } else if (h->version == 2) {
        if (rc < L4_PP_V2_HEADER || memcmp(buf, l4_pp_v2_sig, 12) != 0)
            abort();
        if ((size_t)rc != L4_PP_V2_HEADER + ((size_t)buf[14] << 8 | buf[15]))
            abort();
        if (h->tlv_len && (h->tlv < buf + L4_PP_V2_HEADER || h->tlv + h->tlv_len != buf + rc))
            abort();
        if (h->local && h->has_addr)
            abort();
    } else {
        abort();
    }
    if (h->has_addr) {
        if (h->family != AF_INET && h->family != AF_INET6)
            abort();
        if (h->src.ss_family != h->family || h->dst.ss_family != h->family)
            abort();
    } else if (h->family != AF_UNSPEC && h->family != AF_UNIX) {
        abort();
    }
}

static int same(const struct l4_pp_header *a, const struct l4_pp_header *b)
{
    if (a->version != b->version || a->has_addr != b->has_addr || a->local != b->local ||
        a->family != b->family || a->socktype != b->socktype || a->tlv != b->tlv ||
        a->tlv_len != b->tlv_len)
        return 0;
    return !a->has_addr || (memcmp(&a->src, &b->src, sizeof(a->src)) == 0 &&
                            memcmp(&a->dst, &b->dst, sizeof(a->dst)) == 0);
}

/* The 16-byte form and port of an address, IPv4 as ::ffff:a.b.c.d. */
static void canon(const struct sockaddr_storage *ss, uint8_t out[16], uint16_t *port)
{
    if (ss->ss_family == AF_INET) {
        const struct sockaddr_in *s = (const struct sockaddr_in *)ss;

        memset(out, 0, 10);
        out[10] = out[11] = 0xff;
        memcpy(out + 12, &s->sin_addr, 4);
        *port = s->sin_port;
    } else {
        const struct sockaddr_in6 *s = (const struct sockaddr_in6 *)ss;

        memcpy(out, &s->sin6_addr, 16);
        *port = s->sin6_port;
    }
}

static void roundtrip(const struct l4_pp_header *h)
{
    uint8_t out[L4_PP_V2_ENC_MAX], a[16], b[16];
    struct l4_pp_header back;
    uint16_t pa, pb;
    int n =
        l4_pp_v2_encode((const struct sockaddr *)&h->src, (const struct sockaddr *)&h->dst, out);

    /* an IPv4-mapped source with a true IPv6 destination has no TCPv4 form */
    if (n == NB_E_INVAL && h->family == AF_INET6 &&
        IN6_IS_ADDR_V4MAPPED(&((const struct sockaddr_in6 *)&h->src)->sin6_addr) &&
        !IN6_IS_ADDR_V4MAPPED(&((const struct sockaddr_in6 *)&h->dst)->sin6_addr))
        return;
    if (n != 28 && n != 52)
        abort();
    if (l4_pp_parse(out, (size_t)n, &back) != n || !back.has_addr || back.tlv_len)
        abort();
    canon(&h->src, a, &pa);
    canon(&back.src, b, &pb);
    if (memcmp(a, b, 16) != 0 || pa != pb)
        abort();
    canon(&h->dst, a, &pa);
    canon(&back.dst, b, &pb);
    if (memcmp(a, b, 16) != 0 || pa != pb)
        abort();
}

static void check_decide(const uint8_t *buf, size_t len, int rc, const struct l4_pp_header *h)
{
    static const enum l4_pp_policy pols[] = {L4_PP_USE, L4_PP_REQUIRE, L4_PP_IGNORE, L4_PP_REJECT};
    struct l4_pp_header dh;
    size_t i, hl;
    int fin;

    for (i = 0; i < 4; i++) {
        for (fin = 0; fin < 2; fin++) {
            enum l4_pp_action a = l4_pp_decide(pols[i], buf, len, fin, &dh, &hl);

            if ((a == L4_PP_STRIP || a == L4_PP_APPLY) != (hl != 0))
                abort();
            if (rc > 0) {
                enum l4_pp_action want = pols[i] == L4_PP_REJECT                   ? L4_PP_CLOSE
                                         : pols[i] == L4_PP_IGNORE || !h->has_addr ? L4_PP_STRIP
                                                                                   : L4_PP_APPLY;

                if (a != want || (a != L4_PP_CLOSE && hl != (size_t)rc))
                    abort();
            } else if (rc == NB_E_PARSE) {
                if (a != L4_PP_CLOSE)
                    abort();
            } else if (rc == NB_E_NOTFOUND) {
                if (a != (pols[i] == L4_PP_REQUIRE ? L4_PP_CLOSE : L4_PP_DIRECT))
                    abort();
            } else if (!fin) {
                if (a != L4_PP_WAIT)
                    abort();
            } else if (a != L4_PP_CLOSE && a != L4_PP_DIRECT) {
                abort();
            }
        }
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct l4_pp_header h, inc;
    uint8_t *buf = malloc(size ? size : 1); /* exact size so ASan catches over-reads */
    size_t k, step = size ? (size_t)data[size - 1] % 11 + 1 : 1;
    int rc, irc = NB_E_AGAIN, first = NB_E_AGAIN;

    if (!buf)
        return 0;
    memcpy(buf, data, size);
    rc = l4_pp_parse(buf, size, &h);
    check(buf, size, &h, rc);
    /* incremental: once a prefix decides, every longer one says the same */
    for (k = 0; k <= size; k += step) {
        irc = l4_pp_parse(buf, k, &inc);
        check(buf, k, &inc, irc);
        if (first == NB_E_AGAIN)
            first = irc;
        else if (irc != first)
            abort();
        if (first > 0 && !same(&h, &inc))
            abort();
    }
    if (first != NB_E_AGAIN && first != rc)
        abort();
    check_decide(buf, size, rc, &h);
    if (rc > 0 && h.has_addr)
        roundtrip(&h);
    free(buf);
    return 0;
}
