/*
 * json-text.h - numbers as the peer wrote them.
 *
 * json-c clamps an integer it cannot hold (99999999999999999999999999
 * becomes 18446744073709551615) and reads 1e400 as infinity.  The
 * monitor's strict reading (src/monitor/qmp-strict.c) attaches the raw
 * text to such integers, and json-c keeps the text of every other
 * number, so an error can quote the value as it was sent.
 */
#ifndef LM_JSON_TEXT_H
#define LM_JSON_TEXT_H

#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <json-c/json.h>

/* @v as JSON text (numbers as written). */
static inline const char *lm_json_text(json_object *v)
{
    return json_object_to_json_string_ext(v, JSON_C_TO_STRING_PLAIN |
                                             JSON_C_TO_STRING_NOSLASHESCAPE);
}

/* True if the integer @v holds exactly the number that was written. */
static inline bool lm_json_int_exact(json_object *v)
{
    const char *t = lm_json_text(v);
    char canon[32];
    if (t[0] == '-')
        snprintf(canon, sizeof(canon), "%" PRId64, json_object_get_int64(v));
    else
        snprintf(canon, sizeof(canon), "%" PRIu64, json_object_get_uint64(v));
    return strcmp(t, canon) == 0 || strcmp(t, "-0") == 0;
}

#endif
