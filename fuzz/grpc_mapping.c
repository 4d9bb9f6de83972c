/* SPDX-License-Identifier: BSD-3-Clause */
/* Copyright (c) nbproxy authors */

/*
 * libFuzzer target: management's mapping messages. The first byte picks what the rest is
 * unpacked as (GetMappingUpdateResponse, SyncMappingsResponse, or a bare ProxyMapping), the way
 * the lifecycle unpacks a received gRPC message; every mapping then goes through
 * mgmt_mapping_decode(). Asserts:
 *   - a rejection zeroes the output and leaves a non-empty reason;
 *   - an accepted mapping has the documented non-NULL, NUL-terminated strings, counts that match
 *     the message (paths, header auths; custom headers <= entries, names valid tokens, sorted and
 *     unique), durations equal to mgmt_duration_ms(), update type and path rewrite in range;
 *   - re-packing the unpacked message and decoding again gives the same result (the re-pack
 *     must unpack unless protobuf-c kept unknown fields, see has_unknown()).
 */

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "mgmt/mapping_decode.h"
#include "platform/err.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_str(const char *s, bool may_be_null)
{
    if (s == NULL) {
        if (!may_be_null)
            abort();
        return;
    }
    volatile size_t n = strlen(s); /* ASan catches a missing NUL */
    (void)n;
}

static uint64_t hash_str(uint64_t h, const char *s)
{
    for (; s && *s; s++)
        h = (h ^ (uint8_t)*s) * 1099511628211ull;
    return (h ^ 0xff) * 1099511628211ull;
}

/* Decodes one mapping, checks it, and returns a digest of the result (0 for a rejection). */
static uint64_t check_one(const Management__ProxyMapping *pm)
{
    struct nb_mapping m;
    char err[160];
    int rc = mgmt_mapping_decode(pm, &m, err, sizeof err);
    uint64_t h = 1469598103934665603ull;

    if (rc != NB_OK) {
        if (rc != NB_E_INVAL && rc != NB_E_NOMEM)
            abort();
        if (err[0] == '\0' || strlen(err) >= sizeof err)
            abort();
        const uint8_t *b = (const uint8_t *)&m;
        for (size_t i = 0; i < sizeof m; i++)
            if (b[i])
                abort();
        return 0;
    }
    if (m.type != NB_UPDATE_CREATED && m.type != NB_UPDATE_MODIFIED && m.type != NB_UPDATE_REMOVED)
        abort();
    check_str(m.id, false);
    check_str(m.account_id, false);
    check_str(m.domain, false);
    check_str(m.mode, false);
    check_str(m.auth_token, true);
    check_str(m.auth.session_key, true);
    if (m.id[0] == '\0' || m.n_paths != pm->n_path || m.listen_port < 0 || m.listen_port > 65535)
        abort();
    if ((m.auth_token != NULL) != (pm->auth_token && pm->auth_token[0]))
        abort();
    h = hash_str(h, m.id);
    h = hash_str(h, m.account_id);
    h = hash_str(h, m.domain);
    h = hash_str(h, m.mode);
    h = hash_str(h, m.auth_token);
    h = (h ^ (uint64_t)m.type ^ (uint64_t)m.listen_port << 8) * 1099511628211ull;
    for (uint32_t i = 0; i < m.n_paths; i++) {
        const struct nb_path_mapping *p = &m.paths[i];
        const Management__PathTargetOptions *o = pm->path[i] ? pm->path[i]->options : NULL;
        check_str(p->path, false);
        check_str(p->target, false);
        h = hash_str(h, p->path);
        h = hash_str(h, p->target);
        if (p->options.path_rewrite != NB_PATH_REWRITE_DEFAULT &&
            p->options.path_rewrite != NB_PATH_REWRITE_PRESERVE)
            abort();
        uint64_t rt, idle;
        if (mgmt_duration_ms(o ? o->request_timeout : NULL, &rt) != NB_OK ||
            mgmt_duration_ms(o ? o->session_idle_timeout : NULL, &idle) != NB_OK)
            abort(); /* accepted, so both were valid */
        if (rt != p->options.request_timeout_ms || idle != p->options.session_idle_timeout_ms)
            abort();
        if (p->options.n_custom_headers > (o ? o->n_custom_headers : 0))
            abort();
        for (uint32_t k = 0; k < p->options.n_custom_headers; k++) {
            const struct nb_header_kv *kv = &p->options.custom_headers[k];
            check_str(kv->name, false);
            check_str(kv->value, false);
            if (kv->name[0] == '\0' || strpbrk(kv->name, " :\r\n\t") != NULL ||
                strpbrk(kv->value, "\r\n") != NULL)
                abort();
            if (k > 0 && strcmp(p->options.custom_headers[k - 1].name, kv->name) >= 0)
                abort(); /* sorted, unique */
            h = hash_str(hash_str(h, kv->name), kv->value);
        }
    }
    if (m.auth.n_header_auths != (pm->auth ? pm->auth->n_header_auths : 0))
        abort();
    for (uint32_t i = 0; i < m.auth.n_header_auths; i++) {
        check_str(m.auth.header_auths[i].header, false);
        check_str(m.auth.header_auths[i].hashed_value, false);
        if (m.auth.header_auths[i].header[0] == '\0')
            abort();
        h = hash_str(h, m.auth.header_auths[i].header);
    }
    h = hash_str(h, m.auth.session_key);
    nb_mapping_free(&m);
    return h | 1;
}

/* True if m or any message inside it kept unknown fields. protobuf-c keeps some it cannot
 * re-encode faithfully (a zero tag written as a two-byte varint comes back as a one-byte zero
 * tag, which it then rejects), so the round trip below only holds without them. */
static bool has_unknown(const ProtobufCMessage *m)
{
    if (m == NULL)
        return false;
    if (m->n_unknown_fields)
        return true;
    const ProtobufCMessageDescriptor *d = m->descriptor;
    for (unsigned i = 0; i < d->n_fields; i++) {
        const ProtobufCFieldDescriptor *f = &d->fields[i];
        if (f->type != PROTOBUF_C_TYPE_MESSAGE)
            continue;
        const char *base = (const char *)m;
        if (f->label == PROTOBUF_C_LABEL_REPEATED) {
            size_t n = *(const size_t *)(base + f->quantifier_offset);
            ProtobufCMessage *const *arr = *(ProtobufCMessage *const *const *)(base + f->offset);
            for (size_t k = 0; k < n; k++)
                if (has_unknown(arr[k]))
                    return true;
        } else if (has_unknown(*(ProtobufCMessage *const *)(base + f->offset))) {
            return true;
        }
    }
    return false;
}

static uint64_t check_all(Management__ProxyMapping **ms, size_t n)
{
    uint64_t h = 0;
    for (size_t i = 0; i < n; i++)
        h = (h ^ check_one(ms[i])) * 1099511628211ull;
    return h;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    uint8_t kind = data[0] % 3;
    data++;
    size--;

    ProtobufCMessage *msg;
    const ProtobufCMessageDescriptor *desc =
        kind == 0   ? &management__get_mapping_update_response__descriptor
        : kind == 1 ? &management__sync_mappings_response__descriptor
                    : &management__proxy_mapping__descriptor;
    msg = protobuf_c_message_unpack(desc, NULL, size, data);
    if (msg == NULL)
        return 0;

    uint64_t h1;
    if (kind == 0) {
        Management__GetMappingUpdateResponse *r = (Management__GetMappingUpdateResponse *)msg;
        h1 = check_all(r->mapping, r->n_mapping);
    } else if (kind == 1) {
        Management__SyncMappingsResponse *r = (Management__SyncMappingsResponse *)msg;
        h1 = check_all(r->mapping, r->n_mapping);
    } else {
        h1 = check_one((Management__ProxyMapping *)msg);
    }

    /* pack -> unpack -> decode again: the same verdicts and the same contents */
    size_t n = protobuf_c_message_get_packed_size(msg);
    uint8_t *buf = malloc(n ? n : 1);
    if (buf == NULL || protobuf_c_message_pack(msg, buf) != n)
        abort();
    ProtobufCMessage *again = protobuf_c_message_unpack(desc, NULL, n, buf);
    if (again == NULL) {
        if (!has_unknown(msg))
            abort();
        protobuf_c_message_free_unpacked(msg, NULL);
        free(buf);
        return 0;
    }
    uint64_t h2;
    if (kind == 0) {
        Management__GetMappingUpdateResponse *r = (Management__GetMappingUpdateResponse *)again;
        h2 = check_all(r->mapping, r->n_mapping);
    } else if (kind == 1) {
        Management__SyncMappingsResponse *r = (Management__SyncMappingsResponse *)again;
        h2 = check_all(r->mapping, r->n_mapping);
    } else {
        h2 = check_one((Management__ProxyMapping *)again);
    }
    if (h1 != h2)
        abort();
    protobuf_c_message_free_unpacked(again, NULL);
    protobuf_c_message_free_unpacked(msg, NULL);
    free(buf);
    return 0;
}
