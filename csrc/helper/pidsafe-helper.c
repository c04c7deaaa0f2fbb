/*
 * pidsafe-helper: changes credentials in memory of its own, then execs the
 * program (invariant 8; the protocol is in csrc/shared/helper_protocol.h).
 *
 * The spawn child (csrc/native/child.c) shares the caller's memory, so it must not
 * setns into a user namespace, set*id or setgroups: the kernel would clear
 * "dumpable" on the caller's memory, and an unprivileged uid would share
 * root's memory until exec.  It execs this static program instead, which
 * has an address space of its own: here, anything goes.  Static, so that it
 * needs no loader or library from a filesystem the new credentials might not
 * be allowed to read, and so that the exec is cheap.
 *
 * Each step is a stage of csrc/native/pidsafe.h; a failure is written to the error
 * pipe as the same {stage, errno} record the spawn child writes, and the
 * helper exits with 127.  EOF on the error pipe with no record = the program
 * runs.  No Python, no allocation.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <linux/capability.h>
#include <sched.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "child_error.h"
#include "helper_protocol.h"

extern char **environ;

static struct pidsafe_helper_go go;

static void report_and_exit(int stage, int err)
{
    struct pidsafe_child_error rec;
    ssize_t n;

    rec.stage = stage;
    rec.err = err;
    do {
        n = write(go.errpipe, &rec, sizeof(rec));
    } while (n < 0 && errno == EINTR);
    _exit(127);
}

/* Fail here if the test knob names this stage. */
static void fault(int stage)
{
    if (go.fail_stage == stage)
        report_and_exit(stage, go.fail_errno);
}

/* Read exactly n bytes; 0 at EOF before that (the parent is gone). */
static int read_all(int fd, void *buf, size_t n)
{
    size_t got = 0;

    while (got < n) {
        ssize_t r = read(fd, (char *)buf + got, n - got);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            return 0;
        got += (size_t)r;
    }
    return 1;
}

/*
 * uid and gid 0 of the user namespace we are in, as nsenter --user and
 * unshare --map-root-user do, where the maps give us one: EINVAL means "0 is
 * not mapped here", and then we keep the (overflow) ids we have.
 * setgroups(0) drops the host's supplementary groups where the namespace
 * allows it (EPERM: /proc/PID/setgroups is "deny").
 */
static int become_root(void)
{
    if (setgroups(0, NULL) < 0 && errno != EPERM)
        return -1;
    if (setresgid(0, 0, 0) < 0 && errno != EINVAL)
        return -1;
    if (setresuid(0, 0, 0) < 0 && errno != EINVAL)
        return -1;
    return 0;
}

/*
 * Undo what the spawn child did to carry its capabilities across the exec
 * into us (keep_caps_across_exec in csrc/native/child.c): no ambient and no
 * inheritable capabilities reach the program.  As root of the namespace it
 * gets its full set at exec all the same (capabilities(7)).
 */
static int drop_carried_caps(void)
{
    struct __user_cap_header_struct hdr;
    struct __user_cap_data_struct data[2];

    if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) < 0)
        return -1;
    memset(&hdr, 0, sizeof(hdr));
    hdr.version = _LINUX_CAPABILITY_VERSION_3;
    if (syscall(SYS_capget, &hdr, data) < 0)
        return -1;
    data[0].inheritable = 0;
    data[1].inheritable = 0;
    return (int)syscall(SYS_capset, &hdr, data);
}

int main(int argc, char **argv)
{
    const unsigned char ready = PIDSAFE_HELPER_READY;
    char **paths, **prog_argv;
    int ctl, i, saved_errno = 0;
    char peek;

    if (argc < 4)
        _exit(127);
    ctl = atoi(argv[1]);
    /* Ours only: neither end may reach the program. */
    fcntl(ctl, F_SETFD, FD_CLOEXEC);

    if (write(ctl, &ready, 1) != 1)
        _exit(127);  /* the parent is gone */
    /*
     * Wait for the go.  EOF first means the parent died (its end of ctl is
     * close-on-exec and nobody else holds it): leave, whatever namespace we
     * are in, so no child of a dead parent sleeps for ever.  This works where
     * a getppid() check cannot (pid 1 of a new pid namespace sees ppid 0).
     */
    if (!read_all(ctl, &go, sizeof(go)))
        _exit(127);
    if (go.magic != PIDSAFE_HELPER_MAGIC || go.size != sizeof(go)
        || go.n_exec_paths < 1 || go.n_exec_paths + 3 >= argc) {
        if (go.magic == PIDSAFE_HELPER_MAGIC && go.errpipe >= 0)
            report_and_exit(PIDSAFE_STAGE_HELPER_GO, EINVAL);
        _exit(127);
    }
    fcntl(go.errpipe, F_SETFD, FD_CLOEXEC);
    fault(PIDSAFE_STAGE_HELPER_GO);

    /* The user namespace first: what follows runs with its credentials. */
    fault(PIDSAFE_STAGE_USERNS);
    if (go.flags & PIDSAFE_HELPER_JOIN_USERNS) {
        if (setns(go.userns_fd, CLONE_NEWUSER) < 0)
            report_and_exit(PIDSAFE_STAGE_USERNS, errno);
        close(go.userns_fd);
    }
    /* Namespaces unshared after joining are owned by the joined namespace. */
    fault(PIDSAFE_STAGE_UNSHARE);
    if (go.unshare_flags && unshare((int)go.unshare_flags) < 0)
        report_and_exit(PIDSAFE_STAGE_UNSHARE, errno);
    fault(PIDSAFE_STAGE_SETID);
    if ((go.flags & PIDSAFE_HELPER_BECOME_ROOT) && become_root() < 0)
        report_and_exit(PIDSAFE_STAGE_SETID, errno);
    if ((go.flags & PIDSAFE_HELPER_DROP_CAPS) && drop_carried_caps() < 0)
        report_and_exit(PIDSAFE_STAGE_SETID, errno);

    /* After the credential change: commit_creds() clears the signal. */
    fault(PIDSAFE_STAGE_PDEATHSIG);
    if (go.pdeathsig && prctl(PR_SET_PDEATHSIG, (unsigned long)go.pdeathsig, 0, 0, 0) < 0)
        report_and_exit(PIDSAFE_STAGE_PDEATHSIG, errno);
    /*
     * The parent may have died before the prctl(): then no signal comes.  It
     * holds its end of ctl until we exec, so EOF there means it is gone.
     */
    fault(PIDSAFE_STAGE_PARENT_GONE);
    if (go.pdeathsig && recv(ctl, &peek, 1, MSG_PEEK | MSG_DONTWAIT) == 0)
        report_and_exit(PIDSAFE_STAGE_PARENT_GONE, ESRCH);

    fault(PIDSAFE_STAGE_CHDIR);
    if ((go.flags & PIDSAFE_HELPER_CHDIR) && chdir(argv[2]) < 0)
        report_and_exit(PIDSAFE_STAGE_CHDIR, errno);

    /* As the spawn child does: keep the first error that is not "not here". */
    fault(PIDSAFE_STAGE_EXEC);
    paths = argv + 3;
    prog_argv = argv + 3 + go.n_exec_paths;
    for (i = 0; i < go.n_exec_paths; i++) {
        execve(paths[i], prog_argv, environ);
        if (errno != ENOENT && errno != ENOTDIR && saved_errno == 0)
            saved_errno = errno;
    }
    report_and_exit(PIDSAFE_STAGE_EXEC, saved_errno ? saved_errno : errno);
    return 127;
}
