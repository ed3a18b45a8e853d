/* transport-exec.c - exec:CMD: the stream goes to the command's stdin
 * (outgoing) or comes from its stdout (incoming), through /bin/sh -c. */
#include <errno.h>
#include <fcntl.h>
#include <spawn.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "transport/transport-int.h"

extern char **environ;

static bool spawn(const char *cmd, bool outgoing, lm_conn *out,
                  livemig_error *err)
{
    int p[2];
    if (!cmd[0]) {
        livemig_error_set(err, "empty command in 'exec:'; give a shell "
                          "command, e.g. exec:cat > FILE");
        return false;
    }
    if (pipe2(p, O_CLOEXEC) != 0) {
        livemig_error_set(err, "cannot create a pipe for 'exec:%s': %s", cmd,
                          strerror(errno));
        return false;
    }
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    /* dup2 clears O_CLOEXEC on the target fd. */
    if (outgoing)
        posix_spawn_file_actions_adddup2(&fa, p[0], 0);
    else
        posix_spawn_file_actions_adddup2(&fa, p[1], 1);
    /* Its own process group: cancel and quit end everything the command
     * started, not only the shell. */
    posix_spawnattr_t at;
    posix_spawnattr_init(&at);
    posix_spawnattr_setflags(&at, POSIX_SPAWN_SETPGROUP);
    posix_spawnattr_setpgroup(&at, 0);
    char *argv[] = { "sh", "-c", (char *)cmd, NULL };
    pid_t pid;
    int rc = posix_spawn(&pid, "/bin/sh", &fa, &at, argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    posix_spawnattr_destroy(&at);
    if (rc != 0) {
        close(p[0]);
        close(p[1]);
        livemig_error_set(err, "cannot run 'exec:%s': %s", cmd, strerror(rc));
        return false;
    }
    if (outgoing) {
        close(p[0]);
        out->wfd = p[1];
    } else {
        close(p[1]);
        out->rfd = p[0];
    }
    out->child = pid;
    return true;
}

static bool exec_connect(const char *rest, atomic_bool *cancel, lm_conn *out,
                         livemig_error *err)
{
    return !lm_transport_cancelled(cancel, err) && spawn(rest, true, out, err);
}

static bool exec_listen(const char *rest, lm_listener *out, livemig_error *err)
{
    return spawn(rest, false, &out->pending, err);
}

const lm_transport_ops lm_transport_exec = { "exec:", exec_connect,
                                             exec_listen, NULL };
