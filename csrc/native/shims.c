/*
 * Thin syscall shims.  Each returns -1 and leaves errno on failure; EINTR
 * is retried by the one Python helper in pidsafe/_sys, not here.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/sched.h>
#include <signal.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "pidsafe.h"
#include "init_protocol.h"
#include "syscall_numbers.h"

#ifndef PIDSAFE_VERSION
#error "PIDSAFE_VERSION must be defined by the build (csrc/cffi_build.py)"
#endif

/* The constants we spell out must agree with any header that has them. */
#ifdef CLONE_PIDFD
_Static_assert(CLONE_PIDFD == PIDSAFE_CLONE_PIDFD, "CLONE_PIDFD");
#endif
#ifdef CLONE_CLEAR_SIGHAND
_Static_assert(CLONE_CLEAR_SIGHAND == PIDSAFE_CLONE_CLEAR_SIGHAND, "CLONE_CLEAR_SIGHAND");
#endif
#ifdef CLONE_INTO_CGROUP
_Static_assert(CLONE_INTO_CGROUP == PIDSAFE_CLONE_INTO_CGROUP, "CLONE_INTO_CGROUP");
#endif
#ifdef P_PIDFD
_Static_assert(P_PIDFD == PIDSAFE_P_PIDFD, "P_PIDFD");
#endif
_Static_assert(CLONE_VM == PIDSAFE_CLONE_VM, "CLONE_VM");
_Static_assert(CLONE_VFORK == PIDSAFE_CLONE_VFORK, "CLONE_VFORK");
_Static_assert(CLONE_NEWUSER == PIDSAFE_CLONE_NEWUSER, "CLONE_NEWUSER");
_Static_assert(CLONE_NEWNS == PIDSAFE_CLONE_NEWNS, "CLONE_NEWNS");
_Static_assert(CLONE_NEWPID == PIDSAFE_CLONE_NEWPID, "CLONE_NEWPID");
#ifdef CLONE_NEWTIME
_Static_assert(CLONE_NEWTIME == PIDSAFE_CLONE_NEWTIME, "CLONE_NEWTIME");
#endif
_Static_assert(WEXITED == PIDSAFE_WEXITED, "WEXITED");
_Static_assert(WNOHANG == PIDSAFE_WNOHANG, "WNOHANG");
_Static_assert(__WALL == PIDSAFE_WALL, "__WALL");
_Static_assert(O_CLOEXEC == PIDSAFE_OPEN_TREE_CLOEXEC, "OPEN_TREE_CLOEXEC");
_Static_assert(AT_EMPTY_PATH == PIDSAFE_AT_EMPTY_PATH, "AT_EMPTY_PATH");
_Static_assert(sizeof(struct pidsafe_clone_args) == PIDSAFE_CLONE_ARGS_SIZE_VER2,
               "struct clone_args v2");
_Static_assert(sizeof(struct pidsafe_mount_attr) == PIDSAFE_MOUNT_ATTR_SIZE_VER0,
               "struct mount_attr v0");

const char *pidsafe_version(void)
{
    return PIDSAFE_VERSION;
}

const char *pidsafe_psi_magic(void)
{
    return PSI_MAGIC;
}

/* pidfd_open(2), Linux 5.3. */
int pidsafe_pidfd_open(int pid, unsigned int flags)
{
    return (int)syscall(SYS_pidfd_open, pid, flags);
}

/* pidfd_send_signal(2), Linux 5.1.  Signal 0 only proves the process exists. */
int pidsafe_pidfd_send_signal(int pidfd, int sig, unsigned int flags)
{
    return (int)syscall(SYS_pidfd_send_signal, pidfd, sig, NULL, flags);
}

/* pidfd_getfd(2), Linux 5.6. */
int pidsafe_pidfd_getfd(int pidfd, int targetfd, unsigned int flags)
{
    return (int)syscall(SYS_pidfd_getfd, pidfd, targetfd, flags);
}

/*
 * waitid(2) with idtype P_PIDFD, Linux 5.4.  Uses the raw syscall so that an
 * old libc cannot reject P_PIDFD.  out->pid is 0 when WNOHANG found no
 * change (the kernel leaves siginfo zeroed then).
 */
int pidsafe_waitid_pidfd(int pidfd, int options, struct pidsafe_waitinfo *out)
{
    siginfo_t info;

    memset(&info, 0, sizeof(info));
    if (syscall(SYS_waitid, PIDSAFE_P_PIDFD, pidfd, &info, options, NULL) < 0)
        return -1;
    out->pid = info.si_pid;
    out->code = info.si_code;
    out->status = info.si_status;
    return 0;
}

/*
 * The same waitid(P_PIDFD), its answer as one int: 0 when WNOHANG found no
 * change, else (si_code << 8) | si_status (si_code is CLD_EXITED, CLD_KILLED,
 * ... and never 0; si_status an exit status or a signal number, below 256).
 * For the wait and reap of every spawn: no struct to allocate and read back.
 *
 * If `record` is not NULL, a nonzero answer is also stored there before
 * this returns.  A reap (WEXITED without WNOWAIT) hands the status over in
 * the same call that takes it from the kernel: Python can run a signal
 * handler right after any call returns, and one that raises there would
 * otherwise lose a status the kernel no longer has (pidsafe/process/_wait.py
 * reaps into the Process's own record this way, with no critical section).
 */
int pidsafe_waitid_pidfd_status(int pidfd, int options, int *record)
{
    siginfo_t info;
    int status;

    memset(&info, 0, sizeof(info));
    if (syscall(SYS_waitid, PIDSAFE_P_PIDFD, pidfd, &info, options, NULL) < 0)
        return -1;
    if (info.si_pid == 0)
        return 0;
    status = (info.si_code << 8) | (info.si_status & 0xff);
    if (record != NULL)
        *record = status;
    return status;
}

/* close_range(2), Linux 5.9. */
int pidsafe_close_range(unsigned int first, unsigned int last, unsigned int flags)
{
    return (int)syscall(SYS_close_range, first, last, flags);
}

/*
 * ioctl(PIDFD_GET_INFO) asking for PIDFD_INFO_EXIT, Linux 6.15.  The kernel
 * records the exit status when the process is reaped, by whoever reaps it, so
 * a pidfd can tell the status of a child a foreign reaper stole, or of a
 * process that was never our child.  Returns 1 and stores the wait status,
 * 0 when the kernel has no exit information (yet), -1 and errno on error.
 */
struct pidsafe_pidfd_info_v0 {
    uint64_t mask;
    uint64_t cgroupid;
    uint32_t pid, tgid, ppid, ruid, rgid, euid, egid, suid, sgid, fsuid, fsgid;
    int32_t exit_code;
};
_Static_assert(sizeof(struct pidsafe_pidfd_info_v0) == 64, "PIDFD_INFO_SIZE_VER0");
#define PIDSAFE_PIDFD_GET_INFO _IOWR(0xFF, 11, struct pidsafe_pidfd_info_v0)

int pidsafe_pidfd_exit_info(int pidfd, int32_t *exit_code)
{
    struct pidsafe_pidfd_info_v0 info;

    memset(&info, 0, sizeof(info));
    info.mask = PIDSAFE_PIDFD_INFO_EXIT;
    if (ioctl(pidfd, PIDSAFE_PIDFD_GET_INFO, &info) < 0)
        return -1;
    if (!(info.mask & PIDSAFE_PIDFD_INFO_EXIT))
        return 0;
    *exit_code = info.exit_code;
    return 1;
}

/* open_tree(2), Linux 5.2. */
int pidsafe_open_tree(int dfd, const char *path, unsigned int flags)
{
    return (int)syscall(SYS_open_tree, dfd, path, flags);
}

/* move_mount(2), Linux 5.2. */
int pidsafe_move_mount(int from_dfd, const char *from_path, int to_dfd,
                       const char *to_path, unsigned int flags)
{
    return (int)syscall(SYS_move_mount, from_dfd, from_path, to_dfd, to_path, flags);
}

/* mount_setattr(2), Linux 5.12 (MOUNT_ATTR_IDMAP came with it). */
int pidsafe_mount_setattr(int dfd, const char *path, unsigned int flags,
                          struct pidsafe_mount_attr *attr, size_t size)
{
    return (int)syscall(SYS_mount_setattr, dfd, path, flags, attr, size);
}

/* openat2(2), Linux 5.6. */
int pidsafe_openat2(int dfd, const char *path, struct pidsafe_open_how *how,
                    size_t size)
{
    return (int)syscall(SYS_openat2, dfd, path, how, size);
}

/* ioctl(TIOCGPTN), pty(7): fails (ENOTTY) unless fd is a pty master. */
int pidsafe_pty_number(int fd, unsigned int *out)
{
    return ioctl(fd, TIOCGPTN, out);
}
