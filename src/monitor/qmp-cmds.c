/*
 * qmp-cmds.c - the built-in QMP commands, each a row with its argument
 * spec, and the argument checker derived from the specs.
 *
 * Tunable commands only route to src/tunables: the monitor never parses,
 * validates or formats a tunable itself.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/json-text.h"
#include "monitor/monitor-int.h"

/* ---- argument checking ------------------------------------------------- */

const char *lm_argt_schema(lm_argt t)
{
    switch (t) {
    case LM_ARG_STR: return "str";
    case LM_ARG_BOOL: return "bool";
    case LM_ARG_INT: return "int";
    case LM_ARG_NUMBER: return "number";
    case LM_ARG_OBJECT: return "any";
    case LM_ARG_ARRAY: return "any";
    case LM_ARG_ANY: return "any";
    }
    return "any";
}

static const char *argt_words(lm_argt t)
{
    switch (t) {
    case LM_ARG_STR: return "a string";
    case LM_ARG_BOOL: return "a boolean (true or false)";
    case LM_ARG_INT: return "an integer";
    case LM_ARG_NUMBER: return "a number";
    case LM_ARG_OBJECT: return "an object";
    case LM_ARG_ARRAY: return "an array";
    case LM_ARG_ANY: return "any value";
    }
    return "a value";
}

static const char *json_words(json_object *v)
{
    switch (json_object_get_type(v)) {
    case json_type_null: return "null";
    case json_type_boolean: return "a boolean";
    case json_type_double:
    case json_type_int: return lm_json_text(v);   /* as written */
    case json_type_object: return "an object";
    case json_type_array: return "an array";
    case json_type_string: return "a string";
    }
    return "something else";
}

static bool type_ok(lm_argt t, json_object *v)
{
    json_type jt = json_object_get_type(v);
    switch (t) {
    case LM_ARG_STR: return jt == json_type_string;
    case LM_ARG_BOOL: return jt == json_type_boolean;
    case LM_ARG_INT: return jt == json_type_int;
    case LM_ARG_NUMBER: return jt == json_type_int || jt == json_type_double;
    case LM_ARG_OBJECT: return jt == json_type_object;
    case LM_ARG_ARRAY: return jt == json_type_array;
    case LM_ARG_ANY: return true;
    }
    return false;
}

static void list_args(const lm_cmd *c, char *out, size_t len)
{
    size_t pos = 0;
    out[0] = '\0';
    for (size_t i = 0; i < c->nargs && pos < len; i++)
        pos += (size_t)snprintf(out + pos, len - pos, "%s'%s'",
                                i ? ", " : "", c->args[i].name);
}

bool lm_args_check(const lm_cmd *c, json_object *args, livemig_error *err)
{
    if (c->flags & LM_CMD_OWN_ARGS)
        return true;
    char names[256];
    json_object_object_foreach(args, key, val) {
        const lm_arg *a = NULL;
        for (size_t i = 0; i < c->nargs; i++)
            if (strcmp(c->args[i].name, key) == 0)
                a = &c->args[i];
        if (!a) {
            list_args(c, names, sizeof(names));
            if (c->nargs)
                livemig_error_set(err, "Parameter '%s' is unexpected: "
                                  "'%s' takes %s", key, c->name, names);
            else
                livemig_error_set(err, "Parameter '%s' is unexpected: "
                                  "'%s' takes no arguments", key, c->name);
            return false;
        }
        if (!type_ok(a->type, val)) {
            livemig_error_set(err, "Invalid parameter type for '%s', "
                              "expected: %s, got %s", key,
                              argt_words(a->type), json_words(val));
            return false;
        }
        if ((json_object_is_type(val, json_type_int) &&
             !lm_json_int_exact(val)) ||
            (json_object_is_type(val, json_type_double) &&
             !isfinite(json_object_get_double(val)))) {
            livemig_error_set(err, "Parameter '%s' is out of range: %s is "
                              "too large for a number here", key,
                              lm_json_text(val));
            return false;
        }
    }
    for (size_t i = 0; i < c->nargs; i++) {
        if (c->args[i].optional)
            continue;
        if (!json_object_object_get_ex(args, c->args[i].name, NULL)) {
            livemig_error_set(err, "Parameter '%s' is missing: '%s' needs "
                              "it (%s)", c->args[i].name, c->name,
                              argt_words(c->args[i].type));
            return false;
        }
    }
    return true;
}

static bool arg_bool(json_object *args, const char *name, bool dflt)
{
    json_object *v;
    if (!json_object_object_get_ex(args, name, &v))
        return dflt;
    return json_object_get_boolean(v);
}

static const char *arg_str(json_object *args, const char *name)
{
    json_object *v;
    if (!json_object_object_get_ex(args, name, &v))
        return NULL;
    return json_object_get_string(v);
}

/* ---- commands ---------------------------------------------------------- */

static json_object *cmd_qmp_capabilities(lm_monitor *m, const lm_cmd *c,
                                         json_object *args,
                                         livemig_error *err)
{
    (void)m; (void)c;
    json_object *en;
    if (json_object_object_get_ex(args, "enable", &en)) {
        size_t n = json_object_array_length(en);
        for (size_t i = 0; i < n; i++) {
            json_object *cap = json_object_array_get_idx(en, i);
            livemig_error_set(err, "Capability '%s' not available; this "
                              "monitor offers none",
                              json_object_get_string(cap));
            return NULL;
        }
    }
    return json_object_new_object();
}

static json_object *cmd_query_version(lm_monitor *m, const lm_cmd *c,
                                      json_object *args, livemig_error *err)
{
    (void)m; (void)c; (void)args; (void)err;
    json_object *r = json_object_new_object();
    json_object *q = json_object_new_object();
    json_object_object_add(q, "major",
                           json_object_new_int(LIVEMIG_VERSION_MAJOR));
    json_object_object_add(q, "minor",
                           json_object_new_int(LIVEMIG_VERSION_MINOR));
    json_object_object_add(q, "micro",
                           json_object_new_int(LIVEMIG_VERSION_MICRO));
    json_object_object_add(r, "qemu", q);
    json_object_object_add(r, "package",
                           json_object_new_string("livemig "
                                                  LIVEMIG_VERSION_STRING));
    return r;
}

static json_object *cmd_query_commands(lm_monitor *m, const lm_cmd *c,
                                       json_object *args, livemig_error *err)
{
    (void)c; (void)args; (void)err;
    json_object *r = json_object_new_array();
    for (size_t i = 0; i < lm_monitor_ncmds(m); i++) {
        const lm_cmd *k = lm_monitor_cmd_at(m, i);
        json_object *o = json_object_new_object();
        json_object_object_add(o, "name", json_object_new_string(k->name));
        if (k->flags & LM_CMD_DEPRECATED)
            json_object_object_add(o, "deprecated",
                                   json_object_new_boolean(true));
        json_object_array_add(r, o);
    }
    return r;
}

static json_object *cmd_query_qmp_schema(lm_monitor *m, const lm_cmd *c,
                                         json_object *args,
                                         livemig_error *err)
{
    (void)c; (void)args; (void)err;
    return lm_qmp_schema(m);
}

static json_object *cmd_query_status(lm_monitor *m, const lm_cmd *c,
                                     json_object *args, livemig_error *err)
{
    (void)c; (void)args; (void)err;
    livemig_runstate rs = livemig_vm_runstate(lm_monitor_engine(m));
    json_object *r = json_object_new_object();
    json_object_object_add(r, "running",
                           json_object_new_boolean(rs == LIVEMIG_RUN_RUNNING));
    json_object_object_add(r, "singlestep", json_object_new_boolean(false));
    json_object_object_add(r, "status",
                           json_object_new_string(livemig_runstate_name(rs)));
    return r;
}

static json_object *cmd_stop(lm_monitor *m, const lm_cmd *c,
                             json_object *args, livemig_error *err)
{
    (void)c; (void)args;
    livemig_vm_stop(lm_monitor_engine(m), err);
    return NULL;
}

static json_object *cmd_cont(lm_monitor *m, const lm_cmd *c,
                             json_object *args, livemig_error *err)
{
    (void)c; (void)args;
    livemig_vm_cont(lm_monitor_engine(m), err);
    return NULL;
}

static json_object *cmd_quit(lm_monitor *m, const lm_cmd *c,
                             json_object *args, livemig_error *err)
{
    (void)c; (void)args; (void)err;
    lm_monitor_request_quit(m);
    return NULL;
}

static json_object *cmd_migrate(lm_monitor *m, const lm_cmd *c,
                                json_object *args, livemig_error *err)
{
    (void)c;
    /* "detach" is accepted for QEMU compatibility: migrate always returns
     * at once and the outcome shows in query-migrate and MIGRATION. */
    if (arg_bool(args, "resume", false)) {
        livemig_migrate_resume(lm_monitor_engine(m), arg_str(args, "uri"),
                               err);
        return NULL;
    }
    livemig_migrate(lm_monitor_engine(m), arg_str(args, "uri"), err);
    return NULL;
}

static json_object *cmd_migrate_incoming(lm_monitor *m, const lm_cmd *c,
                                         json_object *args,
                                         livemig_error *err)
{
    (void)c;
    const char *uri = arg_str(args, "uri");
    if (strcmp(uri, "defer") == 0) {
        livemig_error_set(err, "'defer' is only for the daemon's "
                          "--incoming option; give migrate-incoming the "
                          "URI to listen on");
        return NULL;
    }
    livemig_incoming(lm_monitor_engine(m), uri, err);
    return NULL;
}

static json_object *cmd_migrate_cancel(lm_monitor *m, const lm_cmd *c,
                                       json_object *args, livemig_error *err)
{
    (void)c; (void)args;
    /* The engine refuses it past the point of no return (postcopy's
     * included), under its lock: see docs/cancel.md. */
    livemig_cancel(lm_monitor_engine(m), err);
    return NULL;
}

static json_object *cmd_migrate_recover(lm_monitor *m, const lm_cmd *c,
                                        json_object *args, livemig_error *err)
{
    (void)c;
    livemig_postcopy_recover(lm_monitor_engine(m), arg_str(args, "uri"), err);
    return NULL;
}

static json_object *cmd_migrate_pause(lm_monitor *m, const lm_cmd *c,
                                      json_object *args, livemig_error *err)
{
    (void)c; (void)args;
    livemig_migrate_pause(lm_monitor_engine(m), err);
    return NULL;
}

static json_object *cmd_migrate_start_postcopy(lm_monitor *m,
                                               const lm_cmd *c,
                                               json_object *args,
                                               livemig_error *err)
{
    (void)c; (void)args;
    livemig_start_postcopy(lm_monitor_engine(m), err);
    return NULL;
}

static json_object *cmd_migrate_continue(lm_monitor *m, const lm_cmd *c,
                                         json_object *args,
                                         livemig_error *err)
{
    (void)c;
    livemig_continue(lm_monitor_engine(m), arg_str(args, "state"), err);
    return NULL;
}

static json_object *cmd_mc_failover(lm_monitor *m, const lm_cmd *c,
                                    json_object *args, livemig_error *err)
{
    (void)c; (void)args;
    livemig_mc_failover(lm_monitor_engine(m), err);
    return NULL;
}

static json_object *cmd_query_migrate(lm_monitor *m, const lm_cmd *c,
                                      json_object *args, livemig_error *err)
{
    (void)c; (void)args;
    json_object *r = livemig_query_migrate(lm_monitor_engine(m));
    if (!r)
        livemig_error_set(err, "cannot report the migration status (out of "
                          "memory)");
    return r;
}

static json_object *cmd_set_parameters(lm_monitor *m, const lm_cmd *c,
                                       json_object *args, livemig_error *err)
{
    (void)c;
    lm_tunables_set_parameters(lm_monitor_tunables(m), args, err);
    return NULL;
}

static json_object *cmd_query_parameters(lm_monitor *m, const lm_cmd *c,
                                         json_object *args,
                                         livemig_error *err)
{
    (void)c; (void)args; (void)err;
    return lm_tunables_query_parameters(lm_monitor_tunables(m));
}

static json_object *cmd_set_capabilities(lm_monitor *m, const lm_cmd *c,
                                         json_object *args,
                                         livemig_error *err)
{
    (void)c;
    lm_tunables_set_capabilities(lm_monitor_tunables(m), args, err);
    return NULL;
}

static json_object *cmd_query_capabilities(lm_monitor *m, const lm_cmd *c,
                                           json_object *args,
                                           livemig_error *err)
{
    (void)c; (void)err;
    return lm_tunables_query_capabilities(lm_monitor_tunables(m),
                                          arg_bool(args, "extended", false));
}

static json_object *cmd_parameter_info(lm_monitor *m, const lm_cmd *c,
                                       json_object *args, livemig_error *err)
{
    (void)m; (void)c; (void)args; (void)err;
    return lm_tunables_parameter_info();
}

static json_object *cmd_legacy(lm_monitor *m, const lm_cmd *c,
                               json_object *args, livemig_error *err)
{
    lm_tunables_legacy_call(lm_monitor_tunables(m), c->name, args, err);
    return NULL;
}

static json_object *cmd_hmp(lm_monitor *m, const lm_cmd *c,
                            json_object *args, livemig_error *err)
{
    (void)c; (void)err;
    char *out = lm_hmp_run(m, arg_str(args, "command-line"));
    json_object *r = json_object_new_string(out);
    free(out);
    return r;
}

/* ---- the table --------------------------------------------------------- */

#define ARGS(a) a, sizeof(a) / sizeof((a)[0])
#define NOARGS NULL, 0

static const lm_arg a_caps[] = {
    { "enable", LM_ARG_ARRAY, true, "[QMPCapability]" },
};
static const lm_arg a_migrate[] = {
    { "uri", LM_ARG_STR, false, NULL },
    { "detach", LM_ARG_BOOL, true, NULL },
    { "resume", LM_ARG_BOOL, true, NULL },
};
static const lm_arg a_uri[] = {
    { "uri", LM_ARG_STR, false, NULL },
};
static const lm_arg a_continue[] = {
    { "state", LM_ARG_STR, false, "MigrationStatus" },
};
static const lm_arg a_set_caps[] = {
    { "capabilities", LM_ARG_ARRAY, false, "[MigrationCapabilityStatus]" },
};
static const lm_arg a_query_caps[] = {
    { "extended", LM_ARG_BOOL, true, NULL },
};
static const lm_arg a_hmp[] = {
    { "command-line", LM_ARG_STR, false, NULL },
    { "cpu-index", LM_ARG_INT, true, NULL },
};

static const lm_cmd builtins[] = {
    { .name = "qmp_capabilities", ARGS(a_caps), .ret_type = "any",
      .fn = cmd_qmp_capabilities },
    { .name = "query-commands", NOARGS, .ret_type = "[CommandInfo]",
      .fn = cmd_query_commands },
    { .name = "query-qmp-schema", NOARGS, .ret_type = "[SchemaInfo]",
      .fn = cmd_query_qmp_schema },
    { .name = "query-version", NOARGS, .ret_type = "VersionInfo",
      .fn = cmd_query_version },
    { .name = "query-status", NOARGS, .ret_type = "StatusInfo",
      .fn = cmd_query_status },
    { .name = "stop", NOARGS, .ret_type = "any", .fn = cmd_stop },
    { .name = "cont", NOARGS, .ret_type = "any", .fn = cmd_cont },
    { .name = "quit", NOARGS, .ret_type = "any", .fn = cmd_quit },
    { .name = "migrate", ARGS(a_migrate), .ret_type = "any",
      .fn = cmd_migrate },
    { .name = "migrate-incoming", ARGS(a_uri), .ret_type = "any",
      .fn = cmd_migrate_incoming },
    { .name = "migrate_cancel", NOARGS, .ret_type = "any",
      .fn = cmd_migrate_cancel },
    { .name = "migrate-cancel", NOARGS, .ret_type = "any",
      .fn = cmd_migrate_cancel },
    { .name = "migrate-continue", ARGS(a_continue), .ret_type = "any",
      .fn = cmd_migrate_continue },
    { .name = "migrate-start-postcopy", NOARGS, .ret_type = "any",
      .fn = cmd_migrate_start_postcopy },
    { .name = "migrate-recover", ARGS(a_uri), .ret_type = "any",
      .fn = cmd_migrate_recover },
    { .name = "migrate-pause", NOARGS, .ret_type = "any",
      .fn = cmd_migrate_pause },
    { .name = "query-migrate", NOARGS, .ret_type = "MigrationInfo",
      .fn = cmd_query_migrate },
    { .name = "mc-failover", NOARGS, .ret_type = "any",
      .fn = cmd_mc_failover },
    { .name = "migrate-set-parameters", NOARGS,
      .arg_type = "MigrateSetParameters", .ret_type = "any",
      .flags = LM_CMD_OWN_ARGS, .fn = cmd_set_parameters },
    { .name = "query-migrate-parameters", NOARGS,
      .ret_type = "MigrationParameters", .fn = cmd_query_parameters },
    { .name = "migrate-set-capabilities", ARGS(a_set_caps),
      .ret_type = "any", .fn = cmd_set_capabilities },
    { .name = "query-migrate-capabilities", ARGS(a_query_caps),
      .ret_type = "[MigrationCapabilityStatus]",
      .fn = cmd_query_capabilities },
    { .name = "query-migrate-parameter-info", NOARGS,
      .ret_type = "[MigrationParameterInfo]", .fn = cmd_parameter_info },
    { .name = "human-monitor-command", ARGS(a_hmp), .ret_type = "str",
      .fn = cmd_hmp },
};

static lm_argt argt_from_schema(const char *type)
{
    if (strcmp(type, "number") == 0)
        return LM_ARG_NUMBER;
    if (strcmp(type, "int") == 0)
        return LM_ARG_INT;
    if (strcmp(type, "bool") == 0)
        return LM_ARG_BOOL;
    return LM_ARG_STR;      /* "str" and enum types */
}

/* The legacy one-tunable commands, as the table describes them
 * (lm_tunables_legacy_info): each takes its one argument, checked by the
 * spec built here like every other command's. */
static bool register_legacy(lm_monitor *m, livemig_error *err)
{
    json_object *info = lm_tunables_legacy_info();
    size_t n = json_object_array_length(info);
    bool ok = true;
    for (size_t i = 0; i < n && ok; i++) {
        json_object *row = json_object_array_get_idx(info, i), *v;
        const char *cmd = NULL, *argname = NULL, *type = "any";
        if (json_object_object_get_ex(row, "command", &v))
            cmd = json_object_get_string(v);
        if (json_object_object_get_ex(row, "argument", &v))
            argname = json_object_get_string(v);
        if (json_object_object_get_ex(row, "type", &v))
            type = json_object_get_string(v);
        if (!cmd || !argname)
            continue;
        lm_arg *a = lm_monitor_alloc(m, sizeof(*a));
        char *aname = lm_monitor_strdup(m, argname);
        char *stype = lm_monitor_strdup(m, type);
        if (!a || !aname || !stype) {
            livemig_error_set(err, "out of memory adding command '%s'", cmd);
            ok = false;
            break;
        }
        *a = (lm_arg){ aname, argt_from_schema(type), false, stype };
        lm_cmd c = {
            .name = (char *)cmd,
            .args = a,
            .nargs = 1,
            .ret_type = "any",
            .flags = LM_CMD_DEPRECATED,
            .fn = cmd_legacy,
        };
        ok = lm_monitor_register(m, &c, err);
    }
    json_object_put(info);
    return ok;
}

bool lm_qmp_register_builtins(lm_monitor *m, livemig_error *err)
{
    for (size_t i = 0; i < sizeof(builtins) / sizeof(builtins[0]); i++)
        if (!lm_monitor_register(m, &builtins[i], err))
            return false;
    if (!register_legacy(m, err))
        return false;
    if (!lm_qmp_register_objects(m, err))
        return false;
    return true;
}
