/*
 * C reference for benchmarks/bench_mount.py: an idmapped bind mount and its
 * unmount, n times, with the syscalls pidsafe.idmapped_bind makes (and
 * containerd's IDMapMount), and no Python:
 *
 *   tree = open_tree(AT_FDCWD, src, OPEN_TREE_CLONE|OPEN_TREE_CLOEXEC[|AT_RECURSIVE])
 *   mount_setattr(tree, "", AT_EMPTY_PATH[|AT_RECURSIVE],
 *                 {MOUNT_ATTR_IDMAP[|MOUNT_ATTR_RDONLY], propagation MS_PRIVATE, userns})
 *   move_mount(tree, "", AT_FDCWD, dst, MOVE_MOUNT_F_EMPTY_PATH)
 *   close(tree)
 *   umount2(dst, 0)
 *
 * cref_idmapped_bind() returns the nanoseconds spent in the first four steps
 * (the bind) and stores those of the umount2() in *umount_ns; -errno on
 * failure.  Built by bench_mount.py with gcc into benchmarks/.build/ and
 * called through ctypes.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <sys/mount.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#ifndef SYS_open_tree
#define SYS_open_tree 428
#endif
#ifndef SYS_move_mount
#define SYS_move_mount 429
#endif
#ifndef SYS_mount_setattr
#define SYS_mount_setattr 442
#endif
#define CREF_OPEN_TREE_CLONE 1
#define CREF_AT_RECURSIVE 0x8000
#define CREF_MOVE_MOUNT_F_EMPTY_PATH 0x00000004
#define CREF_MOUNT_ATTR_RDONLY 0x00000001
#define CREF_MOUNT_ATTR_IDMAP 0x00100000

struct cref_mount_attr {
    uint64_t attr_set, attr_clr, propagation, userns_fd;
};

static int64_t now_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

int64_t cref_idmapped_bind(int n, const char *src, const char *dst, int userns_fd,
                           int recursive, int readonly, int64_t *umount_ns)
{
    int64_t bind = 0, unmount = 0;

    for (int i = 0; i < n; i++) {
        struct cref_mount_attr attr = {
            .attr_set = CREF_MOUNT_ATTR_IDMAP | (readonly ? CREF_MOUNT_ATTR_RDONLY : 0),
            .propagation = MS_PRIVATE,
            .userns_fd = (uint64_t)userns_fd,
        };
        int64_t t0 = now_ns();
        int tree = (int)syscall(SYS_open_tree, AT_FDCWD, src,
                                CREF_OPEN_TREE_CLONE | O_CLOEXEC
                                | (recursive ? CREF_AT_RECURSIVE : 0));
        if (tree < 0)
            return -errno;
        if (syscall(SYS_mount_setattr, tree, "", AT_EMPTY_PATH
                    | (recursive ? CREF_AT_RECURSIVE : 0), &attr, sizeof(attr)) < 0
            || syscall(SYS_move_mount, tree, "", AT_FDCWD, dst,
                       CREF_MOVE_MOUNT_F_EMPTY_PATH) < 0) {
            int err = errno;
            close(tree);
            return -err;
        }
        close(tree);
        int64_t t1 = now_ns();
        if (umount2(dst, 0) < 0)
            return -errno;
        int64_t t2 = now_ns();
        bind += t1 - t0;
        unmount += t2 - t1;
    }
    *umount_ns = unmount;
    return bind;
}
