"""Several worker processes on one data directory (docs/multi-process.md).

    python examples/python/multiprocess.py [DIR]

This process opens DIR first and so *hosts* it; four ``multiprocessing`` workers
open the same DIR and *attach* — no server to start, nothing to configure. The
parent sends 2,000 persistent jobs; the workers receive them (leased), send a
result each and ack (a job a worker held when it died would come back to the
queue at once); the parent collects every result exactly once. Then the same with
``compat.Queue(path=DIR)``, the drop-in for ``queue.Queue``: the queue object itself
goes to the workers, and ``join()`` here waits for their ``task_done()``.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import sys
import tempfile

import libqueue
from libqueue import compat

JOBS, WORKERS = 2000, 4


def worker(data_dir: str) -> None:
    with libqueue.Broker(data_dir) as broker:  # attaches to the parent
        jobs, results = broker.queue("jobs"), broker.queue("results")
        while True:
            with jobs.receive(timeout=30) as d:  # acked when the block ends
                if d.body == b"stop":
                    return
                n = int(d.body)
                results.send(f"{n} {n * n} {os.getpid()}".encode())


def compat_worker(q: compat.Queue[int | None], done: compat.Queue[int]) -> None:
    while (n := q.get(timeout=30)) is not None:
        done.put(n * n)
        q.task_done()
    q.task_done()


def main(data_dir: str) -> None:
    with libqueue.Broker(data_dir) as broker:
        print(f"process {os.getpid()} hosts {data_dir} (attached: {broker.is_attached})")
        # Persistent: in the journal, they survive any process being killed.
        jobs = broker.queue("jobs", persistent=True)
        results = broker.queue("results", persistent=True)
        procs = [mp.Process(target=worker, args=(data_dir,)) for _ in range(WORKERS)]
        for p in procs:
            p.start()
        jobs.send_batch([str(i).encode() for i in range(JOBS)])
        squares, by_worker = {}, {}
        for _ in range(JOBS):
            with results.receive(timeout=30) as d:
                n, sq, pid = (int(x) for x in d.body.split())
                squares[n] = sq
                by_worker[pid] = by_worker.get(pid, 0) + 1
        info = broker.host_info()
        print(f"attached now: {[c.pid for c in info.clients]} (host {info.pid})")
        for _ in procs:
            jobs.send(b"stop")
        for p in procs:
            p.join(30)
        assert squares == {n: n * n for n in range(JOBS)}, "a job lost or done twice"
        print(f"{JOBS} jobs done exactly once by {len(by_worker)} processes: "
              f"{sorted(by_worker.values())}")

    # The same with the queue.Queue drop-in (this process hosts the directory again).
    with compat.Queue(path=data_dir, name="numbers") as q, \
            compat.Queue(path=data_dir, name="squares") as done:
        procs = [mp.Process(target=compat_worker, args=(q, done)) for _ in range(WORKERS)]
        for p in procs:
            p.start()
        for n in range(JOBS):
            q.put(n)
        q.join()  # every number taken and marked done, in the worker processes
        total = sum(done.get_nowait() for _ in range(JOBS))
        for _ in procs:
            q.put(None)
        for p in procs:
            p.join(30)
        assert total == sum(n * n for n in range(JOBS))
        print(f"compat.Queue: {JOBS} items through {WORKERS} processes, join() returned, "
              f"sum of squares {total}")


if __name__ == "__main__":
    if len(sys.argv) > 1:
        main(sys.argv[1])
    else:
        with tempfile.TemporaryDirectory(prefix="lq-multiprocess-") as d:
            main(d)
