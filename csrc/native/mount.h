/*
 * pidsafe native layer, mounts: the rest of the new mount API (fsopen,
 * fsconfig, fsmount; Linux 5.2), umount2(2), which Python's os module
 * lacks, and pidsafe_idmapped_bind(), the three syscalls of an idmapped
 * bind in one call.  open_tree, move_mount, mount_setattr and openat2 are
 * in pidsafe.h/shims.c.
 *
 * Why the new mount API rather than mount(2): every mount pidsafe makes is
 * created detached (an fd) and attached with move_mount() onto an O_PATH fd
 * of its target, which was resolved inside the container's rootfs with
 * openat2().  No path string is ever re-resolved between the
 * check and the mount, and a failed attach leaves nothing behind (closing a
 * detached mount's fd dissolves it).  fsconfig() also keeps the kernel's own
 * error text in the fs context's log, which pidsafe reads into its errors.
 *
 * CDEF rules as in pidsafe.h: integer #defines, fixed-width structs and
 * prototypes only between the markers.
 */
#ifndef PIDSAFE_MOUNT_H
#define PIDSAFE_MOUNT_H

#include <stddef.h>
#include <stdint.h>

/* CDEF BEGIN */

/* mount_setattr()/fsmount() attributes (linux/mount.h). */
#define PIDSAFE_MOUNT_ATTR_NOSUID      0x00000002
#define PIDSAFE_MOUNT_ATTR_NODEV       0x00000004
#define PIDSAFE_MOUNT_ATTR_NOEXEC      0x00000008
#define PIDSAFE_MOUNT_ATTR__ATIME      0x00000070
#define PIDSAFE_MOUNT_ATTR_RELATIME    0x00000000
#define PIDSAFE_MOUNT_ATTR_NOATIME     0x00000010
#define PIDSAFE_MOUNT_ATTR_STRICTATIME 0x00000020
#define PIDSAFE_MOUNT_ATTR_NODIRATIME  0x00000080
#define PIDSAFE_MOUNT_ATTR_NOSYMFOLLOW 0x00200000

/* Propagation types for mount_attr.propagation (MS_PRIVATE is in pidsafe.h). */
#define PIDSAFE_MS_UNBINDABLE          0x00020000
#define PIDSAFE_MS_SLAVE               0x00080000
#define PIDSAFE_MS_SHARED              0x00100000
/* mount(2)'s recursive flag, for the propagation of a container's root. */
#define PIDSAFE_MS_REC                 0x00004000

/* fsopen(), fsconfig(), fsmount(). */
#define PIDSAFE_FSOPEN_CLOEXEC         0x00000001
#define PIDSAFE_FSMOUNT_CLOEXEC        0x00000001
#define PIDSAFE_FSCONFIG_SET_FLAG      0
#define PIDSAFE_FSCONFIG_SET_STRING    1
#define PIDSAFE_FSCONFIG_SET_FD        5
#define PIDSAFE_FSCONFIG_CMD_CREATE    6

/* umount2() flags. */
#define PIDSAFE_UMOUNT_NOFOLLOW        0x00000008

/* Syscall shims: -1 and errno on failure. */
int pidsafe_fsopen(const char *fsname, unsigned int flags);
int pidsafe_fsconfig(int fd, unsigned int cmd, const char *key, const char *value,
                     int aux);
int pidsafe_fsmount(int fd, unsigned int flags, unsigned int attr_flags);
int pidsafe_umount2(const char *target, int flags);

/*
 * statx(2) with STATX_MNT_ID_UNIQUE (Linux 6.8): the 64-bit id of the mount
 * that path (or, with AT_EMPTY_PATH, the fd dfd) is on.  Unlike mountinfo's
 * id it is never reused, so it tells a mount from a later one.  -1 and errno
 * (EOPNOTSUPP when the kernel does not report it).
 */
int pidsafe_mnt_id_unique(int dfd, const char *path, int flags, uint64_t *id);

/*
 * statx(2) with STATX_MNT_ID (Linux 5.8): the id of the mount that path (or,
 * with AT_EMPTY_PATH, the fd dfd) is on, the one /proc/self/mountinfo and
 * fdinfo's mnt_id show (reused once the mount is gone).  One syscall where
 * fdinfo takes an open, a read and a close.  -1 and errno (EOPNOTSUPP when
 * the kernel does not report it).
 */
int pidsafe_mnt_id(int dfd, const char *path, int flags, uint64_t *id);

/*
 * An idmapped bind in one call: open_tree(src_dfd, src, clone_flags) ->
 * mount_setattr(tree, "", setattr_flags, {attr_set, 0, propagation,
 * userns_fd}) -> move_mount(tree, "", dst_dfd, dst, move_flags), the tree fd
 * closed on every path (a detached tree dissolves when closed, so a failure
 * leaves nothing behind).  Flags and attributes are composed by Python.
 * Returns 0, or the step that failed (PIDSAFE_BIND_STAGE_*, > 0) with errno
 * set, for Python to phrase.  One call instead of three, and no out
 * parameter to allocate: see benchmarks/bench_mount.py.
 */
#define PIDSAFE_BIND_STAGE_OPEN_TREE     1
#define PIDSAFE_BIND_STAGE_MOUNT_SETATTR 2
#define PIDSAFE_BIND_STAGE_MOVE_MOUNT    3
int pidsafe_idmapped_bind(int src_dfd, const char *src, unsigned int clone_flags,
                          unsigned int setattr_flags, uint64_t attr_set,
                          uint64_t propagation, int userns_fd, int dst_dfd,
                          const char *dst, unsigned int move_flags);

/* CDEF END */

#endif /* PIDSAFE_MOUNT_H */
