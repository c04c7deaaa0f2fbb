/*
 * C reference for benchmarks/bench_spawn.py: posix_spawn(3) + waitid(2) of a
 * program, n times.  glibc's posix_spawn uses clone(CLONE_VM|CLONE_VFORK) on
 * a private stack, so like pidsafe.spawn its cost does not depend on the
 * caller's memory: the floor pidsafe is measured against.
 */
#define _GNU_SOURCE
#include <spawn.h>
#include <stdint.h>
#include <sys/wait.h>
#include <time.h>

extern char **environ;

/* Returns the total nanoseconds for n spawn+wait rounds, or -1 on error. */
int64_t cref_spawn_wait(const char *path, int n)
{
    struct timespec a, b;
    char *argv[] = {(char *)path, NULL};
    int i;

    clock_gettime(CLOCK_MONOTONIC, &a);
    for (i = 0; i < n; i++) {
        pid_t pid;
        siginfo_t info;
        if (posix_spawn(&pid, path, NULL, NULL, argv, environ) != 0)
            return -1;
        if (waitid(P_PID, (id_t)pid, &info, WEXITED) != 0)
            return -1;
        if (info.si_code != CLD_EXITED || info.si_status != 0)
            return -1;
    }
    clock_gettime(CLOCK_MONOTONIC, &b);
    return (int64_t)(b.tv_sec - a.tv_sec) * 1000000000 + (b.tv_nsec - a.tv_nsec);
}
