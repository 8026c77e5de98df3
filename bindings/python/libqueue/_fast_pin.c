/* libqueue._fast, the Pin type: the owner of one C handle --------------------------
 * Every Python handle (Broker, Namespace, Queue, Topic, Pool, RpcClient) keeps its C
 * handle in a Pin, and every call goes through it: the Python layer brackets each
 * cffi call (which releases the GIL) with `enter()` / `leave()`, and the fast calls
 * (_fast.c) count themselves from start to end. `close()` marks the handle closed (later
 * calls fail with Closed), calls the handle's C close if it has one (which wakes the
 * calls waiting in it: `lq_queue_close`, `lq_rpc_client_close`, `lq_broker_close`)
 * and frees the C handle once no call is inside: at once, or when the last call
 * leaves. The count changes only with the GIL held, so it needs no atomics; the C
 * close and free run with the GIL released (they may wait for the disk or for
 * threads that need the GIL), counted as a call themselves.
 *
 * This file: Pin's methods, getters and type. Its struct, `pin_release` and
 * `pin_arg` are in _fast.h: the fast calls use them on every call. */

#include "_fast.h"

PyTypeObject *lq_fast_PinType;


static int pin_init(PyObject *self, PyObject *a, PyObject *kw) {
    static char *kwlist[] = {"h", "free", "close", "parent", NULL};
    PyObject *h, *f, *c, *parent = Py_None;
    if (!PyArg_ParseTupleAndKeywords(a, kw, "OOO|O", kwlist, &h, &f, &c, &parent))
        return -1;
    Pin *p = (Pin *)self;
    if (p->h != NULL) {
        PyErr_SetString(PyExc_RuntimeError, "Pin: initialized already");
        return -1;
    }
    void *hp = PyLong_AsVoidPtr(h), *fp = PyLong_AsVoidPtr(f);
    void *cp = c == Py_None ? NULL : PyLong_AsVoidPtr(c);
    if (PyErr_Occurred())
        return -1;
    if (hp == NULL || fp == NULL) {
        PyErr_SetString(PyExc_ValueError, "Pin: a NULL handle or free function");
        return -1;
    }
    p->h = hp;
    /* Function pointers from data pointers: fine on every platform CPython runs on. */
    memcpy(&p->free, &fp, sizeof fp);
    memcpy(&p->close, &cp, sizeof cp);
    Py_INCREF(parent);
    p->parent = parent;
    return 0;
}

/* The parent is visited: a parent that refers back to its child's owner (a broker
 * keeps its default namespace, whose pin keeps the broker) makes a cycle the
 * collector must see to free. */
static int pin_traverse(PyObject *self, visitproc visit, void *arg) {
    Py_VISIT(((Pin *)self)->parent);
    Py_VISIT(Py_TYPE(self));
    return 0;
}

static int pin_clear(PyObject *self) {
    Py_CLEAR(((Pin *)self)->parent);
    return 0;
}

static void pin_dealloc(PyObject *self) {
    Pin *p = (Pin *)self;
    PyTypeObject *tp = Py_TYPE(self);
    PyObject_GC_UnTrack(self);
    /* The safety net: nobody closed it (no call can be inside: each holds the pin). */
    p->closed = 1;
    p->busy = 0;
    pin_release(p);
    Py_CLEAR(p->parent);
    freefunc f = (freefunc)PyType_GetSlot(tp, Py_tp_free);
    f(self);
    Py_DECREF(tp);
}

/* enter() -> bool: counts a call in (True), or False if the handle was closed. */
static PyObject *pin_enter(PyObject *self, PyObject *unused) {
    (void)unused;
    Pin *p = (Pin *)self;
    if (p->closed)
        Py_RETURN_FALSE;
    p->busy++;
    Py_RETURN_TRUE;
}

/* leave(): counts a call out; frees the handle if it was the last of a closed one. */
static PyObject *pin_leave(PyObject *self, PyObject *unused) {
    (void)unused;
    Pin *p = (Pin *)self;
    if (p->busy > 0)
        p->busy--;
    pin_release(p);
    Py_RETURN_NONE;
}

/* close() -> bool: closes (wakes the waiters; frees once none is inside); False if
 * it was closed already. */
static PyObject *pin_close(PyObject *self, PyObject *unused) {
    (void)unused;
    Pin *p = (Pin *)self;
    if (p->closed)
        Py_RETURN_FALSE;
    p->closed = 1;
    if (p->close != NULL && p->h != NULL) {
        void *h = p->h;
        p->busy++; /* the close is inside the handle too: nobody frees it meanwhile */
        Py_BEGIN_ALLOW_THREADS
        p->close(h);
        Py_END_ALLOW_THREADS
        p->busy--;
    }
    pin_release(p);
    Py_RETURN_TRUE;
}

static PyObject *pin_closed(PyObject *self, void *c) {
    (void)c;
    return PyBool_FromLong(((Pin *)self)->closed);
}

static PyObject *pin_busy(PyObject *self, void *c) {
    (void)c;
    return PyLong_FromSsize_t(((Pin *)self)->busy);
}

static PyObject *pin_freed(PyObject *self, void *c) {
    (void)c;
    return PyBool_FromLong(((Pin *)self)->h == NULL);
}

static PyObject *pin_get_parent(PyObject *self, void *c) {
    (void)c;
    PyObject *v = ((Pin *)self)->parent;
    Py_INCREF(v);
    return v;
}

static PyGetSetDef pin_getset[] = {
    {"closed", pin_closed, NULL, "Whether close() was called.", NULL},
    {"busy", pin_busy, NULL, "Calls inside the handle now.", NULL},
    {"freed", pin_freed, NULL, "Whether the C handle was freed.", NULL},
    {"parent", pin_get_parent, NULL, "What this handle keeps alive.", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyMethodDef pin_methods[] = {
    {"enter", pin_enter, METH_NOARGS, "Counts a call in: True, or False once closed."},
    {"leave", pin_leave, METH_NOARGS, "Counts a call out (frees a closed handle's last)."},
    {"close", pin_close, METH_NOARGS,
     "Closes: wakes the calls inside, frees the C handle once none is left."},
    {NULL, NULL, 0, NULL},
};

static PyType_Slot pin_slots[] = {
    {Py_tp_init, pin_init},
    {Py_tp_dealloc, pin_dealloc},
    {Py_tp_traverse, pin_traverse},
    {Py_tp_clear, pin_clear},
    {Py_tp_getset, pin_getset},
    {Py_tp_methods, pin_methods},
    {Py_tp_doc, "Pin(h, free, close, parent=None): owns one C handle (addresses as ints)."},
    {0, NULL},
};

PyType_Spec lq_fast_pin_spec = {
    "libqueue._fast.Pin", sizeof(Pin), 0, Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC, pin_slots,
};

