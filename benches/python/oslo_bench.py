"""oslo.messaging over libqueue beside oslo's in-tree fake driver (and RabbitMQ when
one is reachable): cast throughput and call round trip, through the real
oslo.messaging API (``get_rpc_server`` with ``executor='threading'``,
``RPCClient.cast/call``), client and server in one process.

- cast: ``--casts`` casts of a small message, timed from the first cast until the
  endpoint has run for the last one (messages/s), and the client's side alone (how
  fast ``cast()`` returns, the server running meanwhile in the same process).
- call: ``--calls`` sequential calls, each waiting for its reply (median and p99
  round trip, microseconds).

Each transport is measured ``--runs`` times (alternating) and the median reported.
``fake://`` polls its queues every 50 ms, which sets its call latency. ``rabbit://``
runs only with ``--rabbit URL`` (or ``LQ_BENCH_RABBIT_URL``); this script never starts
or installs a RabbitMQ server: ``make bench-oslo`` (part of ``make bench``) installs
the Debian ``rabbitmq-server`` if missing, starts a private broker on 127.0.0.1 with
benches/rabbitmq.sh, passes its URL and stops it afterwards. libqueue:////dir
(persistent, sync none) is measured too. ``--json`` writes the medians, every run,
and the records that benches/report.py renders (scenarios oslo_cast, oslo_call;
baseline rabbit://).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import threading
import time
import uuid
from typing import Any

import oslo_messaging as om
from oslo_config import cfg


class Sink:
    def __init__(self) -> None:
        self.n = 0
        self.want = 0
        self.done = threading.Event()
        self.lock = threading.Lock()

    def hit(self, ctxt: Any, i: int) -> None:
        with self.lock:
            self.n += 1
            if self.n == self.want:
                self.done.set()

    def echo(self, ctxt: Any, i: int) -> int:
        return i


def measure(url: str, casts: int, calls: int) -> dict[str, float]:
    conf = cfg.CONF
    sink = Sink()
    topic = "bench_" + uuid.uuid4().hex[:8]
    st = om.get_rpc_transport(conf, url=url)
    server = om.get_rpc_server(st, om.Target(topic=topic, server="s"), [sink],
                               executor="threading")
    server.start()
    ct = om.get_rpc_transport(conf, url=url)
    client = om.get_rpc_client(ct, om.Target(topic=topic), timeout=30)
    try:
        client.call({}, "echo", i=0)  # warm up: queues exist, threads run
        sink.want = casts
        start = time.perf_counter()
        for i in range(casts):
            client.cast({}, "hit", i=i)
        sent = time.perf_counter() - start
        if not sink.done.wait(120):
            raise RuntimeError(f"{url}: only {sink.n} of {casts} casts arrived")
        cast_rate = casts / (time.perf_counter() - start)
        rtts = []
        for i in range(calls):
            t0 = time.perf_counter()
            client.call({}, "echo", i=i)
            rtts.append((time.perf_counter() - t0) * 1e6)
        rtts.sort()
        return {"cast_per_s": cast_rate, "cast_send_per_s": casts / sent, "call_p50_us": statistics.median(rtts),
                "call_p99_us": rtts[min(len(rtts) - 1, int(len(rtts) * 0.99))]}
    finally:
        server.stop()
        server.wait()
        ct.cleanup()
        st.cleanup()


def om_version() -> str | None:
    from importlib.metadata import version
    try:
        return version("oslo.messaging")
    except Exception:
        return None


def rabbit_version() -> str | None:
    import subprocess
    try:
        return subprocess.run(["dpkg-query", "-W", "-f", "${Version}", "rabbitmq-server"],
                              capture_output=True, text=True).stdout or None
    except OSError:
        return None


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--casts", type=int, default=5000)
    ap.add_argument("--calls", type=int, default=500)
    ap.add_argument("--fake-calls", type=int, default=40, help="fake:// waits ~50 ms a call")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--rabbit", default=os.environ.get("LQ_BENCH_RABBIT_URL"))
    ap.add_argument("--json", help="write the medians here")
    args = ap.parse_args()
    if os.environ.get("LQ_BENCH_QUICK", "0") not in ("", "0"):
        args.casts, args.calls = min(args.casts, 1000), min(args.calls, 100)
        args.fake_calls = min(args.fake_calls, 10)
    load = open("/proc/loadavg").read().split()[:3] if os.path.exists("/proc/loadavg") else None
    cfg.CONF([], project="libqueue-oslo-bench")
    tmp = tempfile.mkdtemp(prefix="oslo-bench-")
    transports = {"libqueue://": ("libqueue://", args.calls),
                  "libqueue:////dir": (f"libqueue:///{tmp}", args.calls),
                  "fake://": ("fake://", args.fake_calls)}
    if args.rabbit:
        transports["rabbit://"] = (args.rabbit, args.calls)
    else:
        print("rabbit:// skipped: no --rabbit URL (this script never starts a RabbitMQ)")
    runs: dict[str, list[dict[str, float]]] = {k: [] for k in transports}
    try:
        for _ in range(args.runs):
            for name, (url, calls) in transports.items():
                runs[name].append(measure(url, args.casts, calls))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    medians = {name: {k: statistics.median(r[k] for r in rs) for k in rs[0]}
               for name, rs in runs.items()}
    print(f"oslo.messaging, {args.casts} casts / calls sequential; median of {args.runs} runs")
    print(f"{'transport':18} {'cast msg/s':>12} {'cast() /s':>12} {'call p50 µs':>12} "
          f"{'call p99 µs':>12}")
    for name, m in medians.items():
        print(f"{name:18} {m['cast_per_s']:12.0f} {m['cast_send_per_s']:12.0f} "
              f"{m['call_p50_us']:12.0f} {m['call_p99_us']:12.0f}")
    base = medians["libqueue://"]
    for name, m in medians.items():
        if name != "libqueue://":
            print(f"libqueue:// vs {name}: casts {base['cast_per_s'] / m['cast_per_s']:.1f}x, "
                  f"call p50 {m['call_p50_us'] / base['call_p50_us']:.1f}x faster")
    if "rabbit://" in medians:
        r = medians["rabbit://"]
        print("libqueue / rabbit (higher is better for libqueue; issue 15's target: >= 10x on cast "
              "throughput and call latency):")
        for name in ("libqueue://", "libqueue:////dir"):
            m = medians[name]
            ratios = {"casts handled": m["cast_per_s"] / r["cast_per_s"],
                      "cast() returns": m["cast_send_per_s"] / r["cast_send_per_s"],
                      "call p50": r["call_p50_us"] / m["call_p50_us"],
                      "call p99": r["call_p99_us"] / m["call_p99_us"]}
            met = ratios["casts handled"] >= 10 and ratios["call p50"] >= 10
            print(f"  {name:17} " + ", ".join(f"{k} {v:.1f}x" for k, v in ratios.items()) +
                  f"  -> target {'met' if met else 'NOT met'}")
    if args.json:
        metrics = [("oslo_cast", "handled", "cast_per_s", "msg/s", "higher"),
                   ("oslo_cast", "cast_returns", "cast_send_per_s", "msg/s", "higher"),
                   ("oslo_call", "p50", "call_p50_us", "µs", "lower"),
                   ("oslo_call", "p99", "call_p99_us", "µs", "lower")]
        records = [dict(scenario=scn, peer=name, metric=metric, value=m[key], unit=unit, better=b)
                   for name, m in medians.items() for scn, metric, key, unit, b in metrics]
        meta = {"casts": args.casts, "calls": args.calls, "fake_calls": args.fake_calls, "runs": args.runs,
                "oslo.messaging": om_version(), "rabbitmq": rabbit_version() if args.rabbit else None,
                "loadavg_at_start": load, "python": platform.python_version()}
        with open(args.json, "w") as f:
            json.dump({"meta": meta, "records": records, "medians": medians, "runs": runs}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
