/*
 * postcopy-preempt-send.c - the source's end of the postcopy-preempt
 * channel: a second connection, opened at the postcopy switch (and again
 * at each recovery), that carries only the pages the destination asked
 * for.  On the main connection a requested page waits behind every
 * background byte already queued (the socket's send buffer, the link's
 * queue); on its own connection it waits for nothing but the link.
 *
 * Only the return-path thread writes here, straight after it read the
 * request, so a request never waits for the migration thread either, and
 * no two threads ever send on the channel's TLS session.  Any thread may
 * shut it down (a pause).  Counters are atomics read by the migration
 * thread when it publishes.
 */
#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "engine/postcopy.h"
#include "transport/transport.h"

struct lm_pc_pre_src {
    lm_conn conn;
    lm_writer w;
    _Atomic uint64_t normal, zero, wire;
};

bool lm_pc_fill_header(livemig *lm, lm_stream_header *h, uint8_t role)
{
    memset(h, 0, sizeof(*h));
    pthread_mutex_lock(&lm->lock);
    memcpy(h->uuid, lm->mig_uuid, sizeof(h->uuid));
    pthread_mutex_unlock(&lm->lock);
    h->version = LM_STREAM_VERSION;
    h->page_size = LM_PAGE_SIZE;
    h->role = role;
    h->nblocks = (uint32_t)lm->nram;
    for (size_t i = 0; i < lm->nram; i++) {
        snprintf(h->blocks[i].name, sizeof(h->blocks[i].name), "%s",
                 lm->ram[i]->name);
        h->blocks[i].size = lm->ram[i]->size;
    }
    return true;
}

lm_pc_pre_src *lm_pc_pre_open(livemig *lm, const char *uri,
                              livemig_error *err)
{
    lm_pc_pre_src *p = calloc(1, sizeof(*p));
    lm_stream_header *h = calloc(1, sizeof(*h));
    if (!p || !h) {
        free(p);
        free(h);
        livemig_error_set(err, "out of memory for the postcopy-preempt "
                          "channel");
        return NULL;
    }
    p->conn = (lm_conn)LM_CONN_INIT;
    lm_writer_init(&p->w, -1, &lm->cancel);
    livemig_error e = { 0 };
    bool ok = lm_transport_connect_until(uri, &lm->cancel, &p->conn, &e) &&
              lm_secure_client_to(lm, &p->conn, uri, &e);
    if (ok) {
        lm_writer_destroy(&p->w);
        lm_writer_init_conn(&p->w, &p->conn, &lm->cancel);
        lm_pc_fill_header(lm, h, LM_ROLE_PC_PREEMPT);
        ok = lm_wr_header(&p->w, h) && lm_wr_flush(&p->w);
        if (!ok)
            livemig_error_set(&e, "writing its hello failed: %s",
                              p->conn.tls && lm_conn_tls_error(&p->conn)[0]
                                  ? lm_conn_tls_error(&p->conn)
                                  : strerror(p->w.error));
    }
    free(h);
    if (!ok) {
        livemig_error_set(err, "cannot open the postcopy-preempt channel "
                          "to '%s': %s; check that the destination has "
                          "postcopy-preempt on and is reachable", uri,
                          e.desc);
        lm_pc_pre_close(p);
        return NULL;
    }
    /* Requested pages are few and small: no reason to let them sit in
     * a send buffer, and a dead link must pause within seconds. */
    lm_pc_watch_link(p->conn.wfd);
    return p;
}

bool lm_pc_pre_send(lm_pc_pre_src *p, uint32_t block, uint64_t page,
                    const uint8_t *data)
{
    bool zero = lm_page_is_zero(data);
    bool ok = zero ? lm_wr_ram_zero(&p->w, block, page, 1)
                   : lm_wr_ram_raw(&p->w, block, page, 1, data);
    ok = ok && lm_wr_flush(&p->w);
    if (ok)
        atomic_fetch_add(zero ? &p->zero : &p->normal, 1);
    atomic_store(&p->wire, p->w.total);
    return ok;
}

const char *lm_pc_pre_error(lm_pc_pre_src *p, char *buf, size_t len)
{
    const char *t = lm_conn_tls_error(&p->conn);
    snprintf(buf, len, "%s", t[0] ? t : strerror(p->w.error ? p->w.error
                                                             : EPIPE));
    return buf;
}

void lm_pc_pre_counts(lm_pc_pre_src *p, uint64_t *normal, uint64_t *zero,
                      uint64_t *wire)
{
    *normal = p ? atomic_load(&p->normal) : 0;
    *zero = p ? atomic_load(&p->zero) : 0;
    *wire = p ? atomic_load(&p->wire) : 0;
}

void lm_pc_pre_shutdown(lm_pc_pre_src *p)
{
    if (p)
        lm_conn_shutdown(&p->conn);
}

void lm_pc_pre_close(lm_pc_pre_src *p)
{
    if (!p)
        return;
    lm_writer_destroy(&p->w);
    lm_conn_close(&p->conn);
    free(p);
}
