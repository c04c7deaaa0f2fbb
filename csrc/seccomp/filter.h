/*
 * pidsafe._libseccomp: seccomp filters compiled by libseccomp, in the
 * parent, into the classic BPF program that pidsafe-init loads (it links
 * no libseccomp: it is static, and compiling needs no container).
 *
 * Built with PIDSAFE_HAS_LIBSECCOMP when libseccomp's headers were found
 * (csrc/seccomp/build.py); without, every compiling function fails with
 * ENOSYS and pidsafe_seccomp_available() says 0, so that pidsafe refuses
 * linux.seccomp by name instead of failing to build.  The kernel probes
 * need only the kernel's own headers.
 *
 * Conventions: 0 (or a value) on success, -1 with errno set on failure;
 * libseccomp's negative-errno returns are turned into errno here.
 */
#ifndef PIDSAFE_SECCOMP_FILTER_H
#define PIDSAFE_SECCOMP_FILTER_H

#include <stdint.h>

/* CDEF BEGIN */
/* One argument comparison: SCMP_CMP_* op on argument `arg` (0-5). */
struct pidsafe_seccomp_cmp {
    unsigned int arg;
    int op;
    uint64_t datum_a;
    uint64_t datum_b;
};

const char *pidsafe_seccomp_version(void);   /* the pidsafe version built in */
int pidsafe_seccomp_available(void);         /* 1: built against libseccomp */
/* libseccomp's version (the .so loaded), 0; -1 (ENOSYS) without it. */
int pidsafe_seccomp_lib_version(unsigned int *major, unsigned int *minor,
                                unsigned int *micro);
/* A new filter whose default is `action`; NULL with errno. */
void *pidsafe_seccomp_new(uint32_t action);
void pidsafe_seccomp_free(void *ctx);
/* libseccomp's token for an architecture name ("x86_64"), 0 if unknown. */
uint32_t pidsafe_seccomp_arch_resolve(const char *name);
/* Add an architecture; one already there (the native one) is not an error. */
int pidsafe_seccomp_arch_add(void *ctx, uint32_t arch);
/* The syscall number (negative for libseccomp's pseudo numbers), or -1
 * (__NR_SCMP_ERROR) for a name libseccomp does not know. */
int pidsafe_seccomp_syscall_resolve(const char *name);
/* The same for one architecture (its token); -1 if unknown there. */
int pidsafe_seccomp_syscall_resolve_arch(uint32_t arch, const char *name);
/* The native architecture's token (0 without libseccomp). */
uint32_t pidsafe_seccomp_arch_native(void);
int pidsafe_seccomp_rule_add(void *ctx, uint32_t action, int syscall,
                             unsigned int count, const struct pidsafe_seccomp_cmp *cmps);
/* Write the filter's BPF program (struct sock_filter[]) to fd. */
int pidsafe_seccomp_export_bpf(void *ctx, int fd);
/* seccomp(2) probes: 1 the kernel knows the filter flag / the action, 0 not. */
int pidsafe_seccomp_probe_flag(unsigned int flag);
int pidsafe_seccomp_probe_action(uint32_t action);
/* CDEF END */

#endif /* PIDSAFE_SECCOMP_FILTER_H */
