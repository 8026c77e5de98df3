"""What every Pythonic class shares: the handle base class and argument conversions."""

from __future__ import annotations

import threading
from typing import Any, Callable, Union

from ._errors import Closed
from ._ffi import NULL, WAIT_FOREVER, ffi

BytesLike = Union[bytes, bytearray, memoryview, str]

#: Blocking calls in the main thread wait in slices of this many milliseconds so a
#: Ctrl-C (SIGINT) is seen between two slices; other threads wait in one call.
SLICE_MS = 100

_main_thread = threading.main_thread()


class Handle:
    """Owns one C handle. ``close()`` frees it (idempotent); ``with`` closes it;
    any use after ``close()`` raises :class:`Closed`; ``__del__`` is a safety net
    for handles nobody closed."""

    __slots__ = ("_h", "__weakref__")
    _free: Callable[[Any], None]  # the C ``_free`` of the handle type
    _kind = "handle"

    def __init__(self, h: Any) -> None:
        self._h = h

    @property
    def _p(self) -> Any:
        h = self._h
        if h is None:
            raise Closed(f"this {self._kind} was closed")
        return h

    @property
    def closed(self) -> bool:
        """Whether this handle was closed."""
        return self._h is None

    def close(self) -> None:
        """Frees the C handle. Calling it again does nothing."""
        h, self._h = self._h, None
        if h is not None:
            type(self)._free(h)

    def __enter__(self):
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # pragma: no cover - interpreter shutdown
            pass


def to_bytes(v: BytesLike) -> bytes:
    """A body, header value or key as bytes (``str`` is encoded as UTF-8)."""
    if isinstance(v, bytes):
        return v
    if isinstance(v, str):
        return v.encode()
    return bytes(v)


def ms(seconds: float | None) -> int:
    """Seconds (``None``: forever) as the C API's milliseconds."""
    if seconds is None:
        return WAIT_FOREVER
    if seconds <= 0:
        return 0
    return max(1, int(seconds * 1000 + 0.5))


_get_ident = threading.get_ident
_main_ident = _main_thread.ident


def in_main_thread() -> bool:
    return _get_ident() == _main_ident


def string_list(lst: Any, free: Callable[[Any], None], lib: Any) -> list[str]:
    """Copies an owned ``lq_strings *`` into a list and frees it."""
    try:
        n = ffi.new("size_t *")
        lib.lq_strings_len(lst, n)
        ptr = ffi.new("const uint8_t **")
        ln = ffi.new("size_t *")
        out = []
        for i in range(n[0]):
            lib.lq_strings_get(lst, i, ptr, ln)
            out.append(ffi.unpack(ffi.cast("char *", ptr[0]), ln[0]).decode())
        return out
    finally:
        free(lst)


def read_slice(fn: Callable[..., int], h: Any, *args: Any) -> bytes | None:
    """Calls a getter returning ``(ptr, len)``; ``None`` on ``LQ_NOT_FOUND``."""
    ptr = ffi.new("const uint8_t **")
    ln = ffi.new("size_t *")
    st = fn(h, *args, ptr, ln)
    if st == 5:
        return None
    if st:
        from ._errors import error_for

        raise error_for(st)
    return ffi.unpack(ffi.cast("char *", ptr[0]), ln[0])


__all__ = ["Handle", "to_bytes", "ms", "NULL", "WAIT_FOREVER", "SLICE_MS"]
