"""A worker that is killed (SIGKILL) and restarted without losing a message.

    python examples/python/persistent_worker.py            # runs the whole demo

The parent sends 1000 numbered jobs to a persistent queue and starts a worker
process; the worker acks each job only once it is done (its result appended to a
file). It is killed at a random moment and restarted four times, then left to finish.
At-least-once: a job running when the worker died is done again, so the check is
that every job has a result (none lost), and the journal holds nothing afterwards.
"""

import os
import random
import signal
import subprocess
import sys
import tempfile
import time

import libqueue

JOBS = 1000


def worker(data_dir: str, results: str) -> None:
    with libqueue.Broker(data_dir) as broker, open(results, "a") as out:
        q = broker.queue("jobs")
        print(f"worker {os.getpid()}: recovered {broker.recovery_report.messages_recovered} jobs",
              flush=True)
        while True:
            try:
                d = q.receive(0)
            except libqueue.Empty:
                return
            out.write(d.text + "\n")
            out.flush()
            time.sleep(0.0005)  # the work
            d.ack()


def main() -> None:
    if len(sys.argv) == 4 and sys.argv[1] == "--worker":
        return worker(sys.argv[2], sys.argv[3])
    tmp = tempfile.mkdtemp(prefix="lq-worker-")
    data_dir, results = os.path.join(tmp, "data"), os.path.join(tmp, "results")
    with libqueue.Broker(data_dir) as broker:
        broker.queue("jobs", persistent=True).send_batch([str(i) for i in range(JOBS)])
    kills = 0
    while True:
        p = subprocess.Popen([sys.executable, __file__, "--worker", data_dir, results])
        try:
            p.wait(timeout=random.uniform(0.15, 0.4) if kills < 4 else 120)
            break  # finished: the queue stayed empty
        except subprocess.TimeoutExpired:
            p.send_signal(signal.SIGKILL)
            p.wait()
            kills += 1
            print(f"parent: killed worker {p.pid} (kill {kills})", flush=True)
    done = set(open(results).read().split())
    with libqueue.Broker(data_dir) as broker:
        left = broker.queue("jobs").stats().depth
    print(f"parent: {len(done)} of {JOBS} jobs done after {kills} kills; {left} left in the queue")
    assert done == {str(i) for i in range(JOBS)} and left == 0


if __name__ == "__main__":
    main()
