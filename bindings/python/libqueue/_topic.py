"""``Topic``: publish once, every subscription (a queue) gets a copy."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Mapping, Optional

from ._core import BytesLike, Handle, string_list, to_bytes, to_text
from ._errors import check
from ._ffi import NULL, ffi, lib
from ._message import EXECUTION_ID, Message, MessageOptions, build, build_from
from ._queue import Queue

if TYPE_CHECKING:
    from typing_extensions import Unpack


@dataclass(frozen=True)
class TopicStats:
    """Counters of a topic since its broker opened: publishes, those that found no
    subscription at all (``dropped_no_subscriber``: the message went nowhere), those
    whose subscriptions' filters all refused it (``unmatched``), and the number of
    subscriptions now."""

    published: int
    dropped_no_subscriber: int
    unmatched: int
    subscriptions: int


class Topic(Handle):
    """A topic of a namespace. Shareable between threads."""

    __slots__ = ("_name", "_sync_always")
    _free_fn = "lq_topic_free"
    _close_fn = "lq_topic_close"  # wakes a publish waiting for room in a subscription
    _kind = "topic"

    def __init__(self, h: Any, name: str, sync_always: bool = False, parent: Any = None) -> None:
        self._own(h, parent)  # ``parent``: its namespace, kept alive by the topic
        self._name = name
        self._sync_always = sync_always

    @property
    def name(self) -> str:
        """The topic's name."""
        return self._name

    def __repr__(self) -> str:
        return f"<libqueue.Topic {self._name!r}>"

    def subscribe(self, queue: str, *, name: Optional[str] = None,
                  header: Optional[tuple[str, BytesLike]] = None,
                  execution_id: Optional[str] = None) -> Queue:
        """Subscribes the queue ``queue`` (created if missing) and returns it. With a
        filter it only gets messages named ``name``, or whose header ``header[0]``
        equals ``header[1]``, or of one workflow ``execution_id``. Subscribing again
        with the same filter changes nothing; with another, replaces the filter. With a
        data directory the subscription is journaled and survives a restart."""
        q = to_text(queue, "queue")
        out = ffi.new("lq_queue **")
        if execution_id is not None:
            header = (EXECUTION_ID, execution_id)
        if name is not None and header is not None:
            raise ValueError("one filter at a time: name, header or execution_id")
        if name is not None:
            n = to_text(name, "name")
            check(self._call(lib.lq_topic_subscribe_name, q, len(q), n, len(n), out))
        elif header is not None:
            if not isinstance(header, tuple) or len(header) != 2:
                raise TypeError("header must be a (key, value) tuple")
            k, v = to_text(header[0], "header key"), to_bytes(header[1], "header value")
            check(self._call(lib.lq_topic_subscribe_header, q, len(q), k, len(k), v, len(v), out))
        else:
            check(self._call(lib.lq_topic_subscribe, q, len(q), out))
        return Queue(out[0], self._sync_always, self)

    def unsubscribe(self, queue: str) -> None:
        """Removes the subscription of ``queue`` (the queue stays)."""
        q = to_text(queue, "queue")
        check(self._call(lib.lq_topic_unsubscribe, q, len(q)))

    def subscriptions(self) -> list[str]:
        """Names of the subscribed queues, in subscription order."""
        out = ffi.new("lq_strings **")
        check(self._call(lib.lq_topic_subscriptions, out))
        return string_list(out[0], lib.lq_strings_free, lib)

    def stats(self) -> TopicStats:
        """The topic's counters (see :class:`TopicStats`)."""
        s = ffi.new("lq_topic_stats *")
        s.struct_size = ffi.sizeof("lq_topic_stats")
        check(self._call(lib.lq_topic_get_stats, s))
        return TopicStats(s.published, s.dropped_no_subscriber, s.unmatched, s.subscriptions)

    def publish(self, body: BytesLike | Message = b"", **kw: Unpack[MessageOptions]) -> int:
        """Publishes a message (same keywords as :meth:`Queue.send`); returns how many
        subscriptions got it. A publish nobody takes returns 0 (not an error) and is
        counted in :meth:`stats`."""
        if isinstance(body, Message) and kw:
            raise TypeError("a Message carries its own options: set them on it, not as keywords")
        m = build_from(body) if isinstance(body, Message) else build(body, **kw)
        n = ffi.new("size_t *")
        check(self._consume(m, lib.lq_topic_publish, m, n))
        return int(n[0])
