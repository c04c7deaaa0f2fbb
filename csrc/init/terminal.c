/*
 * pidsafe-init: the process's terminal (process.terminal, runc's
 * --console-socket).
 *
 * Where the pty comes from.  It is allocated *here*, by init inside the
 * container, from the container's own devpts instance (/dev/pts/ptmx), not
 * by the parent from the host's /dev/ptmx:
 *
 *   - the peer is a node of the container's devpts, so /dev/pts/N exists
 *     in the container: ttyname(), `tty`, programs that reopen their
 *     terminal by name (login, su, script) work, and the host's devpts
 *     (its numbering, its other ptys) is never reachable from inside;
 *   - with a user namespace, that devpts was mounted by the container's
 *     root in its user namespace, so the peer is owned by an id mapped
 *     there (the container's root, then chowned to the process's user).
 *     A host pty would belong to host root, unmapped inside: nobody in the
 *     container could chown or reopen it;
 *   - the master never passes through a long-lived runtime process: the
 *     parent only connects to the console socket and passes the connected
 *     socket; init sends the master itself and closes it before exec.
 *
 * runc does the same (libcontainer/console_linux.go).  The order is:
 * allocate and size (PSI_OP_TERMINAL), bind the peer on /dev/console at
 * create (PSI_OP_CONSOLE), send the master (PSI_OP_TERMINAL_SEND), then
 * make the peer stdio and the controlling terminal (PSI_OP_TERMINAL_STDIO).
 * All of it runs while init is still (the container's) root, before the
 * process's user is taken.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <termios.h>
#include <unistd.h>

#include "cleanup.h"
#include "init.h"
#include "mount_api.h"

#ifndef TIOCGPTPEER
#define TIOCGPTPEER _IO('T', 0x41)   /* Linux 4.13 */
#endif
#define DEVPTS_SUPER_MAGIC_ 0x1cd1
#define PTMX_MAJOR_ 5
#define PTMX_MINOR_ 2

/* What runc sends as the message's data; receivers (go-runc) ignore it. */
static const char MASTER_NAME[] = "/dev/ptmx";

/*
 * The container's /dev/pts/ptmx, opened with no symlink on the way (the
 * image cannot steer us to another device), and proven to be the ptmx
 * node of a devpts: ENODEV otherwise.
 */
static int open_ptmx(void)
{
    _cleanup_close_ int fd = openat2_(AT_FDCWD, "/dev/pts/ptmx", O_RDWR | O_NOCTTY,
                                      RESOLVE_NO_SYMLINKS_ | RESOLVE_NO_MAGICLINKS_);
    struct statfs sfs;
    struct stat st;

    if (fd < 0 || fstatfs(fd, &sfs) < 0 || fstat(fd, &st) < 0)
        return -1;
    if (sfs.f_type != DEVPTS_SUPER_MAGIC_ || !S_ISCHR(st.st_mode)
        || st.st_rdev != makedev(PTMX_MAJOR_, PTMX_MINOR_)) {
        errno = ENODEV;
        return -1;
    }
    return TAKE_FD(fd);
}

int psi_op_terminal(struct psi_ctx *c, const struct psi_op *op)
{
    _cleanup_close_ int master = -1, peer = -1;
    int64_t rows, cols, uid;
    int unlock = 0;
    struct stat st;

    if (psi_int(op, 0, &rows) < 0 || psi_int(op, 1, &cols) < 0 || psi_int(op, 2, &uid) < 0)
        return -1;
    if (c->pty_master >= 0) {
        errno = EBUSY;
        return -1;
    }
    master = open_ptmx();
    if (master < 0)
        return -1;
    /* unlockpt(), then the peer by fd: no lookup of /dev/pts/N by name. */
    if (ioctl(master, TIOCSPTLCK, &unlock) < 0)
        return -1;
    peer = ioctl(master, TIOCGPTPEER, O_RDWR | O_NOCTTY | O_CLOEXEC);
    if (peer < 0)
        return -1;
    if (rows > 0 && cols > 0) {
        struct winsize ws;
        memset(&ws, 0, sizeof(ws));
        ws.ws_row = (unsigned short)rows;
        ws.ws_col = (unsigned short)cols;
        if (ioctl(master, TIOCSWINSZ, &ws) < 0)
            return -1;
    }
    /* The process's user owns its terminal (the group stays devpts' gid=). */
    if (uid >= 0) {
        if (fstat(peer, &st) < 0)
            return -1;
        if (st.st_uid != (uid_t)uid && fchown(peer, (uid_t)uid, (gid_t)-1) < 0)
            return -1;
    }
    c->pty_master = TAKE_FD(master);
    c->pty_peer = TAKE_FD(peer);
    return 0;
}

/* Bind the peer on /dev/console (created as an empty file if missing). */
int psi_op_console(struct psi_ctx *c, const struct psi_op *op)
{
    _cleanup_close_ int target = -1, tree = -1;
    struct stat st;

    (void)op;
    if (c->pty_peer < 0) {
        errno = EBADF;
        return -1;
    }
    target = open("/dev/console", O_PATH | O_NOFOLLOW | O_CLOEXEC);
    if (target < 0 && errno == ENOENT) {
        /* The file we create is the target itself, by fd: never looked up
         * again (a racing rename could have put a symlink there). */
        target = open("/dev/console", O_CREAT | O_EXCL | O_WRONLY | O_NOFOLLOW | O_CLOEXEC,
                      0666);
        if (target < 0 && errno == EEXIST)
            target = open("/dev/console", O_PATH | O_NOFOLLOW | O_CLOEXEC);
    }
    if (target < 0 || fstat(target, &st) < 0)
        return -1;
    if (!S_ISREG(st.st_mode) && !S_ISCHR(st.st_mode)) {
        errno = S_ISDIR(st.st_mode) ? EISDIR : ELOOP;   /* never mount over a symlink */
        return -1;
    }
    tree = (int)syscall(SYS_open_tree, c->pty_peer, "",
                        OPEN_TREE_CLONE_ | O_CLOEXEC | AT_EMPTY_PATH);
    if (tree < 0)
        return -1;
    return attach_(tree, target);
}

/* One message: MASTER_NAME as data, the master as SCM_RIGHTS (runc's format). */
int psi_op_terminal_send(struct psi_ctx *c, const struct psi_op *op)
{
    _cleanup_close_ int master = -1, sock_fd = -1;
    int64_t sock;

    if (psi_int(op, 0, &sock) < 0)
        return -1;
    if (c->pty_master < 0) {
        errno = EBADF;
        return -1;
    }
    /* Sent or not, neither stays here: the receiver owns the master now. */
    sock_fd = (int)sock;
    master = TAKE_FD(c->pty_master);
    return psi_send_fd(sock_fd, MASTER_NAME, sizeof(MASTER_NAME) - 1, master);
}

int psi_op_terminal_stdio(struct psi_ctx *c, const struct psi_op *op)
{
    int peer = c->pty_peer, i;

    (void)op;
    if (peer < 0) {
        errno = EBADF;
        return -1;
    }
    if (peer < 3) {   /* our stdio was closed: keep the peer clear of 0-2 */
        /* Raw: musl's fcntl follows F_DUPFD_CLOEXEC with an F_SETFD, a
         * syscall an early seccomp filter would see (creds.c). */
        int moved = (int)syscall(SYS_fcntl, peer, F_DUPFD_CLOEXEC, 3);
        if (moved < 0)
            return -1;
        close(peer);
        c->pty_peer = peer = moved;
    }
    for (i = 0; i < 3; i++)
        if (dup3(peer, i, 0) < 0)
            return -1;
    close(peer);
    c->pty_peer = -1;
    /* main() made us a session leader without a terminal: the pty becomes
     * its controlling terminal (as login does). */
    return ioctl(0, TIOCSCTTY, 0);
}
