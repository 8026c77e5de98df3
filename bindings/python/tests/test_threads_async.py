"""GIL release, Ctrl-C in a blocking receive, asyncio."""

import asyncio
import os
import signal
import threading
import time

import pytest

import libqueue
from libqueue import Timeout


def test_two_blocked_receivers_and_a_sender(broker):
    q = broker.queue("gil")
    got = []
    lock = threading.Lock()
    ready = threading.Barrier(3)

    def recv():
        ready.wait()
        d = q.receive(timeout=10)
        with lock:
            got.append(d.body)
        d.ack()

    threads = [threading.Thread(target=recv) for _ in range(2)]
    for t in threads:
        t.start()
    ready.wait()
    time.sleep(0.1)  # both are blocked inside the C call now
    # If the blocked calls held the GIL, this thread could not run at all.
    n = 0
    t0 = time.monotonic()
    while time.monotonic() - t0 < 0.05:
        n += 1
    assert n > 1000
    q.send(b"one")
    q.send(b"two")
    for t in threads:
        t.join(5)
    assert sorted(got) == [b"one", b"two"]


def test_ctrl_c_interrupts_blocking_receive_in_main_thread(broker):
    q = broker.queue("sigint")
    threading.Timer(0.2, lambda: os.kill(os.getpid(), signal.SIGINT)).start()
    t = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        q.receive()
    assert time.monotonic() - t < 2


def test_receive_async(broker):
    q = broker.queue("aio")

    async def main():
        loop = asyncio.get_running_loop()
        loop.call_later(0.05, q.send, b"later")
        d = await q.receive_async(timeout=5)
        assert d.body == b"later"
        d.ack()
        with pytest.raises(Timeout):
            await q.receive_async(timeout=0.05)
        # several waiters on one queue, woken by one reader
        waiters = [asyncio.create_task(q.receive_async(timeout=5)) for _ in range(3)]
        await asyncio.sleep(0.01)
        q.send_batch([b"a", b"b", b"c"])
        ds = await asyncio.gather(*waiters)
        assert sorted(d.body for d in ds) == [b"a", b"b", b"c"]
        # from another thread while the loop waits
        threading.Timer(0.05, q.send, args=(b"thread",)).start()
        d = await q.receive_async(timeout=5)
        assert d.body == b"thread"
        got = []
        q.send_batch([b"1", b"2"])
        async for d in q:
            got.append(d.body)
            d.ack()
            if len(got) == 2:
                break
        assert got == [b"1", b"2"]

    asyncio.run(main())


def test_async_for_ends_on_close():
    b = libqueue.Broker()
    q = b.queue("aio")

    async def main():
        asyncio.get_running_loop().call_later(0.1, b.close)
        return [d async for d in q]

    assert asyncio.run(main()) == []


def test_ctrl_c_interrupts_blocking_compat_get_in_main_thread():
    from libqueue import compat

    q = compat.Queue()
    threading.Timer(0.2, lambda: os.kill(os.getpid(), signal.SIGINT)).start()
    t = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        q.get()
    assert time.monotonic() - t < 2
    q.close()


def test_send_blocked_on_a_full_queue_releases_the_gil(broker):
    # The fast send keeps the GIL only while it cannot wait: on a full queue with
    # on_full="block" it waits with the GIL released.
    q = broker.queue("full", max_messages=1, on_full="block")
    q.send(b"first")
    done = threading.Event()

    def produce():
        q.send(b"second")  # blocks until a receive makes room
        done.set()

    t = threading.Thread(target=produce)
    t.start()
    time.sleep(0.1)
    n = 0
    t0 = time.monotonic()
    while time.monotonic() - t0 < 0.05:
        n += 1
    assert n > 1000 and not done.is_set()
    q.receive(timeout=1).ack()
    t.join(5)
    assert done.is_set()
    assert q.receive(timeout=1).body == b"second"


def test_non_blocking_calls_keep_the_gil(broker):
    # try_receive / send / body / ack do not hand the GIL over: a thread spinning in
    # Python sees them as one step, not as a chance to run (the hot path's point).
    import sys

    q = broker.queue("nogil")
    old = sys.getswitchinterval()
    sys.setswitchinterval(1.0)  # a thread only runs when the GIL is released
    try:
        ticks = [0]
        stop = threading.Event()

        def spin():
            while not stop.is_set():
                ticks[0] += 1

        t = threading.Thread(target=spin)
        t.start()
        time.sleep(0.01)
        before = ticks[0]
        for _ in range(1000):
            q.send(b"x")
            d = q.try_receive()
            d.body
            d.ack()
        after = ticks[0]
        stop.set()
        t.join()
    finally:
        sys.setswitchinterval(old)
    assert after == before
