/*
 * monitor-int.h - what the files of src/monitor share: the command table
 * and the internal entry points.  Not for use outside src/monitor.
 *
 * Every command is a row: a name, an argument spec, schema type names and
 * a handler.  Argument checking (unknown, missing, wrong type) and the
 * argument part of query-qmp-schema are both derived from the spec, so
 * the two cannot drift.
 */
#ifndef LM_MONITOR_INT_H
#define LM_MONITOR_INT_H

#include <stddef.h>
#include <json-c/json.h>

#include "monitor/monitor.h"
#include "tunables/tunables.h"

/* Argument types, with their schema builtin names (lm_argt_schema). */
typedef enum lm_argt {
    LM_ARG_STR,
    LM_ARG_BOOL,
    LM_ARG_INT,
    LM_ARG_NUMBER,      /* int or float */
    LM_ARG_OBJECT,
    LM_ARG_ARRAY,
    LM_ARG_ANY,
} lm_argt;

typedef struct lm_arg {
    const char *name;
    lm_argt type;
    bool optional;
    const char *schema_type;   /* schema type name; NULL = the builtin */
} lm_arg;

#define LM_CMD_DEPRECATED 1u    /* "deprecated" feature in schema/commands */
#define LM_CMD_OWN_ARGS   2u    /* handler checks its arguments itself */

struct lm_cmd;
typedef json_object *(*lm_cmd_handler)(lm_monitor *m, const struct lm_cmd *c,
                                       json_object *args, livemig_error *err);

typedef struct lm_cmd {
    char *name;
    const lm_arg *args;
    size_t nargs;
    const char *arg_type;      /* schema type of the arguments when
                                  LM_CMD_OWN_ARGS (NULL: "any") */
    const char *ret_type;      /* schema type of the return value */
    unsigned flags;
    lm_cmd_handler fn;
    /* extra commands (lm_monitor_add_command) */
    lm_monitor_cmd_fn ext_fn;
    void *ext_opaque;
} lm_cmd;

/* The monitor's engine and its table of tunables. */
livemig *lm_monitor_engine(lm_monitor *m);
lm_tunables *lm_monitor_tunables(lm_monitor *m);

/* Register a command (the row is copied; strings it points to must be
 * static, except the name, which is copied). */
bool lm_monitor_register(lm_monitor *m, const lm_cmd *c, livemig_error *err);
const lm_cmd *lm_monitor_find(lm_monitor *m, const char *name);
size_t lm_monitor_ncmds(lm_monitor *m);
const lm_cmd *lm_monitor_cmd_at(lm_monitor *m, size_t i);

/* Memory (or a copy of @s) that lives as long as the monitor. */
void *lm_monitor_alloc(lm_monitor *m, size_t size);
char *lm_monitor_strdup(lm_monitor *m, const char *s);

/* Tell the loop to return after the current command ("quit"). */
void lm_monitor_request_quit(lm_monitor *m);

/* Check @args (an object) against @c's spec; false with @err naming the
 * member and what to do. */
bool lm_args_check(const lm_cmd *c, json_object *args, livemig_error *err);

/* Run command @name with @args (borrowed; NULL = none) as a client would,
 * negotiation aside: argument checks, then the handler.  Returns the
 * return value (new reference, never NULL on success) or NULL with @err
 * set (class CommandNotFound for an unknown name). */
json_object *lm_monitor_call(lm_monitor *m, const char *name,
                             json_object *args, livemig_error *err);

/* The reply to one QMP request object @req (always an object: "return"
 * or "error", with the request's id): checks the envelope and the
 * negotiation state (*@negotiated, updated by qmp_capabilities), runs
 * the command.  Events it causes are queued, not sent. */
json_object *lm_monitor_reply(lm_monitor *m, json_object *req,
                              bool *negotiated);

/* qmp-cmds.c: register every built-in command. */
bool lm_qmp_register_builtins(lm_monitor *m, livemig_error *err);

/* qmp-objects.c: object-add, object-del, query-objects. */
bool lm_qmp_register_objects(lm_monitor *m, livemig_error *err);

/* qmp-schema.c: query-qmp-schema's return value (new reference). */
json_object *lm_qmp_schema(lm_monitor *m);

/* hmp.c: run one HMP command line; returns its output (malloc'd, never
 * NULL; errors are in the text as "Error: ...", as QEMU's HMP does). */
char *lm_hmp_run(lm_monitor *m, const char *line);

/* Schema builtin name of an argument type ("str", "int", ...). */
const char *lm_argt_schema(lm_argt t);

#endif
