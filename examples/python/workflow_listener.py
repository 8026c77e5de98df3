"""A TripleO-style workflow listener with asyncio: messages carrying a name, an
execution id and data go to the one default queue (through a topic); a listener
subscribes to its own execution id and awaits its messages on the queue's pollable
descriptor — no polling, no thread. When its broker goes away it reconnects.

    python examples/python/workflow_listener.py
"""

import asyncio
import json
import threading
import time

import libqueue

EXECUTION = "e-42"


def engine(broker: libqueue.Broker, stop: threading.Event) -> None:
    """The workflow engine: publishes status messages of two executions."""
    topic = broker.topic("workflows")
    for step in range(5):
        for ex in ("e-41", EXECUTION):
            status = "SUCCESS" if step == 4 else "RUNNING"
            topic.publish(json.dumps({"step": step, "status": status}), name="deploy_plan",
                          execution_id=ex)
        time.sleep(0.02)


async def listen(broker: libqueue.Broker) -> bool:
    """Listens to EXECUTION's messages until it finishes; False if the broker closed."""
    queue = broker.topic("workflows").subscribe(f"listener.{EXECUTION}", execution_id=EXECUTION)
    try:
        async for d in queue:
            data = json.loads(d.body)
            print(f"  {d.name} {d.execution_id}: step {data['step']} {data['status']}")
            d.ack()
            if data["status"] == "SUCCESS":
                return True
    finally:
        queue.close()
    return False


async def main() -> None:
    attempt = 0
    while True:
        attempt += 1
        broker = libqueue.Broker()
        print(f"listener: connected (attempt {attempt})")
        if attempt == 1:  # the first broker goes away mid-way: the listener reconnects
            asyncio.get_running_loop().call_later(0.05, broker.close)
        else:
            threading.Thread(target=engine, args=(broker, threading.Event())).start()
        if attempt == 1:
            broker.topic("workflows").publish(json.dumps({"step": 0, "status": "RUNNING"}),
                                              name="deploy_plan", execution_id=EXECUTION)
        try:
            if await listen(broker):
                print("listener: execution finished")
                broker.close()
                return
        except libqueue.Closed:
            pass
        print("listener: broker closed, reconnecting")
        broker.close()
        await asyncio.sleep(0.05)


if __name__ == "__main__":
    asyncio.run(main())
