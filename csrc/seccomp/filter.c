/*
 * pidsafe._libseccomp: see filter.h.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <stddef.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "filter.h"

#ifdef PIDSAFE_HAS_LIBSECCOMP
#include <seccomp.h>

/* The Python side passes libseccomp's and the kernel's numbers through
 * unchanged (pidsafe/_sys/_seccomp.py): prove they are what it assumes. */
_Static_assert(SCMP_CMP_NE == 1 && SCMP_CMP_LT == 2 && SCMP_CMP_LE == 3 &&
               SCMP_CMP_EQ == 4 && SCMP_CMP_GE == 5 && SCMP_CMP_GT == 6 &&
               SCMP_CMP_MASKED_EQ == 7, "SCMP_CMP_* values");
_Static_assert(SCMP_ACT_KILL_PROCESS == SECCOMP_RET_KILL_PROCESS &&
               SCMP_ACT_KILL_THREAD == SECCOMP_RET_KILL_THREAD &&
               SCMP_ACT_TRAP == SECCOMP_RET_TRAP && SCMP_ACT_ERRNO(0) == SECCOMP_RET_ERRNO &&
               SCMP_ACT_TRACE(0) == SECCOMP_RET_TRACE && SCMP_ACT_LOG == SECCOMP_RET_LOG &&
               SCMP_ACT_ALLOW == SECCOMP_RET_ALLOW, "SCMP_ACT_* are the kernel's SECCOMP_RET_*");
_Static_assert(sizeof(scmp_datum_t) == sizeof(uint64_t), "scmp_datum_t is 64 bits");
#endif

#ifndef PIDSAFE_VERSION
#error "PIDSAFE_VERSION must be defined by the build (csrc/cffi_build.py)"
#endif

const char *pidsafe_seccomp_version(void)
{
    return PIDSAFE_VERSION;
}

#ifdef PIDSAFE_HAS_LIBSECCOMP

static int neg_errno(int rc)
{
    if (rc < 0) {
        errno = -rc;
        return -1;
    }
    return rc;
}

int pidsafe_seccomp_available(void)
{
    return 1;
}

int pidsafe_seccomp_lib_version(unsigned int *major, unsigned int *minor,
                                unsigned int *micro)
{
    const struct scmp_version *v = seccomp_version();
    if (v == NULL) {
        errno = ENOSYS;
        return -1;
    }
    *major = v->major;
    *minor = v->minor;
    *micro = v->micro;
    return 0;
}

void *pidsafe_seccomp_new(uint32_t action)
{
    scmp_filter_ctx ctx;

    errno = 0;
    ctx = seccomp_init(action);
    if (ctx == NULL && errno == 0)
        errno = EINVAL;   /* libseccomp: an action it does not accept */
    return ctx;
}

void pidsafe_seccomp_free(void *ctx)
{
    seccomp_release(ctx);
}

uint32_t pidsafe_seccomp_arch_resolve(const char *name)
{
    return seccomp_arch_resolve_name(name);
}

int pidsafe_seccomp_arch_add(void *ctx, uint32_t arch)
{
    int rc = seccomp_arch_add(ctx, arch);
    return rc == -EEXIST ? 0 : neg_errno(rc);
}

int pidsafe_seccomp_syscall_resolve(const char *name)
{
    return seccomp_syscall_resolve_name(name);
}

int pidsafe_seccomp_syscall_resolve_arch(uint32_t arch, const char *name)
{
    return seccomp_syscall_resolve_name_arch(arch, name);
}

uint32_t pidsafe_seccomp_arch_native(void)
{
    return seccomp_arch_native();
}

int pidsafe_seccomp_rule_add(void *ctx, uint32_t action, int syscall,
                             unsigned int count, const struct pidsafe_seccomp_cmp *cmps)
{
    struct scmp_arg_cmp args[6];
    unsigned int i;

    if (count > 6) {
        errno = EINVAL;
        return -1;
    }
    for (i = 0; i < count; i++) {
        args[i].arg = cmps[i].arg;
        args[i].op = (enum scmp_compare)cmps[i].op;
        args[i].datum_a = cmps[i].datum_a;
        args[i].datum_b = cmps[i].datum_b;
    }
    return neg_errno(seccomp_rule_add_array(ctx, action, syscall, count, args));
}

int pidsafe_seccomp_export_bpf(void *ctx, int fd)
{
    return neg_errno(seccomp_export_bpf(ctx, fd));
}

#else /* !PIDSAFE_HAS_LIBSECCOMP: built without libseccomp's headers */

int pidsafe_seccomp_available(void)
{
    return 0;
}

int pidsafe_seccomp_lib_version(unsigned int *major, unsigned int *minor,
                                unsigned int *micro)
{
    (void)major, (void)minor, (void)micro;
    errno = ENOSYS;
    return -1;
}

void *pidsafe_seccomp_new(uint32_t action)
{
    (void)action;
    errno = ENOSYS;
    return NULL;
}

void pidsafe_seccomp_free(void *ctx)
{
    (void)ctx;
}

uint32_t pidsafe_seccomp_arch_resolve(const char *name)
{
    (void)name;
    return 0;
}

int pidsafe_seccomp_arch_add(void *ctx, uint32_t arch)
{
    (void)ctx, (void)arch;
    errno = ENOSYS;
    return -1;
}

int pidsafe_seccomp_syscall_resolve(const char *name)
{
    (void)name;
    return -1;
}

int pidsafe_seccomp_syscall_resolve_arch(uint32_t arch, const char *name)
{
    (void)arch, (void)name;
    return -1;
}

uint32_t pidsafe_seccomp_arch_native(void)
{
    return 0;
}

int pidsafe_seccomp_rule_add(void *ctx, uint32_t action, int syscall,
                             unsigned int count, const struct pidsafe_seccomp_cmp *cmps)
{
    (void)ctx, (void)action, (void)syscall, (void)count, (void)cmps;
    errno = ENOSYS;
    return -1;
}

int pidsafe_seccomp_export_bpf(void *ctx, int fd)
{
    (void)ctx, (void)fd;
    errno = ENOSYS;
    return -1;
}

#endif /* PIDSAFE_HAS_LIBSECCOMP */

/*
 * seccomp(SECCOMP_SET_MODE_FILTER, flag, NULL) checks the flags before it
 * reads the program: EFAULT (from the NULL program) means the kernel knows
 * the flag, EINVAL that it does not.  Nothing is installed either way.
 */
int pidsafe_seccomp_probe_flag(unsigned int flag)
{
    if (syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, flag, NULL) == 0)
        return 1;   /* cannot happen with a NULL program */
    if (errno == EFAULT)
        return 1;
    if (errno == EINVAL)
        return 0;
    return -1;
}

/* SECCOMP_GET_ACTION_AVAIL (Linux 4.14): 0 if the kernel has the action. */
int pidsafe_seccomp_probe_action(uint32_t action)
{
    if (syscall(SYS_seccomp, SECCOMP_GET_ACTION_AVAIL, 0, &action) == 0)
        return 1;
    if (errno == EOPNOTSUPP)
        return 0;
    return -1;
}
