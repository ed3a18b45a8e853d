/*
 * qmp-framing.h - split a QMP byte stream into JSON values.
 *
 * QMP input is a sequence of JSON values (objects, normally one per line,
 * but a value may arrive split across reads and one read may carry several
 * values).  A parser is fed whatever bytes arrived and calls back once per
 * complete value, in order.  It is a pure function of the bytes fed, with
 * no socket in sight, so it is unit-tested on its own and shared by the
 * monitor (server side) and the client library.
 *
 * Errors:
 *   - invalid JSON: the callback gets @error = "JSON parse error, <why>"
 *     and no value; the parser then discards input up to and including the
 *     next newline (the rest of the bad line) and starts afresh;
 *   - a value (or the garbage being skipped) longer than the size limit:
 *     lm_qmp_parser_feed() returns false after one callback with @error set
 *     and @oversize true; the parser is then unusable (the monitor drops
 *     such a client).
 *
 * A parser is owned by one thread; it has no locking.
 */
#ifndef LM_QMP_FRAMING_H
#define LM_QMP_FRAMING_H

#include <stdbool.h>
#include <stddef.h>
#include <json-c/json.h>

/* The monitor's limit for one input value. */
#define LM_QMP_MAX_INPUT (1u << 20)

typedef struct lm_qmp_parser lm_qmp_parser;

/* @value: a new reference the callee owns (NULL when @error is set).
 * @error: NULL, or a message for the peer.  @oversize: the error is the
 * size limit (the last callback of this parser). */
typedef void (*lm_qmp_value_fn)(void *opaque, json_object *value,
                                const char *error, bool oversize);

/* @max_len: largest value in bytes (whitespace before it included). */
lm_qmp_parser *lm_qmp_parser_new(size_t max_len);
void lm_qmp_parser_free(lm_qmp_parser *p);

/* Feed @len bytes.  Returns false once the size limit was exceeded (after
 * the callback reported it); further feeds are ignored and return false. */
bool lm_qmp_parser_feed(lm_qmp_parser *p, const char *buf, size_t len,
                        lm_qmp_value_fn fn, void *opaque);

/* Strict mode (the monitor's): each complete value is also checked by
 * lm_qmp_strict_check() on its raw text; a value that fails is reported
 * like a parse error (its line was already consumed whole).  Costs a
 * copy of the raw bytes of the value being parsed. */
void lm_qmp_parser_set_strict(lm_qmp_parser *p, bool strict);

/* True if a value has started but not completed (bytes are pending). */
bool lm_qmp_parser_pending(const lm_qmp_parser *p);

#endif
