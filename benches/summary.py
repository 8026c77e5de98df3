#!/usr/bin/env python3
"""Prints the criterion results of `make bench` as a table: median throughput per
scenario and peer, and each peer's ratio to crossbeam-channel bounded(1024) (the
baseline the engine issue names). Reads target/criterion/<group>/<bench>/new/estimates.json."""
import json
import pathlib
import sys

root = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else "target/criterion")
BASE = {"ping_pong": "crossbeam_bounded1"}

rows = []
for est in sorted(root.glob("*/*/new/estimates.json")):
    group, bench = est.parts[-4], est.parts[-3]
    bench_json = json.loads((est.parent / "benchmark.json").read_text())
    median_ns = json.loads(est.read_text())["median"]["point_estimate"]
    elems = (bench_json.get("throughput") or {}).get("Elements", 1)
    rows.append((group, bench, median_ns, elems))

by_group = {}
for g, b, ns, n in rows:
    by_group.setdefault(g, {})[b] = (ns, n)

print(f"{'scenario':<12} {'peer':<38} {'median':>14} {'per msg':>10} {'ratio':>7}")
for g, benches in by_group.items():
    base = benches.get(BASE.get(g, "crossbeam_bounded1024")) or benches.get("crossbeam_bounded1024_one_by_one")
    for b, (ns, n) in sorted(benches.items(), key=lambda kv: kv[1][0] / kv[1][1]):
        rate = n / ns * 1e9
        ratio = f"{(base[0] / base[1]) / (ns / n):.2f}" if base else "-"
        print(f"{g:<12} {b:<38} {rate / 1e6:>10.2f} M/s {ns / n:>8.0f}ns {ratio:>7}")
