"""The libqueue oslo.messaging driver's own tests: what oslo.messaging's functional
suite does not cover (run_suite.py runs that one). Real threads (no eventlet); every
wait is bounded. Run by ``make test-oslo`` (its venv has oslo.messaging).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from typing import Any, Iterator

import pytest

import oslo_messaging as om
from oslo_config import cfg
from oslo_messaging import conffixture
from oslo_messaging import server as om_server

import libqueue
from libqueue.oslo import _brokers, _names
from libqueue.oslo._listener import Slot, Turnstile

WAIT = 10.0  # seconds any single wait in these tests may take


def uid(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:10]}"


@pytest.fixture
def conf() -> Iterator[Any]:
    c = cfg.ConfigOpts()
    fx = conffixture.ConfFixture(c)
    fx.setUp()
    c([], project="libqueue-oslo-tests")
    c.register_opts(om_server._pool_opts)  # executor_thread_pool_size, set by some tests
    yield c
    fx.cleanUp()


@pytest.fixture
def cleanup() -> Iterator[list[Any]]:
    """Things to stop at the end: servers (stop + wait) and transports (cleanup)."""
    items: list[Any] = []
    yield items
    for x in reversed(items):
        if hasattr(x, "wait"):
            x.stop()
            x.wait()
        else:
            x.cleanup()


def rpc_transport(conf: Any, url: str, cleanup: list[Any]) -> Any:
    t = om.get_rpc_transport(conf, url=url)
    cleanup.append(t)
    return t


def serve(conf: Any, url: str, target: Any, endpoints: list[Any], cleanup: list[Any]) -> Any:
    t = rpc_transport(conf, url, cleanup)
    s = om.get_rpc_server(t, target, endpoints, executor="threading")
    s.start()
    cleanup.append(s)
    return s


# -- URLs --------------------------------------------------------------------------

@pytest.mark.parametrize("url, words", [
    ("libqueue://localhost/", "no host part"),
    ("libqueue://user:secret@host:5672/", "no host part"),
    ("libqueue:///relative/dir", "absolute path"),
    ("libqueue:////tmp/x?sync=always", "unknown query keys ['sync']"),
])
def test_bad_urls_are_refused_clearly(conf: Any, url: str, words: str) -> None:
    with pytest.raises(om.InvalidTransportURL) as e:
        om.get_rpc_transport(conf, url=url)
    assert words in str(e.value)
    assert url.split("?")[0].rstrip("/") in str(e.value)


def test_good_urls(conf: Any) -> None:
    parse = lambda u: _brokers.data_dir_of(om.TransportURL.parse(conf, u))  # noqa: E731
    assert parse("libqueue://") is None
    assert parse("libqueue:////var/lib/x/") == "/var/lib/x"
    assert parse("libqueue:////tmp/a%20b") == "/tmp/a b"


def test_drivers_sharing_a_broker_must_agree(conf: Any, cleanup: list[Any],
                                             tmp_path: Any) -> None:
    url = f"libqueue:///{tmp_path}"
    rpc_transport(conf, url, cleanup)
    other = cfg.ConfigOpts()
    fx = conffixture.ConfFixture(other)
    fx.setUp()
    other([])
    other.register_opts(libqueue.oslo.libqueue_opts, group=libqueue.oslo.GROUP)
    other.set_override("lease_time", 5.0, group=libqueue.oslo.GROUP)
    with pytest.raises(ValueError, match="must agree"):
        om.get_rpc_transport(other, url=url)
    fx.cleanUp()


# -- names -------------------------------------------------------------------------

def test_names_are_valid_unambiguous_and_stable() -> None:
    assert _names.server_queue("a.b", "c") != _names.server_queue("a", "b.c")
    assert _names.rpc_queue("OCTAVIA_PROV") == "rpc.OCTAVIA_PROV"
    weird = ["compute:host one", "x" * 200, "ünï", ""]
    for w in weird:
        for n in (_names.namespace(w), _names.rpc_queue(w), _names.server_queue(w, w),
                  _names.pool_queue(w, "p q")):
            assert _names._VALID.match(n), n
    assert _names.namespace("x" * 200) == _names.namespace("x" * 200)
    assert _names.namespace("x" * 200) != _names.namespace("x" * 201)


# -- RPC ---------------------------------------------------------------------------

class Echo:
    def echo(self, ctxt: Any, value: Any) -> Any:
        return value

    def fail(self, ctxt: Any, which: str) -> None:
        if which == "value":
            raise ValueError("bad value")
        raise om.MessagingException("a messaging error")  # oslo_messaging.exceptions

    def unserializable(self, ctxt: Any) -> Any:
        return {"a": 1j}  # oslo's jsonutils turns most objects into text, not complex

    def slow(self, ctxt: Any, seconds: float) -> float:
        time.sleep(seconds)  # the endpoint's own work, not a poll
        return seconds


@pytest.mark.parametrize("persistent", [False, True])
def test_call_cast_fanout_and_failures(conf: Any, cleanup: list[Any], tmp_path: Any,
                                       persistent: bool) -> None:
    url = f"libqueue:///{tmp_path}" if persistent else "libqueue://"
    topic = uid("t")
    serve(conf, url, om.Target(topic=topic, server="s1"), [Echo()], cleanup)
    client = om.get_rpc_client(rpc_transport(conf, url, cleanup), om.Target(topic=topic),
                               timeout=WAIT)
    assert client.call({}, "echo", value={"a": [1, 2]}) == {"a": [1, 2]}
    with pytest.raises(ValueError, match="bad value"):  # builtins are always allowed
        client.call({}, "fail", which="value")
    with pytest.raises(om.RemoteError) as e:  # not in allowed_remote_exmods
        client.call({}, "fail", which="messaging")
    assert e.value.exc_type == "MessagingException"
    with pytest.raises(om.RemoteError):  # no such method
        client.call({}, "nope")
    with pytest.raises(ValueError, match="Cannot convert"):  # a result JSON cannot carry
        client.call({}, "unserializable")


def test_allowed_remote_exmods_reraise_the_class(conf: Any, cleanup: list[Any]) -> None:
    topic = uid("t")
    serve(conf, "libqueue://", om.Target(topic=topic, server="s"), [Echo()], cleanup)
    t = om.get_rpc_transport(conf, url="libqueue://",
                             allowed_remote_exmods=["oslo_messaging.exceptions"])
    cleanup.append(t)
    client = om.get_rpc_client(t, om.Target(topic=topic), timeout=WAIT)
    with pytest.raises(om.MessagingException, match="a messaging error"):
        client.call({}, "fail", which="messaging")


def test_call_timeout_and_late_reply_dropped(conf: Any, cleanup: list[Any]) -> None:
    conf.set_override("executor_thread_pool_size", 1)  # the echo runs after the slow one
    topic = uid("t")
    serve(conf, "libqueue://", om.Target(topic=topic, server="s"), [Echo()], cleanup)
    t = rpc_transport(conf, "libqueue://", cleanup)
    client = om.get_rpc_client(t, om.Target(topic=topic), timeout=0.3)
    start = time.monotonic()
    with pytest.raises(om.MessagingTimeout):
        client.call({}, "slow", seconds=1.0)
    assert time.monotonic() - start < 1.0
    fast = om.get_rpc_client(t, om.Target(topic=topic), timeout=WAIT)
    assert fast.call({}, "echo", value=1) == 1  # after the slow one: its reply came late
    assert t._driver._replies.late_replies == 1


def test_call_to_nobody_times_out(conf: Any, cleanup: list[Any]) -> None:
    t = rpc_transport(conf, "libqueue://", cleanup)
    client = om.get_rpc_client(t, om.Target(topic=uid("nobody")), timeout=0.2)
    with pytest.raises(om.MessagingTimeout):
        client.call({}, "echo", value=1)


def test_call_monitor_heartbeats(conf: Any, cleanup: list[Any]) -> None:
    """The suite's test_monitor_long_call (skipped there for anything but rabbit://)."""
    target = om.Target(topic=uid("t"), server=uid("s"))
    serve(conf, "libqueue://", target, [Echo()], cleanup)
    t = rpc_transport(conf, "libqueue://", cleanup)
    with pytest.raises(om.MessagingTimeout):
        om.get_rpc_client(t, target, timeout=0.5).call({}, "slow", seconds=1.5)
    # Without heartbeats (every call_monitor_timeout / 2 s, an integer >= 1: oslo's
    # rule) it would time out after 2 s; the 3600 s timeout would hang the test.
    monitored = om.get_rpc_client(t, target, timeout=3600, call_monitor_timeout=2)
    assert monitored.call({}, "slow", seconds=4.5) == 4.5


def test_mandatory_server_must_exist(conf: Any, cleanup: list[Any]) -> None:
    """The suite's test_mandatory_call: at_least_once -> MessageUndeliverable."""
    t = rpc_transport(conf, "libqueue://", cleanup)
    target = om.Target(topic=uid("t"), server=uid("s"))
    loose = om.get_rpc_client(t, target, timeout=0.2,
                              transport_options=om.TransportOptions(at_least_once=False))
    with pytest.raises(om.MessagingTimeout):
        loose.call({}, "echo", value=1)
    strict = om.get_rpc_client(t, om.Target(topic=uid("t"), server=uid("s")), timeout=60,
                               transport_options=om.TransportOptions(at_least_once=True))
    start = time.monotonic()
    with pytest.raises(om.MessageUndeliverable):
        strict.call({}, "echo", value=1)
    assert time.monotonic() - start < 5
    fan = om.get_rpc_client(t, om.Target(topic=uid("t"), fanout=True),
                            transport_options=om.TransportOptions(at_least_once=True))
    with pytest.raises(om.MessageUndeliverable):
        fan.cast({}, "echo", value=1)


def test_fanout_reaches_every_server_and_stops_at_cleanup(conf: Any, cleanup: list[Any]) -> None:
    topic = uid("t")
    seen: list[str] = []
    done = threading.Semaphore(0)

    class Rec:
        def __init__(self, name: str) -> None:
            self.name = name

        def hit(self, ctxt: Any) -> None:
            seen.append(self.name)
            done.release()

    servers = [serve(conf, "libqueue://", om.Target(topic=topic, server=n), [Rec(n)], cleanup)
               for n in ("a", "b", "c")]
    t = rpc_transport(conf, "libqueue://", cleanup)
    om.get_rpc_client(t, om.Target(topic=topic, fanout=True)).cast({}, "hit")
    for _ in range(3):
        assert done.acquire(timeout=WAIT)
    assert sorted(seen) == ["a", "b", "c"]
    servers[0].stop()
    servers[0].wait()
    cleanup.remove(servers[0])
    ns = t._driver.broker.namespace("openstack")
    assert ns.topic(_names.fanout_topic(topic)).subscriptions() == sorted(
        [_names.server_queue(topic, "b"), _names.server_queue(topic, "c")])


# -- throttle, persistence, redelivery ------------------------------------------------

def test_executor_pool_size_is_the_throttle(conf: Any, cleanup: list[Any]) -> None:
    """At most executor_thread_pool_size endpoint calls at once, and while they are
    all busy the rest stay in the queue (not taken, not queued in the executor)."""
    conf.set_override("executor_thread_pool_size", 3)
    topic = uid("t")
    running = 0
    peak = 0
    lock = threading.Lock()
    release = threading.Event()
    started = threading.Semaphore(0)
    finished = threading.Semaphore(0)

    class Busy:
        def work(self, ctxt: Any, n: int) -> None:
            nonlocal running, peak
            with lock:
                running += 1
                peak = max(peak, running)
            started.release()
            release.wait(WAIT)
            with lock:
                running -= 1
            finished.release()

    server = serve(conf, "libqueue://", om.Target(topic=topic, server="s"), [Busy()], cleanup)
    t = rpc_transport(conf, "libqueue://", cleanup)
    client = om.get_rpc_client(t, om.Target(topic=topic))
    for i in range(12):
        client.cast({}, "work", n=i)
    for _ in range(3):
        assert started.acquire(timeout=WAIT)
    assert not started.acquire(timeout=0.3)  # a 4th never starts while 3 run
    q = t._driver.broker.namespace("openstack").get_queue(_names.rpc_queue(topic))
    stats = q.stats()
    assert (stats.ready, stats.leased) == (9, 0)  # RPC requests are acked when taken
    release.set()
    for _ in range(12):
        assert finished.acquire(timeout=WAIT)
    assert peak == 3
    assert server.listener.busy_high_water == 3


def test_messages_persist_across_a_reopen(conf: Any, tmp_path: Any) -> None:
    url = f"libqueue:///{tmp_path}"
    topic = uid("t")
    t = om.get_rpc_transport(conf, url=url)
    om.get_rpc_client(t, om.Target(topic=topic)).cast({"user": "u1"}, "take", n=7)
    n = om.get_notification_transport(conf, url=url)
    om.Notifier(n, "pub", driver="messaging", topics=[topic]).info({}, "ev", {"k": 1})
    n.cleanup()
    t.cleanup()  # the last driver on the directory: the broker is closed
    assert not _brokers._shared.get(os.path.realpath(str(tmp_path)))

    got: list[Any] = []
    done = threading.Semaphore(0)

    class Take:
        def take(self, ctxt: Any, n: int) -> None:
            got.append(("rpc", ctxt["user"], n))
            done.release()

        def info(self, ctxt: Any, publisher: str, event: str, payload: Any,
                 metadata: Any) -> None:
            got.append(("info", publisher, event, payload))
            done.release()

    t2 = om.get_rpc_transport(conf, url=url)
    n2 = om.get_notification_transport(conf, url=url)
    assert t2._driver.broker.recovery_report.messages_recovered >= 2
    s = om.get_rpc_server(t2, om.Target(topic=topic, server="s"), [Take()], executor="threading")
    lst = om.get_notification_listener(n2, [om.Target(topic=topic)], [Take()],
                                       executor="threading")
    s.start()
    lst.start()
    try:
        for _ in range(2):
            assert done.acquire(timeout=WAIT)
    finally:
        for x in (s, lst):
            x.stop()
            x.wait()
        n2.cleanup()
        t2.cleanup()
    assert sorted(got, key=str) == sorted([("rpc", "u1", 7), ("info", "pub", "ev", {"k": 1})],
                                          key=str)


CHILD = textwrap.dedent("""
    import os, sys, threading
    import oslo_messaging as om
    from oslo_config import cfg
    from oslo_messaging import conffixture
    conf = cfg.ConfigOpts(); fx = conffixture.ConfFixture(conf); fx.setUp(); conf([])
    url, topic = sys.argv[1], sys.argv[2]
    class Die:
        def info(self, ctxt, publisher, event, payload, metadata):
            print("taken", flush=True)
            threading.Event().wait(60)  # the parent kills us here, message unacked
    t = om.get_notification_transport(conf, url=url)
    lst = om.get_notification_listener(t, [om.Target(topic=topic)], [Die()],
                                       executor="threading")
    lst.start()
    threading.Event().wait(60)
""")


def test_message_of_a_killed_server_comes_back(conf: Any, tmp_path: Any) -> None:
    """A listener process SIGKILLed while handling a notification (not acked): the
    next listener on the directory gets the message again."""
    url = f"libqueue:///{tmp_path}"
    topic = uid("t")
    n = om.get_notification_transport(conf, url=url)
    om.Notifier(n, "pub", driver="messaging", topics=[topic]).info({}, "ev", "x")
    n.cleanup()  # releases the directory for the child
    child = subprocess.Popen([sys.executable, "-c", CHILD, url, topic],
                             stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    try:
        assert child.stdout is not None
        line = child.stdout.readline()  # bounded: the child waits at most 60 s
        assert line.strip() == b"taken"
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(WAIT)

    got: list[Any] = []
    done = threading.Event()

    class Again:
        def info(self, ctxt: Any, publisher: str, event: str, payload: Any,
                 metadata: Any) -> None:
            got.append(payload)
            done.set()

    n2 = om.get_notification_transport(conf, url=url)
    lst = om.get_notification_listener(n2, [om.Target(topic=topic)], [Again()],
                                       executor="threading")
    lst.start()
    try:
        assert done.wait(WAIT)
    finally:
        lst.stop()
        lst.wait()
        n2.cleanup()
    assert got == ["x"]


def test_requeue_is_a_nack_and_the_message_comes_back(conf: Any, cleanup: list[Any]) -> None:
    topic = uid("t")
    calls: list[int] = []
    done = threading.Event()

    class Flaky:
        def info(self, ctxt: Any, publisher: str, event: str, payload: Any,
                 metadata: Any) -> Any:
            calls.append(payload)
            if len(calls) == 1:
                return om.NotificationResult.REQUEUE
            done.set()
            return om.NotificationResult.HANDLED

    n = om.get_notification_transport(conf, url="libqueue://")
    cleanup.append(n)
    lst = om.get_notification_listener(n, [om.Target(topic=topic)], [Flaky()],
                                       executor="threading", allow_requeue=True)
    lst.start()
    cleanup.append(lst)
    om.Notifier(n, "pub", driver="messaging", topics=[topic]).info({}, "ev", 5)
    assert done.wait(WAIT)
    assert calls == [5, 5]
    q = n._driver.broker.namespace("openstack").get_queue(_names.pool_queue(f"{topic}.info", None))
    assert q.stats().nacked == 1


def test_lease_expiry_redelivers_a_hung_message(conf: Any, cleanup: list[Any],
                                                tmp_path: Any) -> None:
    """[oslo_messaging_libqueue] lease_time: a notification neither acked nor requeued
    in time (its handler hung) is delivered again."""
    conf.register_opts(libqueue.oslo.libqueue_opts, group=libqueue.oslo.GROUP)
    conf.set_override("lease_time", 0.3, group=libqueue.oslo.GROUP)
    topic = uid("t")
    seen: list[Any] = []
    second = threading.Event()
    unblock = threading.Event()

    class Hang:
        def info(self, ctxt: Any, publisher: str, event: str, payload: Any,
                 metadata: Any) -> None:
            seen.append(payload)
            if len(seen) == 1:
                unblock.wait(WAIT)
            else:
                second.set()

    # Its own broker: the process's in-memory one has the default lease time.
    n = om.get_notification_transport(conf, url=f"libqueue:///{tmp_path}")
    cleanup.append(n)
    lst = om.get_notification_listener(n, [om.Target(topic=uid("other"))], [Hang()],
                                       executor="threading", pool=None)
    lst2 = om.get_notification_listener(n, [om.Target(topic=topic)], [Hang()],
                                        executor="threading")
    for x in (lst, lst2):
        x.start()
        cleanup.append(x)
    om.Notifier(n, "pub", driver="messaging", topics=[topic]).info({}, "ev", "p")
    try:
        assert second.wait(WAIT)
    finally:
        unblock.set()
    assert seen == ["p", "p"]


def test_pools_each_get_a_copy_balanced_within(conf: Any, cleanup: list[Any]) -> None:
    topic = uid("t")
    got: dict[str, list[Any]] = {}
    count = threading.Semaphore(0)

    class Rec:
        def __init__(self, name: str) -> None:
            self.name = name

        def info(self, ctxt: Any, publisher: str, event: str, payload: Any,
                 metadata: Any) -> None:
            got.setdefault(self.name, []).append(payload)
            count.release()

    n = om.get_notification_transport(conf, url="libqueue://")
    cleanup.append(n)
    for name, pool in (("a1", "A"), ("a2", "A"), ("b1", "B")):
        lst = om.get_notification_listener(n, [om.Target(topic=topic)], [Rec(name)],
                                           executor="threading", pool=pool)
        lst.start()
        cleanup.append(lst)
    notifier = om.Notifier(n, "pub", driver="messaging", topics=[topic])
    for i in range(6):
        notifier.info({}, "ev", i)
    for _ in range(12):
        assert count.acquire(timeout=WAIT)
    assert sorted(got["a1"] + got["a2"]) == list(range(6))
    assert got["a1"] and got["a2"]
    assert got["b1"] == list(range(6))


def test_batch_listener(conf: Any, cleanup: list[Any]) -> None:
    topic = uid("t")
    batches: list[int] = []
    done = threading.Event()

    class Batch:
        def info(self, messages: list[Any]) -> None:
            batches.append(len(messages))
            if sum(batches) == 7:
                done.set()

    n = om.get_notification_transport(conf, url="libqueue://")
    cleanup.append(n)
    notifier = om.Notifier(n, "pub", driver="messaging", topics=[topic])
    for i in range(7):
        notifier.info({}, "ev", i)
    lst = om.get_batch_notification_listener(n, [om.Target(topic=topic)], [Batch()],
                                             executor="threading", batch_size=5,
                                             batch_timeout=0.3)
    lst.start()
    cleanup.append(lst)
    assert done.wait(WAIT)
    assert batches == [5, 2]


# -- pieces ------------------------------------------------------------------------

def test_slot_is_given_back_once_when_all_its_messages_are_done() -> None:
    given: list[int] = []
    s = Slot(lambda: given.append(1), 2)
    s.done()
    assert given == []
    s.done()
    s.done()
    assert given == [1]


def test_turnstile_order() -> None:
    class L:
        nudged = 0

        def _nudge(self) -> None:
            self.nudged += 1

    a, b = L(), L()
    t = Turnstile()
    t.join(a)  # type: ignore[arg-type]
    t.join(b)  # type: ignore[arg-type]
    t.join(a)  # type: ignore[arg-type]
    assert t.first(a) and not t.first(b)  # type: ignore[arg-type]
    t.leave(a)  # type: ignore[arg-type]
    assert t.first(b) and b.nudged == 1  # type: ignore[arg-type]
    t.leave(a)  # type: ignore[arg-type]  # not in line: nothing
    assert b.nudged == 1


def test_malformed_message_is_dropped_not_fatal(conf: Any, cleanup: list[Any]) -> None:
    topic = uid("t")
    serve(conf, "libqueue://", om.Target(topic=topic, server="s"), [Echo()], cleanup)
    t = rpc_transport(conf, "libqueue://", cleanup)
    ns = t._driver.broker.namespace("openstack")
    ns.queue(_names.rpc_queue(topic)).send(b"not json")
    client = om.get_rpc_client(t, om.Target(topic=topic), timeout=WAIT)
    assert client.call({}, "echo", value="still alive") == "still alive"


def test_after_cleanup_sending_fails_clearly(conf: Any) -> None:
    t = om.get_rpc_transport(conf, url="libqueue://")
    drv = t._driver
    t.cleanup()
    with pytest.raises(om.MessageDeliveryFailure, match="cleaned up"):
        drv.send(om.Target(topic="x"), {}, {"method": "m"})
