/*
 * pidsafe-init: paths resolved inside the container's root, by fd.
 *
 * Every target is resolved inside the container's root by fd
 * (openat2(RESOLVE_IN_ROOT)): a symlink in the image such as
 * /etc/evil -> /host/dir leads to ROOT/host/dir, never to the host.
 * Missing targets are created one component at a time, each mkdirat()
 * relative to a directory fd that was itself resolved in the root.
 *
 * A name is resolved once.  Whatever the container's files are made of may
 * change between two lookups of one path (another container sharing the
 * rootfs or a volume, a racing rename): so what init creates is opened
 * right away without following a symlink, checked on that fd (type, device
 * number), and acted on through the fd, never looked up again by name.
 * Before pivot_root a name looked up again would even resolve from the
 * host's root (CVE-2025-31133 and its runc siblings are this mistake).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "init.h"
#include "mount_api.h"

/* Resolve PATH in the root: an O_PATH fd, or -1 and errno. */
int psi_in_root(struct psi_ctx *c, const char *path)
{
    if (c->root_fd < 0) {
        errno = EINVAL;
        return -1;
    }
    return openat2_(c->root_fd, path, O_PATH, RESOLVE_IN_ROOT_ | RESOLVE_NO_MAGICLINKS_);
}

/*
 * The component NAME just created in DIR, opened without following
 * anything: a symlink or a mount swapped in since mkdirat() is refused
 * (ELOOP, EXDEV), never followed.
 */
static int open_created(int dir, const char *name, int flags)
{
    return openat2_(dir, name, O_PATH | flags, RESOLVE_BENEATH_ | RESOLVE_NO_SYMLINKS_
                    | RESOLVE_NO_MAGICLINKS_ | RESOLVE_NO_XDEV_);
}

/*
 * Resolve PATH in the root, creating what is missing: directories on the
 * way, and a directory or an empty file (kind) at the end.  What exists is
 * resolved in the root (an image's symlinks are followed, inside it); what
 * we create is opened by fd relative to its parent, never by name again.
 */
int psi_in_root_create(struct psi_ctx *c, const char *path, int kind)
{
    char prefix[PATH_MAX];
    size_t plen = 0;
    const char *p = path;
    int dir, fd;

    fd = psi_in_root(c, path);
    if (fd >= 0 || errno != ENOENT)
        return fd;
    dir = fcntl(c->root_fd, F_DUPFD_CLOEXEC, 3);
    if (dir < 0)
        return -1;
    while (*p) {
        const char *slash;
        size_t clen;
        char comp[NAME_MAX + 1];
        int last, next;

        while (*p == '/')
            p++;
        if (!*p)
            break;
        slash = strchr(p, '/');
        clen = slash ? (size_t)(slash - p) : strlen(p);
        if (clen > NAME_MAX || plen + clen + 2 > sizeof(prefix)) {
            close(dir);
            errno = ENAMETOOLONG;
            return -1;
        }
        memcpy(comp, p, clen);
        comp[clen] = '\0';
        prefix[plen++] = '/';
        memcpy(prefix + plen, comp, clen);
        plen += clen;
        prefix[plen] = '\0';
        p += clen;
        while (*p == '/')
            p++;
        last = (*p == '\0');
        next = psi_in_root(c, prefix);
        if (next < 0 && errno == ENOENT) {
            int made;
            if (last && kind == PSI_KIND_FILE) {
                int f = openat(dir, comp, O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC | O_NOFOLLOW,
                               0644);
                if (f >= 0) {   /* the file itself: the target, by fd */
                    close(dir);
                    return f;
                }
                made = 0;
            } else {
                made = mkdirat(dir, comp, 0755) == 0;
            }
            if (!made && errno != EEXIST) {
                close(dir);
                return -1;
            }
            /* Made by us: open it by fd.  EEXIST (made meanwhile by someone
             * else): only a lookup in the root, like any existing name. */
            next = made ? open_created(dir, comp, O_DIRECTORY) : psi_in_root(c, prefix);
        }
        close(dir);
        if (next < 0)
            return -1;
        dir = next;
    }
    return dir;
}

int psi_parent_in_root(struct psi_ctx *c, const char *path, char **copy, const char **base)
{
    char *slash;
    int dir;

    *copy = strdup(path);
    if (*copy == NULL)
        return -1;
    slash = strrchr(*copy, '/');
    if (slash == NULL || slash[1] == '\0') {
        free(*copy);
        *copy = NULL;
        errno = EINVAL;
        return -1;
    }
    *slash = '\0';
    *base = slash + 1;
    dir = psi_in_root_create(c, **copy ? *copy : "/", PSI_KIND_DIR);
    if (dir < 0) {
        int saved = errno;
        free(*copy);
        *copy = NULL;
        errno = saved;
    }
    return dir;
}
