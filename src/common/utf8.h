/* utf8.h - strict UTF-8 checks for text that crosses a trust boundary
 * (QMP requests and replies, names read from a migration stream). */
#ifndef LM_UTF8_H
#define LM_UTF8_H

#include <stdbool.h>
#include <stddef.h>

/* Length of the valid UTF-8 sequence at @s (at most @len bytes): 1 to 4,
 * or 0 when the bytes there are not valid UTF-8 (overlong forms,
 * surrogates, code points above U+10FFFF and truncated sequences are
 * all invalid). */
size_t lm_utf8_seq(const unsigned char *s, size_t len);

/* True if all @len bytes of @s are valid UTF-8; else false with the
 * offset of the first bad byte in @bad (may be NULL). */
bool lm_utf8_valid(const char *s, size_t len, size_t *bad);

/* @s with every byte that is not part of valid UTF-8 replaced by
 * @repl (a NUL-terminated string).  malloc'd; NULL when out of memory. */
char *lm_utf8_replace_invalid(const char *s, size_t len, const char *repl);

/* In place: every byte of the NUL-terminated @s that is not part of
 * valid UTF-8, and every control character, becomes '?' (text from a
 * peer, about to go into a message). */
void lm_utf8_scrub(char *s);

#endif
