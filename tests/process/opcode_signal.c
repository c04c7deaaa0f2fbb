/*
 * A signal that arrives just before the k-th bytecode, for
 * tests/process/test_opcode_interrupts.py.
 *
 * A C trace function (PyEval_SetTrace) asks for an event before every
 * bytecode of every frame entered from now on (f_trace_opcodes), counts
 * them, and before the k-th one marks a signal as arrived with
 * PyErr_SetInterruptEx(): what CPython's own C-level handler does when the
 * kernel delivers a signal.  It runs no Python code, so the Python handler
 * runs exactly where it would for a real signal landing there: at the next
 * point where the eval loop checks for pending work.  A trace function
 * written in Python cannot do this: that check would come inside it.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <frameobject.h>

static long countdown;   /* bytecodes left until the signal; 0: none */
static long executed;    /* bytecodes seen since opsig_arm() */
static int signum;

static int tracer(PyObject *obj, PyFrameObject *frame, int what, PyObject *arg)
{
    (void)obj;
    (void)arg;
    if (what == PyTrace_CALL)
        return PyObject_SetAttrString((PyObject *)frame, "f_trace_opcodes", Py_True);
    if (what != PyTrace_OPCODE)
        return 0;
    executed++;
    if (countdown > 0 && --countdown == 0)
        PyErr_SetInterruptEx(signum);
    return 0;
}

/* From now on, in this thread: the k-th bytecode (k > 0) is preceded by sig. */
void opsig_arm(long k, int sig)
{
    countdown = k;
    executed = 0;
    signum = sig;
    PyEval_SetTrace(tracer, NULL);
}

/* Stop; how many bytecodes ran since opsig_arm(). */
long opsig_disarm(void)
{
    PyEval_SetTrace(NULL, NULL);
    countdown = 0;
    return executed;
}
