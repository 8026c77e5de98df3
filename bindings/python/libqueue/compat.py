"""A drop-in for the standard library's :mod:`queue` module, on libqueue.

``Queue``, ``LifoQueue``, ``PriorityQueue`` and ``SimpleQueue`` behave as their
:mod:`queue` namesakes (``put``/``get`` with ``block`` and ``timeout``,
``put_nowait``/``get_nowait``, ``qsize``, ``empty``, ``full``, ``task_done``,
``join``, and on ``Queue``/``LifoQueue``/``PriorityQueue`` ``shutdown()`` and
``is_shutdown`` with Python 3.13's semantics, on every Python version) and raise
:class:`Empty`, :class:`Full` and :class:`ShutDown`, which *are* ``queue.Empty``,
``queue.Full`` (and, on 3.13+, ``queue.ShutDown``): ``except queue.Empty`` and
``except compat.Empty`` catch the same thing.
In memory, ``Queue`` and ``SimpleQueue`` hand items over by reference, as
:mod:`queue` does (any object; the message carries a key); persistent queues and
``PriorityQueue`` / ``LifoQueue`` pickle them (any picklable object).

Given ``path=...`` a queue is **persistent**: its items live in a libqueue journal
in that directory and survive the process being killed (even ``SIGKILL``) and
restarted; reopening the same path brings back every item not yet taken. One process
at a time may open a path (:class:`libqueue.Locked` otherwise). ``sync="always"``
also survives a power cut, at the cost of an fsync per put (group commit).

``Queue`` and ``SimpleQueue`` wait inside the engine (the GIL is released while they
wait), in 100 ms slices so that Ctrl-C (main thread) and ``shutdown()`` (any thread)
get through; ``PriorityQueue`` and ``LifoQueue`` order items in Python (a heap / a stack
indexed by message id) and keep them in libqueue for persistence.
"""

from __future__ import annotations

import heapq
import os
import itertools
import pickle
import queue as _stdqueue
import struct
import sys
import threading
import time
from typing import Any, Generic, Optional, TypeVar, Union

from ._broker import Broker
from ._core import SLICE_MS, ms
from ._errors import Closed, InvalidState, NotFound, error_for
from ._ffi import fast, lib
from ._options import QueueOptions

__all__ = ["Queue", "LifoQueue", "PriorityQueue", "SimpleQueue", "Empty", "Full", "ShutDown"]

#: Raised by ``get`` when no item is available: the standard library's ``queue.Empty``.
Empty = _stdqueue.Empty
#: Raised by ``put`` when the queue is full: the standard library's ``queue.Full``.
Full = _stdqueue.Full

if sys.version_info >= (3, 13):
    #: Raised by ``put``/``get`` on a queue that was shut down: ``queue.ShutDown``.
    ShutDown = _stdqueue.ShutDown
else:

    class ShutDown(Exception):
        """Raised by ``put``/``get`` on a queue that was shut down (``queue.ShutDown``
        of Python 3.13, which older versions lack)."""


T = TypeVar("T")
_Q = TypeVar("_Q", bound="_FifoBase[Any]")
_I = TypeVar("_I", bound="_Indexed[Any]")
_PROTO = pickle.HIGHEST_PROTOCOL
_send, _take = fast.send, fast.take  # the GIL-keeping calls (see _fast.c)
_dumps, _loads = pickle.dumps, pickle.loads
_pack, _unpack = struct.Struct("<Q").pack, struct.Struct("<Q").unpack
PathLike = Union[str, "os.PathLike[str]", None]


class _Store:
    """The broker and queue a compat queue keeps its items in."""

    def __init__(self, path: PathLike, name: str, sync: str, maxsize: int, fifo: bool) -> None:
        if path is not None:
            os.makedirs(path, exist_ok=True)
        self.broker = Broker(path, sync=sync)
        opts = QueueOptions(persistent=path is not None, strict_fifo=True)
        if fifo and maxsize > 0:
            opts.max_messages = maxsize
            opts.on_full = "block"
        self.queue = self.broker.default_namespace.queue(name, opts)
        # The queue's owner (never a raw address): the fast calls go through it, so a
        # closed queue raises Closed (see _fast.c).
        self.a = self.queue._pin
        self.release = self.queue._release

    def ready(self) -> int:
        s = self.queue.stats()
        return s.ready + s.delayed


# The header's numbers, bound once for the put path (no lookup per call).
_REJECT = lib.LQ_ON_FULL_REJECT
_WAIT_SLICE = lib.LQ_ON_FULL_TIMEOUT
_TIMED_OUT = -lib.LQ_TIMEOUT  # what fast.send returns when a wait ran out
_SHUT = -1000  # what _put_data returns when the queue was shut down during its wait


class _FifoBase(Generic[T]):
    #: Whether ``shutdown()`` was called (``SimpleQueue`` never shuts down).
    is_shutdown: bool = False

    def __init__(self, maxsize: int = 0, path: PathLike = None, *, name: str = "compat",
                 sync: str = "none") -> None:
        self.maxsize = maxsize
        self.path = path
        self._store = _Store(path, name, sync, maxsize, fifo=True)
        self._a = self._store.a
        self._release = self._store.release
        # In memory, items are not pickled: they wait in this dict (by reference, as in
        # queue.Queue) and the message carries their key; the engine does the ordering,
        # the counting and the waiting. With a path, the message carries the pickle.
        self._items: Optional[dict[int, T]] = None if path is not None else {}
        self._keys = itertools.count()

    def put(self, item: T, block: bool = True, timeout: Optional[float] = None) -> None:
        """Puts ``item``; when the queue is full, waits (``block``, at most
        ``timeout`` seconds) or raises :class:`Full`."""
        if timeout is not None and block and timeout < 0:
            raise ValueError("'timeout' must be a non-negative number")
        if self.is_shutdown:
            raise ShutDown
        items = self._items
        if items is None:
            data = _dumps(item, _PROTO)
        else:
            key = next(self._keys)  # atomic under the GIL
            items[key] = item
            data = _pack(key)
        pending = self._pending  # Queue only: count the task before the item is
        if pending is not None:  # visible (a get() + task_done() may follow at once)
            pending.append(None)
        try:
            if self.maxsize <= 0:  # unbounded (never full): one call, the GIL held
                r = _send(self._a, data, self._release, -2, 0)
            else:
                r = self._put_data(data, block, timeout)
        except BaseException:  # interrupted in a wait (the item may be in: keep it)
            self._added(-1)
            raise
        if r < 0:
            self._added(-1)
            if items is not None:
                items.pop(key, None)
            if r == _SHUT:
                raise ShutDown
            if r in (-lib.LQ_TIMEOUT, -lib.LQ_FULL):
                raise Full
            if r == -lib.LQ_CLOSED and self._a.closed:
                raise Closed("this queue was closed", lib.LQ_CLOSED)
            raise error_for(-r)
        if self.is_shutdown:  # shut down while this put was under way: take it back
            self._retract(r, None if items is None else key)

    def _retract(self, id: int, key: Optional[int]) -> None:
        """A put that raced with ``shutdown()``: remove its message and raise
        :class:`ShutDown`, unless a ``get`` took it already (then the put happened
        before the shutdown, and stands)."""
        try:
            self._store.queue.cancel(id)
        except (NotFound, InvalidState):
            return
        self._added(-1)
        if key is not None and self._items is not None:
            self._items.pop(key, None)
        raise ShutDown

    def _put_data(self, data: bytes, block: bool, timeout: Optional[float]) -> int:
        """The message id, or -status. The send keeps the GIL unless it must wait."""
        a, release = self._a, self._release
        if not block:
            return _send(a, data, release, _REJECT, 0)
        # The wait, in slices: Ctrl-C gets through in the main thread, and a
        # shutdown() is seen within a slice in every thread.
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            left = SLICE_MS if deadline is None else max(
                0, min(SLICE_MS, int((deadline - time.monotonic()) * 1000) + 1))
            r = _send(a, data, release, _WAIT_SLICE, left)
            if r != _TIMED_OUT or (deadline is not None and time.monotonic() >= deadline):
                return r
            if self.is_shutdown:
                return _SHUT

    _pending: Optional[list[None]] = None

    def _added(self, n: int) -> None:
        pass

    def get(self, block: bool = True, timeout: Optional[float] = None) -> T:
        """Removes and returns an item; when there is none, waits (``block``, at most
        ``timeout`` seconds) or raises :class:`Empty`."""
        if timeout is not None and block and timeout < 0:
            raise ValueError("'timeout' must be a non-negative number")
        # One call when an item is ready: an auto-acked receive with the GIL held, the
        # body copied, the delivery freed. Waits release the GIL, in slices (Ctrl-C
        # gets through in the main thread, a shutdown() is seen in every thread).
        if timeout is None or not block:
            r = _take(self._a, SLICE_MS if block else 0)
        else:
            r = self._wait_take(timeout)
        if isinstance(r, int):  # nothing yet (a slice passed), or a failure
            r = self._get_slow(r, block and timeout is None)
        items = self._items
        if items is None:
            item: T = _loads(r)
            return item
        return items.pop(_unpack(r)[0])

    def _get_slow(self, r: int, forever: bool) -> bytes:
        """After a ``_take`` that got no item (status ``r``): waits on in slices if
        ``forever`` until an item comes or the queue is shut down; raises
        :class:`ShutDown`, :class:`Empty` or the failure."""
        a = self._a
        while r == lib.LQ_TIMEOUT and forever and not self.is_shutdown:  # a slice passed
            got = _take(a, SLICE_MS)
            if not isinstance(got, int):
                return got
            r = got
        if r in (lib.LQ_EMPTY, lib.LQ_TIMEOUT):
            if self.is_shutdown:
                raise ShutDown
            raise Empty
        if r == lib.LQ_CLOSED and self._a.closed:
            raise Closed("this queue was closed", lib.LQ_CLOSED)
        raise error_for(r)

    def _wait_take(self, timeout: float) -> Union[bytes, int]:
        """``_take`` waiting at most ``timeout`` seconds (less if the queue is shut
        down), in slices of ``SLICE_MS``."""
        a = self._a
        t = ms(timeout)
        if t <= SLICE_MS:
            return _take(a, t)
        deadline = time.monotonic() + timeout
        while True:
            left = min(SLICE_MS, int((deadline - time.monotonic()) * 1000) + 1)
            r = _take(a, max(left, 1))
            if r != lib.LQ_TIMEOUT or self.is_shutdown or time.monotonic() >= deadline:
                return r

    def put_nowait(self, item: T) -> None:
        """``put(item, block=False)``."""
        self.put(item, False)

    def get_nowait(self) -> T:
        """``get(block=False)``."""
        return self.get(False)

    def qsize(self) -> int:
        """Approximate number of items (exact when nobody else is using the queue)."""
        return self._store.ready()

    def empty(self) -> bool:
        """Whether ``qsize() == 0``."""
        return self.qsize() == 0

    def full(self) -> bool:
        """Whether the queue is at ``maxsize`` (never when ``maxsize <= 0``)."""
        return 0 < self.maxsize <= self.qsize()

    def flush(self) -> None:
        """Makes every item put so far durable on disk (see ``sync``)."""
        self._store.broker.flush()

    def close(self) -> None:
        """Closes the queue (and its journal); idempotent."""
        self._store.queue.close()
        self._store.broker.close()

    def __enter__(self: _Q) -> _Q:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class SimpleQueue(_FifoBase[T]):
    """An unbounded FIFO queue, like :class:`queue.SimpleQueue` (no ``task_done``)."""

    def __init__(self, path: PathLike = None, *, name: str = "compat", sync: str = "none") -> None:
        super().__init__(0, path, name=name, sync=sync)


class Queue(_FifoBase[T]):
    """A FIFO queue, like :class:`queue.Queue`; ``maxsize <= 0`` is unbounded.
    ``path``: a directory that makes it persistent."""

    def __init__(self, maxsize: int = 0, path: PathLike = None, *, name: str = "compat",
                 sync: str = "none") -> None:
        super().__init__(maxsize, path, name=name, sync=sync)
        self.all_tasks_done = threading.Condition(threading.Lock())
        # One entry per unfinished task: put appends without a lock (list.append is
        # atomic), task_done pops under the condition (only it and a failed put take
        # the count down, so only they can make it reach 0 and wake join()).
        self._pending: list[None] = []
        # Items recovered from a journal are unfinished tasks, as if just put.
        self.unfinished_tasks = self.qsize()
        self.is_shutdown = False

    def shutdown(self, immediate: bool = False) -> None:
        """Shuts the queue down, as :meth:`queue.Queue.shutdown` of Python 3.13 (on
        every version): later ``put`` calls raise :class:`ShutDown`, and so do those
        waiting for room (within ``SLICE_MS``). Without ``immediate``, ``get`` goes on
        returning the items left and raises :class:`ShutDown` once the queue is empty
        (waiting ``get`` calls too). With ``immediate``, the items left are removed
        (from the journal too) and their tasks counted as done, so ``get`` raises
        :class:`ShutDown` at once and ``join()`` returns. It cannot be undone."""
        self.is_shutdown = True
        if immediate:
            items = self._items
            while True:
                r = _take(self._a, 0)
                if isinstance(r, int):
                    if r == lib.LQ_EMPTY:  # drained
                        break
                    raise error_for(r)
                if items is not None:
                    items.pop(_unpack(r)[0], None)
                self._added(-1)
            with self.all_tasks_done:
                self.all_tasks_done.notify_all()

    @property
    def unfinished_tasks(self) -> int:
        """Items put and not yet marked with ``task_done``."""
        return len(self._pending)

    @unfinished_tasks.setter
    def unfinished_tasks(self, n: int) -> None:
        with self.all_tasks_done:
            self._pending[:] = [None] * max(n, 0)
            if n <= 0:
                self.all_tasks_done.notify_all()

    def _added(self, n: int) -> None:  # a put that failed: -1
        with self.all_tasks_done:
            pending = self._pending
            for _ in range(-n):
                if pending:
                    pending.pop()
            if not pending:
                self.all_tasks_done.notify_all()

    def task_done(self) -> None:
        """Marks one item taken with ``get`` as processed (``ValueError`` if called
        more times than there were items)."""
        with self.all_tasks_done:
            pending = self._pending
            if not pending:
                raise ValueError("task_done() called too many times")
            pending.pop()
            if not pending:
                self.all_tasks_done.notify_all()

    def join(self) -> None:
        """Blocks until every item put has been taken and marked with ``task_done``."""
        with self.all_tasks_done:
            while self._pending:
                self.all_tasks_done.wait()


class _Indexed(_stdqueue.Queue[T], Generic[T]):
    """The standard library's locking and waiting, with the items kept in libqueue
    (for persistence) and ordered in Python by an index of (item, message id)."""

    def __init__(self, maxsize: int = 0, path: PathLike = None, *, name: str = "compat",
                 sync: str = "none") -> None:
        self.path = path
        self._store = _Store(path, name, sync, 0, fifo=False)
        super().__init__(maxsize)
        self.is_shutdown = False
        n = self._store.ready()
        if n:
            for d in self._store.queue.peek(n):
                with d:
                    self._index_add(pickle.loads(d.body), d.id)
            self.unfinished_tasks = len(self.queue)

    # put, get and shutdown as in Python 3.13's queue.Queue (ShutDown included), so
    # they behave the same on every version.

    def put(self, item: Any, block: bool = True, timeout: Optional[float] = None) -> None:
        """Puts ``item``; when the queue is full, waits (``block``, at most ``timeout``
        seconds) or raises :class:`Full`; :class:`ShutDown` after :meth:`shutdown`."""
        with self.not_full:
            if self.is_shutdown:
                raise ShutDown
            if self.maxsize > 0:
                if not block:
                    if self._qsize() >= self.maxsize:
                        raise Full
                elif timeout is None:
                    while self._qsize() >= self.maxsize:
                        self.not_full.wait()
                        if self.is_shutdown:
                            raise ShutDown
                elif timeout < 0:
                    raise ValueError("'timeout' must be a non-negative number")
                else:
                    endtime = time.monotonic() + timeout
                    while self._qsize() >= self.maxsize:
                        remaining = endtime - time.monotonic()
                        if remaining <= 0.0:
                            raise Full
                        self.not_full.wait(remaining)
                        if self.is_shutdown:
                            raise ShutDown
            self._put(item)
            self.unfinished_tasks += 1
            self.not_empty.notify()

    def get(self, block: bool = True, timeout: Optional[float] = None) -> Any:
        """Removes and returns an item; when there is none, waits (``block``, at most
        ``timeout`` seconds) or raises :class:`Empty`; :class:`ShutDown` once the
        queue was shut down and is empty."""
        with self.not_empty:
            if self.is_shutdown and not self._qsize():
                raise ShutDown
            if not block:
                if not self._qsize():
                    raise Empty
            elif timeout is None:
                while not self._qsize():
                    self.not_empty.wait()
                    if self.is_shutdown and not self._qsize():
                        raise ShutDown
            elif timeout < 0:
                raise ValueError("'timeout' must be a non-negative number")
            else:
                endtime = time.monotonic() + timeout
                while not self._qsize():
                    remaining = endtime - time.monotonic()
                    if remaining <= 0.0:
                        raise Empty
                    self.not_empty.wait(remaining)
                    if self.is_shutdown and not self._qsize():
                        raise ShutDown
            item = self._get()
            self.not_full.notify()
            return item

    def shutdown(self, immediate: bool = False) -> None:
        """As :meth:`Queue.shutdown`: ``put`` raises :class:`ShutDown` from now on,
        ``get`` once the queue is empty; ``immediate`` removes the items left first
        (and counts their tasks as done)."""
        with self.mutex:
            self.is_shutdown = True
            if immediate:
                while self._qsize():
                    self._get()
                    if self.unfinished_tasks > 0:
                        self.unfinished_tasks -= 1
                self.all_tasks_done.notify_all()
            self.not_empty.notify_all()
            self.not_full.notify_all()

    def _put(self, item: Any) -> None:
        i = self._store.queue.send(pickle.dumps(item, _PROTO))
        self._index_add(item, i)

    def _get(self) -> Any:
        item, i = self._index_pop()
        self._store.queue.cancel(i)
        return item

    def _qsize(self) -> int:
        return len(self.queue)

    def flush(self) -> None:
        """Makes every item put so far durable on disk."""
        self._store.broker.flush()

    def close(self) -> None:
        """Closes the queue (and its journal); idempotent."""
        self._store.queue.close()
        self._store.broker.close()

    def __enter__(self: _I) -> _I:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _index_add(self, item: T, i: int) -> None:
        raise NotImplementedError

    def _index_pop(self) -> tuple[T, int]:
        raise NotImplementedError


class PriorityQueue(_Indexed[T]):
    """Lowest first, like :class:`queue.PriorityQueue` (entries such as
    ``(priority, data)``); equal entries come out in insertion order."""

    def _init(self, maxsize: int) -> None:
        self.queue: list[tuple[T, int]] = []

    def _index_add(self, item: T, i: int) -> None:
        heapq.heappush(self.queue, (item, i))

    def _index_pop(self) -> tuple[T, int]:
        return heapq.heappop(self.queue)


class LifoQueue(_Indexed[T]):
    """Last in, first out, like :class:`queue.LifoQueue`."""

    def _init(self, maxsize: int) -> None:
        self.queue: list[tuple[T, int]] = []

    def _index_add(self, item: T, i: int) -> None:
        self.queue.append((item, i))

    def _index_pop(self) -> tuple[T, int]:
        return self.queue.pop()
