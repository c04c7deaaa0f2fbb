/*
 * pidsafe native layer: the calling process's own flags and capabilities,
 * prctl(2) and capget(2)/capset(2).
 *
 * For the parent only (the subreaper flag of a Reaper, what `pidsafe
 * doctor` reports); child code sets its flags in C on its own.
 *
 * CDEF rules as in pidsafe.h.
 */
#ifndef PIDSAFE_PRCTL_H
#define PIDSAFE_PRCTL_H

#include <stdint.h>

/* CDEF BEGIN */

/* prctl(2) options (linux/prctl.h). */
#define PIDSAFE_PR_GET_PDEATHSIG       2
#define PIDSAFE_PR_GET_DUMPABLE        3
#define PIDSAFE_PR_SET_DUMPABLE        4
#define PIDSAFE_PR_SET_CHILD_SUBREAPER 36
#define PIDSAFE_PR_GET_CHILD_SUBREAPER 37

/*
 * prctl(option, arg2, 0, 0, 0) for the options whose arguments are plain
 * integers: the kernel's return value (PR_GET_DUMPABLE's answer, 0 for the
 * setters), or -1 and errno.
 */
int pidsafe_prctl(int option, uint64_t arg2);

/*
 * prctl(option, &value) for the options that store an int through arg2
 * (PR_GET_CHILD_SUBREAPER, PR_GET_PDEATHSIG): 0 and *out, or -1 and errno.
 */
int pidsafe_prctl_get_int(int option, int *out);

/* A thread's capability sets, one bit per capability number (64 at most). */
struct pidsafe_capsets {
    uint64_t effective;
    uint64_t permitted;
    uint64_t inheritable;
};

/* capget(2)/capset(2) of the calling thread, _LINUX_CAPABILITY_VERSION_3
 * (Linux 2.6.26).  0, or -1 and errno. */
int pidsafe_capget(struct pidsafe_capsets *out);
int pidsafe_capset(const struct pidsafe_capsets *sets);

/* CDEF END */

#endif /* PIDSAFE_PRCTL_H */
