/*
 * pidsafe native layer: the declarations shared by C and by cffi.
 *
 * Everything between the CDEF markers is read into ffi.cdef() by the
 * extension's build (csrc/native/build.py, through csrc/cffi_build.py), so
 * it must stay within what cffi's parser accepts: integer #defines, plain
 * structs with fixed-width fields, and prototypes.  System headers are
 * included by the .c files, never here; headers shared with the static
 * programs are in csrc/shared/.
 *
 * Two kinds of functions live in this extension:
 *   1. thin syscall shims that return -1 and leave errno, and
 *   2. the child path between clone3() and execve()/_exit(), which is
 *      async-signal-safe only.
 * Everything else (validation, flag composition, messages, retries) is
 * Python.
 */
#ifndef PIDSAFE_H
#define PIDSAFE_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "child_error.h"

/* CDEF BEGIN */

/*
 * Kernel ABI constants, spelled out so that an older libc/kernel header set
 * cannot hide them.  csrc/native/shims.c checks each against the system header when
 * the header does define it.
 */
#define PIDSAFE_CLONE_VM            0x00000100
#define PIDSAFE_CLONE_FS            0x00000200
#define PIDSAFE_CLONE_FILES         0x00000400
#define PIDSAFE_CLONE_PIDFD         0x00001000
#define PIDSAFE_CLONE_VFORK         0x00004000
#define PIDSAFE_CLONE_NEWNS         0x00020000
#define PIDSAFE_CLONE_NEWCGROUP     0x02000000
#define PIDSAFE_CLONE_NEWUTS        0x04000000
#define PIDSAFE_CLONE_NEWIPC        0x08000000
#define PIDSAFE_CLONE_NEWUSER       0x10000000
#define PIDSAFE_CLONE_NEWPID        0x20000000
#define PIDSAFE_CLONE_NEWNET        0x40000000
#define PIDSAFE_CLONE_INTO_CGROUP   0x200000000
#define PIDSAFE_CLONE_CLEAR_SIGHAND 0x100000000
#define PIDSAFE_CLONE_NEWTIME       0x00000080
#define PIDSAFE_CLONE_ARGS_SIZE_VER2 88

#define PIDSAFE_P_PIDFD             3
#define PIDSAFE_WEXITED             4
#define PIDSAFE_WNOHANG             1
#define PIDSAFE_WALL                0x40000000
#define PIDSAFE_CLOSE_RANGE_CLOEXEC 4

#define PIDSAFE_CLD_EXITED          1
#define PIDSAFE_CLD_KILLED          2
#define PIDSAFE_CLD_DUMPED          3

#define PIDSAFE_PIDFD_INFO_EXIT     8

/* The new mount API (Linux 5.2) and mount_setattr (5.12), openat2 (5.6). */
#define PIDSAFE_OPEN_TREE_CLONE     1
#define PIDSAFE_OPEN_TREE_CLOEXEC   02000000
#define PIDSAFE_AT_EMPTY_PATH       0x1000
#define PIDSAFE_AT_RECURSIVE        0x8000
#define PIDSAFE_MOVE_MOUNT_F_EMPTY_PATH 0x00000004
#define PIDSAFE_MOVE_MOUNT_T_EMPTY_PATH 0x00000040
#define PIDSAFE_MOUNT_ATTR_RDONLY   0x00000001
#define PIDSAFE_MOUNT_ATTR_IDMAP    0x00100000
#define PIDSAFE_MOUNT_ATTR_SIZE_VER0 32
#define PIDSAFE_MS_PRIVATE          0x40000
#define PIDSAFE_RESOLVE_NO_XDEV     0x01
#define PIDSAFE_RESOLVE_NO_MAGICLINKS 0x02
#define PIDSAFE_RESOLVE_NO_SYMLINKS 0x04
#define PIDSAFE_RESOLVE_BENEATH     0x08
#define PIDSAFE_RESOLVE_IN_ROOT     0x10

/*
 * Test-only fault knob (struct pidsafe_spawn_spec.fail_stage): a stage
 * number above makes that stage of the child fail with fail_errno;
 * FAULT_SIGMASK makes the parent's pthread_sigmask() fail with it;
 * FAULT_NO_CLEAR_SIGHAND spawns as on a kernel without CLONE_CLEAR_SIGHAND
 * (clone3 refuses it with EINVAL), fail_errno unused.
 */
#define PIDSAFE_FAULT_SIGMASK       100
#define PIDSAFE_FAULT_NO_CLEAR_SIGHAND 101

/* struct clone_args, version 2 (Linux 5.7), with our own name. */
struct pidsafe_clone_args {
    uint64_t flags;
    uint64_t pidfd;
    uint64_t child_tid;
    uint64_t parent_tid;
    uint64_t exit_signal;
    uint64_t stack;
    uint64_t stack_size;
    uint64_t tls;
    uint64_t set_tid;
    uint64_t set_tid_size;
    uint64_t cgroup;
};

/* struct mount_attr (Linux 5.12). */
struct pidsafe_mount_attr {
    uint64_t attr_set;
    uint64_t attr_clr;
    uint64_t propagation;
    uint64_t userns_fd;
};

/* struct open_how (Linux 5.6). */
struct pidsafe_open_how {
    uint64_t flags;
    uint64_t mode;
    uint64_t resolve;
};

/* What waitid() says about a child, without siginfo_t's unions. */
struct pidsafe_waitinfo {
    int32_t pid;     /* 0 if WNOHANG found nothing */
    int32_t code;    /* CLD_EXITED, CLD_KILLED, CLD_DUMPED, ... */
    int32_t status;  /* exit status or signal number */
};

/*
 * Everything the spawn child needs, prepared by the parent before clone3().
 * Pointers reference memory the parent keeps alive until clone3() returns
 * (the child shares the address space and the parent is suspended until the
 * child has exec'd or exited: CLONE_VM|CLONE_VFORK).
 *
 * With helper_path set, the child sets up fds and signals only, then execs
 * the helper (csrc/helper/) with helper_argv: credentials (setns, setuid,
 * ...) change there, in the helper's own memory, never in ours.
 */
struct pidsafe_spawn_spec {
    char **exec_paths;     /* NULL-terminated candidates, tried in order */
    int exec_fd;           /* -1; or exec this fd (the helper's, with a helper) instead of
                              the path: execveat(fd, "", AT_EMPTY_PATH), a sealed copy
                              (pidsafe/_sys/_sealed.py); listed in keep_fds but left
                              close-on-exec, so that only the exec itself uses it */
    char **argv;
    char **envp;           /* NULL: inherit the C environment */
    const char *cwd;       /* NULL: inherit */
    int stdio[3];          /* fd to become 0, 1, 2; -1 keeps the parent's */
    const int *keep_fds;   /* sorted ascending, all >= 3 */
    int n_keep_fds;
    int close_fds;
    int new_session;
    int pdeathsig;         /* 0: none */
    int parent_pid;        /* the child exits if its parent is no longer this */
    int restore_signals;   /* SIGPIPE, SIGXFSZ back to SIG_DFL */
    int errpipe_write;     /* >= 3, close-on-exec; -1: none (needed with a
                              helper, or pdeathsig with parent_pid 0) */
    uint64_t clone_flags;  /* extra CLONE_NEW* flags */
    int cgroup_fd;         /* -1, or a cgroup2 directory (CLONE_INTO_CGROUP) */
    const int *tasks_fds;  /* cgroup v1 `tasks` files the child joins ("0") */
    int n_tasks_fds;
    const char *helper_path; /* NULL: exec the program itself */
    char **helper_argv;
    int keep_caps;         /* raise ambient caps so the helper keeps them */
    int fail_stage;        /* tests only: PIDSAFE_STAGE_* or PIDSAFE_FAULT_* */
    int fail_errno;
};

const char *pidsafe_version(void);
/* pidsafe-init's stream magic (PSI_MAGIC of csrc/shared/init_protocol.h). */
const char *pidsafe_psi_magic(void);
int pidsafe_has_clone3_trampoline(void);

/* Syscall shims: -1 and errno on failure. */
int pidsafe_pidfd_open(int pid, unsigned int flags);
int pidsafe_pidfd_send_signal(int pidfd, int sig, unsigned int flags);
int pidsafe_pidfd_getfd(int pidfd, int targetfd, unsigned int flags);
int pidsafe_waitid_pidfd(int pidfd, int options, struct pidsafe_waitinfo *out);
int pidsafe_waitid_pidfd_status(int pidfd, int options, int *record);
int pidsafe_close_range(unsigned int first, unsigned int last, unsigned int flags);
int pidsafe_pidfd_exit_info(int pidfd, int32_t *exit_code);
int pidsafe_open_tree(int dfd, const char *path, unsigned int flags);
int pidsafe_move_mount(int from_dfd, const char *from_path, int to_dfd,
                       const char *to_path, unsigned int flags);
int pidsafe_mount_setattr(int dfd, const char *path, unsigned int flags,
                          struct pidsafe_mount_attr *attr, size_t size);
int pidsafe_openat2(int dfd, const char *path, struct pidsafe_open_how *how,
                    size_t size);
/* ioctl(TIOCGPTN): the number of a pty master's peer (/dev/pts/N). */
int pidsafe_pty_number(int fd, unsigned int *out);

/*
 * Spawn: clone3(CLONE_PIDFD|CLONE_VM|CLONE_VFORK|extra) on a private stack.
 * Returns the child's pid and stores its pidfd, or -1 with errno when no
 * child was created.  A child that failed before exec has stored its
 * {stage, errno} in *failure_out when this returns (stage 0: it exec'd, or
 * with a helper, it exec'd the helper, which reports over
 * spec->errpipe_write).
 */
int pidsafe_spawn(const struct pidsafe_spawn_spec *spec, int *pidfd_out,
                  struct pidsafe_child_error *failure_out);

/* Create a child that _exit()s at once: the runtime probe for clone3. */
int pidsafe_probe_child(int *pidfd_out);

/* CDEF END */

/*
 * C-only helpers shared by the .c files (not part of the cffi interface:
 * none of them is safe to call from Python).
 */

/*
 * clone3(2) with the child running fn(arg) on args->stack and exiting with
 * its return value.  Returns the pid in the parent, -1 and errno on failure.
 * fn must be C and async-signal-safe: with CLONE_VM it shares our memory.
 */
typedef int (*pidsafe_child_fn)(void *);
__attribute__((visibility("hidden")))
long pidsafe_clone3(struct pidsafe_clone_args *args, size_t size,
                    pidsafe_child_fn fn, void *arg);

/*
 * Child stacks (csrc/native/stack.c): one cache for every CLONE_VM child.
 *
 * pidsafe_stack_get: a stack of PIDSAFE_STACK_SIZE usable bytes above a
 * PROT_NONE guard page, so that a child overflowing its stack faults
 * instead of scribbling on our memory: the calling thread's cached one if
 * it is idle, else a fresh mapping.  NULL and errno on failure.
 * pidsafe_stack_put: give it back once no child runs on it any more.
 */
#define PIDSAFE_STACK_SIZE (64 * 1024)
struct pidsafe_stack {
    char *map;
    size_t map_size;
    void *slot;      /* the owning thread's cache slot; NULL: unmap on put */
};
__attribute__((visibility("hidden")))
int pidsafe_stack_get(struct pidsafe_stack *st);
__attribute__((visibility("hidden")))
void pidsafe_stack_put(struct pidsafe_stack *st);

/* The child side of pidsafe_spawn (csrc/native/child.c). */
struct pidsafe_spawn_ctx {
    const struct pidsafe_spawn_spec *spec;
    const void *parent_mask;  /* sigset_t: restored in the child just before exec */
    int handlers_cleared;     /* made with CLONE_CLEAR_SIGHAND */
    /* The child's failure record, in the parent's memory (stage 0: none). */
    volatile struct pidsafe_child_error *failure;
};
__attribute__((visibility("hidden")))
int pidsafe_spawn_child(void *arg);

#endif /* PIDSAFE_H */
