/* SPDX-License-Identifier: BSD-3-Clause */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "core/standalone.h"
#include "auth/restrict.h"
#include "platform/err.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define K1 "yAnz5TF+lXXJte14tji3zlMNq+hd2rYUIgJBgB3fBmk="
#define K2 "xTIBA5rboUvnH4htodjb6e697QjLERt1NAB4mZqp8Dg="
#define K3 "HIgo9xNzJMWLKASShiTqIybxZ0U3wGLiUeJ1PKf8ykw="

static const char good[] =
    "{\"accounts\":[{\"id\":\"a1\",\"wireguard\":{\"privateKey\":\"" K1 "\",\"listenPort\":51821,"
    "\"addresses\":[\"10.99.100.1/24\"],\"mtu\":1420,\"peers\":[{\"publicKey\":\"" K2 "\","
    "\"presharedKey\":\"" K3 "\",\"endpoint\":\"10.99.1.2:51820\",\"allowedIps\":"
    "[\"10.99.100.2/32\",\"fd00::2/128\"],\"persistentKeepalive\":25}]}}],"
    "\"mappings\":[{\"id\":\"svc1\",\"accountId\":\"a1\",\"mode\":\"tcp\",\"listenPort\":8080,"
    "\"path\":[{\"target\":\"10.99.100.2:8000\",\"options\":{\"sessionIdleTimeout\":\"60s\","
    "\"requestTimeout\":\"2.5s\",\"customHeaders\":{\"X-A\":\"b\"}}}]}]}";

static void test_good_config(void **state)
{
    struct nb_standalone s;
    char err[256] = "";
    int rc = nb_standalone_parse(good, strlen(good), NULL, &s, err, sizeof err);
    if (rc != NB_OK)
        fail_msg("parse failed: %s", err);
    assert_int_equal(s.n_accounts, 1);
    struct nb_account_conf *a = &s.accounts[0];
    assert_string_equal(a->id, "a1");
    assert_int_equal(a->listen_port, 51821);
    assert_int_equal(a->mtu, 1420);
    assert_int_equal(a->n_addresses, 1);
    assert_int_equal(a->addresses[0].len, 24);
    assert_int_equal(a->n_peers, 1);
    assert_true(a->peers[0].has_psk);
    assert_true(a->peers[0].has_endpoint);
    assert_int_equal(a->peers[0].n_allowed_ips, 2);
    assert_int_equal(a->peers[0].allowed_ips[1].family, AF_INET6);
    assert_int_equal(a->peers[0].persistent_keepalive, 25);
    assert_int_equal(s.n_mappings, 1);
    struct nb_mapping *m = &s.mappings[0];
    assert_int_equal(nb_mapping_mode(m), NB_MODE_TCP);
    assert_int_equal(m->listen_port, 8080);
    assert_string_equal(m->paths[0].target, "10.99.100.2:8000");
    assert_int_equal(m->paths[0].options.session_idle_timeout_ms, 60000);
    assert_int_equal(m->paths[0].options.request_timeout_ms, 2500);
    assert_int_equal(m->paths[0].options.n_custom_headers, 1);
    assert_null(m->restrictions); /* none configured */
    nb_standalone_free(&s);
}

static void test_restrictions(void **state)
{
    static const char json[] =
        "{\"accounts\":[{\"id\":\"a1\",\"wireguard\":{\"privateKey\":\"" K1 "\","
        "\"addresses\":[\"10.99.100.1/24\"]}}],"
        "\"mappings\":[{\"id\":\"s\",\"accountId\":\"a1\",\"mode\":\"tcp\",\"listenPort\":81,"
        "\"accessRestrictions\":{\"allowedCidrs\":[\"10.1.2.3/8\"],\"blocked_cidrs\":[\"10.9.0.0/"
        "16\"],"
        "\"allowedCountries\":[\"de\"],\"blockedCountries\":[],\"crowdsecMode\":\"observe\"},"
        "\"path\":[{\"target\":\"10.99.100.2:80\"}]}]}";
    struct nb_standalone s;
    char err[256] = "", buf[64];
    (void)state;
    int rc = nb_standalone_parse(json, strlen(json), NULL, &s, err, sizeof err);
    if (rc != NB_OK)
        fail_msg("parse failed: %s", err);
    const struct auth_restrict *f = s.mappings[0].restrictions;
    assert_non_null(f);
    assert_string_equal(auth_restrict_cidr_str(f, false, 0, buf, sizeof buf), "10.0.0.0/8");
    assert_string_equal(auth_restrict_cidr_str(f, true, 0, buf, sizeof buf), "10.9.0.0/16");
    assert_true(auth_restrict_has_country_rules(f));
    assert_int_equal(auth_restrict_crowdsec_mode(f), AUTH_CROWDSEC_OBSERVE);
    nb_standalone_free(&s);
}

static void test_wgquick_file(void **state)
{
    char dir[] = "/tmp/nbtest.XXXXXX";
    assert_non_null(mkdtemp(dir));
    char path[256];
    snprintf(path, sizeof path, "%s/wg0.conf", dir);
    FILE *f = fopen(path, "w");
    fprintf(f,
            "# comment\n[Interface]\nPrivateKey = %s\nListenPort = 51000\n"
            "Address = 10.99.100.1/24, fd00::1/64\nDNS = 1.1.1.1\n\n[Peer]\n"
            "PublicKey = %s\nAllowedIPs = 10.99.100.2/32\nEndpoint = [::1]:51820\n"
            "PersistentKeepalive = 25\n",
            K1, K2);
    fclose(f);
    char json[512];
    snprintf(json, sizeof json,
             "{\"accounts\":[{\"id\":\"x\",\"wireguard\":\"wg0.conf\"}],\"mappings\":[]}");
    struct nb_standalone s;
    char err[256] = "";
    int rc = nb_standalone_parse(json, strlen(json), dir, &s, err, sizeof err);
    if (rc != NB_OK)
        fail_msg("parse failed: %s", err);
    assert_int_equal(s.accounts[0].listen_port, 51000);
    assert_int_equal(s.accounts[0].n_addresses, 2);
    assert_int_equal(s.accounts[0].n_peers, 1);
    assert_true(s.accounts[0].peers[0].has_endpoint);
    assert_int_equal(s.accounts[0].peers[0].endpoint.ss_family, AF_INET6);
    nb_standalone_free(&s);
    unlink(path);
    rmdir(dir);
}

/* Each bad file must fail and name the field. */
static void test_bad_configs_name_the_field(void **state)
{
    static const struct {
        const char *json;
        const char *want;
    } cases[] = {
        {"[", "not valid JSON"},
        /* accessRestrictions: stricter than management (an invalid CIDR is an error here) */
        {"{\"mappings\":[{\"id\":\"m\",\"accountId\":\"a\",\"mode\":\"tcp\",\"listenPort\":81,"
         "\"accessRestrictions\":{\"blockedCidrs\":[\"10.0.0.0/8\",\"1.2.3.4\"]},"
         "\"path\":[{\"target\":\"1.2.3.4:80\"}]}]}",
         "mappings[0].accessRestrictions: 1 CIDR(s) are not IP prefixes"},
        {"{\"mappings\":[{\"id\":\"m\",\"accountId\":\"a\",\"mode\":\"tcp\",\"listenPort\":81,"
         "\"accessRestrictions\":{\"crowdsecMode\":\"ban\"},"
         "\"path\":[{\"target\":\"1.2.3.4:80\"}]}]}",
         "mappings[0].accessRestrictions.crowdsecMode: must be"},
        {"{\"mappings\":[{\"id\":\"m\",\"accountId\":\"a\",\"mode\":\"tcp\",\"listenPort\":81,"
         "\"accessRestrictions\":{\"allowedCountries\":\"DE\"},"
         "\"path\":[{\"target\":\"1.2.3.4:80\"}]}]}",
         "mappings[0].accessRestrictions.allowedCountries: must be a list of strings"},
        {"{\"mappings\":[{\"id\":\"m\",\"accountId\":\"a\",\"mode\":\"tcp\",\"listenPort\":81,"
         "\"accessRestrictions\":{\"allowCidrs\":[]},"
         "\"path\":[{\"target\":\"1.2.3.4:80\"}]}]}",
         "mappings[0].accessRestrictions.allowCidrs: unknown field"},
        {"[]", "top level must be an object"},
        {"{\"acounts\":[]}", "config.acounts: unknown field"},
        {"{\"accounts\":[{\"id\":\"a\",\"wireguard\":{\"privateKey\":\"short\","
         "\"addresses\":[\"10.0.0.1/24\"]}}]}",
         "accounts[0].wireguard.privateKey"},
        {"{\"accounts\":[{\"id\":\"a\",\"wireguard\":{\"privateKey\":\"" K1 "\"}}]}",
         "accounts[0].wireguard.addresses"},
        {"{\"accounts\":[{\"id\":\"a\",\"wireguard\":{\"privateKey\":\"" K1 "\","
         "\"addresses\":[\"10.0.0.1/33\"]}}]}",
         "accounts[0].wireguard.addresses[0]"},
        {"{\"accounts\":[{\"id\":\"a\",\"wireguard\":{\"privateKey\":\"" K1 "\","
         "\"addresses\":[\"10.0.0.1/24\"],\"listenPort\":\"x\"}}]}",
         "accounts[0].wireguard.listenPort: must be an integer"},
        {"{\"accounts\":[{\"id\":\"a\",\"wireguard\":{\"privateKey\":\"" K1 "\","
         "\"addresses\":[\"10.0.0.1/24\"],\"peers\":[{\"publicKey\":\"" K2 "\","
         "\"endpoint\":\"nohost\"}]}}]}",
         "accounts[0].wireguard.peers[0].endpoint"},
        {"{\"accounts\":[{\"id\":\"a\",\"wireguard\":{\"privateKey\":\"" K1 "\","
         "\"addresses\":[\"10.0.0.1/24\"]}},{\"id\":\"a\",\"wireguard\":{\"privateKey\":\"" K1
         "\",\"addresses\":[\"10.0.0.1/24\"]}}]}",
         "accounts[1].id: duplicate account"},
        {"{\"accounts\":[],\"mappings\":[{\"id\":\"m\",\"accountId\":\"nope\",\"mode\":\"tcp\","
         "\"listenPort\":81,\"path\":[{\"target\":\"1.2.3.4:80\"}]}]}",
         "mappings[0].accountId: unknown account"},
        {"{\"mappings\":[{\"id\":\"m\",\"accountId\":\"a\",\"mode\":\"tcp\",\"listenPort\":-1,"
         "\"path\":[{\"target\":\"1.2.3.4:80\"}]}]}",
         "mappings[0].listenPort: must be 0..65535"},
        {"{\"mappings\":[{\"id\":\"m\",\"accountId\":\"a\",\"mode\":\"tls\",\"listenPort\":0,"
         "\"path\":[{\"target\":\"1.2.3.4:443\"}]}]}",
         "mappings[0].domain: required for tls mappings"},
        {"{\"mappings\":[{\"id\":\"m\",\"accountId\":\"a\",\"mode\":\"tcp\",\"listenPort\":81,"
         "\"path\":[{\"target\":\"\"}]}]}",
         "mappings[0].path[0].target: empty target address"},
        {"{\"mappings\":[{\"id\":\"m\",\"accountId\":\"a\",\"mode\":\"tcp\",\"listenPort\":81,"
         "\"path\":[{\"target\":\"1.2.3.4:80\",\"options\":{\"requestTimeout\":5}}]}]}",
         "mappings[0].path[0].options.requestTimeout"},
        {"{\"mappings\":[{\"id\":\"m\",\"accountId\":\"a\",\"mode\":\"udp\",\"listenPort\":0,"
         "\"path\":[{\"target\":\"1.2.3.4:80\"}]}]}",
         "mappings[0].listenPort: must be 1..65535 for mode udp"},
        {"{\"mappings\":[{\"id\":\"m\",\"accountId\":\"a\",\"mode\":\"udp\",\"listenPort\":81,"
         "\"path\":[{\"target\":\"example:80\"}]}]}",
         "mappings[0].path[0].target: \"example:80\" is not ip:port"},
        {"{\"accounts\":[{\"id\":\"a\",\"wireguard\":{\"privateKey\":\"" K1 "\","
         "\"addresses\":[\"10.0.0.1/24\"]}}],\"mappings\":[{\"id\":\"m\",\"accountId\":\"a\","
         "\"mode\":\"tcp\",\"listenPort\":81,\"path\":[{\"target\":\"1.2.3.4:80\"}]},{\"id\":"
         "\"n\",\"accountId\":\"a\",\"mode\":\"tcp\",\"listenPort\":81,\"path\":[{\"target\":"
         "\"1.2.3.4:80\"}]}]}",
         "mappings[1].listenPort: duplicate port 81"},
        {"{\"accounts\":[{\"id\":\"a\",\"wireguard\":\"/nonexistent/wg.conf\"}]}",
         "accounts[0].wireguard: cannot read /nonexistent/wg.conf"},
        /* HTTP mappings */
        {"{\"mappings\":[{\"id\":\"h\",\"accountId\":\"a\",\"path\":[{\"target\":"
         "\"http://1.2.3.4/\"}]}]}",
         "mappings[0].domain: required for HTTP mappings"},
        {"{\"mappings\":[{\"id\":\"h\",\"accountId\":\"a\",\"domain\":\"a.example\","
         "\"path\":[{\"path\":\"/\",\"target\":\"ftp://1.2.3.4/\"}]}]}",
         "mappings[0].path[0].target: \"ftp://1.2.3.4/\""},
        {"{\"accounts\":[{\"id\":\"a\",\"wireguard\":{\"privateKey\":\"" K1 "\","
         "\"addresses\":[\"10.0.0.1/24\"]}}],\"mappings\":[{\"id\":\"m\",\"accountId\":\"a\","
         "\"domain\":\"a.example\",\"path\":[{\"target\":\"http://1.2.3.4/\"}]},{\"id\":"
         "\"n\",\"accountId\":\"a\",\"mode\":\"http\",\"domain\":\"a.example\",\"path\":"
         "[{\"target\":\"http://1.2.3.5/\"}]}]}",
         "mappings[1].domain: duplicate domain \"a.example\""},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct nb_standalone s;
        char err[512] = "";
        int rc =
            nb_standalone_parse(cases[i].json, strlen(cases[i].json), NULL, &s, err, sizeof err);
        if (rc == NB_OK) {
            nb_standalone_free(&s);
            fail_msg("case %zu parsed but should fail (%s)", i, cases[i].want);
        }
        if (strstr(err, cases[i].want) == NULL)
            fail_msg("case %zu: error \"%s\" does not contain \"%s\"", i, err, cases[i].want);
        /* Nothing half-built remains after a failure. */
        assert_null(s.accounts);
        assert_null(s.mappings);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_good_config),
        cmocka_unit_test(test_restrictions),
        cmocka_unit_test(test_wgquick_file),
        cmocka_unit_test(test_bad_configs_name_the_field),
    };
    return cmocka_run_group_tests_name("core/standalone", tests, NULL, NULL);
}
