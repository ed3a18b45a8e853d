/*
 * qmp-strict.h - the monitor's strict reading of a QMP request (see
 * qmp-strict.c): RFC 8259 JSON, valid UTF-8, no NUL in a string (outside
 * "id"), no duplicate keys; integers json-c clamped, and the top-level
 * "id", print as they were written.
 */
#ifndef LM_QMP_STRICT_H
#define LM_QMP_STRICT_H

#include <stdbool.h>
#include <stddef.h>
#include <json-c/json.h>

#define LM_QMP_STRICT_MAX_DEPTH 64

/* Check the raw @text (@len bytes) of one value that json-c parsed into
 * @v.  True if it passes (@v may then carry raw-text serializers); else
 * false with a message for the peer in @why. */
bool lm_qmp_strict_check(const char *text, size_t len, json_object *v,
                         char *why, size_t whylen);

#endif
