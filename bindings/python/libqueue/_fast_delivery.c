/* libqueue._fast, Delivery: the hot half of libqueue.Delivery, in C ----------------
 * The Python class libqueue.Delivery subclasses it (names, headers, nack with a
 * delay, body_view, with-blocks). Here: the handle (`_h`, an int address or None),
 * the cached body and id, the settled/borrowed/peeked flags, `body`, `id`, `ack`,
 * `close` and the free on deallocation; `receive` returns instances directly
 * (lq_fast_make_delivery). This file holds the whole type. */

#include "_fast.h"

#include <structmember.h>

typedef struct {
    PyObject_HEAD
    lq_delivery *h;      /* NULL once closed */
    PyObject *body;      /* cached bytes or NULL */
    PyObject *view;      /* the body_view memoryview or NULL (set by the Python side) */
    uint64_t id;
    char has_id, settled, borrowed, peeked;
    PyObject *weakrefs;
    PyObject *parent;    /* what it keeps alive: its queue's pin (and so the broker) */
    Py_ssize_t busy;     /* cffi calls inside (they release the GIL): see _enter */
    char closing;        /* closed while a call was inside: freed when it leaves */
} Dlv;

/* The C delivery if it is open (not closed, not closing), else NULL. */
static lq_delivery *dlv_open(Dlv *d) { return d->closing ? NULL : d->h; }

/* Frees the C delivery (unless borrowed); the view must be released already. */
static void dlv_free(Dlv *d) {
    lq_delivery *h = d->h;
    d->h = NULL;
    if (h != NULL && !d->borrowed)
        lq_fast_L.free(h);
}

PyTypeObject *lq_fast_DeliveryType;  /* the C base */
PyTypeObject *lq_fast_DeliveryClass; /* libqueue.Delivery, what receive() makes */
PyObject *lq_fast_error_for;         /* libqueue._errors.error_for */

/* Raises the libqueue exception for status `st`; returns NULL. */
static PyObject *raise_status(lq_status st) {
    if (lq_fast_error_for == NULL) {
        PyErr_Format(PyExc_RuntimeError, "libqueue: status %d", (int)st);
        return NULL;
    }
    PyObject *e = PyObject_CallFunction(lq_fast_error_for, "i", (int)st);
    if (e != NULL) {
        PyObject *t = PyObject_Type(e);
        PyErr_SetObject(t, e);
        Py_DECREF(t);
        Py_DECREF(e);
    }
    return NULL;
}

/* Closed or settled: let the Python side's _live() raise the right error. */
static int check_live(Dlv *d) {
    if (dlv_open(d) != NULL && !d->settled)
        return 0;
    PyObject *r = PyObject_CallMethod((PyObject *)d, "_live", NULL);
    if (r == NULL)
        return -1;
    Py_DECREF(r);
    PyErr_SetString(PyExc_RuntimeError, "libqueue: delivery not live");
    return -1;
}

static int release_view(Dlv *d) {
    PyObject *v = d->view;
    if (v == NULL)
        return 0;
    d->view = NULL;
    int rc = 0;
    if (v != Py_None) {
        PyObject *r = PyObject_CallMethod(v, "release", NULL);
        if (r == NULL)
            rc = -1;
        Py_XDECREF(r);
    }
    Py_DECREF(v);
    return rc;
}

PyObject *lq_fast_make_delivery(lq_delivery *h, PyObject *parent) {
    PyTypeObject *tp = lq_fast_DeliveryClass ? lq_fast_DeliveryClass : lq_fast_DeliveryType;
    allocfunc alloc = (allocfunc)PyType_GetSlot(tp, Py_tp_alloc);
    Dlv *d = (Dlv *)alloc(tp, 0);
    if (d == NULL) {
        lq_fast_L.free(h);
        return NULL;
    }
    d->h = h;
    Py_XINCREF(parent);
    d->parent = parent;
    return (PyObject *)d;
}

static int dlv_init(PyObject *self, PyObject *a, PyObject *kw) {
    static char *kwlist[] = {"h", "borrowed", "peeked", NULL};
    PyObject *h;
    int borrowed = 0, peeked = 0;
    if (!PyArg_ParseTupleAndKeywords(a, kw, "O|pp", kwlist, &h, &borrowed, &peeked))
        return -1;
    Dlv *d = (Dlv *)self;
    d->h = addr(h);
    if (d->h == NULL)
        return -1;
    d->borrowed = (char)borrowed;
    d->peeked = (char)peeked;
    return 0;
}

static void dlv_dealloc(PyObject *self) {
    Dlv *d = (Dlv *)self;
    PyTypeObject *tp = Py_TYPE(self);
    if (d->weakrefs != NULL)
        PyObject_ClearWeakRefs(self);
    if (d->view != NULL) {
        PyObject *et, *ev, *tb;
        PyErr_Fetch(&et, &ev, &tb);
        if (release_view(d) < 0)
            PyErr_Clear();
        PyErr_Restore(et, ev, tb);
    }
    if (d->h != NULL && !d->borrowed)
        lq_fast_L.free(d->h);
    d->h = NULL;
    Py_CLEAR(d->body);
    Py_CLEAR(d->parent); /* after the free: the broker outlives its deliveries */
    freefunc f = (freefunc)PyType_GetSlot(tp, Py_tp_free);
    f(self);
    Py_DECREF(tp);
}

static PyObject *dlv_get_h(PyObject *self, void *c) {
    (void)c;
    Dlv *d = (Dlv *)self;
    if (dlv_open(d) == NULL)
        Py_RETURN_NONE;
    return PyLong_FromVoidPtr(d->h);
}

/* _enter() -> bool: counts a cffi call in (True), or False once closed. A close()
 * meanwhile (another thread) only marks the delivery; _leave() of the last call
 * frees it. Both run with the GIL held. */
static PyObject *dlv_enter(PyObject *self, PyObject *unused) {
    (void)unused;
    Dlv *d = (Dlv *)self;
    if (dlv_open(d) == NULL)
        Py_RETURN_FALSE;
    d->busy++;
    Py_RETURN_TRUE;
}

static PyObject *dlv_leave(PyObject *self, PyObject *unused) {
    (void)unused;
    Dlv *d = (Dlv *)self;
    if (d->busy > 0)
        d->busy--;
    if (d->closing && d->busy == 0) {
        if (release_view(d) < 0)
            return NULL;
        dlv_free(d);
        d->closing = 0;
    }
    Py_RETURN_NONE;
}

static int dlv_set_h(PyObject *self, PyObject *v, void *c) {
    (void)c;
    Dlv *d = (Dlv *)self;
    if (v == NULL || v == Py_None) {
        d->h = NULL;
        return 0;
    }
    void *p = addr(v);
    if (p == NULL)
        return -1;
    d->h = p;
    return 0;
}

static PyObject *dlv_body(PyObject *self, void *c) {
    (void)c;
    Dlv *d = (Dlv *)self;
    if (d->body != NULL) {
        Py_INCREF(d->body);
        return d->body;
    }
    if (check_live(d))
        return NULL;
    const uint8_t *p = NULL;
    size_t n = 0;
    lq_status st = lq_fast_L.body(d->h, &p, &n);
    if (st != LQ_OK)
        return raise_status(st);
    d->body = PyBytes_FromStringAndSize((const char *)p, (Py_ssize_t)n);
    Py_XINCREF(d->body);
    return d->body;
}

/* The object attributes `_body`, `_view` and `_parent`: one getter and setter,
 * the getset entry's closure is the field's offset in Dlv. NULL reads as None;
 * setting None (or deleting) stores NULL. The old value is released last. */
static PyObject **dlv_slot(PyObject *self, void *offset) {
    return (PyObject **)((char *)self + (size_t)offset);
}

static PyObject *dlv_get_slot(PyObject *self, void *offset) {
    PyObject *v = *dlv_slot(self, offset);
    if (v == NULL)
        v = Py_None;
    Py_INCREF(v);
    return v;
}

static int dlv_set_slot(PyObject *self, PyObject *v, void *offset) {
    PyObject **slot = dlv_slot(self, offset);
    PyObject *old = *slot;
    *slot = (v == NULL || v == Py_None) ? NULL : v;
    Py_XINCREF(*slot);
    Py_XDECREF(old);
    return 0;
}

static PyObject *dlv_id(PyObject *self, void *c) {
    (void)c;
    Dlv *d = (Dlv *)self;
    if (!d->has_id) {
        if (dlv_open(d) == NULL) {
            check_live(d); /* raises Closed */
            return NULL;
        }
        uint64_t id = 0;
        lq_status st = lq_fast_L.id(d->h, &id);
        if (st != LQ_OK)
            return raise_status(st);
        d->id = id;
        d->has_id = 1;
    }
    return PyLong_FromUnsignedLongLong(d->id);
}

static PyObject *dlv_cached_id(PyObject *self, void *c) {
    (void)c;
    Dlv *d = (Dlv *)self;
    if (!d->has_id)
        Py_RETURN_NONE;
    return PyLong_FromUnsignedLongLong(d->id);
}

#define FLAG_GETSET(name)                                                    \
    static PyObject *dlv_get_##name(PyObject *self, void *c) {               \
        (void)c;                                                             \
        return PyBool_FromLong(((Dlv *)self)->name);                         \
    }                                                                        \
    static int dlv_set_##name(PyObject *self, PyObject *v, void *c) {        \
        (void)c;                                                             \
        int t = v ? PyObject_IsTrue(v) : 0;                                  \
        if (t < 0)                                                           \
            return -1;                                                       \
        ((Dlv *)self)->name = (char)t;                                       \
        return 0;                                                            \
    }
FLAG_GETSET(settled)
FLAG_GETSET(borrowed)
FLAG_GETSET(peeked)

/* Settling: settled whatever the outcome, except when refused outright. */
static PyObject *settle(Dlv *d, lq_status st) {
    if (st == LQ_OK || st == LQ_LEASE_EXPIRED)
        d->settled = 1;
    if (st != LQ_OK)
        return raise_status(st);
    Py_RETURN_NONE;
}

static PyObject *dlv_ack(PyObject *self, PyObject *unused) {
    (void)unused;
    Dlv *d = (Dlv *)self;
    if (check_live(d))
        return NULL;
    if (release_view(d) < 0)
        return NULL;
    return settle(d, lq_fast_L.ack(d->h));
}

static PyObject *dlv_nack_plain(PyObject *self, PyObject *unused) {
    (void)unused;
    Dlv *d = (Dlv *)self;
    if (check_live(d))
        return NULL;
    if (release_view(d) < 0)
        return NULL;
    return settle(d, lq_fast_L.nack(d->h));
}

static PyObject *dlv_close(PyObject *self, PyObject *unused) {
    (void)unused;
    Dlv *d = (Dlv *)self;
    if (d->busy > 0) { /* a call in another thread is inside: the last one frees it */
        d->closing = 1;
        Py_RETURN_NONE;
    }
    if (release_view(d) < 0)
        return NULL;
    dlv_free(d);
    Py_RETURN_NONE;
}

static PyObject *dlv_closed(PyObject *self, void *c) {
    (void)c;
    return PyBool_FromLong(dlv_open((Dlv *)self) == NULL);
}

static PyGetSetDef dlv_getset[] = {
    {"_h", dlv_get_h, dlv_set_h, "the address of the C delivery, None once closed", NULL},
    {"body", dlv_body, NULL, "The body as bytes (copied once from the engine, then cached).", NULL},
    {"_body", dlv_get_slot, dlv_set_slot, NULL, (void *)offsetof(Dlv, body)},
    {"_view", dlv_get_slot, dlv_set_slot, NULL, (void *)offsetof(Dlv, view)},
    {"_parent", dlv_get_slot, dlv_set_slot, "what the delivery keeps alive",
     (void *)offsetof(Dlv, parent)},
    {"id", dlv_id, NULL, "The message id (unique within its queue, increasing).", NULL},
    {"_id", dlv_cached_id, NULL, NULL, NULL},
    {"_settled", dlv_get_settled, dlv_set_settled, NULL, NULL},
    {"_borrowed", dlv_get_borrowed, dlv_set_borrowed, NULL, NULL},
    {"_peeked", dlv_get_peeked, dlv_set_peeked, NULL, NULL},
    {"closed", dlv_closed, NULL, "Whether this delivery was closed.", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyMethodDef dlv_methods[] = {
    {"ack", dlv_ack, METH_NOARGS,
     "Acknowledges: the message is done and removed. LeaseExpired if the lease ran out "
     "first (the message went back to the queue)."},
    {"_nack", dlv_nack_plain, METH_NOARGS, NULL},
    {"close", dlv_close, METH_NOARGS,
     "Frees the delivery (an unsettled leased one comes back after its lease); "
     "with a call inside from another thread, once that call returns."},
    {"_enter", dlv_enter, METH_NOARGS, "Counts a call in: True, or False once closed."},
    {"_leave", dlv_leave, METH_NOARGS, "Counts a call out (frees a closed delivery's last)."},
    {NULL, NULL, 0, NULL},
};

static PyMemberDef dlv_members[] = {
    {"__weaklistoffset__", T_PYSSIZET, offsetof(Dlv, weakrefs), READONLY, NULL},
    {NULL, 0, 0, 0, NULL},
};

static PyType_Slot dlv_slots[] = {
    {Py_tp_init, dlv_init},
    {Py_tp_dealloc, dlv_dealloc},
    {Py_tp_getset, dlv_getset},
    {Py_tp_methods, dlv_methods},
    {Py_tp_members, dlv_members},
    {Py_tp_doc, "The C half of libqueue.Delivery."},
    {0, NULL},
};

PyType_Spec lq_fast_dlv_spec = {
    "libqueue._fast.Delivery", sizeof(Dlv), 0, Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE,
    dlv_slots,
};
