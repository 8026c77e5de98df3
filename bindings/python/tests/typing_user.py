"""A user script written against the public API, for ``mypy --strict`` (``make
test-python`` runs it over this file and the package, and with ``--disallow-any-expr``
over this file): every type below is inferred from libqueue's annotations and the
``_fast`` stubs, none is ``Any``. test_typing.py also runs it.
"""

from __future__ import annotations

import queue
from datetime import datetime
from typing import Optional

import libqueue
from libqueue import (Broker, Delivery, Message, Pool, QueueOptions, Quotas, RpcClient,
                      Topic, compat)


def body_of(d: Delivery) -> bytes:
    return d.body  # an Any here would fail --strict (warn_return_any)


def id_of(d: Delivery) -> int:
    return d.id


def handle_resize(d: Delivery) -> bytes:
    name: Optional[str] = d.name
    return body_of(d) + str(id_of(d)).encode() + (name or "").encode()


def publish(topic: Topic) -> str:
    sub: libqueue.Queue = topic.subscribe("audit")
    n: int = topic.publish(b"created", name="lb.created")
    return f"published to {n}: {sub.name}"


def serve(pool: Pool) -> Pool:
    return pool.start()


def ask(rpc: RpcClient) -> bytes:
    return rpc.call("rpc", b"x", name="resize", timeout=10.0)


def run() -> list[str]:
    seen: list[str] = []
    with Broker(queue_options=QueueOptions(lease_time=5.0)) as broker:
        q: libqueue.Queue = broker.queue("jobs", max_messages=100, on_full="reject")
        headers: dict[str, bytes | str] = {"k": "v"}
        msg_id: int = q.send(b"hello", headers=headers, name="greet", priority=5)
        ids: list[int] = q.send_batch([b"a", "b", Message(b"c", ttl=60.0)])
        seen.append(f"sent {msg_id} {ids}")
        with q.receive(timeout=1.0) as d:
            text: str = d.text
            hdr: Optional[bytes] = d.header("k")
            seen.append(f"{text} {hdr!r} {d.priority}")
        batch: list[Delivery] = q.receive_batch(3, timeout=1.0)
        for d in batch:
            d.ack()
        maybe: Optional[Delivery] = q.try_receive()
        assert maybe is None
        depth: int = q.stats().depth
        seen.append(f"depth {depth}")

        ns: libqueue.Namespace = broker.create_namespace("tenant", Quotas(max_queues=10))
        seen.append(ns.name)

        topic = broker.topic("events")  # inferred: with --disallow-any-expr no Any passes
        seen.append(publish(topic))

        pool = broker.pool("rpc", size=2)  # inferred: an Any would make the decorator untyped

        @pool.handler("resize")
        def resize(d: Delivery) -> bytes:
            return handle_resize(d)

        with serve(pool):
            rpc = broker.rpc()
            with rpc:
                seen.append(ask(rpc).decode())
        stats: libqueue.PoolStats = pool.stats()
        seen.append(f"handled {stats.handled}")

    fifo: compat.Queue[int] = compat.Queue(maxsize=2)
    fifo.put(1)
    got: int = fifo.get()
    try:
        fifo.get_nowait()
    except compat.Empty:
        seen.append("empty")
    pq: compat.PriorityQueue[tuple[int, str]] = compat.PriorityQueue()
    pq.put((1, "a"))
    first: tuple[int, str] = pq.get()
    fifo.shutdown()
    try:
        fifo.put(2)
    except compat.ShutDown:
        seen.append("shut down")
    assert issubclass(compat.Full, queue.Full)
    seen.append(f"{got} {first}")
    fifo.close()
    pq.close()
    seen.extend(shared_directory())
    return seen


def shared_directory() -> list[str]:
    """Two brokers on one directory: the second attaches (issue 14)."""
    import tempfile

    with tempfile.TemporaryDirectory() as d, Broker(d, exclusive=False) as host, Broker(d) as guest:
        info: libqueue.HostInfo = guest.host_info()
        clients: list[libqueue.ClientInfo] = info.clients
        attached: bool = guest.is_attached
        shared: compat.Queue[str] = compat.Queue(path=d, name="shared")
        shared.put("x")
        if shared.get() == "x":
            shared.task_done()
        shared.join()
        shared.close()
        return [f"host {info.pid == host.host_info().pid} attached {attached} "
                f"clients {len(clients)} takeovers {info.takeovers}"]


def bridge_config() -> libqueue.BridgeBuilder:
    """A bridge configured (started with ``.start(broker)``, which needs a server)."""
    return (libqueue.Bridge.nats("nats://127.0.0.1:4222").stream("ORDERS", ["orders.>"])
            .forward("jobs", "orders.created").receive("orders.in", "inbox", durable="d")
            .window(8).backoff(0.1, 30).connect_in_background())


def bridge_health(broker: Broker) -> str:
    with broker.bridge("nats://127.0.0.1:4222", forward={"jobs": "orders.created"},
                       connect_in_background=True) as bridge:
        s: libqueue.BridgeStats = bridge.stats()
        since: Optional[datetime] = s.error_since
        return f"{s.forwarded} {s.connected} {s.last_error or ''} {since}"


if __name__ == "__main__":
    for line in run():
        print(line)
