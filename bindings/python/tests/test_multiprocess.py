"""Several processes, one data directory (issue 14), from Python.

The test process opens the directory first and so hosts it; ``multiprocessing``
workers (the ``spawn`` and the ``fork`` start methods) open the same directory
and attach: producers and consumers in separate processes, checked for
exactly-once delivery with acks and per-producer FIFO; ``compat.Queue(path=...)``
passed to the workers (pickled for spawn, reopened on first use after fork) with
``task_done``/``join`` counted across processes; a consumer killed with leases
gives them back at once. Every wait is bounded."""

from __future__ import annotations

import multiprocessing as mp
import os
import signal
import sys
import time
import warnings

import pytest

import libqueue
from libqueue import compat

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="Unix sockets")

METHODS = ["spawn"] + (["fork"] if "fork" in mp.get_all_start_methods() else [])
PRODUCERS, CONSUMERS, PER_PRODUCER = 2, 2, 300
WAIT = 30  # seconds: the bound of every wait for a worker


def context(method: str) -> mp.context.BaseContext:
    return mp.get_context(method)


def start(ctx, target, *args):
    with warnings.catch_warnings():
        # Python 3.12+ warns that forking a threaded process may deadlock the child;
        # the child opens the directory afresh (attaches), which is what is tested.
        warnings.simplefilter("ignore", DeprecationWarning)
        p = ctx.Process(target=target, args=args)
        p.start()
    return p


def finish(procs):
    for p in procs:
        p.join(WAIT)
    for p in procs:
        if p.is_alive():
            p.kill()
            p.join(5)
    assert [p.exitcode for p in procs] == [0] * len(procs)


# -- the workers (module level: spawn imports them by name) -------------------------

def produce(path: str, k: int) -> None:
    with libqueue.Broker(path) as b:
        assert b.is_attached
        q = b.queue("jobs")
        for i in range(PER_PRODUCER):
            q.send(f"{k}:{i}".encode(), persistent=True)
        b.flush()


def consume(path: str, out) -> None:
    """Receives (leased) and acks until the stop message; reports what it got,
    in its order."""
    got = []
    with libqueue.Broker(path) as b:
        assert b.is_attached
        me = os.getpid()
        assert any(c.pid == me for c in b.host_info().clients)
        q = b.queue("jobs")
        while True:
            with q.receive(timeout=WAIT) as d:  # acked when the block ends
                if d.body == b"stop":
                    break
                got.append(d.body.decode())
    out.put(got)


def hold(path: str, ready) -> None:
    """Receives three messages, acks none, says so, and waits to be killed."""
    b = libqueue.Broker(path)
    q = b.queue("held")
    kept = [q.receive(timeout=WAIT) for _ in range(3)]
    ready.set()
    time.sleep(WAIT)
    del kept


def compat_produce(q: compat.Queue, k: int) -> None:
    for i in range(PER_PRODUCER):
        q.put((k, i))


def compat_consume(q: compat.Queue, results: compat.Queue, c: int) -> None:
    while True:
        item = q.get(timeout=WAIT)
        if item is None:
            q.task_done()
            return
        results.put((c, item))  # before task_done: join() implies it is in results
        q.task_done()


# -- the tests ------------------------------------------------------------------------

def check_exactly_once_fifo(lists):
    """Every message once over all consumers; each consumer saw each producer's
    messages in the order they were sent."""
    seen = [tuple(int(x) for x in m.split(":")) if isinstance(m, str) else m
            for got in lists for m in got]
    want = [(k, i) for k in range(PRODUCERS) for i in range(PER_PRODUCER)]
    assert sorted(seen) == want  # exactly once
    for got in lists:
        items = [tuple(int(x) for x in m.split(":")) if isinstance(m, str) else m for m in got]
        for k in range(PRODUCERS):
            mine = [i for (kk, i) in items if kk == k]
            assert mine == sorted(mine), f"producer {k} out of order"


@pytest.mark.parametrize("method", METHODS)
def test_broker_producers_and_consumers_in_processes(tmp_path, method):
    ctx = context(method)
    path = str(tmp_path)
    with libqueue.Broker(path) as host:
        assert not host.is_attached
        jobs = host.queue("jobs")
        out = ctx.Queue()
        consumers = [start(ctx, consume, path, out) for _ in range(CONSUMERS)]
        producers = [start(ctx, produce, path, k) for k in range(PRODUCERS)]
        finish(producers)
        # FIFO holds per producer only (sharded lanes): a stop sent now could be
        # taken before messages still in other shards, so the stops go once the
        # consumers have settled everything (bounded; a lost message still fails
        # the exactly-once check below).
        deadline = time.monotonic() + WAIT
        while len(jobs) and time.monotonic() < deadline:
            time.sleep(0.01)
        for _ in range(CONSUMERS):
            jobs.send(b"stop")
        lists = [out.get(timeout=WAIT) for _ in range(CONSUMERS)]
        finish(consumers)
        check_exactly_once_fifo(lists)
        s = jobs.stats()
        assert s.depth == 0 and s.acked == PRODUCERS * PER_PRODUCER + CONSUMERS
        # Every worker went: none attached now.
        deadline = time.monotonic() + 10
        while host.host_info().clients and time.monotonic() < deadline:
            time.sleep(0.01)
        info = host.host_info()
        assert info.pid == os.getpid() and info.clients == [] and info.takeovers == 0


def test_killed_consumer_gives_its_leases_back_at_once(tmp_path):
    ctx = context("spawn")
    path = str(tmp_path)
    with libqueue.Broker(path) as host:
        q = host.queue("held")  # 30 s leases
        for i in range(3):
            q.send(f"m{i}".encode(), persistent=True)
        ready = ctx.Event()
        p = start(ctx, hold, path, ready)
        assert ready.wait(WAIT)
        clients = host.host_info().clients
        assert [(c.pid, c.leases) for c in clients] == [(p.pid, 3)]
        assert clients[0].uid == os.getuid() and clients[0].since <= time.time() + 1
        assert q.stats().leased == 3
        t0 = time.monotonic()
        os.kill(p.pid, signal.SIGKILL)
        got = sorted((d.body, d.delivery_count) for d in [q.receive(timeout=5) for _ in range(3)])
        assert time.monotonic() - t0 < 5  # not the 30 s lease
        assert got == [(b"m0", 2), (b"m1", 2), (b"m2", 2)]  # counted as a delivery
        p.join(WAIT)
        assert p.exitcode == -signal.SIGKILL


@pytest.mark.parametrize("method", METHODS)
def test_compat_queue_across_processes(tmp_path, method):
    """The queue object itself goes to the workers; join() in this process waits
    for task_done() in theirs."""
    ctx = context(method)
    with compat.Queue(path=tmp_path) as q, compat.Queue(path=tmp_path, name="results") as results:
        consumers = [start(ctx, compat_consume, q, results, c) for c in range(CONSUMERS)]
        producers = [start(ctx, compat_produce, q, k) for k in range(PRODUCERS)]
        finish(producers)
        q.join()  # every item taken and marked done, by the consumer processes
        assert results.qsize() == PRODUCERS * PER_PRODUCER
        assert q.unfinished_tasks == 0
        got = [results.get_nowait() for _ in range(PRODUCERS * PER_PRODUCER)]
        # Each consumer got each producer's items in order (results is FIFO too).
        check_exactly_once_fifo([[item for (c, item) in got if c == k] for k in range(CONSUMERS)])
        for _ in range(CONSUMERS):
            q.put(None)
        q.join()
        finish(consumers)
        assert q.empty()


def test_compat_join_waits_for_another_process(tmp_path):
    """join() does not return while an item taken in another process is not done."""
    import threading

    ctx = context("spawn")
    q = compat.Queue(path=tmp_path)
    q.put("a")
    got, done = ctx.Event(), ctx.Event()
    p = start(ctx, take_then_wait, q, got, done)
    assert got.wait(WAIT)
    assert q.qsize() == 0 and q.unfinished_tasks == 1
    joined = threading.Event()
    t = threading.Thread(target=lambda: (q.join(), joined.set()), daemon=True)
    t.start()
    assert not joined.wait(0.3)
    done.set()
    assert joined.wait(WAIT)
    p.join(WAIT)
    assert p.exitcode == 0
    with pytest.raises(ValueError):
        q.task_done()  # no task is due anywhere
    q.close()


def take_then_wait(q: compat.Queue, got, done) -> None:
    assert q.get(timeout=WAIT) == "a"
    got.set()
    assert done.wait(WAIT)
    q.task_done()


def take_and_hold(q: compat.Queue, got, done) -> None:
    """Takes "a" (not marked done), says so, waits for ``done``, closes the queue."""
    assert q.get(timeout=WAIT) == "a"
    got.set()
    assert done.wait(WAIT)
    q.close()


def test_compat_item_of_a_killed_consumer_comes_back(tmp_path):
    """An item taken and not marked done stays leased to its process: killed, the
    item is back at once (not after a lease time), counted as a delivery; join()
    meanwhile waits for it."""
    ctx = context("spawn")
    q = compat.Queue(path=tmp_path)
    q.put("a")
    got, done = ctx.Event(), ctx.Event()
    p = start(ctx, take_and_hold, q, got, done)
    assert got.wait(WAIT)
    assert q.qsize() == 0 and q.unfinished_tasks == 1
    t0 = time.monotonic()
    os.kill(p.pid, signal.SIGKILL)
    assert q.get(timeout=10) == "a"
    assert time.monotonic() - t0 < 10
    assert q.unfinished_tasks == 1
    q.task_done()
    q.join()
    assert q.unfinished_tasks == 0
    p.join(WAIT)
    q.close()


def test_compat_task_done_for_an_item_of_another_process(tmp_path):
    """task_done() in a process that took nothing marks done an item another process
    holds (a credit): join() returns; that process's close uses the credit up."""
    ctx = context("spawn")
    q = compat.Queue(path=tmp_path)
    q.put("a")
    got, done = ctx.Event(), ctx.Event()
    p = start(ctx, take_and_hold, q, got, done)
    assert got.wait(WAIT)
    assert q.unfinished_tasks == 1
    q.task_done()  # for the item the other process holds
    assert q.unfinished_tasks == 0
    q.join()
    with pytest.raises(ValueError):
        q.task_done()  # only one was due
    done.set()
    p.join(WAIT)
    assert p.exitcode == 0
    assert q.unfinished_tasks == 0 and q.qsize() == 0  # taken for good at its close
    with pytest.raises(ValueError):
        q.task_done()
    q.put("b")
    assert q.unfinished_tasks == 1  # no credit left over
    assert q.get(timeout=WAIT) == "b"
    q.task_done()
    q.join()
    q.close()


def test_compat_queue_in_memory_cannot_go_to_another_process():
    import pickle

    q = compat.Queue()
    with pytest.raises(TypeError, match="give it a path"):
        pickle.dumps(q)
    q.close()


def test_broker_arguments_and_host_info(tmp_path):
    with libqueue.Broker() as mem:
        assert not mem.is_attached
        with pytest.raises(libqueue.InvalidState):
            mem.host_info()
    with pytest.raises(TypeError, match="exclusive"):
        libqueue.Broker(tmp_path, exclusive=1)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="allow_uids"):
        libqueue.Broker(tmp_path, allow_uids="1")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="allow_uids"):
        libqueue.Broker(tmp_path, allow_uids=[-1])
    with libqueue.Broker(tmp_path, allow_uids=[os.getuid() + 1]) as host:
        info = host.host_info()
        assert isinstance(info, libqueue.HostInfo)
        assert info.pid == os.getpid() and info.takeovers == 0 and info.dropped == 0
        assert info.clients == []
        # A second open from this same process attaches too (the host serves it).
        with libqueue.Broker(tmp_path) as guest:
            assert guest.is_attached
            cs = host.host_info().clients
            assert len(cs) == 1 and isinstance(cs[0], libqueue.ClientInfo)
            assert cs[0].pid == os.getpid() and cs[0].leases == 0
        with pytest.raises(libqueue.Locked):
            libqueue.Broker(tmp_path, exclusive=True)
    with libqueue.Broker(tmp_path, exclusive=True) as alone:
        assert not alone.is_attached
        with pytest.raises(libqueue.InvalidState):
            alone.host_info()
    host.close()
    with pytest.raises(libqueue.Closed):
        host.is_attached
