/*
 * bench-link.c - migrations between two hosts over a shaped link: run
 * inside `scripts/two-hosts run --rate 1gbit -- bench-link [SIZE]` (bench/run
 * does), one livemigd per network namespace, driven over QMP.
 *
 * The link limit is measured first in the same run (one TCP stream of
 * 256 MiB between the namespaces).  Then, for fill=random and fill=text,
 * idle and dirty-rate=max guests of SIZE (default 1G): precopy, multifd
 * zstd and lz4, auto-converge, postcopy after one pass, and postcopy with
 * max-postcopy-bandwidth at 0.9x the link.  Each prints total time,
 * downtime, bytes, the guest's write rate during the migration relative
 * to before, and for postcopy the time from the switch to completed
 * against (bytes left at the switch / link rate) and the fault latency
 * p50/p90/p99/p99.9/max (the destination's postcopy-latency-us, within
 * 6.25 %; also the upper bounds of its log2 buckets, as QEMU shows them),
 * each postcopy also with postcopy-preempt (requested pages on their own
 * connection).  BENCH_LINK_ONLY=WORD[,WORD...] runs only the scenarios
 * whose name contains one of the words (e.g. "postcopy"),
 * BENCH_LINK_FILLS=random only that fill and BENCH_LINK_RATES=0 only
 * that dirty-rate (comma-separated lists too).
 * A precopy that does not converge in 25 s is cancelled and says so.
 * JSON on stdout; progress on stderr.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <json-c/json.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "livemig/livemig.h"
#include "livemig/qmp-client.h"

#define PRECOPY_TIMEOUT_S 25.0
#define MiB (1024.0 * 1024.0)

static const char *ns_src, *ns_dst, *addr_dst, *daemon_bin;
static char tmpdir[256];
static int port_next = 47000;

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void sleep_ms(int ms)
{
    struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000L };
    while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
        ;
}

static void die(const char *fmt, const char *a)
{
    fprintf(stderr, "bench-link: ");
    fprintf(stderr, fmt, a);
    fprintf(stderr, "\n");
    exit(1);
}

static bool enter_ns(const char *ns)
{
    char p[300];
    snprintf(p, sizeof(p), "/run/netns/%s", ns);
    int fd = open(p, O_RDONLY | O_CLOEXEC);
    bool ok = fd >= 0 && setns(fd, CLONE_NEWNET) == 0;
    if (fd >= 0)
        close(fd);
    return ok;
}

/* One TCP stream of @bytes from the source namespace to the destination:
 * what the link carries, measured now. */
static double link_rate(size_t bytes)
{
    int port = port_next++;
    int pipefd[2];
    if (pipe(pipefd) < 0)
        return 0;
    pid_t srv = fork();
    if (srv == 0) {
        if (!enter_ns(ns_dst))
            _exit(1);
        int l = socket(AF_INET, SOCK_STREAM, 0), one = 1;
        setsockopt(l, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
        struct sockaddr_in sa = { .sin_family = AF_INET,
                                  .sin_port = htons((uint16_t)port) };
        inet_pton(AF_INET, addr_dst, &sa.sin_addr);
        if (bind(l, (struct sockaddr *)&sa, sizeof(sa)) || listen(l, 1))
            _exit(1);
        (void)!write(pipefd[1], "r", 1);
        int c = accept(l, NULL, NULL);
        static char buf[1 << 20];
        while (read(c, buf, sizeof(buf)) > 0)
            ;
        _exit(0);
    }
    char ready;
    (void)!read(pipefd[0], &ready, 1);
    close(pipefd[0]);
    close(pipefd[1]);
    int res[2];
    if (pipe(res) < 0)
        return 0;
    pid_t cli = fork();
    if (cli == 0) {
        if (!enter_ns(ns_src))
            _exit(1);
        int s = socket(AF_INET, SOCK_STREAM, 0);
        struct sockaddr_in sa = { .sin_family = AF_INET,
                                  .sin_port = htons((uint16_t)port) };
        inet_pton(AF_INET, addr_dst, &sa.sin_addr);
        if (connect(s, (struct sockaddr *)&sa, sizeof(sa)))
            _exit(1);
        static char buf[1 << 20];
        memset(buf, 0x5a, sizeof(buf));
        double t0 = now_s();
        for (size_t done = 0; done < bytes; done += sizeof(buf))
            if (write(s, buf, sizeof(buf)) <= 0)
                _exit(1);
        shutdown(s, SHUT_WR);
        char x;
        (void)!read(s, &x, 1);   /* until the receiver closed: all arrived */
        double dt = now_s() - t0;
        (void)!write(res[1], &dt, sizeof(dt));
        _exit(0);
    }
    close(res[1]);
    double dt = 0;
    if (read(res[0], &dt, sizeof(dt)) != sizeof(dt))
        dt = 0;
    close(res[0]);
    waitpid(cli, NULL, 0);
    waitpid(srv, NULL, 0);
    return dt > 0 ? (double)bytes / dt : 0;
}

typedef struct daemon_t {
    pid_t pid;
    char sock[300];
    livemig_qmp *q;
} daemon_t;

static void start_daemon(daemon_t *d, const char *ns, const char *spec,
                         bool incoming, const char *name)
{
    snprintf(d->sock, sizeof(d->sock), "%s/%s.sock", tmpdir, name);
    unlink(d->sock);
    char addr[320], log[320];
    snprintf(addr, sizeof(addr), "unix:%s", d->sock);
    snprintf(log, sizeof(log), "%s/%s.log", tmpdir, name);
    d->pid = fork();
    if (d->pid == 0) {
        int fd = open(log, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        if (fd >= 0) {
            dup2(fd, 1);
            dup2(fd, 2);
        }
        if (incoming)
            execlp("ip", "ip", "netns", "exec", ns, daemon_bin, "--guest",
                   spec, "--qmp", addr, "--incoming", "defer", (char *)NULL);
        else
            execlp("ip", "ip", "netns", "exec", ns, daemon_bin, "--guest",
                   spec, "--qmp", addr, (char *)NULL);
        _exit(127);
    }
    livemig_error err = { 0 };
    for (int i = 0; i < 600 && !d->q; i++) {
        if (access(d->sock, F_OK) == 0)
            d->q = livemig_qmp_connect(addr, 30000, &err);
        if (!d->q)
            sleep_ms(50);
    }
    if (!d->q)
        die("livemigd did not start (see %s)", log);
}

static void stop_daemon(daemon_t *d)
{
    if (d->q) {
        livemig_error err = { 0 };
        json_object_put(livemig_qmp_execute(d->q, "quit", NULL, &err));
        livemig_qmp_close(d->q);
        d->q = NULL;
    }
    for (int i = 0; i < 100; i++) {
        if (waitpid(d->pid, NULL, WNOHANG) == d->pid)
            return;
        sleep_ms(50);
    }
    kill(d->pid, SIGKILL);
    waitpid(d->pid, NULL, 0);
}

static json_object *qmp(daemon_t *d, const char *cmd, const char *args)
{
    livemig_error err = { 0 };
    json_object *a = args ? json_tokener_parse(args) : NULL;
    json_object *r = livemig_qmp_execute(d->q, cmd, a, &err);
    if (!r)
        die("QMP failed: %s", err.desc);
    return r;
}

static void qmp_void(daemon_t *d, const char *cmd, const char *args)
{
    json_object_put(qmp(d, cmd, args));
}

static json_object *get(json_object *o, const char *path)
{
    char buf[128];
    snprintf(buf, sizeof(buf), "%s", path);
    for (char *save, *k = strtok_r(buf, ".", &save); k && o;
         k = strtok_r(NULL, ".", &save))
        if (!json_object_object_get_ex(o, k, &o))
            return NULL;
    return o;
}

static double num(json_object *o, const char *path)
{
    json_object *v = get(o, path);
    return v ? json_object_get_double(v) : 0;
}

static bool last_stalled;   /* the verdict of the last status() */

static const char *status(daemon_t *d, char *buf, size_t len)
{
    json_object *r = qmp(d, "query-migrate", NULL);
    json_object *s = get(r, "status");
    json_object *v = get(r, "convergence.verdict");
    snprintf(buf, len, "%s", s ? json_object_get_string(s) : "?");
    last_stalled = v && strcmp(json_object_get_string(v), "stalled") == 0;
    json_object_put(r);
    return buf;
}

static double written(daemon_t *d)
{
    json_object *r = qmp(d, "query-guest", NULL);
    double w = num(r, "pages-written");
    json_object_put(r);
    return w;
}

/* Upper bound (us) of the bucket holding the @q quantile. */
static double quantile(json_object *dist, double q)
{
    double total = 0, seen = 0;
    size_t n = dist ? json_object_array_length(dist) : 0;
    for (size_t i = 0; i < n; i++)
        total += json_object_get_double(json_object_array_get_idx(dist, i));
    for (size_t i = 0; i < n; i++) {
        seen += json_object_get_double(json_object_array_get_idx(dist, i));
        if (total > 0 && seen >= q * total)
            return (double)(2ull << i);
    }
    return 0;
}

typedef struct scenario {
    const char *name;
    const char *caps;     /* capabilities on both sides, JSON array */
    const char *params;   /* source parameters, JSON object */
    bool postcopy;
    bool pc_cap;          /* max-postcopy-bandwidth 0.9x the link */
} scenario;

static json_object *run(const char *size, const char *fill, const char *rate,
                        const scenario *sc, double link)
{
    char spec[200];
    snprintf(spec, sizeof(spec), "pattern,size=%s,threads=1,dirty-rate=%s,"
             "fill=%s", size, rate, fill);
    fprintf(stderr, "bench-link: %s %s %s ...\n", sc->name, fill, rate);
    daemon_t s = { 0 }, d = { 0 };
    start_daemon(&s, ns_src, spec, false, "src");
    start_daemon(&d, ns_dst, spec, true, "dst");
    char caps[400];
    snprintf(caps, sizeof(caps), "{\"capabilities\": %s}", sc->caps);
    qmp_void(&s, "migrate-set-capabilities", caps);
    qmp_void(&d, "migrate-set-capabilities", caps);
    qmp_void(&s, "migrate-set-parameters", sc->params);
    if (sc->pc_cap) {
        char p[100];
        snprintf(p, sizeof(p), "{\"max-postcopy-bandwidth\": %.0f}",
                 link * 0.9);
        qmp_void(&s, "migrate-set-parameters", p);
    }
    char uri[100], args[160];
    snprintf(uri, sizeof(uri), "tcp:%s:%d", addr_dst, port_next++);
    snprintf(args, sizeof(args), "{\"uri\": \"%s\"}", uri);
    qmp_void(&d, "migrate-incoming", args);
    /* The guest's own speed before, over 1 s. */
    double w0 = written(&s), t0 = now_s();
    sleep_ms(1000);
    double before = (written(&s) - w0) / (now_s() - t0);

    double w1 = written(&s);
    t0 = now_s();
    qmp_void(&s, "migrate", args);
    if (sc->postcopy)
        qmp_void(&s, "migrate-start-postcopy", NULL);
    char st[64];
    double t_switch = 0, left_at_switch = 0, w_switch = 0, t_stalled = 0;
    bool converged = true;
    for (;;) {
        status(&s, st, sizeof(st));
        if (!strcmp(st, "completed") || !strcmp(st, "failed"))
            break;
        if (last_stalled && !t_stalled)
            t_stalled = now_s();
        if (sc->postcopy && !t_switch && !strcmp(st, "postcopy-active")) {
            t_switch = now_s();
            json_object *r = qmp(&s, "query-migrate", NULL);
            left_at_switch = num(r, "ram.remaining");
            json_object_put(r);
            w_switch = written(&d);
        }
        if (sc->postcopy && now_s() - t0 > 180) {
            converged = false;   /* paused or stuck: say so, go on */
            break;
        }
        if (!sc->postcopy && now_s() - t0 > PRECOPY_TIMEOUT_S) {
            converged = false;
            qmp_void(&s, "migrate_cancel", NULL);
            for (int i = 0; i < 200 && strcmp(status(&s, st, sizeof(st)),
                                              "cancelled"); i++)
                sleep_ms(50);
            break;
        }
        sleep_ms(10);
    }
    double t_end = now_s();
    json_object *qs = qmp(&s, "query-migrate", NULL);
    json_object *qd = qmp(&d, "query-migrate", NULL);
    json_object *o = json_object_new_object();
    json_object_object_add(o, "scenario", json_object_new_string(sc->name));
    json_object_object_add(o, "fill", json_object_new_string(fill));
    json_object_object_add(o, "dirty-rate", json_object_new_string(rate));
    json_object_object_add(o, "status", json_object_new_string(st));
    json_object_object_add(o, "converged", json_object_new_boolean(converged));
    json_object_object_add(o, "total-s", json_object_new_double(t_end - t0));
    if (t_stalled)
        json_object_object_add(o, "stalled-after-s",
                               json_object_new_double(t_stalled - t0));
    json_object_object_add(o, "downtime-ms",
                           json_object_new_double(num(qs, "downtime")));
    double bytes = num(qs, "ram.transferred");
    json_object_object_add(o, "bytes", json_object_new_double(bytes));
    json_object_object_add(o, "rate-vs-link", json_object_new_double(
        bytes / (t_end - t0) / link));
    /* Guest throughput during the migration relative to before: the
     * source's writes until the switch plus the destination's after. */
    double during;
    if (sc->postcopy && t_switch) {
        during = (written(&s) - w1 + written(&d) - w_switch) / (t_end - t0);
    } else {
        during = (written(&s) - w1) / (t_end - t0);
    }
    json_object_object_add(o, "guest-throughput-ratio",
                           json_object_new_double(before > 0 ? during / before
                                                             : 0));
    if (sc->postcopy) {
        double ideal = left_at_switch / link;
        double took = t_switch ? t_end - t_switch : 0;
        json_object_object_add(o, "switch-to-completed-s",
                               json_object_new_double(took));
        json_object_object_add(o, "left-at-switch-bytes",
                               json_object_new_double(left_at_switch));
        json_object_object_add(o, "switch-to-completed-vs-ideal",
                               json_object_new_double(ideal > 0 ? took / ideal
                                                                : 0));
        /* Percentiles from the destination's fine histogram (a bucket's
         * upper bound, within 6.25 %), and the log2 buckets' bounds as
         * QEMU would show them. */
        json_object_object_add(o, "fault-latency-p50-us",
            json_object_new_double(num(qd, "postcopy-latency-us.p50")));
        json_object_object_add(o, "fault-latency-p90-us",
            json_object_new_double(num(qd, "postcopy-latency-us.p90")));
        json_object_object_add(o, "fault-latency-p99-us",
            json_object_new_double(num(qd, "postcopy-latency-us.p99")));
        json_object_object_add(o, "fault-latency-p999-us",
            json_object_new_double(num(qd, "postcopy-latency-us.p999")));
        json_object_object_add(o, "fault-latency-max-us",
            json_object_new_double(num(qd, "postcopy-latency-us.max")));
        json_object *dist = get(qd, "postcopy-latency-dist");
        json_object_object_add(o, "fault-latency-log2-p50-us",
                               json_object_new_double(quantile(dist, 0.5)));
        json_object_object_add(o, "fault-latency-log2-p99-us",
                               json_object_new_double(quantile(dist, 0.99)));
        json_object_object_add(o, "postcopy-requests", json_object_new_double(
            num(qd, "ram.postcopy-requests")));
        json_object_object_add(o, "postcopy-preempt-pages",
            json_object_new_double(num(qd, "ram.postcopy-preempt-pages")));
        if (sc->pc_cap)
            json_object_object_add(o, "max-postcopy-bandwidth-vs-link",
                                   json_object_new_double(0.9));
    }
    bool verified = false;
    if (strcmp(st, "completed") == 0) {   /* a paused guest would block */
        json_object *v = qmp(&d, "guest-verify", NULL);
        json_object *ok = get(v, "ok");
        verified = ok && json_object_get_boolean(ok);
        json_object_put(v);
    }
    json_object_object_add(o, "destination-verified",
                           json_object_new_boolean(verified));
    json_object_put(qs);
    json_object_put(qd);
    stop_daemon(&s);
    stop_daemon(&d);
    return o;
}

/* Whether @name is in the comma-separated @list: equal to an entry
 * (@exact), or containing one. */
static bool picked(const char *list, const char *name, bool exact)
{
    char buf[256];
    snprintf(buf, sizeof(buf), "%s", list);
    for (char *save, *w = strtok_r(buf, ",", &save); w;
         w = strtok_r(NULL, ",", &save))
        if (exact ? !strcmp(name, w) : strstr(name, w) != NULL)
            return true;
    return false;
}

int main(int argc, char **argv)
{
    const char *size = argc > 1 ? argv[1] : "1G";
    ns_src = getenv("LM_NETNS_SRC");
    ns_dst = getenv("LM_NETNS_DST");
    addr_dst = getenv("LM_NETNS_DST_ADDR");
    daemon_bin = getenv("LIVEMIGD");
    if (!ns_src || !ns_dst || !addr_dst) {
        printf("{\"bench\": \"link\", \"skipped\": \"run it inside "
               "scripts/two-hosts run --rate 1gbit (bench/run does)\"}\n");
        return 0;
    }
    if (!daemon_bin)
        die("%s", "LIVEMIGD is not set (the path of livemigd)");
    snprintf(tmpdir, sizeof(tmpdir), "/tmp/bench-link-XXXXXX");
    if (!mkdtemp(tmpdir))
        die("cannot create %s", tmpdir);
    signal(SIGPIPE, SIG_IGN);

    double link = link_rate(256u << 20);
    fprintf(stderr, "bench-link: link carries %.1f MB/s\n", link / 1e6);
    if (link <= 0)
        die("%s", "cannot measure the link");
    const scenario scs[] = {
        { "precopy", "[]", "{}", false, false },
        { "multifd-zstd", "[{\"capability\": \"multifd\", \"state\": true}]",
          "{\"multifd-channels\": 2, \"multifd-compression\": \"zstd\"}",
          false, false },
        { "multifd-lz4", "[{\"capability\": \"multifd\", \"state\": true}]",
          "{\"multifd-channels\": 2, \"multifd-compression\": \"lz4\"}",
          false, false },
        { "auto-converge",
          "[{\"capability\": \"auto-converge\", \"state\": true}]", "{}",
          false, false },
        { "postcopy", "[{\"capability\": \"postcopy-ram\", \"state\": true}]",
          "{}", true, false },
        { "postcopy-capped",
          "[{\"capability\": \"postcopy-ram\", \"state\": true}]", "{}", true,
          true },
        { "postcopy-preempt",
          "[{\"capability\": \"postcopy-ram\", \"state\": true}, "
          "{\"capability\": \"postcopy-preempt\", \"state\": true}]", "{}",
          true, false },
        { "postcopy-preempt-capped",
          "[{\"capability\": \"postcopy-ram\", \"state\": true}, "
          "{\"capability\": \"postcopy-preempt\", \"state\": true}]", "{}",
          true, true },
    };
    const char *only = getenv("BENCH_LINK_ONLY");
    const char *only_fill = getenv("BENCH_LINK_FILLS");
    const char *only_rate = getenv("BENCH_LINK_RATES");
    const char *fills[] = { "random", "text" };
    const char *rates[] = { "0", "max" };
    json_object *out = json_object_new_object();
    json_object_object_add(out, "bench", json_object_new_string("link"));
    json_object_object_add(out, "guest-size", json_object_new_string(size));
    json_object_object_add(out, "link-bytes-per-s", json_object_new_double(link));
    json_object *res = json_object_new_array();
    for (size_t f = 0; f < 2; f++)
        for (size_t r = 0; r < 2; r++)
            for (size_t i = 0; i < sizeof(scs) / sizeof(scs[0]); i++) {
                /* An idle guest converges in one pass: auto-converge and
                 * a postcopy of nothing would measure nothing. */
                if (!strcmp(rates[r], "0") &&
                    (!strcmp(scs[i].name, "auto-converge") ||
                     strstr(scs[i].name, "capped")))
                    continue;
                if ((only && !picked(only, scs[i].name, false)) ||
                    (only_fill && !picked(only_fill, fills[f], true)) ||
                    (only_rate && !picked(only_rate, rates[r], true)))
                    continue;
                json_object_array_add(res, run(size, fills[f], rates[r],
                                               &scs[i], link));
            }
    json_object_object_add(out, "results", res);
    printf("%s\n", json_object_to_json_string_ext(out,
                                                  JSON_C_TO_STRING_PRETTY));
    json_object_put(out);
    char cmd[300];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", tmpdir);
    (void)!system(cmd);
    return 0;
}
