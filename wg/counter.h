/* SPDX-License-Identifier: BSD-3-Clause */
/* Copyright (c) nbproxy authors */
#ifndef NB_WG_COUNTER_H
#define NB_WG_COUNTER_H

/*
 * Receive-side replay window for transport counters (whitepaper §5.4.6), the RFC 6479 ring of
 * bitmap words as in the Linux implementation: 8192 bits, of which one word is kept as slack so
 * the window can slide a word at a time. Any counter within WG_COUNTER_WINDOW of the greatest seen
 * is accepted once. Pure: no clock, no I/O.
 */

#include <stdint.h>

enum {
    WG_COUNTER_BITS_TOTAL = 8192,
    WG_COUNTER_WORDS = WG_COUNTER_BITS_TOTAL / 64,
    WG_COUNTER_WINDOW = WG_COUNTER_BITS_TOTAL - 64,
};

struct wg_counter {
    uint64_t next; /* greatest accepted counter + 1 (0 = none yet) */
    uint64_t bitmap[WG_COUNTER_WORDS];
};

/* Resets the window to "nothing received". */
void wg_counter_init(struct wg_counter *c);

/*
 * Checks counter n and, if acceptable, marks it as seen. Call only after the packet has been
 * authenticated (so a forged counter cannot advance the window). NB_OK if fresh, NB_E_REPLAY if
 * seen before or too old for the window, NB_E_EXPIRED if n >= REJECT_AFTER_MESSAGES.
 */
int wg_counter_validate(struct wg_counter *c, uint64_t n);

#endif
