/*
 * kv-resp.c - RESP2 request parser and reply writer (see kv-resp.h).
 *
 * The parser is a small state machine over the caller's buffer:
 *   IDLE      at the start of a command: '*' starts a multibulk, anything
 *             else an inline line;
 *   MB_ARGS   inside a multibulk: mb_left arguments to go; bulk_len < 0
 *             means the next thing is a "$<len>\r\n" header, else the
 *             bulk's bytes and their CRLF.
 * Each call resumes at pos, so a command arriving in many reads is scanned
 * once.  Lengths are checked against the limits before anything is
 * buffered for them, which is what keeps a "$536870912" from costing memory.
 */
#include "guest/kv/kv-resp.h"

#include <ctype.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { ST_IDLE, ST_INLINE, ST_MB_ARGS };

/* parse_inline: an empty line, nothing to run. */
#define SKIP_EMPTY ((kv_resp_result)-1)

/* A "*<n>" or "$<n>" line longer than this is refused (as Redis). */
#define MAX_COUNT_LINE (64u * 1024)

void kv_resp_init(kv_resp_parser *p, const kv_resp_limits *lim)
{
    memset(p, 0, sizeof(*p));
    if (lim) {
        p->lim = *lim;
    } else {
        p->lim.max_bulk = KV_RESP_MAX_BULK_DEFAULT;
        p->lim.max_inline = KV_RESP_MAX_INLINE_DEFAULT;
        p->lim.max_args = KV_RESP_MAX_ARGS_DEFAULT;
    }
    p->bulk_len = -1;
}

void kv_resp_free(kv_resp_parser *p)
{
    free(p->argv);
    p->argv = NULL;
    p->argc = p->argv_cap = 0;
}

void kv_resp_next(kv_resp_parser *p)
{
    p->argc = 0;
    p->state = ST_IDLE;
    p->start = p->pos;
    p->bulk_len = -1;
    p->mb_left = 0;
    /* A 1 M-argument command must not pin its argv for the connection's
     * life. */
    if (p->argv_cap > 4096) {
        free(p->argv);
        p->argv = NULL;
        p->argv_cap = 0;
    }
}

void kv_resp_shift(kv_resp_parser *p, size_t n)
{
    p->start -= n;
    p->pos -= n;
    for (size_t i = 0; i < p->argc; i++)
        p->argv[i].off -= n;
}

size_t kv_resp_pending_bytes(const kv_resp_parser *p, size_t buf_len)
{
    return (buf_len - p->start) + p->argv_cap * sizeof(kv_resp_arg);
}

static bool push_arg(kv_resp_parser *p, size_t off, size_t len,
                     uint64_t hint)
{
    if (p->argc == p->argv_cap) {
        size_t cap = p->argv_cap ? p->argv_cap * 2 : 8;
        /* Grow toward the announced count, but never trust it for more
         * than what already arrived justifies. */
        if (!p->argv_cap && hint > cap)
            cap = hint > 1024 ? 1024 : (size_t)hint;
        kv_resp_arg *n = realloc(p->argv, cap * sizeof(*n));
        if (!n)
            return false;
        p->argv = n;
        p->argv_cap = cap;
    }
    p->argv[p->argc++] = (kv_resp_arg){ off, len };
    return true;
}

static kv_resp_result fail(kv_resp_parser *p, const char *msg)
{
    p->error = msg;
    return KV_RESP_ERROR;
}

/* Parse a decimal line [s, e) as Redis's string2ll does: optional '-',
 * digits, no leading zeros except "0", no spaces. */
static bool parse_ll(const char *s, const char *e, long long *out)
{
    if (s == e || e - s > 20)
        return false;
    bool neg = false;
    if (*s == '-') {
        neg = true;
        if (++s == e)
            return false;
    }
    if (*s == '0' && e - s > 1)
        return false;
    unsigned long long v = 0;
    for (; s < e; s++) {
        if (!isdigit((unsigned char)*s))
            return false;
        unsigned d = (unsigned)(*s - '0');
        if (v > (ULLONG_MAX - d) / 10)
            return false;
        v = v * 10 + d;
    }
    if (neg) {
        if (v > (unsigned long long)LLONG_MAX + 1)
            return false;
        *out = v == (unsigned long long)LLONG_MAX + 1 ? LLONG_MIN
                                                      : -(long long)v;
    } else {
        if (v > LLONG_MAX)
            return false;
        *out = (long long)v;
    }
    return true;
}

static int hexval(int c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    c = tolower(c);
    return c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

/* Split the inline line [s, e) into arguments, unescaping quoted ones in
 * place.  Returns false on unbalanced quotes (or a closing quote not
 * followed by a space), as Redis's splitter. */
static kv_resp_result split_inline(kv_resp_parser *p, char *buf, size_t s,
                                   size_t e)
{
    size_t i = s;
    for (;;) {
        while (i < e && isspace((unsigned char)buf[i]))
            i++;
        if (i >= e)
            return KV_RESP_COMMAND;
        size_t w = i, begin = i;   /* write cursor, argument start */
        bool inq = false, insq = false;
        for (;;) {
            if (inq) {
                if (i >= e)
                    return fail(p, "Protocol error: unbalanced quotes in "
                                   "request");
                char c = buf[i];
                if (c == '\\' && i + 3 < e && buf[i + 1] == 'x' &&
                    hexval((unsigned char)buf[i + 2]) >= 0 &&
                    hexval((unsigned char)buf[i + 3]) >= 0) {
                    buf[w++] = (char)(hexval((unsigned char)buf[i + 2]) * 16 +
                                      hexval((unsigned char)buf[i + 3]));
                    i += 4;
                } else if (c == '\\' && i + 1 < e) {
                    char n = buf[i + 1];
                    buf[w++] = n == 'n' ? '\n' : n == 'r' ? '\r'
                             : n == 't' ? '\t' : n == 'b' ? '\b'
                             : n == 'a' ? '\a' : n;
                    i += 2;
                } else if (c == '"') {
                    if (i + 1 < e && !isspace((unsigned char)buf[i + 1]))
                        return fail(p, "Protocol error: unbalanced quotes "
                                       "in request");
                    i++;
                    break;
                } else {
                    buf[w++] = c;
                    i++;
                }
            } else if (insq) {
                if (i >= e)
                    return fail(p, "Protocol error: unbalanced quotes in "
                                   "request");
                char c = buf[i];
                if (c == '\\' && i + 1 < e && buf[i + 1] == '\'') {
                    buf[w++] = '\'';
                    i += 2;
                } else if (c == '\'') {
                    if (i + 1 < e && !isspace((unsigned char)buf[i + 1]))
                        return fail(p, "Protocol error: unbalanced quotes "
                                       "in request");
                    i++;
                    break;
                } else {
                    buf[w++] = c;
                    i++;
                }
            } else {
                if (i >= e || isspace((unsigned char)buf[i]))
                    break;
                char c = buf[i++];
                if (c == '"')
                    inq = true;
                else if (c == '\'')
                    insq = true;
                else
                    buf[w++] = c;
            }
        }
        if (!push_arg(p, begin, w - begin, 0))
            return KV_RESP_NOMEM;
    }
}

static kv_resp_result parse_inline(kv_resp_parser *p, char *buf, size_t len)
{
    char *nl = memchr(buf + p->pos, '\n', len - p->pos);
    if (!nl) {
        if (len - p->start > p->lim.max_inline)
            return fail(p, "Protocol error: too big inline request");
        p->pos = len;
        return KV_RESP_NEED_MORE;
    }
    size_t e = (size_t)(nl - buf);
    if (e - p->start > p->lim.max_inline)
        return fail(p, "Protocol error: too big inline request");
    size_t end = e;
    if (end > p->start && buf[end - 1] == '\r')
        end--;
    p->pos = e + 1;
    kv_resp_result r = split_inline(p, buf, p->start, end);
    if (r != KV_RESP_COMMAND)
        return r;
    return p->argc ? KV_RESP_COMMAND : SKIP_EMPTY;
}

/* Find the CRLF-terminated line starting at p->pos; its end (the '\r') in
 * *eol.  False if not complete yet (or, with *err set, too long). */
static bool find_line(kv_resp_parser *p, const char *buf, size_t len,
                      size_t *eol, bool *too_long)
{
    *too_long = false;
    const char *cr = memchr(buf + p->pos, '\r', len - p->pos);
    if (!cr || (size_t)(cr - buf) + 1 >= len) {
        if (len - p->pos > MAX_COUNT_LINE)
            *too_long = true;
        return false;
    }
    *eol = (size_t)(cr - buf);
    if (*eol - p->pos > MAX_COUNT_LINE)
        *too_long = true;
    return !*too_long;
}

kv_resp_result kv_resp_parse(kv_resp_parser *p, char *buf, size_t len)
{
    for (;;) {
        if (p->pos >= len)
            return KV_RESP_NEED_MORE;
        if (p->state == ST_IDLE) {
            p->start = p->pos;
            if (buf[p->pos] != '*')
                p->state = ST_INLINE;
        }
        if (p->state == ST_INLINE) {
            kv_resp_result r = parse_inline(p, buf, len);
            if (r == SKIP_EMPTY) {
                kv_resp_next(p);
                continue;
            }
            return r;
        }
        if (p->state == ST_IDLE) {
            size_t eol;
            bool too_long;
            if (!find_line(p, buf, len, &eol, &too_long)) {
                if (too_long)
                    return fail(p, "Protocol error: too big mbulk count "
                                   "string");
                return KV_RESP_NEED_MORE;
            }
            long long n;
            if (!parse_ll(buf + p->pos + 1, buf + eol, &n) ||
                n > (long long)p->lim.max_args || n > INT_MAX)
                return fail(p, "Protocol error: invalid multibulk length");
            p->pos = eol + 2;
            if (n <= 0) {
                kv_resp_next(p);       /* "*0" / "*-1": nothing to run */
                continue;
            }
            p->state = ST_MB_ARGS;
            p->mb_left = (uint64_t)n;
            p->bulk_len = -1;
        }
        /* ST_MB_ARGS */
        while (p->mb_left) {
            if (p->bulk_len < 0) {
                if (p->pos >= len)
                    return KV_RESP_NEED_MORE;
                if (buf[p->pos] != '$') {
                    unsigned char c = (unsigned char)buf[p->pos];
                    snprintf(p->errbuf, sizeof(p->errbuf),
                             "Protocol error: expected '$', got '%c'",
                             isprint(c) ? c : '?');
                    return fail(p, p->errbuf);
                }
                size_t eol;
                bool too_long;
                if (!find_line(p, buf, len, &eol, &too_long)) {
                    if (too_long)
                        return fail(p, "Protocol error: too big bulk count "
                                       "string");
                    return KV_RESP_NEED_MORE;
                }
                long long n;
                if (!parse_ll(buf + p->pos + 1, buf + eol, &n) || n < 0 ||
                    (unsigned long long)n > p->lim.max_bulk)
                    return fail(p, "Protocol error: invalid bulk length");
                p->pos = eol + 2;
                p->bulk_len = n;
            }
            if (len - p->pos < (size_t)p->bulk_len + 2)
                return KV_RESP_NEED_MORE;
            if (!push_arg(p, p->pos, (size_t)p->bulk_len, p->mb_left))
                return KV_RESP_NOMEM;
            /* Like Redis, the two bytes after a bulk are skipped unread. */
            p->pos += (size_t)p->bulk_len + 2;
            p->bulk_len = -1;
            p->mb_left--;
        }
        return KV_RESP_COMMAND;
    }
}

/* ---- replies ------------------------------------------------------------ */

void kv_out_free(kv_out *o)
{
    free(o->p);
    memset(o, 0, sizeof(*o));
}

void kv_out_reset(kv_out *o)
{
    o->len = 0;
}

static bool reserve(kv_out *o, size_t more)
{
    if (o->oom)
        return false;
    if (o->len + more <= o->cap)
        return true;
    size_t cap = o->cap ? o->cap : 256;
    while (cap < o->len + more)
        cap *= 2;
    char *n = realloc(o->p, cap);
    if (!n) {
        o->oom = true;
        return false;
    }
    o->p = n;
    o->cap = cap;
    return true;
}

void kv_out_raw(kv_out *o, const void *data, size_t len)
{
    if (len && reserve(o, len)) {
        memcpy(o->p + o->len, data, len);
        o->len += len;
    }
}

static void prefixed(kv_out *o, char c, long long v)
{
    char tmp[32];
    int n = snprintf(tmp, sizeof(tmp), "%c%lld\r\n", c, v);
    kv_out_raw(o, tmp, (size_t)n);
}

void kv_out_status(kv_out *o, const char *s)
{
    size_t n = strlen(s);
    if (!reserve(o, n + 3))
        return;
    o->p[o->len++] = '+';
    memcpy(o->p + o->len, s, n);
    o->len += n;
    memcpy(o->p + o->len, "\r\n", 2);
    o->len += 2;
}

void kv_out_error(kv_out *o, const char *fmt, ...)
{
    char tmp[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp + 1, sizeof(tmp) - 3, fmt, ap);
    va_end(ap);
    if (n < 0)
        n = 0;
    if ((size_t)n > sizeof(tmp) - 4)
        n = (int)sizeof(tmp) - 4;
    tmp[0] = '-';
    /* A reply line must not break the protocol. */
    for (int i = 1; i <= n; i++)
        if (tmp[i] == '\r' || tmp[i] == '\n')
            tmp[i] = ' ';
    memcpy(tmp + 1 + n, "\r\n", 2);
    kv_out_raw(o, tmp, (size_t)n + 3);
}

void kv_out_int(kv_out *o, int64_t v)
{
    prefixed(o, ':', v);
}

void kv_out_bulk(kv_out *o, const void *data, size_t len)
{
    prefixed(o, '$', (long long)len);
    kv_out_raw(o, data, len);
    kv_out_raw(o, "\r\n", 2);
}

void kv_out_bulk_str(kv_out *o, const char *s)
{
    kv_out_bulk(o, s, strlen(s));
}

void kv_out_bulk_int(kv_out *o, int64_t v)
{
    char tmp[32];
    int n = snprintf(tmp, sizeof(tmp), "%lld", (long long)v);
    kv_out_bulk(o, tmp, (size_t)n);
}

void kv_out_null(kv_out *o)
{
    kv_out_raw(o, "$-1\r\n", 5);
}

void kv_out_array(kv_out *o, size_t n)
{
    prefixed(o, '*', (long long)n);
}

void kv_out_null_array(kv_out *o)
{
    kv_out_raw(o, "*-1\r\n", 5);
}
