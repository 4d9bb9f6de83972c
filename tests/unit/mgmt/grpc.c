/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * mgmt/grpc: the client channel against real counterparts, each started here on 127.0.0.1 with
 * a random port and stopped by PID (tests/mgmt/peer.js, see its header for the scenarios):
 * @grpc/grpc-js serving OUR proxy_service.proto, a raw node:http2 server for answers grpc-js
 * never gives, and a TCP peer that accepts and stays silent. The peer records every RPC with
 * its metadata, every request message and every PING it receives, so the tests check both ends.
 * Plus the management URL parser (no peer needed).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "mgmt/grpc.h"
#include "mgmt/mapping_decode.h"
#include "platform/addr.h"
#include "platform/dns.h"
#include "platform/err.h"
#include "platform/log.h"
#include "platform/loop.h"
#include "platform/sock.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define TOKEN "nbx_AbCdEfGhIjKlMnOpQrStUvWxYz0123abcdef"
#define SVC   "/management.ProxyService/"

static struct nb_loop *loop;

/* ---- the peer process ---- */

static pid_t peer_pid = -1;
static uint16_t peer_port;
static char rec_path[64];

static void peer_stop(void)
{
    if (peer_pid > 0) {
        kill(peer_pid, SIGTERM);
        waitpid(peer_pid, NULL, 0);
        peer_pid = -1;
    }
    if (rec_path[0]) {
        unlink(rec_path);
        rec_path[0] = '\0';
    }
}

static void peer_start(const char *scenario)
{
    const char *node = getenv("NB_TEST_NODE") ? getenv("NB_TEST_NODE") : "node";
    const char *dir = NB_SOURCE_DIR "/tests/mgmt";
    struct stat st;
    int out[2];
    char line[64] = {0};
    size_t got = 0;

    if (stat(NB_SOURCE_DIR "/tests/mgmt/node_modules/@grpc/grpc-js/package.json", &st) != 0) {
        print_error("tests/mgmt/node_modules is missing: these tests need node and the pinned "
                    "@grpc/grpc-js; run `npm ci` in tests/mgmt (scripts/install-deps.sh --test)\n");
        fail();
    }
    snprintf(rec_path, sizeof rec_path, "/tmp/nb-mgmt-rec-XXXXXX");
    int fd = mkstemp(rec_path);
    assert_true(fd >= 0);
    close(fd);
    assert_int_equal(pipe2(out, O_CLOEXEC), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGTERM); /* never outlive the test */
        dup2(out[1], 1);
        execlp(node, node, NB_SOURCE_DIR "/tests/mgmt/peer.js", "--scenario", scenario, "--record",
               rec_path, (char *)NULL);
        _exit(127);
    }
    (void)dir;
    close(out[1]);
    peer_pid = pid;
    /* "PORT <n>\n" once listening; 15 s at most */
    uint64_t deadline = nb_now_ms() + 15000;
    while (got < sizeof line - 1 && strchr(line, '\n') == NULL) {
        struct pollfd p = {.fd = out[0], .events = POLLIN};
        int left = (int)(deadline - nb_now_ms());
        if (left <= 0 || poll(&p, 1, left) <= 0)
            break;
        ssize_t n = read(out[0], line + got, sizeof line - 1 - got);
        if (n <= 0)
            break;
        got += (size_t)n;
    }
    close(out[0]);
    unsigned port = 0;
    if (sscanf(line, "PORT %u", &port) != 1 || port == 0 || port > 65535) {
        print_error("peer.js (%s) did not start: '%s'\n", scenario, line);
        peer_stop();
        fail();
    }
    peer_port = (uint16_t)port;
}

/* Every record line, parsed; NULL-terminated. */
static cJSON **rec_read(void)
{
    FILE *f = fopen(rec_path, "r");
    size_t n = 0, cap = 16;
    cJSON **v = calloc(cap + 1, sizeof *v);
    char *line = NULL;
    size_t lcap = 0;
    assert_non_null(f);
    while (getline(&line, &lcap, f) > 0) {
        if (n == cap) {
            cap *= 2;
            v = realloc(v, (cap + 1) * sizeof *v);
        }
        cJSON *j = cJSON_Parse(line);
        if (j)
            v[n++] = j;
    }
    v[n] = NULL;
    free(line);
    fclose(f);
    return v;
}

static void rec_free(cJSON **v)
{
    for (size_t i = 0; v[i]; i++)
        cJSON_Delete(v[i]);
    free(v);
}

static const char *jstr(const cJSON *o, const char *k)
{
    const cJSON *x = cJSON_GetObjectItemCaseSensitive(o, k);
    return cJSON_IsString(x) ? x->valuestring : NULL;
}

/* Records with event == ev (and rpc == rpc when given). */
static int rec_count(const char *ev, const char *rpc)
{
    cJSON **v = rec_read();
    int n = 0;
    for (size_t i = 0; v[i]; i++) {
        const char *e = jstr(v[i], "event"), *r = jstr(v[i], "rpc");
        if (e && strcmp(e, ev) == 0 && (rpc == NULL || (r && strcmp(r, rpc) == 0)))
            n++;
    }
    rec_free(v);
    return n;
}

/* The k-th record with event == ev (and rpc), duplicated; NULL if none. */
static cJSON *rec_find(const char *ev, const char *rpc, int k)
{
    cJSON **v = rec_read(), *found = NULL;
    for (size_t i = 0; v[i] && !found; i++) {
        const char *e = jstr(v[i], "event"), *r = jstr(v[i], "rpc");
        if (e && strcmp(e, ev) == 0 && (rpc == NULL || (r && strcmp(r, rpc) == 0)) && k-- == 0)
            found = cJSON_Duplicate(v[i], 1);
    }
    rec_free(v);
    return found;
}

/* ---- the loop ---- */

#define RUN_UNTIL(cond, ms)                 \
    do {                                    \
        uint64_t _d = nb_now_ms() + (ms);   \
        while (!(cond) && nb_now_ms() < _d) \
            nb_loop_run_once(loop, 10);     \
    } while (0)

static void run_for(int ms)
{
    uint64_t d = nb_now_ms() + (uint64_t)ms;
    while (nb_now_ms() < d)
        nb_loop_run_once(loop, 10);
}

/* ---- the channel ---- */

struct chan {
    struct mgmt_grpc *ch;
    int ready, goaway, failed;
    const char *reason;
    int order; /* event counter, to check that FAILED comes after the calls' on_close */
    int failed_at;
};

static struct chan cs;
static struct nb_dns *dns;

static void on_state(void *arg, struct mgmt_grpc *ch, enum mgmt_grpc_state st, const char *reason)
{
    struct chan *c = arg;
    assert_ptr_equal(ch, c->ch);
    switch (st) {
    case MGMT_GRPC_READY:
        c->ready++;
        assert_null(reason);
        break;
    case MGMT_GRPC_GOAWAY:
        c->goaway++;
        assert_ptr_equal(reason, mgmt_grpc_err_goaway);
        break;
    case MGMT_GRPC_FAILED:
        c->failed++;
        c->failed_at = ++c->order;
        c->reason = reason;
        assert_non_null(reason);
        break;
    default:
        fail();
    }
}

static void opts_default(struct mgmt_grpc_opts *o, char *authority)
{
    socklen_t sl;
    memset(o, 0, sizeof *o);
    snprintf(authority, 32, "127.0.0.1:%u", peer_port);
    o->authority = authority;
    assert_int_equal(nb_addr_from_ip("127.0.0.1", peer_port, &o->addr, &sl), NB_OK);
    o->token = TOKEN;
    o->allow_insecure = true;
}

static void chan_open_opts(const struct mgmt_grpc_opts *o)
{
    memset(&cs, 0, sizeof cs);
    assert_int_equal(mgmt_grpc_new(loop, o, on_state, &cs, &cs.ch), NB_OK);
    assert_non_null(cs.ch);
}

static void chan_open(void)
{
    struct mgmt_grpc_opts o;
    char authority[32];
    opts_default(&o, authority);
    chan_open_opts(&o);
}

/* ---- unary calls ---- */

struct ures {
    bool done;
    int code;
    char msg[1100];
    uint8_t *resp; /* the response, packed again */
    size_t resp_len;
    int order;
};

static void unary_cb(void *arg, int code, const char *message, ProtobufCMessage *resp)
{
    struct ures *u = arg;
    assert_false(u->done);
    u->done = true;
    u->code = code;
    u->order = ++cs.order;
    snprintf(u->msg, sizeof u->msg, "%s", message);
    if (code == MGMT_GRPC_OK) {
        assert_non_null(resp);
        u->resp_len = protobuf_c_message_get_packed_size(resp);
        u->resp = malloc(u->resp_len + 1);
        protobuf_c_message_pack(resp, u->resp);
    } else {
        assert_null(resp);
    }
}

static void unary(struct ures *u, const char *rpc, uint32_t deadline, const ProtobufCMessage *req,
                  const ProtobufCMessageDescriptor *desc)
{
    char path[128];
    memset(u, 0, sizeof *u);
    snprintf(path, sizeof path, SVC "%s", rpc);
    assert_int_equal(mgmt_unary_pb(cs.ch, path, deadline, req, desc, unary_cb, u, NULL), NB_OK);
    assert_false(u->done); /* never from inside the call */
}

static void ures_free(struct ures *u)
{
    free(u->resp);
    u->resp = NULL;
}

/* ---- streaming calls ---- */

enum smode {
    S_PLAIN,
    S_SYNC_ACK,   /* send an ack after every message (SyncMappings) */
    S_PAUSE,      /* pause after the first message */
    S_FREE_CHAN,  /* free the channel from inside the second message */
    S_CANCEL_MSG, /* cancel the call from inside the first message */
};

struct sres {
    enum smode mode;
    struct mgmt_call *call;
    int nmsg;
    uint8_t *msgs[64];
    size_t lens[64];
    bool closed;
    int code;
    char msg[1100];
    int drains;
    int order;
};

static void s_on_message(void *arg, struct mgmt_call *c, const uint8_t *data, size_t len)
{
    struct sres *r = arg;
    assert_ptr_equal(c, r->call);
    assert_false(r->closed);
    if (r->nmsg < 64) {
        r->msgs[r->nmsg] = malloc(len + 1);
        memcpy(r->msgs[r->nmsg], data, len);
        r->lens[r->nmsg] = len;
    }
    r->nmsg++;
    switch (r->mode) {
    case S_SYNC_ACK: {
        Management__SyncMappingsAck ack = MANAGEMENT__SYNC_MAPPINGS_ACK__INIT;
        Management__SyncMappingsRequest rq = MANAGEMENT__SYNC_MAPPINGS_REQUEST__INIT;
        rq.msg_case = MANAGEMENT__SYNC_MAPPINGS_REQUEST__MSG_ACK;
        rq.ack = &ack;
        assert_int_equal(mgmt_call_send_pb(c, &rq.base), NB_OK);
        break;
    }
    case S_PAUSE:
        if (r->nmsg == 1)
            mgmt_call_pause(c, true);
        break;
    case S_FREE_CHAN:
        if (r->nmsg == 2) {
            mgmt_grpc_free(cs.ch);
            cs.ch = NULL;
        }
        break;
    case S_CANCEL_MSG:
        mgmt_call_cancel(c);
        break;
    default:
        break;
    }
}

static void s_on_close(void *arg, struct mgmt_call *c, int code, const char *message)
{
    struct sres *r = arg;
    assert_ptr_equal(c, r->call);
    assert_false(r->closed);
    r->closed = true;
    r->code = code;
    r->order = ++cs.order;
    snprintf(r->msg, sizeof r->msg, "%s", message);
}

static void s_on_drain(void *arg, struct mgmt_call *c)
{
    struct sres *r = arg;
    assert_false(mgmt_call_send_full(c));
    r->drains++;
}

static const struct mgmt_call_cbs scbs = {
    .on_message = s_on_message,
    .on_close = s_on_close,
    .on_drain = s_on_drain,
};

static void sstart(struct sres *r, const char *path, uint32_t deadline, enum smode mode)
{
    memset(r, 0, sizeof *r);
    r->mode = mode;
    assert_int_equal(mgmt_call_start(cs.ch, path, deadline, &scbs, r, &r->call), NB_OK);
}

static void sres_free(struct sres *r)
{
    for (int i = 0; i < r->nmsg && i < 64; i++)
        free(r->msgs[i]);
    r->nmsg = 0;
}

/* ---- setup / teardown ---- */

static int setup(void **state)
{
    (void)state;
    memset(&cs, 0, sizeof cs);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    if (cs.ch) {
        mgmt_grpc_free(cs.ch);
        cs.ch = NULL;
    }
    run_for(50); /* let closed streams go */
    peer_stop();
    assert_int_equal(mgmt_grpc_calls_live(), 0);
    return 0;
}

static int group_setup(void **state)
{
    (void)state;
    nb_log_set_level(getenv("NB_TEST_TRACE") ? NB_LOG_TRACE : NB_LOG_ERROR);
    loop = nb_loop_new();
    assert_non_null(loop);
    assert_int_equal(nb_dns_new(loop, NULL, &dns), NB_OK);
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    nb_dns_free(dns);
    run_for(20);
    assert_int_equal(nb_tcp_streams_live(), 0);
    nb_loop_free(loop);
    return 0;
}

/* ---- tests ---- */

/* A unary call both ways, the metadata the server saw, and an echo through the response. */
static void test_unary_and_metadata(void **state)
{
    struct ures u;
    (void)state;
    peer_start("default");
    chan_open();

    Management__SendStatusUpdateRequest rq = MANAGEMENT__SEND_STATUS_UPDATE_REQUEST__INIT;
    Management__ProxyInboundListener il = MANAGEMENT__PROXY_INBOUND_LISTENER__INIT;
    rq.service_id = "svc-1";
    rq.account_id = "acct-1";
    rq.status = MANAGEMENT__PROXY_STATUS__PROXY_STATUS_ERROR;
    rq.certificate_issued = 1;
    rq._error_message_case = MANAGEMENT__SEND_STATUS_UPDATE_REQUEST___ERROR_MESSAGE_ERROR_MESSAGE;
    rq.error_message = "target \"x\" is not ip:port";
    il.tunnel_ip = "100.64.0.5";
    il.https_port = 8443;
    il.http_port = 8080;
    rq.inbound_listener = &il;
    unary(&u, "SendStatusUpdate", 5000, &rq.base,
          &management__send_status_update_response__descriptor);
    RUN_UNTIL(u.done, 5000);
    assert_true(u.done);
    assert_int_equal(u.code, MGMT_GRPC_OK);
    assert_int_equal(cs.ready, 1);
    ures_free(&u);

    cJSON *r = rec_find("rpc", "SendStatusUpdate", 0);
    assert_non_null(r);
    const cJSON *md = cJSON_GetObjectItem(r, "metadata"), *req = cJSON_GetObjectItem(r, "request");
    assert_string_equal(jstr(md, "authorization"), "Bearer " TOKEN); /* exactly */
    const char *ua = jstr(md, "user-agent");
    assert_non_null(ua);
    assert_true(strncmp(ua, "nbproxy/", 8) == 0);
    assert_non_null(strstr(ua, " grpc-c"));
    assert_string_equal(jstr(req, "service_id"), "svc-1");
    assert_string_equal(jstr(req, "account_id"), "acct-1");
    assert_string_equal(jstr(req, "status"), "PROXY_STATUS_ERROR");
    assert_true(cJSON_IsTrue(cJSON_GetObjectItem(req, "certificate_issued")));
    assert_string_equal(jstr(req, "error_message"), "target \"x\" is not ip:port");
    const cJSON *jil = cJSON_GetObjectItem(req, "inbound_listener");
    assert_string_equal(jstr(jil, "tunnel_ip"), "100.64.0.5");
    assert_int_equal(cJSON_GetObjectItem(jil, "https_port")->valueint, 8443);
    assert_int_equal(cJSON_GetObjectItem(jil, "http_port")->valueint, 8080);
    cJSON_Delete(r);

    Management__ValidateSessionRequest vs = MANAGEMENT__VALIDATE_SESSION_REQUEST__INIT;
    vs.domain = "app.example.com";
    vs.session_token = "sess-token";
    unary(&u, "ValidateSession", 0, &vs.base, &management__validate_session_response__descriptor);
    RUN_UNTIL(u.done, 5000);
    assert_int_equal(u.code, MGMT_GRPC_OK);
    Management__ValidateSessionResponse *vr =
        management__validate_session_response__unpack(NULL, u.resp_len, u.resp);
    assert_non_null(vr);
    assert_true(vr->valid);
    assert_string_equal(vr->user_id, "app.example.com");
    assert_string_equal(vr->user_email, "sess-token");
    management__validate_session_response__free_unpacked(vr, NULL);
    ures_free(&u);

    struct mgmt_grpc_stats st;
    mgmt_grpc_stats(cs.ch, &st);
    assert_int_equal(st.calls_started, 2);
    assert_int_equal(st.calls_ok, 2);
    assert_int_equal(st.msgs_sent, 2);
    assert_int_equal(st.msgs_received, 2);
    assert_int_equal(mgmt_grpc_state(cs.ch), MGMT_GRPC_READY);
}

/* No token: no authorization header at all, and plaintext is fine. */
static void test_no_token(void **state)
{
    struct mgmt_grpc_opts o;
    char authority[32];
    struct ures u;
    (void)state;
    peer_start("default");
    opts_default(&o, authority);
    o.token = NULL;
    o.allow_insecure = false;
    chan_open_opts(&o);
    Management__CreateProxyPeerRequest rq = MANAGEMENT__CREATE_PROXY_PEER_REQUEST__INIT;
    rq.service_id = "s";
    unary(&u, "CreateProxyPeer", 5000, &rq.base,
          &management__create_proxy_peer_response__descriptor);
    RUN_UNTIL(u.done, 5000);
    assert_int_equal(u.code, MGMT_GRPC_OK);
    ures_free(&u);
    cJSON *r = rec_find("rpc", "CreateProxyPeer", 0);
    assert_non_null(r);
    assert_null(jstr(cJSON_GetObjectItem(r, "metadata"), "authorization"));
    cJSON_Delete(r);
}

/* The token over plaintext without NB_PROXY_ALLOW_INSECURE: refused locally, nothing sent. */
static void test_insecure_refused(void **state)
{
    struct mgmt_grpc_opts o;
    char authority[32];
    struct ures u;
    struct sres s;
    (void)state;
    peer_start("default");
    opts_default(&o, authority);
    o.allow_insecure = false;
    chan_open_opts(&o);

    Management__SendStatusUpdateRequest rq = MANAGEMENT__SEND_STATUS_UPDATE_REQUEST__INIT;
    unary(&u, "SendStatusUpdate", 5000, &rq.base,
          &management__send_status_update_response__descriptor);
    sstart(&s, SVC "SyncMappings", 0, S_PLAIN);
    assert_int_equal(mgmt_call_send(s.call, "", 0), NB_E_CLOSED); /* already ended */
    RUN_UNTIL(u.done && s.closed, 5000);
    assert_int_equal(u.code, MGMT_GRPC_UNAUTHENTICATED);
    assert_string_equal(u.msg, mgmt_grpc_err_insecure);
    assert_non_null(strstr(u.msg, "NB_PROXY_ALLOW_INSECURE"));
    assert_null(strstr(u.msg, TOKEN));
    assert_int_equal(s.code, MGMT_GRPC_UNAUTHENTICATED);
    run_for(300);
    assert_int_equal(rec_count("rpc", NULL), 0); /* the server saw no RPC */
    assert_int_equal(rec_count("sync-msg", NULL), 0);
    sres_free(&s);
}

/* Server-streaming GetMappingUpdate: 5 responses; the first mapping, encoded by protobufjs from
 * OUR .proto, decodes field by field. */
static void test_server_streaming(void **state)
{
    struct sres s;
    (void)state;
    peer_start("default");
    chan_open();

    Management__GetMappingUpdateRequest rq = MANAGEMENT__GET_MAPPING_UPDATE_REQUEST__INIT;
    Google__Protobuf__Timestamp ts = GOOGLE__PROTOBUF__TIMESTAMP__INIT;
    Management__ProxyCapabilities caps = MANAGEMENT__PROXY_CAPABILITIES__INIT;
    ts.seconds = 1700000000;
    ts.nanos = 123;
    caps._supports_custom_ports_case =
        MANAGEMENT__PROXY_CAPABILITIES___SUPPORTS_CUSTOM_PORTS_SUPPORTS_CUSTOM_PORTS;
    caps.supports_custom_ports = 1;
    caps._supports_private_service_case =
        MANAGEMENT__PROXY_CAPABILITIES___SUPPORTS_PRIVATE_SERVICE_SUPPORTS_PRIVATE_SERVICE;
    caps.supports_private_service = 1;
    rq.proxy_id = "netbird-proxy-test";
    rq.version = "n=5";
    rq.started_at = &ts;
    rq.address = "proxy.example.com";
    rq.capabilities = &caps;
    sstart(&s, SVC "GetMappingUpdate", 0, S_PLAIN);
    assert_int_equal(mgmt_call_send_pb(s.call, &rq.base), NB_OK);
    assert_int_equal(mgmt_call_close_send(s.call), NB_OK);
    assert_int_equal(mgmt_call_close_send(s.call), NB_E_CLOSED);
    RUN_UNTIL(s.closed, 5000);
    assert_true(s.closed);
    assert_int_equal(s.code, MGMT_GRPC_OK);
    assert_int_equal(s.nmsg, 5);

    for (int i = 0; i < 5; i++) {
        Management__GetMappingUpdateResponse *r =
            management__get_mapping_update_response__unpack(NULL, s.lens[i], s.msgs[i]);
        assert_non_null(r);
        assert_int_equal(r->n_mapping, 1);
        assert_int_equal(r->initial_sync_complete, i == 4);
        struct nb_mapping m;
        char err[128];
        assert_int_equal(mgmt_mapping_decode(r->mapping[0], &m, err, sizeof err), NB_OK);
        if (i > 0) {
            assert_int_equal(m.type, NB_UPDATE_MODIFIED);
            assert_string_equal(m.mode, "tcp");
            assert_int_equal(m.listen_port, 9000);
        } else {
            const Management__ProxyMapping *pm = r->mapping[0];
            assert_int_equal(m.type, NB_UPDATE_CREATED);
            assert_string_equal(m.id, "svc-0");
            assert_string_equal(m.account_id, "acct-1");
            assert_string_equal(m.domain, "app0.example.com");
            assert_int_equal(m.n_paths, 2);
            assert_string_equal(m.paths[0].path, "/api");
            assert_string_equal(m.paths[0].target, "http://10.0.0.5:8080/base");
            const struct nb_target_options *o = &m.paths[0].options;
            assert_true(o->skip_tls_verify);
            assert_int_equal(o->request_timeout_ms, 30001);
            assert_int_equal(o->path_rewrite, NB_PATH_REWRITE_PRESERVE);
            assert_int_equal(o->n_custom_headers, 2);
            assert_string_equal(o->custom_headers[0].name, "X-Env");
            assert_string_equal(o->custom_headers[0].value, "prod");
            assert_string_equal(o->custom_headers[1].name, "X-Team");
            assert_string_equal(o->custom_headers[1].value, "edge");
            assert_true(o->proxy_protocol);
            assert_int_equal(o->session_idle_timeout_ms, 120000);
            assert_true(o->direct_upstream);
            assert_true(o->disable_access_log);
            assert_string_equal(m.paths[1].path, "/");
            assert_string_equal(m.paths[1].target, "http://10.0.0.6:80");
            assert_string_equal(m.auth_token, "one-time-token-0");
            assert_string_equal(m.auth.session_key, "c2Vzc2lvbi1rZXk=");
            assert_int_equal(m.auth.max_session_age_seconds, 86400);
            assert_true(m.auth.password);
            assert_false(m.auth.pin);
            assert_true(m.auth.oidc);
            assert_int_equal(m.auth.n_header_auths, 1);
            assert_string_equal(m.auth.header_auths[0].header, "X-Api-Key");
            assert_true(m.pass_host_header);
            assert_true(m.rewrite_redirects);
            assert_string_equal(m.mode, "http");
            assert_int_equal(m.listen_port, 0);
            assert_true(m.private_service);
            /* fields struct nb_mapping does not carry yet: straight from protobuf-c */
            const Management__PathTargetOptions *po = pm->path[0]->options;
            assert_int_equal(po->capture_max_request_bytes, 1024);
            assert_int_equal(po->n_capture_content_types, 1);
            assert_string_equal(po->capture_content_types[0], "application/json");
            assert_true(po->agent_network);
            assert_int_equal(po->n_middlewares, 1);
            assert_string_equal(po->middlewares[0]->id, "llm_router");
            assert_true(po->middlewares[0]->enabled);
            assert_int_equal(po->middlewares[0]->slot,
                             MANAGEMENT__MIDDLEWARE_SLOT__MIDDLEWARE_SLOT_ON_REQUEST);
            assert_int_equal(po->middlewares[0]->config_json.len, 7);
            assert_memory_equal(po->middlewares[0]->config_json.data, "{\"a\":1}", 7);
            assert_int_equal(po->middlewares[0]->fail_mode,
                             MANAGEMENT__MIDDLEWARE_FAIL_MODE__FAIL_CLOSED);
            assert_int_equal(po->middlewares[0]->timeout->seconds, 2);
            assert_true(po->middlewares[0]->can_mutate);
            assert_int_equal(pm->access_restrictions->n_allowed_cidrs, 1);
            assert_string_equal(pm->access_restrictions->allowed_cidrs[0], "10.0.0.0/8");
            assert_string_equal(pm->access_restrictions->crowdsec_mode, "enforce");
        }
        nb_mapping_free(&m);
        management__get_mapping_update_response__free_unpacked(r, NULL);
    }
    sres_free(&s);

    /* what the server decoded from our request */
    cJSON *r = rec_find("rpc", "GetMappingUpdate", 0);
    assert_non_null(r);
    const cJSON *req = cJSON_GetObjectItem(r, "request");
    assert_string_equal(jstr(req, "proxy_id"), "netbird-proxy-test");
    assert_string_equal(jstr(req, "version"), "n=5");
    assert_string_equal(jstr(req, "address"), "proxy.example.com");
    const cJSON *st = cJSON_GetObjectItem(req, "started_at");
    assert_string_equal(jstr(st, "seconds"), "1700000000");
    assert_int_equal(cJSON_GetObjectItem(st, "nanos")->valueint, 123);
    const cJSON *cp = cJSON_GetObjectItem(req, "capabilities");
    assert_true(cJSON_IsTrue(cJSON_GetObjectItem(cp, "supports_custom_ports")));
    assert_true(cJSON_IsTrue(cJSON_GetObjectItem(cp, "supports_private_service")));
    /* optional fields we did not set are absent, not false */
    assert_null(cJSON_GetObjectItem(cp, "_require_subdomain"));
    assert_string_equal(jstr(cp, "_supports_custom_ports"), "supports_custom_ports");
    cJSON_Delete(r);
}

/* Bidi SyncMappings: init, then batches and acks interleaved, then the server ends OK. */
static void test_bidi_sync(void **state)
{
    struct sres s;
    (void)state;
    peer_start("default");
    chan_open();

    Management__SyncMappingsInit init = MANAGEMENT__SYNC_MAPPINGS_INIT__INIT;
    Management__SyncMappingsRequest rq = MANAGEMENT__SYNC_MAPPINGS_REQUEST__INIT;
    Google__Protobuf__Timestamp ts = GOOGLE__PROTOBUF__TIMESTAMP__INIT;
    Management__ProxyCapabilities caps = MANAGEMENT__PROXY_CAPABILITIES__INIT;
    ts.seconds = 1700000001;
    caps._require_subdomain_case =
        MANAGEMENT__PROXY_CAPABILITIES___REQUIRE_SUBDOMAIN_REQUIRE_SUBDOMAIN;
    caps.require_subdomain = 0; /* present and false */
    init.proxy_id = "netbird-proxy-sync";
    init.version = "0.1.0";
    init.started_at = &ts;
    init.address = "proxy.example.com";
    init.capabilities = &caps;
    rq.msg_case = MANAGEMENT__SYNC_MAPPINGS_REQUEST__MSG_INIT;
    rq.init = &init;
    sstart(&s, SVC "SyncMappings", 0, S_SYNC_ACK);
    assert_int_equal(mgmt_call_send_pb(s.call, &rq.base), NB_OK);
    RUN_UNTIL(s.closed, 5000);
    assert_true(s.closed);
    assert_int_equal(s.code, MGMT_GRPC_OK);
    assert_int_equal(s.nmsg, 4);
    static const size_t nm[] = {2, 1, 0, 1};
    static const bool done[] = {false, false, true, false};
    for (int i = 0; i < 4; i++) {
        Management__SyncMappingsResponse *r =
            management__sync_mappings_response__unpack(NULL, s.lens[i], s.msgs[i]);
        assert_non_null(r);
        assert_int_equal(r->n_mapping, nm[i]);
        assert_int_equal(r->initial_sync_complete, done[i]);
        if (i == 3) {
            assert_int_equal(r->mapping[0]->type,
                             MANAGEMENT__PROXY_MAPPING_UPDATE_TYPE__UPDATE_TYPE_REMOVED);
            assert_string_equal(r->mapping[0]->id, "inc1");
        }
        management__sync_mappings_response__free_unpacked(r, NULL);
    }
    sres_free(&s);

    /* the server's view: init first, then one ack per batch, all with the token */
    assert_int_equal(rec_count("sync-msg", NULL), 5);
    cJSON *m = rec_find("sync-msg", NULL, 0);
    assert_string_equal(jstr(m, "msg"), "init");
    const cJSON *ji = cJSON_GetObjectItem(m, "init");
    assert_string_equal(jstr(ji, "proxy_id"), "netbird-proxy-sync");
    assert_string_equal(jstr(ji, "version"), "0.1.0");
    assert_string_equal(jstr(ji, "address"), "proxy.example.com");
    const cJSON *cp = cJSON_GetObjectItem(ji, "capabilities");
    assert_string_equal(jstr(cp, "_require_subdomain"), "require_subdomain");
    assert_true(cJSON_IsFalse(cJSON_GetObjectItem(cp, "require_subdomain")));
    assert_string_equal(jstr(cJSON_GetObjectItem(m, "metadata"), "authorization"), "Bearer " TOKEN);
    cJSON_Delete(m);
    for (int k = 1; k <= 4; k++) {
        m = rec_find("sync-msg", NULL, k);
        assert_string_equal(jstr(m, "msg"), "ack");
        cJSON_Delete(m);
    }
}

/* A deadline: sent as grpc-timeout, enforced here as DEADLINE_EXCEEDED. */
static void test_deadline(void **state)
{
    struct ures u;
    (void)state;
    peer_start("default");
    chan_open();
    RUN_UNTIL(cs.ready, 5000);
    Management__GetOIDCURLRequest rq = MANAGEMENT__GET_OIDCURLREQUEST__INIT;
    rq.id = "svc";
    uint64_t t0 = nb_now_ms();
    unary(&u, "GetOIDCURL", 300, &rq.base, &management__get_oidcurlresponse__descriptor);
    RUN_UNTIL(u.done, 5000);
    uint64_t took = nb_now_ms() - t0;
    assert_int_equal(u.code, MGMT_GRPC_DEADLINE_EXCEEDED);
    assert_string_equal(u.msg, mgmt_grpc_err_deadline);
    assert_true(took >= 290 && took < 2000);
    assert_int_equal(rec_count("rpc", "GetOIDCURL"), 1);
    /* the channel is fine afterwards */
    Management__ValidateSessionRequest vs = MANAGEMENT__VALIDATE_SESSION_REQUEST__INIT;
    unary(&u, "ValidateSession", 5000, &vs.base,
          &management__validate_session_response__descriptor);
    RUN_UNTIL(u.done, 5000);
    assert_int_equal(u.code, MGMT_GRPC_OK);
    ures_free(&u);
}

/* Statuses from trailers: Unimplemented, an error with a percent-encoded message, success. */
static void test_statuses(void **state)
{
    struct ures u1, u2, u3, u4;
    (void)state;
    peer_start("default");
    chan_open();
    Management__CheckLLMPolicyLimitsRequest c = MANAGEMENT__CHECK_LLMPOLICY_LIMITS_REQUEST__INIT;
    Management__RecordLLMUsageRequest rl = MANAGEMENT__RECORD_LLMUSAGE_REQUEST__INIT;
    Management__AuthenticateRequest a1 = MANAGEMENT__AUTHENTICATE_REQUEST__INIT;
    Management__AuthenticateRequest a2 = MANAGEMENT__AUTHENTICATE_REQUEST__INIT;
    Management__PasswordRequest pw = MANAGEMENT__PASSWORD_REQUEST__INIT;
    a1.id = "status:7:denied: \xc3\xbcn\xc3\xaf 100% done\nnext";
    a2.id = "x";
    a2.account_id = "acct";
    a2.request_case = MANAGEMENT__AUTHENTICATE_REQUEST__REQUEST_PASSWORD;
    pw.password = "hunter2";
    a2.password = &pw;
    rl.cost_usd = 0.0125;
    rl.tokens_input = 150;
    unary(&u1, "CheckLLMPolicyLimits", 5000, &c.base,
          &management__check_llmpolicy_limits_response__descriptor);
    unary(&u2, "RecordLLMUsage", 5000, &rl.base, &management__record_llmusage_response__descriptor);
    unary(&u3, "Authenticate", 5000, &a1.base, &management__authenticate_response__descriptor);
    unary(&u4, "Authenticate", 5000, &a2.base, &management__authenticate_response__descriptor);
    RUN_UNTIL(u1.done && u2.done && u3.done && u4.done, 5000);
    assert_int_equal(u1.code, MGMT_GRPC_UNIMPLEMENTED);
    assert_int_equal(u2.code, MGMT_GRPC_UNIMPLEMENTED);
    assert_int_equal(u3.code, MGMT_GRPC_PERMISSION_DENIED);
    assert_string_equal(u3.msg, "denied: \xc3\xbcn\xc3\xaf 100% done?next");
    assert_int_equal(u4.code, MGMT_GRPC_OK);
    Management__AuthenticateResponse *ar =
        management__authenticate_response__unpack(NULL, u4.resp_len, u4.resp);
    assert_non_null(ar);
    assert_true(ar->success);
    assert_string_equal(ar->session_token, "sess-x");
    management__authenticate_response__free_unpacked(ar, NULL);
    ures_free(&u4);
    cJSON *r = rec_find("rpc", "Authenticate", 0);
    assert_non_null(r);
    if (strcmp(jstr(cJSON_GetObjectItem(r, "request"), "id"), "x") != 0) {
        cJSON_Delete(r);
        r = rec_find("rpc", "Authenticate", 1);
        assert_non_null(r);
    }
    const cJSON *req = cJSON_GetObjectItem(r, "request");
    assert_string_equal(jstr(req, "id"), "x");
    assert_string_equal(jstr(req, "request"), "password");
    assert_string_equal(jstr(cJSON_GetObjectItem(req, "password"), "password"), "hunter2");
    cJSON_Delete(r);
    struct mgmt_grpc_stats st;
    mgmt_grpc_stats(cs.ch, &st);
    assert_int_equal(st.calls_ok, 1);
    assert_int_equal(st.calls_failed, 3);
}

/* GOAWAY from grpc-js's tryShutdown(): reported, new calls refused locally, the open stream goes
 * on until forceShutdown() ends it UNAVAILABLE, then the channel fails, last. */
static void test_goaway_shutdown(void **state)
{
    struct sres s;
    struct ures u;
    (void)state;
    peer_start("goaway");
    chan_open();
    Management__SyncMappingsInit init = MANAGEMENT__SYNC_MAPPINGS_INIT__INIT;
    Management__SyncMappingsRequest rq = MANAGEMENT__SYNC_MAPPINGS_REQUEST__INIT;
    init.proxy_id = "p";
    rq.msg_case = MANAGEMENT__SYNC_MAPPINGS_REQUEST__MSG_INIT;
    rq.init = &init;
    sstart(&s, SVC "SyncMappings", 0, S_PLAIN);
    assert_int_equal(mgmt_call_send_pb(s.call, &rq.base), NB_OK);
    RUN_UNTIL(cs.goaway, 5000);
    assert_int_equal(cs.goaway, 1);
    assert_int_equal(mgmt_grpc_state(cs.ch), MGMT_GRPC_GOAWAY);
    assert_false(s.closed); /* accepted before the GOAWAY: still open */

    Management__ValidateSessionRequest vs = MANAGEMENT__VALIDATE_SESSION_REQUEST__INIT;
    unary(&u, "ValidateSession", 5000, &vs.base,
          &management__validate_session_response__descriptor);
    RUN_UNTIL(u.done, 5000);
    assert_int_equal(u.code, MGMT_GRPC_UNAVAILABLE);
    assert_non_null(strstr(u.msg, "GOAWAY"));

    RUN_UNTIL(s.closed && cs.failed, 5000);
    assert_true(s.closed);
    if (s.code != MGMT_GRPC_UNAVAILABLE)
        print_error("held stream: %s: %s\n", mgmt_grpc_code_name(s.code), s.msg);
    assert_int_equal(s.code, MGMT_GRPC_UNAVAILABLE);
    assert_int_equal(cs.failed, 1);
    assert_true(s.order < cs.failed_at); /* calls first, then the channel */
    assert_int_equal(rec_count("rpc", "ValidateSession"), 0);
    assert_int_equal(rec_count("force-shutdown", NULL), 1);
    struct mgmt_grpc_stats st;
    mgmt_grpc_stats(cs.ch, &st);
    assert_int_equal(st.goaway_last_id, 1);
    sres_free(&s);

    /* a failed channel refuses new calls (from the loop, never inline) */
    unary(&u, "ValidateSession", 0, &vs.base, &management__validate_session_response__descriptor);
    RUN_UNTIL(u.done, 1000);
    assert_int_equal(u.code, MGMT_GRPC_UNAVAILABLE);
}

/* GOAWAY grpc-js sends by itself (grpc.max_connection_age_ms): the idle channel reports it and
 * then closes, FAILED with the GOAWAY reason. */
static void test_goaway_max_age(void **state)
{
    struct ures u;
    (void)state;
    peer_start("maxage");
    chan_open();
    Management__ValidateSessionRequest vs = MANAGEMENT__VALIDATE_SESSION_REQUEST__INIT;
    unary(&u, "ValidateSession", 5000, &vs.base,
          &management__validate_session_response__descriptor);
    RUN_UNTIL(u.done, 5000);
    assert_int_equal(u.code, MGMT_GRPC_OK);
    ures_free(&u);
    RUN_UNTIL(cs.goaway && cs.failed, 5000);
    assert_int_equal(cs.goaway, 1);
    assert_int_equal(cs.failed, 1);
    assert_ptr_equal(cs.reason, mgmt_grpc_err_goaway);
}

/* Keepalive: with a 100 ms interval the server answers every PING (counted at both ends), and
 * the connection stays up with no call at all. */
static void test_keepalive_pings(void **state)
{
    struct mgmt_grpc_opts o;
    char authority[32];
    (void)state;
    peer_start("default");
    opts_default(&o, authority);
    o.keepalive_ms = 100;
    o.keepalive_timeout_ms = 1000;
    chan_open_opts(&o);
    RUN_UNTIL(cs.ready, 5000);
    run_for(1200);
    struct mgmt_grpc_stats st;
    mgmt_grpc_stats(cs.ch, &st);
    assert_true(st.pings_sent >= 5);
    assert_true(st.pings_acked + 1 >= st.pings_sent);
    int seen = rec_count("ping", NULL);
    assert_true(seen >= 5);
    assert_true((uint64_t)seen <= st.pings_sent);
    assert_int_equal(cs.failed, 0);
    assert_int_equal(mgmt_grpc_state(cs.ch), MGMT_GRPC_READY);
}

/* A server whose ping policy is stricter than our keepalive says so with GOAWAY
 * (ENHANCE_YOUR_CALM, "too_many_pings"): reported, and flagged for the owner. */
static void test_keepalive_too_many_pings(void **state)
{
    struct mgmt_grpc_opts o;
    char authority[32];
    (void)state;
    peer_start("calm");
    opts_default(&o, authority);
    o.keepalive_ms = 100;
    chan_open_opts(&o);
    RUN_UNTIL(cs.goaway && cs.failed, 5000);
    assert_int_equal(cs.ready, 1);
    assert_int_equal(cs.goaway, 1);
    assert_int_equal(cs.failed, 1);
    struct mgmt_grpc_stats st;
    mgmt_grpc_stats(cs.ch, &st);
    assert_int_equal(st.goaway_error, 0xb);
    assert_true(st.goaway_too_many_pings);
    assert_int_equal(rec_count("ping", NULL), 1);
}

/* A peer that accepts and never answers: the channel fails within keepalive + timeout, and a
 * call waiting on it ends UNAVAILABLE with that reason. */
static void test_keepalive_silent_peer(void **state)
{
    struct mgmt_grpc_opts o;
    char authority[32];
    struct ures u;
    (void)state;
    peer_start("silent");
    opts_default(&o, authority);
    o.keepalive_ms = 200;
    o.keepalive_timeout_ms = 200;
    o.connect_timeout_ms = 10000;
    uint64_t t0 = nb_now_ms();
    chan_open_opts(&o);
    Management__ValidateSessionRequest vs = MANAGEMENT__VALIDATE_SESSION_REQUEST__INIT;
    unary(&u, "ValidateSession", 0, &vs.base, &management__validate_session_response__descriptor);
    RUN_UNTIL(cs.failed, 5000);
    uint64_t took = nb_now_ms() - t0;
    assert_int_equal(cs.failed, 1);
    assert_ptr_equal(cs.reason, mgmt_grpc_err_keepalive);
    assert_true(took >= 380 && took < 2000);
    assert_int_equal(cs.ready, 0);
    assert_true(u.done);
    assert_int_equal(u.code, MGMT_GRPC_UNAVAILABLE);
    assert_string_equal(u.msg, mgmt_grpc_err_keepalive);
    assert_true(u.order < cs.failed_at);
    assert_int_equal(rec_count("accept", NULL), 1);
}

/* The 16 MiB receive cap: 17 MiB from the server fails the call RESOURCE_EXHAUSTED; the
 * channel goes on. */
static void test_cap_17mib(void **state)
{
    struct ures u;
    char dom[32];
    (void)state;
    peer_start("default");
    chan_open();
    Management__ValidateTunnelPeerRequest rq = MANAGEMENT__VALIDATE_TUNNEL_PEER_REQUEST__INIT;
    snprintf(dom, sizeof dom, "big:%u", 17u << 20);
    rq.domain = dom;
    rq.tunnel_ip = "100.64.0.1";
    unary(&u, "ValidateTunnelPeer", 20000, &rq.base,
          &management__validate_tunnel_peer_response__descriptor);
    RUN_UNTIL(u.done, 20000);
    assert_int_equal(u.code, MGMT_GRPC_RESOURCE_EXHAUSTED);
    assert_non_null(strstr(u.msg, "larger than max"));
    rq.domain = "small";
    unary(&u, "ValidateTunnelPeer", 5000, &rq.base,
          &management__validate_tunnel_peer_response__descriptor);
    RUN_UNTIL(u.done, 5000);
    assert_int_equal(u.code, MGMT_GRPC_OK);
    ures_free(&u);
}

/* Messages just under the cap, both ways. */
static void test_large_roundtrip(void **state)
{
    struct ures u;
    size_t n = (16u << 20) - 100;
    char *big = malloc(n + 1);
    (void)state;
    for (size_t i = 0; i < n; i++)
        big[i] = (char)('a' + i % 26);
    big[n] = '\0';
    peer_start("default");
    chan_open();
    Management__ValidateTunnelPeerRequest rq = MANAGEMENT__VALIDATE_TUNNEL_PEER_REQUEST__INIT;
    rq.tunnel_ip = big;
    rq.domain = "echo";
    assert_true(protobuf_c_message_get_packed_size(&rq.base) <= MGMT_GRPC_MAX_MESSAGE);
    unary(&u, "ValidateTunnelPeer", 30000, &rq.base,
          &management__validate_tunnel_peer_response__descriptor);
    RUN_UNTIL(u.done, 30000);
    assert_int_equal(u.code, MGMT_GRPC_OK);
    assert_true(u.resp_len > n && u.resp_len <= MGMT_GRPC_MAX_MESSAGE);
    Management__ValidateTunnelPeerResponse *r =
        management__validate_tunnel_peer_response__unpack(NULL, u.resp_len, u.resp);
    assert_non_null(r);
    assert_int_equal(strlen(r->session_token), n);
    assert_true(memcmp(r->session_token, big, n) == 0);
    char len[16];
    snprintf(len, sizeof len, "%zu", n);
    assert_string_equal(r->user_id, len); /* the server saw all of it */
    management__validate_tunnel_peer_response__free_unpacked(r, NULL);
    ures_free(&u);
    free(big);
}

/* What goes on the wire, seen by a raw HTTP/2 server; several messages echoed back in one
 * bidi stream, an empty one included; backpressure with on_drain. */
static void test_raw_headers_and_echo(void **state)
{
    struct sres s;
    static uint8_t chunk[64 * 1024];
    (void)state;
    peer_start("raw");
    chan_open();
    sstart(&s, "/x.Raw/Echo", 5000, S_PLAIN);
    assert_int_equal(mgmt_call_send(s.call, "one", 3), NB_OK);
    assert_int_equal(mgmt_call_send(s.call, "", 0), NB_OK);
    for (size_t i = 0; i < sizeof chunk; i++)
        chunk[i] = (uint8_t)i;
    int sent = 2;
    bool was_full = false;
    while (sent < 40) {
        if (mgmt_call_send_full(s.call)) {
            was_full = true;
            int d = s.drains;
            RUN_UNTIL(s.drains > d, 5000);
            assert_true(s.drains > d);
            continue;
        }
        assert_int_equal(mgmt_call_send(s.call, chunk, sizeof chunk), NB_OK);
        sent++;
    }
    assert_true(was_full);
    assert_int_equal(mgmt_call_close_send(s.call), NB_OK);
    assert_int_equal(mgmt_call_send(s.call, "x", 1), NB_E_CLOSED);
    RUN_UNTIL(s.closed, 10000);
    assert_int_equal(s.code, MGMT_GRPC_OK);
    assert_string_equal(s.msg, "echoed");
    assert_int_equal(s.nmsg, 40);
    assert_int_equal(s.lens[0], 3);
    assert_memory_equal(s.msgs[0], "one", 3);
    assert_int_equal(s.lens[1], 0);
    for (int i = 2; i < 40; i++) {
        assert_int_equal(s.lens[i], sizeof chunk);
        assert_memory_equal(s.msgs[i], chunk, sizeof chunk);
    }
    sres_free(&s);

    cJSON *r = rec_find("request", NULL, 0);
    const cJSON *h = cJSON_GetObjectItem(r, "headers");
    char auth[32];
    snprintf(auth, sizeof auth, "127.0.0.1:%u", peer_port);
    assert_string_equal(jstr(h, ":method"), "POST");
    assert_string_equal(jstr(h, ":scheme"), "http");
    assert_string_equal(jstr(h, ":path"), "/x.Raw/Echo");
    assert_string_equal(jstr(h, ":authority"), auth);
    assert_string_equal(jstr(h, "content-type"), "application/grpc");
    assert_string_equal(jstr(h, "te"), "trailers");
    assert_string_equal(jstr(h, "authorization"), "Bearer " TOKEN);
    assert_true(strncmp(jstr(h, "user-agent"), "nbproxy/", 8) == 0);
    const char *gt = jstr(h, "grpc-timeout");
    uint64_t ms;
    assert_non_null(gt);
    assert_int_equal(mgmt_grpc_timeout_parse(gt, strlen(gt), &ms), NB_OK);
    assert_true(ms <= 5000 && ms >= 4000);
    assert_null(jstr(h, "grpc-encoding")); /* we never compress */
    cJSON_Delete(r);
}

static bool all_closed(const struct sres *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!s[i].closed)
            return false;
    return true;
}

/* Answers that are not well-formed gRPC, all on one connection at once. */
static void test_raw_errors(void **state)
{
    static const struct {
        const char *path;
        int code;
        const char *msg; /* substring */
        int nmsg;
    } t[] = {
        /* 1 */ {"/x.Raw/NotFound", MGMT_GRPC_UNIMPLEMENTED, "HTTP status 404", 0},
        /* 2 */ {"/x.Raw/Html", MGMT_GRPC_UNKNOWN, "content-type", 0},
        /* 3 */ {"/x.Raw/NoTrailers", MGMT_GRPC_INTERNAL, "without sending trailers", 1},
        /* 4 */ {"/x.Raw/Compressed", MGMT_GRPC_INTERNAL, "compressed", 0},
        /* 5 */ {"/x.Raw/Truncated", MGMT_GRPC_INTERNAL, "inside a message", 0},
        /* 6 */ {"/x.Raw/TrailersOnly", MGMT_GRPC_NOT_FOUND, "no such service \xf0\x9f\x90\x9b", 0},
        /* 7 */ {"/x.Raw/Reset", MGMT_GRPC_UNAVAILABLE, "REFUSED_STREAM", 0},
        /* 8 */ {"/x.Raw/Other", MGMT_GRPC_UNIMPLEMENTED, "unknown raw path", 0},
    };
    enum { N = sizeof t / sizeof t[0] };
    struct sres s[N];
    (void)state;
    peer_start("raw");
    chan_open();
    for (size_t i = 0; i < N; i++) {
        sstart(&s[i], t[i].path, 5000, S_PLAIN);
        assert_int_equal(mgmt_call_send(s[i].call, "\x0a\x01Q", 3), NB_OK);
        assert_int_equal(mgmt_call_close_send(s[i].call), NB_OK);
    }
    RUN_UNTIL(all_closed(s, N), 5000);
    for (size_t i = 0; i < N; i++) {
        if (!s[i].closed || s[i].code != t[i].code || strstr(s[i].msg, t[i].msg) == NULL)
            print_error("case %zu %s: closed %d code %d (%s) msg '%s'\n", i + 1, t[i].path,
                        s[i].closed, s[i].code, mgmt_grpc_code_name(s[i].code), s[i].msg);
        assert_true(s[i].closed);
        assert_int_equal(s[i].code, t[i].code);
        assert_non_null(strstr(s[i].msg, t[i].msg));
        assert_int_equal(s[i].nmsg, t[i].nmsg);
        sres_free(&s[i]);
    }
    assert_int_equal(cs.failed, 0);
}

/* A TLS channel needs a TLS dialer; with one (here a plain one standing in for the future TLS
 * stream) :scheme is https and the token goes without NB_PROXY_ALLOW_INSECURE. */
static int plain_dial(void *ctx, const struct sockaddr *dst, const struct nb_stream_cbs *cbs,
                      void *arg, struct nb_stream **out)
{
    int *n = ctx;
    (*n)++;
    return nb_tcp_connect(loop, dst, 5000, cbs, arg, out);
}

static void test_tls_slot(void **state)
{
    struct mgmt_grpc_opts o;
    char authority[32];
    struct mgmt_grpc *ch = NULL;
    struct sres s;
    int dials = 0;
    struct nb_dialer d = {.dial = plain_dial, .ctx = &dials};
    (void)state;

    peer_start("raw");
    opts_default(&o, authority);
    o.tls = true;
    o.allow_insecure = false;
    assert_ptr_equal(mgmt_grpc_opts_check(&o), mgmt_grpc_err_tls_unavailable);
    assert_string_equal(mgmt_grpc_opts_check(&o),
                        "TLS management connections need the TLS stream (not built yet)");
    assert_int_equal(mgmt_grpc_new(loop, &o, on_state, &cs, &ch), NB_E_UNSUPPORTED);
    assert_null(ch);

    o.dialer = &d;
    assert_null(mgmt_grpc_opts_check(&o));
    chan_open_opts(&o);
    sstart(&s, "/x.Raw/Echo", 5000, S_PLAIN);
    assert_int_equal(mgmt_call_send(s.call, "hi", 2), NB_OK);
    assert_int_equal(mgmt_call_close_send(s.call), NB_OK);
    RUN_UNTIL(s.closed, 5000);
    assert_int_equal(s.code, MGMT_GRPC_OK);
    assert_int_equal(dials, 1);
    sres_free(&s);
    cJSON *r = rec_find("request", NULL, 0);
    const cJSON *h = cJSON_GetObjectItem(r, "headers");
    assert_string_equal(jstr(h, ":scheme"), "https");
    assert_string_equal(jstr(h, "authorization"), "Bearer " TOKEN);
    cJSON_Delete(r);
}

/* A host name through the resolver: "localhost" may answer ::1 first, where nobody listens;
 * the next address is tried. */
static void test_dns_host(void **state)
{
    struct mgmt_grpc_opts o;
    char authority[32];
    struct ures u;
    (void)state;
    peer_start("default");
    opts_default(&o, authority);
    memset(&o.addr, 0, sizeof o.addr);
    o.host = "localhost";
    o.port = peer_port;
    o.dns = dns;
    chan_open_opts(&o);
    Management__ValidateSessionRequest vs = MANAGEMENT__VALIDATE_SESSION_REQUEST__INIT;
    unary(&u, "ValidateSession", 5000, &vs.base,
          &management__validate_session_response__descriptor);
    RUN_UNTIL(u.done, 5000);
    assert_int_equal(u.code, MGMT_GRPC_OK);
    ures_free(&u);

    /* a name without a resolver is refused up front */
    o.dns = NULL;
    assert_non_null(mgmt_grpc_opts_check(&o));
    o.host = "127.0.0.1"; /* a literal needs none */
    assert_null(mgmt_grpc_opts_check(&o));
}

/* Nothing listening: FAILED with the stream's reason, calls UNAVAILABLE. */
static void test_connect_refused(void **state)
{
    struct ures u;
    (void)state;
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t al = sizeof a;
    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
    getsockname(fd, (struct sockaddr *)&a, &al);
    peer_port = ntohs(a.sin_port);
    close(fd); /* nobody listens there now */
    chan_open();
    Management__ValidateSessionRequest vs = MANAGEMENT__VALIDATE_SESSION_REQUEST__INIT;
    unary(&u, "ValidateSession", 5000, &vs.base,
          &management__validate_session_response__descriptor);
    RUN_UNTIL(cs.failed, 5000);
    assert_int_equal(cs.failed, 1);
    assert_non_null(cs.reason);
    assert_true(u.done);
    assert_int_equal(u.code, MGMT_GRPC_UNAVAILABLE);
    assert_string_equal(u.msg, cs.reason);
    assert_int_equal(cs.ready, 0);
}

/* Cancel: no callback, RST_STREAM reaches the server; a call cancelled before the connection
 * exists is never sent. */
static void test_cancel(void **state)
{
    struct sres s1, s2;
    (void)state;
    peer_start("default");
    chan_open();
    sstart(&s2, SVC "GetOIDCURL", 0, S_PLAIN);
    mgmt_call_cancel(s2.call); /* before connecting */
    sstart(&s1, SVC "GetOIDCURL", 0, S_PLAIN);
    Management__GetOIDCURLRequest rq = MANAGEMENT__GET_OIDCURLREQUEST__INIT;
    rq.id = "svc";
    assert_int_equal(mgmt_call_send_pb(s1.call, &rq.base), NB_OK);
    assert_int_equal(mgmt_call_close_send(s1.call), NB_OK);
    RUN_UNTIL(rec_count("rpc", "GetOIDCURL") == 1, 5000);
    mgmt_call_cancel(s1.call);
    run_for(300);
    assert_false(s1.closed);
    assert_false(s2.closed);
    assert_int_equal(rec_count("rpc", "GetOIDCURL"), 1);
    assert_int_equal(mgmt_grpc_calls_live(), 0);

    /* cancelling from inside on_message */
    Management__GetMappingUpdateRequest g = MANAGEMENT__GET_MAPPING_UPDATE_REQUEST__INIT;
    g.version = "n=10";
    sstart(&s1, SVC "GetMappingUpdate", 0, S_CANCEL_MSG);
    assert_int_equal(mgmt_call_send_pb(s1.call, &g.base), NB_OK);
    assert_int_equal(mgmt_call_close_send(s1.call), NB_OK);
    RUN_UNTIL(s1.nmsg > 0, 5000);
    run_for(200);
    assert_int_equal(s1.nmsg, 1);
    assert_false(s1.closed);
    sres_free(&s1);
    assert_int_equal(mgmt_grpc_state(cs.ch), MGMT_GRPC_READY);
}

/* A paused call gets nothing more until resumed; then all of it, in order, then the status. */
static void test_pause(void **state)
{
    struct sres s;
    (void)state;
    peer_start("default");
    chan_open();
    Management__GetMappingUpdateRequest g = MANAGEMENT__GET_MAPPING_UPDATE_REQUEST__INIT;
    g.version = "n=20";
    sstart(&s, SVC "GetMappingUpdate", 0, S_PAUSE);
    assert_int_equal(mgmt_call_send_pb(s.call, &g.base), NB_OK);
    assert_int_equal(mgmt_call_close_send(s.call), NB_OK);
    RUN_UNTIL(s.nmsg > 0, 5000);
    run_for(300);
    assert_int_equal(s.nmsg, 1);
    assert_false(s.closed); /* the status waits behind the buffered messages */
    mgmt_call_pause(s.call, false);
    RUN_UNTIL(s.closed, 5000);
    assert_int_equal(s.code, MGMT_GRPC_OK);
    assert_int_equal(s.nmsg, 20);
    for (int i = 0; i < 20; i++) {
        Management__GetMappingUpdateResponse *r =
            management__get_mapping_update_response__unpack(NULL, s.lens[i], s.msgs[i]);
        char id[16];
        snprintf(id, sizeof id, "svc-%d", i);
        assert_string_equal(r->mapping[0]->id, id);
        management__get_mapping_update_response__free_unpacked(r, NULL);
    }
    sres_free(&s);
}

/* Freeing the channel from inside a message callback: nothing more runs, nothing leaks. */
static void test_free_in_callback(void **state)
{
    struct sres s, s2;
    (void)state;
    peer_start("default");
    chan_open();
    Management__GetMappingUpdateRequest g = MANAGEMENT__GET_MAPPING_UPDATE_REQUEST__INIT;
    g.version = "n=10";
    sstart(&s, SVC "GetMappingUpdate", 0, S_FREE_CHAN);
    sstart(&s2, SVC "GetOIDCURL", 0, S_PLAIN);
    assert_int_equal(mgmt_call_send_pb(s.call, &g.base), NB_OK);
    assert_int_equal(mgmt_call_close_send(s.call), NB_OK);
    RUN_UNTIL(cs.ch == NULL, 5000);
    run_for(200);
    assert_int_equal(s.nmsg, 2);
    assert_false(s.closed);
    assert_false(s2.closed);
    assert_int_equal(cs.failed, 0);
    assert_int_equal(mgmt_grpc_calls_live(), 0);
    sres_free(&s);
}

/* Send-side limits, without a server. */
static void test_send_limits(void **state)
{
    struct sres s;
    size_t big = MGMT_GRPC_MAX_MESSAGE + 1;
    uint8_t *buf = calloc(1, big);
    (void)state;
    peer_port = 9; /* never connected: the loop does not run */
    chan_open();
    sstart(&s, SVC "SyncMappings", 0, S_PLAIN);
    assert_int_equal(mgmt_call_send(s.call, buf, big), NB_E_TOO_BIG);
    int rc, n = 0;
    while ((rc = mgmt_call_send(s.call, buf, 1u << 20)) == NB_OK)
        n++;
    assert_int_equal(rc, NB_E_AGAIN);
    assert_true(n >= 17 && n <= 19); /* 4 x 256 KiB + 16 MiB */
    assert_true(mgmt_call_send_full(s.call));
    struct mgmt_call *dummy;
    assert_int_equal(mgmt_call_start(cs.ch, "no-slash", 0, &scbs, &s, &dummy), NB_E_INVAL);
    assert_int_equal(mgmt_call_start(cs.ch, "/a b", 0, &scbs, &s, &dummy), NB_E_INVAL);
    mgmt_call_cancel(s.call);
    free(buf);
}

static void test_target_parse(void **state)
{
    static const struct {
        const char *url;
        int rc;
        const char *host;
        const char *authority;
        uint16_t port;
        bool tls;
    } t[] = {
        /* 1 */ {"https://api.netbird.io:443", NB_OK, "api.netbird.io", "api.netbird.io:443", 443,
                 true},
        /* 2 */ {"https://api.netbird.io", NB_OK, "api.netbird.io", "api.netbird.io", 443, true},
        /* 3 */ {"http://mgmt.local:33073", NB_OK, "mgmt.local", "mgmt.local:33073", 33073, false},
        /* 4 */
        {"HTTPS://Mgmt.Example:8443/path?x", NB_OK, "Mgmt.Example", "Mgmt.Example:8443", 8443,
         true},
        /* 5 */ {"grpc://10.0.0.1:80", NB_OK, "10.0.0.1", "10.0.0.1:80", 80, false},
        /* 6 */ {"http://[::1]:33073", NB_OK, "::1", "[::1]:33073", 33073, false},
        /* 7 */ {"https://[fd00::1]", NB_OK, "fd00::1", "[fd00::1]", 443, true},
        /* 8 */ {"api.netbird.io:443", NB_E_PARSE, "", "", 0, false},
        /* 9 */ {"https://", NB_E_PARSE, "", "", 0, false},
        /* 10 */ {"https://:443", NB_E_PARSE, "", "", 0, false},
        /* 11 */ {"https://host:0", NB_E_PARSE, "", "", 0, false},
        /* 12 */ {"https://host:65536", NB_E_PARSE, "", "", 0, false},
        /* 13 */ {"https://host:12a", NB_E_PARSE, "", "", 0, false},
        /* 14 */ {"https://user:pw@host", NB_E_PARSE, "", "", 0, false},
        /* 15 */ {"https://[::1", NB_E_PARSE, "", "", 0, false},
        /* 16 */ {"https://[::1]x", NB_E_PARSE, "", "", 0, false},
        /* 17 */ {"://host", NB_E_PARSE, "", "", 0, false},
        /* 18 */ {"1http://host", NB_E_PARSE, "", "", 0, false},
        /* 19 */ {"https://ho st", NB_E_PARSE, "", "", 0, false},
        /* 20 */ {"https://host:", NB_E_PARSE, "", "", 0, false},
        /* 21 */ {"https://[fe80::1%25eth0]:1", NB_E_PARSE, "", "", 0, false},
    };
    (void)state;
    for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) {
        struct mgmt_grpc_target g;
        int rc = mgmt_grpc_target_parse(t[i].url, &g);
        if (rc != t[i].rc)
            print_error("case %zu: %s -> %d\n", i + 1, t[i].url, rc);
        assert_int_equal(rc, t[i].rc);
        if (rc != NB_OK)
            continue;
        assert_string_equal(g.host, t[i].host);
        assert_string_equal(g.authority, t[i].authority);
        assert_int_equal(g.port, t[i].port);
        assert_int_equal(g.tls, t[i].tls);
    }
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    if (getenv("NB_TEST_FILTER")) /* e.g. NB_TEST_FILTER='test_bidi*' */
        cmocka_set_test_filter(getenv("NB_TEST_FILTER"));
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_target_parse),
        cmocka_unit_test_setup_teardown(test_send_limits, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unary_and_metadata, setup, teardown),
        cmocka_unit_test_setup_teardown(test_no_token, setup, teardown),
        cmocka_unit_test_setup_teardown(test_insecure_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_server_streaming, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bidi_sync, setup, teardown),
        cmocka_unit_test_setup_teardown(test_deadline, setup, teardown),
        cmocka_unit_test_setup_teardown(test_statuses, setup, teardown),
        cmocka_unit_test_setup_teardown(test_goaway_shutdown, setup, teardown),
        cmocka_unit_test_setup_teardown(test_goaway_max_age, setup, teardown),
        cmocka_unit_test_setup_teardown(test_keepalive_pings, setup, teardown),
        cmocka_unit_test_setup_teardown(test_keepalive_too_many_pings, setup, teardown),
        cmocka_unit_test_setup_teardown(test_keepalive_silent_peer, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cap_17mib, setup, teardown),
        cmocka_unit_test_setup_teardown(test_large_roundtrip, setup, teardown),
        cmocka_unit_test_setup_teardown(test_raw_headers_and_echo, setup, teardown),
        cmocka_unit_test_setup_teardown(test_raw_errors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_tls_slot, setup, teardown),
        cmocka_unit_test_setup_teardown(test_dns_host, setup, teardown),
        cmocka_unit_test_setup_teardown(test_connect_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cancel, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pause, setup, teardown),
        cmocka_unit_test_setup_teardown(test_free_in_callback, setup, teardown),
    };
    return cmocka_run_group_tests_name("mgmt_grpc", tests, group_setup, group_teardown);
}
