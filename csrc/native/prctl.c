/*
 * prctl(2), capget(2), capset(2) shims: see prctl.h.  Each returns -1 and
 * leaves errno; EINTR is retried by pidsafe/_sys, not here.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <linux/capability.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "prctl.h"

_Static_assert(PR_GET_PDEATHSIG == PIDSAFE_PR_GET_PDEATHSIG, "PR_GET_PDEATHSIG");
_Static_assert(PR_GET_DUMPABLE == PIDSAFE_PR_GET_DUMPABLE, "PR_GET_DUMPABLE");
_Static_assert(PR_SET_DUMPABLE == PIDSAFE_PR_SET_DUMPABLE, "PR_SET_DUMPABLE");
#ifdef PR_SET_CHILD_SUBREAPER
_Static_assert(PR_SET_CHILD_SUBREAPER == PIDSAFE_PR_SET_CHILD_SUBREAPER, "PR_SET_CHILD_SUBREAPER");
_Static_assert(PR_GET_CHILD_SUBREAPER == PIDSAFE_PR_GET_CHILD_SUBREAPER, "PR_GET_CHILD_SUBREAPER");
#endif

int pidsafe_prctl(int option, uint64_t arg2)
{
    return prctl(option, (unsigned long)arg2, 0UL, 0UL, 0UL);
}

int pidsafe_prctl_get_int(int option, int *out)
{
    return prctl(option, (unsigned long)out, 0UL, 0UL, 0UL);
}

int pidsafe_capget(struct pidsafe_capsets *out)
{
    struct __user_cap_header_struct hdr = {_LINUX_CAPABILITY_VERSION_3, 0};
    struct __user_cap_data_struct data[2];

    memset(data, 0, sizeof(data));
    if (syscall(SYS_capget, &hdr, data) < 0)
        return -1;
    out->effective = (uint64_t)data[1].effective << 32 | data[0].effective;
    out->permitted = (uint64_t)data[1].permitted << 32 | data[0].permitted;
    out->inheritable = (uint64_t)data[1].inheritable << 32 | data[0].inheritable;
    return 0;
}

int pidsafe_capset(const struct pidsafe_capsets *sets)
{
    struct __user_cap_header_struct hdr = {_LINUX_CAPABILITY_VERSION_3, 0};
    struct __user_cap_data_struct data[2];

    data[0].effective = (uint32_t)sets->effective;
    data[1].effective = (uint32_t)(sets->effective >> 32);
    data[0].permitted = (uint32_t)sets->permitted;
    data[1].permitted = (uint32_t)(sets->permitted >> 32);
    data[0].inheritable = (uint32_t)sets->inheritable;
    data[1].inheritable = (uint32_t)(sets->inheritable >> 32);
    return (int)syscall(SYS_capset, &hdr, data);
}
