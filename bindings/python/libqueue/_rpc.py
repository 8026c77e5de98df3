"""``RpcClient``: call (request/reply with a timeout), cast, fan-out cast."""

from __future__ import annotations

from typing import TYPE_CHECKING, Optional

from ._core import BytesLike, Handle, ms, to_text
from ._errors import check
from ._ffi import ffi, lib
from ._message import MessageOptions, build

if TYPE_CHECKING:
    from typing_extensions import Unpack


class RpcClient(Handle):
    """An RPC client with a private reply queue (deleted on close). Shareable
    between threads. The server side is a :class:`Pool` whose handlers return
    the reply (bytes or str)."""

    __slots__ = ()
    _free = lib.lq_rpc_client_free
    _kind = "RPC client"

    def call(self, queue: str, body: BytesLike = b"", *, timeout: Optional[float] = 30.0,
             **kw: Unpack[MessageOptions]) -> bytes:
        """Sends a request to ``queue`` and waits for the reply's body.
        :class:`Timeout` if none comes in ``timeout`` seconds; :class:`RemoteError`
        (with the handler's text) if the handler failed for good. ``kw``: as
        :meth:`Queue.send` (``name=`` picks the handler)."""
        h = self._p
        q = to_text(queue, "queue")
        t = ms(timeout)
        m = build(body, **kw)
        out = ffi.new("lq_delivery **")
        check(lib.lq_rpc_call(h, q, len(q), m, t, out))  # consumes m
        d = out[0]
        try:
            ptr = ffi.new("const uint8_t **")
            ln = ffi.new("size_t *")
            check(lib.lq_delivery_body(d, ptr, ln))
            reply: bytes = ffi.unpack(ffi.cast("char *", ptr[0]), ln[0])
            return reply
        finally:
            lib.lq_delivery_free(d)

    def cast(self, queue: str, body: BytesLike = b"", **kw: Unpack[MessageOptions]) -> int:
        """Sends a request to ``queue`` for one consumer, no reply; returns its id."""
        q = to_text(queue, "queue")
        idp = ffi.new("uint64_t *")
        check(lib.lq_rpc_cast(self._p, q, len(q), build(body, **kw), idp))
        return int(idp[0])

    def fanout(self, topic: str, body: BytesLike = b"", **kw: Unpack[MessageOptions]) -> int:
        """Publishes a request to every subscriber of ``topic``; returns how many."""
        t = to_text(topic, "topic")
        n = ffi.new("size_t *")
        check(lib.lq_rpc_fanout(self._p, t, len(t), build(body, **kw), n))
        return int(n[0])

    @property
    def late_replies(self) -> int:
        """Replies that arrived after their call had timed out (dropped)."""
        out = ffi.new("uint64_t *")
        check(lib.lq_rpc_late_replies(self._p, out))
        return int(out[0])
