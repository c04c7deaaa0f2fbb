/*
 * Scope-bound cleanup, as crun and systemd write it: a variable declared
 * _cleanup_close_ (an fd, -1 for none) is closed, and one declared
 * _cleanup_free_ freed, whenever it goes out of scope, on every return
 * path, with errno kept for the caller.  TAKE_FD(fd) moves an fd out of
 * such a variable (returns it and leaves -1 behind), for the path that
 * hands it on.
 *
 * Header-only, for every build product (the extension, pidsafe-helper,
 * pidsafe-init); close() and free() of a variable are all it adds, so it
 * is as safe in a child as the code around it.
 */
#ifndef PIDSAFE_CLEANUP_H
#define PIDSAFE_CLEANUP_H

#include <errno.h>
#include <stdlib.h>
#include <unistd.h>

static inline void pidsafe_closep(int *fd)
{
    if (*fd >= 0) {
        int saved = errno;
        close(*fd);
        errno = saved;
    }
}

static inline void pidsafe_freep(void *p)
{
    int saved = errno;
    free(*(void **)p);
    errno = saved;
}

static inline int pidsafe_take_fd(int *fd)
{
    int taken = *fd;
    *fd = -1;
    return taken;
}

#define _cleanup_close_ __attribute__((cleanup(pidsafe_closep)))
#define _cleanup_free_ __attribute__((cleanup(pidsafe_freep)))
#define TAKE_FD(fd) pidsafe_take_fd(&(fd))

#endif /* PIDSAFE_CLEANUP_H */
