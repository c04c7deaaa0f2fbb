/*
 * clone3(2) with a child function on its own stack.
 *
 * glibc exports no clone3() wrapper, and a plain syscall(SYS_clone3, ...)
 * cannot be used with a new stack: the child would return from syscall()
 * through a stack frame that is not on its stack.  So, like musl's and
 * glibc's internal __clone3, the syscall is issued from a few lines of
 * assembly that, in the child (return value 0), call fn(arg) on the stack
 * the kernel switched to, then exit_group() with its return value.
 *
 * The kernel sets the child's stack pointer to stack + stack_size.  The
 * caller keeps that 16-byte aligned, so the `call` below enters fn with the
 * alignment the ABI expects.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdint.h>
#include <unistd.h>

#include "pidsafe.h"

/*
 * long pidsafe_clone3_raw(args, size, fn, arg): pid, or -errno.  Written in
 * assembly for each architecture that has a trampoline, between the same
 * head and tail (TYPE: how the assembler spells "a function").
 */
long pidsafe_clone3_raw(void *args, size_t size, pidsafe_child_fn fn, void *arg);
#define TRAMPOLINE_HEAD(type) \
    ".text\n.globl pidsafe_clone3_raw\n.hidden pidsafe_clone3_raw\n" \
    ".type pidsafe_clone3_raw," type "\npidsafe_clone3_raw:\n"
#define TRAMPOLINE_TAIL ".size pidsafe_clone3_raw, .-pidsafe_clone3_raw\n"

#if defined(__x86_64__)
#define PIDSAFE_HAS_CLONE3_TRAMPOLINE 1
__asm__(
    TRAMPOLINE_HEAD("@function")
    "    mov %rdx, %r8\n"        /* fn: r8 and r9 survive syscall */
    "    mov %rcx, %r9\n"        /* arg (syscall clobbers rcx, r11) */
    "    mov $435, %eax\n"       /* __NR_clone3 */
    "    syscall\n"
    "    test %rax, %rax\n"
    "    jnz 1f\n"
    "    xor %ebp, %ebp\n"       /* child: outermost frame */
    "    mov %r9, %rdi\n"
    "    call *%r8\n"
    "    mov %eax, %edi\n"
    "    mov $231, %eax\n"       /* __NR_exit_group */
    "    syscall\n"
    "    hlt\n"
    "1:  ret\n"
    TRAMPOLINE_TAIL);
#elif defined(__aarch64__)
#define PIDSAFE_HAS_CLONE3_TRAMPOLINE 1
__asm__(
    TRAMPOLINE_HEAD("%function")
    "    mov x4, x2\n"
    "    mov x5, x3\n"
    "    mov x8, #435\n"
    "    svc #0\n"
    "    cbnz x0, 1f\n"
    "    mov x29, #0\n"
    "    mov x30, #0\n"
    "    mov x0, x5\n"
    "    blr x4\n"
    "    mov x8, #94\n"          /* __NR_exit_group */
    "    svc #0\n"
    "1:  ret\n"
    TRAMPOLINE_TAIL);
#else
#define PIDSAFE_HAS_CLONE3_TRAMPOLINE 0
#endif

int pidsafe_has_clone3_trampoline(void)
{
    return PIDSAFE_HAS_CLONE3_TRAMPOLINE;
}

long pidsafe_clone3(struct pidsafe_clone_args *args, size_t size,
                    pidsafe_child_fn fn, void *arg)
{
#if PIDSAFE_HAS_CLONE3_TRAMPOLINE
    long ret;

    /* A CLONE_VM child without its own stack would run on ours. */
    if ((args->flags & PIDSAFE_CLONE_VM) && (args->stack == 0 || args->stack_size == 0)) {
        errno = EINVAL;
        return -1;
    }
    if (fn == NULL) {
        errno = EINVAL;
        return -1;
    }
    ret = pidsafe_clone3_raw(args, size, fn, arg);
    if (ret < 0) {
        errno = (int)-ret;
        return -1;
    }
    return ret;
#else
    (void)args; (void)size; (void)fn; (void)arg;
    errno = ENOSYS;
    return -1;
#endif
}
