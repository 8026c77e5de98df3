"""asyncio: waiting for a queue's messages with ``loop.add_reader`` on its pollable fd.

One reader per (loop, descriptor) serves every coroutine waiting on that queue in
that loop: when the descriptor turns readable, it hands out messages to waiters in
order with non-blocking receives until the queue is empty (which clears the
descriptor) or nobody waits; with no waiter left the reader is removed. No thread,
no timer, no polling loop.
"""

from __future__ import annotations

import asyncio
import collections
from typing import Any

from ._errors import Closed

_waiters: dict[tuple[int, int], "_Waiters"] = {}


class _Waiters:
    def __init__(self, queue: Any, loop: asyncio.AbstractEventLoop, fd: int) -> None:
        self.queue = queue
        self.loop = loop
        self.fd = fd
        self.futures: collections.deque[asyncio.Future[Any]] = collections.deque()
        self.reading = False

    def wait(self) -> "asyncio.Future[Any]":
        fut = self.loop.create_future()
        self.futures.append(fut)
        if not self.reading:
            self.loop.add_reader(self.fd, self._readable)
            self.reading = True
        return fut

    def _readable(self) -> None:
        futures = self.futures
        try:
            while futures:
                if futures[0].done():  # cancelled (a timeout)
                    futures.popleft()
                    continue
                d = self.queue.try_receive()
                if d is None:
                    break
                futures.popleft().set_result(d)
        except Closed as e:
            while futures:
                f = futures.popleft()
                if not f.done():
                    f.set_exception(e)
        except Exception as e:  # pragma: no cover - unexpected
            if futures and not futures[0].done():
                futures.popleft().set_exception(e)
        while futures and futures[0].done():
            futures.popleft()
        if not futures:
            self.loop.remove_reader(self.fd)
            self.reading = False
            _waiters.pop((id(self.loop), self.fd), None)


def waiter_for(queue: Any, loop: asyncio.AbstractEventLoop) -> _Waiters:
    fd = queue.fileno()
    key = (id(loop), fd)
    w = _waiters.get(key)
    if w is None or w.loop is not loop:
        w = _waiters[key] = _Waiters(queue, loop, fd)
    return w


def wake_all() -> None:
    """Makes every waiting reader look again (from any thread). Called when a broker
    closes or a queue is deleted: the queue's descriptor does not turn readable on
    close, so waiters would not otherwise learn that their queue is gone."""
    for w in list(_waiters.values()):
        try:
            w.loop.call_soon_threadsafe(w._readable)
        except RuntimeError:  # the loop is closed
            _waiters.pop((id(w.loop), w.fd), None)
