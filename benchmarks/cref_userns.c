/*
 * C references for benchmarks/bench_userns.py: a user namespace with given
 * maps, as an fd, n times (each fd closed again).  Both follow the
 * open-first-then-prove order of containerd's GetUsernsFD:
 *
 *   helper = clone(CLONE_NEWUSER|CLONE_PIDFD ...), child blocks until killed
 *   open /proc/PID/ns/user, setgroups, uid_map, gid_map
 *   pidfd_send_signal(pidfd, 0)
 *   write "deny", the uid map, the gid map
 *   pidfd_send_signal(pidfd, SIGKILL); waitid(P_PIDFD); close
 *
 * cref_userns_clone_vm: the helper shares our memory (CLONE_VM, no VFORK) on
 *   a small mmap'd stack, reused from round to round: pidsafe.get_userns_fd's
 *   design, with no Python.
 * cref_userns_fork: the helper is a fork-style copy of us (no CLONE_VM), as
 *   containerd's ForkUserns does with a raw clone(SIGCHLD|CLONE_NEWUSER|
 *   CLONE_PIDFD): its cost grows with the size of our address space.
 *
 * Built by bench_userns.py with gcc into benchmarks/.build/ and called through
 * ctypes, so it runs inside the benchmark's own (big-heap) process.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#ifndef CLONE_PIDFD
#define CLONE_PIDFD 0x00001000
#endif
#ifndef P_PIDFD
#define P_PIDFD 3
#endif
#define STACK_SIZE (16 * 1024)

static pid_t parent_pid;

/* The CLONE_VM helper: raw syscalls only (it shares our errno). */
static int helper_vm(void *arg)
{
    (void)arg;
    syscall(SYS_prctl, PR_SET_PDEATHSIG, SIGKILL, 0, 0);
    if (syscall(SYS_getppid) != parent_pid)
        syscall(SYS_exit, 1);
    for (;;)
        syscall(SYS_pause);
    return 0;
}

static int map_and_close(pid_t pid, int pidfd, const char *uidmap, const char *gidmap)
{
    char path[64];
    int ns, sg, u, g, rc = -1;

    snprintf(path, sizeof(path), "/proc/%d/ns/user", (int)pid);
    ns = open(path, O_RDONLY | O_CLOEXEC);
    snprintf(path, sizeof(path), "/proc/%d/setgroups", (int)pid);
    sg = open(path, O_WRONLY | O_CLOEXEC);
    snprintf(path, sizeof(path), "/proc/%d/uid_map", (int)pid);
    u = open(path, O_WRONLY | O_CLOEXEC);
    snprintf(path, sizeof(path), "/proc/%d/gid_map", (int)pid);
    g = open(path, O_WRONLY | O_CLOEXEC);
    if (ns >= 0 && sg >= 0 && u >= 0 && g >= 0
        && syscall(SYS_pidfd_send_signal, pidfd, 0, NULL, 0) == 0
        && write(sg, "deny", 4) == 4
        && write(u, uidmap, strlen(uidmap)) == (ssize_t)strlen(uidmap)
        && write(g, gidmap, strlen(gidmap)) == (ssize_t)strlen(gidmap))
        rc = 0;
    if (sg >= 0) close(sg);
    if (u >= 0) close(u);
    if (g >= 0) close(g);
    syscall(SYS_pidfd_send_signal, pidfd, SIGKILL, NULL, 0);
    {
        siginfo_t info;
        while (waitid((idtype_t)P_PIDFD, (id_t)pidfd, &info, WEXITED | __WALL) < 0
               && errno == EINTR)
            ;
    }
    close(pidfd);
    if (ns >= 0) close(ns);  /* the caller would keep it; we only time it */
    return rc;
}

static int64_t now_ns(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (int64_t)t.tv_sec * 1000000000 + t.tv_nsec;
}

/* Total ns for n rounds, -1 on error. */
int64_t cref_userns_clone_vm(int n, const char *uidmap, const char *gidmap)
{
    int64_t t0 = now_ns();
    long page = sysconf(_SC_PAGESIZE);
    int i;

    parent_pid = getpid();
    /*
     * One stack for all rounds (each helper is reaped before the next is
     * made), as pidsafe keeps one per thread: no mmap/munmap per round.
     */
    size_t size = (size_t)page + STACK_SIZE;
    char *mem = mmap(NULL, size, PROT_READ | PROT_WRITE,
                     MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK | MAP_NORESERVE, -1, 0);

    if (mem == MAP_FAILED || mprotect(mem, (size_t)page, PROT_NONE) < 0)
        return -1;
    for (i = 0; i < n; i++) {
        int pidfd = -1, rc;
        sigset_t all, old;
        pid_t pid;

        sigfillset(&all);
        pthread_sigmask(SIG_SETMASK, &all, &old);
        /* glibc's clone(): CLONE_PIDFD stores the pidfd through parent_tid. */
        pid = clone(helper_vm, mem + size, CLONE_NEWUSER | CLONE_VM | CLONE_PIDFD, NULL,
                    &pidfd);
        pthread_sigmask(SIG_SETMASK, &old, NULL);
        if (pid < 0)
            return -1;
        rc = map_and_close(pid, pidfd, uidmap, gidmap);  /* reaps the helper */
        if (rc < 0)
            break;
    }
    munmap(mem, size);
    return i < n ? -1 : now_ns() - t0;
}

int64_t cref_userns_fork(int n, const char *uidmap, const char *gidmap)
{
    int64_t t0 = now_ns();
    int i;

    parent_pid = getpid();
    for (i = 0; i < n; i++) {
        int pidfd = -1;
        /* Raw clone, as containerd's ForkUserns: (flags, stack, parent_tid, ...). */
        long pid = syscall(SYS_clone, CLONE_NEWUSER | CLONE_PIDFD | SIGCHLD, NULL, &pidfd,
                           NULL, 0);
        if (pid == 0) {
            prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0);
            if (getppid() != parent_pid)
                _exit(1);
            for (;;)
                pause();
        }
        if (pid < 0)
            return -1;
        if (map_and_close((pid_t)pid, pidfd, uidmap, gidmap) < 0)
            return -1;
    }
    return now_ns() - t0;
}
