/* ctl.h - what the files of livemig-ctl share. */
#ifndef LM_CTL_H
#define LM_CTL_H

#include <json-c/json.h>

#include "livemig/qmp-client.h"

/* Exit codes a script can rely on. */
enum {
    CTL_OK = 0,
    CTL_CMD_ERROR = 1,    /* the daemon reported an error */
    CTL_USAGE = 2,        /* bad command line */
    CTL_NO_CONNECT = 3,   /* cannot reach the monitor */
};

/* Run a command; on error print "livemig-ctl: CMD: desc" and return NULL. */
json_object *ctl_exec(livemig_qmp *q, const char *cmd, json_object *args);

/* livemig-ctl migrate URI: start, show progress, summarise; with @plot
 * (a file name or NULL) also draw the migration into it (ctl-plot.c). */
int ctl_migrate(livemig_qmp *q, const char *uri, const char *plot);

/* One point of a plotted migration. */
typedef struct ctl_sample {
    double t;              /* s since migrate */
    double remaining;      /* bytes */
    double mbps;           /* megabits/s */
    double dirty;          /* bytes/s, < 0 while not measured */
    long long pass;
} ctl_sample;

typedef struct ctl_plot ctl_plot;
ctl_plot *ctl_plot_new(void);
void ctl_plot_add(ctl_plot *p, const ctl_sample *s);
/* Draw to @path (SVG) with gnuplot; @switchover_s < 0: none.  Returns a
 * CTL_* exit code, and says on stderr what went wrong (gnuplot missing:
 * how to install it). */
int ctl_plot_write(ctl_plot *p, const char *path, const char *title,
                   double switchover_s);
void ctl_plot_free(ctl_plot *p);

#endif
