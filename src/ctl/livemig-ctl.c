/*
 * livemig-ctl - command-line client of livemigd's monitor.
 *
 * Every subcommand is one or a few QMP commands through the client
 * library; tunable values are parsed by the daemon (HMP-style suffixes go
 * through human-monitor-command), never here.  Exit codes: see ctl.h.
 */
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "ctl.h"

static void usage(FILE *f)
{
    fprintf(f,
"usage: livemig-ctl [-s SOCKET] [-T MS] COMMAND [ARGS...]\n"
"\n"
"Talk to livemigd's QMP monitor (default socket: $LIVEMIG_SOCKET, else\n"
"./livemig.sock; unix:PATH, a plain PATH or tcp:HOST:PORT).\n"
"\n"
"commands:\n"
"  qmp JSON               send a raw QMP command, print the reply\n"
"                         e.g. qmp '{\"execute\": \"query-status\"}'\n"
"  hmp LINE...            run a human monitor command ('hmp help')\n"
"  set NAME=VALUE...      set parameters or capabilities; values as in HMP\n"
"                         (1G, 512M, 300ms, on/off); stops at the first\n"
"                         error\n"
"  get [NAME...]          print current values (all when no NAME)\n"
"  caps                   print the capabilities\n"
"  params                 print every parameter: value, default, range,\n"
"                         unit, whether it may change during a migration\n"
"  events [-n N] [-t S]   print events as they come (stop after N events\n"
"                         or S seconds; else until interrupted)\n"
"  status                 print the guest and migration status\n"
"  migrate [-d] [--plot FILE.svg] URI\n"
"                         migrate, show progress, print a summary\n"
"                         (exit 0 only if the migration completed);\n"
"                         -d: start it and return at once;\n"
"                         --plot: also draw it (remaining bytes,\n"
"                         throughput, dirty rate, passes, switchover)\n"
"                         with gnuplot\n"
"  wait-ready [-t S]      wait until the daemon's monitor answers (at\n"
"                         most S seconds, default 30)\n"
"  migrate-incoming URI   wait for an incoming migration on URI\n"
"  cancel                 cancel the running migration\n"
"\n"
"options:\n"
"  -s SOCKET              the monitor's address\n"
"  -T MS                  timeout for each reply in ms (default 10000)\n"
"  -h, --help             this help\n"
"\n"
"exit status: 0 ok, 1 the daemon reported an error, 2 usage error,\n"
"             3 cannot connect to the monitor\n");
}

static int usage_error(const char *fmt, const char *arg)
{
    fprintf(stderr, "livemig-ctl: ");
    fprintf(stderr, fmt, arg);
    fprintf(stderr, "\ntry 'livemig-ctl -h'\n");
    return CTL_USAGE;
}

json_object *ctl_exec(livemig_qmp *q, const char *cmd, json_object *args)
{
    livemig_error err = {0};
    json_object *r = livemig_qmp_execute(q, cmd, args, &err);
    if (!r)
        fprintf(stderr, "livemig-ctl: %s: %s\n", cmd, err.desc);
    return r;
}

static const char *plain(json_object *v)
{
    if (json_object_is_type(v, json_type_string))
        return json_object_get_string(v);
    if (json_object_is_type(v, json_type_boolean))
        return json_object_get_boolean(v) ? "on" : "off";
    return json_object_to_json_string_ext(v, JSON_C_TO_STRING_PLAIN);
}

/* HMP text that reports a failure (QEMU's HMP puts errors in the text). */
static bool hmp_failed(const char *text)
{
    return strncmp(text, "Error:", 6) == 0 ||
           strncmp(text, "unknown command:", 16) == 0;
}

static int run_hmp(livemig_qmp *q, const char *line, bool quiet_ok)
{
    json_object *a = json_object_new_object();
    json_object_object_add(a, "command-line", json_object_new_string(line));
    json_object *r = ctl_exec(q, "human-monitor-command", a);
    if (!r)
        return CTL_CMD_ERROR;
    const char *t = json_object_get_string(r);
    int rc = hmp_failed(t) ? CTL_CMD_ERROR : CTL_OK;
    if (rc != CTL_OK)
        fprintf(stderr, "livemig-ctl: %s", t);
    else if (!quiet_ok || t[0])
        fputs(t, stdout);
    json_object_put(r);
    return rc;
}

static int cmd_qmp(livemig_qmp *q, const char *text)
{
    json_object *req = json_tokener_parse(text);
    if (!req)
        return usage_error("qmp: '%s' is not JSON", text);
    livemig_error err = {0};
    json_object *rep = livemig_qmp_raw(q, req, &err);
    json_object_put(req);
    if (!rep) {
        fprintf(stderr, "livemig-ctl: %s\n", err.desc);
        return CTL_CMD_ERROR;
    }
    printf("%s\n", json_object_to_json_string_ext(rep,
                                                  JSON_C_TO_STRING_PRETTY));
    int rc = json_object_object_get_ex(rep, "error", NULL) ? CTL_CMD_ERROR
                                                           : CTL_OK;
    json_object_put(rep);
    return rc;
}

static json_object *capabilities(livemig_qmp *q)
{
    return ctl_exec(q, "query-migrate-capabilities", NULL);
}

static bool is_capability(json_object *caps, const char *name)
{
    size_t n = json_object_array_length(caps);
    for (size_t i = 0; i < n; i++) {
        json_object *c = json_object_array_get_idx(caps, i), *v;
        if (json_object_object_get_ex(c, "capability", &v) &&
            strcmp(json_object_get_string(v), name) == 0)
            return true;
    }
    return false;
}

static int cmd_set(livemig_qmp *q, int argc, char **argv)
{
    if (argc == 0)
        return usage_error("%s", "set: give NAME=VALUE pairs");
    for (int i = 0; i < argc; i++)
        if (!strchr(argv[i], '=') || argv[i][0] == '=')
            return usage_error("set: '%s' is not NAME=VALUE", argv[i]);
    json_object *caps = capabilities(q);
    if (!caps)
        return CTL_CMD_ERROR;
    int rc = CTL_OK;
    for (int i = 0; i < argc && rc == CTL_OK; i++) {
        char *eq = strchr(argv[i], '=');
        char line[1024];
        *eq = '\0';
        snprintf(line, sizeof(line), "%s %s %s",
                 is_capability(caps, argv[i]) ? "migrate_set_capability"
                                              : "migrate_set_parameter",
                 argv[i], eq + 1);
        *eq = '=';
        rc = run_hmp(q, line, true);
    }
    json_object_put(caps);
    return rc;
}

static int cmd_get(livemig_qmp *q, int argc, char **argv)
{
    json_object *params = ctl_exec(q, "query-migrate-parameters", NULL);
    json_object *caps = params ? capabilities(q) : NULL;
    if (!params || !caps) {
        json_object_put(params);
        return CTL_CMD_ERROR;
    }
    int rc = CTL_OK;
    if (argc == 0) {
        json_object_object_foreach(params, k, v)
            printf("%s: %s\n", k, plain(v));
    }
    size_t nc = json_object_array_length(caps);
    if (argc == 0) {
        for (size_t i = 0; i < nc; i++) {
            json_object *c = json_object_array_get_idx(caps, i), *n, *s;
            if (json_object_object_get_ex(c, "capability", &n) &&
                json_object_object_get_ex(c, "state", &s))
                printf("%s: %s\n", json_object_get_string(n), plain(s));
        }
    }
    for (int i = 0; i < argc; i++) {
        json_object *v;
        if (json_object_object_get_ex(params, argv[i], &v)) {
            printf("%s: %s\n", argv[i], plain(v));
            continue;
        }
        bool found = false;
        for (size_t k = 0; k < nc && !found; k++) {
            json_object *c = json_object_array_get_idx(caps, k), *n, *s;
            if (json_object_object_get_ex(c, "capability", &n) &&
                !strcmp(json_object_get_string(n), argv[i]) &&
                json_object_object_get_ex(c, "state", &s)) {
                printf("%s: %s\n", argv[i], plain(s));
                found = true;
            }
        }
        if (!found) {
            fprintf(stderr, "livemig-ctl: get: no parameter or capability "
                    "'%s'; 'livemig-ctl params' lists them\n", argv[i]);
            rc = CTL_CMD_ERROR;
        }
    }
    json_object_put(params);
    json_object_put(caps);
    return rc;
}

static int cmd_caps(livemig_qmp *q)
{
    json_object *caps = capabilities(q);
    if (!caps)
        return CTL_CMD_ERROR;
    size_t n = json_object_array_length(caps);
    for (size_t i = 0; i < n; i++) {
        json_object *c = json_object_array_get_idx(caps, i), *k, *s;
        if (json_object_object_get_ex(c, "capability", &k) &&
            json_object_object_get_ex(c, "state", &s))
            printf("%s: %s\n", json_object_get_string(k), plain(s));
    }
    json_object_put(caps);
    return CTL_OK;
}

static int cmd_params(livemig_qmp *q)
{
    json_object *info = ctl_exec(q, "query-migrate-parameter-info", NULL);
    json_object *params = info ? ctl_exec(q, "query-migrate-parameters",
                                          NULL) : NULL;
    json_object *caps = params ? capabilities(q) : NULL;
    if (!caps) {
        json_object_put(info);
        json_object_put(params);
        return CTL_CMD_ERROR;
    }
    printf("%-28s %-12s %-12s %-24s %-5s %-5s %s\n", "NAME", "VALUE",
           "DEFAULT", "RANGE", "UNIT", "LIVE", "DOC");
    size_t n = json_object_array_length(info);
    for (size_t i = 0; i < n; i++) {
        json_object *e = json_object_array_get_idx(info, i), *v;
        const char *name = "?";
        if (json_object_object_get_ex(e, "name", &v))
            name = json_object_get_string(v);
        char cur[64] = "?", def[64] = "", range[128] = "";
        if (json_object_object_get_ex(params, name, &v)) {
            snprintf(cur, sizeof(cur), "%s", plain(v));
        } else {
            size_t nc = json_object_array_length(caps);
            for (size_t k = 0; k < nc; k++) {
                json_object *c = json_object_array_get_idx(caps, k), *cn, *s;
                if (json_object_object_get_ex(c, "capability", &cn) &&
                    !strcmp(json_object_get_string(cn), name) &&
                    json_object_object_get_ex(c, "state", &s))
                    snprintf(cur, sizeof(cur), "%s", plain(s));
            }
        }
        if (json_object_object_get_ex(e, "default", &v))
            snprintf(def, sizeof(def), "%s", plain(v));
        json_object *mn, *mx;
        if (json_object_object_get_ex(e, "min", &mn) &&
            json_object_object_get_ex(e, "max", &mx))
            snprintf(range, sizeof(range), "%s..%s", plain(mn),
                     json_object_get_string(mx));
        else if (json_object_object_get_ex(e, "values", &v)) {
            size_t pos = 0, nv = json_object_array_length(v);
            for (size_t k = 0; k < nv && pos < sizeof(range); k++)
                pos += (size_t)snprintf(range + pos, sizeof(range) - pos,
                    "%s%s", k ? "|" : "",
                    json_object_get_string(json_object_array_get_idx(v, k)));
        } else if (json_object_object_get_ex(e, "type", &v) &&
                   !strcmp(json_object_get_string(v), "bool"))
            snprintf(range, sizeof(range), "on|off");
        const char *unit = "", *doc = "";
        bool live = false;
        if (json_object_object_get_ex(e, "unit", &v))
            unit = json_object_get_string(v);
        if (json_object_object_get_ex(e, "doc", &v))
            doc = json_object_get_string(v);
        if (json_object_object_get_ex(e, "live", &v))
            live = json_object_get_boolean(v);
        printf("%-28s %-12s %-12s %-24s %-5s %-5s %s\n", name, cur, def,
               range, unit, live ? "yes" : "no", doc);
    }
    json_object_put(info);
    json_object_put(params);
    json_object_put(caps);
    return CTL_OK;
}

static long long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int cmd_events(livemig_qmp *q, int argc, char **argv)
{
    long max = -1;
    double secs = -1;
    for (int i = 0; i < argc; i++) {
        char *end;
        if (!strcmp(argv[i], "-n") && i + 1 < argc) {
            max = strtol(argv[++i], &end, 10);
            if (*end || max < 1)
                return usage_error("events: -n needs a count >= 1, not '%s'",
                                   argv[i]);
        } else if (!strcmp(argv[i], "-t") && i + 1 < argc) {
            secs = strtod(argv[++i], &end);
            if (*end || secs <= 0)
                return usage_error("events: -t needs seconds > 0, not '%s'",
                                   argv[i]);
        } else {
            return usage_error("events: unexpected '%s'", argv[i]);
        }
    }
    long long end = secs > 0 ? now_ms() + (long long)(secs * 1000) : -1;
    long seen = 0;
    while (max < 0 || seen < max) {
        int wait = 1000;
        if (end >= 0) {
            long long left = end - now_ms();
            if (left <= 0)
                break;
            wait = left < 1000 ? (int)left : 1000;
        }
        json_object *ev = livemig_qmp_next_event(q, wait);
        if (!ev) {
            /* a timeout, or a lost connection: tell them apart */
            livemig_error err = {0};
            json_object *r = livemig_qmp_execute(q, "query-version", NULL,
                                                 &err);
            if (!r) {
                fprintf(stderr, "livemig-ctl: events: %s\n", err.desc);
                return CTL_CMD_ERROR;
            }
            json_object_put(r);
            continue;
        }
        printf("%s\n", json_object_to_json_string_ext(ev,
                                                      JSON_C_TO_STRING_PLAIN));
        fflush(stdout);
        json_object_put(ev);
        seen++;
    }
    return CTL_OK;
}

static int cmd_status(livemig_qmp *q)
{
    json_object *s = ctl_exec(q, "query-status", NULL);
    json_object *m = s ? ctl_exec(q, "query-migrate", NULL) : NULL;
    if (!m) {
        json_object_put(s);
        return CTL_CMD_ERROR;
    }
    json_object *v, *c, *h, *w;
    printf("VM status: %s\n", json_object_object_get_ex(s, "status", &v)
                                  ? json_object_get_string(v) : "?");
    printf("migration: %s\n", json_object_object_get_ex(m, "status", &v)
                                  ? json_object_get_string(v) : "none");
    if (json_object_object_get_ex(m, "convergence", &c) &&
        json_object_object_get_ex(c, "held", &h) && json_object_get_boolean(h))
        printf("switchover-hold: held, %s\n",
               json_object_object_get_ex(c, "would-switchover", &w) &&
               json_object_get_boolean(w) ? "ready to switch over"
                                          : "not ready");
    if (json_object_object_get_ex(m, "error-desc", &v))
        printf("error: %s\n", json_object_get_string(v));
    json_object_put(s);
    json_object_put(m);
    /* Micro-checkpointing, as HMP's info migrate says it. */
    json_object *a = json_object_new_object();
    json_object_object_add(a, "command-line",
                           json_object_new_string("info migrate"));
    json_object *t = ctl_exec(q, "human-monitor-command", a);
    if (!t)
        return CTL_CMD_ERROR;
    const char *text = json_object_get_string(t);
    const char *mc = strstr(text, "micro-checkpointing: ");
    if (mc)
        fputs(mc, stdout);
    json_object_put(t);
    return CTL_OK;
}

static int cmd_uri(livemig_qmp *q, const char *cmd, const char *uri)
{
    json_object *a = NULL;
    if (uri) {
        a = json_object_new_object();
        json_object_object_add(a, "uri", json_object_new_string(uri));
    }
    json_object *r = ctl_exec(q, cmd, a);
    if (!r)
        return CTL_CMD_ERROR;
    json_object_put(r);
    return CTL_OK;
}

static char *join(int argc, char **argv)
{
    size_t len = 1;
    for (int i = 0; i < argc; i++)
        len += strlen(argv[i]) + 1;
    char *s = calloc(1, len);
    for (int i = 0; s && i < argc; i++) {
        if (i)
            strcat(s, " ");
        strcat(s, argv[i]);
    }
    return s;
}

typedef struct subcmd {
    const char *name;
    int min, max;       /* arguments after the name; -1 = any */
} subcmd;

static const subcmd subcmds[] = {
    { "qmp", 1, 1 }, { "hmp", 1, -1 }, { "set", 1, -1 }, { "get", 0, -1 },
    { "caps", 0, 0 }, { "params", 0, 0 }, { "events", 0, 4 },
    { "status", 0, 0 }, { "migrate", 1, 4 }, { "migrate-incoming", 1, 1 },
    { "cancel", 0, 0 }, { "wait-ready", 0, 2 },
};

/* Connect until the monitor answers (its socket appears once the daemon
 * has set its guest up), for at most @secs seconds. */
static int cmd_wait_ready(const char *sock, int timeout, int argc,
                          char **argv)
{
    double secs = 30;
    if (argc == 2 && !strcmp(argv[0], "-t")) {
        char *end;
        secs = strtod(argv[1], &end);
        if (*end || secs <= 0 || secs > 86400)
            return usage_error("wait-ready: -t needs seconds > 0, not '%s'",
                               argv[1]);
    } else if (argc) {
        return usage_error("wait-ready: unexpected '%s'; usage: wait-ready "
                           "[-t SECONDS]", argv[0]);
    }
    long long deadline = now_ms() + (long long)(secs * 1000);
    livemig_error err = {0};
    for (;;) {
        livemig_error_clear(&err);
        livemig_qmp *q = livemig_qmp_connect(sock, timeout, &err);
        if (q) {
            livemig_qmp_close(q);
            return CTL_OK;
        }
        if (now_ms() >= deadline)
            break;
        struct timespec ts = { 0, 50 * 1000000L };
        nanosleep(&ts, NULL);
    }
    fprintf(stderr, "livemig-ctl: wait-ready: no answer within %g s: %s\n",
            secs, err.desc);
    return CTL_NO_CONNECT;
}

int main(int argc, char **argv)
{
    const char *sock = getenv("LIVEMIG_SOCKET");
    int timeout = 10000;
    int opt;
    static const struct option longopts[] = {
        { "help", no_argument, NULL, 'h' },
        { "socket", required_argument, NULL, 's' },
        { NULL, 0, NULL, 0 },
    };
    signal(SIGPIPE, SIG_IGN);
    while ((opt = getopt_long(argc, argv, "+s:T:h", longopts, NULL)) != -1) {
        switch (opt) {
        case 's':
            sock = optarg;
            break;
        case 'T':
            timeout = atoi(optarg);
            if (timeout <= 0)
                return usage_error("-T needs milliseconds > 0, not '%s'",
                                   optarg);
            break;
        case 'h':
            usage(stdout);
            return CTL_OK;
        default:
            usage(stderr);
            return CTL_USAGE;
        }
    }
    if (!sock || !sock[0])
        sock = "./livemig.sock";
    if (optind >= argc) {
        usage(stderr);
        return CTL_USAGE;
    }
    const char *cmd = argv[optind];
    int nargs = argc - optind - 1;
    char **args = argv + optind + 1;
    const subcmd *sc = NULL;
    for (size_t i = 0; i < sizeof(subcmds) / sizeof(subcmds[0]); i++)
        if (!strcmp(subcmds[i].name, cmd))
            sc = &subcmds[i];
    if (!sc)
        return usage_error("unknown command '%s'", cmd);
    if (nargs < sc->min || (sc->max >= 0 && nargs > sc->max))
        return usage_error("wrong number of arguments for '%s'", cmd);
    if (!strcmp(cmd, "wait-ready"))
        return cmd_wait_ready(sock, timeout, nargs, args);
    bool detach = false;
    const char *migrate_uri = NULL, *plot = NULL;
    if (!strcmp(cmd, "migrate")) {
        for (int i = 0; i < nargs; i++) {
            if (!strcmp(args[i], "-d")) {
                detach = true;
            } else if (!strcmp(args[i], "--plot") && i + 1 < nargs) {
                plot = args[++i];
            } else if (args[i][0] == '-') {
                return usage_error("migrate: unknown option '%s'; usage: "
                                   "migrate [-d] [--plot FILE.svg] URI",
                                   args[i]);
            } else if (migrate_uri) {
                return usage_error("migrate: one URI, not also '%s'",
                                   args[i]);
            } else {
                migrate_uri = args[i];
            }
        }
        if (!migrate_uri)
            return usage_error("%s", "migrate: give the destination's URI");
        if (detach && plot)
            return usage_error("%s", "migrate: -d returns at once, so "
                               "there is nothing to plot; drop one");
    }

    livemig_error err = {0};
    livemig_qmp *q = livemig_qmp_connect(sock, timeout, &err);
    if (!q) {
        fprintf(stderr, "livemig-ctl: %s\n", err.desc);
        return CTL_NO_CONNECT;
    }
    int rc;
    if (!strcmp(cmd, "qmp")) {
        rc = cmd_qmp(q, args[0]);
    } else if (!strcmp(cmd, "hmp")) {
        char *line = join(nargs, args);
        rc = run_hmp(q, line ? line : "", false);
        free(line);
    } else if (!strcmp(cmd, "set")) {
        rc = cmd_set(q, nargs, args);
    } else if (!strcmp(cmd, "get")) {
        rc = cmd_get(q, nargs, args);
    } else if (!strcmp(cmd, "caps")) {
        rc = cmd_caps(q);
    } else if (!strcmp(cmd, "params")) {
        rc = cmd_params(q);
    } else if (!strcmp(cmd, "events")) {
        rc = cmd_events(q, nargs, args);
    } else if (!strcmp(cmd, "status")) {
        rc = cmd_status(q);
    } else if (!strcmp(cmd, "migrate")) {
        rc = detach ? cmd_uri(q, "migrate", migrate_uri)
                    : ctl_migrate(q, migrate_uri, plot);
    } else if (!strcmp(cmd, "migrate-incoming")) {
        rc = cmd_uri(q, "migrate-incoming", args[0]);
    } else {
        rc = cmd_uri(q, "migrate_cancel", NULL);
    }
    livemig_qmp_close(q);
    return rc;
}
