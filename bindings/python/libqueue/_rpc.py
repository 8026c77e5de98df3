"""``RpcClient``: call (request/reply with a timeout), cast, fan-out cast."""

from __future__ import annotations

from typing import Any, Optional

from ._core import SLICE_MS, BytesLike, Handle, ms, seconds, to_bytes
from ._errors import Timeout, check, error_for
from ._ffi import ffi, lib
from ._message import build


class RpcClient(Handle):
    """An RPC client with a private reply queue (deleted on close). Shareable
    between threads. The server side is a :class:`Pool` whose handlers return
    the reply (bytes or str)."""

    __slots__ = ()
    _free_fn = "lq_rpc_client_free"
    _close_fn = "lq_rpc_client_close"  # wakes the calls waiting for a reply
    _kind = "RPC client"

    def call(self, queue: str, body: BytesLike = b"", *, timeout: Optional[float] = 30.0,
             **kw: Any) -> bytes:
        """Sends a request to ``queue`` and waits for the reply's body.
        :class:`Timeout` if none comes in ``timeout`` seconds; :class:`RemoteError`
        (with the handler's text) if the handler failed for good. ``kw``: as
        :meth:`Queue.send` (``name=`` picks the handler). ``close()`` from another
        thread ends the wait with :class:`Closed`; in the main thread Ctrl-C
        interrupts it (the reply, if one comes, is then dropped)."""
        if self.closed:
            raise self._closed_error()
        q = to_bytes(queue)
        m = build(body, **kw)
        # Too short to need interrupting: here; else interruptibly (Ctrl-C).
        short = timeout is not None and timeout * 1000 <= SLICE_MS
        return self._consume(m, self._call_on, q, m, timeout, wait=not short)

    def _call_on(self, h: Any, q: bytes, m: Any, timeout: Optional[float]) -> bytes:
        out = ffi.new("lq_delivery **")
        st = lib.lq_rpc_call(h, q, len(q), m, ms(timeout), out)  # consumes m
        if st == 2 and timeout is not None:
            raise Timeout(f"no reply came within {seconds(timeout)}", 2)
        if st == 4 and self.closed:
            raise self._closed_error()
        if st:
            raise error_for(st)
        d = out[0]
        try:
            ptr = ffi.new("const uint8_t **")
            ln = ffi.new("size_t *")
            check(lib.lq_delivery_body(d, ptr, ln))
            return ffi.unpack(ffi.cast("char *", ptr[0]), ln[0])
        finally:
            lib.lq_delivery_free(d)

    def cast(self, queue: str, body: BytesLike = b"", **kw: Any) -> int:
        """Sends a request to ``queue`` for one consumer, no reply; returns its id."""
        q = to_bytes(queue)
        idp = ffi.new("uint64_t *")
        m = build(body, **kw)
        check(self._consume(m, lib.lq_rpc_cast, q, len(q), m, idp))
        return idp[0]

    def fanout(self, topic: str, body: BytesLike = b"", **kw: Any) -> int:
        """Publishes a request to every subscriber of ``topic``; returns how many."""
        t = to_bytes(topic)
        n = ffi.new("size_t *")
        m = build(body, **kw)
        check(self._consume(m, lib.lq_rpc_fanout, t, len(t), m, n))
        return n[0]

    @property
    def late_replies(self) -> int:
        """Replies that arrived after their call had timed out (dropped)."""
        out = ffi.new("uint64_t *")
        check(self._call(lib.lq_rpc_late_replies, out))
        return out[0]
