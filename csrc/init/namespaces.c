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
 * The child of PSI_OP_FORK, once it is born: it waits until the parent has
 * been handed its pidfd (a byte on a pipe of ours; EOF if we died first: it
 * then leaves quietly), so that it never runs unowned.  0, or -1 and errno.
 */
static int handed_over(int go_r, int go_w, int sock)
{
    char byte;
    ssize_t r;

    close(go_w);
    close(sock);
    do
        r = read(go_r, &byte, 1);
    while (r < 0 && errno == EINTR);
    if (r != 1)
        _exit(127);   /* not handed over: nobody would own us */
    close(go_r);
    /* A session of our own, as every exec'd process has (main()). */
    return setsid() < 0 ? -1 : 0;
}

/*
 * The child's stack, and what it starts with, when it shares our memory
 * (CLONE_VM, below).  Only the child touches them once it is born.  The
 * ops after a fork (the cgroup joins, the terminal, the exec, a late
 * filter) need a few KiB: exec_program()'s path buffer is the largest.
 */
#define PSI_CHILD_STACK (256 * 1024)
static char child_stack[PSI_CHILD_STACK] __attribute__((aligned(64)));
static struct {
    struct psi_ctx ctx;
    int go_r, go_w, sock;
} child_start;

static int shared_child(void *arg)
{
    (void)arg;
    if (handed_over(child_start.go_r, child_start.go_w, child_start.sock) < 0)
        psi_fail(child_start.ctx.index, PSI_OP_FORK, errno ? errno : EIO);
    psi_run(&child_start.ctx, child_start.ctx.index + 1L);
}

/*
 * Whether the child may share our memory (CLONE_VM) instead of a copy of
 * it: the rest of the stream changes nobody's credentials or namespaces
 * (invariant 8: no credential change in shared memory), and no filter of
 * ours is loaded yet, whose calls init/_seccomp_eval.py lists for the
 * fork (clone3 and the plain fork's clone).
 */
static int may_share_memory(const struct psi_ctx *c)
{
    long i;

    if (c->filtered)
        return 0;
    for (i = c->index + 1L; i < c->nops; i++)
        switch (c->ops[i].code) {
        case PSI_OP_SETID_ROOT:
        case PSI_OP_CAP_BOUNDING:
        case PSI_OP_USER:
        case PSI_OP_CAPS:
        case PSI_OP_SETNS:
        case PSI_OP_UNSHARE:
        case PSI_OP_SECCOMP:
            return 0;
        default:
            break;
        }
    return 1;
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
 * pid is never looked up.  The child waits until we have sent it
 * (handed_over()), so it never runs unowned.
 *
 * Where it may (may_share_memory()), the child shares our memory rather
 * than a copy: a fork copies our page tables and both of us then fault on
 * every page we write; here that was ~100 us of each exec.  The child runs
 * the rest of the stream on a stack of its own (psi_run(), it never
 * returns into our frames), and from the moment it is born we only send,
 * write the go byte and exit: nothing either writes is the other's, errno
 * aside, which the child reads only before it is let go (and we kill it if
 * our send failed).  What the container sees is the same: the memory is
 * pidsafe-init's, non-dumpable and owned by the initial user namespace
 * (the mm of an exec made there), so no process of the container may read
 * or write it, ours or the child's; our exit leaves it to the child, whose
 * execve drops it.  If the kernel or a filter of the caller's refuses the
 * shared clone, the child is forked as before.
 */
int psi_op_fork(struct psi_ctx *c, const struct psi_op *op)
{
    struct psi_clone_args args;
    int64_t sock;
    int go[2], pidfd = -1, saved;
    long pid = -1;
    int32_t pid32;
    char byte = 1;

    if (psi_int(op, 0, &sock) < 0)
        return -1;
    if (pipe2(go, O_CLOEXEC) < 0)
        return -1;
    if (may_share_memory(c)) {
        child_start.ctx = *c;
        child_start.go_r = go[0];
        child_start.go_w = go[1];
        child_start.sock = (int)sock;
        /* Exit signal 0 (the low byte): CLONE_PARENT takes the parent's own. */
        pid = clone(shared_child, child_stack + sizeof(child_stack),
                    CLONE_VM | CLONE_PARENT | CLONE_PIDFD, NULL, &pidfd);
        if (pid < 0)
            pidfd = -1;
    }
    if (pid < 0) {
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
        if (pid == 0)
            return handed_over(go[0], go[1], (int)sock);
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
