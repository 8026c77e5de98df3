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
 * same copy of liblibqueue.so. Queue handles travel as their `Pin` (_fast_pin.c),
 * the owner every call goes through; deliveries as the `Delivery` type
 * (_fast_delivery.c).
 * Failures are returned, not raised: a negative number `-status` (or, where the
 * success value is bytes, the status as an int); the Python layer raises.
 *
 * Stable ABI (Py_LIMITED_API 3.9): one build serves every CPython >= 3.9.
 *
 * This file: the module (init, setup, its function table), send, receive, take
 * and the small getters on a delivery address. _fast.h lists the other files.
 */
#include "_fast.h"

#include <time.h>

typedef lq_status (*recv_fn)(const lq_queue *, uint64_t, lq_delivery **);

struct lq_fast_funcs lq_fast_L;

#define LQ_FAST_COUNT(field, name, ret, params) +1
enum { N_FUNCS = 0 LQ_FAST_FUNCS(LQ_FAST_COUNT) };

#define LQ_FAST_NAME(field, name, ret, params) " " #name
/* The names, space-separated, in the table's order (a leading space: split() skips it). */
static const char FUNC_NAMES[] = LQ_FAST_FUNCS(LQ_FAST_NAME);

/* Each field's type against the header's declaration of its function: assigning a
 * function to a pointer of another type does not compile (-Werror=incompatible-
 * pointer-types, set by setup.py). `sizeof` does not evaluate its operand, so no
 * symbol is referenced: the library stays unlinked. */
#define LQ_FAST_CHECK(field, name, ret, params) (void)sizeof(lq_fast_L.field = name);
static void check_types(void) { LQ_FAST_FUNCS(LQ_FAST_CHECK) }

static int ready = 0;

static PyObject *fast_init(PyObject *self, PyObject *table) {
    (void)self;
    check_types();
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
    /* Each field from its own slot, in the list's order. Function pointers from data
     * pointers: fine on every platform CPython runs on. */
    Py_ssize_t i = 0;
#define LQ_FAST_FILL(field, name, ret, params)                                             \
    memcpy(&lq_fast_L.field, &p[i++], sizeof lq_fast_L.field);
    LQ_FAST_FUNCS(LQ_FAST_FILL)
    ready = 1;
    Py_RETURN_NONE;
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


/* The main thread waits in slices of this many milliseconds, running Python's
 * signal handlers between two (Ctrl-C raises KeyboardInterrupt within a slice). */
#define SLICE_MS 100
static unsigned long main_ident; /* set by setup() */
#define INTERRUPTED ((lq_status)-1)

static uint64_t now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static int in_main_thread(void) { return PyThread_get_thread_ident() == main_ident; }

/* A send that waits for room as `mode` (an lq_on_full that waits) and `t` say, with
 * the GIL released; in the main thread in slices, running the signal handlers
 * between two (INTERRUPTED when one raised) and stopping at once when the pin is
 * closed. The caller has counted itself into `p`. */
static lq_status send_wait(Pin *p, const uint8_t *body, size_t len, uint32_t mode, uint64_t t,
                           uint64_t *id) {
    lq_queue *q = p->h;
    lq_message *m = NULL;
    lq_status st;
    if (!in_main_thread() || (mode == LQ_ON_FULL_TIMEOUT && t <= SLICE_MS)) {
        Py_BEGIN_ALLOW_THREADS
        st = lq_fast_L.message_new(body, len, &m);
        if (st == LQ_OK)
            st = lq_fast_L.send_with(q, m, mode, t, id);
        Py_END_ALLOW_THREADS
        return st;
    }
    int forever = mode != LQ_ON_FULL_TIMEOUT;
    uint64_t deadline = forever ? 0 : now_ms() + t;
    for (;;) {
        uint64_t slice = SLICE_MS;
        if (!forever) {
            uint64_t now = now_ms();
            if (now >= deadline)
                return LQ_TIMEOUT;
            if (deadline - now < slice)
                slice = deadline - now;
        }
        Py_BEGIN_ALLOW_THREADS
        st = lq_fast_L.message_new(body, len, &m);
        if (st == LQ_OK)
            st = lq_fast_L.send_with(q, m, LQ_ON_FULL_TIMEOUT, slice, id);
        Py_END_ALLOW_THREADS
        if (st != LQ_TIMEOUT)
            return st;
        if (p->closed)
            return LQ_CLOSED;
        if (PyErr_CheckSignals() < 0)
            return INTERRUPTED;
    }
}

/* send(pin, body: bytes, release: bool, on_full: int, timeout_ms) -> id, or -status.
 * A plain message. `on_full` -1 follows the queue's policy, else an lq_on_full
 * (with `timeout_ms` for LQ_ON_FULL_TIMEOUT); -2 says the queue has no capacity
 * limit (the caller made it so), so the queue's own send cannot wait. First a send
 * that never waits for room (reject when full), with the GIL held unless `release`
 * (a broker whose sends wait for the disk); only when the queue is full and the
 * policy waits, the wait (send_wait: interruptible in the main thread). */
static PyObject *fast_send(PyObject *self, PyObject *a) {
    (void)self;
    PyObject *v[5];
    if (args(a, 5, v))
        return NULL;
    Pin *p = pin_arg(v[0]);
    if (p == NULL)
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
    if (p->closed)
        return fail(LQ_CLOSED);
    lq_queue *q = p->h;
    const uint8_t *body = (const uint8_t *)buf;
    uint64_t id = 0;
    lq_status st;
    lq_message *m = NULL;
    p->busy++; /* from here to the end: inside the handle */
    if (on_full == -2) { /* a queue that is never full: one call, no wait for room */
        if (release) {
            Py_BEGIN_ALLOW_THREADS
            st = lq_fast_L.send_bytes(q, body, (size_t)len, &id);
            Py_END_ALLOW_THREADS
        } else {
            st = lq_fast_L.send_bytes(q, body, (size_t)len, &id);
        }
        goto done;
    }
    st = lq_fast_L.message_new(body, (size_t)len, &m);
    if (st != LQ_OK)
        goto done;
    if (release) {
        Py_BEGIN_ALLOW_THREADS
        st = lq_fast_L.send_with(q, m, LQ_ON_FULL_REJECT, 0, &id); /* consumes m */
        Py_END_ALLOW_THREADS
    } else {
        st = lq_fast_L.send_with(q, m, LQ_ON_FULL_REJECT, 0, &id); /* consumes m */
    }
    if (st != LQ_FULL || on_full == LQ_ON_FULL_REJECT)
        goto done;
    uint32_t mode = (uint32_t)on_full;
    uint64_t t = timeout_ms;
    if (on_full < 0 && (st = lq_fast_L.get_on_full(q, &mode, &t)) != LQ_OK)
        goto done;
    if (mode == LQ_ON_FULL_REJECT) {
        st = LQ_FULL;
        goto done;
    }
    st = send_wait(p, body, (size_t)len, mode, t, &id);
done:
    p->busy--;
    pin_release(p);
    if (st == INTERRUPTED)
        return NULL;
    if (st != LQ_OK)
        return fail(st);
    return PyLong_FromUnsignedLongLong(id);
}

/* One receive: a try with the GIL held; then, nothing ready and timeout_ms > 0, the
 * wait with the GIL released (in the main thread, in slices with the signal handlers
 * run between them, stopping at once when the pin is closed). INTERRUPTED when a
 * handler raised (the exception is set). The caller has counted itself into `p`. */
static lq_status receive(recv_fn fn, Pin *p, uint64_t timeout_ms, lq_delivery **d) {
    lq_queue *q = p->h;
    lq_status st = fn(q, 0, d);
    if (st != LQ_EMPTY || timeout_ms == 0)
        return st;
    if (timeout_ms <= SLICE_MS || !in_main_thread()) {
        Py_BEGIN_ALLOW_THREADS
        st = fn(q, timeout_ms, d);
        Py_END_ALLOW_THREADS
        return st;
    }
    int forever = timeout_ms == LQ_WAIT_FOREVER;
    uint64_t deadline = forever ? 0 : now_ms() + timeout_ms;
    for (;;) {
        uint64_t slice = SLICE_MS;
        if (!forever) {
            uint64_t now = now_ms();
            if (now >= deadline)
                return LQ_TIMEOUT;
            if (deadline - now < slice)
                slice = deadline - now;
        }
        Py_BEGIN_ALLOW_THREADS
        st = fn(q, slice, d);
        Py_END_ALLOW_THREADS
        if (st != LQ_TIMEOUT)
            return st;
        if (p->closed)
            return LQ_CLOSED;
        if (PyErr_CheckSignals() < 0)
            return INTERRUPTED;
    }
}

static int recv_args(PyObject *a, Py_ssize_t n, PyObject **v, Pin **p, uint64_t *t) {
    if (args(a, n, v))
        return -1;
    if ((*p = pin_arg(v[0])) == NULL)
        return -1;
    *t = PyLong_AsUnsignedLongLong(v[1]);
    if (*t == (uint64_t)-1 && PyErr_Occurred())
        return -1;
    return 0;
}

/* receive(pin, timeout_ms, auto_ack: bool) -> a Delivery, or -status
 * (LQ_EMPTY when timeout_ms is 0 and nothing is ready, LQ_TIMEOUT, LQ_CLOSED...).
 * The delivery keeps the pin (and so the broker) alive. */
static PyObject *fast_receive(PyObject *self, PyObject *a) {
    (void)self;
    PyObject *v[3];
    Pin *p;
    uint64_t t;
    if (recv_args(a, 3, v, &p, &t))
        return NULL;
    int auto_ack = PyObject_IsTrue(v[2]);
    if (auto_ack < 0)
        return NULL;
    if (p->closed)
        return fail(LQ_CLOSED);
    lq_delivery *d = NULL;
    p->busy++;
    lq_status st =
        receive(auto_ack ? lq_fast_L.receive_auto_ack : lq_fast_L.receive_timeout, p, t, &d);
    p->busy--;
    pin_release(p);
    if (st == INTERRUPTED)
        return NULL;
    if (st != LQ_OK)
        return fail(st);
    return lq_fast_make_delivery(d, (PyObject *)p);
}

/* A delivery's body as bytes, or the status as an int. */
static PyObject *body_of(lq_delivery *d) {
    const uint8_t *p = NULL;
    size_t n = 0;
    lq_status st = lq_fast_L.body(d, &p, &n);
    if (st != LQ_OK)
        return PyLong_FromLong((long)st);
    return PyBytes_FromStringAndSize((const char *)p, (Py_ssize_t)n);
}

/* take(pin, timeout_ms) -> body bytes, or the status as an int.
 * An auto-acked receive whose body is copied out and whose delivery is freed:
 * one call per message for `get`-style consumers. */
static PyObject *fast_take(PyObject *self, PyObject *a) {
    (void)self;
    PyObject *v[2];
    Pin *p;
    uint64_t t;
    if (recv_args(a, 2, v, &p, &t))
        return NULL;
    if (p->closed)
        return PyLong_FromLong((long)LQ_CLOSED);
    lq_delivery *d = NULL;
    p->busy++;
    lq_status st = receive(lq_fast_L.receive_auto_ack, p, t, &d);
    p->busy--;
    pin_release(p);
    if (st == INTERRUPTED)
        return NULL;
    if (st != LQ_OK)
        return PyLong_FromLong((long)st);
    PyObject *b = body_of(d);
    lq_fast_L.free(d);
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
    lq_status st = lq_fast_L.id(d, &id);
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
    return PyLong_FromLong((long)lq_fast_L.ack(d));
}

static PyObject *fast_nack(PyObject *self, PyObject *o) {
    (void)self;
    lq_delivery *d = addr(o);
    if (d == NULL)
        return NULL;
    return PyLong_FromLong((long)lq_fast_L.nack(d));
}

/* free(delivery) -> None. */
static PyObject *fast_free(PyObject *self, PyObject *o) {
    (void)self;
    lq_delivery *d = addr(o);
    if (d == NULL)
        return NULL;
    lq_fast_L.free(d);
    Py_RETURN_NONE;
}

/* setup(delivery_class, error_for, main_thread_ident): what receive() makes, how
 * errors are raised, which thread waits in slices. */
static PyObject *fast_setup(PyObject *self, PyObject *a) {
    (void)self;
    PyObject *cls, *ef;
    unsigned long ident;
    if (!PyArg_ParseTuple(a, "OOk", &cls, &ef, &ident))
        return NULL;
    main_ident = ident;
    if (!PyType_Check(cls) || !PyObject_IsSubclass(cls, (PyObject *)lq_fast_DeliveryType)) {
        PyErr_SetString(PyExc_TypeError, "setup: a subclass of _fast.Delivery");
        return NULL;
    }
    Py_INCREF(cls);
    Py_INCREF(ef);
    Py_XDECREF(lq_fast_DeliveryClass);
    Py_XDECREF(lq_fast_error_for);
    lq_fast_DeliveryClass = (PyTypeObject *)cls;
    lq_fast_error_for = ef;
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"init", fast_init, METH_O, "init(addresses): the C functions, in the order of FUNCS"},
    {"send", fast_send, METH_VARARGS, "send(pin, body, release, on_full, timeout_ms) -> id or -status"},
    {"receive", fast_receive, METH_VARARGS, "receive(pin, timeout_ms, auto_ack) -> Delivery or -status"},
    {"setup", fast_setup, METH_VARARGS, "setup(delivery_class, error_for, main_thread_ident)"},
    {"take", fast_take, METH_VARARGS, "take(pin, timeout_ms) -> body or status"},
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
    lq_fast_DeliveryType = (PyTypeObject *)PyType_FromSpec(&lq_fast_dlv_spec);
    if (lq_fast_DeliveryType == NULL ||
        PyModule_AddObject(m, "Delivery", (PyObject *)lq_fast_DeliveryType) < 0) {
        Py_XDECREF(lq_fast_DeliveryType);
        Py_DECREF(m);
        return NULL;
    }
    Py_INCREF(lq_fast_DeliveryType); /* the module's reference was stolen; keep ours */
    lq_fast_PinType = (PyTypeObject *)PyType_FromSpec(&lq_fast_pin_spec);
    if (lq_fast_PinType == NULL || PyModule_AddObject(m, "Pin", (PyObject *)lq_fast_PinType) < 0) {
        Py_XDECREF(lq_fast_PinType);
        Py_DECREF(m);
        return NULL;
    }
    Py_INCREF(lq_fast_PinType);
    if (PyModule_AddStringConstant(m, "FUNCS", FUNC_NAMES) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
