"""Arguments are checked at the Python boundary (issue 13, item 14): a wrong type is a
TypeError naming the argument, an out-of-range value a ValueError; nothing is coerced."""

import array
import tracemalloc

import pytest

import libqueue
from libqueue import InvalidArgument, Message, QueueOptions, Quotas


def _assert_nothing_sent(q):
    assert q.try_receive() is None


@pytest.mark.parametrize("body", [123, 10**9, [104, 105], (1, 2), 3.5, None, object()])
def test_send_non_bytes_body_is_a_type_error(queue, body):
    with pytest.raises(TypeError, match="body"):
        queue.send(body)
    with pytest.raises(TypeError, match="body"):
        queue.send(body, name="n")  # the path with options
    with pytest.raises(TypeError, match="body"):
        queue.send(body, on_full="reject")  # the plain path with a policy
    with pytest.raises(TypeError, match="body"):
        queue.send_batch([b"ok", body])
    _assert_nothing_sent(queue)


def test_send_huge_int_allocates_nothing(queue):
    tracemalloc.start()
    try:
        with pytest.raises(TypeError):
            queue.send(10**9)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 1 << 20  # bytes(10**9) would be a 1 GB allocation


@pytest.mark.parametrize("body, expected", [
    (b"hi", b"hi"), (bytearray(b"hi"), b"hi"), (memoryview(b"xhiy")[1:3], b"hi"),
    ("hé", "hé".encode()), (array.array("B", [104, 105]), b"hi"),
])
def test_bytes_like_and_str_bodies(queue, body, expected):
    queue.send(body)
    queue.send(body, name="n")
    for _ in range(2):
        with queue.receive(timeout=1) as d:
            assert d.body == expected


@pytest.mark.parametrize("headers, what", [
    ({"k": 3}, "header 'k'"),
    ({7: b"v"}, "header key"),
    ({"k": [1]}, "header 'k'"),
    ([("k", b"v")], "headers"),
    ("k=v", "headers"),
])
def test_bad_headers_are_type_errors(queue, headers, what):
    with pytest.raises(TypeError, match=what):
        queue.send(b"x", headers=headers)
    _assert_nothing_sent(queue)


@pytest.mark.parametrize("kw, what", [
    ({"name": 5}, "name"), ({"correlation_id": b"c"}, "correlation_id"),
    ({"execution_id": 9}, "execution_id"), ({"priority": "1"}, "priority"),
    ({"priority": 1.5}, "priority"), ({"ttl": "1"}, "ttl"), ({"delay": [1]}, "delay"),
    ({"persistent": "no"}, "persistent"), ({"on_full": 1}, "on_full"),
    ({"on_full": "timeout", "timeout": "1"}, "timeout"),
])
def test_bad_option_types_are_type_errors(queue, kw, what):
    with pytest.raises(TypeError, match=what):
        queue.send(b"x", **kw)
    _assert_nothing_sent(queue)


@pytest.mark.parametrize("kw, what", [
    ({"ttl": -1}, "ttl"), ({"delay": -0.5}, "delay"), ({"ttl": float("nan")}, "ttl"),
    ({"on_full": "timeout", "timeout": -1}, "timeout"), ({"timeout": -1}, "timeout"),
])
def test_negative_durations_are_value_errors(queue, kw, what):
    with pytest.raises(ValueError, match=what):
        queue.send(b"x", **kw)
    _assert_nothing_sent(queue)


def test_negative_timeouts_are_value_errors(broker, queue):
    for call in (lambda: queue.receive(timeout=-1), lambda: queue.receive_batch(4, timeout=-1)):
        with pytest.raises(ValueError, match="timeout"):
            call()
    queue.send(b"x")
    with pytest.raises(ValueError, match="delay"):
        with queue.receive(timeout=1) as d:
            d.nack(delay=-1)
    with queue.receive(timeout=1) as d:  # the failed nack left it leased: nacked by with
        with pytest.raises(ValueError, match="seconds"):
            d.extend(-2)
        assert d.body == b"x"
    with broker.rpc() as rpc:
        with pytest.raises(ValueError, match="timeout"):
            rpc.call("t", b"x", timeout=-1)


def test_on_full_unknown_lists_the_choices(broker, queue):
    with pytest.raises(ValueError, match="'block', 'reject', 'timeout'.*'drop'"):
        queue.send(b"x", on_full="drop")
    with pytest.raises(ValueError, match="'block', 'reject', 'timeout'.*'drop'"):
        queue.send(b"x", name="n", on_full="drop")
    with pytest.raises(ValueError, match="'block', 'reject', 'timeout'"):
        broker.queue("o", on_full="drop")
    _assert_nothing_sent(queue)


@pytest.mark.parametrize("p", [-1, 10, 256, 1000])
def test_priority_out_of_range_same_exception_both_ends(queue, p):
    with pytest.raises(InvalidArgument) as e:
        queue.send(b"x", priority=p)
    assert type(e.value) is InvalidArgument and isinstance(e.value, ValueError)
    with pytest.raises(InvalidArgument):
        queue.send_batch([Message(b"x", priority=p)])
    _assert_nothing_sent(queue)


def test_priority_bounds_accepted(queue):
    queue.send(b"lo", priority=0)
    queue.send(b"hi", priority=9)
    assert [d.priority for d in queue.receive_batch(2, timeout=1)] == [9, 0]


@pytest.mark.parametrize("name", [5, b"jobs", None, ["q"]])
def test_names_must_be_str(broker, name):
    with pytest.raises(TypeError, match="name"):
        broker.queue(name)
    with pytest.raises(TypeError, match="name"):
        broker.namespace(name)
    with pytest.raises(TypeError, match="name"):
        broker.topic(name)
    assert broker.default_namespace.queues() == []


@pytest.mark.parametrize("field", ["max_messages", "max_bytes", "max_deliveries", "shards"])
def test_negative_queue_capacities_are_value_errors(broker, field):
    with pytest.raises(ValueError, match=field):
        broker.queue("c", **{field: -1})
    with pytest.raises(TypeError, match=field):
        broker.queue("c", **{field: "10"})
    assert "c" not in broker.default_namespace.queues()


@pytest.mark.parametrize("field", ["default_ttl", "default_delay", "lease_time", "full_timeout"])
def test_negative_queue_durations_are_value_errors(broker, field):
    kw = {field: -1}
    if field == "full_timeout":
        kw["on_full"] = "timeout"
    with pytest.raises(ValueError, match=field):
        broker.queue("c", **kw)


def test_queue_option_priority_and_flags(broker):
    with pytest.raises(InvalidArgument):
        broker.queue("c", default_priority=10)
    with pytest.raises(InvalidArgument):
        broker.queue("c", default_priority=-1)
    with pytest.raises(TypeError, match="strict_fifo"):
        broker.queue("c", strict_fifo=1)
    with pytest.raises(ValueError, match="full_timeout"):
        broker.queue("c", full_timeout=1.0)  # would be ignored without on_full="timeout"


@pytest.mark.parametrize("field", ["max_queues", "max_messages", "max_bytes", "max_message_size"])
def test_negative_quotas_are_value_errors(broker, field):
    with pytest.raises(ValueError, match=field):
        broker.create_namespace("t1", Quotas(**{field: -5}))
    with pytest.raises(ValueError, match=field):
        libqueue.Broker(quotas=Quotas(**{field: -5}))
    assert "t1" not in broker.namespaces()


def test_broker_arguments():
    with pytest.raises(ValueError, match="segment_size"):
        libqueue.Broker(segment_size=-1)
    with pytest.raises(ValueError, match="sync_interval"):
        libqueue.Broker(sync="interval", sync_interval=-1)
    with pytest.raises(ValueError, match="sync"):
        libqueue.Broker(sync="sometimes")
    with pytest.raises(TypeError, match="sync"):
        libqueue.Broker(sync=2)
    with pytest.raises(TypeError, match="data_dir"):
        libqueue.Broker(5)
    with pytest.raises(TypeError, match="queue_options"):
        libqueue.Broker(queue_options={"max_messages": 1})


def test_counts_and_ids(queue):
    with pytest.raises(ValueError, match="max"):
        queue.peek(-1)
    with pytest.raises(ValueError, match="max"):
        queue.receive_batch(-1)
    with pytest.raises(TypeError, match="id"):
        queue.cancel("1")
    with pytest.raises(ValueError, match="id"):
        queue.cancel(-1)


def test_pool_arguments(broker):
    with pytest.raises(ValueError, match="size"):
        broker.pool("p", size=-1)
    with pytest.raises(ValueError, match="size"):
        broker.pool("p", size=0)
    with pytest.raises(ValueError, match="backoff"):
        broker.pool("p", backoff=(-1.0, 1.0))
    with pytest.raises(TypeError, match="queue"):
        broker.pool(3)
    pool = broker.pool("p")
    with pytest.raises(TypeError, match="name"):
        pool.add_handler(5, lambda d: None)
    with pytest.raises(TypeError, match="callable"):
        pool.add_handler("n", "not a function")


def test_topic_and_delivery_arguments(broker, queue):
    t = broker.topic("events")
    with pytest.raises(TypeError, match="queue"):
        t.subscribe(5)
    with pytest.raises(TypeError, match="header"):
        t.subscribe("s", header=("k", 5))
    with pytest.raises(TypeError, match="options"):
        t.publish(Message(b"x"), name="n")
    with pytest.raises(TypeError, match="Message"):
        queue.send(Message(b"x"), name="n")
    queue.send(b"x", headers={"k": "v"})
    with queue.receive(timeout=1) as d:
        with pytest.raises(TypeError, match="key"):
            d.header(b"k")
        assert d.header("k") == b"v"
