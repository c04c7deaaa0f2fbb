/*
 * Child stacks: one cache for every CLONE_VM child (spawn, userns helper).
 *
 * A CLONE_VM child runs on a stack of its own in our memory.  Mapping one
 * per child costs an mmap/mprotect/munmap each time (with the page faults,
 * and the TLB shootdown of unmapping memory another CPU ran on), so each
 * thread keeps one stack for its next child.  It is marked busy while a
 * child may run on it: a spawn holds it only across clone3 (CLONE_VFORK
 * suspends us until the child has exec'd or exited, and every signal is
 * blocked meanwhile), a user-namespace helper until it is dead and reaped.
 * Two are kept: a container's create spawns its init while the helper that
 * made the container's user namespace may still hold one (killed once its
 * maps are written, it is reaped when init is ready, dead by then: no wait
 * for it to die).  A child while both are busy (a signal handler calling
 * get_userns_fd in the middle of one, a helper that could not be proven
 * dead) gets a fresh mapping, unmapped when it is given back.
 *
 * Every stack has a PROT_NONE guard page below it: a child that overflows
 * its stack faults instead of scribbling on our memory.  A thread-specific-
 * data destructor unmaps an idle cached stack when its thread exits (a busy
 * one stays mapped: a child may still run on it).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <stddef.h>
#include <sys/mman.h>
#include <unistd.h>

#include "pidsafe.h"

struct slot {
    char *map;
    size_t map_size;
    int busy;
};

static pthread_key_t slot_key;
static pthread_once_t slot_once = PTHREAD_ONCE_INIT;
static int slot_key_ok;
#define SLOTS 2
static __thread struct slot thread_slots[SLOTS];

static void slot_free(void *p)
{
    struct slot *slots = p;
    int i;

    for (i = 0; i < SLOTS; i++) {
        if (slots[i].map != NULL && !slots[i].busy)
            munmap(slots[i].map, slots[i].map_size);
        slots[i].map = NULL;
    }
}

static void slot_key_init(void)
{
    slot_key_ok = pthread_key_create(&slot_key, slot_free) == 0;
}

static char *stack_map(size_t map_size)
{
    long page_size = sysconf(_SC_PAGESIZE);
    char *mem;
    int saved;

    mem = mmap(NULL, map_size, PROT_READ | PROT_WRITE,
               MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK | MAP_NORESERVE, -1, 0);
    if (mem == MAP_FAILED)
        return NULL;
    if (mprotect(mem, (size_t)page_size, PROT_NONE) < 0) {
        saved = errno;
        munmap(mem, map_size);
        errno = saved;
        return NULL;
    }
    return mem;
}

int pidsafe_stack_get(struct pidsafe_stack *st)
{
    struct slot *slot = &thread_slots[0];
    size_t map_size = (size_t)sysconf(_SC_PAGESIZE) + PIDSAFE_STACK_SIZE;

    st->map = NULL;
    st->map_size = map_size;
    st->slot = NULL;
    if (slot->busy)
        slot = &thread_slots[1];
    if (!slot->busy) {
        if (slot->map == NULL) {
            pthread_once(&slot_once, slot_key_init);
            slot->map = stack_map(map_size);
            if (slot->map == NULL)
                return -1;
            slot->map_size = map_size;
            /* Without a key the stack lives as long as the process: still correct. */
            if (slot_key_ok)
                pthread_setspecific(slot_key, thread_slots);
        }
        slot->busy = 1;
        st->map = slot->map;
        st->slot = slot;
        return 0;
    }
    st->map = stack_map(map_size);
    return st->map == NULL ? -1 : 0;
}

void pidsafe_stack_put(struct pidsafe_stack *st)
{
    if (st->map == NULL)
        return;  /* idempotent */
    if (st->slot != NULL)
        ((struct slot *)st->slot)->busy = 0;  /* back to its thread's cache */
    else
        munmap(st->map, st->map_size);
    st->map = NULL;
}
