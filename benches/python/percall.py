"""Per-call cost of the ways Python can call libqueue: cffi (ABI mode), ctypes (CDLL,
which releases the GIL, and PyDLL, which keeps it) and the package's own extension
``libqueue._fast`` (keeps the GIL; used for the hot non-blocking calls).

Measures ``lq_version()`` (no arguments) and ``lq_queue_try_receive`` on an empty
queue (two pointer arguments, a status back), the shape of most hot calls.
Run: ``python benches/python/percall.py`` with the ``libqueue`` package importable.
"""

from __future__ import annotations

import ctypes
import json
import sys
import timeit

from libqueue import _ffi

N = 1_000_000


def per_call_ns(stmt, n: int = N) -> float:
    best = min(timeit.repeat(stmt, number=n, repeat=5))
    return best / n * 1e9


def measure() -> dict:
    # cffi, the package's thin layer.
    ffi, lib = _ffi.ffi, _ffi.lib
    broker_p = ffi.new("lq_broker **")
    assert lib.lq_broker_open(ffi.NULL, broker_p) == 0
    broker = broker_p[0]
    q_p = ffi.new("lq_queue **")
    assert lib.lq_broker_queue(broker, b"percall", 7, q_p) == 0
    q = q_p[0]
    out = ffi.new("lq_delivery **")
    cffi_version = per_call_ns(lib.lq_version)
    try_receive = lib.lq_queue_try_receive
    cffi_try = per_call_ns(lambda: try_receive(q, out))

    # ctypes, over the same loaded library file and the same queue handle.
    cl = ctypes.CDLL(_ffi._library_path())
    cl.lq_version.restype = ctypes.c_char_p
    cl.lq_version.argtypes = []
    cl.lq_queue_try_receive.restype = ctypes.c_int
    cl.lq_queue_try_receive.argtypes = [ctypes.c_void_p, ctypes.POINTER(ctypes.c_void_p)]
    cq = ctypes.c_void_p(int(ffi.cast("uintptr_t", q)))
    cout = ctypes.c_void_p()
    cref = ctypes.byref(cout)
    ct_version = per_call_ns(cl.lq_version)
    ct_fn = cl.lq_queue_try_receive
    ct_try = per_call_ns(lambda: ct_fn(cq, cref))
    assert ct_fn(cq, cref) == 1  # LQ_EMPTY: the call really ran

    # ctypes.PyDLL: the same, keeping the GIL.
    pl = ctypes.PyDLL(_ffi._library_path())
    pl.lq_version.restype = ctypes.c_char_p
    pl.lq_version.argtypes = []
    pl.lq_queue_try_receive.restype = ctypes.c_int
    pl.lq_queue_try_receive.argtypes = [ctypes.c_void_p, ctypes.POINTER(ctypes.c_void_p)]
    py_version = per_call_ns(pl.lq_version)
    py_fn = pl.lq_queue_try_receive
    py_try = per_call_ns(lambda: py_fn(cq, cref))

    # libqueue._fast: receive with timeout 0 (a try, GIL held) on the same queue.
    # The fast calls take the handle's owner (a Pin), which frees it on close().
    fast = _ffi.fast
    free = int(ffi.cast("uintptr_t", ffi.addressof(lib, "lq_queue_free")))
    qa = fast.Pin(int(ffi.cast("uintptr_t", q)), free, None)
    fast_recv = fast.receive
    assert fast_recv(qa, 0, False) == -1  # -LQ_EMPTY
    fast_try = per_call_ns(lambda: fast_recv(qa, 0, False))

    qa.close()  # frees q
    lib.lq_broker_free(broker)
    return {
        "cffi_abi": {"lq_version_ns": round(cffi_version, 1), "try_receive_empty_ns": round(cffi_try, 1)},
        "ctypes": {"lq_version_ns": round(ct_version, 1), "try_receive_empty_ns": round(ct_try, 1)},
        "ctypes_pydll": {"lq_version_ns": round(py_version, 1), "try_receive_empty_ns": round(py_try, 1)},
        "libqueue_fast": {"lq_version_ns": float("nan"), "try_receive_empty_ns": round(fast_try, 1)},
    }


if __name__ == "__main__":
    r = measure()
    print(f"{'':14} {'lq_version':>12} {'try_receive (empty)':>20}")
    for k, v in r.items():
        print(f"{k:14} {v['lq_version_ns']:>10.0f}ns {v['try_receive_empty_ns']:>18.0f}ns")
    if "--json" in sys.argv:
        print(json.dumps(r))
