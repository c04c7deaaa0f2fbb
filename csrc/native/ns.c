/* setns(2) and ioctl_ns(2) shims: see ns.h. */
#define _GNU_SOURCE
#include <linux/nsfs.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "ns.h"

int pidsafe_setns(int fd, int nstype)
{
    return (int)syscall(SYS_setns, fd, nstype);
}

int pidsafe_ns_type(int fd)
{
    return ioctl(fd, NS_GET_NSTYPE);
}
