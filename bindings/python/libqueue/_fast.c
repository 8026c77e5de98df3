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
 * same copy of liblibqueue.so. Queue handles travel as their `Pin` (below), the
 * owner every call goes through; deliveries as the `Delivery` type here.
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

#include <stddef.h>
#include <time.h>
#include <structmember.h>

#include "libqueue.h"

/* Every library function this module calls, once: X(field of L, C function, its
 * return type, its parameter types). The table `L`, its size, the names `init`
 * expects the addresses of (`FUNCS`, which the Python side reads to look them up)
 * and the type check below all come from this one list: a function cannot be
 * added, moved or retyped in one place only. */
#define LQ_FAST_FUNCS(X)                                                                   \
    X(message_new, lq_message_new, lq_status, (const uint8_t *, size_t, lq_message **))   \
    X(send_with, lq_queue_send_with, lq_status,                                            \
      (const lq_queue *, lq_message *, uint32_t, uint64_t, uint64_t *))                    \
    X(send_bytes, lq_queue_send_bytes, lq_status,                                          \
      (const lq_queue *, const uint8_t *, size_t, uint64_t *))                             \
    X(receive_timeout, lq_queue_receive_timeout, lq_status,                                \
      (const lq_queue *, uint64_t, lq_delivery **))                                        \
    X(receive_auto_ack, lq_queue_receive_auto_ack, lq_status,                              \
      (const lq_queue *, uint64_t, lq_delivery **))                                        \
    X(body, lq_delivery_body, lq_status, (const lq_delivery *, const uint8_t **, size_t *)) \
    X(id, lq_delivery_id, lq_status, (const lq_delivery *, uint64_t *))                    \
    X(ack, lq_delivery_ack, lq_status, (lq_delivery *))                                    \
    X(nack, lq_delivery_nack, lq_status, (lq_delivery *))                                  \
    X(free, lq_delivery_free, void, (lq_delivery *))                                       \
    X(get_on_full, lq_queue_get_on_full, lq_status, (const lq_queue *, uint32_t *, uint64_t *))

typedef lq_status (*recv_fn)(const lq_queue *, uint64_t, lq_delivery **);

#define LQ_FAST_FIELD(field, name, ret, params) ret(*field) params;
static struct {
    LQ_FAST_FUNCS(LQ_FAST_FIELD)
} L;

#define LQ_FAST_COUNT(field, name, ret, params) +1
enum { N_FUNCS = 0 LQ_FAST_FUNCS(LQ_FAST_COUNT) };

#define LQ_FAST_NAME(field, name, ret, params) " " #name
/* The names, space-separated, in the table's order (a leading space: split() skips it). */
static const char FUNC_NAMES[] = LQ_FAST_FUNCS(LQ_FAST_NAME);

/* Each field's type against the header's declaration of its function: assigning a
 * function to a pointer of another type does not compile (-Werror=incompatible-
 * pointer-types, set by setup.py). `sizeof` does not evaluate its operand, so no
 * symbol is referenced: the library stays unlinked. */
#define LQ_FAST_CHECK(field, name, ret, params) (void)sizeof(L.field = name);
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
    memcpy(&L.field, &p[i++], sizeof L.field);
    LQ_FAST_FUNCS(LQ_FAST_FILL)
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

/* ---- Pin: the owner of one C handle ----------------------------------------------
 * Every Python handle (Broker, Namespace, Queue, Topic, Pool, RpcClient) keeps its C
 * handle in a Pin, and every call goes through it: the Python layer brackets each
 * cffi call (which releases the GIL) with `enter()` / `leave()`, and the fast calls
 * here count themselves from start to end. `close()` marks the handle closed (later
 * calls fail with Closed), calls the handle's C close if it has one (which wakes the
 * calls waiting in it: `lq_queue_close`, `lq_rpc_client_close`, `lq_broker_close`)
 * and frees the C handle once no call is inside: at once, or when the last call
 * leaves. The count changes only with the GIL held, so it needs no atomics; the C
 * close and free run with the GIL released (they may wait for the disk or for
 * threads that need the GIL), counted as a call themselves. */
typedef void (*free_fn)(void *);
typedef lq_status (*close_fn)(const void *);

typedef struct {
    PyObject_HEAD
    void *h;          /* NULL once freed */
    Py_ssize_t busy;  /* calls inside */
    char closed;
    free_fn free;
    close_fn close;   /* NULL: the handle has no close of its own */
    PyObject *parent; /* kept alive as long as this pin (a queue keeps its broker) */
} Pin;

static PyTypeObject *PinType;

/* Frees the C handle if it is closed and no call is inside. */
static void pin_release(Pin *p) {
    if (p->closed && p->busy == 0 && p->h != NULL) {
        void *h = p->h;
        p->h = NULL;
        Py_BEGIN_ALLOW_THREADS
        p->free(h);
        Py_END_ALLOW_THREADS
    }
}

static Pin *pin_arg(PyObject *o) {
    if (Py_TYPE(o) != PinType) {
        PyErr_SetString(PyExc_TypeError, "libqueue._fast: a Pin");
        return NULL;
    }
    return (Pin *)o;
}

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

static PyType_Spec pin_spec = {
    "libqueue._fast.Pin", sizeof(Pin), 0, Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC, pin_slots,
};

static PyObject *make_delivery(lq_delivery *h, PyObject *parent);

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
        st = L.message_new(body, len, &m);
        if (st == LQ_OK)
            st = L.send_with(q, m, mode, t, id);
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
        st = L.message_new(body, len, &m);
        if (st == LQ_OK)
            st = L.send_with(q, m, LQ_ON_FULL_TIMEOUT, slice, id);
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
            st = L.send_bytes(q, body, (size_t)len, &id);
            Py_END_ALLOW_THREADS
        } else {
            st = L.send_bytes(q, body, (size_t)len, &id);
        }
        goto done;
    }
    st = L.message_new(body, (size_t)len, &m);
    if (st != LQ_OK)
        goto done;
    if (release) {
        Py_BEGIN_ALLOW_THREADS
        st = L.send_with(q, m, LQ_ON_FULL_REJECT, 0, &id); /* consumes m */
        Py_END_ALLOW_THREADS
    } else {
        st = L.send_with(q, m, LQ_ON_FULL_REJECT, 0, &id); /* consumes m */
    }
    if (st != LQ_FULL || on_full == LQ_ON_FULL_REJECT)
        goto done;
    uint32_t mode = (uint32_t)on_full;
    uint64_t t = timeout_ms;
    if (on_full < 0 && (st = L.get_on_full(q, &mode, &t)) != LQ_OK)
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
    lq_status st = receive(auto_ack ? L.receive_auto_ack : L.receive_timeout, p, t, &d);
    p->busy--;
    pin_release(p);
    if (st == INTERRUPTED)
        return NULL;
    if (st != LQ_OK)
        return fail(st);
    return make_delivery(d, (PyObject *)p);
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
    lq_status st = receive(L.receive_auto_ack, p, t, &d);
    p->busy--;
    pin_release(p);
    if (st == INTERRUPTED)
        return NULL;
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

/* ---- Delivery: the hot half of libqueue.Delivery, in C --------------------------
 * The Python class libqueue.Delivery subclasses it (names, headers, nack with a
 * delay, body_view, with-blocks). Here: the handle (`_h`, an int address or None),
 * the cached body and id, the settled/borrowed/peeked flags, `body`, `id`, `ack`,
 * `close` and the free on deallocation; `receive` returns instances directly. */

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
        L.free(h);
}

static PyTypeObject *DeliveryType;  /* the C base */
static PyTypeObject *DeliveryClass; /* libqueue.Delivery, what receive() makes */
static PyObject *error_for;         /* libqueue._errors.error_for */

/* Raises the libqueue exception for status `st`; returns NULL. */
static PyObject *raise_status(lq_status st) {
    if (error_for == NULL) {
        PyErr_Format(PyExc_RuntimeError, "libqueue: status %d", (int)st);
        return NULL;
    }
    PyObject *e = PyObject_CallFunction(error_for, "i", (int)st);
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

static PyObject *make_delivery(lq_delivery *h, PyObject *parent) {
    PyTypeObject *tp = DeliveryClass ? DeliveryClass : DeliveryType;
    allocfunc alloc = (allocfunc)PyType_GetSlot(tp, Py_tp_alloc);
    Dlv *d = (Dlv *)alloc(tp, 0);
    if (d == NULL) {
        L.free(h);
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
        L.free(d->h);
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
    lq_status st = L.body(d->h, &p, &n);
    if (st != LQ_OK)
        return raise_status(st);
    d->body = PyBytes_FromStringAndSize((const char *)p, (Py_ssize_t)n);
    Py_XINCREF(d->body);
    return d->body;
}

static PyObject *dlv_get_cached_body(PyObject *self, void *c) {
    (void)c;
    Dlv *d = (Dlv *)self;
    PyObject *b = d->body ? d->body : Py_None;
    Py_INCREF(b);
    return b;
}

static int dlv_set_cached_body(PyObject *self, PyObject *v, void *c) {
    (void)c;
    Dlv *d = (Dlv *)self;
    Py_XINCREF(v == Py_None ? NULL : v);
    Py_CLEAR(d->body);
    d->body = (v == Py_None) ? NULL : v;
    return 0;
}

static PyObject *dlv_get_parent(PyObject *self, void *c) {
    (void)c;
    Dlv *d = (Dlv *)self;
    PyObject *v = d->parent ? d->parent : Py_None;
    Py_INCREF(v);
    return v;
}

static int dlv_set_parent(PyObject *self, PyObject *v, void *c) {
    (void)c;
    Dlv *d = (Dlv *)self;
    PyObject *old = d->parent;
    d->parent = (v == NULL || v == Py_None) ? NULL : v;
    Py_XINCREF(d->parent);
    Py_XDECREF(old);
    return 0;
}

static PyObject *dlv_get_view(PyObject *self, void *c) {
    (void)c;
    Dlv *d = (Dlv *)self;
    PyObject *v = d->view ? d->view : Py_None;
    Py_INCREF(v);
    return v;
}

static int dlv_set_view(PyObject *self, PyObject *v, void *c) {
    (void)c;
    Dlv *d = (Dlv *)self;
    PyObject *old = d->view;
    d->view = (v == NULL || v == Py_None) ? NULL : v;
    Py_XINCREF(d->view);
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
        lq_status st = L.id(d->h, &id);
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
    return settle(d, L.ack(d->h));
}

static PyObject *dlv_nack_plain(PyObject *self, PyObject *unused) {
    (void)unused;
    Dlv *d = (Dlv *)self;
    if (check_live(d))
        return NULL;
    if (release_view(d) < 0)
        return NULL;
    return settle(d, L.nack(d->h));
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
    {"_body", dlv_get_cached_body, dlv_set_cached_body, NULL, NULL},
    {"_view", dlv_get_view, dlv_set_view, NULL, NULL},
    {"_parent", dlv_get_parent, dlv_set_parent, "what the delivery keeps alive", NULL},
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

static PyType_Spec dlv_spec = {
    "libqueue._fast.Delivery", sizeof(Dlv), 0, Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE,
    dlv_slots,
};

/* setup(delivery_class, error_for, main_thread_ident): what receive() makes, how
 * errors are raised, which thread waits in slices. */
static PyObject *fast_setup(PyObject *self, PyObject *a) {
    (void)self;
    PyObject *cls, *ef;
    unsigned long ident;
    if (!PyArg_ParseTuple(a, "OOk", &cls, &ef, &ident))
        return NULL;
    main_ident = ident;
    if (!PyType_Check(cls) || !PyObject_IsSubclass(cls, (PyObject *)DeliveryType)) {
        PyErr_SetString(PyExc_TypeError, "setup: a subclass of _fast.Delivery");
        return NULL;
    }
    Py_INCREF(cls);
    Py_INCREF(ef);
    Py_XDECREF(DeliveryClass);
    Py_XDECREF(error_for);
    DeliveryClass = (PyTypeObject *)cls;
    error_for = ef;
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
    DeliveryType = (PyTypeObject *)PyType_FromSpec(&dlv_spec);
    if (DeliveryType == NULL || PyModule_AddObject(m, "Delivery", (PyObject *)DeliveryType) < 0) {
        Py_XDECREF(DeliveryType);
        Py_DECREF(m);
        return NULL;
    }
    Py_INCREF(DeliveryType); /* the module's reference was stolen; keep ours */
    PinType = (PyTypeObject *)PyType_FromSpec(&pin_spec);
    if (PinType == NULL || PyModule_AddObject(m, "Pin", (PyObject *)PinType) < 0) {
        Py_XDECREF(PinType);
        Py_DECREF(m);
        return NULL;
    }
    Py_INCREF(PinType);
    if (PyModule_AddStringConstant(m, "FUNCS", FUNC_NAMES) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
