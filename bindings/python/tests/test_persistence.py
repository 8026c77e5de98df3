"""Persistence: a journal that survives a SIGKILLed child process."""

import os
import signal
import subprocess
import sys
import textwrap
import time

import libqueue

CHILD = textwrap.dedent("""
    import sys, libqueue
    path, n = sys.argv[1], int(sys.argv[2])
    b = libqueue.Broker(path)
    q = b.queue("jobs", persistent=True)
    for i in range(n):
        q.send(str(i), headers={"i": str(i)}, name="job")
    q.send(b"volatile", persistent=False)
    d = q.receive(0); d.ack()        # "0" is done
    q.receive(0)                     # "1" is leased, never acked
    print("ready", flush=True)
    import time; time.sleep(60)
""")


def test_sigkilled_child_loses_nothing(tmp_path):
    p = subprocess.Popen([sys.executable, "-c", CHILD, str(tmp_path), "100"], stdout=subprocess.PIPE,
                         text=True)
    assert p.stdout.readline().strip() == "ready"
    p.send_signal(signal.SIGKILL)
    p.wait(10)
    with libqueue.Broker(tmp_path) as b:
        r = b.recovery_report
        assert r is not None and r.messages_recovered == 99 and r.bytes_cut == 0 and r.damage == []
        q = b.queue("jobs")
        got = []
        while (d := q.try_receive()) is not None:
            got.append(d.text)
            assert d.persistent and d.name == "job" and d.headers == {"i": d.body}
            d.ack()
        assert sorted(got, key=int) == [str(i) for i in range(1, 100)]
        assert "volatile" not in got
    with libqueue.Broker(tmp_path) as b:  # acked for good
        assert b.recovery_report.messages_recovered == 0


def test_sync_always_and_interval(tmp_path):
    for mode in ("always", "interval"):
        d = tmp_path / mode
        with libqueue.Broker(d, sync=mode, sync_interval=0.01) as b:
            b.queue("q", persistent=True).send(b"durable")
            b.flush()
        with libqueue.Broker(d) as b:
            assert b.queue("q").receive(0).body == b"durable"


def test_corrupt_tail_is_reported_not_delivered(tmp_path):
    with libqueue.Broker(tmp_path) as b:
        q = b.queue("q", persistent=True)
        for i in range(10):
            q.send(b"m%d" % i)
    segs = sorted(f for f in os.listdir(tmp_path) if os.path.isfile(tmp_path / f) and f != "LOCK"
                  and os.path.getsize(tmp_path / f) > 0)
    assert segs
    seg = tmp_path / segs[-1]
    data = bytearray(seg.read_bytes())
    # flip a byte inside the last records (after the first few hundred bytes)
    nz = [i for i, c in enumerate(data) if c][-5]
    data[nz] ^= 0xFF
    seg.write_bytes(bytes(data))
    with libqueue.Broker(tmp_path) as b:
        r = b.recovery_report
        q = b.queue("q")
        got = [d.body for d in q.receive_batch(100, 0)]
        assert all(x.startswith(b"m") for x in got)
        assert len(got) < 10 or r.bytes_cut == 0
