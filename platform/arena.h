/* SPDX-License-Identifier: BSD-3-Clause */
#ifndef NB_PLATFORM_ARENA_H
#define NB_PLATFORM_ARENA_H

/*
 * A bump allocator for things that live exactly as long as one request (house style §8.20): the
 * rewritten header list, the upstream request target, error-page bodies, access-log strings.
 * Everything is released at once by nb_arena_reset() / nb_arena_deinit(). Chunks of
 * NB_ARENA_CHUNK bytes come from a small process-wide free list, so a steady request load does
 * not call malloc; a single allocation larger than a chunk gets a chunk of its own.
 *
 * Not thread-safe (one loop per thread, like platform/bufq.c).
 */

#include <stddef.h>
#include <stdint.h>

#define NB_ARENA_CHUNK 4096u

struct nb_arena_chunk;

struct nb_arena {
    struct nb_arena_chunk *_head; /* newest chunk first */
    size_t _used;                 /* bytes used in _head */
    size_t _size;                 /* usable bytes in _head */
};

/* Zero-initialised storage is a valid empty arena; nb_arena_init() only spells that out. */
static inline void nb_arena_init(struct nb_arena *a)
{
    a->_head = NULL;
    a->_used = a->_size = 0;
}

/* n bytes aligned to 16; NULL when out of memory (or n overflows). Never zero-filled. */
void *nb_arena_alloc(struct nb_arena *a, size_t n) __attribute__((warn_unused_result));
/* n zeroed bytes. */
void *nb_arena_calloc(struct nb_arena *a, size_t n) __attribute__((warn_unused_result));
/* Copies s[0..n) and a NUL. */
char *nb_arena_strndup(struct nb_arena *a, const char *s, size_t n)
    __attribute__((warn_unused_result));
/* printf into the arena; NULL on failure. *len_out (may be NULL) gets the length. */
char *nb_arena_printf(struct nb_arena *a, size_t *len_out, const char *fmt, ...)
    __attribute__((format(printf, 3, 4), warn_unused_result));
/* Frees everything; the arena stays usable. */
void nb_arena_reset(struct nb_arena *a);
static inline void nb_arena_deinit(struct nb_arena *a)
{
    nb_arena_reset(a);
}

/* Chunks handed out and cached (tests, /metrics). */
struct nb_arena_stats {
    size_t chunks_live;
    size_t chunks_free;
};
void nb_arena_stats(struct nb_arena_stats *st);

#endif
