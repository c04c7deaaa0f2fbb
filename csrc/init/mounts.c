/*
 * pidsafe-init: the container's mounts and root.
 *
 * Targets are resolved in the container's root by fd (resolve.c).  Mounts
 * are built detached (fsopen/fsconfig/fsmount, or open_tree for binds),
 * given their attributes (mount_setattr: read-only, nosuid, idmap ...) and
 * attached last onto the target's fd (move_mount).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "init.h"
#include "mount_api.h"

int psi_op_propagation(struct psi_ctx *c, const struct psi_op *op)
{
    const char *path = psi_str(op, 0);
    int64_t flags;
    (void)c;
    if (path == NULL || psi_int(op, 1, &flags) < 0)
        return -1;
    return mount(NULL, path, NULL, (unsigned long)flags, NULL);
}

int psi_op_root(struct psi_ctx *c, const struct psi_op *op)
{
    const char *rootfs = psi_str(op, 0);
    int64_t bind;
    if (rootfs == NULL || psi_int(op, 1, &bind) < 0)
        return -1;
    /* pivot_root needs the new root to be a mount point. */
    if (bind && mount(rootfs, rootfs, NULL, MS_BIND | MS_REC, NULL) < 0)
        return -1;
    if (c->root_fd >= 0)
        close(c->root_fd);   /* of the mount namespace we just left */
    c->root_fd = open(rootfs, O_PATH | O_DIRECTORY | O_CLOEXEC);
    return c->root_fd < 0 ? -1 : 0;
}

/* fsconfig() each parameter: "key=value" items as strings, "key" items as flags. */
static int configure(int fs_fd, const struct psi_arg *params)
{
    uint32_t i = 0;

    while (i < params->len) {
        const char *item = params->data + i;
        size_t n = strlen(item);
        const char *eq = strchr(item, '=');
        int ret;
        if (eq != NULL) {
            char key[256];
            size_t klen = (size_t)(eq - item);
            if (klen >= sizeof(key)) {
                errno = EINVAL;
                return -1;
            }
            memcpy(key, item, klen);
            key[klen] = '\0';
            ret = (int)syscall(SYS_fsconfig, fs_fd, FSCONFIG_SET_STRING_, key, eq + 1, 0);
        } else {
            ret = (int)syscall(SYS_fsconfig, fs_fd, FSCONFIG_SET_FLAG_, item, NULL, 0);
        }
        if (ret < 0)
            return -1;
        i += (uint32_t)n + 1;
    }
    return 0;
}

int psi_op_mount_fs(struct psi_ctx *c, const struct psi_op *op)
{
    const char *fstype = psi_str(op, 0), *source = psi_str(op, 1), *target = psi_str(op, 2);
    int64_t attr, propagation, kind;
    int fs = -1, mnt = -1, tfd = -1, ret = -1, saved;

    if (fstype == NULL || source == NULL || target == NULL || op->nargs != 7
        || psi_int(op, 3, &attr) < 0 || psi_int(op, 4, &propagation) < 0
        || psi_int(op, 6, &kind) < 0)
        return -1;
    tfd = psi_in_root_create(c, target, (int)kind);
    if (tfd < 0)
        return -1;
    fs = (int)syscall(SYS_fsopen, fstype, FSOPEN_CLOEXEC_);
    if (fs < 0)
        goto out;
    if (*source && syscall(SYS_fsconfig, fs, FSCONFIG_SET_STRING_, "source", source, 0) < 0)
        goto out;
    if (configure(fs, &op->args[5]) < 0)
        goto out;
    if (syscall(SYS_fsconfig, fs, FSCONFIG_CMD_CREATE_, NULL, NULL, 0) < 0)
        goto out;
    mnt = (int)syscall(SYS_fsmount, fs, FSMOUNT_CLOEXEC_, (unsigned int)attr);
    if (mnt < 0)
        goto out;
    if (attach_(mnt, tfd) < 0)
        goto out;
    if (propagation && setattr_(mnt, "", AT_EMPTY_PATH, 0, 0, (uint64_t)propagation, -1) < 0)
        goto out;
    ret = 0;
out:
    saved = errno;
    if (mnt >= 0)
        close(mnt);
    if (fs >= 0)
        close(fs);
    close(tfd);
    errno = saved;
    return ret;
}

int psi_op_mount_tree(struct psi_ctx *c, const struct psi_op *op)
{
    const char *target = psi_str(op, 1);
    int64_t tree, recursive, propagation, kind, again;
    int tfd, fresh = -1, ret = -1, saved;
    char self[64];

    if (target == NULL || psi_int(op, 0, &tree) < 0 || psi_int(op, 2, &recursive) < 0
        || psi_int(op, 3, &propagation) < 0 || psi_int(op, 4, &kind) < 0
        || psi_int(op, 5, &again) < 0)
        return -1;
    tfd = psi_in_root_create(c, target, (int)kind);
    if (tfd < 0)
        return -1;
    if (attach_((int)tree, tfd) < 0)
        goto out;
    if (!again) {
        /* PSI_OP_ROOT_CLONE comes later and gives it its fresh id. */
        if (propagation && setattr_((int)tree, "", AT_EMPTY_PATH
                                    | (recursive ? AT_RECURSIVE_ : 0), 0, 0,
                                    (uint64_t)propagation, -1) < 0)
            goto out;
        ret = 0;
        goto out;
    }
    /*
     * The parent cloned this tree before init made any mount, and Linux
     * 6.8+ lists a namespace's mounts (/proc/self/mountinfo) in mount-id
     * order: it would show before the config's earlier mounts.  Once it is
     * attached here it may be cloned again (a detached tree of another
     * namespace may not): the fresh clone, attributes and idmap included,
     * has ids in config order and takes the first one's place.
     */
    fresh = (int)syscall(SYS_open_tree, (int)tree, "", OPEN_TREE_CLONE_ | OPEN_TREE_CLOEXEC_
                         | AT_EMPTY_PATH | (recursive ? AT_RECURSIVE_ : 0));
    if (fresh < 0)
        goto out;
    snprintf(self, sizeof(self), "/proc/self/fd/%d", (int)tree);
    if (umount2(self, MNT_DETACH) < 0 || attach_(fresh, tfd) < 0)
        goto out;
    if (propagation && setattr_(fresh, "", AT_EMPTY_PATH | (recursive ? AT_RECURSIVE_ : 0),
                                0, 0, (uint64_t)propagation, -1) < 0)
        goto out;
    ret = 0;
out:
    saved = errno;
    if (fresh >= 0)
        close(fresh);
    close((int)tree);
    close(tfd);
    errno = saved;
    return ret;
}

/*
 * The parent's trees were cloned before init made any mount, so they hold
 * the lowest mount ids, and Linux 6.8+ lists a namespace's mounts in id
 * order.  One recursive clone of the whole root, once every mount is made,
 * gives every mount a fresh id in tree order (depth first, siblings in the
 * order they were attached), attributes, idmaps and propagation kept.  It
 * is attached on top of the root and becomes the root; the first tree,
 * the parent's binds included, stays under it, in the old root, which
 * pivot_root's single MNT_DETACH takes away.  That replaces a clone and an
 * MNT_DETACH per bind (each detach waits for an RCU grace period).  An
 * unbindable mount cannot be cloned: the planner does not use this op then.
 */
int psi_op_root_clone(struct psi_ctx *c, const struct psi_op *op)
{
    int tree, saved;
    (void)op;
    if (c->root_fd < 0) {
        errno = EINVAL;
        return -1;
    }
    tree = (int)syscall(SYS_open_tree, c->root_fd, "", OPEN_TREE_CLONE_ | OPEN_TREE_CLOEXEC_
                        | AT_EMPTY_PATH | AT_RECURSIVE_);
    if (tree < 0)
        return -1;
    if (attach_(tree, c->root_fd) < 0) {
        saved = errno;
        close(tree);
        errno = saved;
        return -1;
    }
    /* The fd is the attached clone's root: later ops resolve in it. */
    close(c->root_fd);
    c->root_fd = tree;
    return 0;
}

int psi_op_pivot(struct psi_ctx *c, const struct psi_op *op)
{
    (void)op;
    if (c->root_fd < 0 || fchdir(c->root_fd) < 0)
        return -1;
    /* pivot_root(".", "."): the old root ends up on top of the new one. */
    if (syscall(SYS_pivot_root, ".", ".") < 0)
        return -1;
    /* Never let the detach propagate back to the host. */
    if (mount(NULL, ".", NULL, MS_SLAVE | MS_REC, NULL) < 0)
        return -1;
    if (umount2(".", MNT_DETACH) < 0)
        return -1;
    if (chdir("/") < 0)
        return -1;
    close(c->root_fd);
    c->root_fd = open("/", O_PATH | O_DIRECTORY | O_CLOEXEC);
    c->pivoted = 1;
    return c->root_fd < 0 ? -1 : 0;
}

/*
 * Without a mount namespace of its own the container shares the runtime's:
 * pivot_root would move the root of every process in it, so init only
 * changes its own root.  (The parent undoes the mounts init made here.)
 */
int psi_op_chroot(struct psi_ctx *c, const struct psi_op *op)
{
    (void)op;
    if (c->root_fd < 0 || fchdir(c->root_fd) < 0 || chroot(".") < 0 || chdir("/") < 0)
        return -1;
    close(c->root_fd);
    c->root_fd = open("/", O_PATH | O_DIRECTORY | O_CLOEXEC);
    c->pivoted = 1;
    return c->root_fd < 0 ? -1 : 0;
}

int psi_op_readonly(struct psi_ctx *c, const struct psi_op *op)
{
    const char *path = psi_str(op, 0);
    int fd, tree, ret;

    if (path == NULL)
        return -1;
    fd = psi_in_root(c, path);
    if (fd < 0)
        return errno == ENOENT ? 0 : -1;
    tree = (int)syscall(SYS_open_tree, fd, "", OPEN_TREE_CLONE_ | OPEN_TREE_CLOEXEC_
                        | AT_RECURSIVE_ | AT_EMPTY_PATH);
    ret = tree < 0 ? -1
          : setattr_(tree, "", AT_EMPTY_PATH | AT_RECURSIVE_, MOUNT_ATTR_RDONLY_, 0, 0, -1);
    if (ret == 0)
        ret = attach_(tree, fd);
    {
        int saved = errno;
        if (tree >= 0)
            close(tree);
        close(fd);
        errno = saved;
    }
    return ret;
}

int psi_op_root_readonly(struct psi_ctx *c, const struct psi_op *op)
{
    (void)c;
    (void)op;
    return setattr_(AT_FDCWD, "/", 0, MOUNT_ATTR_RDONLY_, 0, 0, -1);
}
