"""A forked child cannot use its parent's broker (issue 13, item 10): every call on
an inherited handle raises :class:`libqueue.Forked`, an inherited pool stops without
a panic, nothing reaches the parent's journal, and the child may open its own broker.

The child reports through a pipe (one byte: 0, or the number of the failed check)
and leaves with ``os._exit``; the parent checks the byte and its journal."""

import os
import traceback
import warnings

import pytest

import libqueue

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")


def in_child(fn):
    """Runs ``fn()`` in a forked child; returns what it returned (98: it raised)."""
    r, w = os.pipe()
    with warnings.catch_warnings():
        # Python 3.12+ warns that forking a threaded process may deadlock the
        # child; what the child does here is exactly what that test is about.
        warnings.simplefilter("ignore", DeprecationWarning)
        pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        code = 99
        try:
            os.close(r)
            code = fn()
        except BaseException:
            traceback.print_exc()
            code = 98
        finally:
            os.write(w, bytes([code]))
            os._exit(0)
    os.close(w)
    try:
        got = os.read(r, 1)
    finally:
        os.close(r)
    _, status = os.waitpid(pid, 0)
    assert os.WIFEXITED(status), f"the child was killed ({status:#x})"
    assert got, "the child died before reporting"
    return got[0]


def raises_forked(call):
    try:
        call()
    except libqueue.Forked as e:
        return e.code == "LQ_FORKED" and "fork" in str(e)
    return False


def test_forked_child_cannot_use_the_parents_broker(tmp_path):
    parent_dir, own_dir = tmp_path / "parent", tmp_path / "child"
    b = libqueue.Broker(parent_dir)
    q = b.queue("jobs", persistent=True)
    for i in range(50):
        q.send(f"parent-{i:03}")
    b.flush()
    held = q.try_receive()
    assert held is not None and held.text == "parent-000"
    pool = b.pool("work", size=2)
    pool.default_handler(lambda d: None)
    pool.start()

    def child():
        checks = [
            lambda: q.send("child"),
            lambda: q.send_batch([f"child-{i}" for i in range(50)]),
            lambda: q.try_receive(),
            lambda: q.stats(),
            lambda: b.queue("jobs"),
            lambda: b.flush(),
            lambda: held.ack(),
        ]
        for n, call in enumerate(checks, 1):
            if not raises_forked(call):
                return n
        try:  # an inherited pool stops without a panic
            pool.stop()
        except libqueue.Forked:
            pass
        b.close()  # touches nothing of the parent's
        with libqueue.Broker(own_dir) as mine:  # a broker of its own works
            mq = mine.queue("jobs", persistent=True)
            for i in range(50):
                mq.send(f"child-{i}")
            mine.flush()
            d = mq.try_receive()
            if d is None or d.text != "child-0":
                return 20
            d.ack()
        return 0

    assert in_child(child) == 0

    held.ack()
    for i in range(50, 100):
        q.send(f"parent-{i:03}")
    pool.stop()
    b.close()
    with libqueue.Broker(parent_dir) as b:
        r = b.recovery_report
        assert r.damage == [] and r.bytes_cut == 0 and r.messages_recovered == 99
        q = b.queue("jobs")
        got = []
        while (d := q.try_receive()) is not None:
            got.append(d.text)
            d.ack()
        assert got == [f"parent-{i:03}" for i in range(1, 100)]
    with libqueue.Broker(own_dir) as mine:
        assert mine.queue("jobs").stats().ready == 49
