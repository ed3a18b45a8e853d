/* ctl.h - what the files of livemig-ctl share. */
#ifndef LM_CTL_H
#define LM_CTL_H

#include <json-c/json.h>

#include "livemig/qmp-client.h"

/* Exit codes a script can rely on. */
enum {
    CTL_OK = 0,
    CTL_CMD_ERROR = 1,    /* the daemon reported an error */
    CTL_USAGE = 2,        /* bad command line */
    CTL_NO_CONNECT = 3,   /* cannot reach the monitor */
};

/* Run a command; on error print "livemig-ctl: CMD: desc" and return NULL. */
json_object *ctl_exec(livemig_qmp *q, const char *cmd, json_object *args);

/* livemig-ctl migrate URI: start, show progress, summarise. */
int ctl_migrate(livemig_qmp *q, const char *uri);

#endif
