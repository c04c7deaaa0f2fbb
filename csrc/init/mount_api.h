/*
 * pidsafe-init: the new mount API and openat2(2) as its ops use them: the
 * constants and structs, spelled out for C library headers that lack them,
 * and thin inline wrappers (openat2_ adds O_CLOEXEC, and O_NOCTTY unless
 * O_PATH).
 */
#ifndef PIDSAFE_INIT_MOUNT_API_H
#define PIDSAFE_INIT_MOUNT_API_H

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "syscall_numbers.h"

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

static inline int openat2_(int dfd, const char *path, int flags, uint64_t resolve)
{
    /* openat2 refuses O_PATH with any flag but O_DIRECTORY, O_NOFOLLOW, O_CLOEXEC. */
    if (!(flags & O_PATH))
        flags |= O_NOCTTY;
    struct open_how_ how = {(uint64_t)(flags | O_CLOEXEC), 0, resolve};
    return (int)syscall(SYS_openat2, dfd, path, &how, sizeof(how));
}

static inline int setattr_(int dfd, const char *path, unsigned int flags, uint64_t set, uint64_t clr,
                                  uint64_t propagation, int userns_fd)
{
    struct mount_attr_ attr = {set, clr, propagation, userns_fd >= 0 ? (uint64_t)userns_fd : 0};
    if (userns_fd >= 0)
        attr.attr_set |= MOUNT_ATTR_IDMAP_;
    return (int)syscall(SYS_mount_setattr, dfd, path, flags, &attr, sizeof(attr));
}

static inline int attach_(int mnt_fd, int target_fd)
{
    return (int)syscall(SYS_move_mount, mnt_fd, "", target_fd, "",
                        MOVE_MOUNT_F_EMPTY_PATH_ | MOVE_MOUNT_T_EMPTY_PATH_);
}

static inline void close_keep_errno(int fd)
{
    int saved = errno;
    if (fd >= 0)
        close(fd);
    errno = saved;
}

#endif /* PIDSAFE_INIT_MOUNT_API_H */
