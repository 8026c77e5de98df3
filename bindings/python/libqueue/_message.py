"""Messages to send, and turning them into owned ``lq_message *`` handles."""

from __future__ import annotations

from collections.abc import Mapping as _Mapping
from dataclasses import dataclass, field
from typing import Any, Mapping, Optional, TypedDict

from ._core import BytesLike, flag, ms, to_bytes, to_text
from ._core import priority as check_priority
from ._errors import check, error_for
from ._ffi import NULL, ffi, lib

#: The header the workflow envelope puts the execution id in.
EXECUTION_ID = "execution_id"


class MessageOptions(TypedDict, total=False):
    """The keyword options of a message (``send``, ``publish``, ``call``...), for type
    checkers (``**kw: Unpack[MessageOptions]``)."""

    headers: Optional[Mapping[str, BytesLike]]
    name: Optional[str]
    priority: Optional[int]
    ttl: Optional[float]
    delay: Optional[float]
    persistent: Optional[bool]
    correlation_id: Optional[str]
    execution_id: Optional[str]


class SendOptions(MessageOptions, total=False):
    """:meth:`Queue.send`'s keyword options: a message's, and what to do when full."""

    on_full: Optional[str]
    timeout: Optional[float]


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
    body: object,
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
    # Every argument is checked before anything is allocated (a wrong type is a
    # TypeError naming it, an out-of-range value a ValueError), then the message built.
    b = body if type(body) is bytes else to_bytes(body, "body")
    hdrs: list[tuple[bytes, bytes]] = []
    if headers is not None:
        if type(headers) is not dict and not isinstance(headers, _Mapping):
            raise TypeError(f"headers must be a mapping of str to bytes-like or str, "
                            f"not {type(headers).__name__}")
        for k, v in headers.items():
            kb = k.encode() if type(k) is str else to_text(k, "header key")
            if type(v) is bytes:
                vb = v
            elif type(v) is str:
                vb = v.encode()
            else:
                vb = to_bytes(v, f"header {k!r}")
            hdrs.append((kb, vb))
    if execution_id is not None:
        hdrs.append((EXECUTION_ID.encode(), to_text(execution_id, "execution_id")))
    nb = None if name is None else to_text(name, "name")
    cb = None if correlation_id is None else to_text(correlation_id, "correlation_id")
    pr = None if priority is None else check_priority(priority)
    ttl_ms = None if ttl is None else ms(ttl, "ttl")
    delay_ms = None if delay is None else ms(delay, "delay")
    pers = None if persistent is None else flag(persistent, "persistent")
    out = ffi.new("lq_message **")
    check(lib.lq_message_new(b, len(b), out))
    m = out[0]
    try:
        for kb, vb in hdrs:
            _ok(lib.lq_message_set_header(m, kb, len(kb), vb, len(vb)))
        if nb is not None:
            _ok(lib.lq_message_set_name(m, nb, len(nb)))
        if cb is not None:
            _ok(lib.lq_message_set_correlation_id(m, cb, len(cb)))
        if pr is not None:
            _ok(lib.lq_message_set_priority(m, pr))
        if ttl_ms is not None:
            _ok(lib.lq_message_set_ttl_ms(m, ttl_ms))
        if delay_ms is not None:
            _ok(lib.lq_message_set_delay_ms(m, delay_ms))
        if pers is not None:
            _ok(lib.lq_message_set_persistent(m, pers))
    except BaseException:
        lib.lq_message_free(m)
        raise
    return m


def build_from(msg: object) -> Any:
    """An owned ``lq_message *`` from a :class:`Message`, bytes-like or str."""
    if isinstance(msg, Message):
        return build(msg.body, msg.headers, msg.name, msg.priority, msg.ttl, msg.delay,
                     msg.persistent, msg.correlation_id, msg.execution_id)
    return build(msg)


def _ok(st: int) -> None:
    if st:
        raise error_for(st)


__all__ = ["Message", "build", "build_from", "EXECUTION_ID", "NULL"]
