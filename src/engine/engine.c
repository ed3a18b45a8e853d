/*
 * engine.c - the engine handle: RAM blocks, sections, guest run state,
 * events, and the one status-transition function.
 */
#include <json-c/json.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "engine/engine-int.h"
#include "engine/postcopy.h"
#include "engine/engine.h"
#include "engine/multifd.h"
#include "tls/tls.h"

static const char *const status_names[] = {
#define X(e, s) s,
    LIVEMIG_STATUS_LIST(X)
#undef X
};

const char *livemig_status_name(livemig_status s)
{
    return (unsigned)s < LIVEMIG_STATUS__MAX ? status_names[s] : "unknown";
}

const char *livemig_runstate_name(livemig_runstate s)
{
    static const char *const n[] = { "prelaunch", "running", "paused",
                                     "inmigrate", "finish-migrate",
                                     "postmigrate" };
    return (unsigned)s < sizeof(n) / sizeof(n[0]) ? n[s] : "unknown";
}

uint64_t lm_now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

uint64_t lm_now_ms(void) { return lm_now_us() / 1000u; }

static void kick(void *opaque)
{
    livemig *lm = opaque;
    pthread_mutex_lock(&lm->lock);
    lm->kicked = true;
    pthread_cond_broadcast(&lm->cond);
    pthread_mutex_unlock(&lm->lock);
}

/* Rules of the tunables that need the engine: refused when set, never
 * found out by a running migration. */
static bool check_tunables(void *opaque, const lm_params *cur,
                           const lm_params *next, livemig_error *err)
{
    (void)opaque;
    if (next->cap_postcopy_preempt && !next->cap_postcopy_ram) {
        livemig_error_set(err, "capability 'postcopy-preempt' needs "
                          "'postcopy-ram': set postcopy-ram too (in the "
                          "same migrate-set-capabilities, or first)%s",
                          cur->cap_postcopy_preempt
                              ? ", or clear postcopy-preempt with it" : "");
        return false;
    }
    if (next->xbzrle_cache_size != cur->xbzrle_cache_size) {
        /* The migration thread resizes at its next pass; make sure now
         * that the memory can be had (QEMU also allocates at set time).
         * A mapping the kernel's overcommit check would refuse is what
         * the allocation would hit; mmap is not a sanitizer's malloc. */
        uint64_t size = next->xbzrle_cache_size;
        uint64_t bytes = size + size / LM_PAGE_SIZE * 16u;   /* + slots */
        void *p = bytes < size || bytes > SIZE_MAX / 2
                      ? MAP_FAILED
                      : mmap(NULL, (size_t)bytes, PROT_READ | PROT_WRITE,
                             MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (p == MAP_FAILED) {
            livemig_error_set(err, "parameter 'xbzrle-cache-size' of %llu "
                              "bytes cannot be had: out of memory; choose "
                              "a smaller size", (unsigned long long)size);
            return false;
        }
        munmap(p, (size_t)bytes);
    }
    return true;
}

livemig *livemig_new(livemig_error *err)
{
    livemig *lm = calloc(1, sizeof(*lm));
    if (!lm || !(lm->tun = lm_tunables_new()) ||
        !(lm->objects = lm_objects_new())) {
        if (lm)
            lm_tunables_free(lm->tun);
        free(lm);
        livemig_error_set(err, "out of memory creating the engine");
        return NULL;
    }
    pthread_mutex_init(&lm->lock, NULL);
    pthread_mutex_init(&lm->guest_lock, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&lm->cond, &ca);
    pthread_condattr_destroy(&ca);
    lm->status = LIVEMIG_STATUS_NONE;
    lm->runstate = LIVEMIG_RUN_PRELAUNCH;
    lm->conn = (lm_conn)LM_CONN_INIT;
    lm->pc_conn = (lm_conn)LM_CONN_INIT;
    lm->listener.fd = -1;
    lm->listener.pending = (lm_conn)LM_CONN_INIT;
    lm->ram_pristine = true;
    lm_output_init(lm);
    lm_tunables_set_kick(lm->tun, kick, lm);
    lm_tunables_set_check(lm->tun, check_tunables, lm);
    return lm;
}

static bool cancel(livemig *lm, bool force, livemig_error *err);

static void join_thread(livemig *lm)
{
    pthread_mutex_lock(&lm->lock);
    bool j = lm->thread_joinable;
    lm->thread_joinable = false;
    pthread_t t = lm->thread;
    pthread_mutex_unlock(&lm->lock);
    if (j)
        pthread_join(t, NULL);
}

void livemig_free(livemig *lm)
{
    if (!lm)
        return;
    cancel(lm, true, NULL);
    join_thread(lm);
    lm_listener_close(&lm->listener);
    lm_output_destroy(lm);
    json_object_put(lm->stats.multifd);
    for (size_t i = 0; i < lm->nram; i++) {
        livemig_ram *r = lm->ram[i];
        if (r->tracker)
            lm_tracker_free(r->tracker);
        free(r->dirty);
        free(r);
    }
    free(lm->ram);
    free(lm->sections);
    lm_tunables_free(lm->tun);
    lm_objects_free(lm->objects);
    pthread_mutex_destroy(&lm->lock);
    pthread_mutex_destroy(&lm->guest_lock);
    pthread_cond_destroy(&lm->cond);
    free(lm);
}

lm_tunables *lm_engine_tunables(livemig *lm) { return lm->tun; }

/* ---- RAM --------------------------------------------------------------- */

const char *livemig_tracker_name(livemig_tracker_kind k)
{
    static const char *const n[] = { "auto", "uffd-wp-async", "mprotect",
                                     "manual" };
    return (unsigned)k < 4 ? n[k] : "unknown";
}

bool livemig_tracker_parse(const char *s, livemig_tracker_kind *out,
                           livemig_error *err)
{
    for (int k = 0; k < 4; k++) {
        if (strcmp(s, livemig_tracker_name(k)) == 0) {
            *out = (livemig_tracker_kind)k;
            return true;
        }
    }
    livemig_error_set(err, "unknown dirty tracker '%s'; use auto, "
                      "uffd-wp-async, mprotect or manual", s);
    return false;
}

void *livemig_ram_alloc(size_t size, livemig_error *err)
{
    if (!size || size % LM_PAGE_SIZE) {
        livemig_error_set(err, "guest RAM size %zu is not a positive "
                          "multiple of %u bytes", size, LM_PAGE_SIZE);
        return NULL;
    }
    void *p = mmap(NULL, size, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (p == MAP_FAILED) {
        livemig_error_set(err, "cannot map %zu bytes of guest RAM: %m", size);
        return NULL;
    }
    /* Huge pages: 512x fewer faults; populate now, not when the stream
     * arrives (see DESIGN.md, "Destination memory"). */
    madvise(p, size, MADV_HUGEPAGE);
#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23
#endif
    if (madvise(p, size, MADV_POPULATE_WRITE) != 0) {
        /* Older kernels: touch every page. */
        for (size_t off = 0; off < size; off += LM_PAGE_SIZE)
            ((volatile uint8_t *)p)[off] = 0;
    }
    return p;
}

void livemig_ram_free(void *host, size_t size)
{
    if (host)
        munmap(host, size);
}

livemig_ram *livemig_ram_add(livemig *lm, const char *name, void *host,
                             size_t size, livemig_tracker_kind tracker,
                             livemig_error *err)
{
    if (!name || !name[0] || strlen(name) > LM_NAME_MAX) {
        livemig_error_set(err, "RAM block name must be 1 to %u bytes",
                          LM_NAME_MAX);
        return NULL;
    }
    if (!host || ((uintptr_t)host % LM_PAGE_SIZE) || !size ||
        size % LM_PAGE_SIZE) {
        livemig_error_set(err, "RAM block '%s' must be page-aligned and a "
                          "positive multiple of %u bytes", name,
                          LM_PAGE_SIZE);
        return NULL;
    }
    pthread_mutex_lock(&lm->lock);
    bool busy = lm->thread_joinable || lm->status != LIVEMIG_STATUS_NONE;
    pthread_mutex_unlock(&lm->lock);
    if (busy) {
        livemig_error_set(err, "RAM block '%s' cannot be added after a "
                          "migration started", name);
        return NULL;
    }
    for (size_t i = 0; i < lm->nram; i++) {
        if (strcmp(lm->ram[i]->name, name) == 0) {
            livemig_error_set(err, "a RAM block named '%s' already exists",
                              name);
            return NULL;
        }
    }
    if (lm->nram >= 64) {
        livemig_error_set(err, "too many RAM blocks (64 at most)");
        return NULL;
    }
    livemig_ram *r = calloc(1, sizeof(*r));
    livemig_ram **v = realloc(lm->ram, (lm->nram + 1) * sizeof(*v));
    if (!r || !v) {
        free(r);
        if (v)
            lm->ram = v;
        livemig_error_set(err, "out of memory adding RAM block '%s'", name);
        return NULL;
    }
    lm->ram = v;
    snprintf(r->name, sizeof(r->name), "%s", name);
    r->host = host;
    r->size = size;
    r->pages = size / LM_PAGE_SIZE;
    r->bitmap_words = (r->pages + 63) / 64;
    r->dirty = calloc(r->bitmap_words, sizeof(uint64_t));
    r->tracker = lm_tracker_new(tracker, host, size, LM_PAGE_SIZE, err);
    if (!r->dirty || !r->tracker) {
        if (r->tracker)
            lm_tracker_free(r->tracker);
        free(r->dirty);
        free(r);
        livemig_error_set(err, "cannot set up dirty tracking for RAM block "
                          "'%s'", name);
        return NULL;
    }
    r->kind = lm_tracker_kind(r->tracker);
    lm->ram[lm->nram++] = r;
    return r;
}

livemig_tracker_kind livemig_ram_tracker(const livemig_ram *r)
{
    return r->kind;
}

uint64_t *livemig_ram_manual_bitmap(livemig_ram *r)
{
    return lm_tracker_manual_bitmap(r->tracker);
}

/* ---- sections ---------------------------------------------------------- */

bool livemig_section_add(livemig *lm, const char *name, uint32_t version,
                         const livemig_section_ops *ops, void *opaque,
                         livemig_error *err)
{
    if (!name || !name[0] || strlen(name) > LM_NAME_MAX || !ops ||
        !ops->save || !ops->load) {
        livemig_error_set(err, "a state section needs a name of 1 to %u "
                          "bytes and save and load callbacks", LM_NAME_MAX);
        return false;
    }
    for (size_t i = 0; i < lm->nsections; i++) {
        if (strcmp(lm->sections[i].name, name) == 0) {
            livemig_error_set(err, "a state section named '%s' already "
                              "exists", name);
            return false;
        }
    }
    lm_section *v = realloc(lm->sections, (lm->nsections + 1) * sizeof(*v));
    if (!v) {
        livemig_error_set(err, "out of memory adding section '%s'", name);
        return false;
    }
    lm->sections = v;
    lm_section *s = &v[lm->nsections++];
    snprintf(s->name, sizeof(s->name), "%s", name);
    s->version = version;
    s->ops = *ops;
    s->opaque = opaque;
    return true;
}

/* ---- guest run state --------------------------------------------------- */

void livemig_set_guest_ops(livemig *lm, const livemig_guest_ops *ops,
                           void *opaque, livemig_runstate initial)
{
    lm->gops = *ops;
    lm->gopaque = opaque;
    lm->runstate = initial;
}

void livemig_set_event_cb(livemig *lm, livemig_event_fn fn, void *opaque)
{
    lm->event_fn = fn;
    lm->event_opaque = opaque;
}

void livemig_set_log_cb(livemig *lm, livemig_log_fn fn, void *opaque)
{
    lm->log_fn = fn;
    lm->log_opaque = opaque;
}

void lm_log(livemig *lm, const char *fmt, ...)
{
    if (!lm->log_fn)
        return;
    char line[768];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    lm->log_fn(lm->log_opaque, line);
}

/* The events a log should show whatever the events capability says. */
static void log_event(livemig *lm, const char *event, json_object *data)
{
    json_object *e = NULL, *r = NULL;
    if (data) {
        json_object_object_get_ex(data, "epoch", &e);
        json_object_object_get_ex(data, "reason", &r);
    }
    if (!strcmp(event, "MC_FAILOVER"))
        lm_log(lm, "micro-checkpointing: this backup took over from "
               "checkpoint %llu: %s",
               (unsigned long long)json_object_get_uint64(e),
               r ? json_object_get_string(r) : "?");
    else if (!strcmp(event, "MC_BACKUP_LOST"))
        lm_log(lm, "micro-checkpointing: the backup was lost at epoch %llu: "
               "%s; the guest runs unprotected",
               (unsigned long long)json_object_get_uint64(e),
               r ? json_object_get_string(r) : "?");
    else if (!strcmp(event, "MC_CHECKPOINTING"))
        lm_log(lm, "micro-checkpointing: the guest is protected (this side "
               "is the %s)", lm->incoming ? "backup" : "primary");
}

void lm_emit(livemig *lm, const char *event, struct json_object *data)
{
    log_event(lm, event, data);
    if (lm->event_fn)
        lm->event_fn(lm->event_opaque, event, data);
    json_object_put(data);
}

/* The status changes a log should show (caller holds lm->lock). */
static void log_status(livemig *lm, livemig_status to)
{
    const lm_stats *st = &lm->stats;
    switch (to) {
    case LIVEMIG_STATUS_SETUP:
        if (!lm->incoming)
            lm_log(lm, "migration to '%s' started", lm->uri);
        break;
    case LIVEMIG_STATUS_ACTIVE:
        if (lm->incoming)
            lm_log(lm, "incoming migration: the source connected");
        break;
    case LIVEMIG_STATUS_COMPLETED:
        if (lm->incoming && lm->mc.failover_epoch)
            break;   /* the takeover line says it */
        if (lm->incoming)
            lm_log(lm, "incoming migration completed: the guest runs here "
                   "(%llu bytes received)",
                   (unsigned long long)st->transferred);
        else
            lm_log(lm, "migration to '%s' completed in %llu ms, downtime "
                   "%llu ms, %llu bytes sent", lm->uri,
                   (unsigned long long)(st->end_ms - st->start_ms),
                   (unsigned long long)st->downtime_ms,
                   (unsigned long long)st->transferred);
        break;
    case LIVEMIG_STATUS_FAILED:
        lm_log(lm, "%s failed: %s", lm->incoming ? "incoming migration"
                                                 : "migration",
               lm->error_desc[0] ? lm->error_desc : "(no reason recorded)");
        break;
    case LIVEMIG_STATUS_CANCELLED:
        lm_log(lm, "%s cancelled", lm->incoming ? "incoming migration"
                                                : "migration");
        break;
    default:
        break;
    }
}

/* Guest ops run under lm->lock so a user's stop/cont and the engine's
 * (switchover, checkpoints) never interleave; the ops only park or
 * release the guest's threads, which never take lm->lock. */
void lm_guest_stop(livemig *lm, livemig_runstate to)
{
    pthread_mutex_lock(&lm->guest_lock);
    pthread_mutex_lock(&lm->lock);
    bool was_running = lm->runstate == LIVEMIG_RUN_RUNNING;
    lm->runstate = to;
    pthread_mutex_unlock(&lm->lock);
    if (was_running && lm->gops.stop)
        lm->gops.stop(lm->gopaque);
    pthread_mutex_unlock(&lm->guest_lock);
    if (was_running)
        lm_emit(lm, "STOP", NULL);
}

void lm_guest_cont(livemig *lm)
{
    pthread_mutex_lock(&lm->guest_lock);
    pthread_mutex_lock(&lm->lock);
    bool was_running = lm->runstate == LIVEMIG_RUN_RUNNING;
    lm->runstate = LIVEMIG_RUN_RUNNING;
    pthread_mutex_unlock(&lm->lock);
    if (!was_running && lm->gops.cont)
        lm->gops.cont(lm->gopaque);
    pthread_mutex_unlock(&lm->guest_lock);
    if (!was_running)
        lm_emit(lm, "RESUME", NULL);
}

bool livemig_vm_stop(livemig *lm, livemig_error *err)
{
    (void)err;
    pthread_mutex_lock(&lm->lock);
    livemig_runstate rs = lm->runstate;
    pthread_mutex_unlock(&lm->lock);
    if (rs == LIVEMIG_RUN_RUNNING)
        lm_guest_stop(lm, LIVEMIG_RUN_PAUSED);
    return true;
}

bool livemig_vm_cont(livemig *lm, livemig_error *err)
{
    pthread_mutex_lock(&lm->lock);
    livemig_runstate rs = lm->runstate;
    livemig_status st = lm->status;
    pthread_mutex_unlock(&lm->lock);
    if (rs == LIVEMIG_RUN_INMIGRATE) {
        livemig_error_set(err, "the guest waits for an incoming migration "
                          "and cannot run before it completes");
        return false;
    }
    if (rs == LIVEMIG_RUN_FINISH_MIGRATE ||
        st == LIVEMIG_STATUS_PRE_SWITCHOVER || st == LIVEMIG_STATUS_DEVICE) {
        livemig_error_set(err, "the guest is stopped for switchover (status "
                          "'%s'); use migrate-continue or migrate_cancel",
                          livemig_status_name(st));
        return false;
    }
    if (rs != LIVEMIG_RUN_RUNNING)
        lm_guest_cont(lm);
    return true;
}

livemig_runstate livemig_vm_runstate(livemig *lm)
{
    pthread_mutex_lock(&lm->lock);
    livemig_runstate rs = lm->runstate;
    pthread_mutex_unlock(&lm->lock);
    return rs;
}

/* ---- status ------------------------------------------------------------ */

#define B(s) (1u << LIVEMIG_STATUS_##s)
/* Legal edges: edges[from] is the set of statuses it may move to. */
static const unsigned edges[LIVEMIG_STATUS__MAX] = {
    [LIVEMIG_STATUS_NONE] = B(SETUP) | B(FAILED) | B(ACTIVE),
    [LIVEMIG_STATUS_SETUP] = B(ACTIVE) | B(FAILED) | B(CANCELLING),
    [LIVEMIG_STATUS_ACTIVE] = B(PRE_SWITCHOVER) | B(DEVICE) | B(COMPLETED) |
                              B(FAILED) | B(CANCELLING) | B(CHECKPOINTING) |
                              B(POSTCOPY_ACTIVE),
    [LIVEMIG_STATUS_POSTCOPY_ACTIVE] = B(COMPLETED) | B(FAILED) |
                                       B(CANCELLING) | B(POSTCOPY_PAUSED),
    [LIVEMIG_STATUS_POSTCOPY_PAUSED] = B(POSTCOPY_RECOVER) | B(FAILED) |
                                       B(CANCELLING),
    [LIVEMIG_STATUS_POSTCOPY_RECOVER] = B(POSTCOPY_ACTIVE) |
                                        B(POSTCOPY_PAUSED) | B(FAILED) |
                                        B(CANCELLING),
    [LIVEMIG_STATUS_PRE_SWITCHOVER] = B(DEVICE) | B(FAILED) | B(CANCELLING),
    [LIVEMIG_STATUS_DEVICE] = B(COMPLETED) | B(FAILED) | B(CANCELLING) |
                              B(CHECKPOINTING),
    [LIVEMIG_STATUS_CHECKPOINTING] = B(COMPLETED) | B(FAILED) |
                                     B(CANCELLING),
    [LIVEMIG_STATUS_CANCELLING] = B(CANCELLED) | B(FAILED) | B(COMPLETED),
    /* A finished migration may be followed by a new one. */
    [LIVEMIG_STATUS_COMPLETED] = B(SETUP) | B(ACTIVE),
    /* ... or a backup that stood down be made to take over. */
    [LIVEMIG_STATUS_FAILED] = B(SETUP) | B(ACTIVE) | B(COMPLETED),
    [LIVEMIG_STATUS_CANCELLED] = B(SETUP) | B(ACTIVE),
};
#undef B

static bool is_active(livemig_status s)
{
    return s != LIVEMIG_STATUS_NONE && s != LIVEMIG_STATUS_COMPLETED &&
           s != LIVEMIG_STATUS_FAILED && s != LIVEMIG_STATUS_CANCELLED;
}

bool lm_set_status_locked(livemig *lm, livemig_status from, livemig_status to)
{
    if (from != LIVEMIG_STATUS__MAX && lm->status != from)
        return false;
    if (!(edges[lm->status] & (1u << to)))
        return false;
    lm->status = to;
    lm_tunables_set_active(lm->tun, is_active(to), livemig_status_name(to));
    if (to == LIVEMIG_STATUS_COMPLETED || to == LIVEMIG_STATUS_FAILED ||
        to == LIVEMIG_STATUS_CANCELLED)
        lm->stats.end_ms = lm_now_ms();
    log_status(lm, to);
    pthread_cond_broadcast(&lm->cond);
    struct lm_params p;
    lm_tunables_snapshot(lm->tun, &p);
    if (p.cap_events) {
        json_object *d = json_object_new_object();
        json_object_object_add(d, "status",
                               json_object_new_string(livemig_status_name(to)));
        /* Emitting under the lock keeps events in status order; the
         * monitor's event function only queues. */
        lm_emit(lm, "MIGRATION", d);
    }
    return true;
}

void lm_set_status(livemig *lm, livemig_status to)
{
    pthread_mutex_lock(&lm->lock);
    lm_set_status_locked(lm, LIVEMIG_STATUS__MAX, to);
    pthread_mutex_unlock(&lm->lock);
}

void lm_set_error(livemig *lm, const char *desc)
{
    pthread_mutex_lock(&lm->lock);
    if (!lm->error_desc[0])
        snprintf(lm->error_desc, sizeof(lm->error_desc), "%s", desc);
    pthread_mutex_unlock(&lm->lock);
}

bool lm_cancelled(livemig *lm) { return atomic_load(&lm->cancel); }

bool lm_commit(livemig *lm)
{
    pthread_mutex_lock(&lm->lock);
    bool ok = !lm_cancelled(lm);
    if (ok)
        lm->committed = true;
    pthread_mutex_unlock(&lm->lock);
    return ok;
}

lm_section *lm_find_section(livemig *lm, const char *name)
{
    for (size_t i = 0; i < lm->nsections; i++)
        if (strcmp(lm->sections[i].name, name) == 0)
            return &lm->sections[i];
    return NULL;
}

void lm_mc_note_checkpoint(livemig *lm, const char *role, uint64_t epoch)
{
    pthread_mutex_lock(&lm->lock);
    bool first = lm_set_status_locked(lm, LIVEMIG_STATUS_ACTIVE,
                                      LIVEMIG_STATUS_CHECKPOINTING);
    pthread_mutex_unlock(&lm->lock);
    if (first) {
        json_object *d = json_object_new_object();
        json_object_object_add(d, "role", json_object_new_string(role));
        json_object_object_add(d, "epoch", json_object_new_uint64(epoch));
        lm_emit(lm, "MC_CHECKPOINTING", d);
    }
}

livemig_status livemig_get_status(livemig *lm)
{
    pthread_mutex_lock(&lm->lock);
    livemig_status s = lm->status;
    pthread_mutex_unlock(&lm->lock);
    return s;
}

/* ---- start / cancel ---------------------------------------------------- */

static bool start_thread(livemig *lm, bool incoming, livemig_error *err)
{
    lm->incoming = incoming;
    atomic_store(&lm->cancel, false);
    lm->kicked = false;
    lm->continue_requested = false;
    lm->mc_failover = false;
    lm->committed = false;
    lm->postcopy_requested = false;
    lm->pc_resume = false;
    memset(&lm->mc, 0, sizeof(lm->mc));
    lm->error_desc[0] = '\0';
    json_object_put(lm->stats.multifd);
    memset(&lm->stats, 0, sizeof(lm->stats));
    lm->stats.start_ms = lm_now_ms();
    for (size_t i = 0; i < lm->nram; i++)
        lm->stats.total += lm->ram[i]->size;
    if (!lm_set_status_locked(lm, LIVEMIG_STATUS__MAX, LIVEMIG_STATUS_SETUP)) {
        livemig_error_set(err, "cannot start a migration in status '%s'",
                          livemig_status_name(lm->status));
        return false;
    }
    int rc = pthread_create(&lm->thread, NULL,
                            incoming ? lm_incoming_thread : lm_outgoing_thread,
                            lm);
    if (rc != 0) {
        livemig_error_set(err, "cannot start the migration thread: %s",
                          strerror(rc));
        snprintf(lm->error_desc, sizeof(lm->error_desc), "%s", err ? err->desc : "thread");
        lm_set_status_locked(lm, LIVEMIG_STATUS__MAX, LIVEMIG_STATUS_FAILED);
        return false;
    }
    lm->thread_joinable = true;
    return true;
}

static bool can_start(livemig *lm, const char *what, livemig_error *err)
{
    if (is_active(lm->status)) {
        livemig_error_set(err, "a migration is already in progress (status "
                          "'%s'); wait for it to end or migrate_cancel it",
                          livemig_status_name(lm->status));
        return false;
    }
    if (lm->nram == 0) {
        livemig_error_set(err, "there is no guest RAM to %s; start livemigd "
                          "with --guest", what);
        return false;
    }
    return true;
}

/* Reap the previous migration's thread, but only once it has ended: a
 * start while one runs is refused at once, never waits. */
static bool reap_previous(livemig *lm, const char *what, livemig_error *err)
{
    pthread_mutex_lock(&lm->lock);
    bool ok = can_start(lm, what, err);
    pthread_mutex_unlock(&lm->lock);
    if (ok)
        join_thread(lm);   /* it published its final status: exits now */
    return ok;
}

bool livemig_migrate(livemig *lm, const char *uri, livemig_error *err)
{
    if (!reap_previous(lm, "migrate", err))
        return false;
    struct lm_params p;
    lm_tunables_snapshot(lm->tun, &p);
    bool sock = strncmp(uri, "tcp:", 4) == 0 || strncmp(uri, "unix:", 5) == 0;
    if (p.cap_multifd && !sock) {
        livemig_error_set(err, "multifd needs a tcp: or unix: URI, not "
                          "'%s'; turn the multifd capability off for it", uri);
        return false;
    }
    if (p.cap_multifd && p.cap_micro_checkpointing) {
        livemig_error_set(err, "micro-checkpointing does not use multifd; "
                          "turn one of the two capabilities off");
        return false;
    }
    if (!lm_pc_check_migrate(&p, uri, err))
        return false;
    if (strlen(uri) >= sizeof(lm->uri)) {
        livemig_error_set(err, "migration URI is longer than %zu bytes",
                          sizeof(lm->uri) - 1);
        return false;
    }
    if (!lm_transport_check(uri, err) ||
        !lm_secure_check(lm, uri, false, err))
        return false;
    /* The migration thread connects: a peer that takes its time (a TCP
     * handshake, a FIFO without a reader) never holds the monitor, and a
     * cancel ends the wait. */
    pthread_mutex_lock(&lm->lock);
    bool ok = can_start(lm, "migrate", err);
    if (ok && lm->runstate == LIVEMIG_RUN_INMIGRATE) {
        livemig_error_set(err, "this guest waits for an incoming migration; "
                          "it cannot be migrated out");
        ok = false;
    }
    if (ok) {
        snprintf(lm->uri, sizeof(lm->uri), "%s", uri);
        ok = start_thread(lm, false, err);
    }
    pthread_mutex_unlock(&lm->lock);
    return ok;
}

/* A listener that other hosts can reach, without TLS, takes a guest's
 * memory and state from anyone who connects: say so (livemigd warns). */
static void note_exposure(livemig *lm)
{
    struct lm_params p;
    lm_tunables_snapshot(lm->tun, &p);
    lm->incoming_warning[0] = '\0';
    struct sockaddr_storage ss;
    socklen_t len = sizeof(ss);
    if (p.tls_creds[0] || lm->listener.fd < 0 ||
        getsockname(lm->listener.fd, (struct sockaddr *)&ss, &len) != 0)
        return;
    char host[INET6_ADDRSTRLEN] = "";
    unsigned port = 0;
    if (ss.ss_family == AF_INET) {
        struct sockaddr_in *a = (struct sockaddr_in *)&ss;
        if ((ntohl(a->sin_addr.s_addr) >> 24) == 127)
            return;
        inet_ntop(AF_INET, &a->sin_addr, host, sizeof(host));
        port = ntohs(a->sin_port);
    } else if (ss.ss_family == AF_INET6) {
        struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;
        if (IN6_IS_ADDR_LOOPBACK(&a->sin6_addr) ||
            (IN6_IS_ADDR_V4MAPPED(&a->sin6_addr) &&
             a->sin6_addr.s6_addr[12] == 127))
            return;
        inet_ntop(AF_INET6, &a->sin6_addr, host, sizeof(host));
        port = ntohs(a->sin6_port);
    } else {
        return;   /* unix: the socket file's mode decides who connects */
    }
    snprintf(lm->incoming_warning, sizeof(lm->incoming_warning),
             "listening for a migration on %s port %u without TLS: anyone "
             "who can reach it can replace this guest's memory and state; "
             "set tls-creds, or listen on 127.0.0.1 or a unix: socket",
             host, port);
}

void livemig_set_warning_cb(livemig *lm, livemig_warning_fn fn,
                            void *opaque)
{
    lm->warn_fn = fn;
    lm->warn_opaque = opaque;
}

bool livemig_incoming(livemig *lm, const char *uri, livemig_error *err)
{
    if (!reap_previous(lm, "receive", err))
        return false;
    pthread_mutex_lock(&lm->lock);
    bool ok = can_start(lm, "receive", err);
    if (ok && lm->runstate != LIVEMIG_RUN_INMIGRATE) {
        livemig_error_set(err, "the guest is not waiting for an incoming "
                          "migration; start livemigd with --incoming defer");
        ok = false;
    }
    if (ok) {
        /* RAM handed back after a failed attempt: populate it again now,
         * not page by page while the stream arrives. */
        for (size_t i = 0; i < lm->nram; i++)
            madvise(lm->ram[i]->host, lm->ram[i]->size, MADV_POPULATE_WRITE);
        lm_listener_close(&lm->listener);
        ok = lm_secure_check(lm, uri, true, err) &&
             lm_transport_listen(uri, &lm->listener, err);
        if (ok)
            note_exposure(lm);
        ok = ok && start_thread(lm, true, err);
        if (!ok)
            lm_listener_close(&lm->listener);
        else
            lm_log(lm, "waiting for an incoming migration on '%s'", uri);
    }
    char warning[sizeof(lm->incoming_warning)];
    snprintf(warning, sizeof(warning), "%s", ok ? lm->incoming_warning : "");
    pthread_mutex_unlock(&lm->lock);
    if (warning[0] && lm->warn_fn)
        lm->warn_fn(lm->warn_opaque, warning);
    return ok;
}

bool livemig_object_add(livemig *lm, struct json_object *args,
                        livemig_error *err)
{
    return lm_objects_add(lm->objects, args, err);
}

bool livemig_object_del(livemig *lm, const char *id, livemig_error *err)
{
    return lm_objects_del(lm->objects, id, err);
}

struct json_object *livemig_query_objects(livemig *lm)
{
    return lm_objects_query(lm->objects);
}

/* @force (the engine is being freed): cancel even past the point of no
 * return; the thread then ends without resuming anything it can't know
 * to be safe. */
static bool cancel(livemig *lm, bool force, livemig_error *err)
{
    pthread_mutex_lock(&lm->lock);
    bool active = is_active(lm->status) && lm->status != LIVEMIG_STATUS_CANCELLING;
    if (active && lm->committed && !force) {
        if (lm->status == LIVEMIG_STATUS_POSTCOPY_ACTIVE ||
            lm->status == LIVEMIG_STATUS_POSTCOPY_PAUSED ||
            lm->status == LIVEMIG_STATUS_POSTCOPY_RECOVER)
            livemig_error_set(err, "too late to cancel: postcopy has "
                              "started, the guest already runs on the "
                              "destination and needs the pages the source "
                              "holds; let it complete (a broken link "
                              "pauses it: recover with migrate-recover and "
                              "migrate resume=true)");
        else if (lm->incoming)
            livemig_error_set(err, "too late to cancel: this destination "
                              "has told the source it runs the guest; the "
                              "migration completes here");
        else
            livemig_error_set(err, "too late to cancel: the end of the "
                              "migration stream has been sent, so the "
                              "destination may already run the guest; wait "
                              "for its answer (query-migrate)");
        pthread_mutex_unlock(&lm->lock);
        return false;
    }
    if (active) {
        atomic_store(&lm->cancel, true);
        lm_set_status_locked(lm, LIVEMIG_STATUS__MAX,
                             LIVEMIG_STATUS_CANCELLING);
        /* A checkpointing primary tells its backup to stand down (its
         * sends are bounded by a timeout).  A destination only stops
         * reading: it still tells the source it will not run the guest,
         * so a source past its point of no return can resume its own.
         * Anything else is cut now. */
        if (lm->incoming && !lm->mc.active)
            lm_conn_shutdown_read(&lm->conn);
        else if (lm->incoming || !lm->mc.active)
            lm_conn_shutdown(&lm->conn);
        if (lm->mf_send)
            lm_mf_send_shutdown(lm->mf_send);
        lm->kicked = true;
        pthread_cond_broadcast(&lm->cond);
    }
    pthread_mutex_unlock(&lm->lock);
    return true;   /* cancelling nothing is not an error (as in QEMU) */
}

bool livemig_cancel(livemig *lm, livemig_error *err)
{
    return cancel(lm, false, err);
}

static void failover_refused(livemig *lm, const char *why)
{
    json_object *d = json_object_new_object();
    json_object_object_add(d, "epoch", json_object_new_uint64(lm->mc.epoch));
    json_object_object_add(d, "reason", json_object_new_string(why));
    lm_emit(lm, "MC_FAILOVER_REFUSED", d);
}

bool livemig_mc_failover(livemig *lm, livemig_error *err)
{
    pthread_mutex_lock(&lm->lock);
    /* A backup that just stood down publishes 'failed' in a moment. */
    while (lm->incoming && lm->mc.standby && is_active(lm->status))
        pthread_cond_wait(&lm->cond, &lm->lock);
    bool active = is_active(lm->status) && lm->mc.active;
    bool standby = lm->incoming && lm->mc.standby &&
                   lm->status == LIVEMIG_STATUS_FAILED;
    uint64_t epoch = lm->mc.epoch;
    if (standby) {
        /* A backup that stood down: the operator says the primary is
         * gone.  Its RAM still holds the last applied checkpoint. */
        lm->mc.standby = false;
        lm_set_status_locked(lm, LIVEMIG_STATUS_FAILED,
                             LIVEMIG_STATUS_COMPLETED);
        lm->error_desc[0] = '\0';
        pthread_mutex_unlock(&lm->lock);
        lm_mc_take_over(lm, epoch, "mc-failover");
        return true;
    }
    if (active && lm->mc_failover) {
        livemig_error_set(err, "mc-failover was already requested here; "
                          "wait for status '%s' to end (query-migrate)",
                          livemig_status_name(lm->status));
        failover_refused(lm, err->desc);
        active = false;
    } else if (active && lm->incoming && lm->mc.checkpoints == 0) {
        livemig_error_set(err, "mc-failover refused: this backup has not "
                          "applied a complete checkpoint yet, so it has "
                          "nothing consistent to run; wait for status "
                          "'checkpointing'");
        failover_refused(lm, err->desc);
        active = false;
    } else if (active) {
        lm->mc_failover = true;
        /* The backup's reader is cut so it takes over now; the primary's
         * thread notices the flag and tells the backup to stand down. */
        if (lm->incoming)
            lm_conn_shutdown(&lm->conn);
        lm->kicked = true;
        pthread_cond_broadcast(&lm->cond);
    } else {
        livemig_error_set(err, "no micro-checkpointing runs here (status "
                          "'%s'); mc-failover acts on a primary or backup "
                          "in status 'checkpointing', or on a backup that "
                          "stood down", livemig_status_name(lm->status));
    }
    pthread_mutex_unlock(&lm->lock);
    return active;
}

bool livemig_continue(livemig *lm, const char *state, livemig_error *err)
{
    pthread_mutex_lock(&lm->lock);
    bool ok = strcmp(state, livemig_status_name(lm->status)) == 0 &&
              lm->status == LIVEMIG_STATUS_PRE_SWITCHOVER;
    if (ok) {
        lm->continue_requested = true;
        pthread_cond_broadcast(&lm->cond);
    } else {
        livemig_error_set(err, "migrate-continue with state '%s' does not "
                          "match the migration status '%s'; it only "
                          "proceeds from 'pre-switchover'", state,
                          livemig_status_name(lm->status));
    }
    pthread_mutex_unlock(&lm->lock);
    return ok;
}
