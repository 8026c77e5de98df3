#!/usr/bin/env python3
"""The tour (`make demo`): libqueue embedded in a process, doing real work; then
several processes on one directory, the hosting one SIGKILLed. Nothing to configure;
data in ``target/demo-data``.

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
4. Several processes, one directory. The broker is closed; a host process opens
   the directory and produces, two producer and two consumer processes open it
   too and attach to it (no server). Producers flush every 50 orders and report
   it; consumers ack and report each order. The host is SIGKILLed mid-stream:
   one of the others takes over (lock, journal replay, serving), the rest go on.
5. The proof. Everyone gone, the directory is reopened (the recovery report):
   every order a producer was told is durable - the killed host's included - was
   received and acked, no acked order came back, and the dead letters and the
   untouched backlog are intact. A summary with rates.

Exits 1 if any check fails. Run it with ``make demo`` (which builds the library,
the C++ object and a venv with cffi), or after ``make lib`` as
``python3 examples/python/tour.py --cpp target/examples/libtour_producer.so``.
"""

from __future__ import annotations

import argparse
import atexit
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
AUDIT_BACKLOG = 2_000                          # left untouched in octavia/audit
MP_PRODUCERS, MP_CONSUMERS = 2, 2              # scene 4: attached processes (+ the host)
WORKER_RUN_S = 2.5                             # scene 4: producers produce this long
KILL_AFTER_S = 1.0                             # scene 4: the host is SIGKILLed this long
                                               # after the others attached
FLUSH_EVERY = 50                               # scene 4: a producer flushes every 50 orders
FLUSH_PAUSE_S = 0.02                           # scene 4: ... then pauses (about 2,000/s each)
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


# ---- the worker processes of scene 4 ----------------------------------------------


def worker(role: str, k: int, data: str, run_s: float) -> None:
    """Runs in a process of its own on the directory ``data``: ``host`` (opens it
    first, and produces), ``producer`` or ``consumer`` (attach). Reports on stdout,
    one line per fact, once the call it reports returned:
    ``J role k pid attached|host host_pid clients`` when it is in, ``F k n`` when
    producer k's first n orders are durable (flush returned), ``A k i`` when order
    (k, i) was acked (``X k i`` when the ack failed), ``T pid takeovers`` when this
    process took over as host, ``E`` at the end."""
    broker = libqueue.Broker(data)
    orders = broker.namespace("octavia").queue("orders", persistent=True)
    lock = threading.Lock()

    def report(line: str) -> None:
        with lock:
            sys.stdout.write(line + "\n")
            sys.stdout.flush()

    attached = broker.is_attached
    info = broker.host_info()
    report(f"J {role} {k} {os.getpid()} {'attached' if attached else 'host'} "
           f"{info.pid} {len(info.clients)}")

    def watch() -> None:  # says when this process became the host (takeover)
        try:
            while broker.is_attached:
                time.sleep(0.01)
            report(f"T {os.getpid()} {broker.host_info().takeovers}")
        except libqueue.Closed:  # this process is done
            pass

    if attached:
        threading.Thread(target=watch, daemon=True).start()
    end = time.monotonic() + run_s
    if role in ("host", "producer"):
        i = 0
        while time.monotonic() < end:
            orders.send(f"{k} {i}", name="place_order", headers={"producer": f"process-{k}"})
            i += 1
            if i % FLUSH_EVERY == 0:
                broker.flush()  # durable: on the host's disk
                report(f"F {k} {i}")
                time.sleep(FLUSH_PAUSE_S)  # a steady stream the consumers keep up with
        broker.flush()
        report(f"F {k} {i}")
    else:
        while True:
            try:
                d = orders.receive(timeout=0.2)
            except libqueue.Timeout:
                if time.monotonic() > end + 0.5:  # the producers are done: drained
                    break
                continue
            body = d.body
            try:
                d.ack()
            except libqueue.LeaseExpired:  # its lease did not survive the takeover
                report("X " + body.decode())
                continue
            report("A " + body.decode())
    report("E")
    broker.close()


# ---- the tour -------------------------------------------------------------------


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cpp", default=str(ROOT / "target" / "examples" / "libtour_producer.so"),
                    help="the C++ producer shared object")
    ap.add_argument("--worker", nargs=4, metavar=("ROLE", "K", "DIR", "SECONDS"),
                    help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        role, k, data, secs = args.worker
        worker(role, int(k), data, float(secs))
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

    header("4. several processes, one directory: the host SIGKILLed mid-stream")
    procs: list[tuple[str, int, subprocess.Popen[str]]] = []
    facts: collections.defaultdict[str, list[list[str]]] = collections.defaultdict(list)
    arrived = threading.Condition()
    readers: list[threading.Thread] = []

    def spawn(role: str, k: int) -> None:
        p = subprocess.Popen([sys.executable, __file__, "--worker", role, str(k), str(DATA),
                              str(WORKER_RUN_S)], stdout=subprocess.PIPE, text=True, bufsize=1)
        procs.append((role, k, p))
        atexit.register(lambda: p.poll() is None and p.kill())  # never left behind

        def read() -> None:
            for line in p.stdout:
                kind, *rest = line.split()
                with arrived:
                    facts[kind].append(rest + [str(p.pid)])
                    arrived.notify_all()
        readers.append(threading.Thread(target=read, daemon=True))
        readers[-1].start()

    def wait_for(kind: str, count: int, timeout: float = 20) -> bool:
        with arrived:
            return arrived.wait_for(lambda: len(facts[kind]) >= count, timeout)

    t_scene = time.monotonic()
    spawn("host", 0)  # the first to open the directory: it hosts it
    # (Only then the others: one that came while the host is still replaying the
    # journal, before it listens, would be told the directory is Locked.)
    check(wait_for("J", 1, timeout=60), "the host process opened the directory")
    for k in range(1, MP_PRODUCERS + 1):
        spawn("producer", k)
    for k in range(1, MP_CONSUMERS + 1):
        spawn("consumer", k)
    wait_for("J", 1 + MP_PRODUCERS + MP_CONSUMERS, timeout=60)
    t_all = time.monotonic()
    host_pid = procs[0][2].pid
    for role, k, pid, side, hpid, nclients, _ in sorted(facts["J"], key=lambda j: int(j[2])):
        say(f"{role} {k}: process {pid}, {side}" + (f" to {hpid}" if side == "attached" else ""))
    check(all(j[3] == "attached" and int(j[4]) == host_pid for j in facts["J"][1:]),
          f"{MP_PRODUCERS} producer and {MP_CONSUMERS} consumer processes attached to "
          f"the host {host_pid}; no server, no configuration")
    time.sleep(max(0.0, KILL_AFTER_S - (time.monotonic() - t_all)))
    os.kill(host_pid, signal.SIGKILL)
    t_kill = time.monotonic()
    host_flushed = max((int(f[1]) for f in facts["F"] if f[0] == "0"), default=0)
    say(f"host {host_pid} SIGKILLed mid-stream (it had produced {n(host_flushed)} orders "
        "reported durable)")
    took = wait_for("T", 1, timeout=10)
    if took:
        pid, takeovers, _ = facts["T"][0]
        role = next((r + " " + str(k) for r, k, p in procs if str(p.pid) == pid), "?")
        say(f"{role} (process {pid}) took over in {(time.monotonic() - t_kill) * 1e3:.0f} ms "
            f"or less: it holds the lock, replayed the journal, serves the others "
            f"(takeovers: {takeovers})")
    check(took, "another process took over")
    for role, k, p in procs[1:]:  # the consumers end once the queue stays empty
        try:
            p.wait(timeout=WORKER_RUN_S + 20)
        except subprocess.TimeoutExpired:
            p.kill()
            FAILURES.append(f"{role} {k} did not end")
    procs[0][2].wait()
    for t in readers:  # every line they wrote before they ended is counted
        t.join(10)
    scene_secs = time.monotonic() - t_scene
    flushed = {}  # producer -> orders reported durable (0 .. n-1)
    for k, count, _ in facts["F"]:
        flushed[int(k)] = max(flushed.get(int(k), 0), int(count))
    acked = collections.Counter((int(k), int(i)) for k, i, _ in facts["A"])
    ended_ok = all(p.returncode == 0 for _, _, p in procs[1:])
    check(ended_ok, "the others went on without an error: every attached process ran to "
          "its end (exit 0)")
    check(not facts["X"], "every delivery held across the takeover was acked at the new host "
          f"({len(facts['X'])} LeaseExpired"
          + (f": orders {sorted((int(k), int(i)) for k, i, _ in facts['X'])[:5]})" if facts["X"]
             else ")"))
    say(f"{len(procs)} processes, {scene_secs:.1f} s: {n(sum(flushed.values()))} orders reported "
        f"durable, {n(sum(acked.values()))} acks by the consumer processes")
    rates.append(("several processes: orders acked across processes", sum(acked.values()),
                  scene_secs))

    header("5. the proof: nothing durable lost")
    t = time.monotonic()
    broker = libqueue.Broker(DATA)  # everyone is gone: this process hosts and replays
    recovery_secs = time.monotonic() - t
    r = broker.recovery_report
    say(f"reopened in {recovery_secs * 1e3:.0f} ms: {n(r.records_read)} records read, "
        f"{r.queues} queues, {n(r.messages_recovered)} messages recovered, "
        f"{r.bytes_cut} bytes cut, damage: {r.damage or 'none'}")
    octavia = broker.namespace("octavia")
    orders = octavia.queue("orders")
    left: collections.Counter[tuple[int, int]] = collections.Counter()
    while True:  # what nobody acked (none, unless a consumer process failed)
        batch = orders.receive_batch(max=512, timeout=0)
        if not batch:
            break
        for d in batch:
            k, i = (int(x) for x in d.body.split())
            left[k, i] += 1
            d.ack()
    durable = {(k, i) for k, count in flushed.items() for i in range(count)}
    received = set(acked) | set(left)
    lost = durable - received
    check(not lost, f"every order reported durable was received: {n(len(durable))} durable "
          f"(the killed host's {n(flushed.get(0, 0))} included), {n(len(received))} received and "
          f"acked ({n(len(set(acked)))} by the consumers, {n(len(left))} left for the end)"
          + (f"; LOST: {sorted(lost)[:5]}" if lost else ""))
    resurrected = set(acked) & set(left)
    check(not resurrected, f"no acked order came back ({len(resurrected)})")
    twice = sum(c - 1 for c in acked.values() if c > 1)
    say(f"delivered twice (the at-least-once window of the takeover, docs/multi-process.md): "
        f"{twice}")
    backlog = octavia.queue("audit")
    still = {d.id for d in backlog.peek(max=AUDIT_BACKLOG)}
    check(still == audit_ids, f"the {n(AUDIT_BACKLOG)} audit messages nobody touched are all there")
    dlq = octavia.queue("provisioning.dlq")
    check(dlq.stats().ready == poison, f"the {poison} dead letters are back, with their reasons")
    check(r.damage == [] or r.bytes_cut < 4096,
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
          f"host SIGKILLed: {n(len(durable))} orders reported durable, "
          f"{n(len(durable) - len(lost))} received and acked, {len(lost)} lost")
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
