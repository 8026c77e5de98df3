"""Runs oslo.messaging's own functional suite (shipped inside the installed package)
on the libqueue driver, once with ``libqueue://`` and once with
``libqueue:////<fresh directory>``, and checks the outcome.

The suite picks its transport from ``RPC_TRANSPORT_URL`` / ``NOTIFY_TRANSPORT_URL``
(``oslo_messaging/tests/functional/utils.py``) and runs its servers as (eventlet)
threads in the test process, so each worker here is one process with one URL. Most of
the suite's time is sleeping (``test_logger`` waits 15 s per test for stray events),
so the tests run in parallel lanes of worker processes; each persistent lane has its
own fresh directory (a directory belongs to one process until libqueue can attach).
The metrics tests share a port (3000) and a socket path, so they run one after the
other in a lane of their own.

Every test must pass except those the suite itself skips for a non-RabbitMQ URL
(``EXPECTED_SKIPS``); anything else failing, erroring or skipping fails the run.
Usage: ``python run_suite.py [--lanes N] [--kinds memory,dir]`` (exit status 0 = ok).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
import unittest
import warnings

MODULES = ["oslo_messaging.tests.functional.test_functional",
           "oslo_messaging.tests.functional.notify.test_logger"]
#: Skipped by the suite for any URL but rabbit:// (our own tests/oslo/test_driver.py
#: runs both on libqueue: test_call_monitor_heartbeats, test_mandatory_*).
EXPECTED_SKIPS = {
    "CallTestCase.test_mandatory_call": "backend does not support call monitoring",
    "CallTestCase.test_monitor_long_call": "backend does not support call monitoring",
}
#: Seconds a test may run (oslotest's fixtures.Timeout): every wait is bounded.
TEST_TIMEOUT = 90


def short(test_id: str) -> str:
    return ".".join(test_id.split(".")[-2:])


def list_tests() -> list[str]:
    """The suite's test ids (the scenarios of test_logger expanded by load_tests)."""
    out: list[str] = []

    def walk(s: unittest.TestSuite | unittest.TestCase) -> None:
        if isinstance(s, unittest.TestSuite):
            for t in s:
                walk(t)
        else:
            out.append(s.id())

    loader = unittest.TestLoader()
    for m in MODULES:
        walk(loader.loadTestsFromName(m))
    return out


def worker(ids: list[str], result_file: str) -> None:
    """Runs ``ids`` in this process; writes ``[{id, outcome, detail}]`` as JSON."""
    loader = unittest.TestLoader()
    wanted = set(ids)
    suite = unittest.TestSuite()

    def add(s: unittest.TestSuite | unittest.TestCase) -> None:
        if isinstance(s, unittest.TestSuite):
            for t in s:
                add(t)
        elif s.id() in wanted:
            suite.addTest(s)

    for m in MODULES:
        add(loader.loadTestsFromName(m))
    records: list[dict[str, str]] = []

    class Result(unittest.TestResult):
        def addSuccess(self, test: unittest.TestCase) -> None:
            records.append({"id": test.id(), "outcome": "passed", "detail": ""})

        def addFailure(self, test: unittest.TestCase, err: object) -> None:
            records.append({"id": test.id(), "outcome": "failed",
                            "detail": self._exc_info_to_string(err, test)})  # type: ignore

        def addError(self, test: unittest.TestCase, err: object) -> None:
            records.append({"id": test.id(), "outcome": "error",
                            "detail": self._exc_info_to_string(err, test)})  # type: ignore

        def addSkip(self, test: unittest.TestCase, reason: str) -> None:
            records.append({"id": test.id(), "outcome": "skipped", "detail": reason})

        def addExpectedFailure(self, test: unittest.TestCase, err: object) -> None:
            records.append({"id": test.id(), "outcome": "failed", "detail": "expected failure"})

        def addUnexpectedSuccess(self, test: unittest.TestCase) -> None:
            records.append({"id": test.id(), "outcome": "failed", "detail": "unexpected success"})

    suite.run(Result())
    ran = {r["id"] for r in records}
    for missing in sorted(wanted - ran):
        records.append({"id": missing, "outcome": "error", "detail": "did not run"})
    with open(result_file, "w") as f:
        json.dump(records, f)


def run_job(kind: str, ids: list[str], tmp: str, results: list[dict[str, str]],
            lock: threading.Lock) -> None:
    if kind == "memory":
        url = "libqueue://"
    else:
        url = "libqueue:///" + tempfile.mkdtemp(prefix="data-", dir=tmp)
    out = tempfile.mktemp(prefix="result-", suffix=".json", dir=tmp)
    env = dict(os.environ, RPC_TRANSPORT_URL=url, NOTIFY_TRANSPORT_URL=url,
               OS_TEST_TIMEOUT=str(TEST_TIMEOUT), PYTHONWARNINGS="ignore",
               # the metrics test starts `python3 -m oslo_metrics`: this venv's
               PATH=os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", ""))
    proc = subprocess.run([sys.executable, __file__, "--worker", out, *ids], env=env,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          timeout=TEST_TIMEOUT * len(ids) + 60)
    try:
        with open(out) as f:
            got = json.load(f)
    except (OSError, ValueError):
        got = [{"id": i, "outcome": "error",
                "detail": "worker died: " + proc.stdout.decode(errors="replace")[-3000:]}
               for i in ids]
    with lock:
        for r in got:
            r["kind"] = kind
            r["url"] = url
        results.extend(got)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--lanes", type=int, default=6, help="parallel workers per URL kind")
    ap.add_argument("--kinds", default="memory,dir")
    ap.add_argument("ids", nargs="*", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        worker(args.ids, args.worker)
        return 0
    started = time.monotonic()
    warnings.simplefilter("ignore")  # eventlet's and oslo's deprecation notices
    ids = list_tests()
    metrics = [i for i in ids if "MetricsTestCase" in i]
    rest = [i for i in ids if i not in metrics]
    # The slow ones first, so round-robin spreads them over the lanes.
    rest.sort(key=lambda i: (0 if "test_logger" in i or "concurrently" in i else 1, i))
    kinds = args.kinds.split(",")
    results: list[dict[str, str]] = []
    lock = threading.Lock()
    with tempfile.TemporaryDirectory(prefix="oslo-suite-") as tmp:
        lanes: list[list[tuple[str, list[str]]]] = []
        for kind in kinds:
            for n in range(args.lanes):
                part = rest[n::args.lanes]
                if part:
                    lanes.append([(kind, part)])
        lanes.append([(kind, metrics) for kind in kinds if metrics])  # one at a time

        def run_lane(lane: list[tuple[str, list[str]]]) -> None:
            for kind, part in lane:
                run_job(kind, part, tmp, results, lock)

        threads = [threading.Thread(target=run_lane, args=(lane,)) for lane in lanes]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    ok = True
    for kind in kinds:
        mine = sorted((r for r in results if r["kind"] == kind), key=lambda r: r["id"])
        counts = {o: sum(1 for r in mine if r["outcome"] == o)
                  for o in ("passed", "failed", "error", "skipped")}
        url = "libqueue://" if kind == "memory" else "libqueue:////<fresh dir per worker>"
        print(f"{url}: {counts['passed']} passed, {counts['failed']} failed, "
              f"{counts['error']} errors, {counts['skipped']} skipped (of {len(mine)})")
        for r in mine:
            name = short(r["id"])
            if r["outcome"] == "skipped":
                expected = EXPECTED_SKIPS.get(name)
                mark = "expected" if expected == r["detail"] else "UNEXPECTED"
                ok &= mark == "expected"
                print(f"  skipped ({mark}): {name}: {r['detail']}")
            elif r["outcome"] != "passed":
                ok = False
                print(f"  {r['outcome'].upper()}: {r['id']} ({r['url']})\n{r['detail']}")
        if len(mine) != len(ids):
            ok = False
            print(f"  ran {len(mine)} of {len(ids)} tests")
    print(f"functional suite: {'OK' if ok else 'FAILED'} in {time.monotonic() - started:.0f} s")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
