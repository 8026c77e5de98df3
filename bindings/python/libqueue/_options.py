"""Configuration as dataclasses, turned into the C options handles when used."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional, TypedDict

from ._core import count, flag, ms, on_full, priority, to_text
from ._errors import check
from ._ffi import ffi, lib


@dataclass
class Quotas:
    """Limits of a namespace; ``None`` is no limit (the largest message defaults to 64 MiB).
    Exceeding one raises :class:`QuotaExceeded` (or :class:`MessageTooLarge`)."""

    max_queues: Optional[int] = None
    max_messages: Optional[int] = None
    max_bytes: Optional[int] = None
    max_message_size: Optional[int] = None

    def _to_c(self) -> Any:
        out = ffi.new("lq_quotas **")
        check(lib.lq_quotas_new(out))
        q = ffi.gc(out[0], lib.lq_quotas_free)
        for field, fn in (("max_queues", lib.lq_quotas_set_max_queues),
                          ("max_messages", lib.lq_quotas_set_max_messages),
                          ("max_bytes", lib.lq_quotas_set_max_bytes),
                          ("max_message_size", lib.lq_quotas_set_max_message_size)):
            v = getattr(self, field)
            if v is not None:
                check(fn(q, count(v, field)))
        return q


class QueueOptionsFields(TypedDict, total=False):
    """:class:`QueueOptions`' fields as keyword arguments (``broker.queue(name, **kw)``),
    for type checkers."""

    max_messages: Optional[int]
    max_bytes: Optional[int]
    on_full: Optional[str]
    full_timeout: Optional[float]
    default_ttl: Optional[float]
    default_delay: Optional[float]
    default_priority: Optional[int]
    lease_time: Optional[float]
    max_deliveries: Optional[int]
    dead_letter_queue: Optional[str]
    persistent: Optional[bool]
    strict_fifo: Optional[bool]
    shards: Optional[int]


@dataclass
class QueueOptions:
    """Options of one queue; ``None`` keeps the engine's default. Times in seconds.

    ``on_full``: ``"block"`` (default), ``"reject"`` (:class:`Full`) or ``"timeout"``
    (wait ``full_timeout`` seconds, then :class:`Timeout`)."""

    max_messages: Optional[int] = None
    max_bytes: Optional[int] = None
    on_full: Optional[str] = None
    full_timeout: Optional[float] = None
    default_ttl: Optional[float] = None
    default_delay: Optional[float] = None
    default_priority: Optional[int] = None
    lease_time: Optional[float] = None
    max_deliveries: Optional[int] = None
    dead_letter_queue: Optional[str] = None
    persistent: Optional[bool] = None
    strict_fifo: Optional[bool] = None
    shards: Optional[int] = None

    def _to_c(self) -> Any:
        out = ffi.new("lq_queue_options **")
        check(lib.lq_queue_options_new(out))
        o = ffi.gc(out[0], lib.lq_queue_options_free)
        if self.max_messages is not None:
            check(lib.lq_queue_options_set_max_messages(o, count(self.max_messages, "max_messages")))
        if self.max_bytes is not None:
            check(lib.lq_queue_options_set_max_bytes(o, count(self.max_bytes, "max_bytes")))
        if self.on_full is not None:
            mode = on_full(self.on_full)
            wait = ms(0 if self.full_timeout is None else self.full_timeout, "full_timeout")
            check(lib.lq_queue_options_set_on_full(o, mode, wait))
        elif self.full_timeout is not None:
            ms(self.full_timeout, "full_timeout")
            raise ValueError('full_timeout applies to on_full="timeout": set on_full too')
        if self.default_ttl is not None:
            check(lib.lq_queue_options_set_default_ttl_ms(o, ms(self.default_ttl, "default_ttl")))
        if self.default_delay is not None:
            check(lib.lq_queue_options_set_default_delay_ms(
                o, ms(self.default_delay, "default_delay")))
        if self.default_priority is not None:
            check(lib.lq_queue_options_set_default_priority(
                o, priority(self.default_priority, "default_priority")))
        if self.lease_time is not None:
            check(lib.lq_queue_options_set_lease_time_ms(o, ms(self.lease_time, "lease_time")))
        if self.max_deliveries is not None:
            check(lib.lq_queue_options_set_max_deliveries(
                o, count(self.max_deliveries, "max_deliveries", 32)))
        if self.dead_letter_queue is not None:
            b = to_text(self.dead_letter_queue, "dead_letter_queue")
            check(lib.lq_queue_options_set_dead_letter_queue(o, b, len(b)))
        if self.persistent is not None:
            check(lib.lq_queue_options_set_persistent(o, flag(self.persistent, "persistent")))
        if self.strict_fifo is not None:
            check(lib.lq_queue_options_set_strict_fifo(o, flag(self.strict_fifo, "strict_fifo")))
        if self.shards is not None:
            check(lib.lq_queue_options_set_shards(o, count(self.shards, "shards")))
        return o
