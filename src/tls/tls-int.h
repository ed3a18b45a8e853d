/* tls-int.h - what the files of src/tls share.  Not for use outside it. */
#ifndef LM_TLS_INT_H
#define LM_TLS_INT_H

#include <gnutls/gnutls.h>
#include <json-c/json.h>
#include <stdatomic.h>

#include "tls/tls.h"

#define LM_TLS_ID_MAX 128

/* Property reading for object-add: each helper returns false with @err
 * naming the property when it has the wrong type; a missing optional
 * property leaves *out unchanged. */
bool lm_prop_str(struct json_object *args, const char *type, const char *name,
                 bool required, const char **out, livemig_error *err);
bool lm_prop_bool(struct json_object *args, const char *type,
                  const char *name, bool *out, livemig_error *err);
/* @names: the properties @type knows (NULL-terminated), besides qom-type
 * and id; anything else is refused. */
bool lm_props_known(struct json_object *args, const char *type,
                    const char *const *names, livemig_error *err);

/* A secret's bytes (NUL-terminated copy, free with lm_secret_free). */
char *lm_objects_secret(lm_objects *o, const char *id, const char *who,
                        livemig_error *err);
void lm_secret_free(char *s);

struct lm_tls_creds {
    atomic_int ref;
    char id[LM_TLS_ID_MAX];
    bool server;
    bool x509;
    bool verify_peer;
    char priority[256];
    gnutls_certificate_credentials_t cert;      /* x509 */
    gnutls_psk_server_credentials_t psk_server; /* psk, server */
    gnutls_psk_client_credentials_t psk_client; /* psk, client */
};

struct lm_tls_authz {
    atomic_int ref;
    char id[LM_TLS_ID_MAX];
    bool allow;                  /* policy when no rule matches */
    size_t nrules;
    struct lm_authz_rule {
        char *match;
        bool allow;
        bool glob;
    } *rules;
};

/* Build from object-add's arguments (@type: "tls-creds-x509" or
 * "tls-creds-psk"); @o resolves passwordid. */
lm_tls_creds *lm_tls_creds_new(lm_objects *o, const char *type,
                               const char *id, struct json_object *args,
                               livemig_error *err);
lm_tls_authz *lm_tls_authz_new(const char *id, struct json_object *args,
                               livemig_error *err);

#endif
