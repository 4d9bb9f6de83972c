/* SPDX-License-Identifier: BSD-3-Clause */
#include "platform/stream.h"

void nb_stream_init(struct nb_stream *s, const struct nb_stream_vtbl *vt, struct nb_loop *loop)
{
    s->vt = vt;
    s->cbs = NULL;
    s->arg = NULL;
    s->loop = loop;
    s->high_water = NB_STREAM_HIGH_WATER;
    s->low_water = NB_STREAM_LOW_WATER;
    s->_above_high = false;
}

void nb_stream__check_drain(struct nb_stream *s)
{
    if (!s->_above_high || s->vt->queued(s) > s->low_water)
        return;
    s->_above_high = false;
    if (s->cbs && s->cbs->on_drain)
        s->cbs->on_drain(s->arg, s);
}
