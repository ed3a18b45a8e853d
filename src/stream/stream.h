/*
 * stream.h - the migration stream: writer and bounds-checked reader.
 * The format is described in docs/stream.md and at the top of writer.c.
 */
#ifndef LM_STREAM_H
#define LM_STREAM_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/uio.h>

#include "livemig/livemig.h"

#define LM_STREAM_MAGIC 0x4c564d47u      /* "LVMG" */
#define LM_STREAM_VERSION 1u
#define LM_STREAM_MAX_BLOCKS 64u
#define LM_STREAM_MAX_RUN 4096u           /* pages in one RAM record */
#define LM_STREAM_MAX_SECTION (64u << 20) /* bytes of one state section */
#define LM_MF_BATCH 128u                  /* pages in one multifd batch */
#define LM_MF_ZERO (1ull << 63)

enum lm_record {
    LM_REC_RAM_RAW = 1,    /* u32 block, u64 first page, u32 npages, data */
    LM_REC_RAM_ZERO = 2,   /* u32 block, u64 first page, u32 npages */
    LM_REC_SECTION = 3,    /* u8 len, name, u32 version, u32 len, data */
    LM_REC_END_PASS = 4,   /* u64 pass */
    LM_REC_END_STREAM = 5, /* switchover done: load sections and resume */
    LM_REC_MC_START = 6,   /* u32 heartbeat timeout ms: checkpoints follow */
    LM_REC_CKPT_BEGIN = 7, /* u64 epoch */
    LM_REC_CKPT_END = 8,   /* u64 epoch: the checkpoint is complete */
    LM_REC_HEARTBEAT = 9,  /* (nothing): the primary is alive */
    LM_REC_RAM_XBZRLE = 10,/* u32 block, u64 page, u32 len, encoded delta */
    LM_REC_MF_PAGES = 11,  /* multifd batch: u32 block, u32 n, n x u64
                              (page | 1<<63 when zero), then the non-zero
                              pages: raw, or u32 length + compressed */
    LM_REC_MC_END = 13,    /* the primary stops checkpointing and runs on:
                              the backup must not take over */
    LM_REC_MF_SYNC = 12,   /* u64 sync point: the channel's pages of
                              everything before it are all sent */
    LM_REC_PC_ADVISE = 14, /* the source may switch to postcopy */
    LM_REC_PC_DISCARD = 15,/* u32 block, u64 first word, u32 nwords, words:
                              pages the destination must drop and receive
                              again (postcopy) */
    LM_REC_PC_RUN = 16,    /* postcopy: state sent, run the guest now;
                              the remaining pages follow, END_STREAM
                              when every one was sent */
    LM_REC_PC_RESUME = 17, /* first record of a new connection that
                              resumes a paused postcopy migration */
    LM_REC_RUNSTATE = 18,  /* u8 LM_RUN_PAUSED: the guest was stopped on
                              the source and stays so; sent (before
                              END_STREAM) only then */
};

/* RUNSTATE values. */
enum { LM_RUN_PAUSED = 1 };

#define LM_PC_DISCARD_MAX_WORDS 4096u     /* bitmap words per record */

/* Return-path messages, destination to source. */
enum lm_reply {
    LM_RP_RESUMED = 0x81,  /* u64 load time in us: loaded and running */
    LM_RP_ERROR = 0x82,    /* u16 len, message */
    LM_RP_ACK = 0x83,      /* u64 epoch: checkpoint applied */
    LM_RP_PONG = 0x84,     /* u64 last applied epoch: the backup is alive
                              and still this primary's backup */
    LM_RP_TOOK_OVER = 0x85,/* u64 epoch: the backup runs the guest now */
    LM_RP_STOOD_DOWN = 0x86,/* u64 epoch: the backup will not take over */
    LM_RP_PAGE_REQ = 0x87, /* u32 block, u64 page: postcopy fault */
    LM_RP_PC_DONE = 0x88,  /* u64 pages received: postcopy complete */
    LM_RP_PC_MISSING = 0x89,/* u32 block, u64 first word, u32 n, n x u64:
                              pages still missing (postcopy resume) */
    LM_RP_PC_RESUMED = 0x8a,/* (nothing): missing list complete */
};

/* A connection's role (its header's role byte).  A postcopy-preempt
 * channel carries only the pages the destination asked for. */
enum lm_role { LM_ROLE_MAIN = 0, LM_ROLE_MULTIFD = 1, LM_ROLE_PC_PREEMPT = 2 };

/* One RAM block as both ends describe it. */
typedef struct lm_stream_block {
    char name[256];
    uint64_t size;
    uint8_t *host;         /* reader: where pages land */
} lm_stream_block;

/* The header: the hello of every connection. */
typedef struct lm_stream_header {
    uint32_t version;
    uint32_t page_size;
    uint8_t role, index;       /* main: index = multifd channel count */
    uint8_t compression;       /* multifd batches: lm_compress_method */
    bool pc_preempt;           /* main: capability postcopy-preempt on
                                  (flags bit 1) */
    uint8_t uuid[16];
    uint32_t nblocks;
    lm_stream_block blocks[LM_STREAM_MAX_BLOCKS];
} lm_stream_header;

/* ---- writer ------------------------------------------------------------ */

#define LM_WR_IOV 1024
#define LM_WR_ARENA (64 * 1024)
#define LM_WR_BATCH (1u << 20)

struct lm_conn;
struct lm_tls;

typedef struct lm_writer {
    int fd;
    struct lm_tls *tls;           /* the connection's TLS session or NULL */
    struct iovec iov[LM_WR_IOV];
    int niov;
    uint8_t arena[LM_WR_ARENA];   /* record headers of the pending batch */
    size_t arena_used;
    uint8_t *copy;                /* bytes that must be sent as they are
                                     now (xbzrle), LM_WR_BATCH of them */
    size_t copy_used;
    size_t pending;               /* bytes in iov */
    uint64_t total;               /* bytes written so far */
    uint64_t rate;                /* bytes/s limit, 0 = unlimited */
    uint32_t pace_us;             /* pacing granularity under @rate (0:
                                     the default, 50 ms) */
    double tokens;                /* token bucket for @rate */
    bool waited;                  /* the sender waited for the bucket
                                     (late wakeups: one slice more) */
    uint64_t last_refill_us;
    atomic_bool *cancel;          /* stop waiting on the bucket when set */
    _Atomic uint64_t *progress;   /* if set: bytes written are added as
                                     they go out (another thread reads) */
    int error;                    /* errno of the first failed write */
} lm_writer;

void lm_writer_init(lm_writer *w, int fd, atomic_bool *cancel);
/* Write to @c's write side (through its TLS session if it has one). */
void lm_writer_init_conn(lm_writer *w, const struct lm_conn *c,
                         atomic_bool *cancel);
void lm_writer_set_rate(lm_writer *w, uint64_t bytes_per_s);
/* Under a rate, batches go out in slices of @us of the rate (at least
 * 4 KiB), and the bucket saves up at most that much (or one slice, when
 * larger) while the sender is idle: the largest burst the link sees.
 * The default, 50 ms (LM_WR_PACE_DEFAULT_US), suits precopy (few wakeups);
 * postcopy's background stream uses about 1 ms, so asked-for pages find
 * a short queue.  0 restores the default. */
#define LM_WR_PACE_DEFAULT_US 50000u
void lm_writer_set_pacing(lm_writer *w, uint32_t us);
/* The bytes of one slice (the burst allowance) at the current rate;
 * SIZE_MAX without a rate. */
size_t lm_writer_slice(const lm_writer *w);
/* How long (us) until the bucket allows @n more bytes; 0 if now (or no
 * rate).  Charges nothing: a caller that would rather wait where it can
 * be woken (postcopy's migration thread, for page requests) waits this
 * long before it queues @n bytes. */
uint64_t lm_writer_pace_wait_us(lm_writer *w, size_t n);
/* Charge @n bytes sent outside the bucket (postcopy's asked-for pages,
 * which never wait) to it: the paced bytes after them wait the longer,
 * so everything together keeps to the rate.  The debt is bounded (100 ms
 * of the rate): when those bytes alone exceed it, it is exceeded. */
void lm_writer_charge(lm_writer *w, size_t n);
bool lm_wr_header(lm_writer *w, const lm_stream_header *h);
/* @data must stay unchanged until the next flush (it is sent by
 * reference: guest pages go to the socket without a copy). */
bool lm_wr_ram_raw(lm_writer *w, uint32_t block, uint64_t first,
                   uint32_t npages, const void *data);
bool lm_wr_ram_zero(lm_writer *w, uint32_t block, uint64_t first,
                    uint32_t npages);
/* One page, copied now (the source may change right after). */
bool lm_wr_ram_raw_copy(lm_writer *w, uint32_t block, uint64_t page,
                        const void *data);
/* One page as an xbzrle delta of @len bytes (copied now). */
bool lm_wr_ram_xbzrle(lm_writer *w, uint32_t block, uint64_t page,
                      const void *enc, uint32_t len);
void lm_writer_destroy(lm_writer *w);
bool lm_wr_section(lm_writer *w, const char *name, uint32_t version,
                   const void *data, uint32_t len);
bool lm_wr_end_pass(lm_writer *w, uint64_t pass);
bool lm_wr_end_stream(lm_writer *w);
bool lm_wr_mc_start(lm_writer *w, uint32_t heartbeat_ms);
bool lm_wr_ckpt(lm_writer *w, int type, uint64_t epoch);  /* BEGIN/END */
bool lm_wr_heartbeat(lm_writer *w);
bool lm_wr_mc_end(lm_writer *w);
bool lm_wr_runstate(lm_writer *w, uint8_t state);   /* LM_RUN_PAUSED */
/* Postcopy: ADVISE or RUN (no payload). */
bool lm_wr_pc(lm_writer *w, int type);
/* Postcopy: @nwords bitmap words from word @first of @block's bitmap
 * (copied now); at most LM_PC_DISCARD_MAX_WORDS. */
bool lm_wr_pc_discard(lm_writer *w, uint32_t block, uint64_t first,
                      const uint64_t *words, uint32_t nwords);
/* multifd: a batch of pages of one block, all of them @base-relative.
 * @zero marks the zero pages; the others are sent raw by reference, or
 * as @clen bytes of @cdata (copied) when compressed (@cdata != NULL). */
bool lm_wr_mf_pages(lm_writer *w, uint32_t block, const uint64_t *pages,
                    const bool *zero, uint32_t n, const uint8_t *base,
                    const void *cdata, uint32_t clen);
bool lm_wr_mf_sync(lm_writer *w, uint64_t sync);
bool lm_wr_flush(lm_writer *w);

/* ---- reader ------------------------------------------------------------ */

typedef struct lm_reader {
    int fd;
    struct lm_tls *tls;        /* the connection's TLS session or NULL */
    uint8_t *buf;
    size_t cap, pos, len;
    uint64_t total;            /* bytes consumed */
    /* Validated header; blocks[].host set by the caller after reading it
     * (lm_rd_bind) so RAM records land in guest memory. */
    lm_stream_header hdr;
    uint32_t page_size;
    uint8_t *section;          /* last section's data (reader-owned) */
    size_t section_cap;
    bool skip_zero;            /* RAM is known zero: zero runs are no-ops */
    /* Staging (micro-checkpointing): when set, RAM_RAW data goes where
     * stage() says instead of into the block, and RAM_ZERO is not
     * stored; the caller applies the checkpoint when it is complete. */
    uint8_t *(*stage)(void *opaque, uint32_t block, uint64_t first,
                      uint32_t npages, livemig_error *err);
    void *stage_opaque;
    /* multifd channel: how batches are compressed (NULL: raw). */
    struct lm_compressor *decomp;
    uint8_t *mf_cbuf, *mf_raw;  /* compressed input / decompressed pages */
    bool from_file;            /* EOF before the end: the file is cut */
    atomic_bool *cancel;       /* a non-blocking fd (an incoming FIFO) is
                                  waited for in steps until this is set */
    int timeout_ms;            /* > 0: fail a read with no data this long */
    bool timed_out;            /* the last failure was that timeout */
    /* One bit per page of each bound block: the page arrived at least
     * once (raw, zero, xbzrle or in a multifd batch).  Reader-owned,
     * allocated by lm_rd_bind. */
    uint64_t *received[LM_STREAM_MAX_BLOCKS];
    bool eof;                  /* the last failure was the peer closing */
} lm_reader;

/* A decoded record.  RAM data has already been stored into the block. */
typedef struct lm_rec {
    int type;
    uint32_t block;
    uint64_t first;
    uint32_t npages;
    uint64_t pass;             /* END_PASS; epoch for CKPT_* */
    uint32_t heartbeat_ms;     /* MC_START */
    uint8_t runstate;          /* RUNSTATE */
    const uint64_t *words;     /* PC_DISCARD: @npages words from @first */
    char name[256];
    uint32_t version;
    const uint8_t *data;       /* section bytes (valid until next record) */
    uint32_t len;
} lm_rec;

bool lm_reader_init(lm_reader *r, int fd, livemig_error *err);
/* Read from @c's read side (through its TLS session if it has one). */
bool lm_reader_init_conn(lm_reader *r, const struct lm_conn *c,
                         livemig_error *err);
void lm_reader_destroy(lm_reader *r);
/* Read and check the header. */
bool lm_rd_header(lm_reader *r, livemig_error *err);
/* Match the stream's blocks against the local ones (same names, same
 * sizes, same order) and remember where each lands. */
bool lm_rd_bind(lm_reader *r, const lm_stream_block *local, uint32_t n,
                livemig_error *err);
/* Read the next record; false with @err on EOF, I/O error or anything
 * malformed. */
bool lm_rd_record(lm_reader *r, lm_rec *rec, livemig_error *err);
/* Add the pages @from received to @into's (both bound to the same
 * blocks): the pages of a migration arrive over several channels. */
void lm_rd_merge_received(lm_reader *into, const lm_reader *from);
/* True if every page of every bound block arrived at least once; else
 * false with @err naming the first block that misses pages, how many,
 * and the first of them. */
bool lm_rd_all_received(const lm_reader *r, livemig_error *err);

/* True if the 4 KiB page at @p is all zero. */
bool lm_page_is_zero(const void *p);

#endif
