/* SPDX-License-Identifier: BSD-3-Clause */
/* Copyright (c) nbproxy authors */

/*
 * Path-compressed binary trie. Each node holds a prefix (bits, cidr) and maybe a peer; child[b]
 * holds longer prefixes whose bit at position cidr is b. Nodes without a peer exist only as
 * branching points with two children; removal restores that invariant bottom-up.
 */

#include "wg/allowedips.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include <sys/socket.h>

#include "platform/err.h"

struct wg_allowedips_node {
    struct wg_allowedips_node *child[2];
    void *peer;
    uint8_t cidr;
    uint8_t bits[16];
};

static unsigned bit_at(const uint8_t *a, unsigned i)
{
    return (a[i >> 3] >> (7 - (i & 7))) & 1;
}

/* True if the first n bits of a and b are equal. */
static bool prefix_eq(const uint8_t *a, const uint8_t *b, unsigned n)
{
    unsigned full = n >> 3, rem = n & 7;

    if (memcmp(a, b, full) != 0)
        return false;
    if (!rem)
        return true;
    return ((a[full] ^ b[full]) & (uint8_t)(0xff << (8 - rem))) == 0;
}

/* Number of equal leading bits of a and b (at most maxbits). */
static unsigned common_bits(const uint8_t *a, const uint8_t *b, unsigned maxbits)
{
    unsigned i;

    for (i = 0; i < maxbits; i++)
        if (bit_at(a, i) != bit_at(b, i))
            break;
    return i;
}

static void mask(uint8_t *out, const uint8_t *in, unsigned cidr, unsigned bytes)
{
    unsigned i;

    for (i = 0; i < bytes; i++) {
        if (cidr >= 8 * (i + 1))
            out[i] = in[i];
        else if (cidr <= 8 * i)
            out[i] = 0;
        else
            out[i] = in[i] & (uint8_t)(0xff << (8 - (cidr - 8 * i)));
    }
    for (; i < 16; i++)
        out[i] = 0;
}

static struct wg_allowedips_node *node_new(struct wg_allowedips *t, const uint8_t *bits,
                                           unsigned cidr, unsigned bytes, void *peer)
{
    struct wg_allowedips_node *n;

    if (t->nodes >= t->max_nodes)
        return NULL;
    n = calloc(1, sizeof(*n));
    if (!n)
        return NULL;
    mask(n->bits, bits, cidr, bytes);
    n->cidr = (uint8_t)cidr;
    n->peer = peer;
    t->nodes++;
    return n;
}

static void free_rec(struct wg_allowedips_node *n)
{
    if (!n)
        return;
    free_rec(n->child[0]);
    free_rec(n->child[1]);
    free(n);
}

void wg_allowedips_init(struct wg_allowedips *t, size_t max_nodes)
{
    memset(t, 0, sizeof(*t));
    t->max_nodes = max_nodes ? max_nodes : WG_ALLOWEDIPS_DEFAULT_MAX_NODES;
}

void wg_allowedips_free(struct wg_allowedips *t)
{
    free_rec(t->root4);
    free_rec(t->root6);
    t->root4 = t->root6 = NULL;
    t->nodes = 0;
}

static struct wg_allowedips_node **root_of(struct wg_allowedips *t, int family, unsigned *bits)
{
    if (family == AF_INET) {
        *bits = 32;
        return &t->root4;
    }
    if (family == AF_INET6) {
        *bits = 128;
        return &t->root6;
    }
    return NULL;
}

int wg_allowedips_insert(struct wg_allowedips *t, int family, const uint8_t *addr, uint8_t cidr,
                         void *peer)
{
    struct wg_allowedips_node **slot, *n, *newn, *mid, *down;
    uint8_t key[16];
    unsigned width, common;

    slot = root_of(t, family, &width);
    if (!slot || cidr > width || !peer)
        return NB_E_INVAL;
    mask(key, addr, cidr, width / 8);

    /* Walk down while the node's prefix covers the new one. */
    while ((n = *slot) && n->cidr <= cidr && prefix_eq(n->bits, key, n->cidr)) {
        if (n->cidr == cidr) {
            n->peer = peer; /* same prefix: replace */
            return NB_OK;
        }
        slot = &n->child[bit_at(key, n->cidr)];
    }

    newn = node_new(t, key, cidr, width / 8, peer);
    if (!newn)
        return NB_E_NOMEM;
    down = *slot;
    if (!down) {
        *slot = newn;
        return NB_OK;
    }
    /* down diverges from the new prefix (or is longer): branch at their common prefix. */
    common = common_bits(down->bits, key, cidr < down->cidr ? cidr : down->cidr);
    if (common == cidr) {
        /* New prefix covers down: it becomes down's parent. */
        newn->child[bit_at(down->bits, cidr)] = down;
        *slot = newn;
        return NB_OK;
    }
    mid = node_new(t, key, common, width / 8, NULL);
    if (!mid) {
        free(newn);
        t->nodes--;
        return NB_E_NOMEM;
    }
    mid->child[bit_at(down->bits, common)] = down;
    mid->child[bit_at(key, common)] = newn;
    *slot = mid;
    return NB_OK;
}

/* Post-order: children first, so a parent sees its final shape. */
static void remove_rec(struct wg_allowedips *t, struct wg_allowedips_node **slot, void *peer)
{
    struct wg_allowedips_node *n = *slot;

    if (!n)
        return;
    remove_rec(t, &n->child[0], peer);
    remove_rec(t, &n->child[1], peer);
    if (n->peer == peer)
        n->peer = NULL;
    if (n->peer || (n->child[0] && n->child[1]))
        return;
    /* Peerless with at most one child: splice it out. */
    *slot = n->child[0] ? n->child[0] : n->child[1];
    free(n);
    t->nodes--;
}

void wg_allowedips_remove_by_peer(struct wg_allowedips *t, void *peer)
{
    if (!peer)
        return;
    remove_rec(t, &t->root4, peer);
    remove_rec(t, &t->root6, peer);
}

void *wg_allowedips_lookup(const struct wg_allowedips *t, int family, const uint8_t *addr)
{
    const struct wg_allowedips_node *n;
    void *found = NULL;
    unsigned width;

    if (family == AF_INET) {
        n = t->root4;
        width = 32;
    } else if (family == AF_INET6) {
        n = t->root6;
        width = 128;
    } else {
        return NULL;
    }
    while (n && prefix_eq(n->bits, addr, n->cidr)) {
        if (n->peer)
            found = n->peer;
        if (n->cidr == width)
            break;
        n = n->child[bit_at(addr, n->cidr)];
    }
    return found;
}
