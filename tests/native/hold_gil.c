/* hold_gil.hold(seconds): sleep in C while keeping the GIL, as a long regex or a C library call
 * that never releases it does. No other thread of the process runs meanwhile (the lease keeper
 * included); the process's parent is untouched. Built by the tests (tests/native/__init__.py). */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <time.h>

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static PyObject *hold(PyObject *self, PyObject *args) {
    double seconds;
    if (!PyArg_ParseTuple(args, "d", &seconds)) {
        return NULL;
    }
    double deadline = now() + seconds;
    struct timespec step = {0, 10 * 1000 * 1000}; /* 10 ms: no CPU burnt, the GIL kept throughout */
    while (now() < deadline) {
        nanosleep(&step, NULL);
    }
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"hold", hold, METH_VARARGS, "Sleep `seconds` without releasing the GIL."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "hold_gil", NULL, -1, methods};

PyMODINIT_FUNC PyInit_hold_gil(void) { return PyModule_Create(&module); }
