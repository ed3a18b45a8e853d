/*
 * tunables-info.c - introspection derived from the rows:
 * query-migrate-parameter-info, the query-qmp-schema members and enum
 * types, the legacy commands as data, and the HMP help text.
 */
#include <stdio.h>
#include <string.h>

#include "tunables-int.h"

static json_object *row_aliases(const lm_row *r)
{
    json_object *a = json_object_new_array();
    for (size_t i = 0; i < lm_naliases; i++)
        if (strcmp(lm_aliases[i].target, r->name) == 0)
            json_object_array_add(a,
                json_object_new_string(lm_aliases[i].alias));
    return a;
}

static json_object *row_info(const lm_row *r)
{
    json_object *o = json_object_new_object();

    json_object_object_add(o, "name", json_object_new_string(r->name));
    json_object_object_add(o, "type",
                           json_object_new_string(lm_ttype_name(r->type)));
    json_object_object_add(o, "capability", json_object_new_boolean(r->cap));
    json_object_object_add(o, "default", lm_row_default_json(r));
    if (lm_ttype_numeric(r->type)) {
        json_object_object_add(o, "min", json_object_new_uint64(r->min));
        json_object_object_add(o, "max", json_object_new_uint64(r->max));
    }
    if (r->type == LM_T_ENUM) {
        json_object *vals = json_object_new_array();
        for (size_t i = 0; i < lm_row_enum_count(r); i++) {
            size_t len;
            const char *v = lm_row_enum_value(r, i, &len);
            json_object_array_add(vals,
                                  json_object_new_string_len(v, (int)len));
        }
        json_object_object_add(o, "values", vals);
    }
    json_object_object_add(o, "unit", json_object_new_string(r->unit));
    json_object_object_add(o, "live", json_object_new_boolean(
                           r->mut != LM_MUT_SETUP_ONLY));
    json_object_object_add(o, "kick", json_object_new_boolean(
                           r->mut == LM_MUT_LIVE_KICK));
    json_object_object_add(o, "doc", json_object_new_string(r->doc));
    json_object_object_add(o, "since", json_object_new_string(r->since));
    json_object_object_add(o, "deprecated", json_object_new_boolean(
                           (r->flags & LM_F_DEPRECATED) != 0));
    json_object_object_add(o, "unstable", json_object_new_boolean(
                           (r->flags & LM_F_UNSTABLE) != 0));
    json_object_object_add(o, "aliases", row_aliases(r));
    return o;
}

json_object *lm_tunables_parameter_info(void)
{
    json_object *a = json_object_new_array();
    /* parameters first, then capabilities, each in table order */
    for (int caps = 0; caps < 2; caps++)
        for (size_t i = 0; i < lm_nrows; i++)
            if (lm_rows[i].cap == (caps == 1))
                json_object_array_add(a, row_info(&lm_rows[i]));
    return a;
}

/* ---- query-qmp-schema ------------------------------------------------- */

/* Features of a member: live / deprecated / unstable, or NULL if none. */
static json_object *features(const lm_row *r, bool live, bool deprecated)
{
    json_object *f = json_object_new_array();
    if (live)
        json_object_array_add(f, json_object_new_string("live"));
    if (deprecated || (r->flags & LM_F_DEPRECATED))
        json_object_array_add(f, json_object_new_string("deprecated"));
    if (r->flags & LM_F_UNSTABLE)
        json_object_array_add(f, json_object_new_string("unstable"));
    if (json_object_array_length(f) == 0) {
        json_object_put(f);
        return NULL;
    }
    return f;
}

static json_object *schema_member(const lm_row *r, const char *name,
                                  bool alias)
{
    json_object *o = json_object_new_object(), *f;
    char type[64];

    switch (r->type) {
    case LM_T_BOOL:
        snprintf(type, sizeof(type), "bool");
        break;
    case LM_T_STRING:
        snprintf(type, sizeof(type), "str");
        break;
    case LM_T_ENUM:
        lm_row_enum_type_name(r, type, sizeof(type));
        break;
    default:
        snprintf(type, sizeof(type), "int");
        break;
    }
    json_object_object_add(o, "name", json_object_new_string(name));
    json_object_object_add(o, "type", json_object_new_string(type));
    json_object_object_add(o, "default", NULL);
    f = features(r, r->mut != LM_MUT_SETUP_ONLY, alias);
    if (f)
        json_object_object_add(o, "features", f);
    return o;
}

json_object *lm_tunables_schema_members(void)
{
    json_object *a = json_object_new_array();
    for (size_t i = 0; i < lm_nrows; i++)
        if (!lm_rows[i].cap)
            json_object_array_add(a, schema_member(&lm_rows[i],
                                                   lm_rows[i].name, false));
    /* deprecated spellings are accepted by the set commands */
    for (size_t i = 0; i < lm_naliases; i++) {
        const lm_row *r = lm_row_find(lm_aliases[i].target);
        if (r && !r->cap)
            json_object_array_add(a, schema_member(r, lm_aliases[i].alias,
                                                   true));
    }
    return a;
}

static json_object *schema_enum(const char *name, json_object *values,
                                json_object *members)
{
    json_object *o = json_object_new_object();
    json_object_object_add(o, "name", json_object_new_string(name));
    json_object_object_add(o, "meta-type", json_object_new_string("enum"));
    json_object_object_add(o, "members", members);
    json_object_object_add(o, "values", values);
    return o;
}

static void enum_add(json_object *values, json_object *members,
                     const char *s, size_t len, json_object *feat)
{
    json_object *m = json_object_new_object();
    json_object_object_add(m, "name", json_object_new_string_len(s, (int)len));
    if (feat)
        json_object_object_add(m, "features", feat);
    json_object_array_add(members, m);
    json_object_array_add(values, json_object_new_string_len(s, (int)len));
}

json_object *lm_tunables_schema_types(void)
{
    json_object *a = json_object_new_array();
    char name[64];

    for (size_t i = 0; i < lm_nrows; i++) {
        const lm_row *r = &lm_rows[i];
        json_object *vals, *mems;
        if (r->type != LM_T_ENUM)
            continue;
        vals = json_object_new_array();
        mems = json_object_new_array();
        for (size_t k = 0; k < lm_row_enum_count(r); k++) {
            size_t len;
            const char *v = lm_row_enum_value(r, k, &len);
            enum_add(vals, mems, v, len, NULL);
        }
        lm_row_enum_type_name(r, name, sizeof(name));
        json_object_array_add(a, schema_enum(name, vals, mems));
    }
    for (int caps = 1; caps >= 0; caps--) {
        json_object *vals = json_object_new_array();
        json_object *mems = json_object_new_array();
        for (size_t i = 0; i < lm_nrows; i++) {
            const lm_row *r = &lm_rows[i];
            if (r->cap != (caps == 1))
                continue;
            enum_add(vals, mems, r->name, strlen(r->name),
                     features(r, false, false));
        }
        json_object_array_add(a, schema_enum(caps ? "MigrationCapability"
                                             : "MigrationParameter",
                                             vals, mems));
    }
    return a;
}

/* ---- legacy commands as data ------------------------------------------ */

json_object *lm_tunables_legacy_info(void)
{
    json_object *a = json_object_new_array();

    for (size_t i = 0; i < lm_nlegacies; i++) {
        const lm_legacy_row *l = &lm_legacies[i];
        const lm_row *r = lm_row_find(l->target);
        json_object *o = json_object_new_object();
        bool secs = l->kind == LM_LEGACY_SECONDS;
        char type[64];

        if (secs)
            snprintf(type, sizeof(type), "number");
        else if (r->type == LM_T_ENUM)
            lm_row_enum_type_name(r, type, sizeof(type));
        else
            snprintf(type, sizeof(type), "%s",
                     r->type == LM_T_BOOL ? "bool"
                     : r->type == LM_T_STRING ? "str" : "int");
        json_object_object_add(o, "command", json_object_new_string(l->command));
        json_object_object_add(o, "parameter", json_object_new_string(l->target));
        json_object_object_add(o, "argument", json_object_new_string(l->arg));
        json_object_object_add(o, "type", json_object_new_string(type));
        json_object_object_add(o, "unit",
                               json_object_new_string(secs ? "s" : r->unit));
        json_object_array_add(a, o);
    }
    return a;
}

/* ---- HMP help --------------------------------------------------------- */

char *lm_tunables_format_help(void)
{
    lm_text out = { 0 };
    char list[256], human[48];

    for (size_t i = 0; i < lm_nrows; i++) {
        const lm_row *r = &lm_rows[i];
        const char *live = r->mut == LM_MUT_SETUP_ONLY ? "setup only"
                                                       : "live";
        if (r->cap)
            continue;
        switch (r->type) {
        case LM_T_BOOL:
            lm_text_add(&out, "%s on|off (default %s, %s): %s\n", r->name,
                        r->def ? "on" : "off", live, r->doc);
            break;
        case LM_T_ENUM:
            lm_row_enum_list(r, "|", list, sizeof(list));
            {
                size_t len;
                const char *d = lm_row_enum_value(r, r->def, &len);
                lm_text_add(&out, "%s %s (default %.*s, %s): %s\n", r->name,
                            list, (int)len, d, live, r->doc);
            }
            break;
        case LM_T_STRING:
            lm_text_add(&out, "%s STRING (default '%s', %s): %s\n", r->name,
                        r->def_str, live, r->doc);
            break;
        default:
            lm_human_size(r->max, r->unit, human, sizeof(human));
            lm_text_add(&out, "%s %s (%llu..%llu%s%s%s%s%s, default %llu, "
                        "%s): %s\n", r->name,
                        r->type == LM_T_SIZE ? "SIZE[K|M|G|T|P]"
                        : r->type == LM_T_MS ? "TIME[ms|s]"
                        : r->type == LM_T_PERCENT ? "PERCENT[%]" : "NUMBER",
                        (unsigned long long)r->min,
                        (unsigned long long)r->max,
                        r->unit[0] && strcmp(r->unit, "%") ? " " : "",
                        r->unit, human[0] ? " = " : "", human, "",
                        (unsigned long long)r->def, live, r->doc);
            break;
        }
    }
    return lm_text_take(&out);
}
