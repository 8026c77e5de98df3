"""libqueue from Python beside queue.Queue and the persistent queues Python users reach for.

Same work for everyone: N messages (64 B, then 4 KiB bodies) from one producer thread
to one consumer thread; the consumer takes each message (and acks / task_done where
the library has it). In memory: libqueue (Queue.send / receive, and libqueue.compat)
vs queue.Queue. Persistent (a journal or file on local disk, each library's default
durability): libqueue vs persist-queue (file Queue, SQLiteQueue), queuelib's
FifoDiskQueue and litequeue. Throughput in messages/s, and the ratio to the reference
(queue.Queue in memory, persist-queue's file Queue persistent).

Run with ``make bench-python`` (a venv with the peers installed for the benchmark only).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import tempfile
import threading
import time
from typing import Callable

import libqueue
from libqueue import compat

SIZES = [64, 4096]


def run_pair(n: int, body: bytes, put: Callable, get: Callable) -> float:
    """msg/s for one producer thread putting n bodies and one consumer getting n."""
    def produce():
        for _ in range(n):
            put(body)

    def consume():
        for _ in range(n):
            get()

    p, c = threading.Thread(target=produce), threading.Thread(target=consume)
    t = time.perf_counter()
    c.start()
    p.start()
    p.join()
    c.join()
    return n / (time.perf_counter() - t)


def spin_get(pop: Callable, empty=None) -> Callable:
    def get():
        while True:
            x = pop()
            if x is not empty:
                return x
            time.sleep(0.00005)
    return get


# -- in memory ------------------------------------------------------------------

def b_stdlib(n, body, _d):
    import queue
    q = queue.Queue()
    return run_pair(n, body, q.put, q.get)


def b_libqueue_mem(n, body, _d):
    with libqueue.Broker() as b, b.queue("bench") as q:
        def get():
            return q.receive(auto_ack=True).body
        return run_pair(n, body, q.send, get)


def b_libqueue_mem_ack(n, body, _d):
    with libqueue.Broker() as b, b.queue("bench") as q:
        def get():
            d = q.receive()
            d.body
            d.ack()
        return run_pair(n, body, q.send, get)


def b_compat_mem(n, body, _d):
    with compat.Queue() as q:
        return run_pair(n, body, q.put, q.get)


# -- persistent -------------------------------------------------------------------

def b_libqueue_disk(n, body, d):
    with libqueue.Broker(d) as b, b.queue("bench", persistent=True) as q:
        def get():
            x = q.receive()
            x.body
            x.ack()
        return run_pair(n, body, q.send, get)


def b_compat_disk(n, body, d):
    with compat.Queue(path=d) as q:
        def get():
            q.get()
            q.task_done()
        return run_pair(n, body, q.put, get)


def b_persistqueue_file(n, body, d):
    import persistqueue
    q = persistqueue.Queue(d)

    def get():
        q.get()
        q.task_done()
    return run_pair(n, body, q.put, get)


def b_persistqueue_sqlite(n, body, d):
    import persistqueue
    q = persistqueue.SQLiteQueue(d, auto_commit=True, multithreading=True)
    return run_pair(n, body, q.put, q.get)


def b_queuelib(n, body, d):
    from queuelib import FifoDiskQueue
    q = FifoDiskQueue(os.path.join(d, "q"))
    lock = threading.Lock()  # FifoDiskQueue is not thread-safe

    def put(x):
        with lock:
            q.push(x)

    def pop():
        with lock:
            return q.pop()
    r = run_pair(n, body, put, spin_get(pop))
    q.close()
    return r


def b_litequeue(n, body, d):
    from litequeue import LiteQueue
    q = LiteQueue(os.path.join(d, "q.db"))

    def pop():
        m = q.pop()
        if m is None:
            return None
        q.done(m.message_id)
        return m
    return run_pair(n, body.decode("latin-1"), q.put, spin_get(pop))


MEMORY = [("queue.Queue (stdlib)", b_stdlib), ("libqueue Queue auto-ack", b_libqueue_mem),
          ("libqueue Queue receive+ack", b_libqueue_mem_ack), ("libqueue.compat.Queue", b_compat_mem)]
DISK = [("persist-queue file Queue", b_persistqueue_file),
        ("persist-queue SQLiteQueue", b_persistqueue_sqlite),
        ("queuelib FifoDiskQueue", b_queuelib), ("litequeue", b_litequeue),
        ("libqueue persistent receive+ack", b_libqueue_disk),
        ("libqueue.compat.Queue(path=)", b_compat_disk)]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=100_000, help="messages in memory")
    ap.add_argument("--n-disk", type=int, default=10_000, help="messages when persistent")
    ap.add_argument("--json", help="write the results here")
    args = ap.parse_args()
    rows = []
    for group, benches, n in (("memory", MEMORY, args.n), ("persistent", DISK, args.n_disk)):
        for size in SIZES:
            body = os.urandom(size // 2).hex().encode()
            ref = None
            for name, fn in benches:
                d = tempfile.mkdtemp(prefix="lqbench-")
                try:
                    rate = fn(n, body, d)
                except ImportError as e:
                    print(f"  skipped {name}: {e}")
                    continue
                finally:
                    shutil.rmtree(d, ignore_errors=True)
                ref = ref or rate
                rows.append({"group": group, "size": size, "name": name, "n": n,
                             "msgs_per_s": round(rate), "ratio": round(rate / ref, 2)})
                print(f"{group:10} {size:>5} B  {name:34} {rate:>12,.0f} msg/s  {rate / ref:6.2f}x",
                      flush=True)
    if args.json:
        os.makedirs(os.path.dirname(args.json) or ".", exist_ok=True)
        with open(args.json, "w") as f:
            json.dump({"python": platform.python_version(), "machine": platform.machine(),
                       "cpus": os.cpu_count(), "library": libqueue.LIBRARY_VERSION,
                       "results": rows}, f, indent=1)


if __name__ == "__main__":
    main()
