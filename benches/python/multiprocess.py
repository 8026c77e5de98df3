"""Python across processes (issue 14) beside its peers: one producer process hands N
64-byte messages to one consumer process, for libqueue and for what its users would
otherwise reach for, in the same run.

Each case starts a consumer and a producer process (spawn), waits until both are set
up (imported, connected/attached, queue declared), then times from "go" until the
producer has every message acknowledged as its peer defines it (returned, confirmed,
PubAck'ed, committed) *and* the consumer has received (and acked, where the peer has
acks) the last one. Cases are run ``--runs`` times, round-robin with a rotating
start (the machine is shared: alternate, quote medians). What each one guarantees is
printed beside it; ratios compare a peer with the libqueue case that guarantees the
same (in memory / survives a process crash / on disk before the ack).

- libqueue ``Broker(dir)``: this process hosts each data directory (as a server
  would be a third process), the producer and consumer attach. Persistent queues
  (``persistent=True``) on a host opened with ``sync="none"`` (the default:
  journaled, in the OS before ``send`` returns; survives a crash of any process, not
  of the machine) or ``sync="always"`` (on disk, fsync'ed, before ``send``
  returns); one ``send`` at a time or ``send_batch`` of 64; also ``sync="none"``
  with ``Broker.flush()`` after every batch (on disk per batch). The consumer
  ``receive``s and ``ack``s each message (an ack from an attached process is one
  round trip to the host), or ``receive_batch(64)``s and acks the batch with one
  ``Queue.ack_batch`` (one round trip). A non-persistent queue,
  received with ``auto_ack`` (at-most-once, as the in-memory peers), for the
  in-memory comparisons.
- libqueue ``compat.Queue(path)``: the ``queue.Queue`` drop-in on a directory
  (items pickled and journaled, sync none; ``put``/``get``).
- ``multiprocessing.Queue`` (pipe + feeder thread, in memory, no acks), one item per
  ``put`` and lists of 64.
- ZeroMQ ``ipc://`` PUSH/PULL (pyzmq; in memory, no acks, nothing persists), one
  frame per message and ``send_multipart`` of 64 frames.
- RabbitMQ (``--rabbit URL``, a private server the Makefile starts): pika
  ``BlockingConnection``, ``confirm_delivery``, persistent messages
  (``delivery_mode=2``) to a durable queue: ``basic_publish`` returns once the
  broker confirmed it (RabbitMQ confirms a persistent message routed to a durable
  queue once it is written to disk). pika's blocking channel waits for each
  confirm; the batched case uses AMQP transactions instead (64 ``basic_publish``
  then ``tx_commit``, which returns once the broker has them on disk: the same
  guarantee per batch). Consumer: prefetch 64, ``basic_ack`` each.
- NATS JetStream (``--nats URL``, ``nats-server -js`` the Makefile starts): nats-py,
  a file-storage work-queue stream; ``js.publish`` awaits the PubAck (one at a time,
  or 64 in flight then all awaited). nats-server 2.9 writes the message to its
  store file before the PubAck and fsyncs every 2 minutes: survives a crash of the
  server, not of the machine. Consumer: pull subscription, ``fetch`` 1 (or 64),
  ``ack`` each.
- persist-queue ``SQLiteQueue(dir, multithreading=True, auto_commit=True)``: SQLite
  in WAL mode with SQLite's default ``synchronous=FULL`` (each commit fsynced);
  ``get`` deletes the row in its commit (no separate ack). Its blocking ``get``
  only wakes on a ``put`` in the same process, else every 10 s, so the consumer
  polls ``get_nowait`` with a 1 ms sleep when empty.
- litequeue ``LiteQueue(file)``: SQLite WAL with ``synchronous=NORMAL`` (commits
  not fsynced; survives a process crash); ``put``, ``pop`` + ``done`` (its ack);
  ``pop`` does not block: the consumer polls with a 1 ms sleep when empty.

``--json PATH`` writes every run. ``--quick``: small N, one run (a smoke test).
Run: ``python benches/python/multiprocess.py [--rabbit URL] [--nats URL]``.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import multiprocessing as mp
import os
import signal
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

BODY = b"x" * 64
BATCH = 64
WAIT = 60.0  # seconds any one wait in a case may take before it fails

MEM = "in memory, no acks: lost if a process dies"
CRASH = "persistent, acked once in the OS: survives a process crash, not power loss"
DISK = "persistent, acked once on disk (fsync)"


# -- the cases' producer and consumer bodies --------------------------------------
# producer(arg, n, batch) -> None    consumer(arg, n, batch) -> received count
# Each is called after its set-up (the returned callable), between "go" and "done".

def mp_setup(arg: Any, role: str, batch: int) -> Callable[[int], int]:
    q = arg["q"]
    if role == "p":
        def produce(n: int) -> int:
            if batch == 1:
                for _ in range(n):
                    q.put(BODY)
            else:
                left = n
                while left:
                    k = min(batch, left)
                    q.put([BODY] * k)
                    left -= k
            return n
        return produce

    def consume(n: int) -> int:
        got = 0
        while got < n:
            item = q.get(timeout=WAIT)
            got += 1 if batch == 1 else len(item)
        return got
    return consume


def zmq_setup(arg: Any, role: str, batch: int) -> Callable[[int], int]:
    import zmq
    ctx = zmq.Context()
    if role == "p":
        s = ctx.socket(zmq.PUSH)
        s.connect(arg["endpoint"])

        def produce(n: int) -> int:
            if batch == 1:
                for _ in range(n):
                    s.send(BODY)
            else:
                left = n
                while left:
                    k = min(batch, left)
                    s.send_multipart([BODY] * k)
                    left -= k
            s.close(linger=int(WAIT * 1000))  # returns once the queued frames left
            ctx.term()
            return n
        return produce
    s = ctx.socket(zmq.PULL)
    s.bind(arg["endpoint"])
    s.setsockopt(zmq.RCVTIMEO, int(WAIT * 1000))

    def consume(n: int) -> int:
        got = 0
        while got < n:
            if batch == 1:
                s.recv()
                got += 1
            else:
                got += len(s.recv_multipart())
        s.close()
        ctx.term()
        return got
    return consume


def lq_setup(arg: Any, role: str, batch: int) -> Callable[[int], int]:
    import libqueue
    b = libqueue.Broker(arg["dir"], sync=arg["sync"])
    assert b.is_attached, "the bench's own process should host the directory"
    q = b.queue(arg["queue"])
    flush = arg.get("flush", False)
    if role == "p":
        def produce(n: int) -> int:
            if batch == 1:
                for _ in range(n):
                    q.send(BODY)
            else:
                left = n
                while left:
                    k = min(batch, left)
                    q.send_batch([BODY] * k)
                    if flush:
                        b.flush()
                    left -= k
            return n
        return produce

    auto = arg.get("auto_ack", False)  # at-most-once: for the peers that have no acks
    ack_batch = getattr(q, "ack_batch", None)

    def consume(n: int) -> int:
        got = 0
        if batch == 1:
            while got < n:
                d = q.receive(timeout=WAIT, auto_ack=auto)
                if not auto:
                    d.ack()
                got += 1
        else:
            while got < n:
                ds = q.receive_batch(batch, timeout=WAIT, auto_ack=auto)
                if not ds:
                    raise TimeoutError("receive_batch: nothing within the wait")
                if auto:
                    pass
                elif ack_batch is not None:  # one call (one round trip) per batch
                    ack_batch(ds)
                else:  # a libqueue without Queue.ack_batch: one ack each
                    for d in ds:
                        d.ack()
                got += len(ds)
        return got
    return consume


def compat_setup(arg: Any, role: str, batch: int) -> Callable[[int], int]:
    from libqueue import compat
    q: compat.Queue[bytes] = compat.Queue(path=arg["dir"], name=arg["queue"])
    if role == "p":
        def produce(n: int) -> int:
            for _ in range(n):
                q.put(BODY)
            return n
        return produce

    def consume(n: int) -> int:
        for _ in range(n):
            q.get(timeout=WAIT)
        return n
    return consume


def rabbit_setup(arg: Any, role: str, batch: int) -> Callable[[int], int]:
    import pika
    conn = pika.BlockingConnection(pika.URLParameters(arg["url"]))
    ch = conn.channel()
    name = arg["queue"]
    if role == "p":
        props = pika.BasicProperties(delivery_mode=pika.DeliveryMode.Persistent)
        if batch == 1:
            ch.confirm_delivery()
        else:
            ch.tx_select()

        def produce(n: int) -> int:
            if batch == 1:
                for _ in range(n):  # returns once confirmed (raises on a nack)
                    ch.basic_publish("", name, BODY, props, mandatory=True)
            else:
                left = n
                while left:
                    k = min(batch, left)
                    for _ in range(k):
                        ch.basic_publish("", name, BODY, props)
                    ch.tx_commit()  # returns once the broker has the 64 on disk
                    left -= k
            conn.close()
            return n
        return produce
    ch.basic_qos(prefetch_count=BATCH)

    def consume(n: int) -> int:
        got = 0
        for method, _props, _body in ch.consume(name, inactivity_timeout=WAIT):
            if method is None:
                raise TimeoutError("RabbitMQ consumer: nothing within the wait")
            ch.basic_ack(method.delivery_tag)
            got += 1
            if got == n:
                break
        ch.cancel()
        conn.close()
        return got
    return consume


def nats_setup(arg: Any, role: str, batch: int) -> Callable[[int], int]:
    import nats
    loop = asyncio.new_event_loop()
    nc = loop.run_until_complete(nats.connect(arg["url"]))
    js = nc.jetstream()
    subj = arg["subject"]
    if role == "p":
        async def produce_async(n: int) -> None:
            if batch == 1:
                for _ in range(n):
                    await js.publish(subj, BODY, timeout=WAIT)  # awaits the PubAck
            else:
                left = n
                while left:
                    k = min(batch, left)
                    await asyncio.gather(*[js.publish(subj, BODY, timeout=WAIT) for _ in range(k)])
                    left -= k
            await nc.close()

        def produce(n: int) -> int:
            loop.run_until_complete(produce_async(n))
            return n
        return produce
    psub = loop.run_until_complete(js.pull_subscribe(subj, durable="c", stream=arg["stream"]))

    async def consume_async(n: int) -> int:
        got = 0
        while got < n:
            msgs = await psub.fetch(batch, timeout=WAIT)
            for m in msgs:
                await m.ack()
            got += len(msgs)
        await nc.close()
        return got

    def consume(n: int) -> int:
        return loop.run_until_complete(consume_async(n))
    return consume


def pq_setup(arg: Any, role: str, batch: int) -> Callable[[int], int]:
    import persistqueue
    q = persistqueue.SQLiteQueue(arg["dir"], multithreading=True, auto_commit=True)
    if role == "p":
        def produce(n: int) -> int:
            for _ in range(n):
                q.put(BODY)
            return n
        return produce

    def consume(n: int) -> int:
        got, deadline = 0, time.monotonic() + WAIT
        while got < n:
            try:
                q.get_nowait()
                got += 1
                deadline = time.monotonic() + WAIT
            except persistqueue.Empty:
                if time.monotonic() > deadline:
                    raise TimeoutError("persist-queue consumer: nothing within the wait")
                time.sleep(0.001)
        return got
    return consume


def litequeue_setup(arg: Any, role: str, batch: int) -> Callable[[int], int]:
    import litequeue
    q = litequeue.LiteQueue(arg["file"])
    body = BODY.decode()  # litequeue stores text
    if role == "p":
        def produce(n: int) -> int:
            for _ in range(n):
                q.put(body)
            return n
        return produce

    def consume(n: int) -> int:
        got, deadline = 0, time.monotonic() + WAIT
        while got < n:
            m = q.pop()
            if m is None:
                if time.monotonic() > deadline:
                    raise TimeoutError("litequeue consumer: nothing within the wait")
                time.sleep(0.001)
                continue
            q.done(m.message_id)
            got += 1
            deadline = time.monotonic() + WAIT
        return got
    return consume


SETUPS: dict[str, Callable[[Any, str, int], Callable[[int], int]]] = {
    "mp": mp_setup, "zmq": zmq_setup, "lq": lq_setup, "compat": compat_setup,
    "rabbit": rabbit_setup, "nats": nats_setup, "pq": pq_setup, "litequeue": litequeue_setup,
}


def child(kind: str, role: str, arg: Any, n: int, batch: int, ready: Any, go: Any, done: Any) -> None:
    try:
        work = SETUPS[kind](arg, role, batch)
        ready.put((role, None))
        if not go.wait(WAIT * 2):
            raise TimeoutError("no go")
        got = work(n)
        done.put((role, got, time.perf_counter(), None))
    except BaseException as e:  # reported to the parent, which fails the case
        try:
            ready.put((role, repr(e)))
        finally:
            done.put((role, 0, time.perf_counter(), f"{type(e).__name__}: {e}"))


# -- the cases ---------------------------------------------------------------------

L = "libqueue Broker(dir)"
mem1, mem64 = f"{L} in memory", f"{L} in memory, batch 64"
none1, none64 = f"{L} sync=none", f"{L} sync=none, batch 64"
alw1, alw64 = f"{L} sync=always", f"{L} sync=always, batch 64"

@dataclass
class Case:
    name: str
    kind: str
    guarantee: str
    batch: int
    slow: bool = False        # runs with --n-disk messages
    ref: Optional[str] = None  # the libqueue case with the same guarantee and batching
    prepare: Optional[Callable[[int], Any]] = None  # run index -> the children's arg
    cleanup: Optional[Callable[[Any], None]] = None
    runs: list[float] = field(default_factory=list)
    error: Optional[str] = None


def run_case(c: Case, arg: Any, n: int) -> float:
    ctx = mp.get_context("spawn")
    ready: Any = ctx.Queue()
    done: Any = ctx.Queue()
    go = ctx.Event()
    if c.kind == "mp":
        arg = {"q": ctx.Queue()}
    procs = [ctx.Process(target=child, args=(c.kind, role, arg, n, c.batch, ready, go, done), daemon=True)
             for role in ("c", "p")]
    for p in procs:
        p.start()
    try:
        for _ in procs:  # both set up (imported, connected, attached, declared)
            role, err = ready.get(timeout=WAIT * 2)
            if err:
                raise RuntimeError(f"{role} set-up failed: {err}")
        t = time.perf_counter()
        go.set()
        end, got = t, {}
        for _ in procs:
            role, k, at, err = done.get(timeout=WAIT * 4)
            if err:
                raise RuntimeError(f"{'producer' if role == 'p' else 'consumer'}: {err}")
            got[role] = k
            end = max(end, time.perf_counter())
        if got.get("c") != n:
            raise RuntimeError(f"consumer got {got.get('c')} of {n}")
        return n / (end - t)
    finally:
        for p in procs:
            p.join(timeout=WAIT)
            if p.is_alive():
                p.kill()
                p.join()


def make_cases(a: Any, tmp: str) -> tuple[list[Case], list[Any]]:
    import libqueue
    hosts: list[Any] = []
    cases: list[Case] = []
    serial = itertools.count()

    # libqueue: one hosted directory per sync mode, kept open by this process.
    dirs = {}
    for sync in ("none", "always"):
        d = os.path.join(tmp, f"lq-{sync}")
        hosts.append(libqueue.Broker(d, sync=sync))
        dirs[sync] = d
    host_of = dict(zip(("none", "always"), hosts))

    def lq_prep(sync: str, persistent: bool, prefix: str, flush: bool = False) -> Callable[[int], Any]:
        def prep(i: int) -> Any:
            name = f"{prefix}-{i}"
            host_of[sync].queue(name, persistent=persistent)  # declared by the host
            return {"dir": dirs[sync], "sync": sync, "queue": name, "flush": flush,
                    "auto_ack": not persistent}
        return prep

    cases += [
        Case(mem1, "lq", MEM + " (a non-persistent queue; receive auto_ack)", 1,
             prepare=lq_prep("none", False, "mem1")),
        Case(mem64, "lq", MEM + " (a non-persistent queue; receive_batch auto_ack)", BATCH,
             prepare=lq_prep("none", False, "mem64")),
        Case(none1, "lq", CRASH, 1, prepare=lq_prep("none", True, "none1")),
        Case(none64, "lq", CRASH, BATCH, prepare=lq_prep("none", True, "none64")),
        Case(alw1, "lq", DISK, 1, slow=True, prepare=lq_prep("always", True, "alw1")),
        Case(alw64, "lq", DISK, BATCH, prepare=lq_prep("always", True, "alw64")),
        Case(f"{L} sync=none + flush() per batch 64", "lq", DISK + " per batch", BATCH,
             prepare=lq_prep("none", True, "flush64", flush=True)),
        Case("libqueue compat.Queue(path)", "compat", CRASH + " (pickled; no acks)", 1,
             prepare=lambda i: {"dir": dirs["none"], "queue": f"compat-{i}"}),
        Case("multiprocessing.Queue", "mp", MEM, 1, ref=mem1),
        Case("multiprocessing.Queue, lists of 64", "mp", MEM, BATCH, ref=mem64),
    ]

    def zmq_prep(i: int) -> Any:
        return {"endpoint": f"ipc://{tmp}/zmq-{i}-{time.monotonic_ns()}.sock"}
    cases += [
        Case("ZeroMQ ipc PUSH/PULL", "zmq", MEM + " (no acks at all)", 1, ref=mem1, prepare=zmq_prep),
        Case("ZeroMQ ipc PUSH/PULL, multipart of 64", "zmq", MEM + " (no acks at all)", BATCH,
             ref=mem64, prepare=zmq_prep),
    ]

    if a.rabbit:
        import pika
        url = a.rabbit.replace("rabbit://", "amqp://", 1)

        def rabbit_prep(i: int) -> Any:
            name = f"lqbench-{i}-{next(serial)}"
            with pika.BlockingConnection(pika.URLParameters(url)) as conn:
                ch = conn.channel()
                ch.queue_delete(name)
                ch.queue_declare(name, durable=True)
            return {"url": url, "queue": name}

        def rabbit_clean(arg: Any) -> None:
            with pika.BlockingConnection(pika.URLParameters(url)) as conn:
                conn.channel().queue_delete(arg["queue"])
        cases.append(Case("RabbitMQ, publisher confirms", "rabbit",
                          DISK + " (persistent msgs, durable queue, confirm per publish; manual acks)",
                          1, slow=True, ref=alw1, prepare=rabbit_prep, cleanup=rabbit_clean))
        cases.append(Case("RabbitMQ, transactions of 64", "rabbit",
                          DISK + " per batch (persistent msgs, durable queue, tx_commit per 64; manual acks)",
                          BATCH, ref=alw64, prepare=rabbit_prep, cleanup=rabbit_clean))

    if a.nats:
        import nats
        from nats.js.api import RetentionPolicy, StorageType

        async def stream(op: str, name: str) -> None:
            nc = await nats.connect(a.nats)
            js = nc.jetstream()
            if op == "add":
                try:
                    await js.delete_stream(name)
                except Exception:
                    pass
                await js.add_stream(name=name, subjects=[f"{name}.m"], storage=StorageType.FILE,
                                    retention=RetentionPolicy.WORK_QUEUE)
            else:
                await js.delete_stream(name)
            await nc.close()

        def nats_prep(i: int) -> Any:
            name = f"LQBENCH{i}X{next(serial)}"
            asyncio.run(stream("add", name))
            return {"url": a.nats, "stream": name, "subject": f"{name}.m"}

        def nats_clean(arg: Any) -> None:
            asyncio.run(stream("del", arg["stream"]))
        jsg = (CRASH + " (file store, work queue, PubAck per publish, fsync every 2 min; acks)")
        cases += [
            Case("NATS JetStream, PubAck", "nats", jsg, 1, ref=none1, prepare=nats_prep, cleanup=nats_clean),
            Case("NATS JetStream, PubAck, 64 in flight", "nats", jsg, BATCH, ref=none64,
                 prepare=nats_prep, cleanup=nats_clean),
        ]

    def pq_prep(i: int) -> Any:
        import persistqueue
        d = os.path.join(tmp, f"pq-{i}")
        persistqueue.SQLiteQueue(d, multithreading=True, auto_commit=True).close()  # the schema
        return {"dir": d}

    def lite_prep(i: int) -> Any:
        import litequeue
        f = os.path.join(tmp, f"litequeue-{i}.db")
        litequeue.LiteQueue(f).close()  # the schema
        return {"file": f}
    cases += [
        Case("persist-queue SQLiteQueue", "pq", DISK + " (SQLite WAL, synchronous=FULL; get deletes, no ack)",
             1, slow=True, ref=alw1, prepare=pq_prep),
        Case("litequeue", "litequeue", CRASH + " (SQLite WAL, synchronous=NORMAL; pop + done)",
             1, slow=True, ref=none1, prepare=lite_prep),
    ]
    return cases, hosts


def median(c: Case) -> Optional[float]:
    return statistics.median(c.runs) if c.runs else None


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=20_000, help="messages per case")
    ap.add_argument("--n-disk", type=int, default=2_000,
                    help="messages for the cases that fsync each message or use SQLite")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--rabbit", help="RabbitMQ URL (rabbit:// or amqp://); its case is skipped without")
    ap.add_argument("--nats", help="NATS URL of a JetStream-enabled server; skipped without")
    ap.add_argument("--only", help="run only the cases whose name contains this")
    ap.add_argument("--quick", action="store_true", help="smoke run: --n 1000 --n-disk 200 --runs 1")
    ap.add_argument("--json")
    a = ap.parse_args()
    if a.quick:
        a.n, a.n_disk, a.runs = 1000, 200, 1
    mp.set_start_method("spawn")
    # SIGTERM/SIGHUP (make's trap, a timeout) unwind like Ctrl-C: the hosts close, the
    # temp dir goes, the children (daemons) are killed.
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, lambda s, f: sys.exit(128 + s))
    started = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())
    load0 = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="lq-peers.") as tmp:
        cases, hosts = make_cases(a, tmp)
        if a.only:
            cases = [c for c in cases if a.only in c.name]
        try:
            for r in range(a.runs):
                k = (r * 5) % len(cases)  # rotate the order from run to run
                for c in cases[k:] + cases[:k]:
                    if c.error:
                        continue
                    arg = c.prepare(r) if c.prepare else None
                    try:
                        v = run_case(c, arg, a.n_disk if c.slow else a.n)
                        c.runs.append(v)
                        print(f"  run {r + 1}/{a.runs} {c.name:<52} {v:>11,.0f} msg/s", flush=True)
                    except Exception as e:
                        c.error = f"{type(e).__name__}: {e}"
                        print(f"  run {r + 1}/{a.runs} {c.name}: FAILED {c.error}", file=sys.stderr, flush=True)
                    finally:
                        if c.cleanup and arg is not None:
                            try:
                                c.cleanup(arg)
                            except Exception as e:
                                print(f"  cleanup of {c.name}: {e}", file=sys.stderr)
        finally:
            for h in hosts:
                h.close()
    load1 = os.getloadavg()

    by = {c.name: c for c in cases}
    print(f"\nAcross processes: 1 producer process -> 1 consumer process, 64 B, "
          f"N = {a.n} ({a.n_disk} for the fsync-per-message and SQLite cases), "
          f"median of {a.runs} run(s); load average {load0[0]:.1f} -> {load1[0]:.1f}")
    print(f"{'case':<52} {'msg/s':>11} {'libqueue x':>10}  guarantee")
    for c in cases:
        m = median(c)
        if m is None:
            print(f"{c.name:<52} {'FAILED':>11} {'':>10}  {c.error}")
            continue
        ref = by.get(c.ref) if c.ref else None
        rm = median(ref) if ref else None
        ratio = f"{rm / m:9.1f}x" if rm else ""
        spread = f" ({min(c.runs):,.0f}-{max(c.runs):,.0f})" if len(c.runs) > 1 else ""
        print(f"{c.name:<52} {m:>11,.0f} {ratio:>10}  {c.guarantee}{spread}")
    print("  libqueue x: the libqueue case with the same guarantee and batching, divided by the peer's figure:")
    for c in cases:
        if c.ref:
            print(f"    {c.name} <- {c.ref}")

    targets: list[dict[str, Any]] = []

    def target(label: str, ours: str, theirs: str, need: float) -> None:
        mo, mt = (median(by[ours]) if ours in by else None), (median(by[theirs]) if theirs in by else None)
        if mo is None or mt is None:
            targets.append({"target": label, "ours": ours, "peer": theirs, "need": need, "met": None})
            print(f"  [not measured] {label}: {ours} vs {theirs}")
            return
        x = mo / mt
        targets.append({"target": label, "ours": ours, "peer": theirs, "need": need, "ratio": x, "met": x >= need})
        print(f"  [{'met' if x >= need else 'NOT met'}] {label}: {ours} {mo:,.0f} / {theirs} {mt:,.0f} = {x:.2f}x (need {need:g}x)")

    print("\nIssue 14's targets (Python, this machine):")
    py = "Python across processes >= 3x multiprocessing.Queue"
    target(py, mem1, "multiprocessing.Queue", 3)
    target(py, mem64, "multiprocessing.Queue, lists of 64", 3)
    target(py, "libqueue compat.Queue(path)", "multiprocessing.Queue", 3)
    pers = "persistent across processes >= 10x RabbitMQ/JetStream with confirms"
    target(pers, alw1, "RabbitMQ, publisher confirms", 10)
    target(pers, alw64, "RabbitMQ, transactions of 64", 10)
    target(pers, none1, "NATS JetStream, PubAck", 10)
    target(pers, none64, "NATS JetStream, PubAck, 64 in flight", 10)
    sq = "persistent across processes >= 100x the SQLite queues"
    target(sq, alw1, "persist-queue SQLiteQueue", 100)
    target(sq, none1, "litequeue", 100)

    if a.json:
        with open(a.json, "w") as f:
            json.dump({
                "bench": "python_multiprocess_peers", "started": started, "n": a.n, "n_disk": a.n_disk,
                "runs": a.runs, "body_bytes": len(BODY), "loadavg_before": load0, "loadavg_after": load1,
                "python": sys.version.split()[0],
                "cases": [{"name": c.name, "guarantee": c.guarantee, "batch": c.batch,
                           "n": a.n_disk if c.slow else a.n, "msg_per_s_runs": c.runs,
                           "msg_per_s_median": median(c), "libqueue_ref": c.ref,
                           "libqueue_ratio": (median(by[c.ref]) / median(c)  # type: ignore[operator]
                                              if c.ref and c.ref in by and median(by[c.ref]) and median(c) else None),
                           "error": c.error} for c in cases],
                "targets": targets,
            }, f, indent=1)
    if any(c.error for c in cases):
        sys.exit(1)


if __name__ == "__main__":
    main()
