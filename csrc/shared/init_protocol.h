/*
 * pidsafe-init: the protocol between the parent (pidsafe.container) and the
 * container's init helper.
 *
 * pidsafe-init is a small static program.  The parent creates the
 * container's init with clone3(CLONE_PIDFD|CLONE_VM|CLONE_VFORK|namespaces)
 * and that child only sets up its fds and execs pidsafe-init: no credential
 * change ever happens in memory shared with the caller (invariant 8).
 * pidsafe-init then, in its own memory:
 *
 *   1. reads the whole op stream from OPS_FD up to EOF.  The parent writes
 *      the uid/gid maps (open-then-prove) *before* it writes the stream, so
 *      nothing below runs in a user namespace without its maps.  A stream
 *      that does not end with OP_END means the parent died: exit quietly;
 *   2. runs the ops in order (mounts, devices, pivot_root, paths, hostname,
 *      sysctls, rlimits, capabilities, user, cwd; a seccomp filter before
 *      the capabilities, or kept for last);
 *   3. writes a READY record to STATUS_FD, waits at the gate (reads one
 *      byte from the exec FIFO it holds open read-write, so the gate
 *      outlives the process that created the container), loads a seccomp
 *      filter kept for last, then execs the program.
 *
 * Any failure writes one ERROR record {op index, op code, errno} to
 * STATUS_FD and exits 127; the parent turns it into a typed error naming
 * the config field.  STATUS_FD is close-on-exec: after the gate, EOF with
 * no record means the exec succeeded.
 *
 * Wire format (native endianness; parent and helper run on one machine):
 *   stream  := "PSI1" op* OP_END
 *   op      := u32 code, u32 nargs, arg*
 *   arg     := u32 length, byte[length]      (ints: 8-byte int64)
 *
 * Everything between the CDEF markers reaches Python through cffi (the
 * extension's build reads it into ffi.cdef): pidsafe._sys.psi.  So it
 * stays within what cffi's parser accepts: integer #defines and a plain
 * struct.
 */
#ifndef PIDSAFE_INIT_PROTOCOL_H
#define PIDSAFE_INIT_PROTOCOL_H

#include <stdint.h>

#define PSI_MAGIC "PSI1"

/* CDEF BEGIN */

#define PSI_OP_END            0   /* () */
#define PSI_OP_SETID_ROOT     1   /* () become uid/gid 0 of the user namespace */
#define PSI_OP_PROPAGATION    2   /* (path, flags) mount(NULL, path, NULL, flags) */
#define PSI_OP_ROOT           3   /* (rootfs, bind) later ops resolve in it; bind: first bind
                                      it onto itself (a new mount namespace copy needs none) */
#define PSI_OP_MOUNT_FS       4   /* (fstype, source, target, attr, propagation, params, kind)
                                      params: NUL-terminated "key=value" or "flag" items */
#define PSI_OP_MOUNT_TREE     5   /* (tree_fd, target, recursive, propagation, kind, fresh):
                                      attach a detached bind the parent made (open_tree +
                                      mount_setattr), so init never opens host paths;
                                      fresh: clone it again where it is attached and detach
                                      the parent's (mount ids in op order; without
                                      PSI_OP_ROOT_CLONE, which gives all of them at once) */
#define PSI_OP_MKNOD          6   /* (target, mode, major, minor, uid, gid) */
#define PSI_OP_SYMLINK        7   /* (target, linkpath): linkpath -> target, in the root */
#define PSI_OP_PIVOT          8   /* () pivot_root into the root, detach the old one */
#define PSI_OP_MASK           9   /* (path) tmpfs on a directory, /dev/null on a file */
#define PSI_OP_READONLY      10   /* (path) recursive read-only bind of path on itself */
#define PSI_OP_ROOT_READONLY 11   /* () */
#define PSI_OP_HOSTNAME      12   /* (name) */
#define PSI_OP_DOMAINNAME    13   /* (name) */
#define PSI_OP_SYSCTL        14   /* (key, value) */
#define PSI_OP_OOM_SCORE_ADJ 15   /* (value) */
#define PSI_OP_RLIMIT        16   /* (resource, soft, hard) */
#define PSI_OP_CAP_BOUNDING  17   /* (mask) drop every capability not in mask */
#define PSI_OP_USER          18   /* (uid, gid, umask or -1, gids as int64 array) */
#define PSI_OP_CAPS          19   /* (effective, permitted, inheritable, ambient) */
#define PSI_OP_NO_NEW_PRIVS  20   /* () */
#define PSI_OP_CHDIR         21   /* (path) */
#define PSI_OP_GATE          22   /* (fd) the exec FIFO, open read-write */
#define PSI_OP_EXEC          23   /* (argv as NUL-terminated strings, envp likewise) */
#define PSI_OP_CLOSE_FD      24   /* (fd) close an fd the parent passed for earlier ops */
#define PSI_OP_SETNS         25   /* (fd, nstype) join a namespace the parent opened */
#define PSI_OP_UNSHARE       26   /* (flags) */
#define PSI_OP_LOOPBACK_UP   27   /* () set lo up in our (new) network namespace */
#define PSI_OP_FORK          28   /* (socket_fd) the ops after this one run in a child of
                                      the parent's (clone3 CLONE_PARENT|CLONE_PIDFD), born in
                                      the pid namespace an earlier PSI_OP_SETNS chose for our
                                      children: its pid (int32 data) and pidfd (SCM_RIGHTS)
                                      go to the parent over socket_fd, then we exit 0 */
#define PSI_OP_SECCOMP       40   /* (flags, program, late) a classic BPF program (struct
                                      sock_filter[]) the parent compiled with libseccomp,
                                      loaded with seccomp(SECCOMP_SET_MODE_FILTER, flags).
                                      late=0: now (without no_new_privs loading needs
                                      CAP_SYS_ADMIN, so before the user and capabilities);
                                      late=1: after the gate, right before execve */
/* 45-49: OCI hooks */
#define PSI_OP_HOOKS         45   /* (fd) write a HOOKS record, then wait for one byte on
                                      fd (a pipe from the parent): the parent runs the
                                      create hooks meanwhile (prestart, createRuntime in its
                                      namespaces, createContainer in ours).  EOF: the
                                      parent gave up, fail */
#define PSI_OP_EXEC_PATH     46   /* (path) execve this file: PSI_OP_EXEC's argv[0] is only
                                      the name (a hook's path and args) */
/* 50-54: the process's terminal (csrc/init/terminal.c), in this order. */
#define PSI_OP_TERMINAL      50   /* (rows, cols, uid) allocate a pty in the container's devpts
                                      (/dev/pts/ptmx), size it (0: leave it), chown the peer
                                      to uid (-1: leave it) */
#define PSI_OP_CONSOLE       51   /* () bind the peer on /dev/console */
#define PSI_OP_TERMINAL_SEND 52   /* (socket_fd) send the master over the console socket
                                      (SCM_RIGHTS); close both */
#define PSI_OP_TERMINAL_STDIO 53  /* () the peer becomes stdin/stdout/stderr; setsid; it
                                      becomes the controlling terminal */
/* 55-59: validation-rest */
#define PSI_OP_CHROOT        55   /* () chroot into the root: no mount namespace of our own */
/* 60-64: containerd / runc CLI surface */
#define PSI_OP_PRESERVE_FDS  60   /* (count) fds 3 .. 3+count-1, as the parent's caller passed
                                      them, stay open across the exec (runc --preserve-fds) */
/* 61: cgroups */
#define PSI_OP_CGROUP_JOIN   61   /* (fd) write "0" to fd and close it: a cgroup's v1 `tasks`
                                      or v2 `cgroup.procs` the parent opened, which moves us
                                      (the kernel checks the opener's credentials).  In an
                                      exec's stream: right after PSI_OP_FORK, by the child
                                      once handed over (the one that forks is never in the
                                      container's cgroups); first thing without a fork */
/* 62: the root */
#define PSI_OP_ROOT_CLONE    62   /* () clone the root's whole tree (recursive) onto the root
                                      and make the clone the root: every mount in it gets a
                                      fresh id, in tree order, and the parent's trees, which
                                      stay under it, go with the old root at PSI_OP_PIVOT */
#define PSI_OP_MAX           62

/* Extra stages reported in the op field of an ERROR record. */
#define PSI_STAGE_PROTOCOL  100   /* a malformed op stream */
#define PSI_STAGE_GATE      101   /* waiting at the gate */
#define PSI_STAGE_EXEC      102   /* execve of the program */
#define PSI_STAGE_SETUP     103   /* pidsafe-init's own set-up */

/* Target kinds for mounts: what to create when the target is missing. */
#define PSI_KIND_DIR   0
#define PSI_KIND_FILE  1

#define PSI_RECORD_READY  1
#define PSI_RECORD_ERROR  2
#define PSI_RECORD_HOOKS  3   /* at PSI_OP_HOOKS: ready for the create hooks (index: the op) */

struct psi_record {
    int32_t kind;     /* PSI_RECORD_* */
    int32_t index;    /* the failing op's position in the stream, -1 if none */
    int32_t op;       /* its code, or a PSI_STAGE_* */
    int32_t err;      /* errno */
};

/* CDEF END */

#endif /* PIDSAFE_INIT_PROTOCOL_H */
