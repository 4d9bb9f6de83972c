/* SPDX-License-Identifier: BSD-3-Clause */
#ifndef NB_PLATFORM_BUFQ_H
#define NB_PLATFORM_BUFQ_H

/*
 * A byte queue made of fixed 16 KiB chunks taken from a process-wide free list, so steady-state
 * streaming does not call malloc. Used for stream write queues. Not thread-safe: the free list
 * is process-wide and nbproxy runs one loop on one thread.
 */

#include <stddef.h>
#include <stdint.h>

#define NB_BUFQ_CHUNK 16384u

struct nb_bufq_chunk;

struct nb_bufq {
    struct nb_bufq_chunk *head;
    struct nb_bufq_chunk *tail;
    size_t len; /* bytes queued */
};

static inline void nb_bufq_init(struct nb_bufq *q)
{
    q->head = q->tail = NULL;
    q->len = 0;
}

/* Appends a copy of data. NB_OK or NB_E_NOMEM (nothing appended then). */
int nb_bufq_append(struct nb_bufq *q, const void *data, size_t len);
/* The first contiguous run of queued bytes (NULL/0 when empty). */
const uint8_t *nb_bufq_peek(const struct nb_bufq *q, size_t *len);
/* Drops n bytes from the front (n <= q->len). */
void nb_bufq_consume(struct nb_bufq *q, size_t n);
/* Frees everything queued. */
void nb_bufq_clear(struct nb_bufq *q);

/* Free-list statistics, for tests and /metrics. */
struct nb_bufq_stats {
    size_t chunks_live; /* handed out and not yet returned */
    size_t chunks_free; /* cached on the free list */
};
void nb_bufq_stats(struct nb_bufq_stats *st);
/* Releases cached free chunks back to the allocator. */
void nb_bufq_trim(void);

#endif
