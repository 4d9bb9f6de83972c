/* SPDX-License-Identifier: BSD-3-Clause */
#include "core/mapping.h"
#include "auth/restrict.h"

#include <sodium.h>
#include <stdlib.h>
#include <string.h>

enum nb_mapping_mode nb_mapping_mode(const struct nb_mapping *m)
{
    if (m->mode == NULL)
        return NB_MODE_HTTP;
    if (strcmp(m->mode, "tcp") == 0)
        return NB_MODE_TCP;
    if (strcmp(m->mode, "udp") == 0)
        return NB_MODE_UDP;
    if (strcmp(m->mode, "tls") == 0)
        return NB_MODE_TLS;
    return NB_MODE_HTTP;
}

void nb_mapping_free(struct nb_mapping *m)
{
    if (m == NULL)
        return;
    for (uint32_t i = 0; i < m->n_paths; i++) {
        struct nb_path_mapping *p = &m->paths[i];
        free(p->path);
        free(p->target);
        for (uint32_t h = 0; h < p->options.n_custom_headers; h++) {
            free(p->options.custom_headers[h].name);
            free(p->options.custom_headers[h].value);
        }
        free(p->options.custom_headers);
    }
    free(m->paths);
    free(m->auth.session_key);
    for (uint32_t i = 0; i < m->auth.n_header_auths; i++) {
        free(m->auth.header_auths[i].header);
        free(m->auth.header_auths[i].hashed_value);
    }
    free(m->auth.header_auths);
    if (m->auth_token) {
        sodium_memzero(m->auth_token, strlen(m->auth_token));
        free(m->auth_token);
    }
    free(m->id);
    free(m->account_id);
    free(m->domain);
    free(m->mode);
    auth_restrict_unref(m->restrictions);
    memset(m, 0, sizeof *m);
}
