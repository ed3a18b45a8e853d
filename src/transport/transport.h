/*
 * transport.h - byte channels for migration streams.
 *
 * URIs: tcp:HOST:PORT, unix:PATH, file:PATH[,offset=N], exec:CMD.
 * A connection is a pair of file descriptors: wfd for the stream and rfd
 * for the other direction.  Sockets are bidirectional (rfd == wfd) and so
 * carry the return path; file and exec are one-way (rfd or wfd is -1).
 *
 * With TLS, a connection also holds its session (tls, NULL when plain):
 * every byte in either direction then goes through it.  Code that moves
 * bytes uses the lm_conn_* / lm_io_* calls below, never read()/write() on
 * the fds, so a new channel (postcopy's) gets TLS by calling
 * after connecting or accepting; with TLS off they are
 * the plain system calls.  The engine secures a connection with
 * lm_secure_client()/lm_secure_server() (src/engine/secure.c).
 */
#ifndef LM_TRANSPORT_H
#define LM_TRANSPORT_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "livemig/livemig.h"

typedef struct lm_conn {
    int rfd;            /* read side, -1 if none */
    int wfd;            /* write side, -1 if none */
    pid_t child;        /* exec: the command's PID (and process group:
                           it runs in its own), else 0 */
    bool return_path;   /* a reply channel exists */
    bool is_socket;
    bool is_file;       /* file: EOF before the end means truncated */
    bool exited;        /* exec: the command ended (not reaped yet) */
    int exit_code;      /* exec, once exited: its exit status, or -1 */
    int exit_signal;    /* exec, once exited: the signal that killed it */
    struct lm_tls *tls; /* TLS session over the socket, or NULL */
} lm_conn;

typedef struct lm_listener {
    int fd;             /* listening socket, or -1 */
    lm_conn pending;    /* file/exec incoming: the connection, ready at once */
    char path[256];     /* unix: socket file to unlink on close */
} lm_listener;

#define LM_CONN_INIT { .rfd = -1, .wfd = -1 }

/* Check that @uri names a known transport, opening nothing. */
bool lm_transport_check(const char *uri, livemig_error *err);
/* Open an outgoing connection for @uri.  It may wait (a TCP handshake, a
 * FIFO's reader), so it belongs on the migration thread: it gives up with
 * "cancelled" as soon as *@cancel is set (NULL: never). */
bool lm_transport_connect_until(const char *uri, atomic_bool *cancel,
                                lm_conn *out, livemig_error *err);
/* Same, never cancelled. */
bool lm_transport_connect(const char *uri, lm_conn *out, livemig_error *err);
/* Start listening (tcp, unix) or open the source (file, exec) for @uri.
 * Never blocks: a file: FIFO is opened non-blocking and waited for by
 * lm_listener_accept. */
bool lm_transport_listen(const char *uri, lm_listener *out, livemig_error *err);
/* Wait up to @timeout_ms for the incoming connection.  Returns 1 when
 * *out holds it, 0 on timeout, -1 on error. */
int lm_listener_accept(lm_listener *l, int timeout_ms, lm_conn *out,
                       livemig_error *err);
void lm_listener_close(lm_listener *l);
/* Make blocked reads and writes on @c return (used by cancel); the fds
 * stay valid until lm_conn_close. */
void lm_conn_shutdown(lm_conn *c);
/* Make blocked reads on @c return, keeping its write side open so a
 * last message can still go out (a destination's cancel). */
void lm_conn_shutdown_read(lm_conn *c);
/* Close the fds and free the TLS session.  exec: the command's process
 * group gets SIGTERM if the command has not exited, SIGKILL after 500 ms,
 * and the command is reaped: nothing it started outlives the connection. */
void lm_conn_close(lm_conn *c);
/* exec: wait up to @timeout_ms (< 0: until *@stop is set) for the command
 * to exit; true once it has (c->exited, exit_code, exit_signal; it is
 * reaped by lm_conn_close).  False at once when there is no command. */
bool lm_conn_wait_exit(lm_conn *c, int timeout_ms, atomic_bool *stop);
/* How an exited command ended: "exited with status 3", "was killed by
 * signal 15 (Terminated)". */
void lm_conn_describe_exit(const lm_conn *c, char *buf, size_t len);

/* Write all of @iov (retrying short writes); false with errno on error. */
struct iovec;
bool lm_writev_all(int fd, struct iovec *iov, int iovcnt);
bool lm_write_all(int fd, const void *p, size_t len);
/* Read exactly @len bytes; 0 ok, -1 error (errno), 1 EOF before len. */
int lm_read_full(int fd, void *p, size_t len);

/* The same through a connection's TLS session when @tls is not NULL
 * (the fd is then the session's socket). */
bool lm_io_writev_all(int fd, struct lm_tls *tls, struct iovec *iov,
                      int iovcnt);
/* One read of at most @len bytes: > 0 bytes, 0 EOF, -1 error (errno). */
ssize_t lm_io_read(int fd, struct lm_tls *tls, void *p, size_t len);
/* Wait up to @timeout_ms (-1: forever) until a read would not block:
 * 1 ready, 0 timeout, -1 error. */
int lm_io_wait_readable(int fd, struct lm_tls *tls, int timeout_ms);

/* A connection's own I/O: writes on wfd, reads on rfd, through TLS when
 * it has a session. */
bool lm_conn_write_all(const lm_conn *c, const void *p, size_t len);
int lm_conn_read_full(const lm_conn *c, void *p, size_t len);
int lm_conn_wait_readable(const lm_conn *c, int timeout_ms);
/* What went wrong in the last failed TLS read or write ("" if none or no
 * TLS): an alert from the peer, an integrity failure... */
const char *lm_conn_tls_error(const lm_conn *c);

/* Peek at the first bytes the peer sends, waiting up to @timeout_ms:
 * > 0 bytes copied (not consumed), 0 EOF, -1 timeout or error. */
ssize_t lm_conn_peek(const lm_conn *c, void *p, size_t len, int timeout_ms);

#endif
