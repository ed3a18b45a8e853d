/*
 * objects.c - the registry of user-creatable objects (object-add,
 * object-del, query-objects) and the secret type.
 *
 * A secret's bytes stay in this process: nothing ever returns them
 * (query-objects lists ids and types only), and they are wiped when the
 * secret is deleted.
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tls/tls-int.h"

typedef enum obj_kind { OBJ_SECRET, OBJ_CREDS, OBJ_AUTHZ } obj_kind;

typedef struct obj {
    struct obj *next;
    char id[LM_TLS_ID_MAX];
    char type[32];
    obj_kind kind;
    char *secret;                /* OBJ_SECRET */
    size_t secret_len;
    lm_tls_creds *creds;         /* OBJ_CREDS */
    lm_tls_authz *authz;         /* OBJ_AUTHZ */
} obj;

struct lm_objects {
    pthread_mutex_t lock;
    obj *head;                   /* in the order they were added */
};

lm_objects *lm_objects_new(void)
{
    lm_objects *o = calloc(1, sizeof(*o));
    if (o)
        pthread_mutex_init(&o->lock, NULL);
    return o;
}

static void obj_free(obj *b)
{
    if (b->secret) {
        explicit_bzero(b->secret, b->secret_len);
        free(b->secret);
    }
    lm_tls_creds_unref(b->creds);
    lm_tls_authz_unref(b->authz);
    free(b);
}

void lm_objects_free(lm_objects *o)
{
    if (!o)
        return;
    for (obj *b = o->head, *n; b; b = n) {
        n = b->next;
        obj_free(b);
    }
    pthread_mutex_destroy(&o->lock);
    free(o);
}

/* ---- properties --------------------------------------------------------- */

bool lm_prop_str(json_object *args, const char *type, const char *name,
                 bool required, const char **out, livemig_error *err)
{
    json_object *v;
    if (!json_object_object_get_ex(args, name, &v) || !v) {
        if (required)
            livemig_error_set(err, "object-add of '%s' needs the property "
                              "'%s'", type, name);
        return !required;
    }
    if (!json_object_is_type(v, json_type_string)) {
        livemig_error_set(err, "property '%s' of '%s' must be a string",
                          name, type);
        return false;
    }
    *out = json_object_get_string(v);
    return true;
}

bool lm_prop_bool(json_object *args, const char *type, const char *name,
                  bool *out, livemig_error *err)
{
    json_object *v;
    if (!json_object_object_get_ex(args, name, &v) || !v)
        return true;
    if (!json_object_is_type(v, json_type_boolean)) {
        livemig_error_set(err, "property '%s' of '%s' must be a boolean "
                          "(true or false)", name, type);
        return false;
    }
    *out = json_object_get_boolean(v);
    return true;
}

bool lm_props_known(json_object *args, const char *type,
                    const char *const *names, livemig_error *err)
{
    json_object_object_foreach(args, key, val) {
        (void)val;
        bool ok = !strcmp(key, "qom-type") || !strcmp(key, "id");
        for (size_t i = 0; !ok && names[i]; i++)
            ok = strcmp(key, names[i]) == 0;
        if (!ok) {
            char list[512] = "";
            size_t pos = 0;
            for (size_t i = 0; names[i] && pos < sizeof(list); i++)
                pos += (size_t)snprintf(list + pos, sizeof(list) - pos,
                                        "%s'%s'", i ? ", " : "", names[i]);
            livemig_error_set(err, "'%s' has no property '%s'; it takes %s",
                              type, key, list);
            return false;
        }
    }
    return true;
}

/* ---- secret ------------------------------------------------------------- */

static bool read_file(const char *path, char **out, size_t *len,
                      livemig_error *err)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        livemig_error_set(err, "cannot read secret file '%s': %s", path,
                          strerror(errno));
        return false;
    }
    size_t cap = 4096, n = 0;
    char *b = malloc(cap + 1);
    while (b) {
        size_t r = fread(b + n, 1, cap - n, f);
        n += r;
        if (r == 0)
            break;
        if (n == cap) {
            if (cap >= (1u << 20))
                break;
            char *nb = realloc(b, cap * 2 + 1);
            if (!nb) {
                free(b);
                b = NULL;
                break;
            }
            b = nb;
            cap *= 2;
        }
    }
    bool bad = ferror(f) || (b && n == cap);
    fclose(f);
    if (!b || bad) {
        if (b)
            free(b);
        livemig_error_set(err, "cannot read secret file '%s': %s", path,
                          !b ? "out of memory" : "read error or larger "
                          "than 1 MiB");
        return false;
    }
    b[n] = '\0';
    *out = b;
    *len = n;
    return true;
}

static bool secret_new(obj *b, json_object *args, livemig_error *err)
{
    static const char *const known[] = { "data", "file", "format", "keyid",
                                         "iv", NULL };
    const char *data = NULL, *file = NULL, *format = "raw", *keyid = NULL;
    if (!lm_props_known(args, "secret", known, err) ||
        !lm_prop_str(args, "secret", "data", false, &data, err) ||
        !lm_prop_str(args, "secret", "file", false, &file, err) ||
        !lm_prop_str(args, "secret", "format", false, &format, err) ||
        !lm_prop_str(args, "secret", "keyid", false, &keyid, err))
        return false;
    if (keyid) {
        livemig_error_set(err, "secret '%s': encrypted secrets ('keyid') "
                          "are not supported; pass the secret in 'data' or "
                          "in a 'file' only its owner can read", b->id);
        return false;
    }
    if (!data == !file) {
        livemig_error_set(err, "secret '%s' needs exactly one of 'data' and "
                          "'file'", b->id);
        return false;
    }
    bool b64 = strcmp(format, "base64") == 0;
    if (!b64 && strcmp(format, "raw") != 0) {
        livemig_error_set(err, "secret '%s': 'format' must be 'raw' or "
                          "'base64', not '%s'", b->id, format);
        return false;
    }
    char *raw;
    size_t len;
    if (file) {
        if (!read_file(file, &raw, &len, err))
            return false;
    } else {
        len = strlen(data);
        if (!(raw = strdup(data))) {
            livemig_error_set(err, "out of memory for secret '%s'", b->id);
            return false;
        }
    }
    if (b64) {
        gnutls_datum_t in = { (unsigned char *)raw, (unsigned)len }, dec;
        int rc = gnutls_base64_decode2(&in, &dec);
        explicit_bzero(raw, len);
        free(raw);
        if (rc < 0) {
            livemig_error_set(err, "secret '%s' is not valid base64; check "
                              "'format'", b->id);
            return false;
        }
        raw = malloc(dec.size + 1);
        if (raw) {
            memcpy(raw, dec.data, dec.size);
            raw[dec.size] = '\0';
        }
        len = dec.size;
        explicit_bzero(dec.data, dec.size);
        gnutls_free(dec.data);
        if (!raw) {
            livemig_error_set(err, "out of memory for secret '%s'", b->id);
            return false;
        }
    }
    b->secret = raw;
    b->secret_len = len;
    return true;
}

/* ---- registry ----------------------------------------------------------- */

static obj *find(lm_objects *o, const char *id)
{
    for (obj *b = o->head; b; b = b->next)
        if (strcmp(b->id, id) == 0)
            return b;
    return NULL;
}

static bool valid_id(const char *id)
{
    /* QEMU's rule: a letter, then letters, digits, '-', '.', '_'. */
    if (!((id[0] >= 'a' && id[0] <= 'z') || (id[0] >= 'A' && id[0] <= 'Z')))
        return false;
    for (const char *p = id; *p; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
              (*p >= '0' && *p <= '9') || *p == '-' || *p == '.' ||
              *p == '_'))
            return false;
    return strlen(id) < LM_TLS_ID_MAX;
}

bool lm_objects_add(lm_objects *o, json_object *args, livemig_error *err)
{
    const char *type = NULL, *id = NULL;
    if (!args || !json_object_is_type(args, json_type_object)) {
        livemig_error_set(err, "object-add needs an object with 'qom-type' "
                          "and 'id'");
        return false;
    }
    if (!lm_prop_str(args, "object", "qom-type", true, &type, err) ||
        !lm_prop_str(args, type, "id", true, &id, err))
        return false;
    if (!valid_id(id)) {
        livemig_error_set(err, "object id '%s' is not valid; use a letter "
                          "followed by letters, digits, '-', '.' or '_' "
                          "(at most %d)", id, LM_TLS_ID_MAX - 1);
        return false;
    }
    obj *b = calloc(1, sizeof(*b));
    if (!b) {
        livemig_error_set(err, "out of memory adding object '%s'", id);
        return false;
    }
    snprintf(b->id, sizeof(b->id), "%s", id);
    snprintf(b->type, sizeof(b->type), "%.31s", type);
    bool ok;
    if (strcmp(type, "secret") == 0) {
        b->kind = OBJ_SECRET;
        ok = secret_new(b, args, err);
    } else if (strcmp(type, "tls-creds-x509") == 0 ||
               strcmp(type, "tls-creds-psk") == 0) {
        b->kind = OBJ_CREDS;
        ok = (b->creds = lm_tls_creds_new(o, type, id, args, err)) != NULL;
    } else if (strcmp(type, "authz-list") == 0) {
        b->kind = OBJ_AUTHZ;
        ok = (b->authz = lm_tls_authz_new(id, args, err)) != NULL;
    } else {
        livemig_error_set(err, "unknown object type '%s'; livemig has "
                          "'secret', 'tls-creds-x509', 'tls-creds-psk' and "
                          "'authz-list'", type);
        ok = false;
    }
    if (ok) {
        pthread_mutex_lock(&o->lock);
        if (find(o, id)) {
            livemig_error_set(err, "an object with id '%s' already exists; "
                              "object-del it first or choose another id",
                              id);
            ok = false;
        } else {
            obj **tail = &o->head;
            while (*tail)
                tail = &(*tail)->next;
            *tail = b;
        }
        pthread_mutex_unlock(&o->lock);
    }
    if (!ok)
        obj_free(b);
    return ok;
}

bool lm_objects_del(lm_objects *o, const char *id, livemig_error *err)
{
    pthread_mutex_lock(&o->lock);
    obj **pp = &o->head;
    while (*pp && strcmp((*pp)->id, id) != 0)
        pp = &(*pp)->next;
    obj *b = *pp;
    if (b)
        *pp = b->next;
    pthread_mutex_unlock(&o->lock);
    if (!b) {
        livemig_error_set(err, "there is no object with id '%s'; "
                          "query-objects lists them", id);
        return false;
    }
    /* A migration that holds a reference keeps using it until it ends. */
    obj_free(b);
    return true;
}

json_object *lm_objects_query(lm_objects *o)
{
    json_object *a = json_object_new_array();
    pthread_mutex_lock(&o->lock);
    for (obj *b = o->head; b; b = b->next) {
        char t[48];
        snprintf(t, sizeof(t), "child<%s>", b->type);
        json_object *e = json_object_new_object();
        json_object_object_add(e, "name", json_object_new_string(b->id));
        json_object_object_add(e, "type", json_object_new_string(t));
        json_object_array_add(a, e);
    }
    pthread_mutex_unlock(&o->lock);
    return a;
}

/* Look @id up as @kind; a locked registry is returned locked on success. */
static obj *lookup(lm_objects *o, const char *id, obj_kind kind,
                   const char *what, const char *hint, livemig_error *err)
{
    pthread_mutex_lock(&o->lock);
    obj *b = find(o, id);
    if (b && b->kind == kind)
        return b;
    pthread_mutex_unlock(&o->lock);
    if (b)
        livemig_error_set(err, "object '%s' is a '%s', not %s", id, b->type,
                          what);
    else
        livemig_error_set(err, "there is no object '%s' for %s; %s", id,
                          what, hint);
    return NULL;
}

lm_tls_creds *lm_objects_creds(lm_objects *o, const char *id,
                               livemig_error *err)
{
    obj *b = lookup(o, id, OBJ_CREDS, "TLS credentials",
                    "create it with object-add qom-type 'tls-creds-x509' "
                    "or 'tls-creds-psk'", err);
    if (!b)
        return NULL;
    lm_tls_creds *c = b->creds;
    atomic_fetch_add(&c->ref, 1);
    pthread_mutex_unlock(&o->lock);
    return c;
}

lm_tls_authz *lm_objects_authz(lm_objects *o, const char *id,
                               livemig_error *err)
{
    obj *b = lookup(o, id, OBJ_AUTHZ, "an authorization list",
                    "create it with object-add qom-type 'authz-list'", err);
    if (!b)
        return NULL;
    lm_tls_authz *a = b->authz;
    atomic_fetch_add(&a->ref, 1);
    pthread_mutex_unlock(&o->lock);
    return a;
}

char *lm_objects_secret(lm_objects *o, const char *id, const char *who,
                        livemig_error *err)
{
    char hint[160];
    snprintf(hint, sizeof(hint), "add the secret before '%s' (object-add "
             "qom-type 'secret')", who);
    obj *b = lookup(o, id, OBJ_SECRET, "a secret", hint, err);
    if (!b)
        return NULL;
    char *s = malloc(b->secret_len + 1);
    if (s) {
        memcpy(s, b->secret, b->secret_len);
        s[b->secret_len] = '\0';
    }
    pthread_mutex_unlock(&o->lock);
    if (!s)
        livemig_error_set(err, "out of memory reading secret '%s'", id);
    return s;
}

void lm_secret_free(char *s)
{
    if (s) {
        explicit_bzero(s, strlen(s));
        free(s);
    }
}
