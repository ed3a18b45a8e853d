/* query.c - the QMP query-migrate value, QEMU's fields plus livemig's
 * downtime breakdown and convergence verdict. */
#include <json-c/json.h>
#include <string.h>

#include "engine/engine-int.h"

static void add_u64(json_object *o, const char *k, uint64_t v)
{
    json_object_object_add(o, k, json_object_new_uint64(v));
}

/* The verdict and the figures behind it: query-migrate's "convergence"
 * and the MIGRATION_CONVERGENCE event share them. */
static void add_verdict(json_object *c, const lm_stats *st)
{
    const lm_verdict *v = &st->verdict;
    json_object_object_add(c, "verdict", json_object_new_string(
        lm_verdict_name(v->passes ? v->kind : LM_VERDICT_CONVERGING)));
    if (v->passes)
        json_object_object_add(c, "reason", json_object_new_string(v->reason));
    add_u64(c, "pass", st->dirty_sync_count);
    add_u64(c, "expected-downtime", st->expected_downtime_ms);
    add_u64(c, "dirty-bytes-rate", st->dirty_pages_rate * LM_PAGE_SIZE);
    add_u64(c, "bandwidth", st->bandwidth);
    if (v->shrink > 0)
        json_object_object_add(c, "shrink-per-pass",
                               json_object_new_double(v->shrink));
}

json_object *lm_verdict_event(const lm_stats *st)
{
    json_object *d = json_object_new_object();
    add_verdict(d, st);
    return d;
}

json_object *livemig_query_migrate(livemig *lm)
{
    json_object *o = json_object_new_object();
    pthread_mutex_lock(&lm->lock);
    lm_stats st = lm->stats;
    livemig_status status = lm->status;
    char err[sizeof(lm->error_desc)];
    memcpy(err, lm->error_desc, sizeof(err));
    bool incoming = lm->incoming;
    lm_mc_stats mc = lm->mc;
    json_object *multifd = json_object_get(lm->stats.multifd);
    pthread_mutex_unlock(&lm->lock);
    pthread_mutex_lock(&lm->out_lock);
    uint64_t held = lm->out_held, released = lm->out_released;
    uint64_t discarded = lm->out_discarded;
    json_object *commit = mc.checkpoints || mc.active
                              ? lm_hist_json(&lm->out_commit_us) : NULL;
    pthread_mutex_unlock(&lm->out_lock);

    json_object_object_add(o, "status",
                           json_object_new_string(livemig_status_name(status)));
    if (status == LIVEMIG_STATUS_NONE) {
        json_object_put(multifd);
        json_object_put(commit);
        return o;
    }
    bool done = status == LIVEMIG_STATUS_COMPLETED ||
                status == LIVEMIG_STATUS_FAILED ||
                status == LIVEMIG_STATUS_CANCELLED;
    uint64_t end = st.end_ms ? st.end_ms : lm_now_ms();
    /* A listening destination has no migration to time yet. */
    if (!(incoming && status == LIVEMIG_STATUS_SETUP)) {
        add_u64(o, "total-time", end - st.start_ms);
        add_u64(o, "setup-time", st.setup_ms);
    }
    if (!incoming && !done)
        add_u64(o, "expected-downtime", st.expected_downtime_ms);
    if (status == LIVEMIG_STATUS_COMPLETED && !incoming)
        add_u64(o, "downtime", st.downtime_ms);

    if (!incoming && !done)
        add_u64(o, "cpu-throttle-percentage", st.cpu_throttle);
    if (!incoming) {
        /* Bytes of pages sent of those sent plus those still to send: it
         * never starts over at a pass, and only falls back when a pass
         * finds more dirtied than was left. */
        double sent = (double)st.sent_pages * LM_PAGE_SIZE;
        double pct = status == LIVEMIG_STATUS_COMPLETED ? 100.0
                     : sent + (double)st.remaining > 0
                         ? 100.0 * sent / (sent + (double)st.remaining)
                         : 0.0;
        json_object_object_add(o, "progress-percent",
                               json_object_new_double(
                                   (double)(int64_t)(pct * 10) / 10));
    }

    json_object *ram = json_object_new_object();
    add_u64(ram, "transferred", st.transferred);
    add_u64(ram, "remaining", st.remaining);
    add_u64(ram, "total", st.total);
    add_u64(ram, "duplicate", st.duplicate);
    add_u64(ram, "normal", st.normal);
    add_u64(ram, "normal-bytes", st.normal * LM_PAGE_SIZE);
    add_u64(ram, "dirty-pages-rate", st.dirty_pages_rate);
    json_object_object_add(ram, "mbps",
                           json_object_new_double((double)st.bandwidth * 8 / 1e6));
    add_u64(ram, "dirty-sync-count", st.dirty_sync_count);
    add_u64(ram, "precopy-bytes", st.precopy_bytes);
    add_u64(ram, "downtime-bytes", st.downtime_bytes);
    add_u64(ram, "postcopy-bytes", st.pc.bytes);
    if (st.pc.on) {
        add_u64(ram, "postcopy-requests", st.pc.requests);
        add_u64(ram, "postcopy-preempt-pages", st.pc.preempt_pages);
    }
    add_u64(ram, "pages-per-second", st.pages_per_second);
    add_u64(ram, "page-size", LM_PAGE_SIZE);
    json_object_object_add(o, "ram", ram);

    if (multifd) {
        json_object *m = json_object_new_object();
        uint64_t bytes = 0;
        double raw = 0;
        for (size_t i = 0; i < json_object_array_length(multifd); i++) {
            json_object *c = json_object_array_get_idx(multifd, i);
            uint64_t b = json_object_get_uint64(json_object_object_get(c, "bytes"));
            bytes += b;
            raw += json_object_get_double(
                       json_object_object_get(c, "compression-ratio")) * (double)b;
        }
        add_u64(m, "bytes", bytes);
        json_object_object_add(m, "compression-ratio",
                               json_object_new_double(bytes ? raw / (double)bytes : 0));
        json_object_object_add(m, "channels", multifd);
        json_object_object_add(o, "multifd", m);
    }
    if (st.xbzrle_on) {
        json_object *x = json_object_new_object();
        add_u64(x, "cache-size", st.xbzrle.cache_size);
        add_u64(x, "bytes", st.xbzrle.bytes);
        add_u64(x, "pages", st.xbzrle.pages);
        add_u64(x, "cache-miss", st.xbzrle.misses);
        json_object_object_add(x, "cache-miss-rate",
                               json_object_new_double(st.xbzrle.miss_rate));
        json_object_object_add(x, "encoding-rate",
                               json_object_new_double(st.xbzrle.encoding_rate));
        add_u64(x, "overflow", st.xbzrle.overflow);
        json_object_object_add(o, "xbzrle-cache", x);
    }
    if (!incoming) {
        json_object *c = json_object_new_object();
        add_verdict(c, &st);
        json_object_object_add(c, "bandwidth-source", json_object_new_string(
            st.bandwidth_source ? "avail-switchover-bandwidth" : "measured"));
        json_object_object_add(c, "would-switchover",
                               json_object_new_boolean(st.converged));
        json_object_object_add(c, "held", json_object_new_boolean(
                                   st.held && !done));
        json_object_object_add(o, "convergence", c);
    }
    if (status == LIVEMIG_STATUS_COMPLETED) {
        json_object *d = json_object_new_object();
        if (!incoming) {
            add_u64(d, "stop-us", st.dt.stop_us);
            add_u64(d, "final-sync-us", st.dt.sync_us);
            add_u64(d, "final-send-us", st.dt.send_us);
        }
        add_u64(d, "destination-load-us", st.dt.load_us);
        if (!incoming)
            add_u64(d, "resume-confirm-us", st.dt.confirm_us);
        json_object_object_add(o, "downtime-breakdown", d);
    }
    if (mc.checkpoints || mc.active) {
        json_object *m = json_object_new_object();
        json_object_object_add(m, "role", json_object_new_string(
            incoming ? "backup" : "primary"));
        add_u64(m, "checkpoints", mc.checkpoints);
        add_u64(m, "epoch", mc.epoch);
        uint64_t n = mc.checkpoints ? mc.checkpoints : 1;
        if (!incoming) {
            add_u64(m, "pause-last-us", mc.pause_last_us);
            add_u64(m, "pause-avg-us", mc.pause_total_us / n);
            add_u64(m, "pause-max-us", mc.pause_max_us);
            add_u64(m, "pages-avg", mc.pages_total / n);
            add_u64(m, "paused-pages-avg", mc.paused_pages_total / n);
            add_u64(m, "paused-pages-last", mc.paused_pages_last);
            add_u64(m, "outputs-held", held);
            add_u64(m, "outputs-released", released);
            add_u64(m, "outputs-discarded", discarded);
            json_object_object_add(m, "falling-behind",
                                   json_object_new_boolean(mc.falling_behind));
            add_u64(m, "epoch-ms", mc.epoch_ms);
            add_u64(m, "link-bytes-per-epoch", mc.link_bytes);
            add_u64(m, "throttle-percentage", st.cpu_throttle);
            add_u64(m, "shadow-bytes", mc.shadow_bytes);
            add_u64(m, "shadow-peak-bytes", mc.shadow_peak_bytes);
            json_object_object_add(m, "pause-us", lm_hist_json(&mc.pause_us));
            json_object *parts = json_object_new_object();
            static const char *const part[] = { "stop", "sync", "copy",
                                                "sections", "cont" };
            json_object *worst = json_object_new_object();
            for (int i = 0; i < 5; i++) {
                add_u64(parts, part[i], mc.pause_parts_us[i]);
                add_u64(worst, part[i], mc.pause_max_parts_us[i]);
            }
            add_u64(worst, "pages", mc.pause_max_pages);
            add_u64(worst, "epoch", mc.pause_max_epoch);
            json_object_object_add(m, "pause-parts-us", parts);
            json_object_object_add(m, "pause-max-parts-us", worst);
            json_object_object_add(m, "commit-us", json_object_get(commit));
        }
        json_object_object_add(m, "checkpoint-bytes", lm_hist_json(&mc.bytes));
        json_object_object_add(m, "ack-us", lm_hist_json(&mc.ack_us));
        add_u64(m, "checkpoint-bytes-last", mc.bytes_last);
        add_u64(m, "checkpoint-bytes-avg", mc.bytes_total / n);
        add_u64(m, incoming ? "apply-last-us" : "ack-latency-last-us",
                mc.ack_last_us);
        add_u64(m, incoming ? "apply-avg-us" : "ack-latency-avg-us",
                mc.ack_total_us / n);
        if (mc.failover_epoch) {
            add_u64(m, "failover-epoch", mc.failover_epoch);
            json_object_object_add(m, "failover-reason",
                                   json_object_new_string(mc.failover_reason));
        }
        json_object_object_add(o, "mc", m);
    }
    if (st.pc.on && incoming) {
        /* QEMU 10.1's names: blocktime in ms, average latency in ns, and
         * a log2 histogram of request latencies (bucket N: [2^N, 2^(N+1))
         * microseconds). */
        add_u64(o, "postcopy-blocktime", st.pc.blocktime_us / 1000);
        add_u64(o, "postcopy-latency", st.pc.faults
                    ? st.pc.latency_us_total * 1000 / st.pc.faults : 0);
        json_object *dist = json_object_new_array();
        for (unsigned k = 0; k < LM_PC_LAT_BUCKETS; k++)
            json_object_array_add(dist,
                json_object_new_uint64(st.pc.latency_dist[k]));
        json_object_object_add(o, "postcopy-latency-dist", dist);
        /* livemig's own: percentiles of the same latencies from a finer
         * histogram (within 6.25 %), which log2 buckets cannot give. */
        json_object_object_add(o, "postcopy-latency-us",
                               lm_lat_hist_json(&st.pc.latency_fine));
    }
    json_object_put(commit);
    if (err[0])
        json_object_object_add(o, "error-desc", json_object_new_string(err));
    return o;
}
