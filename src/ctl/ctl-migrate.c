/*
 * ctl-migrate.c - livemig-ctl migrate URI: start the migration, show its
 * progress (a live one-line bar on a terminal, a line per second
 * otherwise) by polling query-migrate every 100 ms, and print a summary.
 */
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "ctl.h"

#define POLL_MS 100
#define PAGE 4096.0

static double num(json_object *o, const char *k)
{
    json_object *v;
    if (!o || !json_object_object_get_ex(o, k, &v))
        return 0;
    return json_object_get_double(v);
}

static const char *str(json_object *o, const char *k)
{
    json_object *v;
    if (!o || !json_object_object_get_ex(o, k, &v))
        return NULL;
    return json_object_get_string(v);
}

static bool terminal(const char *s)
{
    return !strcmp(s, "completed") || !strcmp(s, "failed") ||
           !strcmp(s, "cancelled");
}

/* "held, ready" / "held" / "" from query-migrate's convergence. */
static const char *hold_word(json_object *r)
{
    json_object *c = NULL, *h, *w;
    if (!json_object_object_get_ex(r, "convergence", &c) ||
        !json_object_object_get_ex(c, "held", &h) ||
        !json_object_get_boolean(h))
        return "";
    return json_object_object_get_ex(c, "would-switchover", &w) &&
           json_object_get_boolean(w) ? "held, ready" : "held";
}

static void progress(json_object *r, bool tty)
{
    json_object *ram = NULL;
    json_object_object_get_ex(r, "ram", &ram);
    /* bytes of pages sent of those sent and still to send (docs/qmp.md) */
    double pct = num(r, "progress-percent");
    const char *st = str(r, "status");
    double mbs = num(ram, "mbps") / 8.0;
    long long pass = (long long)num(ram, "dirty-sync-count");
    /* the dirty rate is measured by the sync that ends pass 1 */
    char dirty[32];
    if (pass <= 1 && st && !strcmp(st, "active"))
        snprintf(dirty, sizeof(dirty), "%7s", "--");
    else
        snprintf(dirty, sizeof(dirty), "%7.1f",
                 num(ram, "dirty-pages-rate") * PAGE / 1e6);
    const char *hold = hold_word(r);
    if (tty) {
        char bar[31];
        int fill = (int)(pct * 30 / 100);
        for (int i = 0; i < 30; i++)
            bar[i] = i < fill ? '#' : '.';
        bar[30] = '\0';
        printf("\r[%s] %5.1f%%  %8.1f MB/s  dirty %s MB/s  pass %lld  "
               "exp. downtime %lld ms  %s%s%s\033[K", bar, pct, mbs, dirty,
               pass, (long long)num(r, "expected-downtime"), st ? st : "",
               hold[0] ? ", " : "", hold);
    } else {
        printf("%s%s%s %.1f%% %.1f MB/s dirty %s MB/s pass %lld "
               "expected-downtime %lld ms\n", st ? st : "?",
               hold[0] ? ", " : "", hold, pct, mbs, dirty, pass,
               (long long)num(r, "expected-downtime"));
    }
    fflush(stdout);
}

static void summary(json_object *r)
{
    json_object *ram = NULL;
    json_object_object_get_ex(r, "ram", &ram);
    const char *st = str(r, "status");
    printf("status: %s\n", st ? st : "?");
    printf("total time: %lld ms\n", (long long)num(r, "total-time"));
    printf("downtime: %lld ms\n", (long long)num(r, "downtime"));
    printf("throughput: %.1f MB/s\n", num(ram, "mbps") / 8.0);
    printf("passes: %lld%s\n", (long long)num(ram, "dirty-sync-count"),
           st && !strcmp(st, "completed")
               ? " (the last one with the guest stopped)" : "");
    printf("transferred: %lld bytes\n", (long long)num(ram, "transferred"));
    printf("total ram: %lld bytes\n", (long long)num(ram, "total"));
    const char *e = str(r, "error-desc");
    if (e)
        printf("error: %s\n", e);
}

static void sleep_ms(int ms)
{
    struct timespec ts = { 0, (long)ms * 1000000 };
    nanosleep(&ts, NULL);
}

static void sample(ctl_plot *p, json_object *r)
{
    json_object *ram = NULL;
    json_object_object_get_ex(r, "ram", &ram);
    const char *st = str(r, "status");
    ctl_sample s = {
        .t = num(r, "total-time") / 1000.0,
        .remaining = num(ram, "remaining"),
        .mbps = num(ram, "mbps"),
        .pass = (long long)num(ram, "dirty-sync-count"),
    };
    s.dirty = s.pass <= 1 && st && !strcmp(st, "active")
                  ? -1 : num(ram, "dirty-pages-rate") * PAGE;
    ctl_plot_add(p, &s);
}

int ctl_migrate(livemig_qmp *q, const char *uri, const char *plot_path)
{
    json_object *a = json_object_new_object();
    json_object_object_add(a, "uri", json_object_new_string(uri));
    json_object *r = ctl_exec(q, "migrate", a);
    if (!r)
        return CTL_CMD_ERROR;
    json_object_put(r);
    bool tty = isatty(STDOUT_FILENO);
    int tick = 0;
    json_object *last = NULL;
    ctl_plot *plot = plot_path ? ctl_plot_new() : NULL;
    /* a plot wants more points than the display: poll every 20 ms */
    int poll_ms = plot ? 20 : POLL_MS;
    for (;;) {
        r = ctl_exec(q, "query-migrate", NULL);
        if (!r) {
            json_object_put(last);
            return CTL_CMD_ERROR;
        }
        json_object_put(last);
        last = r;
        const char *st = str(r, "status");
        if (plot && st && strcmp(st, "setup"))
            sample(plot, r);
        if (!st || terminal(st))
            break;
        if ((tty && tick % (POLL_MS / poll_ms) == 0) ||
            tick % (1000 / poll_ms) == 0)
            progress(r, tty);
        tick++;
        sleep_ms(poll_ms);
    }
    if (tty)
        printf("\r\033[K");
    summary(last);
    const char *st = str(last, "status");
    int rc = st && !strcmp(st, "completed") ? CTL_OK : CTL_CMD_ERROR;
    if (plot) {
        char title[512];
        double sw = -1;
        if (st && !strcmp(st, "completed")) {
            /* the guest stopped `downtime` before the end */
            sw = (num(last, "total-time") - num(last, "downtime")) / 1000.0;
            snprintf(title, sizeof(title), "migration to %s: completed in "
                     "%.0f ms, downtime %.0f ms", uri,
                     num(last, "total-time"), num(last, "downtime"));
        } else {
            snprintf(title, sizeof(title), "migration to %s: %s", uri,
                     st ? st : "?");
        }
        int prc = ctl_plot_write(plot, plot_path, title, sw);
        if (prc == CTL_OK)
            printf("plot: %s\n", plot_path);
        else if (rc == CTL_OK)
            rc = prc;
        ctl_plot_free(plot);
    }
    json_object_put(last);
    return rc;
}
