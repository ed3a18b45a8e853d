/* transport-int.h - the ops table each transport implements. */
#ifndef LM_TRANSPORT_INT_H
#define LM_TRANSPORT_INT_H

#include <signal.h>

#include "transport/transport.h"

typedef struct lm_transport_ops {
    const char *prefix;   /* "tcp:" ... */
    bool (*connect)(const char *rest, lm_conn *out, livemig_error *err);
    bool (*listen)(const char *rest, lm_listener *out, livemig_error *err);
} lm_transport_ops;

extern const lm_transport_ops lm_transport_tcp;
extern const lm_transport_ops lm_transport_unix;
extern const lm_transport_ops lm_transport_file;
extern const lm_transport_ops lm_transport_exec;

#endif
