"""libqueue: an embedded message queue engine (no server), from Python.

>>> import libqueue
>>> with libqueue.Broker() as broker:
...     q = broker.queue("jobs")
...     _ = q.send(b"hello", headers={"k": "v"}, name="greet")
...     with q.receive(timeout=1) as d:
...         print(d.name, d.body)
greet b'hello'

The C library is called through cffi (ABI mode) over the generated ``libqueue.h``;
every blocking call releases the GIL. See ``libqueue.compat`` for a drop-in
replacement of the standard library's ``queue`` module.
"""

from __future__ import annotations

from ._bridge import Bridge, BridgeBuilder, BridgeStats
from ._broker import (DEFAULT_NAMESPACE, DEFAULT_QUEUE, Broker, ClientInfo, HostInfo, Namespace,
                      NamespaceStats, RecoveryReport)
from ._delivery import Delivery
from ._errors import (AlreadyExists, Closed, Corrupt, Empty, Forked, Full, InvalidArgument,
                      InvalidName, InvalidState, InvalidUtf8, IOFailure, LeaseExpired,
                      LibqueueError, Locked, MessageTooLarge, NotFound, Panic,
                      QuotaExceeded, RemoteError, StorageError, Timeout)
from ._ffi import ffi as _cffi
from ._ffi import lib as _lib
from ._message import EXECUTION_ID, Message
from ._options import QueueOptions, Quotas
from ._pool import Pool, PoolStats
from ._queue import Queue, QueueStats
from ._rpc import RpcClient
from ._topic import Topic, TopicStats

#: The version of the loaded C library (``lq_version()``).
LIBRARY_VERSION: str = _cffi.string(_lib.lq_version()).decode()
__version__ = "0.1.0"

__all__ = [
    "Broker", "Namespace", "Queue", "Delivery", "Message", "Topic", "Pool", "RpcClient",
    "Quotas", "QueueOptions", "QueueStats", "NamespaceStats", "PoolStats", "RecoveryReport",
    "TopicStats", "HostInfo", "ClientInfo", "Bridge", "BridgeBuilder", "BridgeStats",
    "DEFAULT_NAMESPACE", "DEFAULT_QUEUE", "EXECUTION_ID", "LIBRARY_VERSION",
    "LibqueueError", "Empty", "Timeout", "Full", "Closed", "NotFound", "AlreadyExists",
    "QuotaExceeded", "LeaseExpired", "InvalidState", "RemoteError", "MessageTooLarge",
    "InvalidArgument", "InvalidName", "InvalidUtf8", "StorageError", "Corrupt", "Locked",
    "IOFailure", "Panic", "Forked",
]
