/*
 * spawn: clone3(CLONE_PIDFD|CLONE_VM|CLONE_VFORK), the parent's side.  The
 * child's side, up to execve, is csrc/native/child.c.
 *
 * Why CLONE_VM|CLONE_VFORK on a private stack: the child shares the parent's
 * address space instead of copying its page tables, so the cost of a spawn
 * does not grow with the caller's memory (invariant 3).  The
 * calling thread is suspended until the child has exec'd or exited, which is
 * what makes sharing memory safe: nothing the child reads can change under
 * it, and the stack is free again as soon as clone3() returns.
 *
 * Why exit_signal 0: until it execs, the kernel treats the child as a
 * "clone" child: waitpid(-1)/waitid(P_ALL) without __WALL or __WCLONE do not
 * see it, and a SIGCHLD disposition of SIG_IGN does not auto-reap it.  But
 * execve() resets the exit signal to SIGCHLD (see execve(2)), so once the
 * program runs it is an ordinary child: a foreign reaper in the same process
 * (a SIGCHLD handler calling os.waitpid(-1, ...), SIGCHLD set to SIG_IGN)
 * can reap it.  Its status is not lost then: the kernel keeps it on the pidfd
 * (PIDFD_INFO_EXIT, Linux 6.15), where Process._reap_locked() finds it.
 * pidsafe itself waits with waitid(P_PIDFD, ..., __WALL).  If we die, the
 * child is reparented and init reaps it as usual.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <string.h>

#include "pidsafe.h"

static int exit_at_once(void *arg)
{
    (void)arg;
    return 0;
}

/* clone3 on a stack from the cache (csrc/native/stack.c), given back at once. */
static long clone_vfork(uint64_t flags, int cgroup_fd, pidsafe_child_fn fn, void *arg,
                        int *pidfd_out)
{
    struct pidsafe_clone_args args;
    struct pidsafe_stack st;
    long pid;
    int pidfd = -1;
    int saved;

    if (pidsafe_stack_get(&st) < 0)
        return -1;
    memset(&args, 0, sizeof(args));
    args.flags = flags | PIDSAFE_CLONE_PIDFD | PIDSAFE_CLONE_VM | PIDSAFE_CLONE_VFORK;
    args.pidfd = (uint64_t)(uintptr_t)&pidfd;
    args.exit_signal = 0;
    args.stack = (uint64_t)(uintptr_t)(st.map + (st.map_size - PIDSAFE_STACK_SIZE));
    args.stack_size = PIDSAFE_STACK_SIZE;
    if (cgroup_fd >= 0) {
        args.flags |= PIDSAFE_CLONE_INTO_CGROUP;
        args.cgroup = (uint64_t)cgroup_fd;
    }
    pid = pidsafe_clone3(&args, sizeof(args), fn, arg);
    saved = errno;
    /* CLONE_VFORK: the child has exec'd or exited; nobody runs on the stack. */
    pidsafe_stack_put(&st);
    if (pid < 0) {
        errno = saved;
        return -1;
    }
    *pidfd_out = pidfd;
    return pid;
}

/*
 * CLONE_CLEAR_SIGHAND (Linux 5.5): as it copies our signal dispositions for
 * the child, the kernel puts every caught signal back to SIG_DFL and leaves
 * ignored ones ignored (flush_signal_handlers(child, 0), as execve does).
 * That is exactly what the child must do before anything else (our
 * handlers would run in our memory), and otherwise does itself with two
 * sigaction() calls per signal: 130 system calls per spawn, inside the
 * window in which the parent is suspended.
 *
 * Probed by use, never by version: a kernel that does not know the flag
 * refuses clone3 with EINVAL before it creates anything, so we clone again
 * without it and remember (the child then resets its handlers itself).  An
 * EINVAL that the retry gets too is another argument's fault, and tells
 * nothing about the flag.  Racing threads may both probe: harmless.
 */
static int clear_sighand_refused;

static long clone_spawn_child(const struct pidsafe_spawn_spec *spec,
                              struct pidsafe_spawn_ctx *ctx, int *pidfd_out)
{
    long pid;
    int probed = 0;

    if (!__atomic_load_n(&clear_sighand_refused, __ATOMIC_RELAXED)) {
        probed = 1;
        ctx->handlers_cleared = 1;
        if (spec->fail_stage == PIDSAFE_FAULT_NO_CLEAR_SIGHAND) {
            pid = -1;   /* tests only: as an older kernel refuses the flag */
            errno = EINVAL;
        } else {
            pid = clone_vfork(spec->clone_flags | PIDSAFE_CLONE_CLEAR_SIGHAND,
                              spec->cgroup_fd, pidsafe_spawn_child, ctx, pidfd_out);
        }
        if (pid >= 0 || errno != EINVAL)
            return pid;
    }
    ctx->handlers_cleared = 0;
    pid = clone_vfork(spec->clone_flags, spec->cgroup_fd, pidsafe_spawn_child, ctx,
                      pidfd_out);
    if (pid >= 0 && probed && spec->fail_stage != PIDSAFE_FAULT_NO_CLEAR_SIGHAND)
        __atomic_store_n(&clear_sighand_refused, 1, __ATOMIC_RELAXED);
    return pid;
}

int pidsafe_spawn(const struct pidsafe_spawn_spec *spec, int *pidfd_out,
                  struct pidsafe_child_error *failure_out)
{
    struct pidsafe_spawn_ctx ctx;
    sigset_t all, old;
    long pid;
    int saved, rc;

    /*
     * Block every signal for the clone: a handler must not run in the child
     * while it still shares our memory.  The child restores this mask itself
     * right before exec; we restore it as soon as clone3() returns.
     * pthread_sigmask() returns the error number and leaves errno alone.
     */
    sigfillset(&all);
    if (spec->fail_stage == PIDSAFE_FAULT_SIGMASK)
        rc = spec->fail_errno;  /* tests only: as if pthread_sigmask failed */
    else
        rc = pthread_sigmask(SIG_SETMASK, &all, &old);
    if (rc != 0) {
        errno = rc;
        return -1;
    }
    failure_out->stage = 0;
    failure_out->err = 0;
    ctx.spec = spec;
    ctx.parent_mask = &old;
    ctx.failure = failure_out;
    pid = clone_spawn_child(spec, &ctx, pidfd_out);
    saved = errno;
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (pid < 0) {
        errno = saved;
        return -1;
    }
    return (int)pid;
}

int pidsafe_probe_child(int *pidfd_out)
{
    long pid = clone_vfork(0, -1, exit_at_once, NULL, pidfd_out);
    return pid < 0 ? -1 : (int)pid;
}
