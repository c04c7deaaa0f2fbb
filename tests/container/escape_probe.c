/*
 * escape_probe: the attacker of tests/container/test_escapes.py.
 *
 * A static program, built once per test session and run either on the host
 * (the racers, standing for another container that shares a rootfs) or
 * inside a container (the probes).  Every mode prints one line per finding
 * on stdout, "KIND detail", and the test decides what is an escape; the
 * probes never modify what they reach (a write test rewrites a byte with
 * its own value, on a copy of the binary the test owns).
 *
 *   swap DIR NAME LINK TARGET
 *       Race: exchange DIR/NAME with DIR/LINK (a symlink to TARGET) with
 *       renameat2(RENAME_EXCHANGE) until killed, re-making the symlink
 *       whenever the victim removed it.
 *   scan MARKER HOST_ROOT_DEV:INO OURS_DEV:INO[,DEV:INO...]
 *       Race, inside: until stdin reaches EOF, look at every other process
 *       in /proc and try to reach the host through it: /proc/PID/root and
 *       /proc/PID/cwd (can MARKER, a host path absent from the container,
 *       be opened beneath them? is the directory the host's root?),
 *       /proc/PID/exe (one of the host binaries OURS names: the installed
 *       pidsafe-init, pidsafe-helper, the runtime's python?), every
 *       /proc/PID/fd/N (any of those), and whether ptrace would attach (asked with
 *       process_vm_readv, never attaching).  Prints "HOST what" for each way
 *       in, "PTRACE pid exe" for each process ptrace would let it at,
 *       "OURS pid exe" for each process of pidsafe's
 *       it saw before its exec, and "SCANNED rounds pids" at the end.
 *   exe PID INIT_DEV:INO
 *       Open /proc/PID/exe (O_PATH): "DENIED exe errno" if it cannot;
 *       say whether it is the installed pidsafe-init ("HOST exe"), then
 *       (unless PID is 1) kill PID and wait until it no longer runs, and
 *       try to write the binary through the fd: "WRITABLE exe" if a byte
 *       could be written back (its own value), "SEALED errno" otherwise.
 *   idents
 *       Race, inside: until stdin reaches EOF, watch every pid the
 *       container's pid namespace hands out (its ns_last_pid, read in a
 *       tight loop) and read each new process's /proc/PID/status the first
 *       moment it can (a new pid is allocated before its process shows in
 *       /proc): what the process holds when the container first sees it.
 *       For each that is still pidsafe-init then (argv[0] ends in
 *       "pidsafe-init": ours, before its execve) print "IDENT pid
 *       uid=R/E/S/F gid=R/E/S/F capeff=HEX capprm=HEX"; "WATCHED n" at the
 *       end.  A process of ours forked before it took the exec's identity
 *       shows up as root with every capability.
 *   stopper
 *       kill(-1, SIGSTOP) in a loop until stdin reaches EOF (every process
 *       it may signal: an exec's helper, if it could see one).
 *   forge FD...
 *       Try to write a forged ERROR record to /proc/1/fd/FD (init's status
 *       pipe): "FORGED fd" if the write went through, "DENIED fd errno".
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#ifndef RENAME_EXCHANGE
#define RENAME_EXCHANGE (1 << 1)
#endif

struct ident {
    unsigned long long dev, ino;
};

static int parse_ident(const char *s, struct ident *out)
{
    return sscanf(s, "%llu:%llu", &out->dev, &out->ino) == 2 ? 0 : -1;
}

static int is(const struct stat *st, const struct ident *id)
{
    return (unsigned long long)st->st_dev == id->dev && (unsigned long long)st->st_ino == id->ino;
}

/* The host binaries a scan looks for: "DEV:INO[,DEV:INO...]". */
#define MAX_OURS 8
struct idents {
    int n;
    struct ident id[MAX_OURS];
};

static int parse_idents(const char *s, struct idents *out)
{
    out->n = 0;
    while (out->n < MAX_OURS) {
        if (parse_ident(s, &out->id[out->n++]) < 0)
            return -1;
        s = strchr(s, ',');
        if (s == NULL)
            return 0;
        s++;
    }
    return -1;
}

static int is_any(const struct stat *st, const struct idents *ids)
{
    int i;

    for (i = 0; i < ids->n; i++)
        if (is(st, &ids->id[i]))
            return 1;
    return 0;
}

static int swap_mode(const char *dir, const char *name, const char *link, const char *target)
{
    int d = open(dir, O_PATH | O_DIRECTORY | O_CLOEXEC);
    char buf[8];
    unsigned long n = 0;

    if (d < 0) {
        perror(dir);
        return 2;
    }
    for (;;) {
        if (syscall(SYS_renameat2, d, name, d, link, RENAME_EXCHANGE) < 0) {
            symlinkat(target, d, link);   /* the victim removed whichever was "name" */
            continue;
        }
        /* Both are there, but the symlink may have been consumed (unlinked
         * while it had the victim's name, and the victim made a new node):
         * keep one symlink in play. */
        if ((++n & 63) == 0 && readlinkat(d, name, buf, sizeof(buf)) < 0
            && readlinkat(d, link, buf, sizeof(buf)) < 0) {
            unlinkat(d, link, 0);
            symlinkat(target, d, link);
        }
    }
}

static int stdin_closed(void)
{
    struct pollfd p = {0, POLLIN, 0};
    char c;

    if (poll(&p, 1, 0) != 1)
        return 0;
    return read(0, &c, 1) <= 0;
}

/* A directory fd leads to the host if MARKER opens beneath it, or it is the host's root. */
static void check_dir(int fd, const char *marker, const struct ident *host_root,
                      const char *what, int pid)
{
    struct stat st;
    int m;

    if (fstat(fd, &st) == 0 && is(&st, host_root))
        printf("HOST %s of %d is the host's root\n", what, pid);
    m = openat(fd, marker + (marker[0] == '/'), O_PATH | O_CLOEXEC);
    if (m >= 0) {
        printf("HOST %s of %d reaches %s\n", what, pid, marker);
        close(m);
    }
}

/*
 * Whether ptrace would let us at PID (PTRACE_MODE_ATTACH, as for
 * PTRACE_ATTACH), asked without attaching: an attach would keep the
 * tracee's exit from its parent until we waited for it.  process_vm_readv
 * of an unmapped address fails with EFAULT once access is granted, with
 * EPERM when it is not.
 */
static int may_ptrace(int pid)
{
    char byte;
    struct iovec local = {&byte, 1}, remote = {(void *)1, 1};

    if (syscall(SYS_process_vm_readv, pid, &local, 1, &remote, 1, 0) >= 0)
        return 1;
    return errno == EFAULT;
}

static void check_pid(int pid, const char *marker, const struct ident *host_root,
                      const struct idents *ours)
{
    char path[128], exe[256] = "";
    struct stat st;
    DIR *fds;
    int fd;
    ssize_t n;

    snprintf(path, sizeof(path), "/proc/%d/exe", pid);
    n = readlink(path, exe, sizeof(exe) - 1);
    exe[n > 0 ? n : 0] = '\0';
    if (strncmp(exe, "/memfd:pidsafe:", 15) == 0)
        printf("OURS %d %s\n", pid, exe);   /* a process of pidsafe's, before its exec */
    fd = open(path, O_PATH | O_CLOEXEC);
    if (fd >= 0) {
        if (fstat(fd, &st) == 0 && is_any(&st, ours))
            printf("HOST exe of %d is a host binary of ours: %s\n", pid, exe);
        close(fd);
    }
    snprintf(path, sizeof(path), "/proc/%d/root", pid);
    fd = open(path, O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (fd >= 0) {
        check_dir(fd, marker, host_root, "root", pid);
        close(fd);
    }
    snprintf(path, sizeof(path), "/proc/%d/cwd", pid);
    fd = open(path, O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (fd >= 0) {
        check_dir(fd, marker, host_root, "cwd", pid);
        close(fd);
    }
    snprintf(path, sizeof(path), "/proc/%d/fd", pid);
    fds = opendir(path);
    if (fds != NULL) {
        struct dirent *e;
        while ((e = readdir(fds)) != NULL) {
            char fdpath[300];
            if (e->d_name[0] == '.')
                continue;
            snprintf(fdpath, sizeof(fdpath), "/proc/%d/fd/%s", pid, e->d_name);
            fd = open(fdpath, O_PATH | O_CLOEXEC);
            if (fd < 0)
                continue;
            if (fstat(fd, &st) == 0) {
                if (is_any(&st, ours))
                    printf("HOST fd %s of %d is a host binary of ours\n", e->d_name, pid);
                if (S_ISDIR(st.st_mode))
                    check_dir(fd, marker, host_root, "a directory fd", pid);
            }
            close(fd);
        }
        closedir(fds);
    }
    if (may_ptrace(pid))
        printf("PTRACE %d %s\n", pid, exe);
}

static int scan_mode(const char *marker, const char *root_s, const char *ours_s)
{
    struct ident host_root;
    struct idents ours;
    unsigned long rounds = 0, seen = 0;
    int self = getpid();

    if (parse_ident(root_s, &host_root) < 0 || parse_idents(ours_s, &ours) < 0)
        return 2;
    setvbuf(stdout, NULL, _IOLBF, 0);
    printf("READY\n");
    while (!stdin_closed()) {
        DIR *proc = opendir("/proc");
        struct dirent *e;
        if (proc == NULL)
            return 2;
        while ((e = readdir(proc)) != NULL) {
            int pid = atoi(e->d_name);
            if (pid <= 0 || pid == self)
                continue;
            seen++;
            check_pid(pid, marker, &host_root, &ours);
        }
        closedir(proc);
        rounds++;
    }
    printf("SCANNED %lu %lu\n", rounds, seen);
    return 0;
}

static int exe_mode(int pid, const char *init_s)
{
    struct ident init;
    char path[64];
    struct stat st;
    unsigned char byte;
    int fd, rw = -1, tries;

    if (parse_ident(init_s, &init) < 0)
        return 2;
    snprintf(path, sizeof(path), "/proc/%d/exe", pid);
    fd = open(path, O_PATH | O_CLOEXEC);
    if (fd < 0) {
        printf("DENIED exe %d\n", errno);
        return 0;
    }
    if (fstat(fd, &st) == 0 && is(&st, &init))
        printf("HOST exe\n");
    /* Once it stops running, nothing denies writing for "text busy" (our
     * pid namespace's init cannot be killed from inside: try it running). */
    if (pid != 1)
        kill(pid, SIGKILL);
    snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
    for (tries = 0; tries < 5000; tries++) {
        rw = open(path, O_RDWR | O_CLOEXEC);
        if (rw >= 0 || errno != ETXTBSY || pid == 1)
            break;
        usleep(1000);
    }
    if (rw < 0) {
        printf("SEALED %d\n", errno);
        return 0;
    }
    if (pread(rw, &byte, 1, 0) != 1) {
        printf("SEALED %d\n", errno);
        return 0;
    }
    if (pwrite(rw, &byte, 1, 0) == 1)
        printf("WRITABLE exe\n");
    else
        printf("SEALED %d\n", errno);
    return 0;
}

/* The value of "Name:" in a /proc/PID/status text, its tabs made '/'. */
static void status_field(const char *status, const char *name, char *out, size_t size)
{
    const char *p = strstr(status, name);
    size_t i = 0;

    if (p != NULL && (p == status || p[-1] == '\n')) {
        p += strlen(name);
        while (*p == '\t' || *p == ' ')
            p++;
        for (; *p != '\0' && *p != '\n' && i + 1 < size; p++)
            out[i++] = *p == '\t' ? '/' : *p;
    }
    out[i] = '\0';
}

/* Whether PID's argv[0] ends in "pidsafe-init" (one of ours, before its execve). */
static int runs_our_init(int pid)
{
    char path[64], buf[4096];
    const char *suffix = "pidsafe-init";
    size_t len, n = strlen(suffix);
    ssize_t got;
    int fd;

    snprintf(path, sizeof(path), "/proc/%d/cmdline", pid);
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return 0;
    got = read(fd, buf, sizeof(buf) - 1);
    close(fd);
    if (got <= 0)
        return 0;
    buf[got] = '\0';
    len = strlen(buf);
    return len >= n && strcmp(buf + len - n, suffix) == 0;
}

/*
 * PID's status, read as soon as it shows in /proc (it was just allocated),
 * kept if PID runs pidsafe-init before and after the read: ours, before
 * its execve, all the while.
 */
static void check_ident(int pid)
{
    char path[64], status[8192], uid[128], gid[128], capeff[64], capprm[64];
    ssize_t got = -1;
    int fd = -1, tries;

    snprintf(path, sizeof(path), "/proc/%d/status", pid);
    /* A few ms at most: a process missed must not make us miss the next. */
    for (tries = 0; tries < 2000 && !runs_our_init(pid); tries++)
        ;
    if (tries == 2000)
        return;   /* gone already, or it exec'd before we looked */
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return;
    got = read(fd, status, sizeof(status) - 1);
    close(fd);
    if (got <= 0 || !runs_our_init(pid))
        return;
    status[got] = '\0';
    status_field(status, "Uid:", uid, sizeof(uid));
    status_field(status, "Gid:", gid, sizeof(gid));
    status_field(status, "CapEff:", capeff, sizeof(capeff));
    status_field(status, "CapPrm:", capprm, sizeof(capprm));
    printf("IDENT %d uid=%s gid=%s capeff=%s capprm=%s\n", pid, uid, gid, capeff, capprm);
}

static int idents_mode(void)
{
    char buf[32];
    unsigned long watched = 0, spins = 0;
    int last = -1, self = getpid();
    int fd = open("/proc/sys/kernel/ns_last_pid", O_RDONLY | O_CLOEXEC);

    if (fd < 0)
        return 2;
    setvbuf(stdout, NULL, _IOLBF, 0);
    printf("READY\n");
    for (;;) {
        ssize_t got = pread(fd, buf, sizeof(buf) - 1, 0);
        int now, pid;
        if (got <= 0)
            return 2;
        buf[got] = '\0';
        now = atoi(buf);
        if (last < 0)
            last = now;
        for (pid = last + 1; pid <= now; pid++)
            if (pid != self) {
                check_ident(pid);
                watched++;
            }
        if (now > last)
            last = now;
        if ((++spins & 1023) == 0 && stdin_closed())
            break;
    }
    close(fd);
    printf("WATCHED %lu\n", watched);
    return 0;
}

static int stopper_mode(void)
{
    unsigned long n = 0;

    setvbuf(stdout, NULL, _IOLBF, 0);
    printf("READY\n");
    for (;;) {
        kill(-1, SIGSTOP);
        if ((++n & 1023) == 0 && stdin_closed())
            break;
    }
    return 0;
}

static int forge_mode(int argc, char **argv)
{
    /* struct psi_record {kind, index, op, err}: an ERROR at no op. */
    int32_t rec[4] = {2, -1, 102, EPERM};
    int i;

    for (i = 0; i < argc; i++) {
        char path[64];
        int fd;
        snprintf(path, sizeof(path), "/proc/1/fd/%s", argv[i]);
        fd = open(path, O_WRONLY | O_CLOEXEC);
        if (fd < 0) {
            printf("DENIED %s %d\n", argv[i], errno);
            continue;
        }
        if (write(fd, rec, sizeof(rec)) == (ssize_t)sizeof(rec))
            printf("FORGED %s\n", argv[i]);
        else
            printf("DENIED %s %d\n", argv[i], errno);
        close(fd);
    }
    return 0;
}

int main(int argc, char **argv)
{
    if (argc == 6 && strcmp(argv[1], "swap") == 0)
        return swap_mode(argv[2], argv[3], argv[4], argv[5]);
    if (argc == 5 && strcmp(argv[1], "scan") == 0)
        return scan_mode(argv[2], argv[3], argv[4]);
    if (argc == 4 && strcmp(argv[1], "exe") == 0)
        return exe_mode(atoi(argv[2]), argv[3]);
    if (argc == 2 && strcmp(argv[1], "idents") == 0)
        return idents_mode();
    if (argc == 2 && strcmp(argv[1], "stopper") == 0)
        return stopper_mode();
    if (argc >= 2 && strcmp(argv[1], "forge") == 0)
        return forge_mode(argc - 2, argv + 2);
    fprintf(stderr, "usage: see the comment at the top of escape_probe.c\n");
    return 2;
}
