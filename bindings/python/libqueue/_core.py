"""What every Pythonic class shares: the handle base class and argument conversions."""

from __future__ import annotations

import os
import queue as _stdqueue
import sys
import threading
from typing import Any, Callable, Union

from ._errors import Closed
from ._ffi import NULL, WAIT_FOREVER, fast, ffi, lib

BytesLike = Union[bytes, bytearray, memoryview, str]

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

    def __enter__(self):
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
        self._jobs: _stdqueue.SimpleQueue = _stdqueue.SimpleQueue()
        self._lock = threading.Lock()
        self._idle = 0

    def submit(self, fn: Callable[..., Any], args: tuple) -> tuple[threading.Event, list]:
        done, box = threading.Event(), []
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


__all__ = ["Handle", "interruptible", "to_bytes", "ms", "NULL", "WAIT_FOREVER", "SLICE_MS"]
