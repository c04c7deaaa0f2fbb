/*
 * pidsafe-init: namespaces, joined (setns), made (unshare), and the fork
 * into a container's pid namespace (PSI_OP_FORK).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "init.h"
#include "syscall_numbers.h"

#ifndef CLONE_PIDFD
#define CLONE_PIDFD 0x00001000   /* Linux 5.2 */
#endif

/* struct clone_args (Linux 5.3), with our own name: CLONE_PIDFD's pidfd. */
struct psi_clone_args {
    uint64_t flags, pidfd, child_tid, parent_tid, exit_signal, stack, stack_size, tls;
};

/*
 * clone(2) without a new stack (fork's semantics): the raw argument order is
 * the architecture's.  CLONE_PIDFD stores the pidfd through parent_tid.
 */
static long psi_clone_legacy(unsigned long flags, int *pidfd)
{
#if defined(__s390__) || defined(__CRIS__)
    /* CONFIG_CLONE_BACKWARDS2: (stack, flags, parent_tid, child_tid, tls) */
    return syscall(SYS_clone, 0UL, flags, pidfd, NULL, 0UL);
#elif defined(__microblaze__)
    /* CONFIG_CLONE_BACKWARDS3: (flags, stack, stack_size, parent_tid, ...) */
    return syscall(SYS_clone, flags, 0UL, 0UL, pidfd, NULL, 0UL);
#else
    /* x86_64: (flags, stack, parent_tid, child_tid, tls); CONFIG_CLONE_BACKWARDS
     * (arm, i386, powerpc ...) swaps the last two, both 0 here. */
    return syscall(SYS_clone, flags, 0UL, pidfd, NULL, 0UL);
#endif
}

/*
 * Into the container's pid namespace, holding nothing of the host's.
 *
 * A process is visible in a pid namespace (its /proc/PID/root, cwd, exe,
 * fd/, ptrace) from the moment it is born there.  So pidsafe-init is not
 * born there: it starts in the runtime's pid namespace, joins the
 * container's other namespaces (mount, user, cgroup ...) and chooses the
 * container's pid namespace for its children (PSI_OP_SETNS), and only then
 * forks the process that will run the rest, which is born in the
 * container already in its mount namespace, non-dumpable (inherited), from
 * the sealed copy.  runc's nsexec does the same with CLONE_PARENT.
 *
 * CLONE_PARENT makes the child the parent's (pidsafe's) own, so that the
 * parent waits for it through the pidfd we create here and send it: the
 * pid is never looked up.  The child waits until we have sent it (a byte
 * on a pipe of ours; EOF if we died first: it then leaves quietly), so it
 * never runs unowned.
 */
int psi_op_fork(struct psi_ctx *c, const struct psi_op *op)
{
    struct psi_clone_args args;
    int64_t sock;
    int go[2], pidfd = -1, saved;
    long pid;
    int32_t pid32;
    char byte = 1;

    (void)c;
    if (psi_int(op, 0, &sock) < 0)
        return -1;
    if (pipe2(go, O_CLOEXEC) < 0)
        return -1;
    memset(&args, 0, sizeof(args));
    args.flags = CLONE_PARENT | CLONE_PIDFD;
    args.pidfd = (uint64_t)(uintptr_t)&pidfd;
    args.exit_signal = 0;   /* CLONE_PARENT: the parent's own exit signal is taken */
    pid = syscall(SYS_clone3, &args, sizeof(args));
    if (pid < 0 && (errno == ENOSYS || errno == EPERM)) {
        /* A seccomp filter (the container's, loaded before us when the exec
         * has no no_new_privs) may refuse clone3, which is newer than the
         * syscalls its profile names: the legacy clone, whose CLONE_PIDFD
         * returns the pidfd through parent_tid.  Exit signal 0, as above. */
        pidfd = -1;
        pid = psi_clone_legacy(CLONE_PARENT | CLONE_PIDFD, &pidfd);
    }
    if (pid < 0) {
        saved = errno;
        close(go[0]);
        close(go[1]);
        errno = saved;
        return -1;
    }
    if (pid == 0) {
        ssize_t r;
        close(go[1]);
        close((int)sock);
        do
            r = read(go[0], &byte, 1);
        while (r < 0 && errno == EINTR);
        if (r != 1)
            _exit(127);   /* not handed over: nobody would own us */
        close(go[0]);
        /* A session of our own, as every exec'd process has (main()). */
        if (setsid() < 0)
            return -1;
        return 0;
    }
    close(go[0]);
    pid32 = (int32_t)pid;
    if (psi_send_fd((int)sock, &pid32, sizeof(pid32), pidfd) < 0) {
        saved = errno;
        syscall(SYS_pidfd_send_signal, pidfd, SIGKILL, NULL, 0);
        errno = saved;
        return -1;   /* we report it; the child reads EOF and leaves */
    }
    if (write(go[1], &byte, 1) != 1)
        _exit(127);   /* cannot happen (a pipe of our own): the child reads EOF */
    _exit(0);
}

int psi_op_setns(struct psi_ctx *c, const struct psi_op *op)
{
    int64_t fd, type;
    (void)c;
    if (psi_int(op, 0, &fd) < 0 || psi_int(op, 1, &type) < 0)
        return -1;
    if (setns((int)fd, (int)type) < 0)
        return -1;
    return close((int)fd);
}

int psi_op_unshare(struct psi_ctx *c, const struct psi_op *op)
{
    int64_t flags;
    (void)c;
    if (psi_int(op, 0, &flags) < 0)
        return -1;
    return unshare((int)flags);
}
