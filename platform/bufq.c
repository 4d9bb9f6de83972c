/* SPDX-License-Identifier: BSD-3-Clause */
#include "platform/bufq.h"
#include "platform/err.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

/*
 * Chunks are recycled through a process-wide free list (nbproxy is single-threaded) capped at
 * FREE_MAX entries (4 MiB), so a burst of queued data costs malloc once and later streaming none;
 * anything above the cap goes back to the allocator so an idle process shrinks again.
 */
struct nb_bufq_chunk {
    struct nb_bufq_chunk *next;
    uint32_t start; /* first unread byte */
    uint32_t end;   /* one past the last written byte */
    uint32_t cap;   /* NB_BUFQ_CHUNK, or NB_BUFQ_SMALL for a small first chunk */
    uint8_t data[];
};

/*
 * A queue that is empty and gets a small write starts with a small chunk from malloc (not from
 * the free list): thousands of queues each holding a 60-byte gRPC message, or a response head,
 * then cost 1 KiB each instead of 16 KiB. Bigger or further writes use standard chunks.
 */
#define NB_BUFQ_SMALL 1024u

#define FREE_MAX 256u

static struct nb_bufq_chunk *free_list;
static size_t free_count;
static size_t live_count;

static struct nb_bufq_chunk *chunk_get(bool small)
{
    struct nb_bufq_chunk *c;
    if (small) {
        c = malloc(sizeof *c + NB_BUFQ_SMALL);
        if (c == NULL)
            return NULL;
        c->cap = NB_BUFQ_SMALL;
    } else if ((c = free_list) != NULL) {
        free_list = c->next;
        free_count--;
    } else {
        c = malloc(sizeof *c + NB_BUFQ_CHUNK);
        if (c == NULL)
            return NULL;
        c->cap = NB_BUFQ_CHUNK;
    }
    c->next = NULL;
    c->start = c->end = 0;
    live_count++;
    return c;
}

static void chunk_put(struct nb_bufq_chunk *c)
{
    live_count--;
    if (c->cap == NB_BUFQ_CHUNK && free_count < FREE_MAX) {
        c->next = free_list;
        free_list = c;
        free_count++;
    } else {
        free(c);
    }
}

int nb_bufq_append(struct nb_bufq *q, const void *data, size_t len)
{
    const uint8_t *p = data;
    struct nb_bufq_chunk *first_new = NULL;
    size_t done = 0;

    /* Fill the tail first, then new chunks; on failure roll back so nothing is appended. */
    struct nb_bufq_chunk *t = q->tail;
    size_t tail_room = t ? t->cap - t->end : 0;
    bool small = t == NULL && len <= NB_BUFQ_SMALL;
    size_t in_tail = len < tail_room ? len : tail_room;
    size_t rest = len - in_tail;
    struct nb_bufq_chunk *chain = NULL, *last = NULL;
    while (done < rest) {
        struct nb_bufq_chunk *c = chunk_get(small);
        if (c == NULL) {
            while (chain) {
                struct nb_bufq_chunk *n = chain->next;
                chunk_put(chain);
                chain = n;
            }
            return NB_E_NOMEM;
        }
        size_t k = rest - done < c->cap ? rest - done : c->cap;
        memcpy(c->data, p + in_tail + done, k);
        c->end = (uint32_t)k;
        done += k;
        if (last)
            last->next = c;
        else
            chain = c;
        last = c;
    }
    first_new = chain;
    if (in_tail) {
        memcpy(t->data + t->end, p, in_tail);
        t->end += (uint32_t)in_tail;
    }
    if (first_new) {
        if (q->tail)
            q->tail->next = first_new;
        else
            q->head = first_new;
        q->tail = last;
    }
    q->len += len;
    return NB_OK;
}

const uint8_t *nb_bufq_peek(const struct nb_bufq *q, size_t *len)
{
    struct nb_bufq_chunk *h = q->head;
    if (h == NULL) {
        *len = 0;
        return NULL;
    }
    *len = h->end - h->start;
    return h->data + h->start;
}

void nb_bufq_consume(struct nb_bufq *q, size_t n)
{
    if (n > q->len)
        n = q->len;
    q->len -= n;
    while (n > 0) {
        struct nb_bufq_chunk *h = q->head;
        size_t avail = h->end - h->start;
        if (n < avail) {
            h->start += (uint32_t)n;
            return;
        }
        n -= avail;
        q->head = h->next;
        if (q->head == NULL)
            q->tail = NULL;
        chunk_put(h);
    }
    /* Drop an emptied head chunk eagerly so idle queues hold no memory. */
    if (q->head && q->head->start == q->head->end && q->head->next == NULL) {
        chunk_put(q->head);
        q->head = q->tail = NULL;
    }
}

void nb_bufq_clear(struct nb_bufq *q)
{
    while (q->head) {
        struct nb_bufq_chunk *n = q->head->next;
        chunk_put(q->head);
        q->head = n;
    }
    q->tail = NULL;
    q->len = 0;
}

void nb_bufq_stats(struct nb_bufq_stats *st)
{
    st->chunks_live = live_count;
    st->chunks_free = free_count;
}

void nb_bufq_trim(void)
{
    while (free_list) {
        struct nb_bufq_chunk *n = free_list->next;
        free(free_list);
        free_list = n;
    }
    free_count = 0;
}
