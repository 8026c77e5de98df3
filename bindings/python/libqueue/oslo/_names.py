"""How oslo.messaging addresses become libqueue names.

An exchange is a namespace; a topic, a ``(topic, server)`` pair, a fanout topic, a
notification topic and a listener pool are queues or topics in it. libqueue names are
``[A-Za-z0-9_.-]{1,64}``; oslo's are free text. A name is kept readable when it fits
and hashed otherwise, always the same way, so every process on a host agrees.
"""

from __future__ import annotations

import hashlib
import re

_VALID = re.compile(r"[A-Za-z0-9_.-]{1,64}\Z")

#: The namespace of the reply queues (one per driver instance).
REPLY_NAMESPACE = "oslo.replies"


def _hashed(kind: str, text: str) -> str:
    digest = hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:32]
    hint = re.sub(r"[^A-Za-z0-9_.-]", "_", text)[:16]
    return f"{kind}.x.{digest}.{hint}".rstrip(".")


def namespace(exchange: str) -> str:
    """The namespace of ``exchange``."""
    if _VALID.match(exchange):
        return exchange
    return _hashed("exchange", exchange)


def compose(kind: str, first: str, second: str | None = None) -> str:
    """``kind.first`` or, with two free-text parts, ``kind.<len(first)>.first.second``:
    the length makes the split unambiguous when the parts hold dots themselves
    (topic ``a.b`` + server ``c`` is not topic ``a`` + server ``b.c``)."""
    text = f"{kind}.{first}" if second is None else f"{kind}.{len(first)}.{first}.{second}"
    if _VALID.match(text):
        return text
    return _hashed(kind, repr((first, second)))


def rpc_queue(topic: str) -> str:
    """The queue a topic's servers compete on."""
    return compose("rpc", topic)


def server_queue(topic: str, server: str) -> str:
    """One server's queue: calls and casts to ``(topic, server)``, and its copy of
    the fanouts to ``topic``."""
    return compose("srv", topic, server)


def fanout_topic(topic: str) -> str:
    """The libqueue topic the fanouts to ``topic`` are published on."""
    return compose("fanout", topic)


def notify_topic(topic: str) -> str:
    """The libqueue topic of notification topic ``<topic>.<priority>``."""
    return compose("notify", topic)


def pool_queue(topic: str, pool: str | None) -> str:
    """The queue of a listener pool on notification topic ``<topic>.<priority>``
    (the default pool, ``None``, is the queue notifications wait in before anyone
    listens)."""
    return compose("notify", topic) if pool is None else compose("pool", topic, pool)
