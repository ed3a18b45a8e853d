/*
 * tunables-parse.c - the HMP side of a value: text with unit suffixes in,
 * text with units out.
 *
 * Numbers are parsed exactly, in integers: "1.5G" is 1 * 2^30 plus
 * 5/10 * 2^30, with the fraction reduced by gcd(multiplier, 10^digits)
 * first so that no intermediate overflows.  A fraction that does not come
 * out whole ("0.1K" bytes, "0.5ms") is refused rather than silently cut,
 * except for legacy seconds, which round to the nearest millisecond as the
 * QMP form of migrate_set_downtime does.
 *
 *   size     1024, 1024B, 64k, 512M, 1.5G, 2T, 1P  (K.. = powers of 1024;
 *            KB/KiB spellings too; case-insensitive)
 *   ms       300, 300ms, 2s, 0.5s
 *   percent  50, 50%
 *   uint     digits
 *   bool     on/off (any case)
 *   enum     one of the row's values, exactly
 *   string   as is
 */
#include <ctype.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "tunables-int.h"

typedef struct lm_suffix {
    const char *s;
    uint64_t mult;
} lm_suffix;

#define KI (UINT64_C(1) << 10)
#define MI (UINT64_C(1) << 20)
#define GI (UINT64_C(1) << 30)
#define TI (UINT64_C(1) << 40)
#define PI (UINT64_C(1) << 50)

static const lm_suffix size_suffixes[] = {
    { "", 1 }, { "b", 1 },
    { "k", KI }, { "kb", KI }, { "kib", KI },
    { "m", MI }, { "mb", MI }, { "mib", MI },
    { "g", GI }, { "gb", GI }, { "gib", GI },
    { "t", TI }, { "tb", TI }, { "tib", TI },
    { "p", PI }, { "pb", PI }, { "pib", PI },
    { NULL, 0 },
};
static const lm_suffix ms_suffixes[] = {
    { "", 1 }, { "ms", 1 }, { "s", 1000 }, { NULL, 0 },
};
static const lm_suffix seconds_suffixes[] = {
    { "", 1000 }, { "s", 1000 }, { "ms", 1 }, { NULL, 0 },
};
static const lm_suffix percent_suffixes[] = {
    { "", 1 }, { "%", 1 }, { NULL, 0 },
};
static const lm_suffix plain_suffixes[] = {
    { "", 1 }, { NULL, 0 },
};

typedef enum {
    P_OK,
    P_GARBAGE,
    P_NEGATIVE,
    P_OVERFLOW,
    P_FRACTION,   /* does not come out whole */
} parse_res;

static uint64_t gcd(uint64_t a, uint64_t b)
{
    while (b) {
        uint64_t r = a % b;
        a = b;
        b = r;
    }
    return a;
}

/* "<digits>[.<digits>][ ]<suffix>" times the suffix's multiplier. */
static parse_res parse_scaled(const char *s, const lm_suffix *sfx,
                              bool round, uint64_t *out)
{
    uint64_t ip = 0, frac = 0, pow10 = 1, mult = 0, v;
    bool ovf = false, inexact = false, digits = false;
    const char *end;
    size_t slen;

    while (isspace((unsigned char)*s))
        s++;
    if (*s == '-')
        return P_NEGATIVE;
    for (; isdigit((unsigned char)*s); s++) {
        digits = true;
        if (__builtin_mul_overflow(ip, 10, &ip) ||
            __builtin_add_overflow(ip, (uint64_t)(*s - '0'), &ip))
            ovf = true;
    }
    if (*s == '.') {
        s++;
        for (; isdigit((unsigned char)*s); s++) {
            digits = true;
            if (pow10 > UINT64_MAX / 100) {    /* keep 18 digits at most */
                inexact |= *s != '0';
                continue;
            }
            frac = frac * 10 + (uint64_t)(*s - '0');
            pow10 *= 10;
        }
    }
    if (!digits)
        return P_GARBAGE;
    while (isspace((unsigned char)*s))
        s++;
    end = s + strlen(s);
    while (end > s && isspace((unsigned char)end[-1]))
        end--;
    slen = (size_t)(end - s);
    for (const lm_suffix *x = sfx; x->s; x++)
        if (strlen(x->s) == slen && strncasecmp(x->s, s, slen) == 0)
            mult = x->mult;
    if (!mult)
        return P_GARBAGE;
    if (ovf || __builtin_mul_overflow(ip, mult, &v))
        return P_OVERFLOW;

    if (frac) {
        uint64_t g, m, den, num, q, rem;
        for (;;) {
            g = gcd(mult, pow10);
            m = mult / g;
            den = pow10 / g;
            if (!__builtin_mul_overflow(frac, m, &num))
                break;
            inexact |= frac % 10 != 0;     /* drop the last digit */
            frac /= 10;
            pow10 /= 10;
        }
        q = num / den;
        rem = num % den;
        if (rem || inexact) {
            if (!round)
                return P_FRACTION;
            q += rem >= den - rem;
        }
        if (__builtin_add_overflow(v, q, &v))
            return P_OVERFLOW;
    }
    *out = v;
    return P_OK;
}

bool lm_parse_seconds_ms(const char *s, uint64_t *ms)
{
    return parse_scaled(s, seconds_suffixes, true, ms) == P_OK;
}

/* What a value of this row looks like, for error messages. */
static void row_form(const lm_row *r, char *buf, size_t size)
{
    switch (r->type) {
    case LM_T_SIZE:
        snprintf(buf, size, "use a number of bytes with an optional K, M, G, "
                 "T or P suffix (powers of 1024), e.g. 512M or 1.5G");
        break;
    case LM_T_MS:
        snprintf(buf, size, "use milliseconds, or a number with an ms or s "
                 "suffix, e.g. 300, 300ms or 0.5s");
        break;
    case LM_T_PERCENT:
        snprintf(buf, size, "use a whole number from %llu to %llu with an "
                 "optional %%, e.g. %llu%%", (unsigned long long)r->min,
                 (unsigned long long)r->max, (unsigned long long)r->def);
        break;
    default:
        snprintf(buf, size, "use a whole number from %llu to %llu",
                 (unsigned long long)r->min, (unsigned long long)r->max);
        break;
    }
}

static const char *row_noun(const lm_row *r)
{
    switch (r->type) {
    case LM_T_SIZE:    return "a size";
    case LM_T_MS:      return "a time";
    case LM_T_PERCENT: return "a percentage";
    default:           return "a whole number";
    }
}

static bool number_from_string(const lm_row *r, lm_params *p, const char *s,
                               livemig_error *err)
{
    const lm_suffix *sfx = r->type == LM_T_SIZE ? size_suffixes
                         : r->type == LM_T_MS ? ms_suffixes
                         : r->type == LM_T_PERCENT ? percent_suffixes
                         : plain_suffixes;
    char form[160], human[48];
    uint64_t v = 0;
    const char *kind = lm_row_kind(r);

    parse_res res = parse_scaled(s, sfx, false, &v);

    row_form(r, form, sizeof(form));
    switch (res) {
    case P_OK:
        break;
    case P_GARBAGE:
        livemig_error_set(err, "%s '%s' value '%s' is not %s; %s", kind,
                          r->name, s, row_noun(r), form);
        return false;
    case P_NEGATIVE:
        livemig_error_set(err, "%s '%s' value '%s' is negative; %s", kind,
                          r->name, s, form);
        return false;
    case P_FRACTION:
        livemig_error_set(err, "%s '%s' value '%s' is not a whole number of "
                          "%s; %s", kind, r->name, s,
                          r->type == LM_T_SIZE ? "bytes"
                          : r->type == LM_T_MS ? "milliseconds" : "units",
                          form);
        return false;
    case P_OVERFLOW:
        break;
    }
    if (res == P_OVERFLOW || v < r->min || v > r->max) {
        lm_human_size(r->max, r->unit, human, sizeof(human));
        livemig_error_set(err, "%s '%s' value '%s' is %s; it must be between "
                          "%llu and %llu%s%s%s%s%s", kind, r->name, s,
                          res == P_OVERFLOW ? "too large" : "out of range",
                          (unsigned long long)r->min,
                          (unsigned long long)r->max, r->unit[0] ? " " : "",
                          r->unit, human[0] ? " (" : "", human,
                          human[0] ? ")" : "");
        return false;
    }
    return lm_row_store_uint(r, p, v, err);
}

bool lm_row_from_string(const lm_row *r, lm_params *p, const char *s,
                        livemig_error *err)
{
    char list[256];
    unsigned idx;
    size_t len;

    if (!s)
        s = "";
    switch (r->type) {
    case LM_T_BOOL:
        /* on/off only, as QEMU's HMP: "yes" or "1" would be guesses. */
        if (strcasecmp(s, "on") == 0 || strcasecmp(s, "off") == 0) {
            *lm_row_bool(r, p) = strcasecmp(s, "on") == 0;
            return true;
        }
        livemig_error_set(err, "%s '%s' value '%s' is not on or off; use on "
                          "or off", lm_row_kind(r), r->name, s);
        return false;
    case LM_T_ENUM:
        if (lm_row_enum_index(r, s, &idx)) {
            *lm_row_enum(r, p) = idx;
            return true;
        }
        lm_row_enum_list(r, ", ", list, sizeof(list));
        livemig_error_set(err, "%s '%s' value '%s' is not one of %s",
                          lm_row_kind(r), r->name, s, list);
        return false;
    case LM_T_STRING:
        len = strlen(s);
        if (len >= r->size) {
            livemig_error_set(err, "%s '%s' must be at most %zu bytes long, "
                              "got %zu", lm_row_kind(r), r->name,
                              r->size - 1, len);
            return false;
        }
        memcpy(lm_row_str(r, p), s, len + 1);
        return true;
    default:
        return number_from_string(r, p, s, err);
    }
}

/* ---- output ----------------------------------------------------------- */

void lm_human_size(uint64_t v, const char *unit, char *buf, size_t size)
{
    static const char units[] = "KMGTPE";
    int k = -1;

    buf[0] = '\0';
    if (v < KI)
        return;
    while (k < 5 && v % KI == 0) {
        v /= KI;
        k++;
    }
    if (k >= 0)
        snprintf(buf, size, "%llu %ci%s", (unsigned long long)v, units[k],
                 unit[0] == 'B' ? unit : "B");
}

void lm_row_format_value(const lm_row *r, const lm_params *p, char *buf,
                         size_t size)
{
    lm_params *q = (lm_params *)p;   /* the accessors only read here */
    char human[48];
    size_t len;
    const char *v;

    switch (r->type) {
    case LM_T_BOOL:
        snprintf(buf, size, "%s", *lm_row_bool(r, q) ? "on" : "off");
        break;
    case LM_T_ENUM:
        v = lm_row_enum_value(r, *lm_row_enum(r, q), &len);
        snprintf(buf, size, "%.*s", (int)len, v);
        break;
    case LM_T_STRING:
        snprintf(buf, size, "'%s'", lm_row_str(r, q));
        break;
    default:
        human[0] = '\0';
        if (r->type == LM_T_SIZE)
            lm_human_size(*lm_row_u64(r, q), r->unit, human, sizeof(human));
        snprintf(buf, size, "%llu%s%s%s%s%s",
                 (unsigned long long)*lm_row_u64(r, q),
                 r->unit[0] && strcmp(r->unit, "%") != 0 ? " " : "", r->unit,
                 human[0] ? " (" : "", human, human[0] ? ")" : "");
        break;
    }
}

static char *format_rows(lm_tunables *t, bool caps)
{
    lm_text out = { 0 };
    lm_params p;
    char val[400];

    lm_tunables_snapshot(t, &p);
    for (size_t i = 0; i < lm_nrows; i++) {
        if (lm_rows[i].cap != caps)
            continue;
        lm_row_format_value(&lm_rows[i], &p, val, sizeof(val));
        lm_text_add(&out, "%s: %s\n", lm_rows[i].name, val);
    }
    return lm_text_take(&out);
}

char *lm_tunables_format_parameters(lm_tunables *t)
{
    return format_rows(t, false);
}

char *lm_tunables_format_capabilities(lm_tunables *t)
{
    return format_rows(t, true);
}
