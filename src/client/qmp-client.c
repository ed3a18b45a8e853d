/*
 * qmp-client.c - the QMP client library (include/livemig/qmp-client.h).
 *
 * Blocking-with-deadline I/O on a non-blocking socket: every wait is a
 * poll() bounded by the caller's timeout, so a silent or stuck server
 * cannot hang a client.  Input is framed by the monitor's own framing code
 * (src/monitor/qmp-framing.c); complete values land in a small queue and
 * are picked apart into replies and events.
 */
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <json-c/json.h>

#include "livemig/qmp-client.h"
#include "monitor/qmp-framing.h"

#define MAX_REPLY (64u << 20)
#define MAX_QUEUED_EVENTS 100000

typedef struct vnode {
    json_object *v;
    struct vnode *next;
} vnode;

typedef struct vqueue {
    vnode *head, **tail;
    size_t n;
} vqueue;

struct livemig_qmp {
    int fd;
    int timeout_ms;
    bool broken;
    char why[256];          /* why it is broken */
    lm_qmp_parser *parser;
    vqueue values;          /* parsed, not yet looked at */
    vqueue events;
    long long next_id;
};

/* ---- queues ------------------------------------------------------------ */

static void vq_init(vqueue *q)
{
    q->head = NULL;
    q->tail = &q->head;
    q->n = 0;
}

static bool vq_push(vqueue *q, json_object *v)
{
    vnode *n = malloc(sizeof(*n));
    if (!n)
        return false;
    n->v = v;
    n->next = NULL;
    *q->tail = n;
    q->tail = &n->next;
    q->n++;
    return true;
}

static json_object *vq_pop(vqueue *q)
{
    vnode *n = q->head;
    if (!n)
        return NULL;
    q->head = n->next;
    if (!q->head)
        q->tail = &q->head;
    q->n--;
    json_object *v = n->v;
    free(n);
    return v;
}

static void vq_clear(vqueue *q)
{
    json_object *v;
    while ((v = vq_pop(q)))
        json_object_put(v);
}

/* ---- time -------------------------------------------------------------- */

static long long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int left_ms(long long deadline)
{
    long long l = deadline - now_ms();
    return l < 0 ? 0 : l > 0x7fffffff ? 0x7fffffff : (int)l;
}

/* ---- I/O --------------------------------------------------------------- */

static void set_broken(livemig_qmp *q, const char *fmt, const char *arg)
{
    if (q->broken)
        return;
    q->broken = true;
    snprintf(q->why, sizeof(q->why), fmt, arg);
}

static void on_value(void *opaque, json_object *v, const char *error,
                     bool oversize)
{
    livemig_qmp *q = opaque;
    if (error) {
        /* The server sent something that is not JSON: nothing more can
         * be trusted on this connection. */
        set_broken(q, "the monitor sent invalid data (%s)", error);
        (void)oversize;
        return;
    }
    if (!vq_push(&q->values, v)) {
        json_object_put(v);
        set_broken(q, "%s", "out of memory");
    }
}

/* Read once, waiting until @deadline.  False on timeout / broken. */
static bool read_some(livemig_qmp *q, long long deadline)
{
    if (q->broken)
        return false;
    struct pollfd p = { .fd = q->fd, .events = POLLIN };
    int r;
    do {
        r = poll(&p, 1, left_ms(deadline));
    } while (r < 0 && errno == EINTR);
    if (r <= 0)
        return false;
    char buf[65536];
    ssize_t n;
    do {
        n = recv(q->fd, buf, sizeof(buf), MSG_DONTWAIT);
    } while (n < 0 && errno == EINTR);
    if (n == 0) {
        set_broken(q, "%s", "the monitor closed the connection");
        return false;
    }
    if (n < 0) {
        if (errno == EAGAIN || errno == EWOULDBLOCK)
            return true;
        set_broken(q, "reading from the monitor failed: %s", strerror(errno));
        return false;
    }
    lm_qmp_parser_feed(q->parser, buf, (size_t)n, on_value, q);
    return !q->broken;
}

static bool write_all(livemig_qmp *q, const char *data, size_t len,
                      long long deadline)
{
    while (len > 0 && !q->broken) {
        ssize_t n = send(q->fd, data, len, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n > 0) {
            data += n;
            len -= (size_t)n;
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            struct pollfd p = { .fd = q->fd, .events = POLLOUT };
            int r = poll(&p, 1, left_ms(deadline));
            if (r == 0) {
                set_broken(q, "%s", "timed out sending to the monitor");
                return false;
            }
            continue;
        }
        set_broken(q, "sending to the monitor failed: %s", strerror(errno));
        return false;
    }
    return !q->broken;
}

static bool is_event(json_object *v)
{
    return json_object_is_type(v, json_type_object) &&
           json_object_object_get_ex(v, "event", NULL);
}

/* Move parsed events to the event queue; return the first non-event value
 * (new reference) or NULL. */
static json_object *sort_values(livemig_qmp *q)
{
    json_object *v;
    while ((v = vq_pop(&q->values))) {
        if (!is_event(v))
            return v;
        if (q->events.n >= MAX_QUEUED_EVENTS)
            json_object_put(vq_pop(&q->events));   /* drop the oldest */
        vq_push(&q->events, v);
    }
    return NULL;
}

/* The next reply (any non-event value), waiting until @deadline. */
static json_object *next_reply(livemig_qmp *q, long long deadline)
{
    for (;;) {
        json_object *v = sort_values(q);
        if (v)
            return v;
        if (!read_some(q, deadline) && (q->broken || left_ms(deadline) == 0))
            return NULL;
    }
}

static void fail_local(livemig_qmp *q, livemig_error *err, const char *what)
{
    if (q->broken)
        livemig_error_set(err, "%s: %s", what, q->why);
    else
        livemig_error_set(err, "%s: no reply from the monitor within %d ms",
                          what, q->timeout_ms);
}

/* ---- connect ----------------------------------------------------------- */

static int connect_unix(const char *path, livemig_error *err)
{
    struct sockaddr_un sa = { .sun_family = AF_UNIX };
    if (strlen(path) >= sizeof(sa.sun_path)) {
        livemig_error_set(err, "monitor socket path '%s' is too long", path);
        return -1;
    }
    strcpy(sa.sun_path, path);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        livemig_error_set(err, "cannot create a socket: %s", strerror(errno));
        return -1;
    }
    if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
        livemig_error_set(err, "cannot connect to monitor socket '%s': %s; "
                          "is livemigd running with --qmp unix:%s?", path,
                          strerror(errno), path);
        close(fd);
        return -1;
    }
    return fd;
}

static int connect_tcp(const char *hostport, int timeout_ms,
                       livemig_error *err)
{
    char host[256];
    const char *colon = strrchr(hostport, ':');
    if (!colon || colon == hostport ||
        (size_t)(colon - hostport) >= sizeof(host)) {
        livemig_error_set(err, "monitor address 'tcp:%s' needs the form "
                          "tcp:HOST:PORT", hostport);
        return -1;
    }
    memcpy(host, hostport, (size_t)(colon - hostport));
    host[colon - hostport] = '\0';
    char *h = host;
    size_t hl = strlen(h);
    if (hl >= 2 && h[0] == '[' && h[hl - 1] == ']') {
        h[hl - 1] = '\0';
        h++;
    }
    struct addrinfo hints = { .ai_family = AF_UNSPEC,
                              .ai_socktype = SOCK_STREAM }, *res;
    int rc = getaddrinfo(h, colon + 1, &hints, &res);
    if (rc) {
        livemig_error_set(err, "cannot resolve monitor address 'tcp:%s': %s",
                          hostport, gai_strerror(rc));
        return -1;
    }
    int fd = -1, saved = ECONNREFUSED;
    for (struct addrinfo *ai = res; ai && fd < 0; ai = ai->ai_next) {
        fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK,
                    0);
        if (fd < 0)
            continue;
        if (connect(fd, ai->ai_addr, ai->ai_addrlen) == 0)
            break;
        if (errno == EINPROGRESS) {
            struct pollfd p = { .fd = fd, .events = POLLOUT };
            int soerr = 0;
            socklen_t sl = sizeof(soerr);
            if (poll(&p, 1, timeout_ms) == 1 &&
                getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) == 0 &&
                soerr == 0)
                break;
            saved = soerr ? soerr : ETIMEDOUT;
        } else {
            saved = errno;
        }
        close(fd);
        fd = -1;
    }
    freeaddrinfo(res);
    if (fd < 0)
        livemig_error_set(err, "cannot connect to monitor 'tcp:%s': %s",
                          hostport, strerror(saved));
    return fd;
}

static const char *static_class(const char *cls)
{
    static const char *const known[] = {
        "GenericError", "CommandNotFound", "DeviceNotActive",
        "DeviceNotFound", "KVMMissingCap",
    };
    for (size_t i = 0; cls && i < sizeof(known) / sizeof(known[0]); i++)
        if (strcmp(cls, known[i]) == 0)
            return known[i];
    return known[0];
}

livemig_qmp *livemig_qmp_connect(const char *addr, int timeout_ms,
                                 livemig_error *err)
{
    if (timeout_ms <= 0)
        timeout_ms = 10000;
    int fd;
    if (strncmp(addr, "tcp:", 4) == 0)
        fd = connect_tcp(addr + 4, timeout_ms, err);
    else
        fd = connect_unix(strncmp(addr, "unix:", 5) == 0 ? addr + 5 : addr,
                          err);
    if (fd < 0)
        return NULL;
    int fl = fcntl(fd, F_GETFL);
    fcntl(fd, F_SETFL, fl | O_NONBLOCK);
    livemig_qmp *q = calloc(1, sizeof(*q));
    if (!q || !(q->parser = lm_qmp_parser_new(MAX_REPLY))) {
        free(q);
        close(fd);
        livemig_error_set(err, "out of memory connecting to '%s'", addr);
        return NULL;
    }
    q->fd = fd;
    q->timeout_ms = timeout_ms;
    vq_init(&q->values);
    vq_init(&q->events);

    json_object *greet = next_reply(q, now_ms() + timeout_ms);
    if (!greet || !json_object_object_get_ex(greet, "QMP", NULL)) {
        if (greet)
            livemig_error_set(err, "'%s' is not a QMP monitor: its greeting "
                              "lacks 'QMP'", addr);
        else
            fail_local(q, err, "waiting for the QMP greeting");
        json_object_put(greet);
        livemig_qmp_close(q);
        return NULL;
    }
    json_object_put(greet);
    json_object *r = livemig_qmp_execute(q, "qmp_capabilities", NULL, err);
    if (!r) {
        livemig_qmp_close(q);
        return NULL;
    }
    json_object_put(r);
    return q;
}

/* ---- execute ----------------------------------------------------------- */

static json_object *send_and_wait(livemig_qmp *q, json_object *req,
                                  const char *what, livemig_error *err)
{
    if (q->broken) {
        fail_local(q, err, what);
        return NULL;
    }
    long long deadline = now_ms() + q->timeout_ms;
    /* One write with the newline: the server may act on the object (e.g.
     * "quit" and close) as soon as its closing brace arrives. */
    const char *text = json_object_to_json_string_ext(req,
                                                      JSON_C_TO_STRING_PLAIN);
    size_t len = strlen(text);
    char *line = malloc(len + 2);
    if (!line) {
        livemig_error_set(err, "%s: out of memory", what);
        return NULL;
    }
    memcpy(line, text, len);
    line[len] = '\n';
    line[len + 1] = '\0';
    bool sent = write_all(q, line, len + 1, deadline);
    free(line);
    if (!sent) {
        fail_local(q, err, what);
        return NULL;
    }
    json_object *id = NULL;
    json_object_object_get_ex(req, "id", &id);
    for (;;) {
        json_object *rep = next_reply(q, deadline);
        if (!rep) {
            if (!q->broken)
                set_broken(q, "%s", "no reply in time");
            fail_local(q, err, what);
            return NULL;
        }
        json_object *rid = NULL;
        json_object_object_get_ex(rep, "id", &rid);
        /* A reply to an earlier request that timed out cannot happen (a
         * timeout breaks the connection), but a reply with a different id
         * or none (e.g. to input the server could not parse) can. */
        if (!id || !rid || json_object_equal(id, rid))
            return rep;
        json_object_put(rep);
    }
}

struct json_object *livemig_qmp_raw(livemig_qmp *q, struct json_object *req,
                                    livemig_error *err)
{
    return send_and_wait(q, req, "raw QMP request", err);
}

struct json_object *livemig_qmp_execute(livemig_qmp *q, const char *cmd,
                                        struct json_object *args,
                                        livemig_error *err)
{
    json_object *req = json_object_new_object();
    json_object_object_add(req, "execute", json_object_new_string(cmd));
    if (args)
        json_object_object_add(req, "arguments", args);
    json_object_object_add(req, "id", json_object_new_int64(++q->next_id));
    char what[160];
    snprintf(what, sizeof(what), "command '%s'", cmd);
    json_object *rep = send_and_wait(q, req, what, err);
    json_object_put(req);
    if (!rep)
        return NULL;
    json_object *ret, *e;
    if (json_object_object_get_ex(rep, "return", &ret)) {
        json_object_get(ret);
        json_object_put(rep);
        return ret ? ret : json_object_new_object();
    }
    if (json_object_object_get_ex(rep, "error", &e)) {
        json_object *cls = NULL, *desc = NULL;
        json_object_object_get_ex(e, "class", &cls);
        json_object_object_get_ex(e, "desc", &desc);
        livemig_error_set_class(err, static_class(json_object_get_string(cls)),
                                "%s", desc ? json_object_get_string(desc)
                                           : "(no description)");
    } else {
        livemig_error_set(err, "%s: the monitor's reply has neither "
                          "'return' nor 'error'", what);
    }
    json_object_put(rep);
    return NULL;
}

/* ---- events ------------------------------------------------------------ */

struct json_object *livemig_qmp_next_event(livemig_qmp *q, int timeout_ms)
{
    long long deadline = now_ms() + (timeout_ms > 0 ? timeout_ms : 0);
    for (;;) {
        json_object *rep = sort_values(q);
        /* A stray reply while waiting for events is of no use to anyone. */
        json_object_put(rep);
        json_object *ev = vq_pop(&q->events);
        if (ev)
            return ev;
        if (!read_some(q, deadline) && (q->broken || left_ms(deadline) == 0))
            return NULL;
    }
}

int livemig_qmp_fd(livemig_qmp *q)
{
    return q->fd;
}

void livemig_qmp_set_timeout(livemig_qmp *q, int timeout_ms)
{
    q->timeout_ms = timeout_ms > 0 ? timeout_ms : 10000;
}

void livemig_qmp_close(livemig_qmp *q)
{
    if (!q)
        return;
    close(q->fd);
    lm_qmp_parser_free(q->parser);
    vq_clear(&q->values);
    vq_clear(&q->events);
    free(q);
}
