/*
 * Mount shims: fsopen(2), fsconfig(2), fsmount(2) (Linux 5.2) and
 * umount2(2).  Each returns -1 and leaves errno; EINTR is retried by
 * pidsafe/_sys.  See mount.h for why pidsafe uses the new mount API.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <linux/stat.h>
#include <sys/mount.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "cleanup.h"
#include "pidsafe.h"
#include "mount.h"
#include "syscall_numbers.h"

#ifdef UMOUNT_NOFOLLOW
_Static_assert(UMOUNT_NOFOLLOW == PIDSAFE_UMOUNT_NOFOLLOW, "UMOUNT_NOFOLLOW");
#endif
_Static_assert(MS_SHARED == PIDSAFE_MS_SHARED, "MS_SHARED");
_Static_assert(MS_SLAVE == PIDSAFE_MS_SLAVE, "MS_SLAVE");
_Static_assert(MS_UNBINDABLE == PIDSAFE_MS_UNBINDABLE, "MS_UNBINDABLE");
_Static_assert(MS_REC == PIDSAFE_MS_REC, "MS_REC");

/* fsopen(2), Linux 5.2: a filesystem context for fsname. */
int pidsafe_fsopen(const char *fsname, unsigned int flags)
{
    return (int)syscall(SYS_fsopen, fsname, flags);
}

/* fsconfig(2), Linux 5.2.  key/value may be NULL for commands and flags. */
int pidsafe_fsconfig(int fd, unsigned int cmd, const char *key, const char *value,
                     int aux)
{
    return (int)syscall(SYS_fsconfig, fd, cmd, key, value, aux);
}

/* fsmount(2), Linux 5.2: a detached mount of the context's superblock. */
int pidsafe_fsmount(int fd, unsigned int flags, unsigned int attr_flags)
{
    return (int)syscall(SYS_fsmount, fd, flags, attr_flags);
}

/* umount2(2).  The raw syscall, so that libc adds no policy of its own. */
int pidsafe_umount2(const char *target, int flags)
{
    return (int)syscall(SYS_umount2, target, flags);
}

/* The kernel's struct statx, from linux/stat.h (not glibc's).  Both mount
 * ids come in stx_mnt_id; stx_mask says which one the kernel filled in. */
#ifndef STATX_MNT_ID
#define STATX_MNT_ID 0x00001000U
#endif
#ifndef STATX_MNT_ID_UNIQUE
#define STATX_MNT_ID_UNIQUE 0x00004000U
#endif
static int statx_mnt_id(int dfd, const char *path, int flags, unsigned int mask,
                        uint64_t *id)
{
    struct statx stx;

    if (syscall(SYS_statx, dfd, path, flags, mask, &stx) < 0)
        return -1;
    if (!(stx.stx_mask & mask)) {
        errno = EOPNOTSUPP;
        return -1;
    }
    *id = stx.stx_mnt_id;
    return 0;
}

/* See mount.h. */
int pidsafe_mnt_id_unique(int dfd, const char *path, int flags, uint64_t *id)
{
    return statx_mnt_id(dfd, path, flags, STATX_MNT_ID_UNIQUE, id);
}

/* See mount.h. */
int pidsafe_mnt_id(int dfd, const char *path, int flags, uint64_t *id)
{
    return statx_mnt_id(dfd, path, flags, STATX_MNT_ID, id);
}

/* See mount.h.  Syscalls only; no policy. */
int pidsafe_idmapped_bind(int src_dfd, const char *src, unsigned int clone_flags,
                          unsigned int setattr_flags, uint64_t attr_set,
                          uint64_t propagation, int userns_fd, int dst_dfd,
                          const char *dst, unsigned int move_flags)
{
    struct pidsafe_mount_attr attr = {
        .attr_set = attr_set,
        .propagation = propagation,
        .userns_fd = (uint64_t)userns_fd,
    };
    _cleanup_close_ int tree = pidsafe_open_tree(src_dfd, src, clone_flags);

    if (tree < 0)
        return PIDSAFE_BIND_STAGE_OPEN_TREE;
    if (pidsafe_mount_setattr(tree, "", setattr_flags, &attr, sizeof(attr)) < 0)
        return PIDSAFE_BIND_STAGE_MOUNT_SETATTR;
    if (pidsafe_move_mount(tree, "", dst_dfd, dst, move_flags) < 0)
        return PIDSAFE_BIND_STAGE_MOVE_MOUNT;
    return 0;   /* closing the tree (on every path) dissolves it if it was not attached */
}
