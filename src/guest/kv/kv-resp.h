/*
 * kv-resp.h - RESP2, the Redis protocol: an incremental request parser and
 * a reply writer, both over plain buffers (no sockets, no store), so a
 * fuzzer or a unit test can drive them directly.
 *
 * Requests come in two forms:
 *   multibulk  "*<argc>\r\n" then argc times "$<len>\r\n<len bytes>\r\n";
 *   inline     one line of space-separated words ending in "\n" (a "\r"
 *              before it is dropped), with "..." (C escapes, \xHH) and
 *              '...' quoting as redis-cli and telnet users type them.
 * Several requests may follow each other in one buffer (pipelining).
 *
 * Parsing is resumable: the parser keeps where it is between calls, so a
 * command that arrives in many reads (a 1 M-argument command, a large
 * bulk) is scanned once, not once per read.  The caller owns the buffer;
 * it may grow it (realloc) between calls but must not move or change the
 * bytes from kv_resp_parser.start onwards until the command is returned.
 * Arguments are offsets into the buffer.  Inline arguments are unescaped in
 * place (never longer than their quoted form), so the buffer is writable.
 *
 * Errors are the protocol errors Redis writes ("Protocol error: invalid
 * bulk length", ...); after one the connection must be closed, as Redis
 * does, because the stream cannot be resynchronised.
 */
#ifndef KV_RESP_H
#define KV_RESP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* One argument: bytes [off, off + len) of the buffer. */
typedef struct kv_resp_arg {
    size_t off;
    size_t len;
} kv_resp_arg;

typedef struct kv_resp_limits {
    size_t max_bulk;      /* largest bulk string ($<len>), bytes */
    size_t max_inline;    /* longest inline request line, bytes */
    size_t max_args;      /* largest multibulk count */
} kv_resp_limits;

/* Redis's defaults: proto-max-bulk-len 512 MiB, 64 KiB inline, INT_MAX
 * multibulk count. */
#define KV_RESP_MAX_BULK_DEFAULT (512ull * 1024 * 1024)
#define KV_RESP_MAX_INLINE_DEFAULT (64u * 1024)
#define KV_RESP_MAX_ARGS_DEFAULT 2147483647ull

typedef struct kv_resp_parser {
    kv_resp_limits lim;
    /* Progress (read-only for the caller). */
    size_t start;         /* offset where the current command begins */
    size_t pos;           /* next byte to look at */
    int state;            /* internal */
    uint64_t mb_left;     /* multibulk: arguments still to read */
    int64_t bulk_len;     /* multibulk: length of the next bulk, -1 if its
                             header was not read yet */
    /* The command, once kv_resp_parse returned KV_RESP_COMMAND. */
    kv_resp_arg *argv;
    size_t argc, argv_cap;
    const char *error;    /* after KV_RESP_ERROR: the message (may point
                             into errbuf) */
    char errbuf[64];
} kv_resp_parser;

typedef enum kv_resp_result {
    KV_RESP_NEED_MORE,    /* no complete command yet: read more bytes */
    KV_RESP_COMMAND,      /* argv/argc hold a command (argc >= 1) */
    KV_RESP_ERROR,        /* protocol error: reply p->error, then close */
    KV_RESP_NOMEM,        /* could not grow argv: close the connection */
} kv_resp_result;

/* A parser with @lim (NULL = Redis's defaults). */
void kv_resp_init(kv_resp_parser *p, const kv_resp_limits *lim);
void kv_resp_free(kv_resp_parser *p);

/* Parse the next command from @buf[0..len).  After KV_RESP_COMMAND the
 * command spans [start, pos); call kv_resp_next() before parsing again.
 * Empty inline lines and blank multibulks ("*0", "*-1") are skipped. */
kv_resp_result kv_resp_parse(kv_resp_parser *p, char *buf, size_t len);

/* Done with the returned command: forget its arguments. */
void kv_resp_next(kv_resp_parser *p);

/* The bytes before @p->start are no longer needed: the caller is about to
 * drop @n (<= start) bytes from the front of its buffer; shift offsets. */
void kv_resp_shift(kv_resp_parser *p, size_t n);

/* Bytes the parser still needs to keep (the partial command), to check a
 * per-client query-buffer limit.  Includes the argv array. */
size_t kv_resp_pending_bytes(const kv_resp_parser *p, size_t buf_len);

/* ---- replies ------------------------------------------------------------ */

/* A growable reply buffer.  On allocation failure @oom is set and later
 * writes are dropped: the caller closes the connection. */
typedef struct kv_out {
    char *p;
    size_t len, cap;
    bool oom;
} kv_out;

void kv_out_free(kv_out *o);
void kv_out_reset(kv_out *o);
void kv_out_raw(kv_out *o, const void *data, size_t len);
void kv_out_status(kv_out *o, const char *s);          /* +s */
void kv_out_error(kv_out *o, const char *fmt, ...)     /* -fmt (no CRLF) */
    __attribute__((format(printf, 2, 3)));
void kv_out_int(kv_out *o, int64_t v);                 /* :v */
void kv_out_bulk(kv_out *o, const void *data, size_t len); /* $len data */
void kv_out_bulk_str(kv_out *o, const char *s);
void kv_out_bulk_int(kv_out *o, int64_t v);
void kv_out_null(kv_out *o);                           /* $-1 */
void kv_out_array(kv_out *o, size_t n);                /* *n */
void kv_out_null_array(kv_out *o);                     /* *-1 */

#endif
