/*
 * pidsafe-init internals shared by its .c files (see
 * csrc/shared/init_protocol.h for what the program does).  pidsafe-init runs
 * in memory of its own (it was exec'd), single-threaded: it may use libc
 * freely, malloc included.
 */
#ifndef PIDSAFE_INIT_H
#define PIDSAFE_INIT_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "init_protocol.h"

struct psi_arg {
    const char *data;   /* NUL-terminated copy (for strings) */
    uint32_t len;
};

struct psi_op {
    uint32_t code;
    uint32_t nargs;
    struct psi_arg *args;
};

/* The state the ops share. */
struct psi_ctx {
    int root_fd;        /* O_PATH fd of the container's root, -1 before PSI_OP_ROOT */
    int devnull_fd;     /* the container's /dev/null, proven char 1:3; -1 until a mask */
    int pivoted;
    int gate_fd;        /* -1: no gate */
    int pty_master;     /* -1: none (terminal.c) */
    int pty_peer;
    char **exec_argv;
    char **exec_envp;
    const struct psi_op *seccomp_late;  /* PSI_OP_SECCOMP to load right before exec */
    int32_t seccomp_late_index;         /* its position in the stream */
    const char *exec_path;   /* PSI_OP_EXEC_PATH, or NULL: look argv[0] up */
    int32_t index;           /* the running op's position (for PSI_OP_HOOKS' record) */
};

/* reader.c: the op stream, and the ops' arguments. */
/* Read the stream from fd to EOF and split it into ops: their count (the
 * end op not included), or -1 if it is malformed, truncated (the parent died
 * mid-stream) or unreadable. */
long psi_read_ops(int fd, struct psi_op **ops_out);
/* Argument accessors; they fail (errno EINVAL) on a malformed op. */
int psi_int(const struct psi_op *op, uint32_t i, int64_t *out);
const char *psi_str(const struct psi_op *op, uint32_t i);
/* A list of NUL-terminated strings as a NULL-terminated array (NULL: ENOMEM). */
char **psi_split_list(const struct psi_arg *a);

/* namespaces.c */
int psi_op_setns(struct psi_ctx *c, const struct psi_op *op);
int psi_op_unshare(struct psi_ctx *c, const struct psi_op *op);
int psi_op_fork(struct psi_ctx *c, const struct psi_op *op);

/* resolve.c: paths resolved in the container's root, by fd. */
/* PATH in the root: an O_PATH fd, or -1 and errno. */
int psi_in_root(struct psi_ctx *c, const char *path);
/* PATH in the root, creating what is missing (a directory or an empty
 * file at the end, by kind): an fd, or -1 and errno. */
int psi_in_root_create(struct psi_ctx *c, const char *path, int kind);
/* The directory PATH is in, resolved (created) in the root, and the name
 * in it: *base points into *copy, which the caller frees once done (on
 * failure nothing is left to free).  EINVAL: PATH names no entry. */
int psi_parent_in_root(struct psi_ctx *c, const char *path, char **copy, const char **base);

/* mounts.c */
int psi_op_propagation(struct psi_ctx *c, const struct psi_op *op);
int psi_op_root(struct psi_ctx *c, const struct psi_op *op);
int psi_op_mount_fs(struct psi_ctx *c, const struct psi_op *op);
int psi_op_mount_tree(struct psi_ctx *c, const struct psi_op *op);
int psi_op_chroot(struct psi_ctx *c, const struct psi_op *op);
int psi_op_root_clone(struct psi_ctx *c, const struct psi_op *op);
int psi_op_pivot(struct psi_ctx *c, const struct psi_op *op);
int psi_op_readonly(struct psi_ctx *c, const struct psi_op *op);
int psi_op_root_readonly(struct psi_ctx *c, const struct psi_op *op);

/* devices.c */
int psi_op_mknod(struct psi_ctx *c, const struct psi_op *op);
int psi_op_symlink(struct psi_ctx *c, const struct psi_op *op);
int psi_op_mask(struct psi_ctx *c, const struct psi_op *op);

/* creds.c */
int psi_op_setid_root(struct psi_ctx *c, const struct psi_op *op);
int psi_op_cap_bounding(struct psi_ctx *c, const struct psi_op *op);
int psi_op_user(struct psi_ctx *c, const struct psi_op *op);
int psi_op_caps(struct psi_ctx *c, const struct psi_op *op);
int psi_op_no_new_privs(struct psi_ctx *c, const struct psi_op *op);

/* system.c */
int psi_op_hostname(struct psi_ctx *c, const struct psi_op *op);
int psi_op_domainname(struct psi_ctx *c, const struct psi_op *op);
int psi_op_sysctl(struct psi_ctx *c, const struct psi_op *op);
int psi_op_oom_score_adj(struct psi_ctx *c, const struct psi_op *op);
int psi_op_rlimit(struct psi_ctx *c, const struct psi_op *op);
int psi_op_loopback_up(struct psi_ctx *c, const struct psi_op *op);

/* seccomp.c */
int psi_op_seccomp(struct psi_ctx *c, const struct psi_op *op);
int psi_seccomp_load(const struct psi_op *op);
/* terminal.c */
int psi_op_terminal(struct psi_ctx *c, const struct psi_op *op);
int psi_op_console(struct psi_ctx *c, const struct psi_op *op);
int psi_op_terminal_send(struct psi_ctx *c, const struct psi_op *op);
int psi_op_terminal_stdio(struct psi_ctx *c, const struct psi_op *op);

/* byfd.c: act on what was opened, never on a name looked up again. */
int psi_chmod_fd(int fd, mode_t mode);
int psi_open_procfs(const char *rel, int flags);
int psi_write_fd(int fd, const char *data, size_t len);
/* One message on SOCK: LEN bytes of DATA, FD as SCM_RIGHTS.  MSG_NOSIGNAL:
 * a receiver gone is EPIPE, never SIGPIPE.  EIO: sent in part. */
int psi_send_fd(int sock, const void *data, size_t len, int fd);

#endif /* PIDSAFE_INIT_H */
