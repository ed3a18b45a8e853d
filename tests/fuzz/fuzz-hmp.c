/*
 * fuzz-hmp.c - the human monitor (src/monitor/hmp.c) and the parsing of
 * tunable values with unit suffixes (src/tunables/tunables-parse.c).
 *
 * Mode byte even: the rest is one HMP command line, run by a real
 * monitor (commands that reach outside the process run stubs, as in
 * fuzz-qmp.c).  Mode odd: the rest is a value given to the tunable the
 * mode selects, as `migrate_set_parameter NAME VALUE` would.
 */
#include <string.h>

#include "livemig/livemig.h"
#include "monitor/monitor-int.h"
#include "tunables/tunables.h"
#include "fuzz.h"

static lm_monitor *mon;
static lm_tunables *tun;
static json_object *names;

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
    if (!lm || !(mon = lm_monitor_new(lm, &err)) ||
        !(tun = lm_tunables_new()))
        abort();
    static const char *const outside[] = { "migrate", "migrate-incoming",
                                            "quit", "mc-failover" };
    for (size_t i = 0; i < lm_monitor_ncmds(mon); i++) {
        lm_cmd *c = (lm_cmd *)lm_monitor_cmd_at(mon, i);
        for (size_t k = 0; k < sizeof(outside) / sizeof(outside[0]); k++)
            if (strcmp(c->name, outside[k]) == 0)
                c->fn = stub;
    }
    names = lm_tunables_parameter_info();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!mon)
        setup();
    if (size < 1)
        return 0;
    char *s = malloc(size);
    if (!s)
        return 0;
    memcpy(s, data + 1, size - 1);
    s[size - 1] = '\0';
    if (!(data[0] & 1)) {
        free(lm_hmp_run(mon, s));
    } else {
        size_t n = json_object_array_length(names);
        json_object *row = json_object_array_get_idx(names,
                                                     (data[0] >> 1) % n);
        json_object *name;
        if (json_object_object_get_ex(row, "name", &name)) {
            livemig_error err = { 0 };
            (void)lm_tunables_set_from_string(
                tun, json_object_get_string(name), s, &err);
        }
    }
    free(s);
    return 0;
}
