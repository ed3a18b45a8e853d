/*
 * qmp-framing.c - incremental JSON framing on top of json-c's tokener.
 *
 * json_tokener_parse_ex() keeps its state between calls, so a value split
 * across reads needs nothing special: it returns json_tokener_continue
 * until the value is complete.  When a value completes, char_offset says
 * how much of the chunk it used; the rest is fed again (it may hold the
 * next values).  The size limit is counted in bytes fed since the last
 * complete value, so a 10 MiB line costs at most the limit in memory.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "monitor/qmp-framing.h"
#include "monitor/qmp-strict.h"

struct lm_qmp_parser {
    json_tokener *tok;
    size_t max_len;
    size_t cur_len;     /* bytes fed into the value being parsed */
    bool skipping;      /* after an error: drop input up to a newline */
    bool dead;          /* size limit hit */
    bool strict;        /* check each value's raw text (qmp-strict.c) */
    char *raw;          /* strict: the bytes of the value so far */
    size_t raw_len, raw_cap;
};

lm_qmp_parser *lm_qmp_parser_new(size_t max_len)
{
    lm_qmp_parser *p = calloc(1, sizeof(*p));
    if (!p)
        return NULL;
    p->tok = json_tokener_new();
    if (!p->tok) {
        free(p);
        return NULL;
    }
    p->max_len = max_len;
    return p;
}

void lm_qmp_parser_free(lm_qmp_parser *p)
{
    if (!p)
        return;
    json_tokener_free(p->tok);
    free(p->raw);
    free(p);
}

void lm_qmp_parser_set_strict(lm_qmp_parser *p, bool strict)
{
    p->strict = strict;
}

/* Strict mode: keep the raw bytes of the value being parsed (bounded by
 * the size limit, which is checked before). */
static bool raw_add(lm_qmp_parser *p, const char *buf, size_t n)
{
    if (!p->strict)
        return true;
    if (p->raw_len + n > p->raw_cap) {
        size_t cap = p->raw_cap ? p->raw_cap : 4096;
        while (cap < p->raw_len + n)
            cap *= 2;
        char *r = realloc(p->raw, cap);
        if (!r)
            return false;
        p->raw = r;
        p->raw_cap = cap;
    }
    memcpy(p->raw + p->raw_len, buf, n);
    p->raw_len += n;
    return true;
}

/* A complete value: hand it on, or the reason strict mode refuses it. */
static void deliver(lm_qmp_parser *p, json_object *v, lm_qmp_value_fn fn,
                    void *opaque)
{
    if (p->strict) {
        char why[256];
        bool ok = lm_qmp_strict_check(p->raw, p->raw_len, v, why,
                                      sizeof(why));
        p->raw_len = 0;
        if (p->raw_cap > 65536) {   /* a big value passed: give it back */
            free(p->raw);
            p->raw = NULL;
            p->raw_cap = 0;
        }
        if (!ok) {
            json_object_put(v);
            fn(opaque, NULL, why, false);
            return;
        }
    }
    fn(opaque, v, NULL, false);
}

bool lm_qmp_parser_pending(const lm_qmp_parser *p)
{
    return p->cur_len > 0 && !p->skipping;
}

static bool over_limit(lm_qmp_parser *p, size_t add, lm_qmp_value_fn fn,
                       void *opaque)
{
    if (p->cur_len + add <= p->max_len)
        return false;
    char msg[128];
    snprintf(msg, sizeof(msg),
             "QMP input is longer than %zu bytes; closing the connection",
             p->max_len);
    p->dead = true;
    fn(opaque, NULL, msg, true);
    return true;
}

static size_t skip_line(lm_qmp_parser *p, const char *buf, size_t len)
{
    const char *nl = memchr(buf, '\n', len);
    if (!nl) {
        p->cur_len += len;
        return len;
    }
    p->skipping = false;
    p->cur_len = 0;
    return (size_t)(nl - buf) + 1;
}

static bool only_space(const char *buf, size_t len)
{
    for (size_t i = 0; i < len; i++)
        if (buf[i] != ' ' && buf[i] != '\t' && buf[i] != '\r' &&
            buf[i] != '\n')
            return false;
    return true;
}

bool lm_qmp_parser_feed(lm_qmp_parser *p, const char *buf, size_t len,
                        lm_qmp_value_fn fn, void *opaque)
{
    if (p->dead)
        return false;
    while (len > 0) {
        if (p->skipping) {
            size_t before = p->cur_len;
            size_t used = skip_line(p, buf, len);
            if (p->skipping) {
                p->cur_len = before;
                if (over_limit(p, used, fn, opaque))
                    return false;
                p->cur_len += used;
            }
            buf += used;
            len -= used;
            continue;
        }
        /* Whitespace between values is not part of any value. */
        if (p->cur_len == 0 && only_space(buf, len))
            return true;
        /* Feed at most what the limit still allows, plus one byte so that
         * exceeding it is seen; json-c takes an int length. */
        size_t room = p->max_len - p->cur_len + 1;
        int chunk = (int)(len < room ? len : room);
        json_object *v = json_tokener_parse_ex(p->tok, buf, chunk);
        enum json_tokener_error jerr = json_tokener_get_error(p->tok);
        if (v || jerr == json_tokener_success) {
            size_t used = json_tokener_get_parse_end(p->tok);
            if (used > (size_t)chunk)
                used = (size_t)chunk;
            json_tokener_reset(p->tok);
            p->cur_len = 0;
            bool kept = raw_add(p, buf, used);
            buf += used;
            len -= used;
            if (!kept) {
                json_object_put(v);
                p->raw_len = 0;
                fn(opaque, NULL, "out of memory reading QMP input", false);
                continue;
            }
            deliver(p, v, fn, opaque);
            continue;
        }
        if (jerr == json_tokener_continue) {
            if (over_limit(p, (size_t)chunk, fn, opaque))
                return false;
            if (!raw_add(p, buf, (size_t)chunk)) {
                json_tokener_reset(p->tok);
                p->raw_len = 0;
                p->skipping = true;
                fn(opaque, NULL, "out of memory reading QMP input", false);
                continue;
            }
            p->cur_len += (size_t)chunk;
            buf += chunk;
            len -= (size_t)chunk;
            continue;
        }
        /* A syntax error somewhere in this chunk: report it and drop the
         * rest of the line, counted from the start of this chunk. */
        char msg[256];
        snprintf(msg, sizeof(msg), "JSON parse error, %s",
                 json_tokener_error_desc(jerr));
        /* The offending byte may itself be the newline ending the line, so
         * skipping starts at it, not after it. */
        size_t bad = json_tokener_get_parse_end(p->tok);
        if (bad > (size_t)chunk)
            bad = (size_t)chunk;
        json_tokener_reset(p->tok);
        p->skipping = true;
        p->cur_len = 0;
        p->raw_len = 0;
        buf += bad;
        len -= bad;
        fn(opaque, NULL, msg, false);
    }
    return true;
}
