/*
 * kv-server.h - the kv store's network side: one thread, one epoll loop,
 * many clients, every reply through the engine's output commit.
 *
 * Replies of a client are gathered while its input is processed and
 * handed to livemig_output_submit() as one output per client per read;
 * the engine gives them back (at once when nothing is checkpointing, else
 * once the checkpoint that covers them is acknowledged), in submission
 * order, and only then are they written to the socket.  So a reply a
 * client sees is backed by the backup's state, and a client's replies
 * keep their order.
 *
 * The loop can be parked (the engine's stop): it finishes the client in
 * hand, submits its replies, and waits; nothing writes the block while it
 * is parked.  It listens on its port only once it has been resumed (a
 * destination or a backup serves only when it runs).
 *
 * Bounds: at most max_clients connections (more get "-ERR max number of
 * clients reached"); a client whose unsent plus held replies pass
 * out_limit bytes is dropped; a client whose pending request passes
 * query_limit bytes is dropped.
 */
#ifndef KV_SERVER_H
#define KV_SERVER_H

#include <stdbool.h>
#include <stddef.h>

#include "livemig/livemig.h"
#include "guest/kv/kv-int.h"

typedef struct kv_server kv_server;

typedef struct kv_server_conf {
    char bind[64];
    int port;
    unsigned max_clients;
    size_t out_limit;
    size_t query_limit;
    kv_resp_limits lim;
} kv_server_conf;

/* A server for @st; replies go through @lm's output commit.  Starts its
 * thread parked (see kv_server_resume). */
kv_server *kv_server_new(kv_store *st, livemig *lm, const kv_server_conf *c,
                         livemig_error *err);
/* Park the loop; returns once it is parked.  Nests with resume. */
void kv_server_pause(kv_server *s);
/* Let it run; the first resume opens the listening socket. */
void kv_server_resume(kv_server *s);
/* Close every client and the listening socket (the store moved away);
 * works while parked.  A later resume listens again. */
void kv_server_drop_clients(kv_server *s);
/* Stop the thread and close every socket.  Idempotent. */
void kv_server_halt(kv_server *s);
/* Free (after the engine is freed: held replies point at clients). */
void kv_server_free(kv_server *s);

/* Is it serving its port?  (-1 when not listening.) */
int kv_server_listen_port(kv_server *s);

#endif
