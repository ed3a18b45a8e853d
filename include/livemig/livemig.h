/*
 * livemig.h - the livemig engine API.
 *
 * An engine (livemig) moves the memory and state of one running workload
 * (the "guest") to another engine, over a stream.  The host program that
 * links liblivemig owns the guest; it describes it to the engine with:
 *
 *   - RAM blocks:     named, page-aligned memory regions (livemig_ram_add);
 *   - state sections: named, versioned save/load callbacks for everything
 *                     that is not RAM (livemig_section_add);
 *   - guest ops:      stop / cont / throttle (livemig_set_guest_ops).
 *
 * Then one side calls livemig_incoming() and the other livemig_migrate().
 * The engine runs the migration on its own threads; progress is read with
 * livemig_query() and reported through the event callback.
 *
 * Threads: every function here may be called from any thread unless noted.
 * Callbacks (guest ops, section save/load, events) are called from engine
 * threads; they must not call back into the engine except where noted.
 *
 * Errors: functions that can fail return bool (true = success) and take a
 * livemig_error * as last argument (may be NULL), filled on failure with a
 * message that says what failed and what to do.  The library never prints.
 */
#ifndef LIVEMIG_H
#define LIVEMIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define LIVEMIG_VERSION_MAJOR 0
#define LIVEMIG_VERSION_MINOR 1
#define LIVEMIG_VERSION_MICRO 0
#define LIVEMIG_VERSION_STRING "0.1.0"

/* ---- errors ------------------------------------------------------------ */

typedef struct livemig_error {
    /* QMP error class: "GenericError" unless a caller needs another one
     * ("CommandNotFound", "DeviceNotActive", ...).  Static storage. */
    const char *cls;
    char desc[512];
} livemig_error;

/* Fill @err (if not NULL) with a printf-style message, class GenericError.
 * An error already set is kept: the first failure is the one reported. */
void livemig_error_set(livemig_error *err, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
void livemig_error_set_class(livemig_error *err, const char *cls,
                             const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Reset @err to "no error". */
void livemig_error_clear(livemig_error *err);
/* True if @err holds an error. */
bool livemig_error_is_set(const livemig_error *err);

/* ---- statuses ---------------------------------------------------------- */

/* QEMU's MigrationStatus, plus checkpointing (micro-checkpointing). */
#define LIVEMIG_STATUS_LIST(X)            \
    X(NONE, "none")                       \
    X(SETUP, "setup")                     \
    X(ACTIVE, "active")                   \
    X(PRE_SWITCHOVER, "pre-switchover")   \
    X(DEVICE, "device")                   \
    X(POSTCOPY_ACTIVE, "postcopy-active") \
    X(POSTCOPY_PAUSED, "postcopy-paused") \
    X(POSTCOPY_RECOVER, "postcopy-recover") \
    X(COMPLETED, "completed")             \
    X(FAILED, "failed")                   \
    X(CANCELLING, "cancelling")           \
    X(CANCELLED, "cancelled")             \
    X(CHECKPOINTING, "checkpointing")

typedef enum livemig_status {
#define X(e, s) LIVEMIG_STATUS_##e,
    LIVEMIG_STATUS_LIST(X)
#undef X
    LIVEMIG_STATUS__MAX
} livemig_status;

const char *livemig_status_name(livemig_status s);

/* Run state of the guest, as QEMU's RunState names it. */
typedef enum livemig_runstate {
    LIVEMIG_RUN_PRELAUNCH,     /* created, never started */
    LIVEMIG_RUN_RUNNING,
    LIVEMIG_RUN_PAUSED,        /* stopped by "stop" */
    LIVEMIG_RUN_INMIGRATE,     /* waiting for / loading an incoming stream */
    LIVEMIG_RUN_FINISH_MIGRATE,/* stopped by the engine for switchover */
    LIVEMIG_RUN_POSTMIGRATE,   /* stopped after a completed outgoing migration */
} livemig_runstate;

const char *livemig_runstate_name(livemig_runstate s);

/* ---- the engine -------------------------------------------------------- */

typedef struct livemig livemig;

/* Create an engine.  No thread runs until a migration starts. */
livemig *livemig_new(livemig_error *err);
/* Cancel any migration, join all engine threads, free everything.  Memory
 * of RAM blocks belongs to the host and is not freed. */
void livemig_free(livemig *lm);

/* ---- RAM blocks -------------------------------------------------------- */

typedef struct livemig_ram livemig_ram;

/* How dirty pages of a block are found.  AUTO picks uffd-wp-async where
 * the kernel has it, else mprotect. */
typedef enum livemig_tracker_kind {
    LIVEMIG_TRACKER_AUTO,
    LIVEMIG_TRACKER_UFFD_WP_ASYNC,
    LIVEMIG_TRACKER_MPROTECT,
    LIVEMIG_TRACKER_MANUAL,
} livemig_tracker_kind;

const char *livemig_tracker_name(livemig_tracker_kind k);
/* Parse "auto", "uffd-wp-async", "mprotect", "manual". */
bool livemig_tracker_parse(const char *s, livemig_tracker_kind *out,
                           livemig_error *err);

/* Allocate @size bytes of guest RAM the way the engine likes it: anonymous,
 * transparent-huge-page backed, populated (so neither the guest nor an
 * incoming stream pays page faults).  Free with livemig_ram_free(). */
void *livemig_ram_alloc(size_t size, livemig_error *err);
void livemig_ram_free(void *host, size_t size);

/* Register a RAM block.  @name is unique, at most 255 bytes; @host is
 * page-aligned; @size a multiple of the page size.  Only before the first
 * migration.  Both ends of a migration must register the same blocks
 * (names and sizes), or the stream is refused. */
livemig_ram *livemig_ram_add(livemig *lm, const char *name, void *host,
                             size_t size, livemig_tracker_kind tracker,
                             livemig_error *err);

/* The tracker actually used for the block (never AUTO). */
livemig_tracker_kind livemig_ram_tracker(const livemig_ram *r);

/*
 * Manual dirty tracking.  With LIVEMIG_TRACKER_MANUAL the host reports
 * every page it writes: store into the page first, then mark it.  The
 * bitmap has one bit per page (bit p%64 of word p/64).  Marking checks the
 * bit before setting it so a hot page costs a load, not an atomic; this is
 * only correct because the engine clears bits, issues a process-wide
 * memory barrier (membarrier), and only then reads the pages.
 */
uint64_t *livemig_ram_manual_bitmap(livemig_ram *r);

static inline void livemig_dirty_mark(uint64_t *bitmap, size_t page)
{
    uint64_t bit = 1ull << (page & 63);
    uint64_t *w = &bitmap[page >> 6];
    if (!(__atomic_load_n(w, __ATOMIC_RELAXED) & bit))
        __atomic_fetch_or(w, bit, __ATOMIC_RELEASE);
}

/* ---- state sections ---------------------------------------------------- */

/* A growable output buffer handed to section save callbacks. */
typedef struct livemig_buf livemig_buf;
bool livemig_buf_put(livemig_buf *b, const void *data, size_t len);
bool livemig_buf_put_u64(livemig_buf *b, uint64_t v);   /* big-endian */
bool livemig_buf_put_u32(livemig_buf *b, uint32_t v);   /* big-endian */

/* A bounded input cursor handed to section load callbacks.  Every get
 * fails (returns false) rather than read past the end.  @flags tells the
 * loader about the RAM it loads against:
 * LIVEMIG_CURSOR_RAM_PARTIAL - postcopy: pages are still to arrive (a
 *   missing page reads as zero now), so state must not be checked against
 *   RAM contents. */
#define LIVEMIG_CURSOR_RAM_PARTIAL 1u
typedef struct livemig_cursor {
    const uint8_t *p;
    size_t len;
    unsigned flags;
} livemig_cursor;
bool livemig_cursor_get(livemig_cursor *c, void *out, size_t len);
bool livemig_cursor_get_u64(livemig_cursor *c, uint64_t *v);
bool livemig_cursor_get_u32(livemig_cursor *c, uint32_t *v);

typedef struct livemig_section_ops {
    /* Called with the guest stopped.  Append the state to @out. */
    bool (*save)(void *opaque, livemig_buf *out, livemig_error *err);
    /* Called with the guest stopped, on the destination, with the saved
     * bytes and the version they were saved with.  Must refuse (return
     * false, set @err) anything it does not understand. */
    bool (*load)(void *opaque, uint32_t version, livemig_cursor *in,
                 livemig_error *err);
} livemig_section_ops;

/* Register a state section.  @name unique, at most 255 bytes. */
bool livemig_section_add(livemig *lm, const char *name, uint32_t version,
                         const livemig_section_ops *ops, void *opaque,
                         livemig_error *err);

/* ---- guest ops --------------------------------------------------------- */

typedef struct livemig_guest_ops {
    /* Stop the guest; return only when nothing writes guest RAM. */
    void (*stop)(void *opaque);
    /* Resume the guest. */
    void (*cont)(void *opaque);
    /* Slow the guest down to (100 - percent) % of its speed; 0 = full. */
    void (*throttle)(void *opaque, unsigned percent);
} livemig_guest_ops;

/* Set the guest ops, and whether the guest is running now (a source) or
 * waits for an incoming migration (a destination: runstate inmigrate). */
void livemig_set_guest_ops(livemig *lm, const livemig_guest_ops *ops,
                           void *opaque, livemig_runstate initial);

/* Stop / resume the guest on behalf of a user (QMP stop / cont).  cont is
 * refused while an incoming migration has not completed. */
bool livemig_vm_stop(livemig *lm, livemig_error *err);
bool livemig_vm_cont(livemig *lm, livemig_error *err);
livemig_runstate livemig_vm_runstate(livemig *lm);

/* ---- events ------------------------------------------------------------ */

struct json_object;

/* @data is a json-c object owned by the engine for the duration of the
 * call (take a reference to keep it).  Event names and data follow QMP:
 * MIGRATION {status}, MIGRATION_PASS {pass}, STOP, RESUME, ... */
typedef void (*livemig_event_fn)(void *opaque, const char *event,
                                 struct json_object *data);

/* Set the event callback; called from engine threads. */
void livemig_set_event_cb(livemig *lm, livemig_event_fn fn, void *opaque);

/* Lifecycle lines for the host's log, whatever the events capability
 * says: a migration started (and to where), completed (time, downtime,
 * bytes), failed (with the reason) or was cancelled; an incoming one
 * waits, connected, completed; micro-checkpointing protects the guest;
 * a backup took over or was lost (with the reason).  @line has no
 * newline.  Called from engine threads, sometimes under the engine's
 * lock: the callback must not call into the engine.  The library itself
 * never prints. */
typedef void (*livemig_log_fn)(void *opaque, const char *line);
void livemig_set_log_cb(livemig *lm, livemig_log_fn fn, void *opaque);

/* ---- migration --------------------------------------------------------- */

/* Start an outgoing migration to @uri (tcp:HOST:PORT, unix:PATH,
 * file:PATH[,offset=N], exec:CMD).  Refuses only a malformed URI or a
 * migration already running; never blocks: the migration thread connects
 * (status "setup") and the outcome, a connect error included, is reported
 * through the status. */
bool livemig_migrate(livemig *lm, const char *uri, livemig_error *err);

/* Wait for an incoming migration on @uri (same forms; "defer" is handled
 * by the caller, which calls this later).  Returns once listening. */
bool livemig_incoming(livemig *lm, const char *uri, livemig_error *err);

/* User-creatable objects, as QEMU's object-add has them: @args holds
 * "qom-type", "id" and the type's properties, flat.  Types: "secret"
 * (data or file, format raw|base64), "tls-creds-x509" (dir, endpoint
 * client|server, verify-peer, priority, passwordid, sanity-check),
 * "tls-creds-psk" (dir with keys.psk, endpoint, username, priority) and
 * "authz-list" (policy allow|deny, rules [{match, policy, format
 * exact|glob}]).  Credentials are loaded from their files now, so a
 * missing or bad file is this call's error.  The tls-creds, tls-hostname
 * and tls-authz parameters name them by id.  A migration that uses an
 * object keeps it alive after object-del until it ends. */
bool livemig_object_add(livemig *lm, struct json_object *args,
                        livemig_error *err);
bool livemig_object_del(livemig *lm, const char *id, livemig_error *err);
/* [{"name": id, "type": "child<qom-type>"}], as QEMU's query-objects
 * (new reference).  Properties, and so secrets, are never returned. */
struct json_object *livemig_query_objects(livemig *lm);

/* Warnings for the operator (the library never prints): today, an
 * incoming migration that listens where other hosts can reach it (not
 * loopback, not unix:) without tls-creds.  Called on the thread that
 * started it, with no engine lock held; @msg is valid during the call. */
typedef void (*livemig_warning_fn)(void *opaque, const char *msg);
void livemig_set_warning_cb(livemig *lm, livemig_warning_fn fn,
                            void *opaque);

/* Cancel the running migration (outgoing or incoming).  The source guest
 * keeps running (or returns to its run state from before the switchover);
 * status goes cancelling -> cancelled.  Refused (false, @err "too late to
 * cancel...") past the point of no return: once the end of the stream is
 * being sent (source) or the destination is confirming it runs the guest
 * (see docs/cancel.md).  With nothing running, true and nothing happens. */
bool livemig_cancel(livemig *lm, livemig_error *err);

/* QMP migrate-start-postcopy: switch the running precopy migration to
 * postcopy at the end of the current pass (or of the first one, when
 * asked during setup).  Needs capability postcopy-ram, on both sides. */
bool livemig_start_postcopy(livemig *lm, livemig_error *err);

/* Postcopy recovery.  After a broken link both sides wait in status
 * postcopy-paused (the source keeps every page, the destination's guest
 * threads wait for theirs).  On the destination livemig_postcopy_recover
 * listens on @uri (QMP migrate-recover); on the source
 * livemig_migrate_resume connects to it (QMP migrate with resume: true)
 * and the migration goes on from where it stopped.  livemig_migrate_pause
 * (QMP migrate-pause) cuts the connection of a postcopy-active migration
 * by hand, on either side. */
bool livemig_postcopy_recover(livemig *lm, const char *uri,
                              livemig_error *err);
bool livemig_migrate_resume(livemig *lm, const char *uri, livemig_error *err);
bool livemig_migrate_pause(livemig *lm, livemig_error *err);

/* Proceed from a pause state (e.g. "pre-switchover"). */
bool livemig_continue(livemig *lm, const char *state, livemig_error *err);

livemig_status livemig_get_status(livemig *lm);

/* QMP query-migrate return value, new reference. */
struct json_object *livemig_query_migrate(livemig *lm);

/* ---- micro-checkpointing ---------------------------------------------- */

/*
 * Output commit.  Whatever the guest tells the outside world (a reply, a
 * log line) goes through livemig_output_submit: the engine copies it and
 * calls @release with the bytes once the checkpoint holding the state
 * behind the output is acknowledged by the backup.  With no
 * micro-checkpointing running, @release is called at once (before the
 * submit returns); when the backup is lost, every held output is released.
 * So after a failover, every output anyone saw is backed by the backup's
 * state.  Outputs are released in submission order, one at a time, from
 * the submitting thread or an engine thread; @release must not call into
 * the engine.
 */
typedef void (*livemig_output_fn)(void *opaque, const void *data, size_t len);

bool livemig_output_submit(livemig *lm, const void *data, size_t len,
                           livemig_output_fn release, void *opaque,
                           livemig_error *err);
/* The same, releasing by write(2) of the bytes to @fd. */
bool livemig_output_write(livemig *lm, int fd, const void *data, size_t len,
                          livemig_error *err);

/* QMP mc-failover.  On a backup: take over now from the last applied
 * checkpoint.  On a primary: drop the backup and run unprotected. */
bool livemig_mc_failover(livemig *lm, livemig_error *err);

#ifdef __cplusplus
}
#endif
#endif
