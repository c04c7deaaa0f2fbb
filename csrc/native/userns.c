/*
 * The user-namespace helper child (invariants 2 and 3).
 *
 * To get an fd for a new user namespace with chosen maps, something must
 * live in that namespace while /proc/PID/ns/user and the map files are
 * opened.  containerd forks a helper; forking a large Python process costs
 * time linear in its memory (page tables are copied).  Here the helper comes
 * from clone3(CLONE_NEWUSER|CLONE_VM|CLONE_PIDFD): it shares our memory, so
 * its cost does not depend on how big we are, and the pidfd is born with it.
 *
 * It cannot be CLONE_VFORK: the parent must run (open the /proc files, write
 * the maps) while the helper exists.  So the helper runs concurrently with
 * the thread that made it, in the same address space and with the same TLS
 * (clone3 without CLONE_SETTLS keeps the thread pointer).  Hence its rules:
 *   - raw syscalls only (userns.h): glibc's wrappers write errno, which is
 *     the parent thread's errno;
 *   - it reads only its own block at the top of its stack mapping, which
 *     the parent unmaps only after the helper is dead and reaped;
 *   - it runs with every signal blocked (the parent blocks them around
 *     clone3 and the child inherits the mask), so none of our signal
 *     handlers (Python's among them) can ever run on the helper's stack in
 *     our memory.  SIGKILL cannot be blocked: it is how the helper ends.
 *
 * exit_signal is 0 (as for spawn): waitpid(-1) and SIGCHLD handlers that do
 * not pass __WALL never see the helper, so a foreign global reaper cannot
 * steal its status; one that does use __WALL may reap it, which the parent
 * tolerates (ECHILD).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "pidsafe.h"
#include "userns.h"

/* What the helper reads; lives at the top of its stack. */
struct helper_block {
    uint64_t all_signals;   /* kernel sigset_t (64 bits on x86_64, aarch64) */
    int32_t parent_pid;
    int32_t pad;
} __attribute__((aligned(64)));

/*
 * The helper's stack comes from the one cache of child stacks
 * (csrc/native/stack.c): get_userns_fd() reaps its helper before it returns, so
 * the cached stack is idle again by then.  It stays busy while the helper
 * may run on it; a helper that could not be proven dead keeps it for good.
 */

static int userns_helper_main(void *arg)
{
    const struct helper_block *b = arg;

    /*
     * If the parent thread dies, so does the helper.  If it died before
     * this prctl(), no signal will come: then our parent is no longer the
     * expected process and we leave at once.
     */
    pidsafe_raw_syscall4(SYS_prctl, PR_SET_PDEATHSIG, SIGKILL, 0, 0);
    if (pidsafe_raw_syscall4(SYS_getppid, 0, 0, 0, 0) != b->parent_pid)
        return 1;
    /*
     * Sleep until killed.  Every signal is blocked, so rt_sigsuspend with
     * the full mask returns only for SIGKILL (which never returns) or a
     * spurious wake-up (ptrace, SIGSTOP/SIGCONT): loop.
     */
    for (;;)
        pidsafe_raw_syscall4(SYS_rt_sigsuspend, (long)&b->all_signals, 8, 0, 0);
    return 1;
}

int pidsafe_userns_helper_start(struct pidsafe_userns_helper *h, int32_t parent_pid,
                                uint64_t extra_flags)
{
#if PIDSAFE_HAS_RAW_SYSCALL
    struct pidsafe_clone_args args;
    struct helper_block *block;
    struct pidsafe_stack st;
    uint64_t all = ~(uint64_t)0, old = 0;
    long pid;
    int saved;
    int pidfd = -1;

    h->pid = -1;
    h->pidfd = -1;
    h->map_addr = 0;
    h->map_size = 0;
    h->slot = 0;

    /* [guard page][stack ...][block] */
    if (pidsafe_stack_get(&st) < 0)
        return -1;
    block = (struct helper_block *)(st.map + st.map_size - sizeof(*block));
    block->all_signals = all;
    block->parent_pid = parent_pid;

    memset(&args, 0, sizeof(args));
    args.flags = PIDSAFE_CLONE_NEWUSER | PIDSAFE_CLONE_VM | PIDSAFE_CLONE_PIDFD | extra_flags;
    args.pidfd = (uint64_t)(uintptr_t)&pidfd;
    args.exit_signal = 0;
    args.stack = (uint64_t)(uintptr_t)(st.map + (st.map_size - PIDSAFE_STACK_SIZE));
    /* The stack ends where the block begins (64-byte aligned, so 16 too). */
    args.stack_size = (uint64_t)((char *)block - (char *)(uintptr_t)args.stack);

    /*
     * Block every signal (raw: this also blocks glibc's internal ones) so
     * the helper starts with all of them blocked; restore ours at once.
     */
    pidsafe_raw_syscall4(SYS_rt_sigprocmask, SIG_SETMASK, (long)&all, (long)&old, 8);
    pid = pidsafe_clone3(&args, sizeof(args), userns_helper_main, block);
    saved = errno;
    pidsafe_raw_syscall4(SYS_rt_sigprocmask, SIG_SETMASK, (long)&old, 0, 8);
    if (pid < 0) {
        pidsafe_stack_put(&st);
        errno = saved;
        return -1;
    }
    h->pid = (int32_t)pid;
    h->pidfd = pidfd;
    h->map_addr = (uint64_t)(uintptr_t)st.map;
    h->map_size = st.map_size;
    h->slot = (uint64_t)(uintptr_t)st.slot;
    return (int)pid;
#else
    (void)parent_pid; (void)extra_flags;
    h->pid = -1;
    h->pidfd = -1;
    h->map_addr = 0;
    h->map_size = 0;
    h->slot = 0;
    errno = ENOSYS;
    return -1;
#endif
}

int pidsafe_userns_helper_free(struct pidsafe_userns_helper *h)
{
    struct pidsafe_stack st;

    if (h->map_addr == 0)
        return 0;  /* idempotent */
    st.map = (char *)(uintptr_t)h->map_addr;
    st.map_size = (size_t)h->map_size;
    st.slot = (void *)(uintptr_t)h->slot;
    h->map_addr = 0;
    h->map_size = 0;
    h->slot = 0;
    pidsafe_stack_put(&st);
    return 0;
}
