/*
 * What a child that fails before exec reports, shared by the spawn child
 * (csrc/native/child.c), pidsafe-helper (csrc/helper/) and, through cffi,
 * Python (pidsafe._sys, which decodes it in one place).
 *
 * On any failure the child reports one {stage, errno} record and exits with
 * 127: the spawn child stores it in its parent's memory, which it shares
 * (and writes it to the error pipe when it has one); the helper writes it to
 * the close-on-exec error pipe, where EOF with no record means the program
 * runs.  CDEF rules as in csrc/native/pidsafe.h.
 */
#ifndef PIDSAFE_CHILD_ERROR_H
#define PIDSAFE_CHILD_ERROR_H

#include <stdint.h>

/* CDEF BEGIN */

/*
 * Stages of a child, reported to the parent with an errno.  1-9, 13 and 15
 * run in the spawn child (csrc/native/child.c); with a helper (csrc/helper/),
 * 6-12 and 14 run in the exec'd helper instead.
 */
#define PIDSAFE_STAGE_SIGNALS       1
#define PIDSAFE_STAGE_STDIO         2
#define PIDSAFE_STAGE_PASS_FDS      3
#define PIDSAFE_STAGE_CLOSE_FDS     4
#define PIDSAFE_STAGE_SETSID        5
#define PIDSAFE_STAGE_PDEATHSIG     6
#define PIDSAFE_STAGE_PARENT_GONE   7
#define PIDSAFE_STAGE_CHDIR         8
#define PIDSAFE_STAGE_EXEC          9
#define PIDSAFE_STAGE_USERNS        10  /* setns(userns_fd, CLONE_NEWUSER) */
#define PIDSAFE_STAGE_UNSHARE       11  /* unshare(unshare_flags) */
#define PIDSAFE_STAGE_SETID         12  /* become uid/gid 0 of the user namespace */
#define PIDSAFE_STAGE_HELPER        13  /* keep capabilities, exec the helper */
#define PIDSAFE_STAGE_HELPER_GO     14  /* the helper's instructions */
#define PIDSAFE_STAGE_CGROUP        15  /* join cgroup v1 hierarchies ("0" to tasks) */
#define PIDSAFE_STAGE_LAST          15

/* The record a failing child reports. */
struct pidsafe_child_error {
    int32_t stage;
    int32_t err;
};

/* CDEF END */

#endif /* PIDSAFE_CHILD_ERROR_H */
