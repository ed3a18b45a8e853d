/*
 * tlscerts.h - certificates and PSK files for the TLS tests, made with
 * certtool (Debian's gnutls-bin) in a directory the test owns.
 *
 * tlsc_make(root) fills @root with credential directories laid out as
 * QEMU's tls-creds-x509 / tls-creds-psk 'dir' expects:
 *   server/          CA "good", server cert for localhost and 127.0.0.1
 *   server-expired/  CA "good", the same names, expired last year
 *   server-other/    CA "good", a server cert for other.example only
 *   server-enc/      as server/, its key encrypted with TLSC_KEY_PASSWORD
 *   client/          CA "good", client cert CN=source.example,O=Example
 *   client-intruder/ CA "good", client cert CN=intruder,O=Elsewhere
 *   client-wrongca/  CA "other" (trusts neither side's real CA) and a
 *                    client cert from it
 *   psk-server/      keys.psk with "qemu:<key A>"
 *   psk-client/      keys.psk with "qemu:<key A>"
 *   psk-wrong/       keys.psk with "qemu:<key B>"
 * Returns false (and prints why) when certtool is missing; the caller
 * skips with that reason.
 */
#ifndef LM_TLSCERTS_H
#define LM_TLSCERTS_H

#include <stdbool.h>
#include <stddef.h>

#define TLSC_KEY_PASSWORD "open-sesame"

/* certtool's path, or NULL if it is not installed. */
const char *tlsc_certtool(void);
bool tlsc_make(const char *root);

/* A test group's setup: a fresh directory /tmp/livemig-@tag-XXXXXX into
 * @root (@len bytes), filled by tlsc_make; *@have says whether it could
 * be (certtool present).  -1 when the directory can't be made, else 0:
 * the return value of a cmocka group setup. */
int tlsc_group_setup(char *root, size_t len, const char *tag, bool *have);
/* The matching teardown: removes @root. */
int tlsc_group_teardown(const char *root);

/* Skips the test, with the reason, when tlsc_make could not run. */
#define TLSC_NEED_CERTS(have)                                              \
    do {                                                                   \
        if (!(have)) {                                                     \
            printf("skipped: certtool (gnutls-bin) is not installed\n");   \
            skip();                                                        \
        }                                                                  \
    } while (0)

#endif
