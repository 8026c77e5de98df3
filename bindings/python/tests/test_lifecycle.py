"""close / with / use-after-close, and the exception mapping."""

import gc
import threading

import pytest

import libqueue
from libqueue import Closed, LibqueueError
from libqueue import _errors


def test_close_idempotent_and_use_after_close():
    b = libqueue.Broker()
    q = b.queue("q")
    q.close()
    q.close()
    assert q.closed
    with pytest.raises(Closed, match="queue was closed"):
        q.send(b"x")
    b.close()
    b.close()
    with pytest.raises(Closed, match="broker was closed"):
        b.queue("q")


def test_with_closes():
    with libqueue.Broker() as b:
        with b.queue("q") as q:
            q.send(b"1")
        assert q.closed
    assert b.closed and b.is_closed


def test_handles_outlive_broker_close():
    b = libqueue.Broker()
    q = b.queue("q")
    ns = b.namespace("n")
    b.close()
    with pytest.raises(Closed):
        q.send(b"x")
    with pytest.raises(Closed):
        q.receive(0)
    with pytest.raises(Closed):
        ns.queue("z")
    assert q.is_closed
    q.close()
    ns.close()


def test_del_is_a_safety_net():
    b = libqueue.Broker()
    q = b.queue("q")
    q.send(b"x")
    d = q.receive(0)
    del d, q, b
    gc.collect()


def test_blocked_receive_gets_closed():
    b = libqueue.Broker()
    q = b.queue("q")
    errors = []

    def wait():
        try:
            q.receive()
        except Closed as e:
            errors.append(e)

    t = threading.Thread(target=wait)
    t.start()
    t.join(0.2)
    b.close()
    t.join(5)
    assert not t.is_alive() and len(errors) == 1


def test_status_mapping_is_complete():
    names = {
        1: "Empty", 2: "Timeout", 3: "Full", 4: "Closed", 5: "NotFound", 6: "AlreadyExists",
        7: "QuotaExceeded", 8: "LeaseExpired", 9: "InvalidState", 10: "RemoteError",
        11: "MessageTooLarge", 100: "InvalidArgument", 101: "InvalidName", 102: "InvalidUtf8",
        104: "StorageError", 105: "Corrupt", 106: "Locked", 107: "IOFailure", 108: "Panic",
    }
    for status, name in names.items():
        e = _errors.error_for(status)
        assert type(e).__name__ == name and isinstance(e, LibqueueError)
        assert e.status == status
        assert e.code == libqueue._cffi.string(libqueue._lib.lq_status_str(status)).decode()
    assert type(_errors.error_for(150)) is LibqueueError


def test_stdlib_compatible_bases():
    import queue

    assert issubclass(libqueue.Empty, queue.Empty) and issubclass(libqueue.Full, queue.Full)
    assert issubclass(libqueue.Timeout, TimeoutError)
    assert issubclass(libqueue.NotFound, LookupError)


def test_locked_data_dir(tmp_path):
    """Another process attaches to a hosted directory; with exclusive=True it gets
    Locked (and an exclusive holder lets nobody attach)."""
    import subprocess
    import sys

    code = (f"import libqueue\ntry:\n b = libqueue.Broker({str(tmp_path)!r}, exclusive=EXCL)\n"
            f" print('attached' if b.is_attached else 'host')\nexcept libqueue.Locked:\n print('locked')")

    def other(exclusive: bool) -> str:
        out = subprocess.run([sys.executable, "-c", code.replace("EXCL", str(exclusive))],
                             capture_output=True, text=True, timeout=60)
        return out.stdout.strip() + out.stderr

    with libqueue.Broker(tmp_path):
        assert other(True) == "locked"
        assert other(False) == "attached"
    with libqueue.Broker(tmp_path, exclusive=True):
        assert other(False) == "locked"


def test_bad_sync_mode():
    with pytest.raises(ValueError):
        libqueue.Broker(sync="sometimes")
