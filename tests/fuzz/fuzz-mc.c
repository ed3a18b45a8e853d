/*
 * fuzz-mc.c - the micro-checkpointing messages, both directions.
 *
 * Mode byte even: the rest is what a backup reads after MC_START
 * (src/engine/mc-backup.c): checkpoints, heartbeats, MC_END, on an engine
 * with one 16-page RAM block "ram" and one state section "toy" (8 bytes,
 * version 1).  Acknowledgements go to /dev/null; a backup that takes
 * over resumes the (empty) guest.  Mode odd: the rest is what a primary
 * reads on the return path (src/engine/outgoing.c, lm_out_read_reply):
 * RESUMED, ACK and ERROR messages.
 *
 * Invariants: a toy section is only ever loaded with its 8 bytes; every
 * error is valid UTF-8.
 */
#include <fcntl.h>
#include <stdio.h>
#include <string.h>

#include "common/utf8.h"
#include "engine/engine-int.h"
#include "engine/outgoing-int.h"
#include "stream/stream.h"
#include "fuzz.h"

static livemig *lm;
static int devnull = -1;

static bool toy_save(void *o, livemig_buf *out, livemig_error *err)
{
    (void)o; (void)err;
    return livemig_buf_put_u64(out, 42);
}

static bool toy_load(void *o, uint32_t version, livemig_cursor *in,
                     livemig_error *err)
{
    (void)o;
    uint64_t v;
    if (version != 1 || !livemig_cursor_get_u64(in, &v) || in->len) {
        livemig_error_set(err, "toy: bad state");
        return false;
    }
    return true;
}

static const livemig_section_ops toy_ops = { .save = toy_save,
                                             .load = toy_load };

static void setup(void)
{
    livemig_error err = { 0 };
    if (!(lm = livemig_new(&err)))
        abort();
    void *ram = livemig_ram_alloc(16 * 4096, &err);
    if (!ram || !livemig_ram_add(lm, "ram", ram, 16 * 4096,
                                 LIVEMIG_TRACKER_MANUAL, &err) ||
        !livemig_section_add(lm, "toy", 1, &toy_ops, NULL, &err))
        abort();
    devnull = open("/dev/null", O_WRONLY | O_CLOEXEC);
    if (devnull < 0)
        abort();
}

static void backup(int fd)
{
    lm_reader r;
    livemig_error err = { 0 };
    if (!lm_reader_init(&r, fd, &err))
        abort();
    r.hdr.version = LM_STREAM_VERSION;
    r.hdr.page_size = r.page_size = 4096;
    r.hdr.nblocks = 1;
    snprintf(r.hdr.blocks[0].name, sizeof(r.hdr.blocks[0].name), "ram");
    r.hdr.blocks[0].size = 16 * 4096;
    lm_stream_block local = { .size = 16 * 4096,
                              .host = lm->ram[0]->host };
    snprintf(local.name, sizeof(local.name), "ram");
    if (!lm_rd_bind(&r, &local, 1, &err))
        abort();
    lm->conn.wfd = devnull;
    lm->mc_failover = false;
    /* A heartbeat timeout, so a backup whose primary is gone takes over
     * at once rather than waiting for mc-failover. */
    (void)lm_mc_backup(lm, &r, 1000, &err);
    if (livemig_error_is_set(&err))
        FZ_CHECK(lm_utf8_valid(err.desc, strlen(err.desc), NULL));
    lm->conn.wfd = -1;
    lm_reader_destroy(&r);
}

static void primary(int fd)
{
    out_state *s = calloc(1, sizeof(*s));
    if (!s)
        abort();
    s->lm = lm;
    lm->conn.rfd = fd;
    int type;
    uint64_t v;
    for (int n = 0; n < 1000; n++) {
        int rc = lm_out_read_reply(s, 0, &type, &v);
        if (rc != 1)
            break;
        FZ_CHECK(type == LM_RP_RESUMED || type == LM_RP_ACK);
    }
    if (livemig_error_is_set(&s->err))
        FZ_CHECK(lm_utf8_valid(s->err.desc, strlen(s->err.desc), NULL));
    lm->conn.rfd = -1;
    free(s);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!lm)
        setup();
    if (size < 1)
        return 0;
    int fd = fz_memfd(data + 1, size - 1);
    if (data[0] & 1)
        primary(fd);
    else
        backup(fd);
    return 0;
}
