/*
 * make-seeds.c - write the seed corpora of the harnesses into DIR/<name>/
 * (tests/fuzz/corpus/ in the tree): streams made by the engine's own
 * writer, real compressed batches and xbzrle deltas made by the codecs,
 * QMP/HMP lines as clients send them, and kv requests in the shapes
 * Redis clients and telnet users send (the redis-* seeds of corpus/kv
 * are recorded traffic of the real redis-cli and redis-benchmark, kept
 * as they are).  Run by scripts/fuzz-seeds;
 * the output is committed, so a change of the wire format shows up as a
 * change of the seeds.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "codec/compress.h"
#include "codec/xbzrle.h"
#include "common/buf.h"
#include "stream/stream.h"

#define PS 4096
#define PAGES 16

static const char *outdir;
static uint8_t ram[PAGES * PS];

static void put(const char *harness, const char *name, uint8_t mode,
                const void *data, size_t len, bool with_mode)
{
    char path[512];
    snprintf(path, sizeof(path), "%s/%s", outdir, harness);
    if (mkdir(path, 0755) != 0 && errno != EEXIST) {
        perror(path);
        exit(1);
    }
    snprintf(path, sizeof(path), "%s/%s/%s", outdir, harness, name);
    FILE *f = fopen(path, "wb");
    if (!f || (with_mode && fwrite(&mode, 1, 1, f) != 1) ||
        (len && fwrite(data, 1, len, f) != len) || fclose(f) != 0) {
        perror(path);
        exit(1);
    }
}

/* A writer into a temporary file; finish() returns its bytes. */
static lm_writer *start(FILE **f)
{
    *f = tmpfile();
    lm_writer *w = malloc(sizeof(*w));
    if (!*f || !w)
        exit(1);
    lm_writer_init(w, fileno(*f), NULL);
    return w;
}

static uint8_t *finish(lm_writer *w, FILE *f, size_t *len)
{
    if (!lm_wr_flush(w))
        exit(1);
    lm_writer_destroy(w);
    free(w);
    *len = (size_t)ftell(f);
    uint8_t *b = malloc(*len ? *len : 1);
    rewind(f);
    if (!b || fread(b, 1, *len, f) != *len)
        exit(1);
    fclose(f);
    return b;
}

static void header(lm_writer *w, uint8_t role, uint8_t index, uint8_t comp)
{
    lm_stream_header h = { .version = LM_STREAM_VERSION, .page_size = PS,
                           .role = role, .index = index,
                           .compression = comp, .nblocks = 1 };
    memset(h.uuid, 0x5a, sizeof(h.uuid));
    strcpy(h.blocks[0].name, "ram");
    h.blocks[0].size = sizeof(ram);
    if (!lm_wr_header(w, &h))
        exit(1);
}

static void fill_ram(void)
{
    for (size_t i = 0; i < sizeof(ram); i++)
        ram[i] = (uint8_t)(i * 13 + i / PS);
    memset(ram + 8 * PS, 0, 4 * PS);
}

/* A precopy stream: two passes (raw, zero, an xbzrle delta), the
 * sections, the end. */
static void precopy(lm_writer *w)
{
    static uint8_t newer[PS], enc[PS];
    bool ok = lm_wr_ram_raw(w, 0, 0, 8, ram) &&
              lm_wr_ram_zero(w, 0, 8, 4) &&
              lm_wr_ram_raw(w, 0, 12, PAGES - 12, ram + 12 * PS) &&
              lm_wr_end_pass(w, 1);
    memcpy(newer, ram + 3 * PS, PS);
    memset(newer + 100, 0x77, 40);
    ssize_t n = lm_xbzrle_encode(ram + 3 * PS, newer, PS, enc, sizeof(enc));
    ok = ok && n > 0 && lm_wr_ram_xbzrle(w, 0, 3, enc, (uint32_t)n) &&
         lm_wr_ram_raw_copy(w, 0, 5, ram + 5 * PS) &&
         lm_wr_end_pass(w, 2) &&
         lm_wr_section(w, "pattern", 1, "\0\0\0\0\0\0\x10\0", 8) &&
         lm_wr_section(w, "toy", 1, "\0\0\0\0\0\0\0\x2a", 8) &&
         lm_wr_end_stream(w);
    if (!ok)
        exit(1);
}

/* What follows MC_START: two checkpoints, heartbeats, the end. */
static void checkpoints(lm_writer *w)
{
    bool ok = lm_wr_ckpt(w, LM_REC_CKPT_BEGIN, 1) &&
              lm_wr_ram_raw(w, 0, 2, 3, ram + 2 * PS) &&
              lm_wr_ram_zero(w, 0, 9, 2) &&
              lm_wr_section(w, "toy", 1, "\0\0\0\0\0\0\0\x2a", 8) &&
              lm_wr_ckpt(w, LM_REC_CKPT_END, 1) && lm_wr_heartbeat(w) &&
              lm_wr_ckpt(w, LM_REC_CKPT_BEGIN, 2) &&
              lm_wr_ram_raw(w, 0, 14, 1, ram + 14 * PS) &&
              lm_wr_section(w, "toy", 1, "\0\0\0\0\0\0\0\x2b", 8) &&
              lm_wr_ckpt(w, LM_REC_CKPT_END, 2) && lm_wr_heartbeat(w) &&
              lm_wr_mc_end(w);
    if (!ok)
        exit(1);
}

/* A multifd page channel: batches (raw or compressed) and sync points. */
static void channel(lm_writer *w, lm_compress_method m)
{
    uint64_t pages[16];
    bool zero[16];
    static uint8_t batch[16 * PS], z[2 * 16 * PS + 4096];
    uint32_t nz = 0;
    for (uint32_t i = 0; i < 16; i++) {
        pages[i] = i;
        zero[i] = pages[i] >= 8 && pages[i] < 12;
        if (!zero[i])
            memcpy(batch + (size_t)nz++ * PS, ram + pages[i] * PS, PS);
    }
    bool ok;
    if (m == LM_COMPRESS_NONE) {
        ok = lm_wr_mf_pages(w, 0, pages, zero, 16, ram, NULL, 0);
    } else {
        livemig_error err = { 0 };
        lm_compressor *c = lm_compressor_new(m, 1, &err);
        size_t zl = c ? lm_compress(c, batch, (size_t)nz * PS, z, sizeof(z),
                                    &err) : 0;
        lm_compressor_free(c);
        ok = zl && lm_wr_mf_pages(w, 0, pages, zero, 16, ram, z,
                                  (uint32_t)zl);
    }
    ok = ok && lm_wr_mf_sync(w, 1) && lm_wr_mf_sync(w, 2);
    if (!ok)
        exit(1);
}

static void streams(void)
{
    FILE *f;
    size_t len;
    lm_writer *w = start(&f);
    header(w, LM_ROLE_MAIN, 0, 0);
    precopy(w);
    uint8_t *b = finish(w, f, &len);
    put("stream", "precopy", 0, b, len, true);
    put("stream", "precopy-pristine", 1, b, len, true);
    put("record", "precopy", 0, b + 48, len - 48, true);
    free(b);

    w = start(&f);
    header(w, LM_ROLE_MAIN, 0, 0);
    if (!lm_wr_ram_raw(w, 0, 0, PAGES, ram) || !lm_wr_end_pass(w, 1) ||
        !lm_wr_mc_start(w, 1000))
        exit(1);
    checkpoints(w);
    b = finish(w, f, &len);
    put("stream", "mc", 0, b, len, true);
    free(b);

    w = start(&f);
    checkpoints(w);
    b = finish(w, f, &len);
    put("record", "checkpoint-staged", 2, b, len, true);
    put("mc", "backup", 0, b, len, true);
    free(b);

    static const char *const names[] = { "none", "zlib", "zstd", "lz4" };
    for (lm_compress_method m = LM_COMPRESS_NONE; m < LM_COMPRESS__MAX;
         m++) {
        w = start(&f);
        header(w, LM_ROLE_MULTIFD, 0, (uint8_t)m);
        channel(w, m);
        b = finish(w, f, &len);
        char name[64];
        snprintf(name, sizeof(name), "multifd-%s", names[m]);
        put("stream", name, (uint8_t)(m << 2), b, len, true);
        put("record", name, (uint8_t)(m << 2), b + 48, len - 48, true);
        free(b);
    }
    /* A stream whose RAM goes to a staging area (mode bit 1). */
    w = start(&f);
    header(w, LM_ROLE_MAIN, 0, 0);
    checkpoints(w);
    b = finish(w, f, &len);
    put("stream", "checkpoint-staged", 2, b, len, true);
    free(b);
}

static void replies(void)
{
    uint8_t b[64];
    size_t n = 0;
    b[n++] = LM_RP_ACK;
    lm_put_be64(b + n, 1);
    n += 8;
    b[n++] = LM_RP_ACK;
    lm_put_be64(b + n, 2);
    n += 8;
    b[n++] = LM_RP_RESUMED;
    lm_put_be64(b + n, 1234);
    n += 8;
    b[n++] = LM_RP_ERROR;
    lm_put_be16(b + n, 11);
    n += 2;
    memcpy(b + n, "bad section", 11);
    n += 11;
    put("mc", "primary-replies", 1, b, n, true);
}

static void codecs(void)
{
    static uint8_t newer[PS], enc[PS];
    memcpy(newer, ram, PS);
    memset(newer + 10, 1, 30);
    memset(newer + 2000, 0xee, 300);
    ssize_t n = lm_xbzrle_encode(ram, newer, PS, enc, sizeof(enc));
    if (n <= 0)
        exit(1);
    put("xbzrle", "delta", 0, enc, (size_t)n, true);
    put("xbzrle", "empty", 0, NULL, 0, true);
    static const uint8_t overlay[] = { 0, 10, 30, 1, 2, 3, 4, 5, 6, 7, 8, 9,
                                       10, 11, 12, 13, 14, 15, 16, 17, 18,
                                       19, 20, 21, 22, 23, 24, 25, 26, 27,
                                       28, 29, 30, 7, 208, 4, 9, 9, 9, 9 };
    put("xbzrle", "roundtrip", 1, overlay, sizeof(overlay), true);

    static const char *const names[] = { "none", "zlib", "zstd", "lz4" };
    static uint8_t z[8 * PS + 4096];
    for (lm_compress_method m = LM_COMPRESS_ZLIB; m < LM_COMPRESS__MAX;
         m++) {
        livemig_error err = { 0 };
        lm_compressor *c = lm_compressor_new(m, 1, &err);
        for (unsigned pages = 1; pages <= 4; pages *= 4) {
            size_t zl = c ? lm_compress(c, ram, pages * PS, z, sizeof(z),
                                        &err) : 0;
            if (!zl)
                exit(1);
            char name[64];
            snprintf(name, sizeof(name), "batch-%u", pages);
            put(names[m], name, (uint8_t)(pages - 1), z, zl, true);
        }
        put(names[m], "roundtrip", 0x83, "page text page text", 19, true);
        lm_compressor_free(c);
    }
}

static void monitor_lines(void)
{
    static const char *const qmp[] = {
        "{\"execute\":\"qmp_capabilities\"}\n"
        "{\"execute\":\"query-status\",\"id\":1}\n",
        "{\"execute\":\"query-migrate\"}\n",
        "{\"execute\":\"query-migrate-parameters\",\"id\":\"a\"}\n",
        "{\"execute\":\"migrate-set-parameters\",\"arguments\":"
        "{\"downtime-limit\":300,\"max-bandwidth\":1073741824,"
        "\"multifd-compression\":\"zstd\"}}\n",
        "{\"execute\":\"migrate-set-capabilities\",\"arguments\":"
        "{\"capabilities\":[{\"capability\":\"xbzrle\",\"state\":true},"
        "{\"capability\":\"mc-delay\",\"value\":100}]}}\n",
        "{\"execute\":\"query-migrate-capabilities\",\"arguments\":"
        "{\"extended\":true}}\n",
        "{\"execute\":\"human-monitor-command\",\"arguments\":"
        "{\"command-line\":\"info migrate_parameters\"},\"id\":[1,{\"x\":2}]}\n",
        "{\"execute\":\"migrate\",\"arguments\":{\"uri\":\"tcp:127.0.0.1:1\"}}\n",
        "{\"execute\":\"stop\"}\n{\"execute\":\"cont\"}\n",
        "{\"execute\":\"query-migrate-parameter-info\"}\n",
        "{\"execute\":\"migrate-set-mc-delay\",\"arguments\":{\"value\":200}}\n",
        "{\"execute\":\"migrate_set_downtime\",\"arguments\":{\"value\":0.5}}\n",
        "{\"execute\":\"query-commands\"}\n",
    };
    for (size_t i = 0; i < sizeof(qmp) / sizeof(qmp[0]); i++) {
        char name[32];
        snprintf(name, sizeof(name), "request-%02zu", i);
        /* mode byte 1: already negotiated (the first seed negotiates) */
        put("qmp", name, i ? 1 : 0, qmp[i], strlen(qmp[i]), true);
    }
    static const char *const hmp[] = {
        "info status", "info migrate", "info migrate_parameters",
        "info migrate_capabilities", "help",
        "migrate_set_parameter downtime-limit 300ms",
        "migrate_set_parameter max-bandwidth 1G",
        "migrate_set_parameter xbzrle-cache-size 512M",
        "migrate_set_capability xbzrle on", "migrate_set_downtime 0.5",
        "migrate_set_speed 100M", "migrate_set_cache_size 64M",
        "migrate tcp:127.0.0.1:1", "migrate_cancel", "stop", "cont",
    };
    for (size_t i = 0; i < sizeof(hmp) / sizeof(hmp[0]); i++) {
        char name[32];
        snprintf(name, sizeof(name), "line-%02zu", i);
        put("hmp", name, 0, hmp[i], strlen(hmp[i]), true);
    }
    static const char *const values[] = { "300ms", "1G", "512M", "0.5",
                                          "100", "1.5K", "on", "zstd" };
    for (size_t i = 0; i < sizeof(values) / sizeof(values[0]); i++) {
        char name[32];
        snprintf(name, sizeof(name), "value-%02zu", i);
        put("hmp", name, (uint8_t)(1 + 2 * i), values[i], strlen(values[i]),
            true);
    }
}

/* Mode bytes of fuzz-kv.c. */
#define KV_FRAMED 1
#define KV_TIGHT 2
#define KV_CRON 4
#define KV_READ(n) ((uint8_t)((n) << 3))

/* A framed kv seed: @n reads, client i gets reads[i]. */
static void kv_framed(const char *name, uint8_t mode, const int *who,
                      const char *const *reads, size_t n)
{
    uint8_t b[4096];
    size_t len = 0;
    for (size_t i = 0; i < n; i++) {
        size_t l = strlen(reads[i]);
        if (l > 255 || len + 2 + l > sizeof(b))
            exit(1);
        b[len++] = (uint8_t)who[i];
        b[len++] = (uint8_t)l;
        memcpy(b + len, reads[i], l);
        len += l;
    }
    put("kv", name, (uint8_t)(mode | KV_FRAMED), b, len, true);
}

static void kv_requests(void)
{
    static const struct {
        const char *name;
        uint8_t mode;
        const char *text;
    } one[] = {
        /* telnet: inline words, "..." with C escapes, '...' */
        { "inline", 0, "PING\r\nSET k v\r\nGET k\r\nECHO \"a b\\x41\\n\"\r\n"
          "SET 'it\\'s' \"\"\r\nGET 'it\\'s'\r\nDBSIZE\nQUIT\r\nPING\r\n" },
        { "inline-bytewise", KV_READ(1), "SET a 1\r\nINCRBY a 41\r\n"
          "APPEND a xyz\r\nSTRLEN a\r\n\r\n   \r\nGETDEL a\r\n" },
        { "multibulk", 0, "*3\r\n$3\r\nSET\r\n$3\r\nkey\r\n$5\r\nvalue\r\n"
          "*2\r\n$3\r\nGET\r\n$3\r\nkey\r\n*0\r\n*-1\r\n"
          "*1\r\n$4\r\nPING\r\n" },
        { "every-type", KV_READ(5),
          "RPUSH l a b c d\r\nLPUSH l z\r\nLRANGE l 0 -1\r\nLINDEX l -2\r\n"
          "LPOP l 2\r\nRPOP l\r\nLLEN l\r\nHSET h f 1 g x\r\nHINCRBY h f 9\r\n"
          "HMGET h f g n\r\nHGETALL h\r\nHDEL h g\r\nHLEN h\r\n"
          "SADD s a b c\r\nSREM s b\r\nSISMEMBER s a\r\nSCARD s\r\n"
          "SMEMBERS s\r\nSPOP s 5\r\nTYPE h\r\nRENAME h h2\r\nEXISTS h h2\r\n"
          "MSET m1 1 m2 2\r\nMGET m1 m2 m3\r\nGETSET m1 9\r\nSETNX m1 0\r\n"
          "DECRBY m2 5\r\nDECR m2\r\nKEYS m*\r\nSCAN 0 MATCH m? COUNT 2 TYPE string\r\n"
          "DEL m1 m2 l\r\nFLUSHDB\r\n" },
        { "expiry", KV_CRON, "SET a 1 PX 1\r\nSET b 2 EX 100 GET\r\n"
          "SETEX c 10 v\r\nPEXPIRE b 5 GT\r\nEXPIRE c 0\r\nTTL b\r\nPTTL b\r\n"
          "PERSIST b\r\nSET b 3 KEEPTTL XX\r\nEXPIRE b -1\r\nDBSIZE\r\n" },
        { "server", 0, "INFO\r\nINFO memory keyspace\r\nCONFIG GET max*\r\n"
          "CONFIG SET save ''\r\nCLIENT SETNAME fz\r\nCLIENT GETNAME\r\n"
          "CLIENT ID\r\nCOMMAND COUNT\r\nCOMMAND INFO get set nosuch\r\n"
          "COMMAND DOCS\r\nSELECT 0\r\nSELECT 1\r\nNOSUCH a b\r\nGET\r\n" },
        /* bad lengths and other protocol errors: each ends the client */
        { "bad-bulk-length", 0, "*2\r\n$3\r\nGET\r\n$-5\r\nk\r\n" },
        { "bad-bulk-huge", 0, "*2\r\n$4\r\nECHO\r\n$536870913\r\n" },
        { "bad-mbulk-count", 0, "*abc\r\n" },
        { "bad-mbulk-huge", 0, "*2147483648\r\n" },
        { "bad-expected-dollar", 0, "*2\r\n$4\r\nECHO\r\n:5\r\n" },
        { "bad-short-bulk", KV_READ(3), "*2\r\n$4\r\nECHO\r\n$10\r\nabc\r\n" },
        { "bad-quotes", 0, "SET a \"unterminated\r\n" },
        { "bad-quote-glued", 0, "SET a \"x\"y\r\n" },
        { "bad-inline-big", KV_TIGHT, "SET a "
          "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
          "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
          "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
          "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
          "\r\n" },
    };
    for (size_t i = 0; i < sizeof(one) / sizeof(one[0]); i++)
        put("kv", one[i].name, one[i].mode, one[i].text, strlen(one[i].text),
            true);
    /* A tight store filled with small chunks, emptied (their room is on
     * the free lists of small classes), then asked for big ones: the
     * memory gate passes and an allocation fails half-way. */
    static char oom[8192];
    size_t n = 0;
    for (int k = 0; k < 3; k++) {
        n += (size_t)snprintf(oom + n, sizeof(oom) - n, "RPUSH l%d", k);
        for (int i = 10; i < 80; i++)
            n += (size_t)snprintf(oom + n, sizeof(oom) - n, " %d", i);
        n += (size_t)snprintf(oom + n, sizeof(oom) - n, "\r\n");
    }
    n += (size_t)snprintf(oom + n, sizeof(oom) - n, "DEL l0 l1\r\n");
    for (int k = 0; k < 7; k++) {
        n += (size_t)snprintf(oom + n, sizeof(oom) - n,
                              "*3\r\n$6\r\nAPPEND\r\n$1\r\na\r\n$900\r\n");
        memset(oom + n, 'a' + k, 900);
        n += 900;
        n += (size_t)snprintf(oom + n, sizeof(oom) - n, "\r\n");
    }
    n += (size_t)snprintf(oom + n, sizeof(oom) - n, "INFO memory\r\n");
    put("kv", "oom", KV_TIGHT, oom, n, true);
    /* Clients interleaved, their requests split across reads. */
    static const int who[] = { 0, 1, 0, 2, 1, 3, 2, 0 };
    static const char *const reads[] = {
        "*3\r\n$3\r\nSET\r\n$1\r\nk", "SET k other\r\nGET",
        "\r\n$2\r\nv1\r\n", "CLIENT SETNAME two\r\nINCR k\r\n",
        " k\r\nQUIT\r\nGET k\r\n", "*1\r\n$6\r\nDBSIZE\r\n*2\r\n$",
        "CLIENT GETNAME\r\n", "GET k\r\n",
    };
    kv_framed("clients", 0, who, reads, sizeof(who) / sizeof(who[0]));
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: %s DIR\n", argv[0]);
        return 2;
    }
    outdir = argv[1];
    mkdir(outdir, 0755);
    fill_ram();
    streams();
    replies();
    codecs();
    monitor_lines();
    kv_requests();
    return 0;
}
