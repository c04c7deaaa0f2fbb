/*
 * pidsafe-init: device nodes, the /dev links, and masked paths (binds of
 * the container's /dev/null, or an empty read-only tmpfs on a directory).
 *
 * Each node or link is made by fd in its parent, resolved in the root
 * (resolve.c), then opened without following a symlink and proven on the
 * fd to be what was made.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "init.h"
#include "mount_api.h"

/*
 * The node just made at DIR/NAME, opened without following a symlink and
 * proven on the fd to be what we made (type, device number): if a racing
 * rename put anything else under the name, fail (ELOOP for a symlink,
 * EEXIST otherwise) rather than act on it.
 */
static int open_made_node(int dir, const char *name, mode_t mode, dev_t dev)
{
    struct stat st;
    int fd = openat(dir, name, O_PATH | O_NOFOLLOW | O_CLOEXEC);

    if (fd < 0)
        return -1;
    if (fstat(fd, &st) < 0) {
        close_keep_errno(fd);
        return -1;
    }
    if ((st.st_mode & S_IFMT) != (mode & S_IFMT)
        || ((S_ISCHR(mode) || S_ISBLK(mode)) && st.st_rdev != dev)) {
        close(fd);
        errno = S_ISLNK(st.st_mode) ? ELOOP : EEXIST;
        return -1;
    }
    return fd;
}

int psi_op_mknod(struct psi_ctx *c, const struct psi_op *op)
{
    const char *target = psi_str(op, 0);
    int64_t mode, major_, minor_, uid, gid;
    char *copy;
    const char *base;
    int dir, node = -1, ret = -1;
    dev_t dev;

    if (target == NULL || psi_int(op, 1, &mode) < 0 || psi_int(op, 2, &major_) < 0
        || psi_int(op, 3, &minor_) < 0 || psi_int(op, 4, &uid) < 0 || psi_int(op, 5, &gid) < 0)
        return -1;
    dir = psi_parent_in_root(c, target, &copy, &base);
    if (dir < 0)
        return -1;
    dev = makedev((unsigned)major_, (unsigned)minor_);
    /* O_PATH dir fds work with *at calls.  An existing node is replaced. */
    unlinkat(dir, base, 0);
    if (mknodat(dir, base, (mode_t)mode, dev) < 0)
        goto out;
    node = open_made_node(dir, base, (mode_t)mode, dev);
    if (node < 0)
        goto out;
    if ((uid >= 0 || gid >= 0) && fchownat(node, "", (uid_t)uid, (gid_t)gid, AT_EMPTY_PATH) < 0)
        goto out;
    /* mknod's mode is filtered by the umask: set it exactly, on the node. */
    ret = psi_chmod_fd(node, (mode_t)mode & 07777);
out:
    close_keep_errno(node);
    close_keep_errno(dir);
    free(copy);
    return ret;
}

int psi_op_symlink(struct psi_ctx *c, const struct psi_op *op)
{
    const char *target = psi_str(op, 0), *linkpath = psi_str(op, 1);
    char *copy;
    const char *base;
    int dir, ret;

    if (target == NULL || linkpath == NULL)
        return -1;
    dir = psi_parent_in_root(c, linkpath, &copy, &base);
    if (dir < 0)
        return -1;
    ret = symlinkat(target, dir, base);
    if (ret < 0 && errno == EEXIST)
        ret = 0;
    {
        int saved = errno;
        close(dir);
        free(copy);
        errno = saved;
    }
    return ret;
}

/*
 * The container's /dev/null, opened once (no symlink on the way) and proven
 * on the fd to be the null device, char 1:3: every masked file is a bind of
 * this fd.  Looked up by name, a /dev/null swapped for a symlink to
 * /proc/sys/kernel/core_pattern would turn a masked path into a writable
 * copy of it (CVE-2025-31133).  ENODEV: it is something else.
 */
static int devnull(struct psi_ctx *c)
{
    struct stat st;
    int fd;

    if (c->devnull_fd >= 0)
        return c->devnull_fd;
    if (c->root_fd < 0) {
        errno = EINVAL;
        return -1;
    }
    fd = openat2_(c->root_fd, "/dev/null", O_PATH, RESOLVE_IN_ROOT_ | RESOLVE_NO_SYMLINKS_
                  | RESOLVE_NO_MAGICLINKS_);
    if (fd < 0)
        return -1;
    if (fstat(fd, &st) < 0) {
        close_keep_errno(fd);
        return -1;
    }
    if (!S_ISCHR(st.st_mode) || st.st_rdev != makedev(1, 3)) {
        close(fd);
        errno = ENODEV;
        return -1;
    }
    c->devnull_fd = fd;
    return fd;
}

int psi_op_mask(struct psi_ctx *c, const struct psi_op *op)
{
    const char *path = psi_str(op, 0);
    struct stat st;
    int fd, ret;

    if (path == NULL)
        return -1;
    fd = psi_in_root(c, path);
    if (fd < 0)
        return errno == ENOENT ? 0 : -1;   /* nothing to mask */
    if (fstat(fd, &st) < 0) {
        close(fd);
        return -1;
    }
    if (S_ISDIR(st.st_mode)) {
        int fs = (int)syscall(SYS_fsopen, "tmpfs", FSOPEN_CLOEXEC_), mnt = -1;
        ret = -1;
        if (fs >= 0 && syscall(SYS_fsconfig, fs, FSCONFIG_SET_STRING_, "size", "0", 0) == 0
            && syscall(SYS_fsconfig, fs, FSCONFIG_CMD_CREATE_, NULL, NULL, 0) == 0
            && (mnt = (int)syscall(SYS_fsmount, fs, FSMOUNT_CLOEXEC_, MOUNT_ATTR_RDONLY_)) >= 0)
            ret = attach_(mnt, fd);
        close_keep_errno(mnt);
        close_keep_errno(fs);
    } else {
        int null = devnull(c), tree = -1;
        if (null >= 0)
            tree = (int)syscall(SYS_open_tree, null, "", OPEN_TREE_CLONE_ | OPEN_TREE_CLOEXEC_
                                | AT_EMPTY_PATH);
        ret = tree < 0 ? -1 : attach_(tree, fd);
        close_keep_errno(tree);
    }
    close_keep_errno(fd);
    return ret;
}
