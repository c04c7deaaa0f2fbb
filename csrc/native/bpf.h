/*
 * pidsafe native layer: bpf(2), for the device filter of a cgroup v2.
 *
 * cgroup v2 has no devices.allow: the kernel asks the BPF_CGROUP_DEVICE
 * programs attached to the task's cgroup and its ancestors (Linux 4.15).
 * pidsafe.container generates the program (pidsafe/container/cgroup/
 * _devices_bpf.py); these shims only load and attach it.
 *
 * CDEF rules as in pidsafe.h.
 */
#ifndef PIDSAFE_BPF_H
#define PIDSAFE_BPF_H

#include <stdint.h>

/* CDEF BEGIN */

/* linux/bpf.h: the program type, its attach type, and an attach flag. */
#define PIDSAFE_BPF_PROG_TYPE_CGROUP_DEVICE 15
#define PIDSAFE_BPF_CGROUP_DEVICE           6
#define PIDSAFE_BPF_F_ALLOW_MULTI           2

/*
 * bpf(BPF_PROG_LOAD), Linux 3.18: load insn_cnt instructions (struct
 * bpf_insn, 8 bytes each) as a program of prog_type named name (at most 15
 * characters).  With log_size > 0 the verifier writes its log to log_buf
 * (log level 1), so that a refused program can be explained.  Returns the
 * program's fd (always close-on-exec), or -1 and errno.
 */
int pidsafe_bpf_prog_load(uint32_t prog_type, const void *insns, uint32_t insn_cnt,
                          const char *license, const char *name, char *log_buf,
                          uint32_t log_size);

/* bpf(BPF_PROG_ATTACH), Linux 4.10: attach prog_fd to target_fd (a cgroup). */
int pidsafe_bpf_prog_attach(int target_fd, int prog_fd, uint32_t attach_type,
                            uint32_t flags);

/* CDEF END */

#endif /* PIDSAFE_BPF_H */
