"""The Octavia queue consumer on libqueue: one handler per method, a pool size that
throttles how many run at once (the seed's RPC_THREAD_POOL_SIZE).

    python examples/python/octavia_consumer.py            # pool of 4
    python examples/python/octavia_consumer.py 8          # pool of 8
"""

import json
import sys
import threading
import time

import libqueue

METHODS = [f"{verb}_{obj}" for obj in ("load_balancer", "listener", "pool", "member",
                                       "health_monitor") for verb in ("create", "update", "delete")]
assert len(METHODS) == 15


def main() -> None:
    size = int(sys.argv[1]) if len(sys.argv) > 1 else 4
    total = int(sys.argv[2]) if len(sys.argv) > 2 else 600
    counts = {m: 0 for m in METHODS}
    lock = threading.Lock()
    running = [0, 0]  # now, most at once

    with libqueue.Broker() as broker:
        ns = broker.namespace("octavia")
        ns.queue("octavia-controller", max_deliveries=3, dead_letter_queue="octavia-controller.dlq")
        pool = ns.pool("octavia-controller", size=size, backoff=(0.01, 0.1))

        def make_handler(method: str):
            @pool.handler(method)
            def handle(d: libqueue.Delivery) -> None:
                req = json.loads(d.body)
                with lock:
                    running[0] += 1
                    running[1] = max(running[1], running[0])
                time.sleep(0.001)  # the controller's work on req["id"]
                with lock:
                    running[0] -= 1
                    counts[method] += 1
            return handle

        for m in METHODS:
            make_handler(m)

        q = ns.queue("octavia-controller")
        with pool:
            print(f"controller: pool of {size} with {len(METHODS)} handlers")
            for i in range(total):
                m = METHODS[i % 15]
                q.send(json.dumps({"id": f"obj-{i}"}), name=m)
            while pool.stats().handled < total:
                time.sleep(0.01)
        st = pool.stats()
    print(f"handled {st.handled} ({st.succeeded} ok, {st.failed} failed); "
          f"most at once: {running[1]} (pool size {size}, engine says {st.max_active})")
    for m in METHODS:
        print(f"  {m:24} {counts[m]}")
    assert running[1] <= size and st.handled == total


if __name__ == "__main__":
    main()
