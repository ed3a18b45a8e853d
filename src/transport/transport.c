/* transport.c - URI dispatch and the blocking I/O helpers. */
#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <stdio.h>
#include <time.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <unistd.h>

#include "tls/tls.h"
#include "transport/transport-int.h"

static const lm_transport_ops *const transports[] = {
    &lm_transport_tcp, &lm_transport_unix, &lm_transport_file,
    &lm_transport_exec,
};

static const lm_transport_ops *find(const char *uri, const char **rest,
                                    livemig_error *err)
{
    for (size_t i = 0; i < sizeof(transports) / sizeof(transports[0]); i++) {
        size_t n = strlen(transports[i]->prefix);
        if (strncmp(uri, transports[i]->prefix, n) == 0) {
            *rest = uri + n;
            /* "tcp://h:p" is URL habit; QEMU and livemig write tcp:h:p. */
            if (transports[i] == &lm_transport_tcp &&
                strncmp(*rest, "//", 2) == 0) {
                livemig_error_set(err, "'%s' is written like a URL; "
                                  "migration URIs have no '//': use 'tcp:%s'",
                                  uri, *rest + 2);
                return NULL;
            }
            return transports[i];
        }
    }
    livemig_error_set(err, "unknown migration URI '%s'; use tcp:HOST:PORT, "
                      "unix:PATH, file:PATH or exec:CMD", uri);
    return NULL;
}

bool lm_transport_check(const char *uri, livemig_error *err)
{
    const char *rest;
    const lm_transport_ops *t = find(uri, &rest, err);
    return t && (!t->check || t->check(rest, err));
}

bool lm_transport_cancelled(atomic_bool *cancel, livemig_error *err)
{
    if (!cancel || !atomic_load(cancel))
        return false;
    livemig_error_set(err, "cancelled");
    return true;
}

bool lm_transport_connect_until(const char *uri, atomic_bool *cancel,
                                lm_conn *out, livemig_error *err)
{
    const char *rest;
    const lm_transport_ops *t = find(uri, &rest, err);
    *out = (lm_conn)LM_CONN_INIT;
    return t && t->connect(rest, cancel, out, err);
}

bool lm_transport_connect(const char *uri, lm_conn *out, livemig_error *err)
{
    return lm_transport_connect_until(uri, NULL, out, err);
}

bool lm_transport_listen(const char *uri, lm_listener *out, livemig_error *err)
{
    const char *rest;
    const lm_transport_ops *t = find(uri, &rest, err);
    memset(out, 0, sizeof(*out));
    out->fd = -1;
    out->pending = (lm_conn)LM_CONN_INIT;
    return t && t->listen(rest, out, err);
}

void lm_listener_close(lm_listener *l)
{
    if (l->fd >= 0)
        close(l->fd);
    l->fd = -1;
    if (l->path[0])
        unlink(l->path);
    l->path[0] = '\0';
    lm_conn_close(&l->pending);
}

void lm_conn_shutdown(lm_conn *c)
{
    if (c->is_socket && c->wfd >= 0)
        shutdown(c->wfd, SHUT_RDWR);
    else if (c->child > 0 && !c->exited)
        /* The whole group: a shell's children hold the pipe too.  Files
         * need nothing: their I/O does not wait on a peer. */
        kill(-c->child, SIGTERM);
}

void lm_conn_shutdown_read(lm_conn *c)
{
    if (c->is_socket && c->rfd >= 0)
        shutdown(c->rfd, SHUT_RD);
    else
        lm_conn_shutdown(c);
}

bool lm_conn_wait_exit(lm_conn *c, int timeout_ms, atomic_bool *stop)
{
    if (c->child <= 0)
        return false;
    struct timespec t0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (;;) {
        if (c->exited)
            return true;
        siginfo_t si = { 0 };
        errno = 0;
        /* WNOWAIT: the command stays a zombie until lm_conn_close, so its
         * process group id can't be reused while we may signal it. */
        if (waitid(P_PID, (id_t)c->child, &si,
                   WEXITED | WNOHANG | WNOWAIT) == 0 &&
            si.si_pid == c->child) {
            c->exited = true;
            c->exit_code = si.si_code == CLD_EXITED ? si.si_status : -1;
            c->exit_signal = si.si_code == CLD_EXITED ? 0 : si.si_status;
            return true;
        }
        if (errno == ECHILD) {   /* reaped elsewhere: status unknown */
            c->exited = true;
            c->exit_code = -1;
            c->exit_signal = 0;
            return true;
        }
        if (stop && atomic_load(stop))
            return false;
        struct timespec now;
        clock_gettime(CLOCK_MONOTONIC, &now);
        long ms = (now.tv_sec - t0.tv_sec) * 1000 +
                  (now.tv_nsec - t0.tv_nsec) / 1000000;
        if (timeout_ms >= 0 && ms >= timeout_ms)
            return false;
        usleep(5000);
    }
}

void lm_conn_describe_exit(const lm_conn *c, char *buf, size_t len)
{
    if (!c->exited)
        snprintf(buf, len, "still runs");
    else if (c->exit_signal)
        snprintf(buf, len, "was killed by signal %d (%s)", c->exit_signal,
                 strsignal(c->exit_signal));
    else
        snprintf(buf, len, "exited with status %d", c->exit_code);
}

void lm_conn_close(lm_conn *c)
{
    lm_tls_free(c->tls);
    c->tls = NULL;
    if (c->rfd >= 0)
        close(c->rfd);
    if (c->wfd >= 0 && c->wfd != c->rfd)
        close(c->wfd);
    c->rfd = c->wfd = -1;
    if (c->child > 0) {
        /* Closing the pipe ends a well-behaved command; SIGTERM ends a
         * stuck one; SIGKILL whatever of its group is left. */
        if (!lm_conn_wait_exit(c, 0, NULL)) {
            kill(-c->child, SIGTERM);
            lm_conn_wait_exit(c, 500, NULL);
        }
        kill(-c->child, SIGKILL);
        waitpid(c->child, NULL, 0);
        c->child = 0;
    }
}

bool lm_writev_all(int fd, struct iovec *iov, int iovcnt)
{
    while (iovcnt > 0) {
        int cnt = iovcnt > IOV_MAX ? IOV_MAX : iovcnt;
        ssize_t n = writev(fd, iov, cnt);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return false;
        }
        while (iovcnt > 0 && (size_t)n >= iov->iov_len) {
            n -= (ssize_t)iov->iov_len;
            iov++;
            iovcnt--;
        }
        if (iovcnt > 0 && n > 0) {
            iov->iov_base = (char *)iov->iov_base + n;
            iov->iov_len -= (size_t)n;
        }
    }
    return true;
}

bool lm_write_all(int fd, const void *p, size_t len)
{
    struct iovec iov = { (void *)p, len };
    return lm_writev_all(fd, &iov, 1);
}

int lm_read_full(int fd, void *p, size_t len)
{
    char *c = p;
    while (len > 0) {
        ssize_t n = read(fd, c, len);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        if (n == 0)
            return 1;
        c += n;
        len -= (size_t)n;
    }
    return 0;
}

bool lm_io_writev_all(int fd, struct lm_tls *tls, struct iovec *iov,
                      int iovcnt)
{
    return tls ? lm_tls_writev_all(tls, iov, iovcnt)
               : lm_writev_all(fd, iov, iovcnt);
}

ssize_t lm_io_read(int fd, struct lm_tls *tls, void *p, size_t len)
{
    for (;;) {
        ssize_t n = tls ? lm_tls_recv(tls, p, len) : read(fd, p, len);
        if (n < 0 && errno == EINTR)
            continue;
        return n;
    }
}

int lm_io_wait_readable(int fd, struct lm_tls *tls, int timeout_ms)
{
    if (tls && lm_tls_pending(tls) > 0)
        return 1;
    struct pollfd pf = { .fd = fd, .events = POLLIN };
    for (;;) {
        int rc = poll(&pf, 1, timeout_ms);
        if (rc < 0 && errno == EINTR)
            continue;
        return rc < 0 ? -1 : rc > 0;
    }
}

bool lm_conn_write_all(const lm_conn *c, const void *p, size_t len)
{
    struct iovec iov = { (void *)p, len };
    return lm_io_writev_all(c->wfd, c->tls, &iov, 1);
}

int lm_conn_read_full(const lm_conn *c, void *p, size_t len)
{
    char *b = p;
    while (len > 0) {
        ssize_t n = lm_io_read(c->rfd, c->tls, b, len);
        if (n < 0)
            return -1;
        if (n == 0)
            return 1;
        b += n;
        len -= (size_t)n;
    }
    return 0;
}

int lm_conn_wait_readable(const lm_conn *c, int timeout_ms)
{
    return lm_io_wait_readable(c->rfd, c->tls, timeout_ms);
}

const char *lm_conn_tls_error(const lm_conn *c)
{
    return c->tls ? lm_tls_last_error(c->tls) : "";
}

ssize_t lm_conn_peek(const lm_conn *c, void *p, size_t len, int timeout_ms)
{
    if (c->rfd < 0 || !c->is_socket)
        return -1;
    if (lm_io_wait_readable(c->rfd, NULL, timeout_ms) != 1)
        return -1;
    ssize_t n;
    do
        n = recv(c->rfd, p, len, MSG_PEEK);
    while (n < 0 && errno == EINTR);
    return n;
}
