"""What every Pythonic class shares: the handle base class and argument conversions."""

from __future__ import annotations

import os
import queue as _stdqueue
import sys
import threading
from typing import Any, Callable, Optional, TypeVar, Union

from ._errors import Closed, InvalidArgument
from ._ffi import NULL, WAIT_FOREVER, fast, ffi, lib

BytesLike = Union[bytes, bytearray, memoryview, str]
_H = TypeVar("_H", bound="Handle")

#: Blocking calls in the main thread wait in slices of this many milliseconds so a
#: Ctrl-C (SIGINT) is seen between two slices; other threads wait in one call.
SLICE_MS = 100

_main_thread = threading.main_thread()


_Pin = fast.Pin
_addresses: dict[str, int] = {}


def _address(name: str) -> int:
    """The address of the C function ``name`` (for a :class:`_fast.Pin`)."""
    a = _addresses.get(name)
    if a is None:
        a = _addresses[name] = int(ffi.cast("uintptr_t", ffi.addressof(lib, name)))
    return a


class Handle:
    """Owns one C handle through a :class:`_fast.Pin`, which every call goes through:
    it counts the calls inside the handle, so ``close()`` from any thread marks the
    handle closed, wakes the calls waiting in it (they raise :class:`Closed`; through
    the handle's C close, where it has one) and frees the C handle only once the last
    call has returned. ``close()`` is idempotent; ``with`` closes; any use after
    ``close()`` raises :class:`Closed`; ``__del__`` is a safety net for handles
    nobody closed. A handle keeps its parent alive (a queue its broker)."""

    __slots__ = ("_h", "_pin", "__weakref__")
    _pin: Optional[_Pin]  # None until the C handle exists (a pool before start())
    _free_fn = ""  # the name of the C ``_free`` of the handle type
    _close_fn: Union[str, None] = None  # its C close that wakes waiters, if any
    _kind = "handle"

    def __init__(self, h: Any, parent: Any = None) -> None:
        self._own(h, parent)

    def _own(self, h: Any, parent: Any = None) -> None:
        """Takes ownership of the C handle ``h``, keeping ``parent`` alive with it."""
        close = self._close_fn
        self._h = h
        self._pin = _Pin(int(ffi.cast("uintptr_t", h)), _address(self._free_fn),
                         _address(close) if close else None, parent)

    def _closed_error(self) -> Closed:
        return Closed(f"this {self._kind} was closed")

    def _call(self, fn: Callable[..., Any], *args: Any) -> Any:
        """``fn(handle, *args)`` with the call counted in (:class:`Closed` if closed)."""
        pin = self._pin
        if pin is None or not pin.enter():
            raise self._closed_error()
        try:
            return fn(self._h, *args)
        finally:
            pin.leave()

    def _consume(self, msgs: Any, fn: Callable[..., Any], *args: Any, wait: bool = False) -> Any:
        """``fn(handle, *args)`` for a C call that consumes the messages ``msgs`` (one
        ``lq_message *`` or a list): freed here instead when the handle is closed. With
        ``wait``, a call that may wait long: :func:`interruptible` (the call is counted
        out by the thread that runs it, so an interrupted call keeps the handle)."""
        pin = self._pin
        if pin is None or not pin.enter():
            for m in msgs if isinstance(msgs, list) else (msgs,):
                lib.lq_message_free(m)
            raise self._closed_error()

        if not wait:
            try:
                return fn(self._h, *args)
            finally:
                pin.leave()

        def run() -> Any:
            try:
                return fn(self._h, *args)
            finally:
                pin.leave()

        return interruptible(run)

    @property
    def _p(self) -> Any:
        """The C handle after a closed check, for a call that cannot race with
        ``close()``; calls that may (most) go through :meth:`_call`."""
        pin = self._pin
        if pin is None or pin.closed:
            raise self._closed_error()
        return self._h

    @property
    def closed(self) -> bool:
        """Whether this handle was closed."""
        pin = self._pin
        return pin is None or pin.closed

    def close(self) -> None:
        """Closes the handle: calls waiting in it in other threads raise
        :class:`Closed`, later calls too; the C handle is freed once no call is
        inside. Calling it again does nothing."""
        pin = self._pin
        if pin is not None:
            pin.close()

    def __enter__(self: _H) -> _H:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # pragma: no cover - interpreter shutdown
            pass


class _Helpers:
    """Daemon threads that run the waits of :func:`interruptible` for the main
    thread: kept between calls (a thread per call would cost more than an RPC
    round trip), one more started when none is idle, none left after a fork."""

    def __init__(self) -> None:
        self._jobs: _stdqueue.SimpleQueue[Any] = _stdqueue.SimpleQueue()
        self._lock = threading.Lock()
        self._idle = 0

    def submit(self, fn: Callable[..., Any],
               args: tuple[Any, ...]) -> tuple[threading.Event, list[Any]]:
        done = threading.Event()
        box: list[Any] = []
        with self._lock:
            spawn = self._idle == 0
            if not spawn:
                self._idle -= 1
        if spawn:  # started first: if it cannot start, the job is not queued
            threading.Thread(target=self._run, name="libqueue-wait", daemon=True).start()
        self._jobs.put((fn, args, box, done))
        return done, box

    def _run(self) -> None:
        while True:
            fn, args, box, done = self._jobs.get()
            try:
                box.append((True, fn(*args)))
            except BaseException as e:  # handed to the caller
                box.append((False, e))
            del fn, args
            with self._lock:  # idle before the caller learns it is done: its next
                self._idle += 1  # call then finds this thread instead of starting one
            done.set()


_helpers = _Helpers()
if hasattr(os, "register_at_fork"):
    def _after_fork() -> None:
        global _helpers
        _helpers = _Helpers()

    os.register_at_fork(after_in_child=_after_fork)


def interruptible(fn: Callable[..., Any], *args: Any) -> Any:
    """``fn(*args)``, a call that may wait long in C. In the main thread it runs on a
    helper thread while the main thread waits for it in slices of ``SLICE_MS``, so
    Ctrl-C raises ``KeyboardInterrupt`` at once (the call then finishes on its own;
    a handle it uses stays allocated until it returns). Elsewhere it runs here."""
    if not in_main_thread() or sys.is_finalizing():
        return fn(*args)
    try:
        done, box = _helpers.submit(fn, args)
    except RuntimeError:  # no thread can start (interpreter shutdown): wait here
        return fn(*args)
    while not done.wait(SLICE_MS / 1000):
        pass  # Python runs pending signal handlers here (KeyboardInterrupt)
    ok, value = box[0]
    if ok:
        return value
    raise value


def seconds(timeout: Union[float, None]) -> str:
    """A caller's timeout as an error message names it."""
    return "ever" if timeout is None else f"{timeout:g} s"


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
ON_FULL: dict[str, int] = {
    "block": lib.LQ_ON_FULL_BLOCK,
    "reject": lib.LQ_ON_FULL_REJECT,
    "timeout": lib.LQ_ON_FULL_TIMEOUT,
}


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
        raise InvalidArgument(f"{what} {v} is outside 0-{MAX_PRIORITY}", lib.LQ_INVALID_ARGUMENT)
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
    if st == lib.LQ_NOT_FOUND:
        return None
    if st:
        from ._errors import error_for

        raise error_for(st)
    b: bytes = ffi.unpack(ffi.cast("char *", ptr[0]), ln[0])
    return b


__all__ = ["Handle", "interruptible", "to_bytes", "to_text", "ms", "count", "flag", "priority",
           "on_full", "NULL", "WAIT_FOREVER", "SLICE_MS"]
