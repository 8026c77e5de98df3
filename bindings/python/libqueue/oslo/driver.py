"""``LibqueueDriver``: the oslo.messaging driver (entry point ``libqueue`` of
``oslo.messaging.drivers``), built on libqueue's own features:

=============================  ==================================================
oslo.messaging                 libqueue
=============================  ==================================================
exchange                       a namespace (isolated from the others)
``Target(topic)``              queue ``rpc.<topic>``: the servers of the topic
                               compete on it (load balanced)
``Target(topic, server)``      queue ``srv.<n>.<topic>.<server>``: one server's
fanout to ``topic``            topic ``fanout.<topic>``; each server's queue is
                               subscribed to it (one copy per server)
call                           correlation id + this driver's reply queue;
                               ``rpc_response_timeout`` -> ``MessagingTimeout``
notification ``<t>.<prio>``    topic ``notify.<t>.<prio>``; each listener pool is
                               a subscription queue (one copy per pool, balanced
                               among the pool's listeners)
``requeue()``                  nack
persistence                    ``libqueue:////dir``: every queue persistent
=============================  ==================================================
"""

from __future__ import annotations

import logging
import sys
import threading
import uuid
from typing import Any, Optional

import oslo_messaging
from oslo_config import cfg
from oslo_messaging._drivers import base
from oslo_messaging._drivers import common
from oslo_serialization import jsonutils

from .._broker import Broker, Namespace
from .._errors import LibqueueError, NotFound
from .._queue import Queue
from .._topic import Topic
from . import _brokers, _names
from ._listener import (CALL_MONITOR, REPLY_TO, QueueListener, ThrottledListener,
                        notification_incoming, release_turnstile, rpc_incoming, turnstile)
from ._replies import ReplyWaiter

LOG = logging.getLogger(__name__)

libqueue_opts = [
    cfg.FloatOpt("lease_time", default=300.0, min=0.001,
                 help="Seconds a message taken by a server stays leased to it: one "
                      "neither acknowledged nor requeued by then (its server hung) is "
                      "delivered again. RPC requests are acknowledged when taken."),
    cfg.StrOpt("sync", default="none", choices=_brokers.SYNC_MODES,
               help="With a data directory (libqueue:////dir): 'none' (a send survives "
                    "the process crashing), 'interval' (flushed every 100 ms: survives "
                    "the machine crashing, but the last 100 ms) or 'always' (a send "
                    "returns once on disk)."),
]
GROUP = "oslo_messaging_libqueue"


def _pool_size(conf: Any) -> int:
    try:
        return int(conf.executor_thread_pool_size)
    except (cfg.NoSuchOptError, AttributeError):
        return 64  # oslo's default, for a listener made without a server


class LibqueueDriver(base.BaseDriver):  # type: ignore[misc]
    """An oslo.messaging transport on an embedded libqueue broker: ``libqueue://``
    (in memory, private to the process) or ``libqueue:////abs/dir`` (persistent)."""

    def __init__(self, conf: Any, url: Any, default_exchange: Optional[str] = None,
                 allowed_remote_exmods: Optional[list[str]] = None) -> None:
        super().__init__(conf, url, default_exchange, allowed_remote_exmods)
        try:
            data_dir = _brokers.data_dir_of(url)
        except _brokers.URLError as e:
            raise oslo_messaging.InvalidTransportURL(str(url), str(e)) from None
        conf.register_opts(libqueue_opts, group=GROUP)
        opts = conf[GROUP]
        self._settings = _brokers.Settings(data_dir, opts.sync, opts.lease_time)
        self._broker: Optional[Broker] = _brokers.acquire(self._settings)
        self._lock = threading.Lock()
        self._namespaces: dict[str, Namespace] = {}
        self._queues: dict[tuple[str, str], Queue] = {}
        self._topics: dict[tuple[str, str], Topic] = {}
        self._notify_ready: set[tuple[str, str]] = set()
        self._replies: Optional[ReplyWaiter] = None

    # -- names and handles ----------------------------------------------------------

    @property
    def broker(self) -> Broker:
        """The broker this driver uses (shared with the process's other drivers)."""
        if self._broker is None:
            raise oslo_messaging.MessageDeliveryFailure("the libqueue driver was cleaned up")
        return self._broker

    def _exchange(self, target: Any) -> str:
        return _names.namespace(target.exchange or self._default_exchange or "openstack")

    def _namespace(self, name: str) -> Namespace:
        with self._lock:
            ns = self._namespaces.get(name)
            if ns is None:
                ns = self._namespaces[name] = self.broker.namespace(name)
            return ns

    def _queue(self, ns: str, name: str, create: bool = True) -> Queue:
        key = (ns, name)
        q = self._queues.get(key)
        if q is None:
            namespace = self._namespace(ns)
            q = namespace.queue(name) if create else namespace.get_queue(name)
            with self._lock:
                q = self._queues.setdefault(key, q)
        return q

    def _topic(self, ns: str, name: str) -> Topic:
        key = (ns, name)
        t = self._topics.get(key)
        if t is None:
            t = self._namespace(ns).topic(name)
            with self._lock:
                t = self._topics.setdefault(key, t)
        return t

    # -- sending --------------------------------------------------------------------

    def require_features(self, requeue: bool = False) -> None:
        """Everything is supported (``requeue()`` is a nack)."""

    def send(self, target: Any, ctxt: Any, message: Any, wait_for_reply: Optional[bool] = None,
             timeout: Optional[float] = None, call_monitor_timeout: Optional[float] = None,
             retry: Optional[int] = None, transport_options: Any = None) -> Any:
        """Casts (or with ``wait_for_reply`` calls) ``target``: its topic's queue, its
        server's queue, or with ``fanout`` every server of the topic."""
        ns = self._exchange(target)
        msg_id = uuid.uuid4().hex
        headers: dict[str, str] = {}
        replies = None
        if wait_for_reply:
            replies = self._reply_waiter()
            headers[REPLY_TO] = replies.name
            if call_monitor_timeout:
                headers[CALL_MONITOR] = repr(float(call_monitor_timeout))
            replies.listen(msg_id)
        body = jsonutils.dump_as_bytes({"ctxt": ctxt, "msg": message})
        mandatory = bool(getattr(transport_options, "at_least_once", False))
        ttl = float(timeout) if wait_for_reply and timeout else None
        try:
            self._deliver(ns, target, body, headers, msg_id, ttl, mandatory)
            if replies is not None:
                return replies.wait(msg_id, timeout, call_monitor_timeout)
            return None
        finally:
            if replies is not None:
                replies.unlisten(msg_id)

    def _deliver(self, ns: str, target: Any, body: bytes, headers: dict[str, str],
                 msg_id: str, ttl: Optional[float], mandatory: bool) -> None:
        # Persistence is the queues' default (every queue of a broker on a directory is
        # created persistent), so a cast is a plain body: libqueue's fastest send.
        call = bool(headers)
        try:
            if target.fanout:
                topic = self._topic(ns, _names.fanout_topic(target.topic))
                if call:
                    n = topic.publish(body, headers=headers, correlation_id=msg_id, ttl=ttl)
                else:
                    n = topic.publish(body)
                if n == 0 and mandatory:
                    raise NotFound(f"no server subscribed to fanout {target.topic!r}")
                return
            name = (_names.server_queue(target.topic, target.server) if target.server
                    else _names.rpc_queue(target.topic))
            q = self._queue(ns, name, create=not mandatory)
            if call:
                q.send(body, headers=headers, correlation_id=msg_id, ttl=ttl)
            else:
                q.send(body)
        except NotFound as e:
            routing = target.topic if not target.server else f"{target.topic}.{target.server}"
            raise oslo_messaging.MessageUndeliverable(e, ns, routing, body) from None
        except LibqueueError as e:
            raise oslo_messaging.MessageDeliveryFailure(
                f"libqueue could not send to {target}: {e}") from e

    def send_notification(self, target: Any, ctxt: Any, message: Any, version: float,
                          retry: Optional[int] = None) -> None:
        """Publishes on the notification topic ``target.topic`` (``<topic>.<priority>``);
        its default pool's queue keeps what comes before any listener."""
        ns = self._exchange(target)
        name = _names.notify_topic(target.topic)
        body = jsonutils.dump_as_bytes({"ctxt": ctxt, "msg": message})
        try:
            topic = self._topic(ns, name)
            if (ns, name) not in self._notify_ready:
                topic.subscribe(_names.pool_queue(target.topic, None)).close()
                self._notify_ready.add((ns, name))
            topic.publish(body)
        except LibqueueError as e:
            raise oslo_messaging.MessageDeliveryFailure(
                f"libqueue could not notify {target}: {e}") from e

    def _reply_waiter(self) -> ReplyWaiter:
        with self._lock:
            if self._replies is None:
                ns = self.broker.namespace(_names.REPLY_NAMESPACE)
                self._replies = ReplyWaiter(ns, self._allowed_remote_exmods)
            return self._replies

    def _send_reply(self, reply_to: str, msg_id: Optional[str], result: Any, failure: Any,
                    ending: bool) -> None:
        """Sends a reply (or a heartbeat) to a caller's reply queue; a queue that is
        gone (the caller exited) drops it: replies are at most once."""
        if failure is not None:
            failure = common.serialize_remote_exception(failure)
        try:
            body = jsonutils.dump_as_bytes({"result": result, "failure": failure,
                                            "ending": ending})
        except (TypeError, ValueError):  # a result JSON cannot carry: the caller's error
            failure = common.serialize_remote_exception(sys.exc_info())
            body = jsonutils.dump_as_bytes({"result": None, "failure": failure,
                                            "ending": ending})
        try:
            q = self._queue(_names.REPLY_NAMESPACE, reply_to, create=False)
            q.send(body, correlation_id=msg_id)
        except LibqueueError as e:
            with self._lock:
                self._queues.pop((_names.REPLY_NAMESPACE, reply_to), None)
            LOG.info("libqueue: reply to %s dropped (%s): its caller is gone", msg_id, e)

    # -- listening ------------------------------------------------------------------

    def _listener(self, names: list[tuple[str, str]], make: Any,
                  batch_size: int, batch_timeout: Optional[float],
                  then: Optional[Any] = None) -> ThrottledListener:
        """A listener on the queues ``(namespace, queue)``, in turn with this process's
        other listeners on each; ``then`` runs at its cleanup."""
        broker = self.broker
        queues = [(self._namespace(ns).queue(q), turnstile(broker, ns, q)) for ns, q in names]

        def cleanup() -> None:
            for ns, q in names:
                release_turnstile(broker, ns, q)
            if then is not None:
                then()

        poller = QueueListener(queues, make, cleanup)
        return ThrottledListener(poller, batch_size, batch_timeout, _pool_size(self.conf))

    def listen(self, target: Any, batch_size: int, batch_timeout: Optional[float]) -> Any:
        """An RPC server's listener: its topic's queue, its own queue, and its own
        queue subscribed to the topic's fanout (unsubscribed again at cleanup)."""
        ns = self._exchange(target)
        names = [(ns, _names.rpc_queue(target.topic))]
        unsubscribe = None
        if target.server:
            own = _names.server_queue(target.topic, target.server)
            names.append((ns, own))
            fanout = self._namespace(ns).topic(_names.fanout_topic(target.topic))
            fanout.subscribe(own).close()

            def unsubscribe() -> None:
                try:
                    fanout.unsubscribe(own)
                except LibqueueError as e:
                    LOG.debug("libqueue: %s not unsubscribed: %s", own, e)
                finally:
                    fanout.close()

        return self._listener(names, rpc_incoming(self), batch_size, batch_timeout, unsubscribe)

    def listen_for_notifications(self, targets_and_priorities: Any, pool: Optional[str],
                                 batch_size: int, batch_timeout: Optional[float]) -> Any:
        """A notification listener: one subscription queue per ``(topic, priority)``,
        the pool's (listeners of one pool share it; each pool gets every message)."""
        names = []
        for target, priority in targets_and_priorities:
            ns = self._exchange(target)
            topic = f"{target.topic}.{priority}"
            queue = _names.pool_queue(topic, pool)
            t = self._namespace(ns).topic(_names.notify_topic(topic))
            try:
                t.subscribe(queue).close()
            finally:
                t.close()
            names.append((ns, queue))
        return self._listener(names, notification_incoming, batch_size, batch_timeout)

    # -- cleanup --------------------------------------------------------------------

    def cleanup(self) -> None:
        """Deletes the reply queue, closes this driver's handles and gives the broker
        back (a persistent one is closed with its last driver)."""
        with self._lock:
            replies, self._replies = self._replies, None
            handles: list[Any] = [*self._queues.values(), *self._topics.values(),
                                  *self._namespaces.values()]
            self._queues.clear()
            self._topics.clear()
            self._namespaces.clear()
            self._notify_ready.clear()
            broker, self._broker = self._broker, None
        if replies is not None:
            replies.close()
        for h in handles:
            h.close()
        if broker is not None:
            _brokers.release(broker)


__all__ = ["LibqueueDriver", "libqueue_opts", "GROUP"]
