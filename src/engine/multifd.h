/*
 * multifd.h - page channels beside the main migration connection.
 *
 * Sender: the migration thread hands batches of dirty pages (up to
 * LM_MF_BATCH pages of one block) to N channel threads, each with its own
 * connection; a channel finds the zero pages, compresses the rest if asked
 * (multifd-compression) and writes the batch.  At the end of every pass
 * the migration thread asks for a sync point: each channel writes MF_SYNC
 * after all its pages, and the call returns when every channel did.
 *
 * Receiver: one thread per channel stores batches straight into guest
 * RAM.  At a sync point a channel waits until every channel reached it,
 * so no page of pass N+1 lands before a page of pass N on another
 * channel.  The main thread waits for the last sync before it loads the
 * state sections and resumes the guest.
 *
 * Every channel opens with the stream header (the hello): role multifd,
 * its index, and the migration's UUID; the main channel's header carries
 * the channel count in its index field.
 */
#ifndef LM_MULTIFD_H
#define LM_MULTIFD_H

#include "engine/engine-int.h"
#include "stream/stream.h"

typedef struct lm_mf_send lm_mf_send;
typedef struct lm_mf_recv lm_mf_recv;

/* Connect @p->multifd_channels channels to @uri and start their threads.
 * @hdr is the main header (blocks, uuid); each channel sends it with its
 * role and index. */
lm_mf_send *lm_mf_send_start(livemig *lm, const char *uri,
                             const lm_stream_header *hdr,
                             const struct lm_params *p, livemig_error *err);
/* Queue a batch; blocks until a channel takes it.  @pages are copied. */
bool lm_mf_send_pages(lm_mf_send *m, uint32_t block, const uint8_t *base,
                      const uint64_t *pages, uint32_t n, livemig_error *err);
/* Sync point @sync on every channel; returns when all wrote it. */
bool lm_mf_send_sync(lm_mf_send *m, uint64_t sync, livemig_error *err);
void lm_mf_send_set_rate(lm_mf_send *m, uint64_t bytes_per_s);
/* While lm_mf_send_pages waits for a busy channel, call @fn (on the
 * caller's thread, without locks) every 50 ms: progress stays visible. */
void lm_mf_send_set_idle(lm_mf_send *m, void (*fn)(void *opaque),
                         void *opaque);
/* Make blocked channel I/O return (cancel). */
void lm_mf_send_shutdown(lm_mf_send *m);
/* Join the threads, close the connections, free. */
void lm_mf_send_stop(lm_mf_send *m);
/* Stats: bytes written by all channels, and per channel as JSON. */
uint64_t lm_mf_send_bytes(lm_mf_send *m);
struct json_object *lm_mf_send_stats(lm_mf_send *m);

#define LM_MF_MAX 16u   /* channels at most */

/* @main_hdr gives the UUID and the compression method of the batches. */
lm_mf_recv *lm_mf_recv_new(livemig *lm, unsigned nchannels,
                           const lm_stream_header *main_hdr,
                           livemig_error *err);
/* Hand over an accepted channel whose header @r already read (the reader
 * and connection become the channel's).  Starts its thread. */
bool lm_mf_recv_add(lm_mf_recv *m, lm_conn conn, lm_reader *r,
                    livemig_error *err);
bool lm_mf_recv_complete(lm_mf_recv *m);   /* all channels connected */
/* Wait until every channel processed sync point @sync. */
bool lm_mf_recv_wait(lm_mf_recv *m, uint64_t sync, livemig_error *err);
void lm_mf_recv_shutdown(lm_mf_recv *m);
/* After the last sync point: close the channels, join their threads (no
 * page lands after this) and add the pages they received to @into's. */
void lm_mf_recv_finish(lm_mf_recv *m, lm_reader *into);
void lm_mf_recv_stop(lm_mf_recv *m);
void lm_mf_recv_skip_zero(lm_mf_recv *m, bool skip);

#endif
