# Type stubs of libqueue._fast (_fast.c): the hot, non-blocking calls made with the
# GIL held. A queue travels as its Pin, a delivery as its int address; failures come
# back as values (see _fast.c).
from typing import Callable, Optional, Union

#: The C functions init() wants the addresses of, space-separated, in order.
FUNCS: str

def init(addresses: tuple[int, ...], /) -> None: ...
def setup(delivery_class: type[Delivery], error_for: Callable[[int], BaseException],
          main_thread_ident: Optional[int], /) -> None: ...
def send(queue: Pin, body: bytes, release: bool, on_full: int, timeout_ms: int, /) -> int:
    """The message id, or -status."""
def receive(queue: Pin, timeout_ms: int, auto_ack: bool, /) -> Union[Delivery, int]:
    """A Delivery, or -status."""
def take(queue: Pin, timeout_ms: int, /) -> Union[bytes, int]:
    """An auto-acked message's body, or the status."""
def body(delivery: int, /) -> Union[bytes, int]: ...
def id(delivery: int, /) -> int: ...
def ack(delivery: int, /) -> int: ...
def nack(delivery: int, /) -> int: ...
def free(delivery: int, /) -> None: ...

class Pin:
    """Owns one C handle: counts the calls inside it; close() wakes them and the
    handle is freed once none is left."""

    def __init__(self, h: int, free: int, close: Optional[int],
                 parent: object = ...) -> None: ...
    @property
    def closed(self) -> bool: ...
    @property
    def busy(self) -> int: ...
    @property
    def freed(self) -> bool: ...
    @property
    def parent(self) -> object: ...
    def enter(self) -> bool: ...
    def leave(self) -> None: ...
    def close(self) -> bool: ...

class Delivery:
    """The C half of libqueue.Delivery."""

    _h: Optional[int]
    _body: Optional[bytes]
    _view: Optional[memoryview]
    _parent: object
    _settled: bool
    _borrowed: bool
    _peeked: bool
    def __init__(self, h: int, borrowed: bool = ..., peeked: bool = ...) -> None: ...
    @property
    def body(self) -> bytes:
        """The body as bytes (copied once from the engine, then cached)."""
    @property
    def id(self) -> int:
        """The message id (unique within its queue, increasing)."""
    @property
    def _id(self) -> Optional[int]: ...
    @property
    def closed(self) -> bool:
        """Whether this delivery was closed."""
    def ack(self) -> None:
        """Acknowledges: the message is done and removed."""
    def _nack(self) -> None: ...
    def _enter(self) -> bool: ...
    def _leave(self) -> None: ...
    def close(self) -> None:
        """Frees the delivery (an unsettled leased one comes back after its lease)."""
