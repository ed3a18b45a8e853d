/*
 * incoming.c - the destination thread: accept the connection, check the
 * header against the local RAM blocks, load records straight into guest
 * memory, load the state sections, confirm on the return path, and only
 * then resume the guest.  It runs on its own thread so the monitor keeps
 * answering during a load.  On any error the guest stays stopped, the
 * source is told why, the partly loaded RAM is handed back to the kernel,
 * and a new migrate-incoming may follow.
 */
#include <errno.h>
#include <json-c/json.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "common/buf.h"
#include "engine/engine-int.h"
#include "engine/multifd.h"
#include "engine/postcopy.h"
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
    (void)lm_conn_write_all(&lm->conn, b, 3 + n);
}

/* @partial: postcopy, pages are still to come (the loader must not
 * check its state against RAM). */
static bool load_section(livemig *lm, const lm_rec *rec, bool *loaded,
                         bool partial, livemig_error *err)
{
    lm_section *s = lm_find_section(lm, rec->name);
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
    livemig_cursor c = { rec->data, rec->len,
                         partial ? LIVEMIG_CURSOR_RAM_PARTIAL : 0 };
    if (!s->ops.load(s->opaque, rec->version, &c, err)) {
        livemig_error_set(err, "loading state section '%s' failed",
                          rec->name);
        return false;
    }
    loaded[s - lm->sections] = true;
    return true;
}

/* A guest resumed without one of its sections runs on state it never
 * received: every registered section must have loaded. */
static bool all_sections_loaded(livemig *lm, const bool *loaded,
                                livemig_error *err)
{
    size_t missing = 0, first = 0;
    for (size_t i = 0; i < lm->nsections; i++)
        if (!loaded[i] && !missing++)
            first = i;
    if (!missing)
        return true;
    if (missing == 1)
        livemig_error_set(err, "state section '%s' was not sent; the "
                          "migration stream is incomplete (cut short, or "
                          "not written by a livemig source): migrate again",
                          lm->sections[first].name);
    else
        livemig_error_set(err, "state section '%s' and %zu more were not "
                          "sent; the migration stream is incomplete (cut "
                          "short, or not written by a livemig source): "
                          "migrate again", lm->sections[first].name,
                          missing - 1);
    return false;
}

/* Connections of this incoming migration: the main one, and the multifd
 * channels it announces (in any order; each says who it is in its hello). */
typedef struct conns {
    lm_reader *main;
    lm_mf_recv *mf;
    lm_conn stash_c[LM_MF_MAX];
    lm_reader *stash_r[LM_MF_MAX];
    unsigned nstash;
} conns;

/* exec: the command's end says more than a closed pipe: put it first in
 * @err when it failed. */
static void explain_command(lm_conn *c, livemig_error *err)
{
    char how[128];
    if (c->child <= 0 || !lm_conn_wait_exit(c, 500, NULL) ||
        (c->exit_code == 0 && !c->exit_signal))
        return;
    lm_conn_describe_exit(c, how, sizeof(how));
    livemig_error e = { 0 };
    livemig_error_set(&e, "the exec: command %s: %s", how, err->desc);
    *err = e;
}

static lm_reader *hello(livemig *lm, lm_conn *c, livemig_error *err)
{
    lm_reader *r = malloc(sizeof(*r));
    if (!r || !lm_reader_init_conn(r, c, err)) {
        free(r);
        livemig_error_set(err, "out of memory for the stream reader");
        return NULL;
    }
    r->from_file = c->is_file;
    r->cancel = &lm->cancel;
    /* A peer that connects and says nothing must not hold us forever. */
    r->timeout_ms = 10000;
    if (!lm_rd_header(r, err)) {
        lm_reader_destroy(r);
        free(r);
        return NULL;
    }
    r->timeout_ms = 0;
    return r;
}

/* Match @r's blocks against this engine's RAM blocks (bind them). */
static bool bind_local(livemig *lm, lm_reader *r, livemig_error *err)
{
    lm_stream_block local[LM_STREAM_MAX_BLOCKS];
    for (size_t i = 0; i < lm->nram; i++) {
        snprintf(local[i].name, sizeof(local[i].name), "%s", lm->ram[i]->name);
        local[i].size = lm->ram[i]->size;
        local[i].host = lm->ram[i]->host;
    }
    return lm_rd_bind(r, local, (uint32_t)lm->nram, err);
}

static bool add_channel(livemig *lm, conns *cs, lm_conn c, lm_reader *r,
                        livemig_error *err)
{
    if (!bind_local(lm, r, err) || !lm_mf_recv_add(cs->mf, c, r, err)) {
        lm_reader_destroy(r);
        free(r);
        lm_conn_close(&c);
        return false;
    }
    return true;
}

static bool accept_all(livemig *lm, conns *cs, livemig_error *err)
{
    uint64_t deadline = 0;
    for (;;) {
        if (lm_cancelled(lm)) {
            livemig_error_set(err, "cancelled");
            return false;
        }
        if (cs->main && (!cs->mf || lm_mf_recv_complete(cs->mf)))
            break;
        if (deadline && lm_now_ms() > deadline) {
            livemig_error_set(err, "not every multifd channel connected "
                              "within 10 s; check the source's "
                              "multifd-channels and the network");
            return false;
        }
        lm_conn c;
        int rc = lm_listener_accept(&lm->listener, 100, &c, err);
        if (rc < 0)
            return false;
        if (rc == 0)
            continue;
        if (!lm_secure_server(lm, &c, err)) {
            lm_conn_close(&c);
            return false;
        }
        lm_reader *r = hello(lm, &c, err);
        if (!r) {
            explain_command(&c, err);
            lm_conn_close(&c);
            return false;   /* garbage on the migration port fails it */
        }
        if (r->hdr.role != LM_ROLE_MAIN) {
            if (cs->mf) {
                if (!add_channel(lm, cs, c, r, err))
                    return false;
            } else if (cs->nstash < LM_MF_MAX) {
                cs->stash_c[cs->nstash] = c;
                cs->stash_r[cs->nstash++] = r;
            } else {
                lm_reader_destroy(r);
                free(r);
                lm_conn_close(&c);
            }
            continue;
        }
        if (cs->main) {
            livemig_error_set(err, "a second main connection arrived for "
                              "the same incoming migration");
            lm_reader_destroy(r);
            free(r);
            lm_conn_close(&c);
            return false;
        }
        cs->main = r;
        pthread_mutex_lock(&lm->lock);
        /* The destination's times count from the source's first bytes,
         * not from when it began to listen. */
        lm->stats.start_ms = lm_now_ms();
        lm->conn = c;
        lm_set_status_locked(lm, LIVEMIG_STATUS_SETUP, LIVEMIG_STATUS_ACTIVE);
        pthread_mutex_unlock(&lm->lock);
        unsigned n = r->hdr.index;
        if (n) {
            if (n > LM_MF_MAX) {
                livemig_error_set(err, "the source announces %u multifd "
                                  "channels, at most %u are supported", n,
                                  LM_MF_MAX);
                return false;
            }
            if (!(cs->mf = lm_mf_recv_new(lm, n, &r->hdr, err)))
                return false;
            lm_mf_recv_skip_zero(cs->mf, lm->ram_pristine);
            for (unsigned i = 0; i < cs->nstash; i++) {
                lm_conn sc = cs->stash_c[i];
                if (!add_channel(lm, cs, sc, cs->stash_r[i], err)) {
                    cs->stash_r[i] = NULL;
                    return false;
                }
                cs->stash_r[i] = NULL;
            }
            cs->nstash = 0;
            deadline = lm_now_ms() + 10000;
        }
    }
    /* With postcopy-preempt the source connects one more channel at its
     * postcopy switch: postcopy takes the listener over (lm_pc_dst_new). */
    if (!cs->main->hdr.pc_preempt) {
        pthread_mutex_lock(&lm->lock);
        lm_listener_close(&lm->listener);
        pthread_mutex_unlock(&lm->lock);
    }
    return true;
}

static void conns_free(conns *cs)
{
    for (unsigned i = 0; i < cs->nstash; i++) {
        if (cs->stash_r[i]) {
            lm_reader_destroy(cs->stash_r[i]);
            free(cs->stash_r[i]);
            lm_conn_close(&cs->stash_c[i]);
        }
    }
    lm_mf_recv_stop(cs->mf);
    if (cs->main) {
        lm_reader_destroy(cs->main);
        free(cs->main);
    }
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

static bool load(livemig *lm, conns *cs, livemig_error *err)
{
    if (!accept_all(lm, cs, err))
        return false;
    lm_reader *r = cs->main;
    bool ok = bind_local(lm, r, err);
    /* Populated, never-written RAM is zero: zero runs of the first pass
     * need no stores. */
    r->skip_zero = lm->ram_pristine;
    lm->ram_pristine = false;

    uint64_t normal = 0, dup = 0, pass = 0, load_t0 = 0, n = 0;
    bool mc = false, pages_done = false, paused = false, first = true;
    bool *loaded = calloc(lm->nsections + 1, sizeof(bool));
    if (!loaded) {
        livemig_error_set(err, "out of memory");
        ok = false;
    }
    struct lm_params p;
    lm_tunables_snapshot(lm->tun, &p);
    lm_pc_dst *pc = NULL;
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
        if (first && p.cap_postcopy_ram && rec.type != LM_REC_PC_ADVISE) {
            livemig_error_set(err, "this destination has capability "
                              "'postcopy-ram' on and the source has it off; "
                              "set it the same on both sides");
            ok = false;
            break;
        }
        first = false;
        if (rec.type == LM_REC_PC_ADVISE) {
            ok = !pc && (pc = lm_pc_dst_new(lm, &r->hdr, err)) != NULL;
            continue;
        }
        if (rec.type == LM_REC_PC_DISCARD) {
            if (!pc)
                livemig_error_set(err, "a postcopy record arrived without "
                                  "postcopy being advised; the stream is "
                                  "corrupt");
            ok = pc && lm_pc_dst_discard(pc, &rec, err);
            continue;
        }
        if (rec.type == LM_REC_PC_RUN) {
            if (!pc || lm_pc_dst_running(pc)) {
                livemig_error_set(err, "an unexpected postcopy start record; "
                                  "the stream is corrupt");
                ok = false;
                break;
            }
            if (!load_t0)
                load_t0 = lm_now_us();
            if (!(ok = all_sections_loaded(lm, loaded, err)))
                break;
            /* The guest runs here from now on: a cancel is refused (one
             * that came first wins: the source then hears ERROR and
             * resumes its own).  Committed before postcopy-active shows. */
            if (!(ok = lm_commit(lm))) {
                livemig_error_set(err, "cancelled");
                break;
            }
            if (!(ok = lm_pc_dst_start(pc, r, err)))
                break;
            lm_guest_cont(lm);
            lm_pc_dst_resumed(pc, lm_now_us() - load_t0);
            publish(lm, r, normal, dup, pass);
            ok = lm_pc_dst_stream(pc, r, err);
            break;
        }
        bool ram = rec.type == LM_REC_RAM_RAW ||
                   rec.type == LM_REC_RAM_XBZRLE ||
                   rec.type == LM_REC_RAM_ZERO;
        if ((rec.type == LM_REC_SECTION || rec.type == LM_REC_END_STREAM ||
             rec.type == LM_REC_MC_START) && !pages_done && !pc) {
            /* State and resume only once every channel landed its pages
             * up to the last sync point, the channels are closed (no page
             * lands later) and every page arrived at least once. */
            if (cs->mf) {
                if (!(ok = lm_mf_recv_wait(cs->mf, pass, err)))
                    break;
                lm_mf_recv_finish(cs->mf, r);
            }
            if (!(ok = lm_rd_all_received(r, err)))
                break;
            pages_done = true;
        } else if (ram && pages_done) {
            /* The sections were checked against RAM as it was. */
            livemig_error_set(err, "a RAM record follows the state sections "
                              "in the migration stream; the stream is "
                              "corrupt or not from a livemig source");
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
            ok = load_section(lm, &rec, loaded, pc != NULL, err);
        } else if (rec.type == LM_REC_RUNSTATE) {
            paused = true;
        } else if (rec.type == LM_REC_END_STREAM) {
            ok = all_sections_loaded(lm, loaded, err);
            break;
        } else if (rec.type == LM_REC_MC_START && !cs->mf) {
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
        uint64_t now = lm_now_us();
        if (now - n >= 50000) {   /* progress for query-migrate */
            n = now;
            publish(lm, r, normal, dup, pass);
        }
    }
    free(loaded);
    if (lm_pc_dst_running(pc)) {
        /* The guest runs here already: a broken stream cannot fail back
         * to the source; wait for a recovery instead. */
        lm_reader *nr;
        while (!ok && !lm_cancelled(lm) && (nr = lm_pc_dst_recover(pc, err)))
            ok = lm_pc_dst_stream(pc, nr, err);
        lm_pc_dst_free(pc);
        return ok;
    }
    publish(lm, r, normal, dup, pass);
    lm_pc_dst_free(pc);
    if (!ok || mc)
        return ok;   /* a backup that took over already runs the guest */

    if (!load_t0)
        load_t0 = lm_now_us();
    uint64_t load_us = lm_now_us() - load_t0;
    /* The point of no return on this side (docs/cancel.md): the guest
     * runs here only once the source has been told so, so the source
     * never has to guess. */
    if (!lm_commit(lm)) {
        livemig_error_set(err, "cancelled");
        return false;
    }
    if (lm->conn.return_path) {
        uint8_t b[9];
        b[0] = LM_RP_RESUMED;
        lm_put_be64(b + 1, load_us);
        if (!lm_conn_write_all(&lm->conn, b, sizeof(b))) {
            livemig_error_set(err, "cannot confirm to the source that the "
                              "guest runs here (%s), so it stays stopped "
                              "here; the source keeps its copy stopped "
                              "too: check both and 'cont' one of them",
                              strerror(errno));
            return false;
        }
    }
    if (paused) {
        /* Stopped on the source, stopped here: 'cont' starts it. */
        pthread_mutex_lock(&lm->lock);
        lm->runstate = LIVEMIG_RUN_PAUSED;
        pthread_mutex_unlock(&lm->lock);
    } else {
        lm_guest_cont(lm);
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
    conns cs = { 0 };
    bool ok = load(lm, &cs, &err);
    if (cs.mf && !ok)
        lm_mf_recv_shutdown(cs.mf);
    if (!ok && !lm_cancelled(lm)) {
        pthread_mutex_lock(&lm->lock);
        lm_conn c = lm->conn;
        pthread_mutex_unlock(&lm->lock);
        explain_command(&c, &err);
    }
    if (!ok && lm_cancelled(lm)) {
        /* Say so: a source past its point of no return then knows the
         * guest does not run here and resumes its own. */
        reply_error(lm, "the migration was cancelled on the destination; "
                        "it will not run the guest");
    } else if (!ok) {
        reply_error(lm, err.desc);
        lm_set_error(lm, err.desc);
    }
    conns_free(&cs);
    pthread_mutex_lock(&lm->lock);
    lm_conn conn = lm->conn;
    lm->conn = (lm_conn)LM_CONN_INIT;
    lm_listener_close(&lm->listener);
    pthread_mutex_unlock(&lm->lock);
    lm_conn_close(&conn);   /* outside the lock: an exec: may take 0.5 s */
    pthread_mutex_lock(&lm->lock);
    bool standby = lm->mc.standby;
    pthread_mutex_unlock(&lm->lock);
    if (!ok && !standby) {
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
