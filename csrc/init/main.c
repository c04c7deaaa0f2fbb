/*
 * pidsafe-init: read the op stream, run it, report, wait at the gate, exec.
 * See csrc/shared/init_protocol.h.  Usage (by pidsafe.container only):
 *
 *     pidsafe-init OPS_FD STATUS_FD
 *
 * reader.c reads the stream; the ops are in namespaces.c (joining them, and
 * the fork into a pid namespace), mounts.c, devices.c, creds.c (who the
 * process is), system.c (the container's settings, the process's limits),
 * seccomp.c and terminal.c; here are the ops on init's own state (the gate,
 * the hooks, what to exec), the table from op code to op, and the run.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "init.h"

#ifndef CLOSE_RANGE_CLOEXEC
#define CLOSE_RANGE_CLOEXEC 4
#endif

static int status_fd = -1;

static void report(int32_t kind, int32_t index, int32_t op, int32_t err)
{
    struct psi_record r = {kind, index, op, err};
    ssize_t n;

    if (status_fd < 0)
        return;
    do
        n = write(status_fd, &r, sizeof(r));
    while (n < 0 && errno == EINTR);
}

static void fail(int32_t index, int32_t op, int32_t err)
{
    report(PSI_RECORD_ERROR, index, op, err);
    _exit(127);
}

static int op_gate(struct psi_ctx *c, const struct psi_op *op)
{
    int64_t fd;
    if (psi_int(op, 0, &fd) < 0)
        return -1;
    c->gate_fd = (int)fd;
    return 0;
}

static int op_close_fd(struct psi_ctx *c, const struct psi_op *op)
{
    int64_t fd;
    (void)c;
    if (psi_int(op, 0, &fd) < 0)
        return -1;
    return close((int)fd);
}

static int op_chdir(struct psi_ctx *c, const struct psi_op *op)
{
    const char *path = psi_str(op, 0);
    (void)c;
    return path == NULL ? -1 : chdir(path);
}

static int op_exec(struct psi_ctx *c, const struct psi_op *op)
{
    if (op->nargs != 2) {
        errno = EINVAL;
        return -1;
    }
    c->exec_argv = psi_split_list(&op->args[0]);
    c->exec_envp = psi_split_list(&op->args[1]);
    if (c->exec_argv == NULL || c->exec_envp == NULL || c->exec_argv[0] == NULL) {
        errno = EINVAL;
        return -1;
    }
    return 0;
}

static int op_exec_path(struct psi_ctx *c, const struct psi_op *op)
{
    c->exec_path = psi_str(op, 0);
    if (c->exec_path == NULL || c->exec_path[0] != '/') {
        errno = EINVAL;
        return -1;
    }
    return 0;
}

/* Tell the parent the environment is ready for the create hooks (mounts made,
 * not yet pivoted) and wait until it says go on with one byte. */
static int op_hooks(struct psi_ctx *c, const struct psi_op *op)
{
    int64_t fd;
    char byte;
    ssize_t r;

    if (psi_int(op, 0, &fd) < 0)
        return -1;
    report(PSI_RECORD_HOOKS, c->index, PSI_OP_HOOKS, 0);
    do
        r = read((int)fd, &byte, 1);
    while (r < 0 && errno == EINTR);
    if (r < 0)
        return -1;
    if (r == 0 || byte != 1) {
        errno = ECANCELED;   /* the parent went away, or gave up after a failed hook */
        return -1;
    }
    return close((int)fd);
}

/*
 * The caller's fds 3 .. 3+count-1 reach the program (everything else >= 3 is
 * close-on-exec since main()).  None of our own fds may be among them: the
 * parent opened those after the preserved ones, so one in the range means a
 * preserved fd was not open.
 */
static int op_preserve_fds(struct psi_ctx *c, const struct psi_op *op)
{
    int64_t n, fd;

    if (psi_int(op, 0, &n) < 0)
        return -1;
    if (n < 0 || n > 1 << 20 || (status_fd >= 3 && status_fd < 3 + n)
        || (c->gate_fd >= 3 && c->gate_fd < 3 + n) || (c->root_fd >= 3 && c->root_fd < 3 + n)) {
        errno = EBADF;
        return -1;
    }
    for (fd = 3; fd < 3 + n; fd++)
        if (fcntl((int)fd, F_SETFD, 0) < 0)
            return -1;
    return 0;
}

/*
 * Join a cgroup through a file the parent opened (v1 `tasks`, v2
 * `cgroup.procs`): "0" moves the writer.  To a v1 `tasks` file that moves
 * this one thread without the kernel's global threadgroup lock, where the
 * parent writing our pid to `cgroup.procs` waits for an RCU grace period.
 */
static int op_cgroup_join(struct psi_ctx *c, const struct psi_op *op)
{
    int64_t fd;
    (void)c;
    if (psi_int(op, 0, &fd) < 0)
        return -1;
    if (psi_write_fd((int)fd, "0", 1) < 0)
        return -1;
    return close((int)fd);
}

typedef int (*op_fn)(struct psi_ctx *, const struct psi_op *);

static const op_fn OPS[PSI_OP_MAX + 1] = {
    [PSI_OP_SETID_ROOT] = psi_op_setid_root,
    [PSI_OP_PROPAGATION] = psi_op_propagation,
    [PSI_OP_ROOT] = psi_op_root,
    [PSI_OP_MOUNT_FS] = psi_op_mount_fs,
    [PSI_OP_MOUNT_TREE] = psi_op_mount_tree,
    [PSI_OP_MKNOD] = psi_op_mknod,
    [PSI_OP_SYMLINK] = psi_op_symlink,
    [PSI_OP_PIVOT] = psi_op_pivot,
    [PSI_OP_ROOT_CLONE] = psi_op_root_clone,
    [PSI_OP_MASK] = psi_op_mask,
    [PSI_OP_READONLY] = psi_op_readonly,
    [PSI_OP_ROOT_READONLY] = psi_op_root_readonly,
    [PSI_OP_HOSTNAME] = psi_op_hostname,
    [PSI_OP_DOMAINNAME] = psi_op_domainname,
    [PSI_OP_SYSCTL] = psi_op_sysctl,
    [PSI_OP_OOM_SCORE_ADJ] = psi_op_oom_score_adj,
    [PSI_OP_RLIMIT] = psi_op_rlimit,
    [PSI_OP_CAP_BOUNDING] = psi_op_cap_bounding,
    [PSI_OP_USER] = psi_op_user,
    [PSI_OP_CAPS] = psi_op_caps,
    [PSI_OP_NO_NEW_PRIVS] = psi_op_no_new_privs,
    [PSI_OP_CHDIR] = op_chdir,
    [PSI_OP_GATE] = op_gate,
    [PSI_OP_EXEC] = op_exec,
    [PSI_OP_CLOSE_FD] = op_close_fd,
    [PSI_OP_SETNS] = psi_op_setns,
    [PSI_OP_UNSHARE] = psi_op_unshare,
    [PSI_OP_LOOPBACK_UP] = psi_op_loopback_up,
    [PSI_OP_FORK] = psi_op_fork,
    [PSI_OP_SECCOMP] = psi_op_seccomp,
    [PSI_OP_HOOKS] = op_hooks,
    [PSI_OP_EXEC_PATH] = op_exec_path,
    [PSI_OP_CHROOT] = psi_op_chroot,
    [PSI_OP_PRESERVE_FDS] = op_preserve_fds,
    [PSI_OP_CGROUP_JOIN] = op_cgroup_join,
    [PSI_OP_TERMINAL] = psi_op_terminal,
    [PSI_OP_CONSOLE] = psi_op_console,
    [PSI_OP_TERMINAL_SEND] = psi_op_terminal_send,
    [PSI_OP_TERMINAL_STDIO] = psi_op_terminal_stdio,
};

/* execvpe with the *container's* PATH (from envp), like runc's lookup. */
static void exec_program(char **argv, char **envp)
{
    const char *path = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
    char buf[4096];
    int saved = 0;
    size_t i;

    if (strchr(argv[0], '/') != NULL) {
        execve(argv[0], argv, envp);
        return;
    }
    for (i = 0; envp[i] != NULL; i++)
        if (strncmp(envp[i], "PATH=", 5) == 0)
            path = envp[i] + 5;
    while (*path) {
        const char *colon = strchr(path, ':');
        size_t dlen = colon ? (size_t)(colon - path) : strlen(path);
        int n = snprintf(buf, sizeof(buf), "%.*s%s%s", (int)dlen, path,
                         dlen ? "/" : "", argv[0]);
        if (n > 0 && (size_t)n < sizeof(buf)) {
            execve(buf, argv, envp);
            if (errno != ENOENT && errno != ENOTDIR && saved == 0)
                saved = errno;
        }
        path += dlen + (colon ? 1 : 0);
        if (!colon)
            break;
    }
    errno = saved ? saved : ENOENT;
}

int main(int argc, char **argv)
{
    struct psi_ctx ctx = {.root_fd = -1, .devnull_fd = -1, .pivoted = 0, .gate_fd = -1,
                          .seccomp_late_index = -1, .pty_master = -1, .pty_peer = -1};
    struct psi_op *ops = NULL;
    struct sigaction sa;
    long n, i;
    int ops_fd;

    /*
     * Not dumpable until the program runs (its execve makes it dumpable
     * again, by the usual rules): /proc/PID/{exe,root,cwd,fd,environ,mem}
     * and ptrace are then only for root of the initial user namespace with
     * CAP_SYS_PTRACE, never for a container's process, even one with our
     * uid and capabilities (init at the gate has the program's).  First
     * thing, whoever runs us: a container may, as a #!/proc/self/exe script.
     */
    if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) < 0)
        return 127;
    if (argc != 3)
        return 127;
    ops_fd = atoi(argv[1]);
    status_fd = atoi(argv[2]);
    /* Everything the parent passed stays ours alone: nothing reaches the program. */
    if (syscall(SYS_close_range, 3U, ~0U, CLOSE_RANGE_CLOEXEC) < 0) {
        int fd;
        for (fd = 3; fd < 1024; fd++)
            fcntl(fd, F_SETFD, FD_CLOEXEC);
    }
    /* A parent that went away must not kill us with SIGPIPE mid-report. */
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = SIG_IGN;
    sigaction(SIGPIPE, &sa, NULL);
    /* A session (and process group) of our own: we were born in the
     * caller's, and kill(0, sig) or a terminal's signal reaches every member
     * of a process group whatever its pid namespace, so a container program
     * signalling "its" group would otherwise signal the runtime's callers.
     * A fresh clone is never a group leader, so this cannot fail. */
    setsid();

    n = psi_read_ops(ops_fd, &ops);
    close(ops_fd);
    if (n < 0)
        _exit(127);   /* truncated: the parent died mid-stream; nobody to tell */

    for (i = 0; i < n; i++) {
        op_fn fn = OPS[ops[i].code];
        if (fn == NULL)
            fail((int32_t)i, PSI_STAGE_PROTOCOL, EINVAL);
        errno = 0;
        ctx.index = (int32_t)i;
        if (fn(&ctx, &ops[i]) < 0)
            fail((int32_t)i, (int32_t)ops[i].code, errno ? errno : EIO);
        if (ctx.seccomp_late == &ops[i])
            ctx.seccomp_late_index = (int32_t)i;   /* for a failure after the gate */
    }
    if (ctx.exec_argv == NULL)
        fail(-1, PSI_STAGE_PROTOCOL, EINVAL);
    if (ctx.root_fd >= 0)
        close(ctx.root_fd);
    if (ctx.devnull_fd >= 0)
        close(ctx.devnull_fd);

    report(PSI_RECORD_READY, -1, 0, 0);
    if (ctx.gate_fd >= 0) {
        char byte;
        ssize_t r;
        do
            r = read(ctx.gate_fd, &byte, 1);
        while (r < 0 && errno == EINTR);
        if (r != 1)
            fail(-1, PSI_STAGE_GATE, r < 0 ? errno : EPIPE);
        /* The gate stays open (close-on-exec) until execve commits: `start`
         * sees the FIFO lose its last reader exactly when the program runs. */
    }
    sa.sa_handler = SIG_DFL;
    sigaction(SIGPIPE, &sa, NULL);
    /* With no_new_privs the filter comes last: as few of our own syscalls
     * as possible run under it (runc does the same). */
    if (ctx.seccomp_late != NULL && psi_seccomp_load(ctx.seccomp_late) < 0)
        fail(ctx.seccomp_late_index, PSI_OP_SECCOMP, errno ? errno : EIO);
    if (ctx.exec_path != NULL)
        execve(ctx.exec_path, ctx.exec_argv, ctx.exec_envp);
    else
        exec_program(ctx.exec_argv, ctx.exec_envp);
    fail(-1, PSI_STAGE_EXEC, errno);
    return 127;
}
