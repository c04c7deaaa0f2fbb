/*
 * pidsafe-init: acting on what was opened, not on a name looked up again.
 *
 * A container can change its files between two lookups of one path (see
 * resolve.c), so pidsafe-init opens a name once, checks on the fd what it
 * got, and acts on the fd:
 *
 *   - psi_chmod_fd(): chmod an O_PATH fd (a device node we just made);
 *   - psi_open_procfs(): a file of the container's procfs (a sysctl), with
 *     no symlink and no other mount on the way, proven on the fd to be
 *     procfs.  A write "to /proc/sys/..." by path goes wherever a bind
 *     mount, a symlink or an overmounted /proc sends it (CVE-2025-52881);
 *   - psi_send_fd(): hand an fd over a socket (SCM_RIGHTS), with a message.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <unistd.h>

#include "cleanup.h"
#include "init.h"
#include "mount_api.h"

#define PROC_SUPER_MAGIC_ 0x9fa0
#define PROC_ROOT_INO_ 1

int psi_chmod_fd(int fd, mode_t mode)
{
    char self[64];

    /* fchmodat2(fd, "", AT_EMPTY_PATH) acts on an O_PATH fd itself (6.6). */
    if (syscall(SYS_fchmodat2, fd, "", mode, AT_EMPTY_PATH) == 0)
        return 0;
    if (errno != ENOSYS && errno != EINVAL)
        return -1;
    /* Older kernels: the fd's magic link in our own /proc names the inode
     * itself, whatever name it has now. */
    snprintf(self, sizeof(self), "/proc/self/fd/%d", fd);
    return chmod(self, mode);
}

/* Whether FD is on a procfs (and, with ROOT, its root directory). */
static int on_procfs(int fd, int root)
{
    struct statfs sfs;
    struct stat st;

    if (fstatfs(fd, &sfs) < 0)
        return -1;
    if (sfs.f_type != PROC_SUPER_MAGIC_) {
        errno = ENODEV;
        return -1;
    }
    if (root) {
        if (fstat(fd, &st) < 0)
            return -1;
        if (st.st_ino != PROC_ROOT_INO_) {
            errno = ENODEV;
            return -1;
        }
    }
    return 0;
}

int psi_open_procfs(const char *rel, int flags)
{
    _cleanup_close_ int proc = -1, fd = -1;

    /* The container's /proc (our root is the container's now), no symlink
     * on the way, proven to be the root of a procfs. */
    proc = openat2_(AT_FDCWD, "/proc", O_PATH | O_DIRECTORY,
                    RESOLVE_NO_SYMLINKS_ | RESOLVE_NO_MAGICLINKS_);
    if (proc < 0 || on_procfs(proc, 1) < 0)
        return -1;
    /* Beneath it, with no symlink and no mount crossed (a bind over a
     * /proc/sys file is EXDEV), and proven procfs again on the result. */
    fd = openat2_(proc, rel, flags, RESOLVE_BENEATH_ | RESOLVE_NO_SYMLINKS_
                  | RESOLVE_NO_MAGICLINKS_ | RESOLVE_NO_XDEV_);
    if (fd < 0 || on_procfs(fd, 0) < 0)
        return -1;
    return TAKE_FD(fd);
}

/* A write's or a send's result: 0 if all LEN bytes went, else -1 (EIO: some did). */
static int sent_all(ssize_t n, size_t len)
{
    if (n < 0)
        return -1;
    if ((size_t)n != len) {
        errno = EIO;
        return -1;
    }
    return 0;
}

int psi_write_fd(int fd, const char *data, size_t len)
{
    ssize_t n;

    do
        n = write(fd, data, len);
    while (n < 0 && errno == EINTR);
    return sent_all(n, len);
}

int psi_send_fd(int sock, const void *data, size_t len, int fd)
{
    union {
        char buf[CMSG_SPACE(sizeof(int))];
        struct cmsghdr align;
    } control;
    struct iovec iov = {(void *)data, len};
    struct msghdr msg;
    struct cmsghdr *cm;
    ssize_t n;

    memset(&control, 0, sizeof(control));
    memset(&msg, 0, sizeof(msg));
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.buf;
    msg.msg_controllen = sizeof(control.buf);
    cm = CMSG_FIRSTHDR(&msg);
    cm->cmsg_level = SOL_SOCKET;
    cm->cmsg_type = SCM_RIGHTS;
    cm->cmsg_len = CMSG_LEN(sizeof(int));
    memcpy(CMSG_DATA(cm), &fd, sizeof(int));
    do
        n = sendmsg(sock, &msg, MSG_NOSIGNAL);
    while (n < 0 && errno == EINTR);
    return sent_all(n, len);
}
