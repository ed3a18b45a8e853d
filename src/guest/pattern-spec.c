/*
 * pattern-spec.c - parse "pattern,size=1G,threads=1,dirty-rate=50M,fill=random".
 *
 * Options are comma separated KEY=VALUE pairs in any order, each at most
 * once; the first item may be the bare guest name "pattern".  Sizes and
 * rates take K/M/G/T suffixes meaning powers of 1024 (as QEMU's sizes).
 */
#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "guest/pattern-int.h"

#define DEFAULT_SIZE (1ull << 30)
#define MAX_SIZE (1ull << 40)

static const char *const fill_names[] = {
    [LM_PATTERN_FILL_RANDOM] = "random",
    [LM_PATTERN_FILL_TEXT] = "text",
    [LM_PATTERN_FILL_ZERO] = "zero",
};

const char *lm_pattern_fill_name(lm_pattern_fill f)
{
    return (unsigned)f < sizeof(fill_names) / sizeof(fill_names[0])
               ? fill_names[f] : "?";
}

/* Parse "123", "64K", "1G" into bytes.  Rejects signs, empty numbers,
 * unknown suffixes and overflow. */
static bool parse_size(const char *s, uint64_t *out)
{
    if (!isdigit((unsigned char)s[0]))
        return false;
    errno = 0;
    char *end;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno)
        return false;
    unsigned shift = 0;
    switch (*end) {
    case '\0': break;
    case 'k': case 'K': shift = 10; end++; break;
    case 'm': case 'M': shift = 20; end++; break;
    case 'g': case 'G': shift = 30; end++; break;
    case 't': case 'T': shift = 40; end++; break;
    default: return false;
    }
    if (shift && (*end == 'b' || *end == 'B'))
        end++;
    if (*end)
        return false;
    if (shift && v > (UINT64_MAX >> shift))
        return false;
    *out = (uint64_t)v << shift;
    return true;
}

static bool parse_opt(lm_pattern_spec *s, const char *key, const char *val,
                      livemig_error *err)
{
    if (!strcmp(key, "size")) {
        uint64_t v;
        if (!parse_size(val, &v)) {
            livemig_error_set(err, "pattern guest: invalid size '%s': use a "
                              "number of bytes with an optional K, M, G or T "
                              "suffix, e.g. size=1G", val);
            return false;
        }
        if (v == 0 || v % LM_PATTERN_PAGE_SIZE) {
            livemig_error_set(err, "pattern guest: size '%s' is not a "
                              "positive multiple of the page size (%u bytes)",
                              val, LM_PATTERN_PAGE_SIZE);
            return false;
        }
        if (v > MAX_SIZE) {
            livemig_error_set(err, "pattern guest: size '%s' is larger than "
                              "the maximum of 1T", val);
            return false;
        }
        s->size = v;
    } else if (!strcmp(key, "threads")) {
        uint64_t v;
        if (!isdigit((unsigned char)val[0]) || !parse_size(val, &v) ||
            strpbrk(val, "kKmMgGtTbB") || v < 1 ||
            v > LM_PATTERN_MAX_THREADS) {
            livemig_error_set(err, "pattern guest: invalid threads '%s': use "
                              "a number from 1 to %u", val,
                              LM_PATTERN_MAX_THREADS);
            return false;
        }
        s->threads = (unsigned)v;
    } else if (!strcmp(key, "dirty-rate")) {
        uint64_t v;
        if (!strcmp(val, "max")) {
            s->dirty_rate = LM_PATTERN_RATE_MAX;
        } else if (parse_size(val, &v) && v != LM_PATTERN_RATE_MAX) {
            s->dirty_rate = v;
        } else {
            livemig_error_set(err, "pattern guest: invalid dirty-rate '%s': "
                              "use bytes per second with an optional K, M or "
                              "G suffix (e.g. 50M), 0 to stay idle after the "
                              "fill, or max", val);
            return false;
        }
    } else if (!strcmp(key, "fill")) {
        size_t n = sizeof(fill_names) / sizeof(fill_names[0]);
        size_t i;
        for (i = 0; i < n; i++)
            if (!strcmp(val, fill_names[i]))
                break;
        if (i == n) {
            livemig_error_set(err, "pattern guest: invalid fill '%s': use "
                              "random, text or zero", val);
            return false;
        }
        s->fill = (lm_pattern_fill)i;
    } else if (!strcmp(key, "outputs")) {
        if (!val[0]) {
            livemig_error_set(err, "pattern guest: outputs needs a file path, "
                              "e.g. outputs=/tmp/outputs.jsonl");
            return false;
        }
        free(s->outputs);
        s->outputs = strdup(val);
        if (!s->outputs) {
            livemig_error_set(err, "pattern guest: out of memory");
            return false;
        }
    } else {
        livemig_error_set(err, "pattern guest: unknown option '%s' (known: "
                          "size, threads, dirty-rate, fill, outputs)", key);
        return false;
    }
    return true;
}

bool lm_pattern_spec_parse(const char *spec, lm_pattern_spec *out,
                           livemig_error *err)
{
    lm_pattern_spec s = {
        .size = DEFAULT_SIZE, .threads = 1, .dirty_rate = 0,
        .fill = LM_PATTERN_FILL_RANDOM, .outputs = NULL,
    };
    if (!spec) {
        *out = s;
        return true;
    }
    char *copy = strdup(spec);
    if (!copy) {
        livemig_error_set(err, "pattern guest: out of memory");
        return false;
    }
    static const char *const keys[] = { "size", "threads", "dirty-rate",
                                        "fill", "outputs" };
    bool seen[5] = { false };
    bool ok = true;
    bool first = true;
    char *save = NULL;
    for (char *item = strtok_r(copy, ",", &save); item && ok;
         item = strtok_r(NULL, ",", &save), first = false) {
        char *eq = strchr(item, '=');
        if (!eq) {
            if (first && !strcmp(item, "pattern"))
                continue;
            if (first)
                livemig_error_set(err, "unknown guest '%s': the built-in "
                                  "guest is 'pattern'", item);
            else
                livemig_error_set(err, "pattern guest: option '%s' needs a "
                                  "value (KEY=VALUE)", item);
            ok = false;
            break;
        }
        *eq = '\0';
        const char *key = item, *val = eq + 1;
        for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
            if (!strcmp(key, keys[i])) {
                if (seen[i]) {
                    livemig_error_set(err, "pattern guest: option '%s' given "
                                      "twice", key);
                    ok = false;
                }
                seen[i] = true;
            }
        }
        if (ok && !val[0] && strcmp(key, "outputs")) {
            livemig_error_set(err, "pattern guest: option '%s' has an empty "
                              "value", key);
            ok = false;
        }
        if (ok)
            ok = parse_opt(&s, key, val, err);
    }
    free(copy);
    if (ok && s.size / LM_PATTERN_PAGE_SIZE < s.threads) {
        livemig_error_set(err, "pattern guest: %u threads need at least %u "
                          "pages, but size=%llu has only %llu", s.threads,
                          s.threads, (unsigned long long)s.size,
                          (unsigned long long)(s.size / LM_PATTERN_PAGE_SIZE));
        ok = false;
    }
    if (!ok) {
        lm_pattern_spec_clear(&s);
        return false;
    }
    *out = s;
    return true;
}

void lm_pattern_spec_clear(lm_pattern_spec *s)
{
    free(s->outputs);
    s->outputs = NULL;
}
