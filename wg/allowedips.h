/* SPDX-License-Identifier: BSD-3-Clause */
/* Copyright (c) nbproxy authors */
#ifndef NB_WG_ALLOWEDIPS_H
#define NB_WG_ALLOWEDIPS_H

/*
 * Cryptokey routing table (whitepaper §2): prefix -> peer, longest prefix wins. Used twice per
 * packet: by destination on output (which peer encrypts it) and by source on input (did the
 * sending peer own this inner source address). One path-compressed binary trie per family, like
 * Linux's allowedips.c. Nodes are malloc'd at configuration time only; lookups never allocate.
 * The node count is capped (max_nodes) so a bad configuration cannot eat the appliance.
 */

#include <stddef.h>
#include <stdint.h>

struct wg_allowedips_node;

struct wg_allowedips {
    struct wg_allowedips_node *root4;
    struct wg_allowedips_node *root6;
    size_t nodes;
    size_t max_nodes;
};

enum { WG_ALLOWEDIPS_DEFAULT_MAX_NODES = 1 << 16 };

/* max_nodes 0 means WG_ALLOWEDIPS_DEFAULT_MAX_NODES. */
void wg_allowedips_init(struct wg_allowedips *t, size_t max_nodes);
/* Frees every node. */
void wg_allowedips_free(struct wg_allowedips *t);

/*
 * Maps family (AF_INET: 4 address bytes, AF_INET6: 16) addr/cidr to peer, replacing the peer of
 * an identical prefix. Host bits beyond cidr are ignored. NB_OK, NB_E_INVAL (family, cidr, NULL
 * peer) or NB_E_NOMEM (allocation or node cap).
 */
int wg_allowedips_insert(struct wg_allowedips *t, int family, const uint8_t *addr, uint8_t cidr,
                         void *peer);
/* Removes every prefix that maps to peer. */
void wg_allowedips_remove_by_peer(struct wg_allowedips *t, void *peer);
/* Longest-prefix match of addr; the peer or NULL. */
void *wg_allowedips_lookup(const struct wg_allowedips *t, int family, const uint8_t *addr);

#endif
