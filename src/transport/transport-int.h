/* transport-int.h - the ops table each transport implements. */
#ifndef LM_TRANSPORT_INT_H
#define LM_TRANSPORT_INT_H

#include <signal.h>

#include "transport/transport.h"

typedef struct lm_transport_ops {
    const char *prefix;   /* "tcp:" ... */
    /* May wait, but must give up ("cancelled") once *cancel is set. */
    bool (*connect)(const char *rest, atomic_bool *cancel, lm_conn *out,
                    livemig_error *err);
    bool (*listen)(const char *rest, lm_listener *out, livemig_error *err);
    /* Optional: refuse a malformed address at once, opening nothing. */
    bool (*check)(const char *rest, livemig_error *err);
} lm_transport_ops;

/* *@cancel is set (NULL: never); sets "cancelled" in @err when it is. */
bool lm_transport_cancelled(atomic_bool *cancel, livemig_error *err);

extern const lm_transport_ops lm_transport_tcp;
extern const lm_transport_ops lm_transport_unix;
extern const lm_transport_ops lm_transport_file;
extern const lm_transport_ops lm_transport_exec;

#endif
