/*
 * kv-cmd-server.c - connection and server commands: PING ECHO SELECT QUIT
 * DBSIZE FLUSHDB FLUSHALL INFO CONFIG GET CLIENT SETNAME/GETNAME/ID
 * COMMAND (COUNT, INFO, DOCS).
 */
#include "guest/kv/kv-int.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "livemig/livemig.h"

void kv_cmd_ping(kv_ctx *x)
{
    if (x->argc > 2)
        kv_out_error(x->out, "ERR wrong number of arguments for 'ping' "
                     "command");
    else if (x->argc == 2)
        kv_out_bulk(x->out, KV_ARG(x, 1), KV_LEN(x, 1));
    else
        kv_out_status(x->out, "PONG");
}

void kv_cmd_echo(kv_ctx *x)
{
    kv_out_bulk(x->out, KV_ARG(x, 1), KV_LEN(x, 1));
}

void kv_cmd_select(kv_ctx *x)
{
    long long db;
    if (!kv_arg_ll(x, 1, &db))
        return;
    if (db != 0)
        kv_out_error(x->out, "ERR DB index is out of range");
    else
        kv_out_status(x->out, "OK");
}

void kv_cmd_quit(kv_ctx *x)
{
    kv_out_status(x->out, "OK");
    x->c->close_after_reply = true;
}

void kv_cmd_dbsize(kv_ctx *x)
{
    kv_out_int(x->out, (int64_t)kv_dict_size(&x->h->root->db));
}

static void flush(kv_ctx *x)
{
    if (x->argc > 2 || (x->argc == 2 && !kv_arg_is(x, 1, "async") &&
                        !kv_arg_is(x, 1, "sync"))) {
        kv_out_error(x->out, "%s", KV_ERR_SYNTAX);
        return;
    }
    kv_db_flush(x->h);
    kv_out_status(x->out, "OK");
}

void kv_cmd_flushdb(kv_ctx *x)
{
    flush(x);
}

void kv_cmd_flushall(kv_ctx *x)
{
    flush(x);
}

/* ---- INFO ------------------------------------------------------------- */

static void human(uint64_t b, char *buf, size_t len)
{
    if (b < 1024)
        snprintf(buf, len, "%lluB", (unsigned long long)b);
    else if (b < 1024 * 1024)
        snprintf(buf, len, "%.2fK", b / 1024.0);
    else if (b < 1024ull * 1024 * 1024)
        snprintf(buf, len, "%.2fM", b / 1048576.0);
    else
        snprintf(buf, len, "%.2fG", b / 1073741824.0);
}

static void line(kv_out *o, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void line(kv_out *o, const char *fmt, ...)
{
    char tmp[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof(tmp) - 2, fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    if ((size_t)n > sizeof(tmp) - 3)
        n = (int)sizeof(tmp) - 3;
    memcpy(tmp + n, "\r\n", 2);
    kv_out_raw(o, tmp, (size_t)n + 2);
}

static bool want(kv_ctx *x, const char *section, bool dflt)
{
    if (x->argc == 1)
        return dflt;
    for (size_t i = 1; i < x->argc; i++)
        if (kv_arg_is(x, i, section) || kv_arg_is(x, i, "all") ||
            kv_arg_is(x, i, "everything") ||
            (dflt && kv_arg_is(x, i, "default")))
            return true;
    return false;
}

static void info_text(kv_ctx *x, kv_out *o)
{
    kv_store *s = x->s;
    kv_root *r = x->h->root;
    char a[32], b[32];
    if (want(x, "server", true)) {
        line(o, "# Server");
        line(o, "redis_version:7.0.15");
        line(o, "redis_mode:standalone");
        line(o, "livemig_version:%s", LIVEMIG_VERSION_STRING);
        line(o, "os:Linux");
        line(o, "arch_bits:%zu", sizeof(void *) * 8);
        line(o, "process_id:%ld", (long)getpid());
        line(o, "tcp_port:%d", s->port);
        line(o, "store_clock_ms:%lld", (long long)x->now);
        kv_out_raw(o, "\r\n", 2);
    }
    if (want(x, "clients", true)) {
        kv_server_info si = { 0 };
        kv_server_get_info(s->srv, &si);
        line(o, "# Clients");
        line(o, "connected_clients:%llu", (unsigned long long)si.clients);
        line(o, "maxclients:%llu", (unsigned long long)si.max_clients);
        line(o, "blocked_clients:0");
        line(o, "replies_held_bytes:%llu",
             (unsigned long long)si.held_bytes);
        line(o, "client_output_buffer_limit:%llu",
             (unsigned long long)si.out_limit);
        line(o, "clients_dropped_for_output:%llu",
             (unsigned long long)si.dropped);
        kv_out_raw(o, "\r\n", 2);
    }
    if (want(x, "memory", true)) {
        uint64_t arena = r->arena_end - r->arena_start;
        human(r->used, a, sizeof(a));
        human(arena, b, sizeof(b));
        line(o, "# Memory");
        line(o, "used_memory:%llu", (unsigned long long)r->used);
        line(o, "used_memory_human:%s", a);
        line(o, "maxmemory:%llu", (unsigned long long)arena);
        line(o, "maxmemory_human:%s", b);
        line(o, "maxmemory_policy:noeviction");
        line(o, "block_size:%llu", (unsigned long long)r->size);
        line(o, "block_free_bytes:%llu",
             (unsigned long long)kv_heap_avail(x->h));
        line(o, "block_never_used_bytes:%llu",
             (unsigned long long)(r->arena_end - r->bump));
        line(o, "allocator_chunks:%llu", (unsigned long long)r->chunks);
        line(o, "dirty_tracker:%s", s->tracker);
        kv_out_raw(o, "\r\n", 2);
    }
    if (want(x, "stats", true)) {
        line(o, "# Stats");
        line(o, "total_connections_received:%llu",
             (unsigned long long)s->n.connections);
        line(o, "total_commands_processed:%llu",
             (unsigned long long)s->n.commands);
        line(o, "keyspace_hits:%llu", (unsigned long long)s->n.hits);
        line(o, "keyspace_misses:%llu", (unsigned long long)s->n.misses);
        line(o, "expired_keys:%llu", (unsigned long long)s->n.expired);
        line(o, "rejected_oom:%llu", (unsigned long long)s->n.rejected);
        kv_out_raw(o, "\r\n", 2);
    }
    if (want(x, "livemig", true) && s->guest) {
        line(o, "# Livemig");
        kv_guest_info(s->guest, o);
        kv_out_raw(o, "\r\n", 2);
    }
    if (want(x, "keyspace", true)) {
        line(o, "# Keyspace");
        uint64_t keys = kv_dict_size(&r->db);
        if (keys)
            line(o, "db0:keys=%llu,expires=%llu,avg_ttl=0",
                 (unsigned long long)keys, (unsigned long long)r->expires);
        kv_out_raw(o, "\r\n", 2);
    }
}

void kv_cmd_info(kv_ctx *x)
{
    kv_out o = { 0 };
    info_text(x, &o);
    if (o.oom) {
        kv_out_free(&o);
        kv_out_error(x->out, "ERR out of memory building INFO");
        return;
    }
    /* Redis ends the text with one CRLF, not a blank line. */
    size_t len = o.len;
    if (len >= 4 && !memcmp(o.p + len - 4, "\r\n\r\n", 4))
        len -= 2;
    kv_out_bulk(x->out, o.p, len);
    kv_out_free(&o);
}

/* ---- CONFIG GET ---------------------------------------------------------- */

void kv_cmd_config(kv_ctx *x)
{
    if (!kv_arg_is(x, 1, "get")) {
        if (kv_arg_is(x, 1, "set") || kv_arg_is(x, 1, "resetstat") ||
            kv_arg_is(x, 1, "rewrite"))
            kv_out_error(x->out, "ERR CONFIG %.*s is not supported: the kv "
                         "store is configured by livemigd --guest kv,...",
                         (int)(KV_LEN(x, 1) > 16 ? 16 : KV_LEN(x, 1)),
                         KV_ARG(x, 1));
        else
            kv_out_error(x->out, "ERR unknown subcommand '%.*s'. Try CONFIG "
                         "HELP.", (int)(KV_LEN(x, 1) > 64 ? 64
                                                         : KV_LEN(x, 1)),
                         KV_ARG(x, 1));
        return;
    }
    if (x->argc < 3) {
        kv_out_error(x->out, "ERR wrong number of arguments for 'config|get' "
                     "command");
        return;
    }
    kv_server_info si = { 0 };
    kv_server_get_info(x->s->srv, &si);
    kv_root *r = x->h->root;
    char maxmem[32], port[16], maxcl[32], outlim[96];
    snprintf(maxmem, sizeof(maxmem), "%llu",
             (unsigned long long)(r->arena_end - r->arena_start));
    snprintf(port, sizeof(port), "%d", x->s->port);
    snprintf(maxcl, sizeof(maxcl), "%llu", (unsigned long long)si.max_clients);
    snprintf(outlim, sizeof(outlim), "normal %llu %llu 0 replica 0 0 0 "
             "pubsub 0 0 0", (unsigned long long)si.out_limit,
             (unsigned long long)si.out_limit);
    const char *params[][2] = {
        { "appendonly", "no" },
        { "save", "" },
        { "databases", "1" },
        { "maxmemory", maxmem },
        { "maxmemory-policy", "noeviction" },
        { "port", port },
        { "maxclients", maxcl },
        { "timeout", "0" },
        { "proto-max-bulk-len", "536870912" },
        { "client-output-buffer-limit", outlim },
        { "cluster-enabled", "no" },
    };
    size_t np = sizeof(params) / sizeof(params[0]);
    bool hit[sizeof(params) / sizeof(params[0])] = { false };
    size_t n = 0;
    for (size_t i = 2; i < x->argc; i++)
        for (size_t k = 0; k < np; k++)
            if (!hit[k] && kv_glob(KV_ARG(x, i), KV_LEN(x, i), params[k][0],
                                   strlen(params[k][0]), true)) {
                hit[k] = true;
                n++;
            }
    kv_out_array(x->out, 2 * n);
    for (size_t k = 0; k < np; k++) {
        if (!hit[k])
            continue;
        kv_out_bulk_str(x->out, params[k][0]);
        kv_out_bulk_str(x->out, params[k][1]);
    }
}

/* ---- CLIENT ------------------------------------------------------------- */

void kv_cmd_client(kv_ctx *x)
{
    if (kv_arg_is(x, 1, "id") && x->argc == 2) {
        kv_out_int(x->out, (int64_t)x->c->id);
    } else if (kv_arg_is(x, 1, "getname") && x->argc == 2) {
        if (x->c->name[0])
            kv_out_bulk_str(x->out, x->c->name);
        else
            kv_out_null(x->out);
    } else if (kv_arg_is(x, 1, "setname") && x->argc == 3) {
        size_t len = KV_LEN(x, 2);
        const char *p = KV_ARG(x, 2);
        for (size_t i = 0; i < len; i++) {
            if (p[i] < '!' || p[i] > '~') {
                kv_out_error(x->out, "ERR Client names cannot contain "
                             "spaces, newlines or special characters.");
                return;
            }
        }
        if (len >= sizeof(x->c->name)) {
            kv_out_error(x->out, "ERR client name is longer than %zu bytes; "
                         "choose a shorter one", sizeof(x->c->name) - 1);
            return;
        }
        memcpy(x->c->name, p, len);
        x->c->name[len] = '\0';
        kv_out_status(x->out, "OK");
    } else if (kv_arg_is(x, 1, "id") || kv_arg_is(x, 1, "getname") ||
               kv_arg_is(x, 1, "setname")) {
        kv_out_error(x->out, "ERR wrong number of arguments for 'client|%.*s' "
                     "command", (int)KV_LEN(x, 1), KV_ARG(x, 1));
    } else {
        kv_out_error(x->out, "ERR unknown subcommand '%.*s'. Try CLIENT "
                     "HELP.", (int)(KV_LEN(x, 1) > 64 ? 64 : KV_LEN(x, 1)),
                     KV_ARG(x, 1));
    }
}

/* ---- COMMAND ------------------------------------------------------------ */

static void command_info(kv_out *o, const kv_cmd *c)
{
    static const struct { unsigned bit; const char *name; } fl[] = {
        { KV_CMD_WRITE, "write" }, { KV_CMD_READONLY, "readonly" },
        { KV_CMD_DENYOOM, "denyoom" }, { KV_CMD_ADMIN, "admin" },
        { KV_CMD_FAST, "fast" },
    };
    size_t nf = 0;
    for (size_t i = 0; i < sizeof(fl) / sizeof(fl[0]); i++)
        nf += (c->flags & fl[i].bit) != 0;
    kv_out_array(o, 10);
    kv_out_bulk_str(o, c->name);
    kv_out_int(o, c->arity);
    kv_out_array(o, nf);
    for (size_t i = 0; i < sizeof(fl) / sizeof(fl[0]); i++)
        if (c->flags & fl[i].bit)
            kv_out_status(o, fl[i].name);
    kv_out_int(o, c->first_key);
    kv_out_int(o, c->last_key);
    kv_out_int(o, c->step);
    for (int i = 0; i < 4; i++)      /* ACL categories, tips, key specs,
                                        subcommands */
        kv_out_array(o, 0);
}

void kv_cmd_command(kv_ctx *x)
{
    size_t n;
    const kv_cmd *t = kv_cmd_table(&n);
    if (x->argc == 1) {
        kv_out_array(x->out, n);
        for (size_t i = 0; i < n; i++)
            command_info(x->out, &t[i]);
    } else if (kv_arg_is(x, 1, "count") && x->argc == 2) {
        kv_out_int(x->out, (int64_t)n);
    } else if (kv_arg_is(x, 1, "info")) {
        kv_out_array(x->out, x->argc - 2);
        for (size_t a = 2; a < x->argc; a++) {
            const kv_cmd *c = NULL;
            for (size_t i = 0; i < n && !c; i++)
                if (kv_arg_is(x, a, t[i].name))
                    c = &t[i];
            if (c)
                command_info(x->out, c);
            else
                kv_out_null_array(x->out);
        }
    } else if (kv_arg_is(x, 1, "docs")) {
        kv_out_array(x->out, 0);    /* no docs: clients fall back */
    } else {
        kv_out_error(x->out, "ERR unknown subcommand '%.*s'. Try COMMAND "
                     "HELP.", (int)(KV_LEN(x, 1) > 64 ? 64 : KV_LEN(x, 1)),
                     KV_ARG(x, 1));
    }
}
