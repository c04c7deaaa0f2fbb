/*
 * bpf(2) shims: see bpf.h.  Each returns -1 and leaves errno; EINTR is
 * retried by pidsafe/_sys, not here.
 *
 * The attributes are our own prefixes of the kernel's union bpf_attr (the
 * kernel takes a shorter attr and zero-fills the rest), so that headers
 * without the newer fields do not matter.  When <linux/bpf.h> is there
 * (PIDSAFE_HAS_LINUX_BPF_H) the layout and constants are checked against
 * it; without SYS_bpf in the system headers (PIDSAFE_HAS_SYS_BPF) every
 * call fails with ENOSYS.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "bpf.h"

#if defined(__has_include)
#if __has_include(<linux/bpf.h>)
#include <linux/bpf.h>
#define PIDSAFE_HAS_LINUX_BPF_H 1
#endif
#endif

#ifdef SYS_bpf
#define PIDSAFE_HAS_SYS_BPF 1
#else
#define PIDSAFE_HAS_SYS_BPF 0
#endif

#define CMD_PROG_LOAD   5
#define CMD_PROG_ATTACH 8

struct prog_load_attr {
    uint32_t prog_type;
    uint32_t insn_cnt;
    uint64_t insns;
    uint64_t license;
    uint32_t log_level;
    uint32_t log_size;
    uint64_t log_buf;
    uint32_t kern_version;
    uint32_t prog_flags;
    char prog_name[16];
};

struct prog_attach_attr {
    uint32_t target_fd;
    uint32_t attach_bpf_fd;
    uint32_t attach_type;
    uint32_t attach_flags;
};

#ifdef PIDSAFE_HAS_LINUX_BPF_H
_Static_assert(BPF_PROG_LOAD == CMD_PROG_LOAD, "BPF_PROG_LOAD");
_Static_assert(BPF_PROG_ATTACH == CMD_PROG_ATTACH, "BPF_PROG_ATTACH");
_Static_assert(BPF_PROG_TYPE_CGROUP_DEVICE == PIDSAFE_BPF_PROG_TYPE_CGROUP_DEVICE,
               "BPF_PROG_TYPE_CGROUP_DEVICE");
_Static_assert(BPF_CGROUP_DEVICE == PIDSAFE_BPF_CGROUP_DEVICE, "BPF_CGROUP_DEVICE");
_Static_assert(BPF_F_ALLOW_MULTI == PIDSAFE_BPF_F_ALLOW_MULTI, "BPF_F_ALLOW_MULTI");
_Static_assert(offsetof(union bpf_attr, prog_name) == offsetof(struct prog_load_attr, prog_name),
               "bpf_attr for BPF_PROG_LOAD");
_Static_assert(offsetof(union bpf_attr, log_buf) == offsetof(struct prog_load_attr, log_buf),
               "bpf_attr for BPF_PROG_LOAD");
_Static_assert(offsetof(union bpf_attr, attach_flags)
               == offsetof(struct prog_attach_attr, attach_flags), "bpf_attr for BPF_PROG_ATTACH");
#endif

static int bpf_call(int cmd, void *attr, unsigned int size)
{
#if PIDSAFE_HAS_SYS_BPF
    return (int)syscall(SYS_bpf, cmd, attr, size);
#else
    (void)cmd; (void)attr; (void)size;
    errno = ENOSYS;
    return -1;
#endif
}

int pidsafe_bpf_prog_load(uint32_t prog_type, const void *insns, uint32_t insn_cnt,
                          const char *license, const char *name, char *log_buf,
                          uint32_t log_size)
{
    struct prog_load_attr attr;

    memset(&attr, 0, sizeof(attr));
    attr.prog_type = prog_type;
    attr.insn_cnt = insn_cnt;
    attr.insns = (uint64_t)(uintptr_t)insns;
    attr.license = (uint64_t)(uintptr_t)license;
    if (log_buf != NULL && log_size > 0) {
        attr.log_level = 1;
        attr.log_size = log_size;
        attr.log_buf = (uint64_t)(uintptr_t)log_buf;
        log_buf[0] = '\0';
    }
    strncpy(attr.prog_name, name, sizeof(attr.prog_name) - 1);
    return bpf_call(CMD_PROG_LOAD, &attr, sizeof(attr));
}

int pidsafe_bpf_prog_attach(int target_fd, int prog_fd, uint32_t attach_type,
                            uint32_t flags)
{
    struct prog_attach_attr attr;

    memset(&attr, 0, sizeof(attr));
    attr.target_fd = (uint32_t)target_fd;
    attr.attach_bpf_fd = (uint32_t)prog_fd;
    attr.attach_type = attach_type;
    attr.attach_flags = flags;
    return bpf_call(CMD_PROG_ATTACH, &attr, sizeof(attr));
}
