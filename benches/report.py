#!/usr/bin/env python3
"""The collector of `make bench`: gathers one run's results into
benches/results/latest.json and renders BENCHMARKS.md and the plots.

Usage: report.py [RUN_DIR]   (default target/bench-run, what `make bench` fills)

Reads, all from RUN_DIR (so nothing from an earlier run is mixed in):
- criterion/<group>/<bench>/new/{estimates,benchmark}.json: ready_path,
  dispatch and persist (criterion's output, CRITERION_HOME=RUN_DIR/criterion);
  the median time per iteration becomes msg/s (throughput groups) or ns per
  round trip/call (groups of one element per iteration);
- latency.json, memory.json, recovery.json, ffi_boundary.json, cpp.json: the
  plain benchmark programs (records already in the common form);
- python.json: benches/python/compare.py.
- oslo.json: benches/python/oslo_bench.py (oslo.messaging transports, records
  already in the common form; RabbitMQ started by `make bench-oslo`).

Every record: scenario, peer, metric, value, unit, better (higher/lower), and
ratio = value / the value of the scenario's baseline peer for that metric.
Where libqueue loses: per scenario and metric, each peer (not a reference row
such as the memcpy ceiling) is compared with the best libqueue variant of the
same class (sync mode, pool size, caller count); every peer that beats it by
more than TIE (10%, and more than the scenario's absolute floor, if any) is
listed as a loss, in the scenario's section and in the summary at the top;
closer results are listed as ties (too close to call in one run).

Plots (SVG, matplotlib; skipped with a warning if it is not importable):
throughput vs threads, ping-pong latency percentiles, persistent throughput
per sync mode, memory per message.
"""

from __future__ import annotations

import datetime
import json
import os
import pathlib
import platform
import re
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent
RUN = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else ROOT / "target" / "bench-run")
RESULTS = ROOT / "benches" / "results"
QUICK = os.environ.get("LQ_BENCH_QUICK", "0") not in ("", "0")
# A peer better than libqueue by less than this factor is a tie, not a loss.
TIE = 1.10


def cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


P_CORES = max(cores() - 1, 2)
MEM = "16-byte freshly allocated bodies (`Vec<u8>`), 100,000 messages per iteration"
LQ_VARIANTS = ("libqueue: unbounded queue, auto-ack receive; `libqueue_leased`: receive + ack; "
               "`libqueue_bounded1024`: `max_messages(1024)`. Channels bounded to 1024 (crossbeam also unbounded).")

# name -> title, description, baseline peer, metrics compared for the verdict,
# reference rows (shown, never counted as peers), class of each peer (peers are
# compared with the libqueue variant of their class), x for throughput plots.
SCENARIOS: dict[str, dict] = {
    "spsc": dict(title="In memory: 1 producer → 1 consumer", threads=(1, 1),
                 desc=f"{MEM}. {LQ_VARIANTS}", base="crossbeam_bounded1024"),
    "mpsc_4x1": dict(title="In memory: 4 producers → 1 consumer", threads=(4, 1),
                     desc=f"{MEM}. {LQ_VARIANTS}", base="crossbeam_bounded1024"),
    "mpsc_cores": dict(title=f"In memory: cores − 1 = {P_CORES} producers → 1 consumer", threads=(P_CORES, 1),
                       desc=f"{MEM}. Producers: available_parallelism − 1, at least 2 "
                            f"(here {P_CORES}). {LQ_VARIANTS}", base="crossbeam_bounded1024"),
    "mpmc_4x4": dict(title="In memory: 4 producers → 4 consumers", threads=(4, 4),
                     desc=f"{MEM}. {LQ_VARIANTS}", base="crossbeam_bounded1024"),
    "mpmc_8x8": dict(title="In memory: 8 producers → 8 consumers", threads=(8, 8),
                     desc=f"{MEM}. {LQ_VARIANTS}", base="crossbeam_bounded1024"),
    "batch_spsc": dict(title="In memory: batches, 1 producer → 1 consumer",
                       desc=f"{MEM}. libqueue `send_batch` of 64 + `receive_batch_auto_ack(64)`; "
                            "the channels one by one (capacity 1024), and crossbeam carrying `Vec`s of 64 "
                            "(capacity 16 batches).", base="crossbeam_bounded1024_one_by_one"),
    "ping_pong": dict(title="In memory: ping-pong round trip (criterion, mean)",
                      desc="One request and one reply per round trip over two queues/channels, 16-byte bodies; "
                           "criterion's median of per-iteration means. Channels bounded(1) and bounded(16).",
                      base="crossbeam_bounded1"),
    "ping_pong_latency": dict(title="In memory: ping-pong round-trip latency percentiles",
                              desc="Every round trip timed on its own (16-byte bodies); libqueue unbounded, "
                                   "channels bounded(1).", base="crossbeam_bounded1",
                              verdict=("p50", "p99")),
    "idle_wait_cpu": dict(title="Idle CPU of a consumer blocked in receive",
                          desc="A consumer blocked on an empty queue/channel; CPU ms per second of waiting, of the "
                               "consumer thread (RUSAGE_THREAD) and of the whole process (RUSAGE_SELF; the main "
                               "thread sleeps). `libqueue_persistent`: data directory, SyncMode::Interval(10 ms). "
                               "Differences under 0.1 CPU ms/s count as ties (getrusage granularity).",
                          base="crossbeam_bounded1", floor=0.1),
    "memory_per_message": dict(title="Memory per queued message",
                               desc="Messages with 64-byte bodies sent and left queued, each peer in a fresh process; "
                                    "heap = live bytes in the allocator, rss = resident set growth (includes the "
                                    "journal's mapped pages for `libqueue_persistent`). All unbounded.",
                               base="crossbeam_unbounded", refs=("vecdeque_reference",)),
    "persist_64B": dict(title="Persistent: send + receive + ack, 64-byte bodies, per sync mode",
                        desc="Single thread: n sends, then n receive + ack. libqueue per SyncMode; SQLite as a queue "
                             "(WAL, synchronous NORMAL / FULL); yaque (never fsyncs). 20,000 messages per iteration "
                             "(2,000 for the two that sync every operation). Class = durability: `none` (no fsync), "
                             "`interval` (periodic/checkpoint fsync), `always` (fsync before returning).",
                        base="sqlite_wal_normal", refs=("memcpy_mmap_ceiling", "libqueue_memory"),
                        classes={"libqueue_sync_none": "none", "yaque": "none",
                                 "libqueue_sync_interval10ms": "interval", "sqlite_wal_normal": "interval",
                                 "libqueue_sync_always": "always", "sqlite_wal_full": "always"}),
    "persist_64KiB": dict(title="Persistent: send + receive + ack, 64 KiB bodies, per sync mode",
                          desc="As the 64-byte table, 500 messages of 65,536 bytes per iteration.",
                          base="sqlite_wal_normal", refs=("memcpy_mmap_ceiling", "libqueue_memory"),
                          classes={"libqueue_sync_none": "none", "yaque": "none",
                                   "libqueue_sync_interval10ms": "interval", "sqlite_wal_normal": "interval",
                                   "libqueue_sync_always": "always", "sqlite_wal_full": "always"}),
    "persist_always_senders": dict(title="Persistent: SyncMode::Always, concurrent senders (group commit)",
                                   desc="4,000 persistent 64-byte sends shared by 1, 2 or 4 threads; sends only.",
                                   base="libqueue_1_senders"),
    "recovery": dict(title="Recovery: reopen with unacked persistent messages",
                     desc="N persistent 64-byte messages written, then reopened (page cache warm): time until the "
                          "first message is received. yaque and SQLite read on demand and keep no index in memory, "
                          "so their reopen does not grow with N; libqueue replays the journal into memory.",
                     base="sqlite_wal_normal", verdict=("to_first_message",)),
    "dispatch": dict(title="Consumer pool: one producer feeding K workers",
                     desc="20,000 messages (16-byte bodies) per iteration handled by a libqueue Pool of K workers vs "
                          "K threads on a crossbeam unbounded channel. Class = K.",
                     base="crossbeam_unbounded_workers1",
                     classes=lambda p: re.sub(r"\D", "", p.rsplit("_", 1)[-1]) or None),
    "rpc": dict(title="RPC round trip (pool of 1 or 2)",
                desc="One call = request, handler echoing 16 bytes, ack, reply. Class = callers.",
                base="crossbeam_bounded1_ping",
                classes=lambda p: "2 callers" if "callers2" in p else "1 caller"),
    "cpp_mpsc_1x1": dict(title="C++: 1 producer → 1 consumer through the C ABI vs moodycamel::ConcurrentQueue",
                         desc="64-byte bodies, one consumer taking batches of up to 64; all unbounded.",
                         base="moodycamel_concurrentqueue"),
    "cpp_mpsc_4x1": dict(title="C++: 4 producers → 1 consumer through the C ABI vs moodycamel::ConcurrentQueue",
                         desc="64-byte bodies, one consumer taking batches of up to 64; all unbounded.",
                         base="moodycamel_concurrentqueue"),
    "ffi_boundary": dict(title="C boundary cost (libqueue only)",
                         desc="Send + try_receive + body + ack (+ free), one thread, 64-byte bodies: the Rust API vs "
                              "the C ABI.", base="libqueue_rust_api"),
}
for size in (64, 4096):
    SCENARIOS[f"python_memory_{size}B"] = dict(
        title=f"Python, in memory: 1 producer thread → 1 consumer thread, {size}-byte bodies",
        desc="benches/python/compare.py; queue.Queue unbounded, libqueue unbounded.",
        base="queue.Queue (stdlib)")
    SCENARIOS[f"python_persistent_{size}B"] = dict(
        title=f"Python, persistent: 1 producer thread → 1 consumer thread, {size}-byte bodies",
        desc="benches/python/compare.py; each library's default durability, local disk.",
        base="persist-queue file Queue")

OSLO = ("benches/python/oslo_bench.py: the real oslo.messaging API (`get_rpc_server`, executor `threading`; "
        "`RPCClient`), client and server in one process; median of the runs. `libqueue://` in memory, "
        "`libqueue:////dir` persistent (tmp dir), `fake://` oslo's in-tree driver (polls every 50 ms), "
        "`rabbit://` a private `rabbitmq-server` (Debian) on 127.0.0.1 started for the run. Issue 15's target: "
        "libqueue >= 10x RabbitMQ on cast throughput and call latency.")
SCENARIOS["oslo_cast"] = dict(title="oslo.messaging: cast throughput per transport", base="rabbit://",
                              desc=f"{OSLO} handled: casts from the first cast until the endpoint ran for the last; "
                                   "cast_returns: how fast `cast()` returns (server running meanwhile).")
SCENARIOS["oslo_call"] = dict(title="oslo.messaging: call round trip per transport", base="rabbit://",
                              desc=f"{OSLO} Sequential calls, each waiting for its reply; fake:// fewer calls.")

# Which plain program's `meta` describes a scenario's run (sizes, rounds).
META_OF = {"ping_pong_latency": "latency", "idle_wait_cpu": "latency", "memory_per_message": "memory",
           "recovery": "recovery", "ffi_boundary": "ffi_boundary", "cpp_": "cpp", "python_": "python",
           "oslo_": "oslo"}


def is_lq(peer: str) -> bool:
    return peer.lower().startswith("libqueue")


# -- gathering -----------------------------------------------------------------

def criterion_records() -> list[dict]:
    recs = []
    for est in sorted((RUN / "criterion").glob("*/*/new/estimates.json")):
        bench = json.loads((est.parent / "benchmark.json").read_text())
        median_ns = json.loads(est.read_text())["median"]["point_estimate"]
        elems = (bench.get("throughput") or {}).get("Elements", 1)
        group, peer = bench["group_id"], bench["function_id"]
        if elems == 1:
            metric = "call" if group == "rpc" else "round_trip"
            recs.append(dict(scenario=group, peer=peer, metric=metric, value=median_ns, unit="ns",
                             better="lower"))
        else:
            recs.append(dict(scenario=group, peer=peer, metric="throughput", value=elems / median_ns * 1e9,
                             unit="msg/s", better="higher", n=elems))
    return recs


def python_records(doc: dict) -> list[dict]:
    return [dict(scenario=f"python_{r['group']}_{r['size']}B", peer=r["name"], metric="throughput",
                 value=r["msgs_per_s"], unit="msg/s", better="higher", n=r["n"]) for r in doc["results"]]


def gather() -> tuple[list[dict], dict, list[str]]:
    recs, metas, missing = criterion_records(), {}, []
    if not recs:
        missing.append("criterion (ready_path, dispatch, persist)")
    for name in ("latency", "memory", "recovery", "ffi_boundary", "cpp", "python", "oslo"):
        f = RUN / f"{name}.json"
        if not f.exists():
            missing.append(name)
            continue
        doc = json.loads(f.read_text())
        if name == "python":
            recs += python_records(doc)
            metas[name] = {k: v for k, v in doc.items() if k != "results"}
        else:
            recs += doc["records"]
            metas[name] = doc["meta"]
    return recs, metas, missing


def add_ratios(recs: list[dict]) -> None:
    index = {(r["scenario"], r["peer"], r["metric"]): r for r in recs}
    for r in recs:
        base = SCENARIOS.get(r["scenario"], {}).get("base")
        b = index.get((r["scenario"], base, r["metric"]))
        r["baseline"] = base if b else None
        r["ratio"] = round(r["value"] / b["value"], 3) if b and b["value"] else None


def klass(scn: dict, peer: str):
    c = scn.get("classes")
    if callable(c):
        return c(peer)
    return (c or {}).get(peer)


def better(a: float, b: float, direction: str) -> bool:
    return a > b if direction == "higher" else a < b


def fmt(v: float | None, unit: str = "") -> str:
    if v is None:
        return "–"
    if unit == "msg/s":
        return f"{v / 1e6:.2f} M" if v >= 1e6 else f"{v:,.0f}"
    if unit == "s":
        return f"{v:.3g}"
    if abs(v) >= 100:
        return f"{v:,.0f}"
    return f"{v:#.3g}"


def verdicts(recs: list[dict]) -> dict[str, list[dict]]:
    """Per scenario: the comparisons where a peer beats libqueue's best variant of its class."""
    out: dict[str, list[dict]] = {}
    by_scn: dict[str, list[dict]] = {}
    for r in recs:
        by_scn.setdefault(r["scenario"], []).append(r)
    for s, rows in by_scn.items():
        scn = SCENARIOS.get(s, {})
        refs = set(scn.get("refs", ()))
        metrics = scn.get("verdict") or sorted({r["metric"] for r in rows})
        out[s] = []
        for m in metrics:
            mrows = [r for r in rows if r["metric"] == m and r["peer"] not in refs and r["value"] is not None]
            lq = [r for r in mrows if is_lq(r["peer"])]
            for p in (r for r in mrows if not is_lq(r["peer"])):
                k = klass(scn, p["peer"])
                cand = [r for r in lq if k is None or klass(scn, r["peer"]) in (k, None)] or lq
                if not cand:
                    continue
                d = p["better"]
                best = max(cand, key=lambda r: r["value"] if d == "higher" else -r["value"])
                factor = (p["value"] / best["value"] if d == "higher" else best["value"] / p["value"]) \
                    if best["value"] else float("inf")
                wins = better(p["value"], best["value"], d)
                close = max(factor, 1 / factor if factor else float("inf")) < TIE \
                    or abs(p["value"] - best["value"]) <= scn.get("floor", 0)
                out[s].append(dict(metric=m, peer=p["peer"], peer_value=p["value"], lq=best["peer"],
                                   lq_value=best["value"], unit=p["unit"], lq_loses=wins and not close,
                                   tie=close, factor=round(factor, 3)))
    return out


# -- metadata ------------------------------------------------------------------

def sh(*cmd: str) -> str:
    try:
        return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=30).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def commit_label() -> str:
    """HEAD, with "-dirty" only when files other than this report's own outputs
    (BENCHMARKS.md, benches/results) differ from it: a run that follows an
    uncommitted run still measures the committed code. `make bench` records it
    at the start of a run (`report.py --commit`)."""
    head = sh("git", "describe", "--always")
    changed = sh("git", "status", "--porcelain", "--", ".", ":!BENCHMARKS.md", ":!benches/results")
    return head + ("-dirty" if changed else "")


def lock_versions(names) -> dict:
    text = (ROOT / "Cargo.lock").read_text()
    found = {}
    for m in re.finditer(r'name = "([^"]+)"\nversion = "([^"]+)"', text):
        if m.group(1) in names:
            found.setdefault(m.group(1), []).append(m.group(2))
    return {k: ", ".join(v) for k, v in found.items()}


def machine() -> dict:
    info = pathlib.Path("/proc/cpuinfo").read_text() if pathlib.Path("/proc/cpuinfo").exists() else ""
    model = next((ln.split(":", 1)[1].strip() for ln in info.splitlines() if ln.startswith("model name")),
                 platform.processor())
    mem = ""
    if pathlib.Path("/proc/meminfo").exists():
        kb = int(pathlib.Path("/proc/meminfo").read_text().split()[1])
        mem = f"{kb / 1048576:.1f} GiB"
    tmp = sh("df", "-T", os.environ.get("TMPDIR", "/tmp")).splitlines()[-1:]
    return dict(cpu_model=model, logical_cpus=info.count("processor\t:") or os.cpu_count(),
                cores_available=cores(), memory=mem, kernel=platform.release(), arch=platform.machine(),
                tmp_filesystem=" ".join(tmp[0].split()[:2]) if tmp else "",
                loadavg_at_report=pathlib.Path("/proc/loadavg").read_text().split()[:3]
                if pathlib.Path("/proc/loadavg").exists() else None)


def python_versions() -> dict:
    v = {"python": platform.python_version()}
    try:
        from importlib.metadata import version, PackageNotFoundError
    except ImportError:
        return v
    for p in ("persist-queue", "queuelib", "litequeue", "libqueue", "matplotlib"):
        try:
            v[p] = version(p)
        except PackageNotFoundError:
            pass
    return v


def metadata(metas: dict) -> dict:
    started = (RUN / "started").read_text().split("\n") if (RUN / "started").exists() else []
    # The commit the run measured (recorded by `make bench` at its start), else HEAD now.
    commit = started[2] if len(started) > 2 and started[2] else commit_label()
    return dict(
        date=datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        run_started=started[0] if started else None,
        loadavg_at_start=started[1].split()[:3] if len(started) > 1 and started[1] else None,
        mode="quick (LQ_BENCH_QUICK=1: smaller sizes, short measurements; a smoke run, noisy)" if QUICK
        else "full",
        git_commit=commit,
        rustc=sh("rustc", "-V"), cargo=sh("cargo", "-V"),
        cxx=(sh("c++", "--version").splitlines() or [""])[0],
        crates=lock_versions({"libqueue", "crossbeam-channel", "kanal", "flume", "yaque", "rusqlite",
                              "libsqlite3-sys", "criterion"}),
        moodycamel_concurrentqueue=sh("dpkg-query", "-W", "-f", "${Version}", "libconcurrentqueue-dev") or None,
        python_packages=python_versions(),
        machine=machine(),
        benches=metas,
    )


# -- rendering -----------------------------------------------------------------

def render(recs: list[dict], meta: dict, verdict: dict, missing: list[str]) -> str:
    m = meta["machine"]
    L = ["# Benchmarks", ""]
    if QUICK:
        L += ["> **QUICK SMOKE RUN — noisy, not for citing.** Produced by `LQ_BENCH_QUICK=1 make bench` "
              "(smaller sizes, short measurements) on a shared machine with other builds running. "
              "Run `make bench` on a quiet machine for figures.", ""]
    L += [f"One run of `make bench`: **{meta['date']}**, mode **{meta['mode']}**, commit `{meta['git_commit']}`.",
          "",
          f"Machine: **{m['cpu_model']}**, {m['logical_cpus']} logical CPUs ({m['cores_available']} available), "
          f"{m['memory']} RAM, Linux {m['kernel']} ({m['arch']}); temporary files on {m['tmp_filesystem'] or '?'}; "
          f"load average at start {' '.join(meta['loadavg_at_start'] or ['?'])}.",
          "",
          f"Toolchain: {meta['rustc']}; {meta['cxx']}; Python {meta['python_packages'].get('python')}. "
          "Versions: " + ", ".join([f"{k} {v}" for k, v in sorted(meta["crates"].items())] +
                                   ([f"moodycamel ConcurrentQueue {meta['moodycamel_concurrentqueue']} (Debian "
                                     "libconcurrentqueue-dev)"] if meta["moodycamel_concurrentqueue"] else []) +
                                   [f"{k} {v} (PyPI)" for k, v in meta["python_packages"].items()
                                    if k not in ("python", "libqueue", "matplotlib")]) + ".",
          "",
          "Criterion groups (in-memory, ping_pong, batch, dispatch, rpc, persist): 10 samples of "
          f"{'1 s' if QUICK else '3 s'} after {'0.2 s' if QUICK else '0.5 s'} of warm-up, medians. "
          "Every table: one scenario, each row a peer; *ratio* is the value divided by the baseline peer's "
          "(named under the table); whether higher or lower is better is given per metric. Raw data: "
          "[benches/results/latest.json](benches/results/latest.json). Reproduce with `make bench` "
          "(`LQ_BENCH_QUICK=1 make bench` for a smoke run).", ""]
    if missing:
        L += [f"**Missing from this run:** {', '.join(missing)}.", ""]

    losses = [(s, v) for s, vs in verdict.items() for v in vs if v["lq_loses"]]
    L += ["## Where libqueue loses", ""]
    if losses:
        L += ["Per scenario and metric, the best libqueue variant (of the peer's class) and every peer that beat it "
              "by more than 10%, with the factor:", ""]
        grouped: dict[tuple, list[dict]] = {}
        for s, v in losses:
            grouped.setdefault((s, v["metric"]), []).append(v)
        for (s, mt), vs in grouped.items():
            vs.sort(key=lambda v: -v["factor"])
            lqs = ", ".join(dict.fromkeys(f"`{v['lq']}` {fmt(v['lq_value'], v['unit'])}" for v in vs))
            L.append(f"- **{s}** {mt} ({vs[0]['unit']}): libqueue ({lqs}) **loses** to " + ", ".join(
                f"`{v['peer']}` {fmt(v['peer_value'], v['unit'])} (**{v['factor']:.2f}×**)" for v in vs) + ".")
    else:
        L.append("Nowhere in this run.")
    won = [s for s, vs in verdict.items() if vs and not any(v["lq_loses"] or v["tie"] for v in vs)]
    if won:
        L += ["", "libqueue beats every peer in: " + ", ".join(f"**{s}**" for s in won) + "."]
    ties = [(s, v) for s, vs in verdict.items() for v in vs if v["tie"]]
    if ties:
        L += ["", f"Too close to call (within {TIE - 1:.0%}, or under the scenario's noise floor): " + "; ".join(
            f"{s} {v['metric']} `{v['peer']}` vs `{v['lq']}`" for s, v in ties) + "."]
    L.append("")

    plots = sorted(p.name for p in RESULTS.glob("*.svg"))
    if plots:
        L += ["## Plots", ""] + [f"![{p}](benches/results/{p})" for p in plots] + [""]

    order = list(SCENARIOS) + sorted({r["scenario"] for r in recs} - set(SCENARIOS))
    for s in order:
        rows = [r for r in recs if r["scenario"] == s]
        if not rows:
            L += [f"## {s}", "", f"**Not measured in this run** ({SCENARIOS[s]['title']}).", ""]
            continue
        scn = SCENARIOS.get(s, {"title": s, "desc": "", "base": None})
        metrics = list(dict.fromkeys(r["metric"] for r in rows))
        peers = list(dict.fromkeys(r["peer"] for r in rows))
        first = {m: next(r for r in rows if r["metric"] == m) for m in metrics}
        classes = any(klass(scn, p) for p in peers)
        L += [f"## {s}: {scn['title']}", "", scn["desc"], ""]
        src = next((k for pre, k in META_OF.items() if s.startswith(pre)), None)
        params = meta["benches"].get(src) if src else None
        if params:
            L += ["Run parameters: " + ", ".join(f"{k} {v}" for k, v in params.items()) + ".", ""]
        head = ["peer"] + (["class"] if classes else [])
        for mt in metrics:
            u, b = first[mt]["unit"], first[mt]["better"]
            head += [f"{mt} ({u}, {b} is better)", "ratio"]
        L += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        idx = {(r["peer"], r["metric"]): r for r in rows}

        def key(p):
            r = idx.get((p, metrics[0]))
            v = r["value"] if r else 0
            return (str(klass(scn, p) or ""), -v if first[metrics[0]]["better"] == "higher" else v)
        for p in sorted(peers, key=key):
            name = f"**{p}**" if is_lq(p) else p
            if p in scn.get("refs", ()):
                name += " (reference)"
            cells = [name] + ([str(klass(scn, p) or "")] if classes else [])
            for mt in metrics:
                r = idx.get((p, mt))
                cells += [fmt(r["value"], r["unit"]) if r else "–",
                          (f"{r['ratio']:.2f}" if r and r["ratio"] is not None else "–")]
            L.append("| " + " | ".join(cells) + " |")
        L += ["", f"Baseline: `{scn.get('base')}`." +
              (" Units: M = million msg/s." if any(r["unit"] == "msg/s" for r in rows) else ""), ""]
        vs = verdict.get(s, [])
        lost = [v for v in vs if v["lq_loses"]]
        ties = [v for v in vs if v["tie"]]
        if not vs:
            L.append("No outside peer in this scenario (libqueue against itself).")
        elif lost:
            L.append("**libqueue loses here:** " + "; ".join(
                f"to `{v['peer']}` on {v['metric']} ({v['factor']:.2f}× better than `{v['lq']}`)" for v in lost) + ".")
        else:
            L.append("libqueue (its best variant of each class) " +
                     ("beats or ties every peer here." if ties else "beats every peer here."))
        if ties:
            L.append(" Too close to call: " + ", ".join(f"`{v['peer']}` on {v['metric']}" for v in ties) + ".")
        L.append("")
    return "\n".join(L)


def plots(recs: list[dict]) -> list[str]:
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as e:
        print(f"warning: matplotlib not available ({e}): no plots", file=sys.stderr)
        return []
    for old in RESULTS.glob("*.svg"):
        old.unlink()
    made = []
    plt.rcParams.update({"svg.hashsalt": "libqueue", "font.size": 9})
    tag = " (QUICK, noisy)" if QUICK else ""

    def save(fig, name):
        fig.tight_layout()
        fig.savefig(RESULTS / name, metadata={"Date": None})
        plt.close(fig)
        made.append(name)

    # Throughput vs threads.
    topo = sorted((s for s in SCENARIOS if "threads" in SCENARIOS[s]), key=lambda s: sum(SCENARIOS[s]["threads"]))
    topo = [s for s in topo if any(r["scenario"] == s for r in recs)]
    if topo:
        fig, ax = plt.subplots(figsize=(7, 4))
        xs = list(range(len(topo)))  # ordered by total threads; equal totals stay apart
        peers = list(dict.fromkeys(r["peer"] for r in recs if r["scenario"] in topo))
        for p in peers:
            ys = [next((r["value"] / 1e6 for r in recs if r["scenario"] == s and r["peer"] == p), None) for s in topo]
            ax.plot(xs, ys, marker="o", label=p, linestyle="-" if is_lq(p) else "--")
        ax.set_xticks(xs, [f"{SCENARIOS[s]['threads'][0]}→{SCENARIOS[s]['threads'][1]}" for s in topo])
        ax.set_xlabel("producers → consumers (ordered by total threads)")
        ax.set_ylabel("M msg/s")
        ax.set_title("In-memory throughput vs threads" + tag)
        ax.legend(fontsize=7)
        ax.grid(alpha=0.3)
        save(fig, "throughput_vs_threads.svg")

    def bars(scenario, metrics, name, title, ylabel, log=False, scale=1.0):
        rows = [r for r in recs if r["scenario"] == scenario]
        if not rows:
            return
        peers = list(dict.fromkeys(r["peer"] for r in rows))
        fig, ax = plt.subplots(figsize=(7, 4))
        w = 0.8 / len(metrics)
        for i, mt in enumerate(metrics):
            vals = [next((r["value"] * scale for r in rows if r["peer"] == p and r["metric"] == mt), 0)
                    for p in peers]
            ax.bar([j + i * w for j in range(len(peers))], vals, w, label=mt)
        ax.set_xticks([j + w * (len(metrics) - 1) / 2 for j in range(len(peers))], peers, rotation=30, ha="right")
        if log:
            ax.set_yscale("log")
        ax.set_ylabel(ylabel)
        ax.set_title(title + tag)
        ax.legend(fontsize=7)
        ax.grid(alpha=0.3, axis="y")
        save(fig, name)

    bars("ping_pong_latency", ["p50", "p90", "p99", "p99.9"], "latency_percentiles.svg",
         "Ping-pong round-trip latency percentiles", "ns (log)", log=True)
    bars("memory_per_message", ["heap", "rss"], "memory_per_message.svg", "Memory per queued 64-byte message",
         "bytes per message")

    # Persistent throughput per sync mode, both sizes.
    sizes = [s for s in ("persist_64B", "persist_64KiB") if any(r["scenario"] == s for r in recs)]
    if sizes:
        fig, axes = plt.subplots(1, len(sizes), figsize=(5 * len(sizes), 4), squeeze=False)
        for ax, s in zip(axes[0], sizes):
            rows = sorted((r for r in recs if r["scenario"] == s),
                          key=lambda r: (["none", "interval", "always", None].index(klass(SCENARIOS[s], r["peer"])),
                                         r["peer"]))
            colors = ["tab:blue" if is_lq(r["peer"]) else "tab:orange" for r in rows]
            ax.bar(range(len(rows)), [r["value"] for r in rows], color=colors)
            ax.set_xticks(range(len(rows)), [f"{r['peer']} [{klass(SCENARIOS[s], r['peer']) or 'ref'}]"
                                             for r in rows], rotation=40, ha="right", fontsize=7)
            ax.set_yscale("log")
            ax.set_ylabel("msg/s (log)")
            ax.set_title(f"{s}: throughput per sync mode" + tag)
            ax.grid(alpha=0.3, axis="y")
        save(fig, "persist_sync_modes.svg")
    return made


#: Everything below this line in BENCHMARKS.md is written by hand (figures from benches
#: that are not merged into the tables: oslo.messaging, across processes, bridges) and is
#: carried over as it is by every render, so a `make bench` run never drops it.
KEPT = "<!-- Written by hand below this line: benches/report.py keeps it as it is. -->"


def kept_sections() -> str:
    """The hand-written tail of the current BENCHMARKS.md (from the KEPT marker on)."""
    path = ROOT / "BENCHMARKS.md"
    text = path.read_text() if path.exists() else ""
    at = text.find(KEPT)
    return "\n" + (text[at:] if at >= 0 else KEPT + "\n")


def main() -> None:
    recs, metas, missing = gather()
    if not recs:
        sys.exit(f"no results under {RUN}: run `make bench`")
    add_ratios(recs)
    verdict = verdicts(recs)
    meta = metadata(metas)
    RESULTS.mkdir(parents=True, exist_ok=True)
    made = plots(recs)
    doc = dict(meta=meta, scenarios={k: dict(title=v["title"], description=v["desc"], baseline=v["base"])
                                     for k, v in SCENARIOS.items()},
               missing=missing, results=recs,
               libqueue_loses=[dict(scenario=s, **v) for s, vs in verdict.items() for v in vs if v["lq_loses"]],
               plots=made)
    (RESULTS / "latest.json").write_text(json.dumps(doc, indent=1) + "\n")
    (ROOT / "BENCHMARKS.md").write_text(render(recs, meta, verdict, missing) + "\n" + kept_sections())
    n_loss = len(doc["libqueue_loses"])
    print(f"wrote {RESULTS / 'latest.json'}, BENCHMARKS.md, {len(made)} plots; "
          f"{len(recs)} results, libqueue loses {n_loss} comparisons" + (f"; missing: {missing}" if missing else ""))


if __name__ == "__main__":
    if sys.argv[1:] == ["--commit"]:
        print(commit_label())
    else:
        main()
