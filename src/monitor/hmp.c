/*
 * hmp.c - the human monitor, on top of the QMP commands.
 *
 * Each HMP command turns its words into a QMP call (lm_monitor_call) and
 * its result into text; tunables are parsed (unit suffixes) and formatted
 * by src/tunables.  Output follows QEMU's HMP: errors are part of the
 * text, as "Error: <what>\n", and human-monitor-command still succeeds.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "monitor/monitor-int.h"

#define MAX_WORDS 16

typedef struct hmp_ctx {
    lm_monitor *m;
    FILE *out;
    int argc;
    char **argv;
} hmp_ctx;

typedef struct hmp_cmd {
    const char *name;
    const char *args;       /* usage, for help */
    const char *help;
    int min_args, max_args; /* words after the command name */
    void (*fn)(hmp_ctx *h);
} hmp_cmd;

static void hmp_error(hmp_ctx *h, const char *desc)
{
    fprintf(h->out, "Error: %s\n", desc);
}

/* Run QMP @cmd; on error print it and return NULL. */
static json_object *qmp(hmp_ctx *h, const char *cmd, json_object *args)
{
    livemig_error err = {0};
    json_object *r = lm_monitor_call(h->m, cmd, args, &err);
    json_object_put(args);
    if (!r)
        hmp_error(h, err.desc);
    return r;
}

static void qmp_void(hmp_ctx *h, const char *cmd, json_object *args)
{
    json_object_put(qmp(h, cmd, args));
}

static const char *get_str(json_object *o, const char *k)
{
    json_object *v;
    return json_object_object_get_ex(o, k, &v) ? json_object_get_string(v)
                                               : NULL;
}

static bool get_i64(json_object *o, const char *k, int64_t *out)
{
    json_object *v;
    if (!json_object_object_get_ex(o, k, &v))
        return false;
    *out = json_object_get_int64(v);
    return true;
}

/* ---- commands ---------------------------------------------------------- */

static const hmp_cmd *hmp_table(size_t *n);

static void h_help(hmp_ctx *h)
{
    size_t n;
    const hmp_cmd *t = hmp_table(&n);
    if (h->argc == 1 && (strcmp(h->argv[0], "migrate_set_parameter") == 0)) {
        char *txt = lm_tunables_format_help();
        fprintf(h->out, "migrate_set_parameter NAME VALUE -- set a "
                "migration parameter; NAME is one of:\n%s", txt ? txt : "");
        free(txt);
        return;
    }
    for (size_t i = 0; i < n; i++) {
        if (h->argc == 1 && strcmp(h->argv[0], t[i].name))
            continue;
        fprintf(h->out, "%s%s%s -- %s\n", t[i].name, t[i].args[0] ? " " : "",
                t[i].args, t[i].help);
    }
}

static void info_status(hmp_ctx *h)
{
    json_object *r = qmp(h, "query-status", NULL);
    if (!r)
        return;
    const char *st = get_str(r, "status");
    json_object *run;
    bool running = json_object_object_get_ex(r, "running", &run) &&
                   json_object_get_boolean(run);
    if (running)
        fprintf(h->out, "VM status: running\n");
    else if (st && strcmp(st, "paused") == 0)
        fprintf(h->out, "VM status: paused\n");
    else
        fprintf(h->out, "VM status: paused (%s)\n", st ? st : "?");
    json_object_put(r);
}

/* Print the members of a nested object generically: "label: k=v, ...". */
static void print_object(hmp_ctx *h, const char *label, json_object *o)
{
    if (!o || !json_object_is_type(o, json_type_object))
        return;
    fprintf(h->out, "%s:", label);
    const char *sep = " ";
    json_object_object_foreach(o, k, v) {
        fprintf(h->out, "%s%s=%s", sep, k, json_object_is_type(v,
                json_type_string) ? json_object_get_string(v)
                : json_object_to_json_string_ext(v, JSON_C_TO_STRING_PLAIN));
        sep = ", ";
    }
    fprintf(h->out, "\n");
}

static void info_migrate(hmp_ctx *h)
{
    json_object *r = qmp(h, "query-migrate", NULL);
    if (!r)
        return;
    const char *st = get_str(r, "status");
    int64_t v;
    fprintf(h->out, "Migration status: %s\n", st ? st : "none");
    if (get_i64(r, "total-time", &v))
        fprintf(h->out, "total time: %lld ms\n", (long long)v);
    if (get_i64(r, "setup-time", &v))
        fprintf(h->out, "setup: %lld ms\n", (long long)v);
    if (get_i64(r, "expected-downtime", &v))
        fprintf(h->out, "expected downtime: %lld ms\n", (long long)v);
    if (get_i64(r, "downtime", &v))
        fprintf(h->out, "downtime: %lld ms\n", (long long)v);
    json_object *ram;
    if (json_object_object_get_ex(r, "ram", &ram)) {
        json_object *mbps;
        if (get_i64(ram, "transferred", &v))
            fprintf(h->out, "transferred ram: %lld kbytes\n",
                    (long long)(v >> 10));
        if (json_object_object_get_ex(ram, "mbps", &mbps))
            fprintf(h->out, "throughput: %.2f mbps\n",
                    json_object_get_double(mbps));
        if (get_i64(ram, "remaining", &v))
            fprintf(h->out, "remaining ram: %lld kbytes\n",
                    (long long)(v >> 10));
        if (get_i64(ram, "total", &v))
            fprintf(h->out, "total ram: %lld kbytes\n", (long long)(v >> 10));
        if (get_i64(ram, "duplicate", &v))
            fprintf(h->out, "duplicate: %lld pages\n", (long long)v);
        if (get_i64(ram, "normal", &v))
            fprintf(h->out, "normal: %lld pages\n", (long long)v);
        if (get_i64(ram, "normal-bytes", &v))
            fprintf(h->out, "normal bytes: %lld kbytes\n",
                    (long long)(v >> 10));
        if (get_i64(ram, "dirty-sync-count", &v))
            fprintf(h->out, "dirty sync count: %lld\n", (long long)v);
        if (get_i64(ram, "dirty-pages-rate", &v))
            fprintf(h->out, "dirty pages rate: %lld pages\n", (long long)v);
        if (get_i64(ram, "pages-per-second", &v))
            fprintf(h->out, "pages-per-second: %lld\n", (long long)v);
        if (get_i64(ram, "precopy-bytes", &v))
            fprintf(h->out, "precopy ram: %lld kbytes\n",
                    (long long)(v >> 10));
        if (get_i64(ram, "downtime-bytes", &v))
            fprintf(h->out, "downtime ram: %lld kbytes\n",
                    (long long)(v >> 10));
        if (get_i64(ram, "postcopy-bytes", &v))
            fprintf(h->out, "postcopy ram: %lld kbytes\n",
                    (long long)(v >> 10));
    }
    json_object *o;
    if (json_object_object_get_ex(r, "downtime-breakdown", &o))
        print_object(h, "downtime breakdown", o);
    if (json_object_object_get_ex(r, "convergence", &o))
        print_object(h, "convergence", o);
    const char *e = get_str(r, "error-desc");
    if (e)
        fprintf(h->out, "error: %s\n", e);
    json_object_put(r);
}

static void h_info(hmp_ctx *h)
{
    const char *what = h->argv[0];
    if (strcmp(what, "status") == 0) {
        info_status(h);
    } else if (strcmp(what, "migrate") == 0) {
        info_migrate(h);
    } else if (strcmp(what, "migrate_parameters") == 0) {
        char *t = lm_tunables_format_parameters(lm_monitor_tunables(h->m));
        fputs(t ? t : "", h->out);
        free(t);
    } else if (strcmp(what, "migrate_capabilities") == 0) {
        char *t = lm_tunables_format_capabilities(lm_monitor_tunables(h->m));
        fputs(t ? t : "", h->out);
        free(t);
    } else {
        fprintf(h->out, "Error: 'info %s' is not known; try 'info status', "
                "'info migrate', 'info migrate_parameters' or "
                "'info migrate_capabilities'\n", what);
    }
}

static void h_set_parameter(hmp_ctx *h)
{
    livemig_error err = {0};
    if (!lm_tunables_set_from_string(lm_monitor_tunables(h->m), h->argv[0],
                                     h->argv[1], &err))
        hmp_error(h, err.desc);
}

static void h_set_capability(hmp_ctx *h)
{
    livemig_error err = {0};
    if (!lm_tunables_set_capability_string(lm_monitor_tunables(h->m),
                                           h->argv[0], h->argv[1], &err))
        hmp_error(h, err.desc);
}

static void h_stop(hmp_ctx *h) { qmp_void(h, "stop", NULL); }
static void h_cont(hmp_ctx *h) { qmp_void(h, "cont", NULL); }

static json_object *uri_args(const char *key, const char *val)
{
    json_object *a = json_object_new_object();
    json_object_object_add(a, key, json_object_new_string(val));
    return a;
}

static void h_migrate(hmp_ctx *h)
{
    int i = 0;
    bool detach = false, resume = false;
    if (h->argc == 2) {
        if (strcmp(h->argv[0], "-d") == 0) {
            detach = true;
        } else if (strcmp(h->argv[0], "-r") == 0) {
            resume = true;
        } else {
            fprintf(h->out, "Error: unknown option '%s'; usage: migrate "
                    "[-d|-r] URI\n", h->argv[0]);
            return;
        }
        i = 1;
    }
    json_object *a = uri_args("uri", h->argv[i]);
    if (detach)
        json_object_object_add(a, "detach", json_object_new_boolean(true));
    if (resume)
        json_object_object_add(a, "resume", json_object_new_boolean(true));
    qmp_void(h, "migrate", a);
}

static void h_migrate_incoming(hmp_ctx *h)
{
    qmp_void(h, "migrate-incoming", uri_args("uri", h->argv[0]));
}

static void h_migrate_cancel(hmp_ctx *h)
{
    qmp_void(h, "migrate_cancel", NULL);
}

static void h_migrate_continue(hmp_ctx *h)
{
    qmp_void(h, "migrate-continue", uri_args("state", h->argv[0]));
}

static void h_migrate_recover(hmp_ctx *h)
{
    qmp_void(h, "migrate-recover", uri_args("uri", h->argv[0]));
}

static void h_migrate_pause(hmp_ctx *h)
{
    qmp_void(h, "migrate-pause", NULL);
}

static void h_migrate_start_postcopy(hmp_ctx *h)
{
    qmp_void(h, "migrate-start-postcopy", NULL);
}

static const hmp_cmd table[] = {
    { "help", "[COMMAND]", "show this help, or one command's", 0, 1,
      h_help },
    { "info", "status|migrate|migrate_parameters|migrate_capabilities",
      "show the guest status, the migration, its parameters or "
      "capabilities", 1, 1, h_info },
    { "migrate_set_parameter", "NAME VALUE",
      "set a migration parameter (sizes take K/M/G/T, times ms/s; "
      "'help migrate_set_parameter' lists them)", 2, 2, h_set_parameter },
    { "migrate_set_capability", "NAME on|off",
      "turn a migration capability on or off", 2, 2, h_set_capability },
    { "stop", "", "stop the guest", 0, 0, h_stop },
    { "cont", "", "resume the guest", 0, 0, h_cont },
    { "c", "", "resume the guest (short for cont)", 0, 0, h_cont },
    { "migrate", "[-d|-r] URI",
      "start migrating to URI (tcp:HOST:PORT, unix:PATH, file:PATH, "
      "exec:CMD); returns at once, 'info migrate' shows progress; -r "
      "resumes a paused postcopy migration", 1, 2,
      h_migrate },
    { "migrate_incoming", "URI", "wait for an incoming migration on URI",
      1, 1, h_migrate_incoming },
    { "migrate_cancel", "", "cancel the running migration", 0, 0,
      h_migrate_cancel },
    { "migrate_continue", "STATE",
      "let a migration paused in STATE (e.g. pre-switchover) continue",
      1, 1, h_migrate_continue },
    { "migrate_start_postcopy", "",
      "switch the running migration to postcopy (capability postcopy-ram "
      "on both sides)", 0, 0, h_migrate_start_postcopy },
    { "migrate_recover", "URI", "destination of a paused postcopy "
      "migration: listen on URI for the source to resume it", 1, 1,
      h_migrate_recover },
    { "migrate_pause", "", "cut the connection of a postcopy migration "
      "(it pauses; resume with migrate_recover and migrate -r)", 0, 0,
      h_migrate_pause },
};

static const hmp_cmd *hmp_table(size_t *n)
{
    *n = sizeof(table) / sizeof(table[0]);
    return table;
}

/* The deprecated one-tunable commands (migrate_set_downtime 0.5, ...). */
static bool try_legacy(hmp_ctx *h, const char *name)
{
    for (size_t i = 0; i < lm_tunables_legacy_count(); i++) {
        if (strcmp(lm_tunables_legacy_name(i), name))
            continue;
        if (h->argc != 1) {
            fprintf(h->out, "Error: '%s' takes one value\n", name);
            return true;
        }
        livemig_error err = {0};
        if (!lm_tunables_legacy_call_string(lm_monitor_tunables(h->m), name,
                                            h->argv[0], &err))
            hmp_error(h, err.desc);
        return true;
    }
    return false;
}

char *lm_hmp_run(lm_monitor *m, const char *line)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *out = open_memstream(&buf, &len);
    if (!out)
        return strdup("Error: out of memory\n");
    char *copy = strdup(line ? line : "");
    char *words[MAX_WORDS + 1];
    int nw = 0;
    bool too_many = false;
    for (char *save = NULL, *w = strtok_r(copy, " \t\r\n", &save); w;
         w = strtok_r(NULL, " \t\r\n", &save)) {
        if (nw == MAX_WORDS) {
            too_many = true;
            break;
        }
        words[nw++] = w;
    }
    hmp_ctx h = { m, out, nw ? nw - 1 : 0, words + 1 };
    if (nw == 0) {
        /* an empty line does nothing, as in QEMU */
    } else if (too_many) {
        fprintf(out, "Error: too many words; at most %d\n", MAX_WORDS);
    } else {
        const hmp_cmd *c = NULL;
        for (size_t i = 0; i < sizeof(table) / sizeof(table[0]); i++)
            if (strcmp(table[i].name, words[0]) == 0)
                c = &table[i];
        if (c && (h.argc < c->min_args || h.argc > c->max_args))
            fprintf(out, "Error: wrong number of arguments; usage: %s%s%s\n",
                    c->name, c->args[0] ? " " : "", c->args);
        else if (c)
            c->fn(&h);
        else if (!try_legacy(&h, words[0]))
            fprintf(out, "unknown command: '%s'; try 'help'\n", words[0]);
    }
    free(copy);
    fclose(out);
    return buf;
}
