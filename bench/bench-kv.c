/*
 * bench-kv - the kv store (a Redis-protocol guest of livemigd) against a
 * real redis-server on this machine, with redis-benchmark (SET and GET,
 * random keys over 100k):
 *   - redis-server, persistence off: the anchor every ratio is taken to;
 *   - kv, unprotected;
 *   - kv under micro-checkpointing (output commit) at mc-delay 5, 20 and
 *     100 ms, beside the Little's-law bound: with C clients of pipeline P
 *     and every reply held for about one epoch, at most C * P / mc-delay
 *     requests per second can complete, whatever the engine does;
 *   - kv under MC at 20 ms with the uffd-wp-async tracker (the default is
 *     manual marking), at 50 clients -P 16;
 *   - a live migration under load: the longest gap a client sees between
 *     two replies (it reconnects to whichever port serves).
 * Loads 50 clients -P 1, 50 -P 16, 500 -P 64; medians of 3 runs.  Prints
 * JSON, then a table.  Every process it starts it stops by PID.
 *
 *   bench-kv [BUILD_DIR]    (default: the directory above this program's)
 *   bench-kv --trackers [BUILD_DIR]
 *                           only MC at 20 ms, manual vs uffd-wp-async, at
 *                           50 clients -P 1 and -P 16, three times each,
 *                           alternating (to choose the default tracker)
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "bench-util.h"

#define REPS 3
#define MAX_PROCS 16

static char livemigd[PATH_MAX + 32], ctl_bin[PATH_MAX + 32], tmpdir[256];
static pid_t procs[MAX_PROCS];

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static void sleep_ms(int ms)
{
    struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000 };
    while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
        ;
}

static void die(const char *fmt, const char *arg)
{
    fprintf(stderr, "bench-kv: ");
    fprintf(stderr, fmt, arg);
    fprintf(stderr, "\n");
    for (int i = 0; i < MAX_PROCS; i++)
        if (procs[i] > 0)
            kill(procs[i], SIGKILL);
    exit(1);
}

static pid_t spawn(char *const argv[], const char *log)
{
    pid_t pid = fork();
    if (pid < 0)
        die("cannot fork: %s", strerror(errno));
    if (pid == 0) {
        int fd = open(log, O_WRONLY | O_CREAT | O_APPEND, 0644);
        int nul = open("/dev/null", O_RDONLY);
        if (fd >= 0) {
            dup2(fd, 1);
            dup2(fd, 2);
        }
        if (nul >= 0)
            dup2(nul, 0);
        execv(argv[0], argv);
        _exit(127);
    }
    for (int i = 0; i < MAX_PROCS; i++) {
        if (procs[i] <= 0) {
            procs[i] = pid;
            break;
        }
    }
    return pid;
}

/* SIGTERM, a bounded wait, SIGKILL; always reaped. */
static void stop(pid_t pid)
{
    if (pid <= 0)
        return;
    kill(pid, SIGTERM);
    for (int i = 0; i < 500; i++) {
        if (waitpid(pid, NULL, WNOHANG) == pid)
            goto done;
        sleep_ms(10);
    }
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
done:
    for (int i = 0; i < MAX_PROCS; i++)
        if (procs[i] == pid)
            procs[i] = 0;
}

static int dial(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = { .sin_family = AF_INET,
                              .sin_port = htons((uint16_t)port) };
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
        if (fd >= 0)
            close(fd);
        return -1;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    return fd;
}

/* Send @cmd, read one line of reply into @buf within @ms. */
static bool ask(int fd, const char *cmd, char *buf, size_t len, int ms)
{
    if (send(fd, cmd, strlen(cmd), MSG_NOSIGNAL) < 0)
        return false;
    size_t n = 0;
    double end = now() + ms / 1000.0;
    while (n < len - 1 && now() < end) {
        struct pollfd p = { fd, POLLIN, 0 };
        if (poll(&p, 1, 10) <= 0)
            continue;
        ssize_t r = read(fd, buf + n, len - 1 - n);
        if (r <= 0)
            return false;
        n += (size_t)r;
        buf[n] = '\0';
        if (strchr(buf, '\n'))
            return true;
    }
    return false;
}

static void wait_serving(int port, double timeout)
{
    double end = now() + timeout;
    while (now() < end) {
        int fd = dial(port);
        char b[64];
        bool ok = fd >= 0 && ask(fd, "PING\r\n", b, sizeof(b), 2000) &&
                  !strncmp(b, "+PONG", 5);
        if (fd >= 0)
            close(fd);
        if (ok)
            return;
        sleep_ms(10);
    }
    char p[16];
    snprintf(p, sizeof(p), "%d", port);
    die("nothing serves port %s", p);
}

/* livemig-ctl -s SOCK qmp JSON; its output (static). */
static const char *qmp(const char *sock, const char *json)
{
    static char out[65536];
    char cmd[PATH_MAX + 2048];
    snprintf(cmd, sizeof(cmd), "%s -s %s qmp '%s' 2>&1", ctl_bin, sock, json);
    FILE *f = popen(cmd, "r");
    if (!f)
        die("cannot run %s", ctl_bin);
    size_t n = fread(out, 1, sizeof(out) - 1, f);
    out[n] = '\0';
    pclose(f);
    return out;
}

static bool has_status(const char *sock, const char *st)
{
    char want[64];
    snprintf(want, sizeof(want), "\"status\":\"%s\"", st);
    return strstr(qmp(sock, "{\"execute\":\"query-migrate\"}"), want);
}

static void wait_status(const char *sock, const char *st, double timeout)
{
    double end = now() + timeout;
    while (!has_status(sock, st)) {
        if (now() > end)
            die("migration never reached '%s'", st);
        sleep_ms(20);
    }
}

typedef struct kvd {
    pid_t pid;
    int port;
    char sock[320];
} kvd;

static kvd kv_start(const char *tracker, const char *incoming)
{
    static int seq;
    kvd d = { .port = bu_free_port() };
    char spec[128], qmpa[340], log[320];
    snprintf(d.sock, sizeof(d.sock), "%s/kv%d.sock", tmpdir, seq);
    snprintf(log, sizeof(log), "%s/kv%d.log", tmpdir, seq++);
    snprintf(spec, sizeof(spec), "kv,size=256M,port=%d,tracker=%s", d.port,
             tracker);
    snprintf(qmpa, sizeof(qmpa), "unix:%s", d.sock);
    char *argv[] = { livemigd, "--guest", spec, "--qmp", qmpa,
                     incoming ? "--incoming" : NULL, (char *)incoming, NULL };
    d.pid = spawn(argv, log);
    double end = now() + 20;
    while (access(d.sock, F_OK) != 0) {
        if (now() > end)
            die("livemigd did not start (log %s)", log);
        sleep_ms(10);
    }
    return d;
}

/* ---- redis-benchmark ---------------------------------------------------- */

typedef struct result {
    double rps, p50, p99;
} result;

static double median3(double *v)
{
    qsort(v, REPS, sizeof(double), bu_cmp_double);
    return v[REPS / 2];
}

/* One redis-benchmark run: SET and GET results. */
static void run_once(int port, int clients, int pipeline, long n,
                     result *set, result *get)
{
    char cmd[512];
    snprintf(cmd, sizeof(cmd), "/usr/bin/redis-benchmark -h 127.0.0.1 -p %d "
             "-t set,get -r 100000 -n %ld -c %d -P %d --csv 2>/dev/null",
             port, n, clients, pipeline);
    FILE *f = popen(cmd, "r");
    if (!f)
        die("cannot run %s", "redis-benchmark");
    char line[512];
    bool got_set = false, got_get = false;
    while (fgets(line, sizeof(line), f)) {
        /* "SET","rps","avg","min","p50","p95","p99","max" */
        result r;
        double avg, min, p95;
        char name[32];
        if (sscanf(line, "\"%31[^\"]\",\"%lf\",\"%lf\",\"%lf\",\"%lf\","
                   "\"%lf\",\"%lf\"", name, &r.rps, &avg, &min, &r.p50,
                   &p95, &r.p99) != 7)
            continue;
        if (!strcmp(name, "SET")) {
            *set = r;
            got_set = true;
        } else if (!strcmp(name, "GET")) {
            *get = r;
            got_get = true;
        }
    }
    pclose(f);
    if (!got_set || !got_get)
        die("redis-benchmark gave no result (%s)", cmd);
}

static void run_median(int port, int clients, int pipeline, long n,
                       result *set, result *get)
{
    double v[6][REPS];
    for (int i = 0; i < REPS; i++) {
        result s = { 0 }, g = { 0 };
        run_once(port, clients, pipeline, n, &s, &g);
        v[0][i] = s.rps; v[1][i] = s.p50; v[2][i] = s.p99;
        v[3][i] = g.rps; v[4][i] = g.p50; v[5][i] = g.p99;
    }
    *set = (result){ median3(v[0]), median3(v[1]), median3(v[2]) };
    *get = (result){ median3(v[3]), median3(v[4]), median3(v[5]) };
}

/* ---- scenarios -------------------------------------------------------- */

static const struct { int c, p; } loads[] = { { 50, 1 }, { 50, 16 },
                                              { 500, 64 } };
#define NLOADS 3

typedef struct scen {
    const char *name;
    int mc_delay;          /* 0: not under MC */
    const char *tracker;
    int only_load;         /* -1: every load */
    result set[NLOADS], get[NLOADS];
    double pause_us;
    bool ran[NLOADS];
} scen;

/* About a second of requests at the expected rate, so that connecting
 * and warming up weigh little in the rate. */
static long ops_for(const scen *s, int l)
{
    double rate = s->mc_delay ? (double)loads[l].c * loads[l].p /
                                    (s->mc_delay / 1000.0)
                              : 1000000.0;
    long n = (long)(rate * 1.0);
    return n < 2000 ? 2000 : n > 1000000 ? 1000000 : n;
}

static void run_redis(scen *s)
{
    int port = bu_free_port();
    char p[16], log[320];
    snprintf(p, sizeof(p), "%d", port);
    snprintf(log, sizeof(log), "%s/redis.log", tmpdir);
    char *argv[] = { "/usr/bin/redis-server", "--port", p, "--bind",
                     "127.0.0.1", "--save", "", "--appendonly", "no",
                     "--dir", tmpdir, NULL };
    pid_t pid = spawn(argv, log);
    wait_serving(port, 20);
    for (int l = 0; l < NLOADS; l++) {
        run_median(port, loads[l].c, loads[l].p, ops_for(s, l), &s->set[l],
                   &s->get[l]);
        s->ran[l] = true;
    }
    stop(pid);
}

static double pause_avg(const char *sock)
{
    const char *o = qmp(sock, "{\"execute\":\"query-migrate\"}");
    const char *p = strstr(o, "\"pause-avg-us\":");
    return p ? atof(p + 15) : -1;
}

static void run_kv(scen *s)
{
    kvd pri = kv_start(s->tracker, NULL), bak = { 0 };
    wait_serving(pri.port, 20);
    if (s->mc_delay) {
        char uri[64], json[256];
        snprintf(uri, sizeof(uri), "tcp:127.0.0.1:%d", bu_free_port());
        bak = kv_start(s->tracker, uri);
        qmp(pri.sock, "{\"execute\":\"migrate-set-capabilities\",\"arguments\":"
            "{\"capabilities\":[{\"capability\":\"micro-checkpointing\","
            "\"state\":true}]}}");
        snprintf(json, sizeof(json), "{\"execute\":\"migrate-set-parameters\","
                 "\"arguments\":{\"mc-delay\":%d}}", s->mc_delay);
        qmp(pri.sock, json);
        snprintf(json, sizeof(json), "{\"execute\":\"migrate\",\"arguments\":"
                 "{\"uri\":\"%s\"}}", uri);
        qmp(pri.sock, json);
        wait_status(pri.sock, "checkpointing", 60);
    }
    for (int l = 0; l < NLOADS; l++) {
        if (s->only_load >= 0 && l != s->only_load)
            continue;
        run_median(pri.port, loads[l].c, loads[l].p, ops_for(s, l),
                   &s->set[l], &s->get[l]);
        s->ran[l] = true;
    }
    if (s->mc_delay) {
        s->pause_us = pause_avg(pri.sock);
        if (!has_status(pri.sock, "checkpointing"))
            die("the backup was lost during the run (%s)", s->name);
    }
    stop(pri.pid);
    if (bak.pid)
        stop(bak.pid);
}

/* ---- a live migration under load: the gap a client sees ------------------ */

static double migration_gap_ms(void)
{
    kvd src = kv_start("manual", NULL);
    char uri[64], json[160];
    snprintf(uri, sizeof(uri), "tcp:127.0.0.1:%d", bu_free_port());
    kvd dst = kv_start("manual", uri);
    wait_serving(src.port, 20);
    /* Some data to move: 100k keys. */
    char cmd[256];
    snprintf(cmd, sizeof(cmd), "/usr/bin/redis-benchmark -h 127.0.0.1 -p %d "
             "-t set -r 100000 -n 200000 -c 50 -P 16 -q >/dev/null 2>&1",
             src.port);
    if (system(cmd) != 0)
        die("%s failed", "redis-benchmark");
    int ports[2] = { src.port, dst.port }, cur = 0;
    int fd = dial(ports[cur]);
    double last = now(), gap = 0, t_mig = 0;
    bool started = false, done = false;
    double end = now() + 60;
    unsigned long i = 0;
    while (now() < end) {
        char b[64];
        snprintf(cmd, sizeof(cmd), "SET gap:%lu %lu\r\n", i % 1000, i);
        if (fd >= 0 && ask(fd, cmd, b, sizeof(b), 5000) &&
            !strncmp(b, "+OK", 3)) {
            double t = now();
            if (started && t - last > gap)
                gap = t - last;
            last = t;
            i++;
        } else {
            if (fd >= 0)
                close(fd);
            cur ^= 1;
            fd = dial(ports[cur]);
            if (fd < 0)
                sleep_ms(1);
        }
        if (!started && i > 2000) {
            snprintf(json, sizeof(json), "{\"execute\":\"migrate\","
                     "\"arguments\":{\"uri\":\"%s\"}}", uri);
            qmp(src.sock, json);
            started = true;
            t_mig = now();
        }
        if (started && !done && now() - t_mig > 0.2 && cur == 1 &&
            now() - last < 0.01 && has_status(src.sock, "completed"))
            done = true;
        if (done && now() - t_mig > 1.0)
            break;
    }
    if (fd >= 0)
        close(fd);
    if (!done)
        die("the migration under load did not %s", "complete");
    stop(src.pid);
    stop(dst.pid);
    return gap * 1000;
}

/* ---- report -------------------------------------------------------------- */

static void rm_tmp(void)
{
    char cmd[320];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
    if (system(cmd) != 0) {
        /* leave it */
    }
}

int main(int argc, char **argv)
{
    char self[PATH_MAX];
    bool trackers = argc > 1 && !strcmp(argv[1], "--trackers");
    if (trackers) {
        argv++;
        argc--;
    }
    const char *build = argc > 1 ? argv[1] : NULL;
    if (!build) {
        ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
        if (n < 0)
            die("cannot find this program: %s", strerror(errno));
        self[n] = '\0';
        *strrchr(self, '/') = '\0';          /* build/bench */
        *strrchr(self, '/') = '\0';          /* build */
        build = self;
    }
    snprintf(livemigd, sizeof(livemigd), "%s/src/daemon/livemigd", build);
    snprintf(ctl_bin, sizeof(ctl_bin), "%s/src/ctl/livemig-ctl", build);
    if (access(livemigd, X_OK) || access(ctl_bin, X_OK))
        die("no livemigd or livemig-ctl under %s; give the build directory",
            build);
    if (access("/usr/bin/redis-server", X_OK) ||
        access("/usr/bin/redis-benchmark", X_OK)) {
        printf("{\"skipped\": \"redis-server and redis-benchmark are needed "
               "(Debian packages redis-server, redis-tools)\"}\n");
        return 0;
    }
    snprintf(tmpdir, sizeof(tmpdir), "/tmp/lm-bench-kv-XXXXXX");
    if (!mkdtemp(tmpdir))
        die("cannot create a temporary directory: %s", strerror(errno));
    signal(SIGPIPE, SIG_IGN);

    scen sc[] = {
        { .name = "redis-server", .only_load = -1 },
        { .name = "kv", .tracker = "manual", .only_load = -1 },
        { .name = "kv-mc-5", .mc_delay = 5, .tracker = "manual",
          .only_load = -1 },
        { .name = "kv-mc-20", .mc_delay = 20, .tracker = "manual",
          .only_load = -1 },
        { .name = "kv-mc-100", .mc_delay = 100, .tracker = "manual",
          .only_load = -1 },
        { .name = "kv-mc-20-uffd", .mc_delay = 20,
          .tracker = "uffd-wp-async", .only_load = 1 },
    };
    size_t ns = sizeof(sc) / sizeof(sc[0]);
    if (trackers) {
        printf("tracker        load   test   ops/s   p50 ms   p99 ms  pause us\n");
        for (int rep = 0; rep < 3; rep++) {
            for (int t = 0; t < 2; t++) {
                scen x = { .name = t ? "uffd-wp-async" : "manual",
                           .mc_delay = 20, .tracker = t ? "uffd-wp-async"
                                                        : "manual",
                           .only_load = -1 };
                x.only_load = 1;
                run_kv(&x);
                for (int k = 0; k < 2; k++) {
                    result *r = k ? &x.get[1] : &x.set[1];
                    printf("%-14s 50x16  %s %9.0f %8.3f %8.3f %9.0f\n",
                           x.name, k ? "GET" : "SET", r->rps, r->p50, r->p99,
                           x.pause_us);
                }
            }
        }
        rm_tmp();
        return 0;
    }
    run_redis(&sc[0]);
    for (size_t i = 1; i < ns; i++)
        run_kv(&sc[i]);
    double gaps[REPS];
    for (int i = 0; i < REPS; i++)
        gaps[i] = migration_gap_ms();
    double gap = median3(gaps);

    /* JSON */
    printf("{\"bench\": \"kv\", \"runs\": %d, \"results\": [\n", REPS);
    bool first = true;
    for (size_t i = 0; i < ns; i++) {
        for (int l = 0; l < NLOADS; l++) {
            if (!sc[i].ran[l])
                continue;
            for (int t = 0; t < 2; t++) {
                result *r = t ? &sc[i].get[l] : &sc[i].set[l];
                result *a = t ? &sc[0].get[l] : &sc[0].set[l];
                printf("%s  {\"target\": \"%s\", \"clients\": %d, "
                       "\"pipeline\": %d, \"test\": \"%s\", \"ops\": %.0f, "
                       "\"p50-ms\": %.3f, \"p99-ms\": %.3f, "
                       "\"ratio-to-redis\": %.3f", first ? "" : ",\n",
                       sc[i].name, loads[l].c, loads[l].p, t ? "GET" : "SET",
                       r->rps, r->p50, r->p99, r->rps / a->rps);
                first = false;
                if (sc[i].mc_delay) {
                    double bound = (double)loads[l].c * loads[l].p /
                                   (sc[i].mc_delay / 1000.0);
                    printf(", \"mc-delay-ms\": %d, \"littles-bound\": %.0f, "
                           "\"ratio-to-bound\": %.3f, \"pause-avg-us\": %.0f",
                           sc[i].mc_delay, bound, r->rps / bound,
                           sc[i].pause_us);
                }
                printf("}");
            }
        }
    }
    printf("\n], \"migration-client-gap-ms\": %.1f}\n", gap);

    /* Table */
    printf("\n%-14s %-8s %-4s %10s %8s %8s %7s %10s %7s\n", "target", "load",
           "test", "ops/s", "p50 ms", "p99 ms", "x redis", "bound", "x bound");
    for (size_t i = 0; i < ns; i++) {
        for (int l = 0; l < NLOADS; l++) {
            if (!sc[i].ran[l])
                continue;
            for (int t = 0; t < 2; t++) {
                result *r = t ? &sc[i].get[l] : &sc[i].set[l];
                result *a = t ? &sc[0].get[l] : &sc[0].set[l];
                char load[16], bound[16] = "-", xb[16] = "-";
                snprintf(load, sizeof(load), "%dx%d", loads[l].c, loads[l].p);
                if (sc[i].mc_delay) {
                    double b = (double)loads[l].c * loads[l].p /
                               (sc[i].mc_delay / 1000.0);
                    snprintf(bound, sizeof(bound), "%.0f", b);
                    snprintf(xb, sizeof(xb), "%.2f", r->rps / b);
                }
                printf("%-14s %-8s %-4s %10.0f %8.3f %8.3f %7.2f %10s %7s\n",
                       sc[i].name, load, t ? "GET" : "SET", r->rps, r->p50,
                       r->p99, r->rps / a->rps, bound, xb);
            }
        }
    }
    printf("live migration under load: longest client gap %.1f ms "
           "(median of %d)\n", gap, REPS);
    rm_tmp();
    return 0;
}
