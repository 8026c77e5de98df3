/* libqueue._fast's internal header: what its C files share. The extension's files:
 *
 *   _fast.h           this header: the includes, the list of library functions
 *                     (LQ_FAST_FUNCS) and the table `lq_fast_L` it types, the Pin
 *                     struct, and what the files share of each other (`lq_fast_`
 *                     names; `addr`, `pin_release`, `pin_arg` as static inlines).
 *   _fast.c           the module: its comment (what _fast is for), the table `lq_fast_L`
 *                     (its names `FUNCS`, its compile-time type check, `init`), `setup`,
 *                     send / receive / take and the small getters on a delivery
 *                     address (body, id, ack, nack, free), the module's init.
 *   _fast_pin.c       the Pin type: the owner of one C handle, counts the calls in flight.
 *   _fast_delivery.c  the C Delivery type, the base of libqueue.Delivery.
 *
 * The shared names are hidden (LQ_FAST_INTERNAL): like the static ones they were
 * when one file held them all, they stay out of the extension's dynamic symbols,
 * which export PyInit__fast only.
 */
#ifndef LIBQUEUE_FAST_H
#define LIBQUEUE_FAST_H

#ifndef Py_LIMITED_API
#define Py_LIMITED_API 0x03090000
#endif
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <stddef.h>

#include "libqueue.h"

#if defined(__GNUC__)
#define LQ_FAST_INTERNAL __attribute__((visibility("hidden")))
#else
#define LQ_FAST_INTERNAL
#endif

/* Every library function this module calls, once: X(field of lq_fast_L, C function, its
 * return type, its parameter types). The table `lq_fast_L`, its size, the names `init`
 * expects the addresses of (`FUNCS`, which the Python side reads to look them up)
 * and the type check (_fast.c) all come from this one list: a function cannot be
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

#define LQ_FAST_FIELD(field, name, ret, params) ret(*field) params;
struct lq_fast_funcs {
    LQ_FAST_FUNCS(LQ_FAST_FIELD)
};
/* The table, filled by `init` (_fast.c). */
LQ_FAST_INTERNAL extern struct lq_fast_funcs lq_fast_L;

/* A handle address; NULL with an exception set on a bad argument. */
static inline void *addr(PyObject *o) {
    void *p = PyLong_AsVoidPtr(o);
    if (p == NULL && !PyErr_Occurred())
        PyErr_SetString(PyExc_ValueError, "libqueue: NULL handle");
    return p;
}

/* ---- Pin (_fast_pin.c) ---------------------------------------------------------- */
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

LQ_FAST_INTERNAL extern PyTypeObject *lq_fast_PinType;
LQ_FAST_INTERNAL extern PyType_Spec lq_fast_pin_spec;

/* Frees the C handle if it is closed and no call is inside. */
static inline void pin_release(Pin *p) {
    if (p->closed && p->busy == 0 && p->h != NULL) {
        void *h = p->h;
        p->h = NULL;
        Py_BEGIN_ALLOW_THREADS
        p->free(h);
        Py_END_ALLOW_THREADS
    }
}

static inline Pin *pin_arg(PyObject *o) {
    if (Py_TYPE(o) != lq_fast_PinType) {
        PyErr_SetString(PyExc_TypeError, "libqueue._fast: a Pin");
        return NULL;
    }
    return (Pin *)o;
}

/* ---- Delivery (_fast_delivery.c) ------------------------------------------------ */
/* The C base; libqueue.Delivery, what receive() makes; libqueue._errors.error_for. */
LQ_FAST_INTERNAL extern PyTypeObject *lq_fast_DeliveryType;
LQ_FAST_INTERNAL extern PyTypeObject *lq_fast_DeliveryClass;
LQ_FAST_INTERNAL extern PyObject *lq_fast_error_for;
LQ_FAST_INTERNAL extern PyType_Spec lq_fast_dlv_spec;

/* A new delivery (an instance of lq_fast_DeliveryClass once setup() ran) owning
 * `h` and keeping `parent` alive; frees `h` when it cannot be made. */
LQ_FAST_INTERNAL PyObject *lq_fast_make_delivery(lq_delivery *h, PyObject *parent);

#endif /* LIBQUEUE_FAST_H */
