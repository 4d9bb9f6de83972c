/* SPDX-License-Identifier: BSD-3-Clause */
/* Copyright (c) nbproxy authors */

/*
 * Sliding replay window. Bit (n mod 8192) of the ring records counter n. When the window moves
 * forward, the words between the old and the new head are cleared; a jump by more than the whole
 * ring clears it all. Because the head word may be partially ahead of the window, one word (64
 * counters) is reserved as slack, giving an effective window of 8128.
 */

#include "wg/counter.h"

#include <string.h>

#include "platform/err.h"
#include "wg/messages.h"

void wg_counter_init(struct wg_counter *c)
{
    memset(c, 0, sizeof(*c));
}

int wg_counter_validate(struct wg_counter *c, uint64_t n)
{
    uint64_t index, index_cur, top, i, bit;

    if (c->next >= WG_REJECT_AFTER_MESSAGES + 1 || n >= WG_REJECT_AFTER_MESSAGES)
        return NB_E_EXPIRED;
    n++; /* work in "next" units so that 0 can mean "nothing yet" */
    if (n + WG_COUNTER_WINDOW < c->next)
        return NB_E_REPLAY;

    index = n >> 6;
    if (n > c->next) {
        index_cur = c->next >> 6;
        top = index - index_cur;
        if (top > WG_COUNTER_WORDS)
            top = WG_COUNTER_WORDS;
        for (i = 1; i <= top; i++)
            c->bitmap[(i + index_cur) & (WG_COUNTER_WORDS - 1)] = 0;
        c->next = n;
    }
    index &= WG_COUNTER_WORDS - 1;
    bit = UINT64_C(1) << (n & 63);
    if (c->bitmap[index] & bit)
        return NB_E_REPLAY;
    c->bitmap[index] |= bit;
    return NB_OK;
}
