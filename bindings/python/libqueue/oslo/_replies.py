"""The caller's side of an RPC call: one reply queue per driver and the thread that
hands each reply to the call waiting for it (matched by correlation id).

A reply carries ``{"result", "failure", "ending"}``: a heartbeat (``ending`` false,
sent by the server's ``heartbeat()`` for ``call_monitor_timeout``) restarts the
monitor timer; the final reply ends the wait. A failure is what
``serialize_remote_exception`` made of the endpoint's exception, turned back into
it (or ``RemoteError``) with the driver's ``allowed_remote_exmods``.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
import uuid
from typing import Any, Optional

import oslo_messaging
from oslo_messaging._drivers import common
from oslo_serialization import jsonutils

from .._broker import Namespace
from .._errors import Closed
from .._options import QueueOptions

LOG = logging.getLogger(__name__)


class ReplyWaiter:
    """A reply queue (in :data:`~libqueue.oslo._names.REPLY_NAMESPACE`, never
    persistent: a reply is for this process only) and its reading thread."""

    def __init__(self, namespace: Namespace, allowed_remote_exmods: list[str]) -> None:
        self.name = f"reply.{uuid.uuid4().hex}"
        self._namespace = namespace
        self._allowed = allowed_remote_exmods
        self._queue = namespace.create_queue(self.name, QueueOptions(persistent=False))
        self._lock = threading.Lock()
        self._waiting: dict[str, "queue.Queue[Any]"] = {}
        self._late = 0
        self._stopped = False
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        self._fd = self._queue.fileno()
        self._thread = threading.Thread(target=self._run, daemon=True,
                                        name="libqueue-oslo-replies")
        self._thread.start()

    @property
    def late_replies(self) -> int:
        """Replies that came for no waiting call (it had timed out): dropped."""
        return self._late

    def listen(self, msg_id: str) -> None:
        with self._lock:
            self._waiting[msg_id] = queue.Queue()

    def unlisten(self, msg_id: str) -> None:
        with self._lock:
            self._waiting.pop(msg_id, None)

    def _run(self) -> None:
        import selectors  # looked up now: eventlet's green one once patched

        sel = selectors.DefaultSelector()
        sel.register(self._fd, selectors.EVENT_READ)
        sel.register(self._wake_r, selectors.EVENT_READ)
        try:
            while not self._stopped:
                try:
                    d = self._queue.try_receive()
                except Closed:
                    return
                if d is None:
                    sel.select(None)
                    continue
                try:
                    self._hand_over(d.correlation_id, d.body)
                except Exception:  # one bad reply must not end the replies of the rest
                    LOG.exception("libqueue: dropping a reply that could not be read")
                finally:
                    d.ack()
                    d.close()
        finally:
            sel.close()

    def _hand_over(self, msg_id: Optional[str], body: bytes) -> None:
        with self._lock:
            waiter = self._waiting.get(msg_id or "")
        if waiter is None:
            self._late += 1
            LOG.debug("libqueue: dropping a reply to %s: nobody waits for it", msg_id)
        else:
            waiter.put(body)

    def _timeout(self, msg_id: str) -> None:
        raise oslo_messaging.MessagingTimeout(
            f"Timed out waiting for a reply in {self.name} to message ID {msg_id}")

    def wait(self, msg_id: str, timeout: Optional[float],
             call_monitor_timeout: Optional[float]) -> Any:
        """The result of call ``msg_id``; ``MessagingTimeout`` when ``timeout``
        passes, or ``call_monitor_timeout`` passes without a heartbeat."""
        with self._lock:
            replies = self._waiting[msg_id]
        now = time.monotonic()
        deadline = None if timeout is None else now + timeout
        monitor = None if not call_monitor_timeout else now + call_monitor_timeout
        while True:
            limits = [t for t in (deadline, monitor) if t is not None]
            left = None if not limits else min(limits) - time.monotonic()
            if left is not None and left <= 0:
                self._timeout(msg_id)
            try:
                raw = replies.get(timeout=left)
            except queue.Empty:
                self._timeout(msg_id)
            data = jsonutils.loads(raw)
            if data.get("failure"):
                raise common.deserialize_remote_exception(data["failure"], self._allowed)
            if data.get("ending", True):
                return data.get("result")
            if call_monitor_timeout:  # a heartbeat: the server is still at it
                monitor = time.monotonic() + call_monitor_timeout

    def close(self) -> None:
        """Stops the thread and deletes the reply queue."""
        self._stopped = True
        try:
            os.write(self._wake_w, b"x")
        except OSError:
            pass
        if self._thread is not threading.current_thread():
            self._thread.join(10)
        self._queue.close()
        for fd in (self._wake_r, self._wake_w):
            os.close(fd)
        try:
            self._namespace.delete_queue(self.name)
        except Exception as e:  # the broker closed meanwhile: nothing to delete
            LOG.debug("libqueue: reply queue %s not deleted: %s", self.name, e)
        finally:
            self._namespace.close()
