"""Python across processes (issue 14): one producer process hands N 64-byte
items to one consumer process.

- ``multiprocessing.Queue``: the standard library's (a pipe and a feeder
  thread; nothing persists, no acks).
- ``compat.Queue(path)``: libqueue's drop-in for ``queue.Queue`` on one data
  directory, opened in both processes (the benchmark's own process hosts the
  directory; both children attach), non-persistent items... of a persistent
  queue: ``put`` pickles and journals each item (sync none).
- ``Broker(dir)`` batched: ``send_batch``/``receive_batch`` of 64, auto-ack.

Timed from the moment both processes are set up (imported, attached) to
the consumer's last item. Prints items/s and the ratio to ``multiprocessing.Queue``; ``--json PATH``
writes them. Run: ``python benches/python/multiprocess.py [--n 50000]``.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import tempfile
import time
from typing import Any

BODY = b"x" * 64


def mp_producer(q: Any, n: int, ready: Any, go: Any) -> None:
    ready.put(1)
    go.wait()
    for _ in range(n):
        q.put(BODY)
    q.put(None)


def mp_consumer(q: Any, n: int, ready: Any, go: Any, out: Any) -> None:
    ready.put(1)
    go.wait()
    t = time.perf_counter()
    got = 0
    while q.get() is not None:
        got += 1
    out.put((got, time.perf_counter() - t))


def compat_producer(path: str, n: int, ready: Any, go: Any) -> None:
    from libqueue import compat
    q: compat.Queue[bytes] = compat.Queue(path=path, name="bench")
    ready.put(1)
    go.wait()
    for _ in range(n):
        q.put(BODY)


def compat_consumer(path: str, n: int, ready: Any, go: Any, out: Any) -> None:
    from libqueue import compat
    q: compat.Queue[bytes] = compat.Queue(path=path, name="bench")
    ready.put(1)
    go.wait()
    t = time.perf_counter()
    for _ in range(n):
        q.get(timeout=30)
    out.put((n, time.perf_counter() - t))


def broker_producer(path: str, n: int, ready: Any, go: Any) -> None:
    import libqueue
    q = libqueue.Broker(path).queue("batch")
    ready.put(1)
    go.wait()
    left = n
    while left:
        k = min(64, left)
        q.send_batch([BODY] * k)
        left -= k


def broker_consumer(path: str, n: int, ready: Any, go: Any, out: Any) -> None:
    import libqueue
    q = libqueue.Broker(path).queue("batch")
    ready.put(1)
    go.wait()
    t = time.perf_counter()
    got = 0
    while got < n:
        got += len(q.receive_batch(64, timeout=30, auto_ack=True))
    out.put((got, time.perf_counter() - t))


def run(producer: Any, consumer: Any, arg: Any, n: int) -> float:
    out: Any = mp.Queue()
    ready: Any = mp.Queue()
    go = mp.Event()
    c = mp.Process(target=consumer, args=(arg, n, ready, go, out))
    p = mp.Process(target=producer, args=(arg, n, ready, go))
    c.start()
    p.start()
    ready.get(timeout=60)
    ready.get(timeout=60)  # both set up (imported, opened, attached)
    t = time.perf_counter()
    go.set()
    p.join()
    got, _ = out.get(timeout=120)
    c.join()
    elapsed = time.perf_counter() - t
    assert got == n, (got, n)
    return n / elapsed


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=50_000)
    ap.add_argument("--json")
    a = ap.parse_args()
    mp.set_start_method("spawn")
    import libqueue
    results: dict[str, float] = {}
    results["multiprocessing.Queue"] = run(mp_producer, mp_consumer, mp.Queue(), a.n)
    with tempfile.TemporaryDirectory() as d:
        host = libqueue.Broker(d)  # this process hosts; the children attach
        results["compat.Queue(path)"] = run(compat_producer, compat_consumer, d, a.n)
        results["Broker(dir) batch64"] = run(broker_producer, broker_consumer, d, a.n)
        host.close()
    base = results["multiprocessing.Queue"]
    print(f"Python across processes, {a.n} items of 64 B, producer process -> consumer process")
    for k, v in results.items():
        print(f"  {k:<24} {v:>10.0f} items/s  {v / base:5.2f}x multiprocessing.Queue")
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"n": a.n, "items_per_s": results}, f, indent=1)


if __name__ == "__main__":
    main()
