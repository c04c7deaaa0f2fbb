/*
 * pidsafe native layer: joining namespaces from the calling thread.
 */
#ifndef PIDSAFE_NS_H
#define PIDSAFE_NS_H

/* CDEF BEGIN */

/*
 * setns(2) (Linux 3.0; a pidfd as fd since 5.8).  With CLONE_NEWPID it
 * changes only the calling thread's namespace for its *future children*,
 * which is how an exec into a container is born inside its pid namespace,
 * held by a pidfd from clone3.  -1 and errno on failure.
 */
int pidsafe_setns(int fd, int nstype);

/*
 * ioctl(NS_GET_NSTYPE) (ioctl_ns(2), Linux 4.11): the CLONE_NEW* type of the
 * namespace fd refers to, or -1 and errno (ENOTTY: not a namespace file).
 */
int pidsafe_ns_type(int fd);

/* CDEF END */

#endif /* PIDSAFE_NS_H */
