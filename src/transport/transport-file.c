/* transport-file.c - file:PATH[,offset=N]: save to / restore from a file. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "transport/transport-int.h"

static bool parse(const char *rest, char *path, size_t len, off_t *offset,
                  livemig_error *err)
{
    const char *comma = strstr(rest, ",offset=");
    size_t n = comma ? (size_t)(comma - rest) : strlen(rest);
    *offset = 0;
    if (n == 0 || n >= len) {
        livemig_error_set(err, "bad URI 'file:%s': expected file:PATH"
                          "[,offset=N]", rest);
        return false;
    }
    memcpy(path, rest, n);
    path[n] = '\0';
    if (comma) {
        char *end;
        errno = 0;
        unsigned long long v = strtoull(comma + 8, &end, 0);
        if (errno || *end || end == comma + 8 || comma[8] == '-') {
            livemig_error_set(err, "bad offset in 'file:%s': expected a "
                              "byte count", rest);
            return false;
        }
        *offset = (off_t)v;
    }
    return true;
}

static bool file_open(const char *rest, int flags, atomic_bool *cancel,
                      int *fd, livemig_error *err)
{
    char path[4096];
    off_t offset;
    if (!parse(rest, path, sizeof(path), &offset, err))
        return false;
    /* Non-blocking: a FIFO without a reader fails with ENXIO instead of
     * hanging in open(); wait for the reader here, cancellably. */
    for (;;) {
        *fd = open(path, flags | O_CLOEXEC | O_NONBLOCK, 0600);
        if (*fd >= 0 || errno != ENXIO || (flags & O_ACCMODE) == O_RDONLY)
            break;
        if (lm_transport_cancelled(cancel, err))
            return false;
        usleep(20000);
    }
    if (*fd < 0) {
        livemig_error_set(err, "cannot open '%s': %s", path, strerror(errno));
        return false;
    }
    /* Writing, a FIFO stays non-blocking: the writer waits for room in
     * steps and gives up on cancel (a reader that stops reading). */
    struct stat sb;
    if ((flags & O_ACCMODE) != O_RDONLY &&
        (fstat(*fd, &sb) != 0 || !S_ISFIFO(sb.st_mode)))
        fcntl(*fd, F_SETFL, fcntl(*fd, F_GETFL) & ~O_NONBLOCK);
    if (offset && lseek(*fd, offset, SEEK_SET) < 0) {
        livemig_error_set(err, "cannot seek '%s' to %lld: %s", path,
                          (long long)offset, strerror(errno));
        close(*fd);
        return false;
    }
    return true;
}

static bool file_connect(const char *rest, atomic_bool *cancel, lm_conn *out,
                         livemig_error *err)
{
    int fd;
    /* Truncate only at offset 0: a stream at an offset shares the file. */
    int trunc = strstr(rest, ",offset=") ? 0 : O_TRUNC;
    if (!file_open(rest, O_WRONLY | O_CREAT | trunc, cancel, &fd, err))
        return false;
    out->wfd = fd;
    out->is_file = true;
    return true;
}

/* Opened non-blocking (a FIFO without a writer would hang open());
 * lm_listener_accept waits for data, then makes a regular file blocking
 * (a FIFO stays non-blocking: the reader waits for it cancellably). */
static bool file_listen(const char *rest, lm_listener *out, livemig_error *err)
{
    int fd;
    if (!file_open(rest, O_RDONLY, NULL, &fd, err))
        return false;
    out->pending.rfd = fd;
    out->pending.is_file = true;
    return true;
}

const lm_transport_ops lm_transport_file = { "file:", file_connect,
                                             file_listen, NULL };
