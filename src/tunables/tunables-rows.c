/*
 * tunables-rows.c - the rows of tunables.def as data, and typed access to
 * a row's value: lookup by name or alias, enum values, JSON in and out with
 * the type and range checks every set path shares.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/json-text.h"
#include "tunables-int.h"

/* ---- the rows --------------------------------------------------------- */

/* Checks the compiler can make on the rows themselves.  Rows with min 0
 * make some comparisons trivially true; that is the point, not a bug. */
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wtype-limits"
#define LM_BOOL(c, n, d, m, f, s, doc)
#define LM_UINT(c, n, ty, d, mn, mx, u, m, f, s, doc)                        \
    _Static_assert((uint64_t)(mn) <= (uint64_t)(mx),                          \
                   "tunable " n ": min is above max");                        \
    _Static_assert((uint64_t)(mn) <= (uint64_t)(d) &&                         \
                   (uint64_t)(d) <= (uint64_t)(mx),                           \
                   "tunable " n ": default is outside min..max");             \
    _Static_assert((ty) != LM_T_PERCENT || (uint64_t)(mx) <= 100,             \
                   "tunable " n ": a percentage cannot exceed 100");          \
    _Static_assert((ty) == LM_T_UINT || (ty) == LM_T_SIZE ||                  \
                   (ty) == LM_T_MS || (ty) == LM_T_PERCENT,                   \
                   "tunable " n ": LM_UINT rows are uint, size, ms or percent");
#define LM_ENUM(c, n, d, v, m, f, s, doc)
#define LM_STR(c, n, d, m, f, s, doc)                                         \
    _Static_assert(sizeof(d) <= sizeof(((lm_params *)0)->c),                  \
                   "tunable " n ": default is too long");
#define LM_CAP(c, n, f, s, doc)
#define LM_ALIAS(a, t)
#define LM_LEGACY(cmd, t, arg, k)
#include LM_TUNABLES_DEF
#undef LM_BOOL
#undef LM_UINT
#undef LM_ENUM
#undef LM_STR
#undef LM_CAP
#undef LM_ALIAS
#undef LM_LEGACY
#pragma GCC diagnostic pop

#define LM_MEMBER(c) .off = offsetof(lm_params, c), \
                     .size = sizeof(((lm_params *)0)->c)

const lm_row lm_rows[] = {
#define LM_BOOL(c, n, d, m, f, s, doc_)                                       \
    { .name = n, .type = LM_T_BOOL, .def = (d) ? 1 : 0, .max = 1,             \
      .unit = "", .mut = m, .flags = f, .since = s, .doc = doc_,              \
      LM_MEMBER(c) },
#define LM_UINT(c, n, ty, d, mn, mx, u, m, f, s, doc_)                        \
    { .name = n, .type = ty, .def = d, .min = mn, .max = mx, .unit = u,       \
      .mut = m, .flags = f, .since = s, .doc = doc_, LM_MEMBER(c) },
#define LM_ENUM(c, n, d, v, m, f, s, doc_)                                    \
    { .name = n, .type = LM_T_ENUM, .def = d, .vals = v, .unit = "",          \
      .mut = m, .flags = f, .since = s, .doc = doc_, LM_MEMBER(c) },
#define LM_STR(c, n, d, m, f, s, doc_)                                        \
    { .name = n, .type = LM_T_STRING, .def_str = d, .unit = "",               \
      .mut = m, .flags = f, .since = s, .doc = doc_, LM_MEMBER(c) },
#define LM_CAP(c, n, f, s, doc_)                                              \
    { .name = n, .type = LM_T_BOOL, .def = 0, .max = 1, .unit = "",           \
      .mut = LM_MUT_SETUP_ONLY, .flags = f, .since = s, .doc = doc_,          \
      .cap = true, LM_MEMBER(cap_##c) },
#define LM_ALIAS(a, t)
#define LM_LEGACY(cmd, t, arg, k)
#include LM_TUNABLES_DEF
#undef LM_BOOL
#undef LM_UINT
#undef LM_ENUM
#undef LM_STR
#undef LM_CAP
#undef LM_ALIAS
#undef LM_LEGACY
};
const size_t lm_nrows = sizeof(lm_rows) / sizeof(lm_rows[0]);

/* Alias and legacy lists end with a NULL row so an empty list compiles. */
#define LM_BOOL(c, n, d, m, f, s, doc)
#define LM_UINT(c, n, ty, d, mn, mx, u, m, f, s, doc)
#define LM_ENUM(c, n, d, v, m, f, s, doc)
#define LM_STR(c, n, d, m, f, s, doc)
#define LM_CAP(c, n, f, s, doc)
#define LM_ALIAS(a, t) { a, t },
#define LM_LEGACY(cmd, t, arg, k)
const lm_alias_row lm_aliases[] = {
#include LM_TUNABLES_DEF
    { NULL, NULL }
};
#undef LM_ALIAS
#undef LM_LEGACY
#define LM_ALIAS(a, t)
#define LM_LEGACY(cmd, t, arg, k) { cmd, t, arg, k },
const lm_legacy_row lm_legacies[] = {
#include LM_TUNABLES_DEF
    { NULL, NULL, NULL, 0 }
};
#undef LM_BOOL
#undef LM_UINT
#undef LM_ENUM
#undef LM_STR
#undef LM_CAP
#undef LM_ALIAS
#undef LM_LEGACY
const size_t lm_naliases = sizeof(lm_aliases) / sizeof(lm_aliases[0]) - 1;
const size_t lm_nlegacies = sizeof(lm_legacies) / sizeof(lm_legacies[0]) - 1;

/* ---- lookup ----------------------------------------------------------- */

const lm_row *lm_row_find(const char *name)
{
    for (size_t i = 0; i < lm_nrows; i++)
        if (strcmp(lm_rows[i].name, name) == 0)
            return &lm_rows[i];
    return NULL;
}

const lm_row *lm_row_lookup(const char *name)
{
    const lm_row *r = lm_row_find(name);
    if (r)
        return r;
    for (size_t i = 0; i < lm_naliases; i++)
        if (strcmp(lm_aliases[i].alias, name) == 0)
            return lm_row_find(lm_aliases[i].target);
    return NULL;
}

const char *lm_row_kind(const lm_row *r)
{
    return r->cap ? "capability" : "parameter";
}

const char *lm_ttype_name(lm_ttype t)
{
    switch (t) {
    case LM_T_BOOL:    return "bool";
    case LM_T_UINT:    return "uint";
    case LM_T_SIZE:    return "size";
    case LM_T_MS:      return "ms";
    case LM_T_PERCENT: return "percent";
    case LM_T_ENUM:    return "enum";
    case LM_T_STRING:  return "string";
    }
    return "?";
}

bool lm_ttype_numeric(lm_ttype t)
{
    return t == LM_T_UINT || t == LM_T_SIZE || t == LM_T_MS ||
           t == LM_T_PERCENT;
}

/* ---- enum values ------------------------------------------------------ */

size_t lm_row_enum_count(const lm_row *r)
{
    size_t n = 1;
    for (const char *p = r->vals; *p; p++)
        n += *p == '|';
    return n;
}

const char *lm_row_enum_value(const lm_row *r, size_t i, size_t *len)
{
    const char *p = r->vals;
    while (i-- > 0) {
        p = strchr(p, '|');
        if (!p) {
            *len = 0;
            return "";
        }
        p++;
    }
    *len = strcspn(p, "|");
    return p;
}

bool lm_row_enum_index(const lm_row *r, const char *s, unsigned *out)
{
    size_t n = lm_row_enum_count(r), slen = strlen(s);
    for (size_t i = 0; i < n; i++) {
        size_t len;
        const char *v = lm_row_enum_value(r, i, &len);
        if (len == slen && memcmp(v, s, len) == 0) {
            *out = (unsigned)i;
            return true;
        }
    }
    return false;
}

void lm_row_enum_list(const lm_row *r, const char *sep, char *buf,
                      size_t size)
{
    size_t n = lm_row_enum_count(r), used = 0;
    buf[0] = '\0';
    for (size_t i = 0; i < n && used < size; i++) {
        size_t len;
        const char *v = lm_row_enum_value(r, i, &len);
        int k = snprintf(buf + used, size - used, "%s%.*s", i ? sep : "",
                         (int)len, v);
        if (k < 0)
            break;
        used += (size_t)k;
    }
}

void lm_row_enum_type_name(const lm_row *r, char *buf, size_t size)
{
    size_t o = 0;
    bool upper = true;
    for (const char *p = r->name; *p && o + 1 < size; p++) {
        if (*p == '-' || *p == '_') {
            upper = true;
            continue;
        }
        buf[o++] = upper && *p >= 'a' && *p <= 'z' ? (char)(*p - 'a' + 'A')
                                                   : *p;
        upper = false;
    }
    buf[o] = '\0';
}

/* ---- values ----------------------------------------------------------- */

bool lm_row_differs(const lm_row *r, const lm_params *a, const lm_params *b)
{
    const char *pa = (const char *)a + r->off, *pb = (const char *)b + r->off;
    if (r->type == LM_T_STRING)
        return strcmp(pa, pb) != 0;
    return memcmp(pa, pb, r->size) != 0;
}

json_object *lm_row_to_json(const lm_row *r, const lm_params *p)
{
    lm_params *q = (lm_params *)p;   /* the accessors only read here */
    size_t len;
    const char *v;

    switch (r->type) {
    case LM_T_BOOL:
        return json_object_new_boolean(*lm_row_bool(r, q));
    case LM_T_ENUM:
        v = lm_row_enum_value(r, *lm_row_enum(r, q), &len);
        return json_object_new_string_len(v, (int)len);
    case LM_T_STRING:
        return json_object_new_string(lm_row_str(r, q));
    case LM_T_UINT:
    case LM_T_SIZE:
    case LM_T_MS:
    case LM_T_PERCENT:
        return json_object_new_uint64(*lm_row_u64(r, q));
    }
    return NULL;
}

json_object *lm_row_default_json(const lm_row *r)
{
    size_t len;
    const char *v;

    switch (r->type) {
    case LM_T_BOOL:
        return json_object_new_boolean(r->def != 0);
    case LM_T_ENUM:
        v = lm_row_enum_value(r, r->def, &len);
        return json_object_new_string_len(v, (int)len);
    case LM_T_STRING:
        return json_object_new_string(r->def_str);
    default:
        return json_object_new_uint64(r->def);
    }
}

/* "a string", "1e400", ... for type errors: numbers as written. */
static const char *json_what(json_object *v)
{
    switch (json_object_get_type(v)) {
    case json_type_null:    return "null";
    case json_type_boolean: return "a boolean";
    case json_type_double:
    case json_type_int:     return lm_json_text(v);
    case json_type_object:  return "an object";
    case json_type_array:   return "an array";
    case json_type_string:  return "a string";
    }
    return "something else";
}

bool lm_row_store_uint(const lm_row *r, lm_params *p, uint64_t v,
                       livemig_error *err)
{
    if (v < r->min || v > r->max) {
        livemig_error_set(err, "%s '%s' must be between %llu and %llu%s%s, "
                          "got %llu", lm_row_kind(r), r->name,
                          (unsigned long long)r->min,
                          (unsigned long long)r->max, r->unit[0] ? " " : "",
                          r->unit, (unsigned long long)v);
        return false;
    }
    *lm_row_u64(r, p) = v;
    return true;
}

bool lm_row_from_json(const lm_row *r, lm_params *p, json_object *v,
                      livemig_error *err)
{
    const char *kind = lm_row_kind(r);
    char list[256];

    switch (r->type) {
    case LM_T_BOOL:
        if (!json_object_is_type(v, json_type_boolean)) {
            livemig_error_set(err, "%s '%s' must be true or false, got %s",
                              kind, r->name, json_what(v));
            return false;
        }
        *lm_row_bool(r, p) = json_object_get_boolean(v);
        return true;

    case LM_T_ENUM: {
        unsigned idx;
        lm_row_enum_list(r, ", ", list, sizeof(list));
        if (!json_object_is_type(v, json_type_string)) {
            livemig_error_set(err, "%s '%s' must be a string, one of %s; "
                              "got %s", kind, r->name, list, json_what(v));
            return false;
        }
        if (!lm_row_enum_index(r, json_object_get_string(v), &idx)) {
            livemig_error_set(err, "%s '%s' must be one of %s; got '%s'",
                              kind, r->name, list, json_object_get_string(v));
            return false;
        }
        *lm_row_enum(r, p) = idx;
        return true;
    }

    case LM_T_STRING: {
        /* null resets to "" (QEMU's StrOrNull for tls-creds & co.) */
        const char *s = json_object_is_type(v, json_type_null)
                        ? "" : json_object_get_string(v);
        size_t len;
        if (!json_object_is_type(v, json_type_string) &&
            !json_object_is_type(v, json_type_null)) {
            livemig_error_set(err, "%s '%s' must be a string, got %s",
                              kind, r->name, json_what(v));
            return false;
        }
        len = strlen(s);
        if (len >= r->size) {
            livemig_error_set(err, "%s '%s' must be at most %zu bytes long, "
                              "got %zu", kind, r->name, r->size - 1, len);
            return false;
        }
        memcpy(lm_row_str(r, p), s, len + 1);
        return true;
    }

    case LM_T_UINT:
    case LM_T_SIZE:
    case LM_T_MS:
    case LM_T_PERCENT:
        if (!json_object_is_type(v, json_type_int)) {
            livemig_error_set(err, "%s '%s' must be an integer%s%s%s, got %s",
                              kind, r->name, r->unit[0] ? " (" : "", r->unit,
                              r->unit[0] ? ")" : "", json_what(v));
            return false;
        }
        if (json_object_get_int64(v) < 0) {
            livemig_error_set(err, "%s '%s' must not be negative, got %s",
                              kind, r->name, lm_json_text(v));
            return false;
        }
        if (!lm_json_int_exact(v)) {
            /* Too large for any integer: say so with the number sent. */
            livemig_error_set(err, "%s '%s' must be between %llu and %llu%s"
                              "%s, got %s", kind, r->name,
                              (unsigned long long)r->min,
                              (unsigned long long)r->max,
                              r->unit[0] ? " " : "", r->unit,
                              lm_json_text(v));
            return false;
        }
        return lm_row_store_uint(r, p, json_object_get_uint64(v), err);
    }
    return false;
}

/* ---- text builder ----------------------------------------------------- */

void lm_text_add(lm_text *t, const char *fmt, ...)
{
    va_list ap;
    int n;

    va_start(ap, fmt);
    n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    if (t->len + (size_t)n + 1 > t->cap) {
        size_t cap = t->cap ? t->cap : 256;
        while (cap < t->len + (size_t)n + 1)
            cap *= 2;
        char *s = realloc(t->s, cap);
        if (!s)
            abort();
        t->s = s;
        t->cap = cap;
    }
    va_start(ap, fmt);
    vsnprintf(t->s + t->len, t->cap - t->len, fmt, ap);
    va_end(ap);
    t->len += (size_t)n;
}

char *lm_text_take(lm_text *t)
{
    char *s = t->s ? t->s : strdup("");
    if (!s)
        abort();
    t->s = NULL;
    t->len = t->cap = 0;
    return s;
}
