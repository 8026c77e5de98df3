"""``Bridge``: store-and-forward between local queues and a remote engine (NATS
JetStream or RabbitMQ), at least once both ways (docs/bridges.md).

Configure with :meth:`Bridge.nats` or :meth:`Bridge.rabbitmq` (a
:class:`BridgeBuilder`, each setter checked when called and returning the builder),
then :meth:`BridgeBuilder.start`; or in one call with :meth:`Broker.bridge`::

    bridge = (libqueue.Bridge.nats("nats://127.0.0.1:4222")
              .stream("ORDERS", ["orders.>"])
              .forward("jobs", "orders.created")
              .receive("orders.in", "inbox")
              .start(broker))
    with bridge:
        print(bridge.stats())

    bridge = (libqueue.Bridge.rabbitmq("amqp://guest:guest@127.0.0.1:5672/%2f")
              .forward("jobs", exchange="orders", routing_key="orders.created")
              .receive("orders.in", "inbox")
              .start(broker))
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, Iterable, Mapping, Optional, Union

from ._core import Handle, count, flag, interruptible, to_text
from ._errors import Closed, InvalidState, check
from ._ffi import ffi, lib

if TYPE_CHECKING:
    from ._broker import Broker

#: Routes given to :meth:`Broker.bridge`: a mapping, or (first, second) pairs, in
#: the order of :meth:`BridgeBuilder.forward` / :meth:`BridgeBuilder.receive`. A
#: RabbitMQ forward may name an ``(exchange, routing_key)`` pair as its second.
Routes = Union[Mapping[str, Any], Iterable[tuple[str, Any]]]


@dataclass(frozen=True)
class BridgeStats:
    """A bridge's counters and health (:meth:`Bridge.stats`)."""

    #: Whether the connection to the remote is up now.
    connected: bool
    #: Local messages the remote stored (then acked locally).
    forwarded: int
    #: Remote messages sent to their local queue (then acked remotely).
    received: int
    #: Messages waiting in the forwarded local queues.
    pending_outbound: int
    #: Messages waiting at the remote for the receiving routes, as it last said.
    pending_inbound: int
    #: Publishes (and inbound sends) tried again after a failure.
    retries: int
    #: Publishes the remote reported as duplicates (suppressed replays).
    duplicates: int
    #: Messages dead-lettered locally (unmappable, refused, or too old).
    dead_lettered: int
    #: The last error's text (it stays after recovery; see ``error_since``).
    last_error: Optional[str]
    #: When the last error happened (UTC).
    last_error_at: Optional[datetime]
    #: When the current run of failures began; ``None`` once the bridge made
    #: progress since the last error.
    error_since: Optional[datetime]


def _when(epoch_ms: int) -> Optional[datetime]:
    return None if epoch_ms == 0 else datetime.fromtimestamp(epoch_ms / 1000, timezone.utc)


def _stats_from_c(s: Any) -> BridgeStats:
    text = ffi.string(s.last_error).decode("utf-8", "replace")
    return BridgeStats(bool(s.connected), s.forwarded, s.received, s.pending_outbound,
                       s.pending_inbound, s.retries, s.duplicates, s.dead_lettered,
                       text or None, _when(s.last_error_at_ms), _when(s.error_since_ms))


def _ms(v: object, what: str) -> int:
    """A positive duration in seconds as milliseconds (at least 1)."""
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise TypeError(f"{what} must be a number of seconds, not {type(v).__name__}")
    if not v > 0 or v == float("inf"):
        raise ValueError(f"{what} must be a positive, finite number of seconds (got {v!r})")
    return max(1, int(v * 1000 + 0.5))


class BridgeBuilder:
    """The configuration of a bridge, made by :meth:`Bridge.nats` or
    :meth:`Bridge.rabbitmq`. :meth:`stream`, :meth:`duplicate_window` and
    ``receive(durable=...)`` are for NATS only (on a RabbitMQ builder they raise
    :class:`InvalidArgument`). Every setter
    checks its arguments at once (:class:`TypeError`, :class:`ValueError` /
    :class:`InvalidArgument`) and returns the builder; :meth:`start` consumes it.
    Queues are ``"queue"`` (default namespace) or ``"namespace/queue"``, created if
    missing; subject and queue names are checked by :meth:`start`. Use from one
    thread."""

    __slots__ = ("_b", "__weakref__")

    def __init__(self, new: object, url: str) -> None:
        """Use :meth:`Bridge.nats` or :meth:`Bridge.rabbitmq` (``new`` is the C
        ``lq_bridge_<kind>_new``)."""
        u = to_text(url, "url")
        out = ffi.new("lq_bridge_builder **")
        make: Any = new
        check(make(u, len(u), out))
        self._b: Any = out[0]

    def _builder(self) -> Any:
        if self._b is None:
            raise InvalidState("the builder is spent: start() consumed it")
        return self._b

    def forward(self, queue: str, subject: Optional[str] = None, *,
                exchange: Optional[str] = None,
                routing_key: Optional[str] = None) -> "BridgeBuilder":
        """Forwards the local ``queue`` to the remote ``subject`` (NATS: a stream
        must take it; RabbitMQ: the routing key on the default exchange, which
        delivers to the remote queue of that name), or — RabbitMQ only — to
        ``exchange`` (default ``""``) with ``routing_key``. Give ``subject`` or
        ``routing_key``, not both. One bridge at a time may forward a queue."""
        q = to_text(queue, "queue")
        if routing_key is None:
            if exchange is not None:
                raise TypeError("forward(): exchange needs a routing_key")
            if subject is None:
                raise TypeError("forward(): give a subject or a routing_key")
            s = to_text(subject, "subject")
            check(lib.lq_bridge_builder_forward(self._builder(), q, len(q), s, len(s)))
            return self
        if subject is not None:
            raise TypeError("forward(): give a subject or a routing_key, not both")
        e = to_text("" if exchange is None else exchange, "exchange")
        k = to_text(routing_key, "routing_key")
        check(lib.lq_bridge_builder_forward_exchange(self._builder(), q, len(q), e, len(e),
                                                     k, len(k)))
        return self

    def receive(self, subject: str, queue: str, *, durable: Optional[str] = None) -> "BridgeBuilder":
        """Feeds the local ``queue`` from the remote ``subject`` (wildcards allowed)
        through a durable consumer (``lq-<namespace>-<queue>``, or ``durable``),
        which keeps its place across restarts. RabbitMQ: ``subject`` is the remote
        queue, consumed with manual acks (no ``durable``)."""
        s, q = to_text(subject, "subject"), to_text(queue, "queue")
        b = self._builder()
        if durable is None:
            check(lib.lq_bridge_builder_receive(b, s, len(s), q, len(q)))
        else:
            d = to_text(durable, "durable")
            check(lib.lq_bridge_builder_receive_durable(b, s, len(s), q, len(q), d, len(d)))
        return self

    def stream(self, name: str, subjects: Union[str, Iterable[str]]) -> "BridgeBuilder":
        """Creates the stream ``name`` taking ``subjects`` at start, if none of that
        name exists (an existing one is left as it is)."""
        n = to_text(name, "name")
        subs = [subjects] if isinstance(subjects, str) else list(subjects)
        if not subs:
            raise ValueError("a stream needs at least one subject")
        encoded = [to_text(s, "subjects") for s in subs]
        b = self._builder()
        for s in encoded:
            check(lib.lq_bridge_builder_stream(b, n, len(n), s, len(s)))
        return self

    def duplicate_window(self, seconds: float) -> "BridgeBuilder":
        """The duplicate window of the streams :meth:`stream` creates (JetStream's
        default: 2 minutes); replays are suppressed within it."""
        check(lib.lq_bridge_builder_duplicate_window_ms(self._builder(), _ms(seconds, "seconds")))
        return self

    def identity(self, identity: str) -> "BridgeBuilder":
        """The identity in every outbound message id (default: kept in the data
        directory's ``bridge-id`` file; random per start without one)."""
        i = to_text(identity, "identity")
        check(lib.lq_bridge_builder_identity(self._builder(), i, len(i)))
        return self

    def window(self, n: int) -> "BridgeBuilder":
        """Publishes in flight per forwarded queue (default 256; 1 sends one at a
        time), and the largest inbound fetch."""
        check(lib.lq_bridge_builder_window(self._builder(), count(n, "n")))
        return self

    def backoff(self, first: float, most: float) -> "BridgeBuilder":
        """The first and the longest wait between retries, in seconds (default 0.1
        and 30; each failure doubles the wait)."""
        check(lib.lq_bridge_builder_backoff_ms(self._builder(), _ms(first, "first"),
                                               _ms(most, "most")))
        return self

    def max_age(self, seconds: float) -> "BridgeBuilder":
        """Dead-letters (locally, with the reason) an outbound message not forwarded
        within ``seconds`` of its send. Default: retried forever."""
        check(lib.lq_bridge_builder_max_age_ms(self._builder(), _ms(seconds, "seconds")))
        return self

    def connect_timeout(self, seconds: float) -> "BridgeBuilder":
        """How long the first connection may take (default 5 s)."""
        check(lib.lq_bridge_builder_connect_timeout_ms(self._builder(), _ms(seconds, "seconds")))
        return self

    def ack_timeout(self, seconds: float) -> "BridgeBuilder":
        """How long a publish waits for the remote's confirmation (default 5 s)."""
        check(lib.lq_bridge_builder_ack_timeout_ms(self._builder(), _ms(seconds, "seconds")))
        return self

    def connect_in_background(self, yes: bool = True) -> "BridgeBuilder":
        """With ``True``, :meth:`start` returns at once and the bridge connects when
        it can (until then ``stats().last_error`` says why not)."""
        check(lib.lq_bridge_builder_connect_in_background(self._builder(),
                                                          flag(yes, "yes")))
        return self

    def start(self, broker: "Broker") -> "Bridge":
        """Starts the bridge on its own thread, consuming the builder (also on
        failure). Raises :class:`InvalidArgument` / :class:`InvalidName` (a bad
        subject, queue or consumer name; no route), :class:`AlreadyExists` (a queue
        another bridge forwards), :class:`Closed` (a closed broker), and unless
        connecting in the background :class:`IOFailure` (the remote cannot be
        reached; the message names the URL) or :class:`NotFound` (no stream takes a
        subject)."""
        from ._broker import Broker

        if not isinstance(broker, Broker):
            raise TypeError(f"broker must be a Broker, not {type(broker).__name__}")
        b = self._builder()
        self._b = None  # consumed by lq_bridge_start, whatever it returns
        out = ffi.new("lq_bridge **")
        try:
            # Not interruptible: a start left running on a helper thread would
            # leave a bridge nobody owns. It waits at most about the connect
            # timeout (cffi releases the GIL meanwhile).
            st = broker._call(_start, b, out)
        except Closed:  # the Python broker was closed: the builder was not passed on
            lib.lq_bridge_builder_free(b)
            raise
        check(st)
        return Bridge(out[0], broker)

    def __del__(self) -> None:
        b, self._b = getattr(self, "_b", None), None
        if b is not None:
            try:
                lib.lq_bridge_builder_free(b)
            except Exception:  # pragma: no cover - interpreter shutdown
                pass


def _start(broker: Any, builder: Any, out: Any) -> int:
    st: int = lib.lq_bridge_start(builder, broker, out)
    return st


class Bridge(Handle):
    """A running bridge (see :meth:`BridgeBuilder.start` and :meth:`Broker.bridge`).
    :meth:`stop` (or ``close()``, or leaving a ``with`` block) stops it: what is in
    flight is confirmed or given back to its queue. :meth:`stats` may be called from
    any thread, also after :meth:`stop` (the final counters)."""

    __slots__ = ("_last", "_stopping")
    _free_fn = "lq_bridge_free"
    _kind = "bridge"

    def __init__(self, h: object, broker: "Broker") -> None:
        """Made by :meth:`BridgeBuilder.start` (``h``: the C ``lq_bridge *``)."""
        self._last: Optional[BridgeStats] = None
        self._stopping = threading.Lock()
        self._own(h, broker)  # the bridge keeps its broker alive

    @staticmethod
    def nats(url: str) -> BridgeBuilder:
        """A builder for a bridge to NATS JetStream at ``url`` (``nats://host:port``,
        several comma-separated; ``tls://`` for TLS). A malformed URL raises
        :class:`InvalidArgument` here; nothing connects before :meth:`BridgeBuilder.start`."""
        return BridgeBuilder(lib.lq_bridge_nats_new, url)

    @staticmethod
    def rabbitmq(url: str) -> BridgeBuilder:
        """A builder for a bridge to RabbitMQ at ``url``
        (``amqp://user:password@host:port/vhost``, the vhost percent-encoded:
        ``%2f`` for ``/``). A malformed URL raises :class:`InvalidArgument` here;
        nothing connects before :meth:`BridgeBuilder.start`. The bridge declares
        nothing: the exchanges and remote queues must exist."""
        return BridgeBuilder(lib.lq_bridge_rabbitmq_new, url)

    def stats(self) -> BridgeStats:
        """The counters and health now (after :meth:`stop`: the final ones)."""
        if self._last is not None and self.closed:
            return self._last
        s = ffi.new("lq_bridge_stats *")
        s.struct_size = ffi.sizeof("lq_bridge_stats")
        check(self._call(lib.lq_bridge_get_stats, s))
        return _stats_from_c(s)

    def stop(self) -> None:
        """Stops the bridge and waits for its thread (at most about the ack
        timeout), then frees it. Idempotent; in the main thread Ctrl-C interrupts
        the wait (the bridge then finishes stopping on its own)."""
        pin = self._pin
        if pin is None or not self._stopping.acquire(blocking=False):
            return
        try:
            st = interruptible(self._call, lib.lq_bridge_stop)
            if st not in (lib.LQ_OK, lib.LQ_INVALID_STATE):
                check(st)
            s = ffi.new("lq_bridge_stats *")
            s.struct_size = ffi.sizeof("lq_bridge_stats")
            if self._call(lib.lq_bridge_get_stats, s) == lib.LQ_OK:
                self._last = _stats_from_c(s)
        finally:
            pin.close()  # freed once no call is inside

    def close(self) -> None:
        """:meth:`stop`."""
        self.stop()

    def __enter__(self) -> "Bridge":
        return self

    def __repr__(self) -> str:
        return "<libqueue.Bridge closed>" if self.closed else "<libqueue.Bridge>"


#: The builders :meth:`Broker.bridge` knows, by ``kind``.
KINDS = {"nats": Bridge.nats, "rabbitmq": Bridge.rabbitmq}


def _kind_of(url: object) -> str:
    """The ``kind`` :meth:`Broker.bridge` takes when none is given: ``"rabbitmq"``
    for an ``amqp://`` URL, else ``"nats"``."""
    return "rabbitmq" if isinstance(url, str) and url.startswith("amqp://") else "nats"


def _pairs(routes: Routes, what: str) -> list[tuple[str, str]]:
    if isinstance(routes, Mapping):
        return list(routes.items())
    if isinstance(routes, (str, bytes)):
        raise TypeError(f"{what} must be a mapping or (str, str) pairs, not {type(routes).__name__}")
    out = []
    for p in routes:
        if not isinstance(p, tuple) or len(p) != 2:
            raise TypeError(f"{what} must be a mapping or (str, str) pairs; got {p!r}")
        out.append(p)
    return out


def bridge(broker: "Broker", url: str, *, kind: Optional[str] = None, forward: Routes = (),
           receive: Routes = (), streams: Optional[Mapping[str, Iterable[str]]] = None,
           identity: Optional[str] = None, window: Optional[int] = None,
           backoff: Optional[tuple[float, float]] = None, max_age: Optional[float] = None,
           connect_timeout: Optional[float] = None, ack_timeout: Optional[float] = None,
           duplicate_window: Optional[float] = None,
           connect_in_background: bool = False) -> Bridge:
    """:meth:`Broker.bridge`: the builder's settings as keywords, then started."""
    if kind is None:
        kind = _kind_of(url)
    new = KINDS.get(kind) if isinstance(kind, str) else None
    if new is None:
        raise ValueError(f"kind must be one of {sorted(KINDS)}, not {kind!r}")
    b = new(url)
    for queue, target in _pairs(forward, "forward"):
        if isinstance(target, tuple):
            if len(target) != 2:
                raise TypeError(f"forward: {queue!r} -> {target!r}: an (exchange, routing_key) pair")
            b.forward(queue, exchange=target[0], routing_key=target[1])
        else:
            b.forward(queue, target)
    for subject, queue in _pairs(receive, "receive"):
        b.receive(subject, queue)
    if streams is not None:
        if not isinstance(streams, Mapping):
            raise TypeError(f"streams must be a mapping of name to subjects, not {type(streams).__name__}")
        for name, subjects in streams.items():
            b.stream(name, subjects)
    if identity is not None:
        b.identity(identity)
    if window is not None:
        b.window(window)
    if backoff is not None:
        if not isinstance(backoff, tuple) or len(backoff) != 2:
            raise TypeError("backoff must be a (first, most) tuple of seconds")
        b.backoff(*backoff)
    if max_age is not None:
        b.max_age(max_age)
    if connect_timeout is not None:
        b.connect_timeout(connect_timeout)
    if ack_timeout is not None:
        b.ack_timeout(ack_timeout)
    if duplicate_window is not None:
        b.duplicate_window(duplicate_window)
    if flag(connect_in_background, "connect_in_background"):
        b.connect_in_background(True)
    return b.start(broker)


__all__ = ["Bridge", "BridgeBuilder", "BridgeStats"]
