/*
 * monitor.c - the QMP server loop: sockets, clients, framing, dispatch,
 * events.
 *
 * One poll() loop, top to bottom:
 *   1. build the poll set: wake-up eventfd, listeners, clients (POLLIN
 *      unless the client's output backlog is large: back-pressure; POLLOUT
 *      while output is pending);
 *   2. the eventfd: drain it, then broadcast queued events;
 *   3. listeners: accept (non-blocking), queue the greeting;
 *   4. clients: read what is there and feed the parser, which dispatches
 *      every complete command in order; write what is pending;
 *   5. reap clients marked dead; on "quit" flush and return.
 * Commands run to completion on this thread.  The only state shared with
 * other threads is the event queue (ev_lock) and the stop flag.
 */
#include <errno.h>
#include <netdb.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "engine/engine.h"
#include "monitor/monitor-int.h"
#include "common/utf8.h"
#include "monitor/qmp-framing.h"

#define MAX_LISTEN 16
#define MAX_CLIENTS 1024
#define OUT_BACKPRESSURE (1u << 20)   /* stop reading the client above this */
#define OUT_MAX (16u << 20)           /* drop the client above this */
#define READ_CHUNK 65536
#define QUIT_FLUSH_MS 1000
#define DRAIN_MAX (64u << 20)         /* discard at most this much input */
#define DRAIN_MS 2000                 /* ... for at most this long */

typedef struct client {
    int fd;
    bool negotiated;
    bool dead;          /* close at the end of this loop iteration */
    bool closing;       /* flush output, then shut down and drain */
    bool draining;      /* output shut down; discard input until EOF */
    size_t drained;     /* bytes discarded while draining */
    struct timespec drain_deadline;
    lm_qmp_parser *parser;
    char *out;
    size_t out_len, out_off, out_cap;
    struct client *next;
} client;

typedef struct event_item {
    char *text;         /* serialised event, newline-terminated */
    struct event_item *next;
} event_item;

struct lm_monitor {
    livemig *lm;
    lm_tunables *t;

    lm_cmd *cmds;
    size_t ncmds, capcmds;

    int lfd[MAX_LISTEN];
    char *lpath[MAX_LISTEN];      /* UNIX socket file to remove, or NULL */
    size_t nlisten;

    client *clients;
    size_t nclients;

    int wake_fd;
    atomic_bool stop;
    bool quit;

    void **owned;                 /* lm_monitor_alloc'd, freed with m */
    size_t nowned;

    pthread_mutex_t ev_lock;
    event_item *ev_head, **ev_tail;
};

/* ---- small helpers ----------------------------------------------------- */

static const char *json_plain(json_object *o)
{
    return json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN |
                                          JSON_C_TO_STRING_NOSLASHESCAPE);
}

livemig *lm_monitor_engine(lm_monitor *m) { return m->lm; }
lm_tunables *lm_monitor_tunables(lm_monitor *m) { return m->t; }
void lm_monitor_request_quit(lm_monitor *m) { m->quit = true; }
size_t lm_monitor_ncmds(lm_monitor *m) { return m->ncmds; }
const lm_cmd *lm_monitor_cmd_at(lm_monitor *m, size_t i)
{
    return i < m->ncmds ? &m->cmds[i] : NULL;
}

void *lm_monitor_alloc(lm_monitor *m, size_t size)
{
    void **n = realloc(m->owned, (m->nowned + 1) * sizeof(*n));
    if (!n)
        return NULL;
    m->owned = n;
    void *p = calloc(1, size);
    if (p)
        m->owned[m->nowned++] = p;
    return p;
}

char *lm_monitor_strdup(lm_monitor *m, const char *s)
{
    char *d = lm_monitor_alloc(m, strlen(s) + 1);
    if (d)
        strcpy(d, s);
    return d;
}

/* ---- command table ----------------------------------------------------- */

const lm_cmd *lm_monitor_find(lm_monitor *m, const char *name)
{
    for (size_t i = 0; i < m->ncmds; i++)
        if (strcmp(m->cmds[i].name, name) == 0)
            return &m->cmds[i];
    return NULL;
}

bool lm_monitor_register(lm_monitor *m, const lm_cmd *c, livemig_error *err)
{
    if (!c->name || !c->name[0]) {
        livemig_error_set(err, "a monitor command needs a name");
        return false;
    }
    if (lm_monitor_find(m, c->name)) {
        livemig_error_set(err, "monitor command '%s' exists already; "
                          "choose another name", c->name);
        return false;
    }
    if (m->ncmds == m->capcmds) {
        size_t cap = m->capcmds ? m->capcmds * 2 : 64;
        lm_cmd *n = realloc(m->cmds, cap * sizeof(*n));
        if (!n) {
            livemig_error_set(err, "out of memory adding command '%s'",
                              c->name);
            return false;
        }
        m->cmds = n;
        m->capcmds = cap;
    }
    lm_cmd *d = &m->cmds[m->ncmds];
    *d = *c;
    d->name = strdup(c->name);
    if (!d->name) {
        livemig_error_set(err, "out of memory adding command '%s'", c->name);
        return false;
    }
    m->ncmds++;
    return true;
}

static json_object *ext_handler(lm_monitor *m, const lm_cmd *c,
                                json_object *args, livemig_error *err)
{
    (void)m;
    return c->ext_fn(c->ext_opaque, args, err);
}

bool lm_monitor_add_command(lm_monitor *m, const char *name,
                            lm_monitor_cmd_fn fn, void *opaque,
                            livemig_error *err)
{
    lm_cmd c = {
        .name = (char *)name,
        .ret_type = "any",
        .flags = LM_CMD_OWN_ARGS,
        .fn = ext_handler,
        .ext_fn = fn,
        .ext_opaque = opaque,
    };
    if (!fn) {
        livemig_error_set(err, "command '%s' needs a function", name);
        return false;
    }
    return lm_monitor_register(m, &c, err);
}

json_object *lm_monitor_call(lm_monitor *m, const char *name,
                             json_object *args, livemig_error *err)
{
    const lm_cmd *c = lm_monitor_find(m, name);
    if (!c) {
        livemig_error_set_class(err, "CommandNotFound",
                                "The command %s has not been found", name);
        return NULL;
    }
    json_object *empty = NULL;
    if (!args)
        args = empty = json_object_new_object();
    json_object *ret = NULL;
    if (lm_args_check(c, args, err)) {
        livemig_error local = {0};
        ret = c->fn(m, c, args, &local);
        if (livemig_error_is_set(&local)) {
            json_object_put(ret);
            ret = NULL;
            if (err)
                *err = local;
        } else if (!ret) {
            ret = json_object_new_object();
        }
    }
    json_object_put(empty);
    return ret;
}

/* ---- lifecycle --------------------------------------------------------- */

lm_monitor *lm_monitor_new(livemig *lm, livemig_error *err)
{
    if (!lm) {
        livemig_error_set(err, "the monitor needs an engine");
        return NULL;
    }
    lm_monitor *m = calloc(1, sizeof(*m));
    if (!m) {
        livemig_error_set(err, "out of memory creating the monitor");
        return NULL;
    }
    m->lm = lm;
    m->t = lm_engine_tunables(lm);
    m->ev_tail = &m->ev_head;
    atomic_init(&m->stop, false);
    pthread_mutex_init(&m->ev_lock, NULL);
    m->wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (m->wake_fd < 0) {
        livemig_error_set(err, "cannot create the monitor's eventfd: %s",
                          strerror(errno));
        pthread_mutex_destroy(&m->ev_lock);
        free(m);
        return NULL;
    }
    if (!lm_qmp_register_builtins(m, err)) {
        lm_monitor_free(m);
        return NULL;
    }
    return m;
}

static void client_free(client *c)
{
    if (c->fd >= 0)
        close(c->fd);
    lm_qmp_parser_free(c->parser);
    free(c->out);
    free(c);
}

void lm_monitor_free(lm_monitor *m)
{
    if (!m)
        return;
    while (m->clients) {
        client *c = m->clients;
        m->clients = c->next;
        client_free(c);
    }
    for (size_t i = 0; i < m->nlisten; i++) {
        close(m->lfd[i]);
        if (m->lpath[i]) {
            unlink(m->lpath[i]);
            free(m->lpath[i]);
        }
    }
    for (size_t i = 0; i < m->ncmds; i++)
        free(m->cmds[i].name);
    free(m->cmds);
    for (size_t i = 0; i < m->nowned; i++)
        free(m->owned[i]);
    free(m->owned);
    while (m->ev_head) {
        event_item *e = m->ev_head;
        m->ev_head = e->next;
        free(e->text);
        free(e);
    }
    close(m->wake_fd);
    pthread_mutex_destroy(&m->ev_lock);
    free(m);
}

void lm_monitor_stop(lm_monitor *m)
{
    atomic_store(&m->stop, true);
    uint64_t one = 1;
    ssize_t r = write(m->wake_fd, &one, sizeof(one));
    (void)r;
}

/* ---- listening --------------------------------------------------------- */

static bool listen_unix(lm_monitor *m, const char *path, livemig_error *err)
{
    struct sockaddr_un sa = { .sun_family = AF_UNIX };
    if (strlen(path) >= sizeof(sa.sun_path)) {
        livemig_error_set(err, "monitor socket path '%s' is too long "
                          "(at most %zu bytes); use a shorter path",
                          path, sizeof(sa.sun_path) - 1);
        return false;
    }
    if (!path[0]) {
        livemig_error_set(err, "monitor socket path is empty");
        return false;
    }
    strcpy(sa.sun_path, path);
    struct stat st;
    if (lstat(path, &st) == 0) {
        if (!S_ISSOCK(st.st_mode)) {
            livemig_error_set(err, "cannot create monitor socket '%s': a "
                              "file that is not a socket is in the way",
                              path);
            return false;
        }
        unlink(path);   /* stale socket of an earlier run */
    }
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0) {
        livemig_error_set(err, "cannot create monitor socket: %s",
                          strerror(errno));
        return false;
    }
    /* bind, chmod, then listen: nobody can connect before the mode is
     * 0600 (connecting to a socket that does not listen is refused). */
    if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 ||
        chmod(path, 0600) < 0 || listen(fd, 128) < 0) {
        livemig_error_set(err, "cannot listen on monitor socket '%s': %s",
                          path, strerror(errno));
        close(fd);
        unlink(path);
        return false;
    }
    m->lfd[m->nlisten] = fd;
    m->lpath[m->nlisten] = strdup(path);
    m->nlisten++;
    return true;
}

static bool listen_tcp(lm_monitor *m, const char *hostport,
                       livemig_error *err)
{
    char host[256];
    const char *colon = strrchr(hostport, ':');
    if (!colon || colon == hostport || !colon[1] ||
        (size_t)(colon - hostport) >= sizeof(host)) {
        livemig_error_set(err, "monitor address 'tcp:%s' needs the form "
                          "tcp:HOST:PORT", hostport);
        return false;
    }
    memcpy(host, hostport, (size_t)(colon - hostport));
    host[colon - hostport] = '\0';
    char *h = host;
    size_t hl = strlen(h);
    if (hl >= 2 && h[0] == '[' && h[hl - 1] == ']') {
        h[hl - 1] = '\0';
        h++;
    }
    struct addrinfo hints = {
        .ai_family = AF_UNSPEC,
        .ai_socktype = SOCK_STREAM,
        .ai_flags = AI_PASSIVE,
    }, *res = NULL;
    int rc = getaddrinfo(h, colon + 1, &hints, &res);
    if (rc != 0) {
        livemig_error_set(err, "cannot resolve monitor address 'tcp:%s': %s",
                          hostport, gai_strerror(rc));
        return false;
    }
    int fd = -1, saved = 0;
    for (struct addrinfo *ai = res; ai; ai = ai->ai_next) {
        fd = socket(ai->ai_family,
                    ai->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        if (fd < 0) {
            saved = errno;
            continue;
        }
        int one = 1;
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
        if (bind(fd, ai->ai_addr, ai->ai_addrlen) == 0 &&
            listen(fd, 128) == 0)
            break;
        saved = errno;
        close(fd);
        fd = -1;
    }
    freeaddrinfo(res);
    if (fd < 0) {
        livemig_error_set(err, "cannot listen on monitor address 'tcp:%s': "
                          "%s", hostport, strerror(saved));
        return false;
    }
    m->lfd[m->nlisten] = fd;
    m->lpath[m->nlisten] = NULL;
    m->nlisten++;
    return true;
}

bool lm_monitor_listen(lm_monitor *m, const char *spec, livemig_error *err)
{
    if (m->nlisten == MAX_LISTEN) {
        livemig_error_set(err, "too many monitor addresses (at most %d)",
                          MAX_LISTEN);
        return false;
    }
    if (strncmp(spec, "unix:", 5) == 0)
        return listen_unix(m, spec + 5, err);
    if (strncmp(spec, "tcp:", 4) == 0)
        return listen_tcp(m, spec + 4, err);
    livemig_error_set(err, "monitor address '%s' is neither unix:PATH nor "
                      "tcp:HOST:PORT", spec);
    return false;
}

/* ---- output ------------------------------------------------------------ */

static void client_flush(client *c)
{
    while (!c->dead && c->out_off < c->out_len) {
        ssize_t n = send(c->fd, c->out + c->out_off, c->out_len - c->out_off,
                         MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n > 0) {
            c->out_off += (size_t)n;
        } else if (n < 0 && errno == EINTR) {
            continue;
        } else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            break;
        } else {
            c->dead = true;     /* peer gone: EPIPE, ECONNRESET, ... */
        }
    }
    if (c->out_off == c->out_len) {
        c->out_off = c->out_len = 0;
        if (c->closing && !c->draining && !c->dead) {
            /* The error reply is out.  Closing now with unread input
             * would reset the connection and could destroy the reply
             * before the peer reads it: shut down our side and discard
             * what the peer still sends, for a bounded time. */
            shutdown(c->fd, SHUT_WR);
            c->draining = true;
            clock_gettime(CLOCK_MONOTONIC, &c->drain_deadline);
            c->drain_deadline.tv_sec += DRAIN_MS / 1000;
        }
    }
}

static bool past(const struct timespec *t)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return now.tv_sec > t->tv_sec ||
           (now.tv_sec == t->tv_sec && now.tv_nsec >= t->tv_nsec);
}

static void client_queue_text(client *c, const char *text, size_t len);

/* Queue @text and a newline; drop the client if its backlog is too big.
 * Replies are valid UTF-8 whatever a string in them came from (a name
 * read off a migration stream, a file path): json-c passes bytes >= 0x80
 * through as they are, and those that are not UTF-8 can only sit inside
 * strings, so each becomes the escape of U+FFFD. */
static void client_send_text(client *c, const char *text)
{
    size_t len = strlen(text);
    if (lm_utf8_valid(text, len, NULL)) {
        client_queue_text(c, text, len);
        return;
    }
    char *fixed = lm_utf8_replace_invalid(text, len, "\\ufffd");
    if (!fixed) {
        c->dead = true;
        return;
    }
    client_queue_text(c, fixed, strlen(fixed));
    free(fixed);
}

static void client_queue_text(client *c, const char *text, size_t len)
{
    if (c->dead)
        return;
    if (c->out_len - c->out_off + len + 1 > OUT_MAX) {
        c->dead = true;
        return;
    }
    if (c->out_off > 0 && c->out_off == c->out_len)
        c->out_off = c->out_len = 0;
    if (c->out_len + len + 1 > c->out_cap) {
        if (c->out_off > 0) {
            memmove(c->out, c->out + c->out_off, c->out_len - c->out_off);
            c->out_len -= c->out_off;
            c->out_off = 0;
        }
        size_t cap = c->out_cap ? c->out_cap : 4096;
        while (cap < c->out_len + len + 1)
            cap *= 2;
        char *n = realloc(c->out, cap);
        if (!n) {
            c->dead = true;
            return;
        }
        c->out = n;
        c->out_cap = cap;
    }
    memcpy(c->out + c->out_len, text, len);
    c->out[c->out_len + len] = '\n';
    c->out_len += len + 1;
    client_flush(c);
}

static void client_send(client *c, json_object *o)
{
    client_send_text(c, json_plain(o));
}

/* Replies echo the request's "id", whatever JSON value it is (null
 * included: json-c represents null as a NULL pointer, so presence is
 * tracked separately). */
static json_object *error_reply(const char *cls, const char *desc,
                                bool has_id, json_object *id)
{
    json_object *r = json_object_new_object();
    json_object *e = json_object_new_object();
    json_object_object_add(e, "class", json_object_new_string(cls));
    /* A message cut to its buffer may end inside a character that came
     * from the request (a long command name): keep it text. */
    char *fixed = lm_utf8_valid(desc, strlen(desc), NULL) ? NULL
                  : lm_utf8_replace_invalid(desc, strlen(desc), "?");
    json_object_object_add(e, "desc",
                           json_object_new_string(fixed ? fixed : desc));
    free(fixed);
    json_object_object_add(r, "error", e);
    if (has_id)
        json_object_object_add(r, "id", json_object_get(id));
    return r;
}

static void send_error_id(client *c, const char *cls, const char *desc,
                          bool has_id, json_object *id)
{
    json_object *r = error_reply(cls, desc, has_id, id);
    client_send(c, r);
    json_object_put(r);
}

/* ---- events ------------------------------------------------------------ */

static json_object *copy_json(json_object *src)
{
    json_object *dst = NULL;
    if (json_object_deep_copy(src, &dst, NULL) < 0)
        return NULL;
    return dst;
}

void lm_monitor_event(void *monitor, const char *event, json_object *data)
{
    lm_monitor *m = monitor;
    struct timeval tv;
    gettimeofday(&tv, NULL);
    /* Serialise here, on the caller's thread: @data belongs to the caller
     * and json-c objects are not shared between threads. */
    json_object *ev = json_object_new_object();
    json_object_object_add(ev, "event", json_object_new_string(event));
    if (data)
        json_object_object_add(ev, "data", copy_json(data));
    json_object *ts = json_object_new_object();
    json_object_object_add(ts, "seconds", json_object_new_int64(tv.tv_sec));
    json_object_object_add(ts, "microseconds",
                           json_object_new_int64(tv.tv_usec));
    json_object_object_add(ev, "timestamp", ts);
    event_item *it = calloc(1, sizeof(*it));
    if (it)
        it->text = strdup(json_plain(ev));
    json_object_put(ev);
    if (!it || !it->text) {
        if (it)
            free(it);
        return;
    }
    pthread_mutex_lock(&m->ev_lock);
    *m->ev_tail = it;
    m->ev_tail = &it->next;
    pthread_mutex_unlock(&m->ev_lock);
    uint64_t one = 1;
    ssize_t r = write(m->wake_fd, &one, sizeof(one));
    (void)r;
}

static void broadcast_events(lm_monitor *m)
{
    pthread_mutex_lock(&m->ev_lock);
    event_item *list = m->ev_head;
    m->ev_head = NULL;
    m->ev_tail = &m->ev_head;
    pthread_mutex_unlock(&m->ev_lock);
    while (list) {
        event_item *e = list;
        list = e->next;
        for (client *c = m->clients; c; c = c->next)
            if (c->negotiated && !c->closing)
                client_send_text(c, e->text);
        free(e->text);
        free(e);
    }
}

/* ---- dispatch ---------------------------------------------------------- */

typedef struct dispatch_ctx {
    lm_monitor *m;
    client *c;
} dispatch_ctx;

json_object *lm_monitor_reply(lm_monitor *m, json_object *req,
                              bool *negotiated)
{
    if (!json_object_is_type(req, json_type_object))
        return error_reply("GenericError", "QMP input must be a JSON object",
                           false, NULL);
    json_object *id = NULL, *exec = NULL, *args = NULL;
    bool has_id = json_object_object_get_ex(req, "id", &id);
    char desc[512];
    json_object_object_foreach(req, key, val) {
        (void)val;
        if (strcmp(key, "execute") && strcmp(key, "arguments") &&
            strcmp(key, "id")) {
            snprintf(desc, sizeof(desc), "QMP input member '%s' is "
                     "unexpected; use 'execute', 'arguments' and 'id'", key);
            return error_reply("GenericError", desc, has_id, id);
        }
    }
    if (!json_object_object_get_ex(req, "execute", &exec))
        return error_reply("GenericError", "QMP input lacks member 'execute'",
                           has_id, id);
    if (!json_object_is_type(exec, json_type_string))
        return error_reply("GenericError",
                           "QMP input member 'execute' must be a string",
                           has_id, id);
    if (json_object_object_get_ex(req, "arguments", &args) &&
        !json_object_is_type(args, json_type_object))
        return error_reply("GenericError",
                           "QMP input member 'arguments' must be an object",
                           has_id, id);
    const char *name = json_object_get_string(exec);
    const lm_cmd *cmd = lm_monitor_find(m, name);
    bool is_caps = strcmp(name, "qmp_capabilities") == 0;
    if (!*negotiated && !is_caps)
        return error_reply("CommandNotFound",
                           "Expecting capabilities negotiation with "
                           "'qmp_capabilities'", has_id, id);
    if (*negotiated && is_caps)
        return error_reply("CommandNotFound", "Capabilities negotiation is "
                           "already complete, command ignored", has_id, id);
    if (!cmd) {
        snprintf(desc, sizeof(desc), "The command %s has not been found",
                 name);
        return error_reply("CommandNotFound", desc, has_id, id);
    }
    livemig_error err = {0};
    json_object *ret = lm_monitor_call(m, name, args, &err);
    if (!ret)
        return error_reply(err.cls ? err.cls : "GenericError", err.desc,
                           has_id, id);
    if (is_caps)
        *negotiated = true;
    json_object *r = json_object_new_object();
    json_object_object_add(r, "return", ret);
    if (has_id)
        json_object_object_add(r, "id", json_object_get(id));
    return r;
}

static void handle_request(lm_monitor *m, client *c, json_object *req)
{
    json_object *r = lm_monitor_reply(m, req, &c->negotiated);
    /* Events the command caused (STOP, RESUME, MIGRATION...) go out
     * before its reply, as in QEMU. */
    broadcast_events(m);
    client_send(c, r);
    json_object_put(r);
}

static void on_value(void *opaque, json_object *v, const char *error,
                     bool oversize)
{
    dispatch_ctx *d = opaque;
    if (d->c->dead || d->c->closing || d->m->quit) {
        json_object_put(v);
        return;
    }
    if (error) {
        send_error_id(d->c, "GenericError", error, false, NULL);
        if (oversize) {
            d->c->closing = true;
            client_flush(d->c);
        }
        return;
    }
    handle_request(d->m, d->c, v);
    json_object_put(v);
}

/* ---- the loop ---------------------------------------------------------- */

static void accept_clients(lm_monitor *m, int lfd)
{
    for (int i = 0; i < 64; i++) {
        int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0)
            return;     /* EAGAIN, or a client that already left */
        if (m->nclients >= MAX_CLIENTS) {
            close(fd);
            continue;
        }
        client *c = calloc(1, sizeof(*c));
        if (!c || !(c->parser = lm_qmp_parser_new(LM_QMP_MAX_INPUT))) {
            free(c);
            close(fd);
            continue;
        }
        lm_qmp_parser_set_strict(c->parser, true);
        c->fd = fd;
        c->next = m->clients;
        m->clients = c;
        m->nclients++;
        char greet[256];
        snprintf(greet, sizeof(greet),
                 "{\"QMP\": {\"version\": {\"qemu\": {\"micro\": %d, "
                 "\"minor\": %d, \"major\": %d}, \"package\": \"livemig "
                 "%s\"}, \"capabilities\": []}}",
                 LIVEMIG_VERSION_MICRO, LIVEMIG_VERSION_MINOR,
                 LIVEMIG_VERSION_MAJOR, LIVEMIG_VERSION_STRING);
        client_send_text(c, greet);
    }
}

static void client_drain(client *c)
{
    char buf[READ_CHUNK];
    for (int i = 0; i < 64 && !c->dead; i++) {
        ssize_t n = recv(c->fd, buf, sizeof(buf), MSG_DONTWAIT);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return;
        if (n <= 0 || (c->drained += (size_t)n) > DRAIN_MAX)
            c->dead = true;
    }
}

static void client_read(lm_monitor *m, client *c)
{
    char buf[READ_CHUNK];
    if (c->draining) {
        client_drain(c);
        return;
    }
    /* A bounded number of reads per wake-up keeps one busy client from
     * starving the others. */
    for (int i = 0; i < 16 && !c->dead && !c->closing && !m->quit; i++) {
        ssize_t n = recv(c->fd, buf, sizeof(buf), MSG_DONTWAIT);
        if (n == 0) {
            c->dead = true;
            return;
        }
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno != EAGAIN && errno != EWOULDBLOCK)
                c->dead = true;
            return;
        }
        dispatch_ctx d = { m, c };
        lm_qmp_parser_feed(c->parser, buf, (size_t)n, on_value, &d);
        if (c->out_len - c->out_off > OUT_BACKPRESSURE)
            return;
    }
}

static void reap_clients(lm_monitor *m)
{
    client **pp = &m->clients;
    while (*pp) {
        client *c = *pp;
        if (c->dead) {
            *pp = c->next;
            m->nclients--;
            client_free(c);
        } else {
            pp = &c->next;
        }
    }
}

static void drain_wake(lm_monitor *m)
{
    uint64_t v;
    while (read(m->wake_fd, &v, sizeof(v)) > 0)
        ;
}

static void shutdown_flush(lm_monitor *m)
{
    json_object *data = json_object_new_object();
    json_object_object_add(data, "guest", json_object_new_boolean(false));
    json_object_object_add(data, "reason",
                           json_object_new_string("host-qmp-quit"));
    lm_monitor_event(m, "SHUTDOWN", data);
    json_object_put(data);
    drain_wake(m);
    broadcast_events(m);
    /* Bounded: slow or stuck clients do not hold up the exit. */
    for (int round = 0; round < QUIT_FLUSH_MS / 10; round++) {
        struct pollfd pfd[MAX_CLIENTS];
        client *who[MAX_CLIENTS];
        nfds_t n = 0;
        for (client *c = m->clients; c && n < MAX_CLIENTS; c = c->next) {
            client_flush(c);
            if (!c->dead && c->out_off < c->out_len) {
                pfd[n] = (struct pollfd){ .fd = c->fd, .events = POLLOUT };
                who[n++] = c;
            }
        }
        if (n == 0)
            break;
        (void)who;
        poll(pfd, n, 10);
    }
}

int lm_monitor_run(lm_monitor *m)
{
    struct pollfd *pfd = NULL;
    client **who = NULL;
    size_t cap = 0;
    int rc = 0;
    m->quit = false;
    while (!atomic_load(&m->stop) && !m->quit) {
        size_t need = 1 + m->nlisten + m->nclients;
        if (need > cap) {
            cap = need * 2;
            struct pollfd *np = realloc(pfd, cap * sizeof(*pfd));
            if (np)
                pfd = np;
            client **nw = realloc(who, cap * sizeof(*who));
            if (nw)
                who = nw;
            if (!np || !nw) {
                rc = -1;
                break;
            }
        }
        nfds_t n = 0;
        pfd[n++] = (struct pollfd){ .fd = m->wake_fd, .events = POLLIN };
        for (size_t i = 0; i < m->nlisten; i++)
            pfd[n++] = (struct pollfd){ .fd = m->lfd[i], .events = POLLIN };
        size_t first_client = n;
        int timeout = -1;
        for (client *c = m->clients; c; c = c->next) {
            short ev = 0;
            if (c->draining) {
                ev |= POLLIN;
                timeout = 100;
            } else if (!c->closing &&
                       c->out_len - c->out_off <= OUT_BACKPRESSURE) {
                ev |= POLLIN;
            }
            if (c->out_off < c->out_len)
                ev |= POLLOUT;
            who[n] = c;
            pfd[n++] = (struct pollfd){ .fd = c->fd, .events = ev };
        }
        int pr = poll(pfd, n, timeout);
        if (pr < 0) {
            if (errno == EINTR)
                continue;
            rc = -1;
            break;
        }
        if (pfd[0].revents) {
            drain_wake(m);
            broadcast_events(m);
        }
        for (size_t i = 0; i < m->nlisten; i++)
            if (pfd[1 + i].revents & POLLIN)
                accept_clients(m, m->lfd[i]);
        for (size_t i = first_client; i < n && !m->quit; i++) {
            client *c = who[i];
            short re = pfd[i].revents;
            if (re & (POLLIN | POLLHUP | POLLERR))
                client_read(m, c);
            if (re & POLLOUT)
                client_flush(c);
            if ((re & (POLLHUP | POLLERR)) && !(re & POLLIN))
                c->dead = true;
            if (c->draining && past(&c->drain_deadline))
                c->dead = true;
        }
        reap_clients(m);
    }
    if (m->quit)
        shutdown_flush(m);
    reap_clients(m);
    free(pfd);
    free(who);
    atomic_store(&m->stop, false);
    return rc;
}
