"""Timers run on time whether or not anyone touches the queue (issue 13, item 7)."""

import time

import libqueue


def test_expired_lease_dead_letters_to_a_blocked_receiver():
    with libqueue.Broker() as b:
        dlq = b.queue("work.dlq")
        work = b.queue("work", max_deliveries=1, dead_letter_queue="work.dlq", lease_time=0.1)
        work.send("job")
        d = work.receive(0)
        assert d.text == "job"
        del d  # the consumer goes away holding the lease
        start = time.monotonic()
        got = dlq.receive(5.0)  # nothing touches "work" meanwhile
        assert got.text == "job", f"after {time.monotonic() - start:.3f} s"
        got.ack()
        assert work.stats().dead_lettered == 1
