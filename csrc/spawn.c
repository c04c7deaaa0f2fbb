/*
 * spawn: clone3(CLONE_PIDFD|CLONE_VM|CLONE_VFORK) and the child up to execve.
 *
 * Why CLONE_VM|CLONE_VFORK on a private stack: the child shares the parent's
 * address space instead of copying its page tables, so the cost of a spawn
 * does not grow with the caller's memory (DESIGN.md invariant 3).  The
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
#include <fcntl.h>
#include <linux/futex.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "pidsafe.h"
#include "userns.h"

extern char **environ;

/* The child calls few functions, none recursive: 64 KiB is generous. */
#define SPAWN_STACK_SIZE (64 * 1024)

struct spawn_ctx {
    const struct pidsafe_spawn_spec *spec;
    const sigset_t *parent_mask;  /* restored in the child just before exec */
};

/*
 * The child.  It runs on a stack of its own but in the parent's memory, so
 * it may call only async-signal-safe functions: no malloc, no stdio, no
 * locks, nothing that touches Python.  It writes nothing the parent reads
 * except through the error pipe.  errno is the suspended parent thread's
 * (TLS is shared); the parent does not rely on it across clone3().
 *
 * On any failure it writes {stage, errno} to the close-on-exec error pipe and
 * exits with 127; on success the pipe closes at exec and the parent reads EOF.
 */
static void report_and_exit(int fd, int stage, int err)
{
    struct pidsafe_child_error rec;
    ssize_t n;

    rec.stage = stage;
    rec.err = err;
    do {
        n = write(fd, &rec, sizeof(rec));
    } while (n < 0 && errno == EINTR);
    _exit(127);
}

static int move_off_stdio(int fd)
{
    /* A duplicate >= 3, close-on-exec: it dies at exec or in close_fds. */
    return fcntl(fd, F_DUPFD_CLOEXEC, 3);
}

static int close_fds_except(const int *keep, int n_keep, int errpipe)
{
    unsigned int start = 3;
    int i;

    for (i = 0; i <= n_keep; i++) {
        unsigned int until;
        if (i < n_keep)
            until = (unsigned int)keep[i];
        else
            until = ~0U;
        if (until > start) {
            if (pidsafe_close_range(start, until - 1, 0) < 0) {
                if (errno != ENOSYS && errno != EINVAL)
                    return -1;
                /* No close_range (Linux < 5.9): close one by one. */
                struct rlimit rl;
                unsigned int fd, last = until - 1;
                if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY
                    && rl.rlim_cur - 1 < last)
                    last = (unsigned int)rl.rlim_cur - 1;
                for (fd = start; fd <= last && fd >= start; fd++) {
                    if ((int)fd != errpipe)
                        close((int)fd);
                }
            }
        }
        if (i < n_keep)
            start = (unsigned int)keep[i] + 1;
    }
    return 0;
}

/*
 * uid and gid 0 of the user namespace we are in, as nsenter --user and
 * unshare --map-root-user do, where the maps give us one: EINVAL means
 * "0 is not mapped here", and then we keep the (overflow) ids we have.
 * setgroups(0) drops the host's supplementary groups where the namespace
 * allows it (EPERM: /proc/PID/setgroups is "deny").  Raw syscalls, as
 * CPython's _posixsubprocess does after CLONE_VM: glibc's wrappers would
 * try to change the ids of every thread of the process we share memory
 * with.
 */
static int become_root(void)
{
    if (syscall(SYS_setgroups, 0, NULL) < 0 && errno != EPERM)
        return -1;
    if (syscall(SYS_setresgid, 0, 0, 0) < 0 && errno != EINVAL)
        return -1;
    if (syscall(SYS_setresuid, 0, 0, 0) < 0 && errno != EINVAL)
        return -1;
    return 0;
}

static int spawn_child(void *arg)
{
    const struct spawn_ctx *ctx = arg;
    const struct pidsafe_spawn_spec *s = ctx->spec;
    const int ep = s->errpipe_write;
    int fds[3];
    int sig, i;
    char **envp;
    int saved_errno = 0;

    /*
     * Signal handlers installed by the parent (Python's among them) would run
     * in our shared memory; put every caught signal back to SIG_DFL.  All
     * signals stay blocked (the parent blocked them) until just before exec.
     */
    for (sig = 1; sig < NSIG; sig++) {
        struct sigaction sa;
        if (sig == SIGKILL || sig == SIGSTOP)
            continue;
        if (sigaction(sig, NULL, &sa) < 0)
            continue;  /* glibc's internal signals: EINVAL */
        if (sa.sa_handler == SIG_DFL)
            continue;
        if (sa.sa_handler == SIG_IGN
            && !(s->restore_signals && (sig == SIGPIPE || sig == SIGXFSZ)))
            continue;
        memset(&sa, 0, sizeof(sa));
        sa.sa_handler = SIG_DFL;
        if (sigaction(sig, &sa, NULL) < 0)
            report_and_exit(ep, PIDSAFE_STAGE_SIGNALS, errno);
    }

    /*
     * User namespace, first: every later step (fds, chdir, exec) then runs
     * with the namespace's credentials.  setns(CLONE_NEWUSER) refuses a
     * caller that shares its thread group or fs_struct, not one that shares
     * its mm (the mm_users check went in Linux 3.9), so this works in a
     * CLONE_VM child.  Namespaces unshared after joining are owned by the
     * joined namespace.
     */
    if (s->join_userns && setns(s->userns_fd, CLONE_NEWUSER) < 0)
        report_and_exit(ep, PIDSAFE_STAGE_USERNS, errno);
    if (s->unshare_flags && unshare((int)s->unshare_flags) < 0)
        report_and_exit(ep, PIDSAFE_STAGE_UNSHARE, errno);
    if (s->become_root && become_root() < 0)
        report_and_exit(ep, PIDSAFE_STAGE_SETID, errno);

    /*
     * stdio.  A source fd may itself be 0, 1 or 2; move any that a later
     * dup2() would overwrite out of the way first (as _posixsubprocess does).
     */
    fds[0] = s->stdio[0];
    fds[1] = s->stdio[1];
    fds[2] = s->stdio[2];
    if (fds[1] == 0 && (fds[1] = move_off_stdio(fds[1])) < 0)
        report_and_exit(ep, PIDSAFE_STAGE_STDIO, errno);
    while (fds[2] == 0 || fds[2] == 1) {
        if ((fds[2] = move_off_stdio(fds[2])) < 0)
            report_and_exit(ep, PIDSAFE_STAGE_STDIO, errno);
    }
    for (i = 0; i < 3; i++) {
        if (fds[i] < 0)
            continue;
        if (fds[i] == i) {
            /* Already in place: only make sure it survives exec. */
            if (fcntl(i, F_SETFD, 0) < 0)
                report_and_exit(ep, PIDSAFE_STAGE_STDIO, errno);
        } else if (dup2(fds[i], i) < 0) {
            report_and_exit(ep, PIDSAFE_STAGE_STDIO, errno);
        }
    }

    /* pass_fds: the only fds >= 3 that outlive exec. */
    for (i = 0; i < s->n_keep_fds; i++) {
        int fd = s->keep_fds[i];
        if (fd == ep)
            continue;
        if (fcntl(fd, F_SETFD, 0) < 0)
            report_and_exit(ep, PIDSAFE_STAGE_PASS_FDS, errno);
    }

    if (s->close_fds && close_fds_except(s->keep_fds, s->n_keep_fds, ep) < 0)
        report_and_exit(ep, PIDSAFE_STAGE_CLOSE_FDS, errno);

    if (s->new_session && setsid() < 0)
        report_and_exit(ep, PIDSAFE_STAGE_SETSID, errno);

    if (s->pdeathsig) {
        if (prctl(PR_SET_PDEATHSIG, (unsigned long)s->pdeathsig, 0, 0, 0) < 0)
            report_and_exit(ep, PIDSAFE_STAGE_PDEATHSIG, errno);
        /* The parent may have died before the prctl(): then no signal comes. */
        if (getppid() != s->parent_pid)
            report_and_exit(ep, PIDSAFE_STAGE_PARENT_GONE, ESRCH);
    }

    if (s->cwd && chdir(s->cwd) < 0)
        report_and_exit(ep, PIDSAFE_STAGE_CHDIR, errno);

    if (sigprocmask(SIG_SETMASK, ctx->parent_mask, NULL) < 0)
        report_and_exit(ep, PIDSAFE_STAGE_SIGNALS, errno);

    /*
     * Try each candidate (the parent did the PATH search).  Like execvpe, keep
     * the first error that is not "not here" (ENOENT, ENOTDIR), so that an
     * EACCES on an earlier PATH entry is not masked by ENOENT on a later one.
     */
    envp = s->envp ? s->envp : environ;
    for (i = 0; s->exec_paths[i] != NULL; i++) {
        execve(s->exec_paths[i], s->argv, envp);
        if (errno != ENOENT && errno != ENOTDIR && saved_errno == 0)
            saved_errno = errno;
    }
    report_and_exit(ep, PIDSAFE_STAGE_EXEC, saved_errno ? saved_errno : errno);
    return 127;
}

static int exit_at_once(void *arg)
{
    (void)arg;
    return 0;
}

/*
 * The child stack.  With CLONE_VFORK the calling thread is suspended until
 * the child has exec'd or exited, so by the time clone3() returns nobody runs
 * on the stack any more and the thread can reuse it for its next spawn: one
 * stack per spawning thread, mapped on first use (with a guard page below it)
 * and unmapped by a thread-specific-data destructor when the thread exits.
 * That saves an mmap/mprotect/munmap (and the page faults and TLB shootdown
 * that come with them) on every spawn.
 */
struct stack {
    char *map;
    size_t map_size;
};

static pthread_key_t stack_key;
static pthread_once_t stack_once = PTHREAD_ONCE_INIT;
static int stack_key_ok;

static void stack_free(void *p)
{
    struct stack *st = p;
    munmap(st->map, st->map_size);
}

static void stack_key_init(void)
{
    stack_key_ok = pthread_key_create(&stack_key, stack_free) == 0;
}

static int stack_map(struct stack *st)
{
    st->map_size = SPAWN_STACK_SIZE + (size_t)sysconf(_SC_PAGESIZE);
    st->map = pidsafe_stack_map(st->map_size);
    return st->map == NULL ? -1 : 0;
}

/* The calling thread's spawn stack, or NULL and errno. */
static struct stack *thread_stack(void)
{
    static __thread struct stack st;

    if (st.map != NULL)
        return &st;
    pthread_once(&stack_once, stack_key_init);
    if (stack_map(&st) < 0)
        return NULL;
    /* Without a key the stack lives as long as the process: still correct. */
    if (stack_key_ok)
        pthread_setspecific(stack_key, &st);
    return &st;
}

static long clone_vfork_on_thread_stack(uint64_t flags, int cgroup_fd,
                                        pidsafe_child_fn fn, void *arg, int *pidfd_out)
{
    struct pidsafe_clone_args args;
    struct stack *st;
    long pid;
    int pidfd = -1;

    st = thread_stack();
    if (st == NULL)
        return -1;
    memset(&args, 0, sizeof(args));
    args.flags = flags | PIDSAFE_CLONE_PIDFD | PIDSAFE_CLONE_VM | PIDSAFE_CLONE_VFORK;
    args.pidfd = (uint64_t)(uintptr_t)&pidfd;
    args.exit_signal = 0;
    args.stack = (uint64_t)(uintptr_t)(st->map + (st->map_size - SPAWN_STACK_SIZE));
    args.stack_size = SPAWN_STACK_SIZE;
    if (cgroup_fd >= 0) {
        args.flags |= PIDSAFE_CLONE_INTO_CGROUP;
        args.cgroup = (uint64_t)cgroup_fd;
    }
    pid = pidsafe_clone3(&args, sizeof(args), fn, arg);
    if (pid < 0)
        return -1;
    *pidfd_out = pidfd;
    return pid;
}

int pidsafe_spawn(const struct pidsafe_spawn_spec *spec, int *pidfd_out)
{
    struct spawn_ctx ctx;
    sigset_t all, old;
    long pid;
    int saved;

    /*
     * Block every signal for the clone: a handler must not run in the child
     * while it still shares our memory.  The child restores this mask itself
     * right before exec; we restore it as soon as clone3() returns.
     */
    sigfillset(&all);
    if (pthread_sigmask(SIG_SETMASK, &all, &old) != 0)
        return -1;
    ctx.spec = spec;
    ctx.parent_mask = &old;
    pid = clone_vfork_on_thread_stack(spec->clone_flags, spec->cgroup_fd,
                                      spawn_child, &ctx, pidfd_out);
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
    long pid = clone_vfork_on_thread_stack(0, -1, exit_at_once, NULL, pidfd_out);
    return pid < 0 ? -1 : (int)pid;
}

/*
 * Two-phase spawn: a child in a new user namespace (issue 3).
 *
 * clone3(CLONE_NEWUSER) makes the namespace together with the child, and
 * every other CLONE_NEW* of the same call is owned by it (a pid namespace
 * too, which no later unshare() could give the child itself).  But the
 * parent must write the namespace's maps while the child waits, so the
 * parent cannot be suspended: no CLONE_VFORK.  Still CLONE_VM: no copy of
 * our address space.  The price is a child that runs concurrently with the
 * thread that made it, in the same memory and with the same TLS (errno):
 *
 * phase 1 (from clone3 until pidsafe_spawn_resume): the child only makes
 *   raw syscalls (userns.h), which never touch errno, and reads only the
 *   block at the top of its stack mapping and the spec, both of which stay
 *   alive until it has left our memory.  It arms PR_SET_PDEATHSIG(SIGKILL)
 *   (so it cannot outlive a parent that dies before releasing it) and sleeps
 *   on a futex.  Meanwhile the parent (Python) writes the maps.
 * phase 2 (after the release): the parent thread is blocked in
 *   pidsafe_spawn_resume with every signal blocked, making raw syscalls
 *   only, exactly as a CLONE_VFORK parent is suspended: the child runs the
 *   ordinary spawn_child() (libc, errno) up to exec.
 *
 * How the parent knows the child has left our memory: CLONE_CHILD_CLEARTID.
 * When a task releases its mm (exec_mmap on a successful execve, or exit,
 * including a SIGKILL), the kernel writes 0 to its clear_child_tid word and
 * futex-wakes it (mm_release(), the mechanism behind pthread_join).  That is
 * exactly the moment a CLONE_VFORK parent is woken, so resume() returns
 * with the same guarantee as clone3 returning for spawn: the error record,
 * if any, is already in the pipe, and the stack can be unmapped.
 */
struct two_phase_block {
    struct spawn_ctx ctx;
    sigset_t parent_mask;     /* restored by the child right before exec */
    uint32_t go;              /* futex: set to 1 by pidsafe_spawn_resume */
    uint32_t tid;             /* CLONE_CHILD_CLEARTID: 0 once our mm is released */
} __attribute__((aligned(64)));

static int two_phase_child(void *arg)
{
    struct two_phase_block *b = arg;
    const struct pidsafe_spawn_spec *s = b->ctx.spec;

    /* Phase 1: raw syscalls only. */
    pidsafe_raw_syscall4(SYS_prctl, PR_SET_PDEATHSIG, SIGKILL, 0, 0);
    if (pidsafe_raw_syscall4(SYS_getppid, 0, 0, 0, 0) != s->parent_pid)
        return 127;  /* the parent is gone: nobody will release us */
    while (__atomic_load_n(&b->go, __ATOMIC_ACQUIRE) == 0)
        pidsafe_raw_syscall4(SYS_futex, (long)&b->go, FUTEX_WAIT, 0, 0);
    /*
     * Phase 2: the parent is blocked.  The SIGKILL-on-parent-death was only
     * for phase 1 (it is kept across exec, and tracks the parent *thread*);
     * spawn_child() sets the caller's pdeathsig, if any.
     */
    if (prctl(PR_SET_PDEATHSIG, 0, 0, 0, 0) < 0)
        report_and_exit(s->errpipe_write, PIDSAFE_STAGE_PDEATHSIG, errno);
    return spawn_child(&b->ctx);
}

int pidsafe_spawn_start(const struct pidsafe_spawn_spec *spec,
                        struct pidsafe_spawn_handle *h)
{
#if PIDSAFE_HAS_RAW_SYSCALL
    long page_size = sysconf(_SC_PAGESIZE);
    struct pidsafe_clone_args args;
    struct two_phase_block *b;
    size_t block_size = (sizeof(*b) + 63) & ~(size_t)63;
    size_t map_size = (size_t)page_size + SPAWN_STACK_SIZE + block_size;
    sigset_t all;
    char *mem;
    long pid;
    int pidfd = -1;
    int saved;

    memset(h, 0, sizeof(*h));
    h->pid = -1;
    h->pidfd = -1;
    mem = pidsafe_stack_map(map_size);
    if (mem == NULL)
        return -1;
    /* [guard page][stack ...][block] */
    b = (struct two_phase_block *)(mem + map_size - block_size);
    b->ctx.spec = spec;
    b->ctx.parent_mask = &b->parent_mask;
    b->go = 0;
    b->tid = 1;

    memset(&args, 0, sizeof(args));
    args.flags = spec->clone_flags | PIDSAFE_CLONE_VM | PIDSAFE_CLONE_PIDFD
                 | CLONE_CHILD_CLEARTID;
    args.pidfd = (uint64_t)(uintptr_t)&pidfd;
    args.child_tid = (uint64_t)(uintptr_t)&b->tid;
    args.exit_signal = 0;
    args.stack = (uint64_t)(uintptr_t)(mem + page_size);
    args.stack_size = (uint64_t)((char *)b - (mem + page_size));
    if (spec->cgroup_fd >= 0) {
        args.flags |= PIDSAFE_CLONE_INTO_CGROUP;
        args.cgroup = (uint64_t)spec->cgroup_fd;
    }

    /* As for spawn: every signal blocked across clone3, restored at once. */
    sigfillset(&all);
    if (pthread_sigmask(SIG_SETMASK, &all, &b->parent_mask) != 0) {
        munmap(mem, map_size);
        errno = EINVAL;
        return -1;
    }
    pid = pidsafe_clone3(&args, sizeof(args), two_phase_child, b);
    saved = errno;
    pthread_sigmask(SIG_SETMASK, &b->parent_mask, NULL);
    if (pid < 0) {
        munmap(mem, map_size);
        errno = saved;
        return -1;
    }
    h->pid = (int32_t)pid;
    h->pidfd = pidfd;
    h->map_addr = (uint64_t)(uintptr_t)mem;
    h->map_size = map_size;
    h->block = (uint64_t)(uintptr_t)b;
    return (int)pid;
#else
    (void)spec;
    memset(h, 0, sizeof(*h));
    h->pid = -1;
    h->pidfd = -1;
    errno = ENOSYS;
    return -1;
#endif
}

int pidsafe_spawn_resume(struct pidsafe_spawn_handle *h)
{
#if PIDSAFE_HAS_RAW_SYSCALL
    struct two_phase_block *b = (struct two_phase_block *)(uintptr_t)h->block;
    uint64_t all = ~(uint64_t)0, old = 0;
    uint32_t tid;

    if (b == NULL) {
        errno = EINVAL;
        return -1;
    }
    /*
     * From the release until the child has left our memory, this thread
     * makes raw syscalls only and takes no signal: the child is using our
     * errno and may call anything libc offers.
     */
    pidsafe_raw_syscall4(SYS_rt_sigprocmask, SIG_SETMASK, (long)&all, (long)&old, 8);
    __atomic_store_n(&b->go, 1, __ATOMIC_RELEASE);
    pidsafe_raw_syscall4(SYS_futex, (long)&b->go, FUTEX_WAKE, 1, 0);
    while ((tid = __atomic_load_n(&b->tid, __ATOMIC_ACQUIRE)) != 0)
        pidsafe_raw_syscall4(SYS_futex, (long)&b->tid, FUTEX_WAIT, (long)tid, 0);
    pidsafe_raw_syscall4(SYS_rt_sigprocmask, SIG_SETMASK, (long)&old, 0, 8);
    return pidsafe_spawn_free(h);
#else
    (void)h;
    errno = ENOSYS;
    return -1;
#endif
}

int pidsafe_spawn_free(struct pidsafe_spawn_handle *h)
{
    void *mem = (void *)(uintptr_t)h->map_addr;
    size_t size = (size_t)h->map_size;

    if (mem == NULL)
        return 0;  /* idempotent */
    h->map_addr = 0;
    h->map_size = 0;
    h->block = 0;
    return munmap(mem, size);
}
