/*
 * harness.c - see harness.h.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <ftw.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "harness.h"

#define MAX_LIVE 64

/* Daemons not yet freed, for the atexit() safety net. */
static lmh_daemon *live[MAX_LIVE];

static long long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void sleep_ms(int ms)
{
    struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000 };
    while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
        ;
}

static int rm_one(const char *path, const struct stat *sb, int flag,
                  struct FTW *ftw)
{
    (void)sb; (void)flag; (void)ftw;
    remove(path);
    return 0;
}

static void rm_tree(const char *dir)
{
    if (dir[0])
        nftw(dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

/* Wait up to @ms for @pid to exit; true if reaped. */
static bool reap(lmh_daemon *d, int ms)
{
    long long end = now_ms() + ms;
    for (;;) {
        int st;
        pid_t r = waitpid(d->pid, &st, WNOHANG);
        if (r == d->pid || (r < 0 && errno == ECHILD)) {
            d->status = r == d->pid ? st : -1;
            d->pid = 0;
            return true;
        }
        if (now_ms() >= end)
            return false;
        sleep_ms(5);
    }
}

static void untrack(lmh_daemon *d)
{
    for (int i = 0; i < MAX_LIVE; i++)
        if (live[i] == d)
            live[i] = NULL;
}

static void safety_net(void)
{
    for (int i = 0; i < MAX_LIVE; i++) {
        lmh_daemon *d = live[i];
        if (!d)
            continue;
        if (d->pid > 0) {
            kill(d->pid, SIGKILL);
            waitpid(d->pid, NULL, 0);
            d->pid = 0;
        }
        rm_tree(d->dir);
        livemig_qmp_close(d->qmp);
        free(d);
        live[i] = NULL;
    }
}

void lmh_dump_log(const lmh_daemon *d)
{
    FILE *f = fopen(d->log, "r");
    if (!f)
        return;
    fprintf(stderr, "---- %s ----\n", d->log);
    char line[512];
    int n = 0;
    while (fgets(line, sizeof(line), f) && n++ < 200)
        fputs(line, stderr);
    fprintf(stderr, "---- end of log ----\n");
    fclose(f);
}

char *lmh_path(const lmh_daemon *d, const char *name, char *buf, size_t len)
{
    snprintf(buf, len, "%s/%s", d->dir, name);
    return buf;
}

lmh_daemon *lmh_startv(const char *const *args)
{
    return lmh_startv_netns(NULL, args);
}

lmh_daemon *lmh_startv_netns(const char *netns, const char *const *args)
{
    static bool registered;
    if (!registered) {
        atexit(safety_net);
        registered = true;
    }
    const char *bin = getenv("LIVEMIGD");
    if (!bin || !bin[0])
        fail_msg("LIVEMIGD is not set; run the tests with 'meson test'");
    lmh_daemon *d = calloc(1, sizeof(*d));
    assert_non_null(d);
    const char *tmp = getenv("TMPDIR");
    snprintf(d->dir, sizeof(d->dir), "%s/livemig-test-XXXXXX",
             tmp && tmp[0] && strlen(tmp) < 60 ? tmp : "/tmp");
    if (!mkdtemp(d->dir))
        fail_msg("cannot create a temporary directory '%s': %s", d->dir,
                 strerror(errno));
    snprintf(d->sock, sizeof(d->sock), "%s/qmp.sock", d->dir);
    snprintf(d->addr, sizeof(d->addr), "unix:%s", d->sock);
    snprintf(d->log, sizeof(d->log), "%s/livemigd.log", d->dir);

    const char *argv[72];
    int n = 0;
    const char *exe = bin;
    if (netns && netns[0]) {
        /* ip netns exec execs livemigd in place: d->pid is the daemon. */
        exe = "ip";
        argv[n++] = "ip";
        argv[n++] = "netns";
        argv[n++] = "exec";
        argv[n++] = netns;
    }
    argv[n++] = bin;
    argv[n++] = "--qmp";
    argv[n++] = d->addr;
    for (int i = 0; args && args[i] && n < 71; i++)
        argv[n++] = args[i];
    argv[n] = NULL;

    int slot = -1;
    for (int i = 0; i < MAX_LIVE && slot < 0; i++)
        if (!live[i])
            slot = i;
    if (slot < 0)
        fail_msg("too many daemons at once (at most %d)", MAX_LIVE);

    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0)
        fail_msg("fork failed: %s", strerror(errno));
    if (pid == 0) {
        int fd = open(d->log, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        int nul = open("/dev/null", O_RDONLY);
        if (fd >= 0) {
            dup2(fd, 1);
            dup2(fd, 2);
        }
        if (nul >= 0)
            dup2(nul, 0);
        if (chdir(d->dir) < 0)
            _exit(126);
        execvp(exe, (char *const *)argv);
        fprintf(stderr, "cannot run '%s': %s\n", exe, strerror(errno));
        _exit(127);
    }
    d->pid = pid;
    live[slot] = d;

    /* Bounded wait for the socket, noticing an early exit. */
    long long end = now_ms() + LMH_START_TIMEOUT_MS;
    livemig_error err = {0};
    while (!d->qmp) {
        if (reap(d, 0)) {
            lmh_dump_log(d);
            fail_msg("livemigd exited during start-up (status %d)",
                     d->status);
        }
        if (access(d->sock, F_OK) == 0) {
            livemig_error_clear(&err);
            d->qmp = livemig_qmp_connect(d->addr, LMH_REPLY_TIMEOUT_MS,
                                         &err);
            if (d->qmp)
                break;
        }
        if (now_ms() > end) {
            lmh_dump_log(d);
            fail_msg("livemigd did not serve QMP on '%s' within %d ms%s%s",
                     d->sock, LMH_START_TIMEOUT_MS, err.cls ? ": " : "",
                     err.cls ? err.desc : "");
        }
        sleep_ms(10);
    }
    return d;
}

lmh_daemon *lmh_start(const char *arg, ...)
{
    const char *args[48];
    int n = 0;
    va_list ap;
    va_start(ap, arg);
    for (const char *a = arg; a && n < 47; a = va_arg(ap, const char *))
        args[n++] = a;
    va_end(ap);
    args[n] = NULL;
    return lmh_startv(args);
}

livemig_qmp *lmh_connect(lmh_daemon *d)
{
    livemig_error err = {0};
    livemig_qmp *q = livemig_qmp_connect(d->addr, LMH_REPLY_TIMEOUT_MS, &err);
    if (!q) {
        lmh_dump_log(d);
        fail_msg("cannot connect to livemigd: %s", err.desc);
    }
    return q;
}

bool lmh_stop(lmh_daemon *d)
{
    if (!d || d->pid == 0) {
        if (d && d->qmp) {
            livemig_qmp_close(d->qmp);
            d->qmp = NULL;
        }
        return d && WIFEXITED(d->status) && WEXITSTATUS(d->status) == 0;
    }
    bool quit_sent = false;
    if (d->qmp) {
        livemig_error err = {0};
        json_object *r = livemig_qmp_execute(d->qmp, "quit", NULL, &err);
        quit_sent = r != NULL;
        json_object_put(r);
        livemig_qmp_close(d->qmp);
        d->qmp = NULL;
    }
    if (quit_sent && reap(d, LMH_STOP_TIMEOUT_MS))
        return WIFEXITED(d->status) && WEXITSTATUS(d->status) == 0;
    kill(d->pid, SIGTERM);
    if (reap(d, LMH_STOP_TIMEOUT_MS))
        return false;
    kill(d->pid, SIGKILL);
    waitpid(d->pid, &d->status, 0);
    d->pid = 0;
    return false;
}

void lmh_free(lmh_daemon *d)
{
    if (!d)
        return;
    lmh_stop(d);
    rm_tree(d->dir);
    untrack(d);
    free(d);
}

/* ---- QMP helpers ------------------------------------------------------- */

json_object *lmh_json(const char *fmt, ...)
{
    char *s = NULL;
    va_list ap;
    va_start(ap, fmt);
    int n = vasprintf(&s, fmt, ap);
    va_end(ap);
    assert_true(n >= 0);
    json_object *o = json_tokener_parse(s);
    if (!o)
        fail_msg("test bug: not JSON: %s", s);
    free(s);
    return o;
}

static json_object *args_of(const char *args_json)
{
    return args_json ? lmh_json("%s", args_json) : NULL;
}

json_object *lmh_ok_obj(livemig_qmp *q, const char *cmd, json_object *args)
{
    livemig_error err = {0};
    char shown[512];
    snprintf(shown, sizeof(shown), "%s",
             args ? json_object_to_json_string_ext(args,
                                                   JSON_C_TO_STRING_PLAIN)
                  : "");
    json_object *r = livemig_qmp_execute(q, cmd, args, &err);
    if (!r)
        fail_msg("'%s' %s failed: %s: %s", cmd, shown, err.cls, err.desc);
    return r;
}

json_object *lmh_ok(livemig_qmp *q, const char *cmd, const char *args_json)
{
    return lmh_ok_obj(q, cmd, args_of(args_json));
}

void lmh_err_obj(livemig_qmp *q, const char *cmd, json_object *args,
                 const char *cls, const char *desc_part)
{
    livemig_error err = {0};
    char shown[512];
    snprintf(shown, sizeof(shown), "%s",
             args ? json_object_to_json_string_ext(args,
                                                   JSON_C_TO_STRING_PLAIN)
                  : "");
    json_object *r = livemig_qmp_execute(q, cmd, args, &err);
    if (r) {
        json_object_put(r);
        fail_msg("'%s' %s succeeded; expected error %s", cmd, shown, cls);
    }
    if (strstr(err.desc, "no reply in time") ||
        strstr(err.desc, "closed the connection"))
        fail_msg("'%s' %s: the monitor did not answer: %s", cmd, shown,
                 err.desc);
    if (strcmp(err.cls, cls) != 0)
        fail_msg("'%s' %s: expected error class %s, got %s: %s", cmd, shown,
                 cls, err.cls, err.desc);
    if (desc_part && !strstr(err.desc, desc_part))
        fail_msg("'%s' %s: expected an error mentioning \"%s\", got: %s",
                 cmd, shown, desc_part, err.desc);
}

void lmh_err(livemig_qmp *q, const char *cmd, const char *args_json,
             const char *cls, const char *desc_part)
{
    lmh_err_obj(q, cmd, args_of(args_json), cls, desc_part);
}

char *lmh_hmp(livemig_qmp *q, const char *line)
{
    json_object *a = json_object_new_object();
    json_object_object_add(a, "command-line", json_object_new_string(line));
    json_object *r = lmh_ok_obj(q, "human-monitor-command", a);
    if (!json_object_is_type(r, json_type_string))
        fail_msg("human-monitor-command '%s' returned %s, not a string",
                 line, json_object_to_json_string(r));
    char *s = strdup(json_object_get_string(r));
    json_object_put(r);
    return s;
}

json_object *lmh_get(json_object *o, const char *path)
{
    char buf[256];
    snprintf(buf, sizeof(buf), "%s", path);
    char *save = NULL;
    for (char *k = strtok_r(buf, ".", &save); k && o;
         k = strtok_r(NULL, ".", &save)) {
        json_object *v = NULL;
        if (!json_object_is_type(o, json_type_object) ||
            !json_object_object_get_ex(o, k, &v))
            return NULL;
        o = v;
    }
    return o;
}

const char *lmh_get_str(json_object *o, const char *path)
{
    json_object *v = lmh_get(o, path);
    return v && json_object_is_type(v, json_type_string)
               ? json_object_get_string(v) : NULL;
}

long long lmh_get_int(json_object *o, const char *path)
{
    json_object *v = lmh_get(o, path);
    if (!v)
        fail_msg("member '%s' missing in %s", path,
                 json_object_to_json_string(o));
    return (long long)json_object_get_int64(v);
}

bool lmh_wait_for(bool (*cond)(void *opaque), void *opaque, int timeout_ms,
                  int interval_ms)
{
    if (interval_ms <= 0)
        interval_ms = 10;
    long long end = now_ms() + timeout_ms;
    for (;;) {
        if (cond(opaque))
            return true;
        if (now_ms() >= end)
            return false;
        sleep_ms(interval_ms);
    }
}

const char *lmh_migration_status(livemig_qmp *q)
{
    static char status[64];
    json_object *r = lmh_ok(q, "query-migrate", NULL);
    const char *s = lmh_get_str(r, "status");
    snprintf(status, sizeof(status), "%s", s ? s : "none");
    json_object_put(r);
    return status;
}

typedef struct status_wait {
    livemig_qmp *q;
    const char *want;
} status_wait;

static bool status_is(void *opaque)
{
    status_wait *w = opaque;
    return strcmp(lmh_migration_status(w->q), w->want) == 0;
}

bool lmh_wait_status(livemig_qmp *q, const char *status, int timeout_ms)
{
    status_wait w = { q, status };
    return lmh_wait_for(status_is, &w, timeout_ms, 20);
}

/* ---- subprocesses ------------------------------------------------------ */

static void slurp(int fd, char **buf, size_t *len, size_t *cap)
{
    char tmp[4096];
    ssize_t n = read(fd, tmp, sizeof(tmp));
    if (n <= 0)
        return;
    if (*len + (size_t)n + 1 > *cap) {
        *cap = (*len + (size_t)n + 1) * 2;
        *buf = realloc(*buf, *cap);
        assert_non_null(*buf);
    }
    memcpy(*buf + *len, tmp, (size_t)n);
    *len += (size_t)n;
    (*buf)[*len] = '\0';
}

int lmh_run(const char *const *argv, const char *const *envp_extra,
            char **out, char **err, int timeout_ms)
{
    int po[2], pe[2];
    assert_int_equal(pipe2(po, O_CLOEXEC), 0);
    assert_int_equal(pipe2(pe, O_CLOEXEC), 0);
    fflush(NULL);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        int nul = open("/dev/null", O_RDONLY);
        if (nul >= 0)
            dup2(nul, 0);
        dup2(po[1], 1);
        dup2(pe[1], 2);
        for (int i = 0; envp_extra && envp_extra[i]; i++)
            putenv((char *)envp_extra[i]);
        execv(argv[0], (char *const *)argv);
        fprintf(stderr, "cannot run '%s': %s\n", argv[0], strerror(errno));
        _exit(127);
    }
    close(po[1]);
    close(pe[1]);
    char *ob = calloc(1, 1), *eb = calloc(1, 1);
    size_t ol = 0, oc = 1, el = 0, ec = 1;
    long long end = now_ms() + timeout_ms;
    bool open_o = true, open_e = true, killed = false;
    while (open_o || open_e) {
        struct pollfd p[2] = { { po[0], POLLIN, 0 }, { pe[0], POLLIN, 0 } };
        int left = (int)(end - now_ms());
        if (left <= 0) {
            kill(pid, SIGKILL);
            killed = true;
            break;
        }
        if (!open_o)
            p[0].fd = -1;
        if (!open_e)
            p[1].fd = -1;
        if (poll(p, 2, left) < 0 && errno != EINTR)
            break;
        if (p[0].revents) {
            size_t before = ol;
            slurp(po[0], &ob, &ol, &oc);
            if (ol == before)
                open_o = false;
        }
        if (p[1].revents) {
            size_t before = el;
            slurp(pe[0], &eb, &el, &ec);
            if (el == before)
                open_e = false;
        }
    }
    close(po[0]);
    close(pe[0]);
    int st = 0;
    if (!killed) {
        /* Output closed: the program is exiting; bound the wait anyway. */
        long long end2 = now_ms() + timeout_ms;
        while (waitpid(pid, &st, WNOHANG) == 0) {
            if (now_ms() > end2) {
                kill(pid, SIGKILL);
                killed = true;
                break;
            }
            sleep_ms(2);
        }
    }
    if (killed)
        waitpid(pid, &st, 0);
    if (out)
        *out = ob;
    else
        free(ob);
    if (err)
        *err = eb;
    else
        free(eb);
    if (killed || !WIFEXITED(st))
        return -1;
    return WEXITSTATUS(st);
}

const char *lmh_ctl_path(void)
{
    const char *p = getenv("LIVEMIG_CTL");
    if (!p || !p[0])
        skip();
    return p;
}

bool lmh_wait_exit(lmh_daemon *d, int timeout_ms)
{
    if (d->pid == 0)
        return true;
    return reap(d, timeout_ms);
}

/* ---- raw connections --------------------------------------------------- */

#define RAW_SLOTS 16

static struct raw_buf {
    int fd;
    char *data;
    size_t len;
} raw_bufs[RAW_SLOTS];

static struct raw_buf *raw_slot(int fd, bool create)
{
    for (int i = 0; i < RAW_SLOTS; i++)
        if (raw_bufs[i].data && raw_bufs[i].fd == fd)
            return &raw_bufs[i];
    if (!create)
        return NULL;
    for (int i = 0; i < RAW_SLOTS; i++)
        if (!raw_bufs[i].data) {
            raw_bufs[i].fd = fd;
            raw_bufs[i].data = calloc(1, 1);
            raw_bufs[i].len = 0;
            return &raw_bufs[i];
        }
    fail_msg("test bug: more than %d raw connections at once", RAW_SLOTS);
    return NULL;
}

int lmh_raw_connect(const lmh_daemon *d)
{
    struct sockaddr_un sa = { .sun_family = AF_UNIX };
    if (strlen(d->sock) >= sizeof(sa.sun_path))
        fail_msg("socket path '%s' is too long", d->sock);
    memcpy(sa.sun_path, d->sock, strlen(d->sock) + 1);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(fd >= 0);
    if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0)
        fail_msg("cannot connect to '%s': %s", d->sock, strerror(errno));
    return fd;
}

bool lmh_raw_send(int fd, const char *data, size_t len)
{
    while (len > 0) {
        ssize_t n = send(fd, data, len, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return false;
        data += n;
        len -= (size_t)n;
    }
    return true;
}

json_object *lmh_raw_read(int fd, int timeout_ms)
{
    struct raw_buf *b = raw_slot(fd, true);
    long long end = now_ms() + timeout_ms;
    for (;;) {
        char *nl = memchr(b->data, '\n', b->len);
        if (nl) {
            *nl = '\0';
            json_object *v = json_tokener_parse(b->data);
            size_t used = (size_t)(nl - b->data) + 1;
            memmove(b->data, nl + 1, b->len - used);
            b->len -= used;
            b->data[b->len] = '\0';
            return v;
        }
        int left = (int)(end - now_ms());
        if (left <= 0)
            return NULL;
        struct pollfd p = { fd, POLLIN, 0 };
        if (poll(&p, 1, left) <= 0)
            continue;
        char tmp[65536];
        ssize_t n = recv(fd, tmp, sizeof(tmp), 0);
        if (n <= 0)
            return NULL;
        char *nd = realloc(b->data, b->len + (size_t)n + 1);
        assert_non_null(nd);
        b->data = nd;
        memcpy(b->data + b->len, tmp, (size_t)n);
        b->len += (size_t)n;
        b->data[b->len] = '\0';
    }
}

bool lmh_raw_wait_eof(int fd, int timeout_ms)
{
    long long end = now_ms() + timeout_ms;
    for (;;) {
        int left = (int)(end - now_ms());
        if (left <= 0)
            return false;
        struct pollfd p = { fd, POLLIN, 0 };
        if (poll(&p, 1, left) <= 0)
            continue;
        char tmp[65536];
        ssize_t n = recv(fd, tmp, sizeof(tmp), 0);
        if (n == 0 || (n < 0 && errno != EINTR && errno != EAGAIN))
            return true;
    }
}

void lmh_raw_close(int fd)
{
    struct raw_buf *b = raw_slot(fd, false);
    if (b) {
        free(b->data);
        b->data = NULL;
    }
    close(fd);
}

#define PORT_LO 20000
#define PORT_N (32768 - PORT_LO)

int lmh_port(void)
{
    static int next;
    int base = (int)(getpid() % (PORT_N / 100)) * 100;
    for (int tries = 0; tries < PORT_N; tries++) {
        int port = PORT_LO + (base + next) % PORT_N;
        next = (next + 1) % PORT_N;
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        assert_true(fd >= 0);
        int one = 1;
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
        struct sockaddr_in sa = { .sin_family = AF_INET,
                                  .sin_port = htons((uint16_t)port) };
        sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        int rc = bind(fd, (struct sockaddr *)&sa, sizeof(sa));
        close(fd);
        if (rc == 0)
            return port;
    }
    fail_msg("no free TCP port on 127.0.0.1 in %d..32767", PORT_LO);
    return -1;
}
