"""libqueue as an oslo.messaging transport: ``transport_url = libqueue://``.

This sub-package is the oslo.messaging driver (entry point ``libqueue`` of
``oslo.messaging.drivers``): OpenStack services (``get_rpc_server``,
``RPCClient.call/cast``, fanout, notifications, the executors) run unchanged on an
embedded libqueue broker, in memory (``libqueue://``, private to the process) or
persistent on a directory (``libqueue:////abs/dir``). It needs oslo.messaging
(``pip install libqueue[oslo]``); the rest of the package does not, and does not
import this.

It may use the package's public Python API (``Broker``, ``Namespace``, ``Queue``,
``Topic``, ``Delivery``, the errors) and oslo.messaging; nothing else. Files:

- ``driver.py``: ``LibqueueDriver``, the mapping of oslo's addresses onto
  namespaces, queues and topics, sending, calls and replies on the server's side.
- ``_listener.py``: incoming messages, the listener that waits on the queues'
  descriptors, and the executor-slot throttle.
- ``_replies.py``: the caller's reply queue and the wait for a reply.
- ``_names.py``: oslo names to libqueue names.
- ``_brokers.py``: ``transport_url`` validation and the brokers a process shares.

See ``docs/oslo-messaging.md``.
"""

from __future__ import annotations

from .driver import GROUP, LibqueueDriver, libqueue_opts

__all__ = ["LibqueueDriver", "libqueue_opts", "GROUP"]
