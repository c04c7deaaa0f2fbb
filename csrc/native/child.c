/*
 * The spawn child: from clone3(CLONE_VM|CLONE_VFORK) to execve() or _exit().
 *
 * It runs on a stack of its own but in the parent's memory, so it may call
 * only async-signal-safe functions: no malloc, no stdio, no locks, nothing
 * that touches Python.  It writes nothing the parent reads except through
 * the error pipe.  errno is the suspended parent thread's (TLS is shared);
 * the parent does not rely on it across clone3().
 *
 * It never changes credentials (invariant 8): no setns into a
 * user namespace, no set*id, no setgroups.  When the program needs any of
 * that, the child execs the helper instead (spec->helper_path, csrc/helper/),
 * which does it in memory of its own.
 *
 * On any failure it stores {stage, errno} in the parent's memory
 * (report_and_exit), writes it to the close-on-exec error pipe if there is
 * one, and exits with 127; on success nothing is stored and the pipe closes
 * at exec.
 *
 * spec->fail_stage (tests only) makes the named stage fail with
 * spec->fail_errno, at the point where that stage runs, whether or not the
 * stage has work to do: every stage can be exercised.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/capability.h>
#include <poll.h>
#include <signal.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "pidsafe.h"

extern char **environ;

/*
 * The failure record goes into the parent's memory (ctx->failure: we share
 * it, and the parent, suspended until we exit, reads it once clone3()
 * returns, as glibc's posix_spawn does), and to the error pipe if there is
 * one (the helper path: the exec'd helper reports over it too).
 */
static void report_and_exit(const struct pidsafe_spawn_ctx *ctx, int stage, int err)
{
    struct pidsafe_child_error rec;
    int fd = ctx->spec->errpipe_write;
    ssize_t n;

    ctx->failure->stage = stage;
    ctx->failure->err = err;
    if (fd >= 0) {
        rec.stage = stage;
        rec.err = err;
        do {
            n = write(fd, &rec, sizeof(rec));
        } while (n < 0 && errno == EINTR);
    }
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

/* Fail here if the test knob names this stage. */
#define FAULT(s, stage) \
    do { \
        if ((s)->fail_stage == (stage)) \
            report_and_exit(ctx, (stage), (s)->fail_errno); \
    } while (0)

/*
 * A child made with CLONE_NEWUSER has every capability in its new user
 * namespace, but an execve() there drops them all: until the parent has
 * written the maps, our uid is unmapped in the namespace, so exec treats
 * us as an ordinary user (capabilities(7), "Capabilities and execution of
 * programs by root").  The helper needs CAP_SETUID/CAP_SETGID there to
 * become the namespace's root, so we hand them across exec as ambient
 * capabilities: inheritable := permitted, then raise each as ambient.
 *
 * This changes capability sets only, of our own new credentials in our own
 * new user namespace: no uid, gid, group or namespace changes, and since the
 * permitted set does not grow, commit_creds() leaves the shared mm's
 * "dumpable" alone (the caller stays dumpable; tests check it).  The helper
 * clears the ambient and inheritable sets again before it execs the program.
 * Raw syscall(), as for everything credential-related after CLONE_VM.
 */
static int keep_caps_across_exec(void)
{
    struct __user_cap_header_struct hdr;
    struct __user_cap_data_struct data[2];
    long cap;

    memset(&hdr, 0, sizeof(hdr));
    hdr.version = _LINUX_CAPABILITY_VERSION_3;
    if (syscall(SYS_capget, &hdr, data) < 0)
        return -1;
    data[0].inheritable = data[0].permitted;
    data[1].inheritable = data[1].permitted;
    if (syscall(SYS_capset, &hdr, data) < 0)
        return -1;
    for (cap = 0; cap < 64; cap++) {
        if (!(data[cap / 32].permitted & (1U << (cap % 32))))
            continue;
        if (syscall(SYS_prctl, PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, cap, 0, 0) < 0) {
            if (errno == EINVAL)
                break;  /* past the kernel's last capability */
            return -1;
        }
    }
    return 0;
}

/*
 * Whether the parent died before our prctl(PR_SET_PDEATHSIG): then no
 * signal comes.  getppid() says so, except as pid 1 of a new pid namespace
 * (parent_pid 0), where it is always 0.  The error pipe says so everywhere:
 * the parent holds its read end until we have exec'd, and a pipe whose
 * readers are all gone polls POLLERR for its writers.
 */
static int parent_gone(const struct pidsafe_spawn_spec *s)
{
    struct pollfd pfd;

    if (s->parent_pid != 0 && getppid() != s->parent_pid)
        return 1;
    if (s->errpipe_write < 0)
        return 0;   /* the caller gives a pipe whenever parent_pid is 0 */
    pfd.fd = s->errpipe_write;
    pfd.events = 0;
    pfd.revents = 0;
    return poll(&pfd, 1, 0) == 1 && (pfd.revents & POLLERR);
}

static int set_default(int sig)
{
    struct sigaction sa;

    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = SIG_DFL;
    return sigaction(sig, &sa, NULL);
}

int pidsafe_spawn_child(void *arg)
{
    const struct pidsafe_spawn_ctx *ctx = arg;
    const struct pidsafe_spawn_spec *s = ctx->spec;
    const int ep = s->errpipe_write;
    int fds[3];
    int sig, i;
    char **envp;
    int saved_errno = 0;

    /*
     * Signal handlers installed by the parent (Python's among them) would run
     * in our shared memory: every caught signal goes back to SIG_DFL, and
     * ignored ones stay ignored (as with Popen), but SIGPIPE and SIGXFSZ
     * with restore_signals.  The kernel has done the first part if it made
     * us with CLONE_CLEAR_SIGHAND (csrc/native/spawn.c).  All signals stay
     * blocked (the parent blocked them) until just before exec.
     */
    FAULT(s, PIDSAFE_STAGE_SIGNALS);
    if (!ctx->handlers_cleared) {
        for (sig = 1; sig < NSIG; sig++) {
            struct sigaction sa;
            if (sig == SIGKILL || sig == SIGSTOP)
                continue;
            if (sigaction(sig, NULL, &sa) < 0)
                continue;  /* glibc's internal signals: EINVAL */
            if (sa.sa_handler == SIG_DFL || sa.sa_handler == SIG_IGN)
                continue;
            if (set_default(sig) < 0)
                report_and_exit(ctx, PIDSAFE_STAGE_SIGNALS, errno);
        }
    }
    if (s->restore_signals
            && (set_default(SIGPIPE) < 0 || set_default(SIGXFSZ) < 0))
        report_and_exit(ctx, PIDSAFE_STAGE_SIGNALS, errno);

    /*
     * cgroup v1: join each hierarchy by writing "0" to its `tasks` file, an
     * fd the parent opened (the kernel checks the opener's credentials, not
     * ours).  "0" moves the calling thread alone, which the kernel does
     * without taking its global threadgroup lock for writing; writing a pid
     * to cgroup.procs takes it, and waits for an RCU grace period (some
     * 10 ms on a busy machine) to do so.  We are our thread group's only
     * thread, so the thread is the process.  First, before anything else:
     * the program starts inside its cgroups.
     */
    FAULT(s, PIDSAFE_STAGE_CGROUP);
    for (i = 0; i < s->n_tasks_fds; i++) {
        ssize_t n;
        do {
            n = write(s->tasks_fds[i], "0", 1);
        } while (n < 0 && errno == EINTR);
        if (n < 0)
            report_and_exit(ctx, PIDSAFE_STAGE_CGROUP, errno);
    }

    /*
     * stdio.  A source fd may itself be 0, 1 or 2; move any that a later
     * dup2() would overwrite out of the way first (as _posixsubprocess does).
     */
    FAULT(s, PIDSAFE_STAGE_STDIO);
    fds[0] = s->stdio[0];
    fds[1] = s->stdio[1];
    fds[2] = s->stdio[2];
    if (fds[1] == 0 && (fds[1] = move_off_stdio(fds[1])) < 0)
        report_and_exit(ctx, PIDSAFE_STAGE_STDIO, errno);
    while (fds[2] == 0 || fds[2] == 1) {
        if ((fds[2] = move_off_stdio(fds[2])) < 0)
            report_and_exit(ctx, PIDSAFE_STAGE_STDIO, errno);
    }
    for (i = 0; i < 3; i++) {
        if (fds[i] < 0)
            continue;
        if (fds[i] == i) {
            /* Already in place: only make sure it survives exec. */
            if (fcntl(i, F_SETFD, 0) < 0)
                report_and_exit(ctx, PIDSAFE_STAGE_STDIO, errno);
        } else if (dup2(fds[i], i) < 0) {
            report_and_exit(ctx, PIDSAFE_STAGE_STDIO, errno);
        }
    }

    /*
     * pass_fds: the only fds >= 3 that outlive exec.  The error pipe stays
     * close-on-exec, except into the helper, which reports over it too.
     */
    FAULT(s, PIDSAFE_STAGE_PASS_FDS);
    for (i = 0; i < s->n_keep_fds; i++) {
        int fd = s->keep_fds[i];
        if ((fd == ep && s->helper_path == NULL) || fd == s->exec_fd)
            continue;
        if (fcntl(fd, F_SETFD, 0) < 0)
            report_and_exit(ctx, PIDSAFE_STAGE_PASS_FDS, errno);
    }

    FAULT(s, PIDSAFE_STAGE_CLOSE_FDS);
    if (s->close_fds && close_fds_except(s->keep_fds, s->n_keep_fds, ep) < 0)
        report_and_exit(ctx, PIDSAFE_STAGE_CLOSE_FDS, errno);

    FAULT(s, PIDSAFE_STAGE_SETSID);
    if (s->new_session && setsid() < 0)
        report_and_exit(ctx, PIDSAFE_STAGE_SETSID, errno);

    if (s->helper_path != NULL) {
        /*
         * The helper sets the parent-death signal itself, after its
         * credential change (which clears it), and changes directory as
         * the new user.
         */
        FAULT(s, PIDSAFE_STAGE_HELPER);
        if (s->keep_caps && keep_caps_across_exec() < 0)
            report_and_exit(ctx, PIDSAFE_STAGE_HELPER, errno);
        if (sigprocmask(SIG_SETMASK, ctx->parent_mask, NULL) < 0)
            report_and_exit(ctx, PIDSAFE_STAGE_SIGNALS, errno);
        envp = s->envp ? s->envp : environ;
        if (s->exec_fd >= 0)   /* its sealed copy (pidsafe/_sys/_sealed.py) */
            syscall(SYS_execveat, s->exec_fd, "", s->helper_argv, envp, AT_EMPTY_PATH);
        else
            execve(s->helper_path, s->helper_argv, envp);
        report_and_exit(ctx, PIDSAFE_STAGE_HELPER, errno);
    }

    FAULT(s, PIDSAFE_STAGE_PDEATHSIG);
    if (s->pdeathsig) {
        if (prctl(PR_SET_PDEATHSIG, (unsigned long)s->pdeathsig, 0, 0, 0) < 0)
            report_and_exit(ctx, PIDSAFE_STAGE_PDEATHSIG, errno);
    }
    FAULT(s, PIDSAFE_STAGE_PARENT_GONE);
    if (s->pdeathsig && parent_gone(s))
        report_and_exit(ctx, PIDSAFE_STAGE_PARENT_GONE, ESRCH);

    FAULT(s, PIDSAFE_STAGE_CHDIR);
    if (s->cwd && chdir(s->cwd) < 0)
        report_and_exit(ctx, PIDSAFE_STAGE_CHDIR, errno);

    if (sigprocmask(SIG_SETMASK, ctx->parent_mask, NULL) < 0)
        report_and_exit(ctx, PIDSAFE_STAGE_SIGNALS, errno);

    /*
     * Try each candidate (the parent did the PATH search).  Like execvpe, keep
     * the first error that is not "not here" (ENOENT, ENOTDIR), so that an
     * EACCES on an earlier PATH entry is not masked by ENOENT on a later one.
     */
    FAULT(s, PIDSAFE_STAGE_EXEC);
    envp = s->envp ? s->envp : environ;
    if (s->exec_fd >= 0) {
        /* Close-on-exec: the new program does not keep it open (an ELF
         * binary needs no path to itself, unlike a script). */
        syscall(SYS_execveat, s->exec_fd, "", s->argv, envp, AT_EMPTY_PATH);
        report_and_exit(ctx, PIDSAFE_STAGE_EXEC, errno);
    }
    for (i = 0; s->exec_paths[i] != NULL; i++) {
        execve(s->exec_paths[i], s->argv, envp);
        if (errno != ENOENT && errno != ENOTDIR && saved_errno == 0)
            saved_errno = errno;
    }
    report_and_exit(ctx, PIDSAFE_STAGE_EXEC, saved_errno ? saved_errno : errno);
    return 127;
}

