/*
 * livemigd - hosts a workload (a built-in guest) and serves the monitor.
 *
 *   livemigd --guest pattern,size=1G,... --qmp unix:PATH [--qmp tcp:H:P]
 *            [--incoming URI|defer] [--dirty-tracker KIND] [--quiet]
 *
 * It uses only the public engine API plus the monitor and guest modules.
 * What it says: one "ready" line on stdout once every monitor socket
 * accepts connections, and the engine's lifecycle lines (migration
 * started, completed, failed and why, takeover...) on stderr, each
 * stamped with the wall-clock time; --quiet keeps only errors.
 */
#include <getopt.h>
#include <sys/time.h>
#include <time.h>
#include <json-c/json.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "guest/kv/kv.h"
#include "guest/pattern.h"
#include "livemig/livemig.h"
#include "monitor/monitor.h"

#define MAX_QMP 8

static lm_monitor *g_mon;   /* for the signal handler only */

/* A lifecycle line on stderr: "livemigd: 12:34:56.789 LINE". */
static void log_line(void *opaque, const char *line)
{
    (void)opaque;
    struct timeval tv;
    gettimeofday(&tv, NULL);
    struct tm tm;
    localtime_r(&tv.tv_sec, &tm);
    fprintf(stderr, "livemigd: %02d:%02d:%02d.%03d %s\n", tm.tm_hour,
            tm.tm_min, tm.tm_sec, (int)(tv.tv_usec / 1000), line);
}

static void on_signal(int sig)
{
    (void)sig;
    if (g_mon)
        lm_monitor_stop(g_mon);
}

static void usage(FILE *f)
{
    fprintf(f,
        "usage: livemigd [--guest SPEC] --qmp unix:PATH|tcp:HOST:PORT "
        "[--qmp ...]\n"
        "                [--incoming URI|defer] [--dirty-tracker KIND]\n"
        "\n"
        "  --guest SPEC         the workload, e.g. pattern,size=1G,threads=1,"
        "dirty-rate=50M,fill=random\n"
        "                       or kv,size=1G,port=6379 (a Redis-protocol "
        "store, docs/kv.md)\n"
        "  --qmp ADDR           serve QMP on a UNIX socket (mode 0600) or, "
        "when asked, TCP; repeatable\n"
        "  --incoming URI       wait for a migration on tcp:HOST:PORT, "
        "unix:PATH, file:PATH, exec:CMD;\n"
        "                       'defer' waits for the migrate-incoming "
        "command\n"
        "  --dirty-tracker KIND manual (default for built-in guests), "
        "uffd-wp-async, mprotect or auto\n"
        "  --quiet              print only errors (no ready line, no "
        "lifecycle log)\n"
        "\n"
        "Once every monitor socket accepts connections it prints one line "
        "on stdout,\n"
        "  livemigd: ready: QMP on unix:PATH\n"
        "and logs migrations (start, end, failure and why, takeover) on "
        "stderr.\n");
}

static json_object *cmd_query_guest(void *opaque, json_object *args,
                                    livemig_error *err)
{
    (void)args;
    if (!opaque) {
        livemig_error_set(err, "this daemon runs no guest; start livemigd "
                          "with --guest");
        return NULL;
    }
    return lm_pattern_query(opaque);
}

static json_object *cmd_guest_verify(void *opaque, json_object *args,
                                     livemig_error *err)
{
    (void)args;
    if (!opaque) {
        livemig_error_set(err, "this daemon runs no guest; start livemigd "
                          "with --guest");
        return NULL;
    }
    return lm_pattern_verify(opaque, err);
}

/* The engine's warnings (an incoming migration open to other hosts
 * without TLS, from --incoming or migrate-incoming) go to stderr. */
static void on_warning(void *opaque, const char *msg)
{
    (void)opaque;
    fprintf(stderr, "livemigd: warning: %s\n", msg);
}

static json_object *cmd_query_kv(void *opaque, json_object *args,
                                 livemig_error *err)
{
    (void)args;
    (void)err;
    return lm_kv_query(opaque);
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {
        { "guest", required_argument, NULL, 'g' },
        { "qmp", required_argument, NULL, 'q' },
        { "incoming", required_argument, NULL, 'i' },
        { "dirty-tracker", required_argument, NULL, 't' },
        { "quiet", no_argument, NULL, 'Q' },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    const char *guest = NULL, *incoming = NULL, *qmp[MAX_QMP];
    int nqmp = 0, c;
    bool quiet = false;
    livemig_tracker_kind tracker = LIVEMIG_TRACKER_MANUAL;
    livemig_error err = { 0 };

    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (c) {
        case 'g': guest = optarg; break;
        case 'i': incoming = optarg; break;
        case 'q':
            if (nqmp == MAX_QMP) {
                fprintf(stderr, "livemigd: at most %d --qmp options\n",
                        MAX_QMP);
                return 2;
            }
            qmp[nqmp++] = optarg;
            break;
        case 't':
            if (!livemig_tracker_parse(optarg, &tracker, &err)) {
                fprintf(stderr, "livemigd: %s\n", err.desc);
                return 2;
            }
            break;
        case 'Q': quiet = true; break;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
    }
    if (optind < argc || nqmp == 0) {
        fprintf(stderr, "livemigd: %s\n", optind < argc
                ? "unexpected argument; options start with --"
                : "give at least one --qmp unix:PATH to manage the daemon");
        usage(stderr);
        return 2;
    }

    struct sigaction sa = { .sa_handler = SIG_IGN };
    sigaction(SIGPIPE, &sa, NULL);

    livemig *lm = livemig_new(&err);
    lm_pattern *pat = NULL;
    lm_kv *kv = NULL;
    lm_monitor *mon = NULL;
    int rc = 1;
    if (!lm)
        goto out;
    if (lm_kv_spec_is_kv(guest)) {
        if (!(kv = lm_kv_new(guest, lm, incoming != NULL, tracker, &err)))
            goto out;
    } else if (guest && !(pat = lm_pattern_new(guest, lm, incoming != NULL,
                                               tracker, &err)))
        goto out;
    if (!guest) {
        /* No workload: the engine still serves its monitor and tunables. */
        static const livemig_guest_ops none = { 0 };
        livemig_set_guest_ops(lm, &none, NULL,
                              incoming ? LIVEMIG_RUN_INMIGRATE
                                       : LIVEMIG_RUN_RUNNING);
    }
    if (!(mon = lm_monitor_new(lm, &err)))
        goto out;
    for (int i = 0; i < nqmp; i++)
        if (!lm_monitor_listen(mon, qmp[i], &err))
            goto out;
    if (kv && !lm_monitor_add_command(mon, "query-guest", cmd_query_kv, kv,
                                      &err))
        goto out;
    if ((!kv && !lm_monitor_add_command(mon, "query-guest", cmd_query_guest,
                                        pat, &err)) ||
        !lm_monitor_add_command(mon, "guest-verify", cmd_guest_verify, pat,
                                &err))
        goto out;
    livemig_set_event_cb(lm, lm_monitor_event, mon);
    if (!quiet)
        livemig_set_log_cb(lm, log_line, NULL);
    livemig_set_warning_cb(lm, on_warning, NULL);
    if (incoming && strcmp(incoming, "defer") != 0 &&
        !livemig_incoming(lm, incoming, &err))
        goto out;

    g_mon = mon;
    sa.sa_handler = on_signal;
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    if (!quiet) {
        /* The sockets listen already: a client may connect from now on. */
        printf("livemigd: ready: QMP on");
        for (int i = 0; i < nqmp; i++)
            printf("%s %s", i ? "," : "", qmp[i]);
        printf("\n");
        fflush(stdout);
    }
    rc = lm_monitor_run(mon);
    if (!quiet)
        log_line(NULL, "exiting");
    g_mon = NULL;
out:
    if (livemig_error_is_set(&err))
        fprintf(stderr, "livemigd: %s\n", err.desc);
    /* Engine first: it stops migration threads that call into the guest
     * and the monitor. */
    /* Order: the guest's writers go first (they write RAM the engine
     * tracks), then the engine (its threads call the guest and the
     * monitor), then the rest. */
    lm_pattern_halt(pat);
    lm_kv_halt(kv);
    livemig_free(lm);
    lm_monitor_free(mon);
    lm_pattern_free(pat);
    lm_kv_free(kv);
    return rc;
}
