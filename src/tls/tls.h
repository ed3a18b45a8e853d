/*
 * tls.h - TLS for migration connections: the user-creatable objects that
 * describe credentials and authorization (as QEMU's object-add has them),
 * and the session that carries a connection's bytes through GnuTLS's
 * record layer.
 *
 * Objects live in a registry that hangs off the engine (no process
 * globals).  The monitor thread adds and deletes them; a migration thread
 * looks them up by id when it secures a connection and holds a reference
 * for as long as it needs them, so an object-del during a migration does
 * not pull credentials from under a handshake.
 *
 * Object types and their properties (QEMU's qapi/crypto.json, authz.json,
 * qom.json):
 *   secret            data | file, format raw|base64 (default raw)
 *   tls-creds-x509    dir, endpoint client|server (default client),
 *                     verify-peer (default true), priority, passwordid,
 *                     sanity-check (default true)
 *                     dir holds ca-cert.pem, optional ca-crl.pem, and
 *                     server-cert.pem + server-key.pem (server) or
 *                     client-cert.pem + client-key.pem (client)
 *   tls-creds-psk     dir (holding keys.psk: "username:hexkey" lines),
 *                     endpoint, username (client, default "qemu"),
 *                     priority, verify-peer (accepted, as QEMU does)
 *   authz-list        policy allow|deny (default deny),
 *                     rules [{match, policy, format exact|glob}]
 *
 * A session (lm_tls) belongs to one connection (lm_conn.tls).  One thread
 * may send while another receives (GnuTLS allows that); cancel only shuts
 * the socket down.  Session tickets are off so a reader never blocks on a
 * post-handshake message that carries no data.
 */
#ifndef LM_TLS_H
#define LM_TLS_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include "livemig/livemig.h"

struct json_object;
struct iovec;

/* ---- objects ------------------------------------------------------------ */

typedef struct lm_objects lm_objects;
typedef struct lm_tls_creds lm_tls_creds;
typedef struct lm_tls_authz lm_tls_authz;

lm_objects *lm_objects_new(void);
void lm_objects_free(lm_objects *o);

/* object-add: @args holds qom-type, id and the type's properties (flat,
 * as QMP sends them, or under "props" as older QEMU accepted). */
bool lm_objects_add(lm_objects *o, struct json_object *args,
                    livemig_error *err);
bool lm_objects_del(lm_objects *o, const char *id, livemig_error *err);
/* query-objects: [{"name": id, "type": "child<qom-type>"}] (new ref).
 * Never shows a property, so no secret leaves the process. */
struct json_object *lm_objects_query(lm_objects *o);

/* A reference to the tls-creds-* object @id (lm_tls_creds_unref when
 * done), or NULL with @err naming what is wrong. */
lm_tls_creds *lm_objects_creds(lm_objects *o, const char *id,
                               livemig_error *err);
lm_tls_authz *lm_objects_authz(lm_objects *o, const char *id,
                               livemig_error *err);
void lm_tls_creds_unref(lm_tls_creds *c);
void lm_tls_authz_unref(lm_tls_authz *a);

bool lm_tls_creds_is_server(const lm_tls_creds *c);
bool lm_tls_creds_is_x509(const lm_tls_creds *c);
bool lm_tls_creds_verify_peer(const lm_tls_creds *c);
const char *lm_tls_creds_id(const lm_tls_creds *c);

/* True if the authz-list allows @name (an x509 distinguished name in
 * RFC 4514 form, or a PSK username): the first matching rule decides,
 * else the list's policy. */
bool lm_tls_authz_allows(const lm_tls_authz *a, const char *name);
const char *lm_tls_authz_id(const lm_tls_authz *a);

/* ---- sessions ----------------------------------------------------------- */

typedef struct lm_tls lm_tls;

/* Run the handshake on the connected socket @fd and check the peer:
 * a client verifies the server's certificate against the CA and
 * @hostname; a server verifies the client's certificate (verify-peer) and
 * asks @authz (may be NULL) about its name.  The session takes its own
 * references to @creds and @authz.  Gives up after @timeout_ms without
 * progress.  NULL with @err naming the cause (wrong CA, hostname,
 * expiry, denied, PSK mismatch, the peer does not speak TLS). */
lm_tls *lm_tls_handshake(int fd, lm_tls_creds *creds, lm_tls_authz *authz,
                         const char *hostname, int timeout_ms,
                         livemig_error *err);
void lm_tls_free(lm_tls *t);

/* The record layer, with read()/write() conventions: >= 0 bytes, or -1
 * with errno set (EIO for a TLS error, whose text lm_tls_last_error
 * gives; EAGAIN when a socket timeout expired). */
ssize_t lm_tls_recv(lm_tls *t, void *p, size_t len);
ssize_t lm_tls_send(lm_tls *t, const void *p, size_t len);
/* Send all of @iov; small pieces are gathered into full records. */
bool lm_tls_writev_all(lm_tls *t, struct iovec *iov, int iovcnt);
/* Bytes already decrypted and waiting (poll on the fd won't see them). */
size_t lm_tls_pending(lm_tls *t);
const char *lm_tls_last_error(const lm_tls *t);
/* The cipher suite in use ("TLS1.3-AES-256-GCM"...), for query/bench. */
const char *lm_tls_cipher(const lm_tls *t);

#endif
