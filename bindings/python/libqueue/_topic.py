"""``Topic``: publish once, every subscription (a queue) gets a copy."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Optional

from ._core import BytesLike, Handle, string_list, to_bytes
from ._errors import check
from ._ffi import NULL, ffi, lib
from ._message import EXECUTION_ID, Message, build, build_from
from ._queue import Queue


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
    _free = lib.lq_topic_free
    _kind = "topic"

    def __init__(self, h: Any, name: str, sync_always: bool = False) -> None:
        self._h = h
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
        h = self._p
        q = to_bytes(queue)
        out = ffi.new("lq_queue **")
        if execution_id is not None:
            header = (EXECUTION_ID, execution_id)
        if name is not None and header is not None:
            raise ValueError("one filter at a time: name, header or execution_id")
        if name is not None:
            n = to_bytes(name)
            check(lib.lq_topic_subscribe_name(h, q, len(q), n, len(n), out))
        elif header is not None:
            k, v = to_bytes(header[0]), to_bytes(header[1])
            check(lib.lq_topic_subscribe_header(h, q, len(q), k, len(k), v, len(v), out))
        else:
            check(lib.lq_topic_subscribe(h, q, len(q), out))
        return Queue(out[0], self._sync_always)

    def unsubscribe(self, queue: str) -> None:
        """Removes the subscription of ``queue`` (the queue stays)."""
        q = to_bytes(queue)
        check(lib.lq_topic_unsubscribe(self._p, q, len(q)))

    def subscriptions(self) -> list[str]:
        """Names of the subscribed queues, in subscription order."""
        out = ffi.new("lq_strings **")
        check(lib.lq_topic_subscriptions(self._p, out))
        return string_list(out[0], lib.lq_strings_free, lib)

    def stats(self) -> TopicStats:
        """The topic's counters (see :class:`TopicStats`)."""
        s = ffi.new("lq_topic_stats *")
        s.struct_size = ffi.sizeof("lq_topic_stats")
        check(lib.lq_topic_get_stats(self._p, s))
        return TopicStats(s.published, s.dropped_no_subscriber, s.unmatched, s.subscriptions)

    def publish(self, body: BytesLike | Message = b"", **kw: Any) -> int:
        """Publishes a message (same keywords as :meth:`Queue.send`); returns how many
        subscriptions got it. A publish nobody takes returns 0 (not an error) and is
        counted in :meth:`stats`."""
        m = build_from(body) if isinstance(body, Message) else build(body, **kw)
        n = ffi.new("size_t *")
        check(lib.lq_topic_publish(self._p, m, n))  # consumes m
        return n[0]
