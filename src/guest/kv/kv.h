/*
 * kv.h - the hosted application "kv": a Redis-protocol key-value store
 * written against the public engine API (livemig.h) alone.
 *
 *   livemigd --guest kv,size=1G,port=6379[,bind=127.0.0.1][,tracker=KIND]
 *                      [,max-clients=10000][,out-limit=256M]
 *                      [,query-limit=1G]
 *
 * Everything the store knows lives in one RAM block "kv" (kv-heap.h);
 * its clock and counters are the state section "kv".  The server listens
 * on its port only while the guest runs: a destination or a backup starts
 * serving when it takes over, and a source that completed a migration
 * closes its clients and its port.  See docs/kv.md.
 */
#ifndef LM_GUEST_KV_H
#define LM_GUEST_KV_H

#include <stdbool.h>

#include "livemig/livemig.h"

struct json_object;

typedef struct lm_kv lm_kv;

/* Does @spec name the kv guest ("kv" or "kv,...")? */
bool lm_kv_spec_is_kv(const char *spec);

/*
 * Parse @spec, allocate and register the block "kv" (tracker=KIND in the
 * spec wins over @tracker), the section "kv" and the guest ops, and start
 * the server.  @incoming true: wait for the stream (runstate inmigrate),
 * serve once the engine resumes the guest.  @incoming false: an empty
 * store that serves at once.
 */
lm_kv *lm_kv_new(const char *spec, livemig *lm, bool incoming,
                 livemig_tracker_kind tracker, livemig_error *err);
/* Stop serving for good (before livemig_free: the server writes the
 * block the engine tracks). */
void lm_kv_halt(lm_kv *kv);
/* Free (after livemig_free: held replies point into the server). */
void lm_kv_free(lm_kv *kv);

/* QMP query-guest: {"kind": "kv", "size", "port", "listening", "tracker",
 * "clients"} (the store itself is read through its port: INFO). */
struct json_object *lm_kv_query(lm_kv *kv);

#endif
