/*
 * pidsafe native layer: the instructions of the exec'd helper
 * (csrc/helper/pidsafe-helper.c), shared by the helper, the extension and,
 * through cffi, Python (which builds them).
 *
 * Why a helper: changing credentials (setns into a user namespace, setuid,
 * setgroups) in a child that shares the caller's memory would make the
 * kernel clear "dumpable" on that memory, the caller's, and would let an
 * unprivileged uid share root's memory until exec (invariant 8).
 * So the CLONE_VM|CLONE_VFORK spawn child only moves fds and execs this
 * helper, and the helper, in memory of its own, changes credentials and
 * execs the program.
 *
 * The protocol, over a SOCK_STREAM socketpair ("ctl"; the helper's end is
 * named by argv[1]):
 *
 *   helper -> parent  one byte PIDSAFE_HELPER_READY once it runs
 *   parent            writes the uid/gid maps of a new user namespace, if any
 *   parent -> helper  struct pidsafe_helper_go: the "go", and what to do
 *   helper            does it, execs the program; ctl is close-on-exec, so
 *                     the parent reads EOF once the program runs or the
 *                     helper has exited (after writing its {stage, errno}
 *                     record to the error pipe, as the spawn child does).
 *
 * EOF on ctl before a whole go message means the parent is gone: the helper
 * exits at once (so a parent SIGKILLed before the go leaves nothing asleep).
 *
 * helper argv: [name, ctl fd, cwd, exec_paths[0..n_exec_paths), program
 * argv...]; envp: the program's environment.
 *
 * Extending it (the container issue): new flags, and fields appended to the
 * struct (`size` says how much the parent sent; the helper refuses a size it
 * does not know); further messages may follow the go on ctl (mount
 * instructions, fds by SCM_RIGHTS: ctl is a unix socket).  A container's
 * init would do its setup (mounts, pivot_root, capabilities) after the go,
 * in the helper's own memory, then wait for `start` on a gate of its own
 * (an exec fifo in the state dir, as runc and crun do), which does not
 * depend on ctl and so outlives the creating process; only the wait for the
 * go itself ends with the creator.
 */
#ifndef PIDSAFE_HELPER_H
#define PIDSAFE_HELPER_H

#include <stdint.h>

/* CDEF BEGIN */

#define PIDSAFE_HELPER_MAGIC        0x70736831   /* "psh1" */
#define PIDSAFE_HELPER_READY        0x52         /* 'R' */

/* pidsafe_helper_go.flags */
#define PIDSAFE_HELPER_JOIN_USERNS  0x01   /* setns(userns_fd, CLONE_NEWUSER), close it */
#define PIDSAFE_HELPER_BECOME_ROOT  0x02   /* uid/gid 0 of the user namespace, if mapped */
#define PIDSAFE_HELPER_CHDIR        0x04   /* chdir(argv[2]) */
#define PIDSAFE_HELPER_DROP_CAPS    0x08   /* clear ambient and inheritable caps */

struct pidsafe_helper_go {
    uint32_t magic;          /* PIDSAFE_HELPER_MAGIC */
    uint32_t size;           /* sizeof(struct pidsafe_helper_go) */
    uint32_t flags;          /* PIDSAFE_HELPER_* */
    int32_t errpipe;         /* where {stage, errno} goes; close-on-exec */
    int32_t userns_fd;       /* with JOIN_USERNS */
    int32_t pdeathsig;       /* 0: none; set after the credential change */
    uint64_t unshare_flags;  /* CLONE_NEW* to unshare() after joining */
    int32_t n_exec_paths;    /* how many argv entries after cwd are candidates */
    int32_t fail_stage;      /* tests only: this stage fails with fail_errno */
    int32_t fail_errno;
    int32_t reserved;
};

/* CDEF END */

#endif /* PIDSAFE_HELPER_H */
