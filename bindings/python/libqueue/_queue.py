"""``Queue``: send, receive, inspect one queue."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Any, AsyncIterator, Iterable, Iterator, Mapping, Optional

from ._core import SLICE_MS, BytesLike, Handle, count, in_main_thread, ms, seconds, to_bytes
from ._core import on_full as on_full_mode
from ._delivery import Delivery
from ._errors import Closed, Empty, LibqueueError, Timeout, check, error_for
from ._ffi import NULL, WAIT_FOREVER, fast, ffi, lib
from ._message import Message, SendOptions, build, build_from

if TYPE_CHECKING:
    from typing_extensions import Unpack

# The GIL-keeping calls (see _fast.c): an id or a Delivery, or -status on failure.
_send = fast.send
_receive = fast.receive
_send_with = lib.lq_queue_send_with
_REJECT = lib.LQ_ON_FULL_REJECT
_NOT_READY = -lib.LQ_EMPTY  # what fast.receive returns when nothing is ready


@dataclass(frozen=True)
class QueueStats:
    """Exact statistics of a queue. ``ready``, ``leased``, ``delayed``, ``bytes`` and
    ``oldest_age_ms`` are what it holds now; the rest are totals since it was created."""

    ready: int
    leased: int
    delayed: int
    bytes: int
    oldest_age_ms: int
    sent: int
    received: int
    acked: int
    nacked: int
    redelivered: int
    expired: int
    dead_lettered: int
    cancelled: int
    purged: int

    @property
    def depth(self) -> int:
        """Messages held: ready + leased + delayed."""
        return self.ready + self.leased + self.delayed

    @classmethod
    def _from_c(cls, s: Any) -> "QueueStats":
        return cls(*(getattr(s, f.name) for f in fields(cls)))


class Queue(Handle):
    """A handle on one queue. Shareable between threads. Get one from
    :meth:`Broker.queue` or :meth:`Namespace.queue`.

    ``for d in queue:`` receives forever (until the queue closes);
    ``async for d in queue:`` does the same on an asyncio loop without a thread.
    """

    __slots__ = ("_name", "_release")
    _pin: fast.Pin  # a queue has its C handle from the start
    _free_fn = "lq_queue_free"
    _close_fn = "lq_queue_close"  # wakes the calls waiting in this handle
    _kind = "queue"

    def __init__(self, h: Any, sync_always: bool = False, parent: Any = None) -> None:
        # ``parent``: the broker, namespace or topic it came from, kept alive by it.
        self._own(h, parent)
        # A broker with sync="always" makes sends wait for the disk: they release the GIL.
        self._release = sync_always
        ptr = ffi.new("const uint8_t **")
        ln = ffi.new("size_t *")
        check(lib.lq_queue_name(h, ptr, ln))
        self._name: str = ffi.unpack(ffi.cast("char *", ptr[0]), ln[0]).decode()

    def _error(self, st: int, timeout: Optional[float] = None, what: str = "") -> LibqueueError:
        """The exception for status ``st``: ``Closed`` naming this handle once it is
        closed, a ``Timeout`` naming the caller's ``timeout`` (a wait in slices ends
        with the last slice's status, which names the slice)."""
        if st == lib.LQ_CLOSED and self._pin.closed:
            return self._closed_error()
        if st == lib.LQ_TIMEOUT and timeout is not None and what:
            return Timeout(f"{what} within {seconds(timeout)}", lib.LQ_TIMEOUT)
        return error_for(st)

    @property
    def name(self) -> str:
        """The queue's name."""
        return self._name

    def close(self) -> None:
        """Closes this handle (not the queue): calls waiting in it in other threads
        (``receive``, ``receive_batch``, a ``send`` waiting for room, ``async``
        receives) raise :class:`Closed`, later calls too; the C handle is freed
        once no call is inside. Idempotent."""
        if self._pin.close():
            from ._aio import wake_all

            wake_all()  # asyncio waiters look again: their receive raises Closed

    def __repr__(self) -> str:
        return f"<libqueue.Queue {self._name!r}{' closed' if self.closed else ''}>"

    # -- sending -----------------------------------------------------------------

    def send(self, body: BytesLike | Message = b"", **options: Unpack[SendOptions]) -> int:
        """Sends one message and returns its id. ``body`` is bytes or str (UTF-8) or a
        :class:`Message`. Keyword options: ``headers`` (a mapping), ``name``,
        ``priority`` (0–9), ``ttl`` and ``delay`` (seconds), ``persistent``,
        ``correlation_id``, ``execution_id``, ``on_full`` and ``timeout``. When the
        queue is full, the queue's policy applies unless ``on_full`` is ``"block"``,
        ``"reject"`` (:class:`Full`) or ``"timeout"`` (wait ``timeout`` seconds, then
        :class:`Timeout`).

        A plain body goes in one call that keeps the GIL unless it must wait (a full
        queue whose policy blocks, or a broker with ``sync="always"``)."""
        if not options and type(body) is bytes:  # the hot path: no options to sort out
            r = _send(self._pin, body, self._release, -1, 0)
            if r < 0:
                raise self._error(-r)
            return r
        return self._send_options(body, **options)

    def _send_options(
        self,
        body: BytesLike | Message = b"",
        *,
        headers: Optional[Mapping[str, BytesLike]] = None,
        name: Optional[str] = None,
        priority: Optional[int] = None,
        ttl: Optional[float] = None,
        delay: Optional[float] = None,
        persistent: Optional[bool] = None,
        correlation_id: Optional[str] = None,
        execution_id: Optional[str] = None,
        on_full: Optional[str] = None,
        timeout: Optional[float] = None,
    ) -> int:
        if timeout is not None and on_full is None:
            ms(timeout)  # checked (a negative timeout is a ValueError), used with on_full
        if (headers is None and name is None and priority is None and ttl is None
                and delay is None and persistent is None and correlation_id is None
                and execution_id is None and not isinstance(body, Message)):
            # A plain body: one call, with the GIL held unless the send must wait.
            b = body if type(body) is bytes else to_bytes(body, "body")
            if on_full is None:
                r = _send(self._pin, b, self._release, -1, 0)
            else:
                r = _send(self._pin, b, self._release, on_full_mode(on_full), ms(timeout))
            if r < 0:
                raise self._error(-r, timeout, "the queue stayed full")
            return r
        if isinstance(body, Message) and not (
                headers is None and name is None and priority is None and ttl is None
                and delay is None and persistent is None and correlation_id is None
                and execution_id is None):
            raise TypeError("a Message carries its own headers, name, priority, ttl, delay, "
                            "persistent, correlation_id and execution_id: set them on it")
        mode = None if on_full is None else on_full_mode(on_full)  # checked before building
        mode_wait = None if mode is None else ms(timeout)

        def make() -> Any:
            if isinstance(body, Message):
                return build_from(body)
            return build(body, headers, name, priority, ttl, delay, persistent, correlation_id,
                         execution_id)

        idp = ffi.new("uint64_t *")
        # First a send that never waits for room; a wait (the queue full, a policy
        # that waits) runs interruptibly (Ctrl-C in the main thread).
        m = make()
        pin = self._pin
        if pin.enter():  # _consume inlined: this is a hot path
            try:
                st = _send_with(self._h, m, _REJECT, 0, idp)
            finally:
                pin.leave()
        else:
            lib.lq_message_free(m)
            raise self._closed_error()
        if st == lib.LQ_FULL and on_full != "reject":
            if mode is None or mode_wait is None:
                pm, t = ffi.new("uint32_t *"), ffi.new("uint64_t *")
                check(self._call(lib.lq_queue_get_on_full, pm, t))
                policy, wait = int(pm[0]), int(t[0])
            else:
                policy, wait = mode, mode_wait
            if policy != lib.LQ_ON_FULL_REJECT:
                m = make()
                st = self._consume(m, lib.lq_queue_send_with, m, policy, wait, idp, wait=True)
        if st:
            raise self._error(st, timeout, "the queue stayed full")
        return int(idp[0])

    def send_batch(self, messages: Iterable[BytesLike | Message]) -> list[int]:
        """Sends several messages atomically (all or none); returns their ids in order."""
        if self.closed:
            raise self._closed_error()
        items = messages if isinstance(messages, (list, tuple)) else list(messages)

        def build_all() -> list[Any]:
            built: list[Any] = []
            try:
                for m in items:
                    built.append(build_from(m))
            except BaseException:
                for m in built:
                    lib.lq_message_free(m)
                raise
            return built

        built = build_all()
        n = len(built)
        if n == 0:
            return []
        ids = ffi.new("uint64_t[]", n)
        # First a send that never waits for room; a wait (the queue full, a policy
        # that waits) runs interruptibly (Ctrl-C in the main thread).
        arr = ffi.new("lq_message *[]", built)
        st = self._consume(built, lib.lq_queue_send_batch_with, arr, n, _REJECT, 0, ids)
        if st == lib.LQ_FULL:
            mode, t = ffi.new("uint32_t *"), ffi.new("uint64_t *")
            check(self._call(lib.lq_queue_get_on_full, mode, t))
            if mode[0] != lib.LQ_ON_FULL_REJECT:
                built = build_all()
                arr = ffi.new("lq_message *[]", built)
                st = self._consume(built, lib.lq_queue_send_batch_with, arr, n, mode[0], t[0],
                                   ids, wait=True)
        if st:
            raise self._error(st)
        return list(ids)

    # -- receiving ---------------------------------------------------------------

    def receive(self, timeout: Optional[float] = None, *, auto_ack: bool = False) -> Delivery:
        """Receives a message (leased: settle it with ``ack``/``nack``). ``timeout``:
        ``None`` waits forever, ``0`` only tries (:class:`Empty` if nothing is ready),
        else seconds (:class:`Timeout`). ``auto_ack`` acks it at once (at-most-once).
        In the main thread the wait is cut in slices so Ctrl-C interrupts it."""
        # Takes a ready message with the GIL held; waits with it released (in the main
        # thread in slices, so Ctrl-C gets through); close() from another thread
        # ends the wait with Closed.
        r = _receive(self._pin, WAIT_FOREVER if timeout is None else ms(timeout), auto_ack)
        if type(r) is int:
            raise self._error(-r, timeout, "no message came")
        return r  # type: ignore[return-value]  # _fast makes Delivery instances (setup())

    def _sliced(self, fn: Any, t: int, *args: Any) -> int:
        """``fn(h, slice_ms, *args)`` until it does not time out or ``t`` ms passed:
        a wait in the main thread cut in slices so Ctrl-C gets through; each slice
        is a call counted into the handle, so close() ends it with Closed."""
        import time

        forever = t == WAIT_FOREVER
        deadline = time.monotonic() + t / 1000
        while True:
            left = SLICE_MS if forever else min(SLICE_MS, int((deadline - time.monotonic()) * 1000) + 1)
            st: int = self._call(fn, max(left, 1), *args)
            if st != lib.LQ_TIMEOUT:
                return st
            if not forever and time.monotonic() >= deadline:
                return st
            # Python runs pending signal handlers here (KeyboardInterrupt).

    def try_receive(self) -> Optional[Delivery]:
        """A ready message (leased), or ``None``."""
        r = _receive(self._pin, 0, False)
        if type(r) is int:
            if r == _NOT_READY:
                return None
            raise self._error(-r)
        return r  # type: ignore[return-value]  # _fast makes Delivery instances (setup())

    def receive_batch(self, max: int = 64, timeout: Optional[float] = None, *,
                      auto_ack: bool = False) -> list[Delivery]:
        """Up to ``max`` messages: waits as ``timeout`` says for the first, then takes
        what else is ready. An empty list if nothing came."""
        t = ms(timeout)
        if self.closed:
            raise self._closed_error()
        if count(max, "max") == 0:
            return []
        # One C call either way (one round trip when the broker is attached).
        fn = lib.lq_queue_receive_batch_auto_ack if auto_ack else lib.lq_queue_receive_batch
        arr = ffi.new("lq_delivery *[]", max)
        n = ffi.new("size_t *")
        if t > SLICE_MS and in_main_thread():
            st = self._sliced(lambda q, tt, a: fn(q, max, tt, a, n), t, arr)
        else:
            st = self._call(fn, max, t, arr, n)
        if st in (lib.LQ_EMPTY, lib.LQ_TIMEOUT):
            return []
        if st:
            raise self._error(st)
        return self._deliveries(arr, n[0])

    def ack_batch(self, deliveries: Iterable[Delivery]) -> list[Optional[LibqueueError]]:
        """Acks leased deliveries of this queue in one call (one round trip when the
        broker is attached): each as :meth:`Delivery.ack` would. Not all or nothing:
        the answer has, per delivery in order, ``None`` if it was acked or the
        exception its ack would have raised (e.g. ``LeaseExpired``; the detail text
        is the first failure's). Checked first, and then none is acked:
        ``TypeError`` for a non-Delivery, ``InvalidArgument`` for a delivery listed
        twice or of another queue, ``InvalidState`` for one settled, peeked or
        auto-acked. An empty list acks nothing."""
        ds = list(deliveries)
        for i, d in enumerate(ds):
            if not isinstance(d, Delivery):
                raise TypeError(f"deliveries[{i}] must be a Delivery, not {type(d).__name__}")
        if self.closed:
            raise self._closed_error()
        if not ds:
            return []
        entered: list[Delivery] = []
        try:
            for d in ds:
                if not d._enter():
                    d._p  # raises Closed
                entered.append(d)
                d._live()  # InvalidState once settled
            for d in ds:  # the bodies' memory goes with the acks
                d._release_view()
            arr = ffi.new("lq_delivery *[]", [ffi.cast("lq_delivery *", d._h) for d in ds])
            res = ffi.new("lq_status[]", [lib.LQ_PANIC] * len(ds))
            st = lib.lq_delivery_ack_batch(arr, len(ds), res)
            if st != lib.LQ_OK and res[0] == lib.LQ_PANIC:
                raise error_for(st)  # refused before any ack
            out: list[Optional[LibqueueError]] = []
            first: Optional[LibqueueError] = error_for(st) if st != lib.LQ_OK else None
            for i, d in enumerate(ds):
                s = res[i]
                if s in (lib.LQ_OK, lib.LQ_LEASE_EXPIRED):  # settled, as Delivery.ack
                    d._settled = True
                out.append(None if s == lib.LQ_OK else
                           first if first is not None and s == st else error_for(s))
            return out
        finally:
            for d in entered:
                d._leave()

    def _deliveries(self, arr: Any, n: int, peeked: bool = False) -> list[Delivery]:
        """Owned deliveries from a C array, each keeping this queue's broker alive."""
        out = []
        for i in range(n):
            d = Delivery(arr[i], peeked=peeked)
            d._parent = self._pin
            out.append(d)
        return out

    def __iter__(self) -> Iterator[Delivery]:
        """Receives forever; ends when the queue (or broker) closes."""
        while True:
            try:
                yield self.receive()
            except Closed:
                return

    # -- asyncio -----------------------------------------------------------------

    async def receive_async(self, timeout: Optional[float] = None) -> Delivery:
        """Awaits a message on the running asyncio loop, woken by the queue's pollable
        file descriptor (``loop.add_reader``): no polling, no thread. ``timeout`` in
        seconds (:class:`Timeout`), ``None`` waits forever."""
        ms(timeout)  # the argument check: a negative timeout is a ValueError
        ready = self.try_receive()
        if ready is not None:
            return ready
        from ._aio import waiter_for

        fut = waiter_for(self, asyncio.get_running_loop()).wait()
        d: Delivery
        if timeout is None:
            d = await fut
            return d
        try:
            d = await asyncio.wait_for(fut, timeout)
            return d
        except asyncio.TimeoutError:
            raise Timeout("no message within the timeout", lib.LQ_TIMEOUT) from None

    def __aiter__(self) -> AsyncIterator[Delivery]:
        return self._aiter()

    async def _aiter(self) -> AsyncIterator[Delivery]:
        while True:
            try:
                yield await self.receive_async()
            except Closed:
                return

    def fileno(self) -> int:
        """A descriptor readable exactly when a receive would find a message
        (level-triggered; owned by the queue, do not close it). Linux only."""
        fd = ffi.new("int32_t *")
        check(self._call(lib.lq_queue_fd, fd))
        return int(fd[0])

    # -- inspection ----------------------------------------------------------------

    def peek(self, max: int = 1) -> list[Delivery]:
        """Up to ``max`` ready messages in delivery order, without leasing them."""
        if count(max, "max") == 0:
            return []
        arr = ffi.new("lq_delivery *[]", max)
        n = ffi.new("size_t *")
        check(self._call(lib.lq_queue_peek, max, arr, n))
        return self._deliveries(arr, n[0], peeked=True)

    def purge(self) -> int:
        """Removes every ready and delayed message; returns how many."""
        out = ffi.new("uint64_t *")
        check(self._call(lib.lq_queue_purge, out))
        return int(out[0])

    def cancel(self, id: int) -> None:
        """Removes a ready or delayed message by id (:class:`NotFound`,
        :class:`InvalidState` if it is leased)."""
        check(self._call(lib.lq_queue_cancel, count(id, "id")))

    def stats(self) -> QueueStats:
        """Exact statistics now."""
        s = ffi.new("lq_queue_stats *")
        check(self._call(lib.lq_queue_get_stats, s))
        return QueueStats._from_c(s)

    def __len__(self) -> int:
        """Messages held (ready + leased + delayed)."""
        return self.stats().depth

    def flush(self) -> None:
        """Makes every persistent message sent so far durable."""
        check(self._call(lib.lq_queue_flush))

    @property
    def is_closed(self) -> bool:
        """Whether the queue itself was closed (broker closed or queue deleted), or
        this handle."""
        pin = self._pin
        if not pin.enter():
            return True
        try:
            out = ffi.new("bool *")
            check(lib.lq_queue_is_closed(self._h, out))
            return bool(out[0])
        finally:
            pin.leave()
