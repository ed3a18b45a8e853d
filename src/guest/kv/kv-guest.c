/*
 * kv-guest.c - the kv store as a livemig guest: the spec, the RAM block,
 * the state section "kv", the guest ops, and a watcher that tells the
 * server when its store moved away.
 *
 * Section "kv", version 1 (big-endian):
 *   u64 block size, u64 store clock (ms) at the save, u64 CLOCK_REALTIME
 *   (ms) at the save, u64 commands, connections, hits, misses, expired,
 *   rejected, u64 random state.
 * The store's clock runs on across a move: the loader sets it to the saved
 * value plus the wall-clock time since the save (never backwards), then it
 * follows the local monotonic clock.  So a TTL counts down through a
 * migration and through a failover to a backup.
 *
 * Guest ops: stop parks the server loop (it finishes the client in hand
 * and submits its replies; nothing writes the block while parked), cont
 * releases it.  The watcher thread polls the engine (it must not be the
 * loop: the engine calls stop with its lock held, and the loop would wait
 * for that lock) for the INFO livemig section, and when the runstate
 * becomes postmigrate (the migration completed, the store runs elsewhere)
 * asks the server to close its clients and its port.
 */
#include "guest/kv/kv.h"

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <json-c/json.h>

#include "guest/kv/kv-int.h"
#include "guest/kv/kv-server.h"

#define SECTION_VERSION 1u
#define WATCH_MS 20

struct kv_guest {
    livemig *lm;
    uint8_t *host;
    uint64_t size;
    livemig_ram *ram;
    kv_store st;
    kv_server *srv;
    kv_server_conf conf;
    livemig_tracker_kind tracker;

    pthread_t watcher;
    bool watching;
    pthread_mutex_t lock;      /* the fields below and the watcher's quit */
    pthread_cond_t cv;
    bool quit;
    char status[32];
    char role[16];
    uint64_t epoch;
    bool dropped;              /* clients closed after completion */
};

struct lm_kv {
    struct kv_guest g;
};

/* ---- spec ------------------------------------------------------------- */

static bool parse_size(const char *s, uint64_t *out)
{
    if (!isdigit((unsigned char)s[0]))
        return false;
    errno = 0;
    char *end;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno)
        return false;
    unsigned shift = 0;
    switch (*end) {
    case '\0': break;
    case 'k': case 'K': shift = 10; end++; break;
    case 'm': case 'M': shift = 20; end++; break;
    case 'g': case 'G': shift = 30; end++; break;
    case 't': case 'T': shift = 40; end++; break;
    default: return false;
    }
    if (shift && (*end == 'b' || *end == 'B'))
        end++;
    if (*end || (shift && v > (UINT64_MAX >> shift)))
        return false;
    *out = (uint64_t)v << shift;
    return true;
}

bool lm_kv_spec_is_kv(const char *spec)
{
    return spec && !strncmp(spec, "kv", 2) && (spec[2] == '\0' ||
                                               spec[2] == ',');
}

static bool parse_spec(struct kv_guest *g, const char *spec,
                       bool *tracker_set, livemig_error *err)
{
    g->size = 1ull << 30;
    snprintf(g->conf.bind, sizeof(g->conf.bind), "127.0.0.1");
    g->conf.port = 6379;
    g->conf.max_clients = 10000;
    g->conf.out_limit = 256u << 20;
    g->conf.query_limit = 1u << 30;
    g->conf.lim.max_bulk = KV_RESP_MAX_BULK_DEFAULT;
    g->conf.lim.max_inline = KV_RESP_MAX_INLINE_DEFAULT;
    g->conf.lim.max_args = KV_RESP_MAX_ARGS_DEFAULT;
    *tracker_set = false;

    char *dup = strdup(spec), *save = NULL;
    if (!dup) {
        livemig_error_set(err, "kv guest: out of memory");
        return false;
    }
    bool ok = true;
    int i = 0;
    for (char *tok = strtok_r(dup, ",", &save); tok && ok;
         tok = strtok_r(NULL, ",", &save), i++) {
        if (i == 0 && !strcmp(tok, "kv"))
            continue;
        char *eq = strchr(tok, '=');
        if (!eq) {
            livemig_error_set(err, "kv guest: option '%s' has no value; "
                              "write KEY=VALUE (size, port, bind, tracker, "
                              "max-clients, out-limit, query-limit)", tok);
            ok = false;
            break;
        }
        *eq = '\0';
        const char *k = tok, *v = eq + 1;
        uint64_t n;
        if (!strcmp(k, "size")) {
            ok = parse_size(v, &n) && n >= (1u << 20) && n % KV_PAGE == 0 &&
                 n <= (1ull << 40);
            if (ok)
                g->size = n;
            else
                livemig_error_set(err, "kv guest: size '%s' is not a size "
                                  "from 1M to 1T in whole 4 KiB pages; use "
                                  "e.g. size=1G", v);
        } else if (!strcmp(k, "port")) {
            ok = parse_size(v, &n) && n <= 65535;
            if (ok)
                g->conf.port = (int)n;
            else
                livemig_error_set(err, "kv guest: port '%s' is not a TCP "
                                  "port (0-65535)", v);
        } else if (!strcmp(k, "bind")) {
            ok = strlen(v) < sizeof(g->conf.bind);
            if (ok)
                snprintf(g->conf.bind, sizeof(g->conf.bind), "%s", v);
            else
                livemig_error_set(err, "kv guest: bind '%s' is too long; "
                                  "give an IPv4 address", v);
        } else if (!strcmp(k, "tracker")) {
            ok = livemig_tracker_parse(v, &g->tracker, err);
            *tracker_set = ok;
        } else if (!strcmp(k, "max-clients")) {
            ok = parse_size(v, &n) && n >= 1 && n <= 1000000;
            if (ok)
                g->conf.max_clients = (unsigned)n;
            else
                livemig_error_set(err, "kv guest: max-clients '%s' is not "
                                  "a number from 1 to 1000000", v);
        } else if (!strcmp(k, "out-limit")) {
            ok = parse_size(v, &n) && n >= 1024;
            if (ok)
                g->conf.out_limit = n;
            else
                livemig_error_set(err, "kv guest: out-limit '%s' is not a "
                                  "size of at least 1K", v);
        } else if (!strcmp(k, "query-limit")) {
            ok = parse_size(v, &n) && n >= 1024;
            if (ok)
                g->conf.query_limit = n;
            else
                livemig_error_set(err, "kv guest: query-limit '%s' is not "
                                  "a size of at least 1K", v);
        } else {
            livemig_error_set(err, "kv guest: unknown option '%s'; known: "
                              "size, port, bind, tracker, max-clients, "
                              "out-limit, query-limit", k);
            ok = false;
        }
    }
    free(dup);
    /* A bulk larger than the block could never be stored: refuse its
     * header instead of buffering it. */
    if (ok && g->conf.lim.max_bulk > g->size - KV_PAGE)
        g->conf.lim.max_bulk = g->size - KV_PAGE;
    return ok;
}

/* ---- state section ------------------------------------------------------ */

static int64_t wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static bool section_save(void *opaque, livemig_buf *out, livemig_error *err)
{
    struct kv_guest *g = opaque;
    kv_store *s = &g->st;
    bool ok = livemig_buf_put_u64(out, g->size) &&
              livemig_buf_put_u64(out, (uint64_t)kv_store_now_ms(s)) &&
              livemig_buf_put_u64(out, (uint64_t)wall_ms()) &&
              livemig_buf_put_u64(out, s->n.commands) &&
              livemig_buf_put_u64(out, s->n.connections) &&
              livemig_buf_put_u64(out, s->n.hits) &&
              livemig_buf_put_u64(out, s->n.misses) &&
              livemig_buf_put_u64(out, s->n.expired) &&
              livemig_buf_put_u64(out, s->n.rejected) &&
              livemig_buf_put_u64(out, s->rnd);
    if (!ok)
        livemig_error_set(err, "kv guest: out of memory saving its state");
    return ok;
}

static bool section_load(void *opaque, uint32_t version, livemig_cursor *in,
                         livemig_error *err)
{
    struct kv_guest *g = opaque;
    kv_store *s = &g->st;
    if (version != SECTION_VERSION) {
        livemig_error_set(err, "kv guest: state version %u is not supported "
                          "(this build reads version %u); run the same "
                          "livemig on both sides", version, SECTION_VERSION);
        return false;
    }
    uint64_t size, clock, wall;
    kv_counters n;
    uint64_t rnd;
    if (!livemig_cursor_get_u64(in, &size) ||
        !livemig_cursor_get_u64(in, &clock) ||
        !livemig_cursor_get_u64(in, &wall) ||
        !livemig_cursor_get_u64(in, &n.commands) ||
        !livemig_cursor_get_u64(in, &n.connections) ||
        !livemig_cursor_get_u64(in, &n.hits) ||
        !livemig_cursor_get_u64(in, &n.misses) ||
        !livemig_cursor_get_u64(in, &n.expired) ||
        !livemig_cursor_get_u64(in, &n.rejected) ||
        !livemig_cursor_get_u64(in, &rnd)) {
        livemig_error_set(err, "kv guest: its state in the stream is "
                          "truncated (section 'kv' version 1)");
        return false;
    }
    if (size != g->size) {
        livemig_error_set(err, "kv guest: the source store has size=%" PRIu64
                          " bytes, this one %" PRIu64 "; start the "
                          "destination with the same size=", size, g->size);
        return false;
    }
    char why[256];
    if (!kv_heap_check(&s->heap, why, sizeof(why))) {
        livemig_error_set(err, "kv guest: %s", why);
        return false;
    }
    int64_t since = wall_ms() - (int64_t)wall;
    if (since < 0)
        since = 0;
    s->clock_offset_ms = (int64_t)clock + since - kv_mono_ms();
    s->n = n;
    s->rnd = rnd;
    return true;
}

static const livemig_section_ops section_ops = {
    .save = section_save, .load = section_load,
};

/* ---- guest ops ---------------------------------------------------------- */

static void op_stop(void *opaque)
{
    struct kv_guest *g = opaque;
    kv_server_pause(g->srv);
}

static void op_cont(void *opaque)
{
    struct kv_guest *g = opaque;
    pthread_mutex_lock(&g->lock);
    g->dropped = false;
    pthread_mutex_unlock(&g->lock);
    kv_server_resume(g->srv);
}

static void op_throttle(void *opaque, unsigned percent)
{
    /* A server cannot be slowed without hurting its clients; precopy
     * converges on the store's write rate as it is. */
    (void)opaque;
    (void)percent;
}

static const livemig_guest_ops guest_ops = {
    .stop = op_stop, .cont = op_cont, .throttle = op_throttle,
};

/* ---- watcher ------------------------------------------------------------ */

static void *watch_main(void *arg)
{
    struct kv_guest *g = arg;
    pthread_mutex_lock(&g->lock);
    while (!g->quit) {
        pthread_mutex_unlock(&g->lock);
        livemig_runstate rs = livemig_vm_runstate(g->lm);
        json_object *q = livemig_query_migrate(g->lm);
        json_object *mc = NULL, *st = NULL, *role = NULL, *ep = NULL;
        json_object_object_get_ex(q, "status", &st);
        bool has_mc = json_object_object_get_ex(q, "mc", &mc);
        if (has_mc) {
            json_object_object_get_ex(mc, "role", &role);
            json_object_object_get_ex(mc, "epoch", &ep);
        }
        pthread_mutex_lock(&g->lock);
        snprintf(g->status, sizeof(g->status), "%s",
                 st ? json_object_get_string(st) : "none");
        snprintf(g->role, sizeof(g->role), "%s",
                 role ? json_object_get_string(role)
                      : rs == LIVEMIG_RUN_INMIGRATE ? "destination"
                      : rs == LIVEMIG_RUN_POSTMIGRATE ? "moved" : "master");
        g->epoch = ep ? (uint64_t)json_object_get_int64(ep) : 0;
        bool drop = rs == LIVEMIG_RUN_POSTMIGRATE && !g->dropped;
        if (drop)
            g->dropped = true;
        pthread_mutex_unlock(&g->lock);
        json_object_put(q);
        if (drop)
            kv_server_drop_clients(g->srv);

        pthread_mutex_lock(&g->lock);
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += WATCH_MS * 1000000L;
        if (ts.tv_nsec >= 1000000000L) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000L;
        }
        if (!g->quit)
            pthread_cond_timedwait(&g->cv, &g->lock, &ts);
    }
    pthread_mutex_unlock(&g->lock);
    return NULL;
}

void kv_guest_info(struct kv_guest *g, kv_out *o)
{
    char tmp[160];
    pthread_mutex_lock(&g->lock);
    int n = snprintf(tmp, sizeof(tmp), "role:%s\r\nmigration_status:%s\r\n"
                     "mc_epoch:%" PRIu64 "\r\n", g->role, g->status,
                     g->epoch);
    pthread_mutex_unlock(&g->lock);
    kv_out_raw(o, tmp, (size_t)n);
}

/* ---- lifetime ------------------------------------------------------------- */

lm_kv *lm_kv_new(const char *spec, livemig *lm, bool incoming,
                 livemig_tracker_kind tracker, livemig_error *err)
{
    lm_kv *kv = calloc(1, sizeof(*kv));
    if (!kv) {
        livemig_error_set(err, "kv guest: out of memory");
        return NULL;
    }
    struct kv_guest *g = &kv->g;
    bool tracker_set;
    g->lm = lm;
    g->tracker = tracker;
    pthread_mutex_init(&g->lock, NULL);
    pthread_cond_init(&g->cv, NULL);
    snprintf(g->status, sizeof(g->status), "none");
    snprintf(g->role, sizeof(g->role), incoming ? "destination" : "master");
    if (!parse_spec(g, spec, &tracker_set, err))
        goto fail;
    g->host = livemig_ram_alloc(g->size, err);
    if (!g->host)
        goto fail;
    g->ram = livemig_ram_add(lm, "kv", g->host, g->size, g->tracker, err);
    if (!g->ram)
        goto fail;
    livemig_tracker_kind used = livemig_ram_tracker(g->ram);
    uint64_t *bitmap = used == LIVEMIG_TRACKER_MANUAL
                           ? livemig_ram_manual_bitmap(g->ram) : NULL;
    kv_store *s = &g->st;
    kv_heap_init(&s->heap, g->host, g->size, bitmap, !incoming);
    snprintf(s->tracker, sizeof(s->tracker), "%s", livemig_tracker_name(used));
    s->port = g->conf.port;
    s->guest = g;
    s->rnd = (uint64_t)wall_ms() * 0x9e3779b97f4a7c15ull | 1;
    /* Keep 1/64 of the block (at least 64 KiB) for deletes, dictionary
     * bookkeeping and replies: a full store still serves reads and
     * deletes. */
    uint64_t arena = g->size - KV_PAGE;
    s->oom_reserve = arena / 64 > 65536 ? arena / 64 : 65536;
    if (!livemig_section_add(lm, "kv", SECTION_VERSION, &section_ops, g, err))
        goto fail;
    g->srv = kv_server_new(s, lm, &g->conf, err);
    if (!g->srv)
        goto fail;
    s->srv = g->srv;
    s->port = g->conf.port;
    int e = pthread_create(&g->watcher, NULL, watch_main, g);
    if (e) {
        livemig_error_set(err, "kv guest: cannot start its watcher thread: "
                          "%s", strerror(e));
        goto fail;
    }
    g->watching = true;
    livemig_set_guest_ops(lm, &guest_ops, g,
                          incoming ? LIVEMIG_RUN_INMIGRATE
                                   : LIVEMIG_RUN_RUNNING);
    if (!incoming)
        kv_server_resume(g->srv);
    return kv;
fail:
    /* The engine keeps what was registered; livemigd frees the engine on
     * this failure before the memory (as with the pattern guest). */
    lm_kv_halt(kv);
    lm_kv_free(kv);
    return NULL;
}

void lm_kv_halt(lm_kv *kv)
{
    if (!kv)
        return;
    struct kv_guest *g = &kv->g;
    if (g->watching) {
        pthread_mutex_lock(&g->lock);
        g->quit = true;
        pthread_cond_broadcast(&g->cv);
        pthread_mutex_unlock(&g->lock);
        pthread_join(g->watcher, NULL);
        g->watching = false;
    }
    kv_server_halt(g->srv);
}

void lm_kv_free(lm_kv *kv)
{
    if (!kv)
        return;
    struct kv_guest *g = &kv->g;
    lm_kv_halt(kv);
    kv_server_free(g->srv);
    if (g->host)
        livemig_ram_free(g->host, g->size);
    pthread_mutex_destroy(&g->lock);
    pthread_cond_destroy(&g->cv);
    free(kv);
}

struct json_object *lm_kv_query(lm_kv *kv)
{
    struct kv_guest *g = &kv->g;
    json_object *o = json_object_new_object();
    json_object_object_add(o, "kind", json_object_new_string("kv"));
    json_object_object_add(o, "size", json_object_new_int64((int64_t)g->size));
    json_object_object_add(o, "port", json_object_new_int(g->conf.port));
    json_object_object_add(o, "listening", json_object_new_boolean(
                               kv_server_listen_port(g->srv) >= 0));
    json_object_object_add(o, "tracker",
                           json_object_new_string(g->st.tracker));
    kv_server_info si;
    kv_server_get_info(g->srv, &si);
    json_object_object_add(o, "clients",
                           json_object_new_int64((int64_t)si.clients));
    return o;
}
