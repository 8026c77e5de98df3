"""Octavia's queue consumer on the real oslo.messaging API, over libqueue.

    python examples/python/octavia_oslo.py                       # libqueue://, pool of 4
    python examples/python/octavia_oslo.py --config-file my.conf # your [DEFAULT] settings
    python examples/python/octavia_oslo.py --url libqueue:////tmp/octavia-q
    python examples/python/octavia_oslo.py --url libqueue:////tmp/octavia-q --two-processes

With ``--two-processes`` the API side is a process of its own (this script run again
with ``--api-only``) on the same data directory: the controller worker's process
hosts the directory, the API process attaches to it, as octavia-api and
octavia-worker are separate services on one host.

As Octavia's controller worker does (octavia/controller/queue/v1/consumer.py and
endpoints.py): an RPC server on topic ``OCTAVIA_PROV`` (``server = conf.host``,
``executor='threading'``) whose endpoint has the 15 methods below, under
``Target(namespace='controller', version='1.1')``; at most
``executor_thread_pool_size`` (Octavia's old ``rpc_thread_pool_size``) run at once.
The API side marks each object ``PENDING_*`` in the "database" and casts to the
controller, as octavia-api's handler does. Members whose id starts with ``bad-`` make
the worker fail: it sets them to ``ERROR`` (Octavia's flow revert) and raises.

It checks itself and exits 1 unless: the throttle was never exceeded, every cast was
handled exactly once and left its object in the expected state, and the failures are
visible (objects in ``ERROR``, the exceptions counted).
"""

from __future__ import annotations

import argparse
import logging
import os
import socket
import sys
import tempfile
import threading
import time
from typing import Any

import oslo_messaging as messaging
from oslo_config import cfg

TOPIC = "OCTAVIA_PROV"
NAMESPACE = "controller"  # octavia.common.constants.RPC_NAMESPACE_CONTROLLER_AGENT
WORK = 0.003  # seconds of "controller work" per message


class Database:
    """The objects' provisioning status, as Octavia's database holds it."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.status: dict[str, str] = {}
        self.handled: dict[str, int] = {}  # cast id -> times handled
        self.failures = 0
        self.running = 0
        self.peak = 0
        self.done = threading.Condition(self.lock)

    def set(self, obj: str, status: str) -> None:
        with self.lock:
            self.status[obj] = status


class Endpoints:
    """The controller's 15 endpoint methods (Octavia's v1 endpoint signatures)."""

    target = messaging.Target(namespace=NAMESPACE, version="1.1")

    def __init__(self, db: Database) -> None:
        self.db = db

    def _work(self, context: dict[str, Any], obj: str, final: str) -> None:
        db = self.db
        with db.lock:
            db.running += 1
            db.peak = max(db.peak, db.running)
        try:
            time.sleep(WORK)  # the controller worker's flow (amphora calls, DB writes)
            if obj.startswith("member:bad-"):
                db.set(obj, "ERROR")  # the flow's revert marks it ERROR
                raise RuntimeError(f"amphora refused {obj}")
            db.set(obj, final)
        except Exception:
            with db.lock:
                db.failures += 1
            raise
        finally:
            with db.lock:
                db.running -= 1
                cast = context["request_id"]
                db.handled[cast] = db.handled.get(cast, 0) + 1
                db.done.notify_all()

    def create_load_balancer(self, context: Any, load_balancer_id: str) -> None:
        self._work(context, f"load_balancer:{load_balancer_id}", "ACTIVE")

    def update_load_balancer(self, context: Any, load_balancer_id: str,
                             load_balancer_updates: dict[str, Any]) -> None:
        self._work(context, f"load_balancer:{load_balancer_id}", "ACTIVE")

    def delete_load_balancer(self, context: Any, load_balancer_id: str,
                             cascade: bool = False) -> None:
        self._work(context, f"load_balancer:{load_balancer_id}", "DELETED")

    def failover_load_balancer(self, context: Any, load_balancer_id: str) -> None:
        self._work(context, f"load_balancer:{load_balancer_id}", "ACTIVE")

    def create_listener(self, context: Any, listener_id: str) -> None:
        self._work(context, f"listener:{listener_id}", "ACTIVE")

    def update_listener(self, context: Any, listener_id: str,
                        listener_updates: dict[str, Any]) -> None:
        self._work(context, f"listener:{listener_id}", "ACTIVE")

    def delete_listener(self, context: Any, listener_id: str) -> None:
        self._work(context, f"listener:{listener_id}", "DELETED")

    def create_pool(self, context: Any, pool_id: str) -> None:
        self._work(context, f"pool:{pool_id}", "ACTIVE")

    def update_pool(self, context: Any, pool_id: str, pool_updates: dict[str, Any]) -> None:
        self._work(context, f"pool:{pool_id}", "ACTIVE")

    def delete_pool(self, context: Any, pool_id: str) -> None:
        self._work(context, f"pool:{pool_id}", "DELETED")

    def create_member(self, context: Any, member_id: str) -> None:
        self._work(context, f"member:{member_id}", "ACTIVE")

    def batch_update_members(self, context: Any, old_member_ids: list[str],
                             new_member_ids: list[str], updated_members: list[Any]) -> None:
        self._work(context, f"member:{new_member_ids[0]}", "ACTIVE")

    def update_member(self, context: Any, member_updates: dict[str, Any],
                      member_id: str) -> None:
        self._work(context, f"member:{member_id}", "ACTIVE")

    def delete_member(self, context: Any, member_id: str) -> None:
        self._work(context, f"member:{member_id}", "DELETED")

    def create_health_monitor(self, context: Any, health_monitor_id: str) -> None:
        self._work(context, f"health_monitor:{health_monitor_id}", "ACTIVE")


METHODS = [m for m in vars(Endpoints) if not m.startswith("_") and m != "target"]
assert len(METHODS) == 15, METHODS


def request(i: int) -> tuple[str, dict[str, Any], str, str]:
    """The i-th API request: (method, kwargs, object, status the API sets first)."""
    method = METHODS[i % len(METHODS)]
    kind = next(k for k in ("load_balancer", "listener", "pool", "health_monitor", "member")
                if k in method)
    oid = f"bad-{i}" if kind == "member" and i % 50 == 10 else f"{kind[:2]}-{i}"
    obj = f"{kind}:{oid}"
    arg = {"load_balancer": "load_balancer_id", "listener": "listener_id", "pool": "pool_id",
           "member": "member_id", "health_monitor": "health_monitor_id"}[kind]
    kwargs: dict[str, Any] = {arg: oid}
    if method.startswith("update_"):
        kwargs[f"{kind}_updates"] = {"name": f"renamed-{i}"}
    if method == "batch_update_members":
        kwargs = {"old_member_ids": [], "new_member_ids": [oid], "updated_members": []}
    pending = ("PENDING_DELETE" if method.startswith("delete_") else
               "PENDING_CREATE" if method.startswith("create_") else "PENDING_UPDATE")
    return method, kwargs, obj, pending


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--config-file", help="an oslo.config file ([DEFAULT] transport_url, "
                                          "executor_thread_pool_size)")
    ap.add_argument("--url", default="libqueue://", help="transport_url when no config file")
    ap.add_argument("--pool-size", type=int, default=4,
                    help="executor_thread_pool_size when no config file")
    ap.add_argument("--casts", type=int, default=600)
    ap.add_argument("--two-processes", action="store_true",
                    help="the API side in a process of its own (needs a libqueue:////dir URL)")
    ap.add_argument("--api-only", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.two_processes and not args.url.startswith("libqueue:////"):
        ap.error("--two-processes needs a data directory: --url libqueue:////abs/dir")
    logging.basicConfig(level=logging.CRITICAL)  # the endpoint failures are expected
    with tempfile.TemporaryDirectory() as tmp:
        path = args.config_file
        if path is None:
            path = os.path.join(tmp, "octavia.conf")
            with open(path, "w") as f:
                f.write(f"[DEFAULT]\ntransport_url = {args.url}\n"
                        f"executor_thread_pool_size = {args.pool_size}\n")
        conf = cfg.CONF
        conf(["--config-file", path], project="octavia")
        if args.api_only:
            return api(conf, args.casts)
        return run(conf, args.casts, args if args.two_processes else None)


def api(conf: Any, casts: int, db: Any = None) -> int:
    """The API side: marks each object pending (when it shares the worker's
    database) and casts to the controller over its own transport."""
    transport = messaging.get_rpc_transport(conf)
    client = messaging.get_rpc_client(transport,
                                      messaging.Target(topic=TOPIC, namespace=NAMESPACE,
                                                       version="1.1"))
    for i in range(casts):
        method, kwargs, obj, pending = request(i)
        if db is not None:
            db.set(obj, pending)
        client.cast({"request_id": f"req-{i}"}, method, **kwargs)
    transport.cleanup()
    return 0


def run(conf: Any, casts: int, two_processes: Any = None) -> int:
    db = Database()
    # The controller worker (octavia-worker's ConsumerService.run).
    server_transport = messaging.get_rpc_transport(conf)
    target = messaging.Target(topic=TOPIC, server=socket.gethostname(), fanout=False)
    server = messaging.get_rpc_server(server_transport, target, [Endpoints(db)],
                                      executor="threading")
    server.start()
    size = conf.executor_thread_pool_size
    expected: dict[str, str] = {}
    for i in range(casts):
        method, _, obj, _ = request(i)
        final = "DELETED" if method.startswith("delete_") else "ACTIVE"
        expected[obj] = "ERROR" if obj.startswith("member:bad-") else final
    start = time.monotonic()
    if two_processes is None:
        # The API side (octavia-api's amphora provider driver): its own transport.
        api(conf, casts, db)
    else:
        # The API side in a process of its own, attached to this one's directory.
        import subprocess
        child = subprocess.run(
            [sys.executable, "-W", "ignore", os.path.abspath(__file__), "--api-only",
             "--url", two_processes.url, "--casts", str(casts)],
            timeout=120, check=False)
        if child.returncode != 0:
            print(f"FAILED: the API process exited with {child.returncode}")
            return 1
    with db.lock:
        db.done.wait_for(lambda: len(db.handled) >= casts, timeout=60)
    elapsed = time.monotonic() - start
    server.stop()
    server.wait()
    server_transport.cleanup()

    problems = []
    if db.peak > size:
        problems.append(f"the throttle was exceeded: {db.peak} at once, pool size {size}")
    missing = casts - len(db.handled)
    twice = [k for k, n in db.handled.items() if n != 1]
    if missing or twice:
        problems.append(f"{missing} casts never handled, {len(twice)} handled more than once")
    wrong = {o: (s, db.status.get(o)) for o, s in expected.items() if db.status.get(o) != s}
    if wrong:
        problems.append(f"{len(wrong)} objects in the wrong state, e.g. "
                        f"{sorted(wrong.items())[:3]}")
    bad = sum(1 for o in expected if o.startswith("member:bad-"))
    errors = sum(1 for s in db.status.values() if s == "ERROR")
    if bad == 0 or errors != bad or db.failures != bad:
        problems.append(f"failures not visible: {bad} bad members, {errors} in ERROR, "
                        f"{db.failures} failures counted")
    where = " (API in another process)" if two_processes is not None else ""
    print(f"octavia over {conf.transport_url}{where}: {casts} casts of {len(METHODS)} methods "
          f"handled in {elapsed:.2f} s; at most {db.peak} at once (pool size {size}); "
          f"{errors} members in ERROR as expected")
    for p in problems:
        print("FAILED:", p)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
