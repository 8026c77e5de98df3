"""The receiving side: messages as oslo sees them, the listener that waits on
libqueue's queues, and the adapter that keeps the executor's throttle.

- :class:`QueueListener` (a ``PollStyleListener``) waits on the pollable descriptors
  of its queues (readable exactly when a receive would find a message) and a wake-up
  pipe for ``stop()``, through ``selectors`` looked up when used, so under eventlet's
  monkey patching the wait is green and never blocks the process. No sleep-and-poll.
- :class:`ThrottledListener` (a push ``Listener``) runs the poll loop in a thread, as
  oslo's ``PollStyleListenerAdapter`` does, but takes a message only while one of the
  ``executor_thread_pool_size`` slots is free: at most that many endpoint calls run at
  once and, while all are busy, the messages stay in libqueue, where the other servers
  of the group can take them. A slot comes back when its message is done (an RPC
  message when it is replied to, a notification when it is acked or requeued; a
  message dropped unsettled gives it back too).
"""

from __future__ import annotations

import logging
import os
import threading
import time
import weakref
from typing import Any, Callable, Optional, Sequence

from oslo_messaging._drivers import base
from oslo_serialization import jsonutils

from .._delivery import Delivery
from .._errors import Closed, LibqueueError
from .._queue import Queue

LOG = logging.getLogger(__name__)

#: Headers of a request (the body is ``{"ctxt": ..., "msg": ...}`` in JSON).
REPLY_TO = "reply_to"
CALL_MONITOR = "call_monitor_timeout"


class Slot:
    """One executor slot, held by the messages of one batch until all are done."""

    __slots__ = ("_left", "_give_back", "_lock")

    def __init__(self, give_back: Callable[[], None], messages: int) -> None:
        self._left = messages
        self._give_back: Optional[Callable[[], None]] = give_back
        self._lock = threading.Lock()

    def done(self) -> None:
        with self._lock:
            self._left -= 1
            give_back = self._give_back if self._left <= 0 else None
            if give_back is not None:
                self._give_back = None
        if give_back is not None:
            give_back()


class _Settle:
    """Settles one delivery once (ack or nack), then marks its message done. Kept
    apart from the message so a finalizer can run it when the message is dropped."""

    __slots__ = ("delivery", "slot", "lock")

    def __init__(self, delivery: Delivery) -> None:
        self.delivery: Optional[Delivery] = delivery
        self.slot: Optional[Slot] = None
        self.lock = threading.Lock()

    def settle(self, ack: bool) -> None:
        with self.lock:
            d, self.delivery = self.delivery, None
        if d is not None:
            try:
                d.ack() if ack else d.nack()
            except LibqueueError as e:  # the queue closed, the lease ran out
                LOG.warning("libqueue: could not %s message %s: %s",
                            "ack" if ack else "requeue", d.id, e)
            finally:
                d.close()

    def done(self) -> None:
        with self.lock:
            slot, self.slot = self.slot, None
        if slot is not None:
            slot.done()

    def dropped(self) -> None:
        """The message was garbage collected: requeue it if it was never settled."""
        self.settle(False)
        self.done()


class _Incoming:
    """What both kinds of incoming message share: the settling and the slot."""

    _settle: _Settle

    def _start(self, delivery: Delivery) -> None:
        self._settle = _Settle(delivery)
        weakref.finalize(self, self._settle.dropped)

    def _attach(self, slot: Slot) -> None:
        self._settle.slot = slot

    def acknowledge(self) -> None:
        self._settle.settle(True)


class RpcIncoming(_Incoming, base.RpcIncomingMessage):  # type: ignore[misc]
    """An RPC request: acked when oslo acknowledges it (before the endpoint runs,
    as with RabbitMQ), done when it is replied to (a cast's reply sends nothing)."""

    def __init__(self, driver: Any, delivery: Delivery, ctxt: Any, message: Any,
                 msg_id: Optional[str], reply_to: Optional[str],
                 client_timeout: Optional[float]) -> None:
        base.RpcIncomingMessage.__init__(self, ctxt, message, msg_id)
        self._start(delivery)
        self._driver = driver
        self._reply_to = reply_to
        self.client_timeout = client_timeout

    def reply(self, reply: Any = None, failure: Any = None) -> None:
        try:
            if self._reply_to is not None:
                self._driver._send_reply(self._reply_to, self.msg_id, reply, failure, True)
        finally:
            self._settle.settle(True)
            self._settle.done()

    def heartbeat(self) -> None:
        if self._reply_to is not None:
            self._driver._send_reply(self._reply_to, self.msg_id, None, None, False)

    def requeue(self) -> None:
        self._settle.settle(False)
        self._settle.done()


class NotificationIncoming(_Incoming, base.IncomingMessage):  # type: ignore[misc]
    """A notification: done when acked or requeued (after its endpoint ran)."""

    def __init__(self, delivery: Delivery, ctxt: Any, message: Any) -> None:
        base.IncomingMessage.__init__(self, ctxt, message)
        self._start(delivery)

    def acknowledge(self) -> None:
        self._settle.settle(True)
        self._settle.done()

    def requeue(self) -> None:
        self._settle.settle(False)
        self._settle.done()


def rpc_incoming(driver: Any) -> Callable[[Delivery], RpcIncoming]:
    """Turns a request's delivery into an :class:`RpcIncoming`."""

    def make(d: Delivery) -> RpcIncoming:
        data = jsonutils.loads(d.body)
        msg_id = d.correlation_id  # a call's (a cast has none: no headers to read either)
        if msg_id is None:
            return RpcIncoming(driver, d, data["ctxt"], data["msg"], None, None, None)
        headers = d.headers
        reply_to = headers.get(REPLY_TO)
        monitor = headers.get(CALL_MONITOR)
        return RpcIncoming(driver, d, data["ctxt"], data["msg"], msg_id,
                           None if reply_to is None else reply_to.decode(),
                           None if monitor is None else float(monitor))

    return make


def notification_incoming(d: Delivery) -> NotificationIncoming:
    """Turns a notification's delivery into a :class:`NotificationIncoming`."""
    data = jsonutils.loads(d.body)
    return NotificationIncoming(d, data["ctxt"], data["msg"])


class Turnstile:
    """The listeners of this process that consume one queue take its messages in
    turn, as RabbitMQ's round robin among a queue's consumers: only the first in
    line waits on the queue (and takes from it); having taken a message, it goes to
    the back. A listener is in line only while it polls (it has a free slot), so a
    busy server never holds the others up. Across processes, each process's first
    in line competes for the queue."""

    __slots__ = ("_line", "_lock", "users")

    def __init__(self) -> None:
        self._line: list[QueueListener] = []
        self._lock = threading.Lock()
        self.users = 0

    def join(self, who: "QueueListener") -> None:
        with self._lock:
            if who not in self._line:
                self._line.append(who)

    def leave(self, who: "QueueListener") -> None:
        with self._lock:
            if who not in self._line:
                return
            was_first = self._line[0] is who
            self._line.remove(who)
            nxt = self._line[0] if was_first and self._line else None
        if nxt is not None:
            nxt._nudge()

    def first(self, who: "QueueListener") -> bool:
        with self._lock:
            return bool(self._line) and self._line[0] is who


_turnstiles_lock = threading.Lock()
_turnstiles: "weakref.WeakKeyDictionary[Any, dict[tuple[str, str], Turnstile]]" = \
    weakref.WeakKeyDictionary()


def turnstile(broker: Any, namespace: str, queue: str) -> Turnstile:
    """The turnstile of a queue of ``broker`` (give it back with
    :func:`release_turnstile`)."""
    with _turnstiles_lock:
        per_broker = _turnstiles.setdefault(broker, {})
        t = per_broker.get((namespace, queue))
        if t is None:
            t = per_broker[(namespace, queue)] = Turnstile()
        t.users += 1
        return t


def release_turnstile(broker: Any, namespace: str, queue: str) -> None:
    with _turnstiles_lock:
        per_broker = _turnstiles.get(broker, {})
        t = per_broker.get((namespace, queue))
        if t is not None:
            t.users -= 1
            if t.users <= 0:
                del per_broker[(namespace, queue)]


class QueueListener(base.PollStyleListener):  # type: ignore[misc]
    """Takes messages from several queues, in turn with the process's other
    listeners on each (:class:`Turnstile`), waiting on the queues' descriptors."""

    def __init__(self, queues: Sequence[tuple[Queue, Turnstile]],
                 make: Callable[[Delivery], Any],
                 on_cleanup: Optional[Callable[[], None]] = None) -> None:
        super().__init__()
        self._queues = [q for q, _ in queues]
        self._turns = [t for _, t in queues]
        self._make = make
        self._on_cleanup = on_cleanup
        self._next = 0
        self._stopped = False
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        # Our own copies of the queues' descriptors: the servers of a group share a
        # queue, hence its descriptor, and eventlet refuses two green threads waiting
        # on one descriptor number at once.
        self._fds = [os.dup(q.fileno()) for q in self._queues]
        self._selector: Any = None
        self._watched: set[int] = set()

    def _nudge(self) -> None:
        """Wakes the poll (it came first in a line, or it is stopped)."""
        try:
            os.write(self._wake_w, b"x")
        except OSError:  # the pipe is full (it is woken already) or closed
            pass

    def _take(self) -> Optional[Any]:
        """A message from a queue this listener is first in line for, if one is
        ready; the queues are tried in turn, so a busy one does not starve the rest."""
        n = len(self._queues)
        for i in range(n):
            k = (self._next + i) % n
            turn = self._turns[k]
            if not turn.first(self):
                continue
            q = self._queues[k]
            d = q.try_receive()
            if d is None:
                continue
            self._next = (k + 1) % n
            turn.leave(self)  # to the back of the line
            turn.join(self)
            try:
                return self._make(d)
            except Exception:  # not ours (not JSON, no ctxt): drop it, loudly
                LOG.exception("libqueue: dropping a malformed message from %s", q.name)
                d.ack()
                d.close()
        return None

    def _wait(self, timeout: Optional[float]) -> None:
        """Waits until a queue it is first in line for has a message, it is
        nudged, or ``timeout`` passes."""
        import selectors  # looked up now: eventlet's green one once patched

        if self._selector is None:
            self._selector = selectors.DefaultSelector()
            self._selector.register(self._wake_r, selectors.EVENT_READ)
        want = {fd for fd, t in zip(self._fds, self._turns) if t.first(self)}
        for fd in self._watched - want:
            self._selector.unregister(fd)
        for fd in want - self._watched:
            self._selector.register(fd, selectors.EVENT_READ)
        self._watched = want
        ready = self._selector.select(timeout)
        if any(key.fd == self._wake_r for key, _ in ready):
            # Only when readable: eventlet's green os.read waits on an empty pipe.
            try:
                os.read(self._wake_r, 4096)
            except BlockingIOError:
                pass

    def poll(self, timeout: Optional[float] = None, batch_size: int = 1,
             batch_timeout: Optional[float] = None) -> list[Any]:
        """Up to ``batch_size`` messages: waits ``timeout`` seconds (``None``: until
        ``stop()``) for the first; with a batch, up to ``batch_timeout`` for the rest
        (``base.batch_poll_helper``'s rules). After ``stop()``, nothing."""
        limit = batch_timeout or timeout
        deadline = None if limit is None else time.monotonic() + limit
        out: list[Any] = []
        for turn in self._turns:
            turn.join(self)
        try:
            while not self._stopped and len(out) < batch_size:
                m = self._take()
                if m is not None:
                    out.append(m)
                    continue
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    break
                self._wait(left)
        finally:
            for turn in self._turns:  # out of every line while not polling
                turn.leave(self)
        return out

    def stop(self) -> None:
        self._stopped = True
        self._nudge()

    def cleanup(self) -> None:
        self._stopped = True
        for turn in self._turns:
            turn.leave(self)
        sel, self._selector = self._selector, None
        if sel is not None:
            sel.close()
        for fd in (self._wake_r, self._wake_w, *self._fds):
            try:
                os.close(fd)
            except OSError:
                pass
        self._wake_r = self._wake_w = -1
        self._fds = []
        if self._on_cleanup is not None:
            self._on_cleanup()
        for q in self._queues:
            q.close()


class ThrottledListener(base.Listener):  # type: ignore[misc]
    """The poll loop in a thread, taking a message only while a slot is free."""

    def __init__(self, poller: QueueListener, batch_size: int, batch_timeout: Optional[float],
                 slots: int) -> None:
        super().__init__(batch_size, batch_timeout, poller.prefetch_size)
        self._poller = poller
        self._slots = max(1, slots)
        self._busy = 0
        self._max_busy = 0
        self._cond = threading.Condition()
        self._started = False
        self._thread = threading.Thread(target=self._run, daemon=True,
                                        name="libqueue-oslo-listener")

    @property
    def busy_high_water(self) -> int:
        """The most slots held at once so far (tests check the throttle with it)."""
        return self._max_busy

    def start(self, on_incoming_callback: Callable[[list[Any]], None]) -> None:
        super().start(on_incoming_callback)
        self._started = True
        self._thread.start()

    def _give_back(self) -> None:
        with self._cond:
            self._busy -= 1
            self._cond.notify()

    def _take_slot(self) -> bool:
        with self._cond:
            while self._started and self._busy >= self._slots:
                self._cond.wait()
            if not self._started:
                return False
            self._busy += 1
            self._max_busy = max(self._max_busy, self._busy)
            return True

    def _run(self) -> None:
        while self._take_slot():
            try:
                incoming = self._poller.poll(batch_size=self.batch_size,
                                             batch_timeout=self.batch_timeout)
            except Exception:  # the broker closed under it, or a bug: stop, loudly
                LOG.exception("libqueue: the listener stopped: its poll failed")
                self._give_back()
                return
            if not incoming:
                self._give_back()
                continue
            slot = Slot(self._give_back, len(incoming))
            for m in incoming:
                m._attach(slot)
            callback = self.on_incoming_callback
            try:
                if callback is None:
                    raise Closed("the listener was stopped")
                callback(incoming)
            except Exception:
                LOG.exception("libqueue: could not hand messages over; requeued")
                for m in incoming:
                    m.requeue()
                    m._settle.done()

    def stop(self) -> None:
        with self._cond:
            self._started = False
            self._cond.notify_all()
        self._poller.stop()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join()
        super().stop()

    def cleanup(self) -> None:
        self._poller.cleanup()
