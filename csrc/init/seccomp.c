/*
 * pidsafe-init: PSI_OP_SECCOMP, a seccomp filter the parent compiled.
 *
 * pidsafe-init links no libseccomp: the parent compiles linux.seccomp with
 * it (pidsafe/container/init/_seccomp_filter.py) into the classic BPF program that
 * seccomp(2) takes, and this file only loads that program.
 *
 * Loading a filter needs either no_new_privs or CAP_SYS_ADMIN in our user
 * namespace (seccomp(2), "EACCES").  So the parent places the op: without
 * no_new_privs, before the capabilities are dropped and the user changes
 * (late=0, loaded at once); with it, late=1, and main() loads it after the
 * gate, right before execve.  Either way the program runs with the filter
 * the config asked for, from its first instruction.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <stddef.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "init.h"

int psi_seccomp_load(const struct psi_op *op)
{
    const struct psi_arg *prog_arg;
    struct sock_fprog prog;
    int64_t flags;

    if (op->nargs != 3 || psi_int(op, 0, &flags) < 0) {
        errno = EINVAL;
        return -1;
    }
    prog_arg = &op->args[1];
    if (prog_arg->len == 0 || prog_arg->len % sizeof(struct sock_filter) != 0 ||
        prog_arg->len / sizeof(struct sock_filter) > BPF_MAXINSNS) {
        errno = EINVAL;
        return -1;
    }
    /* The argument is a copy aligned for struct sock_filter (reader.c's keep()). */
    prog.len = (unsigned short)(prog_arg->len / sizeof(struct sock_filter));
    prog.filter = (struct sock_filter *)(void *)prog_arg->data;
    if (syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, (unsigned int)flags, &prog) == 0)
        return 0;
    /* Kernels before 3.17 have no seccomp(2); prctl takes no flags. */
    if (errno == ENOSYS && flags == 0)
        return prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog, 0, 0);
    return -1;
}

int psi_op_seccomp(struct psi_ctx *c, const struct psi_op *op)
{
    int64_t late;

    if (psi_int(op, 2, &late) < 0)
        return -1;
    if (late) {
        if (c->seccomp_late != NULL) {   /* one filter per process */
            errno = EINVAL;
            return -1;
        }
        c->seccomp_late = op;
        return 0;
    }
    return psi_seccomp_load(op);
}
