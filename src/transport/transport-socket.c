/* transport-socket.c - tcp:HOST:PORT and unix:PATH. */
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "transport/transport-int.h"

/* Big socket buffers: the stream is written in ~1 MiB writev batches. */
static void tune_socket(int fd, bool tcp)
{
    int sz = 4 << 20, one = 1;
    setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &sz, sizeof(sz));
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &sz, sizeof(sz));
    if (tcp)
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
}

static bool split_host_port(const char *rest, char *host, size_t hostlen,
                            const char **port, livemig_error *err)
{
    const char *colon = strrchr(rest, ':');
    if (!colon || colon[1] == '\0') {
        livemig_error_set(err, "bad address 'tcp:%s': expected tcp:HOST:PORT",
                          rest);
        return false;
    }
    size_t n = (size_t)(colon - rest);
    if (n > 0 && rest[0] == '[' && rest[n - 1] == ']') {  /* [::1]:4444 */
        rest++;
        n -= 2;
    }
    if (n >= hostlen) {
        livemig_error_set(err, "host name in 'tcp:%s' is too long", rest);
        return false;
    }
    memcpy(host, rest, n);
    host[n] = '\0';
    *port = colon + 1;
    /* A number out of range would reach the kernel as another port (or
     * fail as "connection refused"): say what is wrong instead. */
    const char *d = *port;
    while (*d >= '0' && *d <= '9')
        d++;
    if (!*d && (d - *port > 5 || atol(*port) > 65535)) {
        livemig_error_set(err, "port %s in 'tcp:%s' is out of range; TCP "
                          "ports are 1 to 65535", *port, rest);
        return false;
    }
    return true;
}

static struct addrinfo *resolve(const char *rest, bool passive,
                                livemig_error *err)
{
    char host[256];
    const char *port;
    if (!split_host_port(rest, host, sizeof(host), &port, err))
        return NULL;
    struct addrinfo hints = { .ai_socktype = SOCK_STREAM,
                              .ai_flags = passive ? AI_PASSIVE : 0 };
    struct addrinfo *res = NULL;
    int rc = getaddrinfo(host[0] ? host : NULL, port, &hints, &res);
    if (rc != 0) {
        livemig_error_set(err, "cannot resolve 'tcp:%s': %s; check the host "
                          "name and port", rest, gai_strerror(rc));
        return NULL;
    }
    return res;
}

static void set_socket_conn(lm_conn *out, int fd)
{
    out->rfd = out->wfd = fd;
    out->return_path = true;
    out->is_socket = true;
}

/* connect() without blocking the caller past a cancel: in progress, poll
 * in 50 ms steps.  0 connected, else an errno (ECANCELED on cancel). */
static int connect_until(int fd, const struct sockaddr *sa, socklen_t len,
                         atomic_bool *cancel)
{
    int fl = fcntl(fd, F_GETFL);
    fcntl(fd, F_SETFL, fl | O_NONBLOCK);
    int rc = connect(fd, sa, len) == 0 ? 0 : errno;
    while (rc == EINPROGRESS || rc == EAGAIN || rc == EINTR) {
        if (cancel && atomic_load(cancel)) {
            rc = ECANCELED;
            break;
        }
        if (rc == EAGAIN) {
            /* unix: the listener's backlog is full; try again. */
            struct timespec ts = { 0, 20 * 1000000L };
            nanosleep(&ts, NULL);
            rc = connect(fd, sa, len) == 0 ? 0 : errno;
            continue;
        }
        struct pollfd p = { .fd = fd, .events = POLLOUT };
        if (poll(&p, 1, 50) <= 0) {
            rc = EINPROGRESS;
            continue;
        }
        socklen_t l = sizeof(rc);
        if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &rc, &l) != 0)
            rc = errno;
    }
    fcntl(fd, F_SETFL, fl);
    return rc;
}

static bool tcp_connect(const char *rest, atomic_bool *cancel, lm_conn *out,
                        livemig_error *err)
{
    struct addrinfo *res = resolve(rest, false, err);
    if (!res)
        return false;
    int fd = -1, saved = 0;
    for (struct addrinfo *a = res; a && saved != ECANCELED; a = a->ai_next) {
        fd = socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC, 0);
        if (fd < 0)
            continue;
        tune_socket(fd, true);
        saved = connect_until(fd, a->ai_addr, a->ai_addrlen, cancel);
        if (saved == 0)
            break;
        close(fd);
        fd = -1;
    }
    freeaddrinfo(res);
    if (fd < 0 && lm_transport_cancelled(cancel, err))
        return false;
    if (fd < 0) {
        int e = saved ? saved : errno;
        if (e == ECONNREFUSED)
            livemig_error_set(err, "cannot connect to 'tcp:%s': nothing "
                              "listens there; start the destination with "
                              "--incoming tcp:%s, or, if it is up but "
                              "stopped listening (a destination listens for "
                              "one attempt: after a failed or cancelled "
                              "migration it no longer does), run "
                              "migrate-incoming tcp:%s on it again", rest,
                              rest, rest);
        else
            livemig_error_set(err, "cannot connect to 'tcp:%s': %s; check "
                              "the address and that the destination runs "
                              "with --incoming on it", rest, strerror(e));
        return false;
    }
    set_socket_conn(out, fd);
    return true;
}

static bool tcp_listen(const char *rest, lm_listener *out, livemig_error *err)
{
    struct addrinfo *res = resolve(rest, true, err);
    if (!res)
        return false;
    int fd = -1, saved = 0, one = 1;
    for (struct addrinfo *a = res; a; a = a->ai_next) {
        fd = socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC, 0);
        if (fd < 0)
            continue;
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
        tune_socket(fd, true);
        if (bind(fd, a->ai_addr, a->ai_addrlen) == 0 && listen(fd, 4) == 0)
            break;
        saved = errno;
        close(fd);
        fd = -1;
    }
    freeaddrinfo(res);
    if (fd < 0) {
        livemig_error_set(err, "cannot listen on 'tcp:%s': %s; choose a free "
                          "port", rest, strerror(saved ? saved : errno));
        return false;
    }
    out->fd = fd;
    return true;
}

static bool unix_addr(const char *path, struct sockaddr_un *sa,
                      livemig_error *err)
{
    memset(sa, 0, sizeof(*sa));
    sa->sun_family = AF_UNIX;
    if (!path[0] || strlen(path) >= sizeof(sa->sun_path)) {
        livemig_error_set(err, "bad socket path 'unix:%s': it must be 1 to "
                          "%zu bytes", path, sizeof(sa->sun_path) - 1);
        return false;
    }
    strcpy(sa->sun_path, path);
    return true;
}

static bool unix_connect(const char *path, atomic_bool *cancel, lm_conn *out,
                         livemig_error *err)
{
    struct sockaddr_un sa;
    if (!unix_addr(path, &sa, err))
        return false;
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int rc = fd < 0 ? errno
                    : connect_until(fd, (struct sockaddr *)&sa, sizeof(sa),
                                    cancel);
    if (rc != 0) {
        if (fd >= 0)
            close(fd);
        if (lm_transport_cancelled(cancel, err))
            return false;
        if (rc == ECONNREFUSED || rc == ENOENT)
            livemig_error_set(err, "cannot connect to 'unix:%s': %s; start "
                              "the destination with --incoming unix:%s, or, "
                              "if it is up but stopped listening (after a "
                              "failed or cancelled migration), run "
                              "migrate-incoming unix:%s on it again", path,
                              strerror(rc), path, path);
        else
            livemig_error_set(err, "cannot connect to 'unix:%s': %s; is the "
                              "destination listening there?", path,
                              strerror(rc));
        return false;
    }
    tune_socket(fd, false);
    set_socket_conn(out, fd);
    return true;
}

static bool unix_listen(const char *path, lm_listener *out, livemig_error *err)
{
    struct sockaddr_un sa;
    if (!unix_addr(path, &sa, err))
        return false;
    unlink(path);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0 ||
        listen(fd, 4) != 0) {
        livemig_error_set(err, "cannot listen on 'unix:%s': %s", path,
                          strerror(errno));
        if (fd >= 0)
            close(fd);
        return false;
    }
    tune_socket(fd, false);
    out->fd = fd;
    snprintf(out->path, sizeof(out->path), "%s", path);
    return true;
}

int lm_listener_accept(lm_listener *l, int timeout_ms, lm_conn *out,
                       livemig_error *err)
{
    if (l->fd < 0) {
        if (l->pending.rfd < 0) {
            livemig_error_set(err, "no incoming connection is pending");
            return -1;
        }
        if (l->pending.is_file) {
            /* A FIFO has data (or its writer came and went) only once a
             * writer opened it; a regular file is ready at once. */
            struct pollfd p = { .fd = l->pending.rfd, .events = POLLIN };
            int rc = poll(&p, 1, timeout_ms);
            if (rc <= 0)
                return rc < 0 && errno != EINTR ? -1 : 0;
            /* A FIFO stays non-blocking: the reader waits for a slow
             * writer in steps and gives up on cancel. */
            struct stat sb;
            if (fstat(l->pending.rfd, &sb) != 0 || !S_ISFIFO(sb.st_mode)) {
                int fl = fcntl(l->pending.rfd, F_GETFL);
                fcntl(l->pending.rfd, F_SETFL, fl & ~O_NONBLOCK);
            }
        }
        *out = l->pending;
        l->pending = (lm_conn)LM_CONN_INIT;
        return 1;
    }
    struct pollfd p = { .fd = l->fd, .events = POLLIN };
    int rc = poll(&p, 1, timeout_ms);
    if (rc <= 0)
        return rc < 0 && errno != EINTR ? -1 : 0;
    int fd = accept4(l->fd, NULL, NULL, SOCK_CLOEXEC);
    if (fd < 0) {
        if (errno == EAGAIN || errno == EINTR || errno == ECONNABORTED)
            return 0;
        livemig_error_set(err, "accepting the migration connection failed: "
                          "%s", strerror(errno));
        return -1;
    }
    *out = (lm_conn)LM_CONN_INIT;
    set_socket_conn(out, fd);
    return 1;
}

static bool tcp_check(const char *rest, livemig_error *err)
{
    char host[256];
    const char *port;
    return split_host_port(rest, host, sizeof(host), &port, err);
}

const lm_transport_ops lm_transport_tcp = { "tcp:", tcp_connect, tcp_listen,
                                            tcp_check };
static bool unix_check(const char *path, livemig_error *err)
{
    struct sockaddr_un sa;
    return unix_addr(path, &sa, err);
}

const lm_transport_ops lm_transport_unix = { "unix:", unix_connect,
                                             unix_listen, unix_check };
