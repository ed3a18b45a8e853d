/*
 * qmp-objects.c - object-add, object-del and query-objects: QMP's way to
 * create the TLS credentials, secrets and authorization lists that the
 * tls-* parameters name.  The engine keeps the objects; these commands
 * only route to it.
 */
#include "monitor/monitor-int.h"

static json_object *cmd_object_add(lm_monitor *m, const lm_cmd *c,
                                   json_object *args, livemig_error *err)
{
    (void)c;
    livemig_object_add(lm_monitor_engine(m), args, err);
    return NULL;
}

static json_object *cmd_object_del(lm_monitor *m, const lm_cmd *c,
                                   json_object *args, livemig_error *err)
{
    (void)c;
    json_object *id = NULL;
    json_object_object_get_ex(args, "id", &id);
    livemig_object_del(lm_monitor_engine(m), json_object_get_string(id), err);
    return NULL;
}

static json_object *cmd_query_objects(lm_monitor *m, const lm_cmd *c,
                                      json_object *args, livemig_error *err)
{
    (void)c; (void)args; (void)err;
    return livemig_query_objects(lm_monitor_engine(m));
}

static const lm_arg a_object_del[] = {
    { "id", LM_ARG_STR, false, NULL },
};

static const lm_cmd object_cmds[] = {
    /* Properties depend on qom-type: the engine checks them, and the
     * schema describes them as ObjectOptions. */
    { .name = "object-add", .arg_type = "ObjectOptions", .ret_type = "any",
      .flags = LM_CMD_OWN_ARGS, .fn = cmd_object_add },
    { .name = "object-del", .args = a_object_del, .nargs = 1,
      .ret_type = "any", .fn = cmd_object_del },
    { .name = "query-objects", .ret_type = "[ObjectPropertyInfo]",
      .fn = cmd_query_objects },
};

bool lm_qmp_register_objects(lm_monitor *m, livemig_error *err)
{
    for (size_t i = 0; i < sizeof(object_cmds) / sizeof(object_cmds[0]); i++)
        if (!lm_monitor_register(m, &object_cmds[i], err))
            return false;
    return true;
}
