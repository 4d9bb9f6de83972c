/* SPDX-License-Identifier: BSD-3-Clause */
#ifndef NB_MGMT_MAPPING_DECODE_H
#define NB_MGMT_MAPPING_DECODE_H

/*
 * ProxyMapping (protobuf-c, unpacked from a GetMappingUpdateResponse or SyncMappingsResponse)
 * to struct nb_mapping (core/mapping.h), the shape nb_proxy_apply() takes. Pure: no I/O, no
 * globals (an invalid restriction CIDR is reported by a log warning only). Structural checks only —
 * what the wire can carry but a mapping cannot mean; what a mapping means for a mode (ports for L4,
 * targets, domains) is nb_proxy_apply()'s to judge.
 *
 * Conversions:
 *   - strings are copied; id, account_id, domain, mode, paths[].path/target, custom header
 *     names/values and header_auths[] are never NULL (absent = ""). auth.session_key and
 *     auth_token are NULL when empty. auth_token is a secret: it is wiped by nb_mapping_free().
 *   - google.protobuf.Duration -> milliseconds, sub-millisecond remainders rounded up (so a set
 *     1 ns timeout does not read as "unset"); absent or zero = 0 (unset).
 *   - path_rewrite: PRESERVE, anything else (DEFAULT or a value this build does not know) is
 *     DEFAULT.
 *   - custom_headers is a protobuf map: a key repeated on the wire keeps its last value (the
 *     protobuf rule); entries come out sorted by name.
 *   - access_restrictions -> m.restrictions, compiled by auth_restrict_new() (auth/restrict.h):
 *     NULL when nothing is configured (or for REMOVED); invalid CIDRs are skipped with a
 *     warning in the log (the reference skips them too; the mapping still applies), country
 *     codes upper-cased, crowdsec_mode other than enforce/observe = off.
 *   - not carried by struct nb_mapping yet, so skipped here: the agent-network target options
 *     (middlewares, capture_*, agent_network). Unknown fields were already skipped by
 *     protobuf-c.
 *
 * Rejected (NB_E_INVAL, with the reason written into err; the lifecycle reports it as an ERROR
 * status for the mapping's service):
 *   - an update type other than CREATED, MODIFIED, REMOVED ("unknown update type 7");
 *   - an empty id ("mapping without id");
 *   - CREATED/MODIFIED without account_id;
 *   - listen_port outside 0..65535;
 *   - a Duration that is negative or not normalised (|nanos| >= 1e9, or nanos and seconds of
 *     different signs);
 *   - a custom header or header-auth name that is not an HTTP token, or a custom header value
 *     holding a control character other than HTAB (it would split or corrupt the upstream
 *     request).
 */

#include "core/mapping.h"
#include "mgmt/proxy_service.pb-c.h"

#include <stddef.h>

/*
 * Fills *out from pm. NB_OK: *out is the caller's (free with nb_mapping_free()). NB_E_INVAL (the
 * mapping is invalid) or NB_E_NOMEM: *out is zeroed, nothing is allocated, and err (if errlen >
 * 0) holds a NUL-terminated reason fit for SendStatusUpdate.error_message; it never contains
 * auth_token.
 */
int mgmt_mapping_decode(const Management__ProxyMapping *pm, struct nb_mapping *out, char *err,
                        size_t errlen) __attribute__((warn_unused_result));

/*
 * google.protobuf.Duration to milliseconds (rounded up). NB_OK (d NULL = 0) or NB_E_INVAL for a
 * negative or non-normalised value.
 */
int mgmt_duration_ms(const Google__Protobuf__Duration *d, uint64_t *ms)
    __attribute__((warn_unused_result));

#endif
