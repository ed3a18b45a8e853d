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

#include "common/suggest.h"
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
    const char *alias;      /* QMP's spelling, also accepted, or NULL */
    const char *args;       /* usage, for help */
    const char *help;
    int min_args, max_args; /* words after the command name */
    void (*fn)(hmp_ctx *h);
} hmp_cmd;

/* Errors come from QMP commands and the engine, whose hints name QMP
 * commands; at the human monitor the hint names what to type here. */
static const struct { const char *qmp, *hmp; } hmp_names[] = {
    { "query-migrate-parameter-info", "help migrate_set_parameter" },
    { "query-migrate-parameters", "info migrate_parameters" },
    { "query-migrate-capabilities", "info migrate_capabilities" },
    { "query-migrate", "info migrate" },
    { "migrate-set-parameters", "migrate_set_parameter" },
    { "migrate-set-capabilities", "migrate_set_capability" },
    { "migrate-continue", "migrate_continue" },
    { "migrate-incoming", "migrate_incoming" },
    { "migrate-cancel", "migrate_cancel" },
    { "mc-failover", "mc_failover" },
    { "guest-verify", "guest_verify" },
    { "query-guest", "info guest" },
    { "query-status", "info status" },
};

/* @desc with its QMP command names put as HMP ones. */
static void put_hmp_words(hmp_ctx *h, const char *desc)
{
    for (const char *p = desc; *p;) {
        size_t i, n = sizeof(hmp_names) / sizeof(hmp_names[0]);
        for (i = 0; i < n; i++) {
            size_t len = strlen(hmp_names[i].qmp);
            /* whole words only: "migrate-incoming" but not a file name */
            if (!strncmp(p, hmp_names[i].qmp, len) &&
                (p == desc || (p[-1] != '-' && p[-1] != '_' &&
                               p[-1] != '/')) &&
                (p[len] == '\0' || (p[len] != '-' && p[len] != '_'))) {
                fputs(hmp_names[i].hmp, h->out);
                p += len;
                break;
            }
        }
        if (i == n)
            fputc(*p++, h->out);
    }
}

static void hmp_error(hmp_ctx *h, const char *desc)
{
    fputs("Error: ", h->out);
    put_hmp_words(h, desc);
    fputc('\n', h->out);
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

/* The legacy one-tunable commands, from the table of tunables. */
static bool help_legacy(hmp_ctx *h, const char *only)
{
    json_object *info = lm_tunables_legacy_info();
    bool found = false;
    for (size_t i = 0; info && i < json_object_array_length(info); i++) {
        json_object *e = json_object_array_get_idx(info, i);
        const char *cmd = get_str(e, "command");
        const char *param = get_str(e, "parameter");
        const char *unit = get_str(e, "unit");
        if (!cmd || (only && strcmp(only, cmd)))
            continue;
        /* QMP spells some with '-', HMP with '_' (migrate-set-cache-size) */
        char name[64];
        snprintf(name, sizeof(name), "%s", cmd);
        for (char *c = name; *c; c++)
            if (*c == '-')
                *c = '_';
        fprintf(h->out, "%s VALUE -- (deprecated) set %s%s%s%s; use "
                "migrate_set_parameter %s\n", name, param ? param : "?",
                unit && unit[0] ? " (in " : "", unit && unit[0] ? unit : "",
                unit && unit[0] ? ")" : "", param ? param : "");
        found = true;
    }
    json_object_put(info);
    return found;
}

static void h_help(hmp_ctx *h)
{
    size_t n;
    const hmp_cmd *t = hmp_table(&n);
    const char *only = h->argc == 1 ? h->argv[0] : NULL;
    if (only && (strcmp(only, "migrate_set_parameter") == 0)) {
        char *txt = lm_tunables_format_help();
        fprintf(h->out, "migrate_set_parameter NAME VALUE -- set a "
                "migration parameter; NAME is one of:\n%s", txt ? txt : "");
        free(txt);
        return;
    }
    bool found = false;
    for (size_t i = 0; i < n; i++) {
        if (only && strcmp(only, t[i].name) &&
            !(t[i].alias && !strcmp(only, t[i].alias)))
            continue;
        fprintf(h->out, "%s%s%s -- %s\n", t[i].name, t[i].args[0] ? " " : "",
                t[i].args, t[i].help);
        found = true;
    }
    if (only) {
        char legacy[64];
        snprintf(legacy, sizeof(legacy), "%s", only);
        found = help_legacy(h, legacy) || found;
        for (char *c = legacy; *c; c++)
            if (*c == '_')
                *c = '-';
        found = found || help_legacy(h, legacy);
    } else {
        help_legacy(h, NULL);
    }
    if (!found)
        fprintf(h->out, "Error: no command '%s'; 'help' lists them\n", only);
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

/* p50/p99 of an MC latency: from the histogram object @hist ({"p50",
 * "p99", "max", "count", ...}) when query-migrate has it, else from the
 * older last/avg/max fields. */
static void mc_latency(hmp_ctx *h, json_object *mc, const char *label,
                       const char *hist, const char *last, const char *avg,
                       const char *max)
{
    json_object *o;
    int64_t a, b, c;
    if (json_object_object_get_ex(mc, hist, &o) &&
        get_i64(o, "p50", &a) && get_i64(o, "p99", &b)) {
        fprintf(h->out, "  %s: p50 %lld us, p99 %lld us", label,
                (long long)a, (long long)b);
        if (get_i64(o, "max", &c))
            fprintf(h->out, ", max %lld us", (long long)c);
        if (get_i64(o, "count", &c))
            fprintf(h->out, " (last %lld)", (long long)c);
        fprintf(h->out, "\n");
        return;
    }
    bool any = false;
    if (!(last && get_i64(mc, last, &a)) && !(avg && get_i64(mc, avg, &a)))
        return;
    fprintf(h->out, "  %s:", label);
    if (last && get_i64(mc, last, &a)) {
        fprintf(h->out, " last %lld us", (long long)a);
        any = true;
    }
    if (avg && get_i64(mc, avg, &a)) {
        fprintf(h->out, "%s avg %lld us", any ? "," : "", (long long)a);
        any = true;
    }
    if (max && get_i64(mc, max, &a))
        fprintf(h->out, "%s max %lld us", any ? "," : "", (long long)a);
    fprintf(h->out, "\n");
}

/* Micro-checkpointing, as an operator reads it. */
static void info_mc(hmp_ctx *h, json_object *mc)
{
    const char *role = get_str(mc, "role");
    bool backup = role && !strcmp(role, "backup");
    int64_t v, w;
    fprintf(h->out, "micro-checkpointing: %s", role ? role : "?");
    if (get_i64(mc, "epoch", &v))
        fprintf(h->out, ", epoch %lld", (long long)v);
    if (get_i64(mc, "checkpoints", &v))
        fprintf(h->out, ", %lld checkpoints %s", (long long)v,
                backup ? "applied" : "acknowledged");
    fprintf(h->out, "\n");
    if (!backup)
        mc_latency(h, mc, "guest pause", "pause-us", "pause-last-us",
                   "pause-avg-us", "pause-max-us");
    mc_latency(h, mc, backup ? "apply" : "acknowledgement",
               "ack-us",
               backup ? "apply-last-us" : "ack-latency-last-us",
               backup ? "apply-avg-us" : "ack-latency-avg-us", NULL);
    if (!backup)   /* output commit: submitted to released */
        mc_latency(h, mc, "output commit", "commit-us", NULL, NULL, NULL);
    json_object *o;
    if (json_object_object_get_ex(mc, "checkpoint-bytes", &o) &&
        get_i64(o, "p50", &v) && get_i64(o, "p99", &w))
        fprintf(h->out, "  checkpoint size: p50 %lld bytes, p99 %lld bytes\n",
                (long long)v, (long long)w);
    else if (get_i64(mc, "checkpoint-bytes-avg", &v))
        fprintf(h->out, "  checkpoint size: avg %lld bytes\n", (long long)v);
    if (!backup && get_i64(mc, "outputs-held", &v) &&
        get_i64(mc, "outputs-released", &w))
        fprintf(h->out, "  outputs: %lld held, %lld released\n",
                (long long)v, (long long)w);
    if (!backup && get_i64(mc, "shadow-bytes", &v) &&
        get_i64(mc, "shadow-peak-bytes", &w))
        fprintf(h->out, "  checkpoint pool: %lld bytes, peak %lld bytes\n",
                (long long)v, (long long)w);
    json_object *fb;
    if (!backup && json_object_object_get_ex(mc, "falling-behind", &fb) &&
        json_object_get_boolean(fb)) {
        fprintf(h->out, "  falling behind: epochs of %lld ms",
                get_i64(mc, "epoch-ms", &v) ? (long long)v : -1LL);
        if (get_i64(mc, "link-bytes-per-epoch", &v))
            fprintf(h->out, ", the link sends %lld bytes per mc-delay",
                    (long long)v);
        fprintf(h->out, " (mc-throttle slows the guest to fit)\n");
    }
    if (get_i64(mc, "failover-epoch", &v))
        fprintf(h->out, "  took over from checkpoint %lld: %s\n",
                (long long)v, get_str(mc, "failover-reason")
                                  ? get_str(mc, "failover-reason") : "?");
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
    json_object *pct;
    if (json_object_object_get_ex(r, "progress-percent", &pct))
        fprintf(h->out, "progress: %.1f %% (bytes of pages sent of those sent "
                "and still to send)\n", json_object_get_double(pct));
    json_object *conv, *held, *ready;
    if (json_object_object_get_ex(r, "convergence", &conv) &&
        json_object_object_get_ex(conv, "held", &held) &&
        json_object_get_boolean(held))
        fprintf(h->out, "switchover-hold: holding, %s\n",
                json_object_object_get_ex(conv, "would-switchover", &ready) &&
                json_object_get_boolean(ready)
                    ? "ready to switch over (clear switchover-hold to "
                      "finish)"
                    : "not ready yet (the rest does not fit downtime-limit)");
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
    if (e) {   /* a migration's own error: its hints, too, in HMP words */
        fputs("error: ", h->out);
        put_hmp_words(h, e);
        fputc('\n', h->out);
    }
    if (json_object_object_get_ex(r, "mc", &o))   /* last: livemig-ctl */
        info_mc(h, o);                              /* status shows it */
    json_object_put(r);
}

static void info_guest(hmp_ctx *h)
{
    json_object *r = qmp(h, "query-guest", NULL);
    if (!r)
        return;
    json_object_object_foreach(r, k, v)
        fprintf(h->out, "%s: %s\n", k, json_object_is_type(v,
                json_type_string) ? json_object_get_string(v)
                : json_object_to_json_string_ext(v, JSON_C_TO_STRING_PLAIN));
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
    } else if (strcmp(what, "guest") == 0) {
        info_guest(h);
    } else if (strcmp(what, "migrate_capabilities") == 0) {
        char *t = lm_tunables_format_capabilities(lm_monitor_tunables(h->m));
        fputs(t ? t : "", h->out);
        free(t);
    } else {
        fprintf(h->out, "Error: 'info %s' is not known; try 'info status', "
                "'info migrate', 'info migrate_parameters', "
                "'info migrate_capabilities' or 'info guest'\n", what);
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
static void h_quit(hmp_ctx *h) { qmp_void(h, "quit", NULL); }
static void h_mc_failover(hmp_ctx *h) { qmp_void(h, "mc-failover", NULL); }

/* The built-in guest's commands (registered by livemigd). */
static void h_guest_verify(hmp_ctx *h)
{
    json_object *r = qmp(h, "guest-verify", NULL);
    if (!r)
        return;
    json_object *ok;
    int64_t pages = 0, gen = 0, us = 0;
    get_i64(r, "pages", &pages);
    get_i64(r, "generation", &gen);
    get_i64(r, "time-us", &us);
    if (json_object_object_get_ex(r, "ok", &ok) && json_object_get_boolean(ok))
        fprintf(h->out, "guest verified: %lld pages ok (generation %lld, "
                "%lld us)\n", (long long)pages, (long long)gen, (long long)us);
    else
        fprintf(h->out, "Error: the guest's memory is wrong: %s\n",
                get_str(r, "reason") ? get_str(r, "reason") : "?");
    json_object_put(r);
}

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
    { "help", NULL, "[COMMAND]", "show this help, or one command's", 0, 1,
      h_help },
    { "info", NULL, "status|migrate|migrate_parameters|migrate_capabilities"
      "|guest", "show the guest status, the migration, its parameters or "
      "capabilities, or the built-in guest", 1, 1, h_info },
    { "migrate_set_parameter", NULL, "NAME VALUE",
      "set a migration parameter (sizes take K/M/G/T, times ms/s; "
      "'help migrate_set_parameter' lists them)", 2, 2, h_set_parameter },
    { "migrate_set_capability", NULL, "NAME on|off",
      "turn a migration capability on or off", 2, 2, h_set_capability },
    { "stop", NULL, "", "stop the guest", 0, 0, h_stop },
    { "cont", NULL, "", "resume the guest", 0, 0, h_cont },
    { "c", NULL, "", "resume the guest (short for cont)", 0, 0, h_cont },
    { "quit", "q", "", "stop the daemon (its guest and any migration end)",
      0, 0, h_quit },
    { "migrate", NULL, "[-d|-r] URI",
      "start migrating to URI (tcp:HOST:PORT, unix:PATH, file:PATH, "
      "exec:CMD); returns at once, 'info migrate' shows progress; -r "
      "resumes a paused postcopy migration", 1, 2,
      h_migrate },
    { "migrate_incoming", "migrate-incoming", "URI",
      "wait for an incoming migration on URI", 1, 1, h_migrate_incoming },
    { "migrate_cancel", "migrate-cancel", "", "cancel the running migration",
      0, 0, h_migrate_cancel },
    { "migrate_continue", "migrate-continue", "STATE",
      "let a migration paused in STATE (e.g. pre-switchover) continue",
      1, 1, h_migrate_continue },
    { "mc_failover", "mc-failover", "",
      "micro-checkpointing: on the backup, take over now; on the primary, "
      "drop the backup", 0, 0, h_mc_failover },
    { "guest_verify", "guest-verify", "",
      "check every page of the built-in guest against its pattern", 0, 0,
      h_guest_verify },
    { "migrate_start_postcopy", "migrate-start-postcopy", "",
      "switch the running migration to postcopy (capability postcopy-ram "
      "on both sides)", 0, 0, h_migrate_start_postcopy },
    { "migrate_recover", "migrate-recover", "URI", "destination of a paused "
      "postcopy migration: listen on URI for the source to resume it", 1, 1,
      h_migrate_recover },
    { "migrate_pause", "migrate-pause", "", "cut the connection of a "
      "postcopy migration (it pauses; resume with migrate_recover and "
      "migrate -r)", 0, 0, h_migrate_pause },
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
        /* either spelling: migrate_set_cache_size, migrate-set-cache-size */
        const char *l = lm_tunables_legacy_name(i);
        size_t k = 0;
        while (l[k] && (l[k] == name[k] ||
                        ((l[k] == '-' || l[k] == '_') &&
                         (name[k] == '-' || name[k] == '_'))))
            k++;
        if (l[k] || name[k])
            continue;
        if (h->argc != 1) {
            fprintf(h->out, "Error: '%s' takes one value\n", name);
            return true;
        }
        livemig_error err = {0};
        if (!lm_tunables_legacy_call_string(lm_monitor_tunables(h->m), l,
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
            if (strcmp(table[i].name, words[0]) == 0 ||
                (table[i].alias && strcmp(table[i].alias, words[0]) == 0))
                c = &table[i];
        if (c && (h.argc < c->min_args || h.argc > c->max_args))
            fprintf(out, "Error: wrong number of arguments; usage: %s%s%s\n",
                    c->name, c->args[0] ? " " : "", c->args);
        else if (c)
            c->fn(&h);
        else if (!try_legacy(&h, words[0])) {
            lm_suggest s;
            lm_suggest_init(&s, words[0]);
            for (size_t i = 0; i < sizeof(table) / sizeof(table[0]); i++)
                lm_suggest_add(&s, table[i].name);
            for (size_t i = 0; i < lm_tunables_legacy_count(); i++)
                lm_suggest_add(&s, lm_tunables_legacy_name(i));
            const char *best = lm_suggest_best(&s);
            if (best)
                fprintf(out, "unknown command: '%s'; did you mean '%s'? "
                        "try 'help'\n", words[0], best);
            else
                fprintf(out, "unknown command: '%s'; try 'help'\n",
                        words[0]);
        }
    }
    free(copy);
    fclose(out);
    return buf;
}
