"""``Pool``: the consumer pool, with Python handlers chosen by message name."""

from __future__ import annotations

import threading
import traceback
from dataclasses import dataclass, fields
from typing import Any, Callable, Optional, TypeVar

from ._core import Handle, count, interruptible, ms, to_bytes, to_text
from ._delivery import Delivery
from ._errors import InvalidState, check
from ._ffi import WAIT_FOREVER, ffi, lib

Handler = Callable[[Delivery], Any]
F = TypeVar("F", bound=Handler)


@dataclass(frozen=True)
class PoolStats:
    """Counters of a pool."""

    handled: int
    succeeded: int
    failed: int
    panicked: int
    active: int
    max_active: int


def _handle(userdata: Any, d: Any, reply: Any) -> int:
    fn = ffi.from_handle(userdata)
    delivery = Delivery(d, borrowed=True)
    try:
        result = fn(delivery)
        if result is not None:
            b = to_bytes(result, "a handler's return value")
            lib.lq_reply_set_body(reply, b, len(b))
        return 0
    except BaseException as e:  # the handler failed: nack with backoff, error text
        text = f"{type(e).__name__}: {e}".encode("utf-8", "replace")
        lib.lq_reply_set_error(reply, text, len(text))
        return 1
    finally:
        delivery._h = None  # borrowed for the call only


#: The C handler every Python handler is called through.
_trampoline = ffi.callback("lq_handler_fn")(_handle)


class Pool(Handle):
    """A consumer pool on one queue: one handler per message name (and a default),
    at most ``size`` running at once on the pool's threads (the GIL is taken for
    each Python handler). A handler returns normally to ack (its return value,
    bytes or str, is the RPC reply) or raises to nack with backoff (dead-lettered
    after the queue's max deliveries). The delivery it gets is only valid during
    the call and is settled by the pool::

        pool = broker.pool("octavia", size=4)

        @pool.handler("create_load_balancer")
        def create_lb(d):
            ...

        with pool:          # start(); stop() on exit
            ...
    """

    __slots__ = ("_ns", "_queue", "_size", "_backoff", "_handlers", "_default", "_keep", "_last",
                 "_stopping")
    _free_fn = "lq_pool_free"
    _kind = "pool"

    def __init__(self, ns: Any, queue: str, size: int = 4,
                 backoff: Optional[tuple[float, float]] = None) -> None:
        self._h = None
        to_text(queue, "queue")
        if count(size, "size", 32) == 0:
            raise ValueError("size must be at least 1")
        if backoff is not None:
            if not isinstance(backoff, tuple) or len(backoff) != 2:
                raise TypeError("backoff must be a (first, most) tuple of seconds")
            ms(backoff[0], "backoff[0]")
            ms(backoff[1], "backoff[1]")
        self._pin = None  # set by start()
        self._stopping = threading.Lock()  # taken by the one stop() that stops it
        self._ns = ns  # the namespace, kept alive by the pool
        self._queue = queue
        self._size = size
        self._backoff = backoff
        self._handlers: dict[str, Handler] = {}
        self._default: Optional[Handler] = None
        self._keep: list[Any] = []
        self._last: Optional[PoolStats] = None

    def handler(self, name: str) -> Callable[[F], F]:
        """Decorator: ``fn`` handles messages named ``name``."""
        def register(fn: F) -> F:
            self.add_handler(name, fn)
            return fn
        return register

    def add_handler(self, name: str, fn: Handler) -> None:
        """Registers ``fn`` for messages named ``name`` (before :meth:`start`)."""
        if self._pin is not None:
            raise InvalidState("the pool is running: register handlers before start()")
        to_text(name, "name")
        if not callable(fn):
            raise TypeError(f"a handler must be callable, not {type(fn).__name__}")
        self._handlers[name] = fn

    def default_handler(self, fn: F) -> F:
        """Decorator: ``fn`` handles messages no named handler takes."""
        if not callable(fn):
            raise TypeError(f"a handler must be callable, not {type(fn).__name__}")
        self._default = fn
        return fn

    @property
    def running(self) -> bool:
        return self._pin is not None and not self._pin.closed

    def start(self) -> "Pool":
        """Starts the workers."""
        if self._pin is not None:
            raise InvalidState("the pool is already running" if self.running
                               else "the pool was stopped: make a new one")
        q = to_text(self._queue, "queue")
        out = ffi.new("lq_pool_builder **")
        check(self._ns._call(lib.lq_pool_builder_new, q, len(q), out))
        b = out[0]
        try:
            check(lib.lq_pool_builder_set_size(b, self._size))
            if self._backoff is not None:
                check(lib.lq_pool_builder_set_backoff_ms(b, ms(self._backoff[0]), ms(self._backoff[1])))
            keep = []
            for name, fn in self._handlers.items():
                hd = ffi.new_handle(fn)
                keep.append(hd)
                n = to_text(name, "name")
                check(lib.lq_pool_builder_add_handler(b, n, len(n), _trampoline, hd))
            if self._default is not None:
                hd = ffi.new_handle(self._default)
                keep.append(hd)
                check(lib.lq_pool_builder_set_default_handler(b, _trampoline, hd))
        except BaseException:
            lib.lq_pool_builder_free(b)
            raise
        p = ffi.new("lq_pool **")
        check(lib.lq_pool_builder_start(b, p))  # consumes the builder
        self._keep = keep  # the handles must outlive the workers
        self._own(p[0], self._ns)
        return self

    def stats(self) -> PoolStats:
        """Counters now (after :meth:`stop`: the final ones)."""
        if self._last is not None and not self.running:
            return self._last
        s = ffi.new("lq_pool_stats *")
        check(self._call(lib.lq_pool_get_stats, s))
        return PoolStats(*(getattr(s, f.name) for f in fields(PoolStats)))

    def stop(self, timeout: Optional[float] = None) -> int:
        """Stops taking messages and waits for running handlers (at most ``timeout``
        seconds; the messages of handlers still running then go back to the queue);
        frees the pool. Returns how many messages went back. In the main thread
        Ctrl-C interrupts the wait (the pool then finishes stopping on its own and
        is freed once it has). A second stop, or one while another runs, returns 0."""
        pin = self._pin
        if pin is None or not self._stopping.acquire(blocking=False):
            return 0
        n = ffi.new("size_t *")
        try:
            t = WAIT_FOREVER if timeout is None else ms(timeout)
            st = interruptible(self._call, lib.lq_pool_stop, t, n)
            if st not in (lib.LQ_OK, lib.LQ_INVALID_STATE):  # LQ_INVALID_STATE: already stopped
                check(st)
            s = ffi.new("lq_pool_stats *")
            check(self._call(lib.lq_pool_get_stats, s))
            self._last = PoolStats(*(getattr(s, f.name) for f in fields(PoolStats)))
            return int(n[0])
        finally:
            pin.close()  # freed once no call is inside (an interrupted stop first ends)

    def close(self) -> None:
        """Stops (waiting for running handlers) and frees the pool. Idempotent."""
        self.stop()

    def __enter__(self) -> "Pool":
        if self._pin is None:
            self.start()
        return self
