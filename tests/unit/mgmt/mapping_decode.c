/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * mgmt/mapping_decode: every ProxyMapping field through the wire (packed and unpacked with the
 * generated protobuf-c code) into struct nb_mapping; Duration conversions; map semantics;
 * unknown fields and enum values; and a table of invalid mappings with their reasons.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "mgmt/mapping_decode.h"
#include "auth/restrict.h"
#include "platform/err.h"

#include <stdlib.h>
#include <string.h>

/* A mapping with every field set, built on the stack. */
struct full {
    Management__ProxyMapping m;
    Management__PathMapping p0, p1, *paths[2];
    Management__PathTargetOptions o0;
    Google__Protobuf__Duration rt, idle, mwt;
    Management__PathTargetOptions__CustomHeadersEntry h[3], *hp[3];
    Management__MiddlewareConfig mw, *mwp[1];
    char *ctypes[1];
    Management__Authentication auth;
    Management__HeaderAuth ha[2], *hap[2];
    Management__AccessRestrictions ar;
    char *cidrs[1];
};

static void full_init(struct full *f)
{
    memset(f, 0, sizeof *f);
    management__proxy_mapping__init(&f->m);
    management__path_mapping__init(&f->p0);
    management__path_mapping__init(&f->p1);
    management__path_target_options__init(&f->o0);
    google__protobuf__duration__init(&f->rt);
    google__protobuf__duration__init(&f->idle);
    google__protobuf__duration__init(&f->mwt);
    management__middleware_config__init(&f->mw);
    management__authentication__init(&f->auth);
    management__access_restrictions__init(&f->ar);

    f->m.type = MANAGEMENT__PROXY_MAPPING_UPDATE_TYPE__UPDATE_TYPE_MODIFIED;
    f->m.id = "svc-1";
    f->m.account_id = "acct-1";
    f->m.domain = "app.example.com";
    f->m.auth_token = "one-time-secret";
    f->m.pass_host_header = 1;
    f->m.rewrite_redirects = 1;
    f->m.mode = "tcp";
    f->m.listen_port = 8443;
    f->m.private_ = 1;

    f->rt.seconds = 30;
    f->rt.nanos = 500000; /* 30.0005 s -> 30001 ms (rounded up) */
    f->idle.seconds = 120;
    f->o0.skip_tls_verify = 1;
    f->o0.request_timeout = &f->rt;
    f->o0.path_rewrite = MANAGEMENT__PATH_REWRITE_MODE__PATH_REWRITE_PRESERVE;
    f->o0.proxy_protocol = 1;
    f->o0.session_idle_timeout = &f->idle;
    f->o0.direct_upstream = 1;
    f->o0.disable_access_log = 1;
    f->o0.capture_max_request_bytes = 1024;
    f->ctypes[0] = "application/json";
    f->o0.n_capture_content_types = 1;
    f->o0.capture_content_types = f->ctypes;
    f->o0.agent_network = 1;
    f->mw.id = "llm_router";
    f->mw.enabled = 1;
    f->mwt.seconds = 2;
    f->mw.timeout = &f->mwt;
    f->mwp[0] = &f->mw;
    f->o0.n_middlewares = 1;
    f->o0.middlewares = f->mwp;
    static const char *const hk[] = {"X-Team", "X-Env", "X-Team"};
    static const char *const hv[] = {"first", "prod", "edge"}; /* X-Team repeated: last wins */
    for (int i = 0; i < 3; i++) {
        management__path_target_options__custom_headers_entry__init(&f->h[i]);
        f->h[i].key = (char *)hk[i];
        f->h[i].value = (char *)hv[i];
        f->hp[i] = &f->h[i];
    }
    f->o0.n_custom_headers = 3;
    f->o0.custom_headers = f->hp;

    f->p0.path = "/api";
    f->p0.target = "10.0.0.5:8080";
    f->p0.options = &f->o0;
    f->p1.path = "/";
    f->p1.target = "http://10.0.0.6";
    f->paths[0] = &f->p0;
    f->paths[1] = &f->p1;
    f->m.n_path = 2;
    f->m.path = f->paths;

    f->auth.session_key = "c2Vzc2lvbi1rZXk=";
    f->auth.max_session_age_seconds = 86400;
    f->auth.password = 1;
    f->auth.pin = 0;
    f->auth.oidc = 1;
    static const char *const hh[] = {"X-Api-Key", "Authorization"};
    for (int i = 0; i < 2; i++) {
        management__header_auth__init(&f->ha[i]);
        f->ha[i].header = (char *)hh[i];
        f->ha[i].hashed_value = "$argon2id$v=19$m=65536,t=1,p=4$c2FsdA$aGFzaA";
        f->hap[i] = &f->ha[i];
    }
    f->auth.n_header_auths = 2;
    f->auth.header_auths = f->hap;
    f->m.auth = &f->auth;

    f->cidrs[0] = "10.0.0.0/8";
    f->ar.n_allowed_cidrs = 1;
    f->ar.allowed_cidrs = f->cidrs;
    f->m.access_restrictions = &f->ar;
}

/* Packs and unpacks, so every case also goes through the wire format. */
static Management__ProxyMapping *wire(const Management__ProxyMapping *m)
{
    size_t n = management__proxy_mapping__get_packed_size(m);
    uint8_t *buf = malloc(n ? n : 1);
    assert_non_null(buf);
    assert_int_equal(management__proxy_mapping__pack(m, buf), n);
    Management__ProxyMapping *u = management__proxy_mapping__unpack(NULL, n, buf);
    free(buf);
    assert_non_null(u);
    return u;
}

static void test_every_field(void **state)
{
    struct full f;
    struct nb_mapping m;
    char err[128];
    (void)state;

    full_init(&f);
    Management__ProxyMapping *u = wire(&f.m);
    assert_int_equal(mgmt_mapping_decode(u, &m, err, sizeof err), NB_OK);
    assert_string_equal(err, "");
    management__proxy_mapping__free_unpacked(u, NULL);

    assert_int_equal(m.type, NB_UPDATE_MODIFIED);
    assert_string_equal(m.id, "svc-1");
    assert_string_equal(m.account_id, "acct-1");
    assert_string_equal(m.domain, "app.example.com");
    assert_string_equal(m.auth_token, "one-time-secret");
    assert_true(m.pass_host_header);
    assert_true(m.rewrite_redirects);
    assert_string_equal(m.mode, "tcp");
    assert_int_equal(m.listen_port, 8443);
    assert_true(m.private_service);
    assert_int_equal(nb_mapping_mode(&m), NB_MODE_TCP);

    assert_int_equal(m.n_paths, 2);
    struct nb_path_mapping *p = &m.paths[0];
    assert_string_equal(p->path, "/api");
    assert_string_equal(p->target, "10.0.0.5:8080");
    assert_true(p->options.skip_tls_verify);
    assert_int_equal(p->options.request_timeout_ms, 30001);
    assert_int_equal(p->options.path_rewrite, NB_PATH_REWRITE_PRESERVE);
    assert_true(p->options.proxy_protocol);
    assert_int_equal(p->options.session_idle_timeout_ms, 120000);
    assert_true(p->options.direct_upstream);
    assert_true(p->options.disable_access_log);
    assert_int_equal(p->options.n_custom_headers, 2); /* sorted, X-Team's last value */
    assert_string_equal(p->options.custom_headers[0].name, "X-Env");
    assert_string_equal(p->options.custom_headers[0].value, "prod");
    assert_string_equal(p->options.custom_headers[1].name, "X-Team");
    assert_string_equal(p->options.custom_headers[1].value, "edge");
    p = &m.paths[1];
    assert_string_equal(p->path, "/");
    assert_string_equal(p->target, "http://10.0.0.6");
    assert_false(p->options.skip_tls_verify);
    assert_int_equal(p->options.request_timeout_ms, 0);
    assert_int_equal(p->options.path_rewrite, NB_PATH_REWRITE_DEFAULT);
    assert_int_equal(p->options.n_custom_headers, 0);
    assert_null(p->options.custom_headers);

    assert_string_equal(m.auth.session_key, "c2Vzc2lvbi1rZXk=");
    assert_int_equal(m.auth.max_session_age_seconds, 86400);
    assert_true(m.auth.password);
    assert_false(m.auth.pin);
    assert_true(m.auth.oidc);
    assert_int_equal(m.auth.n_header_auths, 2);
    assert_string_equal(m.auth.header_auths[0].header, "X-Api-Key");
    assert_string_equal(m.auth.header_auths[1].header, "Authorization");
    assert_string_equal(m.auth.header_auths[1].hashed_value,
                        "$argon2id$v=19$m=65536,t=1,p=4$c2FsdA$aGFzaA");
    /* access_restrictions: compiled (full_init allows 10.0.0.0/8) */
    assert_non_null(m.restrictions);
    assert_int_equal(auth_restrict_n_cidrs(m.restrictions, false), 1);
    nb_mapping_free(&m);
    assert_null(m.id); /* nb_mapping_free zeroes */
    assert_null(m.restrictions);
}

/* AccessRestrictions (field 12) through the wire into a compiled filter (auth/restrict.h). */
static void test_restrictions(void **state)
{
    Management__ProxyMapping pm = MANAGEMENT__PROXY_MAPPING__INIT;
    Management__AccessRestrictions ar = MANAGEMENT__ACCESS_RESTRICTIONS__INIT;
    char *allow[] = {"10.1.2.3/8", "not-a-cidr", "2001:db8::/32"}, *block[] = {"10.9.0.0/16"};
    char *acc[] = {"de"}, *bcc[] = {"cn"};
    struct nb_mapping m;
    char err[64], buf[64];
    struct auth_ip ip;
    (void)state;

    pm.type = MANAGEMENT__PROXY_MAPPING_UPDATE_TYPE__UPDATE_TYPE_CREATED;
    pm.id = "r";
    pm.account_id = "a";
    pm.access_restrictions = &ar;
    ar.n_allowed_cidrs = 3;
    ar.allowed_cidrs = allow;
    ar.n_blocked_cidrs = 1;
    ar.blocked_cidrs = block;
    ar.n_allowed_countries = 1;
    ar.allowed_countries = acc;
    ar.n_blocked_countries = 1;
    ar.blocked_countries = bcc;
    ar.crowdsec_mode = "enforce";
    Management__ProxyMapping *u = wire(&pm);
    assert_int_equal(mgmt_mapping_decode(u, &m, err, sizeof err), NB_OK);
    management__proxy_mapping__free_unpacked(u, NULL);
    assert_string_equal(err, ""); /* an invalid CIDR is skipped, not an error (reference) */
    assert_non_null(m.restrictions);
    assert_int_equal(auth_restrict_n_cidrs(m.restrictions, false), 2);
    assert_string_equal(auth_restrict_cidr_str(m.restrictions, false, 0, buf, sizeof buf),
                        "10.0.0.0/8");
    assert_int_equal(auth_restrict_n_cidrs(m.restrictions, true), 1);
    assert_true(auth_restrict_has_country_rules(m.restrictions));
    assert_int_equal(auth_restrict_crowdsec_mode(m.restrictions), AUTH_CROWDSEC_ENFORCE);
    assert_true(auth_ip_parse("10.9.1.1", &ip));
    assert_int_equal(auth_restrict_check(m.restrictions, &ip, true, NULL), AUTH_DENY_IP);
    assert_true(auth_ip_parse("10.8.1.1", &ip));
    assert_int_equal(auth_restrict_check(m.restrictions, &ip, true, NULL), AUTH_ALLOW);
    assert_int_equal(auth_restrict_check(m.restrictions, &ip, false, NULL),
                     AUTH_DENY_GEO_UNAVAILABLE);
    nb_mapping_free(&m);

    /* off / empty: no filter at all; REMOVED ignores the field */
    Management__AccessRestrictions off = MANAGEMENT__ACCESS_RESTRICTIONS__INIT;
    off.crowdsec_mode = "off";
    pm.access_restrictions = &off;
    u = wire(&pm);
    assert_int_equal(mgmt_mapping_decode(u, &m, err, sizeof err), NB_OK);
    management__proxy_mapping__free_unpacked(u, NULL);
    assert_null(m.restrictions);
    nb_mapping_free(&m);
    pm.access_restrictions = &ar;
    pm.type = MANAGEMENT__PROXY_MAPPING_UPDATE_TYPE__UPDATE_TYPE_REMOVED;
    u = wire(&pm);
    assert_int_equal(mgmt_mapping_decode(u, &m, err, sizeof err), NB_OK);
    management__proxy_mapping__free_unpacked(u, NULL);
    assert_null(m.restrictions);
    nb_mapping_free(&m);
}

static void test_minimal(void **state)
{
    Management__ProxyMapping pm = MANAGEMENT__PROXY_MAPPING__INIT;
    struct nb_mapping m;
    char err[64];
    (void)state;

    pm.type = MANAGEMENT__PROXY_MAPPING_UPDATE_TYPE__UPDATE_TYPE_REMOVED;
    pm.id = "gone";
    Management__ProxyMapping *u = wire(&pm);
    assert_int_equal(mgmt_mapping_decode(u, &m, err, sizeof err), NB_OK);
    management__proxy_mapping__free_unpacked(u, NULL);
    assert_int_equal(m.type, NB_UPDATE_REMOVED);
    assert_string_equal(m.id, "gone");
    assert_string_equal(m.account_id, ""); /* never NULL */
    assert_string_equal(m.domain, "");
    assert_string_equal(m.mode, "");
    assert_null(m.auth_token);
    assert_null(m.auth.session_key);
    assert_int_equal(m.n_paths, 0);
    assert_null(m.paths);
    assert_int_equal(m.auth.n_header_auths, 0);
    assert_int_equal(m.listen_port, 0);
    assert_false(m.private_service);
    nb_mapping_free(&m);

    /* A path without options, an empty auth message. */
    Management__PathMapping p = MANAGEMENT__PATH_MAPPING__INIT, *pp = &p;
    Management__Authentication a = MANAGEMENT__AUTHENTICATION__INIT;
    pm.type = MANAGEMENT__PROXY_MAPPING_UPDATE_TYPE__UPDATE_TYPE_CREATED;
    pm.account_id = "a";
    pm.n_path = 1;
    pm.path = &pp;
    pm.auth = &a;
    u = wire(&pm);
    assert_int_equal(mgmt_mapping_decode(u, &m, err, sizeof err), NB_OK);
    management__proxy_mapping__free_unpacked(u, NULL);
    assert_int_equal(m.n_paths, 1);
    assert_string_equal(m.paths[0].path, "");
    assert_string_equal(m.paths[0].target, "");
    assert_null(m.auth.session_key);
    nb_mapping_free(&m);
}

static void test_durations(void **state)
{
    static const struct {
        int64_t s;
        int32_t ns;
        int rc;
        uint64_t ms;
    } t[] = {
        /* 1 */ {0, 0, NB_OK, 0},
        /* 2 */ {1, 0, NB_OK, 1000},
        /* 3 */ {0, 1, NB_OK, 1}, /* 1 ns stays "set" */
        /* 4 */ {0, 1000000, NB_OK, 1},
        /* 5 */ {0, 1000001, NB_OK, 2},
        /* 6 */ {30, 500000, NB_OK, 30001},
        /* 7 */ {0, 999999999, NB_OK, 1000},
        /* 8 */ {315576000000ll, 999999999, NB_OK, 315576000000000ull + 1000},
        /* 9 */ {-1, 0, NB_E_INVAL, 0},
        /* 10 */ {0, -1, NB_E_INVAL, 0},
        /* 11 */ {-1, -5, NB_E_INVAL, 0},
        /* 12 */ {0, 1000000000, NB_E_INVAL, 0},
        /* 13 */ {315576000001ll, 0, NB_E_INVAL, 0},
        /* 14 */ {INT64_MAX, 0, NB_E_INVAL, 0},
    };
    uint64_t ms = 7;
    (void)state;
    assert_int_equal(mgmt_duration_ms(NULL, &ms), NB_OK);
    assert_int_equal(ms, 0);
    for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) {
        Google__Protobuf__Duration d = GOOGLE__PROTOBUF__DURATION__INIT;
        d.seconds = t[i].s;
        d.nanos = t[i].ns;
        assert_int_equal(mgmt_duration_ms(&d, &ms), t[i].rc);
        if (t[i].rc == NB_OK)
            assert_int_equal(ms, t[i].ms);
    }
}

/* Invalid mappings: each case changes one thing of the full mapping. */
enum bad {
    BAD_TYPE_3,
    BAD_TYPE_NEG,
    BAD_NO_ID,
    BAD_CREATED_NO_ACCOUNT,
    BAD_MODIFIED_NO_ACCOUNT,
    BAD_PORT_NEG,
    BAD_PORT_BIG,
    BAD_RT_NEG,
    BAD_RT_NANOS,
    BAD_IDLE_NEG_NANOS,
    BAD_IDLE_HUGE,
    BAD_HDR_EMPTY,
    BAD_HDR_SPACE,
    BAD_HDR_COLON,
    BAD_HDR_CRLF,
    BAD_HDR_CTL,
    BAD_HA_EMPTY,
    BAD_HA_SPACE,
};

static void test_invalid(void **state)
{
    static const struct {
        enum bad what;
        const char *reason;
    } t[] = {
        /* 1 */ {BAD_TYPE_3, "unknown update type 3"},
        /* 2 */ {BAD_TYPE_NEG, "unknown update type -1"},
        /* 3 */ {BAD_NO_ID, "mapping without id"},
        /* 4 */ {BAD_CREATED_NO_ACCOUNT, "mapping without account_id"},
        /* 5 */ {BAD_MODIFIED_NO_ACCOUNT, "mapping without account_id"},
        /* 6 */ {BAD_PORT_NEG, "invalid listen port -1"},
        /* 7 */ {BAD_PORT_BIG, "invalid listen port 65536"},
        /* 8 */ {BAD_RT_NEG, "paths[0].options.request_timeout: invalid duration"},
        /* 9 */ {BAD_RT_NANOS, "paths[0].options.request_timeout: invalid duration"},
        /* 10 */ {BAD_IDLE_NEG_NANOS, "paths[0].options.session_idle_timeout: invalid duration"},
        /* 11 */ {BAD_IDLE_HUGE, "paths[0].options.session_idle_timeout: invalid duration"},
        /* 12 */ {BAD_HDR_EMPTY, "paths[0].options.custom_headers: invalid header name"},
        /* 13 */ {BAD_HDR_SPACE, "paths[0].options.custom_headers: invalid header name"},
        /* 14 */ {BAD_HDR_COLON, "paths[0].options.custom_headers: invalid header name"},
        /* 15 */ {BAD_HDR_CRLF, "paths[0].options.custom_headers: invalid value for X-Env"},
        /* 16 */ {BAD_HDR_CTL, "paths[0].options.custom_headers: invalid value for X-Env"},
        /* 17 */ {BAD_HA_EMPTY, "auth.header_auths[1].header: invalid name"},
        /* 18 */ {BAD_HA_SPACE, "auth.header_auths[0].header: invalid name"},
    };
    (void)state;
    for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) {
        struct full f;
        struct nb_mapping m;
        char err[128];
        full_init(&f);
        switch (t[i].what) {
        case BAD_TYPE_3:
            f.m.type = 3;
            break;
        case BAD_TYPE_NEG:
            f.m.type = -1;
            break;
        case BAD_NO_ID:
            f.m.id = "";
            break;
        case BAD_CREATED_NO_ACCOUNT:
            f.m.type = MANAGEMENT__PROXY_MAPPING_UPDATE_TYPE__UPDATE_TYPE_CREATED;
            f.m.account_id = "";
            break;
        case BAD_MODIFIED_NO_ACCOUNT:
            f.m.account_id = "";
            break;
        case BAD_PORT_NEG:
            f.m.listen_port = -1;
            break;
        case BAD_PORT_BIG:
            f.m.listen_port = 65536;
            break;
        case BAD_RT_NEG:
            f.rt.seconds = -1;
            f.rt.nanos = 0;
            break;
        case BAD_RT_NANOS:
            f.rt.nanos = 1000000000;
            break;
        case BAD_IDLE_NEG_NANOS:
            f.idle.nanos = -1;
            break;
        case BAD_IDLE_HUGE:
            f.idle.seconds = 315576000001ll;
            break;
        case BAD_HDR_EMPTY:
            f.h[1].key = "";
            break;
        case BAD_HDR_SPACE:
            f.h[1].key = "X Env";
            break;
        case BAD_HDR_COLON:
            f.h[1].key = "X-Env:";
            break;
        case BAD_HDR_CRLF:
            f.h[1].value = "prod\r\nX-Injected: 1";
            break;
        case BAD_HDR_CTL:
            f.h[1].value = "a\x01";
            break;
        case BAD_HA_EMPTY:
            f.ha[1].header = "";
            break;
        case BAD_HA_SPACE:
            f.ha[0].header = "X Api";
            break;
        }
        Management__ProxyMapping *u = wire(&f.m);
        memset(&m, 0xa5, sizeof m);
        assert_int_equal(mgmt_mapping_decode(u, &m, err, sizeof err), NB_E_INVAL);
        management__proxy_mapping__free_unpacked(u, NULL);
        assert_string_equal(err, t[i].reason);
        assert_null(strstr(err, "one-time-secret")); /* the token never shows */
        /* nothing handed over */
        assert_null(m.id);
        assert_null(m.paths);
        assert_null(m.auth_token);
        assert_int_equal(m.n_paths, 0);
    }
}

static void test_lenient(void **state)
{
    struct full f;
    struct nb_mapping m;
    char err[128];
    (void)state;

    /* REMOVED needs no account; unknown path_rewrite is DEFAULT; 0 and 65535 are ports; a
     * value with HTAB and obs-text is a valid field value. */
    full_init(&f);
    f.m.type = MANAGEMENT__PROXY_MAPPING_UPDATE_TYPE__UPDATE_TYPE_REMOVED;
    f.m.account_id = "";
    f.m.listen_port = 65535;
    f.o0.path_rewrite = 7;
    f.h[1].value = "a\tb \xc3\xa9";
    Management__ProxyMapping *u = wire(&f.m);
    assert_int_equal(mgmt_mapping_decode(u, &m, err, sizeof err), NB_OK);
    management__proxy_mapping__free_unpacked(u, NULL);
    assert_int_equal(m.type, NB_UPDATE_REMOVED);
    assert_int_equal(m.listen_port, 65535);
    assert_int_equal(m.paths[0].options.path_rewrite, NB_PATH_REWRITE_DEFAULT);
    assert_string_equal(m.paths[0].options.custom_headers[0].value, "a\tb \xc3\xa9");
    nb_mapping_free(&m);

    /* errlen 0 and a tiny buffer are fine */
    full_init(&f);
    f.m.type = 9;
    assert_int_equal(mgmt_mapping_decode(&f.m, &m, NULL, 0), NB_E_INVAL);
    char tiny[8];
    assert_int_equal(mgmt_mapping_decode(&f.m, &m, tiny, sizeof tiny), NB_E_INVAL);
    assert_string_equal(tiny, "unknown");
    assert_int_equal(mgmt_mapping_decode(NULL, &m, err, sizeof err), NB_E_INVAL);
}

/* Unknown fields (a newer management) are skipped; an unknown enum value on the wire is kept
 * by protobuf-c and rejected by the decoder. */
static void test_unknown_wire(void **state)
{
    struct full f;
    struct nb_mapping m;
    char err[128];
    (void)state;

    full_init(&f);
    size_t n = management__proxy_mapping__get_packed_size(&f.m);
    uint8_t *buf = malloc(n + 32);
    management__proxy_mapping__pack(&f.m, buf);
    /* field 99 varint 150; field 100 length-delimited "hello"; field 14 fixed64 */
    static const uint8_t extra[] = {0x98, 0x06, 0x96, 0x01, 0xa2, 0x06, 0x05, 'h', 'e', 'l', 'l',
                                    'o',  0x71, 1,    2,    3,    4,    5,    6,   7,   8};
    memcpy(buf + n, extra, sizeof extra);
    Management__ProxyMapping *u = management__proxy_mapping__unpack(NULL, n + sizeof extra, buf);
    assert_non_null(u);
    assert_int_equal(mgmt_mapping_decode(u, &m, err, sizeof err), NB_OK);
    assert_string_equal(m.id, "svc-1");
    assert_int_equal(m.n_paths, 2);
    nb_mapping_free(&m);
    management__proxy_mapping__free_unpacked(u, NULL);

    /* type = 7 (field 1, varint) appended: the last value of a scalar wins */
    static const uint8_t type7[] = {0x08, 0x07};
    memcpy(buf + n, type7, sizeof type7);
    u = management__proxy_mapping__unpack(NULL, n + sizeof type7, buf);
    assert_non_null(u);
    assert_int_equal(mgmt_mapping_decode(u, &m, err, sizeof err), NB_E_INVAL);
    assert_string_equal(err, "unknown update type 7");
    management__proxy_mapping__free_unpacked(u, NULL);
    free(buf);
}

/* A whole SyncMappingsResponse as management sends it: mappings plus the snapshot flag. */
static void test_batch(void **state)
{
    struct full f;
    Management__SyncMappingsResponse r = MANAGEMENT__SYNC_MAPPINGS_RESPONSE__INIT;
    Management__ProxyMapping bad = MANAGEMENT__PROXY_MAPPING__INIT;
    Management__ProxyMapping *ms[2];
    (void)state;

    full_init(&f);
    bad.type = MANAGEMENT__PROXY_MAPPING_UPDATE_TYPE__UPDATE_TYPE_CREATED;
    bad.id = "svc-2"; /* no account: invalid, the first one still applies */
    ms[0] = &f.m;
    ms[1] = &bad;
    r.n_mapping = 2;
    r.mapping = ms;
    r.initial_sync_complete = 1;
    size_t n = management__sync_mappings_response__get_packed_size(&r);
    uint8_t *buf = malloc(n);
    management__sync_mappings_response__pack(&r, buf);
    Management__SyncMappingsResponse *u = management__sync_mappings_response__unpack(NULL, n, buf);
    free(buf);
    assert_non_null(u);
    assert_true(u->initial_sync_complete);
    assert_int_equal(u->n_mapping, 2);
    struct nb_mapping m;
    char err[128];
    assert_int_equal(mgmt_mapping_decode(u->mapping[0], &m, err, sizeof err), NB_OK);
    nb_mapping_free(&m);
    assert_int_equal(mgmt_mapping_decode(u->mapping[1], &m, err, sizeof err), NB_E_INVAL);
    assert_string_equal(err, "mapping without account_id");
    management__sync_mappings_response__free_unpacked(u, NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_field), cmocka_unit_test(test_minimal),
        cmocka_unit_test(test_durations),   cmocka_unit_test(test_invalid),
        cmocka_unit_test(test_lenient),     cmocka_unit_test(test_unknown_wire),
        cmocka_unit_test(test_batch),       cmocka_unit_test(test_restrictions),
    };
    return cmocka_run_group_tests_name("mgmt_mapping_decode", tests, NULL, NULL);
}
