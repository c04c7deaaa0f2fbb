/*
 * pidsafe-init: who the container's process is: uid, gid, groups,
 * capabilities, no_new_privs.
 *
 * pidsafe-init runs in memory of its own and single-threaded, so changing
 * its credentials affects no one else (invariant 8).  Order, as
 * runc applies it (the plan puts the ops in it): rlimits and oom_score_adj
 * while still privileged (system.c); drop the bounding set (needs
 * CAP_SETPCAP); keep capabilities across the uid change;
 * setgroups/setresgid/setresuid; then set the effective, permitted,
 * inheritable and ambient sets.
 *
 * Those three are raw syscalls: a libc's wrappers change the ids of every
 * thread of the process, and musl's block all signals around that
 * (rt_sigprocmask, twice each).  We have one thread, and the syscalls we
 * make after loading an early seccomp filter must be the kernel's alone,
 * those init/_seccomp_eval.py lists.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <grp.h>
#include <linux/capability.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "cleanup.h"
#include "init.h"

#ifndef PR_CAP_AMBIENT
#define PR_CAP_AMBIENT 47
#define PR_CAP_AMBIENT_RAISE 2
#define PR_CAP_AMBIENT_CLEAR_ALL 4
#endif

int psi_op_setid_root(struct psi_ctx *c, const struct psi_op *op)
{
    (void)c;
    (void)op;
    /* setgroups is denied in namespaces whose maps an unprivileged user wrote. */
    if (syscall(SYS_setgroups, 0, NULL) < 0 && errno != EPERM)
        return -1;
    if (syscall(SYS_setresgid, 0, 0, 0) < 0)
        return -1;
    return (int)syscall(SYS_setresuid, 0, 0, 0);
}

int psi_op_cap_bounding(struct psi_ctx *c, const struct psi_op *op)
{
    int64_t mask;
    int cap;
    (void)c;
    if (psi_int(op, 0, &mask) < 0)
        return -1;
    for (cap = 0; cap < 64; cap++) {
        if ((uint64_t)mask & ((uint64_t)1 << cap))
            continue;
        if (prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) < 0) {
            if (errno == EINVAL)
                break;   /* past the kernel's last capability */
            return -1;
        }
    }
    return 0;
}

int psi_op_user(struct psi_ctx *c, const struct psi_op *op)
{
    int64_t uid, gid, mask;
    _cleanup_free_ gid_t *gids = NULL;
    size_t n = 0, i;
    (void)c;

    if (psi_int(op, 0, &uid) < 0 || psi_int(op, 1, &gid) < 0 || psi_int(op, 2, &mask) < 0
        || op->nargs != 4 || op->args[3].len % sizeof(int64_t) != 0) {
        errno = EINVAL;
        return -1;
    }
    n = op->args[3].len / sizeof(int64_t);
    if (n) {
        gids = calloc(n, sizeof(gid_t));
        if (gids == NULL)
            return -1;
        for (i = 0; i < n; i++) {
            int64_t g;
            memcpy(&g, op->args[3].data + i * sizeof(int64_t), sizeof(g));
            gids[i] = (gid_t)g;
        }
    }
    if (mask >= 0)
        umask((mode_t)mask);
    /* No supplementary groups asked for, and setgroups denied: nothing to drop. */
    if (syscall(SYS_setgroups, n, gids) < 0 && !(errno == EPERM && n == 0))
        return -1;
    if (prctl(PR_SET_KEEPCAPS, 1, 0, 0, 0) < 0)
        return -1;
    if (syscall(SYS_setresgid, (gid_t)gid, (gid_t)gid, (gid_t)gid) < 0)
        return -1;
    if (syscall(SYS_setresuid, (uid_t)uid, (uid_t)uid, (uid_t)uid) < 0)
        return -1;
    return prctl(PR_SET_KEEPCAPS, 0, 0, 0, 0);
}

int psi_op_caps(struct psi_ctx *c, const struct psi_op *op)
{
    struct __user_cap_header_struct hdr = {_LINUX_CAPABILITY_VERSION_3, 0};
    struct __user_cap_data_struct data[2];
    int64_t eff, perm, inh, amb;
    int cap;
    (void)c;

    if (psi_int(op, 0, &eff) < 0 || psi_int(op, 1, &perm) < 0 || psi_int(op, 2, &inh) < 0
        || psi_int(op, 3, &amb) < 0)
        return -1;
    data[0].effective = (uint32_t)eff;
    data[1].effective = (uint32_t)((uint64_t)eff >> 32);
    data[0].permitted = (uint32_t)perm;
    data[1].permitted = (uint32_t)((uint64_t)perm >> 32);
    data[0].inheritable = (uint32_t)inh;
    data[1].inheritable = (uint32_t)((uint64_t)inh >> 32);
    if (syscall(SYS_capset, &hdr, data) < 0)
        return -1;
    if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) < 0 && errno != EINVAL)
        return -1;
    /*
     * The kernel raises an ambient capability only if it is both permitted
     * and inheritable; `runc spec` asks for ambient ones with no inheritable
     * set, and runc and crun skip those too.
     */
    amb &= perm & inh;
    for (cap = 0; cap < 64; cap++) {
        if (!((uint64_t)amb & ((uint64_t)1 << cap)))
            continue;
        if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, cap, 0, 0) < 0)
            return -1;
    }
    return 0;
}

int psi_op_no_new_privs(struct psi_ctx *c, const struct psi_op *op)
{
    (void)c;
    (void)op;
    return prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0);
}
