/*
 * pidsafe native layer: user namespaces.
 *
 * The CDEF section is read by csrc/native/build.py into ffi.cdef().  Below it, and
 * invisible to cffi, are raw-syscall helpers for child code that runs in our
 * address space *concurrently* with the thread that created it
 * (clone3(CLONE_VM) without CLONE_VFORK).  Such a child shares that thread's
 * TLS, so it must not call anything that reads or writes errno: the libc
 * wrappers do, and the parent thread would see (or clobber) the value.
 */
#ifndef PIDSAFE_USERNS_H
#define PIDSAFE_USERNS_H

#include <stddef.h>
#include <stdint.h>

/* CDEF BEGIN */

/*
 * A user-namespace helper child: it exists only so that its
 * /proc/PID/{ns/user,uid_map,gid_map,setgroups} can be opened.  map_addr and
 * map_size describe its stack mapping; Python treats them as opaque and
 * hands the struct back to pidsafe_userns_helper_free() once the child is
 * dead and reaped.
 */
struct pidsafe_userns_helper {
    int32_t pid;
    int32_t pidfd;
    uint64_t map_addr;
    uint64_t map_size;
    uint64_t slot;      /* opaque: the thread's cached stack, or 0 */
};

/*
 * clone3(CLONE_NEWUSER|CLONE_VM|CLONE_PIDFD|extra_flags), exit_signal 0, on
 * a fresh stack mapping.  The child sets PR_SET_PDEATHSIG(SIGKILL), exits at
 * once if its parent is no longer parent_pid, and otherwise sleeps with every
 * signal blocked until it is killed.  Returns the pid (also in h->pid, the
 * pidfd in h->pidfd), or -1 and errno when no child was created (then
 * nothing is left to free).
 */
int pidsafe_userns_helper_start(struct pidsafe_userns_helper *h, int32_t parent_pid,
                                uint64_t extra_flags);

/*
 * Give the helper's stack back (to its thread's cache, or unmap it).  Only
 * once the helper is dead *and* reaped (or known reaped: waitid gave
 * ECHILD): until then it may still run on it.  Never called for a helper
 * that could not be proven dead: its stack then stays mapped and busy.
 */
int pidsafe_userns_helper_free(struct pidsafe_userns_helper *h);

/* CDEF END */

#if !defined(PIDSAFE_NO_RAW_SYSCALLS)
#include <sys/syscall.h>

/*
 * raw_syscall4(): the syscall instruction and nothing else.  Returns the
 * kernel's value (-errno on failure) and never touches errno.
 */
#if defined(__x86_64__)
static inline long pidsafe_raw_syscall4(long n, long a, long b, long c, long d)
{
    long ret;
    register long r10 __asm__("r10") = d;

    __asm__ volatile("syscall"
                     : "=a"(ret)
                     : "a"(n), "D"(a), "S"(b), "d"(c), "r"(r10)
                     : "rcx", "r11", "memory");
    return ret;
}
#define PIDSAFE_HAS_RAW_SYSCALL 1
#elif defined(__aarch64__)
static inline long pidsafe_raw_syscall4(long n, long a, long b, long c, long d)
{
    register long x8 __asm__("x8") = n;
    register long x0 __asm__("x0") = a;
    register long x1 __asm__("x1") = b;
    register long x2 __asm__("x2") = c;
    register long x3 __asm__("x3") = d;

    __asm__ volatile("svc #0"
                     : "+r"(x0)
                     : "r"(x8), "r"(x1), "r"(x2), "r"(x3)
                     : "memory");
    return x0;
}
#define PIDSAFE_HAS_RAW_SYSCALL 1
#else
#define PIDSAFE_HAS_RAW_SYSCALL 0
#endif

#endif /* !PIDSAFE_NO_RAW_SYSCALLS */

#endif /* PIDSAFE_USERNS_H */
