/*
 * pidsafe-init: the op stream's reader (the format is in
 * csrc/shared/init_protocol.h).  It knows nothing of what the ops do: it
 * reads the stream to EOF, splits it into ops, and gives the ops' code
 * their arguments.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cleanup.h"
#include "init.h"

int psi_int(const struct psi_op *op, uint32_t i, int64_t *out)
{
    if (i >= op->nargs || op->args[i].len != sizeof(int64_t)) {
        errno = EINVAL;
        return -1;
    }
    memcpy(out, op->args[i].data, sizeof(int64_t));
    return 0;
}

const char *psi_str(const struct psi_op *op, uint32_t i)
{
    if (i >= op->nargs) {
        errno = EINVAL;
        return NULL;
    }
    return op->args[i].data;
}

/*
 * The whole stream, read into `first` (`cap` bytes) while it fits, else into
 * a malloc'd buffer left in *heap (the caller frees it); NULL if it cannot
 * be read (or is too big).  An exec's stream (a few hundred bytes) never
 * leaves `first`: no mmap and munmap of a 64 KiB buffer on its critical path.
 */
static char *read_all(int fd, char *first, size_t cap, size_t *len_out, char **heap)
{
    size_t len = 0;
    char *buf = first;

    *heap = NULL;
    for (;;) {
        ssize_t n;
        if (len == cap) {
            char *bigger;
            if (cap > ((size_t)64 << 20))
                goto bad;
            bigger = malloc(cap * 2);
            if (bigger == NULL)
                goto bad;
            memcpy(bigger, buf, len);
            free(*heap);
            buf = *heap = bigger;
            cap *= 2;
        }
        n = read(fd, buf + len, cap - len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            goto bad;
        if (n == 0)
            break;
        len += (size_t)n;
    }
    *len_out = len;
    return buf;
bad:
    free(*heap);
    *heap = NULL;
    return NULL;
}

/*
 * Memory for what parse() and psi_split_list() make, none of it ever freed
 * (we exec or exit): zeroed, 16-byte aligned (a seccomp program is read in
 * place as struct sock_filter), from a .bss arena while it lasts, else from
 * calloc.  An exec's ops and their arguments (~2 KiB) then never start
 * malloc's heap: its brk and mmap calls (5 on the exec's critical path) and
 * their page faults are gone.  NULL: out of memory.
 */
static void *keep(size_t size)
{
    static char arena[65536] __attribute__((aligned(16)));
    static size_t used;
    size_t at = (used + 15) & ~(size_t)15;

    if (at <= sizeof(arena) && size <= sizeof(arena) - at) {
        used = at + size;
        return arena + at;
    }
    return calloc(1, size ? size : 1);
}

static int take_u32(const char **p, const char *end, uint32_t *out)
{
    if ((size_t)(end - *p) < sizeof(uint32_t))
        return -1;
    memcpy(out, *p, sizeof(uint32_t));
    *p += sizeof(uint32_t);
    return 0;
}

/* Parse the stream into ops; the count, or -1 if malformed or truncated. */
static long parse(const char *buf, size_t len, struct psi_op **ops_out)
{
    const char *p = buf, *end = buf + len;
    struct psi_op *ops = NULL;
    long n = 0, cap = 0;

    if (len < 4 || memcmp(p, PSI_MAGIC, 4) != 0)
        return -1;
    p += 4;
    for (;;) {
        struct psi_op op;
        uint32_t i;
        if (take_u32(&p, end, &op.code) < 0 || take_u32(&p, end, &op.nargs) < 0)
            return -1;
        if (op.code > PSI_OP_MAX || op.nargs > 4096)
            return -1;
        op.args = keep((op.nargs ? op.nargs : 1) * sizeof(struct psi_arg));
        if (op.args == NULL)
            return -1;
        for (i = 0; i < op.nargs; i++) {
            uint32_t alen;
            char *copy;
            if (take_u32(&p, end, &alen) < 0 || (size_t)(end - p) < alen)
                return -1;
            copy = keep((size_t)alen + 1);
            if (copy == NULL)
                return -1;
            memcpy(copy, p, alen);
            copy[alen] = '\0';
            op.args[i].data = copy;
            op.args[i].len = alen;
            p += alen;
        }
        if (op.code == PSI_OP_END)
            break;
        if (n == cap) {
            struct psi_op *bigger;
            cap = cap ? cap * 2 : 64;
            bigger = keep((size_t)cap * sizeof(*ops));
            if (bigger == NULL)
                return -1;
            if (n)
                memcpy(bigger, ops, (size_t)n * sizeof(*ops));
            ops = bigger;   /* the old array stays (never freed, as the rest) */
        }
        ops[n++] = op;
    }
    if (p != end)
        return -1;
    *ops_out = ops;
    return n;
}

long psi_read_ops(int fd, struct psi_op **ops_out)
{
    static char first[65536];   /* .bss: only the pages the stream fills are touched */
    _cleanup_free_ char *heap = NULL;
    const char *buf;
    size_t len = 0;

    buf = read_all(fd, first, sizeof(first), &len, &heap);
    if (buf == NULL)
        return -1;
    return parse(buf, len, ops_out);   /* the ops hold copies of their arguments */
}

char **psi_split_list(const struct psi_arg *a)
{
    size_t count = 0, i, k = 0;
    char **out;

    for (i = 0; i < a->len; i++)
        if (a->data[i] == '\0')
            count++;
    if (count >= SIZE_MAX / sizeof(char *)) {
        errno = ENOMEM;
        return NULL;
    }
    out = keep((count + 1) * sizeof(char *));
    if (out == NULL)
        return NULL;
    for (i = 0; i < a->len; i += strlen(a->data + i) + 1)
        out[k++] = (char *)(a->data + i);
    out[k] = NULL;
    return out;
}
