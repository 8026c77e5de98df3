"""The consumer pool with Python handlers by name, and RPC call / cast / fan-out."""

import threading
import time

import pytest

import libqueue
from libqueue import RemoteError, Timeout


def test_pool_handlers_by_name(broker):
    seen = {"a": [], "b": [], "default": []}
    lock = threading.Lock()
    pool = broker.pool("jobs", size=2)

    @pool.handler("a")
    def handle_a(d):
        with lock:
            seen["a"].append(d.body)

    @pool.handler("b")
    def handle_b(d):
        with lock:
            seen["b"].append(d.body)

    @pool.default_handler
    def other(d):
        with lock:
            seen["default"].append(d.name)

    q = broker.queue("jobs")
    with pool:
        for i in range(20):
            q.send(str(i), name="a" if i % 2 else "b")
        q.send(b"?", name="zzz")
        deadline = time.monotonic() + 10
        while pool.stats().handled < 21 and time.monotonic() < deadline:
            time.sleep(0.01)
    st = pool.stats()
    assert st.handled == 21 and st.succeeded == 21 and st.max_active <= 2
    assert len(seen["a"]) == 10 and len(seen["b"]) == 10 and seen["default"] == ["zzz"]
    assert q.stats().acked == 21
    pool.close()


def test_pool_size_throttles(broker):
    active = [0, 0]
    lock = threading.Lock()
    pool = broker.pool("slow", size=3)

    @pool.default_handler
    def slow(d):
        with lock:
            active[0] += 1
            active[1] = max(active[1], active[0])
        time.sleep(0.02)
        with lock:
            active[0] -= 1

    q = broker.queue("slow")
    q.send_batch([b"x"] * 30)
    pool.start()
    deadline = time.monotonic() + 10
    while pool.stats().handled < 30 and time.monotonic() < deadline:
        time.sleep(0.01)
    pool.stop()
    assert active[1] <= 3 and pool.stats().max_active <= 3 and pool.stats().handled == 30


def test_failing_handler_nacks_then_dead_letters(broker):
    ns = broker.default_namespace
    ns.queue("f", max_deliveries=2, dead_letter_queue="f.dlq")
    pool = ns.pool("f", size=1, backoff=(0.001, 0.001))

    @pool.handler("x")
    def fail(d):
        raise ValueError("nope")

    with pool:
        broker.queue("f").send(b"bad", name="x")
        d = broker.queue("f.dlq").receive(timeout=5)
    assert d.body == b"bad" and b"nope" in d.header("x-dead-letter-reason", b"")
    assert pool.stats().failed == 2


def test_rpc_call_cast_fanout(broker):
    pool = broker.pool("svc", size=2)
    casts = []

    @pool.handler("add")
    def add(d):
        a, b = map(int, d.text.split())
        return str(a + b)

    @pool.handler("fail")
    def fail(d):
        raise RuntimeError("broken handler")

    @pool.handler("note")
    def note(d):
        casts.append(d.body)

    with broker.queue("svc", max_deliveries=1), pool, broker.rpc() as rpc:
        assert rpc.call("svc", "2 3", name="add", timeout=5) == b"5"
        with pytest.raises(RemoteError, match="broken handler"):
            rpc.call("svc", b"", name="fail", timeout=5)
        assert rpc.cast("svc", b"hi", name="note") > 0
        with pytest.raises(Timeout):
            rpc.call("nobody", b"", timeout=0.05)
        t = broker.topic("all")
        s1, s2 = t.subscribe("s1"), t.subscribe("s2")
        assert rpc.fanout("all", b"ping") == 2
        assert s1.receive(0).body == b"ping" and s2.receive(0).body == b"ping"
        deadline = time.monotonic() + 5
        while not casts and time.monotonic() < deadline:
            time.sleep(0.01)
        assert casts == [b"hi"]
        assert rpc.late_replies >= 0
