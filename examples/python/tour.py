#!/usr/bin/env python3
"""The tour (`make demo`): libqueue embedded in one process, doing real work, then
crashing and recovering. Nothing to configure; data in ``target/demo-data``.

1. Tenants. A persistent broker (a journal in the data directory) with two
   namespaces: ``octavia`` and ``tripleo``; tripleo's quota refuses an oversized
   burst (a typed error, nothing admitted) while octavia is unaffected.
2. Producers in two languages, one broker. This Python process owns the broker;
   a C++ shared object (examples/cpp/tour_producer.cpp, not linked against
   libqueue) resolves its lq_* calls to the library this process loaded and
   produces from its own std::threads through the broker handle passed to it,
   while a Python thread produces beside it. Every message says who sent it
   (header ``producer: cpp|python``).
3. Throttled consumer pools (handlers by message name, pool sizes 4 and 2) run on
   the library's worker threads; poison messages fail, are nacked with backoff
   and, after 3 deliveries, dead-lettered.
4. The crash. The broker is closed and a child process opens the same directory
   with sync "always", sends persistent orders and acks audit messages, and
   reports each one on a pipe once the call returned; it is SIGKILLed mid-stream.
5. Recovery. The directory is reopened: the recovery report, then checks that
   every send the child was told about is back, no ack it was told about is
   undone, and the dead letters and the backlog are intact. A summary with rates.

Exits 1 if any check fails. Run it with ``make demo`` (which builds the library,
the C++ object and a venv with cffi), or after ``make lib`` as
``python3 examples/python/tour.py --cpp target/examples/libtour_producer.so``.
"""

from __future__ import annotations

import argparse
import collections
import ctypes
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# The package installed from this source tree (`make demo` does it), over the
# library `make lib` built.
_built = ROOT / "target" / "release" / "liblibqueue.so"
if "LIBQUEUE_LIBRARY" not in os.environ and _built.exists():
    os.environ["LIBQUEUE_LIBRARY"] = str(_built)
    os.environ.setdefault("LIBQUEUE_HEADER", str(ROOT / "include" / "libqueue.h"))

import libqueue  # noqa: E402
from libqueue import Message, MessageTooLarge, QueueOptions, QuotaExceeded, Quotas  # noqa: E402

DATA = ROOT / "target" / "demo-data"

# The workload (sized for about 10 s on 2 shared cores).
CPP_THREADS, CPP_PER_THREAD = 2, 50_000      # -> octavia/provisioning
PY_PROVISIONING = 10_000                       # -> octavia/provisioning
PY_EVENTS = 15_000                             # -> tripleo/workflow-events
POISON_EVERY = 5_000                           # every 5000th message of a producer fails
TRIPLEO_MAX_MESSAGES = 5_000                   # tripleo's quota
AUDIT_BACKLOG = 2_000                          # left in octavia/audit for the crash
CRASH_AFTER_S = 1.5                            # the child runs this long, then SIGKILL
OCTAVIA_POOL, TRIPLEO_POOL = 4, 2
EVENT_WORK_S = 0.0002                          # each tripleo handler "works" this long

OCTAVIA_NAMES = ["create_load_balancer", "update_listener", "create_pool", "create_member",
                 "update_health_monitor", "delete_member"]
TRIPLEO_NAMES = ["deployment_started", "ansible_task_completed", "stack_update_progress",
                 "deployment_finished"]

T0 = time.monotonic()
FAILURES: list[str] = []


def say(text: str = "") -> None:
    print(f"[{time.monotonic() - T0:6.2f}s] {text}" if text else "", flush=True)


def check(ok: bool, what: str) -> None:
    print(f"           {'ok  ' if ok else 'FAIL'} {what}", flush=True)
    if not ok:
        FAILURES.append(what)


def n(x: float) -> str:
    return f"{x:,.0f}"


def header(title: str) -> None:
    print(f"\n== {title} " + "=" * max(0, 70 - len(title)), flush=True)


# ---- the C++ producer, in this process ------------------------------------------


def libqueue_mappings() -> set[str]:
    """The libqueue shared objects mapped into this process."""
    out = set()
    with open("/proc/self/maps") as f:
        for line in f:
            path = line.split()[-1] if len(line.split()) >= 6 else ""
            if os.path.basename(path) in ("liblibqueue.so", "libqueue.so"):
                out.add(os.path.realpath(path))
    return out


def load_cpp(path: str):
    """Loads the C++ producer so that its lq_* symbols bind to the library already
    loaded here (made global first; RTLD_NOLOAD: it must be loaded already)."""
    from cffi import FFI

    (lib_path,) = libqueue_mappings()
    ctypes.CDLL(lib_path, mode=os.RTLD_NOW | os.RTLD_GLOBAL | os.RTLD_NOLOAD)
    ffi = FFI()
    ffi.cdef("""
        const char *tour_cpp_library(void);
        long tour_cpp_produce(const void *broker, const char *ns, const char *queue,
                              unsigned threads, unsigned per_thread, unsigned poison_every,
                              char *err, size_t errlen);
    """)
    cpp = ffi.dlopen(path)
    resolved = os.path.realpath(ffi.string(cpp.tour_cpp_library()).decode())
    return ffi, cpp, lib_path, resolved


# ---- the crash child ------------------------------------------------------------


def crash_child(data: str) -> None:
    """Runs in the child: sends orders and acks audit messages, reporting each on
    stdout once the call returned, until it is killed."""
    broker = libqueue.Broker(data, sync="always")
    octavia = broker.namespace("octavia")
    orders = octavia.queue("orders", persistent=True)
    audit = octavia.get_queue("audit")
    out_lock = threading.Lock()

    def report(line: str) -> None:
        with out_lock:
            sys.stdout.write(line + "\n")
            sys.stdout.flush()

    def sender(t: int) -> None:
        i = 0
        while True:
            mid = orders.send(f"order {t}-{i}", name="place_order", persistent=True,
                              headers={"producer": "python"})
            report(f"S {mid}")
            i += 1

    def acker() -> None:
        while True:
            d = audit.receive(timeout=5)
            mid = d.id
            d.ack()
            report(f"A {mid}")
            time.sleep(0.001)

    report(f"R {broker.recovery_report.messages_recovered}")
    for t in range(2):
        threading.Thread(target=sender, args=(t,), daemon=True).start()
    threading.Thread(target=acker, daemon=True).start()
    time.sleep(60)  # the parent kills us long before this


# ---- the tour -------------------------------------------------------------------


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cpp", default=str(ROOT / "target" / "examples" / "libtour_producer.so"),
                    help="the C++ producer shared object")
    ap.add_argument("--crash-child", metavar="DIR", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.crash_child:
        crash_child(args.crash_child)
        return 0

    rates: list[tuple[str, float, float]] = []  # (what, messages, seconds)

    header("1. a persistent, multi-tenant broker in this process")
    shutil.rmtree(DATA, ignore_errors=True)
    broker = libqueue.Broker(DATA)  # sync "none": survives a crash of the process
    say(f"libqueue {libqueue.LIBRARY_VERSION}: broker on {DATA.relative_to(ROOT)} "
        f"(journal, sync=none), pid {os.getpid()}")
    octavia = broker.create_namespace("octavia", Quotas(max_queues=4, max_messages=200_000))
    tripleo = broker.create_namespace(
        "tripleo", Quotas(max_queues=2, max_messages=TRIPLEO_MAX_MESSAGES,
                          max_message_size=64 * 1024))
    provisioning = octavia.create_queue("provisioning", QueueOptions(
        persistent=True, lease_time=30, max_deliveries=3, dead_letter_queue="provisioning.dlq"))
    events = tripleo.create_queue("workflow-events", QueueOptions(persistent=True))
    say("tenants: octavia (4 queues, 200k messages), "
        f"tripleo (2 queues, {n(TRIPLEO_MAX_MESSAGES)} messages, 64 KiB per message)")
    burst = [Message(f"event {i}", name="stack_update_progress") for i in range(6_000)]
    try:
        events.send_batch(burst)
        check(False, "tripleo refuses a burst of 6,000 (quota 5,000)")
    except QuotaExceeded as e:
        say(f"tripleo: a batch of 6,000 -> QuotaExceeded ({e})")
        check(events.stats().sent == 0, "the batch is all or nothing: nothing was admitted")
    try:
        events.send(b"x" * 100_000, name="oversized")
        check(False, "tripleo refuses a 100 KB message")
    except MessageTooLarge as e:
        say(f"tripleo: a 100 KB message -> MessageTooLarge ({e})")
    octavia.queue("audit", persistent=True).send(b"probe", name="quota_probe")
    check(octavia.stats().totals.sent == 1, "octavia is unaffected by tripleo's quota")
    octavia.get_queue("audit").purge()

    header("2. producers in C++ and Python, one broker, one process")
    ffi, cpp, lib_path, resolved = load_cpp(args.cpp)
    say(f"C++ producer {os.path.relpath(args.cpp, ROOT)} loaded; its lq_* calls resolve to")
    say(f"  {os.path.relpath(resolved, ROOT)}")
    check(resolved == lib_path and len(libqueue_mappings()) == 1,
          "the library this Python process loaded (one copy mapped)")

    lock = threading.Lock()
    handled: collections.Counter[tuple[str, str]] = collections.Counter()  # (queue, producer)
    by_name: collections.Counter[str] = collections.Counter()
    poison_attempts: collections.Counter[str] = collections.Counter()

    def provisioning_handler(d: libqueue.Delivery) -> None:
        producer = (d.header("producer") or b"?").decode()
        if d.header("poison"):
            with lock:
                poison_attempts[d.header("seq", b"?").decode() + producer] += 1
            raise RuntimeError(f"{d.name}: backend refused (delivery {d.delivery_count})")
        with lock:
            handled["provisioning", producer] += 1
            by_name[d.name or "-"] += 1

    def events_handler(d: libqueue.Delivery) -> None:
        time.sleep(EVENT_WORK_S)  # "work": slower than the producer, on purpose
        with lock:
            handled["workflow-events", (d.header("producer") or b"?").decode()] += 1
            by_name[d.name or "-"] += 1

    pools = []
    p = octavia.pool("provisioning", size=OCTAVIA_POOL, backoff=(0.02, 0.1))
    for name in OCTAVIA_NAMES:
        p.add_handler(name, provisioning_handler)
    pools.append(("octavia/provisioning", OCTAVIA_POOL, p.start()))
    p = tripleo.pool("workflow-events", size=TRIPLEO_POOL)
    for name in TRIPLEO_NAMES:
        p.add_handler(name, events_handler)
    pools.append(("tripleo/workflow-events", TRIPLEO_POOL, p.start()))
    say(f"consumer pools started: octavia/provisioning size {OCTAVIA_POOL} "
        f"({len(OCTAVIA_NAMES)} handlers), tripleo/workflow-events size {TRIPLEO_POOL} "
        f"({len(TRIPLEO_NAMES)} handlers)")

    results: dict[str, tuple[int, float]] = {}
    quota_pushback = [0]

    def run_cpp() -> None:
        err = ffi.new("char[256]")
        t = time.monotonic()
        sent = cpp.tour_cpp_produce(ffi.cast("void *", broker_address(broker)),
                                    b"octavia", b"provisioning", CPP_THREADS, CPP_PER_THREAD,
                                    POISON_EVERY, err, 256)
        results["cpp"] = (sent, time.monotonic() - t)
        if sent < 0:
            FAILURES.append("C++ producer: " + ffi.string(err).decode())

    def run_python() -> None:
        t = time.monotonic()
        q = octavia.queue("provisioning")
        for i in range(PY_PROVISIONING):
            hdr = {"producer": "python", "seq": str(i)}
            if i % POISON_EVERY == POISON_EVERY - 1:
                hdr["poison"] = "1"
            q.send(f'{{"member": "m-{i}", "from": "python"}}', name=OCTAVIA_NAMES[i % 6],
                   headers=hdr)
        results["python -> octavia"] = (PY_PROVISIONING, time.monotonic() - t)
        t = time.monotonic()
        ev = tripleo.queue("workflow-events")
        for i in range(PY_EVENTS):
            while True:
                try:
                    ev.send(f'{{"step": {i}}}', name=TRIPLEO_NAMES[i % 4],
                            execution_id=f"exec-{i // 1000}", headers={"producer": "python"})
                    break
                except QuotaExceeded:  # the tenant is full: back off, the pool drains it
                    quota_pushback[0] += 1
                    time.sleep(0.002)
        results["python -> tripleo"] = (PY_EVENTS, time.monotonic() - t)

    t_work = time.monotonic()
    producers = [threading.Thread(target=run_cpp), threading.Thread(target=run_python)]
    for t in producers:
        t.start()
    say(f"producing: C++ {CPP_THREADS} threads x {n(CPP_PER_THREAD)} -> octavia/provisioning; "
        f"Python 1 thread: {n(PY_PROVISIONING)} -> octavia/provisioning, "
        f"{n(PY_EVENTS)} -> tripleo/workflow-events")
    for t in producers:
        t.join()
    for who, what in (("cpp", "cpp -> octavia (2 threads)"),
                      ("python -> octavia", "python -> octavia"),
                      ("python -> tripleo", "python -> tripleo (held back by its quota)")):
        sent, secs = results.get(who, (0, 1))
        say(f"producer: {what:<42} {n(sent):>7} in {secs:5.2f} s = {n(sent / secs):>7} msg/s")
        rates.append((f"produce, {what}", sent, secs))
    dlq = octavia.queue("provisioning.dlq")
    while True:  # drained: nothing ready, leased or waiting for a retry
        if provisioning.stats().depth == 0 and events.stats().depth == 0:
            break
        if time.monotonic() - t_work > 60:
            FAILURES.append("the pools did not drain the queues within 60 s")
            break
        time.sleep(0.02)
    t_drained = time.monotonic() - t_work
    for label, size, pool in pools:
        pool.stop()
        s = pool.stats()
        say(f"pool {label}: handled {n(s.handled)} (ok {n(s.succeeded)}, failed {s.failed}), "
            f"at most {s.max_active} at once")
        check(s.max_active <= size, f"throttled: never more than {size} handlers at once")
    total = CPP_THREADS * CPP_PER_THREAD + PY_PROVISIONING + PY_EVENTS
    rates.append(("end to end (send -> handled, acked)", total, t_drained))
    say(f"tripleo's quota pushed the Python producer back {quota_pushback[0]} times "
        "(it retried after 2 ms each time)")

    poison = CPP_THREADS * (CPP_PER_THREAD // POISON_EVERY) + PY_PROVISIONING // POISON_EVERY
    header("3. failures: nack, backoff, dead letters")
    check(handled["provisioning", "cpp"] == CPP_THREADS * (CPP_PER_THREAD - CPP_PER_THREAD // POISON_EVERY),
          f"octavia: every good C++ message handled once ({n(handled['provisioning', 'cpp'])})")
    check(handled["provisioning", "python"] == PY_PROVISIONING - PY_PROVISIONING // POISON_EVERY,
          f"octavia: every good Python message handled once ({n(handled['provisioning', 'python'])})")
    check(handled["workflow-events", "python"] == PY_EVENTS,
          f"tripleo: every event handled once ({n(handled['workflow-events', 'python'])})")
    check(len(poison_attempts) == poison and set(poison_attempts.values()) == {3},
          f"{poison} poison messages, each tried 3 times (nack with backoff) before giving up")
    dead = dlq.peek(max=100)
    check(len(dead) == poison, f"{poison} messages in octavia/provisioning.dlq")
    if dead:
        d = dead[0]
        say(f"a dead letter: {d.name} from {d.header('producer').decode()}, "
            f"reason: {d.header('x-dead-letter-reason').decode()!r}")
    for d in dead:
        d.close()

    backlog = octavia.queue("audit")
    for start in range(0, AUDIT_BACKLOG, 500):
        backlog.send_batch([Message(f"audit {i}", name="audit", persistent=True,
                                    headers={"producer": "python"})
                            for i in range(start, start + 500)])
    audit_ids = {d.id for d in backlog.peek(max=AUDIT_BACKLOG)}
    say(f"{n(AUDIT_BACKLOG)} messages left unconsumed in octavia/audit; closing the broker")
    ns_stats = {ns.name: ns.stats() for ns in (octavia, tripleo)}
    for h in (provisioning, events, dlq, backlog, octavia, tripleo):
        h.close()
    broker.close()

    header("4. the crash: a child process, sync=always, SIGKILL")
    child = subprocess.Popen([sys.executable, __file__, "--crash-child", str(DATA)],
                             stdout=subprocess.PIPE, text=True, bufsize=1)
    watchdog = threading.Timer(30, child.kill)  # never hang on a stuck child
    watchdog.start()
    sent_ids: list[int] = []
    acked_ids: list[int] = []
    first = child.stdout.readline()
    check(first.startswith("R "), "the child opened the directory (its recovery: "
          f"{first.split()[-1] if first else '?'} messages)")
    t_child = time.monotonic()
    deadline = t_child + CRASH_AFTER_S

    def read(line: str) -> None:
        kind, _, mid = line.partition(" ")
        if kind in ("S", "A") and mid.strip().isdigit():
            (sent_ids if kind == "S" else acked_ids).append(int(mid))

    while time.monotonic() < deadline:
        line = child.stdout.readline()
        if not line:
            break
        read(line)
    os.kill(child.pid, signal.SIGKILL)
    crash_secs = time.monotonic() - t_child
    for line in child.stdout:  # what it wrote before it died still counts
        read(line)
    rc = child.wait()
    watchdog.cancel()
    say(f"child {child.pid} killed after {crash_secs:.2f} s (exit {rc}): it was told "
        f"{n(len(sent_ids))} sends are durable and {n(len(acked_ids))} acks done")
    check(rc == -signal.SIGKILL, "the child died of SIGKILL, mid-stream")
    rates.append(("crash child: persistent sends, sync=always", len(sent_ids), crash_secs))

    header("5. recovery")
    t = time.monotonic()
    broker = libqueue.Broker(DATA)
    recovery_secs = time.monotonic() - t
    r = broker.recovery_report
    say(f"reopened in {recovery_secs * 1e3:.0f} ms: {n(r.records_read)} records read, "
        f"{r.queues} queues, {n(r.messages_recovered)} messages recovered, "
        f"{r.bytes_cut} bytes cut, damage: {r.damage or 'none'}")
    octavia = broker.namespace("octavia")
    orders = octavia.queue("orders")
    got: list[int] = []
    while True:
        batch = orders.receive_batch(max=512, timeout=0)
        if not batch:
            break
        for d in batch:
            got.append(d.id)
            d.ack()
    got_set = set(got)
    missing = [i for i in sent_ids if i not in got_set]
    check(not missing, f"every send the child was told is durable is back "
          f"({n(len(sent_ids))} told, {n(len(got))} recovered; "
          f"{len(got) - len(set(sent_ids) & got_set)} more were written but not yet reported)")
    check(len(got) == len(got_set), "no order recovered twice")
    backlog = octavia.queue("audit")
    left = {d.id for d in backlog.peek(max=AUDIT_BACKLOG)}
    undone = [i for i in acked_ids if i in left]
    check(not undone and left <= audit_ids,
          f"no ack the child was told is done came back; audit holds {n(len(left))} "
          f"of {n(AUDIT_BACKLOG)}")
    dlq = octavia.queue("provisioning.dlq")
    check(dlq.stats().ready == poison, f"the {poison} dead letters are back, with their reasons")
    check(r.messages_recovered == len(got) + len(left) + poison,
          "recovered = orders + audit + dead letters, nothing else")
    check(not r.damage or r.bytes_cut < 4096,
          "damage, if any, is the torn tail the kill left (cut off, never delivered)")
    after = {ns: broker.namespace(ns).stats() for ns in ("octavia", "tripleo")}
    broker.close()

    header("summary")
    total_secs = time.monotonic() - T0
    print(f"  {'phase':<52}{'messages':>10}{'seconds':>9}{'msg/s':>11}")
    for what, msgs, secs in rates:
        print(f"  {what:<52}{n(msgs):>10}{secs:>9.2f}{n(msgs / secs if secs else 0):>11}")
    print(f"  {'recovery: reopen and replay the journal':<52}{n(r.records_read):>10}"
          f"{recovery_secs:>9.3f}{n(r.records_read / recovery_secs):>11}  records")
    print(f"\n  {'tenant':<10}{'queues':>7}{'sent':>9}{'acked':>9}{'nacked':>8}"
          f"{'dead-lettered':>15}{'held at the end':>17}")
    for name, s in ns_stats.items():
        t_ = s.totals
        print(f"  {name:<10}{s.queues:>7}{n(t_.sent):>9}{n(t_.acked):>9}{n(t_.nacked):>8}"
              f"{n(t_.dead_lettered):>15}{n(after[name].totals.depth):>17}")
    by_producer = collections.Counter()
    for (_, producer), count in handled.items():
        by_producer[producer] += count
    print(f"\n  handled by producer (header 'producer'): "
          + ", ".join(f"{k} {n(v)}" for k, v in sorted(by_producer.items())))
    print("  handled by name: " + ", ".join(f"{k} {n(v)}" for k, v in sorted(by_name.items())))
    print(f"  dead letters: {poison} (3 deliveries each); quota push-backs: {quota_pushback[0]}; "
          f"crash: {n(len(sent_ids))} durable sends told, all recovered")
    print(f"  data directory kept for a look: cargo run --release --bin libqueue -- stats "
          f"{DATA.relative_to(ROOT)}")
    print(f"  total {total_secs:.1f} s; "
          + ("all checks passed" if not FAILURES else f"{len(FAILURES)} checks FAILED:"))
    for f in FAILURES:
        print(f"    - {f}")
    return 1 if FAILURES else 0


def broker_address(broker: libqueue.Broker) -> int:
    """The address of the broker's C handle (``lq_broker *``), for the C++ side."""
    return int(libqueue._cffi.cast("uintptr_t", broker._p))


if __name__ == "__main__":
    sys.exit(main())
