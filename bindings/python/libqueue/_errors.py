"""The exception hierarchy: one class per ``lq_status`` a call can fail with."""

from __future__ import annotations

import queue as _stdqueue

from ._ffi import ffi, lib

__all__ = [
    "LibqueueError", "Empty", "Timeout", "Full", "Closed", "NotFound", "AlreadyExists",
    "QuotaExceeded", "LeaseExpired", "InvalidState", "RemoteError", "MessageTooLarge",
    "InvalidArgument", "InvalidName", "InvalidUtf8", "StorageError", "Corrupt", "Locked",
    "IOFailure", "Panic", "Forked",
]


class LibqueueError(Exception):
    """Base of every libqueue error. ``status`` is the C ``lq_status`` number,
    ``code`` its name (``"LQ_EMPTY"``...), the message the library's detail."""

    status: int = -1

    def __init__(self, message: str = "", status: int | None = None) -> None:
        if status is not None:
            self.status = status
        super().__init__(message or self.code)

    @property
    def code(self) -> str:
        """The status name, e.g. ``"LQ_QUOTA_EXCEEDED"``."""
        name: str = ffi.string(lib.lq_status_str(self.status)).decode()
        return name


class Empty(LibqueueError, _stdqueue.Empty):
    """Nothing was ready (a non-blocking receive). Also a ``queue.Empty``."""
    status = lib.LQ_EMPTY


class Timeout(LibqueueError, TimeoutError):
    """A wait ran out (a receive, a full queue's send, an RPC call)."""
    status = lib.LQ_TIMEOUT


class Full(LibqueueError, _stdqueue.Full):
    """The queue is at capacity and the send was not to wait. Also a ``queue.Full``."""
    status = lib.LQ_FULL


class Closed(LibqueueError):
    """The broker or queue was closed, or this Python handle was closed."""
    status = lib.LQ_CLOSED


class NotFound(LibqueueError, LookupError):
    """No such queue, namespace, message, header or subscription."""
    status = lib.LQ_NOT_FOUND


class AlreadyExists(LibqueueError):
    """A queue or namespace of that name exists already."""
    status = lib.LQ_ALREADY_EXISTS


class QuotaExceeded(LibqueueError):
    """A namespace quota (queues, messages, bytes) would be exceeded."""
    status = lib.LQ_QUOTA_EXCEEDED


class LeaseExpired(LibqueueError):
    """The delivery's lease ran out before it was settled (it was redelivered)."""
    status = lib.LQ_LEASE_EXPIRED


class InvalidState(LibqueueError):
    """The call does not apply now (a second ack, acking a peeked message...)."""
    status = lib.LQ_INVALID_STATE


class RemoteError(LibqueueError):
    """An RPC handler on the other side failed; the message is its text."""
    status = lib.LQ_REMOTE


class MessageTooLarge(LibqueueError, ValueError):
    """The message is larger than the namespace's largest-message quota."""
    status = lib.LQ_MESSAGE_TOO_LARGE


class InvalidArgument(LibqueueError, ValueError):
    """An argument is out of range."""
    status = lib.LQ_INVALID_ARGUMENT


class InvalidName(InvalidArgument):
    """A queue, namespace or topic name outside ``[A-Za-z0-9_.-]{1,64}``."""
    status = lib.LQ_INVALID_NAME


class InvalidUtf8(InvalidArgument):
    """A string argument is not valid UTF-8."""
    status = lib.LQ_INVALID_UTF8


class StorageError(LibqueueError, OSError):
    """The storage backend (the journal) failed."""
    status = lib.LQ_STORAGE


class Corrupt(StorageError):
    """Stored data is damaged."""
    status = lib.LQ_CORRUPT


class Locked(LibqueueError):
    """Another process has the data directory open for writing."""
    status = lib.LQ_LOCKED


class IOFailure(LibqueueError, OSError):
    """The operating system refused a resource (a thread, a file descriptor), or a
    bridge's remote could not be reached (the message names it)."""
    status = lib.LQ_IO


class Panic(LibqueueError):
    """A bug in the library: it panicked; the call had no reliable effect."""
    status = lib.LQ_PANIC


class Forked(LibqueueError):
    """The handle was inherited through ``os.fork()``: a child process cannot use
    its parent's broker (nor its queues, deliveries, pools...). Open a broker of
    its own in the child."""
    status = lib.LQ_FORKED


_BY_STATUS: dict[int, type[LibqueueError]] = {
    cls.status: cls
    for cls in (Empty, Timeout, Full, Closed, NotFound, AlreadyExists, QuotaExceeded,
                LeaseExpired, InvalidState, RemoteError, MessageTooLarge, InvalidArgument,
                InvalidName, InvalidUtf8, StorageError, Corrupt, Locked, IOFailure, Panic,
                Forked)
}


def error_for(status: int) -> LibqueueError:
    """The exception for a failed call's status, with the thread's last error detail.
    Must be called on the thread that made the call, before any other libqueue call."""
    cls = _BY_STATUS.get(status, LibqueueError)
    if cls is Empty:  # an expected outcome: no detail worth a second call
        return Empty("nothing ready", status)
    detail = ffi.string(lib.lq_last_error_message()).decode("utf-8", "replace")
    return cls(detail, status)


def check(status: int) -> None:
    """Raise the mapped exception unless ``status`` is ``LQ_OK``."""
    if status:
        raise error_for(status)
