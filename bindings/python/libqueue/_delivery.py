"""``Delivery``: a received (or peeked) message."""

from __future__ import annotations

import threading
from typing import Any, Optional

from ._core import ms, to_text
from ._errors import Closed, InvalidState, check, error_for
from ._ffi import NULL, fast, ffi, lib
from ._message import EXECUTION_ID

_u64 = "uint64_t *"


class Delivery(fast.Delivery):
    """A received message. A leased delivery must be settled: :meth:`ack` removes
    the message, :meth:`nack` returns it (optionally after a delay); one left
    unsettled comes back when its lease runs out.

    The body, name and headers are read from the engine's memory on first use;
    :attr:`body` copies the body once into ``bytes``, :meth:`body_view` gives a
    zero-copy ``memoryview``. Both must be read **before** the delivery is
    settled (acked/nacked) or closed: settling releases the message.

    ``with queue.receive() as d:`` acks when the block succeeds and nacks when it
    raises (a peeked delivery is only closed).

    The hot half is in C (``libqueue._fast.Delivery``: the handle, ``body``, ``id``,
    ``ack``, ``close``, the free when collected), made with the GIL held; the rest
    goes through cffi. ``Delivery(h, borrowed=False, peeked=False)`` takes the
    address of an owned ``lq_delivery *`` (an int) or a cffi pointer to one.
    """

    __slots__ = ()
    _kind = "delivery"

    def __init__(self, h: Any, borrowed: bool = False, peeked: bool = False) -> None:
        if type(h) is not int:
            h = int(ffi.cast("uintptr_t", h))
        super().__init__(h, borrowed, peeked)

    @property
    def _p(self) -> Any:
        h = self._h
        if h is None:
            raise Closed(f"this {self._kind} was closed")
        return h

    def __enter__(self) -> "Delivery":
        return self

    def _c(self) -> Any:
        """The live delivery as a cffi pointer (for the calls without a fast path)."""
        return ffi.cast("lq_delivery *", self._live())

    def _live(self) -> Any:
        h = self._p
        if self._settled:
            raise InvalidState("the delivery was settled (acked or nacked): its message "
                               "is released; read the body before settling it")
        return h

    def _call(self, fn: Any, *args: Any) -> Any:
        """``fn(delivery, *args)`` counted into the delivery: a ``close()`` from
        another thread meanwhile frees it only once this call has returned."""
        if not self._enter():
            self._p  # raises Closed
        try:
            if self._settled:
                self._live()  # raises InvalidState
            return fn(ffi.cast("lq_delivery *", self._h), *args)
        finally:
            self._leave()

    def _slice(self, fn: Any, *args: Any) -> Optional[bytes]:
        def read(h: Any) -> Optional[bytes]:
            ptr = ffi.new("const uint8_t **")
            ln = ffi.new("size_t *")
            st = fn(h, *args, ptr, ln)
            if st == lib.LQ_NOT_FOUND:
                return None
            check(st)
            b: bytes = ffi.unpack(ffi.cast("char *", ptr[0]), ln[0])
            return b

        got: Optional[bytes] = self._call(read)
        return got

    def body_view(self) -> memoryview:
        """The body without a copy: a read-only ``memoryview`` of the engine's memory,
        valid until the delivery is settled or closed (it is released then; do not
        keep slices of it beyond that)."""
        if self._view is None:
            ptr = ffi.new("const uint8_t **")
            ln = ffi.new("size_t *")
            check(self._call(lib.lq_delivery_body, ptr, ln))
            self._view = memoryview(ffi.buffer(ptr[0], ln[0])).toreadonly()
        return self._view

    @property
    def text(self) -> str:
        """The body decoded as UTF-8."""
        return self.body.decode()

    @property
    def name(self) -> Optional[str]:
        """The message name (what it is about), or ``None``."""
        b = self._slice(lib.lq_delivery_name)
        return None if b is None else b.decode()

    @property
    def correlation_id(self) -> Optional[str]:
        """The correlation id, or ``None``."""
        b = self._slice(lib.lq_delivery_correlation_id)
        return None if b is None else b.decode()

    def header(self, key: str, default: Optional[bytes] = None) -> Optional[bytes]:
        """The value of header ``key`` (bytes), or ``default``."""
        k = to_text(key, "key")
        b = self._slice(lib.lq_delivery_header, k, len(k))
        return default if b is None else b

    @property
    def headers(self) -> dict[str, bytes]:
        """All headers, key → value bytes (a copy)."""
        out: dict[str, bytes] = self._call(self._headers)
        return out

    @staticmethod
    def _headers(h: Any) -> dict[str, bytes]:
        n = ffi.new("size_t *")
        check(lib.lq_delivery_header_count(h, n))
        kp, kl = ffi.new("const uint8_t **"), ffi.new("size_t *")
        vp, vl = ffi.new("const uint8_t **"), ffi.new("size_t *")
        out = {}
        for i in range(n[0]):
            check(lib.lq_delivery_header_at(h, i, kp, kl, vp, vl))
            key = ffi.unpack(ffi.cast("char *", kp[0]), kl[0]).decode()
            out[key] = ffi.unpack(ffi.cast("char *", vp[0]), vl[0])
        return out

    @property
    def execution_id(self) -> Optional[str]:
        """The ``execution_id`` header (the workflow envelope), or ``None``."""
        b = self.header(EXECUTION_ID)
        return None if b is None else b.decode()

    @property
    def priority(self) -> int:
        """Priority 0–9."""
        out = ffi.new("uint8_t *")
        check(self._call(lib.lq_delivery_priority, out))
        return int(out[0])

    @property
    def delivery_count(self) -> int:
        """Which delivery of the message this is (1 the first time, 0 for a peek)."""
        out = ffi.new("uint32_t *")
        check(self._call(lib.lq_delivery_count, out))
        return int(out[0])

    @property
    def persistent(self) -> bool:
        """Whether the message is persistent."""
        out = ffi.new("bool *")
        check(self._call(lib.lq_delivery_is_persistent, out))
        return bool(out[0])

    @property
    def expires_at(self) -> Optional[int]:
        """When the message expires (broker clock, nanoseconds), or ``None``."""
        out = ffi.new(_u64)
        st = self._call(lib.lq_delivery_expires_at, out)
        if st == lib.LQ_NOT_FOUND:
            return None
        check(st)
        return int(out[0])

    @property
    def settled(self) -> bool:
        """Whether :meth:`ack` or :meth:`nack` was called."""
        return self._settled

    def _release_view(self) -> None:
        v, self._view = self._view, None
        if v is not None:
            v.release()

    def _settle(self, st: int) -> None:
        # Settled whatever the outcome: the C delivery is settled by the call too
        # (LQ_LEASE_EXPIRED included), except when the call was refused outright.
        if st == lib.LQ_OK or st == lib.LQ_LEASE_EXPIRED:
            self._settled = True
            if st == lib.LQ_OK:
                return
        raise error_for(st)

    def nack(self, delay: Optional[float] = None, reason: Optional[str] = None) -> None:
        """Returns the message to the queue, after ``delay`` seconds if given (or to
        the dead-letter queue after max deliveries, with ``reason``)."""
        wait = 0 if delay is None else ms(delay, "delay")
        r = b"" if reason is None else to_text(reason, "reason")
        self._live()
        self._release_view()
        if delay is None and reason is None:
            self._nack()
        else:
            self._settle(self._call(lib.lq_delivery_nack_with, wait, r if r else NULL, len(r)))

    def extend(self, seconds: Optional[float] = None) -> None:
        """Renews the lease: it ends ``seconds`` from now (default: the queue's lease time)."""
        check(self._call(lib.lq_delivery_extend, 0 if seconds is None else ms(seconds, "seconds")))

    def __exit__(self, exc_type: object, *rest: object) -> None:
        try:
            if self._h is not None and not self._settled and not self._borrowed \
                    and not self._peeked:
                if exc_type is None:
                    self.ack()
                else:
                    self.nack()
        finally:
            self.close()

    def __repr__(self) -> str:
        state = "closed" if self._h is None else ("settled" if self._settled else "live")
        return f"<libqueue.Delivery id={self._id if self._h is None else self.id} {state}>"


fast.setup(Delivery, error_for, threading.main_thread().ident)
