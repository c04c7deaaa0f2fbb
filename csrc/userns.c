/*
 * The user-namespace helper child (DESIGN.md invariants 2 and 3).
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
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "pidsafe.h"
#include "userns.h"

/* The helper calls three syscalls in a loop: a few pages are plenty. */
#define HELPER_STACK_SIZE (16 * 1024)

/* What the helper reads; lives at the top of its stack mapping. */
struct helper_block {
    uint64_t all_signals;   /* kernel sigset_t (64 bits on x86_64, aarch64) */
    int32_t parent_pid;
    int32_t pad;
} __attribute__((aligned(64)));

/*
 * Each thread keeps one helper stack for its next helper: get_userns_fd()
 * reaps its helper before it returns, so the stack is idle again by then,
 * and reusing it saves an mmap/mprotect/munmap (with the page faults and
 * the TLB shootdown of unmapping memory another CPU ran on) per call.  The
 * cached stack is marked busy while a helper runs on it: a nested call (a
 * signal handler calling get_userns_fd in the middle of one) or a helper
 * that could not be proven dead gets, or leaves, a stack of its own.
 * A thread-specific-data destructor unmaps an idle cached stack at thread
 * exit.
 */
struct stack_slot {
    char *map;
    size_t map_size;
    int busy;
};

static pthread_key_t slot_key;
static pthread_once_t slot_once = PTHREAD_ONCE_INIT;
static int slot_key_ok;

static void slot_free(void *p)
{
    struct stack_slot *slot = p;

    if (slot->map != NULL && !slot->busy)
        munmap(slot->map, slot->map_size);
    slot->map = NULL;
}

static void slot_key_init(void)
{
    slot_key_ok = pthread_key_create(&slot_key, slot_free) == 0;
}

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
    static long page_size;
    struct pidsafe_clone_args args;
    struct helper_block *block;
    uint64_t all = ~(uint64_t)0, old = 0;
    size_t map_size;
    char *mem;
    long pid;
    int saved;
    int pidfd = -1;

    static __thread struct stack_slot slot;
    struct stack_slot *use = NULL;

    if (page_size == 0)
        page_size = sysconf(_SC_PAGESIZE);
    h->pid = -1;
    h->pidfd = -1;
    h->map_addr = 0;
    h->map_size = 0;
    h->slot = 0;

    /* [guard page][stack ...][block] */
    map_size = (size_t)page_size + HELPER_STACK_SIZE;
    if (!slot.busy) {
        if (slot.map == NULL) {
            pthread_once(&slot_once, slot_key_init);
            slot.map = pidsafe_stack_map(map_size);
            if (slot.map == NULL)
                return -1;
            slot.map_size = map_size;
            /* Without a key the stack lives as long as the process: still correct. */
            if (slot_key_ok)
                pthread_setspecific(slot_key, &slot);
        }
        use = &slot;
        mem = slot.map;
    } else {
        mem = pidsafe_stack_map(map_size);
        if (mem == NULL)
            return -1;
    }
    block = (struct helper_block *)(mem + map_size - sizeof(*block));
    block->all_signals = all;
    block->parent_pid = parent_pid;

    memset(&args, 0, sizeof(args));
    args.flags = PIDSAFE_CLONE_NEWUSER | PIDSAFE_CLONE_VM | PIDSAFE_CLONE_PIDFD | extra_flags;
    args.pidfd = (uint64_t)(uintptr_t)&pidfd;
    args.exit_signal = 0;
    args.stack = (uint64_t)(uintptr_t)(mem + page_size);
    /* The stack ends where the block begins (64-byte aligned, so 16 too). */
    args.stack_size = (uint64_t)((char *)block - (mem + page_size));

    /*
     * Block every signal (raw: this also blocks glibc's internal ones) so
     * the helper starts with all of them blocked; restore ours at once.
     */
    pidsafe_raw_syscall4(SYS_rt_sigprocmask, SIG_SETMASK, (long)&all, (long)&old, 8);
    pid = pidsafe_clone3(&args, sizeof(args), userns_helper_main, block);
    saved = errno;
    pidsafe_raw_syscall4(SYS_rt_sigprocmask, SIG_SETMASK, (long)&old, 0, 8);
    if (pid < 0) {
        if (use == NULL)
            munmap(mem, map_size);
        errno = saved;
        return -1;
    }
    if (use != NULL)
        use->busy = 1;
    h->pid = (int32_t)pid;
    h->pidfd = pidfd;
    h->map_addr = (uint64_t)(uintptr_t)mem;
    h->map_size = map_size;
    h->slot = (uint64_t)(uintptr_t)use;
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
    void *mem = (void *)(uintptr_t)h->map_addr;
    size_t size = (size_t)h->map_size;
    struct stack_slot *slot = (struct stack_slot *)(uintptr_t)h->slot;

    if (mem == NULL)
        return 0;  /* idempotent */
    h->map_addr = 0;
    h->map_size = 0;
    h->slot = 0;
    if (slot != NULL) {
        slot->busy = 0;  /* back to its thread's cache */
        return 0;
    }
    return munmap(mem, size);
}
