"""Handle lifetimes: close() racing every blocking call, children keeping parents
alive, settling after the broker closed, Ctrl-C in every wait, timeouts naming the
caller's duration (issue 13). The racing and crashing cases run in a child
process, so a segfault fails the test instead of killing pytest."""

from __future__ import annotations

import gc
import signal
import subprocess
import sys
import textwrap
import threading
import time

import pytest

import libqueue


def run_child(code: str, timeout: float = 50, **popen: object) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True,
                          text=True, timeout=timeout, **popen)


def check_child(code: str, timeout: float = 50) -> str:
    r = run_child(code, timeout)
    assert r.returncode == 0, f"child exited {r.returncode}\n{r.stdout}\n{r.stderr}"
    return r.stdout


RACE = """
import random, sys, threading, time
import libqueue
from libqueue import compat

ROUNDS = int(sys.argv[1]) if len(sys.argv) > 1 else 25
rng = random.Random(13)
b = libqueue.Broker()
ns = b.namespace("race")

def blocking_calls(i):
    full = ns.queue(f"full{i}", max_messages=1, on_full="block")
    full.send(b"x")
    empty = ns.queue(f"empty{i}")
    rpc = ns.rpc()
    ns.queue("nobody-serves")
    cq = compat.Queue(maxsize=1)
    cq.put(1)
    ce = compat.SimpleQueue()
    topic = ns.topic(f"news{i}")
    topic.subscribe(f"full{i}").close()
    calls = {
        "receive": (empty, lambda: empty.receive()),
        "receive(timeout)": (empty, lambda: empty.receive(timeout=20)),
        "receive_batch": (empty, lambda: empty.receive_batch(8, timeout=20)),
        "iteration": (empty, lambda: [d for d in iter(empty)] and None),
        "send(block)": (full, lambda: full.send(b"y", on_full="block")),
        "send(timeout)": (full, lambda: full.send(b"y", on_full="timeout", timeout=20)),
        "send(headers)": (full, lambda: full.send(b"y", headers={"k": "v"}, on_full="block")),
        "send_batch": (full, lambda: full.send_batch([b"y"])),
        "rpc.call": (rpc, lambda: rpc.call("nobody-serves", b"?", timeout=20)),
        "topic.publish": (topic, lambda: topic.publish(b"news")),
        "compat.get": (ce, lambda: ce.get()),
        "compat.put": (cq, lambda: cq.put(2)),
    }
    return calls

def waiter(fn, out, key):
    t0 = time.monotonic()
    try:
        fn()
        out[key] = ("returned", time.monotonic() - t0)
    except libqueue.Closed:
        out[key] = ("Closed", time.monotonic() - t0)
    except BaseException as e:
        out[key] = (repr(e), time.monotonic() - t0)

for i in range(ROUNDS):
    calls = blocking_calls(i)
    out = {}
    threads = []
    for key, (owner, fn) in calls.items():
        t = threading.Thread(target=waiter, args=(fn, out, key))
        t.start()
        threads.append(t)
    time.sleep(rng.choice([0, 0.001, 0.01, 0.05]))
    for key, (owner, fn) in calls.items():
        owner.close()
    for t in threads:
        t.join(10)
        assert not t.is_alive(), f"round {i}: a waiter was not woken: {out}"
    # iteration ends (returns) when its queue closes; everything else raises Closed
    for key, (what, took) in out.items():
        want = "returned" if key == "iteration" else "Closed"
        assert what == want, f"round {i}: {key}: {what}"
        assert took < 5, f"round {i}: {key} took {took:.2f} s"
    # and the main thread, closed from a timer
    for key, (owner, fn) in blocking_calls(f"m{i}").items():
        threading.Timer(rng.choice([0, 0.02, 0.15]), owner.close).start()
        waiter(fn, out, key)
        want = "returned" if key == "iteration" else "Closed"
        assert out[key][0] == want, f"round {i}, main thread: {key}: {out[key]}"
    # handles used after close raise Closed
    for key, (owner, fn) in calls.items():
        try:
            fn()
        except libqueue.Closed:
            pass
        else:
            assert key == "iteration", key
print("ok", ROUNDS)
"""


def test_close_wakes_every_blocking_call_in_any_thread():
    out = check_child(RACE, timeout=120)
    assert out.startswith("ok")


def test_close_while_a_pool_stops_or_runs_a_handler():
    out = check_child("""
        import threading, time
        import libqueue
        for i in range(10):
            b = libqueue.Broker()
            q = b.queue("work")
            started = threading.Event()
            pool = b.pool("work", size=2)

            @pool.default_handler
            def slow(d):
                started.set()
                time.sleep(0.2)

            pool.start()
            q.send(b"x")
            assert started.wait(5)
            stopper = threading.Thread(target=pool.stop)
            stopper.start()
            time.sleep(0.01 * (i % 3))
            pool.close()      # from another thread while stop() waits in the handle
            stopper.join(5)
            assert not stopper.is_alive()
            assert not pool.running
            pool.close()
            assert pool.stats().handled == 1
            b.close()
        print("ok")
    """)
    assert out.startswith("ok")


def test_compat_fifo_queues_raise_closed_after_close():
    out = check_child("""
        import libqueue
        from libqueue import compat
        for cls in (compat.Queue, compat.SimpleQueue):
            q = cls()
            q.put(0)
            q.close()
            for call in (lambda: q.put(1), lambda: q.get(), lambda: q.get(timeout=1),
                         lambda: q.put_nowait(2), lambda: q.get_nowait()):
                try:
                    call()
                except libqueue.Closed:
                    continue
                raise AssertionError(f"{cls.__name__}: no Closed")
        print("ok")
    """)
    assert out.startswith("ok")


def test_a_child_keeps_its_parent_alive():
    q = libqueue.Broker().queue("jobs")
    gc.collect()
    q.send(b"x")
    assert len(q) == 1
    ns = libqueue.Broker().namespace("n")
    gc.collect()
    t = ns.topic("t")
    sub = t.subscribe("sub")
    del ns, t
    gc.collect()
    assert sub.send(b"y") >= 0
    d = sub.receive(timeout=1)
    del sub
    gc.collect()
    assert d.body == b"y"
    d.ack()
    rpc = libqueue.Broker().rpc()
    gc.collect()
    assert rpc.cast("somewhere", b"z") >= 0
    q.close()
    rpc.close()


def test_iteration_over_a_queue_of_an_unreferenced_broker_sees_its_messages():
    q = libqueue.Broker().queue("jobs")
    q.send(b"a")
    gc.collect()
    it = iter(q)
    assert next(it).body == b"a"


def test_settling_after_the_broker_closed_raises_closed(tmp_path):
    b = libqueue.Broker(tmp_path, sync="always")
    q = b.queue("jobs", persistent=True)
    q.send(b"a")
    q.send(b"b")
    d1 = q.receive(timeout=1)
    d2 = q.receive(timeout=1)
    b.close()
    with pytest.raises(libqueue.Closed):
        d1.ack()
    with pytest.raises(libqueue.Closed):
        d2.body
    with pytest.raises(libqueue.Closed):
        d2.nack()
    d1.close()
    d2.close()
    b = libqueue.Broker(tmp_path, sync="always")
    q = b.queue("jobs", persistent=True)
    got = sorted(q.receive(timeout=1).body for _ in range(2))
    assert got == [b"a", b"b"]
    b.close()


def test_a_delivery_closed_by_another_thread_during_a_read_stays_safe():
    out = check_child("""
        import threading
        import libqueue
        q = libqueue.Broker().queue("h")
        for i in range(300):
            q.send(b"x", headers={f"k{j}": b"v" * 100 for j in range(20)})
            d = q.receive(timeout=1)
            def read():
                try:
                    for _ in range(5):
                        d.headers
                except libqueue.Closed:
                    pass
            t = threading.Thread(target=read)
            t.start()
            d.close()
            t.join()
        print("ok")
    """)
    assert out.startswith("ok")


def test_a_timeout_in_the_main_thread_names_the_callers_duration():
    q = libqueue.Broker().queue("quiet", max_messages=1)
    assert threading.current_thread() is threading.main_thread()
    t0 = time.monotonic()
    with pytest.raises(libqueue.Timeout, match=r"within 0\.35 s"):
        q.receive(timeout=0.35)
    assert time.monotonic() - t0 >= 0.3
    q.send(b"x")
    with pytest.raises(libqueue.Timeout, match=r"within 0\.25 s"):
        q.send(b"y", on_full="timeout", timeout=0.25)
    with pytest.raises(libqueue.Timeout, match=r"within 0\.25 s"):
        q.send(b"y", headers={"a": "b"}, on_full="timeout", timeout=0.25)
    q.close()


CTRL_C = """
import sys, threading, time
import libqueue
b = libqueue.Broker()
ns = b.namespace("n")
what = sys.argv[1]
if what == "send":
    q = ns.queue("full", max_messages=1, on_full="block")
    q.send(b"x")
    wait = lambda: q.send(b"y")
elif what == "send_headers":
    q = ns.queue("full", max_messages=1, on_full="block")
    q.send(b"x")
    wait = lambda: q.send(b"y", headers={"a": "b"})
elif what == "send_batch":
    q = ns.queue("full", max_messages=2, on_full="block")
    q.send(b"x")
    wait = lambda: q.send_batch([b"y", b"z"])
elif what == "receive":
    q = ns.queue("empty")
    wait = lambda: q.receive()
elif what == "receive_batch":
    q = ns.queue("empty")
    wait = lambda: q.receive_batch(4, timeout=30)
elif what == "rpc":
    ns.queue("nobody-serves")
    rpc = ns.rpc()
    wait = lambda: rpc.call("nobody-serves", b"?", timeout=30)
elif what == "pool_stop":
    q = ns.queue("work")
    started = threading.Event()
    pool = ns.pool("work", size=1)
    @pool.default_handler
    def slow(d):
        started.set()
        time.sleep(10)
    pool.start()
    q.send(b"x")
    started.wait(5)
    wait = pool.stop
print("ready", flush=True)
t0 = time.monotonic()
try:
    wait()
except KeyboardInterrupt:
    print("interrupted", round(time.monotonic() - t0, 2), flush=True)
    import os
    os._exit(0)
print("not interrupted", flush=True)
"""


@pytest.mark.parametrize("what", ["send", "send_headers", "send_batch", "receive",
                                  "receive_batch", "rpc", "pool_stop"])
def test_ctrl_c_interrupts_every_wait_in_the_main_thread(what):
    p = subprocess.Popen([sys.executable, "-c", CTRL_C, what], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    try:
        assert p.stdout.readline().strip() == "ready", p.stderr.read()
        time.sleep(0.3)
        p.send_signal(signal.SIGINT)
        out, err = p.communicate(timeout=20)
    finally:
        if p.poll() is None:
            p.kill()
    assert out.startswith("interrupted"), (out, err)
    took = float(out.split()[1])
    assert took < 2.0, f"{what}: Ctrl-C took {took} s"


def test_close_wakes_an_asyncio_receiver():
    import asyncio

    async def main():
        q = libqueue.Broker().queue("aio")
        waiter = asyncio.ensure_future(q.receive_async())
        await asyncio.sleep(0.05)
        threading.Timer(0.05, q.close).start()
        with pytest.raises(libqueue.Closed):
            await asyncio.wait_for(waiter, 5)

    asyncio.run(main())


def test_closing_a_handle_frees_it_only_after_the_call_inside_returns():
    q = libqueue.Broker().queue("x")
    pin = q._pin
    got = []

    def wait():
        try:
            q.receive(timeout=10)
        except libqueue.Closed as e:
            got.append(e)

    t = threading.Thread(target=wait)
    t.start()
    deadline = time.monotonic() + 5
    while pin.busy == 0 and time.monotonic() < deadline:
        time.sleep(0.001)
    assert pin.busy == 1
    q.close()
    t.join(5)
    assert got and isinstance(got[0], libqueue.Closed)
    assert pin.busy == 0 and pin.freed
    with pytest.raises(libqueue.Closed):
        q.send(b"x")
