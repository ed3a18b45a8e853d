/*
 * monitor.h - the QMP monitor of livemigd (and of any host embedding the
 * engine): a QMP server speaking QEMU's wire protocol, with HMP on top.
 *
 * Wire protocol (QEMU's docs/interop/qmp-spec):
 *   server -> {"QMP": {"version": {"qemu": {"major", "minor", "micro"},
 *                                  "package": "livemig X.Y.Z"},
 *                      "capabilities": []}}
 *   client -> {"execute": "qmp_capabilities"}      (required first)
 *   client -> {"execute": CMD, "arguments": {...}, "id": ANY}
 *   server -> {"return": VALUE, "id": ANY} | {"error": {"class", "desc"}, "id"}
 *   server -> {"event": NAME, "data": {...},
 *              "timestamp": {"seconds", "microseconds"}}
 * Commands and errors are documented in docs/qmp.md.
 *
 * Threads: one thread runs lm_monitor_run(), a single poll() loop over
 * the listening sockets, every client and a wake-up eventfd.  Commands run
 * on that thread, one at a time, to completion.  lm_monitor_event() and
 * lm_monitor_stop() may be called from any thread: events are serialised
 * by the caller's thread, queued under a mutex and the loop is woken to
 * broadcast them.  Everything else is for the thread that owns the monitor.
 *
 * Per client: non-blocking socket, an incremental JSON parser (input above
 * LM_QMP_MAX_INPUT bytes: error reply, then the client is dropped), and an
 * output buffer (a client that lets more than 16 MiB of replies and events
 * pile up is dropped).  A client that disconnects affects nobody else.
 */
#ifndef LM_MONITOR_H
#define LM_MONITOR_H

#include <stdbool.h>

#include "livemig/livemig.h"

struct json_object;

typedef struct lm_monitor lm_monitor;

/* A monitor for engine @lm (borrowed: it must outlive the monitor).  It
 * does not listen anywhere until lm_monitor_listen(). */
lm_monitor *lm_monitor_new(livemig *lm, livemig_error *err);

/* Listen on "unix:PATH" (socket created mode 0600; a stale socket file at
 * PATH is replaced, any other file is an error) or "tcp:HOST:PORT".  May
 * be called several times, before or between runs.  A UNIX socket file is
 * removed by lm_monitor_free(). */
bool lm_monitor_listen(lm_monitor *m, const char *spec, livemig_error *err);

/*
 * Extra commands (the daemon adds query-guest and guest-verify).  @fn runs
 * on the monitor thread; @args is never NULL (an empty object when the
 * client sent none) and is borrowed; the function checks its own
 * arguments.  It returns a new reference (NULL means "{}" when @err is
 * not set), or NULL with @err set.  @name must not exist yet.
 */
typedef struct json_object *(*lm_monitor_cmd_fn)(void *opaque,
                                                 struct json_object *args,
                                                 livemig_error *err);
bool lm_monitor_add_command(lm_monitor *m, const char *name,
                            lm_monitor_cmd_fn fn, void *opaque,
                            livemig_error *err);

/*
 * Broadcast event @event with @data (borrowed; may be NULL: no "data"
 * member) to every client that completed negotiation, stamped with the
 * time of this call.  Any thread.  The signature matches livemig_event_fn,
 * so the daemon can pass (lm_monitor_event, monitor) to
 * livemig_set_event_cb().
 */
void lm_monitor_event(void *monitor, const char *event,
                      struct json_object *data);

/* Serve until "quit" or lm_monitor_stop(); returns 0 (-1 if poll itself
 * failed).  On "quit" the reply and a SHUTDOWN event are flushed (bounded
 * wait) before returning. */
int lm_monitor_run(lm_monitor *m);

/* Make lm_monitor_run() return.  Any thread; async-signal-safe. */
void lm_monitor_stop(lm_monitor *m);

/* Close every client and socket, remove UNIX socket files, free. */
void lm_monitor_free(lm_monitor *m);

#endif
