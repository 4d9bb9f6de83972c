/* SPDX-License-Identifier: BSD-3-Clause */
#ifndef NB_PLATFORM_STRMAP_H
#define NB_PLATFORM_STRMAP_H

/*
 * A string-keyed hash map (chaining, power-of-two buckets, grows at load 1). Keys are copied;
 * values are the caller's pointers (the map never frees them). Iteration order is unspecified;
 * removing the current entry while iterating with nb_strmap_next() is allowed.
 */

#include <stddef.h>
#include <stdint.h>

struct nb_strmap_entry;
struct nb_strmap {
    struct nb_strmap_entry **_b;
    uint32_t _nb; /* buckets, 0 before the first put */
    uint32_t count;
};

static inline void nb_strmap_init(struct nb_strmap *m)
{
    m->_b = NULL;
    m->_nb = 0;
    m->count = 0;
}
/* Frees the map's own memory (keys, entries); the values are the caller's. */
void nb_strmap_deinit(struct nb_strmap *m);
/* Sets key -> value (replacing; *old gets the previous value or NULL). NB_OK / NB_E_NOMEM. */
int nb_strmap_put(struct nb_strmap *m, const char *key, void *value, void **old)
    __attribute__((warn_unused_result));
void *nb_strmap_get(const struct nb_strmap *m, const char *key);
/* Removes key; returns its value or NULL. */
void *nb_strmap_del(struct nb_strmap *m, const char *key);

/* Iteration from a zero-initialised iterator: returns the next key (and *value), NULL at the
 * end. The key is valid until its entry is removed (removing it is allowed; putting is not). */
struct nb_strmap_iter {
    uint32_t bucket;
    struct nb_strmap_entry *next;
};
const char *nb_strmap_next(const struct nb_strmap *m, struct nb_strmap_iter *it, void **value);

#endif
