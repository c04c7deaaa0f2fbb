/*
 * pidsafe native layer: the declarations shared by C and by cffi.
 *
 * Everything between the CDEF markers is read by csrc/build.py into
 * ffi.cdef(), so it must stay within what cffi's parser accepts: integer
 * #defines, plain structs with fixed-width fields, and prototypes.  System
 * headers are included by the .c files, never here.
 *
 * Two kinds of functions live in C (DESIGN.md, "The C/Python boundary"):
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

/* CDEF BEGIN */

/*
 * Kernel ABI constants, spelled out so that an older libc/kernel header set
 * cannot hide them.  csrc/shims.c checks each against the system header when
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

/* Stages of the spawn child, reported to the parent with an errno. */
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

/* The record a failing spawn child writes to the error pipe. */
struct pidsafe_child_error {
    int32_t stage;
    int32_t err;
};

/*
 * Everything the spawn child needs, prepared by the parent before clone3().
 * Pointers reference memory the parent keeps alive until clone3() returns
 * (the child shares the address space and the parent is suspended until the
 * child has exec'd or exited: CLONE_VM|CLONE_VFORK).
 */
struct pidsafe_spawn_spec {
    char **exec_paths;     /* NULL-terminated candidates, tried in order */
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
    int errpipe_write;     /* >= 3, close-on-exec */
    uint64_t clone_flags;  /* extra CLONE_NEW* flags */
    int cgroup_fd;         /* -1, or a cgroup2 directory (CLONE_INTO_CGROUP) */
    /* User namespaces (issue 3); all zero (as ffi.new() leaves them) for none. */
    int join_userns;       /* nonzero: setns(userns_fd, CLONE_NEWUSER) first */
    int userns_fd;
    int become_root;       /* in a user namespace: uid/gid 0 there, if mapped */
    uint64_t unshare_flags; /* CLONE_NEW* to unshare() (after joining userns_fd) */
};

const char *pidsafe_version(void);
int pidsafe_has_clone3_trampoline(void);

/* Syscall shims: -1 and errno on failure. */
int pidsafe_pidfd_open(int pid, unsigned int flags);
int pidsafe_pidfd_send_signal(int pidfd, int sig, unsigned int flags);
int pidsafe_pidfd_getfd(int pidfd, int targetfd, unsigned int flags);
int pidsafe_waitid_pidfd(int pidfd, int options, struct pidsafe_waitinfo *out);
int pidsafe_close_range(unsigned int first, unsigned int last, unsigned int flags);
int pidsafe_pidfd_exit_info(int pidfd, int32_t *exit_code);
int pidsafe_open_tree(int dfd, const char *path, unsigned int flags);
int pidsafe_move_mount(int from_dfd, const char *from_path, int to_dfd,
                       const char *to_path, unsigned int flags);
int pidsafe_mount_setattr(int dfd, const char *path, unsigned int flags,
                          struct pidsafe_mount_attr *attr, size_t size);
int pidsafe_openat2(int dfd, const char *path, struct pidsafe_open_how *how,
                    size_t size);

/*
 * clone3(2) with the child running fn(arg) on args->stack and exiting with
 * its return value.  Returns the pid in the parent, -1 and errno on failure.
 * fn must be C and async-signal-safe: with CLONE_VM it shares our memory.
 */
typedef int (*pidsafe_child_fn)(void *);
long pidsafe_clone3(struct pidsafe_clone_args *args, size_t size,
                    pidsafe_child_fn fn, void *arg);

/*
 * Spawn: clone3(CLONE_PIDFD|CLONE_VM|CLONE_VFORK|extra) on a private stack.
 * Returns the child's pid and stores its pidfd, or -1 with errno when no
 * child was created.  Child failures travel over spec->errpipe_write.
 */
int pidsafe_spawn(const struct pidsafe_spawn_spec *spec, int *pidfd_out);

/* Create a child that _exit()s at once: the runtime probe for clone3. */
int pidsafe_probe_child(int *pidfd_out);

/*
 * Two-phase spawn, for a child whose user namespace the parent must set up
 * (write its uid/gid maps) before the child goes on (issue 3, csrc/spawn.c):
 * clone3(CLONE_PIDFD|CLONE_VM|CLONE_CHILD_CLEARTID|spec->clone_flags), NOT
 * CLONE_VFORK, on a stack mapping that the handle owns.  The child waits
 * until pidsafe_spawn_resume() releases it; that call returns once the child
 * has exec'd or exited (what clone3 returning means for a VFORK child), and
 * unmaps the stack.  If the child must not go on, kill and reap it through
 * its pidfd, then call pidsafe_spawn_free().  The spec and everything it
 * points to must stay alive until one of the two has returned.
 */
struct pidsafe_spawn_handle {
    int32_t pid;
    int32_t pidfd;
    uint64_t map_addr;     /* opaque */
    uint64_t map_size;
    uint64_t block;        /* opaque */
};
int pidsafe_spawn_start(const struct pidsafe_spawn_spec *spec,
                        struct pidsafe_spawn_handle *h);
int pidsafe_spawn_resume(struct pidsafe_spawn_handle *h);
int pidsafe_spawn_free(struct pidsafe_spawn_handle *h);

/* CDEF END */

/*
 * C-only helpers shared by the .c files (not part of the cffi interface).
 *
 * pidsafe_stack_map: an anonymous private mapping of map_size bytes (a
 * multiple of the page size) whose lowest page is PROT_NONE, so that a child
 * overflowing its stack faults instead of scribbling on our memory.  NULL
 * and errno on failure.  munmap() it when the child no longer runs on it.
 */
__attribute__((visibility("hidden")))
char *pidsafe_stack_map(size_t map_size);

#endif /* PIDSAFE_H */
