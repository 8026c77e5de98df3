"""``Queue``: send, receive, inspect one queue."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Any, AsyncIterator, Iterable, Iterator, Mapping, Optional

from ._core import SLICE_MS, BytesLike, Handle, count, in_main_thread, ms, to_bytes
from ._core import on_full as on_full_mode
from ._delivery import Delivery
from ._errors import Closed, Empty, Timeout, check, error_for
from ._ffi import NULL, WAIT_FOREVER, fast, ffi, lib
from ._message import Message, SendOptions, build, build_from

if TYPE_CHECKING:
    from typing_extensions import Unpack

# The GIL-keeping calls (see _fast.c): an id or a Delivery, or -status on failure.
_send = fast.send
_receive = fast.receive


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

    __slots__ = ("_name", "_a", "_release")
    _free = lib.lq_queue_free
    _kind = "queue"

    def __init__(self, h: Any, sync_always: bool = False) -> None:
        self._h = h
        self._a = int(ffi.cast("uintptr_t", h))  # the address, for the fast calls
        # A broker with sync="always" makes sends wait for the disk: they release the GIL.
        self._release = sync_always
        ptr = ffi.new("const uint8_t **")
        ln = ffi.new("size_t *")
        check(lib.lq_queue_name(h, ptr, ln))
        self._name: str = ffi.unpack(ffi.cast("char *", ptr[0]), ln[0]).decode()

    @property
    def name(self) -> str:
        """The queue's name."""
        return self._name

    def __repr__(self) -> str:
        return f"<libqueue.Queue {self._name!r}{' closed' if self._h is None else ''}>"

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
            if self._h is None:
                raise Closed("this queue was closed")
            r = _send(self._a, body, self._release, -1, 0)
            if r < 0:
                raise error_for(-r)
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
            if self._h is None:
                raise Closed("this queue was closed")
            b = body if type(body) is bytes else to_bytes(body, "body")
            if on_full is None:
                r = _send(self._a, b, self._release, -1, 0)
            else:
                r = _send(self._a, b, self._release, on_full_mode(on_full), ms(timeout))
            if r < 0:
                raise error_for(-r)
            return r
        h = self._p
        if isinstance(body, Message) and not (
                headers is None and name is None and priority is None and ttl is None
                and delay is None and persistent is None and correlation_id is None
                and execution_id is None):
            raise TypeError("a Message carries its own headers, name, priority, ttl, delay, "
                            "persistent, correlation_id and execution_id: set them on it")
        mode = None if on_full is None else on_full_mode(on_full)
        wait = None if mode is None else ms(timeout)
        idp = ffi.new("uint64_t *")
        if isinstance(body, Message):
            m = build_from(body)
        else:
            m = build(body, headers, name, priority, ttl, delay, persistent, correlation_id,
                      execution_id)
        if mode is None or wait is None:
            st = lib.lq_queue_send(h, m, idp)  # consumes m
        else:
            st = lib.lq_queue_send_with(h, m, mode, wait, idp)
        if st:
            raise error_for(st)
        return int(idp[0])

    def send_batch(self, messages: Iterable[BytesLike | Message]) -> list[int]:
        """Sends several messages atomically (all or none); returns their ids in order."""
        h = self._p
        built = []
        try:
            for m in messages:
                built.append(build_from(m))
        except BaseException:
            for m in built:
                lib.lq_message_free(m)
            raise
        n = len(built)
        if n == 0:
            return []
        arr = ffi.new("lq_message *[]", built)
        ids = ffi.new("uint64_t[]", n)
        check(lib.lq_queue_send_batch(h, arr, n, ids))  # consumes every message
        return list(ids)

    # -- receiving ---------------------------------------------------------------

    def receive(self, timeout: Optional[float] = None, *, auto_ack: bool = False) -> Delivery:
        """Receives a message (leased: settle it with ``ack``/``nack``). ``timeout``:
        ``None`` waits forever, ``0`` only tries (:class:`Empty` if nothing is ready),
        else seconds (:class:`Timeout`). ``auto_ack`` acks it at once (at-most-once).
        In the main thread the wait is cut in slices so Ctrl-C interrupts it."""
        if self._h is None:
            raise Closed("this queue was closed")
        # Takes a ready message with the GIL held; waits with it released (in the main
        # thread in slices, so Ctrl-C gets through).
        r = _receive(self._a, WAIT_FOREVER if timeout is None else ms(timeout), auto_ack)
        if type(r) is int:
            raise error_for(-r)
        return r  # type: ignore[return-value]  # _fast makes Delivery instances (setup())

    @staticmethod
    def _sliced(fn: Any, h: Any, t: int, out: Any) -> int:
        """``fn(h, slice_ms, out)`` until it does not time out or ``t`` ms passed:
        a wait in the main thread cut in slices so Ctrl-C gets through."""
        import time

        forever = t == WAIT_FOREVER
        deadline = time.monotonic() + t / 1000
        while True:
            left = SLICE_MS if forever else min(SLICE_MS, int((deadline - time.monotonic()) * 1000) + 1)
            st: int = fn(h, max(left, 1), out)
            if st != 2:  # anything but LQ_TIMEOUT
                return st
            if not forever and time.monotonic() >= deadline:
                return st
            # Python runs pending signal handlers here (KeyboardInterrupt).

    def try_receive(self) -> Optional[Delivery]:
        """A ready message (leased), or ``None``."""
        if self._h is None:
            raise Closed("this queue was closed")
        r = _receive(self._a, 0, False)
        if type(r) is int:
            if r == -1:
                return None
            raise error_for(-r)
        return r  # type: ignore[return-value]  # _fast makes Delivery instances (setup())

    def receive_batch(self, max: int = 64, timeout: Optional[float] = None, *,
                      auto_ack: bool = False) -> list[Delivery]:
        """Up to ``max`` messages: waits as ``timeout`` says for the first, then takes
        what else is ready. An empty list if nothing came."""
        h = self._p
        t = ms(timeout)
        if count(max, "max") == 0:
            return []
        if auto_ack:  # the C ABI has no batch auto-ack: ack them here
            ds = self.receive_batch(max, timeout)
            for d in ds:
                d._body = d.body
                d.ack()
            return ds
        arr = ffi.new("lq_delivery *[]", max)
        n = ffi.new("size_t *")
        if t > SLICE_MS and in_main_thread():
            st = self._sliced(lambda q, tt, a: lib.lq_queue_receive_batch(q, max, tt, a, n), h, t, arr)
        else:
            st = lib.lq_queue_receive_batch(h, max, t, arr, n)
        if st in (1, 2):
            return []
        check(st)
        return [Delivery(arr[i]) for i in range(n[0])]

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
            raise Timeout("no message within the timeout", 2) from None

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
        check(lib.lq_queue_fd(self._p, fd))
        return int(fd[0])

    # -- inspection ----------------------------------------------------------------

    def peek(self, max: int = 1) -> list[Delivery]:
        """Up to ``max`` ready messages in delivery order, without leasing them."""
        if count(max, "max") == 0:
            return []
        arr = ffi.new("lq_delivery *[]", max)
        n = ffi.new("size_t *")
        check(lib.lq_queue_peek(self._p, max, arr, n))
        return [Delivery(arr[i], peeked=True) for i in range(n[0])]

    def purge(self) -> int:
        """Removes every ready and delayed message; returns how many."""
        out = ffi.new("uint64_t *")
        check(lib.lq_queue_purge(self._p, out))
        return int(out[0])

    def cancel(self, id: int) -> None:
        """Removes a ready or delayed message by id (:class:`NotFound`,
        :class:`InvalidState` if it is leased)."""
        check(lib.lq_queue_cancel(self._p, count(id, "id")))

    def stats(self) -> QueueStats:
        """Exact statistics now."""
        s = ffi.new("lq_queue_stats *")
        check(lib.lq_queue_get_stats(self._p, s))
        return QueueStats._from_c(s)

    def __len__(self) -> int:
        """Messages held (ready + leased + delayed)."""
        return self.stats().depth

    def flush(self) -> None:
        """Makes every persistent message sent so far durable."""
        check(lib.lq_queue_flush(self._p))

    @property
    def is_closed(self) -> bool:
        """Whether the queue itself was closed (broker closed or queue deleted)."""
        if self._h is None:
            return True
        out = ffi.new("bool *")
        check(lib.lq_queue_is_closed(self._h, out))
        return bool(out[0])
