"""libqueue.compat against the documented behaviour of the standard library's queue."""

import queue as stdqueue
import signal
import subprocess
import sys
import textwrap
import threading
import time
from dataclasses import dataclass

import pytest

from libqueue import compat


@dataclass(frozen=True)
class Point:
    x: int
    y: int


CLASSES = [compat.Queue, compat.LifoQueue, compat.PriorityQueue]


def test_exceptions_are_the_stdlib_ones():
    assert compat.Empty is stdqueue.Empty and compat.Full is stdqueue.Full
    if sys.version_info >= (3, 13):
        assert compat.ShutDown is stdqueue.ShutDown
    else:
        assert issubclass(compat.ShutDown, Exception)


@pytest.mark.parametrize("cls", CLASSES + [compat.SimpleQueue])
def test_except_compat_catches_what_every_class_raises(cls):
    # LifoQueue/PriorityQueue wait in the standard library's code, which raises the
    # stdlib exceptions: `except compat.Full` / `except compat.Empty` must catch them.
    q = cls() if cls is compat.SimpleQueue else cls(maxsize=1)
    try:
        q.get_nowait()
    except compat.Empty:
        pass
    if cls is not compat.SimpleQueue:
        q.put(1)
        try:
            q.put_nowait(2)
        except compat.Full:
            pass
    q.close()


def test_fifo_any_picklable():
    q = compat.Queue()
    items = [1, "two", b"three", (4, 5), {"six": [7]}, Point(8, 9), None, 3.5]
    for it in items:
        q.put(it)
    assert q.qsize() == len(items) and not q.empty()
    assert [q.get() for _ in items] == items
    assert q.empty()


def test_lifo_and_priority_order():
    lq = compat.LifoQueue()
    for i in range(5):
        lq.put(i)
    assert [lq.get() for _ in range(5)] == [4, 3, 2, 1, 0]
    pq = compat.PriorityQueue()
    for e in [(3, "c"), (1, "a"), (2, "b"), (1, "a2")]:
        pq.put(e)
    assert [pq.get() for _ in range(4)] == [(1, "a"), (1, "a2"), (2, "b"), (3, "c")]


@pytest.mark.parametrize("cls", CLASSES + [compat.SimpleQueue])
def test_empty_nowait_and_timeout(cls):
    q = cls()
    with pytest.raises(stdqueue.Empty):
        q.get_nowait()
    with pytest.raises(stdqueue.Empty):
        q.get(block=False)
    t = time.monotonic()
    with pytest.raises(stdqueue.Empty):
        q.get(timeout=0.05)
    assert time.monotonic() - t >= 0.04
    with pytest.raises(ValueError):
        q.get(timeout=-1)
    q.put_nowait(1)
    assert q.get_nowait() == 1


@pytest.mark.parametrize("cls", CLASSES)
def test_maxsize_full(cls):
    q = cls(maxsize=2)
    assert q.maxsize == 2 and not q.full()
    q.put(1)
    q.put(2)
    assert q.full() and q.qsize() == 2
    with pytest.raises(stdqueue.Full):
        q.put_nowait(3)
    with pytest.raises(stdqueue.Full):
        q.put(3, block=False)
    t = time.monotonic()
    with pytest.raises(stdqueue.Full):
        q.put(3, timeout=0.05)
    assert time.monotonic() - t >= 0.04
    with pytest.raises(ValueError):
        q.put(3, timeout=-1)
    # a blocked put proceeds when a consumer makes room
    threading.Timer(0.05, q.get).start()
    q.put(3, timeout=5)
    assert q.qsize() == 2


@pytest.mark.parametrize("cls", CLASSES)
def test_unbounded_never_full(cls):
    q = cls(maxsize=0)
    for i in range(1000):
        q.put(i)
    assert not q.full() and q.qsize() == 1000


@pytest.mark.parametrize("cls", CLASSES)
def test_task_done_join(cls):
    q = cls()
    with pytest.raises(ValueError):
        q.task_done()
    done = []

    def worker():
        while True:
            item = q.get()
            if item is None:
                q.task_done()
                return
            time.sleep(0.001)
            done.append(item)
            q.task_done()

    t = threading.Thread(target=worker)
    t.start()
    for i in range(50):
        q.put(i)
    q.join()
    assert sorted(done) == list(range(50))
    q.put(None)
    q.join()
    t.join(5)
    assert not hasattr(compat.SimpleQueue(), "task_done")


def test_blocking_get_wakes_on_put_from_thread():
    q = compat.Queue()
    threading.Timer(0.05, q.put, args=("late",)).start()
    assert q.get(timeout=5) == "late"
    threading.Timer(0.05, q.put, args=("forever",)).start()
    assert q.get() == "forever"


@pytest.mark.parametrize("cls", CLASSES + [compat.SimpleQueue])
def test_producers_consumers(cls):
    q = cls()
    n, out, lock = 500, [], threading.Lock()

    def prod(k):
        for i in range(n):
            q.put((k, i))

    def cons():
        for _ in range(n):
            item = q.get(timeout=10)
            with lock:
                out.append(item)

    ts = [threading.Thread(target=prod, args=(k,)) for k in range(2)]
    ts += [threading.Thread(target=cons) for _ in range(2)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(30)
    assert sorted(out) == sorted((k, i) for k in range(2) for i in range(n))
    if cls is compat.Queue:  # FIFO per producer
        for k in range(2):
            mine = [i for (kk, i) in out if kk == k]
            assert len(mine) == n


CHILD = textwrap.dedent("""
    import sys
    from libqueue import compat
    kind, path = sys.argv[1], sys.argv[2]
    q = getattr(compat, kind)(path=path)
    for i in range(200):
        q.put((i, {"n": i}))
    q.get()                       # {"n": 0} (or the LIFO/priority first) is taken
    print("ready", flush=True)
    import time; time.sleep(60)
""")


@pytest.mark.parametrize("kind", ["Queue", "SimpleQueue", "PriorityQueue", "LifoQueue"])
def test_persistent_survives_sigkill(tmp_path, kind):
    p = subprocess.Popen([sys.executable, "-c", CHILD, kind, str(tmp_path)], stdout=subprocess.PIPE,
                         text=True)
    assert p.stdout.readline().strip() == "ready"
    p.send_signal(signal.SIGKILL)
    p.wait(10)
    # A Queue keeps an item taken leased until task_done: the killed process's comes
    # back (counted as a delivery). The others took it for good.
    back = kind == "Queue"
    with getattr(compat, kind)(path=tmp_path) as q:
        assert q.qsize() == 199 + back
        got = [q.get_nowait()[1]["n"] for _ in range(199 + back)]
        if kind == "LifoQueue":
            assert got == list(range(198, -1, -1))
        else:
            assert got == list(range(1 - back, 200))
        if kind != "SimpleQueue":
            assert q.unfinished_tasks == 199 + back
    with getattr(compat, kind)(path=tmp_path) as q:  # what was taken stays taken
        assert q.empty()


def test_persistent_reopen_in_process(tmp_path):
    with compat.Queue(path=tmp_path / "q", sync="always") as q:
        q.put("a")
        q.put("b")
        assert q.get() == "a"
    with compat.Queue(path=tmp_path / "q") as q:
        assert q.get_nowait() == "b"


def test_in_memory_items_by_reference():
    # As queue.Queue: the same object comes out, picklable or not.
    q = compat.Queue()
    obj, fn = [1, 2], lambda: 3
    q.put(obj)
    q.put(fn)
    assert q.get() is obj and q.get() is fn
    s = compat.SimpleQueue()
    s.put(obj)
    assert s.get() is obj
    q.close()
    s.close()


def test_full_put_nowait_forgets_the_item():
    q = compat.Queue(maxsize=1)
    q.put(1)
    with pytest.raises(compat.Full):
        q.put_nowait(2)
    assert q.qsize() == 1 and q.get() == 1 and q.empty() and not q._items
    q.close()


# -- shutdown(): Python 3.13's semantics, on every version --------------------------

def _make(cls, tmp_path, persistent, maxsize=0):
    return cls(maxsize, path=tmp_path / "q") if persistent else cls(maxsize)


@pytest.mark.parametrize("persistent", [False, True])
@pytest.mark.parametrize("cls", CLASSES)
def test_shutdown_drains_then_raises(cls, tmp_path, persistent):
    q = _make(cls, tmp_path, persistent, 2)
    assert q.is_shutdown is False
    q.put("a")
    q.put("b")
    q.shutdown()
    assert q.is_shutdown is True
    with pytest.raises(compat.ShutDown):
        q.put("c")
    with pytest.raises(compat.ShutDown):
        q.put_nowait("c")
    assert sorted([q.get(), q.get_nowait()]) == ["a", "b"]
    q.task_done()
    q.task_done()
    q.join()
    for call in (q.get, q.get_nowait, lambda: q.get(True, 1.0)):
        with pytest.raises(compat.ShutDown):
            call()
    q.shutdown(immediate=True)  # allowed after a plain shutdown
    assert q.is_shutdown and q.qsize() == 0
    q.close()


@pytest.mark.parametrize("persistent", [False, True])
@pytest.mark.parametrize("cls", CLASSES)
def test_shutdown_immediate_discards_and_releases_join(cls, tmp_path, persistent):
    q = _make(cls, tmp_path, persistent)
    for i in range(3):
        q.put(i)
    assert q.unfinished_tasks == 3
    q.shutdown(immediate=True)
    assert q.qsize() == 0 and q.empty() and q.unfinished_tasks == 0
    with pytest.raises(compat.ShutDown):
        q.get()
    with pytest.raises(compat.ShutDown):
        q.get_nowait()
    with pytest.raises(ValueError):
        q.task_done()
    q.join()  # returns: no unfinished task left
    q.close()
    if persistent:  # the items are gone from the journal too
        with cls(path=tmp_path / "q") as again:
            assert again.qsize() == 0 and not again.is_shutdown


@pytest.mark.parametrize("persistent", [False, True])
@pytest.mark.parametrize("cls", CLASSES)
def test_shutdown_wakes_blocked_get_and_put(cls, tmp_path, persistent):
    # An empty queue: a get waiting (no timeout) in another thread raises ShutDown.
    q = _make(cls, tmp_path, persistent, 1)
    results = []

    def get():
        try:
            results.append(q.get())
        except Exception as e:  # noqa: BLE001 - the test looks at what it was
            results.append(e)

    t = threading.Thread(target=get)
    t.start()
    time.sleep(0.05)
    q.shutdown()
    t.join(10)
    assert not t.is_alive() and len(results) == 1
    assert isinstance(results[0], compat.ShutDown)
    q.close()
    # A full queue: a put waiting for room in another thread raises ShutDown, and
    # its item is not in the queue.
    q = _make(cls, tmp_path / "2", persistent, 1)
    q.put("first")
    results.clear()

    def put():
        try:
            q.put("late")
            results.append("put")
        except Exception as e:  # noqa: BLE001
            results.append(e)

    t = threading.Thread(target=put)
    t.start()
    time.sleep(0.05)
    q.shutdown()
    t.join(10)
    assert not t.is_alive() and isinstance(results[0], compat.ShutDown)
    assert q.get() == "first" and q.qsize() == 0 and q.unfinished_tasks == 1
    with pytest.raises(compat.ShutDown):
        q.get()
    q.close()


def test_simple_queue_has_no_shutdown():
    # As queue.SimpleQueue in 3.13.
    assert not hasattr(compat.SimpleQueue, "shutdown")


def test_path_queue_items_held_until_task_done(tmp_path, monkeypatch):
    """With a path, a Queue keeps what get() took leased until task_done(); past
    HELD_MAX held, the oldest are marked by task tokens instead: the count of
    unfinished tasks stays exact either way."""
    monkeypatch.setattr(compat, "HELD_MAX", 3)
    with compat.Queue(path=tmp_path) as q:
        for i in range(10):
            q.put(i)
        assert [q.get_nowait() for _ in range(10)] == list(range(10))
        assert q.qsize() == 0 and q.unfinished_tasks == 10
        leased = q._store.queue.stats().leased
        assert leased == 3  # the other 7: tokens
        for left in range(9, -1, -1):
            q.task_done()
            assert q.unfinished_tasks == left
        q.join()
        with pytest.raises(ValueError):
            q.task_done()
        q.put("x")
        assert q.get_nowait() == "x"
    with compat.Queue(path=tmp_path) as q:  # taken at the close: not back
        assert q.qsize() == 0 and q.unfinished_tasks == 0
