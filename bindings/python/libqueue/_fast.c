/* libqueue._fast: the hot, non-blocking calls of the package, with the GIL held.
 *
 * cffi releases the GIL around every C call. A producer and a consumer thread
 * then hand the GIL to each other on nearly every call (3-4 calls per message),
 * and that hand-off, not the call itself, is what a message costs. These
 * functions call the library WITHOUT releasing the GIL when the call cannot wait
 * (a try-receive, a send to a queue with room, body/id getters, ack, nack, free)
 * and release it only around a call that waits (a receive that found nothing
 * and has a timeout, a send to a full queue that blocks, a send that fsyncs).
 *
 * The library is not linked: `init` gets the addresses of the C functions from
 * the cffi-loaded library (`ffi.addressof(lib, name)`), so both layers use the
 * same copy of liblibqueue.so. Handles travel as integers (their addresses).
 * Failures are returned, not raised: a negative number `-status` (or, where the
 * success value is bytes, the status as an int); the Python layer raises.
 *
 * Stable ABI (Py_LIMITED_API 3.9): one build serves every CPython >= 3.9.
 */
#ifndef Py_LIMITED_API
#define Py_LIMITED_API 0x03090000
#endif
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include "libqueue.h"

typedef lq_status (*recv_fn)(const lq_queue *, uint64_t, lq_delivery **);

static struct {
    lq_status (*message_new)(const uint8_t *, size_t, lq_message **);
    lq_status (*send_with)(const lq_queue *, lq_message *, uint32_t, uint64_t, uint64_t *);
    lq_status (*send_bytes)(const lq_queue *, const uint8_t *, size_t, uint64_t *);
    recv_fn receive_timeout;
    recv_fn receive_auto_ack;
    lq_status (*body)(const lq_delivery *, const uint8_t **, size_t *);
    lq_status (*id)(const lq_delivery *, uint64_t *);
    lq_status (*ack)(lq_delivery *);
    lq_status (*nack)(lq_delivery *);
    void (*free)(lq_delivery *);
} L;

#define N_FUNCS 10

static int ready = 0;

static PyObject *fast_init(PyObject *self, PyObject *table) {
    (void)self;
    if (!PyTuple_Check(table) || PyTuple_Size(table) != N_FUNCS) {
        PyErr_SetString(PyExc_TypeError, "init: a tuple of the C function addresses");
        return NULL;
    }
    void *p[N_FUNCS];
    for (Py_ssize_t i = 0; i < N_FUNCS; i++) {
        p[i] = PyLong_AsVoidPtr(PyTuple_GetItem(table, i));
        if (p[i] == NULL) {
            if (!PyErr_Occurred())
                PyErr_SetString(PyExc_ValueError, "init: a NULL function address");
            return NULL;
        }
    }
    /* Function pointers from data pointers: fine on every platform CPython runs on. */
    memcpy(&L, p, sizeof L);
    ready = 1;
    Py_RETURN_NONE;
}

/* A handle address; NULL with an exception set on a bad argument. */
static void *addr(PyObject *o) {
    void *p = PyLong_AsVoidPtr(o);
    if (p == NULL && !PyErr_Occurred())
        PyErr_SetString(PyExc_ValueError, "libqueue: NULL handle");
    return p;
}

static int args(PyObject *a, Py_ssize_t n, PyObject **out) {
    if (!ready) {
        PyErr_SetString(PyExc_RuntimeError, "libqueue._fast: init() not called");
        return -1;
    }
    if (PyTuple_Size(a) != n) {
        PyErr_Format(PyExc_TypeError, "expected %zd arguments", n);
        return -1;
    }
    for (Py_ssize_t i = 0; i < n; i++)
        out[i] = PyTuple_GetItem(a, i);
    return 0;
}

static PyObject *fail(lq_status st) { return PyLong_FromLong(-(long)st); }

/* send(queue, body: bytes, release: bool, on_full: int, timeout_ms) -> id, or -status.
 * A plain message. `on_full` -1 follows the queue's policy, else an lq_on_full
 * (with `timeout_ms` for LQ_ON_FULL_TIMEOUT). Without `release`, first a send that
 * never waits (reject when full) with the GIL held; only when the queue is full
 * (and the policy may wait) the send is made again with the GIL released. With
 * `release` (a broker whose sends wait for the disk) it runs with the GIL released. */
static PyObject *fast_send(PyObject *self, PyObject *a) {
    (void)self;
    PyObject *v[5];
    if (args(a, 5, v))
        return NULL;
    lq_queue *q = addr(v[0]);
    if (q == NULL)
        return NULL;
    char *buf;
    Py_ssize_t len;
    if (PyBytes_AsStringAndSize(v[1], &buf, &len) < 0)
        return NULL;
    int release = PyObject_IsTrue(v[2]);
    if (release < 0)
        return NULL;
    long on_full = PyLong_AsLong(v[3]);
    if (on_full == -1 && PyErr_Occurred())
        return NULL;
    uint64_t timeout_ms = PyLong_AsUnsignedLongLong(v[4]);
    if (timeout_ms == (uint64_t)-1 && PyErr_Occurred())
        return NULL;
    const uint8_t *body = (const uint8_t *)buf;
    uint64_t id = 0;
    lq_status st;
    lq_message *m = NULL;
    if (!release) {
        st = L.message_new(body, (size_t)len, &m);
        if (st != LQ_OK)
            return fail(st);
        st = L.send_with(q, m, LQ_ON_FULL_REJECT, 0, &id); /* consumes m */
        if (st != LQ_FULL || on_full == LQ_ON_FULL_REJECT)
            goto done;
    }
    Py_BEGIN_ALLOW_THREADS
    if (on_full < 0) {
        st = L.send_bytes(q, body, (size_t)len, &id);
    } else {
        st = L.message_new(body, (size_t)len, &m);
        if (st == LQ_OK)
            st = L.send_with(q, m, (uint32_t)on_full, timeout_ms, &id);
    }
    Py_END_ALLOW_THREADS
done:
    if (st != LQ_OK)
        return fail(st);
    return PyLong_FromUnsignedLongLong(id);
}

/* One receive: a try with the GIL held, then (nothing ready, timeout_ms > 0) the
 * wait with the GIL released. */
static lq_status receive(recv_fn fn, lq_queue *q, uint64_t timeout_ms, lq_delivery **d) {
    lq_status st = fn(q, 0, d);
    if (st == LQ_EMPTY && timeout_ms > 0) {
        Py_BEGIN_ALLOW_THREADS
        st = fn(q, timeout_ms, d);
        Py_END_ALLOW_THREADS
    }
    return st;
}

static int recv_args(PyObject *a, Py_ssize_t n, PyObject **v, lq_queue **q, uint64_t *t) {
    if (args(a, n, v))
        return -1;
    if ((*q = addr(v[0])) == NULL)
        return -1;
    *t = PyLong_AsUnsignedLongLong(v[1]);
    if (*t == (uint64_t)-1 && PyErr_Occurred())
        return -1;
    return 0;
}

/* receive(queue, timeout_ms, auto_ack: bool) -> delivery address, or -status
 * (LQ_EMPTY when timeout_ms is 0 and nothing is ready, LQ_TIMEOUT, ...). */
static PyObject *fast_receive(PyObject *self, PyObject *a) {
    (void)self;
    PyObject *v[3];
    lq_queue *q;
    uint64_t t;
    if (recv_args(a, 3, v, &q, &t))
        return NULL;
    int auto_ack = PyObject_IsTrue(v[2]);
    if (auto_ack < 0)
        return NULL;
    lq_delivery *d = NULL;
    lq_status st = receive(auto_ack ? L.receive_auto_ack : L.receive_timeout, q, t, &d);
    if (st != LQ_OK)
        return fail(st);
    return PyLong_FromVoidPtr(d);
}

/* A delivery's body as bytes, or the status as an int. */
static PyObject *body_of(lq_delivery *d) {
    const uint8_t *p = NULL;
    size_t n = 0;
    lq_status st = L.body(d, &p, &n);
    if (st != LQ_OK)
        return PyLong_FromLong((long)st);
    return PyBytes_FromStringAndSize((const char *)p, (Py_ssize_t)n);
}

/* take(queue, timeout_ms) -> body bytes, or the status as an int.
 * An auto-acked receive whose body is copied out and whose delivery is freed:
 * one call per message for `get`-style consumers. */
static PyObject *fast_take(PyObject *self, PyObject *a) {
    (void)self;
    PyObject *v[2];
    lq_queue *q;
    uint64_t t;
    if (recv_args(a, 2, v, &q, &t))
        return NULL;
    lq_delivery *d = NULL;
    lq_status st = receive(L.receive_auto_ack, q, t, &d);
    if (st != LQ_OK)
        return PyLong_FromLong((long)st);
    PyObject *b = body_of(d);
    L.free(d);
    return b;
}

/* body(delivery) -> bytes, or the status as an int. */
static PyObject *fast_body(PyObject *self, PyObject *o) {
    (void)self;
    lq_delivery *d = addr(o);
    if (d == NULL)
        return NULL;
    return body_of(d);
}

/* id(delivery) -> id, or -status. */
static PyObject *fast_id(PyObject *self, PyObject *o) {
    (void)self;
    lq_delivery *d = addr(o);
    if (d == NULL)
        return NULL;
    uint64_t id = 0;
    lq_status st = L.id(d, &id);
    if (st != LQ_OK)
        return fail(st);
    return PyLong_FromUnsignedLongLong(id);
}

/* ack(delivery) / nack(delivery) -> status. */
static PyObject *fast_ack(PyObject *self, PyObject *o) {
    (void)self;
    lq_delivery *d = addr(o);
    if (d == NULL)
        return NULL;
    return PyLong_FromLong((long)L.ack(d));
}

static PyObject *fast_nack(PyObject *self, PyObject *o) {
    (void)self;
    lq_delivery *d = addr(o);
    if (d == NULL)
        return NULL;
    return PyLong_FromLong((long)L.nack(d));
}

/* free(delivery) -> None. */
static PyObject *fast_free(PyObject *self, PyObject *o) {
    (void)self;
    lq_delivery *d = addr(o);
    if (d == NULL)
        return NULL;
    L.free(d);
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"init", fast_init, METH_O, "init(addresses): the C functions, in the order of FUNCS"},
    {"send", fast_send, METH_VARARGS, "send(queue, body, release, on_full, timeout_ms) -> id or -status"},
    {"receive", fast_receive, METH_VARARGS, "receive(queue, timeout_ms, auto_ack) -> address or -status"},
    {"take", fast_take, METH_VARARGS, "take(queue, timeout_ms) -> body or status"},
    {"body", fast_body, METH_O, "body(delivery) -> bytes or status"},
    {"id", fast_id, METH_O, "id(delivery) -> id or -status"},
    {"ack", fast_ack, METH_O, "ack(delivery) -> status"},
    {"nack", fast_nack, METH_O, "nack(delivery) -> status"},
    {"free", fast_free, METH_O, "free(delivery)"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "libqueue._fast",
    "The hot non-blocking libqueue calls, made with the GIL held.", -1, methods,
    NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__fast(void) {
    PyObject *m = PyModule_Create(&module);
    if (m == NULL)
        return NULL;
    static const char *names =
        "lq_message_new lq_queue_send_with lq_queue_send_bytes lq_queue_receive_timeout "
        "lq_queue_receive_auto_ack lq_delivery_body lq_delivery_id lq_delivery_ack "
        "lq_delivery_nack lq_delivery_free";
    if (PyModule_AddStringConstant(m, "FUNCS", names) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
