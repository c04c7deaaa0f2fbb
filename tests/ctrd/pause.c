/*
 * pause: the sandbox (pause) container's process for the CRI tests.
 *
 * It holds the pod's namespaces while the pod lives: it sleeps until
 * SIGINT or SIGTERM, reaps any child that is handed to it (it is the pid 1
 * of the pod's pid namespace when the pod shares one), and exits 0 when
 * told to stop.  tests/cri/conftest.py builds it with `gcc -static` and
 * packages it as the image named by containerd's `sandbox_image`.
 *
 * The three signals stay blocked except inside sigsuspend(), so one that
 * arrives between two checks of `stop` is never lost.
 */
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>

static volatile sig_atomic_t stop;

static void on_stop(int sig)
{
    (void)sig;
    stop = 1;
}

static void on_child(int sig)
{
    (void)sig;   /* reaping happens in main(), after sigsuspend() returns */
}

int main(void)
{
    struct sigaction sa;
    sigset_t blocked, waiting;

    sigemptyset(&blocked);
    sigaddset(&blocked, SIGINT);
    sigaddset(&blocked, SIGTERM);
    sigaddset(&blocked, SIGCHLD);
    if (sigprocmask(SIG_BLOCK, &blocked, &waiting) != 0) {
        perror("pause: sigprocmask");
        return 1;
    }
    sigdelset(&waiting, SIGINT);
    sigdelset(&waiting, SIGTERM);
    sigdelset(&waiting, SIGCHLD);

    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_stop;
    if (sigaction(SIGINT, &sa, NULL) != 0 || sigaction(SIGTERM, &sa, NULL) != 0) {
        perror("pause: sigaction");
        return 1;
    }
    sa.sa_handler = on_child;
    sa.sa_flags = SA_NOCLDSTOP;
    if (sigaction(SIGCHLD, &sa, NULL) != 0) {
        perror("pause: sigaction");
        return 1;
    }

    while (!stop) {
        sigsuspend(&waiting);   /* returns -1/EINTR after a handler ran */
        while (waitpid(-1, NULL, WNOHANG) > 0)
            ;
    }
    return 0;
}
