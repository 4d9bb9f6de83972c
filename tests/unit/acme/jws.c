/* SPDX-License-Identifier: BSD-3-Clause */
/* acme/jws.c and acme/certgen.c: JWK and thumbprint of RFC 7515 A.3's P-256 key (vector computed
 * with Python's hashlib), ES256 signatures verified by `openssl dgst -verify`, EAB HS256 against a
 * vector computed with Python's hmac, the key authorization, the CSR and the tls-alpn-01
 * certificate read back by `openssl req` / `openssl x509`. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "acme/certgen.h"
#include "acme/jws.h"
#include "platform/err.h"

#include <cjson/cJSON.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <wolfssl/wolfcrypt/asn_public.h>
#include <wolfssl/wolfcrypt/sha256.h>

static const uint8_t kx[32] = {0x7f, 0xcd, 0xce, 0x27, 0x70, 0xf6, 0xc4, 0x5d, 0x41, 0x83, 0xcb,
                               0xee, 0x6f, 0xdb, 0x4b, 0x7b, 0x58, 0x07, 0x33, 0x35, 0x7b, 0xe9,
                               0xef, 0x13, 0xba, 0xcf, 0x6e, 0x3c, 0x7b, 0xd1, 0x54, 0x45};
static const uint8_t ky[32] = {0xc7, 0xf1, 0x44, 0xcd, 0x1b, 0xbd, 0x9b, 0x7e, 0x87, 0x2c, 0xdf,
                               0xed, 0xb9, 0xee, 0xb9, 0xf4, 0xb3, 0x69, 0x5d, 0x6e, 0xa9, 0x0b,
                               0x24, 0xad, 0x8a, 0x46, 0x23, 0x28, 0x85, 0x88, 0xe5, 0xad};
static const uint8_t kd[32] = {0x8e, 0x9b, 0x10, 0x9e, 0x71, 0x90, 0x98, 0xbf, 0x98, 0x04, 0x87,
                               0xdf, 0x1f, 0x5d, 0x77, 0xe9, 0xcb, 0x29, 0x60, 0x6e, 0xbe, 0xd2,
                               0x26, 0x3b, 0x5f, 0x57, 0xc2, 0x13, 0xdf, 0x84, 0xf4, 0xb2};

static char tmpdir[64];

static int setup(void **st)
{
    strcpy(tmpdir, "/tmp/nbt-acme-jws.XXXXXX");
    assert_non_null(mkdtemp(tmpdir));
    return 0;
}

static int teardown(void **st)
{
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", tmpdir);
    return system(cmd) == 0 ? 0 : -1;
}

static void write_file(const char *name, const void *d, size_t n)
{
    char p[128];
    snprintf(p, sizeof p, "%s/%s", tmpdir, name);
    FILE *f = fopen(p, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(d, 1, n, f), n);
    fclose(f);
}

static int run(const char *fmt)
{
    char cmd[1024];
    snprintf(cmd, sizeof cmd, fmt, tmpdir, tmpdir, tmpdir, tmpdir);
    return system(cmd);
}

static void test_jwk_thumbprint(void **st)
{
    struct acme_key k;
    assert_int_equal(acme_key_from_raw(&k, kx, ky, kd), NB_OK);
    char jwk[160];
    assert_true(acme_jwk(&k, jwk, sizeof jwk) > 0);
    assert_string_equal(jwk, "{\"crv\":\"P-256\",\"kty\":\"EC\",\"x\":"
                             "\"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU\",\"y\":"
                             "\"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0\"}");
    char tp[44];
    assert_int_equal(acme_thumbprint(&k, tp), NB_OK);
    assert_string_equal(tp, "oKIywvGUpTVTyxMQ3bwIIeQUudfr_CkLMjCE19ECD-U");
    char ka[200];
    assert_int_equal(acme_key_authorization(&k, "tok_EN-1", ka, sizeof ka), 52);
    assert_string_equal(ka, "tok_EN-1.oKIywvGUpTVTyxMQ3bwIIeQUudfr_CkLMjCE19ECD-U");
    assert_int_equal(acme_key_authorization(&k, "", ka, sizeof ka), 0);
    assert_int_equal(acme_key_authorization(&k, "tok", ka, 20), 0); /* too small */
    /* a key too small for the JWK buffer */
    assert_int_equal(acme_jwk(&k, jwk, 50), 0);
    acme_key_free(&k);
}

static void test_key_pem_roundtrip(void **st)
{
    struct acme_key k, k2;
    assert_int_equal(acme_key_generate(&k), NB_OK);
    char *pem;
    size_t len;
    assert_int_equal(acme_key_to_pem(&k, &pem, &len), NB_OK);
    assert_non_null(strstr(pem, "-----BEGIN EC PRIVATE KEY-----"));
    assert_int_equal(acme_key_from_pem(&k2, pem, len), NB_OK);
    char t1[44], t2[44];
    assert_int_equal(acme_thumbprint(&k, t1), NB_OK);
    assert_int_equal(acme_thumbprint(&k2, t2), NB_OK);
    assert_string_equal(t1, t2);
    /* openssl reads it as a P-256 key */
    write_file("k.pem", pem, len);
    assert_int_equal(run("openssl ec -in %s/k.pem -noout -text 2>/dev/null | grep -q prime256v1"),
                     0);
    /* PKCS#8 written by openssl is read too */
    assert_int_equal(run("openssl pkcs8 -topk8 -nocrypt -in %s/k.pem -out %s/k8.pem"), 0);
    char p[128];
    snprintf(p, sizeof p, "%s/k8.pem", tmpdir);
    FILE *f = fopen(p, "rb");
    char buf[1024];
    size_t n = fread(buf, 1, sizeof buf, f);
    fclose(f);
    struct acme_key k3;
    assert_int_equal(acme_key_from_pem(&k3, buf, n), NB_OK);
    assert_int_equal(acme_thumbprint(&k3, t2), NB_OK);
    assert_string_equal(t1, t2);
    acme_key_free(&k3);
    acme_pem_free(pem, len);
    /* garbage and an RSA key are refused */
    assert_int_equal(acme_key_from_pem(&k3, "nope", 4), NB_E_PARSE);
    assert_int_equal(run("openssl genrsa -out %s/r.pem 2048 2>/dev/null"), 0);
    snprintf(p, sizeof p, "%s/r.pem", tmpdir);
    f = fopen(p, "rb");
    n = fread(buf, 1, sizeof buf, f);
    fclose(f);
    char big[4096];
    memcpy(big, buf, n);
    assert_int_not_equal(acme_key_from_pem(&k3, big, n), NB_OK);
    acme_key_free(&k);
    acme_key_free(&k2);
}

static char *b64_decode_str(const char *s, size_t *n)
{
    char *o = malloc(strlen(s) + 4);
    assert_non_null(o);
    long l = acme_b64url_decode((uint8_t *)o, strlen(s) + 4, s);
    assert_true(l >= 0);
    o[l] = '\0';
    *n = (size_t)l;
    return o;
}

/* Checks a JWS: header fields, payload, and the ES256 signature with openssl. */
static void check_jws(struct acme_key *k, const char *jws, const char *kid, const char *payload)
{
    cJSON *j = cJSON_Parse(jws);
    assert_non_null(j);
    const char *p64 = cJSON_GetObjectItem(j, "protected")->valuestring;
    const char *l64 = cJSON_GetObjectItem(j, "payload")->valuestring;
    const char *s64 = cJSON_GetObjectItem(j, "signature")->valuestring;
    size_t n;
    char *prot = b64_decode_str(p64, &n);
    cJSON *h = cJSON_Parse(prot);
    assert_non_null(h);
    assert_string_equal(cJSON_GetObjectItem(h, "alg")->valuestring, "ES256");
    assert_string_equal(cJSON_GetObjectItem(h, "nonce")->valuestring, "n0nce");
    assert_string_equal(cJSON_GetObjectItem(h, "url")->valuestring, "https://ca.test/x");
    if (kid) {
        assert_string_equal(cJSON_GetObjectItem(h, "kid")->valuestring, kid);
        assert_null(cJSON_GetObjectItem(h, "jwk"));
    } else {
        cJSON *jwk = cJSON_GetObjectItem(h, "jwk");
        assert_non_null(jwk);
        assert_null(cJSON_GetObjectItem(h, "kid"));
        assert_string_equal(cJSON_GetObjectItem(jwk, "kty")->valuestring, "EC");
    }
    char *pl = b64_decode_str(l64, &n);
    assert_string_equal(pl, payload ? payload : "");
    /* r || s -> DER for openssl */
    uint8_t rs[64];
    assert_int_equal(acme_b64url_decode(rs, sizeof rs, s64), 64);
    uint8_t der[80];
    word32 dl = sizeof der;
    assert_int_equal(wc_ecc_rs_raw_to_sig(rs, 32, rs + 32, 32, der, &dl), 0);
    write_file("sig.der", der, dl);
    char in[4096];
    int il = snprintf(in, sizeof in, "%s.%s", p64, l64);
    write_file("in.txt", in, (size_t)il);
    uint8_t pub[128];
    int pl2 = wc_EccPublicKeyToDer(&k->k, pub, sizeof pub, 1);
    assert_true(pl2 > 0);
    write_file("pub.der", pub, (size_t)pl2);
    assert_int_equal(run("openssl dgst -sha256 -keyform DER -verify %s/pub.der -signature "
                         "%s/sig.der %s/in.txt >/dev/null"),
                     0);
    /* a tampered input fails (the check can fail) */
    in[0] ^= 1;
    write_file("in.txt", in, (size_t)il);
    assert_int_not_equal(run("openssl dgst -sha256 -keyform DER -verify %s/pub.der -signature "
                             "%s/sig.der %s/in.txt >/dev/null 2>&1"),
                         0);
    free(pl);
    cJSON_Delete(h);
    free(prot);
    cJSON_Delete(j);
}

static void test_jws_es256(void **st)
{
    struct acme_key k;
    assert_int_equal(acme_key_generate(&k), NB_OK);
    for (int i = 0; i < 8; i++) { /* several signatures: r or s with leading zeros are padded */
        char *j =
            acme_jws(&k, NULL, "n0nce", "https://ca.test/x", "{\"termsOfServiceAgreed\":true}");
        assert_non_null(j);
        check_jws(&k, j, NULL, "{\"termsOfServiceAgreed\":true}");
        free(j);
    }
    char *j = acme_jws(&k, "https://ca.test/acct/1", "n0nce", "https://ca.test/x", NULL);
    assert_non_null(j);
    check_jws(&k, j, "https://ca.test/acct/1", NULL);
    free(j);
    /* a nonce with a quote is escaped, not injected */
    j = acme_jws(&k, "k\"id", "n0nce", "https://ca.test/x", "{}");
    assert_non_null(j);
    cJSON *parsed = cJSON_Parse(j);
    assert_non_null(parsed);
    cJSON_Delete(parsed);
    free(j);
    assert_null(acme_jws(&k, NULL, NULL, "https://ca.test/x", "{}"));
    acme_key_free(&k);
}

static void test_eab(void **st)
{
    struct acme_key k;
    assert_int_equal(acme_key_from_raw(&k, kx, ky, kd), NB_OK);
    uint8_t mac[64];
    long ml = acme_b64url_decode(
        mac, sizeof mac, "zWNDZM6eQGHWpSRTPal5eIUYFTu7EajVIoguysqZ9wG44nMEtx3MUAsUDkMTQ12W");
    assert_int_equal(ml, 48);
    char *e = acme_eab(&k, "kid-1", mac, (size_t)ml, "https://ca.test/new-acct");
    assert_non_null(e);
    assert_string_equal(
        e,
        "{\"protected\":\"eyJhbGciOiJIUzI1NiIsImtpZCI6ImtpZC0xIiwidXJsIjoiaHR0cHM6Ly9jYS50ZXN0L25"
        "ldy1hY2N0In0\",\"payload\":\"eyJjcnYiOiJQLTI1NiIsImt0eSI6IkVDIiwieCI6ImY4M09KM0QyeEYxQm"
        "c4dnViOXRMZTFnSE16Vjc2ZThUdXM5dVBIdlJWRVUiLCJ5IjoieF9GRXpSdTltMzZITE5fdHVlNjU5TE5wWFc2"
        "cEN5U3Rpa1lqS0lXSTVhMCJ9\",\"signature\":"
        "\"OlNc9nEZxwul8mQbQseS1P33JPKY9ITnixPoMclq0Cw\"}");
    free(e);
    assert_null(acme_eab(&k, "kid-1", mac, 0, "https://ca.test/new-acct"));
    /* padded or non-URL-safe base64 is refused (Go's RawURLEncoding) */
    assert_int_equal(acme_b64url_decode(mac, sizeof mac, "YQ=="), -1);
    assert_int_equal(acme_b64url_decode(mac, sizeof mac, "a+b/"), -1);
    acme_key_free(&k);
}

static void test_csr(void **st)
{
    struct acme_key k;
    assert_int_equal(acme_key_generate(&k), NB_OK);
    uint8_t der[2048];
    size_t n = acme_csr_der(&k, "www.example.test", der, sizeof der);
    assert_true(n > 0);
    write_file("csr.der", der, n);
    assert_int_equal(run("openssl req -inform DER -in %s/csr.der -noout -verify 2>/dev/null"), 0);
    assert_int_equal(run("openssl req -inform DER -in %s/csr.der -noout -text | grep -q "
                         "'DNS:www.example.test'"),
                     0);
    assert_int_equal(acme_csr_der(&k, "", der, sizeof der), 0);
    assert_int_equal(acme_csr_der(&k, "www.example.test", der, 10), 0);
    acme_key_free(&k);
}

static void test_alpn_cert(void **st)
{
    char *c, *kp;
    size_t cl, kl;
    const char *ka = "tok.oKIywvGUpTVTyxMQ3bwIIeQUudfr_CkLMjCE19ECD-U";
    assert_int_equal(
        acme_alpn_cert_pem("a.example.test", ka, (int64_t)time(NULL), &c, &cl, &kp, &kl), NB_OK);
    write_file("alpn.pem", c, cl);
    write_file("alpnkey.pem", kp, kl);
    /* self-signed signature good (openssl verify stops only at the critical extension) */
    assert_int_equal(run("openssl verify -CAfile %s/alpn.pem %s/alpn.pem 2>&1 | grep -q "
                         "'unhandled critical extension'"),
                     0);
    assert_int_equal(run("openssl x509 -in %s/alpn.pem -noout -text > %s/alpn.txt"), 0);
    assert_int_equal(run("grep -q 'DNS:a.example.test' %s/alpn.txt"), 0);
    assert_int_equal(run("grep -q '1.3.6.1.5.5.7.1.31: critical' %s/alpn.txt"), 0);
    /* the extension's value is OCTET STRING(SHA-256(key authorization)) */
    uint8_t h[32];
    assert_int_equal(wc_Sha256Hash((const byte *)ka, (word32)strlen(ka), h), 0);
    char want[80] = "0420";
    for (int i = 0; i < 32; i++)
        sprintf(want + 4 + 2 * i, "%02X", h[i]);
    char cmd[512];
    snprintf(cmd, sizeof cmd,
             "openssl asn1parse -in %%s/alpn.pem | grep -A2 '1.3.6.1.5.5.7.1.31' | grep -q "
             "'OCTET STRING *\\[HEX DUMP\\]:%s$'",
             want);
    assert_int_equal(run(cmd), 0);
    /* the key matches the certificate */
    assert_int_equal(run("test \"$(openssl x509 -in %s/alpn.pem -noout -pubkey)\" = \"$(openssl "
                         "ec -in %s/alpnkey.pem -pubout 2>/dev/null)\""),
                     0);
    free(c);
    acme_pem_free(kp, kl);
    assert_int_equal(acme_alpn_cert_pem("", ka, 0, &c, &cl, &kp, &kl), NB_E_INVAL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_jwk_thumbprint),
        cmocka_unit_test(test_key_pem_roundtrip),
        cmocka_unit_test(test_jws_es256),
        cmocka_unit_test(test_eab),
        cmocka_unit_test(test_csr),
        cmocka_unit_test(test_alpn_cert),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
