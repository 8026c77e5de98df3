"""What every Pythonic class shares: the handle base class and argument conversions."""

from __future__ import annotations

import threading
from typing import Any, Callable, TypeVar, Union

from ._errors import Closed, InvalidArgument
from ._ffi import NULL, WAIT_FOREVER, ffi

BytesLike = Union[bytes, bytearray, memoryview, str]
_H = TypeVar("_H", bound="Handle")

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

    def __enter__(self: _H) -> _H:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # pragma: no cover - interpreter shutdown
            pass


def to_bytes(v: object, what: str = "body") -> bytes:
    """A body or header value as bytes: ``bytes``-like (any buffer) as is, ``str``
    encoded as UTF-8. Anything else (an int, a list...) is a :class:`TypeError`
    naming the argument ``what``: nothing is coerced (``bytes(123)`` is not a body)."""
    if type(v) is bytes:
        return v
    if isinstance(v, str):
        return v.encode()
    try:
        view = memoryview(v)  # type: ignore[arg-type]
    except TypeError:
        raise TypeError(f"{what} must be bytes-like or str, not {type(v).__name__}") from None
    with view:
        return view.tobytes()


def to_text(v: object, what: str) -> bytes:
    """A name-like argument (a queue, namespace, topic, message or header name, an id)
    as UTF-8 bytes: it must be a ``str`` (:class:`TypeError` naming ``what`` otherwise)."""
    if isinstance(v, str):
        return v.encode()
    raise TypeError(f"{what} must be a str, not {type(v).__name__}")


def _number(v: object, what: str) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise TypeError(f"{what} must be a number of seconds, not {type(v).__name__}")
    if v != v:  # NaN
        raise ValueError(f"{what} must be a number of seconds, not NaN")
    if v < 0:
        raise ValueError(f"{what} must not be negative (got {v!r})")
    return v


def ms(seconds: float | None, what: str = "timeout") -> int:
    """Seconds as the C API's milliseconds: ``None`` or infinity wait forever,
    ``0`` does not wait, anything else at least 1 ms. A negative number (or NaN) is
    a :class:`ValueError`, a non-number a :class:`TypeError`, naming ``what``."""
    if seconds is None:
        return WAIT_FOREVER
    t = type(seconds)
    if t is not int and t is not float or not seconds > 0:  # 0, or the checks
        if seconds == 0 and (t is int or t is float):
            return 0
        if _number(seconds, what) == 0:  # raises for a non-number, negative or NaN
            return 0
    t_ms = seconds * 1000 + 0.5
    if t_ms >= WAIT_FOREVER:  # infinity, or beyond what 64 bits of ms can say
        return WAIT_FOREVER
    return max(1, int(t_ms))


def count(v: object, what: str, bits: int = 64) -> int:
    """A non-negative integer argument (a capacity, a size) that fits the C type:
    :class:`TypeError` if it is not an ``int``, :class:`ValueError` if it is negative
    or too large."""
    if isinstance(v, bool) or not isinstance(v, int):
        raise TypeError(f"{what} must be an int, not {type(v).__name__}")
    if v < 0:
        raise ValueError(f"{what} must not be negative (got {v})")
    if v >= 1 << bits:
        raise ValueError(f"{what} is too large (got {v}, at most {(1 << bits) - 1})")
    return v


def flag(v: object, what: str) -> bool:
    """A ``bool`` argument (:class:`TypeError` naming ``what`` for anything else)."""
    if not isinstance(v, bool):
        raise TypeError(f"{what} must be a bool, not {type(v).__name__}")
    return v


#: What a full queue does with a send: ``on_full=`` names → the C ``lq_on_full``.
ON_FULL = {"block": 0, "reject": 1, "timeout": 2}


def on_full(v: object, what: str = "on_full") -> int:
    """An ``on_full`` policy name as its C number: :class:`ValueError` listing the
    choices for an unknown name, :class:`TypeError` for a non-``str``."""
    if not isinstance(v, str):
        raise TypeError(f"{what} must be a str, not {type(v).__name__}")
    mode = ON_FULL.get(v)
    if mode is None:
        choices = ", ".join(repr(k) for k in ON_FULL)
        raise ValueError(f"{what} must be one of {choices}, not {v!r}")
    return mode


#: The highest message priority (``MAX_PRIORITY`` in the C library).
MAX_PRIORITY = 9


def priority(v: object, what: str = "priority") -> int:
    """A priority 0–9: :class:`TypeError` if not an ``int``; :class:`InvalidArgument`
    (a ``ValueError``) below 0 or above 9 — the same at both ends."""
    if isinstance(v, bool) or not isinstance(v, int):
        raise TypeError(f"{what} must be an int, not {type(v).__name__}")
    if not 0 <= v <= MAX_PRIORITY:
        raise InvalidArgument(f"{what} {v} is outside 0-{MAX_PRIORITY}", 100)
    return v


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
    b: bytes = ffi.unpack(ffi.cast("char *", ptr[0]), ln[0])
    return b


__all__ = ["Handle", "to_bytes", "to_text", "ms", "count", "flag", "priority", "on_full",
           "NULL", "WAIT_FOREVER", "SLICE_MS"]
