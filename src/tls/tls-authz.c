/*
 * tls-authz.c - authz-list: an ordered list of rules, each a pattern (the
 * whole name, or a glob as fnmatch() reads it) with allow or deny; the
 * first rule that matches decides, else the list's policy.  With TLS the
 * name is the client certificate's distinguished name in RFC 4514 form
 * ("CN=src.example.com,O=Example,C=GB") or the PSK username.
 */
#include <fnmatch.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tls/tls-int.h"

void lm_tls_authz_unref(lm_tls_authz *a)
{
    if (!a || atomic_fetch_sub(&a->ref, 1) != 1)
        return;
    for (size_t i = 0; i < a->nrules; i++)
        free(a->rules[i].match);
    free(a->rules);
    free(a);
}

const char *lm_tls_authz_id(const lm_tls_authz *a) { return a->id; }

bool lm_tls_authz_allows(const lm_tls_authz *a, const char *name)
{
    for (size_t i = 0; i < a->nrules; i++) {
        const struct lm_authz_rule *r = &a->rules[i];
        bool hit = r->glob ? fnmatch(r->match, name, 0) == 0
                           : strcmp(r->match, name) == 0;
        if (hit)
            return r->allow;
    }
    return a->allow;
}

static bool policy_of(const char *id, const char *what, const char *s,
                      bool *allow, livemig_error *err)
{
    if (strcmp(s, "allow") == 0 || strcmp(s, "deny") == 0) {
        *allow = s[0] == 'a';
        return true;
    }
    livemig_error_set(err, "'%s': %s must be 'allow' or 'deny', not '%s'",
                      id, what, s);
    return false;
}

static bool rule_of(lm_tls_authz *a, size_t i, json_object *r,
                    livemig_error *err)
{
    static const char *const known[] = { "match", "policy", "format", NULL };
    char what[64];
    snprintf(what, sizeof(what), "rules[%zu]", i);
    if (!json_object_is_type(r, json_type_object)) {
        livemig_error_set(err, "'%s': %s must be an object with 'match', "
                          "'policy' and optional 'format'", a->id, what);
        return false;
    }
    const char *match = NULL, *policy = NULL, *format = "exact";
    if (!lm_props_known(r, what, known, err) ||
        !lm_prop_str(r, what, "match", true, &match, err) ||
        !lm_prop_str(r, what, "policy", true, &policy, err) ||
        !lm_prop_str(r, what, "format", false, &format, err))
        return false;
    struct lm_authz_rule *ru = &a->rules[i];
    char pw[80];
    snprintf(pw, sizeof(pw), "the 'policy' of %s", what);
    if (!policy_of(a->id, pw, policy, &ru->allow, err))
        return false;
    ru->glob = strcmp(format, "glob") == 0;
    if (!ru->glob && strcmp(format, "exact") != 0) {
        livemig_error_set(err, "'%s': the 'format' of %s must be 'exact' or "
                          "'glob', not '%s'", a->id, what, format);
        return false;
    }
    if (!(ru->match = strdup(match))) {
        livemig_error_set(err, "out of memory for '%s'", a->id);
        return false;
    }
    return true;
}

lm_tls_authz *lm_tls_authz_new(const char *id, json_object *args,
                               livemig_error *err)
{
    static const char *const known[] = { "policy", "rules", NULL };
    const char *policy = "deny";
    if (!lm_props_known(args, "authz-list", known, err) ||
        !lm_prop_str(args, "authz-list", "policy", false, &policy, err))
        return NULL;
    json_object *rules = NULL;
    json_object_object_get_ex(args, "rules", &rules);
    if (rules && !json_object_is_type(rules, json_type_array)) {
        livemig_error_set(err, "'%s': 'rules' must be an array of "
                          "{match, policy, format}", id);
        return NULL;
    }
    lm_tls_authz *a = calloc(1, sizeof(*a));
    size_t n = rules ? json_object_array_length(rules) : 0;
    if (!a || (n && !(a->rules = calloc(n, sizeof(*a->rules))))) {
        free(a);
        livemig_error_set(err, "out of memory for '%s'", id);
        return NULL;
    }
    atomic_init(&a->ref, 1);
    snprintf(a->id, sizeof(a->id), "%s", id);
    bool ok = policy_of(id, "'policy'", policy, &a->allow, err);
    for (size_t i = 0; ok && i < n; i++) {
        ok = rule_of(a, i, json_object_array_get_idx(rules, i), err);
        a->nrules = i + 1;
    }
    if (!ok) {
        lm_tls_authz_unref(a);
        return NULL;
    }
    return a;
}
