"""``Broker`` (one engine instance) and ``Namespace`` (a tenant)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Iterable, Mapping, Optional, Sequence, Union

from ._core import BytesLike, Handle, count, ms, string_list, to_text
from ._errors import check
from ._ffi import NULL, ffi, lib
from ._message import Message, SendOptions
from ._options import QueueOptions, QueueOptionsFields, Quotas
from ._queue import Queue, QueueStats

if TYPE_CHECKING:  # imported when used (they import this module)
    from typing_extensions import Unpack

    from ._bridge import Bridge, Routes

    from ._pool import Pool
    from ._rpc import RpcClient
    from ._topic import Topic

_SYNC: dict[str, int] = {"none": lib.LQ_SYNC_NONE, "interval": lib.LQ_SYNC_INTERVAL, "always": lib.LQ_SYNC_ALWAYS}

DEFAULT_NAMESPACE = "default"
DEFAULT_QUEUE = "default"


@dataclass(frozen=True)
class NamespaceStats:
    """Statistics of a namespace: its number of queues and their stats summed."""

    queues: int
    totals: QueueStats


@dataclass(frozen=True)
class RecoveryReport:
    """What opening a data directory found: records replayed, queues and unacked
    persistent messages brought back, and any damage (cut off, never delivered)."""

    records_read: int
    queues: int
    messages_recovered: int
    bytes_cut: int
    segments_damaged: int
    damage: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class ClientInfo:
    """A process attached to a shared data directory (:meth:`Broker.host_info`)."""

    pid: int
    uid: int
    #: When it connected, in seconds since the Unix epoch.
    since: int
    #: Messages it holds leased now.
    leases: int


@dataclass(frozen=True)
class HostInfo:
    """Who hosts a shared data directory: the host's pid, the processes attached
    now, the clients it dropped for misbehaving, and how many times the directory
    changed host (takeovers)."""

    pid: int
    takeovers: int
    dropped: int
    clients: list[ClientInfo] = field(default_factory=list)


def _named(h: Any, fn: Any, name: str, ctype: str, *extra: Any) -> Any:
    b = to_text(name, "name")
    out = ffi.new(ctype)
    check(fn(h, b, len(b), *extra, out))
    return out[0]


class Namespace(Handle):
    """A namespace (tenant): queues and topics that no other namespace can see,
    under its own :class:`Quotas`. Shareable between threads."""

    __slots__ = ("_name", "_sync_always")
    _free_fn = "lq_namespace_free"
    _kind = "namespace"

    def __init__(self, h: Any, sync_always: bool = False, parent: Any = None) -> None:
        self._own(h, parent)  # ``parent``: the broker, kept alive by the namespace
        self._sync_always = sync_always  # sends wait for the disk: release the GIL
        ptr = ffi.new("const uint8_t **")
        ln = ffi.new("size_t *")
        check(lib.lq_namespace_name(h, ptr, ln))
        self._name: str = ffi.unpack(ffi.cast("char *", ptr[0]), ln[0]).decode()

    @property
    def name(self) -> str:
        """The namespace's name."""
        return self._name

    def __repr__(self) -> str:
        return f"<libqueue.Namespace {self._name!r}>"

    def queue(self, name: str = DEFAULT_QUEUE, options: Optional[QueueOptions] = None,
              **kw: Unpack[QueueOptionsFields]) -> Queue:
        """The queue ``name``, created on first use (with ``options`` or keyword
        :class:`QueueOptions` fields if given, else the broker's defaults)."""
        if options is None and kw:
            options = QueueOptions(**kw)
        if options is None:
            return Queue(self._call(_named, lib.lq_namespace_queue, name, "lq_queue **"), self._sync_always, self)
        try:
            return self.create_queue(name, options)
        except Exception as e:
            from ._errors import AlreadyExists

            if isinstance(e, AlreadyExists):
                return self.get_queue(name)
            raise

    def create_queue(self, name: str, options: Optional[QueueOptions] = None,
                     **kw: Unpack[QueueOptionsFields]) -> Queue:
        """Creates the queue ``name`` (:class:`AlreadyExists` if it exists)."""
        if options is not None and not isinstance(options, QueueOptions):
            raise TypeError(f"options must be a QueueOptions, not {type(options).__name__}")
        opts = (options or QueueOptions(**kw))._to_c()
        return Queue(self._call(_named, lib.lq_namespace_create_queue, name, "lq_queue **", opts), self._sync_always, self)

    def get_queue(self, name: str) -> Queue:
        """An existing queue (:class:`NotFound` otherwise)."""
        return Queue(self._call(_named, lib.lq_namespace_get_queue, name, "lq_queue **"), self._sync_always, self)

    def delete_queue(self, name: str) -> None:
        """Deletes a queue and its messages; its handles then raise :class:`Closed`."""
        b = to_text(name, "name")
        check(self._call(lib.lq_namespace_delete_queue, b, len(b)))
        from ._aio import wake_all

        wake_all()

    def queues(self) -> list[str]:
        """Names of its queues, sorted."""
        out = ffi.new("lq_strings **")
        check(self._call(lib.lq_namespace_list, False, out))
        return string_list(out[0], lib.lq_strings_free, lib)

    def topics(self) -> list[str]:
        """Names of its topics, sorted."""
        out = ffi.new("lq_strings **")
        check(self._call(lib.lq_namespace_list, True, out))
        return string_list(out[0], lib.lq_strings_free, lib)

    def topic(self, name: str) -> "Topic":
        """The topic ``name``, created on first use."""
        from ._topic import Topic

        return Topic(self._call(_named, lib.lq_namespace_topic, name, "lq_topic **"), name, self._sync_always, self)

    def stats(self) -> NamespaceStats:
        """Statistics over all its queues."""
        s = ffi.new("lq_namespace_stats *")
        check(self._call(lib.lq_namespace_get_stats, s))
        return NamespaceStats(s.queues, QueueStats._from_c(s.totals))

    def pool(self, queue: str = DEFAULT_QUEUE, size: int = 4,
             backoff: Optional[tuple[float, float]] = None) -> "Pool":
        """A consumer pool on ``queue`` running at most ``size`` handlers at once;
        register handlers with ``@pool.handler("name")``, then ``start()``."""
        from ._pool import Pool

        return Pool(self, queue, size, backoff)

    def rpc(self) -> "RpcClient":
        """An RPC client with its own reply queue in this namespace."""
        from ._rpc import RpcClient

        out = ffi.new("lq_rpc_client **")
        check(self._call(lib.lq_rpc_client_new, out))
        return RpcClient(out[0], self)


class Broker(Handle):
    """One engine instance: in memory, or with ``data_dir`` a journal on disk that
    persistent messages survive a crash in.

    Any number of processes may open the same ``data_dir``: the first *hosts* it,
    the others *attach* to it (:attr:`is_attached`) and get the same API, served
    by the host, whose options apply (docs/multi-process.md). ``exclusive=True``
    keeps the directory to this process alone (:class:`Locked` if another process
    holds it). ``allow_uids``: users besides this process's own allowed to attach
    while it hosts (the directory's permissions apply first; a new one is 0700).

    ``sync``: ``"none"`` (survives a process crash), ``"interval"`` (flushed every
    ``sync_interval`` seconds) or ``"always"`` (send returns once on disk).
    ``quotas`` and ``queue_options`` are the defaults of namespaces and queues created
    on first use. Use it as a context manager, or call :meth:`close`.
    """

    __slots__ = ("_default_ns", "_report", "_sync_always")
    _free_fn = "lq_broker_free"
    _close_fn = "lq_broker_close"  # closes every queue: wakes every waiter
    _kind = "broker"

    def __init__(
        self,
        data_dir: Union[str, os.PathLike[str], None] = None,
        *,
        sync: str = "none",
        sync_interval: float = 0.1,
        segment_size: Optional[int] = None,
        quotas: Optional[Quotas] = None,
        queue_options: Optional[QueueOptions] = None,
        exclusive: bool = False,
        allow_uids: Sequence[int] = (),
    ) -> None:
        self._h = None
        self._pin = None
        self._default_ns: Optional[Namespace] = None
        self._sync_always = sync == "always"
        self._report: Optional[RecoveryReport] = None
        if not isinstance(sync, str):
            raise TypeError(f"sync must be a str, not {type(sync).__name__}")
        if data_dir is not None and not isinstance(data_dir, (str, bytes, os.PathLike)):
            raise TypeError(f"data_dir must be a path (str or os.PathLike), "
                            f"not {type(data_dir).__name__}")
        if not isinstance(exclusive, bool):
            raise TypeError(f"exclusive must be a bool, not {type(exclusive).__name__}")
        if isinstance(allow_uids, (str, bytes)) or not isinstance(allow_uids, Sequence):
            raise TypeError(f"allow_uids must be a sequence of int, not {type(allow_uids).__name__}")
        uids = [count(u, "allow_uids", 32) for u in allow_uids]
        if sync not in _SYNC:
            raise ValueError(f"sync must be one of {sorted(_SYNC)}, not {sync!r}")
        o = ffi.new("lq_broker_options **")
        check(lib.lq_broker_options_new(o))
        opts = ffi.gc(o[0], lib.lq_broker_options_free)
        if data_dir is not None:
            d = os.fsencode(data_dir)
            check(lib.lq_broker_options_set_data_dir(opts, d, len(d)))
        check(lib.lq_broker_options_set_sync_mode(opts, _SYNC[sync], ms(sync_interval, "sync_interval")))
        if exclusive:
            check(lib.lq_broker_options_set_exclusive(opts, True))
        if uids:
            check(lib.lq_broker_options_set_allow_uids(opts, ffi.new("uint32_t[]", uids), len(uids)))
        if segment_size is not None:
            check(lib.lq_broker_options_set_segment_size(opts, count(segment_size, "segment_size")))
        if quotas is not None and not isinstance(quotas, Quotas):
            raise TypeError(f"quotas must be a Quotas, not {type(quotas).__name__}")
        if queue_options is not None and not isinstance(queue_options, QueueOptions):
            raise TypeError(f"queue_options must be a QueueOptions, not {type(queue_options).__name__}")
        if quotas is not None:
            check(lib.lq_broker_options_set_default_quotas(opts, quotas._to_c()))
        if queue_options is not None:
            check(lib.lq_broker_options_set_default_queue_options(opts, queue_options._to_c()))
        out = ffi.new("lq_broker **")
        check(lib.lq_broker_open(opts, out))
        self._own(out[0])

    def close(self) -> None:
        """Closes the broker: blocked receives in other threads raise :class:`Closed`,
        persistent data is flushed, the data directory released, and the handle
        freed. Idempotent."""
        ns, self._default_ns = self._default_ns, None
        if ns is not None:
            ns.close()
        pin = self._pin
        if pin is not None and pin.close():  # wakes every waiter; frees once none is inside
            from ._aio import wake_all

            wake_all()

    def namespace(self, name: str = DEFAULT_NAMESPACE) -> Namespace:
        """The namespace ``name``, created with the default quotas if missing."""
        return Namespace(self._call(_named, lib.lq_broker_namespace, name, "lq_namespace **"), self._sync_always, self)

    def create_namespace(self, name: str, quotas: Optional[Quotas] = None) -> Namespace:
        """Creates a namespace with ``quotas``. If it exists with the same quotas (declared
        again, e.g. at the next start on the same data directory) it is returned unchanged;
        with other quotas, :class:`AlreadyExists`. With a data directory the namespace and
        its quotas are journaled and survive a restart."""
        if quotas is not None and not isinstance(quotas, Quotas):
            raise TypeError(f"quotas must be a Quotas, not {type(quotas).__name__}")
        q = quotas._to_c() if quotas is not None else NULL
        return Namespace(self._call(_named, lib.lq_broker_create_namespace, name,
                                "lq_namespace **", q), self._sync_always, self)

    def get_namespace(self, name: str) -> Namespace:
        """An existing namespace (:class:`NotFound` otherwise)."""
        return Namespace(self._call(_named, lib.lq_broker_get_namespace, name, "lq_namespace **"), self._sync_always, self)

    def namespaces(self) -> list[str]:
        """Names of all namespaces, sorted."""
        out = ffi.new("lq_strings **")
        check(self._call(lib.lq_broker_list_namespaces, out))
        return string_list(out[0], lib.lq_strings_free, lib)

    @property
    def default_namespace(self) -> Namespace:
        """The ``default`` namespace (one handle, kept)."""
        if self._default_ns is None:
            self._default_ns = self.namespace(DEFAULT_NAMESPACE)
        return self._default_ns

    def queue(self, name: str = DEFAULT_QUEUE, options: Optional[QueueOptions] = None,
              **kw: Unpack[QueueOptionsFields]) -> Queue:
        """A queue of the default namespace, created on first use."""
        if options is None and not kw:
            return Queue(self._call(_named, lib.lq_broker_queue, name, "lq_queue **"), self._sync_always, self)
        return self.default_namespace.queue(name, options, **kw)

    def topic(self, name: str) -> "Topic":
        """A topic of the default namespace."""
        return self.default_namespace.topic(name)

    def pool(self, queue: str = DEFAULT_QUEUE, size: int = 4,
             backoff: Optional[tuple[float, float]] = None) -> "Pool":
        """A consumer pool on a queue of the default namespace."""
        return self.default_namespace.pool(queue, size, backoff)

    def rpc(self) -> "RpcClient":
        """An RPC client in the default namespace."""
        return self.default_namespace.rpc()

    def bridge(self, url: str, *, kind: Optional[str] = None, forward: "Routes" = (),
               receive: "Routes" = (), streams: Optional[Mapping[str, Iterable[str]]] = None,
               identity: Optional[str] = None, window: Optional[int] = None,
               backoff: Optional[tuple[float, float]] = None, max_age: Optional[float] = None,
               connect_timeout: Optional[float] = None, ack_timeout: Optional[float] = None,
               duplicate_window: Optional[float] = None,
               connect_in_background: bool = False) -> "Bridge":
        """Starts a bridge (docs/bridges.md) between this broker's queues and the
        remote at ``url`` — ``kind="nats"``: NATS JetStream, ``kind="rabbitmq"``:
        RabbitMQ (the default: ``"rabbitmq"`` for an ``amqp://`` URL, else
        ``"nats"``). ``forward``: local queue → remote subject (RabbitMQ: a routing
        key on the default exchange, or an ``(exchange, routing_key)`` pair);
        ``receive``: remote subject (RabbitMQ: queue) → local queue (each a mapping,
        or pairs in that order); ``streams`` (NATS): name → subjects, created if
        missing.
        The other keywords are :class:`BridgeBuilder`'s settings (durations in
        seconds). Equivalent to ``Bridge.nats(url).forward(...)....start(broker)``;
        raises what :meth:`BridgeBuilder.start` raises::

            with broker.bridge("nats://127.0.0.1:4222", forward={"jobs": "orders.new"},
                               streams={"ORDERS": ["orders.>"]}) as bridge:
                ...
            with broker.bridge("amqp://guest:guest@127.0.0.1:5672/%2f",
                               forward={"jobs": ("orders", "orders.created")},
                               receive={"orders.in": "inbox"}) as bridge:
                ...
        """
        from ._bridge import bridge

        return bridge(self, url, kind=kind, forward=forward, receive=receive, streams=streams,
                      identity=identity, window=window, backoff=backoff, max_age=max_age,
                      connect_timeout=connect_timeout, ack_timeout=ack_timeout,
                      duplicate_window=duplicate_window,
                      connect_in_background=connect_in_background)

    def send(self, body: BytesLike | Message, queue: str = DEFAULT_QUEUE,
             **kw: Unpack[SendOptions]) -> int:
        """Sends to a queue of the default namespace (see :meth:`Queue.send`)."""
        with self.queue(queue) as q:
            return q.send(body, **kw)

    def flush(self) -> None:
        """Makes every persistent message sent so far durable, whatever the sync mode."""
        check(self._call(lib.lq_broker_flush))

    @property
    def is_closed(self) -> bool:
        """Whether the broker was closed."""
        return self.closed

    @property
    def is_attached(self) -> bool:
        """Whether another process hosts the data directory and this broker is
        attached to it (``False`` when this process hosts it, or without one; it
        turns ``False`` when this process takes over from a host that went)."""
        out = ffi.new("bool *")
        check(self._call(lib.lq_broker_is_attached, out))
        return bool(out[0])

    def host_info(self) -> HostInfo:
        """Who hosts the data directory and who is attached to it, asked of the host
        (:class:`InvalidState` for a broker that shares no data directory: in
        memory, or ``exclusive``)."""
        return self._call(self._read_host_info)  # type: ignore[no-any-return]

    @staticmethod
    def _read_host_info(h: Any) -> HostInfo:
        cap = 16
        while True:
            info = ffi.new("lq_host_info *")
            info.struct_size = ffi.sizeof("lq_host_info")
            clients = ffi.new("lq_host_client[]", cap)
            check(lib.lq_broker_host_info(h, info, clients, cap, ffi.sizeof("lq_host_client")))
            if info.clients <= cap:
                return HostInfo(info.pid, info.takeovers, info.dropped,
                                [ClientInfo(c.pid, c.uid, c.since, c.leases)
                                 for c in clients[0:info.clients]])
            cap = info.clients + 16  # more attached than room: again, larger

    @property
    def recovery_report(self) -> Optional[RecoveryReport]:
        """What opening the data directory found (``None`` in memory)."""
        if self._report is None:
            self._report = self._call(self._read_report)
        return self._report

    @staticmethod
    def _read_report(h: Any) -> Optional[RecoveryReport]:
        r = ffi.new("lq_recovery_report *")
        st = lib.lq_broker_recovery_report(h, r)
        if st == lib.LQ_NOT_FOUND:
            return None
        check(st)
        damage = []
        ptr = ffi.new("const uint8_t **")
        ln = ffi.new("size_t *")
        for i in range(r.damage_count):
            if lib.lq_broker_recovery_damage(h, i, ptr, ln) == 0:
                damage.append(ffi.unpack(ffi.cast("char *", ptr[0]), ln[0]).decode("utf-8", "replace"))
        return RecoveryReport(r.records_read, r.queues, r.messages_recovered,
                              r.bytes_cut, r.segments_damaged, damage)
