/*
 * test-qmp.c - integration tests of the QMP monitor against a real
 * livemigd: wire protocol, negotiation, every command, every kind of bad
 * input, many clients, events.  Each test starts its own daemon.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "harness.h"

#define T_MS 5000

static int setup(void **state)
{
    *state = lmh_start(NULL);
    return 0;
}

static int setup_guest(void **state)
{
    *state = lmh_start("--guest", "pattern,size=64M", NULL);
    return 0;
}

static int teardown(void **state)
{
    lmh_daemon *d = *state;
    bool clean = lmh_stop(d);
    lmh_free(d);
    assert_true(clean);
    return 0;
}

/* Connect raw, read the greeting, negotiate. */
static int raw_negotiated(lmh_daemon *d)
{
    int fd = lmh_raw_connect(d);
    json_object *g = lmh_raw_read(fd, T_MS);
    assert_non_null(lmh_get(g, "QMP"));
    json_object_put(g);
    const char *caps = "{\"execute\": \"qmp_capabilities\"}\n";
    assert_true(lmh_raw_send(fd, caps, strlen(caps)));
    json_object *r = lmh_raw_read(fd, T_MS);
    assert_non_null(lmh_get(r, "return"));
    json_object_put(r);
    return fd;
}

/* Send @line (a newline is added) and read one reply. */
static json_object *raw_cmd(int fd, const char *line)
{
    assert_true(lmh_raw_send(fd, line, strlen(line)));
    assert_true(lmh_raw_send(fd, "\n", 1));
    json_object *r = lmh_raw_read(fd, T_MS);
    if (!r)
        fail_msg("no reply to %s", line);
    return r;
}

static void assert_error(json_object *r, const char *cls, const char *part)
{
    const char *c = lmh_get_str(r, "error.class");
    const char *desc = lmh_get_str(r, "error.desc");
    if (!c || strcmp(c, cls) || (part && (!desc || !strstr(desc, part))))
        fail_msg("expected error %s mentioning \"%s\", got %s", cls,
                 part ? part : "", json_object_to_json_string(r));
}

static void raw_expect_error(int fd, const char *line, const char *cls,
                             const char *part)
{
    json_object *r = raw_cmd(fd, line);
    assert_error(r, cls, part);
    json_object_put(r);
}

/* ---- wire protocol ----------------------------------------------------- */

static void test_greeting(void **state)
{
    lmh_daemon *d = *state;
    int fd = lmh_raw_connect(d);
    json_object *g = lmh_raw_read(fd, T_MS);
    assert_non_null(g);
    assert_int_equal(lmh_get_int(g, "QMP.version.qemu.major"),
                     LIVEMIG_VERSION_MAJOR);
    assert_int_equal(lmh_get_int(g, "QMP.version.qemu.minor"),
                     LIVEMIG_VERSION_MINOR);
    assert_int_equal(lmh_get_int(g, "QMP.version.qemu.micro"),
                     LIVEMIG_VERSION_MICRO);
    assert_string_equal(lmh_get_str(g, "QMP.version.package"),
                        "livemig " LIVEMIG_VERSION_STRING);
    json_object *caps = lmh_get(g, "QMP.capabilities");
    assert_true(json_object_is_type(caps, json_type_array));
    assert_int_equal(json_object_array_length(caps), 0);
    json_object_put(g);
    lmh_raw_close(fd);

    /* The socket is private to its owner. */
    struct stat st;
    assert_int_equal(stat(d->sock, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
}

static void test_negotiation(void **state)
{
    lmh_daemon *d = *state;
    int fd = lmh_raw_connect(d);
    json_object_put(lmh_raw_read(fd, T_MS));
    raw_expect_error(fd, "{\"execute\": \"query-status\"}", "CommandNotFound",
                     "Expecting capabilities negotiation with "
                     "'qmp_capabilities'");
    raw_expect_error(fd, "{\"execute\": \"no-such-command\"}",
                     "CommandNotFound", "Expecting capabilities negotiation");
    raw_expect_error(fd, "{\"execute\": \"qmp_capabilities\", \"arguments\": "
                     "{\"enable\": [\"oob\"]}}", "GenericError", "oob");
    json_object *r = raw_cmd(fd, "{\"execute\": \"qmp_capabilities\", "
                                 "\"id\": \"neg-1\"}");
    assert_non_null(lmh_get(r, "return"));
    assert_string_equal(lmh_get_str(r, "id"), "neg-1");
    json_object_put(r);
    raw_expect_error(fd, "{\"execute\": \"qmp_capabilities\"}",
                     "CommandNotFound", "already complete");
    /* "id" is echoed whatever JSON value it is. */
    const char *ids[] = { "42", "\"str\"", "[1, {\"a\": null}]",
                          "{\"nested\": {\"x\": 1.5}}", "null" };
    for (size_t i = 0; i < sizeof(ids) / sizeof(ids[0]); i++) {
        char line[256];
        snprintf(line, sizeof(line),
                 "{\"execute\": \"query-status\", \"id\": %s}", ids[i]);
        r = raw_cmd(fd, line);
        json_object *want = json_tokener_parse(ids[i]), *got = NULL;
        assert_true(json_object_object_get_ex(r, "id", &got));
        assert_true(json_object_equal(want, got));
        assert_non_null(lmh_get(r, "return.status"));
        json_object_put(want);
        json_object_put(r);
    }
    lmh_raw_close(fd);
}

static void test_bad_input(void **state)
{
    lmh_daemon *d = *state;
    int fd = raw_negotiated(d);
    raw_expect_error(fd, "{\"execute\": nonsense}", "GenericError",
                     "JSON parse error");
    raw_expect_error(fd, "]]]", "GenericError", "JSON parse error");
    raw_expect_error(fd, "[1, 2]", "GenericError",
                     "QMP input must be a JSON object");
    raw_expect_error(fd, "\"execute\"", "GenericError",
                     "QMP input must be a JSON object");
    raw_expect_error(fd, "{\"arguments\": {}}", "GenericError",
                     "lacks member 'execute'");
    raw_expect_error(fd, "{\"execute\": 5}", "GenericError",
                     "'execute' must be a string");
    raw_expect_error(fd, "{\"execute\": \"stop\", \"arguments\": [1]}",
                     "GenericError", "'arguments' must be an object");
    raw_expect_error(fd, "{\"execute\": \"stop\", \"bogus\": 1}",
                     "GenericError", "'bogus' is unexpected");
    raw_expect_error(fd, "{\"execute\": \"frobnicate\", \"id\": 3}",
                     "CommandNotFound",
                     "The command frobnicate has not been found");

    /* Split across writes, one byte at a time. */
    const char *cmd = "{\"execute\": \"query-version\", \"id\": 9}\n";
    for (size_t i = 0; cmd[i]; i++)
        assert_true(lmh_raw_send(fd, cmd + i, 1));
    json_object *r = lmh_raw_read(fd, T_MS);
    assert_string_equal(lmh_get_str(r, "return.package"),
                        "livemig " LIVEMIG_VERSION_STRING);
    json_object_put(r);

    /* Several in one write: replies in order. */
    const char *three = "{\"execute\": \"query-status\", \"id\": 1}"
                        "{\"execute\": \"bad\", \"id\": 2}\n"
                        "{\"execute\": \"query-version\", \"id\": 3}\n";
    assert_true(lmh_raw_send(fd, three, strlen(three)));
    for (int i = 1; i <= 3; i++) {
        r = lmh_raw_read(fd, T_MS);
        assert_int_equal(lmh_get_int(r, "id"), i);
        assert_true((i == 2) == (lmh_get(r, "error") != NULL));
        json_object_put(r);
    }
    lmh_raw_close(fd);
}

static void test_argument_errors(void **state)
{
    lmh_daemon *d = *state;
    livemig_qmp *q = d->qmp;
    lmh_err(q, "migrate", "{\"uri\": \"unix:/nonexistent\", \"speed\": 1}",
            "GenericError", "'speed' is unexpected");
    lmh_err(q, "migrate", "{}", "GenericError", "'uri' is missing");
    lmh_err(q, "migrate", "{\"uri\": 5}", "GenericError",
            "Invalid parameter type for 'uri'");
    lmh_err(q, "migrate", "{\"uri\": \"unix:/x\", \"detach\": \"yes\"}",
            "GenericError", "'detach'");
    lmh_err(q, "migrate", "{\"uri\": \"unix:/x\", \"resume\": true}",
            "GenericError", "resume");
    lmh_err(q, "migrate-incoming", "{}", "GenericError", "'uri' is missing");
    lmh_err(q, "migrate-incoming", "{\"uri\": \"defer\"}", "GenericError",
            "defer");
    lmh_err(q, "migrate-continue", "{}", "GenericError",
            "'state' is missing");
    lmh_err(q, "migrate-continue", "{\"state\": true}", "GenericError",
            "'state'");
    lmh_err(q, "query-migrate-capabilities", "{\"extended\": 1}",
            "GenericError", "'extended'");
    lmh_err(q, "query-status", "{\"verbose\": true}", "GenericError",
            "takes no arguments");
    lmh_err(q, "human-monitor-command", "{}", "GenericError",
            "'command-line' is missing");
    lmh_err(q, "migrate-set-capabilities", "{\"capabilities\": {}}",
            "GenericError", "'capabilities'");
    lmh_err(q, "migrate-set-parameters", "{\"no-such-parameter\": 1}",
            "GenericError", "no-such-parameter");
    lmh_err(q, "migrate-set-parameters", "{\"downtime-limit\": \"fast\"}",
            "GenericError", "downtime-limit");
    lmh_err(q, "migrate-set-parameters", "{\"downtime-limit\": 0}",
            "GenericError", "downtime-limit");
    lmh_err(q, "migrate-set-parameters",
            "{\"downtime-limit\": 99999999999}", "GenericError",
            "downtime-limit");
    lmh_err(q, "migrate_set_downtime", "{\"value\": \"1\"}", "GenericError",
            "'value'");
    lmh_err(q, "migrate_set_speed", "{}", "GenericError",
            "'value' is missing");
    /* The monitor still serves. */
    json_object_put(lmh_ok(q, "query-status", NULL));
}

/* ---- commands ---------------------------------------------------------- */

static const char *const required_cmds[] = {
    "qmp_capabilities", "query-commands", "query-qmp-schema",
    "query-version", "query-status", "stop", "cont", "quit", "migrate",
    "migrate-incoming", "migrate_cancel", "migrate-cancel",
    "migrate-continue", "query-migrate", "migrate-set-parameters",
    "query-migrate-parameters", "migrate-set-capabilities",
    "query-migrate-capabilities", "query-migrate-parameter-info",
    "human-monitor-command", "migrate_set_downtime", "migrate_set_speed",
};

static json_object *find_named(json_object *arr, const char *key,
                               const char *name)
{
    size_t n = json_object_array_length(arr);
    for (size_t i = 0; i < n; i++) {
        json_object *e = json_object_array_get_idx(arr, i);
        const char *s = lmh_get_str(e, key);
        if (s && strcmp(s, name) == 0)
            return e;
    }
    return NULL;
}

static bool has_feature(json_object *e, const char *f)
{
    json_object *fs = lmh_get(e, "features");
    size_t n = fs ? json_object_array_length(fs) : 0;
    for (size_t i = 0; i < n; i++)
        if (!strcmp(json_object_get_string(json_object_array_get_idx(fs, i)),
                    f))
            return true;
    return false;
}

static void test_query_commands_and_version(void **state)
{
    lmh_daemon *d = *state;
    json_object *v = lmh_ok(d->qmp, "query-version", NULL);
    assert_int_equal(lmh_get_int(v, "qemu.major"), LIVEMIG_VERSION_MAJOR);
    assert_int_equal(lmh_get_int(v, "qemu.minor"), LIVEMIG_VERSION_MINOR);
    assert_int_equal(lmh_get_int(v, "qemu.micro"), LIVEMIG_VERSION_MICRO);
    assert_string_equal(lmh_get_str(v, "package"),
                        "livemig " LIVEMIG_VERSION_STRING);
    json_object_put(v);

    json_object *cmds = lmh_ok(d->qmp, "query-commands", NULL);
    for (size_t i = 0; i < sizeof(required_cmds) / sizeof(*required_cmds);
         i++)
        if (!find_named(cmds, "name", required_cmds[i]))
            fail_msg("query-commands lacks '%s'", required_cmds[i]);
    json_object *legacy = find_named(cmds, "name", "migrate_set_speed");
    json_object *dep = lmh_get(legacy, "deprecated");
    assert_true(dep && json_object_get_boolean(dep));
    assert_null(lmh_get(find_named(cmds, "name", "migrate"), "deprecated"));
    json_object_put(cmds);
}

static void test_query_qmp_schema(void **state)
{
    lmh_daemon *d = *state;
    json_object *schema = lmh_ok(d->qmp, "query-qmp-schema", NULL);
    json_object *cmds = lmh_ok(d->qmp, "query-commands", NULL);
    size_t n = json_object_array_length(schema);
    assert_true(n > 20);

    /* Closed: every type referred to has an entry. */
    for (size_t i = 0; i < n; i++) {
        json_object *e = json_object_array_get_idx(schema, i);
        assert_non_null(lmh_get_str(e, "name"));
        const char *meta = lmh_get_str(e, "meta-type");
        assert_non_null(meta);
        const char *refs[] = { "arg-type", "ret-type", "element-type" };
        for (size_t k = 0; k < 3; k++) {
            const char *t = lmh_get_str(e, refs[k]);
            if (t && !find_named(schema, "name", t))
                fail_msg("schema entry '%s' refers to undefined type '%s'",
                         lmh_get_str(e, "name"), t);
        }
        json_object *mems = lmh_get(e, "members");
        if (mems && !strcmp(meta, "object")) {
            for (size_t k = 0; k < json_object_array_length(mems); k++) {
                const char *t = lmh_get_str(
                    json_object_array_get_idx(mems, k), "type");
                if (!t || !find_named(schema, "name", t))
                    fail_msg("member of '%s' has undefined type '%s'",
                             lmh_get_str(e, "name"), t ? t : "(none)");
            }
        }
    }
    /* Every command is described as a command. */
    for (size_t i = 0; i < json_object_array_length(cmds); i++) {
        const char *name = lmh_get_str(json_object_array_get_idx(cmds, i),
                                       "name");
        json_object *e = find_named(schema, "name", name);
        if (!e || strcmp(lmh_get_str(e, "meta-type"), "command"))
            fail_msg("no schema command entry for '%s'", name);
    }
    /* migrate's arguments come from its spec. */
    json_object *mig = find_named(schema, "name", "migrate");
    json_object *margs = find_named(schema, "name",
                                    lmh_get_str(mig, "arg-type"));
    json_object *uri = find_named(lmh_get(margs, "members"), "name", "uri");
    assert_string_equal(lmh_get_str(uri, "type"), "str");
    assert_null(lmh_get(uri, "default"));
    assert_false(json_object_object_get_ex(uri, "default", NULL));
    json_object *detach = find_named(lmh_get(margs, "members"), "name",
                                     "detach");
    assert_true(json_object_object_get_ex(detach, "default", NULL));
    /* Legacy commands are deprecated. */
    assert_true(has_feature(find_named(schema, "name", "migrate_set_speed"),
                            "deprecated"));
    /* Every parameter is a member of the set command's argument type, with
     * the live feature where the table says so. */
    json_object *set = find_named(schema, "name", "migrate-set-parameters");
    json_object *stype = find_named(schema, "name",
                                    lmh_get_str(set, "arg-type"));
    json_object *info = lmh_ok(d->qmp, "query-migrate-parameter-info", NULL);
    for (size_t i = 0; i < json_object_array_length(info); i++) {
        json_object *p = json_object_array_get_idx(info, i);
        json_object *cap = lmh_get(p, "capability");
        if (cap && json_object_get_boolean(cap))
            continue;
        const char *name = lmh_get_str(p, "name");
        json_object *m = find_named(lmh_get(stype, "members"), "name", name);
        if (!m)
            fail_msg("parameter '%s' missing from the schema", name);
        bool live = json_object_get_boolean(lmh_get(p, "live"));
        assert_true(live == has_feature(m, "live"));
    }
    /* Events. */
    assert_non_null(find_named(schema, "name", "MIGRATION"));
    assert_non_null(find_named(schema, "name", "SHUTDOWN"));
    json_object_put(info);
    json_object_put(cmds);
    json_object_put(schema);
}

static void test_parameter_info(void **state)
{
    lmh_daemon *d = *state;
    json_object *info = lmh_ok(d->qmp, "query-migrate-parameter-info", NULL);
    json_object *params = lmh_ok(d->qmp, "query-migrate-parameters", NULL);
    assert_true(json_object_array_length(info) >= 4);
    for (size_t i = 0; i < json_object_array_length(info); i++) {
        json_object *p = json_object_array_get_idx(info, i);
        const char *keys[] = { "name", "type", "default", "unit", "live",
                               "doc" };
        for (size_t k = 0; k < 6; k++)
            if (!json_object_object_get_ex(p, keys[k], NULL))
                fail_msg("parameter info %s lacks '%s'",
                         json_object_to_json_string(p), keys[k]);
        json_object *cap = lmh_get(p, "capability");
        if (!cap || !json_object_get_boolean(cap)) {
            /* No write-only tunable: every parameter is queryable. */
            if (!lmh_get(params, lmh_get_str(p, "name")))
                fail_msg("'%s' is not in query-migrate-parameters",
                         lmh_get_str(p, "name"));
        }
    }
    json_object_put(params);
    json_object_put(info);
}

static void test_status_stop_cont(void **state)
{
    lmh_daemon *d = *state;
    json_object *s = lmh_ok(d->qmp, "query-status", NULL);
    assert_true(json_object_get_boolean(lmh_get(s, "running")));
    assert_string_equal(lmh_get_str(s, "status"), "running");
    assert_false(json_object_get_boolean(lmh_get(s, "singlestep")));
    json_object_put(s);
    json_object_put(lmh_ok(d->qmp, "stop", NULL));
    s = lmh_ok(d->qmp, "query-status", NULL);
    assert_false(json_object_get_boolean(lmh_get(s, "running")));
    assert_string_equal(lmh_get_str(s, "status"), "paused");
    json_object_put(s);
    json_object_put(lmh_ok(d->qmp, "cont", NULL));
    s = lmh_ok(d->qmp, "query-status", NULL);
    assert_string_equal(lmh_get_str(s, "status"), "running");
    json_object_put(s);
    json_object *m = lmh_ok(d->qmp, "query-migrate", NULL);
    const char *st = lmh_get_str(m, "status");
    assert_true(!st || !strcmp(st, "none"));
    json_object_put(m);
}

static void test_guest_commands(void **state)
{
    lmh_daemon *d = *state;
    json_object *g = lmh_ok(d->qmp, "query-guest", NULL);
    assert_int_equal(lmh_get_int(g, "size"), 64 << 20);
    json_object_put(g);
    test_status_stop_cont(state);
    json_object *cmds = lmh_ok(d->qmp, "query-commands", NULL);
    assert_non_null(find_named(cmds, "name", "guest-verify"));
    json_object_put(cmds);
}

static void test_quit(void **state)
{
    lmh_daemon *d = *state;
    livemig_qmp *other = lmh_connect(d);
    json_object_put(lmh_ok(d->qmp, "quit", NULL));
    json_object *ev = livemig_qmp_next_event(other, T_MS);
    assert_non_null(ev);
    assert_string_equal(lmh_get_str(ev, "event"), "SHUTDOWN");
    assert_false(json_object_get_boolean(lmh_get(ev, "data.guest")));
    assert_non_null(lmh_get(ev, "timestamp.seconds"));
    json_object_put(ev);
    livemig_qmp_close(other);
    livemig_qmp_close(d->qmp);
    d->qmp = NULL;
    assert_true(lmh_wait_exit(d, T_MS));
    assert_true(WIFEXITED(d->status));
    assert_int_equal(WEXITSTATUS(d->status), 0);
    /* The socket file is gone. */
    assert_int_not_equal(access(d->sock, F_OK), 0);
}

/* ---- robustness -------------------------------------------------------- */

static void test_oversize_line(void **state)
{
    lmh_daemon *d = *state;
    int fd = raw_negotiated(d);
    const size_t big = 10u << 20;
    char *line = malloc(big);
    assert_non_null(line);
    const char *head = "{\"execute\": \"";
    memcpy(line, head, strlen(head));
    memset(line + strlen(head), 'a', big - strlen(head) - 1);
    line[big - 1] = '\n';
    /* Send it all; the server reads and discards what is over the limit,
     * so this finishes (or the peer goes away, which is fine too). */
    lmh_raw_send(fd, line, big);
    free(line);
    json_object *r = lmh_raw_read(fd, T_MS);
    if (r) {
        assert_error(r, "GenericError", "longer than");
        json_object_put(r);
    }
    assert_true(lmh_raw_wait_eof(fd, T_MS));
    lmh_raw_close(fd);
    /* Others are still served. */
    json_object_put(lmh_ok(d->qmp, "query-status", NULL));
    int fd2 = raw_negotiated(d);
    lmh_raw_close(fd2);
}

static void test_disconnects(void **state)
{
    lmh_daemon *d = *state;
    /* Half a command, then gone. */
    int fd = raw_negotiated(d);
    const char *half = "{\"execute\": \"query-st";
    assert_true(lmh_raw_send(fd, half, strlen(half)));
    lmh_raw_close(fd);
    /* A command, then gone before the reply. */
    fd = raw_negotiated(d);
    const char *full = "{\"execute\": \"query-qmp-schema\"}\n";
    assert_true(lmh_raw_send(fd, full, strlen(full)));
    lmh_raw_close(fd);
    /* Many big replies never read, then gone. */
    fd = raw_negotiated(d);
    for (int i = 0; i < 200; i++)
        if (!lmh_raw_send(fd, full, strlen(full)))
            break;
    lmh_raw_close(fd);
    /* Gone before the greeting is read. */
    fd = lmh_raw_connect(d);
    close(fd);
    /* Events to a client that never reads them. */
    fd = raw_negotiated(d);
    for (int i = 0; i < 50; i++) {
        json_object_put(lmh_ok(d->qmp, "stop", NULL));
        json_object_put(lmh_ok(d->qmp, "cont", NULL));
    }
    json_object_put(lmh_ok(d->qmp, "query-status", NULL));
    lmh_raw_close(fd);
    json_object *s = lmh_ok(d->qmp, "query-status", NULL);
    assert_string_equal(lmh_get_str(s, "status"), "running");
    json_object_put(s);
    /* Drain the events this client saw. */
    json_object *ev;
    int n = 0;
    while ((ev = livemig_qmp_next_event(d->qmp, 0)) && n < 1000) {
        json_object_put(ev);
        n++;
    }
}

#define NCLIENTS 64

static void test_many_clients(void **state)
{
    lmh_daemon *d = *state;
    livemig_qmp *q[NCLIENTS];
    for (int i = 0; i < NCLIENTS; i++)
        q[i] = lmh_connect(d);
    /* Interleave: every client sends, then every one reads. */
    for (int round = 0; round < 3; round++) {
        for (int i = 0; i < NCLIENTS; i++) {
            json_object *r = lmh_ok(q[i], "query-status", NULL);
            assert_string_equal(lmh_get_str(r, "status"), "running");
            json_object_put(r);
        }
    }
    /* An event reaches all 64. */
    json_object_put(lmh_ok(d->qmp, "stop", NULL));
    for (int i = 0; i < NCLIENTS; i++) {
        json_object *ev = livemig_qmp_next_event(q[i], T_MS);
        assert_non_null(ev);
        assert_string_equal(lmh_get_str(ev, "event"), "STOP");
        json_object_put(ev);
    }
    json_object_put(lmh_ok(d->qmp, "cont", NULL));
    for (int i = 0; i < NCLIENTS; i++)
        livemig_qmp_close(q[i]);
    json_object_put(lmh_ok(d->qmp, "query-status", NULL));
}

static void check_event(json_object *ev, const char *name)
{
    assert_non_null(ev);
    assert_string_equal(lmh_get_str(ev, "event"), name);
    long long sec = lmh_get_int(ev, "timestamp.seconds");
    long long usec = lmh_get_int(ev, "timestamp.microseconds");
    long long now = (long long)time(NULL);
    assert_true(sec > now - 60 && sec <= now + 1);
    assert_true(usec >= 0 && usec < 1000000);
}

static void test_events_to_several_clients(void **state)
{
    lmh_daemon *d = *state;
    livemig_qmp *q[3] = { lmh_connect(d), lmh_connect(d), lmh_connect(d) };
    /* A client that has not negotiated gets no events. */
    int raw = lmh_raw_connect(d);
    json_object_put(lmh_raw_read(raw, T_MS));
    json_object_put(lmh_ok(d->qmp, "stop", NULL));
    json_object_put(lmh_ok(d->qmp, "cont", NULL));
    for (int i = 0; i < 3; i++) {
        json_object *ev = livemig_qmp_next_event(q[i], T_MS);
        check_event(ev, "STOP");
        json_object_put(ev);
        ev = livemig_qmp_next_event(q[i], T_MS);
        check_event(ev, "RESUME");
        json_object_put(ev);
        livemig_qmp_close(q[i]);
    }
    json_object *ev = livemig_qmp_next_event(d->qmp, T_MS);
    check_event(ev, "STOP");
    json_object_put(ev);
    ev = livemig_qmp_next_event(d->qmp, T_MS);
    check_event(ev, "RESUME");
    json_object_put(ev);
    assert_null(lmh_raw_read(raw, 200));
    lmh_raw_close(raw);
}

/* ---- HMP --------------------------------------------------------------- */

static void assert_contains(const char *text, const char *part)
{
    if (!strstr(text, part))
        fail_msg("expected \"%s\" in:\n%s", part, text);
}

static void test_hmp(void **state)
{
    lmh_daemon *d = *state;
    livemig_qmp *q = d->qmp;
    char *t = lmh_hmp(q, "help");
    const char *cmds[] = { "info", "migrate_set_parameter",
                           "migrate_set_capability", "stop", "cont",
                           "migrate", "migrate_incoming", "migrate_cancel",
                           "migrate_continue" };
    for (size_t i = 0; i < sizeof(cmds) / sizeof(*cmds); i++)
        assert_contains(t, cmds[i]);
    free(t);
    t = lmh_hmp(q, "help migrate_set_parameter");
    assert_contains(t, "downtime-limit");
    free(t);
    t = lmh_hmp(q, "info status");
    assert_string_equal(t, "VM status: running\n");
    free(t);
    t = lmh_hmp(q, "stop");
    assert_string_equal(t, "");
    free(t);
    t = lmh_hmp(q, "info status");
    assert_string_equal(t, "VM status: paused\n");
    free(t);
    t = lmh_hmp(q, "cont");
    free(t);
    t = lmh_hmp(q, "info migrate");
    assert_contains(t, "Migration status: none");
    free(t);
    t = lmh_hmp(q, "info migrate_parameters");
    assert_contains(t, "downtime-limit");
    free(t);
    t = lmh_hmp(q, "info migrate_capabilities");
    assert_contains(t, "events");
    free(t);
    t = lmh_hmp(q, "bogus arg");
    assert_string_equal(t, "unknown command: 'bogus'; try 'help'\n");
    free(t);
    t = lmh_hmp(q, "info bogus");
    assert_contains(t, "Error:");
    free(t);
    t = lmh_hmp(q, "migrate_set_parameter no-such 1");
    assert_contains(t, "Error:");
    assert_contains(t, "no-such");
    free(t);
    t = lmh_hmp(q, "migrate_set_parameter downtime-limit 0");
    assert_contains(t, "Error:");
    free(t);
    t = lmh_hmp(q, "migrate_set_capability events maybe");
    assert_contains(t, "Error:");
    free(t);
    t = lmh_hmp(q, "migrate");
    assert_contains(t, "Error: wrong number of arguments");
    free(t);
    t = lmh_hmp(q, "migrate -x unix:/nonexistent");
    assert_contains(t, "Error:");
    free(t);
    t = lmh_hmp(q, "migrate_continue pre-switchover");
    assert_contains(t, "Error:");
    free(t);
    t = lmh_hmp(q, "migrate_incoming defer");
    assert_contains(t, "Error:");
    free(t);
    t = lmh_hmp(q, "");
    assert_string_equal(t, "");
    free(t);
    t = lmh_hmp(q, "migrate_set_downtime 0.5");
    assert_string_equal(t, "");
    free(t);
    json_object *p = lmh_ok(q, "query-migrate-parameters", NULL);
    assert_int_equal(lmh_get_int(p, "downtime-limit"), 500);
    json_object_put(p);
}

/* ---- migration commands ------------------------------------------------ */

static bool has_capability(livemig_qmp *q, const char *name)
{
    json_object *c = lmh_ok(q, "query-migrate-capabilities", NULL);
    bool found = find_named(c, "capability", name) != NULL;
    json_object_put(c);
    return found;
}

static void test_migrate_commands(void **state)
{
    lmh_daemon *src = *state;
    lmh_daemon *dst = lmh_start("--guest", "pattern,size=64M",
                                "--incoming", "defer", NULL);
    char path[400], uri[420];
    snprintf(uri, sizeof(uri), "unix:%s",
             lmh_path(dst, "mig.sock", path, sizeof(path)));
    json_object *a = json_object_new_object();
    json_object_object_add(a, "uri", json_object_new_string(uri));
    json_object_put(lmh_ok_obj(dst->qmp, "migrate-incoming", a));

    /* Events on, and the migration held so that it cannot finish. */
    json_object_put(lmh_ok(src->qmp, "migrate-set-capabilities",
        "{\"capabilities\": [{\"capability\": \"events\", \"state\": true}]}"));
    json_object_put(lmh_ok(src->qmp, "migrate-set-parameters",
                           "{\"switchover-hold\": true}"));
    a = json_object_new_object();
    json_object_object_add(a, "uri", json_object_new_string(uri));
    json_object_object_add(a, "detach", json_object_new_boolean(true));
    json_object_put(lmh_ok_obj(src->qmp, "migrate", a));
    assert_true(lmh_wait_status(src->qmp, "active", 10000));

    /* While it runs: a setup-only tunable is refused naming it and the
     * status; a live one is accepted. */
    lmh_err(src->qmp, "migrate-set-parameters",
            "{\"zero-page-detection\": \"none\"}", "GenericError",
            "zero-page-detection");
    lmh_err(src->qmp, "migrate-set-capabilities",
            "{\"capabilities\": [{\"capability\": \"events\", "
            "\"state\": false}]}", "GenericError", "events");
    json_object_put(lmh_ok(src->qmp, "migrate-set-parameters",
                           "{\"downtime-limit\": 400}"));
    json_object *r = lmh_ok(src->qmp, "query-migrate", NULL);
    assert_string_equal(lmh_get_str(r, "status"), "active");
    assert_non_null(lmh_get(r, "ram.total"));
    assert_non_null(lmh_get(r, "ram.dirty-sync-count"));
    json_object_put(r);
    char *t = lmh_hmp(src->qmp, "info migrate");
    assert_contains(t, "Migration status: active");
    free(t);

    /* A second migrate is refused at once (and the first goes on). */
    a = json_object_new_object();
    json_object_object_add(a, "uri", json_object_new_string(uri));
    lmh_err_obj(src->qmp, "migrate", a, "GenericError", NULL);
    assert_string_equal(lmh_migration_status(src->qmp), "active");

    /* Cancel through the alias; the source keeps running. */
    json_object_put(lmh_ok(src->qmp, "migrate-cancel", NULL));
    assert_true(lmh_wait_status(src->qmp, "cancelled", 10000));
    json_object *s = lmh_ok(src->qmp, "query-status", NULL);
    assert_string_equal(lmh_get_str(s, "status"), "running");
    json_object_put(s);
    /* MIGRATION events were delivered, with a status. */
    bool saw_migration = false;
    json_object *ev;
    for (int i = 0; i < 100 && (ev = livemig_qmp_next_event(src->qmp, 1000));
         i++) {
        if (!strcmp(lmh_get_str(ev, "event"), "MIGRATION")) {
            assert_non_null(lmh_get_str(ev, "data.status"));
            saw_migration = true;
        }
        const char *st = lmh_get_str(ev, "data.status");
        bool last = st && !strcmp(st, "cancelled");
        json_object_put(ev);
        if (last)
            break;
    }
    assert_true(saw_migration);
    lmh_free(dst);
}

static void test_migrate_complete_and_continue(void **state)
{
    lmh_daemon *src = *state;
    lmh_daemon *dst = lmh_start("--guest", "pattern,size=64M",
                                "--incoming", "defer", NULL);
    char path[400], uri[420];
    snprintf(uri, sizeof(uri), "unix:%s",
             lmh_path(dst, "mig.sock", path, sizeof(path)));
    json_object *a = json_object_new_object();
    json_object_object_add(a, "uri", json_object_new_string(uri));
    json_object_put(lmh_ok_obj(dst->qmp, "migrate-incoming", a));
    lmh_err(src->qmp, "migrate-continue", "{\"state\": \"pre-switchover\"}",
            "GenericError", NULL);
    bool pause = has_capability(src->qmp, "pause-before-switchover");
    if (pause)
        json_object_put(lmh_ok(src->qmp, "migrate-set-capabilities",
            "{\"capabilities\": [{\"capability\": "
            "\"pause-before-switchover\", \"state\": true}]}"));
    char *t;
    char line[500];
    snprintf(line, sizeof(line), "migrate -d %s", uri);
    t = lmh_hmp(src->qmp, line);
    assert_string_equal(t, "");
    free(t);
    if (pause) {
        assert_true(lmh_wait_status(src->qmp, "pre-switchover", 20000));
        lmh_err(src->qmp, "migrate-continue", "{\"state\": \"active\"}",
                "GenericError", NULL);
        json_object_put(lmh_ok(src->qmp, "migrate-continue",
                               "{\"state\": \"pre-switchover\"}"));
    }
    assert_true(lmh_wait_status(src->qmp, "completed", 20000));
    json_object *r = lmh_ok(src->qmp, "query-migrate", NULL);
    assert_true(lmh_get_int(r, "total-time") >= 0);
    assert_true(lmh_get_int(r, "downtime") >= 0);
    assert_true(lmh_get_int(r, "ram.transferred") >= 64 << 20);
    json_object_put(r);
    assert_true(lmh_wait_status(dst->qmp, "completed", 20000));
    json_object *s = lmh_ok(dst->qmp, "query-status", NULL);
    assert_string_equal(lmh_get_str(s, "status"), "running");
    json_object_put(s);
    json_object *v = lmh_ok(dst->qmp, "guest-verify", NULL);
    json_object_put(v);
    lmh_free(dst);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_greeting, setup, teardown),
        cmocka_unit_test_setup_teardown(test_negotiation, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_input, setup, teardown),
        cmocka_unit_test_setup_teardown(test_argument_errors, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_query_commands_and_version,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_query_qmp_schema, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_parameter_info, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_status_stop_cont, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_guest_commands, setup_guest,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_oversize_line, setup, teardown),
        cmocka_unit_test_setup_teardown(test_disconnects, setup, teardown),
        cmocka_unit_test_setup_teardown(test_many_clients, setup, teardown),
        cmocka_unit_test_setup_teardown(test_events_to_several_clients,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_hmp, setup, teardown),
        cmocka_unit_test_setup_teardown(test_migrate_commands, setup_guest,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_migrate_complete_and_continue,
                                        setup_guest, teardown),
        cmocka_unit_test_setup_teardown(test_quit, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
