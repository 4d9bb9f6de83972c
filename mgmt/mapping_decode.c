/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * ProxyMapping -> struct nb_mapping (mapping_decode.h). Place in the pipeline: the lifecycle
 * unpacks each mapping-stream message with protobuf-c, runs every ProxyMapping through here, and
 * hands the result to nb_proxy_apply(); a rejection becomes an ERROR status for that service.
 * Everything is built into a stack copy and handed over only when the whole mapping is valid
 * (house style §8.26), so a failure never leaves half a mapping behind.
 */
#include "mgmt/mapping_decode.h"
#include "auth/restrict.h"
#include "platform/err.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Duration's documented range: about 10 000 years. */
#define DURATION_MAX_SECONDS 315576000000ll

static char *dup_str(const char *s)
{
    return strdup(s ? s : "");
}

/* RFC 9110 §5.6.2 token characters. */
static bool is_token(const char *s)
{
    static const char extra[] = "!#$%&'*+-.^_`|~";
    if (s == NULL || *s == '\0')
        return false;
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
              (c != '\0' && strchr(extra, c) != NULL)))
            return false;
    }
    return true;
}

/* RFC 9110 §5.5 field-value: visible characters, SP, HTAB and obs-text; no CR, LF or other
 * controls. */
static bool is_field_value(const char *s)
{
    for (; s && *s; s++) {
        unsigned char c = (unsigned char)*s;
        if ((c < 0x20 && c != '\t') || c == 0x7f)
            return false;
    }
    return true;
}

int mgmt_duration_ms(const Google__Protobuf__Duration *d, uint64_t *ms)
{
    *ms = 0;
    if (d == NULL)
        return NB_OK;
    if (d->seconds < 0 || d->nanos < 0 || d->nanos >= 1000000000 ||
        d->seconds > DURATION_MAX_SECONDS)
        return NB_E_INVAL;
    *ms = (uint64_t)d->seconds * 1000u + (uint64_t)d->nanos / 1000000u +
          ((uint64_t)d->nanos % 1000000u != 0);
    return NB_OK;
}

/* ---- custom headers: a protobuf map, last value wins ---- */

struct hdr_ref {
    const char *key;
    const char *value;
    size_t idx; /* position on the wire */
};

static int hdr_ref_cmp(const void *a, const void *b)
{
    const struct hdr_ref *x = a, *y = b;
    int c = strcmp(x->key, y->key);
    if (c)
        return c;
    return x->idx < y->idx ? -1 : x->idx > y->idx;
}

static int decode_headers(const Management__PathTargetOptions *o, struct nb_target_options *t,
                          uint32_t pi, char *err, size_t errlen)
{
    struct hdr_ref *refs = NULL;
    size_t n = o->n_custom_headers, kept = 0;
    int rc = NB_OK;

    if (n == 0)
        return NB_OK;
    if (n > UINT32_MAX)
        return nb_errf(err, errlen, NB_E_INVAL, "paths[%u].options.custom_headers: too many", pi);
    refs = calloc(n, sizeof *refs);
    t->custom_headers = calloc(n, sizeof *t->custom_headers);
    if (refs == NULL || t->custom_headers == NULL) {
        rc = nb_errf(err, errlen, NB_E_NOMEM, "out of memory");
        goto out;
    }
    for (size_t i = 0; i < n; i++) {
        const Management__PathTargetOptions__CustomHeadersEntry *e = o->custom_headers[i];
        refs[i].key = e && e->key ? e->key : "";
        refs[i].value = e && e->value ? e->value : "";
        refs[i].idx = i;
        if (!is_token(refs[i].key)) {
            rc = nb_errf(err, errlen, NB_E_INVAL,
                         "paths[%u].options.custom_headers: invalid header name", pi);
            goto out;
        }
        if (!is_field_value(refs[i].value)) {
            rc = nb_errf(err, errlen, NB_E_INVAL,
                         "paths[%u].options.custom_headers: invalid value for %.64s", pi,
                         refs[i].key);
            goto out;
        }
    }
    qsort(refs, n, sizeof *refs, hdr_ref_cmp);
    for (size_t i = 0; i < n; i++) {
        if (i + 1 < n && strcmp(refs[i].key, refs[i + 1].key) == 0)
            continue; /* a later entry with the same key wins */
        struct nb_header_kv *kv = &t->custom_headers[kept];
        kv->name = strdup(refs[i].key);
        kv->value = strdup(refs[i].value);
        t->n_custom_headers = (uint32_t)++kept;
        if (kv->name == NULL || kv->value == NULL) {
            rc = nb_errf(err, errlen, NB_E_NOMEM, "out of memory");
            goto out;
        }
    }
out:
    free(refs);
    return rc;
}

static int decode_path(const Management__PathMapping *p, struct nb_path_mapping *out, uint32_t pi,
                       char *err, size_t errlen)
{
    const Management__PathTargetOptions *o = p ? p->options : NULL;
    struct nb_target_options *t = &out->options;
    int rc;

    out->path = dup_str(p ? p->path : NULL);
    out->target = dup_str(p ? p->target : NULL);
    if (out->path == NULL || out->target == NULL)
        return nb_errf(err, errlen, NB_E_NOMEM, "out of memory");
    if (o == NULL)
        return NB_OK;
    t->skip_tls_verify = o->skip_tls_verify;
    t->path_rewrite = o->path_rewrite == MANAGEMENT__PATH_REWRITE_MODE__PATH_REWRITE_PRESERVE
                          ? NB_PATH_REWRITE_PRESERVE
                          : NB_PATH_REWRITE_DEFAULT;
    t->proxy_protocol = o->proxy_protocol;
    t->direct_upstream = o->direct_upstream;
    t->disable_access_log = o->disable_access_log;
    if (mgmt_duration_ms(o->request_timeout, &t->request_timeout_ms) != NB_OK)
        return nb_errf(err, errlen, NB_E_INVAL,
                       "paths[%u].options.request_timeout: invalid duration", pi);
    if (mgmt_duration_ms(o->session_idle_timeout, &t->session_idle_timeout_ms) != NB_OK)
        return nb_errf(err, errlen, NB_E_INVAL,
                       "paths[%u].options.session_idle_timeout: invalid duration", pi);
    if ((rc = decode_headers(o, t, pi, err, errlen)) != NB_OK)
        return rc;
    return NB_OK;
}

static int decode_auth(const Management__Authentication *a, struct nb_auth *out, char *err,
                       size_t errlen)
{
    if (a == NULL)
        return NB_OK;
    out->max_session_age_seconds = a->max_session_age_seconds;
    out->password = a->password;
    out->pin = a->pin;
    out->oidc = a->oidc;
    if (a->session_key && a->session_key[0] && (out->session_key = strdup(a->session_key)) == NULL)
        return nb_errf(err, errlen, NB_E_NOMEM, "out of memory");
    if (a->n_header_auths == 0)
        return NB_OK;
    if (a->n_header_auths > UINT32_MAX)
        return nb_errf(err, errlen, NB_E_INVAL, "auth.header_auths: too many");
    out->header_auths = calloc(a->n_header_auths, sizeof *out->header_auths);
    if (out->header_auths == NULL)
        return nb_errf(err, errlen, NB_E_NOMEM, "out of memory");
    for (size_t i = 0; i < a->n_header_auths; i++) {
        const Management__HeaderAuth *h = a->header_auths[i];
        struct nb_header_auth *ha = &out->header_auths[i];
        out->n_header_auths = (uint32_t)i + 1;
        ha->header = dup_str(h ? h->header : NULL);
        ha->hashed_value = dup_str(h ? h->hashed_value : NULL);
        if (ha->header == NULL || ha->hashed_value == NULL)
            return nb_errf(err, errlen, NB_E_NOMEM, "out of memory");
        if (!is_token(ha->header))
            return nb_errf(err, errlen, NB_E_INVAL, "auth.header_auths[%zu].header: invalid name",
                           i);
    }
    return NB_OK;
}

int mgmt_mapping_decode(const Management__ProxyMapping *pm, struct nb_mapping *out, char *err,
                        size_t errlen)
{
    struct nb_mapping m;
    int rc = NB_OK;

    memset(&m, 0, sizeof m);
    memset(out, 0, sizeof *out);
    if (errlen)
        err[0] = '\0';
    if (pm == NULL)
        return nb_errf(err, errlen, NB_E_INVAL, "no mapping");

    switch (pm->type) {
    case MANAGEMENT__PROXY_MAPPING_UPDATE_TYPE__UPDATE_TYPE_CREATED:
        m.type = NB_UPDATE_CREATED;
        break;
    case MANAGEMENT__PROXY_MAPPING_UPDATE_TYPE__UPDATE_TYPE_MODIFIED:
        m.type = NB_UPDATE_MODIFIED;
        break;
    case MANAGEMENT__PROXY_MAPPING_UPDATE_TYPE__UPDATE_TYPE_REMOVED:
        m.type = NB_UPDATE_REMOVED;
        break;
    default:
        return nb_errf(err, errlen, NB_E_INVAL, "unknown update type %d", (int)pm->type);
    }
    if (pm->id == NULL || pm->id[0] == '\0')
        return nb_errf(err, errlen, NB_E_INVAL, "mapping without id");
    if (m.type != NB_UPDATE_REMOVED && (pm->account_id == NULL || pm->account_id[0] == '\0'))
        return nb_errf(err, errlen, NB_E_INVAL, "mapping without account_id");
    if (pm->listen_port < 0 || pm->listen_port > 65535)
        return nb_errf(err, errlen, NB_E_INVAL, "invalid listen port %d", (int)pm->listen_port);

    m.pass_host_header = pm->pass_host_header;
    m.rewrite_redirects = pm->rewrite_redirects;
    m.listen_port = pm->listen_port;
    m.private_service = pm->private_;
    m.id = dup_str(pm->id);
    m.account_id = dup_str(pm->account_id);
    m.domain = dup_str(pm->domain);
    m.mode = dup_str(pm->mode);
    if (!m.id || !m.account_id || !m.domain || !m.mode) {
        rc = nb_errf(err, errlen, NB_E_NOMEM, "out of memory");
        goto out;
    }
    if (pm->auth_token && pm->auth_token[0] && (m.auth_token = strdup(pm->auth_token)) == NULL) {
        rc = nb_errf(err, errlen, NB_E_NOMEM, "out of memory");
        goto out;
    }
    if (pm->n_path > UINT32_MAX) {
        rc = nb_errf(err, errlen, NB_E_INVAL, "too many paths");
        goto out;
    }
    if (pm->n_path) {
        m.paths = calloc(pm->n_path, sizeof *m.paths);
        if (m.paths == NULL) {
            rc = nb_errf(err, errlen, NB_E_NOMEM, "out of memory");
            goto out;
        }
        for (size_t i = 0; i < pm->n_path; i++) {
            m.n_paths = (uint32_t)i + 1;
            if ((rc = decode_path(pm->path[i], &m.paths[i], (uint32_t)i, err, errlen)) != NB_OK)
                goto out;
        }
    }
    if ((rc = decode_auth(pm->auth, &m.auth, err, errlen)) != NB_OK)
        goto out;
    if (pm->access_restrictions && m.type != NB_UPDATE_REMOVED) {
        const Management__AccessRestrictions *ar = pm->access_restrictions;
        struct auth_restrict_spec spec = {
            .allowed_cidrs = (const char *const *)ar->allowed_cidrs,
            .n_allowed_cidrs = ar->n_allowed_cidrs,
            .blocked_cidrs = (const char *const *)ar->blocked_cidrs,
            .n_blocked_cidrs = ar->n_blocked_cidrs,
            .allowed_countries = (const char *const *)ar->allowed_countries,
            .n_allowed_countries = ar->n_allowed_countries,
            .blocked_countries = (const char *const *)ar->blocked_countries,
            .n_blocked_countries = ar->n_blocked_countries,
            .crowdsec_mode = ar->crowdsec_mode,
        };
        if (auth_restrict_new(&spec, &m.restrictions, NULL) != NB_OK) {
            rc = nb_errf(err, errlen, NB_E_NOMEM, "out of memory");
            goto out;
        }
    }

    *out = m;
    memset(&m, 0, sizeof m);
out:
    nb_mapping_free(&m); /* wipes auth_token; a no-op after the hand-over */
    return rc;
}
