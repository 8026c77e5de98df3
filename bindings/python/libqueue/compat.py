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
restarted; reopening the same path brings back every item not yet taken. ``sync="always"``
also survives a power cut, at the cost of an fsync per put (group commit).

A ``Queue`` or ``SimpleQueue`` with a path is also **shared between processes**: every
process that opens the same path (``multiprocessing`` workers, either start method,
or unrelated programs) puts into and gets from the same queue — the first to open it
hosts it, the others attach (docs/multi-process.md). Such a queue can be passed to a
``multiprocessing.Process`` (it is pickled as its path and reopened; a forked child
reopens it on first use). ``task_done()`` and ``join()`` then count across processes:
``join()`` returns once every item put by any process was taken and marked done by
any process (the count is kept by the broker). An item taken with ``get`` stays
leased to the process that took it until ``task_done`` (its oldest unfinished one)
acks it: one call per ``get`` and one per ``task_done``, and an item whose process
dies (even ``SIGKILL``) or exits without closing the queue before marking it done
goes back to the queue at once, for another process to take (``close()`` takes the
process's unfinished items for good, as before). ``join()`` waits until nothing is queued or
leased. (Past ``HELD_MAX`` items or ``HELD_BYTES`` held unfinished by one process,
the oldest are marked taken by a task token instead, the count unchanged; a
``task_done`` in a process that took nothing marks one of another process's items
done by a credit.) ``shutdown()`` applies to the process that calls it. ``PriorityQueue`` and ``LifoQueue`` order items in the process
(persistent, but one process at a time).

``Queue`` and ``SimpleQueue`` wait inside the engine (the GIL is released while they
wait), in 100 ms slices so that Ctrl-C (main thread) and ``shutdown()`` (any thread)
get through; ``PriorityQueue`` and ``LifoQueue`` order items in Python (a heap / a stack
indexed by message id) and keep them in libqueue for persistence.
"""

from __future__ import annotations

import collections
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
from ._queue import Queue as LqQueue
from ._core import SLICE_MS, ms
from ._errors import (AlreadyExists, Closed, InvalidState, LeaseExpired, LibqueueError, NotFound,
                      error_for)
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
_receive = fast.receive
#: How often ``join()`` of a queue with a path looks at the broker's counts, at
#: most (seconds): it looks again after 0.5 ms, then backs off, doubling, to this
#: (at once after a ``task_done`` in this process).
JOIN_POLL = 0.01
#: The lease of an item taken from a ``Queue`` with a path, until ``task_done``
#: (seconds): long — a process that dies gives its items back at once anyway.
LEASE = 30 * 24 * 3600.0
#: Items (and their bytes) one process holds leased, unfinished, at most: past
#: either, the oldest is marked taken by a task token (two calls) instead.
HELD_MAX = 65536
HELD_BYTES = 64 << 20
_dumps, _loads = pickle.dumps, pickle.loads
_pack, _unpack = struct.Struct("<Q").pack, struct.Struct("<Q").unpack
PathLike = Union[str, "os.PathLike[str]", None]


#: The namespace of the task tokens of ``Queue``s with a path (one queue per
#: compat queue, of the same name): one token per item taken and not yet marked
#: done, so that ``join()`` sees the tasks of every process.
TASKS_NAMESPACE = "libqueue.compat.tasks"
#: Credits (one per ``task_done`` of an item another process holds leased) and the
#: marks of the queues whose items stay leased until ``task_done`` (made unbounded,
#: with the long ``LEASE``, by this version; a queue without its mark is used as
#: before: leased, a token sent, acked).
CREDITS_NAMESPACE = "libqueue.compat.credits"
LEASED_NAMESPACE = "libqueue.compat.leased"


class _Store:
    """The broker and queue a compat queue keeps its items in."""

    def __init__(self, path: PathLike, name: str, sync: str, maxsize: int, fifo: bool) -> None:
        if path is not None:
            os.makedirs(path, exist_ok=True)
        self.pid = os.getpid()
        self.broker = Broker(path, sync=sync)
        opts = QueueOptions(persistent=path is not None, strict_fifo=True)
        if fifo and maxsize > 0:
            opts.max_messages = maxsize
            opts.on_full = "block"
        elif fifo and path is not None:
            # Items taken stay leased until task_done (a leased item holds its room:
            # only an unbounded queue can keep them so).
            opts.lease_time = LEASE
        ns = self.broker.default_namespace
        try:
            self.queue = ns.create_queue(name, opts)
            self.created = True
        except AlreadyExists:
            self.queue = ns.get_queue(name)
            self.created = False
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


def _reopened(cls: type[_Q], maxsize: int, path: PathLike, name: str, sync: str) -> _Q:
    """A compat queue unpickled in another process: the same path, opened there."""
    q = cls.__new__(cls)
    _FifoBase.__init__(q, maxsize, path, name=name, sync=sync)
    q._init_tasks()
    return q


class _FifoBase(Generic[T]):
    #: Whether ``shutdown()`` was called (``SimpleQueue`` never shuts down).
    is_shutdown: bool = False
    #: ``Queue`` with a path: the broker's task tokens (see TASKS_NAMESPACE).
    _tasks: Optional[LqQueue] = None
    #: ``Queue`` with a path whose items stay leased until ``task_done``: the
    #: credits, and this process's unfinished deliveries, oldest first.
    _credits: Optional[LqQueue] = None
    _held: Optional[collections.deque[Any]] = None
    _held_bytes = 0
    _spilled = 0  # of this process's unfinished items, those marked by a token

    def __init__(self, maxsize: int = 0, path: PathLike = None, *, name: str = "compat",
                 sync: str = "none") -> None:
        self.maxsize = maxsize
        self.path = path
        self._name, self._sync = name, sync
        self._store = _Store(path, name, sync, maxsize, fifo=True)
        self._a = self._store.a
        self._release = self._store.release
        # In memory, items are not pickled: they wait in this dict (by reference, as in
        # queue.Queue) and the message carries their key; the engine does the ordering,
        # the counting and the waiting. With a path, the message carries the pickle.
        self._items: Optional[dict[int, T]] = None if path is not None else {}
        self._keys = itertools.count()

    def _init_tasks(self) -> None:
        """Sets up ``task_done``/``join`` (``Queue`` only)."""

    def __reduce__(self) -> tuple[Any, ...]:
        # Another process gets the same path, opened there (multiprocessing).
        if self.path is None:
            raise TypeError(f"a compat.{type(self).__name__} in memory cannot be shared "
                            "with another process: give it a path")
        return (_reopened, (type(self), self.maxsize, self.path, self._name, self._sync))

    def _forked(self) -> bool:
        """In a child forked from the process that opened this queue (whose
        handles fail there with Forked): opens the path again, here, and returns
        True; False in the process that opened it, or for a queue in memory."""
        if self.path is None or self._store.pid == os.getpid():
            return False
        self._store = _Store(self.path, self._name, self._sync, self.maxsize, fifo=True)
        self._a = self._store.a
        self._release = self._store.release
        if self._held is not None:  # the parent's leases, not this process's
            for d in self._held:
                d._h = None  # detached: never freed or settled here
            self._held = None
        self._init_tasks()
        return True

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
            if r == -lib.LQ_FORKED and self._forked():
                return self.put(item, block, timeout)
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
        if self._tasks is not None:  # Queue with a path: tasks counted by the broker
            return self._get_counted(block, timeout)
        # One call when an item is ready: an auto-acked receive with the GIL held, the
        # body copied, the delivery freed. Waits release the GIL, in slices (Ctrl-C
        # gets through in the main thread, a shutdown() is seen in every thread).
        if timeout is None or not block:
            r = _take(self._a, SLICE_MS if block else 0)
        else:
            r = self._wait_take(timeout)
        if isinstance(r, int):  # nothing yet (a slice passed), or a failure
            if r == lib.LQ_FORKED and self._forked():
                return self.get(block, timeout)
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

    def _get_counted(self, block: bool, timeout: Optional[float]) -> T:
        """``get`` of a ``Queue`` with a path: the item is received leased, a task
        token is sent, then the item is acked — so that at every moment the broker
        counts it (queued, leased, or as a token) until ``task_done``, whichever
        process looks (``join``). A process killed in between leaves its lease,
        which comes back to the queue at once."""
        a = self._a
        deadline = None if timeout is None or not block else time.monotonic() + timeout
        while True:
            wait = 0 if not block else SLICE_MS if deadline is None else max(
                0, min(SLICE_MS, int((deadline - time.monotonic()) * 1000) + 1))
            d = _receive(a, wait, False)
            if not isinstance(d, int):
                break
            st = -d
            if st in (lib.LQ_EMPTY, lib.LQ_TIMEOUT):
                if self.is_shutdown:
                    raise ShutDown
                if not block or (deadline is not None and time.monotonic() >= deadline):
                    raise Empty
                continue  # a slice passed (Ctrl-C and shutdown() get through here)
            if st == lib.LQ_FORKED and self._forked():
                return self.get(block, timeout)
            if st == lib.LQ_CLOSED and a.closed:
                raise Closed("this queue was closed", lib.LQ_CLOSED)
            raise error_for(st)
        held = self._held
        if held is not None:  # kept leased until task_done: one call
            try:
                body = d.body
                item0: T = _loads(body)
            except BaseException:
                try:
                    d._nack()
                except LibqueueError:
                    pass
                d.close()
                raise
            held.append(d)
            self._held_bytes += len(body)
            if len(held) > HELD_MAX or self._held_bytes > HELD_BYTES:
                self._spill()
            return item0
        tasks = self._tasks
        assert tasks is not None
        token = False
        try:
            item: T = _loads(d.body)
            t = _send(tasks._pin, b"", tasks._release, -2, 0)
            if t < 0:
                raise error_for(-t)
            token = True
            d.ack()
        except BaseException:
            if token:  # the item goes back to the queue: so does its task
                _take(tasks._pin, 0)
            if not d._settled:
                try:
                    d._nack()
                except LibqueueError:  # the lease is gone already: it comes back anyway
                    pass
            raise
        finally:
            d.close()
        self._taken += 1
        return item

    _taken = 0  # items this process got and has not marked done (a Queue with a path)

    def _spill(self) -> None:
        """Marks this process's oldest held item taken by a task token, then acks it
        (so a process that never calls ``task_done`` holds a bounded number)."""
        held, tasks = self._held, self._tasks
        assert held is not None and tasks is not None
        try:
            d = held.popleft()
        except IndexError:
            return
        self._held_bytes -= len(d.body)
        try:
            t = _send(tasks._pin, b"", tasks._release, -2, 0)
            if t < 0:
                raise error_for(-t)
            self._spilled += 1
            d.ack()
        except BaseException:
            held.appendleft(d)
            self._held_bytes += len(d.body)
            raise
        d.close()

    def _settle_held(self) -> None:
        """Closing: this process's unfinished items are taken for good (acked, as
        ``queue.Queue`` forgets what was got; ``join`` elsewhere no longer waits for
        them), and the credits other processes left for them are used up."""
        held, credits = self._held, self._credits
        if not held:
            return
        n = 0
        while held:
            try:
                d = held.popleft()
            except IndexError:
                break
            try:
                d.ack()
                n += 1
            except LibqueueError:  # closed, or the lease is gone: it came back
                pass
            d.close()
        self._held_bytes = 0
        if credits is not None and n:
            for _ in range(min(n, credits.stats().ready)):
                if isinstance(_take(credits._pin, 0), int):
                    break

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
        self._forked()
        return self._store.ready()

    def empty(self) -> bool:
        """Whether ``qsize() == 0``."""
        return self.qsize() == 0

    def full(self) -> bool:
        """Whether the queue is at ``maxsize`` (never when ``maxsize <= 0``)."""
        return 0 < self.maxsize <= self.qsize()

    def flush(self) -> None:
        """Makes every item put so far durable on disk (see ``sync``)."""
        self._forked()
        self._store.broker.flush()

    def close(self) -> None:
        """Closes the queue (and its journal); idempotent."""
        if self._held is not None and self._store.pid == os.getpid():
            self._settle_held()
        if self._tasks is not None:
            self._tasks.close()
        if self._credits is not None:
            self._credits.close()
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
        self._init_tasks()
        self.is_shutdown = False

    def _init_tasks(self) -> None:
        self.all_tasks_done = threading.Condition(threading.Lock())
        if self.path is not None:
            # Counted by the broker, across processes: the items queued or being
            # taken, and a token per item taken and not yet marked done.
            broker = self._store.broker
            self._tasks = broker.namespace(TASKS_NAMESPACE).queue(self._name)
            self._taken = 0
            self._spilled = 0
            marks = broker.namespace(LEASED_NAMESPACE)
            if self._store.created and self.maxsize <= 0:
                marks.queue(self._name)  # made here, unbounded, with the long lease
            else:
                try:
                    marks.get_queue(self._name).close()
                except NotFound:
                    return  # made by another version or bounded: tokens, as before
            self._credits = broker.namespace(CREDITS_NAMESPACE).queue(self._name)
            self._held = collections.deque()
            self._held_bytes = 0
            return
        # In memory, in this process: one entry per unfinished task. put appends
        # without a lock (list.append is atomic), task_done pops under the condition
        # (only it and a failed put take the count down, so only they can make it
        # reach 0 and wake join()).
        self._pending = []

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
        """Items put and not yet marked with ``task_done`` (with a path: by any
        process; items recovered from the journal count as just put)."""
        self._forked()
        tasks = self._tasks
        if tasks is not None:
            return max(0, self._counted(tasks))
        assert self._pending is not None
        return len(self._pending)

    @unfinished_tasks.setter
    def unfinished_tasks(self, n: int) -> None:
        if self._tasks is not None:
            raise AttributeError("the unfinished tasks of a queue with a path are counted by the broker")
        with self.all_tasks_done:
            assert self._pending is not None
            self._pending[:] = [None] * max(n, 0)
            if n <= 0:
                self.all_tasks_done.notify_all()

    def _counted(self, tasks: LqQueue) -> int:
        """Unfinished tasks by the broker's counts: items queued, delayed or leased,
        plus task tokens, less credits."""
        n = self._store.queue.stats().depth + tasks.stats().ready
        credits = self._credits
        if credits is not None:
            n -= credits.stats().ready
        return n

    def _added(self, n: int) -> None:  # a put that failed: -1
        with self.all_tasks_done:
            pending = self._pending
            if pending is None:  # with a path: nothing counted in this process
                return
            for _ in range(-n):
                if pending:
                    pending.pop()
            if not pending:
                self.all_tasks_done.notify_all()

    def task_done(self) -> None:
        """Marks one item taken with ``get`` as processed (``ValueError`` if called
        more times than there were items). With a path, an item taken by any
        process may be marked done by any process."""
        self._forked()
        tasks = self._tasks
        if tasks is not None and self._held is not None:
            self._task_done_held(tasks)
            with self.all_tasks_done:
                self.all_tasks_done.notify_all()
            return
        if tasks is not None:
            r = _take(tasks._pin, 0)
            if isinstance(r, int):
                if r != lib.LQ_EMPTY:
                    raise error_for(r)
                # No token: none is due, unless this process took items whose
                # tokens were lost with a host that crashed (not persistent).
                if self._taken <= 0:
                    raise ValueError("task_done() called too many times")
            self._taken = max(0, self._taken - 1)
            with self.all_tasks_done:
                self.all_tasks_done.notify_all()
            return
        with self.all_tasks_done:
            pending = self._pending
            if not pending:
                raise ValueError("task_done() called too many times")
            pending.pop()
            if not pending:
                self.all_tasks_done.notify_all()

    def _task_done_held(self, tasks: LqQueue) -> None:
        """``task_done`` of a queue whose items stay leased: the oldest of this
        process's unfinished items is done — one marked by a token (the token is
        taken), else one held (it is acked); in a process holding none, a token of
        another process's, else a credit for an item another process holds."""
        held = self._held
        assert held is not None
        if self._spilled > 0:
            self._spilled -= 1
            r = _take(tasks._pin, 0)
            if not isinstance(r, int):
                return
            if r != lib.LQ_EMPTY:
                self._spilled += 1
                raise error_for(r)
        try:
            d = held.popleft()
        except IndexError:
            d = None
        if d is not None:
            self._held_bytes -= len(d.body)
            try:
                d.ack()
            except LeaseExpired:
                # The lease is gone (this process lost its host and the next one
                # did not give it back): the item went back to the queue and is
                # counted there; this task is done here.
                pass
            finally:
                d.close()
            return
        r = _take(tasks._pin, 0)  # a token of another process's
        if not isinstance(r, int):
            return
        if r != lib.LQ_EMPTY:
            raise error_for(r)
        credits = self._credits
        assert credits is not None
        if self._store.queue.stats().leased - credits.stats().ready <= 0:
            raise ValueError("task_done() called too many times")
        t = _send(credits._pin, b"", credits._release, -2, 0)
        if t < 0:
            raise error_for(-t)

    def join(self) -> None:
        """Blocks until every item put has been taken and marked with ``task_done``
        (with a path: by every process; it looks at the broker's counts, backing
        off to every ``JOIN_POLL`` seconds, at once after a ``task_done`` in this
        process)."""
        self._forked()
        tasks = self._tasks
        if tasks is not None:
            pause = 0.0005
            while self._counted(tasks) > 0:
                with self.all_tasks_done:
                    self.all_tasks_done.wait(pause)
                pause = min(pause * 2, JOIN_POLL)
            return
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
