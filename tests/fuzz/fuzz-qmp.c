/*
 * fuzz-qmp.c - QMP as a client's bytes meet it: the strict framing
 * (src/monitor/qmp-framing.c, qmp-strict.c), then the envelope checks,
 * argument checking and the commands (monitor.c, qmp-cmds.c) of a real
 * monitor on an engine with one small RAM block.
 *
 * Commands that would reach outside the process (migrate, migrate-
 * incoming: sockets, files and exec: URIs) or end it (quit) keep their
 * argument checking but run a stub; every other command runs for real.
 * Input: a mode byte (bit 0: the client already negotiated), then bytes
 * as a client sends them, several requests per input.
 *
 * Invariants: every reply is one JSON object, valid UTF-8, that
 * json-c's own parser reads back, with "return" or "error".
 */
#include <string.h>

#include "common/utf8.h"
#include "livemig/livemig.h"
#include "monitor/monitor-int.h"
#include "monitor/qmp-framing.h"
#include "fuzz.h"

static lm_monitor *mon;

static json_object *stub(lm_monitor *m, const lm_cmd *c, json_object *args,
                         livemig_error *err)
{
    (void)m; (void)c; (void)args; (void)err;
    return json_object_new_object();
}

static void setup(void)
{
    livemig_error err = { 0 };
    livemig *lm = livemig_new(&err);
    if (!lm)
        abort();
    void *ram = livemig_ram_alloc(64 * 4096, &err);
    if (!ram || !livemig_ram_add(lm, "ram", ram, 64 * 4096,
                                 LIVEMIG_TRACKER_MANUAL, &err))
        abort();
    if (!(mon = lm_monitor_new(lm, &err)))
        abort();
    static const char *const outside[] = { "migrate", "migrate-incoming",
                                            "quit", "mc-failover" };
    for (size_t i = 0; i < lm_monitor_ncmds(mon); i++) {
        lm_cmd *c = (lm_cmd *)lm_monitor_cmd_at(mon, i);
        for (size_t k = 0; k < sizeof(outside) / sizeof(outside[0]); k++)
            if (strcmp(c->name, outside[k]) == 0)
                c->fn = stub;
    }
}

typedef struct ctx {
    bool negotiated;
    int n;
} ctx;

static void check_reply(json_object *r)
{
    FZ_CHECK(json_object_is_type(r, json_type_object));
    FZ_CHECK(json_object_object_get_ex(r, "return", NULL) ||
             json_object_object_get_ex(r, "error", NULL));
    const char *t = json_object_to_json_string_ext(r, JSON_C_TO_STRING_PLAIN);
    size_t len = strlen(t);
    FZ_CHECK(lm_utf8_valid(t, len, NULL));
    FZ_CHECK(memchr(t, '\n', len) == NULL);
    json_object *back = json_tokener_parse(t);
    FZ_CHECK(back && json_object_is_type(back, json_type_object));
    json_object_put(back);
}

static void on_value(void *opaque, json_object *v, const char *error,
                     bool oversize)
{
    ctx *c = opaque;
    (void)oversize;
    if (error) {
        FZ_CHECK(!v);
        FZ_CHECK(lm_utf8_valid(error, strlen(error), NULL));
        return;
    }
    if (c->n++ < 64) {
        json_object *r = lm_monitor_reply(mon, v, &c->negotiated);
        check_reply(r);
        json_object_put(r);
    }
    json_object_put(v);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!mon)
        setup();
    if (size < 1)
        return 0;
    lm_qmp_parser *p = lm_qmp_parser_new(LM_QMP_MAX_INPUT);
    if (!p)
        abort();
    lm_qmp_parser_set_strict(p, true);
    /* The first byte says whether this client is already past
     * qmp_capabilities, so the fuzzer need not find it every time; the
     * rest is what the client sends. */
    ctx c = { .negotiated = data[0] & 1 };
    (void)lm_qmp_parser_feed(p, (const char *)data + 1, size - 1, on_value,
                             &c);
    lm_qmp_parser_free(p);
    return 0;
}
