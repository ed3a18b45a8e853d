/*
 * qmp-strict.c - a second, strict look at every QMP request.
 *
 * json-c parses leniently: it accepts single quotes, NaN and leading
 * zeros, keeps the last of two equal keys, cuts a key at a NUL byte,
 * passes invalid UTF-8 through and clamps integers it cannot hold.  Each
 * lets a request mean one thing to a proxy or a log in front of the
 * monitor and another to the monitor.  So the raw text of each value is
 * walked once more, beside the tree json-c built from it, by RFC 8259
 * plus the monitor's rules: strings are valid UTF-8 without lone
 * surrogate escapes, no string holds a NUL byte (except inside the
 * top-level "id", which is only echoed), and no object has a key twice.
 *
 * The walk also makes values print as they were written: every integer
 * json-c could not hold exactly carries its raw text (json-c keeps the
 * text of the other numbers itself), and so does the top-level "id",
 * with the whitespace between its tokens removed so a reply stays on one
 * line.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/utf8.h"
#include "monitor/qmp-strict.h"

typedef struct walk {
    const char *s;
    size_t len, pos;
    char *why;
    size_t whylen;
    char *key;              /* the decoded key being looked at */
    size_t keylen, keycap;
    bool failed;
} walk;

static bool fail(walk *w, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static bool fail(walk *w, const char *fmt, ...)
{
    if (w->failed)
        return false;
    w->failed = true;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(w->why, w->whylen, fmt, ap);
    va_end(ap);
    if (n >= 0 && (size_t)n < w->whylen)
        snprintf(w->why + n, w->whylen - (size_t)n, " (at byte %zu)", w->pos);
    return false;
}

static void ws(walk *w)
{
    while (w->pos < w->len && (w->s[w->pos] == ' ' || w->s[w->pos] == '\t' ||
                               w->s[w->pos] == '\n' || w->s[w->pos] == '\r'))
        w->pos++;
}

static bool key_put(walk *w, const char *p, size_t n)
{
    if (w->keylen + n + 1 > w->keycap) {
        size_t cap = w->keycap ? w->keycap * 2 : 64;
        while (cap < w->keylen + n + 1)
            cap *= 2;
        char *k = realloc(w->key, cap);
        if (!k)
            return fail(w, "out of memory checking QMP input");
        w->key = k;
        w->keycap = cap;
    }
    memcpy(w->key + w->keylen, p, n);
    w->keylen += n;
    w->key[w->keylen] = '\0';
    return true;
}

static int hex4(const char *p)
{
    int v = 0;
    for (int i = 0; i < 4; i++) {
        char c = p[i];
        v <<= 4;
        if (c >= '0' && c <= '9')
            v |= c - '0';
        else if (c >= 'a' && c <= 'f')
            v |= c - 'a' + 10;
        else if (c >= 'A' && c <= 'F')
            v |= c - 'A' + 10;
        else
            return -1;
    }
    return v;
}

static size_t utf8_put(unsigned cp, char *o)
{
    if (cp < 0x80) {
        o[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        o[0] = (char)(0xc0 | cp >> 6);
        o[1] = (char)(0x80 | (cp & 0x3f));
        return 2;
    }
    if (cp < 0x10000) {
        o[0] = (char)(0xe0 | cp >> 12);
        o[1] = (char)(0x80 | (cp >> 6 & 0x3f));
        o[2] = (char)(0x80 | (cp & 0x3f));
        return 3;
    }
    o[0] = (char)(0xf0 | cp >> 18);
    o[1] = (char)(0x80 | (cp >> 12 & 0x3f));
    o[2] = (char)(0x80 | (cp >> 6 & 0x3f));
    o[3] = (char)(0x80 | (cp & 0x3f));
    return 4;
}

/* A string at w->pos; decoded into w->key when @decode. */
static bool string(walk *w, bool decode, bool allow_nul)
{
    w->keylen = 0;
    if (decode && !key_put(w, "", 0))
        return false;
    w->pos++;                                   /* the opening quote */
    for (;;) {
        if (w->pos >= w->len)
            return fail(w, "QMP input has an unterminated string");
        unsigned char c = (unsigned char)w->s[w->pos];
        if (c == '"') {
            w->pos++;
            return true;
        }
        if (c < 0x20)
            return fail(w, "QMP input has a control character 0x%02x in a "
                        "string; escape it", c);
        if (c >= 0x80) {
            size_t n = lm_utf8_seq((const unsigned char *)w->s + w->pos,
                                   w->len - w->pos);
            if (!n)
                return fail(w, "QMP input is not valid UTF-8 (byte 0x%02x "
                            "in a string); send UTF-8 text", c);
            if (decode && !key_put(w, w->s + w->pos, n))
                return false;
            w->pos += n;
            continue;
        }
        if (c != '\\') {
            if (decode && !key_put(w, w->s + w->pos, 1))
                return false;
            w->pos++;
            continue;
        }
        if (w->pos + 1 >= w->len)
            return fail(w, "QMP input has an unterminated string");
        char e = w->s[w->pos + 1];
        const char *simple = strchr("\"\\/bfnrt", e);
        if (e && simple) {
            static const char out[] = "\"\\/\b\f\n\r\t";
            if (decode && !key_put(w, &out[simple - "\"\\/bfnrt"], 1))
                return false;
            w->pos += 2;
            continue;
        }
        if (e != 'u')
            return fail(w, "QMP input has an invalid escape '\\%c' in a "
                        "string", e >= 0x20 && e < 0x7f ? e : '?');
        int u = w->pos + 6 <= w->len ? hex4(w->s + w->pos + 2) : -1;
        if (u < 0)
            return fail(w, "QMP input has an invalid \\u escape in a string");
        unsigned cp = (unsigned)u;
        size_t used = 6;
        if (cp >= 0xdc00 && cp <= 0xdfff)
            return fail(w, "QMP input has a lone UTF-16 surrogate \\u%04x in "
                        "a string", cp);
        if (cp >= 0xd800 && cp <= 0xdbff) {
            int lo = w->pos + 12 <= w->len && w->s[w->pos + 6] == '\\' &&
                     w->s[w->pos + 7] == 'u'
                     ? hex4(w->s + w->pos + 8) : -1;
            if (lo < 0xdc00 || lo > 0xdfff)
                return fail(w, "QMP input has a lone UTF-16 surrogate "
                            "\\u%04x in a string", cp);
            cp = 0x10000 + ((cp - 0xd800) << 10) + ((unsigned)lo - 0xdc00);
            used = 12;
        }
        if (cp == 0 && !allow_nul)
            return fail(w, "QMP input has a NUL character (\\u0000) in a "
                        "string; command names, argument names, arguments "
                        "and HMP command lines cannot hold one");
        if (decode) {
            char b[4];
            if (!key_put(w, b, utf8_put(cp, b)))
                return false;
        }
        w->pos += used;
    }
}

/* An integer json-c could not hold prints as its raw text. */
static void keep_int_text(json_object *node, const char *raw, size_t n)
{
    if (!json_object_is_type(node, json_type_int))
        return;
    char canon[32];
    if (raw[0] == '-')
        snprintf(canon, sizeof(canon), "%lld",
                 (long long)json_object_get_int64(node));
    else
        snprintf(canon, sizeof(canon), "%llu",
                 (unsigned long long)json_object_get_uint64(node));
    if (strlen(canon) == n && memcmp(canon, raw, n) == 0)
        return;
    char *t = strndup(raw, n);
    if (t)
        json_object_set_serializer(node, json_object_userdata_to_json_string,
                                   t, json_object_free_userdata);
}

static bool digits(walk *w)
{
    size_t start = w->pos;
    while (w->pos < w->len && w->s[w->pos] >= '0' && w->s[w->pos] <= '9')
        w->pos++;
    return w->pos > start;
}

static bool number(walk *w, json_object *node)
{
    size_t start = w->pos;
    if (w->s[w->pos] == '-')
        w->pos++;
    if (w->pos < w->len && w->s[w->pos] == '0')
        w->pos++;
    else if (!digits(w))
        return fail(w, "QMP input has a malformed number");
    if (w->pos < w->len && w->s[w->pos] == '.') {
        w->pos++;
        if (!digits(w))
            return fail(w, "QMP input has a malformed number (digits must "
                        "follow '.')");
    }
    if (w->pos < w->len && (w->s[w->pos] == 'e' || w->s[w->pos] == 'E')) {
        w->pos++;
        if (w->pos < w->len && (w->s[w->pos] == '+' || w->s[w->pos] == '-'))
            w->pos++;
        if (!digits(w))
            return fail(w, "QMP input has a malformed number (digits must "
                        "follow the exponent)");
    }
    if (w->pos < w->len && w->s[w->pos] >= '0' && w->s[w->pos] <= '9')
        return fail(w, "QMP input has a number with a leading zero");
    keep_int_text(node, w->s + start, w->pos - start);
    return true;
}

static bool literal(walk *w, const char *word)
{
    size_t n = strlen(word);
    if (w->len - w->pos < n || memcmp(w->s + w->pos, word, n) != 0)
        return fail(w, "QMP input has an unexpected character '%c'",
                    w->s[w->pos] >= 0x20 && w->s[w->pos] < 0x7f
                    ? w->s[w->pos] : '?');
    w->pos += n;
    return true;
}

/* The text of s[from, to) without whitespace between tokens. */
static char *minify(const char *s, size_t from, size_t to)
{
    char *o = malloc(to - from + 1);
    if (!o)
        return NULL;
    size_t n = 0;
    bool in_str = false;
    for (size_t i = from; i < to; i++) {
        char c = s[i];
        if (in_str) {
            o[n++] = c;
            if (c == '\\' && i + 1 < to)
                o[n++] = s[++i];
            else if (c == '"')
                in_str = false;
        } else if (c == '"') {
            in_str = true;
            o[n++] = c;
        } else if (c != ' ' && c != '\t' && c != '\n' && c != '\r') {
            o[n++] = c;
        }
    }
    o[n] = '\0';
    return o;
}

static bool value(walk *w, json_object *node, int depth, bool in_id);

static bool object(walk *w, json_object *node, int depth, bool in_id)
{
    w->pos++;
    ws(w);
    if (w->pos < w->len && w->s[w->pos] == '}') {
        w->pos++;
        return true;
    }
    json_object *seen = json_object_new_object();
    if (!seen)
        return fail(w, "out of memory checking QMP input");
    bool ok = true;
    for (;;) {
        ws(w);
        if (w->pos >= w->len || w->s[w->pos] != '"') {
            ok = fail(w, "QMP input has an object member without a quoted "
                      "name");
            break;
        }
        size_t key_at = w->pos;
        if (!(ok = string(w, true, false)))
            break;
        if (json_object_object_get_ex(seen, w->key, NULL)) {
            /* Quote at most 64 bytes, cut between characters. */
            int n = w->keylen > 64 ? 64 : (int)w->keylen;
            while (n > 0 && (size_t)n < w->keylen &&
                   ((unsigned char)w->key[n] & 0xc0) == 0x80)
                n--;
            w->pos = key_at;
            ok = fail(w, "QMP input has member '%.*s' twice in one object; "
                      "send each name once", n, w->key);
            break;
        }
        json_object_object_add(seen, w->key, NULL);
        json_object *child = NULL;
        json_object_object_get_ex(node, w->key, &child);
        bool is_id = depth == 0 && strcmp(w->key, "id") == 0;
        ws(w);
        if (w->pos >= w->len || w->s[w->pos] != ':') {
            ok = fail(w, "QMP input lacks ':' after a member name");
            break;
        }
        w->pos++;
        ws(w);
        size_t from = w->pos;
        if (!(ok = value(w, child, depth + 1, in_id || is_id)))
            break;
        if (is_id && child) {
            char *t = minify(w->s, from, w->pos);
            if (t)
                json_object_set_serializer(child,
                                           json_object_userdata_to_json_string,
                                           t, json_object_free_userdata);
        }
        ws(w);
        if (w->pos < w->len && w->s[w->pos] == ',') {
            w->pos++;
            continue;
        }
        if (w->pos < w->len && w->s[w->pos] == '}') {
            w->pos++;
            break;
        }
        ok = fail(w, "QMP input lacks ',' or '}' in an object");
        break;
    }
    json_object_put(seen);
    return ok;
}

static bool array(walk *w, json_object *node, int depth, bool in_id)
{
    w->pos++;
    ws(w);
    if (w->pos < w->len && w->s[w->pos] == ']') {
        w->pos++;
        return true;
    }
    for (size_t i = 0;; i++) {
        ws(w);
        json_object *child =
            json_object_is_type(node, json_type_array) &&
            i < json_object_array_length(node)
            ? json_object_array_get_idx(node, i) : NULL;
        if (!value(w, child, depth + 1, in_id))
            return false;
        ws(w);
        if (w->pos < w->len && w->s[w->pos] == ',') {
            w->pos++;
            continue;
        }
        if (w->pos < w->len && w->s[w->pos] == ']') {
            w->pos++;
            return true;
        }
        return fail(w, "QMP input lacks ',' or ']' in an array");
    }
}

static bool value(walk *w, json_object *node, int depth, bool in_id)
{
    if (depth > LM_QMP_STRICT_MAX_DEPTH)
        return fail(w, "QMP input nests deeper than %d levels",
                    LM_QMP_STRICT_MAX_DEPTH);
    ws(w);
    if (w->pos >= w->len)
        return fail(w, "QMP input ends where a value should be");
    char c = w->s[w->pos];
    switch (c) {
    case '{':
        if (node && !json_object_is_type(node, json_type_object))
            return fail(w, "QMP input could not be read consistently");
        return object(w, node, depth, in_id);
    case '[':
        return array(w, node, depth, in_id);
    case '"':
        return string(w, false, in_id);
    case 't':
        return literal(w, "true");
    case 'f':
        return literal(w, "false");
    case 'n':
        return literal(w, "null");
    default:
        if (c == '-' || (c >= '0' && c <= '9'))
            return number(w, node);
        return fail(w, "QMP input has an unexpected character '%c'",
                    c >= 0x20 && c < 0x7f ? c : '?');
    }
}

bool lm_qmp_strict_check(const char *text, size_t len, json_object *v,
                         char *why, size_t whylen)
{
    walk w = { .s = text, .len = len, .why = why, .whylen = whylen };
    bool ok = value(&w, v, 0, false);
    if (ok) {
        ws(&w);
        if (w.pos != w.len)
            ok = fail(&w, "QMP input has bytes after its value");
    }
    free(w.key);
    return ok;
}
