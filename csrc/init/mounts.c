/*
 * pidsafe-init: the container's mounts, devices and root.
 *
 * Every target is resolved inside the container's root by fd
 * (openat2(RESOLVE_IN_ROOT)): a symlink in the image such as
 * /etc/evil -> /host/dir leads to ROOT/host/dir, never to the host.
 * Missing targets are created one component at a time, each mkdirat()
 * relative to a directory fd that was itself resolved in the root.  Mounts
 * are built detached (fsopen/fsconfig/fsmount, or open_tree for binds),
 * given their attributes (mount_setattr: read-only, nosuid, idmap ...) and
 * attached last onto the target's fd (move_mount).
 *
 * A name is resolved once.  Whatever the container's files are made of may
 * change between two lookups of one path (another container sharing the
 * rootfs or a volume, a racing rename): so what init creates is opened
 * right away without following a symlink, checked on that fd (type, device
 * number), and acted on through the fd, never looked up again by name.
 * Before pivot_root a name looked up again would even resolve from the
 * host's root (CVE-2025-31133 and its runc siblings are this mistake).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "init.h"

#define OPEN_TREE_CLONE_ 1
#define OPEN_TREE_CLOEXEC_ O_CLOEXEC
#define AT_RECURSIVE_ 0x8000
#define MOVE_MOUNT_F_EMPTY_PATH_ 0x00000004
#define MOVE_MOUNT_T_EMPTY_PATH_ 0x00000040
#define FSOPEN_CLOEXEC_ 1
#define FSMOUNT_CLOEXEC_ 1
#define FSCONFIG_SET_FLAG_ 0
#define FSCONFIG_SET_STRING_ 1
#define FSCONFIG_CMD_CREATE_ 6
#define MOUNT_ATTR_RDONLY_ 0x00000001
#define MOUNT_ATTR_IDMAP_ 0x00100000
#define RESOLVE_NO_XDEV_ 0x01
#define RESOLVE_NO_MAGICLINKS_ 0x02
#define RESOLVE_NO_SYMLINKS_ 0x04
#define RESOLVE_BENEATH_ 0x08
#define RESOLVE_IN_ROOT_ 0x10

struct mount_attr_ {
    uint64_t attr_set;
    uint64_t attr_clr;
    uint64_t propagation;
    uint64_t userns_fd;
};

struct open_how_ {
    uint64_t flags;
    uint64_t mode;
    uint64_t resolve;
};

static int openat2_(int dfd, const char *path, int flags, uint64_t resolve)
{
    struct open_how_ how = {(uint64_t)(flags | O_CLOEXEC), 0, resolve};
    return (int)syscall(SYS_openat2, dfd, path, &how, sizeof(how));
}

static int setattr_(int dfd, const char *path, unsigned int flags, uint64_t set, uint64_t clr,
                    uint64_t propagation, int userns_fd)
{
    struct mount_attr_ attr = {set, clr, propagation, userns_fd >= 0 ? (uint64_t)userns_fd : 0};
    if (userns_fd >= 0)
        attr.attr_set |= MOUNT_ATTR_IDMAP_;
    return (int)syscall(SYS_mount_setattr, dfd, path, flags, &attr, sizeof(attr));
}

static int attach_(int mnt_fd, int target_fd)
{
    return (int)syscall(SYS_move_mount, mnt_fd, "", target_fd, "",
                        MOVE_MOUNT_F_EMPTY_PATH_ | MOVE_MOUNT_T_EMPTY_PATH_);
}

static void close_keep_errno(int fd)
{
    int saved = errno;
    if (fd >= 0)
        close(fd);
    errno = saved;
}

/* Resolve PATH in the root: an O_PATH fd, or -1 and errno. */
static int in_root(struct psi_ctx *c, const char *path)
{
    if (c->root_fd < 0) {
        errno = EINVAL;
        return -1;
    }
    return openat2_(c->root_fd, path, O_PATH, RESOLVE_IN_ROOT_ | RESOLVE_NO_MAGICLINKS_);
}

/*
 * The component NAME just created in DIR, opened without following
 * anything: a symlink or a mount swapped in since mkdirat() is refused
 * (ELOOP, EXDEV), never followed.
 */
static int open_created(int dir, const char *name, int flags)
{
    return openat2_(dir, name, O_PATH | flags, RESOLVE_BENEATH_ | RESOLVE_NO_SYMLINKS_
                    | RESOLVE_NO_MAGICLINKS_ | RESOLVE_NO_XDEV_);
}

/*
 * Resolve PATH in the root, creating what is missing: directories on the
 * way, and a directory or an empty file (kind) at the end.  What exists is
 * resolved in the root (an image's symlinks are followed, inside it); what
 * we create is opened by fd relative to its parent, never by name again.
 */
static int in_root_create(struct psi_ctx *c, const char *path, int kind)
{
    char prefix[PATH_MAX];
    size_t plen = 0;
    const char *p = path;
    int dir, fd;

    fd = in_root(c, path);
    if (fd >= 0 || errno != ENOENT)
        return fd;
    dir = fcntl(c->root_fd, F_DUPFD_CLOEXEC, 3);
    if (dir < 0)
        return -1;
    while (*p) {
        const char *slash;
        size_t clen;
        char comp[NAME_MAX + 1];
        int last, next;

        while (*p == '/')
            p++;
        if (!*p)
            break;
        slash = strchr(p, '/');
        clen = slash ? (size_t)(slash - p) : strlen(p);
        if (clen > NAME_MAX || plen + clen + 2 > sizeof(prefix)) {
            close(dir);
            errno = ENAMETOOLONG;
            return -1;
        }
        memcpy(comp, p, clen);
        comp[clen] = '\0';
        prefix[plen++] = '/';
        memcpy(prefix + plen, comp, clen);
        plen += clen;
        prefix[plen] = '\0';
        p += clen;
        while (*p == '/')
            p++;
        last = (*p == '\0');
        next = in_root(c, prefix);
        if (next < 0 && errno == ENOENT) {
            int made;
            if (last && kind == PSI_KIND_FILE) {
                int f = openat(dir, comp, O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC | O_NOFOLLOW,
                               0644);
                if (f >= 0) {   /* the file itself: the target, by fd */
                    close(dir);
                    return f;
                }
                made = 0;
            } else {
                made = mkdirat(dir, comp, 0755) == 0;
            }
            if (!made && errno != EEXIST) {
                close(dir);
                return -1;
            }
            /* Made by us: open it by fd.  EEXIST (made meanwhile by someone
             * else): only a lookup in the root, like any existing name. */
            next = made ? open_created(dir, comp, O_DIRECTORY) : in_root(c, prefix);
        }
        close(dir);
        if (next < 0)
            return -1;
        dir = next;
    }
    return dir;
}

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
    tfd = in_root_create(c, target, (int)kind);
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
    int64_t tree, recursive, propagation, kind;
    int tfd, fresh = -1, ret = -1, saved;
    char self[64];

    if (target == NULL || psi_int(op, 0, &tree) < 0 || psi_int(op, 2, &recursive) < 0
        || psi_int(op, 3, &propagation) < 0 || psi_int(op, 4, &kind) < 0)
        return -1;
    tfd = in_root_create(c, target, (int)kind);
    if (tfd < 0)
        return -1;
    if (attach_((int)tree, tfd) < 0)
        goto out;
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
    char *copy, *base;
    int dir, node = -1, ret = -1;
    dev_t dev;

    if (target == NULL || psi_int(op, 1, &mode) < 0 || psi_int(op, 2, &major_) < 0
        || psi_int(op, 3, &minor_) < 0 || psi_int(op, 4, &uid) < 0 || psi_int(op, 5, &gid) < 0)
        return -1;
    copy = strdup(target);
    if (copy == NULL)
        return -1;
    base = strrchr(copy, '/');
    if (base == NULL || base[1] == '\0') {
        free(copy);
        errno = EINVAL;
        return -1;
    }
    *base++ = '\0';
    dir = in_root_create(c, *copy ? copy : "/", PSI_KIND_DIR);
    if (dir < 0) {
        free(copy);
        return -1;
    }
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
    char *copy, *base;
    int dir, ret;

    if (target == NULL || linkpath == NULL)
        return -1;
    copy = strdup(linkpath);
    if (copy == NULL)
        return -1;
    base = strrchr(copy, '/');
    if (base == NULL) {
        free(copy);
        errno = EINVAL;
        return -1;
    }
    *base++ = '\0';
    dir = in_root_create(c, *copy ? copy : "/", PSI_KIND_DIR);
    if (dir < 0) {
        free(copy);
        return -1;
    }
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
    fd = in_root(c, path);
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

int psi_op_readonly(struct psi_ctx *c, const struct psi_op *op)
{
    const char *path = psi_str(op, 0);
    int fd, tree, ret;

    if (path == NULL)
        return -1;
    fd = in_root(c, path);
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
