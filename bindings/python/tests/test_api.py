"""The Pythonic API: messages, receive modes, settling, inspection, namespaces, topics."""

import time

import pytest

import libqueue
from libqueue import (AlreadyExists, Closed, Empty, Full, InvalidName, InvalidState, LeaseExpired,
                      Message, MessageTooLarge, NotFound, QueueOptions, Quotas, QuotaExceeded,
                      Timeout)


def test_version():
    assert libqueue.LIBRARY_VERSION == libqueue.__version__


def test_send_receive_all_fields(queue):
    i = queue.send("héllo", headers={"k": "v", "b": b"\x00\x01"}, name="greet", priority=7,
                   correlation_id="c-1", execution_id="e-9", persistent=False)
    d = queue.receive(timeout=1)
    assert (d.id, d.body, d.text, d.name) == (i, "héllo".encode(), "héllo", "greet")
    assert d.headers == {"k": b"v", "b": b"\x00\x01", "execution_id": b"e-9"}
    assert d.header("k") == b"v" and d.header("nope") is None
    assert (d.execution_id, d.correlation_id, d.priority, d.delivery_count) == ("e-9", "c-1", 7, 1)
    assert d.persistent is False and d.expires_at is None
    d.ack()
    assert d.settled
    with pytest.raises(InvalidState):
        d.ack()
    d.close()
    d.close()


def test_body_view_zero_copy_and_released_on_ack(queue):
    queue.send(b"x" * 4096)
    d = queue.receive(0)
    v = d.body_view()
    assert isinstance(v, memoryview) and v.readonly and bytes(v[:3]) == b"xxx" and len(v) == 4096
    d.ack()
    with pytest.raises(ValueError):  # released with the message
        v[0]


def test_ids_increase_and_fifo_batch(queue):
    ids = queue.send_batch([b"a", "b", Message(b"c", name="n")])
    assert ids == sorted(ids) and len(set(ids)) == 3
    ds = queue.receive_batch(10, timeout=0)
    assert [d.body for d in ds] == [b"a", b"b", b"c"]
    assert ds[2].name == "n"
    for d in ds:
        d.ack()
    assert queue.receive_batch(10, timeout=0) == []
    assert queue.send_batch([]) == []


def test_receive_modes(queue):
    with pytest.raises(Empty):
        queue.receive(0)
    assert queue.try_receive() is None
    t = time.monotonic()
    with pytest.raises(Timeout):
        queue.receive(timeout=0.05)
    assert time.monotonic() - t >= 0.04
    queue.send(b"z")
    d = queue.receive(auto_ack=True)
    assert d.body == b"z"
    with pytest.raises(InvalidState):
        d.ack()
    assert queue.stats().acked == 1


def test_receive_batch_auto_ack(queue):
    for body in (b"a", b"b", b"c"):
        queue.send(body)
    ds = queue.receive_batch(8, 0, auto_ack=True)
    assert [d.body for d in ds] == [b"a", b"b", b"c"]
    for d in ds:  # acked by the receive itself: nothing to settle
        with pytest.raises(InvalidState):
            d.ack()
        with pytest.raises(InvalidState):
            d.nack()
    st = queue.stats()
    assert st.acked == 3 and st.leased == 0
    assert queue.receive_batch(8, 0, auto_ack=True) == []
    assert queue.receive_batch(8, 0.02, auto_ack=True) == []


def test_ack_batch(broker, queue):
    for body in (b"a", b"b", b"c"):
        queue.send(body)
    ds = queue.receive_batch(8, 0)
    assert len(ds) == 3
    # Refused before any ack.
    with pytest.raises(TypeError, match="deliveries"):
        queue.ack_batch([ds[0], b"x"])  # type: ignore[list-item]
    with pytest.raises(libqueue.InvalidArgument, match="twice"):
        queue.ack_batch([ds[0], ds[0]])
    other = broker.queue("other")
    other.send(b"o")
    theirs = other.receive(0)
    with pytest.raises(libqueue.InvalidArgument, match="another queue"):
        queue.ack_batch([ds[0], theirs])
    queue.send(b"auto")
    auto = queue.receive(0, auto_ack=True)
    with pytest.raises(InvalidState):
        queue.ack_batch([ds[1], auto])
    assert queue.stats().acked == 1 and queue.stats().leased == 3
    assert not any(d.settled for d in ds)
    assert ds[2].body == b"c"
    # One call, a result each.
    assert queue.ack_batch(ds) == [None, None, None]
    assert all(d.settled for d in ds)
    st = queue.stats()
    assert st.acked == 4 and st.leased == 0
    with pytest.raises(InvalidState):
        queue.ack_batch(ds)
    assert queue.ack_batch([]) == []
    assert other.ack_batch([theirs]) == [None]


def test_nack_redelivers_and_delay(queue):
    queue.send(b"m")
    d = queue.receive(0)
    d.nack()
    d2 = queue.receive(0)
    assert d2.delivery_count == 2 and d2.id == d.id
    d2.nack(delay=0.1)
    with pytest.raises(Empty):
        queue.receive(0)
    d3 = queue.receive(timeout=2)
    assert d3.delivery_count == 3
    d3.ack()


def test_with_delivery_acks_or_nacks(queue):
    queue.send(b"ok")
    with queue.receive(0) as d:
        assert d.body == b"ok"
    assert queue.stats().acked == 1
    queue.send(b"bad")
    with pytest.raises(RuntimeError):
        with queue.receive(0):
            raise RuntimeError("boom")
    assert queue.stats().nacked == 1
    assert queue.receive(0).body == b"bad"


def test_ttl_delay_priority(queue):
    queue.send(b"short", ttl=0.05)
    queue.send(b"later", delay=0.1)
    queue.send(b"low", priority=1)
    queue.send(b"high", priority=9)
    assert queue.stats().delayed == 1
    time.sleep(0.15)
    got = [d.body for d in queue.receive_batch(10, 0)]
    assert b"short" not in got
    assert got.index(b"high") < got.index(b"low")
    assert b"later" in got or queue.receive(1).body == b"later"
    assert queue.stats().expired == 1


def test_lease_extend_and_expiry(broker):
    q = broker.queue("lease", lease_time=0.1)
    q.send(b"l")
    d = q.receive(0)
    d.extend(1.0)
    time.sleep(0.15)
    d.ack()  # still leased thanks to extend
    q.send(b"l2")
    d = q.receive(0)
    time.sleep(0.25)
    again = q.receive(timeout=1)
    assert again.delivery_count == 2
    with pytest.raises(LeaseExpired):
        d.ack()
    again.ack()


def test_dead_letter(broker):
    q = broker.queue("work", max_deliveries=1, dead_letter_queue="work.dlq")
    q.send(b"poison")
    q.receive(0).nack(reason="bad input")
    dlq = broker.queue("work.dlq")
    d = dlq.receive(timeout=1)
    assert d.body == b"poison" and b"bad input" in (d.header("x-dead-letter-reason") or b"")
    assert q.stats().dead_lettered == 1


def test_peek_purge_cancel_stats(queue):
    ids = [queue.send(str(i)) for i in range(5)]
    peeked = queue.peek(3)
    assert [p.body for p in peeked] == [b"0", b"1", b"2"]
    with pytest.raises(InvalidState):
        peeked[0].ack()
    assert queue.stats().ready == 5 and len(queue) == 5
    queue.cancel(ids[0])
    with pytest.raises(NotFound):
        queue.cancel(ids[0])
    d = queue.receive(0)
    with pytest.raises(InvalidState):
        queue.cancel(d.id)
    assert queue.purge() == 3
    s = queue.stats()
    assert (s.ready, s.leased, s.cancelled, s.purged, s.sent) == (0, 1, 1, 3, 5)
    assert s.depth == 1


def test_capacity_full_and_timeout(broker):
    q = broker.queue("cap", max_messages=1, on_full="reject")
    q.send(b"1")
    with pytest.raises(Full):
        q.send(b"2")
    with pytest.raises(Timeout):
        q.send(b"2", on_full="timeout", timeout=0.05)
    import queue as stdqueue
    with pytest.raises(stdqueue.Full):
        q.send(b"3")


def test_namespaces_and_quotas(broker):
    ns = broker.create_namespace("tenant", Quotas(max_queues=1, max_messages=2, max_message_size=10))
    with pytest.raises(AlreadyExists):
        broker.create_namespace("tenant")
    assert broker.get_namespace("tenant").name == "tenant"
    with pytest.raises(NotFound):
        broker.get_namespace("nobody")
    q = ns.queue("a")
    with pytest.raises(QuotaExceeded):
        ns.queue("b")
    with pytest.raises(MessageTooLarge):
        q.send(b"x" * 11)
    q.send(b"1"), q.send(b"2")
    with pytest.raises(QuotaExceeded) as e:
        q.send(b"3")
    assert e.value.status == 7 and e.value.code == "LQ_QUOTA_EXCEEDED" and "max_messages" in str(e.value)
    assert ns.queues() == ["a"] and "tenant" in broker.namespaces()
    st = ns.stats()
    assert st.queues == 1 and st.totals.ready == 2
    # isolation: the default namespace does not see tenant's queue
    assert "a" not in broker.default_namespace.queues()
    with pytest.raises(NotFound):
        broker.default_namespace.get_queue("a")
    ns.delete_queue("a")
    with pytest.raises(Closed):
        q.send(b"after delete")


def test_invalid_names(broker):
    for bad in ["", "x" * 65, "sp ace", "ü"]:
        with pytest.raises(InvalidName):
            broker.queue(bad)
    assert issubclass(InvalidName, ValueError)


def test_topics(broker):
    t = broker.topic("events")
    all_q = t.subscribe("all")
    named = t.subscribe("named", name="deploy")
    ex = t.subscribe("ex7", execution_id="e-7")
    hdr = t.subscribe("hdr", header=("region", "eu"))
    assert t.subscriptions() == ["all", "named", "ex7", "hdr"]
    assert t.publish(b"1", name="deploy") == 2
    assert t.publish(b"2", execution_id="e-7", headers={"region": "eu"}) == 3
    assert [d.body for d in all_q.receive_batch(10, 0)] == [b"1", b"2"]
    assert named.receive(0).body == b"1"
    assert ex.receive(0).body == b"2" and hdr.receive(0).body == b"2"
    t.unsubscribe("all")
    with pytest.raises(NotFound):
        t.unsubscribe("all")
    assert "events" in broker.default_namespace.topics()


def test_flush_and_iteration(broker):
    q = broker.queue("it")
    for i in range(3):
        q.send(str(i))
    q.flush()
    broker.flush()
    got = []
    for d in q:
        got.append(d.body)
        d.ack()
        if len(got) == 3:
            break
    assert got == [b"0", b"1", b"2"]


def test_iteration_ends_when_broker_closes():
    import threading

    b = libqueue.Broker()
    q = b.queue("it")
    q.send(b"a")
    threading.Timer(0.2, b.close).start()
    got = [d.body for d in q]
    assert got == [b"a"]


def test_recovery_report_none_in_memory(broker):
    assert broker.recovery_report is None
