/*
 * incoming.c - the destination thread: accept the connection, check the
 * header against the local RAM blocks, load records straight into guest
 * memory, load the state sections, resume the guest, and confirm on the
 * return path.  It runs on its own thread so the monitor keeps answering
 * during a load.  On any error the guest stays stopped, the source is told
 * why, the partly loaded RAM is handed back to the kernel, and a new
 * migrate-incoming may follow.
 */
#include <json-c/json.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "common/buf.h"
#include "engine/engine-int.h"
#include "stream/stream.h"

static void reply_error(livemig *lm, const char *msg)
{
    if (!lm->conn.return_path || lm->conn.wfd < 0)
        return;
    size_t n = strlen(msg);
    if (n > 400)
        n = 400;
    uint8_t b[3 + 400];
    b[0] = LM_RP_ERROR;
    lm_put_be16(b + 1, (uint16_t)n);
    memcpy(b + 3, msg, n);
    (void)lm_write_all(lm->conn.wfd, b, 3 + n);
}

static lm_section *find_section(livemig *lm, const char *name)
{
    for (size_t i = 0; i < lm->nsections; i++)
        if (strcmp(lm->sections[i].name, name) == 0)
            return &lm->sections[i];
    return NULL;
}

static bool load_section(livemig *lm, const lm_rec *rec, livemig_error *err)
{
    lm_section *s = find_section(lm, rec->name);
    if (!s) {
        livemig_error_set(err, "the stream has state section '%s', which "
                          "this destination does not have; start both with "
                          "the same --guest", rec->name);
        return false;
    }
    if (rec->version > s->version) {
        livemig_error_set(err, "state section '%s' has version %u, newer "
                          "than this destination's %u; update the "
                          "destination", rec->name, rec->version, s->version);
        return false;
    }
    livemig_cursor c = { rec->data, rec->len };
    if (!s->ops.load(s->opaque, rec->version, &c, err)) {
        livemig_error_set(err, "loading state section '%s' failed",
                          rec->name);
        return false;
    }
    return true;
}

static bool wait_connection(livemig *lm, livemig_error *err)
{
    lm_conn c;
    for (;;) {
        if (lm_cancelled(lm)) {
            livemig_error_set(err, "cancelled");
            return false;
        }
        int rc = lm_listener_accept(&lm->listener, 100, &c, err);
        if (rc < 0)
            return false;
        if (rc == 1)
            break;
    }
    pthread_mutex_lock(&lm->lock);
    lm->conn = c;
    lm_listener_close(&lm->listener);
    lm_set_status_locked(lm, LIVEMIG_STATUS_SETUP, LIVEMIG_STATUS_ACTIVE);
    pthread_mutex_unlock(&lm->lock);
    return true;
}

static void publish(livemig *lm, const lm_reader *r, uint64_t normal,
                    uint64_t dup, uint64_t pass)
{
    pthread_mutex_lock(&lm->lock);
    lm->stats.transferred = r->total;
    lm->stats.normal = normal;
    lm->stats.duplicate = dup;
    lm->stats.dirty_sync_count = pass;
    uint64_t ms = lm_now_ms() - lm->stats.start_ms;
    if (ms)
        lm->stats.bandwidth = r->total * 1000u / ms;
    pthread_mutex_unlock(&lm->lock);
}

static bool load(livemig *lm, livemig_error *err)
{
    if (!wait_connection(lm, err))
        return false;
    lm_reader *r = malloc(sizeof(*r));
    if (!r || !lm_reader_init(r, lm->conn.rfd, err)) {
        free(r);
        livemig_error_set(err, "out of memory for the stream reader");
        return false;
    }
    lm_stream_block *local = calloc(lm->nram, sizeof(*local));
    bool ok = local && lm_rd_header(r, err);
    for (size_t i = 0; ok && i < lm->nram; i++) {
        snprintf(local[i].name, sizeof(local[i].name), "%s", lm->ram[i]->name);
        local[i].size = lm->ram[i]->size;
        local[i].host = lm->ram[i]->host;
    }
    ok = ok && lm_rd_bind(r, local, (uint32_t)lm->nram, err);
    free(local);
    /* Populated, never-written RAM is zero: zero runs of the first pass
     * need no stores. */
    r->skip_zero = lm->ram_pristine;
    lm->ram_pristine = false;

    uint64_t normal = 0, dup = 0, pass = 0, load_t0 = 0, n = 0;
    bool mc = false;
    lm_rec rec;
    while (ok) {
        if (lm_cancelled(lm)) {
            livemig_error_set(err, "cancelled");
            ok = false;
            break;
        }
        if (!lm_rd_record(r, &rec, err)) {
            ok = false;
            break;
        }
        if (rec.type == LM_REC_RAM_RAW || rec.type == LM_REC_RAM_XBZRLE)
            normal += rec.npages;
        else if (rec.type == LM_REC_RAM_ZERO)
            dup += rec.npages;
        else if (rec.type == LM_REC_END_PASS) {
            pass = rec.pass;
            r->skip_zero = false;
        } else if (rec.type == LM_REC_SECTION) {
            if (!load_t0)
                load_t0 = lm_now_us();
            ok = load_section(lm, &rec, err);
        } else if (rec.type == LM_REC_END_STREAM) {
            break;
        } else if (rec.type == LM_REC_MC_START) {
            publish(lm, r, normal, dup, pass);
            mc = true;
            ok = lm_mc_backup(lm, r, rec.heartbeat_ms, err);
            break;
        } else {
            livemig_error_set(err, "record type %d is not allowed in a "
                              "migration stream here", rec.type);
            ok = false;
            break;
        }
        if ((++n & 255) == 0)
            publish(lm, r, normal, dup, pass);
    }
    publish(lm, r, normal, dup, pass);
    lm_reader_destroy(r);
    free(r);
    if (!ok || mc)
        return ok;   /* a backup that took over already runs the guest */

    if (!load_t0)
        load_t0 = lm_now_us();
    lm_guest_cont(lm);
    uint64_t load_us = lm_now_us() - load_t0;
    if (lm->conn.return_path) {
        uint8_t b[9];
        b[0] = LM_RP_RESUMED;
        lm_put_be64(b + 1, load_us);
        /* The guest runs here now; a lost confirmation makes the source
         * fail and resume too (see docs/stream.md, "Split brain"). */
        (void)lm_write_all(lm->conn.wfd, b, sizeof(b));
    }
    pthread_mutex_lock(&lm->lock);
    lm->stats.dt.load_us = load_us;
    pthread_mutex_unlock(&lm->lock);
    return true;
}

void *lm_incoming_thread(void *arg)
{
    livemig *lm = arg;
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &set, NULL);

    livemig_error err = { 0 };
    bool ok = load(lm, &err);
    if (!ok && !lm_cancelled(lm)) {
        reply_error(lm, err.desc);
        lm_set_error(lm, err.desc);
    }
    pthread_mutex_lock(&lm->lock);
    lm_conn_close(&lm->conn);
    lm->conn = (lm_conn)LM_CONN_INIT;
    lm_listener_close(&lm->listener);
    pthread_mutex_unlock(&lm->lock);
    if (!ok) {
        /* Give the partly loaded RAM back; the next attempt starts from
         * zero pages, which is what "pristine" means. */
        for (size_t i = 0; i < lm->nram; i++)
            madvise(lm->ram[i]->host, lm->ram[i]->size, MADV_DONTNEED);
        lm->ram_pristine = true;
    }
    pthread_mutex_lock(&lm->lock);
    lm_set_status_locked(lm, LIVEMIG_STATUS__MAX,
                         ok ? LIVEMIG_STATUS_COMPLETED
                            : lm_cancelled(lm) ? LIVEMIG_STATUS_CANCELLED
                                               : LIVEMIG_STATUS_FAILED);
    pthread_mutex_unlock(&lm->lock);
    return NULL;
}
