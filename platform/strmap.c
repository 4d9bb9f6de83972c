/* SPDX-License-Identifier: BSD-3-Clause */
/* String-keyed hash map (strmap.h): FNV-1a, chaining, doubling at load factor 1. */
#include "platform/strmap.h"
#include "platform/err.h"

#include <stdlib.h>
#include <string.h>

struct nb_strmap_entry {
    struct nb_strmap_entry *next;
    void *value;
    uint32_t hash;
    char key[];
};

static uint32_t hash_str(const char *s)
{
    uint32_t h = 2166136261u;
    for (; *s; s++)
        h = (h ^ (uint8_t)*s) * 16777619u;
    return h;
}

void nb_strmap_deinit(struct nb_strmap *m)
{
    for (uint32_t i = 0; i < m->_nb; i++) {
        struct nb_strmap_entry *e = m->_b[i];
        while (e) {
            struct nb_strmap_entry *n = e->next;
            free(e);
            e = n;
        }
    }
    free(m->_b);
    nb_strmap_init(m);
}

static int grow(struct nb_strmap *m)
{
    uint32_t nb = m->_nb ? m->_nb * 2 : 16;
    struct nb_strmap_entry **b = calloc(nb, sizeof *b);
    if (b == NULL)
        return NB_E_NOMEM;
    for (uint32_t i = 0; i < m->_nb; i++) {
        struct nb_strmap_entry *e = m->_b[i];
        while (e) {
            struct nb_strmap_entry *n = e->next;
            e->next = b[e->hash & (nb - 1)];
            b[e->hash & (nb - 1)] = e;
            e = n;
        }
    }
    free(m->_b);
    m->_b = b;
    m->_nb = nb;
    return NB_OK;
}

static struct nb_strmap_entry **find(const struct nb_strmap *m, const char *key, uint32_t h)
{
    if (m->_nb == 0)
        return NULL;
    struct nb_strmap_entry **it = &m->_b[h & (m->_nb - 1)];
    for (; *it; it = &(*it)->next)
        if ((*it)->hash == h && strcmp((*it)->key, key) == 0)
            return it;
    return NULL;
}

int nb_strmap_put(struct nb_strmap *m, const char *key, void *value, void **old)
{
    uint32_t h = hash_str(key);
    struct nb_strmap_entry **it = find(m, key, h);
    if (old)
        *old = NULL;
    if (it) {
        if (old)
            *old = (*it)->value;
        (*it)->value = value;
        return NB_OK;
    }
    if (m->count >= m->_nb && grow(m) != NB_OK)
        return NB_E_NOMEM;
    size_t kl = strlen(key);
    struct nb_strmap_entry *e = malloc(sizeof *e + kl + 1);
    if (e == NULL)
        return NB_E_NOMEM;
    memcpy(e->key, key, kl + 1);
    e->hash = h;
    e->value = value;
    e->next = m->_b[h & (m->_nb - 1)];
    m->_b[h & (m->_nb - 1)] = e;
    m->count++;
    return NB_OK;
}

void *nb_strmap_get(const struct nb_strmap *m, const char *key)
{
    struct nb_strmap_entry **it = find(m, key, hash_str(key));
    return it ? (*it)->value : NULL;
}

void *nb_strmap_del(struct nb_strmap *m, const char *key)
{
    struct nb_strmap_entry **it = find(m, key, hash_str(key));
    if (it == NULL)
        return NULL;
    struct nb_strmap_entry *e = *it;
    void *v = e->value;
    *it = e->next;
    free(e);
    m->count--;
    return v;
}

const char *nb_strmap_next(const struct nb_strmap *m, struct nb_strmap_iter *it, void **value)
{
    while (it->next == NULL) {
        if (it->bucket >= m->_nb)
            return NULL;
        it->next = m->_b[it->bucket++];
    }
    struct nb_strmap_entry *e = it->next;
    it->next = e->next; /* taken before the caller may delete e */
    if (value)
        *value = e->value;
    return e->key;
}
