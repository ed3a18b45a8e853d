/*
 * ctl-plot.c - livemig-ctl migrate --plot FILE.svg: the migration pass by
 * pass (remaining bytes, throughput, dirty rate over time, the pass
 * boundaries and the switchover), drawn by gnuplot from the samples the
 * progress display collected.  gnuplot (Debian: gnuplot-nox) is run as a
 * program; without it no plot is written and the user is told how to get
 * it.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "ctl.h"

struct ctl_plot {
    ctl_sample *s;
    size_t n, cap;
};

ctl_plot *ctl_plot_new(void)
{
    return calloc(1, sizeof(ctl_plot));
}

void ctl_plot_free(ctl_plot *p)
{
    if (p)
        free(p->s);
    free(p);
}

void ctl_plot_add(ctl_plot *p, const ctl_sample *s)
{
    if (p->n == p->cap) {
        size_t cap = p->cap ? p->cap * 2 : 256;
        ctl_sample *ns = realloc(p->s, cap * sizeof(*ns));
        if (!ns)
            return;   /* a plot with fewer points is still a plot */
        p->s = ns;
        p->cap = cap;
    }
    p->s[p->n++] = *s;
}

/* Run gnuplot on @script; 0 ok, 127 not installed, else its status. */
static int run_gnuplot(const char *script, char *msg, size_t len)
{
    int pe[2];
    if (pipe(pe) != 0)
        return -1;
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0)
        return -1;
    if (pid == 0) {
        dup2(pe[1], 2);
        int nul = open("/dev/null", O_RDWR);
        if (nul >= 0) {
            dup2(nul, 0);
            dup2(nul, 1);
        }
        close(pe[0]);
        execlp("gnuplot", "gnuplot", script, (char *)NULL);
        _exit(127);
    }
    close(pe[1]);
    size_t got = 0;
    ssize_t r;
    while (len > 1 && (r = read(pe[0], msg + got, len - 1 - got)) > 0)
        got += (size_t)r;
    msg[got] = '\0';
    close(pe[0]);
    int st;
    while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
        ;
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

int ctl_plot_write(ctl_plot *p, const char *path, const char *title,
                   double switchover_s)
{
    if (strchr(path, '\'') || strchr(path, '\n')) {
        fprintf(stderr, "livemig-ctl: --plot: the file name '%s' has a "
                "quote or a newline; choose another\n", path);
        return CTL_USAGE;
    }
    char dir[] = "/tmp/livemig-plot-XXXXXX";
    if (!mkdtemp(dir)) {
        fprintf(stderr, "livemig-ctl: --plot: cannot create a temporary "
                "directory: %s\n", strerror(errno));
        return CTL_CMD_ERROR;
    }
    char data[64], script[64];
    snprintf(data, sizeof(data), "%s/data", dir);
    snprintf(script, sizeof(script), "%s/plot.gp", dir);
    FILE *d = fopen(data, "w"), *g = fopen(script, "w");
    int rc = CTL_CMD_ERROR;
    if (!d || !g) {
        fprintf(stderr, "livemig-ctl: --plot: cannot write in %s\n", dir);
        goto out;
    }
    fprintf(d, "# time-s remaining-MiB throughput-MBps dirty-MBps pass\n");
    for (size_t i = 0; i < p->n; i++) {
        const ctl_sample *s = &p->s[i];
        fprintf(d, "%.3f %.3f ", s->t, s->remaining / 1048576.0);
        if (s->mbps <= 0 && s->pass <= 1)
            fprintf(d, "NaN ");   /* not measured yet */
        else
            fprintf(d, "%.3f ", s->mbps / 8.0);
        if (s->dirty < 0)
            fprintf(d, "NaN");   /* not measured yet (pass 1) */
        else
            fprintf(d, "%.3f", s->dirty / 1e6);
        fprintf(d, " %lld\n", s->pass);
    }
    fprintf(g, "set terminal svg size 960,540 dynamic enhanced "
            "font 'sans,11' background rgb 'white'\n"
            "set output '%s'\n"
            "set title \"%s\" noenhanced\n"
            "set xlabel 'time since migrate (s)'\n"
            "set ylabel 'remaining to send (MiB)'\n"
            "set y2label 'rate (MB/s)'\n"
            "set ytics nomirror\nset y2tics\nset yrange [0:*]\n"
            "set y2range [0:*]\nset grid xtics ytics lc rgb '#dddddd'\n"
            "set key outside bottom center horizontal\n", path, title);
    long long last = 0;
    for (size_t i = 0; i < p->n; i++) {
        if (p->s[i].pass > last && p->s[i].pass > 1) {
            fprintf(g, "set arrow from first %.3f, graph 0 to first %.3f, "
                    "graph 1 nohead lw 1 lc rgb '#aaaaaa'\n"
                    "set label 'pass %lld' at %.3f, graph 0.97 left "
                    "offset 0.3,0 font ',9' tc rgb '#555555'\n",
                    p->s[i].t, p->s[i].t, p->s[i].pass, p->s[i].t);
        }
        if (p->s[i].pass > last)
            last = p->s[i].pass;
    }
    if (switchover_s >= 0)
        fprintf(g, "set arrow from first %.3f, graph 0 to first %.3f, "
                "graph 1 nohead lw 2 lc rgb '#cc0000'\n"
                "set label 'switchover' at first %.3f, graph 0.5 right "
                "offset -0.5,0 tc rgb '#cc0000'\n",
                switchover_s, switchover_s, switchover_s);
    fprintf(g, "plot '%s' using 1:2 with lines lw 2 lc rgb '#1f77b4' "
            "title 'remaining (MiB)', \\\n"
            "     '' using 1:3 axes x1y2 with lines lw 2 lc rgb '#2ca02c' "
            "title 'throughput (MB/s)', \\\n"
            "     '' using 1:4 axes x1y2 with lines lw 2 lc rgb '#ff7f0e' "
            "title 'dirty rate (MB/s)'\n", data);
    fclose(d);
    fclose(g);
    d = g = NULL;
    char msg[1024];
    int st = run_gnuplot(script, msg, sizeof(msg));
    if (st == 127)
        fprintf(stderr, "livemig-ctl: --plot: gnuplot is not installed; "
                "install it (Debian: apt-get install gnuplot-nox) to get "
                "'%s'\n", path);
    else if (st != 0)
        fprintf(stderr, "livemig-ctl: --plot: gnuplot failed (%d): %s\n",
                st, msg);
    else
        rc = CTL_OK;
out:
    if (d)
        fclose(d);
    if (g)
        fclose(g);
    unlink(data);
    unlink(script);
    rmdir(dir);
    return rc;
}
