/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * Per-request bump allocator. Standard-size chunks are recycled through a free list capped at
 * FREE_MAX (1 MiB), so the steady state allocates nothing and an idle process shrinks back;
 * oversized chunks (one allocation larger than a chunk) always go back to malloc.
 */
#include "platform/arena.h"

#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct nb_arena_chunk {
    struct nb_arena_chunk *next;
    size_t size; /* usable bytes after the header */
    /* data follows, 16-aligned */
};

#define HDR      ((sizeof(struct nb_arena_chunk) + 15u) & ~(size_t)15u)
#define FREE_MAX 256u

static struct nb_arena_chunk *free_list;
static size_t free_count;
static size_t live_count;

static uint8_t *chunk_data(struct nb_arena_chunk *c)
{
    return (uint8_t *)c + HDR;
}

static struct nb_arena_chunk *chunk_get(size_t want)
{
    struct nb_arena_chunk *c;
    if (want <= NB_ARENA_CHUNK && free_list) {
        c = free_list;
        free_list = c->next;
        free_count--;
    } else {
        size_t size = want <= NB_ARENA_CHUNK ? NB_ARENA_CHUNK : want;
        if (size > SIZE_MAX - HDR)
            return NULL;
        c = malloc(HDR + size);
        if (c == NULL)
            return NULL;
        c->size = size;
    }
    live_count++;
    return c;
}

static void chunk_put(struct nb_arena_chunk *c)
{
    live_count--;
    if (c->size == NB_ARENA_CHUNK && free_count < FREE_MAX) {
        c->next = free_list;
        free_list = c;
        free_count++;
        return;
    }
    free(c);
}

void *nb_arena_alloc(struct nb_arena *a, size_t n)
{
    size_t off = (a->_used + 15u) & ~(size_t)15u;
    if (a->_head && off <= a->_size && n <= a->_size - off) {
        a->_used = off + n;
        return chunk_data(a->_head) + off;
    }
    if (n > SIZE_MAX - 16u)
        return NULL;
    struct nb_arena_chunk *c = chunk_get(n ? n : 1);
    if (c == NULL)
        return NULL;
    if (n > NB_ARENA_CHUNK && a->_head) {
        /* A big one-off: link it behind the current chunk so the current one keeps filling. */
        c->next = a->_head->next;
        a->_head->next = c;
        return chunk_data(c);
    }
    c->next = a->_head;
    a->_head = c;
    a->_size = c->size;
    a->_used = n;
    return chunk_data(c);
}

void *nb_arena_calloc(struct nb_arena *a, size_t n)
{
    void *p = nb_arena_alloc(a, n);
    if (p)
        memset(p, 0, n);
    return p;
}

char *nb_arena_strndup(struct nb_arena *a, const char *s, size_t n)
{
    if (n == SIZE_MAX)
        return NULL;
    char *p = nb_arena_alloc(a, n + 1);
    if (p == NULL)
        return NULL;
    if (n)
        memcpy(p, s, n);
    p[n] = '\0';
    return p;
}

char *nb_arena_printf(struct nb_arena *a, size_t *len_out, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0)
        return NULL;
    char *p = nb_arena_alloc(a, (size_t)n + 1);
    if (p == NULL)
        return NULL;
    va_start(ap, fmt);
    vsnprintf(p, (size_t)n + 1, fmt, ap);
    va_end(ap);
    if (len_out)
        *len_out = (size_t)n;
    return p;
}

void nb_arena_reset(struct nb_arena *a)
{
    struct nb_arena_chunk *c = a->_head;
    while (c) {
        struct nb_arena_chunk *next = c->next;
        chunk_put(c);
        c = next;
    }
    a->_head = NULL;
    a->_used = a->_size = 0;
}

void nb_arena_stats(struct nb_arena_stats *st)
{
    st->chunks_live = live_count;
    st->chunks_free = free_count;
}
