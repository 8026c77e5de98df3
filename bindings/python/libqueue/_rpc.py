"""``RpcClient``: call (request/reply with a timeout), cast, fan-out cast."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Optional

from ._core import SLICE_MS, BytesLike, Handle, ms, seconds, to_text
from ._errors import Timeout, check, error_for
from ._ffi import ffi, lib
from ._message import MessageOptions, build

if TYPE_CHECKING:
    from typing_extensions import Unpack


class RpcClient(Handle):
    """An RPC client with a private reply queue (deleted on close). Shareable
    between threads. The server side is a :class:`Pool` whose handlers return
    the reply (bytes or str)."""

    __slots__ = ()
    _free_fn = "lq_rpc_client_free"
    _close_fn = "lq_rpc_client_close"  # wakes the calls waiting for a reply
    _kind = "RPC client"

    def call(self, queue: str, body: BytesLike = b"", *, timeout: Optional[float] = 30.0,
             **kw: Unpack[MessageOptions]) -> bytes:
        """Sends a request to ``queue`` and waits for the reply's body.
        :class:`Timeout` if none comes in ``timeout`` seconds; :class:`RemoteError`
        (with the handler's text) if the handler failed for good. ``kw``: as
        :meth:`Queue.send` (``name=`` picks the handler). ``close()`` from another
        thread ends the wait with :class:`Closed`; in the main thread Ctrl-C
        interrupts it (the reply, if one comes, is then dropped)."""
        if self.closed:
            raise self._closed_error()
        q = to_text(queue, "queue")
        ms(timeout)  # checked before the message is built
        m = build(body, **kw)
        # Too short to need interrupting: here; else interruptibly (Ctrl-C).
        short = timeout is not None and timeout * 1000 <= SLICE_MS
        reply: bytes = self._consume(m, self._call_on, q, m, timeout, wait=not short)
        return reply

    def _call_on(self, h: Any, q: bytes, m: Any, timeout: Optional[float]) -> bytes:
        out = ffi.new("lq_delivery **")
        st = lib.lq_rpc_call(h, q, len(q), m, ms(timeout), out)  # consumes m
        if st == lib.LQ_TIMEOUT and timeout is not None:
            raise Timeout(f"no reply came within {seconds(timeout)}", 2)
        if st == lib.LQ_CLOSED and self.closed:
            raise self._closed_error()
        if st:
            raise error_for(st)
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
        m = build(body, **kw)
        check(self._consume(m, lib.lq_rpc_cast, q, len(q), m, idp))
        return int(idp[0])

    def fanout(self, topic: str, body: BytesLike = b"", **kw: Unpack[MessageOptions]) -> int:
        """Publishes a request to every subscriber of ``topic``; returns how many."""
        t = to_text(topic, "topic")
        n = ffi.new("size_t *")
        m = build(body, **kw)
        check(self._consume(m, lib.lq_rpc_fanout, t, len(t), m, n))
        return int(n[0])

    @property
    def late_replies(self) -> int:
        """Replies that arrived after their call had timed out (dropped)."""
        out = ffi.new("uint64_t *")
        check(self._call(lib.lq_rpc_late_replies, out))
        return int(out[0])
