"""Messages to send, and turning them into owned ``lq_message *`` handles."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping, Optional

from ._core import BytesLike, ms, to_bytes
from ._errors import check, error_for
from ._ffi import NULL, ffi, lib

#: The header the workflow envelope puts the execution id in.
EXECUTION_ID = "execution_id"


@dataclass
class Message:
    """A message for :meth:`Queue.send_batch` (or any ``send``): a body and what
    else a message may carry. ``ttl`` and ``delay`` are in seconds; ``None``
    fields take the queue's defaults."""

    body: BytesLike = b""
    headers: Mapping[str, BytesLike] = field(default_factory=dict)
    name: Optional[str] = None
    priority: Optional[int] = None
    ttl: Optional[float] = None
    delay: Optional[float] = None
    persistent: Optional[bool] = None
    correlation_id: Optional[str] = None
    execution_id: Optional[str] = None


def build(
    body: BytesLike,
    headers: Optional[Mapping[str, BytesLike]] = None,
    name: Optional[str] = None,
    priority: Optional[int] = None,
    ttl: Optional[float] = None,
    delay: Optional[float] = None,
    persistent: Optional[bool] = None,
    correlation_id: Optional[str] = None,
    execution_id: Optional[str] = None,
) -> Any:
    """An owned ``lq_message *`` (the caller passes it to a consuming call or frees it)."""
    b = to_bytes(body)
    out = ffi.new("lq_message **")
    check(lib.lq_message_new(b, len(b), out))
    m = out[0]
    try:
        if headers:
            for k, v in headers.items():
                kb, vb = to_bytes(k), to_bytes(v)
                _ok(lib.lq_message_set_header(m, kb, len(kb), vb, len(vb)))
        if execution_id is not None:
            kb, vb = EXECUTION_ID.encode(), to_bytes(execution_id)
            _ok(lib.lq_message_set_header(m, kb, len(kb), vb, len(vb)))
        if name is not None:
            nb = to_bytes(name)
            _ok(lib.lq_message_set_name(m, nb, len(nb)))
        if correlation_id is not None:
            cb = to_bytes(correlation_id)
            _ok(lib.lq_message_set_correlation_id(m, cb, len(cb)))
        if priority is not None:
            if not 0 <= priority <= 255:
                raise ValueError(f"priority {priority} is out of range 0-9")
            _ok(lib.lq_message_set_priority(m, priority))
        if ttl is not None:
            _ok(lib.lq_message_set_ttl_ms(m, ms(ttl)))
        if delay is not None:
            _ok(lib.lq_message_set_delay_ms(m, ms(delay)))
        if persistent is not None:
            _ok(lib.lq_message_set_persistent(m, bool(persistent)))
    except BaseException:
        lib.lq_message_free(m)
        raise
    return m


def build_from(msg: Any) -> Any:
    """An owned ``lq_message *`` from a :class:`Message`, bytes or str."""
    if isinstance(msg, Message):
        return build(msg.body, msg.headers, msg.name, msg.priority, msg.ttl, msg.delay,
                     msg.persistent, msg.correlation_id, msg.execution_id)
    return build(msg)


def _ok(st: int) -> None:
    if st:
        raise error_for(st)


__all__ = ["Message", "build", "build_from", "EXECUTION_ID", "NULL"]
