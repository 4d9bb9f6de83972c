/* SPDX-License-Identifier: BSD-3-Clause */
/* Copyright (c) nbproxy authors */

/*
 * The access log: JSON lines parsed back with cJSON field by field, the §8 record rules as a
 * numbered table (checked both in the line and in what a sink receives), hostile strings,
 * dropping and counting when the output is a pipe nobody reads, stdout left blocking for
 * everyone else, the flush timer, reopen for log rotation, and the deny-entry rate limiter on a
 * fake clock.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "http/accesslog.h"
#include "platform/err.h"
#include "platform/loop.h"
#include "platform/xid.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static char dir[64];
static char path[128];
static struct nb_loop *loop;

static int setup(void **state)
{
    strcpy(dir, "/tmp/nb-accesslog-XXXXXX");
    if (mkdtemp(dir) == NULL)
        return -1;
    snprintf(path, sizeof path, "%s/access.log", dir);
    loop = nb_loop_new();
    return loop ? 0 : -1;
}

static int teardown(void **state)
{
    char p[160];
    unlink(path);
    snprintf(p, sizeof p, "%s.1", path);
    unlink(p);
    rmdir(path); /* the reopen test turns it into a directory */
    rmdir(dir);
    nb_loop_free(loop);
    return 0;
}

/* The whole file, NUL-terminated. */
static char *slurp(const char *p)
{
    FILE *f = fopen(p, "rb");
    assert_non_null(f);
    char *buf = NULL;
    size_t n = 0, cap = 0;
    for (;;) {
        if (cap - n < 4096) {
            cap = cap ? cap * 2 : 8192;
            buf = realloc(buf, cap);
        }
        size_t r = fread(buf + n, 1, cap - n - 1, f);
        if (r == 0)
            break;
        n += r;
    }
    fclose(f);
    buf[n] = '\0';
    return buf;
}

/* Splits text into lines (in place); every line must end with '\n'. Returns the count. */
static size_t lines(char *text, char **out, size_t max)
{
    size_t n = 0;
    char *p = text;
    while (*p) {
        char *nl = strchr(p, '\n');
        assert_non_null(nl);
        *nl = '\0';
        assert_true(n < max);
        out[n++] = p;
        p = nl + 1;
    }
    return n;
}

static const char *jstr(const cJSON *o, const char *k)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    if (!cJSON_IsString(v))
        fail_msg("%s is not a string", k);
    return v->valuestring;
}

static double jnum(const cJSON *o, const char *k)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    if (!cJSON_IsNumber(v))
        fail_msg("%s is not a number", k);
    return v->valuedouble;
}

static bool jbool(const cJSON *o, const char *k)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    if (!cJSON_IsBool(v))
        fail_msg("%s is not a bool", k);
    return cJSON_IsTrue(v);
}

static const struct nb_access_log_kv md_full[] = {
    {"crowdsec_verdict", "ban"},
    {"llm.model", "old"},
    {"llm.model", "gpt-x"}, /* repeated: the last value wins */
    {"cost.usd_total", "0.25"},
};

static struct nb_access_log_entry full_entry(void)
{
    return (struct nb_access_log_entry){
        .timestamp_ms = 1767323045678, /* 2026-01-02T03:04:05.678Z */
        .log_id = "d5a0b8k2l9m1n3p4q5r6",
        .account_id = "acc-1",
        .service_id = "svc-1",
        .host = "app.example.com",
        .path = "/api/v1/items",
        .duration_ms = 1234,
        .method = "POST",
        .response_code = 201,
        .source_ip = "203.0.113.7",
        .auth_mechanism = "oidc",
        .user_id = "user-42",
        .auth_success = false, /* derived: 201 -> true */
        .bytes_upload = 5000000000LL,
        .bytes_download = 777,
        .protocol = "http",
        .metadata = md_full,
        .n_metadata = 4,
        .agent_network = true,
    };
}

static void test_json_line_every_field(void **state)
{
    struct nb_access_log *log;
    assert_int_equal(nb_access_log_new(loop, path, &log), NB_OK);
    struct nb_access_log_entry e = full_entry();
    nb_access_log_write(log, &e);
    nb_access_log_free(log);

    char *text = slurp(path), *l[4];
    assert_int_equal(lines(text, l, 4), 1);
    cJSON *j = cJSON_Parse(l[0]);
    assert_non_null(j);
    static const char *const order[] = {"timestamp",    "logId",       "accountId",     "serviceId",
                                        "host",         "path",        "durationMs",    "method",
                                        "responseCode", "sourceIp",    "authMechanism", "userId",
                                        "authSuccess",  "bytesUpload", "bytesDownload", "protocol",
                                        "metadata",     "agentNetwork"};
    const cJSON *c = j->child;
    for (size_t i = 0; i < sizeof order / sizeof order[0]; i++, c = c->next) {
        assert_non_null(c);
        assert_string_equal(c->string, order[i]);
    }
    assert_null(c);
    assert_string_equal(jstr(j, "timestamp"), "2026-01-02T03:04:05.678Z");
    assert_string_equal(jstr(j, "logId"), "d5a0b8k2l9m1n3p4q5r6");
    assert_string_equal(jstr(j, "accountId"), "acc-1");
    assert_string_equal(jstr(j, "serviceId"), "svc-1");
    assert_string_equal(jstr(j, "host"), "app.example.com");
    assert_string_equal(jstr(j, "path"), "/api/v1/items");
    assert_true(jnum(j, "durationMs") == 1234);
    assert_string_equal(jstr(j, "method"), "POST");
    assert_true(jnum(j, "responseCode") == 201);
    assert_string_equal(jstr(j, "sourceIp"), "203.0.113.7");
    assert_string_equal(jstr(j, "authMechanism"), "oidc");
    assert_string_equal(jstr(j, "userId"), "user-42");
    assert_true(jbool(j, "authSuccess"));
    assert_true(jnum(j, "bytesUpload") == 5000000000.0);
    assert_true(jnum(j, "bytesDownload") == 777);
    assert_string_equal(jstr(j, "protocol"), "http");
    const cJSON *md = cJSON_GetObjectItemCaseSensitive(j, "metadata");
    assert_int_equal(cJSON_GetArraySize(md), 3);
    assert_string_equal(jstr(md, "crowdsec_verdict"), "ban");
    assert_string_equal(jstr(md, "llm.model"), "gpt-x");
    assert_string_equal(jstr(md, "cost.usd_total"), "0.25");
    assert_true(jbool(j, "agentNetwork"));
    /* Exactly one line, no pretty-printing. */
    assert_null(strchr(l[0], ' '));
    cJSON_Delete(j);
    free(text);
}

/* Missing time and id are filled in; NULL strings become "". */
static void test_stamping(void **state)
{
    struct nb_access_log *log;
    assert_int_equal(nb_access_log_new(loop, path, &log), NB_OK);
    struct nb_access_log_entry e = {.protocol = "tcp"};
    time_t before = time(NULL);
    nb_access_log_write(log, &e);
    nb_access_log_free(log);

    char *text = slurp(path), *l[2];
    assert_int_equal(lines(text, l, 2), 1);
    cJSON *j = cJSON_Parse(l[0]);
    assert_non_null(j);
    nb_xid id;
    assert_int_equal(nb_xid_decode(jstr(j, "logId"), strlen(jstr(j, "logId")), id), NB_OK);
    assert_in_range(nb_xid_time(id), (uint32_t)before, (uint32_t)time(NULL));
    struct tm tm;
    const char *ts = jstr(j, "timestamp");
    assert_int_equal(strlen(ts), 24);
    assert_non_null(strptime(ts, "%Y-%m-%dT%H:%M:%S", &tm));
    assert_int_equal(ts[19], '.');
    assert_int_equal(ts[23], 'Z');
    assert_in_range((uint64_t)timegm(&tm), (uint64_t)before, (uint64_t)time(NULL));
    assert_string_equal(jstr(j, "host"), "");
    assert_string_equal(jstr(j, "userId"), "");
    assert_int_equal(cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(j, "metadata")), 0);
    cJSON_Delete(j);
    free(text);
}

/* ---- the rules ---- */

struct seen {
    int n;
    char user_id[64], host[64], path[64], method[16], source_ip[64], protocol[16], auth[32];
    bool auth_success, agent_network, disable;
    int32_t code;
    int64_t duration, up, down;
    uint32_t n_md;
    char md[32][2][64];
};

static void copy(char *dst, size_t n, const char *s)
{
    assert_non_null(s); /* sinks never see NULL */
    snprintf(dst, n, "%s", s);
}

static void sink(void *arg, const struct nb_access_log_entry *e)
{
    struct seen *s = arg;
    s->n++;
    copy(s->user_id, sizeof s->user_id, e->user_id);
    copy(s->host, sizeof s->host, e->host);
    copy(s->path, sizeof s->path, e->path);
    copy(s->method, sizeof s->method, e->method);
    copy(s->source_ip, sizeof s->source_ip, e->source_ip);
    copy(s->protocol, sizeof s->protocol, e->protocol);
    copy(s->auth, sizeof s->auth, e->auth_mechanism);
    assert_non_null(e->log_id);
    assert_int_equal(strlen(e->log_id), NB_XID_STR_LEN);
    assert_true(e->timestamp_ms > 0);
    s->auth_success = e->auth_success;
    s->agent_network = e->agent_network;
    s->disable = e->disable_access_log;
    s->code = e->response_code;
    s->duration = e->duration_ms;
    s->up = e->bytes_upload;
    s->down = e->bytes_download;
    s->n_md = e->n_metadata;
    assert_true(e->n_metadata <= 32);
    for (uint32_t i = 0; i < e->n_metadata; i++) {
        copy(s->md[i][0], 64, e->metadata[i].key);
        copy(s->md[i][1], 64, e->metadata[i].value);
    }
}

static const struct nb_access_log_kv md_usage[] = {
    {"llm.provider", "openai"},  {"llm.model", "gpt-x"},     {"llm.prompt", "secret prompt text"},
    {"crowdsec_verdict", "ban"}, {"cost.usd_total", "0.25"}, {"mw.capture.bypass_reason", "size"},
};

enum {
    F_PATH = 1,      /* path */
    F_AUTH = 2,      /* auth_mechanism */
    F_PROTO = 4,     /* protocol */
    F_CODE = 8,      /* response_code */
    F_DISABLE = 16,  /* disable_access_log = true */
    F_NO_AGENT = 32, /* agent_network = false */
    F_SUCCESS = 64,  /* auth_success given as true */
};

static const struct {
    unsigned set;
    const char *path, *auth, *proto;
    int32_t code;
    /* expectations */
    bool logged;
    const char *user_id;
    bool auth_success;
    bool stripped;
} rules[] = {
    /*  1 */ {F_AUTH, NULL, "oidc", NULL, 0, true, "user-42", true, false},
    /*  2 */ {F_AUTH, NULL, "password", NULL, 0, true, "", true, false},
    /*  3 */ {F_AUTH, NULL, "pin", NULL, 0, true, "", true, false},
    /*  4 */ {F_AUTH, NULL, "header", NULL, 0, true, "", true, false},
    /*  5 */ {F_AUTH, NULL, "OIDC", NULL, 0, true, "", true, false},
    /*  6 */ {F_AUTH, NULL, "", NULL, 0, true, "", true, false},
    /*  7 */ {F_AUTH | F_CODE, NULL, "ip_restricted", NULL, 403, true, "", false, false},
    /*  8 */ {F_CODE, NULL, NULL, NULL, 401, true, "user-42", false, false},
    /*  9 */ {F_CODE, NULL, NULL, NULL, 500, true, "user-42", true, false},
    /* 10 */ {F_CODE | F_PROTO | F_SUCCESS, NULL, NULL, "tcp", 0, true, "user-42", false, false},
    /* 11 */ {F_PROTO | F_SUCCESS, NULL, NULL, "tls", 0, true, "user-42", false, false},
    /* 12 */ {F_PROTO | F_SUCCESS, NULL, NULL, "udp", 0, true, "user-42", false, false},
    /* 13 */ {F_PROTO | F_SUCCESS, NULL, NULL, "", 0, true, "user-42", true, false},
    /* 14 */ {F_PATH, "/__netbird__/assets/index.js", NULL, NULL, 0, false, NULL, false, false},
    /* 15 */ {F_PATH, "/__netbird__/", NULL, NULL, 0, false, NULL, false, false},
    /* 16 */ {F_PATH, "/__netbird__", NULL, NULL, 0, true, "user-42", true, false},
    /* 17 */ {F_PATH, "/app/__netbird__/x", NULL, NULL, 0, true, "user-42", true, false},
    /* 18 */ {F_PATH, "/__NETBIRD__/x", NULL, NULL, 0, true, "user-42", true, false},
    /* 19 */ {F_DISABLE | F_NO_AGENT, NULL, NULL, NULL, 0, false, NULL, false, false},
    /* 20 */ {F_DISABLE, NULL, NULL, NULL, 0, true, "user-42", true, true},
    /* 21 */ {F_DISABLE | F_CODE, NULL, NULL, NULL, 403, true, "user-42", false, true},
    /* 22 */ {F_DISABLE | F_AUTH, NULL, "password", NULL, 0, true, "", true, true},
    /* /__netbird__/ wins even for agent-network usage entries. */
    /* 23 */ {F_DISABLE | F_PATH, "/__netbird__/x", NULL, NULL, 0, false, NULL, false, false},
    /* 24 */ {F_NO_AGENT, NULL, NULL, NULL, 0, true, "user-42", true, false},
};

static void check_stripped_md(const cJSON *md, const struct seen *s)
{
    /* Only the usage keys survive: llm.provider, llm.model, cost.usd_total. */
    assert_int_equal(cJSON_GetArraySize(md), 3);
    assert_string_equal(jstr(md, "llm.provider"), "openai");
    assert_string_equal(jstr(md, "llm.model"), "gpt-x");
    assert_string_equal(jstr(md, "cost.usd_total"), "0.25");
    assert_int_equal(s->n_md, 3);
    for (uint32_t i = 0; i < s->n_md; i++)
        assert_true(strcmp(s->md[i][0], "llm.prompt") != 0 &&
                    strcmp(s->md[i][0], "crowdsec_verdict") != 0);
}

static void test_rules_table(void **state)
{
    for (size_t i = 0; i < sizeof rules / sizeof rules[0]; i++) {
        struct nb_access_log *log;
        struct seen seen = {0};
        unlink(path);
        assert_int_equal(nb_access_log_new(loop, path, &log), NB_OK);
        assert_int_equal(nb_access_log_add_sink(log, sink, &seen), NB_OK);

        struct nb_access_log_entry e = full_entry();
        e.response_code = 200;
        e.metadata = md_usage;
        e.n_metadata = sizeof md_usage / sizeof md_usage[0];
        if (rules[i].set & F_PATH)
            e.path = rules[i].path;
        if (rules[i].set & F_AUTH)
            e.auth_mechanism = rules[i].auth;
        if (rules[i].set & F_PROTO)
            e.protocol = rules[i].proto;
        if (rules[i].set & F_CODE)
            e.response_code = rules[i].code;
        e.disable_access_log = (rules[i].set & F_DISABLE) != 0;
        e.agent_network = (rules[i].set & F_NO_AGENT) == 0;
        e.auth_success = (rules[i].set & F_SUCCESS) != 0;
        nb_access_log_write(log, &e);

        struct nb_access_log_stats st;
        nb_access_log_stats(log, &st);
        nb_access_log_free(log);
        char *text = slurp(path), *l[2];
        size_t n = lines(text, l, 2);
        if (n != (rules[i].logged ? 1u : 0u) || seen.n != (int)n)
            fail_msg("case %zu: %zu lines, sink saw %d", i + 1, n, seen.n);
        assert_int_equal(st.logged, n);
        assert_int_equal(st.suppressed, 1 - n);
        if (n == 0) {
            free(text);
            continue;
        }
        cJSON *j = cJSON_Parse(l[0]);
        assert_non_null(j);
        if (strcmp(jstr(j, "userId"), rules[i].user_id) != 0 ||
            strcmp(seen.user_id, rules[i].user_id) != 0)
            fail_msg("case %zu: userId %s / %s", i + 1, jstr(j, "userId"), seen.user_id);
        if (jbool(j, "authSuccess") != rules[i].auth_success ||
            seen.auth_success != rules[i].auth_success)
            fail_msg("case %zu: authSuccess %d", i + 1, jbool(j, "authSuccess"));
        assert_false(seen.disable);
        assert_string_equal(jstr(j, "accountId"), "acc-1");
        assert_string_equal(jstr(j, "serviceId"), "svc-1");
        assert_string_equal(jstr(j, "authMechanism"), seen.auth);
        const cJSON *md = cJSON_GetObjectItemCaseSensitive(j, "metadata");
        if (rules[i].stripped) {
            assert_string_equal(jstr(j, "host"), "");
            assert_string_equal(jstr(j, "path"), "");
            assert_string_equal(jstr(j, "sourceIp"), "");
            assert_string_equal(jstr(j, "method"), "");
            assert_string_equal(jstr(j, "protocol"), "");
            assert_true(jnum(j, "responseCode") == 0);
            assert_true(jnum(j, "durationMs") == 0);
            assert_true(jnum(j, "bytesUpload") == 0);
            assert_true(jnum(j, "bytesDownload") == 0);
            assert_true(jbool(j, "agentNetwork"));
            assert_string_equal(seen.host, "");
            assert_string_equal(seen.path, "");
            assert_string_equal(seen.source_ip, "");
            assert_string_equal(seen.method, "");
            assert_string_equal(seen.protocol, "");
            assert_int_equal(seen.code, 0);
            assert_int_equal(seen.duration, 0);
            assert_int_equal(seen.up + seen.down, 0);
            check_stripped_md(md, &seen);
        } else {
            assert_string_equal(jstr(j, "host"), "app.example.com");
            assert_string_equal(seen.host, "app.example.com");
            assert_string_equal(jstr(j, "sourceIp"), "203.0.113.7");
            assert_true(jnum(j, "durationMs") == 1234);
            assert_int_equal(seen.up, 5000000000LL);
            assert_int_equal(cJSON_GetArraySize(md), 6);
            assert_int_equal(seen.n_md, 6);
            assert_string_equal(jstr(md, "llm.prompt"), "secret prompt text");
        }
        cJSON_Delete(j);
        free(text);
    }
}

/* All fifteen usage keys survive, nothing else does, a repeated key keeps its last value. */
static void test_usage_keys(void **state)
{
    static const char *const keep[] = {"llm.provider",
                                       "llm.model",
                                       "llm.resolved_provider_id",
                                       "llm.input_tokens",
                                       "llm.output_tokens",
                                       "llm.total_tokens",
                                       "llm.cached_input_tokens",
                                       "llm.cache_creation_tokens",
                                       "cost.usd_input",
                                       "cost.usd_cached_input",
                                       "cost.usd_cache_creation",
                                       "cost.usd_output",
                                       "cost.usd_total",
                                       "cost.usd_cache",
                                       "llm.authorising_groups"};
    struct nb_access_log_kv md[40];
    uint32_t n = 0;
    for (size_t i = 0; i < 15; i++)
        md[n++] = (struct nb_access_log_kv){keep[i], "old"};
    for (size_t i = 0; i < 15; i++)
        md[n++] = (struct nb_access_log_kv){keep[i], keep[i]};
    static const char *const drop[] = {"llm.prompt",    "cost.usd_totalx", "llm",      "cost.usd",
                                       "crowdsec_mode", "mw.x.error_kind", "LLM.MODEL"};
    for (size_t i = 0; i < sizeof drop / sizeof drop[0]; i++)
        md[n++] = (struct nb_access_log_kv){drop[i], "x"};

    struct nb_access_log *log;
    struct seen seen = {0};
    assert_int_equal(nb_access_log_new(loop, path, &log), NB_OK);
    assert_int_equal(nb_access_log_add_sink(log, sink, &seen), NB_OK);
    struct nb_access_log_entry e = full_entry();
    e.metadata = md;
    e.n_metadata = n;
    e.disable_access_log = true;
    nb_access_log_write(log, &e);
    nb_access_log_free(log);

    char *text = slurp(path), *l[2];
    assert_int_equal(lines(text, l, 2), 1);
    cJSON *j = cJSON_Parse(l[0]);
    const cJSON *m = cJSON_GetObjectItemCaseSensitive(j, "metadata");
    assert_int_equal(cJSON_GetArraySize(m), 15);
    assert_int_equal(seen.n_md, 15);
    for (size_t i = 0; i < 15; i++)
        assert_string_equal(jstr(m, keep[i]), keep[i]);
    cJSON_Delete(j);
    free(text);
}

/* Strings that try to break the line or the JSON come back intact (bad UTF-8 as U+FFFD). */
static void test_hostile_strings(void **state)
{
    static const struct {
        const char *in, *want;
    } cases[] = {
        /* 1 */ {"/a\"b\\c", NULL},
        /* 2 */ {"/x\ny\r\nz", NULL},
        /* 3 */ {"/\x01\x1f\t\x7f", NULL},
        /* 4 */ {"/\"},\"userId\":\"admin", NULL},
        /* 5 */ {"/caf\xc3\xa9/\xf0\x9f\x90\xa6", NULL},
        /* 6 */ {"/\xff\xfe", "/\xef\xbf\xbd\xef\xbf\xbd"},
        /* 7 */ {"/\xc3", "/\xef\xbf\xbd"},
        /* 8 */ {"/\xc3\"", "/\xef\xbf\xbd\""},
        /* 9 */ {"/\xed\xa0\x80", "/\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd"},
    };
    struct nb_access_log *log;
    assert_int_equal(nb_access_log_new(loop, path, &log), NB_OK);
    struct nb_access_log_kv md[1];
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct nb_access_log_entry e = full_entry();
        e.path = e.host = e.user_id = cases[i].in;
        md[0] = (struct nb_access_log_kv){cases[i].in, cases[i].in};
        e.metadata = md;
        e.n_metadata = 1;
        nb_access_log_write(log, &e);
    }
    nb_access_log_free(log);
    char *text = slurp(path), *l[16];
    assert_int_equal(lines(text, l, 16), sizeof cases / sizeof cases[0]);
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const char *want = cases[i].want ? cases[i].want : cases[i].in;
        cJSON *j = cJSON_Parse(l[i]);
        if (j == NULL)
            fail_msg("case %zu: line does not parse: %s", i + 1, l[i]);
        if (strcmp(jstr(j, "path"), want) != 0)
            fail_msg("case %zu: path came back as %s", i + 1, jstr(j, "path"));
        assert_string_equal(jstr(j, "host"), want);
        assert_string_equal(jstr(j, "userId"), want);
        assert_string_equal(jstr(cJSON_GetObjectItemCaseSensitive(j, "metadata"), want), want);
        assert_string_equal(jstr(j, "accountId"), "acc-1"); /* nothing was overwritten */
        cJSON_Delete(j);
    }
    free(text);
}

/* ---- output behaviour ---- */

/* Reads everything currently in fd (non-blocking) and appends it to *acc. */
static void drain(int fd, char **acc, size_t *len)
{
    char buf[65536];
    ssize_t n;
    while ((n = read(fd, buf, sizeof buf)) > 0) {
        *acc = realloc(*acc, *len + (size_t)n + 1);
        memcpy(*acc + *len, buf, (size_t)n);
        *len += (size_t)n;
        (*acc)[*len] = '\0';
    }
}

static int count_of(const char *hay, const char *needle)
{
    int c = 0;
    for (const char *p = hay; (p = strstr(p, needle)) != NULL; p += strlen(needle))
        c++;
    return c;
}

/*
 * A pipe that nobody reads: the writer must not block, must stop at the buffer cap and count
 * every lost entry, warn once, and deliver every entry it kept once the reader catches up.
 */
static void test_full_pipe_drops(void **state)
{
    int p[2], errp[2];
    assert_int_equal(pipe2(p, O_CLOEXEC), 0);
    assert_int_equal(pipe2(errp, O_CLOEXEC | O_NONBLOCK), 0);
    fcntl(p[0], F_SETFL, O_NONBLOCK);
    char dest[64];
    snprintf(dest, sizeof dest, "/proc/self/fd/%d", p[1]);

    /* Capture stderr to count the warnings. */
    fflush(stderr);
    int saved_err = dup(2);
    dup2(errp[1], 2);

    struct nb_access_log *log;
    struct seen seen = {0};
    assert_int_equal(nb_access_log_new(loop, dest, &log), NB_OK);
    assert_int_equal(nb_access_log_add_sink(log, sink, &seen), NB_OK);
    char longpath[1001];
    memset(longpath, 'p', 1000);
    longpath[0] = '/';
    longpath[1000] = '\0';
    enum { N = 3000 }; /* ~1.3 KiB each: about 4 MiB offered to a 64 KiB pipe + 1 MiB buffer */
    uint64_t t0 = nb_now_ms();
    for (int i = 0; i < N; i++) {
        struct nb_access_log_entry e = full_entry();
        e.path = longpath;
        e.duration_ms = i;
        nb_access_log_write(log, &e);
    }
    assert_true(nb_now_ms() - t0 < 2000); /* never waited for the reader */

    struct nb_access_log_stats st;
    nb_access_log_stats(log, &st);
    assert_int_equal(st.logged, N);
    assert_int_equal(seen.n, N); /* sinks see everything, whatever the file does */
    assert_true(st.dropped > 0);
    assert_true(st.buffered <= NB_ACCESS_LOG_BUF_CAP);
    assert_true(st.buffered > NB_ACCESS_LOG_BUF_CAP - 2000); /* filled up to the cap */

    fflush(stderr);
    dup2(saved_err, 2);
    close(saved_err);
    char *err = NULL;
    size_t err_len = 0;
    drain(errp[0], &err, &err_len);
    assert_non_null(err);
    assert_int_equal(count_of(err, "dropped"), 1); /* once per 10 s, not once per entry */
    free(err);

    /* The reader catches up: the loop drains the buffer through the io watcher. */
    char *out = NULL;
    size_t out_len = 0;
    for (int i = 0; i < 2000; i++) {
        drain(p[0], &out, &out_len);
        nb_access_log_stats(log, &st);
        if (st.buffered == 0)
            break;
        nb_loop_run_once(loop, 10);
    }
    drain(p[0], &out, &out_len);
    nb_access_log_stats(log, &st);
    assert_int_equal(st.buffered, 0);
    assert_int_equal(st.written + st.dropped, N);

    /* Every line that arrived is whole and in order. */
    char **l = malloc(sizeof(char *) * N);
    size_t n = lines(out, l, N);
    assert_int_equal(n, st.written);
    double prev = -1;
    for (size_t i = 0; i < n; i++) {
        cJSON *j = cJSON_Parse(l[i]);
        assert_non_null(j);
        assert_true(jnum(j, "durationMs") > prev);
        prev = jnum(j, "durationMs");
        cJSON_Delete(j);
    }
    free(l);
    free(out);
    nb_access_log_free(log);
    close(p[0]);
    close(p[1]);
    close(errp[0]);
    close(errp[1]);
}

/* "-": our non-blocking writes must not flip O_NONBLOCK on the stdout others share. */
static void test_stdout(void **state)
{
    int p[2];
    assert_int_equal(pipe2(p, O_CLOEXEC), 0);
    fflush(stdout);
    int saved = dup(1);
    dup2(p[1], 1);
    int before = fcntl(1, F_GETFL);

    struct nb_access_log *log;
    assert_int_equal(nb_access_log_new(loop, "-", &log), NB_OK);
    assert_int_equal(fcntl(1, F_GETFL), before);
    assert_false(fcntl(1, F_GETFL) & O_NONBLOCK);
    struct nb_access_log_entry e = full_entry();
    nb_access_log_write(log, &e);
    nb_access_log_free(log);

    dup2(saved, 1);
    close(saved);
    close(p[1]);
    char buf[4096];
    ssize_t n = read(p[0], buf, sizeof buf - 1);
    close(p[0]);
    assert_true(n > 0);
    buf[n] = '\0';
    char *l[2];
    assert_int_equal(lines(buf, l, 2), 1);
    cJSON *j = cJSON_Parse(l[0]);
    assert_non_null(j);
    assert_string_equal(jstr(j, "logId"), "d5a0b8k2l9m1n3p4q5r6");
    cJSON_Delete(j);
}

/* A quiet logger writes within the flush interval, without being closed. */
static void test_flush_timer(void **state)
{
    struct nb_access_log *log;
    assert_int_equal(nb_access_log_new(loop, path, &log), NB_OK);
    struct nb_access_log_entry e = full_entry();
    nb_access_log_write(log, &e);
    struct nb_access_log_stats st;
    nb_access_log_stats(log, &st);
    assert_true(st.buffered > 0); /* batched, not written at once */
    uint64_t t0 = nb_now_ms();
    while (st.buffered > 0 && nb_now_ms() - t0 < 3000) {
        nb_loop_run_once(loop, 50);
        nb_access_log_stats(log, &st);
    }
    assert_int_equal(st.buffered, 0);
    assert_int_equal(st.written, 1);
    char *text = slurp(path), *l[2];
    assert_int_equal(lines(text, l, 2), 1);
    free(text);
    nb_access_log_free(log);
}

static void write_marked(struct nb_access_log *log, const char *mark)
{
    struct nb_access_log_entry e = full_entry();
    e.path = mark;
    nb_access_log_write(log, &e);
}

/* Rotation: after a rename and reopen, new lines go to a new file at the same path. */
static void test_reopen(void **state)
{
    char rotated[160];
    snprintf(rotated, sizeof rotated, "%s.1", path);
    mode_t old = umask(0);
    struct nb_access_log *log;
    assert_int_equal(nb_access_log_new(loop, path, &log), NB_OK);
    umask(old);
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0640);

    write_marked(log, "/first");
    nb_access_log_flush(log);
    assert_int_equal(rename(path, rotated), 0);
    write_marked(log, "/second"); /* buffered at the reopen: flushed to the old file first */
    assert_int_equal(nb_access_log_reopen(log), NB_OK);
    write_marked(log, "/third");

    /* A reopen that fails keeps the old file in use. */
    char rotated2[170];
    snprintf(rotated2, sizeof rotated2, "%s.2", path);
    nb_access_log_flush(log);
    assert_int_equal(rename(path, rotated2), 0);
    assert_int_equal(mkdir(path, 0700), 0);
    assert_int_equal(nb_access_log_reopen(log), NB_E_IO);
    write_marked(log, "/fourth");
    nb_access_log_free(log);
    assert_int_equal(rmdir(path), 0);

    char *a = slurp(rotated), *b = slurp(rotated2);
    char *la[4], *lb[4];
    assert_int_equal(lines(a, la, 4), 2);
    assert_int_equal(lines(b, lb, 4), 2);
    assert_non_null(strstr(la[0], "\"/first\""));
    assert_non_null(strstr(la[1], "\"/second\""));
    assert_non_null(strstr(lb[0], "\"/third\""));
    assert_non_null(strstr(lb[1], "\"/fourth\""));
    free(a);
    free(b);
    unlink(rotated);
    unlink(rotated2);

    /* No-ops for stdout-less and file-less loggers. */
    assert_int_equal(nb_access_log_new(NULL, NULL, &log), NB_OK);
    assert_int_equal(nb_access_log_reopen(log), NB_OK);
    nb_access_log_free(log);
}

static void other_sink(void *arg, const struct nb_access_log_entry *e)
{
    (*(int *)arg)++;
}

static void test_sinks_and_errors(void **state)
{
    struct nb_access_log *log;
    /* Sinks only: no loop, no file. */
    assert_int_equal(nb_access_log_new(NULL, "", &log), NB_OK);
    struct seen seen = {0};
    int count = 0;
    assert_int_equal(nb_access_log_add_sink(log, sink, &seen), NB_OK);
    assert_int_equal(nb_access_log_add_sink(log, other_sink, &count), NB_OK);
    assert_int_equal(nb_access_log_add_sink(log, other_sink, &count), NB_OK);
    assert_int_equal(nb_access_log_add_sink(log, other_sink, &seen), NB_OK);
    assert_int_equal(nb_access_log_add_sink(log, other_sink, &seen), NB_E_TOO_BIG);
    assert_int_equal(nb_access_log_remove_sink(log, other_sink, &seen), NB_OK);
    assert_int_equal(nb_access_log_remove_sink(log, other_sink, &seen), NB_E_NOTFOUND);
    struct nb_access_log_entry e = full_entry();
    e.auth_mechanism = "pin";
    nb_access_log_write(log, &e);
    assert_int_equal(seen.n, 1);
    assert_int_equal(count, 2);
    assert_string_equal(seen.user_id, ""); /* sinks get the entry after the rules */
    assert_int_equal(nb_access_log_remove_sink(log, other_sink, &count), NB_OK);
    nb_access_log_write(log, &e);
    assert_int_equal(count, 3);
    nb_access_log_free(log);
    nb_access_log_write(NULL, &e); /* no logger: nothing happens */

    /* Local output needs a loop; unopenable paths fail with NB_E_IO. */
    log = (struct nb_access_log *)&count;
    assert_int_equal(nb_access_log_new(NULL, path, &log), NB_E_INVAL);
    assert_null(log);
    assert_int_equal(nb_access_log_new(loop, "/nonexistent-dir/x/access.log", &log), NB_E_IO);
    assert_int_equal(errno, ENOENT);
    assert_null(log);
}

/* ---- deny-entry rate limiter (§8.3) ---- */

#define SEC  1000ull
#define HOUR (3600ull * SEC)

static void test_deny_limiter(void **state)
{
    struct nb_access_log_deny d;
    nb_access_log_deny_init(&d);
    uint64_t t = 5 * SEC, sup = 99;
    static const struct {
        uint64_t dt; /* advance the clock by */
        const char *svc, *reason;
        bool allowed;
        uint64_t suppressed; /* reported when allowed */
    } steps[] = {
        /*  1 */ {0, "svc-a", "ip_restricted", true, 0}, /* first always */
        /*  2 */ {1, "svc-a", "ip_restricted", false, 0},
        /*  3 */ {0, "svc-a", "country_restricted", true, 0}, /* other reason: own key */
        /*  4 */ {0, "svc-b", "ip_restricted", true, 0},      /* other service: own key */
        /*  5 */ {9998, "svc-a", "ip_restricted", false, 0},  /* 9999 ms after the first */
        /*  6 */ {1, "svc-a", "ip_restricted", true, 2},      /* 10 s: allowed, 2 held back */
        /*  7 */ {0, "svc-a", "ip_restricted", false, 0},
        /*  8 */ {10 * SEC, "svc-a", "ip_restricted", true, 1},
        /*  9 */ {0, "ab", "c", true, 0},
        /* 10 */ {0, "a", "bc", true, 0}, /* not the same key as ("ab", "c") */
        /* 11 */ {0, NULL, NULL, true, 0},
        /* 12 */ {0, "", "", false, 0}, /* NULL is "" */
    };
    for (size_t i = 0; i < sizeof steps / sizeof steps[0]; i++) {
        t += steps[i].dt;
        bool got = nb_access_log_deny_allow(&d, steps[i].svc, steps[i].reason, t, &sup);
        if (got != steps[i].allowed)
            fail_msg("step %zu: allowed=%d", i + 1, got);
        assert_int_equal(sup, got ? steps[i].suppressed : 0);
    }
    assert_int_equal(nb_access_log_deny_count(&d), 6);
    nb_access_log_deny_deinit(&d);
}

static void test_deny_limiter_cap_and_purge(void **state)
{
    struct nb_access_log_deny d;
    nb_access_log_deny_init(&d);
    char svc[32];
    uint64_t t0 = 1000;
    /* 10 000 distinct keys are tracked... */
    for (unsigned i = 0; i < NB_ACCESS_LOG_DENY_MAX_KEYS; i++) {
        snprintf(svc, sizeof svc, "svc-%u", i);
        assert_true(nb_access_log_deny_allow(&d, svc, "ip_restricted", t0, NULL));
    }
    assert_int_equal(nb_access_log_deny_count(&d), 10000);
    /* ...the next new key is dropped, known keys keep working. */
    assert_false(nb_access_log_deny_allow(&d, "svc-new", "ip_restricted", t0 + 1, NULL));
    assert_false(nb_access_log_deny_allow(&d, "svc-0", "geo_unavailable", t0 + 1, NULL));
    assert_int_equal(nb_access_log_deny_count(&d), 10000);
    assert_true(nb_access_log_deny_allow(&d, "svc-7", "ip_restricted", t0 + 10 * SEC, NULL));

    /* Keep svc-7 active: logged again 23 h later. */
    assert_true(nb_access_log_deny_allow(&d, "svc-7", "ip_restricted", t0 + 23 * HOUR, NULL));
    /* Exactly 24 h after their last log the others are not yet idle "more than" 24 h. */
    assert_int_equal(nb_access_log_deny_sweep(&d, t0 + 24 * HOUR), 0);
    assert_int_equal(nb_access_log_deny_count(&d), 10000);
    /* One hour later the lazy hourly sweep (inside allow) purges all but svc-7. */
    assert_true(nb_access_log_deny_allow(&d, "svc-new", "ip_restricted", t0 + 25 * HOUR, NULL));
    assert_int_equal(nb_access_log_deny_count(&d), 2);
    /* A purged key starts over: first deny logged again. */
    assert_true(nb_access_log_deny_allow(&d, "svc-1", "ip_restricted", t0 + 25 * HOUR, NULL));
    assert_false(nb_access_log_deny_allow(&d, "svc-1", "ip_restricted", t0 + 25 * HOUR, NULL));
    /* The lazy sweep waits for an hour between runs. */
    assert_true(nb_access_log_deny_allow(&d, "svc-x", "r", t0 + 25 * HOUR + 1, NULL));
    assert_int_equal(nb_access_log_deny_count(&d), 4);
    assert_int_equal(nb_access_log_deny_sweep(&d, t0 + 50 * HOUR), 4);
    nb_access_log_deny_deinit(&d);
    assert_int_equal(nb_access_log_deny_count(&d), 0);
}

/* Differential: random operations against a naive reference (a flat array, linear search). */
static void test_deny_limiter_random(void **state)
{
    struct ref {
        int svc, reason;
        uint64_t last;
    } ref[64];
    int nref = 0;
    struct nb_access_log_deny d;
    nb_access_log_deny_init(&d);
    srand(7);
    uint64_t t = 0, last_sweep = 0;
    bool first = true;
    for (int i = 0; i < 200000; i++) {
        t += (uint64_t)(rand() % 4000);
        if (rand() % 5000 == 0)
            t += 30 * HOUR;
        int svc = rand() % 6, reason = rand() % 5;
        /* Reference: the hourly sweep first, then the decision. */
        if (first) {
            last_sweep = t; /* the limiter starts its sweep clock at its first call */
            first = false;
        } else if (t - last_sweep >= HOUR) {
            int k = 0;
            for (int j = 0; j < nref; j++)
                if (!(t > ref[j].last && t - ref[j].last > 24 * HOUR))
                    ref[k++] = ref[j];
            nref = k;
            last_sweep = t;
        }
        bool want = true;
        int j;
        for (j = 0; j < nref; j++)
            if (ref[j].svc == svc && ref[j].reason == reason)
                break;
        if (j < nref) {
            want = t - ref[j].last >= 10 * SEC;
            if (want)
                ref[j].last = t;
        } else {
            ref[nref++] = (struct ref){svc, reason, t};
        }
        char s[8], r[8];
        snprintf(s, sizeof s, "s%d", svc);
        snprintf(r, sizeof r, "r%d", reason);
        if (nb_access_log_deny_allow(&d, s, r, t, NULL) != want)
            fail_msg("op %d at t=%llu: expected %d", i, (unsigned long long)t, want);
        assert_int_equal(nb_access_log_deny_count(&d), nref);
    }
    nb_access_log_deny_deinit(&d);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_json_line_every_field, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stamping, setup, teardown),
        cmocka_unit_test_setup_teardown(test_rules_table, setup, teardown),
        cmocka_unit_test_setup_teardown(test_usage_keys, setup, teardown),
        cmocka_unit_test_setup_teardown(test_hostile_strings, setup, teardown),
        cmocka_unit_test_setup_teardown(test_full_pipe_drops, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stdout, setup, teardown),
        cmocka_unit_test_setup_teardown(test_flush_timer, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reopen, setup, teardown),
        cmocka_unit_test_setup_teardown(test_sinks_and_errors, setup, teardown),
        cmocka_unit_test(test_deny_limiter),
        cmocka_unit_test(test_deny_limiter_cap_and_purge),
        cmocka_unit_test(test_deny_limiter_random),
    };
    return cmocka_run_group_tests_name("http/accesslog", tests, NULL, NULL);
}
