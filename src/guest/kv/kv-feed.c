/*
 * kv-feed.c - one client's bytes through the RESP parser and the command
 * table (see kv_feed in kv-int.h).  Kept apart from the epoll loop so the
 * fuzzer drives exactly what the server runs.
 */
#include "guest/kv/kv-int.h"

#include <string.h>

kv_feed_result kv_feed(kv_store *st, kv_client *c, kv_resp_parser *p,
                       char *q, size_t *qlen, size_t query_limit,
                       kv_out *out, uint64_t *ncmds)
{
    uint64_t n = 0;
    kv_feed_result res = KV_FEED_MORE;
    while (res == KV_FEED_MORE) {
        kv_resp_result r = kv_resp_parse(p, q, *qlen);
        if (r == KV_RESP_NEED_MORE)
            break;
        if (r == KV_RESP_NOMEM) {
            res = KV_FEED_NOMEM;
            break;
        }
        if (r == KV_RESP_ERROR) {
            /* The stream cannot be resynchronised: answer, then close. */
            kv_out_error(out, "ERR %s", p->error);
            res = KV_FEED_CLOSE;
            break;
        }
        kv_ctx x = {
            .s = st, .h = &st->heap, .out = out, .c = c,
            .buf = q, .argv = p->argv, .argc = p->argc,
        };
        kv_cmd_run(&x);
        n++;
        kv_resp_next(p);
        if (c->close_after_reply)
            res = KV_FEED_CLOSE;
    }
    if (ncmds)
        *ncmds = n;
    if (res != KV_FEED_MORE)
        return res;
    size_t done = p->start;
    if (done) {
        memmove(q, q + done, *qlen - done);
        *qlen -= done;
        kv_resp_shift(p, done);
    }
    if (kv_resp_pending_bytes(p, *qlen) > query_limit)
        return KV_FEED_TOO_BIG;
    return KV_FEED_MORE;
}
