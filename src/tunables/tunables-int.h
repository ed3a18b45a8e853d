/*
 * tunables-int.h - the row array derived from tunables.def, and the
 * helpers the tunables files share.  Not for use outside src/tunables.
 *
 * A row describes one parameter or capability; its value lives in an
 * lm_params at .off (.size bytes), typed by .type:
 *   LM_T_BOOL                              bool
 *   LM_T_UINT / SIZE / MS / PERCENT        uint64_t
 *   LM_T_ENUM                              unsigned (index into .vals)
 *   LM_T_STRING                            char[.size], NUL-terminated
 * Capabilities are LM_T_BOOL rows with .cap set and .mut SETUP_ONLY.
 */
#ifndef LM_TUNABLES_INT_H
#define LM_TUNABLES_INT_H

#include <stddef.h>

#include "tunables.h"

typedef struct lm_row {
    const char *name;      /* canonical QMP name */
    const char *doc;
    const char *since;
    const char *unit;      /* "" when none */
    const char *vals;      /* enum rows: "a|b|c"; else NULL */
    const char *def_str;   /* string rows: default; else NULL */
    uint64_t def;          /* numeric: value; enum: index; bool: 0/1 */
    uint64_t min, max;     /* numeric rows */
    size_t off, size;      /* the member of lm_params */
    lm_ttype type;
    lm_tmut mut;
    unsigned flags;
    bool cap;
} lm_row;

typedef struct lm_alias_row {
    const char *alias;
    const char *target;
} lm_alias_row;

typedef struct lm_legacy_row {
    const char *command;
    const char *target;
    const char *arg;
    int kind;
} lm_legacy_row;

extern const lm_row lm_rows[];
extern const size_t lm_nrows;
extern const lm_alias_row lm_aliases[];
extern const size_t lm_naliases;
extern const lm_legacy_row lm_legacies[];
extern const size_t lm_nlegacies;

/* Row by canonical name, or NULL. */
const lm_row *lm_row_find(const char *name);
/* Row by canonical name or deprecated alias, or NULL. */
const lm_row *lm_row_lookup(const char *name);
/* "parameter" or "capability", for messages. */
const char *lm_row_kind(const lm_row *r);
/* "bool", "uint", "size", "ms", "percent", "enum", "string". */
const char *lm_ttype_name(lm_ttype t);
/* True for the uint64_t-valued types. */
bool lm_ttype_numeric(lm_ttype t);

/* Enum rows: number of values, the i-th value (not NUL-terminated: its
 * length goes to *len), the index of @s, and "a, b, c" for messages. */
size_t lm_row_enum_count(const lm_row *r);
const char *lm_row_enum_value(const lm_row *r, size_t i, size_t *len);
bool lm_row_enum_index(const lm_row *r, const char *s, unsigned *out);
void lm_row_enum_list(const lm_row *r, const char *sep, char *buf,
                      size_t size);
/* "ZeroPageDetection" for "zero-page-detection" (schema enum name). */
void lm_row_enum_type_name(const lm_row *r, char *buf, size_t size);

static inline uint64_t *lm_row_u64(const lm_row *r, lm_params *p)
{
    return (uint64_t *)((char *)p + r->off);
}
static inline bool *lm_row_bool(const lm_row *r, lm_params *p)
{
    return (bool *)((char *)p + r->off);
}
static inline unsigned *lm_row_enum(const lm_row *r, lm_params *p)
{
    return (unsigned *)((char *)p + r->off);
}
static inline char *lm_row_str(const lm_row *r, lm_params *p)
{
    return (char *)p + r->off;
}

/* Whether the row's value differs between @a and @b. */
bool lm_row_differs(const lm_row *r, const lm_params *a, const lm_params *b);

/* The row's value (or default) as QMP JSON, new reference. */
json_object *lm_row_to_json(const lm_row *r, const lm_params *p);
json_object *lm_row_default_json(const lm_row *r);

/* Store a checked value into @p; errors name the row and the rule. */
bool lm_row_from_json(const lm_row *r, lm_params *p, json_object *v,
                      livemig_error *err);
bool lm_row_store_uint(const lm_row *r, lm_params *p, uint64_t v,
                       livemig_error *err);

/* HMP: parse @s (suffixes allowed) into @p; errors name value and form. */
bool lm_row_from_string(const lm_row *r, lm_params *p, const char *s,
                        livemig_error *err);
/* Seconds with optional "s"/"ms" suffix, to milliseconds (legacy). */
bool lm_parse_seconds_ms(const char *s, uint64_t *ms);
/* Value as HMP text with unit, e.g. "300 ms", "1073741824 B/s (1 GiB/s)". */
void lm_row_format_value(const lm_row *r, const lm_params *p, char *buf,
                         size_t size);
/* "1 GiB" style when @v is an exact multiple of a binary unit, else "". */
void lm_human_size(uint64_t v, const char *unit, char *buf, size_t size);

/* A growing malloc'd string (abort on OOM, like the rest of livemig's
 * small text builders). */
typedef struct lm_text {
    char *s;
    size_t len, cap;
} lm_text;
void lm_text_add(lm_text *t, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* Returns the string (never NULL) and leaves @t empty. */
char *lm_text_take(lm_text *t);

#endif
