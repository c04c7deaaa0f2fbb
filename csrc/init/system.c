/*
 * pidsafe-init: the container's system settings (hostname, domainname,
 * sysctls, the loopback interface) and its process's limits (rlimits,
 * oom_score_adj), all applied while init is still privileged.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <net/if.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include "cleanup.h"
#include "init.h"

/* A file of the container's procfs, written through an fd proven to be
 * there (byfd.c): never by a path a mount or a symlink could redirect. */
static int write_procfs(const char *rel, const char *value)
{
    _cleanup_close_ int fd = psi_open_procfs(rel, O_WRONLY);

    if (fd < 0)
        return -1;
    return psi_write_fd(fd, value, strlen(value));
}

int psi_op_hostname(struct psi_ctx *c, const struct psi_op *op)
{
    const char *name = psi_str(op, 0);
    (void)c;
    return name == NULL ? -1 : sethostname(name, strlen(name));
}

int psi_op_domainname(struct psi_ctx *c, const struct psi_op *op)
{
    const char *name = psi_str(op, 0);
    (void)c;
    return name == NULL ? -1 : setdomainname(name, strlen(name));
}

int psi_op_sysctl(struct psi_ctx *c, const struct psi_op *op)
{
    const char *key = psi_str(op, 0), *value = psi_str(op, 1);
    char rel[512];
    size_t i, n;
    (void)c;
    if (key == NULL || value == NULL)
        return -1;
    n = (size_t)snprintf(rel, sizeof(rel), "sys/%s", key);
    if (n >= sizeof(rel)) {
        errno = ENAMETOOLONG;
        return -1;
    }
    for (i = strlen("sys/"); i < n; i++)
        if (rel[i] == '.')
            rel[i] = '/';
    return write_procfs(rel, value);
}

int psi_op_oom_score_adj(struct psi_ctx *c, const struct psi_op *op)
{
    const char *value = psi_str(op, 0);
    char rel[64];
    (void)c;
    if (value == NULL)
        return -1;
    /* Our own pid in the container's procfs ("self" is a symlink). */
    snprintf(rel, sizeof(rel), "%d/oom_score_adj", (int)getpid());
    return write_procfs(rel, value);
}

int psi_op_rlimit(struct psi_ctx *c, const struct psi_op *op)
{
    int64_t resource, soft, hard;
    struct rlimit rl;
    (void)c;
    if (psi_int(op, 0, &resource) < 0 || psi_int(op, 1, &soft) < 0 || psi_int(op, 2, &hard) < 0)
        return -1;
    rl.rlim_cur = (rlim_t)(uint64_t)soft;
    rl.rlim_max = (rlim_t)(uint64_t)hard;
    return setrlimit((int)resource, &rl);
}

/*
 * A new network namespace starts with lo down: nothing inside could reach
 * 127.0.0.1.  SIOCSIFFLAGS on a socket of the namespace, as runc and crun
 * do; needs CAP_NET_ADMIN over it (we are still privileged here).
 */
int psi_op_loopback_up(struct psi_ctx *c, const struct psi_op *op)
{
    _cleanup_close_ int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    struct ifreq ifr;
    (void)c;
    (void)op;

    if (s < 0)
        return -1;
    memset(&ifr, 0, sizeof(ifr));
    strncpy(ifr.ifr_name, "lo", IFNAMSIZ - 1);
    if (ioctl(s, SIOCGIFFLAGS, &ifr) < 0)
        return -1;
    ifr.ifr_flags |= IFF_UP;
    return ioctl(s, SIOCSIFFLAGS, &ifr);
}
