/*
 * tunables.c - the lm_tunables object: the current values under one mutex,
 * and every way of changing them (QMP set-parameters, set-capabilities
 * plain and extended, HMP strings, legacy one-tunable commands).
 *
 * Every change is one transaction: lock, copy the current values, overlay
 * each member onto the copy (checking name, liveness, type and range as it
 * goes), and only when all of them passed swap the copy in.  Any error
 * leaves the current values untouched.  After the swap the lock is dropped
 * and, if a LM_MUT_LIVE_KICK row changed value, the kick hook runs, so the
 * hook may itself take the table's lock (e.g. to snapshot).
 */
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/suggest.h"
#include "tunables-int.h"

struct lm_tunables {
    pthread_mutex_t lock;
    /* protected by lock: */
    lm_params cur;
    bool active;
    char status[32];
    void (*kick)(void *opaque);
    void *kick_opaque;
    lm_tunables_check_fn check;
    void *check_opaque;
};

void lm_tunables_defaults(lm_params *out)
{
    memset(out, 0, sizeof(*out));
    for (size_t i = 0; i < lm_nrows; i++) {
        const lm_row *r = &lm_rows[i];
        switch (r->type) {
        case LM_T_BOOL:
            *lm_row_bool(r, out) = r->def != 0;
            break;
        case LM_T_ENUM:
            *lm_row_enum(r, out) = (unsigned)r->def;
            break;
        case LM_T_STRING:
            memcpy(lm_row_str(r, out), r->def_str, strlen(r->def_str) + 1);
            break;
        default:
            *lm_row_u64(r, out) = r->def;
            break;
        }
    }
}

lm_tunables *lm_tunables_new(void)
{
    lm_tunables *t = calloc(1, sizeof(*t));
    if (!t)
        return NULL;
    pthread_mutex_init(&t->lock, NULL);
    lm_tunables_defaults(&t->cur);
    strcpy(t->status, "none");
    return t;
}

void lm_tunables_free(lm_tunables *t)
{
    if (!t)
        return;
    pthread_mutex_destroy(&t->lock);
    free(t);
}

void lm_tunables_set_kick(lm_tunables *t, void (*kick)(void *opaque),
                          void *opaque)
{
    pthread_mutex_lock(&t->lock);
    t->kick = kick;
    t->kick_opaque = opaque;
    pthread_mutex_unlock(&t->lock);
}

void lm_tunables_set_check(lm_tunables *t, lm_tunables_check_fn fn,
                           void *opaque)
{
    pthread_mutex_lock(&t->lock);
    t->check = fn;
    t->check_opaque = opaque;
    pthread_mutex_unlock(&t->lock);
}

void lm_tunables_set_active(lm_tunables *t, bool active, const char *status)
{
    pthread_mutex_lock(&t->lock);
    t->active = active;
    snprintf(t->status, sizeof(t->status), "%s",
             status ? status : (active ? "active" : "none"));
    pthread_mutex_unlock(&t->lock);
}

void lm_tunables_snapshot(lm_tunables *t, lm_params *out)
{
    pthread_mutex_lock(&t->lock);
    *out = t->cur;
    pthread_mutex_unlock(&t->lock);
}

/* ---- transactions ----------------------------------------------------- */

static void txn_begin(lm_tunables *t, lm_params *next)
{
    pthread_mutex_lock(&t->lock);
    *next = t->cur;
}

static void txn_abort(lm_tunables *t)
{
    pthread_mutex_unlock(&t->lock);
}

/* The owner's check sees the whole new set before it is swapped in: a
 * value it cannot honour (memory it cannot have) is refused now, never
 * found out later by a running migration.  False: aborted, @err set. */
static bool txn_commit(lm_tunables *t, const lm_params *next,
                       livemig_error *err)
{
    bool kick = false;
    void (*fn)(void *opaque);
    void *opaque;

    if (t->check && !t->check(t->check_opaque, &t->cur, next, err)) {
        txn_abort(t);
        return false;
    }
    for (size_t i = 0; i < lm_nrows; i++)
        if (lm_rows[i].mut == LM_MUT_LIVE_KICK &&
            lm_row_differs(&lm_rows[i], &t->cur, next))
            kick = true;
    t->cur = *next;
    fn = t->kick;
    opaque = t->kick_opaque;
    pthread_mutex_unlock(&t->lock);
    if (kick && fn)
        fn(opaque);
    return true;
}

/* Liveness: while a migration is active, capabilities and setup-only
 * parameters are refused, whatever the value (even the current one), so
 * a caller learns the rule before it matters.  Called with the lock. */
static bool txn_check_live(lm_tunables *t, const lm_row *r,
                           livemig_error *err)
{
    if (!t->active || r->mut != LM_MUT_SETUP_ONLY)
        return true;
    livemig_error_set(err, "%s '%s' cannot change while a migration is "
                      "active (status '%s'); set it before starting the "
                      "migration", lm_row_kind(r), r->name, t->status);
    return false;
}

/* " did you mean 'X'?" for a mistyped name (of a capability first when
 * @cap, else of a parameter; then of the other kind; aliases included),
 * or "". */
static const char *did_you_mean(const char *name, bool cap, char *buf,
                                size_t len)
{
    const char *best = NULL;
    for (int pass = 0; pass < 2 && !best; pass++) {
        bool kind = pass ? !cap : cap;
        lm_suggest s;
        lm_suggest_init(&s, name);
        for (size_t i = 0; i < lm_nrows; i++)
            if (lm_rows[i].cap == kind)
                lm_suggest_add(&s, lm_rows[i].name);
        for (size_t i = 0; i < lm_naliases; i++) {
            const lm_row *r = lm_row_find(lm_aliases[i].target);
            if (r && r->cap == kind)
                lm_suggest_add(&s, lm_aliases[i].alias);
        }
        best = lm_suggest_best(&s);
    }
    if (best)
        snprintf(buf, len, " did you mean '%s'?", best);
    else
        buf[0] = '\0';
    return buf;
}

/* The row a parameter member names, or an error saying what to do. */
static const lm_row *param_lookup(const char *name, livemig_error *err)
{
    const lm_row *r = lm_row_lookup(name);
    if (!r) {
        char dym[96];
        livemig_error_set(err, "parameter '%s' does not exist;%s "
                          "query-migrate-parameter-info lists the parameters",
                          name, did_you_mean(name, false, dym, sizeof(dym)));
        return NULL;
    }
    if (r->cap) {
        livemig_error_set(err, "'%s' is a capability, not a parameter; set "
                          "it with migrate-set-capabilities", name);
        return NULL;
    }
    return r;
}

/* ---- QMP parameters --------------------------------------------------- */

bool lm_tunables_set_parameters(lm_tunables *t, json_object *args,
                                livemig_error *err)
{
    lm_params next;

    if (args && !json_object_is_type(args, json_type_object)) {
        livemig_error_set(err, "migrate-set-parameters needs an object of "
                          "parameters, e.g. {\"downtime-limit\": 300}");
        return false;
    }
    txn_begin(t, &next);
    if (args) {
        json_object_object_foreach(args, key, val) {
            const lm_row *r = param_lookup(key, err);
            if (!r || !txn_check_live(t, r, err) ||
                !lm_row_from_json(r, &next, val, err)) {
                txn_abort(t);
                return false;
            }
        }
    }
    return txn_commit(t, &next, err);
}

json_object *lm_tunables_query_parameters(lm_tunables *t)
{
    lm_params p;
    json_object *o = json_object_new_object();

    lm_tunables_snapshot(t, &p);
    for (size_t i = 0; i < lm_nrows; i++)
        if (!lm_rows[i].cap)
            json_object_object_add(o, lm_rows[i].name,
                                   lm_row_to_json(&lm_rows[i], &p));
    return o;
}

/* ---- QMP capabilities ------------------------------------------------- */

/* One entry of migrate-set-capabilities onto @next; @i for messages. */
static bool cap_entry(lm_tunables *t, lm_params *next, json_object *e,
                      size_t i, livemig_error *err)
{
    json_object *jname, *state = NULL, *value = NULL;
    const char *name;
    const lm_row *r;

    if (!json_object_is_type(e, json_type_object)) {
        livemig_error_set(err, "capabilities entry %zu must be an object "
                          "{\"capability\": NAME, \"state\": BOOL}", i);
        return false;
    }
    json_object_object_foreach(e, key, val) {
        if (strcmp(key, "capability") != 0 && strcmp(key, "state") != 0 &&
            strcmp(key, "value") != 0 && strcmp(key, "live") != 0) {
            livemig_error_set(err, "capabilities entry %zu has unknown member "
                              "'%s'; an entry has 'capability' and 'state' "
                              "(or 'value' for a parameter)", i, key);
            return false;
        }
        (void)val;
    }
    if (!json_object_object_get_ex(e, "capability", &jname) ||
        !json_object_is_type(jname, json_type_string)) {
        livemig_error_set(err, "capabilities entry %zu needs a 'capability' "
                          "string naming a capability or parameter", i);
        return false;
    }
    name = json_object_get_string(jname);
    json_object_object_get_ex(e, "state", &state);
    json_object_object_get_ex(e, "value", &value);

    r = lm_row_lookup(name);
    if (!r) {
        char dym[96];
        livemig_error_set(err, "capability '%s' does not exist;%s "
                          "query-migrate-capabilities lists the capabilities "
                          "(with extended: true also the parameters)", name,
                          did_you_mean(name, true, dym, sizeof(dym)));
        return false;
    }
    if (r->cap) {
        if (value || !state) {
            livemig_error_set(err, "capability '%s' needs a boolean 'state'"
                              "%s", name, value ? ", not a 'value'" : "");
            return false;
        }
        if (!txn_check_live(t, r, err))
            return false;
        return lm_row_from_json(r, next, state, err);
    }
    if (state || !value) {
        livemig_error_set(err, "'%s' is a parameter; give it a 'value', e.g. "
                          "{\"capability\": \"%s\", \"value\": ...}", name,
                          name);
        return false;
    }
    return txn_check_live(t, r, err) && lm_row_from_json(r, next, value, err);
}

bool lm_tunables_set_capabilities(lm_tunables *t, json_object *args,
                                  livemig_error *err)
{
    json_object *list = NULL;
    lm_params next;

    if (args && json_object_is_type(args, json_type_object)) {
        json_object_object_foreach(args, key, val) {
            if (strcmp(key, "capabilities") != 0) {
                livemig_error_set(err, "migrate-set-capabilities has no "
                                  "argument '%s'; it takes 'capabilities'",
                                  key);
                return false;
            }
            list = val;
        }
    }
    if (!list || !json_object_is_type(list, json_type_array)) {
        livemig_error_set(err, "migrate-set-capabilities needs "
                          "'capabilities', an array of {\"capability\": NAME, "
                          "\"state\": BOOL}");
        return false;
    }
    txn_begin(t, &next);
    for (size_t i = 0; i < json_object_array_length(list); i++) {
        if (!cap_entry(t, &next, json_object_array_get_idx(list, i), i,
                       err)) {
            txn_abort(t);
            return false;
        }
    }
    return txn_commit(t, &next, err);
}

json_object *lm_tunables_query_capabilities(lm_tunables *t, bool extended)
{
    lm_params p;
    json_object *a = json_object_new_array();

    lm_tunables_snapshot(t, &p);
    for (size_t i = 0; i < lm_nrows; i++) {
        const lm_row *r = &lm_rows[i];
        json_object *o;
        if (!r->cap)
            continue;
        o = json_object_new_object();
        json_object_object_add(o, "capability", json_object_new_string(r->name));
        json_object_object_add(o, "state", lm_row_to_json(r, &p));
        if (extended)
            json_object_object_add(o, "live", json_object_new_boolean(false));
        json_object_array_add(a, o);
    }
    if (!extended)
        return a;
    for (size_t i = 0; i < lm_nrows; i++) {
        const lm_row *r = &lm_rows[i];
        json_object *o;
        if (r->cap)
            continue;
        o = json_object_new_object();
        json_object_object_add(o, "capability", json_object_new_string(r->name));
        json_object_object_add(o, "value", lm_row_to_json(r, &p));
        json_object_object_add(o, "live", json_object_new_boolean(
                               r->mut != LM_MUT_SETUP_ONLY));
        json_object_array_add(a, o);
    }
    return a;
}

/* ---- HMP -------------------------------------------------------------- */

bool lm_tunables_set_from_string(lm_tunables *t, const char *name,
                                 const char *value, livemig_error *err)
{
    const lm_row *r = param_lookup(name, err);
    lm_params next;

    if (!r)
        return false;
    txn_begin(t, &next);
    if (!txn_check_live(t, r, err) ||
        !lm_row_from_string(r, &next, value, err)) {
        txn_abort(t);
        return false;
    }
    return txn_commit(t, &next, err);
}

bool lm_tunables_set_capability_string(lm_tunables *t, const char *name,
                                       const char *value, livemig_error *err)
{
    const lm_row *r = lm_row_lookup(name);
    lm_params next;

    if (!r || !r->cap) {
        char dym[96];
        livemig_error_set(err, "capability '%s' does not exist;%s "
                          "info migrate_capabilities lists the capabilities%s",
                          name, r ? "" : did_you_mean(name, true, dym,
                                                      sizeof(dym)),
                          r ? " (for a parameter use "
                          "migrate_set_parameter)" : "");
        return false;
    }
    txn_begin(t, &next);
    if (!txn_check_live(t, r, err) ||
        !lm_row_from_string(r, &next, value, err)) {
        txn_abort(t);
        return false;
    }
    return txn_commit(t, &next, err);
}

/* ---- legacy one-tunable commands -------------------------------------- */

size_t lm_tunables_legacy_count(void)
{
    return lm_nlegacies;
}

const char *lm_tunables_legacy_name(size_t i)
{
    return i < lm_nlegacies ? lm_legacies[i].command : NULL;
}

static const lm_legacy_row *legacy_find(const char *command,
                                        livemig_error *err)
{
    for (size_t i = 0; i < lm_nlegacies; i++)
        if (strcmp(lm_legacies[i].command, command) == 0)
            return &lm_legacies[i];
    livemig_error_set(err, "'%s' is not a legacy tunable command; use "
                      "migrate-set-parameters", command);
    return NULL;
}

/* The range of a seconds command, for its messages. */
static bool legacy_seconds_range(const lm_legacy_row *l, const lm_row *r,
                                 livemig_error *err, const char *got)
{
    livemig_error_set(err, "%s: '%s' must be between %g and %g seconds, "
                      "got %s", l->command, l->arg, (double)r->min / 1000.0,
                      (double)r->max / 1000.0, got);
    return false;
}

bool lm_tunables_legacy_call(lm_tunables *t, const char *command,
                             json_object *args, livemig_error *err)
{
    const lm_legacy_row *l = legacy_find(command, err);
    const lm_row *r;
    json_object *v = NULL;
    lm_params next;
    uint64_t ms;

    if (!l)
        return false;
    r = lm_row_find(l->target);
    if (args && json_object_is_type(args, json_type_object)) {
        json_object_object_foreach(args, key, val) {
            if (strcmp(key, l->arg) != 0) {
                livemig_error_set(err, "%s has no argument '%s'; it takes "
                                  "'%s'", command, key, l->arg);
                return false;
            }
            v = val;
        }
    }
    if (!v) {
        livemig_error_set(err, "%s needs the argument '%s'", command, l->arg);
        return false;
    }

    txn_begin(t, &next);
    if (!txn_check_live(t, r, err))
        goto fail;
    if (l->kind == LM_LEGACY_SECONDS) {
        double s;
        if (!json_object_is_type(v, json_type_int) &&
            !json_object_is_type(v, json_type_double)) {
            livemig_error_set(err, "%s: '%s' must be a number of seconds, "
                              "e.g. 0.5", command, l->arg);
            goto fail;
        }
        s = json_object_get_double(v);
        if (!isfinite(s) || s < 0 || s * 1000.0 > (double)r->max ||
            (ms = (uint64_t)(s * 1000.0 + 0.5)) < r->min) {
            legacy_seconds_range(l, r, err, json_object_to_json_string(v));
            goto fail;
        }
        if (!lm_row_store_uint(r, &next, ms, err))
            goto fail;
    } else if (!lm_row_from_json(r, &next, v, err)) {
        goto fail;
    }
    return txn_commit(t, &next, err);
fail:
    txn_abort(t);
    return false;
}

bool lm_tunables_legacy_call_string(lm_tunables *t, const char *command,
                                    const char *value, livemig_error *err)
{
    const lm_legacy_row *l = legacy_find(command, err);
    const lm_row *r;
    lm_params next;
    uint64_t ms;

    if (!l)
        return false;
    r = lm_row_find(l->target);
    if (l->kind != LM_LEGACY_SECONDS)
        return lm_tunables_set_from_string(t, r->name, value, err);
    txn_begin(t, &next);
    if (!txn_check_live(t, r, err))
        goto fail;
    if (!lm_parse_seconds_ms(value, &ms)) {
        livemig_error_set(err, "%s: '%s' is not a time; give seconds, e.g. "
                          "0.5 (or 500ms)", command, value);
        goto fail;
    }
    if (ms < r->min || ms > r->max) {
        legacy_seconds_range(l, r, err, value);
        goto fail;
    }
    if (!lm_row_store_uint(r, &next, ms, err))
        goto fail;
    return txn_commit(t, &next, err);
fail:
    txn_abort(t);
    return false;
}
