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
        return ffi.string(lib.lq_status_str(self.status)).decode()


class Empty(LibqueueError, _stdqueue.Empty):
    """Nothing was ready (a non-blocking receive). Also a ``queue.Empty``."""
    status = 1


class Timeout(LibqueueError, TimeoutError):
    """A wait ran out (a receive, a full queue's send, an RPC call)."""
    status = 2


class Full(LibqueueError, _stdqueue.Full):
    """The queue is at capacity and the send was not to wait. Also a ``queue.Full``."""
    status = 3


class Closed(LibqueueError):
    """The broker or queue was closed, or this Python handle was closed."""
    status = 4


class NotFound(LibqueueError, LookupError):
    """No such queue, namespace, message, header or subscription."""
    status = 5


class AlreadyExists(LibqueueError):
    """A queue or namespace of that name exists already."""
    status = 6


class QuotaExceeded(LibqueueError):
    """A namespace quota (queues, messages, bytes) would be exceeded."""
    status = 7


class LeaseExpired(LibqueueError):
    """The delivery's lease ran out before it was settled (it was redelivered)."""
    status = 8


class InvalidState(LibqueueError):
    """The call does not apply now (a second ack, acking a peeked message...)."""
    status = 9


class RemoteError(LibqueueError):
    """An RPC handler on the other side failed; the message is its text."""
    status = 10


class MessageTooLarge(LibqueueError, ValueError):
    """The message is larger than the namespace's largest-message quota."""
    status = 11


class InvalidArgument(LibqueueError, ValueError):
    """An argument is out of range."""
    status = 100


class InvalidName(InvalidArgument):
    """A queue, namespace or topic name outside ``[A-Za-z0-9_.-]{1,64}``."""
    status = 101


class InvalidUtf8(InvalidArgument):
    """A string argument is not valid UTF-8."""
    status = 102


class StorageError(LibqueueError, OSError):
    """The storage backend (the journal) failed."""
    status = 104


class Corrupt(StorageError):
    """Stored data is damaged."""
    status = 105


class Locked(LibqueueError):
    """Another process has the data directory open for writing."""
    status = 106


class IOFailure(LibqueueError, OSError):
    """The operating system refused a resource (a thread, a file descriptor)."""
    status = 107


class Panic(LibqueueError):
    """A bug in the library: it panicked; the call had no reliable effect."""
    status = 108


class Forked(LibqueueError):
    """The handle was inherited through ``os.fork()``: a child process cannot use
    its parent's broker (nor its queues, deliveries, pools...). Open a broker of
    its own in the child."""
    status = 109


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
