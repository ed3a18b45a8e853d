/*
 * engine-int.h - the engine's own structures, shared by the engine's files
 * (engine.c: handle, status, guest; outgoing.c: migration thread;
 * incoming.c: destination thread; query.c: query-migrate).
 *
 * Thread model (see docs/threads.md):
 *  - "set before start": RAM blocks, sections, guest ops, event callback.
 *    Written only while no migration thread runs; read by every thread.
 *  - "lock": lm->lock protects status, runstate, stats, error_desc, the
 *    thread handle and the connection fds that cancel needs.
 *  - "migration thread": the pass state (send bitmaps, bandwidth meter,
 *    snapshot of the tunables) is owned by the one running thread.
 * A cancel sets lm->cancel, shuts the connection down so blocked I/O
 * returns, and signals lm->kick; the thread cleans up and only then
 * publishes "cancelled".
 */
#ifndef LM_ENGINE_INT_H
#define LM_ENGINE_INT_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <sys/types.h>

#include "livemig/livemig.h"
#include "codec/xbzrle-cache.h"
#include "engine/lat-hist.h"
#include "engine/mc-hist.h"
#include "engine/convergence.h"
#include "ram/tracker.h"
#include "transport/transport.h"
#include "tunables/tunables.h"

#define LM_PAGE_SIZE 4096u
#define LM_NAME_MAX 255u

struct livemig_ram {
    char name[LM_NAME_MAX + 1];
    uint8_t *host;
    size_t size;
    size_t pages;
    livemig_tracker_kind kind;   /* resolved, never AUTO */
    lm_tracker *tracker;
    uint64_t *dirty;             /* migration thread: pages still to send */
    size_t bitmap_words;
};

typedef struct lm_section {
    char name[LM_NAME_MAX + 1];
    uint32_t version;
    livemig_section_ops ops;
    void *opaque;
} lm_section;

/* Downtime breakdown of the last switchover, in microseconds. */
typedef struct lm_downtime {
    uint64_t stop_us, sync_us, send_us, load_us, confirm_us;
} lm_downtime;

/* Postcopy counters (QEMU 10.1's names in query-migrate). */
#define LM_PC_LAT_BUCKETS 24     /* bucket N: [2^N, 2^(N+1)) us */
typedef struct lm_pc_stats {
    bool on;                     /* this migration switched to postcopy */
    uint64_t requests;           /* pages asked for (dst) / served (src) */
    uint64_t preempt_pages;      /* sent (src) / placed (dst) on the
                                    postcopy-preempt channel */
    uint64_t preempt_bytes;      /* dst: received on that channel (in
                                    transferred, as on the source) */
    uint64_t bytes;              /* bytes sent / received after the switch */
    uint64_t faults;             /* requests answered (dst) */
    uint64_t blocktime_us;       /* guest threads waited for pages (dst) */
    uint64_t latency_us_total;   /* sum of request latencies (dst) */
    uint64_t latency_dist[LM_PC_LAT_BUCKETS];
    lm_lat_hist latency_fine;    /* the same latencies, finer (dst) */
} lm_pc_stats;

/* Counters shown by query-migrate; under lm->lock. */
typedef struct lm_stats {
    uint64_t start_ms;           /* CLOCK_MONOTONIC at migrate */
    uint64_t end_ms;             /* at completion/failure, 0 while running */
    uint64_t setup_ms;
    uint64_t transferred;        /* bytes on the wire */
    uint64_t remaining;          /* bytes of dirty pages left to send */
    uint64_t total;              /* bytes of guest RAM */
    uint64_t duplicate;          /* zero pages */
    uint64_t normal;             /* pages sent as data */
    uint64_t dirty_pages_rate;   /* pages/s dirtied, last pass */
    uint64_t bandwidth;          /* bytes/s, measured */
    uint64_t page_rate;          /* pages/s sent in any form, measured */
    uint64_t bandwidth_source;   /* 0 measured, 1 avail-switchover-bandwidth */
    uint64_t dirty_sync_count;
    uint64_t precopy_bytes, downtime_bytes;
    uint64_t pages_per_second;
    uint64_t expected_downtime_ms;
    uint64_t downtime_ms;
    uint64_t sent_pages;         /* pages sent in any form (progress) */
    bool held;                   /* switchover-hold keeps it from ending */
    bool converged;              /* the remainder fits downtime-limit now */
    lm_verdict verdict;          /* trend over the last passes */
    uint64_t cpu_throttle;       /* percent auto-converge applies now */
    bool xbzrle_on;
    lm_xbzrle_cache_stats xbzrle;
    struct json_object *multifd; /* per-channel stats (owned) */
    lm_downtime dt;
    lm_pc_stats pc;
} lm_stats;

/* A held output (output commit). */
typedef struct lm_output {
    struct lm_output *next;
    uint64_t epoch;              /* released when this epoch is acked */
    uint64_t submit_us;          /* when the guest submitted it */
    livemig_output_fn fn;
    void *opaque;
    size_t len;
    uint8_t data[];
} lm_output;

/* Micro-checkpointing counters; under lm->lock. */
typedef struct lm_mc_stats {
    bool active;
    uint64_t checkpoints;        /* acked (primary) / applied (backup) */
    uint64_t epoch;
    uint64_t pause_last_us, pause_max_us, pause_total_us;
    uint64_t bytes_total, bytes_last;
    uint64_t ack_last_us, ack_total_us;
    uint64_t pages_total;        /* captured, while running or paused */
    uint64_t shadow_bytes;       /* primary: checkpoint pool and maps now */
    uint64_t pause_parts_us[5];  /* last pause: stop, sync, copy, sections,
                                    cont */
    uint64_t pause_max_parts_us[5];  /* the same of the longest pause, */
    uint64_t pause_max_pages;        /* and the pages copied in it, */
    uint64_t pause_max_epoch;        /* in this checkpoint */
    bool falling_behind;         /* checkpoints take longer than mc-delay */
    uint64_t epoch_ms;           /* length of the last epoch */
    uint64_t link_bytes;         /* what the link sends in mc-delay */
    uint64_t shadow_peak_bytes;
    uint64_t paused_pages_total; /* captured with the guest paused */
    uint64_t paused_pages_last;
    bool standby;                /* backup stood down; its RAM holds
                                    checkpoint epoch: mc-failover forces */
    uint64_t failover_epoch;     /* backup: took over from this checkpoint */
    char failover_reason[256];
    lm_hist pause_us;            /* primary: guest pause per checkpoint */
    lm_hist bytes;               /* checkpoint size on the wire */
    lm_hist ack_us;              /* primary: send start to ACK; backup:
                                    first record to ACK sent */
} lm_mc_stats;

struct livemig {
    /* set before start */
    livemig_ram **ram;
    size_t nram;
    lm_section *sections;
    size_t nsections;
    livemig_guest_ops gops;
    void *gopaque;
    livemig_event_fn event_fn;
    livemig_log_fn log_fn;       /* lifecycle lines (lm_log) */
    void *log_opaque;
    void *event_opaque;
    livemig_warning_fn warn_fn;
    void *warn_opaque;
    lm_tunables *tun;
    bool ram_pristine;           /* destination RAM untouched since alloc */
    struct lm_objects *objects;  /* object-add registry (own lock) */

    /* lm->lock */
    pthread_mutex_t lock;
    /* Serializes guest stop/cont (taken before lock, never inside it):
     * the guest's ops run outside lock, since a postcopy destination's
     * guest thread may wait for a page whose placement takes lock. */
    pthread_mutex_t guest_lock;
    pthread_cond_t cond;         /* status changes, kicks */
    livemig_status status;
    livemig_runstate runstate;
    bool incoming;               /* the current/last migration is incoming */
    bool thread_joinable;
    pthread_t thread;
    lm_conn conn;                /* open connection (fds -1 when none) */
    struct lm_mf_send *mf_send;  /* multifd channels of the outgoing side */
    char uri[1024];              /* of the outgoing migration */
    lm_listener listener;
    char incoming_warning[256];  /* exposed without TLS; "" if not */
    lm_stats stats;
    char error_desc[512];
    bool kicked;
    bool continue_requested;
    bool mc_failover;            /* mc-failover asked (either side) */
    bool committed;              /* past the point of no return: the end of
                                    the stream (source) or RESUMED
                                    (destination) is being sent; a cancel
                                    is refused (docs/cancel.md) */
    bool postcopy_requested;     /* migrate-start-postcopy asked */
    bool pc_resume;              /* postcopy recovery asked: source: a new
                                    connection in pc_conn; destination:
                                    listening on lm->listener */
    lm_conn pc_conn;
    char pc_uri[1024];           /* source: where pc_conn goes (the
                                    preempt channel follows it there) */
    uint8_t mig_uuid[16];        /* of the outgoing migration's stream */
    lm_mc_stats mc;
    atomic_bool cancel;

    /* out_lock: output commit queue */
    pthread_mutex_t out_lock;
    lm_output *out_head, *out_tail;
    bool out_hold;               /* hold outputs (MC running) */
    uint64_t out_epoch;          /* epoch new outputs belong to */
    uint64_t out_held, out_released;
    uint64_t out_discarded;      /* dropped unseen: never backed */
    lm_hist out_commit_us;       /* held outputs: submit to release */
};

/* output.c: output commit */
void lm_output_init(livemig *lm);
void lm_output_destroy(livemig *lm);
/* Start holding outputs; they belong to @epoch until the next epoch. */
void lm_output_hold(livemig *lm, uint64_t epoch);
/* The guest is stopped for a checkpoint: later outputs go to @epoch. */
void lm_output_set_epoch(livemig *lm, uint64_t epoch);
/* Release held outputs of epochs <= @epoch. */
void lm_output_release_upto(livemig *lm, uint64_t epoch);
/* Release everything and stop holding (MC ended, backup lost). */
void lm_output_release_all(livemig *lm);
/* Drop everything held without releasing it, and stop holding (the
 * backup took over: these outputs are not backed by what it runs). */
void lm_output_discard_all(livemig *lm);

/* engine.c */
uint64_t lm_now_us(void);
uint64_t lm_now_ms(void);
/* Move from @from (or any state when @from is LIVEMIG_STATUS__MAX) to
 * @to if the edge is legal; emits MIGRATION.  Caller holds lm->lock. */
bool lm_set_status_locked(livemig *lm, livemig_status from, livemig_status to);
void lm_set_status(livemig *lm, livemig_status to);
/* Keep the first error of a migration for query-migrate. */
void lm_set_error(livemig *lm, const char *desc);
void lm_emit(livemig *lm, const char *event, struct json_object *data);
/* A lifecycle line for the host's log (livemig_set_log_cb). */
void lm_log(livemig *lm, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* Engine-driven guest stop/cont for switchover (emit STOP / RESUME). */
void lm_guest_stop(livemig *lm, livemig_runstate to);
void lm_guest_cont(livemig *lm);
bool lm_cancelled(livemig *lm);
/* Pass the point of no return (docs/cancel.md): false if a cancel came
 * first, else from now on migrate_cancel is refused as too late. */
bool lm_commit(livemig *lm);
/* The section registered as @name, or NULL. */
lm_section *lm_find_section(livemig *lm, const char *name);
/* A checkpoint was acknowledged (primary) / applied (backup): the first
 * one moves the status to checkpointing and emits MC_CHECKPOINTING. */
void lm_mc_note_checkpoint(livemig *lm, const char *role, uint64_t epoch);

/* query.c: the data of MIGRATION_CONVERGENCE (caller holds lm->lock). */
struct json_object *lm_verdict_event(const lm_stats *st);

/* mc-backup.c: after MC_START on the destination; returns true when
 * the backup took over (failover), false with @err otherwise. */
struct lm_reader;
bool lm_mc_backup(livemig *lm, struct lm_reader *r, uint32_t heartbeat_ms,
                  livemig_error *err);
/* Resume the guest from applied checkpoint @epoch; emits MC_FAILOVER. */
void lm_mc_take_over(livemig *lm, uint64_t epoch, const char *reason);

/* outgoing.c / incoming.c: thread bodies */
/* secure.c: TLS on migration connections as tls-creds says (no-ops when
 * it is empty).  check: at migrate/migrate-incoming, on the caller's
 * thread; client/server: right after connect/accept, on the thread that
 * owns the connection. */
bool lm_secure_check(livemig *lm, const char *uri, bool incoming,
                     livemig_error *err);
bool lm_secure_client(livemig *lm, lm_conn *c, livemig_error *err);
/* The same for a connection to @uri (a postcopy recovery's, which may
 * differ from the migration's first): its host is the name checked. */
bool lm_secure_client_to(livemig *lm, lm_conn *c, const char *uri,
                         livemig_error *err);
bool lm_secure_server(livemig *lm, lm_conn *c, livemig_error *err);

void *lm_outgoing_thread(void *arg);
void *lm_incoming_thread(void *arg);

#endif
