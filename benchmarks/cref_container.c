/*
 * The C side of benchmarks/bench_container.py: one small program, built by
 * the benchmark into benchmarks/.build/cref_container, that times container
 * cycles in a tight loop of its own (no Python, no shell between two
 * cycles) and prints one line of nanoseconds per cycle on stdout:
 *
 *   cref_container floor N FLAGS LAYER ROOTFS [CGROUP_DIR...]
 *       The C floor: N containers of /bin/true made with nothing but the
 *       syscalls the bundle asks for.  Prints "create start wait delete".
 *   cref_container cycle N TOOL ROOT BUNDLE LAYER ID_PREFIX
 *       An OCI runtime's CLI (crun, runc) driven as containerd's shim
 *       drives it: the idmapped rootfs bind, `TOOL --root ROOT create
 *       --bundle BUNDLE --pid-file ROOT/cref.pid ID`, `start ID`, wait for
 *       init's exit (a pidfd; we are the subreaper init is handed to),
 *       `delete ID`, the unmount.  Prints "create start wait delete".
 *   cref_container argv N ROOTFS|- LAYER ID_PREFIX ARGV...
 *       ARGV run N times, each waited for, "@ID" in it replaced by a fresh
 *       id; with ROOTFS, LAYER is bound there (idmapped) around each run,
 *       as for `cycle`.  Prints the total of each run.
 *
 * What the floor does per cycle, all of it timed:
 *   create: clone3(CLONE_NEWUSER|CLONE_NEWPID|CLONE_PIDFD) (a fork of this
 *     small program, not of the benchmark); uid_map and gid_map written
 *     (0 100000 65536); the rootfs: open_tree(LAYER) + mount_setattr(
 *     MOUNT_ATTR_IDMAP, the child's user namespace) + move_mount onto
 *     ROOTFS; with FLOOR_CGROUP, a directory in each CGROUP_DIR (cgroup v1
 *     hierarchies), devices.deny "a" plus the eight rules pidsafe allows,
 *     each tasks file opened, before the clone; the child writes "0" to
 *     each (it joins itself, as pidsafe's spawn child does: no global lock,
 *     where a pid written to cgroup.procs waits for an RCU grace period)
 *     and goes on:
 *     unshare(CLONE_NEWNS|CLONE_NEWIPC|CLONE_NEWUTS|CLONE_NEWNET),
 *     setresgid/setresuid(0), rslave /, the runc spec's mounts (proc; /dev
 *     tmpfs; devpts; /dev/shm tmpfs; mqueue; sysfs ro; a tmpfs at
 *     /sys/fs/cgroup, which is all pidsafe mounts there in a user
 *     namespace), pivot_root, and with FLOOR_CONFIG the rest of the
 *     config: the six default devices bound from the host, the /dev
 *     links, the masked and read-only paths, the root read-only, the
 *     hostname, lo up, RLIMIT_NOFILE, the capability sets and
 *     no_new_privs; it reports ready and waits at its gate (a pipe).
 *   start: the gate opened; returns once the exec is done (the status
 *     pipe, close-on-exec, reads EOF), as pidsafe's start() does.
 *   wait: poll on the pidfd, waitid(P_PIDFD).
 *   delete: umount2(ROOTFS), rmdir of the cgroups, fds closed.
 * What it leaves out, on purpose: state files, locks, a FIFO that outlives
 * the creator, pidfd identity checks, error undo, rlimits or hooks it was
 * not asked for.  Pidsafe's init also runs from an exec'd static binary
 * (no credential change in memory it shares with its caller: invariant 8);
 * the floor's child is a plain fork of this small process and changes its
 * credentials itself.  See bench_container.py for what the runtimes do.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/capability.h>
#include <net/if.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <spawn.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#ifndef CLONE_PIDFD
#define CLONE_PIDFD 0x00001000
#endif
#ifndef P_PIDFD
#define P_PIDFD 3
#endif
#define C_OPEN_TREE_CLONE 1
#define C_AT_RECURSIVE 0x8000
#define C_MOVE_MOUNT_F_EMPTY_PATH 0x00000004
#define C_MOUNT_ATTR_RDONLY 0x00000001
#define C_MOUNT_ATTR_IDMAP 0x00100000

#define FLOOR_CGROUP 1
#define FLOOR_CONFIG 2

/* Must match MAP in bench_container.py. */
static const char MAP[] = "0 100000 65536\n";

extern char **environ;

struct c_clone_args {
    uint64_t flags, pidfd, child_tid, parent_tid, exit_signal, stack, stack_size, tls;
};
struct c_mount_attr {
    uint64_t attr_set, attr_clr, propagation, userns_fd;
};

static int64_t now_ns(void)
{
    struct timespec t;

    clock_gettime(CLOCK_MONOTONIC, &t);
    return (int64_t)t.tv_sec * 1000000000 + t.tv_nsec;
}

static void die(const char *what, const char *arg)
{
    fprintf(stderr, "cref_container: %s%s%s: %s\n", what, arg ? " " : "", arg ? arg : "",
            strerror(errno));
    exit(1);
}

static pid_t clone3_pidfd(uint64_t flags, int *pidfd)
{
    struct c_clone_args a = {
        .flags = flags | CLONE_PIDFD, .pidfd = (uint64_t)(uintptr_t)pidfd,
        .exit_signal = SIGCHLD,
    };

    return (pid_t)syscall(SYS_clone3, &a, sizeof(a));
}

static void write_file(const char *path, const char *text)
{
    int fd = open(path, O_WRONLY | O_CLOEXEC);

    if (fd < 0 || write(fd, text, strlen(text)) != (ssize_t)strlen(text))
        die("write", path);
    close(fd);
}

static void write_maps(pid_t pid)
{
    char path[64];

    snprintf(path, sizeof(path), "/proc/%d/uid_map", (int)pid);
    write_file(path, MAP);
    snprintf(path, sizeof(path), "/proc/%d/gid_map", (int)pid);
    write_file(path, MAP);
}

static void wait_pidfd(int pidfd, int expect_zero)
{
    siginfo_t info;

    memset(&info, 0, sizeof(info));
    while (waitid((idtype_t)P_PIDFD, (id_t)pidfd, &info, WEXITED) < 0)
        if (errno != EINTR)
            die("waitid", NULL);
    if (expect_zero && (info.si_code != CLD_EXITED || info.si_status != 0)) {
        fprintf(stderr, "cref_container: container exited with code %d status %d\n",
                info.si_code, info.si_status);
        exit(1);
    }
}

/* A user namespace with MAP, as an fd (the shim's GetUsernsFD): a child
 * born in it, its maps written, its ns file opened, the child killed. */
static int make_userns(void)
{
    char path[64];
    int pidfd = -1, fd;
    pid_t pid = clone3_pidfd(CLONE_NEWUSER, &pidfd);

    if (pid < 0)
        die("clone3 userns helper", NULL);
    if (pid == 0) {
        for (;;)
            pause();
    }
    snprintf(path, sizeof(path), "/proc/%d/ns/user", (int)pid);
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        die("open", path);
    write_maps(pid);
    syscall(SYS_pidfd_send_signal, pidfd, SIGKILL, NULL, 0);
    wait_pidfd(pidfd, 0);
    close(pidfd);
    return fd;
}

/* open_tree + mount_setattr(MOUNT_ATTR_IDMAP) + move_mount, recursive, as
 * pidsafe.Mount("bind", LAYER, "", ["rbind", "uidmap=...", "gidmap=..."]). */
static void idmapped_bind(const char *src, const char *dst, int userns)
{
    struct c_mount_attr attr = {
        .attr_set = C_MOUNT_ATTR_IDMAP, .propagation = MS_PRIVATE,
        .userns_fd = (uint64_t)userns,
    };
    int tree = (int)syscall(SYS_open_tree, AT_FDCWD, src,
                            C_OPEN_TREE_CLONE | O_CLOEXEC | C_AT_RECURSIVE);

    if (tree < 0)
        die("open_tree", src);
    if (syscall(SYS_mount_setattr, tree, "", AT_EMPTY_PATH | C_AT_RECURSIVE, &attr,
                sizeof(attr)) < 0)
        die("mount_setattr idmap", src);
    if (syscall(SYS_move_mount, tree, "", AT_FDCWD, dst, C_MOVE_MOUNT_F_EMPTY_PATH) < 0)
        die("move_mount", dst);
    close(tree);
}

static void unmount(const char *path)
{
    for (int i = 0; umount2(path, 0) < 0; i++) {
        if (errno != EBUSY || i == 2000)
            die("umount2", path);
        usleep(1000);
    }
}

/* ---- the floor's container ------------------------------------------------ */

enum {
    STEP_READY, STEP_GO, STEP_JOIN, STEP_UNSHARE, STEP_CREDS, STEP_SLAVE, STEP_CHDIR, STEP_PROC,
    STEP_DEV, STEP_DEVPTS, STEP_SHM, STEP_MQUEUE, STEP_SYSFS, STEP_CGROUPFS, STEP_DEVICES,
    STEP_LINKS, STEP_PIVOT, STEP_MASK, STEP_READONLY, STEP_ROOT_RO, STEP_HOSTNAME, STEP_LO,
    STEP_RLIMIT, STEP_CAPS, STEP_NNP, STEP_GATE, STEP_EXEC,
};
static const char *const STEP_NAMES[] = {
    "ready", "go", "join cgroups", "unshare", "setresuid", "rslave /", "bind rootfs, chdir", "mount proc",
    "mount /dev", "mount devpts", "mount /dev/shm", "mount mqueue", "mount sysfs",
    "mount /sys/fs/cgroup", "bind devices", "dev links", "pivot_root", "masked paths",
    "readonly paths", "root read-only", "sethostname", "lo up", "setrlimit", "capabilities",
    "no_new_privs", "gate", "execve /bin/true",
};

struct floor_child {
    int go, status, gate, flags, last_cap;
    const int *tasks;   /* cgroup v1 tasks files, opened by the parent */
    int ntasks;
};

static void child_fail(const struct floor_child *c, int step)
{
    int rec[2] = {step, errno};

    if (write(c->status, rec, sizeof(rec)) < 0)
        _exit(126);
    _exit(127);
}

#define CHECK(c, step, expr) do { if ((expr) < 0) child_fail((c), (step)); } while (0)

static int make_dir(const char *path)
{
    return mkdir(path, 0755) < 0 && errno != EEXIST ? -1 : 0;
}

static int set_rdonly(const char *path, unsigned int at)
{
    struct c_mount_attr attr = {.attr_set = C_MOUNT_ATTR_RDONLY};

    return (int)syscall(SYS_mount_setattr, AT_FDCWD, path, at, &attr, sizeof(attr));
}

static int bind_devices(void)
{
    static const char *const devs[] = {"null", "zero", "full", "random", "urandom", "tty"};
    char host[32], target[32];

    for (size_t i = 0; i < sizeof(devs) / sizeof(devs[0]); i++) {
        snprintf(host, sizeof(host), "/dev/%s", devs[i]);
        snprintf(target, sizeof(target), "dev/%s", devs[i]);
        int fd = open(target, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
        if (fd < 0)
            return -1;
        close(fd);
        if (mount(host, target, NULL, MS_BIND, NULL) < 0)
            return -1;
    }
    return 0;
}

static int dev_links(void)
{
    return symlink("/proc/self/fd", "dev/fd") | symlink("/proc/self/fd/0", "dev/stdin")
           | symlink("/proc/self/fd/1", "dev/stdout") | symlink("/proc/self/fd/2", "dev/stderr")
           | symlink("pts/ptmx", "dev/ptmx");
}

static int mask_paths(void)
{
    static const char *const masked[] = {
        "/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys", "/proc/latency_stats",
        "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/sys/firmware",
        "/proc/scsi",
    };
    struct stat st;

    for (size_t i = 0; i < sizeof(masked) / sizeof(masked[0]); i++) {
        if (stat(masked[i], &st) < 0) {
            if (errno == ENOENT)
                continue;
            return -1;
        }
        if (S_ISDIR(st.st_mode)) {
            if (mount("tmpfs", masked[i], "tmpfs", MS_RDONLY, "size=0") < 0)
                return -1;
        } else if (mount("/dev/null", masked[i], NULL, MS_BIND, NULL) < 0) {
            return -1;
        }
    }
    return 0;
}

static int readonly_paths(void)
{
    static const char *const ro[] = {
        "/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger",
    };

    for (size_t i = 0; i < sizeof(ro) / sizeof(ro[0]); i++) {
        if (mount(ro[i], ro[i], NULL, MS_BIND | MS_REC, NULL) < 0) {
            if (errno == ENOENT)
                continue;
            return -1;
        }
        if (set_rdonly(ro[i], C_AT_RECURSIVE) < 0)
            return -1;
    }
    return 0;
}

static int lo_up(void)
{
    struct ifreq ifr;
    int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0), rc = -1;

    if (s < 0)
        return -1;
    memset(&ifr, 0, sizeof(ifr));
    strcpy(ifr.ifr_name, "lo");
    if (ioctl(s, SIOCGIFFLAGS, &ifr) == 0) {
        ifr.ifr_flags |= IFF_UP;
        rc = ioctl(s, SIOCSIFFLAGS, &ifr);
    }
    close(s);
    return rc;
}

/* runc spec's sets: CAP_AUDIT_WRITE, CAP_KILL, CAP_NET_BIND_SERVICE in every set. */
static int capabilities(int last_cap)
{
    const uint64_t keep = (1ULL << CAP_AUDIT_WRITE) | (1ULL << CAP_KILL)
                          | (1ULL << CAP_NET_BIND_SERVICE);
    struct __user_cap_header_struct h = {.version = _LINUX_CAPABILITY_VERSION_3};
    struct __user_cap_data_struct d[2];

    for (int cap = 0; cap <= last_cap; cap++)
        if (!(keep & (1ULL << cap)) && prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) < 0)
            return -1;
    for (int i = 0; i < 2; i++)
        d[i].effective = d[i].permitted = d[i].inheritable = (uint32_t)(keep >> (32 * i));
    if (syscall(SYS_capset, &h, d) < 0)
        return -1;
    for (int cap = 0; cap < 64; cap++)
        if ((keep & (1ULL << cap))
            && prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, cap, 0, 0) < 0)
            return -1;
    return 0;
}

static void floor_child(const struct floor_child *c, const char *rootfs)
{
    static char *const argv[] = {"/bin/true", NULL};
    static char *const envp[] = {
        "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "TERM=xterm", NULL,
    };
    int extras = c->flags & FLOOR_CONFIG, ready[2] = {STEP_READY, 0};
    char b;

    if (read(c->go, &b, 1) != 1)
        child_fail(c, STEP_GO);
    /* Into each hierarchy by writing "0" to its tasks file: the kernel moves
     * one thread (us) without its global threadgroup lock, as pidsafe's
     * spawn child does. */
    for (int i = 0; i < c->ntasks; i++)
        CHECK(c, STEP_JOIN, write(c->tasks[i], "0", 1) == 1 ? 0 : -1);
    CHECK(c, STEP_UNSHARE, unshare(CLONE_NEWNS | CLONE_NEWIPC | CLONE_NEWUTS | CLONE_NEWNET));
    CHECK(c, STEP_CREDS, setresgid(0, 0, 0));
    CHECK(c, STEP_CREDS, setresuid(0, 0, 0));
    CHECK(c, STEP_SLAVE, mount(NULL, "/", NULL, MS_REC | MS_SLAVE, NULL));
    /* The rootfs copied into our mount namespace is locked (it came from a
     * more privileged one), and pivot_root refuses a locked new root: bind
     * it onto itself, a mount of our own. */
    CHECK(c, STEP_CHDIR, mount(rootfs, rootfs, NULL, MS_BIND | MS_REC, NULL));
    CHECK(c, STEP_CHDIR, chdir(rootfs));
    CHECK(c, STEP_PROC, mount("proc", "proc", "proc", 0, NULL));
    CHECK(c, STEP_DEV, mount("tmpfs", "dev", "tmpfs", MS_NOSUID | MS_STRICTATIME,
                             "mode=755,size=65536k"));
    CHECK(c, STEP_DEVPTS, make_dir("dev/pts"));
    CHECK(c, STEP_DEVPTS, mount("devpts", "dev/pts", "devpts", MS_NOSUID | MS_NOEXEC,
                                "newinstance,ptmxmode=0666,mode=0620,gid=5"));
    CHECK(c, STEP_SHM, make_dir("dev/shm"));
    CHECK(c, STEP_SHM, mount("shm", "dev/shm", "tmpfs", MS_NOSUID | MS_NOEXEC | MS_NODEV,
                             "mode=1777,size=65536k"));
    CHECK(c, STEP_MQUEUE, make_dir("dev/mqueue"));
    CHECK(c, STEP_MQUEUE, mount("mqueue", "dev/mqueue", "mqueue",
                                MS_NOSUID | MS_NOEXEC | MS_NODEV, NULL));
    CHECK(c, STEP_SYSFS, mount("sysfs", "sys", "sysfs",
                               MS_NOSUID | MS_NOEXEC | MS_NODEV | MS_RDONLY, NULL));
    CHECK(c, STEP_CGROUPFS, mount("tmpfs", "sys/fs/cgroup", "tmpfs",
                                  MS_NOSUID | MS_NOEXEC | MS_NODEV | MS_RDONLY, "mode=755"));
    if (extras) {
        CHECK(c, STEP_DEVICES, bind_devices());
        CHECK(c, STEP_LINKS, dev_links());
    }
    CHECK(c, STEP_PIVOT, syscall(SYS_pivot_root, ".", "."));
    CHECK(c, STEP_PIVOT, umount2(".", MNT_DETACH));
    CHECK(c, STEP_PIVOT, chdir("/"));
    if (extras) {
        CHECK(c, STEP_MASK, mask_paths());
        CHECK(c, STEP_READONLY, readonly_paths());
        CHECK(c, STEP_ROOT_RO, set_rdonly("/", 0));
        CHECK(c, STEP_HOSTNAME, sethostname("runc", 4));
        CHECK(c, STEP_LO, lo_up());
        struct rlimit nofile = {1024, 1024};
        CHECK(c, STEP_RLIMIT, setrlimit(RLIMIT_NOFILE, &nofile));
        CHECK(c, STEP_CAPS, capabilities(c->last_cap));
        CHECK(c, STEP_NNP, prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0));
    }
    if (write(c->status, ready, sizeof(ready)) != sizeof(ready) || read(c->gate, &b, 1) != 1)
        child_fail(c, STEP_GATE);
    execve(argv[0], argv, envp);
    child_fail(c, STEP_EXEC);
}

static void check_status(int fd, int expect_eof)
{
    int rec[2];
    ssize_t n = read(fd, rec, sizeof(rec));

    if (n == 0 && expect_eof)
        return;
    if (n == (ssize_t)sizeof(rec) && rec[0] == STEP_READY && !expect_eof)
        return;
    if (n == (ssize_t)sizeof(rec)) {
        fprintf(stderr, "cref_container: floor child: %s: %s\n",
                rec[0] >= 0 && rec[0] <= STEP_EXEC ? STEP_NAMES[rec[0]] : "?", strerror(rec[1]));
    } else {
        fprintf(stderr, "cref_container: floor child: status read %zd\n", n);
    }
    exit(1);
}

/* The cgroup in each hierarchy, its device rules, and its tasks file open in
 * tasks[] for the child to join through (before it is cloned: it is a fork). */
static void cgroup_setup(char **dirs, int ndirs, const char *name, int *tasks)
{
    static const char *const allow[] = {
        "c 1:3 rwm", "c 1:5 rwm", "c 1:7 rwm", "c 1:8 rwm", "c 1:9 rwm", "c 5:0 rwm",
        "c 136:* rwm", "c 5:2 rwm",
    };
    char path[512];

    for (int i = 0; i < ndirs; i++) {
        snprintf(path, sizeof(path), "%s/%s", dirs[i], name);
        if (mkdir(path, 0755) < 0)
            die("mkdir", path);
        if (strstr(dirs[i], "/devices")) {
            snprintf(path, sizeof(path), "%s/%s/devices.deny", dirs[i], name);
            write_file(path, "a");
            snprintf(path, sizeof(path), "%s/%s/devices.allow", dirs[i], name);
            for (size_t k = 0; k < sizeof(allow) / sizeof(allow[0]); k++)
                write_file(path, allow[k]);
        }
        snprintf(path, sizeof(path), "%s/%s/tasks", dirs[i], name);
        if ((tasks[i] = open(path, O_WRONLY | O_CLOEXEC)) < 0)
            die("open", path);
    }
}

static void cgroup_remove(char **dirs, int ndirs, const char *name)
{
    char path[512];

    for (int i = 0; i < ndirs; i++) {
        snprintf(path, sizeof(path), "%s/%s", dirs[i], name);
        for (int k = 0; rmdir(path) < 0; k++) {
            if (errno != EBUSY || k == 2000)
                die("rmdir", path);
            usleep(1000);
        }
    }
}

static int last_cap(void)
{
    FILE *f = fopen("/proc/sys/kernel/cap_last_cap", "re");
    int n = 40;

    if (f) {
        if (fscanf(f, "%d", &n) != 1)
            n = 40;
        fclose(f);
    }
    return n;
}

static void run_floor(int n, int flags, const char *layer, const char *rootfs, char **cgdirs,
                      int ncg)
{
    int cap = last_cap();

    for (int i = 0; i < n; i++) {
        int go[2], status[2], gate[2], pidfd = -1, tasks[32], ntasks = 0;
        char name[64];

        snprintf(name, sizeof(name), "cref-%d-%d", (int)getpid(), i);
        if (pipe2(go, O_CLOEXEC) < 0 || pipe2(status, O_CLOEXEC) < 0 || pipe2(gate, O_CLOEXEC) < 0)
            die("pipe2", NULL);
        int64_t t0 = now_ns();
        if (flags & FLOOR_CGROUP) {
            if (ncg > (int)(sizeof(tasks) / sizeof(tasks[0])))
                die("too many cgroup directories", NULL);
            cgroup_setup(cgdirs, ncg, name, tasks);
            ntasks = ncg;
        }
        pid_t pid = clone3_pidfd(CLONE_NEWUSER | CLONE_NEWPID, &pidfd);
        if (pid < 0)
            die("clone3 floor container", NULL);
        if (pid == 0) {
            struct floor_child c = {go[0], status[1], gate[0], flags, cap, tasks, ntasks};
            floor_child(&c, rootfs);
        }
        for (int k = 0; k < ntasks; k++)
            close(tasks[k]);
        close(go[0]);
        close(status[1]);
        close(gate[0]);
        write_maps(pid);
        char path[64];
        snprintf(path, sizeof(path), "/proc/%d/ns/user", (int)pid);
        int userns = open(path, O_RDONLY | O_CLOEXEC);
        if (userns < 0)
            die("open", path);
        idmapped_bind(layer, rootfs, userns);
        close(userns);
        if (write(go[1], "g", 1) != 1)
            die("write go", NULL);
        check_status(status[0], 0);
        int64_t t1 = now_ns();
        if (write(gate[1], "s", 1) != 1)
            die("write gate", NULL);
        check_status(status[0], 1);
        int64_t t2 = now_ns();
        struct pollfd p = {pidfd, POLLIN, 0};
        while (poll(&p, 1, -1) < 0)
            if (errno != EINTR)
                die("poll", NULL);
        wait_pidfd(pidfd, 1);
        int64_t t3 = now_ns();
        unmount(rootfs);
        if (flags & FLOOR_CGROUP)
            cgroup_remove(cgdirs, ncg, name);
        close(pidfd);
        close(go[1]);
        close(status[0]);
        close(gate[1]);
        int64_t t4 = now_ns();
        printf("%lld %lld %lld %lld\n", (long long)(t1 - t0), (long long)(t2 - t1),
               (long long)(t3 - t2), (long long)(t4 - t3));
    }
}

/* ---- external tools ------------------------------------------------------- */

/* Run argv with stdin and stdout on /dev/null (stderr: ours); its exit status. */
static int run(char **argv)
{
    posix_spawn_file_actions_t fa;
    pid_t pid;
    int status;

    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
    errno = posix_spawnp(&pid, argv[0], &fa, NULL, argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    if (errno != 0)
        die("posix_spawn", argv[0]);
    while (waitpid(pid, &status, 0) < 0)
        if (errno != EINTR)
            die("waitpid", argv[0]);
    return status;
}

static void must_run(char **argv)
{
    int status = run(argv);

    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        fprintf(stderr, "cref_container: failed (status 0x%x):", status);
        for (char **a = argv; *a; a++)
            fprintf(stderr, " %s", *a);
        fputc('\n', stderr);
        exit(1);
    }
}

/* Orphans handed to us (we are a subreaper): containers' inits, runtimes' helpers. */
static void reap_strays(void)
{
    while (waitpid(-1, NULL, WNOHANG) > 0)
        ;
}

static void run_cycle(int n, const char *tool, const char *root, const char *bundle,
                      const char *layer, const char *prefix)
{
    char rootfs[4096], pidfile[4096], id[128];

    snprintf(rootfs, sizeof(rootfs), "%s/rootfs", bundle);
    snprintf(pidfile, sizeof(pidfile), "%s/cref.pid", root);
    char *create[] = {(char *)tool, "--root", (char *)root, "create", "--bundle", (char *)bundle,
                      "--pid-file", pidfile, id, NULL};
    char *start[] = {(char *)tool, "--root", (char *)root, "start", id, NULL};
    char *delete[] = {(char *)tool, "--root", (char *)root, "delete", id, NULL};

    for (int i = 0; i < n; i++) {
        snprintf(id, sizeof(id), "%s-%d", prefix, i);
        int64_t t0 = now_ns();
        int userns = make_userns();
        idmapped_bind(layer, rootfs, userns);
        close(userns);
        must_run(create);
        int64_t t1 = now_ns();
        FILE *f = fopen(pidfile, "re");
        int pid = 0;
        if (!f || fscanf(f, "%d", &pid) != 1)
            die("read", pidfile);
        fclose(f);
        int pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
        if (pidfd < 0)
            die("pidfd_open", NULL);
        must_run(start);
        int64_t t2 = now_ns();
        struct pollfd p = {pidfd, POLLIN, 0};
        while (poll(&p, 1, -1) < 0)
            if (errno != EINTR)
                die("poll", NULL);
        siginfo_t info;
        if (waitid((idtype_t)P_PIDFD, (id_t)pidfd, &info, WEXITED) < 0 && errno != ECHILD)
            die("waitid", NULL);
        int64_t t3 = now_ns();
        close(pidfd);
        must_run(delete);
        unmount(rootfs);
        int64_t t4 = now_ns();
        reap_strays();
        printf("%lld %lld %lld %lld\n", (long long)(t1 - t0), (long long)(t2 - t1),
               (long long)(t3 - t2), (long long)(t4 - t3));
    }
}

static void run_argv(int n, const char *rootfs, const char *layer, const char *prefix,
                     char **argv)
{
    static char id[128];   /* static: argv[at] points here after we return */
    int argc = 0, at = -1;

    while (argv[argc]) {
        if (strcmp(argv[argc], "@ID") == 0)
            at = argc;
        argc++;
    }
    if (at >= 0)
        argv[at] = id;
    for (int i = 0; i < n; i++) {
        snprintf(id, sizeof(id), "%s-%d", prefix, i);
        int64_t t0 = now_ns();
        if (rootfs) {
            int userns = make_userns();
            idmapped_bind(layer, rootfs, userns);
            close(userns);
        }
        must_run(argv);
        if (rootfs)
            unmount(rootfs);
        int64_t t1 = now_ns();
        reap_strays();
        printf("%lld\n", (long long)(t1 - t0));
    }
}

int main(int argc, char **argv)
{
    if (prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) < 0)
        die("PR_SET_CHILD_SUBREAPER", NULL);
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (argc >= 6 && strcmp(argv[1], "floor") == 0) {
        run_floor(atoi(argv[2]), atoi(argv[3]), argv[4], argv[5], argv + 6, argc - 6);
    } else if (argc == 8 && strcmp(argv[1], "cycle") == 0) {
        run_cycle(atoi(argv[2]), argv[3], argv[4], argv[5], argv[6], argv[7]);
    } else if (argc >= 7 && strcmp(argv[1], "argv") == 0) {
        run_argv(atoi(argv[2]), strcmp(argv[3], "-") ? argv[3] : NULL, argv[4], argv[5],
                 argv + 6);
    } else {
        fprintf(stderr, "usage: cref_container floor N FLAGS LAYER ROOTFS [CGROUP_DIR...]\n"
                        "       cref_container cycle N TOOL ROOT BUNDLE LAYER ID_PREFIX\n"
                        "       cref_container argv N ROOTFS|- LAYER ID_PREFIX ARGV...\n");
        return 2;
    }
    return 0;
}
