/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * core/acme_link: the per-domain reference count between HTTP mappings and the ACME manager.
 * The link drives a recording nb_acme_link_ops instead of a manager: each test applies mappings
 * (CREATED / MODIFIED / REMOVED) and checks which domains were registered and dropped.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "core/acme_link.h"
#include "core/mapping.h"
#include "platform/err.h"

#include <stdbool.h>
#include <stdio.h>
#include <string.h>

/* The manager's view: registered domains, and the log of calls. */
static char registered[8][256];
static int n_registered;
static char calls[64][300];
static int n_calls;
static const char *wildcard_suffix; /* covered() says yes for names ending with it */

static int find(const char *d)
{
    for (int i = 0; i < n_registered; i++)
        if (strcmp(registered[i], d) == 0)
            return i;
    return -1;
}

static int op_add(void *arg, const char *d)
{
    (void)arg;
    snprintf(calls[n_calls++], sizeof calls[0], "add %s", d);
    if (find(d) >= 0)
        return NB_E_EXISTS;
    snprintf(registered[n_registered++], sizeof registered[0], "%s", d);
    return NB_OK;
}

static void op_remove(void *arg, const char *d)
{
    (void)arg;
    snprintf(calls[n_calls++], sizeof calls[0], "remove %s", d);
    int i = find(d);
    if (i >= 0)
        memcpy(registered[i], registered[--n_registered], sizeof registered[0]);
}

static bool op_covered(void *arg, const char *d)
{
    (void)arg;
    size_t n = strlen(d), k = wildcard_suffix ? strlen(wildcard_suffix) : 0;
    return k && n > k && strcmp(d + n - k, wildcard_suffix) == 0;
}

static struct nb_acme_link *new_link(void)
{
    n_registered = n_calls = 0;
    wildcard_suffix = NULL;
    struct nb_acme_link_ops ops = {op_add, op_remove, op_covered, NULL};
    struct nb_acme_link *l = nb_acme_link_new_ops(&ops);
    assert_non_null(l);
    return l;
}

static void apply(struct nb_acme_link *l, enum nb_update_type type, const char *id,
                  const char *domain, const char *mode)
{
    struct nb_mapping m = {.type = type,
                           .id = (char *)id,
                           .domain = (char *)domain,
                           .mode = (char *)(mode ? mode : "http")};
    nb_acme_link_mapping(l, &m);
}

static void two_services_one_domain(void **state)
{
    (void)state;
    struct nb_acme_link *l = new_link();
    apply(l, NB_UPDATE_CREATED, "a", "shared.example.com", NULL);
    apply(l, NB_UPDATE_CREATED, "b", "Shared.Example.com:8443", NULL); /* same ACME name */
    assert_int_equal(n_calls, 1);                                      /* registered once */
    assert_string_equal(calls[0], "add shared.example.com");
    apply(l, NB_UPDATE_REMOVED, "a", "shared.example.com", NULL);
    assert_int_equal(n_calls, 1); /* b still holds it */
    assert_int_equal(find("shared.example.com"), 0);
    apply(l, NB_UPDATE_REMOVED, "a", "shared.example.com", NULL); /* twice: no effect */
    assert_int_equal(n_calls, 1);
    apply(l, NB_UPDATE_REMOVED, "b", "shared.example.com", NULL);
    assert_int_equal(n_calls, 2);
    assert_string_equal(calls[1], "remove shared.example.com");
    assert_int_equal(n_registered, 0);
    /* Registered again from zero. */
    apply(l, NB_UPDATE_CREATED, "c", "shared.example.com", NULL);
    assert_int_equal(n_calls, 3);
    assert_string_equal(calls[2], "add shared.example.com");
    nb_acme_link_free(l);
}

static void modified_domain(void **state)
{
    (void)state;
    struct nb_acme_link *l = new_link();
    apply(l, NB_UPDATE_CREATED, "a", "old.example.com", NULL);
    apply(l, NB_UPDATE_CREATED, "b", "keep.example.com", NULL);
    /* The same domain again (a MODIFIED that changed something else): nothing happens. */
    apply(l, NB_UPDATE_MODIFIED, "a", "old.example.com", NULL);
    assert_int_equal(n_calls, 2);
    apply(l, NB_UPDATE_MODIFIED, "a", "new.example.com", NULL);
    assert_int_equal(n_calls, 4);
    assert_string_equal(calls[2], "remove old.example.com");
    assert_string_equal(calls[3], "add new.example.com");
    assert_true(find("old.example.com") < 0);
    assert_true(find("new.example.com") >= 0);
    /* Moving onto a domain another service holds: no second registration, and the old one
     * goes; removing the mover then keeps the shared one (b still holds it). */
    apply(l, NB_UPDATE_MODIFIED, "a", "keep.example.com", NULL);
    assert_int_equal(n_calls, 5);
    assert_string_equal(calls[4], "remove new.example.com");
    apply(l, NB_UPDATE_REMOVED, "a", NULL, NULL);
    assert_int_equal(n_calls, 5);
    assert_true(find("keep.example.com") >= 0);
    apply(l, NB_UPDATE_REMOVED, "b", NULL, NULL);
    assert_int_equal(n_calls, 6);
    assert_string_equal(calls[5], "remove keep.example.com");
    assert_int_equal(n_registered, 0);
    nb_acme_link_free(l);
}

static void not_http_and_wildcards(void **state)
{
    (void)state;
    struct nb_acme_link *l = new_link();
    apply(l, NB_UPDATE_CREATED, "a", "x.example.com", NULL);
    apply(l, NB_UPDATE_CREATED, "b", "x.example.com", NULL);
    /* a becomes a tcp service: it lets go of the name; b keeps it. */
    apply(l, NB_UPDATE_MODIFIED, "a", "x.example.com", "tcp");
    assert_int_equal(n_calls, 1);
    apply(l, NB_UPDATE_REMOVED, "b", NULL, NULL);
    assert_int_equal(n_calls, 2);
    assert_string_equal(calls[1], "remove x.example.com");
    /* A name a wildcard-directory certificate covers never reaches ACME, and neither does its
     * removal. */
    wildcard_suffix = ".wild.test";
    apply(l, NB_UPDATE_CREATED, "w", "a.wild.test", NULL);
    apply(l, NB_UPDATE_REMOVED, "w", NULL, NULL);
    assert_int_equal(n_calls, 2);
    /* No domain: nothing to register. */
    apply(l, NB_UPDATE_CREATED, "e", "", NULL);
    assert_int_equal(n_calls, 2);
    nb_acme_link_free(l);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(two_services_one_domain),
        cmocka_unit_test(modified_domain),
        cmocka_unit_test(not_http_and_wildcards),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
