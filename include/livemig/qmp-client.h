/*
 * qmp-client.h - a small synchronous QMP client, for livemig-ctl, the
 * tests and any C program that drives livemigd (or QEMU).
 *
 * Usage:
 *
 *     livemig_error err = {0};
 *     livemig_qmp *q = livemig_qmp_connect("unix:/run/livemig.sock",
 *                                          5000, &err);
 *     if (!q) { fprintf(stderr, "%s\n", err.desc); return 3; }
 *     json_object *args = json_object_new_object();
 *     json_object_object_add(args, "uri",
 *                            json_object_new_string("tcp:host:4444"));
 *     json_object *r = livemig_qmp_execute(q, "migrate", args, &err);
 *     if (!r) fprintf(stderr, "%s: %s\n", err.cls, err.desc);
 *     json_object_put(r);
 *     json_object *ev = livemig_qmp_next_event(q, 1000);
 *     ...
 *     livemig_qmp_close(q);
 *
 * Protocol: connect reads the greeting ({"QMP": ...}) and sends
 * qmp_capabilities; each execute sends {"execute", "arguments", "id"} and
 * waits for the reply with that id.  Events that arrive meanwhile are
 * queued, in order, for livemig_qmp_next_event().  Input is framed
 * incrementally (replies may arrive split or several per read); a reply
 * larger than 64 MiB closes the connection.
 *
 * Errors: on failure, functions return NULL / false and fill @err (may be
 * NULL; must be cleared by the caller): err->cls is the QMP error class
 * ("GenericError", "CommandNotFound", "DeviceNotActive", "DeviceNotFound",
 * "KVMMissingCap") for errors the server reported, and "GenericError" for
 * local failures (connect, timeout, connection closed); err->desc the
 * message.  After a timeout or a connection failure, the connection is
 * broken: every later call fails at once; close it and connect again.
 *
 * Threads: a livemig_qmp is used by one thread at a time.  The library
 * never prints and never raises SIGPIPE (it sends with MSG_NOSIGNAL).
 */
#ifndef LIVEMIG_QMP_CLIENT_H
#define LIVEMIG_QMP_CLIENT_H

#include <stdbool.h>

#include "livemig/livemig.h"

#ifdef __cplusplus
extern "C" {
#endif

struct json_object;

typedef struct livemig_qmp livemig_qmp;

/*
 * Connect to @addr: "unix:PATH", a plain PATH, or "tcp:HOST:PORT"; read
 * the greeting and negotiate capabilities.  @timeout_ms bounds the connect
 * and then each wait for a reply (<= 0: 10 s).  Returns NULL with @err set
 * if the monitor cannot be reached or does not speak QMP.
 */
livemig_qmp *livemig_qmp_connect(const char *addr, int timeout_ms,
                                 livemig_error *err);

/*
 * Execute @cmd with @args (a JSON object, stolen, so do not put it; may be
 * NULL for none).  Returns the reply's "return" value (new reference) or
 * NULL with @err filled from the reply's "error" (or a local failure).
 */
struct json_object *livemig_qmp_execute(livemig_qmp *q, const char *cmd,
                                        struct json_object *args,
                                        livemig_error *err);

/*
 * Send @req (a whole QMP request object, borrowed, sent as is: anything,
 * even without "execute") and return the next reply that is not an event,
 * whole: {"return": ...} or {"error": ...}, with its "id" if any (new
 * reference), or NULL with @err set on a local failure.  For tools that
 * pass raw QMP through (livemig-ctl qmp) and for tests of bad input.
 */
struct json_object *livemig_qmp_raw(livemig_qmp *q, struct json_object *req,
                                    livemig_error *err);

/* The next event, whole ({"event", "data", "timestamp"}): a queued one,
 * else one read within @timeout_ms (0: only what is already there).  New
 * reference; NULL on timeout or when the connection is broken. */
struct json_object *livemig_qmp_next_event(livemig_qmp *q, int timeout_ms);

/* The socket (for poll(); readable means something may have arrived, but
 * events already queued do not make it readable). */
int livemig_qmp_fd(livemig_qmp *q);

/* The timeout for replies, in ms (as given to connect). */
void livemig_qmp_set_timeout(livemig_qmp *q, int timeout_ms);

/* Close the connection and free everything; NULL is fine. */
void livemig_qmp_close(livemig_qmp *q);

#ifdef __cplusplus
}
#endif
#endif
