"""A drop-in for the standard library's :mod:`queue` module, on libqueue.

``Queue``, ``LifoQueue``, ``PriorityQueue`` and ``SimpleQueue`` behave as their
:mod:`queue` namesakes (``put``/``get`` with ``block`` and ``timeout``,
``put_nowait``/``get_nowait``, ``qsize``, ``empty``, ``full``, ``task_done``,
``join``) and raise :class:`Empty` / :class:`Full`, which *are* ``queue.Empty`` /
``queue.Full`` (subclasses), so existing ``except queue.Empty`` clauses keep working.
In memory, ``Queue`` and ``SimpleQueue`` hand items over by reference, as
:mod:`queue` does (any object; the message carries a key); persistent queues and
``PriorityQueue`` / ``LifoQueue`` pickle them (any picklable object).

Given ``path=...`` a queue is **persistent**: its items live in a libqueue journal
in that directory and survive the process being killed (even ``SIGKILL``) and
restarted; reopening the same path brings back every item not yet taken. One process
at a time may open a path (:class:`libqueue.Locked` otherwise). ``sync="always"``
also survives a power cut, at the cost of an fsync per put (group commit).

``Queue`` and ``SimpleQueue`` wait inside the engine (the GIL is released while they
wait); ``PriorityQueue`` and ``LifoQueue`` order items in Python (a heap / a stack
indexed by message id) and keep them in libqueue for persistence.
"""

from __future__ import annotations

import heapq
import os
import itertools
import pickle
import queue as _stdqueue
import struct
import threading
import time
from typing import Any, Generic, Optional, TypeVar, Union

from . import _errors
from ._broker import Broker
from ._core import SLICE_MS, WAIT_FOREVER, in_main_thread, ms
from ._errors import Closed, error_for
from ._ffi import fast
from ._options import QueueOptions

__all__ = ["Queue", "LifoQueue", "PriorityQueue", "SimpleQueue", "Empty", "Full"]

#: Raised by ``get`` when no item is available; a subclass of ``queue.Empty``.
Empty = _errors.Empty
#: Raised by ``put`` when the queue is full; a subclass of ``queue.Full``.
Full = _errors.Full

T = TypeVar("T")
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


class _FifoBase(Generic[T]):
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
        self._items: Optional[dict] = None if path is not None else {}
        self._keys = itertools.count()

    def put(self, item: T, block: bool = True, timeout: Optional[float] = None) -> None:
        """Puts ``item``; when the queue is full, waits (``block``, at most
        ``timeout`` seconds) or raises :class:`Full`."""
        if timeout is not None and block and timeout < 0:
            raise ValueError("'timeout' must be a non-negative number")
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
            if r in (-2, -3):
                raise Full("the queue is full", 3)
            if r == -4 and self._a.closed:
                raise Closed("this queue was closed", 4)
            raise error_for(-r)

    def _put_data(self, data: bytes, block: bool, timeout: Optional[float]) -> int:
        """The message id, or -status. The send keeps the GIL unless it must wait."""
        a, release = self._a, self._release
        if not block:
            return _send(a, data, release, 1, 0)  # LQ_ON_FULL_REJECT
        if timeout is None and not in_main_thread():
            return _send(a, data, release, 0, 0)  # LQ_ON_FULL_BLOCK
        # A bounded wait, in slices in the main thread so Ctrl-C gets through.
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            left = SLICE_MS if deadline is None else max(
                0, min(SLICE_MS, int((deadline - time.monotonic()) * 1000) + 1))
            r = _send(a, data, release, 2, left)  # LQ_ON_FULL_TIMEOUT
            if r != -2 or (deadline is not None and time.monotonic() >= deadline):
                return r

    _pending: Optional[list] = None

    def _added(self, n: int) -> None:
        pass

    def get(self, block: bool = True, timeout: Optional[float] = None) -> T:
        """Removes and returns an item; when there is none, waits (``block``, at most
        ``timeout`` seconds) or raises :class:`Empty`."""
        if timeout is not None and block and timeout < 0:
            raise ValueError("'timeout' must be a non-negative number")
        # One call: an auto-acked receive (ready: GIL held; waiting: released, in the
        # main thread in slices so Ctrl-C gets through), the body copied, the delivery freed.
        r = _take(self._a, 0 if not block else (WAIT_FOREVER if timeout is None else ms(timeout)))
        if type(r) is int:
            if r in (1, 2):
                raise Empty("the queue is empty", 1)
            if r == 4 and self._a.closed:
                raise Closed("this queue was closed", 4)
            raise error_for(r)
        items = self._items
        if items is None:
            return _loads(r)
        return items.pop(_unpack(r)[0])

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

    def __enter__(self):
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
        self._pending: list = []
        # Items recovered from a journal are unfinished tasks, as if just put.
        self.unfinished_tasks = self.qsize()

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


class _Indexed(_stdqueue.Queue):
    """The standard library's locking and waiting, with the items kept in libqueue
    (for persistence) and ordered in Python by an index of (item, message id)."""

    def __init__(self, maxsize: int = 0, path: PathLike = None, *, name: str = "compat",
                 sync: str = "none") -> None:
        self.path = path
        self._store = _Store(path, name, sync, 0, fifo=False)
        super().__init__(maxsize)
        n = self._store.ready()
        if n:
            for d in self._store.queue.peek(n):
                with d:
                    self._index_add(pickle.loads(d.body), d.id)
            self.unfinished_tasks = len(self.queue)

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

    def __enter__(self):
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class PriorityQueue(_Indexed):
    """Lowest first, like :class:`queue.PriorityQueue` (entries such as
    ``(priority, data)``); equal entries come out in insertion order."""

    def _init(self, maxsize: int) -> None:
        self.queue: list = []

    def _index_add(self, item: Any, i: int) -> None:
        heapq.heappush(self.queue, (item, i))

    def _index_pop(self) -> tuple:
        return heapq.heappop(self.queue)


class LifoQueue(_Indexed):
    """Last in, first out, like :class:`queue.LifoQueue`."""

    def _init(self, maxsize: int) -> None:
        self.queue: list = []

    def _index_add(self, item: Any, i: int) -> None:
        self.queue.append((item, i))

    def _index_pop(self) -> tuple:
        return self.queue.pop()
