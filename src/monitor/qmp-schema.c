/*
 * qmp-schema.c - query-qmp-schema, generated.
 *
 * The result is a list of SchemaInfo entries as QEMU's introspection
 * defines them (qapi/introspect.json): "builtin", "enum", "array",
 * "object", "command" and "event" entries, each with a "name" and
 * "meta-type".  Every command's argument object comes from its argument
 * spec (the same spec that checks its arguments); the migration parameter
 * members, their features (live, deprecated, unstable) and the enums of
 * the tunables come from the table (lm_tunables_schema_members/_types).
 * Type names are readable rather than QEMU's masked numbers; QEMU says
 * consumers must not depend on type names, only on the structure.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "monitor/monitor-int.h"

typedef struct schema {
    json_object *list;
    json_object *defined;     /* name -> true, for every entry added */
    json_object *wanted;      /* name -> true, every type referred to */
} schema;

static void want(schema *s, const char *type)
{
    json_object_object_add(s->wanted, type, json_object_new_boolean(true));
}

static void add_entry(schema *s, json_object *e)
{
    json_object *n;
    if (json_object_object_get_ex(e, "name", &n))
        json_object_object_add(s->defined, json_object_get_string(n),
                               json_object_new_boolean(true));
    json_object_array_add(s->list, e);
}

static json_object *entry(const char *name, const char *meta)
{
    json_object *o = json_object_new_object();
    json_object_object_add(o, "name", json_object_new_string(name));
    json_object_object_add(o, "meta-type", json_object_new_string(meta));
    return o;
}

static json_object *member(const char *name, const char *type, bool optional)
{
    json_object *o = json_object_new_object();
    json_object_object_add(o, "name", json_object_new_string(name));
    json_object_object_add(o, "type", json_object_new_string(type));
    if (optional)
        json_object_object_add(o, "default", NULL);
    return o;
}

/* An object type from "name:type" strings; a leading '?' = optional. */
static void add_object(schema *s, const char *name, const char *const *mem)
{
    json_object *o = entry(name, "object");
    json_object *ms = json_object_new_array();
    for (size_t i = 0; mem && mem[i]; i++) {
        const char *spec = mem[i];
        bool opt = spec[0] == '?';
        if (opt)
            spec++;
        const char *colon = strchr(spec, ':');
        char mname[128];
        snprintf(mname, sizeof(mname), "%.*s", (int)(colon - spec), spec);
        json_object_array_add(ms, member(mname, colon + 1, opt));
        want(s, colon + 1);
    }
    json_object_object_add(o, "members", ms);
    add_entry(s, o);
}

static void add_enum(schema *s, const char *name, const char *const *vals,
                     size_t n)
{
    json_object *o = entry(name, "enum");
    json_object *ms = json_object_new_array(), *vs = json_object_new_array();
    for (size_t i = 0; i < n; i++) {
        json_object *m = json_object_new_object();
        json_object_object_add(m, "name", json_object_new_string(vals[i]));
        json_object_array_add(ms, m);
        json_object_array_add(vs, json_object_new_string(vals[i]));
    }
    json_object_object_add(o, "members", ms);
    json_object_object_add(o, "values", vs);
    add_entry(s, o);
}

static json_object *features1(const char *f)
{
    json_object *a = json_object_new_array();
    json_object_array_add(a, json_object_new_string(f));
    return a;
}

/* Arguments of a command from its spec. */
static const char *command_arg_type(schema *s, const lm_cmd *c, char *buf,
                                    size_t len)
{
    if (c->flags & LM_CMD_OWN_ARGS) {
        const char *t = c->arg_type ? c->arg_type : "any";
        want(s, t);
        return t;
    }
    if (c->nargs == 0)
        return "q_empty";
    snprintf(buf, len, "q_obj_%s-arg", c->name);
    json_object *o = entry(buf, "object");
    json_object *ms = json_object_new_array();
    for (size_t i = 0; i < c->nargs; i++) {
        const lm_arg *a = &c->args[i];
        const char *t = a->schema_type ? a->schema_type
                                       : lm_argt_schema(a->type);
        json_object_array_add(ms, member(a->name, t, a->optional));
        want(s, t);
    }
    json_object_object_add(o, "members", ms);
    add_entry(s, o);
    return buf;
}

static void add_commands(schema *s, lm_monitor *m)
{
    for (size_t i = 0; i < lm_monitor_ncmds(m); i++) {
        const lm_cmd *c = lm_monitor_cmd_at(m, i);
        char argt[160];
        const char *at = command_arg_type(s, c, argt, sizeof(argt));
        json_object *o = entry(c->name, "command");
        json_object_object_add(o, "arg-type", json_object_new_string(at));
        json_object_object_add(o, "ret-type",
                               json_object_new_string(c->ret_type));
        want(s, c->ret_type);
        json_object_object_add(o, "allow-oob",
                               json_object_new_boolean(false));
        if (c->flags & LM_CMD_DEPRECATED)
            json_object_object_add(o, "features", features1("deprecated"));
        add_entry(s, o);
    }
}

static void add_event(schema *s, const char *name, const char *arg_type)
{
    json_object *o = entry(name, "event");
    json_object_object_add(o, "arg-type", json_object_new_string(arg_type));
    want(s, arg_type);
    add_entry(s, o);
}

static void add_tunable_types(schema *s)
{
    json_object *types = lm_tunables_schema_types();
    size_t n = json_object_array_length(types);
    for (size_t i = 0; i < n; i++)
        add_entry(s, json_object_get(json_object_array_get_idx(types, i)));
    json_object_put(types);

    /* MigrationParameters: every parameter member, optional (a set names
     * only what it changes); QEMU names the set's argument type
     * MigrateSetParameters, with the same members. */
    static const char *const names[] = { "MigrationParameters",
                                         "MigrateSetParameters" };
    for (size_t k = 0; k < 2; k++) {
        json_object *ms = lm_tunables_schema_members();
        size_t nm = json_object_array_length(ms);
        for (size_t i = 0; i < nm; i++) {
            json_object *mem = json_object_array_get_idx(ms, i), *t;
            if (!json_object_object_get_ex(mem, "default", NULL))
                json_object_object_add(mem, "default", NULL);
            if (json_object_object_get_ex(mem, "type", &t))
                want(s, json_object_get_string(t));
        }
        json_object *o = entry(names[k], "object");
        json_object_object_add(o, "members", ms);
        add_entry(s, o);
    }
}

/* MigrationParameterInfo: the union of the members that
 * query-migrate-parameter-info returns, typed by their JSON values. */
static void add_parameter_info_type(schema *s)
{
    json_object *info = lm_tunables_parameter_info();
    json_object *seen = json_object_new_object();
    json_object *ms = json_object_new_array();
    size_t n = json_object_array_length(info);
    for (size_t i = 0; i < n; i++) {
        json_object_object_foreach(json_object_array_get_idx(info, i), k, v) {
            if (json_object_object_get_ex(seen, k, NULL))
                continue;
            const char *t = "any";
            switch (json_object_get_type(v)) {
            case json_type_string: t = "str"; break;
            case json_type_boolean: t = "bool"; break;
            case json_type_int: t = "int"; break;
            case json_type_array: t = "[str]"; break;
            default: break;
            }
            if (strcmp(k, "default") == 0)
                t = "any";
            json_object_object_add(seen, k, NULL);
            /* name, type and doc are in every entry; the rest may not be */
            bool always = !strcmp(k, "name") || !strcmp(k, "type") ||
                          !strcmp(k, "doc");
            json_object_array_add(ms, member(k, t, !always));
            want(s, t);
        }
    }
    json_object_put(seen);
    json_object_put(info);
    json_object *o = entry("MigrationParameterInfo", "object");
    json_object_object_add(o, "members", ms);
    add_entry(s, o);
}

static void add_fixed_types(schema *s)
{
    static const char *const builtins[][2] = {
        { "str", "string" }, { "int", "int" }, { "number", "number" },
        { "bool", "boolean" }, { "null", "null" }, { "any", "value" },
    };
    for (size_t i = 0; i < sizeof(builtins) / sizeof(builtins[0]); i++) {
        json_object *o = entry(builtins[i][0], "builtin");
        json_object_object_add(o, "json-type",
                               json_object_new_string(builtins[i][1]));
        add_entry(s, o);
    }
    add_object(s, "q_empty", NULL);

    static const char *const qmpcap[] = { "oob" };
    add_enum(s, "QMPCapability", qmpcap, 1);

    const char *status[LIVEMIG_STATUS__MAX];
    for (int i = 0; i < LIVEMIG_STATUS__MAX; i++)
        status[i] = livemig_status_name((livemig_status)i);
    add_enum(s, "MigrationStatus", status, LIVEMIG_STATUS__MAX);

    const char *rs[LIVEMIG_RUN_POSTMIGRATE + 1];
    for (int i = 0; i <= LIVEMIG_RUN_POSTMIGRATE; i++)
        rs[i] = livemig_runstate_name((livemig_runstate)i);
    add_enum(s, "RunState", rs, LIVEMIG_RUN_POSTMIGRATE + 1);

    static const char *const cmdinfo[] = { "name:str", "?deprecated:bool",
                                           NULL };
    add_object(s, "CommandInfo", cmdinfo);
    static const char *const schemainfo[] = { "name:str", "meta-type:str",
                                              NULL };
    add_object(s, "SchemaInfo", schemainfo);
    static const char *const triple[] = { "major:int", "minor:int",
                                          "micro:int", NULL };
    add_object(s, "VersionTriple", triple);
    static const char *const version[] = { "qemu:VersionTriple",
                                           "package:str", NULL };
    add_object(s, "VersionInfo", version);
    static const char *const status_info[] = { "running:bool",
                                               "singlestep:bool",
                                               "status:RunState", NULL };
    add_object(s, "StatusInfo", status_info);
    /* Plain entries carry "state"; extended ones (parameters, with
     * extended: true) carry "value" and, in queries, "live". */
    static const char *const capstatus[] = {
        "capability:MigrationCapability", "?state:bool", "?value:any",
        "?live:bool", NULL };
    add_object(s, "MigrationCapabilityStatus", capstatus);
    static const char *const info[] = {
        "?status:MigrationStatus", "?total-time:int", "?setup-time:int",
        "?expected-downtime:int", "?downtime:int", "?ram:any",
        "?downtime-breakdown:any", "?convergence:any", "?error-desc:str",
        "?progress-percent:number", "?cpu-throttle-percentage:int",
        "?xbzrle-cache:any", "?multifd:any", "?mc:any", NULL };
    add_object(s, "MigrationInfo", info);

    static const char *const ev_migration[] = { "status:MigrationStatus",
                                                NULL };
    add_object(s, "q_obj_MIGRATION-arg", ev_migration);
    static const char *const ev_pass[] = { "pass:int", NULL };
    add_object(s, "q_obj_MIGRATION_PASS-arg", ev_pass);
    static const char *const ev_conv[] = {
        "verdict:str", "?reason:str", "pass:int", "expected-downtime:int",
        "dirty-bytes-rate:int", "bandwidth:int", "?shrink-per-pass:number",
        NULL };
    add_object(s, "q_obj_MIGRATION_CONVERGENCE-arg", ev_conv);
    static const char *const ev_shutdown[] = { "guest:bool", "reason:str",
                                               NULL };
    add_object(s, "q_obj_SHUTDOWN-arg", ev_shutdown);
    add_event(s, "MIGRATION", "q_obj_MIGRATION-arg");
    add_event(s, "MIGRATION_PASS", "q_obj_MIGRATION_PASS-arg");
    add_event(s, "MIGRATION_CONVERGENCE", "q_obj_MIGRATION_CONVERGENCE-arg");
    add_event(s, "STOP", "q_empty");
    add_event(s, "RESUME", "q_empty");
    add_event(s, "SHUTDOWN", "q_obj_SHUTDOWN-arg");
    /* livemig's own: switchover-hold readiness */
    static const char *const ev_ready[] = { "ready:bool", "pass:int",
                                            "expected-downtime:int", NULL };
    add_object(s, "q_obj_MIGRATION_READY-arg", ev_ready);
    add_event(s, "MIGRATION_READY", "q_obj_MIGRATION_READY-arg");

    /* Micro-checkpointing (docs/micro-checkpointing.md). */
    static const char *const ev_mc_ckpt[] = { "role:str", "epoch:int", NULL };
    add_object(s, "q_obj_MC_CHECKPOINTING-arg", ev_mc_ckpt);
    static const char *const ev_mc_reason[] = { "epoch:int", "reason:str",
                                                NULL };
    add_object(s, "q_obj_MC_EPOCH_REASON-arg", ev_mc_reason);
    static const char *const ev_mc_hung[] = { "epoch:int", "reason:str",
                                              "silent-ms:int", NULL };
    add_object(s, "q_obj_MC_BACKUP_HUNG-arg", ev_mc_hung);
    static const char *const ev_mc_down[] = { "role:str", "epoch:int",
                                              "reason:str", NULL };
    add_object(s, "q_obj_MC_STOOD_DOWN-arg", ev_mc_down);
    static const char *const ev_mc_behind[] = {
        "epoch:int", "dirty-bytes:int", "link-bytes:int",
        "epoch-ms:int", "mc-delay:int", NULL };
    add_object(s, "q_obj_MC_FALLING_BEHIND-arg", ev_mc_behind);
    add_event(s, "MC_CHECKPOINTING", "q_obj_MC_CHECKPOINTING-arg");
    add_event(s, "MC_FAILOVER", "q_obj_MC_EPOCH_REASON-arg");
    add_event(s, "MC_FAILOVER_REFUSED", "q_obj_MC_EPOCH_REASON-arg");
    add_event(s, "MC_BACKUP_LOST", "q_obj_MC_EPOCH_REASON-arg");
    add_event(s, "MC_BACKUP_HUNG", "q_obj_MC_BACKUP_HUNG-arg");
    add_event(s, "MC_BACKUP_STOOD_DOWN", "q_obj_MC_EPOCH_REASON-arg");
    add_event(s, "MC_STOOD_DOWN", "q_obj_MC_STOOD_DOWN-arg");
    add_event(s, "MC_FALLING_BEHIND", "q_obj_MC_FALLING_BEHIND-arg");
}

/* object-add's arguments: a union on qom-type, as QEMU's ObjectOptions.
 * A secret's "data" is write-only: nothing ever returns it (the
 * "write-only" feature says so). */
static void add_object_types(schema *s)
{
    static const char *const types[] = { "secret", "tls-creds-x509",
                                         "tls-creds-psk", "authz-list" };
    add_enum(s, "ObjectType", types, 4);
    static const char *const endpoint[] = { "client", "server" };
    add_enum(s, "QCryptoTLSCredsEndpoint", endpoint, 2);
    static const char *const policy[] = { "deny", "allow" };
    add_enum(s, "QAuthZListPolicy", policy, 2);
    static const char *const format[] = { "exact", "glob" };
    add_enum(s, "QAuthZListFormat", format, 2);
    static const char *const secfmt[] = { "raw", "base64" };
    add_enum(s, "QCryptoSecretFormat", secfmt, 2);

    static const char *const secret[] = {
        "?data:str", "?file:str", "?format:QCryptoSecretFormat", NULL };
    add_object(s, "SecretProperties", secret);
    json_object *last = json_object_array_get_idx(
        s->list, json_object_array_length(s->list) - 1), *ms;
    if (json_object_object_get_ex(last, "members", &ms))
        json_object_object_add(json_object_array_get_idx(ms, 0), "features",
                               features1("write-only"));
    static const char *const x509[] = {
        "?verify-peer:bool", "?dir:str", "?endpoint:QCryptoTLSCredsEndpoint",
        "?priority:str", "?sanity-check:bool", "?passwordid:str", NULL };
    add_object(s, "TlsCredsX509Properties", x509);
    static const char *const psk[] = {
        "?verify-peer:bool", "?dir:str", "?endpoint:QCryptoTLSCredsEndpoint",
        "?priority:str", "?username:str", NULL };
    add_object(s, "TlsCredsPskProperties", psk);
    static const char *const rule[] = { "match:str", "policy:QAuthZListPolicy",
                                        "?format:QAuthZListFormat", NULL };
    add_object(s, "QAuthZListRule", rule);
    static const char *const authz[] = { "?policy:QAuthZListPolicy",
                                         "?rules:[QAuthZListRule]", NULL };
    add_object(s, "AuthZListProperties", authz);

    static const char *const base[] = { "qom-type:ObjectType", "id:str",
                                        NULL };
    add_object(s, "ObjectOptions", base);
    json_object *o = json_object_array_get_idx(
        s->list, json_object_array_length(s->list) - 1);
    static const char *const cases[][2] = {
        { "secret", "SecretProperties" },
        { "tls-creds-x509", "TlsCredsX509Properties" },
        { "tls-creds-psk", "TlsCredsPskProperties" },
        { "authz-list", "AuthZListProperties" },
    };
    json_object *vs = json_object_new_array();
    for (size_t i = 0; i < 4; i++) {
        json_object *v = json_object_new_object();
        json_object_object_add(v, "case", json_object_new_string(cases[i][0]));
        json_object_object_add(v, "type", json_object_new_string(cases[i][1]));
        json_object_array_add(vs, v);
    }
    json_object_object_add(o, "tag", json_object_new_string("qom-type"));
    json_object_object_add(o, "variants", vs);

    static const char *const propinfo[] = { "name:str", "type:str", NULL };
    add_object(s, "ObjectPropertyInfo", propinfo);
}

/* Array types ("[T]") for every list referred to; any other type name
 * that nothing defined becomes an alias-free "any"-like builtin so that
 * the schema stays closed (every referenced name has an entry). */
static void close_schema(schema *s)
{
    json_object_object_foreach(s->wanted, name, v) {
        (void)v;
        if (json_object_object_get_ex(s->defined, name, NULL))
            continue;
        size_t len = strlen(name);
        if (len > 2 && name[0] == '[' && name[len - 1] == ']') {
            char elem[128];
            snprintf(elem, sizeof(elem), "%.*s", (int)(len - 2), name + 1);
            json_object *o = entry(name, "array");
            json_object_object_add(o, "element-type",
                                   json_object_new_string(elem));
            add_entry(s, o);
            if (!json_object_object_get_ex(s->defined, elem, NULL)) {
                json_object *b = entry(elem, "builtin");
                json_object_object_add(b, "json-type",
                                       json_object_new_string("value"));
                add_entry(s, b);
            }
        } else {
            json_object *b = entry(name, "builtin");
            json_object_object_add(b, "json-type",
                                   json_object_new_string("value"));
            add_entry(s, b);
        }
    }
}

json_object *lm_qmp_schema(lm_monitor *m)
{
    schema s = {
        .list = json_object_new_array(),
        .defined = json_object_new_object(),
        .wanted = json_object_new_object(),
    };
    add_commands(&s, m);
    add_fixed_types(&s);
    add_object_types(&s);
    add_tunable_types(&s);
    add_parameter_info_type(&s);
    close_schema(&s);
    json_object_put(s.defined);
    json_object_put(s.wanted);
    return s.list;
}
